"""Evaluation during training on a held-out set, and the best checkpoints (docs/training.md).

With ``--eval_dir D`` (``D/labels``, ``D/images``, ``D/codes``), the schedule
asks for an evaluation every ``--eval_freq`` global steps and after the last
step; :meth:`TrainingEvaluator.run` takes the generators (raw, prepared EMA)
and their input function, and returns an :class:`EvalResult`: SSIM
(``--eval_ssim_variant``), PSNR (dB), RMSE on [0, 1] and FID when the
Inception weights are found (``ema_`` prefix for the EMA), with
``evaluate.py``'s conventions (``evaluation/metrics.py``). ``--eval_metric``
picks ``best_net_G.pth`` / ``best_net_G_ema.pth`` and ``best.json`` (rank 0
writes). Call it on every rank: the held-out batches are dealt to the ranks
(batch ``k`` on rank ``k mod world_size``) and the results gathered once.
Each batch's noise is seeded from ``--seed`` and its index under a forked RNG.
Its best-so-far record is :meth:`TrainingEvaluator.state_dict`.
"""
import argparse
import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from data.loader import collate, create_dataset, loader_workers
from evaluation import metrics
from models import checkpoints as ckpt
from util import distributed as dist_util
from util.errors import CheckpointError, InputError, OptionError
from util.flag_rules import at_least, check_value, set_rules
from util.images import tensor2im
from util.io import write_text_atomic

# metric -> True when larger is better
METRICS = {"ssim": True, "psnr": True, "rmse": False, "fid": False}
EVAL_FOLDERS = {"label_dir": "labels", "image_dir": "images", "instance_dir": "codes"}
BEST_FILE = "best.json"
EVAL_FREQ_RULE = at_least(1)


def modify_commandline_options(parser, is_train):
    """Register the evaluation flags (training only)."""
    if not is_train:
        return parser
    g = parser.add_argument_group("evaluation during training")
    g.add_argument("--eval_dir", type=str, default=None,
                   help="held-out set with labels/, images/ and codes/ sub-folders; evaluated every --eval_freq "
                        "steps (SSIM, PSNR, RMSE, and FID when the Inception weights are found)")
    g.add_argument("--eval_freq", type=int, default=5000, help="evaluate every this many global steps")
    g.add_argument("--eval_ssim_variant", type=str, default=metrics.DEFAULT_SSIM, choices=tuple(metrics.SSIM_VARIANTS),
                   help="SSIM window: gaussian (sigma 1.5, population covariance; the release's) or uniform "
                        "(7x7, sample covariance), as evaluate.py --ssim_variant")
    g.add_argument("--eval_metric", type=str, default="ssim", choices=sorted(METRICS),
                   help="metric that selects best_net_G.pth / best_net_G_ema.pth")
    g.add_argument("--inception_path", type=str, default=None,
                   help=f"local path of {metrics.FID_WEIGHTS_NAME} for FID; when left out, torch's hub cache")
    set_rules(g, eval_freq=EVAL_FREQ_RULE)
    return parser


def validate_options(opt):
    """Raise :class:`OptionError` for bad evaluation flags (folders are checked by the evaluator)."""
    check_value("--eval_freq", opt.eval_freq, int, EVAL_FREQ_RULE)


def eval_options(opt):
    """Options of the held-out dataset: ``--eval_dir``'s folders, test-time preprocessing."""
    eval_opt = argparse.Namespace(**vars(opt))
    for flag, folder in EVAL_FOLDERS.items():
        path = os.path.join(opt.eval_dir, folder)
        if not os.path.isdir(path):
            raise InputError(f"--eval_dir {opt.eval_dir}: folder {path} not found (expected the sub-folders "
                             f"{', '.join(EVAL_FOLDERS.values())})")
        setattr(eval_opt, flag, path)
    eval_opt.isTrain = False  # test-time preprocessing: centred crop, no flip, file order
    eval_opt.load_size = opt.crop_size
    eval_opt.max_dataset_size = sys.maxsize
    return eval_opt


def is_better(metric, new, old):
    """True when ``new`` beats ``old`` (None = no value) for ``metric``."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None:
        return True
    return new > old if METRICS[metric] else new < old


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: ``values`` (metric name -> float), image ``count``, ``improved`` kinds (raw, ema)."""
    values: dict
    count: int
    improved: list


class TrainingEvaluator:
    """Scores the generator (and its EMA) on ``--eval_dir``; keeps the best checkpoints.

    Args:
        opt: training options (``eval_dir``, ``eval_freq``, ``eval_metric``,
            ``inception_path``, ``seed``, ``device``, ``checkpoints_dir``, ``name``).
        batch_size: images per generator pass (the per-process training batch).
        rank, world_size: this process in a distributed run.
        log: function printing a line (rank 0).
    """

    def __init__(self, opt, batch_size, rank=0, world_size=1, log=print):
        validate_options(opt)
        self.opt = opt
        self.metric = opt.eval_metric
        self.rank, self.world_size = int(rank), int(world_size)
        self.batch_size = max(1, int(batch_size))
        self.eval_opt = eval_options(opt)
        self.dataset = create_dataset(self.eval_opt)
        n = len(self.dataset)
        if n == 0:
            raise InputError(f"--eval_dir {opt.eval_dir}: no images")
        self.batches = [list(range(s, min(s + self.batch_size, n))) for s in range(0, n, self.batch_size)]
        for _, idx in self.my_batches():  # read every item of this rank's share now, not hours later
            for i in idx:
                self.dataset[i]
        self.best = {"raw": None, "ema": None}
        self.last_step, self.last_values = None, None
        self.history = []  # (step, values) of this process's evaluations (not saved)
        self.last_local_indices = []  # held-out images this process synthesised in its last pass
        self.fid_model = None
        self.fid_skipped = None
        self._real_acts = None
        self._setup_fid(log)

    def _setup_fid(self, log):
        opt = self.opt
        try:
            if len(self.dataset) < 2:
                raise InputError(f"--eval_dir {opt.eval_dir}: FID needs at least 2 images")
            # building the network initialises its layers from the global RNG: fork it, so that
            # evaluation leaves the training run's random stream untouched
            with torch.random.fork_rng(devices=[opt.device] if opt.device.type == "cuda" else []):
                torch.manual_seed(0)
                self.fid_model = metrics.build_fid_inception(opt.inception_path, device=opt.device)
        except (CheckpointError, InputError) as e:
            if self.metric == "fid":
                raise OptionError(f"--eval_metric fid: FID cannot be computed: {e}") from e
            self.fid_skipped = " ".join(str(e).split())
            if self.rank == 0:
                log(f"[eval] FID is skipped during training: {self.fid_skipped}")

    # ------------------------------------------------------------------ sharding
    def my_batches(self):
        """``(k, indices)`` of the held-out batches of this rank: batch ``k`` goes to rank ``k mod world``."""
        return [(k, idx) for k, idx in enumerate(self.batches) if k % self.world_size == self.rank]

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _score_local(self, netG, inputs, device, need_real_acts):
        """This rank's share: ``(per-image [(index, metrics)], fake activations, real activations)``."""
        mine = self.my_batches()
        # a loader draws its workers' base seed when iterated: from its own generator, not the global one
        # the training run's random stream comes from
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=[idx for _, idx in mine], collate_fn=collate,
                                             num_workers=loader_workers(self.opt, self.world_size),
                                             generator=torch.Generator().manual_seed(int(self.opt.seed)))
        own = next(netG.parameters()).device
        was_training = netG.training
        netG.to(device).eval()
        per_image, fakes, reals = [], [], []
        devices = [device] if device.type == "cuda" else []
        try:
            for (k, idx), batch in zip(mine, loader):
                segmap, codes = inputs(batch)
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(_batch_seed(self.opt.seed, k))
                    generated = netG(segmap, codes)
                fake, real = tensor2im(generated), tensor2im(batch["image"])
                for i, f, r in zip(idx, fake, real):
                    per_image.append((i, metrics.reconstruction_metrics(f, r,
                                                                        ssim_variant=self.opt.eval_ssim_variant)))
                if self.fid_model is not None:
                    fakes.extend(fake)
                    if need_real_acts:
                        reals.extend(real)
        finally:
            netG.train(was_training)
            netG.to(own)
        fake_acts = real_acts = None
        if self.fid_model is not None:
            fid_batch = max(1, min(16, self.batch_size))
            fake_acts = metrics.inception_activations_of_arrays(fakes, self.fid_model, fid_batch, device)
            if need_real_acts:
                real_acts = metrics.inception_activations_of_arrays(reals, self.fid_model, fid_batch, device)
        indices = [i for _, idx in mine for i in idx]
        self.last_local_indices = indices
        return per_image, (indices, fake_acts), (indices, real_acts)

    def score(self, netG, inputs, device):
        """Mean SSIM / PSNR / RMSE (and FID) of ``netG`` on the held-out set, identical on every rank.

        ``inputs(batch) -> (segmap, codes)`` on ``device``. Returns a dict
        ``{"ssim", "psnr", "rmse", ["fid"], "count"}``.
        """
        need_real = self.fid_model is not None and self._real_acts is None
        local = self._score_local(netG, inputs, device, need_real)
        gathered = dist_util.all_gather_objects(local)
        per_image = sorted((item for part in gathered for item in part[0]), key=lambda t: t[0])
        summary = metrics.summarise([m for _, m in per_image])
        out = {"ssim": summary["ssim"], "psnr": summary["psnr"], "rmse": summary["rmse"],
               "count": summary["count"]}
        if self.fid_model is not None:
            if need_real:
                self._real_acts = _ordered_activations([part[2] for part in gathered])
            out["fid"] = metrics.fid_from_activations(_ordered_activations([part[1] for part in gathered]),
                                                      self._real_acts)
        return out

    # ------------------------------------------------------------------ one evaluation
    def run(self, step, epoch, generators, inputs):
        """Score ``generators`` at global ``step`` of ``epoch``; keep the best (rank 0 writes). Call on every rank.

        ``generators``: ``{"raw": module, "ema": module or None}`` (the EMA
        generator already prepared); ``inputs(batch) -> (segmap, codes)`` on
        the training device. Returns an :class:`EvalResult`: ``values``
        (``ssim``, ``psnr``, ``rmse``, ``fid``, and ``ema_*``), the image
        ``count`` and the kinds whose best record ``improved``.
        """
        values, count = {}, 0
        for kind, prefix in (("raw", ""), ("ema", "ema_")):
            if generators.get(kind) is not None:
                scores = self.score(generators[kind], inputs, self.opt.device)
                count = count or scores["count"]
                values.update({prefix + k: v for k, v in scores.items() if k != "count"})
        improved = []
        for kind, prefix in (("raw", ""), ("ema", "ema_")):
            value = values.get(prefix + self.metric)
            if (prefix + self.metric) in values and is_better(self.metric, value, _value(self.best[kind])):
                self.best[kind] = {"value": value, "step": int(step), "epoch": int(epoch)}
                improved.append(kind)
        self.last_step, self.last_values = step, dict(values)
        self.history.append((int(step), dict(values)))
        if self.rank == 0:
            self._write_best(generators, improved)
        return EvalResult(values, count, improved)

    def _write_best(self, generators, improved):
        if not improved:
            return
        folder = os.path.join(self.opt.checkpoints_dir, self.opt.name)
        os.makedirs(folder, exist_ok=True)
        for kind in improved:
            net = "G" if kind == "raw" else ckpt.EMA_NET
            ckpt.save_network(generators[kind], ckpt.network_path(folder, "best", net))
        record = {"metric": self.metric, "higher_is_better": METRICS[self.metric],
                  "eval_dir": os.path.abspath(self.opt.eval_dir), **self.best}
        write_text_atomic(os.path.join(folder, BEST_FILE), json.dumps(record, indent=2) + "\n")

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """The best-so-far record (saved in the training state)."""
        return {"metric": self.metric, "best": {k: (dict(v) if v else None) for k, v in self.best.items()}}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`'s result (None: a run without evaluation so far)."""
        if not state:
            return
        if state.get("metric") != self.metric:
            if self.rank == 0:
                print(f"note: the saved best checkpoints were chosen by {state.get('metric')}; "
                      f"--eval_metric {self.metric} starts a new record")
            return
        self.best = {k: (dict(v) if v else None) for k, v in state.get("best", {}).items()}
        self.best.setdefault("raw", None)
        self.best.setdefault("ema", None)


def _value(record):
    return None if record is None else record["value"]


def _batch_seed(seed, k):
    """Seed of the noise of held-out batch ``k`` (independent of the number of processes)."""
    return (int(seed) * 1_000_003 + 7919 * (int(k) + 1)) % (2 ** 63 - 1)


def _ordered_activations(parts):
    """Concatenate ``[(indices, activations)]`` from all ranks in index order -> ``(N, D)``."""
    indices = [i for idx, _ in parts for i in idx]
    acts = np.concatenate([a for _, a in parts if a is not None and len(a)], axis=0)
    return acts[np.argsort(indices, kind="stable")]


def build_evaluator(opt, batch_size, rank=0, world_size=1, log=print):
    """A :class:`TrainingEvaluator` when ``--eval_dir`` is set, else None."""
    if not opt.eval_dir:
        return None
    return TrainingEvaluator(opt, batch_size, rank=rank, world_size=world_size, log=log)
