"""Checks for the notebooks' exercises: a student's function or module against the reference.

One module per topic (``resblock``, ``style``, ...). Each check runs both on fixed inputs and
raises ``ExerciseError`` with a message that says what differs; on success it prints a short ✔ line.
A student's answer that still raises ``NotImplementedError`` (the stub of the student notebooks)
gets a "not done yet" line instead, and the check returns False.

Each topic module also holds the reference answers as ``solution_*`` functions, the single source of
the solutions: ``python -m vae_lib.classroom sync`` writes each one, renamed to what the student
writes, into its notebook's solution cell between nbgrader's ``### BEGIN SOLUTION`` /
``### END SOLUTION`` markers, and ``python -m vae_lib.classroom student`` replaces those regions by
stubs. ``@exercise(name, reference)`` on a check registers the pair in ``EXERCISES``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

# The topic modules whose checks register themselves in EXERCISES when imported.
TOPICS = ("data", "resblock", "elbo", "style", "stylevae", "explore")


class ExerciseError(AssertionError):
    """The student's answer does not match the reference; the message says how."""


def passed(name: str, detail: str = "") -> bool:
    print(f"\u2714 {name}: correct{(' - ' + detail) if detail else ''}")
    return True


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``name`` is what the student writes (a function or class name), also the nbgrader
    ``grade_id`` of its solution cell; ``check`` and ``reference`` are names in ``module``."""
    name: str
    module: str
    check: str
    reference: str


EXERCISES: dict[str, Exercise] = {}


def all_exercises() -> dict[str, Exercise]:
    """Every registered exercise, by name (imports the topic modules)."""
    for topic in TOPICS:
        importlib.import_module(f"{__name__}.{topic}")
    return dict(EXERCISES)


def not_done(name: str, reason: str = "") -> bool:
    """The line a check prints for an answer that is still the stub; returns False."""
    print(f"\u2718 not done yet: {name}{f' ({reason})' if reason else ''} - replace the line "
          "`raise NotImplementedError(...)` in its cell with your code, run that cell, then this check again")
    return False


def _not_implemented(error: BaseException | None) -> NotImplementedError | None:
    """``error`` itself, or the error it was raised from, when that is a NotImplementedError."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NotImplementedError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def exercise(name: str, reference: str):
    """Decorate the check of exercise ``name`` (whose reference answer is ``reference`` in the same module):
    registers it, and turns a NotImplementedError of the student's code into the "not done yet" line."""
    def register(check):
        @functools.wraps(check)
        def run(student, *args, **kwargs):
            try:
                return check(student, *args, **kwargs)
            except (ExerciseError, NotImplementedError) as error:
                stub = _not_implemented(error)
                if stub is None:
                    raise
                message = str(stub)     # another stub's message: the answer calls an unfinished exercise
                return not_done(name, "" if message in ("", f"{name}: your code here") else f"it raised {message!r}")
        run.exercise = name
        EXERCISES[name] = Exercise(name, check.__module__, check.__name__, reference)
        return run
    return register


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


def compare_predictions(name: str, student_fn, measured: dict[str, float], questions: dict[str, str], *,
                        rel: float = 0.01, atol: float = 0.05, hint=None, unit: str = "") -> None:
    """The check of a predict-then-run exercise: ``student_fn()`` returns {key: number} for the keys of
    ``questions`` (key -> what is asked); prints each prediction beside the ``measured`` value and raises an
    ``ExerciseError`` naming every miss (beyond ``max(atol, rel * |measured|)``), with ``hint(key, got, want)``'s
    words when it has any."""
    predictions = call_student(name, student_fn, tensor=False)
    if not isinstance(predictions, dict) or set(predictions) != set(questions):
        keys = sorted(predictions) if isinstance(predictions, dict) else type(predictions).__name__
        raise ExerciseError(f"{name}() must return a dict with the keys {sorted(questions)}, got {keys}.")
    width = max(len(key) for key in questions) + 2
    print(f"{unit:<{width}}{'predicted':>11}{'measured':>11}")
    problems = []
    for key in questions:
        try:
            got = float(predictions[key])
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}()[{key!r}] must be a number, got {predictions[key]!r}.") from None
        want = float(measured[key])
        print(f"{key:<{width}}{got:>11.3f}{want:>11.3f}")
        if abs(got - want) > max(atol, rel * abs(want)):
            words = hint(key, got, want) if hint is not None else None
            problems.append(f"{key} ({questions[key]}): measured {want:.4g}, you predicted {got:.4g}"
                            + (f": {words}" if words else ""))
    if problems:
        raise ExerciseError("; ".join(problems) + ".")
