"""Parameter-free (or affine) BatchNorm that synchronises statistics across processes.

``SyncBatchNorm2d`` has the same buffers and state-dict keys as
``torch.nn.BatchNorm2d`` (``running_mean``, ``running_var``,
``num_batches_tracked``, plus ``weight``/``bias`` when ``affine=True``).

* Evaluation mode: normalise with the running statistics (``F.batch_norm``).
* Training mode, single process (or ``torch.distributed`` not initialised, or
  world size 1): exactly ``F.batch_norm`` with batch statistics.
* Training mode with ``torch.distributed`` initialised and world size > 1:
  each rank computes its element count, per-channel mean and per-channel sum
  of squared deviations from that mean (two passes over its own data), writes
  them into its row of a zero ``(world, 2C + 1)`` tensor, and one sum
  all-reduce of that tensor (torch's functional collective, whose autograd
  rule sends the summed gradients back) gives every rank every rank's
  statistics. The global mean and variance follow by the parallel-variance
  formula (``M2 = Σ M2_r + Σ n_r (mean_r - mean)²``), as precise as two
  passes over the whole batch; the backward pass makes one more all-reduce.
  This works with the CPU ``gloo`` backend and with NCCL.

One collective per layer and direction, every shape static and nothing read
back to the host (the counts stay tensors; the rank is a Python constant), so
the layer traces into one graph under ``torch.compile(fullgraph=True)``
(tested on gloo with ``aot_eager``). Every rank must call the layer the same
number of times per step (collective). Float16 and bfloat16 inputs are
normalised with float32 statistics and returned in their own dtype.

Which implementation runs is decided by :func:`select_batchnorm`, which the
trainer calls once the process group is known: torch's own ``nn.BatchNorm2d``
in a single process and this layer across processes, on CUDA too
(torch's ``nn.SyncBatchNorm`` reads a value back to the host in every call
and breaks dynamo's graph there). The networks are built with this layer as
the marker "batch norm that synchronises when distributed"; both have the
same state-dict keys, so checkpoints move freely between them.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def distributed_world_size():
    """Number of processes in the default group, or 1 when not running distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_sum(x):
    """Differentiable sum all-reduce of ``x`` over the default process group (functional collective).

    forward: every rank gets Σ_ranks x; backward: every rank gets Σ_ranks grad
    (torch's registered autograd rule). Traceable by dynamo without a break.
    """
    import torch.distributed as dist
    import torch.distributed._functional_collectives  # noqa: F401 (registers the collectives' autograd rules)

    group_name = dist.group.WORLD.group_name
    out = torch.ops._c10d_functional.all_reduce(x.contiguous(), "sum", group_name)
    return torch.ops._c10d_functional.wait_tensor(out)


class SyncBatchNorm2d(nn.Module):
    """BatchNorm over (B, C, H, W) inputs with cross-process statistics in training.

    Args:
        num_features: number of channels C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics momentum (default 0.1).
        affine: learn a per-channel scale and shift (default False: parameter-free).

    Input and output: float tensors of shape (B, C, H, W).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False):
        super().__init__()
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = bool(affine)
        if self.affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"

    def forward(self, x):
        """Normalise ``x`` (B, C, H, W); returns a tensor of the same shape."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm2d expects (B, {self.num_features}, H, W); got {tuple(x.shape)}")
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
        if distributed_world_size() == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                True, self.momentum, self.eps)
        return self._forward_distributed(x)

    def _forward_distributed(self, x):
        import torch.distributed as dist

        c, world, rank = self.num_features, dist.get_world_size(), dist.get_rank()
        acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        n_local = x.numel() // c  # from the shape: a Python number, no sync
        if n_local:
            local_mean = acc.mean(dim=(0, 2, 3))
            local_m2 = (acc - local_mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))
        else:  # an empty share contributes nothing (and no NaN)
            local_mean = local_m2 = acc.new_zeros(c)
        row = torch.cat([acc.new_full((1,), float(n_local)), local_mean, local_m2])
        stats = all_reduce_sum(F.pad(row[None], (0, 0, rank, world - 1 - rank)))  # (world, 2C + 1)
        counts, means, m2s = stats[:, :1], stats[:, 1:c + 1], stats[:, c + 1:]
        count = counts.sum()
        mean = (counts * means).sum(0) / count
        var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / count
        with torch.no_grad():
            # unbiased running variance, n / (n - 1) kept on the device (no host sync)
            unbiased = var * (count / (count - 1.0).clamp(min=1.0))
            self.running_mean.mul_(1.0 - self.momentum).add_(self.momentum * mean.detach().to(self.running_mean))
            self.running_var.mul_(1.0 - self.momentum).add_(self.momentum * unbiased.detach().to(self.running_var))
        out = (acc - mean.view(1, c, 1, 1)) * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out.to(x.dtype)


def _copy_bn_state(src, cls):
    """A ``cls`` batch norm with ``src``'s settings, buffers (device, dtype) and affine Parameter objects."""
    dst = cls(src.num_features, eps=src.eps, momentum=src.momentum, affine=src.affine,
              device=src.running_mean.device, dtype=src.running_mean.dtype)
    with torch.no_grad():
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            getattr(dst, name).copy_(getattr(src, name))
    if src.affine:
        dst.weight, dst.bias = src.weight, src.bias  # the same Parameter objects (optimisers keep working)
    return dst.train(src.training)


def select_batchnorm(module, world_size=1, device_type="cpu"):
    """Replace every :class:`SyncBatchNorm2d` in ``module`` by the best implementation for the run.

    * ``world_size == 1``: ``nn.BatchNorm2d`` (same arithmetic as this layer in one process);
    * ``world_size > 1``, on any device: this layer is kept (module docstring).

    eps, momentum, affine parameters (the same Parameter objects), running
    statistics (device and dtype) and the train/eval mode are carried over;
    state-dict keys do not change. Call it before creating optimisers or DDP wrappers. Returns
    ``module`` (changed in place; a bare :class:`SyncBatchNorm2d` is returned
    replaced).
    """
    def replacement(m):
        if world_size <= 1:
            return _copy_bn_state(m, nn.BatchNorm2d)
        return m

    if isinstance(module, SyncBatchNorm2d):
        return replacement(module)
    for name, child in list(module.named_children()):
        if isinstance(child, SyncBatchNorm2d):
            setattr(module, name, replacement(child))
        else:
            select_batchnorm(child, world_size, device_type)
    return module
