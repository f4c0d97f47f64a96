"""Perceptual features by name (issue 12): VGG19 ImageNet (loaded offline from a local file), random VGG19,
and the judge's conv blocks; the VGG stack cut at the deepest layer; the loss and build_loss on top."""
from __future__ import annotations

import dataclasses
import socket
import time
import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from vae_lib import experiments, judges, perceptual
from vae_lib.configs import get_config
from vae_lib.losses import StyleVAELoss
from vae_lib.models.classifier import Judge
from vae_lib.perceptual import (DEFAULT_LAYERS, FEATURES, JudgePerceptual, PerceptualWeightsUnavailable,
                                VGGPerceptual, feature_distance, vgg19_layer_names)

from test_perceptual import FixedModel


def tiny_judge(value_range=(-1.0, 1.0), size=32, seed=0) -> Judge:
    """An untrained judge of 3-channel 32 x 32 images: 2 halvings, so 3 conv blocks."""
    torch.manual_seed(seed)
    judge = Judge(3, size, {"shape": 3, "hue": 4}, value_range, width=4, hidden=8, label_head="shape")
    judge.settings = {"dataset": "shapes", "seed": 1}
    return judge.eval()


def images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------- one interface
def test_features_by_name():
    assert FEATURES == ("vgg19-imagenet", "vgg19-random", "judge")
    with pytest.warns(UserWarning, match="RANDOM VGG19"):
        vgg = feature_distance("vgg19-random", layers=("relu1_2",))
    assert isinstance(vgg, VGGPerceptual) and vgg.name == "vgg19-random" and vgg.layers == ("relu1_2",)
    assert "RANDOM" in vgg.describe()
    judge = feature_distance("judge", judge=tiny_judge())
    assert isinstance(judge, JudgePerceptual) and judge.name == "judge"
    assert judge.layers == ("block1", "block2", "block3")                # default: every conv block
    assert judge.describe() == "judge (shapes judge, seed 1; block1, block2, block3)"
    assert [tuple(a.shape) for a in judge.activations(images())] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]


def test_bad_names_and_arguments():
    with pytest.raises(ValueError, match="Unknown perceptual features 'vgg16'.*vgg19-imagenet, vgg19-random, judge"):
        feature_distance("vgg16")
    with pytest.raises(ValueError, match="needs the judge network"):
        feature_distance("judge")
    with pytest.raises(ValueError, match="only for features='judge'"):
        feature_distance("vgg19-random", judge=tiny_judge())
    with pytest.raises(ValueError, match="Unknown or no judge blocks \\['block9'\\].*block1, block2, block3"):
        feature_distance("judge", judge=tiny_judge(), layers=("block9",))
    with pytest.raises(TypeError, match="vae_lib.judges.Judge"):
        feature_distance("judge", judge=nn.Linear(2, 2))
    distance = feature_distance("judge", judge=tiny_judge())
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        distance(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        distance(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))


# ------------------------------------------------------------------------------------------- judge
def test_judge_distance_is_zero_for_equal_images_grows_with_noise_and_follows_the_convention():
    distance = feature_distance("judge", judge=tiny_judge())
    x = images(4)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(distance(x, x), torch.zeros(4))
    values = [distance(x + scale * noise, x) for scale in (0.05, 0.2, 0.5)]
    assert all(v.shape == (4,) for v in values)
    assert (values[0] > 0).all() and (values[0] < values[1]).all() and (values[1] < values[2]).all()
    # D * sum over blocks of each block's mean squared error, D = 3 H W.
    x_hat = x + 0.2 * noise
    by_hand = sum((a - b).pow(2).mean(dim=(1, 2, 3)) for a, b in
                  zip(distance.activations(x_hat), distance.activations(x)))
    torch.testing.assert_close(values[1], 3 * 32 * 32 * by_hand)
    torch.testing.assert_close(distance.per_layer(x_hat, x).sum(0), values[1])


def test_judge_features_map_images_onto_the_judges_range():
    judge = tiny_judge(value_range=(0.0, 1.0))
    distance = feature_distance("judge", judge=judge, layers=("block2",))
    x = images()
    with torch.no_grad():
        want = judge.block_activations((x + 1) / 2, ("block2",))
    torch.testing.assert_close(distance.activations(x), want)


def test_judge_features_are_frozen_in_eval_take_gradients_to_x_hat_only_and_leave_the_judge_alone():
    judge = tiny_judge().train()
    distance = feature_distance("judge", judge=judge)
    assert not distance.training and all(not p.requires_grad for p in distance.parameters())
    parent = nn.ModuleDict({"features": distance, "head": nn.Linear(2, 2)}).train()
    assert parent["head"].training and not distance.training
    assert judge.training and all(p.requires_grad for p in judge.parameters())    # a copy was frozen
    x = images()
    x_hat = (x + 0.1).requires_grad_()
    distance(x_hat, x).sum().backward()
    assert x_hat.grad.abs().sum() > 0 and all(p.grad is None for p in distance.parameters())
    before = {k: v.clone() for k, v in distance.state_dict().items()}
    distance(images(seed=3), x)                                     # BatchNorm statistics do not move
    assert all(torch.equal(before[k], v) for k, v in distance.state_dict().items())


def test_judge_is_the_models_layers_class_and_names_its_blocks():
    assert judges.Judge is Judge
    judge = tiny_judge()
    assert judge.block_names == ("block1", "block2", "block3")       # 32 -> 16 -> 8: two pools
    assert [type(judge.conv[i]) for i in judge.block_ends()] == [nn.ReLU] * 3
    out = judge.block_activations(images(), ("block3", "block1"))
    assert [tuple(a.shape) for a in out] == [(2, 16, 8, 8), (2, 4, 32, 32)]


# -------------------------------------------------------------------------------------------- VGG19
def test_vgg_builds_only_up_to_the_deepest_layer_with_torchvisions_layers():
    names = vgg19_layer_names()
    for depth in (1, 9, 27, 37):
        built = perceptual.vgg19_features(depth)
        reference = make_layers(cfgs["E"])[:depth]
        assert len(built) == depth
        assert [repr(m) for m in built] == [repr(m) for m in reference]
        assert list(built.state_dict()) == list(reference.state_dict())
    with pytest.warns(UserWarning):
        vgg = VGGPerceptual(layers=("relu2_1", "relu1_2"), weights=None)
    assert len(vgg.features) == names.index("relu2_1") + 1 == 7
    assert not hasattr(vgg, "classifier") and not any(isinstance(m, nn.Linear) for m in vgg.modules())
    assert [tuple(a.shape) for a in vgg.activations(images())] == [(2, 128, 16, 16), (2, 64, 32, 32)]


def test_a_conv_layer_keeps_its_own_output_though_the_relu_after_it_works_in_place():
    with pytest.warns(UserWarning):
        vgg = VGGPerceptual(layers=("conv1_1", "relu1_1"), weights=None)
    conv, relu = vgg.activations(images())
    assert (conv < 0).any() and torch.equal(relu, conv.clamp(min=0))


@pytest.fixture(scope="module")
def local_imagenet_file(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds vgg19-dcbb9e9d.pth: the features.* entries of a randomly
    initialised torchvision VGG19 (made with torchvision's own make_layers), plus a classifier entry."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(5)
    state = {f"features.{k}": v for k, v in make_layers(cfgs["E"]).state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return home, state


def test_imagenet_weights_load_offline_from_the_hub_cache(local_imagenet_file, monkeypatch):
    home, state = local_imagenet_file
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    vgg = feature_distance("vgg19-imagenet", layers=("relu1_2", "relu2_2"))
    assert vgg.name == "vgg19-imagenet" and vgg.pretrained and len(vgg.features) == 9
    loaded = vgg.features.state_dict()
    assert len(loaded) == 8                                          # 4 convs: weight and bias
    for key, value in loaded.items():
        assert torch.equal(value, state[f"features.{key}"]), key
    # The loss picks the cached file up: no warning, and its features say ImageNet.
    loss = StyleVAELoss(perceptual_from_epoch=0, layers=("relu1_2",))
    x = images()
    terms = loss(FixedModel(x + 0.1, torch.zeros(2, 3), torch.zeros(2, 3)), (x,), beta=1.0, epoch=0)
    assert terms["perceptual"] > 0 and loss.perceptual.name == "vgg19-imagenet"


def test_a_file_without_the_layers_asked_for_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = perceptual.vgg19_checkpoint_path()
    path.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["E"][:1]).state_dict().items()}, path)
    with pytest.raises(PerceptualWeightsUnavailable, match="Missing key"):
        VGGPerceptual(layers=("relu2_2",), weights="imagenet")


def test_the_download_runs_under_a_short_socket_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    seen = []

    def no_network(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    before = socket.getdefaulttimeout()
    with pytest.raises(PerceptualWeightsUnavailable, match=r"vgg19-dcbb9e9d\.pth.*vgg19-random.*judge"):
        feature_distance("vgg19-imagenet")
    assert seen == [perceptual.DOWNLOAD_TIMEOUT_S] and perceptual.DOWNLOAD_TIMEOUT_S <= 15
    assert socket.getdefaulttimeout() == before


def test_an_unreachable_server_fails_in_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(perceptual, "VGG19_URL", "http://127.0.0.1:9/models/vgg19-dcbb9e9d.pth")
    monkeypatch.setattr(perceptual, "DOWNLOAD_TIMEOUT_S", 2.0)
    start = time.perf_counter()
    with pytest.raises(PerceptualWeightsUnavailable, match="Offline"):
        VGGPerceptual(weights="imagenet")
    assert time.perf_counter() - start < 10
    assert not perceptual.vgg19_checkpoint_path().exists()


# --------------------------------------------------------------------------------------------- loss
def test_the_cards_defaults_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="not cached"):
        loss = StyleVAELoss()
    assert (loss.mse_weight, loss.perceptual_weight, loss.perceptual_from_epoch) == (1.0, 0.1, 20)
    assert loss.features == "vgg19-imagenet" and loss.vgg_weights == "imagenet" and loss.layers == DEFAULT_LAYERS
    assert "features=vgg19-imagenet (relu1_2, relu2_2, relu3_4, relu4_4)" in repr(loss)
    card = get_config("stylevae-full")
    assert card.loss_kwargs["vgg_weights"] == "imagenet" and "features" not in card.loss_kwargs
    with pytest.warns(UserWarning, match="not cached"):
        assert experiments.build_loss(card).features == "vgg19-imagenet"


@pytest.mark.parametrize("kwargs, features", [
    ({"vgg_weights": "imagenet"}, "vgg19-imagenet"), ({"vgg_weights": None}, "vgg19-random"),
    ({"features": "vgg19-random"}, "vgg19-random"), ({"features": "vgg19-imagenet"}, "vgg19-imagenet"),
    ({"features": "vgg19-random", "vgg_weights": "imagenet"}, "vgg19-random")])      # a chosen features wins
def test_the_old_vgg_weights_argument_still_chooses_the_features(kwargs, features):
    loss = StyleVAELoss(perceptual_weight=0.0, **kwargs)
    assert loss.features == features and loss.vgg_weights == ("imagenet" if features == "vgg19-imagenet" else None)
    assert ("RANDOM" in repr(loss)) == (features == "vgg19-random")


def test_loss_with_judge_features():
    judge = tiny_judge()
    with pytest.raises(ValueError, match="features='judge' needs feature_net"):
        StyleVAELoss(features="judge")
    with pytest.raises(ValueError, match="feature_net is only for features='judge'"):
        StyleVAELoss(perceptual_weight=0.0, features="vgg19-random", feature_net=judge)
    with pytest.raises(ValueError, match="Unknown perceptual features"):
        StyleVAELoss(features="lpips")
    with pytest.raises(ValueError, match="Unknown or no judge blocks"):
        StyleVAELoss(features="judge", feature_net=judge, layers=("relu1_2",))
    loss = StyleVAELoss(perceptual_from_epoch=2, features="judge", feature_net=judge, layers=("block2", "block3"))
    assert loss.features == "judge" and loss.vgg_weights is None and loss.layers == ("block2", "block3")
    assert "features=judge (shapes judge, seed 1; block2, block3)" in repr(loss)
    x = images()
    x_hat = (x + 0.3).tanh()
    model = FixedModel(x_hat, torch.zeros(2, 3), torch.zeros(2, 3))
    assert loss(model, (x,), beta=1.0, epoch=1)["perceptual"].item() == 0.0 and loss.perceptual is None
    after = loss(model, (x,), beta=1.0, epoch=2)
    want = feature_distance("judge", judge=judge, layers=("block2", "block3"))(x_hat, x).mean()
    torch.testing.assert_close(after["perceptual"], want)
    assert after["loss"].item() == pytest.approx(after["mse"].item() + 0.1 * want.item(), rel=1e-5)
    assert StyleVAELoss(features="judge", feature_net=judge).layers == judge.block_names


# --------------------------------------------------------------------------------------- build_loss
def test_build_loss_gives_the_loss_a_judge_trained_with_another_seed(monkeypatch):
    asked = []

    def fake_train_or_load_judge(settings, **kwargs):
        asked.append(settings)
        return tiny_judge()

    monkeypatch.setattr(judges, "train_or_load_judge", fake_train_or_load_judge)
    base = get_config("stylevae-smoke")
    config = dataclasses.replace(base, loss_kwargs={**base.loss_kwargs, "vgg_weights": None, "features": "judge",
                                                    "perceptual_weight": 0.1, "judge_preset": "smoke"})
    loss = experiments.build_loss(config)                 # the preset's vgg_weights=None does not count
    assert loss.features == "judge" and loss.layers == ("block1", "block2", "block3")
    evaluation = judges.judge_settings(base.dataset, preset="smoke", dataset_kwargs=dict(base.dataset_kwargs))
    assert asked[-1] == dataclasses.replace(evaluation, seed=experiments.LOSS_JUDGE_SEED)
    assert experiments.LOSS_JUDGE_SEED != evaluation.seed and asked[-1].path("c") != evaluation.path("c")
    experiments.build_loss(dataclasses.replace(config, loss_kwargs={**config.loss_kwargs, "judge_seed": 7}))
    assert asked[-1].seed == 7
    with pytest.raises(ValueError, match="judge_seed.*features='judge'"):
        experiments.build_loss(dataclasses.replace(base, loss_kwargs={**base.loss_kwargs, "judge_seed": 7}))


def test_damage_table_charges_what_each_distance_measures():
    from vae_lib.data import load_dataset
    from vae_lib.perceptual import damage_table, damaged_copies

    x = load_dataset("shapes", "test", n=4, size=32, verbose=False).images
    damaged = damaged_copies(x)
    assert list(damaged) == ["blur (sigma 1.5 px)", "noise, same MSE", "brightness, same MSE", "shift by 1 px",
                             "shift by 2 px"]
    mse = {name: (y - x).pow(2).mean().item() for name, y in damaged.items()}
    assert mse["noise, same MSE"] == pytest.approx(mse["blur (sigma 1.5 px)"], rel=0.05)
    assert mse["brightness, same MSE"] == pytest.approx(mse["blur (sigma 1.5 px)"], rel=1e-5)

    class Pixels(torch.nn.Module):           # a "feature distance" that is the pixel error itself
        def forward(self, y, x):
            return (y - x).pow(2).flatten(1).sum(1)

    rows = damage_table({"pixels": Pixels()}, x, damaged)
    for row in rows:
        assert row["pixels per pixel error"] == pytest.approx(1.0)
        assert row["pixels"] == pytest.approx(row["pixel_error"])
