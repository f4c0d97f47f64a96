"""'shapes': RGB scenes of one object with known generative factors, drawn on the fly.

Coarse structure (what a StyleGAN-like decoder's early layers control) and fine style (its late
layers) vary independently, each factor drawn uniformly from a few discrete bins:

==============  ====  ==============================================================
factor          bins  value of bin ``k``
==============  ====  ==============================================================
shape           5     square, circle, triangle, cross, heart (also the label)
object_hue      8     hue ``k / 8`` of the object (saturated, bright)
background_hue  8     hue ``k / 8`` of the background (muted, dark)
scale           6     object radius ``0.35 + 0.05 k`` of the half-width
position_x      8     centre ``-0.35 + 0.7 k / 7`` (image spans -1..1, left to right)
position_y      8     centre ``-0.35 + 0.7 k / 7`` (top to bottom)
rotation        8     ``-45 + 11.25 k`` degrees (a circle looks the same at every angle)
texture         4     stripes across the object: none, 4, 7, 10 cycles per image width
light           4     light from the left, top, right, bottom (a brightness ramp)
==============  ====  ==============================================================

``stripes="image"`` draws the stripes in the image's frame (vertical bands fixed on the image, seen through the
object) instead of the object's (bands through its centre, turned with it: the default): an option for asking
which style layers draw a texture that does not move with the object (``benchmarks/README.md``).

``fixed_factors`` holds some factors at one bin for every sample, e.g. ``UPRIGHT = {"rotation": 4}``
(0 degrees): an easier data set, for experiments. A small style decoder trained for minutes learns to
draw 5 upright shapes but not 5 shapes at 8 angles (``benchmarks/stylevae_learning.py``, mode
``decoder``: shape read-back 0.88 upright, 0.39 at 8 angles, after the same 1,500 steps); the presets
keep the 8 angles, because upright shapes alone did not make the whole VAE learn the shape
(``benchmarks/README.md``). The other factors of sample ``i`` are unchanged by it.

Shapes are signed distance functions (after Inigo Quilez's 2-D SDFs) evaluated on a pixel grid
for a whole batch at once; the distance gives anti-aliased edges for free. Sample ``i`` depends
only on ``(seed, i)``; the test split uses indices from ``TEST_OFFSET`` on.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from vae_lib.data.counter_rng import integers, uniforms
from vae_lib.data.render_threads import one_thread

SHAPE_NAMES = ["square", "circle", "triangle", "cross", "heart"]
FACTOR_BINS = {
    "shape": len(SHAPE_NAMES),
    "object_hue": 8,
    "background_hue": 8,
    "scale": 6,
    "position_x": 8,
    "position_y": 8,
    "rotation": 8,
    "texture": 4,
    "light": 4,
}
SIZES = (32, 64, 128)
DEFAULT_SIZE = 64
DEFAULT_COUNTS = {"train": 20_000, "test": 2_000}
TEST_OFFSET = 10_000_000
TEXTURE_CYCLES = (0.0, 4.0, 7.0, 10.0)   # stripes across the object per image width, by texture level
TEXTURE_NAMES = {level: f"{cycles:g} cycles" if cycles else "no stripes" for level, cycles in enumerate(TEXTURE_CYCLES)}
STRIPE_FRAMES = ("object", "image")
_CHUNK_PIXELS = 512 * 64 * 64      # pixels per vectorised chunk: keeps each temporary tensor cache-sized


# Upright shapes: rotation bin 4 is -45 + 11.25 * 4 = 0 degrees.
UPRIGHT = {"rotation": 4}


def check_fixed_factors(fixed_factors) -> dict[str, int]:
    """``{factor name: bin}`` checked against ``FACTOR_BINS`` (None or {} -> {}); shape (the label) cannot be fixed."""
    if fixed_factors is None:
        return {}
    if not isinstance(fixed_factors, dict):
        raise ValueError(f"shapes: fixed_factors must be a dict {{factor: bin}}, got {fixed_factors!r}")
    out = {}
    for name, value in fixed_factors.items():
        if name not in FACTOR_BINS or name == "shape":
            raise ValueError(f"shapes: fixed_factors can fix {', '.join(n for n in FACTOR_BINS if n != 'shape')}; "
                             f"got {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < FACTOR_BINS[name]:
            raise ValueError(f"shapes: fixed_factors[{name!r}] must be a bin in 0..{FACTOR_BINS[name] - 1}, "
                             f"got {value!r}")
        out[name] = value
    return out


def describe_fixed(fixed_factors, stripes: str = "object") -> str:
    """'' or e.g. ', rotation fixed at bin 4' (and ', stripes in the image frame') for a dataset's source line."""
    fixed = check_fixed_factors(fixed_factors)
    return ("".join(f", {name} fixed at bin {value}" for name, value in fixed.items())
            + (", stripes in the image frame" if check_stripes(stripes) == "image" else ""))


def check_stripes(stripes: str) -> str:
    if stripes not in STRIPE_FRAMES:
        raise ValueError(f"shapes: stripes must be one of {STRIPE_FRAMES} (the frame they are drawn in), got {stripes!r}")
    return stripes


def check_size(size: int) -> int:
    if size not in SIZES:
        raise ValueError(f"shapes: size must be one of {SIZES} pixels, got {size!r}")
    return size


def sample_factors(indices, seed: int = 0, fixed_factors: dict[str, int] | None = None) -> dict[str, torch.Tensor]:
    """The factor bins of each sample: name -> (N,) int64, without rendering; ``fixed_factors`` (name -> bin)
    are held at their bin."""
    fixed = check_fixed_factors(fixed_factors)
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    u = uniforms(seed, indices, len(FACTOR_BINS))
    factors = {name: integers(u[:, j], bins) for j, (name, bins) in enumerate(FACTOR_BINS.items())}
    for name, value in fixed.items():
        factors[name] = torch.full_like(factors[name], value)
    return factors


def render_shapes(indices, seed: int = 0, size: int = DEFAULT_SIZE,
                  fixed_factors: dict[str, int] | None = None, stripes: str = "object",
                  ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Render the given sample indices.

    Returns images (N, 3, size, size) float32 in [-1, 1], labels (N,) int64 (= factors["shape"]),
    and factors: name -> (N,) int64 bins (see the module docstring).
    """
    factors = sample_factors(indices, seed, fixed_factors)
    return render_from_factors(factors, size, stripes), factors["shape"].clone(), factors


def render_from_factors(factors: dict[str, torch.Tensor], size: int = DEFAULT_SIZE, stripes: str = "object") -> torch.Tensor:
    """Draw the scenes that the given factor bins describe: (N, 3, size, size) in [-1, 1].

    ``stripes``: the frame of the stripes, ``"object"`` (default) or ``"image"`` (see the module docstring).

    ``factors`` needs every name of :data:`FACTOR_BINS`, each an (N,) integer tensor of bins;
    change one factor and keep the rest to see what that factor does.
    """
    check_size(size)
    check_stripes(stripes)
    missing = set(FACTOR_BINS) - set(factors)
    if missing:
        raise ValueError(f"render_from_factors: missing factors {sorted(missing)}")
    factors = {name: torch.as_tensor(factors[name], dtype=torch.int64).reshape(-1) for name in FACTOR_BINS}
    n = factors["shape"].numel()
    for name, bins in FACTOR_BINS.items():
        values = factors[name]
        if values.numel() != n:
            raise ValueError(f"render_from_factors: factor {name!r} has {values.numel()} values, shape has {n}")
        if n and (values.min() < 0 or values.max() >= bins):
            raise ValueError(f"render_from_factors: factor {name!r} must be in 0..{bins - 1}")
    images = torch.empty(n, 3, size, size)
    step = max(1, _CHUNK_PIXELS // size**2)
    with one_thread():
        for start in range(0, n, step):
            chunk = {name: f[start:start + step] for name, f in factors.items()}
            images[start:start + step] = _render(chunk, size, stripes)
    return images


def _render(f: dict[str, torch.Tensor], size: int, stripes: str = "object") -> torch.Tensor:
    n = f["shape"].numel()
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * (2 / size) - 1
    py, px = torch.meshgrid(coords, coords, indexing="ij")                   # (S,S), y down
    column = lambda t: t.float().view(n, 1, 1)                               # noqa: E731

    radius = column(0.35 + 0.05 * f["scale"])
    centre_x = column(-0.35 + 0.7 * f["position_x"] / 7)
    centre_y = column(-0.35 + 0.7 * f["position_y"] / 7)
    angle = column(torch.deg2rad(-45 + 11.25 * f["rotation"].float()))
    # Object frame: unit-sized shape, y up (so the SDF formulas read as published).
    dx, dy = (px - centre_x) / radius, (centre_y - py) / radius
    qx = dx * angle.cos() + dy * angle.sin()
    qy = -dx * angle.sin() + dy * angle.cos()

    distance = torch.empty(n, size, size)
    for kind, sdf in enumerate((_sdf_square, _sdf_circle, _sdf_triangle, _sdf_cross, _sdf_heart)):
        mask = f["shape"] == kind
        if mask.any():
            distance[mask] = sdf(qx[mask], qy[mask])
    pixel = 2 / size
    coverage = (0.5 - distance * radius / pixel).clamp(0, 1).unsqueeze(1)  # anti-aliased edge

    cycles = torch.tensor(TEXTURE_CYCLES)[f["texture"]].view(n, 1, 1)
    # Object frame: a bright band through the centre, turned with the object; image frame: vertical bands fixed on
    # the image (the same cycles per image width).
    phase = math.pi * cycles * qx * radius if stripes == "object" else math.pi * cycles * px
    banding = 1 - 0.45 * (cycles > 0) * (0.5 + 0.5 * torch.cos(phase))
    light_angle = column(f["light"] * (math.pi / 2))                          # 0: from the left
    light = 1 + 0.3 * (-px * light_angle.cos() - py * light_angle.sin())

    obj = _hsv_to_rgb(f["object_hue"] / 8, saturation=0.85, value=0.95).view(n, 3, 1, 1)
    back = _hsv_to_rgb(f["background_hue"] / 8, saturation=0.6, value=0.45).view(n, 3, 1, 1)
    rgb = (back + coverage * (obj * banding.unsqueeze(1) - back)) * light.unsqueeze(1)
    return rgb.clamp(0, 1) * 2 - 1


def _hsv_to_rgb(hue: torch.Tensor, saturation: float, value: float) -> torch.Tensor:
    """(N,) hues in [0, 1) -> (N, 3) RGB in [0, 1]."""
    offsets = torch.tensor([0.0, 4.0, 2.0])
    ramp = ((hue.float()[:, None] * 6 + offsets) % 6 - 3).abs().sub(1).clamp(0, 1)
    return value * (1 - saturation + saturation * ramp)


def _length(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x * x + y * y)


def _sdf_square(x, y, half=0.75):
    qx, qy = x.abs() - half, y.abs() - half
    return _length(qx.clamp_min(0), qy.clamp_min(0)) + torch.maximum(qx, qy).clamp_max(0)


def _sdf_circle(x, y, r=0.85):
    return _length(x, y) - r


def _sdf_triangle(x, y, r=0.95):
    """Equilateral triangle with circumradius ``r``, pointing up."""
    k = math.sqrt(3.0)
    x = x.abs() - r * k / 2
    y = y + r / 2
    fold = x + k * y > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-r * k, 0)
    return -_length(x, y) * torch.sign(y)


def _sdf_cross(x, y, arm=0.9, half_width=0.3):
    x, y = x.abs(), y.abs()
    x, y = torch.maximum(x, y), torch.minimum(x, y)
    qx, qy = x - arm, y - half_width
    k = torch.maximum(qx, qy)
    wx = torch.where(k > 0, qx, half_width - x)
    wy = torch.where(k > 0, qy, -k)
    return torch.sign(k) * _length(wx.clamp_min(0), wy.clamp_min(0))


def _sdf_heart(x, y, size=1.3):
    """A heart about ``size`` tall, centred on the origin (tip at the bottom)."""
    x, y = x.abs() / size, y / size + 0.5
    upper = _length(x - 0.25, y - 0.75) - math.sqrt(2) / 4
    tip = torch.clamp_min(x + y, 0) * 0.5
    lower = torch.sqrt(torch.minimum(x * x + (y - 1) ** 2, (x - tip) ** 2 + (y - tip) ** 2)) * torch.sign(x - y)
    return torch.where(x + y > 1, upper, lower) * size


def load_shapes(split: str, *, size: int = DEFAULT_SIZE, n: int | None = None, seed: int = 0,
                progress: bool = True, fixed_factors: dict[str, int] | None = None, stripes: str = "object",
                ) -> tuple[torch.Tensor, torch.Tensor, dict, str, str]:
    """``(images (N,3,size,size) in [-1,1], labels (N,), factors, source, reason)`` for a split.

    ``n`` defaults to ``DEFAULT_COUNTS[split]``. Rendering is fast enough (seconds) that nothing is cached.
    ``fixed_factors``: factors held at one bin (name -> bin), e.g. ``UPRIGHT``. ``stripes``: their frame,
    ``"object"`` or ``"image"``.
    """
    check_size(size)
    check_stripes(stripes)
    count = DEFAULT_COUNTS[split] if n is None else n
    offset = TEST_OFFSET if split == "test" else 0
    factors = sample_factors(torch.arange(offset, offset + count), seed, fixed_factors)
    images = torch.empty(count, 3, size, size)
    step = 8 * max(1, _CHUNK_PIXELS // size**2)
    starts = range(0, count, step)
    for start in tqdm(starts, desc=f"rendering shapes {size}px", unit="chunk",
                      disable=not progress or len(starts) < 3):
        chunk = {name: f[start:start + step] for name, f in factors.items()}
        images[start:start + step] = render_from_factors(chunk, size, stripes)
    return (images, factors["shape"].clone(), factors,
            f"procedural (seed {seed}, {size} px{describe_fixed(fixed_factors, stripes)})",
            "drawn on the fly from signed distance functions")
