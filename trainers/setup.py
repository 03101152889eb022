"""Building a training run from its options: data, model, evaluator, trainer, schedule, and the loaded state.

:func:`build_training` makes every part with its collaborators passed in
(the EMA generator's data and the evaluator go to the trainer's constructor);
:func:`restore` loads ``--init_from`` / ``--continue_train`` on every rank and
returns where the run starts. Both are called on every rank, in this order.
"""
import random
from dataclasses import dataclass

import numpy as np
import torch

from data.loader import create_dataloader
from models import create_model
from models.checkpoints import checkpoint_sizes, format_bytes
from trainers.evaluator import build_evaluator
from trainers.parallel import seed_rank_noise
from trainers.rank_agreement import load_on_every_rank
from trainers.schedule import TrainingSchedule
from trainers.superstylenet_trainer import SuperStyleNetTrainer


@dataclass
class TrainingRun:
    """The parts of one run: ``loader``, ``trainer``, ``evaluator`` (or None), ``schedule``."""
    loader: object
    trainer: SuperStyleNetTrainer
    evaluator: object
    schedule: TrainingSchedule


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and CUDA) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def build_training(opt, rank, world_size, model=None, log=print):
    """Every part of the run of ``opt`` on this rank (``log``: rank 0's lines, a no-op elsewhere).

    ``model``: a prebuilt model (tests: float64, frozen noise), else built
    from ``opt``. The model is built before the evaluator, and each rank's
    noise stream is seeded after the model, so that every rank holds the
    same initial weights.
    """
    loader = create_dataloader(opt, rank=rank, world_size=world_size)
    steps_per_epoch = loader.sampler.batches_per_epoch()
    log(f"dataset [{type(loader.dataset).__name__}] of size {len(loader.dataset)}: {steps_per_epoch} steps per "
        f"epoch on {world_size} process(es), device {opt.device}")
    model = create_model(opt) if model is None else model
    seed_rank_noise(opt.seed, rank)  # the same weights on every rank, a different noise stream on each
    evaluator = build_evaluator(opt, loader.batch_size, rank, world_size)  # None without --eval_dir
    ddp_ids = False
    if world_size > 1:
        ddp_ids = [opt.device.index] if opt.gpu_ids else None
    trainer = SuperStyleNetTrainer(opt, model=model, ddp_device_ids=ddp_ids,
                                   ema_data=(loader.dataset, loader.batch_size), evaluator=evaluator)
    sizes = checkpoint_sizes(trainer.model.netG, trainer.model.netD, ema=trainer.ema is not None)
    log("checkpoint files: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in sizes.items())
        + " (the training state for 'latest' only)")
    schedule = TrainingSchedule.from_options(opt, steps_per_epoch, evaluate=evaluator is not None)
    return TrainingRun(loader, trainer, evaluator, schedule)


def restore(run, opt, log=print):
    """Load ``--init_from`` and ``--continue_train`` on every rank; returns the start ``(epoch, epoch_iter)``.

    Every rank loads its own files (machines may have their own disks), and
    all must then hold the same state (:func:`trainers.rank_agreement.load_on_every_rank`).
    """
    trainer = run.trainer
    if opt.init_from:
        load_on_every_rank(lambda: trainer.init_from(opt.init_from, opt.which_epoch, log=log),
                           trainer.held_state, lambda: trainer.loaded_files, f"--init_from {opt.init_from}")
    if not opt.continue_train:
        return run.schedule.start()
    steps_per_epoch = run.schedule.steps_per_epoch
    epoch, epoch_iter, exact = load_on_every_rank(
        lambda: trainer.resume(opt.which_epoch, steps_per_epoch), trainer.held_state,
        lambda: trainer.loaded_files, f"--continue_train --which_epoch {opt.which_epoch}")
    start = run.schedule.start((epoch, epoch_iter))
    log(f"resuming from '{opt.which_epoch}': epoch {start[0]}, iteration {start[1]}, "
        f"global step {trainer.global_step}")
    if not exact:
        log(f"note: '{opt.which_epoch}' is an epoch snapshot (net_G / net_D only, as in the release): "
            "the optimiser states start afresh, so this is not an exact continuation; "
            "--which_epoch latest resumes exactly")
    return start
