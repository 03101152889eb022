"""Style mixing: restyle chosen semantic classes of source samples with other samples' style codes.

Replace classes (one column per style source)::

    python mix_styles.py --name celeba --which_epoch latest \
        --source_labels test/labels/28000.png test/labels/28001.png \
        --source_codes test/codes/28000.npy test/codes/28001.npy \
        --style_codes test/codes/28010.npy test/codes/28020.npy \
        --style_images test/images/28010.jpg test/images/28020.jpg \
        --classes hair,cloth

Blend a class's code between a source and a style source (one column per alpha)::

    python mix_styles.py --name celeba ... --style_images a.jpg --style_labels a.png \
        --classes 13 --alpha 0,0.25,0.5,0.75,1

Style codes come from ``--style_codes`` (code files; ``--style_images`` then
only illustrate the columns) or are extracted on the fly with SPSE from
``--style_images`` plus ``--style_labels`` (``--spse_size``, default 512 as in
the method). ``--classes`` takes indices and/or names from a ``classes.txt``
(``--class_names``; by default the first ``classes.txt`` found in the source
label folder or its two parents, as written by ``datasets/prepare_*.py``).

The architecture comes from ``checkpoints/<name>/opt.json`` as in
``test.py`` (command-line flags win); the generator from
``<which_epoch>_net_G.pth`` (this project's or the release's), or with
``--use_ema`` the averaged generator ``<which_epoch>_net_G_ema.pth``. Only
label maps and code files are needed (no photographs). Output:
``<mix_dir>/index.html`` (default ``results/<name>/mix_<which_epoch>``, with
``_ema`` appended under ``--use_ema``), laid out as ``test.py``'s page
(``util/pages.py``): a heading (model, checkpoint, EMA or not, the classes
restyled), a class legend with the restyled classes marked, and a grid with
one row per source: its label map, its reconstruction, then one cell per
(style, alpha), and with ``--edit_rgb dr,dg,db`` a column where the chosen
classes' codes are shifted in colour instead; the header row shows the style
images. ``mix.json`` lists every cell's image file.
"""
import os
import sys

from data.image_io import check_aspect_ratio, name_some, read_label, read_rgb, stem
from datasets.class_names import find_class_names, parse_class_list, read_class_names
from editing.style_mixing import StyleMixer, mix_grid, shift_class_colour
from options.test_options import TestOptions
from util.cli import run_cli
from util.errors import InputError, OptionError
from util.pages import class_legend, write_mix_page


class MixOptions(TestOptions):
    """``test.py``'s options plus the mixing flags."""

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
        g.add_argument("--alpha", default="1", help="comma-separated blend factors; 1 replaces the code")
        g.add_argument("--edit_rgb", default=None,
                       help="also edit the chosen classes by adding dr,dg,db (code units = colour in [0, 1]) "
                            "to their codes, e.g. 0.2,0,-0.1; shown as an extra column")
        g.add_argument("--spse_size", type=int, default=512, help="SPSE working resolution for extraction")
        g.add_argument("--mix_dir", default=None, help="output folder (default results/<name>/mix_<epoch>)")
        g.add_argument("--no_progress", action="store_true", help="hide progress bars")
        return parser


def parse_alphas(text):
    """``"0,0.5,1"`` -> ``[0.0, 0.5, 1.0]``; raises :class:`OptionError` on bad values."""
    try:
        values = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError as e:
        raise OptionError(f"--alpha {text!r}: expected comma-separated numbers") from e
    if not values:
        raise OptionError("--alpha: no value given")
    return values


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


def parse_rgb(text):
    """``"0.2,0,-0.1"`` -> ``(0.2, 0.0, -0.1)``; raises :class:`OptionError` unless 3 numbers."""
    try:
        values = tuple(float(t) for t in str(text).split(","))
    except ValueError as e:
        raise OptionError(f"--edit_rgb {text!r}: expected three comma-separated numbers") from e
    if len(values) != 3:
        raise OptionError(f"--edit_rgb {text!r}: expected three comma-separated numbers")
    return values


def load_styles(opt, mixer, progress=True):
    """``[(name, raw codes (label_nc, 512))]`` of the style sources (files or SPSE extraction)."""
    if not opt.style_codes and not opt.style_labels:
        return []
    if opt.style_codes:
        return [(stem(p), mixer.load_codes(p)) for p in opt.style_codes]
    from tqdm import tqdm

    from spse.extractor import extract_style_codes

    styles = []
    pairs = list(zip(opt.style_images, opt.style_labels))
    for image_path, label_path in tqdm(pairs, desc="SPSE", disable=not progress, unit="img"):
        image, label = read_rgb(image_path), read_label(label_path)  # read_label refuses lossy (JPEG) maps
        check_aspect_ratio(image.shape[1::-1], label.shape[::-1], image_path, label_path)
        try:
            codes = extract_style_codes(image, label, opt.label_nc, size=opt.spse_size)
        except InputError as e:
            raise InputError(f"{image_path} / {label_path}: style code extraction failed ({e})") from e
        styles.append((stem(image_path), codes))
    return styles


def page_facts(opt, info, class_label, alphas, edit_rgb):
    """The heading of the mixing page: model, checkpoint, generator, what was restyled."""
    facts = [("model", opt.name),
             ("checkpoint", f"{opt.which_epoch}: {info['path']} ({info['format_name']})"),
             ("generator", "EMA (averaged weights, --use_ema)" if opt.use_ema else "raw (not averaged)"),
             ("classes restyled", class_label), ("alphas", ", ".join(f"{a:g}" for a in alphas)),
             ("noise seed", opt.seed)]
    if edit_rgb is not None:
        facts.append(("colour edit", f"{edit_rgb} added to the R, G, B thirds of the codes"))
    return facts


def main(argv=None):
    """Run style mixing with command-line ``argv``; returns the path of the HTML page."""
    from models.inference import load_inference_model

    options = MixOptions()
    opt = options.parse(argv)
    progress = not opt.no_progress
    check_counts(opt)
    alphas = parse_alphas(opt.alpha)
    edit_rgb = parse_rgb(opt.edit_rgb) if opt.edit_rgb is not None else None
    names_path = opt.class_names or find_class_names(opt.source_labels[0])
    names = read_class_names(names_path) if names_path else None
    classes = parse_class_list(opt.classes, opt.label_nc, names)
    class_label = ",".join(names[c] if names and c < len(names) else str(c) for c in classes)
    model = load_inference_model(opt)
    mixer = StyleMixer(model, opt, seed=opt.seed)

    sources = [(stem(lp), mixer.load_label(lp), mixer.load_codes(cp))
               for lp, cp in zip(opt.source_labels, opt.source_codes)]
    styles = load_styles(opt, mixer, progress)
    for what, items in (("source", sources), ("style", styles)):
        names_seen = [it[0] for it in items]
        dupes = sorted({n for n in names_seen if names_seen.count(n) > 1})
        if dupes:
            raise OptionError(f"{what} files share the stem(s) {', '.join(dupes)}; stems name the grid cells")
    grid = mix_grid(mixer, sources, styles, classes, alphas, progress=progress)
    if edit_rgb is not None:
        grid["edited"] = {name: mixer.generate(label, shift_class_colour(codes, classes, edit_rgb), name)
                          for name, label, codes in sources}
    mix_dir = opt.mix_dir or os.path.join(opt.results_dir, opt.name,
                                          f"mix_{opt.which_epoch}" + ("_ema" if opt.use_ema else ""))
    pictures = {name: read_rgb(p) for name, p in zip([s for s, _ in styles], opt.style_images or [])}
    path = write_mix_page(mix_dir, f"Style mixing: {opt.name}, checkpoint {opt.which_epoch}"
                          + (" (EMA generator)" if opt.use_ema else ""),
                          page_facts(opt, model.checkpoint_info, class_label, alphas, edit_rgb),
                          class_legend(opt.semantic_nc, names, dontcare=opt.contain_dontcare_label), classes,
                          sources, styles, alphas, grid, class_label, opt.semantic_nc, style_pictures=pictures,
                          edit_rgb=edit_rgb, width=opt.display_winsize)
    print(f"{len(sources)} source(s) x {len(styles)} style(s) x {len(alphas)} alpha(s); page: {path}")
    return path


def cli(argv=None):
    """Command-line entry: run :func:`main`; returns 0, or 2 after printing a clear error."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
