"""One input widget per Settings field, generated from the schema's :class:`~discolib.config.settings.FieldInfo`.

The field's ``type_name`` and metadata pick the widget: bounded or plain int/float boxes, a checkbox, a dropdown
for choices, a text box for strings and keyframe strings, comma-separated text (or JSON) for lists and a JSON
text area for prompt dicts. This module only converts between widget values and Settings values and asks
discolib whether a value is valid; it holds no rules of its own.
"""

from __future__ import annotations

import html
import io
import json
import math
import threading
import warnings
from collections import OrderedDict
from typing import Any

import ipywidgets as widgets
import numpy as np

from discolib import Settings
from discolib.config.settings import FieldInfo, SettingsError, field_info
from discolib.config.ui import FieldUI, field_ui
from discolib.io.inputs import MAX_JSON_DEPTH, json_depth_ok
from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import Schedule
from discolib.schedules.plot import plot_schedule

__all__ = [
    "DRAW_LOCK",
    "INPUT_ERRORS",
    "MESSAGE_CHARS",
    "LABEL_PX",
    "PLOT_POINTS",
    "PLOT_SCALE",
    "PLOT_SIZE",
    "VALIDATE_FRAMES",
    "FieldControl",
    "PlotError",
    "animation_frames",
    "audio_schedule_values",
    "check_field",
    "describe_error",
    "interpolation_of",
    "plot_frames",
    "reads_audio",
    "schedule_png",
]

# A plot never draws more points than this, whatever animation.max_frames is (plotting 1e6 points costs seconds).
PLOT_POINTS = 2000
# As in Settings.validate: schedules are evaluated over at most this many frames, so typing stays instant.
VALIDATE_FRAMES = 100_000

# What a hostile value may make discolib or a library raise while it is checked: InputError is a ValueError;
# a huge number can overflow (OverflowError), deep nesting can exhaust the stack (RecursionError), and a
# library may reject a type (TypeError). Shown beside the field, never raised out of a widget observer.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    ArithmeticError,
    RecursionError,
    TypeError,
    MemoryError,
)
# A message beside a field is cut to this many characters (an error may quote a 100 KB value).
MESSAGE_CHARS = 600

#: Held while a plot is drawn: matplotlib's font and text caches are not thread-safe, and plots may be drawn off
#: the kernel's thread (the song view outside a kernel, a user's own threads).
DRAW_LOCK = threading.RLock()

#: Width of the label column (px); help, messages and plots are indented by it.
LABEL_PX = 200
#: The CSS size (px) of a schedule plot; its PNG has PLOT_SCALE times as many pixels each way (sharp on HiDPI).
PLOT_SIZE = (400, 150)
PLOT_SCALE = 2


# Layouts that never change after they are made, shared by every field's widgets: a Layout is a widget of its own
# (a comm each), and a panel has over a hundred fields. Layouts that change (display) are never shared.
_SHARED_LAYOUTS: dict[str, dict[str, str]] = {
    # Buttons size to their text and never shrink (a squeezed button shows "...").
    "button": {"width": "auto", "flex": "0 0 auto", "margin": "0 0 0 4px"},
    "label": {"width": f"{LABEL_PX}px", "flex": f"0 0 {LABEL_PX}px"},
    "below": {"margin": f"0 0 0 {LABEL_PX + 4}px"},
    "header": {"align_items": "center", "flex_flow": "row nowrap"},
    "checkbox": {"width": "auto"},
    # Inputs have a fixed basis: they never grow or shrink with what is shown around them.
    "number": {"width": "220px", "flex": "0 0 220px"},
    "text": {"width": "420px", "flex": "0 1 420px", "min_width": "200px"},
    "textarea": {"width": "420px", "flex": "0 1 420px", "min_width": "200px", "height": "8em"},
}
_LAYOUTS: dict[str, widgets.Layout] = {}


def shared_layout(kind: str) -> widgets.Layout:
    """The shared, never-changed Layout of ``kind`` (see ``_SHARED_LAYOUTS``); made on first use."""
    layout = _LAYOUTS.get(kind)
    if layout is None or layout.comm is None:  # closed (Widget.close_all): make a new one
        layout = _LAYOUTS[kind] = widgets.Layout(**_SHARED_LAYOUTS[kind])
    return layout
_ERROR_HTML = '<span style="color:#c62828;white-space:pre-wrap">{}</span>'
_NOTE_HTML = '<div class="discolib-curve-note" style="color:#666;font-size:85%">{}</div>'
# Schedules the library always evaluates linearly, whatever animation.interpolation says (animation/plan.py).
_ALWAYS_LINEAR = frozenset({"animation.seed_schedule"})
_WARNING_HTML = '<span style="color:#a15c00;white-space:pre-wrap">{}</span>'


def interpolation_of(name: str, settings: Settings) -> str:
    """How the library evaluates schedule ``name``: ``animation.interpolation``, except for the schedules it always
    evaluates linearly (the seed schedule), so their plot and curve show what the render uses."""
    return "linear" if name in _ALWAYS_LINEAR else settings.animation.interpolation


def _curve_note(name: str, settings: Settings) -> str:
    if name in _ALWAYS_LINEAR:
        return "interpolation: linear (this schedule is always evaluated linearly)"
    return f"interpolation: {settings.animation.interpolation} (Motion › Frames, for all schedules)"


def check_field(info: FieldInfo, value: Any, settings: Settings) -> None:
    """The schedule, cut-schedule and prompt checks of one field (see :meth:`Settings.check_field`)."""
    if isinstance(value, (str, dict)):
        settings.check_field(info.name, value)


class PlotError(Exception):
    """A valid schedule that cannot be drawn (values near the float limits break matplotlib's axis ticks)."""


# Schedule plots per (text, setting, frames, interpolation, features key, size, scale): panels made with the same
# schedules, a user undoing an edit, or every field redrawn when the song's features arrive draw each plot once.
_PNG_CACHE_SIZE = 256
_pngs: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()


def schedule_png(
    text: str,
    setting: str,
    n_frames: int,
    interpolation: str = "linear",
    *,
    audio: Any = None,
    size: tuple[int, int] = PLOT_SIZE,
    scale: int = PLOT_SCALE,
) -> bytes:
    """PNG bytes of a keyframe schedule over ``n_frames`` frames, for display at ``size`` CSS pixels.

    The PNG is ``size`` times ``scale`` pixels (devicePixelRatio 2 by default): shown at ``size`` it is sharp on
    HiDPI screens and never stretched.

    Up to ``PLOT_POINTS`` frames go through :func:`discolib.schedules.plot.plot_schedule`; longer animations are
    evaluated by the same Schedule and drawn at ``PLOT_POINTS`` evenly spaced frames. ``audio`` (the song's
    :class:`~discolib.audio.AudioFeatures`) evaluates a schedule that reads the soundtrack
    (:func:`audio_schedule_values`) and draws the song's beats (light) and bars (dark) as ticks. Cached (per
    ``audio.key``). Raises ``ScheduleError`` on bad text and :class:`PlotError` when valid values cannot be drawn.
    """
    key = (text, setting, int(n_frames), interpolation, None if audio is None else audio.key, tuple(size), int(scale))
    with _cache_lock:
        cached = _pngs.get(key)
        if cached is not None:
            _pngs.move_to_end(key)
            return cached
    png = _draw_schedule(text, setting, int(n_frames), interpolation, audio, size, scale)
    _cache_put(_pngs, key, png, _PNG_CACHE_SIZE)
    return png


def _draw_schedule(
    text: str, setting: str, n_frames: int, interpolation: str, audio: Any, size: tuple[int, int], scale: int
) -> bytes:
    """:func:`schedule_png`'s drawing (uncached)."""
    # Here, not at the top: matplotlib takes about a second to import and only a shown plot needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with DRAW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate-key warnings are shown beside the field, not twice
        sched = None
        if audio is not None:  # the schedule's own errors, here (None: the library's "no soundtrack" line)
            values: np.ndarray | None = audio_schedule_values(text, setting, n_frames, interpolation, audio)
        else:
            sched = Schedule.parse(text, setting=setting, interpolation=interpolation)
            values = sched.values(n_frames) if n_frames > PLOT_POINTS else None
        try:
            # Figure inches at 72 dpi are CSS pixels; dpi 72*scale gives scale device pixels per CSS pixel.
            fig = Figure(figsize=(size[0] / 72, size[1] / 72), dpi=72 * scale)
            FigureCanvasAgg(fig)
            # Fixed margins: constrained layout doubles the drawing time of such a small figure.
            fig.subplots_adjust(left=0.14, right=0.97, bottom=0.27, top=0.88)
            ax = fig.add_subplot()
            if audio is not None:
                # Beat and bar ticks: one LineCollection each (cheap however many beats the song has).
                for ticks, alpha in ((audio.beat_frames, 0.18), (audio.bar_frames, 0.45)):
                    ticks = np.asarray(ticks)
                    inside = ticks[(ticks >= 0) & (ticks < n_frames)]
                    if inside.size:
                        ax.vlines(inside, 0, 1, transform=ax.get_xaxis_transform(), colors="#7b1fa2", lw=0.6, alpha=alpha)
                ax.set_xlim(0, max(1, n_frames - 1))
            if values is None:
                assert sched is not None
                plot_schedule(sched, n_frames, ax=ax)
            else:
                idx = np.unique(np.linspace(0, n_frames - 1, min(n_frames, PLOT_POINTS)).round().astype(np.int64))
                ax.plot(idx, values[idx], lw=1.5)
                ax.set_xlabel("frame")
                drawn = "" if len(idx) == n_frames else f"{len(idx)} of {n_frames} frames drawn"
                if audio is not None:
                    ax.set_title(f"{setting} over the soundtrack (beats, bars{', ' if drawn else ''}{drawn})", fontsize=9)
                else:
                    ax.set_title(f"{setting} ({drawn})", fontsize=9)
                ax.grid(alpha=0.3)
            ax.locator_params(nbins=4)  # few ticks: tick creation is most of the drawing time
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
        except ScheduleError:
            raise
        except Exception as exc:  # matplotlib on values near 1e308: "arange: cannot compute length", overflow
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise PlotError(f"{setting}: valid, but too large to draw ({detail})") from None
    return buf.getvalue()


def animation_frames(settings: Settings) -> int:
    """The frames a schedule runs over: :meth:`Settings.n_frames` of an animation (the soundtrack's length when
    ``animation.length_from_soundtrack`` is on); ``animation.max_frames`` for stills or when the frame count cannot
    be known (a bad soundtrack: its error is shown under its own field)."""
    n = settings.animation.max_frames
    if settings.animation.animation_mode != "None":
        try:
            n = settings.n_frames()
        except (*INPUT_ERRORS, OSError):
            pass
    return max(1, int(n))


def plot_frames(settings: Settings) -> int:
    """The frames a schedule's plot covers: :func:`animation_frames`, at most :data:`VALIDATE_FRAMES`."""
    return min(animation_frames(settings), VALIDATE_FRAMES)


def reads_audio(text: str, setting: str) -> bool:
    """Whether the keyframe string reads the soundtrack (``bass(t)``, a ``beat_frame(8)`` key): the library's
    ``Schedule.uses_audio``; False for text that does not parse (its error is shown by the field's check)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(Schedule.parse(text, setting=setting).uses_audio)
    except INPUT_ERRORS:
        return False


# Evaluated audio schedules, per (text, setting, frames, interpolation, features key): redrawing a field, or every
# field when the song's features arrive, evaluates each curve once (the plot and the control share the values).
_AUDIO_CACHE_SIZE = 64
_audio_values: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_put(
    cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, size: int = _AUDIO_CACHE_SIZE
) -> None:
    with _cache_lock:
        cache[key] = value
        while len(cache) > size:
            cache.popitem(last=False)


def audio_schedule_values(text: str, setting: str, n_frames: int, interpolation: str, audio: Any) -> np.ndarray:
    """``Schedule.values(n_frames, audio=audio)`` of a keyframe string that reads the soundtrack (``audio``: the
    song's :class:`~discolib.audio.AudioFeatures`; None raises the library's one-line error naming the setting).
    Read-only; cached per features key."""
    key = (text, setting, int(n_frames), interpolation, None if audio is None else audio.key)
    with _cache_lock:
        cached = _audio_values.get(key)
    if cached is not None:
        return cached
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate-key warnings are shown beside the field
        values = Schedule.parse(text, setting=setting, interpolation=interpolation).values(n_frames, audio=audio)
    values.flags.writeable = False
    _cache_put(_audio_values, key, values)
    return values


class FieldInputError(SettingsError):
    """Widget text that cannot become a value of the field's type (bad JSON, a word in a list of numbers)."""


def describe_error(exc: BaseException) -> str:
    """The one-line message shown for ``exc``: discolib's own message, else the exception type and its text.

    Whitespace runs (newlines too) become one space and the text is cut to :data:`MESSAGE_CHARS`.
    """
    text = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RecursionError):
        text = "the value is nested too deeply to check"
    flat = " ".join(text.split()) or type(exc).__name__
    return flat if len(flat) <= MESSAGE_CHARS else flat[: MESSAGE_CHARS - 1] + "…"


def _format_number(x: float) -> str:
    return repr(float(x))


def _number_layout() -> widgets.Layout:
    return shared_layout("number")


def _make_input(info: FieldInfo) -> widgets.ValueWidget:
    """The input widget for one field: its type and bounds decide the class; description and tooltip from it."""
    # No description: the FieldControl's label shows the readable name (a description would be cut with "…").
    common: dict[str, Any] = {"tooltip": info.help}
    t = info.type_name
    bounded = info.min is not None and info.max is not None
    if t == "bool":
        return widgets.Checkbox(value=bool(info.default), indent=False, layout=shared_layout("checkbox"), **common)
    if t == "choice":
        return widgets.Dropdown(options=list(info.choices), value=info.default, layout=_number_layout(), **common)
    if t == "int":
        if bounded:
            return widgets.BoundedIntText(
                value=info.default, min=int(info.min), max=int(info.max), layout=_number_layout(), **common  # type: ignore[arg-type]
            )
        return widgets.IntText(value=info.default, layout=_number_layout(), **common)
    if t == "float":
        if bounded:
            return widgets.BoundedFloatText(
                value=info.default, min=info.min, max=info.max, layout=_number_layout(), **common
            )
        return widgets.FloatText(value=info.default, layout=_number_layout(), **common)
    # Text boxes have a fixed basis and never grow or shrink with what is shown around them.
    layout = shared_layout("text")
    if t == "dict":
        return widgets.Textarea(
            value="",
            placeholder='{"0": ["a castle:2", "fog:-0.5"]}',
            layout=shared_layout("textarea"),
            **common,
        )
    if t.startswith("list["):
        placeholder = "comma-separated, or a JSON list"
        return widgets.Text(value="", placeholder=placeholder, layout=layout, **common)
    # Strings: names, paths, model ids, keyframe strings, cut schedules; typing is validated key by key.
    return widgets.Text(value="", layout=layout, continuous_update=True, **common)


def _names_line(field: str, originals: tuple[str, ...]) -> str:
    """The setting's name and the originals' names for it: ``"seed (Disco, Deforum)"``,
    ``"width · Disco: width_height · Deforum: W"`` (originals are ``"Tool: key"``)."""
    same: list[str] = []
    other: dict[str, list[str]] = {}
    for item in originals:
        tool, _, key = item.partition(": ")
        if not key:
            tool, key = "", tool
        if key == field and tool:
            same.append(tool)
        elif key != field:
            other.setdefault(tool, []).append(key)
    first = f"{field} ({', '.join(same)})" if same else field
    return " · ".join([first, *(f"{tool}: {', '.join(keys)}" if tool else ", ".join(keys) for tool, keys in other.items())])


class FieldControl:
    """The widgets of one Settings field: ``input``, a ``message`` beside it and, for keyframe strings, a plot.

    ``read()`` turns the widget's value into a Settings value (raising :class:`FieldInputError` when it cannot),
    ``write(value)`` shows a Settings value. The panel binds them to a :class:`~discolib.config.settings.Settings`.
    """

    def __init__(self, name: str, ui: FieldUI | None = None) -> None:
        self.info: FieldInfo = field_info(name)
        self.name: str = self.info.name
        self.ui: FieldUI = ui if ui is not None else field_ui(self.name)
        self.input: widgets.ValueWidget = _make_input(self.info)
        # The label is its own widget, not the input's description: ipywidgets cuts a long description with "…",
        # a label here wraps. The small grey line under it names the setting as discolib and the originals do.
        names = _names_line(self.info.field, self.ui.originals)
        self.label = widgets.HTML(
            value=(
                f'<div class="discolib-label" title="{html.escape(self.name)}" style="line-height:1.2">'
                f"{html.escape(self.ui.label)}<br>"
                f'<span class="discolib-orig" style="color:#888;font-size:80%">{html.escape(names)}'
                "</span></div>"
            ),
            layout=shared_layout("label"),
        )
        # The one-line help stays visible under the control; the input's tooltip keeps the full help.
        self.help_line = widgets.HTML(
            value=f'<div class="discolib-help" style="color:#555;font-size:90%;line-height:1.3">'
            f"{html.escape(self.ui.help)}</div>",
            layout=shared_layout("below"),
        )
        # Messages go below the control, never beside it: a long message beside a text box used to squeeze it.
        self.message = widgets.HTML(value="", layout=shared_layout("below"))
        self._error = ""
        self.plot: widgets.Image | None = None
        self.plot_toggle: widgets.ToggleButton | None = None
        self.curve_toggle: widgets.ToggleButton | None = None
        self.curve_box: widgets.Box | None = None  # made with the editor, the first time it is shown
        self.curve: Any = None  # the CurveEditor (discolib_widgets.curve), made when first shown
        self.curve_note: widgets.HTML | None = None  # which interpolation the curve shows, and where it is set
        self._curve_link: widgets.link | None = None
        #: The song's features (:class:`~discolib.audio.AudioFeatures`) for schedules that read the soundtrack, set
        #: by the panel (:meth:`set_audio`); ``audio_note`` says why there are none (analysing, the file's error).
        self.audio: Any = None
        self.audio_note = ""
        self._audio_note_error = False
        #: The values the plot shows of a schedule that reads the soundtrack (``Schedule.values(.., audio=)``).
        self.plot_values: np.ndarray | None = None
        self._audio_message = ""  # the message HTML this control's audio plot put there (cleared when stale)
        row: list[widgets.Widget] = [self.label, self.input]
        parts: list[widgets.Widget] = []
        if self.info.kind == "schedule":
            # Hidden until it holds a PNG (an empty Image shows a broken-image icon); its CSS size is the size the
            # PNG is drawn at (PLOT_SCALE times as many pixels), so the browser never stretches it.
            self.plot = widgets.Image(
                format="png",
                width=str(PLOT_SIZE[0]),
                height=str(PLOT_SIZE[1]),
                layout=widgets.Layout(
                    display="none",
                    width=f"{PLOT_SIZE[0]}px",
                    height=f"{PLOT_SIZE[1]}px",
                    margin=f"2px 0 0 {LABEL_PX + 4}px",
                ),
            )
            self.plot.add_class("discolib-plot")
            self.plot_toggle = widgets.ToggleButton(
                value=False,
                description="plot",
                icon="line-chart",
                tooltip="Show this schedule over animation.max_frames",
                layout=shared_layout("button"),
            )
            self.curve_toggle = widgets.ToggleButton(
                value=False,
                description="curve",
                icon="pencil",
                tooltip="Edit this schedule as a curve: drag, add and delete keyframes",
                layout=shared_layout("button"),
            )
            row += [self.plot_toggle, self.curve_toggle]
            parts = [self.plot]
        header = widgets.HBox(row, layout=shared_layout("header"))
        self.box: widgets.Box = widgets.VBox(
            [header, self.help_line, self.message, *parts], layout=widgets.Layout(margin="0 0 6px 0")
        )
        self.box.add_class("discolib-field")

    # ------------------------------------------------------------------ values
    def read(self) -> Any:
        """The widget's value as a Settings value (lists and dicts parsed from text)."""
        raw = self.input.value
        t = self.info.type_name
        if t == "dict":
            if not raw.strip():
                return {}
            return self._json(raw)
        if t.startswith("list["):
            text = raw.strip()
            if text.startswith("["):
                return self._json(text)
            parts = [p.strip() for p in text.split(",")] if text else []
            if t == "list[str]":
                return [p for p in parts if p]
            out: list[float] = []
            for p in parts:
                try:
                    x = float(p)
                except ValueError:
                    raise FieldInputError(
                        f"expected comma-separated numbers such as 0.1, 0.5; {p[:40]!r} is not a number",
                        field=self.name,
                    ) from None
                if not math.isfinite(x):
                    raise FieldInputError(f"expected finite numbers; {p[:40]!r} is not", field=self.name)
                out.append(x)
            return out
        return raw

    def _json(self, text: str) -> Any:
        """JSON text as a value: at most MAX_JSON_DEPTH deep, finite numbers only, errors naming line and column."""
        where = json_depth_ok(text)
        if where is not None:
            raise FieldInputError(
                f"JSON nested deeper than {MAX_JSON_DEPTH} levels (at character {where})", field=self.name
            )

        def bad_number(token: str) -> Any:
            raise FieldInputError(f"{token[:40]} is not a finite number; expected a finite number", field=self.name)

        def parse_float(token: str) -> float:
            x = float(token)
            return x if math.isfinite(x) else bad_number(token)

        try:
            return json.loads(text, parse_constant=bad_number, parse_float=parse_float)
        except json.JSONDecodeError as exc:
            raise FieldInputError(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field=self.name
            ) from None

    def write(self, value: Any) -> None:
        """Show a Settings value in the widget (the caller silences its own observers)."""
        t = self.info.type_name
        if t == "dict":
            self.input.value = json.dumps(value, indent=2, ensure_ascii=False)
        elif t == "list[str]":
            # Plain comma-separated text unless an item would not survive the split.
            if any("," in x or x != x.strip() or not x for x in value) or (value and value[0].startswith("[")):
                self.input.value = json.dumps(value, ensure_ascii=False)
            else:
                self.input.value = ", ".join(value)
        elif t == "list[float]":
            self.input.value = ", ".join(_format_number(x) for x in value)
        else:
            self.input.value = value

    # ------------------------------------------------------------------ messages
    @property
    def error(self) -> str:
        """The error message shown beside the widget ('' when there is none)."""
        return self._error

    def show_error(self, message: str) -> None:
        """Show ``message`` beside the widget (cut to :data:`MESSAGE_CHARS`: it may quote a huge value)."""
        if len(message) > MESSAGE_CHARS:
            message = message[: MESSAGE_CHARS - 1] + "…"
        self._error = message
        self.message.value = _ERROR_HTML.format(html.escape(message))

    def show_ok(self, notes: list[str] | None = None) -> None:
        """Clear the error; show warnings (duplicate keyframes) when there are any."""
        self._error = ""
        self.message.value = _WARNING_HTML.format(html.escape("; ".join(notes))) if notes else ""

    # ------------------------------------------------------------------ plot
    @property
    def plot_shown(self) -> bool:
        return self.plot_toggle is not None and bool(self.plot_toggle.value)

    def _show_plot(self, shown: bool) -> None:
        if self.plot is not None:
            # Never an empty Image on screen: the browser would draw a broken-image icon.
            self.plot.layout.display = "" if shown and len(self.plot.value) else "none"

    def set_audio(self, features: Any, note: str = "", *, error: bool = False) -> None:
        """The song's features for this schedule's plot, or None and the note saying why there are none (an
        ``error`` is shown red under the field while the schedule reads the soundtrack)."""
        self.audio, self.audio_note, self._audio_note_error = features, note, error
        if self.curve is not None:
            self.curve.set_audio(features)

    def _audio_message_show(self, text: str, *, error: bool) -> None:
        """A message of the audio plot under the field, unless an input error is shown there (it comes first)."""
        if self._error:
            return
        value = (_ERROR_HTML if error else _WARNING_HTML).format(html.escape(text[:MESSAGE_CHARS]))
        self.message.value = self._audio_message = value

    def _audio_message_clear(self) -> None:
        if self._audio_message and self.message.value == self._audio_message:
            self.message.value = ""
        self._audio_message = ""

    def update_plot(self, settings: Settings) -> None:
        """Show or hide the plot per its toggle; when shown, draw the Settings value (always valid text).

        While the curve editor is shown the plot stays hidden and is not drawn: the curve is the plot, and a drag
        sends an edit every few tens of milliseconds (a PNG takes a good part of a second to draw). A schedule that
        reads the soundtrack is drawn over the song (:meth:`_update_audio_plot`).
        """
        if self.plot is None:
            return
        text = settings.get(self.name)
        if reads_audio(text, self.name):
            self._update_audio_plot(settings, text)
            return
        self.plot_values = None
        self._audio_message_clear()
        if not self.plot_shown or self.curve_shown:
            self._show_plot(False)
            return
        try:
            png = schedule_png(text, self.name, plot_frames(settings), interpolation_of(self.name, settings))
        except PlotError as exc:  # the value is valid, only its drawing failed: a note, not an error
            self._show_plot(False)  # not the previous value's plot, which would mislead
            if not self._error:
                self.message.value = _WARNING_HTML.format(html.escape(str(exc)[:MESSAGE_CHARS]))
            return
        except INPUT_ERRORS as exc:  # an error past VALIDATE_FRAMES: keep the last good plot
            self.show_error(describe_error(exc))
            self._show_plot(True)
            return
        self.plot.value = png
        self._show_plot(True)

    def _update_audio_plot(self, settings: Settings, text: str) -> None:
        """A schedule that reads the soundtrack: its values over :func:`plot_frames` frames of the song (shown when
        the plot is), or the one-line reason there are none under the field (whether the plot is shown or not)."""
        assert self.plot is not None
        n, interpolation = plot_frames(settings), interpolation_of(self.name, settings)
        self.plot_values = None
        try:
            if self.audio is None and self.audio_note:  # analysing, or the soundtrack's own error
                self._audio_message_show(self.audio_note, error=self._audio_note_error)
                self._show_plot(False)
                return
            # Without features this raises the library's "reads the soundtrack, but there is none" line.
            self.plot_values = audio_schedule_values(text, self.name, n, interpolation, self.audio)
            self._audio_message_clear()
            if not self.plot_shown or self.curve_shown:
                self._show_plot(False)
                return
            self.plot.value = schedule_png(text, self.name, n, interpolation, audio=self.audio)
        except PlotError as exc:
            self._audio_message_show(str(exc), error=False)
            self._show_plot(False)
            return
        except INPUT_ERRORS as exc:
            self._audio_message_show(describe_error(exc), error=True)
            self._show_plot(False)
            return
        self._show_plot(True)

    # ------------------------------------------------------------------ curve editor
    @property
    def curve_shown(self) -> bool:
        return self.curve_toggle is not None and bool(self.curve_toggle.value)

    def update_curve(self, settings: Settings) -> None:
        """Show or hide the curve editor per its toggle; it is made on first show and linked to the text box.

        The editor's ``text`` and the text box's ``value`` are linked both ways (a drag edits the text box, which
        the panel checks like typing); its ``max_frames`` and ``interpolation`` follow the Settings. The editor
        shows neither its own text box (the field's is linked to it) nor an interpolation picker (one setting,
        ``animation.interpolation``, sets it for all schedules: a note under the curve says so). While it is
        shown the PNG plot is hidden; closing it brings the plot back (when toggled on) with the current value.
        """
        if self.curve_toggle is None:
            return
        if not self.curve_shown:
            if self.curve_box is not None:
                self.curve_box.layout.display = "none"
            self.update_plot(settings)  # the plot was not drawn while the curve was shown
            return
        if self.curve is None or self.curve_box is None:
            from discolib_widgets.curve import CurveEditor  # the anywidget and its JS: only when asked for

            options: dict[str, Any] = {"show_text": False}
            if "show_interpolation" in CurveEditor.class_trait_names():
                options["show_interpolation"] = False
            self.curve = CurveEditor(
                self.input.value,
                setting=self.name,
                max_frames=animation_frames(settings),
                interpolation=interpolation_of(self.name, settings),
                audio=self.audio,
                **options,
            )
            self._curve_link = widgets.link((self.input, "value"), (self.curve, "text"))
            self.curve_note = widgets.HTML(_NOTE_HTML.format(html.escape(_curve_note(self.name, settings))))
            self.curve_box = widgets.VBox(
                [self.curve, self.curve_note], layout=widgets.Layout(margin=f"2px 0 0 {LABEL_PX + 4}px")
            )
            self.box.children = (*self.box.children, self.curve_box)
        else:
            self.sync_curve(settings)
        self.curve_box.layout.display = ""
        self._show_plot(False)  # the curve is the plot

    def sync_curve(self, settings: Settings) -> None:
        """Give the curve editor (when made) the Settings' animation.max_frames and the interpolation the schedule
        is evaluated with (:func:`interpolation_of`)."""
        if self.curve is None:
            return
        with self.curve.hold_sync():
            self.curve.max_frames = animation_frames(settings)
            self.curve.interpolation = interpolation_of(self.name, settings)
        if self.curve_note is not None:
            note = _NOTE_HTML.format(html.escape(_curve_note(self.name, settings)))
            if self.curve_note.value != note:
                self.curve_note.value = note
