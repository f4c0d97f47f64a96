"""The install paths agree: pyproject.toml, constraints.txt and environment.yml."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = data["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not r.startswith("vae_lib")]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[req.name.lower()] = str(req.specifier)
    return pins


def _conda_pip_requirements() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    reqs = {}
    in_pip = False
    for line in text.splitlines():
        if re.match(r"^\s+- pip:\s*$", line):
            in_pip = True
            continue
        if in_pip:
            m = re.match(r"^\s+- (.+?)\s*$", line)
            if not m:
                break
            item = m.group(1)
            if item.startswith("-e"):
                continue
            req = Requirement(item)
            reqs[req.name.lower()] = str(req.specifier)
    return reqs


def test_constraints_pin_torch_exactly():
    pins = _constraints()
    assert pins["torch"] == "==2.14.1"
    assert pins["torchvision"] == "==0.29.1"


def test_environment_yml_lists_every_pyproject_dependency_with_the_same_bound():
    conda = _conda_pip_requirements()
    pins = _constraints()
    for name, spec in _pyproject_requirements().items():
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        expected = pins.get(name, spec)
        assert conda[name] == expected, f"{name}: environment.yml has {conda[name]!r}, expected {expected!r}"


def test_environment_yml_has_nothing_pyproject_lacks():
    extra = set(_conda_pip_requirements()) - set(_pyproject_requirements())
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_pins_admitted_by_pyproject_ranges():
    pyproject = _pyproject_requirements()
    for name, pin in _constraints().items():
        version = pin.removeprefix("==")
        assert Requirement(f"{name}{pyproject[name]}").specifier.contains(version), (
            f"constraints.txt pins {name}{pin}, outside pyproject's {pyproject[name]}")


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_installed_versions_match_the_pins(name):
    import importlib.metadata as md
    installed = md.version(name).split("+", 1)[0]
    assert f"=={installed}" == _constraints()[name], f"{name} {installed} installed, pinned {_constraints()[name]}"
