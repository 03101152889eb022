"""Atomic file writes.

Every output file is written to a temporary file in the destination folder,
flushed to disk, then renamed over the destination (``os.replace`` is atomic
on POSIX and Windows). A run killed at any moment therefore leaves either the
old file or the complete new one, never a truncated file. Temporary files end
in ``.tmp`` and are removed when the write fails.

Permissions: ``tempfile.mkstemp`` creates its file with mode 0600 whatever
the umask; before the rename the file gets the mode any newly created file
would get (``0666 & ~umask``, 0644 under umask 022), so result pages and
checkpoints can be shared like other files.
"""
import contextlib
import io
import os
import tempfile

import numpy as np


def current_umask():
    """The process's umask (int), read without changing it where the OS allows.

    Linux reports it in ``/proc/self/status``; elsewhere it is read by setting
    and restoring it (``os.umask`` has no read-only form).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode():
    """Mode of a newly created regular file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The caller writes the whole file to the yielded path. On an exception the
    temporary file is removed and ``path`` is left untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes_atomic(path, data):
    """Atomically write ``data`` (bytes) to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path, text):
    """Atomically write ``text`` (str, UTF-8) to ``path``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_npy_atomic(path, array):
    """Atomically save ``array`` as a ``.npy`` file at ``path`` (the name is kept as given)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def torch_save_atomic(obj, path):
    """Atomically ``torch.save`` ``obj`` to ``path``."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_image_atomic(path, image, jpeg_quality=95):
    """Atomically save an image (HxW or HxWx3 uint8 array, or PIL image) to ``path``.

    The format follows the file extension of ``path``; JPEG files are written
    with ``jpeg_quality`` (default 95).
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP"}.get(fmt, fmt.upper() or "PNG")
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.save(buf, format=fmt, quality=jpeg_quality)
    else:
        image.save(buf, format=fmt)
    write_bytes_atomic(path, buf.getvalue())
