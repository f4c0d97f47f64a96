"""vae_lib's layers: a module imports only its own layer and those below (the map in vae_lib/__init__.py).

Every import statement of every module is read with ``ast`` (those inside functions and
``TYPE_CHECKING`` blocks too), so a late import cannot hide an arrow that points up.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vae_lib

PACKAGE = Path(vae_lib.__file__).parent

# Bottom to top. A module belongs to the first entry that is its name or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("vae_lib.utils", "vae_lib.runtime", "vae_lib.allocator", "vae_lib.checks", "vae_lib.runlock"),  # ground floor
    ("vae_lib.data", "vae_lib.envcheck"),
    ("vae_lib.nn",),
    ("vae_lib.models",),
    ("vae_lib.configs", "vae_lib.schedules", "vae_lib.losses", "vae_lib.perceptual"),
    ("vae_lib.train", "vae_lib.fastpaths", "vae_lib.distributed", "vae_lib.ema"),
    ("vae_lib.experiments", "vae_lib.evaluate", "vae_lib.judges", "vae_lib.metrics", "vae_lib.factor_decoder"),
    ("vae_lib.viz",),
    ("vae_lib.widgets", "vae_lib.exercises"),
    ("vae_lib.cli", "vae_lib.__main__", "vae_lib.classroom", "vae_lib.coursesite", "vae_lib"),
]
GROUND = 0


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for level, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names if name != "vae_lib"):
            return level
    if module == "vae_lib":
        return len(LAYERS) - 1
    raise KeyError(f"{module} is in no layer: add it to LAYERS (and to the map in vae_lib/__init__.py).")


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[str, int]]:
    """The vae_lib modules that ``source`` imports, with line numbers. ``from vae_lib import x`` names
    the module vae_lib.x when there is one, else the package (a lazily exported name)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:      # relative: from . import x, from .y import z
                anchor = module.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if _is_module(candidate) else base, node.lineno))
    unique = dict.fromkeys(found)
    return [(name, line) for name, line in unique if name == "vae_lib" or name.startswith("vae_lib.")]


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each import of ``source`` (as module ``module``) that points at a higher layer, or any
    import of vae_lib from the ground floor, or of another module's private name."""
    level = layer_of(module)
    problems = []
    for target, line in imported_modules(source, module, is_package):
        if target == module:
            continue
        target_level = layer_of(target)
        if level == GROUND:
            problems.append(f"{module}:{line} imports {target}: the ground floor imports nothing of vae_lib")
        elif target_level > level:
            problems.append(f"{module}:{line} imports {target}, a layer above it ({target_level} > {level})")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vae_lib"):
            private = [alias.name for alias in node.names if alias.name.startswith("_")]
            if private:
                names = ", ".join(private)
                problems.append(f"{module}:{node.lineno} imports the private {names} of {node.module}")
    return problems


def all_modules() -> list[tuple[str, Path]]:
    return sorted((module_name(path), path) for path in PACKAGE.rglob("*.py"))


# ------------------------------------------------------------------------------------------ the package
def test_every_module_has_a_layer():
    for module, _ in all_modules():
        layer_of(module)


@pytest.mark.parametrize("module, path", all_modules(), ids=[m for m, _ in all_modules()])
def test_no_module_imports_a_layer_above_it(module, path):
    assert upward_imports(path.read_text(), module, path.name == "__init__.py") == []


# ---------------------------------------------------------------------------------------- the checker
@pytest.mark.parametrize("module, source, expected", [
    ("vae_lib.nn.fake", "from vae_lib.viz import image_grid", "vae_lib.viz, a layer above"),
    ("vae_lib.models.fake", "def f():\n    from vae_lib.train import Trainer", "vae_lib.train, a layer above"),
    ("vae_lib.models.fake", "from vae_lib import evaluate", "vae_lib.evaluate, a layer above"),
    ("vae_lib.nn.fake", "import vae_lib.metrics", "vae_lib.metrics, a layer above"),
    ("vae_lib.data.fake", "from vae_lib.models.cvae import CVAE", "vae_lib.models.cvae, a layer above"),
    ("vae_lib.utils", "from vae_lib.runtime import pick_device", "the ground floor imports nothing"),
    ("vae_lib.viz.fake", "from vae_lib.viz.grids import _secret", "private _secret"),
    ("vae_lib.nn.fake", "from ..viz import grids", "vae_lib.viz.grids, a layer above"),
    ("vae_lib.nn.fake", "from . import blocks", None),
])
def test_the_checker_catches_an_upward_import(module, source, expected):
    problems = upward_imports(source, module)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and expected in problems[0], problems


def test_the_checker_allows_imports_down_and_sideways():
    assert upward_imports("from vae_lib.nn.blocks import ResBlock\nfrom vae_lib.utils import rescale",
                          "vae_lib.models.fake") == []
    assert upward_imports("from vae_lib.viz.grids import DPI\nfrom vae_lib.metrics import is_conditional",
                          "vae_lib.viz.fake") == []
    assert upward_imports("import torch\nfrom torch import nn", "vae_lib.utils") == []
    with pytest.raises(KeyError, match="no layer"):
        layer_of("vae_lib.newcomer")
