"""SyncBatchNorm2d: equals nn.BatchNorm2d in one process; synchronises statistics across 2 gloo processes."""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from models.networks.sync_batchnorm import SyncBatchNorm2d


def test_single_process_matches_batchnorm_values_grads_and_running_stats():
    torch.manual_seed(0)
    ours = SyncBatchNorm2d(5).double()
    ref = nn.BatchNorm2d(5, affine=False, momentum=0.1, eps=1e-5).double()
    assert set(ours.state_dict()) == set(ref.state_dict())
    for step in range(3):
        x = (torch.randn(4, 5, 6, 7, dtype=torch.float64) * 3 + step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y, y_ref = ours(x), ref(x_ref)
        torch.testing.assert_close(y, y_ref)
        up = torch.randn_like(y)
        (y * up).sum().backward()
        (y_ref * up).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))


def test_affine_variant_and_state_dict_interchange():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
    ref(torch.randn(4, 3, 5, 5, dtype=torch.float64))
    ours = SyncBatchNorm2d(3, affine=True).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ValueError, match="expects"):
        ours(torch.randn(2, 4, 3, 3, dtype=torch.float64))


def _worker(rank, world, init_file, x_full, up_full, splits, result_file):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    try:
        results = []
        for split in splits:  # per-rank batch sizes, e.g. (2, 2) and the uneven (1, 3)
            bn = SyncBatchNorm2d(x_full.shape[1]).double().train()
            start = sum(split[:rank])
            sl = slice(start, start + split[rank])
            x = x_full[sl].clone().requires_grad_()
            y = bn(x)
            (y * up_full[sl]).sum().backward()
            results.append({"y": y.detach(), "grad": x.grad, "state": bn.state_dict()})
        torch.save(results, f"{result_file}.{rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_single_process_full_batch(tmp_path):
    torch.manual_seed(0)
    x_full = torch.randn(4, 3, 5, 6, dtype=torch.float64) * 2 + 1
    up_full = torch.randn_like(x_full)
    init_file = str(tmp_path / "pg_init")
    result = str(tmp_path / "result")
    splits = [(2, 2), (1, 3)]
    mp.spawn(_worker, args=(2, init_file, x_full, up_full, splits, result), nprocs=2, join=True)

    ref = nn.BatchNorm2d(3, affine=False).double()
    x_ref = x_full.clone().requires_grad_()
    y_ref = ref(x_ref)
    (y_ref * up_full).sum().backward()
    for rank in range(2):
        got = torch.load(f"{result}.{rank}")
        for split, res in zip(splits, got):
            start = sum(split[:rank])
            sl = slice(start, start + split[rank])
            torch.testing.assert_close(res["y"], y_ref[sl].detach())
            torch.testing.assert_close(res["grad"], x_ref.grad[sl])
            for k, v in ref.state_dict().items():
                torch.testing.assert_close(res["state"][k], v)
