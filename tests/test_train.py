"""The Trainer with a tiny stand-in VAE on 4-d vectors (no dependence on the real models)."""
import hashlib
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from vae_lib.configs import BetaConfig, TrainConfig
from vae_lib.train import NonFiniteLossError, Trainer


class TinyVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 4)  # -> mu, logvar for z of size 2
        self.decoder = nn.Linear(2, 4)

    def forward(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.decoder(z), mu, logvar


def tiny_loss(model, batch, *, beta, epoch):
    x, _ = batch
    x_hat, mu, logvar = model(x)
    # Python's and NumPy's RNGs also feed the loss, so that an exact resume needs all three restored.
    jitter = 1 + 0.01 * random.random() + 0.01 * float(np.random.rand()) if model.training else 1.0
    nll = ((x_hat - x) ** 2).sum(1).mean() * jitter
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
    return {"loss": nll + beta * kl, "nll": nll, "kl": kl, "beta": beta}


def make_data(n=24, seed=123):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def fixed_batches(n=24, batch_size=6):
    x, y = make_data(n)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


class ShuffledLoader:
    """Like InMemoryLoader: a new order each epoch from (seed, epoch), and a state_dict."""

    def __init__(self, n=24, batch_size=6, seed=0):
        self.x, self.y = make_data(n)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(1000 * self.seed + self.epoch))
        self.epoch += 1
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]

    def state_dict(self):
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state):
        self.epoch, self.seed = state["epoch"], state["seed"]


def config(**kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("beta", BetaConfig(kind="linear", beta=1.0, warmup_steps=4))
    return TrainConfig(device="cpu", **kw)


def new_trainer(run_dir=None, loss_fn=tiny_loss, model_seed=0, **kw):
    torch.manual_seed(model_seed)
    return Trainer(TinyVAE(), loss_fn, config(**kw), run_dir=run_dir, progress=False)


def params(trainer):
    return [p.detach().clone() for p in trainer.model.parameters()]


def assert_same(a, b):
    assert len(a) == len(b)
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


def scramble_rngs():
    """What a new process would have: RNG states unrelated to the run's."""
    random.seed(2024)
    np.random.seed(2024)
    torch.manual_seed(2024)


def file_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_history_has_every_step_and_epoch_means():
    seen = []

    def loss_fn(model, batch, *, beta, epoch):
        seen.append((epoch, beta))
        return tiny_loss(model, batch, beta=beta, epoch=epoch)

    trainer = new_trainer(loss_fn=loss_fn, log_every_steps=1)
    trainer.progress = True  # exercise the bar's postfix path once
    history = trainer.fit(fixed_batches())  # 4 batches x 2 epochs
    steps = history["steps"]
    assert [r["step"] for r in steps] == list(range(8))
    assert [r["epoch"] for r in steps] == [0] * 4 + [1] * 4
    assert [r["beta"] for r in steps] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert seen == [(r["epoch"], r["beta"]) for r in steps]
    assert {"loss", "nll", "kl", "grad_norm"} <= set(steps[0])
    for r in steps:
        assert r["loss"] == pytest.approx(r["nll"] + r["beta"] * r["kl"], rel=1e-5)
    assert [e["epoch"] for e in history["epochs"]] == [0, 1]
    for e in history["epochs"]:
        mine = [r for r in steps if r["epoch"] == e["epoch"]]
        for term in ("loss", "nll", "kl", "beta", "grad_norm"):
            assert e[term] == pytest.approx(sum(r[term] for r in mine) / 4)
        assert e["time_s"] >= 0
    assert trainer.step == 8 and trainer.epoch == 2


@pytest.mark.parametrize("autocast, precision", [(None, "fp32"), ("bf16", "bf16")])
def test_each_epoch_says_the_precision_it_ran_in(autocast, precision):
    trainer = new_trainer(epochs=1, autocast=autocast)
    history = trainer.fit(fixed_batches())
    assert [e["precision"] for e in history["epochs"]] == [precision]


def test_optimizer_is_adamw_from_the_config():
    trainer = new_trainer(lr=1e-2, weight_decay=0.05)
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["lr"] == 1e-2
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.05


def test_gradients_are_clipped_and_the_norm_before_clipping_is_logged():
    def steep_loss(model, batch, *, beta, epoch):
        return {"loss": 1000.0 * sum(p.sum() for p in model.parameters())}

    trainer = new_trainer(loss_fn=steep_loss, grad_clip=0.5, epochs=1)
    trainer.fit(fixed_batches()[:1])
    n_params = sum(p.numel() for p in trainer.model.parameters())
    assert trainer.history["steps"][0]["grad_norm"] == pytest.approx(1000.0 * math.sqrt(n_params), rel=1e-5)
    clipped = torch.cat([p.grad.flatten() for p in trainer.model.parameters()]).norm()
    assert clipped.item() == pytest.approx(0.5, rel=1e-4)

    unclipped = new_trainer(loss_fn=steep_loss, grad_clip=None, epochs=1)
    unclipped.fit(fixed_batches()[:1])
    grads = torch.cat([p.grad.flatten() for p in unclipped.model.parameters()])
    assert grads.norm().item() == pytest.approx(1000.0 * math.sqrt(n_params), rel=1e-5)


def test_validation_terms_are_batch_weighted_means_in_eval_mode():
    modes = []

    def loss_fn(model, batch, *, beta, epoch):
        modes.append((model.training, torch.is_grad_enabled()))
        return tiny_loss(model, batch, beta=beta, epoch=epoch)

    x, y = make_data(8, seed=7)
    val = [(x[:5], y[:5]), (x[5:], y[5:])]  # batches of 5 and 3 images
    trainer = new_trainer(loss_fn=loss_fn, epochs=1)
    history = trainer.fit(fixed_batches(), val_loader=val)
    assert modes[-2:] == [(False, False), (False, False)] and modes[0] == (True, True)
    assert trainer.model.training  # back in training mode
    with torch.no_grad():
        trainer.model.eval()
        mu = trainer.model.encoder(x).chunk(2, dim=1)[0]
        per_image = ((trainer.model.decoder(mu) - x) ** 2).sum(1)
    record = history["epochs"][0]
    assert record["val_nll"] == pytest.approx(per_image.mean().item(), rel=1e-5)
    assert "val_beta" not in record and "val_loss" in record and "val_kl" in record


def test_same_seed_reproduces_and_another_seed_differs():
    a, b = new_trainer(seed=1), new_trainer(seed=1)
    c = new_trainer(seed=2)
    for t in (a, b, c):
        t.fit(fixed_batches())
    assert_same(params(a), params(b))
    assert any(not torch.equal(p, q) for p, q in zip(params(a), params(c)))


@pytest.mark.parametrize("beta", [BetaConfig(kind="linear", warmup_steps=4),
                                  BetaConfig(kind="cyclical", n_cycles=2, ratio=0.5),
                                  BetaConfig(kind="linear", warmup_fraction=0.5)])   # 4 of the 8 steps
def test_resume_from_an_epoch_checkpoint_is_exact(tmp_path, beta):
    straight = new_trainer(beta=beta)
    straight.fit(ShuffledLoader())

    first = new_trainer(tmp_path, beta=beta)
    first.fit(ShuffledLoader(), epochs=1)
    assert first.epoch == 1
    second = new_trainer(tmp_path, model_seed=99, beta=beta)  # different init: must all come from the checkpoint
    scramble_rngs()
    second.load_checkpoint()
    assert (second.step, second.epoch) == (4, 1)
    second.fit(ShuffledLoader())  # a fresh loader: its position comes from the checkpoint too
    assert_same(params(straight), params(second))
    assert second.history["steps"] == straight.history["steps"]
    assert [e["loss"] for e in second.history["epochs"]] == [e["loss"] for e in straight.history["epochs"]]
    for key in ("exp_avg", "exp_avg_sq"):
        for pa, pb in zip(straight.model.parameters(), second.model.parameters()):
            assert torch.equal(straight.optimizer.state[pa][key], second.optimizer.state[pb][key])


def test_keyboard_interrupt_saves_the_current_state_and_resumes_mid_epoch(tmp_path):
    straight = new_trainer()
    straight.fit(ShuffledLoader())

    def interrupted_loss(model, batch, *, beta, epoch):
        if interrupted.step == 6:  # the third batch of the second epoch
            raise KeyboardInterrupt
        return tiny_loss(model, batch, beta=beta, epoch=epoch)

    interrupted = new_trainer(tmp_path, loss_fn=interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(ShuffledLoader())
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (saved["step"], saved["epoch"]) == (6, 1)

    resumed = new_trainer(tmp_path, model_seed=5)
    scramble_rngs()
    resumed.load_checkpoint()
    resumed.fit(ShuffledLoader())
    assert_same(params(straight), params(resumed))
    assert [r["loss"] for r in resumed.history["steps"]] == [r["loss"] for r in straight.history["steps"]]
    assert len(resumed.history["epochs"]) == 2


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    def nan_at_step_5(model, batch, *, beta, epoch):
        terms = tiny_loss(model, batch, beta=beta, epoch=epoch)
        if trainer.step == 5:
            terms["kl"] = terms["kl"] * float("nan")
            terms["loss"] = terms["nll"] + beta * terms["kl"]
        return terms

    trainer = new_trainer(tmp_path, loss_fn=nan_at_step_5, epochs=3)
    checkpoint = tmp_path / "checkpoint.pt"
    trainer.fit(fixed_batches(), epochs=1)
    before = file_digest(checkpoint)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(fixed_batches())
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.step == 5 and error.epoch == 1
    assert math.isnan(error.terms["kl"]) and math.isfinite(error.terms["nll"])
    assert "step 5" in str(error) and str(checkpoint) in str(error) and "learning rate" in str(error)
    assert file_digest(checkpoint) == before
    assert trainer.step == 5 and len(trainer.history["steps"]) == 5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the bad update was not applied


def test_nan_gradient_with_a_finite_loss_also_stops(tmp_path):
    trainer = new_trainer(tmp_path, epochs=2)
    trainer.fit(fixed_batches(), epochs=1)
    weight = trainer.model.decoder.weight
    before = weight.detach().clone()
    weight.register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(fixed_batches())
    assert math.isnan(info.value.terms["grad_norm"]) and math.isfinite(info.value.terms["loss"])
    assert torch.equal(weight.detach(), before)


def test_max_steps_stops_mid_epoch_and_checkpoints(tmp_path):
    trainer = new_trainer(tmp_path, max_steps=6, epochs=5)
    history = trainer.fit(fixed_batches())
    assert trainer.step == 6 and trainer.epoch == 1 and trainer.target_reached()
    assert [e["epoch"] for e in history["epochs"]] == [0, 1]  # the second one covers 2 steps
    assert history["epochs"][1]["loss"] == pytest.approx(
        sum(r["loss"] for r in history["steps"][4:]) / 2)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 6


def test_checkpoint_holds_everything_and_leaves_no_temporary_files(tmp_path):
    trainer = new_trainer(tmp_path, checkpoint_every_steps=3)
    trainer.fit(ShuffledLoader())
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(saved) == {"model", "optimizer", "schedule", "step", "epoch", "config", "history", "loader", "rng"}
    assert saved["config"] == trainer.config.to_dict()
    assert saved["loader"] == {"epoch": 2, "seed": 0}
    assert saved["schedule"] == {"beta_max": 1.0, "warmup_steps": 4}
    assert {"torch", "python", "numpy"} <= set(saved["rng"])


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    trainer = new_trainer(tmp_path, epochs=1)
    trainer.fit(fixed_batches())
    path = tmp_path / "checkpoint.pt"
    before = file_digest(path)
    real_save = torch.save

    def save_half_then_fail(obj, f):
        real_save({"half": torch.zeros(3)}, f)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    assert file_digest(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_malformed_loss_output_is_a_clear_error():
    trainer = new_trainer()
    trainer.loss_fn = lambda model, batch, **kw: {"nll": torch.tensor(1.0)}
    with pytest.raises(ValueError, match="'loss'"):
        trainer.fit(fixed_batches())

    def vector_term(model, batch, **kw):
        terms = tiny_loss(model, batch, **kw)
        return dict(terms, kl=torch.ones(3))

    trainer.loss_fn = vector_term
    with pytest.raises(ValueError, match="'kl' must be a scalar"):
        trainer.fit(fixed_batches())


def test_cosine_lr_follows_the_half_cosine_over_the_planned_steps():
    trainer = new_trainer(epochs=3, lr=1e-2, lr_schedule="cosine")
    trainer.fit(ShuffledLoader())  # 3 epochs x 4 batches = 12 planned steps
    lrs = [r["lr"] for r in trainer.history["steps"]]
    expected = [0.5 * 1e-2 * (1 + math.cos(math.pi * s / 12)) for s in range(12)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[0] == 1e-2 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 2e-4
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1])
    constant = new_trainer(epochs=3, lr=1e-2)
    constant.fit(ShuffledLoader())
    assert {r["lr"] for r in constant.history["steps"]} == {1e-2}


def test_cosine_lr_resumes_on_the_same_curve(tmp_path):
    straight = new_trainer(lr_schedule="cosine")
    straight.fit(ShuffledLoader())
    first = new_trainer(tmp_path, lr_schedule="cosine")
    first.fit(ShuffledLoader(), epochs=1)  # the curve spans config.epochs, not this call's
    second = new_trainer(tmp_path, model_seed=99, lr_schedule="cosine")
    second.load_checkpoint()
    second.fit(ShuffledLoader())
    assert second.history["steps"] == straight.history["steps"]
    assert_same(params(straight), params(second))


def test_cosine_lr_without_a_known_length_is_a_clear_error():
    trainer = new_trainer(lr_schedule="cosine")
    with pytest.raises(ValueError, match="needs the run's length"):
        trainer.train_step(fixed_batches()[0])
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")


@pytest.mark.parametrize("content, words", [
    (b"", "is empty (0 bytes)"),
    (b"\x00garbage" * 100, "cannot read checkpoint"),
])
def test_an_unreadable_checkpoint_is_named(tmp_path, content, words):
    from vae_lib.train import CheckpointError

    (tmp_path / "checkpoint.pt").write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        new_trainer(tmp_path).load_checkpoint()
    assert words in str(info.value) and str(tmp_path / "checkpoint.pt") in str(info.value)


def test_a_checkpoint_of_another_model_is_named(tmp_path):
    from vae_lib.train import CheckpointError

    new_trainer(tmp_path, epochs=1).fit(fixed_batches())
    other = Trainer(nn.Linear(4, 3), tiny_loss, config(), run_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'checkpoint.pt'} does not fit this model"):
        other.load_checkpoint()


def test_an_ema_of_the_weights_is_kept_checkpointed_and_returned(tmp_path):
    from vae_lib.configs import ExperimentConfig
    from vae_lib.ema import ema_model_state
    from vae_lib.experiments import train_or_load

    config = ExperimentConfig(
        name="ema", model="stylegan-vae", dataset="shapes", dataset_kwargs={"size": 32},
        model_kwargs={"z_dim": 8, "input_size": 32, "max_channels": 8, "mapping_layers": 1},
        loss_kwargs={"perceptual_weight": 0.0, "vgg_weights": None}, n_train=32, n_test=0,
        train=TrainConfig(epochs=1, batch_size=8, ema_half_life_images=16.0, checkpoint_every_seconds=None))
    model, history, info = train_or_load(config, run_dir=tmp_path / "run", verbose=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    averaged, raw = ema_model_state(state["ema"]), state["model"]
    assert int(state["ema"]["n_averaged"]) == 4
    assert all(torch.equal(model.state_dict()[k].cpu(), v) for k, v in averaged.items())
    moved = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], averaged[k])]
    assert moved                                      # the average lags the last weights
    again, _, info2 = train_or_load(config, run_dir=tmp_path / "run", verbose=False)
    assert info2["status"] == "loaded"
    assert all(torch.equal(again.state_dict()[k].cpu(), v) for k, v in averaged.items())
