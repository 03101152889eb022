"""Option helpers shared by the networks: idempotent flag registration and a test opt."""
import argparse

from util.errors import OptionError


def add_option(parser, *flags, **kwargs):
    """``parser.add_argument`` unless the first flag is already registered (idempotent)."""
    if flags[0] in parser._option_string_actions:
        return parser
    parser.add_argument(*flags, **kwargs)
    return parser


def semantic_nc(opt):
    """Number of one-hot channels J = label_nc (+1 with --contain_dontcare_label)."""
    return int(opt.label_nc) + (1 if getattr(opt, "contain_dontcare_label", False) else 0)


def require(opt, name):
    """Return ``opt.<name>`` or raise OptionError naming the missing option."""
    if not hasattr(opt, name):
        raise OptionError(f"option --{name} is missing from the options namespace")
    return getattr(opt, name)


def default_opt(is_train=True, **overrides):
    """An options namespace for tests and benchmarks, independent of ``options/``.

    It holds the base fields the networks read (label_nc=19,
    contain_dontcare_label=False, crop_size=64, aspect_ratio=1.0, isTrain) plus
    every flag registered by the model's ``modify_commandline_options`` at its
    default, then applies ``overrides`` and computes ``semantic_nc``.
    """
    from models.superstylenet_model import SuperStyleNetModel

    parser = argparse.ArgumentParser(conflict_handler="resolve")
    parser.add_argument("--label_nc", type=int, default=19)
    parser.add_argument("--contain_dontcare_label", action="store_true")
    parser.add_argument("--crop_size", type=int, default=64)
    parser.add_argument("--aspect_ratio", type=float, default=1.0)
    parser = SuperStyleNetModel.modify_commandline_options(parser, is_train)
    opt = parser.parse_args([])
    opt.isTrain = is_train
    for key, value in overrides.items():
        setattr(opt, key, value)
    opt.semantic_nc = semantic_nc(opt)
    return opt
