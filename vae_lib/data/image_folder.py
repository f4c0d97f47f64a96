"""'image-folder': any folder of photos (e.g. CelebA's ``img_align_celeba``) as an RGB tensor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from vae_lib.data.errors import DatasetNotFoundError
from vae_lib.data.memory import check_fits_in_memory

# Decoded with Pillow (torchvision.io's decoders are deprecated since torchvision 0.29).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_SIZE = 64
# Pillow's modes of 16-bit grayscale (a 16-bit PNG opens as "I;16", some decoders give "I"):
# Image.convert("RGB") would clip their 0..65535 to 0..255, i.e. nearly everything to white.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (not in sub-folders), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder_for_split(root, split: str) -> Path:
    """``<root>/<split>/`` if that folder exists; else ``root`` itself for the train split.

    A plain folder has no test split: asking for one is an error rather than a silent copy of train.
    """
    if root is None:
        raise ValueError("image-folder needs root=<folder of images>, e.g. root='data/celeba/img_align_celeba'")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"image-folder: {root} is not a folder.")
    if (root / split).is_dir():
        return root / split
    if split == "train":
        return root
    raise ValueError(f"image-folder: {root} has no {split}/ sub-folder; a plain folder is the train split only "
                     f"(put held-out images in {root / split}/ or load another folder as root=...)")


def load_image_folder(folder: Path, *, size: int = DEFAULT_SIZE, n: int | None = None,
                      progress: bool = True) -> torch.Tensor:
    """Decode, resize (shorter side to ``size``) and centre-crop every image: (N, 3, size, size) in [-1, 1].

    ``n`` keeps the first n files by name. Grayscale, palette and RGBA files are converted to
    RGB; 16-bit grayscale files are scaled by 65535 (not clipped at 255).
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"image-folder: size must be a positive number of pixels, got {size!r}")
    files = list_images(folder)[:n]
    if not files:
        others = sum(1 for p in folder.iterdir())
        raise DatasetNotFoundError(
            f"image-folder: no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)} directly in it; "
            f"it holds {others} other entries). Point root= at the folder that holds the image files.")
    check_fits_in_memory(f"image-folder {folder}", len(files), (3, size, size))
    images = torch.empty(len(files), 3, size, size)
    for i, path in enumerate(tqdm(files, desc=f"loading {folder.name}", unit="img", disable=not progress)):
        try:
            with Image.open(path) as image:
                if image.mode in SIXTEEN_BIT_MODES:
                    # (1, H, W) in [0, 1], resized as floats: no 8-bit step on the way.
                    gray = np.asarray(image, dtype=np.float32) / 65535.0
                    pixels = torch.from_numpy(gray.clip(0.0, 1.0)).unsqueeze(0)
                else:
                    pixels = TF.pil_to_tensor(image.convert("RGB"))                 # (3, H, W) uint8
        except OSError as error:
            raise ValueError(f"image-folder: cannot decode {path}: {error}") from error
        pixels = TF.center_crop(TF.resize(pixels, size, antialias=True), [size, size])
        if pixels.dtype == torch.uint8:
            images[i] = pixels.float() / 127.5 - 1
        else:
            images[i] = (pixels.clamp(0, 1) * 2 - 1).expand(3, -1, -1)
    return images
