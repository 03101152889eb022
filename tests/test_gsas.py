"""GSAS: the O(C) closed form against the literal O(C²) graph formulation (values and gradients)."""
import torch

from models.networks.gsas import GSAS
from tests._reference import gsas_literal


def test_closed_form_matches_literal_values_and_gradients():
    torch.manual_seed(0)
    c = 512
    s = (torch.randn(2, 3, c, dtype=torch.float64) * 1.5).requires_grad_()
    gsas = GSAS().double()
    with torch.no_grad():
        gsas.coefficient.weight.copy_(torch.tensor([0.7, -2.3], dtype=torch.float64).view(1, 2, 1, 1))
    w_ref = gsas.coefficient.weight.detach().clone().requires_grad_()
    b_ref = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    s_ref = s.detach().clone().requires_grad_()

    out = gsas(s)
    ref = gsas_literal(s_ref.reshape(-1, c), w_ref, b_ref).reshape(2, 3, c)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)

    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(s.grad, s_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gsas.coefficient.weight.grad, w_ref.grad, rtol=1e-10, atol=1e-12)
    assert w_ref.grad[0, 1].abs() > 1e-6  # w_t matters ...
    assert w_ref.grad[0, 0].abs() < 1e-12  # ... w_e and the bias get exactly zero gradient
    assert b_ref.grad.abs().max() < 1e-12


def test_shift_is_one_scalar_per_vector_and_bounded():
    torch.manual_seed(1)
    s = torch.randn(4, 19, 512, dtype=torch.float64) * 3
    gsas = GSAS().double()
    with torch.no_grad():
        gsas.coefficient.weight[0, 1] = 5.0
    shift = gsas(s) - s
    assert torch.allclose(shift, shift[..., :1].expand_as(shift))
    bound = s.abs().amax(dim=-1, keepdim=True) / 512
    assert (shift.abs() <= bound + 1e-15).all()
    # with w_t = 0 the softmax is uniform: the shift is mean(s)/C
    with torch.no_grad():
        gsas.coefficient.weight.zero_()
    torch.testing.assert_close(gsas(s) - s, s.mean(-1, keepdim=True).expand_as(s) / 512)


def test_coefficient_bias_is_a_buffer_with_the_release_key():
    gsas = GSAS()
    keys = set(gsas.state_dict())
    assert keys == {"coefficient.weight", "coefficient.bias"}
    assert [n for n, _ in gsas.named_parameters()] == ["coefficient.weight"]
