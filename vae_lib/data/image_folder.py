"""'image-folder': any folder of photos (e.g. CelebA's ``img_align_celeba``) as an RGB tensor."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from vae_lib.data.errors import DatasetNotFoundError

# Decoded with Pillow (torchvision.io's decoders are deprecated since torchvision 0.29).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_SIZE = 64


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

    ``n`` keeps the first n files by name. Grayscale and RGBA files are converted to RGB.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"image-folder: size must be a positive number of pixels, got {size!r}")
    files = list_images(folder)[:n]
    if not files:
        others = sum(1 for p in folder.iterdir())
        raise DatasetNotFoundError(
            f"image-folder: no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)} directly in it; "
            f"it holds {others} other entries). Point root= at the folder that holds the image files.")
    images = torch.empty(len(files), 3, size, size)
    for i, path in enumerate(tqdm(files, desc=f"loading {folder.name}", unit="img", disable=not progress)):
        try:
            with Image.open(path) as image:
                pixels = TF.pil_to_tensor(image.convert("RGB"))                     # (3, H, W) uint8
        except OSError as error:
            raise ValueError(f"image-folder: cannot decode {path}: {error}") from error
        pixels = TF.center_crop(TF.resize(pixels, size, antialias=True), [size, size])
        images[i] = pixels.float() / 127.5 - 1
    return images
