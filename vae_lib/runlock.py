"""One process at a time in a run folder: an advisory lock file, ``<run_dir>/.lock``.

Two trainings writing one folder would mix their checkpoints and configs (one could save
``config.json`` with lr=0.002 while the other's checkpoint was trained with 0.001), or do the same
work twice. ``run_lock(run_dir)`` takes an exclusive ``fcntl.flock`` on the lock file and writes
the holder's pid into it; a second process fails at once with :class:`RunLockedError`, whose
message names the folder and that pid::

    with run_lock("runs/x"):
        ...   # check and write config.json, train, save checkpoints

The kernel drops a flock when its process dies (even by kill -9), so a stale lock file never
blocks: the next process simply takes it. The lock is re-entrant within a process (the CLI, then
``train_or_load``, then ``Trainer.fit`` each take it) and the file is removed on the last release.
On systems without ``fcntl`` (Windows) nothing is locked.

Also here: :func:`remove_stale_temp_files`, which deletes what a killed ``atomic_write`` left.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None

LOCK_NAME = ".lock"
# atomic_write's temporary names: ".<target>.<pid>-<8 hex>.tmp"
_TEMP_PATTERN = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")

# run folder (resolved) -> [file descriptor, depth]: this process's locks.
_held: dict[Path, list] = {}
_guard = threading.Lock()


class RunLockedError(RuntimeError):
    """Another process is training in this run folder."""

    def __init__(self, run_dir: Path, pid: int | None):
        self.run_dir, self.pid = run_dir, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"run folder {run_dir} is in use by {holder} (lock file {run_dir / LOCK_NAME}); "
                         "wait for it to finish, stop it, or use another run folder")


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(run_dir: str | Path):
    """Hold the exclusive lock on ``run_dir`` (created if missing) for the ``with`` block.

    Raises :class:`RunLockedError` at once (no waiting) if another process holds it.
    """
    key = acquire(run_dir)
    try:
        yield Path(run_dir)
    finally:
        release(key)


def acquire(run_dir: str | Path) -> Path:
    """Take the lock (see :func:`run_lock`); returns the key to pass to :func:`release`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return key
        if fcntl is None:  # pragma: no cover
            _held[key] = [None, 1]
            return key
        path = key / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(run_dir, _read_pid(path)) from None
            except BaseException:
                os.close(fd)
                raise
            # The holder we waited on may have removed the file between our open and our flock:
            # then we hold a lock on a deleted file, and must lock the one at the path instead.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[key] = [fd, 1]
    return key


def release(key: Path) -> None:
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd = entry[0]
        if fd is not None:
            # Unlink while still holding the lock, so that nobody locks a file about to vanish.
            with contextlib.suppress(OSError):
                os.unlink(key / LOCK_NAME)
            os.close(fd)


def holds_lock(run_dir: str | Path) -> bool:
    """True if this process holds the lock of ``run_dir``."""
    return Path(run_dir).resolve() in _held


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of ``atomic_write`` in ``run_dir`` whose writer process is dead
    (a kill -9 in the middle of a checkpoint save leaves ``.checkpoint.pt.<pid>-<id>.tmp``).

    Only while nobody trains there: it takes the run lock for the moment (or uses the one this
    process holds) and does nothing if another process holds it, since a live writer's temporary
    file must stay. Returns the removed paths.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    candidates = [p for p in run_dir.iterdir() if _TEMP_PATTERN.match(p.name)]
    if not candidates:
        return []
    try:
        key = acquire(run_dir)
    except RunLockedError:
        return []
    removed = []
    try:
        for path in candidates:
            pid = int(_TEMP_PATTERN.match(path.name)["pid"])
            if pid != os.getpid() and not _pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    finally:
        release(key)
    return removed
