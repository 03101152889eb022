"""Reading and writing style-code files (one ``.npy`` per image).

Two layouts are accepted on read:

* **lean** (what this project writes by default): shape ``(label_nc, 512)``,
  float32, values in about [0, 1];
* **release**: shape ``(label_nc, 1, 1, 1, 512)``, float64, as written by the
  original SuperStyleNet release.

Both hold *unnormalised* codes (mean superpixel RGB values in [0, 1]). The
data loader applies ``(x - 0.5) / 0.5`` itself.
"""
import os

import numpy as np

from util.errors import InputError
from util.io import save_npy_atomic

STYLE_DIM = 512
LAYOUTS = ("lean", "release")


def load_codes(path, label_nc=None):
    """Load a code file in either layout and return a ``(label_nc, 512)`` float32 array.

    Raises :class:`InputError` naming ``path`` when the file is missing,
    unreadable, has the wrong shape or number of classes, or holds
    non-finite values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: code file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: unreadable code file ({e})") from e
    if arr.ndim == 5 and arr.shape[1:4] == (1, 1, 1):
        arr = arr.reshape(arr.shape[0], arr.shape[4])
    if arr.ndim != 2 or arr.shape[1] != STYLE_DIM:
        raise InputError(
            f"{path}: code array has shape {tuple(arr.shape)}; expected (label_nc, {STYLE_DIM}) "
            f"or the release layout (label_nc, 1, 1, 1, {STYLE_DIM})"
        )
    if label_nc is not None and arr.shape[0] != label_nc:
        raise InputError(f"{path}: code file holds {arr.shape[0]} classes but label_nc is {label_nc}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{path}: code array has dtype {arr.dtype}; expected floating point")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: code file contains NaN or infinite values")
    return arr


def save_codes(path, codes, layout="lean"):
    """Atomically save ``codes`` (``(label_nc, 512)`` array) in the given layout."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] != STYLE_DIM:
        raise ValueError(f"codes must have shape (label_nc, {STYLE_DIM}), got {codes.shape}")
    if layout == "lean":
        out = codes.astype(np.float32)
    elif layout == "release":
        out = codes.astype(np.float64).reshape(codes.shape[0], 1, 1, 1, STYLE_DIM)
    else:
        raise ValueError(f"unknown code layout {layout!r}; choose from {LAYOUTS}")
    save_npy_atomic(path, out)


def is_valid_code_file(path, label_nc):
    """True when ``path`` exists and loads as a valid code file for ``label_nc`` classes."""
    try:
        load_codes(path, label_nc)
    except InputError:
        return False
    return True
