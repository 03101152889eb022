"""Extract SPSE style codes for a dataset (one ``<stem>.npy`` per image).

Usage::

    python save_style_vector.py --image_dir D --label_dir L --save_dir C --label_nc N \\
        [--size 512 --n_segments 128 --compactness 10 --workers K \\
         --num_shards S --shard_index i --overwrite --layout lean|release --no_crop \\
         --backend auto|numba|skimage]

Exit status: 0 when every file was written or skipped, 1 when any input
failed (each failure is printed with its file name and reason), 2 for bad
options, a missing/empty folder, an output folder that cannot be written or
parameters that differ from those recorded in ``--save_dir``. See docs/spse.md.
"""
import argparse
import sys

from spse.job import extract_dataset, format_summary
from spse.limits import SIZE_HELP, SIZE_RULE
from util.cli import HelpFormatter, run_cli
from util.flag_rules import POSITIVE, at_least, check_flags, set_rules


def build_parser():
    """The command-line parser (documented in docs/spse.md)."""
    p = argparse.ArgumentParser(description="Extract SuperStyleNet SPSE style codes (one .npy per image).",
                                formatter_class=HelpFormatter)
    p.add_argument("--image_dir", required=True, help="folder of RGB images")
    p.add_argument("--label_dir", required=True, help="folder of single-channel label maps (PNG), paired by stem")
    p.add_argument("--save_dir", required=True, help="output folder for <stem>.npy code files")
    p.add_argument("--label_nc", type=int, required=True, help="number of classes (255 = don't care, ignored)")
    p.add_argument("--size", type=int, default=512,
                   help=f"images and labels are resized to size x size ({SIZE_HELP})")
    p.add_argument("--n_segments", type=int, default=128, help="SLIC superpixels per class")
    p.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes; when left out, the number of usable CPUs; 1 = in this process")
    p.add_argument("--num_shards", type=int, default=1, help="split the dataset into this many shards")
    p.add_argument("--shard_index", type=int, default=0, help="which shard to process (0-based)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute files that already exist and are valid; needed to extract with parameters "
                        "other than those recorded in --save_dir (spse_params.json)")
    p.add_argument("--layout", default="lean", choices=["lean", "release"],
                   help="lean: (label_nc, 512) float32 (default); release: (label_nc, 1, 1, 1, 512) float64")
    p.add_argument("--no_crop", action="store_true",
                   help="run SLIC on the full image for every class instead of the class's bounding box "
                        "(slower; see docs/spse.md)")
    p.add_argument("--backend", default="auto", choices=["auto", "numba", "skimage"],
                   help="SLIC implementation: numba (compiled, several times faster), skimage "
                        "(skimage.segmentation.slic), auto = numba when it can be imported; both give "
                        "identical codes (see docs/spse.md)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    set_rules(p, label_nc=at_least(1), size=SIZE_RULE, n_segments=at_least(1), compactness=POSITIVE,
              workers=at_least(1, optional=True), num_shards=at_least(1), shard_index=at_least(0))
    return p


def extract(argv=None):
    """Parse ``argv``, run the extraction, print the summary; 1 when some pairs failed, else 0.

    Bad input raises a :data:`util.errors.USER_ERRORS` error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check_flags(parser, args)
    summary = extract_dataset(
        args.image_dir, args.label_dir, args.save_dir, args.label_nc, size=args.size,
        n_segments=args.n_segments, compactness=args.compactness, workers=args.workers,
        num_shards=args.num_shards, shard_index=args.shard_index, overwrite=args.overwrite,
        layout=args.layout, progress=not args.no_progress, crop=not args.no_crop, backend=args.backend)
    print(format_summary(summary, args.save_dir))
    return 1 if summary["failed"] else 0


def main(argv=None):
    """The command line: the exit status (0 ok, 1 some pairs failed, 2 bad input, printed as ``error: ...``)."""
    return run_cli(extract, argv, torch_threads=False)  # SPSE loads no torch


if __name__ == "__main__":
    sys.exit(main())
