"""Distributed training helpers (``torchrun``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed`
then starts a process group with NCCL on CUDA or Gloo on CPU. Without those
variables everything runs in a single process.
"""
import os

import torch
import torch.distributed as dist


def is_launched_distributed():
    """True when the environment of ``torchrun`` (WORLD_SIZE > 1) is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(use_cuda):
    """Initialise the default process group when launched by torchrun.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` outside torchrun.
    On CUDA the local device is ``cuda:<local_rank>``.
    """
    if not is_launched_distributed():
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def is_initialized():
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def get_rank():
    """Rank of this process (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size():
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process():
    """True on rank 0: the only rank that logs and saves."""
    return get_rank() == 0


def barrier():
    """Synchronise all ranks (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


def all_reduce_mean(values):
    """Average a dict of floats over ranks (for logging); returns a new dict."""
    if not is_initialized() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = (t / get_world_size()).cpu()
    return {k: float(v) for k, v in zip(keys, t)}


def all_gather_objects(obj):
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` without a process group."""
    if not is_initialized() or get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def cleanup():
    """Destroy the process group, if any."""
    if is_initialized():
        dist.destroy_process_group()
