import hashlib
import json

import pytest

from vae_lib.configs import (PRESETS, BetaConfig, ExperimentConfig, TrainConfig, apply_overrides,
                             get_config)


def test_train_defaults_are_the_cvae_card():
    config = TrainConfig()
    assert 50 <= config.epochs <= 100
    assert config.batch_size == 128
    assert config.lr == 2e-3
    assert config.weight_decay == 1e-4
    assert config.grad_clip == 1.0
    # "Use beta = 1 with KL warm-up"
    assert config.beta.kind == "linear" and config.beta.beta == 1.0 and config.beta.warmup_steps > 0


def test_full_presets_follow_the_cards():
    cvae = get_config("cvae-full")
    assert cvae.train == TrainConfig()
    assert cvae.model == "cvae" and cvae.model_kwargs["z_dim"] == 16 and cvae.dataset == "mnist"
    style = get_config("stylevae-full")
    assert style.model == "stylegan-vae"
    assert style.model_kwargs["z_dim"] == 512 and style.model_kwargs["input_size"] == 128
    assert style.loss_kwargs["perceptual_from_epoch"] == 20 and style.loss_kwargs["vgg_weights"] == "imagenet"
    quick = get_config("stylevae-quick")
    assert quick.model_kwargs == {"z_dim": 128, "input_size": 64, "max_channels": 64, "mapping_layers": 4}
    assert quick.dataset == "shapes" and quick.dataset_kwargs["size"] == 64


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    config = get_config(name)
    text = json.dumps(config.to_dict())
    again = ExperimentConfig.from_dict(json.loads(text))
    assert again == config
    assert isinstance(again.train, TrainConfig) and isinstance(again.train.beta, BetaConfig)
    assert again.hash() == config.hash()


def test_hash_follows_the_content():
    base = get_config("cvae-quick")
    assert get_config("cvae-quick").hash() == base.hash()
    changed = [
        get_config("cvae-quick", **{"train.epochs": base.train.epochs + 1}),
        get_config("cvae-quick", **{"train.beta.kind": "constant"}),
        get_config("cvae-quick", **{"model_kwargs.z_dim": 32}),
        get_config("cvae-quick", **{"n_train": 100}),
        get_config("cvae-quick", **{"train.lr_schedule": "cosine"}),
    ]
    hashes = {c.hash() for c in changed}
    assert base.hash() not in hashes and len(hashes) == len(changed)
    # A field added later counts only away from its default: runs cached before it keep their names.
    data = base.to_dict()
    del data["train"]["lr_schedule"]
    assert json.dumps(data, sort_keys=True) != json.dumps(base.to_dict(), sort_keys=True)
    assert base.hash() == hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    # Key order inside a kwargs dict is not content.
    reordered = get_config("cvae-quick", model_kwargs={"likelihood": "bernoulli", "z_dim": 16})
    assert list(reordered.model_kwargs) != list(base.model_kwargs)
    assert reordered.hash() == base.hash()
    assert base.run_name() == f"cvae-quick-{base.hash()}"


def test_overrides_with_dotted_keys_copy_the_preset():
    config = get_config("cvae-quick", **{"train.epochs": 3, "train.beta.warmup_steps": 7,
                                         "model_kwargs.likelihood": "gaussian", "loss_kwargs.free_bits": 0.1})
    assert config.train.epochs == 3 and config.train.beta.warmup_steps == 7
    assert config.model_kwargs == {"z_dim": 16, "likelihood": "gaussian"}
    assert config.loss_kwargs == {"free_bits": 0.1}
    assert get_config("cvae-quick").train.epochs == 10  # the preset itself is unchanged
    assert apply_overrides(config, {"name": "mine"}).name == "mine"


def test_family_names_take_the_course_preset(monkeypatch):
    assert get_config("cvae", preset="smoke").name == "cvae-smoke"
    monkeypatch.setenv("VAE_COURSE_PRESET", "smoke")
    assert get_config("stylevae").name == "stylevae-smoke"
    with pytest.raises(ValueError, match="Unknown preset"):
        get_config("cvae", preset="huge")
    with pytest.raises(ValueError, match="family"):
        get_config("cvae-quick", preset="smoke")


def test_unknown_names_and_keys_are_clear_errors():
    with pytest.raises(ValueError, match="did you mean 'cvae-quick'"):
        get_config("cvae-quik")
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        get_config("cvae-quick", **{"train.epoch": 3})
    with pytest.raises(ValueError, match="not a section"):
        get_config("cvae-quick", **{"optimizer.lr": 1e-3})
    with pytest.raises(ValueError, match="Unknown ExperimentConfig field 'z_dim'"):
        get_config("cvae-quick", z_dim=32)
    with pytest.raises(ValueError, match="Unknown TrainConfig field"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 1e-3})


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="beta kind"):
        BetaConfig(kind="cosine")
    with pytest.raises(ValueError, match="Unknown model"):
        ExperimentConfig(name="x", model="gan", dataset="mnist")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="grad_clip"):
        TrainConfig(grad_clip=0.0)


def test_read_gives_the_saved_config_with_later_fields_at_their_defaults(tmp_path):
    config = get_config("cvae-quick", **{"train.lr": 1e-3})
    data = config.to_dict()
    del data["train"]["lr_schedule"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert ExperimentConfig.read(tmp_path / "config.json") == config
