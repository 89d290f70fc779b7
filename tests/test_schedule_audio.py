"""Soundtrack functions in keyframe strings and keys (issue 19), on a hand-made AudioSource: the parser and the
evaluator's side. The real features (librosa) are tested in test_audio.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discolib.config.settings import Settings, SettingsError
from discolib.schedules.expr import ScheduleError
from discolib.schedules.keyframes import (
    Schedule,
    StringSchedule,
    export_keyframes,
    parse_frame_key,
    validate_schedule,
)
from discolib.schedules.prompts import PromptSchedule

N = 40


class FakeAudio:
    """Features on a 40-frame grid: bass ramps 0 -> 1, beats on frames 4, 14, 24, 34 (every 10 frames)."""

    key = "fake-song"

    def __init__(self, beats: tuple[int, ...] = (4, 14, 24, 34), fps: float = 10.0) -> None:
        self.beats = np.asarray(beats)
        self.fps = fps
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.bass = np.linspace(0.0, 1.0, N)

    def sample(self, name: str, t: Any, *args: Any) -> np.ndarray:
        self.calls.append((name, args))
        t = np.asarray(t, dtype=np.float64)
        if name in ("bass", "rms", "onset", "mid", "treble"):
            inside = (t >= 0) & (t <= N - 1)
            return np.where(inside, np.interp(t, np.arange(N), self.bass), 0.0)
        if name == "band":
            lo, hi = (float(np.unique(a)[0]) for a in args)
            if not 0 <= lo < hi:
                raise ValueError(f"expected 0 <= lo < hi, found {lo:g} and {hi:g}")
            return np.full(t.shape, hi / 1000.0)
        if name in ("beat", "bar"):
            decay = float(args[0]) if args else 0.25
            if decay <= 0:
                raise ValueError("the decay must be > 0 seconds")
            idx = np.searchsorted(self.beats, t, side="right") - 1
            last = np.where(idx >= 0, self.beats[np.maximum(idx, 0)], -1)
            pulse = np.maximum(0.0, 1.0 - (t - last) / (decay * self.fps))
            return np.where(idx >= 0, pulse, 0.0)
        raise AssertionError(name)

    def beat_frame(self, n: int) -> int:
        if n < 1:
            raise ValueError("beats are counted from 1")
        return int(self.beats[0] + 10 * (n - 1))

    def bar_frame(self, n: int) -> int:
        return self.beat_frame(4 * n - 3)


AUDIO = FakeAudio()


def test_audio_functions_read_the_source_at_each_frame() -> None:
    sched = Schedule.parse("0: (1.0 + 0.04*bass(t))", setting="animation.zoom")
    assert sched.uses_audio and sched.uses_t and not sched.is_constant
    np.testing.assert_allclose(sched.values(N, audio=AUDIO), 1.0 + 0.04 * AUDIO.bass)
    # a bare feature name is name(t)
    np.testing.assert_array_equal(Schedule.parse("0: (1 + 0.04*bass)").values(N, audio=AUDIO), sched.values(N, audio=AUDIO))
    # a shifted read: bass two frames earlier, 0 before the song
    shifted = Schedule.parse("0: (bass(t-2))").values(N, audio=AUDIO)
    np.testing.assert_allclose(shifted[2:], AUDIO.bass[:-2])
    assert shifted[0] == 0 and shifted[1] == 0


def test_beat_pulse_with_its_decay_and_a_kick() -> None:
    values = Schedule.parse("0: (10*beat(t, 0.2))", setting="animation.translation_x").values(N, audio=AUDIO)
    expected = np.zeros(N)
    for b in AUDIO.beats:
        expected[b], expected[b + 1] = 10.0, 5.0  # 0.2 s at 10 fps: 1 on the beat, 0.5 one frame later, then 0
    np.testing.assert_allclose(values, expected, atol=1e-12)


def test_band_takes_constant_frequencies_and_bad_ones_name_the_column() -> None:
    np.testing.assert_allclose(Schedule.parse("0: (band(t, 200, 2000))").values(N, audio=AUDIO), 2.0)
    with pytest.raises(ScheduleError) as err:
        Schedule.parse("0: (1 + band(t, 2000, 200))", setting="animation.zoom").values(N, audio=AUDIO)
    assert err.value.column == 9 and "band()" in str(err.value) and "animation.zoom" in str(err.value)
    with pytest.raises(ScheduleError, match=r"band\(\) takes exactly 3 arguments"):
        Schedule.parse("0: (band(t, 200))")
    with pytest.raises(ScheduleError, match=r"beat\(\) takes 1 or 2 arguments"):
        Schedule.parse("0: (beat(t, 1, 2))")


def test_without_a_soundtrack_the_error_names_the_setting_and_the_function() -> None:
    sched = Schedule.parse("0: (1), 10: (1 + 0.04*bass(t))", setting="animation.zoom")
    with pytest.raises(ScheduleError) as err:
        sched.values(N)
    text = str(err.value)
    assert text == "animation.zoom: column 23: bass() reads the soundtrack, but there is none: set output.soundtrack"
    with pytest.raises(ScheduleError, match="beat_frame"):
        Schedule.parse("0: (1), beat_frame(2): (2)", setting="animation.zoom").values(N)
    Schedule.parse("0: (1)").require_audio(None)  # nothing to require
    with pytest.raises(ScheduleError, match="column 18: bass"):
        Schedule.parse("0: (1), 10: (1 + bass)").require_audio(None)


def test_audio_functions_are_refused_where_they_mean_nothing() -> None:
    with pytest.raises(ScheduleError, match="'bass' cannot be used in a frame key"):
        parse_frame_key("bass(3)", setting="animation.zoom")
    with pytest.raises(ScheduleError, match="'beat_frame' cannot be used in a keyframe value"):
        Schedule.parse("0: (beat_frame(2))")


def test_beat_and_bar_keys_place_keyframes_on_the_music() -> None:
    sched = Schedule.parse("0: (0), beat_frame(2): (1), bar_frame(2): (3)", setting="animation.angle")
    assert sched.uses_audio
    values = sched.values(N, audio=AUDIO)
    # beat 2 = frame 14, bar 2 = beat 5 = frame 44 (past the end: ignored, as Deforum ignores late keys)
    np.testing.assert_allclose(values[:15], np.linspace(0, 1, 15))
    np.testing.assert_allclose(values[14:], 1.0)
    assert parse_frame_key("bar_frame(1) + 2").frame_for(N, AUDIO) == 6
    assert parse_frame_key("max_f - beat_frame(1)").frame_for(N, AUDIO) == 35
    with pytest.raises(ScheduleError, match=r"column 1: beat_frame\(\) takes a whole number"):
        parse_frame_key("beat_frame(1.5)", setting="animation.angle").frame_for(N, AUDIO)
    with pytest.raises(ScheduleError, match=r"column 1: beat_frame\(\): expected a finite number"):
        parse_frame_key("beat_frame(1e308 * 10)", setting="animation.angle").frame_for(N, AUDIO)
    with pytest.raises(ScheduleError, match="counted from 1"):
        parse_frame_key("beat_frame(0)").frame_for(N, AUDIO)
    strings = StringSchedule.parse("0: (euler_a), beat_frame(3): (dpmpp_2m)")
    assert strings.values(N, AUDIO)[23:26] == ["euler_a", "dpmpp_2m", "dpmpp_2m"]


def test_prompts_change_on_bars_and_weights_follow_the_bass() -> None:
    schedule = PromptSchedule.from_any(
        {"0": "a forest", "bar_frame(1)": "a city:`1 + bass(t)` --neg blur", "beat_frame(3)": "the sea"},
        setting="prompts.text_prompts",
    )
    assert schedule.uses_audio
    assert [f for f, _ in schedule.items(N, AUDIO)] == [0, 4, 24]
    assert schedule.at(3, N, AUDIO).texts == ["a forest"]
    at10 = schedule.at(10, N, AUDIO)
    assert at10.texts == ["a city"] and at10.weights == pytest.approx([1 + AUDIO.bass[10]])
    assert schedule.at(30, N, AUDIO).texts == ["the sea"]
    assert schedule.changes(N, AUDIO)[:3] == [0, 4, 5]  # the weight follows the bass: every frame differs
    with pytest.raises(ScheduleError, match="reads the soundtrack"):
        schedule.at(3, N)
    assert not PromptSchedule.from_any({"0": "a", "10": "b"}).uses_audio


def test_cache_keys_include_the_song() -> None:
    sched = Schedule.parse("0: (bass(t))")
    other = FakeAudio()
    other.key = "another-song"
    other.bass = other.bass[::-1].copy()
    a, b = sched.values(N, audio=AUDIO), sched.values(N, audio=other)
    assert not np.array_equal(a, b)
    plain = Schedule.parse("0: (t/10)")  # a schedule that reads no song ignores it (one cache entry)
    np.testing.assert_array_equal(plain.values(N, audio=AUDIO), plain.values(N))


def test_validate_schedule_parses_only_without_features() -> None:
    validate_schedule("0: (log(bass(t)))", "animation.zoom", 40)  # parse only: the song decides
    with pytest.raises(ScheduleError, match=r"log of zero or a negative number \(0\) at frame 0"):
        validate_schedule("0: (log(bass(t)))", "animation.zoom", 40, audio=AUDIO)


def test_export_keyframes_gives_plain_numbers_that_read_back() -> None:
    text = export_keyframes("1 + 0.04*beat(t, 0.2)", N, audio=AUDIO, setting="zoom")
    assert "beat" not in text and text.startswith("0: (1), ")
    back = Schedule.parse(text).values(N)
    np.testing.assert_allclose(back, Schedule.parse("0: (1 + 0.04*beat(t, 0.2))").values(N, audio=AUDIO), atol=1e-6)
    # flat stretches keep only their ends
    assert "2: (1)" not in text and "3: (1)" in text
    with pytest.raises(ScheduleError, match="digits"):
        export_keyframes("1", 5, digits=0)


def test_settings_refuse_audio_without_a_soundtrack_and_accept_max_frames_audio(tmp_path: Any) -> None:
    s = Settings.defaults("latent", animation="2D")
    s.set("animation.zoom", "0: (1 + 0.04*bass(t))")
    with pytest.raises(ScheduleError) as err:
        s.validate()
    assert str(err.value).startswith("animation.zoom: column 14: bass() reads the soundtrack")
    s.set("animation.zoom", "0: (1)")
    s.set("prompts.text_prompts", {"0": "a", "bar_frame(2)": "b"})
    with pytest.raises(SettingsError, match="prompts.text_prompts: reads the soundtrack"):
        s.validate()
    s.set("prompts.text_prompts", {"0": "a"})
    s.set("animation.max_frames", "audio")
    assert s.animation.length_from_soundtrack and s.animation.max_frames == 120
    with pytest.raises(SettingsError, match="animation.length_from_soundtrack: the animation's length comes from"):
        s.validate()
    data = json.loads(s.to_json())
    data["animation"]["length_from_soundtrack"] = False
    data["animation"]["max_frames"] = "audio"
    assert Settings.from_dict(data, validate=False).animation.length_from_soundtrack
    with pytest.raises(SettingsError, match="animation.first_downbeat"):
        Settings.from_dict({"animation": {"beats_per_bar": 3, "first_downbeat": 3}})


_FUNCS = st.sampled_from(["bass(t)", "beat(t)", "beat(t, 0.1)", "band(t, 20, 250)", "onset", "rms(t - 1)", "bar"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_FUNCS, st.sampled_from(["+", "*", "-"]), st.floats(-5, 5)), min_size=1, max_size=5))
def test_audio_expressions_evaluate_finite_or_fail_cleanly(parts: list[tuple[str, str, float]]) -> None:
    text = " ".join(f"{f} {op} {c!r} +" for f, op, c in parts) + " 0"
    values = Schedule.parse(f"0: ({text})").values(N, audio=AUDIO)
    assert values.shape == (N,) and np.isfinite(values).all()


def test_plot_draws_the_curve_over_the_song() -> None:
    from discolib.schedules.plot import plot_schedule  # matplotlib: the notebook extra

    fig = plot_schedule(Schedule.parse("0: (0), beat_frame(2): (1 + bass)", setting="animation.zoom"), N, audio=AUDIO)
    line, keys = fig.axes[0].lines[:2]
    np.testing.assert_allclose(line.get_ydata(), Schedule.parse("0: (0), beat_frame(2): (1 + bass)").values(N, audio=AUDIO))
    assert list(keys.get_xdata()) == [0, 14]
