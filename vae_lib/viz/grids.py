"""Grids of images, the base of every image figure: the shared layout (DPI, padding), the value-range
helper, the grid array and the stacked-grid figure; image grids, reconstructions, samples per class.

Images are tensors (N, C, H, W) with C = 1 (grayscale) or C = 3 (RGB) whose values lie in
``value_range``: (0, 1) for the digit sets and the Bernoulli CVAE, (-1, 1) for the Gaussian CVAE and
the StyleGAN-VAE. Values outside the range are clipped for display.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from vae_lib.models.sampling import class_samples, sample_images

DPI = 80
PADDING = 2          # pixels between the tiles of a grid (torchvision's default)
MAX_WIDTH_IN = 8.0   # figure width cap, inches (a grid may grow past it to keep its tiles readable)
MIN_TILE_PX = 40     # the least width of one image of a grid on screen, in figure pixels (figsize * dpi)
MAX_GRID_WIDTH_IN = 14.0    # ... but no grid figure grows wider than this


# ---------------------------------------------------------------------------------------------- grids
def _check_images(images, name: str = "images") -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(images.shape)}.")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (grayscale) or 3 (RGB) channels, got {images.shape[1]} "
                         f"(shape {tuple(images.shape)}).")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    return images.detach().float().cpu()


def check_value_range(value_range) -> tuple[float, float]:
    """``value_range`` as two floats (low, high); a ValueError unless low < high."""
    lo, hi = (float(v) for v in value_range)
    if not lo < hi:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}.")
    return lo, hi


def grid_array(images, nrow: int = 8, value_range=(0.0, 1.0), padding: int = PADDING) -> np.ndarray:
    """The array a grid figure draws: images (N, C, H, W) tiled by ``torchvision.utils.make_grid``.

    Values are mapped from ``value_range`` to [0, 1]; padding is white. Returns (H_grid, W_grid) for
    grayscale, (H_grid, W_grid, 3) for RGB, with H_grid = rows * (H + padding) + padding,
    W_grid = min(nrow, N) * (W + padding) + padding and rows = ceil(N / min(nrow, N)) (for N > 1).
    """
    images = _check_images(images)
    lo, hi = check_value_range(value_range)
    grid = make_grid(images, nrow=nrow, padding=padding, normalize=True, value_range=(lo, hi),
                     pad_value=1.0)
    return grid[0].numpy() if images.shape[1] == 1 else grid.permute(1, 2, 0).numpy()


def draw_array(ax, array: np.ndarray) -> None:
    """Show a ``grid_array`` (values in [0, 1]; 2-d: grayscale) on ``ax``, one screen block per pixel."""
    ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")


def value_range_of(model, value_range=None) -> tuple[float, float]:
    """``value_range`` if given, else the model's ``data_range`` ((0, 1) for a model without one)."""
    return value_range if value_range is not None else getattr(model, "data_range", (0.0, 1.0))


def tile_centres(count: int, size: int) -> list[float]:
    """Where the middle of each of ``count`` tiles of ``size`` pixels lies along a grid array's side."""
    return [PADDING + (size + PADDING) * i + size / 2 for i in range(count)]


def label_columns(fig: Figure, labels, tile_width: int) -> None:
    """Write one label under each column of a figure's first grid (``grid_figure`` labels only rows)."""
    ax = fig.axes[0]
    ax.set_xticks(tile_centres(len(labels), tile_width), [str(s) for s in labels])
    ax.tick_params(axis="x", length=0)


def shown_tile_px(fig: Figure, tile_width: int, ax=None) -> float:
    """How wide one image (``tile_width`` pixels) of the first image of ``ax`` (default: the figure's first
    axes) is drawn, in figure pixels, once the layout is done: at the committed size, what one sees."""
    ax = fig.axes[0] if ax is None else ax
    fig.draw_without_rendering()
    image = ax.images[0]
    return image.get_window_extent().width * tile_width / image.get_array().shape[1]


def fit_tiles(fig: Figure, tile_width: int, ax=None, min_px: float = MIN_TILE_PX) -> Figure:
    """Enlarge ``fig`` until each image of its grid is at least ``min_px`` figure pixels wide: taller where the
    grid is held by its height, wider (up to ``MAX_GRID_WIDTH_IN``) where by its width. Call it after every
    label is set: labels take room."""
    ax = fig.axes[0] if ax is None else ax
    for _ in range(8):
        shown = shown_tile_px(fig, tile_width, ax)
        if shown >= min_px:
            break
        grow = 1.02 * min_px / shown - 1.0
        image, box = ax.images[0].get_window_extent(), ax.get_window_extent()
        width, height = fig.get_size_inches()
        if image.width < box.width - 2:        # the axes has room across: the height holds the grid back
            fig.set_size_inches(width, height + grow * image.height / fig.dpi)
        elif width < MAX_GRID_WIDTH_IN:
            new_width = min(width + grow * image.width / fig.dpi, MAX_GRID_WIDTH_IN)
            fig.set_size_inches(new_width, height * new_width / width)
        else:
            break
    return fig


def grid_figure(arrays: list[np.ndarray], *, title: str | None = None, ylabels: list[str] | None = None,
                row_labels: list[str] | None = None, tile_height: int | None = None,
                xlabel: str | None = None, tile_width: int | None = None, dpi: int = DPI) -> Figure:
    """A figure of grids stacked vertically, one axes each, about 1.5 screen pixels per image pixel.

    ``row_labels`` (one per grid row of the first array, ``tile_height`` pixels per tile) and
    ``ylabels`` (one per array, at its middle) are written left of the images as y tick labels.
    With ``tile_width`` (the images' width in pixels) the figure grows until each image is at least
    ``MIN_TILE_PX`` figure pixels wide (:func:`fit_tiles`).
    """
    height_px, width_px = arrays[0].shape[:2]
    image_width = float(np.clip(1.5 * width_px / dpi, 3.0, MAX_WIDTH_IN - 1.0))
    labelled = row_labels is not None or ylabels is not None
    fig = Figure(figsize=(image_width + (1.0 if labelled else 0.2),
                          len(arrays) * (image_width * height_px / width_px + 0.1)
                          + (0.35 if title else 0.0) + (0.3 if xlabel else 0.0)),
                 dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(arrays), 1))
    for ax, array, ylabel in zip(axes, arrays, ylabels or [None] * len(arrays)):
        draw_array(ax, array)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if ylabel:    # as a tick label, which the constrained layout leaves room for
            ax.set_yticks([array.shape[0] / 2], [ylabel])
            ax.tick_params(axis="y", length=0)
    if row_labels is not None:
        axes[0].set_yticks(tile_centres(len(row_labels), tile_height), row_labels)
        axes[0].tick_params(axis="y", length=0)
    if title:
        axes[0].set_title(title)
    if xlabel:
        axes[-1].set_xlabel(xlabel)
    return fig if tile_width is None else fit_tiles(fig, tile_width)


def image_grid(images, nrow: int = 8, title: str | None = None, value_range=(0.0, 1.0), *,
               dpi: int = DPI) -> Figure:
    """One grid of images (N, C, H, W), ``nrow`` images per row."""
    return grid_figure([grid_array(images, nrow, value_range)], title=title,
                       tile_width=torch.as_tensor(images).shape[-1], dpi=dpi)


def reconstructions(x, x_hat, n: int = 8, value_range=(0.0, 1.0), *, dpi: int = DPI) -> Figure:
    """The first ``n`` inputs x (N, C, H, W) in a top row, their reconstructions x_hat below. ``x_hat`` may also be
    ``{row label: images}``, one row each (e.g. one run's reconstructions at two points of its training)."""
    rows = dict(x_hat) if isinstance(x_hat, dict) else {"reconstruction": x_hat}
    if not rows:
        raise ValueError("x_hat: no reconstructions to show.")
    x = _check_images(x, "x")
    for label, images in rows.items():
        rows[label] = images = _check_images(images, "x_hat")
        if x.shape != images.shape:
            raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and "
                             f"{tuple(images.shape)} ({label}).")
    n = min(n, x.shape[0])
    arrays = [grid_array(batch[:n], n, value_range) for batch in (x, *rows.values())]
    return grid_figure(arrays, ylabels=["input", *rows], tile_width=x.shape[-1], dpi=dpi)


# ------------------------------------------------------------------------------------ model figures
def class_conditional_samples(model, num_classes: int | None = None, n_per_class: int = 8, seed: int = 0,
                              class_names=None, *, value_range=None, dpi: int = DPI) -> Figure:
    """``n_per_class`` samples x ~ p(x|z,c), z ~ N(0, I), for each class c: one labelled row per class.

    ``model.sample(len(y), y, generator=...)`` makes the images (``models.sampling.class_samples``); ``num_classes`` defaults to
    ``model.num_classes`` and ``value_range`` to ``model.data_range``. The same ``seed`` gives the
    same figure.
    """
    num_classes = num_classes if num_classes is not None else model.num_classes
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes.")
    images = class_samples(model, n_per_class, num_classes=num_classes, seed=seed)
    array = grid_array(images, n_per_class, value_range_of(model, value_range))
    return grid_figure([array], title="samples per class, z ~ N(0, I)", dpi=dpi,
                       row_labels=[str(name) for name in (class_names or range(num_classes))],
                       tile_height=images.shape[-2], tile_width=images.shape[-1])


def samples_by_prior(model, priors: dict, n: int = 8, rows: int = 2, seed: int = 0, *, value_range=None,
                     title: str | None = None, dpi: int = DPI) -> Figure:
    """Samples of an unconditional model from several code distributions: one labelled grid per prior.

    priors: {label: None for z ~ N(0, I), or a ``MultivariateNormal`` such as
    ``models.sampling.aggregate_posterior(model, train_data)``}. Each grid holds ``rows`` x ``n`` images
    ``sample_images(model, rows * n, seed=seed, prior=prior)`` (constant noise): every grid decodes the
    same draws eps, shifted and scaled by its prior, so the grids differ only by where their codes lie.
    """
    if model.conditional:
        raise ValueError("samples_by_prior is for an unconditional model (the StyleGAN-VAE); a CVAE's samples "
                         "need labels: use class_conditional_samples.")
    if not priors:
        raise ValueError("No priors to compare: give {label: None or a MultivariateNormal}.")
    value_range = value_range_of(model, value_range)
    grids = [sample_images(model, rows * n, seed=seed, prior=prior) for prior in priors.values()]
    return grid_figure([grid_array(images, n, value_range) for images in grids], ylabels=list(priors),
                       title=title, tile_width=grids[0].shape[-1], dpi=dpi)


def samples_per_run(models: dict, n_per_class: int = 1, seed: int = 0, class_names=None, *,
                    num_classes: int | None = None, value_range=None, dpi: int = DPI) -> Figure:
    """One row of class-conditional samples per model, the same z ~ N(0, I) in every row.

    models: {run name: model with ``sample(n, y, generator=...)``, ``num_classes``, ``z_dim``}. Columns: classes
    0 .. num_classes-1, ``n_per_class`` each; rows differ only by the trained weights, as long as the models
    share z_dim (the same ``seed`` draws the same z). ``value_range`` defaults to the first model's
    ``data_range``.
    """
    if not models:
        raise ValueError("No models to compare.")
    first = next(iter(models.values()))
    num_classes = num_classes if num_classes is not None else first.num_classes
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes.")
    rows = []
    for model in models.values():
        rows.append(class_samples(model, n_per_class, num_classes=num_classes, seed=seed))
    images = torch.cat(rows)
    columns = num_classes * n_per_class
    fig = grid_figure([grid_array(images, columns, value_range_of(first, value_range))],
                      title=f"the same z ~ N(0, I) for every run, {n_per_class} per class", dpi=dpi,
                      row_labels=[str(name) for name in models], tile_height=images.shape[-2])
    tile = images.shape[-1] + PADDING
    labels = [str(name) for name in (class_names or range(num_classes))]
    slanted = max(len(label) for label in labels) > 3      # long names would overlap side by side
    ax = fig.axes[0]
    ax.set_xticks([PADDING + tile * n_per_class * (c + 0.5) - PADDING / 2 for c in range(num_classes)], labels,
                  rotation=30 if slanted else 0, ha="right" if slanted else "center", fontsize="small")
    ax.tick_params(axis="x", length=0)
    return fit_tiles(fig, images.shape[-1])


