"""Train SuperStyleNet.

Single process (CPU or one GPU)::

    python train.py --name celeba --batchSize 32 --load_size 256 --crop_size 256 \
        --dataset_mode custom --label_nc 19 --label_dir datasets/celeba/train/labels \
        --image_dir datasets/celeba/train/images --instance_dir datasets/celeba/train/codes

Several GPUs, as in the release: ``--gpu_ids 0,1,2,3`` starts one process per
listed GPU (DistributedDataParallel; ``--batchSize`` is the global batch).
``torchrun --nproc_per_node N train.py ...`` gives the same run and also spans
several machines; so does ``srun`` with one task per GPU (the ``SLURM_*``
variables are read). See docs/training.md.
"""
import os
import sys
import time

import torch
from tqdm import tqdm

from data.loader import create_dataloader
from data.preflight import check_headers
from models.checkpoints import checkpoint_sizes, format_bytes, remove_interrupted_saves
from options.train_options import TrainOptions
from trainers.evaluator import build_evaluator
from trainers.file_checks import check_disk_space, check_training_files, on_rank0_for_all
from trainers.parallel import seed_rank_noise
from trainers.rank_agreement import load_on_every_rank
from trainers.superstylenet_trainer import SuperStyleNetTrainer
from trainers.visualizer import Visualizer
from util import distributed as dist_util
from util import run_lock
from util.cli import run_cli
from util.threads import cap_threads
from util.errors import OptionError


def seed_everything(seed):
    """Seed Python, numpy and torch (CPU and CUDA) with ``seed``."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def snapshot_due(opt, epoch):
    """True when the end of ``epoch`` writes the epoch snapshot ``{epoch}_net_*.pth``."""
    return epoch % opt.save_epoch_freq == 0 or epoch == opt.niter + opt.niter_decay


@run_lock.releasing  # the run lock taken below is released however main ends
def main(argv=None, model=None):
    """Run training with command-line ``argv`` (default ``sys.argv[1:]``); returns the trainer.

    ``model`` (optional) is a prebuilt model (tests use it: float64, frozen noise).
    When the command line asks for several processes (``--gpu_ids 0,1,...``
    or ``--cpu_processes N``) and none is running yet, this process starts
    them (:func:`util.distributed.launch`), waits, and returns None; the
    results are the checkpoint files.
    """
    options = TrainOptions()
    argv = list(sys.argv[1:] if argv is None else argv)
    slurm = dist_util.adopt_slurm_environment()  # srun with one task per GPU: SLURM_* -> torchrun's variables
    opt = options.parse(argv)
    check_training_files(opt, vgg=model is None)  # VGG19, --eval_dir, --init_from, ...: before any network
    nprocs = dist_util.processes_to_launch(opt)
    if nprocs:  # --gpu_ids 0,1,... (or --cpu_processes N): one process per GPU, as torchrun would start
        if model is not None:
            raise OptionError("train.main(model=...) runs in one process; it cannot start several")
        where = ", ".join(f"cuda:{i}" for i in opt.gpu_ids) if opt.gpu_ids else f"{nprocs} CPU processes (gloo)"
        print(f"starting {nprocs} training processes on {where}; global batch {opt.batchSize}, "
              f"{opt.batchSize // nprocs} per process")
        dist_util.launch(main, argv, nprocs)
        return None
    rank, world_size, local_rank = dist_util.init_distributed(use_cuda=bool(opt.gpu_ids), device=opt.device)
    cap_threads()  # torch's threads for this machine's cores / local processes (kept: OMP_NUM_THREADS)
    main_process = rank == 0
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    # one run per checkpoint folder (rank 0 holds the lock; its error stops every rank); what a killed save
    # left is removed under the lock
    on_rank0_for_all(main_process, lambda: run_lock.acquire(folder, take_over=opt.take_over_lock),
                     lambda: remove_interrupted_saves(folder))
    if main_process:
        options.print_options(opt)
        if slurm:
            print(f"SLURM job step: {world_size} tasks, rendezvous at {os.environ['MASTER_ADDR']}:"
                  f"{os.environ['MASTER_PORT']}")
    seed_everything(opt.seed)

    # a file that fails to decode later is skipped and listed in skipped_files.txt next to the checkpoints
    loader = create_dataloader(opt, rank=rank, world_size=world_size,
                               skip_record=os.path.join(opt.checkpoints_dir, opt.name, "skipped_files.txt"))
    sampler, dataset = loader.sampler, loader.dataset
    check_headers(dataset, log=print if main_process else (lambda _: None))  # every file, before any output
    steps_per_epoch = sampler.batches_per_epoch()
    if main_process:
        print(f"dataset [{type(dataset.dataset).__name__}] of size {len(dataset)}: {steps_per_epoch} steps per "
              f"epoch on {world_size} process(es), device {opt.device}")

    # the checkpoints of the whole run (latest and every snapshot) must fit on the disk
    on_rank0_for_all(main_process, lambda: check_disk_space(opt, steps_per_epoch, snapshot_due, model))

    ddp_ids = False
    if world_size > 1:
        ddp_ids = [opt.device.index] if opt.gpu_ids else None
    trainer = SuperStyleNetTrainer(opt, model=model, ddp_device_ids=ddp_ids)
    seed_rank_noise(opt.seed, rank)  # the same weights on every rank, a different noise stream on each
    trainer.attach_ema_data(dataset, loader.batch_size)
    trainer.evaluator = build_evaluator(opt, loader.batch_size, rank, world_size)  # None without --eval_dir
    if main_process:
        sizes = checkpoint_sizes(trainer.model.netG, trainer.model.netD, ema=trainer.ema is not None)
        print("checkpoint files: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in sizes.items())
              + " (the training state for 'latest' only)")

    start_epoch, start_iter = 1, 0
    # every rank loads its own files (machines may have their own disks); all must hold the same state
    if opt.init_from:
        load_on_every_rank(
            lambda: trainer.init_from(opt.init_from, opt.which_epoch, log=print if main_process else (lambda _: None)),
            trainer.held_state, lambda: trainer.loaded_files, f"--init_from {opt.init_from}")
    if opt.continue_train:
        epoch, epoch_iter, exact = load_on_every_rank(
            lambda: trainer.resume(opt.which_epoch, steps_per_epoch), trainer.held_state,
            lambda: trainer.loaded_files, f"--continue_train --which_epoch {opt.which_epoch}")
        start_epoch, start_iter = (epoch + 1, 0) if epoch_iter >= steps_per_epoch else (epoch, epoch_iter)
        if main_process:
            print(f"resuming from '{opt.which_epoch}': epoch {start_epoch}, iteration {start_iter}, "
                  f"global step {trainer.global_step}")
        trainer.repair_latest(opt.which_epoch)  # rank 0: latest_net_* of an interrupted save, from the state
        if main_process:
            if trainer.resumed_batch_size not in (None, opt.batchSize):
                print(f"note: '{opt.which_epoch}' was saved with --batchSize {trainer.resumed_batch_size}; with "
                      f"--batchSize {opt.batchSize} an epoch has {steps_per_epoch} steps, so the run goes on at "
                      f"iteration {start_iter} counted in batches of {opt.batchSize} (image "
                      f"{start_iter * opt.batchSize} of the epoch, not {start_iter * trainer.resumed_batch_size}), "
                      f"and --max_steps, --save_latest_freq and the global step count steps of "
                      f"{opt.batchSize} images: not an exact continuation")
            if not exact:
                print(f"note: '{opt.which_epoch}' is an epoch snapshot (net_G / net_D only, as in the release): "
                      "the optimiser states start afresh, so this is not an exact continuation; "
                      "--which_epoch latest resumes exactly")
    # Nothing is written under checkpoints/<name> before the options, the data, the model (VGG weights)
    # and the resume state have been validated: a run that fails validation leaves no folder behind.
    if main_process:
        options.save_options(opt)
    visualizer = Visualizer(opt, enabled=main_process)

    total_epochs = opt.niter + opt.niter_decay
    stop = False
    epoch = start_epoch
    saved_latest_at = None  # global step of the last 'latest' save (no second write of the same state)
    last_print, steps_since_print = time.time(), 0
    for epoch in range(start_epoch, total_epochs + 1):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        first = start_iter if epoch == start_epoch else 0
        sampler.set_start_batch(first)
        trainer.set_epoch_lr(epoch)
        epoch_start = time.time()
        epoch_iter = first
        bar = tqdm(loader, total=steps_per_epoch, initial=first, desc=f"epoch {epoch}/{total_epochs}",
                   disable=not main_process, leave=False, dynamic_ncols=True)
        for data in bar:
            trainer.train_step(data)
            epoch_iter += 1
            steps_since_print += 1
            step = trainer.global_step
            if step % opt.print_freq == 0:
                # the only point where losses are read back from the device (one sync per print)
                losses = dist_util.all_reduce_mean(trainer.latest_losses())
                now = time.time()
                t = (now - last_print) / (steps_since_print * opt.batchSize)  # s per image since the last print
                last_print, steps_since_print = now, 0
                if main_process:
                    visualizer.print_current_errors(epoch, epoch_iter, losses, t, step=step)
                    visualizer.plot_current_errors(losses, step)
                    visualizer.plot_speed(trainer.optimizer_G.param_groups[0]["lr"],
                                          trainer.optimizer_D.param_groups[0]["lr"], t * opt.batchSize,
                                          opt.batchSize, step)
            if step % opt.display_freq == 0 and main_process and trainer.generated is not None:
                visualizer.display_current_results(
                    {"input_label": data["label"], "synthesized_image": trainer.generated,
                     "real_image": data["image"]}, epoch, step)
            max_reached = opt.max_steps and step >= opt.max_steps
            last = max_reached or (epoch == total_epochs and epoch_iter >= steps_per_epoch)
            if trainer.evaluator is not None and trainer.evaluator.due(step, last):
                trainer.evaluator.run(trainer, epoch, epoch_iter, visualizer)  # on every rank (sharded)
            # the save of an epoch's last step waits for the epoch's end, where its snapshot is written first
            if (step % opt.save_latest_freq == 0 or max_reached) and not (
                    epoch_iter >= steps_per_epoch and snapshot_due(opt, epoch)):
                trainer.save("latest", epoch, epoch_iter)  # on every rank (each one's RNG state); rank 0 writes
                saved_latest_at = step
            if max_reached or (opt.debug and epoch_iter - first >= 3):
                stop = bool(max_reached)
                break
        bar.close()
        if stop and epoch_iter < steps_per_epoch:  # stopped inside the epoch
            break
        if snapshot_due(opt, epoch):  # as the release did
            if saved_latest_at != trainer.global_step:
                # the snapshot's networks (no training state), then latest_*, then the state saying the epoch is done
                trainer.save("latest", epoch, epoch_iter, snapshot=str(epoch))
                saved_latest_at = trainer.global_step
            else:
                trainer.save(str(epoch), epoch, epoch_iter, save_state=False)
        if main_process:
            print(f"end of epoch {epoch}/{total_epochs}: {time.time() - epoch_start:.1f} s, "
                  f"lr {trainer.current_lr:.3g}")
        if stop:
            break
        dist_util.barrier()
    dist_util.barrier()
    trainer.wait_for_saves()  # rank 0: the last files on disk (the other ranks do not wait for them)
    visualizer.close()
    if main_process:
        print(f"training finished at epoch {epoch}, global step {trainer.global_step}")
    return trainer


if __name__ == "__main__":
    sys.exit(run_cli(main, cleanup=dist_util.cleanup))
