"""Building a training run from its options: processes, data, model, evaluator, trainer, schedule, loaded state.

:func:`launch_processes` starts the processes of a multi-process run and
:func:`start_process` joins one to the run;
:func:`build_training` makes every part with its collaborators passed in
(the EMA generator's data and the evaluator go to the trainer's constructor);
:func:`restore` loads ``--init_from`` / ``--continue_train`` on every rank and
returns where the run starts. Both are called on every rank, in this order.
"""
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from data.loader import create_dataloader
from data.preflight import check_headers
from models import create_model
from models.checkpoints import checkpoint_sizes, format_bytes, remove_interrupted_saves
from trainers.evaluator import build_evaluator
from trainers.file_checks import check_disk_space, check_training_files, on_every_rank_for_all, on_rank0_for_all
from trainers.parallel import seed_rank_noise
from trainers.rank_agreement import load_on_every_rank
from trainers.schedule import TrainingSchedule
from trainers.superstylenet_trainer import SuperStyleNetTrainer
from util import distributed as dist_util
from util import run_lock
from util.errors import OptionError
from util.threads import cap_threads


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


def launch_processes(main, opt, argv, model=None):
    """Start ``main(argv)`` in one process per GPU (or per ``--cpu_processes``), as torchrun would.

    Returns True when it did (the processes have ended), False when this process trains alone.
    """
    nprocs = dist_util.processes_to_launch(opt)
    if not nprocs:
        return False
    if model is not None:
        raise OptionError("train.main(model=...) runs in one process; it cannot start several")
    where = ", ".join(f"cuda:{i}" for i in opt.gpu_ids) if opt.gpu_ids else f"{nprocs} CPU processes (gloo)"
    print(f"starting {nprocs} training processes on {where}; global batch {opt.batchSize}, "
          f"{opt.batchSize // nprocs} per process")
    dist_util.launch(main, argv, nprocs)
    return True


def start_process(opt, options, slurm):
    """Join the run and cap torch's threads; returns ``(rank, world_size, log)`` (``log`` prints on rank 0 only).

    Rank 0 takes the run lock of the checkpoint folder (released by
    :func:`util.run_lock.releasing` around ``train.main``), removes what an
    interrupted save left, and prints the options (and the SLURM job step).
    """
    rank, world_size, _ = dist_util.init_distributed(use_cuda=bool(opt.gpu_ids), device=opt.device)
    cap_threads()  # torch's threads for this machine's cores / local processes (kept: OMP_NUM_THREADS)
    if world_size > 1:  # each machine checks its own files (VGG19, --eval_dir); a single process: train.py
        on_every_rank_for_all(lambda: check_training_files(opt, vgg=True))
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    # one run per checkpoint folder (rank 0 holds the lock; its error stops every rank); what a killed save
    # left is removed under the lock
    on_rank0_for_all(rank == 0, lambda: run_lock.acquire(folder, take_over=opt.take_over_lock),
                     lambda: remove_interrupted_saves(folder))
    if rank != 0:
        return rank, world_size, lambda _: None
    options.print_options(opt)
    if slurm:
        print(f"SLURM job step: {world_size} tasks, rendezvous at {os.environ['MASTER_ADDR']}:"
              f"{os.environ['MASTER_PORT']}")
    return rank, world_size, print


def build_training(opt, rank, world_size, model=None, log=print):
    """Every part of the run of ``opt`` on this rank (``log``: rank 0's lines, a no-op elsewhere).

    ``model``: a prebuilt model (tests: float64, frozen noise), else built
    from ``opt``. The model is built before the evaluator, and each rank's
    noise stream is seeded after the model, so that every rank holds the
    same initial weights.
    """
    # a file that fails to decode later is skipped and listed in skipped_files.txt next to the checkpoints
    loader = create_dataloader(opt, rank=rank, world_size=world_size,
                               skip_record=os.path.join(opt.checkpoints_dir, opt.name, "skipped_files.txt"))
    check_headers(loader.dataset, log=log)  # every file, before any output
    steps_per_epoch = loader.sampler.batches_per_epoch()
    schedule = TrainingSchedule.from_options(opt, steps_per_epoch, evaluate=bool(opt.eval_dir))
    log(f"dataset [{type(loader.dataset.dataset).__name__}] of size {len(loader.dataset)}: {steps_per_epoch} steps "
        f"per epoch on {world_size} process(es), device {opt.device}")
    # latest + every snapshot must fit (checked on rank 0; its error stops every rank)
    on_rank0_for_all(rank == 0, lambda: check_disk_space(opt, steps_per_epoch,
                                                         lambda _, epoch: schedule.snapshot_due(epoch), model))
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
    trainer.repair_latest(opt.which_epoch)  # rank 0: latest_net_* of an interrupted save, from the state
    if trainer.resumed_batch_size not in (None, opt.batchSize):
        log(f"note: '{opt.which_epoch}' was saved with --batchSize {trainer.resumed_batch_size}; with "
            f"--batchSize {opt.batchSize} an epoch has {steps_per_epoch} steps, so the run goes on at "
            f"iteration {start[1]} counted in batches of {opt.batchSize} (image "
            f"{start[1] * opt.batchSize} of the epoch, not {start[1] * trainer.resumed_batch_size}), "
            f"and --max_steps, --save_latest_freq and the global step count steps of "
            f"{opt.batchSize} images: not an exact continuation")
    if not exact:
        log(f"note: '{opt.which_epoch}' is an epoch snapshot (net_G / net_D only, as in the release): "
            "the optimiser states start afresh, so this is not an exact continuation; "
            "--which_epoch latest resumes exactly")
    return start
