"""Counter-based random numbers for the procedural datasets.

Sample ``i`` of a procedural set must depend only on ``(seed, i)``, not on which batch or worker
rendered it, so that rendering indices ``[5, 7]`` gives the same pixels as rendering ``0..9`` and
keeping two of them. A stateful generator cannot promise that; a hash of ``(seed, i, stream)``
can. We use SplitMix64 (Steele et al., 2014), vectorised over NumPy ``uint64`` arrays, whose
arithmetic wraps modulo 2**64 as the hash needs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function: a bijection on uint64 with good avalanche."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, indices: Sequence[int] | np.ndarray | torch.Tensor, num_streams: int) -> torch.Tensor:
    """Uniform numbers in [0, 1): a float64 tensor (N, num_streams).

    Entry ``[k, j]`` is a hash of ``(seed, indices[k], j)``; give each random choice of a sample
    its own stream ``j`` so that adding a choice later does not change the others.
    """
    if isinstance(indices, torch.Tensor):
        indices = indices.cpu().numpy()
    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
    if idx.size and idx.min() < 0:
        raise ValueError("indices must be >= 0")
    seed_key = _mix64(np.array([seed % 2**64], dtype=np.uint64) + _GOLDEN)
    sample_key = _mix64(seed_key ^ (idx.astype(np.uint64) * _GOLDEN))
    counters = np.arange(1, num_streams + 1, dtype=np.uint64) * _GOLDEN
    bits = _mix64(sample_key[:, None] + counters[None, :])
    # The top 53 bits fill a float64 mantissa exactly.
    return torch.from_numpy((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def integers(u: torch.Tensor, high: int) -> torch.Tensor:
    """Map uniforms in [0, 1) to int64 in {0, ..., high - 1}, each equally likely."""
    return (u * high).long().clamp_(max=high - 1)
