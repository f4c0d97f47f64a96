import pytest

from vae_lib.configs import BetaConfig
from vae_lib.schedules import ConstantBeta, CyclicalBeta, LinearWarmup, build_schedule, lr_at


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


def test_a_warmup_fraction_is_the_same_schedule_as_its_step_count():
    by_steps = build_schedule(BetaConfig(kind="linear", beta=2.0, warmup_steps=469), total_steps=4690)
    by_fraction = build_schedule(BetaConfig(kind="linear", beta=2.0, warmup_fraction=0.1), total_steps=4690)
    assert by_fraction == by_steps and by_fraction.state_dict() == {"beta_max": 2.0, "warmup_steps": 469}
    assert build_schedule(BetaConfig(warmup_fraction=0.0), total_steps=10)(0) == 1.0        # no warm-up
    assert build_schedule(BetaConfig(warmup_fraction=1.0), total_steps=10).warmup_steps == 10
    with pytest.raises(ValueError, match="needs total_steps"):
        build_schedule(BetaConfig(warmup_fraction=0.1))
    # A resumed run (its length not known yet) takes the resolved steps from the checkpoint's state.
    assert build_schedule(BetaConfig(beta=2.0, warmup_fraction=0.1), saved=by_steps.state_dict()) == by_steps


@pytest.mark.parametrize("fields, message", [
    ({"warmup_fraction": 1.5}, "warmup_fraction must be a number in"),
    ({"warmup_fraction": -0.1}, "warmup_fraction must be a number in"),
    ({"warmup_fraction": "10%"}, "warmup_fraction must be a number"),
    ({"warmup_fraction": 0.1, "warmup_steps": 469}, "give warmup_steps .* or warmup_fraction .*, not both"),
    ({"warmup_steps": None}, "warmup_steps is None: give it, or train.beta.warmup_fraction"),
])
def test_bad_warmup_fractions_are_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        BetaConfig(**fields)


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


# ------------------------------------------------------------------------------------ learning rate
def test_constant_lr_is_the_base_lr_at_every_step():
    assert [lr_at(step, None, 3e-4, "constant") for step in (0, 5, 10_000)] == [3e-4] * 3
    assert lr_at(7, 10, 1e-3, "constant") == 1e-3


def test_cosine_lr_is_the_half_cosine_over_the_run():
    import math

    assert lr_at(0, 100, 1e-2, "cosine") == 1e-2
    assert lr_at(50, 100, 1e-2, "cosine") == pytest.approx(5e-3)
    assert lr_at(25, 100, 1e-2, "cosine") == pytest.approx(0.5e-2 * (1 + math.cos(math.pi / 4)))
    assert lr_at(100, 100, 1e-2, "cosine") == pytest.approx(0.0, abs=1e-18)
    assert lr_at(150, 100, 1e-2, "cosine") == lr_at(100, 100, 1e-2, "cosine")  # stays at 0 after the run
    values = [lr_at(s, 20, 1.0, "cosine") for s in range(21)]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("args, match", [
    ((0, None, 1e-3, "cosine"), "total_steps"),
    ((0, 0, 1e-3, "cosine"), "total_steps"),
    ((0, 10, 1e-3, "linear"), "Unknown lr schedule"),
])
def test_lr_at_rejects_what_it_cannot_compute(args, match):
    with pytest.raises(ValueError, match=match):
        lr_at(*args)
