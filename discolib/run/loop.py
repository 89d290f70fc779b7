"""The render loop: stills and animations of both samplers into a run folder, resumable exactly.

Per frame of an animation: evaluate schedules (all frames at once, before the loop) -> warp the previous frame
(2D affine or 3D depth reprojection) -> coherence (colour match to frame 0, contrast, noise, anti-blur; disoccluded
pixels refilled with noise) -> sample (img2img of the warped frame) -> write the frame atomically -> update
``run.json``.

Cadence (Deforum) / turbo (Disco): with ``cadence = N`` the sampler runs on frames 0, N, 2N, ... (and on every
frame of the first ``turbo_preroll`` frames, in guided mode as Disco); the frames in between are the previous
frame warped by their motion, with no diffusion. Each frame depends only on the previous frame and frame 0, both
read back exactly as written (the loop continues from the 8-bit frame it saved), so ``--resume`` produces frames
byte-identical to an uninterrupted run on the CPU (on CUDA, nondeterministic kernels such as the atomic adds in
``grid_sample``'s backward pass can change the last bits of guided frames). A resume renders with the torch thread
count recorded when the run started, refuses a ``settings.json`` changed since, and continues from the first
recorded frame that is missing or whose bytes changed (docs/REPRODUCIBILITY.md).

Seeds are fixed for every frame before the loop from ``seed_behavior`` (iter, fixed, random, ladder, alternate,
schedule); a random run seed is drawn once and written into the run's ``settings.json``.
"""

from __future__ import annotations

import os
import secrets
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from discolib.config.settings import Settings, SettingsError
from discolib.io.files import save_png_atomic
from discolib.run.events import EventCallback, RenderEvent, RenderResult
from discolib.run.runs import FrameWriter, PendingFrame, RunError, RunFolder, RunLock, RunRecord
from discolib.samplers.base import FrameRequest, FrameSampler, RenderStopped
from discolib.schedules.keyframes import Schedule
from discolib.schedules.prompts import PromptSchedule

__all__ = ["render", "build_sampler", "frame_seeds", "evaluate_schedules", "motion_3d_table", "AnimationState"]

# Settings whose keyframe strings are evaluated per frame.
SCHEDULE_FIELDS = (
    "angle",
    "zoom",
    "translation_x",
    "translation_y",
    "translation_z",
    "rotation_3d_x",
    "rotation_3d_y",
    "rotation_3d_z",
    "transform_center_x",
    "transform_center_y",
    "fov",
    "near",
    "far",
    "noise_schedule",
    "strength_schedule",
    "contrast_schedule",
    "cfg_scale_schedule",
    "antiblur_amount",
    "antiblur_sigma",
)


#: An init image with one of these suffixes is a video: its first frame starts the animation.
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")


def build_sampler(settings: Settings, *, progress: bool = False) -> FrameSampler:
    """The sampler for ``settings.image.mode``, with its models loaded once."""
    if settings.image.mode == "guided":
        from discolib.samplers.guided import GuidedSampler

        return GuidedSampler(settings, progress=progress)
    from discolib.samplers.latent import LatentSampler

    return LatentSampler(settings, progress=progress)


# ---------------------------------------------------------------------------------------------- schedules, seeds


def motion_3d_table(sv: dict[str, np.ndarray], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Every frame's 3D camera motion, ``(frames, 6)``: ``rotation_3d_x/y/z`` then ``translation_x/y/z``.

    Uploaded once per run (without a host sync), so a frame only indexes it: no per-frame host-to-device copy.
    """
    from discolib.models.device import upload

    keys = ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "translation_x", "translation_y", "translation_z")
    table = np.stack([np.asarray(sv[k], dtype=np.float64) for k in keys], axis=1)
    return upload(torch.as_tensor(table, dtype=dtype), device)


def evaluate_schedules(settings: Settings, n_frames: int, seed: int) -> dict[str, np.ndarray]:
    """Every keyframe schedule evaluated for all frames at once: name -> float64 array (n_frames,)."""
    anim = settings.animation
    out: dict[str, np.ndarray] = {}
    for name in SCHEDULE_FIELDS:
        sched = Schedule.parse(getattr(anim, name), setting=f"animation.{name}", interpolation=anim.interpolation)
        out[name] = sched.values(n_frames, seed=seed)
    return out


def frame_seeds(settings: Settings, n_frames: int, seed: int) -> list[int]:
    """The seed of every frame (Deforum's ``seed_behavior``), fixed before the loop so a resume reuses them.

    ``iter``: +1 every ``seed_iter_n`` frames; ``fixed``; ``random`` (drawn from a generator seeded with the run
    seed, so a run is reproducible); ``ladder``: +2, -1, +2, -1 ...; ``alternate``: +1, -1, +1 ...;
    ``schedule``: ``seed_schedule`` evaluated per frame (``s`` is the run seed; -1 means random).
    """
    anim = settings.animation
    still = anim.animation_mode == "None"
    behavior = "iter" if still else anim.seed_behavior
    iter_n = 1 if still else anim.seed_iter_n  # stills: the next seed for every image, as Disco's batches
    rng = np.random.default_rng(seed)
    seeds: list[int] = []
    s = seed
    for i in range(n_frames):
        if i > 0:
            if behavior == "iter":
                s = seed + i // iter_n
            elif behavior == "ladder":
                s += 2 if i % 2 == 1 else -1
            elif behavior == "alternate":
                s += 1 if i % 2 == 1 else -1
            elif behavior == "random":
                s = int(rng.integers(0, 2**32))
        seeds.append(s % 2**32)
    if behavior == "schedule":
        values = Schedule.parse(anim.seed_schedule, setting="animation.seed_schedule", interpolation="step").values(
            n_frames, seed=seed
        )
        seeds = [int(rng.integers(0, 2**32)) if v == -1 else int(v) % 2**32 for v in values]
    return seeds


# ---------------------------------------------------------------------------------------------- animation state


@dataclass
class AnimationState:
    """Everything the motion step needs that lives across frames (models and frame 0 for colour)."""

    depth: Any = None  # a discolib.models.depth estimator, loaded once per run
    color_ref: torch.Tensor | None = None  # frame 0, (1, 3, H, W) in [0, 1], as written
    color_hist: Any = None  # discolib.animation.coherence.HistogramReference of color_ref, prepared on first use
    depth_dir: Path | None = None
    motion_3d: torch.Tensor | None = None  # (frames, 6) rotation_3d_xyz, translation_xyz on the render device


def _quantize(image: torch.Tensor) -> torch.Tensor:
    """What the PNG will hold, back as float: the loop continues from exactly the written frame."""
    return image.detach().float().clamp(0, 1).mul(255).round().div(255)


def _load_frame(path: Path, device: torch.device) -> torch.Tensor:
    from discolib.io.images import load_image

    return load_image(path).to(device)


def _warp(prev: torch.Tensor, settings: Settings, sv: dict[str, np.ndarray], i: int, state: AnimationState) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Frame ``i``'s motion applied to the previous frame; returns (warped, disocclusion mask or None)."""
    from discolib.animation import motion

    anim = settings.animation

    def v(name: str) -> float:
        return float(sv[name][i])

    if anim.animation_mode == "2D":
        warped = motion.warp_2d(
            prev,
            v("angle"),
            v("zoom"),
            v("translation_x"),
            v("translation_y"),
            v("transform_center_x"),
            v("transform_center_y"),
            padding_mode=anim.border,
            sampling_mode=anim.sampling_mode,
        )
        return warped.clamp(0, 1), None
    if anim.animation_mode == "3D":
        from discolib.models.depth import DEFORUM_DEPTH_RANGE, normalize_depth, save_depth_png

        depth = normalize_depth(state.depth(prev), *DEFORUM_DEPTH_RANGE)
        if state.depth_dir is not None:
            save_depth_png(depth, state.depth_dir / f"{i - 1:06d}.png")
        if state.motion_3d is None:
            state.motion_3d = motion_3d_table(sv, prev.device, prev.dtype)
        rot, trans = state.motion_3d[i : i + 1, :3], state.motion_3d[i : i + 1, 3:]
        warped, mask = motion.reproject_3d(
            prev,
            depth,
            rot,
            trans,
            fov_deg=v("fov"),
            padding_mode=anim.padding_mode,
            sampling_mode=anim.sampling_mode,
        )
        return warped.clamp(0, 1), mask
    return prev, None


def _coherence(
    warped: torch.Tensor,
    mask: torch.Tensor | None,
    settings: Settings,
    sv: dict[str, np.ndarray],
    i: int,
    state: AnimationState,
    seed: int,
) -> torch.Tensor:
    """Colour match to frame 0, contrast, anti-blur, noise (latent mode) and fresh noise in disoccluded pixels."""
    from discolib.animation import coherence
    from discolib.models.device import upload

    anim = settings.animation
    x = warped
    if anim.color_coherence != "None" and state.color_ref is not None:
        if state.color_hist is None:  # frame 0's half of the matching, done once per run
            state.color_hist = coherence.HistogramReference.prepare(state.color_ref, anim.color_coherence)
        x = coherence.match_histogram(x, state.color_hist, anim.color_coherence)
    contrast = float(sv["contrast_schedule"][i])
    if contrast != 1.0:
        x = coherence.adjust_contrast(x, contrast)
    amount = float(sv["antiblur_amount"][i])
    if amount > 0:
        x = coherence.unsharp_mask(x, amount, sigma=float(sv["antiblur_sigma"][i]))
    gen = torch.Generator("cpu").manual_seed(seed + 7919 * (i + 1))  # noise of its own, fixed per frame
    if mask is not None and settings.image.mode == "latent":
        # (Guided mode keeps the border fill: there the warped frame is also the init-loss target of frames_scale,
        # which would pull noise-filled holes towards noise.)
        # Disocclusions have no source pixel: fresh noise lets the sampler invent content there instead of
        # smearing the border (a long-standing Deforum request).
        fill = upload(torch.rand(x.shape, generator=gen, dtype=x.dtype), x.device)
        x = torch.where(mask.expand_as(x), fill, x)
    noise = float(sv["noise_schedule"][i])
    if settings.image.mode == "latent" and noise > 0:
        x = coherence.add_noise(x, noise, anim.noise_type, gen)
    return x.clamp(0, 1)


# ---------------------------------------------------------------------------------------------- inits


def _video_frames(settings: Settings, n_frames: int) -> Iterator[torch.Tensor]:
    from discolib.io.video import read_video_frames

    anim = settings.animation
    return read_video_frames(
        anim.video_init_path,
        every_nth=anim.extract_nth_frame,
        size=(settings.image.width, settings.image.height),
        max_frames=n_frames,
    )


def _frames_skip_fraction(settings: Settings) -> float:
    """Disco's ``frames_skip_steps`` (``"60%"`` or a step count) as a fraction of the steps."""
    v = settings.animation.frames_skip_steps.strip()
    if v.endswith("%"):
        return float(v[:-1]) / 100.0
    return min(int(v), settings.image.steps - 1) / settings.image.steps


# ---------------------------------------------------------------------------------------------- render


def _check_inputs(settings: Settings) -> None:
    """Files the run will read must exist and be readable before a run folder is made.

    Images (init image, image prompts) are opened and decoded now, URLs fetched once (the bytes are cached for
    the run): a missing, unreadable, corrupt or oversized image, or a dead link, fails here with one line.
    """
    from discolib.io.images import check_image

    if settings.animation.animation_mode == "Video Input":
        from discolib.io.video import video_info

        video_info(settings.animation.video_init_path)
    init = settings.guidance.init_image
    if init and Path(init).suffix.lower() in VIDEO_SUFFIXES:  # an animation may start from a video's first frame
        from discolib.io.video import video_info

        video_info(init, setting="guidance.init_image")
    elif init:
        check_image(init, setting="guidance.init_image")
    schedule = _image_prompt_schedule(settings)
    items = schedule.items(settings.n_frames()) if schedule else []
    for source in dict.fromkeys(p.text for _, fp in items for p in fp.positive):  # each distinct image once
        check_image(source, setting="prompts.image_prompts")
    anim = settings.animation.animation_mode != "None"
    if anim and settings.output.make_video and settings.output.soundtrack and settings.output.video_format == "mp4":
        from discolib.io.video import check_soundtrack

        check_soundtrack(settings.output.soundtrack)  # a bad audio file must not surface after the last frame
    from discolib.models.device import resolve_device

    resolve_device(settings.models.device)


def _n_frames(settings: Settings) -> int:
    return settings.n_frames() if settings.animation.animation_mode != "None" else settings.run.n_batches


def _prepare(
    settings: Settings, out: str | Path | None, resume: str | Path | None, *, force: bool = False
) -> tuple[Settings, RunFolder, RunRecord, int, RunLock]:
    """Validate, then open (resume) or create the run folder. Returns (settings as used, folder, record, first frame).

    A resume trusts nothing it has not checked: settings.json must hash as when the run started, and it continues
    from the first recorded frame that is missing or whose bytes changed; an unusable run.json is rebuilt from
    settings.json and the frames that decode.
    """
    if resume is not None:
        if str(resume) == "latest":
            folder = RunFolder.latest(Path(out) if out else Path(settings.run.output_root), settings.run.batch_name)
        else:
            folder = RunFolder.open(resume)
        lock = folder.lock()  # before anything is cleaned or read: no second process may be at work in it
        try:
            folder.clean_temporaries()
            record, problem = folder.try_read_record()
            if record is not None:
                folder.check_settings(record)  # before loading: "changed" says more than an error from the new file
            used = Settings.load(folder.settings_path)
            size = (used.image.width, used.image.height)
            n_frames = _n_frames(used)
            if record is None:
                record = folder.rebuild_record(size=size, n_frames=n_frames, reason=problem)
                start = record.frames_done
            else:
                start = folder.verify_frames(record, size=size, n_frames=n_frames)
        except BaseException:
            lock.release()
            raise
        return used, folder, record, start, lock
    settings = settings.copy()
    if out is not None:
        settings.run.output_root = str(out)
    settings.validate()
    _check_inputs(settings)
    from discolib.models.device import resolve_device
    from discolib.run.budget import check_budget

    # Before the run folder: a CPU run that cannot fit in memory or would take hours is refused with its figures.
    check_budget(settings, resolve_device(settings.models.device), force=force)
    if settings.run.seed == -1:
        settings.run.seed = secrets.randbelow(2**32)
    folder = RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json())
    return settings, folder, folder.read_record(), 0, folder.lock()


@contextmanager
def _recorded_threads(record: RunRecord, folder: RunFolder) -> Iterator[None]:
    """Render with the torch intra-op thread count the run was started with, restoring this process's afterwards.

    CPU kernels split their reductions by thread count, so the last bits of a frame depend on it; a resume with
    another count would continue the animation from frames it could not have made (docs/REPRODUCIBILITY.md). A
    record without a count (older versions, rebuilt records) takes this process's count from now on.
    """
    before = torch.get_num_threads()
    want = record.torch_threads
    if want <= 0:
        record.torch_threads, record.torch_interop_threads = before, torch.get_num_interop_threads()
        want = before
    if want > (os.cpu_count() or 1):
        warnings.warn(
            f"{folder.record_path}: the run started with {want} torch threads and this machine has {os.cpu_count()} "
            "cores; resuming with that count (needed for identical frames) will be slow",
            stacklevel=3,
        )
    if want != before:
        try:
            torch.set_num_threads(want)
        except (RuntimeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RunError(f"{folder.record_path}: cannot render with the {want} torch threads the run started with: {reason}") from None
        if torch.get_num_threads() != want:
            got = torch.get_num_threads()
            torch.set_num_threads(before)
            raise RunError(
                f"{folder.record_path}: the run started with {want} torch threads, but this process can only use {got}; "
                "frames rendered with another count differ in their last bits: resume where that count is available"
            )
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def render(
    settings: Settings,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    callback: EventCallback | None = None,
    stop: threading.Event | None = None,
    progress: bool = True,
    sampler: FrameSampler | None = None,
    force: bool = False,
) -> RenderResult:
    """Render the stills or the animation that ``settings`` describes into a run folder.

    Args:
        settings: validated here first; nothing runs on bad input.
        out: output root (overrides ``run.output_root``).
        resume: a run folder (or ``"latest"``) to continue from its last complete frame; its own settings.json
            is used and ``settings`` only names the batch for ``"latest"``.
        callback: receives :class:`~discolib.run.events.RenderEvent` s (previews every ``run.display_rate`` steps).
        stop: set it to stop after the current step; the run stays resumable.
        progress: show tqdm progress bars.
        sampler: an already built sampler to reuse (its settings must match).
        force: start a new CPU run even when its estimated memory or time is over the limits
            (:func:`discolib.run.budget.check_budget`); otherwise such a run is refused before anything is written.
    """
    settings, folder, record, start, lock = _prepare(settings, out, resume, force=force)
    with lock:  # released on every way out, so a later resume of this folder can take it
        emit = callback or (lambda _e: None)
        n_frames = _n_frames(settings)
        seeds = frame_seeds(settings, n_frames, settings.run.seed)
        with _recorded_threads(record, folder):
            record.frames_total = n_frames
            record.frames_done = start
            record.seeds = seeds[:start]
            record.frame_sha256 = record.frame_sha256[:start]
            record.status = "running"
            record.error = ""  # a failure of an earlier attempt is history once the run goes on
            folder.write_record(record)
            emit(RenderEvent("start", frame=start, total_frames=n_frames, path=folder.path))
            frames = [folder.frame_path(i) for i in range(start)]
            writer = FrameWriter(folder, record, _frame_emitter(emit, n_frames))
            video = None
            try:
                try:
                    if start < n_frames:
                        if sampler is None:
                            sampler = build_sampler(settings, progress=progress)
                        if settings.animation.animation_mode == "None":
                            _render_stills(settings, folder, sampler, seeds, start, writer, frames, emit, stop, progress)
                        else:
                            _render_animation(settings, folder, sampler, seeds, start, writer, frames, emit, stop, progress)
                except BaseException:
                    writer.close(raise_errors=False)  # keep the frames handed over; the first error is the one reported
                    raise
                writer.close()  # every frame handed over is on disk before the run's status changes
                if settings.animation.animation_mode != "None" and settings.output.make_video:
                    video = _write_video(settings, folder, n_frames, final=True)
            except RenderStopped:
                record.status = "interrupted"
                folder.write_record(record)
                emit(RenderEvent("stopped", frame=record.frames_done, total_frames=n_frames, path=folder.path))
                return RenderResult(folder.path, "stopped", frames, None, seeds[: record.frames_done])
            except BaseException as exc:
                record.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                record.error = f"{type(exc).__name__}: {exc}"
                try:
                    folder.write_record(record)
                except OSError:
                    pass  # a full disk that stopped the frames stops this too: the error being raised says where
                emit(RenderEvent("error", frame=record.frames_done, total_frames=n_frames, path=folder.path, message=str(exc)))
                raise
            record.status = "done"
            folder.write_record(record)
        emit(RenderEvent("done", frame=n_frames, total_frames=n_frames, path=folder.path))
        return RenderResult(folder.path, "done", frames, video, seeds)


def _write_video(settings: Settings, folder: RunFolder, n_frames: int, *, final: bool) -> Path:
    """The run's frames ``0 .. n_frames - 1`` as a video: an explicit list, never the folder, so a stray or
    leftover PNG in ``frames/`` never ends up in it."""
    from discolib.io.video import frames_to_video

    fmt = settings.output.video_format
    name = f"video.{fmt}" if final else f"preview.{fmt}"
    soundtrack = Path(settings.output.soundtrack) if settings.output.soundtrack and final else None
    paths = [folder.frame_path(i) for i in range(n_frames)]
    return frames_to_video(paths, folder.path / name, fps=settings.output.fps, fmt=fmt, soundtrack=soundtrack)


def _step_callback(
    sampler: FrameSampler, settings: Settings, folder: RunFolder, frame: int, n_frames: int, emit: EventCallback
) -> Callable[[dict[str, Any]], None]:
    """Sampler step -> RenderEvent, with a preview every display_rate steps and Disco's intermediate saves."""
    rate = settings.run.display_rate
    n_saves = settings.run.intermediate_saves
    save_at: set[int] = set()
    preview_fn = getattr(sampler, "preview", None)

    def cb(info: dict[str, Any]) -> None:
        i, n = int(info["i"]), int(info["n"])
        if i == 0 and n_saves:
            # Evenly spaced over the steps this image actually runs (after skipped steps / img2img strength).
            save_at.clear()
            save_at.update(int(round(k * n / (n_saves + 1))) for k in range(1, n_saves + 1))
        preview = None
        due = (rate and (i % rate == 0 or i == n - 1)) or i in save_at
        if due:
            preview = info.get("preview")
            if preview is None and preview_fn is not None:
                preview = preview_fn(info)
            if preview is not None:
                preview = preview.detach().float().clamp(0, 1).cpu()
        if i in save_at and preview is not None:
            save_png_atomic(folder.path / "intermediates" / f"{frame:06d}_{i:04d}.png", preview)
        emit(RenderEvent("step", frame=frame, total_frames=n_frames, step=i + 1, total_steps=n, preview=preview))

    return cb


def _to_uint8(image: torch.Tensor) -> Any:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8 for the writer: the one device-to-host copy per frame.

    On CUDA the copy goes to pinned memory without a host sync (:class:`discolib.run.runs.PendingFrame`); the
    writer thread waits for it, so the loop can queue the next frame while the GPU finishes this one.
    """
    frame = image[0].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0)
    return PendingFrame.from_tensor(frame.contiguous())


def _finish_frame(
    writer: FrameWriter,
    frames: list[Path],
    i: int,
    image: torch.Tensor,
    seed: int,
) -> None:
    """Hand frame ``i`` to the background writer (it writes the PNG, then the record, then emits ``frame``)."""
    frames.append(writer.submit(i, _to_uint8(image), seed))


def _frame_emitter(emit: EventCallback, n_frames: int) -> Callable[[int, Path, np.ndarray], None]:
    def on_written(i: int, path: Path, array: np.ndarray) -> None:
        preview = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div(255)
        emit(RenderEvent("frame", frame=i, total_frames=n_frames, path=path, preview=preview))

    return on_written


def _image_prompt_schedule(settings: Settings) -> PromptSchedule | None:
    """Disco's image prompts ({frame: ["path.png:weight", ...]}); None when there are none."""
    if not settings.prompts.image_prompts:
        return None
    return PromptSchedule.from_any(settings.prompts.image_prompts, setting="prompts.image_prompts")


def _render_stills(
    settings: Settings,
    folder: RunFolder,
    sampler: FrameSampler,
    seeds: list[int],
    start: int,
    writer: FrameWriter,
    frames: list[Path],
    emit: EventCallback,
    stop: threading.Event | None,
    progress: bool,
) -> None:
    prompts = PromptSchedule.from_any(settings.prompts.text_prompts, setting="prompts.text_prompts").at(0)
    image_schedule = _image_prompt_schedule(settings)
    image_prompts = image_schedule.at(0) if image_schedule else None
    n = len(seeds)
    for i in tqdm(range(start, n), disable=not progress, desc="images", initial=start, total=n):
        req = FrameRequest(
            seed=seeds[i],
            prompts=prompts,
            image_prompts=image_prompts,
            callback=_step_callback(sampler, settings, folder, i, n, emit),
            stop=stop,
        )
        image = sampler(req)
        _finish_frame(writer, frames, i, image, seeds[i])


def _render_animation(
    settings: Settings,
    folder: RunFolder,
    sampler: FrameSampler,
    seeds: list[int],
    start: int,
    writer: FrameWriter,
    frames: list[Path],
    emit: EventCallback,
    stop: threading.Event | None,
    progress: bool,
) -> None:
    anim = settings.animation
    n = len(seeds)
    device = sampler.device
    sv = evaluate_schedules(settings, n, settings.run.seed)
    prompt_schedule = PromptSchedule.from_any(settings.prompts.text_prompts, setting="prompts.text_prompts")
    image_schedule = _image_prompt_schedule(settings)
    state = AnimationState()
    if anim.animation_mode == "3D":
        from discolib.models.depth import ConstantDepth, blend_depth

        m = settings.models
        if anim.use_depth_warping:
            est = _load_depth(m.depth_model, device, random_ok=m.random_weights)
            if m.depth_model_2:
                est = blend_depth([(est, 1 - m.depth_weight_2), (_load_depth(m.depth_model_2, device, random_ok=m.random_weights), m.depth_weight_2)])
            state.depth = est
        else:
            state.depth = ConstantDepth(1.0)
        if anim.save_depth_maps:
            state.depth_dir = folder.path / "depth"
            state.depth_dir.mkdir(exist_ok=True)
    video: Iterator[torch.Tensor] | None = None
    if anim.animation_mode == "Video Input":
        video = _video_frames(settings, n)
        for _ in range(start):  # frames already rendered: skip their inputs
            next(video, None)
    prev: torch.Tensor | None = None
    if start > 0:
        prev = _load_frame(folder.frame_path(start - 1), device)
        state.color_ref = _load_frame(folder.frame_path(0), device)
    guided = settings.image.mode == "guided"
    skip_fraction = _frames_skip_fraction(settings) if guided else 0.0
    first_init = _first_init(settings, video, device) if start == 0 else None
    for i in tqdm(range(start, n), disable=not progress, desc="frames", initial=start, total=n):
        prompts = prompt_schedule.at(i, n)
        ip = image_schedule.at(i, n) if image_schedule else None
        cb = _step_callback(sampler, settings, folder, i, n, emit)
        if video is not None:
            frame_in = first_init if i == 0 else next(video, None)
            if frame_in is None:
                raise SettingsError(
                    f"the video has fewer usable frames than max_frames ({n}) at extract_nth_frame "
                    f"{anim.extract_nth_frame}; lower animation.max_frames",
                    field="animation.video_init_path",
                )
            image = _sample(sampler, settings, seeds[i], prompts, frame_in.to(device), i, sv, guided, skip_fraction, cb, stop, ip)
        elif prev is None:
            image = _first_frame(sampler, settings, seeds[i], prompts, first_init, cb, stop, ip, float(sv["cfg_scale_schedule"][0]))
        else:
            warped, mask = _warp(prev, settings, sv, i, state)
            in_preroll = guided and i < anim.turbo_preroll
            pure_motion = not guided and float(sv["strength_schedule"][i]) >= 1.0
            if (anim.cadence > 1 and i % anim.cadence != 0 and not in_preroll) or pure_motion:
                # Cadence / turbo: motion only between diffusion frames. Latent strength 1 keeps the warped frame
                # as it is (pure depth parallax): no noise is added that no sampler would take out again.
                image = warped
            else:
                init = _coherence(warped, mask, settings, sv, i, state, seeds[i])
                image = _sample(sampler, settings, seeds[i], prompts, init, i, sv, guided, skip_fraction, cb, stop, ip)
        image = _quantize(image)
        if i == 0:
            state.color_ref = image
        _finish_frame(writer, frames, i, image, seeds[i])
        prev = image
        every = settings.output.preview_video_every
        if every and (i + 1) % every == 0 and i + 1 < n:
            writer.flush()  # the preview video shows every frame so far
            _write_video(settings, folder, i + 1, final=False)


def _load_depth(name: str, device: torch.device, *, random_ok: bool) -> Any:
    """A depth estimator, loaded once per process; Depth Anything V2 Small with random weights when allowed."""
    from discolib.models.depth import DEFAULT_DEPTH_MODEL, DepthModelUnavailable, load_depth

    try:
        return load_depth(name, device)
    except DepthModelUnavailable as exc:
        if not (random_ok and name == DEFAULT_DEPTH_MODEL):
            raise
        from discolib.models.archs import random_depth_anything_small, warn_random

        warn_random(f"models.depth_model {name!r}", str(exc).split(". ")[0])
        return random_depth_anything_small(device, torch.float32)


def _first_init(settings: Settings, video: Iterator[torch.Tensor] | None, device: torch.device) -> torch.Tensor | None:
    """Frame 0's init: the video's first frame in Video Input mode, else the settings' init image."""
    if video is not None:
        return next(video, None)
    path = settings.guidance.init_image
    if path:
        size = (settings.image.width, settings.image.height)
        if Path(path).suffix.lower() in VIDEO_SUFFIXES:
            from discolib.io.video import first_frame

            return first_frame(path, size, setting="guidance.init_image").to(device)  # animate a video's first frame
        from discolib.io.images import load_image

        return load_image(path, size, setting="guidance.init_image").to(device)
    return None


def _first_frame(
    sampler: FrameSampler,
    settings: Settings,
    seed: int,
    prompts: Any,
    init: torch.Tensor | None,
    cb: Callable[[dict[str, Any]], None],
    stop: threading.Event | None,
    image_prompts: Any = None,
    cfg_scale: float | None = None,
) -> torch.Tensor:
    """Frame 0: from noise, or from the init image (Disco: ``skip_steps``; Deforum: ``strength``).

    With latent ``strength`` 1 the init image is kept as it is: "animate a photo" without diffusion.
    """
    if init is not None:
        if settings.image.mode == "latent" and settings.latent.strength >= 1.0:
            return init
        keep = settings.latent.strength if settings.image.mode == "latent" else settings.guidance.skip_steps / settings.image.steps
        return sampler(FrameRequest(
            seed=seed, prompts=prompts, image_prompts=image_prompts, init=init, init_strength=keep,
            cfg_scale=cfg_scale, callback=cb, stop=stop,
        ))
    return sampler(FrameRequest(seed=seed, prompts=prompts, image_prompts=image_prompts, cfg_scale=cfg_scale, callback=cb, stop=stop))


def _sample(
    sampler: FrameSampler,
    settings: Settings,
    seed: int,
    prompts: Any,
    init: torch.Tensor,
    i: int,
    sv: dict[str, np.ndarray],
    guided: bool,
    skip_fraction: float,
    cb: Callable[[dict[str, Any]], None],
    stop: threading.Event | None,
    image_prompts: Any = None,
) -> torch.Tensor:
    """One img2img frame: Disco's frames_skip_steps/frames_scale, or Deforum's strength and cfg schedules.

    A latent strength of 1 keeps the warped frame as it is (no diffusion: pure depth parallax).
    """
    if guided:
        req = FrameRequest(
            seed=seed, prompts=prompts, image_prompts=image_prompts, init=init, init_strength=skip_fraction,
            init_scale=settings.animation.frames_scale, callback=cb, stop=stop,
        )
        return sampler(req)
    keep = float(sv["strength_schedule"][i])
    if keep >= 1.0:
        return init
    req = FrameRequest(
        seed=seed, prompts=prompts, image_prompts=image_prompts, init=init, init_strength=keep,
        cfg_scale=float(sv["cfg_scale_schedule"][i]), callback=cb, stop=stop,
    )
    return sampler(req)


def load_run_settings(run_dir: str | Path) -> Settings:
    """The settings a run folder was made with."""
    return Settings.load(RunFolder.open(run_dir).settings_path)
