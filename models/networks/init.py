"""Weight initialisation (docs/method.md §9).

Conv and Linear weights (``weight_orig`` for spectral-normalised layers, the
per-class slices of :class:`PerClassLinear`, the GSAS coefficient) are drawn
with the chosen scheme; biases are zero. Affine normalisation weights start at
N(1, gain) and their biases at zero.
"""
import math

import torch
import torch.nn as nn

from models.networks.ace import PerClassLinear
from models.networks.gsas import GraphCoefficient

INIT_TYPES = ("xavier", "xavier_uniform", "normal", "kaiming", "orthogonal", "none")


def _init_tensor(w, init_type, gain):
    if init_type == "xavier":
        nn.init.xavier_normal_(w, gain=gain)
    elif init_type == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=1.0)
    elif init_type == "normal":
        nn.init.normal_(w, 0.0, gain)
    elif init_type == "kaiming":
        nn.init.kaiming_normal_(w, a=0, mode="fan_in")
    elif init_type == "orthogonal":
        nn.init.orthogonal_(w, gain=gain)
    elif init_type != "none":
        raise ValueError(f"unknown init_type {init_type!r}; choose from {INIT_TYPES}")


def _weight_of(module):
    """The trainable weight of a conv/linear (``weight_orig`` under classic spectral norm)."""
    return module.weight_orig if hasattr(module, "weight_orig") else module.weight


@torch.no_grad()
def init_weights(net, init_type="xavier", gain=0.02):
    """Initialise every conv/linear/normalisation layer of ``net`` in place and return ``net``.

    ``gain`` is ``--init_variance`` (0.02 by default): the xavier gain, the
    std of the 'normal' scheme and of the N(1, gain) affine-norm weights.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; choose from {INIT_TYPES}")
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, GraphCoefficient)):
            _init_tensor(_weight_of(m), init_type, gain)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
        elif isinstance(m, PerClassLinear):
            if init_type == "xavier":  # same distribution as one xavier_normal_ per slice, in one call
                fan_out, fan_in = m.weight.shape[1:]
                nn.init.normal_(m.weight, 0.0, xavier_std(fan_in, fan_out, gain))
            else:
                for j in range(m.weight.shape[0]):
                    _init_tensor(m.weight[j], init_type, gain)
            m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) or m.__class__.__name__ == "SyncBatchNorm2d":
            if getattr(m, "weight", None) is not None:
                nn.init.normal_(m.weight, 1.0, gain)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return net


def xavier_std(fan_in, fan_out, gain):
    """Standard deviation of ``xavier_normal_`` for the given fans and gain (for tests/docs)."""
    return gain * math.sqrt(2.0 / (fan_in + fan_out))
