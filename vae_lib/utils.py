"""The ground floor: small helpers that every layer may use, and that import nothing of vae_lib.

* :func:`evaluation_mode`, :func:`model_device`: run a module in eval mode without gradients; find its device.
* :func:`standard_normal`: N(0, I) noise drawn on a generator's device, so a CPU generator gives the
  same numbers whatever device the model is on.
* :func:`rescale`: map pixel values linearly from one range onto another ((0, 1) <-> (-1, 1)).
* :func:`atomic_write`: write a file so that an interrupted run never leaves half of it behind.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import torch


# ---------------------------------------------------------------------------------------- modules
@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module):
    """``model.eval()`` under ``torch.no_grad()``; the previous train/eval mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (cpu for a model with neither)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------- tensors
def standard_normal(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, I) of ``shape`` with the dtype and device of ``like``, drawn on the generator's device."""
    device = generator.device if generator is not None else like.device
    eps = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return eps.to(like.device)


def rescale(images: torch.Tensor, source_range, target_range) -> torch.Tensor:
    """Map pixel values linearly from ``source_range`` onto ``target_range`` (None: leave as they are).

    (a, b) -> (c, d): x -> (x - a) (d - c) / (b - a) + c. Equal ranges return ``images`` itself.
    """
    if source_range is None:
        return images
    (a, b), (c, d) = (tuple(float(v) for v in r) for r in (source_range, target_range))
    if not (b > a and d > c):
        raise ValueError(f"Ranges must be (low, high) with low < high, got {source_range} and {target_range}.")
    if (a, b) == (c, d):
        return images
    return (images - a) * ((d - c) / (b - a)) + c


# ------------------------------------------------------------------------------------------ files
def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    The rename is atomic on one file system, so readers see either no file or the whole file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


__all__ = ["atomic_write", "evaluation_mode", "model_device", "rescale", "standard_normal"]
