"""What does a small style-based decoder learn, and how fast? Cheap experiments on 64-px `shapes`.

Each variant is the `stylevae-quick` preset's config with some keys overridden (``VARIANTS``), trained
for a fixed number of optimiser steps by the course's ``Trainer`` in one of five modes:

* ``overfit``: one batch of 32 training shapes, repeated, beta = 0 (no KL): can the architecture
  draw the shapes at all? (PSNR on that very batch)
* ``ae``: the whole training set, beta = 0: a plain autoencoder with this decoder;
* ``vae``: the whole training set with the variant's KL schedule;
* ``decoder``: the decoder alone, given each image's true factors as its code (one-hot bins, x 3, zero-padded
  to z_dim) instead of an encoder's: can this decoder learn to draw what the data hold, in this many steps,
  when the code is perfect? (``vae_lib.factor_decoder``: MSE summed over pixels, AdamW with the preset's lr,
  weight decay, clip and a cosine decay, batch 32.) With ``--transfer`` also: how does it split the factors
  over its style layers when mixed (``metrics.factor_transfer`` of the true codes of test pairs)?
* ``encoder``: the encoder alone, taught the true factors (mu's first dimensions as one set of logits per
  factor, cross-entropy, the same optimiser): can it see what the data hold, in this many steps, when it is
  told what to look for? (accuracy per factor on the held-out shapes)

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

Issue 11's question, why no shape: each half alone, and the judge's read-back (``--read-back``)::

    python benchmarks/stylevae_learning.py --threads 1 --mode decoder --steps 1500 --read-back --variants preset --tag /rb-1500
    python benchmarks/stylevae_learning.py --threads 1 --mode encoder --steps 1500 --variants preset --tag /1500
    python benchmarks/stylevae_learning.py --threads 1 --mode vae --steps 1500 --eval-every 1500 --read-back \
        --variants preset --set 'dataset_kwargs.fixed_factors={"rotation":4}' --tag /upright-1500

An adversarial term beside the preset's loss (``--adversarial WEIGHT``, from step ``--adversarial-from``; not
an option of the course's loss: it did not help, ``benchmarks/README.md``)::

    python benchmarks/stylevae_learning.py --threads 1 --mode vae --steps 1500 --eval-every 1500 --read-back --probe \
        --variants preset --set 'dataset_kwargs.fixed_factors={"rotation":4}' --adversarial 0.8 --tag /upright-1500-adv0.8

(With ``lr_schedule="cosine"``, as the preset has, evaluate only at the end, ``--eval-every`` = ``--steps``: each
evaluation ends a ``Trainer.fit`` call, and the cosine spans the steps of one call.)

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
from vae_lib.data.shapes import FACTOR_BINS
from vae_lib.factor_decoder import factor_codes, fit_decoder_to_factors, fit_steps
from vae_lib.judges import judge_settings, train_or_load_judge
from vae_lib.judges import read_back as judge_read_back
from vae_lib.metrics import latent_probe, reconstructions
from vae_lib.runtime import seed_everything
from vae_lib.train import Trainer
from vae_lib.utils import evaluation_mode

RESULTS = Path(__file__).parent / "results" / "stylevae_learning.json"
PROBE_TRAIN = 4000     # training images the --probe classifiers are fitted on
READ_BACK = ("shape", "object_hue", "position_x", "position_y", "texture", "scale")

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
    # The preset as it is (every key from configs), and with one change: what moves the shape?
    "preset": {},
    "preset-mapped": {"model_kwargs.input_mode": "mapped"},
    "preset-wide": {"model_kwargs.channel_base": 1024, "model_kwargs.max_channels": 64},
    # Tried on issue 11 and removed from the model, since none moved the shape (commit 0c9573a has them; their
    # records stay in the JSON): "preset-fc256" (encoder_fc_width=256), "preset-structure" (a 4 x 4 x 4 spatial
    # structure code beside z, z_dim 192), "preset-narrow" (encoder_logvar_bias=-4: posteriors start narrow).
    # Likewise (commit 2c71864 has them): "preset-fourier" (input_mode="fourier": StyleGAN3's Fourier input, moved
    # by w_0, added at every resolution) and "preset-edge" (loss edge_weight=1: a calibrated loss on pixel differences).
    "preset-judge2": {"loss_kwargs.perceptual_weight": 2.0, "loss_kwargs.perceptual_from_epoch": 0,
                      "loss_kwargs.features": "judge", "loss_kwargs.judge_preset": "quick"},
    "preset-judge6": {"loss_kwargs.perceptual_weight": 6.0, "loss_kwargs.perceptual_from_epoch": 0,
                      "loss_kwargs.features": "judge", "loss_kwargs.judge_preset": "quick"},
    "preset-judge": {"loss_kwargs.perceptual_weight": 0.6, "loss_kwargs.perceptual_from_epoch": 0,
                     "loss_kwargs.features": "judge", "loss_kwargs.judge_preset": "quick"},
}


class Discriminator(torch.nn.Module):
    """A small image discriminator for ``AdversarialLoss``: conv 3x3 to ``width`` channels, then 4x4 stride-2
    convs (doubling the width up to 128) down to 4 x 4, LeakyReLU(0.2), a linear logit. (B, 3, S, S) -> (B,)."""

    def __init__(self, size: int, width: int = 32):
        super().__init__()
        layers, channels, resolution = [torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.LeakyReLU(0.2)], width, size
        while resolution > 4:
            layers += [torch.nn.Conv2d(channels, min(channels * 2, 128), 4, stride=2, padding=1),
                       torch.nn.LeakyReLU(0.2)]
            channels, resolution = min(channels * 2, 128), resolution // 2
        self.features = torch.nn.Sequential(*layers)
        self.out = torch.nn.Linear(channels * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).flatten(1)).squeeze(1)


class AdversarialLoss:
    """``base`` (the preset's loss, ``StyleVAELoss``) plus ``lam * softplus(-D(x_hat))`` (the non-saturating GAN loss
    of the reconstructions), the discriminator D updated inside each call, before the VAE's step, on real x against
    the detached x_hat (logistic loss + R1 penalty ``r1 / 2 * ||grad_x D(x)||^2``, Adam 2e-3, betas (0, 0.99)).
    ``lam`` is VQGAN's adaptive weight (Esser et al. 2021): ``weight * ||grad nll|| / ||grad adversarial||`` at the
    decoder's last layer (``synthesis.to_rgb``), so ``weight`` 1 gives the two terms equal gradients there. The
    term is off for the first ``start`` calls. For this benchmark only (D's state is not checkpointed)."""

    def __init__(self, base, weight: float, size: int, *, start: int = 0, r1: float = 0.1, lr: float = 2e-3):
        if getattr(base, "reconstruction", None) != "calibrated":
            raise ValueError("AdversarialLoss balances its term against the calibrated pixel NLL: "
                             "loss_kwargs.reconstruction must be 'calibrated'.")
        self.base, self.weight, self.start, self.r1 = base, weight, start, r1
        torch.manual_seed(1234)
        self.discriminator = Discriminator(size)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.0, 0.99))
        self.calls = 0

    def __call__(self, model, batch, *, beta: float, epoch: int = 0) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        outputs = []        # the base loss's forward pass, x_hat kept for the adversarial term
        hook = model.register_forward_hook(lambda module, args, output: outputs.append(output[0]))
        try:
            terms = self.base(model, batch, beta=beta, epoch=epoch)
        finally:
            hook.remove()
        x, x_hat = (batch[0] if isinstance(batch, (tuple, list)) else batch), outputs[0]
        self.calls += 1
        zero = torch.zeros(())
        g_loss, lam, d_loss = zero, zero, zero
        if self.calls > self.start:
            D = self.discriminator.requires_grad_(True)
            real = x.detach().requires_grad_(self.r1 > 0)
            d_real = D(real)
            d_loss = F.softplus(-d_real).mean() + F.softplus(D(x_hat.detach())).mean()
            if self.r1 > 0:
                grad, = torch.autograd.grad(d_real.sum(), real, create_graph=True)
                d_loss = d_loss + 0.5 * self.r1 * grad.pow(2).flatten(1).sum(1).mean()
            self.optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimizer.step()
            D.requires_grad_(False)
            g_loss = F.softplus(-D(x_hat)).mean()
            last = model.synthesis.to_rgb.weight
            grad_nll, = torch.autograd.grad(terms["nll"], last, retain_graph=True)
            grad_adv, = torch.autograd.grad(g_loss, last, retain_graph=True)
            lam = (grad_nll.norm() / (grad_adv.norm() + 1e-4)).clamp(0, 1e4).detach() * self.weight
        return {**terms, "loss": terms["loss"] + lam * g_loss, "g_loss": g_loss.detach(), "d_loss": d_loss.detach(),
                "lam": lam}


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


def evaluation_judge(config):
    """The course's shapes judge at the config's image size (cached after the first call)."""
    return train_or_load_judge(judge_settings("shapes", preset="quick",
                                              dataset_kwargs={"size": config.model_kwargs["input_size"]}),
                               verbose=False, progress=False)


def read_back_ratios(judge, images: torch.Tensor, held_out) -> dict[str, float]:
    """The judge's read-back ratio (accuracy on ``images``, reconstructions of ``held_out``, over accuracy on
    the real images) of each factor of ``READ_BACK``."""
    return {f: round(r["ratio"], 3) for f, r in judge_read_back(judge, images, held_out).items() if f in READ_BACK}


def transfer_of_codes(model, judge, z1: torch.Tensor, z2: torch.Tensor) -> dict:
    """``metrics.factor_transfer`` of the pairs (z1[i], z2[i]) by ``judge``: the best crossover's share with all five
    factors split as expected, the same without the stripes, and the stripes kept from source 2 by level, per k."""
    from vae_lib.metrics import best_crossover, factor_transfer

    n = len(z1)
    table = factor_transfer(model, judge, n=n, codes=(z1, z2))
    plain = factor_transfer(model, judge, n=n, codes=(z1, z2), fine=("object_hue",))
    def best(t):        # a decoder that draws one picture for every code has no informative pair
        if t[0]["pairs"] == 0:
            return {"best_crossover": None, "as_expected_at_best": None, "pairs": 0}
        k = best_crossover(t)
        return {"best_crossover": k, "as_expected_at_best": round(t[k]["as_expected"], 4), "pairs": t[k]["pairs"]}

    return {**best(table), "without_stripes": best(plain),
            "texture_from_source2_by_level": {
                k: {level: [round(share, 4), row["informative_by_level"]["texture"][level]]
                    for level, share in row["from_source2_by_level"]["texture"].items()} for k, row in table.items()}}


def run_decoder(name: str, steps: int, n_test: int, common: dict | None, read_back: bool,
                images_dir: Path | None, transfer: bool = False) -> dict:
    config = variant_config(name, "decoder", steps, common)
    seed_everything(config.train.seed)
    model = build_model(config)
    train = build_data(config, "train", verbose=False)
    test = build_data(apply_overrides(config, {"n_test": n_test}), "test", verbose=False)
    test_codes = factor_codes(test.factors, model.z_dim)
    seconds = fit_decoder_to_factors(model, train.images, train.factors, config.train, steps, progress=False)
    with evaluation_mode(model):
        recon = model.decode(test_codes, noise_mode="const").float()
    floor = psnr(test.images.mean(0, keepdim=True).expand_as(test.images), test.images, (-1.0, 1.0)).mean().item()
    point = {"step": steps, "seconds": round(seconds, 1),
             "psnr_db": round(psnr(recon, test.images, (-1.0, 1.0)).mean().item(), 2)}
    if read_back:
        point["read_back"] = read_back_ratios(evaluation_judge(config), recon, test)
    print(f"{name:>20} decoder step {steps:5d}  {seconds:7.1f} s  PSNR {point['psnr_db']:6.2f} dB"
          f"  (mean image {floor:.2f})" + (f"  read-back {point['read_back']}" if read_back else ""), flush=True)
    if transfer:
        # Style mixing of the true codes of test-image pairs, read by a judge of the run's own data.
        own = train_or_load_judge(judge_settings("shapes", preset="quick", dataset_kwargs=dict(config.dataset_kwargs)),
                                  verbose=False, progress=False)
        half = len(test_codes) // 2
        point["transfer"] = transfer_of_codes(model, own, test_codes[:half], test_codes[half:2 * half])
        print(f"{name:>20} mixing: {json.dumps({k: v for k, v in point['transfer'].items() if 'level' not in k})}",
              flush=True)
    if images_dir is not None:
        import torchvision.utils as vutils

        images_dir.mkdir(parents=True, exist_ok=True)
        vutils.save_image(torch.cat([test.images[:8], recon[:8]]) * 0.5 + 0.5,
                          images_dir / f"{name}-decoder-{steps}.png", nrow=8, padding=1)
    return {"variant": name, "mode": "decoder", "overrides": {**VARIANTS[name], **(common or {})}, "steps": steps,
            "threads": torch.get_num_threads(), "batch_size": config.train.batch_size,
            "mean_image_psnr_db": round(floor, 2), "curve": [point],
            "img_per_s": round(steps * config.train.batch_size / seconds, 1), "load_avg_start": os.getloadavg()[0]}


def run_encoder(name: str, steps: int, n_test: int, common: dict | None) -> dict:
    config = variant_config(name, "encoder", steps, common)
    seed_everything(config.train.seed)
    encoder = build_model(config).encoder
    train = build_data(config, "train", verbose=False)
    test = build_data(apply_overrides(config, {"n_test": n_test}), "test", verbose=False)
    bounds, start = {}, 0
    for factor, bins in FACTOR_BINS.items():
        bounds[factor], start = (start, start + bins), start + bins
    encoder.train()

    def loss_of(batch):
        logits = encoder(train.images[batch])[0]
        return sum(torch.nn.functional.cross_entropy(logits[:, a:b], train.factors[f][batch])
                   for f, (a, b) in bounds.items())

    seconds = fit_steps(list(encoder.parameters()), loss_of, config.train, steps, len(train.images), progress=False)
    encoder.eval()
    with torch.no_grad():
        logits = torch.cat([encoder(x)[0] for x in test.images.split(128)])
    accuracy = {f: round((logits[:, a:b].argmax(1) == test.factors[f]).float().mean().item(), 3)
                for f, (a, b) in bounds.items() if f in READ_BACK}
    print(f"{name:>20} encoder step {steps:5d}  {seconds:7.1f} s  accuracy {accuracy}", flush=True)
    return {"variant": name, "mode": "encoder", "overrides": {**VARIANTS[name], **(common or {})}, "steps": steps,
            "threads": torch.get_num_threads(), "batch_size": config.train.batch_size,
            "curve": [{"step": steps, "seconds": round(seconds, 1), "accuracy": accuracy}],
            "img_per_s": round(steps * config.train.batch_size / seconds, 1), "load_avg_start": os.getloadavg()[0]}


def run(name: str, mode: str, steps: int, eval_every: int, n_test: int, common: dict | None = None,
        images_dir: Path | None = None, ema_half_life: float | None = None, read_back: bool = False,
        probe: bool = False, adversarial: tuple[float, int] | None = None) -> dict:
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
        held_out_data = build_data(apply_overrides(config, {"n_test": n_test}), "test", verbose=False)
        held_out = held_out_data.images
    judge = None
    if read_back and mode != "overfit":
        judge = evaluation_judge(config)
    floor = psnr(held_out.mean(0, keepdim=True).expand_as(held_out), held_out, (-1.0, 1.0)).mean().item()
    loss = build_loss(config) if adversarial is None else AdversarialLoss(
        build_loss(config), adversarial[0], config.model_kwargs["input_size"], start=adversarial[1])
    trainer = Trainer(model, loss, config.train, progress=False)
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
        if judge is not None:
            scored = ema.module if ema is not None else model
            point["read_back"] = read_back_ratios(judge, reconstructions(scored, held_out_data), held_out_data)
        if probe and mode != "overfit":
            scored = ema.module if ema is not None else model
            probed = latent_probe(scored, build_data(apply_overrides(config, {"n_train": PROBE_TRAIN}), "train",
                                                     verbose=False), held_out_data, READ_BACK)
            point["probe"] = {f: round(r["accuracy"], 3) for f, r in probed.items()}
            print(f"{name:>20} linear probe of mu: {point['probe']}", flush=True)
        curve.append(point)
        print(f"{name:>20} {mode:>7} step {point['step']:5d}  {point['seconds']:7.1f} s  PSNR {point['psnr_db']:6.2f} dB"
              f"  (mean image {floor:.2f})  kl {point['kl']:.1f}"
              + (f"  EMA {point['ema_psnr_db']:.2f} dB" if ema is not None else "")
              + (f"  read-back {point['read_back']}" if judge is not None else ""), flush=True)
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
            **({"adversarial": {"weight": adversarial[0], "from_step": adversarial[1]}} if adversarial else {}),
            "batch_size": config.train.batch_size, "mean_image_psnr_db": round(floor, 2), "curve": curve,
            "img_per_s": round(steps * config.train.batch_size / seconds, 1), "load_avg_start": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("overfit", "ae", "vae", "decoder", "encoder"), default="vae")
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
    parser.add_argument("--read-back", action="store_true",
                        help="at each evaluation, the shapes judge's read-back ratio of shape, hue, position, texture "
                             "from the reconstructions (of the EMA weights when kept)")
    parser.add_argument("--probe", action="store_true",
                        help="at each evaluation, a linear probe per factor on the posterior means "
                             "(vae_lib.metrics.latent_probe): which factors the code holds")
    parser.add_argument("--ema", type=float, default=None, metavar="IMAGES",
                        help="also keep an EMA of the weights with this half-life (ramp-up 0.05) and score it")
    parser.add_argument("--transfer", action="store_true",
                        help="decoder mode: style mixing of the true codes of test pairs, read by a judge of the run's "
                             "own data (trained if not cached): best-k split with and without the stripes, stripes "
                             "by level")
    parser.add_argument("--adversarial", type=float, default=None, metavar="WEIGHT",
                        help="vae/ae modes: add AdversarialLoss's term with this adaptive weight")
    parser.add_argument("--adversarial-from", type=int, default=0, metavar="STEP",
                        help="the step from which the adversarial term is on")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    common = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__}
    for name in args.variants:
        if args.mode == "decoder":
            record = run_decoder(name, args.steps, args.n_test, common, args.read_back, args.images, args.transfer)
        elif args.mode == "encoder":
            record = run_encoder(name, args.steps, args.n_test, common)
        else:
            record = run(name, args.mode, args.steps, args.eval_every, args.n_test, common, args.images, args.ema,
                         args.read_back, args.probe,
                         None if args.adversarial is None else (args.adversarial, args.adversarial_from))
        results = json.loads(args.out.read_text()) if args.out.exists() else results
        results["runs"][f"{name}/{args.mode}{args.tag}"] = record
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
