"""GSAS, the release's "graph-based spatial recovery" of a style code, in its exact closed form.

For a code vector ``s`` in R^C (C = 512)::

    GSAS(s) = s + (1/C) · Σ_i s_i · softmax(w_t · s)_i

one scalar shift per code vector, at most max|s|/C, in O(C) time and memory.
It equals the release's C×C graph form in values and gradients; the
derivation is in docs/method.md §6.
"""
import torch
import torch.nn as nn


class GraphCoefficient(nn.Module):
    """Holds the release's (1, 2, 1, 1) coefficient conv so that release weights load.

    ``weight[0, 1, 0, 0]`` is w_t (multiplies s_i), ``weight[0, 0, 0, 0]`` is w_e.
    Only w_t enters the output; w_e receives an exact zero gradient. The bias
    cancels in the softmax, so it is kept as a buffer (``bias``), not a
    parameter: it loads from and saves to the same state-dict key, and an
    optimiser would never move it anyway (its gradient is identically zero).
    """

    constant_buffers = ("bias",)  # never written after loading (no broadcast between processes needed)

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 2, 1, 1))
        self.register_buffer("bias", torch.zeros(1))

    def w_t(self):
        """The scalar w_t (0-dim tensor, differentiable)."""
        return self.weight[0, 1, 0, 0]


class GSAS(nn.Module):
    """Closed-form GSAS over the last dimension.

    forward(s): ``s`` (..., C) float -> (..., C), ``s + mean(s * softmax(w_t s))``
    where the sum/softmax run over the last dimension and the mean divides by C.
    """

    def __init__(self):
        super().__init__()
        self.coefficient = GraphCoefficient()

    def forward(self, s):
        c = s.shape[-1]
        weights = torch.softmax(self.coefficient.w_t() * s, dim=-1)
        return s + (s * weights).sum(dim=-1, keepdim=True) / c
