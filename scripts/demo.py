"""End-to-end demo, no downloads: sample data -> SPSE codes -> training -> test synthesis -> HTML.

    python scripts/demo.py            # or: make demo

1. Builds ``datasets/demo/`` from photographs bundled with scikit-image; the
   label maps are colour clusters (see :mod:`scripts.demo_data`), not semantic
   annotations.
2. Extracts SPSE style codes (``spse.job.extract_dataset``, 512x512 as
   in the release).
3. Trains a small model (reduced ``ngf`` and crop size, ``--no_vgg_loss``
   because VGG19 weights cannot be downloaded here) on those images.
4. Runs ``test.py`` and prints the path of the HTML page.
5. Prints the held-in reconstruction error (L1 on [-1, 1] images, PSNR in dB
   on [0, 255]) of the untrained and the trained generator.

The numbers are for reconstruction of the training images from their own
label maps and codes: this is what SuperStyleNet trains for, and the demo
set is far too small to say anything about generalisation.
"""
import argparse
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def build_parser():
    """Demo settings (sizes chosen to finish in a few minutes on 2 CPU cores)."""
    from util.cli import HelpFormatter

    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--name", default="demo", help="experiment name (checkpoints/<name>, results/<name>)")
    p.add_argument("--data_root", default=os.path.join(ROOT, "datasets", "demo"), help="where the sample set is written")
    p.add_argument("--checkpoints_dir", default=os.path.join(ROOT, "checkpoints"), help="checkpoints folder")
    p.add_argument("--results_dir", default=os.path.join(ROOT, "results"), help="results folder")
    p.add_argument("--label_nc", type=int, default=6, help="number of colour-cluster classes")
    p.add_argument("--image_size", type=int, default=128, help="size of the stored sample images")
    p.add_argument("--crop_size", type=int, default=64, help="training/synthesis resolution")
    p.add_argument("--ngf", type=int, default=8, help="generator width")
    p.add_argument("--steps", type=int, default=300, help="training iterations")
    p.add_argument("--batchSize", type=int, default=4, help="training batch size")
    p.add_argument("--lr", type=float, default=0.001, help="learning rate")
    p.add_argument("--gpu_ids", default="-1", help="-1 for the CPU, 0 for the first GPU")
    p.add_argument("--seed", type=int, default=0, help="random seed (data, training)")
    return p


def parse_args(argv=None):
    """The demo's settings from ``argv`` (default ``sys.argv[1:]``)."""
    return build_parser().parse_args(argv)


def reconstruction_error(model, batch):
    """(L1 on [-1, 1], PSNR in dB on [0, 255]) of eval-mode synthesis against the real images."""
    import torch

    model.eval()
    with torch.no_grad():
        fake = model(batch, "inference").cpu()
    real = batch["image"]
    l1 = float((fake - real).abs().mean())
    mse = float((((fake.clamp(-1, 1) - real) * 127.5) ** 2).mean())
    return l1, 10 * math.log10(255.0 ** 2 / max(mse, 1e-12))


def main(argv=None):
    """Run the demo; returns a dict with the HTML path and the before/after errors."""
    args = parse_args(argv)
    import torch

    from util.threads import available_cores, cap_threads

    # the demo's tensors (ngf 8, crop 64) are small: half the cores per process, at least one (one on a 2-core
    # machine, where a second thread mostly waits for cores that other jobs hold); OMP_NUM_THREADS wins
    threads = cap_threads(limit=max(1, available_cores() // 2))
    print(f"torch threads: {threads} (set OMP_NUM_THREADS to choose)")

    import importlib.util

    import train
    from data.loader import create_dataloader
    from models import create_model
    from options import build_options
    from scripts.demo_data import build_sample_dataset
    from spse.job import extract_dataset

    spec = importlib.util.spec_from_file_location("ssn_test_script", os.path.join(ROOT, "test.py"))
    test_script = importlib.util.module_from_spec(spec)  # "test" would clash with the stdlib package
    spec.loader.exec_module(test_script)

    t0 = time.time()
    print(f"[1/5] sample dataset from scikit-image photos -> {args.data_root}")
    image_dir, label_dir = build_sample_dataset(args.data_root, size=args.image_size, label_nc=args.label_nc,
                                                seed=args.seed)
    code_dir = os.path.join(args.data_root, "codes")
    print(f"[2/5] SPSE style codes -> {code_dir}")
    summary = extract_dataset(image_dir, label_dir, code_dir, args.label_nc, workers=1, progress=True)
    if summary["failed"]:
        raise RuntimeError("code extraction failed:\n" + "\n".join(summary["failures"]))
    print(f"      written {summary['written']}, skipped {summary['skipped']} (already valid), "
          f"absent classes {summary['absent_classes']}")

    common = ["--name", args.name, "--checkpoints_dir", args.checkpoints_dir, "--gpu_ids", args.gpu_ids,
              "--label_dir", label_dir, "--image_dir", image_dir, "--instance_dir", code_dir,
              "--label_nc", str(args.label_nc), "--crop_size", str(args.crop_size)]
    n_images = len(os.listdir(image_dir))
    steps_per_epoch = max(1, n_images // args.batchSize)
    epochs = math.ceil(args.steps / steps_per_epoch)
    print(f"[3/5] training {args.steps} steps (ngf {args.ngf}, crop {args.crop_size}, batch {args.batchSize}, "
          f"no VGG loss)")
    train_argv = common + ["--load_size", str(args.crop_size), "--ngf", str(args.ngf), "--no_vgg_loss",
                           "--batchSize", str(args.batchSize), "--lr", str(args.lr), "--niter", str(epochs),
                           "--niter_decay", "0", "--max_steps", str(args.steps), "--print_freq", "50",
                           "--display_freq", "100", "--save_latest_freq", "100", "--seed", str(args.seed),
                           # one epoch snapshot (the last epoch) besides 'latest', and no EMA generator
                           # (the demo shows the raw one): 0.83 GB of checkpoints instead of 1.3 GB
                           "--save_epoch_freq", str(epochs), "--ema_decay", "0"]
    trainer = train.main(train_argv)

    print("[4/5] test synthesis")
    page = test_script.main(common + ["--results_dir", args.results_dir, "--which_epoch", "latest"])

    print("[5/5] held-in reconstruction error (eval mode, all demo images)")
    opt = build_options(False, common + ["--batchSize", str(n_images)])
    batch = next(iter(create_dataloader(opt)))
    torch.manual_seed(args.seed)
    untrained = create_model(trainer.opt).to(trainer.opt.device)
    before = reconstruction_error(untrained, batch)
    after = reconstruction_error(trainer.model, batch)
    print(f"      untrained: L1 {before[0]:.3f}, PSNR {before[1]:.2f} dB")
    print(f"      trained:   L1 {after[0]:.3f}, PSNR {after[1]:.2f} dB  ({args.steps} steps)")
    print(f"done in {time.time() - t0:.0f} s. Results page:\n{os.path.abspath(page)}")
    return {"page": page, "before": before, "after": after}


if __name__ == "__main__":
    main()
