"""Render the procedural sets on one intra-op thread.

Their ops are many small element-wise passes; with two OpenMP threads on a 2-core machine that
is also running a notebook kernel or a test runner, the threads' barriers spin against the other
processes and rendering took 10x longer (measured: 20k shapes at 64 px, 2.4 s on one thread,
31 s on two under load). One thread is fast enough and predictable.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def one_thread():
    """Set torch's intra-op threads to 1 inside the block, and restore the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
