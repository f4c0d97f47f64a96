"""ConvolutionalVAE (the StyleGAN-VAE card): API, shapes at every stage, parameter count, stability."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from vae_lib.models.stylegan_vae import ConvolutionalVAE, ResidualBlock, StrongerEncoder
from vae_lib.nn.style import AdaIN, NoiseInjection

SMALL = dict(z_dim=32, input_size=32, max_channels=32, mapping_layers=2)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv3x3(cin: int, cout: int) -> int:
    return cin * cout * 9          # no bias: every encoder conv is followed by GroupNorm


def gn(c: int) -> int:
    return 2 * c


def randomise_styles(model: nn.Module, noise: float = 0.0) -> None:
    """AdaIN maps start at zero (w has no effect): give them weights so that w matters."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, AdaIN):
                m.affine.weight.copy_(0.2 * torch.randn(m.affine.weight.shape, generator=gen))
            if isinstance(m, NoiseInjection):
                m.weight.fill_(noise)


@pytest.fixture(scope="module")
def default_model():
    torch.manual_seed(0)
    return ConvolutionalVAE().eval()


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return ConvolutionalVAE(**SMALL)


def images(batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


# ---- the card's API ------------------------------------------------------------------------------
def test_constructor_defaults_follow_the_card_and_the_interface():
    params = inspect.signature(ConvolutionalVAE).parameters
    assert list(params)[:3] == ["z_dim", "input_size", "use_style_mixing"]
    defaults = {name: p.default for name, p in params.items()}
    assert defaults == dict(z_dim=512, input_size=128, use_style_mixing=False, w_dim=None, mapping_layers=8,
                            max_channels=512, mixing_prob=0.9, noise_mode="random", logvar_clamp=10.0,
                            w_avg_beta=0.995, skip_rgb=False, input_mode="const", equalized_lr=False,
                            mapping_lr_mul=1.0, encoder_pool="average", mapping_gain=0.5,
                            channel_base=32768, per_layer_codes=False, encoder_channels=None,
                            encoder_fc_width=None)
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(params)[3:])


def test_default_parameter_count_worked_out_from_the_card(default_model):
    stages = [(64, 128, 2), (128, 256, 2), (256, 512, 3), (512, 512, 2), (512, 512, 1)]
    encoder = conv3x3(3, 64) + gn(64)
    for cin, cout, blocks in stages:
        encoder += conv3x3(cin, cout) + gn(cout) + blocks * 2 * (conv3x3(cout, cout) + gn(cout))
    encoder += (512 * 512 + 512) + 2 * (512 * 512 + 512)        # FC, then the mu and logvar heads
    mapping = 8 * (512 * 512 + 512)
    style = lambda c: c + 512 * 2 * c + 2 * c                     # noise weights + AdaIN affine
    synthesis = (512 * 16 + style(512) + 9 * (9 * 512 * 512 + style(512))
                 + 9 * 512 * 256 + style(256) + 9 * 256 * 256 + style(256) + 3 * 256 + 3)
    assert n_params(default_model.encoder) == encoder == 38_336_576
    assert n_params(default_model.mapping) == mapping == 2_101_248
    assert n_params(default_model.synthesis) == synthesis == 28_796_163
    total = n_params(default_model)
    assert total == encoder + mapping + synthesis == 69_233_987
    assert 50e6 <= total <= 80e6                                  # card: ~50-80M


def test_default_model_shapes_at_every_stage(default_model):
    enc = default_model.encoder
    assert [len(stage.blocks) for stage in enc.stages] == [2, 2, 3, 2, 1]
    assert all(isinstance(b, ResidualBlock) for stage in enc.stages for b in stage.blocks)
    shapes = {}
    record = lambda name: (lambda module, args, out: shapes.__setitem__(name, tuple(out.shape[1:])))
    named = {"stem": enc.stem, "pool": enc.pool, "mapping": default_model.mapping,
             **{f"down{i + 1}": stage for i, stage in enumerate(enc.stages)}}
    hooks = [m.register_forward_hook(record(name)) for name, m in named.items()]
    with torch.no_grad():
        x = images(1, 128)
        recon, mu, logvar = default_model(x)
        blocks = default_model.synthesis.block_outputs(default_model.mapping(mu))
    for h in hooks:
        h.remove()
    assert shapes == {"stem": (64, 128, 128), "down1": (128, 64, 64), "down2": (256, 32, 32),
                      "down3": (512, 16, 16), "down4": (512, 8, 8), "down5": (512, 4, 4), "pool": (512,),
                      "mapping": (512,)}
    assert [tuple(b.shape[1:]) for b in blocks] == [(512, 4, 4), (512, 8, 8), (512, 16, 16), (512, 32, 32),
                                                    (512, 64, 64), (256, 128, 128)]
    assert recon.shape == (1, 3, 128, 128) and mu.shape == logvar.shape == (1, 512)
    assert default_model.num_style_layers == 12


def test_forward_encode_decode_sample_and_mix_return_the_documented_shapes(small_model):
    x = images(3)
    out = small_model(x)
    assert isinstance(out, tuple) and len(out) == 3
    recon, mu, logvar = out
    assert recon.shape == x.shape and mu.shape == logvar.shape == (3, 32)
    assert recon.abs().max() < 1                                   # tanh output, images in [-1, 1]
    mu2, logvar2 = small_model.encode(x)
    torch.testing.assert_close(mu2, mu)
    torch.testing.assert_close(logvar2, logvar)
    z = torch.randn(3, 32)
    assert small_model.decode(z).shape == (3, 3, 32, 32)
    assert small_model.mapping(z).shape == (3, 32)
    assert small_model.sample(5).shape == (5, 3, 32, 32)
    assert small_model.mix(z, torch.randn(3, 32), 4).shape == (3, 3, 32, 32)
    assert small_model.num_style_layers == 8


def test_encoder_stops_at_4x4_for_smaller_inputs():
    for size, num_stages, channels in [(64, 4, 512), (32, 3, 512), (16, 2, 256), (8, 1, 128)]:
        encoder = StrongerEncoder(z_dim=8, input_size=size)
        assert len(encoder.stages) == num_stages and encoder.feature_channels == channels
        out = encoder.stages(encoder.stem(torch.zeros(1, 3, size, size)))
        assert out.shape == (1, channels, 4, 4)
    for bad in (48, 256, 4):
        with pytest.raises(ValueError, match="input_size must be a power of two"):
            ConvolutionalVAE(input_size=bad)


def test_bad_inputs_are_refused_with_clear_messages(small_model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        small_model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        small_model(torch.zeros(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[-1, 1\].*2 \* x - 1"):
        small_model(torch.full((2, 3, 32, 32), 255.0))
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        small_model.decode(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="noise mode"):
        ConvolutionalVAE(**SMALL, noise_mode="off")


# ---- decoder behaviour ---------------------------------------------------------------------------
def test_mix_takes_the_first_layers_from_z1(small_model):
    randomise_styles(small_model)
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    L = small_model.num_style_layers
    with torch.no_grad():
        torch.testing.assert_close(small_model.mix(z1, z2, L, noise_mode="const"), small_model.decode(z1, noise_mode="const"))
        torch.testing.assert_close(small_model.mix(z1, z2, 0, noise_mode="const"), small_model.decode(z2, noise_mode="const"))
        assert not torch.allclose(small_model.mix(z1, z2, 3, noise_mode="const"), small_model.decode(z1, noise_mode="const"))


def test_sample_is_reproducible_and_truncation_psi_0_gives_the_average(small_model):
    randomise_styles(small_model, noise=0.3)
    a = small_model.sample(2, generator=torch.Generator().manual_seed(0), noise_mode="const")
    b = small_model.sample(2, generator=torch.Generator().manual_seed(0), noise_mode="const")
    torch.testing.assert_close(a, b)
    small_model.mapping.w_avg.normal_()
    average = small_model.sample(3, truncation_psi=0.0, noise_mode="const")
    with torch.no_grad():
        expected = small_model.synthesis(small_model.mapping.w_avg.expand(3, -1), "const")
    torch.testing.assert_close(average, expected)


def test_w_avg_tracks_training_passes_only(small_model):
    x = images(2)
    small_model.eval()
    small_model(x)
    assert torch.count_nonzero(small_model.mapping.w_avg) == 0
    small_model.train()
    small_model(x)
    assert torch.count_nonzero(small_model.mapping.w_avg) > 0


def test_logvar_is_clamped_to_10():
    model = ConvolutionalVAE(**SMALL)
    with torch.no_grad():
        model.encoder.logvar.bias.fill_(1e4)
    assert torch.equal(model.encode(images(2))[1], torch.full((2, 32), 10.0))


# ---- style mixing in training --------------------------------------------------------------------
def synthesis_codes(model: ConvolutionalVAE, x: torch.Tensor) -> torch.Tensor:
    captured = []
    hook = model.synthesis.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    model(x)
    hook.remove()
    return captured[0]


def test_style_mixing_feeds_a_second_posterior_sample_from_a_crossover_on():
    torch.manual_seed(0)
    model = ConvolutionalVAE(**SMALL, use_style_mixing=True, mixing_prob=1.0).train()
    L = model.num_style_layers
    crossovers = set()
    for _ in range(12):
        ws = synthesis_codes(model, images(2))
        assert ws.shape == (2, L, 32)
        changes = [i for i in range(1, L) if not torch.equal(ws[:, i], ws[:, i - 1])]
        assert len(changes) == 1                                   # one crossover k in [1, L-1]
        k = changes[0]
        assert (ws[:, :k] == ws[:, :1]).all() and (ws[:, k:] == ws[:, k:k + 1]).all()
        crossovers.add(k)
    assert len(crossovers) > 2
    model.eval()
    ws = synthesis_codes(model, images(2))
    assert (ws == ws[:, :1]).all()                                 # never in eval mode


def test_no_mixing_without_the_option_or_with_probability_0():
    for options in (dict(use_style_mixing=False, mixing_prob=1.0), dict(use_style_mixing=True, mixing_prob=0.0)):
        model = ConvolutionalVAE(**SMALL, **options).train()
        ws = synthesis_codes(model, images(2))
        assert ws.ndim == 3 and (ws == ws[:, :1]).all()


# ---- numerical stability -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["plus_one", "minus_one", "constant", "checkerboard"])
def test_extreme_images_give_finite_outputs_and_gradients(name):
    torch.manual_seed(0)
    model = ConvolutionalVAE(**SMALL, use_style_mixing=True, mixing_prob=1.0).train()
    randomise_styles(model, noise=0.5)
    sign = torch.ones(32, 32)
    sign[::2, 1::2] = sign[1::2, ::2] = -1
    x = {"plus_one": torch.ones(2, 3, 32, 32), "minus_one": -torch.ones(2, 3, 32, 32),
         "constant": torch.full((2, 3, 32, 32), 0.3), "checkerboard": sign.expand(2, 3, 32, 32).clone()}[name]
    x.requires_grad_()
    recon, mu, logvar = model(x)
    (recon.square().sum() + mu.square().sum() + logvar.exp().sum()).backward()
    assert all(torch.isfinite(t).all() for t in (recon, mu, logvar, x.grad))
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_huge_values_stay_finite():
    torch.manual_seed(0)
    model = ConvolutionalVAE(**SMALL)
    randomise_styles(model, noise=0.5)
    z = torch.randn(2, 32) * 1e6
    z[1] = 0.0
    z.requires_grad_()
    out = model.decode(z)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    x = (1e4 * torch.randn(2, 3, 32, 32)).requires_grad_()
    mu, logvar = model.encoder(x)
    (mu.sum() + logvar.sum()).backward()
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all() and torch.isfinite(x.grad).all()


# ---- options beyond the card -----------------------------------------------------------------------
def test_skip_rgb_adds_one_torgb_per_lower_block_and_sums_them():
    torch.manual_seed(0)
    plain = ConvolutionalVAE(**SMALL)
    torch.manual_seed(0)
    skip = ConvolutionalVAE(**SMALL, skip_rgb=True)
    channels = skip.synthesis.channels
    extra = sum(channels[r] * 3 + 3 for r in skip.synthesis.resolutions[:-1])
    assert n_params(skip) - n_params(plain) == extra
    randomise_styles(skip)
    z = torch.randn(2, 32)
    with torch.no_grad():
        features = skip.synthesis.block_outputs(skip.mapping(z), "const")
        rgb = None
        for fmap, conv in zip(features, [*skip.synthesis.skip_rgbs, skip.synthesis.to_rgb]):
            rgb = conv(fmap) if rgb is None else torch.nn.functional.interpolate(
                rgb, scale_factor=2, mode="bilinear", align_corners=False) + conv(fmap)
        torch.testing.assert_close(skip.decode(z, noise_mode="const"), torch.tanh(rgb))


def test_mapped_input_reads_the_first_layer_code_only():
    torch.manual_seed(0)
    model = ConvolutionalVAE(**SMALL, input_mode="mapped")
    assert not hasattr(model.synthesis, "const")
    assert model.synthesis.input.weight.shape == (32 * 16, 32)
    ws = model.synthesis.per_layer(model.mapping(torch.randn(2, 32))).clone()
    other = ws.clone()
    other[:, 1:] = torch.randn_like(other[:, 1:])
    with torch.no_grad():
        torch.testing.assert_close(model.synthesis.input_map(ws), model.synthesis.input_map(other))
        changed = ws.clone()
        changed[:, 0] += 1.0
        assert not torch.allclose(model.synthesis.input_map(ws), model.synthesis.input_map(changed))
    with pytest.raises(ValueError, match="input_mode"):
        ConvolutionalVAE(**SMALL, input_mode="noise")


def test_equalized_lr_keeps_the_initial_network_and_scales_the_steps():
    torch.manual_seed(0)
    plain = ConvolutionalVAE(**SMALL)
    torch.manual_seed(0)
    equal = ConvolutionalVAE(**SMALL, equalized_lr=True, mapping_lr_mul=0.01)
    assert n_params(equal) == n_params(plain)
    x = images()
    torch.manual_seed(1)
    a = plain.eval().reconstruct(x)
    torch.manual_seed(1)
    b = equal.eval().reconstruct(x)
    torch.testing.assert_close(a, b)
    # The same Adam step moves a mapping weight lr_mul / sqrt(fan_in) times as far, a conv weight 1 / sqrt(fan_in).
    layer = equal.mapping.net[1]
    before = layer.weight.detach().clone()
    stored = layer.parametrizations.weight.original
    opt = torch.optim.Adam([stored], lr=1e-2)
    stored.grad = torch.ones_like(stored)
    opt.step()
    torch.testing.assert_close(before - layer.weight.detach(), torch.full_like(before, 1e-2 * 0.01 / 32 ** 0.5))
    with pytest.raises(ValueError, match="equalized_lr"):
        ConvolutionalVAE(**SMALL, mapping_lr_mul=0.01)


def test_the_shared_interface(small_model):
    assert small_model.conditional is False
    x = images()
    with pytest.raises(ValueError, match="unconditional"):
        small_model.encode(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        small_model.sample(2, torch.tensor([0, 1]))
    small_model.eval()
    torch.testing.assert_close(small_model.reconstruct(x), small_model.decode(small_model.encode(x)[0], noise_mode="const"))
    z = torch.randn(3, 32)
    randomise_styles(small_model)
    small_model.mapping.w_avg.normal_()
    with torch.no_grad():
        half = small_model.decode(z, noise_mode="const", truncation_psi=0.5)
        w = small_model.mapping.w_avg.lerp(small_model.mapping.net(z), 0.5)
        torch.testing.assert_close(half, small_model.synthesis(w, "const"))
        mixed = small_model.mix(z, z.flip(0), 3, truncation_psi=0.5, noise_mode="const")
        torch.testing.assert_close(small_model.mix(z, z.flip(0), small_model.num_style_layers, truncation_psi=0.5,
                                                   noise_mode="const"), half)
        assert mixed.shape == (3, 3, 32, 32)
    for bad in (float("nan"), float("inf"), "0.7"):
        with pytest.raises(ValueError, match="truncation_psi"):
            small_model.sample(2, truncation_psi=bad)
    with pytest.raises(ValueError, match="NaN/inf"):
        small_model.decode(torch.full((1, 32), float("nan")))
    with pytest.raises(ValueError, match="crossover"):
        small_model.mix(z, z, 2.0)
    torch.testing.assert_close(small_model.reconstruct(x.double()), small_model.reconstruct(x))
    with pytest.raises(ValueError, match="n must be an integer"):
        small_model.sample(2.0)


def test_flatten_pool_keeps_the_sixteen_cells_of_the_last_map():
    torch.manual_seed(0)
    average = StrongerEncoder(z_dim=8, input_size=16, max_channels=16)
    flat = StrongerEncoder(z_dim=8, input_size=16, max_channels=16, pool="flatten")
    assert n_params(flat) - n_params(average) == 15 * 16 * 16      # FC in-features 16 -> 16 * 16
    # An image and its mirror have the same averaged features but not the same flattened ones.
    x = images(1, 16)
    with torch.no_grad():
        feats = flat.stages(flat.stem(torch.cat([x, x.flip(-1)])))
        assert feats.shape == (2, 16, 4, 4)
        assert flat.pool(feats).shape == (2, 256)
    with pytest.raises(ValueError, match="pool"):
        StrongerEncoder(z_dim=8, input_size=16, pool="max")


def test_mapping_gain_sets_the_scale_of_w_at_initialisation():
    from vae_lib.models.stylegan_vae import MAPPING_GAIN_PRESERVING

    z = torch.randn(2000, 64, generator=torch.Generator().manual_seed(0))
    rms = {}
    for gain in (0.5, MAPPING_GAIN_PRESERVING):
        torch.manual_seed(0)
        model = ConvolutionalVAE(z_dim=64, input_size=16, max_channels=16, mapping_layers=8, mapping_gain=gain)
        with torch.no_grad():
            rms[gain] = model.mapping(z).pow(2).mean().sqrt().item()
    assert rms[0.5] < 1e-3                                 # the card's init: w is nearly constant
    assert 0.3 < rms[MAPPING_GAIN_PRESERVING] < 3.0        # scale kept through 8 layers


def test_per_layer_codes_give_each_style_layer_its_own_chunk_of_z():
    torch.manual_seed(0)
    model = ConvolutionalVAE(**SMALL, per_layer_codes=True)
    randomise_styles(model)
    L = model.num_style_layers
    chunk = SMALL["z_dim"] // L
    # The one mapping network reads a chunk: its first Linear is z_dim / L wide, not z_dim.
    plain = ConvolutionalVAE(**SMALL)
    width = plain.mapping.net[1].weight.shape[0]
    assert n_params(plain.mapping) - n_params(model.mapping) == (SMALL["z_dim"] - chunk) * width
    assert model.code_dim == model.mapping.z_dim == chunk and plain.code_dim == plain.mapping.z_dim == SMALL["z_dim"]
    z1, z2 = torch.randn(3, SMALL["z_dim"]), torch.randn(3, SMALL["z_dim"])
    with torch.no_grad():
        ws = model.styles(z1)
        assert ws.shape == (3, L, model.w_dim)
        for layer in (0, L - 1):
            torch.testing.assert_close(ws[:, layer], model.mapping(z1[:, layer * chunk:(layer + 1) * chunk]))
        # Changing layer 2's chunk changes layer 2's w and no other.
        changed = z1.clone()
        changed[:, 2 * chunk:3 * chunk] += 1.0
        moved = (model.styles(changed) - ws).abs().amax(dim=(0, 2))
        assert moved[2] > 0 and moved[torch.arange(L) != 2].eq(0).all()
        # Style mixing at crossover k is decoding z1's first k chunks with z2's others.
        k = 3
        spliced = torch.cat([z1[:, :k * chunk], z2[:, k * chunk:]], dim=1)
        torch.testing.assert_close(model.mix(z1, z2, k, noise_mode="const"), model.decode(spliced, noise_mode="const"))
    recon, mu, logvar = model(images(2))
    assert recon.shape == (2, 3, 32, 32) and mu.shape == logvar.shape == (2, SMALL["z_dim"])
    with pytest.raises(ValueError, match="multiple of 8"):
        ConvolutionalVAE(**{**SMALL, "z_dim": 36}, per_layer_codes=True)


def test_encoder_width_and_fc_width_are_options_apart_from_the_synthesis():
    torch.manual_seed(0)
    plain = ConvolutionalVAE(**SMALL, encoder_pool="flatten")
    wide = ConvolutionalVAE(**SMALL, encoder_pool="flatten", encoder_channels=64, encoder_fc_width=256)
    # The synthesis and the mapping are untouched: only the encoder changes.
    assert n_params(wide.synthesis) == n_params(plain.synthesis)
    assert n_params(wide.mapping) == n_params(plain.mapping)
    # 32 px: stem 3 -> 64, Down1 64 -> 128 capped, Down2, Down3 (2, 2, 3 residual blocks), all capped at C.
    def encoder_count(c: int, fc: int, z: int = SMALL["z_dim"]) -> int:
        stem = conv3x3(3, c) + gn(c)
        stages = sum(conv3x3(c, c) + gn(c) + n * 2 * (conv3x3(c, c) + gn(c)) for n in (2, 2, 3))
        head = (16 * c * fc + fc) + 2 * (fc * z + z)          # flatten -> FC -> mu, logvar
        return stem + stages + head
    assert n_params(plain.encoder) == encoder_count(32, 32)
    assert n_params(wide.encoder) == encoder_count(64, 256)
    assert wide.encoder.feature_channels == 64 and wide.encoder.fc[0].out_features == 256
    mu, logvar = wide.encode(images(2))
    assert mu.shape == logvar.shape == (2, SMALL["z_dim"])
    with pytest.raises(ValueError, match="encoder_channels"):
        ConvolutionalVAE(**SMALL, encoder_channels=0)
    with pytest.raises(ValueError, match="fc_width"):
        ConvolutionalVAE(**SMALL, encoder_fc_width=0)
