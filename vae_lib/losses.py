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

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.perceptual import (DEFAULT_LAYERS, DEFAULT_PERCEPTUAL_WEIGHT, FeatureDistance, check_features,
                                check_layers, describe_features, feature_distance, features_of_vgg_weights,
                                how_to_get_weights, vgg19_checkpoint_path, warn_random_features)

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

    @classmethod
    def same_until(cls, kwargs_a: dict, kwargs_b: dict, epoch: int) -> bool:
        """Whether the losses built from ``kwargs_a`` and ``kwargs_b`` are the same in every epoch
        before ``epoch`` (what ``train_or_load(..., branch_from=...)`` needs): here, equal settings."""
        return dict(kwargs_a) == dict(kwargs_b)

    def __repr__(self) -> str:
        return f"CVAELoss(free_bits={self.free_bits})"


RECONSTRUCTIONS = ("mse", "calibrated")
DEFAULT_PERCEPTUAL_FROM_EPOCH = 20     # the card: the perceptual term joins after 20 epochs
_FROM_FEATURES = object()      # vgg_weights not given: ``features`` decides


class StyleVAELoss:
    """The StyleGAN-VAE card's loss for ``Trainer``: ``loss_fn(model, batch, beta=..., epoch=...)`` -> dict.

    ``batch`` is ``(x, ...)`` with x (B, 3, S, S) in [-1, 1]; ``model(x)`` -> (x_hat, mu, logvar)
    (as ``ConvolutionalVAE``). Per image, summed over its values, averaged over the batch::

        mse        = sum_pixels (x - x_hat)^2
        perceptual = D * sum_l mean_{c,h,w} (phi_l(x) - phi_l(x_hat))^2    (``vae_lib.perceptual``)
        kl         = sum_j KL(N(mu_j, exp(logvar_j)) || N(0, 1))           (nats)
        loss       = mse_weight * mse + perceptual_weight * perceptual + beta * kl      (card)

    The MSE sum is, up to a constant, a Gaussian negative log-likelihood with sigma^2 = 1 / (2
    mse_weight): the weight *is* a guess of the decoder's noise. ``reconstruction="calibrated"``
    (beyond the card; Rybkin et al. 2021, "Simple and effective VAE training with calibrated
    decoders", their "optimal sigma") replaces the guess by the maximum-likelihood sigma of the
    batch, sigma^2 = mean over the batch's pixels of (x - x_hat)^2 (no gradient through it, floored
    at ``min_sigma``), and uses the full Gaussian NLL::

        nll  = sum_pixels [(x - x_hat)^2 / (2 sigma^2) + log sigma + log(2 pi) / 2]     (nats)
        loss = nll + perceptual_weight * perceptual + beta * kl

    The pixel term's weight 1 / (2 sigma^2) then grows as the reconstructions improve, which is
    what keeps a decoder from settling on the mean colour: at sigma^2 = 1/2 (the card's weight 1)
    a blob costs less than the KL of a code that says where the object is. ``mse_weight`` is not
    used then (it must stay 1).

    Args:
        mse_weight: weight of the per-image MSE sum (card: 1).
        perceptual_weight: weight of the perceptual term (default 0.1, see ``vae_lib.perceptual``).
        perceptual_from_epoch: the perceptual term is added when ``epoch >= perceptual_from_epoch``
            (card: after 20 epochs; ``epoch`` counts from 0); before that it is reported as 0.
        features: the perceptual features (``vae_lib.perceptual.FEATURES``): ``"vgg19-imagenet"`` (card),
            ``"vgg19-random"`` (random VGG19 weights: a warning, and ``repr`` says RANDOM) or ``"judge"``
            (a trained judge's conv blocks; needs ``feature_net``). ``self.features`` and ``repr``
            name them, for the training log and figure titles.
        vgg_weights: the older way to choose the VGG19 features, still accepted (existing configs):
            ``"imagenet"`` means ``features="vgg19-imagenet"``, None ``"vgg19-random"``. It counts only
            when ``features`` is left at its default (so a preset's ``vgg_weights`` does not undo
            ``features="judge"``). ``self.vgg_weights`` is "imagenet" or None (None for the judge too).
        feature_net: the judge network for ``features="judge"`` (``vae_lib.judges.train_or_load_judge``;
            ``vae_lib.experiments.build_loss`` passes one trained with another seed than the
            evaluation judge, so the loss does not optimise the instrument that measures it).
        layers: the layers to compare (default: relu1_2, relu2_2, relu3_4, relu4_4 for VGG19; every
            conv block, "block1" ... "blockN", for the judge).
        reconstruction: ``"mse"`` (card) or ``"calibrated"`` (see above).
        min_sigma: the floor of the calibrated sigma, in pixel units of [-1, 1] (0.01: 46 dB).

    The features are built on first use (the first call with the term on), on the images' device, so
    early epochs and models without a perceptual term need neither the weights nor the memory. The
    constructor warns at once when the features will be random, and when the ImageNet file is not in
    the torch hub cache (rather than let a run fail at epoch ``perceptual_from_epoch``).

    Returns scalar tensors per image: ``"loss"``, ``"mse"``, ``"perceptual"`` (unweighted),
    ``"kl"`` (nats), ``"beta"``; with ``"calibrated"`` also ``"nll"`` (nats) and ``"sigma"``.
    """

    def __init__(self, mse_weight: float = 1.0, perceptual_weight: float = DEFAULT_PERCEPTUAL_WEIGHT,
                 perceptual_from_epoch: int = DEFAULT_PERCEPTUAL_FROM_EPOCH, vgg_weights: str | None = _FROM_FEATURES, *,
                 features: str = "vgg19-imagenet", feature_net: nn.Module | None = None,
                 layers: tuple[str, ...] | None = None, reconstruction: str = "mse", min_sigma: float = 0.01):
        if not (mse_weight >= 0 and perceptual_weight >= 0):
            raise ValueError(f"mse_weight and perceptual_weight must be >= 0, got {mse_weight} and "
                             f"{perceptual_weight}.")
        if perceptual_from_epoch < 0:
            raise ValueError(f"perceptual_from_epoch must be >= 0, got {perceptual_from_epoch}.")
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}.")
        if reconstruction == "calibrated" and mse_weight != 1.0:
            raise ValueError("reconstruction='calibrated' learns the pixel term's weight: leave mse_weight at 1.")
        if not min_sigma > 0:
            raise ValueError(f"min_sigma must be > 0, got {min_sigma}.")
        self.mse_weight, self.perceptual_weight = float(mse_weight), float(perceptual_weight)
        self.perceptual_from_epoch = int(perceptual_from_epoch)
        self.reconstruction, self.min_sigma = reconstruction, float(min_sigma)
        if vgg_weights is not _FROM_FEATURES and features == "vgg19-imagenet":
            features = features_of_vgg_weights(vgg_weights)
        self.features = check_features(features)
        if self.features == "judge":
            if feature_net is None:
                raise ValueError("features='judge' needs feature_net=<the judge network> (a trained "
                                 "vae_lib.judges.Judge, e.g. train_or_load_judge(judge_settings('shapes', seed=1)); "
                                 "vae_lib.experiments.build_loss passes one).")
            self.layers = feature_net.check_blocks(layers)
        elif feature_net is not None:
            raise ValueError(f"feature_net is only for features='judge', not {self.features!r}.")
        else:
            self.layers = check_layers(DEFAULT_LAYERS if layers is None else layers)
        self.feature_net = feature_net
        self.perceptual: FeatureDistance | None = None
        if self.perceptual_weight > 0 and self.features == "vgg19-random":
            warn_random_features(stacklevel=2)
        elif self.perceptual_weight > 0 and self.features == "vgg19-imagenet" and not vgg19_checkpoint_path().exists():
            warnings.warn(f"The ImageNet VGG19 weights are not cached; the perceptual term (from epoch "
                          f"{self.perceptual_from_epoch}) will try to download them. If this machine is "
                          f"offline, {how_to_get_weights()}, or pass features='vgg19-random' (vgg_weights=None) "
                          "for random features or features='judge' for trained ones.", UserWarning, stacklevel=2)

    @property
    def vgg_weights(self) -> str | None:
        """The older name of the features: "imagenet" for ``"vgg19-imagenet"``, else None."""
        return "imagenet" if self.features == "vgg19-imagenet" else None

    def describe_features(self) -> str:
        """The perceptual features in words, for log lines and figure titles."""
        return describe_features(self.features, self.layers, self.feature_net)

    # The settings that act only from ``perceptual_from_epoch`` on (see ``same_until``).
    PERCEPTUAL_SETTINGS = ("perceptual_weight", "perceptual_from_epoch", "vgg_weights", "features", "layers",
                           "judge_seed", "judge_preset")

    @classmethod
    def same_until(cls, kwargs_a: dict, kwargs_b: dict, epoch: int) -> bool:
        """Whether the losses built from ``kwargs_a`` and ``kwargs_b`` are the same in every epoch
        before ``epoch``: equal but for the perceptual settings, and the perceptual term off in both
        until then (weight 0, or switched on at ``epoch`` or later). Then a run of one can branch
        from a run of the other at ``epoch`` (``experiments.train_or_load(..., branch_from=...)``)."""
        def rest(kwargs):
            return {k: v for k, v in kwargs.items() if k not in cls.PERCEPTUAL_SETTINGS}

        def off_before(kwargs):
            weight = kwargs.get("perceptual_weight", DEFAULT_PERCEPTUAL_WEIGHT)
            return weight == 0 or kwargs.get("perceptual_from_epoch", DEFAULT_PERCEPTUAL_FROM_EPOCH) >= epoch

        return rest(kwargs_a) == rest(kwargs_b) and off_before(kwargs_a) and off_before(kwargs_b)

    def uses_perceptual(self, epoch: int) -> bool:
        return self.perceptual_weight > 0 and epoch >= self.perceptual_from_epoch

    def __call__(self, model, batch, *, beta: float, epoch: int = 0) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x_hat, mu, logvar = model(x)
        squared = (x_hat.float() - x.float()).pow(2).flatten(1)
        mse = squared.sum(1).mean()
        kl = kl_standard_normal(mu.float(), logvar.float()).sum(1).mean()
        if self.uses_perceptual(epoch):
            if self.perceptual is None:
                self.perceptual = feature_distance(self.features, layers=self.layers, judge=self.feature_net)
            perceptual = self.perceptual.to(x.device)(x_hat, x).mean()
        else:
            perceptual = torch.zeros((), device=x.device)
        terms = {}
        if self.reconstruction == "calibrated":
            sigma = squared.detach().mean().sqrt().clamp(min=self.min_sigma)
            dims = squared.shape[1]
            nll = mse / (2 * sigma ** 2) + dims * (sigma.log() + 0.5 * math.log(2 * math.pi))
            loss = nll + self.perceptual_weight * perceptual + beta * kl
            terms = {"nll": nll, "sigma": sigma}
        else:
            loss = self.mse_weight * mse + self.perceptual_weight * perceptual + beta * kl
        return {
            "loss": loss,
            "mse": mse,
            "perceptual": perceptual,
            "kl": kl,
            **terms,
            "beta": torch.as_tensor(float(beta), device=x.device),
        }

    def __repr__(self) -> str:
        recon = "" if self.reconstruction == "mse" else f", reconstruction='calibrated', min_sigma={self.min_sigma}"
        return (f"StyleVAELoss(mse_weight={self.mse_weight}, perceptual_weight={self.perceptual_weight}, "
                f"perceptual_from_epoch={self.perceptual_from_epoch}, features={self.describe_features()}"
                f"{recon})")
