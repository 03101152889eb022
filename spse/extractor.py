"""SPSE: superpixel-based style encoding for one image (docs/method.md §2).

For each semantic class the pixels of the class are clustered into
superpixels with mask-restricted SLIC (``skimage.segmentation.slic`` with
``mask=``), the mean RGB colour of each superpixel is taken, and the three
per-channel sequences are resampled into one 512-long style code.

Public API
----------
``extract_style_codes(image, label, label_nc, size=512, n_segments=128, compactness=10)``
    ``(label_nc, 512)`` float32 codes, about [0, 1] (cubic spline overshoot aside).
``superpixel_means(image, label, class_index, n_segments, compactness)``
    ``(3, K)`` mean RGB of the K superpixels of one class.
``code_from_means(means)``
    the resampling rule: ``(3, K)`` -> ``(512,)``.
``resample(values, n)`` / ``resampling_matrix(k, n)``
    the interpolation rule used by the resampling.

Backends (docs/spse.md, "Backends"): ``"numba"`` (the compiled mask SLIC of
:mod:`spse.masked_slic`), ``"skimage"`` (``skimage.segmentation.slic``), or
``"auto"`` (numba when it can be imported); both give identical codes.
SLIC runs on each class's bounding box (``crop=True``, the default;
docs/spse.md, "Bounding-box crop"); ``crop=False`` runs it on the full image.
"""
import functools
import warnings

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline
from skimage.segmentation import slic

from data.image_io import resize_label, resize_rgb
from spse import masked_slic
from util.errors import InputError, OptionError

STYLE_DIM = 512          # length of one style code
CHANNEL_DIM = 128        # per-channel length before concatenation
DONTCARE_VALUE = 255     # label value ignored by the extractor (belongs to no class)
BACKENDS = ("auto", "numba", "skimage")  # SLIC implementations (see resolve_backend)


# ----------------------------------------------------------------------------
# Resampling rule
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=128)
def resampling_matrix(k, n):
    """Return the ``(n, k)`` float64 matrix ``M`` such that ``M @ y`` resamples ``y``.

    ``y`` holds ``k`` samples placed evenly on ``[0, n-1]`` (positions
    ``i * (n-1) / (k-1)``); the result is the interpolant evaluated at the
    integers ``0 .. n-1``. The interpolant is

    * ``k >= 4``: the interpolating cubic spline with not-a-knot end
      conditions (identical to ``scipy.interpolate.InterpolatedUnivariateSpline``
      with ``k=3``, which the release used);
    * ``k = 2, 3``: piecewise linear (a cubic spline needs at least 4 points);
    * ``k = 1``: the constant.

    Works for ``n < k`` as well (down-sampling by evaluating the same
    interpolant at ``n`` points). The returned array is read-only and cached.
    """
    k, n = int(k), int(n)
    if k < 1 or n < 1:
        raise ValueError(f"resampling needs k >= 1 and n >= 1, got k={k}, n={n}")
    if k == 1:
        m = np.ones((n, 1))
    elif n == 1:
        m = np.zeros((1, k))
        m[0, 0] = 1.0  # the single target position 0 is the first sample
    elif k == n:
        m = np.eye(n)
    else:
        x = np.arange(k) * ((n - 1) / (k - 1))
        x[-1] = n - 1  # guard against rounding at the right end
        t = np.arange(n, dtype=np.float64)
        if k >= 4:
            m = make_interp_spline(x, np.eye(k), k=3)(t)
        else:
            m = np.empty((n, k))
            for i in range(k):
                m[:, i] = np.interp(t, x, np.eye(k)[i])
    m = np.ascontiguousarray(m, dtype=np.float64)
    m.setflags(write=False)
    return m


def resample(values, n):
    """Resample ``values`` of shape ``(..., k)`` to ``(..., n)`` along the last axis.

    See :func:`resampling_matrix` for the rule (cubic not-a-knot spline for
    ``k >= 4``, linear for ``k = 2, 3``, constant for ``k = 1``). Returns float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] < 1:
        raise ValueError("cannot resample an empty sequence")
    # einsum's own loop (no BLAS): stays single-threaded inside pool workers.
    return np.einsum("...k,nk->...n", values, resampling_matrix(values.shape[-1], n))


def code_from_means(means):
    """Turn the ``(3, K)`` superpixel mean colours of one class into a ``(512,)`` code.

    The rule (docs/method.md §2.4, with the release's failure cases defined):

    1. Per channel: ``3 <= K < 128`` -> resample each channel to 128
       (``K = 3`` linearly, ``K >= 4`` with the cubic spline); ``K = 1`` ->
       repeat the single value 128 times; ``K = 2`` and ``K >= 128`` -> keep
       the ``K`` values (as the release did).
    2. Concatenate ``[R, G, B]`` (length ``L = 3K'``).
    3. If ``L != 512`` resample to 512 with :func:`resample` (``L < 512`` is
       the release's up-sampling; ``L > 512``, i.e. ``K >= 171``, is down-sampled
       with the same spline instead of leaving a code of the wrong length).

    Returns float64 ``(512,)``, all finite for finite input.
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] != 3 or means.shape[1] < 1:
        raise ValueError(f"means must have shape (3, K) with K >= 1, got {means.shape}")
    k = means.shape[1]
    if k == 1 or 3 <= k < CHANNEL_DIM:
        means = resample(means, CHANNEL_DIM)
    flat = means.reshape(-1)
    if flat.shape[0] != STYLE_DIM:
        flat = resample(flat, STYLE_DIM)
    return flat


# ----------------------------------------------------------------------------
# Image preparation
# ----------------------------------------------------------------------------
def resize_image(image, size):
    """Resize an ``(H, W, 3)`` uint8 RGB image to ``(size, size, 3)`` float32 in [0, 1].

    Uses PIL's bicubic filter (antialiased when shrinking), as the data
    loader does for images.
    """
    return resize_rgb(image, (size, size)).astype(np.float32) / np.float32(255.0)


def _check_inputs(image, label, label_nc):
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise InputError(f"label map must be an (H, W) integer array, got shape {label.shape} dtype {label.dtype}")
    if min(image.shape[:2]) < 1 or min(label.shape) < 1:
        raise InputError("image and label map must not be empty")
    if label_nc < 1:
        raise InputError(f"label_nc must be >= 1, got {label_nc}")
    if label.size and label.min() < 0:
        raise InputError(f"label map holds negative value {int(label.min())}")
    values = np.unique(label)
    bad = values[(values >= label_nc) & (values != DONTCARE_VALUE)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:10])
        raise InputError(f"label values {shown} are out of range for label_nc={label_nc}")
    return image, label


# ----------------------------------------------------------------------------
# Superpixels and codes
# ----------------------------------------------------------------------------
def resolve_backend(backend="auto"):
    """The SLIC implementation to use: ``"numba"`` or ``"skimage"``.

    ``"auto"`` gives ``"numba"`` when numba can be imported, else ``"skimage"``.
    Asking for ``"numba"`` without numba, or an unknown name, raises
    :class:`OptionError`.
    """
    if backend not in BACKENDS:
        raise OptionError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "numba" if masked_slic.AVAILABLE else "skimage"
    if backend == "numba" and not masked_slic.AVAILABLE:
        raise OptionError(f"--backend numba needs the numba package, which could not be imported "
                          f"({masked_slic.IMPORT_ERROR}); install it or use --backend skimage")
    return backend


def _slic_labels(rgb, mask, n_segments, compactness):
    """scikit-image's mask SLIC labels (0 = outside the mask or unassigned, superpixels from 1)."""
    with warnings.catch_warnings():
        # k-means seeding may report empty clusters on tiny masks; the result is still defined.
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        return slic(rgb, n_segments=n_segments, compactness=compactness, mask=mask,
                    enforce_connectivity=False, start_label=1, channel_axis=-1)


def _means_from_labels(seg, pix):
    """``(3, K)`` mean RGB per superpixel label in ``seg``, labels ascending.

    ``seg``: ``(N,)`` labels of the masked pixels; ``pix``: ``(N, 3)`` their RGB,
    both in raster order (the order fixes the float64 summation order).
    """
    counts = np.bincount(seg)
    present = np.flatnonzero(counts)
    sums = np.stack([np.bincount(seg, weights=pix[:, c], minlength=counts.size) for c in range(3)])
    return sums[:, present] / counts[present]


def _class_means(rgb, label, j, box, n_segments, compactness, backend="skimage"):
    crop_label = label[box]
    mask = crop_label == j
    crop_rgb = rgb[box]
    pix = crop_rgb[mask]  # (N, 3) in raster order
    if backend == "numba" and crop_rgb.dtype == np.float32:  # the compiled SLIC reproduces float32 only
        ys, xs = np.nonzero(mask)
        seg = masked_slic.masked_slic_pixels(pix, ys, xs, mask.shape, n_segments, compactness)
    else:
        seg = _slic_labels(crop_rgb, mask, n_segments, compactness)[mask]
    return _means_from_labels(seg, pix)


def superpixel_means(image, label, class_index, n_segments=128, compactness=10, crop=True, backend="auto"):
    """Mean RGB of the superpixels of one class.

    ``image``: ``(H, W, 3)`` float32 RGB in [0, 1]; ``label``: ``(H, W)`` ints of
    the same size. Returns ``(3, K)`` float64 (superpixel labels ascending,
    including SLIC's label 0 for masked pixels that no seed reached, as the
    release did), or ``None`` when the class has no pixel. ``crop=False``
    runs SLIC on the full image; ``backend`` as in :func:`resolve_backend`.
    """
    backend = resolve_backend(backend)
    mask = label == class_index
    if not mask.any():
        return None
    if crop:
        box = ndimage.find_objects(mask.astype(np.int8))[0]
    else:
        box = (slice(None), slice(None))
    return _class_means(image, label, class_index, box, n_segments, compactness, backend)


def extract_style_codes(image, label, label_nc, size=512, n_segments=128, compactness=10, backend="auto"):
    """Compute the SPSE style codes of one image.

    Parameters
    ----------
    image : ``(H, W, 3)`` uint8 RGB array.
    label : ``(H', W')`` integer array of class indices in ``[0, label_nc)``;
        255 means "don't care" and belongs to no class. The sizes of image and
        label may differ: both are resized to ``size x size`` (image bicubic,
        label nearest) before extraction.
    label_nc : number of classes.
    size, n_segments, compactness : 512, 128, 10 by default (docs/method.md §2).
    backend : ``"auto"``, ``"numba"`` or ``"skimage"`` (:func:`resolve_backend`);
        both give identical codes.

    Returns
    -------
    ``(label_nc, 512)`` float32 array: row ``j`` is the code of class ``j``
    (mean superpixel RGB values in [0, 1], resampled by :func:`code_from_means`;
    the cubic spline may overshoot slightly), zeros for an absent class.

    Raises :class:`InputError` on malformed arrays or out-of-range labels,
    :class:`OptionError` for an unknown or unavailable backend.
    """
    return extract_style_codes_and_presence(image, label, label_nc, size, n_segments, compactness,
                                            backend=backend)[0]


def extract_style_codes_and_presence(image, label, label_nc, size=512, n_segments=128, compactness=10,
                                     crop=True, backend="auto"):
    """Like :func:`extract_style_codes`, also returning which classes are present.

    ``crop=False`` runs SLIC on the full ``size x size`` image for every class
    instead of the class's bounding box (slower; used to measure the effect
    of the crop, see docs/spse.md). ``backend``: see :func:`resolve_backend`.

    Returns ``(codes, present)``: codes ``(label_nc, 512)`` float32 and
    ``present`` a ``(label_nc,)`` bool array (class has at least one pixel
    after resizing the label map to ``size x size``). A present class can
    still have an all-zero code (a black region), so absence is read from
    ``present``, never from the codes.
    """
    label_nc = int(label_nc)
    backend = resolve_backend(backend)
    image, label = _check_inputs(image, label, label_nc)
    if size < 1:
        raise InputError(f"size must be >= 1, got {size}")
    rgb = resize_image(image, size)
    lab = resize_label(label, (size, size)).astype(np.int32)
    codes = np.zeros((label_nc, STYLE_DIM), dtype=np.float32)
    present = np.zeros(label_nc, dtype=bool)
    # One pass over the label map gives the bounding box of every class (value j -> object j+1).
    boxes = ndimage.find_objects(lab + 1, max_label=label_nc)
    for j, box in enumerate(boxes):
        if box is None:
            continue
        present[j] = True
        if not crop:
            box = (slice(None), slice(None))
        means = _class_means(rgb, lab, j, box, n_segments, compactness, backend)
        codes[j] = code_from_means(means)
    return codes, present
