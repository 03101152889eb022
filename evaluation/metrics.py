"""Evaluation metrics: reconstruction (SSIM, PSNR, RMSE) and FID.

Reconstruction metrics
----------------------
Both images are ``(H, W, 3)`` uint8 RGB arrays, converted to float64 in
[0, 1] before any metric, so ``data_range = 1``:

* ``rmse = sqrt(mean((a - b)^2))`` over all pixels and the three channels
  (on the [0, 1] scale, as in SEAN's Table 1 where RMSE is about 0.12);
* ``psnr = 10 * log10(1 / mse)`` in dB; identical images give ``inf``;
* ``ssim`` is :func:`skimage.metrics.structural_similarity` on the RGB image
  (``channel_axis=2``: SSIM per channel, then the mean over channels), in one
  of two variants (:data:`SSIM_VARIANTS`):

  - ``"gaussian"`` (the default, the release's and the paper's): Gaussian
    weights with sigma 1.5 (an 11x11 window) and population covariance,
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``. The
    release called it on uint8 images, where scikit-image takes the data
    range 255; that is the same SSIM as data range 1 on the [0, 1] scale
    (tested);
  - ``"uniform"``: scikit-image's defaults, a 7x7 uniform window with sample
    covariance.

  ``gray=True`` instead converts both images to luminance first
  (ITU-R 601: 0.299 R + 0.587 G + 0.114 B).
  :func:`describe_settings` names the variant, the data range and the image
  size in one line for every report.

Images must have the same size; :func:`reconstruction_metrics` raises
:class:`util.errors.InputError` otherwise. :func:`load_pair` resizes them
beforehand (see there).

FID
---
Fréchet Inception distance with the ``pytorch-fid`` package's network (the
TensorFlow FID Inception, pool3 features, 2048-D), assembled here from its
layer classes by :class:`FIDInception`, and the Fréchet distance of its
formula (computed here with symmetric eigendecompositions, see
:func:`frechet_distance`). The weights file
``pt_inception-2015-12-05-6726825d.pth`` is read from a local path or from
torch's hub cache; it is never downloaded, and random weights are only used
when explicitly requested (for tests of the plumbing).
"""
import io
import math
import os
import zipfile

import numpy as np
from tqdm import tqdm

from data.image_io import read_rgb, resize_rgb, stem
from util.errors import CheckpointError, InputError
from util.flag_rules import size_bound
from util.io import write_bytes_atomic

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_NAME)
INCEPTION_SIZE = 299
FID_DIMS = 2048
# The common size of a pair (evaluate.py --size): at least SSIM's largest window (11x11), at most 4096;
# the metrics of one pair peak at about 174 bytes per pixel (benchmarks/bench_size_memory.py: 169-174 at
# 512, 1024 and 2048, both SSIM windows), 2.9 GB at 4096.
EVAL_SIZE_RULE, EVAL_SIZE_HELP = size_bound(11, 4096, 174, "one image pair", optional=True)


# --------------------------------------------------------------------------------------------
# Reconstruction metrics
# --------------------------------------------------------------------------------------------
def to_unit_float(image):
    """Convert an ``(H, W, 3)`` uint8 image to float64 in [0, 1] (float input is checked, not scaled)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        if image.size and (image.min() < 0.0 or image.max() > 1.0):
            raise InputError(f"float image values must lie in [0, 1]; got [{image.min()}, {image.max()}]")
        return image.astype(np.float64)
    raise InputError(f"unsupported image dtype {image.dtype}; expected uint8 or float in [0, 1]")


def to_gray(image):
    """Luminance ``0.299 R + 0.587 G + 0.114 B`` of an ``(H, W, 3)`` float image -> ``(H, W)``."""
    return image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114


def rmse(a, b):
    """Root mean squared error of two same-shape images on the [0, 1] scale (a float >= 0)."""
    a, b = to_unit_float(a), to_unit_float(b)
    _check_same_shape(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def psnr(a, b):
    """Peak signal-to-noise ratio in dB with peak 1 ([0, 1] scale); ``inf`` for identical images."""
    # here, not at the top: skimage.metrics imports scipy.stats (about 0.8 s)
    from skimage.metrics import peak_signal_noise_ratio

    a, b = to_unit_float(a), to_unit_float(b)
    _check_same_shape(a, b)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


# variant -> (window side, keyword arguments of skimage.metrics.structural_similarity)
SSIM_VARIANTS = {
    "gaussian": (11, {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}),
    "uniform": (7, {}),
}
DEFAULT_SSIM = "gaussian"
SSIM_DESCRIPTIONS = {
    "gaussian": "Gaussian weights (sigma 1.5, 11x11), population covariance",
    "uniform": "7x7 uniform window, sample covariance",
}


def check_ssim_variant(variant):
    """Return ``variant`` when it names an SSIM variant; raises :class:`InputError` otherwise."""
    if variant not in SSIM_VARIANTS:
        raise InputError(f"unknown SSIM variant {variant!r}; choose from {', '.join(SSIM_VARIANTS)}")
    return variant


def ssim(a, b, gray=False, variant=DEFAULT_SSIM):
    """Structural similarity (``data_range=1``) of two same-shape images.

    ``a`` and ``b`` are ``(H, W, 3)`` uint8 (or float in [0, 1]) RGB images,
    each side at least 11 pixels (7 with ``variant="uniform"``). RGB: mean of
    the per-channel SSIM; ``gray``: SSIM of the luminance images.
    ``variant``: ``"gaussian"`` (sigma 1.5, population covariance; the
    release's) or ``"uniform"`` (7x7, sample covariance). Returns a float in
    [-1, 1].
    """
    # here, not at the top: skimage.metrics imports scipy.stats (about 0.8 s)
    from skimage.metrics import structural_similarity

    side, kwargs = SSIM_VARIANTS[check_ssim_variant(variant)]
    a, b = to_unit_float(a), to_unit_float(b)
    _check_same_shape(a, b)
    if min(a.shape[:2]) < side:
        raise InputError(f"SSIM ({variant}) needs images of at least {side}x{side} pixels; "
                         f"got {a.shape[1]}x{a.shape[0]}")
    if gray:
        return float(structural_similarity(to_gray(a), to_gray(b), data_range=1.0, **kwargs))
    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0, **kwargs))


def reconstruction_metrics(result, target, gray_ssim=False, ssim_variant=DEFAULT_SSIM):
    """SSIM, PSNR (dB) and RMSE of a generated ``result`` against its ``target``.

    Both are ``(H, W, 3)`` uint8 RGB arrays of the same size; ``gray_ssim``
    and ``ssim_variant`` select the SSIM (see :func:`ssim`). Returns
    ``{"ssim": float, "psnr": float (inf when identical), "rmse": float}``.
    """
    return {"ssim": ssim(result, target, gray=gray_ssim, variant=ssim_variant),
            "psnr": psnr(result, target), "rmse": rmse(result, target)}


def describe_settings(ssim_variant=DEFAULT_SSIM, sizes=None, gray_ssim=False):
    """One line naming the metric conventions: SSIM variant, data range, image size(s).

    ``sizes``: an ``(H, W)`` pair, or a mapping ``{(H, W): count}`` of the
    evaluated pairs, or None when unknown.
    """
    channels = "luminance" if gray_ssim else "mean over RGB"
    text = (f"SSIM {ssim_variant} ({SSIM_DESCRIPTIONS[check_ssim_variant(ssim_variant)]}; {channels}); "
            "SSIM, PSNR and RMSE on [0, 1] (data range 1, same as 255 on uint8)")
    if sizes:
        if isinstance(sizes, tuple):
            sizes = {sizes: None}
        shown = ", ".join(f"{w}x{h}" + ("" if n is None or len(sizes) == 1 else f" ({n})")
                          for (h, w), n in sorted(sizes.items(), key=lambda kv: kv[0]))
        text += f"; images {shown} (width x height)"
    return text


def _check_same_shape(a, b):
    if a.shape != b.shape:
        raise InputError(f"images differ in shape: {a.shape} vs {b.shape}; resize them first")
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"expected (H, W, 3) RGB images, got shape {a.shape}")


def load_pair(result_path, target_path, size=None):
    """Read a result and its ground truth as uint8 RGB arrays at a common size.

    ``size`` (int): both are resized to ``size x size`` (bicubic). Otherwise,
    when the sizes differ, the ground truth is resized (bicubic) to the size of
    the result. Returns ``(result, target, resized)`` where ``resized`` tells
    whether the ground truth had to be resized to match.
    """
    result = read_rgb(result_path)
    target = read_rgb(target_path)
    if size is not None:
        result = resize_rgb(result, (size, size))
        target = resize_rgb(target, (size, size))
        return result, target, False
    resized = result.shape != target.shape
    if resized:
        target = resize_rgb(target, result.shape[1::-1])
    return result, target, resized


def summarise(per_image):
    """Means over a list of per-image metric dicts.

    Returns ``{"ssim": mean, "psnr": mean of the finite values, "rmse": mean,
    "count": n, "psnr_infinite": number of identical pairs}``. A PSNR of
    ``inf`` (identical images) is left out of the PSNR mean and counted instead;
    the PSNR mean is ``None`` when every pair is identical.
    """
    if not per_image:
        raise InputError("no image pairs to summarise")
    psnrs = [m["psnr"] for m in per_image]
    finite = [p for p in psnrs if math.isfinite(p)]
    return {
        "ssim": float(np.mean([m["ssim"] for m in per_image])),
        "psnr": float(np.mean(finite)) if finite else None,
        "rmse": float(np.mean([m["rmse"] for m in per_image])),
        "count": len(per_image),
        "psnr_infinite": len(psnrs) - len(finite),
    }


# --------------------------------------------------------------------------------------------
# FID
# --------------------------------------------------------------------------------------------
def default_inception_path():
    """Where torch's hub cache keeps the FID Inception weights (``<hub>/checkpoints/<name>``)."""
    import torch  # here, not at the top: this module loads no torch until FID is asked for

    return os.path.join(torch.hub.get_dir(), "checkpoints", FID_WEIGHTS_NAME)


def _missing_weights_message(searched):
    return (
        "FID needs the Inception weights file " + FID_WEIGHTS_NAME + ", which was not found "
        f"(looked in: {', '.join(searched)}). This project never downloads weights. "
        "On a machine with internet access, download\n  " + FID_WEIGHTS_URL + "\n"
        f"and either pass its path with --inception_path or copy it to {default_inception_path()}."
    )


def resolve_inception_path(path=None):
    """Return an existing weights path: ``path`` when given, else torch's hub cache.

    Raises :class:`CheckpointError` with instructions when no file is found.
    """
    if path is not None:
        if not os.path.isfile(path):
            raise CheckpointError(_missing_weights_message([os.fspath(path)]))
        return os.fspath(path)
    cached = default_inception_path()
    if os.path.isfile(cached):
        return cached
    raise CheckpointError(_missing_weights_message([cached]))


def fid_inception_skeleton():
    """The FID Inception architecture of pytorch-fid (TF-ported blocks), with untrained weights."""
    import torchvision  # FID only (this module stays torch-free)
    from pytorch_fid import inception as pfi  # FID only (this module stays torch-free)

    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None,
                                          init_weights=False)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def build_fid_inception(weights_path=None, device="cpu"):
    """The FID Inception network (pool3, 2048-D) with weights from a local file, in eval mode.

    ``weights_path``: the ``pt_inception-2015-12-05-6726825d.pth`` file; when
    None, torch's hub cache is searched. Missing or mismatched weights raise
    :class:`CheckpointError`. Returns :class:`evaluation.inception.FIDInception`,
    whose activations equal pytorch-fid's ``InceptionV3`` with these weights.
    (Tests of the plumbing pass a file of untrained weights of the same
    architecture, :func:`fid_inception_skeleton`.)
    """
    from evaluation.inception import FIDInception  # FID only (torch; this module stays torch-free)
    from util.torch_io import load_torch_file  # FID only (torch; this module stays torch-free)

    path = resolve_inception_path(weights_path)
    state = load_torch_file(path, "Inception weights file")
    trunk = fid_inception_skeleton()
    try:
        trunk.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: not the FID Inception weights ({e})") from e
    return FIDInception(trunk).to(device)


def inception_activations(paths, model, batch_size=16, device="cpu", progress=True):
    """Pool3 activations ``(N, 2048)`` float64 of the images at ``paths``.

    Each image is read as RGB in [0, 1] and resized bilinearly to 299x299 (what
    pytorch-fid's model does itself), so images of any size can share a batch.
    """
    return inception_activations_of_arrays(paths, model, batch_size, device, progress, read=read_rgb)


def inception_activations_of_arrays(images, model, batch_size=16, device="cpu", progress=False, read=None):
    """Pool3 activations ``(N, 2048)`` float64 of in-memory ``(H, W, 3)`` uint8 RGB ``images``.

    The same preprocessing as :func:`inception_activations` (which passes file
    paths with ``read=read_rgb``): values / 255, bilinear resize to 299x299.
    Used for evaluation during training, where the generated images never
    touch the disk. ``batch_size`` must be at least 1.
    """
    import torch  # FID only (this module stays torch-free)
    import torch.nn.functional as F  # FID only (this module stays torch-free)

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

    out = np.empty((len(images), FID_DIMS), dtype=np.float64)
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="inception", disable=not progress, unit="batch"):
        tensors = []
        for item in images[start:start + batch_size]:
            arr = read(item) if read is not None else np.asarray(item)
            x = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
            x = F.interpolate(x[None], size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                              align_corners=False)
            tensors.append(x)
        batch = torch.cat(tensors).to(device)
        with torch.no_grad():
            feats = model(batch)[0]
        out[start:start + len(tensors)] = feats.reshape(len(tensors), -1).cpu().double().numpy()
    return out


def activation_statistics(activations):
    """Mean ``(D,)`` and covariance ``(D, D)`` (``np.cov``, rows are samples) of ``(N, D)`` activations."""
    activations = np.asarray(activations, dtype=np.float64)
    if activations.ndim != 2 or activations.shape[0] < 2:
        raise InputError(f"FID needs at least 2 images; got activations of shape {activations.shape}")
    return activations.mean(axis=0), np.cov(activations, rowvar=False)


def _psd_sqrt(matrix):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))``;
    the means are ``(D,)`` and the covariances symmetric PSD ``(D, D)``.

    ``Tr((S1 S2)^(1/2))`` is computed as ``Tr((R S2 R)^(1/2))`` with
    ``R = S1^(1/2)``: ``S1 S2`` and the symmetric PSD ``R S2 R`` are similar,
    so they share eigenvalues, and the latter needs only two symmetric
    eigendecompositions (no complex parts, no singular-matrix fallback). It
    agrees with pytorch-fid's ``calculate_frechet_distance`` (tested), took
    10 s instead of 33 s for D = 2048 on this project's 2-core machine, and
    does not depend on ``scipy.linalg.sqrtm(..., disp=False)``, whose return
    value differs in the installed SciPy 1.17.1 (a bare array for 1x1 input, breaking
    pytorch-fid's unpacking).
    Returns a float.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError(f"inconsistent Gaussian statistics: means {mu1.shape}, {mu2.shape}; "
                         f"covariances {sigma1.shape}, {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_activations(acts1, acts2):
    """FID between two sets of activations ``(N1, D)`` and ``(N2, D)``, each with N >= 2.

    Writing the covariances as ``S1 = A^T A`` and ``S2 = B^T B`` with
    ``A = (X1 - mean) / sqrt(N1 - 1)`` (likewise B), the non-zero eigenvalues
    of ``S1 S2`` are the squared singular values of ``A B^T`` (N1 x N2), so
    ``Tr((S1 S2)^(1/2))`` is the nuclear norm of ``A B^T``. This exact identity
    replaces two D x D eigendecompositions by one N1 x N2 SVD when the sets
    are smaller than D (2048); larger sets use :func:`frechet_distance` on the
    covariances.
    """
    x1 = np.asarray(acts1, dtype=np.float64)
    x2 = np.asarray(acts2, dtype=np.float64)
    for x in (x1, x2):
        if x.ndim != 2 or x.shape[0] < 2:
            raise InputError(f"FID needs at least 2 images per set; got activations of shape {x.shape}")
    if x1.shape[1] != x2.shape[1]:
        raise InputError(f"activation sizes differ: {x1.shape[1]} vs {x2.shape[1]}")
    n1, n2, d = x1.shape[0], x2.shape[0], x1.shape[1]
    if max(n1, n2) > d:
        mu1, s1 = activation_statistics(x1)
        mu2, s2 = activation_statistics(x2)
        return frechet_distance(mu1, s1, mu2, s2)
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    a = (x1 - mu1) / np.sqrt(n1 - 1)
    b = (x2 - mu2) / np.sqrt(n2 - 1)
    tr_covmean = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.sum(a * a) + np.sum(b * b) - 2.0 * tr_covmean)


def fid_from_paths(result_paths, target_paths, model, batch_size=16, device="cpu", progress=True):
    """FID between two image sets (lists of paths, each at least 2 images) using ``model``."""
    acts1 = inception_activations(result_paths, model, batch_size, device, progress)
    acts2 = inception_activations(target_paths, model, batch_size, device, progress)
    return fid_from_activations(acts1, acts2)


def save_statistics(path, mu, sigma, stems):
    """Atomically save FID statistics (mean ``(D,)``, covariance ``(D, D)``) and the image stems (``.npz``)."""
    buf = io.BytesIO()
    np.savez(buf, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             stems=np.asarray(list(stems), dtype=str))
    write_bytes_atomic(path, buf.getvalue())


def load_statistics(path):
    """Load ``(mu, sigma, stems)`` saved by :func:`save_statistics`; errors name the file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma, stems = f["mu"], f["sigma"], [str(s) for s in f["stems"]]
    except FileNotFoundError as e:
        raise InputError(f"{path}: FID statistics file not found") from e
    except (OSError, ValueError, KeyError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: unreadable FID statistics file ({type(e).__name__}: {e})") from e
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise InputError(f"{path}: FID statistics have shapes {mu.shape} and {sigma.shape}")
    return mu, sigma, stems


def fid_with_target_cache(result_paths, target_paths, model, stats_path, batch_size=16, device="cpu",
                          progress=True):
    """FID where the target set's statistics are cached in ``stats_path`` (``.npz``).

    The cache is used when it exists and lists exactly the stems of
    ``target_paths`` (in order); otherwise (missing, other stems, unreadable
    or truncated) the target statistics are computed and (re)written.
    Returns ``(fid, cache_used, notes)``: ``notes`` lists what happened to an
    unusable cache and a cache that could not be written (the FID is kept
    then). Both sets need at least 2 images. The distance uses
    :func:`frechet_distance` on the statistics.
    """
    stems = [stem(p) for p in target_paths]
    cached, notes = None, []
    if os.path.isfile(stats_path):
        try:
            cached = load_statistics(stats_path)
        except InputError as e:
            notes.append(f"{e}; recomputed and rewritten")
    if cached is not None and cached[2] == stems:
        mu2, s2, used = cached[0], cached[1], True
    else:
        mu2, s2 = activation_statistics(inception_activations(target_paths, model, batch_size, device,
                                                              progress))
        try:
            save_statistics(stats_path, mu2, s2, stems)
        except OSError as e:  # the cache only saves time: keep the FID
            notes.append(f"{stats_path}: FID statistics not cached ({e})")
        used = False
    mu1, s1 = activation_statistics(inception_activations(result_paths, model, batch_size, device, progress))
    return frechet_distance(mu1, s1, mu2, s2), used, notes
