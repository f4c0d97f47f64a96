"""vae_lib.models.sampling: codes from the prior, decoding in batches, samples per class, the CLI's grid."""
from __future__ import annotations

import pytest
import torch
from test_metrics import LabelPainter

from vae_lib import metrics, viz
from vae_lib.models import sampling


def test_sample_images_draws_all_codes_first_and_follows_the_labels():
    model = LabelPainter()
    labels = torch.arange(10).repeat(3)
    a = sampling.sample_images(model, 30, labels=labels, batch_size=7)
    assert torch.equal(torch.cat(model.decoded_labels), labels)
    assert torch.equal(a[:, 0, 0, 0], labels.float() / 10)
    with pytest.raises(ValueError, match="needs labels"):
        sampling.sample_images(model, 3)


def test_the_old_names_still_import():
    assert metrics.sample_images is sampling.sample_images
    assert viz.decode_latents is sampling.decode_latents


def test_prior_codes_are_the_seeded_draws_and_follow_a_generator():
    assert torch.equal(sampling.prior_codes(4, 3, seed=5), torch.randn(4, 3, generator=torch.Generator().manual_seed(5)))
    g, h = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    first, second = sampling.prior_codes(2, 3, generator=g), sampling.prior_codes(2, 3, generator=g)
    assert torch.equal(torch.cat([first, second]), torch.randn(4, 3, generator=h))


def test_class_labels_go_class_by_class():
    assert sampling.class_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]


def test_decode_latents_needs_a_label_for_a_conditional_model():
    model = LabelPainter()
    images = sampling.decode_latents(model, torch.zeros(3), label=4)
    assert images.shape == (1, 1, 4, 4) and images.max().item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="needs a label"):
        sampling.decode_latents(model, torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        sampling.decode_latents(model, torch.zeros(2, 5), label=1)


class Unconditional(torch.nn.Module):
    """sample(n) returns its z as 1 x 1 images, so a test sees the codes and the options it got."""

    conditional = False
    z_dim = 1

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.options = {}

    def sample(self, n, y=None, *, generator=None, **options):
        assert y is None
        self.options = options
        return torch.randn(n, 1, generator=generator).view(n, 1, 1, 1)


class SamplingPainter(LabelPainter):
    def sample(self, n, y, *, generator=None, **options):
        return self.decode(torch.randn(n, self.z_dim, generator=generator), y, **options)


def test_sample_grid_is_a_row_per_class_or_n_by_n():
    images, nrow = sampling.sample_grid(SamplingPainter(num_classes=4), 3, seed=0)
    assert nrow == 3 and images[:, 0, 0, 0].tolist() == pytest.approx([c / 10 for c in range(4) for _ in range(3)])
    model = Unconditional()
    images, nrow = sampling.sample_grid(model, 3, seed=2, truncation_psi=0.5)
    assert nrow == 3 and images.shape == (9, 1, 1, 1)
    assert torch.equal(images.flatten(), torch.randn(9, generator=torch.Generator().manual_seed(2)))
    assert model.options == {"truncation_psi": 0.5, "noise_mode": "const"}
