"""The result pages of ``test.py`` and ``mix_styles.py``: one layout.

Each page has a heading (model, checkpoint, EMA generator or not, and what
the page shows), a class legend (the colours of the label maps with the class
names; ``class j`` where no name is known) and one compact grid, one row per
sample, with thumbnails ``width`` pixels wide that link to the full images:

* :class:`TestPage`: name (and SSIM / PSNR when the photographs exist) |
  label map | synthesised image | real image;
* :func:`write_mix_page`: source label map | reconstruction | one cell per
  (style source, alpha) | colour edit; the header row shows the style images.

Image files keep the layout ``evaluate.py`` and scripts rely on:
``images/<kind>/<name>.png`` for test pages, :func:`mix_cell_name` for mixing.
"""
import json
import math
import os

from util.html import HTML, Cell
from util.images import label_colormap, tensor2label
from util.io import write_text_atomic

TEST_KINDS = ("input_label", "synthesized_image", "real_image")
TEST_CAPTIONS = {"input_label": "label map", "synthesized_image": "synthesized", "real_image": "real"}


def class_legend(n_classes, names=None, dontcare=False):
    """``[(index, name, "#rrggbb")]`` for the label colours of ``n_classes`` classes.

    ``names`` (index = label value) name the classes; missing names read
    ``class j``. With ``dontcare`` the last class is the don't-care class.
    The colours are those of :func:`util.images.tensor2label`.
    """
    colours = label_colormap(max(int(n_classes), 1))
    entries = []
    for j in range(int(n_classes)):
        if dontcare and j == n_classes - 1:
            name = "don't care"
        elif names and j < len(names):
            name = names[j]
        else:
            name = f"class {j}"
        r, g, b = (int(c) for c in colours[j])
        entries.append((j, name, f"#{r:02x}{g:02x}{b:02x}"))
    return entries


def format_metrics(values):
    """``"SSIM 0.6512, PSNR 18.21 dB"`` of a metrics dict (an infinite PSNR reads ``inf``)."""
    psnr = values["psnr"]
    shown = "inf" if psnr is None or math.isinf(psnr) else f"{psnr:.2f}"
    return f"SSIM {values['ssim']:.4f}, PSNR {shown} dB"


class TestPage:
    """``test.py``'s page under ``web_dir``: :meth:`add` one sample at a time, then :meth:`save`.

    ``legend``: :func:`class_legend`'s entries; ``width``: thumbnail width in pixels.
    """

    def __init__(self, web_dir, title, legend, width=256):
        self.page = HTML(web_dir, title)
        self.title, self.legend, self.width = title, legend, int(width)
        self.rows, self.kinds = [], []

    def add(self, name, images, metrics=None):
        """Save one sample's images (``{kind: (H, W, 3) uint8}``, kinds of :data:`TEST_KINDS`) and add its row.

        ``metrics`` (``{"ssim", "psnr", ...}``) is shown under the name.
        Returns ``{kind: file name under images/}``.
        """
        files = {kind: self.page.save_image(os.path.join(kind, f"{name}.png"), image)
                 for kind, image in images.items()}
        for kind in files:
            if kind not in self.kinds:
                self.kinds.append(kind)
        self.rows.append((name, files, metrics))
        return files

    def save(self, facts):
        """Write ``index.html`` with the heading ``facts`` (``[(label, value)]``); returns its path."""
        self.page.add_heading(self.title, facts)
        self.page.add_legend(self.legend)
        kinds = [k for k in TEST_KINDS if k in self.kinds] + [k for k in self.kinds if k not in TEST_KINDS]
        header = ["image"] + [TEST_CAPTIONS.get(k, k) for k in kinds]
        rows = []
        for name, files, metrics in self.rows:
            lines = (name,) + ((format_metrics(metrics),) if metrics else ())
            rows.append([Cell(lines=lines)] + [Cell(image=files.get(k)) for k in kinds])
        self.page.add_grid(header, rows, self.width)
        return self.page.save()


def mix_cell_name(source, style, alpha):
    """File name of one style-mixing cell (relative to ``images/``)."""
    return f"mixed/{source}__{style}__a{alpha:g}.png"


def write_mix_page(mix_dir, title, facts, legend, classes, sources, styles, alphas, grid, class_label,
                   semantic_nc, style_pictures=None, edit_rgb=None, width=256):
    """Write ``mix_styles.py``'s ``index.html`` and ``mix.json`` under ``mix_dir``; returns the page path.

    ``sources``: ``[(name, label (1, H, W) tensor, codes)]``; ``styles``:
    ``[(name, codes)]``; ``grid``: :func:`editing.style_mixing.mix_grid`'s
    result (``grid["reconstruction"][source]``, ``grid["mixed"][(source,
    style, alpha)]``), plus ``grid["edited"][source]`` with ``edit_rgb``.
    ``legend``: :func:`class_legend`'s entries, in which the restyled
    ``classes`` (indices) are marked; ``style_pictures``: ``{style name: (H, W, 3) uint8}`` shown in the
    header row. ``mix.json`` lists the image file of every cell.
    """
    page = HTML(mix_dir, title)
    style_pictures = style_pictures or {}
    shown = {name: page.save_image(f"styles/{name}.png", im) for name, im in style_pictures.items()}
    several = alphas != [1.0]
    header = ["source label", "reconstruction"]
    for style_name, _ in styles:
        for alpha in alphas:
            header.append(Cell(image=shown.get(style_name),
                               lines=(f"style {style_name}" + (f", alpha {alpha:g}" if several else ""),)))
    if edit_rgb is not None:
        header.append(f"colour edit {edit_rgb}")
    manifest = {"classes": list(classes), "alphas": alphas, "edit_rgb": edit_rgb, "rows": []}
    rows = []
    for src_name, label, _ in sources:
        entry = {"source": src_name,
                 "label": page.save_image(f"labels/{src_name}.png", tensor2label(label, semantic_nc)),
                 "reconstruction": page.save_image(f"reconstruction/{src_name}.png",
                                                   grid["reconstruction"][src_name]),
                 "cells": []}
        row = [Cell(image=entry["label"], lines=(src_name,)), Cell(image=entry["reconstruction"], lines=("own codes",))]
        for style_name, _ in styles:
            for alpha in alphas:
                name = page.save_image(mix_cell_name(src_name, style_name, alpha),
                                       grid["mixed"][(src_name, style_name, alpha)])
                entry["cells"].append({"style": style_name, "alpha": alpha, "image": name})
                row.append(Cell(image=name, lines=(f"{class_label} from {style_name}"
                                                   + (f", alpha {alpha:g}" if several else ""),)))
        if edit_rgb is not None:
            entry["edited"] = page.save_image(f"edited/{src_name}.png", grid["edited"][src_name])
            row.append(Cell(image=entry["edited"], lines=(f"{class_label} shifted by {edit_rgb}",)))
        manifest["rows"].append(entry)
        rows.append(row)
    page.add_heading(title, facts)
    page.add_legend(legend, marked=classes)
    page.add_grid(header, rows, width)
    write_text_atomic(os.path.join(mix_dir, "mix.json"), json.dumps(manifest, indent=2) + "\n")
    return page.save()
