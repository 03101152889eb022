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
:class:`CompileSafeSpectralNorm`: the same buffers and the same arithmetic
(bit-identical in eager mode, tested). Called eagerly, the hook runs the power
iteration itself, as torch's does. Inside a compiled graph it does not: the
caller runs :func:`update_spectral_norms` on the network eagerly right before
each call (``SuperStyleNetModel`` does with ``--compile``), and the graph only
reads fresh copies of ``u`` and ``v`` and computes ``weight_orig / (u^T W v)``.
So a compiled network call is one graph with no break (no
``torch.compiler.disable`` inside it), and nothing in the graph depends on a
buffer it mutates. State-dict keys, checkpoint loading and the EMA copy
(taken before) are unaffected.

:func:`compile_model` is the ``--compile`` wiring: compile-safe hooks, then
``compile`` (in place, static shapes) of G, D and the VGG loss, after the
trainer has wrapped G and D in DistributedDataParallel. DDP's own ``forward``
then runs eagerly and calls the compiled network inside it, where dynamo sees
the active DDP module and splits the network's graph at DDP's gradient
buckets (torch's DDPOptimizer), so the all-reduces overlap the backward
pass. Compiling the DDP wrapper itself would trace DDP's bookkeeping and break
there (twice per wrapper, measured on gloo).
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

    Eager training mode: ``hook.n_power_iterations`` steps of
    :func:`power_iteration`, then ``weight = weight_orig / (u^T W v)`` with
    the new vectors held constant. While compiling (and in evaluation mode):
    the stored vectors, no update (:func:`update_spectral_norms` runs it
    before a compiled call).
    """

    def __init__(self, hook):
        self.hook = hook
        self.name = hook.name

    def iterate(self, module):
        """The power iteration of one training call (eager); returns copies of the new ``u``, ``v``."""
        weight_mat = self.hook.reshape_weight_to_matrix(getattr(module, self.name + "_orig"))
        u, v = getattr(module, self.name + "_u"), getattr(module, self.name + "_v")
        return power_iteration(weight_mat, u, v, self.hook.n_power_iterations, self.hook.eps)

    def __call__(self, module, inputs):
        weight = getattr(module, self.name + "_orig")
        weight_mat = self.hook.reshape_weight_to_matrix(weight)
        if module.training and self.hook.n_power_iterations > 0 and not torch.compiler.is_compiling():
            u, v = self.iterate(module)
        else:
            u = getattr(module, self.name + "_u").clone(memory_format=torch.contiguous_format)
            v = getattr(module, self.name + "_v").clone(memory_format=torch.contiguous_format)
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


def update_spectral_norms(module):
    """Eagerly run the power iteration of every :class:`CompileSafeSpectralNorm` layer of ``module`` in training mode.

    Call it once right before each compiled call of ``module`` (what the eager
    hook does inside the call). Returns the number of layers updated.
    """
    count = 0
    for m in module.modules():
        if not m.training:
            continue
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, CompileSafeSpectralNorm) and hook.hook.n_power_iterations > 0:
                hook.iterate(m)
                count += 1
    return count


def compile_model(model, backend="inductor"):
    """``--compile`` for a ``SuperStyleNetModel`` (module docstring), after any DDP wrapping.

    Everything is compiled in place, so parameter names and checkpoints do not
    change. Sets ``model.spectral_norm_prestep`` so that the model runs
    :func:`update_spectral_norms` before each call of G or D.
    """
    for net in (model.netG, getattr(model, "netD", None)):
        if net is not None:
            make_compile_safe(net)
    model.spectral_norm_prestep = True
    kw = {"dynamic": False, "backend": backend}
    for module in (model.netG, getattr(model, "netD", None), getattr(model, "criterionVGG", None)):
        if module is not None:
            module.compile(**kw)
    return model
