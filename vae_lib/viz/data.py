"""Figures that show what a dataset holds: an image grid with its class counts, factor histograms,
the factors of a 'shapes' scene one at a time (notebook 00).
"""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from vae_lib.data.image_data import ImageData, class_counts, factor_counts
from vae_lib.data.shapes import DEFAULT_SIZE, FACTOR_BINS, render_from_factors, sample_factors
from vae_lib.viz.grids import DPI, PADDING, draw_array, fit_tiles, grid_array


def show_dataset(data: ImageData, n: int = 64, nrow: int | None = None, *, dpi: int = DPI) -> Figure:
    """The first ``n`` images as a grid, beside a bar chart of how many samples each class has."""
    figure = Figure(figsize=(8.5, 3.8), dpi=dpi, layout="constrained")
    grid_axes, count_axes = figure.subplots(1, 2, width_ratios=(1.5, 1))
    images = data.images[:n]
    nrow = nrow or max(1, round(len(images) ** 0.5))
    draw_array(grid_axes, grid_array(images, nrow, data.value_range))
    grid_axes.set_axis_off()
    grid_axes.set_title(f"{data.name} ({data.split}): first {min(n, len(data))} of {len(data)}", fontsize=10)

    counts = class_counts(data)
    positions = range(len(counts))
    count_axes.barh(positions, list(counts.values()), color="tab:blue")
    count_axes.set_yticks(positions, list(counts), fontsize=8)
    count_axes.invert_yaxis()
    count_axes.set_xlabel("images")
    count_axes.set_title("images per class", fontsize=10)
    return fit_tiles(figure, images.shape[-1], grid_axes)


def factor_histograms(data: ImageData, *, dpi: int = DPI) -> Figure:
    """One bar chart per generative factor: how many samples fall in each bin."""
    if not data.factors:
        raise ValueError(f"{data.name} has no generative factors (only 'shapes' has them)")
    counts = factor_counts(data)
    columns = 3
    rows = -(-len(counts) // columns)
    figure = Figure(figsize=(9, 2.0 * rows), dpi=dpi, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, bins) in zip(axes, counts.items()):
        ax.bar(range(len(bins)), bins, color="tab:orange")
        ax.set_xticks(range(len(bins)))
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(counts):]:
        ax.set_axis_off()
    figure.suptitle(f"{data.name}: samples per factor bin ({len(data)} images)", fontsize=10)
    return figure


def factor_traversals(index: int = 0, seed: int = 0, size: int = DEFAULT_SIZE, *, dpi: int = DPI) -> Figure:
    """'shapes' sample ``index`` in row after row: each row sweeps one factor through its bins, the
    others held fixed, so one sees which factors are coarse structure and which are fine style."""
    base = sample_factors([index], seed)
    columns = max(FACTOR_BINS.values())
    figure = Figure(figsize=(0.75 * columns + 1.2, 0.75 * len(FACTOR_BINS) + 0.4), dpi=dpi, layout="constrained")
    axes = figure.subplots(len(FACTOR_BINS), 1, squeeze=False)[:, 0]
    for ax, (name, bins) in zip(axes, FACTOR_BINS.items()):
        sweep = {key: value.repeat(bins) for key, value in base.items()}
        sweep[name] = torch.arange(bins)
        draw_array(ax, grid_array(render_from_factors(sweep, size), columns, (-1.0, 1.0)))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xlim(-0.5, columns * (size + PADDING) + PADDING - 0.5)     # rows of fewer bins: same scale
    figure.suptitle(f"shapes sample {index}: one factor at a time (bins 0, 1, ...)", fontsize=10)
    return figure
