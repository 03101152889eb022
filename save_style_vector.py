"""Extract SPSE style codes for a dataset (one ``<stem>.npy`` per image).

Usage::

    python save_style_vector.py --image_dir D --label_dir L --save_dir C --label_nc N \\
        [--size 512 --n_segments 128 --compactness 10 --workers K \\
         --num_shards S --shard_index i --overwrite --layout lean|release --no_crop \\
         --backend auto|numba|skimage]

Exit status: 0 when every file was written or skipped, 1 when any input
failed (each failure is printed with its file name and reason), 2 for bad
options or a missing/empty folder. See docs/spse.md.
"""
import argparse
import sys

from util.cli import HelpFormatter
from util.errors import InputError, OptionError


def build_parser():
    """The command-line parser (documented in docs/spse.md)."""
    p = argparse.ArgumentParser(description="Extract SuperStyleNet SPSE style codes (one .npy per image).",
                                formatter_class=HelpFormatter)
    p.add_argument("--image_dir", required=True, help="folder of RGB images")
    p.add_argument("--label_dir", required=True, help="folder of single-channel label maps (PNG), paired by stem")
    p.add_argument("--save_dir", required=True, help="output folder for <stem>.npy code files")
    p.add_argument("--label_nc", type=int, required=True, help="number of classes (255 = don't care, ignored)")
    p.add_argument("--size", type=int, default=512, help="images and labels are resized to size x size")
    p.add_argument("--n_segments", type=int, default=128, help="SLIC superpixels per class")
    p.add_argument("--compactness", type=float, default=10.0, help="SLIC compactness")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes; when left out, the number of usable CPUs; 1 = in this process")
    p.add_argument("--num_shards", type=int, default=1, help="split the dataset into this many shards")
    p.add_argument("--shard_index", type=int, default=0, help="which shard to process (0-based)")
    p.add_argument("--overwrite", action="store_true", help="recompute files that already exist and are valid")
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
    return p


def main(argv=None):
    """Parse ``argv``, run the extraction, print the summary; return the exit status."""
    args = build_parser().parse_args(argv)
    from spse.job import extract_dataset, format_summary

    try:
        summary = extract_dataset(
            args.image_dir, args.label_dir, args.save_dir, args.label_nc, size=args.size,
            n_segments=args.n_segments, compactness=args.compactness, workers=args.workers,
            num_shards=args.num_shards, shard_index=args.shard_index, overwrite=args.overwrite,
            layout=args.layout, progress=not args.no_progress, crop=not args.no_crop, backend=args.backend)
    except (OptionError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary, args.save_dir))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
