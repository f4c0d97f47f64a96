"""Exceptions of the data layer."""
from __future__ import annotations


class DatasetNotFoundError(RuntimeError):
    """A dataset's files are nowhere on this machine and could not be downloaded.

    The message lists every place that was tried and what to do about it.
    """


class DatasetFileError(ValueError):
    """A dataset file that is there but unreadable (garbage, truncated, another format); the
    message names the file and says what is wrong with it."""
