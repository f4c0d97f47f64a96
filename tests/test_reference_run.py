"""The committed reference StyleGAN-VAE run (notebook 06): the documented command builds its config, and the
folder holds a finished, small, loadable run of that config that reconstructs better than the mean image."""
import shlex
from pathlib import Path

import pytest
import torch

from vae_lib.cli import build_parser, train_config_overrides
from vae_lib.configs import (PER_LAYER_REFERENCE_COMMAND, PER_LAYER_SEED1_REFERENCE_COMMAND, REFERENCE_COMMAND,
                             REFERENCE_EPOCHS, ExperimentConfig, apply_overrides, get_config, stylevae_reference_config)
from vae_lib.evaluate import psnr
from vae_lib.experiments import (CONFIG_NAME, PER_LAYER_REFERENCE_RUN_DIR, PER_LAYER_SEED1_RUN_DIR, REFERENCE_RUN_DIR,
                                 build_data, load_trained)
from vae_lib.train import CHECKPOINT_NAME

REPO = Path(__file__).resolve().parent.parent
# (command, folder, per_layer_codes, seed) of each committed reference run
REFERENCES = [(REFERENCE_COMMAND, REFERENCE_RUN_DIR, False, 0),
              (PER_LAYER_REFERENCE_COMMAND, PER_LAYER_REFERENCE_RUN_DIR, True, 0),
              (PER_LAYER_SEED1_REFERENCE_COMMAND, PER_LAYER_SEED1_RUN_DIR, True, 1)]


@pytest.mark.parametrize("command, folder, per_layer_codes, seed", REFERENCES)
def test_the_documented_command_builds_the_reference_config_into_the_reference_folder(command, folder, per_layer_codes,
                                                                                      seed):
    train, export = (shlex.split(part) for part in command.split(" && "))
    assert train[:4] == ["python", "-m", "vae_lib", "train"] and export[:4] == ["python", "-m", "vae_lib", "export"]
    args = build_parser().parse_args(train[3:])
    config = apply_overrides(get_config(args.config), train_config_overrides(args))
    reference = stylevae_reference_config(per_layer_codes, seed=seed)
    assert config.run_name() == reference.run_name() and reference.train.seed == seed
    exported = build_parser().parse_args(export[3:])
    assert exported.out == args.out and (REPO / exported.to).resolve() == folder
    assert folder.name == reference.name + (f"-seed{seed}" if seed else "")
    assert reference.train.epochs == REFERENCE_EPOCHS
    assert reference.dataset_kwargs["fixed_factors"] == {"rotation": 4}
    quick = get_config("stylevae-quick")
    # The quick preset's model as it was when the references were trained: its later options pinned back.
    before = {"per_layer_codes": per_layer_codes, "encoder_channels": 32, "encoder_fc_width": 32}
    assert reference.model_kwargs == {**quick.model_kwargs, **before} and reference.loss_kwargs == quick.loss_kwargs
    assert reference.train.lr_schedule == "cosine"


@pytest.mark.parametrize("command, folder, per_layer_codes, seed", REFERENCES)
def test_the_committed_run_is_that_config_finished_small_and_better_than_the_mean_image(command, folder,
                                                                                         per_layer_codes, seed):
    saved = ExperimentConfig.read(folder / CONFIG_NAME)
    assert saved.run_name() == stylevae_reference_config(per_layer_codes, seed=seed).run_name()
    assert (folder / CHECKPOINT_NAME).stat().st_size <= 5 * 2 ** 20     # exported: no optimiser state
    config, model, history = load_trained(folder, "cpu")
    assert model.per_layer_codes is per_layer_codes
    assert len(history["epochs"]) == REFERENCE_EPOCHS
    test = build_data(apply_overrides(config, {"n_test": 64}), "test", verbose=False)
    with torch.no_grad():
        recon = model.reconstruct(test.images)
    mean_image = test.images.mean(0, keepdim=True).expand_as(test.images)
    assert psnr(recon, test.images, (-1, 1)).mean() > psnr(mean_image, test.images, (-1, 1)).mean() + 8


def test_load_trained_trains_nothing_and_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_trained(tmp_path)
