"""Exact resume: 2k steps in one run equal k steps, stop, --continue_train for k more (EMA generator included)."""
import torch

import train
from tests._synthetic import build_synthetic_dataset
from models.checkpoints import load_train_state


def test_stop_and_continue_equals_uninterrupted(tmp_path):
    images, labels, codes = build_synthetic_dataset(str(tmp_path / "data"), n=6, size=32, label_nc=2)

    def args(name, steps):
        # 3 steps per epoch; the lr decays from epoch 2 on; flips and shuffling are on
        return ["--name", name, "--checkpoints_dir", str(tmp_path / "ck"), "--gpu_ids", "-1",
                "--label_dir", labels, "--image_dir", images, "--instance_dir", codes,
                "--label_nc", "2", "--crop_size", "32", "--load_size", "36", "--ngf", "4", "--ndf", "8",
                "--no_vgg_loss", "--batchSize", "2", "--niter", "1", "--niter_decay", "3",
                "--max_steps", str(steps), "--print_freq", "100", "--display_freq", "100", "--seed", "5"]

    straight = train.main(args("straight", 8))
    assert straight.global_step == 8
    first = train.main(args("resumed", 4))  # stops in the middle of epoch 2
    state = load_train_state(str(tmp_path / "ck" / "resumed" / "latest_train_state.pth"))
    assert (state["epoch"], state["epoch_iter"], state["global_step"]) == (2, 1, 4)
    del first
    resumed = train.main(args("resumed", 8) + ["--continue_train"])
    assert resumed.global_step == 8
    # noise injection is on: noise_var left zero would make RNG restoring untested
    assert any(float(p.detach().abs().max()) > 0 for n, p in straight.model.named_parameters() if n.endswith("noise_var"))
    for net in ("netG", "netD"):
        a = getattr(straight.model, net).state_dict()
        b = getattr(resumed.model, net).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-7, msg=f"{net}.{k}")
    for opt_a, opt_b in ((straight.optimizer_G, resumed.optimizer_G), (straight.optimizer_D, resumed.optimizer_D)):
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]
        sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
        for idx in sa:
            torch.testing.assert_close(sb[idx]["exp_avg_sq"], sa[idx]["exp_avg_sq"], rtol=0, atol=1e-9)
    assert straight.latest_losses() == resumed.latest_losses()
    # the EMA generator (on by default) is restored exactly: averaged weights, counters, and the
    # BatchNorm statistics recomputed for the checkpoint
    assert straight.ema is not None and resumed.ema is not None
    assert (straight.ema.num_steps, straight.ema.num_updates) == (resumed.ema.num_steps, resumed.ema.num_updates) == (8, 8)
    a, b = straight.ema.module.state_dict(), resumed.ema.module.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=f"EMA {k}")
    files = [torch.load(tmp_path / "ck" / n / "latest_net_G_ema.pth", weights_only=True) for n in ("straight", "resumed")]
    assert files[0].keys() == a.keys()
    for k in a:
        torch.testing.assert_close(files[1][k], files[0][k], rtol=0, atol=0, msg=f"latest_net_G_ema {k}")
    # the average is not the raw generator
    assert any(not torch.equal(a[k], v) for k, v in straight.model.netG.state_dict().items())
