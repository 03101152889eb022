"""Export a generator (or its EMA) in half precision for inference: half the file size, same use.

    python scripts/export_generator.py --name celeba --which_epoch 50            # -> checkpoints/celeba_fp16/
    python scripts/export_generator.py --name celeba --use_ema                    # the averaged generator
    python test.py --name celeba_fp16 --which_epoch 50 --label_dir ... --instance_dir ...
    python edit_app.py --name celeba_fp16 --which_epoch 50 --data datasets/celebamask_hq/test

The source is ``checkpoints/<name>/<which_epoch>_net_G.pth`` (``_net_G_ema.pth``
with ``--use_ema``), in this project's layout or the original release's. The
export (``models/export.py``) holds the native state_dict with every parameter
in float16 (buffers unchanged) and records the architecture and the source
(with its SHA-256). It is written under the same file name into ``--out_dir``
(default ``checkpoints/<name>_fp16``) with an ``opt.json``, so that folder is
a checkpoint folder like any other: ``test.py``, ``mix_styles.py`` and the
editor load it with ``--name <name>_fp16`` (and ``--use_ema`` for an exported
EMA) through ``models.inference.load_inference_model``, which converts the
weights back to float32 (only the weights are rounded; docs/model.md gives the
sizes and the error bound).
"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def export(opt, log=print):
    """Export the generator of ``opt`` (:class:`options.export_options.ExportOptions`); returns the file's path."""
    import torch

    from models import create_model
    from models.checkpoint_compat import (check_state_against, convert_release_generator_state,
                                          is_release_generator_state, read_state_dict)
    from models.checkpoints import EMA_NET, format_bytes, generator_path, network_path
    from models.export import half_state, save_export
    from options.base_options import BaseOptions
    from util.errors import CheckpointError, OptionError
    from util.io import write_text_atomic

    source_dir = os.path.join(opt.checkpoints_dir, opt.name)
    source = generator_path(source_dir, opt.which_epoch, opt.use_ema)
    out_dir = opt.out_dir or os.path.join(opt.checkpoints_dir, opt.name + "_fp16")
    if os.path.realpath(out_dir) == os.path.realpath(source_dir):
        raise OptionError(f"--out_dir {out_dir}: is the source folder; the export would replace the float32 "
                          f"weights. Choose another folder")
    with torch.device("meta"):  # the architecture's keys and shapes, without memory
        netG = create_model(opt).netG
    state, path, was_export = read_state_dict(source, with_export=True)
    if was_export is not None:
        raise CheckpointError(f"{source}: already a half-precision export")
    fmt = "native"
    if is_release_generator_state(state):
        fmt = "release"
        state, notes = convert_release_generator_state(state, netG.state_dict().keys(), netG.label_nc, path)
        for note in notes:
            log(f"note: {source}: {note}")
    check_state_against(netG.state_dict(), state, path, "generator")
    parameters = {name for name, _ in netG.named_parameters()}
    half = half_state(state, parameters)
    out = network_path(out_dir, opt.which_epoch, EMA_NET if opt.use_ema else "G")
    record = {"file": os.path.abspath(source), "which_epoch": opt.which_epoch, "use_ema": bool(opt.use_ema),
              "format": fmt, "sha256": sha256_of(source)}
    payload = save_export(out, half, vars(opt), record)
    saved = BaseOptions.options_to_json(opt)
    saved.update(name=os.path.basename(os.path.normpath(out_dir)),
                 checkpoints_dir=os.path.dirname(os.path.abspath(out_dir)))
    write_text_atomic(os.path.join(out_dir, "opt.json"), json.dumps(saved, indent=2, sort_keys=True) + "\n")
    n_params = sum(state[k].numel() for k in parameters)
    float32 = sum(v.numel() * v.element_size() for v in state.values())
    log(f"{source} ({fmt} layout, sha256 {record['sha256']})")
    log(f"  {n_params:,} parameters in float16: {format_bytes(payload)} of tensors "
        f"(float32: {format_bytes(float32)}); file {format_bytes(os.path.getsize(out))}")
    log(f"wrote {out}\nuse it with: --name {os.path.basename(os.path.normpath(out_dir))} --checkpoints_dir "
        f"{os.path.dirname(os.path.abspath(out_dir))} --which_epoch {opt.which_epoch}"
        + (" --use_ema" if opt.use_ema else "") + " (the architecture comes from its opt.json)")
    return out


def main(argv=None):
    """Parse ``argv``, export; returns the export's path."""
    from options.export_options import ExportOptions

    return export(ExportOptions().parse(argv))


if __name__ == "__main__":
    from util.cli import run_cli

    sys.exit(run_cli(main))
