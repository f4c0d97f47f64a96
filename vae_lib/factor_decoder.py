"""The StyleGAN-VAE's decoder trained alone, with each shape's true factors as its code.

Not a VAE (no encoder, no KL): the mapping and synthesis networks of ``stylevae-quick``, trained on the reference
run's data (upright shapes, 32 px) to draw each training image from a code that holds its true factors, one-hot
bins times ``CODE_SCALE`` (``factor_codes``): a code in which no two factors share a direction. What style mixing
gives when the code keeps the factors apart, for comparison with the VAE's own code (notebook 08, section 9;
``benchmarks/README.md``): the same network, the same data, only the code differs.

Training (``fit_steps``): MSE summed over pixels, AdamW with the preset's lr, weight decay and gradient clip,
cosine decay to 0 over the steps, random batches of the preset's size (seeded). The committed folder
``FACTOR_DECODER_DIR`` (``config.json`` and ``decoder.pt``, 0.7 MB) was trained by::

    python -m vae_lib.factor_decoder          # FACTOR_DECODER_STEPS = 3,000 steps, about 5 minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from vae_lib.configs import ExperimentConfig, TrainConfig, stylevae_reference_config
from vae_lib.data.shapes import FACTOR_BINS
from vae_lib.experiments import CONFIG_NAME, build_data, build_model
from vae_lib.runtime import seed_everything
from vae_lib.utils import atomic_write

FACTOR_DECODER_DIR = Path(__file__).resolve().parent.parent / "reference" / "stylevae-factor-decoder"
FACTOR_DECODER_STEPS = 3000
WEIGHTS_NAME = "decoder.pt"
CODE_SCALE = 3.0     # about the norm per entry of a N(0, I) code of the preset's size after PixelNorm
DECODER_PARTS = ("mapping", "synthesis")


def factor_codes(factors: dict[str, torch.Tensor], z_dim: int) -> torch.Tensor:
    """The true factors of N shapes as codes (N, z_dim): the one-hot bins of every factor of ``FACTOR_BINS``
    (in its order, 59 entries), times ``CODE_SCALE``, zero-padded to ``z_dim``."""
    parts = [torch.nn.functional.one_hot(torch.as_tensor(factors[name]), bins).float()
             for name, bins in FACTOR_BINS.items()]
    code = torch.cat(parts, 1) * CODE_SCALE
    if code.shape[1] > z_dim:
        raise ValueError(f"factor codes need z_dim >= {code.shape[1]} (one-hot factors), got {z_dim}.")
    return torch.cat([code, code.new_zeros(len(code), z_dim - code.shape[1])], 1)


def fit_steps(params: list, loss_of: Callable[[torch.Tensor], torch.Tensor], train: TrainConfig, steps: int,
              n_images: int, *, progress: bool = True) -> float:
    """``steps`` AdamW steps (``train``'s lr, weight decay and grad clip; cosine decay to 0) on ``loss_of(indices)``
    for random batches of ``train.batch_size`` indices in [0, n_images) (seeded by ``train.seed``); the seconds taken.
    The loop for a part of a model trained on its own (the Trainer trains whole VAEs)."""
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(train.seed)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc="training", unit="step", disable=not progress, mininterval=2.0):
        loss = loss_of(torch.randint(0, n_images, (train.batch_size,), generator=generator))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
        opt.step()
        schedule.step()
    return time.perf_counter() - start


def fit_decoder_to_factors(model, images: torch.Tensor, factors: dict[str, torch.Tensor], train: TrainConfig,
                           steps: int, *, progress: bool = True) -> float:
    """Train ``model``'s mapping and synthesis to draw ``images`` (N, 3, S, S) in [-1, 1] from ``factor_codes`` of
    ``factors``: ``fit_steps`` on the per-image sum of squared errors. The encoder is left as it is. Seconds taken."""
    codes = factor_codes(factors, model.z_dim)
    params = [p for name, p in model.named_parameters() if name.split(".")[0] in DECODER_PARTS]
    model.train()

    def loss_of(batch: torch.Tensor) -> torch.Tensor:
        return (model.decode(codes[batch]) - images[batch]).pow(2).sum((1, 2, 3)).mean()

    seconds = fit_steps(params, loss_of, train, steps, len(images), progress=progress)
    model.eval()
    return seconds


def train_factor_decoder(out: str | Path = FACTOR_DECODER_DIR, steps: int = FACTOR_DECODER_STEPS, *,
                         config: ExperimentConfig | None = None, progress: bool = True) -> Path:
    """Train the factor decoder of ``config`` (default: the reference run's, ``stylevae_reference_config()``) for
    ``steps`` and write ``config.json`` and ``decoder.pt`` (mapping and synthesis weights, steps, seconds) to ``out``."""
    config = stylevae_reference_config() if config is None else config
    seed_everything(config.train.seed)
    model = build_model(config)
    train = build_data(config, "train", verbose=progress)
    seconds = fit_decoder_to_factors(model, train.images, train.factors, config.train, steps, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(out / CONFIG_NAME, lambda tmp: tmp.write_text(text))
    weights = {part: getattr(model, part).state_dict() for part in DECODER_PARTS}
    atomic_write(out / WEIGHTS_NAME, lambda tmp: torch.save({"weights": weights, "steps": steps,
                                                             "seconds": round(seconds, 1),
                                                             "threads": torch.get_num_threads()}, tmp))
    return out


def load_factor_decoder(path: str | Path = FACTOR_DECODER_DIR, device: str | torch.device = "cpu"):
    """``(config, model, info)`` of a folder written by ``train_factor_decoder``: the model in eval mode, its encoder
    untrained (use ``factor_codes`` as codes, never ``encode``); ``info``: steps, seconds, threads."""
    path = Path(path)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).exists():
            raise FileNotFoundError(f"{path / name} is missing: train the factor decoder with "
                                    f"`python -m vae_lib.factor_decoder --out {path}`.")
    config = ExperimentConfig.read(path / CONFIG_NAME)
    saved = torch.load(path / WEIGHTS_NAME, map_location=device, weights_only=True)
    model = build_model(config).to(device)
    for part in DECODER_PARTS:
        getattr(model, part).load_state_dict(saved["weights"][part])
    model.eval()
    return config, model, {key: saved[key] for key in ("steps", "seconds", "threads")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the StyleGAN-VAE's decoder alone on the true factors of "
                                                 "upright shapes (vae_lib.factor_decoder).")
    parser.add_argument("--out", type=Path, default=FACTOR_DECODER_DIR)
    parser.add_argument("--steps", type=int, default=FACTOR_DECODER_STEPS)
    args = parser.parse_args(argv)
    out = train_factor_decoder(args.out, args.steps)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
