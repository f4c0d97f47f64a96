"""Where the time of one card-1 CVAE training step goes: torch.profiler over ``Trainer.train_step``.

    python benchmarks/profile_step.py                       # fp32 NCHW and channels_last, 2 threads
    python benchmarks/profile_step.py --paths bf16 --steps 2  # add a path (bf16 is slow on CPUs without it)

For each path of ``benchmarks/speed.py`` named by ``--paths`` (its ``TrainConfig`` options), the card-1 CVAE
(``cvae-full``: 1x28x28, z 16, batch 128) takes ``--warmup`` untimed steps, then ``--steps`` steps under
``torch.profiler`` (CPU activities, no shapes or stacks: they slow the step). Reported per path: the mean wall time
per step, the operators with the largest self CPU time (ms per step and share of the step), grouped into the
families of issue 15 (convolution forward and backward, GroupNorm forward and backward, SiLU, upsampling, the
optimizer, the loss, everything else), and the step's achieved GFLOP/s (the model's forward FLOPs from
``torch.utils.flop_counter`` x 3 for forward + backward) against this CPU's measured fp32 matmul peak. Writes
``benchmarks/results/profile_step.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from speed import PATHS, _build  # noqa: E402  (the same model, batch and options as the speed table)

OUT = HERE / "results" / "profile_step.json"

# Operator name fragments -> family (first match wins; names as torch.profiler reports them on CPU).
FAMILIES = [
    ("convolution backward", ("convolution_backward", "conv2d_backward")),
    ("convolution forward", ("conv2d", "convolution", "mkldnn_convolution", "_convolution")),
    ("GroupNorm backward", ("native_group_norm_backward",)),
    ("GroupNorm forward", ("group_norm", "native_group_norm")),
    ("SiLU", ("silu",)),
    ("upsampling", ("upsample", "interpolate")),
    ("optimizer (AdamW)", ("_foreach_", "adamw", "_fused_adam", "lerp", "addcdiv", "addcmul")),
    ("linear / matmul", ("addmm", "mm", "linear", "matmul", "bmm")),
    ("loss (BCE, KL)", ("binary_cross_entropy", "log_sigmoid", "softplus", "exp", "sum", "mean")),
]


def family_of(name: str) -> str:
    lowered = name.lower()
    for family, fragments in FAMILIES:
        if any(fragment in lowered for fragment in fragments):
            return family
    return "other (elementwise, copies, autograd)"


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 10) -> float:
    """fp32 GFLOP/s of an n x n matmul on this CPU with ``threads`` threads: the yardstick for the step."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def forward_flops(trainer, batch) -> int:
    x, y = (t.to(trainer.device) for t in batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        trainer.model(x, y)
    return counter.get_total_flops()


def profile_path(path: str, threads: int, warmup: int, steps: int, top: int) -> dict:
    options = PATHS[path][0]
    trainer, batch, _, _ = _build("cvae", 128, options, threads, "cpu")
    trainer.model.train()
    for _ in range(warmup):
        trainer.train_step(batch)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(batch)
    step_ms = (time.perf_counter() - start) / steps * 1e3
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_self_us = sum(e.self_cpu_time_total for e in events)
    families = defaultdict(float)
    for e in events:
        families[family_of(e.key)] += e.self_cpu_time_total
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    flops = 3 * forward_flops(trainer, batch)
    return {
        "path": path, "options": options, "threads": threads, "steps": steps,
        "step_ms": round(step_ms, 1), "img_per_s": round(128 / step_ms * 1e3, 1),
        "profiled_self_ms_per_step": round(total_self_us / steps / 1e3, 1),
        "families_ms_per_step": {k: round(v / steps / 1e3, 1) for k, v in sorted(families.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / steps / 1e3, 2),
                     "share": round(e.self_cpu_time_total / total_self_us, 3), "calls_per_step": e.count // steps}
                    for e in ops],
        "train_gflop_per_step": round(flops / 1e9, 1),
        "achieved_gflops": round(flops / (step_ms / 1e3) / 1e9, 1),
    }


def table(record: dict) -> str:
    paths = list(record["paths"])
    families = list(record["paths"][paths[0]]["families_ms_per_step"])
    lines = ["| ms per step (self CPU time) | " + " | ".join(paths) + " |", "|---|" + "---:|" * len(paths)]
    for family in families:
        lines.append(f"| {family} | " + " | ".join(
            f"{record['paths'][p]['families_ms_per_step'].get(family, 0):.1f}" for p in paths) + " |")
    for key, label in (("step_ms", "wall time per step (ms)"), ("img_per_s", "images/s"),
                       ("achieved_gflops", f"achieved GFLOP/s (matmul peak {record['matmul_peak_gflops']:.0f})")):
        lines.append(f"| {label} | " + " | ".join(f"{record['paths'][p][key]}" for p in paths) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paths", nargs="+", default=["fp32-nchw", "channels_last"], choices=sorted(PATHS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    record = {"machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                          "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": args.threads},
              "matmul_peak_gflops": round(matmul_peak_gflops(args.threads), 1), "paths": {}}
    for path in args.paths:
        record["paths"][path] = profile_path(path, args.threads, args.warmup, args.steps, args.top)
        print(f"{path}: {record['paths'][path]['step_ms']} ms per step", flush=True)
    record["load_avg_start"], record["load_avg_end"] = round(load_start, 2), round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))


if __name__ == "__main__":
    main()
