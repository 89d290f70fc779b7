"""Real-browser test of live mode: JupyterLab + Debian's chromium (Playwright) run notebooks/live.ipynb, as
tests/test_browser.py runs the quickstart (its helpers are reused, on the session's JupyterLab: tests/conftest.py).

The notebook is copied into the test's folder with papermill's parameters injected (``tiny-live``, ``autoplay_frames``
0: the panel waits for a person, outputs into the folder), run with Run All, and then flown as a person would: click
Start, wait for a frame, click the image (it takes the keys), hold W, then the right arrow. Checked in the DOM:

* the status readout's ``data-path`` (the sums of the recorded motion, CONTROL_AXES order) shows the camera moved
  forward (translation_z > 0) and turned right (rotation_3d_y > 0), and ``data-recorded`` counts recorded frames;
* the shown frame changed: a later ``data-frame-index`` and different pixels behind the <img>;
* Stop stops the session (the status says so), and no cell or widget shows an error;
* the render cell, run again after the flight, renders every recorded frame into a run folder and the check cell
  below it says ``done True``.

Screenshots go to ``$DISCOLIB_SCREENSHOT_DIR`` when set, else to pytest's tmp_path. Skips, saying why, without
chromium, Playwright or JupyterLab.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_browser import (
    _STRIP_ANSI,
    LabServer,
    _decode_png,
    _fetch_image_bytes,
    _notebook_state,
    _require_browser_stack,
    _shot_dir,
    open_chromium,
    run_all_cells,
    wait_kernel_idle,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "live.ipynb"
PRESET = "tiny-live"
RUN_ALL_TIMEOUT_MS = 240_000
#: The first frame waits for the models (tiny, built in-process) on a shared 2-core machine.
FIRST_FRAME_TIMEOUT_MS = 180_000
#: A key is held at least this long (a person's short press), then until the recorded path shows it.
HOLD_MS = 1500
MOVE_TIMEOUT_MS = 120_000

# The shared JupyterLab (tests/conftest.py) starts every kernel with the quickstart test's DISCOLIB_* variables
# (another preset, frame cap and overrides), which the notebook's setup would prefer over its parameters: this copy's
# first cell drops them, so the injected parameters are what runs.
_ENV_CELL = (
    "import os\n"
    "from discolib_widgets.notebook import NOTEBOOK_ENV\n"
    "for name in NOTEBOOK_ENV:\n"
    "    os.environ.pop(name, None)"
)

# The status readout's data-* attributes (null until the panel shows one).
_STATUS_JS = """() => {
  const e = document.querySelector('.discolib-live-status');
  if (!e) return null;
  return {frames: Number(e.dataset.frames), recorded: Number(e.dataset.recorded),
          path: JSON.parse(e.dataset.path || '[]'), text: e.textContent};
}"""
# True once the recorded path's axis i has the sign s.
_MOVED_JS = """([i, s]) => {
  const e = document.querySelector('.discolib-live-status');
  if (!e || !e.dataset.path) return false;
  const p = JSON.parse(e.dataset.path);
  return p.length === 6 && p[i] * s > 0;
}"""

# Run the render cell and every cell below it (JupyterLab's "Run Selected Cell and All Below").
_RUN_FROM_RENDER_JS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  nb.activeCellIndex = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes('render_flight('));
  window.__below = 'running';
  window.jupyterapp.commands.execute('notebook:run-all-below').then(
    r => { window.__below = r === false ? 'failed' : 'ok'; }, e => { window.__below = 'error: ' + e; });
}"""
# The text of the outputs of the code cell whose source contains the argument.
_CELL_TEXT_JS = """needle => {
  const w = window.jupyterapp.shell.currentWidget;
  const c = w.content.widgets.find(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(needle));
  return c ? c.node.querySelector('.jp-Cell-outputWrapper').innerText : '';
}"""


def _write_notebook(path: Path, output_root: Path) -> None:
    """live.ipynb with papermill's parameters injected (as ``papermill -p``) and the environment cell first."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(
        load_notebook_node(str(NOTEBOOK)),
        {"preset": PRESET, "autoplay_frames": 0, "output_root": str(output_root)},
    )
    nb.cells.insert(0, nbformat.v4.new_code_cell(_ENV_CELL))
    nbformat.write(nb, str(path))


def _status(page: Any) -> dict[str, Any]:
    status = page.evaluate(_STATUS_JS)
    assert status is not None, "the panel shows no status readout (.discolib-live-status)"
    return status


def _hold(page: Any, key: str, axis: int, sign: float) -> None:
    """Hold ``key`` on the focused view for HOLD_MS, and on until the recorded path's ``axis`` has ``sign`` (a frame
    made with the key held was recorded and shown), then release it."""
    page.keyboard.down(key)
    try:
        page.wait_for_timeout(HOLD_MS)
        page.wait_for_function(_MOVED_JS, arg=[axis, sign], timeout=MOVE_TIMEOUT_MS)
    finally:
        page.keyboard.up(key)


@pytest.mark.slow
def test_live_notebook_in_jupyterlab(tmp_path: Path, jupyterlab_dir: tuple[LabServer, Path]) -> None:
    """Run live.ipynb in JupyterLab in chromium, start the session, fly with W and the right arrow on the image:
    the recorded path moved as pressed, the shown frame changed, Stop stops."""
    _require_browser_stack()
    pytest.importorskip("anywidget")
    pytest.importorskip("papermill")
    from playwright.sync_api import expect, sync_playwright

    from discolib.run.live import CONTROL_AXES

    lab, root = jupyterlab_dir
    _write_notebook(root / NOTEBOOK.name, root / "runs")
    shots = _shot_dir(Path(os.environ.get("DISCOLIB_SCREENSHOT_DIR") or tmp_path / "screenshots"))
    z, ry = CONTROL_AXES.index("translation_z"), CONTROL_AXES.index("rotation_3d_y")

    with sync_playwright() as pw:
        context, page, browser_errors = open_chromium(pw, tmp_path, {"width": 1400, "height": 1800})
        panel = page.locator(".jp-OutputArea-output").filter(has=page.locator(".discolib-live-frame"))
        try:
            page.goto(lab.notebook_url(root, NOTEBOOK.name), wait_until="domcontentloaded")
            wait_kernel_idle(page)
            run_all_cells(page, RUN_ALL_TIMEOUT_MS)

            # The panel, not started: nothing made or recorded yet.
            expect(panel).to_have_count(1, timeout=30_000)
            img = panel.locator("img.discolib-live-frame")
            before = _status(page)
            assert (before["frames"], before["recorded"], before["path"]) == (0, 0, [0.0] * 6), before

            panel.locator("button", has_text=re.compile(r"^\s*Start\s*$")).click()
            page.wait_for_function(
                "e => Number(e.getAttribute('data-frame-index')) >= 0 && e.complete && e.naturalWidth > 0",
                arg=img.element_handle(),
                timeout=FIRST_FRAME_TIMEOUT_MS,
            )
            first_index = int(img.get_attribute("data-frame-index"))
            first = _decode_png(_fetch_image_bytes(page, img))
            page.screenshot(path=str(shots / "live_started.png"))

            # Click the image: the view takes the keys. Then fly: forward, then turn right.
            img.click()
            assert page.evaluate(
                "() => !!document.activeElement && document.activeElement.classList.contains('discolib-live-view')"
            ), "the view did not take the focus"
            _hold(page, "w", z, +1.0)
            _hold(page, "ArrowRight", ry, +1.0)

            moved = _status(page)
            assert moved["path"][z] > 0 and moved["path"][ry] > 0, moved
            assert moved["recorded"] > 0 and moved["frames"] >= moved["recorded"], moved
            # The shown frame is a later one, with other pixels (the camera moved, the prompt stayed).
            page.wait_for_function(
                "([e, i]) => Number(e.getAttribute('data-frame-index')) > i && e.complete && e.naturalWidth > 0",
                arg=[img.element_handle(), first_index],
                timeout=MOVE_TIMEOUT_MS,
            )
            last_index = int(img.get_attribute("data-frame-index"))
            last = _decode_png(_fetch_image_bytes(page, img))
            assert last_index > first_index
            assert last.shape == first.shape and not np.array_equal(last, first), "the shown frame did not change"
            # The readout's key-to-frame latency is the browser's own: key event to the first frame drawn that shows it.
            expect(page.locator(".discolib-live-fps")).to_have_text(
                re.compile(r"[\d.]+ frames/s · \d+ ms key-to-frame"), timeout=MOVE_TIMEOUT_MS
            )
            page.screenshot(path=str(shots / "live_flying.png"))
            panel.screenshot(path=str(shots / "live_panel.png"))

            panel.locator("button", has_text=re.compile(r"^\s*Stop\s*$")).click()
            expect(page.locator(".discolib-live-status")).to_contain_text("stopped", timeout=60_000)
            stopped = _status(page)
            assert stopped["recorded"] >= moved["recorded"] and stopped["path"][z] >= moved["path"][z], stopped
            assert page.locator(".discolib-live-error").count() == 0, page.locator(".discolib-live-error").all_inner_texts()
            assert not _notebook_state(page)["errors"]
            assert not browser_errors, browser_errors
            assert (shots / "live_panel.png").stat().st_size > 1000

            # After flying, the render cell (and the check below it) run again, as a person would: the recorded
            # flight renders into a run folder of every recorded frame, and the check says "done True".
            page.evaluate(_RUN_FROM_RENDER_JS)
            page.wait_for_function("() => window.__below !== 'running'", timeout=RUN_ALL_TIMEOUT_MS)
            page.wait_for_function(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                timeout=RUN_ALL_TIMEOUT_MS,
            )
            errors = [_STRIP_ANSI.sub("", e) for e in _notebook_state(page)["errors"]]
            assert not errors, "the render cell raised:\n" + "\n\n".join(errors)
            assert page.evaluate("() => window.__below") == "ok"
            assert page.evaluate(_CELL_TEXT_JS, "print(live_summary(").strip() == "done True"
            (run_dir,) = sorted((root / "runs" / "live").iterdir())
            frames = sorted((run_dir / "frames").glob("*.png"))
            assert len(frames) == stopped["recorded"], (len(frames), stopped)
            assert f"the flight: {stopped['recorded']} frames" in page.evaluate(_CELL_TEXT_JS, "render_flight(")
            print(json.dumps({"first": first_index, "last": last_index, "status": stopped, "run": str(run_dir)}))
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shots / "live_failure.png"), full_page=True)
            print(f"JupyterLab log tail:\n{lab.log_tail()}\nbrowser errors: {browser_errors}")
            raise
        finally:
            context.close()
