"""Uploaded files: their names, the decoding budget, and reading them with the project's rules.

* :func:`display_name`: the name shown in messages and lists (never a path);
* :func:`decode_data_url`: the bytes of a ``data:`` URL;
* :class:`PixelBudget`: the pixels that uploads may decode at once, over all
  sessions, reserved from the file headers before anything is decoded;
* :func:`read_upload`: ``read_rgb`` / ``read_label`` on uploaded bytes, with
  messages that name the upload and no server path.
"""
import base64
import binascii
import contextlib
import os
import re
import tempfile
import threading

from PIL import Image

from util.errors import InputError

MAX_NAME_CHARS = 100
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")


class UploadTooLarge(InputError):
    """An upload whose images hold more pixels than the editor decodes at once (answered 413)."""


class Busy(RuntimeError):
    """The server is busy with other work right now; the request may be repeated (answered 503)."""


def display_name(name, default):
    """The upload's name as shown: its last path component, printable, at most :data:`MAX_NAME_CHARS`.

    ``""``, ``"."``, ``".."`` and names without a printable character become ``default``.
    """
    text = re.split(r"[/\\]", str(name if name is not None else ""))[-1]
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    if text in ("", ".", ".."):
        return default
    if len(text) > MAX_NAME_CHARS:
        ext = _EXTENSION.search(text)
        tail = ext.group(0) if ext else ""
        text = text[:MAX_NAME_CHARS - 1 - len(tail)] + "\u2026" + tail
    return text


def decode_data_url(text, name):
    """Bytes of a ``data:...;base64,...`` URL (or plain base64); :class:`InputError` naming ``name``."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{name}: no file content received")
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{name}: the upload is not valid base64 ({e})") from e


class PixelBudget:
    """Pixels that may be decoded at once, shared by every session's uploads.

    ``reserve(n, what)`` is a context manager holding ``n`` pixels while the
    block runs. A request for more than the whole budget raises
    :class:`UploadTooLarge`; when other uploads hold too much of it, the
    caller waits up to ``wait_s`` seconds and then gets :class:`Busy`.
    """

    def __init__(self, max_pixels, wait_s=10.0):
        self.max_pixels = int(max_pixels)
        self.wait_s = float(wait_s)
        self.in_use = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels, what):
        pixels = int(pixels)
        if pixels > self.max_pixels:
            raise UploadTooLarge(f"{what}: {pixels / 1e6:.1f} megapixels, more than the editor decodes at once "
                                 f"({self.max_pixels / 1e6:g} megapixels, --max_upload_mpix); upload a smaller copy")
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use + pixels <= self.max_pixels, timeout=self.wait_s):
                raise Busy(f"{what}: other uploads are being decoded right now; try again in a moment")
            self.in_use += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()


def _safe_file_name(name):
    """A temporary file name that keeps only the upload's extension (the readers look at it)."""
    ext = _EXTENSION.search(name)
    return "upload" + (ext.group(0) if ext else "")


@contextlib.contextmanager
def upload_files(files):
    """Write ``[(bytes, name)]`` to temporary files; yields their paths, removes them afterwards."""
    with tempfile.TemporaryDirectory(prefix="ssn_upload_") as folder:
        paths = []
        for i, (data, name) in enumerate(files):
            path = os.path.join(folder, f"{i}_{_safe_file_name(name)}")
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        yield paths


def header_pixels(path):
    """``(width, height)`` from the image header at ``path`` (nothing is decoded); None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # the reader gives the message about the broken file


def read_upload(path, name, reader):
    """``reader(path)`` (``read_rgb`` / ``read_label``) with messages naming ``name`` instead of ``path``."""
    folder = os.path.dirname(path)
    try:
        return reader(path)
    except InputError as e:
        raise InputError(str(e).replace(path, name).replace(folder, "")) from e
    except Image.DecompressionBombError as e:
        raise UploadTooLarge(f"{name}: image too large to decode") from e
    except OSError as e:  # the readers turn file errors into InputError; anything left is not the user's path
        raise InputError(f"{name}: cannot be read ({type(e).__name__})") from e
