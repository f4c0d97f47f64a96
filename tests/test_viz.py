"""Headless tests of vae_lib.viz: every figure is built on small inputs and its drawn arrays checked."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from vae_lib import viz  # noqa: E402
from vae_lib.data import FACTOR_BINS, load_dataset  # noqa: E402
from vae_lib.models.cvae import CVAE  # noqa: E402
from vae_lib.models.stylegan_vae import ConvolutionalVAE  # noqa: E402

PAD = 2     # make_grid's padding, as documented in viz


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def drawn(fig, axes_index=0):
    """The array shown by the first image of an axes."""
    return np.asarray(fig.axes[axes_index].images[0].get_array())


def grid_shape(n, nrow, h, w):
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return rows * (h + PAD) + PAD, cols * (w + PAD) + PAD


def tile(array, row, col, h, w):
    top, left = PAD + row * (h + PAD), PAD + col * (w + PAD)
    return array[top:top + h, left:left + w]


def ytick_texts(ax):
    return [t.get_text() for t in ax.get_yticklabels()]


# ----------------------------------------------------------------------------------- image grids
def test_image_grid_grayscale_and_rgb_shapes():
    gray = torch.rand(10, 1, 5, 7)
    fig = viz.image_grid(gray, nrow=4, title="ten")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert drawn(fig).shape == grid_shape(10, 4, 5, 7) == (23, 38)
    assert fig.axes[0].get_title() == "ten"
    np.testing.assert_allclose(tile(drawn(fig), 2, 1, 5, 7), gray[9, 0].numpy(), atol=1e-6)

    rgb = torch.rand(3, 3, 4, 4)
    fig = viz.image_grid(rgb, nrow=8)
    assert drawn(fig).shape == (*grid_shape(3, 8, 4, 4), 3)
    np.testing.assert_allclose(tile(drawn(fig), 0, 2, 4, 4), rgb[2].permute(1, 2, 0).numpy(), atol=1e-6)


def test_value_range_minus_one_one_displays_like_zero_one():
    x01 = torch.rand(6, 1, 4, 4)
    a = drawn(viz.image_grid(x01, nrow=3))
    b = drawn(viz.image_grid(2 * x01 - 1, nrow=3, value_range=(-1, 1)))
    np.testing.assert_allclose(a, b, atol=1e-6)
    rgb = torch.rand(4, 3, 4, 4)
    np.testing.assert_allclose(drawn(viz.image_grid(rgb)), drawn(viz.image_grid(2 * rgb - 1, value_range=(-1, 1))),
                               atol=1e-6)


def test_values_outside_the_range_are_clipped_and_padding_is_white():
    x = torch.tensor([-3.0, 0.5, 7.0]).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    array = drawn(viz.image_grid(x, nrow=3))
    assert [tile(array, 0, j, 2, 2).mean() for j in range(3)] == pytest.approx([0.0, 0.5, 1.0])
    assert array[0].min() == 1.0 and array[:, 0].min() == 1.0


@pytest.mark.parametrize("bad", [torch.rand(1, 4, 4), torch.rand(2, 2, 4, 4), torch.rand(0, 1, 4, 4),
                                 torch.rand(2, 1, 1, 4, 4)])
def test_image_grid_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        viz.image_grid(bad)


def test_image_grid_rejects_an_empty_value_range():
    with pytest.raises(ValueError, match="low < high"):
        viz.image_grid(torch.rand(2, 1, 4, 4), value_range=(1, 0))


def test_reconstructions_two_rows_of_n():
    x, x_hat = torch.rand(10, 1, 6, 5), torch.rand(10, 1, 6, 5)
    fig = viz.reconstructions(x, x_hat, n=4)
    assert len(fig.axes) == 2
    for i, source in enumerate((x, x_hat)):
        assert drawn(fig, i).shape == grid_shape(4, 4, 6, 5)
        np.testing.assert_allclose(tile(drawn(fig, i), 0, 3, 6, 5), source[3, 0].numpy(), atol=1e-6)
    assert [ytick_texts(ax) for ax in fig.axes] == [["input"], ["reconstruction"]]
    assert drawn(viz.reconstructions(x[:3], x_hat[:3], n=8), 0).shape == grid_shape(3, 3, 6, 5)
    with pytest.raises(ValueError, match="same shape"):
        viz.reconstructions(x, x_hat[:, :, :5])
    with pytest.raises(ValueError):
        viz.reconstructions(x[0], x_hat[0])


def test_reconstructions_one_row_per_labelled_set():
    x, early, late = torch.rand(5, 1, 6, 5), torch.rand(5, 1, 6, 5), torch.rand(5, 1, 6, 5)
    fig = viz.reconstructions(x, {"step 2,500": early, "step 5,000": late}, n=3)
    assert len(fig.axes) == 3
    assert [ytick_texts(ax) for ax in fig.axes] == [["input"], ["step 2,500"], ["step 5,000"]]
    for i, source in enumerate((x, early, late)):
        np.testing.assert_allclose(tile(drawn(fig, i), 0, 2, 6, 5), source[2, 0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="late"):
        viz.reconstructions(x, {"late": late[:, :, :5]})
    with pytest.raises(ValueError, match="no reconstructions"):
        viz.reconstructions(x, {})


# ---------------------------------------------------------------------------------- model figures
class ClassLevelModel(nn.Module):
    """sample(n, y): a 4x4 image at grey level y / (num_classes - 1), plus generator noise of 0.01."""

    num_classes = 3
    data_range = (0.0, 1.0)

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def sample(self, n, y, *, generator=None):
        assert len(y) == n
        level = y.float() / (self.num_classes - 1)
        noise = 0.01 * torch.randn(len(y), 1, 4, 4, generator=generator)
        return (level.view(-1, 1, 1, 1) + noise).clamp(0, 1)


def test_class_conditional_samples_one_labelled_row_per_class():
    model = ClassLevelModel().train()
    fig = viz.class_conditional_samples(model, n_per_class=5, seed=3, class_names=["a", "b", "c"])
    array = drawn(fig)
    assert array.shape == grid_shape(15, 5, 4, 4)
    for c in range(3):
        assert np.mean([tile(array, c, j, 4, 4).mean() for j in range(5)]) == pytest.approx(c / 2, abs=0.01)
    assert ytick_texts(fig.axes[0]) == ["a", "b", "c"]
    np.testing.assert_allclose(fig.axes[0].get_yticks(), [PAD + c * (4 + PAD) + 2 for c in range(3)])  # row centres
    assert model.training
    np.testing.assert_array_equal(array, drawn(viz.class_conditional_samples(model, n_per_class=5, seed=3)))
    assert not np.array_equal(array, drawn(viz.class_conditional_samples(model, n_per_class=5, seed=4)))
    assert ytick_texts(viz.class_conditional_samples(model, num_classes=2, n_per_class=1).axes[0]) == ["0", "1"]
    with pytest.raises(ValueError, match="class names"):
        viz.class_conditional_samples(model, class_names=["a"])


def test_interpolate_latents_linear_and_spherical():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    linear = viz.interpolate_latents(a, b, steps=5)
    assert linear.shape == (5, 2)
    torch.testing.assert_close(linear[2], torch.tensor([0.5, 0.5]))
    slerp = viz.interpolate_latents(a, b[None], steps=3, spherical=True)
    torch.testing.assert_close(slerp[0], a)
    torch.testing.assert_close(slerp[-1], b)
    torch.testing.assert_close(slerp[1], torch.tensor([1.0, 1.0]) / math.sqrt(2))
    # equal-norm endpoints: the spherical path keeps the norm, the linear one dips
    za, zb = torch.randn(16, generator=torch.Generator().manual_seed(0)), None
    zb = torch.randn(16, generator=torch.Generator().manual_seed(1))
    zb = zb * za.norm() / zb.norm()
    torch.testing.assert_close(viz.interpolate_latents(za, zb, 7, spherical=True).norm(dim=1),
                               za.norm().expand(7))
    assert viz.interpolate_latents(za, zb, 7).norm(dim=1)[3] < za.norm() - 1e-3
    with pytest.raises(ValueError, match="steps"):
        viz.interpolate_latents(a, b, steps=1)
    with pytest.raises(ValueError, match="same size"):
        viz.interpolate_latents(a, torch.zeros(3))


class LevelCVAE(nn.Module):
    """encode(x, y): z = (mean of x, label); decode(z, y): a 3x3 image at grey level z[0] (+0.1 * y)."""

    data_range = (0.0, 1.0)

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def encode(self, x, y=None):
        z = torch.stack([x.mean((1, 2, 3)), torch.zeros(len(x)) if y is None else y.float()], dim=1)
        return z, torch.zeros_like(z)

    def decode(self, z, y=None):
        level = z[:, 0] + (0 if y is None else 0.1 * y.float())
        return level.view(-1, 1, 1, 1).expand(-1, 1, 3, 3)


def test_latent_interpolation_rows_per_label_and_linear_path():
    model = LevelCVAE()
    x_a, x_b = torch.full((1, 3, 3), 0.2), torch.full((1, 1, 3, 3), 0.6)
    fig = viz.latent_interpolation(model, x_a, 0, x_b, 2, steps=5)
    array = drawn(fig)
    assert array.shape == grid_shape(10, 5, 3, 3)
    assert ytick_texts(fig.axes[0]) == ["class 0", "class 2"]
    levels = np.linspace(0.2, 0.6, 5)
    np.testing.assert_allclose([tile(array, 0, j, 3, 3).mean() for j in range(5)], levels, atol=1e-6)
    np.testing.assert_allclose([tile(array, 1, j, 3, 3).mean() for j in range(5)], levels + 0.2, atol=1e-6)
    # one label, or latent codes with no labels (the StyleGAN-VAE): one row
    assert drawn(viz.latent_interpolation(model, x_a, 1, x_b, 1, steps=4)).shape == grid_shape(4, 4, 3, 3)
    fig = viz.latent_interpolation(model, z_a=torch.tensor([0.0, 0.0]), z_b=torch.tensor([1.0, 0.0]), steps=3,
                                   spherical=True)
    assert drawn(fig).shape == grid_shape(3, 3, 3, 3) and "spherical" in fig.axes[0].get_title()


def test_latent_interpolation_bad_arguments():
    model = LevelCVAE()
    x = torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match="either both images"):
        viz.latent_interpolation(model, x, 0, None, 0)
    with pytest.raises(ValueError, match="either both images"):
        viz.latent_interpolation(model, x, 0, x, 0, z_a=torch.zeros(2), z_b=torch.zeros(2))
    with pytest.raises(ValueError, match="one image"):
        viz.latent_interpolation(model, torch.rand(2, 1, 3, 3), 0, x, 0)


class MixingModel(nn.Module):
    """decode(z): RGB 4x4 at level tanh(z[0]) (channel 0) and tanh(z[1]) (channels 1, 2);
    mix(z1, z2, k): channel 0 from z1, channels 1, 2 from z2 (coarse / fine stand-in)."""

    num_style_layers = 4

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.noise_modes = []

    @staticmethod
    def _image(a, b):
        return torch.stack([a, b, b], dim=1)[:, :, None, None].expand(-1, 3, 4, 4)

    def decode(self, z, noise_mode=None):
        self.noise_modes.append(noise_mode)
        return self._image(torch.tanh(z[:, 0]), torch.tanh(z[:, 1]))

    def mix(self, z1, z2, crossover, noise_mode=None):
        self.noise_modes.append(noise_mode)
        return self._image(torch.tanh(z1[:, 0]), torch.tanh(z2[:, 1]))


def test_style_mixing_grid_layout_and_cells():
    model = MixingModel()
    g = torch.Generator().manual_seed(0)
    z_rows, z_cols = torch.randn(2, 5, generator=g), torch.randn(3, 5, generator=g)
    fig = viz.style_mixing_grid(model, z_rows, z_cols, crossover=2)
    assert model.noise_modes == ["const"] * 3                     # two decodes and one mix
    array = drawn(fig)
    assert array.shape == (*grid_shape(12, 4, 4, 4), 3)            # (2 + 1) x (3 + 1) tiles
    to01 = lambda img: ((img + 1) / 2).permute(1, 2, 0).numpy()    # noqa: E731
    np.testing.assert_allclose(tile(array, 0, 0, 4, 4), 1.0)       # blank corner
    for j in range(3):
        np.testing.assert_allclose(tile(array, 0, j + 1, 4, 4), to01(model.decode(z_cols)[j]), atol=1e-6)
    for i in range(2):
        np.testing.assert_allclose(tile(array, i + 1, 0, 4, 4), to01(model.decode(z_rows)[i]), atol=1e-6)
        for j in range(3):
            cell = model.mix(z_rows[i:i + 1], z_cols[j:j + 1], 2)[0]
            np.testing.assert_allclose(tile(array, i + 1, j + 1, 4, 4), to01(cell), atol=1e-6)
    with pytest.raises(ValueError, match="crossover"):
        viz.style_mixing_grid(model, z_rows, z_cols, crossover=5)
    with pytest.raises(ValueError, match="shapes"):
        viz.style_mixing_grid(model, z_rows[0], z_cols, crossover=1)


# -------------------------------------------------------------------------------------- curves
def make_history(epochs=3, steps_per_epoch=10, kl_scale=1.0, val=True):
    steps, means = [], []
    for e in range(epochs):
        rows = [{"step": e * steps_per_epoch + i, "epoch": e, "beta": min(1.0, (e * steps_per_epoch + i) / 15),
                 "loss": 100.0 - e * 10 - i, "nll": 90.0 - e * 10 - i, "kl": kl_scale * (e + i / 10)}
                for i in range(steps_per_epoch)]
        steps += rows
        mean = {"epoch": e, "time_s": 1.0, **{k: float(np.mean([r[k] for r in rows])) for k in ("loss", "nll", "kl")}}
        if val:
            mean["val_loss"] = mean["loss"] + 5
        means.append(mean)
    return {"steps": steps, "epochs": means}


def line_by_label(ax, label):
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_training_curves_panels_epoch_means_and_beta():
    history = make_history()
    fig = viz.training_curves(history)
    assert len(fig.axes) == 4                                     # loss, nll, kl + beta twin
    loss_ax, _, kl_ax = fig.axes[:3]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["loss", "nll", "kl"]
    x, y = line_by_label(loss_ax, "epoch mean").get_data()
    np.testing.assert_array_equal(x, [9, 19, 29])                 # the last step of each epoch
    np.testing.assert_allclose(y, [e["loss"] for e in history["epochs"]])
    np.testing.assert_allclose(line_by_label(loss_ax, "validation").get_ydata(),
                               [e["val_loss"] for e in history["epochs"]])
    assert len(line_by_label(loss_ax, "per step").get_xdata()) == 30
    twin = fig.axes[3]
    assert twin.bbox.bounds == kl_ax.bbox.bounds                  # the beta axis sits on the kl panel
    np.testing.assert_allclose(twin.get_lines()[0].get_ydata(), [s["beta"] for s in history["steps"]])

    assert len(viz.training_curves(history, show_beta=False).axes) == 3
    assert len(viz.training_curves(history, terms="nll").axes) == 2
    fig = viz.training_curves(history, terms=("loss", "kl"), log_scale=True, show_beta=False)
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "symlog"]   # kl starts at 0


def test_training_curves_smoothing_is_a_moving_average():
    history = make_history(epochs=1, steps_per_epoch=40, val=False)
    fig = viz.training_curves(history, terms=("loss",), smoothing=0.1, show_beta=False)
    smoothed = line_by_label(fig.axes[0], "smoothed")
    raw = np.array([s["loss"] for s in history["steps"]])
    expected = np.array([raw[i - 3:i + 1].mean() for i in range(3, 40)])   # window 0.1 * 40 = 4
    np.testing.assert_allclose(smoothed.get_ydata(), expected)
    np.testing.assert_array_equal(smoothed.get_xdata(), np.arange(3, 40))


def test_training_curves_bad_input():
    with pytest.raises(ValueError, match="no per-step 'elbo'.*kl"):
        viz.training_curves(make_history(), terms=("elbo",))
    with pytest.raises(ValueError, match="no steps"):
        viz.training_curves({"steps": [], "epochs": []})
    with pytest.raises(ValueError, match="smoothing"):
        viz.training_curves(make_history(), smoothing=1.5)


def test_compare_runs_one_axis_one_curve_per_run():
    runs = {"warm-up": make_history(), "constant": make_history(kl_scale=2.0)}
    fig = viz.compare_runs(runs, term="kl")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4                                # smoothed + faint raw per run
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["warm-up", "constant"]
    raw = [line for line in ax.get_lines() if line.get_label().startswith("_")]
    np.testing.assert_allclose(raw[1].get_ydata(), 2 * raw[0].get_ydata())
    fig = viz.compare_runs(runs, show_beta=True)
    assert len(fig.axes) == 2 and len(fig.axes[1].get_lines()) == 2
    with pytest.raises(ValueError, match="'constant'"):
        viz.compare_runs({"warm-up": make_history(), "constant": {"steps": [{"step": 0, "epoch": 0, "loss": 1}]}})
    with pytest.raises(ValueError):
        viz.compare_runs({})
    late = viz.compare_runs(runs, term="kl", from_step=5).axes[0].get_lines()
    assert min(line.get_xdata().min() for line in late) >= 5
    with pytest.raises(ValueError, match="from_step"):
        viz.compare_runs(runs, term="kl", from_step=10**9)


def test_kl_per_dimension_bars_and_active_colouring():
    kl = torch.tensor([2.0, 0.01, 1.0, 0.0, 0.5])
    active = torch.tensor([True, False, True, False, True])
    fig = viz.kl_per_dimension(kl, active)
    assert len(fig.axes) == 1
    bars = fig.axes[0].patches
    assert len(bars) == 5
    heights = {round(b.get_x() + b.get_width() / 2): b.get_height() for b in bars}
    assert heights == pytest.approx({0: 2.0, 1: 0.01, 2: 1.0, 3: 0.0, 4: 0.5})
    inactive = {round(b.get_x() + b.get_width() / 2) for b in bars
                if matplotlib.colors.same_color(b.get_facecolor(), "lightgray")}
    assert inactive == {1, 3}
    assert "3/5 active" in fig.axes[0].get_title()

    variances = torch.tensor([0.5, 1e-4, 0.2, 0.0, 0.02])
    fig = viz.kl_per_dimension(kl, variances=variances)           # activity from the variances
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"
    assert [line.get_ydata()[0] for line in fig.axes[1].get_lines()] == [0.01]   # threshold line
    assert "3/5 active" in fig.axes[0].get_title()
    assert len(viz.kl_per_dimension(kl).axes[0].patches) == 5
    with pytest.raises(ValueError, match=r"\(z,\)"):
        viz.kl_per_dimension(kl[None])
    with pytest.raises(ValueError, match="bool mask"):
        viz.kl_per_dimension(kl, active[:3])


# --------------------------------------------------------------------- the real models, if present
def test_cvae_figures():
    cvae_module = pytest.importorskip("vae_lib.models.cvae")
    torch.manual_seed(0)
    model = cvae_module.CVAE(z_dim=4, likelihood="gaussian")
    fig = viz.class_conditional_samples(model, n_per_class=2)
    assert drawn(fig).shape == grid_shape(20, 2, 28, 28)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    fig = viz.latent_interpolation(model, x[0], 3, x[1], 5, steps=4)
    assert drawn(fig).shape == grid_shape(8, 4, 28, 28)


def test_style_mixing_grid_with_the_stylegan_vae():
    module = pytest.importorskip("vae_lib.models.stylegan_vae")
    torch.manual_seed(0)
    model = module.ConvolutionalVAE(z_dim=8, input_size=8, max_channels=8, mapping_layers=2)
    z_rows, z_cols = torch.randn(2, 8), torch.randn(3, 8)
    for crossover, same_as in ((model.num_style_layers, "row"), (0, "column")):
        array = drawn(viz.style_mixing_grid(model, z_rows, z_cols, crossover))
        assert array.shape == (*grid_shape(12, 4, 8, 8), 3)
        for i in range(2):
            for j in range(3):
                source = tile(array, i + 1, 0, 8, 8) if same_as == "row" else tile(array, 0, j + 1, 8, 8)
                np.testing.assert_allclose(tile(array, i + 1, j + 1, 8, 8), source, atol=1e-5)
    fig = viz.latent_interpolation(model, z_a=z_rows[0], z_b=z_rows[1], steps=3)   # no labels: one row
    assert drawn(fig).shape == (*grid_shape(3, 3, 8, 8), 3)


# ------------------------------------------------------------------- comparing runs (notebook 03)
class InvertedLevelModel(ClassLevelModel):
    """ClassLevelModel with the grey levels reversed: class c at 1 - c / (num_classes - 1)."""

    def sample(self, n, y, *, generator=None):
        return 1.0 - super().sample(n, y, generator=generator)


def test_samples_per_run_one_labelled_row_per_model_with_class_columns():
    models = {"plain": ClassLevelModel(), "inverted": InvertedLevelModel()}
    fig = viz.samples_per_run(models, n_per_class=2, seed=1, class_names=["a", "b", "c"])
    array = drawn(fig)
    assert array.shape == grid_shape(12, 6, 4, 4)
    for col in range(6):
        level = (col // 2) / 2
        assert tile(array, 0, col, 4, 4).mean() == pytest.approx(level, abs=0.02)
        assert tile(array, 1, col, 4, 4).mean() == pytest.approx(1 - level, abs=0.02)
    # the same seed gives every run the same noise: the two rows are mirror images of each other
    np.testing.assert_allclose(tile(array, 0, 3, 4, 4), 1 - tile(array, 1, 3, 4, 4), atol=1e-6)
    ax = fig.axes[0]
    assert ytick_texts(ax) == ["plain", "inverted"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    tile_width = 4 + PAD                                   # a class's tick sits between its two columns
    np.testing.assert_allclose(ax.get_xticks(), [PAD + tile_width * (2 * c + 1) - PAD / 2 for c in range(3)])
    assert ytick_texts(viz.samples_per_run(models, num_classes=2).axes[0]) == ["plain", "inverted"]
    with pytest.raises(ValueError, match="class names"):
        viz.samples_per_run(models, class_names=["a"])
    with pytest.raises(ValueError, match="No models"):
        viz.samples_per_run({})


def test_latent_usage_per_run_sorted_kl_and_active_unit_bars():
    results = {"beta=1": {"kl_per_dim": torch.tensor([0.5, 3.0, 0.0, 1.0]), "active_units": 3},
               "beta=4": {"kl_per_dim": torch.tensor([0.0, 2.0, 0.001, 0.0]), "active_units": 1}}
    fig = viz.latent_usage_per_run(results)
    kl_ax, bar_ax = fig.axes
    lines = kl_ax.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), [3.0, 1.0, 0.5, 1e-4])       # sorted, zero floored
    np.testing.assert_allclose(lines[1].get_ydata(), [2.0, 0.001, 1e-4, 1e-4])
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])
    assert kl_ax.get_yscale() == "log"
    assert [t.get_text() for t in kl_ax.get_legend().get_texts()] == ["beta=1", "beta=4"]
    assert [b.get_height() for b in bar_ax.patches] == [3, 1]
    assert [t.get_text() for t in bar_ax.get_xticklabels()] == ["beta=1", "beta=4"]
    for line, bar in zip(lines, bar_ax.patches):                   # one colour per run in both panels
        assert matplotlib.colors.same_color(line.get_color(), bar.get_facecolor())
    with pytest.raises(ValueError, match="No runs"):
        viz.latent_usage_per_run({})
    with pytest.raises(ValueError, match="'x'.*active_units"):
        viz.latent_usage_per_run({"x": {"kl_per_dim": torch.zeros(3)}})
    with pytest.raises(ValueError, match=r"\(z,\)"):
        viz.latent_usage_per_run({"x": {"kl_per_dim": torch.zeros(2, 3), "active_units": 0}})


def test_feature_maps_rows_per_layer_mean_then_most_varying_channels():
    g = torch.Generator().manual_seed(0)
    first = torch.randn(4, 5, 5, generator=g) * torch.tensor([2.0, 0.1, 5.0, 1.0])[:, None, None]
    second = torch.randn(1, 3, 2, 2, generator=g) * torch.tensor([1.0, 3.0, 0.5])[:, None, None]
    fig = viz.feature_maps([first, second], ["a", "b"], n_channels=2)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes[:-1]).reshape(2, 3)               # the last axes is the colour bar
    # row "a": the mean over channels, then channel 2 (std 5), then channel 0 (std 2)
    np.testing.assert_allclose(drawn(fig, 0), first.mean(0).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(drawn(fig, 1), first[2].numpy())
    np.testing.assert_array_equal(drawn(fig, 2), first[0].numpy())
    assert [ax.get_title() for ax in axes[0]] == ["mean", "ch 2", "ch 0"]
    assert axes[0, 0].get_ylabel() == "a\n4x5x5" and axes[1, 0].get_ylabel() == "b\n3x2x2"
    # row "b" (given with its batch axis): channel 1 (std 3), then channel 0 (std 1)
    assert [ax.get_title() for ax in axes[1]] == ["mean", "ch 1", "ch 0"]
    np.testing.assert_array_equal(np.asarray(axes[1, 1].images[0].get_array()), second[0, 1].numpy())
    # more channels asked than a layer has: that row leaves its extra tiles empty
    fig = viz.feature_maps([first, second[0]], n_channels=4)
    axes = np.array(fig.axes[:-1]).reshape(2, 5)
    assert [len(ax.images) for ax in axes[1]] == [1, 1, 1, 1, 0]
    assert axes[1, 0].get_ylabel().startswith("layer 1")


def test_feature_maps_of_one_layer_every_channel_in_order():
    fig = viz.feature_maps(torch.randn(1, 10, 7, 7), ncols=4, title="10 channels")
    assert isinstance(fig, Figure)
    # 3 rows x 4 columns of 7x7 tiles, channels in order; the last row has two empty tiles
    axes = np.array(fig.axes[:-1]).reshape(3, 4)
    assert [len(ax.images) for ax in axes.ravel()] == [1] * 10 + [0] * 2
    assert all(np.asarray(ax.images[0].get_array()).shape == (7, 7) for ax in axes.ravel()[:10])
    assert axes[0, 0].get_ylabel() == "10x7x7"
    fig.savefig(io.BytesIO(), format="png")  # renders headless
    fig = viz.feature_maps(torch.zeros(3, 5, 5))
    assert [np.asarray(ax.images[0].get_array()).shape for ax in fig.axes[:-1]] == [(5, 5)] * 3
    with pytest.raises(ValueError, match="one image"):
        viz.feature_maps(torch.zeros(2, 3, 5, 5))


def test_feature_maps_bad_input():
    with pytest.raises(ValueError, match="one image"):
        viz.feature_maps([torch.zeros(2, 3, 4, 4)])
    with pytest.raises(ValueError, match="layer names"):
        viz.feature_maps([torch.zeros(3, 4, 4)], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        viz.feature_maps([])


def test_mixing_influence_curves_one_line_per_model_and_resolution_labels():
    values = {"a": torch.tensor([0.0, 0.1, 0.5, 1.0]), "b": [0.0, 0.6, 0.9, 1.0]}
    fig = viz.mixing_influence_curves(values, layer_resolutions=[4, 4, 8])
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in values]
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_allclose(lines[0].get_ydata(), [0.0, 0.1, 0.5, 1.0])
    np.testing.assert_array_equal(lines[1].get_xdata(), [0, 1, 2, 3])
    top = ax.child_axes[0]     # the secondary axis with one resolution per layer
    assert [t.get_text() for t in top.get_xticklabels()] == ["4", "4", "8"]
    assert ax.get_yscale() == "linear"
    assert viz.mixing_influence_curves(values, log_scale=True).axes[0].get_yscale() == "symlog"
    with pytest.raises(ValueError, match="same shape"):
        viz.mixing_influence_curves({"a": [0.0, 1.0], "b": [0.0, 0.5, 1.0]})
    with pytest.raises(ValueError, match="layer resolutions"):
        viz.mixing_influence_curves(values, layer_resolutions=[4, 8])


# ------------------------------------------------------------------ exploring a model (notebook 08)
@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return CVAE(z_dim=4, num_classes=3).eval()


def gray(images):
    """(N, 1, H, W) in [0, 1] -> what the grid draws for each tile."""
    return images[:, 0].numpy()


def test_interpolation_paths_rows_share_endpoints_and_show_the_norms(cvae):
    gen = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(4, generator=gen), torch.randn(4, generator=gen)
    fig = viz.interpolation_paths(cvae, z_a, z_b, steps=5, label=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 5 * 30 + PAD)
    with torch.no_grad():
        ends = gray(cvae.decode(torch.stack([z_a, z_b]), torch.tensor([2, 2])))
    for row in (0, 1):
        np.testing.assert_allclose(tile(array, row, 0, 28, 28), ends[0], atol=1e-5)
        np.testing.assert_allclose(tile(array, row, 4, 28, 28), ends[1], atol=1e-5)
    # The midpoint differs: the straight line passes closer to the origin than the great circle.
    assert not np.allclose(tile(array, 0, 2, 28, 28), tile(array, 1, 2, 28, 28))
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[1].get_lines()}
    mid_linear = ((z_a + z_b) / 2).norm().item()
    assert lines["linear"][2] == pytest.approx(mid_linear, rel=1e-5)
    assert lines["spherical"][2] > mid_linear
    assert lines["sqrt(d)"][0] == pytest.approx(2.0)


def test_latent_traversal_moves_one_dimension_per_row(cvae):
    z = torch.tensor([0.5, -0.5, 0.25, 1.0])
    fig = viz.latent_traversal(cvae, z, dims=[1, 3], values=[-2.0, 0.0, 2.0], label=1)
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 3 * 30 + PAD)
    code = z.clone()
    code[3] = 2.0
    with torch.no_grad():
        want = gray(cvae.decode(code[None], torch.tensor([1])))[0]
    np.testing.assert_allclose(tile(array, 1, 2, 28, 28), want, atol=1e-5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z[1]", "z[3]"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "0", "2"]
    with pytest.raises(ValueError, match="dims"):
        viz.latent_traversal(cvae, dims=[4], label=0)
    with pytest.raises(ValueError, match="needs a label"):
        viz.latent_traversal(cvae)


def test_class_swap_keeps_z_per_row_and_the_class_per_column(cvae):
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(4))
    fig = viz.class_swap(cvae, z, class_names=["a", "b", "c"])
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 3 * 30 + PAD)
    for i in range(2):
        for c in range(3):
            with torch.no_grad():
                want = gray(cvae.decode(z[i:i + 1], torch.tensor([c])))[0]
            np.testing.assert_allclose(tile(array, i, c, 28, 28), want, atol=1e-5, err_msg=f"row {i}, class {c}")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="class-conditional"):
        viz.class_swap(ConvolutionalVAE(z_dim=4, input_size=8, max_channels=4, mapping_layers=1))


def test_interpolation_of_a_stylegan_vae(stylevae):
    fig = viz.interpolation_paths(stylevae, steps=3)
    assert drawn(fig).shape == (2 * 10 + PAD, 3 * 10 + PAD, 3)


def test_conditional_accuracy_bars_draw_the_shares():
    result = {"overall": 0.5, "per_class": [1.0, 0.5, 0.0], "n_per_class": 2,
              "confusion": torch.tensor([[2, 0, 0], [1, 1, 0], [0, 2, 0]])}
    fig = viz.conditional_accuracy_bars(result, class_names=["x", "y", "z"])
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    assert heights == [1.0, 0.5, 0.0]
    np.testing.assert_allclose(drawn(fig, 1), [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="class names"):
        viz.conditional_accuracy_bars(result, class_names=["x"])


def test_factor_transfer_curves_one_line_per_factor():
    table = {k: {"from_source1": {"shape": k / 2, "texture": (k / 2) ** 2, "light": 0.5},
                 "as_expected": 1 - abs(k - 1.0)} for k in range(3)}
    fig = viz.factor_transfer_curves(table)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"shape", "texture", "light", "coarse from 1\n& fine from 2"}
    np.testing.assert_allclose(lines["texture"].get_ydata(), [0, 0.25, 1])
    assert lines["shape"].get_linestyle() == "-" and lines["texture"].get_linestyle() == "--"
    with pytest.raises(ValueError, match="empty"):
        viz.factor_transfer_curves({})


def test_transfer_by_level_one_line_per_level_of_source_2():
    table = {k: {"from_source2_by_level": {"texture": {0: 1.0 - k / 4, 3: 1.0 - k / 2}},
                 "informative_by_level": {"texture": {0: 12, 3: 7}}} for k in range(3)}
    fig = viz.transfer_by_level(table, "texture", level_names={0: "none", 3: "10 cycles"})
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"none (12 pairs)", "10 cycles (7 pairs)"}
    np.testing.assert_allclose(lines["10 cycles (7 pairs)"].get_ydata(), [1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="no levels of 'shape'"):
        viz.transfer_by_level(table, "shape")
    with pytest.raises(ValueError, match="empty"):
        viz.transfer_by_level({}, "texture")


# --------------------------------------------------------------------------- datasets (notebook 00)
def test_show_dataset_and_factor_histograms_headless():
    shapes = load_dataset("shapes", n=40, size=32, verbose=False)
    figure = viz.show_dataset(shapes, n=16)
    assert len(figure.axes) == 2 and figure.dpi <= 80
    assert [t.get_text() for t in figure.axes[1].get_yticklabels()] == shapes.class_names
    histograms = viz.factor_histograms(shapes)
    titles = [ax.get_title() for ax in histograms.axes if ax.axison]
    assert titles == list(shapes.factors)
    for fig in (figure, histograms):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue()[:4] == b"\x89PNG"

    digits = load_dataset("synthetic-digits", n=10, verbose=False)
    viz.show_dataset(digits)
    with pytest.raises(ValueError, match="no generative factors"):
        viz.factor_histograms(digits)


def test_factor_traversals_has_one_row_per_factor():
    figure = viz.factor_traversals(index=2, size=32)
    assert [ax.get_ylabel() for ax in figure.axes] == list(FACTOR_BINS)
    widths = [ax.images[0].get_array().shape[1] for ax in figure.axes]
    assert widths == [bins * (32 + PAD) + PAD for bins in FACTOR_BINS.values()]     # bins tiles of 32 px, padded


def test_metric_curves_draws_one_line_per_run_and_the_references():
    runs = {"a": [{"step": 100, "psnr_db": 18.0}, {"step": 200, "psnr_db": 20.5}],
            "b": [{"step": 100, "psnr_db": 16.0}]}
    fig = viz.metric_curves(runs, references={"mean image": 15.7}, ylabel="PSNR (dB)")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines[:2]] == ["a", "b"]
    assert list(ax.lines[0].get_ydata()) == [18.0, 20.5] and ax.get_ylabel() == "PSNR (dB)"
    assert ax.lines[2].get_ydata()[0] == 15.7                 # the reference line
    with pytest.raises(ValueError, match="psnr_db"):
        viz.metric_curves({"c": [{"step": 1}]})
    with pytest.raises(ValueError, match="No runs"):
        viz.metric_curves({})


def test_seed_comparison_draws_a_panel_per_measure_and_a_line_per_seed():
    from vae_lib import viz

    runs = [{"seed": s, "variant": v, "psnr_db": 20 + s + (v == "b"), "read_back": {"shape": 0.3 + 0.1 * (v == "b")}}
            for s in (0, 1, 2) for v in ("a", "b")]
    fig = viz.seed_comparison(runs, {"psnr_db": "PSNR (dB)", "read_back.shape": "shape read-back"}, ["a", "b"],
                              labels={"a": "MSE", "b": "MSE + judge"})
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_ylabel() == "PSNR (dB)"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["MSE", "MSE + judge"]
    lines = axes[0].get_lines()
    assert len(lines) == 3 and list(lines[2].get_ydata()) == [22, 23]          # seed 2: a then b
    means = axes[1].collections[0].get_offsets()[:, 1]
    assert list(means) == pytest.approx([0.3, 0.4])                            # the means
    fixed = viz.seed_comparison(runs, {"read_back.shape": "shape"}, ["a", "b"], ylim={"read_back.shape": (0, 1)})
    assert fixed.axes[0].get_ylim() == (0, 1)
    with pytest.raises(ValueError, match="measure"):
        viz.seed_comparison(runs, {}, ["a"])


def test_rate_distortion_puts_every_run_at_its_kl_and_reconstruction():
    from vae_lib import viz

    runs = [{"seed": s, "variant": v, "kl": kl + s, "nll": nll - s} for s in (0, 1, 2)
            for v, kl, nll in (("beta=1", 10.0, 247.0), ("beta=4", 3.0, 262.0))]
    fig = viz.rate_distortion(runs, ["beta=1", "beta=4"], labels={"beta=4": "β = 4"})
    ax = fig.axes[0]
    points = {tuple(p) for c in ax.collections for p in c.get_offsets().tolist()}
    assert {(r["kl"], r["nll"]) for r in runs} <= points
    assert len(ax.collections) == 2 * 3 + 3          # a set per (variant, seed), and an empty one per seed marker
    assert "KL" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["beta=1", "β = 4"] and "seed 2" in legend
    diagonals = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert diagonals and all(len(set(line.get_xdata() + line.get_ydata())) == 1 for line in diagonals)  # equal -ELBO
    with pytest.raises(ValueError, match="rate_distortion needs runs"):
        viz.rate_distortion(runs, ["cyclical"])
