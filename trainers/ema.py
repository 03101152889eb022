"""Exponential moving average (EMA) of the generator's weights (docs/training.md, "EMA generator").

Every ``--ema_every`` generator steps, each parameter moves towards G's::

    ema <- d * ema + (1 - d) * p,    d = min(ema_decay ** ema_every, (1 + n) / (10 + n))

with ``n`` the updates done so far. Buffers are never averaged:
:meth:`GeneratorEMA.prepare` copies G's buffers and recomputes the BatchNorm
statistics on ``--ema_bn_batches`` training batches (:class:`EMAData`) under
a forked RNG, so it never changes the training run's random stream.
``--ema_cpu`` keeps the average in host memory. The EMA owns its state format
(:meth:`GeneratorEMA.state_dict`, :meth:`GeneratorEMA.load_state_dict`,
:meth:`GeneratorEMA.load_network`); a mismatch raises
:class:`util.errors.CheckpointError`.
"""
import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from data.loader import collate
from models.checkpoints import cpu_state_dict
from util.errors import CheckpointError, OptionError
from util.flag_rules import Range, at_least, check_value, set_rules

EMA_STATE_VERSION = 1
WARMUP = 10  # the warm-up's constant: d_n = (1 + n) / (WARMUP + n)
FLAG_RULES = {"ema_decay": Range(0, 1, high_open=True, note="0 disables the EMA generator"),
              "ema_every": at_least(1), "ema_bn_batches": at_least(0)}


def modify_commandline_options(parser, is_train):
    """Register the EMA flags (training only)."""
    if not is_train:
        return parser
    g = parser.add_argument_group("EMA generator")
    g.add_argument("--ema_decay", type=float, default=0.999,
                   help="decay of the exponential moving average of G's weights per step; 0 disables the "
                        "average (half-life ln(0.5)/ln(decay) steps: 693 at 0.999; see docs/training.md)")
    g.add_argument("--ema_every", type=int, default=1,
                   help="update the average every k generator steps (with decay**k), e.g. with --ema_cpu")
    g.add_argument("--ema_bn_batches", type=int, default=20,
                   help="training batches on which the averaged generator's BatchNorm statistics are "
                        "recomputed before it is evaluated or saved (0: copy G's statistics)")
    g.add_argument("--ema_cpu", action="store_true",
                   help="keep the average in host memory instead of on the training device")
    set_rules(g, **FLAG_RULES)
    return parser


def validate_options(opt):
    """Raise :class:`OptionError` for out-of-range EMA flags (the rules of :data:`FLAG_RULES`)."""
    for dest, rule in FLAG_RULES.items():
        check_value(f"--{dest}", getattr(opt, dest), float if dest == "ema_decay" else int, rule)


def _is_batchnorm(module):
    return (isinstance(getattr(module, "running_mean", None), torch.Tensor)
            and isinstance(getattr(module, "running_var", None), torch.Tensor)
            and hasattr(module, "eps"))


@torch.no_grad()
def recompute_batchnorm(module, batches, forward):
    """Recompute the running statistics of every BatchNorm in ``module`` on ``batches``.

    ``forward(module, batch)`` runs the network on one batch. During the
    passes ``module`` is in training mode (spectral norm iterates) while each
    BatchNorm layer stays in eval mode and a forward hook replaces its output
    by the normalisation with the batch's own statistics, i.e. exactly what
    training mode computes in one process, without any cross-process
    synchronisation. Afterwards ``running_mean`` / ``running_var`` are the
    means over the batches of the per-batch mean and unbiased variance
    (torch's ``momentum=None`` rule) and ``num_batches_tracked`` is the number
    of batches. Returns that number; with no batch nothing changes.
    """
    layers = [m for m in module.modules() if _is_batchnorm(m)]
    sums = {id(m): [torch.zeros_like(m.running_mean, dtype=torch.float64),
                    torch.zeros_like(m.running_var, dtype=torch.float64)] for m in layers}

    def hook(layer, inputs, output):
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        n = x.numel() // x.shape[1]
        mean = x.mean(dim=dims)
        var = x.var(dim=dims, unbiased=False)
        acc = sums[id(layer)]
        acc[0] += mean.double()
        acc[1] += var.double() * (n / max(n - 1, 1))
        return F.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)

    was_training = module.training
    handles = [m.register_forward_hook(hook) for m in layers]
    count = 0
    try:
        module.train()
        for m in layers:
            m.eval()
        for batch in batches:
            forward(module, batch)
            count += 1
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    if count:
        for m in layers:
            mean, var = sums[id(m)]
            m.running_mean.copy_(mean / count)
            m.running_var.copy_(var / count)
            if isinstance(getattr(m, "num_batches_tracked", None), torch.Tensor):
                m.num_batches_tracked.fill_(count)
    return count


@dataclass(frozen=True)
class EMAData:
    """The training data of :meth:`GeneratorEMA.prepare`'s BatchNorm recomputation.

    ``dataset``: the training dataset (items as ``data.custom_dataset``);
    ``batch_size``: samples per pass (the per-process training batch);
    ``inputs(batch) -> (segmap, codes)``: the generator's inputs on the device
    to run on (the trainer passes the model's own preprocessing);
    ``num_workers``: loader processes (below 0, ``--nThreads -1``: read in this process).
    """
    dataset: object
    batch_size: int
    inputs: object
    num_workers: int = 0


class GeneratorEMA:
    """The averaged generator: a frozen copy of ``netG`` in eval mode, updated by :meth:`step`.

    Args:
        netG: the generator being trained (its current weights start the average).
        decay: ``--ema_decay`` in (0, 1).
        every: ``--ema_every``; the average is updated on every ``every``-th call of :meth:`step`.
        device: where the average lives (default: the device of ``netG``).
        bn_batches: ``--ema_bn_batches`` (see :meth:`prepare`).
        seed: seed of the noise drawn while recomputing BatchNorm statistics.
        data: training data for :meth:`prepare`'s BatchNorm recomputation, or
            None (G's statistics are copied): an :class:`EMAData`.
    """

    def __init__(self, netG, decay, every=1, device=None, bn_batches=20, seed=0, data=None):
        if not 0.0 < decay < 1.0:
            raise OptionError(f"--ema_decay {decay}: the EMA generator needs a decay in (0, 1)")
        device = device if device is not None else next(netG.parameters()).device
        self.module = copy.deepcopy(netG).to(device)
        self.module.requires_grad_(False)
        self.module.eval()
        self.decay, self.every = float(decay), int(every)
        self.bn_batches, self.seed = int(bn_batches), int(seed)
        self.num_steps = 0      # generator steps seen
        self.num_updates = 0    # averaging updates done
        self._prepared_at = None
        self.data = data

    @classmethod
    def from_options(cls, opt, netG, data=None):
        """The EMA of ``opt`` (``--ema_decay`` etc.) on :class:`EMAData` ``data``; None with ``--ema_decay 0``."""
        validate_options(opt)
        if opt.ema_decay <= 0.0:
            return None
        device = torch.device("cpu") if opt.ema_cpu else None
        return cls(netG, opt.ema_decay, every=opt.ema_every, device=device, bn_batches=opt.ema_bn_batches,
                   seed=opt.seed, data=data)

    # ----------------------------------------------------------------- averaging
    def current_decay(self):
        """Decay applied by the next update: ``min(decay ** every, (1 + n) / (10 + n))``."""
        n = self.num_updates
        return min(self.decay ** self.every, (1.0 + n) / (WARMUP + n))

    @torch.no_grad()
    def step(self, netG):
        """Count one generator step; on every ``every``-th, move the average towards ``netG``.

        Returns True when the average was updated.
        """
        self.num_steps += 1
        if self.num_steps % self.every:
            return False
        d = self.current_decay()
        ema = list(self.module.parameters())
        src = [p.detach() for p in netG.parameters()]
        if len(ema) != len(src):
            raise RuntimeError("EMA generator and generator have different parameter lists")
        device = ema[0].device
        if src[0].device != device:
            src = [p.to(device) for p in src]
        torch._foreach_lerp_(ema, src, 1.0 - d)
        self.num_updates += 1
        self._prepared_at = None
        return True

    def reset_to(self, netG):
        """Restart the average from ``netG``'s current weights and buffers (no updates counted)."""
        self.module.load_state_dict(netG.state_dict())
        self.num_steps = self.num_updates = 0
        self._prepared_at = None

    # ----------------------------------------------------------------- buffers
    def bn_batches_iter(self):
        """The fixed batches of the recomputation: a seeded permutation of the dataset, in batches."""
        if self.data is None or self.bn_batches <= 0:
            return []
        batch_size = max(1, int(self.data.batch_size))
        order = np.random.default_rng([self.seed & 0xFFFFFFFF, 4099]).permutation(len(self.data.dataset))
        order = order[: self.bn_batches * batch_size].tolist()
        return torch.utils.data.DataLoader(self.data.dataset, batch_size=batch_size, sampler=order,
                                           collate_fn=collate, num_workers=max(0, int(self.data.num_workers)))

    def prepare(self, netG, device=None):
        """Make the average usable: G's buffers, then BatchNorm statistics recomputed (see module doc).

        Does nothing when no generator step happened since the last call (so
        evaluation and saving at the same step share one recomputation).
        ``device``: where to run the recomputation (default: the average's own
        device; with ``--ema_cpu`` pass the training device). Returns the module.
        """
        if self._prepared_at == self.num_steps:
            return self.module
        own = next(self.module.parameters()).device
        with torch.no_grad():
            for mine, theirs in zip(self.module.buffers(), netG.buffers()):
                mine.copy_(theirs)
        batches = self.bn_batches_iter()
        if batches:
            run_on = torch.device(device) if device is not None else own
            module = self.module.to(run_on)
            devices = [run_on] if run_on.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.seed)
                recompute_batchnorm(module, batches, lambda m, batch: m(*self.data.inputs(batch)))
            self.module = module.to(own)
        self.module.eval()
        self._prepared_at = self.num_steps
        return self.module

    # ----------------------------------------------------------------- state
    def state_dict(self):
        """Everything an exact resume needs (CPU tensors)."""
        return {"version": EMA_STATE_VERSION,
                "module": cpu_state_dict(self.module),
                "num_steps": int(self.num_steps), "num_updates": int(self.num_updates),
                "decay": self.decay, "every": self.every,
                "prepared": self._prepared_at == self.num_steps}

    def load_state_dict(self, state, path="training state"):
        """Restore :meth:`state_dict`'s result; :class:`CheckpointError` (naming ``path``) on mismatch."""
        try:
            if state.get("version") != EMA_STATE_VERSION:
                raise KeyError(f"EMA state version {state.get('version')}; expected {EMA_STATE_VERSION}")
            self.module.load_state_dict(state["module"], strict=True)
            self.num_steps, self.num_updates = int(state["num_steps"]), int(state["num_updates"])
            prepared = bool(state.get("prepared", False))
        except (RuntimeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{path}: EMA generator state does not match the model ({e})") from e
        if float(state.get("decay", self.decay)) != self.decay or int(state.get("every", self.every)) != self.every:
            print(f"note: {path}: the EMA was averaged with decay {state.get('decay')} every "
                  f"{state.get('every')} step(s); it continues with decay {self.decay} every {self.every}")
        self._prepared_at = self.num_steps if prepared else None

    def load_network(self, weights, generator_steps, path):
        """Continue from a plain ``*_net_G_ema.pth`` (``weights``) after ``generator_steps`` G steps.

        The counters follow from the steps (an epoch snapshot holds no
        counters); the statistics are recomputed before the next use.
        """
        self.load_state_dict({"version": EMA_STATE_VERSION, "module": weights, "num_steps": int(generator_steps),
                              "num_updates": int(generator_steps) // self.every, "decay": self.decay,
                              "every": self.every, "prepared": False}, path)

    def held_state(self):
        """The averaged weights (where they are) and the counters: what must agree on every rank."""
        return {"module": self.module.state_dict(), "num_steps": self.num_steps, "num_updates": self.num_updates}

    def network_state_dict(self, netG, device=None):
        """CPU state_dict of the prepared average, as written to ``*_net_G_ema.pth``."""
        module = self.prepare(netG, device)
        return cpu_state_dict(module)  # contiguous CPU tensors, also after --channels_last

