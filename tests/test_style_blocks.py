"""The style-based decoder's blocks (vae_lib.nn.style) against the card and the StyleGAN recipes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.nn.style import (AdaIN, MappingNetwork, NoiseInjection, PixelNorm, StyleLayer, Synthesis,
                              mix_styles, synthesis_channels)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_styles(module: nn.Module, std: float = 0.2, noise: float = 0.0) -> None:
    """Give every AdaIN affine map random weights (they start at zero) and noise weights a value."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, AdaIN):
                m.affine.weight.copy_(std * torch.randn(m.affine.weight.shape, generator=gen))
            if isinstance(m, NoiseInjection):
                m.weight.fill_(noise)


# ---- PixelNorm -----------------------------------------------------------------------------------
def test_pixel_norm_gives_unit_rms_and_ignores_scale():
    x = torch.randn(4, 10) * torch.tensor([[0.1], [1.0], [100.0], [1e6]])
    y = PixelNorm()(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(4))
    torch.testing.assert_close(PixelNorm()(x * 1e3), y)
    assert torch.isfinite(PixelNorm()(torch.zeros(2, 10))).all()


# ---- MappingNetwork ------------------------------------------------------------------------------
def test_mapping_default_is_the_cards_eight_layers_of_512():
    mapping = MappingNetwork()
    linears = [m for m in mapping.net if isinstance(m, nn.Linear)]
    acts = [m for m in mapping.net if isinstance(m, nn.LeakyReLU)]
    assert isinstance(mapping.net[0], PixelNorm)
    assert [(l.in_features, l.out_features) for l in linears] == [(512, 512)] * 8
    assert len(acts) == 8 and all(a.negative_slope == 0.2 for a in acts)
    assert n_params(mapping) == 8 * (512 * 512 + 512)
    # Xavier with gain 0.5: std = 0.5 * sqrt(2 / (512 + 512)); zero biases.
    weights = torch.cat([l.weight.flatten() for l in linears])
    assert abs(weights.std().item() / (0.5 * (2 / 1024) ** 0.5) - 1) < 0.02
    assert all(torch.count_nonzero(l.bias) == 0 for l in linears)


def test_mapping_depth_and_widths_are_parameters():
    mapping = MappingNetwork(z_dim=16, w_dim=24, num_layers=3, width=20)
    assert n_params(mapping) == (16 * 20 + 20) + (20 * 20 + 20) + (20 * 24 + 24)
    assert mapping(torch.randn(5, 16)).shape == (5, 24)
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        mapping(torch.randn(5, 24))


def test_w_avg_is_an_ema_with_beta_0995_only_when_asked():
    mapping = MappingNetwork(z_dim=8, num_layers=2)
    z = torch.randn(6, 8)
    mapping(z)
    assert torch.count_nonzero(mapping.w_avg) == 0
    mapping.w_avg.fill_(1.0)
    w = mapping(z, update_w_avg=True)
    torch.testing.assert_close(mapping.w_avg, 0.995 * torch.ones(8) + 0.005 * w.mean(dim=0))


def test_truncation_lerps_towards_w_avg():
    mapping = MappingNetwork(z_dim=8, num_layers=2)
    mapping.w_avg.copy_(torch.linspace(-1, 1, 8))
    z = torch.randn(3, 8)
    w = mapping(z)
    torch.testing.assert_close(mapping(z, truncation_psi=0.0), mapping.w_avg.expand(3, 8))
    torch.testing.assert_close(mapping(z, truncation_psi=0.5), 0.5 * (w + mapping.w_avg))
    gen = torch.Generator().manual_seed(0)
    w_avg = mapping.init_w_avg(num_samples=64, generator=gen)
    torch.testing.assert_close(w_avg, mapping(torch.randn(64, 8, generator=torch.Generator().manual_seed(0))).mean(0))


# ---- NoiseInjection ------------------------------------------------------------------------------
def test_noise_starts_at_zero_weight_and_follows_its_mode():
    noise = NoiseInjection(channels=3, resolution=4)
    x = torch.randn(2, 3, 4, 4)
    assert noise.weight.shape == (1, 3, 1, 1) and torch.count_nonzero(noise.weight) == 0
    torch.testing.assert_close(noise(x), x)
    with torch.no_grad():
        noise.weight.copy_(torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1, 1))
    assert not torch.equal(noise(x), noise(x))                          # random: fresh each call
    const = noise(x, "const")
    torch.testing.assert_close(const, x + noise.weight * noise.noise)   # one image for all channels
    torch.testing.assert_close(const[:, 0], x[:, 0])                     # channel weight 0: untouched
    torch.testing.assert_close(noise(x, "none"), x)
    assert "noise" in noise.state_dict()
    with pytest.raises(ValueError, match="noise mode"):
        noise(x, "fixed")
    with pytest.raises(ValueError, match="Constant noise"):
        noise(torch.randn(2, 3, 8, 8), "const")


# ---- AdaIN ---------------------------------------------------------------------------------------
def test_adain_is_a_plain_instance_norm_at_init():
    adain = AdaIN(channels=5, w_dim=7)
    x = 3 * torch.randn(2, 5, 6, 6) + 2
    for w in (torch.randn(2, 7), 1e3 * torch.randn(2, 7)):
        scale, bias = adain.style(w)
        assert torch.equal(scale, torch.ones(2, 5)) and torch.equal(bias, torch.zeros(2, 5))
        torch.testing.assert_close(adain(x, w), F.instance_norm(x))
    assert n_params(adain) == 7 * 10 + 10


def test_adain_sets_each_channels_mean_and_std_from_w():
    adain = AdaIN(channels=4, w_dim=3)
    randomise_styles(adain, std=0.5)
    x, w = torch.randn(2, 4, 16, 16) * 5 - 1, torch.randn(2, 3)
    y = adain(x, w)
    a = adain.affine(w)
    torch.testing.assert_close(y.mean(dim=(2, 3)), a[:, 4:], atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(dim=(2, 3), unbiased=False), (1 + a[:, :4]).abs(), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        adain(torch.randn(2, 3, 4, 4), w)


def test_adain_style_is_clamped_and_survives_extreme_inputs():
    adain = AdaIN(channels=2, w_dim=3)
    randomise_styles(adain, std=1.0)
    w = torch.full((2, 3), 1e6, requires_grad=True)
    scale, bias = adain.style(w)
    assert scale.abs().max() <= 10 and bias.abs().max() <= 10
    x = torch.cat([torch.full((1, 2, 4, 4), 7.0), 1e6 * torch.randn(1, 2, 4, 4)]).requires_grad_()
    y = adain(x, w)
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


# ---- StyleLayer ----------------------------------------------------------------------------------
def test_style_layer_parts_and_parameters():
    layer = StyleLayer(6, 4, w_dim=5, resolution=8)
    assert layer.conv.bias is None and layer.conv.kernel_size == (3, 3)
    assert n_params(layer) == 6 * 4 * 9 + 4 + (5 * 8 + 8)
    assert layer(torch.randn(3, 6, 8, 8), torch.randn(3, 5)).shape == (3, 4, 8, 8)
    first = StyleLayer(4, 4, w_dim=5, resolution=4, use_conv=False)
    assert first.conv is None and n_params(first) == 4 + (5 * 8 + 8)
    with pytest.raises(ValueError, match="without conv"):
        StyleLayer(6, 4, w_dim=5, resolution=4, use_conv=False)


# ---- Synthesis -----------------------------------------------------------------------------------
def test_channel_schedule_follows_the_card():
    assert synthesis_channels(128) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256}
    assert synthesis_channels(64) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512}
    assert synthesis_channels(32, max_channels=32) == {4: 32, 8: 32, 16: 32, 32: 32}
    with pytest.raises(ValueError, match="power of two"):
        synthesis_channels(96)


def test_default_synthesis_has_12_style_layers_and_the_cards_parameters():
    synthesis = Synthesis()
    assert synthesis.num_layers == 12
    assert synthesis.layer_resolutions == [4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128]
    noise_adain = lambda c: c + (512 * 2 * c + 2 * c)           # noise weights + affine(w -> 2C)
    conv = lambda cin, cout: cin * cout * 9
    expected = (512 * 4 * 4                                     # the constant
                + noise_adain(512)                              # 4x4, no conv
                + conv(512, 512) + noise_adain(512)             # 4x4
                + 4 * 2 * (conv(512, 512) + noise_adain(512))   # 8 .. 64
                + conv(512, 256) + noise_adain(256)             # 128
                + conv(256, 256) + noise_adain(256)
                + 256 * 3 + 3)                                  # ToRGB 1x1
    assert n_params(synthesis) == expected == 28_796_163


def test_synthesis_shapes_per_resolution_and_output_range():
    synthesis = Synthesis(w_dim=8, output_size=32, max_channels=16)
    assert synthesis.num_layers == 8
    outputs = synthesis.block_outputs(torch.randn(3, 8))
    assert [tuple(o.shape) for o in outputs] == [(3, 16, 4, 4), (3, 16, 8, 8), (3, 16, 16, 16), (3, 16, 32, 32)]
    images = synthesis(torch.randn(3, 8))
    assert images.shape == (3, 3, 32, 32) and images.abs().max() < 1
    assert Synthesis(w_dim=8, output_size=4, max_channels=8)(torch.randn(1, 8)).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"\(B, 8\) or \(B, 8, 8\)"):
        synthesis(torch.randn(3, 5, 8))


def test_layer_i_reads_ws_i():
    synthesis = Synthesis(w_dim=8, output_size=16, max_channels=8, noise_mode="none")
    randomise_styles(synthesis)
    w = torch.randn(2, 8)
    ws = w.unsqueeze(1).repeat(1, synthesis.num_layers, 1)
    before = synthesis.block_outputs(ws)
    torch.testing.assert_close(before[-1], synthesis.block_outputs(w)[-1])   # (B, w_dim) is broadcast
    ws[:, 4] += 1.0                                                          # layer 4: first of the 16x16 block
    after = synthesis.block_outputs(ws)
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[1], before[1])
    assert not torch.allclose(after[2], before[2])


def test_noise_modes_of_the_synthesis():
    synthesis = Synthesis(w_dim=8, output_size=8, max_channels=8, noise_mode="const")
    randomise_styles(synthesis, noise=0.5)
    w = torch.randn(2, 8)
    torch.testing.assert_close(synthesis(w), synthesis(w))
    assert not torch.allclose(synthesis(w, noise_mode="random"), synthesis(w, noise_mode="random"))
    assert not torch.allclose(synthesis(w, noise_mode="none"), synthesis(w))
    synthesis.set_noise_mode("none")
    torch.testing.assert_close(synthesis(w), synthesis(w, noise_mode="none"))


# ---- mixing --------------------------------------------------------------------------------------
def test_mix_styles_is_a_crossover_on_the_layer_axis():
    ws1, ws2 = torch.zeros(2, 5, 3), torch.ones(2, 5, 3)
    mixed = mix_styles(ws1, ws2, 2)
    assert mixed[:, :2].eq(0).all() and mixed[:, 2:].eq(1).all()
    assert torch.equal(mix_styles(ws1, ws2, 0), ws2) and torch.equal(mix_styles(ws1, ws2, 5), ws1)
    with pytest.raises(ValueError, match=r"crossover must be an integer in \[0, 5\]"):
        mix_styles(ws1, ws2, 6)
    with pytest.raises(ValueError, match="both be"):
        mix_styles(ws1, ws2[:, :4], 2)
