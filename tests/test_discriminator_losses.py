"""Discriminator structure and the GAN / feature-matching / VGG losses against hand-written formulas."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from models.networks import (GANLoss, MultiscaleDiscriminator, VGG19Features, VGGLoss, feature_matching_loss,
                             load_vgg19, vgg19_conv_stack)
from options import build_options
from models.networks.loss import VGG19_FILENAME
from models.superstylenet_model import SuperStyleNetModel
from util.errors import CheckpointError, OptionError


def small_opt(**kw):
    base = dict(is_train=True, label_nc=3, ngf=2, crop_size=32, ndf=8)
    base.update(kw)
    return build_options(gpu_ids="-1", **base)


def conv_out(n, k=4, s=2, p=2):
    return (n + 2 * p - k) // s + 1


def test_multiscale_structure_shapes_and_pooling():
    torch.manual_seed(0)
    opt = small_opt(num_D=3, n_layers_D=3, ndf=8)
    net = MultiscaleDiscriminator.from_options(opt).eval()  # eval: no spectral-norm power iteration between calls
    x = torch.randn(2, 3 + 3, 64, 64)
    out = net(x)
    assert len(out) == 3 and all(len(scale) == 4 for scale in out)
    size = 64
    for i, scale in enumerate(out):
        n = size
        channels = [8, 16, 32, 1]
        for layer, feat in enumerate(scale):
            n = conv_out(n, s=1 if layer == 3 else 2)  # docs/method.md §7: every middle conv has stride 2
            assert feat.shape == (2, channels[layer], n, n), (i, layer)
        size = conv_out(size, k=3, s=2, p=1)
    # second scale sees avg_pool(3, 2, 1, count_include_pad=False) of the input
    pooled = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    torch.testing.assert_close(out[1][-1], net.discriminator_1(pooled)[-1])
    # the first layer has no norm; middle layers: spectral conv without bias + instance norm
    d0 = net.discriminator_0
    assert isinstance(d0.model0[0], nn.Conv2d) and d0.model0[0].bias is not None
    assert d0.model1[0][0].bias is None and hasattr(d0.model1[0][0], "weight_orig")
    assert isinstance(d0.model1[0][1], nn.InstanceNorm2d) and not d0.model1[0][1].affine
    assert d0.model3[0].stride == (1, 1) and d0.model2[0][0].stride == (2, 2)


def test_channel_cap_and_input_channels_with_dontcare():
    opt = small_opt(ndf=256, n_layers_D=3, contain_dontcare_label=True)
    opt.semantic_nc = 4
    with torch.device("meta"):
        net = MultiscaleDiscriminator.from_options(opt)
    assert net.discriminator_0.model0[0].in_channels == 3 + 1 + 3
    assert net.discriminator_0.model2[0][0].out_channels == 512  # 256 -> 512 -> capped


def test_bad_discriminator_options():
    with pytest.raises(OptionError, match="norm_D"):
        MultiscaleDiscriminator.from_options(small_opt(norm_D="spectralgroup"))
    with pytest.raises(OptionError, match="netD"):
        MultiscaleDiscriminator.from_options(small_opt(netD="patch"))


def fake_pred(seed, scales=2):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(2, 4, 5, 5, generator=g), torch.randn(2, 1, 3, 3, generator=g) * 2] for _ in range(scales)]


def test_gan_losses_match_formulas():
    pred = fake_pred(0)
    logits = [p[-1] for p in pred]
    avg = lambda f: sum(f(x) for x in logits) / len(logits)  # noqa: E731
    hinge = GANLoss("hinge")
    torch.testing.assert_close(hinge(pred, True, True), avg(lambda x: torch.clamp(1 - x, min=0).mean()))
    torch.testing.assert_close(hinge(pred, False, True), avg(lambda x: torch.clamp(1 + x, min=0).mean()))
    torch.testing.assert_close(hinge(pred, True, False), avg(lambda x: -x.mean()))
    with pytest.raises(ValueError):
        hinge(pred, False, False)
    ls = GANLoss("ls")
    torch.testing.assert_close(ls(pred, True), avg(lambda x: ((x - 1) ** 2).mean()))
    torch.testing.assert_close(ls(pred, False), avg(lambda x: (x ** 2).mean()))
    orig = GANLoss("original")
    sig = torch.sigmoid
    torch.testing.assert_close(orig(pred, True), avg(lambda x: -torch.log(sig(x)).mean()))
    torch.testing.assert_close(orig(pred, False), avg(lambda x: -torch.log(1 - sig(x)).mean()))
    w = GANLoss("w")
    torch.testing.assert_close(w(pred, True), avg(lambda x: -x.mean()))
    torch.testing.assert_close(w(pred, False), avg(lambda x: x.mean()))
    with pytest.raises(OptionError):
        GANLoss("softplus")


def test_feature_matching_matches_formula_and_detaches_real():
    fake = [[t.requires_grad_() for t in scale] for scale in fake_pred(1)]
    real = [[t.requires_grad_() for t in scale] for scale in fake_pred(2)]
    loss = feature_matching_loss(fake, real)
    expected = sum((f[0] - r[0]).abs().mean() for f, r in zip(fake, real)) / 2  # last output excluded
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(t.grad is None for scale in real for t in scale)
    assert fake[0][-1].grad is None and fake[0][0].grad is not None


def test_vgg_loss_matches_layerwise_formula():
    torch.manual_seed(0)
    vgg = VGG19Features(vgg19_conv_stack())
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    x.requires_grad_()
    features = nn.Sequential(*[m for s in vgg.slices for m in s])

    def taps(img):
        outs, h = [], img
        for i, layer in enumerate(features):
            h = layer(h)
            if i in (1, 6, 11, 20, 29):  # relu1_1 … relu5_1
                outs.append(h)
        return outs

    expected = sum(wt * (a - b).abs().mean() for wt, a, b in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), taps(x), taps(y)))
    loss = VGGLoss(vgg)(x, y)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert x.grad is not None


def test_vgg_weights_missing_corrupt_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as err:
        load_vgg19()
    msg = str(err.value)
    assert VGG19_FILENAME in msg and str(tmp_path / "hub") in msg
    assert "--no_vgg_loss" in msg and "IMAGENET1K_V1" in msg and "--vgg_path" in msg
    with pytest.raises(CheckpointError, match="--no_vgg_loss"):
        SuperStyleNetModel(small_opt())  # the model stops too; no silent random weights

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_vgg19(str(bad))

    torch.manual_seed(3)
    src = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])  # torchvision's VGG19 features
    state = {f"features.{k}": v for k, v in src.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # classifier tensors are accepted and unused
    good = tmp_path / VGG19_FILENAME
    torch.save(state, str(good))
    vgg = load_vgg19(str(good))
    torch.testing.assert_close(vgg.slices[4][-2].weight, src[28].weight)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / VGG19_FILENAME).write_bytes(good.read_bytes())
    torch.testing.assert_close(load_vgg19().slices[0][0].weight, src[0].weight)
    del state["features.0.weight"]
    torch.save(state, str(bad))
    with pytest.raises(CheckpointError, match="not a torchvision VGG19"):
        load_vgg19(str(bad))


def test_loss_switches_change_the_loss_dict():
    torch.manual_seed(0)
    model = SuperStyleNetModel(small_opt(no_vgg_loss=True, no_ganFeat_loss=True, gan_mode="ls", lambda_feat=3.0))
    assert model.loss_weights == {"GAN": 1.0, "D_Fake": 1.0, "D_real": 1.0}
    assert not hasattr(model, "criterionVGG")
    data = {
        "label": torch.randint(0, 3, (2, 1, 32, 32)), "image": torch.rand(2, 3, 32, 32) * 2 - 1,
        "codes": torch.randn(2, 3, 512), "path": ["a.png", "b.png"],
    }
    losses, _ = model(data, "generator")
    assert set(losses) == {"GAN"}
    model2 = SuperStyleNetModel(small_opt(no_vgg_loss=True, lambda_feat=3.0))
    assert model2.loss_weights["GAN_Feat"] == 3.0
