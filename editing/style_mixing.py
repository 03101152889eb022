"""Style mixing and editing: per-class operations on style codes, and generation from them.

Style codes are ``(J, 512)`` arrays, one row per semantic class (see
``data/codes.py``). The functions here work on *raw* codes (values in about
[0, 1], as stored in code files and returned by SPSE); the generator's
normalisation ``(x - 0.5) / 0.5`` is affine, so mixing raw or normalised codes
gives the same result. Every function accepts numpy arrays or torch tensors,
``(J, 512)`` or batched ``(B, J, 512)``, and returns a new array of the same
kind (inputs are never modified).

* :func:`replace_class_codes`: rows of the chosen classes come from another
  code set (style transfer for those regions);
* :func:`interpolate_class_codes`: rows of the chosen classes are blended,
  ``(1 - alpha) * a + alpha * b``, exactly ``a`` at alpha 0 and exactly ``b``
  at alpha 1;
* :func:`shift_class_colour`: a simple edit that adds an RGB offset to the
  chosen classes' codes (SPSE codes are mean superpixel colours laid out as
  resampled R, G, B sequences, so the first, middle and last thirds of a row
  follow the R, G and B means).

:class:`StyleMixer` wraps a loaded generator and renders label maps with
(mixed) codes, with the same noise for every call so that images differ only
through their codes.
"""
import numpy as np
import torch
from tqdm import tqdm

from data.codes import STYLE_DIM, load_codes, model_codes
from data.transforms import load_label
from util.errors import InputError, OptionError
from util.images import tensor2im


def _check_pair(a, b):
    if tuple(a.shape) != tuple(b.shape):
        raise InputError(f"style codes differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim not in (2, 3) or a.shape[-1] != STYLE_DIM:
        raise InputError(f"style codes must be (J, {STYLE_DIM}) or (B, J, {STYLE_DIM}); got {tuple(a.shape)}")


def _check_classes(classes, n_rows):
    classes = [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < n_rows]
    if bad:
        raise OptionError(f"classes {bad} are out of range for codes with {n_rows} classes")
    return classes


def _copy(x):
    return x.clone() if isinstance(x, torch.Tensor) else np.array(x, copy=True)


def replace_class_codes(codes, style_codes, classes):
    """Return ``codes`` with the rows of ``classes`` taken from ``style_codes``.

    ``codes`` and ``style_codes``: ``(J, 512)`` or ``(B, J, 512)`` of the same
    shape (numpy or torch); ``classes``: iterable of class indices.
    """
    _check_pair(codes, style_codes)
    classes = _check_classes(classes, codes.shape[-2])
    out = _copy(codes)
    out[..., classes, :] = style_codes[..., classes, :]
    return out


def interpolate_class_codes(codes_a, codes_b, classes, alpha):
    """Blend the rows of ``classes``: ``(1 - alpha) * a + alpha * b``; other rows stay ``a``.

    The blend uses ``a + alpha * (b - a)`` for ``alpha < 0.5`` and
    ``b - (1 - alpha) * (b - a)`` otherwise (as ``torch.lerp``), so alpha = 0
    gives ``a`` and alpha = 1 gives ``b`` bit for bit. Alpha outside [0, 1]
    extrapolates.
    """
    _check_pair(codes_a, codes_b)
    classes = _check_classes(classes, codes_a.shape[-2])
    alpha = float(alpha)
    out = _copy(codes_a)
    a, b = codes_a[..., classes, :], codes_b[..., classes, :]
    out[..., classes, :] = a + alpha * (b - a) if alpha < 0.5 else b - (1.0 - alpha) * (b - a)
    return out


def code_channel_slices(length=STYLE_DIM):
    """The three index ranges of a code row that follow the R, G and B superpixel means."""
    edges = np.linspace(0, length, 4).round().astype(int)
    return [slice(edges[i], edges[i + 1]) for i in range(3)]


def shift_class_colour(codes, classes, rgb_offset):
    """Add ``rgb_offset`` (3 floats, raw code units = colour in [0, 1]) to the codes of ``classes``.

    Offsets apply to the R, G and B thirds of each row (:func:`code_channel_slices`).
    Rows of absent classes (all zeros) are left unchanged. Results are clipped to [0, 1].
    """
    if codes.ndim not in (2, 3) or codes.shape[-1] != STYLE_DIM:
        raise InputError(f"style codes must be (J, {STYLE_DIM}) or (B, J, {STYLE_DIM}); got {tuple(codes.shape)}")
    classes = _check_classes(classes, codes.shape[-2])
    offset = [float(v) for v in rgb_offset]
    if len(offset) != 3:
        raise OptionError(f"rgb_offset needs 3 values, got {len(offset)}")
    out = codes.clone().contiguous() if isinstance(codes, torch.Tensor) else np.array(codes, copy=True)
    rows = out.reshape(-1, codes.shape[-2], codes.shape[-1])  # a view of ``out``
    for b in range(rows.shape[0]):
        for c in classes:
            if not bool((rows[b, c] != 0).any()):
                continue
            for sl, off in zip(code_channel_slices(codes.shape[-1]), offset):
                shifted = rows[b, c, sl] + off
                rows[b, c, sl] = shifted.clamp(0, 1) if isinstance(shifted, torch.Tensor) else np.clip(shifted, 0, 1)
    return out


def normalise_codes(raw, semantic_nc):
    """Raw ``(label_nc or semantic_nc, 512)`` codes -> normalised ``(semantic_nc, 512)`` float32 tensor.

    The data loader's rule (:func:`data.codes.model_codes`): ``(x - 0.5) / 0.5``;
    with a don't-care class the missing last row is a zero raw code (normalised
    to -1), as for an absent class.
    """
    return torch.from_numpy(model_codes(raw, semantic_nc))


class StyleMixer:
    """Render label maps with given style codes through a loaded generator.

    Args:
        model: a ``SuperStyleNetModel`` (its ``netG`` carries the weights), in
            eval mode, on any device.
        opt: its options (``label_nc``, ``semantic_nc``, ``contain_dontcare_label``
            and the preprocessing flags used by ``test.py``).
        seed: seed of the generator's noise; every call uses the same noise.
    """

    def __init__(self, model, opt, seed=0):
        self.model = model.eval()
        self.opt = opt
        self.seed = int(seed)

    @property
    def label_nc(self):
        """Number of label classes (without don't care)."""
        return int(self.opt.label_nc)

    def load_label(self, path):
        """A label map through the label pipeline of test synthesis -> ``(1, H, W)`` int64 tensor.

        :func:`data.transforms.load_label`, as the dataset of ``test.py`` uses it.
        """
        return load_label(path, self.opt, np.random.default_rng(0))[0]

    def load_codes(self, path):
        """Raw ``(label_nc, 512)`` codes of a code file (either layout); errors name the file."""
        return load_codes(path, (self.label_nc, self.opt.semantic_nc))[: self.label_nc]

    def generate(self, label, raw_codes, name="mix"):
        """Generate one image: ``label`` ``(1, H, W)`` int64, ``raw_codes`` ``(label_nc, 512)``.

        Returns an ``(H, W, 3)`` uint8 array. The noise is drawn from a
        generator seeded with ``seed`` on every call.
        """
        device = self.model.device()
        data = {"label": label[None], "codes": normalise_codes(raw_codes, self.opt.semantic_nc)[None],
                "path": [name]}
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            if device.type == "cuda":
                torch.cuda.manual_seed(self.seed)
            out = self.model(data, "inference")
        return tensor2im(out[0])


def mix_grid(mixer, sources, styles, classes, alphas=(1.0,), progress=True):
    """Render every (source, style, alpha) combination.

    ``sources``: list of ``(name, label (1, H, W) tensor, raw codes)``;
    ``styles``: list of ``(name, raw codes)``; ``classes``: class indices;
    ``alphas``: blend factors (1 = replace). Returns ``{"reconstruction":
    {source: image}, "mixed": {(source, style, alpha): image}}`` with
    ``(H, W, 3)`` uint8 images.
    """
    out = {"reconstruction": {}, "mixed": {}}
    total = len(sources) * (1 + len(styles) * len(alphas))
    bar = tqdm(total=total, desc="mixing", disable=not progress, unit="img")
    try:
        for src_name, label, codes in sources:
            out["reconstruction"][src_name] = mixer.generate(label, codes, src_name)
            bar.update()
            for style_name, style_codes in styles:
                for alpha in alphas:
                    mixed = interpolate_class_codes(codes, style_codes, classes, alpha)
                    out["mixed"][(src_name, style_name, alpha)] = mixer.generate(label, mixed, src_name)
                    bar.update()
    finally:
        bar.close()
    return out
