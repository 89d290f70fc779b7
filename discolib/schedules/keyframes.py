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
(``"max_f/2: (3)"``, ``"max_f-10: (1)"``), optionally in one pair of quotes as sd-webui-deforum writes them
(``"max_f-1": (3)``, ``'10': (1)``). A key with ``max_f`` is resolved when the frame count is known and truncated
towards zero (as webui's ``int()``); a key without ``max_f`` must be a whole number ``0`` to ``MAX_KEY_FRAME``
(``2.5: (1)`` and ``-3: (1)`` are errors). Duplicate keys: the last one wins, with a ``UserWarning`` naming the
setting and the key (at parse time; for ``max_f`` keys when they are resolved).

Semantics (Deforum's ``get_inbetweens``, in deforum-stable-diffusion and sd-webui-deforum alike)
------------------------------------------------------------------------------------------------
* Keys outside the frames ``0 .. n_frames-1`` are ignored (``"0: (0), 100: (1)"`` over 50 frames stays 0; a
  ``max_f`` key that lands below 0 is dropped, so webui's ``"max_f-2": (-1)`` works for any frame count). When no
  key falls inside (Deforum fails there), the value of the key nearest to the frames holds.
* A *number* key places its value at its frame. A value is a number when its text, inside its one pair of
  parentheses, is exactly an optional sign, digits and optional decimals (Deforum's ``check_is_number``): ``1``,
  ``-0.5``, ``.5``; but ``1e-3``, ``0.5*2``, ``(0.5 )``, ``1.`` and ``((1))`` are expressions.
* Any other key, an *expression* (constant or not), is evaluated at every frame from its key up to the next key.
* Frame 0 then takes the first placed value and the last frame the last one; the frames still empty (after a
  number key, up to the next key) are interpolated through the placed values with the schedule's mode. So a number
  key followed by an expression key tweens into it (``"0: (0), 5: (1.0+t/10)"`` gives 0, 0.3, ... 1.5), an
  expression followed by a number key jumps, and the last number key holds to the end.

Interpolation modes (the first three are Deforum's and Disco's ``Linear``/``Quadratic``/``Cubic``, as pandas'
``Series.interpolate`` computes them):

  - ``linear`` (default; the only mode Deforum uses): straight lines between the placed values either side;
  - ``quadratic`` / ``cubic``: the interpolating spline of degree 2 / 3 through *all* placed values (scipy's
    ``interp1d``, as pandas calls it: a not-a-knot cubic; a quadratic with knots midway between placed frames,
    bar the second and the second-to-last midpoint). As in Deforum, ``cubic`` with at most 3 keys becomes
    ``quadratic`` and ``quadratic`` with at most 2 keys ``linear`` (keys counted as Deforum does: distinct frames,
    those outside the frames included). Splines can overshoot (zoom keys 1.0, 1.02, 1.0 dip below 1). A spline's
    value in a gap depends on the placed values near it only up to rounding: those more than ``SPLINE_REACH``
    placed values away from every gap are left out of the fit, which keeps long expression stretches cheap;
  - discolib's extras: ``step`` (the last placed value holds), ``ease-in-out`` (smoothstep ``3s^2 - 2s^3`` between
    the placed values either side), ``pchip`` (monotone piecewise-cubic Hermite through the placed values,
    Fritsch-Carlson/Butland slopes: smooth, never overshoots a key, flat at local extrema).

* Any non-finite result is a :class:`ScheduleError` naming the frame and the column of the operation that failed.

Limits: those of the expression language, plus ``MAX_FRAMES`` frames per evaluation and ``MAX_KEY_FRAME`` for keys.

Also here: :class:`StringSchedule` (string-valued keyframes such as sampler names). Disco's cutout schedules are
in :mod:`discolib.schedules.cuts`, plots in :mod:`discolib.schedules.plot`.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from discolib.schedules.expr import (
    AUDIO_ENV,
    VARIABLES,
    AudioSource,
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
    "SPLINE_REACH",
    "FrameKey",
    "KeyframeEntry",
    "Schedule",
    "StringSchedule",
    "check_frames",
    "export_keyframes",
    "format_number",
    "keyframes_from_values",
    "parse_frame_key",
    "resolve_keys",
    "validate_schedule",
    "warn_duplicate_keys",
]

MAX_FRAMES = 10_000_000
MAX_KEY_FRAME = 10_000_000
INTERPOLATIONS = ("linear", "quadratic", "cubic", "step", "ease-in-out", "pchip")
#: Placed values a quadratic/cubic spline fit takes on each side of a gap. Their influence on the gap decays
#: geometrically (about 4x per value for a cubic between evenly spaced frames, 6x for a quadratic); against scipy's
#: global fit the difference is already at rounding level with 16 (tests/test_keyframe_parity.py checks 32).
SPLINE_REACH = 32
#: Deforum's check_is_number: an optional sign, digits, optional decimals, nothing else (not even spaces).
_NUMBER_RE = re.compile(r"[+-]?[0-9]*(?:\.[0-9]+)?")


# ---------------------------------------------------------------------------------------------- frame keys
class FrameKey:
    """A keyframe key: a whole frame number, or an expression of ``max_f`` resolved (truncated) per frame count."""

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
        """True when the frame depends on the run (``max_f``, or the soundtrack's beats): resolved per run."""
        return self._frame is None

    @property
    def uses_audio(self) -> bool:
        """True when the key reads the soundtrack (``beat_frame(n)``, ``bar_frame(n)``)."""
        return self._program is not None and bool(self._program.audio_names)

    def frame_for(self, n_frames: int, audio: AudioSource | None = None) -> int:
        """The frame for a run of ``n_frames`` frames (``max_f = n_frames - 1``) and soundtrack ``audio``, truncated
        towards zero as webui's ``int()`` does; it may lie outside the frames (keyframe schedules ignore such keys,
        as Deforum does). Clipped to ``+-(MAX_KEY_FRAME + 1)``, which is outside any run."""
        if self._frame is not None:
            return self._frame
        assert self._program is not None
        env: dict[str, Any] = {"max_f": np.float64(n_frames - 1), AUDIO_ENV: audio}
        value = float(self._program.evaluate(env, self.setting))
        limit = MAX_KEY_FRAME + 1
        return int(max(-limit, min(limit, math.trunc(value))))

    def resolve(self, n_frames: int, audio: AudioSource | None = None) -> int:
        """:meth:`frame_for`, which must be 0 to ``MAX_KEY_FRAME`` (prompt schedules use every key)."""
        frame = self.frame_for(n_frames, audio)
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
    program = Parser(tokens, text, setting, frozenset({"max_f"}), "a frame key", audio="keys").parse_all()
    column = tokens[0].pos + 1
    if "max_f" in program.names or program.audio_names:
        return FrameKey(program.text, column, setting, program, None)
    value = float(fold_constants(program, setting).code[0].arg)
    if not value.is_integer():
        raise ScheduleError(f"expected a whole frame number as key, found {value:g}", setting=setting, column=column)
    if value < 0 or value > MAX_KEY_FRAME:
        raise ScheduleError(
            f"frame key {value:g} is out of range (keys must be 0 to {MAX_KEY_FRAME})", setting=setting, column=column
        )
    return FrameKey(program.text, column, setting, None, int(value))


#: A key in one pair of quotes, as sd-webui-deforum writes keys (``"max_f-1": (3)``): at the start of the text or
#: after a comma, followed by ':'. (A quote anywhere else stays an error.)
_QUOTED_KEY_RE = re.compile(r"""(^|,)(\s*)(["'])([^"',:]*)\3(?=\s*:)""")


def _unquote_keys(text: str) -> str:
    """``text`` with the quotes around keys replaced by spaces: same length, so error columns stay right."""
    if "'" not in text and '"' not in text:
        return text
    return _QUOTED_KEY_RE.sub(lambda m: f"{m[1]}{m[2]} {m[4]} ", text)


def parse_frame_key(text: str | int, *, setting: str | None = None) -> FrameKey:
    """Parse one key (``"10"``, ``"max_f/2"``, ``'"max_f/2"'``, or an ``int``); shared with the prompt schedules."""
    if not isinstance(text, str):
        return FrameKey.from_int(text, setting=setting)  # type: ignore[arg-type]
    check_length(text, setting, "frame key")
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        text = text.replace(stripped[0], " ", 1)[::-1].replace(stripped[0], " ", 1)[::-1]  # one pair, same columns
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
    keys: Sequence[FrameKey],
    n_frames: int,
    setting: str | None,
    stacklevel: int = 1,
    audio: AudioSource | None = None,
) -> list[tuple[int, int]]:
    """(frame, index into ``keys``) sorted by frame; a duplicate frame keeps the later key.

    Duplicates between plain keys were already reported by :func:`warn_duplicate_keys` at parse time; a key
    with ``max_f`` that lands on the frame of another key warns here (once per frame count). ``stacklevel`` as
    in :func:`warn_duplicate_keys`.
    """
    frames = [key.resolve(n_frames, audio) for key in keys]
    return _by_frame(keys, frames, setting, stacklevel + 1)  # + 1: _by_frame


def _key_frames(
    keys: Sequence[FrameKey], n_frames: int, setting: str | None, stacklevel: int, audio: AudioSource | None = None
) -> list[tuple[int, int]]:
    """:func:`resolve_keys` for keyframe schedules: ``max_f`` keys may land outside the frames (the schedule
    ignores those, as Deforum does) instead of failing."""
    frames = [key.frame_for(n_frames, audio) for key in keys]
    return _by_frame(keys, frames, setting, stacklevel + 1)  # + 1: _by_frame


def _by_frame(
    keys: Sequence[FrameKey], frames: Sequence[int], setting: str | None, stacklevel: int
) -> list[tuple[int, int]]:
    """(frame, index into ``keys``) sorted by frame, ``frames[i]`` being key ``i``'s; the later of two keys on one
    frame wins, with a warning when either uses ``max_f`` (``stacklevel`` counted from this function)."""
    by_frame: dict[int, int] = {}
    for index, (key, frame) in enumerate(zip(keys, frames, strict=True)):
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


def _is_number_text(raw: str) -> bool:
    """Deforum's ``check_is_number`` on a value's text inside its one pair of parentheses (``(0.5 )`` is not)."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == "(" and raw[-1] == ")":
        raw = raw[1:-1]  # (inner parentheses would make it an expression anyway)
    return _NUMBER_RE.fullmatch(raw) is not None and any("0" <= ch <= "9" for ch in raw)


class KeyframeEntry(NamedTuple):
    """One key of a schedule as written (see :attr:`Schedule.keyframes`)."""

    key: FrameKey
    number: float | None  # the key's value when it is a plain number (tweened between keys), else None
    text: str  # the value's text, parentheses included


@dataclass(frozen=True)
class _Keyframe:
    key: FrameKey
    program: Program
    is_number: bool  # placed at its frame and interpolated; else evaluated at every frame up to the next key

    @property
    def uses_t(self) -> bool:
        """True when the value changes from frame to frame (``t``, or the soundtrack)."""
        return "t" in self.program.names or bool(self.program.audio_names)


#: Parsed keyframe lists kept per (text, setting): validation, the CLI, the panel and the render loop all parse
#: the same strings, and a 54 KB string takes about a second to parse. The entries are immutable (frozen
#: keyframes in a tuple; FrameKey and Program are never mutated after construction), so sharing them is safe.
PARSE_CACHE_SIZE = 64


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_keyframes_cached(text: str, setting: str | None) -> tuple[_Keyframe, ...]:
    """:func:`_parse_keyframes`, memoised (errors are not cached: a bad string raises again on each parse)."""
    return tuple(_parse_keyframes(text, setting))


def _parse_keyframes(text: str, setting: str | None) -> list[_Keyframe]:
    text = _unquote_keys(text)
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
            raw = text[seg[0].pos : closer.pos]
        else:
            if colon == 0:
                raise ScheduleError(
                    "expected a frame number before ':'", setting=setting, column=seg[0].pos + 1
                )
            key = _key_from_tokens([*seg[:colon], Token("end", ":", seg[colon].pos)], text, setting)
            value_tokens = [*seg[colon + 1 :], Token("end", closer.text, closer.pos)]
            raw = text[seg[colon].pos + 1 : closer.pos]
        program = Parser(
            value_tokens, text, setting, frozenset(VARIABLES), "a keyframe value", audio="values"
        ).parse_all()
        keyframes.append(_Keyframe(key, fold_constants(program, setting), _is_number_text(raw)))
    return keyframes


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shape-preserving slopes (Fritsch-Carlson with Butland's weighted harmonic mean) at each knot, shape (n,)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    if n == 2:
        return np.full(2, delta[0])
    m = np.zeros(n)
    d0, d1, h0, h1 = delta[:-1], delta[1:], h[:-1], h[1:]
    w1, w2 = 2 * h1 + h0, h1 + 2 * h0
    with np.errstate(all="ignore"):  # the harmonic mean is only taken where both secants have the same sign
        m[1:-1] = np.where(d0 * d1 > 0, (w1 + w2) / (w1 / d0 + w2 / d1), 0.0)
    for end, (e0, e1, s0, s1) in ((0, (h[0], h[1], delta[0], delta[1])), (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):
        # one-sided three-point estimate, then limited so the end interval stays monotone
        slope = ((2 * e0 + e1) * s0 - e0 * s1) / (e0 + e1)
        if np.sign(slope) != np.sign(s0):
            slope = 0.0
        elif np.sign(s0) != np.sign(s1) and abs(slope) > 3 * abs(s0):
            slope = 3 * s0
        m[end] = slope
    return m


def _spline_knots(x: np.ndarray, k: int) -> np.ndarray:
    """The knots of the degree-``k`` interpolating spline through frames ``x`` as scipy's ``interp1d`` (and so
    pandas, and so Deforum) builds it: not-a-knot for cubics; for quadratics midway between the frames, bar the
    second and the second-to-last midpoint. Shape (len(x) + k + 1,)."""
    inner = ((x[1:] + x[:-1]) / 2)[1:-1] if k == 2 else x[2:-2]
    return np.concatenate([np.full(k + 1, x[0]), inner, np.full(k + 1, x[-1])])


def _bspline_basis(knots: np.ndarray, k: int, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of ``q`` (m,): the index of its first non-zero B-spline (m,) and the ``k + 1`` non-zero
    B-spline values (m, k+1), by the Cox-de Boor recursion."""
    n_coef = len(knots) - k - 1
    span = np.clip(np.searchsorted(knots, q, side="right") - 1, k, n_coef - 1)
    basis = np.zeros((len(q), k + 1))
    basis[:, 0] = 1.0
    left = np.zeros((len(q), k + 1))
    right = np.zeros((len(q), k + 1))
    for j in range(1, k + 1):
        left[:, j] = q - knots[span + 1 - j]
        right[:, j] = knots[span + j] - q
        saved = np.zeros(len(q))
        for r in range(j):
            temp = basis[:, r] / (right[:, r + 1] + left[:, j - r])
            basis[:, r] = saved + right[:, r + 1] * temp
            saved = left[:, j - r] * temp
        basis[:, j] = saved
    return span - k, basis


def _solve_collocation(first: np.ndarray, basis: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """B-spline coefficients (n,) from the banded collocation system (row i: ``basis[i]`` at columns
    ``first[i] ..``). Gaussian elimination without pivoting, which is stable here: B-spline collocation matrices
    are totally positive. Bandwidth ``k`` each side, so O(n k^2)."""
    n = len(y)
    band = np.zeros((n, 2 * k + 1))  # entry (i, j) at band[i, j - i + k]
    rows = np.arange(n)[:, None]
    band[rows, first[:, None] + np.arange(k + 1) - rows + k] = basis
    a = band.tolist()
    b = y.tolist()
    for i in range(n):
        ai = a[i]
        pivot = ai[k]
        for r in range(i + 1, min(i + k + 1, n)):
            ar = a[r]
            f = ar[i - r + k] / pivot
            if f != 0.0:
                for c in range(i, min(i + k + 1, n)):
                    ar[c - r + k] -= f * ai[c - i + k]
                b[r] -= f * b[i]
    coef = [0.0] * n
    for i in range(n - 1, -1, -1):
        ai = a[i]
        acc = b[i]
        for c in range(i + 1, min(i + k + 1, n)):
            acc -= ai[c - i + k] * coef[c]
        coef[i] = acc / ai[k]
    return np.asarray(coef)


def _spline_fill(x: np.ndarray, y: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Values at ``q`` (sorted frames strictly between placed frames ``x``) of the degree-``k`` interpolating spline
    through (x, y). Only the ``SPLINE_REACH`` placed values on each side of each gap are fitted (see the module
    docstring); the fit is split where a longer run of placed values separates two gaps."""
    gaps = np.flatnonzero(np.diff(x) > 1)  # x[g] < (frames of gap g) < x[g + 1]
    marks = np.zeros(len(x) + 1, dtype=np.int64)
    np.add.at(marks, np.maximum(gaps - SPLINE_REACH + 1, 0), 1)
    np.add.at(marks, np.minimum(gaps + SPLINE_REACH + 1, len(x)), -1)
    kept = np.flatnonzero(np.cumsum(marks[:-1]) > 0)
    out = np.empty(len(q))
    for chunk in np.split(kept, np.flatnonzero(np.diff(kept) > 1) + 1):
        xs, ys = x[chunk], y[chunk]
        sel = slice(np.searchsorted(q, xs[0], side="right"), np.searchsorted(q, xs[-1]))  # q is sorted
        degree = min(k, len(xs) - 1)  # (Deforum's fallbacks leave at least k + 1 values; a short run may not)
        if degree < 2:
            out[sel] = np.interp(q[sel], xs, ys)
            continue
        knots = _spline_knots(xs, degree)
        coef = _solve_collocation(*_bspline_basis(knots, degree, xs), ys, degree)
        # Evaluated as one polynomial per knot interval, in Lagrange form on degree + 1 evenly spaced points of the
        # interval (the B-spline recursion on every frame of a long gap would be several times slower; the
        # polynomial through the spline's values at those points is the spline there).
        edges = np.unique(knots)
        nodes = np.arange(degree + 1) / degree
        samples = (edges[:-1, None] + nodes * np.diff(edges)[:, None]).ravel()
        first, basis = _bspline_basis(knots, degree, samples)
        at = np.sum(basis * coef[first[:, None] + np.arange(degree + 1)], axis=1).reshape(-1, degree + 1)
        qs = q[sel]
        seg = np.clip(np.searchsorted(edges, qs, side="right") - 1, 0, len(edges) - 2)
        u = (qs - edges[seg]) / (edges[seg + 1] - edges[seg])
        value = np.zeros(len(qs))
        for j in range(degree + 1):
            weight = np.ones(len(qs))
            for m in range(degree + 1):
                if m != j:
                    weight *= (u - nodes[m]) / (nodes[j] - nodes[m])
            value += at[seg, j] * weight
        out[sel] = value
    return out


def _fill(x: np.ndarray, y: np.ndarray, q: np.ndarray, mode: str) -> np.ndarray:
    """Interpolate placed values (x increasing, float frames) at frames ``q`` strictly inside ``x[0] .. x[-1]``."""
    if mode == "linear":
        return np.interp(q, x, y)  # what pandas' 'linear' computes, to the bit
    if mode in ("quadratic", "cubic"):
        return _spline_fill(x, y, q, 2 if mode == "quadratic" else 3)
    seg = np.searchsorted(x, q, side="right") - 1
    x0, x1, y0, y1 = x[seg], x[seg + 1], y[seg], y[seg + 1]
    if mode == "step":
        return y0
    s = (q - x0) / (x1 - x0)
    if mode == "pchip":
        m = _pchip_slopes(x, y)
        h = x1 - x0
        s2, s3 = s * s, s * s * s
        out = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * m[seg] + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * m[seg + 1]
    else:  # ease-in-out
        w = s * s * (3.0 - 2.0 * s)
        out = y0 * (1.0 - w) + y1 * w
    return np.clip(out, np.minimum(y0, y1), np.maximum(y0, y1))  # never outside the neighbours (rounding aside)


_ALIASES = {
    "easeinout": "ease-in-out",
    "ease": "ease-in-out",
    "smoothstep": "ease-in-out",
    "monotone": "pchip",
    "monotone-cubic": "pchip",
}


def _normalise_interpolation(interpolation: str, setting: str | None) -> str:
    mode = str(interpolation).strip().lower().replace("_", "-")
    mode = _ALIASES.get(mode, mode)
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
        self._cache: dict[tuple[int, int, str | None], np.ndarray] = {}

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
    def keyframes(self) -> list[KeyframeEntry]:
        """The keys as written, in order: each key, its number when it is a plain (tweened) number, else None, and
        the value's text (an editor shows expressions read-only and writes them back verbatim)."""
        return [
            KeyframeEntry(kf.key, kf.program.constant() if kf.is_number else None, kf.program.text)
            for kf in self._keyframes
        ]

    @property
    def uses_t(self) -> bool:
        return any(kf.uses_t for kf in self._keyframes)

    @property
    def uses_audio(self) -> bool:
        """True when a value or a key reads the soundtrack: :meth:`values` then needs ``audio``."""
        return any(kf.program.audio_names or kf.key.uses_audio for kf in self._keyframes)

    def require_audio(self, audio: AudioSource | None) -> None:
        """The ScheduleError :meth:`values` would raise for a schedule that reads the soundtrack when ``audio`` is
        None (naming the first function that reads it, with its column); nothing otherwise."""
        if audio is not None:
            return
        for kf in self._keyframes:
            if kf.key.uses_audio:
                assert kf.key._program is not None
                kf.key._program.check_audio({}, self.setting)
            kf.program.check_audio({}, self.setting)

    @property
    def is_constant(self) -> bool:
        """True when every frame gets the same value for any frame count and seed (after constant folding)."""
        if len(self._keyframes) == 1:
            return not self._keyframes[0].uses_t
        consts = {kf.program.constant() for kf in self._keyframes}
        return len(consts) == 1 and None not in consts

    def values(self, n_frames: int, *, seed: int = 0, audio: AudioSource | None = None) -> np.ndarray:
        """Values for frames ``0 .. n_frames-1``: float64, shape (n_frames,). ``audio``: the soundtrack's features,
        needed when the schedule reads it (:attr:`uses_audio`)."""
        return self._values(n_frames, seed, audio).copy()

    def value_at(self, frame: int, *, n_frames: int, seed: int = 0, audio: AudioSource | None = None) -> float:
        """The value at one frame (computed once per (n_frames, seed, audio) and cached)."""
        values = self._values(n_frames, seed, audio)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return float(values[frame])

    def _values(self, n_frames: int, seed: int, audio: AudioSource | None) -> np.ndarray:
        n = check_frames(n_frames, self.setting)
        if not self.uses_audio:
            audio = None  # the features cannot change the values: one cache entry for every soundtrack
        cache_key = (n, int(seed), None if audio is None else audio.key)
        cached = self._cache.get(cache_key)
        if cached is None:
            cached = self._compute(n, int(seed), audio)
            cached.flags.writeable = False
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = cached
        return cached

    def _compute(self, n: int, seed: int, audio: AudioSource | None) -> np.ndarray:
        setting = self.setting
        env: dict[str, Any] = {"max_f": np.float64(n - 1), "s": np.float64(seed), AUDIO_ENV: audio}
        order = _key_frames([kf.key for kf in self._keyframes], n, setting, stacklevel=4, audio=audio)
        inside = [(frame, index) for frame, index in order if 0 <= frame < n]
        if not inside:  # Deforum fails here; the value of the key nearest to the frames holds
            frame, index = min(order, key=lambda fi: -fi[0] if fi[0] < 0 else fi[0] - (n - 1))
            value = self._keyframes[index].program.evaluate({**env, "t": np.float64(frame)}, setting)
            return np.full(n, float(value))

        out = np.full(n, np.nan)
        placed = np.zeros(n, dtype=bool)
        all_frames = np.arange(n, dtype=np.float64)
        for pos, (lo, index) in enumerate(inside):
            kf = self._keyframes[index]
            if kf.is_number:  # placed at its frame (folded to a float at parse time)
                out[lo] = kf.program.code[0].arg
                placed[lo] = True
                continue
            hi = inside[pos + 1][0] if pos + 1 < len(inside) else n  # an expression runs up to the next key
            t = all_frames[lo:hi]
            out[lo:hi] = np.broadcast_to(kf.program.evaluate({**env, "t": t}, setting, t), t.shape)
            placed[lo:hi] = True

        known = np.flatnonzero(placed)
        out[0], out[n - 1] = out[known[0]], out[known[-1]]  # Deforum: the ends take the first and last values
        placed[0] = placed[n - 1] = True
        if placed.all():
            return out
        mode = self.interpolation
        if mode == "cubic" and len(order) <= 3:  # Deforum's fallbacks, counting its keys (distinct frames)
            mode = "quadratic"
        if mode == "quadratic" and len(order) <= 2:
            mode = "linear"
        x = np.flatnonzero(placed)
        q = np.flatnonzero(~placed)
        with np.errstate(all="ignore"):
            out[q] = _fill(x.astype(np.float64), out[x], q.astype(np.float64), mode)
        bad = np.flatnonzero(~np.isfinite(out[q]))
        if len(bad):  # a spline overshooting past float64 between huge keys
            raise ScheduleError(f"{mode} interpolation overflows at frame {int(q[bad[0]])}", setting=setting)
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


# (text, setting, n_frames, interpolation, seed, audio key) of schedules that evaluated cleanly: the CLI, the panel and render
# validate the same settings several times, and evaluating six 54 KB strings over 100 000 frames takes a second.
_validated: OrderedDict[
    tuple[str, str | None, int, str, int, str | None], tuple[tuple[type[Warning], str], ...]
] = OrderedDict()
_validated_lock = threading.Lock()


def validate_schedule(
    text: str,
    setting: str | None = None,
    n_frames: int = 1000,
    *,
    interpolation: str = "linear",
    seed: int = 0,
    audio: AudioSource | None = None,
) -> None:
    """Parse ``text`` and evaluate it over ``n_frames`` so that domain errors surface now; raises ScheduleError.

    A schedule that already evaluated cleanly with the same arguments is not evaluated again (its parse is
    cached too, see :meth:`Schedule.parse`), so validating the same settings twice costs almost nothing. A
    schedule that reads the soundtrack is only parsed when ``audio`` is None (whether a soundtrack is set is the
    caller's rule: :meth:`discolib.config.settings.Settings.check_field`).
    """
    sched = Schedule.parse(text, setting=setting, interpolation=interpolation)
    if sched.uses_audio and audio is None:
        return
    audio_key = audio.key if audio is not None and sched.uses_audio else None
    key = (sched.text, setting, check_frames(n_frames, setting), sched.interpolation, int(seed), audio_key)
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
        sched.values(n_frames, seed=seed, audio=audio)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    with _validated_lock:
        _validated[key] = tuple((w.category, str(w.message)) for w in caught)
        if len(_validated) > PARSE_CACHE_SIZE * 4:
            _validated.popitem(last=False)


def export_keyframes(
    text: str,
    n_frames: int,
    *,
    audio: AudioSource | None = None,
    seed: int = 0,
    setting: str | None = None,
    interpolation: str = "linear",
    digits: int = 6,
) -> str:
    """``text`` evaluated over ``n_frames`` as plain numeric keys: ``"0: (1.04), 1: (1.0312), ..."``, a string that
    Deforum and Disco read back to the same values (``digits`` significant digits) with their linear tweening.

    A run of equal values keeps only its first and last key (linear tweening between two equal keys gives the
    same value), so flat stretches of a music curve stay short.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= 17:
        raise ScheduleError(f"digits must be 1 to 17, found {digits!r}", setting=setting)
    values = Schedule.parse(text, setting=setting, interpolation=interpolation).values(n_frames, seed=seed, audio=audio)
    shown = [f"{v:.{digits}g}" for v in values]
    keep = [
        i
        for i in range(len(shown))
        if i in (0, len(shown) - 1) or shown[i] != shown[i - 1] or shown[i] != shown[i + 1]
    ]
    return ", ".join(f"{i}: ({shown[i]})" for i in keep)


def format_number(value: float) -> str:
    """``value`` as the shortest plain decimal that reads back to the same float64 (no exponent: Deforum's number
    test, and so a keyframe's tweening, only knows plain decimals)."""
    if not math.isfinite(value):
        raise ScheduleError(f"a keyframe value must be a finite number, found {value!r}")
    return np.format_float_positional(float(value), unique=True, trim="-")


def _linear_keys(y: np.ndarray, tolerance: float, integer: bool) -> list[int]:
    """Frames to key so that linear tweening (``np.interp``, the schedules' own) between them gives every value of
    ``y`` within ``tolerance`` (``integer``: the tweened value truncated to an integer equals it, as a seed
    schedule is read). Ramer-Douglas-Peucker on the vertical error, with an explicit stack."""
    n = len(y)
    keys = {0, n - 1}
    stack = [(0, n - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        q = np.arange(a, b + 1, dtype=np.float64)
        line = np.interp(q, [float(a), float(b)], [y[a], y[b]])
        err = np.abs(np.trunc(line) - y[a : b + 1]) if integer else np.abs(line - y[a : b + 1])
        worst = int(np.argmax(err))
        if err[worst] <= (0.0 if integer else tolerance):
            continue
        if worst in (0, b - a):  # (cannot happen: the ends are exact) split in the middle rather than loop
            worst = (b - a) // 2
        keys.add(a + worst)
        stack += [(a, a + worst), (a + worst, b)]
    return sorted(keys)


def keyframes_from_values(
    values: Sequence[float] | np.ndarray,
    *,
    tolerance: float = 0.0,
    integer: bool = False,
    setting: str | None = None,
) -> str:
    """A compact linear keyframe string whose values over ``len(values)`` frames reproduce ``values``: within
    ``tolerance`` at every frame (0: equal, bit for bit), or, with ``integer``, equal after truncation to an integer
    (how a seed schedule is read). Keys only where the path bends: a held value or a straight ramp is two keys.

    The string is checked by parsing it back (``Schedule.parse(...).values``); a frame outside the tolerance gets
    a key of its own, so the promise holds whatever the rounding of the tweening.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ScheduleError(f"expected a non-empty list of values, found shape {y.shape}", setting=setting)
    if not np.isfinite(y).all():
        at = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ScheduleError(f"frame {at}: a keyframe value must be a finite number, found {y[at]!r}", setting=setting)
    if integer and not np.array_equal(y, np.trunc(y)):
        raise ScheduleError("integer keyframes need whole numbers", setting=setting)
    tol = float(tolerance)
    if not (tol >= 0.0 and math.isfinite(tol)):
        raise ScheduleError(f"tolerance must be a finite number >= 0, found {tolerance!r}", setting=setting)
    keys = set(_linear_keys(y, tol, integer))
    while True:
        text = ", ".join(f"{k}: ({format_number(y[k])})" for k in sorted(keys))
        got = Schedule.parse(text, setting=setting).values(len(y))
        bad = np.flatnonzero(np.trunc(got) != y) if integer else np.flatnonzero(~(np.abs(got - y) <= tol))
        if len(bad) == 0:
            return text
        keys.update(int(k) for k in bad)  # a key at a frame reads back as its own value: this ends


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

    Values hold step-wise from their key; before the first key the first value holds; keys outside the frames
    are ignored and keys may be quoted, as for :class:`Schedule`. A text whose first
    ``name:`` part is not a valid key (``"C:/models/x.ckpt"``, ``"https://..."``) is one bare value. Values that
    contain commas must be wrapped in parentheses.
    """

    def __init__(self, text: str, entries: list[tuple[FrameKey, str]], setting: str | None) -> None:
        self._text = text
        self._entries = entries
        self.setting = setting

    @classmethod
    def parse(cls, text: str, *, setting: str | None = None) -> StringSchedule:
        original = text = check_length(text, setting)
        if not text.strip():
            raise ScheduleError("empty schedule (expected e.g. '0: (euler_a)')", setting=setting)
        text = _unquote_keys(text)
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
            return cls(original, [(FrameKey("0", None, setting, None, 0), value)], setting)

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
        return cls(original, entries, setting)

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

    def values(self, n_frames: int, audio: AudioSource | None = None) -> list[str]:
        """One string per frame ``0 .. n_frames-1`` (``audio`` resolves ``beat_frame``/``bar_frame`` keys)."""
        n = check_frames(n_frames, self.setting)
        order = _key_frames([k for k, _ in self._entries], n, self.setting, stacklevel=2, audio=audio)
        inside = [(frame, index) for frame, index in order if 0 <= frame < n]  # others are ignored, as in Deforum
        if not inside:
            _, index = min(order, key=lambda fi: -fi[0] if fi[0] < 0 else fi[0] - (n - 1))
            return [self._entries[index][1]] * n
        out: list[str] = []
        for pos, (frame, index) in enumerate(inside):
            start = 0 if pos == 0 else frame
            end = inside[pos + 1][0] if pos + 1 < len(inside) else n
            out.extend([self._entries[index][1]] * (end - start))
        return out

    def value_at(self, frame: int, *, n_frames: int, audio: AudioSource | None = None) -> str:
        values = self.values(n_frames, audio)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return values[frame]

    def __repr__(self) -> str:
        return f"StringSchedule.parse({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StringSchedule) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

