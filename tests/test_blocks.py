"""ResBlock (vae_lib.nn.blocks) against the card (its feature-map figure: test_viz.py)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.nn.blocks import ResBlock


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def gn(c):
    return 2 * c


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("mode, cin, cout, size, out_size", [
    ("down", 32, 32, 28, 14), ("down", 32, 64, 14, 7), ("down", 8, 16, 7, 4),
    ("same", 64, 64, 7, 7), ("up", 64, 64, 7, 14), ("up", 64, 32, 14, 28),
])
def test_output_shape(mode, cin, cout, size, out_size):
    block = ResBlock(cin, cout, mode=mode)
    assert block(torch.randn(2, cin, size, size)).shape == (2, cout, out_size, out_size)


@pytest.mark.parametrize("mode, cin, cout, expected", [
    # main: conv3x3(cin->cout) + GN(cout) + conv3x3(cout->cout); skip as on the card
    ("down", 32, 32, conv(3, 32, 32) + gn(32) + conv(3, 32, 32) + conv(1, 32, 32)),
    ("down", 32, 64, conv(3, 32, 64) + gn(64) + conv(3, 64, 64) + conv(1, 32, 64)),
    ("same", 64, 64, conv(3, 64, 64) + gn(64) + conv(3, 64, 64)),
    ("up", 64, 64, conv(3, 64, 64) + gn(64) + conv(3, 64, 64) + conv(1, 64, 64)),
    ("up", 64, 32, conv(3, 64, 32) + gn(32) + conv(3, 32, 32) + conv(1, 64, 32)),
])
def test_parameter_counts_follow_the_card(mode, cin, cout, expected):
    assert n_params(ResBlock(cin, cout, mode=mode)) == expected


def test_card_numbers_worked_out():
    # one spelled-out case, so the helpers above are checked too: down 32->64
    expected = (9 * 32 * 64 + 64) + 128 + (9 * 64 * 64 + 64) + (32 * 64 + 64)
    assert n_params(ResBlock(32, 64, mode="down")) == expected


def reference_forward(block, x, mode):
    """The card's block written with torch.nn.functional on the block's own weights."""
    c1, norm, c2 = block.main.conv1, block.main.norm, block.main.conv2
    stride = 2 if mode == "down" else 1
    if mode == "up":
        x = F.interpolate(x, scale_factor=2, mode="nearest")
    h = F.conv2d(x, c1.weight, c1.bias, stride=stride, padding=1)
    h = F.silu(F.group_norm(h, 8, norm.weight, norm.bias))
    h = F.conv2d(h, c2.weight, c2.bias, stride=1, padding=1)
    skip = x if mode == "same" else F.conv2d(x, block.skip.weight, block.skip.bias, stride=stride)
    return F.silu(h + skip)


@pytest.mark.parametrize("mode, cin, cout", [("down", 16, 32), ("same", 16, 16), ("up", 32, 16), ("up", 16, 16)])
def test_forward_matches_functional_card(mode, cin, cout):
    torch.manual_seed(0)
    block = ResBlock(cin, cout, mode=mode)
    with torch.no_grad():
        block.main.norm.weight.normal_()
        block.main.norm.bias.normal_()
    x = torch.randn(3, cin, 6, 6)
    torch.testing.assert_close(block(x), reference_forward(block, x, mode))


def test_skip_kinds():
    assert isinstance(ResBlock(64, 64, mode="same").skip, nn.Identity)
    up = ResBlock(64, 64, mode="up").skip  # the card keeps Conv1x1 on the up skip even for 64->64
    assert isinstance(up, nn.Conv2d) and up.kernel_size == (1, 1) and up.stride == (1, 1)
    down = ResBlock(32, 32, mode="down").skip
    assert isinstance(down, nn.Conv2d) and down.kernel_size == (1, 1) and down.stride == (2, 2)
    assert down.padding == (0, 0)


def test_same_mode_with_channel_change_uses_a_projection():
    block = ResBlock(16, 32, mode="same")
    assert isinstance(block.skip, nn.Conv2d) and block.skip.kernel_size == (1, 1) and block.skip.stride == (1, 1)
    assert block(torch.randn(1, 16, 5, 5)).shape == (1, 32, 5, 5)


def test_norm_and_activation_options():
    block = ResBlock(16, 16, mode="same", norm="batch", activation="relu")
    assert isinstance(block.main.norm, nn.BatchNorm2d)
    assert isinstance(block.main.act, nn.ReLU) and isinstance(block.act, nn.ReLU)
    assert (block(torch.randn(4, 16, 5, 5)) >= 0).all()
    assert ResBlock(16, 16, groups=4).main.norm.num_groups == 4


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_ch=8, out_ch=8, mode="sideways"), "mode"),
    (dict(in_ch=8, out_ch=8, norm="layer"), "norm"),
    (dict(in_ch=8, out_ch=8, activation="gelu"), "activation"),
    (dict(in_ch=8, out_ch=12, groups=8), "divisible"),
    (dict(in_ch=0, out_ch=8), "positive"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResBlock(**kwargs)


def test_bad_input_channels():
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\)"):
        ResBlock(8, 8)(torch.randn(1, 4, 5, 5))


def test_gradients_reach_every_parameter():
    block = ResBlock(8, 16, mode="up")
    block(torch.randn(2, 8, 4, 4)).square().sum().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
