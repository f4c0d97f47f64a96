import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="module")
def stylevae():
    """A tiny StyleGAN-VAE (z 8, 8 px) whose codes matter: an untrained AdaIN ignores w (zero
    affine), so its weights are drawn; ``w_avg`` is set for truncation."""
    from vae_lib.models.stylegan_vae import ConvolutionalVAE
    from vae_lib.nn.style import AdaIN

    torch.manual_seed(0)
    model = ConvolutionalVAE(z_dim=8, input_size=8, max_channels=8, mapping_layers=1).eval()
    for module in model.modules():
        if isinstance(module, AdaIN):
            torch.nn.init.normal_(module.affine.weight, std=0.5)
    model.mapping.init_w_avg(256, generator=torch.Generator().manual_seed(0))
    return model


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A machine with no network: data are looked for in tmp_path/cache and tmp_path/system only."""
    from vae_lib.data import torchvision_sets

    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAE_SYSTEM_DATA_DIRS", str(tmp_path / "system"))

    def no_network(spec, root, timeout_s=None):
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(torchvision_sets, "torchvision_download", no_network)
    return tmp_path
