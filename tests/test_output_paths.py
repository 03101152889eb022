"""Output folders and files: checked before any work, and a full disk loses nothing.

One helper (``util.io.check_output_dir`` / ``check_output_file``) refuses an
output path that is a file, lies under a file, or cannot be written, with one
``error:`` line naming the flag, in save_style_vector.py, test.py,
mix_styles.py and evaluate.py. test.py writes its page through a staging
folder (``util.io.staged_folder``): a full disk (``ENOSPC``) gives one error
line and leaves the previous results exactly as they were.

Read-only folders and real full disks use a tmpfs mounted by the test where
the machine allows it (root, ``mount`` available); otherwise those tests use
permission bits (not as root) or are skipped.
"""
import contextlib
import errno
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import evaluate
import mix_styles
import save_style_vector
import test as test_script
import util.io
from tests._synthetic import build_synthetic_dataset
from util.cli import run_cli
from util.errors import OutputError
from util.io import check_output_dir, check_output_file, save_image_atomic, staged_folder, write_text_atomic

LABEL_NC = 2


@contextlib.contextmanager
def mounted_tmpfs(path, size_kib, read_only=False):
    """A tmpfs of ``size_kib`` KiB at ``path`` (skips the test where none can be mounted)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    os.makedirs(path, exist_ok=True)
    options = f"size={size_kib}k,mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def read_only_folder(path):
    """A folder where no file can be created: a read-only tmpfs, or mode 0555 when not root."""
    if os.name == "posix" and os.geteuid() != 0:
        os.makedirs(path)
        os.chmod(path, 0o555)
        try:
            yield path
        finally:
            os.chmod(path, 0o755)
        return
    with mounted_tmpfs(path, 64, read_only=True):
        yield path


def _one_error_line(capsys):
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "%|" not in ln]  # no progress bars
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture()
def data(tmp_path):
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=3, size=32, label_nc=LABEL_NC)
    return {"images": images, "labels": labels, "codes": codes, "root": tmp_path}


@pytest.fixture()
def checkpoint(data):
    """An untrained tiny generator with its opt.json (name ``tiny``)."""
    from models.checkpoints import network_path, save_network
    from models.superstylenet_model import SuperStyleNetModel
    from options.test_options import TestOptions

    options = TestOptions()
    opt = options.parse(["--name", "tiny", "--checkpoints_dir", str(data["root"] / "ck"), "--label_nc",
                         str(LABEL_NC), "--crop_size", "32", "--ngf", "4", "--gpu_ids", "-1"])
    options.save_options(opt)
    torch.manual_seed(0)
    save_network(SuperStyleNetModel(opt).netG, network_path(str(data["root"] / "ck" / "tiny"), "latest", "G"))
    return ["--name", "tiny", "--checkpoints_dir", str(data["root"] / "ck"), "--gpu_ids", "-1"]


def _no_work(monkeypatch):
    """Make the first step of real work fail the test: the checks must come before it."""
    import models.inference
    from evaluation import metrics
    from spse import job

    def started(*args, **kwargs):
        pytest.fail("work started before the output path was checked")

    monkeypatch.setattr(models.inference, "load_inference_model", started)
    monkeypatch.setattr(test_script, "load_inference_model", started)
    monkeypatch.setattr(metrics, "load_pair", started)
    monkeypatch.setattr(job, "plan_items", started)


def _commands(data, checkpoint, out):
    """(flag, command returning the exit status) for each script, writing to ``out``."""
    mix = checkpoint + ["--source_labels", os.path.join(data["labels"], "img0.png"), "--source_codes",
                        os.path.join(data["codes"], "img0.npy"), "--style_codes",
                        os.path.join(data["codes"], "img1.npy"), "--classes", "1", "--no_progress"]
    return {
        "--save_dir": lambda: save_style_vector.main(
            ["--image_dir", data["images"], "--label_dir", data["labels"], "--save_dir", out, "--label_nc",
             str(LABEL_NC), "--workers", "1", "--no_progress"]),
        "--results_dir": lambda: run_cli(test_script.main, checkpoint + [
            "--results_dir", out, "--label_dir", data["labels"], "--instance_dir", data["codes"]]),
        "--mix_dir": lambda: run_cli(mix_styles.main, mix + ["--mix_dir", out]),
        "--output": lambda: evaluate.main(["--results_dir", data["images"], "--gt_dir", data["images"],
                                           "--no_progress", "--output", os.path.join(out, "m.json")]),
    }


@pytest.mark.parametrize("flag", ["--save_dir", "--results_dir", "--mix_dir", "--output"])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(data, checkpoint, capsys, monkeypatch, flag):
    capsys.readouterr()
    blocker = str(data["root"] / "blocker")
    write_text_atomic(blocker, "a file")
    _no_work(monkeypatch)
    assert _commands(data, checkpoint, blocker)[flag]() == 2
    line = _one_error_line(capsys)
    if flag == "--output":  # the file path lies under the file
        assert line == (f"error: --output {os.path.join(blocker, 'm.json')}: {blocker} is a file, so no folder can "
                        f"be made under it; give another path")
    else:
        below = " (the output goes to " + os.path.join(blocker, "tiny", "test_latest") + ")" \
            if flag == "--results_dir" else ""
        assert line == (f"error: {flag} {blocker}: this is a file, not a folder{below}; give a folder path (or move "
                        f"the file away)")
    under = os.path.join(blocker, "sub")
    assert _commands(data, checkpoint, under)[flag]() == 2
    assert f"{blocker} is a file, so no folder can be made under it" in _one_error_line(capsys)
    assert open(blocker).read() == "a file"


@pytest.mark.parametrize("flag", ["--save_dir", "--results_dir", "--mix_dir", "--output"])
def test_a_read_only_output_folder_is_refused_before_any_work(data, checkpoint, capsys, monkeypatch, flag):
    capsys.readouterr()
    with read_only_folder(data["root"] / "ro") as folder:
        _no_work(monkeypatch)
        out = os.path.join(str(folder), "results")  # missing: its nearest existing folder is read-only
        assert _commands(data, checkpoint, out)[flag]() == 2
        line = _one_error_line(capsys)
        assert line.startswith("error: ") and f"cannot write in its nearest existing folder {folder}" in line
        assert "give a writable folder or change its permissions" in line
        assert os.listdir(folder) == []


def test_evaluate_output_and_fid_cache_paths_are_checked_first(data, capsys, monkeypatch):
    _no_work(monkeypatch)
    base = ["--results_dir", data["images"], "--gt_dir", data["images"], "--no_progress"]
    folder = str(data["root"] / "a_folder")
    os.makedirs(folder)
    assert evaluate.main(base + ["--output", folder]) == 2
    assert _one_error_line(capsys) == f"error: --output {folder}: this is a folder; give the path of a file"
    assert evaluate.main(base + ["--fid", "--fid_gt_stats", folder]) == 2
    assert _one_error_line(capsys) == (f"error: --fid_gt_stats {folder}: this is a folder; give the path of a .npz "
                                       f"file (it is written when missing or out of date)")


class _PooledFeatures(torch.nn.Module):
    """A cheap stand-in for the FID Inception: a random linear map of the mean colour to 8 features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 8)

    def forward(self, x):
        return [self.linear(x.mean(dim=(2, 3)))[:, :, None, None]]


def test_a_truncated_fid_cache_is_recomputed_with_a_warning(data, capsys, monkeypatch):
    from evaluation import metrics

    monkeypatch.setattr(metrics, "build_fid_inception", lambda path=None, device="cpu": _PooledFeatures().eval())
    monkeypatch.setattr(metrics, "resolve_inception_path", lambda path=None: "stand-in")
    monkeypatch.setattr(metrics, "FID_DIMS", 8)  # the cache plumbing does not depend on the feature size
    stats = str(data["root"] / "gt_stats.npz")
    base = ["--results_dir", data["images"], "--gt_dir", data["images"], "--no_progress", "--fid",
            "--fid_gt_stats", stats, "--batch_size", "3", "--output", str(data["root"] / "m.json")]
    assert evaluate.main(base) == 0
    whole = open(stats, "rb").read()
    with open(stats, "wb") as f:
        f.write(whole[: len(whole) // 2])
    capsys.readouterr()
    assert evaluate.main(base) == 0
    err = capsys.readouterr().err
    assert f"warning: {stats}: unreadable FID statistics file" in err and "recomputed and rewritten" in err
    mu, sigma, stems = metrics.load_statistics(stats)  # rewritten whole
    assert stems == ["img0", "img1", "img2"] and sigma.shape == (8, 8)


def test_checks_create_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "c"
    assert check_output_dir(str(target), "--x") == str(target)
    assert check_output_file(str(target / "f.json"), "--y") == str(target / "f.json")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------- full disk in test.py
def _test_argv(data, checkpoint):
    return checkpoint + ["--results_dir", str(data["root"] / "results"), "--label_dir", data["labels"],
                         "--image_dir", data["images"], "--instance_dir", data["codes"]]


def _tree(folder):
    out = {}
    for root, dirs, names in os.walk(folder):
        for n in names:
            path = os.path.join(root, n)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def test_full_disk_in_test_py_leaves_the_previous_results(data, checkpoint, capsys, monkeypatch):
    argv = _test_argv(data, checkpoint)
    page = test_script.main(argv)
    web_dir = os.path.dirname(page)
    write_text_atomic(page, "<html>the previous page</html>")  # the earlier results, told apart from new ones
    one_png = os.path.join(web_dir, "images", "synthesized_image", "img0.png")
    save_image_atomic(one_png, np.zeros((32, 32, 3), np.uint8))
    before = _tree(str(data["root"] / "results"))
    real_write = util.io.write_bytes_atomic
    calls = []

    def disk_fills_up(path, payload):  # two files fit, the third fails half-way through its data
        calls.append(path)
        if len(calls) <= 2:
            return real_write(path, payload)
        with util.io.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)

    monkeypatch.setattr(util.io, "write_bytes_atomic", disk_fills_up)
    capsys.readouterr()
    assert run_cli(test_script.main, argv) == 2
    line = _one_error_line(capsys)
    assert line == (f"error: {web_dir}: no space left on the device while writing there ({os.strerror(errno.ENOSPC)}); "
                    f"the results there were left as they were; free some space and run again")
    assert len(calls) == 3
    assert _tree(str(data["root"] / "results")) == before  # no new PNG, no partial file, no staging folder
    monkeypatch.undo()
    assert test_script.main(argv) == page and "the previous page" not in open(page).read()


def test_full_disk_on_a_small_tmpfs(data, checkpoint, capsys):
    with mounted_tmpfs(data["root"] / "small", 32) as mount:  # 32 KiB: less than the page and its 9 PNGs
        argv = checkpoint + ["--results_dir", str(mount), "--label_dir", data["labels"], "--image_dir",
                             data["images"], "--instance_dir", data["codes"]]
        capsys.readouterr()
        assert run_cli(test_script.main, argv) == 2
        assert "no space left on the device" in _one_error_line(capsys)
        assert [os.path.join(r, n) for r, _, names in os.walk(mount) for n in names] == []  # nothing left behind


# ------------------------------------------------------------------------------------------- the staging folder
def test_staged_folder_moves_files_in_only_on_success(tmp_path):
    final = tmp_path / "page"
    write_text_atomic(final / "keep.txt", "kept")
    write_text_atomic(final / "index.html", "old")
    with pytest.raises(RuntimeError):
        with staged_folder(str(final)) as stage:
            write_text_atomic(os.path.join(stage, "index.html"), "new")
            raise RuntimeError("failed half-way")
    assert _tree(str(final)) == {"keep.txt": b"kept", "index.html": b"old"}
    assert sorted(os.listdir(tmp_path)) == ["page"]
    with staged_folder(str(final)) as stage:
        write_text_atomic(os.path.join(stage, "images", "a.png"), "png")
        write_text_atomic(os.path.join(stage, "index.html"), "new")
    assert _tree(str(final)) == {"keep.txt": b"kept", "index.html": b"new", os.path.join("images", "a.png"): b"png"}
    assert sorted(os.listdir(tmp_path)) == ["page"]


def test_staging_folders_of_killed_processes_are_removed(tmp_path):
    import socket

    final = str(tmp_path / "page")
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    stale = tmp_path / f".page.staging-{socket.gethostname()}-{dead.pid}-abcdefgh"
    live = tmp_path / f".page.staging-{socket.gethostname()}-{os.getppid()}-abcdefgh"
    other_host = tmp_path / f".page.staging-{socket.gethostname()}x-{dead.pid}-abcdefgh"
    for folder in (stale, live, other_host):
        write_text_atomic(folder / "index.html", "x")
    with staged_folder(final):
        pass
    assert not stale.exists() and live.exists() and other_host.exists()


def test_output_errors_pass_other_errors_through(tmp_path):
    with pytest.raises(PermissionError):
        with util.io.output_errors(str(tmp_path)):
            raise PermissionError(errno.EACCES, "denied")
    with pytest.raises(OutputError, match="no space left on the device"):
        with util.io.output_errors(str(tmp_path)):
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
