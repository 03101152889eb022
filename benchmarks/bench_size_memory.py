"""Peak memory of SPSE extraction (``--size``) and of the reconstruction metrics (``evaluate.py --size``).

Each measurement runs in a fresh process: the peak resident set size after
the work minus the resident set size once the modules are imported and the
inputs are in memory, divided by ``size**2``, gives the bytes per pixel that
the bounds of ``spse/limits.py`` and ``evaluation/metrics.py`` quote
(``SPSE_BYTES_PER_PIXEL``, ``EVAL_BYTES_PER_PIXEL``).

SPSE worst case: one class covers the whole image (its bounding box is the
whole array), a second class a corner. Metrics: a random photo pair resized
to ``size`` (both resized, as with ``--size``), uniform and Gaussian SSIM.

    python benchmarks/bench_size_memory.py [--sizes 512 1024 2048]
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHILD = r"""
import json, sys
sys.path.insert(0, {root!r})
import numpy as np
from benchmarks.memory import peak_rss_mib, rss_mib
kind, size, extra = {kind!r}, {size}, {extra!r}
rng = np.random.default_rng(0)
if kind == "spse":
    from spse.extractor import extract_style_codes
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    label = np.zeros((size, size), np.uint8)
    label[: size // 8, : size // 8] = 1
    extract_style_codes(image[:64, :64], label[:64, :64], 2, size=64, backend=extra)  # compile / warm up
    base = rss_mib()
    extract_style_codes(image, label, 2, size=size, backend=extra)
else:
    from evaluation.metrics import reconstruction_metrics
    from data.image_io import resize_rgb
    a = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    reconstruction_metrics(a[:32, :32], a[:32, :32], ssim_variant=extra)  # warm up
    base = rss_mib()
    x, y = resize_rgb(a, (size, size)), resize_rgb(a[::-1], (size, size))
    reconstruction_metrics(x, y, ssim_variant=extra)
print(json.dumps({{"base_mib": base, "peak_mib": peak_rss_mib()}}))
"""


def measure(kind, size, extra):
    """Peak RSS growth (MiB) and bytes per pixel of one run in a fresh process."""
    code = CHILD.format(root=ROOT, kind=kind, size=int(size), extra=extra)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    grown = max(0.0, r["peak_mib"] - r["base_mib"])
    return grown, grown * 2 ** 20 / size ** 2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    args = p.parse_args(argv)
    from spse.masked_slic import AVAILABLE

    cases = [("spse", "skimage")] + ([("spse", "numba")] if AVAILABLE else []) + [("metrics", "uniform"),
                                                                                   ("metrics", "gaussian")]
    worst = {}
    for kind, extra in cases:
        for size in args.sizes:
            grown, per_pixel = measure(kind, size, extra)
            worst[kind] = max(worst.get(kind, 0.0), per_pixel)
            print(f"{kind:8s} {extra:9s} size {size:5d}: peak +{grown:8.1f} MiB = {per_pixel:6.1f} bytes/pixel")
    for kind, value in worst.items():
        print(f"worst {kind}: {value:.1f} bytes/pixel")


if __name__ == "__main__":
    main()
