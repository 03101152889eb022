"""Error types shared across the project.

Every error raised for bad user input names the offending file (or option)
and says what is wrong, so that a long batch job can report it and go on.
"""


class InputError(ValueError):
    """Bad user input: a corrupt file, an out-of-range label, a misshaped code file..."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match the architecture."""


class OptionError(ValueError):
    """An inconsistent or invalid command-line option."""


USER_ERRORS = (InputError, CheckpointError, OptionError)


def run_cli(main, argv=None, cleanup=None):
    """Run ``main(argv)`` as a command-line entry point and return its exit status.

    Errors caused by the user's input or options (``USER_ERRORS``) are printed
    as one ``error: ...`` line and give status 2; other exceptions propagate
    with their traceback. ``cleanup`` (optional) always runs afterwards.
    """
    import sys

    try:
        main(argv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if cleanup is not None:
            cleanup()
    return 0
