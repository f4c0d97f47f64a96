"""Does the StyleGAN-VAE CPU preset work? Its training time and the measures of issue 11, in one JSON.

Trains (or loads, from ``runs/``) the course's quick StyleGAN-VAE with ``train_or_load``, then on the
preset's held-out test shapes:

* PSNR of the reconstructions decode(mu) (constant noise), against the mean image;
* the shapes judge's read-back: for each factor, its accuracy on the reconstructions over its
  accuracy on the real images (the judge is the course's, ``train_or_load_judge``);
* style mixing: ``metrics.factor_transfer`` for every crossover k, from the posterior means of
  test images and from prior samples; the best k and its "coarse from 1, fine from 2" share; for the
  encoded test images also the share of mixes that take source 2's stripes, by its stripe level, at every k;
* prior samples: the entropy of the judge's shape labels (nats; log 5 = 1.61 for the data), and the mean
  per-image standard deviation of their pixels (contrast; faint samples have less than the data);
* the same for samples of the fitted prior (``models.sampling.aggregate_posterior`` of the training set: the
  Gaussian with the mean and covariance of the codes the encoder gives), with its KL to N(0, I), beside the
  model's mean KL per training image and log N (the most that the code's information can account for);
* FID in the shapes judge's features (``metrics``' protocol, n = the test set) of both priors' samples, beside its
  yardsticks: real training images (the floor), the reconstructions, the test images blurred by one pixel.

    python benchmarks/stylevae_quality.py                 # -> benchmarks/results/stylevae_quality.json
    python benchmarks/stylevae_quality.py --config stylegan-vae-quick --set train.seed=1 --tag seed1
    python benchmarks/stylevae_quality.py --reference --tag reference   # the committed reference run, loaded
    python benchmarks/stylevae_quality.py --run-dir reference/stylevae-reference-perlayer --judge own \
        --test-images 2048 --pairs 1024 --tag ...       # a committed run, measured on 4x the pairs

``--judge own`` reads with a judge trained on the run's own data (upright shapes for the reference) instead of
the quick judge of shapes at 8 angles that every other record uses. ``--reference`` measures the committed run of
``experiments.REFERENCE_RUN_DIR`` (``configs.REFERENCE_COMMAND`` trained it: the quick model on upright shapes for
20,000 steps) instead of training; its test shapes are upright.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from vae_lib.configs import apply_overrides, get_config
from vae_lib.evaluate import psnr
from vae_lib.experiments import REFERENCE_RUN_DIR, build_data, load_trained, train_or_load
from vae_lib.judges import judge_settings, train_or_load_judge
from vae_lib.judges import read_back as judge_read_back
from vae_lib.metrics import (TRANSFER_COARSE, TRANSFER_FINE, best_crossover, factor_transfer, fid_yardsticks, judge_fid,
                             model_fid, reconstructions, split_summary)
from vae_lib.models.sampling import prior_mismatch, sample_images

RESULTS = Path(__file__).parent / "results" / "stylevae_quality.json"
READ_BACK = ("shape", "object_hue", "position_x", "position_y", "background_hue", "texture", "scale")


def entropy(labels: torch.Tensor, classes: int) -> float:
    p = torch.bincount(labels, minlength=classes).double() / len(labels)
    return -(p[p > 0] * p[p > 0].log()).sum().item()


def measure(config, *, pairs: int, samples: int, run_dir: Path | None = None, judge_kind: str = "quick",
            test_images: int | None = None, epoch: int | None = None) -> dict:
    """The measures of the module docstring for ``config``, trained or loaded by ``train_or_load``; with
    ``run_dir``, the finished run there, loaded (``experiments.load_trained``: never trained; its own config).
    ``test_images``: measure on that many held-out shapes instead of the config's ``n_test`` (more pairs for the
    mixing shares: their standard error is sqrt(p (1 - p) / pairs)). ``epoch``: with ``run_dir``, the copy the run
    kept after that epoch (``train.keep_checkpoints``)."""
    start = time.perf_counter()
    load_avg_start = os.getloadavg()[0]
    if run_dir is None:
        model, history, info = train_or_load(config)
    else:
        config, model, history = load_trained(run_dir, epoch=epoch)
        info = {"status": f"loaded from {run_dir.name}", "step": history["steps"][-1]["step"] + 1}
    train_seconds = sum(epoch["time_s"] for epoch in history["epochs"])
    test = build_data(config if test_images is None else apply_overrides(config, {"n_test": test_images}), "test",
                      verbose=False)
    recon = reconstructions(model, test)
    floor = psnr(test.images.mean(0, keepdim=True).expand_as(test.images), test.images, test.value_range)
    size = config.model_kwargs["input_size"]
    # The quick judge (shapes at 8 angles) for every run, so that runs compare; judge="own": one trained on the
    # run's own data (e.g. upright shapes for the reference), which reads those more accurately.
    judge_data = {"size": size} if judge_kind == "quick" else dict(config.dataset_kwargs)
    settings = judge_settings("shapes", preset="quick", dataset_kwargs=judge_data)
    judge = train_or_load_judge(settings, verbose=False, progress=False)
    real_pred = judge.predict(test.images, test.value_range)
    read_back = {f: {key: round(value, 4) for key, value in r.items()}
                 for f, r in judge_read_back(judge, recon, test).items() if f in READ_BACK}
    train = build_data(config, "train", verbose=False)
    mismatch = prior_mismatch(model, train)
    fitted = mismatch["fitted"]
    transfer = {}
    # The encoded test images' mixes also with the stripes left out of the fine factors (which factor keeps the
    # share low?): split_summary reads one set of mixes for both.
    encoded = split_summary(model, judge, pairs, sources=test.images, seed=0)
    tables = {"encoded test images": encoded["all"]["table"],
              "prior samples": factor_transfer(model, judge, n=pairs, seed=0),
              "fitted prior samples": factor_transfer(model, judge, n=pairs, seed=0, prior=fitted)}
    for name, table in tables.items():
        k = best_crossover(table)
        transfer[name] = {
            "best_crossover": k, "as_expected_at_best": round(table[k]["as_expected"], 4),
            "pairs": table[k]["pairs"],
            "as_expected": {k: round(row["as_expected"], 4) for k, row in table.items()},
            "coarse_from_source1": {k: round(row["coarse_from_source1"], 4) for k, row in table.items()},
            "fine_from_source2": {k: round(row["fine_from_source2"], 4) for k, row in table.items()},
            "from_source1_at_best": {f: round(v, 4) for f, v in table[k]["from_source1"].items()},
            "from_source2_at_best": {f: round(v, 4) for f, v in table[k]["from_source2"].items()},
            # Which layers draw each stripe level: the share of mixes with source 2's stripes, by that level.
            "texture_from_source2_by_level": {
                k: {level: [round(share, 4), row["informative_by_level"]["texture"][level]]
                    for level, share in row["from_source2_by_level"]["texture"].items()}
                for k, row in table.items()}}
    table = encoded["without"]["table"]
    k = best_crossover(table)
    transfer["encoded test images, fine = object hue only"] = {
        "best_crossover": k, "as_expected_at_best": round(table[k]["as_expected"], 4), "pairs": table[k]["pairs"],
        "as_expected": {k: round(row["as_expected"], 4) for k, row in table.items()}}
    prior = sample_images(model, samples, seed=0)          # the same draws, decoded as codes of each prior
    fitted_samples = sample_images(model, samples, seed=0, prior=fitted)
    shape_classes = judge.heads_spec["shape"]

    fid = {"real training images (the floor)": judge_fid(judge, test.images, train.images[:len(test)],
                                                         real_range=test.value_range, fake_range=train.value_range),
           **fid_yardsticks(model, judge, test, n=len(test), blur_sigmas=(1.0,)),
           "samples, z ~ N(0, I)": model_fid(model, judge, test)["fid"],
           "samples, z ~ fitted q(z)": model_fid(model, judge, test, prior=fitted)["fid"]}

    def contrast(images):
        return round(images.flatten(1).std(1).mean().item(), 4)

    return {
        "config": config.run_name(), "status": info["status"], "train_seconds": round(train_seconds, 1),
        "steps": info["step"], "seconds_per_step": round(train_seconds / max(info["step"], 1), 3),
        "threads": torch.get_num_threads(), "load_avg_start": load_avg_start, "load_avg_end": os.getloadavg()[0],
        # The arithmetic the last epoch ran in, as the run's history says (None: a run from before it said).
        "precision": history["epochs"][-1].get("precision") if history["epochs"] else None,
        "test_images": len(test),
        "psnr_db": round(psnr(recon, test.images, test.value_range).mean().item(), 2),
        "mean_image_psnr_db": round(floor.mean().item(), 2),
        "judge": {"kind": judge_kind, "file": settings.path().name, "dataset_kwargs": judge_data},
        "judge_test_accuracy": {f: round(v, 4) for f, v in judge.test_accuracy.items()},
        "read_back": read_back,
        "transfer_targets": {"coarse (from source 1)": list(TRANSFER_COARSE), "fine (from source 2)": list(TRANSFER_FINE)},
        "style_mixing": transfer,
        "prior_shape_entropy_nats": round(entropy(judge.predict(prior, model.data_range)["shape"], shape_classes), 4),
        "data_shape_entropy_nats": round(entropy(real_pred["shape"], shape_classes), 4),
        "fitted_prior_shape_entropy_nats": round(entropy(judge.predict(fitted_samples, model.data_range)["shape"],
                                                         shape_classes), 4),
        "contrast": {"test images": contrast(test.images), "prior samples": contrast(prior),
                     "fitted prior samples": contrast(fitted_samples)},
        "fid_judge_features": {name: round(value, 2) for name, value in fid.items()},
        "fid_n": len(test),
        "kl_per_training_image_nats": round(mismatch["kl_per_image"], 2),
        "log_training_images_nats": round(mismatch["log_n"], 2),
        "fitted_prior_kl_to_standard_nats": round(mismatch["fitted_kl"], 2),
        "max_shape_entropy_nats": round(math.log(shape_classes), 4),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="stylevae-quick")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON")
    parser.add_argument("--tag", default="default")
    parser.add_argument("--pairs", type=int, default=256, help="style-mixing pairs (2x as many test images)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--judge", choices=("quick", "own"), default="quick",
                        help="quick: the judge of 8-angle shapes (every run's, default); own: one trained on the "
                             "run's data")
    parser.add_argument("--test-images", type=int, default=None,
                        help="held-out shapes to measure on (default: the config's n_test; --pairs at most half)")
    parser.add_argument("--epoch", type=int, default=None,
                        help="with --run-dir: the copy the run kept after this epoch (train.keep_checkpoints)")
    parser.add_argument("--reference", action="store_true",
                        help="measure the committed reference run (experiments.REFERENCE_RUN_DIR) instead")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="measure the finished run in this folder instead "
                             "(e.g. reference/stylevae-reference-perlayer)")
    args = parser.parse_args()
    if args.epoch is not None and args.run_dir is None:
        parser.error("--epoch needs --run-dir (the run folder that kept the copy)")
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = apply_overrides(get_config(args.config), overrides) if overrides else get_config(args.config)
    record = measure(config, pairs=args.pairs, samples=args.samples,
                     run_dir=REFERENCE_RUN_DIR if args.reference else args.run_dir, judge_kind=args.judge,
                     test_images=args.test_images, epoch=args.epoch)
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "torch": torch.__version__}
    results["runs"][args.tag] = record
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
