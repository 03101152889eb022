"""Making the networks safe to ``torch.compile`` (``--compile``).

Spectral norm (torch's classic ``torch.nn.utils.spectral_norm``, whose
``weight_orig`` / ``weight_u`` / ``weight_v`` keys the release checkpoints
use) runs one power-iteration step per training forward, writing the new
``u`` and ``v`` into the module's buffers, and then normalises the weight by
``sigma = u^T W v`` with those vectors held constant. Compiled with inductor
(torch 2.14, measured on the CPU in float64), the forward pass is right but
the gradient of ``weight_orig`` is not: it differs from eager's by 1-20 %
whenever the buffers are updated inside the compiled graph (and is exact when
they are not; ``aot_eager`` is exact either way). The backward pass evidently
recomputes ``v`` from the already-updated buffer.

:func:`make_compile_safe` therefore swaps each classic spectral-norm hook for
:class:`CompileSafeSpectralNorm`: the same buffers, the same arithmetic
(bit-identical in eager mode, tested), but the power iteration runs eagerly
(``torch.compiler.disable``) and hands fresh copies of ``u`` and ``v`` to the
compiled code, so nothing in the graph depends on a buffer it mutates. This
costs one graph break per spectral-norm layer. State-dict keys, checkpoint
loading and the EMA copy (taken before) are unaffected.
"""
import torch
import torch.nn.functional as F
from torch.nn.utils.spectral_norm import SpectralNorm


@torch.compiler.disable
def power_iteration(weight_mat, u, v, steps, eps):
    """``steps`` power-iteration steps on the buffers ``u`` (rows) and ``v`` (columns), in place and eagerly.

    ``weight_mat``: the (out, in·k·k) weight matrix. Returns copies of the new
    ``u`` and ``v`` (no autograd history), as torch's classic spectral norm uses them.
    """
    with torch.no_grad():
        for _ in range(steps):
            v.copy_(F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=eps))
            u.copy_(F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps))
        return u.clone(memory_format=torch.contiguous_format), v.clone(memory_format=torch.contiguous_format)


class CompileSafeSpectralNorm:
    """Forward pre-hook with the arithmetic of torch's classic ``SpectralNorm`` hook ``hook``.

    Training mode: ``hook.n_power_iterations`` steps of :func:`power_iteration`
    (eager), then ``weight = weight_orig / (u^T W v)`` with the new vectors
    held constant; evaluation mode: the stored vectors, no update.
    """

    def __init__(self, hook):
        self.hook = hook
        self.name = hook.name

    def __call__(self, module, inputs):
        weight = getattr(module, self.name + "_orig")
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        weight_mat = self.hook.reshape_weight_to_matrix(weight)
        if module.training and self.hook.n_power_iterations > 0:
            u, v = power_iteration(weight_mat, u, v, self.hook.n_power_iterations, self.hook.eps)
        sigma = torch.dot(u, torch.mv(weight_mat, v))
        setattr(module, self.name, weight / sigma)


def make_compile_safe(module):
    """Swap every classic spectral-norm hook in ``module`` for :class:`CompileSafeSpectralNorm`; returns the count."""
    count = 0
    for m in module.modules():
        for key, hook in list(m._forward_pre_hooks.items()):
            if isinstance(hook, SpectralNorm):
                m._forward_pre_hooks[key] = CompileSafeSpectralNorm(hook)
                count += 1
    return count
