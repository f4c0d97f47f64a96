"""vae_lib.metrics: FID against closed forms, conditional accuracy and factor transfer on fake models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from vae_lib import metrics


def random_spd(d, generator, scale=1.0):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return scale * (a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- FID
def test_frechet_distance_matches_the_2x2_closed_form():
    # For a 2 x 2 matrix M with non-negative eigenvalues, Tr(M^1/2) = sqrt(Tr M + 2 sqrt(det M)),
    # worked out without any matrix square root; S1 and S2 do not commute.
    s1 = torch.tensor([[2.0, 0.7], [0.7, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    mu1, mu2 = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 2.0])
    assert not torch.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2
    tr_sqrt = math.sqrt(m.trace().item() + 2 * math.sqrt(torch.linalg.det(m).item()))
    want = 1.0 + 9.0 + s1.trace().item() + s2.trace().item() - 2 * tr_sqrt
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-10)


def test_frechet_distance_of_diagonal_gaussians():
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 4.0, 1.0])
    want = 3.0 + ((a.sqrt() - b.sqrt()) ** 2).sum().item()      # ||(1,1,1)||^2 + sum (sigma1 - sigma2)^2
    assert metrics.frechet_distance(torch.zeros(3), torch.diag(a), torch.ones(3), torch.diag(b)) == \
        pytest.approx(want, rel=1e-12)


def test_fid_of_samples_approaches_the_closed_form():
    gen = torch.Generator().manual_seed(0)
    s1, s2 = random_spd(2, gen), random_spd(2, gen, scale=2.0)
    mu1, mu2 = torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([0.5, -0.5], dtype=torch.float64)
    n = 200_000
    x1 = mu1 + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    x2 = mu2 + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    m = s1 @ s2
    tr_sqrt = math.sqrt(m.trace().item() + 2 * math.sqrt(torch.linalg.det(m).item()))
    want = (mu1 - mu2).pow(2).sum().item() + s1.trace().item() + s2.trace().item() - 2 * tr_sqrt
    assert metrics.fid_from_features(x1, x2) == pytest.approx(want, abs=0.03)


def test_identical_sets_give_zero_and_shifted_sets_a_large_fid():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(500, 16, generator=gen) @ torch.randn(16, 16, generator=gen)
    assert metrics.fid_from_features(features, features.clone()) == pytest.approx(0.0, abs=1e-6)
    # A shift of 3 in every one of 16 dimensions moves the means by ||shift||^2 = 144; covariances equal.
    assert metrics.fid_from_features(features, features + 3.0) == pytest.approx(144.0, rel=1e-6)


def test_gaussian_statistics_are_numpy_mean_and_unbiased_cov():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    mu, cov = metrics.gaussian_statistics(x)
    assert mu.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), x.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-10)
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.gaussian_statistics(torch.zeros(1, 4))


class PixelJudge:
    """A fake judge: features are the flattened pixels, the label is the mean pixel times 10, with
    class 3 mistaken for 5."""

    heads_spec = {"label": 10}
    label_head = "label"

    def embed_images(self, images, value_range=None, batch_size=None):
        return images.flatten(1).float()

    def predict_labels(self, images, value_range=None, batch_size=None):
        labels = (images.flatten(1).mean(1) * 10).round().long()
        return torch.where(labels == 3, torch.tensor(5), labels)


def test_judge_fid_on_identical_and_shifted_image_sets():
    images = torch.rand(300, 1, 3, 3, generator=torch.Generator().manual_seed(3))
    judge = PixelJudge()
    assert metrics.judge_fid(judge, images, images.clone()) == pytest.approx(0.0, abs=1e-6)
    assert metrics.judge_fid(judge, images, images + 0.5) == pytest.approx(9 * 0.25, rel=1e-6)


# --------------------------------------------------------------------------- conditional accuracy
class LabelPainter(nn.Module):
    """A fake CVAE: decode(z, y) is an image whose every pixel is y / 10 (z is ignored)."""

    conditional = True
    data_range = (0.0, 1.0)

    def __init__(self, z_dim=3, num_classes=10):
        super().__init__()
        self.z_dim, self.num_classes = z_dim, num_classes
        self.anchor = nn.Parameter(torch.zeros(()))
        self.decoded_labels = []

    def decode(self, z, y, *, noise_mode=None, truncation_psi=1.0):
        self.decoded_labels.append(y.clone())
        return (y.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) + 0 * z[:, :1, None, None]


def test_conditional_accuracy_per_class_and_confusion():
    result = metrics.conditional_accuracy(LabelPainter(), PixelJudge(), n_per_class=7, batch_size=16)
    want = [1.0] * 10
    want[3] = 0.0
    assert result["per_class"] == want
    assert result["overall"] == pytest.approx(0.9)
    confusion = torch.diag(torch.full((10,), 7))
    confusion[3, 3], confusion[3, 5] = 0, 7
    assert torch.equal(result["confusion"], confusion)
    with pytest.raises(ValueError, match="class-conditional"):
        metrics.conditional_accuracy(nn.Linear(1, 1), PixelJudge())


def test_model_fid_follows_the_protocol():
    from vae_lib.data import ImageData

    labels = torch.arange(10).repeat(5)
    real = (labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    test = ImageData(images=real, labels=labels, name="fake", source="test", reason="test", value_range=(0.0, 1.0),
                     class_names=[str(i) for i in range(10)], split="test")
    model = LabelPainter()
    out = metrics.model_fid(model, PixelJudge(), test, n=20)
    # The first n test images and their labels; the painter then reproduces them exactly.
    assert out == {"fid": pytest.approx(0.0, abs=1e-9), "n": 20, "seed": metrics.FID_SEED}
    assert torch.equal(torch.cat(model.decoded_labels), labels[:20])
    assert metrics.model_fid(model, PixelJudge(), test)["n"] == 50      # n = min(10,000, test size)


# ---------------------------------------------------------------------------------- factor transfer
FACTORS = {"shape": 5, "position_x": 8, "position_y": 8, "scale": 6, "rotation": 8,
           "object_hue": 8, "background_hue": 8, "texture": 4, "light": 4}
# The fake model's layer of each factor: coarse ones read layer 0, light layer 1, fine ones layer 2.
LAYER = {f: 0 for f in metrics.COARSE_FACTORS} | {"light": 1} | {f: 2 for f in metrics.FINE_FACTORS}


class FactorModel(nn.Module):
    """A fake StyleGAN-VAE whose 'image' of z is the factor bins themselves, one per channel, and
    whose mix takes factor f from z1 when the crossover k > LAYER[f], else from z2 (L = 3 layers)."""

    conditional = False
    num_style_layers = 3
    data_range = (-1.0, 1.0)

    def __init__(self):
        super().__init__()
        self.z_dim = len(FACTORS)
        self.anchor = nn.Parameter(torch.zeros(()))

    def decode(self, z, y=None, *, noise_mode=None):
        bins = torch.tensor(list(FACTORS.values()))
        return (torch.special.ndtr(z) * bins).floor().clamp(max=bins - 1).view(-1, len(FACTORS), 1, 1)

    def encode(self, x, y=None):
        """Inverts decode for 'images' made by decode: the centre of each factor's bin, as a code."""
        bins = torch.tensor(list(FACTORS.values()))
        mu = torch.special.ndtri((x.view(-1, len(FACTORS)) + 0.5) / bins)
        return mu, torch.zeros_like(mu)

    def mix(self, z1, z2, crossover, *, noise_mode=None):
        from_first = torch.tensor([crossover > LAYER[f] for f in FACTORS])
        return torch.where(from_first.view(1, -1, 1, 1), self.decode(z1), self.decode(z2))


class FactorJudge:
    heads_spec = FACTORS

    def predict(self, images, value_range=None, batch_size=None):
        return {f: images[:, i, 0, 0].long() for i, f in enumerate(FACTORS)}


def test_factor_transfer_on_a_model_that_copies_its_sources():
    n = 400
    coarse, fine = metrics.COARSE_FACTORS, metrics.FINE_FACTORS
    table = metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, seed=5, batch_size=128, coarse=coarse,
                                    fine=fine)
    assert sorted(table) == [0, 1, 2, 3]
    # The sources, drawn as the function documents, to count the informative pairs independently.
    gen = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(n, 9, generator=gen), torch.randn(n, 9, generator=gen)
    s1, s2 = FactorModel().decode(z1), FactorModel().decode(z2)
    differ = (s1 != s2).view(n, -1).sum(0)
    for k, row in table.items():
        for i, f in enumerate(FACTORS):
            follows_first = k > LAYER[f]
            assert row["from_source1"][f] == (1.0 if follows_first else 0.0), (k, f)
            assert row["from_source2"][f] == (0.0 if follows_first else 1.0), (k, f)
            assert row["informative"][f] == int(differ[i])
    assert table[0]["coarse_from_source1"] == 0.0 and table[0]["fine_from_source2"] == 1.0
    assert table[3]["coarse_from_source1"] == 1.0 and table[3]["fine_from_source2"] == 0.0
    # k = 1 and 2: coarse from source 1 and fine from source 2, for every image.
    assert table[1]["as_expected"] == table[2]["as_expected"] == 1.0
    # Only pairs whose sources differ in every target factor count: a shared factor would match
    # both sources. So the mix at k = 0 (source 2) and at k = L (source 1) scores 0 by construction.
    targets = [i for i, f in enumerate(FACTORS) if f in coarse + fine]
    informative = (s1[:, targets] != s2[:, targets]).view(n, -1).all(1)
    assert table[0]["pairs"] == table[3]["pairs"] == int(informative.sum()) > 0
    assert table[0]["as_expected"] == 0.0 and table[3]["as_expected"] == 0.0
    assert metrics.best_crossover(table) in (1, 2)


def test_split_summary_finds_the_one_factor_that_spoils_the_split():
    class StripesWithTheOutline(FactorModel):
        """Texture reads the first layer, with shape and position: no crossover splits all five."""

        def mix(self, z1, z2, crossover, *, noise_mode=None):
            layer = LAYER | {"texture": 0}
            from_first = torch.tensor([crossover > layer[f] for f in FACTORS])
            return torch.where(from_first.view(1, -1, 1, 1), self.decode(z1), self.decode(z2))

    summary = metrics.split_summary(StripesWithTheOutline(), FactorJudge(), 300, seed=2)
    assert set(summary) == {"all", "without"}
    assert summary["all"]["as_expected"] == 0.0 and all(row["as_expected"] == 0.0
                                                        for row in summary["all"]["table"].values())
    assert summary["without"]["as_expected"] == 1.0 and summary["without"]["best"] in (1, 2)
    assert summary["without"]["pairs"] > summary["all"]["pairs"] > 0     # one factor fewer must differ
    # The copying model splits with every factor; leaving out one it has not got is refused.
    assert metrics.split_summary(FactorModel(), FactorJudge(), 300, seed=2)["all"]["as_expected"] == 1.0
    with pytest.raises(ValueError, match="light"):
        metrics.split_summary(FactorModel(), FactorJudge(), 10, without="light")


def test_split_summary_decodes_once_and_equals_factor_transfer_for_both_splits():
    class Counting(FactorModel):
        calls = 0

        def mix(self, z1, z2, crossover, *, noise_mode=None):
            Counting.calls += 1
            return super().mix(z1, z2, crossover, noise_mode=noise_mode)

    summary = metrics.split_summary(Counting(), FactorJudge(), 40, seed=4, batch_size=64, crossovers=[0, 1, 2])
    assert Counting.calls == 3                  # one batch per crossover: the mixes are decoded once for both tables
    coarse = tuple(f for f in metrics.TRANSFER_COARSE if f != "texture")
    fine = tuple(f for f in metrics.TRANSFER_FINE if f != "texture")
    for name, (c, f) in {"all": (metrics.TRANSFER_COARSE, metrics.TRANSFER_FINE), "without": (coarse, fine)}.items():
        table = metrics.factor_transfer(FactorModel(), FactorJudge(), 40, seed=4, crossovers=[0, 1, 2],
                                        coarse=c, fine=f)
        assert summary[name]["table"] == table
    with pytest.raises(TypeError):
        metrics.split_summary(FactorModel(), FactorJudge(), 10, crossover=[1])     # a misspelt option is refused


def test_factor_transfer_splits_a_factor_by_the_level_of_source_2():
    class FineStripesFollowTheCoarseCode(FactorModel):
        """Texture levels 2 and 3 of source 2 are overruled by source 1 as soon as one layer is from it."""

        def mix(self, z1, z2, crossover, *, noise_mode=None):
            mixed = super().mix(z1, z2, crossover)
            t = list(FACTORS).index("texture")
            if crossover > 0:
                narrow = mixed[:, t] >= 2
                mixed[:, t] = torch.where(narrow, self.decode(z1)[:, t], mixed[:, t])
            return mixed

    n = 400
    table = metrics.factor_transfer(FineStripesFollowTheCoarseCode(), FactorJudge(), n=n, seed=3, crossovers=[0, 1, 3])
    gen = torch.Generator().manual_seed(3)
    s1, s2 = (FactorModel().decode(torch.randn(n, 9, generator=gen))[:, 7, 0, 0] for _ in range(2))
    differ = s1 != s2
    want_counts = {c: int((s2[differ] == c).sum()) for c in range(4) if (s2[differ] == c).any()}
    for k in (0, 1, 3):
        assert table[k]["informative_by_level"]["texture"] == want_counts
        assert sum(table[k]["informative_by_level"]["texture"].values()) == table[k]["informative"]["texture"]
    assert table[0]["from_source2_by_level"]["texture"] == {c: 1.0 for c in want_counts}
    # k = 1: levels 0 and 1 still from source 2 (texture is a fine factor); 2 and 3 taken from source 1.
    assert table[1]["from_source2_by_level"]["texture"] == {c: 1.0 if c < 2 else 0.0 for c in want_counts}
    assert table[3]["from_source2_by_level"]["texture"] == {c: 0.0 for c in want_counts}
    # The other factors are not split differently by level.
    assert set(table[1]["from_source2_by_level"]["object_hue"].values()) == {1.0}


def test_factor_transfer_default_targets_are_shape_and_position_against_hue_and_texture():
    table = metrics.factor_transfer(FactorModel(), FactorJudge(), n=300, seed=1)
    assert metrics.TRANSFER_COARSE == ("shape", "position_x", "position_y")
    assert metrics.TRANSFER_FINE == ("object_hue", "texture")
    assert [table[k]["as_expected"] for k in range(4)] == [0.0, 1.0, 1.0, 0.0]
    assert table[1]["coarse_from_source1"] == 1.0 and table[1]["fine_from_source2"] == 1.0


def test_factor_transfer_from_encoded_sources_uses_their_posterior_means():
    n = 200
    gen = torch.Generator().manual_seed(2)
    images = FactorModel().decode(torch.randn(2 * n, 9, generator=gen))   # 'images' with known factors
    table = metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, sources=images, crossovers=[0, 1, 3])
    want = (images[:n] != images[n:]).view(n, -1).sum(0)
    assert [table[1]["informative"][f] for f in FACTORS] == want.tolist()
    assert table[1]["as_expected"] == 1.0 and table[0]["as_expected"] == table[3]["as_expected"] == 0.0
    with pytest.raises(ValueError, match="2 n"):
        metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, sources=images[:n])


def test_factor_transfer_of_given_codes_uses_them_as_they_are():
    n = 150
    gen = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(n + 5, 9, generator=gen), torch.randn(n + 5, 9, generator=gen)
    table = metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, codes=(z1, z2), crossovers=[0, 1, 3])
    differ = (FactorModel().decode(z1[:n]) != FactorModel().decode(z2[:n])).view(n, -1).sum(0)
    assert [table[1]["informative"][f] for f in FACTORS] == differ.tolist()
    assert table[1]["as_expected"] == 1.0 and table[0]["as_expected"] == 0.0
    with pytest.raises(ValueError, match="not two"):
        metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, codes=(z1, z2), prior=object())
    with pytest.raises(ValueError, match="n >= 150"):
        metrics.factor_transfer(FactorModel(), FactorJudge(), n=n, codes=(z1[:10], z2[:10]))


def test_factor_transfer_of_a_model_that_ignores_z_is_undefined():
    class Constant(FactorModel):
        def decode(self, z, y=None, *, noise_mode=None):
            return super().decode(torch.zeros_like(z))

    table = metrics.factor_transfer(Constant(), FactorJudge(), n=20, crossovers=[1])
    assert table[1]["pairs"] == 0 and all(math.isnan(v) for v in table[1]["from_source1"].values())
    assert math.isnan(table[1]["as_expected"]) and math.isnan(table[1]["coarse_from_source1"])


def test_factor_transfer_checks_its_arguments():
    with pytest.raises(ValueError, match="crossovers must be whole numbers in"):
        metrics.factor_transfer(FactorModel(), FactorJudge(), n=4, crossovers=[4])

    class NoTexture(FactorJudge):
        heads_spec = {f: k for f, k in FACTORS.items() if f != "texture"}

    with pytest.raises(ValueError, match="texture"):
        metrics.factor_transfer(FactorModel(), NoTexture(), n=4)


# ------------------------------------------------------------------------------------- style mixing
class LinearMixer(nn.Module):
    """A stand-in StyleGAN decoder: decode(z) = z as an image, mix(z1, z2, k) = (k/L) z1 + (1 - k/L) z2."""

    num_style_layers = 4

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))     # a parameter, so that model_device finds one
        self.noise_modes = set()

    def decode(self, z, noise_mode=None):
        self.noise_modes.add(noise_mode)
        return z.view(-1, 1, 2, 2)

    def mix(self, z1, z2, crossover, noise_mode=None):
        t = crossover / self.num_style_layers
        return self.decode(t * z1 + (1 - t) * z2, noise_mode)


def test_mixing_influence_of_a_linear_mixer_is_the_squared_share():
    g = torch.Generator().manual_seed(0)
    model = LinearMixer()
    influence = metrics.mixing_influence(model, torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g))
    # m_k - b = (k/L)(a - b) for every pair, so the ratio of the sums is (k/L)^2
    assert influence.shape == (5,)
    assert influence.tolist() == pytest.approx([(k / 4) ** 2 for k in range(5)])
    assert model.noise_modes == {"const"} and model.training


def test_mixing_influence_bad_inputs():
    with pytest.raises(ValueError, match="shapes"):
        metrics.mixing_influence(LinearMixer(), torch.zeros(2, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="identical"):
        metrics.mixing_influence(LinearMixer(), torch.ones(2, 4), torch.ones(1, 4))


def test_reconstruction_scores_of_a_perfect_and_of_a_mean_model():
    from vae_lib import judges
    from vae_lib.data import load_dataset
    from vae_lib.judges import judge_for

    data = load_dataset("shapes", "test", n=16, size=32, verbose=False)

    class Copy(nn.Module):                       # reconstructs every image exactly
        def __init__(self, value=None):
            super().__init__()
            self.w, self.value = nn.Parameter(torch.zeros(())), value

        def reconstruct(self, x):
            return x if self.value is None else self.value.expand_as(x)

    torch.manual_seed(0)
    judge = judge_for(data, width=4, hidden=8).eval()       # untrained: right on some images, by chance
    perfect = metrics.reconstruction_scores(Copy(), data, judge)
    assert perfect["psnr_db"] == float("inf") and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["edge_ratio"] == pytest.approx(1.0)
    # The reconstructions are the images: every factor reads back as well as from them (undefined where the
    # judge is right on none of the real images).
    real = judges.judge_accuracy(judge, data)
    for name, ratio in perfect["read_back"].items():
        assert ratio == pytest.approx(1.0) if real[name] > 0 else math.isnan(ratio)
    assert any(real[name] > 0 for name in real)
    mean = metrics.reconstruction_scores(Copy(data.images.mean(0, keepdim=True)), data)
    assert mean["edge_ratio"] < 0.5 and mean["ssim"] < 0.5 and 5 < mean["psnr_db"] < 30
    assert "read_back" not in mean
