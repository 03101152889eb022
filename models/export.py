"""Half-precision generator files for inference (``scripts/export_generator.py``).

An export is a ``torch.save`` dict, loadable with ``weights_only``:

* ``format``: :data:`EXPORT_FORMAT`, ``version``: :data:`EXPORT_VERSION`;
* ``state_dict``: the generator's native state_dict with every parameter
  stored as float16 and every buffer (BatchNorm statistics, spectral-norm
  vectors, the GSAS coefficient bias) kept as it was (they are a few
  thousand values);
* ``architecture``: the flags that shape the generator (:data:`ARCHITECTURE_FLAGS`),
  ``source``: where the weights came from (file, ``which_epoch``, EMA or not, SHA-256).

:func:`models.checkpoint_compat.load_generator_weights` recognises the format,
so ``test.py``, ``mix_styles.py`` and the editor load an export through
:func:`models.inference.load_inference_model` like any generator file; the
float16 values are converted to the model's dtype (float32) on loading, so
only the weights are rounded, not the arithmetic.
"""
import torch

from util.errors import CheckpointError
from util.torch_io import torch_save_atomic

EXPORT_FORMAT = "superstylenet-generator-fp16"
EXPORT_VERSION = 1
ARCHITECTURE_FLAGS = ("label_nc", "contain_dontcare_label", "semantic_nc", "ngf", "num_upsampling_layers",
                      "norm_G", "crop_size", "aspect_ratio", "output_nc", "model")
FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504


def half_state(state, parameter_names):
    """``state`` with the entries named in ``parameter_names`` converted to float16 (buffers unchanged).

    Raises :class:`CheckpointError` naming the tensors whose values are not
    finite or exceed float16's range (|x| > 65504).
    """
    out, bad = {}, []
    for key, value in state.items():
        if key in parameter_names and value.is_floating_point():
            finite = torch.isfinite(value).all() and (value.abs().max() <= FP16_MAX if value.numel() else True)
            if not finite:
                bad.append(key)
            out[key] = value.detach().to(torch.float16).cpu().contiguous()
        else:
            out[key] = value.detach().cpu().contiguous()
    if bad:
        raise CheckpointError(f"cannot export to float16: {len(bad)} tensors hold non-finite values or values "
                              f"beyond ±{FP16_MAX:g}: {', '.join(sorted(bad)[:8])}")
    return out


def save_export(path, state, architecture, source):
    """Atomically write an export (module docstring) to ``path``; returns the payload's tensor bytes."""
    payload = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
               "architecture": {k: architecture[k] for k in ARCHITECTURE_FLAGS if k in architecture},
               "source": dict(source), "state_dict": state}
    torch_save_atomic(payload, path)
    return sum(v.numel() * v.element_size() for v in state.values())


def is_export(obj):
    """True when ``obj`` (a loaded file) is an export of :data:`EXPORT_FORMAT`."""
    return isinstance(obj, dict) and obj.get("format") == EXPORT_FORMAT


def unpack_export(obj, path):
    """``(state_dict, metadata)`` of a loaded export; raises :class:`CheckpointError` naming ``path``."""
    if obj.get("version") != EXPORT_VERSION:
        raise CheckpointError(f"{path}: generator export version {obj.get('version')!r}; this project reads "
                              f"version {EXPORT_VERSION} (export it again with scripts/export_generator.py)")
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: generator export without a state_dict")
    meta = {"architecture": dict(obj.get("architecture") or {}), "source": dict(obj.get("source") or {})}
    return state, meta


def describe_architecture(architecture):
    """``"label_nc 19, ngf 64, ..."`` of an export's recorded flags, for messages."""
    return ", ".join(f"{k} {architecture[k]}" for k in ARCHITECTURE_FLAGS if k in architecture)
