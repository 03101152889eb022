"""Style mixing: per-class code operations, locality on a trained tiny model, the mix_styles CLI."""
import json
import os

import numpy as np
import pytest
import torch

import mix_styles
from data.image_io import read_rgb
from tests._pages import read_page
from util.images import label_colormap
from util.pages import mix_cell_name
from editing.style_mixing import (StyleMixer, code_channel_slices, interpolate_class_codes, normalise_codes,
                                  replace_class_codes, shift_class_colour)
from util.cli import run_cli
from util.errors import CheckpointError, InputError, OptionError


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """A tiny generator (ngf 4, crop 32) trained briefly with an L1 reconstruction loss (tests/_tiny_model.py)."""
    return tiny_trained


# ------------------------------------------------------------------------------- code operations
def test_replace_class_codes_copies_only_chosen_rows():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 512)), rng.random((4, 512))
    a_before = a.copy()
    out = replace_class_codes(a, b, [1, 3])
    np.testing.assert_array_equal(out[[1, 3]], b[[1, 3]])
    np.testing.assert_array_equal(out[[0, 2]], a[[0, 2]])
    np.testing.assert_array_equal(a, a_before)  # input untouched
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    batched = replace_class_codes(torch.stack([ta, tb]), torch.stack([tb, ta]), [2])
    assert torch.equal(batched[0, 2], tb[2]) and torch.equal(batched[1, 2], ta[2])
    assert torch.equal(batched[0, 0], ta[0])
    with pytest.raises(OptionError, match="out of range"):
        replace_class_codes(a, b, [4])
    with pytest.raises(InputError, match="differ in shape"):
        replace_class_codes(a, b[:3], [0])


def test_interpolation_endpoints_are_exact_and_midpoint_is_linear():
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 512)).astype(np.float32), rng.random((3, 512)).astype(np.float32)
    assert np.array_equal(interpolate_class_codes(a, b, [0, 2], 0.0), a)
    assert np.array_equal(interpolate_class_codes(a, b, [0, 2], 1.0), replace_class_codes(a, b, [0, 2]))
    mid = interpolate_class_codes(a, b, [2], 0.25)
    np.testing.assert_allclose(mid[2], 0.75 * a[2] + 0.25 * b[2], rtol=1e-6)
    np.testing.assert_array_equal(mid[:2], a[:2])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    assert torch.equal(interpolate_class_codes(ta, tb, [1], 1.0)[1], tb[1])
    torch.testing.assert_close(interpolate_class_codes(ta, tb, [1], 0.7)[1], torch.lerp(ta[1], tb[1], 0.7))


def test_shift_class_colour_edits_the_rgb_thirds():
    codes = np.zeros((3, 512), np.float32)
    codes[1] = 0.5
    codes[2, :] = 0.95
    out = shift_class_colour(codes, [0, 1, 2], (0.1, -0.2, 0.0))
    r, g, b = code_channel_slices()
    assert (r.start, r.stop, g.stop, b.stop) == (0, 171, 341, 512)
    np.testing.assert_allclose(out[1, r], 0.6)
    np.testing.assert_allclose(out[1, g], 0.3)
    np.testing.assert_allclose(out[1, b], 0.5)
    np.testing.assert_array_equal(out[0], 0)  # absent class stays absent
    np.testing.assert_allclose(out[2, r], 1.0)  # clipped
    batched = shift_class_colour(torch.from_numpy(np.stack([codes, codes])), [1], (0.1, 0, 0))
    assert torch.allclose(batched[1, 1, r], torch.tensor(0.6))


def test_normalise_codes_matches_loader_rule():
    raw = np.random.default_rng(2).random((3, 512)).astype(np.float32)
    torch.testing.assert_close(normalise_codes(raw, 3), torch.from_numpy((raw - 0.5) / 0.5))
    with_dontcare = normalise_codes(raw, 4)
    assert with_dontcare.shape == (4, 512) and torch.all(with_dontcare[3] == -1)
    with pytest.raises(InputError):
        normalise_codes(raw, 5)


# ------------------------------------------------------------------------------- trained model
def test_replacing_a_class_changes_pixels_mainly_inside_its_region(trained):
    mixer = StyleMixer(trained.model, trained.opt, seed=0)
    ratios, inside_change, outside_change = [], [], []
    for a in range(4):
        src = trained.samples[a]
        label = mixer.load_label(src.label_path)
        base = mixer.generate(label, src.codes).astype(np.float64)
        for b in range(4):
            if a == b:
                continue
            for j in (1, 2):
                inside = src.label == j
                if inside.sum() < 20:
                    continue
                mixed = replace_class_codes(src.codes, trained.samples[b].codes, [j])
                diff = np.abs(mixer.generate(label, mixed).astype(np.float64) - base).mean(-1)
                ratios.append(diff[inside].mean() / max(diff[~inside].mean(), 1e-6))
                inside_change.append(diff[inside].mean())
                outside_change.append(diff[~inside].mean())
    assert len(ratios) >= 12
    assert np.mean(inside_change) > 10  # grey levels: the codes really drive the colours
    # After 25 steps a few pairs are still poor (one ratio of about 1 where the colours are
    # close); the typical pair and the aggregate must be clearly local.
    assert np.median(ratios) > 4, ratios
    assert np.mean(np.array(ratios) > 2) >= 0.8, ratios
    assert np.mean(inside_change) > 4 * np.mean(outside_change)


def test_generation_is_deterministic_and_alpha_endpoints_reproduce_images(trained):
    mixer = StyleMixer(trained.model, trained.opt, seed=3)
    src, sty = trained.samples[0], trained.samples[1]
    label = mixer.load_label(src.label_path)
    own = mixer.generate(label, src.codes)
    assert np.array_equal(own, mixer.generate(label, src.codes))
    replaced = mixer.generate(label, replace_class_codes(src.codes, sty.codes, [1]))
    at0 = mixer.generate(label, interpolate_class_codes(src.codes, sty.codes, [1], 0.0))
    at1 = mixer.generate(label, interpolate_class_codes(src.codes, sty.codes, [1], 1.0))
    half = mixer.generate(label, interpolate_class_codes(src.codes, sty.codes, [1], 0.5))
    assert np.array_equal(at0, own) and np.array_equal(at1, replaced)
    assert not np.array_equal(half, own) and not np.array_equal(half, replaced)


# ------------------------------------------------------------------------------- CLI
def _base_argv(trained, out):
    s = trained.samples
    return ["--name", "tiny", "--checkpoints_dir", trained.ckpt, "--gpu_ids", "-1", "--no_progress",
            "--mix_dir", str(out), "--source_labels", s[0].label_path, s[2].label_path,
            "--source_codes", s[0].code_path, s[2].code_path]


def test_cli_replace_grid_by_class_name(trained):
    out = trained.root / "mix_replace"
    s = trained.samples
    argv = _base_argv(trained, out) + ["--style_codes", s[1].code_path,
                                       s[3].code_path,
                                       "--style_images", s[1].image_path, s[3].image_path, "--classes", "disc,box"]
    page = mix_styles.main(argv)
    manifest = json.loads((out / "mix.json").read_text())
    assert manifest["classes"] == [1, 2] and [r["source"] for r in manifest["rows"]] == ["s0", "s2"]
    assert [c["style"] for c in manifest["rows"][0]["cells"]] == ["s1", "s3"]
    # the page's layout is test.py's: heading, legend (restyled classes marked), one grid
    shown = read_page(page)
    assert shown.title == "Style mixing: tiny, checkpoint latest"
    assert shown.facts["model"] == "tiny" and shown.facts["classes restyled"] == "box,disc"
    assert shown.facts["generator"].startswith("raw") and "latest_net_G.pth" in shown.facts["checkpoint"]
    colours = label_colormap(3)
    assert [(e.index, e.name, e.colour, e.marked) for e in shown.legend] == [
        (j, name, "#%02x%02x%02x" % tuple(colours[j]), j in (1, 2)) for j, name in enumerate(("background", "box",
                                                                                              "disc"))]
    # the grid: header with the 2 style pictures, then per source label + reconstruction + 2 cells
    assert [c.images for c in shown.header] == [[], [], ["images/styles/s1.png"], ["images/styles/s3.png"]]
    assert len(shown.rows) == 2 and all(len(r) == 4 and all(len(c.images) == 1 for c in r) for r in shown.rows)
    assert shown.rows[1][3].lines == ["box,disc from s3"]
    assert shown.rows[1][3].images == ["images/" + mix_cell_name("s2", "s3", 1.0)]
    # a cell equals the API's result with the checkpoint's weights and the same noise seed
    mixer = StyleMixer(trained.model, trained.opt, seed=trained.opt.seed)
    expected = mixer.generate(mixer.load_label(s[2].label_path), replace_class_codes(s[2].codes, s[3].codes, [1, 2]))
    cell = read_rgb(str(out / "images" / mix_cell_name("s2", "s3", 1.0)))
    assert np.array_equal(cell, expected)


def test_cli_alpha_blend_with_codes_extracted_on_the_fly(trained):
    out = trained.root / "mix_alpha"
    s = trained.samples
    argv = _base_argv(trained, out) + ["--style_images", s[5].image_path, "--style_labels", s[5].label_path,
                                       "--spse_size", "32", "--classes", "2", "--alpha", "0,0.5,1"]
    mix_styles.main(argv)
    manifest = json.loads((out / "mix.json").read_text())
    row = manifest["rows"][0]
    assert [c["alpha"] for c in row["cells"]] == [0.0, 0.5, 1.0]
    images = {c["alpha"]: read_rgb(str(out / "images" / c["image"])) for c in row["cells"]}
    recon = read_rgb(str(out / "images" / row["reconstruction"]))
    assert np.array_equal(images[0.0], recon)  # alpha 0 reproduces the source
    assert not np.array_equal(images[1.0], recon)
    disc = s[0].label == 2
    change = np.abs(images[1.0].astype(float) - recon).mean(-1)
    assert change[disc].mean() > 3 * change[~disc].mean()


def test_cli_colour_edit_column(trained):
    out = trained.root / "mix_edit"
    s = trained.samples
    mix_styles.main(_base_argv(trained, out) + ["--classes", "disc", "--edit_rgb", "0.4,0,0"])
    row = json.loads((out / "mix.json").read_text())["rows"][0]
    assert row["cells"] == []  # no style source: only the edit column
    edited = read_rgb(str(out / "images" / row["edited"])).astype(float)
    recon = read_rgb(str(out / "images" / row["reconstruction"])).astype(float)
    disc = s[0].label == 2
    red_gain = (edited - recon)[..., 0]
    assert red_gain[disc].mean() > 10  # the disc gets redder...
    assert np.abs(edited - recon).mean(-1)[disc].mean() > 3 * np.abs(edited - recon).mean(-1)[~disc].mean()


def test_cli_errors_are_clear(trained, capsys):
    out = trained.root / "mix_err"
    base = _base_argv(trained, out) + ["--style_codes", trained.samples[1].code_path]
    assert run_cli(mix_styles.main, base + ["--classes", "wheel"]) == 2
    assert "unknown class name 'wheel'" in capsys.readouterr().err
    assert run_cli(mix_styles.main, base + ["--classes", "1", "--source_codes", trained.samples[0].code_path]) == 2
    assert "must pair up" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="7_net_G.pth"):
        mix_styles.main(base + ["--classes", "1", "--which_epoch", "7"])
    with pytest.raises(OptionError, match="no style source"):
        mix_styles.main(_base_argv(trained, out) + ["--classes", "1"])
    with pytest.raises(OptionError, match="three comma-separated"):
        mix_styles.main(_base_argv(trained, out) + ["--classes", "1", "--edit_rgb", "0.1,0.2"])


def test_cli_needs_only_label_maps_and_codes(trained, tmp_path):
    """Sources and styles given as label maps and code files alone (no photograph anywhere)."""
    import shutil

    s = trained.samples
    only = tmp_path / "no_photos"
    for sub in ("labels", "codes"):
        (only / sub).mkdir(parents=True)
    for i in (0, 1):
        shutil.copy(s[i].label_path, only / "labels" / f"s{i}.png")
        shutil.copy(s[i].code_path, only / "codes" / f"s{i}.npy")
    out = tmp_path / "mix"
    page = mix_styles.main(["--name", "tiny", "--checkpoints_dir", trained.ckpt, "--gpu_ids", "-1", "--no_progress",
                            "--mix_dir", str(out), "--source_labels", str(only / "labels" / "s0.png"),
                            "--source_codes", str(only / "codes" / "s0.npy"),
                            "--style_codes", str(only / "codes" / "s1.npy"), "--classes", "2"])
    row = json.loads((out / "mix.json").read_text())["rows"][0]
    shown = read_page(page)
    assert [len(c.images) for c in shown.header + shown.rows[0]] == [0, 0, 0, 1, 1, 1]  # no style picture
    assert shown.rows[0][2].images == ["images/" + row["cells"][0]["image"]]
    mixer = StyleMixer(trained.model, trained.opt, seed=trained.opt.seed)
    label = mixer.load_label(s[0].label_path)
    assert np.array_equal(read_rgb(str(out / "images" / row["reconstruction"])), mixer.generate(label, s[0].codes))


def test_cli_use_ema_loads_the_averaged_generator(trained, tmp_path):
    """--use_ema reads latest_net_G_ema.pth; its images are those of that generator, not the raw one's."""
    import copy

    from models.checkpoints import network_path, save_network

    ema_model = copy.deepcopy(trained.model)
    with torch.no_grad():  # any other weights stand in for an average here
        for p in ema_model.netG.parameters():
            p.mul_(0.5)
    folder = os.path.join(trained.ckpt, "tiny")
    path = network_path(folder, "latest", "G_ema")
    save_network(ema_model.netG, path)
    try:
        out = tmp_path / "mix_ema"
        argv = _base_argv(trained, out)[:-6] + ["--source_labels", trained.samples[0].label_path,
                                                "--source_codes", trained.samples[0].code_path,
                                                "--style_codes", trained.samples[1].code_path, "--classes", "1"]
        mix_styles.main(argv + ["--use_ema"])
        row = json.loads((out / "mix.json").read_text())["rows"][0]
        got = read_rgb(str(out / "images" / row["reconstruction"]))
        label = StyleMixer(trained.model, trained.opt).load_label(trained.samples[0].label_path)
        ema = StyleMixer(ema_model, trained.opt, seed=trained.opt.seed).generate(label, trained.samples[0].codes)
        raw = StyleMixer(trained.model, trained.opt, seed=trained.opt.seed).generate(label, trained.samples[0].codes)
        assert np.array_equal(got, ema) and not np.array_equal(got, raw)
    finally:
        os.remove(path)
    with pytest.raises(CheckpointError, match="latest_net_G_ema.pth: EMA generator not found"):
        mix_styles.main(argv + ["--use_ema"])
