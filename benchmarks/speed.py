"""Training and sampling speed of the course's models: the fp32 NCHW baseline next to each fast path.

    python benchmarks/speed.py            # the full run; writes benchmarks/results/speed.json
    python benchmarks/speed.py --quick    # a short run that checks the script (numbers too noisy to keep)

What runs: for each model (the card-1 CVAE at batch 128; the StyleGAN-VAE's CPU preset at batch 32;
the StyleGAN card's 128-px model at batch 2, per image), one worker process per path:

    fp32-nchw-malloc   the plain loop: fp32, NCHW, glibc's default allocator (VAE_LIB_NO_MALLOPT=1)
    fp32-nchw          + vae_lib's allocator tuning (vae_lib/allocator.py)
    channels_last      + channels_last memory format
    bf16 ...           + autocast to bfloat16 (with and without channels_last)
    compile ...        + torch.compile of the loss and model

Each worker builds the model and its ``Trainer`` with those ``TrainConfig`` options, runs
``--warmup`` steps, then waits. The workers take turns: every round, each runs ``--steps``
timed training steps (``Trainer.train_step`` on a fixed batch) and ``--steps`` timed sampling
calls (decode z ~ N(0, I), no grad), the order rotated each round, so all paths see the same
load on a shared machine. Reported: images/s from the median step time over all rounds, the
25-75 % range, and the worker's peak resident memory (the whole process: torch itself is about
``base_rss_mib``). Separate processes are needed because the allocator setting and peak RSS are
process-wide; ratios between paths are what this measures, so the load average is recorded too.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "speed.json"

# name -> (TrainConfig speed options, environment of the worker)
PATHS = {
    "fp32-nchw-malloc": ({"channels_last": False}, {"VAE_LIB_NO_MALLOPT": "1"}),
    "fp32-nchw": ({"channels_last": False}, {}),
    "channels_last": ({"channels_last": True}, {}),
    "bf16": ({"channels_last": False, "autocast": "bf16"}, {}),
    "channels_last+bf16": ({"channels_last": True, "autocast": "bf16"}, {}),
    "compile": ({"channels_last": False, "compile": True}, {}),
    "channels_last+compile": ({"channels_last": True, "compile": True}, {}),
}
BASELINE = "fp32-nchw-malloc"

# name -> (what it is, batch size, paths measured, default rounds, default steps per turn). The
# 128-px model takes seconds per image on a CPU, so it gets fewer paths and steps; torch.compile of
# the StyleGAN-VAE would take longer to compile than to measure here.
MODELS = {
    "cvae": ("card-1 CVAE, 1x28x28, z=16", 128, list(PATHS), 4, 6),
    "stylevae-quick": ("StyleGAN-VAE CPU preset: 32 px, 32 channels (encoder 64), z=128 in 8 chunks", 32,
                       ["fp32-nchw-malloc", "fp32-nchw", "channels_last", "bf16", "channels_last+bf16"], 4, 3),
    "stylevae-128": ("StyleGAN-VAE card: 128 px, 512 channels, z=512 (MSE + KL)", 2,
                     ["fp32-nchw-malloc", "fp32-nchw", "channels_last", "bf16", "channels_last+bf16"], 2, 2),
}


# ----------------------------------------------------------------------------------------- worker
def _build(model_name: str, batch_size: int, options: dict, threads: int, device: str):
    import torch

    from vae_lib.configs import BetaConfig, TrainConfig, get_config
    from vae_lib.experiments import build_loss, build_model
    from vae_lib.train import Trainer

    torch.manual_seed(0)
    if model_name == "cvae":
        config = get_config("cvae-full")
    elif model_name == "stylevae-quick":
        config = get_config("stylevae-quick")
    else:
        # The card's model; the VGG19 term (from epoch 20 on) is left out: its weights are a download.
        config = get_config("stylevae-full", **{"loss_kwargs.perceptual_weight": 0.0, "loss_kwargs.vgg_weights": None})
    model, loss = build_model(config), build_loss(config)
    train = TrainConfig(device=device, num_threads=threads, beta=BetaConfig("constant", 1.0),
                        lr=config.train.lr, batch_size=batch_size, **options)
    trainer = Trainer(model, loss, train, progress=False)
    g = torch.Generator().manual_seed(0)
    if model_name == "cvae":
        batch = (torch.rand(batch_size, 1, 28, 28, generator=g),
                 torch.randint(0, 10, (batch_size,), generator=g))
        decode = model.decode
        latent = lambda: (torch.randn(batch_size, model.z_dim, device=trainer.device), batch[1].to(trainer.device))  # noqa: E731
    else:
        size = model.input_size
        batch = (torch.rand(batch_size, 3, size, size, generator=g) * 2 - 1,)
        decode = model.decode
        latent = lambda: (torch.randn(batch_size, model.z_dim, device=trainer.device),)  # noqa: E731
    if options.get("compile"):
        decode = torch.compile(decode)
    return trainer, batch, decode, latent


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(model_name: str, path: str, batch_size: int, threads: int, device: str, warmup: int) -> None:
    import torch

    from vae_lib.fastpaths import autocast

    options = PATHS[path][0]
    trainer, batch, decode, latent = _build(model_name, batch_size, options, threads, device)
    base_rss = _rss_mib()
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    def train_steps(n):
        trainer.model.train()
        times = []
        for _ in range(n):
            start = time.perf_counter()
            trainer.train_step(batch)
            sync()
            times.append(time.perf_counter() - start)
        return times

    def sample_steps(n):
        trainer.model.eval()
        times = []
        with torch.no_grad(), autocast(trainer.device, options.get("autocast")):
            for _ in range(n):
                start = time.perf_counter()
                decode(*latent())
                sync()
                times.append(time.perf_counter() - start)
        return times

    start = time.perf_counter()
    try:
        train_steps(warmup)
        sample_steps(warmup)
    except RuntimeError as error:  # a path this model does not support: reported in the table
        say({"error": f"{type(error).__name__}: {error}".splitlines()[0]})
        return
    say({"ready": True, "warmup_s": time.perf_counter() - start, "threads": torch.get_num_threads(),
         "channels_last": trainer.channels_last, "base_rss_mib": base_rss,
         "malloc_tuned": _malloc_tuned()})
    for line in sys.stdin:
        command, *count = line.split()
        if command == "train":
            say({"times": train_steps(int(count[0]))})
        elif command == "sample":
            say({"times": sample_steps(int(count[0]))})
        elif command == "memory":
            peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            if trainer.device.type == "cuda":
                peak["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
            say(peak)
            return


def _malloc_tuned() -> bool:
    from vae_lib import allocator

    return bool(allocator.applied())


def say(message: dict) -> None:
    print(json.dumps(message), flush=True)


# ------------------------------------------------------------------------------------ coordinator
class Worker:
    def __init__(self, model_name: str, path: str, args):
        env = dict(os.environ, **PATHS[path][1], PYTHONWARNINGS="ignore")
        batch = args.batch.get(model_name, MODELS[model_name][1])
        cmd = [sys.executable, __file__, "--worker", model_name, path, "--threads", str(args.threads),
               "--device", args.device, "--warmup", str(args.warmup), "--batch-size", str(batch)]
        self.name, self.batch = path, batch
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info: dict = {}
        self.times = {"train": [], "sample": []}

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit code {self.proc.wait()}); see its stderr above")
        return json.loads(line)


def _summary(times: list[float], batch: int) -> dict:
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return {"images_per_s": batch / median, "images_per_s_p25_p75": [batch / q3, batch / q1],
            "median_step_s": median, "steps": len(times)}


def run_model(model_name: str, args) -> dict:
    paths = [p for p in MODELS[model_name][2] if p in args.paths]
    print(f"\n== {model_name}: {MODELS[model_name][0]}; paths: {', '.join(paths)}", flush=True)
    # Start the workers one after the other: warm-ups (compilation) then do not compete.
    workers, failed = [], {}
    for path in paths:
        w = Worker(model_name, path, args)
        try:
            w.info = w.read()
        except RuntimeError as error:  # the worker died while starting
            w.info = {"error": str(error)}
        if "error" in w.info:
            failed[path] = {"error": w.info["error"]}
            print(f"   {path}: FAILED: {w.info['error']}", flush=True)
            continue
        print(f"   {path}: ready after {w.info['warmup_s']:.0f} s", flush=True)
        workers.append(w)
    loads = []
    rounds, steps = args.rounds or MODELS[model_name][3], args.steps or MODELS[model_name][4]
    if args.quick:
        rounds, steps = min(rounds, 2), min(steps, 2)
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        turn = workers[r % len(workers):] + workers[:r % len(workers)]
        for kind in ("train", "sample"):
            for w in turn:
                w.times[kind] += w.ask(f"{kind} {steps}")["times"]
        print(f"   round {r + 1}/{rounds} done (load {loads[-1]:.1f})", flush=True)
    rows = {}
    for w in workers:
        memory = w.ask("memory")
        w.proc.wait()
        rows[w.name] = {"train": _summary(w.times["train"], w.batch), "sample": _summary(w.times["sample"], w.batch),
                        **memory, **{k: w.info[k] for k in ("base_rss_mib", "threads", "malloc_tuned",
                                                             "channels_last", "warmup_s")},
                        "raw_times_s": w.times}
    base = rows.get(BASELINE)
    for row in rows.values():
        for kind in ("train", "sample"):
            if base:
                row[kind]["speedup"] = row[kind]["images_per_s"] / base[kind]["images_per_s"]
    return {"description": MODELS[model_name][0], "batch_size": workers[0].batch,
            "load_average_during": loads, "paths": rows | failed}


def machine() -> dict:
    import torch

    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = Path("/proc/cpuinfo").read_text()
        cpu += " (avx512_bf16)" if "avx512_bf16" in flags else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "platform": platform.platform()}


def table(results: dict) -> str:
    lines = []
    for name, model in results["models"].items():
        lines.append(f"\n{name}: {model['description']}, batch {model['batch_size']}")
        lines.append(f"{'path':<24}{'train img/s':>12}{'x base':>8}{'sample img/s':>14}{'x base':>8}"
                     f"{'peak RSS MiB':>14}")
        for path, row in model["paths"].items():
            if "error" in row:
                lines.append(f"{path:<24}failed: {row['error'][:90]}")
                continue
            t, s = row["train"], row["sample"]
            lines.append(f"{path:<24}{t['images_per_s']:>12.1f}{t.get('speedup', float('nan')):>8.2f}"
                         f"{s['images_per_s']:>14.1f}{s.get('speedup', float('nan')):>8.2f}"
                         f"{row['peak_rss_mib']:>14.0f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps: check the script, not the numbers")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--rounds", type=int, default=None, help="turns per path (default: per model; quick <= 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per turn (default: per model; quick <= 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads in every worker")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=lambda s: dict((k, int(v)) for k, v in [s.split("=")]), default={},
                        help="override one model's batch size, e.g. --batch stylevae-128=1")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON file (default {DEFAULT_OUT}; quick: none)")
    parser.add_argument("--update", action="store_true",
                        help="keep the other models' results already in --out (re-measure some models only)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.worker:
        worker(*args.worker, batch_size=args.batch_size, threads=args.threads, device=args.device,
               warmup=args.warmup)
        return

    started = time.time()
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "load_average_start": os.getloadavg(), "settings": {k: v for k, v in vars(args).items()
                                                                   if k not in ("worker", "batch_size", "out")},
               "models": {}}
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if args.update and out is not None and out.exists():
        results["earlier_runs"] = json.loads(out.read_text())
        kept = results["earlier_runs"].pop("models")
        results["models"] = {k: v for k, v in kept.items() if k not in args.models}
    for name in args.models:
        results["models"][name] = run_model(name, args)
        results["load_average_end"] = os.getloadavg()
        results["wall_s"] = time.time() - started
        if out is not None:  # after each model, so that a long run keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    print(f"\nload average: start {results['load_average_start'][0]:.1f}, end {results['load_average_end'][0]:.1f} "
          f"({os.cpu_count()} cores); {results['wall_s']:.0f} s" + (f"; wrote {out}" if out else ""))


if __name__ == "__main__":
    main()
