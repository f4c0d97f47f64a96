"""vae_lib.judges: a judge learns real labels, cannot learn shuffled ones, and is cached by its settings."""
from __future__ import annotations

import pytest
import torch

from vae_lib import judges
from vae_lib.data import FACTOR_BINS, load_dataset

# Small enough for seconds on 2 cores, big enough to learn synthetic digits (~130 steps of 64).
TINY = dict(dataset="synthetic-digits", n_train=800, n_test=1000, epochs=10, batch_size=64, width=8, hidden=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These nets are tiny: one thread is faster, and much faster when other processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("judges")


@pytest.fixture(scope="module")
def real_judge(cache):
    return judges.train_or_load_judge(judges.JudgeSettings(**TINY), cache_dir=cache, progress=False, verbose=False)


def test_the_same_settings_train_the_same_judge_whatever_ran_before(tmp_path):
    small = judges.JudgeSettings(**{**TINY, "n_train": 128, "epochs": 1})
    trained = []
    for before in (0, 1):
        torch.manual_seed(before)          # another state of the global generator, as other cells would leave it
        torch.randn(before * 7 + 3)
        judge = judges.train_or_load_judge(small, cache_dir=tmp_path / str(before), progress=False, verbose=False)
        trained.append(judge.state_dict())
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])


def test_real_labels_score_high_and_shuffled_labels_score_chance(real_judge, cache):
    shuffled = judges.train_or_load_judge(judges.JudgeSettings(**TINY, shuffle_labels=True), cache_dir=cache,
                                          progress=False, verbose=False)
    assert real_judge.test_accuracy["label"] > 0.85
    # Chance is 10 %. A classifier of shuffled labels that generalises at all predicts, for each true
    # class, the shuffled label most common among its training images, so its held-out accuracy
    # moves in steps of about 10 % (one class whose majority lands on itself): 25 % allows one such step.
    assert shuffled.test_accuracy["label"] < 0.25
    # The same numbers measured again from the held-out data (test_accuracy is what was stored).
    test = load_dataset("synthetic-digits", "test", n=1000, verbose=False)
    assert judges.judge_accuracy(real_judge, test)["label"] == pytest.approx(real_judge.test_accuracy["label"])


def test_cached_judge_is_loaded_not_retrained(real_judge, cache, monkeypatch):
    settings = judges.JudgeSettings(**TINY)
    path = settings.path(cache)
    assert path.exists() and path.name == f"synthetic-digits-{settings.hash()}.pt"
    monkeypatch.setattr(judges, "fit_judge", lambda *a, **k: pytest.fail("a cached judge was retrained"))
    loaded = judges.train_or_load_judge(settings, cache_dir=cache, progress=False, verbose=False)
    images = load_dataset("synthetic-digits", "test", n=64, verbose=False).images
    assert torch.equal(loaded.predict_labels(images), real_judge.predict_labels(images))
    torch.testing.assert_close(loaded.embed_images(images), real_judge.embed_images(images))
    assert loaded.settings == settings.to_dict()
    assert loaded.test_accuracy == real_judge.test_accuracy
    # No partial files left next to the checkpoint (atomic write).
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []


def test_settings_hash_changes_with_every_field():
    base = judges.JudgeSettings(**TINY)
    assert base.hash() == judges.JudgeSettings(**TINY).hash()
    for change in ({"epochs": 11}, {"seed": 1}, {"shuffle_labels": True}, {"dataset_kwargs": {"seed": 2}},
                   {"width": 16}):
        assert judges.JudgeSettings(**{**TINY, **change}).hash() != base.hash(), change


def test_cached_judges_keep_their_file_names():
    """The hashes of main before JudgeSettings took the config dataclasses' JSON and hash code: the
    judges already cached under runs/judges/<dataset>-<hash>.pt must still be found."""
    before = {("fashion-mnist", "smoke"): "6220732b32", ("fashion-mnist", "quick"): "1731d5a7a2",
              ("fashion-mnist", "full"): "e1cb423125", ("mnist", "quick"): "09e189e06f",
              ("synthetic-digits", "smoke"): "976001a16c", ("synthetic-digits", "quick"): "1836b71356",
              ("shapes", "smoke"): "b33d54eaa0", ("shapes", "quick"): "ed09bbabe1", ("shapes", "full"): "3ffc63a8b5"}
    for (dataset, preset), digest in before.items():
        settings = judges.judge_settings(dataset, preset=preset)
        assert settings.hash() == digest, (dataset, preset)
        assert settings.path("cache").name == f"{dataset}-{digest}.pt"
    assert judges.JudgeSettings("synthetic-digits").hash() == "1836b71356"
    assert judges.JudgeSettings("shapes", dataset_kwargs={"size": 32}, n_train=10).hash() == "e841deccb8"
    assert judges.JudgeSettings.from_dict(judges.JudgeSettings(**TINY).to_dict()) == judges.JudgeSettings(**TINY)


def test_judge_settings_presets():
    smoke = judges.judge_settings("fashion-mnist", preset="smoke")
    quick = judges.judge_settings("fashion-mnist", preset="quick")
    assert smoke.n_train is not None and smoke.n_train < 10_000
    assert quick.n_train is None and quick.epochs >= smoke.epochs
    assert judges.judge_settings("shapes", preset="smoke", dataset_kwargs={"size": 32}).dataset_kwargs == {"size": 32}
    with pytest.raises(ValueError, match="Unknown judge settings"):
        judges.judge_settings("shapes", preset="smoke", colour=True)


def test_shapes_judge_has_one_head_per_factor():
    data = load_dataset("shapes", n=6, size=32, verbose=False)
    judge = judges.judge_for(data, width=4, hidden=8)
    assert judge.heads_spec == FACTOR_BINS and judge.label_head == "shape"
    assert judge.value_range == (-1.0, 1.0) and judge.class_names == data.class_names
    logits = judge(data.images)
    assert {name: tuple(v.shape) for name, v in logits.items()} == {n: (6, k) for n, k in FACTOR_BINS.items()}
    assert judge.features(data.images).shape == (6, 8)
    # Every factor is a target, and the label head of 'shapes' is the shape factor itself.
    assert set(judges.targets_of(data)) == set(FACTOR_BINS)
    assert torch.equal(judges.targets_of(data)["shape"], data.labels)


def test_judge_maps_other_pixel_ranges_onto_its_own(real_judge):
    images = load_dataset("synthetic-digits", "test", n=32, verbose=False).images      # in [0, 1]
    torch.testing.assert_close(real_judge.embed_images(2 * images - 1, value_range=(-1, 1)),
                               real_judge.embed_images(images), atol=1e-5, rtol=1e-5)


def test_bad_inputs_raise_clear_errors(real_judge):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        real_judge.predict(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="lack the heads"):
        judges.fit_judge(real_judge, torch.zeros(4, 1, 28, 28), {"digit": torch.zeros(4, dtype=torch.long)})
    with pytest.raises(ValueError, match="label_head"):
        judges.Judge(1, 28, {"label": 10}, label_head="shape")


def test_read_back_is_one_for_the_real_images_and_falls_for_blanks(real_judge):
    test = load_dataset("synthetic-digits", "test", n=200, verbose=False)
    same = judges.read_back(real_judge, test.images, test)
    assert same["label"]["ratio"] == pytest.approx(1.0)
    assert same["label"]["real"] == pytest.approx(judges.judge_accuracy(real_judge, test)["label"])
    blank = judges.read_back(real_judge, torch.zeros_like(test.images), test)
    # One image for all: the judge gives it one label, right for about a tenth of the images.
    assert blank["label"]["reconstruction"] < 0.25 and blank["label"]["ratio"] < 0.3
    with pytest.raises(ValueError, match="reconstructions"):
        judges.read_back(real_judge, test.images[:10], test)
