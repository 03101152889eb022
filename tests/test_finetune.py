"""Fine-tuning from plain net_G / net_D files (--init_from): the release's layout and this project's snapshots."""
import contextlib
import copy
import io
import os

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import train
from models.checkpoints import network_path
from models.networks import MultiscaleDiscriminator
from options import build_options
from tests._reference import reference_file
from tests._synthetic import build_synthetic_dataset
from tests.test_release_checkpoint import fixture_state
from trainers.superstylenet_trainer import SuperStyleNetTrainer
from util.errors import CheckpointError, OptionError
from util.torch_io import torch_save_atomic


def test_init_from_release_files_reproduces_the_release_generator(tmp_path):
    """latest_net_G.pth in the release's layout (the fixture) and a latest_net_D.pth load into a new run."""
    z = np.load(reference_file("original_netG_fixture.npz"))
    folder = str(tmp_path / "release")
    torch_save_atomic(fixture_state(z), network_path(folder, "latest", "G"))
    opt = build_options(True, label_nc=19, ngf=4, ndf=8, crop_size=64, no_vgg_loss=True, ema_decay=0.0,
                        gpu_ids="-1")
    torch.manual_seed(5)
    netD = MultiscaleDiscriminator.from_options(opt)
    torch_save_atomic(netD.state_dict(), network_path(folder, "latest", "D"))
    torch.manual_seed(0)
    trainer = SuperStyleNetTrainer(opt)
    lines = []
    notes = trainer.init_from(folder, "latest", log=lines.append)
    assert any("ignored" in n for n in notes) and len(lines) == len(notes)
    # the generator is the release's: its fixture output is reproduced (float64, the bound of docs/method.md §10.3)
    netG = copy.deepcopy(trainer.model.netG).double().eval()
    segmap = torch.nn.functional.one_hot(torch.from_numpy(z["label"].astype(np.int64)), 19).permute(2, 0, 1)
    with torch.no_grad():
        out = netG(segmap[None].double(), torch.from_numpy(z["codes"])[None].double())[0]
    assert (out - torch.from_numpy(z["expected"]).double()).abs().max().item() < 5e-5
    loaded_d = trainer.model.netD.state_dict()
    assert all(torch.equal(v, loaded_d[k]) for k, v in netD.state_dict().items())
    # a new run: no optimiser state, step 0, the schedule's first epoch
    assert trainer.global_step == 0 and not trainer.optimizer_G.state and not trainer.optimizer_D.state
    assert trainer.current_lr == opt.lr


def _args(root, name, dirs):
    images, labels, codes = dirs
    return ["--name", name, "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes, "--label_nc", "2",
            "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8", "--no_vgg_loss",
            "--batchSize", "2", "--niter", "1", "--niter_decay", "0", "--print_freq", "100",
            "--display_freq", "100", "--ema_bn_batches", "0"]


def test_init_from_a_snapshot_starts_a_new_run_from_its_weights(tmp_path):
    root = str(tmp_path)
    dirs = build_synthetic_dataset(os.path.join(root, "data"), n=4, size=32, label_nc=2)
    with contextlib.redirect_stdout(io.StringIO()):
        first = train.main(_args(root, "first", dirs) + ["--max_steps", "2"])
    source = os.path.join(root, "ck", "first")
    saved = {net: torch.load(network_path(source, "latest", net), weights_only=True) for net in ("G", "D")}
    assert first.global_step == 2

    seen = []  # the parameters each optimiser is about to update, at the first G and D steps
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append([p.detach().clone() for g in optimizer.param_groups
                                                     for p in g["params"]]))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            second = train.main(_args(root, "second", dirs) + ["--init_from", source, "--max_steps", "1"])
    finally:
        hook.remove()
    assert second.global_step == 1  # counted from 0, not from the source run's 2
    g_params = [v for k, v in saved["G"].items() if k in dict(second.model.netG.named_parameters())]
    d_params = [v for k, v in saved["D"].items() if k in dict(second.model.netD.named_parameters())]
    assert len(seen) == 2 and len(seen[0]) == len(g_params) and len(seen[1]) == len(d_params)
    assert all(torch.equal(a, b) for a, b in zip(seen[0], g_params))
    assert all(torch.equal(a, b) for a, b in zip(seen[1], d_params))
    # the EMA generator restarted from the loaded weights: one update (warm-up decay 1/10) towards G
    ema = dict(second.ema.module.named_parameters())
    for name, p in second.model.netG.named_parameters():
        start = saved["G"][name]
        torch.testing.assert_close(ema[name], start + 0.9 * (p.detach() - start), rtol=1e-6, atol=1e-7)
    state = torch.load(os.path.join(root, "ck", "second", "latest_train_state.pth"), weights_only=False)
    assert (state["epoch"], state["epoch_iter"], state["global_step"]) == (1, 1, 1)

    os.remove(network_path(source, "latest", "D"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train.main(_args(root, "third", dirs) + ["--init_from", source, "--max_steps", "1"])
    assert "latest_net_D.pth: not found; the discriminator starts from its initialisation" in out.getvalue()
    with pytest.raises(CheckpointError, match=r"7_net_G\.pth: generator weights not found"):
        train.main(_args(root, "fourth", dirs) + ["--init_from", source, "--which_epoch", "7"])
    with pytest.raises(OptionError, match="--continue_train.*--init_from"):
        train.main(_args(root, "fifth", dirs) + ["--init_from", source, "--continue_train"])
    assert not os.path.exists(os.path.join(root, "ck", "fourth"))  # validated before anything is written
