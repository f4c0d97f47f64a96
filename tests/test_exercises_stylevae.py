"""The checks of notebooks 06 and 07: the reference solutions pass, the usual mistakes fail with a hint."""
from __future__ import annotations

import pytest
import torch

from vae_lib.exercises import ExerciseError
from vae_lib.exercises import stylevae as ex


@pytest.mark.parametrize("check, solution", [
    (ex.check_style_vae_loss, ex.solution_style_vae_loss),
    (ex.check_psnr, ex.solution_psnr),
    (ex.check_gram_matrix, ex.solution_gram_matrix),
    (ex.check_perceptual_distance, ex.solution_perceptual_distance),
    (ex.check_aggregate_moments, ex.solution_aggregate_moments),
])
def test_reference_solutions_pass(check, solution, capsys):
    assert check(solution) is True
    assert "\u2714" in capsys.readouterr().out


def test_solutions_against_values_worked_out_by_hand():
    # one image of 2 values, 1 latent dimension: squared error 0.5^2 + 0 = 0.25;
    # KL of N(1, e^0) is 0.5 (1 + 1 - 1 - 0) = 0.5; beta 0.5 -> 0.25 + 0.25
    x, x_hat = torch.zeros(1, 2, 1, 1), torch.tensor([0.5, 0.0]).view(1, 2, 1, 1)
    loss = ex.solution_style_vae_loss(x_hat, x, torch.ones(1, 1), torch.zeros(1, 1), beta=0.5)
    assert loss.item() == pytest.approx(0.5)
    # an error of 0.1 on every value of a [0, 1] image: 10 log10(1 / 0.01) = 20 dB
    assert ex.solution_psnr(x, x + 0.1, (0.0, 1.0)).item() == pytest.approx(20.0, abs=1e-4)
    # features (1 image, 2 channels, 2 positions): [[1, 2], [3, 4]] -> [[1+4, 3+8], [3+8, 9+16]] / 2
    gram = ex.solution_gram_matrix(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2))
    assert gram.tolist() == [[[2.5, 5.5], [5.5, 12.5]]]


def kl(mu, logvar):
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)


def sq(x_hat, x):
    return (x_hat - x).pow(2).flatten(1)


@pytest.mark.parametrize("wrong, hint", [
    (lambda xh, x, mu, lv, beta: (sq(xh, x).mean(1) + beta * kl(mu, lv).sum(1)).mean(), "averaged the squared error"),
    (lambda xh, x, mu, lv, beta: (sq(xh, x).sum(1) + beta * kl(mu, lv).mean(1)).mean(), "averaged the KL"),
    (lambda xh, x, mu, lv, beta: (sq(xh, x).sum(1) + kl(mu, lv).sum(1)).mean(), "beta is missing"),
    (lambda xh, x, mu, lv, beta: (sq(xh, x).sum(1) - beta * kl(mu, lv).sum(1)).mean(), "sign"),
    (lambda xh, x, mu, lv, beta: (sq(xh, x).sum(1) + beta * kl(mu, 2 * lv).sum(1)).mean(), "exp\\(logvar\\)"),
    (lambda xh, x, mu, lv, beta: (sq(xh, x).sum(1) + beta * kl(mu, lv).sum(1)).sum(), "summed over the batch"),
    (lambda xh, x, mu, lv, beta: sq(xh, x).sum(1) + beta * kl(mu, lv).sum(1), "one number"),
    (lambda xh, x, mu, lv, beta: sq(xh, x).sum() * 0, "per image: sum over pixels"),
    (lambda xh, x, mu, lv, beta: 1.0, "must return a torch.Tensor"),
])
def test_style_vae_loss_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_style_vae_loss(wrong)


def mse(x, y):
    return (x - y).pow(2).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, y, r: 10 * torch.log10(1 / mse(x, y)), "width of the value range"),
    (lambda x, y, r: 20 * torch.log10((r[1] - r[0]) ** 2 / mse(x, y)), "ratio of powers"),
    (lambda x, y, r: 10 * torch.log((r[1] - r[0]) ** 2 / mse(x, y)), "log10"),
    (lambda x, y, r: 10 * torch.log10((r[1] - r[0]) ** 2 / (x - y).pow(2).mean()), "one value per image"),
    (lambda x, y, r: 10 * torch.log10((r[1] - r[0]) ** 2 / (x - y).pow(2).mean()).expand(len(x)), "same value"),
    (lambda x, y, r: mse(x, y), "PSNR = 10 log10"),
])
def test_psnr_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_psnr(wrong)


def flat(f):
    return f.reshape(f.shape[0], f.shape[1], -1)


@pytest.mark.parametrize("wrong, hint", [
    (lambda f: flat(f) @ flat(f).transpose(1, 2), "divide by H W, the number of positions"),
    (lambda f: flat(f) @ flat(f).transpose(1, 2) / flat(f)[0].numel(), "not by C H W"),
    (lambda f: flat(f).transpose(1, 2) @ flat(f) / flat(f).shape[2], "F\\^T F"),
    (lambda f: flat(f)[0] @ flat(f)[0].T / flat(f).shape[2], "keep the batch axis"),
    (lambda f: (flat(f) @ flat(f).transpose(1, 2) / flat(f).shape[2]).flip(0), "do not mix the images"),
])
def test_gram_matrix_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_gram_matrix(wrong)


def layer_errors(vgg, x_hat, x, reduce):
    return torch.stack([reduce((a - t).pow(2).flatten(1)) for a, t in zip(vgg.activations(x_hat), vgg.activations(x))])


@pytest.mark.parametrize("wrong, hint", [
    (lambda vgg, xh, x: layer_errors(vgg, xh, x, lambda e: e.mean(1)).sum(0), "multiply by D"),
    (lambda vgg, xh, x: layer_errors(vgg, xh, x, lambda e: e.sum(1)).sum(0), "summed each layer"),
    (lambda vgg, xh, x: x[0].numel() * layer_errors(vgg, xh, x, lambda e: e.mean(1)).mean(0), "do not average"),
    (lambda vgg, xh, x: x[0].numel() * (xh - x).pow(2).flatten(1).mean(1), "not the pixels"),
    (lambda vgg, xh, x: x[0].numel() * layer_errors(vgg, xh, x, lambda e: e.mean(1)).sum(), "one distance per image"),
])
def test_perceptual_distance_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_perceptual_distance(wrong)


def test_the_perceptual_check_leaves_the_global_rng_alone():
    ex._small_vgg.cache_clear()
    torch.manual_seed(123)
    ex.check_perceptual_distance(ex.solution_perceptual_distance)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))


# ---- pick the layers (notebook 07): the distance ranks a 1-px shift closer than a blur ----------------
def test_pick_layers_reference_passes_and_says_what_it_measured(capsys):
    assert ex.check_pick_layers(ex.solution_pick_layers) is True
    out = capsys.readouterr().out
    assert "relu4_4 (vgg19-random)" in out and "rank the shift closer" in out


@pytest.mark.parametrize("answer, hint", [
    (lambda available: ("relu1_2",), "rank the blur closer, as pixel MSE does"),
    (lambda available: ("relu1_1", "relu4_4"), "rank the blur closer"),
    (lambda available: "relu4_4", "return a tuple of names, e.g. \\('relu4_4',\\)"),
    (lambda available: ("relu6_1",), "out of relu1_1, relu1_2"),
    (lambda available: (), "non-empty tuple"),
])
def test_pick_layers_shallow_or_malformed_answers_fail_with_a_hint(answer, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_pick_layers(answer)


def test_pick_layers_offers_the_layers_of_the_features_given(capsys):
    from vae_lib.models.classifier import Judge
    from vae_lib.perceptual import feature_distance

    torch.manual_seed(0)
    judge = Judge(3, 32, {"shape": 3}, (-1.0, 1.0), width=4, hidden=8, label_head="shape").eval()
    seen = []
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    try:
        ex.check_pick_layers(lambda available: seen.append(available) or available[:1],
                             features=feature_distance("judge", judge=judge), images=images)
    except ExerciseError as error:          # an untrained judge: either ranking may come out
        assert "block1 (judge)" in str(error)
    assert seen == [("block1", "block2", "block3")]


def test_pick_layers_stub_is_not_done_yet(capsys):
    def stub(available):
        raise NotImplementedError("pick_layers: your code here")
    assert ex.check_pick_layers(stub) is False
    assert "not done yet: pick_layers" in capsys.readouterr().out


def test_aggregate_moments_by_hand():
    # Two codes in one dimension, means +-1 and variances e^0 = 1: the mixture has mean 0 and variance 1 + 1.
    loc, cov = ex.solution_aggregate_moments(torch.tensor([[1.0], [-1.0]]), torch.zeros(2, 1))
    assert loc.tolist() == [0.0] and cov.tolist() == [[2.0]]


def spread(mu):
    return (mu - mu.mean(0)).T @ (mu - mu.mean(0))


@pytest.mark.parametrize("wrong, hint", [
    (lambda mu, lv: (mu.mean(0), spread(mu) / len(mu)), "own spread is missing"),
    (lambda mu, lv: (mu.mean(0), torch.cov(mu.T) + torch.diag(lv.exp().mean(0))), "divides by N, not N - 1"),
    (lambda mu, lv: (mu.mean(0), spread(mu) / len(mu) + torch.diag(lv.mean(0))), "exp\\(logvar\\)"),
    (lambda mu, lv: (mu.mean(0), torch.diag(mu.var(0, unbiased=False) + lv.exp().mean(0))), "covariances between"),
    (lambda mu, lv: (mu.mean(1), spread(mu) / len(mu)), "shapes"),
    (lambda mu, lv: (mu.mean(0) + 1, spread(mu) / len(mu)), "loc differs"),
    (lambda mu, lv: (mu.mean(0), 2 * spread(mu)), "cov = \\(mu - loc\\)"),
    (lambda mu, lv: mu.mean(0), "two tensors"),
])
def test_aggregate_moments_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        ex.check_aggregate_moments(wrong)
