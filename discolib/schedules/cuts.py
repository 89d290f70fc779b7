"""Disco's cutout schedules: ``"[40]*400+[20]*600"`` and the other forms of a per-step cut schedule.

Disco Diffusion gives four 1000-entry schedules (``cut_overview``, ``cut_innercut``, ``cut_ic_pow``,
``cut_icgray_p``) written as Python list arithmetic; :func:`parse_cut_schedule` reads them with the safe
expression language of :mod:`discolib.schedules.expr` (no ``eval``, repeat counts bounded before any list is built),
and also takes the plain forms a script may pass: one number for every step, or a list of ``length`` numbers.
How Disco indexes the entries by timestep is :func:`discolib.guidance.cutouts.disco_schedule_index`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import islice
from typing import overload

import numpy as np

from discolib.schedules.expr import (
    UNARY_BP,
    Parser,
    Program,
    ScheduleError,
    check_length,
    describe_token,
    tokenize,
)

__all__ = ["MAX_CUT_LENGTH", "CutScheduleValue", "parse_cut_schedule"]

MAX_CUT_LENGTH = 1_000_000

#: What a cut schedule may be: Disco's list expression, one number for every step, or the entries themselves.
CutScheduleValue = str | float | Sequence[float] | np.ndarray


@overload
def parse_cut_schedule(
    value: CutScheduleValue, *, setting: str | None = ..., length: int = ..., kind: type[int] = ...
) -> list[int]: ...
@overload
def parse_cut_schedule(
    value: CutScheduleValue, *, setting: str | None = ..., length: int = ..., kind: type[float]
) -> list[float]: ...
def parse_cut_schedule(
    value: CutScheduleValue, *, setting: str | None = None, length: int = 1000, kind: type[int] | type[float] = int
) -> list[int] | list[float]:
    """Disco's per-step cut schedules, e.g. ``"[40]*400+[20]*600"`` -> 1000 entries (one per diffusion step).

    Grammar: ``term ('+' term)*`` with ``term := (count '*')* '[' expr (',' expr)* ','? ']' ('*' count)*``, as
    Python list arithmetic; counts are safe expressions (``10**3``) that must be whole numbers ``>= 0``. A single
    bare number means that value at every step. The total must be exactly ``length`` entries. ``kind=int`` (cut
    counts) requires whole numbers and returns ints; ``kind=float`` (``cut_innercut``-style fractions such as
    ``"[0.2]*400+[0]*600"``) returns floats. The running total is checked before any list is built, so
    ``"[1]*999999999999"`` fails at once.

    Besides a string, ``value`` may be a number (that value at every step) or a sequence / 1-D array of exactly
    ``length`` numbers; their entries obey the same ``kind`` rule and must be finite. Every problem is a
    :class:`ScheduleError` naming ``setting``.
    """
    if kind not in (int, float):
        raise ScheduleError(f"kind must be int or float, found {kind!r}", setting=setting)
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_CUT_LENGTH:
        raise ScheduleError(f"length must be an integer 1 to {MAX_CUT_LENGTH}, found {length!r}", setting=setting)
    if isinstance(value, str):
        return _parse_text(value, setting, length, kind)
    return _from_values(value, setting, length, kind)


def _from_values(
    value: object, setting: str | None, length: int, kind: type[int] | type[float]
) -> list[int] | list[float]:
    """A number repeated ``length`` times, or a sequence of exactly ``length`` numbers, as ``kind``."""

    def entry(v: object, where: str) -> float:
        # bool is an int subclass, but True as a cut count is a mistake, not 1
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ScheduleError(
                f"expected a number, a list of numbers or a Disco list expression such as '[40]*400+[20]*600', "
                f"found {type(v).__name__}{where}",
                setting=setting,
            )
        f = float(v)
        if not math.isfinite(f):
            raise ScheduleError(f"expected a finite number, found {f}{where}", setting=setting)
        if kind is int:
            if not f.is_integer():
                raise ScheduleError(f"expected a whole number, found {f:g}{where}", setting=setting)
            return int(f)
        return f

    is_list = isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray))
    if not (is_list or (isinstance(value, np.ndarray) and value.ndim == 1)):
        return [entry(value, "")] * length  # type: ignore[return-value]
    # at most length + 1 entries are read: a too-long sequence fails without converting all of it
    values = [entry(v, f" (entry {i})") for i, v in enumerate(islice(value, length + 1))]  # type: ignore[call-overload]
    if len(values) > length:
        raise ScheduleError(
            f"the schedule has more than {length} entries (expected exactly {length}, one per step)", setting=setting
        )
    if len(values) < length:
        raise ScheduleError(
            f"the schedule has {len(values)} entries; expected exactly {length} (one per step)", setting=setting
        )
    return values  # type: ignore[return-value]


def _parse_text(text: str, setting: str | None, length: int, kind: type[int] | type[float]) -> list[int] | list[float]:
    """A Disco list expression (see :func:`parse_cut_schedule`) as ``length`` entries of ``kind``."""
    text = check_length(text, setting, "cut schedule")
    tokens = tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("empty cut schedule (expected e.g. '[40]*400+[20]*600')", setting=setting)
    none = frozenset[str]()

    def number(index: int, min_bp: int) -> tuple[float, int, int]:
        parser = Parser(tokens, text, setting, none, "a cut schedule", index)
        parser.expr(min_bp)
        program = Program(parser.code, text, tokens[index].pos, tokens[parser.i].pos)
        return float(program.evaluate({}, setting)), parser.i, tokens[index].pos

    def as_kind(value: float, pos: int) -> float:
        if kind is int:
            if not value.is_integer():
                raise ScheduleError(f"expected a whole number, found {value:g}", setting=setting, column=pos + 1)
            return int(value)
        return value

    if not any(t.text == "[" for t in tokens):  # one bare number for every step
        value, i, pos = number(0, 0)
        if tokens[i].kind != "end":
            raise ScheduleError(
                f"expected '+' or the end of the schedule, found {describe_token(tokens[i])}", setting=setting, column=tokens[i].pos + 1
            )
        return [as_kind(value, pos)] * length  # type: ignore[return-value]

    def count(index: int) -> tuple[int, int]:
        value, i, pos = number(index, UNARY_BP)
        if not value.is_integer() or value < 0:
            raise ScheduleError(f"expected a whole repeat count >= 0, found {value:g}", setting=setting, column=pos + 1)
        if value > length:
            raise ScheduleError(
                f"repeat count {value:.0f} is larger than the schedule length {length}", setting=setting, column=pos + 1
            )
        return int(value), i

    out: list[float] = []
    i = 0
    while True:
        term_pos = tokens[i].pos
        repeat = 1
        while tokens[i].text != "[" or tokens[i].kind == "end":  # leading counts: 400*[40]
            if tokens[i].kind == "end":
                raise ScheduleError("expected '[' to start a list, found the end of the text", setting=setting, column=tokens[i].pos + 1)
            c, i = count(i)
            repeat *= c
            if tokens[i].text != "*":
                raise ScheduleError(
                    f"expected '*' then a list such as [40], found {describe_token(tokens[i])}", setting=setting, column=tokens[i].pos + 1
                )
            i += 1
        opening = tokens[i]
        i += 1
        items: list[float] = []
        while True:
            value, i, pos = number(i, 0)
            items.append(as_kind(value, pos))
            sep = tokens[i]
            if sep.text == "," and sep.kind == "op":
                i += 1
                if tokens[i].text == "]":
                    i += 1
                    break
                continue
            if sep.text == "]" and sep.kind == "op":
                i += 1
                break
            raise ScheduleError(
                f"expected ',' or ']' to close '[' at column {opening.pos + 1}, found {describe_token(sep)}",
                setting=setting,
                column=sep.pos + 1,
            )
        while tokens[i].text == "*" and tokens[i].kind == "op":  # trailing counts: [40]*400
            c, i = count(i + 1)
            repeat *= c
            if repeat > length:
                break
        if len(out) + len(items) * repeat > length:
            raise ScheduleError(
                f"the schedule has more than {length} entries (expected exactly {length}, one per step)",
                setting=setting,
                column=term_pos + 1,
            )
        out.extend(items * repeat)
        tok = tokens[i]
        if tok.kind == "end":
            break
        if tok.text != "+":
            raise ScheduleError(
                f"expected '+', '*' or the end of the schedule, found {describe_token(tok)}", setting=setting, column=tok.pos + 1
            )
        i += 1
    if len(out) != length:
        raise ScheduleError(
            f"the schedule has {len(out)} entries; expected exactly {length} (one per step)", setting=setting
        )
    return out  # type: ignore[return-value]
