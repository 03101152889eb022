"""DistributedDataParallel settings: buffer broadcasts, gradient compression, per-rank noise seeds.

* :func:`buffers_need_broadcast`: DDP's ``forward_sync_buffers`` (formerly
  ``broadcast_buffers``) copies rank 0's buffers to every rank before each
  forward pass (one more collective per call). This model's buffers stay
  equal on all ranks without it (the reasons are in docs/training.md,
  "Several GPUs and several machines"), so the broadcast is kept only for a
  network holding a buffer of another kind. The copy when DDP wraps a network
  is made in any case.
* :func:`register_comm_hook`: ``--ddp_comm_hook bf16`` / ``fp16`` registers
  torch's compression hook (``torch.distributed.algorithms.ddp_comm_hooks.
  default_hooks``), which halves the bytes of the gradient all-reduce;
  ``none`` keeps float32.
* :func:`noise_seed` / :func:`seed_rank_noise`: the weights are drawn from
  ``--seed`` on every rank (identical networks); afterwards rank r > 0 reseeds
  torch's generators with ``noise_seed(seed, r)`` so that the ranks draw
  different ACE noise; rank 0 (and a single process) keeps the stream that
  follows the initialisation.
"""
import numpy as np
import torch
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from models.networks.sync_batchnorm import SyncBatchNorm2d
from util.errors import OptionError

COMM_HOOKS = ("none", "bf16", "fp16")
SPECTRAL_NORM_BUFFERS = ("weight_u", "weight_v")
BATCHNORM_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def modify_commandline_options(parser, is_train):
    """Register ``--ddp_comm_hook`` (training only)."""
    if not is_train:
        return parser
    g = parser.add_argument_group("several processes")
    g.add_argument("--ddp_comm_hook", type=str, default="none", choices=COMM_HOOKS,
                   help="compress the gradients DistributedDataParallel all-reduces: bf16 or fp16 halves the "
                        "traffic between processes (rounding each gradient to 8 or 11 significant bits); none "
                        "sends float32")
    return parser


def _synchronised_batchnorm_types():
    return (torch.nn.SyncBatchNorm, SyncBatchNorm2d)


def replicated_buffer(module, name):
    """True when ``module``'s buffer ``name`` stays equal on all ranks without a broadcast.

    Synchronised batch norm's running statistics (every rank updates them from
    the same all-reduced batch statistics), spectral norm's power-iteration
    vectors (a deterministic function of the replicated weight and the
    previous vectors) and buffers a module lists in ``constant_buffers``
    (never written after construction).
    """
    if isinstance(module, _synchronised_batchnorm_types()) and name in BATCHNORM_BUFFERS:
        return True
    if name in SPECTRAL_NORM_BUFFERS and hasattr(module, "weight_orig"):
        return True
    return name in getattr(module, "constant_buffers", ())


def buffers_need_broadcast(net):
    """``forward_sync_buffers`` for DDP around ``net``: False when every buffer is :func:`replicated_buffer`."""
    return any(not replicated_buffer(m, name) for m in net.modules() for name, _ in m.named_buffers(recurse=False))


def register_comm_hook(ddp, name):
    """Register the gradient compression hook ``name`` (:data:`COMM_HOOKS`) on the DDP module ``ddp``."""
    if name not in COMM_HOOKS:
        raise OptionError(f"--ddp_comm_hook {name}: choose one of {', '.join(COMM_HOOKS)}")
    if name == "none":
        return
    hook = {"bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}[name]
    ddp.register_comm_hook(None, hook)


def noise_seed(seed, rank):
    """The seed of rank ``rank``'s noise stream: a 63-bit integer derived from ``(seed, rank)``."""
    return int(np.random.SeedSequence([int(seed) % 2 ** 64, int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def seed_rank_noise(seed, rank):
    """After the networks are built: rank r > 0 reseeds torch's CPU and CUDA generators (see module doc)."""
    if rank > 0:
        torch.manual_seed(noise_seed(seed, rank))
