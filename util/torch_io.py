"""Torch files: atomic saving, and loading with clear errors (checkpoints, VGG19 and Inception weights).

Kept apart from :mod:`util.io`, which loads no torch (SPSE's worker processes use it).
"""
import os
import pickle

import torch

from util.errors import CheckpointError
from util.io import atomic_path


def torch_save_atomic(obj, path):
    """Atomically ``torch.save`` ``obj`` to ``path`` (``path`` is untouched when the write fails).

    Saved through a file object, so the zip's folder is torch's fixed
    ``archive/`` rather than the temporary file's random name: the same
    ``obj`` gives the same bytes.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)


def load_torch_file(path, what="checkpoint", mmap=False):
    """``torch.load`` (``weights_only``, onto CPU) with clear errors for missing/corrupt files.

    ``mmap``: map the file instead of reading it (copy-on-write; the tensors are
    read from the page cache when used, shared by the processes of a machine).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: {what} not found")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: {what} is empty (truncated)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError, ImportError,
            pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: cannot read {what}; the file is truncated or corrupt ({e})") from e
