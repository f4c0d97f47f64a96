"""The exercise checks of notebooks 02 and 03 (vae_lib.exercises.elbo): right answers pass, the usual
wrong ones fail with a message that names the mistake."""
import math

import pytest
import torch
import torch.nn.functional as F

from vae_lib.exercises import ExerciseError
from vae_lib.exercises import elbo as ex


def fails_with(check, student_fn, match):
    with pytest.raises(ExerciseError, match=match):
        check(student_fn)


# ---- the closed-form KL ------------------------------------------------------------------------
def test_gaussian_kl_right_answers_pass(capsys):
    assert ex.check_gaussian_kl(ex.solution_gaussian_kl) is True
    assert "✔ gaussian_kl" in capsys.readouterr().out

    def through_distributions(mu, logvar):      # a different, correct route
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        return torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)

    assert ex.check_gaussian_kl(through_distributions) is True


@pytest.mark.parametrize("wrong, match", [
    (lambda mu, lv: (mu ** 2 + lv.exp() - 1 - lv).sum(1), "factor 1/2"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).mean(1), "averages over the latent dimensions"),
    (lambda mu, lv: -0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(1), "sign"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(1), "-1"),
    (lambda mu, lv: 0.5 * (mu ** 2 + (0.5 * lv).exp() - 1 - lv).sum(1), "variance sigma\\^2"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - 2 * lv).sum(1), "not 2 \\* logvar"),
    (lambda mu, lv: 0.5 * (mu + lv.exp() - 1 - lv).sum(1), "mu\\^2"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv), "shape \\(B, z\\).*sum it"),
    (lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(), "single number"),
    (lambda mu, lv: mu.abs().sum(1), "0.5 \\(mu\\^2 \\+ sigma\\^2 - 1 - log sigma\\^2\\)"),
    (lambda mu, lv: 1 / 0, "raised ZeroDivisionError"),
    (lambda mu, lv: 3.0, "must return a torch.Tensor"),
])
def test_gaussian_kl_usual_mistakes_are_named(wrong, match):
    fails_with(ex.check_gaussian_kl, wrong, match)


# ---- the reparameterisation --------------------------------------------------------------------
def test_reparameterize_right_answers_pass_and_leave_the_random_stream_alone():
    state = torch.random.get_rng_state()
    assert ex.check_reparameterize(ex.solution_reparameterize) is True
    assert torch.equal(torch.random.get_rng_state(), state)

    def with_explicit_std(mu, logvar):
        std = torch.sqrt(torch.exp(logvar))
        return std * torch.randn(mu.shape) + mu

    assert ex.check_reparameterize(with_explicit_std) is True


@pytest.mark.parametrize("wrong, match", [
    (lambda mu, lv: mu, "returned mu itself"),
    (lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.ones_like(mu), "same z"),
    (lambda mu, lv: mu + torch.exp(lv) * torch.randn_like(mu), "exp\\(logvar\\) is the variance"),
    (lambda mu, lv: mu + torch.randn_like(mu), "scale eps by sigma"),
    (lambda mu, lv: mu + torch.exp(0.5 * lv) * torch.rand_like(mu), "mean 0"),
    (lambda mu, lv: torch.normal(mu, torch.exp(0.5 * lv)), "d z / d mu.*torch.normal"),
    (lambda mu, lv: (mu + torch.exp(0.5 * lv) * torch.randn_like(mu)).detach(), "no gradient"),
    (lambda mu, lv: mu + torch.exp(0.5 * lv).detach() * torch.randn_like(mu), "d z / d logvar"),
    (lambda mu, lv: mu[:1] + torch.randn(2, 4), "shape"),
])
def test_reparameterize_usual_mistakes_are_named(wrong, match):
    fails_with(ex.check_reparameterize, wrong, match)


# ---- the per-image -ELBO -----------------------------------------------------------------------
def kl(mu, logvar):
    """The KL written out independently of vae_lib, per image."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def bernoulli_nll(logits, x):
    """-log p(x|logits) per image, written with probabilities (not via vae_lib or BCE-with-logits)."""
    p = torch.sigmoid(logits.double())
    x = x.double()
    return -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)


def test_negative_elbo_right_answers_pass():
    assert ex.check_negative_elbo(ex.solution_negative_elbo) is True
    assert ex.check_negative_elbo(lambda logits, x, mu, lv: (bernoulli_nll(logits, x) + kl(mu, lv).double())
                                  .float()) is True


@pytest.mark.parametrize("wrong, match", [
    (lambda lo, x, mu, lv: bernoulli_nll(lo, x) / 784 + kl(mu, lv), "mean over the pixels; sum"),
    (lambda lo, x, mu, lv: (bernoulli_nll(lo, x) + kl(mu, lv)) / 784, "divided by the number of pixels"),
    (lambda lo, x, mu, lv: bernoulli_nll(lo, x), "KL term is missing"),
    (lambda lo, x, mu, lv: bernoulli_nll(lo, x) - kl(mu, lv), "KL is subtracted"),
    (lambda lo, x, mu, lv: -bernoulli_nll(lo, x) - kl(mu, lv), "sign is flipped"),
    (lambda lo, x, mu, lv: bernoulli_nll(lo, x) + kl(mu, lv) / 5, "averaged over the latent dimensions"),
    (lambda lo, x, mu, lv: bernoulli_nll(torch.sigmoid(lo), x) + kl(mu, lv), "sigmoid is applied twice"),
    (lambda lo, x, mu, lv: F.mse_loss(torch.sigmoid(lo), x, reduction="none").flatten(1).sum(1) + kl(mu, lv),
     "squared error"),
    (lambda lo, x, mu, lv: (bernoulli_nll(lo, x) + kl(mu, lv)).mean(), "one number: it is the mean over the batch"),
    (lambda lo, x, mu, lv: (bernoulli_nll(lo, x) + kl(mu, lv)).sum(), "one number: it is the sum over the batch"),
    (lambda lo, x, mu, lv: bernoulli_nll(lo, x) + 1.0, "max abs difference"),
])
def test_negative_elbo_usual_mistakes_are_named(wrong, match):
    fails_with(ex.check_negative_elbo, wrong, match)


# ---- the cyclical schedule ---------------------------------------------------------------------
def cyclical_by_hand(step, total_steps, n_cycles=4, ratio=0.5, beta_max=1.0):
    """Fu et al.'s Eq. 5 written independently: position in the cycle, then a capped ramp."""
    period = math.ceil(total_steps / n_cycles)
    position = (step % period) / (total_steps / n_cycles)
    return beta_max if position >= ratio else beta_max * position / ratio


def test_cyclical_beta_right_answers_pass():
    assert ex.check_cyclical_beta(ex.solution_cyclical_beta) is True
    assert ex.check_cyclical_beta(cyclical_by_hand) is True
    assert ex.check_cyclical_beta(lambda *args: torch.tensor(cyclical_by_hand(*args))) is True


def test_cyclical_beta_values_by_hand():
    # 100 steps, 4 cycles of 25, ramp over the first 12.5 steps
    values = [ex.solution_cyclical_beta(s, 100) for s in (0, 5, 12, 13, 24, 25, 30, 99)]
    assert values == pytest.approx([0.0, 0.4, 0.96, 1.0, 1.0, 0.0, 0.4, 1.0])


@pytest.mark.parametrize("wrong, match", [
    (lambda s, t, m, r, b: cyclical_by_hand(s + 1, t, m, r, b), "0-based"),
    (lambda s, t, m, r, b: b * (s % math.ceil(t / m)) / (t / m), "divide tau by ratio"),
    (lambda s, t, m, r, b: b * ((s % math.ceil(t / m)) / (t / m)) / r, "cap the ramp"),
    (lambda s, t, m, r, b: b * min(1.0, ((s % (t / m)) / (t / m)) / r), "ceil\\(T / M\\) = 4"),
    (lambda s, t, m, r, b: b * min(1.0, ((s % (t // m)) / (t // m)) / r), "ceil\\(T / M\\)"),
    (lambda s, t, m, r, b: "1.0", "expected a number"),
    (lambda s, t, m, r, b: [][0], "raised IndexError"),
])
def test_cyclical_beta_usual_mistakes_are_named(wrong, match):
    fails_with(ex.check_cyclical_beta, wrong, match)


# ---- active units ------------------------------------------------------------------------------
def test_active_units_right_answers_pass():
    assert ex.check_active_units(ex.solution_active_units) is True
    biased = lambda means, threshold: sum(float(v) > threshold for v in means.var(0, unbiased=False))  # noqa: E731
    assert ex.check_active_units(biased) is True
    assert ex.check_active_units(lambda means, t: torch.count_nonzero(means.var(0) > t)) is True


@pytest.mark.parametrize("wrong, match", [
    (lambda m, t: int((m.var(1) > t).sum()), "over the data \\(dim=0"),
    (lambda m, t: int((m.mean(0).abs() > t).sum()), "its average value does not matter"),
    (lambda m, t: int((m.std(0) > t).sum()), "Var_n"),
    (lambda m, t: m.var(0) > t, "returned a mask"),
    (lambda m, t: 2.5, "whole number"),
    (lambda m, t: m.var(0).mean(), "whole number"),
])
def test_active_units_usual_mistakes_are_named(wrong, match):
    fails_with(ex.check_active_units, wrong, match)


def test_exercise_errors_are_assertion_errors():
    assert issubclass(ExerciseError, AssertionError)
    fails_with(ex.check_gaussian_kl, "not a function", "expected a function")
