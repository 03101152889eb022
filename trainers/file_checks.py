"""Every file and folder a training option names, checked before any network is built.

``train.py`` calls :func:`check_training_files` right after parsing: a
missing VGG19 file, ``--eval_dir`` folder, Inception file (for
``--eval_metric fid``), ``--init_from``
generator or ``--continue_train`` checkpoint is reported at once, with the
message of the code that would load it later. :func:`check_disk_space`
stops a run whose checkpoints will not fit on the disk.
"""
import os

from evaluation.metrics import resolve_inception_path
from models import checkpoints as ckpt
from models.networks.loss import resolve_vgg19_path
from trainers.evaluator import eval_options
from util import distributed as dist_util
from util.disk import check_free_space
from util.errors import USER_ERRORS, CheckpointError, OptionError


def check_training_files(opt, vgg=True):
    """Raise the loaders' error (naming the file or flag) for the first missing file an option of ``opt`` names.

    ``vgg=False`` skips the VGG19 file (a prebuilt model brings its own).
    In a process of a multi-process run the ``--init_from`` and
    ``--continue_train`` files are left to
    :func:`trainers.rank_agreement.load_on_every_rank`, which stops every
    rank or none (``train.py``'s launcher checks them before it starts the
    processes).
    """
    if vgg and not opt.no_vgg_loss:
        resolve_vgg19_path(opt.vgg_path)
    if opt.eval_dir:
        eval_options(opt)  # its labels/images/codes folders
    if opt.eval_dir and opt.eval_metric == "fid":  # otherwise FID is skipped with a note when the file is missing
        try:
            resolve_inception_path(opt.inception_path)
        except CheckpointError as e:
            raise OptionError(f"--eval_metric fid: FID cannot be computed: {e}") from e
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return  # several processes: their checkpoint files are checked together (trainers.rank_agreement)
    if opt.init_from:
        path = ckpt.network_path(opt.init_from, opt.which_epoch, "G")
        if not os.path.isfile(path):
            raise CheckpointError(f"--init_from {opt.init_from}: {path}: generator weights not found")
    if opt.continue_train:
        folder = os.path.join(opt.checkpoints_dir, opt.name)
        which = str(opt.which_epoch)
        state = ckpt.train_state_path(folder, which)
        nets = [ckpt.network_path(folder, which, n) for n in ("G", "D")]
        if os.path.isfile(state):
            return
        if not which.isdigit():
            raise CheckpointError(f"{state}: training state not found; --continue_train --which_epoch {which} "
                                  f"needs it in {folder}")
        for path in nets:  # an epoch snapshot, as SuperStyleNetTrainer.resume reads it
            if not os.path.isfile(path):
                raise CheckpointError(f"{path}: not found; --continue_train --which_epoch {which} needs "
                                      f"{which}_net_G.pth and {which}_net_D.pth (or {which}_train_state.pth)")


def planned_snapshot_epochs(opt, steps_per_epoch, snapshot_due):
    """The epochs whose snapshot this run may write (``snapshot_due(opt, epoch)``), up to ``--max_steps``."""
    last = opt.niter + opt.niter_decay
    if opt.max_steps:
        last = min(last, -(-opt.max_steps // max(1, steps_per_epoch)))
    return [e for e in range(1, last + 1) if snapshot_due(opt, e)]


def check_disk_space(opt, steps_per_epoch, snapshot_due, model=None, log=print):
    """Stop (:class:`util.errors.OutputError`) when the run's checkpoints will not fit on the disk.

    Counts ``latest_*`` and every snapshot to be written (sizes from the
    networks, built on the meta device unless ``model`` is given), less the
    files already there that they replace; ``--ignore_disk_space`` skips the
    check. Returns the planned files (path -> bytes).
    """

    ema = opt.ema_decay > 0
    sizes = (ckpt.configuration_sizes(opt, ema) if model is None
             else ckpt.checkpoint_sizes(model.netG, model.netD, ema=ema))
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    files = ckpt.planned_files(folder, sizes, planned_snapshot_epochs(opt, steps_per_epoch, snapshot_due))
    if opt.ignore_disk_space:
        return files
    check_free_space(folder, files, "--ignore_disk_space", log=log)
    return files


def on_rank0_for_all(main_process, *checks):
    """Run ``checks`` (callables) on rank 0; a user error there is raised on every rank.

    A check that only rank 0 makes (the run lock, the disk space) must not
    leave the other ranks waiting in a collective: rank 0's error (or None)
    is gathered, and every rank raises it as the same type.
    """
    return _agree_on_errors(checks if main_process else (), name_every_rank=False)


def on_every_rank_for_all(*checks):
    """Run ``checks`` on every rank; the first rank's user error is raised on every rank, naming that rank.

    Machines may have their own disks: a file missing on one of them stops
    every rank at once instead of leaving the others in a collective.
    """
    return _agree_on_errors(checks, name_every_rank=True)


def _agree_on_errors(checks, name_every_rank):
    """Run ``checks``; gather each rank's first user error; raise the lowest failing rank's on every rank.

    ``name_every_rank``: every rank raises ``rank R on host H: <message>`` (the same line everywhere);
    otherwise the failing rank raises its own error and the others ``rank R: <message>``.
    """

    error = None
    try:
        for check in checks:
            check()
    except USER_ERRORS as e:
        error = e
    mine = None if error is None else (type(error).__name__, str(error), dist_util.hostname())
    gathered = dist_util.all_gather_objects(mine)
    if error is not None and not name_every_rank:
        raise error
    for rank, item in enumerate(gathered):
        if item is not None:
            kind = {cls.__name__: cls for cls in USER_ERRORS}[item[0]]
            where = f"rank {rank} on host {item[2]}" if name_every_rank else f"rank {rank}"
            raise kind(f"{where}: {item[1]}") from error
