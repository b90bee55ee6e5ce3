"""Exceptions for inputs the user can fix: each message names the file or value and the problem."""


class InputError(ValueError):
    """A file, array or setting given by the user cannot be used; the message says why."""


class CheckpointError(InputError):
    """A checkpoint file is missing, truncated, foreign or of another architecture."""
