"""Checkpoint files: the layout under ``checkpoints_dir/name``, network files and the training state.

Layout under ``checkpoints_dir/name``:

* ``{epoch}_net_G.pth`` / ``latest_net_G.pth`` (and ``_D``): plain state_dicts,
  as the release wrote them;
* ``{epoch}_net_G_ema.pth``: the averaged generator (``--ema_decay``), same keys
  as ``net_G``; ``best_net_G.pth`` / ``best_net_G_ema.pth`` from evaluation
  during training (``--eval_dir``);
* ``latest_train_state.pth`` (the training loop writes it for ``latest``
  only; older runs may hold ``{epoch}_train_state.pth`` too): everything needed
  for an exact ``--continue_train`` (networks, optimisers, AMP scaler, epoch,
  iteration within the epoch, global step, RNG states of torch, CUDA, numpy and
  Python: ``rng`` for rank 0 and, from a run of several processes, ``rng_ranks``
  with one entry per rank, each holding that process's own CUDA device only).

Every file is written atomically, in the background with
:class:`CheckpointWriter` during training. Loading a missing, truncated or
malformed file raises :class:`util.errors.CheckpointError` naming the file.

A save is kill-consistent: its network files are written first (an epoch
snapshot's before the ``latest`` ones) and the training state last, holding
``files``, a record (content digest, size, modification time) of the
``latest`` network files written with it. A run killed anywhere in a save
resumes from the previous state and writes the lost files again; a snapshot
is never skipped, because the state saying its epoch is done comes after it.
:func:`latest_mismatches` compares the ``latest`` network files with that
record (``test.py`` refuses a generator that does not match; the resumed run
rewrites it from the state).
"""
import hashlib
import os
import random
import threading

import numpy as np
import torch

from models.checkpoint_compat import load_discriminator_weights, load_generator_weights
from util.errors import CheckpointError
from util.disk import format_bytes  # noqa: F401  (part of this module's interface)
from util.io import remove_temporaries
from util.torch_io import load_torch_file, torch_save_atomic

TRAIN_STATE_VERSION = 1
TRAIN_STATE_KEYS = ("version", "netG", "netD", "optimizer_G", "optimizer_D", "epoch", "epoch_iter",
                    "global_step", "rng")


EMA_NET = "G_ema"  # network name of the averaged generator: {which_epoch}_net_G_ema.pth


def network_path(folder, which_epoch, net):
    """Path of ``{which_epoch}_net_{net}.pth`` in ``folder``."""
    return os.path.join(folder, f"{which_epoch}_net_{net}.pth")


def generator_path(folder, which_epoch, use_ema=False):
    """Path of the generator to load: ``{which_epoch}_net_G.pth``, or ``..._net_G_ema.pth`` with ``use_ema``.

    With ``use_ema`` a missing file raises :class:`CheckpointError` saying why it may be absent.
    """
    if not use_ema:
        return network_path(folder, which_epoch, "G")
    path = network_path(folder, which_epoch, EMA_NET)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: EMA generator not found (--use_ema needs a run trained with "
                              f"--ema_decay > 0; release checkpoints have none); drop --use_ema to use "
                              f"{os.path.basename(network_path(folder, which_epoch, 'G'))}")
    return path


def train_state_path(folder, which_epoch):
    """Path of ``{which_epoch}_train_state.pth`` in ``folder``."""
    return os.path.join(folder, f"{which_epoch}_train_state.pth")


def tensor_digest(state):
    """Hex BLAKE2b digest of a state dict's tensors (names, dtypes, shapes, bytes; plain values by ``repr``).

    Equal for a state dict in memory and the same one loaded back from its file.
    """
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(state):
        value = state[key]
        h.update(repr(key).encode())
        if torch.is_tensor(value):
            t = value.detach().to("cpu").contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def file_record(path, digest):
    """What the training state remembers of a network file written with it: digest, size, mtime."""
    st = os.stat(path)
    return {"digest": digest, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def record_matches(path, record):
    """True when the file at ``path`` is the one ``record`` (:func:`file_record`) describes.

    Size and modification time decide when they match; otherwise (e.g. a
    folder copied without keeping times) the file's content digest does.
    """
    if not os.path.isfile(path):
        return False
    st = os.stat(path)
    if st.st_size != record.get("size"):
        return False
    if st.st_mtime_ns == record.get("mtime_ns"):
        return True
    try:
        return tensor_digest(load_torch_file(path, "network", mmap=True)) == record.get("digest")
    except CheckpointError:
        return False


def latest_mismatches(folder, which_epoch="latest", names=None):
    """Network files of ``which_epoch`` that differ from the record in its training state.

    Returns ``(global_step, [file names])``; ``(None, [])`` when there is no
    training state or it holds no record (older runs). ``names``: only these
    file names (e.g. ``["latest_net_G.pth"]``).
    """
    path = train_state_path(folder, which_epoch)
    if not os.path.isfile(path):
        return None, []
    state = load_train_state(path)
    record = state.get("files") or {}
    bad = [name for name, rec in sorted(record.items())
           if (names is None or name in names) and not record_matches(os.path.join(folder, name), rec)]
    return int(state["global_step"]), bad


def check_latest_generator(path):
    """Raise :class:`CheckpointError` when the generator file ``path`` is not the one of its run's training state.

    Only ``latest_*`` files are checked (epoch snapshots have no state). The
    message says how the interrupted save is repaired.
    """
    folder, name = os.path.split(os.path.abspath(path))
    which = name.split("_net_")[0]
    if "_net_" not in name or which != "latest" or not os.path.isfile(path):
        return
    try:
        step, bad = latest_mismatches(folder, which, names=[name])
    except CheckpointError:
        return  # an unreadable training state does not concern synthesis
    if bad:
        load_torch_file(path, "generator weights", mmap=True)  # a truncated file: that message instead
        run = os.path.basename(folder)
        raise CheckpointError(
            f"{path}: does not match {train_state_path(folder, which)} (global step {step}): the last save "
            f"of this run was interrupted. `python train.py --continue_train --name {run} ...` (the run's "
            f"flags) rewrites the latest files from the training state; or pick an epoch snapshot with "
            f"--which_epoch N")


def remove_interrupted_saves(folder, log=print):
    """Remove the temporary files a killed save left in the checkpoint folder, with a note; returns them.

    Call it while holding the folder's run lock (:mod:`util.run_lock`): no
    other process is writing there then.
    """
    removed, freed = remove_temporaries(folder)
    if removed:
        names = ", ".join(os.path.basename(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else "")
        log(f"note: {folder}: removed {len(removed)} temporary file(s) of an interrupted save "
            f"({format_bytes(freed)}: {names})")
    return removed


def cpu_state_dict(module):
    """``module.state_dict()`` with every tensor detached, moved to CPU and stored contiguously
    (also after ``--channels_last``, so the files are those of a plain run)."""
    return {k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
            for k, v in module.state_dict().items()}


def save_network(module, path):
    """Atomically save ``module``'s state_dict (CPU tensors) to ``path``."""
    torch_save_atomic(cpu_state_dict(module), path)


def get_rng_state(device=None):
    """RNG states of Python, numpy, torch (CPU) and this process's CUDA device, ``weights_only``-loadable.

    ``device``: the process's training device; ``"cuda"`` holds the generator of
    that CUDA device only (each process of a multi-GPU run draws from its own),
    and is absent for a CPU device. ``None`` (no device known): every visible
    CUDA device, as a list.
    """
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if device is None:
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
    elif torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def set_rng_state(state, device=None):
    """Restore the states returned by :func:`get_rng_state`.

    ``device``: the process's training device, whose CUDA generator gets
    ``state["cuda"]``. A list there (all devices, from ``device=None`` or an
    older file) gives the device the entry of its index when there is one;
    without ``device`` a list restores every device it names that is visible.
    """
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), npst[2], npst[3], npst[4]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if device is not None and torch.device(device).type != "cuda":
        return
    if isinstance(cuda, torch.Tensor):
        torch.cuda.set_rng_state(cuda, torch.device(device) if device is not None else "cuda")
        return
    if device is not None:
        index = torch.device(device).index or 0
        if index < len(cuda):
            torch.cuda.set_rng_state(cuda[index], torch.device(device))
        return
    for index, st in enumerate(cuda[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(st, index)


def rng_state_for_rank(state, rank, world_size):
    """The RNG state rank ``rank`` of ``world_size`` resumes from, and whether it is that rank's own.

    ``state["rng_ranks"]`` (one entry per rank, written by a run of several
    processes) gives each rank its own state when the run had ``world_size``
    processes; rank 0 otherwise gets ``state["rng"]`` (rank 0's, the only one
    of a single process) and other ranks ``None`` (their noise then restarts
    from their seed: not an exact continuation).
    """
    ranks = state.get("rng_ranks")
    if ranks is not None and len(ranks) == world_size:
        return ranks[rank], True
    if rank == 0:
        return state["rng"], world_size == 1 and ranks is None
    return None, False


def check_train_state(state):
    """Raise ValueError unless the training-state dict has every key of :data:`TRAIN_STATE_KEYS`; returns it."""
    missing = [k for k in TRAIN_STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"training state lacks {missing}")
    return state


def save_train_state(path, state):
    """Atomically save the training-state dict (keys :data:`TRAIN_STATE_KEYS`, plus optional ``scaler``)."""
    torch_save_atomic(check_train_state(state), path)


def load_train_state(path):
    """Load and check a training-state file; raises :class:`CheckpointError` when incomplete.

    The file is memory-mapped (``torch.load(mmap=True)``): its tensors are read
    from the page cache when they are copied into the networks and optimisers,
    so the processes of one machine share one copy of the file in host memory
    instead of each holding its own.
    """
    state = load_torch_file(path, "training state", mmap=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: training state is not a dict")
    missing = [k for k in TRAIN_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {', '.join(missing)}")
    if state["version"] != TRAIN_STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state['version']}; expected {TRAIN_STATE_VERSION}")
    return state


def payload_bytes(obj):
    """Bytes of the tensors in a nested object (dicts, lists, tuples; other values count 0)."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def _write_failure(path, obj, error):
    """The message of a failed checkpoint write; a full disk is named as such (torch's writer raises a
    RuntimeError without errno for it)."""
    from util.disk import free_bytes
    from util.io import DISK_FULL_ERRNOS

    folder = os.path.dirname(os.path.abspath(path))
    try:
        free = free_bytes(folder)
    except OSError:
        free = None
    full = getattr(error, "errno", None) in DISK_FULL_ERRNOS or (free is not None and free < payload_bytes(obj))
    if full:
        return (f"{path}: no space left on the device ({format_bytes(free or 0)} free, the file needs about "
                f"{format_bytes(payload_bytes(obj))}); the previous version of the file is kept. Free some "
                f"space and go on with --continue_train")
    return f"{path}: writing the checkpoint failed ({error}); the previous version of the file is kept"


def _is_state_placeholder(obj):
    """A training state whose ``files`` record the writer fills in (see :class:`CheckpointWriter`)."""
    return isinstance(obj, dict) and "files" in obj and obj["files"] is None


class CheckpointWriter:
    """Writes checkpoint files in a background thread, one save after the other, in the order given.

    :meth:`submit` takes a list of ``(object, path)`` pairs whose tensors are
    already private CPU copies (the training goes on changing its own), first
    waiting for the previous save to finish, so at most one save's copy is held
    in host memory while the training continues. Each file is written with
    :func:`util.torch_io.torch_save_atomic`. A failed write is raised as
    :class:`CheckpointError` (naming the file) by the next :meth:`submit` or
    :meth:`wait`; files written before it stay, the file that failed keeps its
    previous version. ``background=False`` writes in the calling thread.

    A training state given with ``"files": None`` is written with the records
    (:func:`file_record`) of the network files of its ``which_epoch`` written
    before it in the same save.
    """

    def __init__(self, background=True):
        self.background = bool(background)
        self._thread = None
        self._error = None

    def submit(self, files):
        """Write ``files`` (list of ``(obj, path)``) after any save still in progress."""
        self.wait()
        if not self.background:
            self._write(files)
            self._raise_error()
            return
        self._thread = threading.Thread(target=self._write, args=(list(files),), name="checkpoint-writer")
        self._thread.start()

    def _write(self, files):
        states = [p for o, p in files if _is_state_placeholder(o)]
        recorded = tuple(os.path.basename(p)[: -len("train_state.pth")] for p in states)  # e.g. "latest_"
        written = {}  # name -> record of the network files written so far in this save
        for obj, path in files:
            name = os.path.basename(path)
            try:
                if _is_state_placeholder(obj):
                    prefix = name[: -len("train_state.pth")]
                    obj = {**obj, "files": {n: r for n, r in written.items() if n.startswith(prefix)}}
                digest = tensor_digest(obj) if recorded and name.startswith(recorded) and "_net_" in name else None
                torch_save_atomic(obj, path)
                if digest is not None:
                    written[name] = file_record(path, digest)
            except (OSError, RuntimeError) as e:
                self._error = CheckpointError(_write_failure(path, obj, e))
                return

    def _raise_error(self):
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self):
        """Block until the save in progress (if any) is on disk; raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise_error()

    @property
    def busy(self):
        """True while a background save is being written."""
        return self._thread is not None and self._thread.is_alive()


def cpu_copy(obj):
    """``obj`` (nested dicts / lists / tuples of tensors and plain values) with every tensor copied to the CPU.

    The copies share no memory with the originals (also for CPU tensors), so
    they can be written while training changes the originals.
    """
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def load_networks(model, folder, which_epoch, log=print):
    """Load the plain weights ``{which_epoch}_net_G.pth`` and ``{which_epoch}_net_D.pth`` of ``folder``.

    The files may come from this project or from the original release
    (:mod:`models.checkpoint_compat` maps the release's generator layout; its
    discriminator has this project's keys). ``net_G`` is required; ``net_D``
    is loaded when ``model`` has a discriminator and the file exists, and
    otherwise D keeps its initialisation (said through ``log``). Returns the
    notes about ignored release tensors. Raises :class:`CheckpointError`
    naming the file for a missing G or a file that does not fit.
    """
    g_path = network_path(folder, which_epoch, "G")
    if not os.path.isfile(g_path):
        raise CheckpointError(f"{g_path}: generator weights not found")
    notes = [f"{g_path}: {n}" for n in load_generator_weights(model.netG, g_path)]
    if hasattr(model, "netD"):
        d_path = network_path(folder, which_epoch, "D")
        if os.path.isfile(d_path):
            load_discriminator_weights(model.netD, d_path)
        else:
            notes.append(f"{d_path}: not found; the discriminator starts from its initialisation")
    for note in notes:
        log(f"note: {note}")
    return notes


def tensor_bytes(state):
    """Bytes of the tensors in a state dict (their storage payload in a checkpoint file)."""
    return sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))


def checkpoint_sizes(netG, netD, ema=False):
    """Expected sizes in bytes of the files one save writes, from the networks themselves.

    Returns ``{"net_G", "net_D", ["net_G_ema",] "train_state"}``; the training
    state holds both networks plus Adam's two moments of every trainable
    parameter (about three times ``net_G + net_D``) and, with ``ema`` (the EMA
    generator, ``--ema_decay`` > 0), the averaged generator, which is also
    written as ``net_G_ema``. These are the tensor payloads; the files add a
    few hundred bytes per tensor (tested). Works on meta-device modules, so the
    sizes of a large configuration cost nothing to compute.
    """
    g, d = tensor_bytes(netG.state_dict()), tensor_bytes(netD.state_dict())
    trainable = [p for net in (netG, netD) for p in net.parameters() if p.requires_grad]
    moments = 2 * sum(p.numel() * p.element_size() for p in trainable)
    sizes = {"net_G": g, "net_D": d}
    if ema:
        sizes[f"net_{EMA_NET}"] = g
    sizes["train_state"] = g + d + moments + (g if ema else 0)
    return sizes


def configuration_sizes(opt, ema):
    """:func:`checkpoint_sizes` of the networks ``opt`` describes, built on the meta device (no memory, no time)."""
    from models.networks import MultiscaleDiscriminator, SuperStyleNetGenerator

    with torch.device("meta"):
        return checkpoint_sizes(SuperStyleNetGenerator.from_options(opt), MultiscaleDiscriminator.from_options(opt),
                                ema=ema)


def planned_files(folder, sizes, snapshot_epochs):
    """The files a run leaves in ``folder`` (path -> bytes): ``latest_*`` and the snapshots of ``snapshot_epochs``.

    ``sizes``: :func:`checkpoint_sizes`'s result.
    """
    nets = {k: v for k, v in sizes.items() if k.startswith("net_")}
    files = {os.path.join(folder, f"latest_{k}.pth"): v for k, v in nets.items()}
    files[train_state_path(folder, "latest")] = sizes["train_state"]
    for epoch in snapshot_epochs:
        files.update({os.path.join(folder, f"{epoch}_{k}.pth"): v for k, v in nets.items()})
    return files
