"""The soundtrack in the panel: a view of the song under ``output.soundtrack`` and a small player.

:class:`SoundtrackView` shows what :meth:`Settings.audio_features` makes of the song (waveform envelope, rms, onset,
bass, mid and treble with beat and bar ticks, drawn by :func:`discolib.audio.plot_features`), a frame cursor and
the current frame's feature values as text, and plays the file (an ``ipywidgets.Audio`` of its bytes, for files up
to :data:`MAX_PLAYER_BYTES`). Everything about the song comes from discolib: this module only decides when to ask
again (the soundtrack's file, fps or beat settings changed) and draws the answer. A missing or bad file is the
library's one-line error under the field, found from the file's header at once; the analysis itself (seconds for
a long song, once per file thanks to the library's cache) runs on a worker thread.
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


def song_png(
    features: AudioFeatures,
    frame: int | None = None,
    *,
    curves: dict[str, np.ndarray] | None = None,
    size: tuple[int, int] = SONG_SIZE,
    scale: int = PLOT_SCALE,
) -> bytes:
    """PNG bytes of :func:`discolib.audio.plot_features` (with the frame cursor at ``frame``), ``size`` CSS pixels
    drawn at ``scale`` device pixels each (sharp on HiDPI screens)."""
    from discolib.audio import plot_features  # matplotlib and the analysis: only when a song is shown

    with DRAW_LOCK:  # drawn on the analysis thread too (see DRAW_LOCK)
        fig = plot_features(features, frame=frame, curves=curves)
        # Figure inches at 72 dpi are CSS pixels (as the schedule plots): the PNG is exactly size * scale.
        fig.set_size_inches(size[0] / 72, size[1] / 72)
        if fig.canvas is None or not hasattr(fig.canvas, "print_png"):
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72 * scale)
    return buf.getvalue()


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
    False. ``on_features(features, note, error)`` is called when the features change (None and a note saying why when
    there are none; ``error`` when the note is the file's error): the panel redraws the schedules that read the song. Nothing here raises into ipywidgets.

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
        self._thread = threading.Thread(
            target=self._analyse, args=(work, generation), name="discolib-soundtrack", daemon=True
        )
        self._thread.start()

    def _analyse(self, settings: Settings, generation: int) -> None:
        try:
            features = settings.audio_features()
        except (*INPUT_ERRORS, OSError) as exc:
            self._finish(generation, None, describe_error(exc))
            return
        except Exception as exc:  # a worker thread: shown under the field, never lost
            _log.exception("discolib_widgets: analysing the soundtrack failed")
            self._finish(generation, None, f"unexpected error (please report it): {describe_error(exc)}")
            return
        self._finish(generation, features, "")

    def _finish(self, generation: int, features: AudioFeatures | None, error: str) -> None:
        """Show ``features`` or ``error`` unless a newer :meth:`update` came meanwhile (its answer wins)."""
        with self._lock:
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
            except Exception:  # maybe on the worker thread: logged, and the song view stays as drawn
                _log.exception("discolib_widgets: redrawing the schedules for the soundtrack failed")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the analysis thread; True when no analysis is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
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
