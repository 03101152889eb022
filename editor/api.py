"""The editor's JSON API: what each action does to a session, and the state it answers.

Each action is ``action(engine, session, body) -> dict`` with ``session.lock``
held by the caller; bad input raises a :data:`util.errors.USER_ERRORS` error
whose message the page shows, and a failing action leaves the session as it
was. The routes and the state are listed in :mod:`editor.server`.
"""
import base64
import contextlib
import time

from data.class_names import parse_class_list
from editor.engine import encode_png
from editor.painting import parse_stroke
from editor.session import apply_edits, class_mean_colours, colour_hex, describe_edit, parse_colour
from editor.uploads import decode_data_url, display_name
from util.errors import OptionError


def info(engine):
    """What the page needs once: model, classes and samples."""
    palette = engine.palette()
    return {"name": engine.opt.name, "label_nc": engine.label_nc,
            "classes": [{"index": j, "name": n, "colour": palette[j]} for j, n in enumerate(engine.class_names)],
            "samples": [{"index": i, "name": s.name} for i, s in enumerate(engine.samples)]}


def current_codes(engine, session):
    """Raw codes of the session's sample after its edits."""
    return apply_edits(engine.sample_codes(session.sample), session.edits)


def current_label(engine, session):
    """The session's painted ``(1, H, W)`` label map, or None while nothing is painted (the sample's own)."""
    return session.label(engine.sample_label(session.sample))


def state(engine, session, codes=None):
    """The session's state for the page (see :mod:`editor.server`); ``image`` only after a render."""
    out = {"session": session.id, "sample": session.sample, "version": session.version,
           "edits": [describe_edit(e, engine.class_names) for e in session.edits],
           "can_undo": bool(session.edits),
           "uploads": [{"id": k, "name": v["name"]} for k, v in session.uploads.items()]}
    if session.sample is not None:
        codes = current_codes(engine, session) if codes is None else codes
        label = current_label(engine, session)
        present = engine.present_classes(session.sample, label)
        means = class_mean_colours(codes)
        sample_url = f"/api/samples/{session.sample}/label.png"
        out.update(sample_name=engine.samples[session.sample].name, present=present,
                   colours={str(j): colour_hex(means[j]) for j in present}, painted=label is not None,
                   sample_label_url=sample_url,
                   label_url=sample_url if label is None else f"/api/sessions/{session.id}/label.png?v={session.version}")
    return out


def render(engine, session):
    """Render the session's current codes and label map; returns the state with the image."""
    codes = current_codes(engine, session)
    t0 = time.perf_counter()
    image = engine.render(session.sample, codes, current_label(engine, session))
    elapsed = time.perf_counter() - t0
    session.image_png = encode_png(image)
    session.version += 1
    out = state(engine, session, codes)
    out["image"] = "data:image/png;base64," + base64.b64encode(session.image_png).decode("ascii")
    out["render_ms"] = round(elapsed * 1000)
    return out


def label_png(engine, session, class_indices=False):
    """``(PNG bytes, file name)`` of the session's label map: colourised, or the class indices (a label file)."""
    _need_sample(session)
    label = current_label(engine, session)
    name = f"{engine.samples[session.sample].name}_label.png"
    if class_indices:
        return engine.label_map_png(engine.sample_label(session.sample) if label is None else label), name
    return engine.label_png(session.sample, label), name


def _class_indices(engine, values, option):
    """Class indices of ``values`` (indices or names); :class:`OptionError` for anything else."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)) or len(str(v)) > 100:
            raise OptionError(f"{option}: {str(v)[:40]!r} is not a class index or name")
    try:
        return parse_class_list([str(v) for v in values], engine.label_nc, engine.class_names, option=option)
    except OptionError:
        raise
    except ValueError as e:  # e.g. digits that int() does not take
        raise OptionError(f"{option}: {values!r:.60} holds something that is not a class index or name") from e


def _classes(engine, body):
    classes = body.get("classes")
    if not isinstance(classes, list) or not classes:
        raise OptionError("select at least one class first (click a region or tick a class)")
    return _class_indices(engine, classes, "classes")


def _class(engine, value):
    (j,) = _class_indices(engine, [value], "class")
    return j


def _present_classes(engine, session, classes, what):
    """``classes`` when all occur in the session's label map; else :class:`OptionError` naming the absent ones."""
    present = set(engine.present_classes(session.sample, current_label(engine, session)))
    absent = [engine.class_names[j] for j in classes if j not in present]
    if absent:
        names = ", ".join(absent)
        raise OptionError(f"{names} {'does' if len(absent) == 1 else 'do'} not occur in the label map of "
                          f"{engine.samples[session.sample].name}, so there is nothing to {what}; deselect "
                          f"{'it' if len(absent) == 1 else 'them'} (or paint {'it' if len(absent) == 1 else 'them'} "
                          f"into the label map first)")
    return classes


@contextlib.contextmanager
def _rollback(session):
    """Restore the session's sample and edits when the block fails (e.g. its render)."""
    before = (session.sample, list(session.edits))
    try:
        yield
    except BaseException:
        session.sample, session.edits = before
        raise


def _need_sample(session):
    if session.sample is None:
        raise OptionError("pick a sample first")


def _number(value, what):
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise OptionError(f"{what} {value!r}: expected a number") from e


def action_state(engine, session, body):
    return state(engine, session)


def action_sample(engine, session, body):
    index = engine.check_index(body.get("sample"))
    with _rollback(session):
        session.select_sample(index)
        return render(engine, session)


def action_pick(engine, session, body):
    _need_sample(session)
    j = engine.pick(session.sample, body.get("x"), body.get("y"), current_label(engine, session))
    return {"class": j, "name": None if j is None else engine.class_names[j]}


def action_style(engine, session, body):
    _need_sample(session)
    classes = _present_classes(engine, session, _classes(engine, body), "restyle")
    alpha = _number(body.get("alpha", 1.0), "alpha")
    if not 0.0 <= alpha <= 1.0:
        raise OptionError(f"alpha {alpha:g}: must lie in [0, 1]")
    source = str(body.get("source", ""))
    kind, _, ident = source.partition(":")
    if kind == "sample":
        index = engine.check_index(ident)
        codes, name, present = engine.sample_codes(index), engine.samples[index].name, engine.present_classes(index)
    elif kind == "upload" and ident in session.uploads:
        upload = session.uploads[ident]
        codes, name, present = upload["codes"], upload["name"], upload["present"]
    else:
        raise OptionError(f"unknown style source {source[:40]!r}; choose a sample or upload a photo")
    missing = [engine.class_names[j] for j in classes if j not in present]
    if missing:
        raise OptionError(f"{name} has no {', '.join(missing)}, so it has no style for "
                          f"{'it' if len(missing) == 1 else 'them'}; choose another source")
    edit = {"op": "style", "classes": classes, "source": source, "source_name": name, "alpha": alpha,
            "codes": codes}
    with _rollback(session):
        session.add_edit(edit, amend=bool(body.get("amend")))
        return render(engine, session)


def action_colour(engine, session, body):
    _need_sample(session)
    classes = _present_classes(engine, session, _classes(engine, body), "recolour")
    edit = {"op": "colour", "classes": classes, "rgb": parse_colour(body.get("colour"))}
    with _rollback(session):
        session.add_edit(edit, amend=bool(body.get("amend")))
        return render(engine, session)


def action_paint(engine, session, body):
    _need_sample(session)
    shape = tuple(engine.sample_label(session.sample).shape[-2:])
    edit = parse_stroke(body, shape, lambda value: _class(engine, value))
    with _rollback(session):
        session.add_edit(edit)
        return render(engine, session)


def action_undo(engine, session, body):
    _need_sample(session)
    with _rollback(session):
        session.undo()
        return render(engine, session)


def action_reset(engine, session, body):
    _need_sample(session)
    with _rollback(session):
        session.reset()
        return render(engine, session)


def action_upload(engine, session, body):
    image_name = display_name(body.get("image_name"), "photo")
    label_name = display_name(body.get("label_name"), "label map")
    if not body.get("image") or not body.get("label"):
        raise OptionError("choose both a photo and its label map to upload")
    codes, present = engine.upload_codes(decode_data_url(body.get("image"), image_name), image_name,
                                         decode_data_url(body.get("label"), label_name), label_name)
    upload_id = session.add_upload(image_name, codes, present)
    out = state(engine, session)
    out["upload"] = {"id": upload_id, "name": image_name}
    return out


ACTIONS = {"state": action_state, "sample": action_sample, "pick": action_pick, "style": action_style,
           "colour": action_colour, "paint": action_paint, "undo": action_undo, "reset": action_reset,
           "upload": action_upload}
