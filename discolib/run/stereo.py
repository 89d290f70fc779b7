"""VR stereo output of a 3D run (``animation.vr_mode``): eye frames in the run folder and a side-by-side video.

Layout added to the run folder (:mod:`discolib.run.runs`)::

    frames_l/000000.png   left eye of frame 0, written atomically
    frames_r/000000.png   right eye of frame 0
    video_sbs.mp4         left | right, full width (2W x H): the layout VR180 tools and players take

Disco v5.7 writes ``frame_0000_l.png`` / ``frame_0000_r.png`` beside the frames and leaves the video to the user;
here each eye is a numbered sequence like ``frames/`` (ffmpeg reads it directly) and the video is made with the
run's. As in Disco, every written frame gets its eye views -- diffused frames and cadence/turbo in-between frames
alike -- made from the frame *as written* (after any blending and the 8-bit rounding) and the depth of that frame.

Resume: an eye frame depends only on its written frame (and that frame's depth), so eye frames that a crash left
missing for frames already done are remade from the written frames (:meth:`EyeWriter.missing`,
:meth:`EyeWriter.regenerate`) and the result is byte-identical to an uninterrupted run. Eye frames of frames not
yet done are simply rewritten when their frame is rendered again.

Usage in a render loop (``depth_fn`` and ``camera_fn`` the 3D step's own)::

    eyes = EyeWriter.from_settings(settings, run_dir, depth_fn=depth_fn, camera_fn=camera_fn)
    eyes.regenerate(eyes.missing(start), load_frame)   # on resume
    for i in ...:
        eyes(i, frame)                                  # after the frame is handed to the writer
    eyes.close()
    write_stereo_video(run_dir, n_frames, fps=fps)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import torch

from discolib.animation.stereo import DISCO_SPHERICAL_MAGNITUDE, eye_views
from discolib.io.files import save_png_atomic
from discolib.io.video import stereo_to_video
from discolib.run.runs import FRAME_PATTERN, PendingFrame

__all__ = ["EYES", "EyeWriter", "eye_dir", "eye_frame_path", "missing_eye_frames", "write_stereo_video"]

#: The eyes and their folders in a run folder.
EYES: tuple[str, str] = ("l", "r")

DepthFn = Callable[[torch.Tensor], torch.Tensor]
CameraFn = Callable[[int], Mapping[str, Any]]


def eye_dir(run_dir: str | Path, eye: str) -> Path:
    """``frames_l`` / ``frames_r`` of a run folder."""
    if eye not in EYES:
        raise ValueError(f"eye must be one of {EYES}, got {eye!r}")
    return Path(run_dir) / f"frames_{eye}"


def eye_frame_path(run_dir: str | Path, eye: str, index: int) -> Path:
    """The PNG of eye ``eye`` (``"l"`` / ``"r"``) of frame ``index``."""
    return eye_dir(run_dir, eye) / f"{index:06d}.png"


def missing_eye_frames(run_dir: str | Path, n_frames: int) -> list[int]:
    """Frames ``0 .. n_frames - 1`` that lack either eye's PNG (under its final name), sorted."""
    have: list[set[int]] = []
    for eye in EYES:
        folder = eye_dir(run_dir, eye)
        names = (FRAME_PATTERN.match(p.name) for p in folder.iterdir()) if folder.is_dir() else iter(())
        have.append({int(m.group(1)) for m in names if m})
    both = have[0] & have[1]
    return [i for i in range(n_frames) if i not in both]


def _write_pair(paths: tuple[Path, Path], frames: tuple[Any, Any]) -> None:
    for path, frame in zip(paths, frames, strict=True):
        save_png_atomic(path, PendingFrame.resolve(frame))


class EyeWriter:
    """Renders and writes the eye frames of a run, one written frame at a time.

    The eye views are computed on the frame's device; their PNGs are encoded and written (atomically) on one
    background thread, at most ``max_pending`` frames behind. :meth:`flush` / :meth:`close` wait for them and
    re-raise the first write error.

    Args:
        run_dir: the run folder (``frames_l/`` and ``frames_r/`` are made in it).
        depth_fn: a frame ``(1, 3, H, W)`` -> its depth ``(1, 1, H, W)`` in the reprojection's world units: the 3D
            step's own depth (estimator + scaling), so the eyes see the scene the animation moves through.
        camera_fn: frame index -> keyword arguments of :func:`~discolib.animation.motion.reproject_3d` for that
            frame (``fov_deg``, ``padding_mode``, ``sampling_mode`` and any camera-model parameters).
        eye_angle_deg, ipd: Disco's ``vr_eye_angle`` and ``vr_ipd``.
        spherical: Disco's fish-eye projection of the eye views (on in Disco).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        depth_fn: DepthFn,
        camera_fn: CameraFn,
        eye_angle_deg: float = 0.5,
        ipd: float = 5.0,
        spherical: bool = True,
        magnitude: float = DISCO_SPHERICAL_MAGNITUDE,
        max_pending: int = 4,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.run_dir = Path(run_dir)
        self.depth_fn, self.camera_fn = depth_fn, camera_fn
        self.eye_angle_deg, self.ipd = float(eye_angle_deg), float(ipd)
        self.spherical, self.magnitude = spherical, float(magnitude)
        self.max_pending = max_pending
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Future[None]] = deque()
        for eye in EYES:
            eye_dir(self.run_dir, eye).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        run_dir: str | Path,
        *,
        depth_fn: DepthFn,
        camera_fn: CameraFn,
        **kwargs: Any,
    ) -> EyeWriter | None:
        """The writer of a run whose ``animation.vr_mode`` is on, else None. ``settings``: a
        :class:`~discolib.config.settings.Settings` (its ``vr_eye_angle`` and ``vr_ipd`` are used)."""
        anim = settings.animation
        if not anim.vr_mode:
            return None
        return cls(run_dir, depth_fn=depth_fn, camera_fn=camera_fn, eye_angle_deg=anim.vr_eye_angle, ipd=anim.vr_ipd, **kwargs)

    def paths(self, index: int) -> tuple[Path, Path]:
        """(left, right) PNG paths of frame ``index``."""
        return eye_frame_path(self.run_dir, "l", index), eye_frame_path(self.run_dir, "r", index)

    def views(self, index: int, image: torch.Tensor, depth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The eye views ``(1, 3, H, W)`` each of frame ``index`` = ``image`` ``(1, 3, H, W)`` as written (its
        ``depth`` ``(1, 1, H, W)`` when already known, else ``depth_fn(image)``). Values are clamped to [0, 1]."""
        if depth is None:
            depth = self.depth_fn(image)
        camera = dict(self.camera_fn(index))
        left, right = eye_views(
            image,
            depth,
            self.eye_angle_deg,
            self.ipd,
            fov_deg=camera.pop("fov_deg", 40.0),
            padding_mode=camera.pop("padding_mode", "border"),
            sampling_mode=camera.pop("sampling_mode", "bilinear"),
            spherical=self.spherical,
            magnitude=self.magnitude,
            reproject_kwargs=camera,
        )
        return left.clamp(0, 1), right.clamp(0, 1)

    def __call__(self, index: int, image: torch.Tensor, depth: torch.Tensor | None = None) -> tuple[Path, Path]:
        """Write the eye frames of frame ``index`` (in the background); returns their (left, right) paths."""
        left, right = self.views(index, image, depth)
        frames = (PendingFrame.from_image(left), PendingFrame.from_image(right))
        paths = self.paths(index)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="discolib-eyes")
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()  # bounded memory; raises the first write error
        self._pending.append(self._pool.submit(_write_pair, paths, frames))
        return paths

    def missing(self, n_frames: int) -> list[int]:
        """Frames ``0 .. n_frames - 1`` without both eye PNGs (on resume: ``n_frames`` = the first frame to render)."""
        return missing_eye_frames(self.run_dir, n_frames)

    def regenerate(self, frames: Iterable[int], load_frame: Callable[[int], torch.Tensor]) -> list[int]:
        """Remake the eye frames of ``frames`` from the written frames (``load_frame(i)`` -> ``(1, 3, H, W)`` as
        written, on the render device); waits until they are on disk. Returns the frames remade."""
        done = []
        for i in frames:
            self(i, load_frame(i))
            done.append(i)
        self.flush()
        return done

    def flush(self) -> None:
        """Wait until every submitted eye frame is on disk; re-raise the first write error."""
        error: BaseException | None = None
        while self._pending:
            try:
                self._pending.popleft().result()
            except BaseException as exc:  # noqa: BLE001 - the first one is re-raised after all are waited for
                error = error or exc
        if error is not None:
            raise error

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait for every eye frame, stop the background thread and (unless ``raise_errors`` is False, e.g. while
        another error is on its way out) re-raise the first write error."""
        try:
            self.flush()
        except BaseException:
            if raise_errors:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> EyeWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(raise_errors=exc_type is None)


def write_stereo_video(
    run_dir: str | Path,
    n_frames: int,
    *,
    fps: float,
    fmt: Literal["mp4", "gif"] = "mp4",
    crf: int = 17,
    soundtrack: str | Path | None = None,
    threads: int | None = None,
    final: bool = True,
) -> Path:
    """The side-by-side video of eye frames ``0 .. n_frames - 1``: ``video_sbs.<fmt>`` (``preview_sbs.<fmt>`` when
    not ``final``) in the run folder, left eye on the left, ``2W x H``. An explicit list of frames, so a stray PNG
    in the eye folders never ends up in it."""
    run = Path(run_dir)
    left = [eye_frame_path(run, "l", i) for i in range(n_frames)]
    right = [eye_frame_path(run, "r", i) for i in range(n_frames)]
    name = f"video_sbs.{fmt}" if final else f"preview_sbs.{fmt}"
    return stereo_to_video(left, right, run / name, fps=fps, fmt=fmt, crf=crf, soundtrack=soundtrack, threads=threads)
