"""Painting label maps: brush strokes as edits, applied in order to a sample's label map.

A stroke is the edit ``{"op": "paint", "class": j, "size": d, "points": [[col, row], ...]}``:
every pixel whose centre lies within ``d / 2`` pixels of the polyline through
the centres of the listed pixels gets class ``j`` (one point: a round dab;
size 1: one pixel per point, 8-connected between them). Coordinates are
pixels of the preprocessed label map (the model's resolution).
"""
import numpy as np
import torch

from util.errors import OptionError

MAX_BRUSH = 64
MAX_POINTS = 4096


def parse_stroke(body, label_shape, class_index):
    """The paint edit of a request ``{"class", "size", "points": [[fx, fy], ...]}`` (fractions in [0, 1]).

    ``label_shape``: ``(H, W)``; ``class_index(value)``: the class a value names
    (raises :class:`OptionError` otherwise). Raises :class:`OptionError` for a
    size outside 1..:data:`MAX_BRUSH`, no points, more than :data:`MAX_POINTS`,
    or a point that is not two numbers in [0, 1].
    """
    j = class_index(body.get("class"))
    try:
        size = int(body.get("size", 8))
    except (TypeError, ValueError, OverflowError) as e:
        raise OptionError(f"brush size {body.get('size')!r}: expected a whole number of pixels") from e
    if not 1 <= size <= MAX_BRUSH:
        raise OptionError(f"brush size {size}: must lie in 1..{MAX_BRUSH} pixels")
    points = body.get("points")
    if not isinstance(points, list) or not points:
        raise OptionError("a stroke needs at least one point")
    if len(points) > MAX_POINTS:
        raise OptionError(f"a stroke has at most {MAX_POINTS} points (got {len(points)}); paint shorter strokes")
    h, w = label_shape
    pixels = []
    for p in points:
        try:
            fx, fy = (float(v) for v in p)
        except (TypeError, ValueError, OverflowError) as e:
            raise OptionError(f"stroke point {p!r}: expected [x, y] with fractions of the width and height") from e
        if not (0 <= fx <= 1 and 0 <= fy <= 1):
            raise OptionError(f"stroke point ({fx:g}, {fy:g}) lies outside the label map")
        pixel = [min(int(fx * w), w - 1), min(int(fy * h), h - 1)]
        if not pixels or pixels[-1] != pixel:
            pixels.append(pixel)
    return {"op": "paint", "class": j, "size": size, "points": pixels}


def paint_stroke(label, points, size, value):
    """Paint ``value`` into the ``(H, W)`` array ``label`` in place (see the module docstring)."""
    h, w = label.shape
    r = size / 2.0
    centres = np.asarray(points, dtype=np.float64) + 0.5
    segments = zip(centres, centres[1:]) if len(centres) > 1 else [(centres[0], centres[0])]
    for a, b in segments:
        c0, c1 = max(int(np.floor(min(a[0], b[0]) - r)), 0), min(int(np.ceil(max(a[0], b[0]) + r)), w)
        r0, r1 = max(int(np.floor(min(a[1], b[1]) - r)), 0), min(int(np.ceil(max(a[1], b[1]) + r)), h)
        if c0 >= c1 or r0 >= r1:
            continue
        ys, xs = np.mgrid[r0:r1, c0:c1] + 0.5
        d = b - a
        length2 = float(d @ d)
        t = np.zeros_like(xs) if length2 == 0 else np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / length2, 0, 1)
        inside = (xs - a[0] - t * d[0]) ** 2 + (ys - a[1] - t * d[1]) ** 2 <= r * r
        label[r0:r1, c0:c1][inside] = value


def paint_edits(edits):
    """The paint edits of an edit list, in order."""
    return [e for e in edits if e["op"] == "paint"]


def painted_label(label, strokes):
    """``label`` ``(1, H, W)`` int64 tensor with ``strokes`` (paint edits) applied; a new tensor."""
    out = label[0].numpy().copy()
    for stroke in strokes:
        paint_stroke(out, stroke["points"], stroke["size"], stroke["class"])
    return torch.from_numpy(out)[None]
