"""Reading images and label maps, and pairing files by stem.

All readers raise :class:`util.errors.InputError` with the file name and the
reason, so batch jobs can report a bad file and carry on.
"""
import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from util.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DONTCARE_VALUE = 255


def natural_key(text):
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def stem(path):
    """File name without folder and extension."""
    return os.path.splitext(os.path.basename(path))[0]


def list_files(folder, extensions=IMAGE_EXTENSIONS, recursive=False):
    """Naturally sorted files in ``folder`` with one of ``extensions`` (case-insensitive).

    Raises :class:`InputError` when the folder does not exist or holds no such file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: folder not found")
    found = []
    if recursive:
        for root, _, names in os.walk(folder):
            found += [os.path.join(root, n) for n in names if n.lower().endswith(tuple(extensions))]
    else:
        found = [os.path.join(folder, n) for n in os.listdir(folder)
                 if n.lower().endswith(tuple(extensions)) and not n.startswith(".")]
    if not found:
        raise InputError(f"{folder}: no files with extensions {', '.join(extensions)}")
    return sorted(found, key=lambda p: natural_key(os.path.relpath(p, folder)))


def pair_by_stem(primary, *others, names=None):
    """Pair files across lists by stem.

    ``primary`` and each of ``others`` are lists of paths. Returns
    ``(pairs, problems)`` where ``pairs`` is a list of tuples (one path from
    each list, in the order of ``primary``) and ``problems`` lists a message for
    each primary file without a partner and each partner without a primary.
    ``names`` labels the lists in the messages (default "image", "label", ...).
    """
    names = names or ["file"] + [f"partner{i}" for i in range(len(others))]
    lookups = []
    problems = []
    for name, files in zip(names[1:], others):
        table = {}
        for p in files:
            s = stem(p)
            if s in table:
                problems.append(f"{p}: duplicate {name} stem {s!r} (also {table[s]})")
            table[s] = p
        lookups.append(table)
    pairs = []
    primary_stems = set()
    for p in primary:
        s = stem(p)
        primary_stems.add(s)
        partners = []
        for name, table in zip(names[1:], lookups):
            if s not in table:
                problems.append(f"{p}: no matching {name} file with stem {s!r}")
                break
            partners.append(table[s])
        else:
            pairs.append((p, *partners))
    for name, table in zip(names[1:], lookups):
        for s, p in table.items():
            if s not in primary_stems:
                problems.append(f"{p}: no matching {names[0]} file with stem {s!r}")
    return pairs, problems


def read_rgb(path):
    """Read an image as an ``(H, W, 3)`` uint8 RGB array (grey and RGBA are converted)."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise InputError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from e


def read_label(path):
    """Read a single-channel label map as an ``(H, W)`` uint8/int array of class indices."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im)
                if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                    raise InputError(
                        f"{path}: label map is a colour image; expected a single-channel map of class indices")
                return arr[..., 0].copy()
            if im.mode == "P":
                return np.asarray(im).copy()  # palette indices are the class indices
            return np.asarray(im).copy()
    except InputError:
        raise
    except FileNotFoundError as e:
        raise InputError(f"{path}: label file not found") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: unreadable or corrupt label map ({e})") from e


def check_label_values(label, label_nc, path, allow_dontcare=True):
    """Raise :class:`InputError` when ``label`` holds values >= ``label_nc``.

    The value 255 ("don't care") is accepted when ``allow_dontcare`` is true;
    otherwise the error suggests ``--contain_dontcare_label``.
    """
    values = np.unique(label)
    bad = values[(values >= label_nc) & ((values != DONTCARE_VALUE) | (not allow_dontcare))]
    if bad.size:
        if not allow_dontcare and list(bad) == [DONTCARE_VALUE]:
            raise InputError(
                f"{path}: label map contains 255 (don't care); pass --contain_dontcare_label to use it")
        shown = ", ".join(str(int(v)) for v in bad[:10])
        raise InputError(f"{path}: label values {shown} are out of range for label_nc={label_nc}")
