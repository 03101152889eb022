#!/usr/bin/env bash
# The checks that need a GPU, in one command of about 8 minutes on one H200:
# the suite's CUDA tests, then benchmarks/bench_gpu.py's default matrix.
# Writes gpu.txt (the GPU), tests.txt, bench.txt and gpu.json into $OUT
# (default ./gpu_check). Usage: scripts/gpu_check.sh   (PYTHON=... to choose the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
# CUDA tests: the ones that skip without a GPU
timeout 150 "$PY" -m pytest -q -rs tests/test_cuda.py \
    "tests/test_generator.py::test_model_runs_on_cuda_and_moves_the_batch" 2>&1 | tee "$OUT/tests.txt"
tests_rc=${PIPESTATUS[0]}
timeout 360 "$PY" benchmarks/bench_gpu.py --budget_s 270 --json "$OUT/gpu.json" 2>&1 | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}
echo "tests exit status $tests_rc, benchmark exit status $bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
