"""The course site's pieces without a browser (tests/test_site_browser.py opens it in one): objectives
for the index, widget outputs frozen into their saved pictures, pages that reference nothing online."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest

from vae_lib import coursesite

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _png(width: int = 24, height: int = 16) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def widget_notebook() -> dict:
    """A notebook with formulas in its objectives and one widget output (an HBox of an image and a slider)
    whose state is saved in the notebook's metadata, as Jupyter saves it."""
    models = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_image", "IPY_MODEL_slider"]}},
        "image": {"model_name": "ImageModel", "state": {"format": "png", "width": "96"},
                  "buffers": [{"path": ["value"], "encoding": "base64", "data": _png()}]},
        "slider": {"model_name": "FloatSliderModel", "state": {"description": "z[0]", "min": -3, "max": 3,
                                                                "step": 0.1, "value": 0.5}},
    }
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"widgets": {coursesite.WIDGET_STATE: {"version_major": 2, "version_minor": 0,
                                                            "state": models}}},
        "cells": [
            {"cell_type": "markdown", "id": "a", "metadata": {},
             "source": "# 99 · A widget\n\n**What you will learn**\n\n* that $e^{i\\pi} + 1 = 0$;\n* and\n\n"
                       "$$\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}.$$\n\nSomething else."},
            {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 1, "source": "explorer",
             "outputs": [{"output_type": "display_data", "metadata": {},
                          "data": {coursesite.WIDGET_VIEW: {"model_id": "box", "version_major": 2,
                                                            "version_minor": 0},
                                   "text/plain": "HBox(children=(Image(...), FloatSlider(...)))"}}]},
        ],
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_has_a_title_and_objectives(path):
    title, goals = coursesite.objectives(json.loads(path.read_text(encoding="utf-8")))
    assert title.startswith(path.stem[:2] + " ·")
    assert goals.startswith("**What you will learn**") and "\n* " in goals
    assert "What you will build" in goals


def test_objectives_stop_after_the_list_when_nothing_is_built():
    title, goals = coursesite.objectives(widget_notebook())
    assert title == "99 · A widget"
    assert goals.startswith("**What you will learn**") and "Something else" not in goals


def test_widget_outputs_become_their_saved_pictures():
    frozen = coursesite.freeze_widgets(widget_notebook())
    assert "widgets" not in frozen["metadata"]
    data = frozen["cells"][1]["outputs"][0]["data"]
    assert coursesite.WIDGET_VIEW not in data and "text/plain" in data
    assert '<img src="data:image/png;base64,' in data["text/html"]
    assert 'type="range"' in data["text/html"] and "z[0]" in data["text/html"]
    assert "run the notebook to use it" in data["text/html"]


def test_a_widget_without_saved_state_keeps_its_text():
    nb = widget_notebook()
    nb["metadata"].pop("widgets")
    data = coursesite.freeze_widgets(nb)["cells"][1]["outputs"][0]["data"]
    assert list(data) == ["text/plain"]


def test_the_saved_explorers_of_notebook_08_keep_their_images():
    nb = json.loads((ROOT / "notebooks" / "08_exploration.ipynb").read_text(encoding="utf-8"))
    if "widgets" not in nb["metadata"]:
        pytest.skip("notebook 08 was saved without its widget state")
    frozen = coursesite.freeze_widgets(nb)
    html = [o["data"].get("text/html", "") for c in frozen["cells"] for o in c.get("outputs", []) if "data" in o]
    assert sum("data:image/png;base64," in h and "vae-widget-snapshot" in h for h in html) >= 1


def test_site_pages_fetch_nothing_online(tmp_path):
    notebook = tmp_path / "99_widget.ipynb"
    notebook.write_text(json.dumps(widget_notebook()))
    assert coursesite.main(["--out", str(tmp_path / "html"), str(notebook)]) == 0
    site = tmp_path / "html"
    assert (site / "static" / "mathjax" / "MathJax.js").exists()
    for page in ("index.html", "99_widget.html"):
        text = (site / page).read_text(encoding="utf-8")
        assert re.findall(r'(?:src|href)\s*=\s*["\'](?:https?:)?//', text) == [], page
        assert 'src="static/mathjax/MathJax.js?config=' in text
        assert "require.js" not in text and "embed-amd" not in text
    assert 'href="99_widget.html"' in (site / "index.html").read_text(encoding="utf-8")
