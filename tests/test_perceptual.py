"""The StyleGAN-VAE loss: MSE + VGG19 perceptual term (switched on at an epoch) + beta * KL."""
from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import vgg19

from vae_lib import perceptual
from vae_lib.losses import StyleVAELoss
from vae_lib.perceptual import DEFAULT_LAYERS, PerceptualWeightsUnavailable, VGGPerceptual, vgg19_layer_names


@pytest.fixture(scope="module")
def random_vgg():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM VGG19 features"):
        return VGGPerceptual(weights=None)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and a download that fails as it does without a network."""
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


class FixedModel(nn.Module):
    """Returns given (x_hat, mu, logvar), whatever the input: known loss inputs."""

    def __init__(self, x_hat, mu, logvar):
        super().__init__()
        self.out = (x_hat, mu, logvar)

    def forward(self, x):
        return self.out


def test_layer_names_match_torchvisions_vgg19():
    names = vgg19_layer_names()
    features = vgg19(weights=None).features
    assert len(names) == len(features) == 37
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    assert all(isinstance(m, kinds[name[:4]]) for name, m in zip(names, features))
    assert [names.index(n) for n in DEFAULT_LAYERS] == [3, 8, 17, 26]


def test_vgg_is_cut_after_the_last_layer_frozen_and_stays_in_eval(random_vgg):
    assert len(random_vgg.features) == 27                       # up to relu4_4
    assert not random_vgg.pretrained
    assert all(not p.requires_grad for p in random_vgg.parameters())
    parent = nn.ModuleDict({"vgg": random_vgg, "head": nn.Linear(2, 2)})
    parent.train()
    assert parent["head"].training and not random_vgg.training
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(random_vgg.mean, mean)
    torch.testing.assert_close(random_vgg.std, std)


def test_distance_is_the_scaled_sum_of_per_layer_mean_squared_errors(random_vgg):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    x_hat = (torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1).requires_grad_()
    distance = random_vgg(x_hat, x)
    # By hand: ImageNet normalisation of (x + 1) / 2, features at indices 3, 8, 17, 26.
    def feats(img):
        h, out = ((img + 1) / 2 - random_vgg.mean) / random_vgg.std, []
        for i, m in enumerate(random_vgg.features):
            h = m(h)
            if i in (3, 8, 17, 26):
                out.append(h.clone())
        return out
    expected = 3 * 16 * 16 * sum(((a - b) ** 2).mean(dim=(1, 2, 3)) for a, b in zip(feats(x_hat), feats(x)))
    torch.testing.assert_close(distance, expected)
    assert distance.shape == (2,) and (distance > 0).all()
    distance.sum().backward()
    assert x_hat.grad.abs().sum() > 0 and all(p.grad is None for p in random_vgg.parameters())
    torch.testing.assert_close(random_vgg(x, x), torch.zeros(2))


def test_loss_values_on_known_inputs():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.full((2, 3, 4, 4), 0.5)
    mu, logvar = torch.ones(2, 5), torch.zeros(2, 5)
    loss_fn = StyleVAELoss(mse_weight=2.0, perceptual_weight=0.0)
    terms = loss_fn(FixedModel(x_hat, mu, logvar), (x, torch.zeros(2)), beta=0.5, epoch=30)
    assert set(terms) == {"loss", "mse", "perceptual", "kl", "beta"}
    assert terms["mse"].item() == pytest.approx(48 * 0.25)      # per-image sum over 3*4*4 pixels
    assert terms["kl"].item() == pytest.approx(5 * 0.5)         # 0.5 (mu^2 + 1 - 1 - 0) per dimension
    assert terms["perceptual"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(2.0 * 12.0 + 0.5 * 2.5)
    assert terms["beta"].item() == 0.5


def test_perceptual_term_switches_on_at_its_epoch():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="RANDOM VGG19 features"):
        loss_fn = StyleVAELoss(perceptual_weight=0.1, perceptual_from_epoch=3, vgg_weights=None)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=gen) * 2 - 1
    model = FixedModel(torch.tanh(x + 0.3), torch.zeros(2, 4), torch.zeros(2, 4))
    before = loss_fn(model, (x,), beta=1.0, epoch=2)
    assert before["perceptual"].item() == 0.0 and loss_fn.perceptual is None   # VGG not even built
    with pytest.warns(UserWarning, match="RANDOM VGG19 features"):
        after = loss_fn(model, (x,), beta=1.0, epoch=3)
    assert after["perceptual"].item() > 0
    assert after["loss"].item() == pytest.approx(after["mse"].item() + 0.1 * after["perceptual"].item(), rel=1e-5)
    assert "RANDOM" in repr(loss_fn) and loss_fn.vgg_weights is None


def test_offline_imagenet_weights_raise_a_clear_error(offline):
    with pytest.raises(PerceptualWeightsUnavailable, match=r"vgg19-dcbb9e9d\.pth.*hub/checkpoints.*vgg_weights=None"):
        VGGPerceptual(weights="imagenet")
    with pytest.warns(UserWarning, match="not cached"):
        loss_fn = StyleVAELoss(perceptual_from_epoch=1)
    x = torch.zeros(1, 3, 8, 8)
    model = FixedModel(x, torch.zeros(1, 2), torch.zeros(1, 2))
    assert loss_fn(model, (x,), beta=1.0, epoch=0)["perceptual"].item() == 0.0   # early epochs work
    with pytest.raises(PerceptualWeightsUnavailable):
        loss_fn(model, (x,), beta=1.0, epoch=1)


def test_cached_checkpoint_path_is_where_torchvision_looks(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert perceptual.vgg19_checkpoint_path() == tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown or no VGG19 layers"):
        StyleVAELoss(perceptual_weight=0.0, layers=("relu6_1",))
    with pytest.raises(ValueError, match="'imagenet' or None"):
        StyleVAELoss(perceptual_weight=0.0, vgg_weights="vgg16")
    with pytest.raises(ValueError, match=">= 0"):
        StyleVAELoss(perceptual_weight=-1.0)
