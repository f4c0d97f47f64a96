"""The notebook-01 exercise checks (vae_lib.exercises.resblock): right answers pass, wrong ones fail clearly."""
import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.exercises import ExerciseError
from vae_lib.exercises.resblock import (SolutionResBlock, check_conv_output_size, check_resblock,
                                        solution_conv_output_size)
from vae_lib.nn.blocks import ResBlock


class StudentBlock(nn.Module):
    """A block written independently of vae_lib, skip defined first; each flag plants one mistake."""

    def __init__(self, in_ch, out_ch, mode="same", *, final_act=True, stride_in_second=False, extra_conv=False,
                 skip_in_same=True, upsample="nearest", bias=True, mid_act=True, down_skip_stride=2):
        super().__init__()
        self.mode, self.final_act, self.skip_in_same = mode, final_act, skip_in_same
        self.upsample_mode, self.mid_act = upsample, mid_act
        stride = 2 if mode == "down" else 1
        if mode == "same" and in_ch == out_ch:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=down_skip_stride if mode == "down" else 1)
        self.first = nn.Conv2d(in_ch, out_ch, 3, stride=1 if stride_in_second else stride, padding=1, bias=bias)
        self.gn = nn.GroupNorm(8, out_ch)
        self.second = nn.Conv2d(out_ch, out_ch, 3, stride=stride if stride_in_second else 1, padding=1)
        self.third = nn.Conv2d(out_ch, out_ch, 3, padding=1) if extra_conv else None

    def forward(self, x):
        if self.mode == "up":
            kw = {"align_corners": False} if self.upsample_mode == "bilinear" else {}
            x = F.interpolate(x, scale_factor=2, mode=self.upsample_mode, **kw)
        h = self.gn(self.first(x))
        h = self.second(F.silu(h) if self.mid_act else h)
        if self.third is not None:
            h = self.third(F.silu(h))
        if self.mode == "same" and not self.skip_in_same:
            return F.silu(h)
        h = h + self.shortcut(x)
        return F.silu(h) if self.final_act else h


def test_reference_and_solution_pass(capsys):
    assert check_resblock(ResBlock) is True
    assert check_resblock(SolutionResBlock) is True
    assert "✔ ResBlock" in capsys.readouterr().out


def test_a_correct_block_with_other_names_and_order_passes():
    assert check_resblock(StudentBlock) is True


def test_the_check_leaves_the_global_random_stream_alone():
    state = torch.random.get_rng_state()
    check_resblock(ResBlock)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("mistake, message", [
    (dict(final_act=False), "activation after the add is missing"),
    (dict(stride_in_second=True), r"1st conv 3x3 has stride=\(1, 1\), the reference's has stride=\(2, 2\)"),
    (dict(down_skip_stride=1), r"1st conv 1x1 has stride=\(1, 1\)"),
    (dict(extra_conv=True), "your block has 3 conv 3x3 layers, the reference has 2"),
    (dict(skip_in_same=False), "the skip connection is missing"),
    (dict(upsample="bilinear"), "nearest"),
    (dict(bias=False), "no bias"),
    (dict(mid_act=False), "activation between the norm and the second conv"),
])
def test_wrong_blocks_fail_with_a_helpful_message(mistake, message):
    with pytest.raises(ExerciseError, match=message):
        check_resblock(partial(StudentBlock, **mistake))


def test_identity_skip_where_the_shape_changes():
    class NoProjection(nn.Module):
        def __init__(self, in_ch, out_ch, mode="same"):
            super().__init__()
            self.inner = ResBlock(in_ch, out_ch, mode)
            self.inner.skip = nn.Identity()

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(ExerciseError, match="0 conv 1x1 layers, the reference has 1.*Conv1x1 s2"):
        check_resblock(NoProjection)


def test_wrong_output_shape_and_crashes():
    class NoUpsampling(nn.Module):  # up blocks that forget Up x2 keep the size
        def __init__(self, in_ch, out_ch, mode="same"):
            super().__init__()
            self.block = ResBlock(in_ch, out_ch, "same" if mode == "up" else mode)
            self.block.skip = nn.Conv2d(in_ch, out_ch, 1) if mode == "up" else self.block.skip

        def forward(self, x):
            return self.block.act(self.block.main(x) + self.block.skip(x))

    with pytest.raises(ExerciseError, match=r"mode='up'.*returns \(2, 64, 8, 8\), expected \(2, 64, 16, 16\)"):
        check_resblock(NoUpsampling)

    def broken(in_ch, out_ch, mode="same"):
        raise RuntimeError("todo")

    with pytest.raises(ExerciseError, match="building your block raised RuntimeError: todo"):
        check_resblock(broken)
    with pytest.raises(ExerciseError, match="expected an nn.Module"):
        check_resblock(lambda in_ch, out_ch, mode: "a block")


def test_a_block_that_is_still_a_stub_is_not_done_yet(capsys):
    def stub(in_ch, out_ch, mode="same"):
        raise NotImplementedError("MyResBlock: your code here")

    assert check_resblock(stub) is False
    out = capsys.readouterr().out
    assert "not done yet: MyResBlock" in out and "\u2714" not in out


def test_parameters_outside_layers_are_explained():
    class RawWeights(nn.Module):
        def __init__(self, in_ch, out_ch, mode="same"):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(out_ch, in_ch, 3, 3))

    with pytest.raises(ExerciseError, match="not inside an nn.Conv2d"):
        check_resblock(RawWeights)


def test_conv_output_size_reference_passes(capsys):
    assert check_conv_output_size(solution_conv_output_size) is True
    assert check_conv_output_size(lambda h, k, s, p: math.floor((h + 2 * p - k) / s) + 1) is True
    assert "✔ conv output size" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda h, k, s, p: (h + 2 * p - k) // s, r"\+1 is missing"),
    (lambda h, k, s, p: (h + p - k) // s + 1, "both sides"),
    (lambda h, k, s, p: (h - k) // s + 1, "padding is missing"),
    (lambda h, k, s, p: (h + 2 * p - k) / s + 1, "floor division"),
    (lambda h, k, s, p: math.ceil((h + 2 * p - k) / s) + 1, "round down"),
    (lambda h, k, s, p: h // s, r"expected \d+ \(\d+ of \d+ cases wrong\)"),
    (lambda h, k, s, p: None, "expected a number"),
    (lambda h, k, s: h, "raised TypeError"),
])
def test_conv_output_size_mistakes(fn, message):
    with pytest.raises(ExerciseError, match=message):
        check_conv_output_size(fn)


def test_skip_that_misses_the_upsampling_is_explained():
    class UpsampleMainOnly(ResBlock):
        def forward(self, x):
            return self.act(self.main(self.upsample(x)) + self.skip(x))

    with pytest.raises(ExerciseError, match=r"mode='up'.*raised RuntimeError.*skip path must change it too"):
        check_resblock(UpsampleMainOnly)
