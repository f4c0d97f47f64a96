"""The committed reference StyleGAN-VAE run (notebook 06): the documented command builds its config, and the
folder holds a finished, small, loadable run of that config that reconstructs better than the mean image."""
import shlex
from pathlib import Path

import pytest
import torch

from vae_lib.cli import build_parser, train_config_overrides
from vae_lib.configs import (REFERENCE_COMMAND, REFERENCE_EPOCHS, ExperimentConfig, apply_overrides, get_config,
                             stylevae_reference_config)
from vae_lib.evaluate import psnr
from vae_lib.experiments import CONFIG_NAME, REFERENCE_RUN_DIR, build_data, load_trained
from vae_lib.train import CHECKPOINT_NAME

REPO = Path(__file__).resolve().parent.parent


def test_the_documented_command_builds_the_reference_config_into_the_reference_folder():
    train, export = (shlex.split(part) for part in REFERENCE_COMMAND.split(" && "))
    assert train[:4] == ["python", "-m", "vae_lib", "train"] and export[:4] == ["python", "-m", "vae_lib", "export"]
    args = build_parser().parse_args(train[3:])
    config = apply_overrides(get_config(args.config), train_config_overrides(args))
    assert config.run_name() == stylevae_reference_config().run_name()
    exported = build_parser().parse_args(export[3:])
    assert exported.out == args.out and (REPO / exported.to).resolve() == REFERENCE_RUN_DIR
    reference = stylevae_reference_config()
    assert reference.name == "stylevae-reference" and reference.train.epochs == REFERENCE_EPOCHS
    assert reference.dataset_kwargs["fixed_factors"] == {"rotation": 4}
    quick = get_config("stylevae-quick")
    assert reference.model_kwargs == quick.model_kwargs and reference.loss_kwargs == quick.loss_kwargs


def test_the_committed_run_is_that_config_finished_small_and_better_than_the_mean_image():
    saved = ExperimentConfig.read(REFERENCE_RUN_DIR / CONFIG_NAME)
    assert saved.run_name() == stylevae_reference_config().run_name()
    assert (REFERENCE_RUN_DIR / CHECKPOINT_NAME).stat().st_size <= 10 * 2 ** 20
    assert (REFERENCE_RUN_DIR / CHECKPOINT_NAME).stat().st_size <= 5 * 2 ** 20     # exported: no optimiser state
    config, model, history = load_trained(REFERENCE_RUN_DIR, "cpu")
    assert len(history["epochs"]) == REFERENCE_EPOCHS
    test = build_data(apply_overrides(config, {"n_test": 64}), "test", verbose=False)
    with torch.no_grad():
        recon = model.reconstruct(test.images)
    mean_image = test.images.mean(0, keepdim=True).expand_as(test.images)
    assert psnr(recon, test.images, (-1, 1)).mean() > psnr(mean_image, test.images, (-1, 1)).mean() + 8


def test_load_trained_trains_nothing_and_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_trained(tmp_path)
