"""Synthetic test data (random boxes and discs of ``label_nc`` classes, stand-in codes) and a noise-free model.

:func:`build_synthetic_dataset` writes ``images/``, ``labels/`` and ``codes/``
folders; each class has its own colour plus a left-right gradient and noise.
:func:`mean_colour_codes` gives cheap stand-in codes (each class's mean RGB,
repeated along the 512 entries) instead of SPSE. :func:`noise_free_model`
builds the model a training command line would, with ACE's noise scale
frozen at 0, for tests that compare runs whose noise draws differ.
"""
import os

import numpy as np

from data.codes import STYLE_DIM, save_codes
from util.io import save_image_atomic


def synthetic_pair(rng, size, label_nc, palette):
    """One random (image (size, size, 3) uint8, label (size, size) uint8) pair of boxes and discs."""
    label = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(int(rng.integers(3, 7))):
        c = int(rng.integers(0, label_nc))
        cy, cx = rng.integers(0, size, 2)
        r = int(rng.integers(size // 8, size // 3))
        if rng.random() < 0.5:
            label[(abs(yy - cy) < r) & (abs(xx - cx) < r)] = c
        else:
            label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = c
    image = palette[label].astype(np.float32)
    shade = (xx / size * 40.0 - 20.0)[..., None]  # a left-right gradient so flips matter
    image = np.clip(image + shade + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    return image, label


def mean_colour_codes(image, label, label_nc):
    """Stand-in style codes (label_nc, 512) in [0, 1]: each present class's mean R, G, B, each repeated.

    Absent classes are zeros, as in SPSE. (SPSE's codes are mean superpixel colours too.)
    """
    codes = np.zeros((label_nc, STYLE_DIM), np.float32)
    thirds = np.array_split(np.arange(STYLE_DIM), 3)
    for c in range(label_nc):
        m = label == c
        if m.any():
            mean = image[m].reshape(-1, 3).mean(0) / 255.0
            for ch in range(3):
                codes[c, thirds[ch]] = mean[ch]
    return codes


def build_synthetic_dataset(root, n=4, size=32, label_nc=4, seed=0, layout="lean"):
    """Write ``n`` synthetic pairs and their stand-in codes under ``root``.

    Returns ``(image_dir, label_dir, code_dir)``; files are ``img<i>.png`` / ``img<i>.npy``.
    """
    rng = np.random.default_rng(seed)
    palette = rng.integers(20, 236, size=(max(label_nc, 1), 3))
    dirs = [os.path.join(root, d) for d in ("images", "labels", "codes")]
    for i in range(n):
        image, label = synthetic_pair(rng, size, label_nc, palette)
        save_image_atomic(os.path.join(dirs[0], f"img{i}.png"), image)
        save_image_atomic(os.path.join(dirs[1], f"img{i}.png"), label)
        save_codes(os.path.join(dirs[2], f"img{i}.npy"), mean_colour_codes(image, label, label_nc), layout)
    return tuple(dirs)


def noise_free_model(train_argv, seed, dtype=None):
    """The model ``train.main(train_argv)`` would build, with every ACE ``noise_var`` frozen at its initial 0.

    The weights are drawn after ``torch.manual_seed(seed)``. Frozen parameters
    get no gradient and are not optimised, so no noise is ever injected: runs
    whose noise draws differ (1 against 2 processes, training against
    test.py) then compute the same images. ``dtype`` (e.g. ``torch.float64``)
    converts the model.
    """
    import torch

    from models import create_model
    from options import build_options

    opt = build_options(True, train_argv)
    torch.manual_seed(seed)
    model = create_model(opt)
    for name, p in model.named_parameters():
        if name.endswith("noise_var"):
            p.requires_grad_(False)
    return model if dtype is None else model.to(dtype)
