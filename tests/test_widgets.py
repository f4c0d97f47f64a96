"""vae_lib.widgets: the update functions and the explorers' wiring, without a browser or a kernel."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from vae_lib import widgets
from vae_lib.models.cvae import CVAE


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return CVAE(z_dim=5, num_classes=3).eval()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def test_to_uint8_maps_the_value_range():
    gray = torch.tensor([[[0.0, 0.5, 1.0, 2.0]]])                 # (1, 1, 4), clipped above 1
    np.testing.assert_array_equal(widgets.to_uint8(gray), [[0, 128, 255, 255]])
    rgb = torch.tensor([-1.0, 0.0, 1.0]).view(3, 1, 1)
    np.testing.assert_array_equal(widgets.to_uint8(rgb, (-1, 1)), [[[0, 128, 255]]])
    with pytest.raises(ValueError, match="one image"):
        widgets.to_uint8(torch.zeros(2, 1, 4, 4))


def test_png_bytes_upscale_with_blocks():
    array = np.array([[0, 255], [10, 20]], dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(widgets.png_bytes(array, scale=3)),
                                  np.repeat(np.repeat(array, 3, 0), 3, 1))
    with pytest.raises(ValueError, match="uint8"):
        widgets.png_bytes(array.astype(float))


def test_cvae_image_is_the_decoded_mean(cvae):
    z = torch.randn(5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = (cvae.decode(z[None], torch.tensor([2]))[0, 0] * 255).round().numpy()
    got = widgets.cvae_image(cvae, z, 2)
    assert got.dtype == np.uint8 and got.shape == (28, 28)
    np.testing.assert_array_equal(got, want)


def test_stylevae_image_crossover_ends_are_the_sources(stylevae):
    gen = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(8, generator=gen), torch.randn(8, generator=gen)
    strip = widgets.stylevae_image(stylevae, z1, z2, crossover=stylevae.num_style_layers)
    assert strip.shape == (8, 3 * 8 + 4, 3)
    source1, mixed, source2 = strip[:, :8], strip[:, 10:18], strip[:, 20:]
    np.testing.assert_array_equal(mixed, source1)            # crossover L: every layer from z1
    with torch.no_grad():
        want2 = ((stylevae.decode(z2[None], noise_mode="const")[0] + 1) * 127.5).round().permute(1, 2, 0)
    np.testing.assert_allclose(source2, want2.numpy(), atol=1)
    mixed0 = widgets.stylevae_image(stylevae, z1, z2, crossover=0, with_sources=False)
    np.testing.assert_array_equal(mixed0, source2)           # crossover 0: every layer from z2
    middle = widgets.stylevae_image(stylevae, z1, z2, crossover=2, with_sources=False)
    assert not np.array_equal(middle, source1) and not np.array_equal(middle, source2)
    with pytest.raises(ValueError, match="crossover"):
        widgets.stylevae_image(stylevae, z1, z2, crossover=stylevae.num_style_layers + 1)


def test_cvae_explorer_redraws_on_slider_class_and_button(cvae):
    explorer = widgets.CVAEExplorer(cvae, num_sliders=3, seed=0, scale=2)
    assert [s.description for s in explorer.sliders] == ["z[0]", "z[1]", "z[2]"]
    assert "vae-cvae-explorer" in explorer.ui._dom_classes

    def shown():
        return decode_png(explorer.image.value)

    first = shown()
    np.testing.assert_array_equal(first[::2, ::2], widgets.cvae_image(cvae, explorer.z, 0))
    assert (explorer.image.width, explorer.image.height) == ("56", "56")     # shown at the PNG's own size
    explorer.sliders[1].value = 2.5
    assert explorer.z[1].item() == pytest.approx(2.5)
    after_slider = shown()
    assert not np.array_equal(after_slider, first)
    np.testing.assert_array_equal(after_slider[::2, ::2], widgets.cvae_image(cvae, explorer.z, 0))
    explorer.class_picker.value = 2
    np.testing.assert_array_equal(shown()[::2, ::2], widgets.cvae_image(cvae, explorer.z, 2))
    z_before = explorer.z.clone()
    explorer.random_button.click()
    assert not torch.equal(explorer.z, z_before)
    assert explorer.sliders[0].value == pytest.approx(float(explorer.z[0].clamp(-3, 3)), abs=1e-6)
    np.testing.assert_array_equal(shown()[::2, ::2], widgets.cvae_image(cvae, explorer.z, 2))


def test_stylevae_explorer_redraws_on_crossover_truncation_and_sources(stylevae):
    explorer = widgets.StyleVAEExplorer(stylevae, seed=0, scale=1)
    assert explorer.crossover.max == stylevae.num_style_layers
    assert "vae-stylevae-explorer" in explorer.ui._dom_classes

    def shown():
        return decode_png(explorer.image.value)

    explorer.crossover.value = 0
    np.testing.assert_array_equal(shown(), widgets.stylevae_image(stylevae, explorer.z1, explorer.z2, 0))
    explorer.truncation.value = 0.0
    at_zero = shown()
    np.testing.assert_array_equal(at_zero, widgets.stylevae_image(stylevae, explorer.z1, explorer.z2, 0, 0.0))
    # psi = 0: both sources and the mix are the average image.
    np.testing.assert_array_equal(at_zero[:, :8], at_zero[:, 20:])
    explorer.truncation.value = 1.0
    z2 = explorer.z2.clone()
    explorer.new_source_buttons[1].click()
    assert not torch.equal(explorer.z2, z2)
    np.testing.assert_array_equal(shown(), widgets.stylevae_image(stylevae, explorer.z1, explorer.z2, 0))
