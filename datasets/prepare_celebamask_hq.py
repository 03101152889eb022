"""Prepare CelebAMask-HQ: 19-class label maps, 512-px images, train/test split, SPSE codes.

Raw layout (the official download, unzipped under ``--root``)::

    CelebA-HQ-img/<idx>.jpg                                   (1024x1024, idx = 0..29999)
    CelebAMask-HQ-mask-anno/<idx // 2000>/<idx:05d>_<part>.png (512x512 binary part masks)

Output::

    <out_dir>/{train,test}/images/<idx>.jpg    RGB, resized to --size (bicubic)
    <out_dir>/{train,test}/labels/<idx>.png    uint8 class map 0..18, --size (nearest)
    <out_dir>/{train,test}/codes/<idx>.npy     SPSE codes (unless --skip_codes)
    <out_dir>/classes.txt

Label value ``j`` is part ``CELEBAMASK_HQ[j]`` (background = 0). Part masks are
painted in that order, so a later part overwrites an earlier one where they
overlap. A part without a mask file is simply absent. An index with no mask
file at all is reported as a failure.

Split: the indices found in ``CelebA-HQ-img`` are sorted numerically and the
last ``--num_test`` (default 2000) go to ``test``, the rest to ``train``. On
the full dataset this is the usual 28,000 / 2,000 split: test = 28000..29999.

Usage::

    python datasets/prepare_celebamask_hq.py --root /data/CelebAMask-HQ \
        --out_dir datasets/celebamask_hq [--num_test 2000] [--workers 8] [--skip_codes]
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from data.image_io import list_files, read_rgb, resize_label, resize_rgb, stem
from datasets import common
from data.class_names import CELEBAMASK_HQ, write_class_names
from util.cli import HelpFormatter
from util.errors import InputError
from util.io import save_image_atomic

IMAGE_FOLDER = "CelebA-HQ-img"
MASK_FOLDER = "CelebAMask-HQ-mask-anno"
IMAGES_PER_MASK_FOLDER = 2000
LABEL_NC = len(CELEBAMASK_HQ)


def mask_path(root, index, part):
    """Path of the mask of ``part`` for image ``index``: ``<root>/<MASK_FOLDER>/<index//2000>/<index:05d>_<part>.png``."""
    return os.path.join(os.fspath(root), MASK_FOLDER, str(index // IMAGES_PER_MASK_FOLDER),
                        f"{index:05d}_{part}.png")


def compose_label(root, index, size):
    """Paint the part masks of ``index`` into a ``(size, size)`` uint8 label map.

    Part ``j`` (``CELEBAMASK_HQ[j]``, j >= 1) is painted with value j in that
    order; masks are resized with nearest neighbour. Raises
    :class:`InputError` when a mask is unreadable or no mask file exists.
    """
    label = np.zeros((size, size), dtype=np.uint8)
    found = 0
    for j, part in enumerate(CELEBAMASK_HQ[1:], start=1):
        path = mask_path(root, index, part)
        if not os.path.exists(path):
            continue
        mask = common.read_binary_mask(path)
        if mask.shape != (size, size):
            mask = resize_label(mask.astype(np.uint8), (size, size)).astype(bool)
        label[mask] = j
        found += 1
    if not found:
        raise InputError(f"{mask_path(root, index, '<part>')}: no annotation mask found for image {index}")
    return label


def convert_sample(root, image_path, index, image_out, label_out, size, overwrite):
    """Write the resized image and composed label of one index; returns "written" or "skipped"."""
    if (not overwrite and common.is_valid_image(image_out, (size, size))
            and common.is_valid_label(label_out, LABEL_NC, (size, size))):
        return "skipped"
    label = compose_label(root, index, size)
    image = resize_rgb(read_rgb(image_path), (size, size))
    save_image_atomic(image_out, image)
    save_image_atomic(label_out, label)
    return "written"


def split_indices(indices, num_test):
    """Sorted indices -> ``{"train": [...], "test": [...]}``: the last ``num_test`` are the test set."""
    return common.split_train_test(sorted(indices), num_test, "images")


def prepare(root, out_dir, size=512, num_test=2000, image_ext=".jpg", workers=1, overwrite=False,
            progress=True):
    """Convert CelebAMask-HQ under ``root`` into ``out_dir`` (no codes); returns a :class:`common.PrepReport`."""
    report = common.PrepReport()
    image_dir = os.path.join(os.fspath(root), IMAGE_FOLDER)
    indices, paths = [], {}
    for p in list_files(image_dir, extensions=(".jpg", ".jpeg", ".png")):
        s = stem(p)
        if not s.isdigit():
            report.add("failed", f"{p}: file name is not a CelebA-HQ index (<idx>.jpg)")
            continue
        indices.append(int(s))
        paths[int(s)] = p
    splits = split_indices(indices, num_test)
    tasks = []
    for split, members in splits.items():
        d = common.split_dirs(out_dir, split)
        for index in members:
            tasks.append((convert_sample, (root, paths[index], index,
                                           os.path.join(d["images"], f"{index}{image_ext}"),
                                           os.path.join(d["labels"], f"{index}.png"), size, overwrite)))
    common.run_tasks(tasks, report, workers=workers, progress=progress, desc="CelebAMask-HQ")
    for split, members in splits.items():
        common.warn_stale_outputs(out_dir, split, [str(i) for i in members], report)
    write_class_names(out_dir, CELEBAMASK_HQ)
    return report


def build_parser():
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--root", required=True, help="folder holding CelebA-HQ-img and CelebAMask-HQ-mask-anno")
    p.add_argument("--size", type=common.positive_int, default=512, help="output side length in pixels")
    p.add_argument("--num_test", type=common.nonnegative_int, default=2000, help="number of test images (the highest indices)")
    p.add_argument("--image_format", choices=("jpg", "png"), default="jpg", help="output image format")
    common.add_common_arguments(p)
    return p


def main(argv=None):
    """CLI entry point; returns the exit status (0 ok, 1 failures, 2 unusable input)."""
    opt = build_parser().parse_args(argv)

    def convert():
        return prepare(opt.root, opt.out_dir, size=opt.size, num_test=opt.num_test,
                       image_ext="." + opt.image_format, workers=opt.workers, overwrite=opt.overwrite,
                       progress=not opt.no_progress)

    return common.run_preparation(convert, opt, ("train", "test"), LABEL_NC)


if __name__ == "__main__":
    sys.exit(main())
