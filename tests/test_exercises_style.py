"""The checks of notebooks 04 and 05: the reference solutions pass, the usual mistakes fail with a hint."""
from __future__ import annotations

import pytest
import torch

from vae_lib.exercises import ExerciseError
from vae_lib.exercises import style as ex


@pytest.mark.parametrize("check, solution", [
    (ex.check_pixel_norm, ex.solution_pixel_norm),
    (ex.check_truncation, ex.solution_truncation),
    (ex.check_adain, ex.solution_adain),
    (ex.check_mixing, ex.solution_mixing),
])
def test_reference_solutions_pass(check, solution, capsys):
    assert check(solution) is True
    assert "\u2714" in capsys.readouterr().out


def unbiased_adain(x, scale, bias):
    mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
    return scale[:, :, None, None] * (x - mean) / std + bias[:, :, None, None]


@pytest.mark.parametrize("check, wrong, hint", [
    (ex.check_pixel_norm, lambda x: x / x.norm(dim=1, keepdim=True), "L2 norm"),
    (ex.check_pixel_norm, lambda x: x / torch.sqrt((x ** 2).mean(dim=0, keepdim=True)), "over the batch"),
    (ex.check_pixel_norm, lambda x: x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True)), "eps"),
    (ex.check_truncation, lambda w, w_avg, psi: w + psi * (w_avg - w), "psi is swapped"),
    (ex.check_truncation, lambda w, w_avg, psi: psi * w, "w_avg.lerp"),
    (ex.check_adain, lambda x, s, b: ex.solution_adain(x, b, s), "swapped"),
    (ex.check_adain, unbiased_adain, "unbiased variance"),
    (ex.check_adain, lambda x, s, b: x, "per image and channel"),
    (ex.check_adain, lambda x, s, b: (x * s).numpy(), "raised"),
    (ex.check_mixing, lambda a, b, k: torch.cat([b[:, :k], a[:, k:]], dim=1), "swapped"),
    (ex.check_mixing, lambda a, b, k: torch.cat([a[:, :k + 1], b[:, k + 1:]], dim=1), "off by one"),
    (ex.check_mixing, lambda a, b, k: torch.cat([a[:k], b[k:]], dim=0), "layer axis"),
    (ex.check_mixing, lambda a, b, k: a[:, :k], "shape"),
    (ex.check_mixing, None, "expected a function"),
])
def test_wrong_answers_fail_with_a_hint(check, wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check(wrong)
