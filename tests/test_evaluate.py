"""Tests of vae_lib.evaluate against models whose log p(x) is known in closed form.

The stand-in is a linear-Gaussian CVAE: z ~ N(0, I), x | z, c ~ N(W z + b_c, s^2 I), so that
log p(x|c) = log N(x; b_c, W W^T + s^2 I) exactly and the true posterior is Gaussian. Its encoder
returns a deliberately imperfect q (shifted mean, inflated variance), so the ELBO is strictly below
log p(x) and the IWAE bound has room to tighten with k.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import MultivariateNormal

from vae_lib.evaluate import (active_units, bits_per_dim, elbo_terms, evaluate_model, iwae_bound,
                              reconstruction_error)

IMAGE_SHAPE = (1, 2, 3)     # D = 6


class LinearGaussianCVAE(nn.Module):
    """Linear-Gaussian model with the CVAE interface (float64 buffers; y selects the bias b_c).

    Encoder: q(z|x,c) = N(mean_scale * m + mean_shift, var_scale * diag(S)) where N(m, S) is the exact
    posterior; mean_scale = 0 for a unit makes its mean constant (an inactive unit).
    """

    likelihood = "gaussian"

    def __init__(self, z_dim=3, num_classes=2, sigma=0.5, mean_scale=None, var_scale=2.0, mean_shift=0.3,
                 seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = math.prod(IMAGE_SHAPE)
        self.z_dim, self.num_classes, self.sigma = z_dim, num_classes, sigma
        self.var_scale, self.mean_shift = var_scale, mean_shift
        self.register_buffer("W", torch.randn(d, z_dim, generator=g, dtype=torch.float64))
        self.register_buffer("b", torch.randn(num_classes, d, generator=g, dtype=torch.float64))
        scale = torch.ones(z_dim) if mean_scale is None else torch.tensor(mean_scale)
        self.register_buffer("mean_scale", scale.double())
        eye = torch.eye(z_dim, dtype=torch.float64)
        self.register_buffer("post_cov", torch.linalg.inv(eye + self.W.T @ self.W / sigma ** 2))

    def encode(self, x, y):
        m = (x.flatten(1) - self.b[y]) @ self.W @ self.post_cov / self.sigma ** 2
        v = torch.diagonal(self.post_cov).expand_as(m)
        return self.mean_scale * m + self.mean_shift, torch.log(self.var_scale * v)

    def decode_params(self, z, y):
        return (z @ self.W.T + self.b[y]).view(-1, *IMAGE_SHAPE)

    def params_to_mean(self, params):
        return params

    # -- closed forms, written independently of vae_lib --
    def exact_log_px(self, x, y):
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return MultivariateNormal(self.b[y], cov).log_prob(x.flatten(1))

    def exact_elbo_parts(self, x, y):
        """(E_q[-log p(x|z,c)], KL per dim (B, z)) in closed form."""
        mu, logvar = self.encode(x, y)
        var = logvar.exp()
        d = self.W.shape[0]
        resid = (x.flatten(1) - mu @ self.W.T - self.b[y]).pow(2).sum(1)
        trace = (var[:, None, :] * self.W.pow(2)[None]).sum((1, 2))        # tr(W diag(v) W^T)
        nll = 0.5 * d * math.log(2 * math.pi * self.sigma ** 2) + (resid + trace) / (2 * self.sigma ** 2)
        kl = 0.5 * (mu.pow(2) + var - 1 - logvar)
        return nll, kl

    def sample_data(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, self.num_classes, (n,), generator=g)
        z = torch.randn(n, self.z_dim, generator=g, dtype=torch.float64)
        noise = torch.randn(n, *IMAGE_SHAPE, generator=g, dtype=torch.float64)
        return self.decode_params(z, y) + self.sigma * noise, y


class LinearBernoulliCVAE(LinearGaussianCVAE):
    """Same encoder; the decoder's linear output is read as Bernoulli logits on [0, 1] data."""

    likelihood = "bernoulli"

    def params_to_mean(self, params):
        return torch.sigmoid(params)


def batches(x, y, batch_size):
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]


@pytest.fixture(scope="module")
def model():
    return LinearGaussianCVAE()


@pytest.fixture(scope="module")
def data(model):
    return model.sample_data(8)


# ------------------------------------------------------------------------------------------ IWAE
def test_iwae_with_one_sample_is_the_elbo_in_expectation(model, data):
    x, y = data
    repeats = 2000
    bound = iwae_bound(model, x.repeat(repeats, 1, 1, 1), y.repeat(repeats), k=1,
                       generator=torch.Generator().manual_seed(0)).view(repeats, -1)
    nll, kl = model.exact_elbo_parts(x, y)
    exact_elbo = -(nll + kl.sum(1))
    sem = bound.std(0) / math.sqrt(repeats)
    assert torch.all((bound.mean(0) - exact_elbo).abs() < 4 * sem + 1e-3)
    # The stand-in's q is imperfect: the ELBO is clearly below log p(x).
    assert torch.all(exact_elbo < model.exact_log_px(x, y) - 0.5)


def test_iwae_bound_tightens_with_k_towards_exact_log_px(model, data):
    x, y = data
    repeats = 200
    exact = model.exact_log_px(x, y)
    generator = torch.Generator().manual_seed(1)
    gaps, sems = [], []
    for k in (1, 10, 100, 1000):
        bound = iwae_bound(model, x.repeat(repeats, 1, 1, 1), y.repeat(repeats), k=k, chunk_size=100,
                           generator=generator).view(repeats, -1)
        gaps.append((bound.mean(0) - exact).mean().item())       # <= 0: a lower bound
        sems.append((bound.std(0) / math.sqrt(repeats)).max().item())
    for gap, sem in zip(gaps, sems):
        assert gap <= 3 * sem
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]
    assert gaps[0] < -1.0                  # the ELBO is far off ...
    assert abs(gaps[3]) < 0.05             # ... k = 1000 is within 0.05 nats of log p(x)


def test_iwae_does_not_depend_on_chunk_size(model, data):
    x, y = data
    small = iwae_bound(model, x, y, k=50, chunk_size=3, generator=torch.Generator().manual_seed(5))
    large = iwae_bound(model, x, y, k=50, chunk_size=50, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(small, large)


def test_elbo_terms_match_closed_form(model, data):
    x, y = data
    repeats = 500
    terms = elbo_terms(model, x.repeat(repeats, 1, 1, 1), y.repeat(repeats), num_samples=4,
                       generator=torch.Generator().manual_seed(2))
    nll, kl = model.exact_elbo_parts(x, y)
    torch.testing.assert_close(terms["kl_per_dim"][:8], kl)
    torch.testing.assert_close(terms["kl"][:8], kl.sum(1))
    est = terms["nll"].view(repeats, -1)
    assert torch.all((est.mean(0) - nll).abs() < 4 * est.std(0) / math.sqrt(repeats) + 1e-3)
    torch.testing.assert_close(terms["elbo"], -(terms["nll"] + terms["kl"]))


# ---------------------------------------------------------------------------------- evaluate_model
def test_evaluate_model_against_closed_forms(model):
    x, y = model.sample_data(64, seed=3)
    results = evaluate_model(model, batches(x, y, 20), k=500, seed=0, progress=False)
    nll, kl = model.exact_elbo_parts(x, y)
    exact_log_px = model.exact_log_px(x, y).mean().item()

    assert results["num_images"] == 64 and results["num_dims"] == 6 and results["k"] == 500
    assert results["kl"] == pytest.approx(kl.sum(1).mean().item(), rel=1e-6)
    # the nll part is a 500-sample average per image: close to its expectation
    assert results["nll"] == pytest.approx(nll.mean().item(), abs=0.05)
    assert results["neg_elbo"] == pytest.approx(results["nll"] + results["kl"])
    # -log p(x) <= IWAE NLL <= -ELBO
    assert -exact_log_px - 0.01 <= results["iwae_nll"] < results["neg_elbo"] - 1.0
    assert results["iwae_nll"] == pytest.approx(-exact_log_px, abs=0.05)
    assert results["bpd_iwae"] == pytest.approx(results["iwae_nll"] / (6 * math.log(2)))
    assert results["bpd_elbo"] == pytest.approx(results["neg_elbo"] / (6 * math.log(2)))
    assert "bce" not in results


def test_kl_per_dimension_sums_to_total_kl(model):
    x, y = model.sample_data(30, seed=4)
    results = evaluate_model(model, batches(x, y, 7), k=2, progress=False)
    _, kl = model.exact_elbo_parts(x, y)
    assert results["kl_per_dim"].shape == (model.z_dim,)
    torch.testing.assert_close(results["kl_per_dim"], kl.mean(0).float())
    assert results["kl_per_dim"].sum().item() == pytest.approx(results["kl"], rel=1e-5)


def test_active_units_ignore_dimensions_whose_mean_is_constant():
    # unit 0 follows the data, unit 1 is constant, unit 2 moves by 1e-3 (variance ~1e-6 < 0.01)
    model = LinearGaussianCVAE(mean_scale=[1.0, 0.0, 1e-3])
    x, y = model.sample_data(200, seed=5)
    results = evaluate_model(model, batches(x, y, 64), k=1, progress=False)
    assert results["active_units"] == 1
    assert results["active_mask"].tolist() == [True, False, False]
    means = model.encode(x, y)[0]
    expected = ((means - means.mean(0)) ** 2).sum(0) / (len(x) - 1)     # unbiased sample variance
    torch.testing.assert_close(results["posterior_mean_variance"], expected.float())
    assert results["posterior_mean_variance"][0] > 0.01 and results["posterior_mean_variance"][1] == 0


def test_active_units_function_counts_above_threshold():
    means = torch.stack([torch.arange(10.0), torch.full((10,), 3.0), 0.01 * torch.arange(10.0)], dim=1)
    count, variances = active_units(means)
    # var(0..9) = 55/6; var(0.01 * (0..9)) = 55/6 * 1e-4 < 0.01
    torch.testing.assert_close(variances, torch.tensor([55 / 6, 0.0, 55 / 6 * 1e-4]))
    assert count == 1
    assert active_units(means, threshold=1e-4)[0] == 2
    with pytest.raises(ValueError, match="N, z"):
        active_units(torch.zeros(5))


def test_evaluate_model_is_reproducible_and_restores_the_mode(model, data):
    x, y = data
    loader = batches(x, y, 3)
    model.train()
    first = evaluate_model(model, loader, k=5, seed=7, progress=False)
    assert model.training
    model.eval()
    second = evaluate_model(model, loader, k=5, seed=7, progress=False)
    assert not model.training
    other = evaluate_model(model, loader, k=5, seed=8, progress=False)
    assert first["iwae_nll"] == second["iwae_nll"] and first["nll"] == second["nll"]
    assert other["iwae_nll"] != first["iwae_nll"]


# --------------------------------------------------------------------------------- bits, recon
def test_bits_per_dim_arithmetic():
    nats = 784 * math.log(2) * 1.5
    assert bits_per_dim(nats, 784) == pytest.approx(1.5)
    assert bits_per_dim(nats, (1, 28, 28)) == pytest.approx(1.5)
    assert bits_per_dim(3 * 32 * 32 * math.log(2), (3, 32, 32)) == pytest.approx(1.0)
    torch.testing.assert_close(bits_per_dim(torch.tensor([0.0, 2 * math.log(2)]), 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="positive"):
        bits_per_dim(1.0, 0)


def test_reconstruction_error_gaussian(model, data):
    x, y = data
    mu = model.encode(x, y)[0]
    x_hat = (mu @ model.W.T + model.b[y]).view_as(x)
    terms = reconstruction_error(model, x, y)
    torch.testing.assert_close(terms["mse"], ((x - x_hat) ** 2).mean((1, 2, 3)))
    assert set(terms) == {"mse"}


def test_reconstruction_error_and_bce_bernoulli():
    model = LinearBernoulliCVAE()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, *IMAGE_SHAPE, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (10,), generator=g)
    logits = (model.encode(x, y)[0] @ model.W.T + model.b[y]).view_as(x)
    terms = reconstruction_error(model, x, y)
    torch.testing.assert_close(terms["mse"], ((x - torch.sigmoid(logits)) ** 2).mean((1, 2, 3)))
    bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(terms["bce"], bce)
    results = evaluate_model(model, batches(x, y, 4), k=3, progress=False)
    assert results["bce"] == pytest.approx(bce.mean().item())
    assert results["mse"] == pytest.approx(terms["mse"].mean().item())


def test_bad_inputs_raise(model, data):
    x, y = data
    with pytest.raises(ValueError, match="B, C, H, W"):
        iwae_bound(model, x[0], y[:1])
    with pytest.raises(ValueError, match="labels"):
        elbo_terms(model, x, y[:3])
    with pytest.raises(ValueError, match="k"):
        iwae_bound(model, x, y, k=0)
    with pytest.raises(ValueError, match="no batches"):
        evaluate_model(model, [], progress=False)


# ------------------------------------------------------------------------ the real CVAE, if present
def test_evaluate_model_with_the_cvae():
    cvae_module = pytest.importorskip("vae_lib.models.cvae")
    data_module = pytest.importorskip("vae_lib.data")
    torch.manual_seed(0)
    model = cvae_module.CVAE(z_dim=4, likelihood="bernoulli")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 28, 28, generator=g)
    y = torch.arange(6) % 10
    loader = data_module.InMemoryLoader(x, y, batch_size=4, shuffle=False)
    results = evaluate_model(model, loader, k=8, progress=False)
    from_list = evaluate_model(model, batches(x, y, 4), k=8, progress=False)
    assert [results[key] for key in ("iwae_nll", "nll", "kl", "mse", "bce")] == pytest.approx(
        [from_list[key] for key in ("iwae_nll", "nll", "kl", "mse", "bce")])
    assert results["num_images"] == 6
    assert results["kl_per_dim"].shape == (4,) and results["num_dims"] == 784
    assert results["kl_per_dim"].sum().item() == pytest.approx(results["kl"], rel=1e-5)
    assert 0 <= results["active_units"] <= 4
    assert results["bce"] > 0 and results["neg_elbo"] > results["kl"]
    # chunking changes only how many images are decoded at once
    a = iwae_bound(model, x, y, k=6, chunk_size=2, generator=torch.Generator().manual_seed(1))
    b = iwae_bound(model, x, y, k=6, chunk_size=6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError):     # [-1, 1] data for a Bernoulli model
        evaluate_model(model, batches(2 * x - 1, y, 4), k=2, progress=False)


# ----------------------------------------------------------------------------------------------- PSNR
def test_psnr_against_hand_computed_values():
    from vae_lib.evaluate import psnr

    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.1              # every value off by 0.1: MSE 0.01, range 1 -> 10 log10(1 / 0.01) = 20 dB
    y[1, 0, 0, 0] = 0.48     # one value of 48 off by 0.48: MSE 0.0048 -> 10 log10(1 / 0.0048) = 23.18 dB
    got = psnr(x, y)
    assert got.shape == (2,) and got.dtype == torch.float64
    assert got.tolist() == pytest.approx([20.0, 10 * math.log10(1 / 0.0048)])
    # the same errors on a [-1, 1] image have a range twice as wide: +20 log10(2) = +6.02 dB
    assert psnr(x, y, value_range=(-1, 1)).tolist() == pytest.approx((got + 20 * math.log10(2)).tolist())
    assert psnr(x, x)[0].item() == math.inf


def test_psnr_bad_inputs():
    from vae_lib.evaluate import psnr

    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="low < high"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), value_range=(1, 1))
def test_ssim_is_one_for_identical_images_and_lower_for_blur_than_for_equal_mse_noise():
    from torchvision.transforms.functional import gaussian_blur

    from vae_lib.evaluate import psnr, ssim

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 32, 32, generator=g) > 0.5).float()       # sharp edges everywhere
    torch.testing.assert_close(ssim(x, x), torch.ones(4, dtype=torch.float64))
    blurred = gaussian_blur(x, kernel_size=5, sigma=1.0)
    rms = (blurred - x).pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
    noisy = x + rms * torch.randn(x.shape, generator=g)               # the same MSE, spread as noise
    assert torch.allclose(psnr(noisy, x), psnr(blurred, x), atol=0.3)
    assert (ssim(blurred, x) < 1).all() and ssim(x, x).shape == (4,)
    assert (ssim(blurred, x) < ssim(noisy, x)).all()   # blur loses structure that noise of the same MSE keeps
    # The range is the data range: the same pair scaled by 2 in (0, 2) scores the same.
    torch.testing.assert_close(ssim(blurred * 2, x * 2, value_range=(0, 2)), ssim(blurred, x))
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, x[:2])


def test_edge_ratio_reads_blur_below_one_and_noise_above():
    from torchvision.transforms.functional import gaussian_blur

    from vae_lib.evaluate import edge_ratio

    x = torch.zeros(1, 3, 16, 16)
    x[..., 4:12, 4:12] = 1.0
    torch.testing.assert_close(edge_ratio(x, x), torch.ones(1, dtype=torch.float64))
    assert edge_ratio(gaussian_blur(x, 5, 2.0), x).item() < 0.8
    assert edge_ratio(x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)), x).item() > 1.5
    half = x * 0.5                                      # half the contrast: half the RMS gradient
    torch.testing.assert_close(edge_ratio(half, x), torch.full((1,), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        edge_ratio(x, x[..., :8, :8])
