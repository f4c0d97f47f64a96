"""``load_dataset``: the one way every notebook, test and the CLI gets its data.

``resolve_dataset`` says, without loading it, which data a name stands for ("auto-digits" is one
of three) and gives a fingerprint of the files: what ``train_or_load`` keys a run with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vae_lib.data import image_folder, shapes, synthetic_digits, torchvision_sets
from vae_lib.data.errors import DatasetNotFoundError
from vae_lib.data.image_data import ImageData
from vae_lib.data.memory import check_fits_in_memory

DATASET_NAMES = ("mnist", "fashion-mnist", "synthetic-digits", "shapes", "image-folder", "auto-digits")
SPLITS = ("train", "test")
# Keyword options each dataset understands, beyond name, split, root, n, download and verbose.
_OPTIONS = {
    "mnist": set(),
    "fashion-mnist": set(),
    "synthetic-digits": {"seed"},
    "shapes": {"seed", "size", "fixed_factors", "stripes"},
    "image-folder": {"size"},
    "auto-digits": {"seed"},
}


def load_dataset(name: str, split: str = "train", root=None, *, n: int | None = None, download: bool = True,
                 verbose: bool = True, **kw) -> ImageData:
    """Load a dataset into memory and say which data it is and why.

    Args:
        name: one of :data:`DATASET_NAMES`:
            ``"mnist"``, ``"fashion-mnist"``: torchvision's sets, (N,1,28,28) in [0,1]; searched in
            ``root``, ``data_dir()``, the system dataset folders, then downloaded
            (see :mod:`vae_lib.data.torchvision_sets`); :class:`DatasetNotFoundError` if nowhere.
            ``"synthetic-digits"``: procedural MNIST look-alike, 60k/10k, (N,1,28,28) in [0,1]; ``seed=0``.
            ``"shapes"``: procedural RGB scenes with factors, (N,3,S,S) in [-1,1];
            ``size`` in (32, 64, 128), default 64; 20k/2k samples; ``seed=0``; ``fixed_factors``
            (e.g. ``{"rotation": 4}``: upright shapes) holds factors at one bin; ``stripes="image"``
            draws the stripes in the image's frame instead of the object's.
            ``"image-folder"``: the images in ``root`` (or ``root/<split>/``), centre-cropped and
            resized to ``size`` (default 64), (N,3,S,S) in [-1,1]; labels are zeros.
            ``"auto-digits"``: mnist if it is here (or downloads quickly), else fashion-mnist,
            else synthetic-digits.
        split: "train" or "test".
        root: a folder to look in first (mnist, fashion-mnist) or to read (image-folder).
        n: keep only the first n samples (the smoke preset uses this).
        download: let torchvision try to download mnist / fashion-mnist when they are not found.
        verbose: print one line: name, split, count, source and reason (also in ``.summary()``).

    Returns:
        :class:`ImageData`.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r} for {key}: choose one of {', '.join(SPLITS)}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"n must be a positive int (the number of samples to keep) or None, got {n!r}")
    root = _check_root(root)
    unknown = set(kw) - _OPTIONS[key]
    if unknown:
        accepted = ", ".join(sorted(_OPTIONS[key])) or "none"
        raise ValueError(f"{key} does not take {', '.join(sorted(unknown))} (extra options it takes: {accepted})")

    data = _LOADERS[key](split, root, n, download, verbose, **kw)
    if verbose:
        print(data.summary())
    return data


@dataclass(frozen=True)
class ResolvedDataset:
    """What a dataset name stands for here and now.

    ``name``: the data set itself ("auto-digits" becomes "mnist", "fashion-mnist" or
    "synthetic-digits"); ``fingerprint``: a digest of its files' sizes and first bytes (None for
    procedural sets and for names that are not resolved); ``source`` and ``reason`` as ``ImageData``'s.
    """

    name: str
    fingerprint: str | None
    source: str
    reason: str

    def key(self) -> dict:
        """What a run's name hashes: ``{"name", "fingerprint"}``."""
        return {"name": self.name, "fingerprint": self.fingerprint}


def resolve_dataset(name: str, split: str = "train", root=None, *, download: bool = True) -> ResolvedDataset:
    """Which data ``load_dataset(name, split, root)`` would return, without reading it.

    For "auto-digits" (and "mnist" / "fashion-mnist") the files are looked for exactly as
    ``load_dataset`` does (unpacked or downloaded if need be, so that the load that follows finds
    them) and fingerprinted; other names resolve to themselves with no I/O.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}: choose one of {', '.join(DATASET_NAMES)}")
    root = _check_root(root)
    if key in torchvision_sets.IDX_DATASETS:
        home, source, reason = torchvision_sets.find_idx_dataset(key, split, root, download=download)
        return ResolvedDataset(key, torchvision_sets.fingerprint(key, home), source, reason)
    if key != "auto-digits":
        return ResolvedDataset(key, None, str(root) if root is not None else "", "")
    missing = []
    for candidate in ("mnist", "fashion-mnist"):
        try:
            home, source, reason = torchvision_sets.find_idx_dataset(candidate, split, root, download=download)
        except DatasetNotFoundError:
            missing.append(candidate)
            continue
        return ResolvedDataset(candidate, torchvision_sets.fingerprint(candidate, home), source,
                               f"auto-digits chose {candidate}{_because(missing)}: {reason}")
    return ResolvedDataset("synthetic-digits", None, "procedural",
                           f"auto-digits chose synthetic-digits{_because(missing)} (load_dataset('mnist') "
                           "tells where it looked)")


def _check_root(root):
    """None, or a path that is not empty: ``root=''`` would silently mean the current folder."""
    if root is None:
        return None
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise ValueError(f"root must be a folder (a non-empty path) or None, got {root!r}")
    return root


def _idx(name: str, split: str, root, n, download, verbose) -> ImageData:
    images, labels, source, reason = torchvision_sets.load_idx_dataset(name, split, root, download=download, n=n)
    return ImageData(images=images, labels=labels, name=name, source=source, reason=reason, value_range=(0.0, 1.0),
                     class_names=list(torchvision_sets.IDX_DATASETS[name].class_names), split=split)


def _synthetic_digits(split, root, n, download, verbose, *, seed: int = 0) -> ImageData:
    images, labels, source, reason = synthetic_digits.load_synthetic_digits(split, seed=seed, n=n, progress=verbose)
    return ImageData(images=images, labels=labels, name="synthetic-digits", source=source, reason=reason,
                     value_range=(0.0, 1.0), class_names=list(synthetic_digits.CLASS_NAMES), split=split)


def _shapes(split, root, n, download, verbose, *, seed: int = 0, size: int = shapes.DEFAULT_SIZE,
            fixed_factors: dict[str, int] | None = None, stripes: str = "object") -> ImageData:
    shapes.check_size(size)
    count = shapes.DEFAULT_COUNTS[split] if n is None else n
    if split == "train" and count > shapes.TEST_OFFSET:
        raise ValueError(f"shapes: n={count:,} train images would run into the test split's indices "
                         f"(from {shapes.TEST_OFFSET:,}); ask for at most {shapes.TEST_OFFSET:,}")
    check_fits_in_memory("shapes", count, (3, size, size))
    images, labels, factors, source, reason = shapes.load_shapes(split, size=size, n=n, seed=seed, progress=verbose,
                                                                fixed_factors=fixed_factors, stripes=stripes)
    return ImageData(images=images, labels=labels, factors=factors, name="shapes", source=source, reason=reason,
                     value_range=(-1.0, 1.0), class_names=list(shapes.SHAPE_NAMES), split=split)


def _image_folder(split, root, n, download, verbose, *, size: int = image_folder.DEFAULT_SIZE) -> ImageData:
    folder = image_folder.image_folder_for_split(root, split)
    images = image_folder.load_image_folder(folder, size=size, n=n, progress=verbose)
    return ImageData(images=images, labels=images.new_zeros(len(images), dtype=torch.int64), name="image-folder",
                     source=str(folder), reason=f"every image in the folder, centre-cropped to {size} px",
                     value_range=(-1.0, 1.0), class_names=["image"], split=split)


def _auto_digits(split, root, n, download, verbose, *, seed: int = 0) -> ImageData:
    resolved = resolve_dataset("auto-digits", split, root, download=download)
    if resolved.name == "synthetic-digits":
        data = _synthetic_digits(split, root, n, download, verbose, seed=seed)
        data.reason = f"{resolved.reason}: {data.reason}"
        return data
    # The files are in place now: this finds them where resolve_dataset did.
    data = _idx(resolved.name, split, root, n, download, verbose)
    data.reason = resolved.reason
    return data


def _because(missing: list[str]) -> str:
    return f" because {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not here" if missing else ""


_LOADERS = {
    "mnist": lambda *args: _idx("mnist", *args),
    "fashion-mnist": lambda *args: _idx("fashion-mnist", *args),
    "synthetic-digits": _synthetic_digits,
    "shapes": _shapes,
    "image-folder": _image_folder,
    "auto-digits": _auto_digits,
}
