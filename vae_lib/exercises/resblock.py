"""Exercises of notebook 01: write the residual block; compute a conv's output size.

* ``check_resblock(MyResBlock)``: builds your block and ``vae_lib.nn.blocks.ResBlock`` for the card's
  five blocks, copies the reference weights into yours, runs both on the same input and compares.
* ``check_conv_output_size(output_size)``: your ``output_size(h, k, s, p)`` against the sizes
  PyTorch's own ``conv2d`` produces, on a grid of cases.

Reference answers: ``solution_resblock`` and ``solution_conv_output_size``.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.exercises import ExerciseError, passed
from vae_lib.nn.blocks import ResBlock

# (mode, in_ch, out_ch): the five blocks of the card.
CARD_BLOCKS = (("down", 32, 32), ("down", 32, 64), ("same", 64, 64), ("up", 64, 64), ("up", 64, 32))
_INPUT_SIZE = 8
_NORM_TYPES = (nn.GroupNorm, nn.BatchNorm2d)
_ATOL, _RTOL = 1e-5, 1e-4


def _recipe(mode: str) -> str:
    up = "Up x2 -> " if mode == "up" else ""
    stride = 2 if mode == "down" else 1
    skip = {"down": "Conv1x1 s2", "same": "Identity", "up": "Up x2 -> Conv1x1 s1"}[mode]
    return (f"main = {up}Conv3x3 s{stride} p1 -> GroupNorm(8) -> SiLU -> Conv3x3 s1 p1; "
            f"skip = {skip}; out = SiLU(main + skip)")


def _ordinal(i: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(i, f"{i}th")


def _layers(block: nn.Module) -> tuple[dict[str, list[nn.Module]], int]:
    """Layers with their own parameters, grouped by kind ('conv 3x3', 'norm', ...), in definition order;
    and the number of parameter tensors that belong to none of them."""
    kinds: dict[str, list[nn.Module]] = {}
    grouped = 0
    for m in block.modules():
        own = list(m.parameters(recurse=False))
        if not own:
            continue
        if isinstance(m, nn.Conv2d):
            kind = "conv {}x{}".format(*m.kernel_size)
        elif isinstance(m, _NORM_TYPES):
            kind = "norm"
        else:
            continue
        kinds.setdefault(kind, []).append(m)
        grouped += len(own)
    return kinds, len(list(block.parameters())) - grouped


def _copy_reference_weights(ref: nn.Module, student: nn.Module, label: str) -> None:
    """Load ``ref``'s weights into ``student``: by state_dict when the names match, else layer by layer
    (convs matched by kernel size, norms by type, each in definition order)."""
    ref_sd, st_sd = ref.state_dict(), student.state_dict()
    if ref_sd.keys() == st_sd.keys() and all(ref_sd[k].shape == st_sd[k].shape for k in ref_sd):
        student.load_state_dict(ref_sd)
        return
    ref_layers, _ = _layers(ref)
    st_layers, loose = _layers(student)
    if loose:
        raise ExerciseError(f"{label}: {loose} of your parameter tensors are not inside an nn.Conv2d or a "
                            "norm layer, so the check cannot map the reference weights onto them. Build the "
                            "block from nn.Conv2d and nn.GroupNorm modules.")
    for kind in sorted(set(ref_layers) | set(st_layers)):
        mine, theirs = len(st_layers.get(kind, [])), len(ref_layers.get(kind, []))
        if mine != theirs:
            layer = "norm layer" if kind == "norm" else f"{kind} layer"
            raise ExerciseError(f"{label}: your block has {mine} {layer}{'s' * (mine != 1)}, the reference "
                                f"has {theirs}. The card's block: {_recipe(ref.mode)}.")
    for kind, ref_list in ref_layers.items():
        for i, (r, s) in enumerate(zip(ref_list, st_layers[kind]), start=1):
            _compare_layer(r, s, f"{label}: your {_ordinal(i)} {kind if kind != 'norm' else 'norm layer'}")
            s.load_state_dict(r.state_dict())


def _compare_layer(ref: nn.Module, mine: nn.Module, what: str) -> None:
    if type(ref) is not type(mine):
        raise ExerciseError(f"{what} is a {type(mine).__name__}, the reference uses {type(ref).__name__}.")
    if isinstance(ref, nn.GroupNorm) and (ref.num_groups, ref.num_channels) != (mine.num_groups,
                                                                                mine.num_channels):
        raise ExerciseError(f"{what} is GroupNorm({mine.num_groups}, {mine.num_channels}), the reference is "
                            f"GroupNorm({ref.num_groups}, {ref.num_channels}).")
    if isinstance(ref, nn.Conv2d):
        if ref.weight.shape != mine.weight.shape:
            raise ExerciseError(f"{what} has weight shape {tuple(mine.weight.shape)} (out, in, kh, kw), the "
                                f"reference's has {tuple(ref.weight.shape)}: check its channel counts.")
        if mine.bias is None:
            raise ExerciseError(f"{what} has no bias: keep PyTorch's default bias=True (the card's parameter "
                                "counts include the biases).")
        for attr in ("stride", "padding", "dilation", "groups"):
            if getattr(ref, attr) != getattr(mine, attr):
                raise ExerciseError(f"{what} has {attr}={getattr(mine, attr)}, the reference's has "
                                    f"{attr}={getattr(ref, attr)}.")
    mine_params = dict(mine.named_parameters())
    for name, p in ref.named_parameters():
        if name not in mine_params or mine_params[name].shape != p.shape:
            found = tuple(mine_params[name].shape) if name in mine_params else "nothing"
            raise ExerciseError(f"{what}: parameter {name!r} has shape {found}, expected {tuple(p.shape)} "
                                "(keep PyTorch's defaults, e.g. affine=True).")


def _known_mistakes(ref: ResBlock, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Outputs of the reference block with one common mistake each, and what to say about it."""
    u = ref.upsample(x)
    main, skip, act = ref.main(u), ref.skip(u), ref.act
    no_mid_act = ref.main.conv2(ref.main.norm(ref.main.conv1(u)))
    mistakes = [
        ("the activation after the add is missing: return act(main + skip), not main + skip", main + skip),
        ("the skip connection is missing: add skip(x) to the main path before the last activation", act(main)),
        ("the last activation is applied to the main path before the add; apply it after: act(main + skip)",
         act(main) + skip),
        ("the main path needs its activation between the norm and the second conv", act(no_mid_act + skip)),
    ]
    if ref.mode == "up":
        u2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        mistakes.append(("Up x2 here is nearest-neighbour: nn.Upsample(scale_factor=2) (mode='nearest')",
                         act(ref.main(u2) + ref.skip(u2))))
    return mistakes


def _reference_block(mode: str, in_ch: int, out_ch: int) -> ResBlock:
    torch.manual_seed(0)
    ref = ResBlock(in_ch, out_ch, mode=mode)
    with torch.no_grad():  # GroupNorm starts as weight 1, bias 0: perturb it so that a swap shows
        ref.main.norm.weight.add_(0.1 * torch.randn_like(ref.main.norm.weight))
        ref.main.norm.bias.add_(0.1 * torch.randn_like(ref.main.norm.bias))
    return ref.eval()


def check_resblock(student_cls_or_factory) -> bool:
    """Check a residual block class (or factory) ``f(in_ch, out_ch, mode=...)`` against the reference.

    For each of the card's five blocks: build yours, copy the reference weights into it, run both on
    the same (2, in_ch, 8, 8) input; raise ``ExerciseError`` with what differs, else print a ✔ line.
    """
    with torch.random.fork_rng(devices=[]):  # leave the notebook's random stream as it was
        for mode, in_ch, out_ch in CARD_BLOCKS:
            _check_one(student_cls_or_factory, mode, in_ch, out_ch)
    return passed("ResBlock", "down 32->32, down 32->64, same 64->64, up 64->64, up 64->32 match the reference")


def _check_one(factory, mode: str, in_ch: int, out_ch: int) -> None:
    label = f"ResBlock({in_ch}, {out_ch}, mode={mode!r})"
    ref = _reference_block(mode, in_ch, out_ch)
    try:
        student = factory(in_ch, out_ch, mode=mode)
    except Exception as err:
        raise ExerciseError(f"{label}: building your block raised {type(err).__name__}: {err}") from err
    if not isinstance(student, nn.Module):
        raise ExerciseError(f"{label}: expected an nn.Module, got {type(student).__name__}.")
    _copy_reference_weights(ref, student, label)
    student.eval()

    x = torch.randn(2, in_ch, _INPUT_SIZE, _INPUT_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x)
        try:
            got = student(x)
        except Exception as err:
            shape_hint = (" When the block changes the shape, the skip path must change it too."
                          if "size of tensor" in str(err) else "")
            raise ExerciseError(f"{label}: running your block on an input of shape {tuple(x.shape)} raised "
                                f"{type(err).__name__}: {err}.{shape_hint} "
                                f"The card's block: {_recipe(mode)}.") from err
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ExerciseError(f"{label}: on an input of shape {tuple(x.shape)} your block returns {shape}, "
                                f"expected {tuple(want.shape)}. The card's block: {_recipe(mode)}.")
        if torch.allclose(got, want, atol=_ATOL, rtol=_RTOL):
            return
        for hint, wrong in _known_mistakes(ref, x):
            if torch.allclose(got, wrong, atol=_ATOL, rtol=_RTOL):
                raise ExerciseError(f"{label}: the output differs from the reference: {hint}.")
    diff = (got - want).abs().max().item()
    raise ExerciseError(f"{label}: the shapes match but the values differ (max abs difference {diff:.3g}). "
                        f"Check the order of the layers: {_recipe(mode)}.")


def check_conv_output_size(fn) -> bool:
    """Check ``fn(h, k, s, p)`` -> output size of a conv (input size h, kernel k, stride s, padding p).

    The expected sizes come from running ``torch.nn.functional.conv2d`` on a grid of cases. When all of
    your answers follow one of the usual slips (no +1, padding once, ...) the message names it.
    """
    cases = [(h, k, s, p) for h in (1, 2, 5, 7, 8, 14, 28) for k in (1, 3, 5) for s in (1, 2, 3)
             for p in (0, 1, 2) if h + 2 * p >= k]
    wrong = []  # (call, got, want)
    answers = []
    for (h, k, s, p) in cases:
        call = f"output_size(h={h}, k={k}, s={s}, p={p})"
        want = F.conv2d(torch.zeros(1, 1, h, h), torch.zeros(1, 1, k, k), stride=s, padding=p).shape[-1]
        try:
            got = fn(h, k, s, p)
        except Exception as err:
            raise ExerciseError(f"{call} raised {type(err).__name__}: {err}") from err
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, numbers.Real) or isinstance(got, bool):
            raise ExerciseError(f"{call} returned {got!r}; expected a number.")
        if got != int(got):
            raise ExerciseError(f"{call} returned {got}, expected {want}: sizes are whole numbers, so round "
                                "down with floor division //.")
        answers.append(got)
        if got != want:
            wrong.append((call, got, want))
    if wrong:
        call, got, want = wrong[0]
        hint = next((f": {hint}" for formula, hint in _SIZE_SLIPS
                     if all(a == formula(*case) for case, a in zip(cases, answers))), "")
        raise ExerciseError(f"{call} returned {got}, expected {want}{hint} "
                            f"({len(wrong)} of {len(cases)} cases wrong).")
    return passed("conv output size", f"{len(cases)} cases agree with torch's conv2d")


_SIZE_SLIPS = (
    (lambda h, k, s, p: (h + 2 * p - k) // s, "the +1 is missing: a kernel that fits exactly once still gives "
                                              "one output"),
    (lambda h, k, s, p: (h + p - k) // s + 1, "padding adds p pixels on both sides, so the padded size is h + 2p"),
    (lambda h, k, s, p: (h - k) // s + 1, "the padding is missing"),
    (lambda h, k, s, p: math.ceil((h + 2 * p - k) / s) + 1, "round down (floor), not up: a last window that "
                                                            "does not fit is dropped"),
)


# ---- reference answers -------------------------------------------------------------------------

def solution_conv_output_size(h: int, k: int, s: int, p: int) -> int:
    """floor((h + 2p - k) / s) + 1."""
    return (h + 2 * p - k) // s + 1


class _SolutionResBlock(nn.Module):
    """The block as a student would write it: explicit layers in one class."""

    def __init__(self, in_ch, out_ch, mode="same", norm="group", activation="silu", groups=8):
        super().__init__()
        stride = 2 if mode == "down" else 1
        self.upsample = mode == "up"
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(groups, out_ch) if norm == "group" else nn.BatchNorm2d(out_ch)
        self.act = nn.SiLU() if activation == "silu" else nn.ReLU()
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=1, padding=1)
        if mode == "same" and in_ch == out_ch:
            self.skip = nn.Identity()
        else:  # the shape changes, so the skip must change it too
            self.skip = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(self.act(self.norm(self.conv1(x))))
        return self.act(h + self.skip(x))


def solution_resblock(in_ch: int, out_ch: int, mode: str = "same", norm: str = "group",
                      activation: str = "silu", groups: int = 8) -> nn.Module:
    """A residual block with ``vae_lib.nn.blocks.ResBlock``'s constructor, written from scratch."""
    return _SolutionResBlock(in_ch, out_ch, mode, norm, activation, groups)
