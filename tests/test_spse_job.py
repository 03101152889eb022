"""Tests of the SPSE dataset job (spse/job.py) and its CLI (save_style_vector.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import save_style_vector
from data.codes import load_codes
from data.image_io import read_label, read_rgb
from spse.extractor import extract_style_codes
from spse.job import PARAMS_FILE, extract_dataset, format_summary, plan_items, shard
from util.errors import InputError, OptionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABEL_NC = 4
SIZE = 32
FAST = dict(size=SIZE, n_segments=8, progress=False)


def _write_pair(root, name, seed, label_size=(24, 24), bad_value=None):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    lbl = np.zeros(label_size, np.uint8)
    lbl[: label_size[0] // 2] = 1
    lbl[:, : label_size[1] // 3] = 2
    if bad_value is not None:
        lbl[0, 0] = bad_value
    os.makedirs(root / "img", exist_ok=True)
    os.makedirs(root / "lbl", exist_ok=True)
    Image.fromarray(img).save(root / "img" / f"{name}.png")
    Image.fromarray(lbl).save(root / "lbl" / f"{name}.png")


def _dataset(tmp_path, names=("a1", "a2", "a10", "b")):
    for i, n in enumerate(names):
        _write_pair(tmp_path, n, i)
    return str(tmp_path / "img"), str(tmp_path / "lbl")


def _run(tmp_path, save="codes", **kw):
    args = dict(FAST)
    args.update(kw)
    return extract_dataset(str(tmp_path / "img"), str(tmp_path / "lbl"), str(tmp_path / save), LABEL_NC, **args)


def test_writes_one_valid_code_file_per_image(tmp_path):
    _dataset(tmp_path)
    summary = _run(tmp_path, workers=1)
    assert (summary["written"], summary["skipped"], summary["failed"]) == (4, 0, 0)
    # class 3 is absent from every image
    assert summary["absent_classes"] == 4 and summary["absent_per_class"] == [0, 0, 0, 4]
    for n in ("a1", "a2", "a10", "b"):
        codes = load_codes(tmp_path / "codes" / f"{n}.npy", LABEL_NC)
        expected = extract_style_codes(read_rgb(tmp_path / "img" / f"{n}.png"),
                                       read_label(tmp_path / "lbl" / f"{n}.png"), LABEL_NC, size=SIZE, n_segments=8)
        np.testing.assert_array_equal(codes, expected)
        assert np.load(tmp_path / "codes" / f"{n}.npy").dtype == np.float32
    text = format_summary(summary)
    assert "4 written, 0 skipped, 0 failed, 4 classes absent" in text


def test_process_pool_gives_the_same_files(tmp_path):
    _dataset(tmp_path)
    s1 = _run(tmp_path, save="w1", workers=1)
    s2 = _run(tmp_path, save="w2", workers=2)
    assert s1["written"] == s2["written"] == 4
    for n in ("a1", "a2", "a10", "b"):
        np.testing.assert_array_equal(np.load(tmp_path / "w1" / f"{n}.npy"), np.load(tmp_path / "w2" / f"{n}.npy"))


def test_pairing_problems_are_reported_and_the_rest_is_written(tmp_path):
    _dataset(tmp_path)
    os.remove(tmp_path / "lbl" / "a2.png")       # image without label
    os.remove(tmp_path / "img" / "b.png")        # label without image
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img" / "a1.jpg")  # duplicate stem
    summary = _run(tmp_path, workers=1)
    assert summary["written"] == 1 and summary["failed"] == 3
    msgs = "\n".join(summary["failures"])
    assert "a2.png: no matching label" in msgs
    assert os.path.join("lbl", "b.png") + ": no matching image" in msgs
    assert "several images share the stem 'a1'" in msgs
    assert os.path.exists(tmp_path / "codes" / "a10.npy")


def test_corrupt_image_and_out_of_range_label_do_not_stop_the_batch(tmp_path):
    _dataset(tmp_path)
    (tmp_path / "img" / "a1.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    _write_pair(tmp_path, "a2", 7, bad_value=9)
    _write_pair(tmp_path, "b", 8, bad_value=255)  # don't care: allowed
    summary = _run(tmp_path, workers=1)
    assert summary["written"] == 2 and summary["failed"] == 2
    corrupt, out_of_range = summary["failures"]
    assert "a1.png" in corrupt and "corrupt" in corrupt
    assert "a2.png" in out_of_range and "9" in out_of_range and "label_nc=4" in out_of_range
    assert not os.path.exists(tmp_path / "codes" / "a1.npy")
    assert os.path.exists(tmp_path / "codes" / "b.npy")


def test_size_mismatch_is_resolved_but_not_an_aspect_ratio_mismatch(tmp_path):
    # sizes may differ (both are resized to size x size); aspect ratios may not (data.image_io.check_aspect_ratio)
    _dataset(tmp_path, names=("x", "y"))
    _write_pair(tmp_path, "x", 0, label_size=(12, 20))
    _write_pair(tmp_path, "y", 1, label_size=(12, 12))
    summary = _run(tmp_path, workers=1)
    assert summary["written"] == 1 and summary["failed"] == 1 and summary["warnings"] == []
    (failure,) = summary["failures"]
    assert "x.png: image is 24x24" in failure and "is 20x12" in failure and "same aspect ratio" in failure
    assert os.path.exists(tmp_path / "codes" / "y.npy")


def test_resume_after_a_killed_run(tmp_path):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    out = tmp_path / "codes"
    kept = out / "a1.npy"
    before = kept.stat().st_mtime_ns, kept.read_bytes()
    # What a killed run can leave: a missing file, a truncated file (only from a non-atomic
    # writer), and a temporary file of an interrupted atomic write.
    os.remove(out / "a2.npy")
    data = (out / "a10.npy").read_bytes()
    (out / "a10.npy").write_bytes(data[: len(data) // 2])
    stale = out / ".b.npy.k9x_2abc.tmp"
    stale.write_bytes(b"partial")
    os.remove(out / "b.npy")
    summary = _run(tmp_path, workers=1)
    assert (summary["written"], summary["skipped"], summary["failed"]) == (3, 1, 0)
    assert not stale.exists()
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == before
    for n in ("a2", "a10", "b"):
        load_codes(out / f"{n}.npy", LABEL_NC)
    warnings = "\n".join(summary["warnings"])
    assert "a10.npy: existing code file is invalid" in warnings and ".b.npy.k9x_2abc.tmp" in warnings
    # Nothing left to do.
    again = _run(tmp_path, workers=1)
    assert (again["written"], again["skipped"]) == (0, 4)


def test_overwrite_recomputes_valid_files(tmp_path):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    summary = _run(tmp_path, workers=1, overwrite=True)
    assert (summary["written"], summary["skipped"]) == (4, 0)


def test_wrong_label_nc_file_is_recomputed(tmp_path):
    _dataset(tmp_path, names=("x",))
    np.save(tmp_path / "x.npy", np.zeros((LABEL_NC + 1, 512), np.float32))
    os.makedirs(tmp_path / "codes")
    os.replace(tmp_path / "x.npy", tmp_path / "codes" / "x.npy")
    summary = _run(tmp_path, workers=1)
    assert summary["written"] == 1
    assert load_codes(tmp_path / "codes" / "x.npy", LABEL_NC).shape == (LABEL_NC, 512)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    _dataset(tmp_path, names=("x", "y"))
    out = tmp_path / "codes"
    os.makedirs(out)
    old = np.full((LABEL_NC, 512), 0.25, np.float32)
    np.save(out / "y.npy", old)

    real_replace = os.replace

    def failing_replace(src, dst):
        if not str(dst).endswith(".npy"):
            return real_replace(src, dst)  # the parameter record
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    summary = _run(tmp_path, workers=1, overwrite=True)
    monkeypatch.undo()
    assert summary["written"] == 0 and summary["failed"] == 2
    assert all("disk full" in m for m in summary["failures"])
    assert not os.path.exists(out / "x.npy")
    np.testing.assert_array_equal(np.load(out / "y.npy"), old)  # the previous file is intact
    assert [n for n in os.listdir(out) if n.endswith(".tmp")] == []


def test_crash_after_temporary_file_written_leaves_no_partial_file(tmp_path, monkeypatch):
    _dataset(tmp_path, names=("x",))
    seen = []

    real_fsync = os.fsync

    def failing_fsync(fd):
        size = os.fstat(fd).st_size  # the temporary file holds data at this point
        if size < 1024:  # the parameter record (a short JSON); a code file holds 2 x 512 float32
            return real_fsync(fd)
        seen.append(size)
        raise OSError("I/O error (simulated)")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    summary = _run(tmp_path, workers=1)
    monkeypatch.undo()
    assert seen and seen[0] > 0
    assert summary["failed"] == 1 and "I/O error" in summary["failures"][0]
    assert os.listdir(tmp_path / "codes") == [PARAMS_FILE]


def test_shards_are_disjoint_and_cover_everything(tmp_path):
    names = ("s1", "s2", "s3", "s10", "s11", "t")
    _dataset(tmp_path, names=names)
    os.remove(tmp_path / "lbl" / "t.png")  # one unpaired image: reported by exactly one shard
    seen, failed = [], []
    for i in range(3):
        summary = _run(tmp_path, workers=1, num_shards=3, shard_index=i)
        seen.append(summary["written"])
        failed.append(summary["failed"])
    assert sum(seen) == 5 and sum(failed) == 1
    assert sorted(os.listdir(tmp_path / "codes")) == sorted([PARAMS_FILE] + [f"{n}.npy" for n in names if n != "t"])


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5])
def test_shard_function_partitions_in_natural_order(num_shards):
    paths = [f"/d/img{i}.png" for i in (10, 2, 1, 33, 7, 4, 21)]
    items = plan_items(paths, [p.replace("/d/", "/l/") for p in paths])
    stems = [it[0] for it in items]
    assert stems == ["img1", "img2", "img4", "img7", "img10", "img21", "img33"]
    parts = [[it[0] for it in shard(items, num_shards, i)] for i in range(num_shards)]
    flat = [s for p in parts for s in p]
    assert sorted(flat) == sorted(stems) and len(flat) == len(set(flat))


def test_release_layout_is_written_and_read_back(tmp_path):
    _dataset(tmp_path, names=("x",))
    _run(tmp_path, save="lean", workers=1)
    _run(tmp_path, save="release", workers=1, layout="release")
    raw = np.load(tmp_path / "release" / "x.npy")
    assert raw.shape == (LABEL_NC, 1, 1, 1, 512) and raw.dtype == np.float64
    np.testing.assert_array_equal(load_codes(tmp_path / "release" / "x.npy", LABEL_NC),
                                  load_codes(tmp_path / "lean" / "x.npy", LABEL_NC))


@pytest.mark.parametrize("kw", [dict(num_shards=2, shard_index=2), dict(workers=0), dict(layout="fat"),
                                dict(size=0), dict(compactness=0)])
def test_bad_options_raise_option_error(tmp_path, kw):
    _dataset(tmp_path, names=("x",))
    with pytest.raises(OptionError):
        _run(tmp_path, **kw)


def test_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        extract_dataset(str(tmp_path / "nope"), str(tmp_path / "lbl"), str(tmp_path / "c"), 3, progress=False)


def test_cli_exit_status(tmp_path, capsys):
    img, lbl = _dataset(tmp_path)
    base = ["--image_dir", img, "--label_dir", lbl, "--save_dir", str(tmp_path / "c"), "--label_nc", str(LABEL_NC),
            "--size", str(SIZE), "--n_segments", "8", "--workers", "1", "--no_progress"]
    assert save_style_vector.main(base) == 0
    assert "4 written" in capsys.readouterr().out
    _write_pair(tmp_path, "b", 3, bad_value=17)
    assert save_style_vector.main(base + ["--overwrite"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "b.png" in out and "17" in out
    assert save_style_vector.main(base + ["--num_shards", "2", "--shard_index", "5"]) == 2
    assert "--shard_index" in capsys.readouterr().err


def test_cli_runs_as_a_script(tmp_path):
    img, lbl = _dataset(tmp_path, names=("x",))
    _write_pair(tmp_path, "y", 1, bad_value=99)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "save_style_vector.py"), "--image_dir", img,
                           "--label_dir", lbl, "--save_dir", str(tmp_path / "c"), "--label_nc", str(LABEL_NC),
                           "--size", str(SIZE), "--n_segments", "8", "--workers", "1", "--layout", "release"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "1 written, 0 skipped, 1 failed" in proc.stdout
    assert load_codes(tmp_path / "c" / "x.npy", LABEL_NC).shape == (LABEL_NC, 512)


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="the patched function reaches the workers only through fork")
def test_a_dying_worker_is_reported_not_raised(tmp_path, monkeypatch):
    import spse.job as job

    _dataset(tmp_path)
    real = job.process_one

    def dies_on_a2(image_path, *args, **kwargs):
        if image_path.endswith("a2.png"):
            os._exit(3)  # like a worker killed by the OOM killer
        return real(image_path, *args, **kwargs)

    monkeypatch.setattr(job, "process_one", dies_on_a2)
    summary = _run(tmp_path, workers=2)
    assert summary["failed"] >= 1 and summary["written"] + summary["failed"] == 4
    assert any("a2.png: worker process died" in m for m in summary["failures"])
    monkeypatch.undo()
    again = _run(tmp_path, workers=1)  # the next run finishes the job
    assert again["written"] + again["skipped"] == 4 and again["failed"] == 0


# ------------------------------------------------------------------------------------ the parameter record
def _snapshot(folder):
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


@pytest.mark.parametrize("changed, shown", [
    (dict(size=16), "--size 32 (this run: 16)"),
    (dict(n_segments=4), "--n_segments 8 (this run: 4)"),
    (dict(compactness=20), "--compactness 10 (this run: 20)"),
    (dict(layout="release"), "--layout lean (this run: release)"),
    (dict(crop=False), "--no_crop not given (this run: given)"),
])
def test_changed_parameters_are_refused_unless_overwrite(tmp_path, changed, shown):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    out = tmp_path / "codes"
    record = json.loads((out / PARAMS_FILE).read_text())
    assert record == {"version": 1, "label_nc": LABEL_NC, "size": SIZE, "n_segments": 8, "compactness": 10.0,
                      "layout": "lean", "crop": True}
    before = _snapshot(out)
    with pytest.raises(OptionError) as e:
        _run(tmp_path, workers=1, **changed)
    msg = str(e.value)
    assert msg.startswith(f"--save_dir {out}: its code files were extracted with other parameters, recorded in "
                          f"{out / PARAMS_FILE}: {shown};")
    assert "Rerun with --label_nc 4 --size 32 --n_segments 8 --compactness 10 --layout lean" in msg
    assert "or pass --overwrite to recompute every code file with the new values" in msg
    assert _snapshot(out) == before  # nothing changed
    summary = _run(tmp_path, workers=1, overwrite=True, **changed)
    assert summary["written"] == 4 and summary["failed"] == 0
    new = json.loads((out / PARAMS_FILE).read_text())
    assert all(new[k] == v for k, v in changed.items())
    assert [n for n in os.listdir(out) if n.startswith(".")] == []  # no marker left
    assert _run(tmp_path, workers=1, **changed)["skipped"] == 4  # the new values now resume


def test_an_interrupted_recomputation_must_be_finished_with_overwrite(tmp_path, monkeypatch):
    import spse.job

    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    real = spse.job.run_tasks

    def killed_after_one(fn, tasks, *args, **kwargs):
        for i, result in enumerate(real(fn, tasks, *args, **kwargs)):
            yield result
            if i == 0:
                raise KeyboardInterrupt  # the run dies after writing one file of the new kind

    monkeypatch.setattr(spse.job, "run_tasks", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, workers=1, size=16, overwrite=True)
    monkeypatch.undo()
    with pytest.raises(OptionError, match="did not finish .*rerun it with --overwrite to finish"):
        _run(tmp_path, workers=1, size=16)  # the record says 16, but three files still hold size-32 codes
    summary = _run(tmp_path, workers=1, size=16, overwrite=True)
    assert summary["written"] == 4
    assert _run(tmp_path, workers=1, size=16)["skipped"] == 4
    for n in ("a1", "a2", "a10", "b"):
        expected = extract_style_codes(read_rgb(tmp_path / "img" / f"{n}.png"),
                                       read_label(tmp_path / "lbl" / f"{n}.png"), LABEL_NC, size=16, n_segments=8)
        np.testing.assert_array_equal(load_codes(tmp_path / "codes" / f"{n}.npy", LABEL_NC), expected)


def test_a_stem_that_fails_a_recomputation_loses_its_stale_code(tmp_path):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    with open(tmp_path / "img" / "b.png", "wb") as f:
        f.write(b"not a png")
    summary = _run(tmp_path, workers=1, size=16, overwrite=True)
    assert summary["written"] == 3 and summary["failed"] == 1
    assert "its code file of the previous parameters" in summary["failures"][0]
    assert not (tmp_path / "codes" / "b.npy").exists()


def test_codes_without_a_record_are_kept_with_a_warning(tmp_path):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    os.remove(tmp_path / "codes" / PARAMS_FILE)
    summary = _run(tmp_path, workers=1)
    assert summary["skipped"] == 4
    assert any("holds code files but no record of their parameters" in w for w in summary["warnings"])
    assert (tmp_path / "codes" / PARAMS_FILE).is_file()


def test_cli_refuses_other_parameters_with_one_error_line(tmp_path, capsys):
    image_dir, label_dir = _dataset(tmp_path)
    argv = ["--image_dir", image_dir, "--label_dir", label_dir, "--save_dir", str(tmp_path / "codes"),
            "--label_nc", str(LABEL_NC), "--workers", "1", "--no_progress", "--n_segments", "8"]
    assert save_style_vector.main(argv + ["--size", "32"]) == 0
    capsys.readouterr()
    assert save_style_vector.main(argv + ["--size", "24"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --save_dir") and "--size 32 (this run: 24)" in err[0]


def test_an_unreadable_record_needs_overwrite(tmp_path):
    _dataset(tmp_path)
    _run(tmp_path, workers=1)
    record = tmp_path / "codes" / PARAMS_FILE
    record.write_text("{truncated")
    with pytest.raises(InputError, match=f"^{record}: unreadable record of the extraction parameters .*--overwrite"):
        _run(tmp_path, workers=1)
    assert _run(tmp_path, workers=1, overwrite=True)["written"] == 4
    assert json.loads(record.read_text())["size"] == SIZE
