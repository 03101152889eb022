"""Several machines on CPU with gloo: every rank resumes the same run or none does, per-rank RNG states,
torchrun across two "nodes" and srun from SLURM_* variables alone, gradient compression.

Two processes stand for two machines, each with its own disk: rank 0 gets
``--checkpoints_dir nodeA/ck``, rank 1 ``nodeB/ck`` (each machine runs its
own command line, so nothing but the option is needed). Only rank 0 writes;
copying its run folder to ``nodeB`` is what a user without a shared
filesystem would do.
"""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from tests._synthetic import build_synthetic_dataset
from util import distributed as dist_util
from util.distributed import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_GUARD_S = 900  # a hang is the failure being tested for; this only turns it into a test failure


def _args(root, node, name, dirs, steps, extra=()):
    images, labels, codes = dirs
    # 8 images, global batch 4 (2 per rank): 2 steps per epoch; noise injection on; epoch snapshots;
    # no EMA generator (not what is compared here; it would double the files)
    return ["--name", name, "--checkpoints_dir", os.path.join(root, node, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "2", "--crop_size", "32", "--load_size", "36", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "4", "--niter", "2", "--niter_decay", "1",
            "--max_steps", str(steps), "--print_freq", "100", "--display_freq", "100", "--save_epoch_freq", "1",
            "--ema_decay", "0", "--seed", "7", *extra]


def _join(context):
    """Join spawned processes, failing (instead of hanging) after HANG_GUARD_S."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"the processes did not finish within {HANG_GUARD_S} s (a rank hangs)")


def _nudge_weights(path):
    """Rewrite a generator file with one weight changed by one unit in the last place."""
    sd = torch.load(path, weights_only=True)
    w = sd["fc.weight"].view(-1)
    w[0] = torch.nextafter(w[0], torch.tensor(float("inf")))
    torch.save(sd, path)


def _resume_worker(rank, world, port, root, dirs):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import train
    from trainers.rank_agreement import state_digest
    from util.errors import CheckpointError

    node = ("nodeA", "nodeB")[rank]
    run_a, run_b = os.path.join(root, "nodeA", "ck", "run"), os.path.join(root, "nodeB", "ck", "run")
    out = {}

    def attempt(key, name, steps, extra=()):
        try:
            trainer = train.main(_args(root, node, name, dirs, steps, extra))
        except CheckpointError as e:
            out[key] = ("error", str(e))
            return None
        nets = {"netG": trainer.model.netG.state_dict(), "netD": trainer.model.netD.state_dict()}
        out[key] = ("ok", trainer.global_step, state_digest(nets))
        return trainer

    def on_rank0(fn):  # a file operation by "the user" between two runs
        if rank == 0:
            fn()
        dist_util.barrier()

    try:
        attempt("straight", "straight", 4)
        attempt("first", "run", 1)                                    # stops in epoch 1 (latest: step 1)
        on_rank0(lambda: shutil.copytree(run_a, run_b))                # node B gets a copy of the run
        attempt("same", "run", 3, ["--continue_train"])                # both resume step 1: runs to step 3
        attempt("older", "run", 4, ["--continue_train"])               # A holds step 3, B still step 1
        on_rank0(lambda: shutil.rmtree(run_b))
        attempt("none", "run", 4, ["--continue_train"])                # B holds no run
        init_dir = (run_a, run_b)[rank]                                # each machine names its own folder
        attempt("init_missing", "fresh", 1, ["--init_from", init_dir, "--which_epoch", "1"])
        on_rank0(lambda: shutil.copytree(run_a, run_b))
        on_rank0(lambda: _nudge_weights(os.path.join(run_b, "1_net_G.pth")))  # another epoch-1 snapshot
        attempt("snapshot_differs", "run", 4, ["--continue_train", "--which_epoch", "1"])
        on_rank0(lambda: (shutil.rmtree(run_b), shutil.copytree(run_a, run_b)))
        attempt("resumed", "run", 4, ["--continue_train"])             # the same run again: to step 4
    finally:
        torch.save(out, os.path.join(root, f"rank{rank}.pt"))
        dist_util.cleanup()


def test_every_rank_resumes_the_same_run_or_none(tmp_path):
    root = str(tmp_path)
    dirs = build_synthetic_dataset(os.path.join(root, "data"), n=8, size=36, label_nc=2)
    _join(mp.start_processes(_resume_worker, args=(2, free_port(), root, dirs), nprocs=2, join=False,
                             start_method="spawn"))
    ranks = [torch.load(os.path.join(root, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    host = socket.gethostname()
    run_a, run_b = tmp_path / "nodeA" / "ck" / "run", tmp_path / "nodeB" / "ck" / "run"
    for r in ranks:
        assert r["straight"][:2] == ("ok", 4) and r["first"][:2] == ("ok", 1)
        assert r["same"][:2] == ("ok", 3)
        assert r["resumed"][:2] == ("ok", 4)
    # the same message on both ranks, naming the rank, its host and the files
    for key in ("older", "none", "init_missing", "snapshot_differs"):
        assert ranks[0][key][0] == ranks[1][key][0] == "error", key
        assert ranks[0][key][1] == ranks[1][key][1], key
    older = ranks[0]["older"][1]
    assert older.startswith("--continue_train --which_epoch latest: the processes loaded different states")
    assert f"rank 0 on host {host} read {run_a / 'latest_train_state.pth'} (epoch 2, iteration 1, global step 3)" \
        in older
    assert f"rank 1 on host {host} read {run_b / 'latest_train_state.pth'} (epoch 1, iteration 1, global step 1)" \
        in older
    none = ranks[0]["none"][1]
    assert "1 of 2 processes could not load" in none
    assert f"rank 1 on host {host}: {run_b / 'latest_train_state.pth'}: training state not found" in none
    assert "rank 0 on" not in none  # only the rank that failed is named
    init_missing = ranks[0]["init_missing"][1]
    assert init_missing.startswith(f"--init_from {run_a}: 1 of 2 processes could not load")  # rank 0's option
    assert f"rank 1 on host {host}: {run_b / '1_net_G.pth'}: generator weights not found" in init_missing
    snapshot = ranks[0]["snapshot_differs"][1]
    assert "loaded different states" in snapshot and f"read {run_b / '1_net_G.pth'}, {run_b / '1_net_D.pth'}" \
        in snapshot
    # a refused resume trained nothing and wrote nothing: run A still ends at step 3 before "resumed",
    # and the run that failed with --init_from left no folder
    assert not (tmp_path / "nodeA" / "ck" / "fresh").exists()
    # node B never received a file from training (only rank 0 writes)
    assert not (tmp_path / "nodeB" / "ck" / "straight").exists()

    # exact resume with per-rank RNG states: 1 + 2 + 1 steps over two resumes equal 4 in one go, bit for bit,
    # on both ranks (each rank's noise differs, so restoring rank 0's state on rank 1 would not do)
    assert ranks[0]["resumed"][2] == ranks[0]["straight"][2] == ranks[1]["resumed"][2] == ranks[1]["straight"][2]
    state = torch.load(run_a / "latest_train_state.pth", weights_only=True)
    assert state["global_step"] == 4 and len(state["rng_ranks"]) == 2
    assert torch.equal(state["rng"]["torch"], state["rng_ranks"][0]["torch"])
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # different streams
    assert "cuda" not in state["rng_ranks"][1]  # a CPU process keeps no CUDA generator


# ------------------------------------------------------------------ torchrun on two nodes, srun from SLURM_*
def _slurm_job_with_free_port():
    """A SLURM job id whose derived MASTER_PORT is free on 127.0.0.1 right now."""
    for job_id in range(4242, 4242 + dist_util.SLURM_PORT_SPAN, 97):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", dist_util.slurm_master_port(job_id)))
            except OSError:
                continue
        return job_id
    pytest.skip("no free port in the SLURM port range")


def _clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "TORCHELASTIC_"))
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _wait_all(procs):
    deadline = time.monotonic() + HANG_GUARD_S
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"the processes did not finish within {HANG_GUARD_S} s")
        outputs.append(out)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def test_two_node_torchrun_and_srun_give_the_same_run(tmp_path):
    """The documented 2-node recipes: torchrun on each node, and srun with one task per GPU (SLURM_* only)."""
    root = str(tmp_path)
    dirs = build_synthetic_dataset(os.path.join(root, "data"), n=8, size=36, label_nc=2)
    train_py = os.path.join(ROOT, "train.py")

    # torchrun on "node" 0 and 1, one process each, static rendezvous on node 0; each node its own disk
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
         "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port), train_py]
        + _args(root, f"torchrun{node}", "run", dirs, 3), cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for node in (0, 1)]
    _wait_all(procs)

    # srun -N 2 --ntasks-per-node 1 python train.py ...: what srun sets, nothing else
    job = _slurm_job_with_free_port()
    procs = []
    for task in (0, 1):
        env = dict(_clean_env(), SLURM_JOB_ID=str(job), SLURM_STEP_ID="0", SLURM_PROCID=str(task),
                   SLURM_LOCALID="0", SLURM_NODEID=str(task), SLURM_NTASKS="2", SLURM_STEP_NUM_TASKS="2",
                   SLURM_STEP_TASKS_PER_NODE="1(x2)", SLURM_JOB_NODELIST="127.0.0.[1-2]",
                   SLURM_STEP_NODELIST="127.0.0.[1-2]")
        procs.append(subprocess.Popen([sys.executable, train_py] + _args(root, f"slurm{task}", "run", dirs, 3),
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outputs = _wait_all(procs)
    assert f"SLURM job step: 2 tasks, rendezvous at 127.0.0.1:{dist_util.slurm_master_port(job)}" in outputs[0]
    assert outputs[0].count("training finished at epoch 2, global step 3") == 1  # one run, not two
    assert "training finished" not in outputs[1]  # rank 1 prints nothing of its own

    a, b = tmp_path / "torchrun0" / "ck" / "run", tmp_path / "slurm0" / "ck" / "run"
    for name in ("latest_net_G.pth", "latest_net_D.pth", "1_net_G.pth"):
        sa, sb = (torch.load(d / name, weights_only=True) for d in (a, b))
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    ta, tb = (torch.load(d / "latest_train_state.pth", weights_only=True) for d in (a, b))
    assert ta["global_step"] == tb["global_step"] == 3
    for which in ("optimizer_G", "optimizer_D"):
        for idx, st in ta[which]["state"].items():
            assert torch.equal(st["exp_avg_sq"], tb[which]["state"][idx]["exp_avg_sq"]), f"{which}[{idx}]"
    for r in range(2):
        assert torch.equal(ta["rng_ranks"][r]["torch"], tb["rng_ranks"][r]["torch"])
    # the second node's disk holds nothing: checkpoints, logs and options are written by rank 0 only
    for node in ("torchrun1", "slurm1"):
        assert not (tmp_path / node / "ck").exists() or not any((tmp_path / node / "ck").rglob("*"))


# ------------------------------------------------------------------------------------------- SLURM rules
def test_hostlist_and_tasks_per_node_expansion():
    assert dist_util.expand_hostlist("node[01-04,07]") == ["node01", "node02", "node03", "node04", "node07"]
    assert dist_util.expand_hostlist("gpu-a[8-10],gpu-b5") == ["gpu-a8", "gpu-a9", "gpu-a10", "gpu-b5"]
    assert dist_util.expand_hostlist("r[1-2]n[09-10]") == ["r1n09", "r1n10", "r2n09", "r2n10"]
    assert dist_util.expand_hostlist("single") == ["single"]
    for bad in ("node[1-", "node[3-1]", "node[a-b]", "node]1[", "n[[1]]"):
        with pytest.raises(ValueError, match="malformed host list"):
            dist_util.expand_hostlist(bad)
    assert dist_util.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert dist_util.expand_tasks_per_node("8") == [8]
    with pytest.raises(ValueError):
        dist_util.expand_tasks_per_node("2(3)")


SRUN = {"SLURM_JOB_ID": "123456", "SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
        "SLURM_NODEID": "2", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_TASKS_PER_NODE": "2(x4)",
        "SLURM_JOB_NODELIST": "gpu[07-10]", "SLURM_STEP_NODELIST": "gpu[07-10]"}


def test_slurm_environment_maps_an_srun_step_to_torchrun_variables():
    from util.errors import OptionError

    env = dist_util.slurm_environment(SRUN)
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "2",
                   "MASTER_ADDR": "gpu07", "MASTER_PORT": str(20000 + 123456 % 10000)}
    # a MASTER_ADDR / MASTER_PORT set by the user wins
    env = dist_util.slurm_environment(dict(SRUN, MASTER_ADDR="10.0.0.1", MASTER_PORT="29400"))
    assert (env.get("MASTER_ADDR"), env.get("MASTER_PORT")) == (None, None)
    # the batch script itself (no job step), and a step of one task: one process, nothing to set
    batch = {k: v for k, v in SRUN.items() if k not in ("SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS")}
    assert dist_util.slurm_environment(batch) == {}
    assert dist_util.slurm_environment(dict(SRUN, SLURM_STEP_NUM_TASKS="1")) == {}
    # torchrun under srun: its variables win when they describe the same job ...
    torchrun = dict(SRUN, SLURM_STEP_NUM_TASKS="4", WORLD_SIZE="32", GROUP_WORLD_SIZE="4")
    assert dist_util.slurm_environment(torchrun) == {}
    # ... and several tasks that each run a standalone torchrun would be duplicate runs
    with pytest.raises(OptionError, match=r"srun started 8 tasks, each running its own torchrun of 1 node.*"
                                          r"srun --ntasks-per-node 1 torchrun"):
        dist_util.slurm_environment(dict(SRUN, WORLD_SIZE="8", GROUP_WORLD_SIZE="1"))
    with pytest.raises(OptionError, match="SLURM_LOCALID is not set"):
        dist_util.slurm_environment({k: v for k, v in SRUN.items() if k != "SLURM_LOCALID"})
    with pytest.raises(OptionError, match="cannot read the SLURM job step's variables"):
        dist_util.slurm_environment(dict(SRUN, SLURM_STEP_NODELIST="gpu[07-"))
    # adopting them makes train.py's process count follow the job step (nothing is launched again)
    environ = dict(SRUN)
    assert dist_util.adopt_slurm_environment(environ)["WORLD_SIZE"] == "8" and environ["RANK"] == "5"


def test_local_device_when_srun_binds_one_gpu_per_task(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task 1
    for k, v in {"WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}.items():
        monkeypatch.setenv(k, v)
    assert dist_util.local_device([0]) == torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # all four GPUs visible to every task
    assert dist_util.local_device([0]) == torch.device("cuda:3")


# ------------------------------------------------------------------------------- gradient compression
def _hook_worker(rank, world, port, root):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from options import build_options
    from trainers.rank_agreement import state_digest
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    dist.init_process_group("gloo")
    records, out = [], {}
    real = {"bf16": default_hooks.bf16_compress_hook, "fp16": default_hooks.fp16_compress_hook}

    def recording(which):
        def hook(process_group, bucket):  # this rank's local gradients and what the compressed all-reduce gave
            local = bucket.buffer().detach().clone()
            slot = len(records)  # DDP launches buckets in index order; their futures may complete in any order
            records.append(None)

            def keep(fut):
                result = fut.value()
                records[slot] = (which, bucket.index(), local, result.detach().clone())
                return result
            return real[which](process_group, bucket).then(keep)
        return hook

    default_hooks.bf16_compress_hook, default_hooks.fp16_compress_hook = recording("bf16"), recording("fp16")
    try:
        for which in ("bf16", "fp16"):
            opt = build_options(True, label_nc=2, ngf=4, crop_size=32, ndf=8, no_vgg_loss=True, gpu_ids="-1",
                                lr=1e-3, niter=1, niter_decay=0, ddp_comm_hook=which, ema_decay=0, batchSize=4)
            torch.manual_seed(0)
            trainer = SuperStyleNetTrainer(opt, ddp_device_ids=None)
            start = state_digest(trainer.model.netG.state_dict())
            g = torch.Generator().manual_seed(10 + rank)  # each rank its own half of the batch
            for _ in range(3):
                data = {"label": torch.randint(0, 2, (2, 1, 32, 32), generator=g),
                        "image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                        "codes": torch.rand(2, 2, 512, generator=g) * 2 - 1, "path": ["a.png", "b.png"]}
                trainer.train_step(data)
            nets = {"netG": trainer.model.netG.state_dict(), "netD": trainer.model.netD.state_dict()}
            out[which] = {"start": start, "end": state_digest(nets), "losses": trainer.latest_losses(),
                          "sync_buffers": (trainer.ddp_G.forward_sync_buffers, trainer.ddp_D.forward_sync_buffers)}
        assert None not in records, "a compressed all-reduce never completed"
        out["records"] = records
    finally:
        torch.save(out, os.path.join(root, f"hook{rank}.pt"))
        dist.destroy_process_group()


def test_compressed_gradients_train_on_gloo(tmp_path):
    """--ddp_comm_hook bf16 / fp16: the all-reduced gradients are the mean of the ranks' gradients rounded
    through the 16-bit format, within the rounding bound, and every rank keeps identical weights and buffers
    (which are not broadcast: spectral norm's vectors and the synchronised batch norm's statistics)."""
    _join(mp.start_processes(_hook_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn"))
    ranks = [torch.load(tmp_path / f"hook{r}.pt", weights_only=False) for r in range(2)]
    for which, dtype, bits, tiny in (("bf16", torch.bfloat16, 8, 2.0 ** -133), ("fp16", torch.float16, 11, 2.0 ** -24)):
        a, b = ranks[0][which], ranks[1][which]
        assert a["start"] == b["start"] and a["end"] == b["end"], which  # bit-identical ranks after 3 steps
        assert a["start"] != a["end"]  # it trained
        assert all(map(torch.isfinite, map(torch.tensor, a["losses"].values())))
        assert a["sync_buffers"] == (False, False)
        mine = [(r0, r1) for r0, r1 in zip(ranks[0]["records"], ranks[1]["records"]) if r0[0] == which]
        assert len(mine) >= 6  # at least one bucket per G and D step, 3 steps
        u = 2.0 ** -bits  # unit roundoff of the 16-bit format (round to nearest)
        inexact = 0
        for (_, i0, l0, out0), (_, i1, l1, out1) in mine:
            assert i0 == i1 and torch.equal(out0, out1)
            assert torch.equal(out0, out0.to(dtype).to(out0.dtype))  # the reduced values are 16-bit numbers
            # each rank's g/2 rounded once (<= u), their sum rounded once (<= u): |out - mean| <= 2u(1+u) mean|g|
            exact = (l0 + l1) / 2
            bound = 2 * u * (1 + u) * (l0.abs() + l1.abs()) / 2 + 2 * tiny
            assert bool(((out0 - exact).abs() <= bound).all()), f"{which}: beyond the rounding bound"
            inexact += int((out0 != exact).sum())
        assert inexact > 0  # compression really happened


# ------------------------------------------------------------------------------ saving and loading at scale
def test_background_save_writes_the_state_of_the_moment_it_was_taken(tmp_path):
    """The trainer's copy is private: training on while the writer runs does not change what is written."""
    from models import checkpoints as ckpt
    from options import build_options
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    opt = build_options(True, label_nc=2, ngf=4, crop_size=32, ndf=8, no_vgg_loss=True, gpu_ids="-1",
                        checkpoints_dir=str(tmp_path), name="bg", ema_decay=0)
    torch.manual_seed(0)
    trainer = SuperStyleNetTrainer(opt)
    g = torch.Generator().manual_seed(1)
    data = {"label": torch.randint(0, 2, (2, 1, 32, 32), generator=g), "image": torch.rand(2, 3, 32, 32, generator=g),
            "codes": torch.rand(2, 2, 512, generator=g), "path": ["a.png", "b.png"]}
    trainer.train_step(data)
    expected = {k: v.clone() for k, v in trainer.model.netG.state_dict().items()}
    moments = {i: s["exp_avg_sq"].clone() for i, s in trainer.optimizer_G.state_dict()["state"].items()}
    trainer.save("latest", 1, 1)
    trainer.train_step(data)  # changes weights and Adam's moments in place, perhaps while the files are written
    trainer.wait_for_saves()
    assert not trainer.writer.busy
    folder = tmp_path / "bg"
    saved = torch.load(folder / "latest_net_G.pth", weights_only=True)
    state = ckpt.load_train_state(str(folder / "latest_train_state.pth"))
    assert state["global_step"] == 1
    for k, v in expected.items():
        assert torch.equal(saved[k], v) and torch.equal(state["netG"][k], v), k
    for i, m in moments.items():
        assert torch.equal(state["optimizer_G"]["state"][i]["exp_avg_sq"], m)
    assert any(not torch.equal(v, trainer.model.netG.state_dict()[k]) for k, v in expected.items())
    # the state is memory-mapped (the file is in this process's memory map), not read into private memory
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            assert str(folder / "latest_train_state.pth") in f.read()


def test_a_failed_background_write_is_raised_and_keeps_the_previous_file(tmp_path):
    from models.checkpoints import CheckpointWriter
    from util.errors import CheckpointError

    good = tmp_path / "a.pth"
    writer = CheckpointWriter()
    writer.submit([({"x": torch.ones(3)}, str(good))])
    writer.wait()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    writer.submit([({"x": torch.zeros(3)}, str(good)), ({"y": torch.zeros(2)}, str(blocked / "b.pth")),
                   ({"z": torch.zeros(1)}, str(tmp_path / "c.pth"))])
    with pytest.raises(CheckpointError, match=r"file/b\.pth: writing the checkpoint failed .*previous version"):
        writer.wait()
    assert torch.equal(torch.load(good, weights_only=True)["x"], torch.zeros(3))  # written before the failure
    assert not (tmp_path / "c.pth").exists()  # nothing after it
    writer.wait()  # the error is raised once


def test_rng_state_for_each_rank():
    from models.checkpoints import get_rng_state, rng_state_for_rank, set_rng_state

    state = get_rng_state(torch.device("cpu"))
    assert "cuda" not in state  # a CPU process: no CUDA generator saved, none touched on restore
    torch.rand(3)
    set_rng_state(state, torch.device("cpu"))
    first = torch.rand(3)
    set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), first)
    saved = {"rng": "r0", "rng_ranks": ["r0", "r1"]}
    assert rng_state_for_rank(saved, 1, 2) == ("r1", True)
    assert rng_state_for_rank(saved, 0, 4) == ("r0", False) and rng_state_for_rank(saved, 3, 4) == (None, False)
    assert rng_state_for_rank({"rng": "r0"}, 0, 1) == ("r0", True)
    assert rng_state_for_rank({"rng": "r0"}, 1, 2) == (None, False)


def test_state_digest_sees_every_bit_and_ignores_the_memory_format():
    from trainers.rank_agreement import state_digest

    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 5, 5, generator=g)
    state = {"w": w, "opt": {"step": torch.tensor(3.0), "lr": 1e-3}, "n": 7}
    ref = state_digest(state)
    assert state_digest({"w": w.to(memory_format=torch.channels_last), "opt": {"step": torch.tensor(3.0), "lr": 1e-3},
                         "n": 7}) == ref
    ulp = w.clone().view(-1)
    ulp[17] = torch.nextafter(ulp[17], torch.tensor(float("inf")))
    swapped = w.clone().view(-1)
    swapped[[3, 40]] = swapped[[40, 3]]
    for other in ({"w": ulp.view_as(w)}, {"w": swapped.view_as(w)}, {"w": w.double()}, {"w": w.reshape(4, 75)},
                  {"opt": {"step": torch.tensor(4.0), "lr": 1e-3}}, {"n": 8}):
        assert state_digest({**state, **other}) != ref, other
