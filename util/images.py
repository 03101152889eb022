"""Tensor-to-image conversion and label colourisation for result pages (no project imports)."""
import numpy as np
import torch


def to_unit_range(arr):
    """uint8 array (any shape) -> float32 tensor ``x / 255 * 2 - 1``, computed in float32."""
    return torch.from_numpy(np.asarray(arr, dtype=np.float32) / 255.0) * 2.0 - 1.0


# float32 value of each uint8 level, by the arithmetic of to_unit_range (a table: exact on any device)
_LEVELS = to_unit_range(np.arange(256, dtype=np.uint8))
_LEVELS_ON = {torch.device("cpu"): _LEVELS}  # device -> the table there


def normalise_image(image, dtype=torch.float32):
    """uint8 tensor (any shape, any device) -> ``dtype`` tensor in [-1, 1] on the same device.

    Looks every level up in a 256-entry float32 table computed by the host
    arithmetic of :func:`data.transforms.transform_image` (``x / 255 * 2 - 1`` in float32), so
    a batch of :func:`data.transforms.transform_image_uint8` images normalised on a GPU equals
    the batch :func:`data.transforms.transform_image` builds on the host bit for bit (and a
    device's own division, which may multiply by the reciprocal, never enters).
    """
    levels = _LEVELS_ON.get(image.device)
    if levels is None:  # copied to each device once (a copy from pageable memory would wait for the device)
        levels = _LEVELS_ON[image.device] = _LEVELS.to(image.device)
    return levels[image.long()].to(dtype)


def tensor2im(image):
    """``(C, H, W)`` or ``(B, C, H, W)`` tensor in [-1, 1] (or uint8 levels) -> ``(H, W, 3)`` / ``(B, H, W, 3)`` uint8 array.

    ``C`` is 3 (RGB) or 1 (grey, ``--output_nc 1``), which is repeated into the three channels.
    """
    if image.dtype == torch.uint8:  # levels as the loader of a GPU run carries them
        arr = image.detach().cpu().numpy()
    else:
        arr = image.detach().float().cpu().clamp(-1, 1)
        arr = ((arr + 1.0) * 127.5).round().to(torch.uint8).numpy()
    arr = np.moveaxis(arr, -3, -1)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def label_colormap(n):
    """``(n, 3)`` uint8 palette: the PASCAL VOC bit-interleaving scheme (class 0 black)."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def tensor2label(label, n_classes):
    """Class map ``(1, H, W)`` / ``(H, W)`` (or ``(B, 1, H, W)``) int tensor -> uint8 RGB colour image(s).

    Class ``n_classes - 1`` is the don't-care class when present; values are
    clipped into ``0..n_classes-1``.
    """
    arr = label.detach().cpu().long().numpy()
    if arr.ndim >= 3 and arr.shape[-3] == 1:
        arr = arr[..., 0, :, :]
    arr = np.clip(arr, 0, max(n_classes - 1, 0))
    return label_colormap(max(n_classes, 1))[arr]
