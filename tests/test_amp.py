"""--amp: the autocast dtype per device, and both mixed-precision code paths run on the CPU.

On CUDA ``--amp`` picks bfloat16 where the GPU supports it and float16 with a
GradScaler otherwise; on the CPU it stays float32 unless ``--amp_dtype`` names
a dtype, which lets these tests run the bfloat16 path (no scaler) and the
float16 path (GradScaler) here.
"""
import types

import pytest
import torch

from models import create_model
from models.networks.ace import ACE
from options import build_options
from trainers.superstylenet_trainer import SuperStyleNetTrainer, amp_dtype
from util.errors import OptionError


def test_amp_dtype_per_device(monkeypatch):
    cuda, cpu = torch.device("cuda:0"), torch.device("cpu")

    def opt(device, amp=True, dtype="auto"):
        return types.SimpleNamespace(device=device, amp=amp, amp_dtype=dtype)

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(opt(cuda)) is torch.bfloat16
    assert amp_dtype(opt(cuda, dtype="float16")) is torch.float16
    assert amp_dtype(opt(cuda, amp=False)) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype(opt(cuda)) is torch.float16  # e.g. V100, T4
    with pytest.raises(OptionError, match="Test GPU does not support bfloat16"):
        amp_dtype(opt(cuda, dtype="bfloat16"))
    assert amp_dtype(opt(cpu)) is None
    assert amp_dtype(opt(cpu, dtype="bfloat16")) is torch.bfloat16


def _trainer(dtype):
    opt = build_options(True, label_nc=2, ngf=4, crop_size=32, ndf=8, no_vgg_loss=True, gpu_ids="-1", lr=1e-3,
                        niter=1, niter_decay=0, amp=dtype != "float32",
                        amp_dtype=dtype if dtype != "float32" else "auto")
    torch.manual_seed(0)
    return SuperStyleNetTrainer(opt, model=create_model(opt))


def _batch():
    g = torch.Generator().manual_seed(1)
    return {"label": torch.randint(0, 2, (2, 1, 32, 32), generator=g),
            "image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
            "codes": torch.randn(2, 2, 512, generator=g), "path": ["a.png", "b.png"]}


@pytest.mark.parametrize("dtype, scaled", [("bfloat16", False), ("float16", True)])
def test_mixed_precision_training_step_on_cpu(dtype, scaled):
    ref = _trainer("float32")
    trainer = _trainer(dtype)
    assert trainer.amp_dtype is getattr(torch, dtype) and trainer.scaler.is_enabled() == scaled
    # every ACE computes in the autocast dtype: no elementwise op falls back to float32
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in trainer.model.modules()
             if isinstance(m, ACE)]
    before = {k: v.clone() for k, v in trainer.model.netG.state_dict().items()}
    data = _batch()
    torch.manual_seed(3)
    ref.train_step(data)
    torch.manual_seed(3)
    trainer.train_step(data)
    for h in hooks:
        h.remove()
    assert seen and set(seen) == {getattr(torch, dtype)}
    # the same losses up to the precision of the 8 (bfloat16) or 11 (float16) significant bits: a
    # relative rounding of 2**-9 / 2**-12 per operation, growing like the square root of the ~100
    # operations in depth, i.e. about 2 % / 0.25 % (measured: 0.03 % / 0.003 %)
    bound = 0.02 if dtype == "bfloat16" else 0.0025
    got, want = trainer.latest_losses(), ref.latest_losses()
    for k, v in want.items():
        assert abs(got[k] - v) <= bound * max(abs(v), 0.1), (k, got[k], v)
    after = trainer.model.netG.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(after[k], v) for k, v in before.items())  # the update happened
    if scaled:
        assert trainer.scaler.get_scale() > 0


def test_channels_last_run_gives_the_same_losses_and_plain_checkpoints(tmp_path):
    """--channels_last changes the memory layout only: same first-step losses, contiguous checkpoint tensors."""
    import train
    from tests._synthetic import build_synthetic_dataset

    # 4 images, batch 2: the one step stops inside the epoch, so no epoch snapshot is written (disk)
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=4, size=32, label_nc=2)

    def run(name, *extra):
        return train.main(["--name", name, "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                           "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
                           "--label_nc", "2", "--crop_size", "32", "--load_size", "32", "--ngf", "4", "--ndf", "8",
                           "--no_vgg_loss", "--batchSize", "2", "--niter", "1", "--niter_decay", "0",
                           "--max_steps", "1", "--serial_batches", "--seed", "6", *extra])

    plain, nhwc = run("plain", "--ema_decay", "0"), run("nhwc", "--channels_last", "--ema_decay", "0.9")
    assert nhwc.model.netG.fc.weight.is_contiguous(memory_format=torch.channels_last)
    # losses of the first step, computed from the same weights: convolutions in another layout round
    # differently (float32, relative 2**-24 per operation), nothing else changes
    for k, v in plain.latest_losses().items():
        assert nhwc.latest_losses()[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    for name in ("latest_net_G.pth", "latest_net_G_ema.pth", "latest_net_D.pth"):
        state = torch.load(tmp_path / "ck" / "nhwc" / name, weights_only=True)
        assert all(t.is_contiguous() for t in state.values()), name
