"""Editing state of one browser tab: the sample being edited and its list of edits.

An edit is a small dict; the codes shown are always recomputed from the
sample's own codes by applying the edits in order (:func:`apply_edits`), so
undo drops the last edit and reset drops them all, with nothing to invert.

* ``{"op": "style", "classes": [j, ...], "source": "sample:<i>" | "upload:<id>", "alpha": a,
  "source_name": str, "codes": source codes (label_nc, 512)}``: the classes' codes are blended towards the source's codes,
  ``(1 - a)·own + a·source`` (:func:`editing.style_mixing.interpolate_class_codes`;
  ``a = 1`` replaces them).
* ``{"op": "colour", "classes": [j, ...], "rgb": [r, g, b]}`` (colour in [0, 1]):
  each class's code is shifted (:func:`editing.style_mixing.shift_class_colour`) by
  ``rgb`` minus the class's current mean colour (:func:`class_mean_colours`), so
  the class takes on the chosen colour. Absent classes stay absent.
* ``{"op": "paint", ...}``: a brush stroke on the label map (:mod:`editor.painting`);
  it leaves the codes alone. The label map shown is the sample's with the
  strokes applied in order (:meth:`EditSession.label`).

Sessions are kept by :class:`SessionStore`, keyed by a random id that the
page gets when it loads; two tabs therefore never share a state.
"""
import collections
import re
import secrets
import threading

import numpy as np

from editing.style_mixing import code_channel_slices, interpolate_class_codes, shift_class_colour
from editor.painting import paint_edits, painted_label
from util.errors import InputError, OptionError

MAX_EDITS = 500


def class_mean_colours(codes):
    """``(J, 3)`` mean of the R, G and B thirds of each code row (about the class's mean colour, in [0, 1])."""
    codes = np.asarray(codes, dtype=np.float64)
    return np.stack([codes[:, sl].mean(axis=1) for sl in code_channel_slices(codes.shape[1])], axis=1)


def apply_edits(codes, edits):
    """Apply ``edits`` in order to raw ``codes`` ``(label_nc, 512)``; returns a new float32 array."""
    out = np.array(codes, dtype=np.float32, copy=True)
    for edit in edits:
        if edit["op"] == "style":
            out = interpolate_class_codes(out, edit["codes"], edit["classes"], edit["alpha"])
        elif edit["op"] == "colour":
            means = class_mean_colours(out)
            for j in edit["classes"]:
                out = shift_class_colour(out, [j], np.asarray(edit["rgb"]) - means[j])
        elif edit["op"] != "paint":
            raise OptionError(f"unknown edit {edit['op']!r}")
    return out


def parse_colour(text):
    """``"#rrggbb"`` (six hexadecimal digits, nothing else) -> ``[r, g, b]`` floats in [0, 1]; raises
    :class:`InputError`."""
    text = str(text)
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", text):
        raise InputError(f"colour {text[:20]!r}: expected #rrggbb (six hexadecimal digits)")
    return [int(text[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]


def colour_hex(rgb):
    """``(r, g, b)`` in [0, 1] (clipped) -> ``"#rrggbb"``."""
    return "#" + "".join(f"{int(round(min(max(float(v), 0.0), 1.0) * 255)):02x}" for v in rgb)


def describe_edit(edit, class_names):
    """One line for the page's edit list, e.g. ``"hair ← style of 28010 (alpha 0.5)"``."""
    if edit["op"] == "paint":
        return f"painted {class_names[edit['class']]} (brush {edit['size']})"
    classes = ", ".join(class_names[j] for j in edit["classes"])
    if edit["op"] == "style":
        alpha = "" if edit["alpha"] == 1 else f" (alpha {edit['alpha']:g})"
        return f"{classes} \u2190 style of {edit['source_name']}{alpha}"
    return f"{classes} \u2190 colour {colour_hex(edit['rgb'])}"


class EditSession:
    """State of one tab. ``lock`` serialises its requests; all methods expect it held by the caller."""

    def __init__(self, session_id):
        self.id = session_id
        self.lock = threading.Lock()
        self.sample = None      # index of the sample being edited
        self.edits = []
        self.uploads = collections.OrderedDict()  # id -> {"name", "codes" (label_nc, 512), "present"}
        self.version = 0        # incremented on every render
        self.image_png = None   # PNG bytes of the last render (for download)
        self._painted = ([], None)  # (the strokes applied, the label map they give)

    def label(self, base):
        """The label map with this session's strokes applied to ``base`` (the sample's ``(1, H, W)`` map),
        or None when nothing is painted. The last result is kept: a new stroke paints only itself."""
        strokes = paint_edits(self.edits)
        if not strokes:
            return None
        done, label = self._painted
        if label is not None and len(done) <= len(strokes) and all(a is b for a, b in zip(done, strokes)):
            if len(done) < len(strokes):
                label = painted_label(label, strokes[len(done):])
        else:
            label = painted_label(base, strokes)
        self._painted = (list(strokes), label)
        return label

    def select_sample(self, index):
        """Start editing sample ``index``; the edits are cleared."""
        self.sample = int(index)
        self.edits = []

    def add_edit(self, edit, amend=False):
        """Append ``edit``; with ``amend``, replace the last edit instead when it has the same op and classes.

        Amending lets a slider or colour control adjust the edit it just made
        rather than stack a new one on every move.
        """
        if self.sample is None:
            raise OptionError("pick a sample first")
        last = self.edits[-1] if self.edits else None
        if amend and last is not None and last["op"] == edit["op"] != "paint" and last["classes"] == edit["classes"]:
            self.edits[-1] = edit
            return
        if len(self.edits) >= MAX_EDITS:
            raise OptionError(f"at most {MAX_EDITS} edits per sample; reset to start again")
        self.edits.append(edit)

    def undo(self):
        """Drop the last edit; raises :class:`OptionError` when there is none."""
        if not self.edits:
            raise OptionError("nothing to undo")
        self.edits.pop()

    def reset(self):
        """Drop all edits."""
        self.edits = []

    def add_upload(self, name, codes, present, max_uploads=16):
        """Keep an uploaded style source (``present``: the classes in its label map); returns its id.

        Beyond ``max_uploads`` the oldest is dropped from the list of sources
        (edits made with it keep their own copy of its codes).
        """
        upload_id = secrets.token_hex(4)
        self.uploads[upload_id] = {"name": name, "codes": codes, "present": list(present)}
        while len(self.uploads) > max_uploads:
            self.uploads.popitem(last=False)
        return upload_id


class SessionStore:
    """Thread-safe map of session id -> :class:`EditSession`, least recently used dropped beyond ``max_sessions``."""

    def __init__(self, max_sessions=32):
        self.max_sessions = max(1, int(max_sessions))
        self._sessions = collections.OrderedDict()
        self._lock = threading.Lock()

    def create(self):
        """A new session with a fresh random id."""
        session = EditSession(secrets.token_urlsafe(12))
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id):
        """The session ``session_id``, or None when unknown or expired."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                self._sessions.move_to_end(session_id)
            return session

    def __len__(self):
        with self._lock:
            return len(self._sessions)
