"""Distributed training: the launcher for ``--gpu_ids 0,1,...`` and the helpers shared with ``torchrun``.

Two ways to start N processes, with identical results:

* ``torchrun --nproc_per_node N train.py ...`` sets ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous address;
* ``python train.py --gpu_ids 0,1,2,3 ...`` (the release's command line): the
  first process calls :func:`launch`, which spawns one process per listed id
  with exactly those variables (``MASTER_ADDR`` 127.0.0.1, a free
  ``MASTER_PORT``) and waits for them. ``--gpu_ids -1 --cpu_processes N``
  does the same with N CPU processes (gloo); the tests use it.

In each process :func:`init_distributed` starts the default process group
(NCCL on CUDA, gloo on CPU) and :func:`local_device` picks its device.
"""
import os
import socket

import torch
import torch.distributed as dist


def is_launched_distributed():
    """True when the environment of ``torchrun`` or :func:`launch` (WORLD_SIZE > 1) is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(gpu_ids, local_rank=None):
    """The ``torch.device`` of this process.

    ``gpu_ids`` (list of int, empty for CPU) as resolved by the options. When
    it lists exactly one id per local process (``LOCAL_WORLD_SIZE``, as
    :func:`launch` arranges), process ``local_rank`` uses ``gpu_ids[local_rank]``;
    otherwise (e.g. ``torchrun --nproc_per_node 4`` with the default
    ``--gpu_ids 0``) it uses ``cuda:<local_rank>``, torchrun's convention.
    Outside a distributed launch: the first listed GPU.
    """
    if not gpu_ids:
        return torch.device("cpu")
    if not is_launched_distributed():
        return torch.device(f"cuda:{gpu_ids[0]}")
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "0"))
    if len(gpu_ids) == local_world:
        return torch.device(f"cuda:{gpu_ids[local_rank]}")
    return torch.device(f"cuda:{local_rank}")


def init_distributed(use_cuda, device=None):
    """Initialise the default process group when launched by torchrun or :func:`launch`.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` in a single
    process. On CUDA, ``device`` (default ``cuda:<local_rank>``) becomes the
    current device before the NCCL group starts.
    """
    if not is_launched_distributed():
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(device if device is not None else local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launched_process(index, fn, argv, nprocs, port, errors):
    """Body of one process started by :func:`launch`: torchrun's environment, then ``fn(argv)``."""
    os.environ.update({"RANK": str(index), "LOCAL_RANK": str(index), "WORLD_SIZE": str(nprocs),
                       "LOCAL_WORLD_SIZE": str(nprocs), "GROUP_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    from util.errors import USER_ERRORS

    try:
        fn(argv)
    except USER_ERRORS as e:
        errors.put((index, type(e).__name__, str(e)))
        raise
    finally:
        cleanup()


def launch(fn, argv, nprocs):
    """Run ``fn(argv)`` in ``nprocs`` new processes (spawned), one per rank, and wait for all of them.

    Each process gets the environment torchrun would give it (``RANK`` =
    ``LOCAL_RANK`` = its index, ``WORLD_SIZE`` = ``LOCAL_WORLD_SIZE`` =
    ``nprocs``, ``MASTER_ADDR``/``MASTER_PORT``), so ``fn`` runs exactly as
    under ``torchrun --standalone --nproc_per_node nprocs``. ``fn`` must be a
    module-level function. When a process fails with a user error
    (:data:`util.errors.USER_ERRORS`), the same error type is raised here with
    the process index; other failures raise ``torch.multiprocessing``'s
    ``ProcessRaisedException`` / ``ProcessExitedException`` (the others are
    stopped).
    """
    import torch.multiprocessing as mp

    from util import errors as errs

    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    try:
        mp.start_processes(_launched_process, args=(fn, list(argv), nprocs, free_port(), errors),
                           nprocs=nprocs, join=True, start_method="spawn")
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        if not errors.empty():
            index, kind, message = errors.get()
            cls = {c.__name__: c for c in errs.USER_ERRORS}[kind]
            raise cls(f"process {index} of {nprocs}: {message}") from None
        raise


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


def processes_to_launch(opt):
    """Number of processes ``train.py`` must start itself (0: run in this process).

    ``len(--gpu_ids)`` when several GPUs are listed, ``--cpu_processes`` when
    that is above 1; 0 when the process is already one of several (torchrun or
    :func:`launch`) or when one process is asked for.
    """
    if is_launched_distributed():
        return 0
    n = len(opt.gpu_ids) if opt.gpu_ids else int(getattr(opt, "cpu_processes", 1) or 1)
    return n if n > 1 else 0


def planned_world_size(opt):
    """Number of training processes this command line will run in (launched here or by torchrun)."""
    if is_launched_distributed():
        return int(os.environ["WORLD_SIZE"])
    return max(1, processes_to_launch(opt))
