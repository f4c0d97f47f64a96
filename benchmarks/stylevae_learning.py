"""What does a small style-based decoder learn, and how fast? Cheap experiments on 64-px `shapes`.

Each variant is the `stylevae-quick` preset's config with some keys overridden (``VARIANTS``), trained
for a fixed number of optimiser steps by the course's ``Trainer`` in one of three modes:

* ``overfit``: one batch of 32 training shapes, repeated, beta = 0 (no KL): can the architecture
  draw the shapes at all? (PSNR on that very batch)
* ``ae``: the whole training set, beta = 0: a plain autoencoder with this decoder;
* ``vae``: the whole training set with the variant's KL schedule.

Every ``--eval-every`` steps: PSNR (dB, images in [-1, 1], peak-to-peak 2) of the reconstructions
decode(mu) with constant noise on ``--n-test`` held-out shapes (the batch itself for ``overfit``),
against the mean-image floor, and the wall time. Results go to
``benchmarks/results/stylevae_learning.json`` (merged by variant and mode, so runs can be added one
at a time)::

    S="model_kwargs.max_channels=32 model_kwargs.input_size=32 dataset_kwargs.size=32 n_train=20000"
    python benchmarks/stylevae_learning.py --threads 1 --mode overfit --steps 400 --variants card recipe-flat-gain --set $S --tag /32px-20k
    python benchmarks/stylevae_learning.py --threads 1 --mode vae --steps 1500 --eval-every 500 --ema 10000 \
        --variants card recipe-flat-gain --set $S --tag /32px-20k
    python benchmarks/stylevae_learning.py --threads 1 --mode ae --steps 1500 --eval-every 500 --ema 10000 \
        --variants recipe-flat-gain --set $S --tag /32px-20k

The variants' names say what they add to ``RECIPE`` (calibrated decoder, 2 mapping layers, lr 2e-3, autocast auto):
``skip`` skip synthesis, ``flat`` the flattening encoder, ``gain`` the preserving mapping gain, ``mapped`` the
mapped 4x4 input, ``eqlr`` the equalized learning rate, ``wide`` channel_base 1024 with 64 channels at low
resolutions. ``benchmarks/README.md`` has the table of what was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from vae_lib.configs import apply_overrides, get_config
from vae_lib.data import InMemoryLoader
from vae_lib.evaluate import psnr
from vae_lib.experiments import build_data, build_loss, build_model
from vae_lib.runtime import seed_everything
from vae_lib.train import Trainer
from vae_lib.utils import evaluation_mode

RESULTS = Path(__file__).parent / "results" / "stylevae_learning.json"

# Overrides of the stylevae-quick preset, as it was before this benchmark ("card": the card's
# network and loss at CPU size).
BEFORE = {"model_kwargs.mapping_layers": 4, "model_kwargs.z_dim": 128, "train.lr": 1e-3,
          "loss_kwargs.mse_weight": 1.0, "train.autocast": None}
RECIPE = {"model_kwargs.mapping_layers": 2, "train.lr": 2e-3, "train.autocast": "auto",
          "loss_kwargs.reconstruction": "calibrated"}
VARIANTS = {
    "card": BEFORE,
    "card-mse50": {**BEFORE, "loss_kwargs.mse_weight": 50.0},
    "calibrated": {**BEFORE, "loss_kwargs.mse_weight": 1.0, "loss_kwargs.reconstruction": "calibrated"},
    "recipe": RECIPE,
    "recipe-skip": {**RECIPE, "model_kwargs.skip_rgb": True},
    "recipe-mapped": {**RECIPE, "model_kwargs.input_mode": "mapped"},
    "recipe-skip-mapped": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.input_mode": "mapped"},
    "recipe-skip-flat": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.encoder_pool": "flatten"},
    "recipe-skip-flat-mapped": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.encoder_pool": "flatten",
                                "model_kwargs.input_mode": "mapped"},
    "recipe-flat": {**RECIPE, "model_kwargs.encoder_pool": "flatten"},
    "recipe-skip-gain": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.mapping_gain": 1.387},
    "recipe-gain": {**RECIPE, "model_kwargs.mapping_gain": 1.387},
    "recipe-skip-flat-gain": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.encoder_pool": "flatten",
                              "model_kwargs.mapping_gain": 1.387},
    "recipe-flat-gain": {**RECIPE, "model_kwargs.encoder_pool": "flatten", "model_kwargs.mapping_gain": 1.387},
    "recipe-skip-flat-gain-wide": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.encoder_pool": "flatten",
                                   "model_kwargs.mapping_gain": 1.387, "model_kwargs.channel_base": 1024,
                                   "model_kwargs.max_channels": 64},
    "recipe-flat-gain-wide": {**RECIPE, "model_kwargs.encoder_pool": "flatten", "model_kwargs.mapping_gain": 1.387,
                              "model_kwargs.channel_base": 1024, "model_kwargs.max_channels": 64},
    "recipe-skip-eqlr": {**RECIPE, "model_kwargs.skip_rgb": True, "model_kwargs.equalized_lr": True,
                         "model_kwargs.mapping_lr_mul": 0.01},
}


def variant_config(name: str, mode: str, steps: int, common: dict | None = None):
    overrides = {**VARIANTS[name], **(common or {})}
    overrides["train.max_steps"] = steps
    overrides["train.epochs"] = 10_000
    if mode in ("overfit", "ae"):
        overrides["train.beta.kind"] = "constant"
        overrides["train.beta.beta"] = 0.0
    return apply_overrides(get_config("stylevae-quick"), overrides)


def reconstruction_psnr(model, images: torch.Tensor) -> float:
    with evaluation_mode(model):
        return psnr(model.reconstruct(images).float(), images, (-1.0, 1.0)).mean().item()


def run(name: str, mode: str, steps: int, eval_every: int, n_test: int, common: dict | None = None,
        images_dir: Path | None = None, ema_half_life: float | None = None) -> dict:
    if ema_half_life:  # the Trainer keeps the average; the raw weights are scored beside it
        common = {**(common or {}), "train.ema_half_life_images": ema_half_life}
    config = variant_config(name, mode, steps, common)
    seed_everything(config.train.seed)
    model = build_model(config)
    train = build_data(config, "train", verbose=False)
    if mode == "overfit":
        batch = train.images[:32]
        loader = InMemoryLoader(batch, train.labels[:32], batch_size=32, shuffle=False)
        held_out = batch
    else:
        loader = train.loader(batch_size=config.train.batch_size, shuffle=True, seed=config.train.seed)
        held_out = build_data(apply_overrides(config, {"n_test": n_test}), "test", verbose=False).images
    floor = psnr(held_out.mean(0, keepdim=True).expand_as(held_out), held_out, (-1.0, 1.0)).mean().item()
    trainer = Trainer(model, build_loss(config), config.train, progress=False)
    ema = trainer.ema
    curve, seconds = [], 0.0
    while trainer.step < steps:
        target = min(steps, trainer.step + eval_every)
        trainer.config.max_steps = target
        start = time.perf_counter()
        trainer.fit(loader)
        seconds += time.perf_counter() - start
        last = trainer.history["steps"][-1]
        point = {"step": trainer.step, "seconds": round(seconds, 1),
                 "psnr_db": round(reconstruction_psnr(model, held_out), 2),
                 "kl": round(last["kl"], 2), **({"sigma": round(last["sigma"], 4)} if "sigma" in last else {})}
        if ema is not None:
            point["ema_psnr_db"] = round(reconstruction_psnr(ema.module, held_out), 2)
        curve.append(point)
        print(f"{name:>20} {mode:>7} step {point['step']:5d}  {point['seconds']:7.1f} s  PSNR {point['psnr_db']:6.2f} dB"
              f"  (mean image {floor:.2f})  kl {point['kl']:.1f}"
              + (f"  EMA {point['ema_psnr_db']:.2f} dB" if ema is not None else ""), flush=True)
    if images_dir is not None:
        import torchvision.utils as vutils

        images_dir.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            model.eval()
            shown = held_out[:8]
            recon = model.reconstruct(shown).float()
            samples = model.decode(torch.randn(8, model.z_dim, generator=torch.Generator().manual_seed(0)),
                                   noise_mode="const").float()
        grid = torch.cat([shown, recon, samples]) * 0.5 + 0.5
        vutils.save_image(grid, images_dir / f"{name}-{mode}-{steps}.png", nrow=8, padding=1)
    return {"variant": name, "mode": mode, "overrides": {**VARIANTS[name], **(common or {})}, "steps": steps,
            "threads": torch.get_num_threads(),
            "batch_size": config.train.batch_size, "mean_image_psnr_db": round(floor, 2), "curve": curve,
            "img_per_s": round(steps * config.train.batch_size / seconds, 1), "load_avg_start": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("overfit", "ae", "vae"), default="vae")
    parser.add_argument("--variants", nargs="+", default=["card", "recipe"], choices=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=512)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON",
                        help="overrides for every variant, e.g. model_kwargs.max_channels=32")
    parser.add_argument("--tag", default="", help="appended to the result's key")
    parser.add_argument("--images", type=Path, default=None,
                        help="a folder for a PNG per run: 8 test images, their reconstructions, 8 samples")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ema", type=float, default=None, metavar="IMAGES",
                        help="also keep an EMA of the weights with this half-life (ramp-up 0.05) and score it")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}
    for name in args.variants:
        record = run(name, args.mode, args.steps, args.eval_every, args.n_test, common, args.images, args.ema)
        results = json.loads(args.out.read_text()) if args.out.exists() else results
        results["runs"][f"{name}/{args.mode}{args.tag}"] = record
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
