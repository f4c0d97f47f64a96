"""mnist / fashion-mnist: the search order, the unpacking of IDX files, and the offline error."""
from __future__ import annotations

import gzip
import socket
import struct
import time
from pathlib import Path

import pytest
import torch
import torchvision

from vae_lib.data import DatasetFileError, DatasetNotFoundError, load_dataset
from vae_lib.data import torchvision_sets

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def write_idx_set(folder: Path, marker: int, *, gz: bool = True, count: int = 6) -> Path:
    """Four tiny IDX files (the published format: big-endian header, then bytes).

    Every train pixel is ``marker`` and every test pixel ``marker + 1``, so a test can tell which
    copy was read; labels are 0, 1, 2, ...
    """
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, value in (("train", marker), ("t10k", marker + 1)):
        images = struct.pack(">iiii", 2051, count, 28, 28) + bytes([value]) * (count * 28 * 28)
        labels = struct.pack(">ii", 2049, count) + bytes(i % 10 for i in range(count))
        for name, payload in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return folder


def marker_of(data) -> int:
    return round(float(data.images[0, 0, 0, 0]) * 255)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """A fresh data_dir and system dataset folder; downloads fail at once unless a test says otherwise."""
    cache, system = tmp_path / "cache", tmp_path / "system"
    monkeypatch.setenv("VAE_DATA_DIR", str(cache))
    monkeypatch.setenv("VAE_SYSTEM_DATA_DIRS", str(system))

    def no_network(spec, root, timeout_s=None):
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(torchvision_sets, "torchvision_download", no_network)
    return tmp_path, cache, system


def tree(path: Path) -> set[Path]:
    return set(path.rglob("*")) if path.exists() else set()


def test_explicit_root_wins_over_data_dir_and_system(dirs):
    tmp, cache, system = dirs
    write_idx_set(tmp / "mine", marker=10)
    write_idx_set(cache / "FashionMNIST" / "raw", marker=20, gz=False)
    write_idx_set(system / "fashion-mnist", marker=30)

    data = load_dataset("fashion-mnist", root=tmp / "mine", verbose=False)
    assert marker_of(data) == 10
    assert data.source == str(tmp / "mine")
    # IDX files next to root= are unpacked into root's own torchvision layout.
    assert sorted(p.name for p in (tmp / "mine" / "FashionMNIST" / "raw").iterdir()) == sorted(FASHION_FILES)


def test_data_dir_comes_before_the_system_folder(dirs):
    tmp, cache, system = dirs
    write_idx_set(cache / "FashionMNIST" / "raw", marker=20, gz=False)
    write_idx_set(system / "fashion-mnist", marker=30)
    data = load_dataset("fashion-mnist", verbose=False)
    assert marker_of(data) == 20
    assert "data_dir()" in data.reason
    # An explicit root without the data falls through, and the reason says so.
    (tmp / "empty").mkdir()
    data = load_dataset("fashion-mnist", root=tmp / "empty", verbose=False)
    assert marker_of(data) == 20
    assert f"not in root={tmp / 'empty'}" in data.reason


def test_flat_idx_files_in_data_dir_are_found(dirs):
    _, cache, _ = dirs
    write_idx_set(cache / "mnist", marker=40, gz=False)
    data = load_dataset("mnist", "test", verbose=False)
    assert marker_of(data) == 41                                   # the t10k files
    assert (cache / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_system_folder_is_unpacked_into_data_dir_once(dirs):
    _, cache, system = dirs
    write_idx_set(system / "fashion-mnist", marker=30)
    system_before = tree(system)

    data = load_dataset("fashion-mnist", verbose=False)
    assert marker_of(data) == 30
    assert data.source == str(system / "fashion-mnist")
    assert "system dataset folder" in data.reason
    assert tree(system) == system_before                           # nothing written next to the system files
    raw = cache / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FASHION_FILES)

    again = load_dataset("fashion-mnist", "test", verbose=False)
    assert marker_of(again) == 31
    assert again.source == str(raw)
    assert f"unpacked earlier from {system / 'fashion-mnist'}" in again.reason


def test_n_keeps_the_first_samples_and_labels_are_int64(dirs):
    _, _, system = dirs
    write_idx_set(system / "mnist", marker=50, count=8)
    data = load_dataset("mnist", n=5, verbose=False)
    assert data.images.shape == (5, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.labels.tolist() == [0, 1, 2, 3, 4] and data.labels.dtype == torch.int64
    assert data.value_range == (0.0, 1.0)
    assert data.class_names == [str(d) for d in range(10)]


def test_not_found_lists_every_place_and_what_to_do(dirs):
    tmp, cache, system = dirs
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fashion-mnist", root=tmp / "mine", verbose=False)
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    for place in (tmp / "mine" / "FashionMNIST" / "raw", tmp / "mine", cache / "FashionMNIST" / "raw",
                  cache / "fashion-mnist", system / "fashion-mnist"):
        assert f"{place}/" in message, place
    assert "ConnectionError: no network in this test" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "VAE_DATA_DIR" in message and "train-images-idx3-ubyte.gz" in message
    assert "load_dataset('synthetic-digits')" in message
    assert not (tmp / "mine").exists() and not cache.exists()      # a failed search writes nothing


def test_download_false_says_it_did_not_try(dirs):
    with pytest.raises(DatasetNotFoundError, match=r"not attempted \(download=False\)"):
        load_dataset("mnist", download=False, verbose=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_download_offline_fails_fast_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VAE_SYSTEM_DATA_DIRS", str(tmp_path / "system"))
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"http://127.0.0.1:{closed_port()}/"])
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError, match="no mirror reachable"):
        load_dataset("mnist", verbose=False)
    assert time.monotonic() - start < 5
    assert not (tmp_path / "cache").exists()


def test_download_that_hangs_is_cut_off_and_its_folders_removed(tmp_path, monkeypatch):
    """A server that accepts connections but never answers: the socket timeout ends the attempt, and
    the folders torchvision made (cache/FashionMNIST/raw) go, while what was there stays."""
    cache = tmp_path / "cache"
    (cache / "keep").mkdir(parents=True)
    (cache / "keep" / "note.txt").write_text("mine")
    monkeypatch.setenv("VAE_DATA_DIR", str(cache))
    monkeypatch.setenv("VAE_SYSTEM_DATA_DIRS", str(tmp_path / "system"))
    monkeypatch.setattr(torchvision_sets, "DOWNLOAD_TIMEOUT_S", 0.5)
    with socket.socket() as silent_server:
        silent_server.bind(("127.0.0.1", 0))
        silent_server.listen(8)
        monkeypatch.setattr(torchvision.datasets.FashionMNIST, "mirrors",
                            [f"http://127.0.0.1:{silent_server.getsockname()[1]}/"])
        before = tree(cache)
        start = time.monotonic()
        with pytest.raises(DatasetNotFoundError, match="torchvision download into"):
            load_dataset("fashion-mnist", verbose=False)
        assert time.monotonic() - start < 5
    assert tree(cache) == before
    assert socket.getdefaulttimeout() is None                        # restored after the attempt


@pytest.mark.skipif(not all((REAL_FASHION / f"{f}.gz").is_file() for f in FASHION_FILES),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("VAE_SYSTEM_DATA_DIRS", raising=False)
    data = load_dataset("fashion-mnist", "test", n=10, download=False, verbose=False)
    assert data.source == str(REAL_FASHION)
    assert data.images.shape == (10, 1, 28, 28)
    assert 0 <= data.images.min() and data.images.max() <= 1 and data.images.max() > 0.9
    # The first ten test labels as published with Fashion-MNIST.
    assert data.labels.tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("spoil, words", [
    (lambda p: p.write_bytes(gzip.compress(b"<html>404 not found</html>" * 40)), "starts with 3c68746d"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "cannot be read as a gzip file"),
    (lambda p: p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-100])), "truncated"),
    (lambda p: p.write_bytes(b""), "only 0 bytes"),
])
def test_bad_idx_files_are_named_and_never_copied(dirs, spoil, words):
    _, cache, _ = dirs
    folder = write_idx_set(cache / "mnist", marker=40)
    bad = folder / "train-images-idx3-ubyte.gz"
    good = bad.read_bytes()
    spoil(bad)
    with pytest.raises(DatasetFileError) as info:
        load_dataset("mnist", verbose=False)
    assert str(bad) in str(info.value) and words in str(info.value)
    raw = cache / "MNIST" / "raw"
    assert not raw.exists() or not list(raw.iterdir())  # none of the four, and no temporary file
    bad.write_bytes(good)  # the user puts the good file back: it loads
    assert marker_of(load_dataset("mnist", verbose=False)) == 40


def test_a_bad_file_already_in_the_torchvision_layout_is_named(dirs):
    _, cache, _ = dirs
    raw = write_idx_set(cache / "MNIST" / "raw", marker=20, gz=False)
    (raw / "train-labels-idx1-ubyte").write_bytes(b"garbage" * 10)
    with pytest.raises(DatasetFileError, match=f"{raw / 'train-labels-idx1-ubyte'} is not a valid IDX labels file"):
        load_dataset("mnist", verbose=False)
    assert marker_of(load_dataset("mnist", "test", verbose=False)) == 21  # the test files are fine


def test_fingerprints_tell_the_sets_apart_and_ignore_where_they_are(dirs):
    tmp, cache, system = dirs
    write_idx_set(cache / "mnist", marker=40)
    write_idx_set(system / "fashion-mnist", marker=30)
    write_idx_set(tmp / "elsewhere", marker=40)
    mnist = torchvision_sets.fingerprint("mnist", torchvision_sets.find_idx_dataset("mnist")[0])
    fashion = torchvision_sets.fingerprint("fashion-mnist", torchvision_sets.find_idx_dataset("fashion-mnist")[0])
    copy = torchvision_sets.fingerprint("mnist", torchvision_sets.find_idx_dataset("mnist", root=tmp / "elsewhere")[0])
    assert mnist != fashion and mnist == copy and len(mnist) == 16
