"""The StyleGAN-VAE of ``stylegan_vae_card.md``: a residual encoder and a style-based decoder.

Images are (B, 3, S, S) in [-1, 1], S = 128 by default (card); 64, 32, 16 and 8 give smaller models
for CPU presets. Stages for the default model (attribute paths; output shapes without the batch)::

    encoder.stem        Conv3x3 3->64 -> GroupNorm -> LReLU                 (64, 128, 128)
    encoder.stages[0]   Down1: Conv3x3 s2 64->128 -> GN -> LReLU, 2 res     (128, 64, 64)
    encoder.stages[1]   Down2: 128->256, 2 res                              (256, 32, 32)
    encoder.stages[2]   Down3: 256->512, 3 res                              (512, 16, 16)
    encoder.stages[3]   Down4: 512->512, 2 res                              (512, 8, 8)
    encoder.stages[4]   Down5: 512->512, 1 res                              (512, 4, 4)
    encoder.pool        AdaptiveAvgPool + Flatten                           (512,)
    encoder.fc          Linear(512->512) -> LReLU                           (512,)
    encoder.mu/logvar   Linear(512->z_dim) each; logvar clamped to (-10, 10) (z_dim,)
    mapping             PixelNorm -> 8 x [Linear(512->512) -> LReLU]         (w_dim,)
    synthesis           constant 4x4x512 -> 12 style layers -> ToRGB -> tanh (3, 128, 128)

Default (z_dim=512, input_size=128): 69,233,987 parameters, of which encoder 38,336,576, mapping
2,101,248, synthesis 28,796,163 (``tests/test_stylegan_vae.py`` derives these from the card).

Choices the card leaves open, made here (each stated where it is implemented):

* Residual blocks: the card's stage list has 2 + 2 + 3 + 2 + 1 = 10 of them, its text says
  "11 total"; the stage list is followed.
* ``ResidualBlock`` is the basic block of He et al. (2016) with GroupNorm:
  x -> Conv3x3 -> GN -> LReLU -> Conv3x3 -> GN, + x, -> LReLU. Convolutions followed by GroupNorm
  have no bias (the normalisation subtracts it). Kaiming init for LeakyReLU(0.2) on every conv.
* "FC layers": one shared Linear(C->C) + LReLU, then the two heads mu and logvar (Xavier init).
* Smaller inputs: the stages run in the card's order and stop when the map is 4 x 4: a 64-px
  encoder uses Down1..Down4, a 32-px one Down1..Down3 (both end at 512 channels), 16 px Down1..Down2
  (256).
* ``max_channels`` caps every width, in the encoder and in the synthesis (``encoder_channels``, an
  option, caps the encoder's apart).
* Clamping (card: "throughout (-10, 10)") in three places: the encoder's logvar, AdaIN's style
  scale and bias (``vae_lib.nn.style``), and the output, bounded by tanh to (-1, 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from vae_lib.models.cvae import RANGE_TOLERANCE
from vae_lib.checks import as_input_dtype, check_int, check_latent
from vae_lib.nn.blocks import make_norm
from vae_lib.nn.style import (LRELU_SLOPE, MappingNetwork, Synthesis, check_noise_mode,
                              check_power_of_two, equalize_learning_rate, mix_styles)
from vae_lib.utils import standard_normal

ENCODER_STEM_CHANNELS = 64
# (output channels, residual blocks) of Down1..Down5 (card).
ENCODER_STAGES = ((128, 2), (256, 2), (512, 3), (512, 2), (512, 1))
DATA_RANGE = (-1.0, 1.0)
# He et al. (2015)'s gain for LeakyReLU(0.2): keeps the scale of w through the mapping network.
MAPPING_GAIN_PRESERVING = math.sqrt(2.0 / (1.0 + LRELU_SLOPE ** 2))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (Wu & He 2018), fewer for narrow layers so a group has >= 2 channels."""
    return make_norm("group", channels, groups=math.gcd(channels, max(1, min(32, channels // 2))))


def conv_norm_act(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Conv3x3 (no bias, Kaiming) -> GroupNorm -> LeakyReLU(0.2)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, a=LRELU_SLOPE, nonlinearity="leaky_relu")
    return nn.Sequential(conv, group_norm(out_channels), nn.LeakyReLU(LRELU_SLOPE))


class ResidualBlock(nn.Module):
    """LReLU(x + GN(Conv3x3(LReLU(GN(Conv3x3(x)))))); (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_norm_act(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv2.weight, a=LRELU_SLOPE, nonlinearity="leaky_relu")
        self.norm2 = group_norm(channels)
        self.act = nn.LeakyReLU(LRELU_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.norm2(self.conv2(self.conv1(x))))


class DownStage(nn.Module):
    """Conv3x3 stride 2 -> GN -> LReLU, then ``num_blocks`` ResidualBlocks; (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int):
        super().__init__()
        self.down = conv_norm_act(in_channels, out_channels, stride=2)
        self.blocks = nn.Sequential(*[ResidualBlock(out_channels) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.down(x))


ENCODER_POOLS = ("average", "flatten")


class StrongerEncoder(nn.Module):
    """x (B, 3, S, S) -> (mu, raw logvar), each (B, z_dim). See the module docstring for the stages.

    S is a power of two in [8, 128]; the stages stop once the map is 4 x 4 (log2(S) - 2 of them).

    ``fc_width``: the FC layer's width (default: the last stage's width C, the card's).

    ``pool``: ``"average"`` (card: AdaptiveAvgPool + Flatten, (C,)) or ``"flatten"`` (beyond the
    card: the whole 4 x 4 map, (16 C,), into the FC layer). A global average keeps what is in the
    image but not where: position then has to be read from the zero padding's border effects, which
    a briefly trained encoder has not learned; flattening keeps the 16 cells apart.
    """

    def __init__(self, z_dim: int = 512, input_size: int = 128, *, max_channels: int = 512,
                 pool: str = "average", fc_width: int | None = None):
        super().__init__()
        check_power_of_two(input_size, "input_size", minimum=8, maximum=4 * 2 ** len(ENCODER_STAGES))
        if pool not in ENCODER_POOLS:
            raise ValueError(f"pool must be one of {ENCODER_POOLS}, got {pool!r}.")
        self.z_dim, self.input_size, self.pool_mode = z_dim, input_size, pool
        width = min(ENCODER_STEM_CHANNELS, max_channels)
        self.stem = conv_norm_act(3, width)
        stages = []
        for out_channels, num_blocks in ENCODER_STAGES[:int(math.log2(input_size)) - 2]:
            out_channels = min(out_channels, max_channels)
            stages.append(DownStage(width, out_channels, num_blocks))
            width = out_channels
        self.stages = nn.Sequential(*stages)
        self.feature_channels = width
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()) if pool == "average" else nn.Flatten()
        check_int("fc_width", fc_width, minimum=1, optional=True)
        fc_width = width if fc_width is None else fc_width
        self.fc = nn.Sequential(nn.Linear(width * (1 if pool == "average" else 16), fc_width),
                                nn.LeakyReLU(LRELU_SLOPE))
        self.mu = nn.Linear(fc_width, z_dim)
        self.logvar = nn.Linear(fc_width, z_dim)
        for linear in (self.fc[0], self.mu, self.logvar):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.pool(self.stages(self.stem(x))))
        return self.mu(h), self.logvar(h)


class ConvolutionalVAE(nn.Module):
    """StyleGAN-VAE (card): StrongerEncoder -> z -> MappingNetwork -> w -> Synthesis -> image.

    Args:
        z_dim: latent size (card: 512). input_size: S, a power of two in [8, 128] (card: 128).
        use_style_mixing: mix two codes in training forward passes (see below).
        w_dim: size of w (default z_dim). mapping_layers: depth of the mapping network (card: 8).
        max_channels: caps every width of encoder and synthesis (card: 512).
        mixing_prob: probability that a training batch is mixed (StyleGAN: 0.9).
        noise_mode: default of the noise injections, ``"random"``, ``"const"`` or ``"none"``.
        logvar_clamp: logvar is clamped to (-logvar_clamp, logvar_clamp) (card: 10), or None.
        w_avg_beta: decay of the moving average of w used by the truncation trick (0.995).

    Options beyond the card (defaults give the card's network; what each one bought on the CPU
    preset is measured in ``benchmarks/stylevae_learning.py``):
        channel_base: the synthesis has min(max_channels, channel_base // r) channels at resolution
            r (StyleGAN2-ADA's ``cbase``, 32768: the card's 512 up to 64 px and 256 at 128 px). A
            small base with a larger ``max_channels`` keeps the low resolutions, where shape and
            position are decided, wide and the expensive high resolutions narrow.
        encoder_pool: ``"average"`` (card) or ``"flatten"``: see ``StrongerEncoder``.
        mapping_gain: the gain of the mapping network's Xavier init (card: 0.5). With 0.5 every
            layer shrinks its input about 3x, so at initialisation w has a root-mean-square of 0.14
            after 2 layers, 0.017 after 4 and 2e-4 after the card's 8: w is nearly the same for
            every z, and each style affine, whose gradient is proportional to w, barely learns.
            ``MAPPING_GAIN_PRESERVING`` (sqrt(2 / (1 + 0.2^2)), He et al.'s gain for
            LeakyReLU(0.2)) keeps w's scale through the layers.
        skip_rgb: StyleGAN2's skip synthesis, an RGB output at every resolution, summed.
        input_mode: ``"const"`` (card: a learned 4 x 4 constant) or ``"mapped"`` (Linear(w_0)).
        equalized_lr: the equalized learning rate of StyleGAN on every Linear and Conv2d
            (``vae_lib.nn.style.equalize_learning_rate``); the same initial network.
        mapping_lr_mul: the mapping network's learning-rate multiplier (StyleGAN: 0.01); needs
            ``equalized_lr``.
        per_layer_codes: one code per style layer, as pSp's W+ (Richardson et al. 2021) and the
            per-scale codes of hierarchical VAEs: z (B, z_dim) is read as L chunks of z_dim / L
            (z_dim must be a multiple of L), and layer l's w is ``mapping(chunk l)`` (one mapping
            network, shared by the chunks, whose input is z_dim / L wide). The shapes of z, mu and
            logvar, the KL and the N(0, I) prior are unchanged. Why: with one w in every layer,
            nothing in the ELBO says which layer should read which factor, and a reference run
            mixes its stripes with its outline. With a code per layer, a factor carried by two
            chunks pays its KL twice, so each factor tends to live in the chunk of the layers that
            draw it, and style mixing (which swaps chunks) swaps factors.
        encoder_channels: caps the encoder's widths instead of ``max_channels`` (None: the same cap).
        encoder_fc_width: the width of the encoder's FC layer (None: its last stage's width, as the
            card). Why both: at CPU size (``max_channels=32``) the encoder is what keeps a short run from
            learning the shapes' outlines. Taught the factors directly it reads the shape of 75 % of
            upright test shapes at 32 channels and 97.5 % at 64; in the VAE (upright shapes, a code per
            layer) 64 channels and an FC 256 wide bring the outlines after about 3,500 steps instead of
            6,000-12,500, for 20 % more time per step (``benchmarks/README.md``).

    Style mixing in training (``use_style_mixing=True`` and ``model.training``): with probability
    ``mixing_prob`` per batch, a crossover k is drawn uniformly in [1, L-1] and the layers from k on
    read w2 = mapping(z2), where z2 is a *second sample from the same posterior* q(z | x), while
    layers [0, k) read w1 = mapping(z1). ``forward`` returns this reconstruction, so the
    reconstruction loss sees it. Why this second code: both z1 and z2 explain x, so the mixed
    reconstruction still has x as its target and the loss stays meaningful; the decoder can no
    longer rely on all layers receiving the same w, which is the point of mixing (card: "prevents
    the network from assuming correlation between layers"). Mixing with another image's code (or a
    prior sample) was rejected: that image has no target, and a reconstruction loss on it would
    teach the fine layers to ignore w. With mixing, the loss is a regularised surrogate rather than
    exactly the ELBO; eval mode never mixes. ``w_avg`` is updated from w1 only (as StyleGAN2-ADA,
    which skips the update for the mixing code). ``mix(z1, z2, k)`` is the generation-time crossover
    between any two codes.

    ``forward`` samples z in train and eval mode (as the CVAE), so it is a one-sample ELBO estimate.
    """

    def __init__(self, z_dim: int = 512, input_size: int = 128, use_style_mixing: bool = False, *,
                 w_dim: int | None = None, mapping_layers: int = 8, max_channels: int = 512,
                 mixing_prob: float = 0.9, noise_mode: str = "random", logvar_clamp: float | None = 10.0,
                 w_avg_beta: float = 0.995, skip_rgb: bool = False, input_mode: str = "const",
                 equalized_lr: bool = False, mapping_lr_mul: float = 1.0, encoder_pool: str = "average",
                 mapping_gain: float = 0.5, channel_base: int = 32768, per_layer_codes: bool = False,
                 encoder_channels: int | None = None, encoder_fc_width: int | None = None):
        super().__init__()
        for name, value in (("z_dim", z_dim), ("max_channels", max_channels), ("mapping_layers", mapping_layers),
                            ("channel_base", channel_base)):
            check_int(name, value, minimum=1)
        check_int("w_dim", w_dim, minimum=1, optional=True)
        if not 0.0 <= mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob must be a probability in [0, 1], got {mixing_prob}.")
        if logvar_clamp is not None and not logvar_clamp > 0:
            raise ValueError(f"logvar_clamp must be > 0 (logvar is clamped to (-c, c)) or None, got {logvar_clamp}.")
        check_noise_mode(noise_mode)
        if mapping_lr_mul != 1.0 and not equalized_lr:
            raise ValueError("mapping_lr_mul works through the equalized learning rate: set equalized_lr=True.")
        self.z_dim, self.input_size = z_dim, input_size
        self.w_dim = z_dim if w_dim is None else w_dim
        self.use_style_mixing, self.mixing_prob = use_style_mixing, mixing_prob
        self.logvar_clamp = logvar_clamp
        self.data_range = DATA_RANGE

        self.per_layer_codes = bool(per_layer_codes)

        check_int("encoder_channels", encoder_channels, minimum=1, optional=True)
        self.encoder = StrongerEncoder(z_dim, input_size, pool=encoder_pool, fc_width=encoder_fc_width,
                                       max_channels=max_channels if encoder_channels is None else encoder_channels)
        self.synthesis = Synthesis(self.w_dim, input_size, max_channels=max_channels, channel_base=channel_base,
                                   noise_mode=noise_mode, skip_rgb=skip_rgb, input_mode=input_mode)
        self.num_style_layers = self.synthesis.num_layers
        if self.per_layer_codes and z_dim % self.num_style_layers:
            raise ValueError(f"per_layer_codes splits z into {self.num_style_layers} chunks, one per style layer: "
                             f"z_dim must be a multiple of {self.num_style_layers}, got {z_dim}.")
        code_dim = z_dim // self.num_style_layers if self.per_layer_codes else z_dim
        self.mapping = MappingNetwork(code_dim, self.w_dim, mapping_layers, w_avg_beta=w_avg_beta,
                                      init_gain=mapping_gain)
        if equalized_lr:
            equalize_learning_rate(self.encoder)
            equalize_learning_rate(self.mapping, mapping_lr_mul)
            equalize_learning_rate(self.synthesis)

    @property
    def code_dim(self) -> int:
        """The mapping network's input width: z_dim, or one chunk of z per style layer (``per_layer_codes``)."""
        return self.mapping.z_dim

    # ---- the VAE interface (shared with the CVAE: see vae_lib.models) --------------------------
    conditional = False  # no class labels: every ``y`` argument must be None

    @classmethod
    def data_range_for(cls, **model_kwargs) -> tuple[float, float]:
        """The ``data_range`` of a model built with these keyword arguments: always (-1, 1)."""
        return DATA_RANGE

    def encode(self, x: torch.Tensor, y: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) in [-1, 1] -> mu, logvar, each (B, z_dim); logvar is clamped."""
        self._check_no_labels(y)
        x = self._check_x(x)
        mu, logvar = self.encoder(x)
        if self.logvar_clamp is not None:
            logvar = logvar.clamp(-self.logvar_clamp, self.logvar_clamp)
        return mu, logvar

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I); (B, z_dim)."""
        return mu + torch.exp(0.5 * logvar) * standard_normal(mu.shape, mu, generator)

    def decode(self, z: torch.Tensor, y: None = None, *, noise_mode: str | None = None,
               truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, z_dim) -> images (B, 3, S, S) in (-1, 1); the same w in every style layer.

        ``truncation_psi`` < 1 pulls w towards ``mapping.w_avg`` (the truncation trick);
        ``noise_mode`` overrides the noise injections' default for this call.
        """
        self._check_no_labels(y)
        return self.synthesis(self.styles(self._check_z(z), truncation_psi=truncation_psi), noise_mode)

    def styles(self, z: torch.Tensor, *, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, L, w_dim), the w that each style layer reads.

        One code: ``mapping(z)`` in every layer. ``per_layer_codes``: layer l reads ``mapping(chunk l)``.
        """
        if not self.per_layer_codes:
            return self.synthesis.per_layer(self.mapping(z, truncation_psi=truncation_psi, update_w_avg=update_w_avg))
        chunks = z.reshape(z.shape[0] * self.num_style_layers, -1)
        w = self.mapping(chunks, truncation_psi=truncation_psi, update_w_avg=update_w_avg)
        return w.view(z.shape[0], self.num_style_layers, self.w_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) in [-1, 1] -> (recon_x (B, 3, S, S) in (-1, 1), mu (B, z_dim), logvar (B, z_dim))."""
        mu, logvar = self.encode(x)
        ws = self.styles(self.reparameterize(mu, logvar), update_w_avg=self.training)
        if self.use_style_mixing and self.training and torch.rand(()) < self.mixing_prob:
            crossover = int(torch.randint(1, self.num_style_layers, ()))
            ws = mix_styles(ws, self.styles(self.reparameterize(mu, logvar)), crossover)
        return self.synthesis(ws), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: None = None, *, noise_mode: str | None = "const") -> torch.Tensor:
        """decode(mu(x)): the deterministic reconstruction (B, 3, S, S) in (-1, 1) of x in [-1, 1]. No gradients."""
        return self.decode(self.encode(x, y)[0], noise_mode=noise_mode)

    # ---- generation --------------------------------------------------------------------------
    def sample(self, n: int, y: None = None, *, generator: torch.Generator | None = None,
               truncation_psi: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
        """n images (n, 3, S, S) in (-1, 1) from z ~ N(0, I), w truncated towards ``w_avg`` by psi.

        z is drawn with ``generator`` on its own device (a CPU generator gives the same z on every
        device); random noise injections use the global RNG (``noise_mode="const"`` for fixed
        images). No gradients.
        """
        self._check_no_labels(y)
        n = check_int("n", n, minimum=1)
        with torch.no_grad():
            z = standard_normal((n, self.z_dim), self.mapping.w_avg, generator)
            return self.decode(z, noise_mode=noise_mode, truncation_psi=truncation_psi)

    def mix(self, z1: torch.Tensor, z2: torch.Tensor, crossover: int, *, truncation_psi: float = 1.0,
            noise_mode: str | None = None) -> torch.Tensor:
        """Images (B, 3, S, S) whose layers [0, crossover) read w1 = mapping(z1), the rest w2 = mapping(z2).

        z1, z2 (B, z_dim); both codes are truncated by ``truncation_psi``. Small crossovers let z2
        set almost everything; crossover = L gives decode(z1), 0 gives decode(z2).
        """
        crossover = check_int("crossover", crossover, minimum=0, maximum=self.num_style_layers)
        ws1 = self.styles(self._check_z(z1, "z1"), truncation_psi=truncation_psi)
        ws2 = self.styles(self._check_z(z2, "z2"), truncation_psi=truncation_psi)
        return self.synthesis(mix_styles(ws1, ws2, crossover), noise_mode)

    # ---- internals -------------------------------------------------------------------------------
    @staticmethod
    def _check_no_labels(y) -> None:
        if y is not None:
            raise ValueError("This StyleGAN-VAE is unconditional (model.conditional is False): pass no labels y.")

    def _check_z(self, z: torch.Tensor, name: str = "z") -> torch.Tensor:
        return check_latent(z, self.z_dim, like=self.mapping.w_avg, name=name)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """x as the model takes it (float64 becomes the model's dtype), or a clear error."""
        shape = (3, self.input_size, self.input_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {', '.join(map(str, shape))}), got {got}.")
        if x.shape[0] == 0 or not x.is_floating_point():
            raise ValueError(f"x must be a non-empty floating-point batch, got {x.shape[0]} images of {x.dtype}.")
        lo, hi = (v.item() for v in torch.aminmax(x.detach()))
        # Written so that NaN fails too.
        if not (lo >= DATA_RANGE[0] - RANGE_TOLERANCE and hi <= DATA_RANGE[1] + RANGE_TOLERANCE):
            raise ValueError(f"x must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]"
                             + (" (rescale with 2 * x - 1)" if lo >= 0 else "") + ".")
        return as_input_dtype(x, like=self.mapping.w_avg)
