"""Figures readable at their committed size: images of a grid at least 40 figure pixels wide, units on the loss
axes, class names on the ticks, colour bars on heat maps (issue 13)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vae_lib import viz  # noqa: E402
from vae_lib.models.cvae import CVAE  # noqa: E402
from vae_lib.viz.grids import MIN_TILE_PX, shown_tile_px  # noqa: E402

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return CVAE(z_dim=16).eval()


def texts(labels):
    return [t.get_text() for t in labels]


# ------------------------------------------------------------------------------------- tile sizes
def test_the_grids_of_the_notebooks_show_each_image_at_least_40_pixels_wide(cvae):
    x = torch.rand(16, 1, 28, 28)
    runs = {"beta=1": cvae, "linear warm-up": cvae, "cyclical": cvae, "beta=4": cvae}
    figures = {    # the calls of notebooks 00-08 (28-px CVAE images, 64-px StyleGAN-VAE images)
        "00 class means": viz.image_grid(x[:10], nrow=10, title="the mean image of each class"),
        "02 samples": viz.class_conditional_samples(cvae, n_per_class=8, class_names=NAMES),
        "02 reconstructions": viz.reconstructions(x[:10], x[:10], n=10),
        "02 walk": viz.latent_interpolation(cvae, x[0], 9, x[1], 2, steps=10, class_names=NAMES),
        "03 samples per run": viz.samples_per_run(runs, n_per_class=1, class_names=NAMES),
        "03 two per class": viz.samples_per_run(runs, n_per_class=2, class_names=NAMES),
        "08 class swap": viz.class_swap(cvae, n=5, seed=1, class_names=NAMES),
        "08 traversal": viz.latent_traversal(cvae, label=2, dims=range(6), class_names=NAMES),
        "06 reconstructions": viz.reconstructions(torch.rand(16, 3, 64, 64), torch.rand(16, 3, 64, 64), n=16),
    }
    for name, fig in figures.items():
        assert shown_tile_px(fig, 28 if "06" not in name else 64) >= MIN_TILE_PX, name
    paths = viz.interpolation_paths(cvae, steps=9, label=7, seed=3, class_names=NAMES)
    assert shown_tile_px(paths, 28) >= MIN_TILE_PX
    assert "Sneaker" in paths.axes[0].get_title()


def test_show_dataset_grid_is_readable():
    from vae_lib.data import ImageData
    data = ImageData(images=torch.rand(64, 1, 28, 28), labels=torch.arange(64) % 10, name="fashion-mnist",
                     source="test", reason="test", value_range=(0.0, 1.0), class_names=NAMES)
    fig = viz.show_dataset(data)
    assert shown_tile_px(fig, 28, fig.axes[0]) >= MIN_TILE_PX
    assert texts(fig.axes[1].get_yticklabels()) == NAMES


# --------------------------------------------------------------------------------- names and units
def test_class_names_label_the_rows_and_titles_of_the_latent_figures(cvae):
    x = torch.rand(2, 1, 28, 28)
    fig = viz.latent_interpolation(cvae, x[0], 9, x[1], 2, steps=4, class_names=NAMES)
    assert texts(fig.axes[0].get_yticklabels()) == ["Ankle boot", "Pullover"]
    assert "Pullover" in viz.latent_traversal(cvae, label=2, dims=[0], class_names=NAMES).axes[0].get_title()
    assert texts(viz.latent_interpolation(cvae, x[0], 9, x[1], 2, steps=4).axes[0].get_yticklabels()) == \
        ["class 9", "class 2"]                                   # without names: the label values


def history(terms):
    steps = [{"step": i, "epoch": i // 5, **{t: 10.0 - i for t in terms}, "beta": 1.0} for i in range(10)]
    return {"steps": steps, "epochs": [{"epoch": 0, **{t: 8.0 for t in terms}}]}


def test_loss_axes_carry_units():
    fig = viz.training_curves(history(("loss", "nll", "kl")), terms=("loss", "nll", "kl"))
    assert [ax.get_ylabel() for ax in fig.axes[:3]] == ["nats per image"] * 3
    fig = viz.compare_runs({"a": history(("kl",)), "b": history(("kl",))}, term="kl")
    assert fig.axes[0].get_ylabel() == "kl (nats per image)"
    style = history(("loss", "mse", "perceptual", "kl"))
    for s in style["steps"]:
        s["perceptual"] = 0.5
    fig = viz.training_curves(style, terms=("loss", "mse"), show_beta=False)
    assert "nats" not in fig.axes[0].get_ylabel() and "per image" in fig.axes[0].get_ylabel()
    assert "squared error" in fig.axes[1].get_ylabel()


# ----------------------------------------------------------------------------- heat maps and ticks
def test_confusion_matrix_has_class_name_ticks_and_a_colour_bar():
    confusion = torch.eye(10, dtype=torch.long) * 8 + 1
    result = {"overall": 0.5, "per_class": [0.5] * 10, "confusion": confusion, "n_per_class": 18}
    fig = viz.conditional_accuracy_bars(result, class_names=NAMES)
    bars, matrix = fig.axes[:2]
    assert texts(matrix.get_xticklabels()) == NAMES and texts(matrix.get_yticklabels()) == NAMES
    assert texts(bars.get_xticklabels()) == NAMES
    assert matrix.images[0].colorbar is not None and len(fig.axes) == 3
    # the judge's own accuracy on real images: a second bar beside each class
    fig = viz.conditional_accuracy_bars(result, class_names=NAMES, judge_on_real=[0.9] * 10)
    heights = sorted({round(p.get_height(), 3) for p in fig.axes[0].patches})
    assert heights == [0.5, 0.9] and len(fig.axes[0].patches) == 20
    with pytest.raises(ValueError, match="one accuracy per class"):
        viz.conditional_accuracy_bars(result, judge_on_real=[0.9] * 3)


def test_feature_maps_and_synthesis_ladder_have_colour_bars():
    fig = viz.feature_maps(torch.randn(1, 32, 28, 28), ncols=16)
    assert fig.axes[-1].get_ylabel() == "each tile's own range"
    assert texts(fig.axes[-1].get_yticklabels()) == ["min", "max"]
    fig.draw_without_rendering()
    tile = fig.axes[0].get_window_extent()
    assert min(tile.width, tile.height) >= MIN_TILE_PX
    outputs = [torch.rand(1, 8, 4, 4), torch.rand(1, 8, 8, 8)]
    fig = viz.synthesis_ladder(outputs, torch.rand(1, 3, 8, 8) * 2 - 1)
    assert all(ax.images[0].colorbar is not None for ax in fig.axes[:2])


# ------------------------------------------------------------------------------------ latent space
class MeanEncoder(torch.nn.Module):
    """encode(x, y) -> (the image's first pixels as the mean, zeros): a code we can read back."""

    def __init__(self, z_dim, conditional=True):
        super().__init__()
        self.z_dim, self.conditional = z_dim, conditional
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def encode(self, x, y=None):
        self.seen.append(y)
        mu = x.flatten(1)[:, :self.z_dim]
        return mu, torch.zeros_like(mu)


def test_latent_space_of_a_2d_code_draws_the_means_with_a_legend_of_class_names():
    images = torch.rand(30, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(30) % 3
    model = MeanEncoder(2)
    fig = viz.latent_space(model, images, labels, class_names=["Coat", "Shirt", "Bag"], batch_size=7)
    ax = fig.axes[0]
    assert texts(ax.get_legend().get_texts()) == ["Coat", "Shirt", "Bag"]
    for c, points in enumerate(ax.collections):
        want = images.flatten(1)[labels == c, :2].double()
        torch.testing.assert_close(torch.as_tensor(points.get_offsets().data), want)
    assert ax.get_xlabel().startswith("z[0]") and torch.equal(torch.cat(model.seen), labels)
    unconditional = MeanEncoder(2, conditional=False)
    viz.latent_space(unconditional, images, labels)
    assert unconditional.seen == [None]                         # encoded without labels, coloured by them


def test_project_2d_finds_the_principal_axes():
    gen = torch.Generator().manual_seed(2)
    # variance 9 along (1, 1, 0, 0)/sqrt 2, 1 along e3, almost nothing elsewhere
    coords = torch.randn(4000, 2, generator=gen) * torch.tensor([3.0, 1.0])
    basis = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]) / torch.tensor([[2 ** 0.5], [1.0]])
    points = coords @ basis + 0.01 * torch.randn(4000, 4, generator=gen)
    projected, shares, names = viz.project_2d(points)
    assert names == ["PC 1", "PC 2"] and shares[0] == pytest.approx(0.9, abs=0.01)
    assert abs(torch.corrcoef(torch.stack([projected[:, 0], coords[:, 0].double()]))[0, 1]) > 0.999
    fig = viz.latent_space(MeanEncoder(4), points.view(-1, 1, 2, 2), torch.zeros(4000, dtype=torch.long))
    assert fig.axes[0].get_xlabel() == f"PC 1 ({shares[0]:.0%} of the variance)"
    with pytest.raises(ValueError, match="N >= 2"):
        viz.project_2d(torch.zeros(1, 3))


def test_read_back_bars_draw_one_bar_per_run_and_factor_with_the_run_labels():
    runs = {"decoder alone": {"shape": 0.9, "position_x": 1.0, "object_hue": 1.0},
            "VAE": {"shape": 0.35, "position_x": 0.88}}
    fig = viz.read_back_bars(runs, target=0.85)
    ax = fig.axes[0]
    widths = sorted(round(p.get_width(), 2) for p in ax.patches if p.get_width() == p.get_width())   # not NaN
    assert widths == [0.35, 0.88, 0.9, 1.0, 1.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["decoder alone", "VAE"]
    # The first run is drawn on top.
    shape_bars = [p for p in ax.patches[:2]]
    assert shape_bars[0].get_y() > shape_bars[1].get_y()
    assert "target 0.85" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert "read-back" in ax.get_xlabel()
    probe = viz.read_back_bars({"code": {"shape": 0.3}, "chance": {"shape": 0.2}}, factors=("shape",),
                               xlabel="linear probe: test accuracy")
    assert probe.axes[0].get_xlabel() == "linear probe: test accuracy"
    assert sorted(round(p.get_width(), 2) for p in probe.axes[0].patches) == [0.2, 0.3]
    plt.close("all")
    with pytest.raises(ValueError):
        viz.read_back_bars({})
