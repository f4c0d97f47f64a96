"""The teacher's notebooks carry the reference answers in nbgrader's markup; the student build
(``vae_lib.classroom``) leaves none of them, and every check says "not done yet" on its stubs.

Nothing here executes a notebook: the solution cells and the stubs are run as plain Python.
"""
from __future__ import annotations

import re

import pytest

from vae_lib import classroom
from vae_lib.exercises import ExerciseError, all_exercises, exercise

EXERCISES = all_exercises()
NOTEBOOKS = classroom.default_notebooks()
TEACHER = {path.stem: classroom.read_notebook(path) for path in NOTEBOOKS}


def _check(name: str):
    import importlib

    ex = EXERCISES[name]
    return getattr(importlib.import_module(ex.module), ex.check)


def _solution_cells():
    return [(stem, index, classroom.exercise_name(cell), cell)
            for stem, nb in TEACHER.items() for index, cell in classroom.solution_cells(nb)]


def _region_lines(text: str) -> list[str]:
    lines, inside, out = text.splitlines(), False, []
    for line in lines:
        if line.strip() == classroom.BEGIN:
            inside = True
        elif line.strip() == classroom.END:
            inside = False
        elif inside and line.strip():
            out.append(line.strip())
    return out


# ------------------------------------------------------------------------------------ the teacher's notebooks
def test_every_exercise_has_one_solution_cell_in_the_notebooks():
    names = [name for _, _, name, _ in _solution_cells()]
    assert sorted(names) == sorted(EXERCISES), "each registered exercise needs exactly one solution cell"
    for stem, index, name, cell in _solution_cells():
        assert cell["metadata"]["nbgrader"] == classroom.nbgrader_metadata(name), (stem, index)
        assert "solution" in cell["metadata"]["tags"]
        assert cell["outputs"] == []


@pytest.mark.parametrize("stem, index, name, cell", _solution_cells(),
                         ids=[f"{s}-{n}" for s, _, n, _ in _solution_cells()])
def test_solution_cell_is_the_reference_of_vae_lib_written_out(stem, index, name, cell):
    """The single source: the cell is exactly what `python -m vae_lib.classroom sync` writes from vae_lib."""
    text = classroom.source_text(cell)
    assert classroom.BEGIN in text and classroom.END in text
    assert text == classroom.solution_source(EXERCISES[name], EXERCISES), (
        f"{stem} cell {index} differs from vae_lib.exercises' reference of {name}: "
        "run `python -m vae_lib.classroom sync` (after editing the reference there, not the notebook)")


def test_sync_check_finds_nothing_to_do(capsys):
    assert classroom.main(["sync", "--check", *map(str, NOTEBOOKS)]) == 0
    assert "out of date" not in capsys.readouterr().out


@pytest.mark.parametrize("stem", sorted(TEACHER))
def test_solution_cells_run_as_written_and_pass_their_checks(stem, capsys):
    """Each notebook's written-out answers, run in notebook order with only the imports their cells hold,
    pass the same checks as vae_lib's references."""
    namespace: dict = {}
    for _, _, name, cell in [c for c in _solution_cells() if c[0] == stem]:
        exec(compile(classroom.source_text(cell), f"<{stem}: {name}>", "exec"), namespace)
        assert _check(name)(namespace[name]) is True
        out = capsys.readouterr().out
        assert "\u2714" in out and "not done yet" not in out


# ------------------------------------------------------------------------------------ the student build
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert classroom.main(["student", "--out", str(out), *map(str, NOTEBOOKS)]) == 0
    return {path.stem: classroom.read_notebook(out / path.name) for path in NOTEBOOKS}


def test_student_notebooks_keep_every_cell_and_clear_the_outputs(student):
    for stem, nb in student.items():
        teacher = TEACHER[stem]
        assert [c["id"] for c in nb["cells"]] == [c["id"] for c in teacher["cells"]]
        assert "widgets" not in nb["metadata"]
        solution_ids = {c["id"] for _, c in classroom.solution_cells(teacher)}
        for cell, original in zip(nb["cells"], teacher["cells"]):
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
            if cell["id"] not in solution_ids:
                assert cell["source"] == original["source"]


def test_student_notebooks_hold_no_solution_code(student):
    for stem, nb in student.items():
        teacher = TEACHER[stem]
        solution_ids = {c["id"] for _, c in classroom.solution_cells(teacher)}
        # lines that the teacher's notebook also shows outside its solution regions (e.g. a skeleton) may stay
        public = {line.strip() for c in teacher["cells"] if c["id"] not in solution_ids
                  for line in classroom.source_text(c).splitlines()}
        student_lines = {line.strip() for c in nb["cells"] for line in classroom.source_text(c).splitlines()}
        for _, cell in classroom.solution_cells(teacher):
            name = classroom.exercise_name(cell)
            secret = set(_region_lines(classroom.source_text(cell))) - public
            assert secret, f"{stem}: {name} has no solution lines of its own"
            assert not secret & student_lines, f"{stem}: solution code of {name} left in the student notebook"
        for index, cell in classroom.solution_cells(nb):
            text = classroom.source_text(cell)
            name = classroom.exercise_name(cell)
            assert classroom.stub(name) in text, (stem, index)
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
            assert "source_hidden" not in cell["metadata"].get("jupyter", {})


def test_checks_say_not_done_yet_on_the_student_stubs(student, capsys):
    for stem, nb in student.items():
        for index, cell in classroom.solution_cells(nb):
            name = classroom.exercise_name(cell)
            namespace: dict = {}
            exec(compile(classroom.source_text(cell), f"<student {stem}: {name}>", "exec"), namespace)
            assert _check(name)(namespace[name]) is False, (stem, name)
            out = capsys.readouterr().out
            assert f"not done yet: {name}" in out, (stem, name, out)
            assert "\u2714" not in out


# --------------------------------------------------------------------------------------- the markup itself
def test_strip_solutions_keeps_the_indentation_and_what_is_outside():
    text = ("import torch\n\nclass A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n"
            "        ### END SOLUTION\n\n    def g(self):\n        ### BEGIN SOLUTION\n        return 2\n"
            "        ### END SOLUTION")
    assert classroom.strip_solutions(text, "A") == (
        'import torch\n\nclass A:\n    def f(self):\n        raise NotImplementedError("A: your code here")\n\n'
        '    def g(self):\n        raise NotImplementedError("A: your code here")')
    assert classroom.strip_solutions("x = 1", "x") == classroom.stub("x")     # no markers: the whole cell (nbgrader)


@pytest.mark.parametrize("text, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "never opened"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_strip_solutions_refuses_broken_markup(text, message):
    with pytest.raises(ValueError, match=message):
        classroom.strip_solutions(text, "x")


def test_solution_source_renames_and_brings_its_imports():
    text = classroom.solution_source(EXERCISES["negative_elbo"], EXERCISES)
    assert text.startswith("import torch\nimport torch.nn.functional as F\n\ndef negative_elbo(")
    assert "gaussian_kl(mu, logvar)" in text and "solution_" not in text
    assert re.search(r"^                  logvar: torch.Tensor\) -> torch.Tensor:$", text, re.M)   # still aligned


def test_a_reference_that_needs_a_helper_of_its_module_is_refused():
    from vae_lib.exercises import Exercise

    fake = Exercise("fmt", "vae_lib.exercises.elbo", "check_gaussian_kl", "check_gaussian_kl")  # uses _posterior_batch
    with pytest.raises(ValueError, match="stand on its own"):
        classroom.solution_source(fake, {"fmt": fake})


# ----------------------------------------------------------------------------- "not done yet" in the checks
def test_the_not_done_line_names_another_unfinished_exercise(capsys):
    @exercise("_demo", reference="none")
    def check_demo(fn):
        try:
            fn()
        except Exception as error:
            raise ExerciseError(f"_demo raised {error}") from error
        return True

    try:
        def calls_a_stub():
            raise NotImplementedError("gaussian_kl: your code here")

        assert check_demo(calls_a_stub) is False
        out = capsys.readouterr().out
        assert "not done yet: _demo (it raised 'gaussian_kl: your code here')" in out

        def wrong():
            raise ValueError("a real mistake")

        with pytest.raises(ExerciseError, match="a real mistake"):
            check_demo(wrong)
    finally:
        from vae_lib.exercises import EXERCISES as registry
        registry.pop("_demo", None)


# ----------------------------------------------------------------------------------------- the answer key
ANSWERED = ("00_setup_and_data", "01_resblocks", "02_cvae", "03_kl_warmup", "04_mapping_network", "05_adain_synthesis",
            "06_stylegan_vae", "07_perceptual_loss", "08_exploration")


@pytest.mark.parametrize("stem", ANSWERED)
def test_the_answer_key_answers_every_question(stem):
    questions = next(classroom.source_text(c) for c in TEACHER[stem]["cells"]
                     if c["cell_type"] == "markdown" and "Questions" in classroom.source_text(c))
    numbers = re.findall(r"^(\d+)\. ", questions, re.M) or re.findall(r"\((\d)\) ", questions)
    key = (classroom.NOTEBOOKS / "answers" / f"{stem}.md").read_text(encoding="utf-8")
    answered = re.findall(r"^### Question (\d+)", key, re.M)
    assert numbers and answered == numbers, (numbers, answered)
