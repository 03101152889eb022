"""Command-line options shared by training and test synthesis (SPADE-style flag names).

How a parser is built (:meth:`BaseOptions.build_parser`), in this order:

1. the shared flags (:meth:`BaseOptions.initialize`, extended by
   ``TrainOptions`` / ``TestOptions``), with the defaults in force;
2. the flags of the model chosen by ``--model`` (registry
   :data:`models.MODELS`; the model registers those of its generator and, in
   training, its discriminator and losses) and of the dataset chosen by
   ``--dataset_mode`` (registry :data:`data.loader.DATASETS`);
3. defaults given by the caller (:func:`options.build_options`' overrides);
4. in test synthesis (and in training with ``--load_from_opt_file``) the
   architecture flags saved in ``checkpoints_dir/name/opt.json`` (each value checked against its
   flag first, :func:`util.flag_rules.check_saved_values`);
5. defaults that follow from other flags (``--load_size`` from
   ``--crop_size``), then ``-h/--help``, so that ``--help`` lists every flag
   with the default this command line would use.

:meth:`BaseOptions.parse` then parses, checks every flag's value against the
rule declared next to the flag (:mod:`util.flag_rules`: types, finite
numbers, ranges), derives ``isTrain``, ``gpu_ids`` (list of int; empty means
CPU), ``device`` and ``semantic_nc`` (one-hot channels J) once, and
validates what involves several flags. Flags given on the command line
always win.
"""
import argparse
import json
import os
import sys

import torch

from data.loader import DATASETS
from data.transforms import PREPROCESS_MODES
from models import MODELS
from models.networks.generator import latent_size
from options.foreign_flags import check_foreign_flags
from util.cli import HelpFormatter
from util.distributed import local_device
from util.errors import OptionError
from util.flag_rules import (POSITIVE, architecture_flags, at_least, check_flags, check_saved_values,
                             mark_architecture, set_rules)
from util.io import write_text_atomic

# The flags of every parser that describe one run, not the trained networks: they are never copied
# from a saved opt.json. The others are marked by their components (util.flag_rules.mark_architecture)
# and are the only ones reloaded; tests/test_options.py checks that every flag is in exactly one set.
RUN_SPECIFIC_OPTIONS = frozenset({
    "name", "gpu_ids", "checkpoints_dir", "label_dir", "image_dir", "instance_dir", "no_pairing_check",
    "batchSize", "nThreads", "max_dataset_size", "load_size", "preprocess_mode", "display_winsize", "seed",
    "which_epoch",
    # test synthesis
    "results_dir", "how_many", "phase", "use_ema",
    # training
    "serial_batches", "no_flip", "load_from_opt_file", "continue_train", "init_from", "print_freq",
    "display_freq", "save_latest_freq", "save_epoch_freq", "tf_log", "take_over_lock", "ignore_disk_space",
    "no_html", "debug", "max_steps", "niter",
    "niter_decay", "lr", "beta1", "beta2", "no_TTUR", "D_steps_per_G", "amp", "amp_dtype", "channels_last",
    "compile", "compile_backend", "cpu_processes", "ddp_comm_hook",
    "ema_decay", "ema_every", "ema_bn_batches", "ema_cpu", "eval_dir", "eval_freq", "eval_metric", "eval_ssim_variant",
    "inception_path", "vgg_path",
    # mix_styles.py
    "alpha", "class_names", "classes", "edit_rgb", "mix_dir", "no_progress", "source_codes", "source_labels",
    "spse_size", "style_codes", "style_images", "style_labels",
    # edit_app.py
    "allow_remote", "data", "demo", "host", "max_connections", "max_layouts", "max_sessions", "max_upload_mb",
    "max_upload_mpix", "num_threads", "port", "request_timeout", "verbose",
    # scripts/export_generator.py
    "out_dir",
})
# the flags read before the full parser is built (:func:`_peek`)
PEEKED_FLAGS = ("model", "dataset_mode", "checkpoints_dir", "name", "load_size", "crop_size", "load_from_opt_file")


def load_size_default(crop_size, is_train):
    """``--load_size`` when it is not given: 286/256 of the crop in training (the release's custom
    dataset: 286 for a 256 crop), the crop itself in test synthesis."""
    return int(round(crop_size * 286 / 256)) if is_train else int(crop_size)


def _peek(parser, argv):
    """The flags of :data:`PEEKED_FLAGS` in ``argv``, with ``parser``'s current defaults (None where it lacks one).

    A pre-parser with the same flag names (so that abbreviations resolve as
    in ``parser``), none of them required, reads ``argv`` with
    ``parse_known_args``; only the peeked flags keep their types and choices.
    The flags the full parser still lacks do not matter yet; errors are
    reported by ``parser``.
    """
    pre = argparse.ArgumentParser(prog=parser.prog, add_help=False)
    pre.error = parser.error
    for action in parser._actions:
        if not action.option_strings:
            continue
        if action.nargs == 0:  # a switch (store_true)
            pre.add_argument(*action.option_strings, dest=action.dest, action="store_true")
        elif action.dest in PEEKED_FLAGS:
            pre.add_argument(*action.option_strings, dest=action.dest, type=action.type, choices=action.choices)
        else:
            pre.add_argument(*action.option_strings, dest=action.dest, nargs=action.nargs)
    pre.set_defaults(**{dest: parser.get_default(dest) for dest in PEEKED_FLAGS})
    return pre.parse_known_args(argv)[0]


class BaseOptions:
    """Options common to ``train.py`` and ``test.py``; subclasses set ``is_train`` and extend
    :meth:`initialize` and :meth:`validate`."""

    is_train = False
    description = "SuperStyleNet"

    def initialize(self, parser):
        """Add the shared flags to ``parser`` and return it."""
        g = parser.add_argument_group("experiment")
        g.add_argument("--name", type=str, default="label2coco",
                       help="name of the experiment; checkpoints are in checkpoints_dir/name")
        g.add_argument("--gpu_ids", type=str, default="0",
                       help="comma-separated GPU ids, e.g. 0 or 0,1,2; -1 (or no CUDA available) means CPU")
        g.add_argument("--checkpoints_dir", type=str, default="./checkpoints", help="models are saved here")
        g.add_argument("--model", type=str, default="superstylenet", choices=tuple(MODELS),
                       help="which model to build (the registry models.MODELS)")
        g.add_argument("--which_epoch", type=str, default="latest",
                       help="which checkpoint to load: an epoch number, 'latest' (or 'best' from --eval_dir)")
        g.add_argument("--seed", type=int, default=0,
                       help="random seed (weights init, shuffling, augmentation, noise)")

        g = parser.add_argument_group("input/output sizes")
        g.add_argument("--batchSize", type=int, default=1, help="input batch size (global, over all processes)")
        g.add_argument("--preprocess_mode", type=str, default="resize_and_crop", choices=PREPROCESS_MODES,
                       help="scaling and cropping of images at load time (see data/transforms.py)")
        g.add_argument("--load_size", type=int, default=None,
                       help="scale images to this size before cropping; when left out, "
                            "round(crop_size * 286 / 256) in training, as in the release, and crop_size in "
                            "test synthesis")
        g.add_argument("--crop_size", type=int, default=256,
                       help="crop to this size; a multiple of 2**k (k=5, 6, 7 for num_upsampling_layers "
                            "normal, more, most)")
        g.add_argument("--aspect_ratio", type=float, default=1.0,
                       help="width/height of the output; the final height is round(crop_size / aspect_ratio)")
        g.add_argument("--label_nc", type=int, default=13,
                       help="number of input label classes, without the don't-care label")
        g.add_argument("--contain_dontcare_label", action="store_true",
                       help="label value 255 is a 'don't care' class, mapped to channel label_nc")
        g.add_argument("--output_nc", type=int, default=3, choices=(1, 3),
                       help="channels of the synthesised image: 3 (RGB) or 1 (grey; photos are read as grey)")
        set_rules(g, batchSize=at_least(1), load_size=at_least(1), crop_size=at_least(1),
                  aspect_ratio=POSITIVE, label_nc=at_least(1))
        mark_architecture(g, "crop_size", "aspect_ratio", "label_nc", "contain_dontcare_label", "output_nc")

        g = parser.add_argument_group("data loading")
        g.add_argument("--dataset_mode", type=str, default="custom", choices=tuple(DATASETS),
                       help="which dataset class reads the data (the registry data.loader.DATASETS)")
        g.add_argument("--nThreads", default=-1, type=int,
                       help="data-loading worker processes per training process; -1 (default): on a GPU, this "
                            "process's share of the cores available (os.sched_getaffinity) minus one for itself, "
                            "at most 16; 0 on the CPU. 0 decodes in the training process")
        g.add_argument("--max_dataset_size", type=int, default=sys.maxsize,
                       help="use at most this many samples of the dataset")
        g.add_argument("--display_winsize", type=int, default=256, help="width of the images on HTML pages")
        set_rules(g, nThreads=at_least(-1), max_dataset_size=at_least(1), display_winsize=at_least(1))
        mark_architecture(g, "model", "dataset_mode")
        return parser

    # ------------------------------------------------------------------ building the parser
    def build_parser(self, argv=None, overrides=None):
        """The complete parser for ``argv``, with every default in force (module docstring)."""
        argv = sys.argv[1:] if argv is None else list(argv)
        check_foreign_flags(argv, DATASETS)  # SPADE/SEAN flags get a sentence, not "unrecognized arguments"

        parser = argparse.ArgumentParser(description=self.description, formatter_class=HelpFormatter,
                                         add_help=False)
        parser = self.initialize(parser)
        known = _peek(parser, argv)
        parser = MODELS[known.model].modify_commandline_options(parser, self.is_train)
        parser = DATASETS[known.dataset_mode].modify_commandline_options(parser, self.is_train)
        if overrides:
            dests = {a.dest for a in parser._actions}
            unknown = sorted(set(overrides) - dests)
            if unknown:
                raise OptionError(f"unknown option(s) {', '.join(unknown)}")
            parser.set_defaults(**overrides)
        self.loaded_opt_file = None
        known = _peek(parser, argv)
        if not self.is_train or known.load_from_opt_file:
            self.update_defaults_from_saved(parser, known)
            known = _peek(parser, argv)
        if known.load_size is None:
            parser.set_defaults(load_size=load_size_default(known.crop_size, self.is_train))
        parser.add_argument("-h", "--help", action="help", help="show this help message and exit")
        self.parser = parser
        return parser

    def update_defaults_from_saved(self, parser, known):
        """Use the architecture options saved in ``opt.json`` as defaults (the command line still wins).

        A missing file is not an error (release checkpoints come without
        one); an unreadable file is. Sets ``self.loaded_opt_file``.
        """
        path = os.path.join(known.checkpoints_dir, known.name, "opt.json")
        if not os.path.isfile(path):
            return parser
        try:
            with open(path, "r", encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError) as e:
            raise OptionError(f"{path}: unreadable saved options ({e})") from e
        if not isinstance(saved, dict):
            raise OptionError(f"{path}: saved options must be a JSON object")
        architecture = architecture_flags(parser)
        reloaded = {k: v for k, v in saved.items() if k in architecture}
        check_saved_values(parser, reloaded, path)  # a hand-edited "ngf": null or 8.5 is refused here
        parser.set_defaults(**reloaded)
        self.loaded_opt_file = path
        return parser

    # ------------------------------------------------------------------ parsing
    def parse(self, argv=None, save=False, overrides=None):
        """Parse ``argv`` (default ``sys.argv[1:]``), derive the fields below, validate.

        Derived, once, here: ``isTrain``, ``gpu_ids`` (list of int), ``device``
        and ``semantic_nc``. ``overrides`` (dict dest -> value) replace
        defaults (:func:`options.build_options`). ``save`` writes
        ``opt.txt``/``opt.json`` under ``checkpoints_dir/name``. Raises
        :class:`OptionError` on bad values.
        """
        parser = self.build_parser(argv, overrides)
        opt = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        check_flags(parser, opt)  # types, finite numbers and each flag's rule (util.flag_rules)
        opt.isTrain = self.is_train
        self.resolve(opt)
        self.validate(opt)
        if save:
            self.save_options(opt)
        self.opt = opt
        return opt

    def resolve(self, opt):
        """Fill the derived fields: ``gpu_ids`` (list), ``device``, ``semantic_nc``."""
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
        opt.device = local_device(ids)
        opt.semantic_nc = int(opt.label_nc) + (1 if opt.contain_dontcare_label else 0)
        return opt

    def validate(self, opt):
        """Raise :class:`OptionError` for inconsistent values (sizes, counts, names)."""
        # each flag's own range is declared next to it (set_rules) and checked in parse (check_flags)
        latent_size(opt.crop_size, opt.num_upsampling_layers, opt.aspect_ratio)  # the crop-size rule
        if opt.preprocess_mode.endswith("_and_crop") and opt.load_size < opt.crop_size:
            raise OptionError(f"--load_size {opt.load_size} is smaller than --crop_size {opt.crop_size} "
                              f"with --preprocess_mode {opt.preprocess_mode}")
        if not opt.name or os.sep in opt.name or (os.altsep and os.altsep in opt.name) or opt.name in (".", ".."):
            raise OptionError(f"--name {opt.name!r}: must be a non-empty folder name (not '.' or '..'): the run's "
                              f"files go to checkpoints_dir/name")

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
