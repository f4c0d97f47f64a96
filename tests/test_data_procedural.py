"""The procedural sets: synthetic-digits and shapes are deterministic, in range, and vary as documented."""
from __future__ import annotations

import pytest
import torch

from vae_lib.data import FACTOR_BINS, SHAPE_NAMES, load_dataset, render_digits, render_from_factors, render_shapes
from vae_lib.data import counter_rng, synthetic_digits
from vae_lib.data.synthetic_digits import sample_labels


# ---------------------------------------------------------------- counter-based random numbers

def test_uniforms_depend_only_on_seed_index_and_stream():
    a = counter_rng.uniforms(3, [0, 1, 2, 99], 5)
    b = counter_rng.uniforms(3, [99, 1], 5)
    assert a.shape == (4, 5) and a.dtype == torch.float64
    assert torch.equal(a[3], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a, counter_rng.uniforms(4, [0, 1, 2, 99], 5))
    assert torch.equal(a[:, :3], counter_rng.uniforms(3, [0, 1, 2, 99], 3))   # adding streams keeps the others
    many = counter_rng.uniforms(0, torch.arange(20000), 1)
    assert 0 <= many.min() and many.max() < 1
    assert abs(many.mean().item() - 0.5) < 0.01                               # 5 sigma of 1/sqrt(12*20000)
    assert torch.bincount(counter_rng.integers(many[:, 0], 4), minlength=4).min() > 4800


# ---------------------------------------------------------------- synthetic-digits

def test_digits_are_deterministic_per_seed_and_index_whatever_the_batch():
    images, labels = render_digits([0, 5, 123])
    again, again_labels = render_digits([0, 5, 123])
    alone, alone_label = render_digits([5])
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert torch.equal(images[1], alone[0]) and labels[1] == alone_label[0]
    other, _ = render_digits([0, 5, 123], seed=1)
    assert not torch.equal(images, other)


def test_digits_look_like_mnist():
    images, labels = render_digits(torch.arange(200))
    assert images.shape == (200, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert torch.equal(labels, sample_labels(torch.arange(200)))
    assert images.min() == 0 and torch.all(images.amax(dim=(1, 2, 3)) == 1)       # white digit, full contrast
    assert torch.equal(torch.round(images * 255), images * 255)                   # bytes, like MNIST
    assert images[:, :, :2, :].max() < 0.5 and images[:, :, :, :2].max() < 0.5     # black border
    assert 0.08 < images.mean() < 0.2                                             # MNIST's mean is 0.13
    pixels = images[:, 0]
    grid = torch.arange(28.0)
    mass = pixels.sum(dim=(1, 2))
    centre_y = (pixels.sum(2) * grid).sum(1) / mass
    centre_x = (pixels.sum(1) * grid).sum(1) / mass
    assert (centre_x - 13.5).abs().max() < 1.0 and (centre_y - 13.5).abs().max() < 1.0
    ink = pixels > 0.3
    height = ink.any(2).sum(1)
    width = ink.any(1).sum(1)
    assert torch.maximum(height, width).float().median() >= 18                   # fills the 20x20 box
    assert torch.maximum(height, width).max() <= 24


def test_digit_labels_are_balanced():
    counts = torch.bincount(sample_labels(torch.arange(10000)), minlength=10)
    assert counts.min() > 900 and counts.max() < 1100


def test_synthetic_digits_split_sizes_n_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    train = load_dataset("synthetic-digits", n=12, verbose=False)
    assert train.images.shape == (12, 1, 28, 28) and train.value_range == (0.0, 1.0)
    assert train.class_names == [str(d) for d in range(10)] and train.name == "synthetic-digits"
    assert "not cached" in train.reason and not any(tmp_path.iterdir())
    assert torch.equal(train.images, render_digits(range(12))[0])

    # A whole (shrunken) test split is rendered once, cached atomically, then read back identically.
    monkeypatch.setitem(synthetic_digits.SPLIT_SIZES, "test", 30)
    first = load_dataset("synthetic-digits", "test", verbose=False)
    path = synthetic_digits.cache_path("test")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]
    assert torch.equal(first.images, render_digits(range(60_000, 60_030))[0])
    second = load_dataset("synthetic-digits", "test", n=10, verbose=False)
    assert second.source == str(path) and "cached" in second.reason
    assert torch.equal(second.images, first.images[:10]) and torch.equal(second.labels, first.labels[:10])


# ---------------------------------------------------------------- shapes

def test_shapes_are_deterministic_and_in_range():
    images, labels, factors = render_shapes([0, 7, 4000])
    again, _, _ = render_shapes([7])
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert torch.equal(images[1], again[0])
    assert not torch.equal(images, render_shapes([0, 7, 4000], seed=1)[0])
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(labels, factors["shape"])


@pytest.mark.parametrize("size", [32, 128])
def test_shapes_sizes(size):
    images, _, _ = render_shapes(range(4), size=size)
    assert images.shape == (4, 3, size, size)


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match=r"\(32, 64, 128\)"):
        render_shapes([0], size=48)
    with pytest.raises(ValueError, match="size must be one of"):
        load_dataset("shapes", size=100, verbose=False)


def test_every_factor_takes_every_bin():
    data = load_dataset("shapes", n=600, size=32, verbose=False)
    assert set(data.factors) == set(FACTOR_BINS)
    assert len(SHAPE_NAMES) >= 4 and data.class_names == SHAPE_NAMES
    for name, bins in FACTOR_BINS.items():
        values = data.factors[name]
        assert values.dtype == torch.int64 and values.shape == (600,)
        assert values.min() == 0 and values.max() == bins - 1, name
        assert len(values.unique()) == bins, name
    assert torch.equal(data.labels, data.factors["shape"])
    assert data.value_range == (-1.0, 1.0)
    test = load_dataset("shapes", "test", n=50, size=32, verbose=False)
    assert not torch.equal(test.images, data.images[:50])


def base_factors(n: int = 1, **changes) -> dict[str, torch.Tensor]:
    factors = {name: torch.full((n,), bins // 2) for name, bins in FACTOR_BINS.items()}
    factors["texture"] = torch.zeros(n, dtype=torch.int64)
    factors.update({k: torch.as_tensor(v) for k, v in changes.items()})
    return factors


def object_mask(image: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    return (image - other).abs().sum(0) > 0.1


def test_factors_do_what_they_say():
    size = 64
    grid = torch.arange(size, dtype=torch.float32)
    # position_x: bin 0 vs 7 moves the object from left to right by 0.7 of the half-width.
    left, right = render_from_factors(base_factors(2, position_x=[0, 7]), size)
    hue_changed = render_from_factors(base_factors(2, position_x=[0, 7], object_hue=[0, 0]), size)
    column_of_mass = lambda mask: (mask.float().sum(0) * grid).sum() / mask.sum()  # noqa: E731
    shift = column_of_mass(object_mask(right, hue_changed[1])) - column_of_mass(object_mask(left, hue_changed[0]))
    assert abs(shift.item() - 0.7 * size / 2) < 1.5
    # object_hue changes only the object; background_hue only the background (the object sits near the centre).
    centre, corner = (slice(None), slice(30, 36), slice(30, 36)), (slice(None), slice(0, 4), slice(0, 4))
    hues = render_from_factors(base_factors(2, object_hue=[0, 4]), size)
    assert (hues[0] - hues[1])[centre].abs().min() > 0.1 and (hues[0] - hues[1])[corner].abs().max() < 1e-6
    backs = render_from_factors(base_factors(2, background_hue=[0, 4]), size)
    assert (backs[0] - backs[1])[centre].abs().max() < 1e-6 and (backs[0] - backs[1])[corner].abs().max() > 0.1
    # scale: a larger bin covers more pixels.
    small, large = render_from_factors(base_factors(2, scale=[0, 5], object_hue=[0, 0]), size)
    plain = render_from_factors(base_factors(2, scale=[0, 5], object_hue=[4, 4]), size)
    assert object_mask(large, plain[1]).sum() > 1.5 * object_mask(small, plain[0]).sum()
    # texture: stripes add variation inside the object.
    flat, striped = render_from_factors(base_factors(2, texture=[0, 3]), size)
    spread = lambda image: image[centre].std(dim=(1, 2)).mean()  # noqa: E731  per channel, inside the object
    assert spread(striped) > 3 * spread(flat) + 0.02
    # light: from the left (bin 0) the left edge is brighter than the right edge, from the right the opposite.
    from_left, from_right = render_from_factors(base_factors(2, light=[0, 2]), size)
    assert from_left[:, :, :3].mean() > from_left[:, :, -3:].mean()
    assert from_right[:, :, :3].mean() < from_right[:, :, -3:].mean()
    # shapes: five kinds give five different silhouettes; a circle ignores rotation, a square does not.
    kinds = render_from_factors(base_factors(5, shape=torch.arange(5)), size)
    assert len({tuple(k.flatten().round(decimals=2).tolist()) for k in kinds}) == 5
    circles = render_from_factors(base_factors(2, shape=[1, 1], rotation=[0, 3]), size)
    squares = render_from_factors(base_factors(2, shape=[0, 0], rotation=[0, 3]), size)
    assert (circles[0] - circles[1]).abs().max() < 0.05
    assert (squares[0] - squares[1]).abs().max() > 0.5


def test_render_from_factors_checks_its_input():
    with pytest.raises(ValueError, match="missing factors"):
        render_from_factors({"shape": torch.tensor([0])})
    with pytest.raises(ValueError, match="'rotation' must be in 0..7"):
        render_from_factors(base_factors(1, rotation=[8]))


def test_fixed_factors_hold_one_bin_and_leave_the_rest_alone():
    from vae_lib.data.shapes import UPRIGHT, sample_factors

    free = load_dataset("shapes", "test", n=64, size=32, verbose=False)
    upright = load_dataset("shapes", "test", n=64, size=32, verbose=False, fixed_factors=UPRIGHT)
    assert (upright.factors["rotation"] == UPRIGHT["rotation"]).all()
    assert len(set(free.factors["rotation"].tolist())) > 1
    for name in FACTOR_BINS:
        if name != "rotation":
            assert torch.equal(upright.factors[name], free.factors[name]), name
    # Same factors -> the same pixels as rendering them directly; the rotated ones differ.
    assert torch.equal(upright.images, render_from_factors(upright.factors, 32))
    assert not torch.equal(upright.images, free.images)
    assert "rotation fixed at bin 4" in upright.source
    assert torch.equal(sample_factors(range(5), fixed_factors={"texture": 0})["texture"], torch.zeros(5, dtype=torch.int64))


@pytest.mark.parametrize("bad", [{"shape": 0}, {"rotaton": 1}, {"rotation": 8}, {"rotation": -1}, {"rotation": 1.0},
                                 {"rotation": True}, [("rotation", 4)]])
def test_fixed_factors_refuse_what_they_cannot_hold(bad):
    with pytest.raises(ValueError, match="fixed_factors"):
        load_dataset("shapes", "test", n=4, size=32, verbose=False, fixed_factors=bad)


def test_stripes_are_drawn_in_the_objects_frame():
    """The stripes move (and turn) with the object: notebook 08 asks whether that is why the reference VAE's coarse
    layers draw them (it is not: the decoder trained on true factors draws them in its fine layers)."""
    from vae_lib.data.shapes import TEXTURE_CYCLES, TEXTURE_NAMES

    assert len(TEXTURE_CYCLES) == len(TEXTURE_NAMES) == FACTOR_BINS["texture"]
    assert TEXTURE_NAMES[0] == "no stripes" and TEXTURE_NAMES[3] == "10 cycles"
    size = 64
    # Square, upright (rotation bin 4 = 0 degrees), x bins 0 and 5: centres 0.5 apart in [-1, 1], 16 pixels.
    common = dict(shape=[0, 0], rotation=[4, 4], position_x=[0, 5], scale=[5, 5])
    striped = render_from_factors(base_factors(2, texture=[3, 3], **common), size)
    flat = render_from_factors(base_factors(2, texture=[0, 0], **common), size)
    # The stripe factor alone: hue and light cancel inside the object. The red channel of this hue (bin 4) is
    # far from the clamp at 1, which the other two reach where the light is brightest.
    stripes = (striped[:, 0] + 1) / (flat[:, 0] + 1)
    centre = [round((1 + (-0.35 + 0.7 * x / 7)) * size / 2) for x in (0, 5)]
    rows = slice(size // 2 - 6, size // 2 + 6)
    left, right = (stripes[i, rows, c - 6:c + 6] for i, c in enumerate(centre))
    assert left.std() > 0.05                          # there are stripes in the window
    assert torch.allclose(left, right, atol=0.02)     # the same stripes, moved with the object


def test_stripes_in_the_image_frame_stay_put_when_the_object_moves():
    size = 64
    common = dict(shape=[0, 0], rotation=[4, 4], position_x=[0, 5], scale=[5, 5])
    striped = render_from_factors(base_factors(2, texture=[3, 3], **common), size, stripes="image")
    flat = render_from_factors(base_factors(2, texture=[0, 0], **common), size, stripes="image")
    stripes = (striped[:, 0] + 1) / (flat[:, 0] + 1)
    rows, shared = slice(size // 2 - 6, size // 2 + 6), slice(26, 28)   # columns inside both squares
    assert torch.allclose(stripes[0, rows, shared], stripes[1, rows, shared], atol=0.02)
    centre = [round((1 + (-0.35 + 0.7 * x / 7)) * size / 2) for x in (0, 5)]
    left, right = (stripes[i, rows, c - 6:c + 6] for i, c in enumerate(centre))
    assert (left - right).abs().max() > 0.2          # relative to the object, the bands moved
    # Only the stripes change with the frame.
    assert torch.equal(flat, render_from_factors(base_factors(2, texture=[0, 0], **common), size))
    with pytest.raises(ValueError, match="stripes must be one of"):
        render_from_factors(base_factors(1), 32, stripes="world")
    data = load_dataset("shapes", n=4, size=32, stripes="image", verbose=False)
    assert data.source.endswith("stripes in the image frame)")
