"""Keyframe strings behave as Deforum's (issue 13, point 5).

The reference below re-derives, in the tests' own words, what deforum-stable-diffusion's and sd-webui-deforum's
``get_inbetweens`` compute: keys are looked up for frames 0 .. n-1 only; a value that is a plain number (Deforum's
``check_is_number``: optional sign, digits, optional decimals, nothing else) is placed at its frame; any other value
is evaluated at every frame from its key up to the next key; frame 0 and the last frame take the first and last
values; the rest is filled by pandas' ``Series.interpolate`` (the call Deforum makes), after the ``Cubic`` (<= 3
keys) and ``Quadratic`` (<= 2 keys) fallbacks. Expressions are given to the reference as numpy functions of ``t``
(what numexpr computes), never evaluated from text.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import INTERPOLATIONS, Schedule, StringSchedule, parse_frame_key

pd = pytest.importorskip("pandas")

#: Deforum's number pattern, re-stated: the whole text is a sign, digits and decimals (one digit at least here).
NUMBER = re.compile(r"[+-]?\d*(\.\d+)?")

def _is_number(text: str) -> bool:
    return NUMBER.fullmatch(text) is not None and any(c.isdigit() for c in text)


def deforum(keys: dict[int, str | tuple[str, Callable[[float], float]]], n: int, method: str = "Linear") -> np.ndarray:
    """Deforum's series for ``keys`` {frame: number text, or (expression text, its numpy function of t)}."""
    series = pd.Series(np.full(n, np.nan))
    current: str | tuple[str, Callable[[float], float]] | None = None
    for i in range(n):
        new_key = i in keys
        if new_key:
            current = keys[i]
        assert current is not None, "Deforum needs a key at frame 0"
        if isinstance(current, str) and _is_number(current):
            if new_key:
                series[i] = float(current)
        else:
            series[i] = float(current[1](float(i))) if isinstance(current, tuple) else float(current)
    if method == "Cubic" and len(keys) <= 3:
        method = "Quadratic"
    if method == "Quadratic" and len(keys) <= 2:
        method = "Linear"
    series[0] = series[series.first_valid_index()]
    series[n - 1] = series[series.last_valid_index()]
    return series.interpolate(method=method.lower(), limit_direction="both").to_numpy()


def text_of(keys: dict[int, str | tuple[str, Callable[[float], float]]]) -> str:
    return ", ".join(f"{k}: ({v if isinstance(v, str) else v[0]})" for k, v in keys.items())


def ours(text: str, n: int, mode: str = "linear", seed: int = 0) -> np.ndarray:
    return Schedule.parse(text, interpolation=mode).values(n, seed=seed)


# ------------------------------------------------------------------------------------------ the cases
def test_number_key_tweens_into_an_expression_key() -> None:
    """Issue 13: "0: (0), 5: (1.0+t/10)" gave 0,0,0,0,0,1.5; Deforum interpolates 0, 0.3, ... 1.5."""
    got = ours("0: (0), 5: (1.0+t/10)", 6)
    assert got == pytest.approx([0, 0.3, 0.6, 0.9, 1.2, 1.5], abs=1e-15)
    assert np.array_equal(got, deforum({0: "0", 5: ("1.0+t/10", lambda t: 1.0 + t / 10)}, 6))


@pytest.mark.parametrize(
    ("text", "value"), [("1e-3", 1e-3), ("0.5*2", 1.0), ("0.5 ", 0.5), (" 0.5", 0.5), ("1.", 1.0), ("(2)", 2.0)]
)
def test_constant_expressions_are_held_not_tweened(text: str, value: float) -> None:
    """Deforum's number regex: ``1e-3``, ``0.5*2``, ``(0.5 )`` are expressions, evaluated (held) up to the next key."""
    keys = {0: "0", 10: (text, lambda t, v=value: v), 20: "1"}
    got = ours(text_of(keys), 25)
    assert np.array_equal(got, deforum(keys, 25))
    assert np.all(got[10:20] == value) and got[5] == pytest.approx(value / 2) and np.all(got[20:] == 1.0)


def test_number_forms_are_tweened() -> None:
    for text in ("0.5", "+0.5", ".5", "-0.5", "5"):
        keys = {0: "0", 10: text, 20: "0"}
        assert np.array_equal(ours(text_of(keys), 25), deforum(keys, 25)), text
    assert ours("0: 0, 10: 1", 11)[5] == 0.5  # without parentheses (webui accepts those) a number is a number


def test_key_past_the_last_frame_is_ignored() -> None:
    """Issue 13: Deforum holds the earlier value; discolib ramped towards the key (0.49 at frame 49)."""
    keys = {0: "0", 100: "1"}
    assert np.array_equal(ours(text_of(keys), 50), np.zeros(50))
    assert np.array_equal(ours(text_of(keys), 50), deforum({0: "0"}, 50))
    keys3 = {0: "0", 30: ("t/30", lambda t: t / 30), 60: "5"}  # an expression runs to the end when its next key is out
    assert np.array_equal(ours(text_of(keys3), 45), deforum({0: "0", 30: keys3[30]}, 45))


def test_webui_quoted_max_f_keys() -> None:
    """webui's own settings write keys in quotes, as expressions of max_f = max_frames - 1, truncated by int()."""
    seed_schedule = '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)'  # webui's default seed_schedule
    assert ours(seed_schedule, 10, seed=7).tolist() == [7, -1, -1, -1, -1, -1, -1, -1, 7, 7]
    assert ours(seed_schedule, 1, seed=7).tolist() == [7]  # the max_f keys fall below 0 and are ignored
    assert ours('0: (0), "max_f/2": (10)', 10).tolist() == [0, 2.5, 5, 7.5, 10, 10, 10, 10, 10, 10]  # 4.5 -> 4
    assert ours("0: (0), 'max_f-1': (3)", 10) == pytest.approx(np.minimum(np.arange(10) * 3 / 8, 3))  # key 8
    assert ours("\"0\": (1), '5': 2", 7).tolist() == [1, 1.2, 1.4, 1.6, 1.8, 2, 2]
    keys = {0: "0", 4: "10"}
    assert np.array_equal(ours('0: (0), "max_f/2": (10)', 10), deforum(keys, 10))
    assert parse_frame_key('"max_f/2"').resolve(11) == 5 and parse_frame_key("'7'").frame == 7


def test_quotes_elsewhere_are_still_refused() -> None:
    for text, column in [("0: ('a')", 5), ("0: (1), \"5': (2)", 9), ("\"0: (1)", 1), ("0: (1), 'max_f\": 1", 9)]:
        with pytest.raises(ScheduleError) as info:
            Schedule.parse(text, setting="animation.zoom").values(10)
        assert str(info.value) == f"animation.zoom: column {column}: unexpected quote (strings are not allowed)", text


def test_quoted_key_errors_keep_their_columns() -> None:
    with pytest.raises(ScheduleError) as info:
        Schedule.parse('0: (1), "t": (2)', setting="animation.zoom")
    assert str(info.value) == "animation.zoom: column 10: 't' cannot be used in a frame key (only max_f)"


def test_string_schedule_quoted_and_outside_keys() -> None:
    ss = StringSchedule.parse("0: (euler), \"max_f/2\": (ddim), 'max_f+5': (lms), max_f-20: (dpm)", setting="sampler")
    assert ss.values(6) == ["euler", "euler", "ddim", "ddim", "ddim", "ddim"]  # max_f/2 = 2.5 -> 2; others outside
    assert StringSchedule.parse("3: a, 9: b").values(2) == ["a", "a"]  # no key inside: the nearest holds


# ------------------------------------------------------------------------------------------- numexpr functions
NUMEXPR_FUNCTIONS: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
    ("arcsin(t/20)", lambda t: np.arcsin(t / 20)),
    ("arccos(t/20)", lambda t: np.arccos(t / 20)),
    ("arctan(t)", np.arctan),
    ("arctan2(t, 3)", lambda t: np.arctan2(t, 3)),
    ("arctan2(-1, t)", lambda t: np.arctan2(-1, t)),
    ("log10(t+1)", lambda t: np.log10(t + 1)),
    ("log2(t+1)", lambda t: np.log2(t + 1)),
    ("log1p(t)", np.log1p),
    ("expm1(t/10)", lambda t: np.expm1(t / 10)),
    ("sinh(t/5) + cosh(t/5) + tanh(t/5)", lambda t: np.sinh(t / 5) + np.cosh(t / 5) + np.tanh(t / 5)),
    ("arcsinh(t) + arccosh(t+1) + arctanh(t/20)", lambda t: np.arcsinh(t) + np.arccosh(t + 1) + np.arctanh(t / 20)),
    ("abs(5-t) + sqrt(t) + exp(-t) + log(t+1)", lambda t: np.abs(5 - t) + np.sqrt(t) + np.exp(-t) + np.log(t + 1)),
    ("where(t > 3, 1, 2) + floor(t/3) + ceil(t/3)", lambda t: np.where(t > 3, 1, 2) + np.floor(t / 3) + np.ceil(t / 3)),
    ("trunc(t/3 - 2) + sign(t - 4) + round(t/2)", lambda t: np.trunc(t / 3 - 2) + np.sign(t - 4) + np.round(t / 2)),
    ("fmod(t - 8, 3) + hypot(t, 4) + copysign(2, 4 - t)", lambda t: np.fmod(t - 8, 3) + np.hypot(t, 4) + np.copysign(2, 4 - t)),
    ("minimum(t, 4) + maximum(t, 6)", lambda t: np.minimum(t, 4) + np.maximum(t, 6)),
    ("(t - 8) % 3 + 2**-1 - -2**2", lambda t: (t - 8) % 3 + 0.5 + 4),  # numexpr's % and ** read as Python's
]


@pytest.mark.parametrize(("text", "fn"), NUMEXPR_FUNCTIONS, ids=[t for t, _ in NUMEXPR_FUNCTIONS])
def test_numexpr_functions(text: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    t = np.arange(12, dtype=np.float64)
    np.testing.assert_allclose(ours(f"0: ({text})", 12), fn(t), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0: arcsin(t)", "animation.zoom: column 4: arcsin of a number outside [-1, 1] (2) at frame 2"),
        ("0: arccosh(t)", "animation.zoom: column 4: arccosh of a number below 1 (0) at frame 0"),
        ("0: arctanh(t/2)", "animation.zoom: column 4: arctanh of a number outside (-1, 1) (1) at frame 2"),
        ("0: log10(t-1)", "animation.zoom: column 4: log10 of zero or a negative number (-1) at frame 0"),
        ("0: log1p(-t)", "animation.zoom: column 4: log1p of a number <= -1 (-1) at frame 1"),
        ("0: fmod(1, t)", "animation.zoom: column 4: fmod by zero at frame 0"),
        ("0: sinh(t*1000)", "animation.zoom: column 4: sinh() result too large (overflow) at frame 1"),
        ("0: arctan2(1)", "animation.zoom: column 4: arctan2() takes exactly 2 arguments, found 1"),
    ],
)
def test_numexpr_function_errors_name_setting_and_column(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        Schedule.parse(text, setting="animation.zoom").values(5)
    assert str(info.value) == message


# -------------------------------------------------------------------------------------------- interpolation
CASES: list[dict[int, str | tuple[str, Callable[[float], float]]]] = [
    {0: "0", 3: "1", 6: "0.5", 9: "2"},
    {0: "0", 3: "1", 6: "0.5"},
    {0: "1", 20: "1.02", 40: "1", 60: "1.5", 61: "0.2", 90: "3"},
    {0: "0", 10: ("sin(t/5)", lambda t: math.sin(t / 5)), 30: "2", 50: ("cos(t/7)", lambda t: math.cos(t / 7)),
     150: "0", 170: ("t/100", lambda t: t / 100), 260: "1", 300: "2"},
    {0: ("t", lambda t: t), 5: "10", 8: ("sin(t)", math.sin), 12: "3"},
]  # fmt: skip


@pytest.mark.parametrize("method", ["Linear", "Quadratic", "Cubic"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_interpolation_matches_deforums_pandas_call(method: str, case: int) -> None:
    if method != "Linear":
        pytest.importorskip("scipy")
    keys = CASES[case]
    n = max(keys) + 40
    want = deforum(keys, n, method)
    got = ours(text_of(keys), n, method.lower())
    if method == "Linear":
        assert np.array_equal(got, want)  # the same np.interp, to the bit
    else:
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


def test_deforum_fallbacks_and_overshoot() -> None:
    four, three, two = "0:(0), 10:(1), 20:(0), 30:(1)", "0:(1), 20:(1.02), 40:(1)", "0:(0), 10:(1)"
    assert not np.array_equal(ours(four, 40, "cubic"), ours(four, 40, "quadratic"))
    assert np.array_equal(ours(three, 50, "cubic"), ours(three, 50, "quadratic"))  # <= 3 keys: Quadratic
    assert np.array_equal(ours(two, 20, "quadratic"), ours(two, 20, "linear"))  # <= 2 keys: Linear
    assert ours(three, 50, "cubic").min() < 1.0  # a spline overshoots: zoom dips below 1 (pchip would not)
    assert ours(three, 50, "pchip").min() == 1.0
    # keys outside the frames still count, as Deforum's len(key_frames) does
    past = ours("0:(0), 10:(1), 20:(0), 90:(1)", 40, "cubic")  # 4 keys: a cubic through frames 0, 10, 20, 39
    assert np.array_equal(past, ours("0:(0), 10:(1), 20:(0), 39:(0)", 40, "cubic"))
    assert not np.array_equal(past, ours("0:(0), 10:(1), 20:(0)", 40, "cubic"))
    assert {"linear", "quadratic", "cubic", "step", "ease-in-out", "pchip"} == set(INTERPOLATIONS)


def test_long_expression_runs_are_cut_out_of_the_spline_fit() -> None:
    """Placed values far from every gap are left out of the fit; the result does not change beyond rounding."""
    pytest.importorskip("scipy")
    keys = {0: "0", 5: ("sin(t/9)", lambda t: math.sin(t / 9)), 400: "2", 420: ("t/300", lambda t: t / 300), 900: "1"}
    for method in ("Quadratic", "Cubic"):
        want = deforum(keys, 950, method)
        np.testing.assert_allclose(ours(text_of(keys), 950, method.lower()), want, rtol=1e-13, atol=1e-13)


def test_values_signature_is_unchanged() -> None:
    params = inspect.signature(Schedule.values).parameters
    assert list(params) == ["self", "n_frames", "seed", "audio"]  # audio: the soundtrack's features (issue 19)
    assert params["seed"].kind is inspect.Parameter.KEYWORD_ONLY and params["seed"].default == 0
    assert params["audio"].kind is inspect.Parameter.KEYWORD_ONLY and params["audio"].default is None


# --------------------------------------------------------------------------------------------- properties
_EXPRESSIONS: list[tuple[str, Callable[[float], float]]] = [
    ("t/10", lambda t: t / 10),
    ("sin(t/4)", lambda t: math.sin(t / 4)),
    ("1e-1", lambda t: 0.1),
    ("(0.5 )", lambda t: 0.5),
    ("2*0.25", lambda t: 0.5),
]
_value = st.one_of(
    st.integers(-50, 50).map(str),
    st.decimals(-10, 10, places=3, allow_nan=False, allow_infinity=False).map(lambda d: f"{d:f}"),
    st.sampled_from(_EXPRESSIONS),
)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.integers(1, 70), _value, max_size=7).map(lambda d: {0: "0", **d}),
    st.integers(2, 60),
    st.sampled_from(["Linear", "Quadratic", "Cubic"]),
)
def test_any_keys_match_deforum(
    keys: dict[int, str | tuple[str, Callable[[float], float]]], n: int, method: str
) -> None:
    """Keys past the end included (the reference skips them but counts them for the fallbacks, as Deforum)."""
    if method != "Linear":
        pytest.importorskip("scipy")
    try:
        want = deforum(keys, n, method)
    except ValueError:  # scipy: fewer placed values than the spline needs; Deforum fails, discolib lowers the degree
        assume(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = ours(text_of(keys), n, method.lower())
    if method == "Linear":
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(want).max()))
