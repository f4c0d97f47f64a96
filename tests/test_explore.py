"""vae_lib.explore figures (headless) and the exercises of notebook 08 (vae_lib.exercises.explore)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vae_lib import explore  # noqa: E402
from vae_lib.exercises import ExerciseError  # noqa: E402
from vae_lib.exercises import explore as ex  # noqa: E402
from vae_lib.models.cvae import CVAE  # noqa: E402
from vae_lib.models.stylegan_vae import ConvolutionalVAE  # noqa: E402

PAD = 2     # make_grid's padding between tiles


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cvae():
    torch.manual_seed(0)
    return CVAE(z_dim=4, num_classes=3).eval()


def drawn(fig, axes_index=0):
    return np.asarray(fig.axes[axes_index].images[0].get_array())


def tile(array, row, col, size):
    top, left = PAD + row * (size + PAD), PAD + col * (size + PAD)
    return array[top:top + size, left:left + size]


def gray(images):
    """(N, 1, H, W) in [0, 1] -> what the grid draws for each tile."""
    return images[:, 0].numpy()


def test_interpolation_paths_rows_share_endpoints_and_show_the_norms(cvae):
    gen = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(4, generator=gen), torch.randn(4, generator=gen)
    fig = explore.interpolation_paths(cvae, z_a, z_b, steps=5, label=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 5 * 30 + PAD)
    with torch.no_grad():
        ends = gray(cvae.decode(torch.stack([z_a, z_b]), torch.tensor([2, 2])))
    for row in (0, 1):
        np.testing.assert_allclose(tile(array, row, 0, 28), ends[0], atol=1e-5)
        np.testing.assert_allclose(tile(array, row, 4, 28), ends[1], atol=1e-5)
    # The midpoint differs: the straight line passes closer to the origin than the great circle.
    assert not np.allclose(tile(array, 0, 2, 28), tile(array, 1, 2, 28))
    lines = {line.get_label(): line.get_ydata() for line in fig.axes[1].get_lines()}
    mid_linear = ((z_a + z_b) / 2).norm().item()
    assert lines["linear"][2] == pytest.approx(mid_linear, rel=1e-5)
    assert lines["spherical"][2] > mid_linear
    assert lines["sqrt(d)"][0] == pytest.approx(2.0)


def test_latent_traversal_moves_one_dimension_per_row(cvae):
    z = torch.tensor([0.5, -0.5, 0.25, 1.0])
    fig = explore.latent_traversal(cvae, z, dims=[1, 3], values=[-2.0, 0.0, 2.0], label=1)
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 3 * 30 + PAD)
    code = z.clone()
    code[3] = 2.0
    with torch.no_grad():
        want = gray(cvae.decode(code[None], torch.tensor([1])))[0]
    np.testing.assert_allclose(tile(array, 1, 2, 28), want, atol=1e-5)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["z[1]", "z[3]"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "0", "2"]
    with pytest.raises(ValueError, match="dims"):
        explore.latent_traversal(cvae, dims=[4], label=0)
    with pytest.raises(ValueError, match="needs a label"):
        explore.latent_traversal(cvae)


def test_class_swap_keeps_z_per_row_and_the_class_per_column(cvae):
    z = torch.randn(2, 4, generator=torch.Generator().manual_seed(4))
    fig = explore.class_swap(cvae, z, class_names=["a", "b", "c"])
    array = drawn(fig)
    assert array.shape == (2 * 30 + PAD, 3 * 30 + PAD)
    for i in range(2):
        for c in range(3):
            with torch.no_grad():
                want = gray(cvae.decode(z[i:i + 1], torch.tensor([c])))[0]
            np.testing.assert_allclose(tile(array, i, c, 28), want, atol=1e-5, err_msg=f"row {i}, class {c}")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="class-conditional"):
        explore.class_swap(ConvolutionalVAE(z_dim=4, input_size=8, max_channels=4, mapping_layers=1))


def test_truncation_sweep_psi_zero_gives_one_image(stylevae):
    fig = explore.truncation_sweep(stylevae, psis=(1.0, 0.0), n=3, seed=1)
    array = drawn(fig)
    assert array.shape == (2 * 10 + PAD, 3 * 10 + PAD, 3)
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ((stylevae.decode(z, noise_mode="const") + 1) / 2).permute(0, 2, 3, 1).numpy()
    for j in range(3):      # psi = 1: the model's own images of z
        np.testing.assert_allclose(tile(array, 0, j, 8), want[j], atol=1e-5)
    # psi = 0: every code is pulled to w_avg, so every tile is the same image, and not a psi = 1 one.
    np.testing.assert_allclose(tile(array, 1, 0, 8), tile(array, 1, 2, 8), atol=1e-6)
    assert not np.allclose(tile(array, 0, 0, 8), tile(array, 0, 2, 8))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ψ = 1", "ψ = 0"]
    with pytest.raises(ValueError, match="StyleGAN"):
        explore.truncation_sweep(CVAE(z_dim=2))


def test_interpolation_of_a_stylegan_vae(stylevae):
    fig = explore.interpolation_paths(stylevae, steps=3)
    assert drawn(fig).shape == (2 * 10 + PAD, 3 * 10 + PAD, 3)


def test_conditional_accuracy_bars_draw_the_shares():
    result = {"overall": 0.5, "per_class": [1.0, 0.5, 0.0], "n_per_class": 2,
              "confusion": torch.tensor([[2, 0, 0], [1, 1, 0], [0, 2, 0]])}
    fig = explore.conditional_accuracy_bars(result, class_names=["x", "y", "z"])
    heights = [patch.get_height() for patch in fig.axes[0].patches]
    assert heights == [1.0, 0.5, 0.0]
    np.testing.assert_allclose(drawn(fig, 1), [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="class names"):
        explore.conditional_accuracy_bars(result, class_names=["x"])


def test_factor_transfer_curves_one_line_per_factor():
    table = {k: {"from_source1": {"shape": k / 2, "texture": (k / 2) ** 2, "light": 0.5},
                 "as_expected": 1 - abs(k - 1.0)} for k in range(3)}
    fig = explore.factor_transfer_curves(table)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"shape", "texture", "light", "coarse from 1\n& fine from 2"}
    np.testing.assert_allclose(lines["texture"].get_ydata(), [0, 0.25, 1])
    assert lines["shape"].get_linestyle() == "-" and lines["texture"].get_linestyle() == "--"
    with pytest.raises(ValueError, match="empty"):
        explore.factor_transfer_curves({})


# ------------------------------------------------------------------------------------ exercises
def test_exercise_solutions_pass(capsys):
    assert ex.check_slerp(ex.solution_slerp)
    assert ex.check_class_swap(ex.solution_class_swap)
    assert ex.check_frechet_1d(ex.solution_frechet_1d)
    assert capsys.readouterr().out.count("\u2714") == 3


def test_slerp_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="straight line"):
        ex.check_slerp(lambda a, b, t: (1 - t) * a + t * b)
    with pytest.raises(ExerciseError, match="unit vectors"):
        ex.check_slerp(lambda a, b, t: ex.solution_slerp(a / a.norm(), b / b.norm(), t))
    with pytest.raises(ExerciseError, match="shape"):
        ex.check_slerp(lambda a, b, t: torch.stack([a, b]))


def test_class_swap_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="classes come first"):
        ex.check_class_swap(lambda model, z: ex.solution_class_swap(model, z).transpose(0, 1))
    with pytest.raises(ExerciseError, match="logits"):
        ex.check_class_swap(lambda model, z: torch.stack(
            [model.decode_params(z, torch.full((len(z),), c)) for c in range(model.num_classes)], 1))
    with pytest.raises(ExerciseError, match="class 0"):
        ex.check_class_swap(lambda model, z: torch.stack(
            [model.decode(z, torch.zeros(len(z), dtype=torch.long)) for _ in range(model.num_classes)], 1))


def test_frechet_check_names_the_usual_mistakes():
    with pytest.raises(ExerciseError, match="variances"):
        ex.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2 + (s1 ** 2 - s2 ** 2) ** 2)
    with pytest.raises(ExerciseError, match="spread"):
        ex.check_frechet_1d(lambda m1, s1, m2, s2: (m1 - m2) ** 2)
