"""Prepare Cityscapes (gtFine): flat image/label folders per split, SPSE codes.

Raw layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``
unzipped under ``--root``)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Output (the stem ``<city>_<seq>_<frame>`` is shared by image, label and code)::

    <out_dir>/<split>/images/<stem>.png
    <out_dir>/<split>/labels/<stem>.png     labelIds, values 0..33
    <out_dir>/<split>/codes/<stem>.npy      SPSE codes, label_nc = 35 (unless --skip_codes)
    <out_dir>/classes.txt                   35 names (id 34 is an unused slot)

Label count: ``*_gtFine_labelIds.png`` holds cityscapesScripts' label ids
0..33 (34 values). The "license plate" class has id -1 and is never written
to labelIds images. SPADE (and SuperStyleNet, which uses its data setup) set
``label_nc = 35`` for Cityscapes, so id 34 is an unused class; train with
``--label_nc 35`` and without ``--contain_dontcare_label``. Any label value
>= 35 is reported as a failure naming the file.

Splits: ``--splits train,val`` by default (``test`` has no public labels; the
usual evaluation uses ``val``). ``--width W`` resizes image (bicubic) and
label (nearest) to width W keeping the aspect ratio (2048x1024 -> W x W/2);
by default the files keep their original size and images are copied byte for
byte.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from data.image_io import natural_key
from datasets import common
from data.class_names import CITYSCAPES, write_class_names
from util.cli import HelpFormatter
from util.errors import InputError

LABEL_NC = len(CITYSCAPES)  # 35
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def find_pairs(root, split, report):
    """``[(stem, image_path, label_path)]`` of one split, naturally sorted by ``<city>/<stem>``.

    Images without a labelIds file and labelIds files without an image are
    recorded as failures in ``report``. Raises :class:`InputError` when the
    split folder of images is missing.
    """
    image_root = os.path.join(os.fspath(root), "leftImg8bit", split)
    label_root = os.path.join(os.fspath(root), "gtFine", split)
    if not os.path.isdir(image_root):
        raise InputError(f"{image_root}: folder not found (expected leftImg8bit/{split}/<city>/)")
    images, labels = {}, {}
    for folder, suffix, table in ((image_root, IMAGE_SUFFIX, images), (label_root, LABEL_SUFFIX, labels)):
        if not os.path.isdir(folder):
            continue
        for city in sorted(os.listdir(folder)):
            city_dir = os.path.join(folder, city)
            if not os.path.isdir(city_dir):
                continue
            for name in os.listdir(city_dir):
                if name.endswith(suffix):
                    base = name[: -len(suffix)]
                    if base in table:
                        report.add("failed", f"{os.path.join(city_dir, name)}: duplicate stem {base!r} "
                                             f"(also {table[base]})")
                        continue
                    table[base] = os.path.join(city_dir, name)
    pairs = []
    for base in sorted(set(images) | set(labels),
                       key=lambda b: natural_key(os.path.relpath(images.get(b) or labels[b], root))):
        if base not in labels:
            report.add("failed", f"{images[base]}: no labelIds file "
                                 f"{os.path.join(label_root, base.split('_')[0], base + LABEL_SUFFIX)}")
        elif base not in images:
            report.add("failed", f"{labels[base]}: no matching image {base + IMAGE_SUFFIX}")
        else:
            pairs.append((base, images[base], labels[base]))
    return pairs


def map_label_ids(raw, path):
    """Check that a labelIds map holds Cityscapes ids only; returns it as uint8."""
    bad = [int(v) for v in np.unique(raw) if v >= LABEL_NC]
    if bad:
        raise InputError(f"{path}: label values {bad[:10]} are not Cityscapes labelIds "
                         f"(expected 0..33 for label_nc={LABEL_NC})")
    return raw.astype("uint8")


def convert_sample(image_path, label_path, image_out, label_out, width, overwrite):
    """Copy (or resize to ``width``, keeping the aspect ratio) one image and its labelIds map.

    Returns "written" or "skipped".
    """
    def target_size(src_size):
        return None if width is None else (width, max(1, round(width * src_size[1] / src_size[0])))

    return common.convert_pair(image_path, label_path, image_out, label_out, target_size, LABEL_NC,
                               map_label_ids, overwrite)


def prepare(root, out_dir, splits=("train", "val"), width=None, workers=1, overwrite=False, progress=True):
    """Convert the Cityscapes ``splits`` under ``root`` into ``out_dir`` (no codes); returns a report."""
    report = common.PrepReport()
    for split in splits:
        pairs = find_pairs(root, split, report)
        d = common.split_dirs(out_dir, split)
        tasks = [(convert_sample, (img, lab, os.path.join(d["images"], base + ".png"),
                                   os.path.join(d["labels"], base + ".png"), width, overwrite))
                 for base, img, lab in pairs]
        common.run_tasks(tasks, report, workers=workers, progress=progress, desc=f"Cityscapes {split}")
        common.warn_stale_outputs(out_dir, split, [base for base, _, _ in pairs], report)
    write_class_names(out_dir, CITYSCAPES)
    return report


def build_parser():
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--root", required=True, help="folder holding leftImg8bit/ and gtFine/")
    p.add_argument("--splits", default="train,val", help="comma-separated splits")
    p.add_argument("--width", type=common.positive_int, default=None,
                   help="resize to this width keeping the aspect ratio; when left out, keep the original size")
    common.add_common_arguments(p)
    return p


def main(argv=None):
    """CLI entry point; returns the exit status (0 ok, 1 failures, 2 unusable input)."""
    opt = build_parser().parse_args(argv)
    splits = [s.strip() for s in opt.splits.split(",") if s.strip()]

    def convert():
        return prepare(opt.root, opt.out_dir, splits=splits, width=opt.width, workers=opt.workers,
                       overwrite=opt.overwrite, progress=not opt.no_progress)

    return common.run_preparation(convert, opt, splits, LABEL_NC)


if __name__ == "__main__":
    sys.exit(main())
