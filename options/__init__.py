"""Command-line options: the one way options are built.

``train.py``, ``test.py`` and ``mix_styles.py`` parse their command lines with
:class:`options.train_options.TrainOptions`, :class:`options.test_options.TestOptions`
and :class:`options.mix_options.MixOptions`; tests, benchmarks and library users call
:func:`build_options`, which goes through the same parsers, defaults, derived
fields and validation.
"""
from options.test_options import TestOptions
from options.train_options import TrainOptions


def build_options(is_train=True, argv=(), **overrides):
    """The options namespace of ``train.py`` (``is_train``) or ``test.py`` for ``argv``.

    ``overrides`` (flag name -> value, e.g. ``label_nc=3, ngf=8``) replace the
    defaults; ``argv`` (a list of command-line words) still wins over them.
    Unlike the command line, ``argv`` defaults to empty, not ``sys.argv``.
    Nothing is written. Raises :class:`util.errors.OptionError` for an unknown
    name or an invalid value.
    """
    options = TrainOptions() if is_train else TestOptions()
    return options.parse(list(argv), overrides=overrides)
