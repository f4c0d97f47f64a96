"""The command line: ``python -m vae_lib`` (or ``vae-lib``) with six commands.

    python -m vae_lib train --config cvae-quick --dataset fashion-mnist --epochs 10 --out runs/x
    python -m vae_lib train --config cvae-quick --dataset fashion-mnist --epochs 10 --out runs/x   # resumes
    python -m vae_lib evaluate --out runs/x          # test metrics -> runs/x/metrics.json
    python -m vae_lib sample --out runs/x            # runs/x/samples.png
    python -m vae_lib sample --out runs/x --prior fitted   # from a Gaussian fitted to the training codes
    python -m vae_lib reconstruct --out runs/x       # runs/x/reconstructions.png
    python -m vae_lib export --out runs/x --to reference/x   # weights, config and history only: to publish
    python -m vae_lib configs [NAME]                 # the presets, or one of them as JSON
    torchrun --nproc_per_node=4 -m vae_lib train --config cvae-full --out runs/y   # DDP

Configs are the presets of ``vae_lib.configs`` changed with ``--set key=value`` (dotted keys,
values read as JSON, else as text: ``--set train.lr=1e-3 --set model_kwargs.z_dim=32``). A run
directory holds ``config.json``, ``checkpoint.pt``, ``metrics.json`` and PNG grids; running
``train`` again with the same ``--out`` resumes an unfinished run (device and speed options may
change between runs, nothing else); while it trains, the folder is locked against a second
``train`` into it. Mistakes get one line on stderr naming the file or value, and exit status 1
(2 for bad arguments): a corrupt checkpoint or config.json, a device this machine lacks, an
``--out`` that is a file or cannot be written (checked before any work), a folder in use.
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path

import torch

from vae_lib import distributed
from vae_lib.checks import check_truncation_psi
from vae_lib.configs import PRESETS, ExperimentConfig, TrainConfig, apply_overrides, get_config
from vae_lib.data.errors import DatasetNotFoundError
from vae_lib.models.sampling import sample_grid
from vae_lib.runlock import RunLockedError, remove_stale_temp_files, run_lock
from vae_lib.runtime import runs_dir
from vae_lib.train import CHECKPOINT_NAME, HalfUpdatedError, NonFiniteLossError
from vae_lib.utils import atomic_write

PROG = "vae-lib"
METRICS_NAME = "metrics.json"
CONFIG_NAME = "config.json"
# What a user can get wrong: reported in one line, not a traceback.
# (ValueError covers CheckpointError and DatasetFileError; OSError a folder that cannot be written,
# a full disk, a path that is a file.)
USER_ERRORS = (ValueError, TypeError, OSError, DatasetNotFoundError, NonFiniteLossError, RunLockedError,
               HalfUpdatedError)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------------ helpers
def parse_set(items: list[str]) -> dict:
    """``["train.lr=1e-3", "dataset=mnist"]`` -> ``{"train.lr": 0.001, "dataset": "mnist"}`` (JSON, else text)."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set needs key=value, got {item!r}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def train_config_overrides(args) -> dict:
    """The ``train`` command's shortcuts as dotted overrides (``--set`` wins over them)."""
    shortcuts = {"dataset": args.dataset, "train.epochs": args.epochs, "train.batch_size": args.batch_size,
                 "train.device": args.device, "train.num_threads": args.threads}
    return {k: v for k, v in shortcuts.items() if v is not None} | parse_set(args.set)


def check_run_folder(out: Path, *, must_exist: bool) -> Path:
    """``out`` as a run folder: not a file, and there if ``must_exist``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a run folder")
    if must_exist and not out.exists():
        raise FileNotFoundError(f"no run in {out} (no such folder): train one first with "
                                f"`{PROG} train --config NAME --out {out}`")
    return out


def check_writable(path: Path) -> Path:
    """Fail now, naming it, if the file ``path`` could not be written (its folder read-only, or
    ``path`` itself a folder or read-only), rather than after minutes of work. Creates the folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A real write: permission bits do not tell everything (a read-only mount, root's rights).
        probe = folder / f".write-test.{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
        if path.exists():
            with open(path, "r+b"):
                pass
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error} ({error.filename or folder}); "
                         "pick a writable --out or --file") from None
    return path


def run_config(out: Path) -> ExperimentConfig:
    out = check_run_folder(out, must_exist=False)
    path = out / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no run in {out} (no {CONFIG_NAME}): train one first with "
                                f"`{PROG} train --config NAME --out {out}`")
    return ExperimentConfig.read(path)


def load_run(out: str | Path, device: str = "auto") -> tuple[ExperimentConfig, torch.nn.Module]:
    """The config and the trained model (eval mode, on ``device``) of the run directory ``out``."""
    from vae_lib.experiments import load_trained

    out = Path(out)
    run_config(out)
    if not (out / CHECKPOINT_NAME).exists():
        raise FileNotFoundError(f"{out} has no {CHECKPOINT_NAME} yet: run `{PROG} train` with --out {out}")
    remove_stale_temp_files(out)
    config, model, _ = load_trained(out, device)   # checks the device before it reads the checkpoint
    return config, model


def update_metrics(out: Path, section: str, values: dict) -> Path:
    """Set ``section`` of ``out/metrics.json`` (other sections are kept)."""
    path = out / METRICS_NAME
    metrics = read_metrics(path)
    metrics[section] = values
    text = json.dumps(metrics, indent=2, default=_jsonable) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def read_metrics(path: Path) -> dict:
    """``metrics.json`` as a dict ({} when there is none); a broken one is named."""
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete or fix it") from error
    if not isinstance(metrics, dict):
        raise ValueError(f"{path} does not hold a JSON object; delete or fix it")
    return metrics


def _jsonable(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (Path, torch.device)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_grid(images: torch.Tensor, path: Path, nrow: int, value_range: tuple[float, float]) -> Path:
    """Images (N, C, H, W) in ``value_range`` as one PNG grid of ``nrow`` images per row."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().float().cpu(), path, nrow=nrow, padding=2, normalize=True,
               value_range=tuple(value_range))
    return path


def _allow_runtime_changes(out: Path, config: ExperimentConfig, is_main: bool) -> None:
    """Let a resumed run change device and speed options: rewrite its config.json with the new ones.

    Any other difference is left for ``train_or_load`` to refuse.
    """
    path = out / CONFIG_NAME
    if not path.exists():
        return
    saved = ExperimentConfig.read(path).to_dict()
    wanted = config.to_dict()
    runtime = TrainConfig.runtime_fields
    same_run = ({k: v for k, v in saved.get("train", {}).items() if k not in runtime}
                == {k: v for k, v in wanted["train"].items() if k not in runtime}
                and {k: v for k, v in saved.items() if k != "train"} == {k: v for k, v in wanted.items() if k != "train"})
    if same_run and saved != wanted and is_main:
        text = json.dumps(wanted, indent=2, sort_keys=True) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text))


def _barrier() -> None:
    if distributed.rank_and_world_size()[1] > 1:
        torch.distributed.barrier()


# ----------------------------------------------------------------------------------- commands
def cmd_train(args) -> int:
    from vae_lib.experiments import default_run_dir, train_or_load

    # Overrides go through apply_overrides, not get_config's keywords: `--set name=...` must rename the run.
    config = apply_overrides(get_config(args.config), train_config_overrides(args))
    out = check_run_folder(Path(args.out) if args.out else default_run_dir(config), must_exist=False)
    info = distributed.setup(config.train.device)
    try:
        # Rank 0 holds the folder for the whole command: the config rewrite, the training and the
        # files written after it. A second `train` into it stops here, naming this process.
        with run_lock(out) if info.is_main else contextlib.nullcontext():
            if info.is_main:
                check_writable(out / METRICS_NAME)
            _allow_runtime_changes(out, config, info.is_main)
            _barrier()
            verbose = info.is_main and not args.quiet
            model, history, run = train_or_load(config, run_dir=out, verbose=verbose)
            if info.is_main:
                last = history["epochs"][-1] if history["epochs"] else {}
                update_metrics(out, "train", {"status": run["status"], "epochs": run["epoch"], "steps": run["step"],
                                              "seconds": run["seconds"], "device": run["device"],
                                              "world_size": info.world_size, "last_epoch": last,
                                              "data": run["data"]})
                written = [_write_samples(model, config, out / "samples.png", n=8, seed=0)]
                if history["steps"]:
                    written.append(_write_curves(history, out / "training_curves.png"))
                if verbose:
                    print(f"{run['status']}: {run['epoch']} epochs, {run['step']} steps in {out}; wrote "
                          + ", ".join(p.name for p in written) + f", {METRICS_NAME}")
            _barrier()
    finally:
        distributed.cleanup()
    return 0


def cmd_sample(args) -> int:
    path = check_writable(Path(args.file) if args.file else check_run_folder(args.out, must_exist=True) / "samples.png")
    config, model = load_run(args.out, args.device)
    prior = None
    if args.prior == "fitted":
        from vae_lib.experiments import build_data
        from vae_lib.models.sampling import prior_mismatch

        mismatch = prior_mismatch(model, build_data(config, "train", verbose=False))
        prior = mismatch["fitted"]
        print(f"fitted prior: the Gaussian of the codes of {config.n_train or 'all'} training images; KL per image "
              f"{mismatch['kl_per_image']:.1f} nats (log N = {mismatch['log_n']:.1f}), the fitted Gaussian "
              f"{mismatch['fitted_kl']:.1f} nats from N(0, I)")
    path = _write_samples(model, config, path, n=args.n, seed=args.seed, truncation_psi=args.truncation, prior=prior)
    print(f"wrote {path}")
    return 0


def cmd_reconstruct(args) -> int:
    from vae_lib.experiments import build_data

    path = Path(args.file) if args.file else check_run_folder(args.out, must_exist=True) / "reconstructions.png"
    check_writable(path)
    config, model = load_run(args.out, args.device)
    data = build_data(_limited(config, args.split, args.n), args.split, verbose=False)
    device = next(model.parameters()).device
    x = data.images[:args.n].to(device)
    y = data.labels[:args.n].to(device) if model.conditional else None
    x_hat = model.reconstruct(x, y, noise_mode="const")
    # Top row the inputs, bottom row their reconstructions from the posterior mean.
    save_grid(torch.cat([x, x_hat]), path, nrow=len(x), value_range=model.data_range)
    print(f"wrote {path}")
    return 0


def cmd_evaluate(args) -> int:
    from vae_lib.experiments import build_data, build_loss
    from vae_lib.train import Trainer

    out = check_run_folder(args.out, must_exist=True)
    # Before the metrics (minutes for the IWAE bound): a read-only run would lose them at the end.
    check_writable(out / METRICS_NAME)
    read_metrics(out / METRICS_NAME)
    config, model = load_run(out, args.device)
    if config.n_test == 0 and args.n is None:
        raise ValueError(f"config {config.name!r} has no test split (n_test=0); pass --n N to use N test images")
    data = build_data(_limited(config, "test", args.n), "test", verbose=False)
    device = next(model.parameters()).device
    loader = data.loader(batch_size=args.batch_size, shuffle=False, device=device)
    if getattr(model, "likelihood", None) in ("bernoulli", "gaussian"):  # what evaluate_model needs
        from vae_lib.evaluate import evaluate_model

        metrics = evaluate_model(model, loader, k=args.k, seed=args.seed, progress=not args.quiet)
        metrics = {k: v for k, v in metrics.items() if k != "active_mask"}
        shown = ("neg_elbo", "iwae_nll", "bpd_elbo", "kl", "active_units")
    else:
        trainer = Trainer(model, build_loss(config), TrainConfig(device=str(device)), progress=False)
        metrics = trainer.validate(loader, beta=1.0) | {"num_images": len(data)}
        shown = tuple(k for k in ("loss", "mse", "kl") if k in metrics)
    metrics["split"] = "test"
    # The numbers first: were the write to fail after all, they are on the screen.
    print(", ".join(f"{k}={metrics[k]:.4g}" for k in shown) + f" on {metrics['num_images']} test images")
    update_metrics(out, "evaluate", metrics)
    print(f"wrote {out / METRICS_NAME}")
    return 0


def cmd_export(args) -> int:
    """A run folder's config, data record and weights (the EMA if kept) into ``--to``: a few MB to commit
    or share; ``load_trained`` and every command but ``train`` read it; it cannot be resumed."""
    from vae_lib.experiments import DATA_NAME
    from vae_lib.train import export_state, read_checkpoint

    source = check_run_folder(args.out, must_exist=True)
    target = Path(args.to)
    if target.resolve() == source.resolve():
        raise ValueError(f"--to {target} is the run folder itself: export into another folder (the run's "
                         "checkpoint keeps what resuming needs)")
    run_config(source)
    state = export_state(read_checkpoint(source / CHECKPOINT_NAME))
    check_writable(target / CHECKPOINT_NAME)
    atomic_write(target / CHECKPOINT_NAME, lambda tmp: torch.save(state, tmp))
    for name in (CONFIG_NAME, DATA_NAME):
        if (source / name).exists():
            text = (source / name).read_text()
            atomic_write(target / name, lambda tmp, text=text: tmp.write_text(text))
    if not args.quiet:
        size = (target / CHECKPOINT_NAME).stat().st_size / 2 ** 20
        print(f"exported {source} ({state['epoch']} epochs, {state['step']} steps) to {target}: "
              f"{CHECKPOINT_NAME} {size:.1f} MB")
    return 0


def cmd_configs(args) -> int:
    if args.name is None:
        for name in PRESETS:
            c = get_config(name)
            print(f"{name:<16} {c.model:<13} {c.dataset:<18} {c.train.epochs:>4} epochs, batch {c.train.batch_size}")
        return 0
    print(json.dumps(apply_overrides(get_config(args.name), parse_set(args.set)).to_dict(), indent=2))
    return 0


def _limited(config: ExperimentConfig, split: str, n: int | None) -> ExperimentConfig:
    """The config with at most ``n`` images in ``split`` (so a quick look loads little)."""
    if n is None:
        return config
    key = "n_train" if split == "train" else "n_test"
    current = getattr(config, key)
    return apply_overrides(config, {key: min(n, current) if current else n})


def _write_samples(model, config: ExperimentConfig, path: Path, *, n: int, seed: int,
                   truncation_psi: float = 1.0, prior=None) -> Path:
    # A conditional model: one row per class; otherwise an n x n grid.
    images, nrow = sample_grid(model, n, seed=seed, truncation_psi=truncation_psi, noise_mode="const", prior=prior)
    return save_grid(images, path, nrow=nrow, value_range=model.data_range)


def _write_curves(history: dict, path: Path) -> Path:
    from vae_lib.viz import training_curves

    terms = [t for t in ("loss", "nll", "mse", "kl") if t in history["steps"][0]]
    training_curves(history, terms=terms).savefig(path)
    return path


# ------------------------------------------------------------------------------------- parser
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _truncation(text: str) -> float:
    try:
        return check_truncation_psi(float(text), name="--truncation")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description="Train, sample, reconstruct and evaluate the course's VAEs.",
                           epilog="Run `%(prog)s COMMAND --help` for each command's options.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not one line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train (or resume) a run from a preset config",
                                description="Train a preset config, changed with --set; the same --out resumes.")
    train.add_argument("--config", required=True, metavar="NAME",
                       help=f"a preset: {', '.join(PRESETS)} (or a family 'cvae'/'stylevae' with $VAE_COURSE_PRESET)")
    train.add_argument("--dataset", help="shortcut for --set dataset=NAME (mnist, fashion-mnist, image-folder, ...)")
    train.add_argument("--epochs", type=_positive_int, help="shortcut for --set train.epochs=N")
    train.add_argument("--batch-size", type=_positive_int, help="shortcut for --set train.batch_size=N "
                       "(the global batch: under torchrun each process takes batch/N of it)")
    train.add_argument("--threads", type=_positive_int, help="torch threads (shortcut for --set train.num_threads=N)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config value (dotted key, JSON value), e.g. --set train.lr=1e-3; repeatable")
    _common(train, out_help="run directory (default: $VAE_RUNS_DIR/<name>-<hash>); the same one resumes",
            out_required=False, device_default=None)
    train.set_defaults(func=cmd_train)

    sample = commands.add_parser("sample", help="a PNG grid of samples from a trained run",
                                 description="Write samples of a run as a PNG grid: z ~ N(0, I), or (--prior "
                                             "fitted) z from a Gaussian fitted to the codes of its training images.")
    _common(sample)
    sample.add_argument("--n", type=_positive_int, default=8,
                        help="CVAE: samples per class (one row each); StyleGAN-VAE: an n x n grid (default 8)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--truncation", type=_truncation, default=1.0,
                        help="truncation psi in [-2, 2] (default 1: none; StyleGAN-VAE: 0 gives the average w; "
                             "CVAE: a temperature on z)")
    sample.add_argument("--prior", choices=("standard", "fitted"), default="standard",
                        help="standard: z ~ N(0, I) (default); fitted: z from the Gaussian with the mean and "
                             "covariance of the codes of the run's training images "
                             "(models.sampling.aggregate_posterior)")
    sample.add_argument("--file", help="PNG path (default OUT/samples.png)")
    sample.set_defaults(func=cmd_sample)

    recon = commands.add_parser("reconstruct", help="a PNG of inputs above their reconstructions",
                                description="Inputs (top row) and their reconstructions from the posterior mean.")
    _common(recon)
    recon.add_argument("--n", type=_positive_int, default=8, help="images (default 8)")
    recon.add_argument("--split", choices=("train", "test"), default="test")
    recon.add_argument("--file", help="PNG path (default OUT/reconstructions.png)")
    recon.set_defaults(func=cmd_reconstruct)

    evaluate = commands.add_parser("evaluate", help="test metrics of a run into OUT/metrics.json",
                                   description="CVAE: test -ELBO, IWAE NLL, bits/dim, KL, active units "
                                               "(vae_lib.evaluate); StyleGAN-VAE: mean loss terms.")
    _common(evaluate)
    evaluate.add_argument("--k", type=_positive_int, default=100, help="importance samples for the IWAE bound (default 100)")
    evaluate.add_argument("--n", type=_positive_int, help="use at most N test images (default: the config's n_test)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.set_defaults(func=cmd_evaluate)

    export = commands.add_parser("export", help="a run's weights, config and history into another folder",
                                 description="Copy a run's config.json and data.json into --to, with a "
                                             "checkpoint.pt of the weights to evaluate (the EMA when kept), the "
                                             "history, step and epoch: without the optimiser and RNG states, a "
                                             "third of the size. Every command but train reads it; train cannot "
                                             "resume it.")
    export.add_argument("--out", required=True, metavar="DIR", help="the run directory (what train --out made)")
    export.add_argument("--to", required=True, metavar="DIR", help="the folder to write (created)")
    export.add_argument("--quiet", action="store_true", help="no message")
    export.set_defaults(func=cmd_export)

    configs = commands.add_parser("configs", help="list the presets, or print one as JSON",
                                  description="Without NAME: the presets. With NAME: its JSON (after --set).")
    configs.add_argument("name", nargs="?", metavar="NAME")
    configs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    configs.set_defaults(func=cmd_configs)
    return parser


def _common(parser: argparse.ArgumentParser, out_help: str = "the run directory (what train --out made)",
            out_required: bool = True, device_default: str | None = "auto") -> None:
    parser.add_argument("--out", required=out_required, metavar="DIR", help=out_help)
    parser.add_argument("--device", default=device_default,
                        help="auto, cpu, cuda, cuda:1, mps (default: " + (device_default or "the config's") + ")")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages")


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit status (0 ok, 1 a reported error, 2 bad arguments, 130 Ctrl-C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    if isinstance(error, NonFiniteLossError):
        return str(error)  # its hints are on lines of their own
    if isinstance(error, OSError) and error.filename is not None and str(error.filename) not in str(error.strerror):
        text = f"{error.strerror or type(error).__name__}: {error.filename}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
