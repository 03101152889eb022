"""Benchmark SPSE extraction against the straightforward implementation (docs/spse.md, "Benchmark").

Images: colour photographs bundled with scikit-image (no download), with
deterministic label maps of 10-19 classes computed from each photo (C =
10 + (image index * 3) % 10 classes): ``regions`` (SLIC into ~60 regions,
n_segments=60, compactness=30, grouped into C classes by ``kmeans2`` of
their mean colours, seed 0, ``minit='++'``), ``parts`` (SLIC into ~C
segments, compactness 20, one class each), ``face`` (a fixed face-parsing
layout of ellipses in the 19-class CelebAMask-HQ order) and ``quantised``
(per-pixel colour quantisation into C classes).

Baseline, in this process on the same arrays: per class, ``slic`` on the full
image with the class mask, a Python loop over superpixels with boolean masks,
``InterpolatedUnivariateSpline`` (k=3) with our resampling rule. Timed
against it: ``extract_style_codes`` with the scikit-image and the numba
backend, and the whole job ``extract_dataset`` (PNG reading, .npy writing;
numba) with ``--workers`` 1 and 2, ``--repeats`` times (median); wall and CPU
time. Asserted for every image: numba codes == scikit-image codes bit for
bit, and the numba pipeline without the crop equals the baseline (< 1e-5).

Usage: ``python benchmarks/bench_spse.py [--quick] [--labels KIND ...] [--workers N ...] [--size 512]``
(default: all four label kinds, workers 1 and 2).
"""
import argparse
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from scipy.cluster.vq import kmeans2  # noqa: E402
from scipy.interpolate import InterpolatedUnivariateSpline  # noqa: E402
from skimage import data as skdata  # noqa: E402
from skimage.segmentation import slic  # noqa: E402

from data.image_io import resize_label  # noqa: E402
from spse import masked_slic  # noqa: E402
from spse.extractor import (CHANNEL_DIM, STYLE_DIM, extract_style_codes, extract_style_codes_and_presence,  # noqa: E402
                            resize_image)
from spse.job import extract_dataset  # noqa: E402
from util.io import save_image_atomic  # noqa: E402

LABEL_KINDS = ("regions", "parts", "face", "quantised")
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina",
          "immunohistochemistry"]


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------
def load_photo(name):
    """A bundled scikit-image photo as ``(H, W, 3)`` uint8."""
    img = getattr(skdata, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def make_label(image, n_classes, kind):
    """Deterministic ``(H, W)`` uint8 label map with ``n_classes`` classes (see module doc)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        return _make_label(image, n_classes, kind)


# (class, (centre y, centre x, radius y, radius x)) on a 512x512 canvas, drawn in
# this order (later parts overwrite earlier ones).
FACE_PARTS = [
    (18, (470, 256, 90, 230)),   # cloth
    (17, (400, 256, 80, 70)),    # neck
    (16, (430, 256, 10, 60)),    # neck_l (necklace)
    (13, (200, 256, 190, 170)),  # hair
    (1, (250, 256, 150, 115)),   # skin
    (8, (260, 140, 35, 18)),     # l_ear
    (9, (260, 372, 35, 18)),     # r_ear
    (15, (295, 140, 6, 6)),      # ear_r (earring)
    (6, (195, 205, 8, 30)),      # l_brow
    (7, (195, 307, 8, 30)),      # r_brow
    (4, (225, 205, 10, 22)),     # l_eye
    (5, (225, 307, 10, 22)),     # r_eye
    (2, (275, 256, 35, 20)),     # nose
    (10, (335, 256, 14, 40)),    # mouth
    (11, (325, 256, 7, 40)),     # u_lip
    (12, (347, 256, 8, 38)),     # l_lip
    (14, (70, 256, 50, 150)),    # hat
]


def face_layout(h, w):
    """The ``face`` label map: FACE_PARTS scaled to ``(h, w)``, background 0, uint8."""
    y, x = np.mgrid[0:h, 0:w]
    label = np.zeros((h, w), dtype=np.uint8)
    for cls, (cy, cx, ry, rx) in FACE_PARTS:
        inside = ((y - cy * h / 512) / (ry * h / 512)) ** 2 + ((x - cx * w / 512) / (rx * w / 512)) ** 2 <= 1
        label[inside] = cls
    return label


def _make_label(image, n_classes, kind):
    rgb = image.astype(np.float64) / 255.0
    if kind == "regions":
        regions = slic(rgb, n_segments=60, compactness=30, start_label=0, channel_axis=-1)
        n = regions.max() + 1
        counts = np.bincount(regions.ravel(), minlength=n)
        means = np.stack([np.bincount(regions.ravel(), weights=rgb[..., c].ravel(), minlength=n)
                          for c in range(3)], axis=1) / np.maximum(counts, 1)[:, None]
        _, assign = kmeans2(means, n_classes, seed=0, minit="++")
        label = assign[regions]
    elif kind == "parts":
        label = slic(rgb, n_segments=n_classes, compactness=20, start_label=0, channel_axis=-1)
    elif kind == "face":
        label = face_layout(*image.shape[:2])
    elif kind == "quantised":
        pixels = rgb.reshape(-1, 3)
        sample = pixels[:: max(1, pixels.shape[0] // 20000)]
        centres, _ = kmeans2(sample, n_classes, seed=0, minit="++")
        label = np.concatenate([((block[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
                                for block in np.array_split(pixels, max(1, pixels.shape[0] // 65536))])
        label = label.reshape(image.shape[:2])
    else:
        raise ValueError(f"unknown label kind {kind!r}")
    return label.astype(np.uint8)


# ----------------------------------------------------------------------------
# Baseline
# ----------------------------------------------------------------------------
def _baseline_resample(y, n):
    y = np.asarray(y, dtype=np.float64)
    k = len(y)
    x = np.linspace(0, n - 1, k)
    t = np.arange(n)
    if k >= 4:
        return InterpolatedUnivariateSpline(x, y, k=3)(t)
    if k >= 2:
        return np.interp(t, x, y)
    return np.full(n, y[0])


def baseline_codes(image, label, label_nc, size=512, n_segments=128, compactness=10, clock=None):
    """The straightforward extractor (full-image SLIC per class, boolean-mask loop, scipy splines).

    ``clock``: optional dict; CPU seconds spent in ``slic`` / ``means`` / ``splines`` are added to it.
    """
    clock = {} if clock is None else clock
    rgb = resize_image(image, size)
    lab = resize_label(label, (size, size)).astype(np.int32)
    codes = np.zeros((label_nc, STYLE_DIM), dtype=np.float32)
    for j in range(label_nc):
        mask = lab == j
        if not mask.any():
            continue
        c0 = time.process_time()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="One of the clusters is empty")
            seg = slic(rgb, n_segments=n_segments, compactness=compactness, mask=mask,
                       enforce_connectivity=False, start_label=1, channel_axis=-1)
        c1 = time.process_time()
        r, g, b = [], [], []
        for k in np.unique(seg[mask]):
            m = (seg == k) & mask
            r.append(rgb[..., 0][m].mean())
            g.append(rgb[..., 1][m].mean())
            b.append(rgb[..., 2][m].mean())
        c2 = time.process_time()
        kk = len(r)
        if kk == 1 or 3 <= kk < CHANNEL_DIM:
            r, g, b = (_baseline_resample(v, CHANNEL_DIM) for v in (r, g, b))
        flat = np.concatenate([r, g, b])
        if len(flat) != STYLE_DIM:
            flat = _baseline_resample(flat, STYLE_DIM)
        codes[j] = flat
        c3 = time.process_time()
        for key, dt in (("slic", c1 - c0), ("means", c2 - c1), ("splines", c3 - c2)):
            clock[key] = clock.get(key, 0.0) + dt
    return codes


# ----------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------
def _peak_traced(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_kind(kind, names, images, size, workers_list, repeats=3, label_nc=19):
    """Time baseline, both backends and the job on one label kind; return a dict of per-image seconds.

    The baseline and the two in-process extractors run once per image; the
    whole job (cheap) runs ``repeats`` times per pool size and its median is
    reported.
    """
    n_classes = [10 + (i * 3) % 10 for i in range(len(names))]
    labels = [make_label(im, c, kind) for im, c in zip(images, n_classes)]
    print(f"\n## labels={kind}: {len(images)} images, classes {n_classes}, size {size}")
    t_base = t_sk = t_nb = c_base = c_sk = c_nb = 0.0
    max_same, classes = 0.0, 0
    clock = {}
    for name, im, lb in zip(names, images, labels):
        t0, c0 = time.perf_counter(), time.process_time()
        ref = baseline_codes(im, lb, label_nc, size=size, clock=clock)
        t1, c1 = time.perf_counter(), time.process_time()
        sk = extract_style_codes(im, lb, label_nc, size=size, backend="skimage")
        t2, c2 = time.perf_counter(), time.process_time()
        nb = extract_style_codes(im, lb, label_nc, size=size, backend="numba")
        t3, c3 = time.perf_counter(), time.process_time()
        t_base += t1 - t0
        t_sk += t2 - t1
        t_nb += t3 - t2
        c_base += c1 - c0
        c_sk += c2 - c1
        c_nb += c3 - c2
        # Untimed checks: the backends agree exactly; without the crop ours is the baseline's algorithm.
        assert np.array_equal(nb, sk), f"{name}: numba and scikit-image codes differ"
        full, present = extract_style_codes_and_presence(im, lb, label_nc, size=size, crop=False, backend="numba")
        same = float(np.abs(ref - full).max())
        assert same < 1e-5, f"{name}: ours without crop differs from the baseline by {same}"
        max_same = max(max_same, same)
        classes += int(present.sum())
        print(f"  {name:18s} baseline {t1 - t0:6.2f} s  skimage {t2 - t1:6.2f} s  numba {t3 - t2:6.3f} s  "
              f"(codes identical; no-crop vs baseline {same:.1e})")
    n = len(images)
    peak_base = _peak_traced(lambda: baseline_codes(images[0], labels[0], label_nc, size=size))
    peak_nb = _peak_traced(lambda: extract_style_codes(images[0], labels[0], label_nc, size=size, backend="numba"))

    job, job_cpu = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, im, lb in zip(names, images, labels):
            save_image_atomic(os.path.join(tmp, "img", name + ".png"), im)
            save_image_atomic(os.path.join(tmp, "lbl", name + ".png"), lb)
        for workers in workers_list:
            walls, cpus = [], []
            for rep in range(repeats):  # the job is cheap: median of a few runs against machine noise
                out = os.path.join(tmp, f"codes{workers}_{rep}")
                r0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                summary = extract_dataset(os.path.join(tmp, "img"), os.path.join(tmp, "lbl"), out, label_nc,
                                          size=size, workers=workers, progress=False, backend="numba")
                walls.append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                cpus.append(sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1)))
                assert summary["written"] == n and summary["failed"] == 0, summary
            job[workers] = float(np.median(walls))
            job_cpu[workers] = float(np.median(cpus))

    print()
    print("| measurement | wall s / image | CPU s / image | speed-up (wall) | speed-up (CPU) |")
    print("|---|---|---|---|---|")
    print(f"| baseline (full-image SLIC, mask loop, scipy splines) | {t_base / n:.3f} | {c_base / n:.3f} "
          f"| 1.0x | 1.0x |")
    print(f"| extract_style_codes, scikit-image backend | {t_sk / n:.3f} | {c_sk / n:.3f} | "
          f"{t_base / t_sk:.1f}x | {c_base / c_sk:.1f}x |")
    print(f"| extract_style_codes, numba backend | {t_nb / n:.3f} | {c_nb / n:.3f} | "
          f"{t_base / t_nb:.1f}x | {c_base / c_nb:.1f}x |")
    for w in workers_list:
        print(f"| extract_dataset --workers {w}, numba (PNG read + .npy write; median of {repeats}) | "
              f"{job[w] / n:.3f} | {job_cpu[w] / n:.3f} | {t_base / job[w]:.1f}x | {c_base / job_cpu[w]:.1f}x |")
    print(f"baseline CPU s / image by stage: " + ", ".join(f"{k} {v / n:.3f}" for k, v in clock.items()))
    print(f"{classes} classes: numba codes == scikit-image codes (bit for bit); no-crop vs baseline max |diff| "
          f"{max_same:.1e}")
    print(f"peak traced memory per image (tracemalloc, numpy allocations): baseline {peak_base / 2**20:.1f} MiB, "
          f"numba backend {peak_nb / 2**20:.1f} MiB (plus the compiled kernels' own arrays, about 60 bytes "
          f"per pixel of the largest class)")
    return {"baseline": t_base / n, "skimage": t_sk / n, "numba": t_nb / n,
            **{f"job{w}": job[w] / n for w in workers_list},
            "baseline_cpu": c_base / n, "skimage_cpu": c_sk / n, "numba_cpu": c_nb / n,
            **{f"job{w}_cpu": job_cpu[w] / n for w in workers_list}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 images instead of 8")
    parser.add_argument("--labels", nargs="+", default=list(LABEL_KINDS), choices=LABEL_KINDS,
                        help="label kinds to run, in one run (default: all)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="job pool sizes to time")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the whole job per pool size (median)")
    parser.add_argument("--dataset_images", type=int, default=30000,
                        help="images in the dataset whose extraction time is projected (CelebAMask-HQ: 30000)")
    args = parser.parse_args(argv)
    if not masked_slic.AVAILABLE:
        print(f"numba is not available ({masked_slic.IMPORT_ERROR}); this benchmark measures the numba backend")
        return 1

    names = PHOTOS[:2] if args.quick else PHOTOS
    images = [load_photo(n) for n in names]
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}, numba {masked_slic.numba.__version__}; "
          f"load average at start {load0[0]:.1f} / {load0[1]:.1f} / {load0[2]:.1f} (1 / 5 / 15 min)")
    t0 = time.perf_counter()
    masked_slic.warm_up()
    print(f"numba kernels ready in {time.perf_counter() - t0:.2f} s (compiled, or loaded from the cache in "
          f"{masked_slic.cache_dir()})")

    results = {kind: bench_kind(kind, names, images, args.size, args.workers, args.repeats) for kind in args.labels}

    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print("\n## Summary\nWall seconds per image (speed-up over the baseline of the same kind, same run)")
    cols = ["baseline", "skimage", "numba"] + [f"job{w}" for w in args.workers]
    heads = ["baseline", "scikit-image backend", "numba backend"] + [f"job --workers {w}" for w in args.workers]
    print("| labels | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for kind, r in results.items():
        cells = [f"{r['baseline']:.3f}"] + [f"{r[c]:.3f} ({r['baseline'] / r[c]:.1f}x)" for c in cols[1:]]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("\nCPU seconds per image, this process and its workers (speed-up over the baseline's CPU time)")
    print("| labels | " + " | ".join(heads) + " |")
    print("|---" * (len(heads) + 1) + "|")
    for kind, r in results.items():
        base = r["baseline_cpu"]
        cells = [f"{base:.3f}"] + [f"{r[c + '_cpu']:.3f} ({base / r[c + '_cpu']:.1f}x)" for c in cols[1:]]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    for kind, r in results.items():
        w_max = max(args.workers)
        print(f"projected for {args.dataset_images} images like '{kind}': " + ", ".join(
            f"{r[f'job{w}'] * args.dataset_images / 3600:.1f} h with --workers {w}" for w in args.workers)
            + f" (baseline, one process: {r['baseline'] * args.dataset_images / 3600:.1f} h); "
            f"CPU time {r[f'job{w_max}_cpu']:.3f} s / image = "
            f"{r[f'job{w_max}_cpu'] * args.dataset_images / 3600:.1f} core-hours")
    print(f"peak RSS: this process {rss_self:.0f} MiB, largest worker {rss_children:.0f} MiB")
    print(f"load average at the end {load1[0]:.1f} / {load1[1]:.1f} / {load1[2]:.1f} (other work on the machine "
          f"inflates wall times; the speed-ups compare runs made in the same minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
