"""The demo's sample set, which needs no download (``scripts/demo.py``).

:func:`build_sample_dataset` uses colour photographs bundled with
scikit-image (astronaut, chelsea, coffee, rocket, ...; all ship inside the package). They come with no
semantic annotation, so the label maps are made, deterministically, by colour
clustering: every photo is resized, converted to CIELAB, and each pixel gets
the index of the nearest of ``label_nc`` cluster centres. The centres come
from k-means (fixed seed) on the pixels of all photos together, so a class
means "this kind of colour" in every image. A 5x5 majority (mode) filter
removes speckle. These are colour regions, not object classes; they are
enough to show the whole chain and that the model learns to reconstruct its
inputs from label maps and style codes.
"""
import os

import numpy as np
from PIL import Image

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
