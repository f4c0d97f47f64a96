"""The figures of notebooks 04 and 05, drawn headless (Agg) on a tiny model."""
from __future__ import annotations

import io

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from vae_lib.models.stylegan_vae import ConvolutionalVAE
from vae_lib.nn import style_plots

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ConvolutionalVAE(z_dim=8, input_size=8, max_channels=8, mapping_layers=3)


def drawn(fig) -> Figure:
    assert isinstance(fig, Figure)
    fig.savefig(io.BytesIO(), format="png")
    return fig


def test_latent_statistics(model):
    z = torch.randn(50, 8)
    fig = drawn(style_plots.latent_statistics(z, model.mapping(z), num_dims=4))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("values of z" in t for t in titles) and any("values of w" in t for t in titles)
    assert any("first 4 coordinates" in t for t in titles)
    with pytest.raises(ValueError, match=r"\(N, dim\)"):
        style_plots.latent_statistics(torch.randn(8), z)


def test_mapping_layer_scales_has_one_point_per_layer(model):
    fig = drawn(style_plots.mapping_layer_scales(model.mapping, torch.randn(20, 8)))
    line = fig.axes[0].get_lines()[0]
    assert len(line.get_xdata()) == 1 + 1 + 3            # z, PixelNorm, 3 layers
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-1] == "layer 3"


def test_truncation_and_layer_swap_grids_have_a_row_per_setting(model):
    fig = drawn(style_plots.truncation_grid(model, psis=(1.0, 0.0), n=3))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["psi = 1", "psi = 0"]
    fig = drawn(style_plots.layer_swap_grid(model, torch.randn(2, 8), torch.randn(2, 8)))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z", "4x4 from z'", "8x8 from z'", "z'"]


def test_noise_variation_and_synthesis_ladder(model):
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    fig = drawn(style_plots.noise_variation(images))
    assert "std over 4 draws" in fig.axes[3].get_title()
    with pytest.raises(ValueError, match="N >= 2"):
        style_plots.noise_variation(images[:1])
    outputs = model.synthesis.block_outputs(torch.randn(1, 8))
    fig = drawn(style_plots.synthesis_ladder(outputs, model.synthesis(torch.randn(1, 8))))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["4x4, 8 ch", "8x8, 8 ch"]
