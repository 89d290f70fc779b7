"""Keyframe schedules and their expression language: Disco/Deforum strings, interpolation, exact errors, hostile
input, properties. Cut schedules are in test_cuts.py, plots in test_schedule_plot.py."""

from __future__ import annotations

import gc
import math
import pickle
import time
import warnings
from collections.abc import Callable
from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discolib.schedules.expr import MAX_DEPTH, ScheduleError
from discolib.schedules.keyframes import Schedule, StringSchedule, parse_frame_key, validate_schedule


def vals(text: str, n: int, **kw: object) -> np.ndarray:
    return Schedule.parse(text, **kw).values(n)  # type: ignore[arg-type]


def error_of(text: str, n: int = 10, setting: str | None = "translation_z", **kw: object) -> ScheduleError:
    with pytest.raises(ScheduleError) as info:
        Schedule.parse(text, setting=setting, **kw).values(n)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------------- Disco / Deforum examples
def test_linear_tween_between_two_keys() -> None:
    v = vals("0: (0), 10: (1.05)", 15)
    assert v.dtype == np.float64 and v.shape == (15,)
    assert v[5] == pytest.approx(0.525)
    assert v[3] == pytest.approx(0.315)
    assert v[0] == 0.0 and v[10] == 1.05
    assert np.all(v[10:] == 1.05)  # holds after the last key


def test_disco_expression_value() -> None:
    v = vals("0:(1.0025+0.002*sin(1.25*3.14*t/30))", 100)
    for t in (0, 1, 7, 30, 99):
        assert v[t] == pytest.approx(1.0025 + 0.002 * math.sin(1.25 * 3.14 * t / 30), abs=1e-15)


@pytest.mark.parametrize(("text", "value"), [("0:(1.04)", 1.04), ("0: (0.65)", 0.65), ("0: (-3)", -3.0)])
def test_deforum_defaults_are_constant(text: str, value: float) -> None:
    sched = Schedule.parse(text)
    assert sched.is_constant
    assert np.all(sched.values(7) == value)


def test_up_and_down_linear() -> None:
    v = vals("0:(0), 30:(10), 60:(0)", 70)
    assert v[15] == pytest.approx(5.0)
    assert v[30] == 10.0
    assert v[45] == pytest.approx(5.0)
    assert v[59] == pytest.approx(1 / 3)
    assert np.all(v[60:] == 0.0)


def test_up_and_down_pchip() -> None:
    # slopes: 0 at the peak (the secant slopes change sign); at frame 0 the three-point end formula gives
    # ((2*30+30)*(1/3) - 30*(-1/3)) / 60 = 2/3. Hermite at s=0.5: 0.125*30*(2/3) + 0.5*10 = 7.5
    v = vals("0:(0), 30:(10), 60:(0)", 61, interpolation="pchip")
    assert v[15] == pytest.approx(7.5)
    assert v[45] == pytest.approx(7.5)
    assert v[30] == 10.0 and v.max() == 10.0 and v.min() == 0.0


ZOOM = "0: (1.0), 20: (1.02), 40:(1)"


def test_zoom_linear() -> None:
    v = vals(ZOOM, 50)
    assert v[10] == pytest.approx(1.01) and v[30] == pytest.approx(1.01)
    assert v[20] == 1.02 and v[40] == 1.0 and v[49] == 1.0


def test_zoom_step() -> None:
    v = vals(ZOOM, 50, interpolation="step")
    assert np.all(v[:20] == 1.0)
    assert np.all(v[20:40] == 1.02)
    assert np.all(v[40:] == 1.0)


def test_zoom_pchip() -> None:
    """discolib's monotone cubic (called "cubic" before Deforum's spline took that name)."""
    v = vals(ZOOM, 50, interpolation="pchip")
    # first interval: d0 = ((2*20+20)*0.001 - 20*(-0.001)) / 40 = 0.002, d1 = 0 (peak)
    # s=0.5: 0.5*1.0 + 0.125*20*0.002 + 0.5*1.02 = 1.015;  s=0.25: 0.84375 + 0.140625*0.04 + 0.15625*1.02
    assert v[10] == pytest.approx(1.015)
    assert v[5] == pytest.approx(1.00875)
    assert v[20] == 1.02
    assert v.min() >= 1.0 and v.max() <= 1.02  # monotone cubic: never dips below 1 (no overshoot)
    assert np.all(np.diff(v[:21]) >= 0) and np.all(np.diff(v[20:41]) <= 0)
    assert Schedule.parse(ZOOM, interpolation="monotone-cubic").interpolation == "pchip"


def test_zoom_cubic_is_deforums_spline() -> None:
    """Deforum's 'Cubic' with 3 keys falls back to 'Quadratic': scipy's quadratic through the placed frames 0, 20,
    40 and 49 (the last frame takes the last key's value). It overshoots: zoom dips below 1 after frame 40."""
    v = vals(ZOOM, 50, interpolation="cubic")
    assert np.array_equal(v, vals(ZOOM, 50, interpolation="quadratic"))
    assert v[20] == 1.02 and v[40] == 1.0 and v[49] == 1.0
    assert v[45] < 1.0 and v.max() > 1.02

def test_zoom_ease_in_out() -> None:
    v = vals(ZOOM, 50, interpolation="ease-in-out")
    # smoothstep(0.25) = 0.25**2 * (3 - 0.5) = 0.15625
    assert v[5] == pytest.approx(1.0 + 0.02 * 0.15625)
    assert v[10] == pytest.approx(1.01)
    assert v[35] == pytest.approx(1.02 - 0.02 * 0.84375)
    assert v[20] == 1.02
    assert Schedule.parse(ZOOM, interpolation="ease_in_out").interpolation == "ease-in-out"


def test_unknown_interpolation() -> None:
    with pytest.raises(ScheduleError, match=r"^zoom: unknown interpolation 'cubc' \(expected one of linear"):
        Schedule.parse(ZOOM, setting="zoom", interpolation="cubc")


def test_max_f_keys_truncate() -> None:
    v = vals("0:(0), max_f/2: (3)", 11)  # max_f=10 -> key 5
    assert v[5] == 3.0 and v[2] == pytest.approx(1.2)
    v = vals("0:(0), max_f/2: (3)", 10)  # max_f=9 -> 4.5 -> 4 (webui's int())
    assert v[4] == 3.0 and v[3] == pytest.approx(2.25)
    v = vals("0: (0), max_f-10:(1)", 21)  # key 10
    assert v[10] == 1.0 and v[5] == pytest.approx(0.5)


def test_max_f_key_resolving_negative_is_ignored() -> None:
    """Deforum (webui) only looks keys up for frames 0 .. max_frames-1: a key below 0 is ignored. (Before issue 13
    this was an error; webui's own default seed_schedule has "max_f-2" keys, fine for any frame count.)"""
    assert vals("0: (0), max_f-10:(1)", 5).tolist() == [0.0] * 5
    assert vals("0: (0), max_f-10:(1)", 13).tolist() == [0.0, 0.5] + [1.0] * 11  # max_f = 12: key 2
    assert vals("max_f-10:(1)", 5).tolist() == [1.0] * 5  # no key inside: the nearest one holds
    with pytest.raises(ScheduleError, match=r"key 'max_f-10' gives frame -6 for 5 frames"):
        parse_frame_key("max_f-10").resolve(5)  # prompt schedules still need every key
    assert parse_frame_key("max_f-10").frame_for(5) == -6
    assert parse_frame_key("max_f/2 - 5").frame_for(10) == 0  # -0.5 truncates to 0, as int() does


def test_commas_inside_calls_are_not_separators() -> None:
    v = vals("0: (atan2(t, 10)), 5: (min(t, 7, 100))", 10)
    assert v[3] == pytest.approx(math.atan2(3, 10))
    assert list(v[5:]) == [5, 6, 7, 7, 7]
    assert vals("0: max(t, 2), 3: clamp(t, 0, 4)", 6).tolist() == [2, 2, 2, 3, 4, 4]


def test_trailing_comma_and_no_parentheses_and_spaces() -> None:
    base = vals("0: (1), 10: (2)", 12)
    assert np.array_equal(vals("0: (1), 10: (2),", 12), base)
    assert np.array_equal(vals("0:1, 10: 2", 12), base)
    assert np.array_equal(vals("  0 :\t(1) ,\n 10:(2) , ", 12), base)
    # Deforum's number test is on the text inside the parentheses: "( 1 )" is an expression, held up to key 10
    assert vals("  0 :\t( 1 ) ,\n 10:(2) , ", 12).tolist() == [1.0] * 10 + [2.0, 2.0]


def test_bare_expression_means_key_zero() -> None:
    assert np.all(vals("1.0", 4) == 1.0)
    assert np.allclose(vals("sin(t)", 4), np.sin(np.arange(4)))
    assert vals("-2**2", 1)[0] == -4.0  # unary minus binds looser than ** (as in Python)
    assert vals("2**-1*3", 1)[0] == 1.5
    assert vals("2**3**2", 1)[0] == 512.0  # right-associative
    assert vals("7 % -3", 1)[0] == 7 % -3  # Python's modulo sign
    assert vals("(t > 2) + (t == 1) * 10", 4).tolist() == [0, 10, 0, 1]
    assert vals("where(t >= 2, 1/t, 0)", 4).tolist() == [0, 0, 0.5, 1 / 3]  # the unused branch may be inf
    assert vals("1e-3 + 5. + .5", 1)[0] == pytest.approx(5.501)
    assert vals("floor(2.7) + ceil(0.2) + round(2.5) + abs(-1)", 1)[0] == 2 + 1 + 2 + 1


def test_missing_frame_zero_holds_first_value() -> None:
    v = vals("10: (2), 20: (4)", 25)
    assert np.all(v[:11] == 2.0) and v[15] == pytest.approx(3.0) and np.all(v[20:] == 4.0)
    v = vals("5: (t*2)", 8)  # an expression key holds its own value at its frame before it
    assert v.tolist() == [10, 10, 10, 10, 10, 10, 12, 14]


def test_tween_into_expressions_not_out_of_them() -> None:
    """Deforum: a number key tweens into the next key's value, an expression's included; an expression runs up to
    the next key and then jumps. (Before issue 13 a number key held until an expression key.)"""
    v = vals("0:(0), 10:(1), 20:(t), 30:(5)", 35)
    assert v[5] == pytest.approx(0.5)
    assert v[15] == pytest.approx(10.5)  # 1 at frame 10 towards t = 20 at frame 20
    assert v[25] == 25.0 and v[29] == 29.0
    assert np.all(v[30:] == 5.0)  # and nothing tweens out of the expression: it jumps to 5
    v = vals("0:(0), 10:(t)", 15)
    assert v[14] == 14.0  # an expression as the last key keeps being evaluated


def test_key_beyond_the_end_is_ignored() -> None:
    """Deforum ignores keys past the last frame (before issue 13 they shaped the tween: 0.49 at frame 49)."""
    assert np.all(vals("0: (0), 100: (1)", 50) == 0.0)
    assert vals("0: (0), 100: (1)", 101)[50] == pytest.approx(0.5)


def test_seed_and_max_f_in_values() -> None:
    sched = Schedule.parse("0: (s % 7), 10: (max_f)")
    assert sched.values(21, seed=10)[0] == 3.0
    assert sched.values(21, seed=10)[5] == 3.0  # an expression (even without t) holds up to the next key
    assert sched.value_at(10, n_frames=21, seed=10) == 20.0
    assert not sched.is_constant


def test_duplicate_keys_warn_and_last_wins() -> None:
    with pytest.warns(UserWarning, match=r"^zoom: duplicate key '10' \(frame 10\); the last one wins$"):
        sched = Schedule.parse("0:(1), 10:(2), 10:(3)", setting="zoom")
    v = sched.values(12)
    assert v[10] == 3.0 and v[5] == pytest.approx(2.0)
    sched = Schedule.parse("9: (1), max_f: (2)", setting="zoom")  # only a clash for 10 frames
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sched.values(12)[9] == 1.0
    with pytest.warns(UserWarning, match=r"^zoom: duplicate key 'max_f' \(frame 9\)"):
        assert sched.values(10)[9] == 2.0


def test_constant_text_and_caching() -> None:
    c = Schedule.constant(1.5)
    assert c.is_constant and c.values(3).tolist() == [1.5, 1.5, 1.5]
    assert Schedule.parse(c.text) == c
    assert Schedule.constant(-1e-5).values(1)[0] == -1e-5
    sched = Schedule.parse("0: (0), 10: (1)")
    assert sched.text == "0: (0), 10: (1)" and not sched.is_constant
    assert Schedule.parse("0:(2), 10:(2)").is_constant
    a = sched.values(11)
    a[:] = 99  # values() hands out a copy: the cache is not affected
    assert sched.value_at(5, n_frames=11) == 0.5
    with pytest.raises(ScheduleError, match="frame must be an integer 0 to 10"):
        sched.value_at(11, n_frames=11)
    with pytest.raises(ScheduleError, match="expected a finite number"):
        Schedule.constant(float("nan"))


def test_parse_frame_key() -> None:
    assert parse_frame_key("10").frame == 10
    assert parse_frame_key(7).resolve(3) == 7
    key = parse_frame_key("max_f / 3")
    assert key.frame is None and key.uses_max_f and key.resolve(11) == 3
    with pytest.raises(ScheduleError, match="expected an integer frame key"):
        parse_frame_key(True)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- exact errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10: ((1+2, 5: (1)", "translation_z: column 10: expected ')' to close '(' at column 6, found ','"),
        ("0: (0), 10: (1.05*(t+1, 20: (1)", "translation_z: column 23: expected ')' to close '(' at column 19, found ','"),
        ("0: (1), 10: (2", "translation_z: column 15: expected ')' to close '(' at column 13, found the end of the text"),
        ("0: (1)), 5: (2)", "translation_z: column 7: unexpected ')' (no matching '(')"),
        ("0:(1) 10:(2)", "translation_z: column 7: expected an operator or the end of the value, found '10' (missing ',' between keyframes?)"),
        ("0: (1), 10", "translation_z: column 9: expected 'frame: value' (missing ':' after the frame number)"),
        ("0: (1),, 5: (2)", "translation_z: column 8: expected a keyframe 'frame: value', found ','"),
        ("0: ", "translation_z: column 4: expected a value, found the end of the text"),
        (": (1)", "translation_z: column 1: expected a frame number before ':'"),
        ("2.5: (1)", "translation_z: column 1: expected a whole frame number as key, found 2.5"),
        ("-3: (1)", "translation_z: column 1: frame key -3 is out of range (keys must be 0 to 10000000)"),
        ("t: (1)", "translation_z: column 1: 't' cannot be used in a frame key (only max_f)"),
        ("0: (foo)", "translation_z: column 5: unknown name 'foo' (expected a number, one of e, max_f, pi, s, t or a function such as sin(...))"),
        ("0: (Sin(t))", "translation_z: column 5: unknown name 'Sin' (expected a number, one of e, max_f, pi, s, t or a function such as sin(...))"),
        ("0: sin t", "translation_z: column 8: expected '(' after function 'sin', found 't'"),
        ("0: atan2(1)", "translation_z: column 4: atan2() takes exactly 2 arguments, found 1"),
        ("0: sqrt(1, 2)", "translation_z: column 4: sqrt() takes exactly 1 argument, found 2"),
        ("0: min(t; 2)", "translation_z: column 9: unexpected ';' (only one expression per value)"),
        ("0: 1 < t < 3", "translation_z: column 10: comparisons cannot be chained (write (a < b) * (b < c))"),
        ("0: 2^3", "translation_z: column 5: unexpected '^' (use '**' for powers)"),
        ("0: t = 1", "translation_z: column 6: unexpected '=' (did you mean '=='?)"),
        ("0: 1e", "translation_z: column 4: malformed number '1e'"),
        ("0: 2pi", "translation_z: column 4: malformed number '2pi'"),
        ("0: 1e999", "translation_z: column 4: number 1e999 is too large"),
        ("0: (1/(t-2))", "translation_z: column 6: division by zero at frame 2"),
        ("0: sqrt(t-3)", "translation_z: column 4: sqrt of a negative number (-3) at frame 0"),
        ("0: 1, 5: log(t-7)", "translation_z: column 10: log of zero or a negative number (-2) at frame 5"),
        ("0: asin(2)", "translation_z: column 4: asin of a number outside [-1, 1] (2)"),
        ("0: (-8)**(1/3)", "translation_z: column 8: negative number raised to a fractional power"),
        ("0: 0**-1", "translation_z: column 5: zero raised to a negative power (division by zero)"),
        ("0: t % 0", "translation_z: column 6: modulo by zero at frame 0"),
        ("0: exp(t*100)", "translation_z: column 4: exp() result too large (overflow) at frame 8"),
        ("", "translation_z: empty schedule (expected e.g. '0: (1.0)')"),
        ("   ", "translation_z: empty schedule (expected e.g. '0: (1.0)')"),
    ],
)
def test_exact_error_messages(text: str, message: str) -> None:
    err = error_of(text)
    assert str(err) == message
    assert isinstance(err, ValueError)


def test_error_attributes_and_pickling() -> None:
    err = error_of("0: (0), 10: (1.05*(t+1, 20: (1)")
    assert (err.setting, err.column) == ("translation_z", 23)
    assert err.reason == "expected ')' to close '(' at column 19, found ','"
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ScheduleError and str(copy) == str(err)
    assert str(error_of("0: (t", setting=None)) == "column 6: expected ')' to close '(' at column 4, found the end of the text"
    assert str(ScheduleError("bad")) == "bad"
    with pytest.raises(ScheduleError, match="expected a schedule string, found int"):
        Schedule.parse(3)  # type: ignore[arg-type]


def test_validate_schedule_evaluates() -> None:
    validate_schedule("0: (1), 20: (log(t-25))", "zoom", n_frames=20)  # the bad key starts after the end
    with pytest.raises(ScheduleError, match=r"^zoom: column 14: log of zero or a negative number \(-5\) at frame 20$"):
        validate_schedule("0: (1), 20: (log(t-25))", "zoom", n_frames=30)
    with pytest.raises(ScheduleError, match="n_frames must be 1 to"):
        validate_schedule("0: (1)", "zoom", n_frames=0)


# ---------------------------------------------------------------------------------------- hostile input
PAYLOADS = [
    "__import__('os').system('id')",
    "__import__",
    "().__class__.__bases__",
    "0: (t).__class__",
    "9**9**9**9",
    "0: 9**9**9**9 * t",
    "(" * 10000 + "1" + ")" * 10000,
    "-" * 10000 + "1",
    "2" + "**2" * 5000,
    "x" * (1 << 20),
    "0:" + "1+" * 200000 + "1",
    "0:" + "1+" * 4000 + "t",
    "0: [1]*10**9",
    "0: exec('1')",
    "0: os.system",
    "0: 'a' + 'b'",
    "0: 1; import os",
    "lambda: 1",
    "0: 1e308*10",
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_hostile_input_fails_cleanly_and_fast(payload: str) -> None:
    # No cyclic GC while timing: a full pass over the objects earlier tests left is not the parser's time. (Disabled,
    # not collected first: in the whole suite one gc.collect() per payload took ~4 s.) Refcounting still frees.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        try:
            result = Schedule.parse(payload, setting="zoom").values(100)
        except ScheduleError as err:
            assert err.setting == "zoom" and err.reason
        else:  # only bounded, finite numbers are acceptable otherwise
            assert np.all(np.isfinite(result))
        elapsed = time.perf_counter() - start
    finally:
        if was_enabled:
            gc.enable()
    assert elapsed < 0.5


def test_specific_payload_messages() -> None:
    assert "unexpected '.'" in str(error_of("().__class__.__bases__"))
    assert "expression is nested too deeply" in str(error_of("(" * 10000 + "1" + ")" * 10000))
    assert "nested too deeply" in str(error_of("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)))
    assert vals("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, 1)[0] == 1.0
    assert "schedule is too long (1048576 characters" in str(error_of("x" * (1 << 20)))
    assert str(error_of("9**9**9**9")) == "translation_z: column 5: '**' result too large (overflow)"
    start = time.perf_counter()
    assert vals("0:" + "1+" * 16000 + "t", 3).tolist() == [16000, 16001, 16002]  # long (32 002 tokens) but legal
    assert time.perf_counter() - start < 2.0  # ~0.15 s on an idle machine; generous for a busy CI runner
    assert "too many tokens" in str(error_of("0:" + "1+" * 17000 + "t"))


# --------------------------------------------------------------------------------------------- properties
TOKENS = [
    "0", "1", "10", "2.5", ".5", "5.", "1e-3", "max_f", "t", "s", "pi", "e", "x", "__import__", "(", ")", ",", ":",
    "+", "-", "*", "/", "%", "**", "<", "<=", "==", "!=", " ", "sin", "atan2", "min", "max", "clamp", "where",
    "sqrt", "log", ".", "[", "]", "'", ";", "=",
]  # fmt: skip


def _parse_and_eval(text: str) -> np.ndarray | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Schedule.parse(text).values(6, seed=3)
        except ScheduleError:
            return None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_gives_schedule_or_schedule_error(text: str) -> None:
    _parse_and_eval(text)
    try:
        StringSchedule.parse(text).values(3)
    except ScheduleError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_token_soup_gives_schedule_or_schedule_error_deterministically(text: str) -> None:
    first = _parse_and_eval(text)
    second = _parse_and_eval(text)
    if first is None:
        assert second is None
    else:
        assert second is not None and np.array_equal(first, second) and np.all(np.isfinite(first))


Fn = Callable[[np.ndarray], np.ndarray]
_BIN: dict[str, Callable[[Fn, Fn], Fn]] = {
    "+": lambda a, b: lambda t: a(t) + b(t),
    "-": lambda a, b: lambda t: a(t) - b(t),
    "*": lambda a, b: lambda t: a(t) * b(t),
}
_FUN: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sin": np.sin, "cos": np.cos, "atan": np.arctan, "abs": np.abs}


def _combine(children: st.SearchStrategy[tuple[str, Fn]]) -> st.SearchStrategy[tuple[str, Fn]]:
    binary = st.tuples(children, st.sampled_from(sorted(_BIN)), children, st.sampled_from(["", " "])).map(
        lambda x: (f"({x[0][0]}{x[3]}{x[1]}{x[3]}{x[2][0]})", _BIN[x[1]](x[0][1], x[2][1]))
    )
    negate = children.map(lambda c: (f"(-{c[0]})", lambda t, f=c[1]: -f(t)))
    call = st.tuples(st.sampled_from(sorted(_FUN)), children).map(
        lambda x: (f"{x[0]}({x[1][0]})", lambda t, g=_FUN[x[0]], f=x[1][1]: g(f(t)))
    )
    minmax = st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=4)).map(
        lambda x: (
            f"{x[0]}({', '.join(c[0] for c in x[1])})",
            lambda t, fs=[c[1] for c in x[1]], g=(np.minimum if x[0] == "min" else np.maximum): reduce(
                g, [f(t) for f in fs]
            ),
        )
    )
    return st.one_of(binary, negate, call, minmax)


_leaves: st.SearchStrategy[tuple[str, Fn]] = st.one_of(
    st.integers(0, 50).map(lambda i: (str(i), lambda t, i=i: np.full_like(t, float(i)))),
    st.floats(0, 100, allow_nan=False).map(lambda v: (repr(v), lambda t, v=v: np.full_like(t, v))),
    st.just(("t", lambda t: t)),
    st.just(("pi", lambda t: np.full_like(t, math.pi))),
)


@settings(max_examples=200, deadline=None)
@given(st.recursive(_leaves, _combine, max_leaves=12))
def test_generated_expressions_evaluate_like_numpy(case: tuple[str, Fn]) -> None:
    text, fn = case
    got = Schedule.parse(text).values(5)
    assert np.allclose(got, fn(np.arange(5, dtype=np.float64)), rtol=1e-9, atol=1e-9)


keyframes = st.dictionaries(
    st.integers(0, 60), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
)


@settings(max_examples=200, deadline=None)
@given(keyframes, st.sampled_from(["linear", "pchip", "ease-in-out", "step"]))
def test_numeric_keyframes_hit_keys_and_stay_between_neighbours(keys: dict[int, float], mode: str) -> None:
    # plain decimals (repr's '1e-05' is an expression for Deforum, held rather than tweened)
    text = ", ".join(f"{k}: ({np.format_float_positional(v, trim='-')})" for k, v in keys.items())
    n = 70
    v = Schedule.parse(text, interpolation=mode).values(n)
    order = sorted(keys)
    for k in order:
        assert v[k] == keys[k]
    assert np.all(v[: order[0]] == keys[order[0]]) and np.all(v[order[-1] :] == keys[order[-1]])
    for a, b in zip(order, order[1:], strict=False):
        lo, hi = min(keys[a], keys[b]), max(keys[a], keys[b])
        assert np.all((v[a : b + 1] >= lo) & (v[a : b + 1] <= hi))


# ----------------------------------------------------------------------------------------- other shapes
def test_string_schedule() -> None:
    ss = StringSchedule.parse("0: (euler_a), 10: (dpmpp_2m)", setting="sampler")
    assert ss.values(12) == ["euler_a"] * 10 + ["dpmpp_2m"] * 2
    assert ss.value_at(10, n_frames=12) == "dpmpp_2m" and ss.options == ["euler_a", "dpmpp_2m"]
    assert StringSchedule.parse("euler_a").values(3) == ["euler_a"] * 3
    assert StringSchedule.parse("C:/models/x.ckpt").values(1) == ["C:/models/x.ckpt"]
    assert StringSchedule.parse("https://host/model.pt").values(1) == ["https://host/model.pt"]
    assert StringSchedule.parse("5: sd-v1-5.safetensors, max_f: (b, c),").values(10) == (
        ["sd-v1-5.safetensors"] * 9 + ["b, c"]
    )
    assert StringSchedule.parse("5: a, max_f: ('b')").values(10)[-1] == "b"
    with pytest.raises(ScheduleError, match=r"^sampler: column 1: expected 'frame: value' \(missing ':'"):
        StringSchedule.parse("euler, 10: ddim", setting="sampler")
    with pytest.raises(ScheduleError, match=r"^sampler: column 13: expected a value after ':'"):
        StringSchedule.parse("0: euler, 5:()", setting="sampler")
    with pytest.raises(ScheduleError, match="empty schedule"):
        StringSchedule.parse(" ", setting="sampler")


def test_parse_is_cached_but_warns_and_fails_every_time() -> None:
    """Validation, the CLI and the render loop parse the same strings: the second parse reuses the first."""
    from discolib.schedules.keyframes import _parse_keyframes_cached

    text = ", ".join(f"{k}: ({k % 7}*sin(t/{k + 3}))" for k in range(0, 3000, 3))
    _parse_keyframes_cached.cache_clear()
    a = Schedule.parse(text, setting="animation.zoom")
    b = Schedule.parse(text, setting="animation.zoom", interpolation="cubic")
    assert _parse_keyframes_cached.cache_info().hits == 1
    assert a is not b and a._keyframes is b._keyframes and b.interpolation == "cubic"
    assert a.values(50).tolist() == b.values(50).tolist()  # t-keys are not tweened: same values
    other = Schedule.parse(text, setting="animation.angle")  # errors name the setting: not shared across names
    assert other._keyframes is not a._keyframes and other.setting == "animation.angle"
    for _ in range(2):
        with pytest.warns(UserWarning, match="duplicate key '1'"):
            Schedule.parse("0:(1), 1:(2), 1:(3)", setting="zoom")
        with pytest.raises(ScheduleError, match=r"^zoom: column 7: expected a value"):
            Schedule.parse("0: (1+", setting="zoom")


def test_validation_warns_again_when_cached() -> None:
    """A schedule validated twice gives its warnings both times (the panel shows them on every check)."""
    text = "0:(1), max_f:(2), 9:(3)"
    for _ in range(2):
        with pytest.warns(UserWarning):
            validate_schedule(text, "animation.zoom", n_frames=10)
