"""vae_lib.factor_decoder: the StyleGAN-VAE's decoder trained alone on true factors (notebook 08, section 9)."""
import pytest
import torch

from vae_lib.configs import apply_overrides, get_config, stylevae_reference_config
from vae_lib.data.shapes import FACTOR_BINS
from vae_lib.evaluate import psnr
from vae_lib.experiments import build_data, build_model
from vae_lib.factor_decoder import (CODE_SCALE, FACTOR_DECODER_DIR, FACTOR_DECODER_STEPS, factor_codes,
                                    fit_decoder_to_factors, load_factor_decoder, train_factor_decoder)


def test_factor_codes_are_scaled_one_hot_bins_in_factor_order_zero_padded():
    factors = {name: torch.tensor([0, bins - 1]) for name, bins in FACTOR_BINS.items()}
    codes = factor_codes(factors, 64)
    width = sum(FACTOR_BINS.values())
    assert width == 59 and codes.shape == (2, 64)
    assert torch.equal(codes[:, width:], torch.zeros(2, 64 - width))
    assert (codes[:, :width] != 0).sum(1).tolist() == [len(FACTOR_BINS)] * 2
    starts = torch.tensor([0, *FACTOR_BINS.values()]).cumsum(0)[:-1]
    assert torch.equal(codes[0, starts], torch.full((len(FACTOR_BINS),), CODE_SCALE))          # bin 0 of each
    ends = starts + torch.tensor(list(FACTOR_BINS.values())) - 1
    assert torch.equal(codes[1, ends], torch.full((len(FACTOR_BINS),), CODE_SCALE))            # the last bin
    with pytest.raises(ValueError, match="z_dim >= 59"):
        factor_codes(factors, 32)


def test_fitting_trains_the_decoder_only_and_lowers_the_error():
    config = apply_overrides(get_config("stylevae-smoke"), {"n_train": 64, "train.batch_size": 16, "model_kwargs.z_dim": 64})
    torch.manual_seed(0)
    model = build_model(config)
    data = build_data(config, "train", verbose=False)
    encoder = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    codes = factor_codes(data.factors, model.z_dim)

    def error():
        with torch.no_grad():
            return (model.decode(codes, noise_mode="const") - data.images).pow(2).mean().item()

    before = error()
    seconds = fit_decoder_to_factors(model, data.images, data.factors, config.train, 30, progress=False)
    assert seconds > 0 and not model.training
    assert error() < 0.7 * before
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder.items())


def test_train_and_load_round_trip(tmp_path):
    config = apply_overrides(get_config("stylevae-smoke"), {"n_train": 32, "train.batch_size": 8, "model_kwargs.z_dim": 64})
    out = train_factor_decoder(tmp_path / "fd", 3, config=config, progress=False)
    loaded_config, model, info = load_factor_decoder(out)
    assert loaded_config.to_dict() == config.to_dict() and info["steps"] == 3 and not model.training
    with pytest.raises(FileNotFoundError, match="python -m vae_lib.factor_decoder"):
        load_factor_decoder(tmp_path / "nothing")


def test_the_committed_factor_decoder_draws_the_test_shapes_from_their_factors():
    config, model, info = load_factor_decoder(FACTOR_DECODER_DIR)
    assert config.to_dict() == stylevae_reference_config().to_dict()
    assert info["steps"] == FACTOR_DECODER_STEPS
    assert sum(f.stat().st_size for f in FACTOR_DECODER_DIR.iterdir()) <= 2 * 2 ** 20
    test = build_data(apply_overrides(config, {"n_test": 64}), "test", verbose=False)
    with torch.no_grad():
        drawn = model.decode(factor_codes(test.factors, model.z_dim), noise_mode="const")
    mean_image = test.images.mean(0, keepdim=True).expand_as(test.images)
    assert psnr(drawn, test.images, (-1, 1)).mean() > psnr(mean_image, test.images, (-1, 1)).mean() + 15
