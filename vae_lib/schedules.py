"""KL-weight (beta) schedules: ``beta = schedule(step)`` for the loss ``nll + beta * kl``.

Each schedule is a small dataclass whose value is a pure function of the optimizer step
(0-based: the first update is step 0). Its whole state is its fields, so ``state_dict()`` and
``load_state_dict()`` make it checkpoint-safe: a resumed run gets the same beta at the same step.

* ``ConstantBeta(beta)``: beta at every step. The card's plain beta = 1, or beta ~ 2-4 for a
  stronger pull towards the prior.
* ``LinearWarmup(beta_max, warmup_steps)``: KL warm-up (Bowman et al., 2016; Sonderby et al., 2016),
  0 -> beta_max linearly over ``warmup_steps``, then constant. The card's "beta = 1 with KL warm-up".
* ``CyclicalBeta(beta_max, total_steps, n_cycles, ratio)``: cyclical annealing (Fu et al., 2019):
  the run is cut into ``n_cycles`` cycles; in each, beta rises linearly from 0 to beta_max over
  the first ``ratio`` of the cycle and stays at beta_max for the rest.

``build_schedule(config, total_steps)`` makes one from a ``configs.BetaConfig``; it is also the one
place where a warm-up given as a fraction of the run (``warmup_fraction``) becomes a step count
(``warmup_steps_of``).

Learning-rate schedules (``TrainConfig.lr_schedule``) are the pure function
``lr_at(step, total_steps, base_lr, kind)``, which the Trainer calls once per step:

* ``"constant"``: ``base_lr`` at every step (the card).
* ``"cosine"``: the half cosine ``0.5 base_lr (1 + cos(pi min(step, T) / T))`` over the run's
  ``total_steps`` T, from ``base_lr`` at step 0 to 0 at step T (and after).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vae_lib.configs import BetaConfig


class BetaSchedule:
    """Base class: ``__call__(step) -> float``; state is the dataclass fields."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(state) - names
        if unknown:
            raise ValueError(f"{type(self).__name__} has no fields {sorted(unknown)}; "
                             f"expected {sorted(names)}")
        for name, value in state.items():
            setattr(self, name, value)
        self.__post_init__()


def _check_step(step: int) -> None:
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


@dataclass
class ConstantBeta(BetaSchedule):
    beta: float = 1.0

    def __post_init__(self):
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    def __call__(self, step: int) -> float:
        _check_step(step)
        return float(self.beta)


@dataclass
class LinearWarmup(BetaSchedule):
    beta_max: float = 1.0
    warmup_steps: int = 1000

    def __post_init__(self):
        if self.beta_max < 0:
            raise ValueError(f"beta_max must be >= 0, got {self.beta_max}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def __call__(self, step: int) -> float:
        _check_step(step)
        if step >= self.warmup_steps:
            return float(self.beta_max)
        return self.beta_max * step / self.warmup_steps


@dataclass
class CyclicalBeta(BetaSchedule):
    beta_max: float = 1.0
    total_steps: int = 10_000
    n_cycles: int = 4
    ratio: float = 0.5

    def __post_init__(self):
        if self.beta_max < 0:
            raise ValueError(f"beta_max must be >= 0, got {self.beta_max}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if self.n_cycles < 1:
            raise ValueError(f"n_cycles must be >= 1, got {self.n_cycles}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")

    def __call__(self, step: int) -> float:
        _check_step(step)
        # Fu et al.'s Eq. 5 with 0-based steps: tau = mod(step, ceil(T/M)) / (T/M).
        cycle = self.total_steps / self.n_cycles
        tau = (step % math.ceil(cycle)) / cycle
        return self.beta_max * min(1.0, tau / self.ratio)


def warmup_steps_of(config: BetaConfig, total_steps: int | None = None) -> int:
    """The KL warm-up in steps: ``config.warmup_steps``, or ``round(warmup_fraction * total_steps)``."""
    if config.warmup_fraction is None:
        return config.warmup_steps
    if total_steps is None:
        raise ValueError(f"a warm-up given as a fraction of the run (warmup_fraction={config.warmup_fraction}) "
                         "needs total_steps (the run's planned optimizer steps: a loader with a length, or "
                         "max_steps)")
    return round(config.warmup_fraction * total_steps)


def build_schedule(config: BetaConfig, total_steps: int | None = None, *,
                   saved: dict | None = None) -> BetaSchedule:
    """The schedule a ``BetaConfig`` describes; ``total_steps`` (the run's length) is needed for 'cyclical'
    and for a warm-up given as ``warmup_fraction``. ``saved``: the ``state_dict`` of the schedule a
    checkpoint holds, when a run is resumed before its length is known; it carries the warm-up's steps."""
    if config.kind == "constant":
        return ConstantBeta(config.beta)
    if config.kind == "linear":
        if saved is not None and total_steps is None and "warmup_steps" in saved:
            return LinearWarmup(config.beta, saved["warmup_steps"])
        return LinearWarmup(config.beta, warmup_steps_of(config, total_steps))
    if config.kind == "cyclical":
        if total_steps is None:
            raise ValueError("a cyclical beta schedule needs total_steps (the run's number of optimizer steps)")
        return CyclicalBeta(config.beta, total_steps, config.n_cycles, config.ratio)
    raise ValueError(f"Unknown beta schedule kind {config.kind!r}: choose 'constant', 'linear' or 'cyclical'")


# ------------------------------------------------------------------------------------ learning rate
LR_KINDS = ("constant", "cosine")


def lr_at(step: int, total_steps: int | None, base_lr: float, kind: str) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    A pure function of its arguments, so a resumed run continues the same curve. "constant":
    ``base_lr`` (``total_steps`` unused, may be None). "cosine": ``0.5 base_lr (1 + cos(pi
    min(step, T) / T))`` with T = ``total_steps``, which must be a positive number of steps.
    """
    if kind == "constant":
        return base_lr
    if kind == "cosine":
        _check_step(step)
        if not total_steps:
            raise ValueError("a cosine lr schedule needs total_steps (the run's number of optimizer steps), "
                             f"got {total_steps!r}")
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    raise ValueError(f"Unknown lr schedule kind {kind!r}: choose one of {', '.join(LR_KINDS)}")
