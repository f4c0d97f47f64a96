"""``train_or_load``: build data, model and loss from an ``ExperimentConfig``, then train, resume or reuse.

A run lives in ``runs_dir()/<name>-<hash>/`` (``config.json``, ``data.json``, ``checkpoint.pt``). The
hash covers the whole config, so a changed hyper-parameter gets a new directory and never reuses a
stale model. For "auto-digits", which stands for MNIST, Fashion-MNIST or synthetic digits depending
on what is on the machine, the hash also covers the data it resolved to (name and a fingerprint of
the files): a run trained on Fashion-MNIST is not reused once MNIST is installed. ``data.json``
records what a run was trained on, and a loaded run says it::

    model, history, info = train_or_load("cvae")            # the course preset ($VAE_COURSE_PRESET)
    model, history, info = train_or_load(get_config("cvae-quick", **{"train.epochs": 3}))

The model, loss and data modules are imported on first use, so this module imports quickly.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from vae_lib.configs import UNHASHED_TRAIN_FIELDS, ExperimentConfig, apply_overrides, get_config, reference_folder
from vae_lib.distributed import rank_and_world_size
from vae_lib.losses import CVAELoss, StyleVAELoss
from vae_lib.models.cvae import CVAE
from vae_lib.models.sampling import aggregate_posterior
from vae_lib.models.stylegan_vae import ConvolutionalVAE
from vae_lib.runlock import remove_stale_temp_files, run_lock
from vae_lib.runtime import runs_dir, seed_everything
from vae_lib.train import Trainer, kept_checkpoint_name, read_checkpoint
from vae_lib.utils import atomic_write

# The one registry: config.model -> (model class, loss class). Adding a model is one line here (and
# its name in configs.MODELS); everything above asks the model through its interface.
REGISTRY = {"cvae": (CVAE, CVAELoss),
            "stylegan-vae": (ConvolutionalVAE, StyleVAELoss)}
CONFIG_NAME = "config.json"
DATA_NAME = "data.json"
# The committed reference run of notebooks 06 and 08 (``configs.stylevae_reference_config``; 4.2 MB, exported:
# weights and history), in the repository next to the package, as the course is run from a checkout.
REFERENCE_RUN_DIR = Path(__file__).resolve().parent.parent / "reference" / reference_folder()
# The same run with a code per style layer (``configs.stylevae_reference_config(per_layer_codes=True)``).
PER_LAYER_REFERENCE_RUN_DIR = REFERENCE_RUN_DIR.with_name(reference_folder(per_layer_codes=True))
# And that with train.seed=1 (``stylevae_reference_config(per_layer_codes=True, seed=1)``).
PER_LAYER_SEED1_RUN_DIR = REFERENCE_RUN_DIR.with_name(reference_folder(per_layer_codes=True, seed=1))
# Dataset names whose meaning depends on the machine: their resolution joins the run's hash.
RESOLVED_DATASETS = ("auto-digits",)


def build_model(config: ExperimentConfig) -> torch.nn.Module:
    """``CVAE(**model_kwargs)`` or ``ConvolutionalVAE(**model_kwargs)``, freshly initialised."""
    return REGISTRY[config.model][0](**config.model_kwargs)


# The seed of the judge whose features a perceptual loss uses (``loss_kwargs["judge_seed"]``): not the
# evaluation judge's (``JudgeSettings.seed``, 0), so that the loss does not optimise the instrument that
# measures the reconstructions.
LOSS_JUDGE_SEED = 1


def build_loss(config: ExperimentConfig):
    """``CVAELoss(**loss_kwargs)`` or ``StyleVAELoss(**loss_kwargs)``: a loss function for the Trainer.

    With ``loss_kwargs["features"] == "judge"`` the loss gets ``feature_net``, the judge of the config's
    dataset ``train_or_load_judge(judge_settings(dataset, preset=judge_preset, seed=judge_seed,
    dataset_kwargs=...))``: ``judge_seed`` (default ``LOSS_JUDGE_SEED``) and ``judge_preset`` (default
    the course preset; set it in the config so that the run's hash says which judge) are read from
    ``loss_kwargs`` here, not passed to the loss.
    """
    kwargs = dict(config.loss_kwargs)
    for key in ("judge_seed", "judge_preset"):
        kwargs.pop(key, None)
    settings = loss_judge_settings(config)
    if settings is not None:
        from vae_lib.judges import train_or_load_judge

        kwargs["feature_net"] = train_or_load_judge(settings)
    return REGISTRY[config.model][1](**kwargs)


def loss_judge_settings(config: ExperimentConfig):
    """The ``JudgeSettings`` of the judge whose features a config's loss uses (``features="judge"``), else None.

    ``loss_kwargs``' ``judge_seed`` (default ``LOSS_JUDGE_SEED``: not the evaluation judge's seed 0) and
    ``judge_preset`` (default the course preset) pick it; ``train_or_load_judge`` of the result is the
    network ``build_loss`` hands to the loss (a notebook can look at the same judge)."""
    kwargs = config.loss_kwargs
    judge_keys = {key: kwargs[key] for key in ("judge_seed", "judge_preset") if key in kwargs}
    if kwargs.get("features") != "judge":
        if judge_keys:
            raise ValueError(f"loss_kwargs {sorted(judge_keys)} go with features='judge', not {kwargs.get('features')!r}")
        return None
    from vae_lib.judges import judge_settings

    return judge_settings(config.dataset, preset=judge_keys.get("judge_preset"),
                          seed=judge_keys.get("judge_seed", LOSS_JUDGE_SEED), dataset_kwargs=dict(config.dataset_kwargs))


def data_range(config: ExperimentConfig) -> tuple[float, float]:
    """The pixel range the config's model expects (the model class's ``data_range_for``, without
    building the model): (0, 1) for a Bernoulli CVAE, else (-1, 1)."""
    return REGISTRY[config.model][0].data_range_for(**config.model_kwargs)


def dataset_key(config: ExperimentConfig, *, download: bool = True) -> dict | None:
    """What the config's dataset resolves to, for the run's hash: ``{"name", "fingerprint"}`` for
    "auto-digits" (see ``vae_lib.data.load.resolve_dataset``; it may unpack or download the files),
    None for every other dataset (whose name says it all, and whose runs keep their folders)."""
    if _normalised(config.dataset) not in RESOLVED_DATASETS:
        return None
    from vae_lib.data.load import resolve_dataset

    return resolve_dataset(config.dataset, "train", config.dataset_kwargs.get("root"), download=download).key()


def default_run_dir(config: ExperimentConfig, data_key: dict | None = None) -> Path:
    """``runs_dir()/<name>-<hash>``, the hash covering the resolved dataset (``dataset_key``)."""
    if data_key is None:
        data_key = dataset_key(config)
    return runs_dir() / config.run_name(data_key=data_key)


def _normalised(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def build_data(config: ExperimentConfig, split: str = "train", *, verbose: bool = True):
    """``load_dataset(config.dataset, split, n=n_train|n_test, **dataset_kwargs)``, rescaled to ``data_range``.

    Returns an ``ImageData``. A split whose size is 0 in the config is a ValueError.
    """
    from vae_lib.data import load_dataset

    n = config.n_train if split == "train" else config.n_test
    if n == 0:
        raise ValueError(f"config {config.name!r} has n_{'train' if split == 'train' else 'test'}=0: no {split} data")
    data = load_dataset(config.dataset, split, n=n, verbose=verbose, **config.dataset_kwargs)
    target = data_range(config)
    if tuple(data.value_range) != tuple(target):
        data = data.rescaled(*target)
    return data


def fitted_prior(model, config: ExperimentConfig, *, max_images: int | None = None):
    """The prior fitted to ``model``'s codes of ``config``'s training images (``models.sampling.aggregate_posterior``:
    the Gaussian with their mean and covariance), of the first ``max_images`` of them when given (a notebook's
    smoke preset fits to fewer, to keep its tests short). Returns a ``MultivariateNormal`` on the CPU."""
    if max_images is not None:
        if max_images < 2:
            raise ValueError(f"max_images must be at least 2 (a covariance needs two codes), got {max_images}")
        n = max_images if config.n_train is None else min(config.n_train, max_images)
        config = apply_overrides(config, {"n_train": n})
    return aggregate_posterior(model, build_data(config, "train", verbose=False))


def train_or_load(config: ExperimentConfig | str, run_dir: str | Path | None = None, preset: str | None = None,
                  verbose: bool = True, *, branch_from: ExperimentConfig | None = None,
                  branch_epoch: int | None = None) -> tuple[torch.nn.Module, dict, dict]:
    """Return ``(model, history, info)`` for ``config``, training only what is not on disk yet.

    Args:
        config: an ``ExperimentConfig``, or a preset name for ``get_config`` ("cvae", "cvae-quick", ...).
        run_dir: where the run lives (default ``default_run_dir(config)``: ``runs_dir()/<name>-<hash>``).
        preset: the course size for a family name ("smoke" | "quick" | "full"; default $VAE_COURSE_PRESET).
        verbose: print what happens and show progress bars.

    A finished checkpoint whose config matches is loaded without training; an unfinished one is
    resumed exactly where it stopped; otherwise training starts from scratch (seeded by
    ``config.train.seed``, on the device ``config.train.device`` picks). The model comes back in
    eval mode on that device. ``info`` has ``status`` ("loaded" | "resumed" | "trained"),
    ``run_dir``, ``config``, ``device``, ``epoch``, ``step``, ``seconds`` (spent in this call) and
    ``data`` (what the run was trained on: ``data.json``, None for runs saved before it was kept).

    The run folder is locked while this runs (``vae_lib.runlock``): a second process asking for
    the same folder fails at once with ``RunLockedError`` naming the holder's pid.

    Branching (``branch_from``, ``branch_epoch`` E): ``config`` is the run ``branch_from`` would be
    with other loss settings that act only from epoch E on (a perceptual term switched on at E,
    say; the loss class's ``same_until`` decides). Then both runs are the same up to E, and this
    one, when it has no checkpoint yet, starts from ``branch_from``'s copy kept after epoch E
    (``train.keep_checkpoints``; ``branch_from`` is trained or resumed first when it keeps E and
    has not got there) instead of from scratch: status "branched", and the same result as
    training ``config`` from scratch (the resume is exact), for the epochs after E only. Without
    that copy, or with E = 0, it trains from scratch (and says so when a copy was missing).
    """
    if isinstance(config, str):
        config = get_config(config, preset=preset)
    elif preset is not None:
        raise ValueError("preset= goes with a config name such as 'cvae', not with an ExperimentConfig")
    start = time.perf_counter()
    say = print if verbose else (lambda *args: None)
    data_key = dataset_key(config)
    if run_dir is None:
        run_dir = default_run_dir(config, data_key)
        _mention_legacy_run(config, run_dir, say)
    run_dir = Path(run_dir)
    # One process at a time in a run folder (rank 0 writes for all under torchrun): the config
    # check and write, the training and its checkpoints happen under the folder's lock.
    with run_lock(run_dir) if rank_and_world_size()[0] == 0 else contextlib.nullcontext():
        remove_stale_temp_files(run_dir)
        _check_saved_config(run_dir, config)
        recorded = read_data_record(run_dir)

        seed_everything(config.train.seed)
        model = build_model(config)
        trainer = Trainer(model, build_loss(config), config.train, run_dir, progress=verbose)
        if trainer.checkpoint_path.exists():
            trainer.load_checkpoint()
            status = "loaded" if trainer.target_reached() else "resumed"
        elif branch_from is not None and (kept := _kept_checkpoint(branch_from, branch_epoch, config, say)):
            trainer.load_checkpoint(kept)
            status = "branched"
        else:
            status = "trained"
        _check_same_data(run_dir, recorded, data_key, status, say)

        if status == "loaded":
            say(f"loaded finished run from {run_dir} ({trainer.epoch} epochs, {trainer.step} steps); "
                f"trained on {describe_data(recorded)}")
        else:
            if status == "branched":
                say(f"branching from {kept} (epoch {trainer.epoch}, step {trainer.step}) into {run_dir}")
            else:
                say(f"resuming from epoch {trainer.epoch} (step {trainer.step}) in {run_dir}" if status == "resumed"
                    else f"training from scratch in {run_dir}")
            _save_config(run_dir, config)
            train_data = build_data(config, "train", verbose=verbose)
            if data_key is not None and train_data.name != data_key["name"]:
                raise RuntimeError(f"{config.dataset} resolved to {data_key['name']} for the run's name but loaded "
                                   f"{train_data.name}: the data on this machine changed meanwhile; run again")
            if status in ("trained", "branched") or recorded is None:
                recorded = _save_data_record(run_dir, config, train_data, data_key)
            loader = train_data.loader(batch_size=config.train.batch_size, shuffle=True, device=trainer.device,
                                       seed=config.train.seed)
            val_loader = None
            if config.n_test != 0:
                val_loader = build_data(config, "test", verbose=verbose).loader(
                    batch_size=config.train.batch_size, shuffle=False, device=trainer.device)
            trainer.fit(loader, val_loader=val_loader)
    model = trainer.eval_model.eval()
    info = {"status": status, "run_dir": run_dir, "config": config, "device": trainer.device,
            "epoch": trainer.epoch, "step": trainer.step, "seconds": time.perf_counter() - start,
            "data": recorded}
    return model, trainer.history, info


def load_trained(run_dir: str | Path, device: str = "auto", *, epoch: int | None = None
                 ) -> tuple[ExperimentConfig, torch.nn.Module, dict]:
    """``(config, model, history)`` of a run folder, loaded and never trained: ``config.json`` and
    ``checkpoint.pt`` as ``train_or_load`` writes them. The model is the weight average when the run kept
    one (``train.ema_half_life_images``), else the trained weights; eval mode, on ``device``. ``epoch``: the
    copy the run kept after that epoch instead (``train.keep_checkpoints``; its history ends there).

    For runs made elsewhere, e.g. ``REFERENCE_RUN_DIR`` (committed, trained by
    ``python -m vae_lib train``: see ``configs.stylevae_reference_config``): nothing is trained when the
    folder is missing or does not fit the code; the error says so.
    """
    from vae_lib.ema import ema_model_state
    from vae_lib.runtime import pick_device
    from vae_lib.train import CHECKPOINT_NAME, CheckpointError, kept_checkpoint_name

    run_dir = Path(run_dir)
    checkpoint = CHECKPOINT_NAME if epoch is None else kept_checkpoint_name(epoch)
    for name in (CONFIG_NAME, checkpoint):
        if not (run_dir / name).exists():
            kind = ("a finished run folder" if epoch is None
                    else f"a run that kept epoch {epoch} (train.keep_checkpoints)")
            raise FileNotFoundError(f"{run_dir} has no {name}: not {kind}")
    config = ExperimentConfig.read(run_dir / CONFIG_NAME)
    device = pick_device(device)
    state = read_checkpoint(run_dir / checkpoint)
    model = build_model(config)
    try:
        model.load_state_dict(ema_model_state(state["ema"]) if state.get("ema") else state["model"])
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{run_dir / checkpoint} does not fit {run_dir / CONFIG_NAME} ({detail}); was "
                              "config.json edited after training, or the model code changed?") from error
    return config, model.to(device).eval(), state.get("history", {})


def _kept_checkpoint(base: ExperimentConfig, epoch: int | None, config: ExperimentConfig, say) -> Path | None:
    """The checkpoint ``config`` can branch from (see ``train_or_load``), or None (train from scratch)."""
    if isinstance(base, str):
        raise TypeError("branch_from takes an ExperimentConfig (get_config(...)), not a name")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"branch_epoch must be an epoch >= 0 with branch_from, got {epoch!r}")
    mine, theirs = _without_unhashed(config.to_dict()), _without_unhashed(base.to_dict())
    loss_a, loss_b = mine.pop("loss_kwargs"), theirs.pop("loss_kwargs")
    mine.pop("name"), theirs.pop("name")
    if mine != theirs or not REGISTRY[config.model][1].same_until(loss_a, loss_b, epoch):
        raise ValueError(f"{config.name} cannot branch from {base.name} at epoch {epoch}: the two runs must be "
                         "the same but for loss settings that act from that epoch on (e.g. perceptual_from_epoch "
                         f">= {epoch})")
    if epoch == 0:      # nothing shared: the run starts from scratch
        return None
    if epoch >= config.train.epochs:
        raise ValueError(f"branch_epoch {epoch} must be before the end of the run ({config.train.epochs} epochs)")
    base_dir = default_run_dir(base, dataset_key(base))
    path = base_dir / kept_checkpoint_name(epoch)
    if not path.exists() and epoch in base.train.keep_checkpoints:
        finished = base_dir / "checkpoint.pt"
        if not finished.exists() or read_checkpoint(finished)["epoch"] < epoch:
            train_or_load(base, verbose=say is print)
    if path.exists():
        return path
    say(f"note: {base_dir} keeps no checkpoint of epoch {epoch} (train.keep_checkpoints), so {config.name} "
        "trains from scratch")
    return None


def read_data_record(run_dir: str | Path) -> dict | None:
    """``run_dir/data.json``: what the run was trained on (None for runs saved before it was kept)."""
    path = Path(run_dir) / DATA_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it (it only records the run's data)") from error


def describe_data(record: dict | None) -> str:
    """One phrase: "fashion-mnist from /usr/share/datasets/fashion-mnist (auto-digits chose ...)"."""
    if record is None:
        return "data not recorded (the run was saved before vae_lib kept data.json)"
    text = f"{record['name']} from {record['source']}" if record.get("source") else record["name"]
    return text + (f" ({record['reason']})" if record.get("reason") else "")


def _save_data_record(run_dir: Path, config: ExperimentConfig, data, data_key: dict | None) -> dict:
    record = {"dataset": config.dataset, "name": data.name, "source": data.source, "reason": data.reason,
              "fingerprint": data_key["fingerprint"] if data_key is not None else None}
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    atomic_write(run_dir / DATA_NAME, lambda tmp: tmp.write_text(text))
    return record


def _check_same_data(run_dir: Path, recorded: dict | None, data_key: dict | None, status: str, say) -> None:
    """A run folder given by hand may hold a run of what auto-digits meant earlier: go on loading it
    (and say so) when it is finished, refuse to continue training it on other data."""
    if recorded is None or data_key is None or status == "trained":
        return
    if (recorded.get("name"), recorded.get("fingerprint")) == (data_key["name"], data_key["fingerprint"]):
        return
    now = data_key["name"] + ("" if data_key["name"] != recorded.get("name") else " (other files)")
    if status == "loaded":
        say(f"note: {run_dir} was trained on {recorded.get('name')}; {recorded.get('dataset')} now resolves to {now}")
        return
    raise ValueError(f"{run_dir} was trained on {recorded.get('name')} but {recorded.get('dataset')} now resolves "
                     f"to {now}: continue it with dataset={recorded.get('name')!r}, or use another run folder")


def _mention_legacy_run(config: ExperimentConfig, run_dir: Path, say) -> None:
    """Runs of auto-digits saved before the resolved data joined the hash live under the plain hash;
    they cannot be told apart by what they were trained on, so they are not reused: say so."""
    if _normalised(config.dataset) not in RESOLVED_DATASETS:
        return
    legacy = runs_dir() / config.run_name()
    if legacy != run_dir and (legacy / "checkpoint.pt").exists() and not (run_dir / "checkpoint.pt").exists():
        say(f"note: {legacy} holds a run of this config saved before vae_lib recorded which data auto-digits "
            f"meant, so it is not reused; training in {run_dir} (pass run_dir={str(legacy)!r} to load the old one)")


def _check_saved_config(run_dir: Path, config: ExperimentConfig) -> None:
    path = run_dir / CONFIG_NAME
    if path.exists() and _without_unhashed(ExperimentConfig.read(path).to_dict()) != _without_unhashed(config.to_dict()):
        raise ValueError(f"{run_dir} holds a run of a different config (see {path}); pass another run_dir "
                         "or delete that folder to start again")


def _without_unhashed(data: dict) -> dict:
    for name in UNHASHED_TRAIN_FIELDS:
        data["train"].pop(name, None)
    return data


def _save_config(run_dir: Path, config: ExperimentConfig) -> None:
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"
    atomic_write(run_dir / CONFIG_NAME, lambda tmp: tmp.write_text(text))
