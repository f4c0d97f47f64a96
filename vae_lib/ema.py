"""An exponential moving average (EMA) of a model's weights, with StyleGAN2-ADA's ramp-up.

The averaged copy is what the StyleGAN references sample and evaluate from: a generator trained
with a large learning rate jitters from step to step, and the average of its last few thousand
images' worth of weights is smoother than any of them. After every optimiser step::

    images_seen = (updates so far) * batch_size
    half_life   = min(half_life_images, rampup * images_seen)        (images)
    beta        = 0.5 ** (batch_size / half_life)
    average     = beta * average + (1 - beta) * weights

so early in training, when the weights move fast, the average follows them closely (a short
half-life), and later it averages over ``half_life_images`` images. The ramp-up is the
``ema_rampup=0.05`` of StyleGAN2-ADA; its ``ema_kimg=10`` is ``half_life_images=10_000``.

Built on ``torch.optim.swa_utils.AveragedModel`` (buffers averaged too, so the truncation average
``w_avg`` follows the averaged mapping network). Attach it to any optimiser::

    ema = WeightEMA(model, batch_size=32)
    optimizer.register_step_post_hook(lambda *_: ema.update(model))
    ema.module  # the averaged model, an nn.Module like ``model``
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightEMA:
    """An averaged copy of ``model`` (``self.module``), updated by :meth:`update` after each step.

    Args:
        model: the model being trained (deep-copied once).
        batch_size: images per optimiser step (to count images seen).
        half_life_images: the half-life of the average once ramped up, in images (> 0).
        rampup: the half-life is at most ``rampup * images_seen`` (None: no ramp-up).
    """

    def __init__(self, model: nn.Module, batch_size: int, half_life_images: float = 10_000.0,
                 rampup: float | None = 0.05):
        if not batch_size >= 1 or not half_life_images > 0 or (rampup is not None and not rampup > 0):
            raise ValueError(f"Need batch_size >= 1, half_life_images > 0 and rampup > 0 or None; got "
                             f"{batch_size}, {half_life_images}, {rampup}.")
        self.batch_size, self.half_life_images, self.rampup = int(batch_size), float(half_life_images), rampup
        self.averaged = AveragedModel(model, avg_fn=self._average, use_buffers=True)
        self.averaged.eval()
        self._beta, self._count = 0.0, 0

    @property
    def module(self) -> nn.Module:
        """The averaged model (same class and forward as the trained one)."""
        return self.averaged.module

    def beta(self, updates: int) -> float:
        """The decay applied at the update after ``updates`` earlier ones."""
        half_life = self.half_life_images
        if self.rampup is not None:
            half_life = min(half_life, self.rampup * updates * self.batch_size)
        return 0.5 ** (self.batch_size / max(half_life, 1e-8))

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        if not current.is_floating_point():  # counters (BatchNorm's num_batches_tracked): the latest value
            return current
        return torch.lerp(current, averaged, self._beta)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights (and buffers) of ``model`` into the average."""
        # One decay per update, not one per tensor; the count is kept on the host (no device sync).
        self._beta = self.beta(self._count)
        self.averaged.update_parameters(model)
        self._count += 1

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)
        self._count = int(self.averaged.n_averaged)

    @property
    def updates(self) -> int:
        """How many updates the average has folded in."""
        return self._count


def ema_model_state(ema_state: dict) -> dict:
    """The averaged model's own state dict from a :meth:`WeightEMA.state_dict` (keys without ``module.``)."""
    return {key[len("module."):]: value for key, value in ema_state.items() if key.startswith("module.")}


def ema_half_life_steps(ema: WeightEMA) -> float:
    """The current half-life in optimiser steps (for logs): ``log(0.5) / log(beta)``."""
    beta = ema.beta(ema.updates)
    return math.inf if beta >= 1 else math.log(0.5) / math.log(beta)


__all__ = ["WeightEMA", "ema_half_life_steps", "ema_model_state"]
