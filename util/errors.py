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


class OutputError(RuntimeError):
    """An output that cannot be written: a folder that is a file or read-only, a full disk."""


USER_ERRORS = (InputError, CheckpointError, OptionError, OutputError)

