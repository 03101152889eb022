"""Options of ``scripts/export_generator.py``: the generator to export and where the export goes."""
from options.base_options import BaseOptions


class ExportOptions(BaseOptions):
    """The architecture (reloaded from ``opt.json`` as in ``test.py``), ``--which_epoch``, ``--use_ema``, ``--out_dir``."""

    is_train = False
    description = ("Export a generator (or its EMA) in half precision for inference. Architecture flags default "
                   "to those saved in checkpoints_dir/name/opt.json.")

    def initialize(self, parser):
        """Add the export flags to the shared flags."""
        parser = super().initialize(parser)
        g = parser.add_argument_group("export")
        g.add_argument("--use_ema", action="store_true",
                       help="export the averaged generator <which_epoch>_net_G_ema.pth instead of <which_epoch>_net_G.pth")
        g.add_argument("--out_dir", type=str, default=None,
                       help="folder of the export (default checkpoints_dir/<name>_fp16): it becomes a checkpoint "
                            "folder that test.py, mix_styles.py and the editor load with --name")
        return parser
