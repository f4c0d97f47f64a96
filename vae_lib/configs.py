"""Experiment configurations: dataclasses with the design cards' defaults, plus named presets.

* ``BetaConfig``: the KL-weight schedule (see ``vae_lib.schedules``).
* ``TrainConfig``: what the ``Trainer`` needs. Its defaults are the ResNet-CVAE card's:
  AdamW(lr=2e-3, weight_decay=1e-4), grad-norm clip 1.0, batch 128, 50 epochs, beta = 1 with KL warm-up.
* ``ExperimentConfig``: model + data + loss + training; what ``experiments.train_or_load`` runs.
  ``to_dict``/``from_dict`` round-trip through JSON; ``hash()`` names the run directory.

Presets (``get_config(name, **overrides)``), one per model and course size::

    cvae-smoke       512 synthetic digits, 2 epochs                                  seconds (CI)
    cvae-quick       all 60k auto-digits (MNIST, else Fashion-MNIST, else synthetic),
                     10 epochs                                                       ~10 min on 2 CPU cores
    cvae-full        the card: MNIST, 50 epochs, batch 128                           a GPU
    stylevae-smoke   64 shapes at 32 px, a tiny StyleGAN-VAE                         seconds
    stylevae-quick   20k upright shapes at 32 px, z 128 (a code per style layer),
                     channels <= 32 (encoder 64), 8 epochs                           ~10 min on 2 cores (bf16)
    stylevae-full    the card: 128 px, z 512, your image folder (dataset_kwargs.root),
                     MSE + 0.1 x VGG19 perceptual from epoch 20                      a GPU

``get_config("cvae")`` picks the size from the course preset (``$VAE_COURSE_PRESET``);
``get_config("cvae", preset="smoke")`` names it. Overrides use dotted keys::

    get_config("cvae-quick", **{"train.epochs": 3, "model_kwargs.z_dim": 32})
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vae_lib import runtime
from vae_lib.data.shapes import UPRIGHT
from vae_lib.models.stylegan_vae import MAPPING_GAIN_PRESERVING
from vae_lib.checks import (check_bool, check_choice, check_device, check_float, check_int, check_str)

# One family name (issue 10). The StyleGAN-VAE family is called "stylevae" wherever a name is chosen:
# the presets (stylevae-smoke/quick/full), the family name for get_config and the CLI, the exercises'
# topic, StyleVAELoss, StyleVAEExplorer. Three other spellings stay, each for a reason a rename would
# not survive:
# * "stylegan-vae", the value of ExperimentConfig.model: every cached run stores it in config.json and
#   it is part of the run's hash (tests/test_configs.py KNOWN_HASHES), so renaming it would orphan runs/;
# * models/stylegan_vae.py and its class ConvolutionalVAE: the design card's names, which notebooks import.
# Whatever spelling a user gives (stylevae, stylegan_vae, StyleVAE, ConvolutionalVAE, ...) in a config's
# model, a preset or family name, or on the command line is normalised by family_of() below.
MODELS = ("cvae", "stylegan-vae")
FAMILIES = ("cvae", "stylevae")
FAMILY_MODEL = {"cvae": "cvae", "stylevae": "stylegan-vae"}     # family -> the stored config.model value
# Spellings (lower case, without '-', '_' and spaces) -> the family.
_FAMILY_SPELLINGS = {"cvae": "cvae", "stylevae": "stylevae", "styleganvae": "stylevae",
                     "convolutionalvae": "stylevae"}
BETA_KINDS = ("constant", "linear", "cyclical")
AUTOCAST_MODES = (None, "bf16", "fp16", "auto")
LR_SCHEDULES = ("constant", "cosine")


class JsonConfig:
    """``to_dict``/``from_dict`` and ``hash`` for the config dataclasses (runs, judges);
    ``_nested`` names dataclass-valued fields."""

    _nested: ClassVar[dict[str, type]] = {}

    def to_dict(self) -> dict:
        """Plain JSON types only (tuples become lists), so that the dict survives ``json.dumps``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict):
        """Build from ``to_dict()`` output; missing keys take their defaults, unknown keys are an error."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
        _reject_unknown(cls, data)
        kwargs = dict(data)
        for name, sub in cls._nested.items():
            if name in kwargs and not isinstance(kwargs[name], sub):
                kwargs[name] = sub.from_dict(kwargs[name])
        return cls(**kwargs)

    def hash(self, length: int = 10) -> str:
        """A digest of the whole content: the first ``length`` hex digits of the sha256 of the sorted,
        compact JSON of ``_hashed_dict()`` (``to_dict()`` unless a subclass leaves fields out).
        Names cached files (run directories, judges), so it must not change for the same content."""
        text = json.dumps(self._hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def _hashed_dict(self) -> dict:
        return self.to_dict()


def family_of(name) -> str | None:
    """The family ("cvae" or "stylevae") that ``name`` spells, however it is spelled; None for no family."""
    if not isinstance(name, str):
        return None
    return _FAMILY_SPELLINGS.get("".join(c for c in name.lower() if c not in "-_ "))


def preset_name(name: str) -> str:
    """A preset or family name with its family spelled the one way: "stylegan-vae-quick" -> "stylevae-quick",
    "StyleGAN_VAE" -> "stylevae"; other names come back as they are."""
    if not isinstance(name, str):
        return name
    if family_of(name) is not None:
        return family_of(name)
    head, _, size = name.rpartition("-")
    family = family_of(head) if head else None
    return f"{family}-{size}" if family is not None else name


def _reject_unknown(cls, data: dict) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"Unknown {cls.__name__} field {key!r}{hint}; fields: {', '.join(names)}")


_DEFAULT_WARMUP_STEPS = 5000


@dataclass
class BetaConfig(JsonConfig):
    """The KL weight: ``kind`` 'constant' (beta), 'linear' (0 -> beta over ``warmup_steps``),
    or 'cyclical' (``n_cycles`` cycles over the run, rising during the first ``ratio`` of each).
    ``beta`` is the constant value or the maximum.

    ``warmup_fraction``: the warm-up as a share in [0, 1] of the run's planned steps instead of a
    count (``schedules.build_schedule`` resolves it, rounded to a whole step, once the run's length is
    known). It excludes ``warmup_steps``: leave that at its default (or None); it is then stored as None.
    """

    kind: str = "linear"
    beta: float = 1.0
    warmup_steps: int | None = _DEFAULT_WARMUP_STEPS  # ~10 MNIST epochs at batch 128
    n_cycles: int = 4
    ratio: float = 0.5
    warmup_fraction: float | None = None

    def __post_init__(self):
        if self.kind not in BETA_KINDS:
            raise ValueError(f"Unknown beta kind {self.kind!r}: choose one of {', '.join(BETA_KINDS)}")
        check_float("train.beta.beta", self.beta, minimum=0)
        check_float("train.beta.warmup_fraction", self.warmup_fraction, minimum=0, maximum=1, optional=True)
        if self.warmup_fraction is not None:
            if self.warmup_steps not in (None, _DEFAULT_WARMUP_STEPS):
                raise ValueError(f"train.beta: give warmup_steps ({self.warmup_steps!r}) or warmup_fraction "
                                 f"({self.warmup_fraction!r}), not both; set train.beta.warmup_steps=null "
                                 "to use the fraction")
            self.warmup_steps = None            # the fraction decides (one stored form, one hash)
        elif self.warmup_steps is None:
            raise ValueError("train.beta.warmup_steps is None: give it, or train.beta.warmup_fraction")
        else:
            check_int("train.beta.warmup_steps", self.warmup_steps, minimum=0)
        check_int("train.beta.n_cycles", self.n_cycles, minimum=1)
        check_float("train.beta.ratio", self.ratio, minimum=0, maximum=1, exclusive=True)


@dataclass
class TrainConfig(JsonConfig):
    """The optimisation, with the ResNet-CVAE card's defaults.

    ``grad_clip`` is the max global grad norm (None: no clipping). ``max_steps`` stops a run early
    (smoke tests). Checkpoints go to ``run_dir/checkpoint.pt`` every ``checkpoint_every_epochs``
    epochs, every ``checkpoint_every_steps`` steps if set, every ``checkpoint_every_seconds`` of
    wall time if set (default 300: a kill -9 loses at most 5 minutes; an epoch of ``cvae-quick``
    takes about one on a laptop CPU, one of ``stylevae-full`` hours), and at the end. The progress
    bar's numbers are refreshed every ``log_every_steps`` steps; the history keeps every step.

    Every field is checked when the config is built: its type and range, with the key in the
    message ("train.lr must be a number > 0, got 'fast'").

    ``lr_schedule``: "constant" (the card: ``lr`` throughout) or "cosine" (beyond the card: ``lr``
    decays to 0 along a half cosine over the run's planned steps, ``epochs`` x batches per epoch or
    ``max_steps``; for a fixed training budget, see ``benchmarks/time_to_quality.py``).

    ``ema_half_life_images``: keep an exponential moving average of the weights (``vae_lib.ema``,
    StyleGAN2-ADA's ramp-up), with this half-life in images; validation, ``train_or_load`` and the CLI
    then use the averaged model. None (the default, and the CVAE card): no average.

    Speed options (measured side by side in ``benchmarks/speed.py``, results in
    ``benchmarks/README.md``; see ``vae_lib.fastpaths``):

    * ``channels_last``: True, False or "auto" (on for models with 2-d convolutions on CUDA; on the
      CPU only for the card-1 CVAE in fp32, 1.17x training there, while it slowed the StyleGAN-VAE
      to 0.91x and bf16 CVAE training to 0.82x). Results equal NCHW's to float round-off.
    * ``autocast``: None (fp32), "bf16", "fp16" (adds a gradient scaler) or "auto" (bf16 where
      the CPU or GPU has it natively). Off by default, because it changes the numbers: on an
      AVX512-BF16 CPU bf16 trained the CVAE 1.29x faster than its fp32 default and the StyleGAN-VAE
      1.7-1.9x; its effect on the ELBO is in benchmarks/README.md.

    ``keep_checkpoints``: epochs after which a copy of the checkpoint is kept as
    ``checkpoint-epoch<E>.pt``, so that variants of the run can branch from it
    (``experiments.train_or_load(..., branch_from=...)``). It changes nothing that is trained:
    it is left out of the run's hash and of the saved-config check.
    * ``compile``: ``torch.compile`` of the loss with the model inside; off by default (a
      compilation of up to minutes at the start, for 2 % on CVAE training on the CPU).
    * ``num_threads``: ``torch.set_num_threads`` for the process (None: torch's default, one per
      physical core). On a machine shared with other jobs use 1.
    """

    _nested: ClassVar[dict[str, type]] = {"beta": BetaConfig}
    # Where and how fast, not what is trained: a run may change them when it is resumed (the CLI does).
    runtime_fields: ClassVar[tuple[str, ...]] = ("device", "channels_last", "autocast", "compile", "num_threads",
                                                 "checkpoint_every_seconds", "keep_checkpoints")

    epochs: int = 50
    batch_size: int = 128
    lr: float = 2e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-4
    grad_clip: float | None = 1.0
    beta: BetaConfig = field(default_factory=BetaConfig)
    seed: int = 0
    device: str = "auto"
    max_steps: int | None = None
    checkpoint_every_epochs: int = 1
    checkpoint_every_steps: int | None = None
    checkpoint_every_seconds: float | None = 300.0
    log_every_steps: int = 10
    channels_last: bool | str = "auto"
    autocast: str | None = None
    compile: bool = False
    num_threads: int | None = None
    ema_half_life_images: float | None = None
    keep_checkpoints: tuple[int, ...] = ()

    def __post_init__(self):
        t = "train."
        check_int(t + "epochs", self.epochs, minimum=0)
        check_int(t + "batch_size", self.batch_size, minimum=1)
        check_float(t + "lr", self.lr, minimum=0, exclusive=True)
        check_choice(t + "lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_float(t + "weight_decay", self.weight_decay, minimum=0)
        check_float(t + "grad_clip", self.grad_clip, minimum=0, exclusive=True, optional=True)
        if not isinstance(self.beta, BetaConfig):
            raise ValueError(f"train.beta must be a BetaConfig or a dict of its fields, got {self.beta!r}")
        check_int(t + "seed", self.seed)
        check_device(t + "device", self.device)
        check_int(t + "max_steps", self.max_steps, minimum=0, optional=True)
        check_int(t + "checkpoint_every_epochs", self.checkpoint_every_epochs, minimum=1)
        check_int(t + "checkpoint_every_steps", self.checkpoint_every_steps, minimum=1, optional=True)
        check_float(t + "checkpoint_every_seconds", self.checkpoint_every_seconds, minimum=0, exclusive=True,
                    optional=True)
        check_int(t + "log_every_steps", self.log_every_steps, minimum=1)
        check_choice(t + "channels_last", self.channels_last, (True, False, "auto"))
        check_choice(t + "autocast", self.autocast, AUTOCAST_MODES)
        check_bool(t + "compile", self.compile)
        check_int(t + "num_threads", self.num_threads, minimum=1, optional=True)
        check_float(t + "ema_half_life_images", self.ema_half_life_images, minimum=0, exclusive=True, optional=True)
        if isinstance(self.keep_checkpoints, (str, bytes)) or not hasattr(self.keep_checkpoints, "__iter__"):
            raise ValueError(f"train.keep_checkpoints must be a list of epochs, got {self.keep_checkpoints!r}")
        self.keep_checkpoints = tuple(self.keep_checkpoints)
        for epoch in self.keep_checkpoints:
            check_int(t + "keep_checkpoints[]", epoch, minimum=1)

    @classmethod
    def from_dict(cls, data: dict):
        if isinstance(data, dict) and "beta" in data and not isinstance(data["beta"], (dict, BetaConfig)):
            raise ValueError(f"train.beta must be a dict of BetaConfig fields, got {data['beta']!r}")
        return super().from_dict(data)


# name -> default of each TrainConfig (BetaConfig) field added after the first cached runs (see hash()).
_LATER_TRAIN_FIELDS = {"lr_schedule": "constant", "checkpoint_every_seconds": 300.0, "ema_half_life_images": None}
_LATER_BETA_FIELDS = {"warmup_fraction": None}
# TrainConfig fields that never count in a run's hash: they change what is kept, not what is trained.
UNHASHED_TRAIN_FIELDS = ("keep_checkpoints",)
# model_kwargs that are counts or sizes, for either model: checked as integers >= 1 in the config
# (so that `--set model_kwargs.z_dim=16.5` fails with the key, not deep inside torch).
_INT_MODEL_KWARGS = ("z_dim", "num_classes", "embed_dim", "input_size", "max_channels", "mapping_layers", "w_dim")


@dataclass
class ExperimentConfig(JsonConfig):
    """One run: ``model`` ('cvae' | 'stylegan-vae', the stored value for the family 'stylevae'; other
    spellings are normalised) built with ``model_kwargs``, trained on
    ``load_dataset(dataset, n=n_train, **dataset_kwargs)`` (evaluated on ``n_test`` test images;
    None: all, 0: none) with the model's loss built from ``loss_kwargs``."""

    _nested: ClassVar[dict[str, type]] = {"train": TrainConfig}

    name: str
    model: str
    dataset: str
    model_kwargs: dict = field(default_factory=dict)
    dataset_kwargs: dict = field(default_factory=dict)
    loss_kwargs: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    n_train: int | None = None
    n_test: int | None = None

    def __post_init__(self):
        if self.model not in MODELS and family_of(self.model) is not None:
            self.model = FAMILY_MODEL[family_of(self.model)]      # another spelling of the family
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}: choose one of {', '.join(MODELS)} "
                             "(the StyleGAN-VAE family, 'stylevae', is stored as 'stylegan-vae')")
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty string without '/', got {self.name!r}")
        check_str("dataset", self.dataset)
        for key in ("model_kwargs", "dataset_kwargs", "loss_kwargs"):
            if not isinstance(getattr(self, key), dict):
                raise ValueError(f"{key} must be a dict of keyword arguments, got {getattr(self, key)!r}")
        if not isinstance(self.train, TrainConfig):
            raise ValueError(f"train must be a TrainConfig or a dict of its fields, got {self.train!r}")
        check_int("n_train", self.n_train, minimum=0, optional=True)
        check_int("n_test", self.n_test, minimum=0, optional=True)
        for key in _INT_MODEL_KWARGS:
            if key in self.model_kwargs and not (key == "w_dim" and self.model_kwargs[key] is None):
                check_int(f"model_kwargs.{key}", self.model_kwargs[key], minimum=1)
        kwargs = self.dataset_kwargs
        if "size" in kwargs:
            check_int("dataset_kwargs.size", kwargs["size"], minimum=1)
        if "seed" in kwargs:
            check_int("dataset_kwargs.seed", kwargs["seed"])
        if "root" in kwargs:
            check_str("dataset_kwargs.root", kwargs["root"], optional=True)

    @classmethod
    def from_dict(cls, data: dict):
        if isinstance(data, dict) and "train" in data and not isinstance(data["train"], (dict, TrainConfig)):
            raise ValueError(f"train must be a dict of TrainConfig fields, got {data['train']!r}")
        return super().from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> ExperimentConfig:
        """The config a run saved as JSON (``config.json``); fields added since take their defaults.

        A file that is not valid JSON, or not a valid config, is a ValueError that names it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON ({error}); fix or delete it") from error
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path} is not a valid run config: {error}") from error

    def hash(self, length: int = 10, data_key: dict | None = None) -> str:
        """A digest of the whole content (``JsonConfig.hash``); names the run directory.

        ``data_key``: what the dataset resolved to, for a name that can mean several data sets
        ("auto-digits": ``{"name": "mnist", "fingerprint": ...}``, see ``experiments.dataset_key``);
        it joins the digest so that a run trained on one never stands in for another. None (and
        every other dataset) hashes as before."""
        self._data_key = data_key
        try:
            return super().hash(length)
        finally:
            self._data_key = None

    def _hashed_dict(self) -> dict:
        """What ``hash()`` digests: the whole content, except that fields added to ``TrainConfig`` or
        ``BetaConfig`` after runs were cached (``_LATER_TRAIN_FIELDS``, ``_LATER_BETA_FIELDS``) count
        only when they differ from their defaults, so
        those runs keep their directories; plus the resolved dataset when ``hash`` is given one."""
        data = self.to_dict()
        for fields, defaults in ((data["train"], _LATER_TRAIN_FIELDS), (data["train"]["beta"], _LATER_BETA_FIELDS)):
            for name, default in defaults.items():
                if fields.get(name) == default:
                    del fields[name]
        for name in UNHASHED_TRAIN_FIELDS:
            data["train"].pop(name, None)
        data_key = getattr(self, "_data_key", None)
        if data_key is not None:
            data["resolved_dataset"] = data_key
        return data

    def run_name(self, data_key: dict | None = None) -> str:
        """``<name>-<hash>``. For "auto-digits" the folder ``train_or_load`` uses also depends on the
        data it resolves to: ``experiments.default_run_dir(config)`` gives it."""
        return f"{self.name}-{self.hash(data_key=data_key)}"


def apply_overrides(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``config`` with dotted keys set: ``{"train.epochs": 3, "model_kwargs.z_dim": 32}``.

    Keys inside the ``*_kwargs`` dicts may be new; any other unknown key is a ValueError.
    """
    data = config.to_dict()
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node, cls, path = data, type(config), []
        for part in parents:
            path.append(part)
            # Below a *_kwargs dict (cls None) there are no sections.
            if cls is None or part not in node or not isinstance(node[part], dict):
                raise ValueError(f"Unknown config key {key!r}: {'.'.join(path)!r} is not a section")
            cls = cls._nested.get(part)
            node = node[part]
        if cls is not None and leaf not in node:
            _reject_unknown(cls, {leaf: None})
        node[leaf] = copy.deepcopy(value)
    return ExperimentConfig.from_dict(data)


def _cvae_smoke() -> ExperimentConfig:
    return ExperimentConfig(
        name="cvae-smoke", model="cvae", dataset="synthetic-digits",
        model_kwargs={"z_dim": 16, "likelihood": "bernoulli"},
        n_train=512, n_test=256,
        train=TrainConfig(epochs=2, batch_size=128, beta=BetaConfig("linear", 1.0, warmup_steps=4)),
    )


def _cvae_quick() -> ExperimentConfig:
    # The course's quality target (benchmarks/cvae_quality.py: test -ELBO <= 240 nats on
    # Fashion-MNIST): the whole train split, 10 epochs of 469 steps. The KL warm-up is the first
    # epoch, a tenth of the run: long enough for the decoder to start using z before beta = 1 pulls
    # q(z|x,c) towards the prior, short enough that 9 epochs optimise the ELBO that is reported.
    return ExperimentConfig(
        name="cvae-quick", model="cvae", dataset="auto-digits",
        model_kwargs={"z_dim": 16, "likelihood": "bernoulli"},
        n_train=None, n_test=None,
        train=TrainConfig(epochs=10, batch_size=128, beta=BetaConfig("linear", 1.0, warmup_steps=469)),
    )


def _cvae_full() -> ExperimentConfig:
    return ExperimentConfig(
        name="cvae-full", model="cvae", dataset="mnist",
        model_kwargs={"z_dim": 16, "likelihood": "bernoulli"},
        train=TrainConfig(),
    )


# The StyleGAN card gives no optimiser settings ("see training_config.py", not shipped): we keep
# AdamW with the CVAE card's weight decay and clip, and a smaller lr and batch for the larger model.
# The CPU presets of the StyleGAN-VAE keep the card's network and add the options that made a short
# run learn (benchmarks/stylevae_learning.py and benchmarks/README.md measure each one):
#   encoder_pool="flatten"  the encoder keeps where things are (+2-3 dB at equal steps);
#   mapping_gain            w keeps its scale through the mapping network, so the styles learn;
#   mapping_layers=2        NVIDIA's short-run depth;
#   reconstruction="calibrated"  the decoder's sigma is fitted, not guessed (the card's weight 1 is
#                           sigma^2 = 1/2, under which a blob is the best answer);
#   ema_half_life_images    reconstructions and samples from averaged weights (+0.8-1 dB);
#   lr_schedule             "cosine" decays the lr to 0 over the run (+0.35 dB for the 8-angle preset of 6 epochs);
#                           the quick preset keeps it constant, as the outlines come late (about step 3,500 of 5,000);
#   autocast="auto"         bf16 on CPUs and GPUs that have it natively (1.7-1.9x), else fp32.
# The StyleGAN card gives no optimiser settings ("see training_config.py", not shipped): AdamW with
# the CVAE card's weight decay and clip.
_CPU_STYLE_MODEL = {"mapping_layers": 2, "encoder_pool": "flatten", "mapping_gain": MAPPING_GAIN_PRESERVING}
# What the quick preset adds so that its minutes learn the shapes' outlines (issue 11; benchmarks/README.md,
# "The encoder was the bottleneck"):
#   per_layer_codes         a chunk of z per style layer (pSp's W+): each factor tends to live in the chunk of the
#                           layers that draw it, so style mixing swaps factors, and N(0, I) samples are varied;
#   encoder_channels=64     the encoder twice as wide as the synthesis (taught the factors directly it reads the
#   encoder_fc_width=256    shape in 97.5 % of upright shapes at 64 channels, 75 % at 32), and its FC layer wide
#                           enough for 8 codes: the outlines come after about 3,500 steps instead of 6,000-12,500;
# and its data are upright shapes (dataset_kwargs.fixed_factors={"rotation": 4}): the same network does not learn
# the outlines of shapes at 8 angles in 5,000 steps (nor the decoder alone in 1,500, given the true factors).
_STYLEVAE_QUICK_SHAPES = {"per_layer_codes": True, "encoder_channels": 64, "encoder_fc_width": 256}
# The reference runs (committed; below) have the encoder of the quick preset as it was before: pinned back.
_BEFORE_QUICK_ENCODER = {"encoder_channels": 32, "encoder_fc_width": 32}
_CPU_STYLE_LOSS = {"perceptual_weight": 0.0, "perceptual_from_epoch": 20, "vgg_weights": None,
                   "reconstruction": "calibrated"}


def _stylevae_smoke() -> ExperimentConfig:
    return ExperimentConfig(
        name="stylevae-smoke", model="stylegan-vae", dataset="shapes",
        dataset_kwargs={"size": 32},
        model_kwargs={"z_dim": 32, "input_size": 32, "max_channels": 16, **_CPU_STYLE_MODEL},
        loss_kwargs=dict(_CPU_STYLE_LOSS),
        n_train=64, n_test=32,
        train=TrainConfig(epochs=1, batch_size=16, lr=2e-3, ema_half_life_images=10_000.0,
                          beta=BetaConfig("linear", 1.0, warmup_steps=2)),
    )


# The epoch at which the CPU presets' perceptual variants switch their term on (notebook 07).
PERCEPTUAL_SWITCH_EPOCH = 4


def _stylevae_quick() -> ExperimentConfig:
    # 32 px: at 64 px a step costs 4x as much and the same minutes bought 19.7 dB at step 300 against
    # 23.8 dB at step 500 for 32 px (benchmarks/results/stylevae_learning.json). 20,000 shapes (rendered in
    # seconds): with 3,000 the test PSNR stalled near 20 dB. Upright shapes, a code per style layer and an
    # encoder twice as wide as the synthesis: the three changes with which a few thousand steps learn the
    # outlines, not only colour and position (_STYLEVAE_QUICK_SHAPES). 8 epochs of 625 steps of batch 32.
    return ExperimentConfig(
        name="stylevae-quick", model="stylegan-vae", dataset="shapes",
        dataset_kwargs={"size": 32, "fixed_factors": dict(UPRIGHT)},
        model_kwargs={"z_dim": 128, "input_size": 32, "max_channels": 32, **_CPU_STYLE_MODEL,
                      **_STYLEVAE_QUICK_SHAPES},
        # VGG19 features would cost more than the whole model at this size on a CPU: no perceptual term.
        loss_kwargs=dict(_CPU_STYLE_LOSS),
        n_train=20_000, n_test=512,
        # The copy after epoch 4 is where notebook 07's perceptual variants branch off.
        train=TrainConfig(epochs=8, batch_size=32, lr=2e-3, lr_schedule="constant", autocast="auto",
                          ema_half_life_images=10_000.0, beta=BetaConfig("linear", 1.0, warmup_steps=100),
                          keep_checkpoints=(PERCEPTUAL_SWITCH_EPOCH,)),
    )


def _stylevae_full() -> ExperimentConfig:
    return ExperimentConfig(
        name="stylevae-full", model="stylegan-vae", dataset="image-folder",
        # root: a folder of photos (e.g. CelebA's img_align_celeba); set it with an override.
        dataset_kwargs={"size": 128, "root": None},
        model_kwargs={"z_dim": 512, "input_size": 128},
        loss_kwargs={"mse_weight": 1.0, "perceptual_weight": 0.1, "perceptual_from_epoch": 20,
                     "vgg_weights": "imagenet"},
        n_test=0,  # a plain image folder has no test split
        train=TrainConfig(epochs=100, batch_size=32, lr=2e-4, beta=BetaConfig("linear", 1.0, warmup_steps=10_000)),
    )


# Perceptual-term weights of the CPU presets' variants (notebook 07, benchmarks/perceptual_quality.py), by features.
# Each makes the term's gradient with respect to the reconstructions as large as the calibrated pixel term's
# (norms over 256 training shapes, at stylevae-quick's copy after epoch 4, seed 0: pixel 34.0; judge 53.6 per unit
# weight, random VGG19 relu1_2 + relu2_2 0.21-0.22 over two draws), so both variants push as hard as the pixels
# do. Random VGG19 features are small (kaiming init, no ImageNet statistics): the card's 0.1 would make them
# invisible. vgg19-imagenet keeps the card's 0.1 (not measured here: no weights offline).
PERCEPTUAL_VARIANT_WEIGHTS = {"judge": 0.6, "vgg19-random": 160.0, "vgg19-imagenet": 0.1}
# Random VGG19 features up to relu2_2 only: at 32 px the deeper blocks see 8x8 and 4x4 maps and cost 3x more.
PERCEPTUAL_VARIANT_LAYERS = {"vgg19-random": ("relu1_2", "relu2_2")}


def perceptual_variant(config: ExperimentConfig, features: str, *, weight: float | None = None,
                       layers: tuple[str, ...] | None = None, from_epoch: int | None = None) -> ExperimentConfig:
    """``config`` (a StyleGAN-VAE run) with a perceptual term of ``features`` ("judge", "vgg19-random",
    "vgg19-imagenet"; see ``vae_lib.perceptual``) switched on at ``from_epoch``.

    ``from_epoch`` defaults to the first epoch ``config`` keeps a checkpoint of (``train.keep_checkpoints``),
    so that the variant can branch from ``config``'s run there (``experiments.train_or_load(variant,
    branch_from=config, branch_epoch=from_epoch)``) and repeat none of its first epochs; 0 (from scratch)
    when it keeps none before its end. ``weight`` and ``layers`` default to ``PERCEPTUAL_VARIANT_WEIGHTS``
    and ``PERCEPTUAL_VARIANT_LAYERS``. The name becomes ``<name>-<features>``."""
    if features not in PERCEPTUAL_VARIANT_WEIGHTS:
        raise ValueError(f"features must be one of {', '.join(PERCEPTUAL_VARIANT_WEIGHTS)}, got {features!r}")
    if from_epoch is None:
        kept = [e for e in config.train.keep_checkpoints if e < config.train.epochs]
        from_epoch = min(kept) if kept else 0
    loss = {k: v for k, v in config.loss_kwargs.items() if k != "vgg_weights"}
    loss.update(features=features, perceptual_from_epoch=from_epoch,
                perceptual_weight=PERCEPTUAL_VARIANT_WEIGHTS[features] if weight is None else weight)
    if features == "judge":     # the judge's size, named so that the run's hash says which judge it was
        size = config.name.rsplit("-", 1)[-1]
        loss["judge_preset"] = size if size in ("smoke", "quick", "full") else "quick"
    chosen = layers if layers is not None else PERCEPTUAL_VARIANT_LAYERS.get(features)
    if chosen is not None:
        loss["layers"] = list(chosen)
    data = config.to_dict()
    data.update(name=f"{config.name}-{features}", loss_kwargs=loss)
    return ExperimentConfig.from_dict(data)


# Notebook 03's four KL schedules (label -> the run's name suffix) and their budgets per course preset:
# smaller than notebook 02's quick run (60,000 images, 10 epochs), so that four runs fit in one notebook.
KL_SCHEDULES = {"beta=1": "beta1", "linear warm-up": "warmup", "cyclical": "cyclical", "beta=4": "beta4"}
# The fifth run of notebook 03's question 2 (and of benchmarks/kl_schedules.py): beta=1 with free bits.
FREE_BITS_RUN = ("free bits", "freebits", 0.25)
_KL_SCHEDULE_BUDGETS = {"smoke": {}, "quick": {"n_train": 20_000, "n_test": 2_000, "train.epochs": 3},
                        "full": {"n_train": 60_000, "n_test": 2_000, "train.epochs": 10}}


def kl_schedule_configs(preset: str | None = None, *, seed: int = 0,
                        free_bits: bool = False) -> dict[str, ExperimentConfig]:
    """Notebook 03's runs, ``{label: config}`` for the labels of ``KL_SCHEDULES``: the CVAE preset of the course
    preset (``runtime.get_preset(preset)``) with a smaller budget and, per run, its beta schedule:

    ``beta=1`` constant 1; ``linear warm-up`` 0 -> 1 over the first half of the run; ``cyclical`` 4 cycles, each
    rising 0 -> 1 over its first half (Fu et al.'s M = 4, R = 0.5); ``beta=4`` constant 4. ``seed``
    (``train.seed``) gives the same runs with another initialisation and data order
    (``benchmarks/kl_schedules.py`` trains seeds 0, 1, 2; seed 0 is the notebook's run). ``free_bits=True`` adds a
    fifth run, ``"free bits"``: ``beta=1`` with ``loss_kwargs.free_bits`` 0.25 nats per dimension, named
    ``<preset>-kl-freebits`` (the run of the notebook's question 2)."""
    base = get_config("cvae", preset=preset)
    budget = _KL_SCHEDULE_BUDGETS[runtime.get_preset(preset)]
    n_train = budget.get("n_train", base.n_train)
    total_steps = budget.get("train.epochs", base.train.epochs) * math.ceil(n_train / base.train.batch_size)
    schedules = {
        "beta=1": {"train.beta.kind": "constant", "train.beta.beta": 1.0},
        "linear warm-up": {"train.beta.kind": "linear", "train.beta.beta": 1.0,
                           "train.beta.warmup_steps": total_steps // 2},
        "cyclical": {"train.beta.kind": "cyclical", "train.beta.beta": 1.0, "train.beta.n_cycles": 4,
                     "train.beta.ratio": 0.5},
        "beta=4": {"train.beta.kind": "constant", "train.beta.beta": 4.0},
    }
    check_int("seed", seed, minimum=0)
    seeded = {"train.seed": seed} if seed != base.train.seed else {}
    configs = {label: apply_overrides(base, {"name": f"{base.name}-kl-{KL_SCHEDULES[label]}", **budget, **overrides,
                                             **seeded})
               for label, overrides in schedules.items()}
    if free_bits:
        label, slug, nats = FREE_BITS_RUN
        configs[label] = apply_overrides(configs["beta=1"], {"name": f"{base.name}-kl-{slug}",
                                                             "loss_kwargs.free_bits": nats})
    return configs


# The longer run shown beside the quick one in notebook 06 (issue 11): the quick preset's model and loss on
# upright shapes, trained 32 epochs (20,000 steps, about an hour on 2 CPU cores) instead of 6. Its checkpoint is
# committed (experiments.REFERENCE_RUN_DIR) as `export` writes it (weights, config, history; no optimiser
# state); this command, from the repository's root, retrains it into runs/ and exports it
# (tests/test_reference_run.py checks that it builds stylevae_reference_config()).
REFERENCE_EPOCHS = 32


REFERENCE_NAME, PER_LAYER_REFERENCE_NAME = "stylevae-reference", "stylevae-reference-perlayer"


def _reference_overrides(per_layer_codes: bool, seed: int) -> dict[str, Any]:
    """What a reference run changes in ``stylevae-quick`` beyond the epochs (the one place for it)."""
    # The references were trained before the quick preset took its shape-learning options (and its constant lr):
    # their encoder widths and schedule are pinned to the values they were trained with.
    overrides = {"name": PER_LAYER_REFERENCE_NAME if per_layer_codes else REFERENCE_NAME,
                 "dataset_kwargs.fixed_factors": dict(UPRIGHT), "train.keep_checkpoints": [],
                 "model_kwargs.per_layer_codes": bool(per_layer_codes),
                 **{f"model_kwargs.{key}": value for key, value in _BEFORE_QUICK_ENCODER.items()},
                 "train.lr_schedule": "cosine"}
    if seed != 0:
        overrides["train.seed"] = seed
    return overrides


def reference_folder(per_layer_codes: bool = False, seed: int = 0) -> str:
    """The folder name of a committed reference run (under ``reference/``; its run name, plus ``-seed<s>``)."""
    name = _reference_overrides(per_layer_codes, seed)["name"]
    return f"{name}-seed{seed}" if seed != 0 else name


def _reference_command(per_layer_codes: bool = False, seed: int = 0) -> str:
    folder = reference_folder(per_layer_codes, seed)
    sets = " ".join(f"--set '{key}={json.dumps(value)}'" if not isinstance(value, str) else f"--set {key}={value}"
                    for key, value in _reference_overrides(per_layer_codes, seed).items())
    return (f"python -m vae_lib train --config stylevae-quick --epochs {REFERENCE_EPOCHS} {sets} --out runs/{folder} "
            f"&& python -m vae_lib export --out runs/{folder} --to reference/{folder}")


REFERENCE_COMMAND = _reference_command()
# The same run with a code per style layer (model_kwargs.per_layer_codes; notebook 06, section 9).
PER_LAYER_REFERENCE_COMMAND = _reference_command(per_layer_codes=True)
# And that run with another seed, which splits the factors at another crossover (notebook 06).
PER_LAYER_SEED1_REFERENCE_COMMAND = _reference_command(per_layer_codes=True, seed=1)


def stylevae_reference_config(per_layer_codes: bool = False, seed: int = 0) -> ExperimentConfig:
    """The reference StyleGAN-VAE run: ``stylevae-quick`` on upright shapes (``fixed_factors={"rotation": 4}``),
    32 epochs instead of 6, no kept epoch copies. Upright, because a small style decoder learns 5 upright outlines
    in the steps a CPU affords but not 5 outlines at 8 angles (``benchmarks/README.md``, "Why no shape").
    ``per_layer_codes``: the same with one chunk of z per style layer (``stylevae-reference-perlayer``); ``seed``:
    ``train.seed`` (the committed runs: 0, and 1 for ``stylevae-reference-perlayer-seed1``). The folder each is
    committed in: ``reference_folder(per_layer_codes, seed)``."""
    return apply_overrides(_stylevae_quick(), {**_reference_overrides(per_layer_codes, seed),
                                               "train.epochs": REFERENCE_EPOCHS})


PRESETS = {
    "cvae-smoke": _cvae_smoke,
    "cvae-quick": _cvae_quick,
    "cvae-full": _cvae_full,
    "stylevae-smoke": _stylevae_smoke,
    "stylevae-quick": _stylevae_quick,
    "stylevae-full": _stylevae_full,
}


def get_config(name: str, preset: str | None = None, **overrides) -> ExperimentConfig:
    """A fresh preset config: ``get_config("cvae-quick")``, or ``get_config("cvae", preset="quick")``.

    A family name alone ("cvae", "stylevae") takes the size from ``runtime.get_preset(preset)``,
    i.e. ``$VAE_COURSE_PRESET`` when ``preset`` is None. Other spellings of a family ("stylegan-vae",
    "stylegan-vae-quick") are normalised (``preset_name``). ``overrides`` are dotted keys
    (see ``apply_overrides``).
    """
    name = preset_name(name)
    if name in FAMILIES:
        name = f"{name}-{runtime.get_preset(preset)}"
    elif preset is not None:
        raise ValueError(f"preset={preset!r} goes with a family name ({', '.join(FAMILIES)}), "
                         f"not with the full preset name {name!r}")
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"Unknown config {name!r}{hint}: choose one of {', '.join(PRESETS)} "
                         f"or a family ({', '.join(FAMILIES)}) with preset=...")
    config = PRESETS[name]()
    return apply_overrides(config, overrides) if overrides else config
