"""The render loop: stills and animations of both samplers into a run folder, resumable exactly.

One run: validate the settings and the files they name -> check the CPU budget -> make (or reopen) the run folder
-> build the :class:`~discolib.animation.plan.RenderPlan` (frame count, seeds, every schedule evaluated once) ->
per frame, the :class:`~discolib.animation.step.AnimationStep` says what the frame starts from (warp ->
coherence -> cadence rule) and the sampler diffuses it -> the frame is handed to the background
:class:`~discolib.run.runs.FrameWriter` (PNG written atomically, then ``run.json``) -> the video.

Each frame depends only on 8-bit images the run folder keeps: the previous frame, or with cadence the last two
diffused samples (``kept/diffused/``; the step replays their warps up to the resume point), and the colour
reference (``kept/color_ref.png``), each on disk before any frame made from it; so ``--resume`` produces frames byte-identical to an uninterrupted run on the CPU
(on CUDA, nondeterministic kernels such as the atomic adds in ``grid_sample``'s backward pass can change the last
bits of guided frames). A resume renders with the torch thread count recorded when the run started, refuses a
``settings.json`` changed since, and continues from the first recorded frame that is missing or whose bytes
changed (docs/REPRODUCIBILITY.md). Nothing here branches on the sampler family: the sampler's
:class:`~discolib.animation.policy.AnimationPolicy` answers the animation step's questions.
"""

from __future__ import annotations

import os
import secrets
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from discolib.animation.plan import RenderPlan, check_inputs, plan_audio
from discolib.animation.step import AnimationStep, FrameInit
from discolib.animation.video_input import VideoInput
from discolib.config.settings import Settings, read_settings_json
from discolib.errors import InputError, one_line
from discolib.io.files import save_png_atomic
from discolib.io.images import load_image
from discolib.io.video import frames_to_video
from discolib.models.depth import ConstantDepth, DepthEstimator, blend_depth
from discolib.models.device import resolve_device
from discolib.models.hub import use_models_root
from discolib.models.load import library_progress_bars, load_depth_estimator
from discolib.models.translate import RECORD_KEY, translate_settings
from discolib.run.adapter import build_sampler
from discolib.run.budget import check_budget
from discolib.run.events import EventCallback, RenderEvent, RenderResult
from discolib.run.runs import (
    FrameWriter,
    PendingFrame,
    RunError,
    RunFolder,
    RunLock,
    RunRecord,
    package_versions,
    threads_for,
)
from discolib.run.stereo import EyeWriter, missing_eye_frames, write_stereo_video
from discolib.samplers.base import FrameRequest, FrameSampler, RenderStopped, check_stop

__all__ = ["render", "depth_estimator", "frame_request", "load_run_settings"]


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
                made_with, now = record.versions.get("discolib"), package_versions().get("discolib")
                if made_with and made_with != now:
                    warnings.warn(
                        f"{folder.record_path}: the run was started with discolib {made_with} and this is {now}: the "
                        "frames rendered from here on may differ from those the first version would have made",
                        stacklevel=3,
                    )
            used = Settings.load(folder.settings_path)
            data, _ = read_settings_json(folder.settings_path)
            if isinstance(data.get("animation"), dict) and "frames_8bit" not in data["animation"]:
                # A run started before animation.frames_8bit existed made its frames in float: it resumes so.
                used.animation.frames_8bit = False
            size = (used.image.width, used.image.height)
            n_frames = used.n_frames()
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
    check_inputs(settings)
    device = resolve_device(settings.models.device)
    # Before the run folder: a CPU run that cannot fit in memory or would take hours is refused with its figures.
    check_budget(settings, device, force=force)
    if settings.run.seed == -1:
        settings.run.seed = secrets.randbelow(2**32)
    # The count is fixed now and recorded: a resume renders with it whatever models.threads resolves to later.
    threads = threads_for(settings.models.threads)
    folder = RunFolder.create(settings.run.output_root, settings.run.batch_name, settings.to_json(), threads=threads)
    return settings, folder, folder.read_record(), 0, folder.lock()


#: run.json's extra key for the SHA-256 of the soundtrack a run's schedules read.
SOUNDTRACK_KEY = "soundtrack_sha256"


def _record_soundtrack(plan: RenderPlan, folder: RunFolder, record: RunRecord) -> None:
    """Record the song the schedules follow; a resume whose song changed since is refused (its motion would
    differ from the frames on disk)."""
    if plan.audio is None:
        return
    sha = plan.audio.analysis.sha256
    recorded = record.extra.get(SOUNDTRACK_KEY)
    if recorded is not None and recorded != sha:
        raise RunError(
            f"output.soundtrack: the file changed since the run started (SHA-256 {str(recorded)[:12]}... then, "
            f"{sha[:12]}... now) and the schedules follow it: restore that file or start a new run"
        )
    record.extra[SOUNDTRACK_KEY] = sha


@contextmanager
def cpu_threads(want: int) -> Iterator[int]:
    """torch's intra-op and OpenCV's thread counts set to ``want`` for the block, both restored after; yields the
    count torch took (a process may be unable to use ``want``). OpenCV's pool too: its CPU stages (2D warp, colour
    match) would otherwise start a thread per core."""
    before, cv_before = torch.get_num_threads(), cv2.getNumThreads()
    try:
        if want != before:
            torch.set_num_threads(want)
        cv2.setNumThreads(want)
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
        cv2.setNumThreads(cv_before)


@contextmanager
def _recorded_threads(record: RunRecord, folder: RunFolder, setting: int) -> Iterator[int]:
    """Render with the thread count the run was started with (torch's intra-op threads and OpenCV's), restoring
    this process's counts afterwards; yields the count.

    CPU kernels split their reductions by thread count, so the last bits of a frame depend on it; a resume with
    another count would continue the animation from frames it could not have made (docs/REPRODUCIBILITY.md). A
    record without a count (older versions, rebuilt records) takes the count of ``setting`` (``models.threads``
    of the run's settings, 0 = auto) from now on.
    """
    want = record.torch_threads
    if want <= 0:
        want = threads_for(setting)
        record.torch_threads, record.torch_interop_threads = want, torch.get_num_interop_threads()
    if want > (os.cpu_count() or 1):
        warnings.warn(
            f"{folder.record_path}: the run started with {want} torch threads and this machine has {os.cpu_count()} "
            "cores; resuming with that count (needed for identical frames) will be slow",
            stacklevel=3,
        )
    with ExitStack() as stack:
        try:
            got = stack.enter_context(cpu_threads(want))
        except (RuntimeError, ValueError) as exc:
            reason = one_line(exc, None, lines="first") or type(exc).__name__
            raise RunError(f"{folder.record_path}: cannot render with the {want} torch threads the run started with: {reason}") from None
        if got != want:
            raise RunError(
                f"{folder.record_path}: the run started with {want} torch threads, but this process can only use {got}; "
                "frames rendered with another count differ in their last bits: resume where that count is available"
            )
        yield want


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
    # The run's own models_root (a resume keeps its run's): checkpoints and hub snapshots load from / download there.
    with lock, use_models_root(settings.models.models_root):  # the lock is released on every way out
        emit = callback or (lambda _e: None)
        # prompts.translate (latent mode): the prompts this run renders, translated once and recorded in run.json;
        # a resume replays the record instead of translating again (settings.json keeps the user's own text).
        try:
            with library_progress_bars(progress):
                settings, translation = translate_settings(settings, recorded=record.extra.get(RECORD_KEY))
        except BaseException as exc:  # the run folder exists: it says why it has no frames (a resume retries)
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            folder.write_record(record)
            raise
        if translation:
            record.extra[RECORD_KEY] = translation
        # The song's analysis is cached beside the run (its batch folder), wherever the process runs from: a resume
        # started in another working directory still finds it (the settings' output_root may be relative).
        audio = plan_audio(settings, folder.path.parent / ".cache" / "audio")
        plan = RenderPlan.from_settings(settings, audio=audio)
        _record_soundtrack(plan, folder, record)
        n_frames, seeds = plan.n_frames, list(plan.seeds)
        with _recorded_threads(record, folder, settings.models.threads) as threads:
            record.frames_total = n_frames
            record.frames_done = start
            record.seeds = seeds[:start]
            record.frame_sha256 = record.frame_sha256[:start]
            record.status = "running"
            record.error = ""  # a failure of an earlier attempt is history once the run goes on
            folder.write_record(record)
            emit(RenderEvent("start", frame=start, total_frames=n_frames, path=folder.path))
            frames = [folder.frame_path(i) for i in range(start)]
            # PNG encoders: half the render's threads, at most 4 (as FrameWriter's default does with the cores).
            writer = FrameWriter(folder, record, _frame_emitter(emit, n_frames, seeds), encoders=min(4, max(1, threads // 2)))
            run = _Run(plan, folder, writer, frames, emit, stop, progress)
            video = None
            try:
                try:
                    eyes_missing = settings.animation.vr_mode and bool(missing_eye_frames(folder.path, n_frames))
                    if start < n_frames or eyes_missing:  # (a finished run may still lack stereo pairs a crash lost)
                        # Models may load lazily during the first frames: the libraries' bars stay off throughout.
                        with library_progress_bars(progress):
                            if sampler is None:
                                sampler = build_sampler(settings, progress=progress)
                            check_stop(stop)  # a Stop pressed while the models loaded ends the run before frame 1
                            _render_frames(run, sampler, start)
                except BaseException:
                    run.writer.close(raise_errors=False)  # keep the frames handed over; the first error is the one reported
                    raise
                run.writer.close()  # every frame handed over is on disk before the run's status changes
                if plan.animated and settings.output.make_video:
                    video = _write_video(settings, folder, n_frames, final=True)
                    if settings.animation.vr_mode:
                        _write_stereo_video(settings, folder, n_frames, final=True)
                    _write_blend_video(plan, folder)
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


@dataclass
class _Run:
    """What the frame loop of one render shares: the plan, where frames go, and who is told."""

    plan: RenderPlan
    folder: RunFolder
    writer: FrameWriter
    frames: list[Path]
    emit: EventCallback
    stop: threading.Event | None
    progress: bool
    written: list[int] = field(default_factory=list)


def _render_frames(run: _Run, sampler: FrameSampler, start: int) -> None:
    """Frames ``start .. n - 1``: each from its FrameInit, diffused unless final, quantised, handed to the writer."""
    plan, device = run.plan, sampler.device
    s = plan.settings
    if not plan.animated:
        init = plan.init_image(device)
        for i in tqdm(range(start, plan.n_frames), disable=not run.progress, desc="images", initial=start, total=plan.n_frames):
            check_stop(run.stop)
            _finish_frame(run, i, _sample(run, sampler, i, _still_init(plan, init)))
        return
    step = AnimationStep(
        plan,
        sampler.policy,
        device,
        depth=depth_estimator(s, device) if plan.motion == "3D" else None,
        depth_dir=_depth_dir(run) if plan.motion == "3D" else None,
        start=start,
        store=_KeptImages(run, device),
    )
    if step.start < start:  # a kept image the resume needed was missing: the frames from its frame on are made again
        warnings.warn(
            f"{run.folder.path}: an image the resume needs is missing from kept/ (or frames/); rendering again from "
            f"frame {step.start} instead of {start}",
            stacklevel=3,
        )
        run.emit(RenderEvent("start", frame=step.start, total_frames=plan.n_frames, path=run.folder.path))
        start = step.start
        del run.frames[start:]
    n = plan.n_frames
    every = s.output.preview_video_every
    # VR mode (Disco): each written frame's stereo pair, from the frame as written and the 3D warp's camera.
    eyes = EyeWriter.from_settings(s, run.folder.path, depth_fn=step.depth_of, camera_fn=step.camera)
    if eyes is not None and start > 0:  # pairs a crash lost for done frames: remade from the frames as written
        eyes.regenerate(eyes.missing(start), lambda k: load_image(run.folder.frame_path(k)).to(device))
    try:
        for i in tqdm(range(start, n), disable=not run.progress, desc="frames", initial=start, total=n):
            # Here too, not only between sampler steps: cadence frames and kept inits never reach the sampler.
            check_stop(run.stop)
            frame_init = step.first() if i == 0 else step(i)
            # The step turns the sample into the frame to write (a cadence blend; 8-bit, as the loop continues from it).
            image = step.finish(i, _sample(run, sampler, i, frame_init))
            step.written(image, _finish_frame(run, i, image))
            if eyes is not None:
                eyes(i, image)
            if every and (i + 1) % every == 0 and i + 1 < n:
                run.writer.flush()  # the preview video shows every frame so far
                _write_video(s, run.folder, i + 1, final=False)
                if eyes is not None:
                    eyes.flush()
                    _write_stereo_video(s, run.folder, i + 1, final=False)
    except BaseException:
        if eyes is not None:
            eyes.close(raise_errors=False)
        raise
    if eyes is not None:
        eyes.close()


def _write_blend_video(plan: RenderPlan, folder: RunFolder) -> Path | None:
    """Disco's blended output video of a guided Video Input run (``video_init_blend_mode``: linear, or the previous
    written frame warped by the video's flow onto the next), ``video_blend.<fmt>`` beside the plain video; None when
    the mode is off or does not apply.

    Made after the last frame from the frames as written and the video (its frames in ``frames_blend/``), as Disco's
    video cell does after its run: a resumed run gets the same video.
    """
    settings, n_frames = plan.settings, plan.n_frames
    anim, out = settings.animation, settings.output
    mode = anim.video_init_blend_mode
    if anim.animation_mode != "Video Input" or settings.image.mode != "guided" or mode == "None":
        return None
    if mode == "optical flow" and not anim.video_init_flow_warp:
        warnings.warn(
            "animation.video_init_blend_mode 'optical flow' needs animation.video_init_flow_warp (the flow): "
            "no blended video was made",
            stacklevel=3,
        )
        return None
    device = resolve_device(settings.models.device)
    if mode == "optical flow":
        video = VideoInput.from_settings(settings, plan.video_frames(0), device=device)
    else:  # the linear blend reads no flow: no flow estimator (RAFT) to build
        video = VideoInput(plan.video_frames(0), device=device)
    paths: list[Path] = []
    prev: torch.Tensor | None = None
    for i in range(n_frames):
        cur = load_image(folder.frame_path(i)).to(device)
        frame = cur if prev is None else video.output_frame(i, prev, cur, mode, anim.video_output_blend)
        paths.append(save_png_atomic(folder.path / "frames_blend" / f"{i:06d}.png", frame.clamp(0, 1)))
        prev = cur
    name = f"video_blend.{out.video_format}"
    return frames_to_video(paths, folder.path / name, fps=out.fps, fmt=out.video_format, threads=torch.get_num_threads())


def _write_stereo_video(settings: Settings, folder: RunFolder, n_frames: int, *, final: bool) -> Path:
    """VR mode's side-by-side video of the eye frames ``0 .. n_frames - 1`` (left eye on the left)."""
    out = settings.output
    soundtrack = out.soundtrack if out.soundtrack and final else None
    return write_stereo_video(
        folder.path, n_frames, fps=out.fps, fmt=out.video_format, soundtrack=soundtrack,
        threads=torch.get_num_threads(), final=final,
    )


class _KeptImages:
    """The animation step's :class:`~discolib.animation.step.FrameStore` on a run folder: images go through the
    run's writer (in order with the frames, so an image is on disk before any frame made from it), ``kept/`` in
    the run folder; ``frames/...`` names read written frames."""

    def __init__(self, run: _Run, device: torch.device) -> None:
        self.run, self.device = run, device

    def _path(self, name: str) -> Path:
        if name.startswith("frames/"):
            return self.run.folder.frame_path(int(name.split("/", 1)[1]))
        return self.run.folder.kept_path(name)

    def save(self, name: str, image: torch.Tensor) -> None:
        self.run.writer.submit_image(self._path(name), PendingFrame.from_image(image))

    def load(self, name: str) -> torch.Tensor | None:
        path = self._path(name)
        size = (self.run.plan.settings.image.width, self.run.plan.settings.image.height)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an image of another size is not one this run kept
                image = load_image(path, size, setting=str(path))
        except (InputError, OSError, UserWarning, ValueError):
            return None
        return image.to(self.device)


def _still_init(plan: RenderPlan, init: torch.Tensor | None) -> FrameInit:
    """A still's init: the settings' init image with ``first_strength`` (Disco's ``skip_steps``, Deforum's
    ``strength``; always diffused, even at strength 1), or noise."""
    return FrameInit(init, strength=plan.first_strength) if init is not None else FrameInit(None)


def frame_request(
    plan: RenderPlan,
    i: int,
    frame_init: FrameInit,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
) -> FrameRequest:
    """The sampler request of frame ``i`` that starts from ``frame_init`` (not a final one): seed, prompts, init."""
    prompts, image_prompts = plan.prompts_at(i)
    return FrameRequest(
        seed=plan.seeds[i],
        prompts=prompts,
        image_prompts=image_prompts,
        init=frame_init.image,
        init_strength=frame_init.strength,
        cfg_scale=frame_init.cfg_scale,
        init_scale=frame_init.init_scale,
        callback=callback,
        stop=stop,
    )


def _sample(run: _Run, sampler: FrameSampler, i: int, frame_init: FrameInit) -> torch.Tensor:
    """Frame ``i`` from its FrameInit: the sampler's image ``(1, 3, H, W)`` in [0, 1], or the init itself if final."""
    if frame_init.final:
        assert frame_init.image is not None
        return frame_init.image
    return sampler(frame_request(run.plan, i, frame_init, callback=_step_callback(sampler, run, i), stop=run.stop))


def depth_estimator(settings: Settings, device: torch.device) -> DepthEstimator:
    """The 3D warp's depth: the depth model (blended with a second one when set), or flat without depth warping."""
    m = settings.models
    if not settings.animation.use_depth_warping:
        return ConstantDepth(1.0)
    est = load_depth_estimator(m.depth_model, device, random_ok=m.random_weights)
    if m.depth_model_2:
        second = load_depth_estimator(m.depth_model_2, device, random_ok=m.random_weights)
        est = blend_depth([(est, 1 - m.depth_weight_2), (second, m.depth_weight_2)])
    return est


def _depth_dir(run: _Run) -> Path | None:
    """``depth/`` in the run folder when ``animation.save_depth_maps`` is on."""
    if not run.plan.settings.animation.save_depth_maps:
        return None
    path = run.folder.path / "depth"
    path.mkdir(exist_ok=True)
    return path


def _finish_frame(run: _Run, i: int, image: torch.Tensor) -> Any:
    """Hand frame ``i`` to the background writer (it writes the PNG, then the record, then emits ``frame``).
    Returns what was handed over: the uint8 ``(H, W, 3)`` array on the CPU (the 8-bit step warps it next), else a
    :class:`~discolib.run.runs.PendingFrame`."""
    frame = PendingFrame.from_image(image)
    run.frames.append(run.writer.submit(i, frame, run.plan.seeds[i]))
    return frame


def _write_video(settings: Settings, folder: RunFolder, n_frames: int, *, final: bool) -> Path:
    """The run's frames ``0 .. n_frames - 1`` as a video: an explicit list, never the folder, so a stray or
    leftover PNG in ``frames/`` never ends up in it."""

    fmt = settings.output.video_format
    name = f"video.{fmt}" if final else f"preview.{fmt}"
    soundtrack = Path(settings.output.soundtrack) if settings.output.soundtrack and final else None
    paths = [folder.frame_path(i) for i in range(n_frames)]
    # Called inside _recorded_threads: torch's count is the run's, and ffmpeg gets the same.
    threads = torch.get_num_threads()
    return frames_to_video(paths, folder.path / name, fps=settings.output.fps, fmt=fmt, soundtrack=soundtrack, threads=threads)


def _step_callback(sampler: FrameSampler, run: _Run, frame: int) -> Callable[[dict[str, Any]], None]:
    """Sampler step -> RenderEvent, with a preview every display_rate steps and Disco's intermediate saves."""
    settings, folder, n_frames, emit = run.plan.settings, run.folder, run.plan.n_frames, run.emit
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


def _frame_emitter(emit: EventCallback, n_frames: int, seeds: list[int]) -> Callable[[int, Path, np.ndarray], None]:
    def on_written(i: int, path: Path, array: np.ndarray) -> None:
        preview = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float().div(255)
        emit(RenderEvent("frame", frame=i, total_frames=n_frames, path=path, preview=preview, seed=seeds[i]))

    return on_written


def load_run_settings(run_dir: str | Path) -> Settings:
    """The settings a run folder was made with."""
    return Settings.load(RunFolder.open(run_dir).settings_path)
