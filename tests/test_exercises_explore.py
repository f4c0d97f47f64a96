"""The exercises of notebook 08 (vae_lib.exercises.explore); its figures are tested in test_viz.py."""
from __future__ import annotations

import pytest
import torch

from vae_lib.exercises import ExerciseError
from vae_lib.exercises import explore as ex


# ------------------------------------------------------------------------------------ exercises
def test_exercise_solutions_pass(capsys):
    assert ex.check_slerp(ex.solution_slerp)
    assert ex.check_class_swap(ex.solution_class_swap)
    assert ex.check_frechet_1d(ex.solution_frechet_1d)
    assert capsys.readouterr().out.count("\u2714") == 3


def test_slerp_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="straight line"):
        ex.check_slerp(lambda a, b, t: (1 - t) * a + t * b)
    with pytest.raises(ExerciseError, match="unit vectors"):
        ex.check_slerp(lambda a, b, t: ex.solution_slerp(a / a.norm(), b / b.norm(), t))
    with pytest.raises(ExerciseError, match="shape"):
        ex.check_slerp(lambda a, b, t: torch.stack([a, b]))


def test_class_swap_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="classes come first"):
        ex.check_class_swap(lambda model, z: ex.solution_class_swap(model, z).transpose(0, 1))
    with pytest.raises(ExerciseError, match="logits"):
        ex.check_class_swap(lambda model, z: torch.stack(
            [model.decode_params(z, torch.full((len(z),), c)) for c in range(model.num_classes)], 1))
    with pytest.raises(ExerciseError, match="class 0"):
        ex.check_class_swap(lambda model, z: torch.stack(
            [model.decode(z, torch.zeros(len(z), dtype=torch.long)) for _ in range(model.num_classes)], 1))


def test_frechet_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="variances"):
        ex.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1 ** 2 - s2 ** 2) ** 2)
    with pytest.raises(ExerciseError, match="spread"):
        ex.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2)
