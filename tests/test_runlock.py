"""One training per run folder: a second process is refused at once, naming the folder and the holder."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vae_lib import runlock
from vae_lib.cli import main
from vae_lib.configs import TrainConfig, get_config
from vae_lib.experiments import build_loss, build_model, train_or_load
from vae_lib.runlock import LOCK_NAME, RunLockedError, remove_stale_temp_files, run_lock
from vae_lib.train import Trainer

REPO = Path(__file__).resolve().parent.parent
HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from vae_lib.runlock import run_lock
with run_lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()          # hold it until the test closes stdin (or kills us)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/run."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), str(run_dir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    yield run_dir, process
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def tiny_config():
    return get_config("cvae-smoke", **{"n_train": 8, "n_test": 0, "train.batch_size": 8, "train.max_steps": 1,
                                       "train.device": "cpu"})


def test_a_second_process_is_refused_at_once_with_the_holders_pid(holder, capsys):
    run_dir, process = holder
    with pytest.raises(RunLockedError) as info:
        with run_lock(run_dir):
            pass
    message = str(info.value)
    assert str(run_dir) in message and f"process {process.pid}" in message and info.value.pid == process.pid

    # Every way in: the Trainer, train_or_load (before it checks or writes config.json) and the CLI.
    trainer = Trainer(torch.nn.Linear(2, 2), lambda *a, **k: {}, TrainConfig(device="cpu"), run_dir, progress=False)
    with pytest.raises(RunLockedError):
        trainer.fit([(torch.zeros(1, 2),)])
    with pytest.raises(RunLockedError):
        train_or_load(tiny_config(), run_dir=run_dir, verbose=False)
    assert not (run_dir / "config.json").exists()
    code = main(["train", "--config", "cvae-smoke", "--set", "n_train=8", "--device", "cpu", "--quiet",
                 "--out", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"process {process.pid}" in err and str(run_dir) in err


def test_a_killed_holder_leaves_no_lock_behind(holder):
    run_dir, process = holder
    os.kill(process.pid, signal.SIGKILL)  # no clean-up: the lock file stays, with its dead pid
    process.wait(timeout=30)
    assert (run_dir / LOCK_NAME).read_text().strip() == str(process.pid)
    with run_lock(run_dir):
        assert (run_dir / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert not (run_dir / LOCK_NAME).exists()  # released and removed
    _, _, info = train_or_load(tiny_config(), run_dir=run_dir, verbose=False)
    assert info["status"] == "trained" and not (run_dir / LOCK_NAME).exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            assert runlock.holds_lock(tmp_path)
        assert runlock.holds_lock(tmp_path) and (tmp_path / LOCK_NAME).exists()
    assert not runlock.holds_lock(tmp_path) and not (tmp_path / LOCK_NAME).exists()


def test_a_run_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        with run_lock(tmp_path / "file"):
            pass


def test_temporary_files_of_killed_saves_are_removed_at_the_next_save_or_load(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint.pt.{dead.pid}-0123abcd.tmp"          # a kill -9 in the middle of a save
    live = tmp_path / f".checkpoint.pt.{os.getppid()}-89abcdef.tmp"       # a writer that is still alive
    other = tmp_path / ".notes.txt"
    for path in (stale, live, other):
        path.write_bytes(b"half")
    train_or_load(tiny_config(), run_dir=tmp_path, verbose=False)
    assert not stale.exists() and live.exists() and other.exists()
    stale.write_bytes(b"half")
    config = tiny_config()
    Trainer(build_model(config), build_loss(config), config.train, tmp_path,
            progress=False).load_checkpoint()  # a load cleans up too
    assert not stale.exists() and live.exists()


def test_stale_temporary_files_stay_while_another_process_holds_the_folder(holder):
    run_dir, _ = holder
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = run_dir / f".checkpoint.pt.{dead.pid}-0123abcd.tmp"
    stale.write_bytes(b"half")
    assert remove_stale_temp_files(run_dir) == [] and stale.exists()
