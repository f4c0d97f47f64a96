"""``train_or_load``: build data, model and loss from an ``ExperimentConfig``, then train, resume or reuse.

A run lives in ``runs_dir()/<name>-<hash>/`` (``config.json`` + ``checkpoint.pt``). The hash covers
the whole config, so a changed hyper-parameter gets a new directory and never reuses a stale model::

    model, history, info = train_or_load("cvae")            # the course preset ($VAE_COURSE_PRESET)
    model, history, info = train_or_load(get_config("cvae-quick", **{"train.epochs": 3}))

The model, loss and data modules are imported on first use, so this module imports quickly.
"""
from __future__ import annotations

import importlib
import inspect
import json
import time
from pathlib import Path

import torch

from vae_lib.configs import ExperimentConfig, get_config
from vae_lib.runtime import runs_dir, seed_everything
from vae_lib.train import Trainer
from vae_lib.utils import atomic_write

# config.model -> (module, class) of the model and of its loss.
MODELS = {"cvae": ("vae_lib.models.cvae", "CVAE"),
          "stylegan-vae": ("vae_lib.models.stylegan_vae", "ConvolutionalVAE")}
LOSSES = {"cvae": ("vae_lib.losses", "CVAELoss"),
          "stylegan-vae": ("vae_lib.losses", "StyleVAELoss")}
CONFIG_NAME = "config.json"


def _load(spec: tuple[str, str]):
    module, name = spec
    return getattr(importlib.import_module(module), name)


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """``CVAE(**model_kwargs)`` or ``ConvolutionalVAE(**model_kwargs)``, freshly initialised."""
    return _load(MODELS[config.model])(**config.model_kwargs)


def build_loss(config: ExperimentConfig):
    """``CVAELoss(**loss_kwargs)`` or ``StyleVAELoss(**loss_kwargs)``: a loss function for the Trainer."""
    return _load(LOSSES[config.model])(**config.loss_kwargs)


def data_range(config: ExperimentConfig) -> tuple[float, float]:
    """The pixel range the config's model expects: (0, 1) for a Bernoulli CVAE, else (-1, 1)."""
    if config.model == "cvae":
        cvae = importlib.import_module(MODELS["cvae"][0])
        default = inspect.signature(cvae.CVAE).parameters["likelihood"].default
        likelihood = config.model_kwargs.get("likelihood", default)
        if likelihood not in cvae.DATA_RANGES:
            raise ValueError(f"Unknown likelihood {likelihood!r}: choose one of {', '.join(cvae.DATA_RANGES)}")
        return cvae.DATA_RANGES[likelihood]
    return importlib.import_module(MODELS["stylegan-vae"][0]).DATA_RANGE


def build_data(config: ExperimentConfig, split: str = "train", *, verbose: bool = True):
    """``load_dataset(config.dataset, split, n=n_train|n_test, **dataset_kwargs)``, rescaled to ``data_range``.

    Returns an ``ImageData``. A split whose size is 0 in the config is a ValueError.
    """
    from vae_lib.data import load_dataset

    n = config.n_train if split == "train" else config.n_test
    if n == 0:
        raise ValueError(f"config {config.name!r} has n_{'train' if split == 'train' else 'test'}=0: no {split} data")
    data = load_dataset(config.dataset, split, n=n, verbose=verbose, **config.dataset_kwargs)
    target = data_range(config)
    if tuple(data.value_range) != tuple(target):
        data = data.rescaled(*target)
    return data


def train_or_load(config: ExperimentConfig | str, run_dir: str | Path | None = None, preset: str | None = None,
                  verbose: bool = True) -> tuple[torch.nn.Module, dict, dict]:
    """Return ``(model, history, info)`` for ``config``, training only what is not on disk yet.

    Args:
        config: an ``ExperimentConfig``, or a preset name for ``get_config`` ("cvae", "cvae-quick", ...).
        run_dir: where the run lives (default ``runs_dir()/<name>-<hash>``).
        preset: the course size for a family name ("smoke" | "quick" | "full"; default $VAE_COURSE_PRESET).
        verbose: print what happens and show progress bars.

    A finished checkpoint whose config matches is loaded without training; an unfinished one is
    resumed exactly where it stopped; otherwise training starts from scratch (seeded by
    ``config.train.seed``, on the device ``config.train.device`` picks). The model comes back in
    eval mode on that device. ``info`` has ``status`` ("loaded" | "resumed" | "trained"),
    ``run_dir``, ``config``, ``device``, ``epoch``, ``step`` and ``seconds`` (spent in this call).
    """
    if isinstance(config, str):
        config = get_config(config, preset=preset)
    elif preset is not None:
        raise ValueError("preset= goes with a config name such as 'cvae', not with an ExperimentConfig")
    start = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / config.run_name()
    _check_saved_config(run_dir, config)
    say = print if verbose else (lambda *args: None)

    seed_everything(config.train.seed)
    model = build_model(config)
    trainer = Trainer(model, build_loss(config), config.train, run_dir, progress=verbose)
    if trainer.checkpoint_path.exists():
        trainer.load_checkpoint()
        status = "loaded" if trainer.target_reached() else "resumed"
    else:
        status = "trained"

    if status == "loaded":
        say(f"loaded finished run from {run_dir} ({trainer.epoch} epochs, {trainer.step} steps)")
    else:
        say(f"resuming from epoch {trainer.epoch} (step {trainer.step}) in {run_dir}" if status == "resumed"
            else f"training from scratch in {run_dir}")
        _save_config(run_dir, config)
        loader = build_data(config, "train", verbose=verbose).loader(
            batch_size=config.train.batch_size, shuffle=True, device=trainer.device, seed=config.train.seed)
        val_loader = None
        if config.n_test != 0:
            val_loader = build_data(config, "test", verbose=verbose).loader(
                batch_size=config.train.batch_size, shuffle=False, device=trainer.device)
        trainer.fit(loader, val_loader=val_loader)
    model.eval()
    info = {"status": status, "run_dir": run_dir, "config": config, "device": trainer.device,
            "epoch": trainer.epoch, "step": trainer.step, "seconds": time.perf_counter() - start}
    return model, trainer.history, info


def _check_saved_config(run_dir: Path, config: ExperimentConfig) -> None:
    path = run_dir / CONFIG_NAME
    if path.exists() and ExperimentConfig.read(path).to_dict() != config.to_dict():
        raise ValueError(f"{run_dir} holds a run of a different config (see {path}); pass another run_dir "
                         "or delete that folder to start again")


def _save_config(run_dir: Path, config: ExperimentConfig) -> None:
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(run_dir / CONFIG_NAME, lambda tmp: tmp.write_text(text))
