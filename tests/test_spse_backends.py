"""SPSE backends: selection and the scikit-image fallback, the compile cache, single-threaded workers."""
import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image
from threadpoolctl import threadpool_info, threadpool_limits

import save_style_vector
from spse import extractor, masked_slic
from spse.extractor import extract_style_codes, resolve_backend
from spse.job import extract_dataset, format_summary
from util.errors import OptionError
from util.parallel import run_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_numba = pytest.mark.skipif(not masked_slic.AVAILABLE, reason="numba is not installed")


def _dataset(root, n=3, size=40):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = np.clip(np.stack([yy * 5, xx * 5, (yy + xx) * 3], -1) + rng.normal(0, 20, (size, size, 3)), 0, 255)
        lbl = np.zeros((size, size), np.uint8)
        lbl[(yy - 20) ** 2 + (xx - 15 - 3 * i) ** 2 < 120] = 1
        lbl[30:, :] = 2
        lbl[2:5, 30 + i] = 3  # a thin class
        os.makedirs(root / "img", exist_ok=True)
        os.makedirs(root / "lbl", exist_ok=True)
        Image.fromarray(img.astype(np.uint8)).save(root / "img" / f"s{i}.png")
        Image.fromarray(lbl).save(root / "lbl" / f"s{i}.png")
    return str(root / "img"), str(root / "lbl")


# ----------------------------------------------------------------------------
# Backend selection and the fallback
# ----------------------------------------------------------------------------
def test_resolve_backend():
    assert resolve_backend("skimage") == "skimage"
    assert resolve_backend("auto") == ("numba" if masked_slic.AVAILABLE else "skimage")
    with pytest.raises(OptionError, match="--backend"):
        resolve_backend("opencv")


@pytest.fixture
def numba_missing():
    """Reload spse.masked_slic as if ``import numba`` failed; restore it afterwards."""
    saved = sys.modules.get("numba")
    sys.modules["numba"] = None  # makes "import numba" raise ImportError
    try:
        importlib.reload(masked_slic)
        yield
    finally:
        if saved is None:
            del sys.modules["numba"]
        else:
            sys.modules["numba"] = saved
        importlib.reload(masked_slic)


def test_without_numba_auto_falls_back_to_scikit_image(numba_missing, tmp_path, capsys):
    assert not masked_slic.AVAILABLE and isinstance(masked_slic.IMPORT_ERROR, ImportError)
    assert resolve_backend("auto") == "skimage"
    with pytest.raises(OptionError, match="numba"):
        resolve_backend("numba")
    with pytest.raises(ImportError, match="numba"):
        masked_slic.masked_slic(np.zeros((4, 4, 3), np.float32), np.ones((4, 4), bool))
    img, lbl = _dataset(tmp_path)
    summary = extract_dataset(img, lbl, str(tmp_path / "codes"), 4, size=40, n_segments=8, workers=1,
                              progress=False)
    assert summary["written"] == 3 and summary["backend"] == "skimage"
    assert "SLIC backend skimage" in format_summary(summary)
    # The files are the scikit-image path's codes.
    for i in range(3):
        image = np.asarray(Image.open(tmp_path / "img" / f"s{i}.png"))
        label = np.asarray(Image.open(tmp_path / "lbl" / f"s{i}.png"))
        ref = extract_style_codes(image, label, 4, size=40, n_segments=8, backend="skimage")
        assert np.array_equal(np.load(tmp_path / "codes" / f"s{i}.npy"), ref)
    # Asking for numba explicitly is a clear option error (exit status 2).
    args = ["--image_dir", img, "--label_dir", lbl, "--save_dir", str(tmp_path / "c2"), "--label_nc", "4",
            "--size", "40", "--n_segments", "8", "--workers", "1", "--no_progress", "--backend", "numba"]
    assert save_style_vector.main(args) == 2
    assert "numba" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "c2") or not os.listdir(tmp_path / "c2")


@needs_numba
def test_cli_backends_write_identical_files(tmp_path, capsys):
    img, lbl = _dataset(tmp_path)
    base = ["--image_dir", img, "--label_dir", lbl, "--label_nc", "4", "--size", "40", "--workers", "2",
            "--no_progress"]
    assert save_style_vector.main(base + ["--save_dir", str(tmp_path / "sk"), "--backend", "skimage"]) == 0
    assert "SLIC backend skimage" in capsys.readouterr().out
    assert save_style_vector.main(base + ["--save_dir", str(tmp_path / "nb")]) == 0  # auto
    assert "SLIC backend numba" in capsys.readouterr().out
    for i in range(3):
        a = np.load(tmp_path / "sk" / f"s{i}.npy")
        b = np.load(tmp_path / "nb" / f"s{i}.npy")
        assert np.abs(a).max() > 0.1
        assert np.array_equal(a, b)


def test_float64_images_take_the_scikit_image_path():
    # The compiled SLIC reproduces scikit-image's float32 arithmetic only; other inputs are not
    # sent to it (superpixel_means accepts any float image).
    rng = np.random.default_rng(2)
    image = rng.random((24, 24, 3))
    label = np.zeros((24, 24), np.int32)
    label[5:20, 3:15] = 1
    a = extractor.superpixel_means(image, label, 1, n_segments=8, backend="auto")
    b = extractor.superpixel_means(image, label, 1, n_segments=8, backend="skimage")
    assert np.array_equal(a, b)


# ----------------------------------------------------------------------------
# Compile cache
# ----------------------------------------------------------------------------
_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import masked_slic as m
m.warm_up()
kernels = [m._chunks, m._kmeans, m._nearest_centre_guess, m._slic_pass]
print(json.dumps({"hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
                  "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
                  "paths": sorted({str(k.stats.cache_path) for k in kernels}),
                  "cache_dir": m.cache_dir()}))
"""


def _probe(package, env):
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(package)], capture_output=True, text=True, env=env,
                          timeout=600, cwd=str(package))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@needs_numba
def test_compile_cache_goes_to_the_user_cache_folder_not_the_package(tmp_path):
    # The module in a read-only folder (as an installed package may be): the compiled kernels are
    # cached in the user cache folder, never next to the module, and a new process loads them.
    package = tmp_path / "pkg"
    package.mkdir()
    shutil.copy(os.path.join(ROOT, "spse", "masked_slic.py"), package / "masked_slic.py")
    os.chmod(package / "masked_slic.py", stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    os.chmod(package, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    try:
        first = _probe(package, env)
        second = _probe(package, env)
        assert _files(package) == ["masked_slic.py"]  # nothing written next to the module
    finally:
        os.chmod(package, stat.S_IRWXU)
    expected = os.path.join(str(tmp_path / "cache"), "superstylenet", "numba")
    assert first["cache_dir"] == expected
    assert all(p.startswith(expected) for p in first["paths"])
    assert any(f.endswith(".nbi") for f in _files(expected)) and any(f.endswith(".nbc") for f in _files(expected))
    assert first["misses"] > 0  # compiled and saved
    assert second["misses"] == 0 and second["hits"] >= 4  # loaded, nothing compiled


@needs_numba
def test_numba_cache_dir_is_honoured(tmp_path):
    code = ("import json, sys; from spse import masked_slic as m; "
            "print(json.dumps([m.cache_dir(), str(m._slic_pass.stats.cache_path)]))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    folder, path = json.loads(proc.stdout.strip().splitlines()[-1])
    assert folder == str(tmp_path / "nc") and path.startswith(folder)


@needs_numba
def test_no_cache_location_compiles_in_memory_with_a_warning():
    namespace = {}
    exec(compile("def add_one(x):\n    return x + 1\n", "<no source file>", "exec"), namespace)
    with pytest.warns(RuntimeWarning, match="compile cache unavailable"):
        fn = masked_slic._jit(namespace["add_one"])
    assert fn(41) == 42


# ----------------------------------------------------------------------------
# Workers keep BLAS at one thread
# ----------------------------------------------------------------------------
def blas_threads(_task):
    """Largest BLAS thread-pool size in this process (module level: picklable for the pool)."""
    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)


def test_workers_keep_blas_at_one_thread():
    import numpy  # noqa: F401 - its BLAS is loaded before the workers fork

    if not any(i["user_api"] == "blas" for i in threadpool_info()):
        pytest.skip("no BLAS library visible to threadpoolctl")
    with threadpool_limits(limits=2, user_api="blas"):
        if blas_threads(None) < 2:
            pytest.skip("this BLAS cannot use two threads")
        # Forked workers inherit the parent's 2-thread BLAS; the pool initializer sets it to 1.
        assert list(run_tasks(blas_threads, [0, 1, 2, 3], workers=2, progress=False)) == [1, 1, 1, 1]
        # In-process: 1 while the tasks run, the caller's setting again afterwards.
        assert list(run_tasks(blas_threads, [0, 1], workers=1, progress=False)) == [1, 1]
        assert blas_threads(None) == 2


@needs_numba
def test_job_with_workers_after_warm_up_matches_in_process(tmp_path):
    img, lbl = _dataset(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no compile-cache warning on this machine
        s1 = extract_dataset(img, lbl, str(tmp_path / "w1"), 4, size=40, workers=1, progress=False)
    s2 = extract_dataset(img, lbl, str(tmp_path / "w2"), 4, size=40, workers=2, progress=False)
    assert s1["backend"] == s2["backend"] == "numba" and s1["written"] == s2["written"] == 3
    for i in range(3):
        assert np.array_equal(np.load(tmp_path / "w1" / f"s{i}.npy"), np.load(tmp_path / "w2" / f"s{i}.npy"))
