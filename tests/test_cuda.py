"""CUDA paths, run where a GPU is present (skipped otherwise; ``scripts/gpu_check.sh`` runs them).

* uint8 photo batches normalised on the GPU equal the host's float32 values
  bit for bit (the table lookup of ``util.images.normalise_image``; a GPU's
  own division by 255 may multiply by the reciprocal instead);
* a training step on one GPU (bfloat16 autocast, channels-last, the uint8
  batch from pinned host memory) makes no host-device synchronisation:
  ``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call
  into an error.
"""
import numpy as np
import pytest
import torch

from models import create_model
from models.networks import VGG19Features, vgg19_conv_stack
from options import build_options
from util.images import normalise_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_uint8_levels_normalise_on_the_gpu_to_the_host_float32_values():
    levels = np.arange(256, dtype=np.uint8)
    host = torch.from_numpy(levels.astype(np.float32) / 255.0) * 2.0 - 1.0
    batch = torch.from_numpy(levels).view(1, 1, 16, 16).expand(4, 3, 16, 16).contiguous()
    got = normalise_image(batch.cuda()).cpu()
    assert torch.equal(got, host.view(1, 1, 16, 16).expand(4, 3, 16, 16))


def test_training_step_on_one_gpu_makes_no_host_sync():
    from trainers.superstylenet_trainer import SuperStyleNetTrainer

    torch.manual_seed(0)
    opt = build_options(True, label_nc=3, ngf=8, ndf=8, num_D=2, crop_size=64, gpu_ids="0", amp=True,
                        channels_last=True, lr=1e-4, niter=1, niter_decay=0)
    trainer = SuperStyleNetTrainer(opt, model=create_model(opt, vgg=VGG19Features(vgg19_conv_stack())))
    g = torch.Generator().manual_seed(1)
    data = {"label": torch.randint(0, 3, (2, 1, 64, 64), generator=g).pin_memory(),
            "image": torch.randint(0, 256, (2, 3, 64, 64), generator=g, dtype=torch.uint8).pin_memory(),
            "codes": torch.randn(2, 3, 512, generator=g).pin_memory(), "path": ["a.png", "b.png"]}
    trainer.train_step(data)  # first step: cuDNN autotuning, lazy initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            trainer.train_step(data)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    losses = trainer.latest_losses()
    assert set(losses) == {"GAN", "GAN_Feat", "VGG", "D_Fake", "D_real"}
    assert all(np.isfinite(v) for v in losses.values())
