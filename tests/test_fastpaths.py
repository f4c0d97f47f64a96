"""The Trainer's speed options: same results in channels_last, working mixed precision, threads."""
from pathlib import Path

import pytest
import torch
from torch import nn

from vae_lib.configs import BetaConfig, TrainConfig
from vae_lib.fastpaths import (autocast, has_conv2d, resolve_autocast, resolve_channels_last, set_num_threads,
                               to_channels_last)
from vae_lib.losses import CVAELoss
from vae_lib.models.cvae import CVAE
from vae_lib.train import Trainer


def batches(n=2, batch_size=4):
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(batch_size, 1, 28, 28, generator=g), torch.randint(0, 10, (batch_size,), generator=g))
            for _ in range(n)]


def train(run_dir=None, **options):
    torch.manual_seed(0)
    config = TrainConfig(epochs=1, device="cpu", beta=BetaConfig("constant", 1.0), **options)
    trainer = Trainer(CVAE(), CVAELoss(), config, run_dir=run_dir, progress=False)
    trainer.fit(batches())
    return trainer


def test_channels_last_gives_the_nchw_losses_and_parameters():
    nchw, nhwc = train(channels_last=False), train(channels_last=True)
    assert not nchw.channels_last and nhwc.channels_last
    # Kernels with one input channel or 1x1 are contiguous in both formats.
    convs = [p for p in nhwc.model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in convs)
    for a, b in zip(nchw.history["steps"], nhwc.history["steps"]):
        for term in ("loss", "nll", "kl", "grad_norm"):
            assert a[term] == pytest.approx(b[term], rel=1e-4)
    # Gradients of the first step (same weights): equal up to float round-off. (Later parameters
    # differ by up to ~lr where Adam normalises near-zero gradients, so those are not compared.)
    one_nchw, one_nhwc = train(channels_last=False, max_steps=1), train(channels_last=True, max_steps=1)
    for p, q in zip(one_nchw.model.parameters(), one_nhwc.model.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5 * p.grad.abs().max().item())


def test_a_channels_last_checkpoint_resumes_in_nchw(tmp_path):
    nhwc = train(tmp_path, channels_last=True)
    config = TrainConfig(epochs=1, device="cpu", beta=BetaConfig("constant", 1.0), channels_last=False)
    nchw = Trainer(CVAE(), CVAELoss(), config, run_dir=tmp_path, progress=False)
    nchw.load_checkpoint()
    for p, q in zip(nhwc.model.parameters(), nchw.model.parameters()):
        assert torch.equal(p, q)
    assert all(p.is_contiguous() for p in nchw.model.parameters())


def test_auto_channels_last_is_on_where_it_was_measured_faster():
    from vae_lib.models.stylegan_vae import ConvolutionalVAE
    cvae, mlp = CVAE(), nn.Sequential(nn.Linear(4, 4))
    style = ConvolutionalVAE(z_dim=16, input_size=16, max_channels=16)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert has_conv2d(cvae) and has_conv2d(style) and not has_conv2d(mlp)
    # CUDA: every conv model; never a model without convolutions.
    assert resolve_channels_last("auto", cvae, cuda) and resolve_channels_last("auto", style, cuda)
    assert resolve_channels_last("auto", cvae, cuda, "bf16")
    assert not resolve_channels_last("auto", mlp, cuda)
    # CPU: the CVAE in fp32 only; not with bf16, not the StyleGAN-VAE (slower there).
    assert resolve_channels_last("auto", cvae, cpu)
    assert not resolve_channels_last("auto", cvae, cpu, "bf16")
    assert not resolve_channels_last("auto", style, cpu)
    assert not resolve_channels_last("auto", cvae, torch.device("mps"))
    # Explicit settings win.
    assert resolve_channels_last(True, mlp, cpu) and not resolve_channels_last(False, cvae, cuda)
    assert TrainConfig().channels_last == "auto"


def test_auto_autocast_is_bf16_on_cpus_with_native_bf16():
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo to read the CPU's features from")
    native = "avx512_bf16" in flags or "amx_tile" in flags
    assert resolve_autocast("auto", torch.device("cpu")) == ("bf16" if native else None)
    assert resolve_autocast("auto", torch.device("mps")) is None
    assert resolve_autocast("fp16", torch.device("cpu")) == "fp16" and resolve_autocast(None, torch.device("cpu")) is None


def test_to_channels_last_converts_only_4d_float_tensors():
    x, y, v = torch.rand(2, 3, 4, 5), torch.arange(2), torch.rand(2, 3)
    out = to_channels_last({"pair": (x, y), "v": v})
    assert out["pair"][0].is_contiguous(memory_format=torch.channels_last) and torch.equal(out["pair"][0], x)
    assert out["pair"][1] is y and out["v"] is v


def test_bf16_autocast_trains_close_to_fp32():
    fp32, bf16 = train(channels_last=False), train(channels_last=False, autocast="bf16")
    first32, first16 = fp32.history["steps"][0], bf16.history["steps"][0]
    # Same weights and noise at step 0: only the rounding differs (bf16 keeps 8 bits of mantissa).
    assert first16["loss"] == pytest.approx(first32["loss"], rel=2e-2)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # master weights stay fp32
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_fp16_uses_a_gradient_scaler_that_the_checkpoint_keeps(tmp_path):
    trainer = train(tmp_path, channels_last=False, autocast="fp16")
    assert trainer._scaler is not None and trainer.step == 2
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["scaler"]["scale"] == trainer._scaler.get_scale()
    assert "scaler" not in train(channels_last=False).state_dict()


def test_num_threads_sets_torch_threads_for_the_process():
    before = torch.get_num_threads()
    try:
        Trainer(nn.Linear(2, 2), lambda *a, **k: {}, TrainConfig(device="cpu", num_threads=1), progress=False)
        assert torch.get_num_threads() == 1
        assert set_num_threads(None) == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("options, message", [({"channels_last": "yes"}, "channels_last"),
                                              ({"autocast": "fp8"}, "autocast"),
                                              ({"num_threads": 0}, "num_threads")])
def test_bad_speed_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_the_stylegan_vae_trains_and_samples_under_bf16_autocast():
    # The mapping network's w_avg EMA mixed a bf16 batch mean with its fp32 buffer in lerp.
    from vae_lib.models.stylegan_vae import ConvolutionalVAE
    from vae_lib.losses import StyleVAELoss
    torch.manual_seed(0)
    model = ConvolutionalVAE(z_dim=16, input_size=16, max_channels=16)
    config = TrainConfig(epochs=1, device="cpu", autocast="bf16", beta=BetaConfig("constant", 1.0))
    trainer = Trainer(model, StyleVAELoss(perceptual_weight=0.0), config, progress=False)
    w_avg_before = model.mapping.w_avg.clone()
    metrics = trainer.train_step(torch.rand(4, 3, 16, 16) * 2 - 1)
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    assert model.mapping.w_avg.dtype == torch.float32 and not torch.equal(model.mapping.w_avg, w_avg_before)
    with autocast(torch.device("cpu"), "bf16"):
        images = model.sample(3, truncation_psi=0.5)
    assert images.shape == (3, 3, 16, 16) and torch.isfinite(images.float()).all()
