"""Helpers shared by the dataset preparation scripts (``datasets/prepare_*.py``).

Every script converts a raw download into ``<out>/<split>/{images,labels}``
(plus ``codes`` from SPSE) with the same guarantees:

* every output file is written atomically (``util/io.py``);
* a re-run skips outputs that already exist and are valid (they decode, have
  the expected size, and labels hold only values ``< label_nc``), so their
  contents and modification times do not change; ``--overwrite`` redoes them;
* a bad or missing input is reported with its file name and the job goes on;
  the script exits with status 1 at the end when anything failed;
* ``classes.txt`` (see ``data/class_names.py``) is written to ``<out>``.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.image_io import read_label, read_rgb, resize_label, resize_rgb
from spse.job import extract_dataset
from util import parallel
from util.errors import InputError, OptionError
from util.io import save_image_atomic, write_bytes_atomic, write_text_atomic

SPLIT_FOLDERS = ("images", "labels", "codes")


class PrepReport:
    """Counts and messages of one preparation run.

    ``written`` / ``skipped`` / ``failed`` count samples (image + label pairs);
    ``failures`` and ``warnings`` are messages naming the files involved;
    ``codes`` maps each split to the summary dict of
    ``spse.job.extract_dataset``.
    """

    def __init__(self):
        self.written = 0
        self.skipped = 0
        self.failures = []
        self.warnings = []
        self.codes = {}

    @property
    def failed(self):
        """Number of failure messages (samples and code files)."""
        return len(self.failures)

    def add(self, status, message=None):
        """Record one sample result: ``status`` is "written", "skipped" or "failed"."""
        if status == "written":
            self.written += 1
        elif status == "skipped":
            self.skipped += 1
        elif status == "failed":
            self.failures.append(message)
        else:
            raise ValueError(f"unknown status {status!r}")

    def as_dict(self):
        """Plain-dict view (JSON-serialisable)."""
        return {"written": self.written, "skipped": self.skipped, "failed": self.failed,
                "failures": list(self.failures), "warnings": list(self.warnings),
                "codes": {k: {kk: vv for kk, vv in v.items() if kk != "absent_per_class"}
                          for k, v in self.codes.items()}}

    def format(self):
        """Multi-line human-readable summary."""
        lines = [f"warning: {w}" for w in self.warnings] + [f"FAILED: {f}" for f in self.failures]
        lines.append(f"samples: {self.written} written, {self.skipped} skipped (already valid)")
        for split, s in self.codes.items():
            lines.append(f"codes [{split}]: {s['written']} written, {s['skipped']} skipped, "
                         f"{s['failed']} failed")
        lines.append(f"{self.failed} failure(s)")
        return "\n".join(lines)


def add_common_arguments(parser):
    """Options shared by all preparation scripts."""
    parser.add_argument("--out_dir", required=True, help="output root: <out_dir>/<split>/{images,labels,codes}")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="processes for the conversion and for code extraction")
    parser.add_argument("--skip_codes", action="store_true", help="do not run SPSE code extraction now")
    parser.add_argument("--code_size", type=positive_int, default=512,
                        help="SPSE working resolution (the method uses 512; smaller only for quick tests)")
    parser.add_argument("--code_layout", choices=("lean", "release"), default="lean",
                        help="code-file layout: lean (J,512) float32 or release (J,1,1,1,512) float64")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def nonnegative_int(text):
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def split_dirs(out_dir, split):
    """``{"images": ..., "labels": ..., "codes": ...}`` folders of one split."""
    return {name: os.path.join(os.fspath(out_dir), split, name) for name in SPLIT_FOLDERS}


# ------------------------------------------------------------------------------------- images
def copy_file(src, dst):
    """Atomically copy the bytes of ``src`` to ``dst``."""
    try:
        with open(src, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{src}: cannot read ({e})") from e
    write_bytes_atomic(dst, data)


def image_size(path):
    """``(width, height)`` from an image header; raises :class:`InputError` naming the file."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError as e:
        raise InputError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from e


def read_binary_mask(path):
    """Read a part mask (grey or RGB, 0 = off, 255 = on) as an ``(H, W)`` bool array (> 127)."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("L")) > 127
    except FileNotFoundError as e:
        raise InputError(f"{path}: mask file not found") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: unreadable or corrupt mask ({e})") from e


def is_valid_image(path, size_wh=None):
    """True when ``path`` exists, fully decodes, and (if given) has size ``(width, height)``."""
    if not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as im:
            im.load()
            return size_wh is None or im.size == tuple(size_wh)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def is_valid_label(path, label_nc, size_wh=None):
    """True when ``path`` decodes as a label map with values ``< label_nc`` (and the given size)."""
    if not os.path.isfile(path):
        return False
    try:
        label = read_label(path)
    except InputError:
        return False
    if label.ndim != 2 or (size_wh is not None and tuple(label.shape[::-1]) != tuple(size_wh)):
        return False
    return int(label.max(initial=0)) < label_nc


def convert_pair(image_path, label_path, image_out, label_out, target_size, label_nc, map_label, overwrite):
    """Convert one image and its label map of the same size; returns "written" or "skipped".

    ``target_size(src_size)`` maps the source ``(width, height)`` to the output
    size, or to None to copy the image unchanged. ``map_label(raw, label_path)`` validates the raw label map and
    returns the uint8 class map (raising :class:`InputError` naming the file).
    Valid existing outputs are kept unless ``overwrite``.
    """
    src_size = image_size(image_path)
    out_size = target_size(src_size)
    size = src_size if out_size is None else tuple(out_size)
    if not overwrite and is_valid_image(image_out, size) and is_valid_label(label_out, label_nc, size):
        return "skipped"
    raw = read_label(label_path)
    if raw.shape[::-1] != src_size:
        raise InputError(f"{label_path}: label size {raw.shape[1]}x{raw.shape[0]} differs from image "
                         f"{image_path} ({src_size[0]}x{src_size[1]})")
    label = map_label(raw, label_path)
    if out_size is None:
        read_rgb(image_path)  # validate before copying
        copy_file(image_path, image_out)
    else:
        save_image_atomic(image_out, resize_rgb(read_rgb(image_path), size))
        label = resize_label(label, size)
    save_image_atomic(label_out, label)
    return "written"


def split_train_test(items, num_test, what="images"):
    """``{"train": items[:-num_test], "test": items[-num_test:]}`` (the last ``num_test`` are the test set).

    Raises :class:`InputError` when ``num_test`` is negative or exceeds the
    number of ``what`` found.
    """
    items = list(items)
    if num_test < 0:
        raise InputError(f"--num_test {num_test}: must be >= 0")
    if num_test > len(items):
        raise InputError(f"--num_test {num_test} exceeds the {len(items)} {what} found")
    cut = len(items) - num_test
    return {"train": items[:cut], "test": items[cut:]}


# ------------------------------------------------------------------------------------- jobs
def _guarded(task):
    """Run ``task = (function, args)``; map :class:`InputError` to a failure message."""
    function, args = task
    try:
        return function(*args), None
    except InputError as e:
        return "failed", str(e)


def _worker_died(task, error):
    function, args = task
    return "failed", f"{function.__name__}{tuple(args)[:3]}: worker process died ({error})"


def run_tasks(tasks, report, workers=1, progress=True, desc="prepare"):
    """Run ``tasks`` (list of ``(function, args)``, picklable) and record each result in ``report``.

    ``function(*args)`` returns "written" or "skipped", or raises
    :class:`InputError` (recorded as a failure; the job goes on). With
    ``workers > 1`` a process pool is used (:func:`util.parallel.run_tasks`);
    a worker process that dies is recorded as a failure too.
    """
    for status, message in parallel.run_tasks(_guarded, tasks, workers, progress, desc=desc,
                                              on_worker_death=_worker_died):
        report.add(status, message)


def warn_stale_outputs(out_dir, split, expected_stems, report):
    """Warn about files in ``<out_dir>/<split>/{images,labels}`` whose stem is not in ``expected_stems``.

    Such files are left from an earlier run with another split or input; they
    are not deleted (the data loader would use them, so the warning names them).
    """
    expected = set(expected_stems)
    for kind in ("images", "labels"):
        folder = split_dirs(out_dir, split)[kind]
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.endswith(".tmp"):
                continue
            if os.path.splitext(name)[0] not in expected:
                report.warnings.append(f"{os.path.join(folder, name)}: not part of split {split!r} in this "
                                       "run (left from an earlier run?); delete it if unwanted")


def extract_codes(out_dir, splits, label_nc, opt, report):
    """Run SPSE code extraction for each split (unless ``opt.skip_codes``); record it in ``report``.

    Uses ``spse.job.extract_dataset`` with ``opt.code_size``,
    ``opt.workers``, ``opt.overwrite``, ``opt.code_layout``. A split without
    images is skipped with a warning.
    """
    if opt.skip_codes:
        return

    for split in splits:
        d = split_dirs(out_dir, split)
        if not (os.path.isdir(d["images"]) and os.listdir(d["images"])):
            report.warnings.append(f"{d['images']}: no images; code extraction skipped for split {split!r}")
            continue
        try:
            summary = extract_dataset(d["images"], d["labels"], d["codes"], label_nc, size=opt.code_size,
                                      workers=opt.workers, overwrite=opt.overwrite, layout=opt.code_layout,
                                      progress=not opt.no_progress)
        except (InputError, OptionError) as e:
            report.failures.append(f"code extraction for split {split!r}: {e}")
            continue
        report.codes[split] = summary
        report.failures += summary["failures"]
        report.warnings += summary["warnings"]


def finish(report, out_dir):
    """Print the summary, write ``<out_dir>/prepare_report.json``; return the exit status (0 or 1)."""
    write_text_atomic(os.path.join(os.fspath(out_dir), "prepare_report.json"),
                      json.dumps(report.as_dict(), indent=2) + "\n")
    print(report.format())
    return 1 if report.failed else 0


def run_preparation(convert, opt, splits, label_nc):
    """The shared CLI flow of the preparation scripts; returns the exit status.

    ``convert()`` converts the raw files and returns the report dict (raising
    :class:`InputError` when the input is unusable: exit 2); then the codes of
    ``splits`` are extracted (unless ``--skip_codes``) and the summary is
    written and printed (exit 1 when any file failed, else 0).
    """
    try:
        report = convert()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    extract_codes(opt.out_dir, splits, label_nc, opt, report)
    return finish(report, opt.out_dir)

