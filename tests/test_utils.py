"""The ground floor (vae_lib.utils): evaluation mode, device, N(0, I) noise, pixel ranges, atomic writes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vae_lib.utils import atomic_write, evaluation_mode, model_device, rescale, standard_normal


def test_evaluation_mode_restores_mode_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    with pytest.raises(RuntimeError):
        with evaluation_mode(model):
            assert not model.training and not torch.is_grad_enabled()
            raise RuntimeError("boom")
    assert model.training and torch.is_grad_enabled()
    model.eval()
    with evaluation_mode(model):
        pass
    assert not model.training


def test_model_device_of_parameters_buffers_and_empty_modules():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.BatchNorm1d(2, affine=False)) == torch.device("cpu")    # buffers only
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_standard_normal_follows_the_generator_and_the_dtype_of_like():
    like = torch.zeros(0, dtype=torch.float64)
    eps = standard_normal((3, 4), like, torch.Generator().manual_seed(5))
    assert eps.shape == (3, 4) and eps.dtype == torch.float64
    torch.testing.assert_close(eps, torch.randn(3, 4, generator=torch.Generator().manual_seed(5),
                                                dtype=torch.float64))
    assert standard_normal((2,), torch.zeros(1), None).shape == (2,)


def test_rescale_maps_ranges_linearly():
    x = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(rescale(x, (0, 1), (-1, 1)), torch.tensor([-1.0, -0.5, 1.0]))
    torch.testing.assert_close(rescale(rescale(x, (0, 1), (-1, 1)), (-1, 1), (0, 1)), x)
    assert rescale(x, (0, 1), (0.0, 1.0)) is x and rescale(x, None, (-1, 1)) is x
    with pytest.raises(ValueError, match="low < high"):
        rescale(torch.zeros(1), (1, 0), (0, 1))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = atomic_write(tmp_path / "sub" / "a.txt", lambda tmp: tmp.write_text("whole"))
    assert path.read_text() == "whole"

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "sub" / "b.txt", fail)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt"]
