"""Figures of the StyleGAN machinery (notebooks 04 to 06): the mapping network's z and w, truncation,
noise, the synthesis resolution by resolution, and style mixing.

* :func:`latent_statistics`, :func:`mapping_layer_scales`: what the mapping network does to z.
* :func:`truncation_grid`: the same z at several truncation psi; :func:`truncation_fid_curves`: their FID.
* :func:`noise_variation`, :func:`synthesis_ladder`: the noise injections; the synthesis block by block.
* :func:`layer_swap_grid`, :func:`style_mixing_grid`: what the styles of each layer control.
* :func:`mixing_influence_curves`: ``metrics.mixing_influence`` against the crossover.

Images are in the StyleGAN-VAE's range, (-1, 1), unless ``value_range`` says otherwise.
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from vae_lib.models.sampling import TRUNCATION_PSIS
from vae_lib.nn.style import MappingNetwork, mix_styles
from vae_lib.utils import evaluation_mode, model_device
from vae_lib.viz.grids import DPI, check_value_range, draw_array, grid_array, grid_figure, value_range_of

IMAGE_RANGE = (-1.0, 1.0)


# ------------------------------------------------------------------------------------------ mapping
def latent_statistics(z: torch.Tensor, w: torch.Tensor, num_dims: int = 16, *, dpi: int = DPI) -> Figure:
    """z (N, z_dim) against w (N, w_dim): histograms of all their values, and the absolute
    correlation between their first ``num_dims`` coordinates (off-diagonal mean in the title)."""
    fig = Figure(figsize=(7.5, 6.2), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 2)
    for col, (name, codes) in enumerate((("z", z), ("w", w))):
        codes = _check_codes(codes, name)
        values = codes.flatten().numpy()
        axes[0, col].hist(values, bins=60, color="C0" if col == 0 else "C1")
        axes[0, col].set_title(f"values of {name}: mean {values.mean():.3g}, std {values.std():.3g}", fontsize=9)
        corr = np.abs(np.corrcoef(codes[:, :num_dims].numpy(), rowvar=False))
        off_diagonal = corr[~np.eye(len(corr), dtype=bool)].mean()
        image = axes[1, col].imshow(corr, vmin=0, vmax=1, cmap="magma")
        axes[1, col].set_title(f"|correlation| of {name}'s first {len(corr)} coordinates\n"
                               f"(off-diagonal mean {off_diagonal:.2f})", fontsize=9)
        axes[1, col].set_xlabel("coordinate")
    fig.colorbar(image, ax=axes[1, :], shrink=0.8)
    return fig


def mapping_layer_scales(mapping: MappingNetwork, z: torch.Tensor, *, dpi: int = DPI) -> Figure:
    """Standard deviation of the activations after PixelNorm and after each Linear + LeakyReLU, log scale."""
    z = _check_codes(z, "z")
    stds, labels = [z.std().item()], ["z"]
    with torch.no_grad():
        h = z.to(mapping.w_avg.device)
        for module in mapping.net:
            h = module(h)
            if not isinstance(module, nn.Linear):    # after PixelNorm and after each activation
                stds.append(h.std().item())
                labels.append("PixelNorm" if len(labels) == 1 else f"layer {len(labels) - 1}")
    fig = Figure(figsize=(6.5, 3.0), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(range(len(stds)), stds, "o-")
    ax.set_xticks(range(len(stds)), labels, rotation=45, fontsize=8)
    ax.set_ylabel("std of the activations")
    ax.set_title("scale of the signal through the mapping network", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _check_codes(codes: torch.Tensor, name: str) -> torch.Tensor:
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"{name} must be (N, dim) with N >= 2 codes, got {tuple(codes.shape)}.")
    return codes.detach().float().cpu()


def truncation_grid(model, psis=TRUNCATION_PSIS, n: int = 8, *, seed: int = 0, noise_mode: str | None = "const",
                    value_range=None, dpi: int = DPI) -> Figure:
    """The same n codes z ~ N(0, I) (from ``seed``) at each truncation psi (StyleGAN-VAE): one row per psi.

    w = w_avg + psi (mapping(z) - w_avg): psi = 1 is the model's own sample, psi = 0 the "average"
    image for every z. Lower psi trades variety for typical-looking images. Each row is
    ``model.sample(n, truncation_psi=psi, generator=<seed>, noise_mode=noise_mode)``, so every row
    starts from the same z; "const" noise makes the figure depend only on z and psi.
    """
    if not getattr(model, "num_style_layers", 0) > 0:
        raise ValueError("truncation_grid needs a StyleGAN-VAE (a model with style layers, num_style_layers > 0).")
    psis = [float(p) for p in psis]
    with evaluation_mode(model):
        images = torch.cat([model.sample(n, truncation_psi=psi, generator=torch.Generator().manual_seed(seed),
                                         noise_mode=noise_mode).cpu() for psi in psis])
    array = grid_array(images, n, value_range_of(model, value_range))
    return grid_figure([array], row_labels=[f"ψ = {p:g}" for p in psis], tile_height=images.shape[-2],
                       tile_width=images.shape[-1], title="truncation: w_avg + ψ (w - w_avg)", dpi=dpi)


def truncation_fid_curves(curves: dict, *, references: dict | None = None, dpi: int = DPI) -> Figure:
    """FID against the truncation psi, one curve per set of codes (``metrics.truncation_fids``), log y axis.

    curves: {label: {psi: FID}}; references: {label: FID} drawn as grey dotted lines (e.g. the model's
    reconstructions, real images). psi runs from 1 (no truncation) on the left to 0 (every code the average).
    """
    if not curves:
        raise ValueError("No FID curves to draw.")
    fig = Figure(figsize=(5.5, 3.2), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for label, points in curves.items():
        psis = sorted(points, reverse=True)
        ax.plot(psis, [points[p] for p in psis], "o-", ms=4, label=str(label))
    for label, value in (references or {}).items():
        ax.axhline(value, color="grey", ls=":", lw=1.0)
        ax.annotate(str(label), (0.99, value), xycoords=("axes fraction", "data"), ha="right", va="bottom",
                    fontsize="x-small", color="grey")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("truncation ψ (1: none, 0: every code the average w)")
    ax.set_ylabel("FID, judge features (lower is better)")
    ax.legend(fontsize="x-small")
    return fig


# ---------------------------------------------------------------------------------------- synthesis
def noise_variation(images: torch.Tensor, num_shown: int = 3, *, value_range=IMAGE_RANGE,
                    dpi: int = DPI) -> Figure:
    """images (N, 3, H, W) decoded from one w with N noise draws: a few of them, then the per-pixel
    standard deviation over the draws (averaged over the colour channels), in the units of ``value_range``."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"images must be (N, C, H, W) with N >= 2 noise draws, got {tuple(images.shape)}.")
    images = images.detach().float().cpu()
    std = images.std(dim=0).mean(dim=0).numpy()
    num_shown = min(num_shown, images.shape[0])
    fig = Figure(figsize=(2.0 * (num_shown + 1) + 0.6, 2.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, num_shown + 1)
    for i in range(num_shown):
        draw_array(axes[i], grid_array(images[i:i + 1], 1, value_range, padding=0))
        axes[i].set_title(f"noise draw {i + 1}", fontsize=9)
    shown = axes[-1].imshow(std, cmap="viridis", vmin=0)
    axes[-1].set_title(f"std over {images.shape[0]} draws\n(max {std.max():.3g})", fontsize=9)
    fig.colorbar(shown, ax=axes[-1], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    return fig


def synthesis_ladder(block_outputs: list[torch.Tensor], image: torch.Tensor, *, value_range=IMAGE_RANGE,
                     dpi: int = DPI) -> Figure:
    """The synthesis of one image, resolution by resolution: mean |activation| over channels of each
    block's output (the first image of the batch; each with its colour bar), then the image itself."""
    if not block_outputs:
        raise ValueError("block_outputs is empty: pass Synthesis.block_outputs(ws).")
    fig = Figure(figsize=(2.0 * (len(block_outputs) + 1), 2.2), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(block_outputs) + 1)
    for ax, features in zip(axes, block_outputs):
        shown = ax.imshow(features[0].detach().abs().mean(dim=0).cpu().numpy(), cmap="viridis")
        ax.set_title(f"{features.shape[-1]}x{features.shape[-1]}, {features.shape[1]} ch", fontsize=8)
        fig.colorbar(shown, ax=ax, shrink=0.7, pad=0.02).ax.tick_params(labelsize=6)   # mean |activation|
    draw_array(axes[-1], grid_array(image[:1], 1, value_range, padding=0))
    axes[-1].set_title("ToRGB -> tanh", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    return fig


# ------------------------------------------------------------------------------------- style mixing
def layer_swap_grid(model, z: torch.Tensor, z_other: torch.Tensor, *, noise_mode: str = "const",
                    value_range=None, dpi: int = DPI) -> Figure:
    """What each resolution's styles control: row "z" decodes z; the row of resolution r replaces the
    two codes of that block by z_other's (``model.styles``); the last row decodes z_other. z, z_other (N, z_dim)."""
    synthesis = model.synthesis
    device = model_device(model)
    with evaluation_mode(model):
        ws = model.styles(z.to(device))
        ws_other = model.styles(z_other.to(device))
        rows, labels = [synthesis(ws, noise_mode)], ["z"]
        for i, res in enumerate(synthesis.resolutions):
            # layers [2i, 2i+2) from ws_other: two crossovers
            swapped = mix_styles(mix_styles(ws, ws_other, 2 * i), ws, 2 * i + 2)
            rows.append(synthesis(swapped, noise_mode))
            labels.append(f"{res}x{res} from z'")
        rows.append(synthesis(ws_other, noise_mode))
        labels.append("z'")
    images = torch.cat([r.cpu() for r in rows])
    array = grid_array(images, z.shape[0], value_range_of(model, value_range))
    return grid_figure([array], row_labels=labels, tile_height=images.shape[-2], tile_width=images.shape[-1],
                       title="styles of one resolution taken from z'", dpi=dpi)


def style_mixing_grid(model, z_rows, z_cols, crossover: int, *, value_range=IMAGE_RANGE,
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
    lo, hi = check_value_range(value_range)
    corner = torch.full_like(col_images[:1], hi)    # shown white
    tiles = [corner, col_images]
    for i in range(rows):
        tiles += [row_images[i:i + 1], mixed[i * cols:(i + 1) * cols]]
    array = grid_array(torch.cat(tiles), cols + 1, (lo, hi))
    return grid_figure([array], title=f"style mixing at layer {crossover}", dpi=dpi, tile_width=mixed.shape[-1],
                        ylabels=[f"coarse:\nlayers < {crossover}"], xlabel=f"fine: layers >= {crossover}")


def mixing_influence_curves(influences: dict, layer_resolutions=None, *, log_scale: bool = False,
                            dpi: int = DPI) -> Figure:
    """One curve per model of ``metrics.mixing_influence``: how much of a style-mixed image the
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
