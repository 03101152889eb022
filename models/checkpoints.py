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
  Python).

Every file is written atomically. Loading a missing, truncated or malformed
file raises :class:`util.errors.CheckpointError` naming the file.
"""
import os
import random

import numpy as np
import torch

from util.errors import CheckpointError
from util.io import torch_save_atomic
from util.torch_io import load_torch_file

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


def cpu_state_dict(module):
    """``module.state_dict()`` with every tensor detached, moved to CPU and stored contiguously
    (also after ``--channels_last``, so the files are those of a plain run)."""
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in module.state_dict().items()}


def save_network(module, path):
    """Atomically save ``module``'s state_dict (CPU tensors) to ``path``."""
    torch_save_atomic(cpu_state_dict(module), path)


def get_rng_state():
    """RNG states of Python, numpy, torch (CPU) and all CUDA devices, in a ``weights_only``-loadable form."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore the states returned by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), npst[2], npst[3], npst[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_train_state(path, state):
    """Atomically save the training-state dict (keys :data:`TRAIN_STATE_KEYS`, plus optional ``scaler``)."""
    missing = [k for k in TRAIN_STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"training state lacks {missing}")
    torch_save_atomic(state, path)


def load_train_state(path):
    """Load and check a training-state file; raises :class:`CheckpointError` when incomplete."""
    state = load_torch_file(path, "training state")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: training state is not a dict")
    missing = [k for k in TRAIN_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {', '.join(missing)}")
    if state["version"] != TRAIN_STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {state['version']}; expected {TRAIN_STATE_VERSION}")
    return state


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
    from models.checkpoint_compat import load_discriminator_weights, load_generator_weights

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


def format_bytes(n):
    """``n`` bytes as a short string in MB / GB (powers of 1000, as ``du --si`` and file browsers show)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
