"""'mnist' and 'fashion-mnist' through torchvision's datasets, found offline wherever they are.

Search order (the first hit wins):

1. ``root=...`` if given: torchvision's layout ``<root>/<Class>/raw/`` or the four IDX files
   (``.gz`` or not) directly in ``<root>`` or ``<root>/<name>/``;
2. :func:`vae_lib.runtime.data_dir` (``$VAE_DATA_DIR``, default ``<repo>/data``): the same two layouts;
3. the system dataset folders, ``<dir>/<name>/`` for each of :func:`system_data_dirs`
   (Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist/*.gz``);
4. torchvision's download into ``root`` (or ``data_dir()``), when ``download=True``.

torchvision reads only its own layout of gunzipped files, so IDX files found elsewhere are
unpacked into the torchvision root they belong to: next to themselves for 1 and 2, into
``data_dir()`` for the read-only system folders. Offline, the download fails within a few
seconds and leaves no folders behind; then :class:`DatasetNotFoundError` lists every place tried.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
from torchvision.datasets import MNIST, FashionMNIST

from vae_lib.data.errors import DatasetNotFoundError
from vae_lib.runtime import data_dir
from vae_lib.utils import atomic_write

# Folders searched after root= and data_dir(); $VAE_SYSTEM_DATA_DIRS (os.pathsep-separated) overrides.
SYSTEM_DATA_DIRS = ("/usr/share/datasets",)
# Bound on each network wait of a download attempt (connect, each read), in seconds.
DOWNLOAD_TIMEOUT_S = 2.0
_SOURCE_NOTE = "unpacked_from.txt"


@dataclass(frozen=True)
class IdxDataset:
    name: str
    torchvision_class: type[MNIST]
    class_names: list[str]
    debian_package: str | None

    @property
    def archives(self) -> list[str]:
        """The four IDX file names as published (``.gz``)."""
        return [filename for filename, _md5 in self.torchvision_class.resources]

    @property
    def raw_names(self) -> list[str]:
        """The same files gunzipped, as torchvision reads them from ``<root>/<Class>/raw/``."""
        return [name.removesuffix(".gz") for name in self.archives]

    def raw_folder(self, root: Path) -> Path:
        return Path(root) / self.torchvision_class.__name__ / "raw"


IDX_DATASETS = {
    "mnist": IdxDataset("mnist", MNIST, [str(d) for d in range(10)], None),
    "fashion-mnist": IdxDataset("fashion-mnist", FashionMNIST, list(FashionMNIST.classes), "dataset-fashion-mnist"),
}


def system_data_dirs() -> list[Path]:
    """``$VAE_SYSTEM_DATA_DIRS`` split on ``os.pathsep`` if set, else :data:`SYSTEM_DATA_DIRS`."""
    env = os.environ.get("VAE_SYSTEM_DATA_DIRS")
    folders = env.split(os.pathsep) if env is not None else SYSTEM_DATA_DIRS
    return [Path(f).expanduser() for f in folders if f]


def load_idx_dataset(name: str, split: str, root=None, *, download: bool = True,
                     n: int | None = None) -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """Find, read and return ``(images (N,1,28,28) float32 in [0,1], labels (N,) int64, source, reason)``.

    Raises :class:`DatasetNotFoundError` (listing every place tried) when the files are nowhere.
    """
    spec = IDX_DATASETS[name]
    tried: list[str] = []
    homes = []
    if root is not None:
        root = Path(root).expanduser()
        homes.append((root, f"root={root}", [root, root / name]))
    homes.append((data_dir(), "data_dir() ($VAE_DATA_DIR, default <repo>/data)", [data_dir() / name]))
    missed_root = f"not in root={root}; " if root is not None else ""

    for home, label, flat_folders in homes:
        prefix = "" if home == root else missed_root
        if _complete(spec.raw_folder(home), spec.raw_names):
            return (*_read(spec, home, split, n), str(spec.raw_folder(home)),
                    f"{prefix}found in {label}{_read_source_note(home, spec)}")
        tried.append(f"{spec.raw_folder(home)}/  [{label}, torchvision layout]")
        for folder in flat_folders:
            files = _idx_files(folder, spec)
            if files:
                _unpack(files, home, spec)
                return (*_read(spec, home, split, n), str(folder),
                        f"{prefix}IDX files in {folder}, unpacked to {spec.raw_folder(home)}")
            tried.append(f"{folder}/  [{label}, IDX files]")

    for folder in (d / name for d in system_data_dirs()):
        files = _idx_files(folder, spec)
        if files:
            _unpack(files, data_dir(), spec)
            return (*_read(spec, data_dir(), split, n), str(folder),
                    f"{missed_root}not in data_dir(); found the system dataset folder {folder}, "
                    f"unpacked once to {spec.raw_folder(data_dir())}")
        tried.append(f"{folder}/  [system dataset folder]")

    target = root if root is not None else data_dir()
    if download:
        try:
            torchvision_download(spec, target)
            return (*_read(spec, target, split, n), str(spec.raw_folder(target)),
                    f"not found locally; downloaded by torchvision into {target}")
        except Exception as error:  # noqa: BLE001  any failure becomes part of the not-found message
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            tried.append(f"torchvision download into {target}: {type(error).__name__}: {first_line}")
    else:
        tried.append("torchvision download: not attempted (download=False)")
    raise DatasetNotFoundError(_not_found_message(spec, split, tried))


def torchvision_download(spec: IdxDataset, root: Path, timeout_s: float | None = None) -> None:
    """torchvision's download into ``root``, bounded in time and undone if it fails.

    A probe first connects to each mirror in a daemon thread (so that even a hanging DNS lookup
    cannot hold us longer than ``timeout_s``); the download itself runs with that socket timeout.
    Raises ``ConnectionError`` when no mirror answers. Tests patch this function or the timeout.
    """
    timeout_s = DOWNLOAD_TIMEOUT_S if timeout_s is None else timeout_s
    mirrors = spec.torchvision_class.mirrors
    if not _any_reachable(mirrors, timeout_s):
        raise ConnectionError(f"no mirror reachable within {timeout_s:g} s (offline?): {', '.join(mirrors)}")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        with _removing_what_fails(spec.raw_folder(root).parent):
            spec.torchvision_class(root=str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)


def _any_reachable(urls: list[str], timeout_s: float) -> bool:
    """True as soon as one URL's host accepts a TCP connection; False once all fail or time is up."""
    reached = threading.Event()

    def probe(url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with contextlib.suppress(OSError):
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            reached.set()

    threads = [threading.Thread(target=probe, args=(url,), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    while not reached.is_set() and any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        reached.wait(0.01)
    return reached.is_set()


@contextlib.contextmanager
def _removing_what_fails(folder: Path):
    """If the block raises, delete the files and folders it created under ``folder`` (and ``folder``
    itself and its parents, if it created those), leaving everything that was there before."""
    missing = []
    parent = folder
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    before = set(folder.rglob("*")) if folder.exists() else set()
    try:
        yield
    except BaseException:
        created = set(folder.rglob("*")) - before if folder.exists() else set()
        for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
        for path in missing:                     # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _complete(folder: Path, names: list[str]) -> bool:
    return all((folder / name).is_file() for name in names)


def _idx_files(folder: Path, spec: IdxDataset) -> dict[str, Path] | None:
    """raw name -> the file in ``folder`` (gunzipped or ``.gz``), or None unless all four are there."""
    found = {}
    for raw in spec.raw_names:
        candidates = [folder / raw, folder / f"{raw}.gz"]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            return None
        found[raw] = hit
    return found


def _unpack(files: dict[str, Path], home: Path, spec: IdxDataset) -> None:
    raw = spec.raw_folder(home)
    for name, source in files.items():
        opener = gzip.open if source.suffix == ".gz" else open

        def copy(tmp: Path, source=source, opener=opener) -> None:
            with opener(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)

        atomic_write(raw / name, copy)
    (raw.parent / _SOURCE_NOTE).write_text(f"{next(iter(files.values())).parent}\n")


def _read_source_note(home: Path, spec: IdxDataset) -> str:
    note = spec.raw_folder(home).parent / _SOURCE_NOTE
    return f" (unpacked earlier from {note.read_text().strip()})" if note.is_file() else ""


def _read(spec: IdxDataset, home: Path, split: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = spec.torchvision_class(root=str(home), train=(split == "train"), download=False)
    pixels, labels = dataset.data[:n], dataset.targets[:n]
    return pixels.unsqueeze(1).float().div_(255), labels.long()


def _not_found_message(spec: IdxDataset, split: str, tried: list[str]) -> str:
    steps = "\n".join(f"  {i}. {place}" for i, place in enumerate(tried, 1))
    files = ", ".join(spec.archives)
    fixes = []
    if spec.debian_package:
        fixes.append(f"install Debian's package: sudo apt-get install {spec.debian_package}  "
                     f"(it puts the files in /usr/share/datasets/{spec.name}/)")
    fixes += [
        f"copy the four IDX files ({files}) into {data_dir() / spec.name}/ "
        f"(or set VAE_DATA_DIR to a folder that has {spec.name}/ or "
        f"{spec.torchvision_class.__name__}/raw/, or pass root=...)",
        f"run once with network access: load_dataset({spec.name!r}, download=True)",
        "use the procedural stand-in that needs no files: load_dataset('synthetic-digits')",
    ]
    todo = "\n".join(f"  - {fix}" for fix in fixes)
    return (f"{spec.name} ({split} split) is not on this machine and could not be downloaded.\n"
            f"Tried, in order:\n{steps}\nTo fix it, any one of:\n{todo}")
