"""Fast re-rendering of one label layout with changing style codes: :class:`LayoutRenderer`.

``LayoutRenderer(netG, seed, max_layouts).render(key, segmap, codes)``: ``segmap``
``(1, J, H, W)`` one-hot, ``codes`` ``(1, J, 512)`` normalised, both on the
model's device -> ``(1, 3, H, W)`` in [-1, 1]; batch size 1 only. The result
equals the generator's forward pass with the same noise seed up to float
rounding (``tests/test_editor.py``).

Per layout key it caches what depends on the label map alone (SPADE branch,
noise, batch norm with running statistics, the unfolded segmap, the
spectral-normalised weights), so a render runs only what depends on the
codes, and only for classes whose code changed; a different segmap under the
same key (a painted label map) updates the cache where it differs. How the
ACE layers are folded for that: docs/editor.md, "How it stays fast". The model is never
modified: its ACE layers and spectral-normalised convolutions are swapped
for cached stand-ins during a render only. Its weights must not change
while layouts are cached (:meth:`LayoutRenderer.clear` forgets everything).
"""
import collections
import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.spectral_norm import SpectralNorm

from models.networks.ace import ACE
from util.errors import InputError


def _slots(root, predicate):
    """``[(parent, attribute, module)]`` for every submodule of ``root`` that satisfies ``predicate``."""
    found = []
    for name, module in root.named_modules():
        if name and predicate(module):
            parent_name, _, attr = name.rpartition(".")
            found.append((root.get_submodule(parent_name) if parent_name else root, attr, module))
    return found


@contextlib.contextmanager
def _swapped(slots, replacements):
    """Temporarily put ``replacements[i]`` in place of ``slots[i]``'s module; always restores."""
    try:
        for (parent, attr, _), new in zip(slots, replacements):
            setattr(parent, attr, new)
        yield
    finally:
        for parent, attr, original in slots:
            setattr(parent, attr, original)


def _spectral_hook(conv):
    return next((h for h in conv._forward_pre_hooks.values() if isinstance(h, SpectralNorm)), None)


class _FrozenConv(nn.Module):
    """A spectral-normalised conv with its eval-mode weight computed once (same value as its hook gives).

    A plain 1×1 convolution of one image runs as one matrix product (torch's
    CPU convolution takes a slow path for it).
    """

    def __init__(self, conv, hook):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"unsupported padding mode {conv.padding_mode!r}")
        self.conv = [conv]  # a list: not registered as a submodule
        self.weight = hook.compute_weight(conv, do_power_iteration=False).detach()
        self.pointwise = (conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
                          and conv.groups == 1)

    def forward(self, x):
        c = self.conv[0]
        if self.pointwise and x.shape[0] == 1:
            out = torch.mm(self.weight.flatten(1), x[0].flatten(1)).view(1, -1, *x.shape[2:])
            return out if c.bias is None else out + c.bias.view(1, -1, 1, 1)
        return F.conv2d(x, self.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)


def _fill_layout_maps(ace, entry, gamma_beta, rows, cols):
    """Write the maps of ``entry`` that depend on the layout, in the region ``rows`` × ``cols`` (slices).

    ``gamma_beta``: the SPADE branch's ``[γ_s; β_s]`` of that region, ``(1, 2Cn, h, w)``.
    With style: the bracket ``[1 + (1 − g)·γ_s + g·bias_γ; (1 − h)·β_s + h·bias_β]``; without:
    ``scale·(1 + γ_s)`` and ``offset·(1 + γ_s) + β_s`` with the noise offset of the region.
    """
    c = gamma_beta.shape[1] // 2
    gamma_s, beta_s = gamma_beta.chunk(2, dim=1)
    if ace.use_style:
        g, hh = entry["blend"]
        bracket = entry["bracket"].view(2 * c, *entry["hw"])
        bracket[:c, rows, cols] = (1.0 + (1.0 - g) * gamma_s + g * ace.conv_gamma.bias.view(1, c, 1, 1))[0]
        bracket[c:, rows, cols] = ((1.0 - hh) * beta_s + hh * ace.conv_beta.bias.view(1, c, 1, 1))[0]
    else:
        scale, shift = entry["bn"]
        offset = entry["noise"][:, :, rows, cols] * ace.noise_var.view(1, c, 1, 1) * scale + shift
        gain = 1.0 + gamma_s
        entry["scale"][:, :, rows, cols] = scale * gain
        entry["offset"][:, :, rows, cols] = offset * gain + beta_s


def _grow(box, margin, size):
    """``(r0, r1, c0, c1)`` grown by ``margin`` on every side and clipped to ``size = (h, w)``."""
    r0, r1, c0, c1 = box
    return max(r0 - margin, 0), min(r1 + margin, size[0]), max(c0 - margin, 0), min(c1 + margin, size[1])


def _crop(x, r0, r1, c0, c1):
    """``x[..., r0:r1, c0:c1]`` of a ``(B, C, H, W)`` map, zeros where the window leaves the map."""
    h, w = x.shape[2:]
    part = x[:, :, max(r0, 0):min(r1, h), max(c0, 0):min(c1, w)]
    return F.pad(part, (max(-c0, 0), max(c1 - w, 0), max(-r0, 0), max(r1 - h, 0)))


def _spade_region(spade, seg, r0, r1, c0, c1):
    """``spade(seg)[..., r0:r1, c0:c1]`` computed from the window of ``seg`` it depends on.

    Two 3×3 convolutions with zero padding: the hidden map is computed on
    rows ``r0 − 1 … r1`` (those inside the image; outside it is the second
    convolution's zero padding) from ``seg`` rows ``r0 − 2 … r1 + 1``.
    """
    h, w = seg.shape[2:]
    a0, a1, b0, b1 = _grow((r0, r1, c0, c1), 1, (h, w))
    hidden = spade.mlp_shared(_crop(seg, a0 - 1, a1 + 1, b0 - 1, b1 + 1))[:, :, 1:-1, 1:-1]  # rows a0:a1 exactly
    hidden = F.pad(hidden, (b0 - c0 + 1, c1 + 1 - b1, a0 - r0 + 1, r1 + 1 - a1))  # rows r0 − 1 … r1
    weight = torch.cat([spade.mlp_gamma.weight, spade.mlp_beta.weight])
    bias = torch.cat([spade.mlp_gamma.bias, spade.mlp_beta.bias])
    return F.conv2d(hidden, weight, bias)


def _unfold_region(seg, unfolded, box):
    """Rewrite the columns of ``unfolded = F.unfold(seg, 3, padding=1)[0]`` for the positions in ``box``."""
    j, h, w = seg.shape[1:]
    r0, r1, c0, c1 = box
    padded = _crop(seg, r0 - 1, r1 + 1, c0 - 1, c1 + 1)[0]
    view = unfolded.view(j, 9, h, w)
    for k in range(9):
        dy, dx = divmod(k, 3)
        view[:, k, r0:r1, c0:c1] = padded[:, dy:dy + r1 - r0, dx:dx + c1 - c0]


class _CachedACE(nn.Module):
    """Stand-in for one ACE layer of one layout.

    On its first call (``entry`` empty, inside the seeded recording pass) it
    draws the layer's noise exactly as ``ACE.add_noise`` does and fills
    ``entry`` with the layout constants; every call then evaluates the layer
    from them. ``layout`` holds the resized and the unfolded segmaps shared by
    all layers of one resolution.
    """

    def __init__(self, ace, entry, layout):
        super().__init__()
        self.ace = [ace]  # not registered as a submodule
        self.entry = entry
        self.layout = layout

    def _record(self, x, segmap):
        ace = self.ace[0]
        b, c, h, w = x.shape
        seg = F.interpolate(segmap, size=(h, w), mode="nearest")
        noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)  # as ACE.add_noise draws it
        bn = ace.param_free_norm
        scale = torch.rsqrt(bn.running_var + bn.eps)
        shift = -bn.running_mean * scale
        if bn.weight is not None:
            scale, shift = scale * bn.weight, shift * bn.weight + bn.bias
        scale, shift = scale.view(1, c, 1, 1), shift.view(1, c, 1, 1)
        entry = self.entry
        entry.update(hw=(h, w), noise=noise, bn=(scale, shift))
        seg = self.layout["seg"].setdefault((h, w), seg)  # shared by the layers of one resolution
        if ace.use_style:
            g, hh = torch.sigmoid(ace.blending_gamma), torch.sigmoid(ace.blending_beta)
            offset = noise * ace.noise_var.view(1, c, 1, 1) * scale + shift  # n = x·scale + offset
            entry.update(scale=scale, offset=offset, bracket=x.new_empty(2 * c, h * w), blend=(g, hh))
            if (h, w) not in self.layout["unfolded"]:
                self.layout["unfolded"][(h, w)] = F.unfold(seg, 3, padding=1)[0]  # (J·9, H·W), (j, k) order
        else:
            entry.update(scale=x.new_empty(1, c, h, w), offset=x.new_empty(1, c, h, w))
        _fill_layout_maps(ace, entry, ace.Spade(seg), slice(0, h), slice(0, w))

    def _style_kernels(self, codes):
        """``(2Cn, J, 9)`` kernels of the style modulation (``g``/``h`` folded in), updated in place.

        Only the rows of classes that are present in the layout and whose code
        changed since the last call are recomputed: GSAS, the per-class linear
        layer and the kernels of class j depend on code j alone.
        """
        ace, e = self.ace[0], self.entry
        changed = self.layout["changed"]
        if "kernels" not in e:
            c = ace.conv_gamma.out_channels
            e["kernels"] = codes.new_zeros(2 * c, codes.shape[1], ace.conv_gamma.weight[0, 0].numel())
        if changed.numel():
            g, h = e["blend"]
            fc = ace.fc_mu
            s = ace.Gsas(codes[:, changed])  # (1, S, 512): GSAS acts on each code vector alone
            mu = F.relu(torch.baddbmm(fc.bias[changed, :, None], fc.weight[changed], s.permute(1, 2, 0)))
            mu = mu.permute(2, 0, 1)  # (1, S, 512), as ace.style_vectors gives for these classes
            e["kernels"][:, changed] = torch.cat([torch.matmul(mu, ace.conv_gamma.weight.flatten(2)) * g,
                                                  torch.matmul(mu, ace.conv_beta.weight.flatten(2)) * h], dim=0)
        return e["kernels"]

    def forward(self, x, segmap, codes=None):
        if x.shape[0] != 1:
            raise InputError(f"the layout renderer draws one image at a time; got a batch of {x.shape[0]}")
        if not self.entry:
            self._record(x, segmap)
        e = self.entry
        b, c, h, w = x.shape
        if "bracket" not in e:
            return torch.addcmul(e["offset"], x, e["scale"])
        normalized = torch.addcmul(e["offset"], x, e["scale"])
        kernels = self._style_kernels(codes)
        unfolded = self.layout["unfolded"][(h, w)]
        gamma_beta = torch.addmm(e["bracket"], kernels.view(2 * c, -1), unfolded).view(1, 2 * c, h, w)
        return torch.addcmul(gamma_beta[:, c:], normalized, gamma_beta[:, :c])


class LayoutRenderer:
    """Render ``netG(segmap, codes)`` fast for layouts seen before.

    Args:
        netG: a ``SuperStyleNetGenerator`` in eval mode (on any device). It is
            not modified.
        seed: noise seed; the first render of a layout seeds torch's RNG
            (forked, so the caller's RNG state is untouched) and draws the
            noise as the generator's forward pass would, so results match
            ``editing.style_mixing.StyleMixer.generate`` with the same seed.
        max_layouts: how many layouts to keep (least recently used dropped).
            Memory per layout: about three float maps per ACE channel and
            pixel (about 400 MB at 256×256, ngf 64).

    ``render(key, segmap, codes)``: ``key`` any hashable naming the layout's
    cache slot, ``segmap`` ``(1, J, H, W)`` one-hot float,
    ``codes`` ``(1, J, 512)`` normalised codes, both on the model's device.
    Returns the ``(1, 3, H, W)`` image in [-1, 1]. A segmap that differs from
    the one last rendered under ``key`` (a painted label map) updates the
    cached layout where it differs (:meth:`_update_layout`); the noise stays.
    """

    def __init__(self, netG, seed=0, max_layouts=2):
        self.netG = netG
        self.seed = int(seed)
        self.max_layouts = max(1, int(max_layouts))
        self._ace_slots = _slots(netG, lambda m: isinstance(m, ACE))
        self._conv_slots = _slots(netG, lambda m: isinstance(m, nn.Conv2d) and _spectral_hook(m) is not None)
        self._frozen = None
        self._layouts = collections.OrderedDict()

    def clear(self):
        """Forget all cached layouts and frozen weights (call after changing the model's weights)."""
        self._layouts.clear()
        self._frozen = None

    def cached_layouts(self):
        """Keys of the cached layouts, least recently used first."""
        return list(self._layouts)

    def cache_bytes(self):
        """``{"layouts": bytes, "frozen_weights": bytes}`` held by the caches (tensor storage)."""
        from models.checkpoints import payload_bytes as size

        frozen = sum(f.weight.numel() * f.weight.element_size() for f in self._frozen or [])
        return {"layouts": size(list(self._layouts.values())), "frozen_weights": frozen}

    def _frozen_convs(self):
        if self._frozen is None:
            with torch.no_grad():
                self._frozen = [_FrozenConv(conv, _spectral_hook(conv)) for _, _, conv in self._conv_slots]
        return self._frozen

    def render(self, key, segmap, codes):
        """Generated image ``(1, 3, H, W)`` for ``segmap`` and ``codes`` (see the class docstring)."""
        if self.netG.training:
            raise ValueError("LayoutRenderer needs the generator in eval mode (running BatchNorm statistics)")
        if segmap.shape[0] != 1 or codes.shape[0] != 1:
            raise InputError(f"the layout renderer draws one image at a time; got segmap {tuple(segmap.shape)}, "
                             f"codes {tuple(codes.shape)}")
        layout = self._layouts.get(key)
        first = layout is None
        present = segmap[0].flatten(1).any(dim=1)
        if first:
            layout = {"segmap": segmap.clone(), "present": present, "seg": {}, "unfolded": {},
                      "changed": torch.nonzero(present)[:, 0], "entries": [{} for _ in self._ace_slots]}
            self._layouts[key] = layout
            while len(self._layouts) > self.max_layouts:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(key)
            # kernels of class j depend on code j only: recompute those of present classes whose code changed
            # or that were absent from the layout until now (their kernels were not kept up to date)
            stale = (codes[0] != layout["codes"][0]).any(dim=1) | ~layout["present"]
            layout["changed"] = torch.nonzero(present & stale)[:, 0]
            layout["present"] = present
        layout["codes"] = codes.clone()
        aces = [_CachedACE(ace, entry, layout) for (_, _, ace), entry in zip(self._ace_slots, layout["entries"])]
        done = False
        try:
            with torch.no_grad(), _swapped(self._ace_slots, aces), _swapped(self._conv_slots, self._frozen_convs()):
                if not first:
                    self._update_layout(layout, segmap)
                    out = self.netG(segmap, codes)
                else:
                    device = segmap.device
                    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                        torch.manual_seed(self.seed)
                        out = self.netG(segmap, codes)
            done = True
        finally:
            if not done:  # a half-recorded or half-updated layout must not be reused
                self._layouts.pop(key, None)
        return out

    def _update_layout(self, layout, segmap):
        """Bring a cached layout to ``segmap``, recomputing what depends on the label map where it differs.

        Per resolution, the bounding box of the changed pixels of the resized
        segmap is found; the unfolded segmap is rewritten there (grown by the
        3×3 window), and every ACE layer of that resolution recomputes its
        SPADE branch and its cached maps in the box grown by 2 (two 3×3
        convolutions). Nothing happens for an unchanged segmap.
        """
        if torch.equal(segmap, layout["segmap"]):
            return
        layout["segmap"].copy_(segmap)
        boxes = {}
        for (h, w), seg in layout["seg"].items():
            new = F.interpolate(segmap, size=(h, w), mode="nearest")
            changed = (new != seg).any(dim=1)[0]
            rows, cols = torch.nonzero(changed.any(dim=1))[:, 0], torch.nonzero(changed.any(dim=0))[:, 0]
            if not rows.numel():
                continue
            box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
            seg.copy_(new)
            if (h, w) in layout["unfolded"]:
                _unfold_region(seg, layout["unfolded"][(h, w)], _grow(box, 1, (h, w)))
            boxes[(h, w)] = box
        for (_, _, ace), entry in zip(self._ace_slots, layout["entries"]):
            box = boxes.get(entry["hw"])
            if box is not None:
                r0, r1, c0, c1 = _grow(box, 2, entry["hw"])
                gamma_beta = _spade_region(ace.Spade, layout["seg"][entry["hw"]], r0, r1, c0, c1)
                _fill_layout_maps(ace, entry, gamma_beta, slice(r0, r1), slice(c0, c1))
