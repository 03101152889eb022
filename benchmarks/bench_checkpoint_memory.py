"""Benchmark: host memory a training process holds for the training state when it resumes and when it saves.

A small configuration (CPU) is built, trained one step and saved; the sizes of
the files are also predicted from the networks
(:func:`models.checkpoints.checkpoint_sizes`), which is what scales the
measurement to other configurations. Each measurement runs in a fresh
subprocess and reads the process's private (``RssAnon``) and file-backed
(``RssFile``, page cache shared by the processes of a machine) resident memory:

* ``load_read`` (the baseline, measured in the same run): ``torch.load`` of
  ``latest_train_state.pth`` into private memory, as every rank did before;
* ``load_mmap``: :func:`models.checkpoints.load_train_state` (``mmap=True``),
  which the trainer uses; every tensor is read once (summed), as copying it
  into the networks and optimisers does;
* ``save_copy``: the host copy rank 0 makes of everything one ``latest`` save
  writes (:meth:`SuperStyleNetTrainer.checkpoint_files`), held while the
  background writer runs; the training state itself lives in host memory in
  this CPU run, so the copy is all extra.

Reported: the growth of private and file-backed memory per variant, in MiB
and relative to the training-state file. Usage::

    python benchmarks/bench_checkpoint_memory.py [--label_nc 19 --ngf 16 --crop 64 --json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

from benchmarks.memory import rss_parts_mib  # noqa: E402

MIB = 2 ** 20


def build_trainer(args, folder):
    """The trainer of the benchmark's configuration (EMA generator on), trained one step."""
    from options import build_options
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    opt = build_options(True, label_nc=args.label_nc, ngf=args.ngf, crop_size=args.crop, no_vgg_loss=True,
                        gpu_ids="-1", checkpoints_dir=folder, name="bench", ema_bn_batches=0)
    torch.manual_seed(0)
    trainer = SuperStyleNetTrainer(opt)
    g = torch.Generator().manual_seed(1)
    data = {"label": torch.randint(0, args.label_nc, (1, 1, args.crop, args.crop), generator=g),
            "image": torch.rand(1, 3, args.crop, args.crop, generator=g) * 2 - 1,
            "codes": torch.rand(1, args.label_nc, 512, generator=g) * 2 - 1, "path": ["a.png"]}
    trainer.train_step(data)
    return trainer


def child(args):
    """One measurement in this fresh process; prints a JSON line."""
    from models import checkpoints as ckpt

    path = os.path.join(args.folder, "bench", "latest_train_state.pth")
    if args.child == "save_copy":
        trainer = build_trainer(args, args.folder)
        before = rss_parts_mib()
        files = trainer.checkpoint_files("latest", 1, 1, [ckpt.get_rng_state(trainer.opt.device)])
    else:
        before = rss_parts_mib()
        if args.child == "load_read":
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = ckpt.load_train_state(path)
        total = 0.0
        for leaf in _tensors(state):
            total += float(leaf.double().sum())  # read every byte, as load_state_dict's copies do
        files = state
    after = rss_parts_mib()
    print(json.dumps({"variant": args.child, "private_mib": after[0] - before[0], "file_mib": after[1] - before[1],
                      "held": len(files)}))


def _tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from models.checkpoints import checkpoint_sizes, format_bytes

    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(args, folder)
        trainer.save("latest", 1, 1)
        trainer.wait_for_saves()
        sizes = checkpoint_sizes(trainer.model.netG, trainer.model.netD, ema=True)
        params = sum(p.numel() for net in (trainer.model.netG, trainer.model.netD) for p in net.parameters())
        state_file = os.path.getsize(os.path.join(folder, "bench", "latest_train_state.pth"))
        del trainer
        results = {}
        for variant in ("load_read", "load_mmap", "save_copy"):
            cmd = [sys.executable, os.path.abspath(__file__), "--child", variant, "--folder", folder,
                   "--label_nc", str(args.label_nc), "--ngf", str(args.ngf), "--crop", str(args.crop)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            results[variant] = json.loads(out.strip().splitlines()[-1])
    print(f"configuration: label_nc {args.label_nc}, ngf {args.ngf}, crop {args.crop}, EMA on; "
          f"{params:,} parameters (G + D)")
    print(f"training state: {format_bytes(state_file)} on disk, {format_bytes(sizes['train_state'])} predicted; "
          f"net_G_ema {format_bytes(sizes['net_G_ema'])}")
    base = results["load_read"]["private_mib"]
    for variant, r in results.items():
        print(f"{variant:10s} private {r['private_mib']:8.1f} MiB ({r['private_mib'] * MIB / state_file:5.2f} x the "
              f"state file, {r['private_mib'] / base if base else float('nan'):5.2f} x load_read)   file-backed "
              f"{r['file_mib']:8.1f} MiB ({r['file_mib'] * MIB / state_file:5.2f} x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "state_file_bytes": state_file, "sizes": sizes, "params": params,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
