"""Exercises of notebooks 06 (the StyleGAN-VAE) and 07 (the perceptual loss), checked against vae_lib.

Each ``check_*`` calls the student's function on fixed inputs, compares it with what ``vae_lib``
computes, and raises ``ExerciseError`` with a hint about the usual mistake when they differ.
``solution_*`` are written by hand, as a student would, for reference.

=========================  ==============================================  ===================================
check                      the student writes                              compared with
=========================  ==============================================  ===================================
check_style_vae_loss       style_vae_loss(x_hat, x, mu, logvar, beta) -> ()  ``StyleVAELoss(perceptual_weight=0)``
check_psnr                 psnr(x, y, value_range) -> (B,) dB              ``vae_lib.evaluate.psnr``
check_predicted_psnr       predicted_psnr() -> 3 numbers (predict, then    measured with ``vae_lib.evaluate.psnr``
                           run)
check_aggregate_moments    aggregate_moments(mu, logvar) -> (z,), (z, z)   ``models.sampling.aggregate_gaussian``
check_gram_matrix          gram_matrix(features) (B, C, H, W) -> (B, C, C)  F F^T / (H W), F = features (B, C, HW)
check_perceptual_distance  perceptual_distance(vgg, x_hat, x) -> (B,)      ``VGGPerceptual.forward``
check_pick_layers          pick_layers(available) -> tuple of layer names  the goal: with those layers, a 1-px
                                                                           shift is closer than a blur
=========================  ==============================================  ===================================

``check_pick_layers`` has no single right answer: it measures, with the student's layers, how far a
1-px shift and a Gaussian blur (sigma 1.5 px, the damage experiment's) are from the images, says
which the layers rank closer, and passes when it is the shift (pixel MSE ranks the blur closer).
"""
from __future__ import annotations

import functools
import math
import warnings

import torch
from torchvision.transforms.functional import gaussian_blur

from vae_lib.data import load_dataset
from vae_lib.evaluate import psnr as reference_psnr
from vae_lib.exercises import ExerciseError, compare_predictions, exercise, passed
from vae_lib.exercises import call_student as _call, close as _close, max_diff as _max_diff
from vae_lib.losses import kl_standard_normal
from vae_lib.losses import StyleVAELoss
from vae_lib.models.sampling import aggregate_gaussian
from vae_lib.perceptual import (DAMAGE_BLUR_KERNEL, DAMAGE_BLUR_SIGMA, FeatureDistance, VGGPerceptual,
                                vgg19_layer_names)

PSNR_ATOL_DB = 1e-3
BLUR_SIGMA, BLUR_KERNEL = DAMAGE_BLUR_SIGMA, DAMAGE_BLUR_KERNEL     # the damage experiment's blur (notebook 07)
RELUS_UP_TO_4_4 = tuple(name for name in vgg19_layer_names()[:27] if name.startswith("relu"))


# ---- reference solutions -------------------------------------------------------------------------
def solution_style_vae_loss(x_hat: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                            beta: float) -> torch.Tensor:
    """The card's loss without the perceptual term: mean over the batch of ||x - x_hat||^2 + beta KL."""
    squared_error = ((x_hat - x) ** 2).sum(dim=(1, 2, 3))
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(dim=1)
    return (squared_error + beta * kl).mean()


def solution_psnr(x: torch.Tensor, y: torch.Tensor, value_range=(0.0, 1.0)) -> torch.Tensor:
    """10 log10(R^2 / MSE) per image, R = hi - lo; x, y (B, C, H, W) -> (B,) dB."""
    lo, hi = value_range
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    return 10 * torch.log10((hi - lo) ** 2 / mse)


def solution_aggregate_moments(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (z,) and covariance (z, z) of the mixture q(z) = (1/N) sum_n N(mu_n, diag exp(logvar_n));
    mu, logvar (N, z)."""
    loc = mu.mean(dim=0)
    centred = mu - loc
    # The law of total variance: the spread of the means, plus the mean spread of each posterior around its own.
    cov = centred.T @ centred / len(mu) + torch.diag(logvar.exp().mean(dim=0))
    return loc, cov


def solution_gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G[b, c, d] = mean over the positions of features[b, c] * features[b, d]; (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def solution_perceptual_distance(vgg: VGGPerceptual, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """D * sum over layers of the mean squared feature difference, per image; D = C H W of one image."""
    total = 0
    for a, t in zip(vgg.activations(x_hat), vgg.activations(x)):
        total = total + ((a - t) ** 2).mean(dim=(1, 2, 3))
    return x[0].numel() * total


def solution_pick_layers(available: tuple[str, ...]) -> tuple[str, ...]:
    """The deepest layer only: it has seen the image through every pooling before it, so moving the image
    by one pixel barely changes it, while a blur takes away the edges and textures it responds to."""
    return (available[-1],)


# ---- checks --------------------------------------------------------------------------------------
@exercise("style_vae_loss", reference="solution_style_vae_loss")
def check_style_vae_loss(student_fn) -> bool:
    """``student_fn(x_hat, x, mu, logvar, beta)`` must equal ``StyleVAELoss(perceptual_weight=0)``'s "loss"."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 6, 6, generator=gen) * 2 - 1
    x_hat = torch.tanh(x + 0.4 * torch.randn(x.shape, generator=gen))
    mu, logvar = torch.randn(3, 5, generator=gen), 0.8 * torch.randn(3, 5, generator=gen)
    loss = StyleVAELoss(perceptual_weight=0.0, vgg_weights=None)
    squared_error = (x_hat - x).pow(2).flatten(1)
    kl = kl_standard_normal(mu, logvar)
    kl_log_sigma = 0.5 * (mu ** 2 + (2 * logvar).exp() - 1 - 2 * logvar)
    for beta in (0.3, 1.0, 0.0):
        got = _call("style_vae_loss", student_fn, x_hat, x, mu, logvar, beta)
        if got.numel() != 1:
            raise ExerciseError(f"style_vae_loss returned shape {tuple(got.shape)}: return one number, the "
                                "mean over the batch of each image's loss.")
        got = got.reshape(())
        want = loss(lambda _: (x_hat, mu, logvar), (x,), beta=beta)["loss"]
        if _close(got, want):
            continue
        wrong = {
            "you averaged the squared error over the pixels: the card's ||x - x_hat||^2 is a sum over the "
            "C H W values of each image (a Gaussian log-likelihood sums over pixels)":
                (squared_error.mean(1) + beta * kl.sum(1)).mean(),
            "you averaged the KL over the latent dimensions: it is a sum over them, nats per image":
                (squared_error.sum(1) + beta * kl.mean(1)).mean(),
            "beta is missing: the KL term is multiplied by beta (0 during the warm-up's first step)":
                (squared_error.sum(1) + kl.sum(1)).mean(),
            "the KL enters the loss with a + sign (it is a cost), and KL = 0.5 sum(mu^2 + sigma^2 - 1 - log sigma^2) >= 0":
                (squared_error.sum(1) - beta * kl.sum(1)).mean(),
            "logvar is log sigma^2, so sigma^2 = exp(logvar), not exp(2 logvar)":
                (squared_error.sum(1) + beta * kl_log_sigma.sum(1)).mean(),
            "you summed over the batch: the loss is the mean over the images of the batch":
                (squared_error.sum(1) + beta * kl.sum(1)).sum(),
        }
        hint = next((h for h, value in wrong.items() if _close(got, value)),
                    "per image: sum over pixels of (x - x_hat)^2 plus beta times the KL summed over z; then the "
                    "mean over the batch")
        raise ExerciseError(f"style_vae_loss(beta={beta}) = {got.item():.4f}, the reference gives "
                            f"{want.item():.4f}: {hint}.")
    return passed("style_vae_loss", "equals StyleVAELoss with perceptual_weight=0 for beta in 0, 0.3, 1")


@exercise("psnr_db", reference="solution_psnr")
def check_psnr(student_fn) -> bool:
    """``student_fn(x, y, value_range)`` must equal ``vae_lib.evaluate.psnr`` (dB per image), in [0, 1] and [-1, 1]."""
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(4, 3, 8, 8, generator=gen)
    noise = torch.randn(x.shape, generator=gen) * torch.tensor([0.02, 0.05, 0.1, 0.2])[:, None, None, None]
    for value_range in ((0.0, 1.0), (-1.0, 1.0)):
        lo, hi = value_range
        a, b = lo + (hi - lo) * x, lo + (hi - lo) * (x + noise)
        got = _call("psnr", student_fn, a, b, value_range)
        want = reference_psnr(a, b, value_range).float()
        if got.shape != want.shape:
            hint = (" (one value per image: average the squared error over each image's C, H, W, not over the "
                    "whole batch)" if got.numel() == 1 else "")
            raise ExerciseError(f"psnr returned shape {tuple(got.shape)}, expected {tuple(want.shape)}{hint}.")
        got = got.float()
        if _close(got, want, atol=PSNR_ATOL_DB):
            continue
        diff = (got - want).mean().item()
        if abs(diff + 20 * math.log10(2)) < 1e-2:
            hint = "the peak is the width of the value range, hi - lo (2 for images in [-1, 1]), not 1"
        elif _close(got, 2 * want, atol=1e-2):
            hint = "10 log10 of a ratio of powers (R^2 / MSE) -- or 20 log10(R / RMSE) -- not 20 log10(R^2 / MSE)"
        elif _close(got, want * math.log(10), atol=1e-2):
            hint = "decibels use log10, not the natural logarithm"
        elif got.std() < 1e-3:
            hint = "every image got the same value: average the squared error over each image (dims 1, 2, 3)"
        else:
            hint = "PSNR = 10 log10((hi - lo)^2 / MSE), MSE the mean of (x - y)^2 over one image's values"
        raise ExerciseError(f"psnr(..., value_range={value_range}) differs from vae_lib.evaluate.psnr "
                            f"(max |diff| {_max_diff(got, want):.3g} dB): {hint}.")
    return passed("psnr", "equals vae_lib.evaluate.psnr for images in [0, 1] and in [-1, 1]")


@exercise("aggregate_moments", reference="solution_aggregate_moments")
def check_aggregate_moments(student_fn) -> bool:
    """``student_fn(mu, logvar)`` must give the mean and covariance of ``models.sampling.aggregate_gaussian``."""
    gen = torch.Generator().manual_seed(8)
    n, z = 6, 3          # few codes, so that 1/N and 1/(N - 1) differ clearly
    mu = torch.randn(n, z, generator=gen) @ torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.5]]) + 2.0
    logvar = torch.randn(n, z, generator=gen) - 1.0
    got = _call("aggregate_moments", student_fn, mu, logvar, tensor=False)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(isinstance(t, torch.Tensor) for t in got):
        raise ExerciseError("aggregate_moments must return two tensors: (loc, cov), the mean (z,) and the "
                            "covariance (z, z).")
    loc, cov = (t.detach().double() for t in got)
    want = aggregate_gaussian(mu, logvar)
    want_loc, want_cov = want.loc.double(), want.covariance_matrix.double()
    if loc.shape != want_loc.shape or cov.shape != want_cov.shape:
        raise ExerciseError(f"aggregate_moments returned shapes {tuple(loc.shape)} and {tuple(cov.shape)}, expected "
                            f"{tuple(want_loc.shape)} and {tuple(want_cov.shape)}: the mean over the N codes of each "
                            "dimension, and a z x z matrix.")
    if not _close(loc, want_loc, atol=1e-4):
        raise ExerciseError("loc differs from the mean of the posterior means (mu.mean(dim=0)), max |diff| "
                            f"{_max_diff(loc, want_loc):.3g}.")
    if _close(cov, want_cov, atol=1e-4):
        return passed("aggregate_moments", "the mean and covariance of the mixture of the N posteriors")
    mu64, var64 = mu.double(), logvar.double().exp()
    spread = (mu64 - mu64.mean(0)).T @ (mu64 - mu64.mean(0))
    wrong = {
        "the posteriors' own spread is missing: q(z) is a mixture of Gaussians, each with variance sigma_n^2, so "
        "add diag(mean over n of exp(logvar_n)) to the covariance of the means": spread / n,
        "the covariance of a mixture divides by N, not N - 1 (torch.cov's default estimates the covariance of "
        "another sample; here the N components are the whole distribution)":
            spread / (n - 1) + torch.diag(var64.mean(0)),
        "logvar is log sigma^2: the variances are exp(logvar)": spread / n + torch.diag(logvar.double().mean(0)),
        "keep the covariances between dimensions (the codes of one image move together): use "
        "(mu - loc)^T (mu - loc) / N, not only its diagonal": torch.diag(spread.diagonal() / n + var64.mean(0)),
    }
    hint = next((h for h, value in wrong.items() if _close(cov, value, atol=1e-4)),
                "cov = (mu - loc)^T (mu - loc) / N + diag(mean over n of exp(logvar_n))")
    raise ExerciseError(f"cov differs from the reference (max |diff| {_max_diff(cov, want_cov):.3g}): {hint}.")


@exercise("gram_matrix", reference="solution_gram_matrix")
def check_gram_matrix(student_fn) -> bool:
    """``student_fn(features)`` for (B, C, H, W) features must give the (B, C, C) Gram matrices / (H W)."""
    gen = torch.Generator().manual_seed(6)
    features = torch.relu(torch.randn(2, 4, 3, 5, generator=gen))
    b, c, h, w = features.shape
    got = _call("gram_matrix", student_fn, features)
    want = torch.einsum("bchw,bdhw->bcd", features, features) / (h * w)
    if got.shape != want.shape:
        hint = {(b, h * w, h * w): ": that is F^T F, the positions against each other; the Gram matrix is F F^T, "
                                   "channels against channels, with F = features.reshape(B, C, H * W)",
                (c, c): ": keep the batch axis, one Gram matrix per image (torch.bmm or @ on (B, C, HW))"}
        raise ExerciseError(f"gram_matrix returned shape {tuple(got.shape)}, expected {tuple(want.shape)}"
                            f"{hint.get(tuple(got.shape), '')}.")
    if not _close(got, want):
        if _close(got, want * h * w):
            hint = "divide by H W, the number of positions (a mean over them), so the value does not grow with the image"
        elif _close(got, want / c):
            hint = "divide by H W only (the mean over positions), not by C H W"
        else:
            hint = ("G[b, c, d] = sum over positions p of F[b, c, p] F[b, d, p] / (H W), with "
                    "F = features.reshape(B, C, H * W); do not mix the images of the batch")
        raise ExerciseError(f"gram_matrix differs from the reference (max |diff| {_max_diff(got, want):.3g}): {hint}.")
    return passed("gram_matrix", "equals F F^T / (H W) for each image")


@exercise("perceptual_distance", reference="solution_perceptual_distance")
def check_perceptual_distance(student_fn) -> bool:
    """``student_fn(vgg, x_hat, x)`` must equal ``vgg(x_hat, x)`` for a (random-weight) ``VGGPerceptual``."""
    vgg = _small_vgg()
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    x_hat = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    with torch.no_grad():
        got = _call("perceptual_distance", student_fn, vgg, x_hat, x)
        want = vgg(x_hat, x)
        if got.shape != want.shape:
            raise ExerciseError(f"perceptual_distance returned shape {tuple(got.shape)}, expected "
                                f"{tuple(want.shape)}: one distance per image (average within each image only).")
        if _close(got, want, atol=1e-3 * want.abs().max().item()):
            return passed("perceptual_distance", "equals VGGPerceptual.forward")
        pairs = list(zip(vgg.activations(x_hat), vgg.activations(x)))
        per_layer_mean = torch.stack([(a - t).pow(2).flatten(1).mean(1) for a, t in pairs])
        per_layer_sum = torch.stack([(a - t).pow(2).flatten(1).sum(1) for a, t in pairs])
        d = x[0].numel()
    wrong = {
        "multiply by D = C H W of the input image (3 * 16 * 16 here): that puts the distance on the scale of a "
        "per-image sum of squared pixel errors": per_layer_mean.sum(0),
        "you summed each layer's squared error over its values: take the mean over each layer's C H W values "
        "(so a wide shallow layer does not drown the deep ones), then multiply by D": per_layer_sum.sum(0),
        "add the layers' distances up; do not average them": d * per_layer_mean.mean(0),
        "compare the VGG activations of x_hat and x (vgg.activations), not the pixels":
            d * (x_hat - x).pow(2).flatten(1).mean(1),
    }
    rtol = 1e-3
    hint = next((h for h, value in wrong.items() if _close(got, value, atol=rtol * value.abs().max().item())),
                "D * sum over layers l of mean((phi_l(x_hat) - phi_l(x))^2 over C_l H_l W_l), per image")
    raise ExerciseError(f"perceptual_distance differs from VGGPerceptual (got {got.tolist()}, expected "
                        f"{want.tolist()}): {hint}.")


@exercise("pick_layers", reference="solution_pick_layers")
def check_pick_layers(student_fn, features: FeatureDistance | None = None, images: torch.Tensor | None = None
                      ) -> bool:
    """``student_fn(available)`` -> the layers (a tuple of names out of ``available``, the layers of
    ``features``) with which the perceptual distance ranks a 1-px shift of ``images`` closer than a
    blur (Gaussian, sigma 1.5 px). Measures both distances (mean over the images) and says which is closer.

    features: a perceptual distance built with every layer the student may choose (default: random
        VGG19 features, every ReLU up to relu4_4), e.g. ``feature_distance("judge", judge=judge)``.
    images: (B, C, H, W) in [-1, 1] (default: 8 shapes at the features' size, 32 for VGG19).
    """
    features = _small_vgg(RELUS_UP_TO_4_4) if features is None else features
    available = tuple(features.layers)
    if images is None:
        size = features.judge.image_size if hasattr(features, "judge") else 32
        images = load_dataset("shapes", n=8, size=size, verbose=False).images
    chosen = _call("pick_layers", student_fn, available, tensor=False)
    if isinstance(chosen, str):
        raise ExerciseError(f"pick_layers returned the string {chosen!r}: return a tuple of names, e.g. "
                            f"({chosen!r},).")
    if not isinstance(chosen, (tuple, list)) or not chosen or any(name not in available for name in chosen):
        raise ExerciseError(f"pick_layers returned {chosen!r}: return a non-empty tuple of names out of "
                            f"{', '.join(available)}.")
    chosen = tuple(chosen)
    shifted = images.roll(1, dims=-1)
    blurred = gaussian_blur(images, kernel_size=BLUR_KERNEL, sigma=BLUR_SIGMA)
    with torch.no_grad():
        shift, blur = (features.per_layer(damaged, images)[[available.index(name) for name in chosen]].sum(0)
                       .mean().item() for damaged in (shifted, blurred))
    pixels = ((shifted - images).pow(2).mean().item(), (blurred - images).pow(2).mean().item())
    measured = (f"with {', '.join(chosen)} ({features.name}), the 1-px shift is at {shift:.3g} and the blur "
                f"(sigma {BLUR_SIGMA} px) at {blur:.3g}; pixel MSE: shift {pixels[0]:.3g}, blur {pixels[1]:.3g}")
    if shift < blur:
        return passed("pick_layers", f"{measured}: your layers rank the shift closer, as a viewer would")
    raise ExerciseError(f"{measured}: your layers rank the blur closer, as pixel MSE does. Shallow layers "
                        "see pixels and edges where they are, so a shift moves all of them; deeper layers have "
                        "pooled over a few pixels: try those.")


# ---- helpers -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _small_vgg(layers: tuple[str, ...] = ("relu1_2", "relu2_2")) -> VGGPerceptual:
    """Random-weight VGG19 with ``layers`` (default cut after relu2_2), built once; the global RNG is
    left as it was."""
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")    # the "random features" warning: intended here
        torch.manual_seed(0)
        return VGGPerceptual(layers=layers, weights=None)


# ---- notebook 06, exercise 3: predict, then run -------------------------------------------------
PREDICTED_PSNR = {
    "error 0.1, range [-1, 1]": "the PSNR (dB) of a reconstruction that is off by 0.1 on every value of an image "
                                "in [-1, 1]",
    "error 0.05, range [-1, 1]": "the same with an error of 0.05 on every value",
    "error 0.1, range [0, 1]": "an error of 0.1 on every value of an image in [0, 1]",
}


def _measured_psnr() -> dict[str, float]:
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(2, 3, 8, 8, generator=gen) * 1.6 - 0.8      # away from the range's ends
    signs = torch.where(torch.rand(x.shape, generator=gen) < 0.5, -1.0, 1.0)
    return {"error 0.1, range [-1, 1]": reference_psnr(x + 0.1 * signs, x, (-1.0, 1.0)).mean().item(),
            "error 0.05, range [-1, 1]": reference_psnr(x + 0.05 * signs, x, (-1.0, 1.0)).mean().item(),
            "error 0.1, range [0, 1]": reference_psnr((x + 1) / 2 + 0.1 * signs, (x + 1) / 2, (0.0, 1.0)).mean().item()}


def _psnr_hint(key: str, got: float, want: float) -> str | None:
    if abs(got - want / 2) < 0.1:
        return "10 log10 of a ratio of squares: 10 log10(R^2 / MSE) = 20 log10(R / RMS error)"
    if key == "error 0.05, range [-1, 1]" and abs(got - (want - 6.02) - 3.01) < 0.1:
        return "halving the error quarters the MSE: +6 dB, not +3"
    if key.endswith("[0, 1]") and abs(got - (want + 6.02)) < 0.1:
        return "R is the width of the range: 1 for [0, 1] (R^2 = 1), 2 for [-1, 1]"
    return None


def solution_predicted_psnr():
    # PSNR = 10 log10(R^2 / MSE) = 20 log10(R / e) for an error e on every value; R = 2 for [-1, 1], 1 for [0, 1].
    return {"error 0.1, range [-1, 1]": 20 * math.log10(2 / 0.1),       # 26.02 dB
            "error 0.05, range [-1, 1]": 20 * math.log10(2 / 0.05),     # 32.04: half the error, +6.02 dB
            "error 0.1, range [0, 1]": 20 * math.log10(1 / 0.1)}        # 20.00: half the range, -6.02 dB


@exercise("predicted_psnr", reference="solution_predicted_psnr")
def check_predicted_psnr(student_fn) -> bool:
    """``student_fn()`` -> {key of ``PREDICTED_PSNR``: dB}, compared with ``vae_lib.evaluate.psnr`` on images off by
    a fixed error on every value (within 0.05 dB)."""
    compare_predictions("predicted_psnr", student_fn, _measured_psnr(), PREDICTED_PSNR, rel=0.0, atol=0.05,
                        hint=_psnr_hint, unit="dB")
    return passed("predicted_psnr", "every 6 dB halves the error; the range's width sets the scale")
