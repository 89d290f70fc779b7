"""What a render looks like in a notebook, and the one way to render from one (:func:`render_here`).

Disco's "Diffuse!" cell is the model: the image evolves every ``display_rate`` steps, each finished image of a
batch stays on screen with its seed, and the video shows at the end. :class:`RenderView` is the render callback
that does this, with an overall progress bar, elapsed time and ETA. It has two ways to draw the same
:class:`ViewState`:

* ``"display"`` (the render cell): static ``display_data`` outputs updated in place through display ids, so a
  notebook saved afterwards (papermill's output notebook included) holds real images and the final progress text,
  never a widget's ``VBox(children=...)`` or a frozen 0% bar;
* ``"widgets"`` (the panel): ipywidgets in :attr:`RenderView.widget`, which the panel puts in its layout.

Events turn into state in one place (:meth:`RenderView._update`); only the drawing differs. Events arrive on the
render thread (steps) and on the frame writer's thread (frames), so updates are serialised with a lock; step
redraws are throttled to a few per second, and preview PNGs are encoded only when drawn.
"""

from __future__ import annotations

import base64
import html
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import ipywidgets as widgets

from discolib.config.settings import Settings
from discolib.errors import InputError, ResourceLimitError, WeightsUnavailable, one_line
from discolib.io.files import encode_png
from discolib.run.runs import RunFolder, resolve_resume

if TYPE_CHECKING:  # discolib.run.events imports torch; the view needs it only once a render runs
    from discolib.run.events import RenderEvent, RenderResult

__all__ = [
    "MAX_EMBED_BYTES",
    "MODEL_IMPORTS",
    "RenderView",
    "ViewState",
    "format_duration",
    "has_sound",
    "render_here",
    "video_bundle",
    "video_too_large",
]

_log = logging.getLogger("discolib_widgets")

#: Step events redraw at most this often (seconds); start, frame and end events always redraw.
REDRAW_INTERVAL = 0.2
#: A video larger than this is linked by its path instead of embedded (it would bloat the notebook).
MAX_EMBED_BYTES = 25 * 1024 * 1024
#: Errors about what the user gave or has: IPython shows their one-line message instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, WeightsUnavailable, ResourceLimitError)


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` from one."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


@dataclass
class ViewState:
    """What the view shows, as plain data (what tests read)."""

    status: str = "waiting"  # waiting | rendering | done | stopped | failed
    text: str = ""
    frames_done: int = 0
    total_frames: int = 0
    step: int = 0
    total_steps: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    fraction: float = 0.0
    preview_png: bytes | None = None
    #: finished stills (PNG bytes, caption "seed 123 · image 2/4"), the last ``gallery_size`` of them
    gallery: list[tuple[bytes, str]] = field(default_factory=list)
    video: Path | None = None
    run_dir: Path | None = None
    frame: int = 0  # index of the frame (or still) being made
    error: str = ""  # the one-line error of a failed render


class RenderView:
    """The render callback that shows a render as it happens (see the module's docstring).

    Args:
        backend: ``"display"`` (static outputs in the current cell, :meth:`start` shows them) or ``"widgets"``
            (:attr:`widget`, for the panel).
        gallery_size: how many finished stills the state (and the widgets' gallery) keeps.
        clock: seconds, monotonic (tests pass a fake one).

    Attributes:
        stills: whether the run makes stills (each finished image joins the gallery) or an animation (frames show
            in the preview only); :func:`render_here` sets it, None guesses from the frame count.
    """

    def __init__(
        self,
        *,
        backend: Literal["display", "widgets"] = "display",
        gallery_size: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if backend not in ("display", "widgets"):
            raise ValueError(f"backend: expected 'display' or 'widgets', got {backend!r}")
        self.backend = backend
        self.gallery_size = max(1, int(gallery_size))
        self.clock = clock
        self.stills: bool | None = None
        self._lock = threading.RLock()
        self.state = ViewState()
        self._reset_run()
        # Widgets exist for both backends (cheap, and the panel may show a "display" view's widget too).
        self._bar = widgets.IntProgress(
            value=0, min=0, max=1000, bar_style="info", layout=widgets.Layout(width="100%", max_width="512px")
        )
        self._label = widgets.HTML(value="")
        # Hidden until it has pixels: an empty Image shows a broken-image icon.
        self._preview = widgets.Image(format="png", layout=widgets.Layout(max_width="512px", display="none"))
        self._gallery_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self._video_box = widgets.VBox()
        self.widget = widgets.VBox([self._bar, self._label, self._preview, self._gallery_box, self._video_box])
        self._handles: dict[str, str] = {}  # display backend: part -> display id
        self._shown_gallery = 0  # stills already drawn
        # widgets backend: the drawn thumbnails, oldest first, one per state.gallery entry drawn (kept in step with
        # the gallery's trim, so each still's widgets are made once and closed when it leaves the gallery)
        self._thumbs: list[widgets.Widget] = []

    # ------------------------------------------------------------------------------------------- lifecycle
    def _reset_run(self) -> None:
        self.state = ViewState()
        self._t0: float | None = None  # the "start" event: elapsed counts from here
        # The ETA counts from the first step or frame, not from "start": between them the loop loads models (and
        # may download weights), which says nothing about how long the steps take.
        self._eta_t0: float | None = None
        self._eta_base = 0.0  # the fraction done at that first step or frame
        # The newest preview not drawn yet: a tensor (encoded only when drawn) or a written frame's path (read then).
        self._pending: Any = None
        self._last_draw = float("-inf")
        self._shown_gallery = 0

    def reset(self) -> None:
        """Forget the last render: empty state, bar at 0, no preview, gallery or video."""
        with self._lock:
            self._reset_run()
            self._bar.value, self._bar.bar_style = 0, "info"
            self._label.value = ""
            self._preview.layout.display = "none"
            # Closed, not only dropped: a dropped widget stays in the kernel (and its comm in the browser) for good.
            old = (*self._thumbs, *self._video_box.children)
            self._thumbs = []
            self._gallery_box.children = ()
            self._video_box.children = ()
            for w in old:
                _close_tree(w)
            self._handles = {}

    def start(self) -> None:
        """Reset, and with the ``"display"`` backend show the progress output in the current cell (the preview,
        the stills and the video follow as they come)."""
        self.reset()
        if self.backend == "display":
            with self._lock:
                self._draw({"progress"})

    # ------------------------------------------------------------------------------------------- events
    def __call__(self, event: RenderEvent) -> None:
        """The render callback; never raises (a problem of the view is shown in its text, the render goes on)."""
        try:
            with self._lock:
                parts, forced = self._update(event)
                now = self.clock()
                if forced or now - self._last_draw >= REDRAW_INTERVAL:
                    self._draw(parts | ({"preview"} if self._pending is not None else set()))
        except Exception as exc:  # noqa: BLE001 - a view must never stop a render
            self._problem(exc)

    def _problem(self, exc: BaseException) -> None:
        _log.warning("render view: %s", exc, exc_info=True)
        try:
            with self._lock:
                self.state.text = f"{self.state.text}  (preview problem: {one_line(exc, 200) or type(exc).__name__})"
                self._draw({"progress"})
        except Exception:  # noqa: BLE001 - nothing left to show it with
            pass

    def _is_stills(self) -> bool:
        return self.stills if self.stills is not None else self.state.total_frames <= self.gallery_size

    def _update(self, event: RenderEvent) -> tuple[set[str], bool]:
        """The one place events change the state: returns (parts to redraw, whether to draw now)."""
        st = self.state
        now = self.clock()
        kind = event.kind
        parts: set[str] = {"progress"}
        # Steps redraw at most every REDRAW_INTERVAL; so do an animation's frames (cadence can write dozens a
        # second), while each finished still is drawn at once (it joins the gallery).
        forced = kind not in ("step", "frame")
        if kind == "start":
            if self._t0 is None:
                self._t0 = now
            st.status, st.error = "rendering", ""
            st.run_dir = Path(event.path) if event.path is not None else st.run_dir
            st.total_frames = max(1, event.total_frames)
            st.frames_done = st.frame = event.frame
            st.step = st.total_steps = 0
            st.fraction = min(1.0, event.frame / st.total_frames)
            self._eta_t0 = None  # set again by the first step or frame of this (re)start
            if event.frame > 0 and self._is_stills() and st.run_dir is not None and not st.gallery:
                st.gallery = self._done_stills(st.run_dir, event.frame)
                parts.add("gallery")
        elif kind == "step":
            st.total_frames = max(1, event.total_frames)
            st.frame, st.step, st.total_steps = event.frame, event.step, event.total_steps
            if event.total_steps > 0:
                st.fraction = max(st.fraction, min(1.0, (event.frame + event.step / event.total_steps) / st.total_frames))
            if event.preview is not None:
                self._pending = event.preview
                parts.add("preview")
        elif kind == "frame":
            st.total_frames = max(1, event.total_frames)
            st.frames_done = max(st.frames_done, event.frame + 1)
            st.fraction = max(st.fraction, min(1.0, st.frames_done / st.total_frames))
            shown = event.path if event.path is not None else event.preview  # frames are PNG files already
            if shown is not None:
                self._pending = shown
                parts.add("preview")
                if self._is_stills():
                    forced = True
                    png = self._take_pending()
                    st.gallery.append((png, self._caption(event.frame, event.seed)))
                    parts.add("gallery")
        elif kind == "done":
            st.status = "done"
            st.frames_done = st.frame = st.total_frames = max(st.total_frames, event.total_frames)
            st.fraction = 1.0
            st.run_dir = Path(event.path) if event.path is not None else st.run_dir
        elif kind == "stopped":
            st.status = "stopped"
        elif kind == "error":
            st.status, st.error = "failed", one_line(event.message, 300)
        if kind in ("step", "frame") and self._eta_t0 is None:
            self._eta_t0, self._eta_base = now, st.fraction
        self._trim_gallery()
        self._times(now)
        return parts, forced

    def _take_pending(self) -> bytes:
        """The pending preview as PNG bytes, now the preview: a frame file's bytes as they are, a tensor encoded."""
        pending, self._pending = self._pending, None
        png = Path(pending).read_bytes() if isinstance(pending, (str, Path)) else encode_png(pending)
        self.state.preview_png = png
        return png

    def _caption(self, index: int, seed: int | None) -> str:
        what = "image" if self._is_stills() else "frame"
        where = f"{what} {index + 1}/{self.state.total_frames}"
        return f"seed {seed} · {where}" if seed is not None else where

    def _done_stills(self, run_dir: Path, n: int) -> list[tuple[bytes, str]]:
        """The stills a resumed batch made before (the last ``gallery_size``), captioned with their seeds."""
        folder = RunFolder(run_dir)
        record, _ = folder.try_read_record()
        seeds = record.seeds if record is not None else []
        out = []
        for i in range(max(0, n - self.gallery_size), n):
            try:
                png = folder.frame_path(i).read_bytes()
            except OSError:
                continue
            out.append((png, self._caption(i, seeds[i] if i < len(seeds) else None)))
        return out

    def _trim_gallery(self) -> None:
        extra = len(self.state.gallery) - self.gallery_size
        if extra > 0:
            del self.state.gallery[:extra]
            self._shown_gallery = max(0, self._shown_gallery - extra)

    def _times(self, now: float) -> None:
        """Elapsed, ETA and the one-line text, from the state and the clock."""
        st = self.state
        st.elapsed_s = now - self._t0 if self._t0 is not None else 0.0
        # Only the progress made since the first step or frame of this (re)start, over the time it took.
        made = st.fraction - self._eta_base
        stepping = now - self._eta_t0 if self._eta_t0 is not None else 0.0
        if st.status == "rendering" and made > 0 and stepping > 0:
            st.eta_s = stepping * (1.0 - st.fraction) / made
        elif st.status == "done":
            st.eta_s = 0.0
        else:  # not rendering, or no step made since this (re)start yet
            st.eta_s = None
        st.text = self._text()

    def _text(self) -> str:
        st = self.state
        what = "image" if self._is_stills() else "frame"
        elapsed = format_duration(st.elapsed_s)
        where = f" · {st.run_dir}" if st.run_dir is not None else ""
        if st.status == "waiting":
            return "waiting for the render to start"
        if st.status == "done":
            return f"done: {st.frames_done} {what}{'' if st.frames_done == 1 else 's'} in {elapsed}{where}"
        if st.status == "stopped":
            # Resumable only from a complete frame: a run stopped before its first has nothing to continue.
            resumable = ", resumable" if st.frames_done > 0 else ", nothing to resume"
            return f"stopped after {elapsed}: {st.frames_done} of {st.total_frames} {what}s done{resumable}{where}"
        if st.status == "failed":
            return f"failed after {elapsed}: {st.error or 'error'}"
        parts = [f"{what} {min(st.frame + 1, st.total_frames)}/{st.total_frames}"]
        if st.total_steps:
            parts.append(f"step {st.step}/{st.total_steps}")
        parts.append(f"{elapsed} elapsed")
        if st.eta_s is not None:
            parts.append(f"ETA {format_duration(st.eta_s)}")
        return " · ".join(parts)

    # ------------------------------------------------------------------------------------------- the end
    def finish(self, result: RenderResult | None, error: BaseException | None = None) -> None:
        """The final status: the video (or, for stills, the last image) of ``result``, or ``error``'s one line."""
        try:
            with self._lock:
                st = self.state
                if self._t0 is None:
                    self._t0 = self.clock()
                if error is not None:
                    st.status = "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
                    st.error = one_line(error, 300) or type(error).__name__
                elif result is not None:
                    st.status = "done" if result.status == "done" else "stopped"
                    st.run_dir = Path(result.run_dir)
                    st.video = Path(result.video) if result.video is not None else None
                    if st.status == "done":
                        st.fraction = 1.0
                        st.frames_done = st.total_frames = max(st.total_frames, len(result.frames))
                    if result.frames and st.preview_png is None and self._pending is None:
                        st.preview_png = Path(result.frames[-1]).read_bytes()  # a run that emitted no frame event
                self._times(self.clock())
                parts = {"progress", "preview", "gallery"} | ({"video"} if st.video is not None else set())
                self._draw(parts)
                if self.backend == "display" and not _in_ipython():
                    print(st.text)  # a script: the one line that says how it ended
        except Exception as exc:  # noqa: BLE001 - the render's outcome matters more than its view
            self._problem(exc)

    # ------------------------------------------------------------------------------------------- drawing
    def _draw(self, parts: set[str]) -> None:
        """Draw ``parts`` of the state with the backend (called with the lock held)."""
        self._last_draw = self.clock()
        if "preview" in parts and self._pending is not None:
            self._take_pending()
        if self.backend == "display":
            self._draw_display(parts)
        else:
            self._draw_widgets(parts)

    def _progress_html(self) -> str:
        st = self.state
        color = {"failed": "#c62828", "stopped": "#ef6c00"}.get(st.status, "inherit")
        return (
            f'<progress value="{round(st.fraction * 1000)}" max="1000" style="width:100%;max-width:512px"></progress>'
            f'<div style="font-family:monospace;color:{color};white-space:pre-wrap">{html.escape(st.text)}</div>'
        )

    # "display": static outputs, each part one display id updated in place.
    def _show(self, part: str, bundle: dict[str, Any]) -> None:
        # Looked up when called, so that IPython's capture_output and test doubles see the calls.
        from IPython.display import display, update_display

        if not _in_ipython():
            return  # outside IPython display() would print the bundle's dict; render() returns the result anyway
        if part in self._handles:
            update_display(bundle, raw=True, display_id=self._handles[part])
        else:
            self._handles[part] = uuid.uuid4().hex
            display(bundle, raw=True, display_id=self._handles[part])

    def _draw_display(self, parts: set[str]) -> None:
        # Looked up when called (as in _show).
        from IPython.display import display

        st = self.state
        if "progress" in parts:
            pct = round(st.fraction * 100)
            self._show("progress", {"text/html": self._progress_html(), "text/plain": f"{pct:3d}% {st.text}"})
        if "preview" in parts and st.preview_png is not None:
            self._show("preview", _png_bundle(st.preview_png, "preview"))
        if "gallery" in parts and _in_ipython():
            # Each finished still is an output of its own, kept like Disco's (not updated, never replaced).
            for png, caption in st.gallery[self._shown_gallery :]:
                display(_png_bundle(png, caption), raw=True)
                display({"text/html": f"<div style='font-family:monospace'>{html.escape(caption)}</div>",
                         "text/plain": caption}, raw=True)
            self._shown_gallery = len(st.gallery)
        if "video" in parts and st.video is not None:
            self._show("video", video_bundle(st.video))

    # "widgets": the same state in ipywidgets.
    def _draw_widgets(self, parts: set[str]) -> None:
        st = self.state
        if "progress" in parts:
            self._bar.value = round(st.fraction * 1000)
            self._bar.bar_style = {"done": "success", "failed": "danger", "stopped": "warning"}.get(st.status, "info")
            color = {"failed": "#c62828", "stopped": "#ef6c00"}.get(st.status)
            style = f"font-family:monospace;white-space:pre-wrap{';color:' + color if color else ''}"
            self._label.value = f'<span style="{style}">{html.escape(st.text)}</span>'
        if "preview" in parts and st.preview_png is not None:
            self._preview.value = st.preview_png
            self._preview.layout.display = None
        if "gallery" in parts:
            self._draw_gallery_widgets()
        if "video" in parts and st.video is not None:
            old = self._video_box.children
            self._video_box.children = (_video_widget(st.video),)
            for w in old:
                _close_tree(w)

    def _draw_gallery_widgets(self) -> None:
        """Make thumbnails only for the stills not drawn yet; close those the gallery's trim dropped."""
        st = self.state
        # _trim_gallery lowered _shown_gallery by the stills it dropped: the oldest thumbnails are theirs.
        dropped = len(self._thumbs) - self._shown_gallery
        if dropped <= 0 and self._shown_gallery == len(st.gallery):
            return
        gone = self._thumbs[:max(0, dropped)]
        new = [_thumbnail(png, caption) for png, caption in st.gallery[self._shown_gallery :]]
        self._thumbs = self._thumbs[max(0, dropped) :] + new
        self._gallery_box.children = tuple(self._thumbs)
        self._shown_gallery = len(st.gallery)
        for w in gone:
            _close_tree(w)


def _in_ipython() -> bool:
    """Whether an IPython shell runs (outside one, ``display()`` would print the bundles' dicts)."""
    from IPython.core.interactiveshell import InteractiveShell  # IPython's own import cost, only when drawing

    return InteractiveShell.initialized()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _png_bundle(png: bytes, text: str) -> dict[str, str]:
    return {"image/png": _b64(png), "text/plain": text}


def video_too_large(path: Path) -> str | None:
    """The line naming ``path`` when the video is over :data:`MAX_EMBED_BYTES` (shown instead of it), else None."""
    size = Path(path).stat().st_size
    if size > MAX_EMBED_BYTES:
        return f"video: {path} ({size / 2**20:.0f} MB, too large to show here)"
    return None


def has_sound(path: Path) -> bool:
    """Whether the video has an audio stream (a soundtrack muxed in); False when ffmpeg cannot tell."""
    from discolib.io.video import probe_video  # ffmpeg: only for a video about to be shown

    try:
        return probe_video(path).has_audio
    except (InputError, OSError):
        return False


def video_bundle(path: Path) -> dict[str, str]:
    """The video as an embedded output (a GIF as an image), or a line naming it when too large to embed.

    A silent video plays at once (muted autoplay, which browsers allow); a video with a soundtrack waits for the
    play control, unmuted, so its sound plays (browsers refuse autoplay with sound)."""
    text = video_too_large(path)
    if text is not None:
        return {"text/html": f"<div style='font-family:monospace'>{html.escape(text)}</div>", "text/plain": text}
    data = path.read_bytes()
    if path.suffix.lower() == ".gif":
        return {"image/gif": _b64(data), "text/plain": f"video: {path}"}
    play = "controls" if has_sound(path) else "controls loop autoplay muted"
    return {
        "text/html": f'<video {play} style="max-width:100%" src="data:video/mp4;base64,{_b64(data)}"></video>',
        "text/plain": f"video: {path}",
    }


def _close_tree(widget: widgets.Widget) -> None:
    """Close ``widget``, its children, layouts and styles (``Widget.close`` closes only the widget itself)."""
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    for part in ("layout", "style"):
        sub = getattr(widget, part, None)
        if isinstance(sub, widgets.Widget):
            sub.close()
    widget.close()


def _thumbnail(png: bytes, caption: str) -> widgets.Widget:
    image = widgets.Image(value=png, format="png", layout=widgets.Layout(width="160px"))
    label = widgets.HTML(f"<span style='font-family:monospace;font-size:11px'>{html.escape(caption)}</span>")
    return widgets.VBox([image, label], layout=widgets.Layout(margin="2px"))


def _video_widget(path: Path) -> widgets.Widget:
    text = video_too_large(path)
    if text is not None:
        return widgets.HTML(html.escape(text))
    if path.suffix.lower() == ".gif":
        return widgets.Image(value=path.read_bytes(), format="gif", layout=widgets.Layout(max_width="512px"))
    # With a soundtrack: no autoplay (browsers refuse it with sound, and a looping song should wait for play).
    sound = has_sound(path)
    return widgets.Video(
        value=path.read_bytes(), format="mp4", autoplay=not sound, loop=not sound, controls=True,
        layout=widgets.Layout(max_width="512px"),
    )


# ---------------------------------------------------------------------------------------------- render_here


def _one_line_traceback(exc: BaseException) -> None:
    """Make IPython show ``exc`` as one line instead of a traceback (its ``_render_traceback_`` protocol); the
    exception's type stays, so ``except InputError`` still catches it."""
    message = f"{type(exc).__name__}: {one_line(exc, None, lines='join') or type(exc).__name__}"
    if isinstance(exc, ResourceLimitError):
        message += " (render_here(..., force=True) starts it anyway)"
    try:
        exc._render_traceback_ = lambda: [message]  # type: ignore[attr-defined]
    except AttributeError:  # an exception class with __slots__: keep the traceback
        pass


def _makes_stills(settings: Settings, folder: RunFolder | None) -> bool:
    """Whether the run makes stills: the resumed run's own settings decide, else ``settings``."""
    if folder is not None:
        try:
            return Settings.load(folder.settings_path).animation.animation_mode == "None"
        except (InputError, OSError):
            pass  # the render reports what is wrong with it
    return settings.animation.animation_mode == "None"


_render_end_listeners: weakref.WeakSet[Any] = weakref.WeakSet()


def on_render_end(listener: Any) -> None:
    """Call ``listener.render_ended()`` after every :func:`render_here` of this kernel ends (done, stopped or
    failed); held weakly. The panel uses it to offer Resume for a run the render cell just stopped."""
    _render_end_listeners.add(listener)


def _notify_render_end() -> None:
    for listener in list(_render_end_listeners):
        try:
            listener.render_ended()
        except Exception:  # a listener's failure must not replace the render's own result or error
            _log.exception("discolib_widgets: a render-end listener failed")


#: Held while a notebook thread first imports the model libraries (the render, the panel's weights check on its
#: worker thread): diffusers' lazy modules fail ("cannot import name ...") when two threads import them at once.
MODEL_IMPORTS = threading.Lock()


def render_here(
    settings: Settings,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    stop: threading.Event | None = None,
    force: bool = False,
    view: RenderView | None = None,
    render_fn: Callable[..., RenderResult] | None = None,
) -> RenderResult:
    """Render ``settings`` and show it as it happens: THE one way to render from a notebook.

    The render cell calls it without ``view`` (a ``"display"`` view is made and shown in the cell); the panel calls
    it on its render thread with its own ``"widgets"`` view.

    Args:
        settings: what to render (for a resume, only its ``run.output_root`` and ``run.batch_name`` are used).
        out: output root (overrides ``run.output_root``).
        resume: None (a new run), ``"latest"`` (the newest run of the batch) or a run folder, as Disco's
            ``resume_run``.
        stop: set it to stop after the current step (the run stays resumable).
        force: start a CPU run even when it looks too large (see :func:`discolib.run.budget.check_budget`).
        view: where to show it; default a new ``RenderView()`` shown in the current cell.
        render_fn: default :func:`discolib.render` (imported here: torch and the model libraries).

    Returns:
        The render's :class:`~discolib.run.events.RenderResult`.

    Raises:
        Whatever the render raises, after the view shows it; for errors about the user's input or weights IPython
        shows one line instead of a traceback.
    """
    view = view if view is not None else RenderView()
    try:
        view.start()
        root = out if out is not None else settings.run.output_root
        folder = resolve_resume(resume, root, settings.run.batch_name)
        view.stills = _makes_stills(settings, folder)
        if render_fn is None:
            with MODEL_IMPORTS:
                # Here, not at the top: the render loop imports torch and the model libraries (seconds).
                import discolib
                import discolib.run.loop  # noqa: F401 - imported under the lock (see MODEL_IMPORTS)
                from discolib.models.availability import weights_problem  # checked before a new run

                problem = None if folder is not None else weights_problem(settings)
            if problem:  # offline and not downloaded: one line naming what is missing, not a loader's traceback
                raise WeightsUnavailable(problem, reason="offline")
            render_fn = discolib.render
        kwargs: dict[str, Any] = {"callback": view, "stop": stop, "progress": False}
        if out is not None:
            kwargs["out"] = out
        if folder is not None:
            kwargs["resume"] = folder.path
        if force:
            kwargs["force"] = True
        result = render_fn(settings, **kwargs)
    except BaseException as exc:
        view.finish(None, exc)
        _notify_render_end()
        if isinstance(exc, USER_ERRORS):
            _one_line_traceback(exc)
        raise
    view.finish(result)
    _notify_render_end()
    return result
