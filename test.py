"""Synthesise test images and write an HTML page of label / synthesised / real images.

    python test.py --name celeba --load_size 256 --crop_size 256 --dataset_mode custom \
        --label_dir datasets/celeba/test/labels --image_dir datasets/celeba/test/images \
        --label_nc 19 --instance_dir datasets/celeba/test/codes --which_epoch 50 --gpu_ids 0

Architecture flags default to those saved in ``checkpoints/<name>/opt.json``
(flags on the command line win). Generator weights come from
``checkpoints/<name>/<which_epoch>_net_G.pth``, written by this project or by
the original release; with ``--use_ema`` from ``<which_epoch>_net_G_ema.pth``,
the averaged generator (the raw one stays the default: the paper's protocol).
Output: ``results/<name>/test_<which_epoch>/index.html`` (``test_<which_epoch>_ema``
with ``--use_ema``) and its ``images/`` folder (``input_label/``,
``synthesized_image/``, ``real_image/``, the folders ``evaluate.py`` reads).
The page (``util/pages.py``) names the model, the checkpoint and whether the
EMA generator was used, shows a class legend (names from the dataset's
``classes.txt``) and one row per image: label map | synthesised | real, with
the image's SSIM and PSNR (``evaluation/metrics.py``'s default conventions,
named on the page) and their means in the heading.

Without ``--image_dir`` only label maps and codes are needed: the page then
shows the label map and the synthesised image, without metrics.

The results folder is checked before any work; the page and its images are
written into a staging folder and moved into place when complete, so a
failed run (a full disk included) leaves the previous results as they were.
"""
import math
import os
import sys

import torch
from tqdm import tqdm

from data.loader import create_dataloader
from data.class_names import find_class_names, read_class_names
from evaluation import metrics
from models.inference import load_inference_model
from options.test_options import TestOptions
from util import pages
from util.cli import run_cli
from util.images import tensor2im, tensor2label
from util.io import check_output_dir, output_errors, staged_folder


def main(argv=None):
    """Run test synthesis with command-line ``argv``; returns the path of the HTML page."""
    options = TestOptions()
    opt = options.parse(argv)
    if options.loaded_opt_file:
        print(f"architecture options from {options.loaded_opt_file} (command-line flags win)")
    options.print_options(opt)
    suffix = "_ema" if opt.use_ema else ""
    web_dir = os.path.join(opt.results_dir, opt.name, f"{opt.phase}_{opt.which_epoch}{suffix}")
    check_output_dir(web_dir, "--results_dir", opt.results_dir)
    torch.manual_seed(opt.seed)
    loader = create_dataloader(opt)
    model = load_inference_model(opt)
    if not opt.image_dir:
        print("no --image_dir: synthesising from label maps and codes alone (no real images on the page)")

    with output_errors(web_dir, "the results there were left as they were"), staged_folder(web_dir) as stage:
        page = pages.TestPage(stage, f"{opt.name}: {opt.phase}, checkpoint {opt.which_epoch}"
                                     + (" (EMA generator)" if opt.use_ema else ""),
                              class_legend(opt, loader.dataset), width=opt.display_winsize)
        done, scores, size = synthesise(opt, loader, model, page)
        page.save(page_facts(opt, model.checkpoint_info, done, size, scores))
    path = os.path.join(web_dir, "index.html")
    print(f"{done} image(s) synthesised; results page: {path}")
    if scores:
        print(f"mean over {len(scores)} image(s): {pages.format_metrics(metrics.summarise(scores))} "
              f"({metrics.describe_settings(sizes=size)})")
    return path


def synthesise(opt, loader, model, page):
    """Synthesise ``--how_many`` images onto ``page``; returns ``(count, per-image metrics, (H, W))``."""
    how_many = len(loader.dataset) if opt.how_many == float("inf") else min(int(opt.how_many), len(loader.dataset))
    done, scores, size = 0, [], None
    for data in tqdm(loader, total=math.ceil(how_many / opt.batchSize), desc="test"):
        if done >= how_many:
            break
        generated = model(data, "inference")
        for b in range(min(generated.shape[0], how_many - done)):
            name = os.path.splitext(os.path.basename(data["path"][b]))[0]
            visuals = {"input_label": tensor2label(data["label"][b], opt.semantic_nc),
                       "synthesized_image": tensor2im(generated[b])}
            scored = None
            if "image" in data:  # photographs given: the page shows them and the metrics
                visuals["real_image"] = tensor2im(data["image"][b])
                scored = metrics.reconstruction_metrics(visuals["synthesized_image"], visuals["real_image"])
                scores.append(scored)
            size = visuals["synthesized_image"].shape[:2]
            page.add(name, visuals, scored)
            done += 1
    return done, scores, size


def class_legend(opt, dataset):
    """The page's class legend: names from the first ``classes.txt`` next to the label maps, else ``class j``."""
    names_path = find_class_names(dataset.label_paths[0]) if dataset.label_paths else None
    names = read_class_names(names_path) if names_path else None
    return pages.class_legend(opt.semantic_nc, names, dontcare=opt.contain_dontcare_label)


def page_facts(opt, info, count, size, scores):
    """The heading of the results page: model, checkpoint, generator, images and (with photos) metrics."""
    source = info.get("source")
    facts = [("model", opt.name),
             ("checkpoint", f"{opt.which_epoch}: {info['path']} ({info['format_name']})"),
             ("generator", "EMA (averaged weights, --use_ema)" if opt.use_ema else "raw (not averaged)")]
    if source:
        facts.append(("exported from", f"{source.get('file')} ({'EMA' if source.get('use_ema') else 'raw'})"))
    facts.append(("images", f"{count}" + (f", {size[1]}x{size[0]} (width x height)" if size else "")
                  + f", seed {opt.seed}"))
    if scores:
        facts.append(("mean", pages.format_metrics(metrics.summarise(scores))))
        facts.append(("metrics", metrics.describe_settings(sizes=size)))
    else:
        facts.append(("metrics", "none: no --image_dir, so no real images to compare with"))
    return facts


if __name__ == "__main__":
    sys.exit(run_cli(main))
