"""One rule per input mistake, the same in save_style_vector.py, train.py, test.py and mix_styles.py.

* lossy (JPEG) label maps are refused, with one message saying why class maps must be lossless;
* an image and its label map must have the same aspect ratio (sizes may differ), one message;
* files without a partner are named: the first few stems, plus a count;
* 16-bit photos are scaled to 8 bits; floating-point label maps, negative label values, images too large
  to decode and .npz archives named .npy are refused naming the file (recomputed in extraction's --save_dir);
* output files follow the umask (0644 under umask 022) despite the temporary-file-then-rename;
* a training run that fails validation writes nothing under checkpoints/<name>.
"""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import mix_styles
import save_style_vector
import test as test_script
import train
from data.codes import save_codes
from tests._synthetic import build_synthetic_dataset
from data.image_io import LOSSY_LABEL_REASON, read_label
from spse.job import extract_dataset, format_summary
from util.cli import run_cli
from util.errors import CheckpointError, InputError
from util.io import save_image_atomic, save_npy_atomic, write_text_atomic
from util.torch_io import torch_save_atomic

LABEL_NC = 2  # the per-class layers dominate the model size: 2 classes keep training and saving cheap


@pytest.fixture()
def dirs(tmp_path):
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=LABEL_NC)
    return {"images": images, "labels": labels, "codes": codes, "root": tmp_path}


def _train_argv(d, name="run", *extra):
    return ["--name", name, "--checkpoints_dir", str(d["root"] / "ck"), "--gpu_ids", "-1",
            "--label_dir", d["labels"], "--image_dir", d["images"], "--instance_dir", d["codes"],
            "--label_nc", str(LABEL_NC), "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", "2", "--niter", "1", "--niter_decay", "0", "--max_steps", "1",
            "--print_freq", "100", "--display_freq", "100", *extra]


def _test_argv(d, name="run"):
    return ["--name", name, "--checkpoints_dir", str(d["root"] / "ck"), "--gpu_ids", "-1",
            "--results_dir", str(d["root"] / "results"), "--label_dir", d["labels"], "--image_dir", d["images"],
            "--instance_dir", d["codes"], "--label_nc", str(LABEL_NC), "--crop_size", "32", "--ngf", "4"]


def _extract(d, save="extracted"):
    return extract_dataset(d["images"], d["labels"], str(d["root"] / save), LABEL_NC, size=32, n_segments=8,
                           workers=1, progress=False)


def _jpeg_labels(d):
    """Replace every label PNG by a JPEG of the same map (what a careless conversion does)."""
    for name in sorted(os.listdir(d["labels"])):
        path = os.path.join(d["labels"], name)
        Image.open(path).save(os.path.splitext(path)[0] + ".jpg", quality=90)
        os.remove(path)


def _mixing_checkpoint(d, name="mix"):
    """An untrained tiny generator with its opt.json, for mix_styles.py's command line."""
    from models.superstylenet_model import SuperStyleNetModel
    from options.test_options import TestOptions
    from models.checkpoints import network_path, save_network

    options = TestOptions()
    opt = options.parse(["--name", name, "--checkpoints_dir", str(d["root"] / "ck"), "--label_nc", str(LABEL_NC),
                         "--crop_size", "32", "--ngf", "4", "--gpu_ids", "-1"], save=False)
    options.save_options(opt)
    torch.manual_seed(0)
    save_network(SuperStyleNetModel(opt).netG, network_path(str(d["root"] / "ck" / name), "latest", "G"))
    return ["--name", name, "--checkpoints_dir", str(d["root"] / "ck"), "--gpu_ids", "-1", "--no_progress",
            "--mix_dir", str(d["root"] / "mixed"), "--classes", "1", "--spse_size", "32"]


# ------------------------------------------------------------------------------- lossy label maps
def test_jpeg_labels_are_refused_everywhere_with_one_message(dirs, capsys):
    label_png = os.path.join(dirs["labels"], "img0.png")
    kept_png = str(dirs["root"] / "img0_label.png")
    shutil.copy(label_png, kept_png)
    _jpeg_labels(dirs)
    jpeg = os.path.join(dirs["labels"], "img0.jpg")
    changed = np.mean(read_label(kept_png) != np.asarray(Image.open(jpeg).convert("L")))
    assert changed > 0  # the reason for the rule: compression changed class indices

    # train.py and test.py (the dataset), and the extraction job: the whole folder is refused up front
    with pytest.raises(InputError) as train_error:
        train.main(_train_argv(dirs))
    with pytest.raises(InputError) as test_error:
        test_script.main(_test_argv(dirs))
    with pytest.raises(InputError) as extract_error:
        _extract(dirs)
    for e in (train_error, test_error, extract_error):
        assert LOSSY_LABEL_REASON in str(e.value) and "img0.jpg" in str(e.value) and "4 label maps" in str(e.value)
    # save_style_vector.py's command line: exit status 2 and the same message
    assert save_style_vector.main(["--image_dir", dirs["images"], "--label_dir", dirs["labels"], "--save_dir",
                                   str(dirs["root"] / "c"), "--label_nc", str(LABEL_NC), "--workers", "1",
                                   "--no_progress"]) == 2
    assert LOSSY_LABEL_REASON in capsys.readouterr().err

    # mix_styles.py: a JPEG source label map, and a JPEG style label map for extraction
    base = _mixing_checkpoint(dirs)
    code = os.path.join(dirs["codes"], "img0.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", jpeg, "--source_codes", code, "--style_codes", code]) == 2
    err = capsys.readouterr().err
    assert LOSSY_LABEL_REASON in err and "img0.jpg" in err
    assert run_cli(mix_styles.main, base + ["--source_labels", kept_png, "--source_codes", code, "--style_images",
                                  os.path.join(dirs["images"], "img1.png"), "--style_labels",
                                  os.path.join(dirs["labels"], "img1.jpg")]) == 2
    err = capsys.readouterr().err
    assert LOSSY_LABEL_REASON in err and "img1.jpg" in err


def test_a_png_name_does_not_hide_jpeg_content(tmp_path):
    path = tmp_path / "label.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="JPEG")
    with pytest.raises(InputError, match="label.png: label map in a lossy format") as e:
        read_label(str(path))
    assert LOSSY_LABEL_REASON in str(e.value)


# ------------------------------------------------------------------------------- aspect ratio
def test_aspect_ratio_rule_is_the_same_in_extraction_training_and_mixing(dirs, capsys):
    image = os.path.join(dirs["images"], "img1.png")
    save_image_atomic(image, np.full((32, 40, 3), 90, np.uint8))  # 40x32 image, 32x32 label
    summary = _extract(dirs)
    assert summary["written"] == 3 and summary["failed"] == 1 and not summary["warnings"]
    (extraction_message,) = summary["failures"]
    assert not os.path.exists(dirs["root"] / "extracted" / "img1.npy")

    from data.loader import create_dataset
    from options.test_options import TestOptions

    dataset = create_dataset(TestOptions().parse(_test_argv(dirs), save=False))
    with pytest.raises(InputError) as training_error:
        dataset[1]
    assert str(training_error.value) == extraction_message
    assert "img1.png: image is 40x32" in extraction_message and "must have the same aspect ratio" in extraction_message

    base = _mixing_checkpoint(dirs)
    code = os.path.join(dirs["codes"], "img0.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", os.path.join(dirs["labels"], "img0.png"), "--source_codes",
                                  code, "--style_images", image, "--style_labels",
                                  os.path.join(dirs["labels"], "img1.png")]) == 2
    assert extraction_message in capsys.readouterr().err


def test_sizes_may_differ_when_the_aspect_ratio_agrees(dirs):
    save_image_atomic(os.path.join(dirs["images"], "img1.png"), np.full((64, 64, 3), 90, np.uint8))
    summary = _extract(dirs)
    assert summary["written"] == 4 and summary["failed"] == 0 and summary["warnings"] == []
    from data.loader import create_dataset
    from options.test_options import TestOptions

    item = create_dataset(TestOptions().parse(_test_argv(dirs), save=False))[1]
    assert item["image"].shape[1:] == item["label"].shape[1:] == (32, 32)


# ------------------------------------------------------------------------------- missing partners
def test_files_without_a_partner_are_named_with_a_count(dirs):
    os.remove(os.path.join(dirs["codes"], "img3.npy"))  # 4 labels, 4 images, 3 code files
    with pytest.raises(InputError) as e:
        train.main(_train_argv(dirs))
    msg = str(e.value)
    assert "1 of 4 stems lack a partner ('img3')" in msg
    assert os.path.join(dirs["labels"], "img3.png") + ": no matching code file with stem 'img3'" in msg
    assert dirs["codes"] in msg

    # many: the first five stems by name, then a count
    images = [os.path.join(dirs["images"], f"extra{i}.png") for i in range(8)]
    for p in images:
        save_image_atomic(p, np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError) as e:
        test_script.main(_test_argv(dirs))
    msg = str(e.value)
    assert "9 of 12 stems lack a partner ('extra0', 'extra1', 'extra2', 'extra3', 'extra4' and 4 more)" in msg
    assert "... and 4 more" in msg and "extra5" not in msg

    # extraction goes on with the complete pairs and reports the rest in the same words
    os.remove(os.path.join(dirs["labels"], "img2.png"))
    summary = _extract(dirs)
    assert summary["written"] == 3 and summary["failed"] == 9
    text = format_summary(summary)
    assert "FAILED: files do not pair by stem: 9 of 12 stems lack a partner ('extra0', 'extra1', 'extra2', " \
           "'extra3', 'extra4' and 4 more)" in text
    assert text.count("no matching label") == 5


def test_mixing_names_files_without_a_partner(dirs, capsys):
    base = _mixing_checkpoint(dirs)
    labels = [os.path.join(dirs["labels"], f"img{i}.png") for i in range(3)]
    code = os.path.join(dirs["codes"], "img0.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", *labels, "--source_codes", code, "--style_codes", code]) == 2
    err = capsys.readouterr().err
    assert "2 of the --source_labels files lack a partner in --source_codes" in err
    assert labels[1] in err and labels[2] in err


# ------------------------------------------------------------------------------- permissions
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        save_npy_atomic(tmp_path / "a.npy", np.zeros(3))
        torch_save_atomic({"w": torch.zeros(2)}, tmp_path / "a.pth")
        save_image_atomic(str(tmp_path / "a.png"), np.zeros((4, 4), np.uint8))
        save_codes(str(tmp_path / "c.npy"), np.zeros((2, 512)))
        write_text_atomic(tmp_path / "a.txt", "overwritten")
    finally:
        os.umask(old)
    for name in ("a.txt", "a.npy", "a.pth", "a.png", "c.npy"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(mode), name


def test_training_and_test_outputs_are_shareable(dirs):
    old = os.umask(0o022)
    try:
        train.main(_train_argv(dirs))
        page = test_script.main(_test_argv(dirs))
    finally:
        os.umask(old)
    folder = dirs["root"] / "ck" / "run"
    for path in [folder / "latest_net_G.pth", folder / "latest_train_state.pth", folder / "opt.json",
                 folder / "loss_log.txt", page]:
        assert oct(os.stat(path).st_mode & 0o777) == "0o644", path


# ------------------------------------------------------------------------------- options written last
def test_a_run_that_fails_validation_leaves_no_checkpoint_folder(dirs):
    folder = dirs["root"] / "ck" / "run"
    os.remove(os.path.join(dirs["codes"], "img3.npy"))
    with pytest.raises(InputError):
        train.main(_train_argv(dirs))
    assert not folder.exists()
    save_codes(os.path.join(dirs["codes"], "img3.npy"), np.zeros((LABEL_NC, 512)))
    argv = [a for a in _train_argv(dirs) if a != "--no_vgg_loss"]
    with pytest.raises(CheckpointError, match="VGG"):  # the model's weights are validated too
        train.main(argv + ["--vgg_path", str(dirs["root"] / "missing_vgg19.pth")])
    assert not folder.exists()
    train.main(_train_argv(dirs))
    assert (folder / "opt.json").is_file()


# ------------------------------------------------------------------------------- 16-bit photos
def _png_48bit(path, rgb16):
    """Write an ``(H, W, 3)`` uint16 array as a 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = rgb16.shape
    big = rgb16.astype(">u2")
    raw = b"".join(b"\x00" + big[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_photos_are_scaled_to_8_bits(tmp_path):
    from data.image_io import read_rgb

    values = np.array([0, 1, 128, 129, 257, 385, 386, 32896, 65278, 65534, 65535] + list(range(0, 65536, 997)),
                      np.uint16)
    grey = values.reshape(1, -1)
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    expected = np.round(values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)  # the literal rule
    got = read_rgb(str(tmp_path / "grey16.png"))
    assert got.shape == (1, values.size, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.repeat(expected[None, :, None], 3, axis=2))
    Image.fromarray(grey.astype(np.int32)).save(tmp_path / "grey32.tif")  # mode "I" holding 16-bit values
    np.testing.assert_array_equal(read_rgb(str(tmp_path / "grey32.tif")), got)

    rgb16 = np.stack([grey, grey[:, ::-1], np.full_like(grey, 40000)], axis=2)
    _png_48bit(tmp_path / "rgb48.png", rgb16)
    colour = read_rgb(str(tmp_path / "rgb48.png")).astype(np.int64)
    literal = rgb16.astype(np.float64) * 255.0 / 65535.0
    assert np.abs(colour - literal).max() <= 1.0  # Pillow keeps the high byte of each channel
    assert colour.max() == 255 and colour.min() == 0

    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(InputError, match="float.tif: floating-point image; photos must have 8 or 16 bits"):
        read_rgb(str(tmp_path / "float.tif"))
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match="wide.tif: 32-bit integer image with values outside 0..65535"):
        read_rgb(str(tmp_path / "wide.tif"))


def test_a_16_bit_photo_is_trained_on_and_extracted_at_its_true_grey_level(dirs):
    from data.loader import create_dataset
    from options.train_options import TrainOptions

    path = os.path.join(dirs["images"], "img0.png")
    os.remove(path)
    Image.fromarray(np.full((32, 32), 128 * 257, np.uint16)).save(path)  # grey level 128 of 255
    opt = TrainOptions().parse(_train_argv(dirs, "grey16", "--no_flip"), save=False)
    image = create_dataset(opt)[0]["image"]
    np.testing.assert_allclose(image.numpy(), 128 / 127.5 - 1.0, atol=1e-6)  # not white (1.0)
    _extract(dirs)
    codes = np.load(dirs["root"] / "extracted" / "img0.npy")
    present = np.abs(codes).sum(axis=1) > 0
    np.testing.assert_allclose(codes[present], 128 / 255, atol=1e-5)  # a flat photo gives flat codes


# ------------------------------------------------------------------------------- label maps: one reader
def _float_label(path):
    label = read_label(path)
    os.remove(path)
    tif = os.path.splitext(path)[0] + ".tif"
    Image.fromarray(label.astype(np.float32)).save(tif)
    return tif


def test_a_float_label_map_is_refused_by_every_script_with_one_message(dirs, capsys):
    tif = _float_label(os.path.join(dirs["labels"], "img0.png"))
    message = (f"{tif}: label map holds floating-point values; class maps must hold integer class indices "
               f"(save it as an 8- or 16-bit PNG)")
    with pytest.raises(InputError) as e:
        train.main(_train_argv(dirs, "run", "--serial_batches"))
    assert str(e.value) == message
    base = _mixing_checkpoint(dirs)
    with pytest.raises(InputError) as e:
        test_script.main(_test_argv(dirs, name="mix"))
    assert str(e.value) == message
    summary = _extract(dirs)
    assert summary["failures"] == [message] and summary["written"] == 3
    capsys.readouterr()
    code = os.path.join(dirs["codes"], "img0.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", tif, "--source_codes", code, "--style_codes", code]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_a_negative_label_value_names_the_label_file(dirs):
    path = os.path.join(dirs["labels"], "img1.png")
    label = read_label(path).astype(np.int32)
    label[0, 0] = -1
    os.remove(path)
    tif = os.path.join(dirs["labels"], "img1.tif")
    Image.fromarray(label).save(tif)
    summary = _extract(dirs)
    (failure,) = summary["failures"]
    rule = f"{tif}: label values -1 are out of range for label_nc={LABEL_NC}; class indices are 0..1"
    assert failure == rule + " (255: don't care): check --label_nc and this label map"  # extraction ignores 255
    assert os.path.join(dirs["images"], "img1.png") not in failure
    from data.loader import create_dataset
    from options.test_options import TestOptions

    with pytest.raises(InputError) as e:
        create_dataset(TestOptions().parse(_test_argv(dirs), save=False))[1]
    assert str(e.value) == rule + ": check --label_nc and this label map"


# ------------------------------------------------------------------------------- .npz archives named .npy
def test_an_npz_archive_named_npy(dirs, capsys):
    npz = os.path.join(dirs["codes"], "img0.npy")
    codes = np.load(npz)
    with open(npz, "wb") as f:
        np.savez(f, codes=codes)
    message = (f"{npz}: this is an .npz archive, not a .npy code file; save the codes with np.save (one array "
               f"per file) or recompute them with save_style_vector.py")
    # --instance_dir (training and testing): refused at construction, naming the file
    with pytest.raises(InputError) as e:
        train.main(_train_argv(dirs))
    assert str(e.value) == message
    with pytest.raises(InputError) as e:
        test_script.main(_test_argv(dirs))
    assert str(e.value) == message
    # --style_codes / --source_codes (mixing): exit status 2, the same message
    base = _mixing_checkpoint(dirs)
    good = os.path.join(dirs["codes"], "img1.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", os.path.join(dirs["labels"], "img1.png"), "--source_codes",
                                  good, "--style_codes", npz]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    # --save_dir (extraction): recomputed like a truncated file, the job goes on
    summary = extract_dataset(dirs["images"], dirs["labels"], dirs["codes"], LABEL_NC, size=32, n_segments=8,
                              workers=1, progress=False)
    assert summary["written"] == 1 and summary["skipped"] == 3 and summary["failed"] == 0
    assert any(w.startswith(f"{npz}: existing code file is invalid (this is an .npz archive")
               for w in summary["warnings"])
    assert np.load(npz).shape == (LABEL_NC, 512)


# ------------------------------------------------------------------------------- decompression bombs
def test_an_image_too_large_to_decode_is_refused_naming_the_file(dirs, capsys, monkeypatch):
    import warnings

    import evaluate

    big = os.path.join(dirs["images"], "img0.png")
    save_image_atomic(big, np.full((64, 64, 3), 90, np.uint8))  # 4096 pixels; the label maps have 1024
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # Pillow refuses more than twice the limit
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    prefix = f"{big}: image too large to decode (Image size (4096 pixels) exceeds limit of 3000 pixels"

    with pytest.raises(InputError) as e:  # train.py
        train.main(_train_argv(dirs, "run", "--serial_batches"))
    assert str(e.value).startswith(prefix) and "downscale it" in str(e.value)
    summary = _extract(dirs)  # extraction: a failure of that pair, the same message
    assert summary["failures"][0].startswith(prefix)
    base = _mixing_checkpoint(dirs)  # mix_styles.py --style_images
    capsys.readouterr()
    code = os.path.join(dirs["codes"], "img1.npy")
    assert run_cli(mix_styles.main, base + ["--source_labels", os.path.join(dirs["labels"], "img1.png"), "--source_codes",
                                  code, "--style_images", big, "--style_labels",
                                  os.path.join(dirs["labels"], "img0.png")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {prefix}")
    # evaluate.py: the pair is reported by name and left out (exit status 1)
    assert evaluate.main(["--results_dir", dirs["images"], "--gt_dir", dirs["images"], "--no_progress",
                          "--output", str(dirs["root"] / "m.json")]) == 1
    err = capsys.readouterr().err
    assert f"failed: {big} / {big}: {prefix}" in err
    # a label map too large to decode
    label = os.path.join(dirs["labels"], "img2.png")
    save_image_atomic(label, np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match=f"^{label}: image too large to decode"):
        read_label(label)
