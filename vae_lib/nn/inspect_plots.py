"""Pictures of what happens inside a block: feature maps as a grid of tiles (matplotlib, headless-safe)."""
from __future__ import annotations

import math

import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def feature_maps(fmap: torch.Tensor, ncols: int = 8, *, title: str | None = None,
                 tile_inches: float = 0.6, cmap: str = "viridis") -> Figure:
    """One tile per channel of ``fmap`` ((C, H, W), or (1, C, H, W) for a batch of one).

    Each channel is min-max scaled on its own (shapes, not magnitudes, are what a tile shows),
    so a constant channel shows as a single colour. Returns a ``matplotlib.figure.Figure``
    (not registered with pyplot: no global state; Jupyter shows it when it is a cell's value).
    """
    if fmap.ndim == 4 and fmap.shape[0] == 1:
        fmap = fmap[0]
    if fmap.ndim != 3:
        raise ValueError(f"fmap must have shape (C, H, W) or (1, C, H, W), got {tuple(fmap.shape)}.")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}.")
    channels, height, width = fmap.shape
    ncols = min(ncols, channels)
    nrows = math.ceil(channels / ncols)
    # NaN padding is drawn in the colormap's "bad" colour (white), apart from every value.
    grid = make_grid(fmap.detach().float().cpu().unsqueeze(1), nrow=ncols, padding=1,
                     normalize=True, scale_each=True, pad_value=float("nan"))[0]

    fig = Figure(figsize=(tile_inches * ncols, tile_inches * nrows * height / width + (0.3 if title else 0)),
                 dpi=80, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid.numpy(), cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig
