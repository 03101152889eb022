"""Distributed training: 2 gloo processes on CPU stay in sync and match one process on the same global batch.

Both runs train a float64 model whose noise scale is frozen at 0
(``tests._synthetic.noise_free_model``: each process draws its own noise,
from its own stream), so what is compared is the sync BatchNorm statistics, the gradient
averaging, the split of each global batch over the ranks and rank-0-only
saving. Bounds, derived in docs/testing.md ("Numerics"): gradients within
1e-9 of the largest gradient; weights after Adam's first step within
``lr * |dg| / eps`` plus the update's rounding; all ranks bit-identical. The
single-process run keeps its own G after the G step (compared) and continues
from the 2-process run's G, so both D steps see the same generator.
"""
import os

import torch
import torch.multiprocessing as mp

from tests._synthetic import build_synthetic_dataset
from util.distributed import free_port


def _train_args(root, name, data_dirs):
    images, labels, codes = data_dirs
    return ["--name", name, "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "2", "--crop_size", "64", "--load_size", "64", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "4", "--niter", "1", "--niter_decay", "0", "--max_steps", "1",
            "--print_freq", "1", "--display_freq", "1", "--seed", "3"]


def _record_gradients(store):
    """Record, before every optimiser step, the gradients the optimiser is about to apply.

    Returns the hook handle. ``store`` receives one list of tensors per step
    (G's step first, then D's), in the optimiser's parameter order.
    """
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    def hook(optimizer, args, kwargs):
        store.append([p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                      for group in optimizer.param_groups for p in group["params"]])

    return register_optimizer_step_pre_hook(hook)


def _digest(tensor):
    """SHA-256 of a tensor's dtype, shape and bytes: equal digests mean bit-identical tensors."""
    import hashlib

    t = tensor.detach().cpu().contiguous()
    return hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode() + t.view(-1).view(torch.uint8).numpy().tobytes()
                          ).hexdigest()


def _float64_model(args):
    """The model ``train.main(args)`` would build (same options, seed 3 as --seed 3), noise-free, in float64."""
    from tests._synthetic import noise_free_model

    return noise_free_model(args, seed=3, dtype=torch.float64)


def _worker(rank, world_size, port, root, data_dirs):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import train
    from util import distributed as dist_util

    grads = []
    handle = _record_gradients(grads)
    try:
        args = _train_args(root, "ddp", data_dirs)
        trainer = train.main(args, model=_float64_model(args))
        nets = {"netG": trainer.model.netG.state_dict(), "netD": trainer.model.netD.state_dict()}
        # every rank: a digest of the exact bytes of every tensor; rank 0 also the tensors and gradients
        state = {"step": trainer.global_step, "digest": {f"{net}.{k}": _digest(v) for net, sd in nets.items()
                                                         for k, v in sd.items()}}
        if rank == 0:
            state.update(nets, grads=grads)
        torch.save(state, os.path.join(root, f"rank{rank}.pt"))
    finally:
        handle.remove()
        dist_util.cleanup()


def test_two_gloo_processes_match_single_process(tmp_path):
    root = str(tmp_path)
    data_dirs = build_synthetic_dataset(os.path.join(root, "data"), n=8, size=64, label_nc=2)
    mp.start_processes(_worker, args=(2, free_port(), root, data_dirs), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(os.path.join(root, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] == 1
    assert len(ranks[0]["digest"]) == len(ranks[1]["digest"]) > 0
    for k, v in ranks[0]["digest"].items():
        assert ranks[1]["digest"][k] == v, f"ranks differ in {k}"
    assert ranks[0]["digest"]["netG.fc.weight"] == _digest(ranks[0]["netG"]["fc.weight"])

    # only rank 0 writes checkpoints and logs
    folder = tmp_path / "ck" / "ddp"
    assert (folder / "latest_net_G.pth").is_file()
    log = (folder / "loss_log.txt").read_text()
    assert log.count("Training Loss") == 1 and log.count("(epoch: 1, iters: 1,") == 1

    import train

    from torch.optim.optimizer import register_optimizer_step_post_hook

    args = _train_args(root, "single", data_dirs)
    init = _float64_model(args)
    start = {net: {k: v.detach().clone() for k, v in getattr(init, net).named_parameters()}
             for net in ("netG", "netD")}
    g_params = dict(init.netG.named_parameters())
    g_after_step = {}

    def after_g_step(optimizer, args_, kwargs_):
        # Keep the single run's G after its step, then continue from the 2-process run's G, so that
        # both D steps see the same generator (see the module docstring).
        if optimizer.param_groups[0]["params"][0] is next(iter(g_params.values())):
            g_after_step.update({k: p.detach().clone() for k, p in g_params.items()})
            with torch.no_grad():
                for k, p in g_params.items():
                    p.copy_(ranks[0]["netG"][k])

    single_grads = []
    handles = [_record_gradients(single_grads), register_optimizer_step_post_hook(after_g_step)]
    try:
        single = train.main(args, model=init)
    finally:
        for handle in handles:
            handle.remove()
    assert single.global_step == 1 and g_after_step
    assert all(p.dtype == torch.float64 for p in single.model.parameters())

    # The gradients each optimiser applied (after DDP's all-reduce) equal the
    # single-process gradients of the global batch, element-wise (bound: module docstring).
    assert len(single_grads) == len(ranks[0]["grads"]) == 2  # one G step, one D step
    u = torch.finfo(torch.float64).eps / 2
    for which, net, optimizer, ref_step, ddp_step in (
            ("G", "netG", single.optimizer_G, single_grads[0], ranks[0]["grads"][0]),
            ("D", "netD", single.optimizer_D, single_grads[1], ranks[0]["grads"][1])):
        assert all(g.dtype == torch.float64 for g in ddp_step)
        scale = max(float(g.abs().max()) for g in ref_step)
        assert scale > 0
        names = [k for k, p in getattr(single.model, net).named_parameters() if p.requires_grad]
        assert len(names) == len(ref_step) == len(ddp_step)
        group = optimizer.param_groups[0]
        lr, eps = group["lr"], group["eps"]
        assert group["betas"][0] == 0.0  # the Lipschitz bound below is that of Adam's first step with beta1 = 0
        worst = max(float((ref - got).abs().max()) for ref, got in zip(ref_step, ddp_step)) / scale
        print(f"{which} step: gradients differ by at most {worst:.2g} of the largest gradient")
        for name, ref, got in zip(names, ref_step, ddp_step):
            dg = (ref - got).abs()
            err = float(dg.max())
            assert err <= 1e-9 * scale, f"{which} {name}: gradient differs by {err:.3g} (scale {scale:.3g})"
            # weights after Adam's step: within lr * |dg| / eps, plus a few roundings of the update
            w_single = g_after_step[name] if net == "netG" else single.model.state_dict()[f"{net}.{name}"]
            w_ddp = ranks[0][net][name]
            bound = lr * dg / eps + 8 * u * (start[net][name].abs() + lr)
            excess = float(((w_ddp - w_single).abs() - bound).max())
            assert excess <= 0, f"{which} {name}: weights after the step differ beyond the bound by {excess:.3g}"
        moved = max(float((start[net][k] - ranks[0][net][k]).abs().max()) for k in start[net])
        assert moved > 0.5 * lr, f"{net} did not move"
