"""The Trainer's speed options, one small function each: memory format, autocast, threads.

What each one bought is measured side by side in ``benchmarks/speed.py`` (results and the
machine in ``benchmarks/README.md``); ``TrainConfig`` holds the settings and their defaults.

* channels_last (NHWC): oneDNN's and cuDNN's fastest convolutions read channels innermost.
  Converting the model's 4-d weights once makes every convolution output channels_last, so
  only the input batch needs converting. The arithmetic is the same up to float round-off.
* autocast: matrix products and convolutions in bf16/fp16, reductions in fp32 (torch's op lists).
* threads: one intra-op thread per physical core is torch's default and the right one for a
  dedicated machine; fewer leave room for other processes (notebooks next to a training run).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_conv2d(model: nn.Module) -> bool:
    """True when the model has a 2-d convolution (what channels_last speeds up)."""
    return any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def _faster_in_channels_last_on_cpu(model: nn.Module) -> bool:
    """The model's own ``channels_last_on_cpu`` flag (default False): set by a model class where
    benchmarks/speed.py measured channels_last faster on the CPU (today the CVAE)."""
    return bool(getattr(model, "channels_last_on_cpu", False))


def resolve_channels_last(setting: bool | str, model: nn.Module, device: torch.device,
                          autocast_mode: str | None = None) -> bool:
    """``TrainConfig.channels_last`` -> bool.

    "auto" is on for conv models on CUDA (cuDNN's NHWC kernels). On the CPU it is on only where it
    was measured faster (benchmarks/README.md, quiet 2-core AVX512 CPU): the card-1 CVAE in fp32,
    training 1.17x on top of the tuned allocator; not with bf16 autocast (0.82x), and not for the
    StyleGAN-VAE (0.91x training, 0.64x sampling). Off on MPS.
    """
    if setting == "auto":
        if not has_conv2d(model):
            return False
        if device.type == "cuda":
            return True
        return device.type == "cpu" and autocast_mode is None and _faster_in_channels_last_on_cpu(model)
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"channels_last must be True, False or 'auto', got {setting!r}")


def to_channels_last(batch):
    """Every 4-d floating tensor of ``batch`` (a tensor, tuple, list or dict) in channels_last format."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_channels_last(b) for b in batch)
    if isinstance(batch, dict):
        return {k: to_channels_last(v) for k, v in batch.items()}
    return batch


def resolve_autocast(setting: str | None, device: torch.device) -> str | None:
    """``TrainConfig.autocast`` -> None, "bf16" or "fp16". "auto" is bf16 where the hardware has it
    (a CPU with AVX512-BF16 or AMX, a CUDA GPU that supports bf16), else None."""
    if setting != "auto":
        return setting
    if device.type == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return "bf16" if native else None
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else None
    return None


def autocast(device: torch.device, mode: str | None):
    """A context for mixed precision: None -> no-op, "bf16" / "fp16" -> ``torch.autocast`` on ``device``."""
    if mode is None:
        return contextlib.nullcontext()
    if mode not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {mode!r}")
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[mode])


def grad_scaler(device: torch.device, mode: str | None) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (whose small gradients would underflow), else None."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None


def set_num_threads(num_threads: int | None) -> int:
    """Set torch's intra-op threads for the whole process (None: leave them); return the count in use."""
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()
