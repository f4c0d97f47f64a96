"""Exercises of notebook 00: summarise a dataset with tensor ops.

* ``check_class_means(class_means)``: your ``class_means(images, labels, num_classes)`` -> the mean
  image of each class, (num_classes, C, H, W), against the reference on digits and on a small RGB case.
* ``check_factor_frequencies(factor_frequencies)``: your ``factor_frequencies(factors, bins)`` -> for
  each factor, the fraction of samples in each of its bins, against the reference, including a case
  where the last bins are empty.

Reference answers: ``solution_class_means`` and ``solution_factor_frequencies``.
"""
from __future__ import annotations

import torch

from vae_lib.data.shapes import FACTOR_BINS, sample_factors
from vae_lib.data.synthetic_digits import render_digits
from vae_lib.exercises import ExerciseError, exercise, passed

_ATOL = 1e-5


def solution_class_means(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, C, H, W), (N,) -> (num_classes, C, H, W): the mean image of each class (zeros for an empty class)."""
    sums = torch.zeros(num_classes, *images.shape[1:], dtype=images.dtype).index_add_(0, labels, images)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(images.dtype)
    return sums / counts.view(-1, *([1] * (images.ndim - 1)))


def solution_factor_frequencies(factors: dict[str, torch.Tensor], bins: dict[str, int]) -> dict[str, torch.Tensor]:
    """name -> (bins[name],) float: the fraction of samples in each bin (sums to 1)."""
    return {name: torch.bincount(values, minlength=bins[name]).float() / len(values)
            for name, values in factors.items()}


def _class_mean_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    digits, labels = render_digits(range(300))
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(12, 3, 4, 5, generator=generator) * 2 - 1
    rgb_labels = torch.tensor([2, 0, 1, 2, 2, 0, 1, 1, 0, 2, 1, 0])
    return [("300 synthetic digits, 10 classes", digits, labels, 10),
            ("12 RGB images (3, 4, 5) in [-1, 1], 3 classes, labels in no particular order", rgb, rgb_labels, 3)]


@exercise("class_means", reference="solution_class_means")
def check_class_means(fn) -> bool:
    """Compare ``fn(images, labels, num_classes)`` with the reference; raise ExerciseError on a difference."""
    for label, images, labels, num_classes in _class_mean_cases():
        inputs = images.clone(), labels.clone()
        try:
            got = fn(images, labels, num_classes)
        except Exception as error:  # noqa: BLE001  the student's code may fail in any way
            raise ExerciseError(f"class_means on {label} raised {type(error).__name__}: {error}") from error
        if not torch.equal(images, inputs[0]) or not torch.equal(labels, inputs[1]):
            raise ExerciseError(f"class_means on {label} changed its inputs in place; work on new tensors.")
        want = solution_class_means(images, labels, num_classes)
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseError(f"class_means on {label}: expected a tensor of shape {tuple(want.shape)} "
                                f"(num_classes, C, H, W), got {shape}.")
        error = (got.float() - want).abs().flatten(1).amax(1)
        if error.max() > _ATOL:
            worst = int(error.argmax())
            hint = (" Your values are too large by the class size: divide each sum by the number of images "
                    "of that class." if torch.allclose(got.float()[worst], want[worst] * (labels == worst).sum(),
                                                       atol=1e-3) else "")
            raise ExerciseError(f"class_means on {label}: class {worst} differs from the reference by up to "
                                f"{float(error[worst]):.4g}.{hint}")
    return passed("class means", "digits and an RGB case match the reference")


def _frequency_cases() -> list[tuple[str, dict[str, torch.Tensor], dict[str, int]]]:
    shapes = sample_factors(range(37))
    return [("37 shapes samples, every factor", shapes, dict(FACTOR_BINS)),
            ("a factor whose last bins are empty", {"light": torch.tensor([0, 0, 1])}, {"light": 4})]


@exercise("factor_frequencies", reference="solution_factor_frequencies")
def check_factor_frequencies(fn) -> bool:
    """Compare ``fn(factors, bins)`` with the reference; raise ExerciseError on a difference."""
    for label, factors, bins in _frequency_cases():
        try:
            got = fn(factors, bins)
        except Exception as error:  # noqa: BLE001
            raise ExerciseError(f"factor_frequencies on {label} raised {type(error).__name__}: {error}") from error
        want = solution_factor_frequencies(factors, bins)
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(got) if isinstance(got, dict) else type(got).__name__
            raise ExerciseError(f"factor_frequencies on {label}: expected a dict with keys {sorted(want)}, "
                                f"got {keys}.")
        for name, expected in want.items():
            value = torch.as_tensor(got[name], dtype=torch.float32)
            if value.shape != expected.shape:
                raise ExerciseError(f"factor_frequencies on {label}: {name!r} should have one entry per bin, "
                                    f"{bins[name]}, got shape {tuple(value.shape)}. torch.bincount stops at the "
                                    "largest value it sees: pass minlength=.")
            if not torch.allclose(value, expected, atol=_ATOL):
                raise ExerciseError(f"factor_frequencies on {label}: {name!r} is {value.tolist()}, expected "
                                    f"{[round(v, 4) for v in expected.tolist()]} (fractions that sum to 1).")
    return passed("factor frequencies", "all shapes factors, and empty bins, match the reference")
