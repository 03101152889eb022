"""SuperStyleNet generator (docs/method.md §4): SPADE layout with ACE-normalised ResBlocks."""
import re

import torch.nn as nn
import torch.nn.functional as F

from models.networks.style_resblock import StyleResBlock
from models.networks.ace import STYLE_DIM
from models.networks.init import INIT_TYPES, init_weights
from util.errors import InputError, OptionError
from util.flag_rules import POSITIVE, at_least, mark_architecture, set_rules

UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}
NORM_G_PATTERN = re.compile(r"^(spectral)?spade(syncbatch|batch)3x3$")


class SuperStyleNetGenerator(nn.Module):
    """Generator: (one-hot segmap, style codes) -> RGB image in [-1, 1].

    Layout (nf = ngf, ``up`` = nearest ×2): fc (3×3 conv of the segmap resized to
    the latent grid sh×sw, J -> 16nf), head_0, up, G_middle_0, [up for
    more/most], G_middle_1, up, up_0 (16nf->8nf), up, up_1 (8nf->4nf), up,
    up_2 (4nf->2nf), up, up_3 (2nf->nf, no style), [for 'most': up, up_4
    (nf->nf/2, no style)], conv_img(lrelu 0.2) -> tanh.

    Latent grid: ``sw = crop_size / 2**k`` (k = 5, 6, 7 for normal, more, most)
    and ``sh = round(sw / aspect_ratio)`` (:func:`latent_size`, the one place of
    this rule); the output is (sh·2**k) × crop_size.

    forward(segmap, codes): segmap (B, J, H, W) one-hot float, codes (B, J, 512)
    normalised codes -> image (B, output_nc, sh·2**k, crop_size).

    Args (the flags of the same names; :meth:`from_options` reads them from options):
        semantic_nc: J, the one-hot channels (``label_nc``, plus 1 for don't care).
        crop_size, aspect_ratio, num_upsampling_layers: the output size (:func:`latent_size`).
        ngf: width (channels of the last block); norm_G: ``[spectral]spade(syncbatch|batch)3x3``.
        output_nc: 3 (RGB) or 1; init_type, init_variance: the initialisation (``models/networks/init.py``).
    Raises :class:`OptionError` for an unsupported ``norm_G`` or a crop that breaks the crop-size rule.
    """

    @staticmethod
    def modify_commandline_options(parser, is_train):
        """Register the generator flags (SPADE names and defaults)."""
        g = parser.add_argument_group("generator")
        g.add_argument("--ngf", type=int, default=64, help="# of generator filters in the last conv layer")
        g.add_argument("--num_upsampling_layers", type=str, default="normal",
                       choices=tuple(UPSAMPLING_LAYERS),
                       help="'more' adds an upsampling after G_middle_0; 'most' also adds up_4 (see docs/model.md)")
        g.add_argument("--norm_G", type=str, default="spectralspadesyncbatch3x3",
                       help="generator normalisation: [spectral]spade(syncbatch|batch)3x3; the ACE "
                            "normalisation is always (sync-capable) batch norm, as in the release")
        g.add_argument("--init_type", type=str, default="xavier", choices=INIT_TYPES,
                       help="network initialisation")
        g.add_argument("--init_variance", type=float, default=0.02,
                       help="gain/std of the initialisation")
        set_rules(g, ngf=at_least(1), init_variance=POSITIVE)
        mark_architecture(g, "ngf", "num_upsampling_layers", "norm_G", "init_type", "init_variance")
        return parser

    def __init__(self, semantic_nc, crop_size=256, ngf=64, num_upsampling_layers="normal", aspect_ratio=1.0,
                 norm_G="spectralspadesyncbatch3x3", output_nc=3, init_type="xavier", init_variance=0.02):
        super().__init__()
        self.label_nc = int(semantic_nc)
        nf = int(ngf)
        mode = num_upsampling_layers
        norm_g = norm_G
        match = NORM_G_PATTERN.match(norm_g)
        if match is None:
            raise OptionError(f"--norm_G {norm_g!r}: supported values are [spectral]spadesyncbatch3x3 and "
                              "[spectral]spadebatch3x3 (ACE always uses batch statistics, as in the release)")
        use_spectral = match.group(1) is not None
        self.mode = mode
        self.sh, self.sw = latent_size(crop_size, mode, aspect_ratio)
        j = self.label_nc
        self.fc = nn.Conv2d(j, 16 * nf, 3, padding=1)
        self.head_0 = StyleResBlock(16 * nf, 16 * nf, j, use_spectral)
        self.G_middle_0 = StyleResBlock(16 * nf, 16 * nf, j, use_spectral)
        self.G_middle_1 = StyleResBlock(16 * nf, 16 * nf, j, use_spectral)
        self.up_0 = StyleResBlock(16 * nf, 8 * nf, j, use_spectral)
        self.up_1 = StyleResBlock(8 * nf, 4 * nf, j, use_spectral)
        self.up_2 = StyleResBlock(4 * nf, 2 * nf, j, use_spectral)
        self.up_3 = StyleResBlock(2 * nf, nf, j, use_spectral, use_style=False)
        final_nc = nf
        if mode == "most":
            self.up_4 = StyleResBlock(nf, nf // 2, j, use_spectral, use_style=False)
            final_nc = nf // 2
        self.conv_img = nn.Conv2d(final_nc, int(output_nc), 3, padding=1)
        init_weights(self, init_type, float(init_variance))

    @classmethod
    def from_options(cls, opt):
        """The generator of options ``opt`` (``semantic_nc`` and the generator's flags)."""
        return cls(opt.semantic_nc, crop_size=opt.crop_size, ngf=opt.ngf,
                   num_upsampling_layers=opt.num_upsampling_layers, aspect_ratio=opt.aspect_ratio, norm_G=opt.norm_G,
                   output_nc=opt.output_nc, init_type=opt.init_type, init_variance=opt.init_variance)

    def check_inputs(self, segmap, codes):
        """Raise InputError when the segmap/codes shapes do not fit this generator."""
        if segmap.dim() != 4 or segmap.shape[1] != self.label_nc:
            raise InputError(f"generator input: segmap must be (B, {self.label_nc}, H, W); got {tuple(segmap.shape)}")
        expected = (segmap.shape[0], self.label_nc, STYLE_DIM)
        if tuple(codes.shape) != expected:
            raise InputError(f"generator input: codes must be {expected}; got {tuple(codes.shape)}")

    def forward(self, segmap, codes):
        self.check_inputs(segmap, codes)
        x = self.fc(F.interpolate(segmap, size=(self.sh, self.sw), mode="nearest"))
        x = self.head_0(x, segmap, codes)
        x = _up(x)
        x = self.G_middle_0(x, segmap, codes)
        if self.mode in ("more", "most"):
            x = _up(x)
        x = self.G_middle_1(x, segmap, codes)
        x = self.up_0(_up(x), segmap, codes)
        x = self.up_1(_up(x), segmap, codes)
        x = self.up_2(_up(x), segmap, codes)
        x = self.up_3(_up(x), segmap, codes)
        if self.mode == "most":
            x = self.up_4(_up(x), segmap, codes)
        x = self.conv_img(F.leaky_relu(x, 0.2))
        return x.tanh()


def latent_size(crop_size, num_upsampling_layers, aspect_ratio=1.0):
    """The crop-size rule: ``(sh, sw)`` of the latent grid, ``sw = crop_size / 2**k``, ``sh = round(sw / aspect)``.

    ``k`` is 5, 6 or 7 for ``num_upsampling_layers`` normal, more, most. Raises
    :class:`OptionError` when ``crop_size`` is not a positive multiple of
    ``2**k`` or the aspect ratio leaves no rows. Options validation and the
    generator both call this.
    """
    if num_upsampling_layers not in UPSAMPLING_LAYERS:
        raise OptionError(f"--num_upsampling_layers {num_upsampling_layers!r}: choose from "
                          f"{tuple(UPSAMPLING_LAYERS)}")
    k = UPSAMPLING_LAYERS[num_upsampling_layers]
    crop = int(crop_size)
    if crop < 2 ** k or crop % (2 ** k):
        raise OptionError(f"--crop_size {crop}: must be a positive multiple of 2**{k}={2 ** k} for "
                          f"--num_upsampling_layers {num_upsampling_layers}")
    sw = crop // (2 ** k)
    sh = int(round(sw / float(aspect_ratio)))
    if sh < 1:
        raise OptionError(f"--aspect_ratio {aspect_ratio} leaves no rows in the latent grid")
    return sh, sw


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")
