"""The soundtrack in the panel: the song view under output.soundtrack (features, frame cursor, values), a player,
schedules that read the song plotted over it, the library's one-line errors for bad files, and videos with sound.

Audio is synthesised in the test (clicks at 120 BPM and a gated 60 Hz tone, written with soundfile)."""

from __future__ import annotations

import html
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import IPython
import ipywidgets as widgets
import numpy as np
import pytest

import discolib.models.availability as availability
import discolib_widgets.audio as audio_mod
from discolib import Settings
from discolib.io.video import frames_to_video
from discolib.schedules.keyframes import Schedule
from discolib_widgets import SettingsPanel
from discolib_widgets.audio import SoundtrackView, audio_player, frame_text, song_png
from discolib_widgets.view import _video_widget, has_sound, video_bundle

sf = pytest.importorskip("soundfile")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SONG_SIZE_PX = (audio_mod.SONG_SIZE[0] * audio_mod.PLOT_SCALE, audio_mod.SONG_SIZE[1] * audio_mod.PLOT_SCALE)
SR = 22050
FPS = 15.0
SECONDS = 4.0
BASS_ZOOM = "0: (1 + 0.04*bass(t))"


def write_song(path: Path, seconds: float = SECONDS) -> Path:
    """Clicks every 0.5 s (120 BPM) and a 60 Hz tone gated on from 1 s to 2 s, mono 16-bit WAV."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    rng = np.random.default_rng(0)
    click = rng.standard_normal(int(0.01 * SR)) * np.hanning(int(0.01 * SR)) * 0.6
    for start in np.arange(0.0, seconds, 0.5):
        i = int(start * SR)
        y[i : i + len(click)] += click[: len(y) - i]
    y += 0.5 * np.sin(2 * np.pi * 60.0 * t) * ((t >= 1.0) & (t < 2.0))
    sf.write(str(path), y.astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture(autouse=True)
def no_weights_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real check imports the model libraries (seconds); not what these tests are about."""
    monkeypatch.setattr(availability, "weights_problem", lambda _settings: None)


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_song(tmp_path_factory.mktemp("song") / "song.wav")


def _settings(tmp_path: Path, soundtrack: Path | str = "") -> Settings:
    s = Settings.defaults("guided", "2D")
    s.run.output_root = str(tmp_path / "out")
    s.output.fps = FPS
    s.animation.max_frames = 40
    s.output.soundtrack = str(soundtrack)
    return s


@pytest.fixture(scope="module")
def shared() -> SettingsPanel:
    """One panel for the module (building one costs about a second); each test gives it new Settings."""
    return SettingsPanel(Settings.defaults("guided", "2D"))


@pytest.fixture
def make_panel(shared: SettingsPanel, tmp_path: Path) -> Any:
    def make(soundtrack: Path | str = "") -> SettingsPanel:
        for control in shared.controls.values():
            if control.plot_toggle is not None:
                control.plot_toggle.value = False
        shared.settings = _settings(tmp_path, soundtrack)  # as a user loading settings: every value pushed
        assert shared.wait_audio(120) and shared.errors == {}
        return shared

    return make


def _view(panel: SettingsPanel) -> SoundtrackView:
    assert panel.soundtrack_view is not None
    return panel.soundtrack_view


def _tree(widget: widgets.Widget) -> list[widgets.Widget]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _tree(child)
    return out


# ---------------------------------------------------------------------------------------------- the song view
def test_setting_the_soundtrack_shows_the_song_view_and_a_player(make_panel: Any, song: Path) -> None:
    panel = make_panel()
    view = _view(panel)
    track = panel.controls["output.soundtrack"]
    assert view.box in track.box.children  # under the field, as its message and help are
    assert view.features is None and view.body.layout.display == "none" and view.player is None

    track.input.value = str(song)
    assert panel.wait_audio(120)
    expected = panel.settings.audio_features()
    assert expected is not None and view.features is not None
    assert view.features.key == expected.key
    for name in ("rms", "onset", "bass", "mid", "treble", "beat_frames", "bar_frames"):
        assert np.array_equal(getattr(view.features, name), getattr(expected, name)), name
    assert view.error == "" and view.body.layout.display == ""
    png = bytes(view.image.value)
    assert png.startswith(PNG_MAGIC) and view.image.layout.display == ""
    assert png == song_png(expected, 0)  # plot_features' drawing of the song, with the cursor at frame 0
    assert view.cursor.max == expected.n_frames - 1 == int(np.ceil(SECONDS * FPS)) - 1
    summary = expected.summary()
    assert f"{summary['beats']} beats" in view.summary.value and "BPM" in view.summary.value
    # the player plays the file's own bytes
    assert isinstance(view.player, widgets.Audio) and view.player in _tree(view.box)
    assert bytes(view.player.value) == song.read_bytes() and view.player.format == "wav" and view.player.controls
    assert not view.player.autoplay


def test_moving_the_cursor_updates_the_values_and_the_cursor(tmp_path: Path, song: Path) -> None:
    view = SoundtrackView(background=False)
    view.update(_settings(tmp_path, song))
    features = view.features
    assert features is not None
    first_png = bytes(view.image.value)
    assert "frame 0 (0.00 s)" in html.unescape(view.values.value)

    frame = 22  # inside the 60 Hz gate (1 s to 2 s at 15 fps)
    view.cursor.value = frame
    text = html.unescape(view.values.value)
    assert text.endswith("</span>") and frame_text(features, frame) in text
    assert f"frame {frame} ({frame / FPS:.2f} s)" in text
    assert f"bass {features.bass[frame]:.2f}" in text and f"rms {features.rms[frame]:.2f}" in text
    assert f"beat {float(features.sample('beat', np.asarray(float(frame)))):.2f}" in text
    assert features.bass[frame] > 0.5  # the gated tone, as the view says
    moved = bytes(view.image.value)
    assert moved.startswith(PNG_MAGIC) and moved != first_png and moved == song_png(features, frame)
    view.cursor.value = 0
    assert bytes(view.image.value) == first_png  # drawn once per frame (cached), the same PNG


def test_the_song_is_analysed_again_only_when_its_inputs_change(
    make_panel: Any, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[float] = []
    original = Settings.audio_features

    def counting(self: Settings, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.output.fps)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Settings, "audio_features", counting)
    panel = make_panel()
    panel.controls["output.soundtrack"].input.value = str(song)
    assert panel.wait_audio(120) and calls == [FPS]
    panel.controls["run.seed"].input.value = 7
    panel.controls["animation.zoom"].input.value = "0: (1.02)"
    panel.settings = panel.settings.copy()  # pushes every value again: same song, same features
    _view(panel).cursor.value = 5
    assert panel.wait_audio(60) and calls == [FPS]
    panel.controls["output.fps"].input.value = 10.0
    assert panel.wait_audio(60) and calls == [FPS, 10.0]
    assert _view(panel).features is not None and _view(panel).features.fps == 10.0  # type: ignore[union-attr]
    panel.controls["animation.beat_decay"].input.value = 0.5
    assert panel.wait_audio(60) and len(calls) == 3


@pytest.mark.parametrize("kind", ["missing", "not audio", "empty"])
def test_a_bad_file_shows_the_one_line_error_and_raises_nothing(
    make_panel: Any, tmp_path: Path, kind: str, logged_errors: list[logging.LogRecord]
) -> None:
    path = tmp_path / "song.wav"
    if kind == "not audio":
        path.write_bytes(b"this is not a sound file\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    panel = make_panel()
    view = _view(panel)
    panel.controls["output.soundtrack"].input.value = str(path)  # no exception, no thread: the header says
    assert view.error and "\n" not in view.error and "output.soundtrack" in view.error
    assert html.escape(view.error) in view.message.value and view.message in _tree(view.box)
    assert view.features is None and view.body.layout.display == "none" and view.player is None
    assert panel.settings.output.soundtrack == str(path)  # the value is set; the file is what is wrong
    # a schedule reading the song says why it has no curve: the soundtrack's error
    zoom = panel.controls["animation.zoom"]
    zoom.input.value = BASS_ZOOM
    assert zoom.error == "" and html.escape(view.error) in zoom.message.value and zoom.plot_values is None
    assert zoom.plot is not None and zoom.plot.layout.display == "none"
    # a good file later replaces the error by the song
    write_song(path)
    panel.controls["output.soundtrack"].input.value = ""
    panel.controls["output.soundtrack"].input.value = str(path)
    assert panel.wait_audio(120) and view.error == "" and view.features is not None
    assert zoom.plot_values is not None and zoom.message.value == ""
    assert [r.getMessage() for r in logged_errors] == []


def test_player_for_a_small_file_and_a_note_for_a_huge_one(
    tmp_path: Path, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = audio_player(song)
    assert isinstance(small, widgets.Audio) and bytes(small.value) == song.read_bytes()
    size = song.stat().st_size
    huge = audio_player(song, max_bytes=size - 1)
    assert not isinstance(huge, widgets.Audio) and "too large to play here" in huge.value
    # the view follows the module's limit (20 MB): a file over it gets the note, and no bytes travel
    monkeypatch.setattr(audio_mod, "MAX_PLAYER_BYTES", size - 1)
    view = SoundtrackView(background=False)
    view.update(_settings(tmp_path, song))
    assert view.features is not None  # the song is still analysed and shown
    assert view.player is not None and not isinstance(view.player, widgets.Audio)
    assert not any(isinstance(w, widgets.Audio) for w in _tree(view.box))
    assert "too large to play here" in view.player.value and "song.wav" in view.player.value


class _FakeKernelLoop:
    """A kernel's IO loop as the view uses it: add_callback from any thread, the callbacks run on the loop's own
    thread (here a thread named ``fake-kernel``, started by :meth:`run`)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], Any]] = []
        self.posted = threading.Event()

    def add_callback(self, callback: Callable[..., Any], *args: Any) -> None:
        self.callbacks.append(lambda: callback(*args))
        self.posted.set()

    def run(self) -> int:
        """Run the callbacks posted so far on the loop's thread; how many ran."""
        ran = len(self.callbacks)

        def drain() -> None:
            while self.callbacks:
                self.callbacks.pop(0)()

        thread = threading.Thread(target=drain, name="fake-kernel")
        thread.start()
        thread.join(120)
        assert not thread.is_alive()
        return ran


@pytest.fixture
def kernel_loop(monkeypatch: pytest.MonkeyPatch) -> _FakeKernelLoop:
    """As under an IPython kernel: get_ipython().kernel.io_loop is the fake loop."""
    assert audio_mod.kernel_loop() is None  # plain pytest: no kernel, the answer is shown directly
    loop = _FakeKernelLoop()
    monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace(kernel=SimpleNamespace(io_loop=loop)))
    assert audio_mod.kernel_loop() is loop
    return loop


def test_an_answer_that_comes_after_a_newer_update_is_dropped(
    tmp_path: Path, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()
    original = Settings.audio_features

    def slow(self: Settings, *args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(60)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Settings, "audio_features", slow)
    shown: list[Any] = []
    view = SoundtrackView(on_features=lambda features, _note, _error: shown.append(features))
    view.update(_settings(tmp_path, song))
    assert started.wait(60)
    view.update(_settings(tmp_path))  # the soundtrack cleared while its analysis runs
    release.set()
    assert view.wait(60)  # the analysis ended: its answer is older than the clearing, and dropped
    assert view.features is None and view.error == "" and view.body.layout.display == "none"
    assert shown == [None, None] and view.image.value == b""


def test_an_answer_waiting_for_the_kernels_thread_is_dropped_after_a_newer_update(
    tmp_path: Path, song: Path, kernel_loop: _FakeKernelLoop
) -> None:
    view = SoundtrackView()
    view.update(_settings(tmp_path, song))
    assert kernel_loop.posted.wait(120)  # the worker's answer waits for the kernel's thread ...
    assert view.features is None
    view.update(_settings(tmp_path))  # ... when the user clears the soundtrack
    assert kernel_loop.run() == 1
    assert view.features is None and view.body.layout.display == "none" and view.wait(10)


def test_the_panel_is_changed_on_the_kernels_thread_not_the_analysis_thread(
    make_panel: Any, song: Path, kernel_loop: _FakeKernelLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    panel = make_panel()
    view = _view(panel)
    zoom = panel.controls["animation.zoom"]
    zoom.input.value = BASS_ZOOM  # refused without a soundtrack; applied when the song's features arrive
    assert "set output.soundtrack" in zoom.error
    threads: list[str] = []
    setter = panel._set_from_widget

    def spy(control: Any) -> bool:
        threads.append(threading.current_thread().name)
        return setter(control)

    monkeypatch.setattr(panel, "_set_from_widget", spy)
    panel.controls["output.soundtrack"].input.value = str(song)  # on this thread: set, and the analysis started
    threads.clear()
    assert kernel_loop.posted.wait(120)
    assert threads == [] and view.features is None  # the worker only called the library
    assert kernel_loop.run() == 1
    assert view.features is not None and view.error == "" and view.image.value
    assert threads and set(threads) == {"fake-kernel"}  # the panel's callbacks ran on the kernel's thread
    assert zoom.error == "" and panel.settings.animation.zoom == BASS_ZOOM and zoom.plot_values is not None
    assert panel.wait_audio(10) and threads and set(threads) == {"fake-kernel"}  # shown once, not again


def test_waiting_in_a_cell_shows_the_answer_on_the_waiting_thread(
    tmp_path: Path, song: Path, kernel_loop: _FakeKernelLoop
) -> None:
    """A cell that waits blocks the kernel's loop: wait() shows the answer itself (the browser test's cell does)."""
    calls: list[tuple[str, bool]] = []
    view = SoundtrackView(
        on_features=lambda features, _note, _error: calls.append(
            (threading.current_thread().name, features is not None)
        )
    )
    view.update(_settings(tmp_path, song))
    assert view.wait(120) and view.features is not None and view.image.value
    me = threading.current_thread().name
    assert calls == [(me, False), (me, True)]
    assert kernel_loop.run() == 1 and calls == [(me, False), (me, True)]  # the loop's callback finds it shown


def _decode(png: bytes) -> np.ndarray:
    from PIL import Image

    assert png.startswith(PNG_MAGIC)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_a_cursor_move_draws_only_the_cursor_over_the_songs_drawing(
    tmp_path: Path, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import discolib.audio

    drawn: list[Any] = []
    original = discolib.audio.plot_features

    def counting(*args: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs.get("frame"))
        return original(*args, **kwargs)

    monkeypatch.setattr(discolib.audio, "plot_features", counting)
    monkeypatch.setattr(audio_mod, "_canvases", OrderedDict())  # no song drawn yet
    view = SoundtrackView(background=False)
    settings = _settings(tmp_path, song)
    view.update(settings)
    features = view.features
    assert features is not None
    for frame in (5, 22, 40, 22, 0):
        view.cursor.value = frame
        assert bytes(view.image.value) == song_png(features, frame)
    assert drawn == [None]  # the song's features drawn once, without a cursor; each frame adds only the cursor
    background = _decode(song_png(features, None))
    assert background.shape == (SONG_SIZE_PX[1], SONG_SIZE_PX[0], 3)

    def cursor(frame: int) -> tuple[np.ndarray, int]:
        changed = (_decode(song_png(features, frame)) != background).any(axis=2)
        return np.flatnonzero(changed.any(axis=0)), int(changed.any(axis=1).sum())

    (cols5, rows5), (cols22, rows22) = cursor(5), cursor(22)
    for cols, rows in ((cols5, rows5), (cols22, rows22)):
        # a thin vertical line across the song's panels, nothing else changed
        assert cols.size and cols.max() - cols.min() <= 6 and rows > background.shape[0] // 2
    assert cols22.min() > cols5.max() + 100  # later frames to the right
    assert drawn == [None]
    # other beat settings are another drawing of the song (once)
    settings.animation.beat_decay = 0.5
    view.update(settings)
    view.cursor.value = 7
    assert drawn == [None, None] and bytes(view.image.value) == song_png(view.features, 7)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- schedules
def test_a_schedule_reading_bass_is_plotted_over_the_song(make_panel: Any, song: Path) -> None:
    panel = make_panel(song)
    features = _view(panel).features
    assert features is not None
    zoom = panel.controls["animation.zoom"]
    zoom.input.value = BASS_ZOOM
    assert zoom.error == "" and panel.settings.animation.zoom == BASS_ZOOM
    n = panel.settings.n_frames()
    expected = Schedule.parse(BASS_ZOOM, setting="animation.zoom").values(n, audio=features)
    assert zoom.plot_values is not None and np.array_equal(zoom.plot_values, expected)
    assert zoom.plot is not None and zoom.plot_shown and zoom.plot.layout.display == ""
    assert bytes(zoom.plot.value).startswith(PNG_MAGIC)
    assert expected[22] > expected[5]  # the tone gated on at 1 s lifts the zoom there

    # with the animation as long as the song the curve covers the song's frames
    panel.controls["animation.length_from_soundtrack"].input.value = True
    assert panel.settings.n_frames() == features.n_frames
    full = Schedule.parse(BASS_ZOOM, setting="animation.zoom").values(features.n_frames, audio=features)
    assert zoom.plot_values is not None and np.array_equal(zoom.plot_values, full)

    # the curve editor draws the same curve (read-only: an expression), with the song's frame count
    zoom.curve_toggle.value = True  # type: ignore[union-attr]
    editor = zoom.curve
    assert editor is not None and editor.error == "" and editor.max_frames == features.n_frames
    assert [v for _f, v in editor.curve] == full.tolist() and not any(k["editable"] for k in editor.keyframes)
    zoom.curve_toggle.value = False  # type: ignore[union-attr]

    # a key on the song's second beat: plotted at that frame, and read-only (kept verbatim) in the curve editor
    on_beat = '0: (1), "beat_frame(2)": (1.2)'
    zoom.input.value = on_beat
    want = Schedule.parse(on_beat, setting="animation.zoom").values(features.n_frames, audio=features)
    assert zoom.error == "" and zoom.plot_values is not None and np.array_equal(zoom.plot_values, want)
    zoom.curve_toggle.value = True  # type: ignore[union-attr]
    keys = editor.keyframes
    assert [k["frame"] for k in keys] == [0, features.beat_frame(2)] and 0 < features.beat_frame(2) < features.n_frames
    assert keys[1]["key"] == "beat_frame(2)" and not keys[1]["editable"] and editor.error == ""
    zoom.curve_toggle.value = False  # type: ignore[union-attr]

    # a schedule that does not read the song keeps its plain plot
    zoom.input.value = "0: (1), 10: (1.05)"
    assert zoom.plot_values is None and bytes(zoom.plot.value).startswith(PNG_MAGIC)


def test_a_schedule_reading_audio_without_a_soundtrack_shows_the_library_error(
    make_panel: Any, song: Path, logged_errors: list[logging.LogRecord]
) -> None:
    panel = make_panel()
    zoom = panel.controls["animation.zoom"]
    before = panel.settings.animation.zoom
    zoom.input.value = BASS_ZOOM
    expected = ""
    try:
        panel.settings.copy().check_field("animation.zoom", BASS_ZOOM)
    except ValueError as exc:
        expected = str(exc)
    assert "set output.soundtrack" in expected  # the library's own line ...
    assert zoom.error == expected and html.escape(expected) in zoom.message.value  # ... beside the field
    assert panel.settings.animation.zoom == before
    # setting a soundtrack applies the pending string, now that it can be evaluated
    panel.controls["output.soundtrack"].input.value = str(song)
    assert panel.wait_audio(120)
    assert zoom.error == "" and panel.settings.animation.zoom == BASS_ZOOM and zoom.plot_values is not None
    # and taking the soundtrack away again shows the error again
    panel.controls["output.soundtrack"].input.value = ""
    assert "set output.soundtrack" in zoom.error
    # prompts that change on the music: refused without the song, applied once it is there
    prompts = panel.controls["prompts.text_prompts"]
    on_bar = '{"0": ["a calm sea"], "bar_frame(2)": ["a storm"]}'
    prompts.input.value = on_bar
    assert "set output.soundtrack" in prompts.error and "bar_frame" not in str(panel.settings.prompts.text_prompts)
    panel.controls["output.soundtrack"].input.value = str(song)
    assert panel.wait_audio(120) and prompts.error == "" and zoom.error == ""
    assert panel.settings.prompts.text_prompts == {"0": ["a calm sea"], "bar_frame(2)": ["a storm"]}
    assert [r.getMessage() for r in logged_errors] == []


# ---------------------------------------------------------------------------------------------- the video
def test_a_video_with_a_soundtrack_is_shown_with_controls_and_waits_for_play(tmp_path: Path, song: Path) -> None:
    from PIL import Image

    frames = []
    for i in range(6):
        path = tmp_path / f"{i:06d}.png"
        Image.new("RGB", (64, 64), (40 * i, 20, 200 - 30 * i)).save(path)
        frames.append(path)
    loud = frames_to_video(frames, tmp_path / "loud.mp4", fps=FPS, soundtrack=song)
    quiet = frames_to_video(frames, tmp_path / "quiet.mp4", fps=FPS)
    assert has_sound(loud) and not has_sound(quiet)
    video = _video_widget(loud)
    assert isinstance(video, widgets.Video) and video.controls and not video.autoplay
    assert bytes(video.value) == loud.read_bytes()
    bundle = video_bundle(loud)["text/html"]
    assert "<video controls " in bundle and "muted" not in bundle and "autoplay" not in bundle
    silent = _video_widget(quiet)
    assert isinstance(silent, widgets.Video) and silent.controls and silent.autoplay  # as before: plays at once
    assert "autoplay muted" in video_bundle(quiet)["text/html"]
