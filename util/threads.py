"""Torch's intra-op threads, capped for the cores this process may use.

Torch starts with one thread per physical core of the machine, whatever
else runs: several training processes on one machine (``--cpu_processes``,
``torchrun``), or other jobs, then oversubscribe the cores, and every
parallel region waits for a descheduled thread. :func:`cap_threads` sets
``min(torch's default, cores this process may run on) // local processes``
(at least 1; ``LOCAL_WORLD_SIZE`` gives the processes of this machine), at
most ``limit``. A thread count the user chose (``OMP_NUM_THREADS``) is kept.
The count depends on the machine only, never on its current load, so a
resumed run computes with the same count as the run it continues.
"""
import os

USER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores():
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_count(default, cores, local_processes=1, limit=None):
    """The capped count: ``max(1, min(default, cores) // local_processes)``, at most ``limit``."""
    n = max(1, min(int(default), int(cores)) // max(1, int(local_processes)))
    return min(n, int(limit)) if limit else n


def cap_threads(local_processes=None, limit=None):
    """Set torch's intra-op threads (see the module docstring); returns the count in force.

    ``local_processes`` default: ``LOCAL_WORLD_SIZE`` (1 when unset).
    """
    import torch

    if any(os.environ.get(v) for v in USER_VARIABLES):
        return torch.get_num_threads()
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    n = thread_count(torch.get_num_threads(), available_cores(), local_processes, limit)
    torch.set_num_threads(n)
    return n
