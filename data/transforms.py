"""SPADE-style preprocessing of image/label pairs.

:func:`get_params` draws one crop position and one flip decision per sample;
:func:`apply_transform` applies the same geometry to the image (bicubic
resampling) and to the label map (nearest neighbour), so the pair stays
aligned. Style codes are never flipped (as in the release).

``preprocess_mode`` values:

* ``resize_and_crop``: resize to ``load_size`` x ``load_size``, then crop;
* ``scale_width`` / ``scale_shortside``: scale so that the width / short side
  equals ``load_size`` (keeping the aspect ratio);
* ``scale_width_and_crop`` / ``scale_shortside_and_crop``: as above, then crop;
* ``crop``: crop only;
* ``fixed``: resize to ``crop_size`` wide and ``round(crop_size / aspect_ratio)`` high;
* ``none``: keep the size, rounded to a multiple of 32.

Crops are ``crop_size`` square. In training the crop position is random; in
testing it is centred (the release also cropped at random when testing; a
centred crop makes test results repeatable, and with the default
``load_size == crop_size`` nothing is cropped anyway).
"""
import numpy as np
import torch
from PIL import Image

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop",
                    "scale_shortside", "scale_shortside_and_crop", "fixed", "none")


def scaled_size(opt, size):
    """Size ``(w, h)`` after the scaling step of ``opt.preprocess_mode`` for an input of ``size`` (w, h)."""
    w, h = size
    mode = opt.preprocess_mode
    if mode == "resize_and_crop":
        return opt.load_size, opt.load_size
    if mode in ("scale_width", "scale_width_and_crop"):
        return opt.load_size, max(1, int(round(opt.load_size * h / w)))
    if mode in ("scale_shortside", "scale_shortside_and_crop"):
        ss, ls = min(w, h), max(w, h)
        long_new = max(1, int(round(opt.load_size * ls / ss)))
        return (opt.load_size, long_new) if w <= h else (long_new, opt.load_size)
    if mode == "fixed":
        return opt.crop_size, max(1, int(round(opt.crop_size / opt.aspect_ratio)))
    if mode == "none":
        return max(32, int(round(w / 32)) * 32), max(32, int(round(h / 32)) * 32)
    if mode == "crop":
        return w, h
    raise ValueError(f"unknown preprocess_mode {mode!r}; choose from {PREPROCESS_MODES}")


def get_params(opt, size, rng):
    """Draw the random geometry for one sample.

    ``size`` is the input ``(w, h)`` in pixels; ``rng`` a ``numpy.random.Generator``.
    Returns ``{"scaled_size": (w, h), "crop_pos": (x, y), "flip": bool}`` in pixels of the
    scaled image. Both members of a pair are scaled to ``scaled_size`` (computed from
    ``size``, normally the label's), so an image stored at another resolution with the
    same aspect ratio stays aligned with its label.
    """
    new_w, new_h = scaled_size(opt, size)
    if opt.isTrain:
        x = int(rng.integers(0, max(0, new_w - opt.crop_size) + 1))
        y = int(rng.integers(0, max(0, new_h - opt.crop_size) + 1))
        flip = bool(rng.random() > 0.5) and not opt.no_flip
    else:
        x = max(0, new_w - opt.crop_size) // 2
        y = max(0, new_h - opt.crop_size) // 2
        flip = False
    return {"scaled_size": (new_w, new_h), "crop_pos": (x, y), "flip": flip}


def _geometry(pil, opt, params, resample):
    size = tuple(params["scaled_size"])
    if size != pil.size:
        pil = pil.resize(size, resample)
    if "crop" in opt.preprocess_mode:
        x, y = params["crop_pos"]
        cw, ch = min(opt.crop_size, pil.size[0]), min(opt.crop_size, pil.size[1])
        pil = pil.crop((x, y, x + cw, y + ch))
    if params["flip"]:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    return pil


def transform_image(image, opt, params):
    """``(H, W, 3)`` uint8 RGB array -> ``(3, h, w)`` float32 tensor in [-1, 1] (bicubic resampling)."""
    pil = _geometry(Image.fromarray(np.asarray(image, dtype=np.uint8)), opt, params, Image.BICUBIC)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()) * 2.0 - 1.0


def transform_label(label, opt, params):
    """``(H, W)`` integer class map -> ``(1, h, w)`` int64 tensor (nearest resampling, values unchanged)."""
    label = np.asarray(label)
    if label.max(initial=0) > 255 or label.min(initial=0) < 0:
        raise ValueError("label values must lie in 0..255 for resampling")
    pil = _geometry(Image.fromarray(label.astype(np.uint8)), opt, params, Image.NEAREST)
    return torch.from_numpy(np.asarray(pil, dtype=np.int64).copy())[None]
