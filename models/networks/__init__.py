"""Networks of SuperStyleNet: generator, discriminator, losses and their flags.

Public names:
    SuperStyleNetGenerator, MultiscaleDiscriminator, GANLoss, VGGLoss,
    load_vgg19, VGG19Features, vgg19_conv_stack, feature_matching_loss, SyncBatchNorm2d,
    compile_model, update_spectral_norms, modify_commandline_options.

Each network reads its options namespace as built by :mod:`options`
(``options.build_options`` outside the command line).
"""
from models.networks.compile_support import compile_model, update_spectral_norms
from models.networks.discriminator import MultiscaleDiscriminator
from models.networks.generator import SuperStyleNetGenerator
from models.networks.loss import GANLoss, VGG19Features, VGGLoss, feature_matching_loss, load_vgg19, vgg19_conv_stack
from models.networks.loss import modify_commandline_options as _loss_options
from models.networks.sync_batchnorm import SyncBatchNorm2d


def modify_commandline_options(parser, is_train):
    """Register the flags of the generator and, in training, of the discriminator and losses."""
    parser = SuperStyleNetGenerator.modify_commandline_options(parser, is_train)
    if is_train:
        parser = MultiscaleDiscriminator.modify_commandline_options(parser, is_train)
        parser = _loss_options(parser, is_train)
    return parser


__all__ = [
    "SuperStyleNetGenerator", "MultiscaleDiscriminator", "GANLoss", "VGGLoss", "load_vgg19", "VGG19Features",
    "vgg19_conv_stack",
    "feature_matching_loss", "SyncBatchNorm2d", "compile_model", "update_spectral_norms", "modify_commandline_options",
]
