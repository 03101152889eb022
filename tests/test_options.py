"""Options: release defaults, validation, saved files, reloading in test.py, LR schedule."""
import contextlib
import importlib.util
import io
import json
import os
import re

import numpy as np
import pytest

from options import build_options
from options.base_options import RUN_SPECIFIC_OPTIONS
from options.export_options import ExportOptions
from options.mix_options import MixOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions
from tests.conftest import ROOT
from trainers.superstylenet_trainer import learning_rate_for_epoch, split_lr
from util.cli import is_switch
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
    assert test.load_size == test.crop_size and not test.isTrain and test.phase == "test"
    # test synthesis keeps the file order and never flips (--serial_batches / --no_flip are training flags)
    from data.transforms import get_params

    rng = np.random.default_rng(0)
    larger = TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1",
                                  "--load_size", "300"])
    params = [get_params(larger, (500, 500), rng) for _ in range(20)]  # centred crop of 256 in 300
    assert not any(p["flip"] for p in params) and {p["crop_pos"] for p in params} == {(22, 22)}
    assert not hasattr(test, "serial_batches") and not hasattr(test, "no_flip")


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


def test_build_options_goes_through_the_parsers(tmp_path):
    opt = build_options(True, ["--ngf", "16"], label_nc=5, ngf=8, contain_dontcare_label=True, gpu_ids="-1")
    cli = TrainOptions().parse(["--label_nc", "5", "--ngf", "16", "--contain_dontcare_label", "--gpu_ids", "-1"])
    assert vars(opt) == vars(cli)  # same fields, same values: the command line wins over the overrides
    assert opt.semantic_nc == 6 and opt.load_size == 286 and opt.isTrain
    with pytest.raises(OptionError, match="unknown option.*lable_nc"):
        build_options(True, lable_nc=3)
    with pytest.raises(OptionError, match="--crop_size 40"):
        build_options(False, crop_size=40, gpu_ids="-1")
    test = build_options(False, crop_size=64, gpu_ids="-1")
    assert test.load_size == 64 and not test.isTrain and test.semantic_nc == 13


def test_run_specific_options_are_real_flags():
    from options.editor_options import EditorOptions
    from options.export_options import ExportOptions

    dests = set()
    for options in (TrainOptions(), TestOptions(), MixOptions(), EditorOptions(), ExportOptions()):
        parser = options.build_parser(["--gpu_ids", "-1"])
        dests |= {a.dest for a in parser._actions}
    assert RUN_SPECIFIC_OPTIONS <= dests, sorted(RUN_SPECIFIC_OPTIONS - dests)


def test_every_flag_is_either_reloaded_from_opt_json_or_run_specific():
    """A new flag must be put in one set: the architecture (marked by its component) or the run's own."""
    from options.editor_options import EditorOptions
    from options.export_options import ExportOptions
    from util.flag_rules import architecture_flags

    for options in (TrainOptions(), TestOptions(), MixOptions(), EditorOptions(), ExportOptions()):
        parser = options.build_parser(["--gpu_ids", "-1"])
        dests = {a.dest for a in parser._actions} - {"help"}
        architecture = architecture_flags(parser)
        neither = dests - architecture - RUN_SPECIFIC_OPTIONS
        assert not neither, f"{type(options).__name__}: {sorted(neither)} in neither set"
        assert not architecture & RUN_SPECIFIC_OPTIONS, sorted(architecture & RUN_SPECIFIC_OPTIONS)
        assert {"ngf", "label_nc", "crop_size", "norm_G", "model"} <= architecture
    train = architecture_flags(TrainOptions().build_parser(["--gpu_ids", "-1"]))
    assert {"ndf", "num_D", "lambda_feat", "no_vgg_loss"} <= train  # D and losses: training only


def test_test_options_reload_only_the_architecture_flags(tmp_path):
    folder = tmp_path / "ck" / "run"
    folder.mkdir(parents=True)
    saved = {"ngf": 8, "label_nc": 5, "crop_size": 64, "norm_G": "spectralspadebatch3x3", "batchSize": 7,
             "seed": 11, "results_dir": "elsewhere", "ndf": 16, "not_a_flag": 1}
    (folder / "opt.json").write_text(json.dumps(saved))
    argv = ["--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1"]
    opt = TestOptions().parse(argv + ["--label_nc", "6"])
    assert (opt.ngf, opt.crop_size, opt.norm_G, opt.label_nc) == (8, 64, "spectralspadebatch3x3", 6)  # CLI wins
    fresh = TestOptions().parse(["--gpu_ids", "-1"])
    assert (opt.batchSize, opt.seed, opt.results_dir) == (fresh.batchSize, fresh.seed, fresh.results_dir)
    assert opt.load_size == 64  # derived from the reloaded crop


def test_output_nc_sets_the_generator_discriminator_and_data(tmp_path):
    from data.loader import create_dataset
    from models import create_model
    from tests._synthetic import build_synthetic_dataset

    with pytest.raises(OptionError, match="--output_nc 1.*--no_vgg_loss"):
        build_options(True, output_nc=1, gpu_ids="-1")
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=2, size=32, label_nc=3)
    opt = build_options(True, output_nc=1, no_vgg_loss=True, label_nc=3, ngf=2, ndf=4, crop_size=32,
                        load_size=32, gpu_ids="-1", image_dir=images, label_dir=labels, instance_dir=codes)
    item = create_dataset(opt)[0]
    assert item["image"].shape == (1, 32, 32)
    from PIL import Image

    grey = np.asarray(Image.open(os.path.join(images, "img0.png")).convert("L"), np.float32) / 127.5 - 1
    flipped = not np.allclose(item["image"][0].numpy(), grey, atol=1e-6)
    np.testing.assert_allclose(item["image"][0].numpy(), grey[:, ::-1] if flipped else grey, atol=1e-6)
    model = create_model(opt)
    assert model.netG.conv_img.out_channels == 1
    assert model.netD.discriminator_0.model0[0].in_channels == 3 + 1
    from data.loader import collate

    losses, fake = model(collate([item, create_dataset(opt)[1]]), "generator")
    assert fake.shape == (2, 1, 32, 32) and set(losses) == {"GAN", "GAN_Feat"}


def test_model_flag_chooses_from_the_registry(monkeypatch):
    import models
    from models.superstylenet_model import SuperStyleNetModel

    class Variant(SuperStyleNetModel):
        pass

    monkeypatch.setitem(models.MODELS, "variant", Variant)
    opt = build_options(False, ["--model", "variant"], label_nc=2, ngf=2, crop_size=32, gpu_ids="-1")
    assert type(models.create_model(opt)) is Variant
    with pytest.raises(SystemExit):
        build_options(False, ["--model", "pix2pix"], gpu_ids="-1")


# ------------------------------------------------------------------------------ --help of the entry scripts
def _load_script(relative):
    spec = importlib.util.spec_from_file_location("script_" + re.sub(r"\W", "_", relative),
                                                  os.path.join(ROOT, relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _help_of(main, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(argv + ["--help"])
    assert exit_info.value.code == 0
    return out.getvalue()


def _options_parser(options_class, argv):
    return lambda: options_class().build_parser(argv)


def _entry_scripts(tmp_path):
    """(script, its main, required argv, a function building its complete parser, its options class)."""
    ck = ["--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]
    mix_req = ck + ["--source_labels", "a.png", "--source_codes", "a.npy", "--style_codes", "b.npy", "--classes", "1"]
    test_script, mix_script = _load_script("test.py"), _load_script("mix_styles.py")
    train_script, edit_script = _load_script("train.py"), _load_script("edit_app.py")
    out = [("train.py", train_script.main, ck, _options_parser(TrainOptions, ck), TrainOptions),
           ("test.py", test_script.main, ck, _options_parser(TestOptions, ck), TestOptions),
           ("mix_styles.py", mix_script.main, mix_req, _options_parser(MixOptions, mix_req), MixOptions),
           ("edit_app.py", edit_script.main, ck, _options_parser(edit_script.EditorOptions, ck),
            edit_script.EditorOptions),
           ("scripts/export_generator.py", _load_script("scripts/export_generator.py").main, ck,
            _options_parser(ExportOptions, ck), ExportOptions)]
    plain = {"save_style_vector.py": ["--image_dir", "i", "--label_dir", "l", "--save_dir", "s", "--label_nc", "3"],
             "evaluate.py": ["--results_dir", "r", "--gt_dir", "g"],
             "datasets/prepare_celebamask_hq.py": ["--root", "r", "--out_dir", "o"],
             "datasets/prepare_cityscapes.py": ["--root", "r", "--out_dir", "o"],
             "datasets/prepare_cmp_facade.py": ["--input_dirs", "a", "--out_dir", "o"],
             "scripts/demo.py": [], "scripts/checkpoint_sizes.py": [],
             "scripts/import_release.py": ["--checkpoint", "checkpoint.zip"]}
    for script, req in plain.items():
        module = _load_script(script)
        main = module.main if script != "scripts/demo.py" else module.parse_args
        out.append((script, main, req, module.build_parser, None))
    shot = _load_script("scripts/editor_screenshot.py")
    out.append(("scripts/editor_screenshot.py", shot.main, [], shot.build_parser, None))
    return out


def test_help_of_every_entry_script_shows_each_flag_with_the_default_in_force(tmp_path):
    for script, main, required, make_parser, options_class in _entry_scripts(tmp_path):
        text = _help_of(main, list(required))
        parser = make_parser()
        parsed = parser.parse_args(required)
        if options_class is not None:  # the options the script runs with: no default changes after parsing
            opt = options_class().parse(required)
            for dest, value in vars(parsed).items():
                if dest != "gpu_ids":  # "-1" becomes the list of GPU ids, [] on the CPU
                    assert getattr(opt, dest) == value, (script, dest)
        entries = {}  # flag -> its help entry, whitespace collapsed
        for block in re.split(r"\n(?=  -)", text):
            m = re.match(r"\s*(-\w, )?(--\w+)", block)
            if m:
                entries[m.group(2)] = " ".join(block.split())
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[-1]
            assert flag in entries, f"{script} --help lacks {flag}"
            if not action.required and flag not in required:  # a default, not a value given here
                value = getattr(parsed, action.dest)
                if is_switch(action):  # a switch says whether it is in force, not its shared value
                    value = "on" if value == action.const else "off"
                shown = f"(default: {value})"
                assert shown in entries[flag], f"{script} {flag}: {entries[flag]!r} should show {shown}"
    train_help = _help_of(_load_script("train.py").main, ["--gpu_ids", "-1"])
    for flag in ("--ngf", "--no_vgg_loss", "--vgg_path", "--num_upsampling_layers", "--norm_G", "--init_from"):
        assert flag in train_help
    flat = " ".join(train_help.split())
    for shown in ("--crop_size CROP_SIZE crop", "(default: 256)", "(default: 13)", "(default: resize_and_crop)",
                  "(default: 286)", "logs (default: on) --no_tf_log write no TensorBoard events (default: off)",
                  "the CPU float32 unless --amp_dtype is given (default: off)"):
        assert shown in flat
    mix_help = " ".join(_help_of(_load_script("mix_styles.py").main, []).split())
    assert "SuperStyleNet style mixing" in mix_help and "testing" not in mix_help.split("options:")[0]


def test_flags_read_before_the_parser_is_complete_resolve_like_the_full_parser():
    from options.editor_options import EditorOptions

    # an abbreviation of a flag read early (--crop_size decides --load_size's default)
    assert TestOptions().parse(["--crop", "64", "--gpu_ids", "-1"]).load_size == 64
    # a flag whose name starts another's (--data of the editor, --dataset_mode) is itself
    opt = EditorOptions().parse(["--data", "somewhere", "--gpu_ids", "-1"])
    assert opt.data == "somewhere" and opt.dataset_mode == "custom"
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            TestOptions().parse(["--crop_size", "many", "--gpu_ids", "-1"])  # a type error of an early flag
