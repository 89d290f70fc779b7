"""Real-browser test: JupyterLab + Debian's chromium (driven by Playwright) run notebooks/quickstart.ipynb.

The test uses the session's JupyterLab (the ``jupyterlab_dir`` fixture of tests/conftest.py, shared by the three
real-browser test files: one server start instead of three) on 127.0.0.1 (free port, random token, every
Jupyter/IPython dir in tmp, the notebook copied into a folder of its own under a temp root so no output lands in the
repo), opens the notebook in headless chromium and runs all cells. It checks in the DOM that:

* the render cell shows the image DURING the render: while Run All is still running, its output <img> shows at
  least two different previews (different pixels), as Disco's "Diffuse!" cell did;
* the panel rendered, with the tabs of the notebook's mode (as the panel's model has them), each showing fields;
* at 1024 px and 1600 px wide no tab title is clipped and no button's text is cut ("..." or wider than the
  button);
* a render started with the panel's own Render button puts the run's last frame (its pixels) into the preview.

Screenshots (full page and the panel, per width and per tab) go to ``$DISCOLIB_SCREENSHOT_DIR`` when set, else
to pytest's tmp_path.

Skips, saying why, when /usr/bin/chromium (``.ci/install-browser.sh`` installs it), Playwright or JupyterLab
is missing. Playwright's own browser download is never used.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from discolib.config.settings import Settings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # we may run as root in CI containers, where chromium's sandbox refuses to start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
#: Two frames: the first (24 steps, a preview every second step) is what the live-preview check watches; each
#: further frame only added render time, twice (Run All and the panel's Render).
MAX_FRAMES = 2
PRESET = "tiny-latent"
#: Slow enough that the render cell is seen changing in the browser: more steps, a bigger image, a preview every
#: second step (the tiny model is fast; a 4-step 64x64 render ends before the browser draws twice).
OVERRIDES = {"image.steps": 24, "image.width": 192, "image.height": 192, "run.display_rate": 2}
#: The panel at these viewport widths: the narrow one wraps its columns, the wide one puts them side by side.
WIDTHS = (1024, 1600)
SERVER_START_TIMEOUT_S = 90
KERNEL_READY_TIMEOUT_MS = 90_000
RUN_ALL_TIMEOUT_MS = 240_000
RENDER_TIMEOUT_MS = 180_000


#: Counts, in ``window.__widgetStatesSeen``, the kernel's answers to the widget manager's question "which widgets do
#: you have?". When a notebook opens, JupyterLab's widget manager asks the new kernel: first on ipywidgets' control
#: comm (answered by ``update_states``); a kernel that has not imported ipywidgets yet closes that comm, and the
#: manager asks again with a ``comm_info_request``. A Run All started before the answer races it: the kernel answers
#: after running the cells, the manager creates again models the cells already made, and an output shows "Error
#: displaying widget: model not found" (page error "widget model not found"; jupyter-widgets/ipywidgets#3549).
#: :func:`wait_kernel_idle` waits for the answer. Kernel messages are text or, in JupyterLab's v1 websocket
#: protocol, binary frames holding JSON text.
_WATCH_WIDGET_RESTORE = """
(() => {
  window.__widgetStatesSeen = 0;
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  class Watched extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const data = event.data;
        const text = typeof data === 'string' ? data : data instanceof ArrayBuffer ? decoder.decode(data) : '';
        if (text.includes('update_states') || text.includes('comm_info_reply')) window.__widgetStatesSeen += 1;
      });
    }
  }
  window.WebSocket = Watched;
})();
"""


def open_chromium(pw: Any, tmp_path: Path, viewport: dict[str, int], *, args: tuple[str, ...] = (), **options: Any
                  ) -> tuple[Any, Any, list[str]]:
    """Headless chromium with a fresh profile under ``tmp_path`` (no state from earlier runs): its context, its first
    page, and the list the page's uncaught errors are appended to. ``args`` are added to :data:`CHROMIUM_ARGS`;
    ``options`` go to Playwright's ``launch_persistent_context``."""
    context = pw.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
        args=[*CHROMIUM_ARGS, *args], viewport=viewport, **options,
    )
    context.add_init_script(_WATCH_WIDGET_RESTORE)
    page = context.pages[0] if context.pages else context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def _require_browser_stack() -> None:
    """Skip (with the reason) unless chromium, Playwright and JupyterLab are all there."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (Debian's chromium; .ci/install-browser.sh installs it)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install jupyterlab)")
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")


# --------------------------------------------------------------------------------------------- JupyterLab
@dataclass
class LabServer:
    """A running JupyterLab: its base URL (``http://127.0.0.1:PORT``), token, process and log file."""

    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def shutdown_kernels(self) -> None:
        """Delete every session and kernel (what a test's notebooks started): the next test on this server starts
        with none running."""
        for kind in ("sessions", "kernels"):
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                req = urllib.request.Request(f"{self.url}/api/{kind}", headers={"Authorization": f"token {self.token}"})
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 (a fixed http://127.0.0.1 URL)
                    items = json.loads(resp.read())
                for item in items:
                    req = urllib.request.Request(
                        f"{self.url}/api/{kind}/{item['id']}", method="DELETE",
                        headers={"Authorization": f"token {self.token}"},
                    )
                    with contextlib.suppress(OSError, urllib.error.URLError):
                        urllib.request.urlopen(req, timeout=30).close()  # noqa: S310

    def notebook_url(self, folder: Path, name: str) -> str:
        """The URL that opens ``folder/name`` (``folder`` directly under the served root) in a workspace of its own:
        a fresh workspace restores no notebook an earlier test left open on this server."""
        return f"{self.url}/lab/workspaces/{folder.name}/tree/{folder.name}/{name}?token={self.token}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _isolated_env(base: Path) -> dict[str, str]:
    """Environment for the server and its kernels: Jupyter/IPython state in ``base``, the offline tiny preset."""
    env = dict(os.environ)
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "IPYTHONDIR": base / "ipython",
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    # The user-level kernelspec shadows any other "python3": the kernel is this interpreter (the venv's).
    spec_dir = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    # News/update toasts would cover the panel in the screenshot and try to reach the network.
    labconfig = dirs["JUPYTER_CONFIG_DIR"] / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    disabled = {"@jupyterlab/apputils-extension:announcements": True}
    (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
    env.update(
        # The notebook reads these in place of its parameters: tiny offline models, a short run, outputs in tmp.
        DISCOLIB_PRESET=PRESET,
        DISCOLIB_MAX_FRAMES=str(MAX_FRAMES),
        DISCOLIB_OUTPUT_ROOT=str(base / "runs"),
        DISCOLIB_OVERRIDES=json.dumps(OVERRIDES),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    return env


def _get(url: str, token: str, timeout: float = 5.0) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (a fixed http://127.0.0.1 URL)
        return int(resp.status)


def _kill_tree(proc: subprocess.Popen[bytes], token: str, url: str) -> None:
    """Stop JupyterLab and every process it started (kernels run in their own sessions, so not by group)."""
    import psutil  # a dependency of ipykernel

    children: list[Any] = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(proc.pid).children(recursive=True)
    if proc.poll() is None:
        with contextlib.suppress(OSError, urllib.error.URLError):  # graceful: shuts the kernels down too
            req = urllib.request.Request(
                f"{url}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(req, timeout=5).close()  # noqa: S310
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    for child in children:  # anything the shutdown left behind (a hung kernel)
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=10)


@contextlib.contextmanager
def jupyterlab(root: Path, state: Path) -> Iterator[LabServer]:
    """Run JupyterLab serving ``root`` on 127.0.0.1 until the block ends; always stops it and its kernels."""
    port = _free_port()
    token = secrets.token_hex(16)
    env = _isolated_env(state)
    log = state / "jupyterlab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands and read cell state
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.open_browser=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root; the server is on 127.0.0.1 with a token
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)  # noqa: S603
    server = LabServer(url=url, token=token, proc=proc, log=log)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if _get(f"{url}/api/status", token) == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _kill_tree(proc, token, url)


# --------------------------------------------------------------------------------------------- browser
# Reads the open notebook's state through the exposed JupyterLab app (robust against cell virtualisation).
_NOTEBOOK_STATE_JS = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.content || !w.sessionContext) return null;
  const ctx = w.sessionContext;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of code) {
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'));
    }
  }
  return {
    ready: ctx.isReady,
    kernel: ctx.session && ctx.session.kernel ? ctx.session.kernel.status : 'none',
    kernelName: ctx.session && ctx.session.kernel ? ctx.session.kernel.name : null,
    counts: code.map(c => c.model.executionCount),
    errors: errors,
  };
}"""

_STRIP_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# The <img> sources in the outputs of the code cell whose source contains `needle` (the cell's node is read even when
# JupyterLab's windowing has detached it from the document).
_CELL_IMAGES_JS = """needle => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets.find(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(needle));
  if (!cell) return null;
  return Array.from(cell.node.querySelectorAll('.jp-OutputArea-output img')).map(i => i.getAttribute('src') || '');
}"""

# Clipped text in the panel: every tab label and every visible button whose text is wider than its box or ends
# with an ellipsis (ipywidgets cuts a squeezed button's text with "...").
_CLIPPED_JS = """panel => {
  const out = [];
  const visible = e => e.offsetParent !== null && e.getClientRects().length > 0;
  for (const t of panel.querySelectorAll('.lm-TabBar-tab')) {
    if (!visible(t)) continue;
    const label = t.querySelector('.lm-TabBar-tabLabel') || t;
    if (label.scrollWidth > label.clientWidth + 1 || t.scrollWidth > t.clientWidth + 1)
      out.push('tab ' + JSON.stringify(label.textContent) + ': ' + label.scrollWidth + ' > ' + label.clientWidth);
  }
  for (const b of panel.querySelectorAll('button')) {
    if (!visible(b) || b.closest('.lm-TabBar')) continue;
    const text = (b.textContent || '').trim();
    if (b.scrollWidth > b.clientWidth + 1 || /(\\.\\.\\.|\u2026)$/.test(text))
      out.push('button ' + JSON.stringify(text) + ': ' + b.scrollWidth + ' > ' + b.clientWidth);
  }
  return out;
}"""


def _notebook_state(page: Any) -> dict[str, Any]:
    state = page.evaluate(_NOTEBOOK_STATE_JS)
    assert state is not None, "the notebook panel is not the current JupyterLab widget"
    return state


def _image_info(img: Any) -> dict[str, Any]:
    """src and decoded size of an <img>: an ipywidgets Image always gets a blob: URL, even for no bytes."""
    return img.evaluate("e => ({src: e.src, complete: e.complete, w: e.naturalWidth, h: e.naturalHeight})")


def _fetch_image_bytes(page: Any, img: Any) -> bytes:
    """The bytes behind an <img>'s blob:/data: URL, read inside the page."""
    b64 = page.evaluate(
        "async e => { const b = await (await fetch(e.src)).blob();"
        " return await new Promise(r => { const f = new FileReader();"
        " f.onload = () => r(f.result.split(',')[1]); f.readAsDataURL(b); }); }",
        img.element_handle(),
    )
    return base64.b64decode(b64)


def _decode_data_url(src: str) -> np.ndarray:
    """(H, W, 3) pixels of a ``data:image/png;base64,...`` URL."""
    assert src.startswith("data:image/png;base64,"), src[:60]
    return _decode_png(base64.b64decode(src.split(",", 1)[1]))


def _expected_tabs() -> list[str]:
    """The tabs the panel shows for the notebook's settings (the quickstart's preset and 3D, as the kernel has
    them): read from a SettingsPanel made here, so the browser must show what the panel's model holds."""
    from discolib_widgets.notebook import start_settings
    from discolib_widgets.panel import SettingsPanel

    settings: Settings = start_settings(PRESET, "3D", "", "runs")
    for name, value in OVERRIDES.items():
        settings.set(name, value)
    return list(SettingsPanel(settings).tabs.titles)


def _decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PNG."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _shot_dir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _save_screenshots(page: Any, panel: Any, folder: Path, stem: str) -> list[Path]:
    _shot_dir(folder)
    paths = [folder / f"{stem}_page.png", folder / f"{stem}_panel.png"]
    page.screenshot(path=str(paths[0]), full_page=True)
    if panel is not None and panel.count():
        panel.first.screenshot(path=str(paths[1]))
    return [p for p in paths if p.exists()]


def wait_kernel_idle(page: Any) -> None:
    """Wait until the notebook open in JupyterLab has a started kernel that is idle, and its widget manager has the
    kernel's widget states (a page from :func:`open_chromium`; see :data:`_WATCH_WIDGET_RESTORE`)."""
    page.wait_for_function(
        "() => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;"
        " return !!(w && w.sessionContext && w.sessionContext.isReady"
        " && w.sessionContext.session && w.sessionContext.session.kernel"
        " && w.sessionContext.session.kernel.status === 'idle' && window.__widgetStatesSeen > 0); }",
        timeout=KERNEL_READY_TIMEOUT_MS,
    )
    # The manager takes in the answer (no widgets yet) asynchronously and sends nothing when done: a moment for that.
    page.wait_for_timeout(500)


def start_run_all(page: Any) -> None:
    """Start Run All through JupyterLab's own command; ``window.__runAll`` is ``'running'`` until its promise
    settles (the last cell has run), then ``'ok'`` (or what went wrong)."""
    page.evaluate(
        "() => { window.__runAll = 'running';"
        " window.jupyterapp.commands.execute('notebook:run-all-cells').then("
        " r => { window.__runAll = r === false ? 'failed' : 'ok'; },"
        " e => { window.__runAll = 'error: ' + e; }); }"
    )


def finish_run_all(page: Any, timeout_ms: int) -> dict[str, Any]:
    """Wait for the Run All :func:`start_run_all` started and for the kernel to be idle again; the notebook's state
    (:func:`_notebook_state`). Fails, with their tracebacks, when cells raised, and when a cell was left unrun."""
    page.wait_for_function("() => window.__runAll !== 'running'", timeout=timeout_ms)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=timeout_ms,
    )
    state = _notebook_state(page)
    errors = [_STRIP_ANSI.sub("", e) for e in state["errors"]]
    assert not errors, "notebook cells raised:\n" + "\n\n".join(errors)
    assert page.evaluate("() => window.__runAll") == "ok"
    assert all(isinstance(n, int) for n in state["counts"]), f"cells left unrun: {state['counts']}"
    return state


def run_all_cells(page: Any, timeout_ms: int) -> dict[str, Any]:
    """Run All in the notebook open in JupyterLab and :func:`finish_run_all`."""
    start_run_all(page)
    return finish_run_all(page, timeout_ms)


@pytest.mark.slow
def test_quickstart_notebook_in_jupyterlab(tmp_path: Path, jupyterlab_dir: tuple[LabServer, Path]) -> None:
    """Run quickstart.ipynb in JupyterLab in chromium: the render cell's live preview, the panel's tabs and widths,
    and a render from the panel's own button."""
    _require_browser_stack()
    from playwright.sync_api import expect, sync_playwright

    assert NOTEBOOK.is_file(), f"{NOTEBOOK} is missing"
    lab, root = jupyterlab_dir  # the session's JupyterLab (tests/conftest.py), this test's folder
    shutil.copy2(NOTEBOOK, root / NOTEBOOK.name)
    shots = Path(os.environ.get("DISCOLIB_SCREENSHOT_DIR") or tmp_path / "screenshots")

    with sync_playwright() as pw:
        context, page, browser_errors = open_chromium(pw, tmp_path, {"width": 1400, "height": 2200})
        panel = page.locator(".discolib-panel")
        try:
            page.goto(lab.notebook_url(root, NOTEBOOK.name), wait_until="domcontentloaded")
            wait_kernel_idle(page)
            state = _notebook_state(page)
            assert state["kernelName"] == "python3", state

            # Run All through JupyterLab's own command; its promise settles when the last cell has run. While it
            # runs, the render cell's images are sampled: the preview must change DURING the render.
            start_run_all(page)
            seen: list[str] = []  # distinct image sources of the render cell, in the order they appeared
            deadline = time.monotonic() + RUN_ALL_TIMEOUT_MS / 1000
            while page.evaluate("() => window.__runAll") == "running":
                assert time.monotonic() < deadline, f"Run All did not finish in {RUN_ALL_TIMEOUT_MS} ms"
                for src in page.evaluate(_CELL_IMAGES_JS, "render_here(") or []:
                    if src.startswith("data:image/png") and src not in seen:
                        seen.append(src)
                        if len(seen) == 2:
                            page.screenshot(path=str(_shot_dir(shots) / "quickstart_render_cell_running.png"))
                page.wait_for_timeout(150)
            state = finish_run_all(page, RUN_ALL_TIMEOUT_MS)

            # (a) The render cell showed the image as it rendered: two or more different previews before Run All
            # ended, with different pixels; and it keeps a final image and the video.
            assert len(seen) >= 2, f"the render cell showed {len(seen)} image(s) while rendering (expected >= 2)"
            first, last_seen = _decode_data_url(seen[0]), _decode_data_url(seen[-1])
            assert first.shape != last_seen.shape or (first != last_seen).any(), "the previews had the same pixels"
            final = page.evaluate(_CELL_IMAGES_JS, "render_here(")
            assert final and final[-1].startswith("data:image/png"), final
            render_cell_text = page.evaluate(
                "() => { const w = window.jupyterapp.shell.currentWidget;"
                " const c = w.content.widgets.find(c => c.model.sharedModel.getSource().includes('render_here('));"
                " return c.node.querySelector('.jp-Cell-outputWrapper').innerText; }"
            )
            assert f"done: {MAX_FRAMES} frames in" in render_cell_text, render_cell_text[-500:]
            assert page.evaluate(
                "() => !!window.jupyterapp.shell.currentWidget.content.widgets.find("
                "c => c.model.sharedModel.getSource().includes('render_here(')).node.querySelector('video')"
            ), "the render cell shows no video"

            # (b) The panel rendered in the browser (widget manager + model state), with its mode's tabs.
            expect(panel).to_have_count(1, timeout=30_000)
            labels = panel.locator(".lm-TabBar-tabLabel")
            tabs = _expected_tabs()
            expect(labels).to_have_text(tabs, timeout=30_000)
            expect(panel.get_by_text("settings valid")).to_be_visible()
            for title in tabs:  # each tab shows fields of its own
                labels.filter(has_text=re.compile(rf"^{re.escape(title)}$")).click()
                fields = panel.locator(".widget-tab .discolib-field").filter(visible=True)
                # (a tab's widgets render when it is first shown: seconds on a loaded 2-core machine, not 5)
                expect(fields.first).to_be_visible(timeout=30_000)
                panel.first.screenshot(path=str(_shot_dir(shots) / f"quickstart_panel_tab_{title.replace(' ', '_')}.png"))
            labels.first.click()

            # (c) No clipped tab title and no cut button at either width, on any tab.
            clipped: list[str] = []
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 2200})
                page.wait_for_timeout(500)  # the layout (and its container queries) settles
                for title in tabs:
                    labels.filter(has_text=re.compile(rf"^{re.escape(title)}$")).click()
                    page.wait_for_timeout(100)
                    clipped += [f"{width}px, tab {title}: {c}" for c in panel.first.evaluate(_CLIPPED_JS)]
                labels.first.click()
                _save_screenshots(page, panel, shots, f"quickstart_{width}px")
            assert not clipped, "clipped text in the panel:\n" + "\n".join(clipped)
            page.set_viewport_size({"width": 1400, "height": 2200})

            # (d) A render started with the panel's own Render button shows the run's last frame in its preview.
            preview = panel.locator(".discolib-side img.widget-image")
            render_button = panel.locator("button", has_text=re.compile(r"^\s*Render\s*$"))
            expect(render_button).to_have_count(1)
            expect(render_button).to_be_enabled()
            render_button.click()
            done = panel.get_by_text(re.compile(r"^done: \d+ frame\(s\) in "))
            expect(done).to_be_visible(timeout=RENDER_TIMEOUT_MS)
            expect(render_button).to_be_enabled()
            shown_img = preview.filter(visible=True).first
            page.wait_for_function(
                "e => e.complete && e.naturalWidth > 0", arg=shown_img.element_handle(), timeout=30_000
            )
            _save_screenshots(page, panel, shots, "quickstart")
            error_text = panel.locator(".widget-html").filter(has_text="Error").all_inner_texts()
            assert not error_text, f"the panel shows an error: {error_text}"
            assert _image_info(shown_img)["src"].startswith(("blob:", "data:"))
            run_dir = root / done.inner_text().split(" in ", 1)[1].strip()
            frame_files = sorted((run_dir / "frames").glob("*.png"))
            assert len(frame_files) == MAX_FRAMES, (run_dir, frame_files)
            shown = _decode_png(_fetch_image_bytes(page, shown_img))
            last = _decode_png(frame_files[-1].read_bytes())
            assert shown.shape == last.shape and (shown == last).all(), "the preview is not the last frame"
            assert done.inner_text().startswith(f"done: {MAX_FRAMES} frame(s)")
            assert (shots / "quickstart_panel.png").stat().st_size > 10_000
        except Exception:
            with contextlib.suppress(Exception):
                _save_screenshots(page, panel, shots, "quickstart_failure")
            print(f"JupyterLab log tail:\n{lab.log_tail()}\nbrowser errors: {browser_errors}")
            raise
        finally:
            context.close()
