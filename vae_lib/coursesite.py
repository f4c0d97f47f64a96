"""The course as an offline web site: ``index.html`` plus one HTML page per notebook.

    python -m vae_lib.coursesite --out build/html notebooks/[0-9][0-9]_*.ipynb

* ``index.html`` links every notebook in order, with its objectives: the "What you will learn" (and
  "What you will build") part of the notebook's first Markdown cell.
* Each notebook page is nbconvert's ``lab`` HTML with nothing loaded from the network: MathJax 2 is
  copied from the ``jupyter-server-mathjax`` package into ``static/mathjax`` next to the pages and
  loaded by a relative URL (SVG-free HTML-CSS output with its STIX web fonts, as Jupyter's classic
  notebook configures it); require.js, the widget manager and mermaid, which nbconvert would fetch from
  a CDN, are left out (nothing on the pages needs them).
* Widgets cannot run without a kernel: each widget output becomes a static picture of its saved state
  (its images, sliders, labels, progress bars), drawn from the notebook's saved widget state.

Nothing is executed: ``make site`` builds from the committed notebooks (seconds), ``make course`` from
the notebooks it has just run.
"""
from __future__ import annotations

import argparse
import copy
import html
import json
import re
import shutil
import sys
from pathlib import Path

MATHJAX_DIR = "static/mathjax"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# MathJax 2, as jupyter-server-mathjax ships it (its combined config holds the TeX input and HTML-CSS output).
MATHJAX_HEAD = """<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  displayAlign: "center", messageStyle: "none"
});
</script>
<script src="{root}static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"></script>"""

SITE_CSS = """
.vae-nav {display: flex; gap: 1.5em; padding: 0.6em 1em; margin-bottom: 1em; border-bottom: 1px solid #ccc;
          font-family: var(--jp-ui-font-family, sans-serif); font-size: 14px;}
.vae-nav .vae-nav-index {font-weight: bold;}
.vae-widget-snapshot {border: 1px dashed #bbb; padding: 6px; display: inline-block;}
.vae-widget-box {display: flex; gap: 8px; align-items: flex-start;}
.vae-widget-note {font-size: 12px; color: #666; margin: 4px 0 0 0;}
.vae-widget-control {font-size: 13px; margin: 2px 0;}
"""

# The lab template, with what it would fetch from the network taken out and a navigation bar added.
PAGE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ resources.vae_site.mathjax }}
{%- endblock html_head_js_mathjax -%}
{%- block extra_css -%}
<style type="text/css">{{ resources.vae_site.css }}</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.vae_site.nav }}
{%- endblock body_header -%}
{%- block body_footer -%}
{{ resources.vae_site.nav }}
{{ super() }}
{%- endblock body_footer -%}
"""

INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<style>
body {{font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; max-width: 860px;
       margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222;}}
ol.vae-course {{padding-left: 0; list-style: none;}}
ol.vae-course > li {{margin: 1.2em 0; padding: 0.8em 1em; border: 1px solid #ddd; border-radius: 6px;}}
ol.vae-course h2 {{font-size: 1.15em; margin: 0 0 0.4em 0;}}
.vae-objectives p {{margin: 0.3em 0;}}
.vae-objectives ul {{margin: 0.2em 0 0.4em 0;}}
</style>
{mathjax}
</head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
<ol class="vae-course">
{items}
</ol>
</body>
</html>
"""


# ------------------------------------------------------------------------------------ index and objectives
def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def objectives(nb: dict) -> tuple[str, str]:
    """(title, objectives in Markdown) of a course notebook: the first ``# `` heading of its Markdown cells,
    and the paragraphs of the cell that says "What you will learn", from there up to the end of its
    "What you will build" paragraph (or of the bullet list, when there is none)."""
    title, found = None, ""
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        if title is None:
            heading = re.search(r"^# (.+)$", text, re.M)
            title = heading.group(1).strip() if heading else None
        start = text.find("**What you will learn**")
        if start >= 0:
            found = text[start:]
            break
    if not found:
        raise ValueError("no Markdown cell says **What you will learn**")
    paragraphs = re.split(r"\n\s*\n", found.strip())
    keep = paragraphs[:2]                           # the heading and its bullet list
    for paragraph in paragraphs[2:]:
        if paragraph.startswith("**What you will build**"):
            keep.append(paragraph)
            break
    return title or "", "\n\n".join(keep)


def markdown_to_html(text: str) -> str:
    from nbconvert.filters import markdown2html_mistune

    return markdown2html_mistune(text)


def index_page(entries: list[tuple[str, str, str]], title: str, intro: str = "", root: str = "") -> str:
    """The index: ``entries`` are (page file name, notebook title, objectives in Markdown), in order."""
    items = "\n".join(
        f'<li><h2><a href="{html.escape(page)}">{html.escape(name)}</a></h2>\n'
        f'<div class="vae-objectives">{markdown_to_html(goals)}</div></li>'
        for page, name, goals in entries)
    return INDEX_TEMPLATE.format(title=html.escape(title), intro=intro, items=items,
                                 mathjax=MATHJAX_HEAD.replace("{root}", root))


# ------------------------------------------------------------------------------------- widget snapshots
def _widget_html(model_id: str, models: dict, depth: int = 0) -> str:
    """Static HTML for the saved state of widget ``model_id`` and its children."""
    model = models.get(model_id)
    if model is None or depth > 20:
        return ""
    name, state = model.get("model_name", ""), model.get("state", {})
    description = html.escape(str(state.get("description") or ""))
    label = f"{description}: " if description else ""
    children = [c.removeprefix("IPY_MODEL_") for c in state.get("children", []) if isinstance(c, str)]
    if children:
        direction = "row" if name == "HBoxModel" else "column"
        inner = "".join(_widget_html(c, models, depth + 1) for c in children)
        return f'<div class="vae-widget-box" style="flex-direction: {direction}">{inner}</div>'
    if name == "ImageModel":
        data = next((b["data"] for b in model.get("buffers", [])
                     if b.get("path") == ["value"] and b.get("encoding") == "base64"), None)
        if not data:
            return ""
        size = "".join(f' {k}="{html.escape(str(state[k]))}"' for k in ("width", "height") if state.get(k))
        return f'<img src="data:image/{html.escape(state.get("format", "png"))};base64,{data}"{size} alt="widget image">'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="vae-widget-control">{label}{state.get("value", "")}</div>'
    if name == "LabelModel":
        return f'<div class="vae-widget-control">{html.escape(str(state.get("value", "")))}</div>'
    if name in ("FloatProgressModel", "IntProgressModel"):
        return (f'<div class="vae-widget-control">{label}<progress value="{state.get("value", 0)}" '
                f'max="{state.get("max", 100)}"></progress></div>')
    if name.endswith("SliderModel"):
        value = state.get("value", 0)
        try:        # the slider's own readout format, e.g. ".2f"
            readout = format(value, state.get("readout_format", "")) if isinstance(value, (int, float)) else value
        except (TypeError, ValueError):
            readout = value
        return (f'<div class="vae-widget-control">{label}<input type="range" disabled min="{state.get("min", 0)}" '
                f'max="{state.get("max", 100)}" step="{state.get("step", 1)}" value="{value}"> '
                f'{html.escape(str(readout))}</div>')
    if name in ("DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel"):
        labels, index = state.get("_options_labels", []), state.get("index")
        chosen = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
        return f'<div class="vae-widget-control">{label}<b>{html.escape(str(chosen))}</b></div>'
    if name == "ButtonModel":
        return f'<button disabled class="vae-widget-control">{description}</button>'
    if name in ("CheckboxModel", "ToggleButtonModel"):
        checked = " checked" if state.get("value") else ""
        return f'<div class="vae-widget-control"><input type="checkbox" disabled{checked}> {description}</div>'
    if "value" in state and not isinstance(state["value"], (dict, list)):
        return f'<div class="vae-widget-control">{label}{html.escape(str(state["value"]))}</div>'
    return ""


def _kinds(model_id: str, models: dict, depth: int = 0) -> list[str]:
    """The model names of widget ``model_id`` and of all its children."""
    model = models.get(model_id)
    if model is None or depth > 20:
        return []
    children = [c.removeprefix("IPY_MODEL_") for c in model.get("state", {}).get("children", []) if isinstance(c, str)]
    return [model.get("model_name", "")] + [k for c in children for k in _kinds(c, models, depth + 1)]


def freeze_widgets(nb: dict) -> dict:
    """A copy of ``nb`` whose widget outputs are static HTML of their saved state (the notebook's widget
    metadata dropped, so that no page loads a widget manager); outputs of widgets whose state was not
    saved keep their text fallback."""
    nb = copy.deepcopy(nb)
    state = nb.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {})
    models = state.get("state", {})
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).pop(WIDGET_VIEW, None)
            if view is None:
                continue
            snapshot = _widget_html(view.get("model_id", ""), models)
            if snapshot:
                interactive = any(kind.endswith(("SliderModel", "ButtonModel", "DropdownModel"))
                                  for kind in _kinds(view.get("model_id", ""), models))
                note = ('<p class="vae-widget-note">An interactive widget, as it was saved: run the notebook to '
                        'use it.</p>' if interactive else "")
                output["data"]["text/html"] = f'<div class="vae-widget-snapshot">{snapshot}{note}</div>'
    return nb


# ------------------------------------------------------------------------------------------ the pages
def mathjax_source() -> Path:
    try:
        import jupyter_server_mathjax
    except ImportError as error:
        raise RuntimeError("the course site needs MathJax from the jupyter-server-mathjax package: "
                           "pip install jupyter-server-mathjax (it is in vae_lib's [notebooks] extra)") from error
    return Path(jupyter_server_mathjax.__file__).parent / "static"


def copy_mathjax(out: Path) -> Path:
    target = out / MATHJAX_DIR
    if not (target / "MathJax.js").exists():
        shutil.copytree(mathjax_source(), target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("localization"))     # menu translations: not needed
    return target


def _nav(pages: list[tuple[str, str]], i: int) -> str:
    links = ['<a class="vae-nav-index" href="index.html">Course index</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1][0]}">&larr; {html.escape(pages[i - 1][1])}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1][0]}">{html.escape(pages[i + 1][1])} &rarr;</a>')
    return f'<nav class="vae-nav">{"".join(links)}</nav>'


def notebook_page(nb: dict, name: str, nav: str = "") -> str:
    """One notebook as an HTML page that needs no network (MathJax from ``static/mathjax``)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", raw_template=PAGE_TEMPLATE)
    node = nbformat.reads(json.dumps(freeze_widgets(nb)), as_version=4)    # joins the sources
    resources = {"metadata": {"name": name},
                 "vae_site": {"mathjax": MATHJAX_HEAD.replace("{root}", ""), "css": SITE_CSS, "nav": nav}}
    body, _ = exporter.from_notebook_node(node, resources=resources)
    return body


def build_site(notebooks: list[Path], out: Path, title: str | None = None) -> Path:
    """Write ``out/index.html``, one page per notebook (in the order given) and ``out/static/mathjax``."""
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out)
    loaded = [(Path(p), json.loads(Path(p).read_text(encoding="utf-8"))) for p in notebooks]
    entries = []
    for path, nb in loaded:
        name, goals = objectives(nb)
        entries.append((path.stem + ".html", name or path.stem, goals))
    pages = [(page, name) for page, name, _ in entries]
    for i, (path, nb) in enumerate(loaded):
        (out / pages[i][0]).write_text(notebook_page(nb, pages[i][1], _nav(pages, i)), encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_page(entries, title or _course_title(),
                                f"{len(entries)} notebooks, in order. Each page works offline, formulas included."),
                     encoding="utf-8")
    return index


def _course_title() -> str:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if readme.exists():
        heading = re.search(r"^# (.+)$", readme.read_text(encoding="utf-8"), re.M)
        if heading:
            return heading.group(1).strip()
    return "Variational autoencoders in PyTorch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vae_lib.coursesite", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="the notebooks, in course order")
    parser.add_argument("--out", type=Path, default=Path("build/html"))
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    index = build_site(sorted(args.notebooks, key=lambda p: p.name), args.out, args.title)
    print(f"course site: {index.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
