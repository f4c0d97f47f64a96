"""Notebook 03's four KL schedules over several seeds: is the ranking of the runs larger than its noise?

For each seed, the four runs of ``configs.kl_schedule_configs`` (card 1's CVAE on the course preset's data,
notebook 03's budget: quick = 3 epochs of 157 steps on 20,000 Fashion-MNIST images): beta = 1 from the first
step, a linear warm-up over the first half, 4 cyclical ramps, beta = 4, and beta = 1 with free bits (0.25 nats per
dimension: the run of the notebook's question 2). Seed 0 is the notebook's own runs
(``train.seed``: initialisation and data order). Each run is scored as the notebook scores it
(``evaluate_model``, k = 1, the first 2,000 test images): test -ELBO, its reconstruction and KL parts (nats per
image), Burda et al.'s active units and the dimensions that carry more than 0.1 nats each ("used").

    python benchmarks/kl_schedules.py --seeds 0 1 2     # -> benchmarks/results/kl_schedules.json

Runs are cached under runs/ (``train_or_load``); a second call only scores them. A row's ``train_seconds`` is the
run's training time from its history (however the row was made), ``seconds`` the time of the call that made the row
(about 0 when the run was loaded) and ``load_avg`` the load average as that call began. The summary has, per schedule,
the mean and standard deviation over the seeds and the paired difference from ``beta=1`` (the runs of a seed
share their initialisation and data order, so the difference within a seed is the schedule's effect).
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

from vae_lib.configs import FREE_BITS_RUN, KL_SCHEDULES, kl_schedule_configs
from vae_lib.data import InMemoryLoader
from vae_lib.evaluate import evaluate_model
from vae_lib.experiments import build_data, train_or_load

RESULTS = Path(__file__).parent / "results" / "kl_schedules.json"
USED_NATS = 0.1          # a dimension "in use" carries more than this many nats on average
MEASURES = ("neg_elbo", "nll", "kl", "active_units", "used_dims")
VARIANTS = [*KL_SCHEDULES, FREE_BITS_RUN[0]]


def score_seed(seed: int, preset: str) -> list[dict]:
    configs = kl_schedule_configs(preset, seed=seed, free_bits=True)
    test = build_data(configs["beta=1"], "test", verbose=False)
    loader = InMemoryLoader(test.images, test.labels, batch_size=250, shuffle=False)
    rows = []
    for label, config in configs.items():
        load = os.getloadavg()[0]
        model, history, info = train_or_load(config, verbose=False)
        result = evaluate_model(model, loader, k=1, progress=False)
        rows.append({"seed": seed, "variant": label, "run": config.run_name(), "status": info["status"],
                     "seconds": round(float(info["seconds"]), 1), "load_avg": round(load, 2),
                     "train_seconds": round(sum(e["time_s"] for e in history["epochs"]), 1),
                     "neg_elbo": round(result["neg_elbo"], 3), "nll": round(result["nll"], 3),
                     "kl": round(result["kl"], 3), "active_units": int(result["active_units"]),
                     "used_dims": int((result["kl_per_dim"] > USED_NATS).sum()),
                     "kl_per_dim": [round(float(v), 4) for v in result["kl_per_dim"]]})
        print(f"seed {seed} {label:<15} {info['status']:>7} -ELBO {rows[-1]['neg_elbo']:8.2f}  "
              f"KL {rows[-1]['kl']:6.2f}  active {rows[-1]['active_units']:2d}  used {rows[-1]['used_dims']:2d}", flush=True)
    return rows


def summarise(runs: list[dict]) -> dict:
    """Per schedule: mean and sd over seeds of each measure, and the paired difference from beta=1."""
    summary = {}
    for label in VARIANTS:
        rows = {r["seed"]: r for r in runs if r["variant"] == label}
        if not rows:
            continue
        entry = {"seeds": sorted(rows)}
        for m in MEASURES:
            values = [rows[s][m] for s in sorted(rows)]
            entry[m] = {"mean": round(statistics.fmean(values), 3),
                        "sd": round(statistics.stdev(values), 3) if len(values) > 1 else None}
            if label != "beta=1":
                base = {r["seed"]: r[m] for r in runs if r["variant"] == "beta=1"}
                diffs = [rows[s][m] - base[s] for s in sorted(rows) if s in base]
                if diffs:
                    entry[m]["minus_beta1"] = {"mean": round(statistics.fmean(diffs), 3),
                                               "sd": round(statistics.stdev(diffs), 3) if len(diffs) > 1 else None}
        summary[label] = entry
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--preset", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    old = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    runs = [r for r in old.get("runs", []) if r["seed"] not in args.seeds or old.get("preset") != args.preset]
    for seed in args.seeds:
        runs += score_seed(seed, args.preset)
    runs.sort(key=lambda r: (r["seed"], VARIANTS.index(r["variant"])))
    result = {"date": time.strftime("%Y-%m-%d"), "preset": args.preset,
              "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                          "torch": torch.__version__},
              "used_nats": USED_NATS, "load_avg_start": round(load_start, 2), "load_avg_end": round(os.getloadavg()[0], 2),
              "wall_seconds_this_call": round(time.perf_counter() - start, 1),
              "summary": summarise(runs), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for label, entry in result["summary"].items():
        print(f"{label:<15} " + "  ".join(f"{m} {entry[m]['mean']:.2f} +- {entry[m]['sd'] or 0:.2f}" for m in MEASURES))


if __name__ == "__main__":
    main()
