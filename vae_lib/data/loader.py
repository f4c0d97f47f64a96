"""A batch loader for datasets that fit in memory: no workers, no per-sample Python."""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from vae_lib.runtime import pick_device


class InMemoryLoader:
    """Yield shuffled batches of whole tensors kept on ``device``.

    Each epoch draws one permutation from a generator seeded with ``(seed, epoch)`` and slices it
    into batches, so every sample appears exactly once per epoch, the order changes each epoch,
    and a run resumed from :meth:`state_dict` sees the same order as one that never stopped.

    Args:
        *tensors: tensors with the same first dimension N, e.g. images (N,C,H,W) and labels (N,).
        batch_size: samples per batch.
        shuffle: draw a new order each epoch (else the stored order).
        drop_last: leave out the last, smaller batch (then a few samples sit out each epoch).
        device: where the tensors live and the batches come from ("auto", "cpu", "cuda", ...);
            None keeps them where they are.
        seed: the shuffling seed.

    ``epoch`` counts completed passes: it goes up by one when an iteration runs to the end.
    Set it (or call :meth:`load_state_dict`) to jump to an epoch.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int = 128, shuffle: bool = True,
                 drop_last: bool = False, device=None, seed: int = 0):
        if not tensors:
            raise ValueError("InMemoryLoader needs at least one tensor")
        sizes = {len(t) for t in tensors}
        if len(sizes) != 1:
            raise ValueError(f"InMemoryLoader: tensors differ in their first dimension: {[len(t) for t in tensors]}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.device = tensors[0].device if device is None else pick_device(device)
        self.tensors = tuple(t.to(self.device) for t in tensors)
        self.num_samples = sizes.pop()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """The sample order of ``epoch`` (default: the current one): (N,) int64 on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return torch.arange(self.num_samples)
        # Seeding from (seed, epoch) rather than one running generator is what makes resume exact.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order().to(self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield tuple(t.index_select(0, index) for t in self.tensors)
        self.epoch += 1

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state["seed"])

    def __repr__(self) -> str:
        shapes = ", ".join(str(tuple(t.shape)) for t in self.tensors)
        return (f"InMemoryLoader({shapes}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, device={self.device}, seed={self.seed}, epoch={self.epoch})")
