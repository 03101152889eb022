"""Distributed training: the launcher for ``--gpu_ids 0,1,...`` and the helpers shared with ``torchrun``.

Three ways to start N processes, with identical results:

* ``torchrun --nproc_per_node N train.py ...`` sets ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous address;
* ``python train.py --gpu_ids 0,1,2,3 ...`` (the release's command line): the
  first process calls :func:`launch`, which spawns one process per listed id
  with exactly those variables (``MASTER_ADDR`` 127.0.0.1, a free
  ``MASTER_PORT``) and waits for them. ``--gpu_ids -1 --cpu_processes N``
  does the same with N CPU processes (gloo); the tests use it;
* ``srun`` with one task per GPU: :func:`adopt_slurm_environment` turns the
  ``SLURM_*`` variables of the job step into torchrun's (:func:`slurm_environment`).

In each process :func:`init_distributed` starts the default process group
(NCCL on CUDA, gloo on CPU) and :func:`local_device` picks its device.
"""
import os
import re
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from util import errors as errs
from util.errors import OptionError, USER_ERRORS


def is_launched_distributed():
    """True when the environment of ``torchrun`` or :func:`launch` (WORLD_SIZE > 1) is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_device(gpu_ids, local_rank=None):
    """The ``torch.device`` of this process.

    ``gpu_ids`` (list of int, empty for CPU) as resolved by the options. When
    it lists exactly one id per local process (``LOCAL_WORLD_SIZE``, as
    :func:`launch` arranges), process ``local_rank`` uses ``gpu_ids[local_rank]``;
    otherwise (e.g. ``torchrun --nproc_per_node 4`` with the default
    ``--gpu_ids 0``) it uses ``cuda:<local_rank>``, torchrun's convention, or
    ``cuda:<local_rank mod visible GPUs>`` when the process sees fewer GPUs
    than that (SLURM binding one GPU to each task). Outside a distributed
    launch: the first listed GPU.
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
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < visible <= local_rank:  # e.g. srun --gpus-per-task 1: each task sees only its own GPU(s)
        return torch.device(f"cuda:{local_rank % visible}")
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


def hostname():
    """This machine's host name (names the node in messages about a rank)."""
    return socket.gethostname()


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


# ---------------------------------------------------------------------------------------------- SLURM
SLURM_PORT_BASE = 20000   # MASTER_PORT under srun: SLURM_PORT_BASE + job id mod SLURM_PORT_SPAN
SLURM_PORT_SPAN = 10000   # (20000-29999, below Linux's ephemeral range 32768-60999)
SRUN_TORCHRUN_LINE = ("srun --ntasks-per-node 1 torchrun --nnodes $SLURM_JOB_NUM_NODES --nproc_per_node <GPUs per "
                      "node> --rdzv_backend c10d --rdzv_endpoint $(hostname):29500 train.py ...")


def expand_hostlist(spec):
    """The host names of a SLURM host list in its compact form, in order.

    ``"node[01-03,07],gpu5"`` -> ``["node01", "node02", "node03", "node07", "gpu5"]``; ranges keep
    the zero padding of their first number, and a name may hold several bracket groups
    (``"r[1-2]n[1-2]"`` -> ``r1n1 r1n2 r2n1 r2n2``). Raises ValueError for a malformed list.
    """
    names, depth, start = [], 0, 0
    for i, ch in enumerate(spec + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if depth < 0 or depth > 1:
            raise ValueError(f"malformed host list {spec!r}")
        if ch == "," and depth == 0:
            item = spec[start:i].strip()
            start = i + 1
            if item:
                names.extend(_expand_host(item, spec))
    if depth:
        raise ValueError(f"malformed host list {spec!r}")
    return names


def _expand_host(item, spec):
    """Expand one entry of a host list (possibly several bracket groups)."""
    m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", item)
    if m is None:
        if "[" in item or "]" in item:
            raise ValueError(f"malformed host list {spec!r}")
        return [item]
    prefix, ranges, rest = m.groups()
    tails = _expand_host(rest, spec) if rest else [""]
    out = []
    for part in ranges.split(","):
        bounds = part.strip().split("-")
        if len(bounds) == 1 and bounds[0].isdigit():
            numbers = [bounds[0]]
        elif len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit() and int(bounds[0]) <= int(bounds[1]):
            width = len(bounds[0])
            numbers = [str(n).zfill(width) for n in range(int(bounds[0]), int(bounds[1]) + 1)]
        else:
            raise ValueError(f"malformed host list {spec!r}")
        out.extend(prefix + n + tail for n in numbers for tail in tails)
    return out


def expand_tasks_per_node(spec):
    """SLURM's tasks-per-node list, e.g. ``"2(x3),1"`` -> ``[2, 2, 2, 1]``; ValueError when malformed."""
    counts = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m is None:
            raise ValueError(f"malformed tasks-per-node list {spec!r}")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


def slurm_master_port(job_id):
    """The rendezvous port of a SLURM job: ``SLURM_PORT_BASE + job_id mod SLURM_PORT_SPAN`` (MASTER_PORT wins)."""
    return SLURM_PORT_BASE + int(job_id) % SLURM_PORT_SPAN


def slurm_environment(environ):
    """torchrun's variables for this process, derived from the ``SLURM_*`` variables of ``environ``.

    Returns a dict to add to the environment: empty outside a SLURM job step of
    several tasks (no ``SLURM_STEP_ID``, one task, or torchrun already set
    ``WORLD_SIZE``). Inside ``srun`` with N > 1 tasks: ``RANK`` =
    ``SLURM_PROCID``, ``WORLD_SIZE`` = N (``SLURM_STEP_NUM_TASKS``, else
    ``SLURM_NTASKS``), ``LOCAL_RANK`` = ``SLURM_LOCALID``, ``LOCAL_WORLD_SIZE``
    = the tasks on this node (``SLURM_STEP_TASKS_PER_NODE`` at ``SLURM_NODEID``),
    ``GROUP_RANK`` = ``SLURM_NODEID``, ``MASTER_ADDR`` = the first host of
    ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST`` and
    ``MASTER_PORT`` = :func:`slurm_master_port` of ``SLURM_JOB_ID``; a
    ``MASTER_ADDR`` / ``MASTER_PORT`` already set is kept. Raises
    :class:`util.errors.OptionError` (showing :data:`SRUN_TORCHRUN_LINE`) when
    the variables are incomplete, or when ``srun`` started several tasks that
    each run a torchrun of a different node count (independent duplicate runs).
    """
    if not any(k in environ for k in ("SLURM_STEP_ID", "SLURM_STEPID")):
        return {}  # not inside srun (e.g. the batch script itself): one process is one process
    tasks_var = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS"
    try:
        tasks = int(environ.get(tasks_var, "1"))
    except ValueError:
        raise OptionError(f"{tasks_var}={environ[tasks_var]!r}: not a task count") from None
    if "WORLD_SIZE" in environ:  # torchrun (or train.py's launcher) started this process
        groups = environ.get("GROUP_WORLD_SIZE")
        if tasks > 1 and groups is not None and groups != str(tasks):
            raise OptionError(f"srun started {tasks} tasks, each running its own torchrun of {groups} node(s): "
                              f"these would be {tasks} independent copies of the run. Start one torchrun per "
                              f"node with a shared rendezvous, e.g. {SRUN_TORCHRUN_LINE}, or let srun start one "
                              "task per GPU without torchrun (docs/training.md)")
        return {}
    if tasks <= 1:
        return {}
    missing = [k for k in ("SLURM_PROCID", "SLURM_LOCALID") if k not in environ]
    nodelist_var = next((k for k in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
                         if environ.get(k)), None)
    if "MASTER_ADDR" not in environ and nodelist_var is None:
        missing.append("SLURM_JOB_NODELIST")
    if "MASTER_PORT" not in environ and "SLURM_JOB_ID" not in environ:
        missing.append("SLURM_JOB_ID")
    if missing:
        raise OptionError(f"srun started {tasks} tasks, but {', '.join(missing)} is not set, so the tasks cannot "
                          f"find each other; set MASTER_ADDR / MASTER_PORT, or use {SRUN_TORCHRUN_LINE}")
    out = {"RANK": environ["SLURM_PROCID"], "WORLD_SIZE": str(tasks), "LOCAL_RANK": environ["SLURM_LOCALID"],
           "GROUP_RANK": environ.get("SLURM_NODEID", "0")}
    per_node_var = "SLURM_STEP_TASKS_PER_NODE" if "SLURM_STEP_TASKS_PER_NODE" in environ else "SLURM_TASKS_PER_NODE"
    try:
        if per_node_var in environ:
            counts = expand_tasks_per_node(environ[per_node_var])
            out["LOCAL_WORLD_SIZE"] = str(counts[int(out["GROUP_RANK"])])
        elif "SLURM_NTASKS_PER_NODE" in environ:
            out["LOCAL_WORLD_SIZE"] = str(int(environ["SLURM_NTASKS_PER_NODE"]))
        if "MASTER_ADDR" not in environ:
            out["MASTER_ADDR"] = expand_hostlist(environ[nodelist_var])[0]
        if "MASTER_PORT" not in environ:
            out["MASTER_PORT"] = str(slurm_master_port(environ["SLURM_JOB_ID"]))
    except (ValueError, IndexError) as e:
        raise OptionError(f"cannot read the SLURM job step's variables ({e}); set MASTER_ADDR and MASTER_PORT, "
                          f"or use {SRUN_TORCHRUN_LINE}") from None
    return out


def adopt_slurm_environment(environ=None):
    """Apply :func:`slurm_environment` to ``environ`` (default ``os.environ``); returns what was set."""
    environ = os.environ if environ is None else environ
    found = slurm_environment(environ)
    environ.update(found)
    return found
