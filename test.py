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
with ``--use_ema``) and its ``images/`` folder.

Without ``--image_dir`` only label maps and codes are needed: the page then
shows the label map and the synthesised image (``evaluate.py`` needs the
ground truth, so it applies only when photographs exist).

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
from models.inference import load_inference_model
from options.test_options import TestOptions
from util import html
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
        done = write_results(stage, opt, loader, model)
    path = os.path.join(web_dir, "index.html")
    print(f"{done} image(s) synthesised; results page: {path}")
    return path


def write_results(web_dir, opt, loader, model):
    """Synthesise ``--how_many`` images of ``loader`` and write the page into ``web_dir``; returns the count."""
    page = html.HTML(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.which_epoch}"
                              + (" (EMA generator)" if opt.use_ema else ""))
    how_many = len(loader.dataset) if opt.how_many == float("inf") else min(int(opt.how_many), len(loader.dataset))
    total_batches = math.ceil(how_many / opt.batchSize)
    done = 0
    for data in tqdm(loader, total=total_batches, desc="test"):
        if done >= how_many:
            break
        generated = model(data, "inference")
        for b in range(generated.shape[0]):
            if done >= how_many:
                break
            name = os.path.splitext(os.path.basename(data["path"][b]))[0]
            visuals = {
                "input_label": tensor2label(data["label"][b], opt.semantic_nc),
                "synthesized_image": tensor2im(generated[b]),
            }
            if "image" in data:
                visuals["real_image"] = tensor2im(data["image"][b])
            page.add_header(name)
            names = []
            for kind, im in visuals.items():
                names.append(page.save_image(os.path.join(kind, f"{name}.png"), im))
            page.add_images(names, list(visuals), names, width=opt.display_winsize)
            done += 1
    page.save()
    return done


if __name__ == "__main__":
    sys.exit(run_cli(main))
