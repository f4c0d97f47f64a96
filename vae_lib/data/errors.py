"""Exceptions of the data layer."""
from __future__ import annotations


class DatasetNotFoundError(RuntimeError):
    """A dataset's files are nowhere on this machine and could not be downloaded.

    The message lists every place that was tried and what to do about it.
    """
