"""Fast re-rendering of one label layout with changing style codes: :class:`LayoutRenderer`.

``LayoutRenderer(netG, seed, max_layouts).render(key, segmap, codes)``: ``segmap``
``(1, J, H, W)`` one-hot, ``codes`` ``(1, J, 512)`` normalised, both on the
model's device -> ``(1, 3, H, W)`` in [-1, 1]; batch size 1 only. The result
equals the generator's forward pass with the same noise seed up to float
rounding (``tests/test_editor.py``).

Per layout key it caches what depends on the label map alone (SPADE branch,
noise, batch norm with running statistics, the unfolded segmap, the
spectral-normalised weights), so a render runs only what depends on the
codes, and only for classes whose code changed. How the ACE layers are
folded for that: docs/editor.md, "How it stays fast". The model is never
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


class _CachedACE(nn.Module):
    """Stand-in for one ACE layer of one layout.

    On its first call (``entry`` empty, inside the seeded recording pass) it
    draws the layer's noise exactly as ``ACE.add_noise`` does and fills
    ``entry`` with the layout constants; every call then evaluates the layer
    from them. ``layout`` holds the one-hot segmap and the unfolded segmaps
    shared by all layers of one resolution.
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
        scale = scale.view(1, c, 1, 1)
        offset = noise * ace.noise_var.view(1, c, 1, 1) * scale + shift.view(1, c, 1, 1)  # n = x·scale + offset
        gamma_s, beta_s = ace.Spade(seg).chunk(2, dim=1)  # the SPADE branch gives [γ_s; β_s] in one tensor
        entry = self.entry
        if ace.use_style:
            g, hh = torch.sigmoid(ace.blending_gamma), torch.sigmoid(ace.blending_beta)
            bracket = torch.cat([1.0 + (1.0 - g) * gamma_s + g * ace.conv_gamma.bias.view(1, c, 1, 1),
                                 (1.0 - hh) * beta_s + hh * ace.conv_beta.bias.view(1, c, 1, 1)], dim=1)
            entry.update(scale=scale, offset=offset, bracket=bracket.view(2 * c, h * w), blend=(g, hh))
            key = (h, w)
            if key not in self.layout["unfolded"]:
                self.layout["unfolded"][key] = F.unfold(seg, 3, padding=1)[0]  # (J·9, H·W), (j, k) order
        else:
            gain = 1.0 + gamma_s
            entry.update(scale=scale * gain, offset=offset * gain + beta_s)

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

    ``render(key, segmap, codes)``: ``key`` any hashable naming the layout
    (same key = same segmap), ``segmap`` ``(1, J, H, W)`` one-hot float,
    ``codes`` ``(1, J, 512)`` normalised codes, both on the model's device.
    Returns the ``(1, 3, H, W)`` image in [-1, 1].
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
        def size(obj):
            if isinstance(obj, torch.Tensor):
                return obj.numel() * obj.element_size()
            if isinstance(obj, dict):
                return sum(size(v) for v in obj.values())
            if isinstance(obj, (list, tuple)):
                return sum(size(v) for v in obj)
            return 0

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
        if first:
            present = segmap[0].flatten(1).any(dim=1)
            layout = {"segmap": segmap, "present": present, "unfolded": {}, "changed": torch.nonzero(present)[:, 0],
                      "entries": [{} for _ in self._ace_slots]}
            self._layouts[key] = layout
            while len(self._layouts) > self.max_layouts:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(key)
            segmap = layout["segmap"]
            # kernels of class j depend on code j only: recompute those of present classes whose code changed
            layout["changed"] = torch.nonzero(layout["present"] & (codes[0] != layout["codes"][0]).any(dim=1))[:, 0]
        layout["codes"] = codes.clone()
        aces = [_CachedACE(ace, entry, layout) for (_, _, ace), entry in zip(self._ace_slots, layout["entries"])]
        done = False
        try:
            with torch.no_grad(), _swapped(self._ace_slots, aces), _swapped(self._conv_slots, self._frozen_convs()):
                if not first:
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
