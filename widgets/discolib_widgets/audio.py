"""The soundtrack in the panel: a view of the song under ``output.soundtrack`` and a small player.

:class:`SoundtrackView` shows what :meth:`Settings.audio_features` makes of the song (waveform envelope, rms, onset,
bass, mid and treble with beat and bar ticks, drawn by :func:`discolib.audio.plot_features`), a frame cursor and
the current frame's feature values as text, and plays the file (an ``ipywidgets.Audio`` of its bytes, for files up
to :data:`MAX_PLAYER_BYTES`). Everything about the song comes from discolib: this module only decides when to ask
again (the soundtrack's file, fps or beat settings changed) and draws the answer. A missing or bad file is the
library's one-line error under the field, found from the file's header at once; the analysis itself (seconds for
a long song, once per file thanks to the library's cache) runs on a worker thread, which only calls the library:
its answer is shown on the kernel's thread (see :func:`kernel_loop`), where the user's edits are handled too.
"""

from __future__ import annotations

import html
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np

from discolib import Settings
from discolib.io.inputs import expand_path, read_user_bytes
from discolib_widgets.fields import DRAW_LOCK, INPUT_ERRORS, LABEL_PX, PLOT_SCALE, describe_error

if TYPE_CHECKING:
    from discolib.audio import AudioFeatures

__all__ = [
    "AUDIO_INPUTS",
    "FEATURE_NAMES",
    "MAX_PLAYER_BYTES",
    "SONG_SIZE",
    "SoundtrackView",
    "audio_player",
    "features_key",
    "frame_text",
    "kernel_loop",
    "song_png",
]

_log = logging.getLogger("discolib_widgets")

#: The settings the song's features depend on: a change of any of them asks the library again.
AUDIO_INPUTS = frozenset(
    {"output.soundtrack", "output.fps", "animation.beat_decay", "animation.beats_per_bar", "animation.first_downbeat"}
)
#: The per-frame features shown as text under the cursor, in this order.
FEATURE_NAMES = ("rms", "onset", "bass", "mid", "treble")
#: Files up to this size get a player in the panel: its bytes travel to the browser (and into a saved notebook).
MAX_PLAYER_BYTES = 20 * 2**20
#: The CSS size (px) of the song view; its PNG has PLOT_SCALE times as many pixels each way.
SONG_SIZE = (560, 300)
# The song view's PNG per (features key, cursor frame): moving the cursor back and forth redraws nothing.
_PNG_CACHE_SIZE = 32
# Songs whose drawn features (the figure without a cursor) are kept: a cursor move draws only the cursor line.
_CANVAS_CACHE_SIZE = 2
# The browser's name of an audio file's format, by suffix (ipywidgets.Audio sends "audio/<format>").
_AUDIO_FORMATS = {
    ".mp3": "mpeg",
    ".wav": "wav",
    ".wave": "wav",
    ".ogg": "ogg",
    ".oga": "ogg",
    ".opus": "ogg",
    ".flac": "flac",
    ".m4a": "mp4",
    ".aac": "aac",
    ".webm": "webm",
}
_ERROR_HTML = '<span style="color:#c62828;white-space:pre-wrap">{}</span>'
_NOTE_HTML = '<span style="color:#555;white-space:pre-wrap">{}</span>'


def features_key(settings: Settings) -> tuple[Any, ...] | None:
    """What the song's features depend on: the file (path, size, modification time), fps and the beat settings;
    None without a soundtrack. Equal keys give equal features, so the view asks the library only when it changes."""
    text = settings.output.soundtrack
    if not text or not text.strip():
        return None
    try:
        path = expand_path(text, setting="output.soundtrack")
        st = path.stat()
        ident: tuple[Any, ...] = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except (*INPUT_ERRORS, OSError):  # missing or unreadable: the key changes once the file is there
        ident = (text, None, None)
    anim = settings.animation
    beats = tuple(getattr(anim, name, None) for name in ("beat_decay", "beats_per_bar", "first_downbeat"))
    return (ident, float(settings.output.fps), *beats)


def kernel_loop() -> Any | None:
    """The IO loop of the IPython kernel this runs in (``get_ipython().kernel.io_loop``: its thread runs the cells
    and the widgets' messages), None outside a kernel (plain Python, tests)."""
    try:
        from IPython import get_ipython  # present wherever a kernel is; a plain interpreter may lack it
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    loop = getattr(kernel, "io_loop", None)
    return loop if callable(getattr(loop, "add_callback", None)) else None


class _SongCanvas:
    """:func:`discolib.audio.plot_features` of one song drawn once, without a cursor; a cursor frame restores that
    background and draws only the cursor lines (Agg blitting): milliseconds, where the whole figure of a long song
    takes seconds. Used under DRAW_LOCK (matplotlib's caches are not thread-safe)."""

    def __init__(
        self, features: AudioFeatures, curves: dict[str, np.ndarray] | None, size: tuple[int, int], scale: int
    ) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        from discolib.audio import plot_features  # matplotlib and the analysis: only when a song is shown

        fig = plot_features(features, frame=None, curves=curves)
        # Figure inches at 72 dpi are CSS pixels (as the schedule plots): the PNG is exactly size * scale.
        fig.set_size_inches(size[0] / 72, size[1] / 72)
        fig.set_dpi(72 * scale)
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        # The cursor as plot_features draws it (a black line across each panel), hidden while the background is drawn.
        self.lines = [ax.axvline(0, color="black", lw=1.2, visible=False) for ax in fig.axes]
        fig.canvas.draw()
        fig.set_layout_engine("none")  # the layout stays as drawn: only the cursor is drawn from now on
        self.fig = fig
        self.background = fig.canvas.copy_from_bbox(fig.bbox)

    def png(self, frame: int | None) -> bytes:
        """The background with the cursor at ``frame`` (none for None), as PNG bytes."""
        from PIL import Image

        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        if frame is not None:
            for line in self.lines:
                line.set_xdata([frame, frame])
                line.set_visible(True)
                line.axes.draw_artist(line)
                line.set_visible(False)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]  # an opaque figure: the alpha channel says nothing
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="png")
        return buf.getvalue()


_canvases: OrderedDict[tuple[Any, ...], _SongCanvas] = OrderedDict()


def song_png(
    features: AudioFeatures,
    frame: int | None = None,
    *,
    curves: dict[str, np.ndarray] | None = None,
    size: tuple[int, int] = SONG_SIZE,
    scale: int = PLOT_SCALE,
) -> bytes:
    """PNG bytes of :func:`discolib.audio.plot_features` with the frame cursor at ``frame``, ``size`` CSS pixels
    drawn at ``scale`` device pixels each (sharp on HiDPI screens).

    The features are drawn once per song (``features.key``, size and scale; the last few songs kept): another
    frame draws only the cursor. ``curves`` (evaluated schedules) are drawn afresh each call."""
    with DRAW_LOCK:  # the song's figure is shared, and matplotlib's caches are not thread-safe (see DRAW_LOCK)
        if curves:
            return _SongCanvas(features, curves, size, scale).png(frame)
        key = (features.key, tuple(size), int(scale))
        canvas = _canvases.get(key)
        if canvas is None:
            canvas = _canvases[key] = _SongCanvas(features, None, size, scale)
            while len(_canvases) > _CANVAS_CACHE_SIZE:
                _canvases.popitem(last=False)
        else:
            _canvases.move_to_end(key)
        return canvas.png(frame)


def frame_text(features: AudioFeatures, frame: int) -> str:
    """One line of the features at ``frame``: its time, rms, onset, bass, mid, treble and the beat and bar pulses
    (the values ``rms(t)`` ... ``beat(t)`` and ``bar(t)`` read there)."""
    f = int(min(max(frame, 0), features.n_frames - 1))
    t = np.asarray(float(f))
    parts = [f"{name} {float(getattr(features, name)[f]):.2f}" for name in FEATURE_NAMES]
    parts += [f"{name} {float(features.sample(name, t)):.2f}" for name in ("beat", "bar")]
    return f"frame {f} ({f / features.fps:.2f} s): " + " · ".join(parts)


def _summary_text(features: AudioFeatures) -> str:
    s = features.summary()
    return (
        f"{s['duration']:.1f} s · {s['tempo']:.1f} BPM · {s['beats']} beats · {s['bars']} bars · "
        f"{s['n_frames']} frames at {s['fps']:g} fps"
    )


def audio_player(path: str | Path, *, max_bytes: int | None = None) -> widgets.Widget:
    """A player of the audio file ``path`` (``ipywidgets.Audio`` of its bytes), or, for a file larger than
    ``max_bytes`` (default :data:`MAX_PLAYER_BYTES`), a line saying it is too large to play here.

    Raises the library's InputError (naming ``output.soundtrack``) when the file cannot be read."""
    limit = MAX_PLAYER_BYTES if max_bytes is None else max_bytes
    p = expand_path(path, setting="output.soundtrack")
    size = p.stat().st_size
    if size > limit:
        text = f"{p.name}: {size / 2**20:.1f} MB, too large to play here (up to {limit / 2**20:.0f} MB)"
        note = widgets.HTML(_NOTE_HTML.format(html.escape(text)))
        note.add_class("discolib-song-player-note")
        return note
    # read_user_bytes: a regular file only (a FIFO would block), read up to the limit.
    data = read_user_bytes(p, setting="output.soundtrack", max_bytes=limit)
    player = widgets.Audio(
        value=data,
        format=_AUDIO_FORMATS.get(p.suffix.lower(), p.suffix.lower().lstrip(".") or "wav"),
        autoplay=False,
        loop=False,
        controls=True,
        layout=widgets.Layout(width="100%", max_width=f"{SONG_SIZE[0]}px"),
    )
    player.add_class("discolib-song-player")
    return player


class SoundtrackView:
    """The song under the ``output.soundtrack`` field: its features, a frame cursor and a player.

    :meth:`update` with the panel's Settings asks :meth:`Settings.audio_features` again only when
    :func:`features_key` changes; a missing or bad file shows the library's one-line error at once (from the
    header: :func:`discolib.audio.audio_duration`); the analysis runs on a worker thread unless ``background`` is
    False. The worker only calls :meth:`Settings.audio_features`: its answer is shown, and ``on_features`` called, on
    the kernel's thread (scheduled on :func:`kernel_loop`; called directly outside a kernel, or by :meth:`wait`), so
    the widgets, the Settings and ``warnings`` are touched by one thread only. ``on_features(features, note, error)``
    is called when the features change (None and a note saying why when there are none; ``error`` when the note is
    the file's error): the panel redraws the schedules that read the song. Nothing here raises into ipywidgets.

    Attributes:
        features: the song's :class:`~discolib.audio.AudioFeatures`, None while there are none.
        error: the one-line error shown under the field ('' when there is none).
        player: the player (or the too-large note), None without a readable soundtrack.
    """

    def __init__(
        self,
        *,
        on_features: Callable[[AudioFeatures | None, str, bool], None] | None = None,
        background: bool = True,
    ) -> None:
        self.on_features = on_features
        self.background = background
        self.features: AudioFeatures | None = None
        self.error = ""
        self.player: widgets.Widget | None = None
        self.message = widgets.HTML("")
        self.summary = widgets.HTML("")
        # Hidden until it holds a PNG (an empty Image shows a broken-image icon); drawn at its CSS size.
        self.image = widgets.Image(
            format="png",
            width=str(SONG_SIZE[0]),
            height=str(SONG_SIZE[1]),
            layout=widgets.Layout(width=f"{SONG_SIZE[0]}px", height=f"{SONG_SIZE[1]}px", display="none"),
        )
        self.image.add_class("discolib-song")
        # Released, not dragged: each position redraws the song's PNG (a good part of a second).
        self.cursor = widgets.IntSlider(
            value=0,
            min=0,
            max=0,
            description="frame",
            continuous_update=False,
            tooltip="Move the frame cursor: the song view marks the frame and its feature values show below",
            layout=widgets.Layout(width=f"{SONG_SIZE[0]}px"),
        )
        self.cursor.observe(self._on_cursor, names="value")
        self.values = widgets.HTML("")
        self.values.add_class("discolib-song-values")
        self.body = widgets.VBox(
            [self.summary, self.image, self.cursor, self.values], layout=widgets.Layout(display="none")
        )
        self.player_box = widgets.Box()
        self.box = widgets.VBox(
            [self.message, self.body, self.player_box], layout=widgets.Layout(margin=f"2px 0 0 {LABEL_PX + 4}px")
        )
        self.box.add_class("discolib-soundtrack")
        self._key: tuple[Any, ...] | None = None
        self._player_key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._thread: threading.Thread | None = None
        # The worker's answer (generation, features, error) until the kernel's thread shows it (_deliver).
        self._pending: tuple[int, AudioFeatures | None, str] | None = None
        self._pngs: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    # ------------------------------------------------------------------ settings -> features
    def update(self, settings: Settings) -> None:
        """Show the song of ``settings`` (nothing is asked again while :func:`features_key` stays the same)."""
        try:
            self._update(settings)
        except Exception as exc:  # an observer's work: shown under the field, never raised into ipywidgets
            _log.exception("discolib_widgets: the soundtrack view failed")
            self._finish(self._generation, None, f"unexpected error (please report it): {describe_error(exc)}")

    def _update(self, settings: Settings) -> None:
        key = features_key(settings)
        if key == self._key:
            return
        self._key = key
        with self._lock:
            self._generation += 1
            generation = self._generation
        if key is None:
            self._set_player(None)
            self._finish(generation, None, "")
            return
        path = settings.output.soundtrack
        try:
            from discolib.audio import audio_duration  # the analysis layer: only when a soundtrack is set

            audio_duration(path)  # the header only (milliseconds): a missing or bad file is one line, at once
        except (*INPUT_ERRORS, OSError) as exc:
            self._set_player(None)
            self._finish(generation, None, describe_error(exc))
            return
        self._set_player(key[0], path)
        self.message.value = _NOTE_HTML.format(html.escape(f"analysing {Path(path).name}…"))
        if self.on_features is not None:
            self.on_features(None, f"output.soundtrack: analysing {Path(path).name}…", False)
        work = settings.copy()  # the user may edit while the analysis runs
        if not self.background:
            self._analyse(work, generation)
            return
        loop = kernel_loop()  # looked up here, on the kernel's thread
        self._thread = threading.Thread(
            target=self._analyse, args=(work, generation, loop), name="discolib-soundtrack", daemon=True
        )
        self._thread.start()

    def _analyse(self, settings: Settings, generation: int, loop: Any | None = None) -> None:
        """The library's analysis (on the worker thread in the background); its answer goes to :meth:`_deliver` on
        ``loop``'s thread (the kernel's), or is shown at once without a loop."""
        features: AudioFeatures | None = None
        error = ""
        try:
            features = settings.audio_features()
        except (*INPUT_ERRORS, OSError) as exc:
            error = describe_error(exc)
        except Exception as exc:  # a worker thread: shown under the field, never lost
            _log.exception("discolib_widgets: analysing the soundtrack failed")
            error = f"unexpected error (please report it): {describe_error(exc)}"
        with self._lock:
            if generation != self._generation:  # a newer update() came meanwhile: its answer wins
                return
            self._pending = (generation, features, error)
        if loop is None:
            self._deliver()
            return
        try:
            loop.add_callback(self._deliver)
        except Exception:  # a closed loop (the kernel shutting down): the next wait() shows it
            _log.exception("discolib_widgets: cannot hand the soundtrack's features to the kernel's thread")

    def _deliver(self) -> None:
        """Show the worker's pending answer (on the kernel's thread; a no-op once shown)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:
            try:
                self._finish(*pending)
            except Exception:  # a loop callback: logged, never raised into the kernel's loop
                _log.exception("discolib_widgets: showing the soundtrack's features failed")

    def _finish(self, generation: int, features: AudioFeatures | None, error: str) -> None:
        """Show ``features`` or ``error`` unless a newer :meth:`update` came meanwhile (its answer wins)."""
        with self._lock:  # the check and the assignment in one hold: a stale answer never overwrites a newer one
            if generation != self._generation:
                return
            self.features, self.error = features, error
        self.message.value = _ERROR_HTML.format(html.escape(error)) if error else ""
        if features is None:
            self.body.layout.display = "none"
            self.values.value = self.summary.value = ""
        else:
            with self.cursor.hold_trait_notifications():
                self.cursor.max = max(0, features.n_frames - 1)
                self.cursor.value = min(self.cursor.value, self.cursor.max)
            self.summary.value = _NOTE_HTML.format(html.escape(_summary_text(features)))
            self._draw()
            self.body.layout.display = ""
        if self.on_features is not None:
            try:
                self.on_features(features, error, bool(error))
            except Exception:  # an observer's work: logged, and the song view stays as drawn
                _log.exception("discolib_widgets: redrawing the schedules for the soundtrack failed")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the analysis thread and show its answer here (call it on the kernel's thread: a cell waiting blocks
        the loop that would show it); True when no analysis is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._deliver()
        return True

    # ------------------------------------------------------------------ cursor
    @property
    def frame(self) -> int:
        """The cursor's frame."""
        return int(self.cursor.value)

    def _on_cursor(self, _change: dict[str, Any]) -> None:
        try:
            if self.features is not None:
                self._draw()
        except Exception as exc:  # an observer: shown, never raised into ipywidgets
            _log.exception("discolib_widgets: drawing the song failed")
            self.message.value = _ERROR_HTML.format(html.escape(f"cannot draw the song: {describe_error(exc)}"))

    def _draw(self) -> None:
        """The song's PNG with the cursor, and the cursor frame's values (PNGs cached per features and frame)."""
        features = self.features
        if features is None:
            return
        frame = min(self.frame, features.n_frames - 1)
        self.values.value = f'<span style="font-family:monospace">{html.escape(frame_text(features, frame))}</span>'
        key = (features.key, frame)
        png = self._pngs.get(key)
        if png is None:
            png = song_png(features, frame)
            self._pngs[key] = png
            while len(self._pngs) > _PNG_CACHE_SIZE:
                self._pngs.popitem(last=False)
        else:
            self._pngs.move_to_end(key)
        self.image.value = png
        self.image.layout.display = ""

    # ------------------------------------------------------------------ player
    def _set_player(self, ident: tuple[Any, ...] | None, path: str | None = None) -> None:
        """The player of the file ``ident`` names (remade only when the file changes)."""
        if ident is not None and ident == self._player_key:
            return
        old, self.player, self._player_key = self.player, None, ident
        if ident is not None and path is not None:
            try:
                self.player = audio_player(path)
            except (*INPUT_ERRORS, OSError) as exc:  # unreadable now: said beside the player's place
                self.player = widgets.HTML(_ERROR_HTML.format(html.escape(describe_error(exc))))
        self.player_box.children = (self.player,) if self.player is not None else ()
        if old is not None:
            old.close()
