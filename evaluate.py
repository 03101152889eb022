"""Evaluate generated images against the ground truth: SSIM, PSNR, RMSE and (optionally) FID.

Usage::

    python evaluate.py --results_dir results/celeba/test_latest/images/synthesized_image \
        --gt_dir datasets/celebamask_hq/test/images --size 256 [--fid --inception_path PATH] \
        [--output metrics.json]

Files are paired by stem (``28000.png`` with ``28000.jpg``). Unpaired files are
an error unless ``--allow_unpaired``. A pair that cannot be read is reported and
skipped; the exit status is then 1. See docs/evaluation.md for the conventions.
"""
import argparse
import json
import os
import sys

from evaluation.metrics import DEFAULT_SSIM, FID_WEIGHTS_NAME, SSIM_VARIANTS
from evaluation.report import evaluate, format_table
from util.cli import HelpFormatter
from util.errors import USER_ERRORS
from util.io import write_text_atomic


def build_parser():
    """Command-line options of evaluate.py."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--results_dir", required=True, help="folder of generated images")
    p.add_argument("--gt_dir", required=True, help="folder of ground-truth images")
    p.add_argument("--size", type=int, default=None,
                   help="resize both images to SIZE x SIZE (bicubic) before the metrics; by default "
                        "the ground truth is resized to the result's size when they differ")
    p.add_argument("--gray_ssim", action="store_true", help="SSIM on luminance instead of RGB")
    p.add_argument("--ssim_variant", default=DEFAULT_SSIM, choices=tuple(SSIM_VARIANTS),
                   help="SSIM window: gaussian (sigma 1.5, population covariance; the release's and the paper's) "
                        "or uniform (scikit-image's default 7x7 window, sample covariance)")
    p.add_argument("--allow_unpaired", action="store_true",
                   help="evaluate the pairs found and only warn about files without a partner")
    p.add_argument("--fid", action="store_true", help="also compute FID (needs the Inception weights)")
    p.add_argument("--inception_path", default=None,
                   help=f"local path of {FID_WEIGHTS_NAME}; when left out, torch's hub cache")
    p.add_argument("--fid_gt_stats", default=None,
                   help="cache file (.npz) for the ground truth's Inception statistics: used when it lists the "
                        "same ground-truth stems, otherwise (re)computed and written")
    p.add_argument("--batch_size", type=int, default=16, help="FID batch size")
    p.add_argument("--device", default="cpu", help="device for the Inception network (cpu, cuda, cuda:1)")
    p.add_argument("--output", default=None, help="JSON output path; when left out, <results_dir>/metrics.json")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return p


def main(argv=None):
    """CLI entry point; returns the exit status (0 ok, 1 some pairs failed, 2 bad input)."""
    opt = build_parser().parse_args(argv)
    try:
        report = evaluate(opt.results_dir, opt.gt_dir, size=opt.size, gray_ssim=opt.gray_ssim,
                          ssim_variant=opt.ssim_variant,
                          allow_unpaired=opt.allow_unpaired, fid=opt.fid,
                          inception_path=opt.inception_path,
                          batch_size=opt.batch_size, device=opt.device, progress=not opt.no_progress,
                          fid_gt_stats=opt.fid_gt_stats)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = opt.output or os.path.join(opt.results_dir, "metrics.json")
    write_text_atomic(output, json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(format_table(report))
    print(f"wrote {output}")
    for msg in report["unpaired"]:
        print(f"warning: {msg}", file=sys.stderr)
    for msg in report["failures"]:
        print(f"failed: {msg}", file=sys.stderr)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
