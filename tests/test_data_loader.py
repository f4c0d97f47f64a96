"""InMemoryLoader: every sample once per epoch, a new order each epoch, exact resume; ImageData helpers."""
from __future__ import annotations

import pytest
import torch

from vae_lib.data import ImageData, InMemoryLoader


def epoch_indices(loader: InMemoryLoader) -> torch.Tensor:
    return torch.cat([batch[0] for batch in loader])


def test_each_sample_exactly_once_per_epoch():
    ids = torch.arange(103)
    loader = InMemoryLoader(ids, batch_size=10)
    assert len(loader) == 11                                        # ceil(103 / 10)
    batches = list(loader)
    assert len(batches) == 11 and [len(b[0]) for b in batches] == [10] * 10 + [3]
    assert torch.equal(torch.cat([b[0] for b in batches]).sort().values, ids)
    assert loader.epoch == 1


def test_order_changes_across_epochs_and_seeds():
    loader = InMemoryLoader(torch.arange(50), batch_size=7)
    first, second = epoch_indices(loader), epoch_indices(loader)
    assert not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)
    assert not torch.equal(first, epoch_indices(InMemoryLoader(torch.arange(50), batch_size=7, seed=1)))
    assert torch.equal(first, epoch_indices(InMemoryLoader(torch.arange(50), batch_size=7)))


def test_state_dict_resume_gives_the_same_order():
    straight = InMemoryLoader(torch.arange(40), batch_size=8, seed=5)
    orders = [epoch_indices(straight) for _ in range(3)]
    assert straight.state_dict() == {"epoch": 3, "seed": 5}

    interrupted = InMemoryLoader(torch.arange(40), batch_size=8, seed=5)
    epoch_indices(interrupted)
    saved = interrupted.state_dict()
    resumed = InMemoryLoader(torch.arange(40), batch_size=8)       # a fresh process, default seed
    resumed.load_state_dict(saved)
    assert torch.equal(epoch_indices(resumed), orders[1])
    assert torch.equal(epoch_indices(resumed), orders[2])


def test_tensors_stay_aligned_and_drop_last():
    images = torch.arange(23, dtype=torch.float32).view(23, 1, 1, 1).expand(23, 1, 2, 2)
    labels = torch.arange(23) * 10
    loader = InMemoryLoader(images, labels, batch_size=5, drop_last=True, device="cpu")
    assert len(loader) == 4
    seen = []
    for x, y in loader:
        assert x.shape == (5, 1, 2, 2) and y.shape == (5,)
        assert torch.equal(x[:, 0, 0, 0].long() * 10, y)
        seen.append(y)
    seen = torch.cat(seen)
    assert len(seen) == 20 and len(seen.unique()) == 20


def test_no_shuffle_keeps_the_order():
    loader = InMemoryLoader(torch.arange(9), batch_size=4, shuffle=False)
    assert torch.equal(epoch_indices(loader), torch.arange(9))
    assert torch.equal(epoch_indices(loader), torch.arange(9))


def test_bad_input():
    with pytest.raises(ValueError, match="first dimension"):
        InMemoryLoader(torch.zeros(4), torch.zeros(5))
    with pytest.raises(ValueError, match="batch_size"):
        InMemoryLoader(torch.zeros(4), batch_size=0)
    with pytest.raises(ValueError, match="at least one tensor"):
        InMemoryLoader()


def make_data(n: int = 6) -> ImageData:
    return ImageData(images=torch.linspace(0, 1, n * 4).view(n, 1, 2, 2), labels=torch.arange(n) % 3,
                     name="toy", source="test", reason="made here", value_range=(0.0, 1.0),
                     class_names=["a", "b", "c"])


def test_image_data_rescaled_and_loader():
    data = make_data()
    assert len(data) == 6 and data.factors == {}
    signed = data.rescaled(-1, 1)
    assert signed.value_range == (-1.0, 1.0)
    assert torch.allclose(signed.images, data.images * 2 - 1)
    assert torch.allclose(signed.rescaled(0, 1).images, data.images)
    assert data.value_range == (0.0, 1.0)                            # the original is unchanged
    loader = data.loader(batch_size=4, seed=2)
    assert isinstance(loader, InMemoryLoader) and len(loader) == 2 and loader.seed == 2
    x, y = next(iter(loader))
    assert x.shape == (4, 1, 2, 2) and y.dtype == torch.int64
    assert data.summary() == "toy (train, 6 images) from test: made here"


def test_image_data_checks_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        ImageData(images=torch.zeros(3, 4, 4), labels=torch.zeros(3, dtype=torch.int64), name="x", source="",
                  reason="", value_range=(0.0, 1.0), class_names=[])
    with pytest.raises(ValueError, match="labels"):
        ImageData(images=torch.zeros(3, 1, 4, 4), labels=torch.zeros(2, dtype=torch.int64), name="x", source="",
                  reason="", value_range=(0.0, 1.0), class_names=[])
    with pytest.raises(ValueError, match="lo < hi"):
        make_data().rescaled(1, 1)
