"""Perceptual distances for the StyleGAN-VAE's loss (the loss itself: ``vae_lib.losses.StyleVAELoss``).

The card's loss: MSE + VGG19 perceptual distance (from epoch 20) + beta * KL.

Per image, summed over its values, averaged over the batch (the CVAE's convention)::

    mse        = sum_pixels (x - x_hat)^2
    perceptual = D * sum_l mean_{c,h,w} (phi_l(x) - phi_l(x_hat))^2,   D = 3 H W
    kl         = sum_j KL(N(mu_j, exp(logvar_j)) || N(0, 1))            (nats)
    loss       = mse_weight * mse + perceptual_weight * perceptual + beta * kl

Features phi, chosen by name (``FEATURES``; ``feature_distance(name, layers=..., judge=...)``), all
behind one interface (:class:`FeatureDistance`: ``forward(x_hat, x)`` -> (B,), ``activations(x)``,
``.name``, ``.layers``)::

    "vgg19-imagenet"   torchvision's VGG19 with its ImageNet weights (the card's), ``VGGPerceptual``
    "vgg19-random"     the same network with random, untrained weights (a control: not a perceptual distance)
    "judge"            the conv blocks of the course's shapes judge (``vae_lib.judges``), a classifier
                       trained on the course's own data: trained features that need no download

* The MSE sum is, up to an additive constant, the Gaussian negative log-likelihood in nats with
  sigma^2 = 1/2: with mse_weight = 1 and beta = 1 (and no perceptual term) the loss is a negative
  ELBO in nats per image, like the CVAE's.
* VGG19: phi_l are activations after the ReLUs ``layers``, by default relu1_2, relu2_2, relu3_4 and
  relu4_4 (the last ReLU of the first four blocks: edges and colour up to textures and parts). Only
  the layers up to the deepest one used are built (torchvision's ``make_layers`` on a cut of its
  configuration "E"; no classifier), and only their weights are read from torchvision's file
  ``vgg19-dcbb9e9d.pth`` in the torch hub cache. When that file is missing it is downloaded, with a
  ``DOWNLOAD_TIMEOUT_S`` socket timeout, so that an offline machine fails in seconds with
  :class:`PerceptualWeightsUnavailable`, which says where to put the file.
* Judge: phi_l are the judge's conv blocks "block1" ... "blockN" (after each block's ReLU; default
  all of them); images in [-1, 1] are mapped onto the judge's own ``value_range`` first.
* Each layer's squared error is a mean over its C H W values (the feature reconstruction loss of
  Johnson et al. 2016), so a wide, large shallow layer does not drown the deep ones; multiplying by
  D puts the sum on the scale of the MSE sum, so ``perceptual_weight`` compares a layer's mean
  squared feature error with a pixel's squared error and does not depend on the image size.
* ``perceptual_weight`` default 0.1: a starting point that keeps the pixel term in charge of colour
  (VGG features are weak on it). It was not tuned on ImageNet features (they cannot be downloaded
  where this was written); it is a hyper-parameter (card: "weights as hyperparameters").
* Images in [-1, 1] go to VGG as ((x + 1) / 2 - mean) / std with the ImageNet mean and std of the
  weights' own transforms.
"""
from __future__ import annotations

import copy
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights
from torchvision.models.vgg import cfgs as vgg_configurations
from torchvision.models.vgg import make_layers

from vae_lib.utils import rescale

FEATURES = ("vgg19-imagenet", "vgg19-random", "judge")
# Convolutions per block of VGG19 (configuration "E" of Simonyan & Zisserman 2015).
VGG19_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
VGG19_CONFIG = "E"
DEFAULT_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")
DEFAULT_PERCEPTUAL_WEIGHT = 0.1
IMAGENET_WEIGHTS = VGG19_Weights.IMAGENET1K_V1
VGG19_URL = IMAGENET_WEIGHTS.url
VGG_WEIGHT_CHOICES = ("imagenet", None)
DOWNLOAD_TIMEOUT_S = 10.0      # socket timeout of the ImageNet download: offline, it fails in seconds


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
    warnings.warn("perceptual loss uses RANDOM VGG19 features (features='vgg19-random', vgg_weights=None): "
                  "untrained weights, so it is not a perceptual distance. For ImageNet features, "
                  f"{how_to_get_weights()}; for trained features without a download, features='judge'.",
                  UserWarning, stacklevel=stacklevel)


# ------------------------------------------------------------------------------------ the interface
class FeatureDistance(nn.Module):
    """A frozen feature extractor phi and the distance D * sum_l mean_{c,h,w} (phi_l(x) - phi_l(x_hat))^2.

    ``forward(x_hat, x)``: both (B, C, H, W) in [-1, 1] -> (B,) distances, D = C H W of one image;
    gradients flow to x_hat only (x's features are computed without a graph). The parameters never
    require gradients and the module stays in eval mode even when a parent calls ``.train()``.
    Subclasses set ``name`` (one of ``FEATURES``), ``layers`` and ``in_channels`` and define
    ``activations(x)`` -> [phi_l(x) for l in layers].
    """

    name: str
    layers: tuple[str, ...]
    in_channels: int = 3

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureDistance:
        return super().train(False)

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.per_layer(x_hat, x).sum(0)

    def per_layer(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each layer's term of the distance, D * mean_{c,h,w} (phi_l(x) - phi_l(x_hat))^2: (L, B)."""
        if x_hat.shape != x.shape or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x_hat and x must both be (B, {self.in_channels}, H, W), got {tuple(x_hat.shape)} "
                             f"and {tuple(x.shape)}.")
        with torch.no_grad():
            targets = self.activations(x)
        per_layer = [(a - t).pow(2).flatten(1).mean(1) for a, t in zip(self.activations(x_hat), targets)]
        return x[0].numel() * torch.stack(per_layer)

    def describe(self) -> str:
        """What the features are, for log lines and figure titles (``describe_features``)."""
        return describe_features(self.name, self.layers, getattr(self, "judge", None))


def describe_features(name: str, layers, judge: nn.Module | None = None) -> str:
    """Features in words, for log lines and figure titles: "vgg19-imagenet (relu1_2, relu2_2)",
    "vgg19-random (relu1_2, RANDOM weights)", "judge (shapes judge, seed 1; block1, block2)"."""
    layers = ", ".join(layers)
    if name == "vgg19-random":
        return f"{name} ({layers}, RANDOM weights)"
    settings = (getattr(judge, "settings", None) or {}) if name == "judge" else {}
    trained = f"{settings['dataset']} judge, seed {settings.get('seed')}; " if "dataset" in settings else ""
    return f"{name} ({trained}{layers})"


def feature_distance(name: str, *, layers=None, judge: nn.Module | None = None) -> FeatureDistance:
    """The perceptual distance with features ``name`` (one of ``FEATURES``).

    layers: which layers to compare (default: ``DEFAULT_LAYERS`` for VGG19, every conv block of
        the judge); VGG19 names are those of ``vgg19_layer_names()``, the judge's ``judge.block_names``.
    judge: the trained classifier for ``"judge"`` (a ``vae_lib.models.classifier.Judge``, as
        ``vae_lib.judges.train_or_load_judge`` returns); only for ``"judge"``.
    """
    name = check_features(name)
    if name == "judge":
        if judge is None:
            raise ValueError("features='judge' needs the judge network: pass judge=... (a trained "
                             "vae_lib.judges.Judge, e.g. train_or_load_judge(judge_settings('shapes', seed=1))).")
        return JudgePerceptual(judge, layers)
    if judge is not None:
        raise ValueError(f"judge= is only for features='judge', not {name!r}.")
    return VGGPerceptual(DEFAULT_LAYERS if layers is None else layers,
                         "imagenet" if name == "vgg19-imagenet" else None)


def check_features(name) -> str:
    if name not in FEATURES:
        raise ValueError(f"Unknown perceptual features {name!r}: choose one of {', '.join(FEATURES)}.")
    return name


def features_of_vgg_weights(weights) -> str:
    """The old ``vgg_weights`` argument as a features name: "imagenet" -> "vgg19-imagenet", None -> "vgg19-random"."""
    return "vgg19-imagenet" if check_vgg_weights(weights) == "imagenet" else "vgg19-random"


# ------------------------------------------------------------------------------------------- VGG19
class VGGPerceptual(FeatureDistance):
    """Frozen VGG19 features (``"vgg19-imagenet"`` or ``"vgg19-random"``); ``forward(x_hat, x)`` -> (B,).

    x_hat, x: (B, 3, H, W) in [-1, 1]; see :class:`FeatureDistance`.

    Args:
        layers: VGG19 layers to compare (names of ``vgg19_layer_names()``), default DEFAULT_LAYERS.
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1; downloaded to the torch hub cache if
            missing) or None: random VGG19 features, with a warning; ``self.pretrained`` records it.
    Only ``features[:deepest + 1]`` is built (``self.features``). Raises PerceptualWeightsUnavailable
    when the ImageNet weights cannot be loaded.
    """

    def __init__(self, layers: tuple[str, ...] = DEFAULT_LAYERS, weights: str | None = "imagenet"):
        super().__init__()
        self.layers = check_layers(layers)
        self.name = features_of_vgg_weights(weights)
        self.pretrained = weights == "imagenet"
        names = vgg19_layer_names()
        self.indices = [names.index(name) for name in self.layers]
        self.features = vgg19_features(max(self.indices) + 1)
        if self.pretrained:
            load_imagenet_features(self.features)
        else:
            warn_random_features()
        transform = IMAGENET_WEIGHTS.transforms()
        self.register_buffer("mean", torch.tensor(transform.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(transform.std).view(1, 3, 1, 1))
        self._freeze()

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, 3, H, W) in [-1, 1] -> [phi_l(x) for l in layers], each (B, C_l, H_l, W_l)."""
        h = ((x + 1) / 2 - self.mean) / self.std
        found = {}
        for i, module in enumerate(self.features):
            h = module(h)
            if i in self.indices:      # torchvision's ReLUs work in place: keep a conv's output as it was
                found[i] = h if isinstance(module, nn.ReLU) else h.clone()
        return [found[i] for i in self.indices]


def vgg19_features(depth: int = 37) -> nn.Sequential:
    """The first ``depth`` modules of torchvision's ``vgg19().features`` (1..37), randomly initialised
    as torchvision's VGG does; built with ``torchvision.models.vgg.make_layers`` on configuration "E"
    cut where those modules end, so no deeper layer (and no classifier) is ever made."""
    if not 1 <= depth <= len(vgg19_layer_names()):
        raise ValueError(f"depth must be in 1..{len(vgg19_layer_names())}, got {depth}.")
    config, modules = [], 0
    for item in vgg_configurations[VGG19_CONFIG]:
        if modules >= depth:
            break
        config.append(item)
        modules += 1 if item == "M" else 2          # "M": a max pool; a number: a conv and its ReLU
    features = make_layers(config)[:depth]
    for module in features.modules():                # torchvision's VGG init of its convolutions
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(module.bias, 0)
    return features


@contextmanager
def _socket_timeout(seconds: float):
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def load_imagenet_features(features: nn.Sequential) -> None:
    """Copy the ImageNet weights of ``features`` (a cut of VGG19's, as ``vgg19_features`` builds) from
    torchvision's file in the torch hub cache (``vgg19_checkpoint_path()``), downloading it first from
    ``VGG19_URL`` when missing (socket timeout ``DOWNLOAD_TIMEOUT_S``, hash checked). Only its
    ``features.<i>.*`` entries are used; a file with only those is fine. Raises
    PerceptualWeightsUnavailable when the file cannot be had or does not fit."""
    path = vgg19_checkpoint_path()
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            state = torch.hub.load_state_dict_from_url(VGG19_URL, model_dir=str(path.parent), file_name=path.name,
                                                       map_location="cpu", check_hash=True, weights_only=True)
        wanted = features.state_dict()
        found = {key: state[f"features.{key}"] for key in wanted if f"features.{key}" in state}
        features.load_state_dict(found, strict=True)
    except Exception as error:      # offline (URLError, timeout), a broken or foreign file: one clear message
        raise PerceptualWeightsUnavailable(
            f"Could not load the ImageNet VGG19 weights ({type(error).__name__}: {error}). Offline? "
            f"Either {how_to_get_weights()}, or use random, untrained VGG19 features (features='vgg19-random', "
            "vgg_weights=None), or trained features that need no download (features='judge').") from error


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


# ------------------------------------------------------------------------------------------- judge
class JudgePerceptual(FeatureDistance):
    """A trained judge's conv blocks as features (``"judge"``); ``forward(x_hat, x)`` -> (B,).

    x_hat, x: (B, C, S, S) in [-1, 1] with the judge's channels and size; they are mapped onto the
    judge's ``value_range`` first. ``judge``: a ``vae_lib.models.classifier.Judge`` (what
    ``vae_lib.judges.train_or_load_judge`` returns), copied (``self.judge``), so the judge passed in
    is left as it was: trainable, on its device. ``layers``: block names (default all,
    ``judge.block_names``).
    """

    name = "judge"

    def __init__(self, judge: nn.Module, layers=None):
        super().__init__()
        if not all(hasattr(judge, attr) for attr in ("check_blocks", "block_activations", "value_range")):
            raise TypeError(f"judge must be a vae_lib.judges.Judge (with check_blocks, block_activations and "
                            f"value_range), got {type(judge).__name__}.")
        self.layers = judge.check_blocks(layers)
        self.judge = copy.deepcopy(judge)
        self.in_channels = judge.in_channels
        self._freeze()

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x (B, C, S, S) in [-1, 1] -> [output of each block of ``layers``], each (B, C_k, S_k, S_k)."""
        return self.judge.block_activations(rescale(x, (-1.0, 1.0), self.judge.value_range), self.layers)


# ------------------------------------------------------------------------ what a distance charges for
DAMAGE_BLUR_SIGMA, DAMAGE_BLUR_KERNEL = 1.5, 5


def damaged_copies(x: torch.Tensor, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Five damaged copies of ``x`` (B, C, H, W) in [-1, 1], by name: a Gaussian blur (sigma 1.5 px); noise
    and a brightness shift with the blur's pixel MSE (over the batch); shifts by 1 and 2 px (rolled)."""
    from torchvision.transforms.functional import gaussian_blur

    blurred = gaussian_blur(x, kernel_size=DAMAGE_BLUR_KERNEL, sigma=DAMAGE_BLUR_SIGMA)
    rms = (blurred - x).pow(2).mean().sqrt()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return {f"blur (sigma {DAMAGE_BLUR_SIGMA} px)": blurred, "noise, same MSE": x + rms * noise,
            "brightness, same MSE": x + rms, "shift by 1 px": x.roll(1, dims=-1), "shift by 2 px": x.roll(2, dims=-1)}


def damage_table(distances: dict[str, FeatureDistance], x: torch.Tensor,
                 damaged: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """What each distance charges for each damage of ``x`` (default ``damaged_copies(x)``), per unit of pixel error.

    Returns one row per damage: ``damage``, ``pixel_error`` (the squared error summed over an image's values,
    mean over the images: the scale of ``D * ...`` in the distances), and for each ``name`` of ``distances``
    the mean distance ``name`` and ``name + " per pixel error"``, their ratio."""
    damaged = damaged_copies(x) if damaged is None else damaged
    rows = []
    with torch.no_grad():
        for damage, y in damaged.items():
            row = {"damage": damage, "pixel_error": (y - x).pow(2).flatten(1).sum(1).mean().item()}
            for name, distance in distances.items():
                row[name] = distance(y, x).mean().item()
                row[f"{name} per pixel error"] = row[name] / max(row["pixel_error"], 1e-12)
            rows.append(row)
    return rows
