"""Static HTML pages (dominate): rows of images, and the blocks of the result pages.

``HTML(web_dir, title)`` collects content and images stored under
``web_dir/images`` and writes ``web_dir/index.html`` atomically on :meth:`save`.
The result pages (``util/pages.py``) are built from three blocks:
:meth:`HTML.add_heading` (a title and a table of facts),
:meth:`HTML.add_legend` (class colour swatches with names) and
:meth:`HTML.add_grid` (one table: a header row, then rows of :class:`Cell`).
"""
import collections
import os

import dominate
from dominate.tags import a, b, br, div, h2, h3, img, meta, p, span, style, table, td, th, tr

from util.io import save_image_atomic, write_text_atomic

PAGE_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 12px; }
table.facts th { text-align: left; padding: 1px 12px 1px 0; font-weight: normal; color: #555; }
table.facts td { padding: 1px 0; }
div.legend { margin: 8px 0; }
div.legend span.entry { display: inline-block; margin: 0 12px 4px 0; white-space: nowrap; }
div.legend span.entry.marked { font-weight: bold; }
span.swatch { display: inline-block; width: 12px; height: 12px; border: 1px solid #888; vertical-align: middle;
              margin-right: 4px; }
table.grid { border-collapse: collapse; }
table.grid th, table.grid td { border: 1px solid #ccc; padding: 2px; vertical-align: top; text-align: center; }
table.grid td.name { text-align: left; min-width: 110px; }
table.grid img { display: block; }
"""

Cell = collections.namedtuple("Cell", "image lines link", defaults=(None, (), None))
Cell.__doc__ = """One grid cell: ``image`` (file name under ``images/``, or None), text ``lines`` below it,
and the image's ``link`` (default: the image itself)."""


class HTML:
    """A page of image rows. ``refresh`` (seconds) makes browsers reload it."""

    def __init__(self, web_dir, title, refresh=0):
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=title)
        with self.doc.head:
            meta(charset="utf-8")
            if refresh > 0:
                meta(http_equiv="refresh", content=str(refresh))

    def add_header(self, text):
        """Add a section heading."""
        with self.doc:
            h3(text)

    def add_images(self, ims, txts, links, width=256):
        """Add one row: ``ims`` are file names relative to ``images/``, with captions ``txts``."""
        t = table(border=1, style="table-layout: fixed;")
        self.doc.add(t)
        with t:
            with tr():
                for im, txt, link in zip(ims, txts, links):
                    image_cell(im, txt, width, link)

    # ------------------------------------------------------------------ result-page blocks
    def use_page_style(self):
        """Add the compact style sheet of the result pages (once)."""
        if not getattr(self, "_styled", False):
            with self.doc.head:
                style(PAGE_STYLE)
            self._styled = True

    def add_heading(self, title, facts):
        """A title and a two-column table of ``facts`` (``[(label, value)]``; values become text)."""
        self.use_page_style()
        with self.doc:
            h2(title)
            with table(cls="facts"):
                for label, value in facts:
                    with tr():
                        th(str(label))
                        td(str(value))

    def add_legend(self, entries, marked=(), title="classes"):
        """Class swatches: ``entries`` ``[(index, name, "#rrggbb")]``; indices in ``marked`` are bold."""
        self.use_page_style()
        marked = set(marked)
        with self.doc:
            with div(cls="legend"):
                b(f"{title}: ")
                for index, name, colour in entries:
                    with span(cls="entry marked" if index in marked else "entry", data_class=str(index)):
                        span(cls="swatch", style=f"background:{colour}")
                        span(f"{index} {name}")

    def add_grid(self, header, rows, width=256):
        """One table: ``header`` (a list of :class:`Cell` or strings), then ``rows`` (lists of cells).

        Images are shown ``width`` pixels wide and link to their file; the
        first cell of a row is the row's name cell (left-aligned).
        """
        self.use_page_style()
        t = table(cls="grid")
        self.doc.add(t)
        with t:
            with tr():
                for cell in header:
                    with th():
                        _cell_content(_as_cell(cell), width)
            for row in rows:
                with tr():
                    for i, cell in enumerate(row):
                        with td(cls="name" if i == 0 else None):
                            _cell_content(_as_cell(cell), width)
        return t

    def save_image(self, name, image):
        """Write ``image`` (``(H, W, 3)`` uint8) to ``images/name`` atomically; returns ``name``."""
        save_image_atomic(os.path.join(self.img_dir, name), image)
        return name

    def save(self, filename="index.html"):
        """Write the page atomically; returns its path."""
        path = os.path.join(self.web_dir, filename)
        write_text_atomic(path, self.doc.render())
        return path


def _as_cell(cell):
    return Cell(lines=(cell,)) if isinstance(cell, str) else cell


def _cell_content(cell, width):
    if cell.image:
        with a(href=os.path.join("images", cell.link or cell.image)):
            img(style=f"width:{width}px", src=os.path.join("images", cell.image))
    for i, line in enumerate(cell.lines):
        if i or cell.image:
            br()
        span(str(line))


def image_cell(name, caption, width=256, link=None):
    """Add a table cell (inside an open ``tr`` context) showing ``images/name`` with ``caption``.

    The image links to ``images/link`` (default: itself); with ``name`` None
    the cell holds the caption only.
    """
    with td(style="word-wrap: break-word;", halign="center", valign="top"):
        with p():
            if name:
                with a(href=os.path.join("images", link or name)):
                    img(style=f"width:{width}px", src=os.path.join("images", name))
                br()
            p(caption)
