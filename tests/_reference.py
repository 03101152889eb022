"""The literal reference of the model's fast formulations, and the original release's files.

Literal formulations (docs/method.md §5–§6, the release's way of computing them), written
for clarity, not speed. The tests check the project's fast forms against them
(``tests/test_gsas.py``, ``tests/test_ace.py``, values and gradients), and
``benchmarks/bench_model.py`` times the model with :func:`to_literal` applied,
so the speed-ups it reports are measured against this tested code:

* :func:`gsas_literal`: GSAS as the C×C graph of every code vector;
* :func:`per_class_linear_literal`: one ``F.linear`` per class;
* :func:`scatter_map_literal`: the style map M (B, 512, H, W), filled by a
  loop over images and present classes with an in-place masked scatter;
* :class:`LiteralACE`: ACE with all of the above (and the batch norm, noise
  and SPADE branch written out), per image and class; :func:`to_literal`
  switches every ACE of a network to it in place (same parameters).

The release's key lists and generator fixture lie in ``tests/data/``
(:data:`DATA_DIR`, :func:`reference_file`; described in tests/data/README.md).
"""
import os

import pytest
import torch
import torch.nn.functional as F

from models.networks.ace import ACE

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")  # the release files


# ----------------------------------------------------------------------------- literal formulations
def gsas_literal(s, coef_weight, coef_bias):
    """The release's GSAS, written out: a C×C graph per code vector.

    ``s`` (N, C). Channel 0 of the stacked input carries s_k (weight w_e),
    channel 1 carries s_i (weight w_t); ``A[i, k] = w_t s_i + w_e s_k + bias``,
    softmax over i, output ``s_k + mean_i(s_i · P[i, k])``.
    """
    n, c = s.shape
    s_i = s[:, :, None].expand(n, c, c)
    s_k = s[:, None, :].expand(n, c, c)
    graph = F.conv2d(torch.stack([s_k, s_i], dim=1), coef_weight, coef_bias)[:, 0]  # (N, C_i, C_k)
    p = torch.softmax(graph, dim=1)
    return s + (s[:, :, None] * p).mean(dim=1)


def per_class_linear_literal(x, weight, bias):
    """One ``F.linear`` per class: x (B, J, D_in), weight (J, D_out, D_in), bias (J, D_out) -> (B, J, D_out)."""
    return torch.stack([F.linear(x[:, j], weight[j], bias[j]) for j in range(weight.shape[0])], dim=1)


def scatter_map_literal(mu, segmap):
    """The release's style map: for each image and each class present in it, μ_j scattered into its pixels.

    mu (B, J, D), segmap (B, J, H, W) one-hot -> M (B, D, H, W), zero where no class is set.
    """
    b, j, h, w = segmap.shape
    m = mu.new_zeros(b, mu.shape[2], h, w)
    for bi in range(b):
        for ji in range(j):
            mask = segmap[bi, ji] > 0
            area = int(mask.sum())
            if area:
                m[bi].masked_scatter_(mask[None].expand_as(m[bi]), mu[bi, ji][:, None].expand(-1, area))
    return m


class LiteralACE(ACE):
    """ACE computed the release's way, with the parameters and buffers of :class:`ACE`.

    Noise ``x + N(0,1)[B,1,H,W] · noise_var``; batch norm written as
    ``F.batch_norm`` on the layer's running statistics (batch statistics in
    training mode); SPADE's three convs; then, for each image and each class
    present in it, GSAS of its code as the C×C graph and its own Linear +
    ReLU, masked-scattered into M (B, 512, H, W); separate conv_gamma /
    conv_beta on M; the blend. The same random draws as :class:`ACE`, so with
    the same seed the outputs agree.
    """

    def forward(self, x, segmap, codes=None):
        b, c, h, w = x.shape
        x = x + torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype) * self.noise_var.view(1, c, 1, 1)
        bn = self.param_free_norm
        normalized = F.batch_norm(x, bn.running_mean, bn.running_var, None, None, self.training, bn.momentum,
                                  bn.eps)
        segmap = F.interpolate(segmap, size=(h, w), mode="nearest")
        shared, conv_g, conv_b = self.Spade.mlp_shared[0], self.Spade.mlp_gamma, self.Spade.mlp_beta
        actv = F.relu(F.conv2d(segmap, shared.weight, shared.bias, padding=1))
        gamma = F.conv2d(actv, conv_g.weight, conv_g.bias, padding=1)
        beta = F.conv2d(actv, conv_b.weight, conv_b.bias, padding=1)
        if self.use_style:
            mu = codes.new_zeros(codes.shape)
            for bi in range(b):
                for ji in range(codes.shape[1]):
                    if bool(segmap[bi, ji].any()):
                        s = gsas_literal(codes[bi, ji][None], self.Gsas.coefficient.weight,
                                         self.Gsas.coefficient.bias)[0]
                        mu[bi, ji] = F.relu(F.linear(s, self.fc_mu.weight[ji], self.fc_mu.bias[ji]))
            m = scatter_map_literal(mu, segmap)
            gamma_a = F.conv2d(m, self.conv_gamma.weight, self.conv_gamma.bias, padding=1)
            beta_a = F.conv2d(m, self.conv_beta.weight, self.conv_beta.bias, padding=1)
            g, hh = torch.sigmoid(self.blending_gamma), torch.sigmoid(self.blending_beta)
            gamma = g * gamma_a + (1 - g) * gamma
            beta = hh * beta_a + (1 - hh) * beta
        return normalized * (1 + gamma) + beta


def to_literal(module):
    """Switch every :class:`ACE` of ``module`` to :class:`LiteralACE` in place (weights shared); returns it."""
    for m in module.modules():
        if type(m) is ACE:
            m.__class__ = LiteralACE
    return module


# ----------------------------------------------------------------------------- release files
def reference_file(name):
    """Path of one file of the original release in ``tests/data/`` (tests/data/README.md).

    The files are part of the repository, so a missing one fails the test
    (never skips it): the checkout is incomplete.
    """
    path = os.path.join(DATA_DIR, name)
    if not os.path.isfile(path):
        pytest.fail(f"{path} not found: tests/data/ is part of the repository (see tests/data/README.md)")
    return path
