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
import zipfile

import numpy as np

from util.errors import InputError
from util.io import save_npy_atomic

STYLE_DIM = 512
LAYOUTS = ("lean", "release")


def _row_counts(label_nc):
    return (label_nc,) if isinstance(label_nc, int) else tuple(label_nc)


def check_code_layout(shape, dtype, path, label_nc=None):
    """Validate a code array's ``shape`` and ``dtype``; returns the lean ``(rows, 512)`` shape.

    Accepts the lean ``(J, 512)`` and the release ``(J, 1, 1, 1, 512)``
    layouts; ``label_nc`` (an int or a tuple of ints) gives the accepted
    numbers of classes. Raises :class:`InputError` naming ``path``.
    """
    shape = tuple(shape)
    if len(shape) == 5 and shape[1:4] == (1, 1, 1):
        shape = (shape[0], shape[4])
    if len(shape) != 2 or shape[1] != STYLE_DIM:
        raise InputError(
            f"{path}: code array has shape {tuple(shape)}; expected (label_nc, {STYLE_DIM}) "
            f"or the release layout (label_nc, 1, 1, 1, {STYLE_DIM})"
        )
    if label_nc is not None and shape[0] not in _row_counts(label_nc):
        expected = _row_counts(label_nc)[0]
        raise InputError(f"{path}: code file holds {shape[0]} classes but label_nc is {expected}; if --label_nc "
                         f"is right, the codes were extracted for other label maps: extract them again with "
                         f"`python save_style_vector.py --image_dir IMAGES --label_dir LABELS --save_dir NEW_FOLDER "
                         f"--label_nc {expected}` and pass --instance_dir NEW_FOLDER")
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"{path}: code array has dtype {dtype}; expected floating point")
    return shape


def _open_array(path, header_only=False):
    """``np.load`` of a code file (memory-mapped for ``header_only``); errors name ``path``.

    An ``.npz`` archive (whatever its name) is not a code file: ``np.load``
    would return an archive instead of an array.
    """
    try:
        arr = np.load(path, mmap_mode="r" if header_only else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: unreadable code file ({e})") from e
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError(f"{path}: this is an .npz archive, not a .npy code file; save the codes with "
                         f"np.save (one array per file) or recompute them with save_style_vector.py")
    return arr


def check_code_header(path, label_nc=None):
    """Validate a code file's layout from its ``.npy`` header only (cheap, memory-mapped).

    Returns the lean ``(rows, 512)`` shape; raises :class:`InputError` naming
    ``path`` as :func:`load_codes` does (missing, unreadable, an ``.npz``
    archive, wrong shape, dtype or number of classes).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: code file not found")
    arr = _open_array(path, header_only=True)
    return check_code_layout(arr.shape, arr.dtype, path, label_nc)


def load_codes(path, label_nc=None):
    """Load a code file in either layout and return a ``(rows, 512)`` float32 array.

    ``label_nc`` (an int, or a tuple of accepted row counts) checks the number
    of classes. Raises :class:`InputError` naming ``path`` when the file is
    missing, unreadable, an ``.npz`` archive, has the wrong shape or number of
    classes, or holds non-finite values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: code file not found")
    arr = _open_array(path)
    arr = arr.reshape(check_code_layout(arr.shape, arr.dtype, path, label_nc)).astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{path}: code file contains NaN or infinite values")
    return arr


def model_codes(raw, semantic_nc):
    """Raw codes -> the normalised ``(semantic_nc, 512)`` float32 array the generator takes.

    ``raw`` holds ``semantic_nc`` rows, or one fewer when the last class is
    the don't-care class: its row is then a zero raw code, as for an absent
    class. Values are normalised as ``(x - 0.5) / 0.5``.
    """
    raw = np.asarray(raw, dtype=np.float32)
    if raw.shape[0] == semantic_nc - 1:
        raw = np.concatenate([raw, np.zeros((1, raw.shape[1]), np.float32)], axis=0)
    if raw.shape != (semantic_nc, STYLE_DIM):
        raise InputError(f"codes of shape {raw.shape} do not fit {semantic_nc} classes")
    return (raw - 0.5) / 0.5


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
