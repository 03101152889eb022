"""End to end on tiny synthetic data: train -> checkpoints -> test -> HTML, and corrupt checkpoints."""
import importlib.util
import os
import re

import pytest
import torch

import train
from tests._synthetic import build_synthetic_dataset
from util.errors import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_test_script():
    """Import the repository's ``test.py`` (its name clashes with the stdlib ``test`` package)."""
    spec = importlib.util.spec_from_file_location("ssn_test_script", os.path.join(ROOT, "test.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_args(tmp_path, dirs, name="smoke"):
    images, labels, codes = dirs
    return ["--name", name, "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
            "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
            "--label_nc", "4", "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
            "--no_vgg_loss"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("smoke")
    dirs = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=4)
    args = tiny_args(tmp_path, dirs)
    trainer = train.main(args + ["--batchSize", "2", "--niter", "1", "--niter_decay", "1",
                                 "--print_freq", "2", "--display_freq", "2", "--save_epoch_freq", "1",
                                 "--tf_log"])
    return tmp_path, dirs, args, trainer


def test_training_writes_checkpoints_logs_and_samples(trained):
    tmp_path, _, _, trainer = trained
    folder = tmp_path / "ck" / "smoke"
    assert trainer.global_step == 4
    for name in ("1_net_G.pth", "2_net_G.pth", "latest_net_G.pth", "latest_net_D.pth",
                 "latest_train_state.pth", "opt.txt", "opt.json"):
        assert (folder / name).is_file(), name
    # release-style checkpoints are plain state_dicts of the final weights
    sd = torch.load(folder / "latest_net_G.pth", weights_only=True)
    for k, v in trainer.model.netG.state_dict().items():
        assert torch.equal(sd[k], v), k
    log = (folder / "loss_log.txt").read_text()
    lines = [ln for ln in log.splitlines() if ln.startswith("(epoch")]
    assert len(lines) == 2  # global steps 2, 4
    assert all(re.search(r"GAN: \S+ GAN_Feat: \S+ D_Fake: \S+ D_real: \S+", ln) for ln in lines)
    page = (folder / "web" / "index.html").read_text()
    for kind in ("input_label", "synthesized_image", "real_image"):
        assert f"epoch002_iter00000004_{kind}.png" in page
        assert (folder / "web" / "images" / f"epoch001_iter00000002_{kind}.png").is_file()
    assert not list(folder.rglob("*.tmp"))
    # --tf_log: tensorboardX event file with the raw loss scalars and the sample images
    events = list((folder / "logs").glob("events.out.tfevents.*"))
    assert len(events) == 1
    content = events[0].read_bytes()
    for tag in (b"loss/GAN", b"loss/GAN_Feat", b"loss/D_Fake", b"loss/D_real", b"synthesized_image"):
        assert tag in content, tag


def test_test_script_writes_html_and_honours_how_many(trained):
    tmp_path, dirs, args, trainer = trained
    test_script = load_test_script()
    images, labels, codes = dirs
    results = tmp_path / "results"
    # architecture flags (label_nc, crop_size, ngf) come from opt.json
    page = test_script.main(["--name", "smoke", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                             "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
                             "--results_dir", str(results), "--which_epoch", "2", "--how_many", "2"])
    assert page == str(results / "smoke" / "test_2" / "index.html")
    html = open(page).read()
    for kind in ("input_label", "synthesized_image", "real_image"):
        files = sorted(os.listdir(results / "smoke" / "test_2" / "images" / kind))
        assert files == ["img0.png", "img1.png"]
        assert f"images/{kind}/img1.png" in html
    # the synthesised file is the generator's eval-mode output for that label map
    from data.loader import create_dataloader
    from options.test_options import TestOptions
    from util.images import tensor2im
    import numpy as np
    from PIL import Image

    opt = TestOptions().parse(["--name", "smoke", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                               "--label_dir", labels, "--image_dir", images, "--instance_dir", codes])
    batch = next(iter(create_dataloader(opt)))
    trainer.model.eval()
    expected = tensor2im(trainer.model(batch, "inference")[0])
    trainer.model.train()
    got = np.asarray(Image.open(results / "smoke" / "test_2" / "images" / "synthesized_image" / "img0.png"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])


def test_corrupt_checkpoints_give_clear_errors(trained, tmp_path):
    src_tmp, dirs, _, _ = trained
    import shutil

    shutil.copytree(src_tmp / "ck" / "smoke", tmp_path / "ck" / "smoke")
    folder = tmp_path / "ck" / "smoke"
    images, labels, codes = dirs
    test_script = load_test_script()
    test_args = ["--name", "smoke", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                 "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
                 "--results_dir", str(tmp_path / "res")]
    _truncate(folder / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match="latest_net_G.pth"):
        test_script.main(test_args)
    with pytest.raises(CheckpointError, match="7_net_G.pth.*not found"):
        test_script.main(test_args + ["--which_epoch", "7"])
    args = tiny_args(tmp_path, dirs) + ["--niter", "3", "--niter_decay", "0", "--continue_train"]
    _truncate(folder / "latest_train_state.pth")
    with pytest.raises(CheckpointError, match="latest_train_state.pth"):
        train.main(args)
    os.remove(folder / "latest_train_state.pth")
    with pytest.raises(CheckpointError, match="latest_train_state.pth.*not found"):
        train.main(args)


def test_release_layout_generator_checkpoint_works_without_opt_json(trained, tmp_path):
    """A checkpoint in the release's key layout (fc_mu0..fc_mu18, unused Gsas.fc), no opt.json."""
    import re as _re

    import numpy as np
    from PIL import Image

    src_tmp, dirs, _, trainer = trained
    native = trainer.model.netG.state_dict()
    release = {}
    for key, value in native.items():
        m = _re.match(r"^(.+)\.fc_mu\.(weight|bias)$", key)
        if not m:
            release[key] = value.clone()
            continue
        for j in range(19):  # the release always built 19 per-class layers
            release[f"{m[1]}.fc_mu{j}.{m[2]}"] = value[j].clone() if j < value.shape[0] else torch.randn_like(value[0])
        if m[2] == "weight":
            release[f"{m[1]}.Gsas.fc.weight"] = torch.zeros(512, 1024)
            release[f"{m[1]}.Gsas.fc.bias"] = torch.zeros(512)
    folder = tmp_path / "ck" / "release"
    folder.mkdir(parents=True)
    torch.save(release, folder / "latest_net_G.pth")
    images, labels, codes = dirs
    results = tmp_path / "res"
    common = ["--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1", "--label_dir", labels,
              "--image_dir", images, "--instance_dir", codes, "--results_dir", str(results), "--how_many", "1"]
    test_script = load_test_script()
    # as in the release, the user passes the architecture flags
    test_script.main(["--name", "release", "--label_nc", "4", "--crop_size", "32", "--ngf", "4"] + common)
    shutil_src = src_tmp / "ck"
    test_script.main(["--name", "smoke", "--checkpoints_dir", str(shutil_src)] + common[2:])
    a = np.asarray(Image.open(results / "release" / "test_latest" / "images" / "synthesized_image" / "img0.png"))
    b = np.asarray(Image.open(results / "smoke" / "test_latest" / "images" / "synthesized_image" / "img0.png"))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_use_ema_loads_the_averaged_generator(trained):
    """--use_ema reads <epoch>_net_G_ema.pth: another output, equal to the EMA module's own."""
    import numpy as np
    from PIL import Image

    from data.loader import create_dataloader
    from options.test_options import TestOptions
    from util.images import tensor2im

    tmp_path, dirs, _, trainer = trained
    images, labels, codes = dirs
    folder = tmp_path / "ck" / "smoke"
    assert trainer.ema is not None  # on by default
    assert (folder / "2_net_G_ema.pth").is_file() and (folder / "latest_net_G_ema.pth").is_file()
    test_script = load_test_script()
    common = ["--name", "smoke", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
              "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
              "--results_dir", str(tmp_path / "res_ema"), "--how_many", "2"]
    raw_page = test_script.main(common)
    ema_page = test_script.main(common + ["--use_ema"])
    assert ema_page == str(tmp_path / "res_ema" / "smoke" / "test_latest_ema" / "index.html")
    assert raw_page != ema_page

    def synthesized(page):
        return np.asarray(Image.open(os.path.join(os.path.dirname(page), "images", "synthesized_image",
                                                  "img0.png"))).astype(int)

    raw, ema = synthesized(raw_page), synthesized(ema_page)
    assert np.abs(raw - ema).mean() > 1.0  # the averaged generator is another model
    # ...namely the trainer's EMA module (prepared when it was saved), in eval mode. test.py seeds
    # the noise before building its model; do the same, so that the noise draws are the same
    from models.superstylenet_model import SuperStyleNetModel

    opt = TestOptions().parse(common)
    batch = next(iter(create_dataloader(opt)))
    torch.manual_seed(opt.seed)
    model = SuperStyleNetModel(opt)
    model.netG.load_state_dict(trainer.ema.module.state_dict())
    expected = tensor2im(model.eval()(batch, "inference")[0])
    assert np.abs(ema - expected.astype(int)).max() <= 1
    # a run without an EMA file: a clear error
    with pytest.raises(CheckpointError, match="7_net_G_ema.pth: EMA generator not found"):
        test_script.main(common + ["--use_ema", "--which_epoch", "7"])


def test_test_script_synthesises_from_label_maps_and_codes_alone(trained):
    """No --image_dir: the page shows the label map and the synthesised image, the same as with photos."""
    import numpy as np
    from PIL import Image

    tmp_path, dirs, _, _ = trained
    images, labels, codes = dirs
    test_script = load_test_script()
    common = ["--name", "smoke", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
              "--label_dir", labels, "--instance_dir", codes, "--which_epoch", "2"]
    page = test_script.main(common + ["--results_dir", str(tmp_path / "res_labels")])
    out = tmp_path / "res_labels" / "smoke" / "test_2"
    assert sorted(os.listdir(out / "images")) == ["input_label", "synthesized_image"]
    assert sorted(os.listdir(out / "images" / "synthesized_image")) == [f"img{i}.png" for i in range(4)]
    html = open(page).read()
    assert "images/input_label/img3.png" in html and "images/synthesized_image/img3.png" in html
    assert "real_image" not in html
    with_photos = test_script.main(common + ["--image_dir", images, "--results_dir", str(tmp_path / "res_photos")])
    for i in range(4):
        a = np.asarray(Image.open(out / "images" / "synthesized_image" / f"img{i}.png"))
        b = np.asarray(Image.open(os.path.join(os.path.dirname(with_photos), "images", "synthesized_image",
                                               f"img{i}.png")))
        assert np.array_equal(a, b)
