"""Residual block of the generator with ACE normalisation (docs/method.md §4)."""
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from models.networks.ace import ACE


class StyleResBlock(nn.Module):
    """ResBlock(fin, fout) with ACE normalisation.

    Main path ``conv_1(lrelu(ace_1(conv_0(lrelu(ace_0(x))))))`` with leaky ReLU
    0.2 and ``fmiddle = min(fin, fout)``; shortcut ``conv_s(ace_s(x))`` (1×1, no
    bias, no activation) only when fin ≠ fout, else identity. conv_0, conv_1 and
    conv_s are wrapped in (classic) spectral norm when ``use_spectral``.

    forward(x, segmap, codes): x (B, fin, H, W), segmap (B, J, H', W'),
    codes (B, J, 512) -> (B, fout, H, W).
    """

    def __init__(self, fin, fout, label_nc, use_spectral=True, use_style=True):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        wrap = spectral_norm if use_spectral else (lambda m: m)
        self.conv_0 = wrap(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = wrap(nn.Conv2d(fmiddle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = wrap(nn.Conv2d(fin, fout, 1, bias=False))
        self.ace_0 = ACE(fin, label_nc, use_style)
        self.ace_1 = ACE(fmiddle, label_nc, use_style)
        if self.learned_shortcut:
            self.ace_s = ACE(fin, label_nc, use_style)

    def forward(self, x, segmap, codes):
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")  # once for all ACEs of the block
        x_s = self.conv_s(self.ace_s(x, segmap, codes)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.ace_0(x, segmap, codes), 0.2))
        dx = self.conv_1(F.leaky_relu(self.ace_1(dx, segmap, codes), 0.2))
        return x_s + dx
