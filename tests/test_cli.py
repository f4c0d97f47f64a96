"""``python -m vae_lib``: train -> interrupted -> resume -> evaluate -> sample / reconstruct, and bad input."""
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from vae_lib import cli, train
from vae_lib.cli import main, parse_set

# 16 images in batches of 8: 2 steps per epoch, 2 epochs.
TINY = ["--config", "cvae-smoke", "--epochs", "2", "--batch-size", "8", "--set", "n_train=16",
        "--set", "n_test=8", "--set", "train.beta.warmup_steps=2", "--device", "cpu", "--quiet"]


def grid_size(n_cols, n_rows, tile=28, padding=2):
    # torchvision.utils.make_grid: each tile plus its padding, and one padding at the far edge.
    return n_cols * (tile + padding) + padding, n_rows * (tile + padding) + padding


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run interrupted by Ctrl-C after 3 steps, then resumed by the same command."""
    out = tmp_path_factory.mktemp("cli") / "run"
    real_step = train.Trainer.train_step
    codes = []

    def interrupt_at_step_3(self, *args, **kwargs):
        if self.step == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train.Trainer, "train_step", interrupt_at_step_3)
        codes.append(main(["train", *TINY, "--out", str(out)]))
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    codes.append(main(["train", *TINY, "--out", str(out)]))
    return out, codes, saved


def test_train_is_interrupted_then_resumed_by_the_same_command(run):
    out, codes, interrupted = run
    assert codes == [130, 0]
    assert (interrupted["step"], interrupted["epoch"]) == (3, 1)
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert (final["step"], final["epoch"]) == (4, 2)
    assert [r["step"] for r in final["history"]["steps"]] == [0, 1, 2, 3]
    config = json.loads((out / "config.json").read_text())
    assert config["n_train"] == 16 and config["train"]["epochs"] == 2 and config["train"]["batch_size"] == 8
    metrics = json.loads((out / "metrics.json").read_text())["train"]
    assert metrics["status"] == "resumed" and metrics["steps"] == 4 and metrics["world_size"] == 1
    assert {"loss", "nll", "kl", "val_elbo"} <= set(metrics["last_epoch"])
    # samples.png: one row of 8 per class.
    assert Image.open(out / "samples.png").size == grid_size(8, 10)
    assert (out / "training_curves.png").stat().st_size > 0


def test_a_finished_run_is_loaded_not_trained_again(run, capsys):
    out, _, _ = run
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", *TINY[:-1], "--out", str(out)]) == 0
    assert "loaded finished run" in capsys.readouterr().out
    assert (out / "checkpoint.pt").read_bytes() == before


def test_a_resumed_run_may_change_device_and_speed_options_but_nothing_else(run, capsys):
    out, _, _ = run
    threads = torch.get_num_threads()
    try:
        assert main(["train", *TINY, "--threads", "1", "--set", "train.channels_last=false", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert json.loads((out / "config.json").read_text())["train"]["channels_last"] is False
    assert main(["train", *TINY, "--set", "train.lr=0.1", "--out", str(out)]) == 1
    assert "different config" in capsys.readouterr().err


def test_evaluate_writes_test_metrics_next_to_the_training_ones(run, capsys):
    out, _, _ = run
    assert main(["evaluate", "--out", str(out), "--k", "3", "--device", "cpu", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "train" in metrics
    evaluated = metrics["evaluate"]
    assert evaluated["num_images"] == 8 and evaluated["k"] == 3
    assert evaluated["neg_elbo"] == pytest.approx(evaluated["nll"] + evaluated["kl"])
    assert evaluated["iwae_nll"] <= evaluated["neg_elbo"] + 1e-6
    assert len(evaluated["kl_per_dim"]) == 16
    assert "neg_elbo=" in capsys.readouterr().out


def test_sample_and_reconstruct_write_png_grids(run, tmp_path):
    out, _, _ = run
    assert main(["sample", "--out", str(out), "--n", "3", "--file", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == grid_size(3, 10)
    assert main(["sample", "--out", str(out), "--n", "3", "--prior", "fitted", "--file", str(tmp_path / "f.png")]) == 0
    assert Image.open(tmp_path / "f.png").size == grid_size(3, 10)
    # Other pixels than the N(0, I) grid's: the codes moved.
    assert Image.open(tmp_path / "f.png").tobytes() != Image.open(tmp_path / "s.png").tobytes()
    assert main(["reconstruct", "--out", str(out), "--n", "5"]) == 0
    assert Image.open(out / "reconstructions.png").size == grid_size(5, 2)


@pytest.mark.parametrize("argv, status, words", [
    (["train", "--config", "cvae-smok", "--out", "x"], 1, "did you mean 'cvae-smoke'"),
    (["train", "--config", "cvae-smoke", "--set", "train.epochz=3", "--out", "x"], 1, "did you mean 'epochs'"),
    (["train", "--config", "cvae-smoke", "--set", "lr"], 1, "--set needs key=value"),
    (["train", "--config", "cvae-smoke", "--epochs", "0"], 2, "positive integer"),
    (["train"], 2, "--config"),
    (["sample", "--out", "no/such/run"], 1, "no run in no/such/run"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_arguments_get_one_line_and_a_nonzero_status(argv, status, words, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == status
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_help_for_every_command(capsys):
    for command in ([], ["train"], ["sample"], ["reconstruct"], ["evaluate"], ["configs"]):
        with pytest.raises(SystemExit) as raised:
            main([*command, "--help"])
        assert raised.value.code == 0
        assert "usage: vae-lib" in capsys.readouterr().out


def test_configs_lists_presets_and_prints_one_with_overrides(capsys):
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("cvae-smoke", "cvae-quick", "stylevae-full"))
    assert main(["configs", "cvae-quick", "--set", "train.lr=0.01"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["lr"] == 0.01


def test_set_values_are_json_else_text():
    assert parse_set(["a=1", "b=1e-3", "c=true", "d=null", "e=fashion-mnist", "f=[1, 2]", "g=x=y"]) == {
        "a": 1, "b": 0.001, "c": True, "d": None, "e": "fashion-mnist", "f": [1, 2], "g": "x=y"}


def test_python_dash_m_runs_the_cli_as_a_program():
    done = subprocess.run([sys.executable, "-m", "vae_lib", "train", "--config", "nope"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith(f"{cli.PROG} train: error: Unknown config 'nope'")
    assert done.stderr.count("\n") == 1


# ------------------------------------------------------------------- one line for every anticipated mistake
def copy_run(run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run[0], out)
    return out


def corrupt(kind):
    def spoil(out):
        checkpoint = out / "checkpoint.pt"
        if kind == "random":
            checkpoint.write_bytes(bytes(range(256)) * 64)
        elif kind == "empty":
            checkpoint.write_bytes(b"")
        elif kind == "truncated":
            checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
        elif kind == "z_dim":  # config.json edited after training
            config = json.loads((out / "config.json").read_text())
            config["model_kwargs"]["z_dim"] = 8
            (out / "config.json").write_text(json.dumps(config))
        elif kind == "config-json":
            (out / "config.json").write_text('{"name": "cvae-smoke", ')
        elif kind == "config-field":
            config = json.loads((out / "config.json").read_text())
            config["train"]["lr"] = "fast"
            (out / "config.json").write_text(json.dumps(config))
        elif kind == "metrics-json":
            (out / "metrics.json").write_text("{oops")
    return spoil


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.mark.parametrize("spoil, argv, status, words", [
    (corrupt("random"), ["sample"], 1, "cannot read checkpoint {out}/checkpoint.pt: it is corrupt"),
    (corrupt("empty"), ["sample"], 1, "checkpoint {out}/checkpoint.pt is empty"),
    (corrupt("truncated"), ["evaluate", "--k", "2"], 1, "cannot read checkpoint {out}/checkpoint.pt"),
    (corrupt("z_dim"), ["sample"], 1, "{out}/checkpoint.pt does not fit {out}/config.json (Error(s) in loading"),
    (corrupt("config-json"), ["sample"], 1, "{out}/config.json is not valid JSON"),
    (corrupt("config-field"), ["reconstruct"], 1,
     "{out}/config.json is not a valid run config: train.lr must be a number > 0, got 'fast'"),
    (corrupt("metrics-json"), ["evaluate", "--k", "2"], 1, "{out}/metrics.json is not valid JSON"),
    (None, ["sample", "--device", "gpu"], 1, "unknown device 'gpu': use auto, cpu, cuda, cuda:N or mps"),
    pytest.param(None, ["sample", "--device", "cuda"], 1, "device 'cuda' is not available on this machine",
                 marks=NO_CUDA),
    pytest.param(None, ["train", *TINY[:-3], "--device", "cuda"], 1, "device 'cuda' is not available", marks=NO_CUDA),
    (None, ["train", *TINY, "--set", "train.device=gpu"], 1, "train.device must be one of auto, cpu, cuda"),
    (None, ["sample", "--truncation", "nan"], 2, "--truncation must be a finite number in [-2, 2]"),
    (None, ["sample", "--truncation", "inf"], 2, "got inf"),
    (None, ["sample", "--n", "2.5"], 2, "must be a positive integer, got '2.5'"),
    (None, ["sample", "--prior", "wide"], 2, "invalid choice: 'wide'"),
])
def test_bad_runs_and_values_get_one_line_naming_the_file_or_value(run, tmp_path, capsys, spoil, argv, status, words):
    out = copy_run(run, tmp_path)
    if spoil is not None:
        spoil(out)
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == status, err
    assert err.count("\n") == 1 and words.format(out=out) in err and "Traceback" not in err


@pytest.mark.parametrize("override, words", [
    ("train.lr=fast", "train.lr must be a number > 0, got 'fast'"),
    ("train.seed=abc", "train.seed must be an integer, got 'abc'"),
    ("train.max_steps=-1", "train.max_steps must be an integer >= 0 or None, got -1"),
    ("train.epochs=2.5", "train.epochs must be an integer >= 0, got 2.5"),
    ("model_kwargs.z_dim=16.5", "model_kwargs.z_dim must be an integer >= 1, got 16.5"),
])
def test_overrides_of_the_wrong_type_name_the_key_the_type_and_the_value(tmp_path, capsys, override, words):
    assert main(["train", *TINY, "--set", override, "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


@pytest.mark.parametrize("command", [["train", *TINY], ["sample"], ["evaluate"], ["reconstruct"]])
def test_an_out_that_is_a_file_is_named(tmp_path, capsys, command):
    (tmp_path / "file").write_text("not a folder")
    assert main([*command, "--out", str(tmp_path / "file")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {tmp_path / 'file'} is a file, not a run folder" in err


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        main(["--debug", "sample", "--out", str(tmp_path / "file")])


def test_a_read_only_run_is_refused_before_any_metric_is_computed(run, tmp_path):
    """As a user without write permission (root writes anyway: the command runs as nobody then)."""
    import os
    import shutil
    import stat
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="vae-readonly-"))  # outside root's private pytest folder
    try:
        out = base / "run"
        shutil.copytree(run[0], out)
        os.chmod(base, 0o755)
        for path in [out, *out.iterdir()]:
            os.chmod(path, 0o555 if path.is_dir() else 0o444)
        argv = [sys.executable, "-m", "vae_lib", "evaluate", "--out", str(out), "--k", "2", "--device", "cpu"]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop the right to write")
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        repo = Path(__file__).resolve().parent.parent
        env = dict(os.environ, PYTHONPATH=str(repo), HOME=str(base), MPLCONFIGDIR=str(base))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=base)
        assert done.returncode == 1, done.stderr
        assert done.stderr.count("\n") == 1 and f"cannot write {out / 'metrics.json'}" in done.stderr
        assert "neg_elbo" not in done.stdout  # nothing was computed, so nothing was lost
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o555
    finally:
        for path in base.rglob("*"):
            os.chmod(path, 0o755)
        shutil.rmtree(base)


def test_evaluate_prints_its_numbers_before_it_writes_them(run, tmp_path, capsys, monkeypatch):
    out = copy_run(run, tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out / "metrics.json"))

    monkeypatch.setattr(cli, "atomic_write", disk_full)
    assert main(["evaluate", "--out", str(out), "--k", "2", "--device", "cpu", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "neg_elbo=" in captured.out
    assert captured.err.count("\n") == 1 and f"No space left on device: {out / 'metrics.json'}" in captured.err


def test_export_writes_the_averaged_weights_config_and_history_and_cannot_be_resumed(tmp_path):
    from vae_lib.ema import ema_model_state
    from vae_lib.experiments import load_trained

    run_dir, published = tmp_path / "run", tmp_path / "published"
    args = [*TINY, "--set", "train.ema_half_life_images=8", "--set", "train.keep_checkpoints=[]"]
    assert main(["train", *args, "--out", str(run_dir)]) == 0
    assert main(["export", "--out", str(run_dir), "--to", str(published), "--quiet"]) == 0
    full = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    slim = torch.load(published / "checkpoint.pt", weights_only=True)
    assert set(slim) == {"model", "step", "epoch", "config", "history", "exported"}
    assert (slim["step"], slim["epoch"], slim["history"]) == (full["step"], full["epoch"], full["history"])
    averaged = ema_model_state(full["ema"])
    assert set(slim["model"]) == set(averaged)
    assert all(torch.equal(slim["model"][k], averaged[k]) for k in averaged)
    assert not all(torch.equal(full["model"][k], averaged[k]) for k in averaged)   # the EMA, not the last weights
    assert (published / "checkpoint.pt").stat().st_size < (run_dir / "checkpoint.pt").stat().st_size / 2
    assert (published / "config.json").read_text() == (run_dir / "config.json").read_text()
    # Both folders load as the same averaged model.
    _, model_a, history = load_trained(run_dir, "cpu")
    _, model_b, _ = load_trained(published, "cpu")
    z = torch.randn(3, model_a.z_dim, generator=torch.Generator().manual_seed(0))
    y = torch.arange(3)
    torch.testing.assert_close(model_a.decode(z, y), model_b.decode(z, y))
    assert history == full["history"]
    # Training into the published folder is refused, naming it; exporting onto the run itself too.
    assert main(["train", *args, "--epochs", "3", "--out", str(published)]) == 1
    assert main(["export", "--out", str(run_dir), "--to", str(run_dir)]) == 1


def test_export_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "nothing"), "--to", str(tmp_path / "x")]) == 1
    assert "no run in" in capsys.readouterr().err
