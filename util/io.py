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

Output folders are checked before any work (:func:`check_output_dir`,
:func:`check_output_file`: a path that is a file, lies under a file, or is
read-only is refused, naming the flag). A page of many files is written into
a staging folder and moved into place when complete (:func:`staged_folder`),
and :func:`output_errors` turns a full disk into one clear message.
"""
import contextlib
import errno
import glob
import io
import os
import shutil
import socket
import tempfile

import numpy as np
from PIL import Image

from util.errors import OutputError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


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


def leftover_temporaries(folder):
    """Temporary files of :func:`atomic_path` in ``folder`` (``.<name>.<random>.tmp``), left by a killed write.

    Only call this while no other process writes in ``folder`` (e.g. under
    the run lock of a checkpoint folder).
    """
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.startswith(".") and n.endswith(".tmp") and n.count(".") >= 3
                  and os.path.isfile(os.path.join(folder, n)))


def remove_temporaries(folder):
    """Remove :func:`leftover_temporaries` of ``folder``; returns ``(paths, bytes freed)``."""
    removed, freed = [], 0
    for path in leftover_temporaries(folder):
        try:
            size = os.path.getsize(path)
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
        freed += size
    return removed, freed


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


def save_image_atomic(path, image, jpeg_quality=95):
    """Atomically save an image (HxW or HxWx3 uint8 array, or PIL image) to ``path``.

    The format follows the file extension of ``path``; JPEG files are written
    with ``jpeg_quality`` (default 95).
    """
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


# ------------------------------------------------------------------------------ output folders
def _nearest_existing(path):
    """``path`` or its nearest existing ancestor (absolute)."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def _write_problem(folder):
    """Why no file can be created in the existing ``folder`` (None when one can).

    Tries it (a temporary file, removed at once): permission bits alone do not
    tell, e.g. for root or on a read-only mount.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write_check.", suffix=".tmp", dir=folder)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.remove(tmp)
    return None


def check_output_dir(folder, flag, value=None):
    """Raise :class:`OutputError` unless files can be written in ``folder`` (created later if missing).

    ``flag`` and ``value`` (what was given, default ``folder``; the output
    folder may lie below it, e.g. ``--results_dir`` and ``<name>/test_latest``)
    name the option in the message. Refused: a path that is a file, a path
    under a file, and a folder (or the nearest existing parent of a missing
    one) where no file can be created. Creates nothing. Returns ``folder``.
    """
    folder = os.fspath(folder)
    value = folder if value is None else os.fspath(value)
    found = _nearest_existing(folder)
    below = "" if os.path.abspath(value) == os.path.abspath(folder) else f" (the output goes to {folder})"
    if not os.path.isdir(found):
        if found == os.path.abspath(value):
            raise OutputError(f"{flag} {value}: this is a file, not a folder{below}; give a folder path "
                              f"(or move the file away)")
        raise OutputError(f"{flag} {value}: {found} is a file, so no folder can be made under it; "
                          f"give another path")
    problem = _write_problem(found)
    if problem is not None:
        where = "the folder" if found == os.path.abspath(folder) else f"its nearest existing folder {found}"
        raise OutputError(f"{flag} {value}: cannot write in {where} ({problem}); give a writable folder "
                          f"or change its permissions")
    return folder


def check_output_file(path, flag):
    """Raise :class:`OutputError` unless the file ``path`` can be written (it may exist; see :func:`check_output_dir`)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise OutputError(f"{flag} {path}: this is a folder; give the path of a file")
    check_output_dir(os.path.dirname(os.path.abspath(path)), flag, value=path)
    return path


@contextlib.contextmanager
def output_errors(folder, kept="nothing there was changed"):
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) inside the block into one :class:`OutputError`.

    The message names ``folder`` and says what was kept (``kept``). Other
    errors pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        raise OutputError(f"{folder}: no space left on the device while writing there ({e.strerror}); "
                          f"{kept}; free some space and run again") from e


def _staging_prefix(folder):
    return os.path.join(os.path.dirname(os.path.abspath(folder)), "." + os.path.basename(os.path.abspath(folder))
                        + ".staging-")


def _remove_stale_staging(folder):
    """Remove staging folders of ``folder`` left by killed processes of this host; return their paths."""
    prefix = _staging_prefix(folder)
    removed = []
    for path in glob.glob(glob.escape(prefix) + "*"):
        parts = path[len(prefix):].rsplit("-", 2)  # host, pid, random part
        if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def staged_folder(folder):
    """Yield an empty staging folder next to ``folder``; when the block succeeds, move its files into ``folder``.

    Use it for an output made of many files (a results page and its images):
    a failed or interrupted run changes nothing in ``folder``. On success the
    files are moved with ``os.replace`` (same file system: no copy, no extra
    space), those in sub-folders first and the top-level ones (the page)
    last, so a page never refers to images not yet in place; files of
    ``folder`` with other names stay. On an exception the staging folder is
    removed. Staging folders left by killed processes of this host are
    removed on entry.
    """
    folder = os.path.abspath(os.fspath(folder))
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    _remove_stale_staging(folder)
    stage = tempfile.mkdtemp(prefix=os.path.basename(_staging_prefix(folder))
                             + f"{socket.gethostname()}-{os.getpid()}-", dir=os.path.dirname(folder))
    try:
        yield stage
        files = []
        for root, _, names in os.walk(stage):
            files += [os.path.relpath(os.path.join(root, n), stage) for n in names]
        for rel in sorted(files, key=lambda r: (-r.count(os.sep), r)):
            target = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(stage, rel), target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
