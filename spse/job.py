"""The SPSE dataset job: pair files, shard, resume, extract in a process pool, summarise.

``extract_dataset(image_dir, label_dir, save_dir, label_nc, ...)`` writes one
code file ``<save_dir>/<stem>.npy`` per image (see ``data/codes.py`` for the
layouts) and returns a summary dict. One bad input never stops the batch: it
is recorded with its file name and reason and the job goes on.

Guarantees
----------
* Atomic writes: every code file is written to a temporary file in
  ``save_dir`` and renamed over the destination (``data.codes.save_codes``),
  so a run killed at any moment leaves either no file or a complete one.
* Resume: without ``overwrite``, an existing file that loads as a valid code
  file for ``label_nc`` classes is skipped; an invalid one (truncated, wrong
  shape) is recomputed. Temporary files left by a killed run for the stems of
  this shard are removed.
* Sharding: all stems (images and labels) are naturally sorted; stem number
  ``i`` belongs to shard ``i % num_shards``. Shards are disjoint and together
  cover every stem, and each shard reports only the problems of its stems.
* Parameters: the parameters that change the codes (``label_nc``, ``size``,
  ``n_segments``, ``compactness``, ``layout``, ``crop``; not the backend,
  whose codes are identical) are recorded in ``save_dir/spse_params.json``
  (:data:`PARAMS_FILE`). A run with other values stops before any work
  unless ``overwrite`` asks to recompute every file; while such a
  recomputation is unfinished (a hidden marker per shard), a run without
  ``overwrite`` stops too, since the folder then holds codes of both kinds.
"""
import glob
import json
import os
import time

from spse import masked_slic
from data.codes import LAYOUTS, load_codes, save_codes
from data.image_io import (check_aspect_ratio, check_label_values, group_by_stem, list_files, list_label_files,
                           read_label, read_rgb, unpaired_error)
from spse.extractor import extract_style_codes_and_presence, resolve_backend
from spse.limits import SIZE_RULE
from util.errors import InputError, OptionError
from util.flag_rules import check_value
from util.io import check_output_dir, output_errors, write_text_atomic
from util.parallel import run_tasks

PARAMS_FILE = "spse_params.json"
PARAMS_VERSION = 1
PENDING_PREFIX = ".spse_overwrite_pending."  # + "shard-<i>-of-<S>": an unfinished recomputation


def default_workers():
    """Default pool size: the number of CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not available on every platform
        return max(1, os.cpu_count() or 1)


def _check_options(label_nc, size, n_segments, compactness, workers, num_shards, shard_index, layout):
    if int(label_nc) < 1:
        raise OptionError(f"--label_nc must be >= 1, got {label_nc}")
    check_value("--size", size, int, SIZE_RULE)
    if int(n_segments) < 1:
        raise OptionError(f"--n_segments must be >= 1, got {n_segments}")
    if not float(compactness) > 0:
        raise OptionError(f"--compactness must be > 0, got {compactness}")
    if workers is not None and int(workers) < 1:
        raise OptionError(f"--workers must be >= 1, got {workers}")
    if int(num_shards) < 1:
        raise OptionError(f"--num_shards must be >= 1, got {num_shards}")
    if not 0 <= int(shard_index) < int(num_shards):
        raise OptionError(f"--shard_index must be in [0, {num_shards}), got {shard_index}")
    if layout not in LAYOUTS:
        raise OptionError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def extraction_params(label_nc, size, n_segments, compactness, layout, crop):
    """The parameters recorded beside the codes (those that change them; the backend does not)."""
    return {"label_nc": int(label_nc), "size": int(size), "n_segments": int(n_segments),
            "compactness": float(compactness), "layout": str(layout), "crop": bool(crop)}


def _as_flags(params):
    """Parameters as command-line words: ``--size 512 --n_segments 128 ...``."""
    words = [f"--{k} {params[k]:g}" if isinstance(params[k], float) else f"--{k} {params[k]}"
             for k in ("label_nc", "size", "n_segments", "compactness", "layout") if k in params]
    return " ".join(words + (["--no_crop"] if params.get("crop") is False else []))


def read_params_record(save_dir):
    """The parameters recorded in ``save_dir`` (dict), or None when there is no record."""
    path = os.path.join(save_dir, PARAMS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        return {k: record[k] for k in ("label_nc", "size", "n_segments", "compactness", "layout", "crop")}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: unreadable record of the extraction parameters ({e}); pass --overwrite to "
                         f"recompute every code file and write a new record") from e


def _pending_markers(save_dir):
    return sorted(glob.glob(os.path.join(glob.escape(save_dir), PENDING_PREFIX + "shard-*")))


def _marker(save_dir, num_shards, shard_index):
    return os.path.join(save_dir, f"{PENDING_PREFIX}shard-{shard_index}-of-{num_shards}")


def check_params(save_dir, params, overwrite, num_shards=1, shard_index=0):
    """Compare ``params`` with the record in ``save_dir`` before any work; returns ``(recorded, warnings)``.

    ``recorded`` is None without a record, and ``{}`` for an unreadable one under ``overwrite``.

    Raises :class:`OptionError` (saying what differs and what to do) when the
    record holds other values, or a recomputation with other values is
    unfinished for this shard's stems, unless ``overwrite``.
    """
    recorded = None
    try:
        recorded = read_params_record(save_dir) if os.path.isdir(save_dir) else None
    except InputError:
        if not overwrite:
            raise
        recorded = {}  # unknown parameters: recomputed as if they differed
    warnings_ = []
    mine = os.path.basename(_marker(save_dir, num_shards, shard_index))
    pending = [m for m in _pending_markers(save_dir)
               if os.path.basename(m) == mine or not os.path.basename(m).endswith(f"-of-{num_shards}")]
    record = os.path.join(save_dir, PARAMS_FILE)
    if not overwrite and pending:
        raise OptionError(
            f"--save_dir {save_dir}: a run that recomputes the codes with new parameters ({_as_flags(recorded or params)}"
            f", recorded in {record}) did not finish ({', '.join(pending)}), so the folder still holds codes of "
            f"the previous parameters; rerun it with --overwrite to finish")
    if recorded is not None and recorded != params and not overwrite:
        changes = ", ".join(_change(k, recorded[k], params[k]) for k in params if recorded[k] != params[k])
        raise OptionError(
            f"--save_dir {save_dir}: its code files were extracted with other parameters, recorded in {record}: "
            f"{changes}; the folder would then hold codes of two kinds. Rerun with {_as_flags(recorded)}, "
            f"give another --save_dir, or pass --overwrite to recompute every code file with the new values")
    if recorded is None and os.path.isdir(save_dir) and not overwrite and \
            glob.glob(os.path.join(glob.escape(save_dir), "*.npy")):
        warnings_.append(f"{save_dir}: holds code files but no record of their parameters ({PARAMS_FILE}); "
                         f"they are kept as they are and assumed to match {_as_flags(params)} (pass --overwrite "
                         f"to recompute them)")
    return recorded, warnings_


def _change(key, old, new):
    """``--size 512 (this run: 256)``; ``--no_crop not given (this run: given)``."""
    if key == "crop":
        return f"--no_crop {'not given' if old else 'given'} (this run: {'not given' if new else 'given'})"
    show = (lambda v: f"{v:g}") if isinstance(old, float) else str
    return f"--{key} {show(old)} (this run: {show(new)})"


def plan_items(image_paths, label_paths):
    """Pair images and labels by stem (:func:`data.image_io.group_by_stem`).

    Returns a naturally sorted list of ``(stem, image_path, label_path, problem)``
    with one entry per stem found in either list. ``problem`` is ``None`` for a
    good pair, otherwise a message naming the file(s): image without label,
    label without image, or several images/labels with the same stem.
    """
    return [(s, image, label, problem)
            for s, (image, label), problem in group_by_stem([image_paths, label_paths], ["image", "label"])]


def shard(items, num_shards, shard_index):
    """Items ``i`` with ``i % num_shards == shard_index`` (disjoint, covering, deterministic)."""
    return items[shard_index::num_shards]


def _remove_stale_temporaries(save_dir, stems):
    """Delete temporary files left by a killed run for these stems; return their paths."""
    removed = []
    for s in stems:
        # util.io.atomic_path names them "." + name + "." + 8 random characters + ".tmp" (tempfile.mkstemp)
        for tmp in glob.glob(os.path.join(glob.escape(save_dir), "." + glob.escape(s) + ".npy." + "?" * 8 + ".tmp")):
            os.remove(tmp)
            removed.append(tmp)
    return removed


def process_one(image_path, label_path, out_path, label_nc, size, n_segments, compactness, layout, crop=True,
                backend="auto"):
    """Extract and save the codes of one image pair.

    Returns a dict ``{"present": (label_nc,) bool list, "warnings": [str]}``.
    Raises :class:`InputError` naming the file for bad input.
    """
    warnings_ = []
    image = read_rgb(image_path)
    label = read_label(label_path)
    check_label_values(label, label_nc, label_path, allow_dontcare=True)  # 255 is allowed and ignored
    # sizes may differ (both are resized to size x size), aspect ratios may not
    check_aspect_ratio(image.shape[1::-1], label.shape[::-1], image_path, label_path)
    try:
        codes, present = extract_style_codes_and_presence(image, label, label_nc, size, n_segments, compactness,
                                                          crop=crop, backend=backend)
    except InputError as e:
        raise InputError(f"{image_path} (label {label_path}): {e}") from e
    save_codes(out_path, codes, layout)
    return {"present": present.tolist(), "warnings": warnings_}


def _worker_task(task):
    """Pool entry point: run :func:`process_one` and turn an error into a failure message."""
    stem_, image_path, label_path, out_path, params = task
    try:
        return stem_, process_one(image_path, label_path, out_path, **params), None
    except InputError as e:
        return stem_, None, str(e)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch; reported below
        return stem_, None, f"{image_path}: extraction failed ({type(e).__name__}: {e})"


def _worker_died(task, error):
    """The failure reported for a task whose worker process died."""
    return task[0], None, f"{task[1]}: worker process died ({error})"


def extract_dataset(image_dir, label_dir, save_dir, label_nc, *, size=512, n_segments=128, compactness=10,
                    workers=None, num_shards=1, shard_index=0, overwrite=False, layout="lean", progress=True,
                    crop=True, backend="auto"):
    """Extract SPSE codes for every image/label pair of a dataset shard.

    Parameters follow ``save_style_vector.py``; ``workers=None`` uses
    :func:`default_workers`, ``workers=1`` runs in this process;
    ``crop=False`` runs SLIC on the full image per class (slower; see
    docs/spse.md); ``backend``: ``"auto"`` (numba if importable), ``"numba"``
    or ``"skimage"`` (identical codes, see :func:`spse.extractor.resolve_backend`).
    With numba the kernels are compiled (or loaded from the cache) here,
    before any worker starts, so forked workers inherit them.

    Returns a summary dict:

    * ``written``, ``skipped`` (valid file already there), ``failed`` (counts
      of stems in this shard);
    * ``absent_classes``: total number of (written image, class) pairs whose
      class has no pixel; ``absent_per_class``: the same per class (list);
    * ``failures``: messages naming the file and the reason, in stem order;
    * ``unpaired``: the failures of stems that lack a partner (an image
      without its label map or the reverse, or several files per stem), and
      ``unpaired_message``: the report of them that training gives too
      (:func:`data.image_io.unpaired_error`: a count and the first few), or None;
    * ``warnings``: resolved problems (invalid file replaced, stale temporary
      removed);
    * ``total`` (stems in this shard), ``seconds``, ``backend`` (the SLIC
      implementation used).

    Raises :class:`OptionError` for bad options and :class:`InputError` when a
    folder is missing or holds no usable file.
    """
    _check_options(label_nc, size, n_segments, compactness, workers, num_shards, shard_index, layout)
    backend = resolve_backend(backend)
    label_nc, num_shards, shard_index = int(label_nc), int(num_shards), int(shard_index)
    workers = default_workers() if workers is None else int(workers)
    save_dir = os.fspath(save_dir)
    t0 = time.perf_counter()
    check_output_dir(save_dir, "--save_dir")
    recorded_params = extraction_params(label_nc, size, n_segments, compactness, layout, crop)
    recorded, record_warnings = check_params(save_dir, recorded_params, overwrite, num_shards, shard_index)
    changed = recorded is not None and recorded != recorded_params

    items = shard(plan_items(list_files(image_dir), list_label_files(label_dir)), num_shards, shard_index)
    os.makedirs(save_dir, exist_ok=True)
    marker = _marker(save_dir, num_shards, shard_index)
    recomputing = changed or os.path.exists(marker)  # files of other parameters may still be there
    with output_errors(save_dir, "no code file was written"):
        if changed:  # an unfinished recomputation must not look like a finished one (check_params)
            write_text_atomic(marker, f"recomputing with {_as_flags(recorded_params)}\n")
        if recorded != recorded_params:
            write_text_atomic(os.path.join(save_dir, PARAMS_FILE),
                              json.dumps({"version": PARAMS_VERSION, **recorded_params}, indent=2) + "\n")
    summary = {"written": 0, "skipped": 0, "failed": 0, "absent_classes": 0,
               "absent_per_class": [0] * label_nc, "failures": [], "unpaired": [], "warnings": record_warnings,
               "total": len(items), "seconds": 0.0, "backend": backend}
    failures = {}
    summary["warnings"] += [f"{p}: removed temporary file left by an interrupted run"
                            for p in _remove_stale_temporaries(save_dir, [it[0] for it in items])]

    error = unpaired_error([(s, (image, label), problem) for s, image, label, problem in items],
                           ["image", "label map"], [os.fspath(image_dir), os.fspath(label_dir)])
    summary["unpaired_message"] = None if error is None else str(error)

    params = dict(label_nc=label_nc, size=int(size), n_segments=int(n_segments),
                  compactness=float(compactness), layout=layout, crop=bool(crop), backend=backend)
    tasks = []
    for s, image_path, label_path, problem in items:
        if problem is not None:
            failures[s] = problem
            summary["unpaired"].append(problem)
            continue
        out_path = os.path.join(save_dir, s + ".npy")
        if os.path.exists(out_path) and not overwrite:
            try:
                load_codes(out_path, label_nc)
                summary["skipped"] += 1
                continue
            except InputError as e:  # truncated, an .npz archive, wrong shape: recomputed like a missing file
                summary["warnings"].append(f"{out_path}: existing code file is invalid "
                                           f"({str(e).replace(out_path + ': ', '')}); recomputing it")
        tasks.append((s, image_path, label_path, out_path, params))

    if tasks and backend == "numba":
        masked_slic.warm_up()  # compile or load once here; forked workers inherit the machine code
    for s, result, error in run_tasks(_worker_task, tasks, workers, progress, desc="SPSE",
                                      on_worker_death=_worker_died):
        if error is not None:
            out_path = os.path.join(save_dir, s + ".npy")
            if recomputing and os.path.exists(out_path):  # a code of the previous parameters must not stay
                os.remove(out_path)
                error += f" (its code file of the previous parameters, {out_path}, was removed)"
            failures[s] = error
            continue
        summary["written"] += 1
        summary["warnings"] += result["warnings"]
        for j, present in enumerate(result["present"]):
            if not present:
                summary["absent_classes"] += 1
                summary["absent_per_class"][j] += 1

    if os.path.exists(marker):  # every stem of this shard now has a code of the recorded parameters, or none
        os.remove(marker)
    order = {it[0]: i for i, it in enumerate(items)}
    summary["failures"] = [failures[s] for s in sorted(failures, key=order.__getitem__)]
    summary["failed"] = len(failures)
    summary["seconds"] = time.perf_counter() - t0
    return summary


def format_summary(summary, save_dir=None):
    """Human-readable multi-line summary of :func:`extract_dataset`'s result."""
    lines = []
    for w in summary["warnings"]:
        lines.append(f"warning: {w}")
    if summary.get("unpaired_message"):  # the same report as training's (data.image_io.unpaired_error)
        lines.append(f"FAILED: {summary['unpaired_message']}")
    unpaired = set(summary.get("unpaired", []))
    for f in summary["failures"]:
        if f not in unpaired:
            lines.append(f"FAILED: {f}")
    where = f" in {save_dir}" if save_dir else ""
    lines.append(f"SPSE summary{where}: {summary['written']} written, {summary['skipped']} skipped, "
                 f"{summary['failed']} failed, {summary['absent_classes']} classes absent "
                 f"(of {summary['total']} stems, {summary['seconds']:.1f} s, SLIC backend "
                 f"{summary.get('backend', '?')})")
    missing = [f"{j}:{n}" for j, n in enumerate(summary["absent_per_class"]) if n]
    if missing:
        lines.append("absent per class (class:images): " + ", ".join(missing))
    return "\n".join(lines)
