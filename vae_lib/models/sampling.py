"""Sampling from a model, in one place: codes from the prior, decoding them (with truncation), and
the label vectors and grids of samples that the metrics, the figures, the widgets and the CLI use.

Each function asks only the shared model interface (``vae_lib/models/__init__.py``): ``z_dim``,
``conditional``, ``num_classes`` (conditional models), ``decode(z, y, *, noise_mode, truncation_psi)``
and ``sample(n, y, *, generator, truncation_psi, noise_mode)``; never a model's class.

* :func:`prior_codes`: z ~ N(0, I), (n, z_dim) float32 on the CPU, from ``seed`` or a ``generator``,
  so the same seed gives the same codes in every module and on every device.
* :func:`class_labels`: (C n,) labels 0 .. 0, 1 .. 1, ..., ``n_per_class`` of each class.
* :func:`decode_latents`: images for given codes, on the CPU, in eval mode without gradients.
* :func:`sample_images`: ``n`` samples whose codes are all drawn first, then decoded in batches,
  so that the images do not depend on the batch size (the FID protocol's generated set).
* :func:`class_samples`: ``model.sample`` for ``n_per_class`` samples of every class (rows of a grid).
* :func:`sample_grid`: what ``python -m vae_lib sample`` draws: a row per class, or an n x n grid.
"""
from __future__ import annotations

import torch

from vae_lib.utils import evaluation_mode, model_device

# Codes decoded per forward pass by sample_images (the judges' prediction batch): bounds memory only.
DECODE_BATCH = 500


def prior_codes(n: int, z_dim: int, *, seed: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` codes z ~ N(0, I), (n, z_dim) float32 on the CPU: ``torch.randn(n, z_dim, generator=g)``
    with ``g = generator`` (whose state advances) or ``torch.Generator().manual_seed(seed)``."""
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    return torch.randn(n, z_dim, generator=generator)


def class_labels(num_classes: int, n_per_class: int = 1, device=None) -> torch.Tensor:
    """(num_classes * n_per_class,) int64 labels, class by class: ``n_per_class`` zeros, then ones, ..."""
    return torch.arange(num_classes, device=device).repeat_interleave(n_per_class)


def decode_latents(model, z: torch.Tensor, label=None, *, noise_mode: str | None = "const",
                   truncation_psi: float = 1.0) -> torch.Tensor:
    """Images for codes z (B, z_dim) or (z_dim,) on the CPU, in the model's data range, no gradients.

    A conditional model needs ``label``: one int for every row, or a (B,) tensor; other models ignore
    it. ``noise_mode`` ("const": the same image for the same z every time) and ``truncation_psi``
    go to ``model.decode``, which ignores what it has no use for.
    """
    z = torch.as_tensor(z, dtype=torch.float32)
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != model.z_dim:
        raise ValueError(f"z must have shape (B, {model.z_dim}) or ({model.z_dim},), got {tuple(z.shape)}.")
    device = model_device(model)
    y = None
    if model.conditional:
        if label is None:
            raise ValueError("A class-conditional model needs a label (an int, or one per row of z).")
        y = torch.as_tensor(label, dtype=torch.long).to(device)
        y = y.expand(z.shape[0]) if y.ndim == 0 else y
    options = _options(truncation_psi, None)
    with evaluation_mode(model):
        if y is not None:       # a conditional model: labels, no noise
            return model.decode(z.to(device), y, **options).cpu()
        return model.decode(z.to(device), noise_mode=noise_mode, **options).cpu()


def sample_images(model, n: int, *, labels=None, seed: int = 0, batch_size: int = DECODE_BATCH,
                  truncation_psi: float = 1.0, noise_mode: str = "const") -> torch.Tensor:
    """``n`` samples of ``model``, on the CPU: (n, C, H, W) in ``model.data_range``.

    All n codes are drawn first, ``z = torch.randn(n, z_dim, generator=Generator().manual_seed(seed))``,
    then decoded in batches, so the images do not depend on ``batch_size``:
    ``model.decode(z, labels, truncation_psi=..., noise_mode=...)``. A conditional model
    (``model.conditional``, the CVAE) needs ``labels`` ((n,) ints); the StyleGAN-VAE takes none.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}.")
    if model.conditional:
        if labels is None:
            raise ValueError("A class-conditional model needs labels: one per sample.")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.numel() != n:
            raise ValueError(f"Got {labels.numel()} labels for {n} samples.")
    z = prior_codes(n, model.z_dim, seed=seed)
    device, out = model_device(model), []
    with evaluation_mode(model):
        for start in range(0, n, batch_size):
            chunk = z[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device) if labels is not None else None
            out.append(model.decode(chunk, y, noise_mode=noise_mode, truncation_psi=truncation_psi).cpu())
    return torch.cat(out)


def class_samples(model, n_per_class: int = 1, *, num_classes: int | None = None, seed: int = 0,
                  truncation_psi: float = 1.0, noise_mode: str | None = None) -> torch.Tensor:
    """``model.sample`` for ``n_per_class`` samples of each class 0 .. num_classes - 1 (default
    ``model.num_classes``), class by class, from one generator seeded with ``seed``: (C n, C', H, W)
    on the CPU. A class-conditional model (an unconditional one refuses the labels)."""
    num_classes = num_classes if num_classes is not None else model.num_classes
    y = class_labels(num_classes, n_per_class, model_device(model))
    with evaluation_mode(model):
        return model.sample(len(y), y, generator=torch.Generator().manual_seed(seed),
                            **_options(truncation_psi, noise_mode)).cpu()


def sample_grid(model, n: int, *, seed: int = 0, truncation_psi: float = 1.0,
                noise_mode: str | None = "const") -> tuple[torch.Tensor, int]:
    """Samples for a grid with ``n`` columns, and n: a row of n per class for a conditional model
    (:func:`class_samples`), else n x n samples, ``model.sample(n * n, generator=<seed>, ...)``."""
    if model.conditional:
        images = class_samples(model, n, seed=seed, truncation_psi=truncation_psi, noise_mode=noise_mode)
    else:
        with evaluation_mode(model):
            images = model.sample(n * n, generator=torch.Generator().manual_seed(seed),
                                  **_options(truncation_psi, noise_mode)).cpu()
    return images, n


def _options(truncation_psi: float, noise_mode: str | None) -> dict:
    """The keywords that differ from the interface's defaults (so a minimal model need not take them)."""
    options = {"truncation_psi": truncation_psi} if truncation_psi != 1 else {}
    if noise_mode is not None:
        options["noise_mode"] = noise_mode
    return options


__all__ = ["DECODE_BATCH", "class_labels", "class_samples", "decode_latents", "prior_codes", "sample_grid",
           "sample_images"]
