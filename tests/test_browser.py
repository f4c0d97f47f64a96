"""A real browser: JupyterLab runs notebook 08's widget cells (smoke preset) and moving a slider changes the
CVAE's image.

Needs Debian's chromium at /usr/bin/chromium and the ``playwright`` Python package (its driver only:
``playwright install`` is never run, the browser is the system's). Skipped when either is missing.
JupyterLab is started on 127.0.0.1 on a free port with a random token, with every Jupyter/IPython
state folder inside the test's tmp dir, on a tmp copy of the notebook that keeps the cells the widgets
need (``WIDGET_CELLS``), stripped of their outputs (so everything the test sees comes from this run).
The whole notebook runs under nbval (``make test``); running it again here would cost a minute.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "08_exploration.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# JupyterLab user settings: render every cell (the default windowing leaves off-screen cells out of
# the page) and ask no questions about news.
LAB_SETTINGS = {
    "notebook-extension/tracker": {"windowingMode": "none"},
    "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# Reads the bytes behind an <img> (ipywidgets shows PNG bytes through a blob: URL) as base64.
IMAGE_BYTES_JS = """async (img) => {
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""
KERNEL_READY_JS = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await panel.sessionContext.session.kernel.info;
    return panel.context.path;
}"""

# On CI (.ci/run installs both) a missing browser is a failure, not a skip.
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing on CI: .ci/run should have installed chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
if os.environ.get("CI"):
    import playwright.sync_api as sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing "
                                   "(pip install playwright; its browsers are not needed)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Notebook 08's cells (by id) that the widgets need, in order: the parameters, runtime.start, the trained
# models, the test data (class names), the CVAE explorer, the StyleGAN-VAE explorer.
WIDGET_CELLS = ("71fe74db", "3618693c", "02e458d1", "afe854ea", "3003871d", "c09e5dc4")


def stripped_copy(source: Path, target: Path, keep: tuple[str, ...] = WIDGET_CELLS) -> None:
    """The notebook's cells ``keep`` (ids), without outputs, execution counts or saved widget state."""
    nb = nbformat.read(source, as_version=4)
    cells = {cell.get("id"): cell for cell in nb.cells}
    missing = [cell_id for cell_id in keep if cell_id not in cells]
    assert not missing, f"{source.name} has no cells {missing}: update WIDGET_CELLS"
    nb.cells = [cells[cell_id] for cell_id in keep]
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, target)


def lab_environment(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}    # the kernel draws inline, as for a student
    env.update(JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
               MPLCONFIGDIR=str(tmp / "matplotlib"), JUPYTER_PLATFORM_DIRS="1", VAE_COURSE_PRESET="smoke",
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    env.setdefault("VAE_RUNS_DIR", str(tmp / "runs"))      # `make test` points it at build/test-runs
    return env


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebook 08; yields (base url, token)."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    stripped_copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = state / "settings"
    for name, values in LAB_SETTINGS.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    log_path = state / "lab.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--expose-app-in-browser",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
             f"--LabServerApp.user_settings_dir={settings}", f"--LabServerApp.workspaces_dir={state / 'workspaces'}"],
            env=lab_environment(state), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
        yield url, token
    finally:
        try:        # shuts the kernel down too
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST"),
                                   timeout=5)
        except OSError:
            pass
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(state / "runtime", ignore_errors=True)


@pytest.mark.slow
def test_slider_of_the_cvae_explorer_changes_its_image(lab, tmp_path):
    url, token = lab
    screenshot = tmp_path / "notebook08-after-slider.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{NOTEBOOK.name}?reset&token={token}")     # a fresh workspace
            panel = page.locator(".jp-NotebookPanel:visible")
            panel.wait_for(timeout=60_000)
            assert page.evaluate(KERNEL_READY_JS) == NOTEBOOK.name
            page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(timeout=60_000)

            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            explorer = panel.locator(".vae-cvae-explorer")
            image = explorer.locator("img")
            try:    # the last cell's widget: every cell before it ran
                panel.locator(".vae-stylevae-explorer img").first.wait_for(timeout=75_000)
                image.wait_for(timeout=10_000)
            except sync_api.TimeoutError:
                page.screenshot(path=str(screenshot))
                errors = panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
                pytest.fail(f"Run All did not show both explorers (screenshot {screenshot}); last stderr:\n"
                            + "\n".join(errors.all_inner_texts())[-3000:])
            explorer.scroll_into_view_if_needed()
            before_src, before = image.get_attribute("src"), image.evaluate(IMAGE_BYTES_JS)
            assert before_src.startswith("blob:") and len(before) > 100
            readout = explorer.locator(".widget-readout").first
            value_before = readout.inner_text()

            handle = explorer.locator(".noUi-handle").first      # the z[0] slider
            handle.focus()
            for _ in range(10):
                page.keyboard.press("ArrowRight")               # 10 steps of 0.1
            assert readout.inner_text() != value_before

            deadline, after = time.monotonic() + 20, before
            while after == before and time.monotonic() < deadline:
                time.sleep(0.2)
                after = image.evaluate(IMAGE_BYTES_JS)
            page.screenshot(path=str(screenshot))
            print(f"screenshot: {screenshot}")
            assert after != before, "the image did not change after moving the z[0] slider"
            assert image.get_attribute("src") != before_src
        finally:
            browser.close()
