"""Tests of the dataset preparation scripts on tiny fixtures mimicking the raw layouts."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from data.codes import load_codes
from data.image_io import read_label, read_rgb
from data import class_names
from datasets import common
from datasets import prepare_celebamask_hq as celeba
from datasets import prepare_cityscapes as cityscapes
from datasets import prepare_cmp_facade as cmp
from util.errors import InputError, OptionError


def _rgb(seed, h, w):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _save(path, array, mode=None):
    """Save an array as an image; ``mode="P"`` writes a palette PNG whose indices are ``array``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "P":
        im = Image.new("P", array.shape[::-1])
        im.putdata(array.ravel().tolist())
        im.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tobytes())
    else:
        im = Image.fromarray(array)
    im.save(path)


def _snapshot(folder):
    """{relative path: (mtime_ns, bytes)} of every file under ``folder``."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = (os.stat(p).st_mtime_ns, f.read())
    return out


# ------------------------------------------------------------------------------------- CelebAMask-HQ
PART_BOXES = {  # part -> (row0, row1, col0, col1) on the 16x16 mask grid
    "skin": (2, 15, 2, 14), "nose": (7, 10, 7, 9), "hair": (0, 6, 0, 16), "cloth": (13, 16, 0, 16),
    "l_eye": (5, 7, 4, 6),  # painted before hair: hair overwrites its top rows
}


def _make_celeba(root, indices=(0, 1, 2, 3, 2001), corrupt=(2,), no_masks=(3,)):
    for idx in indices:
        path = os.path.join(root, "CelebA-HQ-img", f"{idx}.jpg")
        if idx in corrupt:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(b"\xff\xd8 truncated jpeg")
        else:
            _save(path, _rgb(idx, 64, 64))
        if idx in no_masks:
            continue
        for k, (part, (r0, r1, c0, c1)) in enumerate(PART_BOXES.items()):
            mask = np.zeros((16, 16), np.uint8)
            mask[r0:r1, c0 + idx % 2:c1] = 255
            if k % 2:  # the real masks come as grey or RGB
                mask = np.repeat(mask[..., None], 3, axis=2)
            _save(celeba.mask_path(root, idx, part), mask)


def _expected_celeba_label(idx, size):
    label16 = np.zeros((16, 16), np.uint8)
    for j, part in enumerate(class_names.CELEBAMASK_HQ):
        if part in PART_BOXES:
            r0, r1, c0, c1 = PART_BOXES[part]
            label16[r0:r1, c0 + idx % 2:c1] = j
    f = size // 16
    return np.repeat(np.repeat(label16, f, axis=0), f, axis=1)


def test_celeba_labels_split_failures_and_classes(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_celeba(root)
    assert celeba.mask_path(root, 2001, "hair").endswith(os.path.join("CelebAMask-HQ-mask-anno", "1",
                                                                       "02001_hair.png"))
    report = celeba.prepare(root, out, size=32, num_test=2, progress=False)
    assert (report.written, report.skipped, report.failed) == (3, 0, 2)
    assert any("2.jpg" in f for f in report.failures)  # corrupt image, named
    assert any("image 3" in f and "no annotation mask" in f for f in report.failures)
    # split: the highest num_test indices are the test set
    assert sorted(os.listdir(os.path.join(out, "train", "labels"))) == ["0.png", "1.png"]
    assert sorted(os.listdir(os.path.join(out, "test", "labels"))) == ["2001.png"]
    for split, idx in (("train", 0), ("train", 1), ("test", 2001)):
        label = read_label(os.path.join(out, split, "labels", f"{idx}.png"))
        np.testing.assert_array_equal(label, _expected_celeba_label(idx, 32))
        assert read_rgb(os.path.join(out, split, "images", f"{idx}.jpg")).shape == (32, 32, 3)
    label0 = read_label(os.path.join(out, "train", "labels", "0.png"))
    assert label0[2 * 2, 2 * 4] == class_names.CELEBAMASK_HQ.index("hair")  # hair over skin and l_eye
    assert label0[2 * 6, 2 * 4] == class_names.CELEBAMASK_HQ.index("l_eye")
    assert class_names.read_class_names(os.path.join(out, "classes.txt")) == class_names.CELEBAMASK_HQ


def test_celeba_rerun_is_idempotent_and_overwrite_redoes(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_celeba(root)
    celeba.prepare(root, out, size=32, num_test=2, progress=False)
    before = _snapshot(os.path.join(out, "train"))
    report = celeba.prepare(root, out, size=32, num_test=2, progress=False)
    assert (report.written, report.skipped, report.failed) == (0, 3, 2)
    assert _snapshot(os.path.join(out, "train")) == before
    # a truncated output is detected as invalid and rewritten
    with open(os.path.join(out, "train", "images", "1.jpg"), "r+b") as f:
        f.truncate(40)
    report = celeba.prepare(root, out, size=32, num_test=2, progress=False)
    assert (report.written, report.skipped) == (1, 2)
    assert read_rgb(os.path.join(out, "train", "images", "1.jpg")).shape == (32, 32, 3)
    report = celeba.prepare(root, out, size=32, num_test=2, overwrite=True, progress=False)
    assert (report.written, report.skipped) == (3, 0)


def test_celeba_cli_with_codes_and_exit_status(tmp_path, capsys):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_celeba(root, indices=(0, 1, 5), corrupt=(), no_masks=())
    argv = ["--root", root, "--out_dir", out, "--size", "32", "--num_test", "1", "--code_size", "32",
            "--no_progress"]
    assert celeba.main(argv) == 0
    for split, idx in (("train", 0), ("train", 1), ("test", 5)):
        codes = load_codes(os.path.join(out, split, "codes", f"{idx}.npy"), len(class_names.CELEBAMASK_HQ))
        label = read_label(os.path.join(out, split, "labels", f"{idx}.png"))
        present = set(np.unique(label).tolist())
        for j in range(len(class_names.CELEBAMASK_HQ)):
            assert (np.abs(codes[j]).sum() > 0) == (j in present), (idx, j)
    report = json.loads(open(os.path.join(out, "prepare_report.json")).read())
    assert report["written"] == 3 and report["codes"]["train"]["written"] == 2
    before = _snapshot(out + "/train")
    assert celeba.main(argv) == 0  # re-run: samples and codes skipped, nothing rewritten
    report = json.loads(open(os.path.join(out, "prepare_report.json")).read())
    assert report["skipped"] == 3 and report["codes"]["train"]["skipped"] == 2
    assert _snapshot(out + "/train") == before
    # missing input folder: clear error, status 2; a failure: status 1
    assert celeba.main(["--root", str(tmp_path / "nowhere"), "--out_dir", out, "--skip_codes",
                        "--no_progress"]) == 2
    assert "CelebA-HQ-img" in capsys.readouterr().err
    for part in PART_BOXES:
        os.remove(celeba.mask_path(root, 1, part))
    assert celeba.main(argv[:-3] + ["--skip_codes", "--overwrite", "--no_progress"]) == 1


def test_celeba_split_is_configurable_and_checked():
    assert celeba.split_indices([5, 3, 1, 4], 1) == {"train": [1, 3, 4], "test": [5]}
    assert celeba.split_indices(range(30000), 2000)["test"][0] == 28000
    with pytest.raises(InputError, match="exceeds"):
        celeba.split_indices([1, 2], 3)


# ------------------------------------------------------------------------------------- Cityscapes
CITY_STEMS = {"train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
              "val": ["frankfurt_000000_000294"]}


def _make_cityscapes(root):
    for split, stems in CITY_STEMS.items():
        for i, s in enumerate(stems):
            city = s.split("_")[0]
            _save(os.path.join(root, "leftImg8bit", split, city, s + "_leftImg8bit.png"), _rgb(i, 16, 32))
            label = (np.arange(16 * 32).reshape(16, 32) + i) % 34
            _save(os.path.join(root, "gtFine", split, city, s + "_gtFine_labelIds.png"), label.astype(np.uint8))
            # other gtFine files of the real layout are ignored
            _save(os.path.join(root, "gtFine", split, city, s + "_gtFine_color.png"), _rgb(9, 16, 32))


def test_cityscapes_flattens_and_validates(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_cityscapes(root)
    # problems: an image without labels, a label without image, an out-of-range label value
    _save(os.path.join(root, "leftImg8bit", "train", "bochum", "bochum_000000_000999_leftImg8bit.png"),
          _rgb(5, 16, 32))
    _save(os.path.join(root, "gtFine", "train", "bochum", "bochum_000000_000777_gtFine_labelIds.png"),
          np.zeros((16, 32), np.uint8))
    bad = np.zeros((16, 32), np.uint8)
    bad[0, 0] = 40
    _save(os.path.join(root, "gtFine", "train", "aachen", "aachen_000001_000019_gtFine_labelIds.png"), bad)
    report = cityscapes.prepare(root, out, progress=False)
    assert (report.written, report.failed) == (3, 3)
    msgs = "\n".join(report.failures)
    assert "bochum_000000_000999_leftImg8bit.png: no labelIds file" in msgs
    assert "bochum_000000_000777_gtFine_labelIds.png: no matching image" in msgs
    assert "aachen_000001_000019_gtFine_labelIds.png: label values [40]" in msgs
    assert sorted(os.listdir(os.path.join(out, "train", "images"))) == [
        "aachen_000000_000019.png", "bochum_000000_000313.png"]
    s = "aachen_000000_000019"
    with open(os.path.join(root, "leftImg8bit", "train", "aachen", s + "_leftImg8bit.png"), "rb") as f:
        assert open(os.path.join(out, "train", "images", s + ".png"), "rb").read() == f.read()
    np.testing.assert_array_equal(read_label(os.path.join(out, "train", "labels", s + ".png")),
                                  read_label(os.path.join(root, "gtFine", "train", "aachen",
                                                          s + "_gtFine_labelIds.png")))
    assert os.listdir(os.path.join(out, "val", "labels")) == ["frankfurt_000000_000294.png"]
    names = class_names.read_class_names(os.path.join(out, "classes.txt"))
    assert len(names) == cityscapes.LABEL_NC == 35 and names[26] == "car" and names[7] == "road"
    # re-run: idempotent
    before = _snapshot(out + "/train")
    report = cityscapes.prepare(root, out, progress=False)
    assert (report.written, report.skipped, report.failed) == (0, 3, 3)
    assert _snapshot(out + "/train") == before


def test_cityscapes_width_resize_and_cli(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_cityscapes(root)
    assert cityscapes.main(["--root", root, "--out_dir", out, "--width", "16", "--splits", "val",
                            "--skip_codes", "--no_progress"]) == 0
    s = CITY_STEMS["val"][0]
    assert read_rgb(os.path.join(out, "val", "images", s + ".png")).shape == (8, 16, 3)
    label = read_label(os.path.join(out, "val", "labels", s + ".png"))
    raw = read_label(os.path.join(root, "gtFine", "val", "frankfurt", s + "_gtFine_labelIds.png"))
    np.testing.assert_array_equal(label, raw[1::2, 1::2])  # nearest at pixel centres, factor 2
    assert not os.path.exists(os.path.join(out, "train"))
    assert cityscapes.main(["--root", root, "--out_dir", out, "--splits", "test", "--skip_codes",
                            "--no_progress"]) == 2


# ------------------------------------------------------------------------------------- CMP Facade
def _make_cmp(root):
    base, ext = os.path.join(root, "base"), os.path.join(root, "extended")
    stems = [(base, "cmp_b0001"), (base, "cmp_b0002"), (base, "cmp_b0010"), (ext, "cmp_x0001")]
    for i, (folder, s) in enumerate(stems):
        _save(os.path.join(folder, s + ".jpg"), _rgb(i, 20, 12))
        raw = (np.arange(20 * 12).reshape(20, 12) + i) % 12 + 1
        _save(os.path.join(folder, s + ".png"), raw.astype(np.uint8), mode="P")
        with open(os.path.join(folder, s + ".xml"), "w") as f:
            f.write("<annotation/>")
    return base, ext


def test_cmp_shift_split_and_failures(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    base, ext = _make_cmp(root)
    zero = np.ones((20, 12), np.uint8)
    zero[3, 3] = 0
    _save(os.path.join(base, "cmp_b0003.jpg"), _rgb(7, 20, 12))
    _save(os.path.join(base, "cmp_b0003.png"), zero, mode="P")
    _save(os.path.join(ext, "cmp_x0002.jpg"), _rgb(8, 20, 12))  # no label
    report = cmp.prepare([base, ext], out, num_test=2, progress=False)
    assert (report.written, report.failed) == (4, 2)
    msgs = "\n".join(report.failures)
    assert "cmp_x0002.jpg: no label map" in msgs
    assert "cmp_b0003.png: label values [0]" in msgs and "--zero_label background" in msgs
    # natural order b0001 b0002 b0003 b0010 x0001: the last two are the test set
    assert sorted(os.listdir(os.path.join(out, "test", "labels"))) == ["cmp_b0010.png", "cmp_x0001.png"]
    for split, s, folder in (("train", "cmp_b0002", base), ("test", "cmp_x0001", ext)):
        raw = read_label(os.path.join(folder, s + ".png"))
        np.testing.assert_array_equal(read_label(os.path.join(out, split, "labels", s + ".png")), raw - 1)
        with open(os.path.join(folder, s + ".jpg"), "rb") as f:
            assert open(os.path.join(out, split, "images", s + ".jpg"), "rb").read() == f.read()
    assert class_names.read_class_names(os.path.join(out, "classes.txt"))[2] == "window"
    before = _snapshot(out)
    report = cmp.prepare([base, ext], out, num_test=2, progress=False)
    assert (report.written, report.skipped, report.failed) == (0, 4, 2)
    assert _snapshot(out) == before
    # zero as background, resized output, via the CLI
    out2 = str(tmp_path / "out2")
    os.remove(os.path.join(ext, "cmp_x0002.jpg"))
    assert cmp.main(["--input_dirs", base, ext, "--out_dir", out2, "--num_test", "1", "--size", "10",
                     "--zero_label", "background", "--skip_codes", "--no_progress"]) == 0
    label = read_label(os.path.join(out2, "train", "labels", "cmp_b0003.png"))
    assert label.shape == (10, 10) and label.max() == 0
    assert read_rgb(os.path.join(out2, "test", "images", "cmp_x0001.jpg")).shape == (10, 10, 3)


def test_cmp_label_shift_rule():
    raw = np.array([[1, 12], [5, 0]])
    np.testing.assert_array_equal(cmp.shift_labels(raw, "x.png", "background"), [[0, 11], [4, 0]])
    with pytest.raises(InputError, match="x.png"):
        cmp.shift_labels(raw, "x.png")
    with pytest.raises(InputError, match=r"\[13\]"):
        cmp.shift_labels(np.array([[13]]), "x.png", "background")


# ------------------------------------------------------------------------------------- shared
def test_class_list_parsing_and_file_errors(tmp_path):
    names = class_names.CELEBAMASK_HQ
    assert class_names.parse_class_list("13,17", 19) == [13, 17]
    assert class_names.parse_class_list("hair, cloth,2", 19, names) == [2, 13, 18]
    with pytest.raises(OptionError, match="unknown class name 'hat2'"):
        class_names.parse_class_list("hat2", 19, names)
    with pytest.raises(OptionError, match="out of range"):
        class_names.parse_class_list("19", 19, names)
    bad = tmp_path / "classes.txt"
    bad.write_text("a\n\nb\n")
    with pytest.raises(InputError, match="line 2 is blank"):
        class_names.read_class_names(str(bad))
    bad.write_text("a\nb\na\n")
    with pytest.raises(InputError, match="duplicate"):
        class_names.read_class_names(str(bad))


def test_stale_outputs_from_another_split_are_reported(tmp_path):
    root, out = str(tmp_path / "raw"), str(tmp_path / "out")
    _make_celeba(root, indices=(0, 1, 5), corrupt=(), no_masks=())
    celeba.prepare(root, out, size=32, num_test=1, progress=False)
    report = celeba.prepare(root, out, size=32, num_test=2, progress=False)
    assert any(w.endswith("delete it if unwanted") and "1.png" in w for w in report.warnings)
    assert common.is_valid_label(os.path.join(out, "test", "labels", "1.png"), 19, (32, 32))


def test_process_pool_gives_the_same_outputs(tmp_path):
    root = str(tmp_path / "raw")
    _make_celeba(root)
    serial = celeba.prepare(root, str(tmp_path / "a"), size=32, num_test=2, progress=False)
    pooled = celeba.prepare(root, str(tmp_path / "b"), size=32, num_test=2, workers=2, progress=False)
    assert (pooled.written, pooled.failed) == (serial.written, serial.failed)
    assert sorted(pooled.failures) == sorted(serial.failures)
    a, b = _snapshot(str(tmp_path / "a" / "train")), _snapshot(str(tmp_path / "b" / "train"))
    assert {k: v[1] for k, v in a.items()} == {k: v[1] for k, v in b.items()}
