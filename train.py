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

from options.train_options import TrainOptions
from trainers.loop import run_training
from trainers.setup import build_training, restore, seed_everything
from trainers.visualizer import Visualizer
from util import distributed as dist_util
from util.cli import run_cli
from util.errors import OptionError


def main(argv=None, model=None):
    """Train with command-line ``argv`` (default ``sys.argv[1:]``); returns the trainer.

    ``model``: a prebuilt model (tests: float64, frozen noise). When the
    command line asks for several processes (``--gpu_ids 0,1,...`` or
    ``--cpu_processes N``) and none runs yet, this process starts them
    (:func:`util.distributed.launch`), waits, and returns None.
    """
    options, argv = TrainOptions(), list(sys.argv[1:] if argv is None else argv)
    slurm = dist_util.adopt_slurm_environment()  # srun with one task per GPU: SLURM_* -> torchrun's variables
    opt = options.parse(argv)
    nprocs = dist_util.processes_to_launch(opt)
    if nprocs:  # one process per GPU (or per --cpu_processes), as torchrun would start them
        if model is not None:
            raise OptionError("train.main(model=...) runs in one process; it cannot start several")
        where = ", ".join(f"cuda:{i}" for i in opt.gpu_ids) if opt.gpu_ids else f"{nprocs} CPU processes (gloo)"
        print(f"starting {nprocs} training processes on {where}; global batch {opt.batchSize}, "
              f"{opt.batchSize // nprocs} per process")
        dist_util.launch(main, argv, nprocs)
        return None
    rank, world_size, _ = dist_util.init_distributed(use_cuda=bool(opt.gpu_ids), device=opt.device)
    log = print if rank == 0 else (lambda _: None)
    if rank == 0:
        options.print_options(opt)
    if slurm:
        log(f"SLURM job step: {world_size} tasks, rendezvous at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}")
    seed_everything(opt.seed)
    run = build_training(opt, rank, world_size, model=model, log=log)
    start = restore(run, opt, log=log)
    if rank == 0:  # nothing is written under checkpoints/<name> before everything above was validated
        options.save_options(opt)
    visualizer = Visualizer(opt, enabled=rank == 0)
    epoch = run_training(run.trainer, run.loader, run.schedule, start, visualizer, run.evaluator)
    dist_util.barrier()
    run.trainer.wait_for_saves()  # rank 0: the last files on disk (the other ranks do not wait for them)
    visualizer.close()
    log(f"training finished at epoch {epoch}, global step {run.trainer.global_step}")
    return run.trainer


if __name__ == "__main__":
    sys.exit(run_cli(main, cleanup=dist_util.cleanup))
