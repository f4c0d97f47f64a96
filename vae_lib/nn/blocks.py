"""The residual block of the ResNet CVAE (card: ``resnet_cvae_card.md``), in three modes.

======  ==========================================================  =============================
mode    main path                                                   skip path
======  ==========================================================  =============================
down    Conv3x3 s2 p1 -> norm -> act -> Conv3x3 s1 p1               Conv1x1 s2 p0
same    Conv3x3 s1 p1 -> norm -> act -> Conv3x3 s1 p1               Identity (Conv1x1 s1 if
                                                                    ``in_ch != out_ch``, see below)
up      Up x2 -> Conv3x3 s1 p1 -> norm -> act -> Conv3x3 s1 p1      Up x2 -> Conv1x1 s1 p0
======  ==========================================================  =============================

Both paths are added, then the activation is applied once more: ``out = act(main(x) + skip(x))``.
Spatial size: ``down`` halves H and W (rounding up), ``same`` keeps them, ``up`` doubles them.

Choices the card leaves open, made here:

* "Up x2" is nearest-neighbour upsampling (``nn.Upsample(scale_factor=2)``): no parameters, and
  the 3x3 conv after it smooths the copied pixels (a transposed conv would add weights and can
  leave checkerboard artefacts). Both paths start with it, so it is computed once and shared.
* The ``up`` skip keeps its 1x1 conv even when ``in_ch == out_ch`` (the card's 64->64 block has one).
* ``mode="same"`` with ``in_ch != out_ch`` (not in the card) uses a 1x1 conv on the skip, the
  "projection shortcut" of He et al. (2016): the identity cannot add tensors whose channel
  counts differ.
* Every conv keeps PyTorch's default bias (the card's parameter counts include them).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

MODES = ("down", "same", "up")
NORMS = ("group", "batch")
ACTIVATIONS = ("silu", "relu")


def make_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """``GroupNorm(groups, channels)`` for ``"group"``, ``BatchNorm2d(channels)`` for ``"batch"``."""
    if kind == "group":
        if groups < 1 or channels % groups:
            raise ValueError(f"GroupNorm needs channels divisible by groups: {channels} channels, "
                             f"groups={groups}.")
        return nn.GroupNorm(groups, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"Unknown norm {kind!r}: choose one of {', '.join(NORMS)}.")


def make_activation(kind: str) -> nn.Module:
    """``nn.SiLU()`` for ``"silu"`` (the card's default), ``nn.ReLU()`` for ``"relu"``."""
    if kind == "silu":
        return nn.SiLU()
    if kind == "relu":
        return nn.ReLU()
    raise ValueError(f"Unknown activation {kind!r}: choose one of {', '.join(ACTIVATIONS)}.")


class ResBlock(nn.Module):
    """``act(main(x) + skip(x))``; (B, in_ch, H, W) -> (B, out_ch, H', W').

    H' = (H + 1) // 2 for ``mode="down"``, H for ``"same"``, 2 H for ``"up"``.

    Sub-modules (named so that a test or a notebook can walk them): ``upsample`` (Identity unless
    ``mode="up"``), ``main`` with ``conv1``, ``norm``, ``act``, ``conv2``; ``skip``; ``act``.
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str = "same", norm: str = "group",
                 activation: str = "silu", groups: int = 8):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}: choose one of {', '.join(MODES)}.")
        if in_ch < 1 or out_ch < 1:
            raise ValueError(f"Channel counts must be positive, got in_ch={in_ch}, out_ch={out_ch}.")
        self.in_ch, self.out_ch, self.mode = in_ch, out_ch, mode
        stride = 2 if mode == "down" else 1

        self.upsample = nn.Upsample(scale_factor=2, mode="nearest") if mode == "up" else nn.Identity()
        self.main = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1),
            norm=make_norm(norm, out_ch, groups),
            act=make_activation(activation),
            conv2=nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1),
        ))
        if mode == "same" and in_ch == out_ch:
            self.skip = nn.Identity()
        else:
            self.skip = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, padding=0)
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"ResBlock({self.in_ch}->{self.out_ch}, {self.mode!r}) expects "
                             f"(B, {self.in_ch}, H, W), got {tuple(x.shape)}.")
        x = self.upsample(x)
        return self.act(self.main(x) + self.skip(x))

    def extra_repr(self) -> str:
        return f"{self.in_ch}->{self.out_ch}, mode={self.mode!r}"
