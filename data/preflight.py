"""Checks of a dataset's files before training writes anything, and skipping files that fail later.

:func:`check_headers` opens every label map and photo of a dataset without
decoding it (Pillow reads the header only: size, mode, format) and applies
the rules of :mod:`data.image_io` that the header decides: a file that
cannot be opened, one too large to decode, a lossy label map, a
floating-point file and an image whose aspect ratio differs from its label
map's. The message is the readers' own (a file the header flags is read
with the reader, which raises it), so every script words a rule the same way.

A file whose header is fine can still fail to decode (a truncated file).
:class:`SkipUnreadable` wraps a dataset so that such an item is reported by
name, recorded in a list (``skipped_files.txt`` next to the checkpoints,
appended one line per file) and replaced by the next readable item: the run
goes on, and a resumed run passes the same step again.
"""
import os
import sys
import time

import torch
from PIL import Image

from data.image_io import (LOSSY_FORMATS, check_aspect_ratio, read_label, read_rgb, too_large_error)
from util.errors import InputError


def _header(path, reader):
    """``(size_wh, mode, format, info)`` of ``path`` from its header; a file that cannot be opened is read
    with ``reader``, which raises the rule's :class:`InputError`."""
    try:
        with Image.open(path) as im:
            return im.size, im.mode, im.format, dict(im.info)
    except Image.DecompressionBombError as e:
        raise too_large_error(path, e) from e
    except (OSError, ValueError, SyntaxError) as e:
        reader(path)  # raises the reader's message for this file
        raise InputError(f"{path}: unreadable or corrupt file ({e})") from e


def check_label_header(path):
    """The header rules of a label map; returns its ``(width, height)``."""
    size, mode, fmt, info = _header(path, read_label)
    lossy = fmt in LOSSY_FORMATS or (fmt == "TIFF" and "jpeg" in str(info.get("compression", "")).lower())
    if lossy or mode == "F":
        read_label(path)  # raises the rule's message (lossy label map, floating-point values)
    return size


def check_image_header(path):
    """The header rules of a photo; returns its ``(width, height)``."""
    size, mode, _, _ = _header(path, read_rgb)
    if mode == "F":
        read_rgb(path)  # raises the rule's message (floating-point photo)
    return size


def check_headers(dataset, log=print):
    """Check the header of every label map and photo of ``dataset`` (``label_paths``, ``image_paths``).

    Raises the first :class:`InputError`, naming the file; returns the number
    of files checked.
    """
    start, count = time.time(), 0
    for label_path, image_path in zip(dataset.label_paths, dataset.image_paths):
        label_size = check_label_header(label_path)
        count += 1
        if image_path is not None:
            check_aspect_ratio(check_image_header(image_path), label_size, image_path, label_path)
            count += 1
    log(f"checked the headers of {count} label maps and images in {time.time() - start:.1f} s")
    return count


def recorded_files(record_path):
    """The lines of a skip list (one message per file), or [] when it does not exist."""
    if not os.path.isfile(record_path):
        return []
    with open(record_path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def append_line(path, line):
    """Append one line to ``path`` in a single write (``O_APPEND``: lines of several processes do not mix)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def fails_to_decode(path):
    """True when the image or code file ``path`` cannot be read to its end (truncated, corrupt)."""
    if path is None:
        return False
    try:
        if os.fspath(path).lower().endswith(".npy"):
            import numpy as np

            np.load(path, allow_pickle=False)
        else:
            with Image.open(path) as im:
                im.load()
    except Image.DecompressionBombError:
        return False  # a rule (too large), not damage: the run stops with the reader's message
    except (OSError, ValueError, SyntaxError, EOFError):
        return True
    return False


class SkipUnreadable(torch.utils.data.Dataset):
    """``dataset`` whose items with a file that fails to decode are skipped and recorded.

    Item ``i`` whose :class:`InputError` comes from a file that cannot be
    decoded (:func:`fails_to_decode`: a truncated or corrupt image, label map
    or code file) is replaced by the next index (cyclically) that loads, so
    batches keep their size and the replacement is the same in every run.
    Other input errors (a label value out of range...) are raised: they are
    rules to fix, not damage. Each skipped file is printed once per process
    as a ``warning:`` line and appended once to ``record_path``. Other
    attributes (``set_epoch``, ``label_paths``...) are those of ``dataset``.
    """

    def __init__(self, dataset, record_path):
        self.dataset, self.record_path = dataset, record_path
        self._reported = set()

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        if name in ("dataset", "record_path", "_reported"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _report(self, error):
        message = str(error)
        if message in self._reported:
            return
        self._reported.add(message)
        print(f"warning: {message}; skipped (listed in {self.record_path})", file=sys.stderr)
        if message not in recorded_files(self.record_path):
            append_line(self.record_path, message)

    def _damaged(self, index):
        files = [getattr(self.dataset, f, [None] * (index + 1))[index]
                 for f in ("label_paths", "image_paths", "code_paths")]
        return any(fails_to_decode(p) for p in files)

    def __getitem__(self, index):
        n = len(self.dataset)
        for k in range(n):
            try:
                return self.dataset[(index + k) % n]
            except InputError as e:
                if not self._damaged((index + k) % n):
                    raise
                self._report(e)
        raise InputError(f"no item of the dataset can be read (see {self.record_path})")
