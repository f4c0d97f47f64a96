"""The class-conditional ResNet VAE of ``resnet_cvae_card.md``, layer for layer.

Images are (B, 1, 28, 28): in [0, 1] for the Bernoulli likelihood, in [-1, 1] for the Gaussian one.
Labels are (B,) integers in [0, num_classes). The class embedding ``e`` is shared: the encoder head
sees ``concat(pooled features, e)``, the decoder starts from ``concat(z, e)``.

Stages (attribute paths; output shapes for the default z_dim=16)::

    embed              one-hot(10) -> Linear(10->16) -> SiLU               (B, 16)
    encoder.stem       Conv3x3 s1 p1 1->32 -> GroupNorm(8) -> SiLU         (B, 32, 28, 28)
    encoder.blocks[0]  ResBlock down 32->32                                (B, 32, 14, 14)
    encoder.blocks[1]  ResBlock down 32->64                                (B, 64, 7, 7)
    encoder.blocks[2]  ResBlock same 64->64                                (B, 64, 7, 7)
    encoder.pool       global average pool                                 (B, 64)
    encoder.mu         Linear(64+16 -> z)                                  (B, z)
    encoder.logvar     Linear(64+16 -> z)                                  (B, z)
    decoder.fc         Linear(z+16 -> 7*7*64)                              (B, 3136)
    decoder.unflatten  reshape                                             (B, 64, 7, 7)
    decoder.blocks[0]  ResBlock up 64->64                                  (B, 64, 14, 14)
    decoder.blocks[1]  ResBlock up 64->32                                  (B, 32, 28, 28)
    decoder.out        Conv1x1 32->1 (logits, or the Gaussian mean)        (B, 1, 28, 28)

With PyTorch's default biases: 365,937 parameters at z_dim=16, 418,705 at z_dim=32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae_lib.checks import as_input_dtype, check_int, check_latent, check_truncation_psi
from vae_lib.nn.blocks import ResBlock, make_activation, make_norm
from vae_lib.utils import standard_normal

IMAGE_SHAPE = (1, 28, 28)
LIKELIHOODS = ("bernoulli", "gaussian")
DEFAULT_LIKELIHOOD = "bernoulli"
DATA_RANGES = {"bernoulli": (0.0, 1.0), "gaussian": (-1.0, 1.0)}
DEFAULT_SIGMA = 0.1
# Inputs may overshoot their range by this much (float round-off, resizing) before we complain.
RANGE_TOLERANCE = 1e-3


class ClassEmbedding(nn.Module):
    """one-hot(num_classes) -> Linear(num_classes -> embed_dim) -> act; (B,) int -> (B, embed_dim)."""

    def __init__(self, num_classes: int = 10, embed_dim: int = 16, activation: str = "silu"):
        super().__init__()
        self.num_classes = num_classes
        self.linear = nn.Linear(num_classes, embed_dim)
        self.act = make_activation(activation)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(y.long(), self.num_classes).to(self.linear.weight.dtype)
        return self.act(self.linear(one_hot))


class Encoder(nn.Module):
    """x (B, 1, 28, 28) and class embedding e (B, embed_dim) -> mu, raw logvar, each (B, z_dim)."""

    def __init__(self, z_dim: int, embed_dim: int, norm: str = "group", activation: str = "silu"):
        super().__init__()
        block = dict(norm=norm, activation=activation)
        self.stem = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], 32, kernel_size=3, stride=1, padding=1),
            make_norm(norm, 32),
            make_activation(activation),
        )
        self.blocks = nn.Sequential(
            ResBlock(32, 32, mode="down", **block),
            ResBlock(32, 64, mode="down", **block),
            ResBlock(64, 64, mode="same", **block),
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.mu = nn.Linear(64 + embed_dim, z_dim)
        self.logvar = nn.Linear(64 + embed_dim, z_dim)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.pool(self.blocks(self.stem(x))), e], dim=1)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """z (B, z_dim) and e (B, embed_dim) -> raw head output (B, 1, 28, 28): logits or Gaussian mean."""

    def __init__(self, z_dim: int, embed_dim: int, norm: str = "group", activation: str = "silu"):
        super().__init__()
        block = dict(norm=norm, activation=activation)
        self.fc = nn.Linear(z_dim + embed_dim, 64 * 7 * 7)
        self.unflatten = nn.Unflatten(1, (64, 7, 7))
        self.blocks = nn.Sequential(
            ResBlock(64, 64, mode="up", **block),
            ResBlock(64, 32, mode="up", **block),
        )
        self.out = nn.Conv2d(32, IMAGE_SHAPE[0], kernel_size=1)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.unflatten(self.fc(torch.cat([z, e], dim=1)))))


class CVAE(nn.Module):
    """Class-conditional ResNet VAE (see the module docstring for the stages).

    Args:
        z_dim: latent size (card: 16; 32 as the ablation).
        num_classes: number of labels (10 digits).
        likelihood: ``"bernoulli"`` (x in [0, 1]; the head gives logits, ``x_hat = sigmoid``) or
            ``"gaussian"`` (x in [-1, 1]; identity head gives the mean, fixed ``sigma``).
        embed_dim: size of the class embedding (card: 16).
        sigma: the Gaussian's fixed standard deviation, in the units of x. Default 0.1, i.e. 5% of
            the [-1, 1] range: an error of 0.1 on a pixel costs 0.5 nats. With sigma = 1 the same
            error costs 0.005 nats, the KL term dominates and the decoder tends to ignore z.
            Ignored (``self.sigma = None``) for Bernoulli.
        norm, activation: ``"group"`` (GroupNorm(8), card) or ``"batch"``; ``"silu"`` (card) or
            ``"relu"``. Used in every block, the stem and the class embedding.
        logvar_clamp: (lo, hi) range for the encoder's log-variance, or None. Default (-10, 10):
            sigma_q in [exp(-5), exp(5)] = [0.0067, 148], which keeps ``exp(logvar)`` and the KL
            finite early in training when the logvar head can output large values.
    """

    def __init__(self, z_dim: int = 16, num_classes: int = 10, likelihood: str = DEFAULT_LIKELIHOOD, *,
                 embed_dim: int = 16, sigma: float = DEFAULT_SIGMA, norm: str = "group",
                 activation: str = "silu", logvar_clamp: tuple[float, float] | None = (-10.0, 10.0)):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"Unknown likelihood {likelihood!r}: choose one of {', '.join(LIKELIHOODS)}.")
        for name, value in (("z_dim", z_dim), ("num_classes", num_classes), ("embed_dim", embed_dim)):
            if not isinstance(value, int) or isinstance(value, bool):
                check_int(name, value, minimum=1)  # a float or a string: say which, before torch does
        if z_dim < 1 or num_classes < 1 or embed_dim < 1:
            raise ValueError(f"z_dim, num_classes and embed_dim must be positive, got {z_dim}, "
                             f"{num_classes}, {embed_dim}.")
        if likelihood == "gaussian" and not sigma > 1e-3:
            raise ValueError(f"sigma must be > 1e-3 (a standard deviation in the units of x), got {sigma}.")
        if logvar_clamp is not None and not logvar_clamp[0] < logvar_clamp[1]:
            raise ValueError(f"logvar_clamp must be (lo, hi) with lo < hi, got {logvar_clamp}.")
        self.z_dim, self.num_classes, self.likelihood = z_dim, num_classes, likelihood
        self.sigma = float(sigma) if likelihood == "gaussian" else None
        self.data_range = DATA_RANGES[likelihood]
        self.logvar_clamp = logvar_clamp

        self.embed = ClassEmbedding(num_classes, embed_dim, activation)
        self.encoder = Encoder(z_dim, embed_dim, norm, activation)
        self.decoder = Decoder(z_dim, embed_dim, norm, activation)

    # ---- the VAE interface (shared with the StyleGAN-VAE: see vae_lib.models) -----------------
    conditional = True  # every encode/decode/sample/reconstruct needs labels y, (B,) integers
    num_style_layers = 0  # no style layers: style-mixing figures and widgets do not apply
    channels_last_on_cpu = True  # measured faster on the CPU in fp32 (benchmarks/speed.py, fastpaths)

    @classmethod
    def data_range_for(cls, likelihood: str = DEFAULT_LIKELIHOOD, **model_kwargs) -> tuple[float, float]:
        """The ``data_range`` a CVAE built with these keyword arguments will have, without building it."""
        if likelihood not in DATA_RANGES:
            raise ValueError(f"Unknown likelihood {likelihood!r}: choose one of {', '.join(DATA_RANGES)}")
        return DATA_RANGES[likelihood]

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28), y (B,) -> mu, logvar, each (B, z_dim); logvar is clamped.

        A float64 x is converted to the model's dtype (as in ``forward``)."""
        x = self._check_x(x)
        return self._encode(x, self.embed(self._check_y(y, x.shape[0])))

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I); (B, z_dim). Samples in train and eval mode."""
        return mu + torch.exp(0.5 * logvar) * standard_normal(mu.shape, mu, generator)

    def decode_params(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """z (B, z_dim), y (B,) -> the head's raw output (B, 1, 28, 28): logits (Bernoulli) or mean (Gaussian)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}.")
        return self.decoder(z, self.embed(self._check_y(y, z.shape[0])))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, *, noise_mode: str | None = None,
               truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, z_dim), y (B,) -> x_hat (B, 1, 28, 28), the likelihood's mean (in the data range).

        ``truncation_psi``: decodes ``psi * z``. In a VAE, truncation is close to a temperature on
        z: psi < 1 draws codes nearer the prior's mode (cleaner, less varied images); 1 (default)
        leaves z as it is. ``noise_mode`` is accepted for the shared interface and ignored: the
        CVAE has no noise injections.

        z must be finite (a NaN z would decode to NaN images without a word); float64 is converted.
        (``decode_params``, which the training loss calls, leaves the finiteness to the Trainer's
        NaN guard rather than pay a device sync per step.)"""
        z = check_latent(z, self.z_dim, like=self.decoder.fc.weight)
        psi = check_truncation_psi(truncation_psi)
        if psi != 1.0:
            z = psi * z
        return self.params_to_mean(self.decode_params(z, y))

    def params_to_mean(self, params: torch.Tensor) -> torch.Tensor:
        """The likelihood's mean from the head's output: sigmoid(logits) or the Gaussian mean itself."""
        return torch.sigmoid(params) if self.likelihood == "bernoulli" else params

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28), y (B,) -> (x_hat (B, 1, 28, 28), mu (B, z_dim), logvar (B, z_dim))."""
        x = self._check_x(x)
        e = self.embed(self._check_y(y, x.shape[0]))
        mu, logvar = self._encode(x, e)
        z = self.reparameterize(mu, logvar)
        return self.params_to_mean(self.decoder(z, e)), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                    noise_mode: str | None = None) -> torch.Tensor:
        """decode(mu(x, y), y): the deterministic reconstruction (B, 1, 28, 28) of x. No gradients.

        ``noise_mode`` is accepted for the shared interface and ignored (the CVAE has no noise)."""
        return self.decode(self.encode(x, y)[0], y)

    def sample(self, n: int, y=None, *, generator: torch.Generator | None = None,
               truncation_psi: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
        """x_hat (n, 1, 28, 28) for z ~ N(0, I), one sample per label in y ((n,) integers).

        z is drawn with ``generator`` on the generator's own device, then moved to the model's
        device, so a CPU generator (as ``runtime.seed_everything`` returns) gives the same z
        on every device. ``truncation_psi`` scales z (a temperature, see :meth:`decode`);
        ``noise_mode`` is ignored (no noise). No gradients; call ``model.eval()`` first if the
        model uses BatchNorm.
        """
        n = check_int("n", n, minimum=1)
        if y is None:
            raise ValueError(self._MISSING_LABELS)
        device = next(self.parameters()).device
        y = torch.as_tensor(y, device=device)
        if y.ndim != 1:
            raise ValueError(f"y must have shape (n,), got {tuple(y.shape)}.")
        if y.shape[0] != n:
            raise ValueError(f"Asked for n={n} samples but got {y.shape[0]} labels: y must have shape (n,).")
        like = torch.empty(0, device=device, dtype=next(self.parameters()).dtype)
        with torch.no_grad():
            return self.decode(standard_normal((n, self.z_dim), like, generator), y,
                               truncation_psi=truncation_psi)

    # ---- stages, for tests and the notebook's tables -------------------------------------------
    def stages(self) -> list[tuple[str, nn.Module]]:
        """The card's stages in data-flow order, as (attribute path, module)."""
        enc, dec = self.encoder, self.decoder
        return [("embed", self.embed), ("encoder.stem", enc.stem),
                *[(f"encoder.blocks[{i}]", b) for i, b in enumerate(enc.blocks)],
                ("encoder.pool", enc.pool), ("encoder.mu", enc.mu), ("encoder.logvar", enc.logvar),
                ("decoder.fc", dec.fc), ("decoder.unflatten", dec.unflatten),
                *[(f"decoder.blocks[{i}]", b) for i, b in enumerate(dec.blocks)],
                ("decoder.out", dec.out)]

    def stage_table(self) -> list[dict]:
        """One row per stage: {"stage", "output" (shape without the batch axis), "params"}.

        Runs one forward pass on a dummy batch in eval mode (BatchNorm statistics are untouched).
        """
        shapes = {}

        def record(name):
            def hook(module, inputs, output):
                shapes[name] = tuple(output.shape[1:])
            return hook

        hooks = [m.register_forward_hook(record(name)) for name, m in self.stages()]
        device = next(self.parameters()).device
        was_training = self.training
        try:
            self.eval()
            with torch.no_grad():
                self(torch.full((2, *IMAGE_SHAPE), self.data_range[0], device=device),
                     torch.zeros(2, dtype=torch.long, device=device))
        finally:
            self.train(was_training)
            for h in hooks:
                h.remove()
        return [{"stage": name, "output": shapes[name], "params": sum(p.numel() for p in m.parameters())}
                for name, m in self.stages()]

    def summary(self) -> str:
        """The stage table as text, with the total parameter count."""
        rows = self.stage_table()
        lines = [f"{'stage':<20}{'output':<18}{'params':>10}"]
        lines += [f"{r['stage']:<20}{str(r['output']):<18}{r['params']:>10,}" for r in rows]
        lines.append(f"{'total':<38}{sum(p.numel() for p in self.parameters()):>10,}")
        return "\n".join(lines)

    # ---- internals -------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x, e)
        if self.logvar_clamp is not None:
            logvar = logvar.clamp(*self.logvar_clamp)
        return mu, logvar

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        """x checked (shape, range, NaN), float64 converted to the model's dtype."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != IMAGE_SHAPE:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {', '.join(map(str, IMAGE_SHAPE))}), got {shape}"
                             + (" (wrong channel count)" if isinstance(x, torch.Tensor) and x.ndim == 4
                                and x.shape[1] != IMAGE_SHAPE[0] else "") + ".")
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch.")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}.")
        x = as_input_dtype(x, like=self.decoder.fc.weight)
        lo, hi = torch.aminmax(x.detach())
        lo, hi = lo.item(), hi.item()
        want_lo, want_hi = self.data_range
        # Written so that NaN fails too.
        if not (lo >= want_lo - RANGE_TOLERANCE and hi <= want_hi + RANGE_TOLERANCE):
            if hi > 2:
                hint = " (pixel values in [0, 255]? divide by 255 first)"
            elif lo < 0 <= want_lo:
                hint = " (images in [-1, 1]? use (x + 1) / 2, or likelihood='gaussian')"
            else:
                hint = ""
            raise ValueError(f"x must lie in [{want_lo:g}, {want_hi:g}] for the {self.likelihood} likelihood, "
                             f"got values in [{lo:.4g}, {hi:.4g}]{hint}.")
        return x

    _MISSING_LABELS = "this CVAE is class-conditional: pass labels y ((B,) integer class indices)."

    def _check_y(self, y: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if y is None:
            raise ValueError(self._MISSING_LABELS)
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be a (B,) tensor of class indices, got {shape}.")
        if y.shape[0] != batch_size:
            raise ValueError(f"Batch sizes differ: {batch_size} inputs but {y.shape[0]} labels.")
        if batch_size == 0:
            raise ValueError("Empty batch: y has no labels.")
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"y must hold integer class indices (e.g. torch.long), got {y.dtype}.")
        lo, hi = (v.item() for v in torch.aminmax(y))
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"Labels must lie in [0, {self.num_classes}), got values in [{lo}, {hi}].")
        return y

