"""Figures of the latent space: paths between codes, one dimension at a time, the same z with every
class, and how many dimensions a model uses (KL per dimension, active units).

* :func:`latent_interpolation`: a path between two images' encoder means (or two codes), decoded.
* :func:`interpolation_paths`: linear against spherical interpolation, with the norm of z on the way.
* :func:`latent_traversal`: one latent dimension at a time, the others held fixed.
* :func:`class_swap`: the same z decoded with every class (CVAE): what z carries and what c carries.
* :func:`kl_per_dimension`, :func:`latent_usage_per_run`: which dimensions carry information.
* :func:`latent_space`: the encoder means of a test set, coloured by class (PCA when z_dim > 2, :func:`project_2d`).

Models: a CVAE (``decode(z, y)``, ``num_classes``) or the StyleGAN-VAE (``decode(z, noise_mode)``).
StyleGAN images are decoded with constant noise, so a figure depends only on its codes
(``vae_lib.models.sampling.decode_latents``, re-exported here and as ``viz.decode_latents``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from vae_lib.models.sampling import decode_latents, prior_codes
from vae_lib.utils import evaluation_mode, model_device
from vae_lib.viz.grids import (DPI, MAX_WIDTH_IN, draw_array, fit_tiles, grid_array, grid_figure, label_columns,
                               tile_centres, value_range_of)

TRAVERSAL_VALUES = tuple(np.linspace(-3.0, 3.0, 7).tolist())


def _latent(model, z, seed: int) -> torch.Tensor:
    """One code (z_dim,): the given one, or z ~ N(0, I) from ``seed``."""
    if z is None:
        return prior_codes(1, model.z_dim, seed=seed)[0]
    z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
    if z.numel() != model.z_dim:
        raise ValueError(f"z must have {model.z_dim} entries, got {z.numel()}.")
    return z


# -------------------------------------------------------------------------------------------- paths
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


def class_label(c: int, class_names=None) -> str:
    """The name of class ``c`` (``class_names[c]``), or "class c" when no names are given."""
    return str(class_names[int(c)]) if class_names is not None else f"class {int(c)}"


def latent_interpolation(model, x_a=None, y_a=None, x_b=None, y_b=None, steps: int = 10, *,
                         z_a=None, z_b=None, spherical: bool = False, class_names=None, value_range=None,
                         dpi: int = DPI) -> Figure:
    """Decode a straight (or spherical) path in latent space between two images or two latent codes.

    Give images x_a, x_b ((C, H, W) or (1, C, H, W)): the path runs between their encoder means.
    Or give z_a, z_b ((z,) or (1, z)) instead. For a class-conditional model give labels y_a (and y_b,
    default y_a): the path is decoded once with each distinct label, one row per label, so the row
    shows the style changing at a fixed class; ``class_names`` name the rows. With no labels,
    ``model.encode(x)``/``model.decode(z)`` are called without them (the StyleGAN-VAE).
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
    array = grid_array(images, steps, value_range_of(model, value_range))
    source = "encoder means" if from_images else "latent codes"
    return grid_figure([array], title=f"{'spherical' if spherical else 'linear'} path between {source}",
                       row_labels=[class_label(c, class_names) for c in labels] if labels else None,
                       tile_height=images.shape[-2], tile_width=images.shape[-1], dpi=dpi)


def interpolation_paths(model, z_a=None, z_b=None, steps: int = 9, *, label=None, seed: int = 0,
                        class_names=None, value_range=None, dpi: int = DPI) -> Figure:
    """Linear and spherical paths from z_a to z_b ((z_dim,) each; default two N(0, I) draws from
    ``seed``), decoded (a CVAE at class ``label``, named by ``class_names``), plus the norm ||z_t||
    along each path.

    Samples of N(0, I) in d dimensions have norms close to sqrt(d); the midpoint of a straight line
    between two of them has norm about sqrt(d / 2), a region the prior almost never produces, which
    is why its images can look washed out. The spherical path (slerp) keeps the norm up.
    """
    z_a, z_b = _latent(model, z_a, seed), _latent(model, z_b, seed + 1)
    paths = {kind: interpolate_latents(z_a, z_b, steps, spherical=kind == "spherical")
             for kind in ("linear", "spherical")}
    images = torch.cat([decode_latents(model, path, label) for path in paths.values()])
    array = grid_array(images, steps, value_range_of(model, value_range))
    height, width = array.shape[:2]
    image_width = float(np.clip(1.5 * width / dpi, 3.0, MAX_WIDTH_IN - 1.0))
    fig = Figure(figsize=(image_width + 1.0, image_width * height / width + 2.2), dpi=dpi, layout="constrained")
    grid, norms = fig.subplots(2, 1, height_ratios=(image_width * height / width, 1.6))
    draw_array(grid, array)
    grid.set_yticks(tile_centres(len(paths), images.shape[-2]), list(paths))
    grid.set_xticks([])
    grid.tick_params(axis="y", length=0)
    grid.set_title("z_a -> z_b" + (f" ({class_label(label, class_names)})" if label is not None else ""))
    t = np.linspace(0.0, 1.0, steps)
    for kind, path in paths.items():
        norms.plot(t, path.norm(dim=1).numpy(), "o-", ms=3, label=kind)
    norms.axhline(math.sqrt(model.z_dim), color="gray", ls=":", lw=1, label="sqrt(d)")
    norms.set_xlabel("t")
    norms.set_ylabel("||z_t||")
    norms.legend(fontsize="small", ncols=3)
    return fit_tiles(fig, images.shape[-1], grid)


def latent_traversal(model, z=None, *, dims=None, values=TRAVERSAL_VALUES, label=None, seed: int = 0,
                     class_names=None, value_range=None, dpi: int = DPI) -> Figure:
    """Move one latent dimension at a time through ``values``, the others held at z.

    z (z_dim,) defaults to zeros, the prior's mean, so each row shows what one dimension does
    alone. ``dims``: which dimensions (default the first min(8, z_dim)); e.g. the active units of
    ``evaluate_model``, whose KL is largest. One row per dimension, one column per value; a CVAE
    is decoded at class ``label`` (named in the title by ``class_names``). ``seed`` is used when
    ``z="random"``: z ~ N(0, I).
    """
    if isinstance(z, str):
        if z != "random":
            raise ValueError(f"z must be a code, None (zeros) or 'random', got {z!r}.")
        z = _latent(model, None, seed)
    z = torch.zeros(model.z_dim) if z is None else _latent(model, z, seed)
    dims = list(range(min(8, model.z_dim))) if dims is None else [int(d) for d in dims]
    if not dims or any(not 0 <= d < model.z_dim for d in dims):
        raise ValueError(f"dims must be a non-empty list of indices in [0, {model.z_dim}), got {dims}.")
    values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    codes = z.repeat(len(dims) * len(values), 1)
    for i, d in enumerate(dims):
        codes[i * len(values):(i + 1) * len(values), d] = values
    images = decode_latents(model, codes, label)
    array = grid_array(images, len(values), value_range_of(model, value_range))
    fig = grid_figure([array], row_labels=[f"z[{d}]" for d in dims], tile_height=images.shape[-2], dpi=dpi,
                      title="one dimension at a time"
                      + (f" ({class_label(label, class_names)})" if label is not None else ""),
                      xlabel="value of that dimension")
    label_columns(fig, [f"{v:g}" for v in values.tolist()], images.shape[-1])
    return fit_tiles(fig, images.shape[-1])


def class_swap(model, z=None, n: int = 6, *, classes=None, class_names=None, seed: int = 0,
               value_range=None, dpi: int = DPI) -> Figure:
    """The same codes decoded with every class: row i is z_i, column j is class j (CVAE only).

    z (n, z_dim) defaults to n draws of N(0, I) from ``seed``. If the model separated the two, a
    row keeps one style (slant, thickness, ...) while the class changes along it.
    """
    if not model.conditional:
        raise ValueError("class_swap needs a class-conditional model (model.conditional).")
    classes = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
    if z is None:
        z = prior_codes(n, model.z_dim, seed=seed)
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    rows = z.shape[0]
    codes = z.repeat_interleave(len(classes), 0)
    labels = torch.tensor(classes).repeat(rows)
    images = decode_latents(model, codes, labels)
    array = grid_array(images, len(classes), value_range_of(model, value_range))
    fig = grid_figure([array], row_labels=[f"z{i}" for i in range(rows)], tile_height=images.shape[-2],
                      title="same z (row), another class (column)", dpi=dpi)
    label_columns(fig, [class_names[c] if class_names is not None else c for c in classes], images.shape[-1])
    if class_names is not None:     # names are longer than the tiles are wide
        for text in fig.axes[0].get_xticklabels():
            text.set_rotation(45)
    return fit_tiles(fig, images.shape[-1])


# ------------------------------------------------------------------------------------ latent usage
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


# ------------------------------------------------------------------------------------ latent space
def project_2d(points: torch.Tensor) -> tuple[torch.Tensor, list[float], list[str]]:
    """(N, d) -> the points on their first two principal axes (N, 2), the share of the total variance each
    axis holds, and the axis names. For d <= 2 the coordinates themselves (a 1-d code gets a zero second axis).

    PCA by the SVD of the centred points (``torch.linalg.svd``, float64); each axis's sign is fixed so that
    its largest loading is positive, which makes the picture the same on every run.
    """
    points = torch.as_tensor(points).detach().double().cpu()
    if points.ndim != 2 or points.shape[0] < 2:
        raise ValueError(f"points must be (N, d) with N >= 2, got {tuple(points.shape)}.")
    d = points.shape[1]
    variance = points.var(0)
    if d <= 2:
        shares = (variance / variance.sum().clamp_min(1e-300)).tolist() + [0.0] * (2 - d)
        coords = torch.cat([points, points.new_zeros(len(points), 2 - d)], 1)
        return coords, shares, [f"z[{i}]" for i in range(2)]
    centred = points - points.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    shares = (singular[:2] ** 2 / (singular ** 2).sum().clamp_min(1e-300)).tolist()
    return centred @ axes.T, shares, ["PC 1", "PC 2"]


def latent_space(model, images: torch.Tensor, labels: torch.Tensor, *, class_names=None, batch_size: int = 500,
                 dpi: int = DPI) -> Figure:
    """The encoder means E_q[z|x] of ``images`` (a test set), one dot per image, coloured by its class.

    A CVAE encodes with the labels, ``model.encode(x, y)``; a model without labels (the StyleGAN-VAE)
    with ``model.encode(x)``, the labels only colouring the dots. With z_dim = 2 the means are drawn as they
    are, otherwise projected on their first two principal axes (:func:`project_2d`; the axis labels give the
    share of the variance each holds). Dots of one class that gather apart from the others mean that z
    carries the class; for a CVAE, whose decoder gets the label, z need not.
    """
    images, labels = torch.as_tensor(images), torch.as_tensor(labels).long()
    if images.ndim != 4 or labels.shape != (len(images),):
        raise ValueError(f"images must be (N, C, H, W) with one label each, got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}.")
    num_classes = int(labels.max()) + 1
    names = [str(c) for c in range(num_classes)] if class_names is None else [str(c) for c in class_names]
    if len(names) < num_classes:
        raise ValueError(f"Got {len(names)} class names for labels up to {num_classes - 1}.")
    device = model_device(model)
    means = []
    with evaluation_mode(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            if getattr(model, "conditional", False):
                means.append(model.encode(x, labels[start:start + batch_size].to(device))[0].cpu())
            else:
                means.append(model.encode(x)[0].cpu())
    coords, shares, axis_names = project_2d(torch.cat(means))
    fig = Figure(figsize=(6.8, 5.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    colours = matplotlib_colours(len(names))
    for c, name in enumerate(names):
        chosen = labels == c
        if chosen.any():
            ax.scatter(*coords[chosen].T.numpy(), s=4, alpha=0.5, color=colours[c], label=name, rasterized=True)
    ax.set_xlabel(f"{axis_names[0]} ({shares[0]:.0%} of the variance)")
    ax.set_ylabel(f"{axis_names[1]} ({shares[1]:.0%} of the variance)")
    how = "the means themselves" if model.z_dim <= 2 else "their first two principal axes"
    ax.set_title(f"encoder means of {len(images)} images, z_dim = {model.z_dim}: {how}", fontsize="medium")
    ax.legend(fontsize="small", markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig


def matplotlib_colours(count: int) -> list:
    """``count`` distinct colours: matplotlib's tab10, or tab20 for up to 20 classes, else viridis."""
    from matplotlib import colormaps
    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["viridis"](i / (count - 1)) for i in range(count)]
