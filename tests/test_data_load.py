"""load_dataset: bad input, the printed line, auto-digits' choice; class and factor counts (figures: test_viz.py)."""
from __future__ import annotations

import pytest
import torch

from vae_lib.data import DATASET_NAMES, FACTOR_BINS, class_counts, factor_counts, load_dataset
from vae_lib.data import torchvision_sets

from test_data_sources import write_idx_set




def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError) as caught:
        load_dataset("cifar10")
    for name in DATASET_NAMES:
        assert name in str(caught.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "Unknown split 'val'"),
    ({"n": 0}, "n must be a positive int"),
    ({"n": 2.5}, "n must be a positive int"),
    ({"size": 64}, "does not take size"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic-digits", verbose=False, **kwargs)


def test_verbose_prints_one_line(capsys, offline):
    data = load_dataset("synthetic-digits", "test", n=4)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"synthetic-digits (test, 4 images) from {data.source}: {data.reason}"]


def test_auto_digits_prefers_mnist_then_fashion_then_synthetic(offline):
    tmp = offline
    data = load_dataset("auto-digits", n=3, verbose=False)
    assert data.name == "synthetic-digits"
    assert "auto-digits chose synthetic-digits because mnist and fashion-mnist are not here" in data.reason

    write_idx_set(tmp / "system" / "fashion-mnist", marker=30)
    data = load_dataset("auto-digits", n=3, verbose=False)
    assert data.name == "fashion-mnist" and data.class_names[0] == "T-shirt/top"
    assert data.reason.startswith("auto-digits chose fashion-mnist because mnist is not here")

    write_idx_set(tmp / "cache" / "mnist", marker=60)
    data = load_dataset("auto-digits", n=3, verbose=False)
    assert data.name == "mnist" and data.reason.startswith("auto-digits chose mnist:")


def test_class_and_factor_counts():
    shapes = load_dataset("shapes", n=40, size=32, verbose=False)
    counts = class_counts(shapes)
    assert list(counts) == shapes.class_names and sum(counts.values()) == 40
    assert {name: len(bins) for name, bins in factor_counts(shapes).items()} == FACTOR_BINS
    assert factor_counts(shapes)["rotation"] == torch.bincount(shapes.factors["rotation"], minlength=8).tolist()


def test_sizes_that_cannot_fit_are_refused_before_any_work():
    with pytest.raises(ValueError, match="shapes: n=10,000,001 train images would run into the test split"):
        load_dataset("shapes", n=10**7 + 1, verbose=False)
    with pytest.raises(ValueError, match=r"shapes: 10,000,000 images of 3x64x64 float32 need 491.5 GB"):
        load_dataset("shapes", n=10**7, verbose=False)


@pytest.mark.parametrize("root", ["", "   "])
def test_an_empty_root_is_an_error_not_the_current_folder(root):
    for name in ("image-folder", "mnist", "auto-digits"):
        with pytest.raises(ValueError, match="root must be a folder"):
            load_dataset(name, root=root, verbose=False)


def test_resolve_dataset_follows_auto_digits_choice(offline):
    from vae_lib.data.load import resolve_dataset

    tmp = offline
    assert resolve_dataset("auto-digits").name == "synthetic-digits"
    assert resolve_dataset("auto-digits").fingerprint is None
    write_idx_set(tmp / "system" / "fashion-mnist", marker=30)
    fashion = resolve_dataset("auto-digits")
    assert fashion.name == "fashion-mnist" and fashion.fingerprint
    write_idx_set(tmp / "cache" / "mnist", marker=60)
    mnist = resolve_dataset("auto-digits")
    assert mnist.name == "mnist" and mnist.fingerprint not in (None, fashion.fingerprint)
    assert resolve_dataset("shapes").key() == {"name": "shapes", "fingerprint": None}
