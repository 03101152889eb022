"""Small datasets that need no download: the demo's sample set and synthetic test data.

Sample set (:func:`build_sample_dataset`): colour photographs bundled with
scikit-image (astronaut, chelsea, coffee, rocket, ...; all ship inside the package). They come with no
semantic annotation, so the label maps are made, deterministically, by colour
clustering: every photo is resized, converted to CIELAB, and each pixel gets
the index of the nearest of ``label_nc`` cluster centres. The centres come
from k-means (fixed seed) on the pixels of all photos together, so a class
means "this kind of colour" in every image. A 5x5 majority (mode) filter
removes speckle. These are colour regions, not object classes; they are
enough to show the whole chain and that the model learns to reconstruct its
inputs from label maps and style codes.

Synthetic set (:func:`build_synthetic_dataset`): random axis-aligned boxes
and discs of ``label_nc`` classes, each class with its own colour and some
noise. :func:`mean_colour_codes` gives cheap stand-in codes for tests (each
class's mean RGB, repeated along the 512 entries); the demo uses real SPSE.
"""
import os

import numpy as np
from PIL import Image

from data.codes import STYLE_DIM, save_codes
from util.io import save_image_atomic

SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle", "retina",
                 "colorwheel")


def _skimage_photo(name):
    from skimage import data as skdata

    loader = {"astronaut": skdata.astronaut, "chelsea": skdata.chelsea, "coffee": skdata.coffee,
              "rocket": skdata.rocket, "immunohistochemistry": skdata.immunohistochemistry,
              "motorcycle": lambda: skdata.stereo_motorcycle()[0], "retina": skdata.retina, "colorwheel": skdata.colorwheel}[name]
    return np.asarray(loader())[..., :3]


def _square_resize(image, size):
    """Centre-crop to a square, resize to ``size`` x ``size`` (bicubic); uint8 RGB."""
    h, w = image.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    pil = Image.fromarray(np.ascontiguousarray(image[y:y + s, x:x + s]))
    return np.asarray(pil.resize((size, size), Image.BICUBIC))


def _mode_filter(label, n_classes, radius=2):
    """Majority vote over a (2r+1)^2 window (ties go to the lower class)."""
    from scipy.ndimage import uniform_filter

    votes = np.stack([uniform_filter((label == c).astype(np.float32), size=2 * radius + 1, mode="nearest")
                      for c in range(n_classes)])
    return votes.argmax(0).astype(np.uint8)


def colour_cluster_labels(images, label_nc, seed=0):
    """Deterministic label maps for ``images`` (list of (H, W, 3) uint8) by Lab k-means; list of (H, W) uint8."""
    from scipy.cluster.vq import kmeans2
    from skimage.color import rgb2lab

    labs = [rgb2lab(im).reshape(-1, 3) for im in images]
    rng = np.random.default_rng(seed)
    sample = np.concatenate([lab[rng.choice(len(lab), min(len(lab), 4000), replace=False)] for lab in labs])
    centres, _ = kmeans2(sample, label_nc, iter=30, seed=seed, minit="++")
    order = np.argsort(centres[:, 0])  # class 0 = darkest cluster, for a stable numbering
    centres = centres[order]
    labels = []
    for im, lab in zip(images, labs):
        d = ((lab[:, None, :] - centres[None]) ** 2).sum(-1)
        lbl = d.argmin(1).reshape(im.shape[:2]).astype(np.uint8)
        labels.append(_mode_filter(lbl, label_nc))
    return labels


def build_sample_dataset(root, size=128, label_nc=6, names=SAMPLE_IMAGES, seed=0):
    """Write ``root/images/<name>.png`` and ``root/labels/<name>.png`` from scikit-image photos.

    Returns ``(image_dir, label_dir)``. Deterministic for a given ``seed``.
    """
    image_dir, label_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    images = [_square_resize(_skimage_photo(n), size) for n in names]
    labels = colour_cluster_labels(images, label_nc, seed=seed)
    for n, im, lb in zip(names, images, labels):
        save_image_atomic(os.path.join(image_dir, f"{n}.png"), im)
        save_image_atomic(os.path.join(label_dir, f"{n}.png"), lb)
    return image_dir, label_dir


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

    Absent classes are zeros, as in SPSE. Used by tests, not by the demo.
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
