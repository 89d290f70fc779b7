"""Real-browser test of the keyframe curve editor: JupyterLab + chromium, a key dragged with the mouse.

A small notebook (written into tmp_path) shows a :class:`~discolib_widgets.curve.CurveEditor`; the test drags a key
with the mouse and checks that the keyframe string changed both in the page and in the kernel (a cell prints
``editor.text``), then sets ``editor.text`` from a cell and checks that the keys in the page moved. JupyterLab
(the session's, tests/conftest.py) and the browser come from tests/test_browser.py's helpers. A second editor then shows that each editor clips its curve
with its own clipPath (not the first editor's), so its curve is drawn even while the first editor is hidden. Screenshots go to ``$DISCOLIB_SCREENSHOT_DIR`` or tmp_path.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import pytest
from test_browser import (
    _STRIP_ANSI,
    LabServer,
    _decode_png,
    _notebook_state,
    _require_browser_stack,
    _shot_dir,
    open_chromium,
    wait_kernel_idle,
)

START = "0: (1.0), 10: (1.5), 20: (1.0)"
TYPED = "0: (1.0), 5: (0.5), 25: (2.0)"
CELLS = [
    "from discolib_widgets.curve import CurveEditor\n"
    f"editor = CurveEditor({START!r}, setting='animation.zoom', max_frames=30)\n"
    "editor",
    "print('TEXT=' + editor.text)",
    f"editor.text = {TYPED!r}",
    "print('STATE=' + editor.interpolation + '|' + editor.text)",
    "editor2 = CurveEditor('0: (5), 29: (-5)', setting='animation.angle', max_frames=30, show_interpolation=False)\n"
    "editor2",
]
CELL_TIMEOUT_MS = 60_000

# Runs one code cell through JupyterLab's own command; resolves with the cell's text outputs.
_RUN_CELL_JS = """async (index) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  panel.content.activeCellIndex = index;
  const ok = await app.commands.execute('notebook:run-cell');
  const cell = panel.content.widgets[index];
  const out = [];
  for (const o of cell.model.outputs.toJSON()) {
    if (o.output_type === 'stream') out.push(Array.isArray(o.text) ? o.text.join('') : o.text);
    if (o.output_type === 'error') out.push('ERROR ' + o.ename + ': ' + o.evalue);
  }
  return {ok: ok !== false, text: out.join('')};
}"""


# Per editor in the page: the id its curve's clip-path names, whether that id resolves to a clipPath inside the same
# SVG (getElementById returns the first element with an id: a shared id resolves to the first editor's), the curve
# path's geometry, and whether the interpolation dropdown shows.
_CLIPS_JS = """() => [...document.querySelectorAll('.dc-curve')].map((root) => {
  const plot = root.querySelector('svg.dc-curve-svg');
  const line = root.querySelector('path.dc-curve-line');
  const ref = (line.getAttribute('clip-path') || '').match(/^url\\(#(.+)\\)$/);
  const target = ref ? document.getElementById(ref[1]) : null;
  const box = line.getBBox();
  return {
    id: ref ? ref[1] : null,
    own: !!target && target.tagName === 'clipPath' && plot.contains(target),
    width: box.width,
    height: box.height,
    dropdown: getComputedStyle(root.querySelector('.dc-curve-interp-label')).display,
  };
})"""


def _line_pixels(png: bytes) -> int:
    """Pixels of the curve's colour (JupyterLab's brand blue, #1976d2) in the middle 40% of a plot's screenshot
    (the key markers, also blue, sit at its ends)."""
    rgb = _decode_png(png).astype(int)
    w = rgb.shape[1]
    r, g, b = (rgb[:, int(w * 0.3) : int(w * 0.7), i] for i in range(3))
    return int(((r < 110) & (g > 70) & (g < 170) & (b > 160)).sum())


def _write_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, path)


def _run_cell(page: Any, index: int) -> str:
    result = page.evaluate(_RUN_CELL_JS, index)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
        timeout=CELL_TIMEOUT_MS,
    )
    assert result["ok"], f"cell {index} did not run: {result}"
    assert "ERROR" not in result["text"], _STRIP_ANSI.sub("", result["text"])
    return str(result["text"])


def _key_points(editor: Any) -> list[tuple[int, float | None]]:
    """(frame, value) of each key marker in the page, from its data attributes."""
    points = editor.locator("circle.dc-curve-key").evaluate_all(
        "cs => cs.map(c => [Number(c.dataset.frame), c.dataset.value === '' ? null : Number(c.dataset.value)])"
    )
    return [(int(f), v) for f, v in points]


@pytest.mark.slow
def test_curve_editor_drag_in_jupyterlab(tmp_path: Path, jupyterlab_dir: tuple[LabServer, Path]) -> None:
    """Drag a key with the mouse: the string changes in the page and in the kernel; a string set in Python moves keys."""
    _require_browser_stack()
    pytest.importorskip("anywidget")
    from playwright.sync_api import expect, sync_playwright

    lab, root = jupyterlab_dir  # the session's JupyterLab (tests/conftest.py), this test's folder
    _write_notebook(root / "curve.ipynb")
    shots = _shot_dir(Path(os.environ.get("DISCOLIB_SCREENSHOT_DIR") or tmp_path / "screenshots"))

    with sync_playwright() as pw:
        # HiDPI: the SVG must stay crisp
        context, page, browser_errors = open_chromium(pw, tmp_path, {"width": 1200, "height": 900}, device_scale_factor=2)
        console_errors: list[str] = []  # printed on failure (JupyterLab logs benign errors too, so not asserted)
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        editor = page.locator(".dc-curve")
        try:
            page.goto(lab.notebook_url(root, "curve.ipynb"), wait_until="domcontentloaded")
            wait_kernel_idle(page)
            assert _notebook_state(page)["kernelName"] == "python3"

            _run_cell(page, 0)
            expect(editor).to_have_count(1, timeout=30_000)
            keys = editor.locator("circle.dc-curve-key")
            expect(keys).to_have_count(3, timeout=30_000)
            text_box = editor.locator("input.dc-curve-text")
            expect(text_box).to_have_value(START)
            assert _key_points(editor) == [(0, 1.0), (10, 1.5), (20, 1.0)]
            width = editor.locator("svg.dc-curve-svg").bounding_box()
            assert width is not None and 300 <= width["width"] <= 641, width  # 100% of the cell, at most 640 px
            editor.screenshot(path=str(shots / "curve_editor_start.png"))

            # Drag the middle key right and up, in small steps as a hand would.
            box = keys.nth(1).bounding_box()
            assert box is not None
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            for step in range(1, 11):
                page.mouse.move(x + 6 * step, y - 4 * step)
                page.wait_for_timeout(30)
            page.mouse.up()
            expect(text_box).not_to_have_value(START, timeout=15_000)
            page.wait_for_timeout(500)  # the last message's echo
            shown = text_box.input_value()
            assert re.fullmatch(r"0: \(1\.0\), 1\d: \([0-9.]+\), 20: \(1\.0\)", shown), shown
            frame, value = _key_points(editor)[1]
            assert frame > 10 and value is not None and value > 1.5, (frame, value)
            assert f"{frame}: (" in shown
            label = editor.locator(".dc-curve-label").inner_text()
            editor.screenshot(path=str(shots / "curve_editor_dragged.png"))

            printed = _run_cell(page, 1)
            kernel_text = printed.strip().removeprefix("TEXT=")
            assert kernel_text != START
            assert kernel_text == shown, (kernel_text, shown)
            assert label == f"{frame}: {value:g}", label  # the dragged (selected) key's "frame: value"

            # A string set in Python moves the keys in the page.
            _run_cell(page, 2)
            expect(text_box).to_have_value(TYPED, timeout=15_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('circle.dc-curve-key')].map(c => c.dataset.frame).join() === '0,5,25'",
                timeout=15_000,
            )
            assert _key_points(editor) == [(0, 1.0), (5, 0.5), (25, 2.0)]
            editor.screenshot(path=str(shots / "curve_editor_typed.png"))

            # The dropdown changes the interpolation (and the drawn curve); Delete on a selected key removes it.
            path = editor.locator("path.dc-curve-line")
            linear_d = path.get_attribute("d")
            editor.locator("select.dc-curve-interp").select_option("cubic")
            expect(path).not_to_have_attribute("d", linear_d or "", timeout=15_000)
            keys.nth(1).click()
            page.keyboard.press("Delete")
            expect(text_box).to_have_value("0: (1.0), 25: (2.0)", timeout=15_000)
            expect(keys).to_have_count(2)
            page.wait_for_timeout(300)
            state = _run_cell(page, 3).strip()
            assert state == "STATE=cubic|0: (1.0), 25: (2.0)", state
            assert _notebook_state(page)["counts"][:4] == [1, 2, 3, 4]  # Delete did not touch the notebook's cells
            editor.screenshot(path=str(shots / "curve_editor_cubic.png"))

            # A second editor: its own clip id, its own curve drawn, and no dropdown (show_interpolation=False).
            editors = page.locator(".dc-curve")
            _run_cell(page, 4)
            expect(editors).to_have_count(2, timeout=30_000)
            second = editors.nth(1)
            expect(second.locator("circle.dc-curve-key")).to_have_count(2, timeout=30_000)
            clips = page.evaluate(_CLIPS_JS)
            assert len(clips) == 2 and clips[0]["id"] and clips[0]["id"] != clips[1]["id"], clips
            for clip in clips:
                assert clip["own"] and clip["width"] > 100 and clip["height"] > 20, clips
            assert clips[0]["dropdown"] != "none" and clips[1]["dropdown"] == "none", clips
            assert _line_pixels(second.locator("svg.dc-curve-svg").screenshot()) > 100
            # Hidden, the first editor's clipPath clips nothing; the second must not depend on it.
            page.evaluate("() => { document.querySelector('.dc-curve').style.display = 'none'; }")
            shown_alone = second.locator("svg.dc-curve-svg").screenshot(path=str(shots / "curve_editor_second.png"))
            page.evaluate("() => { document.querySelector('.dc-curve').style.display = ''; }")
            assert _line_pixels(shown_alone) > 100
            assert not browser_errors, browser_errors
        except Exception:
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shots / "curve_editor_failure.png"), full_page=True)
            with contextlib.suppress(Exception):  # ipywidgets' error box shows the JS error once clicked
                shown_error = page.locator(".jupyter-widgets-error-widget").first
                shown_error.click(timeout=2000)
                console_errors.append("widget error: " + shown_error.inner_text(timeout=2000))
            print(f"JupyterLab log tail:\n{lab.log_tail()}\nbrowser errors: {browser_errors}\nconsole: {console_errors}")
            raise
        finally:
            context.close()
