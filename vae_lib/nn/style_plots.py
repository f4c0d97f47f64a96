"""Figures of notebooks 04 (mapping network) and 05 (AdaIN synthesis), headless-safe.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (as ``vae_lib.viz``);
image tiles go through ``viz.grid_array``. Images are in [-1, 1] (the StyleGAN-VAE's range).
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from vae_lib.evaluate import evaluation_mode, model_device
from vae_lib.nn.style import MappingNetwork, mix_styles
from vae_lib.viz import DPI, PADDING, grid_array

IMAGE_RANGE = (-1.0, 1.0)


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


def truncation_grid(model, psis=(1.0, 0.7, 0.4, 0.0), n: int = 8, seed: int = 0, *,
                    noise_mode: str = "const", dpi: int = DPI) -> Figure:
    """One row per psi: the same n codes z, with w pulled towards ``w_avg`` (``model.sample``)."""
    rows = [model.sample(n, truncation_psi=psi, generator=torch.Generator().manual_seed(seed),
                         noise_mode=noise_mode).cpu() for psi in psis]
    return _image_rows(rows, [f"psi = {psi:g}" for psi in psis], "truncation: w_avg + psi (w - w_avg)", dpi)


def noise_variation(images: torch.Tensor, num_shown: int = 3, *, dpi: int = DPI) -> Figure:
    """images (N, 3, H, W) decoded from one w with N noise draws: a few of them, then the per-pixel
    standard deviation over the draws (averaged over the colour channels), in units of the [-1, 1] range."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"images must be (N, C, H, W) with N >= 2 noise draws, got {tuple(images.shape)}.")
    images = images.detach().float().cpu()
    std = images.std(dim=0).mean(dim=0).numpy()
    num_shown = min(num_shown, images.shape[0])
    fig = Figure(figsize=(2.0 * (num_shown + 1) + 0.6, 2.4), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, num_shown + 1)
    for i in range(num_shown):
        axes[i].imshow(grid_array(images[i:i + 1], 1, IMAGE_RANGE, padding=0))
        axes[i].set_title(f"noise draw {i + 1}", fontsize=9)
    shown = axes[-1].imshow(std, cmap="viridis", vmin=0)
    axes[-1].set_title(f"std over {images.shape[0]} draws\n(max {std.max():.3g})", fontsize=9)
    fig.colorbar(shown, ax=axes[-1], shrink=0.8)
    for ax in axes:
        ax.set_axis_off()
    return fig


def synthesis_ladder(block_outputs: list[torch.Tensor], image: torch.Tensor, *, dpi: int = DPI) -> Figure:
    """The synthesis of one image, resolution by resolution: mean |activation| over channels of each
    block's output (the first image of the batch), then the image itself."""
    if not block_outputs:
        raise ValueError("block_outputs is empty: pass Synthesis.block_outputs(ws).")
    fig = Figure(figsize=(1.6 * (len(block_outputs) + 1), 2.1), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, len(block_outputs) + 1)
    for ax, features in zip(axes, block_outputs):
        ax.imshow(features[0].detach().abs().mean(dim=0).cpu().numpy(), cmap="viridis")
        ax.set_title(f"{features.shape[-1]}x{features.shape[-1]}, {features.shape[1]} ch", fontsize=8)
    axes[-1].imshow(grid_array(image[:1], 1, IMAGE_RANGE, padding=0))
    axes[-1].set_title("ToRGB -> tanh", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    return fig


def layer_swap_grid(model, z: torch.Tensor, z_other: torch.Tensor, *, noise_mode: str = "const",
                    dpi: int = DPI) -> Figure:
    """What each resolution's styles control: row "z" decodes z; the row of resolution r replaces the
    two codes of that block by w_other = mapping(z_other); the last row decodes z_other. z, z_other (N, z_dim)."""
    synthesis = model.synthesis
    device = model_device(model)
    with evaluation_mode(model):
        ws = synthesis.per_layer(model.mapping(z.to(device)))
        ws_other = synthesis.per_layer(model.mapping(z_other.to(device)))
        rows, labels = [synthesis(ws, noise_mode)], ["z"]
        for i, res in enumerate(synthesis.resolutions):
            # layers [2i, 2i+2) from ws_other: two crossovers
            swapped = mix_styles(mix_styles(ws, ws_other, 2 * i), ws, 2 * i + 2)
            rows.append(synthesis(swapped, noise_mode))
            labels.append(f"{res}x{res} from z'")
        rows.append(synthesis(ws_other, noise_mode))
        labels.append("z'")
    return _image_rows([r.cpu() for r in rows], labels, "styles of one resolution taken from z'", dpi)


def _image_rows(rows: list[torch.Tensor], labels: list[str], title: str, dpi: int) -> Figure:
    n, size = rows[0].shape[0], rows[0].shape[-1]
    array = grid_array(torch.cat(rows), n, IMAGE_RANGE)
    fig = Figure(figsize=(min(8.0, 1.0 + 0.9 * n), 0.9 * len(rows) + 0.5), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(array, interpolation="nearest")
    tile = size + PADDING
    ax.set_yticks([PADDING + tile * i + size / 2 for i in range(len(rows))], labels, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10)
    return fig


def _check_codes(codes: torch.Tensor, name: str) -> torch.Tensor:
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ValueError(f"{name} must be (N, dim) with N >= 2 codes, got {tuple(codes.shape)}.")
    return codes.detach().float().cpu()
