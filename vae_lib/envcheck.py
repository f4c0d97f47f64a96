"""Is this the environment the course was written for? The installed versions against constraints.txt.

The course pins torch and torchvision exactly (``constraints.txt`` at the repo root), because
their APIs drift; notebook 00 calls :func:`check_environment` so a mismatch shows up at once,
with the command that fixes it, rather than as a strange error three notebooks later.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from vae_lib.runtime import repo_root

FIX = "pip install -c constraints.txt -e '.[dev]'   (or: make setup)"


class EnvironmentMismatchError(RuntimeError):
    """An installed package differs from its pin in constraints.txt."""


def read_pins(constraints: str | Path | None = None) -> dict[str, Requirement]:
    """The requirements in ``constraints`` (default ``<repo>/constraints.txt``): name -> Requirement."""
    path = Path(constraints) if constraints is not None else repo_root() / "constraints.txt"
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[requirement.name.lower()] = requirement
    return pins


def installed_version(name: str) -> str | None:
    """The installed distribution's version string (e.g. '2.14.1+cu130'), or None if absent."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_environment(constraints: str | Path | None = None, *, raise_on_mismatch: bool = True) -> dict:
    """Compare every pinned package with what is installed, ignoring local suffixes such as '+cu130'.

    Returns ``{name: {"pinned": "==2.14.1", "installed": "2.14.1+cu130", "ok": True}, ...}``.
    Raises :class:`EnvironmentMismatchError` naming each mismatch and the fix, unless
    ``raise_on_mismatch=False``.
    """
    report = {}
    for name, requirement in read_pins(constraints).items():
        installed = installed_version(name)
        try:
            ok = installed is not None and requirement.specifier.contains(Version(installed).public, prereleases=True)
        except InvalidVersion:
            ok = False
        report[name] = {"pinned": str(requirement.specifier), "installed": installed, "ok": ok}
    mismatches = [f"{name}: installed {info['installed'] or 'nothing'}, pinned {name}{info['pinned']}"
                  for name, info in report.items() if not info["ok"]]
    if mismatches and raise_on_mismatch:
        raise EnvironmentMismatchError("This environment differs from the course's pins:\n  "
                                       + "\n  ".join(mismatches) + f"\nFix it from the repo root with: {FIX}")
    return report
