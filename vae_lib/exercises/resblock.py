"""Exercises of notebook 01: write the residual block; compute a conv's output size.

* ``check_resblock(MyResBlock)``: builds your block and ``vae_lib.nn.blocks.ResBlock`` for the card's
  five blocks, copies the reference weights into yours, runs both on the same input and compares.
* ``check_conv_output_size(output_size)``: your ``output_size(h, k, s, p)`` against the sizes
  PyTorch's own ``conv2d`` produces, on a grid of cases.

* ``check_predicted_blocks(predicted_blocks)``: predict, then run. Your ``predicted_blocks()`` returns, for
  three blocks on a (1, C, 7, 7) input, the output shape and the number of parameters you worked out by
  hand; the check builds the blocks, runs them, prints both side by side and names the usual slips.

Reference answers: ``SolutionResBlock``, ``solution_conv_output_size`` and ``solution_predicted_blocks``.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.exercises import ExerciseError, call_student, exercise, passed
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


@exercise("MyResBlock", reference="SolutionResBlock")
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


@exercise("output_size", reference="solution_conv_output_size")
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


# (mode, in_ch, out_ch) of the blocks whose shapes and sizes exercise 3 predicts, each on a (1, in_ch, 7, 7) input.
PREDICTED_BLOCKS = {"same 64->128": ("same", 64, 128), "down 16->32": ("down", 16, 32), "up 32->16": ("up", 32, 16)}
_PREDICTION_SIDE = 7


def _parts(block: ResBlock) -> dict[str, int]:
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"conv1": count(block.main.conv1), "norm": count(block.main.norm), "conv2": count(block.main.conv2),
            "skip": count(block.skip),
            "biases": sum(m.bias.numel() for m in block.modules() if isinstance(m, nn.Conv2d))}


def _count_hint(parts: dict[str, int], got: int, mode: str) -> str:
    total = parts["conv1"] + parts["norm"] + parts["conv2"] + parts["skip"]
    slips = [(total - parts["biases"], "the convolutions' biases are missing (one per output channel)"),
             (total - parts["norm"], "GroupNorm's weight and bias are missing (2 per channel)"),
             (total - parts["biases"] - parts["norm"], "the biases and GroupNorm's 2 per channel are missing")]
    if parts["skip"]:
        slips.append((total - parts["skip"], "in_ch != out_ch, so even a 'same' block needs a 1x1 conv skip"
                      if mode == "same" else "the 1x1 skip conv is missing: the shape changes here, so the skip "
                                             "is a conv, not the identity"))
    hint = next((h for wrong, h in slips if got == wrong), None)
    return hint or ("conv k x k from C_in to C_out: k k C_in C_out + C_out; GroupNorm: 2 C_out; and the 1x1 skip "
                    "when the shape changes")


@exercise("predicted_blocks", reference="solution_predicted_blocks")
def check_predicted_blocks(student_fn) -> bool:
    """Run the blocks of ``PREDICTED_BLOCKS`` on a (1, in_ch, 7, 7) input and compare with
    ``student_fn()``: name -> ((C, H, W) of the output, number of parameters). Prints both side by side."""
    predictions = call_student("predicted_blocks", student_fn, tensor=False)
    if not isinstance(predictions, dict) or set(predictions) != set(PREDICTED_BLOCKS):
        keys = sorted(predictions) if isinstance(predictions, dict) else type(predictions).__name__
        raise ExerciseError(f"predicted_blocks() must return a dict with the keys {sorted(PREDICTED_BLOCKS)}, "
                            f"got {keys}.")
    problems = []
    print(f"{'block (input 7x7)':<20}{'predicted':>26}{'measured':>26}")
    with torch.random.fork_rng(devices=[]):
        for name, (mode, in_ch, out_ch) in PREDICTED_BLOCKS.items():
            block = ResBlock(in_ch, out_ch, mode=mode).eval()
            with torch.no_grad():
                out = block(torch.zeros(1, in_ch, _PREDICTION_SIDE, _PREDICTION_SIDE))
            shape, params = tuple(out.shape[1:]), sum(p.numel() for p in block.parameters())
            try:
                got_shape, got_params = predictions[name]
                got_shape = tuple(int(s) for s in got_shape)
                got_params = int(got_params)
            except (TypeError, ValueError):
                raise ExerciseError(f"predicted_blocks()[{name!r}] must be ((C, H, W), number of parameters), got "
                                    f"{predictions[name]!r}.") from None
            if len(got_shape) == 4 and got_shape[0] == 1:
                got_shape = got_shape[1:]                   # a batch axis of 1 is fine
            print(f"{name:<20}{str(got_shape) + f', {got_params:,}':>26}{str(shape) + f', {params:,}':>26}")
            if got_shape != shape:
                side = "Up x2 doubles the side first" if mode == "up" else "(h + 2p - k) // s + 1 with h = 7"
                problems.append(f"{name}: the output is {shape}, you predicted {got_shape} ({side})")
            if got_params != params:
                problems.append(f"{name}: {params:,} parameters, you predicted {got_params:,}: "
                                f"{_count_hint(_parts(block), got_params, mode)}")
    if problems:
        raise ExerciseError("; ".join(problems) + ".")
    return passed("predicted_blocks", "shapes and parameter counts of all three blocks")


# ---- reference answers -------------------------------------------------------------------------

def solution_conv_output_size(h: int, k: int, s: int, p: int) -> int:
    """floor((h + 2p - k) / s) + 1."""
    return (h + 2 * p - k) // s + 1


class SolutionResBlock(nn.Module):
    """A residual block with the three modes of section 1, from explicit layers."""

    def __init__(self, in_ch, out_ch, mode="same"):
        super().__init__()
        stride = 2 if mode == "down" else 1
        self.upsample = mode == "up"
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(8, out_ch)
        self.act = nn.SiLU()
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


def solution_predicted_blocks():
    # Parameters: conv1 (9 in out + out) + GroupNorm (2 out) + conv2 (9 out out + out) + skip (in out + out, when
    # the shape changes). Sides: (h + 2p - k) // s + 1, after the Up x2 in an up block.
    same = (9 * 64 * 128 + 128) + 2 * 128 + (9 * 128 * 128 + 128) + (64 * 128 + 128)  # 64 -> 128: a 1x1 skip
    down = (9 * 16 * 32 + 32) + 2 * 32 + (9 * 32 * 32 + 32) + (16 * 32 + 32)
    up = (9 * 32 * 16 + 16) + 2 * 16 + (9 * 16 * 16 + 16) + (32 * 16 + 16)
    return {"same 64->128": ((128, 7, 7), same),
            "down 16->32": ((32, 4, 4), down),     # (7 + 2 - 3) // 2 + 1 = 4
            "up 32->16": ((16, 14, 14), up)}
