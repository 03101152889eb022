"""Evaluate generated images against the ground truth: SSIM, PSNR, RMSE and (optionally) FID.

Usage::

    python evaluate.py --results_dir results/celeba/test_latest/images/synthesized_image \
        --gt_dir datasets/celebamask_hq/test/images --size 256 [--fid --inception_path PATH] \
        [--output metrics.json]

Files are paired by stem (``28000.png`` with ``28000.jpg``). Unpaired files are
an error unless ``--allow_unpaired``. A pair that cannot be read is reported and
skipped; the exit status is then 1. The options and the output paths
(``--output``, ``--fid_gt_stats``) are checked before any work. See
docs/evaluation.md for the conventions.
"""
import argparse
import json
import os
import sys

from evaluation.metrics import DEFAULT_SSIM, EVAL_SIZE_HELP, EVAL_SIZE_RULE, FID_WEIGHTS_NAME, SSIM_VARIANTS
from evaluation.report import BATCH_SIZE_RULE, evaluate, format_table
from util.cli import HelpFormatter, run_cli
from util.errors import OutputError
from util.flag_rules import check_flags, set_rules
from util.io import check_output_file, write_text_atomic


def build_parser():
    """Command-line options of evaluate.py."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--results_dir", required=True, help="folder of generated images")
    p.add_argument("--gt_dir", required=True, help="folder of ground-truth images")
    p.add_argument("--size", type=int, default=None,
                   help="resize both images to SIZE x SIZE (bicubic) before the metrics; by default "
                        f"the ground truth is resized to the result's size when they differ ({EVAL_SIZE_HELP})")
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
    set_rules(p, size=EVAL_SIZE_RULE, batch_size=BATCH_SIZE_RULE)
    return p


def score(argv=None):
    """Parse ``argv``, score the folders, print and write the report; 1 when some pairs failed, else 0.

    Bad input raises a :data:`util.errors.USER_ERRORS` error.
    """
    parser = build_parser()
    opt = parser.parse_args(argv)
    output = opt.output or os.path.join(opt.results_dir, "metrics.json")
    check_flags(parser, opt)
    check_output_file(output, "--output")  # before the work, not after it
    if opt.fid and opt.fid_gt_stats:
        check_fid_stats_path(opt.fid_gt_stats)
    report = evaluate(opt.results_dir, opt.gt_dir, size=opt.size, gray_ssim=opt.gray_ssim,
                      ssim_variant=opt.ssim_variant, allow_unpaired=opt.allow_unpaired, fid=opt.fid,
                      inception_path=opt.inception_path, batch_size=opt.batch_size, device=opt.device,
                      progress=not opt.no_progress, fid_gt_stats=opt.fid_gt_stats)
    print(format_table(report))
    try:
        write_text_atomic(output, json.dumps(report, indent=2, allow_nan=False) + "\n")
    except OSError as e:  # checked before the work; the folder changed since (full disk, permissions)
        raise OutputError(f"--output {output}: the report could not be written ({e}); the table above holds "
                          "the means") from e
    print(f"wrote {output}")
    for msg in report["warnings"]:
        print(f"warning: {msg}", file=sys.stderr)
    for msg in report["unpaired"]:
        print(f"warning: {msg}", file=sys.stderr)
    for msg in report["failures"]:
        print(f"failed: {msg}", file=sys.stderr)
    return 1 if report["failures"] else 0


def main(argv=None):
    """The command line: the exit status (0 ok, 1 some pairs failed, 2 bad input, printed as ``error: ...``)."""
    return run_cli(score, argv)


def check_fid_stats_path(path):
    """``--fid_gt_stats``: a file path (existing or not) in a folder that can hold it; raises :class:`OutputError`.

    An existing cache is read and may be rewritten, so its folder must be writable only when there is no
    file yet; a cache that cannot be rewritten later is reported as a warning and the FID kept.
    """
    if os.path.isdir(path):
        raise OutputError(f"--fid_gt_stats {path}: this is a folder; give the path of a .npz file (it is "
                          f"written when missing or out of date)")
    if not os.path.exists(path):
        check_output_file(path, "--fid_gt_stats")


if __name__ == "__main__":
    sys.exit(main())
