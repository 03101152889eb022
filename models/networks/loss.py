"""Losses (docs/method.md §8): GAN (hinge/ls/original/w), feature matching, VGG19 perceptual.

All losses here return *raw* values; the weights (λ_feat, λ_vgg) are applied in
one place, ``SuperStyleNetModel.weighted_sum`` (``model.loss_weights``).
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from util.errors import CheckpointError, OptionError
from util.flag_rules import NON_NEGATIVE, mark_architecture, set_rules
from util.torch_io import load_torch_file

GAN_MODES = ("hinge", "ls", "original", "w")
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features
VGG_SLICE_ENDS = (2, 7, 12, 21, 30)
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def modify_commandline_options(parser, is_train):
    """Register the loss flags (SPADE names and defaults)."""
    g = parser.add_argument_group("losses")
    g.add_argument("--gan_mode", type=str, default="hinge", choices=GAN_MODES, help="GAN loss")
    g.add_argument("--lambda_feat", type=float, default=10.0, help="weight of the feature-matching loss")
    g.add_argument("--lambda_vgg", type=float, default=10.0, help="weight of the VGG perceptual loss")
    g.add_argument("--no_ganFeat_loss", action="store_true", help="do not use the feature-matching loss")
    g.add_argument("--no_vgg_loss", action="store_true", help="do not use the VGG perceptual loss")
    g.add_argument("--vgg_path", type=str, default=None,
                   help=f"ImageNet VGG19 weights (torchvision's {VGG19_FILENAME}); when left out, torch's "
                        "hub cache <torch.hub.get_dir()>/checkpoints/" + VGG19_FILENAME)
    set_rules(g, lambda_feat=NON_NEGATIVE, lambda_vgg=NON_NEGATIVE)
    mark_architecture(g, "gan_mode", "lambda_feat", "lambda_vgg", "no_ganFeat_loss", "no_vgg_loss")
    return parser


class GANLoss(nn.Module):
    """GAN loss on multiscale discriminator output.

    ``forward(pred, target_is_real, for_discriminator)``: ``pred`` is a list
    (per scale) of lists (per layer) of tensors — only each scale's last tensor
    (the patch logits) is used — or a single tensor. Returns a scalar: the
    per-scale loss averaged over scales.

    * hinge: D real ``mean(relu(1 - x))``, D fake ``mean(relu(1 + x))``, G ``-mean(x)``;
    * ls: ``mean((x - t)^2)`` with t = 1 (real) or 0 (fake);
    * original: binary cross-entropy with logits;
    * w: ``-mean(x)`` for real, ``mean(x)`` for fake.
    """

    def __init__(self, gan_mode="hinge"):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise OptionError(f"--gan_mode {gan_mode!r}: choose from {GAN_MODES}")
        self.gan_mode = gan_mode

    def single_scale(self, x, target_is_real, for_discriminator):
        """Loss of one logit tensor ``x``; a scalar, at least float32 (also under autocast)."""
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if self.gan_mode == "hinge":
            if for_discriminator:
                return F.relu(1.0 - x).mean() if target_is_real else F.relu(1.0 + x).mean()
            if not target_is_real:
                raise ValueError("the generator's hinge loss is defined for target_is_real=True only")
            return -x.mean()
        if self.gan_mode == "ls":
            return F.mse_loss(x, torch.full_like(x, 1.0 if target_is_real else 0.0))
        if self.gan_mode == "original":
            return F.binary_cross_entropy_with_logits(x, torch.full_like(x, 1.0 if target_is_real else 0.0))
        return -x.mean() if target_is_real else x.mean()

    def forward(self, pred, target_is_real, for_discriminator=True):
        if isinstance(pred, (list, tuple)):
            logits = [p[-1] if isinstance(p, (list, tuple)) else p for p in pred]
            total = sum(self.single_scale(x, target_is_real, for_discriminator) for x in logits)
            return total / len(logits)
        return self.single_scale(pred, target_is_real, for_discriminator)


def feature_matching_loss(pred_fake, pred_real):
    """Raw feature-matching loss.

    ``pred_fake``/``pred_real``: lists (per scale) of lists (per layer) of D
    features. Sum over scales and layers (excluding each scale's last output)
    of L1(fake, real.detach()), divided by the number of scales. Scalar.
    """
    num_d = len(pred_fake)
    total = pred_fake[0][0].new_zeros(())
    for fake_feats, real_feats in zip(pred_fake, pred_real):
        for f, r in zip(fake_feats[:-1], real_feats[:-1]):
            total = total + F.l1_loss(f, r.detach())
    return total / num_d


def default_vgg19_path():
    """torch's hub cache location of torchvision's ImageNet VGG19 weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", VGG19_FILENAME)


class VGG19Features(nn.Module):
    """VGG19 feature extractor returning relu1_1 … relu5_1 (frozen, eval mode).

    forward(x): (B, 3, H, W) -> list of 5 feature maps.
    """

    def __init__(self, features):
        super().__init__()
        self.slices = nn.ModuleList()
        start = 0
        for end in VGG_SLICE_ENDS:
            self.slices.append(nn.Sequential(*[features[i] for i in range(start, end)]))
            start = end
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode=True):
        """Always stays in eval mode (no dropout/BN inside anyway)."""
        return super().train(False)

    def forward(self, x):
        outs = []
        for s in self.slices:
            x = s(x)
            outs.append(x)
        return outs


def vgg19_conv_stack():
    """torchvision's VGG19 conv stack (``vgg19().features``), untrained; the classifier is not needed."""
    # here, not at the top: importing torchvision takes about 1.5 s, which every script would pay
    from torchvision.models.vgg import cfgs, make_layers

    return make_layers(cfgs["E"], batch_norm=False)


def resolve_vgg19_path(path=None):
    """The VGG19 weights file to load: ``path``, or torch's hub cache (:func:`default_vgg19_path`) when None.

    Raises CheckpointError, saying how to obtain the file, when it does not
    exist (train.py calls this before it builds any network).
    """
    path = path or default_vgg19_path()
    if not os.path.isfile(path):
        raise CheckpointError(
            f"VGG19 weights not found at {path}. The perceptual loss needs torchvision's ImageNet "
            f"VGG19 ({VGG19_FILENAME}). On a machine with internet run "
            "`python -c \"import torchvision; torchvision.models.vgg19(weights='IMAGENET1K_V1')\"`, then "
            f"copy <torch.hub.get_dir()>/checkpoints/{VGG19_FILENAME} here or pass --vgg_path FILE. "
            "To train without it, pass --no_vgg_loss.")
    return path


def load_vgg19(path=None):
    """The frozen VGG19 feature extractor with torchvision's ImageNet weights.

    Args:
        path: a torchvision VGG19 state_dict file; ``None`` means torch's hub
            cache (:func:`default_vgg19_path`).
    Raises:
        CheckpointError when the weights are missing or unreadable; the message
        says how to obtain them and mentions ``--no_vgg_loss``. (Tests and
        benchmarks, which only need the loss's cost or plumbing, pass
        ``VGG19Features(vgg19_conv_stack())`` to the model instead.)
    """
    features = vgg19_conv_stack()
    path = resolve_vgg19_path(path)
    state = load_torch_file(path, "VGG19 weights file")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a torchvision VGG19 state_dict (got {type(state).__name__})")
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(feats, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: not a torchvision VGG19 state_dict ({e})") from e
    return VGG19Features(features)


class VGGLoss(nn.Module):
    """Raw VGG19 perceptual loss: Σ_i w_i · L1(φ_i(x), φ_i(y).detach()).

    Weights 1/32, 1/16, 1/8, 1/4, 1 at relu1_1 … relu5_1; inputs in [-1, 1] are
    fed as they are (no ImageNet normalisation, as in the release).
    forward(x, y): (B, 3, H, W) each -> scalar.
    """

    def __init__(self, vgg):
        super().__init__()
        self.vgg = vgg

    def forward(self, x, y):
        fx = self.vgg(x)
        with torch.no_grad():
            fy = self.vgg(y)
        return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(VGG_LAYER_WEIGHTS, fx, fy))
