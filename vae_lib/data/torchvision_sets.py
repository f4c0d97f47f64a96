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

Every IDX file is checked (magic number, dimensions, size) before it is copied and before it is
read: a garbage or truncated file is a :class:`DatasetFileError` naming it, and nothing of a bad
set is copied into ``<Class>/raw/`` (where it would shadow good files put back later).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch
from torchvision.datasets import MNIST, FashionMNIST

from vae_lib.data.errors import DatasetFileError, DatasetNotFoundError
from vae_lib.runtime import data_dir
from vae_lib.utils import atomic_write

# Folders searched after root= and data_dir(); $VAE_SYSTEM_DATA_DIRS (os.pathsep-separated) overrides.
SYSTEM_DATA_DIRS = ("/usr/share/datasets",)
# Bound on each network wait of a download attempt (connect, each read), in seconds.
DOWNLOAD_TIMEOUT_S = 2.0
_SOURCE_NOTE = "unpacked_from.txt"
# IDX magic numbers: 0x0000 08 03 (unsigned bytes, 3 dimensions: images), 0x0000 08 01 (labels).
_IDX_MAGIC = {"images": 0x0803, "labels": 0x0801}
# Bytes of each file that the fingerprint reads (with the file's size): enough to tell data sets apart.
FINGERPRINT_BYTES = 1 << 16


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

    Raises :class:`DatasetNotFoundError` (listing every place tried) when the files are nowhere,
    :class:`DatasetFileError` (naming the file) when a file is not a valid IDX file.
    """
    home, source, reason = find_idx_dataset(name, split, root, download=download)
    return (*_read(IDX_DATASETS[name], home, split, n), source, reason)


def find_idx_dataset(name: str, split: str = "train", root=None, *, download: bool = True) -> tuple[Path, str, str]:
    """Make the set readable by torchvision (unpacking or downloading it if need be) without reading it.

    Returns ``(home, source, reason)``: torchvision's root (``<home>/<Class>/raw/`` holds the four
    files), where the files came from and why this place. Errors as :func:`load_idx_dataset`.
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
            return (home, str(spec.raw_folder(home)),
                    f"{prefix}found in {label}{_read_source_note(home, spec)}")
        tried.append(f"{spec.raw_folder(home)}/  [{label}, torchvision layout]")
        for folder in flat_folders:
            files = _idx_files(folder, spec)
            if files:
                _unpack(files, home, spec)
                return (home, str(folder), f"{prefix}IDX files in {folder}, unpacked to {spec.raw_folder(home)}")
            tried.append(f"{folder}/  [{label}, IDX files]")

    for folder in (d / name for d in system_data_dirs()):
        files = _idx_files(folder, spec)
        if files:
            _unpack(files, data_dir(), spec)
            return (data_dir(), str(folder),
                    f"{missed_root}not in data_dir(); found the system dataset folder {folder}, "
                    f"unpacked once to {spec.raw_folder(data_dir())}")
        tried.append(f"{folder}/  [system dataset folder]")

    target = root if root is not None else data_dir()
    if download:
        try:
            torchvision_download(spec, target)
            return target, str(spec.raw_folder(target)), f"not found locally; downloaded by torchvision into {target}"
        except Exception as error:  # noqa: BLE001  any failure becomes part of the not-found message
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            tried.append(f"torchvision download into {target}: {type(error).__name__}: {first_line}")
    else:
        tried.append("torchvision download: not attempted (download=False)")
    raise DatasetNotFoundError(_not_found_message(spec, split, tried))


def fingerprint(name: str, home: Path) -> str:
    """A cheap digest of the set in ``<home>/<Class>/raw/``: each file's size and first 64 KiB
    (MNIST and Fashion-MNIST have the same sizes; their first pixels differ)."""
    spec = IDX_DATASETS[name]
    digest = hashlib.sha256()
    for raw in spec.raw_names:
        path = spec.raw_folder(home) / raw
        digest.update(f"{raw}:{path.stat().st_size}:".encode())
        with open(path, "rb") as f:
            digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


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


def check_idx_file(path: Path, described_as: Path | None = None) -> None:
    """Raise :class:`DatasetFileError` unless ``path`` is a whole IDX file of unsigned bytes: the
    magic number of images (3 dimensions) or labels (1), and a size that matches its dimensions.
    ``described_as``: the file to name in the message (the source of an unpacked copy)."""
    shown = described_as or path
    kind = "labels" if "labels" in path.name else "images"
    with open(path, "rb") as f:
        header = f.read(16)
    size = path.stat().st_size
    ndim = 1 if kind == "labels" else 3
    if len(header) < 4 + 4 * ndim:
        raise DatasetFileError(f"{shown} is not a valid IDX {kind} file: only {size} bytes (truncated or empty)")
    magic = int.from_bytes(header[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise DatasetFileError(f"{shown} is not a valid IDX {kind} file: it starts with {header[:4].hex()} "
                               f"instead of {_IDX_MAGIC[kind]:08x} (garbage, or another format)")
    dims = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise DatasetFileError(f"{shown} is not a valid IDX {kind} file: {size} bytes where its header "
                               f"({' x '.join(map(str, dims))}) needs {expected} ({'truncated' if size < expected else 'extra bytes'})")


def _unpack(files: dict[str, Path], home: Path, spec: IdxDataset) -> None:
    """Copy (gunzipping) the four files into ``<home>/<Class>/raw/``: each is checked first, and
    if one is bad none is moved in."""
    raw = spec.raw_folder(home)
    raw.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, source in files.items():
            tmp = raw / f".{name}.{os.getpid()}.unpacking"
            staged.append((tmp, raw / name))
            opener = gzip.open if source.suffix == ".gz" else open
            try:
                with opener(source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
            except (EOFError, zlib.error, gzip.BadGzipFile) as error:
                what = "a gzip file" if opener is gzip.open else "an IDX file"
                raise DatasetFileError(f"{source} cannot be read as {what}: {error or type(error).__name__} "
                                       "(truncated or corrupt download?)") from error
            check_idx_file(tmp, described_as=source)
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    (raw.parent / _SOURCE_NOTE).write_text(f"{next(iter(files.values())).parent}\n")


def _read_source_note(home: Path, spec: IdxDataset) -> str:
    note = spec.raw_folder(home).parent / _SOURCE_NOTE
    return f" (unpacked earlier from {note.read_text().strip()})" if note.is_file() else ""


def _read(spec: IdxDataset, home: Path, split: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    prefix = "train" if split == "train" else "t10k"
    for raw in spec.raw_names:
        if raw.startswith(prefix):
            check_idx_file(spec.raw_folder(home) / raw)
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
