"""The keyframe curve editor's model (discolib_widgets.curve): keys <-> keyframe strings, and the widget's traits.

Browser edits are simulated by calling the widget's custom-message handler with the content curve.js sends
(``_handle_custom_msg(content, buffers)`` is how ipywidgets hands an anywidget ``model.send`` to Python).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

pytest.importorskip("anywidget")

from hypothesis import given, settings
from hypothesis import strategies as st

from discolib.errors import InputError
from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import Schedule
from discolib_widgets.curve import CurveEditor, CurveKey, format_value, keys_from_text, text_from_keys
from discolib_widgets.fields import PLOT_POINTS


def _send(editor: CurveEditor, content: Any) -> None:
    """Deliver a message as anywidget does for ``model.send(content)`` in curve.js."""
    editor._handle_custom_msg(content, [])


def _drag(editor: CurveEditor, index: int, frame: int, value: float) -> None:
    """What curve.js sends while key ``index`` is dragged to (frame, value): every key, the moved one changed."""
    keys = []
    for i, k in enumerate(editor.keyframes):
        if not k["editable"]:
            keys.append({"frame": k["frame"], "expr": k["expr"], "key": k["key"]})
        elif i == index:
            keys.append({"frame": frame, "value": value})
        else:
            keys.append({"frame": k["frame"], "value": k["value"]})
    _send(editor, {"type": "keys", "keys": keys})


def _evaluated(text: str, n: int, interpolation: str = "linear") -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Schedule.parse(text, setting="animation.zoom", interpolation=interpolation).values(n)


# ------------------------------------------------------------------------------------------- keys <-> text
def test_keys_from_text_numbers_and_expressions() -> None:
    keys = keys_from_text("0: (1.0), 10: (1.5), 20: (1+0.1*sin(t/5))")
    assert keys == [
        CurveKey(0, 1.0, None),
        CurveKey(10, 1.5, None),
        CurveKey(20, None, "1+0.1*sin(t/5)"),
    ]
    assert [k.editable for k in keys] == [True, True, False]
    assert text_from_keys(keys) == "0: (1.0), 10: (1.5), 20: (1+0.1*sin(t/5))"


def test_expressions_kept_verbatim_and_read_only() -> None:
    # Deforum's rule: only a plain decimal is a number; these stay expressions, written back as they were.
    text = "0: ((1)), 3: (0.5 ), 5: (1e-3), 8: (1.0025+0.002*sin(1.25*3.14*t/30))"
    keys = keys_from_text(text)
    assert [k.expr for k in keys] == ["(1)", "0.5 ", "1e-3", "1.0025+0.002*sin(1.25*3.14*t/30)"]
    assert not any(k.editable for k in keys)
    assert text_from_keys(keys) == text
    assert keys_from_text("sin(t)") == [CurveKey(0, None, "sin(t)")]  # a bare expression means "0: (...)"


def test_max_f_keys_are_resolved_and_kept() -> None:
    keys = keys_from_text('0: (1), "max_f-1": (3)', max_frames=50)
    assert keys == [CurveKey(0, 1.0, None), CurveKey(48, 3.0, None, "max_f-1")]  # max_f = 49
    assert not keys[1].editable  # moving it would lose max_f
    assert text_from_keys(keys) == '0: (1), "max_f-1": (3)'  # the numbers as written


def test_duplicate_keys_last_wins_as_in_a_render() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keys = keys_from_text("0: (1), 10: (2), 10: (3)")
    assert keys == [CurveKey(0, 1.0, None), CurveKey(10, 3.0, None)]


def test_numbers_written_shortest_exact_and_as_numbers() -> None:
    assert format_value(1.025) == "1.025"
    assert format_value(1 / 3) == "0.3333333333333333"  # every digit the float needs: no 6-digit cap
    assert format_value(1e-7) == "0.0000001"  # positional: Deforum reads "1e-07" as an expression
    assert format_value(123456789.0) == "123456789.0"
    assert format_value(3141592653.0) == "3141592653.0"
    assert format_value(1e22) == "10000000000000000000000.0"
    assert format_value(-0.0) == "0.0"
    assert text_from_keys([CurveKey(10, 2.0, None), CurveKey(0, -0.5, None)]) == "0: (-0.5), 10: (2.0)"
    with pytest.raises(InputError):
        format_value(float("nan"))


def test_number_keys_keep_their_text_as_written() -> None:
    text = "0: (1.23456789), 10: (2), 20: (.50), 30: (1234567.5), 40: (-0.0)"
    keys = keys_from_text(text)
    assert [k.text for k in keys] == ["1.23456789", "2", ".50", "1234567.5", "-0.0"]
    assert text_from_keys(keys) == text
    assert keys[1] == CurveKey(10, 2.0, None)  # the text is notation, not part of the key's identity
    # A text that no longer reads as the value, or that Deforum would not read as a number, is not written.
    assert text_from_keys([CurveKey(0, 2.5, None, None, "2")]) == "0: (2.5)"
    assert text_from_keys([CurveKey(0, 10.0, None, None, "1_0")]) == "0: (10.0)"


def test_bad_text_raises_the_parsers_error() -> None:
    with pytest.raises(ScheduleError) as info:
        keys_from_text("0: (1), 10: (2", setting="animation.angle")
    assert isinstance(info.value, InputError)
    assert "animation.angle" in str(info.value) and "column" in str(info.value)


_values = st.builds(
    lambda m, e: float(f"{m}e{e}"), st.integers(-999_999, 999_999), st.integers(-9, 9)
)  # short values as a user types them
_exprs = st.sampled_from(["sin(t)", "1+0.1*sin(t/5)", "(1)", "1e-3", "max(t, 5)/10", "0.5 "])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(0, 5000), st.one_of(_values, _exprs), min_size=1, max_size=12))
def test_round_trip_property(entries: dict[int, float | str]) -> None:
    keys = [
        CurveKey(f, None, v) if isinstance(v, str) else CurveKey(f, v, None) for f, v in sorted(entries.items())
    ]
    text = text_from_keys(keys)
    assert keys_from_text(text) == keys
    assert text_from_keys(keys_from_text(text)) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=8))
def test_any_float_is_written_exactly(values: list[float]) -> None:
    keys = [CurveKey(10 * i, v, None) for i, v in enumerate(values)]
    text = text_from_keys(keys)
    assert "e" not in text and "(-0.0)" not in text  # positional (Deforum reads 1e-07 as an expression)
    back = keys_from_text(text)
    assert [k.frame for k in back] == [k.frame for k in keys] and all(k.editable for k in back)
    assert [b.value for b in back] == [k.value for k in keys]  # the same floats, bit for bit


# ------------------------------------------------------------------------------------------- the widget
def test_text_sets_keys_and_curve() -> None:
    editor = CurveEditor("0: (1.0), 10: (1.5)", max_frames=20)
    assert editor.error == ""
    assert editor.keyframes == [
        {"frame": 0, "value": 1.0, "expr": None, "key": None, "editable": True},
        {"frame": 10, "value": 1.5, "expr": None, "key": None, "editable": True},
    ]
    assert [f for f, _ in editor.curve] == list(range(20))
    np.testing.assert_array_equal([v for _, v in editor.curve], _evaluated("0: (1.0), 10: (1.5)", 20))

    editor.text = "0: (0), 5: (1.0+t/10)"
    assert [k["frame"] for k in editor.keyframes] == [0, 5]
    assert editor.keyframes[1]["editable"] is False and editor.keyframes[1]["expr"] == "1.0+t/10"
    np.testing.assert_array_equal([v for _, v in editor.curve], _evaluated("0: (0), 5: (1.0+t/10)", 20))


def test_curve_is_discolibs_evaluation_sampled_for_long_runs() -> None:
    text = "0: (1), 777: (3), 300000: (0.5)"
    editor = CurveEditor(text, max_frames=500_000, interpolation="cubic")
    frames = np.array([f for f, _ in editor.curve])
    assert len(frames) <= PLOT_POINTS and frames[0] == 0 and frames[-1] == 499_999
    assert {777, 300_000} <= set(frames.tolist())  # keys are drawn where they are
    np.testing.assert_array_equal([v for _, v in editor.curve], _evaluated(text, 500_000, "cubic")[frames])


def test_interpolation_changes_the_curve() -> None:
    text = "0: (0), 10: (1), 20: (0), 30: (1)"
    editor = CurveEditor(text, max_frames=31)
    linear = [v for _, v in editor.curve]
    editor.interpolation = "cubic"
    cubic = [v for _, v in editor.curve]
    assert cubic != linear
    np.testing.assert_array_equal(cubic, _evaluated(text, 31, "cubic"))
    assert editor.text == text  # the string is not touched
    _send(editor, {"type": "interpolation", "value": "step"})
    assert editor.interpolation == "step"
    np.testing.assert_array_equal([v for _, v in editor.curve], _evaluated(text, 31, "step"))
    editor.interpolation = "wobbly"
    assert "unknown interpolation" in editor.error and [v for _, v in editor.curve] == _evaluated(text, 31, "step").tolist()


def test_max_frames_changes_the_curve() -> None:
    editor = CurveEditor('0: (1), "max_f": (2)', max_frames=10)
    assert editor.keyframes[1]["frame"] == 9 and len(editor.curve) == 10
    editor.max_frames = 40
    assert editor.keyframes[1]["frame"] == 39 and len(editor.curve) == 40
    editor.max_frames = 0
    assert "n_frames" in editor.error and len(editor.curve) == 40


def test_invalid_text_sets_error_and_keeps_keys() -> None:
    editor = CurveEditor("0: (1.0), 10: (1.5)", setting="animation.angle", max_frames=20)
    keys, curve = editor.keyframes, editor.curve
    editor.text = "0: (1.0), 10: (1.5"
    assert editor.error.startswith("animation.angle: column ")
    assert editor.keyframes == keys and editor.curve == curve
    editor.text = "0: (1.0), 10: (__import__('os'))"
    assert "animation.angle" in editor.error and editor.keyframes == keys
    editor.text = "0: (2)"
    assert editor.error == "" and editor.keyframes[0]["value"] == 2.0


def test_invalid_first_text_and_recovery() -> None:
    editor = CurveEditor("0: (1", max_frames=10)
    assert editor.error.startswith("animation.zoom: column ") and editor.keyframes == [] and editor.curve == []
    _send(editor, {"type": "keys", "keys": [{"frame": 0, "value": 1.0}, {"frame": 0, "value": 2.0}]})
    assert "two keys" in editor.error and editor.text == "0: (1"
    _send(editor, {"type": "keys", "keys": [{"frame": 0, "value": 1.0}]})  # an edit replaces the bad text
    assert editor.text == "0: (1.0)" and editor.error == "" and len(editor.curve) == 10
    _send(editor, {"type": "nonsense"})
    _send(editor, {"type": "keys", "keys": [{"frame": 0, "value": 1.0}]})  # same text: the error still clears
    assert editor.error == ""


def test_drag_message_rewrites_text() -> None:
    editor = CurveEditor("0: (1.0), 10: (1.5), 20: (1.0)", max_frames=30)
    _drag(editor, 1, 12, 2.25)
    assert editor.text == "0: (1.0), 12: (2.25), 20: (1.0)"
    assert editor.keyframes[1] == {"frame": 12, "value": 2.25, "expr": None, "key": None, "editable": True}
    np.testing.assert_array_equal([v for _, v in editor.curve], _evaluated(editor.text, 30))
    _drag(editor, 1, 13, 1.025)  # the value as curve.js rounds it to the pixel step
    assert editor.text == "0: (1.0), 13: (1.025), 20: (1.0)"
    _drag(editor, 1, 13, 1.0250000000000001)  # a value the browser sends is written exactly, not rounded
    assert editor.text == "0: (1.0), 13: (1.0250000000000001), 20: (1.0)"
    assert keys_from_text(editor.text)[1].value == 1.0250000000000001
    assert editor.error == ""


def test_drag_keeps_the_other_keys_text_byte_for_byte() -> None:
    start = "0: (1.23456789), 10: (2), 30: (1234567.5), 40: (.50), 50: (1+t/10)"
    editor = CurveEditor(start, max_frames=60)
    _drag(editor, 1, 10, 2.5)
    assert editor.text == "0: (1.23456789), 10: (2.5), 30: (1234567.5), 40: (.50), 50: (1+t/10)"
    _drag(editor, 2, 31, 1234567.5)  # moved in frame only: a moved key is written anew
    assert editor.text == "0: (1.23456789), 10: (2.5), 31: (1234567.5), 40: (.50), 50: (1+t/10)"
    keys = [{"frame": k["frame"], "value": k["value"]} for k in editor.keyframes if k["editable"]]
    _send(editor, {"type": "keys", "keys": [*keys, {"frame": 45, "value": 0.125}, editor.keyframes[4]]})
    assert editor.text == "0: (1.23456789), 10: (2.5), 31: (1234567.5), 40: (.50), 45: (0.125), 50: (1+t/10)"
    assert editor.error == ""


def test_a_ten_digit_seed_survives_an_unrelated_edit() -> None:
    editor = CurveEditor("0: (3141592653), 10: (4294967295)", setting="animation.seed_schedule", max_frames=20)
    assert editor.error == ""
    _send(editor, {"type": "keys", "keys": [*editor.keyframes[:2], {"frame": 15, "value": 7.0}]})
    assert editor.text == "0: (3141592653), 10: (4294967295), 15: (7.0)"
    _drag(editor, 2, 16, 12345678901.0)  # a seed typed or dragged anew keeps every digit too
    assert editor.text == "0: (3141592653), 10: (4294967295), 16: (12345678901.0)"


def test_a_message_equal_to_the_keys_changes_nothing() -> None:
    editor = CurveEditor("0: (1), 10: (2), 10: (3)", max_frames=20)  # a duplicate key: the string is not canonical
    texts: list[str] = []
    editor.observe(lambda change: texts.append(change["new"]), names="text")
    evaluations: list[str] = []
    real = editor._evaluate
    editor._evaluate = lambda text: (evaluations.append(text), real(text))[1]  # type: ignore[method-assign]
    for _ in range(3):  # a release where the last drag message went, or a drag that ended where it began
        _send(editor, {"type": "keys", "keys": [{"frame": k["frame"], "value": k["value"]} for k in editor.keyframes]})
    assert texts == [] and evaluations == [] and editor.text == "0: (1), 10: (2), 10: (3)" and editor.error == ""
    _drag(editor, 1, 10, 4.0)
    assert texts == ["0: (1), 10: (4.0)"] and editor.error == ""


def test_drag_keeps_expression_keys() -> None:
    editor = CurveEditor("0: (1.0), 10: (1+0.1*sin(t/5)), 20: (2)", max_frames=30)
    _drag(editor, 2, 25, 3.5)
    assert editor.text == "0: (1.0), 10: (1+0.1*sin(t/5)), 25: (3.5)"


def test_read_only_keys_cannot_be_changed_by_a_message() -> None:
    editor = CurveEditor("0: (1.0), 10: (1+0.1*sin(t/5))", max_frames=30)
    before = editor.text
    msgs: list[Any] = []
    editor.send = lambda content, buffers=None: msgs.append(content)  # type: ignore[method-assign]
    _send(editor, {"type": "keys", "keys": [{"frame": 0, "value": 1.0}, {"frame": 12, "expr": "1+0.1*sin(t/5)"}]})
    assert "read-only" in editor.error and editor.text == before
    assert msgs == [{"type": "reset"}]  # the browser redraws the last good keys
    _send(editor, {"type": "keys", "keys": [{"frame": 0, "value": 1.0}, {"frame": 10, "expr": "t"}]})
    assert "read-only" in editor.error and editor.text == before


def test_add_and_delete_keys() -> None:
    editor = CurveEditor("0: (1.0), 20: (2.0)", max_frames=30)
    keys = [{"frame": 0, "value": 1.0}, {"frame": 10, "value": 1.5}, {"frame": 20, "value": 2.0}]
    _send(editor, {"type": "keys", "keys": keys})  # a double-click at frame 10 adds the curve's value there
    assert editor.text == "0: (1.0), 10: (1.5), 20: (2.0)"
    assert [k["frame"] for k in editor.keyframes] == [0, 10, 20]
    _send(editor, {"type": "keys", "keys": [keys[0], keys[2]]})  # Delete on the selected key
    assert editor.text == "0: (1.0), 20: (2.0)"
    _send(editor, {"type": "keys", "keys": [keys[0]]})
    assert editor.text == "0: (1.0)" and editor.error == ""
    _send(editor, {"type": "keys", "keys": []})  # never the last key
    assert editor.text == "0: (1.0)" and "non-empty" in editor.error


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"type": "keys", "keys": [{"frame": 0, "value": 1}, {"frame": 0, "value": 2}]}, "two keys on one frame"),
        ({"type": "keys", "keys": [{"frame": -1, "value": 1}]}, "whole frame"),
        ({"type": "keys", "keys": [{"frame": 2.5, "value": 1}]}, "whole frame"),
        ({"type": "keys", "keys": [{"frame": True, "value": 1}]}, "whole frame"),
        ({"type": "keys", "keys": [{"frame": 0, "value": "1; import os"}]}, "finite number"),
        ({"type": "keys", "keys": [{"frame": 0, "value": float("inf")}]}, "finite number"),
        ({"type": "keys", "keys": [{"frame": 0, "value": 1e308}, {"frame": 1, "value": -1e308}]}, ""),
        ({"type": "keys", "keys": "0: (1)"}, "non-empty list"),
        ({"type": "keys", "keys": [[0, 1]]}, "expected an object"),
        ({"type": "nonsense"}, "unknown message type"),
        ("text", "message object"),
    ],
)
def test_bad_messages_set_error_and_never_raise(content: Any, message: str) -> None:
    editor = CurveEditor("0: (1.0), 10: (2.0)", max_frames=20)
    keys, text = editor.keyframes, editor.text
    _send(editor, content)
    if message:
        assert message in editor.error
        assert editor.keyframes == keys and editor.text == text
    else:  # a valid edit
        assert editor.error == "" and editor.text == "0: (" + format_value(1e308) + "), 1: (" + format_value(-1e308) + ")"


def test_editor_statics_ship_with_the_package() -> None:
    from discolib_widgets import curve

    js = (curve._STATIC / "curve.js").read_text()
    assert "export default" in js and "import " not in js.split("export default")[0].split("\n", 5)[-1]
    assert "http://" not in js.replace("http://www.w3.org/2000/svg", "") and "https://" not in js  # works offline
    assert (curve._STATIC / "curve.css").is_file()
    editor = CurveEditor()
    assert editor.text == "0: (0)" and editor.interpolations[0] == "linear" and "pchip" in editor.interpolations
    # Each render draws with its own clip id: anywidget loads the module once per widget model, so a counter
    # restarts and two editors would share `url(#dc-curve-1-clip)` (the browser test checks two editors).
    assert "++uid" not in js and "randomUUID" in js
    assert "change:show_interpolation" in js and 'get("show_interpolation")' in js


def test_every_trait_reaches_the_browser() -> None:
    # ipywidgets syncs the traits named in Widget.keys; a trait called "keys" would replace that list and the
    # browser would get no state at all ("Failed to load model class 'undefined'").
    editor = CurveEditor("0: (1.0), 10: (1.5)", max_frames=20)
    state = editor.get_state()
    for name in ("text", "setting", "max_frames", "interpolation", "keyframes", "curve", "error", "_esm", "_css"):
        assert name in state, name
    assert state["show_interpolation"] is True and state["show_text"] is True
    hidden = CurveEditor("0: (1.0)", show_text=False, show_interpolation=False)
    assert hidden.get_state()["show_interpolation"] is False
    hidden.interpolation = "cubic"  # still settable from Python (the panel's own control sets it)
    assert hidden.interpolation == "cubic" and hidden.error == ""
    assert state["_model_name"] == "AnyModel" and state["text"] == "0: (1.0), 10: (1.5)"
    assert [k["frame"] for k in state["keyframes"]] == [0, 10] and len(state["curve"]) == 20
