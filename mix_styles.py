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

from tqdm import tqdm

from data.class_names import find_class_names, parse_class_list, read_class_names
from data.image_io import check_aspect_ratio, read_label, read_rgb, stem
from editing.style_mixing import StyleMixer, mix_grid, shift_class_colour
from models.inference import load_inference_model
from options.mix_options import MixOptions
from util.cli import run_cli
from util.errors import InputError, OptionError
from util.io import check_output_dir
from util.pages import class_legend, write_mix_page


def load_styles(opt, mixer, progress=True):
    """``[(name, raw codes (label_nc, 512))]`` of the style sources (files or SPSE extraction)."""
    if not opt.style_codes and not opt.style_labels:
        return []
    if opt.style_codes:
        return [(stem(p), mixer.load_codes(p)) for p in opt.style_codes]

    # here, not at the top: SPSE loads numba (about 1 s), needed with --style_images only
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
    options = MixOptions()
    opt = options.parse(argv)  # validates the flags and the pairing of the file lists
    progress = not opt.no_progress
    alphas, edit_rgb = opt.alphas, opt.rgb_offset
    mix_dir = opt.mix_dir or os.path.join(opt.results_dir, opt.name,
                                          f"mix_{opt.which_epoch}" + ("_ema" if opt.use_ema else ""))
    check_output_dir(mix_dir, "--mix_dir" if opt.mix_dir else "--results_dir", opt.mix_dir or opt.results_dir)
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
    pictures = {name: read_rgb(p) for name, p in zip([s for s, _ in styles], opt.style_images or [])}
    path = write_mix_page(mix_dir, f"Style mixing: {opt.name}, checkpoint {opt.which_epoch}"
                          + (" (EMA generator)" if opt.use_ema else ""),
                          page_facts(opt, model.checkpoint_info, class_label, alphas, edit_rgb),
                          class_legend(opt.semantic_nc, names, dontcare=opt.contain_dontcare_label), classes,
                          sources, styles, alphas, grid, class_label, opt.semantic_nc, style_pictures=pictures,
                          edit_rgb=edit_rgb, width=opt.display_winsize)
    print(f"{len(sources)} source(s) x {len(styles)} style(s) x {len(alphas)} alpha(s); page: {path}")
    return path


if __name__ == "__main__":
    sys.exit(run_cli(main))
