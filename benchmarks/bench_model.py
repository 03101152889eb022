"""Benchmark: this project's model against the literal (release-style) formulation.

Tasks, at crop 128, ngf 16, batch 2, label_nc 19 (defaults):

* ``train``: G forward with GAN, feature-matching and VGG losses (VGG19 with
  *random* weights, the same cost for both variants) + backward, then the D
  step; no optimiser step;
* ``train_novgg``: the same without the VGG loss;
* ``inference``: the generator in eval mode, without grad.

The reference is the same network with the same weights whose ACE layers use
the literal formulations of docs/method.md §5–§6 (``tests/_reference.py``:
``LiteralACE`` via ``to_literal``, the code the tests check the model
against). Each (variant, task) runs in a fresh subprocess; reported: the
median (and best) of ``--repeats`` timed steps after one warm-up, the peak RSS
and the peak minus the RSS after building the model (the step's working
memory), the parameter count at label_nc 19, ngf 64, crop 256 next to the
release's, and how much GSAS moves the release fixture's output. What the
numbers mean: docs/model.md, "Benchmark".

Usage: python benchmarks/bench_model.py [--crop 128 --ngf 16 --batch 2 --label_nc 19
       --repeats 3 --threads N --json out.json]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.memory import peak_rss_mib, rss_mib  # noqa: E402
from options import build_options  # noqa: E402
from tests._reference import DATA_DIR, to_literal  # noqa: E402

RELEASE_G_PARAMS = 274_785_245
TASKS = ("train", "train_novgg", "inference")


# ----------------------------------------------------------------------------- worker



def make_batch(args):
    g = torch.Generator().manual_seed(123)
    # blocky label map: realistic class regions, every class present somewhere
    coarse = torch.randint(0, args.label_nc, (args.batch, 1, args.crop // 8, args.crop // 8), generator=g)
    label = F.interpolate(coarse.float(), size=(args.crop, args.crop), mode="nearest").long()
    return {
        "label": label,
        "image": torch.rand(args.batch, 3, args.crop, args.crop, generator=g) * 2 - 1,
        "codes": torch.rand(args.batch, args.label_nc, 512, generator=g) * 2 - 1,
        "path": [f"bench{i}.png" for i in range(args.batch)],
    }


def worker(args):
    from models import create_model
    from models.networks import VGG19Features, vgg19_conv_stack

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    is_train = args.task in ("train", "train_novgg")
    use_vgg = args.task == "train"
    losses = {"no_vgg_loss": not use_vgg} if is_train else {}  # the loss flags exist in training only
    opt = build_options(is_train, label_nc=args.label_nc, ngf=args.ngf, crop_size=args.crop, gpu_ids="-1",
                        **losses)
    vgg = VGG19Features(vgg19_conv_stack()) if use_vgg else None
    model = create_model(opt, vgg=vgg)
    if args.variant == "reference":
        to_literal(model.netG)
    data = make_batch(args)
    base_rss = rss_mib()
    times = []
    out = None
    for it in range(args.repeats + 1):
        t0 = time.perf_counter()
        if is_train:
            model.train()
            losses, generated = model(data, "generator")
            if it == 0:
                out = generated.detach()
            model.weighted_sum(losses).backward()
            d_losses = model(data, "discriminator")
            sum(d_losses.values()).backward()
            model.zero_grad(set_to_none=True)
        else:
            model.eval()
            model(data, "inference")
        if it > 0:
            times.append(time.perf_counter() - t0)
    result = {
        "variant": args.variant, "task": args.task, "threads": torch.get_num_threads(),
        "time_s": statistics.median(times), "min_time_s": min(times), "times_s": times,
        "rss_after_build_mib": base_rss, "peak_rss_mib": peak_rss_mib(),
    }
    result["peak_increase_mib"] = result["peak_rss_mib"] - base_rss
    if out is not None and args.save_output:
        torch.save(out, args.save_output)
    print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------- parent

def run_worker(args, variant, task, save_output=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--variant", variant, "--task", task,
           "--crop", str(args.crop), "--ngf", str(args.ngf), "--batch", str(args.batch),
           "--label_nc", str(args.label_nc), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    if save_output:
        cmd += ["--save_output", save_output]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {variant}/{task} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def parameter_count():
    from models.networks import SuperStyleNetGenerator

    with torch.device("meta"):
        g = SuperStyleNetGenerator(19, crop_size=256, ngf=64)
    return sum(p.numel() for p in g.parameters())


def gsas_effect():
    """GSAS shift statistics and its effect on the release fixture's output (if the fixture is found)."""
    import numpy as np

    from models.checkpoint_compat import load_generator_weights
    from models.networks import SuperStyleNetGenerator
    from models.networks.gsas import GSAS

    path = os.path.join(DATA_DIR, "original_netG_fixture.npz")
    if not os.path.isfile(path):
        return {"note": f"{path} not found; GSAS effect not measured"}
    z = np.load(path)
    state = {}
    for k in z.files:
        if k.startswith("int8/"):
            state[k[5:]] = torch.from_numpy(z[k].astype(np.float32) * np.float32(z["scale/" + k[5:]]))
        elif k.startswith("raw/"):
            state[k[4:]] = torch.from_numpy(z[k])
    g = SuperStyleNetGenerator(19, crop_size=64, ngf=4).eval().double()
    load_generator_weights(g, state)
    seg = F.one_hot(torch.from_numpy(z["label"].astype(np.int64)), 19).permute(2, 0, 1)[None].double()
    codes = torch.from_numpy(z["codes"])[None].double()
    shifts = []
    for m in g.modules():
        if isinstance(m, GSAS):
            shifts.append((m(codes) - codes).abs().max().item())
    with torch.no_grad():
        with_gsas = g(seg, codes)
        originals = {}
        for m in g.modules():
            if isinstance(m, GSAS):
                originals[m] = m.forward
                m.forward = lambda s: s  # identity: GSAS removed
        without = g(seg, codes)
        for m, f in originals.items():
            m.forward = f
    expected = torch.from_numpy(z["expected"]).double()
    return {
        "max_code_shift": max(shifts), "bound_max_abs_s_over_C": codes.abs().max().item() / 512,
        "output_change_without_gsas": (with_gsas - without).abs().max().item(),
        "fixture_error_with_gsas_float64": (with_gsas[0] - expected).abs().max().item(),
    }


def main():
    from util.cli import HelpFormatter

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=("ours", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    p.add_argument("--save_output", type=str, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    import tempfile

    from tqdm import tqdm

    from util.io import write_text_atomic

    results = {"config": {k: getattr(args, k) for k in ("crop", "ngf", "batch", "label_nc", "repeats", "threads")}}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(v, t) for t in TASKS for v in ("ours", "reference")]
        for variant, task in tqdm(jobs, desc="benchmark runs"):
            save = os.path.join(tmp, f"{variant}.pt") if task == "train" else None
            results[f"{variant}/{task}"] = run_worker(args, variant, task, save)
        out_ours = torch.load(os.path.join(tmp, "ours.pt"))
        out_ref = torch.load(os.path.join(tmp, "reference.pt"))
        results["generated_max_abs_diff"] = (out_ours - out_ref).abs().max().item()
        results["generated_max_abs"] = out_ref.abs().max().item()
    for task in TASKS:
        o, r = results[f"ours/{task}"], results[f"reference/{task}"]
        results[f"{task}_speedup"] = r["time_s"] / o["time_s"]
        results[f"{task}_speedup_min"] = r["min_time_s"] / o["min_time_s"]
        results[f"{task}_peak_rss_ratio"] = r["peak_rss_mib"] / o["peak_rss_mib"]
        results[f"{task}_peak_increase_ratio"] = r["peak_increase_mib"] / max(o["peak_increase_mib"], 1e-9)
    results["params_label19_ngf64_crop256"] = parameter_count()
    results["params_release"] = RELEASE_G_PARAMS
    results["gsas"] = gsas_effect()

    print(f"config: {results['config']}  (threads used: {results['ours/train']['threads']})")
    print(f"{'':30}{'ours':>12}{'reference':>12}{'ratio':>9}")
    for task in TASKS:
        o, r = results[f"ours/{task}"], results[f"reference/{task}"]
        print(f"{task + ' time (s)':30}{o['time_s']:12.2f}{r['time_s']:12.2f}{results[task + '_speedup']:8.1f}x")
        print(f"{task + ' best time (s)':30}{o['min_time_s']:12.2f}{r['min_time_s']:12.2f}"
              f"{results[task + '_speedup_min']:8.1f}x")
        print(f"{task + ' peak RSS (MiB)':30}{o['peak_rss_mib']:12.0f}{r['peak_rss_mib']:12.0f}"
              f"{results[task + '_peak_rss_ratio']:8.1f}x")
        print(f"{task + ' peak - built (MiB)':30}{o['peak_increase_mib']:12.0f}{r['peak_increase_mib']:12.0f}"
              f"{results[task + '_peak_increase_ratio']:8.1f}x")
    print(f"generated image of the first training step (train-mode BN, same noise), ours vs reference: "
          f"max abs diff {results['generated_max_abs_diff']:.2e} (max |output| {results['generated_max_abs']:.3f})")
    print(f"generator parameters (label_nc 19, ngf 64, crop 256): {results['params_label19_ngf64_crop256']:,} "
          f"(release: {RELEASE_G_PARAMS:,})")
    print(f"GSAS: {results['gsas']}")
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
