"""Rules for the values of command-line flags: declared next to the flags, checked after parsing.

A component declares the rules of its flags where it adds them::

    g.add_argument("--lr", type=float, default=0.0002, help="initial learning rate for Adam")
    set_rules(g, lr=POSITIVE)

:func:`check_flags` then checks every flag's final value, whatever its source
(the command line, a caller's defaults, a reloaded ``opt.json``):

* an ``int`` flag holds an integer and a ``float`` flag a number (never a
  bool, never None unless its rule is ``optional``);
* every ``float`` flag is finite: ``nan`` and ``inf`` are refused, with or
  without a rule (a rule may accept ``+inf`` explicitly, ``infinite_ok``);
* the value lies in its :class:`Range`.

:func:`check_saved_values` applies the same checks (and ``str``, ``bool`` and
``choices``) to the values of a saved options file before they become
defaults, naming the file and the entry. Every message has one form, e.g.
``--lr inf: must be a finite number greater than 0``; errors are
:class:`util.errors.OptionError`.
"""
import argparse
import json
import math
import numbers

from util.errors import OptionError


class Range:
    """The values a numeric flag accepts: ``low``/``high`` bounds (closed unless ``*_open``).

    ``optional``: None (the flag's "off"/"automatic" value) is accepted.
    ``infinite_ok``: ``+inf`` is accepted (a default meaning "no limit").
    ``note``: a string, or a function of the refused value returning a string
    (or None), appended to the message when the value is out of range (e.g. a
    memory estimate for a size above the bound).
    """

    def __init__(self, low=None, high=None, *, low_open=False, high_open=False, optional=False,
                 infinite_ok=False, note=None):
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.optional, self.infinite_ok = optional, infinite_ok
        self.note = note

    def contains(self, value):
        """True when the number ``value`` lies within the bounds."""
        if self.infinite_ok and value == math.inf:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self):
        """``"in [0, 1)"``, ``"at least 1"``, ``"greater than 0"``: the bounds in words."""
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_show(self.low)}, "
                    f"{_show(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'greater than' if self.low_open else 'at least'} {_show(self.low)}"
        if self.high is not None:
            return f"{'less than' if self.high_open else 'at most'} {_show(self.high)}"
        return ""

    def note_for(self, value):
        """The note for a refused ``value`` (str or None)."""
        return self.note(value) if callable(self.note) else self.note


def at_least(low, **kwargs):
    """:class:`Range` ``[low, inf)``."""
    return Range(low, **kwargs)


POSITIVE = Range(0, low_open=True)          # > 0
NON_NEGATIVE = Range(0)                     # >= 0
UNIT_INTERVAL = Range(0, 1)                 # [0, 1]
HALF_OPEN_UNIT = Range(0, 1, high_open=True)  # [0, 1)


def _show(value):
    """A number as it is typed on the command line (``1``, ``0.0002``, ``inf``, ``nan``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return json.dumps(value) if value is None or isinstance(value, (str, bool)) else repr(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return format(float(value), "g")


def set_rules(parser, **rules):
    """Attach ``rules`` (flag dest -> :class:`Range`) to the flags of ``parser`` (or an argument group).

    Raises ``KeyError`` for a name that is no flag of the parser (a
    programming error, caught by the tests that build every parser).
    """
    actions = {a.dest: a for a in parser._actions}
    for dest, rule in rules.items():
        if dest not in actions:
            raise KeyError(f"set_rules: no flag --{dest} in this parser")
        actions[dest].rule = rule
    return parser


def mark_architecture(parser, *dests):
    """Mark flags of ``parser`` (or an argument group) as describing the trained networks.

    Their values are saved in ``opt.json`` and test synthesis takes them from
    there (the command line still wins). Raises ``KeyError`` for a name that
    is no flag of the parser.
    """
    actions = {a.dest: a for a in parser._actions}
    for dest in dests:
        if dest not in actions:
            raise KeyError(f"mark_architecture: no flag --{dest} in this parser")
        actions[dest].architecture = True
    return parser


def architecture_flags(parser):
    """The dests of the flags marked by :func:`mark_architecture` (a frozenset)."""
    return frozenset(a.dest for a in parser._actions if getattr(a, "architecture", False))


def value_problem(value, kind, rule):
    """Why ``value`` is not acceptable for a flag of type ``kind`` (int, float or None) and ``rule``.

    Returns None when it is acceptable, else the reason, e.g. ``"must be an
    integer at least 1"``.
    """
    what = "an integer" if kind is int else "a finite number"
    bounds = rule.describe() if rule is not None else ""
    need = f"must be {what}" + (f" {bounds}" if bounds else "")
    if value is None:
        return None if rule is not None and rule.optional else need
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return need
    infinite = rule is not None and rule.infinite_ok and value == math.inf
    if not infinite:
        if kind is int and not isinstance(value, numbers.Integral):
            return need
        if not math.isfinite(value):
            return need
    if rule is not None and not rule.contains(value):
        note = rule.note_for(value)
        return need + (f"; {note}" if note else "")
    return None


def _flag(action):
    return action.option_strings[-1]


def _numeric_actions(parser):
    """``(action, kind, rule)`` of every flag of ``parser`` with a numeric type or a rule."""
    for action in parser._actions:
        if not action.option_strings or action.dest == argparse.SUPPRESS:
            continue
        kind = action.type if action.type in (int, float) else None
        rule = getattr(action, "rule", None)
        if kind is not None or rule is not None:
            yield action, kind, rule


def check_value(flag, value, kind, rule):
    """Raise :class:`OptionError` unless ``value`` suits ``rule`` (``flag`` names it, e.g. ``"--size"``)."""
    problem = value_problem(value, kind, rule)
    if problem is not None:
        raise OptionError(f"{flag} {_show(value)}: {problem}")


def check_flags(parser, namespace):
    """Check the parsed values of every numeric or ruled flag of ``parser``; raises :class:`OptionError`."""
    for action, kind, rule in _numeric_actions(parser):
        if hasattr(namespace, action.dest):
            check_value(_flag(action), getattr(namespace, action.dest), kind, rule)
    return namespace


def _saved_problem(action, value):
    """Why a saved ``value`` does not suit the flag of ``action`` (None when it does)."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return None if isinstance(value, bool) else "must be true or false"
    kind = action.type if action.type in (int, float) else None
    rule = getattr(action, "rule", None)
    if kind is not None or rule is not None:
        problem = value_problem(value, kind, rule)
        if problem is not None:
            return problem
    elif action.nargs is None and not (value is None and action.default is None) and not isinstance(value, str):
        return "must be a string" + (" or null" if action.default is None else "")
    if action.choices is not None and value not in action.choices:
        return "must be one of " + ", ".join(_show(c) for c in action.choices)
    return None


def check_saved_values(parser, values, path):
    """Check ``values`` (dest -> value) read from the saved options file ``path`` against the flags.

    Raises :class:`OptionError` naming the file, the entry and the rule, e.g.
    ``opt.json: "ngf" is null, but --ngf must be an integer at least 1;
    correct or delete this entry``. Names that are no flag are ignored.
    """
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    for dest, value in values.items():
        action = actions.get(dest)
        if action is None:
            continue
        problem = _saved_problem(action, value)
        if problem is not None:
            raise OptionError(f"{path}: \"{dest}\" is {json.dumps(value)}, but {_flag(action)} {problem}; "
                              f"correct or delete this entry")
    return values


def _format_bytes(n):
    """``1.9 GB``, ``29 MB``, ``1.1 TB``: ``n`` bytes in decimal units, two significant digits."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2g} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{int(n)} B"


def size_bound(low, high, bytes_per_pixel, what, typical=512, optional=False):
    """The rule and the help text of a square working size whose memory grows with ``size**2``.

    ``bytes_per_pixel``: measured peak bytes per pixel of ``size x size``;
    ``what``: who needs that memory (``"one extraction ... per worker"``).
    Returns ``(Range(low, high), help text)``; a refused size's message gives
    its memory estimate; ``optional``: None (no resizing) is accepted.
    """
    def note(size):
        if size <= high:
            return None
        return (f"at {size:g}x{size:g} {what} would need about {_format_bytes(size * size * bytes_per_pixel)} of "
                f"memory ({bytes_per_pixel} bytes per pixel; {_format_bytes(high * high * bytes_per_pixel)} "
                f"at {high})")

    text = (f"{low} to {high}; memory grows with size**2: {what} needs about {bytes_per_pixel} bytes per pixel, "
            f"{_format_bytes(typical * typical * bytes_per_pixel)} at {typical}, "
            f"{_format_bytes(high * high * bytes_per_pixel)} at {high}")
    return Range(low, high, note=note, optional=optional), text
