"""The style-based decoder of ``stylegan_vae_card.md``: mapping network, AdaIN, noise, synthesis.

One small module per idea, composed like the StyleGAN figure (Karras et al. 2019)::

    z (B, z_dim) -> PixelNorm -> MappingNetwork -> w (B, w_dim)
    w -> per-layer codes ws (B, L, w_dim)            (the same w in every layer unless mixed)
    learned constant (1, C, 4, 4)
      -> StyleLayer(no conv) -> StyleLayer(conv)                          4 x 4
      -> [bilinear x2 -> StyleLayer(conv) -> StyleLayer(conv)] per res    8 ... S
      -> ToRGB (1x1 conv) -> tanh                                         (B, 3, S, S) in (-1, 1)
    StyleLayer: [3x3 conv] -> NoiseInjection -> AdaIN(ws[:, i]) -> LeakyReLU(0.2)

Layer i of the synthesis reads ``ws[:, i]``, so style mixing is a crossover on axis 1 of ``ws``
(``mix_styles``). L = 2 * (log2(S) - 1): 12 style layers at 128 px, 10 at 64, 8 at 32.

Choices the card leaves open, made here:

* Channels per resolution r: ``min(max_channels, channel_base // r)`` with channel_base = 32768,
  the rule of StyleGAN2-ADA: 512 up to 64 x 64 and 256 at 128 x 128 (the card), and narrow CPU
  presets through ``max_channels``.
* Convolutions in style layers have no bias: the instance normalisation of AdaIN subtracts each
  channel's mean right after, which would cancel it.
* The constant input is initialised N(0, 1) (as StyleGAN2): a constant of ones, as in StyleGAN1,
  has zero spatial variance, so the first AdaIN would map it to its style bias alone.
* The style-scale clamp: AdaIN's scale and bias are clamped to (-10, 10) (the card's "clamping
  throughout"). The instance-normalised features are bounded, so each layer's output is then bounded
  too and no stack of layers can overflow, whatever w is.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.checks import check_int, check_truncation_psi

NOISE_MODES = ("random", "const", "none")
LRELU_SLOPE = 0.2
STYLE_CLAMP = 10.0


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2 over dim 1) + eps): every code gets unit root-mean-square; (B, D) -> (B, D).

    Applied to z before the mapping network (Karras et al. 2018), so that the network sees codes
    on the sphere of radius sqrt(D) whatever their norm (huge z included).
    """

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): PixelNorm, then ``num_layers`` x [Linear -> LeakyReLU(0.2)].

    Card: 8 layers of 512 -> 512, Xavier init with gain 0.5 (zero biases).

    Truncation trick (StyleGAN2-ADA): the buffer ``w_avg`` (w_dim,) tracks the mean of w with an
    exponential moving average, ``w_avg <- mean_batch(w).lerp(w_avg, w_avg_beta)``, on calls with
    ``update_w_avg=True`` (the VAE passes ``self.training``); ``truncation_psi < 1`` pulls w towards
    it: ``w_avg.lerp(w, psi)`` = w_avg + psi (w - w_avg). ``w_avg`` starts at zero; ``init_w_avg``
    sets it to a Monte-Carlo mean instead (for a model that has not been trained).

    Args:
        z_dim: size of z. w_dim: size of w (default z_dim). width: hidden size (default w_dim).
        num_layers: number of Linear layers (>= 1). w_avg_beta: EMA decay of ``w_avg``.
    """

    def __init__(self, z_dim: int = 512, w_dim: int | None = None, num_layers: int = 8, *,
                 width: int | None = None, w_avg_beta: float = 0.995, init_gain: float = 0.5):
        super().__init__()
        w_dim = z_dim if w_dim is None else w_dim
        width = w_dim if width is None else width
        if min(z_dim, w_dim, width, num_layers) < 1:
            raise ValueError(f"z_dim, w_dim, width and num_layers must be positive, got {z_dim}, "
                             f"{w_dim}, {width}, {num_layers}.")
        if not 0.0 <= w_avg_beta < 1.0:
            raise ValueError(f"w_avg_beta must lie in [0, 1), got {w_avg_beta}.")
        self.z_dim, self.w_dim, self.w_avg_beta = z_dim, w_dim, w_avg_beta
        sizes = [z_dim] + [width] * (num_layers - 1) + [w_dim]
        layers: list[nn.Module] = [PixelNorm()]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            linear = nn.Linear(fan_in, fan_out)
            nn.init.xavier_normal_(linear.weight, gain=init_gain)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(LRELU_SLOPE)]
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, *, truncation_psi: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}.")
        w = self.net(z)
        if update_w_avg:
            with torch.no_grad():
                # In the buffer's dtype: under autocast w is bf16/fp16 and lerp needs one dtype.
                batch_mean = w.detach().mean(dim=0).to(self.w_avg.dtype)
                self.w_avg.copy_(batch_mean.lerp(self.w_avg, self.w_avg_beta))
        return self.truncate(w, truncation_psi)

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        """w_avg + psi (w - w_avg): psi = 1 leaves w alone, psi = 0 gives the average w.

        psi is a finite number (``vae_lib.checks.check_truncation_psi``): NaN would give NaN images.
        """
        psi = check_truncation_psi(psi)
        return w if psi == 1 else self.w_avg.to(w.dtype).lerp(w, psi)

    @torch.no_grad()
    def init_w_avg(self, num_samples: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Set ``w_avg`` to the mean of w over ``num_samples`` codes z ~ N(0, I); returns it."""
        device = self.w_avg.device
        z = torch.randn(num_samples, self.z_dim, generator=generator,
                        device=generator.device if generator is not None else device).to(device)
        self.w_avg.copy_(self.net(z).mean(dim=0))
        return self.w_avg


class NoiseInjection(nn.Module):
    """x + weight * noise: one (B, 1, H, W) noise image shared by all channels, scaled per channel.

    ``weight`` (1, C, 1, 1) starts at zero, so noise has no effect until training finds it useful.
    Modes: ``"random"`` (fresh N(0, 1) noise every call), ``"const"`` (the fixed buffer ``noise``
    (1, 1, R, R), drawn once at construction and saved with the model: reproducible images) and
    ``"none"`` (no noise). ``mode`` is the default; ``forward(x, mode)`` overrides it for one call.
    """

    def __init__(self, channels: int, resolution: int, mode: str = "random"):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("noise", torch.randn(1, 1, resolution, resolution))
        self.mode = check_noise_mode(mode)

    def forward(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        mode = self.mode if mode is None else check_noise_mode(mode)
        if mode == "none":
            return x
        if mode == "const":
            if x.shape[-2:] != self.noise.shape[-2:]:
                raise ValueError(f"Constant noise is {tuple(self.noise.shape[-2:])}, features are "
                                 f"{tuple(x.shape[-2:])}.")
            noise = self.noise
        else:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class AdaIN(nn.Module):
    """Adaptive instance normalisation: y_s * (x - mean(x)) / std(x) + y_b; x (B, C, H, W), w (B, w_dim).

    mean and std are per image and channel over (H, W), std = sqrt(biased variance + eps), as
    ``F.instance_norm``. The style comes from a per-layer affine map of w::

        (a_s, a_b) = affine(w)        (B, C) each, affine = Linear(w_dim -> 2 C)
        y_s = 1 + a_s,  y_b = a_b     both clamped to (-10, 10)

    ``affine`` starts with zero weight and zero bias, so at initialisation y_s = 1 and y_b = 0
    exactly: every style layer is a plain instance norm, whatever w, and the decoder starts from an
    identity style (the 1 lives in ``forward`` rather than in the bias, so weight decay would pull
    towards it too). This replaces the card's Xavier rule for this one linear layer. Learning still
    starts: d loss / d affine.weight = (d loss / d a) w^T is not zero at the first step, and the
    mapping network gets gradients as soon as that weight has moved away from zero.
    """

    def __init__(self, channels: int, w_dim: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def style(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """w (B, w_dim) -> (y_s, y_b), each (B, C)."""
        a_s, a_b = self.affine(w).chunk(2, dim=1)
        return (1.0 + a_s).clamp(-STYLE_CLAMP, STYLE_CLAMP), a_b.clamp(-STYLE_CLAMP, STYLE_CLAMP)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"AdaIN({self.channels}) expects x of shape (B, {self.channels}, H, W), "
                             f"got {tuple(x.shape)}.")
        scale, bias = self.style(w)
        return scale[:, :, None, None] * F.instance_norm(x, eps=self.eps) + bias[:, :, None, None]


class StyleLayer(nn.Module):
    """[Conv3x3] -> NoiseInjection -> AdaIN(w) -> LeakyReLU(0.2); (B, C_in, R, R) -> (B, C_out, R, R).

    ``use_conv=False`` (the first layer, on the constant) needs C_in == C_out. The conv has Kaiming
    init for LeakyReLU(0.2) and no bias (AdaIN's normalisation would cancel it).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *,
                 use_conv: bool = True, noise_mode: str = "random"):
        super().__init__()
        if not use_conv and in_channels != out_channels:
            raise ValueError(f"A style layer without conv keeps its channels, got {in_channels} -> "
                             f"{out_channels}.")
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False) if use_conv else None
        if self.conv is not None:
            nn.init.kaiming_normal_(self.conv.weight, a=LRELU_SLOPE, nonlinearity="leaky_relu")
        self.noise = NoiseInjection(out_channels, resolution, noise_mode)
        self.adain = AdaIN(out_channels, w_dim)
        self.act = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return self.act(self.adain(self.noise(x, noise_mode), w))


class SynthesisBlock(nn.Module):
    """One resolution: [bilinear x2] -> two StyleLayers; reads two per-layer codes.

    ``first=True`` is the 4 x 4 block on the constant: no upsampling, its first layer has no conv.
    ``F.interpolate(mode="bilinear", align_corners=False)`` (the card: no checkerboard artefacts).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *,
                 first: bool = False, noise_mode: str = "random"):
        super().__init__()
        self.first, self.resolution = first, resolution
        self.layers = nn.ModuleList([
            StyleLayer(in_channels, out_channels, w_dim, resolution, use_conv=not first,
                       noise_mode=noise_mode),
            StyleLayer(out_channels, out_channels, w_dim, resolution, noise_mode=noise_mode),
        ])

    def forward(self, x: torch.Tensor, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """x (B, C_in, R/2, R/2) (or (B, C, 4, 4) for the first block), ws (B, 2, w_dim)."""
        if not self.first:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i], noise_mode)
        return x


def synthesis_channels(output_size: int, max_channels: int = 512, channel_base: int = 32768) -> dict[int, int]:
    """Channels per resolution {4: ..., 8: ..., ..., S: ...}: min(max_channels, channel_base // r)."""
    check_power_of_two(output_size, "output_size", minimum=4)
    return {4 * 2 ** i: max(1, min(max_channels, channel_base // (4 * 2 ** i)))
            for i in range(int(math.log2(output_size)) - 1)}


INPUT_MODES = ("const", "mapped")


class Synthesis(nn.Module):
    """Per-layer codes ws (B, L, w_dim) (or w (B, w_dim), used by every layer) -> images (B, 3, S, S).

    Output in (-1, 1) through tanh: a clamp would give zero gradient to any pixel pushed out of
    range, so the reconstruction loss could never pull it back.

    Two options beyond the card (both off by default, so the card's network is what you get):

    * ``skip_rgb=True``: the "skip" architecture of StyleGAN2 (Karras et al. 2020, fig. 7b). Every
      block has its own ToRGB (1x1 conv); the RGB images are upsampled (bilinear) and summed from
      4 x 4 up, then tanh. The coarse layers get a direct path to the picture, so position and
      shape (decided at 4-16 px) are rewarded from the first steps instead of through the whole
      stack of fine layers.
    * ``input_mode="mapped"``: the 4 x 4 input is ``Linear(w_0)`` reshaped to (C, 4, 4) (as the
      first layer of ProGAN's generator), where w_0 is the first layer's code, instead of the learned
      constant. A decoder driven only by global styles must otherwise build position from a fixed
      constant and per-channel statistics, which it learns last; a mapped input gives the coarse
      code a spatial map from the start. Style mixing keeps its meaning: the input reads layer 0's
      code, which belongs to the coarse side of every crossover k >= 1.

    Attributes: ``num_layers`` (L), ``resolutions`` (one per block), ``layer_resolutions`` (one per
    style layer), ``channels`` ({resolution: channels}), ``const`` (1, C_4, 4, 4) or ``input``
    (Linear w_dim -> 16 C_4), ``blocks``, ``to_rgb`` (Conv1x1 C_S -> 3, Kaiming init for a linear
    output), ``skip_rgbs`` (one Conv1x1 per lower block, empty without ``skip_rgb``).
    """

    def __init__(self, w_dim: int = 512, output_size: int = 128, *, max_channels: int = 512,
                 channel_base: int = 32768, noise_mode: str = "random", skip_rgb: bool = False,
                 input_mode: str = "const"):
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}.")
        self.w_dim, self.output_size = w_dim, output_size
        self.skip_rgb, self.input_mode = bool(skip_rgb), input_mode
        self.channels = synthesis_channels(output_size, max_channels, channel_base)
        self.resolutions = list(self.channels)
        if input_mode == "const":
            self.const = nn.Parameter(torch.randn(1, self.channels[4], 4, 4))
        else:
            self.input = nn.Linear(w_dim, self.channels[4] * 16)
            # Unit-variance maps for a unit-RMS w, like the N(0, 1) constant.
            nn.init.normal_(self.input.weight, std=1.0 / math.sqrt(w_dim))
            nn.init.zeros_(self.input.bias)
        blocks, in_channels = [], self.channels[4]
        for res, out_channels in self.channels.items():
            blocks.append(SynthesisBlock(in_channels, out_channels, w_dim, res, first=res == 4,
                                         noise_mode=noise_mode))
            in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.num_layers = 2 * len(blocks)
        self.layer_resolutions = [res for res in self.resolutions for _ in range(2)]
        self.to_rgb = _to_rgb(in_channels)
        self.skip_rgbs = nn.ModuleList(
            [_to_rgb(self.channels[res]) for res in self.resolutions[:-1]] if self.skip_rgb else [])

    def per_layer(self, w: torch.Tensor) -> torch.Tensor:
        """w (B, w_dim) -> (B, L, w_dim) (a view, the same code in every layer); ws (B, L, w_dim) as is."""
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w.unsqueeze(1).expand(-1, self.num_layers, -1)
        if w.ndim == 3 and w.shape[1:] == (self.num_layers, self.w_dim):
            return w
        raise ValueError(f"Expected w of shape (B, {self.w_dim}) or (B, {self.num_layers}, {self.w_dim}), "
                         f"got {tuple(w.shape)}.")

    def input_map(self, ws: torch.Tensor) -> torch.Tensor:
        """The 4 x 4 input (B, C_4, 4, 4): the learned constant, or ``input(ws[:, 0])``."""
        if self.input_mode == "const":
            return self.const.expand(ws.shape[0], -1, -1, -1)
        return self.input(ws[:, 0]).view(ws.shape[0], self.channels[4], 4, 4)

    def block_outputs(self, ws: torch.Tensor, noise_mode: str | None = None) -> list[torch.Tensor]:
        """The feature maps after each block, [(B, C_4, 4, 4), (B, C_8, 8, 8), ..., (B, C_S, S, S)]."""
        ws = self.per_layer(ws)
        x = self.input_map(ws)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, 2 * i:2 * i + 2], noise_mode)
            outputs.append(x)
        return outputs

    def forward(self, ws: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        features = self.block_outputs(ws, noise_mode)
        if not self.skip_rgb:
            return torch.tanh(self.to_rgb(features[-1]))
        rgb = None
        for fmap, to_rgb in zip(features, [*self.skip_rgbs, self.to_rgb]):
            if rgb is not None:
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
            rgb = to_rgb(fmap) if rgb is None else rgb + to_rgb(fmap)
        return torch.tanh(rgb)

    def set_noise_mode(self, mode: str) -> None:
        """Set the default noise mode of every NoiseInjection."""
        check_noise_mode(mode)
        for module in self.modules():
            if isinstance(module, NoiseInjection):
                module.mode = mode


def _to_rgb(channels: int) -> nn.Conv2d:
    """Conv1x1 channels -> 3, Kaiming init for a linear output, zero bias."""
    conv = nn.Conv2d(channels, 3, kernel_size=1)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
    nn.init.zeros_(conv.bias)
    return conv


class _Scale(nn.Module):
    """A parametrization W = c * V (``torch.nn.utils.parametrize``); ``right_inverse`` stores V = W / c."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        return stored * self.scale

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.scale


def equalize_learning_rate(module: nn.Module, lr_mul: float = 1.0) -> nn.Module:
    """The equalized learning rate of ProGAN/StyleGAN on every Linear and Conv2d inside ``module``.

    Each weight W (fan-in n) is stored as V = W / c with c = lr_mul / sqrt(n), and used as c * V
    (a ``torch.nn.utils.parametrize`` parametrization); each bias b is stored as b / lr_mul. The
    network computes exactly what it computed before (same initial function), but Adam, whose steps
    have about the same size for every stored parameter, now changes every layer by the same
    *relative* amount per step, and by ``lr_mul`` times less in absolute terms: StyleGAN's mapping
    network uses lr_mul = 0.01. Parameter count and shapes are unchanged; state-dict keys become
    ``<name>.parametrizations.weight.original``. Returns ``module``.
    """
    if not lr_mul > 0:
        raise ValueError(f"lr_mul must be > 0, got {lr_mul}.")
    from torch.nn.utils import parametrize

    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)) and not parametrize.is_parametrized(layer, "weight"):
            fan_in = layer.weight[0].numel()
            parametrize.register_parametrization(layer, "weight", _Scale(lr_mul / math.sqrt(fan_in)))
            if layer.bias is not None:
                parametrize.register_parametrization(layer, "bias", _Scale(lr_mul))
    return module


def mix_styles(ws1: torch.Tensor, ws2: torch.Tensor, crossover: int) -> torch.Tensor:
    """Style mixing: layers [0, crossover) from ws1, [crossover, L) from ws2; each (B, L, w_dim).

    crossover = L gives ws1, 0 gives ws2. Coarse (low-resolution) layers come first.
    """
    if ws1.ndim != 3 or ws1.shape != ws2.shape:
        raise ValueError(f"ws1 and ws2 must both be (B, L, w_dim), got {tuple(ws1.shape)} and "
                         f"{tuple(ws2.shape)}.")
    crossover = check_int("crossover", crossover, minimum=0, maximum=ws1.shape[1])
    return torch.cat([ws1[:, :crossover], ws2[:, crossover:]], dim=1)


def check_noise_mode(mode: str) -> str:
    if mode not in NOISE_MODES:
        raise ValueError(f"Unknown noise mode {mode!r}: choose one of {', '.join(NOISE_MODES)}.")
    return mode


def check_power_of_two(size: int, name: str, minimum: int = 4, maximum: int | None = None) -> int:
    if (not isinstance(size, int) or size < minimum or size & (size - 1)
            or (maximum is not None and size > maximum)):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be a power of two >= {minimum}{upper}, got {size!r}.")
    return size
