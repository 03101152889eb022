"""test.py's results page: heading, class legend, per-image SSIM / PSNR and the compact grid (util/pages.py)."""
import importlib.util
import os
import shutil

import pytest

from data.image_io import read_rgb
from evaluation import metrics
from tests._pages import read_page
from tests.conftest import ROOT
from util.images import label_colormap
from util.pages import class_legend, format_metrics


def load_test_script():
    spec = importlib.util.spec_from_file_location("ssn_test_script_pages", os.path.join(ROOT, "test.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(tiny, results, *extra, ckpt=None, data=None):
    data = data or tiny.ds
    argv = ["--name", tiny.name, "--checkpoints_dir", ckpt or tiny.ckpt, "--gpu_ids", "-1",
            "--label_dir", os.path.join(data, "labels"), "--instance_dir", os.path.join(data, "codes"),
            "--results_dir", str(results), "--display_winsize", "64"]
    return argv + list(extra)


def _hex(rgb):
    return "#%02x%02x%02x" % tuple(int(c) for c in rgb)


def test_class_legend_names_and_colours():
    colours = label_colormap(4)
    assert class_legend(4, ("sky", "road")) == [(0, "sky", _hex(colours[0])), (1, "road", _hex(colours[1])),
                                                (2, "class 2", _hex(colours[2])), (3, "class 3", _hex(colours[3]))]
    assert class_legend(3, None, dontcare=True)[-1][1] == "don't care"
    assert format_metrics({"ssim": 0.123456, "psnr": float("inf")}) == "SSIM 0.1235, PSNR inf dB"


def test_results_page_heading_legend_metrics_and_grid(tiny_trained, tmp_path):
    tiny = tiny_trained
    page_path = load_test_script().main(_argv(tiny, tmp_path, "--image_dir", os.path.join(tiny.ds, "images"),
                                              "--how_many", "3"))
    page = read_page(page_path)
    folder = os.path.dirname(page_path)
    assert page.title == "tiny: test, checkpoint latest"
    assert page.facts["model"] == "tiny"
    assert page.facts["checkpoint"] == (f"latest: {os.path.join(tiny.ckpt, 'tiny', 'latest_net_G.pth')} "
                                        "(this project's layout)")
    assert page.facts["generator"] == "raw (not averaged)"
    assert page.facts["images"] == "3, 32x32 (width x height), seed 0"
    assert page.facts["metrics"] == metrics.describe_settings("gaussian", (32, 32))
    assert "SSIM gaussian" in page.facts["metrics"] and "data range 1" in page.facts["metrics"]
    # legend: the dataset's classes.txt names, in the label map's colours
    colours = label_colormap(3)
    assert [(e.index, e.name, e.colour) for e in page.legend] == [
        (0, "background", _hex(colours[0])), (1, "box", _hex(colours[1])), (2, "disc", _hex(colours[2]))]
    # the grid: a header row, then one row per image: name + metrics | label | synthesized | real
    assert [c.lines for c in page.header] == [["image"], ["label map"], ["synthesized"], ["real"]]
    assert [r[0].lines[0] for r in page.rows] == ["s0", "s1", "s2"]
    scores = []
    for row in page.rows:
        name = row[0].lines[0]
        assert [c.images for c in row[1:]] == [[f"images/{k}/{name}.png"] for k in
                                               ("input_label", "synthesized_image", "real_image")]
        assert all(c.width == "width:64px" for c in row[1:])
        # the values shown are evaluation.metrics' on the files the page links (default conventions)
        fake = read_rgb(os.path.join(folder, "images", "synthesized_image", f"{name}.png"))
        real = read_rgb(os.path.join(folder, "images", "real_image", f"{name}.png"))
        expected = metrics.reconstruction_metrics(fake, real)
        scores.append(expected)
        assert row[0].lines[1] == f"SSIM {expected['ssim']:.4f}, PSNR {expected['psnr']:.2f} dB"
        # ... which is the Gaussian variant, not the uniform one
        assert expected["ssim"] != metrics.ssim(fake, real, variant="uniform")
    mean = metrics.summarise(scores)
    assert page.facts["mean"] == f"SSIM {mean['ssim']:.4f}, PSNR {mean['psnr']:.2f} dB"


def test_results_page_without_photos_or_class_names(tiny_trained, tmp_path):
    """No --image_dir: no metrics and no real column; no classes.txt: the legend reads 'class j'."""
    tiny = tiny_trained
    data = tmp_path / "data"
    for sub in ("labels", "codes"):
        shutil.copytree(os.path.join(tiny.ds, sub), data / sub)
    page = read_page(load_test_script().main(_argv(tiny, tmp_path / "res", "--how_many", "2", data=str(data))))
    assert [e.name for e in page.legend] == ["class 0", "class 1", "class 2"]
    assert [c.lines for c in page.header] == [["image"], ["label map"], ["synthesized"]]
    assert [r[0].lines for r in page.rows] == [["s0"], ["s1"]]
    assert "mean" not in page.facts and page.facts["metrics"].startswith("none: no --image_dir")


def test_results_page_names_the_ema_generator(tiny_trained, tmp_path):
    tiny = tiny_trained
    ckpt = tmp_path / "ck"
    (ckpt / "tiny").mkdir(parents=True)
    shutil.copy(os.path.join(tiny.ckpt, "tiny", "opt.json"), ckpt / "tiny" / "opt.json")
    shutil.copy(os.path.join(tiny.ckpt, "tiny", "latest_net_G.pth"), ckpt / "tiny" / "latest_net_G_ema.pth")
    page_path = load_test_script().main(_argv(tiny, tmp_path / "res", "--how_many", "1", "--use_ema",
                                              ckpt=str(ckpt)))
    page = read_page(page_path)
    assert page_path.endswith(os.path.join("test_latest_ema", "index.html"))
    assert page.title == "tiny: test, checkpoint latest (EMA generator)"
    assert page.facts["generator"] == "EMA (averaged weights, --use_ema)"
    assert page.facts["checkpoint"].startswith(f"latest: {ckpt / 'tiny' / 'latest_net_G_ema.pth'}")


@pytest.mark.parametrize("variant", ["gaussian", "uniform"])
def test_describe_settings_names_variant_range_and_size(variant):
    text = metrics.describe_settings(variant, {(32, 48): 3, (64, 64): 1})
    assert f"SSIM {variant}" in text and metrics.SSIM_DESCRIPTIONS[variant] in text
    assert "[0, 1] (data range 1" in text and "images 48x32 (3), 64x64 (1)" in text
