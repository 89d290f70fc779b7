"""The ipywidgets panel: schema-generated widgets, two-way binding, load/save, render thread with a fake render."""

from __future__ import annotations

import ast
import base64
import html
import io
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
import torch
from PIL import Image

import discolib
import discolib_widgets.notebook as notebook
from discolib import RenderResult, RunFolder, Settings, apply_preset
from discolib.config.settings import SettingsError, field_info, iter_fields
from discolib.config.ui import field_ui, panel_layout
from discolib.run.events import RenderEvent
from discolib.run.runs import RunRecord
from discolib_widgets import (
    SettingsPanel,
    finish_settings,
    notebook_setup,
    record_summary,
    show_panel,
    show_result,
)
from discolib_widgets.fields import PLOT_POINTS, PLOT_SCALE, PLOT_SIZE, schedule_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------- helpers
def make_fake_render(
    n_frames: int = 3,
    steps: int = 4,
    delay: float = 0.0,
    preview_shape: tuple[int, ...] = (1, 3, 8, 8),
    frame_done: threading.Event | None = None,
) -> tuple[Callable[..., RenderResult], list[dict[str, Any]]]:
    """A render function with the real signature: writes frames and run.json into a RunFolder, emits RenderEvents.

    ``frame_done`` is set after the second frame is written. Returns the function and a list that records the
    keyword arguments of every call.
    """
    calls: list[dict[str, Any]] = []

    def fake_render(
        settings: Settings,
        *,
        out: str | Path | None = None,
        resume: str | Path | None = None,
        callback: Callable[[RenderEvent], None] | None = None,
        stop: threading.Event | None = None,
        progress: bool = True,
        force: bool = False,
    ) -> RenderResult:
        calls.append({"out": out, "resume": resume, "stop": stop, "progress": progress, "settings": settings})
        emit = callback or (lambda _e: None)
        if resume is not None:
            folder = RunFolder.open(resume)
            first = folder.resume_point()
        else:
            folder = RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json())
            first = 0
        record = folder.read_record()
        record.status, record.frames_total = "running", n_frames

        def write(status: str, done: int) -> None:  # as the real render: run.json vouches for the frames done
            record.status, record.frames_done = status, done
            folder.write_record(record)

        write("running", first)
        emit(RenderEvent("start", frame=first, total_frames=n_frames, path=folder.path))
        frames = [folder.frame_path(i) for i in range(first)]
        for f in range(first, n_frames):
            image = torch.zeros(1, 3, 8, 8)
            for s in range(1, steps + 1):
                if stop is not None and stop.is_set():  # the real render checks between steps
                    write("interrupted", f)
                    emit(RenderEvent("stopped", frame=f, total_frames=n_frames, path=folder.path))
                    return RenderResult(run_dir=folder.path, status="stopped", frames=frames)
                image = torch.full((1, 3, 8, 8), s / steps)
                preview = torch.rand(preview_shape)
                emit(RenderEvent("step", frame=f, total_frames=n_frames, step=s, total_steps=steps, preview=preview))
                if delay:
                    time.sleep(delay)
            frames.append(folder.save_frame(f, image))
            write("running", f + 1)
            emit(RenderEvent("frame", frame=f, total_frames=n_frames, path=frames[-1], seed=100 + f))
            if f == 1 and frame_done is not None:
                frame_done.set()
        write("done", n_frames)
        emit(RenderEvent("done", frame=n_frames, total_frames=n_frames, path=folder.path))  # as render: frames done
        return RenderResult(run_dir=folder.path, status="done", frames=frames)

    return fake_render, calls


def _tree(widget: widgets.Widget) -> list[widgets.Widget]:
    """Every widget under ``widget`` (children of boxes, tabs and the panel's sections), itself first."""
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _tree(child)
    return out


def panel_in(tmp_path: Path, **kw: Any) -> SettingsPanel:
    settings = Settings.defaults()
    settings.run.output_root = str(tmp_path / "out")
    return SettingsPanel(settings, **kw)


@pytest.fixture(scope="module")
def shared() -> SettingsPanel:
    """One panel for the module: building one costs ~0.5 s, giving it new Settings ~30 ms."""
    return SettingsPanel()


@pytest.fixture
def panel(shared: SettingsPanel) -> SettingsPanel:
    """The shared panel reset to default Settings (through the ``settings`` setter, as a user would)."""
    for control in shared.controls.values():
        if control.plot_toggle is not None:
            control.plot_toggle.value = False
    shared.path.value = ""
    shared.file_message.value = ""
    shared.show_all.value = False
    shared.settings = Settings.defaults()
    assert shared.errors == {}
    return shared


# ----------------------------------------------------------------------------------------------- schema → widgets
def _expected_class(name: str) -> type:
    info = field_info(name)
    bounded = info.min is not None and info.max is not None
    return {
        "int": widgets.BoundedIntText if bounded else widgets.IntText,
        "float": widgets.BoundedFloatText if bounded else widgets.FloatText,
        "bool": widgets.Checkbox,
        "choice": widgets.Dropdown,
        "str": widgets.Text,
        "list[str]": widgets.Text,
        "list[float]": widgets.Text,
        "dict": widgets.Textarea,
    }[info.type_name]


def test_every_schema_field_has_a_widget_of_its_kind(panel: SettingsPanel) -> None:
    assert sorted(panel.controls) == sorted(iter_fields())
    for name in iter_fields():
        info = field_info(name)
        control = panel.controls[name]
        assert type(control.input) is _expected_class(name), name
        # the readable label, the setting's own name (small, grey) and the one-line help are shown; the full help
        # stays in the tooltip
        ui = field_ui(name)
        assert html.escape(ui.label) in control.label.value and f">{html.escape(info.field)}" in control.label.value
        assert html.escape(ui.help) in control.help_line.value and control.help_line in control.box.children
        assert control.input.tooltip == info.help and info.help
        if isinstance(control.input, widgets.Dropdown):
            assert tuple(control.input.options) == info.choices
        if isinstance(control.input, (widgets.BoundedIntText, widgets.BoundedFloatText)):
            assert (control.input.min, control.input.max) == (info.min, info.max)
        # keyframe strings, and only they, get a plot and a curve editor
        assert (control.plot is not None) == (info.kind == "schedule"), name
        assert (control.curve_toggle is not None) == (info.kind == "schedule"), name
    # spot checks of the rule above on real fields
    assert isinstance(panel.controls["image.width"].input, widgets.BoundedIntText)
    assert isinstance(panel.controls["run.display_rate"].input, widgets.IntText)
    assert isinstance(panel.controls["guidance.clip_guidance_scale"].input, widgets.FloatText)
    assert isinstance(panel.controls["prompts.text_prompts"].input, widgets.Textarea)


def test_tabs_and_sections_follow_the_panel_layout(panel: SettingsPanel) -> None:
    """Every field sits once in its tab's section (from discolib.config.ui); with "show all" every tab shows."""
    panel.show_all.value = True
    layout = panel_layout()
    assert list(panel.tabs.titles) == [tab for tab, _ in layout]
    for page, (_tab, sections) in zip(panel.tabs.children, layout, strict=True):
        assert len(page.children) == len(sections)
        for box, (section, names) in zip(page.children, sections, strict=True):
            heading, *boxes = box.children
            assert html.escape(section) in heading.value
            assert boxes == [panel.controls[n].box for n in names]
    assert sorted(n for _, secs in layout for _, names in secs for n in names) == sorted(iter_fields())


def test_widgets_show_the_settings_values(panel: SettingsPanel) -> None:
    s = panel.settings
    assert panel.controls["image.width"].input.value == s.image.width
    assert panel.controls["animation.zoom"].input.value == s.animation.zoom
    assert panel.controls["models.clip_models"].input.value == ", ".join(s.models.clip_models)
    assert json.loads(panel.controls["prompts.text_prompts"].input.value) == s.prompts.text_prompts
    assert panel.errors == {}
    assert "settings valid" in panel.validity.value


# ----------------------------------------------------------------------------------------------- widgets → Settings
@pytest.mark.parametrize(
    ("name", "widget_value", "expected"),
    [
        ("image.steps", 30, 30),
        ("guidance.clip_guidance_scale", 123.5, 123.5),
        ("models.compile", True, True),
        ("guidance.sampler", "plms", "plms"),
        ("animation.zoom", "0: (1), 10: (1.1)", "0: (1), 10: (1.1)"),
        ("animation.translation_x", "0:(10*sin(2*3.14*t/10))", "0:(10*sin(2*3.14*t/10))"),
        ("models.clip_models", "ViT-B/32,  RN50", ["ViT-B/32", "RN50"]),
        ("models.clip_models", '["hf-hub:a/b,c", "RN50"]', ["hf-hub:a/b,c", "RN50"]),
        ("guidance.transformation_percent", "0.1, 0.5", [0.1, 0.5]),
        ("guidance.cut_overview", "[10]*500+[2]*500", "[10]*500+[2]*500"),
        ("prompts.text_prompts", '{"0": ["a castle:2", "fog:-0.5"], "10": ["a ruin"]}', {"0": ["a castle:2", "fog:-0.5"], "10": ["a ruin"]}),
        ("prompts.image_prompts", "", {}),
        ("animation.frames_skip_steps", "50%", "50%"),
    ],
)
def test_editing_a_widget_sets_the_field(panel: SettingsPanel, name: str, widget_value: Any, expected: Any) -> None:
    p = panel
    p.controls[name].input.value = widget_value
    assert p.settings.get(name) == expected
    assert p.controls[name].error == "" and name not in p.errors


def test_panel_edits_the_given_settings_in_place() -> None:
    s = Settings.defaults("latent")
    p = SettingsPanel(s)
    p.controls["latent.cfg_scale"].input.value = 3.5
    assert p.settings is s and s.latent.cfg_scale == 3.5


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("run.display_rate", -1, "run.display_rate: expected a value >= 0"),
        ("run.batch_name", "a\x07b", "run.batch_name: expected a folder name"),
        ("guidance.transformation_percent", "0.1, abc", "'abc' is not a number"),
        ("guidance.cut_overview", "[12]*400", "guidance.cut_overview"),
        ("prompts.text_prompts", '{"0": ["a castle"', "invalid JSON at line 1 column"),
        ("prompts.text_prompts", '{"0": ["a:0"]}', "weights sum to zero"),
        ("prompts.text_prompts", '["a castle"]', "prompts.text_prompts: expected an object"),
        ("animation.frames_skip_steps", "sixty", "expected a percentage"),
    ],
)
def test_invalid_value_shows_message_and_leaves_settings(
    panel: SettingsPanel, name: str, bad: Any, message: str
) -> None:
    p = panel
    before = p.settings.to_dict()
    p.controls[name].input.value = bad
    assert message in p.controls[name].error
    assert html.escape(message) in p.controls[name].message.value
    assert p.settings.to_dict() == before
    assert name in p.errors and name in p.validity.value
    # fixing the value clears the message and applies it
    p.controls[name].write(before[name.split(".")[0]][name.split(".")[1]])
    assert p.controls[name].error == "" and p.errors == {}


def test_invalid_keyframe_string_shows_column_and_keeps_settings(panel: SettingsPanel) -> None:
    p = panel
    zoom = p.controls["animation.zoom"]
    zoom.input.value = "0: (1), 10: (1.1)"
    zoom.input.value = "0: (1), 10: (1.1"  # as typed, before the closing parenthesis
    assert zoom.error.startswith("animation.zoom: column 17:")
    assert "column 17" in zoom.message.value
    assert p.settings.animation.zoom == "0: (1), 10: (1.1)"
    zoom.input.value = "0: (1), 10: (foo)"
    assert "column 14" in zoom.error and "unknown name 'foo'" in zoom.error


def test_keyframe_strings_are_checked_over_max_frames(panel: SettingsPanel) -> None:
    p = panel
    p.controls["animation.max_frames"].input.value = 50
    zoom = p.controls["animation.zoom"]
    zoom.input.value = "0: (sqrt(49-t))"  # fine for frames 0..49
    assert zoom.error == "" and p.settings.animation.zoom == "0: (sqrt(49-t))"
    p.controls["animation.max_frames"].input.value = 100  # now frame 50 takes sqrt(-1)
    assert p.settings.animation.max_frames == 100
    assert "animation.zoom" in zoom.error and "sqrt" in zoom.error
    p.controls["animation.max_frames"].input.value = 50
    assert zoom.error == ""


def test_duplicate_keyframe_warning_is_shown_but_applied(panel: SettingsPanel) -> None:
    p = panel
    zoom = p.controls["animation.zoom"]
    zoom.input.value = "0: (1), 0: (2)"
    assert p.settings.animation.zoom == "0: (1), 0: (2)"
    assert zoom.error == "" and "duplicate" in zoom.message.value.lower()


def test_schedule_plot_updates_on_valid_input_only(panel: SettingsPanel) -> None:
    p = panel
    zoom = p.controls["animation.zoom"]
    assert zoom.plot is not None and zoom.plot_toggle is not None
    assert not zoom.plot_shown and zoom.plot.layout.display == "none"  # hidden until asked for or edited
    zoom.input.value = "0: (1), 10: (1.5)"
    first = bytes(zoom.plot.value)
    assert zoom.plot_shown and first.startswith(PNG_MAGIC) and zoom.plot.layout.display == ""
    max_frames = p.settings.animation.max_frames
    assert first == schedule_png("0: (1), 10: (1.5)", "animation.zoom", max_frames, "linear")
    zoom.input.value = "0: (1), 10: (0.5)"
    second = bytes(zoom.plot.value)
    assert second.startswith(PNG_MAGIC) and second != first
    zoom.input.value = "0: (1), 10: (0.5"  # invalid: the last good plot stays
    assert bytes(zoom.plot.value) == second
    zoom.plot_toggle.value = False
    assert zoom.plot.layout.display == "none"
    # the toggle alone draws the current value
    angle = p.controls["animation.angle"]
    assert angle.plot is not None and angle.plot_toggle is not None
    angle.plot_toggle.value = True
    assert bytes(angle.plot.value).startswith(PNG_MAGIC)


def test_schedule_png_caps_the_points_drawn() -> None:
    small = schedule_png("0: (0), 100: (1)", "animation.angle", PLOT_POINTS)
    big = schedule_png("0: (0), 100: (1)", "animation.angle", 500_000)
    for png in (small, big):
        assert png.startswith(PNG_MAGIC)
        w, h = Image.open(io.BytesIO(png)).size
        assert (w, h) == (PLOT_SIZE[0] * PLOT_SCALE, PLOT_SIZE[1] * PLOT_SCALE)  # drawn at the shown size, x2


def test_assigning_settings_updates_every_widget(panel: SettingsPanel) -> None:
    p = panel
    p.controls["animation.zoom"].input.value = "0: (1), 10: (1.1"  # a pending error is cleared by a new Settings
    other = Settings.defaults("latent", "2D")
    other.models.clip_models = ["a,b", "RN50"]
    p.settings = other
    assert p.settings is other
    for name in iter_fields():
        control = p.controls[name]
        assert control.read() == other.get(name), name
    assert p.controls["image.mode"].input.value == "latent"
    assert p.controls["image.width"].input.value == 512
    assert p.errors == {}
    # and the binding now targets the new object
    p.controls["image.steps"].input.value = 12
    assert other.image.steps == 12


# ----------------------------------------------------------------------------------------------- load / save
def test_save_and_load_round_trip(tmp_path: Path) -> None:
    p = SettingsPanel()
    p.controls["image.steps"].input.value = 77
    p.controls["animation.animation_mode"].input.value = "2D"
    p.controls["animation.zoom"].input.value = "0: (1.02), 20: (1.1)"
    p.controls["prompts.text_prompts"].input.value = '{"0": "a lake --neg blur", "5": "a forest"}'
    p.controls["guidance.transformation_percent"].input.value = "0.2, 0.4"
    path = tmp_path / "cfg" / "s.json"
    p.path.value = str(path)
    p.save_button.click()
    assert path.is_file() and "saved" in p.file_message.value
    assert Settings.load(path).to_dict() == p.settings.to_dict()

    q = SettingsPanel()
    q.path.value = str(path)
    q.load_button.click()
    assert "loaded" in q.file_message.value
    assert q.settings.to_dict() == p.settings.to_dict()
    assert q.controls["image.steps"].input.value == 77
    assert q.controls["animation.zoom"].input.value == "0: (1.02), 20: (1.1)"
    assert q.controls["guidance.transformation_percent"].input.value == "0.2, 0.4"

    r = SettingsPanel()
    r.load(path)  # the method form
    assert r.settings.to_dict() == p.settings.to_dict() and r.path.value == str(path)


def test_load_errors_are_shown_and_keep_settings(tmp_path: Path) -> None:
    p = SettingsPanel()
    before = p.settings.to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text('{"image": {"steps": 10,}}')
    p.path.value = str(bad)
    p.load_button.click()
    assert "load failed" in p.file_message.value and "invalid JSON" in p.file_message.value
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"image": {"stepz": 10}}))
    p.path.value = str(unknown)
    p.load_button.click()
    assert "unknown setting" in p.file_message.value and "image.steps" in p.file_message.value
    p.path.value = str(tmp_path / "missing.json")
    p.load_button.click()
    assert "not found" in p.file_message.value
    p.path.value = ""
    p.load_button.click()
    assert "path" in p.file_message.value
    assert p.settings.to_dict() == before


def test_save_refuses_settings_that_would_not_load(tmp_path: Path) -> None:
    p = SettingsPanel()
    p.controls["image.width"].input.value = 1000  # not a multiple of 64 for the guided sampler
    assert "image.width" in p.validity.value and "multiple of 64" in p.validity.value
    path = tmp_path / "s.json"
    p.path.value = str(path)
    p.save_button.click()
    assert "save failed" in p.file_message.value and "multiple of 64" in p.file_message.value
    assert not path.exists()


# ----------------------------------------------------------------------------------------------- render
def test_render_runs_in_a_thread_and_reports_progress(tmp_path: Path) -> None:
    fake, calls = make_fake_render(n_frames=3, steps=4)
    p = panel_in(tmp_path, render_fn=fake)
    p.render_button.click()
    assert p.wait(10)
    assert p.last_error is None, p.error_area.value
    result = p.last_result
    assert result is not None and result.status == "done"
    assert [f.name for f in result.frames] == ["000000.png", "000001.png", "000002.png"]
    assert all(f.is_file() for f in result.frames)
    assert RunFolder.open(result.run_dir).complete_frames() == [0, 1, 2]
    # the panel's view (render_here's callback) went through the frames and shows the last one
    state = p.view.state
    assert state.status == "done" and state.frames_done == state.total_frames == 3 and state.fraction == 1.0
    assert state.run_dir == result.run_dir
    assert state.preview_png == result.frames[-1].read_bytes()
    assert p.view.widget in _tree(p.widget)
    assert f"done: 3 frame(s) in {result.run_dir}" in p.status.value and p.error_area.value == ""
    assert not p.render_button.disabled and p.stop_button.disabled
    assert p.resume_button.disabled and "already done" in p.resume_note.value  # nothing left to resume
    # the call: a copy of the settings, a stop event, no console progress
    (call,) = calls
    assert call["progress"] is False and isinstance(call["stop"], threading.Event) and call["resume"] is None
    assert call["settings"] is not p.settings and call["settings"].to_dict() == p.settings.to_dict()


def test_render_button_disabled_while_running_and_stop_ends_stopped(tmp_path: Path) -> None:
    second_frame = threading.Event()
    fake, calls = make_fake_render(n_frames=50, steps=4, delay=0.03, frame_done=second_frame)
    p = panel_in(tmp_path, render_fn=fake)
    p.render_button.click()
    assert second_frame.wait(10)
    assert p.running and p.render_button.disabled and not p.stop_button.disabled
    with pytest.raises(RuntimeError, match="already running"):
        p.render()
    p.stop_button.click()
    assert p.wait(10)
    result = p.last_result
    assert result is not None and result.status == "stopped"
    assert 2 <= len(result.frames) < 50
    assert "stopped" in p.status.value and "resumable" in p.status.value
    assert not p.render_button.disabled and p.stop_button.disabled
    # the run resumes from where it stopped
    assert not p.resume_button.disabled and f"{len(result.frames)} of 50 frames done" in p.resume_note.value
    fake_fast, _ = make_fake_render(n_frames=50, steps=1)
    p._render_fn = fake_fast
    p.resume_button.click()
    assert p.wait(10)
    assert p.last_result is not None and p.last_result.status == "done"
    assert Path(p.last_result.run_dir) == Path(result.run_dir)
    assert RunFolder.open(result.run_dir).complete_frames() == list(range(50))


def test_render_error_is_shown_in_the_panel(tmp_path: Path) -> None:
    def broken(settings: Settings, **_kw: Any) -> RenderResult:
        raise ValueError("models.diffusion_model: no such checkpoint 'nope.pt'")

    p = panel_in(tmp_path, render_fn=broken)
    p.render_button.click()
    assert p.wait(10)
    assert isinstance(p.last_error, ValueError) and p.last_result is None
    assert "ValueError: models.diffusion_model: no such checkpoint" in p.error_area.value
    assert "traceback" in p.error_area.value
    assert "failed" in p.status.value
    assert not p.render_button.disabled and p.stop_button.disabled


def test_callback_failure_is_shown_and_render_continues(tmp_path: Path) -> None:
    fake, _ = make_fake_render(n_frames=2, steps=2, preview_shape=(2, 3, 8, 8))  # a batch: not one image
    p = panel_in(tmp_path, render_fn=fake)
    p.render()
    assert p.wait(10)
    assert p.last_result is not None and p.last_result.status == "done"
    assert p.last_error is None and "done: 2 frame(s)" in p.status.value


def test_render_refused_while_a_field_is_invalid(tmp_path: Path) -> None:
    fake, calls = make_fake_render()
    p = panel_in(tmp_path, render_fn=fake)
    p.controls["animation.zoom"].input.value = "0: (1"
    assert p.render() is None
    assert "animation.zoom" in p.error_area.value and calls == []


# ----------------------------------------------------------------------------------------------- hostile edits
# What a user (or a browser that sends anything) may put in each kind of widget. ipywidgets itself only accepts
# values of the widget's trait type (a Dropdown only its options, a Checkbox only bools), so those kinds get
# every value they can hold; text boxes get the hostile table.
DEEP = "[" * 10_000 + "]" * 10_000
INT_VALUES: list[Any] = [-1, -(10**400), 10**400, 2**63, int(1e308), -int(1e308)]
FLOAT_VALUES: list[Any] = [1e308, -1e308, float("nan"), float("inf"), float("-inf"), -1.0]
TEXT_VALUES: list[str] = [
    "",
    "nan",
    "1e400",
    "-1e308",
    "x" * 100_000,
    "0:(" + "(" * 5000,
    "0: (1e308*1e308)",
    "0: (1), 1e308: (2)",
    "\u202e🙂\x00ｚｏｏｍ\ud800",
    "[NaN]",
    "," * 1000,
    '{"0": ["a:1e308"]}',
]
# JSON-reading fields (lists may be written as JSON, prompts are JSON) also get nesting 10 000 deep.
LIST_VALUES: list[str] = [*TEXT_VALUES, DEEP]
DICT_VALUES: list[str] = [
    "[]",
    "null",
    "1e308",
    DEEP,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    '{"0": NaN}',
    '{"0": [1e400]}',
    '{"0": ["a:1e308"]}',
    '{"1e308": ["a"]}',
    '{"-1": ["a"]}',
    '{"0": ["' + "x" * 100_000 + '"]}',
    '{"0": ["a:1", "b:-1"]}',
]
# Values that must be refused with a message, by widget kind (the rest may be valid for some fields).
MUST_FAIL: dict[str, list[Any]] = {
    "float": [float("nan")],
    "float-unbounded": [float("inf"), float("-inf")],
    "schedule": ["", "nan", "x" * 100_000, "0:(" + "(" * 5000, "0: (1e308*1e308)"],
    "list[float]": ["nan", "1e400", "[NaN]", DEEP],
    "list[str]": [DEEP],
    "dict": ["[]", "null", "1e308", DEEP, '{"a":' * 10_000 + "1" + "}" * 10_000, '{"0": NaN}', '{"0": [1e400]}'],
}


def _values_for(control: Any) -> tuple[str, list[Any]]:
    w = control.input
    info = control.info
    if isinstance(w, widgets.Checkbox):
        return "bool", [not w.value, w.value]
    if isinstance(w, widgets.Dropdown):
        if control.name == "image.mode":  # its other value imports the whole latent stack (seconds), tested elsewhere
            return "choice", [w.value]
        return "choice", [o for o in w.options if o != w.value] + [w.value]
    if isinstance(w, (widgets.IntText, widgets.BoundedIntText)):
        return "int", INT_VALUES
    if isinstance(w, widgets.BoundedFloatText):
        return "float", FLOAT_VALUES
    if isinstance(w, widgets.FloatText):
        return "float-unbounded", FLOAT_VALUES
    if info.type_name == "dict":
        return "dict", DICT_VALUES
    if info.type_name.startswith("list["):
        return info.type_name, LIST_VALUES
    return ("schedule" if info.kind == "schedule" else "str"), TEXT_VALUES


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_hostile_edits_of_every_field_show_a_message_and_never_raise(
    panel: SettingsPanel, logged_errors: list[logging.LogRecord]
) -> None:
    """Every field, a table of hostile values: nothing escapes an observer, nothing is logged as an error, and
    every edit ends either applied (the Settings holds the widget's value) or refused with a one-line message
    beside the field (the Settings unchanged). Values that are never valid must be refused."""
    p = panel
    edits = 0
    for name, control in p.controls.items():
        kind, values = _values_for(control)
        original = p.settings.get(name)
        must_fail = MUST_FAIL.get(kind, []) + (MUST_FAIL["float"] if kind == "float-unbounded" else [])
        for value in values:
            before = p.settings.get(name)
            control.input.value = value  # observers run synchronously; anything they raise fails the test here
            edits += 1
            shown = control.input.value  # a bounded box clamps; the Settings sees the clamped value
            if control.error:
                assert "\n" not in control.error and len(control.error) <= 600, (name, control.error[:200])
                assert html.escape(control.error[:40]) in control.message.value
                assert _same(p.settings.get(name), before), (name, repr(value)[:60])
                assert name in p.errors and name in p.validity.value
            else:
                assert not any(v is value or _same(v, value) for v in must_fail), f"{name} accepted {value!r:.60}"
                if kind in ("int", "float", "float-unbounded", "bool", "choice", "str", "schedule"):
                    assert _same(p.settings.get(name), shown), (name, repr(value)[:60])
        control.write(original)  # through the observer, as a user typing it back: applied, message cleared
        assert p.errors == {} and _same(p.settings.get(name), original), name
    assert edits > 700
    assert [r.getMessage() for r in logged_errors] == []


def test_observer_errors_are_shown_not_raised_into_ipywidgets(
    panel: SettingsPanel, monkeypatch: pytest.MonkeyPatch, logged_errors: list[logging.LogRecord]
) -> None:
    """A bug deep in a check (here a fake one) still ends as a message beside the field, and is logged."""
    import discolib_widgets.panel as panel_mod

    def broken(*_a: Any, **_k: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(panel_mod, "check_field", broken)
    zoom = panel.controls["animation.zoom"]
    zoom.input.value = "0: (1.5)"  # no exception here
    assert "unexpected error" in zoom.error and "KeyError" in zoom.error
    assert any("animation.zoom" in r.getMessage() for r in logged_errors)
    monkeypatch.undo()
    zoom.input.value = "0: (1.25)"
    assert zoom.error == "" and panel.settings.animation.zoom == "0: (1.25)"


def test_plot_of_huge_schedule_values_never_raises(panel: SettingsPanel) -> None:
    """Values near the float limits are refused, plotted, or applied with a note that they cannot be drawn."""
    angle = panel.controls["animation.angle"]
    assert angle.plot is not None
    outcomes = {}
    for text in ("0: (1e-308)", "0: (1e308)", "0: (-1e308), 10: (1e308)", "0: (1e308*t)"):
        angle.plot.value = b""
        angle.input.value = text
        if angle.error:
            outcomes[text] = "refused"
            assert angle.error.startswith("animation.angle") and panel.settings.animation.angle != text
        elif "too large to draw" in angle.message.value:
            outcomes[text] = "note"
            assert panel.settings.animation.angle == text and angle.plot.layout.display == "none"
        else:
            outcomes[text] = "plotted"
            assert angle.plot_shown and bytes(angle.plot.value).startswith(PNG_MAGIC)
    assert outcomes["0: (1e-308)"] == "plotted" and outcomes["0: (1e308*t)"] == "refused"  # overflow at frame 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_of_hostile_files_shows_the_message(tmp_path: Path, logged_errors: list[logging.LogRecord]) -> None:
    p = SettingsPanel()
    before = p.settings.to_dict()
    deep = tmp_path / "deep.json"
    deep.write_text('{"prompts": {"text_prompts": ' + "[" * 10_000 + "]" * 10_000 + "}}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # nothing ever writes to it: opening it for reading would block the kernel for good
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 MB of NULs on disk costs nothing
    folder = tmp_path / "folder.json"
    folder.mkdir()
    for path, words in [(deep, "deep"), (fifo, "not a regular file"), (huge, "bytes"), (folder, "folder")]:
        p.path.value = str(path)
        p.load_button.click()
        message = p.file_message.value
        assert "load failed" in message and words in message.lower(), message[:300]
        assert "\n" not in html.unescape(message)
        assert p.settings.to_dict() == before
    assert [r.getMessage() for r in logged_errors] == []


# ----------------------------------------------------------------------------------------------- display
def test_panel_displays_as_its_widget(capsys: pytest.CaptureFixture[str]) -> None:
    p = SettingsPanel()
    bundle = p._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == p.widget.model_id
    assert isinstance(p.widget, widgets.VBox) and {p.tabs, p.view.widget, p.render_button} <= set(_tree(p.widget))
    s = Settings.defaults("latent")
    shown = show_panel(s)
    assert isinstance(shown, SettingsPanel) and shown.settings is s


# ----------------------------------------------------------------------------------------------- discolib stays widget-free
DISCOLIB_DIR = Path(discolib.__file__).parent


def test_discolib_source_never_imports_widgets() -> None:
    """Static: no module of discolib imports ipywidgets, IPython or the panel, even lazily inside a function."""
    banned = ("ipywidgets", "discolib_widgets", "IPython")
    files = sorted(DISCOLIB_DIR.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in banned, f"{path.relative_to(DISCOLIB_DIR)} imports {n}"


@pytest.mark.slow
def test_importing_discolib_loads_no_ipywidgets() -> None:
    """Runtime, in a fresh interpreter: the modules a script or the CLI imports (and what they pull in)."""
    code = (
        "import importlib, importlib.util, sys\n"
        "mods = ['discolib', 'discolib.config.settings', 'discolib.schedules.keyframes', 'discolib.schedules.prompts', 'discolib.run.runs',\n"
        "        'discolib.run.events', 'discolib.cli']\n"
        "mods += [m for m in ('discolib.run.loop',) if importlib.util.find_spec(m) is not None]\n"
        "for m in mods: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('ipywidgets', 'discolib_widgets'))\n"
        "print(len(mods), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.split()[0]) >= 7


def test_start_anyway_passes_force_and_a_refusal_says_how(tmp_path: Path) -> None:
    """A run refused by the CPU budget check can be started from the panel: 'start anyway' passes force=True."""
    from discolib.errors import ResourceLimitError

    seen: list[dict[str, Any]] = []

    def budgeted(settings: Settings, **kw: Any) -> RenderResult:
        seen.append(kw)
        if not kw.get("force"):
            raise ResourceLimitError("8192x8192 guided stills (tiny): needs ~250 GiB of memory; pass --force")
        return RenderResult(run_dir=tmp_path / "run", status="done", frames=[])

    p = panel_in(tmp_path, render_fn=budgeted)
    p.render_button.click()
    assert p.wait(10)
    assert "force" not in seen[-1] and "start anyway" in p.error_area.value
    p.force.value = True
    p.render_button.click()
    assert p.wait(10)
    assert seen[-1]["force"] is True and p.last_result is not None and p.last_result.status == "done"


# ----------------------------------------------------------------------------------------------- notebook helpers
@pytest.fixture
def no_notebook_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in notebook.NOTEBOOK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_notebook_env")
def test_notebook_setup_without_environment_keeps_the_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    given = {"steps": 8}
    preset, frames, root, overrides = notebook_setup("tiny", 5, "runs", given, use_drive=True)  # not on Colab
    assert (preset, frames, root, overrides) == ("tiny", 5, "runs", {"steps": 8})
    assert overrides is not given  # the notebook's own dict is left as it was
    gpu_line, out_line = capsys.readouterr().out.splitlines()
    expected_gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (rendering on the CPU)"
    assert gpu_line.startswith(f"GPU: {expected_gpu}") and out_line == f"outputs go to {os.path.abspath('runs')}"


@pytest.mark.usefixtures("no_notebook_env")
def test_notebook_setup_environment_replaces_parameters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISCOLIB_PRESET", "tiny-latent")
    monkeypatch.setenv("DISCOLIB_MAX_FRAMES", "3")
    monkeypatch.setenv("DISCOLIB_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("DISCOLIB_OVERRIDES", '{"output.fps": 4, "steps": 2}')
    got = notebook_setup("sd-1.5", 60, "runs", {"steps": 30, "cadence": 2})
    assert got == ("tiny-latent", 3, str(tmp_path), {"steps": 2, "cadence": 2, "output.fps": 4})


@pytest.mark.usefixtures("no_notebook_env")
def test_notebook_setup_on_colab_mounts_drive_only_with_use_drive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in google.colab module: the custom widget manager is on; use_drive mounts Drive and moves
    output_root (and the models, unless overridden) under it."""
    import types

    mounted: list[str] = []
    managers: list[bool] = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)  # type: ignore[attr-defined]
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: managers.append(True))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert notebook_setup("tiny", 2, "runs", {})[2] == "runs" and mounted == [] and managers == [True]
    _, _, root, overrides = notebook_setup("tiny", 2, "runs", {}, use_drive=True)
    assert mounted == ["/content/drive"] and root == "/content/drive/MyDrive/discolib/runs"
    assert overrides == {"models.models_root": notebook.DRIVE_MODELS}
    assert notebook_setup("tiny", 2, "runs", {"models.models_root": "/m"}, use_drive=True)[3] == {"models.models_root": "/m"}


def test_finish_settings_applies_overrides_last_and_validates(capsys: pytest.CaptureFixture[str]) -> None:
    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    s.set("animation.max_frames", 4)
    finish_settings(s, {"max_frames": 6, "output.fps": 5}, preset="tiny-latent")
    assert s.animation.max_frames == 6 and s.output.fps == 5.0
    assert capsys.readouterr().out == (
        f"latent mode, preset tiny-latent: {s.image.width}x{s.image.height}, {s.image.steps} steps, "
        f"animation 3D, device {s.models.device}\n"
    )
    with pytest.raises(SettingsError, match="image.width"):
        finish_settings(s, {"width": 100}, preset="tiny-latent")  # not a multiple of 64: refused by validate()
    assert capsys.readouterr().out == ""


def test_show_result_displays_the_video_or_the_last_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr(notebook, "display", shown.append)
    frames = [tmp_path / f"{i:06d}.png" for i in range(2)]
    for i, path in enumerate(frames):
        Image.new("RGB", (8, 8), (i * 100, 0, 0)).save(path)
    video = tmp_path / "video.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    show_result(RenderResult(run_dir=tmp_path, status="done", frames=frames, video=video))
    assert capsys.readouterr().out == f"done: 2 image(s) in {tmp_path}\n"
    (vid,) = shown
    assert type(vid).__name__ == "Video" and vid.embed and vid.width == 512
    shown.clear()
    show_result(RenderResult(run_dir=tmp_path, status="stopped", frames=frames))
    (img,) = shown
    assert type(img).__name__ == "Image" and img.data == frames[-1].read_bytes()
    assert capsys.readouterr().out.startswith("stopped: 2 image(s)")
    shown.clear()
    show_result(RenderResult(run_dir=tmp_path, status="stopped"))  # stopped before the first frame: nothing to show
    assert shown == []


def test_record_summary_reads_run_json(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path, "b", Settings.defaults().to_json())
    assert record_summary(folder.path) == "created True"  # no frames asked for yet: 0 of 0
    folder.write_record(RunRecord(status="interrupted", frames_total=3, frames_done=1, seeds=[1]))
    assert record_summary(folder.path) == "interrupted False"
    folder.write_record(RunRecord(status="done", frames_total=3, frames_done=3, seeds=[1, 2, 3]))
    assert record_summary(str(folder.path)) == "done True"


# ----------------------------------------------------------------------------------------------- photo notebook
@pytest.mark.usefixtures("no_notebook_env")
def test_photo_setup_environment_replaces_parameters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = notebook.photo_setup(4.0, 24.0, "depth-anything/Depth-Anything-V2-Small-hf", "runs")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert got == (4.0, "depth-anything/Depth-Anything-V2-Small-hf", "runs", device)
    assert capsys.readouterr().out.splitlines()[1] == f"outputs go to {os.path.abspath('runs')}"
    monkeypatch.setenv("DISCOLIB_DEPTH_MODEL", "constant")
    monkeypatch.setenv("DISCOLIB_OUTPUT_ROOT", str(tmp_path))
    monkeypatch.setenv("DISCOLIB_MAX_FRAMES", "3")
    seconds, depth_model, root, _ = notebook.photo_setup(4.0, 24.0, "x", "runs")
    assert (round(seconds * 24), depth_model, root) == (3, "constant", str(tmp_path))  # a cap on the frames
    assert notebook.photo_setup(0.05, 24.0, "x", "runs")[0] == 0.05  # already shorter: kept


@pytest.mark.usefixtures("no_notebook_env")
def test_photo_setup_on_colab_moves_outputs_to_drive(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    mounted: list[str] = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)  # type: ignore[attr-defined]
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert notebook.photo_setup(1.0, 8.0, "constant", "runs")[2] == "runs" and mounted == []
    assert notebook.photo_setup(1.0, 8.0, "constant", "runs", use_drive=True)[2] == f"{notebook.DRIVE_ROOT}/runs"
    assert mounted == ["/content/drive"]


def test_demo_photo_is_deterministic_and_not_flat(tmp_path: Path) -> None:
    import numpy as np

    a = notebook.demo_photo(tmp_path / "a" / "demo.png")
    b = notebook.demo_photo(tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as img:
        assert img.size == (notebook.DEMO_SIZE[1], notebook.DEMO_SIZE[0]) and img.mode == "RGB"
        levels = set(np.unique(np.asarray(img.convert("L"))).tolist())
    assert len(levels) > 20 and max(levels) - min(levels) > 120  # shapes at many brightnesses, not one flat tone


def test_photo_source_path_upload_or_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "out"
    assert notebook.photo_source(" https://example.com/a.jpg ", None, str(root)) == "https://example.com/a.jpg"
    assert not root.exists()  # a given photo writes nothing
    # Colab's files.upload(): {name: bytes}; a name with a path in it stays one file under uploads/.
    got = notebook.photo_source("", {"../../evil dir/me.png": b"png-bytes"}, str(root))
    assert Path(got) == root / "uploads" / "me.png" and Path(got).read_bytes() == b"png-bytes"
    # ipywidgets 8's FileUpload, its value set the way the browser's upload sets it (through the deserializer).
    upload = widgets.FileUpload()
    upload.set_state({"value": [
        {"name": "..\\x y.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc"), "last_modified": 0},
    ]})  # fmt: skip
    got = notebook.photo_source("", upload, str(root))
    assert Path(got).parent == root / "uploads" and Path(got).name == "x_y.jpg" and Path(got).read_bytes() == b"abc"
    capsys.readouterr()
    for empty in (None, {}, widgets.FileUpload()):
        got = notebook.photo_source("", empty, str(root))
        assert Path(got) == root / "demo-photo.png" and Path(got).is_file()
        assert capsys.readouterr().out == f"no photo given: the built-in demo image {got}\n"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "demo-photo.png", "uploads", "uploads/me.png", "uploads/x_y.jpg",
    ]  # fmt: skip


def test_photo_upload_button_colab_picker_or_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import types

    shown: list[Any] = []
    monkeypatch.setattr(notebook, "display", shown.append)
    assert notebook.photo_upload("me.jpg") is None and shown == []
    assert capsys.readouterr().out == "photo: me.jpg\n"
    button = notebook.photo_upload("")
    assert isinstance(button, widgets.FileUpload) and shown == [button] and button.accept == "image/*"
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(upload=lambda: {"a.png": b"x"})  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert notebook.photo_upload("") == {"a.png": b"x"}


def test_photo_outputs_names_the_video_after_the_photo_and_camera(tmp_path: Path) -> None:
    out = notebook.photo_outputs(str(tmp_path / "my photo.jpg"), "runs", "orbit")
    assert out == {"out": str(Path("runs") / "photo" / "my_photo-orbit.mp4"), "mesh": None}
    out = notebook.photo_outputs("https://example.com/pics/cat.png?size=2", "r", "cams/path.json", mesh=True)
    assert out == {"out": str(Path("r/photo/cat-path.mp4")), "mesh": str(Path("r/photo/cat-path.glb"))}
    assert notebook.photo_outputs("https://example.com/", "r", "pan")["out"] == str(Path("r/photo/example-pan.mp4"))


def test_photo_progress_updates_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[Any] = []

    class Handle:
        def update(self, obj: Any, raw: bool = False) -> None:
            updates.append(obj["text/plain"])

    shown: list[Any] = []
    monkeypatch.setattr(notebook, "display", lambda obj, **kw: shown.append((obj, kw)) or Handle())
    progress = notebook.photo_progress()
    progress(1, 3)
    progress(3, 3)
    assert shown == [({"text/plain": "starting"}, {"raw": True, "display_id": True})]
    assert updates == ["frame 1/3", "frame 3/3"]


def test_show_photo_result_displays_depth_and_video(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from discolib.run.photo import PhotoResult

    shown: list[Any] = []
    monkeypatch.setattr(notebook, "display", lambda obj, **kw: shown.append((obj, kw)))
    depth_png = tmp_path / "depth.png"
    Image.new("L", (8, 8), 128).save(depth_png)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    result = PhotoResult(
        video=video, run_dir=tmp_path, frames=[tmp_path / "0.png"] * 3, fps=8.0, schedules={},
        depth=np.ones((8, 8), np.float32), depth_png=depth_png, fill="opencv", mesh=tmp_path / "m.glb",
    )  # fmt: skip
    notebook.show_photo_result(result)
    (depth, _), (vid, how) = shown
    assert type(depth).__name__ == "Image" and depth.data == depth_png.read_bytes()
    embedded = base64.b64encode(video.read_bytes()).decode("ascii")
    assert how == {"raw": True} and f"data:video/mp4;base64,{embedded}" in vid["text/html"]  # the video, embedded
    out = capsys.readouterr().out
    assert out.startswith(f"3 frames at 8 fps, fill opencv, in {tmp_path}\n")
    assert f"3D: {tmp_path / 'm.glb'}" in out and out.endswith(f"video: {video}\n")
