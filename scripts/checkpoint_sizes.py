"""Print the size of each checkpoint file a training run writes, for a given configuration.

    python scripts/checkpoint_sizes.py --label_nc 19 --ngf 64          # CelebAMask-HQ, the paper's setting
    python scripts/checkpoint_sizes.py --label_nc 6 --ngf 8 --crop_size 64 --no_ema   # make demo

The networks are built on the meta device (no memory, no time). A run keeps
``latest_net_G.pth``, ``latest_net_D.pth`` and ``latest_train_state.pth`` (the
full state for an exact ``--continue_train``) and, every ``--save_epoch_freq``
epochs, ``<epoch>_net_G.pth`` and ``<epoch>_net_D.pth`` as the release did;
with the EMA generator (on by default) also ``*_net_G_ema.pth``, and the
average is part of the training state.
The per-class style layers, (label_nc, 512, 512) per ACE, do not shrink with
``--ngf``.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def sizes(label_nc, ngf, crop_size, ndf=64, num_D=2, n_layers_D=3, contain_dontcare_label=False, ema=True):
    """``models.checkpoints.checkpoint_sizes`` of the configuration (bytes); ``ema``: with the EMA generator."""
    import torch

    from models.checkpoints import checkpoint_sizes
    from models.networks import MultiscaleDiscriminator, SuperStyleNetGenerator

    semantic_nc = label_nc + (1 if contain_dontcare_label else 0)
    with torch.device("meta"):
        return checkpoint_sizes(SuperStyleNetGenerator(semantic_nc, crop_size=crop_size, ngf=ngf),
                                MultiscaleDiscriminator(semantic_nc, ndf=ndf, num_D=num_D, n_layers_D=n_layers_D),
                                ema=ema)


def build_parser():
    """The configuration whose files are sized (train.py's flag names)."""
    from util.cli import HelpFormatter

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--label_nc", type=int, default=19, help="number of label classes")
    p.add_argument("--contain_dontcare_label", action="store_true", help="one more class (don't care)")
    p.add_argument("--ngf", type=int, default=64, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--crop_size", type=int, default=256, help="crop size (the sizes do not depend on it)")
    p.add_argument("--no_ema", action="store_true",
                   help="a run with --ema_decay 0 (no net_G_ema files, no average in the training state)")
    p.add_argument("--snapshots", type=int, default=20,
                   help="number of epoch snapshots kept (20: 200 epochs, --save_epoch_freq 10)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from models.checkpoints import format_bytes

    s = sizes(args.label_nc, args.ngf, args.crop_size, ndf=args.ndf,
              contain_dontcare_label=args.contain_dontcare_label, ema=not args.no_ema)
    nets = [k for k in s if k.startswith("net_")]
    snapshot = sum(s[k] for k in nets)
    latest = snapshot + s["train_state"]
    print(f"label_nc {args.label_nc}, ngf {args.ngf}, ndf {args.ndf}, crop {args.crop_size}, "
          f"EMA generator {'off' if args.no_ema else 'on'}:")
    rows = [(f"<which>_{k}.pth", s[k]) for k in nets] + [
        ("latest_train_state.pth", s["train_state"]), (f"latest ({len(nets) + 1} files)", latest),
        ("one epoch snapshot", snapshot), (f"run with {args.snapshots} snapshots", latest + args.snapshots * snapshot)]
    for name, size in rows:
        print(f"  {name:28} {format_bytes(size):>10}")
    return s


if __name__ == "__main__":
    main()
