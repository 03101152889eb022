"""Generator and full-model tests: shapes, layout options, losses wiring, errors."""
import pytest
import torch

from models.networks import MultiscaleDiscriminator, SuperStyleNetGenerator, VGG19Features, vgg19_conv_stack
from options import build_options
from models.superstylenet_model import SuperStyleNetModel
from util.errors import InputError, OptionError


def one_hot(label, n):
    return torch.nn.functional.one_hot(label, n).permute(0, 3, 1, 2).float()


def make_batch(b, label_nc, h, w, seed=0, dontcare=False):
    g = torch.Generator().manual_seed(seed)
    j = label_nc + (1 if dontcare else 0)
    return {
        "label": torch.randint(0, j, (b, 1, h, w), generator=g),
        "image": torch.rand(b, 3, h, w, generator=g) * 2 - 1,
        "codes": torch.randn(b, j, 512, generator=g),
        "path": [f"img{i}.png" for i in range(b)],
    }


def test_model_modes_and_loss_names():
    torch.manual_seed(0)
    opt = build_options(gpu_ids="-1", label_nc=3, ngf=4, crop_size=32, ndf=16)
    model = SuperStyleNetModel(opt, vgg=VGG19Features(vgg19_conv_stack()))
    data = make_batch(2, 3, 32, 32)
    losses, fake = model(data, "generator")
    assert set(losses) == {"GAN", "GAN_Feat", "VGG"}
    assert fake.shape == (2, 3, 32, 32) and fake.abs().max() <= 1
    assert model.loss_weights == {"GAN": 1.0, "GAN_Feat": 10.0, "VGG": 10.0, "D_Fake": 1.0, "D_real": 1.0}
    model.weighted_sum(losses).backward()
    assert model.netG.fc.weight.grad is not None and model.netG.fc.weight.grad.abs().sum() > 0
    # the G step computes no weight gradients for D (it never uses them); D stays trainable
    assert all(p.grad is None and p.requires_grad for p in model.netD.parameters())
    model.zero_grad(set_to_none=True)
    d_losses = model(data, "discriminator")
    assert set(d_losses) == {"D_Fake", "D_real"}
    sum(d_losses.values()).backward()
    assert model.netG.fc.weight.grad is None  # D step never reaches G
    out = model(data, "inference")
    assert out.shape == (2, 3, 32, 32) and not out.requires_grad


@pytest.mark.parametrize("mode,crop,aspect,expected", [
    ("normal", 64, 1.0, (2, 2, 64, 64)),
    ("more", 128, 2.0, (1, 2, 64, 128)),
    ("most", 128, 1.0, (1, 1, 128, 128)),
])
def test_generator_layout_options(mode, crop, aspect, expected):
    torch.manual_seed(0)
    opt = build_options(gpu_ids="-1", is_train=False, label_nc=2, ngf=2, crop_size=crop, aspect_ratio=aspect,
                      num_upsampling_layers=mode)
    g = SuperStyleNetGenerator.from_options(opt)
    sh, sw = expected[:2]
    assert (g.sh, g.sw) == (sh, sw)
    assert hasattr(g, "up_4") == (mode == "most")
    h = sh * crop // sw
    seg = one_hot(torch.randint(0, 2, (2, h, crop)), 2)
    out = g(seg, torch.randn(2, 2, 512))
    assert out.shape == (2, 3) + expected[2:]


def test_generator_structure_names_and_no_style_in_last_block():
    opt = build_options(gpu_ids="-1", is_train=False, label_nc=5, ngf=4, crop_size=32)
    with torch.device("meta"):
        g = SuperStyleNetGenerator.from_options(opt)
    assert g.fc.weight.shape == (64, 5, 3, 3)
    assert [n for n, _ in g.named_children()] == [
        "fc", "head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3", "conv_img"]
    assert g.head_0.ace_0.fc_mu.weight.shape == (5, 512, 512)
    assert g.up_2.ace_0.conv_gamma.weight.shape == (16, 512, 3, 3)
    assert not any("fc_mu" in n or "Gsas" in n for n, _ in g.up_3.named_parameters())
    assert not g.head_0.learned_shortcut and g.up_0.learned_shortcut
    assert g.up_0.conv_0.weight_orig.shape == (32, 64, 3, 3)
    assert g.conv_img.weight.shape == (3, 4, 3, 3)


def test_initialisation():
    torch.manual_seed(0)
    opt = build_options(gpu_ids="-1", is_train=False, label_nc=3, ngf=2, crop_size=32)
    g = SuperStyleNetGenerator.from_options(opt)
    lin = g.head_0.ace_0.fc_mu
    std = 0.02 * (2.0 / (512 + 512)) ** 0.5
    for j in range(3):  # each class slice like its own xavier-initialised Linear
        assert abs(lin.weight[j].std().item() / std - 1) < 0.02
    assert torch.all(lin.bias == 0)
    conv = g.head_0.ace_0.conv_gamma  # (32, 512, 3, 3): fans 512*9, 32*9
    assert abs(conv.weight.std().item() / (0.02 * (2.0 / (512 * 9 + 32 * 9)) ** 0.5) - 1) < 0.03
    sn = g.head_0.conv_0.weight_orig  # spectral-norm convs initialise weight_orig
    assert abs(sn.std().item() / (0.02 * (2.0 / (32 * 9 * 2)) ** 0.5) - 1) < 0.05
    for name, p in g.named_parameters():
        if name.endswith("bias") or "noise_var" in name or "blending" in name:
            assert torch.all(p == 0), name


def test_dontcare_channel_and_label_errors():
    torch.manual_seed(0)
    opt = build_options(gpu_ids="-1", label_nc=2, ngf=2, crop_size=32, contain_dontcare_label=True, no_vgg_loss=True)
    model = SuperStyleNetModel(opt)
    assert model.netG.label_nc == 3
    data = make_batch(2, 2, 32, 32, dontcare=True)
    data["label"][0, 0, 0, 0] = 2  # the don't-care channel, already mapped to label_nc
    assert model(data, "inference").shape == (2, 3, 32, 32)

    plain = SuperStyleNetModel(build_options(gpu_ids="-1", label_nc=2, ngf=2, crop_size=32, no_vgg_loss=True))
    bad = make_batch(2, 2, 32, 32)
    bad["label"][1, 0, 3, 3] = 2
    with pytest.raises(InputError, match=r"img0\.png.*\[0, 2\].*--contain_dontcare_label"):
        plain(bad, "inference")
    bad = make_batch(2, 2, 32, 32)
    bad["codes"] = bad["codes"][:, :1]
    with pytest.raises(InputError, match="codes"):
        plain(bad, "generator")
    with pytest.raises(OptionError, match="mode"):
        plain(make_batch(2, 2, 32, 32), "train")
    with pytest.raises(InputError, match="segmap"):
        plain.netG(torch.zeros(1, 5, 32, 32), torch.zeros(1, 5, 512))


def test_option_errors():
    with pytest.raises(OptionError, match="crop_size 48"):
        SuperStyleNetGenerator.from_options(build_options(gpu_ids="-1", is_train=False, label_nc=2, ngf=2, crop_size=48))
    with pytest.raises(OptionError, match="norm_G"):
        SuperStyleNetGenerator.from_options(build_options(gpu_ids="-1", is_train=False, label_nc=2, ngf=2, crop_size=32, norm_G="spectralinstance"))


def test_options_are_registered_with_spade_defaults():
    import argparse

    parser = SuperStyleNetModel.modify_commandline_options(argparse.ArgumentParser(), True)
    opt = parser.parse_args([])
    assert (opt.ngf, opt.num_upsampling_layers, opt.norm_G, opt.init_type, opt.init_variance) == (
        64, "normal", "spectralspadesyncbatch3x3", "xavier", 0.02)
    assert (opt.ndf, opt.num_D, opt.n_layers_D, opt.norm_D, opt.gan_mode) == (
        64, 2, 3, "spectralinstance", "hinge")
    assert (opt.lambda_feat, opt.lambda_vgg, opt.no_ganFeat_loss, opt.no_vgg_loss, opt.vgg_path) == (
        10.0, 10.0, False, False, None)
    test_parser = SuperStyleNetModel.modify_commandline_options(argparse.ArgumentParser(), False)
    assert not any("--ndf" in a.option_strings for a in test_parser._actions)


def test_eval_mode_is_deterministic_with_zero_noise_and_batch_independent():
    # float64: batched and single-sample convolutions sum in different orders; in float64 that
    # rounding is ~1e-15 relative, so a 1e-10 bound holds on any CPU and any kernel choice.
    torch.manual_seed(0)
    opt = build_options(gpu_ids="-1", is_train=False, label_nc=3, ngf=2, crop_size=32)
    g = SuperStyleNetGenerator.from_options(opt).double().eval()
    data = make_batch(2, 3, 32, 32)
    seg = one_hot(data["label"][:, 0], 3).double()
    codes = data["codes"].double()
    with torch.no_grad():
        both = g(seg, codes)
        first = g(seg[:1], codes[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-10, atol=1e-10)


def test_model_follows_its_parameters_dtype():
    # the dataset's float32 batch is cast to the parameters' dtype: a float64 model runs in float64
    torch.manual_seed(0)
    model = SuperStyleNetModel(build_options(gpu_ids="-1", label_nc=3, ngf=2, crop_size=32, ndf=8, no_vgg_loss=True)).double()
    data = make_batch(2, 3, 32, 32)
    assert data["codes"].dtype == data["image"].dtype == torch.float32
    losses, fake = model(data, "generator")
    assert fake.dtype == torch.float64 and all(v.dtype == torch.float64 for v in losses.values())
    assert all(v.dtype == torch.float64 for v in model(data, "discriminator").values())
    model.eval()
    out64 = model(data, "inference")
    assert out64.dtype == torch.float64
    assert model.float()(data, "inference").dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_runs_on_cuda_and_moves_the_batch():
    torch.manual_seed(0)
    model = SuperStyleNetModel(build_options(gpu_ids="-1", label_nc=3, ngf=2, crop_size=32), vgg=VGG19Features(vgg19_conv_stack()))
    model.to("cuda")
    losses, fake = model(make_batch(2, 3, 32, 32), "generator")
    assert fake.is_cuda and all(v.is_cuda for v in losses.values())
    model.weighted_sum(losses).backward()
    assert all(v.is_cuda for v in model(make_batch(2, 3, 32, 32), "discriminator").values())


def test_networks_built_from_arguments_equal_those_built_from_options():
    """The explicit constructors and from_options(opt) give the same networks (same seed, same weights)."""
    opt = build_options(True, gpu_ids="-1", label_nc=2, contain_dontcare_label=True, ngf=4, ndf=8, crop_size=64,
                        aspect_ratio=0.5, num_upsampling_layers="more", norm_G="spectralspadebatch3x3", num_D=1,
                        n_layers_D=2, norm_D="spectralbatch", init_type="normal", init_variance=0.05)
    pairs = []
    for build in (lambda: (SuperStyleNetGenerator.from_options(opt), MultiscaleDiscriminator.from_options(opt)),
                  lambda: (SuperStyleNetGenerator(3, crop_size=64, ngf=4, num_upsampling_layers="more",
                                                  aspect_ratio=0.5, norm_G="spectralspadebatch3x3",
                                                  init_type="normal", init_variance=0.05),
                           MultiscaleDiscriminator(3, ndf=8, num_D=1, n_layers_D=2, norm_D="spectralbatch",
                                                   init_type="normal", init_variance=0.05))):
        torch.manual_seed(7)
        pairs.append(build())
    for a, b in zip(*pairs):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and len(sa) > 0
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert (pairs[1][0].sh, pairs[1][0].sw) == (2, 1)  # 64 / 2**6 = 1 column, round(1 / 0.5) = 2 rows
