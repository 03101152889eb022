"""Multiscale n-layer PatchGAN discriminator (docs/method.md §7).

State-dict keys follow the release: ``discriminator_<i>.model<n>.0.weight`` for
the plain first/last convs and ``discriminator_<i>.model<n>.0.0.weight_orig``
(plus ``weight_u``/``weight_v``) for the spectral-normalised middle convs.
"""
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm

from models.networks.init import init_weights
from models.networks.sync_batchnorm import SyncBatchNorm2d
from util.errors import OptionError
from util.flag_rules import at_least, mark_architecture, set_rules

NORM_D_TYPES = ("instance", "batch", "syncbatch", "none")


def norm_conv_layer(conv, norm_type):
    """Wrap ``conv`` per a SPADE-style norm string such as 'spectralinstance'.

    'spectral' prefix: classic spectral norm on the conv. Sub-norm 'none' keeps
    the conv (and its bias); otherwise the bias is removed and the result is
    ``Sequential(conv, norm)`` with InstanceNorm (no affine), BatchNorm or
    SyncBatchNorm2d (affine).
    """
    sub = norm_type
    if sub.startswith("spectral"):
        conv = spectral_norm(conv)
        sub = sub[len("spectral"):]
    if sub not in NORM_D_TYPES:
        raise OptionError(f"--norm_D {norm_type!r}: expected [spectral](instance|batch|syncbatch|none)")
    if sub == "none":
        return conv
    if getattr(conv, "bias", None) is not None:
        del conv.bias
        conv.register_parameter("bias", None)
    channels = conv.out_channels
    if sub == "instance":
        norm = nn.InstanceNorm2d(channels, affine=False)
    elif sub == "batch":
        norm = nn.BatchNorm2d(channels, affine=True)
    else:
        norm = SyncBatchNorm2d(channels, affine=True)
    return nn.Sequential(conv, norm)


class NLayerDiscriminator(nn.Module):
    """n-layer PatchGAN, kernel 4, padding 2.

    model0: conv(in -> ndf, stride 2) + lrelu 0.2 (no norm); model1..model{n-1}:
    norm_D conv(stride 2) + lrelu 0.2, doubling the channels up to 512;
    model{n}: conv(-> 1, stride 1). All middle convs use stride 2 (SPADE-lineage
    code uses stride 1 on the last one; docs/method.md §7).

    forward(x): (B, in_nc, H, W) -> list of the n+1 layer outputs (the last is
    the patch logit map (B, 1, h, w)).
    """

    def __init__(self, input_nc, ndf=64, n_layers=3, norm_type="spectralinstance"):
        super().__init__()
        if n_layers < 1:
            raise OptionError(f"--n_layers_D {n_layers}: must be at least 1")
        kw, pad = 4, 2
        self.add_module("model0", nn.Sequential(nn.Conv2d(input_nc, ndf, kw, 2, pad), nn.LeakyReLU(0.2)))
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            layer = norm_conv_layer(nn.Conv2d(nf_prev, nf, kw, 2, pad), norm_type)
            self.add_module(f"model{n}", nn.Sequential(layer, nn.LeakyReLU(0.2)))
        self.add_module(f"model{n_layers}", nn.Sequential(nn.Conv2d(nf, 1, kw, 1, pad)))

    def forward(self, x):
        outputs = []
        for layer in self.children():
            x = layer(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` PatchGANs on successively avg-pooled inputs (3, stride 2, pad 1, no padding count).

    forward(x): x = concat(one-hot segmap, image) (B, J+3, H, W) -> list (per
    scale, finest first) of lists (per layer) of feature maps.

    Args (the flags of the same names; :meth:`from_options` reads them from options):
        semantic_nc: J; output_nc: channels of the image (input channels J + output_nc).
        ndf, num_D, n_layers_D, norm_D: width, scales, layers per scale, ``[spectral](instance|batch|syncbatch|none)``.
        init_type, init_variance: the initialisation.
    Raises :class:`OptionError` for ``num_D`` < 1 or an unsupported ``norm_D``.
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Register the discriminator flags (SPADE names and defaults)."""
        g = parser.add_argument_group("discriminator")
        g.add_argument("--ndf", type=int, default=64, help="# of discriminator filters in the first conv layer")
        g.add_argument("--num_D", type=int, default=2, help="number of discriminator scales")
        g.add_argument("--n_layers_D", type=int, default=3, help="# layers in each discriminator")
        g.add_argument("--norm_D", type=str, default="spectralinstance",
                       help="discriminator normalisation: [spectral](instance|batch|syncbatch|none)")
        set_rules(g, ndf=at_least(1), num_D=at_least(1), n_layers_D=at_least(1))
        mark_architecture(g, "ndf", "num_D", "n_layers_D", "norm_D")
        return parser

    def __init__(self, semantic_nc, output_nc=3, ndf=64, num_D=2, n_layers_D=3, norm_D="spectralinstance",
                 init_type="xavier", init_variance=0.02):
        super().__init__()
        num_d = int(num_D)
        if num_d < 1:
            raise OptionError(f"--num_D {num_d}: must be at least 1")
        input_nc = int(semantic_nc) + int(output_nc)
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, int(ndf), int(n_layers_D), norm_D))
        init_weights(self, init_type, float(init_variance))

    @classmethod
    def from_options(cls, opt):
        """The discriminator of training options ``opt`` (``semantic_nc``, ``output_nc`` and D's flags)."""
        return cls(opt.semantic_nc, output_nc=opt.output_nc, ndf=opt.ndf, num_D=opt.num_D, n_layers_D=opt.n_layers_D,
                   norm_D=opt.norm_D, init_type=opt.init_type, init_variance=opt.init_variance)

    @staticmethod
    def downsample(x):
        """avg_pool2d(3, stride 2, pad 1, count_include_pad=False)."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        results = []
        for d in self.children():
            results.append(d(x))
            x = self.downsample(x)
        return results
