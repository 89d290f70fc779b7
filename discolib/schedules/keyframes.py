"""Keyframe schedules: keyframe strings, their keys and their interpolation over frames.

Users paste the strings they wrote for Disco Diffusion and Deforum unchanged, e.g. ``"0: (0), 10: (1.05)"`` or
``"0:(1.0025+0.002*sin(1.25*3.14*t/30))"``. Keys and values are expressions of the safe language of
:mod:`discolib.schedules.expr` (its grammar, names, functions, limits and :class:`ScheduleError`); nothing here
calls ``eval``.

Keyframe strings
----------------
``key: value`` pairs separated by commas, spaces anywhere, an optional trailing comma: ``"0: (0), 10: (1.05)"``,
``"0:1, 10: 2"``. The value is any expression (parentheses optional). Splitting respects parentheses, so the comma
in ``atan2(t, 2)`` or ``min(t, 5)`` is not a separator. A bare expression without a key (``"1.0"``,
``"sin(t)"``) means ``"0: (...)"``. Keys are whole frame numbers or expressions of ``max_f`` only
(``"max_f/2: (3)"``, ``"max_f-10: (1)"``). A key with ``max_f`` is resolved when the frame count is known and
rounded *down* (floor); a key without ``max_f`` must be a whole number (``2.5: (1)`` is an error). Keys must be
``>= 0`` and at most ``MAX_KEY_FRAME``; keys past the last frame are allowed and only shape the interpolation
towards them (``"0: (0), 100: (1)"`` over 50 frames ends at 0.49). Duplicate keys: the last one wins, with a
``UserWarning`` naming the setting and the key (at parse time; for ``max_f`` keys when they are resolved).

Semantics
---------
* A key whose value does not use ``t`` (a number, or an expression of ``max_f``/``s`` only) is a *static* key.
  Consecutive static keys are interpolated with the schedule's mode:

  - ``linear`` (default): straight lines between keys;
  - ``step``: each key's value holds until the next key;
  - ``cubic``: monotone piecewise-cubic Hermite (PCHIP, Fritsch-Carlson/Butland slopes) through the keys: smooth,
    never overshoots a key (no zoom dipping below 1 between ``1.0`` and ``1.02`` keys), flat at local extrema;
  - ``ease-in-out``: smoothstep ``3s^2 - 2s^3`` between each pair of consecutive keys (zero slope at every key).

* A key whose value uses ``t`` is evaluated at every frame from its key up to the next key; nothing is tweened
  into or out of it (a static key before it holds until it starts).
* Before the first key the first key's value (at its own frame) holds: a missing frame 0 is not an error.
  After the last key a static value holds and a ``t`` expression keeps being evaluated.
* Any non-finite result is a :class:`ScheduleError` naming the frame and the column of the operation that failed.

Limits: those of the expression language, plus ``MAX_FRAMES`` frames per evaluation and ``MAX_KEY_FRAME`` for keys.

Also here: :class:`StringSchedule` (string-valued keyframes such as sampler names). Disco's cutout schedules are
in :mod:`discolib.schedules.cuts`, plots in :mod:`discolib.schedules.plot`.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from discolib.schedules.expr import (
    VARIABLES,
    Parser,
    Program,
    ScheduleError,
    Token,
    check_length,
    describe_token,
    fold_constants,
    tokenize,
)

__all__ = [
    "INTERPOLATIONS",
    "MAX_FRAMES",
    "MAX_KEY_FRAME",
    "PARSE_CACHE_SIZE",
    "FrameKey",
    "Schedule",
    "StringSchedule",
    "check_frames",
    "parse_frame_key",
    "resolve_keys",
    "validate_schedule",
    "warn_duplicate_keys",
]

MAX_FRAMES = 10_000_000
MAX_KEY_FRAME = 10_000_000
INTERPOLATIONS = ("linear", "step", "cubic", "ease-in-out")


# ---------------------------------------------------------------------------------------------- frame keys
class FrameKey:
    """A keyframe key: a whole frame number, or an expression of ``max_f`` resolved (floored) per frame count."""

    __slots__ = ("text", "column", "setting", "_program", "_frame")

    def __init__(self, text: str, column: int | None, setting: str | None, program: Program | None, frame: int | None):
        self.text = text
        self.column = column
        self.setting = setting
        self._program = program
        self._frame = frame

    @classmethod
    def from_int(cls, frame: int, *, setting: str | None = None) -> FrameKey:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise ScheduleError(f"expected an integer frame key, found {frame!r}", setting=setting)
        frame = int(frame)
        if frame < 0 or frame > MAX_KEY_FRAME:
            raise ScheduleError(f"frame key {frame} is out of range (0 to {MAX_KEY_FRAME})", setting=setting)
        return cls(str(frame), None, setting, None, frame)

    @property
    def frame(self) -> int | None:
        """The frame when it does not depend on ``max_f``, else None."""
        return self._frame

    @property
    def uses_max_f(self) -> bool:
        return self._frame is None

    def resolve(self, n_frames: int) -> int:
        """The frame index for a run of ``n_frames`` frames (``max_f = n_frames - 1``), floored."""
        if self._frame is not None:
            return self._frame
        assert self._program is not None
        value = float(self._program.evaluate({"max_f": np.float64(n_frames - 1)}, self.setting))
        frame = math.floor(value)
        if frame < 0 or frame > MAX_KEY_FRAME:
            raise ScheduleError(
                f"key '{self.text}' gives frame {frame} for {n_frames} frames (keys must be 0 to {MAX_KEY_FRAME})",
                setting=self.setting,
                column=self.column,
            )
        return frame

    def __repr__(self) -> str:
        return f"FrameKey({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameKey) and (self._frame, self.text) == (other._frame, other.text)

    def __hash__(self) -> int:
        return hash((self._frame, self.text))


def _key_from_tokens(tokens: Sequence[Token], text: str, setting: str | None) -> FrameKey:
    program = Parser(tokens, text, setting, frozenset({"max_f"}), "a frame key").parse_all()
    column = tokens[0].pos + 1
    if "max_f" in program.names:
        return FrameKey(program.text, column, setting, program, None)
    value = float(fold_constants(program, setting).code[0].arg)
    if not value.is_integer():
        raise ScheduleError(f"expected a whole frame number as key, found {value:g}", setting=setting, column=column)
    if value < 0 or value > MAX_KEY_FRAME:
        raise ScheduleError(
            f"frame key {value:g} is out of range (keys must be 0 to {MAX_KEY_FRAME})", setting=setting, column=column
        )
    return FrameKey(program.text, column, setting, None, int(value))


def parse_frame_key(text: str | int, *, setting: str | None = None) -> FrameKey:
    """Parse one key (``"10"``, ``"max_f/2"``, or an ``int``); shared with the prompt schedules."""
    if not isinstance(text, str):
        return FrameKey.from_int(text, setting=setting)  # type: ignore[arg-type]
    check_length(text, setting, "frame key")
    tokens = tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("expected a frame number, found an empty key", setting=setting)
    return _key_from_tokens(tokens, text, setting)


def _duplicate_warning(setting: str | None, key: FrameKey, frame: int, stacklevel: int) -> None:
    warnings.warn(
        f"{setting or 'schedule'}: duplicate key '{key.text}' (frame {frame}); the last one wins",
        UserWarning,
        stacklevel=stacklevel + 2,  # past this helper and its caller, as if the caller had warned
    )


def warn_duplicate_keys(keys: Sequence[FrameKey], setting: str | None, stacklevel: int = 1) -> None:
    """Warn (at parse time) about keys without ``max_f`` that name the same frame; the last one wins.

    ``stacklevel`` counts like ``warnings.warn``'s, from the function that calls this one.
    """
    seen: set[int] = set()
    for key in keys:
        if key.frame is not None:
            if key.frame in seen:
                _duplicate_warning(setting, key, key.frame, stacklevel)
            seen.add(key.frame)


def resolve_keys(
    keys: Sequence[FrameKey], n_frames: int, setting: str | None, stacklevel: int = 1
) -> list[tuple[int, int]]:
    """(frame, index into ``keys``) sorted by frame; a duplicate frame keeps the later key.

    Duplicates between plain keys were already reported by :func:`warn_duplicate_keys` at parse time; a key
    with ``max_f`` that lands on the frame of another key warns here (once per frame count). ``stacklevel`` as
    in :func:`warn_duplicate_keys`.
    """
    by_frame: dict[int, int] = {}
    for index, key in enumerate(keys):
        frame = key.resolve(n_frames)
        if frame in by_frame and (key.uses_max_f or keys[by_frame[frame]].uses_max_f):
            _duplicate_warning(setting, key, frame, stacklevel)
        by_frame[frame] = index
    return sorted(by_frame.items())


def check_frames(n_frames: int, setting: str | None) -> int:
    """``n_frames`` as an int when it is a whole number 1 to ``MAX_FRAMES``, else a ScheduleError."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)):
        raise ScheduleError(f"n_frames must be an integer, found {n_frames!r}", setting=setting)
    if not 1 <= n_frames <= MAX_FRAMES:
        raise ScheduleError(f"n_frames must be 1 to {MAX_FRAMES}, found {n_frames}", setting=setting)
    return int(n_frames)


# ------------------------------------------------------------------------------------------ keyframe lists
def _split_top_level(tokens: list[Token]) -> list[tuple[list[Token], Token]]:
    """Split at commas outside parentheses/brackets: (segment tokens, the ',' or end token closing it)."""
    segments: list[tuple[list[Token], Token]] = []
    current: list[Token] = []
    depth = 0
    for tok in tokens:
        if tok.kind == "end":
            segments.append((current, tok))
            break
        if tok.kind == "op" and tok.text in ("(", "["):
            depth += 1
        elif tok.kind == "op" and tok.text in (")", "]"):
            depth = max(0, depth - 1)
        elif tok.kind == "op" and tok.text == "," and depth == 0:
            segments.append((current, tok))
            current = []
            continue
        current.append(tok)
    return segments


def _first_top_level(tokens: Sequence[Token], text: str) -> int | None:
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.kind != "op":
            continue
        if tok.text in ("(", "["):
            depth += 1
        elif tok.text in (")", "]"):
            depth = max(0, depth - 1)
        elif tok.text == text and depth == 0:
            return i
    return None


@dataclass(frozen=True)
class _Keyframe:
    key: FrameKey
    program: Program

    @property
    def uses_t(self) -> bool:
        return "t" in self.program.names


#: Parsed keyframe lists kept per (text, setting): validation, the CLI, the panel and the render loop all parse
#: the same strings, and a 54 KB string takes about a second to parse. The entries are immutable (frozen
#: keyframes in a tuple; FrameKey and Program are never mutated after construction), so sharing them is safe.
PARSE_CACHE_SIZE = 64


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_keyframes_cached(text: str, setting: str | None) -> tuple[_Keyframe, ...]:
    """:func:`_parse_keyframes`, memoised (errors are not cached: a bad string raises again on each parse)."""
    return tuple(_parse_keyframes(text, setting))


def _parse_keyframes(text: str, setting: str | None) -> list[_Keyframe]:
    tokens = tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("empty schedule (expected e.g. '0: (1.0)')", setting=setting)
    segments = _split_top_level(tokens)
    if len(segments) > 1 and not segments[-1][0]:
        segments = segments[:-1]  # one trailing comma is fine
    keyframes: list[_Keyframe] = []
    for seg, closer in segments:
        if not seg:
            raise ScheduleError(
                f"expected a keyframe 'frame: value', found {describe_token(closer)}", setting=setting, column=closer.pos + 1
            )
        colon = _first_top_level(seg, ":")
        if colon is None:
            if len(segments) > 1:
                raise ScheduleError(
                    "expected 'frame: value' (missing ':' after the frame number)",
                    setting=setting,
                    column=seg[0].pos + 1,
                )
            key = FrameKey("0", None, setting, None, 0)  # a bare expression means "0: (...)"
            value_tokens = [*seg, Token("end", closer.text, closer.pos)]
        else:
            if colon == 0:
                raise ScheduleError(
                    "expected a frame number before ':'", setting=setting, column=seg[0].pos + 1
                )
            key = _key_from_tokens([*seg[:colon], Token("end", ":", seg[colon].pos)], text, setting)
            value_tokens = [*seg[colon + 1 :], Token("end", closer.text, closer.pos)]
        program = Parser(value_tokens, text, setting, frozenset(VARIABLES), "a keyframe value").parse_all()
        keyframes.append(_Keyframe(key, fold_constants(program, setting)))
    return keyframes


def _static_value(kf: _Keyframe, env: dict[str, Any], setting: str | None) -> float:
    """A key's value without ``t``: a folded number as it is (checked finite by fold_constants), else evaluated."""
    value = kf.program.constant()
    return float(kf.program.evaluate(env, setting)) if value is None else value


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shape-preserving slopes (Fritsch-Carlson with Butland's weighted harmonic mean) at each knot."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    m = np.zeros(n)
    if n == 2:
        m[:] = delta[0]
        return m
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for end, (h0, h1, d0, d1) in ((0, (h[0], h[1], delta[0], delta[1])), (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):
        # one-sided three-point estimate, then limited so the end interval stays monotone
        slope = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(slope) != np.sign(d0):
            slope = 0.0
        elif np.sign(d0) != np.sign(d1) and abs(slope) > 3 * abs(d0):
            slope = 3 * d0
        m[end] = slope
    return m


def _interpolate(x: np.ndarray, y: np.ndarray, q: np.ndarray, mode: str) -> np.ndarray:
    """Interpolate knots (x, y) (x increasing) at q >= x[0]; past the last knot the last value holds."""
    if len(x) == 1:
        return np.full(q.shape, y[0])
    seg = np.clip(np.searchsorted(x, q, side="right") - 1, 0, len(x) - 2)
    x0, x1, y0, y1 = x[seg], x[seg + 1], y[seg], y[seg + 1]
    s = np.clip((q - x0) / (x1 - x0), 0.0, 1.0)
    if mode == "step":
        return np.where(s >= 1.0, y1, y0)
    if mode == "cubic":
        m = _pchip_slopes(x, y)
        h = x1 - x0
        s2, s3 = s * s, s * s * s
        out = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * m[seg] + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * m[seg + 1]
    else:
        w = s * s * (3.0 - 2.0 * s) if mode == "ease-in-out" else s
        out = y0 * (1.0 - w) + y1 * w
    # exact at the knots, and never outside the two neighbouring key values (float rounding aside)
    out = np.clip(out, np.minimum(y0, y1), np.maximum(y0, y1))
    return np.where(s >= 1.0, y1, np.where(s <= 0.0, y0, out))


def _normalise_interpolation(interpolation: str, setting: str | None) -> str:
    mode = str(interpolation).strip().lower().replace("_", "-")
    mode = {"easeinout": "ease-in-out", "ease": "ease-in-out", "smoothstep": "ease-in-out"}.get(mode, mode)
    if mode not in INTERPOLATIONS:
        raise ScheduleError(
            f"unknown interpolation {interpolation!r} (expected one of {', '.join(INTERPOLATIONS)})", setting=setting
        )
    return mode


class Schedule:
    """A parsed keyframe schedule; ``values(n_frames)`` gives one float64 per frame (see the module docstring)."""

    def __init__(self, text: str, keyframes: Sequence[_Keyframe], setting: str | None, interpolation: str) -> None:
        self._text = text
        self._keyframes = tuple(keyframes)
        self.setting = setting
        self.interpolation = interpolation
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def parse(cls, text: str, *, setting: str | None = None, interpolation: str = "linear") -> Schedule:
        """Parse and check the syntax now (keys with ``max_f`` are resolved per frame count, later).

        The parsed keyframes of the most recent strings are cached (see ``PARSE_CACHE_SIZE``), so parsing the same
        text again (validation, then the render loop) is free; duplicate-key warnings are still given every time.
        """
        mode = _normalise_interpolation(interpolation, setting)
        text = check_length(text, setting)
        keyframes = _parse_keyframes_cached(text, setting)
        warn_duplicate_keys([kf.key for kf in keyframes], setting, stacklevel=2)
        return cls(text, keyframes, setting, mode)

    @classmethod
    def constant(cls, value: float, *, setting: str | None = None) -> Schedule:
        """The schedule ``"0: (value)"``."""
        v = float(value)
        if not math.isfinite(v):
            raise ScheduleError(f"expected a finite number, found {value!r}", setting=setting)
        return cls.parse(f"0: ({v!r})", setting=setting)

    @property
    def text(self) -> str:
        """The original text."""
        return self._text

    @property
    def keys(self) -> list[FrameKey]:
        return [kf.key for kf in self._keyframes]

    @property
    def uses_t(self) -> bool:
        return any(kf.uses_t for kf in self._keyframes)

    @property
    def is_constant(self) -> bool:
        """True when every frame gets the same value for any frame count and seed (after constant folding)."""
        if len(self._keyframes) == 1:
            return not self._keyframes[0].uses_t
        consts = {kf.program.constant() for kf in self._keyframes}
        return len(consts) == 1 and None not in consts

    def values(self, n_frames: int, *, seed: int = 0) -> np.ndarray:
        """Values for frames ``0 .. n_frames-1``: float64, shape (n_frames,)."""
        return self._values(n_frames, seed).copy()

    def value_at(self, frame: int, *, n_frames: int, seed: int = 0) -> float:
        """The value at one frame (computed once per (n_frames, seed) and cached)."""
        values = self._values(n_frames, seed)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return float(values[frame])

    def _values(self, n_frames: int, seed: int) -> np.ndarray:
        n = check_frames(n_frames, self.setting)
        cache_key = (n, int(seed))
        cached = self._cache.get(cache_key)
        if cached is None:
            cached = self._compute(n, int(seed))
            cached.flags.writeable = False
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = cached
        return cached

    def _compute(self, n: int, seed: int) -> np.ndarray:
        setting = self.setting
        env: dict[str, Any] = {"max_f": np.float64(n - 1), "s": np.float64(seed)}
        order = resolve_keys([kf.key for kf in self._keyframes], n, setting, stacklevel=4)
        frames_of = [f for f, _ in order]
        kfs = [self._keyframes[i] for _, i in order]
        static = [None if kf.uses_t else _static_value(kf, env, setting) for kf in kfs]
        out = np.empty(n, dtype=np.float64)
        all_frames = np.arange(n, dtype=np.float64)

        first = frames_of[0]
        if first > 0:  # before the first key, its value (at its own frame) holds
            held = static[0]
            if held is None:
                held = float(kfs[0].program.evaluate({**env, "t": np.float64(first)}, setting))
            out[: min(first, n)] = held

        i = 0
        while i < len(kfs):
            lo = frames_of[i]
            if kfs[i].uses_t:
                hi = min(frames_of[i + 1] if i + 1 < len(kfs) else n, n)
                if lo < hi:
                    t = all_frames[lo:hi]
                    out[lo:hi] = np.broadcast_to(kfs[i].program.evaluate({**env, "t": t}, setting, t), t.shape)
                i += 1
                continue
            j = i  # a run of consecutive static keys is interpolated as one curve
            while j + 1 < len(kfs) and not kfs[j + 1].uses_t:
                j += 1
            hi = min(frames_of[j + 1] if j + 1 < len(kfs) else n, n)
            if lo < hi:
                x = np.asarray(frames_of[i : j + 1], dtype=np.float64)
                y = np.asarray(static[i : j + 1], dtype=np.float64)
                with np.errstate(all="ignore"):
                    out[lo:hi] = _interpolate(x, y, all_frames[lo:hi], self.interpolation)
            i = j + 1
        return out

    def __repr__(self) -> str:
        extra = f", setting={self.setting!r}" if self.setting else ""
        if self.interpolation != "linear":
            extra += f", interpolation={self.interpolation!r}"
        return f"Schedule.parse({self._text!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and (self._text, self.interpolation) == (other._text, other.interpolation)

    def __hash__(self) -> int:
        return hash((self._text, self.interpolation))


# (text, setting, n_frames, interpolation, seed) of schedules that evaluated cleanly: the CLI, the panel and render
# validate the same settings several times, and evaluating six 54 KB strings over 100 000 frames takes a second.
_validated: OrderedDict[tuple[str, str | None, int, str, int], tuple[tuple[type[Warning], str], ...]] = OrderedDict()
_validated_lock = threading.Lock()


def validate_schedule(
    text: str, setting: str | None = None, n_frames: int = 1000, *, interpolation: str = "linear", seed: int = 0
) -> None:
    """Parse ``text`` and evaluate it over ``n_frames`` so that domain errors surface now; raises ScheduleError.

    A schedule that already evaluated cleanly with the same arguments is not evaluated again (its parse is
    cached too, see :meth:`Schedule.parse`), so validating the same settings twice costs almost nothing.
    """
    sched = Schedule.parse(text, setting=setting, interpolation=interpolation)
    key = (sched.text, setting, check_frames(n_frames, setting), sched.interpolation, int(seed))
    with _validated_lock:
        seen = _validated.get(key)
        if seen is not None:
            _validated.move_to_end(key)
    if seen is not None:
        # The warnings of the first evaluation (e.g. a max_f key landing on another key) are given again: the
        # panel shows them beside the field on every validation, not only the first.
        for category, message in seen:
            warnings.warn(message, category, stacklevel=2)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.values(n_frames, seed=seed)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    with _validated_lock:
        _validated[key] = tuple((w.category, str(w.message)) for w in caught)
        if len(_validated) > PARSE_CACHE_SIZE * 4:
            _validated.popitem(last=False)


# ------------------------------------------------------------------------------------- string schedules
def _split_chars(text: str) -> list[tuple[int, int]]:
    """Character spans split at commas outside parentheses."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            spans.append((start, i))
            start = i + 1
    spans.append((start, len(text)))
    return spans


def _unwrap_value(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == "(" and value[-1] == ")":
        value = value[1:-1].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value


class StringSchedule:
    """String-valued keyframes (sampler or model names): ``"0: (euler_a), 10: (dpmpp_2m)"`` or ``"euler_a"``.

    Values hold step-wise from their key; before the first key the first value holds. A text whose first
    ``name:`` part is not a valid key (``"C:/models/x.ckpt"``, ``"https://..."``) is one bare value. Values that
    contain commas must be wrapped in parentheses.
    """

    def __init__(self, text: str, entries: list[tuple[FrameKey, str]], setting: str | None) -> None:
        self._text = text
        self._entries = entries
        self.setting = setting

    @classmethod
    def parse(cls, text: str, *, setting: str | None = None) -> StringSchedule:
        text = check_length(text, setting)
        if not text.strip():
            raise ScheduleError("empty schedule (expected e.g. '0: (euler_a)')", setting=setting)
        spans = _split_chars(text)
        if len(spans) > 1 and not text[spans[-1][0] : spans[-1][1]].strip():
            spans = spans[:-1]

        def key_of(start: int, end: int) -> FrameKey | None:
            colon = text.find(":", start, end)
            if colon < 0 or not text[start:colon].strip():
                return None
            try:
                return _key_from_tokens(tokenize(text, setting, start, colon), text, setting)
            except ScheduleError:
                return None

        if all(key_of(a, b) is None for a, b in spans):
            value = _unwrap_value(text)
            if not value:
                raise ScheduleError("expected a value, found empty parentheses", setting=setting, column=1)
            return cls(text, [(FrameKey("0", None, setting, None, 0), value)], setting)

        entries: list[tuple[FrameKey, str]] = []
        for a, b in spans:
            first = a + len(text[a:b]) - len(text[a:b].lstrip())
            colon = text.find(":", a, b)
            if colon < 0:
                raise ScheduleError(
                    "expected 'frame: value' (missing ':' after the frame number)", setting=setting, column=first + 1
                )
            tokens = tokenize(text, setting, a, colon)
            if tokens[0].kind == "end":
                raise ScheduleError("expected a frame number before ':'", setting=setting, column=colon + 1)
            key = _key_from_tokens(tokens, text, setting)  # raises with the column of the bad key
            value = _unwrap_value(text[colon + 1 : b])
            if not value:
                raise ScheduleError("expected a value after ':'", setting=setting, column=colon + 2)
            entries.append((key, value))
        warn_duplicate_keys([k for k, _ in entries], setting, stacklevel=2)
        return cls(text, entries, setting)

    @property
    def text(self) -> str:
        return self._text

    @property
    def is_constant(self) -> bool:
        return len({v for _, v in self._entries}) == 1

    @property
    def options(self) -> list[str]:
        """The distinct values, in order of appearance."""
        return list(dict.fromkeys(v for _, v in self._entries))

    def values(self, n_frames: int) -> list[str]:
        """One string per frame ``0 .. n_frames-1``."""
        n = check_frames(n_frames, self.setting)
        order = resolve_keys([k for k, _ in self._entries], n, self.setting, stacklevel=2)
        out: list[str] = []
        for pos, (frame, index) in enumerate(order):
            start = 0 if pos == 0 else min(frame, n)
            end = min(order[pos + 1][0], n) if pos + 1 < len(order) else n
            out.extend([self._entries[index][1]] * max(0, end - start))
        return out

    def value_at(self, frame: int, *, n_frames: int) -> str:
        values = self.values(n_frames)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return values[frame]

    def __repr__(self) -> str:
        return f"StringSchedule.parse({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StringSchedule) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

