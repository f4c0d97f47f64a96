"""'synthetic-digits': an MNIST-like set drawn on the fly, so every notebook runs with no download.

Each sample is a digit glyph of Pillow's built-in font, warped the way handwriting varies:
a random affine map (rotation, shear, slant, aspect), a smooth elastic displacement field, a
stroke width, then MNIST's own normalisation (fit into a 20x20 box, centre of mass at the
centre of a 28x28 field) and a small blur. Images are white digits on black, values in [0, 1]
quantised to multiples of 1/255 like MNIST's bytes.

Sample ``i`` depends only on ``(seed, i)`` (see :mod:`vae_lib.data.counter_rng`): the train split
is indices ``0..59999``, the test split ``60000..69999`` of the same stream.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from vae_lib.data.counter_rng import integers, uniforms
from vae_lib.data.render_threads import one_thread
from vae_lib.runtime import data_dir
from vae_lib.utils import atomic_write

IMAGE_SIZE = 28
BOX_SIZE = 20                      # MNIST fits each digit into a 20x20 box ...
CENTRE = (IMAGE_SIZE - 1) / 2      # ... and puts its centre of mass at the centre of the field.
SPLIT_OFFSETS = {"train": 0, "test": 60_000}
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
CLASS_NAMES = [str(d) for d in range(10)]
# Bump when the rendering changes, so that old caches are not mistaken for new ones.
GENERATOR_VERSION = 1

_CANVAS = 64                       # templates are drawn large, warped, then shrunk
_FONT_SIZE = 38
_STROKE_WIDTHS = (0, 1, 2)         # Pillow's stroke_width, in canvas pixels ...
_STROKE_PROBS = (0.35, 0.45, 0.2)  # ... and how often each is drawn (2 is bold: loops close up)
# A second glyph for digits that people often write differently from the typeface:
# a plain bar for 1, a round O for 0, a straight-stemmed q for 9.
_GLYPHS = {"0": "0O", "1": "1l", "9": "9q"}
_ALTERNATIVE_GLYPH_PROB = 0.35
# Random choices of one sample, one counter stream each (see counter_rng.uniforms).
_STREAMS = ("label", "glyph", "stroke", "rotation", "shear", "aspect", "jitter_x", "jitter_y",
            "elastic_amp", "blur")
_ELASTIC_GRID = 4                  # control points per side of the displacement field


@functools.lru_cache(maxsize=1)
def glyph_templates() -> torch.Tensor:
    """Digits 0-9, two glyphs each, every stroke width: (10, 2, len(_STROKE_WIDTHS), 64, 64) in [0, 1]."""
    try:
        font = ImageFont.load_default(size=_FONT_SIZE)   # scalable font, Pillow >= 10.1 with FreeType
        upscale = 1
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()                  # the old 11-px bitmap font: draw small, enlarge
        upscale = 3
    size = _CANVAS // upscale
    planes = []
    for digit in CLASS_NAMES:
        glyphs = _GLYPHS.get(digit, digit * 2)
        for glyph in glyphs:
            for width in _STROKE_WIDTHS:
                canvas = Image.new("L", (size, size), 0)
                ImageDraw.Draw(canvas).text((size / 2, size / 2), glyph, fill=255, font=font, anchor="mm",
                                            stroke_width=width // upscale, stroke_fill=255)
                if upscale > 1:
                    canvas = canvas.resize((_CANVAS, _CANVAS), Image.Resampling.BICUBIC)
                planes.append(torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8))
    return (torch.stack(planes).float() / 255).reshape(10, 2, len(_STROKE_WIDTHS), _CANVAS, _CANVAS)


def sample_labels(indices: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The digit of each sample: (N,) int64 in 0..9, without rendering."""
    u = uniforms(seed, indices, len(_STREAMS))
    return integers(u[:, _STREAMS.index("label")], 10)


def render_digits(indices, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the given sample indices: images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64.

    Deterministic in ``(seed, index)`` whatever the batch. Vectorised torch ops over the batch;
    call it on chunks of a few thousand to bound memory (about 50 kB per sample while rendering).
    """
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    with one_thread():
        return _render(indices, seed)


def _render(indices: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = indices.numel()
    u = uniforms(seed, indices, len(_STREAMS))
    labels = integers(u[:, _STREAMS.index("label")], 10)          # float64, exactly as sample_labels
    draw = dict(zip(_STREAMS, u.float().T.contiguous()))
    variants = (draw["glyph"] < _ALTERNATIVE_GLYPH_PROB).long()
    strokes = torch.bucketize(draw["stroke"], torch.tensor(_STROKE_PROBS).cumsum(0)[:-1], right=True)
    glyphs = glyph_templates()[labels, variants, strokes].unsqueeze(1)       # (N,1,64,64)

    warped = _warp_like_handwriting(glyphs, draw, indices, seed)
    images = _normalise_like_mnist(warped, draw)
    images = _blur(images, sigma=0.3 + 0.3 * draw["blur"])
    images = images / images.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    images = torch.round(images.clamp(0, 1) * 255) / 255
    return images.reshape(n, 1, IMAGE_SIZE, IMAGE_SIZE), labels



def _warp_like_handwriting(glyphs: torch.Tensor, draw: dict, indices: torch.Tensor, seed: int) -> torch.Tensor:
    """Random affine map plus a smooth elastic field, on the 64x64 canvas."""
    n = glyphs.shape[0]
    angle = math.radians(18) * (2 * draw["rotation"] - 1)
    shear = -0.15 + 0.6 * draw["shear"]            # handwriting leans right more often than left
    aspect = 0.75 + 0.45 * draw["aspect"]          # width / height of the written digit
    cos, sin = angle.cos(), angle.sin()
    # theta maps output to input coordinates: rotate, then shear, then squeeze x.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = (cos + shear * sin) / aspect
    theta[:, 0, 1] = (-sin + shear * cos) / aspect
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, [n, 1, _CANVAS, _CANVAS], align_corners=False)

    # Elastic field: uniform noise on a coarse grid, upsampled smoothly (Simard et al., 2003 in spirit).
    k = _ELASTIC_GRID
    noise = uniforms(seed + 7919, indices, 2 * k * k).float().reshape(n, 2, k, k) * 2 - 1
    amplitude = (0.5 + 2.5 * draw["elastic_amp"]) * (2 / _CANVAS)            # 0.5-3 canvas pixels
    field = F.interpolate(noise, size=(_CANVAS, _CANVAS), mode="bicubic", align_corners=True)
    grid = grid + amplitude.view(n, 1, 1, 1) * field.permute(0, 2, 3, 1)
    return F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _normalise_like_mnist(warped: torch.Tensor, draw: dict, supersample: int = 2) -> torch.Tensor:
    """Scale each digit's bounding box into 20x20 and put its centre of mass at the centre of 28x28."""
    n = warped.shape[0]
    ink = warped[:, 0] > 0.2
    rows, cols = ink.any(dim=2), ink.any(dim=1)                              # (N,64) each
    idx = torch.arange(_CANVAS)
    top = torch.where(rows, idx, _CANVAS).amin(1)
    bottom = torch.where(rows, idx, -1).amax(1)
    left = torch.where(cols, idx, _CANVAS).amin(1)
    right = torch.where(cols, idx, -1).amax(1)
    extent = torch.maximum(bottom - top, right - left).clamp_min(1).float() + 1
    scale = BOX_SIZE / extent                                                # output px per canvas px

    mass = warped[:, 0].sum(dim=(1, 2)).clamp_min(1e-6)
    centre_y = (warped[:, 0].sum(2) * idx).sum(1) / mass
    centre_x = (warped[:, 0].sum(1) * idx).sum(1) / mass
    target_x = CENTRE + (draw["jitter_x"] - 0.5)                             # +-0.5 px like rounding in MNIST
    target_y = CENTRE + (draw["jitter_y"] - 0.5)

    # Output pixel centres (supersampled), mapped back to canvas pixel coordinates.
    size = IMAGE_SIZE * supersample
    out = (torch.arange(size) + 0.5) / supersample - 0.5
    src_x = centre_x[:, None] + (out[None, :] - target_x[:, None]) / scale[:, None]
    src_y = centre_y[:, None] + (out[None, :] - target_y[:, None]) / scale[:, None]
    to_norm = lambda p: (p + 0.5) * (2 / _CANVAS) - 1                        # noqa: E731  align_corners=False
    grid = torch.stack(torch.broadcast_tensors(to_norm(src_x)[:, None, :], to_norm(src_y)[:, :, None]), dim=-1)
    fine = F.grid_sample(warped, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(fine, supersample)


def _blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a different sigma (pixels) per image: one grouped conv per axis."""
    n = images.shape[0]
    radius = 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)                             # (N, 5)
    flat = images.reshape(1, n, IMAGE_SIZE, IMAGE_SIZE)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernel.view(n, 1, 1, -1), groups=n)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernel.view(n, 1, -1, 1), groups=n)
    return flat.reshape(n, 1, IMAGE_SIZE, IMAGE_SIZE)


def cache_path(split: str, seed: int = 0) -> Path:
    """Where the rendered split is kept: ``data_dir()/synthetic-digits/<split>-seed<seed>-v<version>.pt``."""
    return data_dir() / "synthetic-digits" / f"{split}-seed{seed}-v{GENERATOR_VERSION}.pt"


def load_synthetic_digits(split: str, *, seed: int = 0, n: int | None = None,
                          progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """``(images (N,1,28,28) in [0,1], labels (N,), source, reason)`` for the train or test split.

    The whole split is rendered once (about 11 s for 60k on one core) and cached; a smaller
    ``n`` without a cache renders just those samples and caches nothing.
    """
    size = SPLIT_SIZES[split]
    count = size if n is None else min(n, size)
    path = cache_path(split, seed)
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        images, labels = cached["images"][:count].float().div_(255), cached["labels"][:count]
        return images, labels, str(path), "procedural (Pillow's font, warped), rendered earlier and cached"
    indices = torch.arange(SPLIT_OFFSETS[split], SPLIT_OFFSETS[split] + count)
    images, labels = render_in_chunks(indices, seed, progress=progress)
    if count < size:
        return images, labels, f"procedural (seed {seed})", f"rendered the first {count} on the fly (not cached)"
    pixels = torch.round(images * 255).to(torch.uint8)
    atomic_write(path, lambda tmp: torch.save({"images": pixels, "labels": labels}, tmp))
    return images, labels, f"procedural (seed {seed})", f"rendered now and cached to {path}"


def render_in_chunks(indices: torch.Tensor, seed: int = 0, chunk: int = 2048,
                     progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`render_digits` over many indices, a chunk at a time, with a progress bar."""
    images = torch.empty(len(indices), 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.empty(len(indices), dtype=torch.int64)
    starts = range(0, len(indices), chunk)
    for start in tqdm(starts, desc="rendering synthetic digits", unit="chunk",
                      disable=not progress or len(starts) < 3):
        images[start:start + chunk], labels[start:start + chunk] = render_digits(indices[start:start + chunk], seed)
    return images, labels
