"""The live panel: fly a :class:`discolib.run.live.LiveSession` from a notebook.

:class:`LiveView` is an anywidget (``static/live.js``, plain ES module, no build step) that shows the newest frame,
takes keyboard focus, reports the keys held and mouse drags, and acknowledges each frame it drew (``shown_index``).
:class:`LivePanel` wires it to a session: held keys become the session's target velocity (through the library's
:func:`~discolib.run.live.velocity_for_keys`), drags nudge the camera's rotation, sliders and the prompt box call
the session's controls, Start/Stop/Record call the session.

Frames arrive on the session's delivery thread. :meth:`LivePanel.on_frame` only drops the frame into a one-slot
mailbox (a newer frame replaces an older one that was not sent yet) and returns at once: the session never
waits for JPEG encoding or the browser. A sender thread encodes and sends the newest frame once the browser has
drawn the previous one (``shown_index == frame_index``) or :data:`ACK_TIMEOUT` passed (no browser showing it):
stale frames are dropped, never queued, and never sent after a newer one.
"""

from __future__ import annotations

import collections
import html
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets as widgets
import numpy as np
import traitlets

from discolib_widgets.fields import describe_error

if TYPE_CHECKING:  # discolib.run.live imports the render loop (torch); a session brings it along at run time
    from discolib.config.settings import Settings
    from discolib.run.live import LiveFrame, LiveSession

__all__ = ["ACK_TIMEOUT", "JPEG_QUALITY", "LivePanel", "LiveView", "live_panel"]

_STATIC = Path(__file__).parent / "static"
#: Seconds after which the next frame is sent although the browser did not acknowledge the last one (the view is
#: not displayed, or its tab is hidden): the readouts keep moving, at most one frame per ACK_TIMEOUT.
ACK_TIMEOUT = 1.0
#: JPEG quality of the frames sent: small messages (a 512^2 frame is ~40 KB), no visible loss at video rates.
JPEG_QUALITY = 85
#: How often (seconds) the sender looks at the session while no frame arrives: errors, start and stop show up.
POLL_INTERVAL = 0.25
#: Seconds the Stop button waits for the session's loop to end (it ends within about one sampler step).
STOP_TIMEOUT = 30.0


class LiveView(anywidget.AnyWidget):
    """The live frame, keyboard and mouse.

    Traits (synced): ``frame`` (JPEG or PNG bytes) and ``frame_index`` (set together by Python); ``shown_index``
    (set by the browser after it drew ``frame_index``); ``held_keys`` (``KeyboardEvent.key`` names of the bound keys
    held while the view has focus, letters lower-case; empty again when it loses focus); ``drag``
    (``{"dx", "dy", "seq"}``: pixels dragged since the last message, ``seq`` counting messages); ``bound_keys`` (the
    keys the view reports and keeps from scrolling the page); ``width`` (CSS pixels of the image).

    The held keys are ``held_keys``, not ``keys``: ipywidgets' ``Widget.keys`` is the list of synced trait names, and a
    trait of that name would stop the widget from syncing at all.
    """

    _esm = _STATIC / "live.js"

    frame = traitlets.Bytes(b"").tag(sync=True)
    frame_index = traitlets.Int(-1).tag(sync=True)
    shown_index = traitlets.Int(-1).tag(sync=True)
    held_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    drag = traitlets.Dict().tag(sync=True)
    bound_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    width = traitlets.Int(512).tag(sync=True)
    #: Key-to-frame latency as a person sees it: the browser numbers each change of the held keys (``key_seq``,
    #: sent with ``held_keys``), Python tags a frame with the number of the change it is the first to show
    #: (``frame_key_seq``), and the browser, when it has drawn that frame, reports the time since the key event
    #: (``browser_latency_ms``): the comm both ways, the session and the drawing included.
    key_seq = traitlets.Int(0).tag(sync=True)
    frame_key_seq = traitlets.Int(0).tag(sync=True)
    browser_latency_ms = traitlets.Float(-1.0).tag(sync=True)


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``image`` ((H, W, 3) uint8) as JPEG bytes."""
    # Pillow is imported on the first frame: importing the panel module stays light.
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _readout(cls: str, text: str, **data: Any) -> str:
    """A ``<span>`` with class ``cls``, ``data-*`` attributes ``data`` (the browser test reads them) and ``text``."""
    attrs = "".join(f' data-{k.replace("_", "-")}="{html.escape(str(v), quote=True)}"' for k, v in data.items())
    return f'<span class="{cls}"{attrs}>{html.escape(text)}</span>'


class LivePanel(widgets.VBox):
    """A live session's panel: the view, Start/Stop/Record, speed, turn, strength and cfg sliders, the prompt box,
    the frames-per-second readout, the status readout and errors.

    The panel becomes the session's ``on_frame`` callback when it has none; a session that calls someone else's is
    shown too, by polling its ``latest()`` frame. ``background=False`` starts no sender thread:
    frames then go out only when :meth:`send_pending` is called (scripts and tests).
    """

    def __init__(
        self,
        session: LiveSession,
        *,
        speed: float = 2.0,
        turn_speed: float = 1.0,
        drag_gain: float | None = None,
        background: bool = True,
    ) -> None:
        # discolib.run.live imports the render loop (torch): only once a session exists, never at package import.
        from discolib.run.live import KEY_BINDINGS, velocity_for_keys

        self.session = session
        self._velocity_for_keys = velocity_for_keys
        self.drag_gain = None if drag_gain is None else float(drag_gain)  # None: the library's DRAG_GAIN
        controls = self._controls()
        self.view = LiveView(bound_keys=sorted(KEY_BINDINGS))
        button = {"width": "auto"}  # (no icons: the buttons' names are exactly Start, Stop and Record)
        self.start_button = widgets.Button(description="Start", layout=button)
        self.stop_button = widgets.Button(description="Stop", layout=button)
        self.record_button = widgets.ToggleButton(
            value=bool(getattr(session, "recording", True)), description="Record", layout=button
        )
        slider = {"width": "420px"}
        style = {"description_width": "70px"}
        self.speed = widgets.FloatSlider(
            value=speed, min=0.0, max=max(10.0, 4 * speed), step=0.1, description="speed", layout=slider, style=style
        )
        self.turn = widgets.FloatSlider(
            value=turn_speed, min=0.0, max=max(5.0, 4 * turn_speed), step=0.05, description="turn", layout=slider,
            style=style,
        )
        strength = float(controls.get("strength", 0.65))
        # up to the session's largest strength that still denoises (above it a frame is only moved)
        top = float(getattr(session, "max_strength", 1.0))
        self.strength = widgets.FloatSlider(
            value=min(strength, top), min=0.0, max=top, step=0.01, description="strength", layout=slider, style=style
        )
        cfg = float(controls.get("cfg", 7.0))
        self.cfg = widgets.FloatSlider(
            value=cfg, min=0.0, max=max(20.0, cfg), step=0.1, description="cfg", layout=slider, style=style
        )
        # The prompt box holds Deforum's form ("a castle --neg fog"), as set_prompt takes it: the negative prompt
        # is kept, and can be edited, when the prompt changes.
        prompt = controls.get("prompt_text")
        if prompt is None:  # (a session without the library's text form)
            prompt = str(controls.get("prompt") or "") + (f" --neg {controls['negative']}" if controls.get("negative") else "")
        self.prompt = widgets.Text(
            value=prompt, description="prompt", continuous_update=False,
            placeholder="Enter to apply", layout={"width": "620px"}, style=style,
        )
        self.fps = widgets.HTML(_readout("discolib-live-fps", "– frames/s"))
        self.status = widgets.HTML()
        self.error = widgets.HTML(layout={"display": "none"})

        #: Frames that arrived but were replaced by a newer one before they could be sent.
        self.dropped = 0
        #: Frames sent to the browser.
        self.sent = 0
        self._clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._mailbox: LiveFrame | None = None
        self._pushed = False  # on_frame was called: no need to poll session.latest()
        self._last_arrived: Any = None  # the newest frame seen (by identity): polling never re-posts it
        self._sent_index: int | None = None  # frame_index of the frame in flight (None: nothing sent yet)
        self._sent_at = 0.0
        self._latency_ms: float | None = None
        self._browser_latency_ms: float | None = None
        self._fps = 0.0
        self._mailbox_tag = 0  # the key change the waiting frame is the first to show (0: none)
        self._key_times: collections.deque[tuple[int, float]] = collections.deque(maxlen=256)
        self._was_running: bool | None = None
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None  # the sender (None: frames go out from send_pending calls)

        self.start_button.on_click(self._on_start)
        self.stop_button.on_click(self._on_stop)
        self.record_button.observe(self._on_record, names="value")
        self.view.observe(self._on_keys, names="held_keys")
        self.view.observe(self._on_drag, names="drag")
        self.view.observe(self._on_shown, names="shown_index")
        self.view.observe(self._on_browser_latency, names="browser_latency_ms")
        self.speed.observe(self._on_speed, names="value")
        self.turn.observe(self._on_speed, names="value")
        self.strength.observe(self._on_strength, names="value")
        self.cfg.observe(self._on_cfg, names="value")
        self.prompt.observe(self._on_prompt, names="value")

        buttons = widgets.HBox(
            [self.start_button, self.stop_button, self.record_button, self.fps], layout={"align_items": "center"}
        )
        super().__init__(
            [self.view, buttons, self.speed, self.turn, self.strength, self.cfg, self.prompt, self.status, self.error]
        )
        if hasattr(session, "on_frame") and session.on_frame is None:
            session.on_frame = self.on_frame  # else (someone else's callback) its latest() frame is polled
            self._pushed = True
        self.refresh()
        if background:
            self._thread = threading.Thread(target=self._send_loop, name="discolib-live-panel", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ session -> browser
    def on_frame(self, frame: LiveFrame) -> None:
        """The session's frame callback (its delivery thread): keep ``frame`` as the newest, wake the sender, return."""
        self._pushed = True
        self._post(frame)

    def _post(self, frame: LiveFrame) -> None:
        with self._lock:
            tag = self._key_seq_of(frame)
            if self._mailbox is not None:
                self.dropped += 1  # never sent: a newer frame is here (and shows the key change the old one did)
                tag = max(tag, self._mailbox_tag)
            self._mailbox = frame
            self._mailbox_tag = tag
            self._last_arrived = frame
        self._wake.set()

    def _key_seq_of(self, frame: LiveFrame) -> int:
        """The browser's number of the key change ``frame`` is the first to show (0: none): the last one the
        panel passed to the session before the change the frame's latency is timed from."""
        latency = getattr(frame, "latency_s", None)
        if latency is None or not self._key_times:
            return 0
        origin = float(frame.made_at) - float(latency)
        shown = [seq for seq, t in self._key_times if t <= origin + 1e-6]
        if not shown:
            return 0
        while self._key_times and self._key_times[0][0] <= shown[-1]:
            self._key_times.popleft()
        return shown[-1]

    def _acked(self) -> bool:
        """The browser drew the frame in flight, or none is in flight, or it had ACK_TIMEOUT to do so."""
        return (
            self._sent_index is None
            or self.view.shown_index == self._sent_index
            or self._clock() - self._sent_at >= ACK_TIMEOUT
        )

    def send_pending(self) -> bool:
        """Send the waiting frame if the browser is ready for it; True if one was sent. Never raises: an error
        is shown in the panel."""
        with self._lock:
            frame, tag = self._mailbox, self._mailbox_tag
            if frame is None or not self._acked():
                return False
            self._mailbox, self._mailbox_tag = None, 0
        try:
            data = encode_jpeg(frame.image)
            index = int(frame.index)
            if frame.latency_s is not None:
                self._latency_ms = 1000.0 * float(frame.latency_s)
            with self.view.hold_sync():
                if self.view.shown_index == index:
                    # The same index again (a restarted session counts from 0): clear it, or the old
                    # acknowledgement would pass for this frame's.
                    self.view.shown_index = -1
                self.view.frame = data
                self.view.frame_index = index
                if tag:
                    self.view.frame_key_seq = tag
            self._sent_index = index
            self._sent_at = self._clock()
            self.sent += 1
            self._fps = float(frame.fps)
            self._show_speed()
            self.refresh()
        except Exception as exc:  # noqa: BLE001  (shown in the panel; the sender thread must go on)
            self._show_error(exc)
        return True

    def _poll_latest(self) -> None:
        """A session built without our on_frame: take its newest frame, if new."""
        if self._pushed:
            return
        latest = getattr(self.session, "latest", None)
        frame = latest() if callable(latest) else None
        if frame is not None and frame is not self._last_arrived:
            self._post(frame)

    def _send_loop(self) -> None:
        last_look = 0.0
        while not self._closed.is_set():
            # A session that does not call on_frame is polled for its newest frame at 50 Hz while it runs.
            polling = not self._pushed and bool(getattr(self.session, "running", False))
            self._wake.wait(0.02 if polling else POLL_INTERVAL)
            self._wake.clear()
            if self._closed.is_set():
                break
            try:
                self._poll_latest()
                self.send_pending()
                now = time.monotonic()
                if now - last_look >= POLL_INTERVAL:  # errors, start and stop show even with no frames coming
                    last_look = now
                    self._look()
            except Exception as exc:  # noqa: BLE001  (a dead sender would freeze the panel silently)
                self._show_error(exc)
        self._wake.clear()

    def _look(self) -> None:
        """Show the session's error; refresh the status when the session stopped (no more frames to do it)."""
        err = getattr(self.session, "error", None)
        if err is not None:
            self._show_error(err)
        running = bool(getattr(self.session, "running", False))
        if running != self._was_running:
            self._was_running = running
            self.refresh()

    # ------------------------------------------------------------------ readouts
    def refresh(self) -> None:
        """Redraw the status readout (frames made, frames recorded, the recorded path's sums) and the session's
        error. Never raises."""
        try:
            s = self.session
            made = int(getattr(s, "frames_made", 0))
            path = np.asarray(s.camera_path(), dtype=np.float64).reshape(-1, 6)
            sums = [float(v) for v in path.sum(axis=0)]
            state = "running" if getattr(s, "running", False) else "stopped"
            rec = "recording" if getattr(s, "recording", False) else "not recording"
            text = f"{state} · {made} frames made · {rec}, {len(path)} recorded · {self.dropped} dropped"
            self.status.value = _readout(
                "discolib-live-status", text, frames=made, recorded=len(path), path=json.dumps(sums)
            )
            if getattr(s, "error", None) is not None:
                self._show_error(s.error)
        except Exception as exc:  # noqa: BLE001  (a readout must never raise into a widget callback)
            self._show_error(exc)

    def _show_error(self, exc: BaseException) -> None:
        text = f'<span style="color:#c62828">{_readout("discolib-live-error", describe_error(exc))}</span>'
        if self.error.value != text:
            self.error.value = text
            self.error.layout.display = ""

    def clear_error(self) -> None:
        """Hide the error line."""
        self.error.value = ""
        self.error.layout.display = "none"

    def _call(self, fn: Callable[[], Any]) -> bool:
        """Run a session call from a widget callback: its error is shown, never raised; True if it succeeded."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001  (ipywidgets would swallow it into the log; the user must see it)
            self._show_error(exc)
            return False
        return True

    def _controls(self) -> dict[str, Any]:
        try:
            controls = self.session.controls
            return dict(controls) if isinstance(controls, dict) else {}
        except Exception:  # noqa: BLE001  (defaults below; a broken session shows its error once started)
            return {}

    # ------------------------------------------------------------------ browser -> session
    def _velocity(self) -> dict[str, float]:
        return self._velocity_for_keys(self.view.held_keys, float(self.speed.value), float(self.turn.value))

    def _on_keys(self, _change: dict[str, Any]) -> None:
        with self._lock:  # before the session times the change: a frame's tag is the last number at or before it
            self._key_times.append((int(self.view.key_seq), time.perf_counter()))
        self._call(lambda: self.session.set_velocity(**self._velocity()))

    def _on_browser_latency(self, change: dict[str, Any]) -> None:
        if float(change["new"]) >= 0:
            self._browser_latency_ms = float(change["new"])
            self._show_speed()

    def _show_speed(self) -> None:
        """The readout: frames per second, and key-to-frame latency (the browser's measure when it has one: key
        event to the frame drawn; else the session's: control change to frame ready)."""
        if self._browser_latency_ms is not None:
            latency = f"{self._browser_latency_ms:.0f} ms key-to-frame"
        elif self._latency_ms is not None:
            latency = f"{self._latency_ms:.0f} ms control-to-frame"
        else:
            latency = "– ms key-to-frame"
        self.fps.value = _readout("discolib-live-fps", f"{self._fps:.1f} frames/s · {latency}")

    def _on_speed(self, _change: dict[str, Any]) -> None:
        if self.view.held_keys:  # a held key flies at the new speed now
            self._call(lambda: self.session.set_velocity(**self._velocity()))

    def _on_drag(self, change: dict[str, Any]) -> None:
        def nudge() -> None:
            drag = change["new"] or {}
            dx, dy = float(drag.get("dx", 0.0)), float(drag.get("dy", 0.0))
            if not (np.isfinite(dx) and np.isfinite(dy)) or (dx == 0 and dy == 0):
                return
            # here: a session exists, so the library (and torch) is loaded already
            from discolib.run.live import nudge_for_drag

            gain = () if self.drag_gain is None else (self.drag_gain,)
            self.session.nudge(**nudge_for_drag(dx, dy, float(self.turn.value), *gain))

        self._call(nudge)

    def _on_shown(self, _change: dict[str, Any]) -> None:
        self._wake.set()
        if self._thread is None:  # no sender thread: the acknowledgement itself sends the waiting frame
            self.send_pending()

    def _on_strength(self, change: dict[str, Any]) -> None:
        self._call(lambda: self.session.set_strength(float(change["new"])))

    def _on_cfg(self, change: dict[str, Any]) -> None:
        self._call(lambda: self.session.set_cfg(float(change["new"])))

    def _on_prompt(self, change: dict[str, Any]) -> None:
        if self._call(lambda: self.session.set_prompt(str(change["new"]))):
            self.clear_error()

    def _on_record(self, change: dict[str, Any]) -> None:
        self._call(lambda: self.session.record(bool(change["new"])))
        self.refresh()

    def _on_start(self, _button: Any) -> None:
        self.clear_error()
        self._call(self.session.start)
        self._wake.set()
        self.refresh()

    def _on_stop(self, _button: Any) -> None:
        self._call(lambda: self.session.stop(timeout=STOP_TIMEOUT))
        self.refresh()

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Stop the session and the sender, and close the panel's widgets."""
        self._closed.set()
        self._wake.set()
        # close() also ends the session's frame delivery thread; a session without one is stopped.
        end = getattr(self.session, "close", None)
        self._call(end if callable(end) else lambda: self.session.stop(timeout=STOP_TIMEOUT))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for w in (
            self.view, self.start_button, self.stop_button, self.record_button, self.speed, self.turn, self.strength,
            self.cfg, self.prompt, self.fps, self.status, self.error,
        ):
            w.close()
        super().close()


def live_panel(
    settings: Settings | None = None,
    *,
    preset: str | None = None,
    speed: float = 2.0,
    turn_speed: float = 1.0,
    key: str = "live",
    **session_kwargs: Any,
) -> LivePanel:
    """A :class:`LivePanel` over a new :class:`~discolib.run.live.LiveSession` (``settings``, ``preset`` and
    ``session_kwargs`` as the session takes them) whose frames go to the panel. The session starts with the
    panel's Start button (or ``panel.session.start()``); raises the session's LiveError for settings it cannot fly.

    A panel made before with the same ``key`` (the cell run again) is closed first: its session stops and frees the
    device instead of flying on unseen."""
    # discolib.run.live imports the render loop (torch): only when a live panel is made.
    from discolib.run.live import LiveSession

    old = _PANELS.pop(key, None)
    if old is not None:
        old.close()
    session = LiveSession(settings, preset=preset, **session_kwargs)
    panel = LivePanel(session, speed=speed, turn_speed=turn_speed)  # the panel sets itself as session.on_frame
    _PANELS[key] = panel
    return panel


#: The live panels :func:`live_panel` made in this kernel, by key.
_PANELS: dict[str, LivePanel] = {}
