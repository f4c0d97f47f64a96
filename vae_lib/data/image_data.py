"""ImageData: a whole dataset as tensors, plus where it came from and why; its class and factor counts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from vae_lib.data.loader import InMemoryLoader
from vae_lib.data.shapes import FACTOR_BINS
from vae_lib.utils import rescale


@dataclass
class ImageData:
    """A dataset held in memory.

    Attributes:
        images: (N, C, H, W) float32 within ``value_range``.
        labels: (N,) int64: the class, or the shape kind for 'shapes'; zeros for 'image-folder'.
        factors: generative factors of 'shapes', name -> (N,) int64 bins; empty otherwise.
        name: the dataset actually returned ('auto-digits' names what it picked).
        source: the folder read, or "procedural ..." for generated sets.
        reason: why this data and this source (the search that led here).
        value_range: (0., 1.) for the digit sets, (-1., 1.) for the RGB sets.
        class_names: the name of each label value.
        split: "train" or "test".
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    source: str
    reason: str
    value_range: tuple[float, float]
    class_names: list[str]
    split: str = "train"
    factors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be ({len(self.images)},), got shape {tuple(self.labels.shape)}")
        for key, values in self.factors.items():
            if values.shape != (len(self.images),):
                raise ValueError(f"factor {key!r} must be ({len(self.images)},), got {tuple(values.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        factors = f", factors={sorted(self.factors)}" if self.factors else ""
        return (f"ImageData({self.name!r}, {self.split}, images={tuple(self.images.shape)}, "
                f"range={self.value_range}, classes={len(self.class_names)}{factors}, source={self.source!r})")

    def summary(self) -> str:
        """One line: what, how many, from where, and why."""
        return f"{self.name} ({self.split}, {len(self)} images) from {self.source}: {self.reason}"

    def rescaled(self, lo: float, hi: float) -> ImageData:
        """The same data with pixel values mapped linearly from ``value_range`` onto ``(lo, hi)``."""
        if not hi > lo:
            raise ValueError(f"rescaled: need lo < hi, got ({lo}, {hi})")
        images = rescale(self.images, self.value_range, (lo, hi))
        return dataclasses.replace(self, images=images, value_range=(float(lo), float(hi)))

    def loader(self, batch_size: int = 128, shuffle: bool = True, device=None, seed: int = 0,
               drop_last: bool = False) -> InMemoryLoader:
        """An :class:`InMemoryLoader` over ``(images, labels)``."""
        return InMemoryLoader(self.images, self.labels, batch_size=batch_size, shuffle=shuffle,
                              drop_last=drop_last, device=device, seed=seed)


def class_counts(data: ImageData) -> dict[str, int]:
    """Samples per class: class name -> count, in label order."""
    counts = torch.bincount(data.labels, minlength=len(data.class_names))
    return {name: int(c) for name, c in zip(data.class_names, counts)}


def factor_counts(data: ImageData) -> dict[str, list[int]]:
    """Samples per bin of each generative factor: name -> [count of bin 0, bin 1, ...]."""
    return {name: torch.bincount(values, minlength=FACTOR_BINS.get(name, 0)).tolist()
            for name, values in data.factors.items()}
