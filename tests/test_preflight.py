"""Every file's header checked before train.py writes anything; a file that fails to decode later is skipped."""
import os

import numpy as np
import pytest
from PIL import Image

import train
from data.preflight import SkipUnreadable, check_headers, recorded_files
from tests._synthetic import build_synthetic_dataset
from util.cli import run_cli

LABEL_NC = 2


@pytest.fixture
def dirs(tmp_path):
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=LABEL_NC)
    return {"images": images, "labels": labels, "codes": codes, "root": tmp_path}


def _argv(d, *extra):
    return ["--name", "run", "--checkpoints_dir", str(d["root"] / "ck"), "--gpu_ids", "-1",
            "--label_dir", d["labels"], "--image_dir", d["images"], "--instance_dir", d["codes"],
            "--label_nc", str(LABEL_NC), "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "4",
            "--no_vgg_loss", "--batchSize", "2", "--niter", "2", "--niter_decay", "0", "--print_freq", "100",
            "--display_freq", "100", "--ema_decay", "0", "--serial_batches", *extra]


def _break(d, kind):
    """Make one file bad in a way its header shows; returns (path, expected message part)."""
    image, label = os.path.join(d["images"], "img2.png"), os.path.join(d["labels"], "img2.png")
    if kind == "not an image":
        open(image, "wb").write(b"this is no image")
        return image, "unreadable or corrupt image"
    if kind == "float label":
        Image.fromarray(np.zeros((32, 32), np.float32)).save(label.replace(".png", ".tif"))
        os.remove(label)
        return label.replace(".png", ".tif"), "floating-point values"
    if kind == "jpeg content in a png label":
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(label, format="JPEG")
        return label, "losslessly"
    if kind == "aspect ratio":
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(image)
        return image, "same aspect ratio"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not an image", "float label", "jpeg content in a png label", "aspect ratio"])
def test_train_checks_every_header_before_writing(dirs, capsys, kind):
    path, expected = _break(dirs, kind)
    assert run_cli(train.main, _argv(dirs)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}:") and expected in err[0]
    assert not (dirs["root"] / "ck").exists()  # no opt.json, no folder


def test_headers_are_read_without_decoding(dirs):
    class Dataset:
        label_paths = sorted(os.path.join(dirs["labels"], n) for n in os.listdir(dirs["labels"]))
        image_paths = sorted(os.path.join(dirs["images"], n) for n in os.listdir(dirs["images"]))

    # a truncated PNG has a valid header: the check passes it (it is skipped when it fails to decode)
    path = Dataset.image_paths[1]
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    assert check_headers(Dataset, log=lambda _: None) == 8


def test_a_truncated_image_is_skipped_listed_and_the_run_goes_on(dirs, capsys):
    path = os.path.join(dirs["images"], "img1.png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    trainer = train.main(_argv(dirs))
    assert trainer.global_step == 4  # 2 epochs of 2 steps
    record = dirs["root"] / "ck" / "run" / "skipped_files.txt"
    lines = recorded_files(str(record))
    assert len(lines) == 1 and lines[0].startswith(f"{path}:")  # listed once, although read in each epoch
    assert f"warning: {path}:" in capsys.readouterr().err
    # a resumed run passes the same place again
    resumed = train.main(_argv(dirs, "--niter", "3", "--continue_train"))
    assert resumed.global_step == 6 and len(recorded_files(str(record))) == 1


def test_skip_replaces_a_damaged_item_by_the_next_readable_one_and_raises_rule_errors(tmp_path):
    from util.errors import InputError

    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    bad.write_bytes(good.read_bytes()[:40])

    class Items:
        label_paths = [str(good), str(bad), str(good), str(good)]
        image_paths = [None] * 4

        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i in (1, 3):
                raise InputError(f"{self.label_paths[i]}: problem {i}")
            return i

    wrapped = SkipUnreadable(Items(), str(tmp_path / "skipped_files.txt"))
    assert [wrapped[0], wrapped[1], wrapped[2]] == [0, 2, 2]  # the damaged item 1 is replaced by item 2
    assert recorded_files(str(tmp_path / "skipped_files.txt")) == [f"{bad}: problem 1"]
    try:
        wrapped[3]
    except InputError as e:
        assert str(e) == f"{good}: problem 3"
    else:
        raise AssertionError("a rule error must not be skipped")
