"""Running independent per-file tasks in this process or in a process pool.

Used by the SPSE job (``spse/job.py``) and the dataset-preparation
scripts (``datasets/common.py``). Each worker process is kept single-threaded,
so ``workers`` scales with cores: the BLAS/OpenMP thread variables are set to
1 for spawned workers, and every worker (forked ones too, which inherit
libraries the parent has already loaded and whose thread pools no longer read
those variables) limits the loaded BLAS/OpenMP pools to one thread with
``threadpoolctl`` when it starts. The in-process path (``workers == 1``) runs
under the same limit and restores the caller's setting when it ends.
"""
import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

from threadpoolctl import threadpool_limits
from tqdm import tqdm

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def _init_worker():
    """Keep each worker process single-threaded.

    The variables take effect for libraries loaded after this point (spawned
    workers load everything after :func:`_single_thread_env` set them);
    ``threadpool_limits(1)`` sets the pools of the libraries already loaded
    (a forked worker inherits the parent's BLAS with its thread count).
    """
    for name in _THREAD_ENV:
        os.environ[name] = "1"
    threadpool_limits(limits=1)


@contextlib.contextmanager
def _single_thread_env():
    """Set the BLAS/OpenMP thread variables to 1 while worker processes are spawned."""
    saved = {name: os.environ.get(name) for name in _THREAD_ENV}
    for name in _THREAD_ENV:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_tasks(function, tasks, workers=1, progress=True, desc="", unit="img", on_worker_death=None):
    """Yield ``function(task)`` for each of ``tasks``, with a tqdm bar.

    With ``workers == 1`` (or at most one task) everything runs in this
    process, in order. Otherwise a process pool runs them and results come in
    completion order; ``function`` and the tasks must be picklable. On Linux
    the pool forks its workers, which then share the parent's imports;
    elsewhere it spawns them with the thread variables set to 1. The progress
    bar (and its monitor thread) is created after the workers are started, so
    no extra thread exists at fork time.

    ``function`` should turn the errors of a bad input into a result itself.
    When a worker process dies (e.g. the OOM killer), the tasks it had not
    finished yield ``on_worker_death(task, error)`` (the error is raised when
    that is None). Interrupting the iteration (Ctrl-C, or the caller stopping)
    drops the queued work.
    """
    if workers == 1 or len(tasks) <= 1:
        with threadpool_limits(limits=1), \
                tqdm(total=len(tasks), unit=unit, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
            for task in tasks:
                out = function(task)
                bar.update(1)
                yield out
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with _single_thread_env():
        pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker)
        try:
            futures = {pool.submit(function, task): task for task in tasks}
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    try:
        with tqdm(total=len(tasks), unit=unit, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
            for fut in as_completed(futures):
                try:
                    out = fut.result()
                except BrokenProcessPool as e:
                    if on_worker_death is None:
                        raise
                    out = on_worker_death(futures[fut], e)
                bar.update(1)
                yield out
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
