"""Free disk space against what a run will write.

:func:`check_free_space` takes the files a run will have written at its end
(path -> bytes) and refuses to start when they do not fit on the disk of
their folder: each file counts its size less that of the file it replaces,
plus the largest file once more (an atomic write holds the new copy beside
the old one until the rename).
"""
import os
import shutil

from util.errors import OutputError


def format_bytes(n):
    """``n`` bytes as a short string in MB / GB (powers of 1000, as ``du --si`` and file browsers show)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def bytes_to_write(files):
    """Bytes the disk must still hold for ``files`` (dict path -> final size); see the module docstring."""
    grow = 0
    for path, size in files.items():
        grow += max(0, int(size) - (os.path.getsize(path) if os.path.isfile(path) else 0))
    return grow + (max(files.values()) if files else 0)


def free_bytes(folder):
    """Free bytes on the disk of ``folder`` (or of its nearest existing parent)."""
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    return shutil.disk_usage(probe).free


def check_free_space(folder, files, override_flag, what="checkpoint files", log=print):
    """Raise :class:`OutputError` when ``files`` (path -> bytes) do not fit in the free space of ``folder``.

    The message says how much will be written and how much is free, and
    names ``override_flag``, which starts the run anyway. Returns
    ``(needed, free)``; ``log`` gets one line saying both.
    """
    needed, free = bytes_to_write(files), free_bytes(folder)
    total = sum(files.values())
    if needed > free:
        raise OutputError(f"{folder}: this run will write {format_bytes(total)} of {what} ({len(files)} files; "
                          f"{format_bytes(needed)} more than the disk holds now, counting one temporary copy), "
                          f"but only {format_bytes(free)} is free there. Free some space, save fewer snapshots "
                          f"(a larger --save_epoch_freq) or pass {override_flag} to start anyway")
    log(f"{what}: up to {format_bytes(total)} in {len(files)} files ({format_bytes(free)} free)")
    return needed, free
