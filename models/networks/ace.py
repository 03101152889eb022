"""ACE normalisation (docs/method.md §5): SPADE branch + per-class style branch, blended.

For a feature map ``x`` (B, Cn, H, W), a one-hot segmap (B, J, H', W')
(nearest-resized to H×W) and normalised style codes (B, J, 512):

1. ``x + ν·z`` with ``z`` (B, 1, H, W) ~ N(0, 1) and ``ν = noise_var`` (Cn,), zero at first;
2. parameter-free, sync-capable BatchNorm (momentum 0.1, eps 1e-5);
3. SPADE branch: ``a = relu(conv3x3(seg -> 128))``, ``γ_s, β_s = conv3x3(a)``;
4. style branch (blocks with style only): ``μ_j = relu(W_j GSAS(s_j) + b_j)``,
   ``γ_a, β_a = conv3x3(M)`` with the style map ``M = Σ_j μ_j ⊗ seg_j``, computed
   exactly as one grouped conv of the segmap (:func:`style_modulation`);
   ``γ = σ(g)γ_a + (1-σ(g))γ_s``, ``β = σ(h)β_a + (1-σ(h))β_s``;
5. ``out = norm(x) · (1 + γ) + β``.

Elementwise steps are fused (docs/model.md, "Implementation choices");
parameters and state-dict keys are those of the plain formulation.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.networks.gsas import GSAS
from models.networks.sync_batchnorm import SyncBatchNorm2d

STYLE_DIM = 512
SPADE_HIDDEN = 128


class PerClassLinear(nn.Module):
    """J independent Linear(in_features -> out_features) layers, stored batched.

    ``weight`` (J, out, in), ``bias`` (J, out).
    forward(x): x (B, J, in) -> (B, J, out), ``y[b, j] = W_j x[b, j] + b_j``.
    """

    def __init__(self, num_classes, in_features=STYLE_DIM, out_features=STYLE_DIM):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(num_classes, out_features))
        bound = 1.0 / in_features ** 0.5  # nn.Linear's default per slice; init_weights() replaces it
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x):
        # one batched matmul over classes, (J, out, in) @ (J, in, B) + (J, out, 1), laid out so that
        # the weight gradient comes out contiguous in the parameter's own (J, out, in) layout
        return torch.baddbmm(self.bias[:, :, None], self.weight, x.permute(1, 2, 0)).permute(2, 0, 1)


class SpadeBranch(nn.Module):
    """SPADE modulation from the segmap.

    forward(segmap): (B, J, H, W) -> (B, 2·Cn, H, W), γ_s on the first Cn
    channels and β_s on the last Cn: ``mlp_gamma`` and ``mlp_beta`` run as one
    conv over their concatenated kernels (same result as two convs).
    """

    def __init__(self, label_nc, norm_nc, hidden=SPADE_HIDDEN):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, norm_nc, 3, padding=1)

    def forward(self, segmap):
        actv = self.mlp_shared(segmap)
        weight = torch.cat([self.mlp_gamma.weight, self.mlp_beta.weight])
        bias = torch.cat([self.mlp_gamma.bias, self.mlp_beta.bias])
        return F.conv2d(actv, weight, bias, padding=1)


def style_modulation(mu, segmap, weights, biases):
    """Exact fast form of ``conv3x3(M; W) + bias`` with ``M = einsum('bjd,bjhw->bdhw', mu, segmap)``.

    Because M is linear in the segmap, ``conv(M; W) = conv(segmap; K_b)`` with
    ``K_b[c, j, k] = Σ_d W[c, d, k] · μ[b, j, d]``: one grouped conv (groups = B)
    with J input channels instead of 512 (derivation: docs/method.md §5.6).

    Args:
        mu: (B, J, D) per-class style vectors.
        segmap: (B, J, H, W) segmap (one-hot in practice; the identity holds for any map).
        weights: sequence of conv weights, each (Co_i, D, kh, kw) (e.g. conv_gamma and
            conv_beta), evaluated together in one grouped conv.
        biases: sequence of matching (Co_i,) biases, added once.
    Returns:
        (B, ΣCo_i, H, W): the outputs of the convs on M, concatenated on channels.
        The bias is added inside the conv (repeated once per group).
    """
    b, j, h, w = segmap.shape
    kh, kw = weights[0].shape[2:]
    # (1, B·J, D) @ (Co, D, kh·kw) -> (Co, B·J, kh·kw): reads each weight in place, no copy
    kernels = torch.cat([torch.matmul(mu.reshape(1, b * j, -1), wt.flatten(2)) for wt in weights], dim=0)
    co = kernels.shape[0]
    kernels = kernels.view(co, b, j, kh, kw).transpose(0, 1).reshape(b * co, j, kh, kw)
    bias = torch.cat(list(biases)).repeat(b)
    out = F.conv2d(segmap.reshape(1, b * j, h, w), kernels, bias, padding=(kh // 2, kw // 2), groups=b)
    return out.view(b, co, h, w)


class ACE(nn.Module):
    """ACE normalisation layer.

    Args:
        norm_nc: channels Cn of the normalised feature map.
        label_nc: one-hot channels J of the segmap (and number of style codes).
        use_style: build the per-class style branch (False in the last block).

    forward(x, segmap, codes): x (B, Cn, H, W); segmap (B, J, H', W') one-hot
    float (nearest-resized to H×W here); codes (B, J, 512) normalised style
    codes (ignored when ``use_style`` is False). Returns (B, Cn, H, W).
    """

    def __init__(self, norm_nc, label_nc, use_style=True):
        super().__init__()
        self.use_style = bool(use_style)
        self.noise_var = nn.Parameter(torch.zeros(norm_nc))
        self.param_free_norm = SyncBatchNorm2d(norm_nc, eps=1e-5, momentum=0.1, affine=False)
        self.Spade = SpadeBranch(label_nc, norm_nc)
        if self.use_style:
            self.Gsas = GSAS()
            self.fc_mu = PerClassLinear(label_nc, STYLE_DIM, STYLE_DIM)
            self.conv_gamma = nn.Conv2d(STYLE_DIM, norm_nc, 3, padding=1)
            self.conv_beta = nn.Conv2d(STYLE_DIM, norm_nc, 3, padding=1)
            self.blending_gamma = nn.Parameter(torch.zeros(1))
            self.blending_beta = nn.Parameter(torch.zeros(1))

    def add_noise(self, x):
        """x + N(0,1) noise of shape (B, 1, H, W) scaled per channel by ``noise_var`` (one addcmul)."""
        b, c, h, w = x.shape
        noise = torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)
        return torch.addcmul(x, noise, self.noise_var.view(1, c, 1, 1).to(x.dtype))

    def style_vectors(self, codes):
        """μ = relu(W_j GSAS(s)_j + b_j): (B, J, 512) -> (B, J, 512)."""
        return F.relu(self.fc_mu(self.Gsas(codes)))

    def style_gamma_beta(self, mu, segmap):
        """[γ_a; β_a] (B, 2·Cn, H, W) from μ (B, J, 512) and the resized segmap (B, J, H, W)."""
        return style_modulation(mu, segmap, (self.conv_gamma.weight, self.conv_beta.weight),
                                (self.conv_gamma.bias, self.conv_beta.bias))

    def forward(self, x, segmap, codes=None):
        normalized = self.param_free_norm(self.add_noise(x))
        if segmap.shape[2:] != x.shape[2:]:
            segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        gamma_beta = self.Spade(segmap)  # [γ_s; β_s]
        if self.use_style:
            if codes is None:
                raise ValueError("ACE with a style branch needs codes of shape (B, J, 512)")
            style = self.style_gamma_beta(self.style_vectors(codes), segmap)  # [γ_a; β_a]
            if not style.is_contiguous(memory_format=_memory_format(gamma_beta)):
                style = style.contiguous(memory_format=_memory_format(gamma_beta))
            # γ = σ(g)·γ_a + (1 - σ(g))·γ_s, β likewise with σ(h): one lerp with per-channel weights
            c = x.shape[1]
            weight = torch.cat([torch.sigmoid(self.blending_gamma).expand(c),
                                torch.sigmoid(self.blending_beta).expand(c)])
            gamma_beta = torch.lerp(gamma_beta, style, weight.view(1, 2 * c, 1, 1).to(gamma_beta.dtype))
        gamma, beta = gamma_beta.chunk(2, dim=1)
        return torch.addcmul(beta, normalized, 1.0 + gamma)


def _memory_format(t):
    """torch.channels_last when ``t`` (4-D) is stored channels-last (and not also plainly contiguous)."""
    if t.is_contiguous() or not t.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last
