"""VGG19 features for the StyleGAN-VAE's perceptual term (the loss itself: ``vae_lib.losses.StyleVAELoss``).

The card's loss: MSE + VGG19 perceptual distance (from epoch 20) + beta * KL.

Per image, summed over its values, averaged over the batch (the CVAE's convention)::

    mse        = sum_pixels (x - x_hat)^2
    perceptual = D * sum_l mean_{c,h,w} (phi_l(x) - phi_l(x_hat))^2,   D = 3 H W
    kl         = sum_j KL(N(mu_j, exp(logvar_j)) || N(0, 1))            (nats)
    loss       = mse_weight * mse + perceptual_weight * perceptual + beta * kl

* The MSE sum is, up to an additive constant, the Gaussian negative log-likelihood in nats with
  sigma^2 = 1/2: with mse_weight = 1 and beta = 1 (and no perceptual term) the loss is a negative
  ELBO in nats per image, like the CVAE's.
* phi_l are VGG19 activations (torchvision, ImageNet weights) after the ReLUs ``layers``, by default
  relu1_2, relu2_2, relu3_4 and relu4_4 (the last ReLU of the first four blocks: edges and colour up
  to textures and parts); the network is cut after the last one. Each layer's squared error is a
  mean over its C H W values (the feature reconstruction loss of Johnson et al. 2016), so a
  wide, large shallow layer does not drown the deep ones; multiplying by D puts the sum on the
  scale of the MSE sum, so ``perceptual_weight`` compares a layer's mean squared feature error
  with a pixel's squared error and does not depend on the image size.
* ``perceptual_weight`` default 0.1: a starting point that keeps the pixel term in charge of colour
  (VGG features are weak on it). It was not tuned on ImageNet features (they cannot be downloaded
  where this was written); it is a hyper-parameter (card: "weights as hyperparameters").
* Images in [-1, 1] go to VGG as ((x + 1) / 2 - mean) / std with the ImageNet mean and std of the
  weights' own transforms.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights, vgg19


# Convolutions per block of VGG19 (configuration "E" of Simonyan & Zisserman 2015).
VGG19_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
DEFAULT_PERCEPTUAL_WEIGHT = 0.1
IMAGENET_WEIGHTS = VGG19_Weights.IMAGENET1K_V1
VGG_WEIGHT_CHOICES = ("imagenet", None)


class PerceptualWeightsUnavailable(RuntimeError):
    """The ImageNet VGG19 weights could not be loaded (offline, or a broken file)."""


def vgg19_layer_names() -> list[str]:
    """Names of the 37 modules of ``vgg19().features``: conv1_1, relu1_1, ..., relu5_4, pool5."""
    names = []
    for block, num_convs in enumerate(VGG19_CONVS_PER_BLOCK, start=1):
        for conv in range(1, num_convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return names


def vgg19_checkpoint_path() -> Path:
    """Where torchvision looks for the ImageNet VGG19 file: $TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS.url.rsplit("/", 1)[-1]


def how_to_get_weights() -> str:
    return (f"put {vgg19_checkpoint_path().name} (from {IMAGENET_WEIGHTS.url}) in "
            f"{vgg19_checkpoint_path().parent} (that is $TORCH_HOME/hub/checkpoints)")


def warn_random_features(stacklevel: int = 3) -> None:
    warnings.warn("perceptual loss uses RANDOM VGG19 features (vgg_weights=None): untrained "
                  f"weights, so it is not a perceptual distance. For ImageNet features, {how_to_get_weights()}.",
                  UserWarning, stacklevel=stacklevel)


class VGGPerceptual(nn.Module):
    """Frozen VGG19 features; ``forward(x_hat, x)`` -> (B,) perceptual distance (module docstring).

    x_hat, x: (B, 3, H, W) in [-1, 1]; gradients flow to x_hat only. The parameters never require
    gradients and the module stays in eval mode even when a parent calls ``.train()``.

    Args:
        layers: ReLU layers to compare (names of ``vgg19_layer_names()``), default DEFAULT_LAYERS.
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1; downloaded to the torch hub cache if
            missing) or None: random VGG19 features, with a warning; ``self.pretrained`` records it.
    Raises PerceptualWeightsUnavailable when the ImageNet weights cannot be loaded.
    """

    def __init__(self, layers: tuple[str, ...] = DEFAULT_LAYERS, weights: str | None = "imagenet"):
        super().__init__()
        self.layers = check_layers(layers)
        check_vgg_weights(weights)
        self.pretrained = weights == "imagenet"
        features = load_vgg19(weights).features
        names = vgg19_layer_names()
        self.indices = [names.index(name) for name in self.layers]
        self.features = features[:max(self.indices) + 1]
        self.features.requires_grad_(False)
        transform = IMAGENET_WEIGHTS.transforms()
        self.register_buffer("mean", torch.tensor(transform.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(transform.std).view(1, 3, 1, 1))
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptual:
        return super().train(False)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, 3, H, W) in [-1, 1] -> [phi_l(x) for l in layers], each (B, C_l, H_l, W_l)."""
        h = ((x + 1) / 2 - self.mean) / self.std
        wanted, out = set(self.indices), []
        for i, module in enumerate(self.features):
            h = module(h)
            if i in wanted:
                out.append(h)
        return out

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x_hat.shape != x.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x_hat and x must both be (B, 3, H, W), got {tuple(x_hat.shape)} and "
                             f"{tuple(x.shape)}.")
        with torch.no_grad():
            targets = self.activations(x)
        per_layer = [(a - t).pow(2).flatten(1).mean(1) for a, t in zip(self.activations(x_hat), targets)]
        return x[0].numel() * torch.stack(per_layer).sum(0)


def load_vgg19(weights: str | None) -> nn.Module:
    """torchvision's VGG19 with ImageNet weights (``"imagenet"``) or random ones (None, with a warning)."""
    if weights is None:
        warn_random_features()
        return vgg19(weights=None)
    try:
        return vgg19(weights=IMAGENET_WEIGHTS)
    except (OSError, RuntimeError) as error:
        raise PerceptualWeightsUnavailable(
            f"Could not load the ImageNet VGG19 weights ({type(error).__name__}: {error}). Offline? "
            f"Either {how_to_get_weights()}, or pass vgg_weights=None for random, untrained VGG19 "
            "features.") from error


def check_layers(layers) -> tuple[str, ...]:
    layers = tuple(layers)
    names = vgg19_layer_names()
    unknown = [name for name in layers if name not in names]
    if not layers or unknown:
        relus = ", ".join(n for n in names if n.startswith("relu"))
        raise ValueError(f"Unknown or no VGG19 layers {unknown or layers}: choose among {relus}.")
    return layers


def check_vgg_weights(weights):
    if weights not in VGG_WEIGHT_CHOICES:
        raise ValueError(f"vgg_weights must be 'imagenet' or None (random features), got {weights!r}.")
    return weights
