"""metrics.latent_probe: a linear probe per factor on the posterior means, checked on codes with a known answer."""
import pytest
import torch
from torch import nn

from vae_lib.data import ImageData
from vae_lib.metrics import latent_probe, posterior_means

BINS = {"shape": 5, "object_hue": 8}


def shapes_like(n: int, seed: int) -> ImageData:
    """Images whose pixel (0, 0, 0) carries the sample index, with random factor bins."""
    g = torch.Generator().manual_seed(seed)
    factors = {name: torch.randint(0, bins, (n,), generator=g) for name, bins in BINS.items()}
    images = torch.zeros(n, 3, 8, 8)
    return ImageData(images=images, labels=factors["shape"].clone(), name="fake", source="test", reason="test",
                     value_range=(-1.0, 1.0), class_names=[str(k) for k in range(5)], factors=factors)


class LookupEncoder(nn.Module):
    """encode(x) -> (codes of those images, zeros): the code is whatever the test puts in ``table``; the images
    carry their row number in pixel (0, 0, 0)."""
    conditional = False

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)
        self.anchor = nn.Parameter(torch.zeros(()))   # a parameter, so model_device finds a device

    def encode(self, x, y=None):
        rows = x[:, 0, 0, 0].round().long()
        return self.table[rows], torch.zeros_like(self.table[rows])


def indexed(data: ImageData, offset: int) -> ImageData:
    data.images[:, 0, 0, 0] = torch.arange(len(data.images)).float() + offset
    return data


def test_a_code_that_holds_one_factor_is_read_for_it_and_not_for_the_other():
    train, test = shapes_like(600, 0), shapes_like(300, 1)
    g = torch.Generator().manual_seed(2)
    # The code: the shape one-hot (x 2) plus noise in 6 dimensions; nothing about the hue.
    codes = torch.cat([torch.cat([nn.functional.one_hot(d.factors["shape"], 5).float() * 2, torch.zeros(len(d), 1)], 1)
                       for d in (train, test)])
    codes = codes + 0.3 * torch.randn(codes.shape, generator=g)
    model = LookupEncoder(codes)
    result = latent_probe(model, indexed(train, 0), indexed(test, 600))
    assert result["shape"]["accuracy"] > 0.95
    hue = result["object_hue"]
    assert hue["accuracy"] < hue["chance"] + 0.1            # 8 bins, no information: about chance
    assert hue["chance"] == torch.bincount(test.factors["object_hue"]).max().item() / len(test)


def test_posterior_means_are_the_encoders_mu_in_order():
    data = indexed(shapes_like(10, 0), 0)
    table = torch.randn(10, 3)
    assert torch.equal(posterior_means(LookupEncoder(table), data, batch_size=4), table)


def test_the_probe_is_deterministic_and_checks_its_input():
    train, test = indexed(shapes_like(200, 0), 0), indexed(shapes_like(100, 1), 200)
    model = LookupEncoder(torch.randn(300, 4, generator=torch.Generator().manual_seed(0)))
    assert latent_probe(model, train, test, ["shape"]) == latent_probe(model, train, test, ["shape"])
    with pytest.raises(ValueError, match="Unknown factors"):
        latent_probe(model, train, test, ["colour"])
    no_factors = ImageData(images=torch.zeros(4, 3, 8, 8), labels=torch.zeros(4, dtype=torch.long), name="x",
                           source="x", reason="x", value_range=(-1.0, 1.0), class_names=["a"])
    with pytest.raises(ValueError, match="generative factors"):
        latent_probe(model, no_factors, test)
