"""Style-mixing options (``mix_styles.py``): ``test.py``'s options plus the mixing flags and their validation."""
from data.image_io import name_some
from options.test_options import TestOptions
from spse.limits import SIZE_HELP, SIZE_RULE
from util.errors import OptionError
from util.flag_rules import UNIT_INTERVAL, Range, set_rules, value_problem

RGB_OFFSET_RULE = Range(-1, 1)  # code units = colour in [0, 1]; beyond +-1 every value clips to 0 or 1


class MixOptions(TestOptions):
    """``test.py``'s options plus the mixing flags.

    Derived fields (:meth:`resolve`): ``alphas`` (list of floats in [0, 1],
    from ``--alpha``) and ``rgb_offset`` (three floats in [-1, 1] from
    ``--edit_rgb``, or None).
    """

    description = ("SuperStyleNet style mixing: restyle chosen classes of source samples with the style codes "
                   "of other samples, or blend and edit them; writes an HTML grid. Architecture flags default "
                   "to those saved in checkpoints_dir/name/opt.json.")

    def initialize(self, parser):
        """Add the mixing flags to the test flags."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("style mixing")
        g.add_argument("--source_labels", nargs="+", required=True, help="label maps of the source samples")
        g.add_argument("--source_codes", nargs="+", required=True,
                       help="code files of the source samples (same order as --source_labels)")
        g.add_argument("--style_codes", nargs="+", default=None, help="code files of the style sources")
        g.add_argument("--style_images", nargs="+", default=None,
                       help="images of the style sources (for extraction with --style_labels, or display)")
        g.add_argument("--style_labels", nargs="+", default=None,
                       help="label maps of --style_images; their codes are extracted with SPSE")
        g.add_argument("--classes", required=True, help="classes to restyle: indices and/or names, e.g. 13,17 "
                                                        "or hair,cloth")
        g.add_argument("--class_names", default=None, help="classes.txt giving the class names")
        g.add_argument("--alpha", default="1",
                       help="comma-separated blend factors in [0, 1]: 0 keeps the source's code, 1 replaces it")
        g.add_argument("--edit_rgb", default=None,
                       help="also edit the chosen classes by adding dr,dg,db (code units = colour in [0, 1], "
                            "each in [-1, 1]) to their codes, e.g. 0.2,0,-0.1; shown as an extra column")
        g.add_argument("--spse_size", type=int, default=512,
                       help=f"SPSE working resolution for extraction ({SIZE_HELP})")
        g.add_argument("--mix_dir", default=None, help="output folder (default results/<name>/mix_<epoch>)")
        g.add_argument("--no_progress", action="store_true", help="hide progress bars")
        set_rules(g, spse_size=SIZE_RULE)
        return parser

    def resolve(self, opt):
        """The test options' derived fields plus ``alphas`` and ``rgb_offset``."""
        super().resolve(opt)
        opt.alphas = parse_alphas(opt.alpha)
        opt.rgb_offset = parse_rgb(opt.edit_rgb) if opt.edit_rgb is not None else None
        return opt

    def validate(self, opt):
        """The test checks plus the pairing of the file lists (:func:`check_counts`)."""
        super().validate(opt)
        check_counts(opt)


def _numbers(flag, text, count=None):
    """Comma-separated numbers of ``text``; raises :class:`OptionError` naming ``flag``."""
    expected = "three comma-separated numbers" if count == 3 else "comma-separated numbers"
    try:
        values = [float(t) for t in str(text).split(",") if t.strip() or count]
    except ValueError as e:
        raise OptionError(f"{flag} {text!r}: expected {expected}") from e
    if not values or (count is not None and len(values) != count):
        raise OptionError(f"{flag} {text!r}: expected {expected}")
    return values


def parse_alphas(text):
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; each a finite number in [0, 1] (:class:`OptionError` otherwise)."""
    values = _numbers("--alpha", text)
    for v in values:
        problem = value_problem(v, float, UNIT_INTERVAL)
        if problem is not None:
            raise OptionError(f"--alpha {text}: each blend factor {problem} (0 keeps the source's code, "
                              f"1 replaces it); {v:g} is not")
    return values


def parse_rgb(text):
    """``"0.2,0,-0.1"`` -> ``(0.2, 0.0, -0.1)``; three finite numbers in [-1, 1] (:class:`OptionError` otherwise)."""
    values = _numbers("--edit_rgb", text, count=3)
    for v in values:
        problem = value_problem(v, float, RGB_OFFSET_RULE)
        if problem is not None:
            raise OptionError(f"--edit_rgb {text}: each colour offset {problem} (colour units); {v:g} is not")
    return tuple(values)


def check_pairs(flag_a, files_a, flag_b, files_b):
    """Raise :class:`OptionError` unless two file lists pair up one to one (by position).

    The message names the files without a partner: the first few, plus a count
    (:func:`data.image_io.name_some`), as the dataset does for stems.
    """
    if len(files_a) == len(files_b):
        return
    if len(files_a) > len(files_b):
        flag, extra, other = flag_a, files_a[len(files_b):], flag_b
    else:
        flag, extra, other = flag_b, files_b[len(files_a):], flag_a
    raise OptionError(f"{flag_a} ({len(files_a)} files) and {flag_b} ({len(files_b)} files) must pair up one to "
                      f"one, in order; {len(extra)} of the {flag} files lack a partner in {other}: "
                      f"{name_some(extra)}")


def check_counts(opt):
    """Validate the pairing of the source and style file lists; raises :class:`OptionError`."""
    check_pairs("--source_labels", opt.source_labels, "--source_codes", opt.source_codes)
    if opt.style_codes:
        if opt.style_labels:
            raise OptionError("give either --style_codes or --style_labels (for extraction), not both")
        if opt.style_images:
            check_pairs("--style_images", opt.style_images, "--style_codes", opt.style_codes)
    elif opt.style_images and opt.style_labels:
        check_pairs("--style_images", opt.style_images, "--style_labels", opt.style_labels)
    elif opt.style_images or opt.style_labels:
        raise OptionError("--style_images need --style_labels (codes extracted) or --style_codes (display)")
    elif opt.edit_rgb is None:
        raise OptionError("no style source: give --style_codes, or --style_images with --style_labels "
                          "(or only --edit_rgb for a colour edit)")
