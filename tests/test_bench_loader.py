"""Smoke test of benchmarks/bench_loader.py (--tiny): both paths run on both data sets and are reported.

Not a measurement: nothing here depends on the timings, only on the script
building both data sets, running the baseline and this loader over the same
items (the labels agree exactly, the photos within a few levels) and
writing a complete report.
"""
import json

from tests._benchmarks import import_benchmark


def test_bench_loader_tiny_run_reports_both_paths_on_both_data_sets(tmp_path):
    bench_loader = import_benchmark("bench_loader")
    out = tmp_path / "loader.json"
    result = bench_loader.main(["--tiny", "--n", "4", "--batch", "2", "--repeats", "1", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["report"] == result["report"]
    for kind in ("raw", "pre_resized"):
        r = result[kind]
        assert r["items"] == 4
        assert r["baseline_img_per_core_s"] > 0 and r["ours_img_per_core_s"] > 0
        assert r["image_bytes_per_batch"]["ours"] * 4 == r["image_bytes_per_batch"]["baseline"]  # uint8 vs float32
        assert r["photo_difference_levels"]["max"] <= 8
    assert result["raw"]["photo_difference_levels"]["max"] > 0  # 128² JPEGs decoded at 64² for a 36² resize
    assert result["pre_resized"]["photo_difference_levels"]["max"] == 0  # no reduced decode: the same photos
    assert result["report"].count("img/s per core") == 4 and result["peak_rss_mib"] > 0
