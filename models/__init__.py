"""The model: :class:`SuperStyleNetModel` behind one ``forward(data, mode)``, its networks
(:mod:`models.networks`) and its checkpoint files (:mod:`models.checkpoints`, release
layout in :mod:`models.checkpoint_compat`).

:data:`MODELS` is the registry that ``--model`` chooses from; :func:`create_model`
builds the chosen model, :func:`models.inference.load_inference_model` a trained
generator ready for synthesis.
"""
from models.superstylenet_model import SuperStyleNetModel

MODELS = {"superstylenet": SuperStyleNetModel}


def create_model(opt, **kwargs):
    """The model of ``opt.model`` (:data:`MODELS`), built from ``opt``; ``kwargs`` go to its constructor."""
    return MODELS[opt.model](opt, **kwargs)
