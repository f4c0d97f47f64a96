"""Quality benchmark of the ResNet CVAE: train the ``cvae-quick`` preset, score it on the test split.

Target (the course's issue): Fashion-MNIST (auto-digits falls back to it when MNIST is not here),
Bernoulli likelihood, z = 16, 10 epochs on the full train split: test -ELBO <= 240 nats per image.

    python benchmarks/cvae_quality.py                 # ~12 min on an idle 2-core CPU; writes the JSON
    python benchmarks/cvae_quality.py --preset smoke  # seconds: checks that the script runs
    python benchmarks/cvae_quality.py --threads 1     # on a CPU shared with other jobs

Training goes through ``train_or_load`` with the preset config, so the run lands in
``runs/cvae-quick-<hash>/`` and notebook 02 (quick preset) loads it instead of training again; a second
call of this script only re-evaluates. The test split is scored with ``evaluate_model`` (k = 100
importance samples): -ELBO, the IWAE bound on -log p(x|c), bits per dim, KL and active units.

Writes ``benchmarks/results/cvae_quality.json`` (``--out``): the metrics, wall times and images/s of
training (from the run's history, so they are those of the run that trained the model, validation
excluded) and of evaluation, the 1-minute load average sampled while this script ran (other jobs on
the machine slow both down), and the machine (CPU model, threads, torch version). Exits with status 1
when the quick preset misses the target.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

from vae_lib.configs import get_config
from vae_lib.evaluate import evaluate_model
from vae_lib.experiments import build_data, train_or_load

TARGET_NEG_ELBO = 240.0   # nats per image, quick preset
RESULTS = Path(__file__).resolve().parent / "results" / "cvae_quality.json"


class LoadSampler:
    """The 1-minute load average every ``period`` seconds, in a daemon thread (``with`` block)."""

    def __init__(self, period: float = 15.0):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.period):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        return {"mean": round(statistics.fmean(self.samples), 2), "max": round(max(self.samples), 2),
                "samples": len(self.samples), "period_s": self.period}


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor() or "unknown")
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def run(preset: str, k: int, batch_size: int) -> dict:
    config = get_config("cvae", preset=preset)
    with LoadSampler() as load:
        start = time.perf_counter()
        model, history, info = train_or_load(config)
        train_call_s = time.perf_counter() - start

        test = build_data(config, "test")     # the whole test split for quick and full (n_test=None)
        start = time.perf_counter()
        metrics = evaluate_model(model, test.loader(batch_size=batch_size, shuffle=False), k=k, seed=0)
        eval_s = time.perf_counter() - start

    epochs = history["epochs"]
    train_s = sum(e["time_s"] for e in epochs)
    n_train = len(build_data(config, "train", verbose=False))
    images_seen = n_train * len(epochs)
    return {
        "benchmark": "cvae_quality",
        "preset": preset,
        "run": info["run_dir"].name,  # for auto-digits the name covers the resolved data too
        "status": info["status"],
        "dataset": {"name": test.name, "source": test.source, "reason": test.reason,
                    "train_images": n_train, "test_images": metrics["num_images"]},
        "target_neg_elbo": TARGET_NEG_ELBO if preset == "quick" else None,
        "meets_target": bool(metrics["neg_elbo"] <= TARGET_NEG_ELBO) if preset == "quick" else None,
        "test": {
            "neg_elbo": round(metrics["neg_elbo"], 3),
            "iwae_nll": round(metrics["iwae_nll"], 3),
            "k": k,
            "nll": round(metrics["nll"], 3),
            "kl": round(metrics["kl"], 3),
            "bpd_elbo": round(metrics["bpd_elbo"], 5),
            "bpd_iwae": round(metrics["bpd_iwae"], 5),
            "active_units": metrics["active_units"],
            "z_dim": int(metrics["kl_per_dim"].numel()),
            "kl_per_dim": [round(v, 3) for v in metrics["kl_per_dim"].tolist()],
            "mse": round(metrics["mse"], 6),
        },
        "last_epoch_val_neg_elbo": round(-epochs[-1]["val_elbo"], 3) if "val_elbo" in epochs[-1] else None,
        "train": {
            "epochs": len(epochs), "steps": info["step"], "batch_size": config.train.batch_size,
            "wall_s": round(train_s, 1), "images_per_s": round(images_seen / train_s, 1),
            "epoch_s": [round(e["time_s"], 1) for e in epochs],
            "this_call_s": round(train_call_s, 1),
        },
        "evaluate": {"wall_s": round(eval_s, 1), "images_per_s": round(metrics["num_images"] / eval_s, 2),
                     "decoder_passes_per_s": round(metrics["num_images"] * k / eval_s, 1)},
        "load_average_1min": load.summary(),
        "machine": machine_info(),
        "config": config.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick", choices=("smoke", "quick", "full"))
    parser.add_argument("--k", type=int, default=100, help="importance samples of the IWAE bound")
    parser.add_argument("--batch-size", type=int, default=256, help="test images per evaluation batch")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for this process (default: torch's, one per core); 1 is "
                             "much faster when other jobs load the CPU. Not part of the run's config.")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the JSON goes (default: benchmarks/results/cvae_quality.json for the "
                             "quick preset, nowhere for the others)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = run(args.preset, args.k, args.batch_size)
    out = args.out if args.out is not None else (RESULTS if args.preset == "quick" else None)
    test, train, ev = result["test"], result["train"], result["evaluate"]
    print(f"\n{result['run']} ({result['status']}) on {result['dataset']['name']}, "
          f"{result['dataset']['test_images']} test images")
    print(f"  test -ELBO      {test['neg_elbo']:8.2f} nats   (target <= {TARGET_NEG_ELBO:g}: "
          f"{'met' if result['meets_target'] else 'MISSED' if result['meets_target'] is False else 'n/a'})")
    print(f"  IWAE NLL (k={test['k']}) {test['iwae_nll']:7.2f} nats")
    print(f"  bits/dim        {test['bpd_elbo']:8.4f} (ELBO)  {test['bpd_iwae']:.4f} (IWAE)")
    print(f"  KL              {test['kl']:8.2f} nats   active units {test['active_units']}/{test['z_dim']}")
    print(f"  training        {train['wall_s']:8.1f} s ({train['epochs']} epochs, "
          f"{train['images_per_s']:.0f} images/s)")
    print(f"  evaluation      {ev['wall_s']:8.1f} s ({ev['images_per_s']:.1f} images/s at k={test['k']})")
    print(f"  load average    mean {result['load_average_1min']['mean']}, max {result['load_average_1min']['max']} "
          f"on {result['machine']['cpu_count']} CPUs ({result['machine']['cpu_model']})")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return 1 if result["meets_target"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
