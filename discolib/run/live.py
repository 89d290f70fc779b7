"""Live mode: fly a camera through a generated world while its frames stream, then render the same flight offline.

A :class:`LiveSession` runs the render loop's own parts (the :class:`~discolib.run.loop` plan, the
:class:`~discolib.animation.step.AnimationStep`'s warp, depth and coherence, the latent sampler) on a background
thread, one frame after another, with no end set in advance. Before each frame starts it writes the controls as
they are then (camera velocity, strength, CFG, noise, seed, prompt) into that frame's row of the plan, exactly where
a render reads its keyframe schedules; so the flight is a keyframed animation made one frame at a time, and
:meth:`LiveSession.to_settings` writes it back as keyframe strings that ``render`` replays with the same frames
(tolerance 0, same preset, seed and size, on the CPU: equal bytes; tested).

Camera velocity is Deforum's 3D motion per frame (``translation_x/y/z`` in its units, ``rotation_3d_x/y/z`` in
degrees). A new target is reached along a straight ramp of ``ramp_frames`` frames (acceleration), and a released
key ramps back to 0 (damping): smooth motion, and a path that linear keyframes hold with two keys per change.

Frames go to ``on_frame`` from a delivery thread through a one-frame mailbox: a frame made while the previous one is
still being delivered replaces any undelivered one, so a slow viewer sees the newest frame, never a queue of stale
ones, and never slows the render.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from discolib.animation.plan import SCHEDULE_FIELDS, RenderPlan, check_inputs
from discolib.animation.step import AnimationStep
from discolib.config.presets import PRESETS, apply_preset
from discolib.config.settings import Settings
from discolib.errors import InputError
from discolib.io.files import save_png_atomic
from discolib.models.hub import use_models_root
from discolib.models.load import library_progress_bars
from discolib.run.adapter import build_sampler
from discolib.run.loop import cpu_threads, depth_estimator, frame_request
from discolib.run.runs import PendingFrame, threads_for
from discolib.samplers.base import FrameSampler, RenderStopped, check_stop
from discolib.samplers.latent import parse_weighted_prompts
from discolib.schedules.keyframes import format_number, keyframes_from_values
from discolib.schedules.prompts import FramePrompts, PromptSchedule

__all__ = [
    "CONTROL_AXES",
    "FLIGHT_KEYS",
    "KEY_BINDINGS",
    "LiveError",
    "LiveFrame",
    "DRAG_GAIN",
    "LiveSession",
    "flight_with_preset",
    "nudge_for_drag",
    "prompt_text",
    "velocity_for_keys",
]

#: The camera's controls: Deforum's 3D motion schedules (per frame; translation in its units, rotation in degrees).
CONTROL_AXES = ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")
_SHORT = {"x": "translation_x", "y": "translation_y", "z": "translation_z",
          "rx": "rotation_3d_x", "ry": "rotation_3d_y", "rz": "rotation_3d_z"}

#: KeyboardEvent.key (lower case) -> (axis, direction): WASD move, R/F rise and sink, arrows turn, Q/E roll.
KEY_BINDINGS: dict[str, tuple[str, float]] = {
    "w": ("translation_z", 1.0),
    "s": ("translation_z", -1.0),
    "a": ("translation_x", -1.0),
    "d": ("translation_x", 1.0),
    "r": ("translation_y", 1.0),
    "f": ("translation_y", -1.0),
    "arrowleft": ("rotation_3d_y", -1.0),
    "arrowright": ("rotation_3d_y", 1.0),
    "arrowup": ("rotation_3d_x", -1.0),
    "arrowdown": ("rotation_3d_x", 1.0),
    "q": ("rotation_3d_z", -1.0),
    "e": ("rotation_3d_z", 1.0),
}

#: Controls the session writes into each frame's row besides the camera.
_SCALARS = {"strength": "strength_schedule", "cfg": "cfg_scale_schedule", "noise": "noise_schedule"}
_MAX_PROMPT_CHARS = 2000


class LiveError(InputError):
    """A live session's bad control value, settings it cannot fly, or a recording it cannot write."""


def velocity_for_keys(keys: Iterable[str], speed: float, turn_speed: float) -> dict[str, float]:
    """The target velocity of every axis of :data:`CONTROL_AXES` while ``keys`` (KeyboardEvent.key names) are held:
    ``speed`` per frame for translations, ``turn_speed`` degrees per frame for rotations; opposite keys cancel."""
    out = dict.fromkeys(CONTROL_AXES, 0.0)
    for key in set(str(k).lower() for k in keys):
        bound = KEY_BINDINGS.get(key)
        if bound is not None:
            axis, sign = bound
            out[axis] += sign * (turn_speed if axis.startswith("rotation") else speed)
    return out


@dataclass(frozen=True)
class LiveFrame:
    """One frame of a live session, as delivered to ``on_frame``.

    Attributes:
        index: the frame's number since the session started (the replay's frame number when recorded from 0).
        image: ``(H, W, 3)`` uint8, the frame as a render of the recording writes it.
        seed: its seed.
        motion: its values of :data:`CONTROL_AXES`.
        made_at: ``time.perf_counter()`` when it was ready to show.
        latency_s: seconds from the earliest control change this frame is the first to show, to ``made_at``.
        fps: frames per second over about the last second (0.0 until there are two frames).
    """

    index: int
    image: np.ndarray
    seed: int
    motion: tuple[float, ...]
    made_at: float
    latency_s: float | None
    fps: float


def _number(name: str, value: object, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise LiveError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise LiveError(f"{name}: expected a number from {lo:g} to {hi:g}, got {value!r}")
    return v


class _Ramp:
    """One axis's velocity: a straight line from ``(k0, v0)`` to ``(k1, v1)``, then ``v1``. Evaluated with
    ``np.interp``, as a linear keyframe schedule is, so two keys replay the ramp bit for bit."""

    def __init__(self, value: float) -> None:
        self.k0 = self.k1 = 0
        self.v0 = self.v1 = float(value)

    def value(self, i: int) -> float:
        if i >= self.k1:
            return self.v1
        return float(np.interp(float(i), [float(self.k0), float(self.k1)], [self.v0, self.v1]))

    def restart(self, k0: int, v0: float, target: float, frames: int) -> None:
        self.k0, self.v0, self.k1, self.v1 = k0, float(v0), k0 + frames, float(target)


class LiveSession:
    """A live flight through the world of ``settings`` (latent mode, 3D motion).

    Args:
        settings: the look (model, size, prompts, coherence...); default: latent 3D defaults. The session always
            renders 3D motion; the settings' schedules give the controls' starting values and every schedule it
            does not control (fov, contrast ...).
        preset: a preset applied over ``settings`` first (``"tiny-live"`` offline, ``"sd-turbo-live"`` on CUDA).
        on_frame: called with each :class:`LiveFrame` from the delivery thread (keep it short; frames made while
            it runs replace each other: only the newest is delivered next).
        record: record from the first frame (:meth:`record` turns it on and off).
        max_frames: the most frames the session makes (its plan's length).
        ramp_frames: frames a velocity change takes (1: at once).
        keep_frames: keep the last N frames' images (:attr:`frames`; on CUDA each costs a host sync).
        sampler: an already built sampler for these settings (reused instead of loading the models).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        preset: str | None = None,
        on_frame: Callable[[LiveFrame], None] | None = None,
        record: bool = True,
        max_frames: int = 36_000,
        ramp_frames: int = 6,
        keep_frames: int = 0,
        sampler: FrameSampler | None = None,
    ) -> None:
        s = settings.copy() if settings is not None else Settings.defaults("latent", "3D")
        if preset:
            s = apply_preset(s, preset)
        if s.image.mode != "latent":
            raise LiveError("image.mode: live mode renders with the latent sampler (few-step models); got 'guided'")
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or not 2 <= max_frames <= 1_000_000:
            raise LiveError(f"max_frames: expected a whole number from 2 to 1000000, got {max_frames!r}")
        if isinstance(ramp_frames, bool) or not isinstance(ramp_frames, int) or not 1 <= ramp_frames <= 1000:
            raise LiveError(f"ramp_frames: expected a whole number from 1 to 1000, got {ramp_frames!r}")
        if s.prompts.translate:
            warnings.warn("prompts.translate: live mode renders the prompts as typed (no translation)", stacklevel=2)
            s.prompts.translate = ""
        s.animation.animation_mode = "3D"
        s.animation.length_from_soundtrack = False
        s.animation.interpolation = "linear"  # the recording's keyframes are linear
        s.animation.max_frames = max_frames
        s.validate()
        check_inputs(s)
        if s.uses_audio():
            raise LiveError(f"{s.uses_audio()[0]}: live mode has no soundtrack to follow; use plain numbers")
        if s.run.seed == -1:
            s.run.seed = secrets.randbelow(2**32)
        self.settings = s
        self.on_frame = on_frame
        self.ramp_frames = ramp_frames
        self.max_frames = max_frames
        plan = RenderPlan.from_settings(s)
        # The plan's rows are written frame by frame (its arrays are this session's own): seeds become a list.
        self._plan = dataclasses.replace(plan, seeds=list(plan.seeds))
        self._base_seeds = list(plan.seeds)
        self._sampler = sampler
        self._step: AnimationStep | None = None
        self._device: torch.device | None = None
        self._lock = threading.RLock()
        self._next = 0  # the next frame to make
        v = self._plan.values
        self._ramps = {a: _Ramp(float(v[a][0])) for a in CONTROL_AXES}
        self._targets = {a: float(v[a][0]) for a in CONTROL_AXES}
        self._nudges: dict[str, float] = {}
        self._scalars = {k: float(v[name][0]) for k, name in _SCALARS.items()}
        self._seed_offset = 0
        self._seed_jump: int | None = None
        first = self._plan.prompts_at(0)[0]
        self._prompts: dict[int, list[str]] = {0: _prompt_items(first)}
        self._prompt_pending: list[str] | None = None
        self._changed_at: float | None = None
        self._origins: dict[int, float] = {}  # frame -> the earliest control change it is the first to apply
        self._rec_start: int | None = 0 if record else None
        self._rec_end: int | None = None
        self._token = secrets.token_hex(4)
        self._last: tuple[int, Any] | None = None  # the last frame made, as handed over
        self._rec_init: tuple[int, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._made = 0
        self._times: collections.deque[float] = collections.deque(maxlen=240)
        self._slot: tuple[int, Any, float | None] | None = None
        self._slot_cv = threading.Condition()
        self._delivery: threading.Thread | None = None
        self._closed = False
        self._latest: LiveFrame | None = None
        self._delivered_cv = threading.Condition()
        self._latencies: collections.deque[float] = collections.deque(maxlen=200)
        self.frames: collections.deque[LiveFrame] = collections.deque(maxlen=max(keep_frames, 0) or None)
        self._keep = keep_frames > 0

    # ------------------------------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    @property
    def frames_made(self) -> int:
        return self._made

    @property
    def error(self) -> BaseException | None:
        """What ended the loop when it failed (or reached ``max_frames``), else None."""
        return self._error

    @property
    def device(self) -> torch.device | None:
        return self._device

    def start(self) -> None:
        """Start (or continue) the flight on a background thread; returns at once (models load there)."""
        with self._lock:
            if self.running:
                if not self._stop.is_set():
                    return
                assert self._thread is not None
                self._thread.join(60.0)  # a Stop still under way (a model load cannot be interrupted)
                if self._thread.is_alive():
                    raise LiveError("start: the last Stop has not finished (the models are still loading); try again")
            if self._next >= self.max_frames:
                raise LiveError(f"max_frames: the session has made all its {self.max_frames} frames")
            self._stop = threading.Event()
            self._error = None
            # A change made while stopped (or applied to a frame a Stop dropped) is shown by the first frame: timed
            # from now, not from the press, which the stop and a model load would inflate.
            if self._changed_at is not None:
                self._changed_at = time.perf_counter()
            if self._next in self._origins:
                self._origins[self._next] = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name="discolib-live", daemon=True)
            if self._delivery is not None and self._delivery.is_alive() and self._closed:
                self._delivery.join(30.0)  # closed, still in a slow on_frame: it ends after it; a new one takes over
            if self._delivery is None or not self._delivery.is_alive():
                self._closed = False
                self._delivery = threading.Thread(target=self._deliver_loop, name="discolib-live-frames", daemon=True)
                self._delivery.start()
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Stop after the current sampler step (the frame being made is dropped; :meth:`start` makes it again).
        Returns whether the loop has ended (False: still loading models after ``timeout``; it ends after them)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        return not self.running

    def close(self) -> None:
        """Stop and end the delivery thread."""
        self.stop()
        with self._slot_cv:
            self._slot = None
            self._closed = True
            self._slot_cv.notify_all()
        # Joined: a delivery thread that outlived its caller would drop the last reference to the session (and its
        # models) on that thread, during interpreter shutdown if the caller was exiting (torch aborts then).
        d = self._delivery
        if d is not None and d is not threading.current_thread():
            d.join(5.0)

    def latest(self) -> LiveFrame | None:
        return self._latest

    def wait_frames(self, n: int, timeout: float = 120.0) -> LiveFrame:
        """Block until frame ``n - 1`` (or a later one) has been delivered; raises the loop's error, or TimeoutError."""
        end = time.monotonic() + timeout
        with self._delivered_cv:
            while self._latest is None or self._latest.index < n - 1:
                if self._error is not None:
                    raise self._error
                if not self.running and self._made < n and self._slot is None:
                    raise LiveError(f"the session is not running and made {self._made} of {n} frames")
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{n} frames were not made within {timeout:g} s ({self._made} made)")
                self._delivered_cv.wait(min(left, 0.1))
            return self._latest

    def _run(self) -> None:
        try:
            s = self.settings
            # (no library progress bars: they would print into the notebook from this thread)
            with use_models_root(s.models.models_root), cpu_threads(threads_for(s.models.threads)), \
                    library_progress_bars(False):
                if self._sampler is None:
                    self._sampler = build_sampler(s)
                check_stop(self._stop)
                sampler = self._sampler
                if self._step is None:
                    self._device = sampler.device
                    check_stop(self._stop)
                    self._step = AnimationStep(self._plan, sampler.policy, sampler.device, depth=depth_estimator(s, sampler.device))
                step = self._step
                while self._next < self.max_frames:
                    check_stop(self._stop)
                    i = self._next
                    plan = self._apply_controls(i, step)
                    init = step.first() if i == 0 else step(i)
                    try:
                        sample = init.image if init.final else sampler(frame_request(plan, i, init, stop=self._stop))
                    except BaseException:
                        step.abandon(i)  # Start makes frame i again, maybe with other controls
                        raise
                    assert sample is not None
                    image = step.finish(i, sample)
                    frame = PendingFrame.from_image(image)  # the render loop's one device-to-host copy of a frame
                    step.written(image, frame)  # the 8-bit path warps the frame as delivered
                    with self._lock:
                        self._next = i + 1
                        self._made = i + 1
                        self._last = (i, frame)
                        self._times.append(time.perf_counter())
                    self._hand_over(i, frame)
                if self._next >= self.max_frames:
                    self._error = LiveError(
                        f"max_frames: the session made all its {self.max_frames} frames; record and render, or start "
                        "a new session"
                    )
        except RenderStopped:
            pass
        except BaseException as exc:  # the notebook shows it (panel, wait_frames); the thread must not die silently
            self._error = exc
        finally:
            with self._delivered_cv:
                self._delivered_cv.notify_all()

    # ------------------------------------------------------------------------------------------ controls

    def _changed(self) -> None:
        if self._changed_at is None:
            self._changed_at = time.perf_counter()

    def set_velocity(self, **axes: float) -> None:
        """Target velocity per frame of the axes given (:data:`CONTROL_AXES` or ``x y z rx ry rz``); the others
        keep theirs. Reached along a ramp of ``ramp_frames`` frames from the next frame on."""
        new = {}
        for name, value in axes.items():
            axis = _SHORT.get(name, name)
            if axis not in CONTROL_AXES:
                raise LiveError(f"set_velocity: unknown axis {name!r} (expected one of {', '.join(CONTROL_AXES)})")
            new[axis] = round(_number(axis, value, -1e4, 1e4), 6)  # 6 decimals: short, exact keyframes
        with self._lock:
            if any(self._targets[a] != v for a, v in new.items()):
                self._targets.update(new)
                self._changed()

    def nudge(self, **axes: float) -> None:
        """Add to the velocity of the next frame once (a mouse drag); it then ramps back to the target."""
        with self._lock:
            for name, value in axes.items():
                axis = _SHORT.get(name, name)
                if axis not in CONTROL_AXES:
                    raise LiveError(f"nudge: unknown axis {name!r} (expected one of {', '.join(CONTROL_AXES)})")
                d = _number(axis, value, -1e4, 1e4)
                if d:
                    # (drags while stopped add up; bounded as one velocity is)
                    self._nudges[axis] = round(min(max(self._nudges.get(axis, 0.0) + d, -1e4), 1e4), 6)
                    self._changed()

    def set_prompt(self, prompt: str, negative: str | None = None) -> None:
        """The prompt (Deforum's form: ``"a castle:2 --neg fog"``, weights allowed) from the next frame on; the
        sampler encodes a new text once and keeps the model (embeddings are cached per text)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise LiveError(f"prompt: expected some text, got {prompt!r}")
        if negative is not None and not isinstance(negative, str):
            raise LiveError(f"negative prompt: expected text, got {negative!r}")
        value = prompt.strip() + (f" --neg {negative.strip()}" if negative and negative.strip() else "")
        if len(value) > _MAX_PROMPT_CHARS:
            raise LiveError(f"prompt: at most {_MAX_PROMPT_CHARS} characters, got {len(value)}")
        try:
            fp = PromptSchedule.from_any({"0": value}, setting="prompt").at(0, None, None)
            # the sampler's own rule (weights normalised by their sum): refused here, not by the next frame
            parse_weighted_prompts(list(zip(fp.texts, fp.weights, strict=True)), setting="prompt")
            if fp.negative:
                pairs = list(zip(fp.negative_texts, fp.negative_weights, strict=True))
                parse_weighted_prompts(pairs, setting="negative prompt")
        except InputError as exc:
            raise LiveError(str(exc)) from None
        with self._lock:
            self._prompt_pending = _prompt_items(fp)
            self._changed()

    def set_strength(self, value: float) -> None:
        """Deforum's strength: the fraction of the warped frame each frame keeps, 0 to :attr:`max_strength`, or 1
        (the moved frame as it is: depth parallax without diffusion)."""
        v = _number("strength", value, 0.0, 1.0)
        if self.max_strength < v < 1.0:
            raise LiveError(
                f"strength: with {self.settings.image.steps} steps a frame, a strength above {self.max_strength:g} "
                f"leaves no denoising step (the frame would only be moved); got {v:g}: use at most "
                f"{self.max_strength:g}, or 1 to keep each moved frame as it is"
            )
        self._set_scalar("strength", v)

    @property
    def max_strength(self) -> float:
        """The largest strength below 1 at which a frame still gets a denoising step (img2img runs
        ``int(steps * (1 - strength))`` of the model's steps, the model family's rule once it is loaded)."""
        steps = self.settings.image.steps
        fam = getattr(getattr(self._sampler, "comps", None), "family_obj", None)
        runs = fam.init_steps if fam is not None else (lambda n, f: min(int(n * f), n))
        # the strengths where the count changes are k / steps; the largest one that still runs a step
        return max((k / steps for k in range(steps) if runs(steps, 1.0 - k / steps) >= 1), default=0.0)

    def set_cfg(self, value: float) -> None:
        self._set_scalar("cfg", _number("cfg", value, 0.0, 100.0))

    def set_noise(self, value: float) -> None:
        self._set_scalar("noise", _number("noise", value, 0.0, 1.0))

    def _set_scalar(self, name: str, value: float) -> None:
        with self._lock:
            if self._scalars[name] != value:
                self._scalars[name] = value
                self._changed()

    def jump_seed(self, seed: int | None = None) -> int:
        """Jump to ``seed`` (random when None) at the next diffused frame; the seed behaviour goes on from it."""
        if seed is None:
            seed = secrets.randbelow(2**32)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
            raise LiveError(f"seed: expected a whole number from 0 to {2**32 - 1}, got {seed!r}")
        with self._lock:
            self._seed_jump = int(seed)
            self._changed()
        return int(seed)

    @property
    def controls(self) -> dict[str, Any]:
        """The current targets: velocity per axis, prompt, negative prompt, strength, cfg, noise, seed."""
        with self._lock:
            items = self._prompt_pending or self._prompts[max(self._prompts)]
            fp = PromptSchedule.from_any({"0": items}, setting="prompt").at(0, None, None)
            i = max(self._next - 1, 0)
            return {
                "velocity": dict(self._targets),
                "prompt": ", ".join(p.to_str() for p in fp.positive),
                "negative": ", ".join(p.to_str() for p in fp.negative),
                # what set_prompt reads back to these prompts (one string: exact for one prompt and one negative)
                "prompt_text": prompt_text(fp),
                **self._scalars,
                "seed": self._seed_jump if self._seed_jump is not None else int(self._plan.seeds[i]),
            }

    def _apply_controls(self, i: int, step: AnimationStep) -> RenderPlan:
        """Write the controls into frame ``i``'s row of the plan (where a render reads its schedules)."""
        with self._lock:
            plan, values = self._plan, self._plan.values
            for axis in CONTROL_AXES:
                ramp, target = self._ramps[axis], self._targets[axis]
                if i == 0:  # (frame 0 is not warped: its motion only starts the ramps; a nudge waits for frame 1)
                    ramp.restart(0, target, target, 0)
                    values[axis][i] = ramp.value(i)
                    continue
                nudge = self._nudges.pop(axis, 0.0)
                if nudge:
                    ramp.restart(i, ramp.value(i) + nudge, target, self.ramp_frames)
                elif target != ramp.v1:
                    ramp.restart(i - 1, ramp.value(i - 1), target, self.ramp_frames)
                values[axis][i] = ramp.value(i)
            for name, field in _SCALARS.items():
                values[field][i] = self._scalars[name]
            if self._seed_jump is not None and step.diffused[i]:
                self._seed_offset = self._seed_jump - self._base_seeds[i]
                self._seed_jump = None
            seeds = plan.seeds
            assert isinstance(seeds, list)
            seeds[i] = (self._base_seeds[i] + self._seed_offset) % 2**32
            if self._prompt_pending is not None:
                if self._prompt_pending != self._prompts[max(k for k in self._prompts if k <= i)]:
                    self._prompts[i] = self._prompt_pending
                    self._plan = plan = dataclasses.replace(plan, prompts=_schedule(self._prompts))
                self._prompt_pending = None
            if self._changed_at is not None:
                self._origins[i] = self._changed_at
                self._changed_at = None
            step.motion_changed(i)
            return plan

    # ------------------------------------------------------------------------------------------ delivery

    def _fps(self) -> float:
        times = list(self._times)  # (one C call: atomic while the render thread appends)
        if len(times) < 2:
            return 0.0
        last = times[-1]
        recent = [t for t in times if last - t <= 1.0] or [last]
        if len(recent) < 2:
            recent = times[-2:]
        span = recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def _hand_over(self, i: int, frame: Any) -> None:
        origin = self._origins.pop(i, None)
        if self._keep:
            self.frames.append(self._make_frame(i, frame, origin))
        with self._slot_cv:
            if self._slot is not None and self._slot[2] is not None:
                # the undelivered frame is dropped; its control change is first shown by this one
                origin = self._slot[2] if origin is None else min(origin, self._slot[2])
            self._slot = (i, frame, origin)
            self._slot_cv.notify()

    def _make_frame(self, i: int, frame: Any, origin: float | None) -> LiveFrame:
        array = PendingFrame.resolve(frame)
        now = time.perf_counter()
        motion = tuple(float(self._plan.values[a][i]) for a in CONTROL_AXES)
        latency = None if origin is None else max(now - origin, 0.0)
        return LiveFrame(i, array, int(self._plan.seeds[i]), motion, now, latency, self._fps())

    def _deliver_loop(self) -> None:
        while True:
            with self._slot_cv:
                while self._slot is None and not self._closed:
                    self._slot_cv.wait()
                if self._closed:
                    return
                assert self._slot is not None
                i, frame, origin = self._slot
                self._slot = None
            live = self._make_frame(i, frame, origin)
            if live.latency_s is not None:
                self._latencies.append(live.latency_s)
            with self._delivered_cv:
                self._latest = live
                self._delivered_cv.notify_all()
            if self.on_frame is not None:
                try:
                    self.on_frame(live)
                except Exception as exc:  # a viewer's error must not end the flight; it is shown once
                    warnings.warn(f"live on_frame callback failed: {type(exc).__name__}: {exc}", stacklevel=1)

    def stats(self) -> dict[str, Any]:
        """Frames made, frames per second now, and key-to-frame latency (ms) over the last delivered changes."""
        lat = sorted(list(self._latencies))  # (a copy first: the delivery thread appends)
        med = float(np.median(lat)) * 1000 if lat else None
        p90 = float(np.percentile(lat, 90)) * 1000 if lat else None
        return {"frames": self._made, "fps": self._fps(), "latency_ms_median": med, "latency_ms_p90": p90}

    # ------------------------------------------------------------------------------------------ record and replay

    def record(self, on: bool = True) -> None:
        """Start recording at the next frame (a new recording), or end it after the last frame made."""
        with self._lock:
            if on:
                if self._rec_start is None or self._rec_end is not None:
                    self._rec_start, self._rec_end = self._next, None
                    # the frame before the recording: a replay from a mid-flight start begins with it
                    self._rec_init = self._last if self._next > 0 else None
            elif self._rec_start is not None and self._rec_end is None:
                self._rec_end = self._next

    @property
    def recording(self) -> bool:
        return self._rec_start is not None and self._rec_end is None

    def _recorded(self) -> tuple[int, int]:
        with self._lock:
            if self._rec_start is None:
                raise LiveError("record: nothing was recorded (press Record, or start the session with record=True)")
            end = self._rec_end if self._rec_end is not None else self._made
            if end - self._rec_start < 1:
                raise LiveError("record: the recording has no frames yet")
            return self._rec_start, end

    def camera_path(self) -> np.ndarray:
        """The recorded frames' motion, ``(frames, 6)`` float64 in :data:`CONTROL_AXES` order (empty before any)."""
        try:
            lo, hi = self._recorded()
        except LiveError:
            return np.zeros((0, len(CONTROL_AXES)))
        return np.stack([np.asarray(self._plan.values[a][lo:hi], dtype=np.float64) for a in CONTROL_AXES], axis=1)

    def to_settings(self, *, tolerance: float = 0.0, init_dir: str | Path | None = None) -> Settings:
        """Settings whose ``render`` replays the recorded flight: ``max_frames`` = the frames recorded, every
        keyframe schedule as compact linear keys (the camera's within ``tolerance`` per frame, the others exact;
        tolerance 0: the replay reads the same numbers, bit for bit), ``seed_behavior`` "schedule" with the frames'
        seeds, and the prompts as prompt keyframes (``--neg`` for the negative side).

        A recording from frame 0 replays the live frames exactly (same preset, seed and size, on the CPU). One
        started later starts from the frame before it (kept when Record was pressed): that frame is written as a
        PNG into ``init_dir`` (required then) and kept as the replay's frame 0 (strength 1); the replay's colour
        reference is taken afresh, so its frames can differ from the live ones in colour (docs/LIVE.md).
        """
        with self._lock:  # a snapshot: the loop goes on writing later rows and prompt keys meanwhile
            lo, hi = self._recorded()
            start = lo - 1 if lo > 0 else lo
            values = {name: np.array(self._plan.values[name][start:hi]) for name in SCHEDULE_FIELDS}
            seeds = list(self._plan.seeds[start:hi])
            prompt_keys = dict(self._prompts)
            rec_init = self._rec_init
        s = self.settings.copy()
        if lo > 0:
            if init_dir is None:
                raise LiveError(
                    f"init_dir: the recording starts at frame {lo}, after the flight began; the frame before it "
                    "becomes the replay's init image, and needs a folder to be written to"
                )
            assert rec_init is not None and rec_init[0] == lo - 1
            frame = rec_init[1]
            array = PendingFrame.resolve(frame)
            # (a name of its own: two recordings into one folder never share it; absolute: the settings may move)
            path = Path(init_dir).resolve() / f"live_init_{self._token}_{lo - 1:06d}.png"
            save_png_atomic(path, torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div(255))
            s.guidance.init_image = str(path)
            s.latent.strength = 1.0
        anim = s.animation
        anim.max_frames = hi - start
        tol = _number("tolerance", tolerance, 0.0, 1e6)
        for name in SCHEDULE_FIELDS:
            try:
                text = keyframes_from_values(values[name], tolerance=tol if name in CONTROL_AXES else 0.0,
                                             setting=f"animation.{name}")
            except InputError as exc:
                hint = ("pass a tolerance > 0 (e.g. 0.001) to draw the camera path with fewer keys, or record less"
                        if name in CONTROL_AXES else "record less")
                raise LiveError(f"{exc}: the recording does not fit in one keyframe string; {hint}") from None
            setattr(anim, name, text)
        anim.seed_behavior = "schedule"
        try:
            anim.seed_schedule = keyframes_from_values(seeds, integer=True, setting="animation.seed_schedule")
        except InputError as exc:
            raise LiveError(
                f"{exc}: the recording's seeds do not fit in one keyframe string (seed_behavior "
                f"{self.settings.animation.seed_behavior!r} changes the seed every frame); record less, or fly with "
                "seed_behavior 'iter' or 'fixed'"
            ) from None
        s.run.seed = int(seeds[0])
        # (keys before the recording all map to its frame 0: the last of them, the prompt holding there, wins)
        prompts = {str(max(k - start, 0)): items for k, items in sorted(prompt_keys.items()) if k < hi}
        s.prompts.text_prompts = _compact_prompts(prompts)
        try:
            s.validate()
        except InputError as exc:
            raise LiveError(f"the recording does not make valid settings: {exc}") from None
        return s

    def save_recording(self, path: str | Path, *, tolerance: float = 0.0) -> Path:
        """:meth:`to_settings` written as a settings JSON file (atomically); a mid-flight recording's init image
        goes beside it."""
        path = Path(path)
        return self.to_settings(tolerance=tolerance, init_dir=path.parent).save(path)


#: What a recorded flight is, besides its look: kept when :func:`flight_with_preset` renders it with another preset.
FLIGHT_KEYS = (
    # (every schedule but CFG: its scale belongs to the model, e.g. 0 for sd-turbo, 7 for sd-1.5)
    *(f"animation.{name}" for name in SCHEDULE_FIELDS if name != "cfg_scale_schedule"),
    "animation.animation_mode", "animation.max_frames", "animation.interpolation", "animation.seed_behavior",
    "animation.seed_schedule", "prompts.text_prompts", "latent.negative_prompt", "run.seed", "run.batch_name",
    "run.output_root", "output.fps", "guidance.init_image", "latent.strength",
)  # fmt: skip


def flight_with_preset(flight: Settings, preset: str, *, size: int | None = None) -> Settings:
    """A recorded flight (:meth:`LiveSession.to_settings`) rendered with ``preset``: the preset's models, sampler,
    steps, size and guidance (CFG); the flight's camera path and every other schedule, prompts, seeds, frame count
    and fps (and a mid-flight recording's first frame, diffused again by a guided preset) unchanged. ``size``: ``size`` x ``size`` pixels instead of the preset's.

    With a guided (Disco) preset the ``--neg`` prompts become Disco's negative weights, which must not sum to 0 with
    the positive ones: weight the positive prompt (``"a castle:2"``) before recording, or edit ``text_prompts``.
    """
    out = apply_preset(flight.copy(), preset)
    for name in FLIGHT_KEYS:
        out.set(name, flight.get(name))
    if "animation.cfg_scale_schedule" not in PRESETS.get(preset, {}):  # the preset's guidance, on every frame
        out.set("animation.cfg_scale_schedule", f"0: ({format_number(out.latent.cfg_scale)})")
    if size is not None:
        out.set("image.width", size)
        out.set("image.height", size)
    try:
        return out.validate()
    except InputError as exc:
        raise LiveError(f"the flight with preset {preset!r}: {exc}") from None


def prompt_text(fp: FramePrompts) -> str:
    """``fp`` in the form :meth:`LiveSession.set_prompt` reads (``"a castle:2 --neg fog"``): exact for one prompt
    and one negative prompt; more are joined with commas (read back as one prompt each side)."""
    pos = ", ".join(p.to_str() for p in fp.positive)
    neg = ", ".join(p.to_str() for p in fp.negative)
    return f"{pos} --neg {neg}" if neg else pos


#: Degrees of rotation velocity added per pixel of mouse drag, per degree/frame of turn speed.
DRAG_GAIN = 0.01


def nudge_for_drag(dx: float, dy: float, turn_speed: float, gain: float = DRAG_GAIN) -> dict[str, float]:
    """The :meth:`LiveSession.nudge` of a mouse drag of ``dx``, ``dy`` pixels (right, down): dragging right turns
    right (``rotation_3d_y`` > 0), dragging up tilts up (``rotation_3d_x`` > 0), ``gain * turn_speed`` degrees per
    frame per pixel."""
    k = gain * turn_speed
    return {"rotation_3d_y": dx * k, "rotation_3d_x": -dy * k}


def _prompt_items(fp: FramePrompts) -> list[str]:
    """A frame's prompts as a prompt-schedule value: positive items, then ``--neg`` ones."""
    return [p.to_str() for p in fp.positive] + [f"--neg {p.to_str()}" for p in fp.negative]


def _schedule(keys: Mapping[int, list[str]]) -> PromptSchedule:
    return PromptSchedule.from_any({str(k): v for k, v in sorted(keys.items())}, setting="prompts.text_prompts")


def _compact_prompts(prompts: Mapping[str, list[str]]) -> dict[str, Any]:
    """Keys in frame order, a one-item list as its string (Deforum's form)."""
    return {k: (v[0] if len(v) == 1 else list(v)) for k, v in sorted(prompts.items(), key=lambda kv: int(kv[0]))}
