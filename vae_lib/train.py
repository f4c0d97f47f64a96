"""One Trainer for every model: AdamW, grad-norm clipping, a beta schedule, progress bars,
atomic resumable checkpoints, seeds and a history of every loss term.

The Trainer knows nothing of a particular model. It needs a model and a loss function::

    loss_fn(model, batch, *, beta: float, epoch: int) -> dict[str, Tensor]

where ``batch`` is what the loader yields (a tuple of tensors, moved to the device), the dict has a
scalar ``"loss"`` to minimise and any other scalar terms to log ("nll", "kl", ...).

Counting: ``step`` is the 0-based index of an optimizer update and ``epoch`` the 0-based index of a
pass over the data; both are what the schedule and ``loss_fn`` see. ``trainer.step`` and
``trainer.epoch`` count the updates and epochs *done*. The history::

    {"steps":  [{"step", "epoch", "beta", "lr", "loss", <terms>, "grad_norm"}, ...],   one per update
     "epochs": [{"epoch", "time_s", "precision", <mean of each of those terms>, "val_<term>"...}, ...]}

``grad_norm`` is the global gradient norm before clipping. Checkpoints (``run_dir/checkpoint.pt``,
written to a temporary file and renamed, so a crash never leaves half a file) hold the model,
optimizer, schedule, counters, config, history, the loader's position and every RNG state, so
that a resumed run continues exactly as if it had not stopped (mid-epoch too, for a loader whose
order is fixed or restored by ``load_state_dict``, as ``InMemoryLoader``'s is).

Guards: a NaN/inf loss term or gradient norm raises ``NonFiniteLossError`` before the bad update,
leaving the last checkpoint as it was.

Ctrl-C: the checkpoint it saves is always the state at a step boundary, so that the resumed run is
bit for bit the uninterrupted one, whenever the interrupt came (``tests/test_interrupts.py`` checks
this at random points). While ``fit`` runs in the main thread, SIGINT during the update itself
(``optimizer.step`` and the counters, which change the parameters one tensor at a time) is held
until the update is complete; anywhere else (loader, forward, backward, validation) the step in
progress is abandoned: the RNG states and the model's buffers (BatchNorm statistics, ``w_avg``),
which the forward pass may have advanced, go back to their values at the last boundary, then the
checkpoint is saved and KeyboardInterrupt re-raised. A KeyboardInterrupt raised some other way
inside an update (not through the signal) leaves the last checkpoint as it was, and the Trainer
refuses to go on until ``load_checkpoint``: its parameters are half updated.

Checkpoints are written every ``checkpoint_every_epochs`` epochs, every ``checkpoint_every_steps``
steps, every ``checkpoint_every_seconds`` of wall time (so a kill -9 loses at most that) and at
the end. While ``fit`` trains into ``run_dir`` it holds the folder's lock (``vae_lib.runlock``): a
second process training there fails at once with ``RunLockedError``; temporary files of saves
killed earlier are removed.

Speed (``TrainConfig.channels_last``, ``autocast``, ``compile``, ``num_threads``; see
``vae_lib.fastpaths`` and ``benchmarks/``): by default channels_last on CUDA for conv models and
on the CPU for the card-1 CVAE in fp32, where it was measured faster; the rest is opt-in.

Several processes (``torchrun``; see ``vae_lib.distributed``): when a process group of 2+ ranks is
initialised, the loss runs inside ``DistributedDataParallel``, ``fit`` shards in-memory loaders
across the ranks (the global batch stays ``batch_size``), the logged terms are means over the
ranks, and only rank 0 writes checkpoints and shows progress. The checkpoint holds the plain
model's state, so it resumes with any world size. With one process nothing of this happens.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vae_lib.configs import TrainConfig
from vae_lib.distributed import all_reduce_mean, all_reduce_sum, rank_and_world_size, shard
from vae_lib.ema import WeightEMA, ema_model_state
from vae_lib.fastpaths import (autocast, grad_scaler, resolve_autocast, resolve_channels_last, set_num_threads,
                               to_channels_last)
from vae_lib.runlock import remove_stale_temp_files, run_lock
from vae_lib.runtime import pick_device, seed_everything
from vae_lib.schedules import build_schedule, lr_at
from vae_lib.utils import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def kept_checkpoint_name(epoch: int) -> str:
    """The file name of the copy of the checkpoint kept after ``epoch`` (``TrainConfig.keep_checkpoints``)."""
    return f"checkpoint-epoch{epoch}.pt"
# Keys of a step record that are counters, not terms to average.
_COUNTERS = ("step", "epoch")

LossFn = Callable[..., dict]
# Wall time for checkpoint_every_seconds (a name of our own, so that tests can run a fake clock).
_clock = time.monotonic


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/inf; training stopped before the bad update."""

    def __init__(self, step: int, epoch: int, terms: dict[str, float], checkpoint: Path | None):
        self.step, self.epoch, self.terms, self.checkpoint = step, epoch, terms, checkpoint
        shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items())
        kept = (f"The last good checkpoint, {checkpoint}, is untouched." if checkpoint
                else "No checkpoint was written (no run_dir, or none saved yet).")
        super().__init__(
            f"Non-finite value at step {step} (epoch {epoch}): {shown}. Training stopped before this "
            f"update. {kept}\nHints: lower the learning rate; keep grad_clip; check that the data "
            "range matches the likelihood (Bernoulli needs x in [0, 1]); clamp logvar; warm beta up "
            "from 0; look for a term that is NaN already at step 0 (bad input).")


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model; the message names the file."""


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` of a checkpoint (weights only, onto the CPU), with a one-line error naming
    the file when it is empty, truncated or not a checkpoint at all."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if path.exists() and path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): delete it to start the run again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001  zip, pickle and EOF errors all mean "not a checkpoint"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: it is corrupt or not a checkpoint "
                              f"({type(error).__name__}: {first[:200]}); delete it to start the run again "
                              "or put back a good copy") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a vae_lib checkpoint (no 'model' entry)")
    return state


# The entries of an exported checkpoint (``export_state``): what evaluation and plots need.
EXPORTED_KEYS = ("model", "step", "epoch", "config", "history")


def export_state(state: dict) -> dict:
    """A checkpoint to publish, not to resume: the weights to evaluate (the EMA when the run kept one,
    else the trained weights) under ``"model"``, with the config, the history and the step and epoch;
    no optimiser moments, schedule, loader position or RNG states (for Adam, the moments alone are
    twice the weights). ``experiments.load_trained`` loads it; ``Trainer.load_checkpoint`` refuses it."""
    missing = [key for key in EXPORTED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"not a finished vae_lib checkpoint: no {', '.join(missing)}")
    exported = {key: state[key] for key in EXPORTED_KEYS}
    if state.get("ema"):
        exported["model"] = ema_model_state(state["ema"])
    return {**exported, "exported": True}


def _capture_rng() -> dict:
    """The RNG states as they are (cheap: taken at every step boundary)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(legacy=False)}
    # Only devices in use: asking an untouched CUDA for its state would start a context.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def _rng_state() -> dict:
    state = _capture_rng()
    # NumPy's key array is stored as a list so that the checkpoint loads with weights_only=True.
    np_state = state["numpy"]
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    return state


def _set_rng_state(state: dict) -> None:
    """Restore what ``_rng_state`` (a checkpoint) or ``_capture_rng`` (a boundary) took."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"], key=np.asarray(np_state["state"]["key"], dtype=np.uint32))
    np.random.set_state(np_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


class _InterruptGuard:
    """SIGINT as Python's default handler raises it, except inside ``update()`` blocks, where it
    is held and raised when the block ends: an update is never left half applied.

    Installed only in the main thread (the only one Python delivers signals to) and only over
    Python's default handler, so a handler of the application's own (or SIG_IGN) is left alone.
    """

    def __init__(self):
        self.depth, self.pending, self._previous = 0, False, None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        self.depth, self.pending = 0, False

    def _handle(self, signum, frame):
        if self.depth:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def update(self, raise_pending: bool = True):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if not self.depth and self.pending:
            self.pending = False
            if raise_pending:
                raise KeyboardInterrupt


class HalfUpdatedError(RuntimeError):
    """The Trainer was interrupted inside an optimizer update; its state is not a step's state."""


class _LossModule(torch.nn.Module):
    """The model and its loss as one module: DistributedDataParallel and torch.compile wrap a
    module's forward, and a loss function calls the model's other methods (encode, decode...)."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch, beta: float, epoch: int) -> dict:
        return self.loss_fn(self.model, batch, beta=beta, epoch=epoch)


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch, beta=..., epoch=...)["loss"]``.

    Args:
        model: any ``nn.Module``; moved to the config's device.
        loss_fn: see the module docstring.
        config: optimiser, clip, schedule, seed, device, checkpoint cadence (default: the CVAE card).
        run_dir: where ``checkpoint.pt`` goes; None keeps everything in memory.
        schedule: a callable ``step -> beta`` that replaces the one ``config.beta`` describes.
        progress: show a tqdm bar with the live loss, KL and beta.

    ``fit`` seeds Python, NumPy and torch with ``config.seed`` when it starts a fresh run;
    ``load_checkpoint`` restores the RNG states of the run instead.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, config: TrainConfig | None = None,
                 run_dir: str | Path | None = None, *, schedule: Callable[[int], float] | None = None,
                 progress: bool = True):
        self.config = config if config is not None else TrainConfig()
        set_num_threads(self.config.num_threads)
        self.device = pick_device(self.config.device)
        self.model = model.to(self.device)
        self.autocast = resolve_autocast(self.config.autocast, self.device)
        self.channels_last = resolve_channels_last(self.config.channels_last, self.model, self.device, self.autocast)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.rank, self.world_size = rank_and_world_size()
        self.loss_fn = loss_fn
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.schedule = schedule
        self.progress = progress
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        # The averaged weights that evaluation and sampling use (config.ema_half_life_images).
        self.ema = (WeightEMA(self.model, self.config.batch_size, self.config.ema_half_life_images)
                    if self.config.ema_half_life_images else None)
        self.step = 0
        self.epoch = 0
        self._run_steps: int | None = None
        self.history: dict[str, list[dict]] = {"steps": [], "epochs": []}
        self._seeded = False
        # The loader's state at the start of the unfinished epoch: what a resumed run replays.
        self._loader_state: dict | None = None
        self._scaler = grad_scaler(self.device, self.autocast)
        # (loss_fn, its DDP / compiled wrapper), built on first use.
        self._wrapped: tuple[LossFn, Callable] | None = None
        # Ctrl-C handling (see the module docstring): the guard while fit runs, the RNG and buffer
        # state of the last step boundary, and True once an update was torn by an exception (an
        # interrupt that did not come through the guard).
        self._guard = _InterruptGuard()
        self._boundary: tuple[dict, dict[str, torch.Tensor]] | None = None
        self._half_updated = False
        self._last_save = _clock()

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_NAME if self.run_dir is not None else None

    # ------------------------------------------------------------------ training
    def fit(self, train_loader: Iterable, epochs: int | None = None, val_loader: Iterable | None = None) -> dict:
        """Train until ``epochs`` epochs (default ``config.epochs``) or ``config.max_steps`` updates are
        done in total, counting those of a resumed checkpoint; return the history.

        ``val_loader``, if given, is evaluated after each epoch (``model.eval()``, no grad) and its
        mean terms are logged as ``val_<term>``.
        """
        epochs = self.config.epochs if epochs is None else epochs
        self._check_whole()
        locked = self.run_dir is not None and self.rank == 0
        with run_lock(self.run_dir) if locked else contextlib.nullcontext(), self._guard:
            if locked:
                remove_stale_temp_files(self.run_dir)
            return self._fit(train_loader, epochs, val_loader)

    def _fit(self, train_loader: Iterable, epochs: int, val_loader: Iterable | None) -> dict:
        # The whole run as configured (not this call's ``epochs``): what the beta schedule and a
        # cosine lr span.
        self._run_steps = self._planned_steps(train_loader)
        self._beta_schedule(self._run_steps)
        if not self._seeded and self.step == 0:
            seed_everything(self.config.seed)
        self._seeded = True
        if self.world_size > 1:
            train_loader = shard(train_loader, self.rank, self.world_size)
            val_loader = shard(val_loader, self.rank, self.world_size) if val_loader is not None else None
            if self.rank > 0:
                # Other noise than rank 0's (whose RNG state a checkpoint holds), for any world size.
                seed_everything(self.config.seed + 1_000_003 * self.rank + self.step)
        if self._loader_state is not None and hasattr(train_loader, "load_state_dict"):
            train_loader.load_state_dict(self._loader_state)

        total = self._planned_steps(train_loader, epochs)
        bar = tqdm(total=total, initial=self.step, disable=not self.progress or self.rank != 0,
                   dynamic_ncols=True)
        self._mark_boundary()
        self._last_save = _clock()
        try:
            while not self.target_reached(epochs):
                bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
                self._run_epoch(train_loader, val_loader, bar, epochs)
        except KeyboardInterrupt:
            self._interrupted(bar)
            raise
        finally:
            bar.close()
        return self.history

    def _interrupted(self, bar) -> None:
        """After a KeyboardInterrupt in ``fit``: save the last step boundary's state, or keep the
        last checkpoint when the interrupt tore an update."""
        if self._half_updated:
            kept = (f"the last checkpoint, {self.checkpoint_path}, is kept as it was" if self._checkpoint_exists()
                    else "no checkpoint was written")
            bar.write(f"Interrupted inside the optimizer update of step {self.step}: {kept}; this Trainer "
                      "must load_checkpoint() before it trains again")
            return
        self._restore_boundary()
        if self.run_dir is not None:
            # A second Ctrl-C must not cut this save short (atomic_write would keep the old file,
            # but the work since then would be lost).
            with self._guard.update(raise_pending=False):
                self.save_checkpoint()
            bar.write(f"Interrupted at step {self.step}; checkpoint saved to {self.checkpoint_path}")

    def _mark_boundary(self) -> None:
        """Remember the RNG states and buffers of a step boundary (what an interrupt goes back to)."""
        previous = self._boundary[1] if self._boundary is not None else {}
        buffers = {}
        for name, buffer in self.model.named_buffers():
            kept = previous.get(name)
            if (kept is not None and kept.shape == buffer.shape and kept.dtype == buffer.dtype
                    and kept.device == buffer.device):
                buffers[name] = kept.copy_(buffer)
            else:
                buffers[name] = buffer.detach().clone()
        self._boundary = (_capture_rng(), buffers)

    def _restore_boundary(self) -> None:
        if self._boundary is None:
            return
        rng, buffers = self._boundary
        _set_rng_state(rng)
        with torch.no_grad():
            for name, buffer in self.model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])

    def _check_whole(self) -> None:
        if self._half_updated:
            raise HalfUpdatedError(
                "this Trainer was interrupted inside an optimizer update, so its parameters are half "
                "updated: call load_checkpoint() (or build a new Trainer) before training or saving again")

    def target_reached(self, epochs: int | None = None) -> bool:
        """True once ``epochs`` (default ``config.epochs``) epochs or ``config.max_steps`` steps are done."""
        epochs = self.config.epochs if epochs is None else epochs
        max_steps = self.config.max_steps
        return self.epoch >= epochs or (max_steps is not None and self.step >= max_steps)

    def _planned_steps(self, loader: Iterable, epochs: int | None = None) -> int | None:
        epochs = self.config.epochs if epochs is None else epochs
        try:
            planned = epochs * len(loader)
        except TypeError:  # a loader without len()
            planned = None
        if self.config.max_steps is not None:
            planned = self.config.max_steps if planned is None else min(planned, self.config.max_steps)
        return planned

    def _run_epoch(self, loader: Iterable, val_loader: Iterable | None, bar, epochs: int) -> None:
        epoch, start = self.epoch, time.perf_counter()
        if hasattr(loader, "state_dict"):
            self._loader_state = loader.state_dict()
        # After a mid-epoch resume, skip the batches this epoch has already seen.
        done = sum(1 for record in self.history["steps"] if record["epoch"] == epoch)
        batches = itertools.islice(iter(loader), done, None)
        max_steps = self.config.max_steps
        finished_epoch = True
        self.model.train()
        for batch in batches:
            if max_steps is not None and self.step >= max_steps:
                finished_epoch = False
                break
            record = self.train_step(batch, epoch)
            bar.update(1)
            if self.step % self.config.log_every_steps == 0:
                bar.set_postfix(_postfix(record), refresh=False)
            if self.run_dir is not None and self._checkpoint_due():
                self.save_checkpoint()
        self._close_epoch(epoch, val_loader, time.perf_counter() - start)
        with self._guard.update(), self._tearing():  # the counter and the loader position change together
            if finished_epoch:
                self.epoch += 1
                if hasattr(loader, "state_dict"):
                    self._loader_state = loader.state_dict()
            self._mark_boundary()
        if self.run_dir is not None and (self.epoch % self.config.checkpoint_every_epochs == 0
                                         or self.target_reached(epochs)):
            self.save_checkpoint()
        if self.run_dir is not None and self.epoch in self.config.keep_checkpoints:
            self.save_checkpoint(self.kept_checkpoint_path(self.epoch))

    def _checkpoint_due(self) -> bool:
        every_steps, every_s = self.config.checkpoint_every_steps, self.config.checkpoint_every_seconds
        return bool((every_steps and self.step % every_steps == 0)
                    or (every_s is not None and _clock() - self._last_save >= every_s))

    def train_step(self, batch, epoch: int | None = None) -> dict:
        """One optimizer update on ``batch`` (what ``fit`` does for each batch); return its history record.

        ``epoch`` defaults to ``self.epoch``. The caller puts the model in training mode (``fit`` does).
        """
        epoch = self.epoch if epoch is None else epoch
        self._check_whole()
        beta = float(self._beta_schedule()(self.step))
        lr = self._set_lr()
        batch = _to_device(batch, self.device)
        if self.channels_last:
            batch = to_channels_last(batch)
        with autocast(self.device, self.autocast):
            terms = self._loss_terms(batch, beta, epoch)
        names = _check_terms(terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss = terms["loss"]
        (self._scaler.scale(loss) if self._scaler is not None else loss).backward()
        if self._scaler is not None:
            self._scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients()
        # One device->host transfer per step: every logged term and the finiteness check.
        values = torch.stack([torch.as_tensor(terms[n]).detach().float().reshape(()).to(grad_norm.device)
                              for n in names] + [grad_norm.float()])
        if self.world_size > 1:
            # Means over the ranks: the same record (and the same NaN verdict) on every rank.
            values = all_reduce_mean(values)
        values = values.tolist()
        record = {"step": self.step, "epoch": epoch, "beta": beta, "lr": lr, **dict(zip(names, values[:-1])),
                  "grad_norm": values[-1]}
        # With fp16 an inf gradient norm is an overflow the scaler answers by skipping the update.
        checked = values if self._scaler is None else values[:-1]
        if not all(math.isfinite(v) for v in checked):
            raise NonFiniteLossError(self.step, epoch, {k: v for k, v in record.items() if k not in _COUNTERS},
                                     self.checkpoint_path if self._checkpoint_exists() else None)
        # The update: parameters, optimizer state, scaler, history and counter change together.
        with self._guard.update(), self._tearing():
            if self._scaler is not None:
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.history["steps"].append(record)
            self.step += 1
            self._mark_boundary()
        return record

    @contextlib.contextmanager
    def _tearing(self):
        """Any exception inside the block leaves the state between two steps: say so, for good."""
        try:
            yield
        except BaseException:
            self._half_updated = True
            raise

    def _beta_schedule(self, total_steps: int | None = None, saved: dict | None = None) -> Callable[[int], float]:
        """``self.schedule``, built from ``config.beta`` (the one place that builds it) if none was given;
        ``total_steps``: the run's length, which a cyclical schedule and a warm-up fraction need;
        ``saved``: a checkpoint's schedule state (``schedules.build_schedule``)."""
        if self.schedule is None:
            self.schedule = build_schedule(self.config.beta, total_steps, saved=saved)
        return self.schedule

    def _set_lr(self) -> float:
        """The learning rate of this step under ``config.lr_schedule`` (``schedules.lr_at``), set on
        the optimizer; a pure function of the step and the planned steps, so a resumed run continues
        the same curve. A constant lr leaves the optimizer's as it is."""
        if self.config.lr_schedule == "constant":
            return lr_at(self.step, None, self.config.lr, "constant")
        total = self._run_steps if self._run_steps is not None else self.config.max_steps
        if not total:
            raise ValueError(f"lr_schedule={self.config.lr_schedule!r} needs the run's length: train with fit() "
                             "on a loader with len(), or set max_steps.")
        lr = lr_at(self.step, total, self.config.lr, self.config.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _loss_terms(self, batch, beta: float, epoch: int) -> dict:
        if self.world_size == 1 and not self.config.compile:
            return self.loss_fn(self.model, batch, beta=beta, epoch=epoch)
        if self._wrapped is None or self._wrapped[0] is not self.loss_fn:
            module = _LossModule(self.model, self.loss_fn)
            if self.world_size > 1:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                    if self.device.type == "cuda" else None
                module = DistributedDataParallel(module, device_ids=ids)
            if self.config.compile:
                module = torch.compile(module)
            self._wrapped = (self.loss_fn, module)
        return self._wrapped[1](batch, beta, epoch)

    def _clip_gradients(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            raise RuntimeError("loss_fn's 'loss' produced no gradient for any model parameter")
        if self.config.grad_clip is None:
            return torch.nn.utils.get_total_norm([p.grad for p in params])
        return torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)

    def _close_epoch(self, epoch: int, val_loader: Iterable | None, seconds: float) -> None:
        steps = [r for r in self.history["steps"] if r["epoch"] == epoch]
        # The arithmetic the epoch ran in ("bf16", "fp16" or "fp32"): "auto" depends on the machine, and so
        # does time_s, so the record says which precision a time (and a result) came from.
        summary = {"epoch": epoch, "time_s": seconds, "precision": self.autocast or "fp32"}
        for name in steps[0] if steps else ():
            if name not in _COUNTERS:
                summary[name] = sum(r[name] for r in steps) / len(steps)
        if val_loader is not None:
            beta = steps[-1]["beta"] if steps else float(self.schedule(self.step))
            summary.update({f"val_{k}": v for k, v in self.validate(val_loader, beta, epoch).items()})
        epochs = self.history["epochs"]
        # A run stopped by max_steps mid-epoch and later continued re-closes the same epoch.
        if epochs and epochs[-1]["epoch"] == epoch:
            epochs[-1] = summary
        else:
            epochs.append(summary)

    @torch.no_grad()
    def validate(self, loader: Iterable, beta: float, epoch: int | None = None) -> dict[str, float]:
        """Mean of each term of ``loss_fn`` over ``loader`` (weighted by batch size), in eval mode,
        for ``eval_model`` (the EMA weights when the config keeps them)."""
        epoch = self.epoch if epoch is None else epoch
        was_training = self.model.training
        self.model.eval()
        model = self.eval_model
        sums, count = None, 0
        for batch in loader:
            batch = _to_device(batch, self.device)
            terms = self.loss_fn(model, batch, beta=beta, epoch=epoch)
            names = [n for n in _check_terms(terms) if n != "beta"]
            n = len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            values = torch.stack([torch.as_tensor(terms[k]).float().reshape(()) for k in names]) * n
            sums = values if sums is None else sums + values
            count += n
        self.model.train(was_training)
        if sums is None:
            return {}
        if self.world_size > 1:  # every rank saw its shard: add them up
            totals = all_reduce_sum(torch.cat([sums, sums.new_tensor([count])]))
            sums, count = totals[:-1], totals[-1]
        return dict(zip(names, (sums / count).tolist()))

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model to evaluate and sample from: the EMA of the weights if kept, else the model."""
        return self.ema.module if self.ema is not None else self.model

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs (tensors and plain Python only: loads with weights_only)."""
        state_fn = getattr(self.schedule, "state_dict", None)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": state_fn() if state_fn is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "history": self.history,
            "loader": self._loader_state,
            "rng": _rng_state(),
            **({"scaler": self._scaler.state_dict()} if self._scaler is not None else {}),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._half_updated = False
        if state["schedule"] is not None:
            saved = state["schedule"]
            self._beta_schedule(saved.get("total_steps"), saved).load_state_dict(saved)
        self.step, self.epoch = state["step"], state["epoch"]
        self.history = state["history"]
        self._loader_state = state["loader"]
        _set_rng_state(state["rng"])
        if self._scaler is not None and "scaler" in state:
            self._scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self._seeded = True

    def kept_checkpoint_path(self, epoch: int) -> Path | None:
        """``run_dir/checkpoint-epoch<epoch>.pt``: the copy kept after that epoch (``keep_checkpoints``)."""
        return None if self.run_dir is None else self.run_dir / kept_checkpoint_name(epoch)

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write ``state_dict()`` atomically to ``path`` (default ``run_dir/checkpoint.pt``).

        Under torch.distributed only rank 0 writes; the other ranks return the path untouched.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("save_checkpoint needs a path or a Trainer with run_dir")
        if self.rank != 0:
            return path
        self._check_whole()
        state = self.state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp))
        self._last_save = _clock()
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> None:
        """Restore a checkpoint (default ``run_dir/checkpoint.pt``); ``fit`` then continues from it.

        A file that is not a readable checkpoint, or one of another model (a z_dim that differs,
        say), is a ``CheckpointError`` naming it."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("load_checkpoint needs a path or a Trainer with run_dir")
        remove_stale_temp_files(path.parent)
        state = read_checkpoint(path)
        if state.get("exported"):
            raise CheckpointError(f"checkpoint {path} was exported (weights and history, `vae-lib export`): it has no "
                                  "optimiser or schedule to resume from; train into another folder")
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            detail = " ".join(str(error).split())[:300] if "size mismatch" in str(error) else first
            raise CheckpointError(f"checkpoint {path} does not fit this model and config ({detail}); was the "
                                  "config changed after it was saved?") from error

    def _checkpoint_exists(self) -> bool:
        return self.checkpoint_path is not None and self.checkpoint_path.exists()


def _check_terms(terms) -> list[str]:
    """The names of the terms to log, 'loss' first; a clear error for a malformed loss output."""
    if not isinstance(terms, dict) or "loss" not in terms:
        got = sorted(terms) if isinstance(terms, dict) else type(terms).__name__
        raise ValueError(f"loss_fn must return a dict with a 'loss' entry (and other scalar terms), got {got}")
    for name, value in terms.items():
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"loss term {name!r} must be a scalar, got shape {tuple(value.shape)}")
    return ["loss"] + [n for n in terms if n not in ("loss", "beta")]


def _postfix(record: dict) -> dict:
    shown = {"loss": f"{record['loss']:.4g}"}
    if "kl" in record:
        shown["kl"] = f"{record['kl']:.3g}"
    shown["beta"] = f"{record['beta']:.3g}"
    return shown
