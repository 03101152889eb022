"""Parameter-free (or affine) BatchNorm that synchronises statistics across processes.

``SyncBatchNorm2d`` has the same buffers and state-dict keys as
``torch.nn.BatchNorm2d`` (``running_mean``, ``running_var``,
``num_batches_tracked``, plus ``weight``/``bias`` when ``affine=True``).

* Evaluation mode: normalise with the running statistics (``F.batch_norm``).
* Training mode, single process (or ``torch.distributed`` not initialised, or
  world size 1): exactly ``F.batch_norm`` with batch statistics.
* Training mode with ``torch.distributed`` initialised and world size > 1: the
  per-channel sum and element count, then the per-channel sum of squared
  deviations from the global mean (two passes, as in one process), are
  all-reduced over the default process group with an autograd-aware all-reduce (:class:`AllReduceSum`,
  the same rule as ``torch.distributed.nn.functional.all_reduce``, which torch
  2.14 deprecates: the gradient of a sum all-reduce is the sum all-reduce of
  the gradients), so the forward pass uses the
  global batch statistics and the backward pass sends the matching gradient
  contributions to every rank. This works with the CPU ``gloo`` backend as well
  as NCCL (``torch.nn.SyncBatchNorm`` supports CUDA only).

Every rank must call the layer the same number of times per step (collective).
No value is read back to the host: the global element count stays a tensor.

Which implementation runs is decided by :func:`select_batchnorm`, which the
trainer calls once the process group is known: torch's own ``nn.BatchNorm2d``
in a single process, torch's ``nn.SyncBatchNorm`` (fused CUDA kernels) when
running distributed on CUDA, and this layer only where torch's does not serve:
distributed on the CPU (gloo). The networks are built with this layer as the
marker "batch norm that synchronises when distributed"; all three have the
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


class AllReduceSum(torch.autograd.Function):
    """Differentiable sum all-reduce over the default process group (synchronous).

    forward: every rank gets Σ_ranks x; backward: every rank gets Σ_ranks grad.
    """

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        out = x.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


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
        # Two passes, as a single-process batch norm does: first the global
        # mean, then the global sum of squared deviations from it. (The
        # one-pass E[x²] - E[x]² loses float32 precision when |mean| >> std.)
        c = self.num_features
        local_count = x.new_full((1,), float(x.numel() // c))
        stats = AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), local_count]))
        total_sum, count = stats[:c], stats[c]
        mean = total_sum / count
        centred = x - mean.view(1, c, 1, 1)
        var = AllReduceSum.apply((centred * centred).sum(dim=(0, 2, 3))) / count
        with torch.no_grad():
            # unbiased running variance, n / (n - 1) kept on the device (no host sync)
            unbiased = var * (count / (count - 1.0).clamp(min=1.0))
            self.running_mean.mul_(1.0 - self.momentum).add_(self.momentum * mean.detach())
            self.running_var.mul_(1.0 - self.momentum).add_(self.momentum * unbiased.detach())
        out = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return out


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
    * ``world_size > 1`` on CUDA: ``nn.SyncBatchNorm`` (torch's fused kernels, no host sync);
    * ``world_size > 1`` elsewhere (CPU / gloo): this layer is kept.

    eps, momentum, affine parameters (the same Parameter objects), running
    statistics (device and dtype) and the train/eval mode are carried over;
    state-dict keys do not change. Call it before creating optimisers or DDP wrappers. Returns
    ``module`` (changed in place; a bare :class:`SyncBatchNorm2d` is returned
    replaced).
    """
    def replacement(m):
        if world_size <= 1:
            return _copy_bn_state(m, nn.BatchNorm2d)
        if device_type == "cuda":
            return _copy_bn_state(m, nn.SyncBatchNorm)
        return m

    if isinstance(module, SyncBatchNorm2d):
        return replacement(module)
    for name, child in list(module.named_children()):
        if isinstance(child, SyncBatchNorm2d):
            setattr(module, name, replacement(child))
        else:
            select_batchnorm(child, world_size, device_type)
    return module
