"""The checks of notebook 00's exercises accept the reference and catch the usual mistakes."""
from __future__ import annotations

import pytest
import torch

from vae_lib.exercises import ExerciseError
from vae_lib.exercises.data import (check_class_means, check_factor_frequencies, solution_class_means,
                                    solution_factor_frequencies)


def test_reference_class_means_by_hand():
    images = torch.tensor([1.0, 3.0, 10.0, 5.0]).view(4, 1, 1, 1)
    labels = torch.tensor([0, 0, 2, 0])
    means = solution_class_means(images, labels, 3)
    assert means.shape == (3, 1, 1, 1)
    assert means.flatten().tolist() == [3.0, 0.0, 10.0]                     # (1+3+5)/3, empty class, 10


def test_reference_factor_frequencies_by_hand():
    got = solution_factor_frequencies({"a": torch.tensor([1, 1, 0, 1])}, {"a": 3})
    assert got["a"].tolist() == [0.25, 0.75, 0.0]


def test_checks_accept_the_references(capsys):
    assert check_class_means(solution_class_means)
    assert check_factor_frequencies(solution_factor_frequencies)
    assert capsys.readouterr().out.count("\u2714") == 2


def test_class_means_check_catches_sums_and_in_place_edits():
    def sums(images, labels, num_classes):
        return torch.zeros(num_classes, *images.shape[1:]).index_add_(0, labels, images)

    with pytest.raises(ExerciseError, match="divide each sum by the number of images"):
        check_class_means(sums)

    def in_place(images, labels, num_classes):
        images.mul_(1.0 + 1e-3)
        return solution_class_means(images, labels, num_classes)

    with pytest.raises(ExerciseError, match="changed its inputs"):
        check_class_means(in_place)
    with pytest.raises(ExerciseError, match=r"shape \(10, 1, 28, 28\)"):
        check_class_means(lambda images, labels, k: images.mean(0))


def test_factor_frequencies_check_catches_a_missing_minlength_and_counts():
    def no_minlength(factors, bins):
        return {name: torch.bincount(v).float() / len(v) for name, v in factors.items()}

    with pytest.raises(ExerciseError, match="minlength"):
        check_factor_frequencies(no_minlength)

    def counts(factors, bins):
        return {name: torch.bincount(v, minlength=bins[name]).float() for name, v in factors.items()}

    with pytest.raises(ExerciseError, match="fractions that sum to 1"):
        check_factor_frequencies(counts)
