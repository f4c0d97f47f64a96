"""The CVAE (vae_lib.models.cvae) against resnet_cvae_card.md: stages, shapes, parameter counts, checks."""
import pytest
import torch
from torch import nn

from vae_lib.models.cvae import CVAE
from vae_lib.nn.blocks import ResBlock


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def linear(cin, cout):
    return cin * cout + cout


def gn(c):
    return 2 * c


def card_parameter_count(z):
    """Sum of the card's layers, one term per layer (PyTorch default biases everywhere)."""
    embed = linear(10, 16)
    stem = conv(3, 1, 32) + gn(32)
    down_32_32 = conv(3, 32, 32) + gn(32) + conv(3, 32, 32) + conv(1, 32, 32)
    down_32_64 = conv(3, 32, 64) + gn(64) + conv(3, 64, 64) + conv(1, 32, 64)
    same_64_64 = conv(3, 64, 64) + gn(64) + conv(3, 64, 64)  # identity skip
    heads = 2 * linear(64 + 16, z)  # mu and logvar
    fc = linear(z + 16, 7 * 7 * 64)
    up_64_64 = conv(3, 64, 64) + gn(64) + conv(3, 64, 64) + conv(1, 64, 64)
    up_64_32 = conv(3, 64, 32) + gn(32) + conv(3, 32, 32) + conv(1, 64, 32)
    out = conv(1, 32, 1)
    return (embed + stem + down_32_32 + down_32_64 + same_64_64 + heads + fc + up_64_64 + up_64_32 + out)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CVAE()


def digits(batch=3, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(batch, 1, 28, 28)


@pytest.mark.parametrize("z, expected", [(16, 365_937), (32, 418_705)])
def test_parameter_count_matches_card(z, expected):
    assert card_parameter_count(z) == expected  # the numbers follow from the card
    assert n_params(CVAE(z_dim=z)) == card_parameter_count(z)


def test_parameter_count_options_keep_the_card_size():
    # BatchNorm has the same 2*c affine parameters as GroupNorm; ReLU and the likelihood add none
    assert n_params(CVAE(norm="batch", activation="relu", likelihood="gaussian")) == card_parameter_count(16)


def test_every_stage_has_the_card_shape(model):
    x, y = digits(2), torch.tensor([3, 7])
    e = model.embed(y)
    assert e.shape == (2, 16)
    h = model.encoder.stem(x)
    assert h.shape == (2, 32, 28, 28)
    expected = [(2, 32, 14, 14), (2, 64, 7, 7), (2, 64, 7, 7)]
    for block, mode, shape in zip(model.encoder.blocks, ["down", "down", "same"], expected, strict=True):
        assert isinstance(block, ResBlock) and block.mode == mode
        h = block(h)
        assert h.shape == shape
    pooled = model.encoder.pool(h)
    assert pooled.shape == (2, 64)
    torch.testing.assert_close(pooled, h.mean(dim=(2, 3)))  # global average pool
    head_in = torch.cat([pooled, e], dim=1)
    assert head_in.shape == (2, 80)
    mu, logvar = model.encoder.mu(head_in), model.encoder.logvar(head_in)
    assert mu.shape == logvar.shape == (2, 16)
    mu_api, logvar_api = model.encode(x, y)
    torch.testing.assert_close(mu_api, mu)
    torch.testing.assert_close(logvar_api, logvar.clamp(-10, 10))

    z = torch.randn(2, 16)
    h = model.decoder.fc(torch.cat([z, e], dim=1))
    assert h.shape == (2, 7 * 7 * 64)
    h = model.decoder.unflatten(h)
    assert h.shape == (2, 64, 7, 7)
    for block, shape in zip(model.decoder.blocks, [(2, 64, 14, 14), (2, 32, 28, 28)], strict=True):
        assert isinstance(block, ResBlock) and block.mode == "up"
        h = block(h)
        assert h.shape == shape
    logits = model.decoder.out(h)
    assert logits.shape == (2, 1, 28, 28)
    torch.testing.assert_close(model.decode_params(z, y), logits)
    torch.testing.assert_close(model.decode(z, y), torch.sigmoid(logits))


def test_stage_layers_follow_the_card(model):
    conv, norm, act = model.encoder.stem
    assert (conv.in_channels, conv.out_channels) == (1, 32)
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 8 and isinstance(act, nn.SiLU)
    assert [(b.in_ch, b.out_ch) for b in model.encoder.blocks] == [(32, 32), (32, 64), (64, 64)]
    assert [(b.in_ch, b.out_ch) for b in model.decoder.blocks] == [(64, 64), (64, 32)]
    assert model.embed.linear.in_features == 10 and isinstance(model.embed.act, nn.SiLU)
    out = model.decoder.out
    assert (out.in_channels, out.out_channels, out.kernel_size) == (32, 1, (1, 1))


def test_stage_table(model):
    rows = model.stage_table()
    shapes = {r["stage"]: r["output"] for r in rows}
    assert shapes == {
        "embed": (16,), "encoder.stem": (32, 28, 28), "encoder.blocks[0]": (32, 14, 14),
        "encoder.blocks[1]": (64, 7, 7), "encoder.blocks[2]": (64, 7, 7), "encoder.pool": (64,),
        "encoder.mu": (16,), "encoder.logvar": (16,), "decoder.fc": (3136,),
        "decoder.unflatten": (64, 7, 7), "decoder.blocks[0]": (64, 14, 14),
        "decoder.blocks[1]": (32, 28, 28), "decoder.out": (1, 28, 28),
    }
    params = {r["stage"]: r["params"] for r in rows}
    assert params["decoder.fc"] == linear(32, 3136) and params["encoder.pool"] == 0
    assert sum(params.values()) == 365_937
    assert "365,937" in model.summary()


def test_forward_shapes_and_heads():
    torch.manual_seed(0)
    x, y = digits(4), torch.arange(4)
    bern = CVAE(z_dim=32)
    x_hat, mu, logvar = bern(x, y)
    assert x_hat.shape == (4, 1, 28, 28) and mu.shape == logvar.shape == (4, 32)
    assert ((x_hat > 0) & (x_hat < 1)).all()
    assert bern.data_range == (0.0, 1.0) and bern.sigma is None

    gauss = CVAE(likelihood="gaussian", sigma=0.2)
    assert gauss.data_range == (-1.0, 1.0) and gauss.sigma == 0.2
    z = torch.randn(4, 16)
    torch.testing.assert_close(gauss.decode(z, y), gauss.decode_params(z, y))  # identity head
    assert gauss(2 * x - 1, y)[0].shape == (4, 1, 28, 28)


def test_logvar_is_clamped():
    model = CVAE()
    with torch.no_grad():
        model.encoder.logvar.bias.fill_(100.0)
    assert torch.equal(model.encode(digits(2), torch.tensor([0, 1]))[1], torch.full((2, 16), 10.0))
    model = CVAE(logvar_clamp=(-3.0, 2.0))
    with torch.no_grad():
        model.encoder.logvar.bias.fill_(-100.0)
    assert torch.equal(model.encode(digits(2), torch.tensor([0, 1]))[1], torch.full((2, 16), -3.0))
    unclamped = CVAE(logvar_clamp=None)
    with torch.no_grad():
        unclamped.encoder.logvar.bias.fill_(100.0)
    assert (unclamped.encode(digits(2), torch.tensor([0, 1]))[1] > 50).all()


def test_reparameterize_statistics(model):
    mu = torch.tensor([[1.0, -2.0]]).expand(20_000, 2)
    logvar = torch.tensor([[0.0, 2 * torch.log(torch.tensor(0.5)).item()]]).expand(20_000, 2)
    z = model.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.03, rtol=0)


def test_sample_uses_the_generator(model):
    y = torch.tensor([0, 5, 9])
    a = model.sample(len(y), y, generator=torch.Generator().manual_seed(1))
    b = model.sample(len(y), y, generator=torch.Generator().manual_seed(1))
    c = model.sample(len(y), y, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 1, 28, 28) and not a.requires_grad
    assert torch.equal(a, b) and not torch.equal(a, c)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, model.decode(z, y))
    assert model.sample(2, [1, 2]).shape == (2, 1, 28, 28)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sample_with_a_cpu_generator_is_device_independent(model):
    y = torch.tensor([0, 5, 9])
    cpu = model.sample(len(y), y, generator=torch.Generator().manual_seed(3))
    gpu_model = CVAE().cuda()
    gpu_model.load_state_dict(model.state_dict())
    gpu = gpu_model.sample(len(y), y, generator=torch.Generator().manual_seed(3))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    on_device = gpu_model.sample(len(y), y, generator=torch.Generator("cuda").manual_seed(3))
    assert on_device.device.type == "cuda"


def test_conditioning_changes_the_output(model):
    z = torch.randn(1, 16).expand(2, 16)
    out = model.decode(z, torch.tensor([1, 8]))
    assert not torch.allclose(out[0], out[1])


GOOD_Y = torch.tensor([1, 2])


@pytest.mark.parametrize("x, y, match", [
    (torch.rand(2, 28, 28), GOOD_Y, r"shape \(B, 1, 28, 28\)"),
    (torch.rand(2, 3, 28, 28), GOOD_Y, "channel"),
    (torch.rand(2, 1, 32, 32), GOOD_Y, r"\(B, 1, 28, 28\)"),
    (torch.rand(2, 1, 28, 28) * 2 - 1, GOOD_Y, r"\[0, 1\]"),
    (torch.rand(2, 1, 28, 28) + 0.01, GOOD_Y, r"\[0, 1\]"),
    (torch.full((2, 1, 28, 28), float("nan")), GOOD_Y, r"\[0, 1\]"),
    (torch.randint(0, 2, (2, 1, 28, 28)), GOOD_Y, "floating"),
    (torch.rand(2, 1, 28, 28), torch.tensor([1, 10]), r"\[0, 10\)"),
    (torch.rand(2, 1, 28, 28), torch.tensor([-1, 0]), r"\[0, 10\)"),
    (torch.rand(2, 1, 28, 28), torch.tensor([1.0, 2.0]), "integer"),
    (torch.rand(2, 1, 28, 28), torch.tensor([[1], [2]]), r"\(B,\)"),
    (torch.rand(2, 1, 28, 28), torch.tensor([1, 2, 3]), "Batch sizes differ"),
    (torch.rand(0, 1, 28, 28), torch.tensor([], dtype=torch.long), "empty"),
])
def test_bad_input_is_a_clear_value_error(model, x, y, match):
    with pytest.raises(ValueError, match=match):
        model(x, y)


def test_small_overshoot_is_tolerated(model):
    x = digits(2).clamp(0, 1)
    x[0, 0, 0, 0] = 1.0 + 1e-5
    model(x, GOOD_Y)
    model.encode(x, torch.tensor([1, 2], dtype=torch.int32))  # any integer dtype is fine


def test_gaussian_range_check():
    model = CVAE(likelihood="gaussian")
    model(torch.rand(2, 1, 28, 28) * 2 - 1, GOOD_Y)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model(torch.rand(2, 1, 28, 28) * 3, GOOD_Y)


def test_decode_checks_z(model):
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        model.decode(torch.randn(2, 8), GOOD_Y)
    with pytest.raises(ValueError, match="Batch sizes differ"):
        model.decode(torch.randn(3, 16), GOOD_Y)


@pytest.mark.parametrize("kwargs, match", [
    (dict(likelihood="laplace"), "likelihood"),
    (dict(likelihood="gaussian", sigma=0.0), "sigma"),
    (dict(logvar_clamp=(5.0, -5.0)), "logvar_clamp"),
    (dict(z_dim=0), "positive"),
    (dict(norm="layer"), "norm"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CVAE(**kwargs)


def test_options_reach_every_layer():
    model = CVAE(norm="batch", activation="relu")
    assert not any(isinstance(m, (nn.GroupNorm, nn.SiLU)) for m in model.modules())
    assert isinstance(model.encoder.stem[1], nn.BatchNorm2d) and isinstance(model.embed.act, nn.ReLU)
    rows = model.stage_table()  # runs in eval mode: BatchNorm statistics must stay untouched
    assert model.training and len(rows) == 13
    assert torch.equal(model.encoder.stem[1].running_mean, torch.zeros(32))


# ---------------------------------------------------------------- the shared model interface (issue 10)
def test_interface_flags(model):
    assert CVAE.conditional is True and model.conditional
    assert model.num_style_layers == 0 and model.data_range == (0.0, 1.0)


@pytest.mark.parametrize("call", [
    lambda m: m.encode(digits(2)),
    lambda m: m.decode(torch.randn(2, 16)),
    lambda m: m.sample(2),
    lambda m: m.reconstruct(digits(2)),
    lambda m: m(digits(2)),
])
def test_missing_labels_are_a_clear_value_error(model, call):
    with pytest.raises(ValueError, match="this CVAE is class-conditional: pass labels y"):
        call(model)


def test_decode_truncation_is_a_temperature_on_z_and_noise_mode_is_ignored(model):
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2])
    torch.testing.assert_close(model.decode(z, y, truncation_psi=0.5), model.decode(0.5 * z, y))
    torch.testing.assert_close(model.decode(z, y, truncation_psi=1.0), model.decode(z, y))
    torch.testing.assert_close(model.decode(z, y, noise_mode="const"), model.decode(z, y))
    torch.testing.assert_close(model.decode(z, y, noise_mode="random"), model.decode(z, y))
    with pytest.raises(ValueError, match="truncation_psi"):
        model.decode(z, y, truncation_psi=float("nan"))


def test_sample_n_images_for_n_labels(model):
    y = torch.tensor([3, 4])
    a = model.sample(2, y, generator=torch.Generator().manual_seed(5), truncation_psi=0.0, noise_mode="const")
    torch.testing.assert_close(a, model.decode(torch.zeros(2, 16), y))
    b = model.sample(2, y, generator=torch.Generator().manual_seed(5), truncation_psi=0.7)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(b, model.decode(0.7 * z, y))
    with pytest.raises(ValueError, match=r"n=3 .* 2 labels"):
        model.sample(3, y)
    with pytest.raises(ValueError, match="n must be"):
        model.sample(0, y[:0])


def test_reconstruct_decodes_the_posterior_mean_without_gradients(model):
    x, y = digits(3), torch.tensor([1, 2, 3])
    out = model.reconstruct(x, y)
    assert out.shape == (3, 1, 28, 28) and not out.requires_grad
    torch.testing.assert_close(out, model.decode(model.encode(x, y)[0], y))
    torch.testing.assert_close(model.reconstruct(x, y, noise_mode="const"), out)
