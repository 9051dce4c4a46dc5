"""User-facing errors: each carries a one-line message the CLI prints without a traceback."""


class StemforgeError(Exception):
    """Base class for errors caused by user input (files, options, checkpoints)."""


class AudioError(StemforgeError):
    """An audio file is missing, unreadable, corrupt, empty or cannot be written."""


class ModelError(StemforgeError):
    """A model name, preset or checkpoint is unknown, corrupt or mismatched."""
