"""The settings panel for a Disco or Deforum user: the current mode's fields, presets, edits kept across notebook
re-runs, Load of Disco and Deforum files, Resume and the video of any run folder, and the layout fixes."""

from __future__ import annotations

import html
import io
import itertools
import threading
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pytest
import torch
from PIL import Image

import discolib.models.availability as availability
from discolib import RenderResult, RunFolder, Settings, apply_preset
from discolib.config.importers import ImportReport, load_settings_file
from discolib.config.settings import SettingsError, iter_fields
from discolib.config.ui import field_ui, is_shown, panel_layout
from discolib.run.events import RenderEvent
from discolib.run.runs import RunError, RunRecord
from discolib_widgets import SettingsPanel
from discolib_widgets.curve import CurveEditor
from discolib_widgets.fields import PLOT_SCALE, PLOT_SIZE, schedule_png
from discolib_widgets.panel import PANEL_CLASS, show_panel

DATA = Path(__file__).parent / "data"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_keys = itertools.count()


def _key() -> str:
    """A panel key no other test uses (kept edits live in the kernel for its lifetime)."""
    return f"test-panel-{next(_keys)}"


def _tree(widget: widgets.Widget) -> list[widgets.Widget]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _tree(child)
    return out


@pytest.fixture(autouse=True)
def no_weights_check(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The real check imports the model libraries (seconds); the panel's use of it is tested with this stand-in."""
    seen: list[str] = []

    def fake(settings: Settings) -> str | None:
        seen.append(settings.models.diffusion_model)
        return None

    monkeypatch.setattr(availability, "weights_problem", fake)
    return seen


@pytest.fixture(scope="module")
def shared() -> SettingsPanel:
    return SettingsPanel()


@pytest.fixture
def panel(shared: SettingsPanel) -> SettingsPanel:
    shared.show_all.value = False
    shared.settings = Settings.defaults()
    return shared


def _expected_shown(settings: Settings, show_all: bool = False) -> set[str]:
    mode, anim = settings.image.mode, settings.animation.animation_mode
    return {n for n in iter_fields() if is_shown(n, mode, anim, show_all=show_all, values=settings)}


def _titles_with_fields(shown: set[str]) -> list[str]:
    return [tab for tab, sections in panel_layout() if any(n in shown for _, names in sections for n in names)]


# ----------------------------------------------------------------------------------------------- mode filtering
@pytest.mark.parametrize(("mode", "anim"), [("guided", "None"), ("guided", "3D"), ("latent", "2D"), ("latent", "None")])
def test_only_the_fields_of_the_mode_and_animation_mode_show(panel: SettingsPanel, mode: str, anim: str) -> None:
    panel.settings = Settings.defaults(mode, anim)
    expected = _expected_shown(panel.settings)
    assert set(panel.shown_fields) == expected and 0 < len(expected) < len(iter_fields())
    assert list(panel.tabs.titles) == _titles_with_fields(expected)
    # a section with nothing shown hides with its heading
    for _tab, _page, sections in panel._pages:
        for box, names in sections:
            assert (box.layout.display != "none") == any(n in expected for n in names)
    other = "guided" if mode == "latent" else "latent"
    only_other = {n for n in iter_fields() if field_ui(n).modes == {other}}
    assert only_other and not only_other & expected  # e.g. no CLIP guidance scale in latent mode
    assert ("guidance.clip_guidance_scale" in expected) == (mode == "guided")
    assert ("animation.translation_z" in expected) == (anim == "3D")
    assert ("animation.zoom" in expected) == (anim == "2D")  # Disco's 3D has no zoom; 2D does


def test_mode_changes_update_the_panel_live_and_keep_the_selected_tab(panel: SettingsPanel) -> None:
    panel.tabs.selected_index = list(panel.tabs.titles).index("Prompts")
    panel.controls["animation.animation_mode"].input.value = "3D"
    assert set(panel.shown_fields) == _expected_shown(panel.settings)
    assert "animation.translation_z" in panel.shown_fields
    assert panel.tabs.titles[panel.tabs.selected_index] == "Prompts"
    panel.controls["image.mode"].input.value = "latent"
    assert set(panel.shown_fields) == _expected_shown(panel.settings)
    assert "animation.strength_schedule" in panel.shown_fields and "guidance.clip_guidance_scale" not in panel.shown_fields
    assert panel.tabs.titles[panel.tabs.selected_index] == "Prompts"
    panel.show_all.value = True
    assert set(panel.shown_fields) == set(iter_fields())
    assert list(panel.tabs.titles) == [tab for tab, _ in panel_layout()]
    panel.show_all.value = False
    assert set(panel.shown_fields) == _expected_shown(panel.settings)


def test_fields_another_setting_switches_on_show_with_it(panel: SettingsPanel) -> None:
    """E.g. the secondary model's name only matters while the secondary model is used (discolib.config.ui)."""
    panel.controls["models.use_secondary_model"].input.value = True
    assert "models.secondary_model" in panel.shown_fields
    panel.controls["models.use_secondary_model"].input.value = False
    assert "models.secondary_model" not in panel.shown_fields
    assert set(panel.shown_fields) == _expected_shown(panel.settings)


def test_labels_originals_and_help_are_shown(panel: SettingsPanel) -> None:
    seed = panel.controls["run.seed"].label.value
    assert ">Seed<br>" in seed and "seed (Disco, Deforum)" in seed  # one name both originals use: said once
    with_originals = [n for n in iter_fields() if field_ui(n).originals]
    assert with_originals
    for name in with_originals:
        control = panel.controls[name]
        line = control.label.value.split('class="discolib-orig"', 1)[1]
        for original in field_ui(name).originals:
            tool, _, key = original.partition(": ")
            assert html.escape(tool) in line and html.escape(key) in line, (name, original)
        assert 'class="discolib-orig"' in control.label.value and "color:#888" in control.label.value
    zoom = panel.controls["animation.zoom"]
    # label, input and toggles in one row; help, message and plot under it
    header, help_line, message, plot = zoom.box.children
    assert header.children[:2] == (zoom.label, zoom.input) and zoom.plot_toggle in header.children
    assert (help_line, message, plot) == (zoom.help_line, zoom.message, zoom.plot)
    assert html.escape(field_ui("animation.zoom").help) in help_line.value


# ----------------------------------------------------------------------------------------------- presets
def test_preset_picker_applies_a_preset_and_switches_mode(tmp_path: Path) -> None:
    s = Settings.defaults("guided", "3D")
    s.run.output_root = str(tmp_path)
    s.prompts.text_prompts = {"0": ["a red fox"]}
    p = SettingsPanel(s, key=_key())
    p.preset.value = "tiny"
    assert p.settings is s and s.models.diffusion_model == "tiny" and s.image.width == 64
    assert p.controls["image.width"].input.value == 64
    assert "preset tiny:" in p.preset_note.value and "diffusion_model" in p.preset_note.value
    assert "-> latent mode" not in p.preset_note.value  # same mode: no switch
    p.preset.value = "tiny-latent"
    assert s.image.mode == "latent" and s.models.latent_model == "tiny-latent"
    assert html.escape("guided -> latent mode") in p.preset_note.value
    expected = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    assert s.latent.cfg_scale == expected.latent.cfg_scale  # the latent mode's defaults
    assert s.run.output_root == str(tmp_path) and s.animation.animation_mode == "3D"
    assert "animation.strength_schedule" in p.shown_fields and "guidance.clip_guidance_scale" not in p.shown_fields
    assert "tiny-latent" in p.summary()


def test_weights_problem_is_shown_at_start_and_after_a_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    def problem(settings: Settings) -> str | None:
        if settings.models.diffusion_model == "tiny":
            return None
        return f"offline and not downloaded: {settings.models.diffusion_model}"

    monkeypatch.setattr(availability, "weights_problem", problem)
    p = SettingsPanel()
    assert p.wait_weights(30)
    assert "offline and not downloaded: 512x512" in p.weights_note.value and p.weights_note.layout.display == ""
    assert "settings valid" in p.validity.value  # both shown: valid settings, but their weights are missing
    p.preset.value = "tiny"
    assert p.wait_weights(30)
    assert p.weights_note.value == "" and p.weights_note.layout.display == "none"


# ----------------------------------------------------------------------------------------------- kept edits
def test_edits_are_kept_across_notebook_reruns_until_reset() -> None:
    key = _key()
    first = Settings.defaults("guided", "3D")
    p1 = SettingsPanel(first, key=key)
    assert p1.kept_row.layout.display == "none" and p1.kept_edits == {}
    p1.controls["run.seed"].input.value = 1234
    p1.controls["animation.translation_z"].input.value = "0: (5)"
    p1.controls["animation.translation_x"].input.value = "0: (oops"  # refused: not an edit
    assert p1.kept_edits == {"run.seed": 1234, "animation.translation_z": "0: (5)"}

    # the notebook re-runs: its settings cell builds the Settings again, the panel re-applies the edits in place
    second = Settings.defaults("guided", "3D")
    p2 = SettingsPanel(second, key=key)
    assert second.run.seed == 1234 and second.animation.translation_z == "0: (5)"
    assert p2.controls["run.seed"].input.value == 1234
    assert p2.kept_row.layout.display == "" and "kept 2 edit(s) from the last run" in p2.kept_note.value
    assert "seed" in p2.kept_note.value and "translation_z" in p2.kept_note.value
    assert p2.kept_edits == {"run.seed": 1234, "animation.translation_z": "0: (5)"}

    p2.reset_button.click()
    notebook = Settings.defaults("guided", "3D")
    assert second.to_dict() == notebook.to_dict()
    assert p2.controls["animation.translation_z"].input.value == notebook.animation.translation_z
    assert p2.kept_edits == {} and p2.kept_row.layout.display == "none"
    third = Settings.defaults("guided", "3D")
    SettingsPanel(third, key=key)
    assert third.to_dict() == Settings.defaults("guided", "3D").to_dict()


def test_reset_parameter_and_other_keys_drop_the_edits() -> None:
    key = _key()
    p1 = SettingsPanel(Settings.defaults(), key=key)
    p1.controls["image.steps"].input.value = 33
    other = Settings.defaults()
    SettingsPanel(other, key=_key())  # another key: nothing of key's
    assert other.image.steps == Settings.defaults().image.steps
    again = Settings.defaults()
    p3 = SettingsPanel(again, key=key, reset=True)
    assert again.image.steps == Settings.defaults().image.steps and p3.kept_edits == {}
    fresh = Settings.defaults()
    SettingsPanel(fresh, key=key)  # reset dropped them for good
    assert fresh.image.steps == Settings.defaults().image.steps


def test_a_load_is_kept_as_edits(tmp_path: Path) -> None:
    key = _key()
    s = Settings.defaults()
    p = SettingsPanel(s, key=key)
    p.load(DATA / "deforum_settings.txt")
    assert s.image.mode == "latent" and p.kept_edits["image.mode"] == "latent"
    again = Settings.defaults()
    SettingsPanel(again, key=key)
    assert again.to_dict() == s.to_dict()


# ----------------------------------------------------------------------------------------------- load
def test_load_settings_file_reads_all_three_kinds(tmp_path: Path) -> None:
    ours = tmp_path / "mine.txt"  # a discolib file is recognised by its shape, whatever its name
    Settings.defaults("latent", "2D").save(ours)
    loaded, report = load_settings_file(ours)
    assert report is None and loaded.to_dict() == Settings.defaults("latent", "2D").to_dict()
    disco, report = load_settings_file(DATA / "disco_v57_settings.txt", "2D")
    assert isinstance(report, ImportReport) and report.source_format.startswith("Disco")
    assert disco.image.mode == "guided" and disco.animation.animation_mode == "2D"
    deforum, report = load_settings_file(DATA / "deforum_settings.txt")
    assert isinstance(report, ImportReport) and deforum.image.mode == "latent"
    neither = tmp_path / "neither.json"
    neither.write_text('{"stepz": 10}')
    with pytest.raises(SettingsError, match="neither.json.*stepz"):
        load_settings_file(neither)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text('{"W": "wide", "H": 512, "animation_prompts": {"0": "a"}}')
    with pytest.raises(SettingsError, match="wrong.txt") as err:
        load_settings_file(wrong)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "mode", "words"),
    [("disco_v57_settings.txt", "guided", "Disco Diffusion"), ("deforum_settings.txt", "latent", "Deforum")],
)
def test_load_imports_disco_and_deforum_files_with_the_report(tmp_path: Path, name: str, mode: str, words: str) -> None:
    def broken(settings: Settings, **_kw: Any) -> RenderResult:
        raise ValueError("models.diffusion_model: no such checkpoint")

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=broken)
    p.render()
    assert p.wait(10) and "no such checkpoint" in p.error_area.value and "failed" in p.status.value
    p.path.value = str(DATA / name)
    p.load_button.click()
    report = p.last_import
    assert report is not None and p.settings is s and s.to_dict() == report.settings.to_dict()
    assert s.image.mode == mode and p.controls["image.mode"].input.value == mode
    first_line = report.summary().splitlines()[0]
    message = p.file_message.value
    assert html.escape(first_line) in message and words in message
    assert "<details><summary>import report</summary>" in message
    for warning in report.warnings:
        assert html.escape(warning) in message.split("<details>")[0]  # warnings visible, not folded
    # a previous render's error and status are gone
    assert p.error_area.value == "" and p.status.value == ""
    assert set(p.shown_fields) == _expected_shown(s)


# ----------------------------------------------------------------------------------------------- resume
def _fake_render(n_frames: int = 5, calls: list[dict[str, Any]] | None = None):  # noqa: ANN202 - a test helper
    """A render with the real signature writing 8x8 frames and run.json as the real one does (no model)."""

    def render(
        settings: Settings,
        *,
        out: Any = None,
        resume: Any = None,
        callback: Any = None,
        stop: threading.Event | None = None,
        progress: bool = True,
        force: bool = False,
    ) -> RenderResult:
        if calls is not None:
            calls.append({"resume": resume})
        emit = callback or (lambda _e: None)
        folder = (
            RunFolder.open(resume)
            if resume is not None
            else RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json())
        )
        first = folder.resume_point()
        record = folder.read_record()
        record.frames_total = n_frames
        emit(RenderEvent("start", frame=first, total_frames=n_frames, path=folder.path))
        frames = [folder.frame_path(i) for i in range(first)]
        for f in range(first, n_frames):
            if stop is not None and stop.is_set():
                record.status = "interrupted"
                folder.write_record(record)
                return RenderResult(run_dir=folder.path, status="stopped", frames=frames)
            frames.append(folder.save_frame(f, torch.full((1, 3, 8, 8), f / n_frames)))
            record.status, record.frames_done = "running", f + 1
            folder.write_record(record)
            emit(RenderEvent("frame", frame=f, total_frames=n_frames, path=frames[-1], seed=f))
        record.status = "done"
        folder.write_record(record)
        return RenderResult(run_dir=folder.path, status="done", frames=frames)

    return render


def _stopped_run(settings: Settings, n_frames: int = 5, after: int = 2) -> Path:
    """A run stopped after ``after`` frames, made by the fake render as an earlier kernel would have."""
    stop = threading.Event()

    def on_event(event: RenderEvent) -> None:
        if event.kind == "frame" and event.frame == after - 1:
            stop.set()

    result = _fake_render(n_frames)(settings, callback=on_event, stop=stop)
    assert result.status == "stopped" and len(result.frames) == after
    return Path(result.run_dir)


def test_resume_a_run_folder_from_a_new_panel(tmp_path: Path) -> None:
    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    run_dir = _stopped_run(s)
    calls: list[dict[str, Any]] = []
    p = SettingsPanel(Settings.defaults(), render_fn=_fake_render(calls=calls))  # a new kernel's panel
    assert p.resume_button.disabled  # its batch has no runs
    p.run_folder.value = str(run_dir)
    assert not p.resume_button.disabled and "2 of 5 frames done" in p.resume_note.value
    p.resume_button.click()
    assert p.wait(10) and p.last_error is None, p.error_area.value
    assert calls == [{"resume": run_dir}] and p.last_result is not None and p.last_result.status == "done"
    assert RunFolder.open(run_dir).complete_frames() == [0, 1, 2, 3, 4]
    assert f"done: 5 frame(s) in {run_dir}" in p.status.value
    assert p.resume_button.disabled and "already done" in p.resume_note.value


def test_resume_latest_of_the_batch(tmp_path: Path) -> None:
    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    run_dir = _stopped_run(s, after=3)
    calls: list[dict[str, Any]] = []
    p = SettingsPanel(s.copy(), render_fn=_fake_render(calls=calls))
    assert not p.resume_button.disabled and "3 of 5 frames done" in p.resume_note.value  # empty box: latest
    p.resume()
    assert p.wait(10) and calls == [{"resume": run_dir}]
    with pytest.raises(RunError, match="already done"):
        p.resume("latest")


def test_resume_offered_after_the_render_cell_stops_a_run(tmp_path: Path) -> None:
    """The panel is shown before the render cell; a run that cell stops becomes resumable from the panel."""
    from discolib_widgets.view import RenderView, render_here

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=_fake_render())
    assert p.resume_button.disabled  # no run yet
    stop = threading.Event()

    def stop_after_two(event: RenderEvent) -> None:
        view(event)
        if event.kind == "frame" and event.frame == 1:
            stop.set()

    view = RenderView(backend="widgets")
    result = render_here(s, stop=stop, view=view,
                         render_fn=lambda settings, **kw: _fake_render()(settings, **{**kw, "callback": stop_after_two}))
    assert result.status == "stopped"
    assert not p.resume_button.disabled and "2 of 5 frames done" in p.resume_note.value


def test_resume_not_offered_after_a_failed_render_with_no_frame(tmp_path: Path) -> None:
    def fails_at_once(settings: Settings, **kw: Any) -> RenderResult:
        folder = RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json())
        kw["callback"](RenderEvent("start", frame=0, total_frames=3, path=folder.path))
        folder.write_record(RunRecord(status="failed", frames_total=3, error="out of memory"))
        raise MemoryError("out of memory")

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=fails_at_once)
    p.render()
    assert p.wait(10) and isinstance(p.last_error, MemoryError)
    assert p.run_dir is not None and p.run_dir.parent == tmp_path / s.run.batch_name
    assert p.resume_button.disabled and "no complete frame yet" in p.resume_note.value
    with pytest.raises(RunError, match="no complete frame yet"):
        p.resume()
    p.resume_button.click()  # disabled in the browser; a click from Python says why in the panel
    assert "no complete frame yet" in p.error_area.value


def test_a_stop_before_the_first_frame_is_not_called_resumable(tmp_path: Path) -> None:
    def stopped_at_once(settings: Settings, *, callback: Any = None, **_kw: Any) -> RenderResult:
        folder = RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json())
        callback(RenderEvent("start", frame=0, total_frames=5, path=folder.path))
        callback(RenderEvent("step", frame=0, total_frames=5, step=1, total_steps=10))
        callback(RenderEvent("stopped", frame=0, total_frames=5, path=folder.path))
        return RenderResult(run_dir=folder.path, status="stopped", frames=[])

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=stopped_at_once)
    p.render()
    assert p.wait(10) and p.last_result is not None and p.last_result.status == "stopped"
    assert "nothing to resume" in p.status.value and "is resumable" not in p.status.value
    assert "nothing to resume" in p.view.state.text and p.resume_button.disabled


# ----------------------------------------------------------------------------------------------- video
def test_make_video_of_a_run_folder(tmp_path: Path) -> None:
    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    run_dir = _stopped_run(s, n_frames=4, after=3)
    for i in range(3):  # real frames with content (the fake's are flat grey)
        Image.new("RGB", (64, 64), (i * 80, 40, 200 - i * 60)).save(RunFolder(run_dir).frame_path(i))
    p = SettingsPanel(Settings.defaults())
    assert p.video.layout.display == "none"
    p.run_folder.value = str(run_dir)
    p.video_fps.value = 6
    p.video_button.click()
    assert p.wait_video(60)
    assert p.error_area.value == "", p.error_area.value
    made = sorted(run_dir.glob("video*"))
    assert len(made) == 1 and "6fps" in made[0].name, made
    assert bytes(p.video.value) == made[0].read_bytes() and p.video.layout.display == ""
    assert html.escape(str(made[0])) in p.video_note.value
    empty = RunFolder.create(tmp_path, "empty", s.to_json())
    p.run_folder.value = str(empty.path)
    p.video_button.click()
    assert p.wait_video(60)
    assert "has no complete frame yet" in p.error_area.value and not p.video_button.disabled


def test_make_video_runs_on_a_thread_and_names_a_video_too_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import discolib.run.video as video_module
    import discolib_widgets.view as view_module

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    run_dir = _stopped_run(s, n_frames=4, after=2)
    release, started = threading.Event(), threading.Event()
    made: list[threading.Thread] = []

    def slow_encode(run: Any, *, fps: float | None = None, **_kw: Any) -> Path:
        made.append(threading.current_thread())
        started.set()
        assert release.wait(30)
        if fps == 13:
            raise RuntimeError("the encoder crashed")
        out = Path(run) / "video.mp4"
        out.write_bytes(b"\0" * 4096)
        return out

    monkeypatch.setattr(video_module, "make_run_video", slow_encode)
    monkeypatch.setattr(view_module, "MAX_EMBED_BYTES", 1024)
    p = SettingsPanel(s)
    p.run_folder.value = str(run_dir)
    p.video_button.click()  # returns while the encode runs: the kernel is not blocked
    assert started.wait(10) and p.video_running and made and made[0] is not threading.main_thread()
    assert p.video_button.disabled and p.render_button.disabled and p.resume_button.disabled
    assert "making the video" in p.video_note.value
    with pytest.raises(RuntimeError, match="video is being made"):
        p.render()
    release.set()
    assert p.wait_video(30)
    assert not p.video_button.disabled and not p.render_button.disabled and not p.resume_button.disabled
    # over MAX_EMBED_BYTES: named with its size, never read into the notebook
    assert "too large to show here" in p.video_note.value and html.escape(str(run_dir / "video.mp4")) in p.video_note.value
    assert p.video.layout.display == "none" and bytes(p.video.value) == b"" and p.error_area.value == ""
    # an encoder failure is shown in the panel (the thread never raises into ipywidgets), and goes with the next try
    p.video_fps.value = 13
    p.video_button.click()
    assert p.wait_video(30) and "the encoder crashed" in p.error_area.value and not p.video_button.disabled
    p.video_fps.value = 0
    p.video_button.click()
    assert p.wait_video(30) and p.error_area.value == ""


# ----------------------------------------------------------------------------------------------- layout bugs
def _layouts(control: Any) -> list[dict[str, Any]]:
    header = control.box.children[0]
    parts = [control.input, control.label, header, *header.children]
    return [{k: getattr(w.layout, k) for k in ("width", "flex", "min_width", "max_width")} for w in parts]


def test_a_keyframe_error_changes_no_width_and_goes_below(panel: SettingsPanel) -> None:
    zoom = panel.controls["animation.zoom"]
    before = _layouts(zoom)
    zoom.input.value = "0: (1), 10: (1.1"
    assert zoom.error and _layouts(zoom) == before
    assert zoom.message not in zoom.box.children[0].children  # the message is under the row, not in it
    for button in (zoom.plot_toggle, zoom.curve_toggle):
        assert button is not None and button.layout.width == "auto" and button.layout.flex == "0 0 auto"
    # no button of the panel can be squeezed into "..."
    panel.show_all.value = True  # every tab's page in the tree
    buttons = [w for w in _tree(panel.widget) if isinstance(w, (widgets.Button, widgets.ToggleButton))]
    assert len(buttons) > 10 and all(b.layout.width == "auto" for b in buttons)


def test_fix_the_invalid_fields_first_goes_once_fixed(tmp_path: Path) -> None:
    p = SettingsPanel(Settings.defaults(), render_fn=_fake_render())
    p.controls["run.batch_name"].input.value = "   "
    assert p.render() is None and "fix the invalid fields first" in p.error_area.value
    p.controls["run.batch_name"].input.value = "ok"
    assert p.error_area.value == ""


def test_a_new_render_clears_the_last_error(tmp_path: Path) -> None:
    outcomes = iter([ValueError("first fails"), None])

    def flaky(settings: Settings, **kw: Any) -> RenderResult:
        exc = next(outcomes)
        if exc is not None:
            raise exc
        return _fake_render(1)(settings, **kw)

    s = Settings.defaults()
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=flaky)
    p.render()
    assert p.wait(10) and "first fails" in p.error_area.value
    p.render()
    assert p.wait(10) and p.error_area.value == "" and "done: 1 frame(s)" in p.status.value


def test_plots_are_drawn_at_their_shown_size_and_hidden_until_drawn(panel: SettingsPanel) -> None:
    angle = panel.controls["animation.angle"]
    assert angle.plot is not None and angle.plot_toggle is not None
    assert angle.plot.layout.display == "none" and bytes(angle.plot.value) == b""  # no broken-image icon
    assert (angle.plot.layout.width, angle.plot.layout.height) == (f"{PLOT_SIZE[0]}px", f"{PLOT_SIZE[1]}px")
    angle.plot_toggle.value = True
    png = bytes(angle.plot.value)
    assert png.startswith(PNG_MAGIC) and angle.plot.layout.display == ""
    assert Image.open(io.BytesIO(png)).size == (PLOT_SIZE[0] * PLOT_SCALE, PLOT_SIZE[1] * PLOT_SCALE)
    assert png == schedule_png(panel.settings.animation.angle, "animation.angle", panel.settings.animation.max_frames)
    small = schedule_png("0: (0), 9: (1)", "animation.angle", 10, size=(200, 80), scale=1)
    assert Image.open(io.BytesIO(small)).size == (200, 80)
    angle.plot_toggle.value = False
    assert angle.plot.layout.display == "none"


# ----------------------------------------------------------------------------------------------- curve editor
def test_curve_toggle_links_the_editor_both_ways(panel: SettingsPanel) -> None:
    zoom = panel.controls["animation.zoom"]
    assert zoom.curve is None and zoom.curve_toggle is not None  # made only when asked for
    zoom.input.value = "0: (1), 10: (1.5)"
    zoom.curve_toggle.value = True
    editor = zoom.curve
    assert isinstance(editor, CurveEditor) and zoom.curve_box in zoom.box.children
    assert editor.text == "0: (1), 10: (1.5)"
    assert (editor.max_frames, editor.interpolation) == (panel.settings.animation.max_frames, "linear")
    zoom.input.value = "0: (1), 20: (2)"  # typed -> the curve
    assert editor.text == "0: (1), 20: (2)"
    editor.text = "0: (1.25), 20: (2)"  # dragged -> the text box and the Settings
    assert zoom.input.value == "0: (1.25), 20: (2)" and panel.settings.animation.zoom == "0: (1.25), 20: (2)"
    panel.controls["animation.max_frames"].input.value = 40
    panel.controls["animation.interpolation"].input.value = "cubic"
    assert (editor.max_frames, editor.interpolation) == (40, "cubic")
    zoom.curve_toggle.value = False
    assert zoom.curve_box is not None and zoom.curve_box.layout.display == "none"
    zoom.curve_toggle.value = True
    assert zoom.curve is editor and zoom.curve_box.layout.display == ""


def test_dragging_the_curve_draws_no_plot(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drag sends an edit every 50 ms: each must only set the field and check validity, never draw a PNG."""
    import discolib_widgets.fields as fields_module

    p = SettingsPanel(Settings.defaults("guided", "2D"))
    angle = p.controls["animation.angle"]
    assert angle.plot_toggle is not None and angle.curve_toggle is not None
    angle.plot_toggle.value = True  # the plot was open before the curve
    angle.curve_toggle.value = True
    assert angle.plot is not None and angle.plot.layout.display == "none"  # the curve is the plot
    drawn: list[str] = []
    original = fields_module.schedule_png

    def counting(text: str, *args: Any, **kwargs: Any) -> bytes:
        drawn.append(text)
        return original(text, *args, **kwargs)

    refreshed: list[int] = []
    refresh = p._refresh_visibility
    monkeypatch.setattr(fields_module, "schedule_png", counting)
    monkeypatch.setattr(p, "_refresh_visibility", lambda: refreshed.append(1) or refresh())
    for i in range(5):
        angle.curve.text = f"0: (0), 10: ({i + 1})"  # as the browser's drag messages arrive
    assert p.settings.animation.angle == "0: (0), 10: (5)" and angle.input.value == "0: (0), 10: (5)"
    assert drawn == [] and refreshed == [] and angle.plot.layout.display == "none"
    assert "settings valid" in p.validity.value
    # closing the curve brings the plot back, drawn with the value the curve left
    angle.curve_toggle.value = False
    assert drawn == ["0: (0), 10: (5)"] and angle.plot.layout.display == ""
    assert bytes(angle.plot.value) == original("0: (0), 10: (5)", "animation.angle", p.settings.animation.max_frames)
    # and a drag with the plot closed does not open it either
    angle.plot_toggle.value = False
    angle.curve_toggle.value = True
    angle.curve.text = "0: (0), 10: (7)"
    assert not angle.plot_toggle.value and drawn == ["0: (0), 10: (5)"]


def test_curve_editor_shows_no_text_box_nor_picker_and_the_seed_schedule_is_linear(panel: SettingsPanel) -> None:
    panel.settings = Settings.defaults("guided", "2D")
    panel.controls["animation.interpolation"].input.value = "cubic"
    panel.controls["animation.seed_behavior"].input.value = "schedule"
    zoom = panel.controls["animation.zoom"]
    zoom.curve_toggle.value = True  # type: ignore[union-attr]
    assert zoom.curve.show_text is False and zoom.curve.interpolation == "cubic"
    if "show_interpolation" in CurveEditor.class_trait_names():
        assert zoom.curve.show_interpolation is False
    assert zoom.curve_note is not None and zoom.curve_note in zoom.curve_box.children  # type: ignore[union-attr]
    assert "interpolation: cubic" in zoom.curve_note.value and "Motion › Frames" in zoom.curve_note.value
    # the seed schedule is always evaluated linearly (animation/plan.py): its curve and plot say so
    seed = panel.controls["animation.seed_schedule"]
    seed.input.value = "0: (5), 10: (50), 20: (10), 30: (40)"
    seed.curve_toggle.value = True  # type: ignore[union-attr]
    assert seed.curve.interpolation == "linear" and "linear" in seed.curve_note.value  # type: ignore[union-attr]
    panel.controls["animation.interpolation"].input.value = "quadratic"
    assert seed.curve.interpolation == "linear" and zoom.curve.interpolation == "quadratic"
    assert "interpolation: quadratic" in zoom.curve_note.value  # type: ignore[union-attr]
    seed.curve_toggle.value = False  # type: ignore[union-attr]
    seed.plot_toggle.value = True  # type: ignore[union-attr]
    n = panel.settings.animation.max_frames
    assert bytes(seed.plot.value) == schedule_png("0: (5), 10: (50), 20: (10), 30: (40)", "animation.seed_schedule", n, "linear")  # type: ignore[union-attr]
    assert schedule_png("0: (5), 10: (50), 20: (10), 30: (40)", "animation.seed_schedule", n, "cubic") != bytes(seed.plot.value)  # type: ignore[union-attr]
    for control in (zoom, seed):
        control.curve_toggle.value = False  # type: ignore[union-attr]
        control.plot_toggle.value = False  # type: ignore[union-attr]


def test_an_invalid_field_stays_shown_after_a_mode_switch_until_fixed(tmp_path: Path) -> None:
    s = Settings.defaults("guided", "2D")
    s.run.output_root = str(tmp_path)
    p = SettingsPanel(s, render_fn=_fake_render(1))
    zoom = p.controls["animation.zoom"]
    zoom.input.value = "0: (1), 10: (1.1"
    assert zoom.error and "animation.zoom" in p.shown_fields
    p.controls["animation.animation_mode"].input.value = "3D"  # 3D does not use zoom: it would hide it
    assert not is_shown("animation.zoom", "guided", "3D")
    assert "animation.zoom" in p.shown_fields and zoom.error  # still in view, with its message
    assert "animation.zoom" in p.errors and p.render() is None and "animation.zoom" in p.error_area.value
    zoom.input.value = "0: (1), 10: (1.1)"  # fixed: the mode's own rule hides it again
    assert not zoom.error and "animation.zoom" not in p.shown_fields and p.error_area.value == ""
    # typed while hidden (from Python): shown with its error; new Settings (or a reset) drop the pending error
    zoom.input.value = "oops"
    assert zoom.error and "animation.zoom" in p.shown_fields
    p.settings = Settings.defaults("guided", "3D")
    assert p.errors == {} and "animation.zoom" not in p.shown_fields
    zoom.input.value = "oops"
    p.reset_edits()  # back to the notebook's 2D settings
    assert p.errors == {} and not zoom.error and p.settings.animation.animation_mode == "2D"


def test_a_hidden_field_the_whole_settings_check_fails_on_is_shown() -> None:
    p = SettingsPanel(Settings.defaults("guided", "3D"))
    p.controls["animation.vr_mode"].input.value = True
    assert "settings valid" in p.validity.value
    p.controls["animation.animation_mode"].input.value = "2D"  # VR needs 3D, and 2D hides the VR switch
    assert not is_shown("animation.vr_mode", "guided", "2D")
    assert "animation.vr_mode" in p.validity.value and "animation.vr_mode" in p.shown_fields
    p.controls["animation.vr_mode"].input.value = False
    assert "settings valid" in p.validity.value and "animation.vr_mode" not in p.shown_fields


# ----------------------------------------------------------------------------------------------- display
def test_static_summary_instead_of_widget_text() -> None:
    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    p = SettingsPanel(s, preset="tiny-latent")
    bundle = p._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == p.widget.model_id
    text = bundle["text/plain"]
    assert text == "discolib panel: 3D latent, 8 frames, preset tiny-latent, 64x64, 4 steps (open in Jupyter to edit)"
    assert "VBox" not in text and html.escape(text) in bundle["text/html"]
    still = SettingsPanel(Settings.defaults())
    n = still.settings.run.n_batches
    model = still.settings.models.diffusion_model  # no preset picked: the model says what it renders
    assert still.summary().startswith(f"discolib panel: guided stills, {n} image(s), model {model}, ")


def test_panel_layout_side_by_side_with_a_scoped_style() -> None:
    p = show_panel(Settings.defaults(), key=_key())
    assert PANEL_CLASS in p.widget._dom_classes
    style, body = p.widget.children
    assert f".{PANEL_CLASS} .discolib-side" in style.value and "position: sticky" in style.value
    left, side = body.children
    assert body.layout.flex_flow == "row wrap"  # the right column wraps below when the output is narrow
    assert "discolib-settings" in left._dom_classes and "discolib-side" in side._dom_classes
    assert p.tabs in _tree(left) and {p.render_button, p.stop_button, p.resume_button, p.view.widget} <= set(_tree(side))
