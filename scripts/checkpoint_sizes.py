"""Print the size of each checkpoint file a training run writes, for a given configuration.

    python scripts/checkpoint_sizes.py --label_nc 19 --ngf 64          # CelebAMask-HQ, the paper's setting
    python scripts/checkpoint_sizes.py --label_nc 6 --ngf 8 --crop_size 64   # make demo

The networks are built on the meta device (no memory, no time). A run keeps
``latest_net_G.pth``, ``latest_net_D.pth`` and ``latest_train_state.pth`` (the
full state for an exact ``--continue_train``) and, every ``--save_epoch_freq``
epochs, ``<epoch>_net_G.pth`` and ``<epoch>_net_D.pth`` as the release did.
The per-class style layers, (label_nc, 512, 512) per ACE, do not shrink with
``--ngf``.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def sizes(label_nc, ngf, crop_size, ndf=64, num_D=2, n_layers_D=3, contain_dontcare_label=False):
    """``util.checkpoint.checkpoint_sizes`` of the configuration (bytes)."""
    import torch

    from models.networks import MultiscaleDiscriminator, SuperStyleNetGenerator, default_opt
    from util.checkpoint import checkpoint_sizes

    opt = default_opt(label_nc=label_nc, ngf=ngf, crop_size=crop_size, ndf=ndf, num_D=num_D,
                      n_layers_D=n_layers_D, contain_dontcare_label=contain_dontcare_label)
    with torch.device("meta"):
        return checkpoint_sizes(SuperStyleNetGenerator(opt), MultiscaleDiscriminator(opt))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--label_nc", type=int, default=19)
    p.add_argument("--contain_dontcare_label", action="store_true")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--ndf", type=int, default=64)
    p.add_argument("--crop_size", type=int, default=256)
    p.add_argument("--snapshots", type=int, default=20, help="number of epoch snapshots kept (default 20: "
                   "200 epochs, --save_epoch_freq 10)")
    args = p.parse_args(argv)
    from util.checkpoint import format_bytes

    s = sizes(args.label_nc, args.ngf, args.crop_size, ndf=args.ndf,
              contain_dontcare_label=args.contain_dontcare_label)
    snapshot = s["net_G"] + s["net_D"]
    latest = snapshot + s["train_state"]
    print(f"label_nc {args.label_nc}, ngf {args.ngf}, ndf {args.ndf}, crop {args.crop_size}:")
    print(f"  <which>_net_G.pth        {format_bytes(s['net_G'])}")
    print(f"  <which>_net_D.pth        {format_bytes(s['net_D'])}")
    print(f"  latest_train_state.pth   {format_bytes(s['train_state'])}")
    print(f"  latest (three files)     {format_bytes(latest)}")
    print(f"  one epoch snapshot       {format_bytes(snapshot)}")
    print(f"  run with {args.snapshots} snapshots   {format_bytes(latest + args.snapshots * snapshot)}")
    return s


if __name__ == "__main__":
    main()
