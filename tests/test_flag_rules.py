"""Flag values: one rule per flag, declared next to it, checked in every script before any work.

Non-finite numbers, values out of range, sizes beyond their bound (with a
memory estimate), a hand-edited opt.json: one ``error:`` line naming the
flag (or the file and entry), exit status 2, nothing written.
"""
import json
import math
import os

import numpy as np
import pytest

import evaluate
import mix_styles
import save_style_vector
import test as test_script
import train
from options import build_options
from options.mix_options import MixOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions
from tests._synthetic import build_synthetic_dataset
from util.cli import run_cli
from util.errors import OptionError
from util.flag_rules import Range, at_least, check_flags, check_value
from util.io import save_image_atomic, write_text_atomic

LABEL_NC = 2
MIX_REQUIRED = ["--source_labels", "a.png", "--source_codes", "a.npy", "--style_codes", "b.npy", "--classes", "1"]
PLAIN_REQUIRED = {"evaluate.py": (evaluate, ["--results_dir", "r", "--gt_dir", "g"]),
                  "save_style_vector.py": (save_style_vector,
                                           ["--image_dir", "i", "--label_dir", "l", "--save_dir", "s",
                                            "--label_nc", "3"])}
# numeric flags without a range of their own: any integer seed is a seed; --output_nc has choices
UNRULED = {"seed", "output_nc"}


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ------------------------------------------------------------------------------------------- the rule objects
def test_range_descriptions_and_bounds():
    assert Range(0, 1, high_open=True).describe() == "in [0, 1)"
    assert at_least(1).describe() == "at least 1" and Range(0, low_open=True).describe() == "greater than 0"
    r = Range(0, 1)
    assert r.contains(0) and r.contains(1) and not r.contains(1.0000001) and not r.contains(-1e-9)
    assert not Range(0, low_open=True).contains(0)
    check_value("--how_many", math.inf, int, at_least(1, infinite_ok=True))  # "no limit"
    with pytest.raises(OptionError, match=r"^--k inf: must be an integer at least 1$"):
        check_value("--k", math.inf, int, at_least(1))
    with pytest.raises(OptionError, match=r"^--x nan: must be a finite number$"):
        check_value("--x", float("nan"), float, None)
    with pytest.raises(OptionError, match=r"^--n 8\.5: must be an integer at least 1$"):
        check_value("--n", 8.5, int, at_least(1))
    with pytest.raises(OptionError, match=r"^--n true: must be an integer at least 1$"):
        check_value("--n", True, int, at_least(1))
    check_value("--n", None, int, at_least(1, optional=True))
    with pytest.raises(OptionError, match="must be an integer"):
        check_value("--n", None, int, at_least(1))


# ------------------------------------------------------------------------------------------- training flags
@pytest.mark.parametrize("args, message", [
    (["--lr", "inf"], "--lr inf: must be a finite number greater than 0"),
    (["--lr", "nan"], "--lr nan: must be a finite number greater than 0"),
    (["--beta1", "nan"], "--beta1 nan: must be a finite number in [0, 1)"),
    (["--beta2", "1"], "--beta2 1: must be a finite number in [0, 1)"),
    (["--ngf", "0"], "--ngf 0: must be an integer at least 1"),
    (["--ngf", "-8"], "--ngf -8: must be an integer at least 1"),
    (["--ndf", "0"], "--ndf 0: must be an integer at least 1"),
    (["--aspect_ratio", "nan"], "--aspect_ratio nan: must be a finite number greater than 0"),
    (["--lambda_vgg=-inf"], "--lambda_vgg -inf: must be a finite number at least 0"),
    (["--ema_decay", "nan"], "--ema_decay nan: must be a finite number in [0, 1)"),
    (["--ema_decay", "1"], "--ema_decay 1: must be a finite number in [0, 1); 0 disables the EMA generator"),
])
def test_train_refuses_non_finite_and_out_of_range_flags_before_writing(tmp_path, capsys, args, message):
    argv = ["--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1", *args]
    assert run_cli(train.main, argv) == 2
    assert _one_error_line(capsys) == f"error: {message}"
    assert not (tmp_path / "ck").exists()


def _float_flags(parser):
    return [a for a in parser._actions if a.type is float]


def test_every_float_flag_of_every_script_refuses_nan_and_inf(tmp_path):
    base = ["--name", "x", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]
    checked = []
    for options_class, extra in ((TrainOptions, []), (TestOptions, []), (MixOptions, MIX_REQUIRED)):
        for action in _float_flags(options_class().build_parser(base + extra)):
            flag = action.option_strings[-1]
            for bad in ("nan", "inf", "-inf"):
                with pytest.raises(OptionError, match=f"^{flag} {bad}: must be a finite number"):
                    options_class().parse(base + extra + [f"{flag}={bad}"])
            checked.append(flag)
    for script, (module, required) in PLAIN_REQUIRED.items():
        parser = module.build_parser()
        for action in _float_flags(parser):
            flag = action.option_strings[-1]
            with pytest.raises(OptionError, match=f"^{flag} nan: must be a finite number"):
                check_flags(parser, parser.parse_args(required + [flag, "nan"]))
            checked.append(flag)
    assert {"--lr", "--beta1", "--beta2", "--aspect_ratio", "--ema_decay", "--init_variance",
            "--compactness"} <= set(checked)


def test_every_numeric_flag_declares_its_rule(tmp_path):
    base = ["--gpu_ids", "-1"]
    parsers = [TrainOptions().build_parser(base), TestOptions().build_parser(base),
               MixOptions().build_parser(base + MIX_REQUIRED)]
    parsers += [module.build_parser() for module, _ in PLAIN_REQUIRED.values()]
    missing = sorted({a.dest for p in parsers for a in p._actions
                      if a.type in (int, float) and getattr(a, "rule", None) is None} - UNRULED)
    assert not missing, f"numeric flags without a rule (util.flag_rules.set_rules next to the flag): {missing}"


def test_caller_defaults_go_through_the_same_rules():
    with pytest.raises(OptionError, match="^--ngf 8.5: must be an integer at least 1$"):
        build_options(True, ngf=8.5, gpu_ids="-1")
    with pytest.raises(OptionError, match="^--lr nan: must be a finite number greater than 0$"):
        build_options(True, lr=float("nan"), gpu_ids="-1")


# ------------------------------------------------------------------------------------------- a hand-edited opt.json
@pytest.mark.parametrize("value, shown, rule", [
    (None, "null", "--ngf must be an integer at least 1"),
    (8.5, "8.5", "--ngf must be an integer at least 1"),
    (0, "0", "--ngf must be an integer at least 1"),
    ("64", '"64"', "--ngf must be an integer at least 1"),
])
def test_hand_edited_opt_json_is_refused_naming_the_file_and_entry(tmp_path, capsys, value, shown, rule):
    opt = TrainOptions()
    opt.save_options(opt.parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]))
    path = tmp_path / "exp" / "opt.json"
    saved = json.loads(path.read_text())
    saved["ngf"] = value
    path.write_text(json.dumps(saved))
    expected = f'{path}: "ngf" is {shown}, but {rule}; correct or delete this entry'
    with pytest.raises(OptionError) as e:
        TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"])
    assert str(e.value) == expected
    assert run_cli(test_script.main, ["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]) == 2
    assert _one_error_line(capsys) == f"error: {expected}"


def test_opt_json_strings_bools_and_choices_are_type_checked(tmp_path):
    opt = TrainOptions()
    opt.save_options(opt.parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]))
    path = tmp_path / "exp" / "opt.json"
    good = json.loads(path.read_text())
    for key, value, needle in (("contain_dontcare_label", "yes", "must be true or false"),
                               ("num_upsampling_layers", "many", "must be one of"),
                               ("norm_G", 3, "must be a string"),
                               ("aspect_ratio", "NaN", "must be a finite number greater than 0")):
        path.write_text(json.dumps({**good, key: value}))
        with pytest.raises(OptionError, match=f'opt.json: "{key}" is .*{needle}'):
            TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"])
    path.write_text(json.dumps(good))
    assert TestOptions().parse(["--name", "exp", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1"]).ngf == 64


# ------------------------------------------------------------------------------------------- test.py --how_many
@pytest.mark.parametrize("how_many", ["-3", "0"])
def test_how_many_below_one_is_refused_and_the_page_is_kept(tmp_path, capsys, how_many):
    page = tmp_path / "results" / "run" / "test_latest" / "index.html"
    write_text_atomic(page, "<html>earlier results</html>")
    argv = ["--name", "run", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
            "--results_dir", str(tmp_path / "results"), "--how_many", how_many]
    assert run_cli(test_script.main, argv) == 2
    assert _one_error_line(capsys) == f"error: --how_many {how_many}: must be an integer at least 1"
    assert page.read_text() == "<html>earlier results</html>"
    assert TestOptions().parse(["--gpu_ids", "-1"]).how_many == math.inf  # the default: all images


# ------------------------------------------------------------------------------------------- mix_styles.py
@pytest.mark.parametrize("args, needle", [
    (["--alpha", "nan"], "--alpha nan: each blend factor must be a finite number in [0, 1]"),
    (["--alpha", "5,-3"], "--alpha 5,-3: each blend factor must be a finite number in [0, 1] (0 keeps the "
                          "source's code, 1 replaces it); 5 is not"),
    (["--alpha", "0,-3"], "-3 is not"),
    (["--alpha", "0,x"], "--alpha '0,x': expected comma-separated numbers"),
    (["--edit_rgb", "nan,0,0"], "--edit_rgb nan,0,0: each colour offset must be a finite number in [-1, 1]"),
    (["--edit_rgb", "0,0,inf"], "--edit_rgb 0,0,inf: each colour offset"),
    (["--edit_rgb", "0.1,0.2"], "--edit_rgb '0.1,0.2': expected three comma-separated numbers"),
    (["--spse_size", "100000"], "--spse_size 100000: must be an integer in [8, 4096]; at 100000x100000 one "
                                "extraction (per worker) would need about 1.1 TB of memory"),
])
def test_mixing_flags_are_checked_before_any_work(tmp_path, capsys, monkeypatch, args, needle):
    import models.inference

    monkeypatch.setattr(models.inference, "load_inference_model", lambda *a, **k: pytest.fail("work started"))
    argv = ["--name", "mix", "--checkpoints_dir", str(tmp_path), "--gpu_ids", "-1", *MIX_REQUIRED, *args]
    assert run_cli(mix_styles.main, argv) == 2
    assert needle in _one_error_line(capsys)


def test_mixing_accepts_the_alpha_bounds():
    opt = MixOptions().parse(["--gpu_ids", "-1", *MIX_REQUIRED, "--alpha", "0,0.5,1", "--edit_rgb=-1,0,1"])
    assert opt.alphas == [0.0, 0.5, 1.0] and opt.rgb_offset == (-1.0, 0.0, 1.0)
    assert opt.alpha == "0,0.5,1"  # the flag keeps its text (--help shows the default in force)


# ------------------------------------------------------------------------------------------- evaluate.py
@pytest.fixture()
def result_folders(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("res", "gt"):
        for i in range(2):
            save_image_atomic(str(tmp_path / folder / f"{i}.png"), rng.integers(0, 256, (16, 16, 3), np.uint8))
    return str(tmp_path / "res"), str(tmp_path / "gt")


@pytest.mark.parametrize("args, message", [
    (["--fid", "--batch_size", "-1"], "--batch_size -1: must be an integer at least 1"),
    (["--fid", "--batch_size", "0"], "--batch_size 0: must be an integer at least 1"),
    (["--size", "0"], "--size 0: must be an integer in [11, 4096]"),
    (["--size", "-5"], "--size -5: must be an integer in [11, 4096]"),
    (["--size", "30000"], "--size 30000: must be an integer in [11, 4096]; at 30000x30000 one image pair would "
                          "need about 157 GB of memory (174 bytes per pixel; 2.9 GB at 4096)"),
])
def test_evaluate_refuses_bad_sizes_before_any_work(result_folders, capsys, monkeypatch, args, message):
    from evaluation import metrics

    monkeypatch.setattr(metrics, "load_pair", lambda *a, **k: pytest.fail("work started"))
    res, gt = result_folders
    assert evaluate.main(["--results_dir", res, "--gt_dir", gt, "--no_progress", *args]) == 2
    assert _one_error_line(capsys) == f"error: {message}"
    assert not os.path.exists(os.path.join(res, "metrics.json"))


def test_evaluate_library_call_checks_the_same_rules(result_folders):
    from evaluation.report import evaluate as evaluate_folders

    with pytest.raises(OptionError, match=r"^--batch_size 0: must be an integer at least 1$"):
        evaluate_folders(*result_folders, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        from evaluation.metrics import inception_activations_of_arrays

        inception_activations_of_arrays([np.zeros((8, 8, 3), np.uint8)], model=None, batch_size=-1)


# ------------------------------------------------------------------------------------------- save_style_vector.py
def test_extraction_size_has_a_bound_with_a_memory_estimate(tmp_path, capsys):
    images, labels, _ = build_synthetic_dataset(str(tmp_path / "data"), n=1, size=16, label_nc=LABEL_NC)
    argv = ["--image_dir", images, "--label_dir", labels, "--save_dir", str(tmp_path / "codes"),
            "--label_nc", str(LABEL_NC), "--workers", "1", "--no_progress"]
    assert save_style_vector.main(argv + ["--size", "100000"]) == 2
    assert _one_error_line(capsys) == ("error: --size 100000: must be an integer in [8, 4096]; at 100000x100000 "
                                       "one extraction (per worker) would need about 1.1 TB of memory (111 bytes "
                                       "per pixel; 1.9 GB at 4096)")
    assert not (tmp_path / "codes").exists()
    assert save_style_vector.main(argv + ["--compactness", "nan"]) == 2
    assert "--compactness nan: must be a finite number greater than 0" in _one_error_line(capsys)
    help_text = " ".join(save_style_vector.build_parser().format_help().split())
    assert "8 to 4096; memory grows with size**2" in help_text and "1.9 GB at 4096" in help_text
