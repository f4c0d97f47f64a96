"""Sampling from a model, in one place: codes from the prior, decoding them (with truncation), and
the label vectors and grids of samples that the metrics, the figures, the widgets and the CLI use.

Each function asks only the shared model interface (``vae_lib/models/__init__.py``): ``z_dim``,
``conditional``, ``num_classes`` (conditional models), ``decode(z, y, *, noise_mode, truncation_psi)``
and ``sample(n, y, *, generator, truncation_psi, noise_mode)``; never a model's class.

* :func:`prior_codes`: z ~ N(0, I), (n, z_dim) float32 on the CPU, from ``seed`` or a ``generator``,
  so the same seed gives the same codes in every module and on every device; with ``prior``, codes of
  a fitted Gaussian instead (the same draws, scaled and shifted).
* :func:`posterior_parameters`: mu and log sigma^2 of q(z | x) for every image of a data set.
* :func:`aggregate_posterior` (:func:`aggregate_gaussian` from given mu, logvar): the Gaussian with
  the mean and covariance of the codes the encoder gives a data set, q(z) = mean_n q(z | x_n): a prior
  fitted after training (where N(0, I) samples fall outside the codes the decoder learned to draw);
  :func:`prior_mismatch` says how far, in nats.
* :func:`class_labels`: (C n,) labels 0 .. 0, 1 .. 1, ..., ``n_per_class`` of each class.
* :func:`decode_latents`: images for given codes, on the CPU, in eval mode without gradients.
* :func:`sample_images`: ``n`` samples whose codes are all drawn first, then decoded in batches,
  so that the images do not depend on the batch size (the FID protocol's generated set).
* :func:`class_samples`: ``model.sample`` for ``n_per_class`` samples of every class (rows of a grid).
* :func:`sample_grid`: what ``python -m vae_lib sample`` draws: a row per class, or an n x n grid.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vae_lib.utils import evaluation_mode, model_device

# Codes decoded per forward pass by sample_images (the judges' prediction batch): bounds memory only.
DECODE_BATCH = 500
# The truncation psi of the course's sweeps (viz.truncation_grid, metrics.truncation_fids): none to full.
TRUNCATION_PSIS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.0)


def prior_codes(n: int, z_dim: int, *, seed: int = 0, generator: torch.Generator | None = None,
                prior: MultivariateNormal | None = None) -> torch.Tensor:
    """``n`` codes z ~ N(0, I), (n, z_dim) float32 on the CPU: ``torch.randn(n, z_dim, generator=g)``
    with ``g = generator`` (whose state advances) or ``torch.Generator().manual_seed(seed)``.

    With ``prior`` (a ``MultivariateNormal`` over z_dim, e.g. :func:`aggregate_posterior`), the same
    draws eps become ``prior.loc + eps @ prior.scale_tril.T``: codes of that Gaussian, reproducible
    from the seed as the N(0, I) ones are (``prior.sample`` would use the global RNG).
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    eps = torch.randn(n, z_dim, generator=generator)
    if prior is None:
        return eps
    if not isinstance(prior, MultivariateNormal) or tuple(prior.event_shape) != (z_dim,) or prior.batch_shape:
        raise ValueError(f"prior must be one torch.distributions.MultivariateNormal over {z_dim} dimensions "
                         f"(the model's z_dim), got {prior!r}.")
    return prior.loc.float().cpu() + eps @ prior.scale_tril.float().cpu().T


def posterior_parameters(model, data, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """mu and log sigma^2 of ``model.encode`` for every image of ``data`` (an ``ImageData``; with its labels
    for a conditional model), in eval mode, in batches: two (N, z_dim) float32 tensors on the CPU."""
    device = model_device(model)
    means, logvars = [], []
    with evaluation_mode(model), torch.no_grad():
        for start in range(0, len(data.images), batch_size):
            x = data.images[start:start + batch_size].to(device)
            y = data.labels[start:start + len(x)].to(device) if getattr(model, "conditional", False) else None
            mu, logvar = model.encode(x, y)
            means.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
    return torch.cat(means), torch.cat(logvars)


def aggregate_posterior(model, data, batch_size: int = 128) -> MultivariateNormal:
    """A Gaussian prior fitted after training: the mean and covariance of the aggregate posterior.

    The codes the encoder gives ``data`` (N images, e.g. the training set) form the mixture
    q(z) = (1/N) sum_n N(mu_n, diag sigma_n^2). This returns the Gaussian with its mean and covariance,
    ``loc = mean_n mu_n`` and ``cov = (1/N) sum_n (mu_n - loc)(mu_n - loc)^T + diag(mean_n sigma_n^2)``
    (computed in float64), which among all Gaussians is the closest to q(z) in KL(q || .).

    Why: see :func:`prior_mismatch`. Decoding codes of this Gaussian instead of N(0, I)
    (``prior_codes(..., prior=...)``, ``sample_images(..., prior=...)``) is ex-post density estimation
    (Ghosh et al. 2020), the simplest case of the second stage of a two-stage VAE (Dai and Wipf 2019).

    Returns a float32 ``MultivariateNormal`` on the CPU (``loc`` (z_dim,), ``scale_tril`` (z_dim, z_dim)).
    """
    return aggregate_gaussian(*posterior_parameters(model, data, batch_size))


def prior_mismatch(model, data, batch_size: int = 128) -> dict:
    """Do the codes of ``data`` fill the prior N(0, I)? Three numbers in nats, and the fitted prior.

    The ELBO's KL term, averaged over the N images, splits as
    E_x KL(q(z|x) || N(0, I)) = I(x; z) + KL(q(z) || N(0, I)), where q(z) is the aggregate posterior and
    the code's information I(x; z) is at most log N. So a KL far above log N per image says that q(z)
    is far from N(0, I): the codes fill part of the prior (or spill out of it), and z ~ N(0, I) often
    lands where the decoder never learned to draw.

    Returns ``{"kl_per_image": mean_n KL(q(z|x_n) || N(0, I)), "log_n": log N,
    "fitted_kl": KL(fitted || N(0, I)), "fitted": aggregate_posterior(model, data)}``. (KL(q(z) || N(0, I))
    is at least both ``kl_per_image - log_n`` and ``fitted_kl``, the part that the mean and covariance show.)
    """
    mu, logvar = posterior_parameters(model, data, batch_size)
    fitted = aggregate_gaussian(mu, logvar)
    standard = MultivariateNormal(torch.zeros(mu.shape[1]), scale_tril=torch.eye(mu.shape[1]))
    per_image = kl_divergence(Normal(mu.double(), (0.5 * logvar.double()).exp()), Normal(0.0, 1.0)).sum(1)
    return {"kl_per_image": per_image.mean().item(), "log_n": math.log(len(mu)),
            "fitted_kl": kl_divergence(fitted, standard).item(), "fitted": fitted}


def aggregate_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> MultivariateNormal:
    """The Gaussian with the mean and covariance of q(z) = (1/N) sum_n N(mu_n, diag exp(logvar_n)), from the
    posterior parameters mu, logvar (N, z_dim) (:func:`posterior_parameters`): float32, on mu's device.

    loc = mean_n mu_n; cov = (1/N) sum_n (mu_n - loc)(mu_n - loc)^T + diag(mean_n sigma_n^2), in float64
    (the law of total variance: the spread of the means plus the mean spread around them).
    """
    if len(mu) < 2:
        raise ValueError(f"A fitted prior needs the codes of at least 2 images to estimate a covariance, "
                         f"got {len(mu)}.")
    mu, var = mu.double(), logvar.double().exp()
    loc = mu.mean(0)
    centred = mu - loc
    cov = centred.T @ centred / len(mu) + torch.diag(var.mean(0))
    return MultivariateNormal(loc.float(), scale_tril=torch.linalg.cholesky(cov).float())


def class_labels(num_classes: int, n_per_class: int = 1, device=None) -> torch.Tensor:
    """(num_classes * n_per_class,) int64 labels, class by class: ``n_per_class`` zeros, then ones, ..."""
    return torch.arange(num_classes, device=device).repeat_interleave(n_per_class)


def decode_latents(model, z: torch.Tensor, label=None, *, noise_mode: str | None = "const",
                   truncation_psi: float = 1.0) -> torch.Tensor:
    """Images for codes z (B, z_dim) or (z_dim,) on the CPU, in the model's data range, no gradients.

    A conditional model needs ``label``: one int for every row, or a (B,) tensor; other models ignore
    it. ``noise_mode`` ("const": the same image for the same z every time) and ``truncation_psi``
    go to ``model.decode``, which ignores what it has no use for.
    """
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != model.z_dim:
        raise ValueError(f"z must have shape (B, {model.z_dim}) or ({model.z_dim},), got {tuple(z.shape)}.")
    device = model_device(model)
    y = None
    if model.conditional:
        if label is None:
            raise ValueError("A class-conditional model needs a label (an int, or one per row of z).")
        y = torch.as_tensor(label, dtype=torch.long).to(device)
        y = y.expand(z.shape[0]) if y.ndim == 0 else y
    options = _options(truncation_psi, None)
    with evaluation_mode(model):
        if y is not None:       # a conditional model: labels, no noise
            return model.decode(z.to(device), y, **options).cpu()
        return model.decode(z.to(device), noise_mode=noise_mode, **options).cpu()


def sample_images(model, n: int, *, labels=None, seed: int = 0, batch_size: int = DECODE_BATCH,
                  truncation_psi: float = 1.0, noise_mode: str = "const",
                  prior: MultivariateNormal | None = None) -> torch.Tensor:
    """``n`` samples of ``model``, on the CPU: (n, C, H, W) in ``model.data_range``.

    All n codes are drawn first, ``z = torch.randn(n, z_dim, generator=Generator().manual_seed(seed))``,
    then decoded in batches, so the images do not depend on ``batch_size``:
    ``model.decode(z, labels, truncation_psi=..., noise_mode=...)``. A conditional model
    (``model.conditional``, the CVAE) needs ``labels`` ((n,) ints); the StyleGAN-VAE takes none.
    With ``prior`` (e.g. :func:`aggregate_posterior`), the codes are those of ``prior_codes(n, z_dim,
    seed=seed, prior=prior)``.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}.")
    if model.conditional:
        if labels is None:
            raise ValueError("A class-conditional model needs labels: one per sample.")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != n:
            raise ValueError(f"Got {labels.numel()} labels for {n} samples.")
    z = prior_codes(n, model.z_dim, seed=seed, prior=prior)
    device, out = model_device(model), []
    with evaluation_mode(model):
        for start in range(0, n, batch_size):
            chunk = z[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device) if labels is not None else None
            out.append(model.decode(chunk, y, noise_mode=noise_mode, truncation_psi=truncation_psi).cpu())
    return torch.cat(out)


def class_samples(model, n_per_class: int = 1, *, num_classes: int | None = None, seed: int = 0,
                  truncation_psi: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
    """``model.sample`` for ``n_per_class`` samples of each class 0 .. num_classes - 1 (default
    ``model.num_classes``), class by class, from one generator seeded with ``seed``: (C n, C', H, W)
    on the CPU. A class-conditional model (an unconditional one refuses the labels)."""
    num_classes = num_classes if num_classes is not None else model.num_classes
    y = class_labels(num_classes, n_per_class, model_device(model))
    with evaluation_mode(model):
        return model.sample(len(y), y, generator=torch.Generator().manual_seed(seed),
                            **_options(truncation_psi, noise_mode)).cpu()


def sample_grid(model, n: int, *, seed: int = 0, truncation_psi: float = 1.0,
                noise_mode: str | None = "const", prior: MultivariateNormal | None = None) -> tuple[torch.Tensor, int]:
    """Samples for a grid with ``n`` columns, and n: a row of n per class for a conditional model
    (:func:`class_samples`), else n x n samples, ``model.sample(n * n, generator=<seed>, ...)``.

    With ``prior`` (e.g. :func:`aggregate_posterior`), the same grid from codes of that Gaussian
    (:func:`sample_images` with ``prior``: the same seeded draws, scaled and shifted).
    """
    if prior is not None:
        labels = class_labels(model.num_classes, n) if model.conditional else None
        count = len(labels) if labels is not None else n * n
        return sample_images(model, count, labels=labels, seed=seed, truncation_psi=truncation_psi,
                             noise_mode=noise_mode, prior=prior), n
    if model.conditional:
        images = class_samples(model, n, seed=seed, truncation_psi=truncation_psi, noise_mode=noise_mode)
    else:
        with evaluation_mode(model):
            images = model.sample(n * n, generator=torch.Generator().manual_seed(seed),
                                  **_options(truncation_psi, noise_mode)).cpu()
    return images, n


def _options(truncation_psi: float, noise_mode: str | None) -> dict:
    """The keywords that differ from the interface's defaults (so a minimal model need not take them)."""
    options = {"truncation_psi": truncation_psi} if truncation_psi != 1 else {}
    if noise_mode is not None:
        options["noise_mode"] = noise_mode
    return options


__all__ = ["DECODE_BATCH", "TRUNCATION_PSIS", "aggregate_gaussian", "aggregate_posterior", "class_labels",
           "class_samples", "decode_latents", "posterior_parameters", "prior_codes", "prior_mismatch", "sample_grid",
           "sample_images"]
