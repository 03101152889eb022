"""Benchmark: how fast the style editor's image updates after an edit.

Setting (defaults): crop 256, ngf 64, label_nc 19 (the CelebAMask-HQ model
size), random generator weights (seeded; the cost does not depend on the
values) with batch-norm statistics set by one training-mode pass. Two samples: scikit-image's bundled ``astronaut`` and ``chelsea``
photos at 256x256 with the CelebAMask-HQ-like ``face`` layout of
``bench_spse.py`` (18 of the 19 classes) and their SPSE codes. The editor
runs as it does for a person: ``edit_app.build`` with the model passed in,
its HTTP server in a thread, and every step is one HTTP request from this
process, timed from sending it until the answer (image as PNG in the JSON)
is read:

* ``select sample``: picking a sample, the first render of its layout (the
  renderer records what depends on the label map alone);
* ``update``: edits after that (restyle hair / skin / cloth / eyes from the
  other sample, a colour change, the alpha slider amending an edit, undo,
  reset); the median and the slowest are reported;
* ``stroke``: brush strokes painted into the label map (hair 12 px, skin
  8 px, cloth 24 px, then undo of the last one): the renderer updates its
  cached layout where the label map changed and renders; median and slowest;
* ``baseline``: ``editing.style_mixing.StyleMixer.generate`` (the literal
  generator forward pass: one-hot map, every SPADE branch, ...) for the same
  codes, in the same process, median of ``--repeats``; this is what an
  editor without caching would pay per update.

The fast images are checked against the literal forward pass for the same
label map and codes (max abs difference in grey levels): after the code
edits, and after the strokes (the painted map). Memory: resident set size after building the model, after the
first render (the cached layout), and the peak (``ru_maxrss``). The 1-minute
load average is printed before and after: on a shared machine it inflates
every wall-clock time, baseline and editor alike.

Usage: python benchmarks/bench_editor.py [--crop 256 --ngf 64 --label_nc 19 --repeats 3
       --threads N --gpu_ids -1 --json out.json]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.memory import peak_rss_mib, rss_mib  # noqa: E402


def write_samples(root, size, label_nc):
    """Two samples (images/, labels/, codes/) with SPSE codes; returns the data folder."""
    from PIL import Image

    from bench_spse import face_layout, load_photo
    from data.codes import save_codes
    from spse.extractor import extract_style_codes
    from data.class_names import CELEBAMASK_HQ, write_class_names
    from util.io import save_image_atomic

    data = os.path.join(root, "data")
    label = face_layout(size, size)
    label[label >= label_nc] = 0
    for name in ("astronaut", "chelsea"):
        photo = np.asarray(Image.fromarray(load_photo(name)).resize((size, size), Image.BICUBIC))
        save_image_atomic(os.path.join(data, "images", f"{name}.png"), photo)
        save_image_atomic(os.path.join(data, "labels", f"{name}.png"), label)
        save_codes(os.path.join(data, "codes", f"{name}.npy"), extract_style_codes(photo, label, label_nc))
    if label_nc == len(CELEBAMASK_HQ):
        write_class_names(data, CELEBAMASK_HQ)
    return data


def calibrated_model(model, opt, data):
    """The random model with its batch-norm running statistics set from the benchmark's first sample.

    Untrained, the running statistics are 0 and 1 and the activations grow
    from block to block until the output is saturated everywhere (and float
    rounding decides the sign of a few saturated pixels). One training-mode
    forward pass with momentum 1 sets them as training would, so the images
    are in a normal range; the timing does not depend on it.
    """
    from data.codes import load_codes
    from editing.style_mixing import StyleMixer, normalise_codes

    mixer = StyleMixer(model, opt)
    label = mixer.load_label(os.path.join(data, "labels", "astronaut.png"))
    codes = normalise_codes(load_codes(os.path.join(data, "codes", "astronaut.npy")), opt.semantic_nc)
    norms = [m for m in model.modules() if hasattr(m, "running_var") and hasattr(m, "momentum")]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        segmap, _, codes = model.preprocess_input({"label": label[None], "codes": codes[None], "path": ["calib"]})
        model.netG(segmap, codes)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def post(url, body):
    """``(answer, wall seconds, process CPU seconds)`` of one request to the in-process server."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t0, c0 = time.perf_counter(), time.process_time()
    with urllib.request.urlopen(req, timeout=600) as resp:
        out = json.loads(resp.read())
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--repeats", type=int, default=3, help="baseline renders (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--gpu_ids", default="-1", help="-1: CPU; 0: the first GPU")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

    import edit_app
    from editor import api as editor_api
    from options.editor_options import EditorOptions
    from editing.style_mixing import StyleMixer
    from models import create_model

    load_before = os.getloadavg()[0]
    results = {"setting": {"crop": args.crop, "ngf": args.ngf, "label_nc": args.label_nc,
                           "threads": torch.get_num_threads(), "gpu_ids": args.gpu_ids,
                           "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_samples(tmp, args.crop, args.label_nc)
        argv_app = ["--name", "bench", "--checkpoints_dir", tmp, "--data", data, "--label_nc", str(args.label_nc),
                    "--crop_size", str(args.crop), "--ngf", str(args.ngf), "--gpu_ids", args.gpu_ids,
                    "--port", "0", "--max_layouts", "1"]
        opt = EditorOptions().parse(argv_app)
        torch.manual_seed(0)
        model = calibrated_model(create_model(opt).to(opt.device), opt, data)
        rss_model = rss_mib()
        server = edit_app.build(argv_app, model=model)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            api = server.url + "api/sessions"
            sid = post(api, {})[0]["session"]
            url = f"{api}/{sid}/"
            state, t_first, cpu_first = post(url + "sample", {"sample": 0})
            rss_layout = rss_mib()
            cache = server.engine.renderer.cache_bytes()
            names = server.engine.class_names
            steps = [("style", {"classes": ["hair" if "hair" in names else 1], "source": "sample:1"}),
                     ("style", {"classes": ["skin" if "skin" in names else 2], "source": "sample:1"}),
                     ("style", {"classes": ["skin" if "skin" in names else 2], "source": "sample:1", "alpha": 0.5,
                                "amend": True}),
                     ("colour", {"classes": ["cloth" if "cloth" in names else 3], "colour": "#3060c0"}),
                     ("style", {"classes": ["l_eye" if "l_eye" in names else 4,
                                            "r_eye" if "r_eye" in names else 5], "source": "sample:1"}),
                     ("undo", {}), ("reset", {})]
            strokes = [("paint", {"class": "hair" if "hair" in names else 1, "size": 12,
                                  "points": [[0.35, 0.18], [0.5, 0.14], [0.65, 0.18]]}),
                       ("paint", {"class": "skin" if "skin" in names else 2, "size": 8,
                                  "points": [[0.42, 0.55], [0.58, 0.6]]}),
                       ("paint", {"class": "cloth" if "cloth" in names else 3, "size": 24,
                                  "points": [[0.2, 0.92], [0.8, 0.92]]}),
                       ("undo", {})]
            updates, painting = [], []
            for timings, chosen in ((updates, steps), (painting, strokes)):
                for action, body in chosen:
                    state, dt, cpu = post(url + action, body)
                    timings.append({"action": action, "body": body, "s": round(dt, 3), "cpu_s": round(cpu, 3),
                                    "render_ms": state["render_ms"]})
            engine = server.engine
            session = server.store.get(sid)
            painted_codes = editor_api.current_codes(engine, session)  # the sample's own codes (after the reset)
            painted_label = editor_api.current_label(engine, session)  # the hair and skin strokes
            fast_painted = engine.render(0, painted_codes, painted_label).astype(int)
            fast = engine.render(0, engine.sample_codes(0)).astype(int)  # back to the unpainted layout
        finally:
            server.shutdown()
            server.server_close()
        mixer = StyleMixer(model, opt, seed=opt.seed)
        label = mixer.load_label(server.engine.samples[0].label_path)
        base_times, base_cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            literal = mixer.generate(label, server.engine.sample_codes(0))
            base_times.append(time.perf_counter() - t0)
            base_cpu.append(time.process_time() - c0)
        literal_painted = mixer.generate(painted_label, painted_codes)
    update_times = [u["s"] for u in updates]
    update_cpu = [u["cpu_s"] for u in updates]
    stroke_times = [u["s"] for u in painting]
    baseline = statistics.median(base_times)
    painted_diff = np.abs(fast_painted - literal_painted.astype(int))
    results.update({
        "baseline_literal_s": round(baseline, 3), "baseline_runs_s": [round(t, 3) for t in base_times],
        "baseline_cpu_s": round(statistics.median(base_cpu), 3),
        "select_sample_first_render_s": round(t_first, 3), "select_sample_cpu_s": round(cpu_first, 3),
        "update_median_s": round(statistics.median(update_times), 3), "update_max_s": round(max(update_times), 3),
        "update_median_cpu_s": round(statistics.median(update_cpu), 3),
        "update_speedup_vs_literal": round(baseline / statistics.median(update_times), 2),
        "updates": updates,
        "stroke_median_s": round(statistics.median(stroke_times), 3), "stroke_max_s": round(max(stroke_times), 3),
        "stroke_median_cpu_s": round(statistics.median(u["cpu_s"] for u in painting), 3),
        "stroke_speedup_vs_literal": round(baseline / statistics.median(stroke_times), 2),
        "strokes": painting,
        "painted_max_abs_diff_grey_levels": int(painted_diff.max()),
        "painted_pixels_differing": int((painted_diff.max(-1) > 0).sum()),
        "max_abs_diff_grey_levels": int(np.abs(fast - literal.astype(int)).max()),
        "pixels_differing": int((np.abs(fast - literal.astype(int)).max(-1) > 0).sum()),
        "rss_after_model_mib": round(rss_model), "rss_after_first_render_mib": round(rss_layout),
        "cached_layout_mib": round(cache["layouts"] / 2 ** 20), "frozen_weights_mib": round(cache["frozen_weights"] / 2 ** 20),
        "peak_rss_mib": round(peak_rss_mib()),
        "load_avg_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    })
    device = "GPU " + torch.cuda.get_device_name(opt.device) if opt.device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"{args.crop}x{args.crop}, ngf {args.ngf}, label_nc {args.label_nc}, {device}, "
          f"{torch.get_num_threads()} torch threads")
    print("wall-clock seconds (process CPU seconds, summed over threads)")
    print(f"baseline (literal forward, StyleMixer.generate): {baseline:.2f} s ({results['baseline_cpu_s']:.2f})  "
          f"runs: {', '.join(f'{t:.2f}' for t in base_times)}")
    print(f"select a sample (first render of its layout):   {t_first:.2f} s ({cpu_first:.2f})")
    for u in updates:
        print(f"  update {u['action']:7s} {json.dumps(u['body']):78s} {u['s']:.2f} s ({u['cpu_s']:.2f}), "
              f"render {u['render_ms']} ms")
    print(f"update latency: median {results['update_median_s']:.2f} s ({results['update_median_cpu_s']:.2f}), "
          f"max {results['update_max_s']:.2f} s -> {results['update_speedup_vs_literal']:.1f}x faster than the "
          f"literal forward pass")
    for u in painting:
        print(f"  stroke {u['action']:7s} {json.dumps(u['body'])[:78]:78s} {u['s']:.2f} s ({u['cpu_s']:.2f}), "
              f"render {u['render_ms']} ms")
    print(f"update after a stroke: median {results['stroke_median_s']:.2f} s ({results['stroke_median_cpu_s']:.2f}), "
          f"max {results['stroke_max_s']:.2f} s -> {results['stroke_speedup_vs_literal']:.1f}x faster than the "
          f"literal forward pass")
    print(f"editor image vs literal: max |diff| {results['max_abs_diff_grey_levels']} grey level(s), "
          f"{results['pixels_differing']} pixel(s) differ; painted map: {results['painted_max_abs_diff_grey_levels']} "
          f"grey level(s), {results['painted_pixels_differing']} pixel(s) differ")
    print(f"RSS: {rss_model:.0f} MiB after the model, {rss_layout:.0f} MiB after the first render, peak "
          f"{results['peak_rss_mib']} MiB; cached: layout {results['cached_layout_mib']} MiB, frozen "
          f"spectral-norm weights {results['frozen_weights_mib']} MiB")
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    if args.json:
        from util.io import write_text_atomic

        write_text_atomic(args.json, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
