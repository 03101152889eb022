"""The SPSE benchmark's own parts: its baseline, and a tiny run of the whole script."""

import numpy as np
import pytest

from spse import masked_slic
from spse.extractor import extract_style_codes_and_presence


@pytest.fixture(scope="module")
def small_case(bench_spse):
    image = bench_spse.load_photo("astronaut")[::8, ::8]  # 64 x 64
    label = bench_spse.make_label(image, 6, "parts")
    return np.ascontiguousarray(image), label


def test_baseline_equals_our_uncropped_pipeline(bench_spse, small_case):
    image, label = small_case
    ref = bench_spse.baseline_codes(image, label, 8, size=64)
    ours, present = extract_style_codes_and_presence(image, label, 8, size=64, crop=False)
    assert present.sum() >= 4
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.skipif(not masked_slic.AVAILABLE, reason="numba is not installed")
def test_benchmark_runs_and_checks_every_label_kind(bench_spse, capsys):
    # A tiny run (2 images at 48 x 48, one worker): the script's own exactness checks
    # (numba codes == scikit-image codes, no-crop == baseline) run for every kind.
    assert bench_spse.main(["--quick", "--size", "48", "--workers", "1", "--repeats", "1", "--dataset_images", "100"]) == 0
    out = capsys.readouterr().out
    for kind in ("regions", "parts", "face", "quantised"):
        assert f"## labels={kind}" in out
        assert f"projected for 100 images like '{kind}'" in out
    assert out.count("numba codes == scikit-image codes (bit for bit)") == 4
    assert "| extract_dataset --workers 1, numba" in out
