"""Test-synthesis options (``test.py``; ``mix_styles.py`` extends them)."""
from options.base_options import BaseOptions
from util.flag_rules import at_least, set_rules


class TestOptions(BaseOptions):
    """Flags of ``test.py``. Architecture flags default to those saved in ``opt.json``."""

    is_train = False
    description = ("SuperStyleNet test synthesis: synthesise a test set and write an HTML page. "
                   "Architecture flags default to those saved in checkpoints_dir/name/opt.json.")

    def initialize(self, parser):
        """Add the test flags to ``parser`` and return it."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("testing")
        g.add_argument("--results_dir", type=str, default="./results", help="results are saved here")
        g.add_argument("--phase", type=str, default="test",
                       help="name of the results: the page goes to results_dir/name/<phase>_<which_epoch>")
        g.add_argument("--how_many", type=int, default=float("inf"),
                       help="how many test images to run (at least 1; inf: all)")
        g.add_argument("--use_ema", action="store_true",
                       help="use the averaged generator <which_epoch>_net_G_ema.pth (trained with --ema_decay > 0) "
                            "instead of the raw <which_epoch>_net_G.pth, which stays the default (paper protocol)")
        set_rules(g, how_many=at_least(1, infinite_ok=True))
        return parser
