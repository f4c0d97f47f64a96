"""Figures for exploring trained models: paths, traversals, class swaps, truncation, and the judges' scores.

Like :mod:`vae_lib.viz` (whose grids, paths and layout these reuse), every function returns a
``matplotlib.figure.Figure`` built without pyplot, so tests draw them headless.

* :func:`interpolation_paths`: linear against spherical interpolation, with the norm of z on the way.
* :func:`latent_traversal`: one latent dimension at a time, the others held fixed.
* :func:`class_swap`: the same z decoded with every class (CVAE): what z carries and what c carries.
* :func:`truncation_sweep`: the same z at several truncation psi (StyleGAN-VAE).
* :func:`conditional_accuracy_bars`, :func:`factor_transfer_curves`: the judges' numbers
  (:mod:`vae_lib.metrics`) as pictures.

Models: a CVAE (``decode(z, y)``, ``num_classes``) or the StyleGAN-VAE (``decode(z, noise_mode)``,
``mapping``, ``synthesis``). StyleGAN images are decoded with constant noise, so a figure depends
only on its codes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from vae_lib.evaluate import evaluation_mode, model_device
from vae_lib.metrics import COARSE_FACTORS, FINE_FACTORS, decode_truncated, is_conditional
from vae_lib.viz import DPI, PADDING, _grid_figure, grid_array, interpolate_latents

TRAVERSAL_VALUES = tuple(np.linspace(-3.0, 3.0, 7).tolist())
TRUNCATION_PSIS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


# ------------------------------------------------------------------------------------------- decoding
def decode_latents(model, z: torch.Tensor, label=None, *, noise_mode: str = "const") -> torch.Tensor:
    """Images for codes z (B, z_dim) on the CPU, in the model's data range, no gradients.

    A CVAE needs ``label``: one int for every row, or a (B,) tensor. The StyleGAN-VAE ignores it
    and decodes with ``noise_mode`` ("const": the same image for the same z every time).
    """
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != model.z_dim:
        raise ValueError(f"z must have shape (B, {model.z_dim}) or ({model.z_dim},), got {tuple(z.shape)}.")
    device = model_device(model)
    with evaluation_mode(model):
        if is_conditional(model):
            if label is None:
                raise ValueError("A class-conditional model needs a label (an int, or one per row of z).")
            y = torch.as_tensor(label, dtype=torch.long).to(device)
            y = y.expand(z.shape[0]) if y.ndim == 0 else y
            return model.decode(z.to(device), y).cpu()
        return model.decode(z.to(device), noise_mode=noise_mode).cpu()


def _range(model, value_range):
    return value_range if value_range is not None else getattr(model, "data_range", (0.0, 1.0))


def _latent(model, z, seed: int) -> torch.Tensor:
    """One code (z_dim,): the given one, or z ~ N(0, I) from ``seed``."""
    if z is None:
        return torch.randn(model.z_dim, generator=torch.Generator().manual_seed(seed))
    z = torch.as_tensor(z, dtype=torch.float32).reshape(-1)
    if z.numel() != model.z_dim:
        raise ValueError(f"z must have {model.z_dim} entries, got {z.numel()}.")
    return z


def _column_labels(fig: Figure, labels, tile_width: int) -> None:
    """Write one label under each column of the first grid (the grid helper labels only rows)."""
    ax = fig.axes[0]
    tile = tile_width + PADDING
    ax.set_xticks([PADDING + tile * j + tile_width / 2 for j in range(len(labels))], [str(s) for s in labels])
    ax.tick_params(axis="x", length=0)


# -------------------------------------------------------------------------------------------- paths
def interpolation_paths(model, z_a=None, z_b=None, steps: int = 9, *, label=None, seed: int = 0,
                        value_range=None, dpi: int = DPI) -> Figure:
    """Linear and spherical paths from z_a to z_b ((z_dim,) each; default two N(0, I) draws from
    ``seed``), decoded (a CVAE at class ``label``), plus the norm ||z_t|| along each path.

    Samples of N(0, I) in d dimensions have norms close to sqrt(d); the midpoint of a straight line
    between two of them has norm about sqrt(d / 2), a region the prior almost never produces, which
    is why its images can look washed out. The spherical path (slerp) keeps the norm up.
    """
    z_a, z_b = _latent(model, z_a, seed), _latent(model, z_b, seed + 1)
    paths = {kind: interpolate_latents(z_a, z_b, steps, spherical=kind == "spherical")
             for kind in ("linear", "spherical")}
    images = torch.cat([decode_latents(model, path, label) for path in paths.values()])
    array = grid_array(images, steps, _range(model, value_range))
    height, width = array.shape[:2]
    image_width = float(np.clip(1.5 * width / dpi, 3.0, 7.0))
    fig = Figure(figsize=(image_width + 1.0, image_width * height / width + 2.2), dpi=dpi, layout="constrained")
    grid, norms = fig.subplots(2, 1, height_ratios=(image_width * height / width, 1.6))
    grid.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    tile = images.shape[-2] + PADDING
    grid.set_yticks([PADDING + tile * i + images.shape[-2] / 2 for i in range(len(paths))], list(paths))
    grid.set_xticks([])
    grid.tick_params(axis="y", length=0)
    grid.set_title("z_a -> z_b" + (f" (class {label})" if label is not None else ""))
    t = np.linspace(0.0, 1.0, steps)
    for kind, path in paths.items():
        norms.plot(t, path.norm(dim=1).numpy(), "o-", ms=3, label=kind)
    norms.axhline(math.sqrt(model.z_dim), color="gray", ls=":", lw=1, label="sqrt(d)")
    norms.set_xlabel("t")
    norms.set_ylabel("||z_t||")
    norms.legend(fontsize="small", ncols=3)
    return fig


def latent_traversal(model, z=None, *, dims=None, values=TRAVERSAL_VALUES, label=None, seed: int = 0,
                     value_range=None, dpi: int = DPI) -> Figure:
    """Move one latent dimension at a time through ``values``, the others held at z.

    z (z_dim,) defaults to zeros, the prior's mean, so each row shows what one dimension does
    alone. ``dims``: which dimensions (default the first min(8, z_dim)); e.g. the active units of
    ``evaluate_model``, whose KL is largest. One row per dimension, one column per value; a CVAE
    is decoded at class ``label``. ``seed`` is used when ``z="random"``: z ~ N(0, I).
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
    array = grid_array(images, len(values), _range(model, value_range))
    fig = _grid_figure([array], row_labels=[f"z[{d}]" for d in dims], tile_height=images.shape[-2], dpi=dpi,
                       title="one dimension at a time" + (f" (class {label})" if label is not None else ""),
                       xlabel="value of that dimension")
    _column_labels(fig, [f"{v:g}" for v in values.tolist()], images.shape[-1])
    return fig


def class_swap(model, z=None, n: int = 6, *, classes=None, class_names=None, seed: int = 0,
               value_range=None, dpi: int = DPI) -> Figure:
    """The same codes decoded with every class: row i is z_i, column j is class j (CVAE only).

    z (n, z_dim) defaults to n draws of N(0, I) from ``seed``. If the model separated the two, a
    row keeps one style (slant, thickness, ...) while the class changes along it.
    """
    if not is_conditional(model):
        raise ValueError("class_swap needs a class-conditional model (with num_classes).")
    classes = list(range(model.num_classes)) if classes is None else [int(c) for c in classes]
    if z is None:
        z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(seed))
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    rows = z.shape[0]
    codes = z.repeat_interleave(len(classes), 0)
    labels = torch.tensor(classes).repeat(rows)
    images = decode_latents(model, codes, labels)
    array = grid_array(images, len(classes), _range(model, value_range))
    fig = _grid_figure([array], row_labels=[f"z{i}" for i in range(rows)], tile_height=images.shape[-2],
                       title="same z (row), another class (column)", dpi=dpi)
    _column_labels(fig, [class_names[c] if class_names is not None else c for c in classes], images.shape[-1])
    if class_names is not None:     # names are longer than the tiles are wide
        for text in fig.axes[0].get_xticklabels():
            text.set_rotation(45)
    return fig


def truncation_sweep(model, psis=TRUNCATION_PSIS, n: int = 8, *, seed: int = 0, value_range=None,
                     dpi: int = DPI) -> Figure:
    """The same n codes z ~ N(0, I) (from ``seed``) at each truncation psi (StyleGAN-VAE): one row per psi.

    w = w_avg + psi (mapping(z) - w_avg): psi = 1 is the model's own sample, psi = 0 the
    "average" image for every z. Lower psi trades variety for typical-looking images.
    """
    if not hasattr(model, "mapping"):
        raise ValueError("truncation_sweep needs a StyleGAN-VAE (a model with a mapping network).")
    psis = [float(p) for p in psis]
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(seed))
    device = model_device(model)
    with evaluation_mode(model):
        images = torch.cat([decode_truncated(model, z.to(device), psi).cpu() for psi in psis])
    array = grid_array(images, n, _range(model, value_range))
    return _grid_figure([array], row_labels=[f"ψ = {p:g}" for p in psis], tile_height=images.shape[-2],
                        title="truncation: w_avg + ψ (w - w_avg)", dpi=dpi)


# ---------------------------------------------------------------------------------------- scores
def conditional_accuracy_bars(result: dict, class_names=None, *, dpi: int = DPI) -> Figure:
    """Left: the share of samples per class that the judge recognises (``conditional_accuracy``
    output), with the overall share and chance; right: the confusion matrix (asked -> judged)."""
    per_class = np.asarray(result["per_class"], dtype=float)
    confusion = np.asarray(result["confusion"], dtype=float)
    classes = len(per_class)
    if confusion.shape != (classes, classes):
        raise ValueError(f"confusion must be ({classes}, {classes}), got {confusion.shape}.")
    names = [str(c) for c in (class_names if class_names is not None else range(classes))]
    if len(names) != classes:
        raise ValueError(f"Got {len(names)} class names for {classes} classes.")
    fig = Figure(figsize=(7.5, 3.0), dpi=dpi, layout="constrained")
    bars, matrix = fig.subplots(1, 2, width_ratios=(1.4, 1))
    bars.bar(np.arange(classes), per_class, color="tab:blue")
    bars.axhline(result["overall"], color="k", lw=1.2, label=f"overall {result['overall']:.1%}")
    bars.axhline(1 / classes, color="gray", ls=":", lw=1.2, label=f"chance {1 / classes:.0%}")
    bars.set_xticks(np.arange(classes), names, rotation=45 if class_names is not None else 0, ha="right"
                    if class_names is not None else "center", fontsize="small")
    bars.set_ylim(0, 1)
    bars.set_ylabel("judged as asked")
    bars.legend(fontsize="small", loc="lower right")
    bars.set_title(f"{result['n_per_class']} samples per class")
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    matrix.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    matrix.set_xlabel("judged")
    matrix.set_ylabel("asked")
    matrix.set_xticks(np.arange(classes))
    matrix.set_yticks(np.arange(classes))
    matrix.tick_params(labelsize="x-small")
    return fig


def factor_transfer_curves(table: dict, *, coarse=COARSE_FACTORS, fine=FINE_FACTORS, dpi: int = DPI) -> Figure:
    """``factor_transfer`` as lines: for each factor, the share of mixed images that take it from
    source 1 (the code of style layers [0, k)) against the crossover k.

    Coarse factors (solid) should come from source 1 already at small k, fine ones (dashed) only at
    large k; the gap between them is what the early and late layers control. Black: the share of
    images whose coarse factors all follow source 1 and fine ones all follow source 2.
    """
    if not table:
        raise ValueError("The table is empty.")
    ks = sorted(table)
    factors = list(next(iter(table.values()))["from_source1"])
    fig = Figure(figsize=(6.0, 3.4), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    solid = iter(["tab:blue", "tab:cyan", "tab:purple", "tab:green", "tab:olive", "tab:brown"])
    dashed = iter(["tab:red", "tab:orange", "tab:pink", "tab:brown"])
    for f in factors:
        y = [table[k]["from_source1"][f] for k in ks]
        if f in coarse:
            style = dict(ls="-", color=next(solid, None))
        elif f in fine:
            style = dict(ls="--", color=next(dashed, None))
        else:
            style = dict(ls=":", color="gray")
        ax.plot(ks, y, marker="o", ms=3, lw=1.3, label=f, **style)
    ax.plot(ks, [table[k]["as_expected"] for k in ks], color="k", lw=2.2, label="coarse from 1\n& fine from 2")
    ax.set_xlabel("crossover k: style layers [0, k) from source 1, [k, L) from source 2")
    ax.set_ylabel("share taking the factor from source 1")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(ks)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("which style layers carry which factor")
    return fig


__all__ = ["class_swap", "conditional_accuracy_bars", "decode_latents", "factor_transfer_curves",
           "interpolation_paths", "latent_traversal", "truncation_sweep"]
