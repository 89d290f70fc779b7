"""An interactive keyframe curve editor for one schedule field: drag keys, add and delete them, pick the interpolation.

:class:`CurveEditor` is an anywidget whose JavaScript (``static/curve.js``, plain ES module, no build step, nothing
fetched from the network) draws the schedule as discolib evaluates it and lets the user edit its number keys. Python
owns the keyframe string: the browser sends the edited keys, this module checks them and writes the canonical
string with :func:`text_from_keys`; a string set from Python (or typed in the panel) is parsed back into keys with
:func:`keys_from_text`. Both use discolib's own keyframe parser (:mod:`discolib.schedules.keyframes`), never eval.

Number keys (``10: (1.5)``) are editable. Expression keys (``0: (1+0.1*sin(t/5))``) and keys whose frame depends on
``max_f`` (``"max_f-1": (3)``) are read-only: drawn hollow, kept verbatim, never moved. A number key the user did
not touch keeps its text as written (``(3141592653)`` stays exactly that: a seed must not be rounded); a moved or
added value is written in the shortest positional form that reads back as the same float.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import MAX_KEY_FRAME, Schedule
from discolib_widgets.fields import INPUT_ERRORS, PLOT_POINTS, describe_error

__all__ = ["CurveEditor", "CurveKey", "keys_from_text", "text_from_keys"]

_STATIC = Path(__file__).parent / "static"
#: A value text Deforum reads as a number (its check_is_number): sign, digits, decimals; at least one digit.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")


@dataclass(frozen=True)
class CurveKey:
    """One keyframe of a schedule as the editor shows it.

    ``frame``: the key's frame (a ``max_f`` key resolved for the editor's frame count); ``value``: the number of a
    number key, else None; ``expr``: the value's text for an expression key, else None; ``key``: the key's own text
    when it uses ``max_f`` (written back verbatim), else None; ``text``: a number key's value as written (``1.50``),
    written back as is while it still reads as ``value``. ``text`` is notation, not identity: it is left out of
    ``==``, so ``CurveKey(0, 1.0, None)`` equals the key of ``0: (1)``.
    """

    frame: int
    value: float | None
    expr: str | None
    key: str | None = None
    text: str | None = field(default=None, compare=False)

    @property
    def editable(self) -> bool:
        """Number keys at a fixed frame can be dragged; expressions and ``max_f`` keys are read-only."""
        return self.value is not None and self.expr is None and self.key is None

    def to_json(self) -> dict[str, Any]:
        """The key as the browser gets it (an item of the ``keyframes`` trait)."""
        return {"frame": self.frame, "value": self.value, "expr": self.expr, "key": self.key, "editable": self.editable}


def _unwrap(text: str) -> str:
    """``text`` without one pair of parentheses around all of it (``(1+t)`` -> ``1+t``, ``(1)+(2)`` unchanged)."""
    text = text.strip()
    if len(text) < 2 or text[0] != "(" or text[-1] != ")":
        return text
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return text  # the first '(' closes before the end: not one pair around everything
    return text[1:-1]


def _parsed(text: str, setting: str, interpolation: str = "linear") -> Schedule:
    """Parse with discolib's parser; duplicate-key warnings are not raised here (the field shows them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Schedule.parse(text, setting=setting, interpolation=interpolation)


def keys_from_text(
    text: str, *, setting: str = "animation.zoom", max_frames: int = 100, audio: Any = None
) -> list[CurveKey]:
    """The keys of a keyframe string, sorted by frame; of two keys on one frame the later wins, as in a render.

    Raises the parser's :class:`~discolib.schedules.expr.ScheduleError` (an InputError naming ``setting`` and the
    column) on bad text. ``max_frames`` resolves keys that use ``max_f``, ``audio`` (the soundtrack's features)
    keys such as ``beat_frame(8)``; both kinds are read-only and written back verbatim.
    """
    sched = _parsed(text, setting)
    by_frame: dict[int, CurveKey] = {}
    for kf in sched.keyframes:
        computed = kf.key.uses_max_f or bool(getattr(kf.key, "uses_audio", False))
        frame = kf.key.frame_for(max_frames, audio) if computed else kf.key.frame
        key_text = kf.key.text if computed else None
        if kf.number is not None:
            by_frame[frame] = CurveKey(frame, kf.number, None, key_text, _unwrap(kf.text))
        else:
            by_frame[frame] = CurveKey(frame, None, _unwrap(kf.text), key_text)
    return [by_frame[f] for f in sorted(by_frame)]


def format_value(value: float) -> str:
    """A number as a keyframe value Deforum reads as a number: the shortest digits that read back as the same
    float, positional (Deforum reads ``1e-07`` as an expression), ``1.0`` not ``1``, never ``-0.0``."""
    x = float(value)
    if not math.isfinite(x):
        raise ScheduleError(f"expected a finite number, found {value!r}")
    if x == 0:
        return "0.0"
    return np.format_float_positional(x, unique=True, trim="0")


def _value_text(key: CurveKey) -> str:
    """A number key's value text: as written when that text still reads as its value, else :func:`format_value`."""
    value = float(key.value)  # type: ignore[arg-type]  # only called for number keys
    # Only a plain decimal (Deforum's number rule) is kept: float() would also take "1_0", "inf" or " 1 ".
    if key.text is not None and _PLAIN_NUMBER.fullmatch(key.text) and float(key.text) == value:
        return key.text
    return format_value(value)


def text_from_keys(keys: Sequence[CurveKey]) -> str:
    """The keyframe string ``"0: (1.0), 10: (1.5)"`` of ``keys`` in frame order: expressions and the text of
    number keys as written; a value with no text (moved or added) by :func:`format_value`."""
    parts = []
    for k in sorted(keys, key=lambda k: k.frame):
        where = f'"{k.key}"' if k.key is not None else str(int(k.frame))
        if k.expr is not None:
            what = k.expr
        elif k.value is not None:
            what = _value_text(k)
        else:
            raise ScheduleError(f"key at frame {k.frame} has neither a value nor an expression")
        parts.append(f"{where}: ({what})")
    return ", ".join(parts)


def _sample_frames(n_frames: int, key_frames: Sequence[int]) -> np.ndarray:
    """The frames the curve is drawn at: all of them up to PLOT_POINTS, else evenly spaced ones plus the keys'."""
    if n_frames <= PLOT_POINTS:
        return np.arange(n_frames, dtype=np.int64)
    keys = np.unique(np.asarray([f for f in key_frames if 0 <= f < n_frames], dtype=np.int64))[: PLOT_POINTS // 2]
    even = np.linspace(0, n_frames - 1, PLOT_POINTS - len(keys)).round().astype(np.int64)
    return np.unique(np.concatenate([even, keys]))


def _evaluate(
    text: str, setting: str, max_frames: int, interpolation: str, audio: Any = None
) -> tuple[list[CurveKey], list[list[float]]]:
    """Keys and the sampled curve ``[[frame, value], ...]`` of ``text``: the values a render uses (same parser,
    interpolation, frame count and soundtrack features ``audio``). Raises the schedule's errors (ScheduleError for
    bad text or frame counts, or a string that reads the soundtrack without ``audio``)."""
    n = int(max_frames)
    sched = _parsed(text, setting, interpolation)
    keys = keys_from_text(text, setting=setting, max_frames=n, audio=audio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = sched.values(n, audio=audio)  # checks n (1 .. MAX_FRAMES) and raises the schedule's own errors
    frames = _sample_frames(n, [k.frame for k in keys])
    return keys, [[int(f), float(v)] for f, v in zip(frames, values[frames], strict=True)]


class CurveEditor(anywidget.AnyWidget):
    """A curve editor bound to one keyframe string (``text``), both ways.

    Set ``text`` (or ``max_frames``, ``interpolation``) and ``keyframes``, ``curve`` and ``error`` follow; edits in
    the browser come back as messages and rewrite ``text``. Errors never raise: they go to ``error`` and the keys
    and curve keep their last good state.

    The keys trait is ``keyframes``, not ``keys``: ipywidgets' ``Widget.keys`` is the list of synced trait names,
    and a trait of that name would stop the widget from syncing at all.
    """

    _esm = _STATIC / "curve.js"
    _css = _STATIC / "curve.css"

    text = traitlets.Unicode("0: (0)").tag(sync=True)
    setting = traitlets.Unicode("animation.zoom").tag(sync=True)
    max_frames = traitlets.Int(100).tag(sync=True)
    interpolation = traitlets.Unicode("linear").tag(sync=True)
    #: [{"frame", "value", "expr", "key", "editable"}, ...] (:meth:`CurveKey.to_json`), derived from ``text``.
    keyframes = traitlets.List().tag(sync=True)
    curve = traitlets.List().tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    #: Show the keyframe string (editable) under the curve; the panel, which has its own text box, turns it off.
    show_text = traitlets.Bool(True).tag(sync=True)
    #: Show the interpolation dropdown; the panel, which has its own animation.interpolation control, turns it
    #: off (the ``interpolation`` trait stays settable from Python either way).
    show_interpolation = traitlets.Bool(True).tag(sync=True)
    #: The interpolations the dropdown offers (the schema's choices for animation.interpolation).
    interpolations = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(
        self,
        text: str = "0: (0)",
        *,
        setting: str = "animation.zoom",
        max_frames: int = 100,
        interpolation: str = "linear",
        audio: Any = None,
        **kwargs: Any,
    ) -> None:
        from discolib.config.settings import field_info

        self._last: tuple[tuple[Any, ...], tuple[list[CurveKey], list[list[float]]]] | None = None
        #: The soundtrack's features (:class:`~discolib.audio.AudioFeatures`) for strings that read it; not synced.
        self.audio: Any = audio
        #: The keys shown (``keyframes``) with their texts as written: an edit keeps the text of keys it did not move.
        self._keys: list[CurveKey] = []
        # The first state the browser gets already holds the keys and curve (no empty plot first).
        try:
            self._keys, curve = _evaluate(text, setting, max_frames, interpolation, audio)
            first: dict[str, Any] = {"keyframes": [k.to_json() for k in self._keys], "curve": curve}
        except INPUT_ERRORS as exc:
            first = {"error": describe_error(exc)}
        super().__init__(
            text=text,
            setting=setting,
            max_frames=max_frames,
            interpolation=interpolation,
            interpolations=list(field_info("animation.interpolation").choices),
            **first,
            **kwargs,
        )
        self.observe(self._on_change, names=["text", "setting", "max_frames", "interpolation"])
        self.on_msg(self._on_message)

    # ------------------------------------------------------------------ Python -> curve
    def _on_change(self, _change: dict[str, Any]) -> None:
        self._refresh()

    def set_audio(self, audio: Any) -> None:
        """Evaluate with the soundtrack's features ``audio`` (None: none) from now on, and redraw."""
        if audio is not self.audio:
            self.audio = audio
            self._refresh()

    def _refresh(self) -> None:
        """Recompute keys, curve and error from the traits; on bad input keep the last good keys and curve."""
        try:
            keys, curve = self._evaluate(self.text)
        except INPUT_ERRORS as exc:
            self.error = describe_error(exc)
            return
        self._keys = keys
        with self.hold_sync():
            self.keyframes = [k.to_json() for k in keys]
            self.curve = curve
            self.error = ""

    def _evaluate(self, text: str) -> tuple[list[CurveKey], list[list[float]]]:
        """:func:`_evaluate` with this editor's traits; the last result is kept (an edit from the browser is
        checked, then shown: one evaluation, not two)."""
        args = (text, self.setting, int(self.max_frames), self.interpolation)
        key = (*args, None if self.audio is None else self.audio.key)
        if self._last is None or self._last[0] != key:
            self._last = (key, _evaluate(*args, self.audio))
        return self._last[1]

    # ------------------------------------------------------------------ browser -> text
    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """A message from curve.js: ``{"type": "keys", "keys": [{"frame", "value"} | read-only key, ...]}`` or
        ``{"type": "interpolation", "value": name}``. Never raises: a bad edit sets ``error`` and the browser
        is told to redraw the last good keys."""
        try:
            if not isinstance(content, dict):
                raise ScheduleError("expected a message object", setting=self.setting)
            kind = content.get("type")
            if kind == "keys":
                self.apply_keys(content.get("keys"))
            elif kind == "interpolation":
                self.interpolation = str(content.get("value"))
            else:
                raise ScheduleError(f"unknown message type {str(kind)[:40]!r}", setting=self.setting)
        except INPUT_ERRORS as exc:
            self.error = describe_error(exc)
            self.send({"type": "reset"})

    def apply_keys(self, entries: Any) -> None:
        """Rebuild ``text`` from edited keys as the browser sends them.

        Each entry is ``{"frame": int, "value": float}`` for a number key, or one of the current read-only keys
        unchanged (``{"frame", "expr", "key"}``): read-only keys cannot be moved, changed or invented here. Frames
        must be distinct whole numbers 0 to MAX_KEY_FRAME; at least one key. Raises ScheduleError otherwise.

        A number key at the frame and value of a current key keeps that key's text as written; keys equal to the
        current ones (a drag that ended where it began) change nothing and cost nothing.
        """
        setting = self.setting
        if not isinstance(entries, list) or not entries:
            raise ScheduleError("expected a non-empty list of keys", setting=setting)
        current = {(k["frame"], k["expr"], k["key"]): k for k in self.keyframes if not k["editable"]}
        shown = {k.frame: k for k in self._keys}
        keys: list[CurveKey] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ScheduleError(f"key {i}: expected an object", setting=setting)
            frame = entry.get("frame")
            if isinstance(frame, float) and frame.is_integer():
                frame = int(frame)
            expr, key_text = entry.get("expr"), entry.get("key")
            if expr is not None or key_text is not None:
                known = current.get((frame, expr, key_text))
                if known is None:
                    raise ScheduleError(f"key {i}: read-only keys cannot be changed here", setting=setting)
                old = shown.get(known["frame"])
                keys.append(CurveKey(known["frame"], known["value"], expr, key_text, old.text if old else None))
                continue
            if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame <= MAX_KEY_FRAME:
                raise ScheduleError(f"key {i}: expected a whole frame 0 to {MAX_KEY_FRAME}, found {frame!r}", setting=setting)
            value = _number(entry.get("value"), i, setting)
            old = shown.get(frame)
            kept = old.text if old is not None and old.editable and old.value == value else None
            keys.append(CurveKey(frame, value, None, None, kept))
        frames = [k.frame for k in keys]
        if len(set(frames)) != len(frames):
            raise ScheduleError("two keys on one frame", setting=setting)
        if not self.error and sorted(keys, key=lambda k: k.frame) == self._keys:
            return  # nothing changed (the keys shown come from ``text``, as no error says): no text, no evaluation
        text = text_from_keys(keys)
        self._evaluate(text)  # the parser and the schedule have the last word; raises on anything they refuse
        self.text = text
        self._refresh()  # clears an earlier error even when the text did not change (no change event then)


def _number(value: Any, index: int, setting: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScheduleError(f"key {index}: expected a finite number, found {str(value)[:40]}", setting=setting)
    return float(value)
