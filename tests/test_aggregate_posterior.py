"""models.sampling.aggregate_posterior and the fitted prior it gives: prior_codes, sample_images, factor_transfer
and viz.samples_by_prior, checked on encoders and decoders whose answer is known."""
import math

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.distributions import MultivariateNormal

from vae_lib import metrics, viz
from vae_lib.data import ImageData
from vae_lib.models import sampling


def indexed_images(n: int) -> ImageData:
    """n images whose pixel (0, 0, 0) is their index (so a lookup encoder knows which one it sees)."""
    images = torch.zeros(n, 3, 4, 4)
    images[:, 0, 0, 0] = torch.arange(n).float()
    return ImageData(images=images, labels=torch.zeros(n, dtype=torch.long), name="fake", source="test",
                     reason="test", value_range=(-1.0, 1.0), class_names=["0"])


class LookupVAE(nn.Module):
    """encode(x) -> (mu, logvar) from tables indexed by pixel (0, 0, 0); decode(z) paints z[:, 0] everywhere."""
    conditional = False
    data_range = (-1.0, 1.0)

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("logvar", logvar)
        self.z_dim = mu.shape[1]
        self.anchor = nn.Parameter(torch.zeros(()))

    def encode(self, x, y=None):
        rows = x[:, 0, 0, 0].round().long()
        return self.mu[rows], self.logvar[rows]

    def decode(self, z, y=None, *, noise_mode=None, truncation_psi=1.0):
        return z[:, :1, None, None].expand(-1, 3, 4, 4).clamp(-1, 1)


def test_posterior_parameters_are_mu_and_logvar_in_order():
    mu, logvar = torch.randn(10, 3), torch.randn(10, 3)
    got_mu, got_logvar = sampling.posterior_parameters(LookupVAE(mu, logvar), indexed_images(10), batch_size=4)
    assert torch.equal(got_mu, mu) and torch.equal(got_logvar, logvar)
    assert torch.equal(metrics.posterior_means(LookupVAE(mu, logvar), indexed_images(10), batch_size=3), mu)


def test_aggregate_posterior_has_the_mixtures_mean_and_covariance():
    # Four posteriors: means (+-1, +-2) in two dimensions with sigma^2 = 0.25 and 1. The mixture's mean is 0,
    # its covariance diag(1 + 0.25, 4 + 1) (the means are uncorrelated), worked out by hand.
    mu = torch.tensor([[1.0, 2.0], [1.0, -2.0], [-1.0, 2.0], [-1.0, -2.0]]) + torch.tensor([3.0, -1.0])
    logvar = torch.log(torch.tensor([[0.25, 1.0]])).expand(4, 2)
    prior = sampling.aggregate_posterior(LookupVAE(mu, logvar), indexed_images(4))
    assert isinstance(prior, MultivariateNormal)
    assert torch.allclose(prior.loc, torch.tensor([3.0, -1.0]))
    assert torch.allclose(prior.covariance_matrix, torch.diag(torch.tensor([1.25, 5.0])), atol=1e-6)


def test_aggregate_posterior_of_correlated_codes_keeps_the_correlation():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4000, 1, generator=g)
    mu = torch.cat([base, 2 * base + 0.1 * torch.randn(4000, 1, generator=g)], 1)
    prior = sampling.aggregate_posterior(LookupVAE(mu, torch.full_like(mu, -20.0)), indexed_images(4000))
    cov = prior.covariance_matrix
    assert cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt() > 0.99
    with pytest.raises(ValueError, match="at least 2 images"):
        sampling.aggregate_posterior(LookupVAE(mu, mu), indexed_images(1))


def test_prior_codes_of_a_fitted_prior_are_the_same_draws_scaled_and_shifted():
    loc, tril = torch.tensor([1.0, -2.0]), torch.tensor([[2.0, 0.0], [1.0, 0.5]])
    prior = MultivariateNormal(loc, scale_tril=tril)
    eps = sampling.prior_codes(5, 2, seed=3)
    assert torch.allclose(sampling.prior_codes(5, 2, seed=3, prior=prior), loc + eps @ tril.T)
    many = sampling.prior_codes(20000, 2, seed=0, prior=prior)
    assert torch.allclose(many.mean(0), loc, atol=0.05)
    assert torch.allclose(torch.cov(many.T), tril @ tril.T, atol=0.1)
    with pytest.raises(ValueError, match="MultivariateNormal over 3"):
        sampling.prior_codes(5, 3, prior=prior)
    with pytest.raises(ValueError, match="MultivariateNormal"):
        sampling.prior_codes(5, 2, prior=torch.distributions.Normal(0.0, 1.0))


def test_sample_images_and_the_figure_decode_the_fitted_priors_codes():
    model = LookupVAE(torch.zeros(2, 2), torch.zeros(2, 2))
    shifted = MultivariateNormal(torch.tensor([0.5, 0.0]), scale_tril=0.01 * torch.eye(2))
    images = sampling.sample_images(model, 6, seed=1, prior=shifted)
    assert torch.allclose(images[:, 0, 0, 0], torch.full((6,), 0.5), atol=0.05)
    fig = viz.samples_by_prior(model, {"N(0, I)": None, "fitted": shifted}, n=3, rows=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_yticklabels()[0].get_text() for ax in fig.axes] == ["N(0, I)", "fitted"]
    with pytest.raises(ValueError, match="No priors"):
        viz.samples_by_prior(model, {})


class ZJudge:
    """A judge whose only factor, 'shape', is the sign of pixel (0, 0, 0): what a LookupVAE painted from z[:, 0]."""
    heads_spec = {"shape": 2, "object_hue": 2}

    def predict(self, images, value_range=None, batch_size=None):
        sign = (images[:, 0, 0, 0] > 0).long()
        return {"shape": sign, "object_hue": 1 - sign}


class Mixer(LookupVAE):
    num_style_layers = 2

    def mix(self, z1, z2, k, **options):
        return self.decode(z1 if k == 2 else z2)


def test_factor_transfer_draws_its_codes_from_a_given_prior():
    model = Mixer(torch.zeros(2, 2), torch.zeros(2, 2))
    positive = MultivariateNormal(torch.tensor([5.0, 0.0]), scale_tril=torch.eye(2) * 0.1)
    table = metrics.factor_transfer(model, ZJudge(), n=50, crossovers=[0, 2], coarse=("shape",), fine=("object_hue",),
                                    prior=positive)
    assert table[0]["pairs"] == 0                   # every code is positive: the sources never differ
    table = metrics.factor_transfer(model, ZJudge(), n=200, crossovers=[0, 2], coarse=("shape",), fine=("object_hue",))
    assert table[2]["pairs"] > 50 and table[2]["from_source1"]["shape"] == 1.0
    with pytest.raises(ValueError, match="not two"):
        metrics.factor_transfer(model, ZJudge(), n=2, coarse=("shape",), fine=("object_hue",), prior=positive,
                                sources=torch.zeros(4, 3, 4, 4))


def test_prior_mismatch_splits_the_kl_by_hand():
    # Two images, one dimension: posteriors N(+-3, 1). KL per image 0.5 * 9 = 4.5 nats; log N = log 2;
    # the fitted Gaussian N(0, 9 + 1) has KL 0.5 (10 - 1 - log 10) to N(0, 1).
    mu, logvar = torch.tensor([[3.0], [-3.0]]), torch.zeros(2, 1)
    result = sampling.prior_mismatch(LookupVAE(mu, logvar), indexed_images(2))
    assert result["kl_per_image"] == pytest.approx(4.5)
    assert result["log_n"] == pytest.approx(math.log(2))
    assert result["fitted_kl"] == pytest.approx(0.5 * (9 - math.log(10)), rel=1e-5)
    assert result["fitted"].covariance_matrix.item() == pytest.approx(10.0)
    # Codes that are the prior's own: nothing to mismatch.
    g = torch.Generator().manual_seed(0)
    many = torch.randn(20000, 2, generator=g)
    result = sampling.prior_mismatch(LookupVAE(many * 0.6, torch.full_like(many, math.log(0.64))), indexed_images(20000))
    assert result["fitted_kl"] < 0.01 and result["kl_per_image"] == pytest.approx(2 * 0.5 * (0.36 + 0.64 - 1 - math.log(0.64)), rel=0.02)


class FlatJudge:
    """Features: the flattened pixels (so the FID of two image sets is that of their pixel statistics)."""

    def embed_images(self, images, value_range=None, batch_size=None):
        return images.flatten(1).float()


def test_model_fid_of_a_fitted_prior_decodes_its_codes():
    # Real images: every pixel 0.5 plus a little noise. The painter paints z[:, 0]: from N(0, I) its images
    # are far from the data; from a prior centred on 0.5 with the data's spread, close to them.
    g = torch.Generator().manual_seed(0)
    values = 0.5 + 0.05 * torch.randn(400, generator=g)
    real = values.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    test = ImageData(images=real, labels=torch.zeros(400, dtype=torch.long), name="fake", source="test",
                     reason="test", value_range=(-1.0, 1.0), class_names=["0"])
    model = LookupVAE(torch.zeros(2, 2), torch.zeros(2, 2))
    fitted = MultivariateNormal(torch.tensor([0.5, 0.0]), scale_tril=torch.diag(torch.tensor([0.05, 1.0])))
    standard = metrics.model_fid(model, FlatJudge(), test, n=400)["fid"]
    assert metrics.model_fid(model, FlatJudge(), test, n=400, prior=fitted)["fid"] < 0.01 < standard


def test_sample_grid_of_a_fitted_prior_is_n_by_n_codes_of_it():
    model = LookupVAE(torch.zeros(2, 2), torch.zeros(2, 2))
    shifted = MultivariateNormal(torch.tensor([-0.5, 0.0]), scale_tril=0.01 * torch.eye(2))
    images, nrow = sampling.sample_grid(model, 3, prior=shifted)
    assert nrow == 3 and images.shape == (9, 3, 4, 4)
    assert torch.allclose(images[:, 0, 0, 0], torch.full((9,), -0.5), atol=0.05)


class Truncating(LookupVAE):
    """decode(z, truncation_psi=psi) paints psi * z[:, 0]: the average code is 0."""

    def decode(self, z, y=None, *, noise_mode=None, truncation_psi=1.0):
        return super().decode(truncation_psi * z)


def test_truncation_fids_measure_each_psi_with_the_same_codes():
    g = torch.Generator().manual_seed(1)
    values = 0.3 * torch.randn(500, generator=g)          # real images: one value, spread 0.3
    real = values.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    test = ImageData(images=real, labels=torch.zeros(500, dtype=torch.long), name="fake", source="test",
                     reason="test", value_range=(-1.0, 1.0), class_names=["0"])
    model = Truncating(torch.zeros(2, 2), torch.zeros(2, 2))
    fids = metrics.truncation_fids(model, FlatJudge(), test, psis=(1.0, 0.3, 0.0), n=500)
    assert list(fids) == [1.0, 0.3, 0.0]
    # N(0, I) codes painted with spread psi: psi = 0.3 matches the data's spread, 1 and 0 do not.
    assert fids[0.3] < fids[1.0] and fids[0.3] < fids[0.0]
    assert fids[1.0] == pytest.approx(metrics.model_fid(model, FlatJudge(), test, n=500)["fid"])
    fig = viz.truncation_fid_curves({"N(0, I)": fids}, references={"floor": 0.1})
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 2
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].xaxis_inverted()
    with pytest.raises(ValueError, match="No FID curves"):
        viz.truncation_fid_curves({})


class ReconstructingTruncating(Truncating):
    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x)[0])


def test_truncation_curves_are_truncation_fids_and_the_reconstructions_fid_of_each_run():
    g = torch.Generator().manual_seed(2)
    real = (0.3 * torch.randn(300, generator=g)).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    test = ImageData(images=real, labels=torch.zeros(300, dtype=torch.long), name="fake", source="test",
                     reason="test", value_range=(-1.0, 1.0), class_names=["0"])
    model = ReconstructingTruncating(torch.zeros(2, 2), torch.zeros(2, 2))
    fitted = MultivariateNormal(torch.tensor([0.0, 0.0]), scale_tril=torch.diag(torch.tensor([0.3, 1.0])))
    psis = (1.0, 0.5)
    curves, marks = metrics.truncation_curves({"a": (model, test, fitted), "b": (model, test, None)}, FlatJudge(),
                                              psis, n=300)
    assert list(curves) == ["a, z ~ N(0, I)", "a, z ~ fitted q(z)", "b, z ~ N(0, I)"]
    assert list(marks) == ["a: reconstructions", "b: reconstructions"]
    assert curves["a, z ~ fitted q(z)"] == metrics.truncation_fids(model, FlatJudge(), test, psis, n=300,
                                                                   prior=fitted)
    assert curves["b, z ~ N(0, I)"] == metrics.truncation_fids(model, FlatJudge(), test, psis, n=300)
    assert curves["a, z ~ fitted q(z)"][1.0] < curves["a, z ~ N(0, I)"][1.0]   # the fitted prior has the data's spread
    assert marks["a: reconstructions"] == pytest.approx(
        metrics.fid_yardsticks(model, FlatJudge(), test, n=300, blur_sigmas=())["reconstructions"])


def test_fitted_prior_fits_the_codes_of_the_first_training_images():
    from vae_lib.configs import apply_overrides, get_config
    from vae_lib.experiments import build_data, build_model, fitted_prior

    config = get_config("stylevae-smoke")          # 64 training shapes
    torch.manual_seed(0)
    model = build_model(config).eval()
    whole = fitted_prior(model, config)
    assert torch.allclose(whole.loc, sampling.aggregate_posterior(model, build_data(config, verbose=False)).loc)
    first = fitted_prior(model, config, max_images=20)
    by_hand = sampling.aggregate_posterior(model, build_data(apply_overrides(config, {"n_train": 20}), verbose=False))
    assert torch.allclose(first.loc, by_hand.loc) and torch.allclose(first.covariance_matrix, by_hand.covariance_matrix)
    assert not torch.allclose(first.loc, whole.loc)
    assert torch.allclose(fitted_prior(model, config, max_images=1000).loc, whole.loc)   # a cap above n_train: all
    with pytest.raises(ValueError, match="at least 2"):
        fitted_prior(model, config, max_images=1)
