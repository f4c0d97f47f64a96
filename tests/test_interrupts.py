"""Ctrl-C at any moment of training: the resumed run equals the uninterrupted one bit for bit.

A tiny VAE with a BatchNorm (buffers the forward pass changes) and a loss that draws from torch's,
Python's and NumPy's RNGs, so that an interrupt in the middle of a step has something to spoil.
"""
import hashlib
import math
import random
import signal
import sys

import numpy as np
import pytest
import torch
from torch import nn

import torch.optim.adam as adam_module

from vae_lib import train
from vae_lib.configs import BetaConfig, TrainConfig
from vae_lib.train import HalfUpdatedError, Trainer


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler during each test: a shell that starts pytest in the background (``cmd &``
    without job control) hands it SIGINT ignored, and these tests are about what the Trainer does to the
    handler a user's session has."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class TinyBNVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(4)  # running statistics: changed by every training forward
        self.encoder = nn.Linear(4, 4)
        self.decoder = nn.Linear(2, 4)

    def forward(self, x):
        mu, logvar = self.encoder(self.norm(x)).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z), mu, logvar


def loss_fn(model, batch, *, beta, epoch):
    x, _ = batch
    x_hat, mu, logvar = model(x)
    jitter = 1 + 0.01 * random.random() + 0.01 * float(np.random.rand())
    nll = ((x_hat - x) ** 2).sum(1).mean() * jitter
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
    return {"loss": nll + beta * kl, "nll": nll, "kl": kl}


class Loader:
    """24 samples in batches of 6, a new order each epoch from (seed, epoch), with a state_dict."""

    def __init__(self, n=24, batch_size=6, seed=0, on_batch=None):
        g = torch.Generator().manual_seed(123 + seed)
        self.x, self.y = torch.randn(n, 4, generator=g), torch.zeros(n, dtype=torch.long)
        self.batch_size, self.epoch, self.on_batch = batch_size, 0, on_batch

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 + self.epoch))
        self.epoch += 1
        for i in range(0, len(order), self.batch_size):
            if self.on_batch is not None:
                self.on_batch(i // self.batch_size)
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]

    def state_dict(self):
        return {"epoch": self.epoch}

    def load_state_dict(self, state):
        self.epoch = state["epoch"]


def val_loader():
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(5, 4, generator=g), torch.zeros(5, dtype=torch.long))]


def new_trainer(run_dir=None, model_seed=0, loss=loss_fn, **kw):
    torch.manual_seed(model_seed)
    config = TrainConfig(device="cpu", epochs=kw.pop("epochs", 2), checkpoint_every_seconds=None,
                         beta=BetaConfig("linear", 1.0, warmup_steps=4), **kw)
    return Trainer(TinyBNVAE(), loss, config, run_dir=run_dir, progress=False)


def scramble_rngs():
    random.seed(2024)
    np.random.seed(2024)
    torch.manual_seed(2024)


def resume(run_dir, **kw):
    """What a new process does: a fresh model, other RNG states, then the checkpoint if there is one."""
    has_checkpoint = (run_dir / "checkpoint.pt").exists()
    trainer = new_trainer(run_dir, model_seed=99 if has_checkpoint else 0, **kw)
    if has_checkpoint:
        scramble_rngs()
        trainer.load_checkpoint()
    trainer.fit(Loader(), val_loader=val_loader())
    return trainer


def state(trainer):
    """Everything that must match: parameters, buffers, optimizer moments and the step records."""
    tensors = [t.detach().clone() for t in trainer.model.state_dict().values()]
    for p in trainer.model.parameters():
        tensors += [trainer.optimizer.state[p][k].clone() for k in ("step", "exp_avg", "exp_avg_sq")]
    return tensors, trainer.history["steps"], [{k: v for k, v in e.items() if k != "time_s"}
                                               for e in trainer.history["epochs"]]


def assert_identical(a, b):
    (ta, sa, ea), (tb, sb, eb) = state(a), state(b)
    assert len(ta) == len(tb) and all(torch.equal(x, y) for x, y in zip(ta, tb))
    assert sa == sb and ea == eb


@pytest.fixture(scope="module")
def straight():
    trainer = new_trainer()
    trainer.fit(Loader(), val_loader=val_loader())
    return trainer


def test_guard_is_installed_over_the_default_handler():
    # The interrupt tests below rely on Python's default SIGINT handler being in place.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    trainer = new_trainer()
    trainer.fit(Loader(), epochs=1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # and put back afterwards


@pytest.mark.parametrize("step", [0, 3, 5, 7])
def test_interrupt_in_the_loss_after_the_forward_pass(tmp_path, straight, step):
    """By then the step has drawn random numbers and moved the BatchNorm statistics."""
    def interrupted_loss(model, batch, *, beta, epoch):
        terms = loss_fn(model, batch, beta=beta, epoch=epoch)
        if trainer.step == step:
            raise KeyboardInterrupt
        return terms

    trainer = new_trainer(tmp_path, loss=interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(Loader(), val_loader=val_loader())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == step
    assert_identical(straight, resume(tmp_path))


@pytest.mark.parametrize("batch", [0, 2])
def test_interrupt_in_the_loader(tmp_path, straight, batch):
    calls = []

    def on_batch(i):
        calls.append(i)
        if len(calls) == 4 + batch + 1:  # the second epoch's batch `batch`
            raise KeyboardInterrupt

    trainer = new_trainer(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(Loader(on_batch=on_batch), val_loader=val_loader())
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4 + batch
    assert_identical(straight, resume(tmp_path))


def test_interrupt_during_validation(tmp_path, straight):
    """Validation draws z too: an interrupt there goes back to the end of the epoch's last step."""
    class InterruptingVal(list):
        def __iter__(self):
            for item in super().__iter__():
                torch.randn(3)  # what the loss would draw
                raise KeyboardInterrupt
                yield item

    trainer = new_trainer(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(Loader(), val_loader=InterruptingVal(val_loader()))
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (saved["step"], saved["epoch"]) == (4, 0)
    assert_identical(straight, resume(tmp_path))


def adam_calls(monkeypatch, at_call, action):
    """Run ``action`` inside AdamW's per-parameter loop, on its ``at_call``-th parameter update
    (counted over the run): the moment a Ctrl-C would leave some parameters updated and others not."""
    real = adam_module._get_value
    calls = [0]

    def get_value(x):
        calls[0] += 1
        if calls[0] == at_call:
            action()
        return real(x)

    monkeypatch.setattr(adam_module, "_get_value", get_value)


def test_sigint_inside_the_optimizer_update_is_held_until_it_is_complete(tmp_path, straight, monkeypatch):
    n_params = len(list(new_trainer().model.parameters()))
    # Step 5, its third parameter tensor: two are updated, the others not yet.
    adam_calls(monkeypatch, 5 * n_params + 3, lambda: signal.raise_signal(signal.SIGINT))
    trainer = new_trainer(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(Loader(), val_loader=val_loader())
    monkeypatch.undo()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 6  # step 5 was completed, then saved
    assert {int(s["step"]) for s in saved["optimizer"]["state"].values()} == {6}
    assert_identical(straight, resume(tmp_path))


def test_keyboard_interrupt_raised_inside_the_update_keeps_the_last_checkpoint(tmp_path, straight, monkeypatch):
    """Not through the signal (nothing can hold it): the half-updated state is never saved."""
    n_params = len(list(new_trainer().model.parameters()))

    def raise_interrupt():
        raise KeyboardInterrupt

    adam_calls(monkeypatch, 5 * n_params + 3, raise_interrupt)
    trainer = new_trainer(tmp_path)  # saves after epoch 0 (step 4)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(Loader(), val_loader=val_loader())
    monkeypatch.undo()
    checkpoint = tmp_path / "checkpoint.pt"
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert torch.load(checkpoint, weights_only=True)["step"] == 4
    with pytest.raises(HalfUpdatedError, match="load_checkpoint"):
        trainer.fit(Loader())
    with pytest.raises(HalfUpdatedError):
        trainer.save_checkpoint()
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == digest
    assert_identical(straight, resume(tmp_path))
    trainer.load_checkpoint()  # the same Trainer may go on once it has loaded a whole state
    trainer.fit(Loader(), val_loader=val_loader())
    assert_identical(straight, trainer)


def _fit_with_sigint_at(trainer, loader, event):
    """Run ``fit`` and send SIGINT at its ``event``-th profiler event (a Python or C call or return):
    a point anywhere in the loader, forward, backward, optimizer, bookkeeping or checkpoint code."""
    count = [0]

    def profiler(frame, kind, arg):
        count[0] += 1
        if count[0] == event:
            sys.setprofile(None)
            signal.raise_signal(signal.SIGINT)

    def settle():  # a Python call: any pending signal is handled here at the latest
        return None

    interrupted = False
    try:
        sys.setprofile(profiler)
        try:
            trainer.fit(loader, val_loader=val_loader())
        finally:
            sys.setprofile(None)
        settle()
    except KeyboardInterrupt:
        interrupted = True
    return interrupted, count[0]


def test_sigint_at_random_moments_always_resumes_bit_for_bit(tmp_path, straight):
    _, total = _fit_with_sigint_at(new_trainer(), Loader(), event=-1)  # count the events of a run
    rng = random.Random(14)
    trials = 30
    interrupted = 0
    for trial in range(trials):
        run_dir = tmp_path / f"trial{trial}"
        hit, _ = _fit_with_sigint_at(new_trainer(run_dir), Loader(), event=rng.randrange(1, total))
        interrupted += hit
        assert_identical(straight, resume(run_dir))
    assert interrupted == trials
    assert total > 1000  # the points are spread over a whole run's calls


def test_checkpoints_every_few_seconds_of_wall_time(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(train, "_clock", lambda: now[0])

    def slow_loss(model, batch, **kw):
        now[0] += 60.0  # each step takes a minute
        return loss_fn(model, batch, **kw)

    saved_at = []
    real_save = Trainer.save_checkpoint

    def save(self, *args, **kwargs):
        saved_at.append(self.step)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "save_checkpoint", save)
    trainer = new_trainer(tmp_path, loss=slow_loss, epochs=1)
    trainer.config.checkpoint_every_seconds = 150.0
    trainer.fit(Loader(batch_size=2))  # 12 steps of one minute: due after 3, 6, 9, 12 minutes
    assert saved_at == [3, 6, 9, 12, 12]  # the last one is the end-of-epoch checkpoint
    saved_at.clear()
    quiet = new_trainer(tmp_path / "epochs-only", loss=slow_loss, epochs=1)
    quiet.fit(Loader(batch_size=2))
    assert saved_at == [12]


def test_checkpoint_every_seconds_is_a_config_field_with_a_default():
    assert TrainConfig().checkpoint_every_seconds == 300.0
    assert TrainConfig(checkpoint_every_seconds=None).checkpoint_every_seconds is None
    with pytest.raises(ValueError, match="train.checkpoint_every_seconds must be a number > 0 or None, got 0"):
        TrainConfig(checkpoint_every_seconds=0)
