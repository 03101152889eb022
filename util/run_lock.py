"""One training run per checkpoint folder: ``checkpoints_dir/name/run.lock``.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic: of two runs
starting at once, one gets it) and holds the host name, process id and start
time of the run. A second run on the same folder stops with an
:class:`util.errors.OutputError` naming the running one. A lock left by a
killed run of this host (its process no longer exists) is taken over with a
note; a lock held by another host cannot be checked from here, so the
message says how to take it over (``--take_over_lock``, or deleting the file
once that run is known to have ended). The same process may take its own
lock again (tests run training several times in one process).

:func:`acquire` returns a :class:`RunLock`; :meth:`RunLock.release` (also
run at interpreter exit, and by :func:`releasing` around a ``main``)
removes the file, and the folders the lock created when nothing else was
written into them, so a run that fails validation leaves no folder behind.
"""
import atexit
import functools
import json
import os
import socket
import time

from util.errors import OutputError

LOCK_NAME = "run.lock"
_held = []  # the locks this process holds, oldest first


def _pid_alive(pid):
    """True when process ``pid`` exists on this host (another user's counts as alive)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path):
    """The record of a lock file (dict with ``host``, ``pid``, ``started``), or None when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record):
    started = record.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"host {record.get('host')}, pid {record.get('pid')}, started {when}"


class RunLock:
    """A held lock: ``path``, and the folders it created (removed on release when left empty)."""

    def __init__(self, path, created):
        self.path, self.created = path, created

    def release(self):
        """Remove the lock file (if still ours) and the empty folders it created. Safe to call twice."""
        if self in _held:
            _held.remove(self)
        record = read_lock(self.path)
        if record is not None and record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        for folder in self.created:  # innermost first
            try:
                os.rmdir(folder)
            except OSError:
                break  # not empty (the run wrote files) or gone


def _create(path, record):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())


def acquire(folder, take_over=False, log=print):
    """Take the run lock of the checkpoint folder ``folder`` (created if missing); returns a :class:`RunLock`.

    Raises :class:`OutputError` naming the running process when another live
    run holds it, or a run of another host (unless ``take_over``).
    """
    folder = os.path.abspath(folder)
    created, probe = [], folder
    while not os.path.isdir(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_NAME)
    host, pid = socket.gethostname(), os.getpid()
    record = {"host": host, "pid": pid, "started": time.time()}
    for _ in range(3):
        try:
            _create(path, record)
            break
        except FileExistsError:
            pass
        other = read_lock(path)
        if other is None:  # being written by a run starting this instant, or garbage
            time.sleep(0.2)
            other = read_lock(path)
        if other is not None and other.get("host") == host and other.get("pid") == pid:
            pass  # this process's own lock (a previous main() in the same process)
        elif other is not None and other.get("host") == host and _pid_alive(other.get("pid", -1)):
            raise OutputError(f"{path}: another training run is using this checkpoint folder ({_describe(other)}); "
                              f"wait for it to finish, stop it, or give this run another --name")
        elif other is not None and other.get("host") != host and not take_over:
            raise OutputError(f"{path}: a training run on another machine holds this checkpoint folder "
                              f"({_describe(other)}); its process cannot be checked from here. If that run "
                              f"has ended, pass --take_over_lock (or delete {path})")
        else:
            what = _describe(other) if other is not None else "unreadable lock file"
            log(f"note: {path}: taking over the lock of a run that is no longer running ({what})")
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    else:
        raise OutputError(f"{path}: could not take the run lock (another run keeps taking it); try again")
    mine = read_lock(path)
    if mine is None or mine.get("pid") != pid or mine.get("host") != host:  # lost a race with another run
        raise OutputError(f"{path}: another training run took this checkpoint folder at the same moment "
                          f"({_describe(mine or {})}); give this run another --name")
    lock = RunLock(path, created)
    _held.append(lock)
    return lock


def releasing(func):
    """Decorator: every run lock taken during ``func`` is released when it returns or raises."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        before = list(_held)
        try:
            return func(*args, **kwargs)
        finally:
            for lock in [lk for lk in _held if lk not in before]:
                lock.release()
    return wrapper


@atexit.register
def _release_all():
    for lock in list(_held):
        lock.release()
