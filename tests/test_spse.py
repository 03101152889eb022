"""Tests of the per-image SPSE extractor (spse/extractor.py)."""
import numpy as np
import pytest
from scipy.interpolate import InterpolatedUnivariateSpline

from spse.extractor import (CHANNEL_DIM, STYLE_DIM, code_from_means, extract_style_codes,
                            extract_style_codes_and_presence, resample, resampling_matrix, superpixel_means)
from util.errors import InputError


# ----------------------------------------------------------------------------
# Literal references, written plainly (release formulation: scipy's spline)
# ----------------------------------------------------------------------------
def ref_resample(y, n):
    """K points evenly on [0, n-1], evaluated at the integers: scipy spline (K>=4), linear, constant."""
    y = np.asarray(y, dtype=np.float64)
    k = len(y)
    x = np.linspace(0, n - 1, k)
    if k >= 4:
        return InterpolatedUnivariateSpline(x, y, k=3)(np.arange(n))
    if k >= 2:
        return np.interp(np.arange(n), x, y)
    return np.full(n, y[0])


def ref_code(means):
    """The documented rule, one channel at a time, with Python lists."""
    r, g, b = (list(c) for c in np.asarray(means, dtype=np.float64))
    k = len(r)
    if k == 1 or 3 <= k < 128:
        r, g, b = ref_resample(r, 128), ref_resample(g, 128), ref_resample(b, 128)
    flat = np.concatenate([r, g, b])
    if len(flat) != 512:
        flat = ref_resample(flat, 512)
    return flat


# ----------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(4, 128), (5, 128), (17, 128), (127, 128), (384, 512), (387, 512),
                                 (6, 512), (600, 512), (129, 64)])
def test_resample_matches_scipy_spline(k, n):
    y = np.random.default_rng(k * 1000 + n).random((3, k))
    ours = resample(y, n)
    for c in range(3):
        np.testing.assert_allclose(ours[c], ref_resample(y[c], n), rtol=0, atol=1e-6)


def test_resample_small_k_rule_exact_values():
    np.testing.assert_array_equal(resample([0.3], 5), np.full(5, 0.3))
    np.testing.assert_allclose(resample([0.0, 1.0], 5), [0, 0.25, 0.5, 0.75, 1.0], atol=1e-15)
    np.testing.assert_allclose(resample([0.0, 1.0, 0.0], 5), [0, 0.5, 1.0, 0.5, 0], atol=1e-15)
    # A cubic spline reproduces a straight line exactly.
    for k in (4, 9, 200):
        np.testing.assert_allclose(resample(np.linspace(0.2, 0.8, k), 128), np.linspace(0.2, 0.8, 128), atol=1e-12)


def test_resampling_matrix_is_cached_and_read_only():
    m = resampling_matrix(10, 128)
    assert m is resampling_matrix(10, 128)
    assert m.shape == (128, 10) and not m.flags.writeable
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)  # constants are reproduced


@pytest.mark.parametrize("k", [1, 2, 3, 4, 127, 128, 129, 170, 171, 200])
def test_code_from_means_edge_cases_give_512_finite_values(k):
    means = np.random.default_rng(k).random((3, k))
    code = code_from_means(means)
    assert code.shape == (STYLE_DIM,)
    assert np.isfinite(code).all()
    np.testing.assert_allclose(code, ref_code(means), rtol=0, atol=1e-6)


def test_code_from_means_single_superpixel_is_flat_thirds():
    code = code_from_means(np.array([[0.9], [0.1], [0.5]]))
    np.testing.assert_allclose(code[:150], 0.9, atol=1e-6)
    np.testing.assert_allclose(code[192:320], 0.1, atol=1e-6)
    np.testing.assert_allclose(code[362:], 0.5, atol=1e-6)


def test_code_from_means_rejects_bad_shape():
    with pytest.raises(ValueError):
        code_from_means(np.zeros((3, 0)))
    with pytest.raises(ValueError):
        code_from_means(np.zeros((4, 5)))


# ----------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------
def _noise_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_flat_colour_region_gives_its_colour_in_each_third():
    image = _noise_image(64, 64)
    label = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    region = (yy - 30) ** 2 + (xx - 34) ** 2 < 20 ** 2
    colour = np.array([200, 40, 120], np.uint8)
    image[region] = colour
    label[region] = 1
    codes = extract_style_codes(image, label, label_nc=3, size=64)
    assert codes.shape == (3, STYLE_DIM) and codes.dtype == np.float32
    c = colour / 255.0
    # Away from the two R|G and G|B junctions (where the spline rings), each third is the colour.
    np.testing.assert_allclose(codes[1, :150], c[0], atol=1e-5)
    np.testing.assert_allclose(codes[1, 192:320], c[1], atol=1e-5)
    np.testing.assert_allclose(codes[1, 362:], c[2], atol=1e-5)
    means = superpixel_means(image.astype(np.float32) / 255, label, 1)
    np.testing.assert_allclose(means, np.repeat(c[:, None], means.shape[1], axis=1), atol=1e-6)
    np.testing.assert_allclose(codes[1], code_from_means(means), atol=1e-6)


def _ref_lebesgue(k, n):
    """max_i sum_j |M_ij| of the reference resampling map (scipy spline applied to unit vectors)."""
    return np.abs(np.stack([ref_resample(e, n) for e in np.eye(k)], axis=1)).sum(axis=1).max()


def test_two_colour_region_values_stay_between_the_colours():
    rng = np.random.default_rng(1)
    a = np.array([230, 25, 75], np.uint8)
    b = np.array([25, 180, 130], np.uint8)
    pick = rng.random((64, 64)) < 0.5
    image = np.where(pick[..., None], a, b).astype(np.uint8)
    label = np.zeros((64, 64), np.uint8)
    lo, hi = np.minimum(a, b) / 255.0, np.maximum(a, b) / 255.0
    # Superpixel means are convex combinations: exactly inside the per-channel box.
    means = superpixel_means(image.astype(np.float32) / 255, label, 0, n_segments=16)
    assert (means >= lo[:, None] - 1e-6).all() and (means <= hi[:, None] + 1e-6).all()
    code = extract_style_codes(image, label, label_nc=1, size=64, n_segments=16)[0]
    np.testing.assert_allclose(code, ref_code(means), atol=1e-5)
    # The code interpolates those means with cubic splines, which may overshoot between the
    # samples by at most (Lambda - 1) * half-range, Lambda = the product of the two maps'
    # Lebesgue constants (computed here from scipy's spline, not from spse.extractor).
    k = means.shape[1]
    lam = _ref_lebesgue(k, CHANNEL_DIM) * _ref_lebesgue(3 * CHANNEL_DIM, STYLE_DIM)
    mid, half = (lo.min() + hi.max()) / 2, (hi.max() - lo.min()) / 2
    assert (np.abs(code - mid) <= lam * half + 1e-6).all()


def test_two_colour_halves_means_are_convex_combinations():
    a = np.array([250, 10, 60], np.uint8)
    b = np.array([0, 200, 90], np.uint8)
    image = np.zeros((48, 48, 3), np.uint8)
    image[:, :24] = a
    image[:, 24:] = b
    label = np.zeros((48, 48), np.uint8)
    label[:4] = 2  # another class
    means = superpixel_means(image.astype(np.float32) / 255, label, 0)
    lo, hi = np.minimum(a, b) / 255.0, np.maximum(a, b) / 255.0
    assert (means >= lo[:, None] - 1e-6).all() and (means <= hi[:, None] + 1e-6).all()
    # Both colours appear as pure superpixels.
    assert np.isclose(means.T, a / 255.0, atol=1e-6).all(axis=1).any()
    assert np.isclose(means.T, b / 255.0, atol=1e-6).all(axis=1).any()


def test_absent_classes_are_zero_and_flagged():
    image = _noise_image(40, 40)
    label = np.zeros((40, 40), np.uint8)
    label[20:, :] = 3
    codes, present = extract_style_codes_and_presence(image, label, label_nc=5, size=40)
    assert present.tolist() == [True, False, False, True, False]
    assert not codes[[1, 2, 4]].any()
    assert codes[0].any() and codes[3].any()


def test_black_region_is_present_with_zero_code():
    image = np.zeros((32, 32, 3), np.uint8)
    label = np.zeros((32, 32), np.uint8)
    codes, present = extract_style_codes_and_presence(image, label, label_nc=2, size=32)
    assert present.tolist() == [True, False]
    assert not codes.any()


def test_dontcare_pixels_belong_to_no_class():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:16] = (10, 20, 30)
    image[16:] = (250, 250, 250)
    label = np.zeros((32, 32), np.uint8)
    label[16:] = 255
    codes = extract_style_codes(image, label, label_nc=2, size=32)
    np.testing.assert_allclose(codes[0, :150], 10 / 255, atol=1e-5)
    np.testing.assert_allclose(codes[0, 362:], 30 / 255, atol=1e-5)
    assert not codes[1].any()


def test_out_of_range_label_is_an_input_error():
    image = _noise_image(16, 16)
    label = np.zeros((16, 16), np.uint8)
    label[0, 0] = 7
    with pytest.raises(InputError, match="7"):
        extract_style_codes(image, label, label_nc=5, size=16)


@pytest.mark.parametrize("image,label", [
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8)),
    (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8)),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32)),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)),
])
def test_malformed_arrays_are_input_errors(image, label):
    with pytest.raises(InputError):
        extract_style_codes(image, label, label_nc=2, size=8)


def test_differing_sizes_are_resized_to_size():
    image = _noise_image(60, 80)
    label = np.zeros((30, 40), np.uint8)
    label[:, 20:] = 1
    codes, present = extract_style_codes_and_presence(image, label, label_nc=2, size=48)
    assert codes.shape == (2, STYLE_DIM) and present.all() and np.isfinite(codes).all()


def test_tiny_classes_give_finite_codes():
    # Classes of 1, 2, 3 and 5 pixels: K = 1, 2, 3, 5 superpixels.
    image = _noise_image(24, 24)
    label = np.zeros((24, 24), np.uint8)
    label[0, 0] = 1
    label[5, 5:7] = 2
    label[9, 3:6] = 3
    label[20, 10:15] = 4
    codes = extract_style_codes(image, label, label_nc=5, size=24)
    assert np.isfinite(codes).all()
    np.testing.assert_allclose(codes[1, :150], image[0, 0, 0] / 255, atol=1e-5)  # K = 1: flat thirds
    for j, k in ((2, 2), (3, 3), (4, 5)):
        means = superpixel_means(image.astype(np.float32) / 255, label, j)
        assert means.shape == (3, k)
        np.testing.assert_allclose(codes[j], ref_code(means), atol=1e-5)


def test_bounding_box_crop_matches_full_image_slic():
    # The crop runs the same algorithm as SLIC on the whole image, except that SLIC's search
    # window follows the array shape (scikit-image's regular_grid steps of the array), so a few
    # pixels can move: we require most classes to be identical and the others close; a wrong crop
    # (offset, mask) changes them all.
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:96, :96]
    smooth = np.stack([yy * 2.5, xx * 2.5, (yy + xx) * 1.2], axis=-1)
    image = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    label = np.zeros((96, 96), np.uint8)
    for j in range(1, 6):
        cy, cx, r = rng.integers(15, 80), rng.integers(15, 80), rng.integers(12, 24)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = j
    fast, present = extract_style_codes_and_presence(image, label, 6, size=96, crop=True)
    full, _ = extract_style_codes_and_presence(image, label, 6, size=96, crop=False)
    assert present.all()
    per_class = np.abs(fast - full).max(axis=1)
    assert (per_class == 0).sum() >= 4, per_class
    assert per_class.max() < 0.1, per_class
    # The crop result itself is deterministic.
    np.testing.assert_array_equal(fast, extract_style_codes(image, label, 6, size=96))
