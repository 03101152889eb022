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


def _compiled_worker(rank, world, init_file, x_full, up_full, result_file):
    """The layer under torch.compile(fullgraph=True, aot_eager) on gloo, and the collectives of one eager step."""
    import torch.distributed as dist
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCollectives(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "c10d" in str(func):
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    try:
        import torch._dynamo

        torch._dynamo.reset()
        half = x_full.shape[0] // world
        sl = slice(rank * half, (rank + 1) * half)
        out = {}
        for affine in (False, True):
            torch.manual_seed(0)
            bn = SyncBatchNorm2d(x_full.shape[1], affine=affine).double().train()
            if affine:
                with torch.no_grad():
                    bn.weight.normal_()
                    bn.bias.normal_()
            compiled = torch.compile(bn, fullgraph=True, backend="aot_eager", dynamic=False)
            for step in range(2):  # the second call reuses the graph (buffers changed in place)
                x = (x_full[sl] + step).clone().requires_grad_()
                y = compiled(x)
                (y * up_full[sl]).sum().backward()
                out[(affine, step)] = {"y": y.detach(), "grad": x.grad,
                                       "params": [p.grad.clone() for p in bn.parameters()],
                                       "state": {k: v.clone() for k, v in bn.state_dict().items()}}
                bn.zero_grad()
        eager = SyncBatchNorm2d(x_full.shape[1]).double().train()
        x = x_full[sl].clone().requires_grad_()
        with CountCollectives() as counter:
            y = eager(x)
            forward_ops = list(counter.ops)
            (y * up_full[sl]).sum().backward()
        out["collectives"] = (forward_ops, counter.ops)
        from torch._dynamo.utils import counters

        out["breaks"] = sum(counters["graph_break"].values())
        out["frames"] = dict(counters["stats"])
        torch.save(out, f"{result_file}.{rank}")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_compiled_fullgraph_on_two_gloo_processes_equals_one_process_with_one_all_reduce_each_way(tmp_path):
    torch.manual_seed(0)
    x_full = torch.randn(4, 3, 5, 6, dtype=torch.float64) * 0.5 + 40  # |mean| >> std: the precise variance matters
    up_full = torch.randn_like(x_full)
    result = str(tmp_path / "result")
    mp.spawn(_compiled_worker, args=(2, str(tmp_path / "pg_init"), x_full, up_full, result), nprocs=2, join=True)
    results = [torch.load(f"{result}.{rank}") for rank in range(2)]
    for rank, got in enumerate(results):
        sl = slice(rank * 2, rank * 2 + 2)
        for affine in (False, True):
            torch.manual_seed(0)
            ref = nn.BatchNorm2d(3, affine=affine).double()
            if affine:
                with torch.no_grad():
                    ref.weight.normal_()
                    ref.bias.normal_()
            for step in range(2):
                x_ref = (x_full + step).clone().requires_grad_()
                y_ref = ref(x_ref)
                (y_ref * up_full).sum().backward()
                res = got[(affine, step)]
                torch.testing.assert_close(res["y"], y_ref[sl].detach(), rtol=1e-9, atol=1e-9)
                torch.testing.assert_close(res["grad"], x_ref.grad[sl], rtol=1e-9, atol=1e-9)
                # a rank's weight gradient is its share; DDP sums the shares
                for i, p in enumerate(ref.parameters()):
                    total = sum(r[(affine, step)]["params"][i] for r in results)
                    torch.testing.assert_close(total, p.grad, rtol=1e-9, atol=1e-9)
                for k, v in ref.state_dict().items():
                    torch.testing.assert_close(res["state"][k], v, rtol=1e-9, atol=1e-9)
                ref.zero_grad()
        forward_ops, all_ops = got["collectives"]
        assert [op for op in forward_ops if "all_reduce" in op] == ["_c10d_functional.all_reduce.default"]
        assert sum("all_reduce" in op for op in all_ops) == 2  # one in the forward pass, one in the backward
        assert got["breaks"] == 0
