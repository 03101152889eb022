"""Checkpoint files of a run: the full training state for 'latest' only, epoch snapshots as in the release.

Also: the sizes that ``models.checkpoints.checkpoint_sizes`` predicts (used by
scripts/checkpoint_sizes.py and the README) are the files' sizes, and an
epoch snapshot can still be resumed from, the way the release resumed.
"""
import os
import zipfile

import pytest

import train
from models.checkpoints import checkpoint_sizes
from tests._synthetic import build_synthetic_dataset
from util.errors import CheckpointError


def _args(tmp_path, dirs, *extra):
    images, labels, codes = dirs
    return ["--name", "files", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "2", "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "2", "--niter", "2", "--niter_decay", "0", "--save_epoch_freq", "1",
            "--print_freq", "100", "--display_freq", "100", "--seed", "4", *extra]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("files")
    dirs = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=2)
    trainer = train.main(_args(tmp_path, dirs))  # 2 epochs of 2 steps, a snapshot after each
    return tmp_path, dirs, trainer


def test_epoch_snapshots_hold_networks_only_and_latest_the_full_state(run):
    tmp_path, _, trainer = run
    folder = tmp_path / "ck" / "files"
    pth = sorted(p.name for p in folder.glob("*.pth"))
    assert pth == [f"{which}_{net}.pth" for which in ("1", "2", "latest") for net in ("net_D", "net_G", "net_G_ema")] \
        + ["latest_train_state.pth"]  # the EMA generator is on by default
    expected = checkpoint_sizes(trainer.model.netG, trainer.model.netD, ema=True)
    for name, key in (("2_net_G.pth", "net_G"), ("2_net_D.pth", "net_D"), ("2_net_G_ema.pth", "net_G_ema"),
                      ("latest_train_state.pth", "train_state")):
        size = os.path.getsize(folder / name)
        # payload plus the zip container: a few hundred bytes per tensor and the pickled keys
        assert expected[key] <= size <= expected[key] * 1.02 + 400_000, (name, size, expected[key])
    assert expected["train_state"] > 3.9 * expected["net_G"]  # G, Adam's two moments of G, the average


def test_without_ema_epoch_snapshots_are_the_releases_two_files(tmp_path):
    dirs = build_synthetic_dataset(str(tmp_path / "data"), n=2, size=32, label_nc=2)
    args = _args(tmp_path, dirs, "--ema_decay", "0", "--niter", "1")
    args[args.index("--batchSize") + 1] = "2"
    trainer = train.main(args)
    folder = tmp_path / "ck" / "files"
    assert sorted(p.name for p in folder.glob("*.pth")) == [
        "1_net_D.pth", "1_net_G.pth", "latest_net_D.pth", "latest_net_G.pth", "latest_train_state.pth"]
    expected = checkpoint_sizes(trainer.model.netG, trainer.model.netD)
    size = os.path.getsize(folder / "latest_train_state.pth")
    assert expected["train_state"] <= size <= expected["train_state"] * 1.02 + 400_000


def test_resume_from_an_epoch_snapshot_restarts_the_optimisers(run, capsys):
    tmp_path, dirs, _ = run
    resumed = train.main(_args(tmp_path, dirs, "--continue_train", "--which_epoch", "1", "--niter", "3"))
    out = capsys.readouterr().out
    assert "resuming from '1': epoch 2, iteration 0, global step 2" in out
    assert "not an exact continuation" in out
    assert resumed.global_step == 6  # epochs 2 and 3
    with pytest.raises(CheckpointError, match="7_net_G.pth: not found"):
        train.main(_args(tmp_path, dirs, "--continue_train", "--which_epoch", "7"))


def test_a_saved_file_holds_the_same_bytes_for_the_same_object(tmp_path):
    """torch_save_atomic names the zip's folder ``archive/``, not after its random temporary file."""
    import torch

    from util.torch_io import load_torch_file, torch_save_atomic

    state = {"weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "step": 7}
    paths = [str(tmp_path / "a" / "latest_net_G.pth"), str(tmp_path / "b" / "latest_net_G.pth")]
    for path in paths:
        os.makedirs(os.path.dirname(path))
        torch_save_atomic(state, path)
    first, second = (open(p, "rb").read() for p in paths)
    assert first == second
    with zipfile.ZipFile(paths[0]) as z:
        assert {name.split("/")[0] for name in z.namelist()} == {"archive"}
    loaded = load_torch_file(paths[0])
    assert torch.equal(loaded["weight"], state["weight"]) and loaded["step"] == 7
    assert os.listdir(os.path.dirname(paths[0])) == ["latest_net_G.pth"]  # no temporary left
