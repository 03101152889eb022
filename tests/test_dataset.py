"""Custom dataset: batch layout, label rules, code layouts, transforms, sampler, bad inputs."""
import os
import shutil

import numpy as np
import pytest
import torch

from data.loader import ResumableSampler, create_dataloader, create_dataset
from data.codes import save_codes
from tests._synthetic import build_synthetic_dataset
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.errors import InputError
from util.io import save_image_atomic

LABEL_NC = 4


@pytest.fixture()
def dataset_dirs(tmp_path):
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=3, size=32, label_nc=LABEL_NC)
    return {"image_dir": images, "label_dir": labels, "instance_dir": codes, "root": tmp_path}


def _opt(dirs, *extra, train=True):
    cls = TrainOptions if train else TestOptions
    argv = ["--name", "d", "--checkpoints_dir", str(dirs["root"] / "ck"), "--gpu_ids", "-1",
            "--label_nc", str(LABEL_NC), "--crop_size", "32", "--load_size", "32",
            "--label_dir", dirs["label_dir"], "--image_dir", dirs["image_dir"],
            "--instance_dir", dirs["instance_dir"], *extra]
    return cls().parse(argv, save=False)


def test_batch_layout_and_normalisation(dataset_dirs):
    opt = _opt(dataset_dirs, "--batchSize", "2", "--serial_batches", "--no_flip")
    batch = next(iter(create_dataloader(opt)))
    assert batch["label"].shape == (2, 1, 32, 32) and batch["label"].dtype == torch.int64
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["codes"].shape == (2, LABEL_NC, 512) and batch["codes"].dtype == torch.float32
    assert [os.path.basename(p) for p in batch["path"]] == ["img0.png", "img1.png"]
    assert -1.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    raw = np.load(os.path.join(dataset_dirs["instance_dir"], "img0.npy"))
    np.testing.assert_allclose(batch["codes"][0].numpy(), (raw - 0.5) / 0.5, rtol=0, atol=1e-6)
    from data.image_io import read_label, read_rgb

    np.testing.assert_array_equal(batch["label"][0, 0].numpy(),
                                  read_label(os.path.join(dataset_dirs["label_dir"], "img0.png")))
    image = read_rgb(os.path.join(dataset_dirs["image_dir"], "img0.png"))
    np.testing.assert_allclose(batch["image"][0].permute(1, 2, 0).numpy(), image / 127.5 - 1.0, atol=1e-6)


def test_release_code_layout_is_read(dataset_dirs):
    path = os.path.join(dataset_dirs["instance_dir"], "img1.npy")
    lean = np.load(path)
    save_codes(path, lean, layout="release")
    assert np.load(path).shape == (LABEL_NC, 1, 1, 1, 512)
    item = create_dataset(_opt(dataset_dirs, train=False))[1]
    np.testing.assert_allclose(item["codes"].numpy(), (lean - 0.5) / 0.5, atol=1e-6)


def _write_label(dirs, name, label):
    save_image_atomic(os.path.join(dirs["label_dir"], name), label.astype(np.uint8))


def test_dontcare_needs_flag_and_maps_to_label_nc(dataset_dirs):
    label = np.zeros((32, 32), np.uint8)
    label[:5] = 255
    label[10:] = 2
    _write_label(dataset_dirs, "img0.png", label)
    with pytest.raises(InputError, match=r"img0\.png.*255.*--contain_dontcare_label"):
        create_dataset(_opt(dataset_dirs, train=False))[0]
    item = create_dataset(_opt(dataset_dirs, "--contain_dontcare_label", train=False))[0]
    assert item["label"].shape == (1, 32, 32)
    np.testing.assert_array_equal(item["label"][0, :5].numpy(), LABEL_NC)
    np.testing.assert_array_equal(item["label"][0, 10:].numpy(), 2)
    # the extra don't-care code row is an all-zero raw code, i.e. -1 after normalisation
    assert item["codes"].shape == (LABEL_NC + 1, 512)
    np.testing.assert_array_equal(item["codes"][LABEL_NC].numpy(), -1.0)


def test_out_of_range_label_names_file_and_value(dataset_dirs):
    label = np.zeros((32, 32), np.uint8)
    label[3, 3] = 9
    _write_label(dataset_dirs, "img2.png", label)
    ds = create_dataset(_opt(dataset_dirs, train=False))
    ds[0]  # other items are fine
    with pytest.raises(InputError, match=r"img2\.png.*values 9 .*label_nc=4"):
        ds[2]


@pytest.mark.parametrize("damage, needle", [
    ("missing_code", r"img1\.png.*no matching code"),
    ("wrong_classes", r"img1\.npy.*holds 3 classes but label_nc is 4"),
    ("wrong_length", r"img1\.npy.*shape \(4, 100\)"),
    ("extra_image", r"1 of 4 stems lack a partner \('img9'\)(.|\n)*img9\.png: no matching label"),
    ("empty_labels", r"labels.*no files"),
    ("unpaired_stem", r"img1\.(png|npy).*no matching"),
    ("missing_dir", r"--instance_dir .*folder not found"),
])
def test_bad_dataset_layouts_fail_early(dataset_dirs, damage, needle):
    codes = dataset_dirs["instance_dir"]
    if damage == "missing_code":
        os.remove(os.path.join(codes, "img1.npy"))
        save_codes(os.path.join(codes, "zz.npy"), np.zeros((LABEL_NC, 512)))  # keep counts equal
    elif damage == "wrong_classes":
        save_codes(os.path.join(codes, "img1.npy"), np.zeros((3, 512)))
    elif damage == "wrong_length":
        np.save(os.path.join(codes, "img1.npy"), np.zeros((LABEL_NC, 100), np.float32))
    elif damage == "extra_image":
        shutil.copy(os.path.join(dataset_dirs["image_dir"], "img0.png"),
                    os.path.join(dataset_dirs["image_dir"], "img9.png"))
    elif damage == "empty_labels":
        for name in os.listdir(dataset_dirs["label_dir"]):
            os.remove(os.path.join(dataset_dirs["label_dir"], name))
    elif damage == "unpaired_stem":
        os.rename(os.path.join(codes, "img1.npy"), os.path.join(codes, "other.npy"))
    elif damage == "missing_dir":
        shutil.rmtree(codes)
    with pytest.raises(InputError, match=needle):
        create_dataset(_opt(dataset_dirs, train=False))


def test_flip_moves_image_and_label_together_but_not_codes(dataset_dirs):
    ds = create_dataset(_opt(dataset_dirs))  # training: random flips
    ref = create_dataset(_opt(dataset_dirs, train=False))[0]
    flipped = 0
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        if torch.equal(item["label"], ref["label"]):
            assert torch.equal(item["image"], ref["image"])
        else:
            flipped += 1
            assert torch.equal(item["label"], ref["label"].flip(-1))
            assert torch.equal(item["image"], ref["image"].flip(-1))
        assert torch.equal(item["codes"], ref["codes"])
    assert 0 < flipped < 12
    ds.set_epoch(3)
    assert torch.equal(ds[0]["image"], ds[0]["image"])  # deterministic per (epoch, index)


@pytest.mark.parametrize("mode, load, expect", [
    ("resize_and_crop", 40, (32, 32)), ("scale_width_and_crop", 40, (32, 32)), ("fixed", 40, (32, 32)),
    ("scale_width", 48, (48, 38)), ("none", 40, (32, 32)), ("crop", 40, (32, 32)),
])
def test_preprocess_modes_output_sizes(dataset_dirs, mode, load, expect):
    # a 40x32 (w x h) pair, label nearest / image bicubic
    label = (np.arange(40)[None, :] // 10 % LABEL_NC).repeat(32, 0)
    _write_label(dataset_dirs, "img0.png", label)
    save_image_atomic(os.path.join(dataset_dirs["image_dir"], "img0.png"), np.full((32, 40, 3), 100, np.uint8))
    opt = _opt(dataset_dirs, "--preprocess_mode", mode, "--load_size", str(load))
    item = create_dataset(opt)[0]
    h, w = item["image"].shape[1:]
    assert (w, h) == expect
    assert item["label"].shape[1:] == item["image"].shape[1:]
    assert set(np.unique(item["label"].numpy())) <= set(range(LABEL_NC))  # nearest: no new values


def test_sampler_splits_global_batches_and_resumes():
    single = ResumableSampler(10, shuffle=True, seed=3, global_batch=4)
    ranks = [ResumableSampler(10, shuffle=True, seed=3, rank=r, world_size=2, global_batch=4) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(5)
    order = list(single)
    assert len(order) == 8 and len(set(order)) == 8  # two whole global batches
    per_rank = [list(s) for s in ranks]
    for b in range(2):
        union = set(per_rank[0][2 * b: 2 * b + 2]) | set(per_rank[1][2 * b: 2 * b + 2])
        assert union == set(order[4 * b: 4 * b + 4])
    single.set_start_batch(1)
    assert list(single) == order[4:] and len(single) == 4
    other = ResumableSampler(10, shuffle=True, seed=3, global_batch=4)
    other.set_epoch(6)
    assert list(other) != order


def test_test_set_without_photos_pairs_labels_and_codes(dataset_dirs):
    """Testing needs no --image_dir (labels + codes); training still does."""
    argv = ["--name", "d", "--checkpoints_dir", str(dataset_dirs["root"] / "ck"), "--gpu_ids", "-1",
            "--label_nc", str(LABEL_NC), "--crop_size", "32", "--label_dir", dataset_dirs["label_dir"],
            "--instance_dir", dataset_dirs["instance_dir"], "--batchSize", "2"]
    batch = next(iter(create_dataloader(TestOptions().parse(argv, save=False))))
    assert set(batch) == {"label", "codes", "path"}
    assert [os.path.basename(p) for p in batch["path"]] == ["img0.png", "img1.png"]  # the label files
    assert batch["label"].shape == (2, 1, 32, 32) and batch["codes"].shape == (2, LABEL_NC, 512)
    os.remove(os.path.join(dataset_dirs["instance_dir"], "img2.npy"))
    with pytest.raises(InputError, match="(?s)1 of 3 stems lack a partner.*'img2'.*code files "):
        create_dataset(TestOptions().parse(argv, save=False))
    with pytest.raises(InputError, match="--image_dir is required"):
        create_dataset(TrainOptions().parse(argv, save=False))


def test_resize_label_matches_pil_nearest():
    """The one label resizer reproduces PIL's NEAREST resize bit for bit, down and up, any ratio."""
    from PIL import Image

    from data.image_io import resize_label

    rng = np.random.default_rng(3)
    for h, w in ((37, 53), (2, 3), (64, 48), (255, 17)):
        label = rng.integers(0, 20, (h, w)).astype(np.uint8)
        for size_wh in ((16, 16), (64, 64), (7, 23), (w, h), (3 * w, 2 * h + 1), (1, 1)):
            pil = np.asarray(Image.fromarray(label).resize(size_wh, Image.NEAREST))
            out = resize_label(label, size_wh)
            assert out.dtype == np.uint8
            np.testing.assert_array_equal(out, pil)
            for x, y in ((0, 0), (size_wh[0] // 3, size_wh[1] // 2)):  # a window: the crop of the whole
                cw, ch = max(1, size_wh[0] - x - 1), max(1, size_wh[1] - y)
                np.testing.assert_array_equal(resize_label(label, size_wh, box=(x, y, cw, ch)),
                                              pil[y:y + ch, x:x + cw])
    wide = rng.integers(0, 300, (9, 11)).astype(np.int32)  # values beyond uint8 are kept
    pil = np.asarray(Image.fromarray(wide).resize((20, 5), Image.NEAREST))
    np.testing.assert_array_equal(resize_label(wide, (20, 5)), pil)
