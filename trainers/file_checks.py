"""Every file and folder a training option names, checked before any network is built.

``train.py`` calls :func:`check_training_files` right after parsing: a
missing VGG19 file, ``--eval_dir`` folder, Inception file (for
``--eval_metric fid``), ``--init_from``
generator or ``--continue_train`` checkpoint is reported at once, with the
message of the code that would load it later. :func:`check_disk_space`
stops a run whose checkpoints will not fit on the disk.
"""
import os

from util.errors import CheckpointError, OptionError


def check_training_files(opt, vgg=True):
    """Raise the loaders' error (naming the file or flag) for the first missing file an option of ``opt`` names.

    ``vgg=False`` skips the VGG19 file (a prebuilt model brings its own).
    """
    from models import checkpoints as ckpt

    if vgg and not opt.no_vgg_loss:
        from models.networks.loss import resolve_vgg19_path

        resolve_vgg19_path(opt.vgg_path)
    if opt.eval_dir:
        from trainers.evaluator import eval_options

        eval_options(opt)  # its labels/images/codes folders
    if opt.eval_dir and opt.eval_metric == "fid":  # otherwise FID is skipped with a note when the file is missing
        from evaluation.metrics import resolve_inception_path

        try:
            resolve_inception_path(opt.inception_path)
        except CheckpointError as e:
            raise OptionError(f"--eval_metric fid: FID cannot be computed: {e}") from e
    if opt.init_from:
        path = ckpt.network_path(opt.init_from, opt.which_epoch, "G")
        if not os.path.isfile(path):
            raise CheckpointError(f"--init_from {opt.init_from}: {path}: generator weights not found")
    if opt.continue_train:
        folder = os.path.join(opt.checkpoints_dir, opt.name)
        which = str(opt.which_epoch)
        state = ckpt.train_state_path(folder, which)
        nets = [ckpt.network_path(folder, which, n) for n in ("G", "D")]
        if not os.path.isfile(state) and not (which.isdigit() and all(os.path.isfile(p) for p in nets)):
            needs = (f"{which}_net_G.pth and {which}_net_D.pth (or {which}_train_state.pth)" if which.isdigit()
                     else os.path.basename(state))
            missing = next(p for p in nets if not os.path.isfile(p)) if which.isdigit() else state
            raise CheckpointError(f"{missing}: not found; --continue_train --which_epoch {which} needs {needs} "
                                  f"in {folder}")


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
    from models import checkpoints as ckpt
    from util.disk import check_free_space

    ema = opt.ema_decay > 0
    sizes = (ckpt.configuration_sizes(opt, ema) if model is None
             else ckpt.checkpoint_sizes(model.netG, model.netD, ema=ema))
    folder = os.path.join(opt.checkpoints_dir, opt.name)
    files = ckpt.planned_files(folder, sizes, planned_snapshot_epochs(opt, steps_per_epoch, snapshot_due))
    if opt.ignore_disk_space:
        return files
    check_free_space(folder, files, "--ignore_disk_space", log=log)
    return files
