"""Likelihoods, KL and the CVAE loss (vae_lib.losses), checked against torch.distributions and hand formulas."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from vae_lib.losses import CVAELoss, kl_standard_normal, log_likelihood
from vae_lib.models.cvae import CVAE


def test_bernoulli_log_likelihood_matches_torch_distributions():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 4, 4) * 3
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    expected = Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_likelihood(logits, x, "bernoulli"), expected)


def test_bernoulli_log_likelihood_grey_values_hand_formula():
    torch.manual_seed(1)
    logits, x = torch.randn(2, 1, 5, 5), torch.rand(2, 1, 5, 5)
    expected = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_likelihood(logits, x, "bernoulli"), expected)


def test_bernoulli_at_zero_logits_is_log_half_per_pixel():
    x = torch.randint(0, 2, (2, 1, 28, 28)).float()
    torch.testing.assert_close(log_likelihood(torch.zeros_like(x), x, "bernoulli"),
                               torch.full((2,), -784 * math.log(2)))


def test_gaussian_log_likelihood_matches_torch_distributions():
    torch.manual_seed(2)
    mean, x = torch.randn(3, 1, 6, 6) * 0.5, torch.rand(3, 1, 6, 6) * 2 - 1
    for sigma in (0.1, 0.5, 1.0):
        expected = Normal(mean, sigma).log_prob(x).sum(dim=(1, 2, 3))
        torch.testing.assert_close(log_likelihood(mean, x, "gaussian", sigma), expected, rtol=1e-5, atol=1e-3)


def test_gaussian_includes_the_normalising_constant():
    # at x = mean only the constant is left: -0.5 log(2 pi sigma^2) per pixel (positive for sigma = 0.1)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    per_pixel = -0.5 * math.log(2 * math.pi * 0.1 ** 2)
    torch.testing.assert_close(log_likelihood(x.clone(), x, "gaussian", sigma=0.1),
                               torch.full((2,), 784 * per_pixel))
    # one pixel off by 0.3, sigma 0.1: 0.3^2 / (2 * 0.01) = 4.5 nats less
    moved = x.clone()
    moved[0, 0, 0, 0] += 0.3
    diff = log_likelihood(x, x, "gaussian", 0.1) - log_likelihood(moved, x, "gaussian", 0.1)
    torch.testing.assert_close(diff, torch.tensor([4.5, 0.0]), atol=1e-3, rtol=0)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5), "bernoulli"), "same shape"),
    ((torch.zeros(2, 4), torch.zeros(2, 4), "poisson"), "likelihood"),
    ((torch.zeros(2, 4), torch.zeros(2, 4), "gaussian"), "sigma"),
])
def test_log_likelihood_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        log_likelihood(*args)


def test_kl_matches_torch_distributions():
    torch.manual_seed(3)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6) * 2
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    kl = kl_standard_normal(mu, logvar)
    assert kl.shape == (4, 6)
    torch.testing.assert_close(kl, expected)


def test_kl_edge_cases():
    assert torch.equal(kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 3))
    # mu = 1, var = 1: 0.5 * 1^2 = 0.5 nats;  mu = 0, var = e: 0.5 * (e - 1 - 1)
    kl = kl_standard_normal(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.5 * (math.e - 2)]]))
    with pytest.raises(ValueError, match="same shape"):
        kl_standard_normal(torch.zeros(2, 3), torch.zeros(2, 4))


class FixedModel:
    """Stands in for the CVAE with fixed encoder outputs and logits; z = mu (no noise)."""

    likelihood, sigma = "bernoulli", None

    def __init__(self, mu, logvar, logits):
        self.mu, self.logvar, self.logits = mu, logvar, logits

    def encode(self, x, y):
        return self.mu, self.logvar

    def reparameterize(self, mu, logvar):
        return mu

    def decode_params(self, z, y):
        return self.logits


def fixed_case():
    torch.manual_seed(4)
    x = torch.randint(0, 2, (3, 1, 4, 4)).float()
    logits = torch.randn(3, 1, 4, 4)
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    nll = -Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3)).mean()
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(1).mean()
    return FixedModel(mu, logvar, logits), (x, torch.zeros(3, dtype=torch.long)), nll, kl


@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_loss_terms_on_known_inputs(beta):
    model, batch, nll, kl = fixed_case()
    out = CVAELoss()(model, batch, beta=beta)
    assert set(out) == {"loss", "nll", "kl", "elbo", "beta"}
    assert all(v.ndim == 0 for v in out.values())
    torch.testing.assert_close(out["nll"], nll)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], nll + beta * kl)
    torch.testing.assert_close(out["elbo"], -(nll + kl))
    assert out["beta"].item() == beta


def test_free_bits_clamp_each_dimension_in_the_loss_only():
    # KL per dimension (same for both images): dim 0 -> 0, dim 1 -> 0.5 * 2^2 = 2 nats
    mu = torch.tensor([[0.0, 2.0], [0.0, 2.0]], requires_grad=True)
    logvar = torch.zeros(2, 2)
    x = torch.ones(2, 1, 2, 2)
    model = FixedModel(mu, logvar, torch.zeros(2, 1, 2, 2))
    batch = (x, torch.zeros(2, dtype=torch.long))
    nll = 4 * math.log(2)

    plain = CVAELoss()(model, batch, beta=1.0)
    torch.testing.assert_close(plain["loss"], torch.tensor(nll + 2.0))

    out = CVAELoss(free_bits=0.5)(model, batch, beta=2.0)
    torch.testing.assert_close(out["kl"], torch.tensor(2.0))                 # logged: the true KL
    torch.testing.assert_close(out["loss"], torch.tensor(nll + 2.0 * (0.5 + 2.0)))  # dim 0 counts 0.5
    torch.testing.assert_close(out["elbo"], torch.tensor(-(nll + 2.0)))
    out["loss"].backward()
    assert torch.all(mu.grad[:, 0] == 0)  # below the floor: no pull towards the prior
    torch.testing.assert_close(mu.grad[:, 1], torch.full((2,), 2.0 * 2.0 / 2))  # beta * mu / batch

    above = CVAELoss(free_bits=3.0)(model, batch, beta=1.0)
    torch.testing.assert_close(above["loss"], torch.tensor(nll + 3.0 + 3.0))


def test_free_bits_use_the_batch_average_per_dimension():
    # dim 0: KL 0 for image 1, 2 nats for image 2 -> batch mean 1 > 0.5, so no clamp
    mu = torch.tensor([[0.0], [2.0]])
    model = FixedModel(mu, torch.zeros(2, 1), torch.zeros(2, 1, 1, 1))
    out = CVAELoss(free_bits=0.5)(model, (torch.ones(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)), beta=1.0)
    torch.testing.assert_close(out["loss"], torch.tensor(math.log(2) + 1.0))


def test_loss_arguments():
    with pytest.raises(ValueError, match="free_bits"):
        CVAELoss(free_bits=-1.0)
    model, (x, y), _, _ = fixed_case()
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        CVAELoss()(model, x, beta=1.0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_forward_backward_on_the_cvae(likelihood):
    torch.manual_seed(5)
    model = CVAE(z_dim=4, likelihood=likelihood)
    x = torch.rand(3, 1, 28, 28)
    if likelihood == "gaussian":
        x = 2 * x - 1
    out = CVAELoss(free_bits=0.1)(model, (x, torch.tensor([0, 4, 9])), beta=1.0, epoch=0)
    assert all(torch.isfinite(v) for v in out.values())
    assert out["kl"] >= 0 and out["loss"] >= out["nll"]
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_calibrated_reconstruction_is_the_gaussian_nll_at_the_batch_sigma():
    from vae_lib.losses import StyleVAELoss

    class Fixed(torch.nn.Module):
        def __init__(self, x_hat):
            super().__init__()
            self.x_hat = x_hat

        def forward(self, x):
            return self.x_hat, torch.zeros(x.shape[0], 4), torch.zeros(x.shape[0], 4)

    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.full_like(x, 0.2)                       # every squared error 0.04: sigma = 0.2
    loss = StyleVAELoss(perceptual_weight=0.0, vgg_weights=None, reconstruction="calibrated")
    terms = loss(Fixed(x_hat), (x,), beta=1.0)
    dims = 48
    want = dims * 0.04 / (2 * 0.04) + dims * (math.log(0.2) + 0.5 * math.log(2 * math.pi))
    assert terms["sigma"].item() == pytest.approx(0.2)
    assert terms["nll"].item() == pytest.approx(want, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(want, rel=1e-5)          # KL of N(0, 1) is 0
    # The floor: a perfect reconstruction does not divide by zero.
    floored = loss(Fixed(x.clone()), (x,), beta=1.0)
    assert floored["sigma"].item() == pytest.approx(0.01) and math.isfinite(floored["loss"].item())
    # The pixel term's gradient is the MSE's, weighted by 1 / (2 sigma^2): sigma gets none.
    x_hat.requires_grad_(True)
    loss(Fixed(x_hat), (x,), beta=1.0)["loss"].backward()
    torch.testing.assert_close(x_hat.grad, torch.full_like(x, 2 * 0.2 / (2 * 0.04) / 2))
    with pytest.raises(ValueError, match="mse_weight"):
        StyleVAELoss(mse_weight=50.0, perceptual_weight=0.0, vgg_weights=None, reconstruction="calibrated")
    with pytest.raises(ValueError, match="reconstruction"):
        StyleVAELoss(perceptual_weight=0.0, vgg_weights=None, reconstruction="l1")
