"""Likelihood terms and KL for the VAEs, all in nats, summed per image.

Two likelihoods for p(x | z, c), one per data range:

* ``"bernoulli"``: x in [0, 1]; the decoder gives logits l and
  log p(x | l) = sum_pixels [x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))]
  (exact log-probability for binary x; for grey values in between it is the cross-entropy, the
  usual choice for MNIST, though not a normalised density over [0, 1]).
* ``"gaussian"``: x in [-1, 1]; the decoder gives the mean m and sigma is fixed:
  log p(x | m) = sum_pixels [-(x - m)^2 / (2 sigma^2) - 0.5 log(2 pi sigma^2)],
  the full normalised log-density, so the numbers are real nats (comparable across sigmas).

The loss of the CVAE (card): L = E_q[-log p(x | z, c)] + beta * KL(q(z | x, c) || N(0, I)),
each term summed over pixels / latent dimensions and averaged over the batch, one z sample per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def log_likelihood(params: torch.Tensor, x: torch.Tensor, likelihood: str,
                   sigma: float | None = None) -> torch.Tensor:
    """log p(x | params) per image, (B,) nats, summed over all non-batch axes.

    params: logits (Bernoulli) or the mean (Gaussian), same shape as x (B, ...).
    sigma: the Gaussian's fixed standard deviation (required for ``"gaussian"``).
    """
    if params.shape != x.shape:
        raise ValueError(f"params and x must have the same shape, got {tuple(params.shape)} "
                         f"and {tuple(x.shape)}.")
    if likelihood == "bernoulli":
        per_pixel = -F.binary_cross_entropy_with_logits(params, x, reduction="none")
    elif likelihood == "gaussian":
        if sigma is None or not sigma > 1e-3:
            raise ValueError(f"The Gaussian likelihood needs a fixed sigma > 1e-3, got {sigma}.")
        per_pixel = -F.gaussian_nll_loss(params, x, sigma ** 2, full=True, reduction="none")
    else:
        raise ValueError(f"Unknown likelihood {likelihood!r}: choose one of {', '.join(LIKELIHOODS)}.")
    return per_pixel.flatten(1).sum(1)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, (B, z) nats.

    The closed form 0.5 (mu^2 + exp(logvar) - 1 - logvar), written on logvar directly (what the
    encoder outputs) rather than through ``torch.distributions``, which would take exp then log.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}.")
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


class CVAELoss:
    """The CVAE's negative ELBO with a KL weight, for ``Trainer``: ``loss_fn(model, batch, beta=...)``.

    ``batch`` is ``(x, y)``; ``model`` has ``encode``, ``reparameterize``, ``decode_params``,
    ``likelihood`` and ``sigma`` (as ``vae_lib.models.cvae.CVAE``).

    free_bits: lambda >= 0, nats per latent dimension (Kingma et al. 2016, "Improved variational
        inference with inverse autoregressive flow"). The KL of each dimension, averaged over the
        batch, counts as max(lambda, KL_j) in the optimised ``"loss"``: a dimension below lambda gets
        no gradient pushing it to the prior, so it can stay in use. The logged ``"kl"`` is the true KL.

    Returns scalar tensors, per image in nats: ``"loss"`` = nll + beta * KL (free-bits KL if set),
    ``"nll"`` = E_q[-log p(x | z, c)], ``"kl"``, ``"elbo"`` = -(nll + kl), ``"beta"``.
    """

    def __init__(self, free_bits: float = 0.0):
        if not free_bits >= 0:
            raise ValueError(f"free_bits must be >= 0 (nats per latent dimension), got {free_bits}.")
        self.free_bits = float(free_bits)

    def __call__(self, model, batch, *, beta: float, epoch: int = 0) -> dict[str, torch.Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("CVAELoss expects batch = (x, y) with images and labels.")
        x, y = batch[0], batch[1]
        mu, logvar = model.encode(x, y)
        z = model.reparameterize(mu, logvar)
        nll = -log_likelihood(model.decode_params(z, y), x, model.likelihood, model.sigma).mean()
        kl_per_dim = kl_standard_normal(mu, logvar)
        kl = kl_per_dim.sum(1).mean()
        kl_optimised = kl_per_dim.mean(0).clamp(min=self.free_bits).sum() if self.free_bits > 0 else kl
        return {
            "loss": nll + beta * kl_optimised,
            "nll": nll,
            "kl": kl,
            "elbo": -(nll + kl),
            "beta": torch.as_tensor(float(beta), device=nll.device),
        }

    def __repr__(self) -> str:
        return f"CVAELoss(free_bits={self.free_bits})"
