"""The exercises that are not transcription: predict-then-run in notebooks 01, 02, 04, 05 and 06, debug-this in 03."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vae_lib.exercises import ExerciseError
from vae_lib.exercises import elbo, resblock, style, stylevae


# ---------------------------------------------------------------- notebook 01: shapes and parameter counts
def test_predicted_blocks_reference_passes_and_prints_both_columns(capsys):
    assert resblock.check_predicted_blocks(resblock.solution_predicted_blocks) is True
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out and "230,016" in out     # ResBlock(64, 128, "same")


def _changed(key, shape=None, delta=0):
    def predictions():
        answer = resblock.solution_predicted_blocks()
        right_shape, params = answer[key]
        answer[key] = (shape or right_shape, params + delta)
        return answer
    return predictions


@pytest.mark.parametrize("key, shape, delta, hint", [
    ("same 64->128", None, -(64 * 128 + 128), "even a 'same' block needs a 1x1 conv skip"),
    ("down 16->32", None, -(32 + 32 + 32), "biases are missing"),
    ("up 32->16", None, -2 * 16, "GroupNorm's weight and bias"),
    ("down 16->32", None, -(16 * 32 + 32), "the 1x1 skip conv is missing"),
    ("down 16->32", (32, 3, 3), 0, "(h + 2p - k) // s + 1"),
    ("up 32->16", (16, 7, 7), 0, "Up x2 doubles"),
])
def test_predicted_blocks_names_the_slip(key, shape, delta, hint):
    with pytest.raises(ExerciseError) as error:
        resblock.check_predicted_blocks(_changed(key, shape, delta))
    assert hint in str(error.value)


def test_predicted_blocks_accepts_a_batch_axis_and_refuses_other_keys():
    assert resblock.check_predicted_blocks(_changed("up 32->16", (1, 16, 14, 14)))
    with pytest.raises(ExerciseError, match="keys"):
        resblock.check_predicted_blocks(lambda: {"same": ((128, 7, 7), 1)})


# ------------------------------------------------------------------ notebook 02: the nats of a decoder
def test_predicted_nats_reference_passes(capsys):
    assert elbo.check_predicted_nats(elbo.solution_predicted_nats) is True
    assert "543.4" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    ({"logits 0": 784.0}, "bits"),
    ({"best, grey 0.5": math.log(2)}, "one pixel"),
    ({"best, grey 0.5": 0.0}, "fair coin"),
    ({"logits 0": 100.0}, "sigmoid(0)"),
    ({"best, black and white": 10.0}, "certainty"),
])
def test_predicted_nats_names_the_slip(wrong, hint):
    answer = {**elbo.solution_predicted_nats(), **wrong}
    with pytest.raises(ExerciseError) as error:
        elbo.check_predicted_nats(lambda: answer)
    assert hint in str(error.value)


def test_bernoulli_floor_is_the_entropy_of_the_pixels():
    images = torch.tensor([0.0, 1.0, 0.5, 0.5]).view(1, 1, 2, 2)
    assert elbo.bernoulli_floor(images).item() == pytest.approx(2 * math.log(2))
    x = torch.rand(3, 1, 4, 4)
    best = F.binary_cross_entropy_with_logits(torch.logit(x.double()), x.double(), reduction="none").flatten(1).sum(1)
    assert torch.allclose(elbo.bernoulli_floor(x), best)


# ------------------------------------------------------------------- notebook 03: the loss that collapses
def test_fixed_loss_reference_passes_and_the_buggy_loss_does_not():
    assert elbo.check_fixed_loss(elbo.solution_fixed_loss) is True
    with pytest.raises(ExerciseError, match="still gives what buggy_loss gives"):
        elbo.check_fixed_loss(elbo.buggy_loss)


def test_fixed_loss_names_other_slips():
    def summed(logits, x, mu, logvar):
        return elbo.solution_fixed_loss(logits, x, mu, logvar) * len(x)

    with pytest.raises(ExerciseError, match="sum over the batch"):
        elbo.check_fixed_loss(summed)

    def per_image(logits, x, mu, logvar):
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    with pytest.raises(ExerciseError, match="one number"):
        elbo.check_fixed_loss(per_image)


def test_collapse_experiment_shows_the_bug(capsys):
    """The experiment of the exercise: the per-pixel mean collapses every unit, the fixed loss does not.
    (2 x 200 steps of a small MLP VAE on procedural digits: seconds.)"""
    from vae_lib.data.synthetic_digits import render_digits

    images, _ = render_digits(range(1000))
    state = torch.random.get_rng_state()
    buggy = elbo.collapse_experiment(elbo.buggy_loss, images)
    fixed = elbo.collapse_experiment(elbo.solution_fixed_loss, images, label="fixed_loss")
    assert torch.equal(state, torch.random.get_rng_state())
    assert buggy["active_units"] == 0 and buggy["kl"] < 0.1
    assert fixed["active_units"] >= 3 and fixed["reconstruction"] < buggy["reconstruction"]
    out = capsys.readouterr().out
    assert "buggy_loss" in out and "fixed_loss" in out and "units active" in out


# ------------------------------------------------- notebooks 04, 05, 06: codes, AdaIN and PSNR, predicted
PREDICT_THEN_RUN = [(style.check_predicted_codes, style.solution_predicted_codes),
                    (style.check_predicted_adain, style.solution_predicted_adain),
                    (stylevae.check_predicted_psnr, stylevae.solution_predicted_psnr)]


@pytest.mark.parametrize("check, solution", PREDICT_THEN_RUN)
def test_predict_then_run_references_pass_and_print_both_columns(check, solution, capsys):
    assert check(solution) is True
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out
    for key, value in solution().items():
        assert key in out and f"{value:.3f}" in out            # the measured value equals the reference's


@pytest.mark.parametrize("check, solution, wrong, hint", [
    (style.check_predicted_codes, style.solution_predicted_codes, {"rms after PixelNorm, z x 1000": 1000.0},
     "any scale of z cancels"),
    (style.check_predicted_codes, style.solution_predicted_codes, {"norm after PixelNorm": 1.0}, "sqrt(512)"),
    (style.check_predicted_codes, style.solution_predicted_codes, {"spread at psi 0.25": 0.0625}, "not psi squared"),
    (style.check_predicted_adain, style.solution_predicted_adain, {"channel mean": 0.0}, "the style adds y_b"),
    (style.check_predicted_adain, style.solution_predicted_adain, {"channel std, input x 100": 300.0},
     "its scale cancels"),
    (style.check_predicted_adain, style.solution_predicted_adain, {"channel std": 1.0}, "multiplies by y_s"),
    (stylevae.check_predicted_psnr, stylevae.solution_predicted_psnr, {"error 0.1, range [-1, 1]": 13.01},
     "20 log10(R / RMS error)"),
    (stylevae.check_predicted_psnr, stylevae.solution_predicted_psnr, {"error 0.05, range [-1, 1]": 29.03},
     "+6 dB, not +3"),
    (stylevae.check_predicted_psnr, stylevae.solution_predicted_psnr, {"error 0.1, range [0, 1]": 26.02},
     "the width of the range"),
])
def test_predict_then_run_names_the_slip(check, solution, wrong, hint):
    answer = {**solution(), **wrong}
    with pytest.raises(ExerciseError) as error:
        check(lambda: answer)
    assert hint in str(error.value) and list(wrong)[0] in str(error.value)


@pytest.mark.parametrize("check, solution", PREDICT_THEN_RUN)
def test_predict_then_run_refuses_other_keys_and_reports_a_stub(check, solution, capsys):
    with pytest.raises(ExerciseError, match="keys"):
        check(lambda: {"a guess": 1.0})
    with pytest.raises(ExerciseError, match="must be a number"):
        check(lambda: {key: "about three" for key in solution()})

    def stub():
        raise NotImplementedError(f"{check.exercise}: your code here")

    assert check(stub) is False
    assert "not done yet" in capsys.readouterr().out
