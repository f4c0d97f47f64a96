"""Runs that share their first epochs: ``train.keep_checkpoints`` and ``train_or_load(branch_from=...)``."""
from __future__ import annotations

import pytest
import torch

from vae_lib.configs import get_config
from vae_lib.experiments import default_run_dir, train_or_load
from vae_lib.losses import CVAELoss, StyleVAELoss

SMALL = {"n_train": 8, "n_test": 0, "train.batch_size": 4, "train.epochs": 3, "train.seed": 5}


def base_config(**overrides):
    return get_config("stylevae-smoke", **{**SMALL, "train.keep_checkpoints": [1], **overrides})


def variant_config(**overrides):
    # A perceptual term (random VGG19 features, the only ones offline) from epoch 1 on.
    return get_config("stylevae-smoke", **{**SMALL, "loss_kwargs.perceptual_weight": 0.01,
                                           "loss_kwargs.perceptual_from_epoch": 1, **overrides})


def test_keep_checkpoints_leaves_the_hash_and_the_saved_config_check_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    plain = get_config("stylevae-smoke", **SMALL)
    assert base_config().hash() == plain.hash()
    with pytest.raises(ValueError, match="keep_checkpoints"):
        get_config("stylevae-smoke", **{"train.keep_checkpoints": [0]})
    train_or_load(plain, verbose=False)
    _, _, info = train_or_load(base_config(), verbose=False)   # the same folder, loaded
    assert info["status"] == "loaded"


@pytest.mark.filterwarnings("ignore:perceptual loss uses RANDOM")
def test_a_branch_equals_the_run_trained_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path / "a"))
    scratch, scratch_history, info = train_or_load(variant_config(), verbose=False)
    assert info["status"] == "trained"

    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path / "b"))
    base = base_config()
    branched, history, info = train_or_load(variant_config(), branch_from=base, branch_epoch=1)
    assert info["status"] == "branched"
    assert "branching from" in capsys.readouterr().out
    assert (default_run_dir(base) / "checkpoint-epoch1.pt").exists()
    assert info["epoch"] == 3
    for a, b in zip(branched.state_dict().values(), scratch.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r["loss"] for r in history["steps"]] == [r["loss"] for r in scratch_history["steps"]]


def test_a_branch_needs_the_same_run_up_to_the_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="cannot branch"):   # another learning rate
        train_or_load(variant_config(**{"train.lr": 1e-3}), branch_from=base_config(), branch_epoch=1)
    with pytest.raises(ValueError, match="cannot branch"):   # the term is on before the branch
        train_or_load(variant_config(), branch_from=base_config(), branch_epoch=2)
    with pytest.raises(ValueError, match="branch_epoch"):
        train_or_load(variant_config(), branch_from=base_config(), branch_epoch=None)


def test_without_a_kept_copy_the_branch_trains_from_scratch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    plain = get_config("stylevae-smoke", **SMALL)
    with pytest.warns(UserWarning, match="RANDOM"):
        _, _, info = train_or_load(variant_config(), branch_from=plain, branch_epoch=1)
    assert info["status"] == "trained"
    assert "trains from scratch" in capsys.readouterr().out


def test_same_until_tells_which_losses_agree_before_an_epoch():
    card = {"perceptual_weight": 0.1, "perceptual_from_epoch": 20}
    assert StyleVAELoss.same_until(card, {**card, "perceptual_from_epoch": 4, "vgg_weights": None}, 4)
    assert not StyleVAELoss.same_until(card, {**card, "perceptual_from_epoch": 3}, 4)
    assert StyleVAELoss.same_until({"perceptual_weight": 0.0, "perceptual_from_epoch": 0},
                                   {"perceptual_weight": 0.5, "perceptual_from_epoch": 4}, 4)
    assert not StyleVAELoss.same_until(card, {**card, "reconstruction": "calibrated"}, 4)
    assert CVAELoss.same_until({"free_bits": 0.1}, {"free_bits": 0.1}, 2)
    assert not CVAELoss.same_until({"free_bits": 0.1}, {}, 2)


def test_load_trained_reads_a_kept_copy_by_its_epoch(tmp_path, monkeypatch):
    from vae_lib.experiments import load_trained

    monkeypatch.setenv("VAE_RUNS_DIR", str(tmp_path))
    base = base_config()
    train_or_load(base, verbose=False)
    run_dir = default_run_dir(base)
    _, at_end, history = load_trained(run_dir, "cpu")
    _, after_one, kept_history = load_trained(run_dir, "cpu", epoch=1)
    assert len(history["epochs"]) == 3 and len(kept_history["epochs"]) == 1
    assert kept_history["epochs"][0] == history["epochs"][0]
    assert any(not torch.equal(a, b) for a, b in zip(after_one.state_dict().values(), at_end.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="keep_checkpoints"):
        load_trained(run_dir, "cpu", epoch=2)
