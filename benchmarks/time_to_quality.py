"""Time to quality on Fashion-MNIST: the card-1 CVAE with vae_lib's Trainer against pythae's VAE.

    pip install pythae==0.1.2          # benchmark-only; installs beside the pinned torch
    python benchmarks/time_to_quality.py --order one-at-a-time --autocast none bf16
    python benchmarks/time_to_quality.py --order together     # 1 thread each, at the same time
    # -> benchmarks/results/time_to_quality.json

Both train on the full Fashion-MNIST training set (``vae_lib.data.load_dataset``, pixels in [0, 1])
and, after every epoch, are scored on the full test set with the same estimator: test -ELBO in
nats per image = E_q[-log p(x|z)] (Bernoulli likelihood on the grey levels, one z per image) +
KL(q(z|x) || N(0, I)) (exact). The clocks count training only: they stop for each evaluation. A
run ends at the target (default 240.8 nats, what pythae's VAE reached in about 300 s on the
reference 2-core CPU), at ``--budget-s`` of training, or after ``--max-epochs``.

Each run is its own process. ``--order together`` (the default) starts them all at once, with
``--threads`` each (1 by default), so that on a shared machine all see the same load; ``--order
one-at-a-time`` runs them one after another, each with the whole machine (every core by default),
which is how a user trains. Two clocks: wall time, and the CPU time of the process (``--clock``
picks the one ``--budget-s`` counts). ``--autocast none bf16`` runs ours once per mode.

The contestants:

* ours: the card-1 CVAE (``cvae-full`` config: AdamW lr 2e-3, batch 128, clip 1), KL weight
  warmed up from 0 to 1 over ``--warmup-steps`` (default 500, about one epoch; the card's 5000 is
  tuned for 50 epochs), speed options at their defaults (channels_last on the CPU in fp32), data
  in memory; with ``--autocast bf16`` too.
* pythae: ``VAE`` with ``Encoder_ResNet_VAE_MNIST`` / ``Decoder_ResNet_AE_MNIST``, latent 16,
  "bce" reconstruction, its ``BaseTrainer`` (Adam, lr ``--pythae-lr`` default 1e-3, batch 64, its
  DataLoader). It conditions on nothing, ours on the class: part of the card's design.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "time_to_quality.json"
TARGET_NATS = 240.8


def fashion_mnist(n_train: int | None = None, n_test: int | None = None):
    from vae_lib.data import load_dataset

    return (load_dataset("fashion-mnist", "train", n=n_train, verbose=False),
            load_dataset("fashion-mnist", "test", n=n_test, verbose=False))


class Clock:
    """Training time only, wall and CPU: ``pause()`` around evaluations."""

    def __init__(self):
        self.wall = self.cpu = 0.0
        self.resume()

    def pause(self) -> dict:
        self.wall += time.perf_counter() - self.since_wall
        self.cpu += time.process_time() - self.since_cpu
        return {"train_s": self.wall, "train_cpu_s": self.cpu}

    def resume(self) -> None:
        self.since_wall, self.since_cpu = time.perf_counter(), time.process_time()


def _record(log: list, epoch: int, seconds: dict, neg_elbo: float, args) -> bool:
    log.append({"epoch": epoch, **seconds, "test_neg_elbo": neg_elbo, "load": os.getloadavg()[0]})
    print(json.dumps({"progress": log[-1]}), flush=True)
    spent = seconds["train_cpu_s" if args.clock == "cpu" else "train_s"]
    return neg_elbo <= args.target or spent >= args.budget_s or epoch >= args.max_epochs


# ------------------------------------------------------------------------------------------ ours
def run_ours(args) -> dict:
    from vae_lib.configs import get_config
    from vae_lib.evaluate import evaluate_model
    from vae_lib.experiments import build_loss, build_model
    from vae_lib.runtime import seed_everything
    from vae_lib.train import Trainer

    train, test = fashion_mnist(args.n_train, args.n_test)
    config = get_config("cvae-full", dataset="fashion-mnist", **{
        "train.beta.warmup_steps": args.warmup_steps, "train.num_threads": args.threads,
        "train.device": args.device, "train.epochs": args.max_epochs, "train.autocast": args.autocast,
        "train.batch_size": args.batch_size, "train.lr_schedule": args.lr_schedule,
        "train.channels_last": json.loads(args.channels_last) if args.channels_last != "auto" else "auto"})
    seed_everything(0)
    trainer = Trainer(build_model(config), build_loss(config), config.train, progress=False)
    loader = train.loader(batch_size=config.train.batch_size, shuffle=True, device=trainer.device, seed=0)
    test_loader = test.loader(batch_size=500, shuffle=False, device=trainer.device)
    log, clock = [], Clock()
    for epoch in range(1, args.max_epochs + 1):
        clock.resume()
        trainer.fit(loader, epochs=epoch)
        seconds = clock.pause()
        neg_elbo = evaluate_model(trainer.model, test_loader, k=1, progress=False)["neg_elbo"]
        if _record(log, epoch, seconds, neg_elbo, args):
            break
    return {"config": config.to_dict(), "channels_last": trainer.channels_last, "epochs": log}


# ---------------------------------------------------------------------------------------- pythae
def pythae_neg_elbo(model, images: torch.Tensor, batch_size: int = 500) -> float:
    """Test -ELBO of a pythae VAE, nats per image, with the estimator ``evaluate_model(k=1)`` uses."""
    import torch.nn.functional as F

    total = 0.0
    model.eval()
    with torch.no_grad():
        for x in images.split(batch_size):
            out = model.encoder(x)
            mu, logvar = out.embedding, out.log_covariance
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = model.decoder(z).reconstruction
            nll = F.binary_cross_entropy(recon.flatten(1), x.flatten(1), reduction="none").sum(1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            total += (nll + kl).sum().item()
    model.train()
    return total / len(images)


def run_pythae(args) -> dict:
    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.nn.benchmarks.mnist import Decoder_ResNet_AE_MNIST, Encoder_ResNet_VAE_MNIST
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    torch.set_num_threads(args.threads)
    train, test = fashion_mnist(args.n_train, args.n_test)
    model_config = VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce")
    model = VAE(model_config, encoder=Encoder_ResNet_VAE_MNIST(model_config),
                decoder=Decoder_ResNet_AE_MNIST(model_config))
    log, clock = [], Clock()

    class Stop(Exception):
        pass

    class ScoreEachEpoch(TrainingCallback):
        epoch = 0

        def on_train_begin(self, training_config, **kwargs):
            clock.resume()

        def on_epoch_end(self, training_config, **kwargs):
            seconds = clock.pause()
            self.epoch += 1
            if _record(log, self.epoch, seconds, pythae_neg_elbo(model, test.images), args):
                raise Stop
            clock.resume()

    trainer_config = BaseTrainerConfig(output_dir=str(args.scratch / "pythae"), num_epochs=args.max_epochs,
                                       learning_rate=args.pythae_lr, per_device_train_batch_size=64,
                                       keep_best_on_train=True, no_cuda=args.device == "cpu")
    trainer = BaseTrainer(model, BaseDataset(train.images, train.labels), training_config=trainer_config,
                          callbacks=[ScoreEachEpoch()])
    try:
        trainer.train()
    except Stop:
        pass
    return {"model": "pythae VAE + Encoder_ResNet_VAE_MNIST/Decoder_ResNet_AE_MNIST, latent 16, bce",
            "trainer": {"lr": args.pythae_lr, "batch_size": 64, "optimizer": "Adam"},
            "params": sum(p.numel() for p in model.parameters()), "epochs": log}


# ------------------------------------------------------------------------------------ side by side
def time_to_target(log: list, target: float, key: str) -> float | None:
    hit = [e[key] for e in log if e["test_neg_elbo"] <= target]
    return hit[0] if hit else None


def contestants(args) -> list[tuple[str, str | None]]:
    """(name, autocast) of each run: pythae, then ours once per ``--autocast`` mode."""
    ours = [("ours" if mode == "none" else f"ours-{mode}", None if mode == "none" else mode)
            for mode in args.autocast]
    return ([("pythae", None)] if args.which in ("all", "pythae") else []) + \
        (ours if args.which in ("all", "ours") else [])


def run_all(args) -> dict:
    """Each contestant in its own process: all at once (``--order together``, the default, so that
    they share the machine's load) or one after another (``--order one-at-a-time``, each with the
    whole machine)."""
    def start(name, mode):
        which = "pythae" if name == "pythae" else "ours"
        cmd = [sys.executable, __file__, "--which", which, "--child"] + _forward(args, mode)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"))

    def finish(proc):
        out, _ = proc.communicate()
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        finals = [ln["result"] for ln in lines if "result" in ln]
        return finals[0] if finals else {"error": f"exit code {proc.returncode}"}

    results = {}
    if args.order == "together":
        procs = {name: start(name, mode) for name, mode in contestants(args)}
        for name, proc in procs.items():
            results[name] = finish(proc)
    else:
        for name, mode in contestants(args):
            print(f"{name}: training alone ...", flush=True)
            results[name] = finish(start(name, mode))
    return results


def _forward(args, autocast_mode: str | None) -> list[str]:
    return ["--threads", str(args.threads), "--clock", args.clock, "--batch-size", str(args.batch_size),
            "--lr-schedule", args.lr_schedule, "--budget-s", str(args.budget_s), "--max-epochs", str(args.max_epochs),
            "--target", str(args.target), "--warmup-steps", str(args.warmup_steps),
            "--pythae-lr", str(args.pythae_lr), "--device", args.device, "--scratch", str(args.scratch),
            "--channels-last", args.channels_last, "--autocast", autocast_mode or "none"] + \
        (["--n-train", str(args.n_train)] if args.n_train else []) + (["--n-test", str(args.n_test)] if args.n_test else [])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--which", choices=("all", "ours", "pythae"), default="all")
    parser.add_argument("--order", choices=("together", "one-at-a-time"), default="together",
                        help="the runs at once (sharing the machine) or one after another (each alone)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in each run (default: 1 together, every core one at a time)")
    parser.add_argument("--budget-s", type=float, default=900.0, help="training seconds per run at most (--clock)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what --budget-s counts")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--target", type=float, default=TARGET_NATS, help="test -ELBO to reach, nats")
    parser.add_argument("--warmup-steps", type=int, default=500, help="our KL warm-up (steps)")
    parser.add_argument("--batch-size", type=int, default=128, help="our batch size (the card's 128)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="ours: TrainConfig.lr_schedule; cosine spans --max-epochs")
    parser.add_argument("--pythae-lr", type=float, default=1e-3)
    parser.add_argument("--autocast", nargs="+", choices=("none", "bf16", "fp16"), default=["none"],
                        help="ours: TrainConfig.autocast; several modes give one run of ours each")
    parser.add_argument("--channels-last", choices=("auto", "true", "false"), default="auto",
                        help="ours: TrainConfig.channels_last")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-train", type=int, default=None, help="fewer training images (to check the script)")
    parser.add_argument("--n-test", type=int, default=None, help="fewer test images (to check the script)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/vae_lib_ttq"), help="pythae's output_dir")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON (default {DEFAULT_OUT})")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads is None:
        args.threads = 1 if args.order == "together" else os.cpu_count()
    if args.which in ("pythae", "all") and not args.child:
        try:
            import pythae  # noqa: F401
        except ImportError:
            if args.which == "pythae":
                sys.exit("pythae is not installed: pip install pythae==0.1.2 (benchmark only)")
            print("pythae is not installed (pip install pythae==0.1.2): running ours only", flush=True)
            args.which = "ours"
    if args.child:
        args.autocast = None if args.autocast[0] == "none" else args.autocast[0]
        result = run_ours(args) if args.which == "ours" else run_pythae(args)
        print(json.dumps({"result": result}), flush=True)
        return

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_start = os.getloadavg()
    results = run_all(args)
    summary = {}
    for name, result in results.items():
        log = result.get("epochs", [])
        summary[name] = {"time_to_target_s": time_to_target(log, args.target, "train_s"),
                         "cpu_time_to_target_s": time_to_target(log, args.target, "train_cpu_s"),
                         "best_neg_elbo": min((e["test_neg_elbo"] for e in log), default=None),
                         "epochs": len(log), "train_s": log[-1]["train_s"] if log else None,
                         "train_cpu_s": log[-1]["train_cpu_s"] if log else None}
        wall, cpu = summary[name]["time_to_target_s"], summary[name]["cpu_time_to_target_s"]
        print(f"{name:<10} " + (f"reached {args.target} nats after {cpu:.0f} CPU s ({wall:.0f} s wall) of training"
                               if cpu else f"did not reach {args.target} nats") +
              f"; best {summary[name]['best_neg_elbo']:.1f} nats in {summary[name]['epochs']} epochs", flush=True)
    from speed import machine  # benchmarks/speed.py, beside this file

    record = {"machine": machine(), "started": started, "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "settings": {k: str(v) for k, v in vars(args).items()},
              "target_nats": args.target, "summary": summary, "runs": results}
    out = args.out or DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
