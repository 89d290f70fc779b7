"""Real-browser test of the soundtrack in the panel: JupyterLab + Debian's chromium (Playwright), as
tests/test_browser.py (whose browser helpers it reuses, on the session's JupyterLab: tests/conftest.py).

A notebook made here synthesises a 4 s song (clicks at 120 BPM, a gated 60 Hz tone), sets it as output.soundtrack
and shows the panel with a stand-in render (it writes six frames and their mp4 with the song muxed in, as a render
does). In the browser: the soundtrack field shows the song view (a decoded PNG, the kernel's own bytes) and an
<audio> player whose media loads with the song's duration; the panel's Render button ends with the final video in a
<video controls> element that loads with its sound (chromium decodes audio bytes when it plays).

Skips, saying why, when chromium, Playwright or JupyterLab is missing (see tests/test_browser.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from test_browser import (
    LabServer,
    _decode_png,
    _fetch_image_bytes,
    _require_browser_stack,
    _save_screenshots,
    open_chromium,
    run_all_cells,
    wait_kernel_idle,
)

NOTEBOOK_NAME = "soundtrack_panel.ipynb"
RUN_TIMEOUT_MS = 180_000

# The notebook's one code cell: the song, the Settings, a stand-in render that writes frames and their video with
# the song (the real render's muxing, discolib.io.video.frames_to_video), and the panel.
_CELL = r'''
from pathlib import Path
import numpy as np
import soundfile as sf
from PIL import Image
from discolib import RenderResult, Settings, apply_preset
from discolib.io.video import frames_to_video
from discolib_widgets import SettingsPanel

sr, seconds = 22050, 4.0
t = np.arange(int(sr * seconds)) / sr
y = 0.5 * np.sin(2 * np.pi * 60.0 * t) * ((t >= 1.0) & (t < 2.0))
for start in np.arange(0.0, seconds, 0.5):
    i = int(start * sr)
    y[i : i + 220] += 0.6 * np.hanning(220)
song = Path("song.wav").resolve()
sf.write(str(song), y.astype(np.float32), sr)

settings = apply_preset(Settings.defaults("guided", "2D"), "tiny")  # no weights to miss: nothing rendered here
settings.output.fps = 15.0
settings.animation.max_frames = 6
settings.output.soundtrack = str(song)
settings.run.output_root = str(Path("runs").resolve())

def fake_render(settings, *, callback=None, stop=None, progress=True, **_kw):
    run = Path(settings.run.output_root) / "run_0"
    run.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(settings.animation.max_frames):
        frames.append(run / f"{i:06d}.png")
        Image.new("RGB", (64, 64), (40 * i, 30, 200 - 30 * i)).save(frames[-1])
    video = frames_to_video(frames, run / "video.mp4", fps=settings.output.fps, soundtrack=settings.output.soundtrack)
    return RenderResult(run_dir=run, status="done", frames=frames, video=video)

panel = SettingsPanel(settings, render_fn=fake_render)
assert panel.wait_audio(120) and panel.soundtrack_view.features is not None, panel.soundtrack_view.error
Path("song_view.png").write_bytes(bytes(panel.soundtrack_view.image.value))
panel
'''


def _notebook(root: Path) -> Path:
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": _CELL}],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = root / NOTEBOOK_NAME
    path.write_text(json.dumps(nb))
    return path


def _soundtrack_tab() -> str:
    from discolib.config.ui import panel_layout

    return next(tab for tab, sections in panel_layout() if any("output.soundtrack" in names for _, names in sections))


@pytest.mark.slow
def test_soundtrack_view_player_and_video_with_sound_in_jupyterlab(
    tmp_path: Path, jupyterlab_dir: tuple[LabServer, Path]
) -> None:
    _require_browser_stack()
    pytest.importorskip("soundfile")
    from playwright.sync_api import expect, sync_playwright

    lab, root = jupyterlab_dir  # the session's JupyterLab (tests/conftest.py), this test's folder
    _notebook(root)
    shots = Path(os.environ.get("DISCOLIB_SCREENSHOT_DIR") or tmp_path / "screenshots")

    with sync_playwright() as pw:
        # Media may play without a click here: the test plays the video to see its sound decoded.
        context, page, browser_errors = open_chromium(
            pw, tmp_path, {"width": 1400, "height": 2200}, args=("--autoplay-policy=no-user-gesture-required",)
        )
        panel = page.locator(".discolib-panel")
        try:
            page.goto(lab.notebook_url(root, NOTEBOOK_NAME), wait_until="domcontentloaded")
            wait_kernel_idle(page)
            run_all_cells(page, RUN_TIMEOUT_MS)

            # The soundtrack field's tab shows the song view: the kernel's PNG, decoded by the browser.
            expect(panel).to_have_count(1, timeout=30_000)
            tab = _soundtrack_tab()
            panel.locator(".lm-TabBar-tabLabel").filter(has_text=re.compile(rf"^{re.escape(tab)}$")).click()
            song_view = panel.locator("img.discolib-song")
            expect(song_view).to_be_visible(timeout=30_000)
            page.wait_for_function(
                "e => e.complete && e.naturalWidth > 0", arg=song_view.element_handle(), timeout=30_000
            )
            shown = _decode_png(_fetch_image_bytes(page, song_view))
            expected = _decode_png((root / "song_view.png").read_bytes())
            assert shown.shape == expected.shape and (shown == expected).all(), "the song view is not the kernel's PNG"
            box = song_view.bounding_box()
            assert box is not None and box["width"] >= 400 and box["height"] >= 200, box
            expect(panel.locator(".discolib-song-values")).to_contain_text("frame 0 (0.00 s): rms")
            expect(panel.locator(".discolib-soundtrack")).to_contain_text("BPM")

            # The player: an <audio controls> whose media is the 4 s song.
            audio = panel.locator(".discolib-soundtrack audio")
            expect(audio).to_have_count(1)
            page.wait_for_function("e => e.readyState >= 1", arg=audio.element_handle(), timeout=30_000)
            assert audio.evaluate("e => e.controls") is True
            assert abs(audio.evaluate("e => e.duration") - 4.0) < 0.1
            _save_screenshots(page, panel, shots, "soundtrack_view")

            # Render (the stand-in): the final video in the result area, with controls, and its sound decoded.
            panel.locator("button", has_text=re.compile(r"^\s*Render\s*$")).click()
            expect(panel.get_by_text(re.compile(r"^done: 6 frame\(s\) in "))).to_be_visible(timeout=RUN_TIMEOUT_MS)
            video = panel.locator(".discolib-side video").filter(visible=True)
            expect(video).to_have_count(1, timeout=30_000)
            handle = video.element_handle()
            page.wait_for_function("e => e.readyState >= 1", arg=handle, timeout=30_000)
            assert video.evaluate("e => e.controls && !e.muted && !e.autoplay") is True
            assert abs(video.evaluate("e => e.duration") - 6 / 15) < 0.2
            video.evaluate("e => e.play()")
            page.wait_for_function("e => e.webkitAudioDecodedByteCount > 0", arg=handle, timeout=30_000)
            _save_screenshots(page, panel, shots, "soundtrack_video")
        except Exception:
            with contextlib.suppress(Exception):
                _save_screenshots(page, panel, shots, "soundtrack_failure")
            print(f"JupyterLab log tail:\n{lab.log_tail()}\nbrowser errors: {browser_errors}")
            raise
        finally:
            context.close()
    shutil.rmtree(root / "runs", ignore_errors=True)
