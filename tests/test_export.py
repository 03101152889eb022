"""scripts/export_generator.py: the half-precision export, its size, its error bound, and its use in test.py
and the editor (through models.inference.load_inference_model)."""
import contextlib
import copy
import hashlib
import importlib.util
import io
import json
import os

import numpy as np
import pytest
import torch

from editing.style_mixing import normalise_codes
from models.export import EXPORT_FORMAT
from models.inference import load_inference_model
from models.networks import SuperStyleNetGenerator
from options import build_options
from tests._pages import read_page
from tests.conftest import ROOT
from util.errors import CheckpointError, OptionError

U16 = 2.0 ** -11  # unit roundoff of float16 (11-bit significand): relative error of round-to-nearest
SUBNORMAL_ERROR = 2.0 ** -25  # half the spacing 2^-24 of float16's subnormals (|x| < 2^-14)


def _load(script, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exporter = _load("scripts/export_generator.py", "export_generator")


@pytest.fixture(scope="module")
def exported(tiny_trained, tmp_path_factory):
    """The tiny trained generator (ngf 4, crop 32) exported into a folder of its own (--out_dir); the source stays."""
    out_dir = tmp_path_factory.mktemp("export") / "tiny_fp16"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        path = exporter.main(["--name", tiny_trained.name, "--checkpoints_dir", tiny_trained.ckpt, "--gpu_ids", "-1",
                              "--out_dir", str(out_dir)])
    return out_dir, path, printed.getvalue()


def _opt(folder, *extra):
    return build_options(False, ["--name", os.path.basename(folder), "--checkpoints_dir",
                                 os.path.dirname(folder), "--gpu_ids", "-1", *extra])


def test_export_file_holds_float16_parameters_and_its_records(tiny_trained, exported):
    out_dir, path, printed = exported
    source = os.path.join(tiny_trained.ckpt, "tiny", "latest_net_G.pth")
    assert path == str(out_dir / "latest_net_G.pth")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == EXPORT_FORMAT and payload["version"] == 1
    assert payload["source"] == {"file": os.path.abspath(source), "which_epoch": "latest", "use_ema": False,
                                 "format": "native", "sha256": hashlib.sha256(open(source, "rb").read()).hexdigest()}
    assert {k: payload["architecture"][k] for k in ("label_nc", "ngf", "crop_size")} == {
        "label_nc": 3, "ngf": 4, "crop_size": 32}
    netG = tiny_trained.model.netG
    params = dict(netG.named_parameters())
    state = payload["state_dict"]
    assert state.keys() == netG.state_dict().keys()
    for k, v in netG.state_dict().items():
        if k in params:  # parameters: exactly the float16 rounding of the float32 values
            assert state[k].dtype == torch.float16 and torch.equal(state[k], v.half()), k
        else:  # buffers (BatchNorm statistics, spectral-norm vectors, GSAS bias): unchanged
            assert state[k].dtype == v.dtype and torch.equal(state[k], v), k
    # size: 2 bytes per parameter plus the buffers, about half the float32 file
    n_params = sum(p.numel() for p in params.values())
    buffers = sum(b.numel() * b.element_size() for b in netG.buffers())
    size = os.path.getsize(path)
    assert 2 * n_params + buffers <= size <= (2 * n_params + buffers) * 1.02 + 400_000
    assert 0.49 < size / os.path.getsize(source) < 0.51
    assert f"{n_params:,} parameters in float16" in printed
    saved = json.load(open(out_dir / "opt.json"))
    assert (saved["name"], saved["label_nc"], saved["ngf"], saved["crop_size"]) == ("tiny_fp16", 3, 4, 32)


def test_release_configuration_sizes_follow_from_the_parameter_count():
    """label_nc 19, ngf 64, crop 256: 265,338,815 parameters -> 1.06 GB in float32, 531 MB in float16."""
    opt = build_options(False, gpu_ids="-1", label_nc=19, ngf=64, crop_size=256)
    with torch.device("meta"):
        netG = SuperStyleNetGenerator.from_options(opt)
    n_params = sum(p.numel() for p in netG.parameters())
    buffers = sum(b.numel() * b.element_size() for b in netG.buffers())
    assert n_params == 265_338_815
    assert buffers == 456_396  # BatchNorm statistics, spectral-norm vectors, GSAS biases: kept as they are
    assert round((4 * n_params + buffers) / 1e9, 2) == 1.06
    assert round((2 * n_params + buffers) / 1e6) == 531


def test_loaded_export_is_the_float32_model_with_rounded_weights(tiny_trained, exported):
    """load_inference_model converts the export to float32: the model equals the float32 one with every
    parameter rounded to float16, and computes the same images bit for bit (same arithmetic, same noise)."""
    out_dir, _, _ = exported
    model = load_inference_model(_opt(str(out_dir)), log=lambda _: None)
    assert model.checkpoint_info["format"] == "fp16-export" and model.checkpoint_info["source"]["use_ema"] is False
    rounded = copy.deepcopy(tiny_trained.model)
    with torch.no_grad():
        for p in rounded.netG.parameters():
            p.copy_(p.half().float())
    for (k, a), b in zip(model.netG.state_dict().items(), rounded.netG.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), k
    segmap, codes = _inputs(tiny_trained, 0, torch.float32)
    with torch.no_grad():
        torch.manual_seed(5)
        got = model.netG(segmap, codes)
        torch.manual_seed(5)
        expected = rounded.netG(segmap, codes)
    assert torch.equal(got, expected)


def _inputs(tiny, i, dtype):
    s = tiny.samples[i]
    label = torch.from_numpy(s.label.astype(np.int64))[None, None]
    segmap = torch.zeros(1, 3, 32, 32, dtype=dtype).scatter_(1, label, 1.0)
    return segmap, normalise_codes(s.codes, 3)[None].to(dtype)


def test_export_error_is_within_the_float16_rounding_bound(tiny_trained):
    """The output change from rounding the weights to float16, against a bound derived from that rounding.

    Rounding: a parameter w becomes fl16(w) with |fl16(w) - w| <= e(w) = max(u |w|, 2^-25), u = 2^-11
    (round to nearest; below 2^-14 float16 is subnormal with spacing 2^-24). Checked on every parameter.
    Propagation: for any fixed output weights s, f = sum_i s_i y_i satisfies, to first order in the
    perturbation, |f(fl16(w)) - f(w)| <= sum_k |df/dw_k| e(w_k) =: B(s). The remainder is second order,
    smaller than B by a factor of the order of the relative perturbation (u times the depth); we allow a
    factor 2. Choosing s = sign(dy) bounds the L1 norm of the output change, s = the one-hot of its largest
    element bounds the max-abs change (the first-order inequality holds for every s at once).
    Computed in float64 on the CPU, so that only the weight rounding differs between the two forward
    passes (the float32 path adds nothing else: previous test). Relative to the output scale, the bound
    must show that the export keeps the output to about 1 % (the bound here is ~1e-2 of max |y|).
    """
    net = copy.deepcopy(tiny_trained.model.netG).double().eval()
    rounded = copy.deepcopy(net)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.float().half().double())  # the float32 weights' float16 rounding, as the export stores it
    params = list(net.parameters())
    errors = [torch.clamp(p.detach().abs() * U16, min=SUBNORMAL_ERROR) for p in params]
    for p, q, e in zip(params, rounded.parameters(), errors):
        assert bool(((q - p).abs() <= e).all())
    segmap, codes = _inputs(tiny_trained, 1, torch.float64)

    def forward(model):
        torch.manual_seed(0)  # the same noise in both passes
        return model(segmap, codes)

    y = forward(net).detach()
    with torch.no_grad():
        dy = forward(rounded) - y
    assert dy.abs().max() > 0  # the rounding does change the output

    def bound(s):
        grads = torch.autograd.grad((forward(net) * s).sum(), params)
        return float(sum((g.abs() * e).sum() for g, e in zip(grads, errors)))

    l1_bound = bound(torch.sign(dy))
    worst = torch.zeros_like(dy).view(-1)
    worst[dy.abs().view(-1).argmax()] = 1.0
    max_bound = bound(worst.view_as(dy))
    print(f"max |y| {y.abs().max():.3g}; max |dy| {dy.abs().max():.3g} <= {2 * max_bound:.3g}; "
          f"|dy|_1 {dy.abs().sum():.3g} <= {2 * l1_bound:.3g}")
    assert float(dy.abs().sum()) <= 2 * l1_bound
    assert float(dy.abs().max()) <= 2 * max_bound
    assert 2 * max_bound < 0.05 * float(y.abs().max())


def test_test_py_and_the_editor_load_the_export(tiny_trained, exported, tmp_path):
    out_dir, _, _ = exported
    test_script = _load("test.py", "ssn_test_script_export")
    common = ["--gpu_ids", "-1", "--label_dir", os.path.join(tiny_trained.ds, "labels"),
              "--image_dir", os.path.join(tiny_trained.ds, "images"),
              "--instance_dir", os.path.join(tiny_trained.ds, "codes"), "--how_many", "2",
              "--results_dir", str(tmp_path)]
    page = read_page(test_script.main(["--name", "tiny_fp16", "--checkpoints_dir", str(out_dir.parent), *common]))
    assert page.facts["checkpoint"].endswith("(half-precision export (scripts/export_generator.py))")
    assert page.facts["exported from"].endswith("latest_net_G.pth (raw)")
    assert len(page.rows) == 2
    edit_app = _load("edit_app.py", "edit_app_export")
    server = edit_app.build(["--name", "tiny_fp16", "--checkpoints_dir", str(out_dir.parent),
                             "--data", str(tiny_trained.ds), "--gpu_ids", "-1", "--port", "0"])
    try:
        assert server.engine.model.checkpoint_info["format"] == "fp16-export"
        assert server.engine.render(0, server.engine.sample_codes(0)).shape == (32, 32, 3)
    finally:
        server.server_close()


def test_export_errors(tiny_trained, exported, tmp_path):
    out_dir, path, _ = exported
    base = ["--checkpoints_dir", tiny_trained.ckpt, "--gpu_ids", "-1"]
    with pytest.raises(OptionError, match="--out_dir .*is the source folder"):
        exporter.main(["--name", "tiny", *base, "--out_dir", os.path.join(tiny_trained.ckpt, "tiny")])
    with pytest.raises(CheckpointError, match="latest_net_G_ema.pth: EMA generator not found"):
        exporter.main(["--name", "tiny", *base, "--use_ema", "--out_dir", str(tmp_path / "x")])
    with pytest.raises(CheckpointError, match="already a half-precision export"):
        exporter.main(["--name", "tiny_fp16", "--checkpoints_dir", str(out_dir.parent), "--gpu_ids", "-1",
                       "--out_dir", str(tmp_path / "y")])
    # weights beyond float16's range cannot be exported
    big = tmp_path / "ck" / "big"
    big.mkdir(parents=True)
    state = tiny_trained.model.netG.state_dict()
    state["conv_img.bias"] = torch.full_like(state["conv_img.bias"], 1e5)
    torch.save(state, big / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match=r"cannot export to float16: 1 tensors .*conv_img\.bias"):
        exporter.main(["--name", "big", "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                       "--label_nc", "3", "--ngf", "4", "--crop_size", "32"])
    # loading an export into another architecture names what the export records
    with pytest.raises(CheckpointError, match="does not match.*the export records label_nc 3.*ngf 4"):
        load_inference_model(_opt(str(out_dir), "--ngf", "8"), log=lambda _: None)
