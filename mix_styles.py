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
``_ema`` appended under ``--use_ema``), a grid
with one row per source: its label map, its reconstruction, then one cell per
(style, alpha), and with ``--edit_rgb dr,dg,db`` a column where the chosen
classes' codes are shifted in colour instead; the first row shows the style
images. ``mix.json`` lists every cell's image file.
"""
import json
import os
import sys

from data.image_io import check_aspect_ratio, read_label, read_rgb, stem
from datasets.class_names import find_class_names, parse_class_list, read_class_names
from editing.style_mixing import StyleMixer, mix_grid, shift_class_colour
from options.mix_options import MixOptions
from util.cli import run_cli
from util.errors import InputError, OptionError
from util.io import check_output_dir


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


def cell_name(source, style, alpha):
    """File name of one grid cell (relative to ``images/``)."""
    return f"mixed/{source}__{style}__a{alpha:g}.png"


def write_page(mix_dir, opt, sources, styles, classes, class_label, alphas, grid, edit_rgb=None):
    """Write ``index.html`` (dominate grid via util.html) and ``mix.json``; returns the page path.

    ``grid`` is :func:`editing.style_mixing.mix_grid`'s result, plus ``grid["edited"]``
    (``{source: image}``) when ``edit_rgb`` is given.
    """
    from dominate.tags import br, img, p, table, th, tr

    from util import html
    from util.io import write_text_atomic
    from util.images import tensor2label

    page = html.HTML(mix_dir, f"Style mixing: {opt.name} (epoch {opt.which_epoch}"
                              + (", EMA generator" if opt.use_ema else "") + f"), classes {class_label}")
    width = opt.display_winsize
    style_images = dict(zip([s for s, _ in styles], opt.style_images or []))
    manifest = {"classes": classes, "alphas": alphas, "edit_rgb": edit_rgb, "rows": []}

    def cell(src, caption):
        html.image_cell(src, caption, width)

    shown = {name: page.save_image(f"styles/{name}.png", read_rgb(path)) for name, path in style_images.items()}
    t = table(border=1, style="table-layout: fixed;")
    page.doc.add(t)
    with t:
        with tr():
            th("source label")
            th("reconstruction")
            for style_name, _ in styles:
                for alpha in alphas:
                    with th():
                        if style_name in shown:
                            img(style=f"width:{width}px", src=os.path.join("images", shown[style_name]))
                            br()
                        p(f"style {style_name}" + (f", alpha {alpha:g}" if alphas != [1.0] else ""))
            if edit_rgb is not None:
                th(f"colour edit {edit_rgb}")
        for src_name, label, _ in sources:
            row = {"source": src_name,
                   "label": page.save_image(f"labels/{src_name}.png", tensor2label(label, opt.semantic_nc)),
                   "reconstruction": page.save_image(f"reconstruction/{src_name}.png",
                                                     grid["reconstruction"][src_name]),
                   "cells": []}
            with tr():
                cell(row["label"], src_name)
                cell(row["reconstruction"], "own codes")
                for style_name, _ in styles:
                    for alpha in alphas:
                        name = page.save_image(cell_name(src_name, style_name, alpha),
                                               grid["mixed"][(src_name, style_name, alpha)])
                        row["cells"].append({"style": style_name, "alpha": alpha, "image": name})
                        cell(name, f"{class_label} from {style_name}" + (f", alpha {alpha:g}"
                                                                           if alphas != [1.0] else ""))
                if edit_rgb is not None:
                    row["edited"] = page.save_image(f"edited/{src_name}.png", grid["edited"][src_name])
                    cell(row["edited"], f"{class_label} shifted by {edit_rgb}")
            manifest["rows"].append(row)
    write_text_atomic(os.path.join(mix_dir, "mix.json"), json.dumps(manifest, indent=2) + "\n")
    return page.save()


def main(argv=None):
    """Run style mixing with command-line ``argv``; returns the path of the HTML page."""
    from models.inference import load_inference_model

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
    mixer = StyleMixer(load_inference_model(opt), opt, seed=opt.seed)

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
    path = write_page(mix_dir, opt, sources, styles, classes, class_label, alphas, grid, edit_rgb)
    print(f"{len(sources)} source(s) x {len(styles)} style(s) x {len(alphas)} alpha(s); page: {path}")
    return path


def cli(argv=None):
    """Command-line entry: run :func:`main`; returns 0, or 2 after printing a clear error."""
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
