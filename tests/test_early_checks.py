"""Options' files checked before any network is built; SPADE/SEAN flags; the disk-space check; batch-size note."""
import os
import socket

import pytest

import train
from options.foreign_flags import FOREIGN_FLAGS
from tests._synthetic import build_synthetic_dataset
from util import disk
from util.cli import run_cli
from util.errors import OutputError


@pytest.fixture
def data(tmp_path):
    return build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=2)


def _argv(tmp_path, data, *extra):
    images, labels, codes = data
    return ["--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1", "--label_dir", labels,
            "--image_dir", images, "--instance_dir", codes, "--label_nc", "2", "--crop_size", "32",
            "--load_size", "32", "--ngf", "4", "--ndf", "4", "--no_vgg_loss", "--batchSize", "2", "--niter", "1",
            "--niter_decay", "0", "--print_freq", "100", "--display_freq", "100", "--ema_decay", "0", *extra]


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("extra, expected", [
    (["--vgg_path", "{tmp}/missing_vgg.pth"], "VGG19 weights not found at {tmp}/missing_vgg.pth"),
    (["--no_vgg_loss", "--eval_dir", "{tmp}/nowhere"], "--eval_dir {tmp}/nowhere: folder"),
    (["--no_vgg_loss", "--init_from", "{tmp}/other"], "--init_from {tmp}/other: {tmp}/other/latest_net_G.pth"),
    (["--no_vgg_loss", "--continue_train"], "latest_train_state.pth: training state not found; --continue_train"),
])
def test_named_files_are_checked_before_any_network_is_built(tmp_path, data, capsys, monkeypatch, extra, expected):
    import models

    def no_build(*a, **k):
        raise AssertionError("a network was built before the files were checked")

    monkeypatch.setattr(models, "create_model", no_build)
    argv = [a for a in _argv(tmp_path, data) if a != "--no_vgg_loss"] + [e.format(tmp=tmp_path) for e in extra]
    assert run_cli(train.main, argv) == 2
    assert expected.format(tmp=tmp_path) in _error(capsys)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("flag", ["--dataroot", "--no_instance", "--netG", "--use_vae"])
def test_spade_flags_get_a_sentence(tmp_path, data, capsys, flag):
    argv = _argv(tmp_path, data, flag) + (["x"] if flag in ("--dataroot", "--netG") else [])
    assert run_cli(train.main, argv) == 2
    assert _error(capsys) == f"error: {flag}: a SPADE/SEAN flag that means nothing here; {FOREIGN_FLAGS[flag]}"


def test_spade_dataset_modes_say_what_to_use(tmp_path, data, capsys):
    assert run_cli(train.main, _argv(tmp_path, data, "--dataset_mode", "ade20k")) == 2
    assert "--dataset_mode ade20k: this project has one dataset class, custom" in _error(capsys)


def test_a_label_nc_mismatch_says_how_to_extract_again(tmp_path, data, capsys):
    argv = _argv(tmp_path, data)
    argv[argv.index("--label_nc") + 1] = "3"
    assert run_cli(train.main, argv) == 2
    assert "python save_style_vector.py --image_dir IMAGES --label_dir LABELS" in _error(capsys)


def test_disk_space_counts_latest_and_every_snapshot(tmp_path, data, capsys, monkeypatch):
    from models.checkpoints import configuration_sizes
    from options import build_options

    opt = build_options(True, label_nc=2, ngf=4, ndf=4, crop_size=32, gpu_ids="-1", ema_decay=0)
    sizes = configuration_sizes(opt, ema=False)
    snapshot = sizes["net_G"] + sizes["net_D"]
    latest = snapshot + sizes["train_state"]
    # 3 epochs, a snapshot after each: latest + 3 snapshots, plus one temporary copy of the largest file
    expected = latest + 3 * snapshot + sizes["train_state"]
    monkeypatch.setattr(disk, "free_bytes", lambda folder: expected - 1)
    argv = _argv(tmp_path, data, "--niter", "3", "--save_epoch_freq", "1")
    assert run_cli(train.main, argv) == 2
    err = _error(capsys)
    total = latest + 3 * snapshot
    assert f"will write {disk.format_bytes(total)} of checkpoint files (9 files" in err and "--ignore_disk_space" in err
    assert not (tmp_path / "ck").exists()
    monkeypatch.setattr(disk, "free_bytes", lambda folder: expected)
    train.main(argv)  # exactly enough
    got = sum(os.path.getsize(tmp_path / "ck" / "run" / n) for n in os.listdir(tmp_path / "ck" / "run")
              if n.endswith(".pth"))
    assert abs(got - total) < 0.01 * total  # the plan is what the run wrote (file overhead: headers)
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 0)
    train.main(argv[:-4] + ["--niter", "1", "--name", "run2", "--ignore_disk_space"])


def test_bytes_to_write_subtracts_files_replaced(tmp_path, monkeypatch):
    old = tmp_path / "a.pth"
    old.write_bytes(b"x" * 100)
    files = {str(old): 150, str(tmp_path / "b.pth"): 40}
    assert disk.bytes_to_write(files) == 50 + 40 + 150
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 239)
    with pytest.raises(OutputError, match="will write 0.0 MB of checkpoint files .2 files.*only 0.0 MB is free"):
        disk.check_free_space(str(tmp_path), files, "--ignore_disk_space")
    lines = []
    assert disk.check_free_space(str(tmp_path), {str(old): 100}, "--ignore_disk_space", log=lines.append) == (100, 239)
    assert len(lines) == 1


def test_continue_with_another_batch_size_says_what_it_does(tmp_path, data, capsys):
    train.main(_argv(tmp_path, data, "--niter", "2", "--max_steps", "1"))
    capsys.readouterr()
    argv = _argv(tmp_path, data, "--niter", "2", "--continue_train")
    argv[argv.index("--batchSize") + 1] = "4"
    train.main(argv)
    out = capsys.readouterr().out
    assert "was saved with --batchSize 2; with --batchSize 4 an epoch has 1 steps" in out
    assert "not an exact continuation" in out


@pytest.mark.parametrize("name", [".", "..", "a/b"])
def test_name_must_be_one_folder_below_the_checkpoints_dir(tmp_path, data, capsys, name):
    argv = _argv(tmp_path, data)
    argv[argv.index("--name") + 1] = name
    assert run_cli(train.main, argv) == 2
    assert _error(capsys).startswith(f"error: --name {name!r}: must be a non-empty folder name")
    assert not (tmp_path / "ck").exists()


def _rank0_check_worker(rank, port, out):
    import torch.distributed as dist

    from trainers.file_checks import on_every_rank_for_all, on_rank0_for_all
    from util.errors import InputError

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)

    def refuse():
        raise OutputError("ck/run/run.lock: another training run is using this checkpoint folder")

    try:
        on_rank0_for_all(rank == 0, refuse)
        result = "passed"
    except OutputError as e:
        result = str(e)
    on_rank0_for_all(rank == 0, lambda: None)  # nothing to share: every rank goes on

    def missing_on_node_b():  # each machine checks its own disk; only rank 1's lacks the file
        if rank == 1:
            raise InputError("nodeB/vgg19.pth: VGG19 weights not found")

    try:
        on_every_rank_for_all(missing_on_node_b)
        every = "passed"
    except InputError as e:
        every = str(e)
    on_every_rank_for_all(lambda: None)
    dist.destroy_process_group()
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(result)
    with open(os.path.join(out, f"every{rank}.txt"), "w") as f:
        f.write(every)


def test_a_check_made_on_rank_0_stops_every_rank(tmp_path):
    import torch.multiprocessing as mp

    from util.distributed import free_port

    mp.start_processes(_rank0_check_worker, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    assert (tmp_path / "rank0.txt").read_text() == "ck/run/run.lock: another training run is using this checkpoint folder"
    assert (tmp_path / "rank1.txt").read_text() == \
        "rank 0: ck/run/run.lock: another training run is using this checkpoint folder"
    # a check every rank makes: the failing rank is named, with its host, in the same line on every rank
    host = socket.gethostname()
    for r in range(2):
        assert (tmp_path / f"every{r}.txt").read_text() == f"rank 1 on host {host}: nodeB/vgg19.pth: VGG19 weights not found"
