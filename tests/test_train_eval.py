"""Evaluation during training (--eval_dir): values, logs, best checkpoints, FID, DDP; on a tiny CPU set.

The runs train a noise-free model (``tests._synthetic.noise_free_model``: ACE's
noise scale frozen at 0), so a generator's output does not depend on the noise
draws, and the values logged during training can be compared with test.py +
evaluate.py on the saved checkpoints (which draw their noise differently).
"""
import contextlib
import importlib.util
import io
import json
import os

import pytest
import torch
import torch.multiprocessing as mp

import evaluate
import train
from evaluation import metrics
from tests._synthetic import build_synthetic_dataset, noise_free_model
from util.distributed import free_port
from util.errors import InputError, OptionError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("ssim", "psnr", "rmse")
LABEL_NC = 2  # the per-class layers dominate G's size, and so the cost of Adam and of the EMA update


def load_test_script():
    spec = importlib.util.spec_from_file_location("ssn_test_script_eval", os.path.join(ROOT, "test.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_data(root, n_eval=3):
    train_dirs = build_synthetic_dataset(os.path.join(root, "data"), n=4, size=32, label_nc=LABEL_NC)
    build_synthetic_dataset(os.path.join(root, "eval"), n=n_eval, size=32, label_nc=LABEL_NC, seed=1)
    return train_dirs, os.path.join(root, "eval")


def train_noise_free(argv):
    """``train.main(argv)`` on the noise-free model of ``argv`` (--seed 2 of :func:`train_args`)."""
    return train.main(argv, model=noise_free_model(argv, seed=2))


def train_args(root, name, train_dirs, batch=2):
    images, labels, codes = train_dirs
    return ["--name", name, "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", str(LABEL_NC), "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss", "--batchSize", str(batch), "--niter", "1", "--niter_decay", "1",
            "--print_freq", "100", "--display_freq", "100", "--seed", "2",
            "--ema_bn_batches", "2", "--inception_path", os.path.join(root, "no_inception.pth")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """4 steps (2 per epoch), evaluated at steps 2 and 4, best by RMSE; stdout captured."""
    root = str(tmp_path_factory.mktemp("train_eval"))
    train_dirs, eval_dir = make_data(root)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        trainer = train_noise_free(train_args(root, "ev", train_dirs)
                                   + ["--eval_dir", eval_dir, "--eval_freq", "2", "--eval_metric", "rmse",
                                      "--save_epoch_freq", "1", "--tf_log"])
    return root, train_dirs, eval_dir, trainer, out.getvalue()


def synthesise_and_evaluate(root, eval_dir, which, use_ema=False):
    """test.py on the held-out set (same batch size as the evaluator) + evaluate.py on its page."""
    results = os.path.join(root, "res")
    test_script = load_test_script()
    page = test_script.main(["--name", "ev", "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
                             "--label_dir", os.path.join(eval_dir, "labels"),
                             "--image_dir", os.path.join(eval_dir, "images"),
                             "--instance_dir", os.path.join(eval_dir, "codes"), "--batchSize", "2",
                             "--which_epoch", which, "--results_dir", results] + (["--use_ema"] if use_ema else []))
    folder = os.path.join(os.path.dirname(page), "images")
    return evaluate.evaluate(os.path.join(folder, "synthesized_image"), os.path.join(folder, "real_image"),
                             progress=False)["mean"]


def test_values_are_logged_once_per_evaluation_and_follow_evaluate_py(run):
    root, _, eval_dir, trainer, stdout = run
    folder = os.path.join(root, "ck", "ev")
    log = open(os.path.join(folder, "loss_log.txt")).read()
    lines = [ln for ln in log.splitlines() if ln.startswith("(eval,")]
    assert [ln.split("step: ")[1].split(",")[0] for ln in lines] == ["2", "4"]
    # the log names the metric conventions once, before the first evaluation
    settings = [ln for ln in log.splitlines() if ln.startswith("(eval settings)")]
    assert settings == ["(eval settings) " + metrics.describe_settings("gaussian", (32, 32))]
    assert log.index(settings[0]) < log.index(lines[0])
    assert all("images: 3)" in ln and "ema_rmse: " in ln for ln in lines)
    # no Inception weights: FID is skipped, and that is said once
    assert stdout.count("FID is skipped during training") == 1
    assert "no_inception.pth" in stdout
    assert "fid" not in trainer.evaluator.last_values
    events = [f for f in os.listdir(os.path.join(folder, "logs")) if f.startswith("events.out.tfevents")]
    content = open(os.path.join(folder, "logs", events[0]), "rb").read()
    for tag in (b"eval/ssim", b"eval/psnr", b"eval/rmse", b"eval/ema_ssim", b"eval/ema_rmse"):
        assert tag in content, tag
    # the step-4 values are evaluate.py's on test.py's images of the final weights (raw and EMA)
    values = trainer.evaluator.last_values
    assert trainer.evaluator.last_step == 4
    for use_ema, prefix in ((False, ""), (True, "ema_")):
        mean = synthesise_and_evaluate(root, eval_dir, "latest", use_ema)
        assert mean["count"] == 3
        for k in KEYS:  # the same uint8 images: equal up to float64 summation order
            assert values[prefix + k] == pytest.approx(mean[k], rel=1e-9), prefix + k
    assert values["rmse"] != values["ema_rmse"]


def test_best_checkpoints_follow_the_chosen_metric(run):
    root, _, _, trainer, _ = run
    folder = os.path.join(root, "ck", "ev")
    history = dict(trainer.evaluator.history)
    assert sorted(history) == [2, 4]
    best = json.load(open(os.path.join(folder, "best.json")))
    assert best["metric"] == "rmse" and best["higher_is_better"] is False
    for kind, prefix in (("raw", ""), ("ema", "ema_")):
        step = min(history, key=lambda s: history[s][prefix + "rmse"])  # lower RMSE is better
        assert best[kind]["step"] == step and best[kind]["value"] == history[step][prefix + "rmse"]
        # the best file holds the weights of that step: epoch snapshot <step / 2> (2 steps per epoch)
        name = "G" if kind == "raw" else "G_ema"
        got = torch.load(os.path.join(folder, f"best_net_{name}.pth"), weights_only=True)
        snapshot = torch.load(os.path.join(folder, f"{step // 2}_net_{name}.pth"), weights_only=True)
        assert got.keys() == snapshot.keys()
        for k in got:
            assert torch.equal(got[k], snapshot[k]), (kind, k)
    # the record is part of the training state (a resumed run keeps it)
    state = torch.load(os.path.join(folder, "latest_train_state.pth"), weights_only=True)
    assert state["evaluation"]["best"] == {k: best[k] for k in ("raw", "ema")}


def test_evaluation_leaves_training_unchanged(run, tmp_path):
    """Same run without --eval_dir: bit-identical weights, averaged weights and losses."""
    root, train_dirs, _, trainer, _ = run
    with contextlib.redirect_stdout(io.StringIO()):
        plain = train_noise_free(train_args(str(tmp_path), "plain", train_dirs) + ["--save_epoch_freq", "1"])
    for net in ("netG", "netD"):
        a, b = getattr(trainer.model, net).state_dict(), getattr(plain.model, net).state_dict()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{net}.{k}"
    for k, v in trainer.ema.module.state_dict().items():
        assert torch.equal(v, plain.ema.module.state_dict()[k]), k
    assert trainer.latest_losses() == plain.latest_losses()


def test_fid_with_a_random_inception_matches_evaluate_py(tmp_path, random_inception_path):
    """The FID plumbing with an untrained Inception (its values mean nothing, but must agree)."""
    root = str(tmp_path)
    train_dirs, eval_dir = make_data(root, n_eval=2)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = train_noise_free(train_args(root, "ev", train_dirs)
                                   + ["--eval_dir", eval_dir, "--eval_freq", "100", "--inception_path",
                                      random_inception_path, "--eval_metric", "fid", "--ema_decay", "0",
                                      "--max_steps", "2", "--eval_ssim_variant", "uniform"])
    values = trainer.evaluator.last_values
    assert trainer.evaluator.last_step == 2 and set(values) == {"ssim", "psnr", "rmse", "fid"}
    # evaluate.py with the same network and batch size
    folder = os.path.join(root, "fid_res")
    test_script = load_test_script()
    with contextlib.redirect_stdout(io.StringIO()):
        page = test_script.main(["--name", "ev", "--checkpoints_dir", os.path.join(root, "ck"), "--gpu_ids", "-1",
                                 "--label_dir", os.path.join(eval_dir, "labels"),
                                 "--image_dir", os.path.join(eval_dir, "images"),
                                 "--instance_dir", os.path.join(eval_dir, "codes"), "--batchSize", "2",
                                 "--results_dir", folder])
    images = os.path.join(os.path.dirname(page), "images")
    report = evaluate.evaluate(os.path.join(images, "synthesized_image"), os.path.join(images, "real_image"),
                               fid=True, inception_path=random_inception_path, batch_size=2, progress=False,
                               ssim_variant="uniform")
    assert values["fid"] == pytest.approx(report["mean"]["fid"], rel=1e-9)
    assert values["ssim"] == pytest.approx(report["mean"]["ssim"], rel=1e-9)  # --eval_ssim_variant uniform
    log = open(os.path.join(root, "ck", "ev", "loss_log.txt")).read()
    assert "(eval settings) " + metrics.describe_settings("uniform", (32, 32)) in log
    assert json.load(open(os.path.join(root, "ck", "ev", "best.json")))["raw"]["value"] == values["fid"]


def test_evaluation_leaves_the_noise_of_later_steps_unchanged(tmp_path):
    """With ACE's noise on, a step after an evaluation draws the noise it would have drawn without one."""
    train_dirs, eval_dir = make_data(str(tmp_path))

    def final_weights(name, extra):
        argv = train_args(str(tmp_path), name, train_dirs) + ["--max_steps", "2", "--ema_bn_batches", "0"] + extra
        with contextlib.redirect_stdout(io.StringIO()):
            return train.main(argv).model.netG.state_dict()

    plain = final_weights("plain", [])
    evaluated = final_weights("evaluated", ["--eval_dir", eval_dir, "--eval_freq", "1", "--eval_metric", "rmse"])
    for k, v in plain.items():
        assert torch.equal(v, evaluated[k]), k


def test_scoring_leaves_the_global_random_stream_untouched(run):
    """The evaluator forks the RNG around G and gives its loader its own generator: no global draw."""
    _, _, _, trainer, _ = run
    netG = trainer.model.netG
    state = torch.get_rng_state()
    first = trainer.evaluator.score(netG, trainer.generator_inputs, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert trainer.evaluator.score(netG, trainer.generator_inputs, torch.device("cpu")) == first


def test_bad_evaluation_options_stop_before_training(tmp_path):
    root = str(tmp_path)
    train_dirs, eval_dir = make_data(root)
    args = train_args(root, "bad", train_dirs)
    with pytest.raises(OptionError, match="--eval_metric fid: FID cannot be computed.*no_inception.pth"):
        train.main(args + ["--eval_dir", eval_dir, "--eval_metric", "fid"])
    from util.io import save_image_atomic
    import numpy as np

    label = os.path.join(eval_dir, "labels", "img1.png")
    good = open(label, "rb").read()
    save_image_atomic(label, np.full((32, 32), 9, np.uint8))  # class 9 of 2: found before training starts
    with pytest.raises(InputError, match="img1.png.*9"):
        train.main(args + ["--eval_dir", eval_dir])
    open(label, "wb").write(good)
    os.rename(os.path.join(eval_dir, "codes"), os.path.join(eval_dir, "styles"))
    with pytest.raises(InputError, match="--eval_dir .*codes not found"):
        train.main(args + ["--eval_dir", eval_dir])
    with pytest.raises(OptionError, match="--eval_freq 0"):
        train.main(args + ["--eval_dir", eval_dir, "--eval_freq", "0"])
    with pytest.raises(OptionError, match="--ema_decay 1.5"):
        train.main(args + ["--ema_decay", "1.5"])
    assert not os.path.exists(os.path.join(root, "ck", "bad"))  # validated before anything is written


# ------------------------------------------------------------------------------- DDP
def _ddp_worker(rank, world_size, port, root, train_dirs, eval_dir):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from util import distributed as dist_util

    try:
        trainer = train_noise_free(train_args(root, "ddp", train_dirs, batch=4)
                                   + ["--eval_dir", eval_dir, "--eval_freq", "1", "--max_steps", "1"])
        torch.save({"values": trainer.evaluator.last_values, "history": trainer.evaluator.history,
                    "indices": trainer.evaluator.last_local_indices},
                   os.path.join(root, f"eval_rank{rank}.pt"))
    finally:
        dist_util.cleanup()


def test_ddp_evaluates_once_with_shared_work(tmp_path):
    """2 gloo processes: one evaluation per step (logged once), the same values on both ranks, equal to a
    single-process evaluation of the saved weights; each rank scored only its share of the batches."""
    root = str(tmp_path)
    train_dirs = build_synthetic_dataset(os.path.join(root, "data"), n=4, size=32, label_nc=LABEL_NC)
    eval_dir = os.path.join(root, "eval")
    build_synthetic_dataset(eval_dir, n=4, size=32, label_nc=LABEL_NC, seed=1)
    mp.start_processes(_ddp_worker, args=(2, free_port(), root, train_dirs, eval_dir), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [torch.load(os.path.join(root, f"eval_rank{r}.pt"), weights_only=False) for r in range(2)]
    assert ranks[0]["values"] == ranks[1]["values"]
    assert (ranks[0]["indices"], ranks[1]["indices"]) == ([0, 1], [2, 3])  # each rank scored its share
    assert [s for s, _ in ranks[0]["history"]] == [1]  # once, at step 1 (eval_freq 1, max_steps 1)
    log = open(os.path.join(root, "ck", "ddp", "loss_log.txt")).read()
    assert log.count("(eval,") == 1 and "images: 4)" in log
    # per-rank batch 2: the held-out batches [0, 1] and [2, 3] went to ranks 0 and 1; test.py with
    # batch 2 in one process runs the same batches, so the images (and the values) are the same
    values = ranks[0]["values"]
    with contextlib.redirect_stdout(io.StringIO()):
        for use_ema, prefix in ((False, ""), (True, "ema_")):
            results = os.path.join(root, "res")
            test_script = load_test_script()
            page = test_script.main(["--name", "ddp", "--checkpoints_dir", os.path.join(root, "ck"),
                                     "--gpu_ids", "-1", "--label_dir", os.path.join(eval_dir, "labels"),
                                     "--image_dir", os.path.join(eval_dir, "images"),
                                     "--instance_dir", os.path.join(eval_dir, "codes"), "--batchSize", "2",
                                     "--results_dir", results] + (["--use_ema"] if use_ema else []))
            folder = os.path.join(os.path.dirname(page), "images")
            mean = evaluate.evaluate(os.path.join(folder, "synthesized_image"), os.path.join(folder, "real_image"),
                                     progress=False)["mean"]
            for k in KEYS:
                assert values[prefix + k] == pytest.approx(mean[k], rel=1e-9), prefix + k
