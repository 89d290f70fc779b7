"""One input widget per Settings field, generated from the schema's :class:`~discolib.config.settings.FieldInfo`.

The field's ``type_name`` and metadata pick the widget: bounded or plain int/float boxes, a checkbox, a dropdown
for choices, a text box for strings and keyframe strings, comma-separated text (or JSON) for lists and a JSON
text area for prompt dicts. This module only converts between widget values and Settings values and asks
discolib whether a value is valid; it holds no rules of its own.
"""

from __future__ import annotations

import functools
import html
import io
import json
import math
import warnings
from typing import Any

import ipywidgets as widgets
import numpy as np

from discolib import Settings
from discolib.config.settings import FieldInfo, SettingsError, field_info
from discolib.io.inputs import MAX_JSON_DEPTH, json_depth_ok
from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import Schedule
from discolib.schedules.plot import plot_schedule

__all__ = [
    "INPUT_ERRORS",
    "MESSAGE_CHARS",
    "PLOT_POINTS",
    "VALIDATE_FRAMES",
    "FieldControl",
    "PlotError",
    "check_field",
    "describe_error",
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

_DESCRIPTION_STYLE = {"description_width": "190px"}
_ERROR_HTML = '<span style="color:#c62828;white-space:pre-wrap">{}</span>'
_WARNING_HTML = '<span style="color:#a15c00;white-space:pre-wrap">{}</span>'


def check_field(info: FieldInfo, value: Any, settings: Settings) -> None:
    """The schedule, cut-schedule and prompt checks of one field (see :meth:`Settings.check_field`)."""
    if isinstance(value, (str, dict)):
        settings.check_field(info.name, value)


class PlotError(Exception):
    """A valid schedule that cannot be drawn (values near the float limits break matplotlib's axis ticks)."""


@functools.lru_cache(maxsize=256)
def schedule_png(text: str, setting: str, n_frames: int, interpolation: str = "linear") -> bytes:
    """PNG bytes (about 290x115 px) of a keyframe schedule over ``n_frames`` frames.

    Up to ``PLOT_POINTS`` frames go through :func:`discolib.schedules.plot.plot_schedule`; longer animations are
    evaluated by the same Schedule and drawn at ``PLOT_POINTS`` evenly spaced frames. Cached: panels made
    with the same schedules (or a user undoing an edit) do not re-plot. Raises ``ScheduleError`` on bad text
    and :class:`PlotError` when valid values cannot be drawn.
    """
    # Here, not at the top: matplotlib takes about a second to import and only a shown plot needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate-key warnings are shown beside the field, not twice
        sched = Schedule.parse(text, setting=setting, interpolation=interpolation)
        values = sched.values(n_frames) if n_frames > PLOT_POINTS else None  # the schedule's own errors, here
        try:
            fig = Figure(figsize=(4.0, 1.6), dpi=72)
            FigureCanvasAgg(fig)
            # Fixed margins: constrained layout doubles the drawing time of such a small figure.
            fig.subplots_adjust(left=0.17, right=0.97, bottom=0.3, top=0.86)
            ax = fig.add_subplot()
            if values is None:
                plot_schedule(sched, n_frames, ax=ax)
            else:
                idx = np.unique(np.linspace(0, n_frames - 1, PLOT_POINTS).round().astype(np.int64))
                ax.plot(idx, values[idx], lw=1.5)
                ax.set_xlabel("frame")
                ax.set_title(f"{setting} ({len(idx)} of {n_frames} frames drawn)", fontsize=9)
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


def _make_input(info: FieldInfo) -> widgets.ValueWidget:
    """The input widget for one field: its type and bounds decide the class; description and tooltip from it."""
    common: dict[str, Any] = {"description": info.field, "tooltip": info.help, "style": _DESCRIPTION_STYLE}
    t = info.type_name
    bounded = info.min is not None and info.max is not None
    if t == "bool":
        # width auto: the indent takes most of a checkbox's default 300 px and would cut the field name off.
        return widgets.Checkbox(value=bool(info.default), indent=True, layout=widgets.Layout(width="auto"), **common)
    if t == "choice":
        return widgets.Dropdown(options=list(info.choices), value=info.default, **common)
    if t == "int":
        if bounded:
            return widgets.BoundedIntText(value=info.default, min=int(info.min), max=int(info.max), **common)  # type: ignore[arg-type]
        return widgets.IntText(value=info.default, **common)
    if t == "float":
        if bounded:
            return widgets.BoundedFloatText(value=info.default, min=info.min, max=info.max, **common)
        return widgets.FloatText(value=info.default, **common)
    layout = widgets.Layout(width="640px")
    if t == "dict":
        return widgets.Textarea(
            value="",
            placeholder='{"0": ["a castle:2", "fog:-0.5"]}',
            layout=widgets.Layout(width="640px", height="8em"),
            **common,
        )
    if t.startswith("list["):
        placeholder = "comma-separated, or a JSON list"
        return widgets.Text(value="", placeholder=placeholder, layout=layout, **common)
    # Strings: names, paths, model ids, keyframe strings, cut schedules; typing is validated key by key.
    return widgets.Text(value="", layout=layout, continuous_update=True, **common)


class FieldControl:
    """The widgets of one Settings field: ``input``, a ``message`` beside it and, for keyframe strings, a plot.

    ``read()`` turns the widget's value into a Settings value (raising :class:`FieldInputError` when it cannot),
    ``write(value)`` shows a Settings value. The panel binds them to a :class:`~discolib.config.settings.Settings`.
    """

    def __init__(self, name: str) -> None:
        self.info: FieldInfo = field_info(name)
        self.name: str = self.info.name
        self.input: widgets.ValueWidget = _make_input(self.info)
        self.message = widgets.HTML(value="", layout=widgets.Layout(margin="0 0 0 8px"))
        self._error = ""
        self.plot: widgets.Image | None = None
        self.plot_toggle: widgets.ToggleButton | None = None
        row: list[widgets.Widget] = [self.input]
        if self.info.kind == "schedule":
            self.plot = widgets.Image(format="png", layout=widgets.Layout(display="none", margin="0 0 0 198px"))
            self.plot_toggle = widgets.ToggleButton(
                value=False,
                description="plot",
                icon="line-chart",
                tooltip="Show this schedule over animation.max_frames",
                layout=widgets.Layout(width="70px"),
            )
            row.append(self.plot_toggle)
        row.append(self.message)
        self.box: widgets.Box = widgets.HBox(row)
        if self.plot is not None:
            self.box = widgets.VBox([self.box, self.plot])

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

    def update_plot(self, settings: Settings) -> None:
        """Show or hide the plot per its toggle; when shown, draw the Settings value (always valid text)."""
        if self.plot is None:
            return
        self.plot.layout.display = "" if self.plot_shown else "none"
        if not self.plot_shown:
            return
        try:
            png = schedule_png(
                settings.get(self.name),
                self.name,
                settings.animation.max_frames,
                settings.animation.interpolation,
            )
        except PlotError as exc:  # the value is valid, only its drawing failed: a note, not an error
            self.plot.layout.display = "none"  # not the previous value's plot, which would mislead
            if not self._error:
                self.message.value = _WARNING_HTML.format(html.escape(str(exc)[:MESSAGE_CHARS]))
            return
        except INPUT_ERRORS as exc:  # an error past VALIDATE_FRAMES: keep the last good plot
            self.show_error(describe_error(exc))
            return
        self.plot.value = png
