"""Multi-process training from train.py's own command line (the launcher) against torchrun, on CPU with gloo.

``--gpu_ids 0,1,...`` makes train.py start one process per id through
``util.distributed.launch``; ``--gpu_ids -1 --cpu_processes N`` takes the very
same code path with N CPU processes, which is what these tests run (no GPU
here). The launched run must equal the same command under a real
``torchrun --standalone --nproc_per_node 2`` bit for bit: both start identical
processes with identical environments, seeds and data splits, and gloo's
reductions do not depend on who started the processes.
"""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import train
from tests._synthetic import build_synthetic_dataset
from models.networks.sync_batchnorm import SyncBatchNorm2d, select_batchnorm
from util import distributed as dist_util
from util.errors import InputError, OptionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(root, name, dirs, steps=3):
    images, labels, codes = dirs
    # 8 images, global batch 4: 2 steps per epoch, so 3 steps cross an epoch boundary (epoch 1 is
    # saved as a snapshot). Noise injection stays on: rank r draws the same noise (its own stream) in both
    # launches.
    # No EMA generator (it is not what is compared, and its files would double the disk use).
    return ["--name", name, "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "2", "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "4", "--niter", "1", "--niter_decay", "1",
            "--max_steps", str(steps), "--print_freq", "1", "--display_freq", "100", "--save_epoch_freq", "1",
            "--ema_decay", "0", "--seed", "3"]


def _loss_lines(folder):
    text = (folder / "loss_log.txt").read_text()
    # drop the time field, keep epoch, iteration and every loss value
    return [ln.split("time:")[0] + ln.split(")", 1)[1] for ln in text.splitlines() if ln.startswith("(epoch")]


def test_launcher_equals_torchrun_on_two_gloo_processes(tmp_path):
    root = str(tmp_path)
    dirs = build_synthetic_dataset(os.path.join(root, "data"), n=8, size=32, label_nc=2)

    # train.py's own launcher (the path taken by --gpu_ids 0,1): returns None, results are the files
    assert train.main(_args(root, "launched", dirs) + ["--cpu_processes", "2"]) is None

    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(ROOT, "train.py")] + _args(root, "torchrun", dirs)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    launched, torchrun = tmp_path / "ck" / "launched", tmp_path / "ck" / "torchrun"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "1_net_G.pth", "1_net_D.pth"):
        a = torch.load(launched / name, weights_only=True)
        b = torch.load(torchrun / name, weights_only=True)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs"
    sa = torch.load(launched / "latest_train_state.pth", weights_only=True)
    sb = torch.load(torchrun / "latest_train_state.pth", weights_only=True)
    assert (sa["epoch"], sa["epoch_iter"], sa["global_step"]) == (sb["epoch"], sb["epoch_iter"], sb["global_step"]) \
        == (2, 1, 3)
    for which in ("optimizer_G", "optimizer_D"):
        for idx, st in sa[which]["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(st[key], sb[which]["state"][idx][key]), f"{which}[{idx}].{key}"
    lines = _loss_lines(launched)
    assert len(lines) == 3 and lines == _loss_lines(torchrun)
    # the weights moved, and D was trained in all 3 iterations without find_unused_parameters
    assert not (launched / "1_train_state.pth").exists()


def test_user_error_in_a_launched_process_is_raised_with_its_type(tmp_path):
    root = str(tmp_path)
    images, labels, codes = build_synthetic_dataset(os.path.join(root, "data"), n=4, size=32, label_nc=2)
    bad = os.path.join(labels, "img2.png")
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(bad)  # value 9 with --label_nc 2
    args = _args(root, "bad", (images, labels, codes))
    args[args.index("--batchSize") + 1] = "4"
    with pytest.raises(InputError, match=r"process \d of 2: .*img2\.png"):
        train.main(args + ["--cpu_processes", "2", "--serial_batches"])


def test_more_gpu_ids_than_gpus_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    argv = ["--name", "x", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "0,1,2,3", "--batchSize", "32",
            "--label_dir", "a", "--image_dir", "b", "--instance_dir", "c"]
    with pytest.raises(OptionError, match=r"--gpu_ids 0,1,2,3 lists 4 GPUs, but this machine has 1 CUDA device"):
        train.main(argv)
    with pytest.raises(OptionError, match="more than once"):
        train.main(argv[:5] + ["0,0"] + argv[6:])
    assert not (tmp_path / "ck").exists()


def test_process_count_and_global_batch_are_checked_before_launching(tmp_path):
    base = ["--name", "x", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
            "--label_dir", "a", "--image_dir", "b", "--instance_dir", "c"]
    with pytest.raises(OptionError, match=r"global batch and must be divisible by the number of processes \(3\)"):
        train.main(base + ["--cpu_processes", "3", "--batchSize", "4"])
    with pytest.raises(OptionError, match="--cpu_processes 0"):
        train.main(base + ["--cpu_processes", "0"])
    assert not (tmp_path / "ck").exists()


def test_local_device_follows_gpu_ids_or_torchrun_convention(monkeypatch):
    for var in ("WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert dist_util.local_device([]) == torch.device("cpu")
    assert dist_util.local_device([2, 3]) == torch.device("cuda:2")  # single process: the first id
    ns = types.SimpleNamespace
    # --gpu_ids 0,1,2,3 launches four processes, as --cpu_processes 4 does; one id or one CPU process: none
    assert dist_util.processes_to_launch(ns(gpu_ids=[0, 1, 2, 3], cpu_processes=1)) == 4
    assert dist_util.processes_to_launch(ns(gpu_ids=[], cpu_processes=4)) == 4
    assert dist_util.processes_to_launch(ns(gpu_ids=[1], cpu_processes=1)) == 0
    assert dist_util.processes_to_launch(ns(gpu_ids=[], cpu_processes=1)) == 0
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist_util.local_device([2, 3]) == torch.device("cuda:3")  # one listed id per process
    assert dist_util.local_device([0]) == torch.device("cuda:1")  # torchrun with the default --gpu_ids 0
    assert dist_util.local_device([]) == torch.device("cpu")
    # inside torchrun (or a launched process) nothing is launched again
    assert dist_util.processes_to_launch(ns(gpu_ids=[0, 1], cpu_processes=1)) == 0


def _bn_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), SyncBatchNorm2d(3), nn.Sequential(SyncBatchNorm2d(3, affine=True)))
    net(torch.randn(4, 2, 5, 5))  # move the running statistics
    return net


@pytest.mark.parametrize("world, device, expected", [
    (1, "cpu", nn.BatchNorm2d), (1, "cuda", nn.BatchNorm2d), (2, "cuda", SyncBatchNorm2d), (2, "cpu", SyncBatchNorm2d),
])
def test_select_batchnorm_uses_torch_layers_where_they_serve(world, device, expected):
    net = _bn_model().double()  # the dtype of the buffers carries over (float64 equivalence tests)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    affine = net[2][0].weight
    select_batchnorm(net, world, device)
    assert type(net[1]) is expected and type(net[2][0]) is expected
    assert net[2][0].weight is affine  # same Parameter object: optimisers keep working
    after = net.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v) and after[k].dtype == v.dtype, k
    assert net[1].momentum == 0.1 and net[1].eps == 1e-5 and not net[1].affine


@pytest.mark.parametrize("channels_last", [False, True])
def test_trainer_wraps_g_and_d_in_ddp_without_unused_parameter_search(tmp_path, channels_last):
    """One gloo process: DDP's reducer still insists that every parameter of a wrapper gets a gradient.

    With ``--channels_last`` every gradient arrives with its parameter's strides: DDP would otherwise warn
    "Grad strides do not match bucket view strides" and copy.
    """
    import warnings

    import torch.distributed as dist

    from options import build_options
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        opt = build_options(True, label_nc=2, ngf=4, crop_size=32, ndf=8, no_vgg_loss=True, gpu_ids="-1",
                            lr=1e-3, niter=1, niter_decay=0, channels_last=channels_last)
        torch.manual_seed(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = SuperStyleNetTrainer(opt, ddp_device_ids=None)
            assert trainer.ddp_G.module is trainer.model.netG and trainer.ddp_D.module is trainer.model.netD
            assert not trainer.ddp_G.find_unused_parameters and not trainer.ddp_D.find_unused_parameters
            g = torch.Generator().manual_seed(1)
            data = {"label": torch.randint(0, 2, (2, 1, 32, 32), generator=g),
                    "image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                    "codes": torch.randn(2, 2, 512, generator=g), "path": ["a.png", "b.png"]}
            for _ in range(3):  # an unused parameter would make the second iteration fail
                trainer.train_step(data)
        assert trainer.global_step == 3
        assert set(trainer.latest_losses()) == {"GAN", "GAN_Feat", "D_Fake", "D_real"}
        messages = [str(w.message) for w in caught]
        assert not [m for m in messages if "strides" in m], messages
        assert not [m for m in messages if "broadcast_buffers" in m], messages
        if channels_last:  # the convolutions really run channels-last
            conv = trainer.model.netG.fc.weight_orig if hasattr(trainer.model.netG.fc, "weight_orig") \
                else trainer.model.netG.fc.weight
            assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    finally:
        dist.destroy_process_group()


def test_only_buffers_kept_equal_otherwise_skip_the_broadcast():
    """forward_sync_buffers stays on for a network with a buffer of a kind not known to stay replicated."""
    from trainers.parallel import buffers_need_broadcast

    sn_conv = nn.utils.spectral_norm(nn.Conv2d(2, 3, 3))
    assert not buffers_need_broadcast(nn.Sequential(sn_conv, SyncBatchNorm2d(3), nn.SyncBatchNorm(3)))
    assert buffers_need_broadcast(nn.Sequential(sn_conv, nn.BatchNorm2d(3)))  # local statistics: broadcast
    odd = nn.Conv2d(2, 3, 3)
    odd.register_buffer("weight_u", torch.zeros(3))  # no spectral norm behind the name
    assert buffers_need_broadcast(odd)
