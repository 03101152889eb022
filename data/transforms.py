"""SPADE-style preprocessing of image/label pairs, and the label pipeline.

:func:`get_params` draws one crop position and one flip decision per sample;
:func:`transform_image` (bicubic resampling) and :func:`transform_label`
(nearest neighbour, :func:`data.image_io.resize_label`) apply the same
geometry to both, so the pair stays aligned. Style codes are never flipped
(as in the release).

:func:`load_label` is the one label pipeline of the project (training, test
synthesis, style mixing and the editor): read (lossless single-channel maps
only) -> check the values (255 only with ``--contain_dontcare_label``) ->
resize/crop/flip -> don't care (255) becomes class ``label_nc``.

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

from data.image_io import DONTCARE_VALUE, check_label_values, read_label, resize_label
from util.images import to_unit_range

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


def _crop_box(opt, params, size_wh):
    """``(x, y, w, h)`` of the crop of ``opt.preprocess_mode`` in an image of ``size_wh``, or None."""
    if "crop" not in opt.preprocess_mode:
        return None
    x, y = params["crop_pos"]
    return x, y, min(opt.crop_size, size_wh[0]), min(opt.crop_size, size_wh[1])


def transform_image_uint8(image, opt, params, window_only=False):
    """``(H, W, 3)`` uint8 RGB array or PIL ``RGB`` image -> ``(output_nc, h, w)`` uint8 tensor.

    The geometry of :func:`transform_image`; :func:`util.images.normalise_image`
    of the result is exactly :func:`transform_image`'s. A PIL image gives the
    same result as its array, with two fewer copies. ``window_only=True``
    resamples only the crop window (Pillow's ``resize(box=...)``, 20 % less
    work at crop 256 of 286): Pillow places that window's filter taps in
    single precision, which moves about 1 value in 15,000 by one grey level,
    so the loader uses it only for photos that are already decoded at a
    reduced scale (:func:`data.image_io.read_rgb_image_at_least`).
    """
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if opt.output_nc == 1:
        pil = pil.convert("L")
    size = tuple(params["scaled_size"])
    box = _crop_box(opt, params, size)
    if size != pil.size:
        if window_only and box is not None:  # the crop window alone, already cropped
            x, y, cw, ch = box
            sx, sy = pil.size[0] / size[0], pil.size[1] / size[1]
            pil = pil.resize((cw, ch), Image.BICUBIC, box=(x * sx, y * sy, (x + cw) * sx, (y + ch) * sy))
            box = None
        else:
            pil = pil.resize(size, Image.BICUBIC)
    if box is not None:
        x, y, cw, ch = box
        pil = pil.crop((x, y, x + cw, y + ch))
    if params["flip"]:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(pil, dtype=np.uint8).reshape(pil.size[1], pil.size[0], -1)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def transform_image(image, opt, params, window_only=False):
    """``(H, W, 3)`` uint8 RGB array or PIL image -> ``(output_nc, h, w)`` float32 tensor in [-1, 1] (bicubic).

    With ``--output_nc 1`` the photo is converted to grey (PIL's ``L``: ITU-R 601 luma) first;
    ``window_only`` as :func:`transform_image_uint8`.
    """
    return to_unit_range(transform_image_uint8(image, opt, params, window_only).numpy())


def transform_label(label, opt, params):
    """``(H, W)`` integer class map -> ``(1, h, w)`` int64 tensor (nearest resampling, values unchanged)."""
    size = params["scaled_size"]
    label = resize_label(np.asarray(label), size, box=_crop_box(opt, params, size))
    if params["flip"]:
        label = label[:, ::-1]
    return torch.from_numpy(label.astype(np.int64))[None]


def load_label(path, opt, rng):
    """The label pipeline: label map file -> ``(label (1, h, w) int64 tensor, params)``.

    Reads ``path`` (:func:`data.image_io.read_label`: lossless single-channel
    maps only), checks its values against ``opt.label_nc`` (255 is accepted
    only with ``--contain_dontcare_label``), draws the geometry from ``rng``
    (:func:`get_params`, for the map's own size: in test synthesis a centred
    crop and no flip, so ``rng`` is not used), applies it and maps don't care
    (255) to class ``label_nc``. ``params`` is returned so that the photo of
    the pair gets the same geometry (:func:`transform_image`); it also holds
    ``label_size``, the ``(width, height)`` of the map as read. Raises
    :class:`util.errors.InputError` naming the file.
    """
    label = read_label(path)
    check_label_values(label, opt.label_nc, path, allow_dontcare=opt.contain_dontcare_label)
    params = get_params(opt, (label.shape[1], label.shape[0]), rng)
    params["label_size"] = (label.shape[1], label.shape[0])
    out = transform_label(label, opt, params)
    if out.numel() and int(out.max()) >= DONTCARE_VALUE:  # a max is far cheaper than the masked write
        out[out == DONTCARE_VALUE] = opt.label_nc
    return out, params
