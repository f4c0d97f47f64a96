"""Exercises of notebook 08 (exploring and judging the models), checked against vae_lib.

==================  ===============================================  ====================================
check               the student writes                               compared with
==================  ===============================================  ====================================
check_slerp         slerp(z_a, z_b, t) (D,), (D,), float -> (D,)      ``viz.interpolate_latents(spherical)``
check_class_swap    decode_every_class(model, z) (N, z) ->            ``model.decode(z_i, c)`` for each c
                    (N, num_classes, C, H, W)
check_frechet_1d    frechet_1d(mu1, sigma1, mu2, sigma2) -> float     ``metrics.frechet_distance`` (1-D)
==================  ===============================================  ====================================

``solution_*`` are written by hand, as a student would, for reference.
"""
from __future__ import annotations

import math

import torch

from vae_lib.exercises import ExerciseError, exercise, passed
from vae_lib.exercises import call_student
from vae_lib.metrics import frechet_distance
from vae_lib.models.cvae import CVAE
from vae_lib.utils import evaluation_mode
from vae_lib.viz import interpolate_latents

ATOL = 1e-4


# ---- reference solutions -------------------------------------------------------------------------
def solution_slerp(z_a: torch.Tensor, z_b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: sin((1-t) omega) / sin(omega) z_a + sin(t omega) / sin(omega) z_b,
    omega the angle between z_a and z_b; (D,) each."""
    cos = torch.dot(z_a, z_b) / (z_a.norm() * z_b.norm())
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)


def solution_class_swap(model, z: torch.Tensor) -> torch.Tensor:
    """Every code z_i decoded with every class c: (N, num_classes, C, H, W)."""
    rows = []
    with torch.no_grad():
        for c in range(model.num_classes):
            rows.append(model.decode(z, torch.full((z.shape[0],), c, dtype=torch.long)))
    return torch.stack(rows, dim=1)


def solution_frechet_1d(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """Fréchet distance between N(mu1, sigma1^2) and N(mu2, sigma2^2): (mu1 - mu2)^2 + (sigma1 - sigma2)^2."""
    return (mu1 - mu2) ** 2 + (sigma1 - sigma2) ** 2


# ---- checks --------------------------------------------------------------------------------------
@exercise("slerp", reference="solution_slerp")
def check_slerp(student_fn) -> bool:
    """``student_fn(z_a, z_b, t)`` must equal the spherical path of ``viz.interpolate_latents`` at t."""
    gen = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(16, generator=gen), 2.0 * torch.randn(16, generator=gen)
    steps = 5
    want = interpolate_latents(z_a, z_b, steps, spherical=True)
    for i, t in enumerate(torch.linspace(0, 1, steps).tolist()):
        got = call_student("slerp", student_fn, z_a.clone(), z_b.clone(), t, tensor=False)
        if not isinstance(got, torch.Tensor) or got.shape != z_a.shape:
            raise ExerciseError(f"slerp must return a tensor of shape {tuple(z_a.shape)}, got "
                                f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
        if torch.allclose(got, want[i], atol=ATOL):
            continue
        lerp = torch.lerp(z_a, z_b, t)
        unit = interpolate_latents(z_a / z_a.norm(), z_b / z_b.norm(), steps, spherical=True)[i]
        if torch.allclose(got, lerp, atol=ATOL):
            hint = "that is the straight line (1 - t) z_a + t z_b: weight the endpoints with sines of the angle"
        elif torch.allclose(got, unit, atol=ATOL):
            hint = ("you interpolated the unit vectors: normalise only to find the angle omega, then weight the "
                    "original z_a and z_b")
        elif t in (0.0, 1.0):
            hint = f"at t = {t:g} the path must be exactly {'z_a' if t == 0 else 'z_b'}"
        else:
            hint = ("use omega = arccos(z_a . z_b / (|z_a| |z_b|)) and "
                    "(sin((1 - t) omega) z_a + sin(t omega) z_b) / sin(omega)")
        raise ExerciseError(f"slerp at t = {t:g} differs from the reference (max |diff| "
                            f"{(got - want[i]).abs().max().item():.3g}): {hint}.")
    return passed("slerp", "matches vae_lib.viz.interpolate_latents(spherical=True)")


@exercise("decode_every_class", reference="solution_class_swap")
def check_class_swap(student_fn) -> bool:
    """``student_fn(model, z)`` must return every z_i decoded with every class: (N, num_classes, 1, 28, 28)."""
    torch.manual_seed(0)
    model = CVAE(z_dim=4, num_classes=3).eval()
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    with evaluation_mode(model):
        want = solution_class_swap(model, z)
        got = call_student("decode_every_class", student_fn, model, z.clone(), tensor=False)
        logits = torch.stack([model.decode_params(z, torch.full((2,), c)) for c in range(3)], dim=1)
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"decode_every_class must return a tensor, got {type(got).__name__}.")
    got = got.detach()
    if got.shape != want.shape:
        if got.shape == want.transpose(0, 1).shape:
            hint = "the classes come first: index the result as [i, c] (code, class), e.g. torch.stack(..., dim=1)"
        elif got.numel() == want.numel():
            hint = f"reshape to (N, num_classes, C, H, W) = {tuple(want.shape)}"
        else:
            hint = "decode each of the N codes with each of the num_classes classes"
        raise ExerciseError(f"decode_every_class returned shape {tuple(got.shape)}, expected "
                            f"{tuple(want.shape)}: {hint}.")
    if not torch.allclose(got, want, atol=ATOL):
        if torch.allclose(got, logits, atol=ATOL):
            hint = "those are logits (decode_params): model.decode gives the image, sigmoid(logits)"
        elif torch.allclose(got, want[:, :1].expand_as(want), atol=ATOL):
            hint = "every column shows class 0: pass a label tensor of class c for column c"
        else:
            hint = "decode the given z (do not draw new codes) with labels torch.full((N,), c)"
        raise ExerciseError(f"decode_every_class differs from model.decode (max |diff| "
                            f"{(got - want).abs().max().item():.3g}): {hint}.")
    return passed("decode_every_class", "same z, every class")


@exercise("frechet_1d", reference="solution_frechet_1d")
def check_frechet_1d(student_fn) -> bool:
    """``student_fn(mu1, sigma1, mu2, sigma2)`` must equal the Fréchet distance of two 1-D Gaussians."""
    cases = [(0.0, 1.0, 0.0, 1.0), (1.0, 1.0, -2.0, 1.0), (0.5, 2.0, 0.0, 0.5), (3.0, 0.1, 1.0, 3.0)]
    for mu1, s1, mu2, s2 in cases:
        want = frechet_distance(torch.tensor([mu1]), torch.tensor([[s1 ** 2]]),
                                torch.tensor([mu2]), torch.tensor([[s2 ** 2]]))
        got = call_student("frechet_1d", student_fn, mu1, s1, mu2, s2, tensor=False)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise ExerciseError(f"frechet_1d must return a number, got {type(got).__name__}.") from None
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6):
            continue
        if math.isclose(got, (mu1 - mu2) ** 2 + (s1 ** 2 - s2 ** 2) ** 2, abs_tol=1e-6):
            hint = "you compared variances: the 1-D formula uses the standard deviations, (sigma1 - sigma2)^2"
        elif math.isclose(got, (mu1 - mu2) ** 2, abs_tol=1e-6):
            hint = "the spread matters too: add the covariance term Tr(S1 + S2 - 2 (S1 S2)^1/2)"
        elif math.isclose(got, abs(mu1 - mu2) + abs(s1 - s2), abs_tol=1e-6):
            hint = "FID is a squared distance: square both differences"
        else:
            hint = "with S = sigma^2 in 1-D, Tr(S1 + S2 - 2 sqrt(S1 S2)) = (sigma1 - sigma2)^2"
        raise ExerciseError(f"frechet_1d({mu1}, {s1}, {mu2}, {s2}) = {got:.4g}, expected {want:.4g}: {hint}.")
    return passed("frechet_1d", "matches vae_lib.metrics.frechet_distance")

