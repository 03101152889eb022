"""GPU benchmark: training and inference throughput and peak memory, this project against the literal reference.

One command of at most about 8 minutes on one H200 (``--budget_s``, default
420 s of measuring plus start-up). The default matrix, at batch 32, crop
256, ngf 64, 19 classes and the VGG loss on (VGG19 with random weights: no
weights are downloaded; the cost is that of the trained network), in this
order:

* ``amp``: **train** then **inference**, each with ``ours`` (eager),
  ``ours_compile`` (``--channels_last --compile``; the compilation is the
  first step, reported as ``first_step_s`` and not counted in img/s) and
  ``reference``;
* ``fp32``: the same, with ``ours_compile`` last (the first to go when the
  budget runs out).

``fp32`` is float32 with TF32 matmuls/convolutions, as the trainer sets on
CUDA; ``amp`` is the trainer's ``--amp``: bfloat16 autocast where the GPU
supports it, float16 with a GradScaler otherwise.

* **train**: ``SuperStyleNetTrainer.train_step`` -- G step (GAN, feature
  matching and, unless ``--no_vgg``, VGG19 losses) with its Adam update, then
  the D step with its Adam update -- fed by the project's DataLoader
  (``data.loader.create_dataloader``: ``--nThreads -1`` workers, persistent,
  uint8 photos normalised on the GPU) from CelebAMask-HQ-shaped files the
  script writes to a temporary folder (``benchmarks/bench_loader.py``'s
  1024² JPEG photos, 512² label PNGs and code files; ``--pre_resized``: 286²);
  ``--data device`` feeds one batch already on the GPU instead;
* **inference**: the generator in eval mode without grad (``model(data,
  'inference')``) on a batch already on the GPU, images per second.

Each configuration runs ``--warmup`` untimed steps, then timed steps until
``--steps`` or ``--config_s`` seconds, whichever comes first (at least one);
a configuration that would start after ``--budget_s`` is reported as skipped.
Peak memory is ``torch.cuda.max_memory_allocated`` from building the model to
the end of the timed steps (weights, gradients, Adam states and activations),
in GiB. A configuration that runs out of memory is reported as ``OOM``. For
the compiled variants the script prints dynamo's counts: graphs, graph
breaks and compiled frames (a recompile adds a frame).

Variants (``--variants`` runs the full cross product of ``--tasks``,
``--batches``, ``--precisions`` and the variants given, instead of the
default matrix):

* ``reference``: the same network and trainer with the release's literal ACE
  formulation (``tests/_reference.py``'s ``LiteralACE``, the literal ACE the tests check
  the model against: Python loops over batch and class,
  the O(C²) GSAS graph, the masked-scatter (B, 512, H, W) style map, separate
  convs), measured in the same run on the same device on fewer steps
  (``--ref_steps``);
* ``ours``: this project, eager;
* ``ours_cl``: ``--channels_last``;
* ``ours_compile``: ``--channels_last --compile``.

The achieved TFLOP/s use the FLOPs of one image counted once with
``torch.utils.flop_counter.FlopCounterMode`` on the eager model.

On a machine without a GPU, ``--device cpu --tiny`` runs the matrix on
a tiny configuration (crop 64, ngf 4, label_nc 4, batch 2, one step):
a smoke test of the script (``tests/test_bench_gpu.py``), not a measurement.
The ``amp`` precision then uses CPU bfloat16 autocast (``--amp_dtype
bfloat16``), so the autocast code path runs too.

Usage:
    python benchmarks/bench_gpu.py --json gpu.json           # the default matrix, about 8 minutes
    python benchmarks/bench_gpu.py --batches 8 --precisions amp --variants reference,ours --json b8.json
    python benchmarks/bench_gpu.py --merge gpu.json b8.json
"""
import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

from bench_loader import build_celeba_like, pre_resize  # noqa: E402
from bench_model import make_batch  # noqa: E402
from options import build_options  # noqa: E402
from tests._reference import to_literal  # noqa: E402

VARIANTS = ("reference", "ours", "ours_cl", "ours_compile")
PRECISIONS = ("fp32", "amp")
TASKS = ("train", "inference")
# (task, precision, variant) in the order they run; the most telling first, in case the budget runs out
DEFAULT_MATRIX = (tuple((task, "amp", v) for task in TASKS for v in ("ours", "ours_compile", "reference"))
                  + tuple((task, "fp32", v) for task in TASKS for v in ("ours", "reference", "ours_compile")))
GIB = 2.0 ** 30


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: smoke test with --tiny)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 32; 2 with --tiny)")
    p.add_argument("--precisions", default="fp32,amp")
    p.add_argument("--tasks", default="train,inference")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated, from {','.join(VARIANTS)}: the cross product with --tasks, --precisions "
                        f"and --batches (default: the matrix of the module docstring)")
    p.add_argument("--data", choices=("loader", "device"), default="loader",
                   help="training batches from the DataLoader over files (default) or one batch on the device")
    p.add_argument("--items", type=int, default=None,
                   help="items of the training data set the script writes (default: 2 batches)")
    p.add_argument("--pre_resized", action="store_true", help="write the photos and labels at the load size")
    p.add_argument("--budget_s", type=float, default=420.0,
                   help="start no configuration after this many seconds of the run (default 420)")
    p.add_argument("--config_s", type=float, default=20.0, help="stop timing a configuration after this long")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--no_vgg", action="store_true", help="train without the VGG loss (default: with it)")
    p.add_argument("--steps", type=int, default=20, help="timed steps of this project's variants (at most)")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed steps before them; the first (cuDNN autotuning, compilation) is reported")
    p.add_argument("--ref_steps", type=int, default=2, help="timed steps of the reference (it is slow)")
    p.add_argument("--ref_warmup", type=int, default=1)
    p.add_argument("--tiny", action="store_true",
                   help="crop 64, ngf 4, label_nc 4, batches 1,2, 1 step, no warm-up (smoke test)")
    p.add_argument("--compile_backend", default="inductor",
                   help="torch.compile backend of ours_compile (aot_eager: a fast CPU smoke test of the tracing)")
    p.add_argument("--no_flops", action="store_true", help="skip counting FLOPs")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="print one table from the JSON files of several runs (measures nothing)")
    args = p.parse_args(argv)
    if args.merge:
        return args
    if args.tiny:
        args.crop, args.ngf, args.label_nc = 64, 4, 4
        args.batches = args.batches or "2"
        args.steps = args.ref_steps = 1
        args.warmup = args.ref_warmup = 0
    args.batches = [int(b) for b in (args.batches or "32").split(",")]
    args.matrix = None if args.variants else DEFAULT_MATRIX
    args.variants = args.variants or ",".join(VARIANTS)
    for name, allowed in (("precisions", PRECISIONS), ("tasks", TASKS), ("variants", VARIANTS)):
        values = [v for v in getattr(args, name).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"--{name}: unknown {bad}; choose from {allowed}")
        setattr(args, name, values)
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available (use --device cpu --tiny for a smoke test)")
    return args


def make_opt(args, variant, precision, is_train=True, data_dirs=None):
    """Options of one configuration, built as ``train.py`` (``is_train``) or ``test.py`` would build them.

    The speed settings (``--amp``, ``--amp_dtype``, ``--channels_last``,
    ``--compile``) are training flags; inference takes them from the training
    options of the same configuration.
    """
    cuda = args.device.type == "cuda"
    overrides = dict(label_nc=args.label_nc, ngf=args.ngf, crop_size=args.crop,
                     gpu_ids=str(args.device.index or 0) if cuda else "-1", **(data_dirs or {}))
    if is_train:
        amp = precision == "amp"
        overrides.update(no_vgg_loss=args.no_vgg, niter=50, niter_decay=0, amp=amp,
                         amp_dtype="bfloat16" if (amp and not cuda) else "auto",
                         channels_last=variant in ("ours_cl", "ours_compile"), compile=variant == "ours_compile",
                         compile_backend=args.compile_backend)
    return build_options(is_train, **overrides)


def build(args, variant, precision, task, data_dirs=None):
    """(model, trainer or None) for one configuration, on the device."""
    from models import create_model
    from models.networks import VGG19Features, vgg19_conv_stack
    from models.networks.sync_batchnorm import select_batchnorm
    from trainers.superstylenet_trainer import SuperStyleNetTrainer, amp_dtype, configure_cuda

    torch.manual_seed(0)
    opt = make_opt(args, variant, precision, data_dirs=data_dirs)
    vgg = VGG19Features(vgg19_conv_stack()) if task == "train" and not args.no_vgg else None
    model = create_model(opt if task == "train" else make_opt(args, variant, precision, is_train=False), vgg=vgg)
    if variant == "reference":
        to_literal(model.netG)
    if task == "train":
        return model, SuperStyleNetTrainer(opt, model=model)
    if args.device.type == "cuda":
        configure_cuda()
    model = select_batchnorm(model.to(args.device))
    if opt.channels_last:
        model.set_memory_format(torch.channels_last)
    model.eval()
    if opt.compile:
        from models.networks.compile_support import compile_model

        compile_model(model, args.compile_backend)
    model.amp_dtype = amp_dtype(opt)
    return model, None


def write_training_data(args, root):
    """CelebAMask-HQ-shaped files for the training loader (bench_loader's builder); dict of the three dirs."""
    n = args.items or 2 * max(args.batches)
    image, label = (128, 64) if args.tiny else (1024, 512)
    dirs = build_celeba_like(os.path.join(root, "raw"), n, image, label, label_nc=args.label_nc)
    if args.pre_resized:
        dirs = pre_resize(dirs, os.path.join(root, "small"), round(args.crop * 286 / 256))
    return dict(dirs, count=n)


def device_batch(args, batch):
    """The benchmark batch, already on the device (the model then checks nothing on the host)."""
    data = make_batch(types.SimpleNamespace(batch=batch, crop=args.crop, label_nc=args.label_nc))
    return {k: (v.to(args.device) if torch.is_tensor(v) else v) for k, v in data.items()}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def endless(loader):
    """The batches of ``loader`` (a ``data.loader.create_dataloader`` loader), epoch after epoch."""
    epoch = 0
    while True:
        epoch += 1
        loader.sampler.set_epoch(epoch)
        loader.dataset.set_epoch(epoch)
        yield from loader


def dynamo_counts():
    """Dynamo's counters so far: graphs, graph breaks and compiled frames."""
    from torch._dynamo.utils import counters

    return {"graphs": counters["stats"].get("unique_graphs", 0),
            "breaks": sum(counters["graph_break"].values()), "frames": counters["frames"].get("total", 0)}


def run_config(args, variant, precision, task, batch, data_dirs=None):
    """Measure one configuration; returns a result dict (``oom`` True when it did not fit)."""
    cuda = args.device.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(args.device)
    if variant == "ours_compile":
        from torch import _dynamo  # imported only when needed: it takes seconds

        _dynamo.reset()  # fresh graphs for every configuration (static shapes)
        _dynamo.utils.counters.clear()
    ref = variant == "reference"
    warmup, steps = (args.ref_warmup, args.ref_steps) if ref else (args.warmup, args.steps)
    result = {"variant": variant, "precision": precision, "task": task, "batch": batch, "steps": steps}
    model = trainer = None
    try:
        from_files = task == "train" and data_dirs is not None
        model, trainer = build(args, variant, precision, task, data_dirs if from_files else None)
        result["data"] = "loader" if from_files else "device"
        if task == "train":
            result["autocast_dtype"] = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None
            if from_files:
                opt = make_opt(args, variant, precision, data_dirs=dict(data_dirs, batchSize=batch))
                from data.loader import create_dataloader

                loader = create_dataloader(opt)
                result["loader_workers"] = loader.num_workers
                batches = endless(loader)

                def step():
                    trainer.train_step(next(batches))
            else:
                data = device_batch(args, batch)

                def step():
                    trainer.train_step(data)
        else:
            data = device_batch(args, batch)
            dtype = model.amp_dtype
            result["autocast_dtype"] = str(dtype).replace("torch.", "") if dtype else None

            def step():
                ctx = torch.autocast(args.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                with ctx:
                    model(data, "inference")
        result["first_step_s"] = None
        if warmup > 0:
            t0 = time.perf_counter()
            step()  # first step: cuDNN autotuning, compilation
            synchronize(args.device)
            result["first_step_s"] = time.perf_counter() - t0
        for _ in range(max(0, warmup - 1)):
            step()
        synchronize(args.device)
        t0 = time.perf_counter()
        done = 0
        while done < steps and (done == 0 or time.perf_counter() - t0 < args.config_s):
            step()
            done += 1
            if done % 5 == 0:  # the budget check waits for the device only now and then
                synchronize(args.device)
        synchronize(args.device)
        elapsed = time.perf_counter() - t0
        result.update(oom=False, seconds=elapsed, steps=done, img_per_s=batch * done / elapsed)
        if variant == "ours_compile":
            result["dynamo"] = dynamo_counts()
        if trainer is not None:
            losses = trainer.latest_losses()
            result["losses_finite"] = all(v == v and abs(v) != float("inf") for v in losses.values())
        result["peak_gib"] = torch.cuda.max_memory_allocated(args.device) / GIB if cuda else None
        result["reserved_gib"] = torch.cuda.max_memory_reserved(args.device) / GIB if cuda else None
    except torch.OutOfMemoryError:
        result.update(oom=True, img_per_s=None, peak_gib=None)
    finally:
        del model, trainer
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return result


def count_flops(args):
    """FLOPs of one image: a training step (G step + D step, no optimiser) and inference, eager fp32."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for task in ("train", "inference"):
        model, trainer = build(args, "ours", "fp32", task)
        data = device_batch(args, 1)
        counter = FlopCounterMode(display=False)
        with counter:
            if task == "train":
                losses, _ = model(data, "generator")
                model.weighted_sum(losses).backward()
                d = model(data, "discriminator")
                model.weighted_sum(d).backward()
            else:
                model(data, "inference")
        out[task] = counter.get_total_flops()
        del model, trainer
    return out


def environment(args):
    env = {"torch": torch.__version__, "device": str(args.device)}
    if args.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(args.device)
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    else:
        import platform

        env["cpu"] = platform.processor() or platform.machine()
    return env


def format_table(results, flops):
    """Markdown table: one row per (task, batch, precision), one column pair per variant."""
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in results)]
    head = ["task", "batch", "precision"]
    for v in variants:
        head += [f"{v} img/s", f"{v} peak GiB"]
    if "reference" in variants and len(variants) > 1:
        head += [f"{v} / reference" for v in variants if v != "reference"]
    if flops:
        head.append("best TFLOP/s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({(r["task"], r["batch"], r["precision"]) for r in results},
                  key=lambda k: (TASKS.index(k[0]), k[1], PRECISIONS.index(k[2])))
    for task, batch, precision in keys:
        row = {r["variant"]: r for r in results if (r["task"], r["batch"], r["precision"]) == (task, batch, precision)}
        cells = [task, str(batch), precision]
        for v in variants:
            r = row.get(v)
            if r is None:
                cells += ["", ""]
            elif r.get("skipped"):
                cells += ["skipped", "skipped"]
            elif r["oom"]:
                cells += ["OOM", "OOM"]
            else:
                cells += [f"{r['img_per_s']:.2f}", "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"]
        if "reference" in variants and len(variants) > 1:
            ref = row.get("reference")
            for v in variants:
                if v == "reference":
                    continue
                r = row.get(v)
                ok = ref and r and ref.get("img_per_s") and r.get("img_per_s")
                cells.append(f"{r['img_per_s'] / ref['img_per_s']:.1f}x" if ok else "")
        if flops:
            best = max((r["img_per_s"] for r in row.values() if r.get("img_per_s")), default=None)
            cells.append(f"{best * flops[task] / 1e12:.3g}" if best else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge(paths):
    """One table from several runs' JSON files (e.g. one run per batch size)."""
    runs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            runs.append(json.load(f))
    results = [r for run in runs for r in run["results"]]
    flops = next((run["flops_per_image"] for run in runs if run.get("flops_per_image")), None)
    envs = {json.dumps(run["environment"], sort_keys=True) for run in runs}
    print("environment: " + " / ".join(sorted(envs)))
    table = format_table(results, flops)
    print(table)
    return {"environments": sorted(envs), "results": results, "table": table}


def main(argv=None):
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge)
    env = environment(args)
    print(f"environment: {env}")
    print(f"config: crop {args.crop}, ngf {args.ngf}, label_nc {args.label_nc}, VGG loss "
          f"{'off' if args.no_vgg else 'on'}; batches {args.batches}, precisions {args.precisions}, "
          f"variants {args.variants}, tasks {args.tasks}")
    if args.matrix is not None:
        configs = [(t, b, p, v) for b in args.batches for t, p, v in args.matrix
                   if t in args.tasks and p in args.precisions]
    else:
        configs = [(t, b, p, v) for t in args.tasks for b in args.batches for p in args.precisions
                   for v in args.variants]
    if not args.no_vgg and "train" in args.tasks:
        print("VGG loss: VGG19 with random weights (no weights are downloaded; the cost is that of the trained one)")
    start = time.perf_counter()
    results = []
    with contextlib.ExitStack() as stack:
        data_dirs = None
        if args.data == "loader" and "train" in args.tasks:
            data_dirs = write_training_data(args, stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_gpu_")))
            print(f"training data: {data_dirs['count']} items written in {time.perf_counter() - start:.1f} s")
        for task, batch, precision, variant in configs:
            if time.perf_counter() - start > args.budget_s:
                results.append({"variant": variant, "precision": precision, "task": task, "batch": batch,
                                "skipped": True, "oom": False, "img_per_s": None, "peak_gib": None})
                print(f"{task:9} batch {batch:3} {precision:4} {variant:13} skipped (--budget_s {args.budget_s:.0f})")
                continue
            dirs = None if data_dirs is None else {k: v for k, v in data_dirs.items() if k != "count"}
            r = run_config(args, variant, precision, task, batch, dirs)
            results.append(r)
            first = "" if r.get("first_step_s") is None else f", first step {r['first_step_s']:.1f} s"
            peak = "" if r.get("peak_gib") is None else f", peak {r['peak_gib']:.2f} GiB"
            counts = "" if "dynamo" not in r else (f", dynamo: {r['dynamo']['graphs']} graphs, "
                                                   f"{r['dynamo']['breaks']} breaks, {r['dynamo']['frames']} frames")
            shown = "OOM" if r["oom"] else f"{r['img_per_s']:.2f} img/s ({r['steps']} steps){first}{peak}{counts}"
            print(f"{task:9} batch {batch:3} {precision:4} {variant:13} {shown}", flush=True)
            if args.json:  # what is measured so far survives a run cut short
                from util.io import write_text_atomic

                write_text_atomic(args.json, json.dumps({"environment": env, "partial": True, "results": results},
                                                        indent=2))
    print(f"measured in {time.perf_counter() - start:.0f} s")
    flops = None if args.no_flops else count_flops(args)
    if flops:
        print(f"FLOPs per image: training step {flops['train'] / 1e12:.3f} TFLOP, "
              f"inference {flops['inference'] / 1e12:.3f} TFLOP")
    table = format_table(results, flops)
    print(table)
    out = {"environment": env, "config": {k: (str(v) if isinstance(v, torch.device) else v)
                                          for k, v in vars(args).items()},
           "flops_per_image": flops, "results": results, "table": table}
    if args.json:
        from util.io import write_text_atomic

        write_text_atomic(args.json, json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
