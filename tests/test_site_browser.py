"""The course site offline in a real browser: Debian's chromium opens the pages from file:// with every
other request blocked; the formulas must be typeset by the MathJax copy next to the pages and every
image must show, the saved picture of a widget included.

Builds a site of two small notebooks in tmp_path (notebook 01, and one made here with a widget), in
seconds. Uses the browser set-up of tests/test_browser.py (skipped, or failing on CI, in the same cases).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, sync_api
from test_coursesite import widget_notebook
from vae_lib import coursesite

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_01 = ROOT / "notebooks" / "01_resblocks.ipynb"
MATHJAX_DONE_JS = "() => new Promise(done => MathJax.Hub.Queue(() => done(true)))"
PAGE_STATE_JS = """() => {
    const typeset = document.querySelectorAll('.MathJax, .MathJax_Display').length;
    const sources = document.querySelectorAll('script[type^="math/tex"]').length;
    const errors = document.querySelectorAll('.MathJax_Error, .merror, [data-mjx-error]').length;
    const raw = [...document.querySelectorAll('.jp-RenderedMarkdown, .vae-objectives')]
        .map(e => e.innerText).filter(t => t.includes('$$') || /\\\\(frac|mathrm|mathcal|sum)\\b/.test(t));
    const images = [...document.querySelectorAll('img')].map(img => ({
        src: img.src.slice(0, 40), ok: img.complete && img.naturalWidth > 0}));
    const font = window.MathJax && MathJax.OutputJax['HTML-CSS'] ? MathJax.OutputJax['HTML-CSS'].fontInUse : null;
    return {typeset, sources, errors, raw, images, font};
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    widget = root / "notebooks" / "99_widget.ipynb"
    widget.parent.mkdir()
    widget.write_text(json.dumps(widget_notebook()))
    index = coursesite.build_site([NOTEBOOK_01, widget], root / "html")
    return index.parent


def test_the_site_renders_offline(site):
    blocked, failed, errors = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True)
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                          else (blocked.append(route.request.url), route.abort()))
            page = context.new_page()
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

            page.goto((site / "index.html").as_uri())
            links = page.locator("ol.vae-course a")
            assert links.count() == 2
            assert [links.nth(i).get_attribute("href") for i in range(2)] == ["01_resblocks.html", "99_widget.html"]
            assert "What you will learn" in page.inner_text("ol.vae-course")
            page.evaluate(MATHJAX_DONE_JS)
            state = page.evaluate(PAGE_STATE_JS)
            assert state["typeset"] > 0 and state["typeset"] >= state["sources"] > 0, state
            assert state["raw"] == [] and state["errors"] == 0, state

            for name in ("01_resblocks.html", "99_widget.html"):
                page.goto((site / name).as_uri())
                page.evaluate(MATHJAX_DONE_JS)
                state = page.evaluate(PAGE_STATE_JS)
                assert state["typeset"] > 0 and state["typeset"] >= state["sources"] > 0, (name, state)
                assert state["raw"] == [] and state["errors"] == 0, (name, state)
                assert state["font"] == "STIX-Web", (name, state)          # the web font, served from the build
                assert state["images"] and all(image["ok"] for image in state["images"]), (name, state)
                assert page.locator(".vae-nav a", has_text="Course index").count() == 2
            assert page.locator(".vae-widget-snapshot img").count() == 1
            assert page.locator(".vae-widget-snapshot input[type=range]").count() == 1
            page.screenshot(path=str(site / "widget-page.png"))
        finally:
            browser.close()
    assert blocked == [], f"pages asked the network for {blocked}"
    # MathJax 2 probes font loading with a blank font at about:blank: nothing is fetched, and nothing is missed.
    failed = [url for url in failed if url != "about:blank"]
    errors = [e for e in errors if "about:blank" not in e and e != "Failed to load resource: net::ERR_FAILED"]
    assert failed == [] and errors == [], (failed, errors)
