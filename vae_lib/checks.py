"""Checks for values where they enter: one clear line naming the value, what was expected and what came.

Plain values (configs, model arguments)::

    check_int("train.epochs", 2.5, minimum=0)        # ValueError: train.epochs must be an integer >= 0, got 2.5
    check_float("train.lr", "fast", minimum=0, exclusive=True)   # ... must be a number > 0, got 'fast'
    check_choice("train.device", "gpu", DEVICES)
    check_truncation_psi(float("nan"))               # ... must be a finite number in [-2, 2], got nan

Tensors (models)::

    z = check_latent(z, z_dim, like=weight)          # (B, z_dim), finite; float64 converted to like's dtype
    x = as_input_dtype(x, like=weight)               # float64 images converted, integers named

All raise ``ValueError`` (a bool is not taken for a number: ``True`` is an int in Python). Each
returns the value (converted where that is safe), so that a call site reads ``n = check_int(...)``.
"""
from __future__ import annotations

import math
import numbers
import re

import torch

# StyleGAN's truncation: psi = 1 leaves w alone, 0 gives the average w, psi < 0 mirrors w through the
# average and psi > 1 extrapolates away from it. Beyond +-2 the codes leave the region the mapping
# was trained on and the images stop meaning anything.
TRUNCATION_PSI_RANGE = (-2.0, 2.0)
# The devices a config or the CLI may name ("cuda:1" etc. included).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps, xpu"
# Floating dtypes the models compute in; float64 inputs are converted to the model's dtype.
MODEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _bounds(minimum, maximum, exclusive: bool) -> str:
    lo = ">" if exclusive else ">="
    if minimum is not None and maximum is not None:
        return f" in ({minimum}, {maximum}]" if exclusive else f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" {lo} {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def is_int(value) -> bool:
    """True for Python / NumPy integers (not bools, not floats such as 2.0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for ints and floats (not bools, strings or tensors)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` as an int within [minimum, maximum]; ``optional`` lets None through."""
    if value is None and optional:
        return None
    what = f"an integer{_bounds(minimum, maximum, False)}" + (" or None" if optional else "")
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_float(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                exclusive: bool = False, optional: bool = False) -> float | None:
    """``value`` (int or float, finite) within the bounds; ``exclusive``: > minimum rather than >=.

    Returned as given (an int stays an int), so that a config's JSON and hash do not change."""
    if value is None and optional:
        return None
    what = f"a number{_bounds(minimum, maximum, exclusive)}" + (" or None" if optional else "")
    ok = is_number(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if exclusive else value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_str(name: str, value, *, optional: bool = False) -> str | None:
    """A non-empty string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string{' or None' if optional else ''}, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> object:
    # Same type and value: 1 is not True, "1" is not 1.
    if not any(c is value or (type(c) is type(value) and c == value) for c in choices):
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_device(name: str, value) -> str:
    """A device name a config may hold: auto, cpu, cuda, cuda:N, mps, xpu (availability is checked
    when it is used, by ``runtime.pick_device``)."""
    if not isinstance(value, str) or not DEVICE_PATTERN.match(value):
        raise ValueError(f"{name} must be one of {DEVICE_CHOICES}, got {value!r}")
    return value


def check_truncation_psi(psi, name: str = "truncation_psi") -> float:
    """psi as a float, finite and within :data:`TRUNCATION_PSI_RANGE` (NaN would give NaN images)."""
    lo, hi = TRUNCATION_PSI_RANGE
    if isinstance(psi, torch.Tensor) and psi.numel() == 1:
        psi = psi.item()
    if not is_number(psi) or not math.isfinite(psi) or not lo <= psi <= hi:
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}] (1: no truncation, 0: the "
                         f"average w), got {psi!r}")
    return float(psi)


def check_latent(z, z_dim: int, *, like: torch.Tensor | None = None, name: str = "z") -> torch.Tensor:
    """z as a (B, z_dim) floating tensor with B >= 1 and only finite values; float64 is converted to
    ``like``'s dtype (the model's). One device sync (the finiteness check)."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a tensor of shape (B, {z_dim}), got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != z_dim or z.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, {z_dim}) with B >= 1, got {tuple(z.shape)}")
    z = as_input_dtype(z, like=like, name=name)
    if not bool(torch.isfinite(z).all()):
        bad = int((~torch.isfinite(z)).sum())
        raise ValueError(f"{name} holds {bad} NaN/inf value(s) of {z.numel()}: decoding them would give NaN images")
    return z


def as_input_dtype(x: torch.Tensor, *, like: torch.Tensor | None = None, name: str = "x") -> torch.Tensor:
    """``x`` in a dtype the model computes in: float64 becomes ``like``'s floating dtype (float32 by
    default); integer or bool tensors are an error (images must be scaled to the model's range first)."""
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float32, bfloat16 or float16), got {x.dtype}")
    target = like.dtype if like is not None and like.is_floating_point() else torch.float32
    if x.dtype == torch.float64 and target != torch.float64:
        return x.to(target)
    return x
