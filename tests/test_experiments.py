"""train_or_load with the real CVAE / StyleGAN-VAE and data, shrunk to a few steps."""
import json

import pytest
import torch

from vae_lib import experiments
from vae_lib.configs import get_config
from vae_lib.experiments import build_data, build_loss, build_model, data_range, train_or_load


def tiny_cvae(**overrides):
    # 24 images in batches of 8: 3 steps per epoch.
    settings = {"n_train": 24, "n_test": 8, "train.epochs": 2, "train.batch_size": 8,
                "train.beta.warmup_steps": 2, "train.device": "cpu"}
    return get_config("cvae-smoke", **{**settings, **overrides})


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_same(a, b):
    assert len(a) == len(b) and all(torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("likelihood, expected", [("bernoulli", (0.0, 1.0)), ("gaussian", (-1.0, 1.0))])
def test_cvae_data_are_rescaled_to_the_likelihood_range(likelihood, expected):
    config = tiny_cvae(**{"model_kwargs.likelihood": likelihood})
    assert data_range(config) == expected == build_model(config).data_range
    data = build_data(config, "train", verbose=False)
    assert len(data) == 24 and data.value_range == expected
    assert data.images.min() >= expected[0] and data.images.max() <= expected[1]
    assert data.images.min() < expected[0] + 0.05 and data.images.max() > expected[1] - 0.05
    assert len(build_data(config, "test", verbose=False)) == 8
    with pytest.raises(ValueError, match="n_test=0"):
        build_data(tiny_cvae(n_test=0), "test", verbose=False)


def test_builders_follow_the_config():
    config = tiny_cvae(**{"model_kwargs.z_dim": 8, "loss_kwargs.free_bits": 0.25})
    model, loss = build_model(config), build_loss(config)
    assert type(model).__name__ == "CVAE" and model.z_dim == 8
    assert type(loss).__name__ == "CVAELoss" and loss.free_bits == 0.25
    style = get_config("stylevae-smoke")
    assert build_model(style).data_range == data_range(style) == (-1.0, 1.0)
    assert type(build_loss(style)).__name__ == "StyleVAELoss"


def test_train_then_load_without_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    config = tiny_cvae()
    model, history, info = train_or_load(config)
    assert "training from scratch" in capsys.readouterr().out
    assert info["status"] == "trained" and (info["epoch"], info["step"]) == (2, 6)
    assert info["run_dir"] == tmp_path / f"cvae-smoke-{config.hash()}"
    assert json.loads((info["run_dir"] / "config.json").read_text()) == config.to_dict()
    assert [e["epoch"] for e in history["epochs"]] == [0, 1] and "val_elbo" in history["epochs"][-1]
    assert not model.training

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(experiments.Trainer, "fit", no_training)
    again, history2, info2 = train_or_load(config)
    assert "loaded finished run" in capsys.readouterr().out
    assert info2["status"] == "loaded" and history2 == history
    assert_same(params(model), params(again))

    monkeypatch.undo()
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    _, _, info3 = train_or_load(tiny_cvae(**{"train.epochs": 1}), verbose=False)
    assert info3["status"] == "trained" and info3["run_dir"] != info["run_dir"]


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path, monkeypatch, capsys):
    config = tiny_cvae()
    straight, straight_history, _ = train_or_load(config, run_dir=tmp_path / "straight", verbose=False)

    real_build_loss = experiments.build_loss

    def interrupt_at_step_4(cfg):
        loss, calls = real_build_loss(cfg), []

        def loss_fn(model, batch, *, beta, epoch):
            if model.training:
                calls.append(1)
                if len(calls) == 5:  # the 5th update: step 4, mid second epoch
                    raise KeyboardInterrupt
            return loss(model, batch, beta=beta, epoch=epoch)
        return loss_fn

    monkeypatch.setattr(experiments, "build_loss", interrupt_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(config, run_dir=tmp_path / "interrupted", verbose=False)
    monkeypatch.undo()

    torch.manual_seed(1234)  # a new session would not share the RNG state
    resumed, history, info = train_or_load(config, run_dir=tmp_path / "interrupted")
    assert "resuming from epoch 1 (step 4)" in capsys.readouterr().out
    assert info["status"] == "resumed" and info["step"] == 6
    assert_same(params(straight), params(resumed))
    assert [r["loss"] for r in history["steps"]] == [r["loss"] for r in straight_history["steps"]]


def test_a_run_dir_of_another_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(tiny_cvae().to_dict()))  # what a run leaves behind
    with pytest.raises(ValueError, match="different config"):
        train_or_load(tiny_cvae(**{"train.lr": 1e-3}), run_dir=tmp_path, verbose=False)
    with pytest.raises(ValueError, match="preset"):
        train_or_load(tiny_cvae(), preset="smoke")


def test_stylegan_vae_trains_a_step(tmp_path):
    config = get_config("stylevae-smoke", **{"n_train": 8, "n_test": 0, "train.batch_size": 4,
                                             "train.max_steps": 2, "train.device": "cpu"})
    model, history, info = train_or_load(config, run_dir=tmp_path, verbose=False)
    assert info["step"] == 2 and type(model).__name__ == "ConvolutionalVAE"
    assert {"loss", "mse", "perceptual", "kl", "grad_norm"} <= set(history["steps"][0])
    assert "val_loss" not in history["epochs"][0]


def test_a_run_saved_before_a_train_field_existed_is_still_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    config = tiny_cvae()
    model, _, info = train_or_load(config, verbose=False)
    saved = json.loads((info["run_dir"] / "config.json").read_text())
    del saved["train"]["lr_schedule"]  # what a run saved before the field was added holds
    (info["run_dir"] / "config.json").write_text(json.dumps(saved))
    again, _, info2 = train_or_load(config, verbose=False)
    assert info2["run_dir"] == info["run_dir"] and info2["status"] == "loaded"
    assert_same(params(model), params(again))
    with pytest.raises(ValueError, match="different config"):  # away from its default it is another run
        train_or_load(tiny_cvae(**{"train.lr_schedule": "cosine"}), run_dir=info["run_dir"], verbose=False)


@pytest.fixture
def digits_machine(offline, monkeypatch):
    """A machine with no digits data and no network; tests add Fashion-MNIST or MNIST files."""
    monkeypatch.setenv("VAE_RUNS_DIR", str(offline / "runs"))
    return offline


def auto_digits(**overrides):
    settings = {"dataset": "auto-digits", "n_train": 6, "n_test": 0, "train.batch_size": 6, "train.epochs": 1}
    return tiny_cvae(**{**settings, **overrides})


def test_an_auto_digits_run_is_keyed_by_the_data_it_resolved_to(digits_machine, capsys):
    from test_data_sources import write_idx_set

    config = auto_digits()
    legacy = digits_machine / "runs" / config.run_name()  # a run cached before the data joined the key
    legacy.mkdir(parents=True)
    (legacy / "checkpoint.pt").write_bytes(b"old")
    write_idx_set(digits_machine / "system" / "fashion-mnist", marker=30)
    _, _, fashion = train_or_load(config)
    assert fashion["status"] == "trained" and fashion["data"]["name"] == "fashion-mnist"
    assert f"note: {legacy} holds a run of this config saved before" in capsys.readouterr().out
    assert fashion["run_dir"] == experiments.default_run_dir(config)
    assert fashion["run_dir"].name != config.run_name()  # the plain hash does not know the data
    recorded = json.loads((fashion["run_dir"] / "data.json").read_text())
    assert recorded["name"] == "fashion-mnist" and recorded["fingerprint"] and "auto-digits chose" in recorded["reason"]
    capsys.readouterr()

    _, _, again = train_or_load(config)
    out = capsys.readouterr().out
    assert again["status"] == "loaded" and "trained on fashion-mnist from" in out

    write_idx_set(digits_machine / "cache" / "mnist", marker=60)  # the user installs MNIST
    _, _, mnist = train_or_load(config, verbose=False)
    assert mnist["status"] == "trained" and mnist["data"]["name"] == "mnist"
    assert mnist["run_dir"] != fashion["run_dir"]


def test_a_run_folder_given_by_hand_is_not_continued_on_other_data(digits_machine, capsys, monkeypatch):
    from test_data_sources import write_idx_set

    write_idx_set(digits_machine / "system" / "fashion-mnist", marker=30, count=12)
    run_dir = digits_machine / "mine"
    config = auto_digits(n_train=12)  # 2 steps
    real_step = experiments.Trainer.train_step

    def interrupt_at_step_1(self, *args, **kwargs):
        if self.step == 1:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(experiments.Trainer, "train_step", interrupt_at_step_1)
    with pytest.raises(KeyboardInterrupt):
        train_or_load(config, run_dir=run_dir, verbose=False)
    monkeypatch.setattr(experiments.Trainer, "train_step", real_step)  # (undo() would drop the fixture's too)
    write_idx_set(digits_machine / "cache" / "mnist", marker=60, count=12)
    with pytest.raises(ValueError, match="was trained on fashion-mnist but auto-digits now resolves to mnist"):
        train_or_load(config, run_dir=run_dir, verbose=False)

    finished = digits_machine / "finished"
    train_or_load(config, run_dir=finished, verbose=False)  # on MNIST
    data = json.loads((finished / "data.json").read_text())
    data["name"] = "synthetic-digits"  # as if trained when nothing else was here
    (finished / "data.json").write_text(json.dumps(data))
    _, _, info = train_or_load(config, run_dir=finished)
    assert info["status"] == "loaded"
    assert "was trained on synthetic-digits; auto-digits now resolves to mnist" in capsys.readouterr().out


def test_explicit_datasets_keep_their_run_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    config = tiny_cvae()  # synthetic-digits
    assert experiments.dataset_key(config) is None
    assert experiments.default_run_dir(config) == tmp_path / config.run_name()


def test_one_explicit_registry_of_model_and_loss_classes():
    from vae_lib import experiments
    from vae_lib.configs import MODELS
    from vae_lib.losses import CVAELoss, StyleVAELoss
    from vae_lib.models.cvae import CVAE
    from vae_lib.models.stylegan_vae import ConvolutionalVAE

    assert experiments.REGISTRY == {"cvae": (CVAE, CVAELoss), "stylegan-vae": (ConvolutionalVAE, StyleVAELoss)}
    assert set(experiments.REGISTRY) == set(MODELS)
    assert not hasattr(experiments, "importlib")
    assert CVAE.data_range_for() == (0.0, 1.0) and CVAE.data_range_for(likelihood="gaussian") == (-1.0, 1.0)
    assert ConvolutionalVAE.data_range_for(z_dim=8) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="likelihood"):
        CVAE.data_range_for(likelihood="laplace")
