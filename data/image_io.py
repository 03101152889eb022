"""Reading images and label maps, and pairing files by stem.

All readers raise :class:`util.errors.InputError` with the file name and the
reason, so batch jobs can report a bad file and carry on. The rules of every
reader, in every script: a file too large to decode (Pillow's decompression
bomb limit, ``Image.MAX_IMAGE_PIXELS``) is refused; 16-bit photos are scaled
to 8 bits (``round(v / 257)``: 65535 -> 255); floating-point photos and label
maps are refused; label values must be integers ``0 .. label_nc - 1`` (or 255).
"""
import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from util.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Label maps (class maps) must be stored losslessly; see LOSSY_LABEL_REASON.
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
LOSSY_FORMATS = ("JPEG", "MPO", "WEBP", "JPEG2000")  # PIL format names of lossy (or possibly lossy) codecs
DONTCARE_VALUE = 255
# Aspect ratios of an image and its label map may differ by this fraction (rounding of downscaled sizes).
ASPECT_TOLERANCE = 0.01
SHOWN = 5  # how many names a message lists before "and N more"

LOSSY_LABEL_REASON = (
    "class maps must be stored losslessly (PNG, BMP or TIFF): every pixel is a class index, and lossy "
    "compression such as JPEG changes the values of pixels along every class boundary into other classes "
    "(or out-of-range values), which silently corrupts the training targets and the style codes. Export the "
    "original annotation as PNG; converting these files to PNG would keep the damage")


def natural_key(text):
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def stem(path):
    """File name without folder and extension."""
    return os.path.splitext(os.path.basename(path))[0]


def name_some(names, limit=SHOWN):
    """``"a, b, c, d, e and 3 more"``: the first ``limit`` of ``names`` (strs) and how many are left."""
    names = list(names)
    shown = ", ".join(str(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def lossy_label_error(paths):
    """The :class:`InputError` for label maps stored in a lossy format (``paths``: one or more files)."""
    paths = list(paths)
    if len(paths) == 1:
        return InputError(f"{paths[0]}: label map in a lossy format; {LOSSY_LABEL_REASON}")
    return InputError(f"{len(paths)} label maps in a lossy format ({name_some(paths)}); {LOSSY_LABEL_REASON}")


def is_lossless_label_name(path):
    """True when ``path``'s extension is one of :data:`LABEL_EXTENSIONS` (case-insensitive)."""
    return os.fspath(path).lower().endswith(LABEL_EXTENSIONS)


def list_label_files(folder):
    """Naturally sorted label maps in ``folder`` (:data:`LABEL_EXTENSIONS`).

    Image files in a lossy format (``.jpg``, ``.jpeg``, ``.webp``) are not
    skipped but refused: :func:`lossy_label_error` names them and says why.
    Raises :class:`InputError` for a missing or empty folder as
    :func:`list_files` does.
    """
    found = list_files(folder, IMAGE_EXTENSIONS)
    lossy = [p for p in found if not is_lossless_label_name(p)]
    if lossy:
        raise lossy_label_error(lossy)
    return found


def check_aspect_ratio(image_size_wh, label_size_wh, image_path, label_path):
    """The one rule for an image and its label map: the same aspect ratio (sizes may differ).

    Sizes are ``(width, height)``. The ratios may differ by
    :data:`ASPECT_TOLERANCE` (1 %), which covers the rounding of downscaled
    sizes (1001x750 against 500x375). Raises :class:`InputError` naming both
    files otherwise; the same message in extraction, training, testing and
    style mixing.
    """
    (iw, ih), (lw, lh) = image_size_wh, label_size_wh
    if abs(iw * lh - lw * ih) > ASPECT_TOLERANCE * lw * ih:
        raise InputError(
            f"{image_path}: image is {iw}x{ih} (aspect {iw / ih:.3f}) but its label map {label_path} is "
            f"{lw}x{lh} (aspect {lw / lh:.3f}); an image and its label map may differ in size but must have "
            f"the same aspect ratio (within {ASPECT_TOLERANCE:.0%}), or the classes would not cover the "
            f"same pixels")


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


def group_by_stem(file_lists, names):
    """Group the files of several lists by stem, naturally sorted by stem.

    ``file_lists``: sequences of paths; ``names``: what each list holds
    ("image", "label", ...), used in the messages. Returns a list of
    ``(stem, paths, problem)`` with one entry per stem found in any list:
    ``paths`` holds one path per list (None where the list has none), and
    ``problem`` is None for a complete group of one file per list, otherwise a
    message naming the file(s): several files of one list share the stem, or
    a list has no file with it.
    """
    tables = [{} for _ in file_lists]
    for table, paths in zip(tables, file_lists):
        for p in paths:
            table.setdefault(stem(p), []).append(p)
    groups = []
    for s in sorted(set().union(*tables), key=natural_key):
        found = [table.get(s, []) for table in tables]
        problem = next((f"{files[0]}: several {name}s share the stem {s!r} ({', '.join(files)})"
                        for name, files in zip(names, found) if len(files) > 1), None)
        if problem is None:
            first = next(files[0] for files in found if files)
            problem = next((f"{first}: no matching {name} file with stem {s!r}"
                            for name, files in zip(names, found) if not files), None)
        groups.append((s, tuple(files[0] if files else None for files in found), problem))
    return groups


def pair_by_stem(primary, *others, names=None):
    """Pair files across lists by stem (see :func:`group_by_stem`).

    Returns ``(pairs, problems)``: ``pairs`` is a list of tuples (one path
    from each list), naturally sorted by stem, and ``problems`` a message for
    every stem without exactly one file in each list. ``names`` labels the
    lists in the messages (default "file", "partner0", ...).
    """
    names = names or ["file"] + [f"partner{i}" for i in range(len(others))]
    groups = group_by_stem([primary, *others], names)
    pairs = [paths for _, paths, problem in groups if problem is None]
    problems = [problem for _, _, problem in groups if problem is not None]
    return pairs, problems


def unpaired_error(groups, names, folders):
    """The :class:`InputError` for stems without a complete set of files, or None when all are paired.

    ``groups``: :func:`group_by_stem`'s result; ``names`` and ``folders``: what
    each list holds and where. The message counts the stems that lack a
    partner, names the first few with what is missing, and says where each
    stem needs a file.
    """
    bad = [(s, problem) for s, _, problem in groups if problem is not None]
    if not bad:
        return None
    lines = [f"files do not pair by stem: {len(bad)} of {len(groups)} stems lack a partner "
             f"({name_some(repr(s) for s, _ in bad)})"]
    lines += [f"  {problem}" for _, problem in bad[:SHOWN]]
    if len(bad) > SHOWN:
        lines.append(f"  ... and {len(bad) - SHOWN} more")
    lines.append("  every stem needs one file in each of: "
                 + ", ".join(f"{n}s {f}" for n, f in zip(names, folders)))
    return InputError("\n".join(lines))


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")  # Pillow's modes of 16-bit grey images


def too_large_error(path, error):
    """The :class:`InputError` for an image beyond Pillow's decompression-bomb limit (``error``)."""
    return InputError(f"{path}: image too large to decode ({error}); downscale it (this project works at "
                      f"512x512 or less) or check that the file is what it claims to be")


def _rgb8_image(im, path):
    """A loaded PIL image -> the same picture as an 8-bit PIL ``RGB`` image, 16-bit grey scaled as ``round(v / 257)``.

    16-bit colour files reach here as 8-bit RGB already (Pillow keeps each
    channel's high byte, ``v >> 8``, within 1 of ``v / 257``). An ``RGB``
    image is returned as it is (no copy).
    """
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
        values = np.asarray(im)
        if im.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(f"{path}: 32-bit integer image with values outside 0..65535; photos must "
                             f"have 8 or 16 bits per channel")
        grey = ((values.astype(np.int64) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if im.mode == "F":
        raise InputError(f"{path}: floating-point image; photos must have 8 or 16 bits per channel "
                         f"(save it as PNG or JPEG)")
    return im if im.mode == "RGB" else im.convert("RGB")


def read_rgb(path):
    """Read an image as an ``(H, W, 3)`` uint8 RGB array.

    Grey, palette and RGBA images are converted; 16-bit images are scaled to
    8 bits (:func:`_rgb8_image`). Raises :class:`InputError` naming the file for a
    missing, corrupt, floating-point or too large image (module docstring).
    """
    return np.asarray(read_rgb_image_at_least(path, None)[0])


def read_rgb_image_at_least(path, size_wh):
    """Read an image as a PIL ``RGB`` image, a JPEG possibly at a reduced scale: ``(image, stored (width, height))``.

    With ``size_wh = (width, height)`` a JPEG is decoded by libjpeg's DCT
    scaling (``Image.draft``) at the smallest of 1/2, 1/4 or 1/8 of its size
    that is still at least ``size_wh`` in both directions, so the image is
    only ever reduced by a factor of 2 or more before a resize to ``size_wh``
    that shrinks it at least as much. Other formats, smaller reductions and
    ``size_wh=None`` decode at full size. The second value is the size stored
    in the file (for :func:`check_aspect_ratio`). Conversions as
    :func:`read_rgb`; the training loader keeps the PIL image, which saves
    two copies per item. Errors as :func:`read_rgb`.
    """
    try:
        with Image.open(path) as im:
            stored = im.size
            if size_wh is not None and im.format == "JPEG" and im.mode in ("RGB", "L"):
                im.draft(im.mode, (int(size_wh[0]), int(size_wh[1])))
            im.load()
            return _rgb8_image(im, path), stored
    except InputError:
        raise
    except FileNotFoundError as e:
        raise InputError(f"{path}: image file not found") from e
    except Image.DecompressionBombError as e:
        raise too_large_error(path, e) from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: unreadable or corrupt image ({e})") from e


def read_label(path):
    """Read a single-channel label map as an ``(H, W)`` uint8/int array of class indices.

    Grey-level RGB(A) files and 16-bit maps are accepted; colour or
    multi-channel maps raise :class:`InputError` naming the file, and so do
    lossy files (a JPEG/WebP name or content, or a JPEG-compressed TIFF;
    :func:`lossy_label_error`), floating-point maps and files too large to
    decode.
    """
    if not is_lossless_label_name(path) and os.fspath(path).lower().endswith(IMAGE_EXTENSIONS):
        raise lossy_label_error([path])
    try:
        with Image.open(path) as im:
            compression = str(im.info.get("compression", "")).lower()
            if im.format in LOSSY_FORMATS or (im.format == "TIFF" and "jpeg" in compression):
                raise lossy_label_error([path])
            im.load()
            if im.mode == "F":
                raise InputError(f"{path}: label map holds floating-point values; class maps must hold "
                                 f"integer class indices (save it as an 8- or 16-bit PNG)")
            if im.mode in ("RGB", "RGBA"):
                arr = np.asarray(im)
                if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
                    raise InputError(
                        f"{path}: label map is a colour image; expected a single-channel map of class indices")
                return arr[..., 0].copy()
            arr = np.asarray(im).copy()  # for mode "P" the palette indices are the class indices
    except InputError:
        raise
    except FileNotFoundError as e:
        raise InputError(f"{path}: label file not found") from e
    except Image.DecompressionBombError as e:
        raise too_large_error(path, e) from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: unreadable or corrupt label map ({e})") from e
    if arr.ndim != 2:
        raise InputError(f"{path}: label map must be single-channel, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise InputError(f"{path}: label map holds {arr.dtype} values; class maps must hold integer class "
                         f"indices (save it as an 8- or 16-bit PNG)")
    return arr


def resize_label(label, size_wh, box=None):
    """Nearest-neighbour resize of an ``(H, W)`` integer label map to ``size_wh = (width, height)``.

    The one label resizer of the project (data loader, SPSE, dataset
    preparation). It reproduces PIL's ``NEAREST`` resize exactly, for any
    integer dtype (values are never mixed): output column ``x`` samples input
    column ``floor(x0 + x·s)`` with ``s = W / width`` and ``x0 = s / 2``,
    accumulated in float64 one step at a time as PIL does (rows likewise), so
    maps resized here match maps resized by PIL bit for bit. ``box = (x, y,
    w, h)`` returns only that window of the resized map (the same values as
    cropping it afterwards, without building the rest). Returns an array of
    the input's dtype (a view of the input when nothing is resized).
    """
    label = np.asarray(label)
    h, w = label.shape
    width, height = int(size_wh[0]), int(size_wh[1])
    x, y, cw, ch = (0, 0, width, height) if box is None else box
    if (w, h) == (width, height):
        return label[y:y + ch, x:x + cw]
    rows = _nearest_indices(h, height)[y:y + ch]
    cols = _nearest_indices(w, width)[x:x + cw]
    return label.take(rows, axis=0).take(cols, axis=1)  # two 1-D gathers: several times faster than one 2-D


def _nearest_indices(n_in, n_out):
    """Source index of each of ``n_out`` outputs: PIL's accumulated ``floor(s/2 + i·s)``, ``s = n_in / n_out``."""
    step = n_in / n_out
    coords = np.add.accumulate(np.concatenate([[step * 0.5], np.full(n_out - 1, step)]))  # sequential sums
    return np.minimum(coords.astype(np.int64), n_in - 1)


def resize_rgb(image, size_wh):
    """Bicubic (antialiased, PIL) resize of an ``(H, W, 3)`` uint8 image to ``size_wh = (width, height)``."""
    if tuple(image.shape[1::-1]) == tuple(size_wh):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size_wh), Image.BICUBIC))


def check_label_values(label, label_nc, path, allow_dontcare=True):
    """Raise :class:`InputError` naming ``path`` when ``label`` holds values outside ``0 .. label_nc - 1``.

    Negative values are refused; the value 255 ("don't care") is accepted
    when ``allow_dontcare`` is true, otherwise the error suggests
    ``--contain_dontcare_label``.
    """
    label = np.asarray(label)
    if label.size == 0 or (int(label.max()) < label_nc and (label.dtype.kind == "u" or int(label.min()) >= 0)):
        return  # every value in range: no need for the (much slower) np.unique
    values = np.unique(label)
    bad = values[(values < 0) | ((values >= label_nc) & ((values != DONTCARE_VALUE) | (not allow_dontcare)))]
    if bad.size:
        if not allow_dontcare and list(bad) == [DONTCARE_VALUE]:
            raise InputError(
                f"{path}: label map contains 255 (don't care); pass --contain_dontcare_label to use it")
        shown = ", ".join(str(int(v)) for v in bad[:10])
        dontcare = " (255: don't care)" if allow_dontcare else ""
        raise InputError(f"{path}: label values {shown} are out of range for label_nc={label_nc}; class "
                         f"indices are 0..{label_nc - 1}{dontcare}: check --label_nc and this label map")
