"""Yardsticks beside the course's numbers (issue 13): the entropy floor and the pixel-mean baselines of a
Bernoulli -ELBO (vae_lib.evaluate), the judge's per-class accuracy on real images and intermediate FIDs
(vae_lib.metrics)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vae_lib import evaluate, metrics
from vae_lib.data import ImageData
from vae_lib.losses import log_likelihood


# --------------------------------------------------------------------------------------- -ELBO
def test_entropy_floor_is_the_best_bernoulli_score_of_each_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 4, 4, generator=gen)
    floor = evaluate.bernoulli_entropy_floor(x)
    best = -log_likelihood(torch.logit(x.double()), x.double(), "bernoulli")      # the decoder outputs p = x
    torch.testing.assert_close(floor, best)
    # any other p scores worse; black-and-white pixels cost nothing, grey 0.5 costs log 2 each
    assert (-log_likelihood(torch.logit(x.double().clamp(0.05, 0.95)) + 0.3, x.double(), "bernoulli") > floor).all()
    assert evaluate.bernoulli_entropy_floor((x > 0.5).float()).abs().max() == 0
    assert evaluate.bernoulli_entropy_floor(torch.full((1, 1, 28, 28), 0.5)).item() == pytest.approx(784 * math.log(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate.bernoulli_entropy_floor(x * 2 - 1)


def test_pixel_mean_baselines_by_hand():
    # two classes of 2-pixel images: class 0 is always (1, 0), class 1 always (0, 1)
    train = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]).view(4, 1, 1, 2)
    train_labels = torch.tensor([0, 0, 1, 1])
    test, test_labels = train[[0, 2]], torch.tensor([0, 1])
    out = evaluate.pixel_mean_baselines(train, train_labels, test, test_labels, num_classes=2)
    # unconditional: each pixel's smoothed mean is (2 + 1) / (4 + 2) = 1/2: log 2 per pixel
    torch.testing.assert_close(out["unconditional"], torch.full((2,), 2 * math.log(2), dtype=torch.float64))
    # label only: p = (2 + 1) / (2 + 2) = 3/4 on the lit pixel, (0 + 1) / 4 off it: -2 log(3/4) per image
    torch.testing.assert_close(out["label_only"], torch.full((2,), -2 * math.log(0.75), dtype=torch.float64))
    assert (out["label_only"] < out["unconditional"]).all()


def test_pixel_mean_baselines_above_the_floor_and_the_label_helps():
    gen = torch.Generator().manual_seed(1)
    levels = torch.linspace(0.1, 0.9, 3)
    labels = torch.randint(0, 3, (600,), generator=gen)
    images = (levels[labels].view(-1, 1, 1, 1) + 0.05 * torch.randn(600, 1, 3, 3, generator=gen)).clamp(0, 1)
    out = evaluate.pixel_mean_baselines(images[:500], labels[:500], images[500:], labels[500:])
    floor = evaluate.bernoulli_entropy_floor(images[500:])
    assert (floor <= out["label_only"] + 1e-9).all()
    assert out["label_only"].mean() < out["unconditional"].mean() - 1.0        # the label is worth nats
    with pytest.raises(ValueError, match="one label per image"):
        evaluate.pixel_mean_baselines(images, labels[:3], images, labels)


# --------------------------------------------------------------------------------------- judge
# The fake judge of test_metrics (pixels as features; class 3 read as 5).
from test_metrics import PixelJudge  # noqa: E402


def data_of(labels, noise=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = (labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 8, 8) + noise * torch.randn(len(labels), 1, 8, 8,
                                                                                                 generator=gen)
    return ImageData(images=images.contiguous(), labels=labels, name="levels", source="test", reason="test",
                     value_range=(0.0, 1.0), class_names=[str(c) for c in range(10)], split="test")


def test_judge_accuracy_per_class_on_real_images():
    labels = torch.arange(10).repeat_interleave(3)
    result = metrics.judge_accuracy_per_class(PixelJudge(), data_of(labels))
    want = [1.0] * 10
    want[3] = 0.0
    assert result["per_class"] == want and result["overall"] == pytest.approx(0.9)
    assert result["n_per_class"] == [3] * 10 and result["confusion"][3, 5] == 3
    assert metrics.judge_accuracy_per_class(PixelJudge(), data_of(labels), n=6)["n_per_class"][:3] == [3, 3, 0]


class Copier(nn.Module):
    """reconstruct(x, y) = x + shift: a model whose reconstructions are the images, moved by ``shift``."""

    conditional = True
    data_range = (0.0, 1.0)

    def __init__(self, shift=0.0):
        super().__init__()
        self.shift = shift
        self.anchor = nn.Parameter(torch.zeros(()))
        self.seen_labels = []

    def reconstruct(self, x, y=None, *, noise_mode=None):
        self.seen_labels.append(y)
        return x + self.shift


def test_fid_yardsticks_reconstructions_and_blur():
    labels = torch.arange(10).repeat(30)
    data = data_of(labels, noise=0.2)
    perfect = Copier()
    out = metrics.fid_yardsticks(perfect, PixelJudge(), data, n=200, blur_sigmas=(0.5, 2.0), batch_size=64)
    assert set(out) == {"reconstructions", "blur sigma=0.5", "blur sigma=2"}
    assert out["reconstructions"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < out["blur sigma=0.5"] < out["blur sigma=2"]          # more blur, further from the real images
    assert torch.equal(torch.cat(perfect.seen_labels), labels[:200])   # a CVAE reconstructs with the labels
    shifted = metrics.fid_yardsticks(Copier(0.5), PixelJudge(), data, n=200, blur_sigmas=())
    assert shifted["reconstructions"] == pytest.approx(64 * 0.25, rel=1e-5)    # ||shift||^2 over 64 pixels
    blurred = metrics.blurred(torch.rand(2, 1, 3, 3), 2.0)                       # a kernel no wider than the image
    assert blurred.shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match="sigma"):
        metrics.blurred(blurred, 0.0)
