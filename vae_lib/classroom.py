"""Teacher's and student's notebooks, with nbgrader's markup.

The notebooks in ``notebooks/`` are the teacher's: each exercise has one code cell tagged ``solution``
whose nbgrader metadata (``"nbgrader": {"solution": true, "grade_id": NAME, ...}``) names the exercise,
and whose reference answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, so that the
notebook runs, and passes its checks, as it is (nbval runs it so).

One place for each thing: the reference answers live in ``vae_lib/exercises/*.py`` (``solution_*``,
registered with their check by ``@exercise``). ``sync`` writes each one into its solution cell, renamed
to what the student writes, with the imports it needs; a test fails when a notebook's copy differs
from what ``sync`` would write, so the two cannot drift. ``student`` writes the student's notebooks:
every solution region replaced by ``raise NotImplementedError("NAME: your code here")`` at the
region's indentation (nbgrader's own replacement), every output and saved widget state cleared.

    python -m vae_lib.classroom sync [NOTEBOOK ...] [--check]   # fill the solution cells from vae_lib
    python -m vae_lib.classroom student [--out build/student] [NOTEBOOK ...]

nbgrader itself is not needed (nor installed): it reads the same markup and metadata, should a teacher
want its assignment workflow (``nbgrader generate_assignment`` does what ``student`` does).
"""
from __future__ import annotations

import argparse
import ast
import copy
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

from vae_lib.exercises import Exercise, all_exercises

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SOLUTION_TAG = "solution"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def stub(name: str) -> str:
    """The line that replaces a solution region in the student's notebook."""
    return f'raise NotImplementedError("{name}: your code here")'


def nbgrader_metadata(name: str) -> dict:
    """nbgrader's cell metadata (schema 3) of an autograded answer cell for exercise ``name``."""
    return {"grade": False, "grade_id": name, "locked": False, "schema_version": 3, "solution": True,
            "task": False}


# ------------------------------------------------------------------------------ reference -> cell text
def _header_end(node: ast.FunctionDef) -> int:
    """The last line of a def's signature (before its body, comments or docstring included)."""
    parts = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, *node.args.defaults,
             *node.args.kw_defaults, node.args.vararg, node.args.kwarg, node.returns]
    return max([node.lineno] + [p.end_lineno for p in parts if p is not None])


def _regions(node: ast.AST) -> list[tuple[int, int]]:
    """1-based (first, last) lines of the solution regions of a def (its whole body) or a class (each
    method's whole body)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [(_header_end(node) + 1, node.end_lineno)]
    if isinstance(node, ast.ClassDef):
        return [region for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                for region in _regions(item)]
    raise TypeError(f"a reference answer must be a function or a class, not {type(node).__name__}")


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _imports(tree: ast.Module, used: set[str]) -> list[str]:
    """The module's top-level imports that bind a name in ``used``, one statement per binding."""
    lines = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound in used:
                    lines.append(f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__" and not node.level:
            for alias in node.names:
                if (alias.asname or alias.name) in used:
                    lines.append(f"from {node.module} import {alias.name}"
                                 + (f" as {alias.asname}" if alias.asname else ""))
    return lines


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def solution_source(exercise: Exercise, exercises: dict[str, Exercise] | None = None) -> str:
    """The teacher's solution cell of ``exercise``: the imports its reference uses, then the reference
    (renamed ``reference -> name``, and so every other reference of its module it calls), each region
    between BEGIN / END SOLUTION markers at the indentation of its first line."""
    exercises = exercises if exercises is not None else all_exercises()
    source = inspect.getsource(importlib.import_module(exercise.module))
    tree = ast.parse(source)
    node = next((n for n in tree.body if getattr(n, "name", None) == exercise.reference), None)
    if node is None:
        raise LookupError(f"{exercise.module} has no top-level {exercise.reference}")
    renames = {e.reference: e.name for e in exercises.values() if e.module == exercise.module}
    used = _names_used(node)
    helpers = sorted((used & _top_level_names(tree)) - set(renames))
    if helpers:
        raise ValueError(f"{exercise.module}.{exercise.reference} uses {', '.join(helpers)} of its module, which "
                         "a notebook does not have: a reference answer must stand on its own")
    lines = source.splitlines()
    first = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
    out = lines[first - 1:node.end_lineno]
    for start, end in reversed(_regions(node)):
        body = lines[start - 1:end]
        indent = re.match(r"\s*", next(line for line in body if line.strip())).group(0)
        out[start - first:end - first + 1] = [indent + BEGIN, *body, indent + END]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and exercise.reference != exercise.name:
        # the signature's continuation lines were aligned after "def <reference>(": keep them aligned
        shift = len(exercise.reference) - len(exercise.name)
        for i in range(node.lineno - first + 1, _header_end(node) - first + 1):
            out[i] = out[i][shift:] if shift > 0 and out[i][:shift].isspace() else " " * -shift + out[i]
    code = "\n".join(out)
    for old, new in renames.items():
        code = re.sub(rf"\b{re.escape(old)}\b", new, code)
    imports = _imports(tree, used)
    return ("\n".join(imports) + "\n\n" if imports else "") + code


# ------------------------------------------------------------------------------------- notebooks
def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(nb: dict, path: Path) -> None:
    """The format of Jupyter's own writer (indent 1, UTF-8), so that an unchanged cell stays byte-identical."""
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def source_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def source_lines(text: str) -> list[str]:
    """A cell source as nbformat stores it: lines that keep their newline, the last one without."""
    return text.splitlines(keepends=True)


def solution_cells(nb: dict) -> list[tuple[int, dict]]:
    """(index, cell) of the code cells tagged ``solution``."""
    return [(i, c) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "code" and SOLUTION_TAG in c.get("metadata", {}).get("tags", [])]


def exercise_name(cell: dict) -> str:
    try:
        return cell["metadata"]["nbgrader"]["grade_id"]
    except KeyError:
        raise ValueError("a solution cell without nbgrader metadata (grade_id): run "
                         "`python -m vae_lib.classroom sync`, after adding the grade_id") from None


def sync_notebook(nb: dict, exercises: dict[str, Exercise] | None = None) -> list[int]:
    """Write each solution cell's reference (and nbgrader metadata) in place; return the changed cells."""
    exercises = exercises if exercises is not None else all_exercises()
    changed = []
    for index, cell in solution_cells(nb):
        name = exercise_name(cell)
        if name not in exercises:
            raise KeyError(f"cell {index}: no exercise {name!r} in vae_lib.exercises (known: {sorted(exercises)})")
        text = solution_source(exercises[name], exercises)
        metadata = {**nbgrader_metadata(name), **{k: v for k, v in cell["metadata"].get("nbgrader", {}).items()
                                                  if k not in nbgrader_metadata(name)}}
        if source_text(cell) != text or cell["metadata"].get("nbgrader") != metadata:
            cell["source"] = source_lines(text)
            cell["metadata"]["nbgrader"] = metadata
            changed.append(index)
    return changed


def strip_solutions(text: str, name: str) -> str:
    """Replace every BEGIN / END SOLUTION region of ``text`` by the stub, at the BEGIN line's indentation;
    a text without markers becomes the stub alone (nbgrader's rule)."""
    lines, out, inside = text.splitlines(), [], False
    if not any(line.strip() in (BEGIN, END) for line in lines):
        return stub(name)
    for number, line in enumerate(lines, start=1):
        if line.strip() == BEGIN:
            if inside:
                raise ValueError(f"{name}: line {number} opens a solution region inside another")
            inside = True
            out.append(line[:len(line) - len(line.lstrip())] + stub(name))
        elif line.strip() == END:
            if not inside:
                raise ValueError(f"{name}: line {number} closes a solution region that was never opened")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{name}: a solution region is never closed ({END})")
    return "\n".join(out)


def student_notebook(nb: dict) -> dict:
    """The student's copy of a teacher's notebook: solution regions stubbed, solution cells shown, every
    output, execution count and saved widget state cleared."""
    nb = copy.deepcopy(nb)
    nb["metadata"].pop("widgets", None)
    for index, cell in solution_cells(nb):
        cell["source"] = source_lines(strip_solutions(source_text(cell), exercise_name(cell)))
        jupyter = cell["metadata"].get("jupyter", {})
        jupyter.pop("source_hidden", None)
        if not jupyter:
            cell["metadata"].pop("jupyter", None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"].pop("execution", None)
        if BEGIN in source_text(cell) or END in source_text(cell):
            raise ValueError(f"solution markup left in a cell not tagged {SOLUTION_TAG!r}: "
                             f"{source_text(cell)[:80]!r}")
    return nb


def build_student(notebooks: list[Path], out: Path) -> list[Path]:
    """Write the student's copy of each notebook into ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out / Path(path).name
        write_notebook(student_notebook(read_notebook(path)), target)
        written.append(target)
    return written


def default_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.classroom", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="write the reference answers of vae_lib.exercises into the "
                                            "teacher's solution cells")
    sync.add_argument("notebooks", nargs="*", type=Path)
    sync.add_argument("--check", action="store_true", help="change nothing; exit 1 if a cell would change")
    student = commands.add_parser("student", help="write the student notebooks (solutions stubbed, no outputs)")
    student.add_argument("notebooks", nargs="*", type=Path)
    student.add_argument("--out", type=Path, default=Path("build/student"))
    args = parser.parse_args(argv)
    notebooks = args.notebooks or default_notebooks()
    if args.command == "student":
        for path in build_student(notebooks, args.out):
            print(f"wrote {path}")
        return 0
    exercises, stale = all_exercises(), []
    for path in notebooks:
        nb = read_notebook(path)
        changed = sync_notebook(nb, exercises)
        if changed:
            stale.append(f"{path}: cells {changed}")
            if not args.check:
                write_notebook(nb, path)
    for line in stale:
        print(("out of date: " if args.check else "updated: ") + line)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
