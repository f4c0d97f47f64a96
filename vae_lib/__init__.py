"""vae_lib: the library behind the VAE course.

Layers, top to bottom; a module imports only its own layer and those below it (``tests/test_layering.py``
reads every import and fails on one that points up)::

    cli, __main__, classroom,            the command line; teacher's and student's notebooks (nbgrader
      coursesite                         markup); the offline course site
    widgets, exercises                   ipywidgets explorers; checks of the notebooks' exercises
    viz/                                 every figure (grids, curves, latents, style, features, scores, data)
    experiments, evaluate, judges,       train_or_load and the model/loss registry; likelihood measures (ELBO,
      metrics, factor_decoder            IWAE, bits/dim, active units); judge classifiers; sample scores (FID,
                                         conditional accuracy, factor transfer, mixing influence); the StyleGAN
                                         decoder trained alone on true factors
    train, fastpaths, distributed, ema   one Trainer for every model; speed options; several processes; weight EMA
    configs, schedules, losses,          config dataclasses and presets; beta and lr schedules; likelihoods, KL,
      perceptual                         the model losses; perceptual distances (VGG19 ImageNet or random, the
                                         judge's features)
    models/ (cvae, stylegan_vae,         tensors in, tensors out; sampling: codes from the prior, decoding
      sampling, classifier)              with truncation, samples per class; the judges' classifier network
    nn/ (blocks, style)                  building blocks
    data/, envcheck                      datasets as ImageData, the in-memory loader; the environment check
    utils, runtime, allocator,           the ground floor, which imports nothing of vae_lib: evaluation_mode,
      checks, runlock                    model_device, standard_normal, rescale, atomic_write; preset, device,
                                         seeds, paths; malloc tuning; argument checks; the run folder's lock

The names below are imported lazily so that ``import vae_lib`` stays fast.
"""
from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

_EXPORTS = {
    "CVAE": "vae_lib.models.cvae",
    "ConvolutionalVAE": "vae_lib.models.stylegan_vae",
    "load_dataset": "vae_lib.data",
    "InMemoryLoader": "vae_lib.data",
    "Trainer": "vae_lib.train",
    "train_or_load": "vae_lib.experiments",
    "get_config": "vae_lib.configs",
    "start": "vae_lib.runtime",
}

__all__ = sorted(_EXPORTS)

if not os.environ.get("VAE_LIB_NO_MALLOPT"):
    # Measured 28 % faster CPU training (see vae_lib/allocator.py); must run before big allocations.
    from vae_lib.allocator import tune_malloc as _tune_malloc
    _tune_malloc()


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vae_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
