"""Every figure of the course: image grids, reconstructions, samples, interpolations, curves, style mixing,
feature maps.

Each function returns a ``matplotlib.figure.Figure`` built without pyplot, so it works headless
(any backend, Agg included) and nothing piles up in pyplot's list of open figures. In a notebook,
leave the figure as the last expression of a cell to show it; elsewhere call ``fig.savefig(path)``.

Images are tensors (N, C, H, W) with C = 1 (grayscale) or C = 3 (RGB) whose values lie in
``value_range``: (0, 1) for the digit sets and the Bernoulli CVAE, (-1, 1) for the Gaussian CVAE and
the StyleGAN-VAE. Values outside the range are clipped for display.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from vae_lib.evaluate import evaluation_mode, model_device

DPI = 80
PADDING = 2          # pixels between the tiles of a grid (torchvision's default)
MAX_WIDTH_IN = 8.0   # figure width cap, inches
SMOOTHING = 0.05     # moving-average window of per-step curves, as a fraction of the steps


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


def _check_value_range(value_range) -> tuple[float, float]:
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
    lo, hi = _check_value_range(value_range)
    grid = make_grid(images, nrow=nrow, padding=padding, normalize=True, value_range=(lo, hi),
                     pad_value=1.0)
    return grid[0].numpy() if images.shape[1] == 1 else grid.permute(1, 2, 0).numpy()


def _grid_figure(arrays: list[np.ndarray], *, title: str | None = None, ylabels: list[str] | None = None,
                 row_labels: list[str] | None = None, tile_height: int | None = None,
                 xlabel: str | None = None, dpi: int = DPI) -> Figure:
    """A figure of grids stacked vertically, one axes each, about 1.5 screen pixels per image pixel.

    ``row_labels`` (one per grid row of the first array, ``tile_height`` pixels per tile) and
    ``ylabels`` (one per array, at its middle) are written left of the images as y tick labels.
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
        ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0.0, vmax=1.0,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if ylabel:    # as a tick label, which the constrained layout leaves room for
            ax.set_yticks([array.shape[0] / 2], [ylabel])
            ax.tick_params(axis="y", length=0)
    if row_labels is not None:
        tile = tile_height + PADDING
        axes[0].set_yticks([PADDING + tile * i + tile_height / 2 for i in range(len(row_labels))], row_labels)
        axes[0].tick_params(axis="y", length=0)
    if title:
        axes[0].set_title(title)
    if xlabel:
        axes[-1].set_xlabel(xlabel)
    return fig


def image_grid(images, nrow: int = 8, title: str | None = None, value_range=(0.0, 1.0), *,
               dpi: int = DPI) -> Figure:
    """One grid of images (N, C, H, W), ``nrow`` images per row."""
    return _grid_figure([grid_array(images, nrow, value_range)], title=title, dpi=dpi)


def reconstructions(x, x_hat, n: int = 8, value_range=(0.0, 1.0), *, dpi: int = DPI) -> Figure:
    """The first ``n`` inputs x (N, C, H, W) in a top row, their reconstructions x_hat below."""
    x, x_hat = _check_images(x, "x"), _check_images(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}.")
    n = min(n, x.shape[0])
    arrays = [grid_array(batch[:n], n, value_range) for batch in (x, x_hat)]
    return _grid_figure(arrays, ylabels=["input", "reconstruction"], dpi=dpi)


# ------------------------------------------------------------------------------------ model figures
def _model_range(model, value_range):
    return value_range if value_range is not None else getattr(model, "data_range", (0.0, 1.0))


def class_conditional_samples(model, num_classes: int | None = None, n_per_class: int = 8, seed: int = 0,
                              class_names=None, *, value_range=None, dpi: int = DPI) -> Figure:
    """``n_per_class`` samples x ~ p(x|z,c), z ~ N(0, I), for each class c: one labelled row per class.

    ``model.sample(y, generator=...)`` makes the images; ``num_classes`` defaults to
    ``model.num_classes`` and ``value_range`` to ``model.data_range``. The same ``seed`` gives the
    same figure.
    """
    num_classes = num_classes if num_classes is not None else model.num_classes
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes.")
    y = torch.arange(num_classes, device=model_device(model)).repeat_interleave(n_per_class)
    with evaluation_mode(model):
        images = model.sample(y, generator=torch.Generator().manual_seed(seed))
    array = grid_array(images, n_per_class, _model_range(model, value_range))
    return _grid_figure([array], title="samples per class, z ~ N(0, I)", dpi=dpi,
                        row_labels=[str(name) for name in (class_names or range(num_classes))],
                        tile_height=images.shape[-2])


def interpolate_latents(z_a: torch.Tensor, z_b: torch.Tensor, steps: int = 10,
                        spherical: bool = False) -> torch.Tensor:
    """``steps`` latents from z_a to z_b (both (z,) or (1, z)), endpoints included: (steps, z).

    Linear: (1 - t) z_a + t z_b. Spherical (slerp, White 2016): moves along the great circle, so the
    norm stays near that of N(0, I) samples (sqrt(z)) instead of dipping in the middle.
    """
    z_a, z_b = torch.as_tensor(z_a).flatten(), torch.as_tensor(z_b).flatten()
    if z_a.shape != z_b.shape:
        raise ValueError(f"z_a and z_b must have the same size, got {z_a.numel()} and {z_b.numel()}.")
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the two endpoints), got {steps}.")
    t = torch.linspace(0.0, 1.0, steps, dtype=z_a.dtype, device=z_a.device)[:, None]
    if spherical:
        cos = torch.dot(z_a / z_a.norm(), z_b / z_b.norm()).clamp(-1.0, 1.0)
        omega = torch.arccos(cos)
        if torch.sin(omega) > 1e-6:    # (anti)parallel endpoints have no unique great circle: go straight
            return (torch.sin((1 - t) * omega) * z_a + torch.sin(t * omega) * z_b) / torch.sin(omega)
    return torch.lerp(z_a, z_b, t)


def _as_single(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"{name} must be one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}.")
    return x


def latent_interpolation(model, x_a=None, y_a=None, x_b=None, y_b=None, steps: int = 10, *,
                         z_a=None, z_b=None, spherical: bool = False, value_range=None,
                         dpi: int = DPI) -> Figure:
    """Decode a straight (or spherical) path in latent space between two images or two latent codes.

    Give images x_a, x_b ((C, H, W) or (1, C, H, W)): the path runs between their encoder means.
    Or give z_a, z_b ((z,) or (1, z)) instead. For a class-conditional model give labels y_a (and y_b,
    default y_a): the path is decoded once with each distinct label, one row per label, so the row
    shows the style changing at a fixed class. With no labels, ``model.encode(x)``/``model.decode(z)``
    are called without them (the StyleGAN-VAE).
    """
    given = [v is not None for v in (x_a, x_b, z_a, z_b)]
    if given not in ([True, True, False, False], [False, False, True, True]):
        raise ValueError("Give either both images (x_a, x_b) or both latent codes (z_a=..., z_b=...).")
    from_images = given[0]
    y_b = y_a if y_b is None else y_b
    labels = [] if y_a is None else list(dict.fromkeys([int(y_a), int(y_b)]))
    device = model_device(model)

    def encode_mean(x, y):
        x = _as_single(x, "x_a/x_b").to(device)
        if y is None:
            return model.encode(x)[0]
        return model.encode(x, torch.tensor([int(y)], device=device))[0]

    with evaluation_mode(model):
        if from_images:
            z_a, z_b = encode_mean(x_a, y_a), encode_mean(x_b, y_b)
        path = interpolate_latents(torch.as_tensor(z_a).to(device), torch.as_tensor(z_b).to(device),
                                   steps, spherical)
        if labels:
            images = torch.cat([model.decode(path, torch.full((steps,), c, device=device)) for c in labels])
        else:
            images = model.decode(path)
    array = grid_array(images, steps, _model_range(model, value_range))
    source = "encoder means" if from_images else "latent codes"
    return _grid_figure([array], title=f"{'spherical' if spherical else 'linear'} path between {source}",
                        row_labels=[f"class {c}" for c in labels] if labels else None,
                        tile_height=images.shape[-2], dpi=dpi)


def style_mixing_grid(model, z_rows, z_cols, crossover: int, *, value_range=(-1.0, 1.0),
                      noise_mode: str | None = "const", dpi: int = DPI) -> Figure:
    """The StyleGAN style-mixing figure.

    Top row: ``model.decode(z_cols)``; left column: ``model.decode(z_rows)``; cell (i, j):
    ``model.mix(z_rows[i], z_cols[j], crossover)``, i.e. the style layers [0:crossover] (coarse,
    low resolution: pose, shape) from the row's code and the layers [crossover:] (fine: colour,
    texture) from the column's code. z_rows (R, z), z_cols (K, z). ``noise_mode`` goes to
    ``decode`` and ``mix``: "const" (default) fixes the noise injections, so a cell differs from its
    sources only through the styles (with crossover = L it equals its row's image, with 0 its
    column's); None uses the model's own default.
    """
    z_rows, z_cols = torch.as_tensor(z_rows), torch.as_tensor(z_cols)
    if z_rows.ndim != 2 or z_cols.ndim != 2 or z_rows.shape[1] != z_cols.shape[1]:
        raise ValueError("z_rows and z_cols must have shapes (R, z) and (K, z), got "
                         f"{tuple(z_rows.shape)} and {tuple(z_cols.shape)}.")
    num_layers = getattr(model, "num_style_layers", None)
    if not 0 <= crossover <= (num_layers if num_layers is not None else crossover):
        raise ValueError(f"crossover must be in [0, {num_layers}] (the style layers), got {crossover}.")
    rows, cols = z_rows.shape[0], z_cols.shape[0]
    device = model_device(model)
    z_rows, z_cols = z_rows.to(device), z_cols.to(device)
    with evaluation_mode(model):
        row_images = model.decode(z_rows, noise_mode=noise_mode).cpu()
        col_images = model.decode(z_cols, noise_mode=noise_mode).cpu()
        mixed = model.mix(z_rows.repeat_interleave(cols, 0), z_cols.repeat(rows, 1), crossover,
                          noise_mode=noise_mode).cpu()
    lo, hi = _check_value_range(value_range)
    corner = torch.full_like(col_images[:1], hi)    # shown white
    tiles = [corner, col_images]
    for i in range(rows):
        tiles += [row_images[i:i + 1], mixed[i * cols:(i + 1) * cols]]
    array = grid_array(torch.cat(tiles), cols + 1, (lo, hi))
    return _grid_figure([array], title=f"style mixing at layer {crossover}", dpi=dpi,
                        ylabels=[f"coarse:\nlayers < {crossover}"], xlabel=f"fine: layers >= {crossover}")


# ------------------------------------------------------------------------------------------- curves
def _moving_average(x: np.ndarray, values: np.ndarray, smoothing: float):
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing is the moving-average window as a fraction of the steps, in [0, 1); "
                         f"got {smoothing}.")
    window = max(1, int(round(len(values) * smoothing)))
    if window == 1:
        return x, values
    return x[window - 1:], np.convolve(values, np.ones(window) / window, mode="valid")


def _step_series(history: dict, term: str, run: str = "history"):
    points = [(s["step"], s[term]) for s in history.get("steps", []) if term in s]
    if not points:
        available = sorted({key for s in history.get("steps", []) for key in s} - {"step", "epoch"})
        raise ValueError(f"{run} has no per-step {term!r}; it has: {', '.join(available) or 'no steps'}.")
    x, v = np.array(points, dtype=float).T
    return x, v


def _epoch_ends(history: dict) -> np.ndarray:
    """The step at which each entry of history['epochs'] ends (the last step logged in that epoch)."""
    last_step = {}
    for s in history.get("steps", []):
        last_step[s["epoch"]] = s["step"]
    return np.array([last_step.get(e["epoch"], np.nan) for e in history.get("epochs", [])], dtype=float)


def _set_scale(ax, values, log_scale: bool) -> None:
    if log_scale:
        ax.set_yscale("log" if np.all(np.asarray(values) > 0) else "symlog")


def training_curves(history: dict, terms=("loss", "nll", "kl"), show_beta: bool = True, *,
                    log_scale: bool = False, smoothing: float = SMOOTHING, dpi: int = DPI) -> Figure:
    """One panel per term of a Trainer history: per-step values (faint), their moving average,
    epoch means (dots) and, where the history has them, validation values ("val_<term>").

    The KL weight beta is drawn on a twin axis of the "kl" panel (the first panel if "kl" is not
    plotted). ``log_scale`` uses a log y axis (symlog where values are <= 0); ``smoothing`` is the
    moving-average window as a fraction of the number of steps (0: no smoothing).
    """
    if not history.get("steps"):
        raise ValueError("The history has no steps to plot.")
    terms = [terms] if isinstance(terms, str) else list(terms)
    series = {term: _step_series(history, term) for term in terms}
    epochs, ends = history.get("epochs", []), _epoch_ends(history)
    fig = Figure(figsize=(min(3.2 * len(terms), 3 * MAX_WIDTH_IN), 2.6), dpi=dpi, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(terms)))
    for ax, term in zip(axes, terms):
        x, v = series[term]
        ax.plot(x, v, lw=0.8, alpha=0.3, color="tab:blue", label="per step")
        ax.plot(*_moving_average(x, v, smoothing), lw=1.5, color="tab:blue", label="smoothed")
        for key, style, color, label in ((term, "o", "tab:orange", "epoch mean"),
                                         (f"val_{term}", "s--", "tab:green", "validation")):
            points = [(end, e[key]) for end, e in zip(ends, epochs) if key in e and np.isfinite(end)]
            if points:
                ax.plot(*np.array(points).T, style, ms=4, color=color, label=label)
        _set_scale(ax, v, log_scale)
        ax.set_title(term)
        ax.set_xlabel("step")
    axes[0].legend(fontsize="small")
    if show_beta:
        beta = [(s["step"], s["beta"]) for s in history["steps"] if "beta" in s]
        if beta:
            twin = axes[terms.index("kl") if "kl" in terms else 0].twinx()
            twin.plot(*np.array(beta, dtype=float).T, color="gray", ls=":", lw=1.2)
            twin.set_ylabel("β (gray, dotted)")
    return fig


def compare_runs(histories: dict, term: str = "kl", *, show_beta: bool = False, log_scale: bool = False,
                 smoothing: float = SMOOTHING, dpi: int = DPI) -> Figure:
    """Several runs' per-step ``term`` on one axis (e.g. the KL under different warm-up schedules).

    histories: {run name: Trainer history}. Each run is a moving average over its raw values (faint,
    same colour). ``show_beta`` adds each run's beta on a twin axis, dashed in the run's colour.
    """
    if not histories:
        raise ValueError("No histories to compare.")
    fig = Figure(figsize=(5.0, 3.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    twin = ax.twinx() if show_beta else None
    all_values = []
    for name, history in histories.items():
        x, v = _step_series(history, term, run=f"Run {name!r}")
        (line,) = ax.plot(*_moving_average(x, v, smoothing), lw=1.5, label=str(name))
        ax.plot(x, v, lw=0.8, alpha=0.25, color=line.get_color())
        all_values.append(v)
        if twin is not None:
            beta = [(s["step"], s["beta"]) for s in history["steps"] if "beta" in s]
            if beta:
                twin.plot(*np.array(beta).T, ls="--", lw=1.0, color=line.get_color())
    _set_scale(ax, np.concatenate(all_values), log_scale)
    ax.set_xlabel("step")
    ax.set_ylabel(term)
    ax.legend(fontsize="small")
    if twin is not None:
        twin.set_ylabel("β (dashed)")
    return fig


def kl_per_dimension(kl_per_dim, active=None, *, variances=None, threshold: float = 0.01,
                     dpi: int = DPI) -> Figure:
    """Bar chart of the KL of each latent dimension (nats, mean over the data), active units coloured.

    ``active``: bool (z,) mask (``evaluate_model(...)["active_mask"]``). ``variances``: the (z,)
    activities A_u = Cov_x(E_q[z_u|x]) (``["posterior_mean_variance"]``); if given they get a second
    panel (log scale) with the ``threshold`` line, and they define ``active`` when it is not given.
    """
    kl = torch.as_tensor(kl_per_dim).detach().cpu().double()
    if kl.ndim != 1:
        raise ValueError(f"kl_per_dim must have shape (z,), got {tuple(kl.shape)}.")
    if variances is not None:
        variances = torch.as_tensor(variances).detach().cpu().double()
        if variances.shape != kl.shape:
            raise ValueError(f"variances must have shape {tuple(kl.shape)}, got {tuple(variances.shape)}.")
        if active is None:
            active = variances > threshold
    if active is not None:
        active = torch.as_tensor(active).detach().cpu()
        if active.dtype != torch.bool or active.shape != kl.shape:
            raise ValueError(f"active must be a bool mask of shape {tuple(kl.shape)}.")
    dims = np.arange(kl.numel())
    panels = 1 if variances is None else 2
    fig = Figure(figsize=(float(np.clip(2.0 + 0.18 * kl.numel(), 4.5, MAX_WIDTH_IN)), 2.4 * panels), dpi=dpi,
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(panels, 1, sharex=True))
    mask = active.numpy() if active is not None else np.ones(kl.numel(), dtype=bool)
    for ax, values, ylabel in zip(axes, (kl, variances), ("KL (nats)", "Cov_x E_q[z_u|x]")):
        ax.bar(dims[mask], values.numpy()[mask], color="tab:blue",
               label=f"active (Cov_x E_q[z_u|x] > {threshold:g})" if active is not None else None)
        if active is not None:
            ax.bar(dims[~mask], values.numpy()[~mask], color="lightgray", label="inactive")
        ax.set_ylabel(ylabel)
    axes[0].set_title(f"KL per dimension: total {kl.sum().item():.2f} nats"
                      + (f", {int(mask.sum())}/{kl.numel()} active" if active is not None else ""))
    if active is not None:
        axes[0].legend(fontsize="small")
    if variances is not None:
        axes[1].set_yscale("log")
        axes[1].axhline(threshold, color="k", ls="--", lw=1.0)
    axes[-1].set_xlabel("latent dimension u")
    return fig


def latent_usage_per_run(results: dict, *, dpi: int = DPI) -> Figure:
    """How many latent dimensions each run uses: its KL per dimension, sorted (left, log scale), and its
    number of active units (right).

    results: {run name: metrics with ``"kl_per_dim"`` (z,) nats and ``"active_units"`` (an int)}, as
    ``evaluate.evaluate_model`` returns them. A collapsed dimension has KL ~ 0: q(z_u|x,c) is the prior.
    """
    if not results:
        raise ValueError("No runs to compare.")
    for name, metrics in results.items():
        if "kl_per_dim" not in metrics or "active_units" not in metrics:
            raise ValueError(f"Run {name!r} needs 'kl_per_dim' and 'active_units' (evaluate_model's output).")
        if torch.as_tensor(metrics["kl_per_dim"]).ndim != 1:
            raise ValueError(f"Run {name!r}: kl_per_dim must have shape (z,).")
    fig = Figure(figsize=(MAX_WIDTH_IN, 2.8), dpi=dpi, layout="constrained")
    kl_ax, bar_ax = fig.subplots(1, 2, width_ratios=(3, 2))
    names, counts, colors = list(results), [], []
    for name in names:
        kl = torch.as_tensor(results[name]["kl_per_dim"]).detach().cpu().double()
        sorted_kl = kl.sort(descending=True).values.clamp_min(1e-4).numpy()  # a log axis cannot show 0
        (line,) = kl_ax.plot(np.arange(1, len(sorted_kl) + 1), sorted_kl, "o-", ms=3, lw=1.2, label=str(name))
        counts.append(int(results[name]["active_units"]))
        colors.append(line.get_color())
    kl_ax.set_yscale("log")
    kl_ax.set_xlabel("latent dimensions, by KL (largest first)")
    kl_ax.set_ylabel("KL (nats, floor 1e-4)")
    kl_ax.set_title("KL per dimension")
    kl_ax.legend(fontsize="small")
    bars = bar_ax.bar(np.arange(len(names)), counts, color=colors)
    bar_ax.bar_label(bars)
    bar_ax.set_xticks(np.arange(len(names)), [str(n) for n in names], rotation=20, ha="right", fontsize="small")
    bar_ax.set_ylabel("active units")
    bar_ax.set_ylim(0, max(counts + [1]) * 1.15)
    bar_ax.set_title("active units (Cov_x E_q[z_u|x] > 0.01)")
    return fig


def samples_per_run(models: dict, n_per_class: int = 1, seed: int = 0, class_names=None, *,
                    num_classes: int | None = None, value_range=None, dpi: int = DPI) -> Figure:
    """One row of class-conditional samples per model, the same z ~ N(0, I) in every row.

    models: {run name: model with ``sample(y, generator)``, ``num_classes``, ``z_dim``}. Columns: classes
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
        y = torch.arange(num_classes, device=model_device(model)).repeat_interleave(n_per_class)
        with evaluation_mode(model):
            rows.append(model.sample(y, generator=torch.Generator().manual_seed(seed)).cpu())
    images = torch.cat(rows)
    columns = num_classes * n_per_class
    fig = _grid_figure([grid_array(images, columns, _model_range(first, value_range))],
                       title=f"the same z ~ N(0, I) for every run, {n_per_class} per class", dpi=dpi,
                       row_labels=[str(name) for name in models], tile_height=images.shape[-2])
    tile = images.shape[-1] + PADDING
    labels = [str(name) for name in (class_names or range(num_classes))]
    slanted = max(len(label) for label in labels) > 3      # long names would overlap side by side
    ax = fig.axes[0]
    ax.set_xticks([PADDING + tile * n_per_class * (c + 0.5) - PADDING / 2 for c in range(num_classes)], labels,
                  rotation=30 if slanted else 0, ha="right" if slanted else "center", fontsize="small")
    ax.tick_params(axis="x", length=0)
    return fig


def feature_maps(activations, layer_names=None, n_channels: int = 6, *, title: str | None = None,
                 dpi: int = DPI) -> Figure:
    """The feature maps of one image inside a network, one row per layer.

    Each row: the mean over the layer's channels, then the ``n_channels`` channels whose maps vary
    most over the image (largest spatial variance first), each tile on its own colour scale.
    activations: list of (C, H, W) or (1, C, H, W) tensors, e.g. ``VGGPerceptual.activations(x)``
    for one image x; layer_names: one label per layer (default "layer 0", ...), written with C x H x W.
    """
    maps = []
    for i, features in enumerate(activations):
        features = torch.as_tensor(features).detach().float().cpu()
        features = features[0] if features.ndim == 4 and features.shape[0] == 1 else features
        if features.ndim != 3:
            raise ValueError(f"activations[{i}] must be one image's features (C, H, W) or (1, C, H, W), "
                             f"got shape {tuple(torch.as_tensor(activations[i]).shape)}.")
        maps.append(features)
    if not maps:
        raise ValueError("activations is empty.")
    layer_names = [f"layer {i}" for i in range(len(maps))] if layer_names is None else list(layer_names)
    if len(layer_names) != len(maps):
        raise ValueError(f"Got {len(layer_names)} layer names for {len(maps)} layers.")
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}.")
    columns = 1 + min(n_channels, max(m.shape[0] for m in maps))
    fig = Figure(figsize=(min(MAX_WIDTH_IN, 0.5 + 1.15 * columns), 0.3 + 1.25 * len(maps)), dpi=dpi,
                 layout="constrained")
    axes = fig.subplots(len(maps), columns, squeeze=False)
    for row, (features, name) in zip(axes, zip(maps, layer_names)):
        order = features.flatten(1).var(dim=1).argsort(descending=True)[:columns - 1].tolist()
        tiles = [(features.mean(dim=0), "mean")] + [(features[c], f"ch {c}") for c in order]
        for ax in row:
            ax.set_axis_off()
        for ax, (tile, label) in zip(row, tiles):
            ax.set_axis_on()
            ax.imshow(tile.numpy(), cmap="viridis", interpolation="nearest")
            ax.set_title(label, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        c, h, w = features.shape
        row[0].set_ylabel(f"{name}\n{c}x{h}x{w}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def mixing_influence_curves(influences: dict, layer_resolutions=None, *, log_scale: bool = False,
                            dpi: int = DPI) -> Figure:
    """One curve per model of ``evaluate.mixing_influence``: how much of a style-mixed image the
    row's (coarse) code decides, against the crossover k = 0 .. L.

    influences: {name: (L + 1,) values}. ``layer_resolutions`` (L,), e.g. ``synthesis.layer_resolutions``,
    labels each step k -> k + 1 with the resolution of the layer it hands over. A steep rise between
    two crossovers means the layers in between control much of the picture. ``log_scale``: a symlog
    y axis (linear below 1e-3), to see small shares next to 1.
    """
    if not influences:
        raise ValueError("No influence curves to draw.")
    curves = {name: torch.as_tensor(v).detach().cpu().double().numpy() for name, v in influences.items()}
    lengths = {len(v) for v in curves.values()}
    if len(lengths) != 1 or any(v.ndim != 1 for v in curves.values()):
        raise ValueError("Every influence curve must have the same shape (L + 1,) (one value per crossover).")
    num_layers = lengths.pop() - 1
    if layer_resolutions is not None and len(layer_resolutions) != num_layers:
        raise ValueError(f"Got {len(layer_resolutions)} layer resolutions for {num_layers} style layers.")
    fig = Figure(figsize=(5.5, 3.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(np.arange(num_layers + 1), values, "o-", ms=4, label=str(name))
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    if log_scale:
        ax.set_yscale("symlog", linthresh=1e-3)
        if min(v.min() for v in curves.values()) >= 0:
            ax.set_ylim(bottom=0.0)
    ax.set_xticks(np.arange(num_layers + 1))
    ax.set_xlabel("crossover k: layers < k from the row's code")
    ax.set_ylabel("share of row - column difference")
    if layer_resolutions is not None:
        top = ax.secondary_xaxis("top")
        top.set_xticks(np.arange(num_layers) + 0.5, [str(r) for r in layer_resolutions], fontsize="small")
        top.set_xlabel("resolution of layer k (px)", fontsize="small")
    ax.legend(fontsize="small")
    return fig

