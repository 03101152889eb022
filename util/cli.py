"""What every entry script shares: the ``--help`` layout and the exit status of user errors."""
import argparse
import textwrap
import sys

from util.errors import USER_ERRORS
from util.threads import cap_threads


def is_switch(action):
    """Whether the argparse ``action`` is an on/off flag taking no value (``store_true``/``store_false``)."""
    return isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every flag with the default in force: ``(default: X)``.

    A switch (``store_true``/``store_false``) shows ``(default: on)`` when the
    value it sets is the default and ``(default: off)`` otherwise, so
    ``--tf_log`` and its ``--no_tf_log`` read right although they share one
    value. Required flags have no default and show none; a help text that
    states its default itself is left as it is. Descriptions keep their line
    breaks.
    """

    def _get_help_string(self, action):
        if action.required or "(default:" in (action.help or ""):
            return action.help
        if is_switch(action):
            state = "on" if action.default == action.const else "off"
            return f"{action.help or ''} (default: {state})".strip()
        return super()._get_help_string(action)

    def _split_lines(self, text, width):
        # wrap at spaces only: a default such as a hyphenated path stays whole on one line
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_on_hyphens=False)


def run_cli(main, argv=None, cleanup=None, torch_threads=True):
    """Run ``main(argv)`` as a command-line entry point and return its exit status.

    Errors caused by the user's input or options (:data:`util.errors.USER_ERRORS`)
    are printed as one ``error: ...`` line and give status 2; other exceptions
    propagate with their traceback. ``main`` returning an ``int`` sets the status
    (1: a batch job in which some items failed); any other result gives 0.
    ``cleanup`` (optional) always runs afterwards. Torch's threads are capped
    first (:func:`util.threads.cap_threads`) unless ``torch_threads`` is False
    (a torch-free command: capping would load torch).
    """
    if torch_threads:
        cap_threads()
    try:
        result = main(argv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if cleanup is not None:
            cleanup()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
