"""Generator and full-model tests: shapes, layout options, losses wiring, errors."""
import pytest
import torch

from models.networks import SuperStyleNetGenerator, default_opt, load_vgg19
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
    opt = default_opt(label_nc=3, ngf=4, crop_size=64)
    model = SuperStyleNetModel(opt, vgg=load_vgg19(random_init=True))
    data = make_batch(2, 3, 64, 64)
    losses, fake = model(data, "generator")
    assert set(losses) == {"GAN", "GAN_Feat", "VGG"}
    assert fake.shape == (2, 3, 64, 64) and fake.abs().max() <= 1
    assert model.loss_weights == {"GAN": 1.0, "GAN_Feat": 10.0, "VGG": 10.0, "D_Fake": 1.0, "D_real": 1.0}
    model.weighted_sum(losses).backward()
    assert model.netG.fc.weight.grad is not None and model.netG.fc.weight.grad.abs().sum() > 0
    assert model.netD.discriminator_0.model0[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    d_losses = model(data, "discriminator")
    assert set(d_losses) == {"D_Fake", "D_real"}
    sum(d_losses.values()).backward()
    assert model.netG.fc.weight.grad is None  # D step never reaches G
    out = model(data, "inference")
    assert out.shape == (2, 3, 64, 64) and not out.requires_grad
