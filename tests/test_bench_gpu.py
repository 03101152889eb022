"""Smoke test of benchmarks/bench_gpu.py on the CPU (--tiny): every configuration runs and is reported.

Not a measurement: nothing here depends on the timings, only on the script
running this project's trainer and the literal reference through the same
training step and inference call, in both precisions (CPU bfloat16 autocast
for 'amp'), and producing a complete table.
"""
import json
import math

from tests._benchmarks import import_benchmark


def test_bench_gpu_tiny_cpu_run_reports_every_configuration(tmp_path):
    bench_gpu = import_benchmark("bench_gpu")
    out = tmp_path / "gpu.json"
    result = bench_gpu.main(["--device", "cpu", "--tiny", "--batches", "2", "--variants", "reference,ours_cl",
                             "--no_vgg", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(result["results"]))
    runs = {(r["variant"], r["precision"], r["task"], r["batch"]): r for r in result["results"]}
    assert set(runs) == {(v, p, t, 2) for v in ("reference", "ours_cl") for p in ("fp32", "amp")
                         for t in ("train", "inference")}
    for key, r in runs.items():
        assert not r["oom"] and r["img_per_s"] > 0 and math.isfinite(r["img_per_s"]), key
        assert r["autocast_dtype"] == ("bfloat16" if key[1] == "amp" else None), key
        if key[2] == "train":
            assert r["losses_finite"], key
    flops = result["flops_per_image"]
    assert flops["train"] > 3 * flops["inference"] > 0  # G fwd+bwd, D fwd+bwd twice, VGG vs one G fwd
    rows = [ln for ln in result["table"].splitlines() if ln.startswith("| train") or ln.startswith("| inference")]
    assert len(rows) == 4 and all(ln.count("|") == rows[0].count("|") for ln in rows)
    assert "ours_cl / reference" in result["table"]
    assert bench_gpu.main(["--merge", str(out)])["table"] == result["table"]


def test_bench_gpu_feeds_training_from_files_and_reports_the_compiled_graphs():
    """The compiled variant (aot_eager here) is fed by the DataLoader and prints dynamo's counts: no break."""
    bench_gpu = import_benchmark("bench_gpu")
    result = bench_gpu.main(["--device", "cpu", "--tiny", "--variants", "ours_compile", "--tasks", "train",
                             "--precisions", "fp32", "--no_vgg", "--no_flops", "--compile_backend", "aot_eager"])
    (r,) = result["results"]
    assert r["data"] == "loader" and r["loader_workers"] == 0 and r["losses_finite"]  # --nThreads -1 on the CPU
    # G with grad and D with frozen parameters (G step), G without grad and D (D step)
    assert r["dynamo"] == {"graphs": 4, "breaks": 0, "frames": 4}
