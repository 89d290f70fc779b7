"""notebooks/live.ipynb: its structure and defaults, its helpers (``live_setup``, ``live_settings``,
``flight_settings``, ``render_flight``, ``live_summary``), a papermill run of a scripted flight (``autoplay_frames``)
(its nbval run offline, through notebooks/conftest.py, is part of tests/test_notebooks.py's plain nbval command).

The session itself (controls, replay parity, stop) is test_live.py's; the panel without a browser is
test_widgets_live.py's; the panel in a real browser is test_browser_live.py's.
"""

from __future__ import annotations

import ast
import base64
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_notebooks import (  # noqa: F401 (fixtures)
    FORM_ANNOTATION,
    FORM_TYPES,
    TITLE_LINE,
    check_run,
    clean_env,
    code_cells,
    execute,
    kernel_env,
    load,
    only_run,
    parameters,
    parameters_cell,
    python3_kernel,
    python_source,
    run_nbval,
)

from discolib import RunFolder, Settings
from discolib.config.presets import PRESETS
from discolib.config.settings import SettingsError
from discolib_widgets.notebook import (
    LIVE_AUTO,
    LIVE_CPU_PRESET,
    LIVE_GPU_PRESET,
    NOTEBOOK_ENV,
    RunIncomplete,
    flight_settings,
    live_settings,
    live_setup,
    live_summary,
    render_flight,
)

NAME = "live.ipynb"
#: The tracked notebook's parameters (an autosaved edit fails here: users edit a copy or pass parameters).
DEFAULTS: dict[str, Any] = {
    "preset": "auto", "size": 0, "prompt": "", "autoplay_frames": 0, "render_preset": "", "render_size": 0,
    "overrides": {}, "output_root": "runs", "use_drive": False,
}  # fmt: skip
SETUP_CALL = "live_setup(preset, size, autoplay_frames, output_root, overrides, use_drive=use_drive)"
#: The notebook's calls, in this order of cells.
CALLS = (
    SETUP_CALL,
    "live_settings(preset, size, prompt, output_root, overrides)",
    "live_panel(settings)",
    "live_autoplay(panel, autoplay_frames)",
    "render_flight(panel.session, out=output_root, preset=render_preset, size=render_size)",
    "live_summary(result, autoplay_frames)",
)
#: The batch the live presets' runs go to.
BATCH = "live"
#: The autoplay cell's line with the recorded path's sums, CONTROL_AXES order.
PATH_LINE = re.compile(r"recorded camera path \(sum per axis\): (.*)")


def _calls(nb: Any) -> dict[str, int]:
    """Each call (its source) -> the index of the first code cell making it."""
    out: dict[str, int] = {}
    for i, cell in enumerate(code_cells(nb)):
        for node in ast.walk(ast.parse(python_source(cell.source))):
            if isinstance(node, ast.Call):
                out.setdefault(ast.unparse(node), i)
    return out


def test_live_notebook_structure() -> None:
    """The other notebooks' rules (tests/test_notebooks.py): Colab forms with the documented defaults, a #@title on
    every cell, no logic, the Colab install then the setup call, the public faces only, no outputs; and the live
    notebook's calls in order, the check last."""
    nb = load(NAME)
    assert nb.metadata.kernelspec.name == "python3"
    params = parameters(NAME)
    assert {k: p["value"] for k, p in params.items()} == DEFAULTS
    for pname, p in params.items():
        if p["options"] is not None:
            assert p["value"] in p["options"], pname
        else:
            assert isinstance(p["value"], FORM_TYPES[p["type"]]), pname
        assert p["annotation"] == FORM_ANNOTATION[p["type"]], pname
    # The dropdowns offer presets that exist (and "auto"; "" for the live preset): the live ones, then latent ones.
    assert params["preset"]["options"] == [LIVE_AUTO, LIVE_GPU_PRESET, LIVE_CPU_PRESET]
    assert set(params["preset"]["options"][1:]) <= set(PRESETS)
    render_options = params["render_preset"]["options"]
    assert render_options[0] == "" and all(PRESETS[p]["image.mode"] == "latent" for p in render_options[1:])

    cells = code_cells(nb)
    pcell = parameters_cell(nb)
    install, setup = cells.index(pcell) + 1, cells.index(pcell) + 2
    assert '"google.colab" in sys.modules' in cells[install].source and "%pip install" in cells[install].source
    assert SETUP_CALL in ast.unparse(ast.parse(cells[setup].source))
    imported: set[str] = set()
    read: set[str] = set()
    logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.While, ast.With, ast.Try)
    for cell in cells:
        assert TITLE_LINE.match(cell.source.splitlines()[0]), cell.source
        assert cell.outputs == [] and cell.execution_count is None, f"outputs left in\n{cell.source}"
        for node in ast.walk(ast.parse(python_source(cell.source))):
            assert not isinstance(node, (*logic, ast.IfExp, ast.BoolOp)), f"logic in a cell:\n{cell.source}"
            if isinstance(node, ast.If):
                assert cell is cells[install], cell.source
            if isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and cell is not pcell:
                read.add(node.id)
    assert imported == {"discolib_widgets", "sys"}
    assert set(params) <= read, f"parameters no cell uses: {set(params) - read}"
    calls = _calls(nb)
    for call in CALLS:
        assert call in calls, f"no {call}"
    assert [calls[c] for c in CALLS] == sorted(calls[c] for c in CALLS), "cells out of order"
    assert cells[-1].source.endswith("print(live_summary(result, autoplay_frames))")
    # The panel cell ends with the panel, so the cell shows it.
    (panel_cell,) = [c for c in cells if "live_panel(settings)" in c.source]
    assert panel_cell.source.splitlines()[-1] == "panel"


def test_live_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``auto`` picks the live preset for the machine; DISCOLIB_MAX_FRAMES becomes the scripted flight's frames and
    DISCOLIB_PRESET the preset (how nbval runs it); negative numbers are refused, naming the parameter."""
    import torch

    for name in NOTEBOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    out = str(tmp_path / "runs")
    preset, frames, root, overrides = live_setup("auto", 0, 0, out, {"run.seed": 3})
    assert preset == (LIVE_GPU_PRESET if torch.cuda.is_available() else LIVE_CPU_PRESET)
    assert (frames, root, overrides) == (0, out, {"run.seed": 3})
    assert f"preset auto: {preset}" in capsys.readouterr().out
    monkeypatch.setenv("DISCOLIB_MAX_FRAMES", "5")
    monkeypatch.setenv("DISCOLIB_PRESET", "tiny-live")
    monkeypatch.setenv("DISCOLIB_OVERRIDES", '{"run.seed": 9}')
    preset, frames, _, overrides = live_setup("sd-turbo-live", 0, 0, out, {"run.seed": 3})
    assert (preset, frames, overrides) == ("tiny-live", 5, {"run.seed": 9})
    assert "a scripted flight of 5 frames" in capsys.readouterr().out
    monkeypatch.delenv("DISCOLIB_MAX_FRAMES")
    with pytest.raises(SettingsError, match="size") as info:
        live_setup("tiny-live", -1, 0, out, {})
    assert info.value.field == "size"
    with pytest.raises(SettingsError, match="autoplay_frames"):
        live_setup("tiny-live", 0, -2, out, {})


def test_live_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The preset in 3D at ``size`` (0: the preset's), the prompt from frame 0 (empty: the preset's), the output
    root, overrides last."""
    out = str(tmp_path / "runs")
    s = live_settings("tiny-live", 48, "a red barn --neg fog", out, {"run.seed": 7})
    assert (s.image.width, s.image.height, s.image.mode) == (48, 48, "latent")
    assert s.animation.animation_mode == "3D" and s.models.latent_model == "tiny-latent"
    assert s.prompts.text_prompts == {"0": "a red barn --neg fog"}
    assert s.run.seed == 7 and s.run.output_root == out
    assert "latent mode, preset tiny-live: 48x48" in capsys.readouterr().out
    s = live_settings("tiny-live", 0, "  ", out, {})
    assert (s.image.width, s.image.height) == (PRESETS["tiny-live"]["image.width"], PRESETS["tiny-live"]["image.height"])
    assert s.prompts.text_prompts == PRESETS["tiny-live"]["prompts.text_prompts"]
    with pytest.raises(SettingsError, match="image.width"):
        live_settings("tiny-live", 7, "", out, {})  # not a multiple of 8


def test_nothing_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before a flight (Run All in interactive use): no settings, no render, a line saying to fly first; the check
    says so too, but a scripted flight that was not rendered fails."""
    from discolib.run.live import LiveSession

    session = LiveSession(live_settings("tiny-live", 0, "", str(tmp_path), {}))
    assert flight_settings(session) is None
    assert render_flight(session, out=str(tmp_path), preset="tiny-latent") is None
    assert capsys.readouterr().out.count("nothing recorded yet: click Start, fly, then run this cell again") == 2
    assert live_summary(None, 0) == "nothing rendered yet: fly, then run the render cell"
    with pytest.raises(RunIncomplete, match="3 frames"):
        live_summary(None, 3)
    assert list(tmp_path.iterdir()) == []


def test_flight_settings_with_another_preset(tmp_path: Path) -> None:
    """A recorded flight rendered with another preset and size: the preset's models, size and steps; the flight's
    camera path, schedules, prompts, seeds and frame count, as ``to_settings()`` wrote them."""
    from discolib.run.live import LiveSession

    session = LiveSession(live_settings("tiny-live", 0, "a red barn --neg fog", str(tmp_path), {}))
    try:
        session.start()
        session.set_velocity(z=2.0, ry=1.0)
        session.wait_frames(3, timeout=300)
    finally:
        session.stop()
    flight = session.to_settings()
    assert flight.animation.max_frames >= 3
    settings = flight_settings(session, "tiny-latent", 96)
    assert settings is not None
    assert (settings.image.width, settings.image.height, settings.image.steps) == (96, 96, PRESETS["tiny-latent"]["image.steps"])
    assert settings.models.latent_model == "tiny-latent"
    for name in ("translation_z", "rotation_3d_y", "strength_schedule", "noise_schedule", "seed_schedule",
                 "seed_behavior", "max_frames", "animation_mode"):  # fmt: skip
        assert settings.get(f"animation.{name}") == flight.get(f"animation.{name}"), name
    assert settings.prompts.text_prompts == flight.prompts.text_prompts
    assert settings.run.seed == flight.run.seed and settings.run.output_root == flight.run.output_root
    same = flight_settings(session)  # no preset: the recording as it is
    assert same is not None and same.to_dict() == flight.to_dict()


# ----------------------------------------------------------------------------------------------- kernels
def _stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _recorded_sums(settings: Settings) -> np.ndarray:
    """The replay's per-frame CONTROL_AXES, summed: what the render evaluates from the recorded keyframes."""
    from discolib.animation.plan import evaluate_schedules
    from discolib.run.live import CONTROL_AXES

    values = evaluate_schedules(settings, settings.animation.max_frames, settings.run.seed)
    return np.array([values[a].sum() for a in CONTROL_AXES])


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_live_autoplay(tmp_path: Path) -> None:
    """papermill, tiny-live, a scripted flight of 12 frames: the autoplay cell prints the recorded path (forward,
    turning right, rolling left, nothing sideways) and shows the last live frame; the render cell replays the
    recording into one run folder with every recorded frame, whose keyframes give the same path and whose frame
    equals the live one shown; the check cell says "done True"."""
    out_root = tmp_path / "out"
    frames = 12
    params = {"preset": "tiny-live", "autoplay_frames": frames, "output_root": str(out_root)}
    nb = execute(NAME, tmp_path / "live.out.ipynb", params, tmp_path)
    cells = {call: next(c for c in code_cells(nb) if call.split("(")[0] + "(" in c.source) for call in CALLS}

    # The scripted flight: a line per group of keys, the path, the speed, the last frame as an image.
    autoplay = cells["live_autoplay(panel, autoplay_frames)"]
    text = _stream(autoplay)
    keys = re.findall(r"^frame (\d+): keys (\S+)$", text, flags=re.MULTILINE)
    assert [k for _, k in keys] == ["w", "w+ArrowRight", "ArrowRight+q", "none"], text
    assert int(keys[-1][0]) >= frames - 1
    match = PATH_LINE.search(text)
    assert match, text
    printed = np.array([float(v.split()[1]) for v in match[1].split(", ")])
    x, y, z, rx, ry, rz = printed
    assert x == y == rx == 0.0 and z > 0 and ry > 0 and rz < 0, printed
    assert re.search(r"\d+ frames at [\d.]+ frames/s", text), text
    (shown,) = [base64.b64decode(o["data"]["image/png"]) for o in autoplay.outputs if "image/png" in o.get("data", {})]

    # The render: one run folder of the recorded frames (at least the flight's), done, with its video.
    folder: RunFolder = only_run(out_root, BATCH)
    recorded = Settings.load(folder.settings_path)
    n = recorded.animation.max_frames
    assert n >= frames
    check_run(folder, n, video=True)
    assert f"the flight: {n} frames, latent mode 64x64" in _stream(cells[CALLS[4]])
    assert recorded.models.latent_model == "tiny-latent" and recorded.animation.animation_mode == "3D"
    # The recorded keyframes replay the path that was flown (printed to 3 decimals) ...
    assert np.allclose(_recorded_sums(recorded), printed, atol=1e-3)
    # ... and the replayed frame is the live frame the autoplay cell showed (the tiny preset on the CPU).
    replayed = np.asarray(Image.open(folder.frame_path(int(keys[-1][0]))).convert("RGB"))
    assert np.array_equal(replayed, _png_pixels(shown)), "the replay differs from the live frame"
    assert _stream(cells[CALLS[5]]) == "done True\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.out.ipynb", "out"]  # nothing elsewhere
    assert sorted(p.name for p in out_root.iterdir()) == [BATCH]
