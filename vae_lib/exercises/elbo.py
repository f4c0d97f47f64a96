"""Exercises of notebooks 02 (the CVAE and its ELBO) and 03 (KL warm-up, posterior collapse).

Each ``check_*`` runs the student's function on fixed inputs, compares it with what ``vae_lib`` computes
and raises ``ExerciseError`` with a hint about the usual mistake when they differ; on success it prints
a ✔ line. ``solution_*`` are written by hand, as a student would, for reference.

========================  ================================================  ===============================
check                     the student writes                                compared with
========================  ================================================  ===============================
check_gaussian_kl         gaussian_kl(mu, logvar) (B, z) -> (B,) nats       ``losses.kl_standard_normal``
check_reparameterize      reparameterize(mu, logvar) (B, z) -> z (B, z)     mean, spread and gradients of z
check_negative_elbo       negative_elbo(logits, x, mu, logvar) -> (B,)      ``losses.log_likelihood`` + KL
check_cyclical_beta       cyclical_beta(step, total_steps, n_cycles,        ``schedules.CyclicalBeta``
                          ratio, beta_max) -> float
check_active_units        count_active_units(means, threshold) -> int       ``evaluate.active_units``
check_predicted_nats      predicted_nats() -> dict of three numbers        -log p(x|z) measured on three
                          (predict, then run)                               decoders and images
check_fixed_loss          fixed_loss(logits, x, mu, logvar) -> ()           the batch mean of the -ELBO
                          (debug this: ``buggy_loss`` collapses every unit)
========================  ================================================  ===============================

``collapse_experiment(loss_fn, images)`` trains a small MLP VAE for a few hundred steps with a loss
and reports its active units (seconds on a CPU): the experiment of notebook 03's exercise 3.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from vae_lib.evaluate import active_units, bernoulli_entropy_floor
from vae_lib.exercises import ExerciseError, compare_predictions, exercise, passed
from vae_lib.exercises import call_student as _call, check_shape as _check_shape, close as _close, max_diff as _max_diff
from vae_lib.losses import kl_standard_normal, log_likelihood
from vae_lib.schedules import CyclicalBeta

ATOL = 1e-4


# ---- reference solutions -------------------------------------------------------------------------
def solution_gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per image: (B, z) -> (B,) nats, summed over z."""
    return 0.5 * (mu ** 2 + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)


def solution_reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2), eps ~ N(0, I): differentiable in mu and logvar."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def solution_negative_elbo(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                           logvar: torch.Tensor) -> torch.Tensor:
    """-ELBO per image, (B,) nats: Bernoulli -log p(x|z,c) summed over the pixels, plus the KL."""
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    return reconstruction + solution_gaussian_kl(mu, logvar)


def solution_cyclical_beta(step: int, total_steps: int, n_cycles: int = 4, ratio: float = 0.5,
                           beta_max: float = 1.0) -> float:
    """Fu et al. (2019), Eq. 5, 0-based steps: a ramp 0 -> beta_max over the first ``ratio`` of each cycle."""
    cycle = total_steps / n_cycles
    tau = (step % math.ceil(cycle)) / cycle
    return beta_max * min(1.0, tau / ratio)


def solution_active_units(posterior_means: torch.Tensor, threshold: float = 0.01) -> int:
    """The number of units u whose encoder mean varies over the data: Var_n(means[n, u]) > threshold."""
    return int((posterior_means.var(dim=0) > threshold).sum())


def solution_predicted_nats():
    # A decoder's -log p(x|z) = sum over the 784 pixels of -[x log p + (1 - x) log(1 - p)], in nats.
    return {
        "logits 0": 784 * math.log(2),             # p = 1/2 everywhere: log 2 per pixel, whatever x is
        "best, grey 0.5": 784 * math.log(2),       # the best p is x = 1/2: the entropy of a fair coin per pixel
        "best, black and white": 0.0,              # p = x in {0, 1}: the model is sure, and right
    }


def solution_fixed_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    # The bug: binary_cross_entropy_with_logits averages over the pixels by default (reduction="mean"), so the
    # reconstruction weighs 1/784 of what it should against the KL (a beta of 784). Sum over the pixels.
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return (reconstruction + kl).mean()


# ---- notebook 02 ---------------------------------------------------------------------------------
def _posterior_batch():
    gen = torch.Generator().manual_seed(0)
    mu = 1.5 * torch.randn(6, 5, generator=gen)
    logvar = torch.linspace(-3.0, 2.0, 30).reshape(6, 5)
    return mu, logvar


@exercise("gaussian_kl", reference="solution_gaussian_kl")
def check_gaussian_kl(student_fn) -> bool:
    """``student_fn(mu, logvar)`` for (B, z) inputs must return the (B,) KL to N(0, I) in nats."""
    mu, logvar = _posterior_batch()
    want = kl_standard_normal(mu, logvar).sum(dim=1)
    got = _call("gaussian_kl", student_fn, mu, logvar)
    if got.shape == mu.shape and _close(got.sum(dim=1), want):
        raise ExerciseError("gaussian_kl returned the KL of each latent dimension, shape (B, z): sum it over "
                            "the latent dimensions (dim=1) to get one number per image, shape (B,).")
    if got.ndim == 0:
        raise ExerciseError("gaussian_kl returned a single number: return one KL per image, shape (B,) "
                            "(sum over the latent dimensions, not over the batch).")
    _check_shape("gaussian_kl", got, want.shape)
    if _close(got, want):
        zero = _call("gaussian_kl", student_fn, torch.zeros(2, 3), torch.zeros(2, 3))
        if not _close(zero, torch.zeros(2)):
            raise ExerciseError("gaussian_kl(0, 0) must be 0: q = N(0, I) is the prior itself.")
        return passed("gaussian_kl", "equals the closed form 0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)")
    var, std = logvar.exp(), (0.5 * logvar).exp()
    slips = [
        (2 * want, "the factor 1/2 in front is missing"),
        (want / mu.shape[1], "it averages over the latent dimensions: sum them (nats per image)"),
        (-want, "the sign is flipped: a KL divergence is never negative"),
        (0.5 * (mu ** 2 + var - logvar).sum(1), "the -1 inside the bracket is missing (KL(p || p) must be 0)"),
        (0.5 * (mu ** 2 + std - 1 - logvar).sum(1), "exp(logvar) is the variance sigma^2; you used sigma = "
                                                    "exp(logvar / 2)"),
        (0.5 * (mu ** 2 + var - 1 - 2 * logvar).sum(1), "log sigma^2 is logvar itself, not 2 * logvar"),
        (0.5 * (mu + var - 1 - logvar).sum(1), "the mean enters squared: mu^2"),
        (0.5 * (mu ** 2 + logvar.exp() ** 2 - 1 - logvar).sum(1), "exp(logvar) is already the variance; "
                                                                  "do not square it"),
    ]
    hint = next((h for wrong, h in slips if _close(got, wrong)),
                "KL(N(mu, sigma^2) || N(0, 1)) = 0.5 (mu^2 + sigma^2 - 1 - log sigma^2) per dimension, "
                "with sigma^2 = exp(logvar)")
    raise ExerciseError(f"gaussian_kl differs from the closed form (max abs difference "
                        f"{_max_diff(got, want):.3g} nats): {hint}.")


@exercise("reparameterize", reference="solution_reparameterize")
def check_reparameterize(student_fn) -> bool:
    """``student_fn(mu, logvar)`` must return z ~ N(mu, exp(logvar)) (B, z) that is differentiable in both.

    Three checks: the sample mean and standard deviation of many draws; d z / d mu = 1 and
    d z / d logvar = (z - mu) / 2 (true of z = mu + exp(logvar / 2) eps whatever eps was drawn);
    two calls give different z. The global random stream is restored afterwards.
    """
    n, mu_values = 20_000, torch.tensor([-2.0, 0.0, 0.5, 3.0])
    logvar_values = torch.tensor([0.0, -2.0, 1.0, math.log(0.25)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mu = mu_values.repeat(n, 1).requires_grad_(True)
        logvar = logvar_values.repeat(n, 1).requires_grad_(True)
        z = _call("reparameterize", student_fn, mu, logvar, detach=False)
        _check_shape("reparameterize", z, mu.shape)
        again = _call("reparameterize", student_fn, mu, logvar)
    if torch.equal(z.detach(), mu.detach()):
        raise ExerciseError("reparameterize returned mu itself: add the noise, z = mu + sigma * eps with "
                            "eps ~ N(0, I) (torch.randn_like(mu)).")
    if torch.equal(z.detach(), again):
        raise ExerciseError("two calls of reparameterize gave the same z: draw a new eps ~ N(0, I) inside the "
                            "function on every call.")
    mean, std = z.detach().mean(0), z.detach().std(0)
    want_std = (0.5 * logvar_values).exp()
    tolerance = 5 * want_std / math.sqrt(n)      # five standard errors of the mean
    if not torch.all((mean - mu_values).abs() < tolerance + 1e-3):
        raise ExerciseError(f"the mean of z over {n} draws is {_fmt(mean)}, expected mu = {_fmt(mu_values)}: "
                            "eps must have mean 0 (torch.randn_like, not torch.rand_like).")
    if not torch.allclose(std, want_std, rtol=0.05):
        wrong = [(logvar_values.exp(), "exp(logvar) is the variance; the standard deviation is exp(logvar / 2)"),
                 (logvar_values.abs(), "logvar is log sigma^2: sigma = exp(logvar / 2)"),
                 (torch.ones(4), "scale eps by sigma = exp(logvar / 2)"),
                 (torch.full((4,), math.sqrt(1 / 12)), "eps must be standard normal (torch.randn_like), not "
                                                      "uniform (torch.rand_like)")]
        hint = next((h for w, h in wrong if torch.allclose(std, w, rtol=0.05)),
                    "z = mu + exp(logvar / 2) * eps")
        raise ExerciseError(f"the standard deviation of z over {n} draws is {_fmt(std)}, expected "
                            f"exp(logvar / 2) = {_fmt(want_std)}: {hint}.")
    if not z.requires_grad:
        raise ExerciseError("z carries no gradient: build it from mu and logvar with tensor operations "
                            "(no .detach(), no torch.no_grad(), no .item()).")
    grad_mu, grad_logvar = torch.autograd.grad(z.sum(), (mu, logvar), allow_unused=True)
    if grad_mu is None or not torch.allclose(grad_mu, torch.ones_like(grad_mu)):
        raise ExerciseError("d z / d mu should be 1 for every element: z = mu + (something independent of mu). "
                            "(torch.normal(mu, sigma) passes no gradient to mu and sigma: that is what the "
                            "trick is for.)")
    if grad_logvar is None or not torch.allclose(grad_logvar, 0.5 * (z.detach() - mu.detach()), atol=1e-5):
        raise ExerciseError("d z / d logvar should be (z - mu) / 2, the gradient of exp(logvar / 2) * eps: "
                            "the gradient must flow through sigma into logvar (draw eps without gradient, "
                            "then scale it).")
    return passed("reparameterize", f"mean and spread of {n} draws match, gradients reach mu and logvar")

def _elbo_batch(seed: int):
    """A small test batch for the ELBO checks: logits, x (4, 1, 28, 28), mu, logvar (4, z) and the
    reference terms per image, (4,) nats each: the Bernoulli NLL and the KL."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 1, 28, 28, generator=gen)
    logits = 2.0 * torch.randn(4, 1, 28, 28, generator=gen)
    mu, logvar = _posterior_batch()
    mu, logvar = mu[:4], logvar[:4]
    return logits, x, mu, logvar, -log_likelihood(logits, x, "bernoulli"), kl_standard_normal(mu, logvar).sum(dim=1)


@exercise("negative_elbo", reference="solution_negative_elbo")
def check_negative_elbo(student_fn) -> bool:
    """``student_fn(logits, x, mu, logvar)`` must return -ELBO per image, (B,) nats (Bernoulli decoder)."""
    logits, x, mu, logvar, nll, kl = _elbo_batch(seed=1)
    want = nll + kl
    got = _call("negative_elbo", student_fn, logits, x, mu, logvar)
    if got.ndim == 0:
        scalar = [(want.mean(), "it is the mean over the batch"), (want.sum(), "it is the sum over the batch")]
        what = next((h for w, h in scalar if _close(got, w)), "")
        raise ExerciseError(f"negative_elbo returned one number{': ' + what if what else ''}. Return one value "
                            "per image, shape (B,); the Trainer's loss takes the batch mean.")
    _check_shape("negative_elbo", got, want.shape)
    if _close(got, want, atol=1e-3):
        return passed("negative_elbo", "per-image sum of the Bernoulli NLL over 784 pixels plus the KL, in nats")
    pixels = x[0].numel()
    probs = torch.sigmoid(logits)
    slips = [
        (nll / pixels + kl, "the reconstruction term is a mean over the pixels; sum it (log p(x|z) of an image "
                            "is the sum of its 784 pixel terms)"),
        ((nll + kl) / pixels, "it is divided by the number of pixels: keep nats per image"),
        (nll, "the KL term is missing"),
        (nll - kl, "the KL is subtracted; -ELBO = reconstruction + KL"),
        (-nll - kl, "the sign is flipped: return -ELBO, a positive number of nats"),
        (nll + kl / mu.shape[1], "the KL is averaged over the latent dimensions; sum it"),
        (F.binary_cross_entropy_with_logits(probs, x, reduction="none").flatten(1).sum(1) + kl,
         "the sigmoid is applied twice: binary_cross_entropy_with_logits takes the logits themselves"),
        (F.mse_loss(probs, x, reduction="none").flatten(1).sum(1) + kl,
         "that is a squared error; the Bernoulli likelihood is the binary cross-entropy"),
    ]
    hint = next((h for wrong, h in slips if _close(got, wrong, atol=1e-3)),
                "-ELBO = sum over pixels of BCE(logits, x) + 0.5 * sum over z of (mu^2 + exp(logvar) - 1 - logvar)")
    raise ExerciseError(f"negative_elbo differs from the reference (max abs difference "
                        f"{_max_diff(got, want):.3g} nats): {hint}.")


# ---- notebook 03 ---------------------------------------------------------------------------------
_CYCLICAL_CASES = ((100, 4, 0.5, 1.0), (90, 3, 0.25, 1.0), (10, 3, 0.5, 2.0), (50, 1, 1.0, 1.0), (37, 5, 0.8, 0.5))


@exercise("cyclical_beta", reference="solution_cyclical_beta")
def check_cyclical_beta(student_fn) -> bool:
    """``student_fn(step, total_steps, n_cycles, ratio, beta_max)`` must equal ``CyclicalBeta`` at every step."""
    for total, cycles, ratio, beta_max in _CYCLICAL_CASES:
        reference = CyclicalBeta(beta_max, total, cycles, ratio)
        for step in range(total):
            call = (f"cyclical_beta(step={step}, total_steps={total}, n_cycles={cycles}, ratio={ratio}, "
                    f"beta_max={beta_max})")
            try:
                got = student_fn(step, total, cycles, ratio, beta_max)
            except Exception as error:
                raise ExerciseError(f"{call} raised {type(error).__name__}: {error}") from error
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, numbers.Real) or isinstance(got, bool):
                raise ExerciseError(f"{call} returned {got!r}; expected a number.")
            want = reference(step)
            if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                raise ExerciseError(f"{call} returned {got:.4g}, expected {want:.4g}: "
                                    f"{_cyclical_hint(step, total, cycles, ratio, beta_max, got)}.")
    return passed("cyclical_beta", f"equals schedules.CyclicalBeta at every step of {len(_CYCLICAL_CASES)} settings")


def _cyclical_hint(step, total, cycles, ratio, beta_max, got) -> str:
    cycle = total / cycles
    if step == 0 and math.isclose(got, beta_max * min(1.0, (1 / cycle) / ratio)):
        return "steps are 0-based here: the first step (step 0) starts the ramp at beta = 0"
    if math.isclose(got, beta_max * (step % math.ceil(cycle)) / cycle, abs_tol=1e-9):
        return f"the ramp must reach beta_max after the first ratio = {ratio} of each cycle (divide tau by ratio)"
    if got > beta_max + 1e-9:
        return "beta never exceeds beta_max: cap the ramp with min(1, tau / ratio)"
    if cycle != int(cycle):
        return (f"{total} steps in {cycles} cycles: a cycle restarts every ceil(T / M) = {math.ceil(cycle)} steps, "
                f"and tau = (step mod ceil(T / M)) / (T / M), as in Fu et al.'s Eq. 5")
    return "tau = (step mod ceil(T / M)) / (T / M); beta = beta_max * min(1, tau / ratio)"


@exercise("count_active_units", reference="solution_active_units")
def check_active_units(student_fn) -> bool:
    """``student_fn(posterior_means, threshold)`` must count the active units as ``evaluate.active_units``."""
    gen = torch.Generator().manual_seed(2)
    scales = torch.tensor([1.0, 0.5, 0.001, 0.2, 0.01, 0.0, 2.0, 0.03])   # std over the data per unit
    offsets = torch.linspace(-3.0, 3.0, len(scales))                     # a constant shift must not count
    cases = {"8 units of different spreads": offsets + scales * torch.randn(500, len(scales), generator=gen),
             "all inactive": 0.001 * torch.randn(300, 4, generator=gen) + 5.0}
    for label, means in cases.items():
        for threshold in (0.01, 0.1):
            want, _ = active_units(means, threshold)
            call = f"count_active_units(<{label}: means {tuple(means.shape)}>, threshold={threshold})"
            try:
                got = student_fn(means.clone(), threshold)
            except Exception as error:
                raise ExerciseError(f"{call} raised {type(error).__name__}: {error}") from error
            if isinstance(got, torch.Tensor) and got.dtype == torch.bool:
                raise ExerciseError(f"{call} returned a mask; return the number of active units (an int).")
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            if not isinstance(got, numbers.Integral) and not (isinstance(got, float) and got.is_integer()):
                raise ExerciseError(f"{call} returned {got!r}; expected a whole number of units.")
            if int(got) != want:
                per_image = int((means.var(dim=1) > threshold).sum())
                hint = ("the variance is taken over the data (dim=0, one value per unit), not over the units"
                        if got == per_image and per_image != want else
                        "a unit is active when the variance of its mean over the data exceeds the threshold, "
                        "Var_n(means[n, u]) > threshold; its average value does not matter")
                raise ExerciseError(f"{call} returned {got}, expected {want}: {hint}.")
    return passed("count_active_units", "agrees with evaluate.active_units")


# ---- notebook 02, exercise 4: predict, then run -------------------------------------------------
PREDICTED_NATS = {
    "logits 0": "an untrained decoder whose logits are 0 for every pixel, on any 28x28 image",
    "best, grey 0.5": "the best possible decoder for a 28x28 image whose pixels are all 0.5",
    "best, black and white": "the best possible decoder for a 28x28 image of 0s and 1s only",
}


# The lowest -log p(x|z) a Bernoulli decoder can reach on each image, (N,) nats: at p = x it is the
# entropy of each pixel, -x log x - (1 - x) log(1 - x), summed (0 for pixels that are exactly 0 or 1).
bernoulli_floor = bernoulli_entropy_floor


def _measured_nats() -> dict[str, float]:
    """The three numbers of ``PREDICTED_NATS``, measured with the Bernoulli likelihood of ``vae_lib.losses``."""
    gen = torch.Generator().manual_seed(3)
    any_image = torch.rand(1, 1, 28, 28, generator=gen)
    grey = torch.full((1, 1, 28, 28), 0.5)
    black_and_white = (torch.rand(1, 1, 28, 28, generator=gen) > 0.7).float()
    nll = lambda logits, x: -log_likelihood(logits, x, "bernoulli").item()  # noqa: E731
    return {"logits 0": nll(torch.zeros_like(any_image), any_image),
            "best, grey 0.5": nll(torch.logit(grey), grey),
            "best, black and white": nll(torch.where(black_and_white > 0, 30.0, -30.0), black_and_white)}


def _nats_hint(name: str, got: float, want: float) -> str:
    if want > 1 and abs(got - want / math.log(2)) < 0.01 * want / math.log(2):
        return "that is in bits (log base 2); the course counts nats (natural log): 1 bit = ln 2 = 0.693 nats"
    if want > 1 and abs(got - want / 784) < 0.01:
        return "that is one pixel: -log p(x|z) of an image sums its 784 pixels"
    if name == "logits 0":
        return ("logit 0 means p = sigmoid(0) = 1/2 for every pixel, and -[x log 1/2 + (1 - x) log 1/2] = log 2 "
                "whatever x is")
    if name == "best, grey 0.5":
        return ("no decoder can be sure of a grey pixel: the best p is 0.5 itself, which still costs "
                "-[0.5 log 0.5 + 0.5 log 0.5] = log 2 per pixel (the entropy of a fair coin)")
    return "with p = x in {0, 1} every pixel is predicted with certainty: -log 1 = 0"


@exercise("predicted_nats", reference="solution_predicted_nats")
def check_predicted_nats(student_fn) -> bool:
    """Compare ``student_fn()`` (name -> nats per image, the keys of ``PREDICTED_NATS``) with the measured
    -log p(x|z); prints both side by side. A prediction passes within 1 % (or 0.5 nats)."""
    compare_predictions("predicted_nats", student_fn, _measured_nats(), PREDICTED_NATS, rel=0.01, atol=0.5,
                        hint=_nats_hint, unit="nats per image")
    return passed("predicted_nats", "an untrained decoder, and the floors of a grey and of a black-and-white image")


# ---- notebook 03, exercise 3: debug this ---------------------------------------------------------
def buggy_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A colleague's loss for a batch: the mean -ELBO, Bernoulli decoder. It runs, it goes down, and every
    latent unit collapses. There is one bug."""
    reconstruction = F.binary_cross_entropy_with_logits(logits, x)
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return reconstruction + kl.mean()


@exercise("fixed_loss", reference="solution_fixed_loss")
def check_fixed_loss(student_fn) -> bool:
    """``student_fn(logits, x, mu, logvar)`` must return one number, the batch mean of the per-image -ELBO."""
    logits, x, mu, logvar, nll, kl = _elbo_batch(seed=5)
    want = (nll + kl).mean()
    got = _call("fixed_loss", student_fn, logits, x, mu, logvar)
    if got.numel() != 1:
        raise ExerciseError(f"fixed_loss returned shape {tuple(got.shape)}: the Trainer needs one number, the mean "
                            "over the batch of each image's -ELBO.")
    got = got.reshape(())
    if _close(got, want, atol=1e-3):
        return passed("fixed_loss", "the batch mean of (reconstruction summed over the pixels + KL), in nats")
    pixels = x[0].numel()
    slips = [
        (buggy_loss(logits, x, mu, logvar), "it still gives what buggy_loss gives. Compare its two terms for one "
                                            "image: over how many pixels is the reconstruction spread, and how "
                                            "is it combined over them? (Read the default arguments of "
                                            "F.binary_cross_entropy_with_logits.)"),
        ((nll + kl).sum(), "that is the sum over the batch: take the mean, so the loss does not grow with the batch"),
        ((nll / pixels + kl).mean(), "the reconstruction is still a mean over the pixels: sum them"),
        ((nll + kl / mu.shape[1]).mean(), "the KL is averaged over the latent dimensions: sum it"),
        (nll.mean(), "the KL term is missing"),
    ]
    hint = next((h for wrong, h in slips if _close(got, wrong, atol=1e-3)),
                "per image: the BCE summed over the 784 pixels plus the KL summed over z; then the batch mean")
    raise ExerciseError(f"fixed_loss = {got.item():.2f} nats, the -ELBO is {want.item():.2f}: {hint}")


class _SmallVAE(torch.nn.Module):
    """A one-hidden-layer MLP VAE for 28x28 images: small enough to train in seconds."""

    def __init__(self, z_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, hidden), torch.nn.SiLU(),
                                           torch.nn.Linear(hidden, 2 * z_dim))
        self.decoder = torch.nn.Sequential(torch.nn.Linear(z_dim, hidden), torch.nn.SiLU(),
                                           torch.nn.Linear(hidden, 784))

    def forward(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decoder(z).view_as(x), mu, logvar


def collapse_experiment(loss_fn, images: torch.Tensor, steps: int = 200, batch_size: int = 64, z_dim: int = 8,
                        seed: int = 0, label: str | None = None) -> dict:
    """Train a small MLP VAE (z_dim 8) on ``images`` (N, 1, 28, 28) in [0, 1] with ``loss_fn(logits, x, mu,
    logvar)`` -> one number, Adam lr 1e-3; then score the first 1000 images. Returns and prints the active
    units (Var of the encoder means > 0.01), the KL and the reconstruction term (nats per image).
    Seconds on a CPU; the global random stream is left as it was."""
    images = images[:, :1].float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _SmallVAE(z_dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        order = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            x = images[torch.randint(0, len(images), (batch_size,), generator=order)]
            logits, mu, logvar = model(x)
            loss = loss_fn(logits, x, mu, logvar)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            x = images[:1000]
            mu, logvar = model.encoder(x).chunk(2, dim=1)
            result = {"active_units": active_units(mu, 0.01)[0], "z_dim": z_dim,
                      "kl": kl_standard_normal(mu, logvar).sum(dim=1).mean().item(),
                      "reconstruction": -log_likelihood(model.decoder(mu).view_as(x), x, "bernoulli").mean().item()}
    name = label or getattr(loss_fn, "__name__", "loss")
    print(f"{name:<12} {steps} steps: {result['active_units']} of {z_dim} units active, KL {result['kl']:.2f} nats, "
          f"reconstruction {result['reconstruction']:.1f} nats per image")
    return result


# ---- helpers -------------------------------------------------------------------------------------












def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values.tolist()) + "]"
