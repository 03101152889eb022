"""Tensor-to-image conversion and label colourisation for result pages (no project imports)."""
import numpy as np
import torch


def tensor2im(image):
    """``(C, H, W)`` or ``(B, C, H, W)`` tensor in [-1, 1] -> ``(H, W, 3)`` / ``(B, H, W, 3)`` uint8 array.

    ``C`` is 3 (RGB) or 1 (grey, ``--output_nc 1``), which is repeated into the three channels.
    """
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
