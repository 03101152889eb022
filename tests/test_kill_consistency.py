"""Training files after a kill at chosen points of the save sequence, and one run per checkpoint folder.

A training subprocess replaces ``os.replace`` (the rename that ends every
atomic write) with one that calls ``os._exit`` before the k-th rename of a
``.pth`` file: the k-th file's temporary is complete but not renamed, the
files before it are in place. The run is then resumed with
``--continue_train``; it must write every epoch snapshot, end with the same
weights as an uninterrupted run, leave no temporary file, and never leave
``latest_net_*`` that disagree with ``latest_train_state.pth``.
"""
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

import train
from models import checkpoints as ckpt
from tests._synthetic import build_synthetic_dataset
from util import run_lock
from util.errors import CheckpointError, OutputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# renames of one run (EMA on, --save_latest_freq 1, 2 steps per epoch, 2 epochs):
#  1- 4  step 1: latest_net_G, latest_net_D, latest_net_G_ema, latest_train_state
#  5-11  end of epoch 1 (step 2): 1_net_G, 1_net_D, 1_net_G_ema, latest_net_G, _D, _G_ema, latest_train_state
KILLER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    kill_at, count, real = int(sys.argv[1]), [0], os.replace
    def replace(src, dst):
        if str(dst).endswith(".pth"):
            count[0] += 1
            if count[0] == kill_at:
                os._exit(9)
        return real(src, dst)
    os.replace = replace
    import train
    train.main(sys.argv[2:])
""")


def _argv(data, ck, name):
    images, labels, codes = data
    return ["--name", name, "--checkpoints_dir", str(ck), "--gpu_ids", "-1", "--label_dir", labels,
            "--image_dir", images, "--instance_dir", codes, "--label_nc", "2", "--crop_size", "32",
            "--load_size", "32", "--ngf", "4", "--ndf", "4", "--no_vgg_loss", "--batchSize", "2",
            "--niter", "2", "--niter_decay", "0", "--save_latest_freq", "1", "--save_epoch_freq", "1",
            "--print_freq", "100", "--display_freq", "100", "--no_html", "--ema_bn_batches", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = build_synthetic_dataset(str(root / "data"), n=4, size=32, label_nc=2)
    train.main(_argv(data, root / "ck", "straight"))
    return root, data


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("kill_at", [5, 8, 10, 11])
def test_a_kill_during_a_save_loses_nothing(reference, kill_at, capsys):
    root, data = reference
    name = f"killed{kill_at}"
    ck, folder = root / "ck", root / "ck" / name
    script = root / "killer.py"
    script.write_text(KILLER.format(root=ROOT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(kill_at), *_argv(data, ck, name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    temporaries = [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert len(temporaries) == 1  # the k-th file, complete but not renamed
    step, bad = ckpt.latest_mismatches(str(folder))
    assert step == 1
    if kill_at >= 10:  # latest_net_G (and _D) of step 2 renamed, the training state still that of step 1
        assert "latest_net_G.pth" in bad
        with pytest.raises(CheckpointError, match="interrupted.*--continue_train"):
            ckpt.check_latest_generator(str(folder / "latest_net_G.pth"))
    else:
        assert bad == []
        ckpt.check_latest_generator(str(folder / "latest_net_G.pth"))

    capsys.readouterr()
    train.main(_argv(data, ck, name) + ["--continue_train"])
    out = capsys.readouterr().out
    assert "removed 1 temporary file(s) of an interrupted save" in out
    assert "taking over the lock of a run that is no longer running" in out
    assert ("rewritten from the training state" in out) == (kill_at >= 10)
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    assert not (folder / run_lock.LOCK_NAME).exists()  # released at the end
    assert ckpt.latest_mismatches(str(folder)) == (4, [])
    for which in ("1", "2", "latest"):  # every snapshot, bit for bit those of the uninterrupted run
        for net in ("G", "D", ckpt.EMA_NET):
            mine, theirs = _load(ckpt.network_path(folder, which, net)), _load(ckpt.network_path(ck / "straight", which, net))
            assert mine.keys() == theirs.keys()
            for k in mine:
                assert torch.equal(mine[k], theirs[k]), (which, net, k)


def test_snapshot_files_come_before_the_state_that_says_the_epoch_is_done(reference):
    root, _ = reference
    state = ckpt.load_train_state(str(root / "ck" / "straight" / "latest_train_state.pth"))
    assert sorted(state["files"]) == ["latest_net_D.pth", "latest_net_G.pth", "latest_net_G_ema.pth"]
    folder = root / "ck" / "straight"
    for name, record in state["files"].items():
        assert ckpt.record_matches(str(folder / name), record)
        assert record["digest"] == ckpt.tensor_digest(_load(folder / name))
    # a copy without the modification times is recognised by its content; a changed file is not
    copy = root / "copy_G.pth"
    copy.write_bytes((folder / "latest_net_G.pth").read_bytes())
    assert ckpt.record_matches(str(copy), state["files"]["latest_net_G.pth"])
    changed = _load(folder / "latest_net_G.pth")
    first = next(iter(changed))
    changed[first] = changed[first] + 1
    torch.save(changed, copy)
    assert not ckpt.record_matches(str(copy), state["files"]["latest_net_G.pth"])


# ------------------------------------------------------------------------------------------ run lock
def _write_lock(folder, host, pid):
    os.makedirs(folder, exist_ok=True)
    (folder / run_lock.LOCK_NAME).write_text(f'{{"host": "{host}", "pid": {pid}, "started": 0}}')


def test_a_second_run_on_the_same_folder_stops_naming_the_first(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path / "run", socket.gethostname(), live.pid)
        with pytest.raises(OutputError, match=f"another training run.*host {socket.gethostname()}, pid {live.pid}"):
            run_lock.acquire(str(tmp_path / "run"))
        assert (tmp_path / "run" / run_lock.LOCK_NAME).exists()  # the running one keeps its lock
    finally:
        live.kill()
        live.wait()
    notes = []
    lock = run_lock.acquire(str(tmp_path / "run"), log=notes.append)  # the process has ended: stale
    assert "no longer running" in notes[0] and f"pid {live.pid}" in notes[0]
    assert run_lock.read_lock(lock.path)["pid"] == os.getpid()
    lock.release()
    assert os.listdir(tmp_path / "run") == []  # the folder existed before: kept
    lock = run_lock.acquire(str(tmp_path / "new" / "run"))
    lock.release()
    assert not (tmp_path / "new").exists()  # folders the lock created, left empty: removed


def test_a_lock_of_another_host_needs_take_over(tmp_path):
    _write_lock(tmp_path / "run", "elsewhere.example", 12345)
    with pytest.raises(OutputError, match="another machine.*host elsewhere.example, pid 12345.*--take_over_lock"):
        run_lock.acquire(str(tmp_path / "run"))
    lock = run_lock.acquire(str(tmp_path / "run"), take_over=True, log=lambda _: None)
    (tmp_path / "run" / "opt.json").write_text("{}")
    lock.release()
    assert (tmp_path / "run" / "opt.json").exists() and not (tmp_path / "run" / run_lock.LOCK_NAME).exists()


def test_train_refuses_a_folder_in_use(tmp_path, capsys):
    from util.cli import run_cli

    data = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=2)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path / "ck" / "run", socket.gethostname(), live.pid)
        assert run_cli(train.main, _argv(data, tmp_path / "ck", "run")) == 2
    finally:
        live.kill()
        live.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"pid {live.pid}" in err[0]
    assert sorted(os.listdir(tmp_path / "ck" / "run")) == [run_lock.LOCK_NAME]  # nothing written


def test_a_full_disk_during_a_save_is_named(tmp_path, monkeypatch):
    from util import disk

    def full(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4096")

    monkeypatch.setattr(ckpt, "torch_save_atomic", full)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 1000)
    writer = ckpt.CheckpointWriter(background=False)
    target = tmp_path / "latest_net_G.pth"
    with pytest.raises(CheckpointError, match=r"latest_net_G.pth: no space left on the device \(0.0 MB free, the "
                                              r"file needs about 0.0 MB\); the previous version of the file is kept"):
        writer.submit([({"w": torch.zeros(1000)}, str(target))])
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10 ** 12)
    with pytest.raises(CheckpointError, match="writing the checkpoint failed .*enforce fail"):
        writer.submit([({"w": torch.zeros(1000)}, str(target))])
    assert not target.exists()
    # what "needs about" counts: every tensor of a nested object, by its element size
    assert ckpt.payload_bytes([{"a": torch.zeros(3)}, (torch.zeros(2, dtype=torch.float64), "x")]) == 3 * 4 + 2 * 8
