"""Interactive explorers for a notebook: move a slider, see the decoded image change.

* :class:`CVAEExplorer`: a class picker, sliders for the first few dimensions of z and a
  "random z" button -> the CVAE's image.
* :class:`StyleVAEExplorer`: two sources (new draws on a button), the crossover layer and the
  truncation psi -> source 1 | mixed image | source 2.

The work is done by plain functions (:func:`cvae_image`, :func:`stylevae_image`, :func:`png_bytes`)
that tests call directly; the classes only wire them to ipywidgets. Images are shown with
``ipywidgets.Image`` (PNG bytes, upscaled with nearest-neighbour so pixels stay sharp).
Display an explorer by leaving it as the last expression of a cell (or ``display(explorer)``).
"""
from __future__ import annotations

import io

import ipywidgets as W
import numpy as np
import torch
from PIL import Image as PILImage

from vae_lib.models.sampling import decode_latents, prior_codes
from vae_lib.utils import rescale
from vae_lib.viz import value_range_of

SLIDER_RANGE = 3.0     # z sliders span [-3, 3]: almost all of N(0, 1)


# ------------------------------------------------------------------------------ the update logic
def to_uint8(image: torch.Tensor, value_range=(0.0, 1.0)) -> np.ndarray:
    """One image (C, H, W) or (1, C, H, W) in ``value_range`` -> uint8 (H, W) (C = 1) or (H, W, 3)."""
    image = torch.as_tensor(image).detach().float().cpu()
    image = image[0] if image.ndim == 4 and image.shape[0] == 1 else image
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"Expected one image (C, H, W) with C = 1 or 3, got shape {tuple(image.shape)}.")
    scaled = rescale(image, value_range, (0.0, 1.0)).clamp(0, 1).mul(255).round().to(torch.uint8)
    return scaled[0].numpy() if scaled.shape[0] == 1 else scaled.permute(1, 2, 0).numpy()


def png_bytes(array: np.ndarray, scale: int = 4) -> bytes:
    """A uint8 image (H, W) or (H, W, 3) as PNG bytes, each pixel drawn as a ``scale`` x ``scale`` block."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"Expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}.")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}.")
    image = PILImage.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), PILImage.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cvae_image(model, z, label: int, *, value_range=None) -> np.ndarray:
    """The CVAE's image ``decode(z, label)`` for one code z (z_dim,) as uint8 (H, W)."""
    image = decode_latents(model, torch.as_tensor(z, dtype=torch.float32).reshape(1, -1), int(label))
    return to_uint8(image, value_range_of(model, value_range))


def stylevae_image(model, z1, z2, crossover: int, truncation_psi: float = 1.0, *,
                   with_sources: bool = True) -> np.ndarray:
    """StyleGAN-VAE images as uint8 (S, W, 3): the mix of z1 (layers [0, crossover)) and z2 (the rest),
    both truncated by psi, with constant noise. ``with_sources``: source 1 | mix | source 2 side by side
    (W = 3 S + 2 white columns), else the mix alone (W = S)."""
    if not 0 <= crossover <= model.num_style_layers:
        raise ValueError(f"crossover must lie in [0, {model.num_style_layers}], got {crossover}.")
    z1, z2 = (torch.as_tensor(z, dtype=torch.float32).reshape(1, -1) for z in (z1, z2))
    with torch.no_grad():
        mixed = to_uint8(model.mix(z1, z2, crossover, truncation_psi=truncation_psi, noise_mode="const").cpu(),
                         model.data_range)
        if not with_sources:
            return mixed
        sources = [to_uint8(decode_latents(model, z, truncation_psi=truncation_psi), model.data_range)
                   for z in (z1, z2)]
    gap = np.full((mixed.shape[0], 2, 3), 255, dtype=np.uint8)
    return np.concatenate([sources[0], gap, mixed, gap, sources[1]], axis=1)


# ---------------------------------------------------------------------------------- the widgets
class _Explorer:
    """Shared wiring: ``ui`` (the widget box), ``image`` (an ipywidgets.Image), display through ``ui``."""

    ui: W.Box
    image: W.Image

    def _repr_mimebundle_(self, **kwargs):
        return self.ui._repr_mimebundle_(**kwargs)

    def _show(self, array: np.ndarray) -> None:
        # Pin the displayed size to the PNG's, or a flex box would stretch (and blur) the image.
        self.image.width, self.image.height = (str(n * self.scale) for n in array.shape[1::-1])
        self.image.value = png_bytes(array, self.scale)


class CVAEExplorer(_Explorer):
    """Pick a class, move the first ``num_sliders`` dimensions of z, draw a new z: see the CVAE's image.

    Attributes: ``class_picker`` (Dropdown), ``sliders`` (FloatSliders for z[0], z[1], ...),
    ``random_button``, ``image`` (ipywidgets.Image, PNG), ``ui`` (the whole box, CSS class
    ``vae-cvae-explorer``), ``z`` (the current code, (z_dim,)). ``update()`` redraws.
    """

    def __init__(self, model, *, class_names=None, num_sliders: int = 4, seed: int = 0, scale: int = 6):
        self.model, self.scale = model, scale
        self.generator = torch.Generator().manual_seed(seed)
        self.z = prior_codes(1, model.z_dim, generator=self.generator)[0]
        names = class_names if class_names is not None else [str(c) for c in range(model.num_classes)]
        if len(names) != model.num_classes:
            raise ValueError(f"Got {len(names)} class names for {model.num_classes} classes.")
        self.class_picker = W.Dropdown(options=[(str(n), c) for c, n in enumerate(names)], value=0,
                                       description="class")
        self.sliders = [W.FloatSlider(value=float(self.z[d]), min=-SLIDER_RANGE, max=SLIDER_RANGE, step=0.1,
                                      description=f"z[{d}]", continuous_update=True,
                                      readout_format=".1f")
                        for d in range(min(num_sliders, model.z_dim))]
        self.random_button = W.Button(description="random z", icon="random")
        self.image = W.Image(format="png")
        self._quiet = False
        for widget in (self.class_picker, *self.sliders):
            widget.observe(self.update, names="value")
        self.random_button.on_click(self.randomize)
        controls = W.VBox([self.class_picker, *self.sliders, self.random_button])
        self.ui = W.HBox([controls, self.image])
        self.ui.add_class("vae-cvae-explorer")
        self.update()

    def update(self, *_) -> None:
        if self._quiet:
            return
        for d, slider in enumerate(self.sliders):
            self.z[d] = slider.value
        self._show(cvae_image(self.model, self.z, self.class_picker.value))

    def randomize(self, *_) -> None:
        """Draw a new z ~ N(0, I); the sliders jump to its first dimensions (clipped to their range)."""
        self.z = prior_codes(1, self.model.z_dim, generator=self.generator)[0]
        self._quiet = True
        try:
            for d, slider in enumerate(self.sliders):
                slider.value = float(self.z[d].clamp(-SLIDER_RANGE, SLIDER_RANGE))
        finally:
            self._quiet = False
        self.update()


class StyleVAEExplorer(_Explorer):
    """Mix two codes of a StyleGAN-VAE: source 1 | mixed image | source 2.

    Attributes: ``crossover`` (IntSlider 0..L: layers below it from source 1), ``truncation``
    (FloatSlider psi in [0, 1]), ``new_source_buttons`` (one per source), ``image``, ``ui`` (CSS class
    ``vae-stylevae-explorer``), ``z1``, ``z2``. ``update()`` redraws.
    """

    def __init__(self, model, *, seed: int = 0, scale: int = 3):
        self.model, self.scale = model, scale
        self.generator = torch.Generator().manual_seed(seed)
        self.z1 = prior_codes(1, model.z_dim, generator=self.generator)[0]
        self.z2 = prior_codes(1, model.z_dim, generator=self.generator)[0]
        layers = model.num_style_layers
        self.crossover = W.IntSlider(value=layers // 2, min=0, max=layers, description="crossover",
                                     continuous_update=True)
        self.truncation = W.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05, description="truncation ψ",
                                        continuous_update=True, style={"description_width": "initial"})
        self.new_source_buttons = [W.Button(description=f"new source {i}") for i in (1, 2)]
        self.image = W.Image(format="png")
        self.caption = W.HTML()
        for widget in (self.crossover, self.truncation):
            widget.observe(self.update, names="value")
        for i, button in enumerate(self.new_source_buttons):
            button.on_click(lambda _, i=i: self.new_source(i + 1))
        controls = W.VBox([self.crossover, self.truncation, W.HBox(self.new_source_buttons)])
        self.ui = W.VBox([controls, self.image, self.caption])
        self.ui.add_class("vae-stylevae-explorer")
        self.update()

    def update(self, *_) -> None:
        k, layers = self.crossover.value, self.model.num_style_layers
        self._show(stylevae_image(self.model, self.z1, self.z2, k, self.truncation.value))
        self.caption.value = (f"<small>source 1 | layers 0..{k - 1} from source 1, {k}..{layers - 1} from "
                              f"source 2 | source 2</small>" if 0 < k < layers else
                              f"<small>source 1 | mix = source {1 if k == layers else 2} | source 2</small>")

    def new_source(self, which: int) -> None:
        """Draw a new code for source 1 or 2."""
        z = prior_codes(1, self.model.z_dim, generator=self.generator)[0]
        if which == 1:
            self.z1 = z
        else:
            self.z2 = z
        self.update()


__all__ = ["CVAEExplorer", "StyleVAEExplorer", "cvae_image", "png_bytes", "stylevae_image", "to_uint8"]
