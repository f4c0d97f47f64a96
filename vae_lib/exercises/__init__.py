"""Checks for the notebooks' exercises: a student's function or module against the reference.

One module per topic (``resblock``, ``style``, ...). Each check runs both on fixed inputs and
raises ``ExerciseError`` with a message that says what differs; on success it prints a short line.
Reference solutions live in ``vae_lib.exercises.solutions`` so that they stay out of the way.
"""
from __future__ import annotations


class ExerciseError(AssertionError):
    """The student's answer does not match the reference; the message says how."""


def passed(name: str, detail: str = "") -> bool:
    print(f"\u2714 {name}: correct{(' - ' + detail) if detail else ''}")
    return True
