"""The live panel (discolib_widgets.live) without a kernel or a browser: a fake session records the panel's calls;
the browser's side (held keys, drags, the acknowledgement of a drawn frame) is played by setting the view's traits
as live.js does. One test flies the real LiveSession with the tiny-live preset."""

from __future__ import annotations

import html
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from discolib.errors import InputError
from discolib.run.live import CONTROL_AXES, DRAG_GAIN, KEY_BINDINGS, LiveFrame, velocity_for_keys
from discolib_widgets import LivePanel, LiveView, live, live_panel
from discolib_widgets.live import ACK_TIMEOUT


class FakeSession:
    """The LiveSession methods the panel calls, recording each call."""

    def __init__(self, path: np.ndarray | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.on_frame: Any = None
        self.running = False
        self.recording = True
        self.frames_made = 0
        self.error: BaseException | None = None
        self.path = np.zeros((0, 6)) if path is None else path
        self.controls = {
            "velocity": dict.fromkeys(CONTROL_AXES, 0.0), "prompt": "a lighthouse", "negative": "blurry",
            "strength": 0.6, "cfg": 1.5, "noise": 0.02, "seed": 7,
        }
        self.fail: dict[str, BaseException] = {}

    def _log(self, name: str, value: Any) -> None:
        self.calls.append((name, value))
        if name in self.fail:
            raise self.fail[name]

    def start(self) -> None:
        self._log("start", None)
        self.running = True

    def stop(self, timeout: float | None = 30.0) -> None:
        self._log("stop", timeout)
        self.running = False

    def close(self) -> None:
        self._log("close", None)
        self.running = False

    def set_velocity(self, **axes: float) -> None:
        self._log("set_velocity", axes)

    def nudge(self, **axes: float) -> None:
        self._log("nudge", axes)

    def set_prompt(self, prompt: str, negative: str | None = None) -> None:
        self._log("set_prompt", (prompt, negative))

    def set_strength(self, value: float) -> None:
        self._log("set_strength", value)

    def set_cfg(self, value: float) -> None:
        self._log("set_cfg", value)

    def record(self, on: bool = True) -> None:
        self._log("record", on)
        self.recording = on

    def camera_path(self) -> np.ndarray:
        return self.path

    def latest(self) -> LiveFrame | None:
        return None

    def last(self, name: str) -> Any:
        found = [v for n, v in self.calls if n == name]
        assert found, f"{name} was never called: {self.calls}"
        return found[-1]

    def count(self, name: str) -> int:
        return sum(n == name for n, _ in self.calls)


def _frame(index: int, *, fps: float = 0.0, latency: float | None = None, shade: int | None = None) -> LiveFrame:
    value = (index * 37) % 256 if shade is None else shade
    image = np.full((16, 24, 3), value, dtype=np.uint8)
    return LiveFrame(index, image, 1, (0.0,) * 6, 0.0, latency, fps)


def _panel(session: FakeSession, **kwargs: Any) -> LivePanel:
    return LivePanel(session, background=False, **kwargs)  # type: ignore[arg-type]


def _attrs(markup: str, cls: str) -> dict[str, str]:
    """The attributes of the element of class ``cls`` in ``markup`` (as the browser test reads them)."""
    m = re.search(rf'<span class="{cls}"([^>]*)>(.*?)</span>', markup)
    assert m, markup
    attrs = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(1))}
    attrs["text"] = html.unescape(m.group(2))
    return attrs


def _ack(panel: LivePanel) -> None:
    """What live.js does after it drew a frame."""
    panel.view.shown_index = panel.view.frame_index


def test_view_has_the_traits_live_js_uses() -> None:
    view = LiveView()
    names = set(view.keys)
    assert {"frame", "frame_index", "shown_index", "held_keys", "drag", "bound_keys", "width"} <= names
    js = (Path(live.__file__).parent / "static" / "live.js").read_text(encoding="utf-8")  # the browser test's hooks
    for hook in ("discolib-live-frame", "data-frame-index", "tabIndex = 0", "preventDefault", "revokeObjectURL",
                 '"shown_index"', '"held_keys"', '"drag"'):
        assert hook in js


def test_panel_becomes_the_sessions_frame_callback_and_binds_the_keys() -> None:
    session = FakeSession()
    panel = _panel(session)
    assert session.on_frame == panel.on_frame
    assert sorted(panel.view.bound_keys) == sorted(KEY_BINDINGS)
    # the buttons the browser test clicks
    assert [panel.start_button.description, panel.stop_button.description, panel.record_button.description] == [
        "Start", "Stop", "Record"]


def test_held_keys_set_the_target_velocity() -> None:
    session = FakeSession()
    panel = _panel(session, speed=2.0, turn_speed=1.5)
    panel.view.held_keys = ["w", "arrowleft"]
    v = session.last("set_velocity")
    assert v == velocity_for_keys(["w", "arrowleft"], 2.0, 1.5)
    assert v["translation_z"] == 2.0 and v["rotation_3d_y"] == -1.5
    assert v["translation_x"] == v["rotation_3d_x"] == 0.0
    panel.view.held_keys = ["w", "arrowleft", "q", "d"]
    v = session.last("set_velocity")
    assert (v["translation_x"], v["rotation_3d_z"]) == (2.0, -1.5)
    panel.speed.value = 5.0  # a held key flies at the new speed at once
    assert session.last("set_velocity")["translation_z"] == 5.0
    panel.view.held_keys = []  # released (or the view lost focus): the target is rest
    assert session.last("set_velocity") == dict.fromkeys(CONTROL_AXES, 0.0)
    n = session.count("set_velocity")
    panel.turn.value = 3.0  # no key held: nothing to change
    assert session.count("set_velocity") == n


def test_drag_nudges_the_rotation() -> None:
    session = FakeSession()
    panel = _panel(session, turn_speed=1.0)
    panel.view.drag = {"dx": 30, "dy": -10, "seq": 1}
    assert session.last("nudge") == pytest.approx({"rotation_3d_y": 30 * DRAG_GAIN, "rotation_3d_x": 10 * DRAG_GAIN})
    panel.view.drag = {"dx": 30, "dy": -10, "seq": 2}  # the same move again is a new message (seq)
    assert session.count("nudge") == 2
    panel.turn.value = 2.0
    panel.view.drag = {"dx": -5, "dy": 4, "seq": 3}
    assert session.last("nudge") == pytest.approx(
        {"rotation_3d_y": -5 * DRAG_GAIN * 2, "rotation_3d_x": -4 * DRAG_GAIN * 2})
    panel.view.drag = {"dx": 0, "dy": 0, "seq": 4}
    assert session.count("nudge") == 3
    panel.view.drag = {"dx": 1, "dy": None, "seq": 5}  # junk from a browser is an error shown, not raised
    assert session.count("nudge") == 3 and "TypeError" in panel.error.value


def test_sliders_prompt_and_buttons_call_the_session() -> None:
    session = FakeSession()
    panel = _panel(session)
    # the controls start at the session's values; the prompt box holds Deforum's form with the negative prompt
    assert (panel.strength.value, panel.cfg.value) == (0.6, 1.5)
    assert panel.prompt.value == "a lighthouse --neg blurry"
    assert panel.prompt.continuous_update is False
    panel.strength.value = 0.35
    assert session.last("set_strength") == 0.35
    panel.cfg.value = 4.0
    assert session.last("set_cfg") == 4.0
    panel.prompt.value = "a castle on a hill --neg fog"
    assert session.last("set_prompt") == ("a castle on a hill --neg fog", None)
    panel.start_button.click()
    assert session.count("start") == 1
    panel.stop_button.click()
    assert session.count("stop") == 1


def test_record_toggles_recording() -> None:
    session = FakeSession()
    panel = _panel(session)
    assert panel.record_button.value is True  # the session records from the start
    panel.record_button.value = False
    assert session.last("record") is False and not session.recording
    assert 'data-recorded="0"' in panel.status.value and "not recording" in panel.status.value
    panel.record_button.value = True
    assert session.last("record") is True


def test_stale_frames_are_dropped_never_queued() -> None:
    session = FakeSession()
    panel = _panel(session)
    sent: list[int] = []
    panel.view.observe(lambda c: sent.append(c["new"]), names="frame_index")
    session.on_frame(_frame(0))  # the session's render thread: returns at once, nothing sent yet
    assert sent == []
    assert panel.send_pending()
    assert sent == [0]
    for i in (1, 2, 3):  # the browser has not drawn frame 0 yet: these wait in the one-slot mailbox
        session.on_frame(_frame(i))
        assert not panel.send_pending()
    assert sent == [0] and panel.dropped == 2
    _ack(panel)  # drawn: the newest waiting frame goes at once (no sender thread here: the ack itself sends it)
    assert sent == [0, 3]
    img = Image.open(io.BytesIO(panel.view.frame))
    assert img.format == "JPEG" and img.size == (24, 16)
    assert abs(int(np.asarray(img).mean()) - (3 * 37) % 256) <= 2  # frame 3's pixels, not an older frame's
    assert not panel.send_pending()  # nothing newer waits: frame 3 is not sent twice
    _ack(panel)
    session.on_frame(_frame(4))
    session.on_frame(_frame(5))
    assert panel.send_pending()
    _ack(panel)
    assert sent == [0, 3, 5] and panel.dropped == 3 and panel.sent == 3


def test_unacknowledged_frame_is_replaced_after_the_timeout() -> None:
    session = FakeSession()
    panel = _panel(session)
    now = [100.0]
    panel._clock = lambda: now[0]
    session.on_frame(_frame(0))
    assert panel.send_pending()
    session.on_frame(_frame(1))
    now[0] += ACK_TIMEOUT / 2
    assert not panel.send_pending()  # no browser drew frame 0, but it may still be drawing it
    now[0] += ACK_TIMEOUT / 2
    assert panel.send_pending()  # no view on screen: the newest frame goes anyway, one per ACK_TIMEOUT
    assert panel.view.frame_index == 1


def test_a_repeated_index_needs_a_new_acknowledgement() -> None:
    session = FakeSession()
    panel = _panel(session)
    session.on_frame(_frame(0, shade=10))
    panel.send_pending()
    _ack(panel)
    session.on_frame(_frame(0, shade=200))  # a session that counts from 0 again
    assert panel.send_pending()
    assert panel.view.shown_index == -1  # the old acknowledgement of index 0 does not pass for the new frame
    session.on_frame(_frame(1))
    assert not panel.send_pending()


def test_readouts_follow_the_frames() -> None:
    path = np.array([[0.0, 0.0, 2.0, 0.0, -1.0, 0.0], [0.5, 0.0, 2.0, 0.25, -1.0, 0.0]])
    session = FakeSession(path)
    panel = _panel(session)
    session.frames_made = 2
    session.on_frame(_frame(1, fps=12.34, latency=0.0852))
    panel.send_pending()
    fps = _attrs(panel.fps.value, "discolib-live-fps")
    assert fps["text"] == "12.3 frames/s · 85 ms control-to-frame"  # the session's measure until the browser's
    status = _attrs(panel.status.value, "discolib-live-status")
    assert status["data-frames"] == "2" and status["data-recorded"] == "2"
    assert json.loads(status["data-path"]) == pytest.approx(path.sum(axis=0).tolist())
    _ack(panel)
    session.frames_made = 3
    session.path = np.vstack([path, [[0.0, 0.0, 2.0, 0.0, 0.0, 0.0]]])
    session.on_frame(_frame(2, fps=10.0, latency=None))  # no control change in this frame: the last latency stays
    panel.send_pending()
    assert _attrs(panel.fps.value, "discolib-live-fps")["text"] == "10.0 frames/s · 85 ms control-to-frame"
    status = _attrs(panel.status.value, "discolib-live-status")
    assert status["data-frames"] == "3" and json.loads(status["data-path"])[2] == 6.0


def test_the_first_frame_showing_a_key_change_is_tagged_for_the_browser() -> None:
    """The browser numbers key changes (key_seq); the first frame made with one carries its number
    (frame_key_seq), also when the frame that first showed it was dropped for a newer one; the browser's measure
    (browser_latency_ms) then replaces the session's in the readout."""
    session = FakeSession()
    panel = _panel(session)
    panel.view.set_state({"held_keys": ["w"], "key_seq": 1})  # as a comm message sets both at once
    origin = time.perf_counter()  # the session times the change after the panel passed it on
    session.on_frame(LiveFrame(0, np.zeros((8, 8, 3), np.uint8), 1, (0.0,) * 6, origin + 0.05, 0.05, 10.0))
    panel.send_pending()
    assert panel.view.frame_key_seq == 1
    _ack(panel)
    panel.view.set_state({"held_keys": [], "key_seq": 2})
    origin = time.perf_counter()
    session.on_frame(LiveFrame(1, np.zeros((8, 8, 3), np.uint8), 1, (0.0,) * 6, origin + 0.05, 0.05, 10.0))
    session.on_frame(_frame(2, fps=10.0))  # the frame that showed key change 2 is dropped: its successor carries the tag
    panel.send_pending()
    assert panel.view.frame_index == 2 and panel.view.frame_key_seq == 2
    panel.view.set_state({"browser_latency_ms": 120.4})
    assert _attrs(panel.fps.value, "discolib-live-fps")["text"] == "10.0 frames/s · 120 ms key-to-frame"


def test_errors_are_shown_never_raised() -> None:
    session = FakeSession()
    panel = _panel(session)
    assert panel.error.layout.display == "none"
    session.fail["set_strength"] = InputError("strength: expected a number from 0 to 1, got 2")
    panel.strength.value = 0.9  # the callback does not raise
    err = _attrs(panel.error.value, "discolib-live-error")
    assert "strength: expected a number from 0 to 1" in err["text"] and panel.error.layout.display == ""
    panel.prompt.value = "a forest"  # a control that works clears the line
    assert panel.error.layout.display == "none"
    session.fail["start"] = RuntimeError("no <GPU> here")
    panel.start_button.click()
    assert _attrs(panel.error.value, "discolib-live-error")["text"] == "RuntimeError: no <GPU> here"
    del session.fail["start"]
    panel.start_button.click()
    session.error = MemoryError("out of memory while sampling frame 12")  # what ended the session's loop
    panel.refresh()
    assert "out of memory while sampling frame 12" in panel.error.value


def test_close_stops_the_session_and_the_sender() -> None:
    session = FakeSession()
    panel = LivePanel(session)  # type: ignore[arg-type]
    assert panel._thread is not None and panel._thread.is_alive()
    session.on_frame(_frame(0))
    panel.close()
    assert session.count("close") == 1 and not session.running
    assert not panel._thread.is_alive()
    assert panel.view.comm is None  # closed


def test_real_session_tiny_live() -> None:
    """The panel over a real LiveSession (tiny-live, CPU): keys move the camera, frames reach the view and the
    status reads the recorded path."""
    panel = live_panel(preset="tiny-live", max_frames=40)
    session = panel.session
    try:
        assert session.on_frame == panel.on_frame
        panel.view.held_keys = ["w"]  # held before Start: the flight goes forward from the first frames on
        assert session.controls["velocity"]["translation_z"] == panel.speed.value
        panel.start_button.click()
        session.wait_frames(4, timeout=120)
        deadline = time.monotonic() + 60
        while panel.view.frame_index < 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the sender thread encodes and sends the first frame
        assert panel.view.frame_index >= 0, panel.error.value
        first = panel.view.frame_index
        _ack(panel)
        while panel.view.frame_index == first and time.monotonic() < deadline:
            time.sleep(0.02)  # acknowledged: the next frame made goes out
        assert panel.view.frame_index > first
        assert Image.open(io.BytesIO(panel.view.frame)).size == (64, 64)
        panel.stop_button.click()
        assert not session.running and session.error is None, session.error
        panel.refresh()
        status = _attrs(panel.status.value, "discolib-live-status")
        path = session.camera_path()
        assert int(status["data-frames"]) == session.frames_made >= 4
        assert int(status["data-recorded"]) == len(path) == session.frames_made
        sums = json.loads(status["data-path"])
        assert sums == pytest.approx(path.sum(axis=0).tolist())
        assert sums[CONTROL_AXES.index("translation_z")] > 0  # W flew forward
        assert panel.error.layout.display == "none", panel.error.value
    finally:
        panel.close()
    assert not session.running
