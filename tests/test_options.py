"""Options: release defaults, validation, saved files, reloading in test.py, LR schedule."""
import json
import os

import pytest

from options.test_options import TestOptions
from options.train_options import TrainOptions
from trainers.superstylenet_trainer import learning_rate_for_epoch, split_lr
from util.errors import OptionError


def _train(tmp_path, *extra, save=False):
    return TrainOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1",
                                 *extra], save=save)


def test_release_defaults(tmp_path):
    opt = _train(tmp_path)
    assert (opt.niter, opt.niter_decay, opt.lr, opt.beta1, opt.beta2) == (50, 150, 0.0002, 0.0, 0.9)
    assert not opt.no_TTUR and opt.D_steps_per_G == 1 and opt.batchSize == 1
    assert opt.model == "superstylenet" and opt.dataset_mode == "custom"
    assert opt.preprocess_mode == "resize_and_crop" and opt.crop_size == 256
    assert opt.load_size == 286  # the release's custom-dataset training default
    assert opt.checkpoints_dir == str(tmp_path) and opt.which_epoch == "latest"
    assert opt.gpu_ids == [] and opt.device.type == "cpu"
    assert opt.ngf == 64 and opt.num_D == 2  # component flags are registered
    test = TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"])
    assert test.results_dir == "./results" and test.how_many == float("inf")
    assert test.serial_batches and test.no_flip and test.load_size == test.crop_size and not test.isTrain


def test_release_command_line_parses(tmp_path, monkeypatch):
    # The release's command line names 4 GPUs; the machine running the tests may have 0, 1 or 8.
    # Parsing it must not depend on that: pretend there are exactly 4.
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    argv = ("--name celeba --gpu_ids 0,1,2,3 --batchSize 32 --load_size 256 --crop_size 256 --dataset_mode "
            "custom --label_nc 19 --label_dir a --image_dir b --instance_dir c").split()
    opt = TrainOptions().parse(argv + ["--checkpoints_dir", str(tmp_path)], save=False)
    assert opt.label_nc == 19 and opt.batchSize == 32 and opt.load_size == 256 and opt.semantic_nc == 19
    assert opt.gpu_ids == [0, 1, 2, 3]


@pytest.mark.parametrize("args, needle", [
    (["--crop_size", "48"], "--crop_size 48"),
    (["--crop_size", "96", "--num_upsampling_layers", "more"], "2**6"),
    (["--label_nc", "0"], "--label_nc"),
    (["--gpu_ids", "x"], "--gpu_ids"),
    (["--niter", "0", "--niter_decay", "0"], "at least 1 epoch"),
    (["--crop_size", "64", "--load_size", "32"], "smaller than --crop_size"),
])
def test_bad_options_raise_clear_errors(tmp_path, args, needle):
    with pytest.raises(OptionError, match=needle.replace("*", r"\*")):
        _train(tmp_path, *args)


def test_saved_options_mark_non_defaults(tmp_path):
    opt = _train(tmp_path, "--label_nc", "7", "--crop_size", "64", save=True)
    folder = tmp_path / "exp"
    saved = json.loads((folder / "opt.json").read_text())
    assert saved["label_nc"] == 7 and saved["crop_size"] == 64 and saved["gpu_ids"] == "-1"
    text = (folder / "opt.txt").read_text()
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("label_nc:"))
    assert "[default: 13]" in line
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("niter:"))
    assert "default" not in line
    assert opt.semantic_nc == 7


def test_test_options_reload_architecture_from_opt_json(tmp_path):
    _train(tmp_path, "--label_nc", "5", "--crop_size", "64", "--ngf", "8", "--contain_dontcare_label",
           "--batchSize", "4", save=True)
    base = ["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]
    opt = TestOptions().parse(base)
    assert (opt.label_nc, opt.crop_size, opt.ngf, opt.contain_dontcare_label) == (5, 64, 8, True)
    assert opt.semantic_nc == 6
    assert opt.batchSize == 1 and opt.load_size == 64  # run-specific options are not copied
    opt = TestOptions().parse(base + ["--ngf", "16"])  # the command line wins
    assert opt.ngf == 16 and opt.label_nc == 5


def test_unreadable_opt_json_is_an_error(tmp_path):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "opt.json").write_text("{not json")
    with pytest.raises(OptionError, match="opt.json"):
        TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"])


def test_learning_rate_schedule_and_ttur(tmp_path):
    opt = _train(tmp_path, "--niter", "2", "--niter_decay", "4", "--lr", "0.001")
    lrs = [learning_rate_for_epoch(opt, e) for e in range(1, 7)]
    # constant for niter epochs, then lower by lr/niter_decay after each further epoch
    assert lrs == pytest.approx([0.001, 0.001, 0.001, 0.00075, 0.0005, 0.00025])
    assert split_lr(opt, 0.001) == (0.0005, 0.002)
    opt.no_TTUR = True
    assert split_lr(opt, 0.001) == (0.001, 0.001)


def test_cpu_fallback_notice(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    opt = TrainOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "0"],
                               save=False)
    assert opt.gpu_ids == [] and opt.device.type == "cpu"
    assert "running on CPU" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "exp" / "opt.json")
