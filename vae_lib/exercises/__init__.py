"""Checks for the notebooks' exercises: a student's function or module against the reference.

One module per topic (``resblock``, ``style``, ...). Each check runs both on fixed inputs and
raises ``ExerciseError`` with a message that says what differs; on success it prints a short line.
Each topic module also holds the reference answers as ``solution_*`` functions; notebooks load them
in a collapsed cell tagged ``solution``, so nbval runs every exercise with the reference plugged in
while a student sees only the empty skeleton.
"""
from __future__ import annotations


class ExerciseError(AssertionError):
    """The student's answer does not match the reference; the message says how."""


def passed(name: str, detail: str = "") -> bool:
    print(f"\u2714 {name}: correct{(' - ' + detail) if detail else ''}")
    return True


def call_student(name: str, student_fn, *args, detach: bool = True, tensor: bool = True):
    """Run the student's ``student_fn(*args)``; any error it raises becomes an ``ExerciseError``
    that names the exercise. With ``tensor=True`` the result must be a tensor (detached by default)."""
    if not callable(student_fn):
        raise ExerciseError(f"{name}: expected a function, got {type(student_fn).__name__}.")
    try:
        out = student_fn(*args)
    except ExerciseError:
        raise
    except Exception as error:  # any mistake of the student's code is reported, not crashed on
        raise ExerciseError(f"{name} raised {type(error).__name__}: {error}") from error
    if not tensor:
        return out
    import torch

    if not isinstance(out, torch.Tensor):
        raise ExerciseError(f"{name} must return a torch.Tensor, got {type(out).__name__}.")
    return out.detach() if detach else out


def check_shape(name: str, got, shape) -> None:
    """Raise an ``ExerciseError`` unless ``got.shape == shape``."""
    if got.shape != shape:
        raise ExerciseError(f"{name} returned shape {tuple(got.shape)}, expected {tuple(shape)}.")


def close(a, b, atol: float = 1e-4, rtol: float = 1e-4) -> bool:
    """Same shape and allclose, compared in float64."""
    import torch

    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def max_diff(a, b) -> float:
    """Largest absolute difference, in float64."""
    return (a.double() - b.double()).abs().max().item()
