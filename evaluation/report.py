"""Scoring two folders of images: per-image SSIM, PSNR, RMSE, their means and FID (``evaluate.py``).

Files are paired by stem (``28000.png`` with ``28000.jpg``). Conventions in
docs/evaluation.md and :mod:`evaluation.metrics`.
"""
import math
import os

from tqdm import tqdm

from data.image_io import list_files, pair_by_stem, stem
from evaluation import metrics
from util.errors import InputError, OptionError
from util.flag_rules import at_least, check_value

BATCH_SIZE_RULE = at_least(1)


def evaluate(results_dir, gt_dir, size=None, gray_ssim=False, ssim_variant=metrics.DEFAULT_SSIM,
             allow_unpaired=False, fid=False, inception_path=None, batch_size=16, device="cpu", progress=True,
             fid_gt_stats=None):
    """Compute the metrics for all stem-matched pairs of two folders.

    Returns a dict: ``mean`` (see :func:`evaluation.metrics.summarise`, plus ``fid``
    when requested), ``per_image`` (``{stem: {"ssim", "psnr", "rmse"}}`` with an
    infinite PSNR stored as ``None``), ``settings`` (the conventions: SSIM
    variant, data range, the sizes of the evaluated pairs, and ``description``,
    the one line that names them), ``unpaired``, ``failures`` (messages naming
    the files) and ``warnings`` (an unusable or unwritable ``fid_gt_stats``
    cache). Raises :class:`OptionError` for a ``size`` or ``batch_size`` out of
    range (:data:`metrics.EVAL_SIZE_RULE`, :data:`BATCH_SIZE_RULE`) or an unknown
    SSIM variant, and :class:`InputError` when no pair can be evaluated or files
    are unpaired without ``allow_unpaired``.
    """
    metrics.check_ssim_variant(ssim_variant)
    check_value("--size", size, int, metrics.EVAL_SIZE_RULE)
    check_value("--batch_size", batch_size, int, BATCH_SIZE_RULE)
    results = list_files(results_dir)
    targets = list_files(gt_dir)
    pairs, unpaired = pair_by_stem(results, targets, names=["result", "ground-truth"])
    if unpaired and not allow_unpaired:
        shown = "\n  ".join(unpaired[:20]) + ("\n  ..." if len(unpaired) > 20 else "")
        raise InputError(f"{len(unpaired)} files have no partner (pass --allow_unpaired to "
                         f"evaluate the rest):\n  {shown}")
    if not pairs:
        raise InputError(f"{results_dir} and {gt_dir}: no files share a stem")
    if fid and len(pairs) < 2:
        raise InputError("FID needs at least 2 image pairs")
    if fid:  # fail on a bad device or missing weights before the long per-image loop
        device = resolve_device(device)
        model = metrics.build_fid_inception(inception_path, device=device)

    per_image, values, failures, resized, sizes = {}, [], [], 0, {}
    for result_path, target_path in tqdm(pairs, desc="metrics", disable=not progress, unit="img"):
        try:
            result, target, was_resized = metrics.load_pair(result_path, target_path, size)
            m = metrics.reconstruction_metrics(result, target, gray_ssim=gray_ssim, ssim_variant=ssim_variant)
        except InputError as e:
            failures.append(f"{result_path} / {target_path}: {e}")
            continue
        resized += was_resized
        sizes[result.shape[:2]] = sizes.get(result.shape[:2], 0) + 1
        values.append(m)
        per_image[stem(result_path)] = {k: (None if not math.isfinite(v) else v) for k, v in m.items()}
    if not values:
        raise InputError("no image pair could be evaluated:\n  " + "\n  ".join(failures))
    mean = metrics.summarise(values)
    ok = [(r, t) for r, t in pairs if stem(r) in per_image]
    fid_cache_used, warnings = None, []
    if fid and fid_gt_stats:
        mean["fid"], fid_cache_used, warnings = metrics.fid_with_target_cache(
            [r for r, _ in ok], [t for _, t in ok], model, fid_gt_stats, batch_size=batch_size, device=device,
            progress=progress)
    elif fid:
        mean["fid"] = metrics.fid_from_paths([r for r, _ in ok], [t for _, t in ok], model,
                                             batch_size=batch_size, device=device, progress=progress)
    settings = {
        "results_dir": os.path.abspath(results_dir), "gt_dir": os.path.abspath(gt_dir),
        "size": size, "ground_truth_resized_to_result": resized, "data_range": "[0, 1]",
        "ssim": "skimage structural_similarity, " + metrics.SSIM_DESCRIPTIONS[ssim_variant] + ", "
                + ("luminance" if gray_ssim else "mean over RGB channels"),
        "ssim_variant": ssim_variant,
        "image_sizes": {f"{w}x{h}": n for (h, w), n in sorted(sizes.items())},
        "description": metrics.describe_settings(ssim_variant, sizes, gray_ssim),
        "fid_weights": metrics.resolve_inception_path(inception_path) if fid else None,
        "fid_gt_stats": (None if not (fid and fid_gt_stats) else
                         {"path": os.path.abspath(fid_gt_stats), "loaded_from_cache": fid_cache_used}),
    }
    return {"mean": mean, "per_image": per_image, "settings": settings, "unpaired": unpaired,
            "failures": failures, "warnings": warnings}


def resolve_device(name):
    """``torch.device`` for ``--device``; raises :class:`OptionError` when it is malformed or absent."""
    import torch  # only for --device: scoring SSIM, PSNR and RMSE loads no torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise OptionError(f"--device {name!r}: not a device name (use cpu, cuda or cuda:N)") from e
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise OptionError(f"--device {name}: this CUDA device is not available here; use --device cpu")
    return device


def format_table(report, max_rows=20):
    """A plain-text table of the first ``max_rows`` per-image values and the means."""
    def fmt(v, digits):
        return "inf" if v is None else f"{v:.{digits}f}"

    lines = [f"{'image':<24} {'SSIM':>8} {'PSNR(dB)':>9} {'RMSE':>8}"]
    items = list(report["per_image"].items())
    for name, m in items[:max_rows]:
        lines.append(f"{name[:24]:<24} {fmt(m['ssim'], 4):>8} {fmt(m['psnr'], 2):>9} {fmt(m['rmse'], 4):>8}")
    if len(items) > max_rows:
        lines.append(f"... ({len(items) - max_rows} more in the JSON file)")
    mean = report["mean"]
    lines.append("-" * 52)
    lines.append(f"{'mean (' + str(mean['count']) + ' images)':<24} {fmt(mean['ssim'], 4):>8} "
                 f"{fmt(mean['psnr'], 2):>9} {fmt(mean['rmse'], 4):>8}")
    if mean["psnr_infinite"]:
        lines.append(f"({mean['psnr_infinite']} identical pairs have PSNR = inf; left out of the PSNR mean)")
    if "fid" in mean:
        lines.append(f"FID: {mean['fid']:.3f}")
    lines.append(report["settings"]["description"])
    return "\n".join(lines)
