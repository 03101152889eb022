"""Every rank resumes the same run, or none does.

After ``--continue_train``, ``--init_from`` or an epoch snapshot each process
has read its own files (several machines may each have their own disk).
:func:`load_on_every_rank` runs the load on every rank, then compares in one
``all_gather`` what each rank holds: whether its load succeeded, and a digest
of its weights, buffers, optimiser states, gradient scaler, EMA generator and
position (epoch, iteration, global step, learning rate). When any rank failed
or any digest differs from rank 0's, every rank raises the same
:class:`util.errors.CheckpointError` naming the ranks, their hosts and the
files they read. A rank whose load fails still joins the gather, so the
others never wait for a timeout.

The digest (:func:`state_digest`) is computed where the tensors live (on the
GPU for a CUDA run): every tensor's bytes are read as 16-bit integers ``v``
and reduced to two exact 64-bit sums, ``Σ v_i`` and ``Σ v_i·(i mod 65521 + 1)``
(no overflow below 2^32 elements; integer sums do not depend on the order of
the reduction), then the sums, names, dtypes and shapes of all tensors are
hashed with SHA-256 on the host. Only these numbers cross the network.
"""
import hashlib

import torch

from util import distributed as dist_util
from util.errors import CheckpointError

LOAD_ERRORS = (CheckpointError, OSError)  # what a load may raise on one rank; reported to all ranks


def _flatten(obj, prefix, out):
    """(path, value) pairs of the leaves of nested dicts / lists / tuples, in a fixed order."""
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            _flatten(obj[k], f"{prefix}.{k}", out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}[{i}]", out)
    else:
        out.append((prefix, obj))
    return out


def _tensor_sums(t):
    """``(Σ v_i, Σ v_i·(i mod 65521 + 1))`` over the bytes of ``t`` read as int16 ``v``, on ``t``'s device."""
    x = t.detach().contiguous().reshape(-1)
    x = x.view(torch.int16) if x.element_size() % 2 == 0 else x.to(torch.int16)
    v = x.to(torch.int64)
    w = torch.arange(v.numel(), device=v.device, dtype=torch.int64).remainder_(65521).add_(1)
    return torch.stack([v.sum(), (v * w).sum()])


@torch.no_grad()
def state_digest(state):
    """SHA-256 (hex) of ``state``: nested dicts / lists of tensors and plain values (see module doc).

    Equal for bit-identical tensors whatever their device and memory format;
    one transfer from each device involved.
    """
    leaves = _flatten(state, "", [])
    by_device = {}
    for i, (_, v) in enumerate(leaves):
        if torch.is_tensor(v):
            by_device.setdefault(v.device, []).append(i)
    sums = {}
    for device, indices in by_device.items():
        stacked = torch.stack([_tensor_sums(leaves[i][1]) for i in indices]).cpu().tolist()
        sums.update(zip(indices, stacked))
    h = hashlib.sha256()
    for i, (path, v) in enumerate(leaves):
        if torch.is_tensor(v):
            h.update(f"{path}|{v.dtype}|{tuple(v.shape)}|{sums[i][0]}|{sums[i][1]}\n".encode())
        else:
            h.update(f"{path}|{type(v).__name__}|{v!r}\n".encode())
    return h.hexdigest()


def load_on_every_rank(load, held_state, files, what):
    """Run ``load()`` on every rank; every rank returns its result, or every rank raises.

    ``held_state()``: what the rank holds afterwards (digested with
    :func:`state_digest`) and a short description of it (a dict:
    ``(state, summary)``); ``files()``: the files the load read (named in the
    message); ``what``: the option that asked for the load (``--continue_train``;
    rank 0's is the one named).
    In one process this is ``load()``.
    """
    if dist_util.get_world_size() == 1:
        return load()
    result, error, digest, summary, read = None, None, None, "", []
    try:
        result = load()
        state, summary = held_state()
        digest = state_digest(state)
        read = list(files())
    except LOAD_ERRORS as e:
        error = str(e)
    report = {"rank": dist_util.get_rank(), "host": dist_util.hostname(), "error": error, "digest": digest,
              "summary": summary, "files": read, "what": what}
    reports = dist_util.all_gather_objects(report)
    n, what = len(reports), reports[0]["what"]  # the same message on every rank: rank 0's option
    failed = [r for r in reports if r["error"] is not None]
    if failed:
        lines = "; ".join(f"rank {r['rank']} on host {r['host']}: {r['error']}" for r in failed)
        raise CheckpointError(f"{what}: {len(failed)} of {n} processes could not load the checkpoint, so none "
                              f"starts ({lines}). Every machine must read the same files: put --checkpoints_dir "
                              "on a filesystem all machines share, or copy rank 0's folder to each of them")
    ref = reports[0]
    differ = [r for r in reports if r["digest"] != ref["digest"]]
    if differ:
        def where(r):
            return f"rank {r['rank']} on host {r['host']} read {', '.join(r['files'])} ({r['summary']})"
        lines = "; ".join(where(r) for r in differ)
        raise CheckpointError(f"{what}: the processes loaded different states, so none starts: {where(ref)}, but "
                              f"{lines}. Every machine must read the same run: put --checkpoints_dir on a "
                              "filesystem all machines share, or copy rank 0's folder to each of them")
    return result
