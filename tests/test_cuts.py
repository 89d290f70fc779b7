"""Disco's cut schedules (discolib.schedules.cuts): list expressions, numbers and lists, exact errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from discolib.schedules.cuts import parse_cut_schedule
from discolib.schedules.expr import ScheduleError


@pytest.mark.parametrize(
    ("text", "head", "tail"),
    [
        ("[12]*400+[4]*600", 12, 4),
        ("[40]*400+[20]*600", 40, 20),
        ("[1]*1000", 1, 1),
        ("[5]*400 + [1]*600", 5, 1),
        ("400*[2] + [1, 0]*300", 2, 0),
        ("[0]*1000", 0, 0),
        ("8", 8, 8),
    ],
)
def test_disco_cut_schedules(text: str, head: int, tail: int) -> None:
    cuts = parse_cut_schedule(text, setting="cut_overview")
    assert len(cuts) == 1000 and cuts[0] == head and cuts[-1] == tail
    assert all(type(c) is int for c in cuts)


def test_cut_schedule_floats_and_errors() -> None:
    frac = parse_cut_schedule("[0.2]*400+[0]*600", setting="cut_innercut_grey_p", kind=float)
    assert frac[399] == 0.2 and frac[400] == 0.0 and len(frac) == 1000
    assert parse_cut_schedule("[1]*10", length=10) == [1] * 10
    cases = {
        "[12]*400+[4]*500": "cut_overview: the schedule has 900 entries; expected exactly 1000 (one per step)",
        "[12]*400+[4]*700": "cut_overview: column 10: the schedule has more than 1000 entries (expected exactly 1000, one per step)",
        "[1]*999999999999": "cut_overview: column 5: repeat count 999999999999 is larger than the schedule length 1000",
        "[1]*10**9": "cut_overview: column 5: repeat count 1000000000 is larger than the schedule length 1000",
        "[0.2]*1000": "cut_overview: column 2: expected a whole number, found 0.2",
        "[1]*2.5": "cut_overview: column 5: expected a whole repeat count >= 0, found 2.5",
        "[1*1000": "cut_overview: column 8: expected ',' or ']' to close '[' at column 1, found the end of the text",
        "[1]*1000 -": "cut_overview: column 10: expected '+', '*' or the end of the schedule, found '-'",
        "__import__('os')": "cut_overview: column 12: unexpected quote (strings are not allowed)",
        "[x]*1000": "cut_overview: column 2: unknown name 'x' (expected a number, one of e, pi or a function such as sin(...))",
        "": "cut_overview: empty cut schedule (expected e.g. '[40]*400+[20]*600')",
    }
    for text, message in cases.items():
        start = time.perf_counter()
        with pytest.raises(ScheduleError) as info:
            parse_cut_schedule(text, setting="cut_overview")
        assert str(info.value) == message
        assert time.perf_counter() - start < 0.5


def test_float_schedules_keep_fractions_and_lists() -> None:
    s = parse_cut_schedule("[12]*400+[4]*600", kind=float)
    assert len(s) == 1000 and s[0] == 12 and s[399] == 12 and s[400] == 4 and s[-1] == 4
    assert all(type(v) is float for v in s)
    assert parse_cut_schedule("[1]*1000", kind=float) == [1.0] * 1000
    assert parse_cut_schedule(" 500 * [0.2, 0.1] ", kind=float)[:3] == [0.2, 0.1, 0.2]
    assert parse_cut_schedule("[0.2]*400+[0]*599+[1]", kind=float)[-1] == 1.0
    assert parse_cut_schedule("0.5", kind=float) == [0.5] * 1000


def test_numbers_and_sequences_are_schedules_too() -> None:
    assert parse_cut_schedule(2.5, kind=float) == [2.5] * 1000
    assert parse_cut_schedule(3) == [3] * 1000 and all(type(v) is int for v in parse_cut_schedule(3.0))
    assert parse_cut_schedule(np.int64(4), length=3) == [4, 4, 4]
    assert parse_cut_schedule([3] * 1000, kind=float) == [3.0] * 1000
    assert parse_cut_schedule((1, 2, 3), length=3) == [1, 2, 3]
    assert parse_cut_schedule(np.array([0.5, 0.25]), length=2, kind=float) == [0.5, 0.25]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "cut_overview: expected a number, a list of numbers or a Disco list expression such as '[40]*400+[20]*600', found bool"),
        (None, "cut_overview: expected a number, a list of numbers or a Disco list expression such as '[40]*400+[20]*600', found NoneType"),
        ({"0": 1}, "cut_overview: expected a number, a list of numbers or a Disco list expression such as '[40]*400+[20]*600', found dict"),
        ([1] * 999, "cut_overview: the schedule has 999 entries; expected exactly 1000 (one per step)"),
        ([1] * 10**6, "cut_overview: the schedule has more than 1000 entries (expected exactly 1000, one per step)"),
        ([1, "2"] * 500, "cut_overview: expected a number, a list of numbers or a Disco list expression such as '[40]*400+[20]*600', found str (entry 1)"),
        ([1.5] * 1000, "cut_overview: expected a whole number, found 1.5 (entry 0)"),
        (float("nan"), "cut_overview: expected a finite number, found nan"),
        (2.5, "cut_overview: expected a whole number, found 2.5"),
        ("[12]*400", "cut_overview: the schedule has 400 entries; expected exactly 1000 (one per step)"),
        ("[1]*1000+", "cut_overview: column 10: expected '[' to start a list, found the end of the text"),
        ("[a]*1000", "cut_overview: column 2: unknown name 'a' (expected a number, one of e, pi or a function such as sin(...))"),
    ],
)
def test_bad_values_name_the_setting(value: object, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_cut_schedule(value, setting="cut_overview")  # type: ignore[arg-type]
    assert str(info.value) == message


def test_bad_kind_and_length() -> None:
    with pytest.raises(ScheduleError, match="kind must be int or float"):
        parse_cut_schedule("[1]*1000", kind=str)  # type: ignore[call-overload]
    with pytest.raises(ScheduleError, match="length must be an integer 1 to 1000000"):
        parse_cut_schedule("[1]*1000", length=0)
