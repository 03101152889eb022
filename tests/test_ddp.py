"""Distributed training: 2 gloo processes on CPU stay in sync and match one process on the same global batch.

ACE's noise injection draws its noise per process, so 1- and 2-process runs
draw different noise by construction; both runs here use --freeze_noise,
which keeps the learned noise scale at its initial 0 (documented in
docs/training.md). Everything else -- sync BatchNorm statistics, gradient
averaging, the split of each global batch over the ranks, rank-0-only
saving -- is compared.

Why the 1- vs 2-process comparison is on the update and not element-wise:
several parameters have an exactly zero true gradient (e.g. conv biases
followed by a BatchNorm), so their computed gradients are rounding noise of
about 1e-9 whose sign depends on the summation order; Adam's first step is
about lr * sign(gradient) for them. Element-wise the runs then differ by up
to 2 * lr in those entries whatever the implementation. The test therefore
asserts that the whole one-step update of each network agrees to 5 % in L2
(measured: 0.3 % for G, 0.5-2.2 % for D, varying with thread counts). With
the BN synchronisation switched off the same measurement gives 101 % for G
and 40 % for D.
"""
import os
import socket

import torch
import torch.multiprocessing as mp

from data.demo_data import build_synthetic_dataset


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(root, name, data_dirs):
    images, labels, codes = data_dirs
    return ["--name", name, "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "4", "--crop_size", "64", "--load_size", "64", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "4", "--niter", "1", "--niter_decay", "0", "--max_steps", "1",
            "--print_freq", "1", "--display_freq", "1", "--freeze_noise", "--seed", "3"]


def _worker(rank, world_size, port, root, data_dirs):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    import train
    from util import distributed as dist_util

    try:
        trainer = train.main(_train_args(root, "ddp", data_dirs))
        state = {"netG": trainer.model.netG.state_dict(), "netD": trainer.model.netD.state_dict(),
                 "step": trainer.global_step}
        torch.save(state, os.path.join(root, f"rank{rank}.pt"))
    finally:
        dist_util.cleanup()


def test_two_gloo_processes_match_single_process(tmp_path):
    root = str(tmp_path)
    data_dirs = build_synthetic_dataset(os.path.join(root, "data"), n=8, size=64, label_nc=4)
    mp.start_processes(_worker, args=(2, _free_port(), root, data_dirs), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(os.path.join(root, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] == 1
    for net in ("netG", "netD"):
        for k, v in ranks[0][net].items():
            assert torch.equal(ranks[1][net][k], v), f"ranks differ in {net}.{k}"

    # only rank 0 writes checkpoints and logs
    folder = tmp_path / "ck" / "ddp"
    assert (folder / "latest_net_G.pth").is_file()
    log = (folder / "loss_log.txt").read_text()
    assert log.count("Training Loss") == 1 and log.count("(epoch: 1, iters: 1,") == 1

    import train
    from models.superstylenet_model import SuperStyleNetModel

    single = train.main(_train_args(root, "single", data_dirs))
    assert single.global_step == 1
    torch.manual_seed(3)  # --seed 3: the initial weights of both runs
    init = SuperStyleNetModel(single.opt)
    for net in ("netG", "netD"):
        ref = dict(getattr(single.model, net).named_parameters())
        start = dict(getattr(init, net).named_parameters())
        diff = sum(float(((ranks[0][net][k] - v.detach()) ** 2).sum()) for k, v in ref.items()) ** 0.5
        update = sum(float(((start[k].detach() - v.detach()) ** 2).sum()) for k, v in ref.items()) ** 0.5
        assert update > 1e-2, f"{net} did not move"
        assert diff < 0.05 * update, f"{net}: 2-process update differs by {diff / update:.1%}"
