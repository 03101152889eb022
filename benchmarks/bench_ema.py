"""Benchmark: what the EMA generator costs per training step, in time and memory.

Each variant runs the trainer's real step (``SuperStyleNetTrainer.train_step``:
G step with GAN + feature-matching (+ VGG19 with *random* weights, so nothing is
downloaded) losses and Adam, then the D step) on one synthetic batch, in a
fresh subprocess, so that peak memory can be read per variant:

* ``none``: ``--ema_decay 0`` (the baseline, measured in the same run);
* ``ema``: ``--ema_decay 0.999`` (the default): the average lives on the
  training device and is updated after every G step;
* ``ema_cpu`` (CUDA only): ``--ema_cpu --ema_every K``: the average lives in
  host memory, updated every K steps.

Reported per variant: the median step time over ``--repeats`` steps after
``--warmup`` warm-up steps (CUDA synchronised), its ratio to ``none``, the time
of one EMA update alone and its share of the baseline step (``update/step``,
per step: divided by K for ``ema_cpu``; on a busy machine this share is a
steadier measure than the ratio of two noisy step medians), and the memory: on CUDA the peak allocated GPU memory
(``torch.cuda.max_memory_allocated``) over build + steps; on the CPU the peak
RSS and the RSS after the trainer was built. The EMA's own size (parameters
and buffers) is printed too, and the time of ``prepare`` (BatchNorm statistics
recomputed on ``--bn_batches`` batches), which is paid once per evaluation or
checkpoint, not per step.

Usage::

    python benchmarks/bench_ema.py [--device cpu|cuda --crop 64 --ngf 16 --batch 2 --label_nc 19
                                    --repeats 5 --threads N --no_vgg --amp --ema_every 20 --json out.json]
    # the issue's GPU question (batch 32, crop 256, ngf 64, 19 classes, mixed precision):
    python benchmarks/bench_ema.py --device cuda --crop 256 --ngf 64 --batch 32 --label_nc 19 --amp
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.memory import peak_rss_mib, rss_mib  # noqa: E402




def make_items(args, n):
    """``n`` dataset-like items: blocky label maps (every class present somewhere), images, codes."""
    g = torch.Generator().manual_seed(123)
    items = []
    for i in range(n):
        coarse = torch.randint(0, args.label_nc, (1, 1, args.crop // 8, args.crop // 8), generator=g)
        label = F.interpolate(coarse.float(), size=(args.crop, args.crop), mode="nearest").long()[0]
        items.append({"label": label, "image": torch.rand(3, args.crop, args.crop, generator=g) * 2 - 1,
                      "codes": torch.rand(args.label_nc, 512, generator=g) * 2 - 1, "path": f"bench{i}.png"})
    return items


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args):
    from data.loader import collate
    from models import create_model
    from models.networks import VGG19Features, vgg19_conv_stack
    from options import build_options
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    argv = ["--name", "bench_ema", "--checkpoints_dir", args.tmp, "--gpu_ids", "0" if args.device == "cuda" else "-1",
            "--label_nc", str(args.label_nc), "--crop_size", str(args.crop), "--load_size", str(args.crop),
            "--ngf", str(args.ngf), "--batchSize", str(args.batch),
            "--ema_decay", "0" if args.variant == "none" else "0.999"]
    if args.variant == "ema_cpu":
        argv += ["--ema_cpu", "--ema_every", str(args.ema_every)]
    if args.no_vgg:
        argv += ["--no_vgg_loss"]
    if args.amp:
        argv += ["--amp"]
    opt = build_options(True, argv)
    device = opt.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = create_model(opt, vgg=None if args.no_vgg else VGG19Features(vgg19_conv_stack()))
    items = make_items(args, args.batch * max(1, args.bn_batches))
    trainer = SuperStyleNetTrainer(opt, model=model, ema_data=(items, args.batch) if args.bn_batches else None)
    data = collate(items[: args.batch])
    sync(device)
    built_rss = rss_mib()
    built_gpu = torch.cuda.memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    times = []
    for it in range(args.warmup + args.repeats):
        sync(device)
        t0 = time.perf_counter()
        trainer.train_step(data)
        sync(device)
        if it >= args.warmup:
            times.append(time.perf_counter() - t0)
    result = {"variant": args.variant, "threads": torch.get_num_threads(), "device": str(device),
              "step_s": statistics.median(times), "step_min_s": min(times), "steps_s": times,
              "rss_after_build_mib": built_rss, "peak_rss_mib": peak_rss_mib()}
    if device.type == "cuda":
        result["gpu_after_build_mib"] = built_gpu
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        result["gpu_name"] = torch.cuda.get_device_name(device)
    if trainer.ema is not None:
        ema = trainer.ema
        result["ema_mib"] = sum(t.numel() * t.element_size() for t in ema.module.state_dict().values()) / 2 ** 20
        result["ema_device"] = str(next(ema.module.parameters()).device)
        update_times = []
        for _ in range(args.repeats):  # the update alone (every call updates: every=1 here)
            sync(device)
            t0 = time.perf_counter()
            ema.num_steps = ema.every - 1  # the next step() is an update step
            ema.step(trainer.model.netG)
            sync(device)
            update_times.append(time.perf_counter() - t0)
        result["ema_update_s"] = statistics.median(update_times)
        if args.bn_batches:
            ema.bn_batches = args.bn_batches
            sync(device)
            t0 = time.perf_counter()
            ema.prepare(trainer.model.netG, device=device)
            sync(device)
            result["ema_prepare_s"] = time.perf_counter() - t0
            result["ema_prepare_batches"] = args.bn_batches
    print("RESULT " + json.dumps(result))


def run_worker(args, variant):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--variant", variant, "--tmp", args.tmp]
    for k in ("device", "crop", "ngf", "batch", "label_nc", "repeats", "warmup", "threads", "ema_every",
              "bn_batches"):
        cmd += [f"--{k}", str(getattr(args, k))]
    cmd += ["--no_vgg"] if args.no_vgg else []
    cmd += ["--amp"] if args.amp else []
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {variant} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--repeats", type=int, default=5, help="timed steps after the warm-up steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no_vgg", action="store_true", help="train without the VGG loss")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    p.add_argument("--ema_every", type=int, default=20, help="--ema_every of the ema_cpu variant")
    p.add_argument("--bn_batches", type=int, default=5, help="batches of the timed BatchNorm recomputation")
    p.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=("none", "ema", "ema_cpu"), help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")

    from util.io import write_text_atomic

    variants = ("none", "ema", "ema_cpu") if args.device == "cuda" else ("none", "ema")
    results = {"config": {k: getattr(args, k) for k in ("device", "crop", "ngf", "batch", "label_nc", "repeats",
                                                         "warmup", "threads", "no_vgg", "amp", "ema_every")}}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        for v in variants:
            results[v] = run_worker(args, v)
    base = results["none"]
    mem_key = "gpu_peak_mib" if args.device == "cuda" else "peak_rss_mib"
    print(f"config: {results['config']}  (threads used: {base['threads']}"
          + (f", GPU: {base.get('gpu_name')}" if args.device == "cuda" else "") + ")")
    print(f"{'variant':10}{'step (s)':>10}{'ratio':>8}{'EMA update (ms)':>17}{'update/step':>13}"
          f"{'EMA size (MiB)':>16}{'peak mem (MiB)':>16}{'vs none':>10}")
    for v in variants:
        r = results[v]
        r["step_ratio"] = r["step_s"] / base["step_s"]
        r["peak_mem_increase_mib"] = r[mem_key] - base[mem_key]
        upd = f"{1e3 * r['ema_update_s']:.1f}" if "ema_update_s" in r else "-"
        frac = "-"
        if "ema_update_s" in r:  # the update's share of the baseline step (robust on a busy machine)
            every = args.ema_every if v == "ema_cpu" else 1
            r["update_fraction"] = r["ema_update_s"] / every / base["step_s"]
            frac = f"{100 * r['update_fraction']:.2f} %"
        size = f"{r['ema_mib']:.0f} ({r['ema_device']})" if "ema_mib" in r else "-"
        print(f"{v:10}{r['step_s']:10.3f}{r['step_ratio']:8.3f}{upd:>17}{frac:>13}{size:>16}{r[mem_key]:16.0f}"
              f"{r['peak_mem_increase_mib']:+10.0f}")
    if "ema_prepare_s" in results["ema"]:
        r = results["ema"]
        print(f"EMA prepare (BatchNorm statistics on {r['ema_prepare_batches']} batches): {r['ema_prepare_s']:.2f} s, "
              f"once per evaluation / checkpoint")
    if args.device == "cpu":
        print(f"RSS after building the trainer: none {base['rss_after_build_mib']:.0f} MiB, "
              f"ema {results['ema']['rss_after_build_mib']:.0f} MiB")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
