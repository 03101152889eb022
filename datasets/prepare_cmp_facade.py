"""Prepare CMP Facade (base and extended): shifted label maps, train/test split, SPSE codes.

Raw layout: ``CMP_facade_DB_base.zip`` (folder ``base/``) and
``CMP_facade_DB_extended.zip`` (folder ``extended/``), each a flat folder of::

    cmp_b0001.jpg  cmp_b0001.png  cmp_b0001.xml      (base: cmp_b*, extended: cmp_x*)

Pass one or more such folders with ``--input_dirs``. Output::

    <out_dir>/{train,test}/images/<stem>.jpg    copied byte for byte (or resized with --size)
    <out_dir>/{train,test}/labels/<stem>.png    uint8 class map 0..11
    <out_dir>/{train,test}/codes/<stem>.npy     SPSE codes, label_nc = 12 (unless --skip_codes)
    <out_dir>/classes.txt

Labels: the raw ``cmp_*.png`` holds indices 1..12 (1 background, 2 facade,
3 window, ... 12 shop; see ``data/class_names.py``); they are stored as
0..11 (raw - 1). A value 0 or above 12 is reported as a failure naming the
file, unless ``--zero_label background`` maps 0 to class 0 as well.

Split: all stems of all input folders are sorted naturally (``cmp_b*`` before
``cmp_x*``) and the last ``--num_test`` (default 100) go to ``test``. The
SuperStyleNet paper does not state its split in a form we could verify; 100
is this project's default, not a published number.
"""
import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from data.image_io import natural_key, stem
from datasets import common
from data.class_names import CMP_FACADE, write_class_names
from util.cli import HelpFormatter
from util.errors import InputError

LABEL_NC = len(CMP_FACADE)  # 12


def shift_labels(raw, path, zero_label="error"):
    """Map raw CMP indices 1..12 to 0..11; 0 is an error or (``zero_label="background"``) class 0."""
    raw = np.asarray(raw)
    values = set(np.unique(raw).tolist())
    bad = sorted(v for v in values if v > LABEL_NC or (v == 0 and zero_label == "error"))
    if bad:
        hint = " (pass --zero_label background to map 0 to background)" if bad == [0] else ""
        raise InputError(f"{path}: label values {bad[:10]} are outside the CMP range 1..{LABEL_NC}{hint}")
    return np.where(raw == 0, 0, raw.astype(np.int64) - 1).astype(np.uint8)


def find_pairs(input_dirs, report):
    """``[(stem, image_path, label_path)]`` over all ``input_dirs``, naturally sorted by stem.

    Unpaired ``cmp_*`` files and stems found in two folders are recorded as
    failures. Raises :class:`InputError` when a folder is missing.
    """
    images, labels = {}, {}
    for folder in input_dirs:
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: folder not found")
        for name in os.listdir(folder):
            if not name.startswith("cmp_"):
                continue
            ext = os.path.splitext(name)[1].lower()
            table = {".jpg": images, ".png": labels}.get(ext)
            if table is None:
                continue
            s, path = stem(name), os.path.join(folder, name)
            if s in table:
                report.add("failed", f"{path}: duplicate stem {s!r} (also {table[s]})")
                continue
            table[s] = path
    pairs = []
    for s in sorted(set(images) | set(labels), key=natural_key):
        if s not in labels:
            report.add("failed", f"{images[s]}: no label map {s}.png next to it")
        elif s not in images:
            report.add("failed", f"{labels[s]}: no image {s}.jpg next to it")
        else:
            pairs.append((s, images[s], labels[s]))
    return pairs


def convert_sample(image_path, label_path, image_out, label_out, size, zero_label, overwrite):
    """Copy (or resize to size×size) one image and write its shifted label map; returns "written" or "skipped"."""
    return common.convert_pair(image_path, label_path, image_out, label_out,
                               lambda src_size: None if size is None else (size, size), LABEL_NC,
                               lambda raw, path: shift_labels(raw, path, zero_label), overwrite)


def prepare(input_dirs, out_dir, num_test=100, size=None, zero_label="error", workers=1, overwrite=False,
            progress=True):
    """Convert the CMP folders ``input_dirs`` into ``out_dir`` (no codes); returns a report."""
    report = common.PrepReport()
    pairs = find_pairs(input_dirs, report)
    if not pairs:
        raise InputError(f"{', '.join(map(str, input_dirs))}: no cmp_*.jpg / cmp_*.png pairs found")
    splits = common.split_train_test(pairs, num_test, "image/label pairs")
    tasks = []
    for split, members in splits.items():
        d = common.split_dirs(out_dir, split)
        tasks += [(convert_sample, (img, lab, os.path.join(d["images"], s + ".jpg"),
                                    os.path.join(d["labels"], s + ".png"), size, zero_label, overwrite))
                  for s, img, lab in members]
    common.run_tasks(tasks, report, workers=workers, progress=progress, desc="CMP Facade")
    for split, members in splits.items():
        common.warn_stale_outputs(out_dir, split, [s for s, _, _ in members], report)
    write_class_names(out_dir, CMP_FACADE)
    return report


def build_parser():
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--input_dirs", nargs="+", required=True, help="CMP folders (e.g. base extended)")
    p.add_argument("--num_test", type=common.nonnegative_int, default=100, help="number of test pairs (the last ones)")
    p.add_argument("--size", type=common.positive_int, default=None,
                   help="resize to SIZE x SIZE; when left out, keep the original size")
    p.add_argument("--zero_label", choices=("error", "background"), default="error",
                   help="what a raw label value 0 means (the format uses 1..12)")
    common.add_common_arguments(p)
    return p


def main(argv=None):
    """CLI entry point; returns the exit status (0 ok, 1 failures, 2 unusable input)."""
    opt = build_parser().parse_args(argv)

    def convert():
        return prepare(opt.input_dirs, opt.out_dir, num_test=opt.num_test, size=opt.size,
                       zero_label=opt.zero_label, workers=opt.workers, overwrite=opt.overwrite,
                       progress=not opt.no_progress)

    return common.run_preparation(convert, opt, ("train", "test"), LABEL_NC)


if __name__ == "__main__":
    sys.exit(main())
