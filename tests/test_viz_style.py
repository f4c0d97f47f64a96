"""The StyleGAN figures of vae_lib.viz.style (notebooks 04, 05 and 08), drawn headless (Agg) on tiny models."""
from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vae_lib import viz
from vae_lib.models.cvae import CVAE
from vae_lib.models.stylegan_vae import ConvolutionalVAE

matplotlib.use("Agg")

PAD = 2     # make_grid's padding between tiles


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
    fig = drawn(viz.latent_statistics(z, model.mapping(z), num_dims=4))
    titles = [ax.get_title() for ax in fig.axes]
    assert any("values of z" in t for t in titles) and any("values of w" in t for t in titles)
    assert any("first 4 coordinates" in t for t in titles)
    with pytest.raises(ValueError, match=r"\(N, dim\)"):
        viz.latent_statistics(torch.randn(8), z)


def test_mapping_layer_scales_has_one_point_per_layer(model):
    fig = drawn(viz.mapping_layer_scales(model.mapping, torch.randn(20, 8)))
    line = fig.axes[0].get_lines()[0]
    assert len(line.get_xdata()) == 1 + 1 + 3            # z, PixelNorm, 3 layers
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-1] == "layer 3"


def test_truncation_and_layer_swap_grids_have_a_row_per_setting(model):
    fig = drawn(viz.truncation_grid(model, psis=(1.0, 0.0), n=3))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ψ = 1", "ψ = 0"]
    fig = drawn(viz.layer_swap_grid(model, torch.randn(2, 8), torch.randn(2, 8)))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["z", "4x4 from z'", "8x8 from z'", "z'"]


def test_noise_variation_and_synthesis_ladder(model):
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    fig = drawn(viz.noise_variation(images))
    assert "std over 4 draws" in fig.axes[3].get_title()
    with pytest.raises(ValueError, match="N >= 2"):
        viz.noise_variation(images[:1])
    outputs = model.synthesis.block_outputs(torch.randn(1, 8))
    fig = drawn(viz.synthesis_ladder(outputs, model.synthesis(torch.randn(1, 8))))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["4x4, 8 ch", "8x8, 8 ch"]


def tile(array, row, col, size):
    top, left = PAD + row * (size + PAD), PAD + col * (size + PAD)
    return array[top:top + size, left:left + size]


def test_truncation_grid_psi_zero_gives_one_image(stylevae):
    fig = viz.truncation_grid(stylevae, psis=(1.0, 0.0), n=3, seed=1)
    array = np.asarray(fig.axes[0].images[0].get_array())
    assert array.shape == (2 * 10 + PAD, 3 * 10 + PAD, 3)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ((stylevae.decode(z, noise_mode="const") + 1) / 2).permute(0, 2, 3, 1).numpy()
    for j in range(3):      # psi = 1: the model's own images of z
        np.testing.assert_allclose(tile(array, 0, j, 8), want[j], atol=1e-5)
    # psi = 0: every code is pulled to w_avg, so every tile is the same image, and not a psi = 1 one.
    np.testing.assert_allclose(tile(array, 1, 0, 8), tile(array, 1, 2, 8), atol=1e-6)
    assert not np.allclose(tile(array, 0, 0, 8), tile(array, 0, 2, 8))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ψ = 1", "ψ = 0"]
    with pytest.raises(ValueError, match="StyleGAN"):
        viz.truncation_grid(CVAE(z_dim=2))
