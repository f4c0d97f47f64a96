"""Feature maps: what the layers of a network see in one image (notebook 01: a ResBlock's channels;
notebook 07: VGG19's layers).

Each tile is one map (H, W) on its own colour scale (viridis, min to max of that tile): shapes, not
magnitudes, are what a tile shows, so a constant channel shows as a single colour. The colour bar says so:
it runs from each tile's minimum to its maximum.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from vae_lib.viz.grids import DPI, MAX_GRID_WIDTH_IN, MAX_WIDTH_IN, MIN_TILE_PX

TILE_INCHES = 1.15     # the widest a tile is drawn


def feature_maps(activations, layer_names=None, n_channels: int | None = None, *, ncols: int | None = None,
                 title: str | None = None, dpi: int = DPI) -> Figure:
    """The feature maps of one image inside a network: the tiles of each layer in a row (or several).

    activations: one layer's features (C, H, W) or (1, C, H, W), e.g. a block's output, or a list of
    them, e.g. ``VGGPerceptual.activations(x)`` for one image x. ``layer_names``: one label per layer
    (for a list, default "layer 0", ...), written with C x H x W left of the layer's first tile.

    ``n_channels``: None shows every channel, in order. A number shows the mean over the channels
    (titled "mean"), then that many channels, those whose maps vary most over the image (largest
    spatial variance) first (titled "ch c"); a layer with fewer channels leaves its last tiles empty.
    ``ncols``: tiles per row (default: the most tiles of any layer); a layer with more tiles wraps
    onto further rows.
    """
    single = isinstance(activations, torch.Tensor)
    layers = [activations] if single else list(activations)
    maps = []
    for i, features in enumerate(layers):
        features = torch.as_tensor(features).detach().float().cpu()
        features = features[0] if features.ndim == 4 and features.shape[0] == 1 else features
        if features.ndim != 3:
            raise ValueError(f"activations[{i}] must be one image's features (C, H, W) or (1, C, H, W), "
                             f"got shape {tuple(torch.as_tensor(layers[i]).shape)}.")
        maps.append(features)
    if not maps:
        raise ValueError("activations is empty.")
    if layer_names is None:
        layer_names = [""] if single else [f"layer {i}" for i in range(len(maps))]
    layer_names = list(layer_names)
    if len(layer_names) != len(maps):
        raise ValueError(f"Got {len(layer_names)} layer names for {len(maps)} layers.")
    if n_channels is not None and n_channels < 1:
        raise ValueError(f"n_channels must be >= 1 (or None: every channel), got {n_channels}.")
    if ncols is not None and ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")

    tiles = [_tiles(features, n_channels) for features in maps]
    columns = ncols or max(len(t) for t in tiles)
    rows = [math.ceil(len(t) / columns) for t in tiles]
    # at most TILE_INCHES a tile, at least MIN_TILE_PX on screen (with room for the labels), within the width caps
    tile_width = min(TILE_INCHES, max((MAX_WIDTH_IN - 1.2) / columns, 1.15 * MIN_TILE_PX / dpi),
                     (MAX_GRID_WIDTH_IN - 1.2) / columns)
    width = 1.2 + tile_width * columns
    aspect = max(m.shape[1] / m.shape[2] for m in maps)
    fig = Figure(figsize=(width, 0.3 + sum(rows) * (tile_width * aspect + 0.1)), dpi=dpi, layout="constrained")
    axes = fig.subplots(sum(rows), columns, squeeze=False)
    first_row = np.cumsum([0] + rows[:-1])
    for features, name, layer_tiles, top, count in zip(maps, layer_names, tiles, first_row, rows):
        block = axes[top:top + count].ravel()
        for ax in block:
            ax.set_axis_off()
        for ax, (tile, label) in zip(block, layer_tiles):
            ax.set_axis_on()
            ax.imshow(tile.numpy(), cmap="viridis", interpolation="nearest")
            if label:
                ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        c, h, w = features.shape
        block[0].set_ylabel(f"{name}\n{c}x{h}x{w}" if name else f"{c}x{h}x{w}", fontsize=8)
    scale = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="viridis"), ax=axes, shrink=0.9, aspect=30,
                         ticks=[0.0, 1.0], pad=0.01)
    scale.ax.set_yticklabels(["min", "max"], fontsize=7)
    scale.set_label("each tile's own range", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _tiles(features: torch.Tensor, n_channels: int | None) -> list[tuple[torch.Tensor, str | None]]:
    """The (map, title) of each tile of one layer (C, H, W)."""
    if n_channels is None:
        return [(channel, None) for channel in features]
    order = features.flatten(1).var(dim=1).argsort(descending=True)[:n_channels].tolist()
    return [(features.mean(dim=0), "mean")] + [(features[c], f"ch {c}") for c in order]
