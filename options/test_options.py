"""Test-synthesis options."""
from options.base_options import BaseOptions


class TestOptions(BaseOptions):
    """Flags of ``test.py``. Architecture flags default to those saved in ``opt.json``."""

    is_train = False

    def initialize(self, parser):
        """Add the test flags to ``parser`` and return it."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("testing")
        g.add_argument("--results_dir", type=str, default="./results", help="results are saved here")
        g.add_argument("--which_epoch", type=str, default="latest",
                       help="which epoch to load: a number or 'latest'")
        g.add_argument("--how_many", type=int, default=float("inf"), help="how many test images to run")
        g.add_argument("--use_ema", action="store_true",
                       help="use the averaged generator <which_epoch>_net_G_ema.pth (trained with --ema_decay > 0) "
                            "instead of the raw <which_epoch>_net_G.pth, which stays the default (paper protocol)")
        parser.set_defaults(serial_batches=True, no_flip=True, phase="test")
        return parser
