"""Live mode (discolib.run.live): controls reach the next frame's camera, prompt swaps keep the model, stop ends a
frame mid-way, the mailbox never queues a stale frame, and a recording replays through ``render`` to the same frames.

One tiny-live sampler is built per module and handed to every session (sessions otherwise load their own).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from discolib.animation import motion
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.run.adapter import build_sampler
from discolib.run.live import (
    CONTROL_AXES,
    KEY_BINDINGS,
    LiveError,
    LiveFrame,
    LiveSession,
    flight_with_preset,
    nudge_for_drag,
    velocity_for_keys,
)
from discolib.run.loop import render
from discolib.schedules.keyframes import Schedule, ScheduleError, keyframes_from_values


@pytest.fixture(scope="module")
def tiny() -> Settings:
    return apply_preset(Settings.defaults("latent", "3D"), "tiny-live")


@pytest.fixture(scope="module")
def sampler(tiny: Settings):  # -> LatentSampler, built once (the models load in about a second)
    s = LiveSession(tiny, max_frames=10).settings  # the settings as a session fixes them
    return build_sampler(s)


def _session(tiny: Settings, sampler, **kw) -> LiveSession:  # noqa: ANN001
    kw.setdefault("max_frames", 200)
    return LiveSession(tiny, sampler=sampler, **kw)


def _run_to(session: LiveSession, n: int) -> None:
    """Make frames until ``n`` exist, then stop: the next frame to start is frame ``n`` exactly."""
    session.start()
    session.wait_frames(n, timeout=120)
    session.stop()
    assert session.error is None
    assert not session.running


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------ keyframes from values

def test_keyframes_from_values_keys_only_where_the_path_bends() -> None:
    y = np.r_[np.zeros(10), np.interp(np.arange(1, 7), [0, 6], [0.0, 2.0]), np.full(20, 2.0)]
    text = keyframes_from_values(y)
    assert text == "0: (0), 9: (0), 15: (2), 35: (2)"
    assert np.array_equal(Schedule.parse(text).values(len(y)), y)


def test_keyframes_from_values_tolerance_and_integers() -> None:
    y = np.round(2.0 * 0.7 ** np.arange(30), 6)
    exact = keyframes_from_values(y)
    loose = keyframes_from_values(y, tolerance=0.05)
    assert len(loose) < len(exact)
    assert np.abs(Schedule.parse(loose).values(30) - y).max() <= 0.05
    seeds = np.r_[np.arange(42, 52), np.full(5, 7), np.arange(8, 13)]
    text = keyframes_from_values(seeds, integer=True)
    assert np.array_equal(np.trunc(Schedule.parse(text).values(len(seeds))), seeds)
    assert text.count(":") <= 6
    with pytest.raises(ScheduleError, match="frame 2"):
        keyframes_from_values([0.0, 1.0, float("nan")])
    with pytest.raises(ScheduleError, match="whole numbers"):
        keyframes_from_values([0.5, 1.0], integer=True)
    with pytest.raises(ScheduleError, match="tolerance"):
        keyframes_from_values([0.5, 1.0], tolerance=-1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64), min_size=1, max_size=60),
    st.sampled_from([0.0, 1e-3, 0.5]),
)
def test_keyframes_from_values_read_back_within_the_tolerance(values: list[float], tol: float) -> None:
    text = keyframes_from_values(values, tolerance=tol)
    got = Schedule.parse(text).values(len(values))
    assert np.all(np.abs(got - np.asarray(values)) <= tol)


# ------------------------------------------------------------------------------------------ controls

def test_keys_map_to_velocities() -> None:
    v = velocity_for_keys(["w", "ArrowLeft", "Q", "x"], speed=2.0, turn_speed=0.5)
    assert v == {**dict.fromkeys(CONTROL_AXES, 0.0), "translation_z": 2.0, "rotation_3d_y": -0.5, "rotation_3d_z": -0.5}
    assert velocity_for_keys(["w", "s"], 2.0, 1.0)["translation_z"] == 0.0  # opposite keys cancel
    assert {axis for axis, _ in KEY_BINDINGS.values()} == set(CONTROL_AXES)


def test_bad_controls_and_settings_are_refused(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler)
    with pytest.raises(LiveError, match="unknown axis 'up'"):
        session.set_velocity(up=1.0)
    with pytest.raises(LiveError, match="strength: expected a number from 0 to 1"):
        session.set_strength(1.5)
    with pytest.raises(LiveError, match="translation_z: expected a number"):
        session.set_velocity(z="fast")  # type: ignore[arg-type]
    with pytest.raises(LiveError, match="prompt: expected some text"):
        session.set_prompt("   ")
    with pytest.raises(LiveError, match="seed"):
        session.jump_seed(-3)
    with pytest.raises(LiveError, match="weights must sum to a positive number"):
        session.set_prompt("a castle:-1")  # refused here, not by the sampler on the next frame
    with pytest.raises(LiveError, match="above 0.75 leaves no denoising step"):
        session.set_strength(0.8)  # 4 steps: int(4 * 0.2) = 0 steps
    session.set_strength(1.0)  # the moved frame as it is
    assert session.max_strength == 0.75
    with pytest.raises(LiveError, match="nothing was recorded"):
        _session(tiny, sampler, record=False).to_settings()
    guided = apply_preset(Settings.defaults("guided", "3D"), "tiny")
    with pytest.raises(LiveError, match="image.mode"):
        LiveSession(guided)
    assert session.controls["prompt"] == "a lighthouse in a stormy sea"
    assert session.controls["prompt_text"] == "a lighthouse in a stormy sea --neg blurry"
    assert nudge_for_drag(30, -10, 2.0) == {"rotation_3d_y": 0.6, "rotation_3d_x": 0.2}


def test_controls_set_the_camera_of_the_next_frame(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, ramp_frames=1, keep_frames=20)
    _run_to(session, 3)
    session.set_velocity(z=2.0, ry=1.5)
    _run_to(session, 5)
    frames = {f.index: f for f in session.frames}
    assert [frames[i].motion for i in range(3)] == [(0.0,) * 6] * 3
    assert frames[3].motion == (0.0, 0.0, 2.0, 0.0, 1.5, 0.0)  # the first frame that started after the change
    assert frames[3].latency_s is not None and frames[4].latency_s is None
    # The warp that made frame 3 is the motion code's reprojection with those values.
    step = session._step
    assert step is not None
    prev = torch.from_numpy(frames[2].image).permute(2, 0, 1).unsqueeze(0).float().div(255)
    warped, _ = step.warp(3, prev)
    depth = step.depth_of(prev)
    expected, _ = motion.reproject_3d(
        prev, depth, torch.tensor([[0.0, 1.5, 0.0]]), torch.tensor([[0.0, 0.0, 2.0]]), **step.camera(3)
    )
    torch.testing.assert_close(warped, expected.clamp(0, 1), rtol=0, atol=0)


def test_ramps_accelerate_and_damp(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, ramp_frames=4)
    _run_to(session, 2)
    session.set_velocity(z=2.0)
    _run_to(session, 8)
    session.set_velocity(z=0.0)
    session.nudge(ry=3.0)
    _run_to(session, 14)
    path = session.camera_path()
    np.testing.assert_allclose(path[:, 2], [0, 0, 0.5, 1, 1.5, 2, 2, 2, 1.5, 1, 0.5, 0, 0, 0])
    np.testing.assert_allclose(path[8:14, 4], [3.0, 2.25, 1.5, 0.75, 0, 0])  # a drag's nudge decays to the target


def test_a_stop_inside_a_frame_then_other_controls_still_replays(tiny: Settings, sampler, tmp_path: Path) -> None:  # noqa: ANN001
    """Stopped inside frame 1 (whose warp had become Deforum's colour reference), then flown on with another
    velocity: frame 1 is made again from scratch, so the replay's colour reference is the live one."""
    session = _session(tiny, sampler, keep_frames=10)

    class StopInFrame1:
        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(sampler, name)

        def __call__(self, request):  # noqa: ANN001, ANN204
            self.calls += 1
            if self.calls == 2:  # frame 1's request: Stop arrives while it is being sampled
                session._stop.set()
            return sampler(request)

    session._sampler = StopInFrame1()  # type: ignore[assignment]
    session.set_velocity(z=1.0)
    session.start()
    session._thread.join(60)  # type: ignore[union-attr]
    assert session.frames_made == 1 and session.error is None
    session.set_velocity(z=-3.0, x=2.0)
    _run_to(session, 6)
    result = render(session.to_settings(), out=tmp_path, progress=False)
    live = {f.index: f.image for f in session.frames}
    assert all(np.array_equal(_png(p), live[i]) for i, p in enumerate(result.frames))


def test_prompt_text_reads_back_and_another_preset_keeps_the_flight(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler)
    session.set_prompt("a castle:2", "fog")
    _run_to(session, 2)
    text = session.controls["prompt_text"]
    assert text == "a castle:2 --neg fog"
    session.set_prompt(text)
    _run_to(session, 4)
    flight = session.to_settings()
    assert flight.prompts.text_prompts == {"0": ["a castle:2", "--neg fog"]}  # no second key: the same prompt
    other = flight_with_preset(flight, "sd-1.5", size=128)
    assert other.models.latent_model == "sd-1.5" and (other.image.width, other.image.height) == (128, 128)
    assert other.animation.cfg_scale_schedule == "0: (7)"  # the model's guidance, not sd-turbo-style 0
    for name in ("translation_z", "strength_schedule", "seed_schedule", "max_frames"):
        assert getattr(other.animation, name) == getattr(flight.animation, name), name
    assert other.prompts.text_prompts == flight.prompts.text_prompts and other.run.seed == flight.run.seed


def test_prompt_swap_changes_the_conditioning_without_a_reload(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, keep_frames=10)
    weights = next(sampler.comps.unet.parameters())
    ptr = weights.data_ptr()
    _run_to(session, 2)
    session.set_prompt("a castle on a hill", "fog")
    _run_to(session, 4)
    assert session._sampler is sampler and next(sampler.comps.unet.parameters()).data_ptr() == ptr
    texts = {key[0] for key in sampler.comps.embedding_cache}
    assert {"a castle on a hill", "fog"} <= texts
    assert session._plan.prompts_at(2)[0].texts == ["a castle on a hill"]
    assert session._plan.prompts_at(1)[0].texts == ["a lighthouse in a stormy sea"]
    assert session.controls["negative"] == "fog"


def test_stop_ends_a_frame_midway(tiny: Settings) -> None:
    slow = tiny.copy()
    slow.image.steps = 2000  # a frame of 1000 denoising steps: seconds; stop must not wait for it
    session = LiveSession(slow, max_frames=10)
    steps = threading.Event()
    sampler = build_sampler(session.settings)
    inner = sampler.comps.unet.forward

    def counting(*a, **k):  # noqa: ANN002, ANN003, ANN202
        steps.set()
        return inner(*a, **k)

    sampler.comps.unet.forward = counting
    session._sampler = sampler
    session.start()
    assert steps.wait(120)  # inside frame 0's sampler
    session.stop(timeout=60)
    assert not session.running
    assert session.frames_made == 0 and session.error is None  # the frame was left mid-way, not finished


def test_a_slow_viewer_gets_the_newest_frame_never_a_queue(tiny: Settings, sampler) -> None:  # noqa: ANN001
    seen: list[tuple[int, int]] = []

    def slow_viewer(frame: LiveFrame) -> None:
        seen.append((frame.index, session.frames_made))
        time.sleep(0.4)

    session = _session(tiny, sampler, on_frame=slow_viewer)
    session.start()
    session.wait_frames(14, timeout=120)
    session.stop()
    indices = [i for i, _ in seen]
    assert indices == sorted(set(indices))  # never an older frame after a newer one
    assert len(indices) < session.frames_made  # frames made during a delivery were dropped, not queued
    # each delivered frame was, when the viewer got it, the newest made or the one right before the newest
    assert all(made - 1 - i <= 1 for i, made in seen)
    assert session.latest() is not None and session.latest().index == indices[-1]


# ------------------------------------------------------------------------------------------ record and replay

def test_a_recorded_flight_replays_to_the_same_frames(tiny: Settings, sampler, tmp_path: Path) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, keep_frames=40)
    _run_to(session, 3)
    session.set_velocity(z=2.0, ry=0.5)
    _run_to(session, 9)
    session.set_prompt("a castle on a hill", "fog")
    session.jump_seed(7)
    session.set_strength(0.6)
    session.set_cfg(5.0)
    session.set_velocity(z=0.0, x=1.0, rz=-1.0)
    _run_to(session, 16)
    settings = session.to_settings()
    anim = settings.animation
    assert anim.max_frames == 16 and anim.seed_behavior == "schedule" and anim.animation_mode == "3D"
    # ramps of 6 frames from the frame before each change: keys only at the bends
    assert anim.translation_z == "0: (0), 2: (0), 8: (2), 14: (0), 15: (0)"
    assert settings.prompts.text_prompts == {
        "0": ["a lighthouse in a stormy sea", "--neg blurry"], "9": ["a castle on a hill", "--neg fog"],
    }
    path = tmp_path / "flight.json"
    session.save_recording(path)
    result = render(Settings.load(path), out=tmp_path / "runs", progress=False)
    live = {f.index: f.image for f in session.frames}
    assert len(result.frames) == 16
    for i, frame in enumerate(result.frames):
        assert np.array_equal(_png(frame), live[i]), f"frame {i} differs from the live frame"


def test_tolerance_trades_keys_for_a_bounded_path_error(tiny: Settings, sampler) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, ramp_frames=1)
    session.start()
    for k in range(6):  # a jittery hand: a new target every frame or so
        session.set_velocity(z=0.1 * k, ry=0.05 * (-1) ** k)
        session.wait_frames(2 * k + 2, timeout=60)
    session.stop()
    exact, loose = session.to_settings(), session.to_settings(tolerance=0.1)
    n = exact.animation.max_frames
    path = session.camera_path()
    for axis_i, axis in enumerate(CONTROL_AXES):
        e = Schedule.parse(getattr(exact.animation, axis)).values(n)
        lo = Schedule.parse(getattr(loose.animation, axis)).values(n)
        assert np.array_equal(e, path[:, axis_i])
        assert np.abs(lo - path[:, axis_i]).max() <= 0.1
        assert len(getattr(loose.animation, axis)) <= len(getattr(exact.animation, axis))


def test_a_recording_started_mid_flight_starts_from_the_frame_before(tiny: Settings, sampler, tmp_path: Path) -> None:  # noqa: ANN001
    session = _session(tiny, sampler, record=False, keep_frames=20)  # (kept frames only to compare)
    _run_to(session, 4)
    session.record(True)
    session.set_velocity(z=1.0)
    _run_to(session, 8)
    session.record(False)
    assert not session.recording
    with pytest.raises(LiveError, match="init_dir"):
        session.to_settings()
    settings = session.to_settings(init_dir=tmp_path)
    assert settings.animation.max_frames == 5 and settings.latent.strength == 1.0
    init = Path(settings.guidance.init_image)
    assert init.parent == tmp_path
    live = {f.index: f.image for f in session.frames}
    assert np.array_equal(_png(init), live[3])
    z = Schedule.parse(settings.animation.translation_z).values(5)
    np.testing.assert_array_equal(z, session._plan.values["translation_z"][3:8])
    result = render(settings, out=tmp_path / "runs", progress=False)
    assert np.array_equal(_png(result.frames[0]), live[3])  # strength 1 keeps the init: the flight's frame


def test_a_mid_flight_recording_replays_exactly_without_colour_coherence_and_noise(tiny: Settings, sampler,  # noqa: ANN001
                                                                                   tmp_path: Path) -> None:
    """What differs in a mid-flight replay (docs/LIVE.md) is taken by frame number: the colour reference and the
    coherence noise. Without both, replay frame j is live frame k - 1 + j exactly."""
    plain = tiny.copy()
    plain.animation.color_coherence = "None"
    plain.animation.noise_schedule = "0: (0)"
    session = LiveSession(plain, sampler=sampler, max_frames=100, record=False, keep_frames=20)
    session.set_velocity(z=1.0, ry=0.5)
    _run_to(session, 3)
    session.record(True)
    session.set_velocity(x=1.0)
    _run_to(session, 7)
    settings = session.to_settings(init_dir=tmp_path)
    result = render(settings, out=tmp_path / "runs", progress=False)
    live = {f.index: f.image for f in session.frames}
    assert len(result.frames) == 5
    assert all(np.array_equal(_png(p), live[2 + j]) for j, p in enumerate(result.frames))
