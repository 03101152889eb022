"""ACE: batched per-class style branch and the grouped-conv modulation against the literal reference
(tests/_reference.py, which benchmarks/bench_model.py times as its baseline)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from models.networks.ace import ACE, PerClassLinear, style_modulation
from models.networks.style_resblock import StyleResBlock
from tests._reference import LiteralACE, per_class_linear_literal, scatter_map_literal, to_literal


def one_hot(label, n):
    return F.one_hot(label, n).permute(0, 3, 1, 2).to(torch.float64)


def test_per_class_linear_matches_loop():
    torch.manual_seed(0)
    lin = PerClassLinear(5, 512, 512).double()
    x = torch.randn(3, 5, 512, dtype=torch.float64)
    torch.testing.assert_close(lin(x), per_class_linear_literal(x, lin.weight, lin.bias))


def test_grouped_conv_modulation_matches_masked_scatter_values_and_gradients():
    torch.manual_seed(0)
    b, j, d, h, w, cn = 2, 5, 512, 9, 7, 6
    label = torch.randint(0, j - 1, (b, h, w))  # class j-1 absent everywhere; others random
    label[1][label[1] == 2] = 0  # class 2 absent from the second image
    seg = one_hot(label, j)
    mu = torch.rand(b, j, d, dtype=torch.float64, requires_grad=True)
    wg = torch.randn(cn, d, 3, 3, dtype=torch.float64, requires_grad=True)
    wb = torch.randn(cn, d, 3, 3, dtype=torch.float64, requires_grad=True)
    bg = torch.randn(cn, dtype=torch.float64, requires_grad=True)
    bb = torch.randn(cn, dtype=torch.float64, requires_grad=True)

    fast = style_modulation(mu, seg, (wg, wb), (bg, bb))
    gamma_fast, beta_fast = fast.chunk(2, dim=1)
    leaves = [mu, wg, wb, bg, bb]
    upstream_g, upstream_b = torch.randn_like(gamma_fast), torch.randn_like(beta_fast)
    grads_fast = torch.autograd.grad((gamma_fast * upstream_g).sum() + (beta_fast * upstream_b).sum(), leaves)

    m = scatter_map_literal(mu, seg)
    torch.testing.assert_close(m, torch.einsum("bjd,bjhw->bdhw", mu, seg))
    gamma_ref = F.conv2d(m, wg, bg, padding=1)
    beta_ref = F.conv2d(m, wb, bb, padding=1)
    grads_ref = torch.autograd.grad((gamma_ref * upstream_g).sum() + (beta_ref * upstream_b).sum(), leaves)

    torch.testing.assert_close(gamma_fast, gamma_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(beta_fast, beta_ref, rtol=1e-10, atol=1e-10)
    for gf, gr in zip(grads_fast, grads_ref):
        torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-10)
    assert grads_fast[0][:, j - 1].abs().max() == 0  # absent class: no gradient to its μ


def randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.05)


def literal_copy(ace):
    """A :class:`LiteralACE` with a copy of ``ace``'s parameters and buffers."""
    ref = to_literal(copy.deepcopy(ace))
    assert type(ref) is LiteralACE
    return ref


@pytest.mark.parametrize("training", [True, False])
def test_full_ace_matches_literal_with_noise_and_blending(training):
    torch.manual_seed(0)
    b, j, cn, h, w = 2, 4, 8, 6, 6
    ace = ACE(cn, j, use_style=True).double().train(training)
    randomise(ace)
    with torch.no_grad():  # running statistics that differ from the batch's (used in eval mode)
        ace.param_free_norm.running_mean.copy_(torch.randn(cn, dtype=torch.float64) * 0.3)
        ace.param_free_norm.running_var.copy_(torch.rand(cn, dtype=torch.float64) + 0.5)
    ref_ace = literal_copy(ace)
    label = torch.randint(0, j, (b, 12, 12))
    label[1][label[1] == 2] = 0  # class 2 absent from the second image: the literal loop skips it
    seg = one_hot(label, j)
    x = torch.randn(b, cn, h, w, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    codes = torch.randn(b, j, 512, dtype=torch.float64)

    torch.manual_seed(5)
    out = ace(x, seg, codes)
    torch.manual_seed(5)
    ref = ref_ace(x_ref, seg, codes)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ace.param_free_norm.running_mean, ref_ace.param_free_norm.running_mean)
    torch.testing.assert_close(ace.param_free_norm.running_var, ref_ace.param_free_norm.running_var)
    up = torch.randn_like(out)
    g_fast = torch.autograd.grad((out * up).sum(), [x] + list(ace.parameters()))
    g_ref = torch.autograd.grad((ref * up).sum(), [x_ref] + list(ref_ace.parameters()))
    for (name, _), gf, gr in zip([("x", None)] + list(ace.named_parameters()), g_fast, g_ref):
        torch.testing.assert_close(gf, gr, rtol=1e-8, atol=1e-9, msg=name)


def test_ace_without_style_ignores_codes_and_has_no_style_parameters():
    torch.manual_seed(0)
    ace = ACE(4, 3, use_style=False).double()
    names = {n for n, _ in ace.named_parameters()}
    assert not any(k in n for n in names for k in ("fc_mu", "conv_gamma", "blending", "Gsas"))
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    seg = one_hot(torch.randint(0, 3, (2, 5, 5)), 3)
    torch.manual_seed(3)
    a = ace(x, seg, torch.randn(2, 3, 512, dtype=torch.float64))
    torch.manual_seed(3)
    b = ace(x, seg, None)
    torch.testing.assert_close(a, b)
    torch.manual_seed(3)
    torch.testing.assert_close(a, literal_copy(ace)(x, seg, None))


def test_ace_initial_state_noise_and_blending():
    ace = ACE(4, 3)
    assert torch.all(ace.noise_var == 0)
    assert ace.blending_gamma.item() == 0 and ace.blending_beta.item() == 0
    assert ace.param_free_norm.momentum == 0.1 and ace.param_free_norm.eps == 1e-5
    # noise: one value per pixel, shared by the channels, scaled per channel
    with torch.no_grad():
        ace.noise_var.copy_(torch.tensor([0.0, 1.0, 2.0, -1.0]))
    x = torch.zeros(2, 4, 3, 3)
    torch.manual_seed(0)
    noisy = ace.add_noise(x)
    assert torch.all(noisy[:, 0] == 0)
    torch.testing.assert_close(noisy[:, 2], 2 * noisy[:, 1])
    torch.testing.assert_close(noisy[:, 3], -noisy[:, 1])


def test_resblock_shortcut_and_names():
    plain = StyleResBlock(8, 8, 3)
    learned = StyleResBlock(8, 4, 3)
    assert not plain.learned_shortcut and not hasattr(plain, "conv_s")
    assert learned.learned_shortcut and learned.conv_s.weight_orig.shape == (4, 8, 1, 1)
    assert learned.conv_s.bias is None and learned.conv_0.weight_orig.shape == (4, 8, 3, 3)
    no_sn = StyleResBlock(8, 4, 3, use_spectral=False)
    assert not hasattr(no_sn.conv_0, "weight_orig")
    x = torch.randn(2, 8, 4, 4)
    seg = one_hot(torch.randint(0, 3, (2, 4, 4)), 3).float()
    assert learned(x, seg, torch.randn(2, 3, 512)).shape == (2, 4, 4, 4)
