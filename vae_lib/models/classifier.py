"""The judges' network: a small CNN classifier with one head per target (architecture only).

Training, settings and the cache are in :mod:`vae_lib.judges` (which re-exports :class:`Judge`); the
network lives here, in the models layer, so that a layer below the judges (the perceptual loss, which
uses a trained judge's conv blocks as features) can take one. Network (``width`` = w, ``hidden`` = h;
S = image side)::

    [Conv3x3 -> BatchNorm -> ReLU -> MaxPool2] x P     channels C -> w -> 2w -> ... ; P halvings until S <= 8
    Conv3x3 -> BatchNorm -> ReLU                        (B, 4w or the last width, S', S')
    AdaptiveAvgPool2d(4) -> Flatten -> Linear -> ReLU   (B, h)   the penultimate features (FID)
    one Linear(h -> bins) per head                       logits

The 4 x 4 pooling (rather than a global one) keeps where things are, which the position factors need.
The conv blocks are "block1" ... "blockN" (N = P + 1), each ending at its ReLU (before the pool):
``block_names`` and ``block_activations`` give them.
"""
from __future__ import annotations

import torch
from torch import nn

from vae_lib.utils import evaluation_mode, model_device, rescale

LABEL_HEAD = "label"
FEATURE_POOL = 4          # side of the pooled map before the hidden layer
MAX_POOLED_SIDE = 8       # halve the image until its side is at most this
PREDICT_BATCH = 500


# ------------------------------------------------------------------------------------------- network
class Judge(nn.Module):
    """A CNN classifier with one head per target; images (B, C, S, S) in ``value_range``.

    Args:
        in_channels: C (1 for digits, 3 for shapes).
        image_size: S (the input side; 28, 32, 64, ...).
        heads: target name -> number of classes, e.g. ``{"label": 10}`` or ``FACTOR_BINS``.
        value_range: the pixel range of the images it was trained on ((0, 1) or (-1, 1)).
        width: channels of the first conv (doubled at each halving, capped at 4 * width).
        hidden: size of the penultimate features.
        label_head: the head that gives "the class" (``"label"``; ``"shape"`` for shapes).
        class_names: a name for each class of ``label_head``.

    ``test_accuracy`` ({head: accuracy on held-out images}) and ``settings`` (a dict of the
    :class:`vae_lib.judges.JudgeSettings` it was trained with) are filled in by
    :func:`vae_lib.judges.train_or_load_judge`.
    """

    def __init__(self, in_channels: int, image_size: int, heads: dict[str, int], value_range=(0.0, 1.0), *,
                 width: int = 32, hidden: int = 128, label_head: str = LABEL_HEAD, class_names=None):
        super().__init__()
        if not heads or any(int(k) < 2 for k in heads.values()):
            raise ValueError(f"heads must map each target to its number of classes (>= 2), got {heads!r}.")
        if label_head not in heads:
            raise ValueError(f"label_head {label_head!r} is not one of the heads {sorted(heads)}.")
        if image_size < FEATURE_POOL or in_channels < 1 or width < 1 or hidden < 1:
            raise ValueError(f"Need image_size >= {FEATURE_POOL} and positive in_channels, width, hidden; got "
                             f"{image_size}, {in_channels}, {width}, {hidden}.")
        self.in_channels, self.image_size = in_channels, image_size
        self.heads_spec = {name: int(k) for name, k in heads.items()}
        self.value_range = tuple(float(v) for v in value_range)
        self.label_head = label_head
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in
                                                                             range(heads[label_head])]
        self.test_accuracy: dict[str, float] = {}
        self.settings: dict = {}

        layers, channels, side = [], in_channels, image_size
        out = width
        while side > MAX_POOLED_SIDE:
            layers += [*_conv_bn_relu(channels, out), nn.MaxPool2d(2)]
            channels, side, out = out, side // 2, min(2 * out, 4 * width)
        layers += _conv_bn_relu(channels, out)
        self.conv = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.AdaptiveAvgPool2d(FEATURE_POOL), nn.Flatten(),
                                   nn.Linear(out * FEATURE_POOL ** 2, hidden), nn.ReLU())
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, k) for name, k in self.heads_spec.items()})

    @property
    def feature_dim(self) -> int:
        return self.embed[2].out_features

    @property
    def block_names(self) -> tuple[str, ...]:
        """The conv blocks, shallow to deep: ("block1", ..., "blockN"); each ends at its ReLU."""
        return tuple(f"block{i}" for i in range(1, len(self.block_ends()) + 1))

    def block_ends(self) -> list[int]:
        """Index in ``self.conv`` of each block's ReLU (where ``block_activations`` reads it)."""
        return [i for i, module in enumerate(self.conv) if isinstance(module, nn.ReLU)]

    def check_blocks(self, blocks=None) -> tuple[str, ...]:
        """``blocks`` as a tuple of block names (None: all of them); a ValueError names the choices."""
        blocks = self.block_names if blocks is None else tuple(blocks)
        unknown = [b for b in blocks if b not in self.block_names]
        if unknown or not blocks:
            raise ValueError(f"Unknown or no judge blocks {unknown or list(blocks)}: choose among "
                             f"{', '.join(self.block_names)}.")
        return blocks

    def block_activations(self, x: torch.Tensor, blocks=None) -> list[torch.Tensor]:
        """The conv blocks' outputs (after their ReLU, before the pool) for x (B, C, S, S) in
        ``value_range``: one (B, C_k, S_k, S_k) tensor per name of ``blocks`` (default all), in that
        order. Runs ``self.conv`` only as deep as the deepest block asked for."""
        blocks = self.check_blocks(blocks)
        self._check_x(x)
        ends = self.block_ends()
        wanted = {ends[self.block_names.index(b)]: b for b in blocks}
        found, h = {}, x
        for i, module in enumerate(self.conv[:max(wanted) + 1]):
            h = module(h)
            if i in wanted:
                found[wanted[i]] = h
        return [found[b] for b in blocks]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features (after the hidden layer's ReLU): x (B, C, S, S) -> (B, hidden)."""
        self._check_x(x)
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, C, S, S) in ``value_range`` -> {head: logits (B, classes)}."""
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor, value_range=None, batch_size: int = PREDICT_BATCH
                ) -> dict[str, torch.Tensor]:
        """The most likely class of every head: images (N, C, S, S) -> {head: (N,) int64} on the CPU.

        ``value_range``: the range the images are in (default: the judge's own); they are mapped
        linearly onto the judge's range first. Runs in eval mode, in batches.
        """
        out: dict[str, list[torch.Tensor]] = {name: [] for name in self.heads_spec}
        for chunk in self._batches(images, value_range, batch_size):
            for name, logits in self(chunk).items():
                out[name].append(logits.argmax(1).cpu())
        return {name: torch.cat(parts) for name, parts in out.items()}

    def predict_labels(self, images: torch.Tensor, value_range=None, batch_size: int = PREDICT_BATCH
                       ) -> torch.Tensor:
        """The class (``label_head``) of each image: (N,) int64."""
        return self.predict(images, value_range, batch_size)[self.label_head]

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor, value_range=None, batch_size: int = PREDICT_BATCH
                     ) -> torch.Tensor:
        """Penultimate features of many images, in eval mode and batches: (N, hidden) float32 on the CPU."""
        return torch.cat([self.features(chunk).cpu() for chunk in self._batches(images, value_range, batch_size)])

    def _batches(self, images, value_range, batch_size):
        images = torch.as_tensor(images)
        self._check_x(images)
        images = rescale(images, value_range, self.value_range)
        device = model_device(self)
        with evaluation_mode(self):
            for chunk in images.split(batch_size):
                yield chunk.to(device=device, dtype=torch.float32)

    def _check_x(self, x: torch.Tensor) -> None:
        want = (self.in_channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"This judge takes images of shape (N, {', '.join(map(str, want))}), got "
                             f"{tuple(x.shape)}.")

    def extra_repr(self) -> str:
        return (f"heads={self.heads_spec}, value_range={self.value_range}, "
                f"feature_dim={self.feature_dim}")


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU()]


__all__ = ["Judge", "LABEL_HEAD", "FEATURE_POOL", "MAX_POOLED_SIDE", "PREDICT_BATCH"]
