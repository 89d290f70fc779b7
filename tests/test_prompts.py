"""Prompt schedules: Disco weighted lists, Deforum --neg, keys, forward fill, errors, JSON round trip."""

from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discolib.schedules.expr import ScheduleError
from discolib.schedules.prompts import (
    FramePrompts,
    PromptError,
    PromptSchedule,
    WeightedPrompt,
    split_weight,
    split_weighted_subprompts,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://x.org/a.png", ("https://x.org/a.png", 1.0)),
        ("https://x.org:8080", ("https://x.org:8080", 1.0)),
        ("https://x.org/a.png:3", ("https://x.org/a.png", 3.0)),
        ("a castle: at dusk", ("a castle: at dusk", 1.0)),
        ("castle:2", ("castle", 2.0)),
        ("fog:-0.5", ("fog", -0.5)),
        ("x: 1.5", ("x", 1.5)),
        ("y:1e-1", ("y", 0.1)),
        ("z:.5 ", ("z", 0.5)),
        ("time 12:30:2", ("time 12:30", 2.0)),
        ("  plain prompt  ", ("plain prompt", 1.0)),
        ("trailing colon:", ("trailing colon:", 1.0)),
        ("not:inf", ("not:inf", 1.0)),
    ],
)
def test_split_weight(text: str, expected: tuple[str, float]) -> None:
    assert split_weight(text) == expected


def test_weighted_prompt_round_trip() -> None:
    for prompt in [WeightedPrompt("castle", 2.0), WeightedPrompt("fog", -0.5), WeightedPrompt("x:5", 1.0),
                   WeightedPrompt("a castle: at dusk", 1.0), WeightedPrompt("y", 1e-7)]:  # fmt: skip
        assert WeightedPrompt.parse(prompt.to_str()) == prompt
    assert WeightedPrompt("castle", 2.0).to_str() == "castle:2"


DISCO = {
    0: ["A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood:2",
        "yellow color scheme:1", "blurry:-0.5"],
    100: ["This set of prompts start at frame 100", "This prompt has weight five:5"],
}  # fmt: skip


def test_from_disco() -> None:
    ps = PromptSchedule.from_disco(DISCO)
    fp = ps.at(0)
    assert fp.texts[1] == "yellow color scheme"
    assert fp.weights == [2.0, 1.0, -0.5]
    assert fp.normalized_weights == pytest.approx([2 / 2.5, 1 / 2.5, -0.5 / 2.5])
    assert fp.negative == []
    assert ps.at(99) == fp  # forward fill
    assert ps.at(100).weights == [1.0, 5.0] and ps.at(5000).texts[0] == "This set of prompts start at frame 100"
    assert ps.changes(200) == [0, 100]
    assert ps.changes(50) == [0]  # keys past the end are not changes


def test_string_keys_bare_strings_and_late_first_key() -> None:
    ps = PromptSchedule.from_disco({"10": "a castle:2", "20": ["a ruin", "fog:-0.5"]})
    assert ps.at(0) == FramePrompts([WeightedPrompt("a castle", 2.0)])  # before the first key, it holds
    assert ps.at(15).texts == ["a castle"] and ps.at(20).weights == [1.0, -0.5]
    assert ps.changes(30) == [0, 20]


def test_max_f_keys() -> None:
    ps = PromptSchedule.from_any({"0": "start", "max_f/2": "middle", "max_f": "end"})
    assert ps.at(5, n_frames=11).texts == ["middle"]
    assert ps.at(4, n_frames=10).texts == ["middle"]  # floor(9/2) = 4
    assert ps.at(10, n_frames=11).texts == ["end"]
    assert ps.changes(11) == [0, 5, 10]
    with pytest.raises(PromptError, match=r"key 'max_f/2' uses max_f: pass n_frames"):
        ps.at(3)


def test_from_deforum_neg() -> None:
    ps = PromptSchedule.from_deforum(
        {"0": "a castle on a hill, matte painting --neg blurry, ugly", "30": "a ruin:1.5 --neg fog:2", "60": "sea"}
    )
    fp = ps.at(10)
    assert fp.texts == ["a castle on a hill, matte painting"] and fp.negative_texts == ["blurry, ugly"]
    assert ps.at(30).weights == [1.5] and ps.at(30).negative == [WeightedPrompt("fog", 2.0)]
    assert ps.at(60).negative == []
    assert ps.changes(100) == [0, 30, 60]
    assert ps.to_json() == {
        "0": "a castle on a hill, matte painting --neg blurry, ugly",
        "30": "a ruin:1.5 --neg fog:2",
        "60": "sea",
    }


def test_from_any_shapes() -> None:
    assert PromptSchedule.from_any("a castle").at(0).texts == ["a castle"]
    assert PromptSchedule.from_any(["a", "b:2"]).at(7).weights == [1.0, 2.0]
    assert PromptSchedule.from_any("a --neg b").at(0).negative_texts == ["b"]
    assert PromptSchedule.from_any('{"0": "a --neg b", "5": ["c:3"]}').at(6).weights == [3.0]
    assert PromptSchedule.from_any(DISCO) == PromptSchedule.from_disco(DISCO)
    mixed = PromptSchedule.from_any({0: ["a", "--neg b"], 3: "c --neg d"})
    assert mixed.at(0).negative_texts == ["b"] and mixed.at(3).negative_texts == ["d"]
    ps = PromptSchedule.from_any("x")
    assert PromptSchedule.from_any(ps) is ps


@pytest.mark.parametrize(
    "source",
    [
        DISCO,
        {"0": "a castle --neg blurry, ugly", "30": "a ruin"},
        {0: ["a:1e-07", "b: at dusk", "x:5:1"], "max_f - 3": ["c", "--neg d:0.5"]},
    ],
)
def test_to_json_round_trip(source: dict[object, object]) -> None:
    ps = PromptSchedule.from_any(source)
    data = ps.to_json()
    assert json.loads(json.dumps(data)) == data
    back = PromptSchedule.from_any(data)
    assert back == ps and back.to_json() == data


def test_duplicate_keys_warn() -> None:
    with pytest.warns(UserWarning, match=r"^text_prompts: duplicate key '0' \(frame 0\)"):
        ps = PromptSchedule.from_any({0: "a", "0": "b"}, setting="text_prompts")
    assert ps.at(0).texts == ["b"]
    ps = PromptSchedule.from_any({"9": "a", "max_f": "b"}, setting="text_prompts")
    with pytest.warns(UserWarning, match="duplicate key 'max_f' \\(frame 9\\)"):
        assert ps.at(9, n_frames=10).texts == ["b"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({}, "text_prompts: no prompts (expected e.g. {0: ['a castle']})"),
        ([], "text_prompts: no prompts (expected e.g. ['a castle'])"),
        ({0: ["castle:1", "fog:-1"]}, "text_prompts: prompts at frame 0: weights sum to zero (castle:1, fog:-1)"),
        ({5: ["a:0.5", "b:-0.25", "c:-0.25"]},
         "text_prompts: prompts at frame 5: weights sum to zero (a:0.5, b:-0.25, c:-0.25)"),
        ({"max_f": "a:0"}, "text_prompts: prompts at key 'max_f': weights sum to zero (a:0)"),
        ({0: ["a", ""]}, "text_prompts: prompts at frame 0, prompt 2: empty prompt text"),
        ({0: [":2"]}, "text_prompts: prompts at frame 0, prompt 1: empty prompt text"),
        ({0: "  --neg ugly"}, "text_prompts: prompts at frame 0, prompt 1: empty prompt text"),
        ({0: ["a", "--neg"]}, "text_prompts: prompts at frame 0, negative prompt 2: empty prompt text"),
        ({0: ["--neg ugly"]}, "text_prompts: prompts at frame 0: no positive prompt (expected at least one)"),
        ({0: "x:1e999"}, "text_prompts: prompts at frame 0, prompt 1: weight is not a finite number ('x:1e999')"),
        ({0: ["a", 3]}, "text_prompts: prompts at frame 0, prompt 2: expected a string, found int"),
        ({0: None}, "text_prompts: prompts at frame 0: expected a list of prompts or a string, found NoneType"),
        ({"1.5": "a"}, "text_prompts: key '1.5' (column 1): expected a whole frame number as key, found 1.5"),
        ({1.5: "a"}, "text_prompts: key 1.5: expected an integer frame or a max_f expression"),
        ({"-1": "a"}, "text_prompts: key '-1' (column 1): frame key -1 is out of range (keys must be 0 to 10000000)"),
        ({"ten": "a"}, "text_prompts: key 'ten' (column 1): unknown name 'ten' (expected a number, one of e, max_f, "
                       "pi or a function such as sin(...))"),
        ({"max_f/(2": "a"}, "text_prompts: key 'max_f/(2' (column 9): expected ')' to close '(' at column 7, found "
                            "the end of the text"),
        ({"t": "a"}, "text_prompts: key 't' (column 1): 't' cannot be used in a frame key (only max_f)"),
        (3.5, "text_prompts: expected a dict of {frame: prompts}, a list of prompts or a string, found float"),
    ],
)  # fmt: skip
def test_prompt_errors(source: object, message: str) -> None:
    with pytest.raises(PromptError) as info:
        PromptSchedule.from_any(source, setting="text_prompts")
    assert str(info.value) == message
    assert isinstance(info.value, (ScheduleError, ValueError))


def test_strict_constructors_reject_other_shapes() -> None:
    with pytest.raises(PromptError, match="expected a dict of {frame: prompts}, found list"):
        PromptSchedule.from_disco(["a"])  # type: ignore[arg-type]
    with pytest.raises(PromptError, match="frame must be an integer >= 0"):
        PromptSchedule.from_any("a").at(-1)


def test_negative_weights_allowed_and_float_keys() -> None:
    ps = PromptSchedule.from_any({0.0: ["a:3", "b:-1"]})
    assert ps.at(0).weights == [3.0, -1.0]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.one_of(st.integers(-5, 100), st.text(max_size=8)),
                       st.one_of(st.text(max_size=20), st.lists(st.text(max_size=12), max_size=3)), max_size=4))  # fmt: skip
def test_any_mapping_gives_schedule_or_prompt_error(mapping: dict[object, object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ps = PromptSchedule.from_any(mapping)
        except PromptError:
            return
        n = 20
        frames = ps.changes(n)
        assert frames[0] == 0 and frames == sorted(set(frames))
        for f in range(n):
            fp = ps.at(f, n_frames=n)
            assert fp.positive and all(p.text for p in fp.positive)
        assert PromptSchedule.from_any(ps.to_json()) == ps


def test_weights_whose_sum_overflows_name_the_prompt_and_frame() -> None:
    with pytest.raises(PromptError) as info:
        PromptSchedule.from_any({"0": ["a"], "12": ["a castle:1e308", "fog:1e308"]}, setting="prompts.text_prompts")
    assert str(info.value) == (
        "prompts.text_prompts: prompts at frame 12, prompt 2: weight 1e+308 makes the sum of the weights overflow "
        "('fog:1e+308'); expected weights whose sum is a finite number"
    )
    # Huge weights that cancel exactly are numerically a zero sum, not an OverflowError.
    with pytest.raises(PromptError, match="weights sum to zero"):
        PromptSchedule.from_any({0: ["a:1e308", "b:-1e308", "c:1"]})


def test_long_texts_parse_in_linear_time() -> None:
    """The weight and --neg patterns used to backtrack quadratically (a 50 000-digit run took minutes)."""
    import time

    start = time.perf_counter()
    assert split_weight("a:" + "1" * 200_000 + "x") == ("a:" + "1" * 200_000 + "x", 1.0)
    assert split_weight("a: " + "2" * 200 + " ")[1] == float("2" * 200)
    ps = PromptSchedule.from_any({0: " " * 200_000 + "castle --neg fog"})
    assert ps.at(0).texts == ["castle"] and ps.at(0).negative_texts == ["fog"]
    assert time.perf_counter() - start < 2.0


def test_json_text_nested_too_deeply_is_a_prompt_error() -> None:
    with pytest.raises(PromptError, match=r"^text_prompts: JSON nested deeper than 64 levels$"):
        PromptSchedule.from_any("{" + '"0": ' + "[" * 5000 + "]" * 5000 + "}", setting="text_prompts")


# ------------------------------------------------------------------------------------ Deforum weighted sub-prompts


def _deforum_reference(text: str, t: int = 0) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """deforum-stable-diffusion's split_weighted_subprompts (skip_normalize), re-derived as a character scanner:
    a sub-prompt runs to the next unescaped ':', any run of ':' follows, then an optional weight (-?digits[.digits]
    or a `backtick expression`, here only `t/10` style: evaluated by Python on t), then spaces. Weight < 0: negative
    with -w; 0: dropped."""
    pos: list[tuple[str, float]] = []
    neg: list[tuple[str, float]] = []
    i, n = 0, len(text)
    while i < n:
        j = i
        buf = ""
        while j < n and text[j] != ":":
            if text.startswith("\\:", j):
                buf += ":"
                j += 2
            else:
                buf += text[j]
                j += 1
        w = 1.0
        if j < n:  # at ':'
            while j < n and text[j] == ":":
                j += 1
            k = j
            if k < n and text[k] == "`":
                end = text.index("`", k + 1)
                expr = text[k + 1 : end]
                w = float({"t/10": t / 10, "1-t/5": 1 - t / 5}[expr]) if len(expr) >= 1 else 1.0
                j = end + 1
            else:
                if k < n and text[k] == "-":
                    k += 1
                d = k
                while d < n and text[d].isdigit():
                    d += 1
                if d > k:
                    if d + 1 < n and text[d] == "." and text[d + 1].isdigit():
                        d += 1
                        while d < n and text[d].isdigit():
                            d += 1
                    w = float(text[j:d])
                    j = d
            while j < n and text[j].isspace():
                j += 1
        if w > 0:
            pos.append((buf.strip(), w))
        elif w < 0:
            neg.append((buf.strip(), -w))
        i = j
    return pos, neg


@pytest.mark.parametrize(
    "text",
    [
        "a castle:2 fog:-0.5",
        "a castle",
        "bacon:0.75 eggs:0.25",
        "a:: b:3.5 c",
        "ratio 16\\:9 poster:1.5 ugly:-1",
        "zero:0 one:1",
        "sea:1 a castle:`t/10` fog:-0.5",
        "dusk:`1-t/5` sea:1",
    ],
)
@pytest.mark.parametrize("frame", [0, 3, 8])
def test_deforum_weighted_subprompts_match_the_original(text: str, frame: int) -> None:
    pos, neg = _deforum_reference(text, frame)
    ps = PromptSchedule.from_any({"0": split_weighted_subprompts(text)})
    fp = ps.at(frame, 10)

    def close(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
        return [t for t, _ in a] == [t for t, _ in b] and all(abs(x - y) < 1e-12 for (_, x), (_, y) in zip(a, b, strict=True))

    assert close([(p.text, p.weight) for p in fp.positive], pos)
    assert close(sorted((p.text, p.weight) for p in fp.negative), sorted(neg))


def test_deforum_issue_example_and_backtick_items() -> None:
    assert split_weighted_subprompts("a castle:2 fog:-0.5") == ["a castle:2", "--neg fog:0.5"]
    assert split_weighted_subprompts("a castle:`t/10`") == ["a castle:`t/10`"]
    ps = PromptSchedule.from_any({"0": ["a castle:`1 + t/10`", "fog:`t - 2`"]})
    assert [(p.text, p.weight) for p in ps.at(4, 10).positive] == [("a castle", 1.4), ("fog", 2.0)]
    assert ps.at(1, 10).negative == [WeightedPrompt("fog", 1.0)]  # negative weight: a negative prompt
    assert ps.at(2, 10).texts == ["a castle"]  # weight 0 leaves it out
    assert ps.changes(5) == [0, 1, 2, 3, 4]
    assert ps.to_json() == {"0": ["a castle:`1 + t/10`", "fog:`t - 2`"]}


def test_backtick_weights_use_the_safe_evaluator() -> None:
    with pytest.raises(PromptError, match="weight"):
        PromptSchedule.from_any({"0": ["a:`__import__('os')`"]})
    with pytest.raises(PromptError, match="max_f"):
        PromptSchedule.from_any({"0": ["a:`max_f/2`"]}).at(0)
    assert PromptSchedule.from_any({"0": ["a:`max_f/2`"]}).at(0, 11).weights == [5.0]
    with pytest.raises(PromptError, match="frame 3"):
        PromptSchedule.from_any({"0": ["a:`1/(t-3)`", "b"]}).at(3, 10)
    with pytest.raises(PromptError, match="positive weight"):
        PromptSchedule.from_any({"0": ["a:`-1`"]}).at(0, 10)
