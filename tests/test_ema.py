"""WeightEMA: the averaged weights follow the documented recursion, ramp-up included."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vae_lib.ema import WeightEMA, ema_half_life_steps


def test_the_average_follows_the_recursion_with_ramp_up():
    model = nn.Linear(3, 2)
    ema = WeightEMA(model, batch_size=10, half_life_images=100.0, rampup=0.5)
    want = None
    for step in range(12):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update(model)
        current = model.weight.detach().clone()
        if want is None:
            want = current                                    # the first update copies
        else:
            half_life = min(100.0, 0.5 * step * 10)
            beta = 0.5 ** (10 / half_life)
            want = beta * want + (1 - beta) * current
        torch.testing.assert_close(ema.module.weight, want)
    assert ema.updates == 12
    # Ramped up after 20 updates (0.5 * 20 * 10 = 100 images): half-life 100 images = 10 steps.
    assert ema.beta(40) == pytest.approx(0.5 ** 0.1)
    assert ema_half_life_steps(ema) == pytest.approx(0.5 * 12 * 10 / 10)


def test_buffers_are_averaged_and_the_state_round_trips():
    model = nn.BatchNorm1d(2)
    ema = WeightEMA(model, batch_size=1, half_life_images=1.0, rampup=None)
    ema.update(model)
    model.running_mean.fill_(2.0)
    ema.update(model)
    assert torch.allclose(ema.module.running_mean, torch.full((2,), 1.0))      # beta = 0.5
    other = WeightEMA(model, batch_size=1)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.running_mean, ema.module.running_mean) and other.updates == 2
    with pytest.raises(ValueError):
        WeightEMA(model, batch_size=0)
