"""Static HTML result pages (dominate).

``HTML(web_dir, title)`` collects rows of images stored under
``web_dir/images`` and writes ``web_dir/index.html`` atomically on :meth:`save`.
"""
import os

import dominate
from dominate.tags import a, br, h3, img, meta, p, table, td, tr

from util.io import save_image_atomic, write_text_atomic


class HTML:
    """A page of image rows. ``refresh`` (seconds) makes browsers reload it."""

    def __init__(self, web_dir, title, refresh=0):
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=title)
        if refresh > 0:
            with self.doc.head:
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

    def save_image(self, name, image):
        """Write ``image`` (``(H, W, 3)`` uint8) to ``images/name`` atomically; returns ``name``."""
        save_image_atomic(os.path.join(self.img_dir, name), image)
        return name

    def save(self, filename="index.html"):
        """Write the page atomically; returns its path."""
        path = os.path.join(self.web_dir, filename)
        write_text_atomic(path, self.doc.render())
        return path


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
