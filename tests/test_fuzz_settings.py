"""Fuzzing ``discolib validate``: any settings file and any ``--set`` either validates or is one error line.

Documents mix real field names (grouped and flat) with wrong types, huge and tiny numbers, deep nesting, odd
strings and keyframe-like strings; some are damaged as text afterwards (cut short, wrapped deeply, NaN). Each
example must end with exit status 0, or 2 with exactly one ``discolib: error:`` line on stderr (warnings, one line
each, may come before it). Any exception escaping ``cli.main`` is a bug and fails the test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discolib.cli import main
from discolib.config.settings import GROUPS, SettingsError, field_info, iter_fields, resolve_name

FIELDS = iter_fields()
NAMES = FIELDS + sorted({n.split(".", 1)[1] for n in FIELDS}) + ["stesp", "image.widht", "_about", "", "a.b.c"]

KEYFRAMES = [
    "0: (1.0), 10: (1.05)",
    "0:(sin(t/5))",
    "0: (0), max_f: (1)",
    "0: (1 + (2 * t)",
    "0:(sqrt(50 - t))",
    "0:(1), 0:(2)",
    "0: (atan2(t, 2)), 5: (min(t, 3))",
    "max_f/2: (3)",
    "-1: (2)",
    "0: (9**9**9**9)",
    "0: (" * 70 + "1" + ")" * 70,
    "[12]*400+[4]*600",
    "[1]*999999999999",
    "60%",
    "150%",
]
ODD = ["", " ", "\x00", "a\nb", "\r", "\u2028", "~nosuchuser_fz/x", "http://127.0.0.1:9/x.png", "é" * 3, "💥", "None",
       "2D", "3D", "Video Input", "guided", "ddim", "LAB", "NaN", "1e999", "--neg", "a:1e308", "x" * 3000]  # fmt: skip

numbers = st.one_of(
    st.integers(-3, 300),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, -1, 2**32, 10**400, 10_000_000, 1_000_000]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, 1.0000001]),
)
strings = st.one_of(st.sampled_from(KEYFRAMES), st.sampled_from(ODD), st.text(max_size=30))
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(strings, st.sampled_from(["0", "10", "max_f"])), inner, max_size=4)),
    max_leaves=12,
)


def _deep(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


deep_values = st.builds(_deep, st.sampled_from([10, 63, 64, 65, 200]), scalars)
prompt_dicts = st.dictionaries(
    st.one_of(st.sampled_from(["0", "10", "max_f", "max_f/2", "1.5", "-1"]), strings),
    st.one_of(strings, st.lists(st.one_of(strings, st.sampled_from(["a:1e308", "b:-1", "c:0", "d:2"])), max_size=3), values),
    max_size=3,
)


def typed_values(name: str) -> st.SearchStrategy[Any]:
    """Values of roughly the right type for field ``name`` (so validation gets past the type checks)."""
    info = field_info(name)
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "bool": st.booleans(),
        "int": numbers,
        "float": numbers,
        "choice": st.sampled_from(list(info.choices) or [None]),
        "list[str]": st.lists(strings, max_size=3),
        "list[float]": st.lists(numbers, max_size=3),
        "dict": prompt_dicts,
    }
    if info.type_name == "str":
        return st.sampled_from(KEYFRAMES) if info.kind in ("schedule", "cut_schedule", "steps_or_percent") else strings
    return by_type[info.type_name]


def _dotted(name: str) -> str | None:
    try:
        return ".".join(resolve_name(name))
    except SettingsError:
        return None


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A settings file as text: mostly well-formed JSON objects with a few right-, wrong- or oddly-typed fields."""
    doc: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(NAMES))
        kind = draw(st.sampled_from(["typed", "typed", "any", "deep"]))
        target = _dotted(name)
        if kind == "typed" and target is not None:
            value = draw(typed_values(target))
        else:
            value = draw(deep_values if kind == "deep" else values)
        if "." in name and name.split(".", 1)[0] in GROUPS and draw(st.booleans()):
            group, field = name.split(".", 1)
            sub = doc.setdefault(group, {})
            if isinstance(sub, dict):
                sub[field] = value
        else:
            doc[name] = value
    shape = draw(st.sampled_from(["object"] * 12 + ["list", "string", "number"]))
    top: Any = {"list": [doc], "string": "text", "number": 3}.get(shape, doc)
    text = json.dumps(top, allow_nan=True)
    damage = draw(st.sampled_from(["none"] * 12 + ["cut", "wrap", "nan", "huge-int"]))
    if damage == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif damage == "wrap":
        text = "[" * 100 + text + "]" * 100
    elif damage == "nan":
        text = text.replace("0", "NaN", 1)
    elif damage == "huge-int":
        text = text.replace("1", "1" * 5000, 1)
    return text


set_strings = st.one_of(
    st.sampled_from(FIELDS).flatmap(lambda n: typed_values(n).map(lambda v: f"{n}={json.dumps(v, allow_nan=True)}")),
    st.builds(lambda n, v: f"{n}={json.dumps(v, allow_nan=True)}", st.sampled_from(NAMES), st.one_of(values, deep_values)),
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(NAMES), strings),
    st.text(max_size=20),
)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents(), sets=st.lists(set_strings, max_size=2))
def test_validate_gives_ok_or_one_error_line(text: str, sets: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "s.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", path, *(f"--set={s}" for s in sets)])
    lines = err.getvalue().splitlines()
    assert code in (0, 2)
    warnings_ = [line for line in lines if line.startswith("discolib: warning: ")]
    errors = [line for line in lines if line.startswith("discolib: error: ")]
    assert len(warnings_) + len(errors) == len(lines), lines
    if code == 0:
        assert errors == [] and out.getvalue().startswith(f"{path}: ok (")
    else:
        assert len(errors) == 1 and lines[-1] == errors[0], lines
        assert len(errors[0]) < 2000
