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
check_predicted_codes   predicted_codes() -> 3 numbers          measured with ``PixelNorm`` and
                        (notebook 04: predict, then run)        ``MappingNetwork.truncate``
check_predicted_adain   predicted_adain() -> 3 numbers          measured with ``AdaIN``
                        (notebook 05: predict, then run)
==================  ==========================================  ===================================
"""
from __future__ import annotations

import math

import torch

from vae_lib.exercises import ExerciseError, compare_predictions, exercise, passed
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


# ---- notebook 04, exercise 3: predict, then run -------------------------------------------------
PREDICTED_CODES = {
    "rms after PixelNorm, z x 1000": "the root-mean-square of one code after PixelNorm, when z ~ N(0, I) of 512 "
                                     "dimensions is first multiplied by 1000",
    "norm after PixelNorm": "the Euclidean length of that code after PixelNorm (512 dimensions)",
    "spread at psi 0.25": "the spread (standard deviation over samples) of truncated codes w_avg + psi (w - w_avg) "
                          "at psi = 0.25, as a share of the spread of w itself",
}


def _measured_codes() -> dict[str, float]:
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(64, 512, generator=gen)
    normed = PixelNorm()(1000.0 * z)
    mapping = MappingNetwork(z_dim=512, num_layers=2)
    with torch.no_grad():
        w = mapping(z)
        mapping.w_avg.copy_(w.mean(0))
        truncated = mapping.truncate(w, 0.25)
    return {"rms after PixelNorm, z x 1000": normed.pow(2).mean(1).sqrt().mean().item(),
            "norm after PixelNorm": normed.norm(dim=1).mean().item(),
            "spread at psi 0.25": (truncated.std(0).mean() / w.std(0).mean()).item()}


def _codes_hint(key: str, got: float, want: float) -> str | None:
    if key == "rms after PixelNorm, z x 1000" and abs(got - 1000) < 50:
        return "PixelNorm divides each code by its own root-mean-square, so any scale of z cancels"
    if key == "norm after PixelNorm" and abs(got - 1) < 0.05:
        return "a root-mean-square of 1 over 512 numbers is a length of sqrt(512): the code lies on that sphere"
    if key == "spread at psi 0.25" and abs(got - 0.0625) < 0.01:
        return "truncation scales the distance to w_avg by psi, so the spread by psi, not psi squared"
    return None


def solution_predicted_codes():
    # PixelNorm: x / rms(x), so any scale of z cancels (rms 1) and the length is sqrt(D) * rms = sqrt(512).
    # Truncation: w_avg + psi (w - w_avg) moves every code psi of the way from w_avg: spreads scale by psi.
    return {"rms after PixelNorm, z x 1000": 1.0,
            "norm after PixelNorm": math.sqrt(512),
            "spread at psi 0.25": 0.25}


@exercise("predicted_codes", reference="solution_predicted_codes")
def check_predicted_codes(student_fn) -> bool:
    """``student_fn()`` -> {key of ``PREDICTED_CODES``: number}, compared with ``PixelNorm`` and truncation measured
    on 64 codes (within 2 %)."""
    compare_predictions("predicted_codes", student_fn, _measured_codes(), PREDICTED_CODES, rel=0.02,
                        hint=_codes_hint)
    return passed("predicted_codes", "PixelNorm forgets the scale of z, truncation shrinks the spread by psi")


# ---- notebook 05, exercise 3: predict, then run -------------------------------------------------
PREDICTED_ADAIN = {
    "channel mean": "the mean over H x W of one output channel of AdaIN whose style is y_s = 3, y_b = -1",
    "channel std": "the standard deviation over H x W of that output channel",
    "channel std, input x 100": "the same standard deviation when the input x is multiplied by 100 first",
}


def _measured_adain() -> dict[str, float]:
    gen = torch.Generator().manual_seed(6)
    layer = AdaIN(channels=4, w_dim=2)
    with torch.no_grad():      # zero weight: the style is the bias alone, y_s = 1 + a_s = 3 and y_b = -1
        layer.affine.bias.copy_(torch.tensor([2.0] * 4 + [-1.0] * 4))
        x = 0.5 + 2.0 * torch.randn(2, 4, 16, 16, generator=gen)
        w = torch.zeros(2, 2)
        out, out_large = layer(x, w), layer(100.0 * x, w)
    return {"channel mean": out.mean((2, 3)).mean().item(),
            "channel std": out.std((2, 3), unbiased=False).mean().item(),
            "channel std, input x 100": out_large.std((2, 3), unbiased=False).mean().item()}


def _adain_hint(key: str, got: float, want: float) -> str | None:
    if key == "channel mean" and abs(got) < 0.05:
        return "the instance norm sets the mean to 0, and then the style adds y_b"
    if key.startswith("channel std") and abs(got - 300) < 10:
        return "the instance norm divides by the input's own standard deviation first: its scale cancels"
    if key.startswith("channel std") and abs(got - 1) < 0.05:
        return "after the normalisation the style multiplies by y_s"
    return None


def solution_predicted_adain():
    # AdaIN(x) = y_s (x - mean) / std + y_b per channel: the output's mean is y_b, its std |y_s|, whatever x was.
    return {"channel mean": -1.0, "channel std": 3.0, "channel std, input x 100": 3.0}


@exercise("predicted_adain", reference="solution_predicted_adain")
def check_predicted_adain(student_fn) -> bool:
    """``student_fn()`` -> {key of ``PREDICTED_ADAIN``: number}, compared with ``AdaIN`` measured on a fixed style
    (within 1 %)."""
    compare_predictions("predicted_adain", student_fn, _measured_adain(), PREDICTED_ADAIN, hint=_adain_hint)
    return passed("predicted_adain", "the style sets each channel's mean and spread, the input's own are gone")
