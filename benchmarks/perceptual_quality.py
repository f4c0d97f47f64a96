"""Does a perceptual term change what the quick StyleGAN-VAE reconstructs? Issue 12's measures, over seeds.

For each seed, three runs of ``stylevae-quick`` (32 px shapes, 6 epochs of 625 steps; the calibrated
pixel term):

* ``mse``: the preset itself, no perceptual term;
* ``judge``: a perceptual term on the features of a shapes judge the course trains itself (seed 1, not
  the judge that measures below), switched on at epoch 4 (``configs.perceptual_variant``);
* ``vgg19-random``: the same with random VGG19 features (relu1_2, relu2_2), what the card's loss
  becomes on a machine without the ImageNet weights.

The variants branch from the preset's copy after epoch 4 (``train_or_load(branch_from=...)``), so the
three runs of a seed share their first four epochs exactly and differ only by the term. Measured on the
preset's 512 held-out shapes (``metrics.reconstruction_scores``): PSNR, SSIM, the edge ratio (RMS image
gradient against the real images'), and the evaluation judge's read-back of each factor.

    python benchmarks/perceptual_quality.py --seeds 0 1 2      # -> benchmarks/results/perceptual_quality.json
    python benchmarks/perceptual_quality.py --variants mse vgg19-imagenet   # with vgg19-dcbb9e9d.pth in the hub cache

Runs are cached under runs/ (train_or_load); a second call only measures. ``--threads`` per process
(default 1: run two seeds side by side on two cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from vae_lib.configs import PERCEPTUAL_SWITCH_EPOCH, get_config, perceptual_variant
from vae_lib.experiments import build_data, train_or_load
from vae_lib.judges import judge_settings, train_or_load_judge
from vae_lib.metrics import reconstruction_scores

RESULTS = Path(__file__).parent / "results" / "perceptual_quality.json"
VARIANTS = ("mse", "judge", "vgg19-random", "vgg19-imagenet")   # the last needs the ImageNet file (not offline)
DEFAULT_VARIANTS = VARIANTS[:3]
FACTORS = ("shape", "texture", "object_hue", "position_x", "position_y", "scale")


def configs_for(seed: int, preset: str = "quick"):
    base = get_config("stylevae", preset=preset, **{"train.seed": seed})
    return base, {"mse": base, **{name: perceptual_variant(base, name) for name in VARIANTS[1:]}}


def measure(seed: int, variants, judge) -> list[dict]:
    base, configs = configs_for(seed)
    test = build_data(base, "test", verbose=False)
    rows = []
    for name in variants:
        config = configs[name]
        load = os.getloadavg()[0]
        switch = config.loss_kwargs.get("perceptual_from_epoch", 0) if name != "mse" else 0
        model, history, info = train_or_load(config, branch_from=base if name != "mse" else None,
                                             branch_epoch=switch if name != "mse" else None, verbose=False)
        after = [e["time_s"] for e in history["epochs"][PERCEPTUAL_SWITCH_EPOCH:]]
        scores = reconstruction_scores(model, test, judge)
        rows.append({"seed": seed, "variant": name, "run": Path(info["run_dir"]).name, "status": info["status"],
                     "seconds_after_switch": round(sum(after), 1), "load_avg": [load, os.getloadavg()[0]],
                     "psnr_db": round(scores["psnr_db"], 3), "ssim": round(scores["ssim"], 4),
                     "edge_ratio": round(scores["edge_ratio"], 4),
                     "read_back": {f: round(scores["read_back"][f], 4) for f in FACTORS},
                     "final_val": {k: round(v, 3) for k, v in history["epochs"][-1].items()
                                   if k.startswith("val_") and isinstance(v, float)}})
        print(json.dumps(rows[-1]))
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean and sample standard deviation over seeds of every measure, per variant; and each variant's
    paired difference from ``mse`` of the same seed (the seeds share everything up to the switch)."""
    out = {}
    by = {(r["variant"], r["seed"]): r for r in rows}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        measures = {m: [r[m] for r in mine] for m in ("psnr_db", "ssim", "edge_ratio")}
        measures.update({f"read_back_{f}": [r["read_back"][f] for r in mine] for f in FACTORS})
        entry = {"seeds": [r["seed"] for r in mine]}
        for m, values in measures.items():
            entry[m] = {"mean": round(statistics.fmean(values), 4),
                        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else None}
            paired = [v - _value(by[("mse", r["seed"])], m) for v, r in zip(values, mine) if ("mse", r["seed"]) in by]
            if name != "mse" and paired:
                entry[m]["minus_mse"] = {"mean": round(statistics.fmean(paired), 4),
                                         "sd": round(statistics.stdev(paired), 4) if len(paired) > 1 else None}
        out[name] = entry
    return out


def _value(row: dict, measure: str) -> float:
    return row["read_back"][measure[len("read_back_"):]] if measure.startswith("read_back_") else row[measure]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    base, _ = configs_for(args.seeds[0])
    judge = train_or_load_judge(judge_settings("shapes", preset="quick",
                                               dataset_kwargs={"size": base.model_kwargs["input_size"]}),
                                verbose=False, progress=False)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows = [r for r in old.get("runs", []) if not (r["seed"] in args.seeds and r["variant"] in args.variants)]
    load_start = os.getloadavg()
    for seed in args.seeds:
        rows += measure(seed, args.variants, judge)
    rows.sort(key=lambda r: (r["seed"], VARIANTS.index(r["variant"])))
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "capability": torch.backends.cpu.get_cpu_capability(),
                    "threads_per_run": args.threads, "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"), "switch_epoch": PERCEPTUAL_SWITCH_EPOCH,
        "judge": {"evaluation": judge.settings, "test_accuracy": judge.test_accuracy},
        "variants": {name: config.loss_kwargs for name, config in configs_for(0)[1].items()
                     if any(r["variant"] == name for r in rows)},
        "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "wall_seconds_this_call": round(time.perf_counter() - start, 1),
        "summary": summary(rows), "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
