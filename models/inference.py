"""The one inference-model loader: ``test.py``, ``mix_styles.py``, the editor and library users.

:func:`load_inference_model` builds the model of the options (``--model``),
loads the generator of ``--which_epoch`` from ``checkpoints_dir/name`` (this
project's or the original release's layout; with ``--use_ema`` the averaged
generator ``<which_epoch>_net_G_ema.pth``), prints what was ignored in a
release file, moves it to ``opt.device`` and puts it in eval mode.
"""
import os

from models import create_model
from models.checkpoint_compat import load_generator_weights
from models.checkpoints import generator_path


def load_inference_model(opt, log=print):
    """The model of ``opt`` with the generator weights of ``opt.which_epoch`` (``opt.use_ema``: the EMA).

    ``opt`` holds the test options (``checkpoints_dir``, ``name``,
    ``which_epoch``, ``use_ema``, ``device`` and the architecture flags).
    ``log`` prints the notes about ignored release tensors. Returns the model
    in eval mode on ``opt.device``. Raises :class:`util.errors.CheckpointError`
    naming the file when it is missing, truncated or does not fit.
    """
    model = create_model(opt).to(opt.device)
    path = generator_path(os.path.join(opt.checkpoints_dir, opt.name), opt.which_epoch, opt.use_ema)
    for note in load_generator_weights(model.netG, path):
        log(f"note: {path}: {note}")
    return model.eval()
