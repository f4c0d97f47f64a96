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
