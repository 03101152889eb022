"""The compiled mask SLIC (spse/masked_slic.py) against scikit-image's ``slic``: exact equality.

The reference is ``skimage.segmentation.slic`` itself (the pinned version),
called as the extractor's scikit-image backend calls it. Every comparison is
``np.array_equal``: the compiled path must give the same superpixels, not
close ones, and hence the same codes.
"""
import warnings

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import slic

from data.image_io import resize_label
from spse import masked_slic
from spse.extractor import extract_style_codes_and_presence, resize_image

pytestmark = pytest.mark.skipif(not masked_slic.AVAILABLE, reason="numba is not installed")


def reference_labels(rgb, mask, n_segments=128, compactness=10.0):
    """scikit-image's mask SLIC labels of the masked pixels (raster order), as the extractor calls it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        out = slic(rgb, n_segments=n_segments, compactness=compactness, mask=mask, enforce_connectivity=False,
                   start_label=1, channel_axis=-1)
    return out[mask]


def assert_same_labels(rgb, mask, n_segments=128, compactness=10.0):
    ref = reference_labels(rgb, mask, n_segments, compactness)
    ours = masked_slic.masked_slic(rgb, mask, n_segments, compactness)
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref), f"{int((ours != ref).sum())} of {ref.size} pixels differ"
    return ref


# ----------------------------------------------------------------------------
# The benchmark's images, every label kind (small: 128 x 128)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["regions", "parts", "face", "quantised"])
def test_superpixels_and_codes_equal_scikit_image_on_benchmark_labels(bench_spse, kind):
    size = 128
    image = bench_spse.load_photo("astronaut")
    label = bench_spse.make_label(image, 13, kind)
    rgb, lab = resize_image(image, size), resize_label(label, (size, size)).astype(np.int32)
    boxes = ndimage.find_objects(lab + 1)
    classes = [j for j, box in enumerate(boxes) if box is not None]
    assert len(classes) >= 10
    dense = 0
    for j in classes:
        # The extractor's crop, and the full array (the window follows the array shape).
        for box in (boxes[j], (slice(None), slice(None))):
            mask = lab[box] == j
            assert_same_labels(rgb[box], mask)
            # 12 segments: classes above 1200 pixels take scikit-image's dense k-means subset.
            assert_same_labels(rgb[box], mask, n_segments=12)
            dense += int(mask.sum() > 1200)
    assert dense > 0
    for crop in (True, False):
        codes_nb, present = extract_style_codes_and_presence(image, label, 19, size=size, crop=crop,
                                                             backend="numba")
        codes_sk, _ = extract_style_codes_and_presence(image, label, 19, size=size, crop=crop, backend="skimage")
        assert present.sum() == len(classes)
        assert np.array_equal(codes_nb, codes_sk)


def test_codes_equal_on_a_full_size_face_image(bench_spse):
    # One image at the real working size (512): the large classes take the dense k-means subset
    # of scikit-image's default 128 segments (more than 12800 pixels).
    image = bench_spse.load_photo("chelsea")
    label = bench_spse.face_layout(*image.shape[:2])
    nb, present = extract_style_codes_and_presence(image, label, 19, backend="numba")
    sk, _ = extract_style_codes_and_presence(image, label, 19, backend="skimage")
    assert present.sum() == 18  # background and 17 parts
    assert (np.bincount(resize_label(label, (512, 512)).ravel()) > 12800).sum() >= 3
    assert np.array_equal(nb, sk)


# ----------------------------------------------------------------------------
# Masks with holes and several components, tiny classes
# ----------------------------------------------------------------------------
def _textured(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    smooth = np.stack([yy / h, xx / w, 0.5 + 0.5 * np.sin(yy / 5.0) * np.cos(xx / 7.0)], axis=-1)
    return np.clip(smooth + rng.normal(0, 0.08, smooth.shape), 0, 1).astype(np.float32)


def test_masks_with_holes_and_several_components():
    h, w = 90, 110
    rgb = _textured(h, w, 0)
    yy, xx = np.mgrid[:h, :w]
    ring = ((yy - 40) ** 2 + (xx - 45) ** 2 < 35 ** 2) & ((yy - 40) ** 2 + (xx - 45) ** 2 > 15 ** 2)
    blobs = ((yy - 80) ** 2 + (xx - 100) ** 2 < 8 ** 2) | ((yy - 10) ** 2 + (xx - 100) ** 2 < 5 ** 2)
    swiss = (yy > 60) & (xx < 60) & ~(((yy % 9) < 3) & ((xx % 11) < 4))  # a block with a grid of holes
    mask = ring | blobs | swiss
    assert ndimage.label(mask)[1] >= 3 and ndimage.label(~mask)[1] >= 2  # components and holes
    for n_segments in (3, 16, 128):
        for compactness in (1.0, 10.0, 100.0):
            assert_same_labels(rgb, mask, n_segments, compactness)
            box = ndimage.find_objects(mask.astype(np.int8))[0]
            assert_same_labels(rgb[box], mask[box], n_segments, compactness)


@pytest.mark.parametrize("pixels", [1, 2, 3])
def test_tiny_classes(pixels):
    rgb = _textured(20, 20, pixels)
    mask = np.zeros((20, 20), bool)
    for p in [(3, 4), (3, 5), (15, 11)][:pixels]:
        mask[p] = True
    ref = assert_same_labels(rgb, mask)  # K = pixels superpixels at most
    assert ref.max() <= pixels
    for n_segments in (1, 2, 3):
        assert_same_labels(rgb, mask, n_segments)


@pytest.mark.parametrize("n_segments", [1, 2, 3])
def test_few_segments_on_a_large_mask(n_segments):
    rgb = _textured(40, 50, 7)
    mask = np.ones((40, 50), bool)
    mask[10:20, 5:30] = False
    assert_same_labels(rgb, mask, n_segments)


def test_constant_colour_single_row_and_column_masks():
    rgb = np.full((30, 40, 3), 0.25, np.float32)  # max == min: no stretch
    mask = np.zeros((30, 40), bool)
    mask[5:25, 8:30] = True
    assert_same_labels(rgb, mask, 16)
    row = np.zeros((30, 40), bool)
    row[7, 3:38] = True
    col = np.zeros((30, 40), bool)
    col[2:29, 33] = True
    rgb = _textured(30, 40, 3)
    for m in (row, col, row | col):
        assert_same_labels(rgb, m, 8)


def test_random_masks_cover_empty_segments_and_unassigned_pixels():
    # Random shapes, quantised colours (distance ties), several segment counts and compactness
    # values. scikit-image's own corner cases must occur here for the test to mean something:
    # segments that end empty (their centre becomes NaN) and pixels that no window reaches.
    rng = np.random.default_rng(11)
    empty = unassigned = 0
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(2, 48, 2))
        rgb = rng.random((h, w, 3), dtype=np.float32)
        if trial % 2:
            rgb = (np.round(rgb * 3) / 3).astype(np.float32)
        if trial % 3 == 0:
            mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        elif trial % 3 == 1:
            mask = ndimage.binary_dilation(rng.random((h, w)) < 0.04, iterations=int(rng.integers(1, 4)))
        else:
            mask = np.zeros((h, w), bool)
            mask.flat[rng.choice(h * w, min(h * w, int(rng.integers(1, 6))), replace=False)] = True
        if not mask.any():
            continue
        n_segments = int(rng.choice([1, 2, 3, 5, 16, 128]))
        compactness = float(rng.choice([0.1, 1.0, 10.0, 100.0]))
        ref = assert_same_labels(rgb, mask, n_segments, compactness)
        empty += len(np.unique(ref[ref > 0])) < min(n_segments, int(mask.sum()))
        unassigned += bool((ref == 0).any())
    assert empty >= 5 and unassigned >= 5, (empty, unassigned)


def test_label_image_and_input_checks():
    rgb = _textured(16, 16, 1)
    mask = np.zeros((16, 16), bool)
    mask[2:12, 3:15] = True
    image = masked_slic.masked_slic_image(rgb, mask, 8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One of the clusters is empty")
        ref = slic(rgb, n_segments=8, compactness=10, mask=mask, enforce_connectivity=False, start_label=1,
                   channel_axis=-1)
    assert np.array_equal(image, ref)
    with pytest.raises(ValueError, match="float32"):
        masked_slic.masked_slic(rgb.astype(np.float64), mask)
    with pytest.raises(ValueError, match="no pixel"):
        masked_slic.masked_slic(rgb, np.zeros((16, 16), bool))
