"""EMA generator: the update against the literal formula, BatchNorm recomputation against train mode."""
import copy

import pytest
import torch

from models.networks import SuperStyleNetGenerator
from options import build_options
from trainers.ema import EMAData, GeneratorEMA, recompute_batchnorm
from util.errors import CheckpointError, OptionError


def tiny_generator(seed=0):
    torch.manual_seed(seed)
    opt = build_options(gpu_ids="-1", is_train=False, label_nc=3, ngf=2, crop_size=32)
    return SuperStyleNetGenerator.from_options(opt).double()


def random_inputs(seed, b=2, j=3, size=32):
    g = torch.Generator().manual_seed(seed)
    label = torch.randint(0, j, (b, 1, size, size), generator=g)
    segmap = torch.zeros(b, j, size, size, dtype=torch.float64).scatter_(1, label, 1.0)
    return segmap, torch.randn(b, j, 512, generator=g, dtype=torch.float64)


def perturb(netG, seed):
    """Move every parameter, differently for each ``seed`` (cheap: no random numbers for 16 M values)."""
    with torch.no_grad():
        for p in netG.parameters():
            p.mul_(-0.9 + 0.01 * seed).add_(0.02 * (seed + 1))


@pytest.mark.parametrize("every,decay,steps", [(1, 0.3, 6), (2, 0.5, 8)])
def test_update_follows_the_literal_formula(every, decay, steps):
    """ema <- d ema + (1 - d) p on every ``every``-th step, d = min(decay**every, (1 + n) / (10 + n)).

    The decays are small so that both the warm-up and the cap are reached within a few steps.
    """
    netG = tiny_generator()
    ema = GeneratorEMA(netG, decay, every=every)
    expected = {k: p.detach().clone() for k, p in netG.named_parameters()}
    buffers_before = {k: b.clone() for k, b in ema.module.named_buffers()}
    n, capped = 0, 0
    for step in range(1, steps + 1):
        perturb(netG, step)
        updated = ema.step(netG)
        assert updated == (step % every == 0)
        if updated:
            d = min(decay ** every, (1.0 + n) / (10.0 + n))
            capped += d == decay ** every
            n += 1
            for k, p in netG.named_parameters():
                expected[k] = d * expected[k] + (1.0 - d) * p.detach()
    assert ema.num_updates == n == steps // every
    assert 0 < capped < n  # both regimes occurred
    got = dict(ema.module.named_parameters())
    for k, v in expected.items():
        # float64 lerp vs the literal d*a + (1-d)*b: a few ulps of the operands
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-13, msg=k)
        assert not got[k].requires_grad
    for k, b in ema.module.named_buffers():  # buffers are never averaged
        assert torch.equal(b, buffers_before[k]), k
    # the average differs from the current weights (it is not a copy)
    assert any(not torch.equal(got[k], p) for k, p in netG.named_parameters())


def test_decay_is_capped_by_the_warm_up_then_by_decay():
    ema = GeneratorEMA(tiny_generator(), 0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.num_updates = 5
    assert ema.current_decay() == pytest.approx(6 / 15)
    ema.num_updates = 100_000
    assert ema.current_decay() == 0.999
    with pytest.raises(OptionError, match="ema_decay"):
        GeneratorEMA(tiny_generator(), 1.0)


def bn_layers(module):
    return [m for m in module.modules() if hasattr(m, "running_mean")]


def test_batchnorm_recomputation_equals_the_mean_of_train_mode_batch_statistics():
    """Reference: train mode with momentum 1 stores each batch's statistics; their mean over batches."""
    netG = tiny_generator()
    perturb(netG, 99)
    batches = [random_inputs(s) for s in range(3)]

    reference = copy.deepcopy(netG).train()
    for m in bn_layers(reference):
        m.momentum = 1.0
    sums = {i: [0.0, 0.0] for i in range(len(bn_layers(reference)))}
    torch.manual_seed(5)
    with torch.no_grad():
        for segmap, codes in batches:
            reference(segmap, codes)
            for i, m in enumerate(bn_layers(reference)):
                sums[i][0] = sums[i][0] + m.running_mean.clone()
                sums[i][1] = sums[i][1] + m.running_var.clone()

    module = copy.deepcopy(netG).eval()
    torch.manual_seed(5)  # same noise draws, same spectral-norm power iterations
    count = recompute_batchnorm(module, batches, lambda m, b: m(*b))
    assert count == 3 and not module.training
    layers = bn_layers(module)
    assert len(layers) == len(sums) > 0
    for i, m in enumerate(layers):
        torch.testing.assert_close(m.running_mean, sums[i][0] / 3, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(m.running_var, sums[i][1] / 3, rtol=1e-12, atol=1e-12)
        assert int(m.num_batches_tracked) == 3
    for (k, a), b in zip(module.named_buffers(), reference.buffers()):
        if k.endswith(("weight_u", "weight_v")):  # spectral norm iterated as in train mode
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=k)
    # the statistics really changed (the initial ones are zeros and ones)
    assert any(float(m.running_mean.abs().max()) > 1e-3 for m in layers)


def test_prepare_recomputes_on_its_data_without_touching_the_global_rng():
    items = [{"label": random_inputs(10 + i, b=1)[0].argmax(1), "codes": random_inputs(10 + i, b=1)[1][0],
              "path": f"x{i}"} for i in range(4)]

    def inputs(batch):
        label = batch["label"]
        segmap = torch.zeros(label.shape[0], 3, *label.shape[2:], dtype=torch.float64).scatter_(1, label, 1.0)
        return segmap, batch["codes"]

    for it in items:
        it["label"] = it["label"][0][None]  # (1, H, W) like the dataset's items
    netG = tiny_generator()
    ema = GeneratorEMA(netG, 0.5, bn_batches=2, seed=3, data=EMAData(items, 2, inputs))
    perturb(netG, 1)
    ema.step(netG)
    state = torch.get_rng_state()
    first = {k: v.clone() for k, v in ema.prepare(netG).state_dict().items()}
    assert torch.equal(torch.get_rng_state(), state)
    # G's running statistics were not simply copied: they were recomputed
    g_stats = dict(netG.named_buffers())
    assert any(not torch.equal(first[k], g_stats[k]) for k in first if k.endswith("running_mean"))
    ema._prepared_at = None  # a second recomputation gives the same statistics
    second = ema.prepare(netG).state_dict()
    for k, v in first.items():
        assert torch.equal(second[k], v), k
    # without data, the buffers are G's (the documented fallback)
    plain = GeneratorEMA(netG, 0.5)
    for k, v in plain.prepare(netG).named_buffers():
        assert torch.equal(v, g_stats[k]), k


def test_state_round_trip_and_mismatch():
    netG = tiny_generator()
    ema = GeneratorEMA(netG, 0.9, every=2)
    for s in range(3):
        perturb(netG, s)
        ema.step(netG)
    state = ema.state_dict()
    other = GeneratorEMA(tiny_generator(seed=1), 0.9, every=2)
    other.load_state_dict(state)
    assert (other.num_steps, other.num_updates) == (3, 1)
    for (k, a), b in zip(other.module.state_dict().items(), ema.module.state_dict().values()):
        assert torch.equal(a, b), k
    torch.manual_seed(0)
    wrong = GeneratorEMA(SuperStyleNetGenerator.from_options(build_options(gpu_ids="-1", is_train=False, label_nc=4, ngf=2, crop_size=32)), 0.9)
    with pytest.raises(CheckpointError, match="state.pth: EMA generator state does not match"):
        wrong.load_state_dict(state, "x/latest_train_state.pth")
