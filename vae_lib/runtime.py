"""Run-time choices shared by notebooks, the Trainer and the CLI: preset, device, seed, paths.

The course has three size presets, read from ``$VAE_COURSE_PRESET``:

* ``smoke`` -- seconds per notebook; what CI runs (``make test``).
* ``quick`` -- minutes per notebook on a laptop CPU; pictures that show real results
  (the outputs committed with the notebooks).
* ``full``  -- the design cards' hyper-parameters; meant for a GPU.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

PRESETS = ("smoke", "quick", "full")
DEFAULT_PRESET = "quick"


def get_preset(preset: str | None = None) -> str:
    """Return the validated preset name: ``preset`` if given, else ``$VAE_COURSE_PRESET``, else 'quick'."""
    name = preset if preset is not None else os.environ.get("VAE_COURSE_PRESET", DEFAULT_PRESET)
    name = name.strip().lower()
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}: choose one of {', '.join(PRESETS)} "
                         "(set VAE_COURSE_PRESET or pass preset=...).")
    return name


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is passed to torch.device.

    A name torch does not know ('gpu'), or a device this machine does not have ('cuda' without a
    GPU, 'cuda:3' with two), is a ValueError that says which devices there are.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        picked = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps "
                         f"(here: {', '.join(available_devices())})") from None
    if picked.type == "cuda" and (not torch.cuda.is_available()
                                  or (picked.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device {str(device)!r} is not available on this machine (torch.cuda.is_available() is "
                         f"{torch.cuda.is_available()}, {torch.cuda.device_count()} GPU(s)); use one of "
                         f"{', '.join(available_devices())}")
    if picked.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device 'mps' is not available on this machine; use one of {', '.join(available_devices())}")
    return picked


def available_devices() -> list[str]:
    """The device names this machine can use: 'auto', 'cpu', then 'cuda', 'cuda:N' or 'mps'."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def repo_root() -> Path:
    """The checkout this package lives in (parent of ``vae_lib/``)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where datasets are cached: ``$VAE_DATA_DIR``, default ``<repo>/data``."""
    return Path(os.environ.get("VAE_DATA_DIR", repo_root() / "data")).expanduser()


def runs_dir() -> Path:
    """Where checkpoints of ``train_or_load`` live: ``$VAE_RUNS_DIR``, default ``<repo>/runs``."""
    return Path(os.environ.get("VAE_RUNS_DIR", repo_root() / "runs")).expanduser()


def start(preset: str | None = None, seed: int = 0, device: str = "auto", verbose: bool = True) -> dict:
    """The first code cell of every notebook: validate the preset, seed everything, pick the device.

    Returns a dict with ``preset``, ``seed``, ``device``, ``data_dir`` and ``runs_dir``; prints one line.
    """
    info = {
        "preset": get_preset(preset),
        "seed": seed,
        "device": pick_device(device),
        "data_dir": data_dir(),
        "runs_dir": runs_dir(),
    }
    seed_everything(seed)
    _inline_figures()
    if verbose:
        print(f"preset={info['preset']}  seed={seed}  device={info['device']}  "
              f"torch={torch.__version__}  threads={torch.get_num_threads()}")
    return info


def _inline_figures() -> None:
    """In a notebook, show the matplotlib Figures that vae_lib.viz returns (they are built without pyplot)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
        shell.run_line_magic("matplotlib", "inline")
