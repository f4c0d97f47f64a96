"""Exercises of notebooks 04 (mapping network) and 05 (AdaIN synthesis), checked against vae_lib.

Each ``check_*`` calls the student's function on fixed inputs, compares it with the layer of
``vae_lib.nn.style`` that it re-implements, and raises ``ExerciseError`` with a hint about the usual
mistake when they differ. ``solution_*`` are written by hand, as a student would, for reference.

==================  ==========================================  ===================================
check               the student writes                          compared with
==================  ==========================================  ===================================
check_pixel_norm    pixel_norm(x) (B, D) -> (B, D)              ``PixelNorm()``
check_truncation    truncate(w, w_avg, psi) -> (B, D)           ``MappingNetwork.truncate``
check_adain         adain(x, scale, bias) (B, C, H, W)          ``AdaIN`` with the same style
check_mixing        mix(ws1, ws2, crossover) (B, L, D)          ``mix_styles``
==================  ==========================================  ===================================
"""
from __future__ import annotations

import math

import torch

from vae_lib.exercises import ExerciseError, exercise, passed
from vae_lib.exercises import call_student as _call, check_shape as _check_shape, close as _close, max_diff as _max_diff
from vae_lib.nn.style import AdaIN, MappingNetwork, PixelNorm, mix_styles

ATOL = 1e-4


# ---- reference solutions -------------------------------------------------------------------------
def solution_pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each code by its root-mean-square over the features: (B, D) -> (B, D)."""
    return x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + eps)


def solution_truncation(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """Move w towards the average code: w_avg + psi (w - w_avg); w (B, D), w_avg (D,)."""
    return w_avg + psi * (w - w_avg)


def solution_adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                   eps: float = 1e-5) -> torch.Tensor:
    """Instance-normalise each (image, channel) over H, W, then apply the style; scale, bias (B, C)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    return scale[:, :, None, None] * (x - mean) / torch.sqrt(var + eps) + bias[:, :, None, None]


def solution_mixing(ws1: torch.Tensor, ws2: torch.Tensor, crossover: int) -> torch.Tensor:
    """Layers [0, crossover) from ws1, the rest from ws2; (B, L, D) each."""
    mixed = ws2.clone()
    mixed[:, :crossover] = ws1[:, :crossover]
    return mixed


# ---- checks --------------------------------------------------------------------------------------
@exercise("pixel_norm", reference="solution_pixel_norm")
def check_pixel_norm(student_fn) -> bool:
    """``student_fn(x)`` for x (B, D) must equal ``PixelNorm()(x)`` (eps = 1e-8 inside the root)."""
    gen = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(6, 16, generator=gen) + 1.0
    got = _call("pixel_norm", student_fn, x)
    _check_shape("pixel_norm", got, x.shape)
    want = PixelNorm()(x)
    if not _close(got, want):
        if _close(got * math.sqrt(x.shape[1]), want):
            hint = ("you divided by the L2 norm: PixelNorm divides by the root of the *mean* of squares, "
                    "so every code ends on the sphere of radius sqrt(D), not 1")
        elif _close(got, x / torch.sqrt((x ** 2).mean(dim=0, keepdim=True) + 1e-8)):
            hint = "you averaged over the batch (dim 0): average over the features of each code (dim 1)"
        elif _close(got, (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)):
            hint = "you standardised (subtracted the mean): PixelNorm only rescales, it keeps the direction"
        else:
            hint = "compute x / sqrt(mean(x ** 2 over dim 1) + 1e-8)"
        raise ExerciseError(f"pixel_norm differs from PixelNorm (max |diff| {_max_diff(got, want):.3g}): {hint}.")
    zero = _call("pixel_norm", student_fn, torch.zeros(2, 16))
    if not torch.isfinite(zero).all():
        raise ExerciseError("pixel_norm of a zero vector gave NaN or inf: add eps = 1e-8 inside the square root.")
    return passed("pixel_norm", "equals vae_lib.nn.style.PixelNorm")


@exercise("truncate", reference="solution_truncation")
def check_truncation(student_fn) -> bool:
    """``student_fn(w, w_avg, psi)`` must equal ``MappingNetwork.truncate`` for several psi (incl. 0, 1, 1.5)."""
    gen = torch.Generator().manual_seed(1)
    w, w_avg = torch.randn(5, 8, generator=gen), torch.randn(8, generator=gen)
    mapping = MappingNetwork(z_dim=8, num_layers=1)
    mapping.w_avg.copy_(w_avg)
    for psi in (0.7, 0.0, 1.0, 1.5):
        got = _call("truncate", student_fn, w, w_avg, psi)
        _check_shape("truncate", got, w.shape)
        want = mapping.truncate(w, psi)
        if not _close(got, want):
            if _close(got, mapping.truncate(w, 1 - psi)):
                hint = "psi is swapped: psi = 1 must give w itself, psi = 0 the average w_avg"
            else:
                hint = "the truncated code is w_avg + psi * (w - w_avg), i.e. w_avg.lerp(w, psi)"
            raise ExerciseError(f"truncate(w, w_avg, psi={psi}) differs from the reference "
                                f"(max |diff| {_max_diff(got, want):.3g}): {hint}.")
    return passed("truncate", "equals MappingNetwork.truncate for psi in 0, 0.7, 1, 1.5")


@exercise("adain", reference="solution_adain")
def check_adain(student_fn) -> bool:
    """``student_fn(x, scale, bias)`` must equal ``AdaIN(x, w)`` when (scale, bias) = ``AdaIN.style(w)``."""
    gen = torch.Generator().manual_seed(2)
    layer = AdaIN(channels=4, w_dim=6)
    with torch.no_grad():
        layer.affine.weight.copy_(0.3 * torch.randn(layer.affine.weight.shape, generator=gen))
        layer.affine.bias.copy_(0.3 * torch.randn(layer.affine.bias.shape, generator=gen))
    x = 2.0 * torch.randn(3, 4, 5, 5, generator=gen) + 0.5
    w = torch.randn(3, 6, generator=gen)
    with torch.no_grad():
        scale, bias = layer.style(w)
        want = layer(x, w)
    got = _call("adain", student_fn, x, scale, bias)
    _check_shape("adain", got, x.shape)
    if not _close(got, want):
        if _close(got, solution_adain(x, bias, scale)):
            hint = "scale and bias are swapped: the result is scale * normalised + bias"
        elif _close(got, _normalised_over(x, (2, 3), scale, bias, unbiased=True), atol=1e-3):
            hint = ("you used the unbiased variance (torch.std/var default): instance norm divides by "
                    "the biased one, mean((x - mean)^2), as torch.var(..., unbiased=False)")
        elif _close(got, _normalised_over(x, (1, 2, 3), scale, bias)):
            hint = "you normalised over channels too (dims 1, 2, 3): normalise each channel on its own (dims 2, 3)"
        elif _close(got, _normalised_over(x, (0, 2, 3), scale, bias)):
            hint = "you normalised over the batch (dims 0, 2, 3, batch norm): normalise each image on its own"
        else:
            hint = ("per image and channel: (x - mean) / sqrt(var + eps) over H, W, then "
                    "scale[:, :, None, None] * ... + bias[:, :, None, None]")
        raise ExerciseError(f"adain differs from vae_lib's AdaIN (max |diff| {_max_diff(got, want):.3g}): {hint}.")
    return passed("adain", "equals vae_lib.nn.style.AdaIN given the same style")


@exercise("mix", reference="solution_mixing")
def check_mixing(student_fn) -> bool:
    """``student_fn(ws1, ws2, k)`` must equal ``mix_styles`` for every crossover k in [0, L]."""
    gen = torch.Generator().manual_seed(3)
    ws1, ws2 = torch.randn(2, 6, 4, generator=gen), torch.randn(2, 6, 4, generator=gen)
    num_layers = ws1.shape[1]
    for k in (3, 0, num_layers, 1):
        got = _call("mix", student_fn, ws1, ws2, k)
        _check_shape("mix", got, ws1.shape)
        want = mix_styles(ws1, ws2, k)
        if torch.equal(got, want):
            continue
        if torch.equal(got, mix_styles(ws2, ws1, k)):
            hint = "ws1 and ws2 are swapped: the first (coarse) layers come from ws1"
        elif any(torch.equal(got, mix_styles(ws1, ws2, j)) for j in (k - 1, k + 1) if 0 <= j <= num_layers):
            hint = "off by one: layers 0 .. crossover-1 come from ws1, so crossover layers in all come from ws1"
        else:
            hint = "cross over along the layer axis (dim 1): ws[:, :k] from ws1 and ws[:, k:] from ws2"
        raise ExerciseError(f"mix(ws1, ws2, crossover={k}) differs from mix_styles: {hint}.")
    return passed("mix", "equals vae_lib.nn.style.mix_styles for crossovers 0, 1, 3 and L")


# ---- helpers -------------------------------------------------------------------------------------












def _normalised_over(x, dims, scale, bias, eps: float = 1e-5, unbiased: bool = False):
    """AdaIN with the statistics taken over ``dims``: the usual wrong answers, to name them."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return scale[:, :, None, None] * (x - mean) / torch.sqrt(var + eps) + bias[:, :, None, None]
