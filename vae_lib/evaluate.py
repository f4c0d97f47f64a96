"""How good is a trained class-conditional VAE? Test ELBO, IWAE bound, bits per dim, KL per dim, active units.

Everything here is in **nats per image** (sums over pixels and latent dimensions, means over images)
unless a name says otherwise, and works for any model with the CVAE interface::

    model.encode(x, y) -> (mu, logvar)          (B, z) each
    model.decode_params(z, y) -> params         logits (bernoulli) or mean (gaussian), (B, C, H, W)
    model.params_to_mean(params) -> x_hat       the likelihood's mean (sigmoid(logits) or the mean)
    model.likelihood in {"bernoulli", "gaussian"}; model.sigma (gaussian); optional model.data_range

The metrics, for an image x with label c and the encoder q(z|x,c) = N(mu, diag(exp(logvar))):

* -ELBO = E_q[-log p(x|z,c)] + KL(q(z|x,c) || N(0,I))  ("nll" + "kl"); the expectation is estimated
  with the same k samples as the IWAE bound, the KL is exact.
* IWAE bound (Burda et al., 2016): log p(x|c) >= log (1/k) sum_i p(x, z_i|c) / q(z_i|x,c), z_i ~ q.
  It is an ELBO for k = 1 and tightens as k grows; ``iwae_nll`` is its negative, an upper bound on
  -log p(x|c).
* bits per dim = nats / (D ln 2), D = C*H*W.
* active units (Burda et al., 2016): unit u is active when A_u = Cov_x(E_q[z_u|x]) > 0.01.
* PSNR (``psnr``, any image model): 10 log10(R^2 / MSE) per image, in dB, R the data range's width.

Scores of a model's samples (FID, conditional accuracy, factor transfer, mixing influence) are in
:mod:`vae_lib.metrics`, the judges that give them in :mod:`vae_lib.judges`.

Usage::

    metrics = evaluate_model(model, test_data.loader(batch_size=256, shuffle=False), k=100)
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.distributions import Normal
from tqdm.auto import tqdm

from vae_lib.losses import kl_standard_normal, log_likelihood
from vae_lib.utils import evaluation_mode, model_device, standard_normal

# Images decoded per forward pass inside the IWAE bound; bounds memory whatever k and the batch size.
DEFAULT_DECODE_BUDGET = 1024
ACTIVE_THRESHOLD = 0.01


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"Expected images of shape (B, C, H, W), got shape {tuple(x.shape)}.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"Expected labels of shape ({x.shape[0]},), got shape {tuple(y.shape)}.")


def _likelihood(model, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return log_likelihood(params, x, model.likelihood, sigma=getattr(model, "sigma", None))


def _importance_samples(model, x, y, mu, logvar, k, chunk_size, generator):
    """log p(x|z_i,c) and log w_i = log p(x,z_i|c) - log q(z_i|x,c) for z_i ~ q, each (k, B), in nats."""
    batch = x.shape[0]
    if chunk_size is None:
        chunk_size = max(1, DEFAULT_DECODE_BUDGET // batch)
    q = Normal(mu, torch.exp(0.5 * logvar))
    # All the noise at once (k*B*z numbers, small next to the decoder's activations), so that the
    # result does not depend on chunk_size.
    z = mu + q.scale * standard_normal((k, *mu.shape), mu, generator)                        # (k, B, z)
    log_prior_over_q = Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)    # (k, B)
    log_px = []
    for chunk in z.split(chunk_size):
        params = model.decode_params(chunk.flatten(0, 1), y.repeat(len(chunk)))     # (n*B, C, H, W)
        log_px.append(_likelihood(model, params, x.repeat(len(chunk), 1, 1, 1)).view(len(chunk), batch))
    log_px = torch.cat(log_px)
    return log_px, log_px + log_prior_over_q


def _batch_terms(model, x, y, k, chunk_size, generator) -> dict[str, torch.Tensor]:
    mu, logvar = model.encode(x, y)
    log_px, log_w = _importance_samples(model, x, y, mu, logvar, k, chunk_size, generator)
    return {
        "mu": mu,
        "nll": -log_px.mean(0),                                   # (B,)
        "kl_per_dim": kl_standard_normal(mu, logvar),             # (B, z)
        "iwae": torch.logsumexp(log_w, dim=0) - math.log(k),      # (B,)
    }


def _check_k(k: int) -> None:
    if int(k) != k or k < 1:
        raise ValueError(f"k (importance samples) must be a positive integer, got {k!r}.")


def elbo_terms(model, x: torch.Tensor, y: torch.Tensor, *, num_samples: int = 1,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-image ELBO parts for a batch x (B, C, H, W), y (B,).

    Returns ``nll`` (B,): E_q[-log p(x|z,c)] estimated with ``num_samples`` draws; ``kl`` (B,) and
    ``kl_per_dim`` (B, z): exact KL(q(z|x,c) || N(0,I)); ``elbo`` (B,) = -(nll + kl). All in nats.
    Runs under ``evaluation_mode``.
    """
    _check_batch(x, y)
    _check_k(num_samples)
    with evaluation_mode(model):
        terms = _batch_terms(model, x, y, num_samples, None, generator)
    kl = terms["kl_per_dim"].sum(-1)
    return {"nll": terms["nll"], "kl": kl, "kl_per_dim": terms["kl_per_dim"], "elbo": -(terms["nll"] + kl)}


def iwae_bound(model, x: torch.Tensor, y: torch.Tensor, k: int = 100, *, chunk_size: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Importance-weighted lower bound on log p(x|c) (Burda et al., 2016), (B,) nats.

    log p(x|c) >= log (1/k) sum_{i=1..k} p(x|z_i,c) p(z_i) / q(z_i|x,c),  z_i ~ q(z|x,c), computed
    with logsumexp. ``chunk_size`` importance samples are decoded together (default: as many as keep
    chunk_size * B <= 1024 images per forward pass). Runs under ``evaluation_mode``.
    """
    _check_batch(x, y)
    _check_k(k)
    with evaluation_mode(model):
        return _batch_terms(model, x, y, k, chunk_size, generator)["iwae"]


def bits_per_dim(nats, num_dims):
    """Convert nats per image to bits per dimension: nats / (D ln 2).

    ``num_dims`` is D itself or an image shape such as (C, H, W), whose product is D. ``nats`` may be
    a number or a tensor. What the number means depends on the likelihood:

    * Gaussian on continuous data in [-1, 1]: the nats come from a density (no dequantisation), so
      the value can be negative and is not comparable with the bits per dim reported for discrete
      8-bit images (which need uniform dequantisation and the 1/256 bin width).
    * Bernoulli on grey-level data in [0, 1]: a cross-entropy, comparable only with other models
      scored the same way (not with results on binarised MNIST).
    """
    dims = math.prod(num_dims) if isinstance(num_dims, Iterable) else num_dims
    if dims <= 0:
        raise ValueError(f"The number of dimensions must be positive, got {num_dims!r}.")
    return nats / (dims * math.log(2))


def psnr(x: torch.Tensor, y: torch.Tensor, value_range=(0.0, 1.0)) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image pair, (B,) in dB: 10 log10(R^2 / MSE).

    x, y: (B, C, H, W) in ``value_range`` = (lo, hi); R = hi - lo is the peak-to-peak range and MSE
    the mean of (x - y)^2 over one image's C H W values. Higher is better; +6.02 dB halves the RMS
    error; identical images give inf. Average the (B,) values for a data set's PSNR (the usual
    convention, which is not 10 log10(R^2 / mean MSE)). Computed in float64.
    """
    _check_pair(x, y)
    lo, hi = _range(value_range)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10((hi - lo) ** 2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, value_range=(0.0, 1.0)) -> torch.Tensor:
    """Structural similarity of each image pair, (B,) in [-1, 1] (1: identical): torchmetrics' SSIM
    (Gaussian window 11 px, sigma 1.5, the constants of Wang et al. 2004) with data range R = hi - lo.

    x, y: (B, C, H, W) in ``value_range``. Unlike PSNR it compares local means, contrasts and
    correlations, so a blurred edge costs more than the same squared error spread as noise."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(x, y)
    lo, hi = _range(value_range)
    return structural_similarity_index_measure(x.double(), y.double(), data_range=hi - lo, reduction="none")


def edge_ratio(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sharpness of ``x`` against ``y``: the RMS image gradient of x over that of y, (B,).

    x, y: (B, C, H, W), any common range (the ratio has no unit); the gradients are torchmetrics'
    finite differences along H and W. 1: edges as steep as the reference's; below 1: blurrier (a
    reconstruction that draws a blob where y has a heart and stripes), above 1: noisier. (Squared,
    not absolute, gradients: blurring a step keeps the sum of |gradient|, its height, but spreads
    it over more pixels, which lowers the sum of squares.)"""
    from torchmetrics.functional.image import image_gradients

    _check_pair(x, y)

    def energy(images):
        dy, dx = image_gradients(images.double())
        return (dy.pow(2) + dx.pow(2)).flatten(1).mean(1).sqrt()

    return energy(x) / energy(y).clamp_min(1e-12)


def _check_pair(x, y) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"x and y must be image batches (B, C, H, W) of the same shape, got "
                         f"{tuple(getattr(x, 'shape', ()))} and {tuple(getattr(y, 'shape', ()))}.")


def _range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}.")
    return lo, hi


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD):
    """Active units (Burda et al., 2016) from the encoder means of a data set.

    posterior_means: (N, z), row n = E_q[z | x_n, c_n]. Unit u is active when
    A_u = Cov_x(E_q[z_u|x]) > threshold. Returns (count: int, variances: (z,) tensor A_u).
    """
    if posterior_means.ndim != 2 or posterior_means.shape[0] < 2:
        raise ValueError("Expected posterior means of shape (N, z) with N >= 2, "
                         f"got shape {tuple(posterior_means.shape)}.")
    variances = posterior_means.var(dim=0)
    return int((variances > threshold).sum()), variances


def reconstruction_error(model, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Errors of the reconstruction from the posterior mean, x_hat = decode(E_q[z|x,c], c).

    ``mse`` (B,): mean over pixels of (x - x_hat)^2, in the model's data range (a [-1, 1] model's
    error is 4x the same error measured on [0, 1]). For a Bernoulli model also ``bce`` (B,):
    -log p(x | z = mu, c) summed over pixels, nats per image (a cross-entropy, since the data are
    grey levels, not binary). Runs under ``evaluation_mode``.
    """
    _check_batch(x, y)
    with evaluation_mode(model):
        return _reconstruction_terms(model, x, y, model.encode(x, y)[0])


def _reconstruction_terms(model, x, y, mu) -> dict[str, torch.Tensor]:
    params = model.decode_params(mu, y)
    terms = {"mse": (x - model.params_to_mean(params)).pow(2).flatten(1).mean(1)}
    if model.likelihood == "bernoulli":
        terms["bce"] = -_likelihood(model, params, x)
    return terms


def evaluate_model(model, loader, k: int = 100, seed: int = 0, progress: bool = True, *,
                   chunk_size: int | None = None, active_threshold: float = ACTIVE_THRESHOLD) -> dict:
    """All test metrics of a CVAE-like model over a loader of (x, y) batches, in one pass.

    x: (B, C, H, W) images in the model's data range (the model checks it); y: (B,) int64 labels.
    Use a loader without shuffling, so that the result depends only on ``seed`` (the noise of the k
    importance samples); batches are moved to the model's device and dtype.

    Returns a dict (scalars as floats, per-dimension values as CPU tensors):

    * ``neg_elbo`` = ``nll`` + ``kl``: test -ELBO, nats per image, mean over the set; ``nll`` is
      E_q[-log p(x|z,c)] estimated with the k importance samples, ``kl`` the exact KL term;
    * ``iwae_nll``: -log p(x|c) bounded above with k importance samples (``k`` is returned too);
    * ``bpd_elbo``, ``bpd_iwae``: the two in bits per dim (see ``bits_per_dim`` for what this means
      for the Gaussian likelihood);
    * ``kl_per_dim`` (z,): KL of each latent dimension, mean over the data (sums to ``kl``);
    * ``active_units``, ``active_mask`` (z,) bool, ``posterior_mean_variance`` (z,): Burda et al.'s A_u;
    * ``mse`` (and ``bce`` for Bernoulli models): reconstruction errors, see ``reconstruction_error``;
    * ``num_images``, ``num_dims`` (C*H*W), ``likelihood``, ``active_threshold``.
    """
    _check_k(k)
    device, dtype = model_device(model), _model_dtype(model)
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {"nll": 0.0, "iwae": 0.0, "mse": 0.0, "bce": 0.0}
    kl_sum, means, num_images, image_shape = None, [], 0, None
    with evaluation_mode(model):
        for x, y, *_ in tqdm(loader, desc=f"evaluate (k={k})", disable=not progress, leave=False):
            x, y = x.to(device=device, dtype=dtype), y.to(device)
            _check_batch(x, y)
            terms = _batch_terms(model, x, y, k, chunk_size, generator)
            terms.update(_reconstruction_terms(model, x, y, terms["mu"]))
            for name in sums:
                if name in terms:
                    sums[name] += terms[name].double().sum().item()
            batch_kl = terms["kl_per_dim"].double().sum(0).cpu()
            kl_sum = batch_kl if kl_sum is None else kl_sum + batch_kl
            means.append(terms["mu"].cpu())
            num_images += x.shape[0]
            image_shape = tuple(x.shape[1:])
    if num_images == 0:
        raise ValueError("The loader yielded no batches.")

    kl_per_dim = kl_sum / num_images
    nll, kl, iwae_nll = sums["nll"] / num_images, kl_per_dim.sum().item(), -sums["iwae"] / num_images
    count, variances = active_units(torch.cat(means).double(), active_threshold)
    results = {
        "num_images": num_images,
        "num_dims": math.prod(image_shape),
        "likelihood": model.likelihood,
        "k": k,
        "neg_elbo": nll + kl,
        "nll": nll,
        "kl": kl,
        "iwae_nll": iwae_nll,
        "bpd_elbo": bits_per_dim(nll + kl, image_shape),
        "bpd_iwae": bits_per_dim(iwae_nll, image_shape),
        "kl_per_dim": kl_per_dim.float(),
        "active_units": count,
        "active_mask": variances > active_threshold,
        "posterior_mean_variance": variances.float(),
        "active_threshold": active_threshold,
        "mse": sums["mse"] / num_images,
    }
    if model.likelihood == "bernoulli":
        results["bce"] = sums["bce"] / num_images
    return results


# ------------------------------------------------------------------------- yardsticks for the -ELBO
def bernoulli_entropy_floor(images: torch.Tensor) -> torch.Tensor:
    """The part of a Bernoulli decoder's -log p(x|z) that no model can remove, (N,) nats per image.

    For a grey level x in [0, 1] the Bernoulli "likelihood" x log p + (1 - x) log(1 - p) is a
    cross-entropy, smallest at p = x, where it is the binary entropy H(x) = -x log x - (1 - x) log(1 - x).
    Summed over the pixels: the reconstruction term of a decoder that outputs every image exactly.
    0 for an image whose pixels are all 0 or 1; 784 log 2 = 543.4 nats for an all-grey 28x28 image.
    """
    x = torch.as_tensor(images).double().flatten(1)
    if x.min() < 0 or x.max() > 1:
        raise ValueError("bernoulli_entropy_floor needs pixel values in [0, 1] (the Bernoulli likelihood's).")
    return -(torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x)).sum(dim=1)


def pixel_mean_baselines(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                         test_labels: torch.Tensor, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """-log p(x) of each test image, (N,) nats, under two models with no latent code at all:

    * ``"unconditional"``: every pixel independent, Bernoulli with the mean of that pixel over the
      training images;
    * ``"label_only"``: the same with the mean image of the image's class, -log p(x | c): the best a
      CVAE could do if its decoder ignored z (what a fully collapsed CVAE converges to).

    The means are Laplace-smoothed, (sum + 1) / (count + 2), so a pixel that is 0 in every training image
    still gets a probability above 0. Pixel values in [0, 1]; labels (N,) int64 in [0, num_classes).
    A model's -ELBO should sit well below ``label_only``; :func:`bernoulli_entropy_floor` is the other end.
    """
    train, test = torch.as_tensor(train_images).double().flatten(1), torch.as_tensor(test_images).double().flatten(1)
    train_labels, test_labels = torch.as_tensor(train_labels).long(), torch.as_tensor(test_labels).long()
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"Train and test images differ in size: {train.shape[1]} and {test.shape[1]} pixels.")
    if train_labels.shape != (len(train),) or test_labels.shape != (len(test),):
        raise ValueError("Give one label per image, for the train and for the test images.")
    for name, values in (("train", train), ("test", test)):
        if values.min() < 0 or values.max() > 1:
            raise ValueError(f"The {name} images must have pixel values in [0, 1] (the Bernoulli likelihood's).")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1 if num_classes is None else num_classes
    one_hot = torch.nn.functional.one_hot(train_labels, num_classes).double()      # (N_train, C)
    class_means = (one_hot.T @ train + 1) / (one_hot.sum(0)[:, None] + 2)        # (C, pixels)
    overall_mean = (train.sum(0) + 1) / (len(train) + 2)                          # (pixels,)

    def neg_log_likelihood(p):
        return -(test * p.log() + (1 - test) * (1 - p).log()).sum(dim=1)

    return {"unconditional": neg_log_likelihood(overall_mean[None]),
            "label_only": neg_log_likelihood(class_means[test_labels])}
