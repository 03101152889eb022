"""Loader benchmark: training items per second per CPU core, this project's loader against the plain path.

Builds CelebAMask-HQ-shaped data in a temporary folder (``--n`` items: 1024²
JPEG photos of quality 95, 512² label PNGs of 19 classes, ``(19, 512)`` code
files) and a pre-resized copy (286² photos and labels, what
``datasets/prepare_celebamask_hq.py --size 286`` writes), then measures, in
this one process on one thread, the CPU time of building training batches at
crop 256 (``--load_size 286``, random crop and flip):

* ``baseline``: the plain path, written out here: the photo decoded at full
  size, resized (bicubic) to 286², cropped, flipped and converted to float32
  in [-1, 1] on the host; the label and codes through the project's own
  readers (the same in both);
* ``ours``: :class:`data.custom_dataset.CustomDataset` as the training loader
  of a GPU run uses it: the JPEG decoded at the DCT scale that still covers
  286² (``read_rgb_image_at_least``) and resampled only inside the crop
  window, uint8 batches (normalised on the device).

Each item goes through ``__getitem__`` and every ``--batch`` items through the
loader's ``collate``; a worker process does exactly this work, so
items per CPU-second is the rate of one busy worker core. The report gives
that rate, the ratio to the baseline, the worker cores one GPU needs at 130
images per second, the bytes per batch, the pixel difference of ``ours``
photos from the baseline's (the effect of the reduced decode) and the peak
RSS. ``--tiny`` is the smoke test (tests/test_bench_loader.py): 128² photos,
64² labels, crop 32.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_loader.py --n 24 --json loader.json
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from memory import peak_rss_mib  # noqa: E402

TARGET_IMG_PER_S = 130.0  # training images per second and GPU (the project's target at batch 32)
LABEL_NC = 19


def _smooth_field(rng, size, cells):
    """A ``(size, size)`` float field in [0, 1]: bicubically enlarged ``cells``² noise (face-like smoothness)."""
    small = (rng.random((cells, cells)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


def build_celeba_like(root, n, image_size=1024, label_size=512, label_nc=LABEL_NC, seed=0, quality=95, noise=0.02):
    """Write ``n`` CelebAMask-HQ-shaped items under ``root``; returns ``{"image_dir", "label_dir", "instance_dir"}``.

    Photos: ``image_size``² JPEGs (smooth colour regions with fine noise, so
    the files carry real entropy: the decoding time grows with the file size,
    ``noise`` sets it, about 370 KB at 1024² for the default); labels: ``label_size``² PNG class maps of
    ``label_nc`` classes in blobs; codes: ``(label_nc, 512)`` ``.npy`` files in [0, 1].
    """
    from data.codes import save_codes

    rng = np.random.default_rng(seed)
    dirs = {k: os.path.join(root, k) for k in ("images", "labels", "codes")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    for i in range(n):
        colour = np.stack([_smooth_field(rng, image_size, 12) for _ in range(3)], axis=-1)
        grain = rng.normal(0.0, noise, colour.shape).astype(np.float32)
        photo = (np.clip(colour + grain, 0, 1) * 255).astype(np.uint8)
        Image.fromarray(photo).save(os.path.join(dirs["images"], f"{i}.jpg"), quality=quality)
        field = _smooth_field(rng, label_size, 6)
        label = np.minimum((field * label_nc).astype(np.uint8), label_nc - 1)
        Image.fromarray(label).save(os.path.join(dirs["labels"], f"{i}.png"))
        save_codes(os.path.join(dirs["codes"], f"{i}.npy"), rng.random((label_nc, 512)).astype(np.float32))
    return {"image_dir": dirs["images"], "label_dir": dirs["labels"], "instance_dir": dirs["codes"]}


def pre_resize(dirs, root, size):
    """A copy of ``dirs`` with photos (bicubic, JPEG 95) and labels (nearest) at ``size``²; codes shared."""
    from data.image_io import read_label, resize_label

    out = {"image_dir": os.path.join(root, "images"), "label_dir": os.path.join(root, "labels"),
           "instance_dir": dirs["instance_dir"]}
    for d in (out["image_dir"], out["label_dir"]):
        os.makedirs(d, exist_ok=True)
    for name in sorted(os.listdir(dirs["image_dir"])):
        with Image.open(os.path.join(dirs["image_dir"], name)) as im:
            im.convert("RGB").resize((size, size), Image.BICUBIC).save(os.path.join(out["image_dir"], name),
                                                                       quality=95)
    for name in sorted(os.listdir(dirs["label_dir"])):
        label = resize_label(read_label(os.path.join(dirs["label_dir"], name)), (size, size))
        Image.fromarray(label).save(os.path.join(out["label_dir"], name))
    return out


def baseline_item(dataset, index):
    """The plain path for item ``index``, written out: every value of the label checked with ``np.unique``,
    the photo decoded at full size, bicubic resize, crop, flip, float32 in [-1, 1] on the host."""
    from data.image_io import DONTCARE_VALUE, read_label, resize_label
    from data.transforms import get_params

    opt = dataset.opt
    rng = np.random.default_rng([int(opt.seed) & 0xFFFFFFFF, dataset.epoch, index])
    label = read_label(dataset.label_paths[index])
    values = np.unique(label)
    if ((values >= opt.label_nc) & (values != DONTCARE_VALUE)).any():
        raise ValueError(f"{dataset.label_paths[index]}: label values out of range")
    params = get_params(opt, (label.shape[1], label.shape[0]), rng)
    x, y = params["crop_pos"]
    label = resize_label(label, params["scaled_size"])[y:y + opt.crop_size, x:x + opt.crop_size]
    if params["flip"]:
        label = label[:, ::-1]
    label = torch.from_numpy(label.astype(np.int64))[None]
    label[label == DONTCARE_VALUE] = opt.label_nc
    with Image.open(dataset.image_paths[index]) as im:
        pil = im.convert("RGB")
    pil = pil.resize(tuple(params["scaled_size"]), Image.BICUBIC)
    pil = pil.crop((x, y, x + opt.crop_size, y + opt.crop_size))
    if params["flip"]:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    image = torch.from_numpy(arr.transpose(2, 0, 1).copy()) * 2.0 - 1.0
    return {"label": label, "codes": dataset.load_codes(index), "path": dataset.image_paths[index], "image": image}


def _options(dirs, crop, load):
    from options import build_options

    return build_options(True, label_nc=LABEL_NC, crop_size=crop, load_size=load, gpu_ids="-1", nThreads=0,
                         label_dir=dirs["label_dir"], image_dir=dirs["image_dir"], instance_dir=dirs["instance_dir"])


def _pass_cpu_seconds(get_item, n, batch):
    """CPU seconds (this thread) per item of building ``n`` items and collating them by ``batch``, and the last batch."""
    from data.loader import collate

    start, last = time.thread_time(), None
    for first in range(0, n, batch):
        last = collate([get_item(i) for i in range(first, min(n, first + batch))])
    return (time.thread_time() - start) / n, last


def measure(dirs, crop, load, batch, repeats):
    """Both paths on ``dirs``: per-item CPU seconds, batch bytes and the photo difference in grey levels.

    The two paths alternate pass by pass and each keeps its fastest of ``repeats`` passes, so a
    change in the machine's speed during the run reaches both.
    """
    from data.custom_dataset import CustomDataset

    dataset = CustomDataset(_options(dirs, crop, load))
    dataset.set_epoch(1)
    n = len(dataset)
    ours = CustomDataset(_options(dirs, crop, load))
    ours.uint8_images = True
    ours.set_epoch(1)
    base_s = ours_s = float("inf")
    for _ in range(repeats):
        seconds, base_batch = _pass_cpu_seconds(lambda i: baseline_item(dataset, i), n, batch)
        base_s = min(base_s, seconds)
        seconds, ours_batch = _pass_cpu_seconds(ours.__getitem__, n, batch)
        ours_s = min(ours_s, seconds)
    from util.images import normalise_image

    assert torch.equal(ours_batch["label"], base_batch["label"])
    diff = (normalise_image(ours_batch["image"]).double() - base_batch["image"].double()).abs() * 127.5
    return {
        "items": n,
        "baseline_ms_per_item": base_s * 1e3, "ours_ms_per_item": ours_s * 1e3,
        "baseline_img_per_core_s": 1.0 / base_s, "ours_img_per_core_s": 1.0 / ours_s,
        "speedup": base_s / ours_s,
        "cores_for_target": {"baseline": TARGET_IMG_PER_S * base_s, "ours": TARGET_IMG_PER_S * ours_s},
        "image_bytes_per_batch": {"baseline": base_batch["image"].numel() * base_batch["image"].element_size(),
                                  "ours": ours_batch["image"].numel() * ours_batch["image"].element_size()},
        "photo_difference_levels": {"max": float(diff.max()), "mean": float(diff.mean())},
    }


def format_report(result):
    """The text report of :func:`main`'s result."""
    lines = [f"bench_loader: {result['machine']}, torch threads {result['threads']}, "
             f"crop {result['crop']}, load {result['load']}, batch {result['batch']}, {result['date']}",
             f"command: {result['command']}"]
    for kind in ("raw", "pre_resized"):
        r = result[kind]
        lines.append(
            f"{kind:>11} ({result['jpeg_kib'][kind]:.0f} KiB photos): baseline {r['baseline_ms_per_item']:.2f} ms/item = {r['baseline_img_per_core_s']:.1f} "
            f"img/s per core; ours {r['ours_ms_per_item']:.2f} ms/item = {r['ours_img_per_core_s']:.1f} img/s per "
            f"core ({r['speedup']:.2f}x); cores for {TARGET_IMG_PER_S:.0f} img/s: baseline "
            f"{r['cores_for_target']['baseline']:.2f}, ours {r['cores_for_target']['ours']:.2f}; photo difference "
            f"max {r['photo_difference_levels']['max']:.1f} / mean {r['photo_difference_levels']['mean']:.2f} "
            f"levels; batch photo bytes {r['image_bytes_per_batch']['baseline']} -> "
            f"{r['image_bytes_per_batch']['ours']}")
    lines.append(f"peak RSS {result['peak_rss_mib']:.0f} MiB (both paths, this process)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=24, help="items of each data set")
    p.add_argument("--batch", type=int, default=8, help="items per collated batch")
    p.add_argument("--repeats", type=int, default=5,
                   help="passes over the data by each path, alternating; the fastest of each counts")
    p.add_argument("--noise", type=float, default=0.02,
                   help="grain of the synthetic photos (sets the JPEG file size, hence the decoding time)")
    p.add_argument("--tiny", action="store_true", help="smoke test: 128² photos, 64² labels, crop 32")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    image_size, label_size, crop, load = (128, 64, 32, 36) if args.tiny else (1024, 512, 256, 286)
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
              "crop": crop, "load": load, "batch": args.batch,
              "command": "python benchmarks/bench_loader.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        raw = build_celeba_like(os.path.join(tmp, "raw"), args.n, image_size, label_size, noise=args.noise)
        small = pre_resize(raw, os.path.join(tmp, "small"), load)
        result["raw"] = measure(raw, crop, load, args.batch, args.repeats)
        result["pre_resized"] = measure(small, crop, load, args.batch, args.repeats)
        result["jpeg_kib"] = {kind: float(np.mean([os.path.getsize(os.path.join(d["image_dir"], f))
                                                    for f in os.listdir(d["image_dir"])])) / 1024
                              for kind, d in (("raw", raw), ("pre_resized", small))}
    result["peak_rss_mib"] = peak_rss_mib()
    result["report"] = format_report(result)
    print(result["report"])
    if args.json:
        from util.io import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
