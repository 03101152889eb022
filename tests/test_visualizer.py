"""Training logs: TensorBoard events by default, loss_log.txt appended, curves on the HTML page."""
import argparse
import os
import re

import torch

from trainers.visualizer import CURVES, Visualizer


def _opt(tmp_path, **kw):
    base = dict(checkpoints_dir=str(tmp_path), name="run", tf_log=True, no_html=False, display_winsize=64,
                semantic_nc=3, crop_size=32, num_upsampling_layers="normal", aspect_ratio=1.0)
    return argparse.Namespace(**{**base, **kw})


def test_log_is_appended_and_curves_follow_the_log_across_runs(tmp_path):
    opt = _opt(tmp_path)
    vis = Visualizer(opt)
    for step in (10, 20, 30):
        vis.print_current_errors(1, step, {"GAN": 1.0 / step, "D_real": 0.5}, 0.01, step=step)
    vis.close()
    log = tmp_path / "run" / "loss_log.txt"
    inode, first = os.stat(log).st_ino, log.read_text()
    assert "(epoch: 1, iters: 20, step: 20, time: 0.010) GAN: 0.050 D_real: 0.500" in first

    # a resumed run (from step 20) reads the curves back and replaces the points from its first step on
    vis = Visualizer(opt)
    assert vis.loss_history["GAN"] == [(10, 0.1), (20, 0.05), (30, 0.033)]
    vis.print_current_errors(1, 30, {"GAN": 0.02, "D_real": 0.4}, 0.01, step=25)
    assert vis.loss_history["GAN"] == [(10, 0.1), (20, 0.05), (25, 0.02)]
    vis.print_eval(1, 30, 25, {"ssim": 0.5, "fid": None}, 4)
    assert vis.eval_history == {"ssim": [(25, 0.5)], "fid": []}
    assert os.stat(log).st_ino == inode and log.read_text().startswith(first)  # appended, never rewritten

    label = torch.zeros(1, 1, 32, 32, dtype=torch.long)
    image = torch.zeros(1, 3, 32, 32)
    page = vis.display_current_results({"input_label": label, "synthesized_image": image, "real_image": image},
                                       1, 25)
    vis.close()
    assert f'src="images/{CURVES}"' in open(page).read()
    svg = (tmp_path / "run" / "web" / "images" / CURVES).read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and svg.count("<circle") == 1  # GAN, D_real; ssim
    assert "loss GAN: 0.02" in svg and "eval ssim: 0.5" in svg
    # the polyline of GAN goes down: its y pixel grows from point to point
    gan = re.findall(r'<polyline points="([^"]+)"', svg)[0]
    ys = [float(p.split(",")[1]) for p in gan.split()]
    assert ys == sorted(ys) and ys[0] < ys[-1]


def test_tensorboard_events_by_default_with_rates_and_speed(tmp_path):
    vis = Visualizer(_opt(tmp_path))
    vis.plot_current_errors({"GAN": 1.0}, 5)
    vis.plot_speed(1e-4, 4e-4, 0.5, 8, 5)
    vis.plot_eval({"ssim": 0.5, "fid": None}, 5)
    vis.close()
    events = list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))
    assert len(events) == 1
    content = events[0].read_bytes()
    for tag in (b"loss/GAN", b"lr/G", b"lr/D", b"speed/step_time_s", b"speed/images_per_s", b"eval/ssim"):
        assert tag in content, tag
    assert b"eval/fid" not in content


def test_no_tf_log_turns_the_events_off():
    from options import build_options

    assert build_options(True, gpu_ids="-1").tf_log is True
    from options.train_options import TrainOptions

    assert TrainOptions().parse(["--gpu_ids", "-1", "--no_tf_log"]).tf_log is False
    assert TrainOptions().parse(["--gpu_ids", "-1", "--tf_log"]).tf_log is True
