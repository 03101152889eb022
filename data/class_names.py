"""Class-name lists of the prepared datasets, and the ``classes.txt`` file format.

``classes.txt`` (written by each preparation script in its output folder) has
one class name per line; line ``i`` (0-based) names label value ``i``. Names
are lower-case identifiers without spaces so that they can be typed on a
command line (``--classes hair,cloth``).
"""
import os

from util.errors import InputError, OptionError
from util.io import write_text_atomic

CLASSES_FILE = "classes.txt"

# CelebAMask-HQ: background plus the 18 annotated parts, in the standard order
# (the order in which part masks are painted; later parts overwrite earlier ones).
CELEBAMASK_HQ = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)

# Cityscapes labelIds 0..33 (cityscapesScripts' ``labels.py``), plus one unused slot (34):
# SPADE and SuperStyleNet use label_nc = 35 for Cityscapes.
CITYSCAPES = (
    "unlabeled", "ego_vehicle", "rectification_border", "out_of_roi", "static", "dynamic", "ground",
    "road", "sidewalk", "parking", "rail_track", "building", "wall", "fence", "guard_rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic_light", "traffic_sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
    "unused_34",
)

# CMP Facade: raw label indices 1..12 in this order, stored as 0..11.
CMP_FACADE = (
    "background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco",
    "molding", "pillar", "shop",
)


def write_class_names(folder, names):
    """Atomically write ``names`` (one per line) to ``<folder>/classes.txt``; returns the path.

    An existing file with the same content is left untouched (idempotent re-runs).
    """
    path = os.path.join(os.fspath(folder), CLASSES_FILE)
    text = "".join(f"{n}\n" for n in names)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: (re)write it below
    write_text_atomic(path, text)
    return path


def read_class_names(path):
    """Read a ``classes.txt`` file; returns a tuple of names (index = label value).

    Raises :class:`InputError` naming the file when it is missing, empty, or
    holds blank or duplicate names.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as e:
        raise InputError(f"{path}: class-name file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: unreadable class-name file ({e})") from e
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InputError(f"{path}: class-name file is empty")
    for i, name in enumerate(names):
        if not name:
            raise InputError(f"{path}: line {i + 1} is blank; every class needs a name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"{path}: duplicate class names {', '.join(dupes)}")
    return tuple(names)


def find_class_names(label_path):
    """The first ``classes.txt`` in the folder of ``label_path`` or its two parents, or None."""
    folder = os.path.dirname(os.path.abspath(label_path))
    for _ in range(3):
        candidate = os.path.join(folder, CLASSES_FILE)
        if os.path.isfile(candidate):
            return candidate
        folder = os.path.dirname(folder)
    return None


def parse_class_list(spec, label_nc, names=None, option="--classes"):
    """Turn ``"13,17"`` or ``"hair,cloth"`` (or a mix) into a sorted list of class indices.

    ``names`` (sequence of class names, index = label value) allows names;
    every index must lie in ``0..label_nc-1``. Raises :class:`OptionError`
    naming ``option`` on an unknown name, a bad index or an empty list.
    """
    if isinstance(spec, (list, tuple)):
        parts = [str(p) for p in spec]
    else:
        parts = [p.strip() for p in str(spec).split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise OptionError(f"{option}: no class given")
    lookup = {n: i for i, n in enumerate(names or ())}
    out = set()
    for p in parts:
        if p.lstrip("-").isdigit():
            j = int(p)
        elif p in lookup:
            j = lookup[p]
        elif names:
            raise OptionError(f"{option}: unknown class name {p!r}; known: {', '.join(names)}")
        else:
            raise OptionError(f"{option}: {p!r} is not a class index (no class-name list given)")
        if not 0 <= j < label_nc:
            raise OptionError(f"{option}: class {p} is out of range for label_nc={label_nc}")
        out.add(j)
    return sorted(out)
