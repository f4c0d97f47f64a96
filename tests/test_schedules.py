import pytest

from vae_lib.configs import BetaConfig
from vae_lib.schedules import ConstantBeta, CyclicalBeta, LinearWarmup, build_schedule


def test_constant_is_constant():
    schedule = ConstantBeta(3.0)
    assert [schedule(s) for s in (0, 1, 10_000)] == [3.0, 3.0, 3.0]


def test_linear_warmup_values():
    schedule = LinearWarmup(beta_max=4.0, warmup_steps=10)
    assert schedule(0) == 0.0
    assert schedule(5) == pytest.approx(2.0)
    assert schedule(9) == pytest.approx(3.6)
    assert schedule(10) == 4.0
    assert schedule(1000) == 4.0
    assert LinearWarmup(1.0, 0)(0) == 1.0  # no warm-up


def test_cyclical_follows_fu_et_al():
    # 100 steps, 4 cycles of 25 steps, rising during the first half (12.5 steps) of each.
    schedule = CyclicalBeta(beta_max=2.0, total_steps=100, n_cycles=4, ratio=0.5)
    expected = {0: 0.0, 5: 2.0 * 5 / 12.5, 12: 2.0 * 12 / 12.5, 13: 2.0, 24: 2.0,
                25: 0.0, 30: 2.0 * 5 / 12.5, 50: 0.0, 99: 2.0}
    for step, beta in expected.items():
        assert schedule(step) == pytest.approx(beta), step


def test_cyclical_with_a_fractional_cycle_length():
    # T/M = 10/3: steps restart every ceil(10/3) = 4 steps and tau divides by 10/3 (paper's Eq. 5).
    schedule = CyclicalBeta(beta_max=1.0, total_steps=10, n_cycles=3, ratio=1.0)
    assert [round(schedule(s), 6) for s in range(6)] == [0.0, 0.3, 0.6, 0.9, 0.0, 0.3]


def test_build_schedule_from_config():
    assert build_schedule(BetaConfig(kind="constant", beta=2.5))(7) == 2.5
    linear = build_schedule(BetaConfig(kind="linear", beta=1.0, warmup_steps=4))
    assert [linear(s) for s in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    cyclical = build_schedule(BetaConfig(kind="cyclical", beta=1.0, n_cycles=2, ratio=0.5), total_steps=8)
    assert [cyclical(s) for s in range(8)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="total_steps"):
        build_schedule(BetaConfig(kind="cyclical"))


def test_state_round_trip_restores_the_same_values():
    original = CyclicalBeta(beta_max=3.0, total_steps=60, n_cycles=3, ratio=0.25)
    restored = CyclicalBeta()
    restored.load_state_dict(original.state_dict())
    assert [restored(s) for s in range(60)] == [original(s) for s in range(60)]
    with pytest.raises(ValueError, match="no fields"):
        restored.load_state_dict({"warmup_steps": 3})


@pytest.mark.parametrize("make", [lambda: CyclicalBeta(ratio=0.0), lambda: CyclicalBeta(n_cycles=0),
                                  lambda: LinearWarmup(warmup_steps=-1), lambda: ConstantBeta(-1.0)])
def test_bad_parameters_are_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match="step"):
        LinearWarmup()(-1)
