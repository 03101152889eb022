"""Command-line options shared by training and testing (SPADE-style).

Flag names and defaults follow the original release. The model, its networks
and the dataset add their own flags through their
``modify_commandline_options(parser, is_train)`` functions, which are looked up
in explicit registries (:data:`DATASET_OPTION_SETTERS`,
:func:`_model_option_setters`), never by string ``getattr``.

``BaseOptions().parse(argv)`` returns an ``argparse.Namespace`` with a few
derived fields: ``isTrain``, ``phase``, ``gpu_ids`` (list of int; empty means
CPU), ``device`` (``torch.device``), ``semantic_nc`` (number of one-hot
channels J) and ``load_size`` (resolved when left at its default).
"""
import argparse
import json
import os
import sys

from models.networks.options import semantic_nc
from util.errors import OptionError
from util.io import write_text_atomic

# Options that describe one run rather than the network architecture or the
# data layout; ``test.py`` never copies them from a saved ``opt.json``.
RUN_SPECIFIC_OPTIONS = frozenset({
    "name", "gpu_ids", "checkpoints_dir", "isTrain", "phase", "label_dir", "image_dir",
    "instance_dir", "batchSize", "serial_batches", "no_flip", "nThreads", "max_dataset_size",
    "which_epoch", "results_dir", "how_many", "continue_train", "load_size", "preprocess_mode",
    "display_winsize", "device", "seed", "local_rank", "print_freq", "display_freq",
    "save_latest_freq", "save_epoch_freq", "tf_log", "no_html", "max_steps", "niter", "niter_decay",
    "lr", "beta1", "beta2", "no_TTUR", "D_steps_per_G", "amp", "amp_dtype", "channels_last", "compile",
    "cpu_processes", "verbose", "load_from_opt_file",
    "no_pairing_check", "save_train_state", "semantic_nc",
    "eval_dir", "eval_freq", "eval_metric", "inception_path", "eval_fid_random_weights", "use_ema",
})


def _dataset_option_setters():
    """Registry: dataset_mode -> ``modify_commandline_options`` of its dataset class."""
    from data.custom_dataset import CustomDataset

    return {"custom": CustomDataset.modify_commandline_options}


DATASET_MODES = ("custom",)
MODELS = ("superstylenet",)


def _model_option_setters(model_name):
    """Option setters of the model (which chains those of its networks and losses)."""
    if model_name not in MODELS:
        raise OptionError(f"--model {model_name!r}: unknown model; choose from {', '.join(MODELS)}")
    from models.superstylenet_model import SuperStyleNetModel

    return [SuperStyleNetModel.modify_commandline_options]


class BaseOptions:
    """Options common to ``train.py`` and ``test.py``.

    Subclasses set ``is_train`` and extend :meth:`initialize`.
    """

    is_train = False

    def initialize(self, parser):
        """Add the shared flags to ``parser`` and return it."""
        g = parser.add_argument_group("experiment")
        g.add_argument("--name", type=str, default="label2coco",
                       help="name of the experiment; checkpoints go to checkpoints_dir/name")
        g.add_argument("--gpu_ids", type=str, default="0",
                       help="comma-separated GPU ids, e.g. 0 or 0,1,2; -1 (or no CUDA available) means CPU")
        g.add_argument("--checkpoints_dir", type=str, default="./checkpoints", help="models are saved here")
        g.add_argument("--model", type=str, default="superstylenet", help="which model to use")
        g.add_argument("--phase", type=str, default=None, help="train, val, test (default: train/test)")
        g.add_argument("--verbose", action="store_true", help="print more details")

        g = parser.add_argument_group("input/output sizes")
        g.add_argument("--batchSize", type=int, default=1, help="input batch size (global, over all processes)")
        g.add_argument("--preprocess_mode", type=str, default="scale_width_and_crop",
                       choices=("resize_and_crop", "crop", "scale_width", "scale_width_and_crop",
                                "scale_shortside", "scale_shortside_and_crop", "fixed", "none"),
                       help="scaling and cropping of images at load time")
        g.add_argument("--load_size", type=int, default=None,
                       help="scale images to this size before cropping (default: 286/256 of crop_size "
                            "in training as in the release, crop_size in testing)")
        g.add_argument("--crop_size", type=int, default=512,
                       help="crop to this size; must be divisible by 2**k (k=5, 6, 7 for "
                            "num_upsampling_layers normal, more, most)")
        g.add_argument("--aspect_ratio", type=float, default=1.0,
                       help="width/height of the output; the final height is round(crop_size / aspect_ratio)")
        g.add_argument("--label_nc", type=int, default=182,
                       help="number of input label classes, without the don't-care label")
        g.add_argument("--contain_dontcare_label", action="store_true",
                       help="label value 255 is a 'don't care' class, mapped to channel label_nc")
        g.add_argument("--output_nc", type=int, default=3, help="number of output image channels")

        g = parser.add_argument_group("data loading")
        g.add_argument("--dataset_mode", type=str, default="custom", choices=DATASET_MODES)
        g.add_argument("--serial_batches", action="store_true",
                       help="take images in order (no shuffling)")
        g.add_argument("--no_flip", action="store_true", help="no horizontal flip for data augmentation")
        g.add_argument("--nThreads", default=0, type=int, help="number of data-loading worker processes")
        g.add_argument("--max_dataset_size", type=int, default=sys.maxsize,
                       help="use at most this many samples of the dataset")
        g.add_argument("--load_from_opt_file", action="store_true",
                       help="load all non-run options from checkpoints_dir/name/opt.json (test.py "
                            "always does this when the file exists)")
        g.add_argument("--display_winsize", type=int, default=400, help="display window size (HTML pages)")
        g.add_argument("--seed", type=int, default=0, help="random seed (weights init, shuffling, augmentation)")
        return parser

    # ------------------------------------------------------------------ parsing
    def _make_parser(self):
        return argparse.ArgumentParser(
            formatter_class=argparse.ArgumentDefaultsHelpFormatter, conflict_handler="resolve",
            description="SuperStyleNet " + ("training" if self.is_train else "testing"))

    def gather_options(self, argv=None):
        """Build the full parser (with component flags) and parse ``argv``.

        Returns ``(opt, parser)``.
        """
        parser = self.initialize(self._make_parser())
        known, _ = parser.parse_known_args(argv)
        for setter in _model_option_setters(known.model):
            parser = setter(parser, self.is_train)
        known, _ = parser.parse_known_args(argv)
        setters = _dataset_option_setters()
        if known.dataset_mode not in setters:
            raise OptionError(f"--dataset_mode {known.dataset_mode!r}: unknown; choose from {sorted(setters)}")
        parser = setters[known.dataset_mode](parser, self.is_train)
        known, _ = parser.parse_known_args(argv)
        if not self.is_train or known.load_from_opt_file:
            parser = self.update_defaults_from_saved(parser, known)
        self.parser = parser
        opt = parser.parse_args(argv)
        return opt, parser

    def update_defaults_from_saved(self, parser, known):
        """Use the architecture options saved in ``opt.json`` as defaults.

        Flags given on the command line still win. Returns the parser. A missing
        file is not an error (release checkpoints come without one); an
        unreadable file is.
        """
        path = os.path.join(known.checkpoints_dir, known.name, "opt.json")
        if not os.path.isfile(path):
            self.loaded_opt_file = None
            return parser
        try:
            with open(path, "r", encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise OptionError(f"{path}: unreadable saved options ({e})") from e
        if not isinstance(saved, dict):
            raise OptionError(f"{path}: saved options must be a JSON object")
        dests = {a.dest for a in parser._actions}
        defaults = {k: v for k, v in saved.items() if k in dests and k not in RUN_SPECIFIC_OPTIONS}
        parser.set_defaults(**defaults)
        self.loaded_opt_file = path
        return parser

    def parse(self, argv=None, save=None):
        """Parse ``argv`` (default ``sys.argv[1:]``), validate, resolve devices.

        ``save`` (default: in training) writes ``opt.txt``/``opt.json`` under
        ``checkpoints_dir/name``. Raises :class:`OptionError` on bad values.
        """
        self.loaded_opt_file = None
        opt, parser = self.gather_options(argv)
        opt.isTrain = self.is_train
        if opt.phase is None:
            opt.phase = "train" if self.is_train else "test"
        self.resolve(opt)
        self.validate(opt)
        if save is None:
            save = self.is_train
        if save:
            self.save_options(opt)
        self.opt = opt
        return opt

    def resolve(self, opt):
        """Fill derived fields: gpu_ids (list), device, semantic_nc, load_size."""
        import torch

        try:
            ids = [int(s) for s in str(opt.gpu_ids).split(",") if s.strip() != ""]
        except ValueError as e:
            raise OptionError(f"--gpu_ids {opt.gpu_ids!r}: expected comma-separated integers, e.g. 0,1 or -1") from e
        ids = [i for i in ids if i >= 0]
        if len(set(ids)) != len(ids):
            raise OptionError(f"--gpu_ids {opt.gpu_ids}: a GPU id is listed more than once")
        if ids and not torch.cuda.is_available():
            print(f"[options] CUDA is not available; running on CPU (ignoring --gpu_ids {opt.gpu_ids})")
            ids = []
        elif ids:
            count = torch.cuda.device_count()
            visible = f"ids 0..{count - 1}" if count else "none"
            if len(ids) > count:
                raise OptionError(
                    f"--gpu_ids {opt.gpu_ids} lists {len(ids)} GPUs, but this machine has {count} CUDA "
                    f"device(s) ({visible}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                    f"list at most {count} id(s), e.g. --gpu_ids {','.join(str(i) for i in range(max(count, 1)))}")
            if max(ids) >= count:
                raise OptionError(f"--gpu_ids {opt.gpu_ids}: there is no CUDA device {max(ids)}; "
                                  f"this machine has {count} ({visible})")
        opt.gpu_ids = ids
        from util.distributed import local_device

        opt.device = local_device(ids)
        opt.semantic_nc = semantic_nc(opt)
        if opt.load_size is None:
            opt.load_size = int(round(opt.crop_size * 286 / 256)) if self.is_train else opt.crop_size
        return opt

    def validate(self, opt):
        """Raise :class:`OptionError` for inconsistent values (sizes, counts, folders)."""
        if opt.label_nc < 1:
            raise OptionError(f"--label_nc {opt.label_nc}: must be at least 1")
        if opt.batchSize < 1:
            raise OptionError(f"--batchSize {opt.batchSize}: must be at least 1")
        if opt.nThreads < 0:
            raise OptionError(f"--nThreads {opt.nThreads}: must be >= 0")
        if opt.max_dataset_size < 1:
            raise OptionError(f"--max_dataset_size {opt.max_dataset_size}: must be at least 1")
        if opt.aspect_ratio <= 0:
            raise OptionError(f"--aspect_ratio {opt.aspect_ratio}: must be positive")
        k = {"normal": 5, "more": 6, "most": 7}.get(getattr(opt, "num_upsampling_layers", "normal"), 5)
        if opt.crop_size < 2 ** k or opt.crop_size % (2 ** k):
            raise OptionError(
                f"--crop_size {opt.crop_size}: must be a positive multiple of 2**{k}={2 ** k} "
                f"for num_upsampling_layers={getattr(opt, 'num_upsampling_layers', 'normal')}")
        if opt.load_size < 1:
            raise OptionError(f"--load_size {opt.load_size}: must be positive")
        if "crop" in opt.preprocess_mode and opt.load_size < opt.crop_size and opt.preprocess_mode != "crop":
            raise OptionError(f"--load_size {opt.load_size} is smaller than --crop_size {opt.crop_size} "
                              f"with --preprocess_mode {opt.preprocess_mode}")
        if not opt.name or os.sep in opt.name:
            raise OptionError(f"--name {opt.name!r}: must be a non-empty folder name")

    # ---------------------------------------------------------------- printing
    def format_options(self, opt):
        """Text table of all options; values that differ from the default are marked."""
        lines = ["----------------- Options ---------------"]
        for k, v in sorted(vars(opt).items()):
            default = self.parser.get_default(k) if hasattr(self, "parser") else None
            mark = f"\t[default: {default}]" if (default is not None and v != default) else ""
            lines.append(f"{k:>25}: {v!s:<30}{mark}")
        lines.append("----------------- End -------------------")
        return "\n".join(lines)

    def print_options(self, opt):
        """Print :meth:`format_options` to stdout."""
        print(self.format_options(opt))

    @staticmethod
    def options_to_json(opt):
        """JSON-serialisable dict of ``opt`` (torch.device and others become strings)."""
        out = {}
        for k, v in vars(opt).items():
            if isinstance(v, (str, int, float, bool)) or v is None:
                out[k] = v
            elif isinstance(v, (list, tuple)):
                out[k] = list(v)
            else:
                out[k] = str(v)
        # gpu_ids is stored the way it is typed on the command line
        out["gpu_ids"] = ",".join(str(i) for i in opt.gpu_ids) if opt.gpu_ids else "-1"
        return out

    def save_options(self, opt):
        """Write ``opt.txt`` (readable) and ``opt.json`` (machine-readable) atomically."""
        folder = os.path.join(opt.checkpoints_dir, opt.name)
        os.makedirs(folder, exist_ok=True)
        write_text_atomic(os.path.join(folder, "opt.txt"), self.format_options(opt) + "\n")
        write_text_atomic(os.path.join(folder, "opt.json"),
                          json.dumps(self.options_to_json(opt), indent=2, sort_keys=True) + "\n")
