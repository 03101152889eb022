"""scripts/import_release.py: a release-format checkpoint.zip and codes archive, built here from model code,
are checked and installed; test.py and the editor then use them; bad archives change nothing."""
import contextlib
import glob
import hashlib
import importlib.util
import io
import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import torch

from data.image_io import read_rgb
from models.networks import MultiscaleDiscriminator
from options import build_options
from tests._pages import read_page
from tests._release import to_release_layout
from tests.conftest import ROOT
from util.cli import run_cli
from util.errors import CheckpointError, InputError, OptionError


def _load(script, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


importer = _load("scripts/import_release.py", "import_release")
ARCH = ["--label_nc", "3", "--ngf", "4", "--crop_size", "32"]  # the tiny model's; the defaults are the release's


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def release(tiny_trained, tmp_path_factory):
    """``checkpoint.zip`` as the release laid out ``checkpoints/celeba/`` (``50_net_G.pth``, ``50_net_D.pth``,
    torch 1.2's legacy serialisation) and ``test_codes.zip`` (``codes/<stem>.npy``, (J, 1, 1, 1, 512) float64)."""
    tiny = tiny_trained
    root = tmp_path_factory.mktemp("release")
    src = root / "celeba"
    src.mkdir()
    torch.save(to_release_layout(tiny.model.netG.state_dict(), n_release_classes=4), src / "50_net_G.pth",
               _use_new_zipfile_serialization=False)
    torch.manual_seed(0)
    netD = MultiscaleDiscriminator.from_options(build_options(True, gpu_ids="-1", label_nc=3, ngf=4, crop_size=32))
    torch.save(netD.state_dict(), src / "50_net_D.pth", _use_new_zipfile_serialization=False)
    with zipfile.ZipFile(root / "checkpoint.zip", "w", zipfile.ZIP_STORED) as z:
        for name in ("50_net_G.pth", "50_net_D.pth"):
            z.write(src / name, name)
    with zipfile.ZipFile(root / "test_codes.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for s in tiny.samples:
            buf = io.BytesIO()
            np.save(buf, s.codes.astype(np.float64).reshape(3, 1, 1, 1, 512))
            z.writestr(f"codes/{os.path.basename(s.code_path)}", buf.getvalue())
    data = root / "data" / "test"  # a prepared dataset: labels/ and images/, codes to come from the release
    for sub in ("labels", "images"):
        shutil.copytree(os.path.join(tiny.ds, sub), data / sub)
    shutil.copy(os.path.join(tiny.ds, "classes.txt"), root / "data" / "classes.txt")
    return root, data


def _import(root, data, *extra, name="rel"):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        importer.main(["--checkpoint", str(root / "checkpoint.zip"), "--name", name,
                       "--checkpoints_dir", str(root / "ck"), "--codes", str(root / "test_codes.zip"),
                       "--codes_dir", str(data / "codes"), *ARCH, *extra])
    return out.getvalue()


def _leftovers(*folders):
    return [p for f in folders for p in glob.glob(os.path.join(str(f), ".*import-*"))
            + glob.glob(os.path.join(str(f), ".*replaced-*"))]


def test_import_then_test_py_and_the_editor(release, tiny_trained, tmp_path):
    root, data = release
    printed = _import(root, data)
    folder = root / "ck" / "rel"
    # checksums printed (sha256sum format) and recorded; the network files installed byte for byte
    assert f"{_sha(root / 'checkpoint.zip')}  {root / 'checkpoint.zip'}" in printed
    assert f"{_sha(root / 'test_codes.zip')}  {root / 'test_codes.zip'}" in printed
    assert sorted(os.listdir(folder)) == ["50_net_D.pth", "50_net_G.pth", "opt.json", "opt.txt",
                                          "release_import.json"]
    record = json.load(open(folder / "release_import.json"))
    assert record["checkpoint"]["sha256"] == _sha(root / "checkpoint.zip")
    for name in ("50_net_G.pth", "50_net_D.pth"):
        assert _sha(folder / name) == _sha(root / "celeba" / name) == record["checkpoint"]["files"][name]
    assert any("beyond label_nc=3" in n for n in record["notes"])  # the release's extra per-class layers
    saved = json.load(open(folder / "opt.json"))
    assert (saved["label_nc"], saved["ngf"], saved["crop_size"], saved["norm_G"]) == (
        3, 4, 32, "spectralspadesyncbatch3x3")
    # the codes, byte for byte, where test.py's --instance_dir and the editor's --data find them
    assert sorted(os.listdir(data / "codes")) == sorted(os.path.basename(s.code_path) for s in tiny_trained.samples)
    with zipfile.ZipFile(root / "test_codes.zip") as z:
        assert (data / "codes" / "s3.npy").read_bytes() == z.read("codes/s3.npy")
    assert f"16 of 16 code files pair with a label map in {data / 'labels'}" in printed
    assert "--which_epoch 50" in printed and not _leftovers(root / "ck", data)

    # test.py with the printed command line: a results page of the release's weights
    test_script = _load("test.py", "ssn_test_script_import")
    common = ["--gpu_ids", "-1", "--which_epoch", "50", "--label_dir", str(data / "labels"),
              "--image_dir", str(data / "images"), "--instance_dir", str(data / "codes"), "--how_many", "2"]
    page_path = test_script.main(["--name", "rel", "--checkpoints_dir", str(root / "ck"),
                                  "--results_dir", str(tmp_path / "res"), *common])
    page = read_page(page_path)
    assert page.facts["checkpoint"] == f"50: {folder / '50_net_G.pth'} (the original release's layout)"
    assert [e.name for e in page.legend] == ["background", "box", "disc"]
    assert len(page.rows) == 2 and page.rows[0][0].lines[1].startswith("SSIM ")
    # ... the same images as the weights the release file was made from (same noise seed)
    tiny = tiny_trained
    own = test_script.main(["--name", tiny.name, "--checkpoints_dir", tiny.ckpt, "--results_dir",
                            str(tmp_path / "own"), *common[:2], *common[4:]])
    for s in ("s0", "s1"):
        a = read_rgb(os.path.join(os.path.dirname(page_path), "images", "synthesized_image", f"{s}.png"))
        b = read_rgb(os.path.join(os.path.dirname(own), "images", "synthesized_image", f"{s}.png"))
        assert np.array_equal(a, b)
    # the editor starts on the imported model and codes
    edit_app = _load("edit_app.py", "edit_app_import")
    server = edit_app.build(["--name", "rel", "--checkpoints_dir", str(root / "ck"), "--which_epoch", "50",
                             "--data", str(data), "--gpu_ids", "-1", "--port", "0"])
    try:
        assert len(server.engine.samples) == 16
        assert server.engine.render(0, server.engine.sample_codes(0)).shape == (32, 32, 3)
    finally:
        server.server_close()


def test_existing_destinations_need_overwrite(release, tmp_path):
    root, data = release
    target = tmp_path / "codes"
    target.mkdir()
    (target / "mine.npy").write_bytes(b"keep me")
    argv = ["--checkpoint", str(root / "celeba"), "--name", "again", "--checkpoints_dir", str(tmp_path / "ck"),
            "--codes", str(root / "test_codes.zip"), "--codes_dir", str(target), *ARCH]
    with pytest.raises(OptionError, match=r"--codes_dir .*codes: already exists and is not empty; pass --overwrite"):
        importer.main(argv)
    assert (target / "mine.npy").read_bytes() == b"keep me" and not (tmp_path / "ck" / "again").exists()
    with contextlib.redirect_stdout(io.StringIO()):  # an unpacked folder works as well as the zip
        importer.main(argv + ["--overwrite"])
    assert not (target / "mine.npy").exists() and len(os.listdir(target)) == 16
    assert (tmp_path / "ck" / "again" / "50_net_G.pth").is_file()
    assert not _leftovers(tmp_path / "ck", tmp_path)


def _corrupt_member(src, dest, member):
    """Copy the zip ``src`` to ``dest`` with one byte of ``member``'s stored data flipped (CRC mismatch)."""
    raw = bytearray(open(src, "rb").read())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo(member)
    name_len, extra_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.compress_size // 2] ^= 0xFF
    open(dest, "wb").write(bytes(raw))


def test_bad_archives_give_clear_errors_and_change_nothing(release, tmp_path, capsys):
    root, data = release
    codes_dir = tmp_path / "data" / "codes"

    def attempt(checkpoint, *extra, codes=root / "test_codes.zip"):
        argv = ["--checkpoint", str(checkpoint), "--name", "bad", "--checkpoints_dir", str(tmp_path / "ck"),
                "--codes", str(codes), "--codes_dir", str(codes_dir), *ARCH, *extra]
        assert run_cli(importer.main, argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "ck" / "bad").exists() and not codes_dir.exists()
        assert not _leftovers(tmp_path / "ck", tmp_path / "data")
        return err

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes((root / "checkpoint.zip").read_bytes()[:100_000])
    assert "not a readable zip archive" in attempt(truncated) and "truncated.zip" in attempt(truncated)
    assert "no <epoch>_net_G.pth inside; it holds 16 .npy files: a style-code archive goes to --codes" in attempt(
        root / "test_codes.zip")
    assert "no .npy code files inside: it holds network files, which go to --checkpoint" in attempt(
        root / "checkpoint.zip", codes=root / "checkpoint.zip")
    corrupt = tmp_path / "corrupt.zip"
    _corrupt_member(root / "checkpoint.zip", corrupt, "50_net_G.pth")
    assert "corrupt.zip: 50_net_G.pth is corrupt (Bad CRC-32" in attempt(corrupt)
    # another architecture than the archive's: the keys or shapes that do not fit are named
    err = attempt(root / "checkpoint.zip", "--label_nc", "5")
    assert "50_net_G.pth" in err and "needs 5; missing" in err and "fc_mu4" in err
    err = attempt(root / "checkpoint.zip", "--ngf", "8")
    assert "does not match the generator architecture" in err and "misshaped" in err
    assert "SHA-256" in attempt(root / "checkpoint.zip", "--expect_sha256", "0" * 64)
    # a code file of another layout
    bad_codes = tmp_path / "bad_codes.zip"
    shutil.copy(root / "test_codes.zip", bad_codes)
    with zipfile.ZipFile(bad_codes, "a") as z:
        buf = io.BytesIO()
        np.save(buf, np.zeros((3, 256)))
        z.writestr("codes/s99.npy", buf.getvalue())
    assert "bad_codes.zip: codes/s99.npy: code array has shape (3, 256)" in attempt(root / "checkpoint.zip",
                                                                                    codes=bad_codes)
    with pytest.raises(OptionError, match="must pair up"):
        importer.main(["--checkpoint", str(root / "checkpoint.zip"), "--codes", str(bad_codes)])
    with pytest.raises(InputError, match="file not found"):
        importer.main(["--checkpoint", str(tmp_path / "nowhere.zip"), "--checkpoints_dir", str(tmp_path / "ck")])
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        state = torch.load(root / "celeba" / "50_net_D.pth", weights_only=True)
        state["discriminator_0.model0.0.bias"] = torch.full_like(state["discriminator_0.model0.0.bias"], float("nan"))
        nan_dir = tmp_path / "nan"
        nan_dir.mkdir()
        shutil.copy(root / "celeba" / "50_net_G.pth", nan_dir / "50_net_G.pth")
        torch.save(state, nan_dir / "50_net_D.pth")
        importer.main(["--checkpoint", str(nan_dir), "--name", "nan", "--checkpoints_dir", str(tmp_path / "ck"),
                       *ARCH])
    assert not (tmp_path / "ck" / "nan").exists()
