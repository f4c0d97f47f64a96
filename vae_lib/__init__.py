"""vae_lib: the library behind the VAE course.

Layers (a module imports only those below it)::

    cli / widgets / viz / evaluate / exercises
    train, experiments            one Trainer for every model; train_or_load
    configs, losses, perceptual, schedules
    models (cvae, stylegan_vae)   tensors in, tensors out
    nn (blocks, style)
    data, runtime, checks, runlock

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
