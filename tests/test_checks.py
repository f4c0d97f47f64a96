"""vae_lib.checks: one clear line naming the value, the expectation and what came; and the CVAE's use of them."""
import math

import pytest
import torch

from vae_lib.checks import (as_input_dtype, check_choice, check_device, check_float, check_int, check_latent,
                            check_truncation_psi)
from vae_lib.models.cvae import CVAE


@pytest.mark.parametrize("call, words", [
    (lambda: check_int("n", 2.5, minimum=1), "n must be an integer >= 1, got 2.5"),
    (lambda: check_int("n", "3", minimum=1), "n must be an integer >= 1, got '3'"),
    (lambda: check_int("n", True), "n must be an integer, got True"),
    (lambda: check_int("n", 0, minimum=1), "got 0"),
    (lambda: check_int("crossover", 2.0, minimum=0, maximum=6), "crossover must be an integer in [0, 6], got 2.0"),
    (lambda: check_int("crossover", 7, minimum=0, maximum=6), "crossover must be an integer in [0, 6], got 7"),
    (lambda: check_int("n", None), "n must be an integer, got None"),
    (lambda: check_float("lr", "fast", minimum=0, exclusive=True), "lr must be a number > 0, got 'fast'"),
    (lambda: check_float("lr", float("inf")), "lr must be a number, got inf"),
    (lambda: check_float("lr", float("nan"), minimum=0), "lr must be a number >= 0, got nan"),
    (lambda: check_float("p", 1.5, minimum=0, maximum=1), "p must be a number in [0, 1], got 1.5"),
    (lambda: check_choice("mode", "fast", ("a", "b")), "mode must be one of 'a', 'b', got 'fast'"),
    (lambda: check_choice("flag", 1, (True, False)), "flag must be one of True, False, got 1"),
    (lambda: check_device("device", "gpu"), "device must be one of auto, cpu, cuda, cuda:N, mps, xpu, got 'gpu'"),
    (lambda: check_device("device", "cuda:x"), "got 'cuda:x'"),
    (lambda: check_truncation_psi(float("nan")), "truncation_psi must be a finite number in [-2, 2]"),
    (lambda: check_truncation_psi(float("inf")), "got inf"),
    (lambda: check_truncation_psi("0.7"), "got '0.7'"),
    (lambda: check_truncation_psi(3.0), "got 3.0"),
    (lambda: check_truncation_psi(None), "got None"),
    (lambda: check_latent(torch.tensor([[float("nan"), 0.0]]), 2), "z holds 1 NaN/inf value(s) of 2"),
    (lambda: check_latent(torch.tensor([[float("inf"), 0.0]]), 2), "NaN/inf"),
    (lambda: check_latent(torch.zeros(3, 4), 2), "z must have shape (B, 2) with B >= 1, got (3, 4)"),
    (lambda: check_latent(torch.zeros(0, 2), 2), "got (0, 2)"),
    (lambda: check_latent([[0.0, 1.0]], 2), "z must be a tensor of shape (B, 2), got list"),
    (lambda: check_latent(torch.zeros(1, 2, dtype=torch.long), 2), "z must be a floating-point tensor"),
    (lambda: as_input_dtype(torch.zeros(2, dtype=torch.uint8)), "x must be a floating-point tensor"),
])
def test_bad_values_get_one_line_with_the_name_and_the_value(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value) and "\n" not in str(info.value)


def test_good_values_pass_through():
    assert check_int("n", 3, minimum=1) == 3 and check_int("n", None, optional=True) is None
    assert check_float("lr", 1) == 1 and check_float("lr", 2e-3) == 2e-3
    assert check_truncation_psi(0.7) == 0.7 and check_truncation_psi(torch.tensor(0.5)) == 0.5
    assert check_truncation_psi(-1) == -1.0 and isinstance(check_truncation_psi(1), float)
    assert check_device("d", "cuda:1") == "cuda:1"
    z = torch.randn(2, 3, dtype=torch.float64)
    weight = torch.zeros(1, dtype=torch.bfloat16)
    assert check_latent(z, 3).dtype == torch.float32              # float64 converted
    assert check_latent(z, 3, like=weight).dtype == torch.bfloat16
    assert as_input_dtype(z, like=torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    half = torch.zeros(2, dtype=torch.float16)
    assert as_input_dtype(half) is half                           # fp16 / bf16 left for autocast


@pytest.mark.parametrize("kwargs, words", [
    ({"z_dim": 16.0}, "z_dim must be an integer >= 1, got 16.0"),
    ({"z_dim": "16"}, "z_dim must be an integer >= 1, got '16'"),
    ({"num_classes": 10.5}, "num_classes must be an integer >= 1, got 10.5"),
    ({"embed_dim": None}, "embed_dim must be an integer >= 1, got None"),
])
def test_cvae_arguments_of_the_wrong_type_are_named(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        CVAE(**kwargs)


def test_cvae_decode_refuses_a_nan_z_and_takes_float64():
    model = CVAE(z_dim=4).eval()
    y = torch.arange(2)
    z = torch.randn(2, 4)
    z[1, 2] = math.nan
    with pytest.raises(ValueError, match="z holds 1 NaN/inf value"):
        model.decode(z, y)
    with torch.no_grad():
        images = model.decode(torch.zeros(2, 4, dtype=torch.float64), y)
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


def test_cvae_converts_float64_images():
    model = CVAE(z_dim=4).eval()
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        x_hat, mu, logvar = model(x, torch.arange(2))
        mu2, _ = model.encode(x, torch.arange(2))
    assert x_hat.dtype == mu.dtype == torch.float32 and torch.equal(mu, mu2)
    with torch.no_grad():
        assert torch.equal(model.encode(x.float(), torch.arange(2))[0], mu)
