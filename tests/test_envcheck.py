"""check_environment: installed versions against constraints.txt."""
from __future__ import annotations

import importlib.metadata

import pytest

from vae_lib import envcheck
from vae_lib.envcheck import EnvironmentMismatchError, check_environment, read_pins


def test_the_repo_pins_are_read():
    pins = read_pins()
    assert str(pins["torch"].specifier) == "==2.14.1"
    assert str(pins["torchvision"].specifier) == "==0.29.1"


def test_matching_versions_pass(tmp_path):
    torch_version = importlib.metadata.version("torch").split("+")[0]
    tv_version = importlib.metadata.version("torchvision").split("+")[0]
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"# a comment\n\ntorch=={torch_version}\ntorchvision=={tv_version}  # pinned\n")
    report = check_environment(constraints)
    assert set(report) == {"torch", "torchvision"}
    assert report["torch"] == {"pinned": f"=={torch_version}", "installed": importlib.metadata.version("torch"),
                               "ok": True}


def test_local_suffix_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(envcheck, "installed_version", lambda name: "2.14.1+cu130")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch==2.14.1\n")
    assert check_environment(constraints)["torch"]["ok"] is True


def test_mismatch_raises_with_what_differs_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(envcheck, "installed_version", lambda name: {"torch": "2.13.0"}.get(name))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch==2.14.1\ntorchvision==0.29.1\n")
    with pytest.raises(EnvironmentMismatchError) as caught:
        check_environment(constraints)
    message = str(caught.value)
    assert "torch: installed 2.13.0, pinned torch==2.14.1" in message
    assert "torchvision: installed nothing, pinned torchvision==0.29.1" in message
    assert "pip install -c constraints.txt" in message
    report = check_environment(constraints, raise_on_mismatch=False)
    assert report["torch"]["ok"] is False and report["torchvision"]["installed"] is None
