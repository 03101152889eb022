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
import sys

from options.train_options import TrainOptions
from trainers.file_checks import check_training_files
from trainers.loop import run_training
from trainers.setup import build_training, launch_processes, restore, seed_everything, start_process
from trainers.visualizer import Visualizer
from util import distributed as dist_util
from util import run_lock
from util.cli import run_cli


@run_lock.releasing  # the run lock taken below is released however main ends
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
    if not dist_util.is_launched_distributed():  # a rank of a started run: the loads agree on all ranks or fail
        check_training_files(opt, vgg=model is None)  # VGG19, --eval_dir, --init_from, ...: before any network
    if launch_processes(main, opt, argv, model):
        return None
    rank, world_size, log = start_process(opt, options, slurm)
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
