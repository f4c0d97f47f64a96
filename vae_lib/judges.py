"""Independent judges: small CNN classifiers trained on the real data, used to score generated images.

A VAE's own ELBO cannot say whether its samples look like the class it was asked for; a classifier
that never saw the VAE can. One judge per dataset:

* digit sets (mnist, fashion-mnist, synthetic-digits): one head, ``"label"`` (10 classes);
* ``shapes``: one head per generative factor of :data:`vae_lib.data.FACTOR_BINS` (shape, hues,
  scale, position, rotation, texture, light), so a judge can say which factors an image has.

The network, :class:`Judge`, is in :mod:`vae_lib.models.classifier` (the models layer, so the
perceptual loss can use a judge's conv blocks as features); it is re-exported here.

Judges are trained once and cached like any checkpoint, in
``runs_dir()/judges/<dataset>-<hash of JudgeSettings>.pt`` (written atomically)::

    judge = train_or_load_judge(judge_settings("fashion-mnist", preset="quick"))
    judge.test_accuracy        # {"label": 0.9...} on held-out test images
    judge.predict(images)      # {"label": (N,) int64}
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vae_lib.configs import JsonConfig
from vae_lib.data import FACTOR_BINS, ImageData, InMemoryLoader, load_dataset
from vae_lib.models.classifier import FEATURE_POOL, LABEL_HEAD, MAX_POOLED_SIDE, PREDICT_BATCH, Judge
from vae_lib.runtime import get_preset, pick_device, runs_dir, seed_everything
from vae_lib.utils import atomic_write, model_device


# ------------------------------------------------------------------------------------------ training
def targets_of(data: ImageData) -> dict[str, torch.Tensor]:
    """What a judge of ``data`` learns: the factors of 'shapes', else {"label": labels}."""
    return dict(data.factors) if data.factors else {LABEL_HEAD: data.labels}


def judge_for(data: ImageData, *, width: int = 32, hidden: int = 128) -> Judge:
    """A fresh (untrained) judge for images like ``data``'s: its channels, size, range and targets."""
    _, channels, height, width_px = data.images.shape
    if height != width_px:
        raise ValueError(f"Judges take square images, got {height} x {width_px}.")
    if data.factors:
        heads, label_head = {name: FACTOR_BINS[name] for name in data.factors}, "shape"
    else:
        heads, label_head = {LABEL_HEAD: len(data.class_names)}, LABEL_HEAD
    return Judge(channels, height, heads, data.value_range, width=width, hidden=hidden, label_head=label_head,
                 class_names=data.class_names)


def fit_judge(judge: Judge, images: torch.Tensor, targets: dict[str, torch.Tensor], *, epochs: int = 2,
              batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
              max_steps: int | None = None, progress: bool = True) -> list[float]:
    """Train ``judge`` in place: AdamW with a one-cycle learning rate, the sum of each head's cross-entropy.

    images (N, C, S, S) in ``judge.value_range``; targets: {head: (N,) int64} for every head. A
    classifier is not a VAE, so this short loop stands apart from the Trainer. Returns the loss of
    every step (nats, summed over heads). ``max_steps`` stops early (tests).
    """
    missing = set(judge.heads_spec) - set(targets)
    if missing:
        raise ValueError(f"targets lack the heads {sorted(missing)} (have {sorted(targets)}).")
    for name, values in targets.items():
        if values.shape != (len(images),):
            raise ValueError(f"targets[{name!r}] must have shape ({len(images)},), got {tuple(values.shape)}.")
    seed_everything(seed)
    device = model_device(judge)
    names = list(judge.heads_spec)
    loader = InMemoryLoader(images, *(targets[n] for n in names), batch_size=batch_size, shuffle=True,
                            device=device, seed=seed)
    total = len(loader) * epochs if max_steps is None else min(max_steps, len(loader) * epochs)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=weight_decay)
    # One cycle (warm up, then anneal): a short run reaches a good minimum without tuning lr by hand.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(total, 1))
    losses: list[float] = []
    judge.train()
    with tqdm(total=total, desc="judge", disable=not progress, leave=False) as bar:
        while len(losses) < total:
            for x, *ys in loader:
                logits = judge(x)
                loss = sum(F.cross_entropy(logits[n], y) for n, y in zip(names, ys))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update(1)
                if len(losses) % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if len(losses) >= total:
                    break
    judge.eval()
    return losses


def judge_accuracy(judge: Judge, data: ImageData, batch_size: int = PREDICT_BATCH) -> dict[str, float]:
    """For each head, the share of ``data``'s images it classifies right: {head: accuracy in [0, 1]}."""
    predicted = judge.predict(data.images, data.value_range, batch_size)
    targets = targets_of(data)
    return {name: (predicted[name] == targets[name]).double().mean().item() for name in judge.heads_spec}


def read_back(judge: Judge, images: torch.Tensor, reference: ImageData,
              batch_size: int = PREDICT_BATCH) -> dict[str, dict[str, float]]:
    """How much of each factor survives in ``images``, reconstructions of ``reference.images`` (same order
    and value range): {head: {"real": accuracy on the real images, "reconstruction": accuracy on the
    reconstructions (against the real images' labels), "ratio": reconstruction / real}}.

    A ratio of 1: the judge reads the factor back as well as from the data; 1 / classes over the real
    accuracy: no better than chance (a blob where a heart was reads as the most common shape)."""
    if images.shape != reference.images.shape:
        raise ValueError(f"images must be reconstructions of the reference's {tuple(reference.images.shape)} "
                         f"images, got {tuple(images.shape)}")
    real = judge_accuracy(judge, reference, batch_size)
    predicted = judge.predict(images, reference.value_range, batch_size)
    targets = targets_of(reference)
    out = {}
    for name in judge.heads_spec:
        recon = (predicted[name] == targets[name]).double().mean().item()
        ratio = recon / real[name] if real[name] > 0 else math.nan    # a head right on no real image says nothing
        out[name] = {"real": real[name], "reconstruction": recon, "ratio": ratio}
    return out


# ------------------------------------------------------------------------------- settings and cache
@dataclass
class JudgeSettings(JsonConfig):
    """Everything that decides a judge; its hash (``JsonConfig.hash``, as a run's config) names the cached file.

    ``n_train``/``n_test``: images of the train split to learn from and of the test split to report
    ``test_accuracy`` on (None: all). ``shuffle_labels`` permutes the training targets: the
    control experiment of a classifier that can only memorise (it should score at chance).
    """

    dataset: str
    dataset_kwargs: dict = field(default_factory=dict)
    n_train: int | None = None
    n_test: int | None = None
    epochs: int = 2
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    width: int = 32
    hidden: int = 128
    seed: int = 0
    shuffle_labels: bool = False

    def path(self, cache_dir: str | Path | None = None) -> Path:
        """``<cache_dir or runs_dir()/judges>/<dataset>-<hash>.pt``."""
        folder = Path(cache_dir) if cache_dir is not None else runs_dir() / "judges"
        return folder / f"{self.dataset}-{self.hash()}.pt"


# Course sizes: (n_train, n_test, epochs) per preset. Measured on 2 CPU cores: see judge_settings.
_PRESET_SIZES = {
    "smoke": {"digits": (2_000, 500, 2), "shapes": (1_000, 200, 2)},
    "quick": {"digits": (None, None, 2), "shapes": (None, None, 3)},
    "full": {"digits": (None, None, 5), "shapes": (None, None, 8)},
}


def judge_settings(dataset: str, preset: str | None = None, **overrides) -> JudgeSettings:
    """The course's judge for ``dataset`` at a preset size ("smoke" | "quick" | "full"; default the
    course preset). ``overrides`` set any :class:`JudgeSettings` field, e.g. ``dataset_kwargs={"size": 32}``.

    smoke: 2,000 digit / 1,000 shape images (seconds); quick: the whole train split, 2 epochs for
    digits (about a minute on 2 CPU cores for Fashion-MNIST), 3 for shapes; full: 5 and 8 epochs.
    """
    kind = "shapes" if dataset == "shapes" else "digits"
    preset = get_preset(preset)
    n_train, n_test, epochs = _PRESET_SIZES[preset][kind]
    values = {"dataset": dataset, "n_train": n_train, "n_test": n_test, "epochs": epochs,
              # smaller batches give a smoke run's few images enough steps to learn something
              **({"batch_size": 64} if preset == "smoke" else {}), **overrides}
    unknown = set(values) - {f.name for f in dataclasses.fields(JudgeSettings)}
    if unknown:
        raise ValueError(f"Unknown judge settings {sorted(unknown)}.")
    return JudgeSettings(**values)


def train_or_load_judge(settings: JudgeSettings | str, *, cache_dir: str | Path | None = None,
                        device: str = "auto", progress: bool = True, verbose: bool = True) -> Judge:
    """The judge that ``settings`` describe: loaded from the cache if there, else trained and cached.

    ``settings`` may be a dataset name (then :func:`judge_settings` at the course preset). Training
    loads ``settings.dataset`` (train split), fits with :func:`fit_judge`, measures accuracy on the
    test split and saves ``{settings, architecture, state_dict, test_accuracy, losses, seconds}``
    atomically to :meth:`JudgeSettings.path`. Returns the judge in eval mode on ``device``.
    """
    if isinstance(settings, str):
        settings = judge_settings(settings)
    path = settings.path(cache_dir)
    say = print if verbose else (lambda *args: None)
    device = pick_device(device)
    if path.exists():
        judge = load_judge(path).to(device)
        say(f"loaded judge {path.name}: test accuracy {_format_accuracy(judge.test_accuracy)}")
        return judge

    start = time.perf_counter()
    load = dict(n=settings.n_train, verbose=verbose, **settings.dataset_kwargs)
    train = load_dataset(settings.dataset, "train", **load)
    targets = targets_of(train)
    if settings.shuffle_labels:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(settings.seed + 1))
        targets = {name: values[order] for name, values in targets.items()}
    # The initial weights come from the seed too, not from whatever ran before in this process: the same
    # settings train the same judge in a notebook, a benchmark or a test.
    seed_everything(settings.seed)
    judge = judge_for(train, width=settings.width, hidden=settings.hidden).to(device)
    losses = fit_judge(judge, train.images, targets, epochs=settings.epochs, batch_size=settings.batch_size,
                       lr=settings.lr, weight_decay=settings.weight_decay, seed=settings.seed, progress=progress)
    test = load_dataset(settings.dataset, "test", **dict(load, n=settings.n_test))
    judge.test_accuracy = judge_accuracy(judge, test)
    judge.settings = settings.to_dict()
    seconds = time.perf_counter() - start
    saved = {"settings": judge.settings, "architecture": _architecture(judge),
             "state_dict": {k: v.cpu() for k, v in judge.state_dict().items()},
             "test_accuracy": judge.test_accuracy, "losses": losses, "seconds": seconds}
    atomic_write(path, lambda tmp: torch.save(saved, tmp))
    say(f"trained judge {path.name} in {seconds:.0f} s: test accuracy {_format_accuracy(judge.test_accuracy)}")
    return judge


def load_judge(path: str | Path) -> Judge:
    """A judge saved by :func:`train_or_load_judge` (CPU, eval mode)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    arch = saved["architecture"]
    judge = Judge(arch["in_channels"], arch["image_size"], arch["heads"], tuple(arch["value_range"]),
                  width=arch["width"], hidden=arch["hidden"], label_head=arch["label_head"],
                  class_names=arch["class_names"])
    judge.load_state_dict(saved["state_dict"])
    judge.test_accuracy = dict(saved["test_accuracy"])
    judge.settings = dict(saved["settings"])
    return judge.eval()


def _architecture(judge: Judge) -> dict:
    return {"in_channels": judge.in_channels, "image_size": judge.image_size, "heads": judge.heads_spec,
            "value_range": list(judge.value_range), "width": judge.conv[0].out_channels,
            "hidden": judge.feature_dim, "label_head": judge.label_head, "class_names": judge.class_names}


def _format_accuracy(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1%}" for name, value in accuracy.items()) or "not measured"


def chance_accuracy(judge: Judge) -> dict[str, float]:
    """1 / classes of each head: what a judge that learned nothing scores on balanced data."""
    return {name: 1.0 / k for name, k in judge.heads_spec.items()}


__all__ = ["FEATURE_POOL", "LABEL_HEAD", "MAX_POOLED_SIDE", "PREDICT_BATCH", "Judge", "JudgeSettings",
           "chance_accuracy", "fit_judge", "judge_accuracy", "judge_for", "judge_settings", "load_judge",
           "targets_of", "train_or_load_judge"]
