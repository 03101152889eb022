"""The SPSE benchmark's own parts: its baseline and its timing of scikit-image's slic internals."""
import importlib.util
import os

import numpy as np
import pytest

from spse.extractor import extract_style_codes, extract_style_codes_and_presence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_spse", os.path.join(ROOT, "benchmarks", "bench_spse.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_case(bench):
    image = bench.load_photo("astronaut")[::8, ::8]  # 64 x 64
    label = bench.make_label(image, 6, "parts")
    return np.ascontiguousarray(image), label


def test_baseline_equals_our_uncropped_pipeline(bench, small_case):
    image, label = small_case
    ref = bench.baseline_codes(image, label, 8, size=64)
    ours, present = extract_style_codes_and_presence(image, label, 8, size=64, crop=False)
    assert present.sum() >= 4
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_slic_internals_are_timed_and_restored(bench, small_case):
    import skimage.segmentation.slic_superpixels as slic_module
    image, label = small_case
    originals = slic_module._slic_cython, slic_module._get_mask_centroids
    clock = {}
    with bench.slic_internals_timed(clock) as timed:
        codes = extract_style_codes(image, label, 8, size=64)
    assert timed
    assert set(clock) == {"iterations", "seeding"}
    assert clock["iterations"] > 0 and clock["seeding"] > 0
    assert (slic_module._slic_cython, slic_module._get_mask_centroids) == originals
    # The instrumentation does not change the result.
    np.testing.assert_array_equal(codes, extract_style_codes(image, label, 8, size=64))


def test_slic_internals_restored_after_an_error(bench):
    import skimage.segmentation.slic_superpixels as slic_module
    originals = slic_module._slic_cython, slic_module._get_mask_centroids
    with pytest.raises(RuntimeError, match="boom"):
        with bench.slic_internals_timed({}):
            raise RuntimeError("boom")
    assert (slic_module._slic_cython, slic_module._get_mask_centroids) == originals
