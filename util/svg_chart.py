"""Small line charts as SVG text (no plotting library): one panel per series, side by side.

:func:`small_multiples` draws each series ``name -> [(x, y), ...]`` in its
own panel with its own y range (losses of different scales stay readable),
the x axis shared in meaning (training steps), the first and last x and the
y range written as numbers, and the latest value in the title.
"""
from xml.sax.saxutils import escape

PANEL_W, PANEL_H, PAD = 260, 130, 28


def _fmt(v):
    return f"{v:.4g}"


def _panel(name, points, x0, y0, colour):
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(ys), max(ys)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    xlo, xhi = min(xs), max(xs)
    span = (xhi - xlo) or 1
    w, h = PANEL_W - 2 * PAD, PANEL_H - 2 * PAD

    def px(x, y):
        return x0 + PAD + (x - xlo) / span * w, y0 + PAD + (hi - y) / (hi - lo) * h

    coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in (px(x, y) for x, y in points))
    parts = [
        f'<rect x="{x0 + PAD}" y="{y0 + PAD}" width="{w}" height="{h}" fill="none" stroke="#bbb"/>',
        f'<text x="{x0 + PAD}" y="{y0 + PAD - 8}" font-size="12">{escape(name)}: {_fmt(ys[-1])}</text>',
        f'<text x="{x0 + PAD - 2}" y="{y0 + PAD + 4}" font-size="9" text-anchor="end">{_fmt(hi)}</text>',
        f'<text x="{x0 + PAD - 2}" y="{y0 + PAD + h}" font-size="9" text-anchor="end">{_fmt(lo)}</text>',
        f'<text x="{x0 + PAD}" y="{y0 + PAD + h + 12}" font-size="9">{xlo}</text>',
        f'<text x="{x0 + PAD + w}" y="{y0 + PAD + h + 12}" font-size="9" text-anchor="end">{xhi}</text>',
    ]
    if len(points) == 1:
        cx, cy = px(xs[0], ys[0])
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{colour}"/>')
    else:
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
    return parts


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def small_multiples(series, columns=4, title=None):
    """SVG document (str) with one panel per non-empty series of ``series`` (dict name -> [(x, y)]).

    ``x``: int steps; ``y``: finite floats (others are left out). Returns an
    empty string when no series has a point.
    """
    clean = {k: [(int(x), float(y)) for x, y in v if y == y and abs(float(y)) != float("inf")]
             for k, v in series.items()}
    clean = {k: v for k, v in clean.items() if v}
    if not clean:
        return ""
    cols = min(columns, len(clean))
    rows = -(-len(clean) // cols)
    top = 20 if title else 0
    width, height = cols * PANEL_W, rows * PANEL_H + top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">']
    if title:
        out.append(f'<text x="4" y="14" font-size="13" font-weight="bold">{escape(title)}</text>')
    for i, (name, points) in enumerate(clean.items()):
        out += _panel(name, points, (i % cols) * PANEL_W, top + (i // cols) * PANEL_H, COLOURS[i % len(COLOURS)])
    out.append("</svg>")
    return "\n".join(out) + "\n"
