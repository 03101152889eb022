"""Load generator/discriminator weights from this project's or the original release's state_dicts.

Release generator checkpoints (``latest_net_G.pth``) differ from the native
layout in these ways; the mapping is explicit and tested:

* ``<ace>.fc_mu{j}.weight`` / ``.bias`` (always 19 in the release) are stacked into
  the batched ``<ace>.fc_mu.weight`` (J, 512, 512) / ``.bias`` (J, 512). Release
  layers with j ≥ J are ignored (a note is logged); fewer than J is an error.
* Ignored (with a note), because the release builds but never uses them:
  ``<ace>.Gsas.fc.*`` (an unused Linear(1024, 512)),
  ``<ace>.Spade.param_free_norm.*`` (an unused BatchNorm inside the SPADE branch),
  and, in the blocks without style (up_3, up_4), ``<ace>.blending_gamma``,
  ``<ace>.blending_beta`` and ``<ace>.Gsas.*``.
* Every other key keeps its name and shape.

Half-precision exports (:mod:`models.export`) hold a native state_dict and
load the same way (the values are converted to the model's dtype).

Errors (:class:`util.errors.CheckpointError`) name the file and the keys:
missing or unreadable file, not a state_dict, missing, unexpected or
misshaped tensors.
"""
import collections
import logging
import os
import re

import torch

from models.export import describe_architecture, is_export, unpack_export
from util.torch_io import load_torch_file
from util.errors import CheckpointError

log = logging.getLogger(__name__)

_FC_MU = re.compile(r"^(?P<ace>.+)\.fc_mu(?P<j>\d+)\.(?P<kind>weight|bias)$")
RELEASE_IGNORED_PATTERNS = (
    (re.compile(r"\.Gsas\.fc\.(weight|bias)$"), "unused Linear(1024, 512) inside GSAS"),
    (re.compile(r"\.Spade\.param_free_norm\.(running_mean|running_var|num_batches_tracked)$"),
     "unused BatchNorm inside the SPADE branch"),
)
# Present in the release's style-less ACE layers (up_3), absent natively.
STYLELESS_IGNORED = re.compile(r"\.(blending_gamma|blending_beta|Gsas\.coefficient\.(weight|bias))$")
_MAX_LISTED = 12

GeneratorFile = collections.namedtuple("GeneratorFile", "path format notes export")
GeneratorFile.__doc__ = """What :func:`load_generator_file` loaded: ``path`` (None for a state_dict), ``format``
(``"native"``, ``"release"`` or ``"fp16-export"``), ``notes`` (ignored release tensors) and ``export``
(an export's ``architecture`` and ``source`` records, else None)."""
FORMAT_NAMES = {"native": "this project's layout", "release": "the original release's layout",
                "fp16-export": "half-precision export (scripts/export_generator.py)"}


def _describe(path):
    return path if path is not None else "<in-memory state_dict>"


def _short_list(keys):
    keys = sorted(keys)
    more = f" … and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def read_state_dict(source, with_export=False):
    """Return ``(state_dict, path_or_None)`` from a path or a mapping of tensors.

    A half-precision export is unpacked to its state_dict; with
    ``with_export`` the result is ``(state_dict, path, export metadata or
    None)``. Raises CheckpointError for a missing, truncated or corrupt file,
    or for content that is not a flat mapping of names to tensors. A uniform
    ``module.`` prefix (DataParallel) is stripped.
    """
    path = None
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        state = load_torch_file(path, "checkpoint file")
    else:
        state = source
    export = None
    if is_export(state):
        state, export = unpack_export(state, _describe(path))
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{_describe(path)}: expected a non-empty state_dict (a dict of tensors), "
                              f"got {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f"{_describe(path)}: not a plain state_dict; non-tensor entries: "
                              f"{_short_list(map(str, bad))}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return (dict(state), path, export) if with_export else (dict(state), path)


def is_release_generator_state(state):
    """True when ``state`` uses the release's generator layout (per-class ``fc_mu<j>`` layers etc.)."""
    return any(_FC_MU.match(k) or any(p.search(k) for p, _ in RELEASE_IGNORED_PATTERNS) for k in state)


def convert_release_generator_state(state, native_keys, label_nc, path=None):
    """Map a release generator state_dict onto native keys.

    Args:
        state: release state_dict (tensors, or meta tensors for shape checks).
        native_keys: the target model's state-dict keys.
        label_nc: J, the number of per-class layers the target uses.
        path: file name for messages.
    Returns:
        ``(converted, notes)``: the native state_dict and a list of strings
        describing what was ignored.
    """
    native_keys = set(native_keys)
    converted, ignored, per_class = {}, {}, {}
    for key, value in state.items():
        m = _FC_MU.match(key)
        if m:
            per_class.setdefault((m["ace"], m["kind"]), {})[int(m["j"])] = value
            continue
        reason = next((why for p, why in RELEASE_IGNORED_PATTERNS if p.search(key)), None)
        if reason is None and key not in native_keys and STYLELESS_IGNORED.search(key):
            reason = "unused in the blocks without style codes"
        if reason is not None:
            ignored.setdefault(reason, []).append(key)
            continue
        converted[key] = value
    notes = []
    for (ace, kind), layers in sorted(per_class.items()):
        missing = [j for j in range(label_nc) if j not in layers]
        if missing:
            raise CheckpointError(
                f"{_describe(path)}: {ace} has per-class layers fc_mu{sorted(layers)} but label_nc needs "
                f"{label_nc}; missing {', '.join(f'{ace}.fc_mu{j}.{kind}' for j in missing)}")
        extra = sorted(j for j in layers if j >= label_nc)
        if extra:
            ignored.setdefault(f"per-class layers beyond label_nc={label_nc}", []).extend(
                f"{ace}.fc_mu{j}.{kind}" for j in extra)
        converted[f"{ace}.fc_mu.{kind}"] = torch.stack([layers[j] for j in range(label_nc)])
    for reason, keys in ignored.items():
        notes.append(f"ignored {len(keys)} release tensors ({reason})")
    return converted, notes


def check_state_against(model_state, state, path, what):
    """Raise CheckpointError naming missing, unexpected and misshaped keys of ``state``."""
    missing = set(model_state) - set(state)
    unexpected = set(state) - set(model_state)
    misshaped = [f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(model_state[k].shape)})"
                 for k in sorted(set(state) & set(model_state)) if state[k].shape != model_state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_short_list(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} misshaped: {_short_list(misshaped)}")
    if problems:
        raise CheckpointError(f"{_describe(path)}: does not match the {what} architecture "
                              f"(check --label_nc, --ngf, --num_upsampling_layers, --contain_dontcare_label): "
                              + "; ".join(problems))


def _load_checked(net, state, path, what):
    check_state_against(net.state_dict(), state, path, what)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{_describe(path)}: cannot load into the {what}: {e}") from e


def load_generator_file(netG, source):
    """Load a native, release or half-precision generator file (path or state_dict) into ``netG``.

    The format is detected from the content. Returns a :class:`GeneratorFile`;
    its notes (ignored release tensors) are also logged. Raises
    CheckpointError; for an export whose shapes do not fit, the message adds
    the architecture the export records.
    """
    state, path, export = read_state_dict(source, with_export=True)
    notes, fmt = [], "native" if export is None else "fp16-export"
    if export is None and is_release_generator_state(state):
        fmt = "release"
        state, notes = convert_release_generator_state(state, netG.state_dict().keys(), netG.label_nc, path)
        for note in notes:
            log.info("%s: %s", _describe(path), note)
    try:
        _load_checked(netG, state, path, "generator")
    except CheckpointError as e:
        if export is None:
            raise
        raise CheckpointError(f"{e}; the export records {describe_architecture(export['architecture'])}") from e
    return GeneratorFile(path, fmt, notes, export)


def load_generator_weights(netG, source):
    """Load a generator file into ``netG`` (see :func:`load_generator_file`); returns the notes."""
    return load_generator_file(netG, source).notes


def load_discriminator_weights(netD, source):
    """Load a native or release discriminator checkpoint (same key layout) into ``netD``."""
    state, path = read_state_dict(source)
    _load_checked(netD, state, path, "discriminator")
    return []
