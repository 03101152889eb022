"""The one inference-model loader: ``test.py``, ``mix_styles.py``, the editor and library users.

:func:`load_inference_model` builds the model of the options (``--model``),
loads the generator of ``--which_epoch`` from ``checkpoints_dir/name`` (this
project's layout, the original release's, or a half-precision export of
``scripts/export_generator.py``; with ``--use_ema`` the averaged generator
``<which_epoch>_net_G_ema.pth``), prints what was ignored in a release file,
moves it to ``opt.device`` and puts it in eval mode.
"""
import os

from models import create_model
from models.checkpoint_compat import FORMAT_NAMES, load_generator_file
from models.checkpoints import check_latest_generator, generator_path


def load_inference_model(opt, log=print):
    """The model of ``opt`` with the generator weights of ``opt.which_epoch`` (``opt.use_ema``: the EMA).

    ``opt`` holds the test options (``checkpoints_dir``, ``name``,
    ``which_epoch``, ``use_ema``, ``device`` and the architecture flags).
    ``log`` prints the notes about ignored release tensors. Returns the model
    in eval mode on ``opt.device``, float32 (a half-precision export is
    converted on loading); ``model.checkpoint_info`` says what was loaded
    (``path``, ``format`` and its description ``format_name``, ``use_ema``,
    and an export's ``source`` record). Raises
    :class:`util.errors.CheckpointError` naming the file when it is missing,
    truncated or does not fit.
    """
    path = generator_path(os.path.join(opt.checkpoints_dir, opt.name), opt.which_epoch, opt.use_ema)
    check_latest_generator(path)  # latest_net_G of an interrupted save: refused, with how to repair it
    model = create_model(opt).to(opt.device)
    loaded = load_generator_file(model.netG, path)
    for note in loaded.notes:
        log(f"note: {path}: {note}")
    model.checkpoint_info = {"path": path, "format": loaded.format, "format_name": FORMAT_NAMES[loaded.format],
                             "use_ema": bool(opt.use_ema),
                             "source": (loaded.export or {}).get("source")}
    return model.eval()
