"""The video step: (re)make the video of any run folder from its complete frames (``discolib video RUN``).

A run folder's frames are complete PNGs under their final names (:mod:`discolib.run.runs`), so a video can be made
at any time, also while the run is still rendering (no lock is taken: only complete frames are read) and after a
run was stopped. The video is written inside the run folder only, atomically (by
:func:`discolib.io.video.frames_to_video`), under a name that says what it holds:

* the whole run at its own ``output.fps``: ``video.<fmt>``, the name the render writes (with the soundtrack);
* anything else: ``video_<start>-<end>[_<fps>fps].<ext>`` (no soundtrack: it would not line up with a part).
"""

from __future__ import annotations

import math
import numbers
import warnings
from pathlib import Path

from discolib.config.settings import Settings
from discolib.errors import InputError
from discolib.io.inputs import expand_path
from discolib.io.video import frames_to_video
from discolib.run.runs import RunFolder, threads_for

__all__ = ["RunVideoError", "make_run_video"]


class RunVideoError(InputError):
    """A run video cannot be made from what was asked: the message names RUN, --from, --to or --fps."""


def _frame_number(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise RunVideoError(f"{name}: expected a frame number >= 0 (0-based), got {value!r}")
    return int(value)


def _open_run(run_dir: str | Path) -> RunFolder:
    path = expand_path(run_dir, setting="RUN")
    if not path.is_dir():
        raise RunVideoError(f"RUN: no run folder at {path}")
    folder = RunFolder(path)
    if not folder.settings_path.is_file():
        raise RunVideoError(f"RUN: {path} is not a run folder (settings.json is missing)")
    return folder


def make_run_video(
    run_dir: str | Path,
    *,
    fps: float | None = None,
    start: int | None = None,
    end: int | None = None,
    gif: bool = False,
) -> Path:
    """(Re)make the video of a run folder from its complete frames ``start .. end`` (0-based, inclusive).

    Args:
        run_dir: the run folder (``<output_root>/<batch_name>/<run_id>``).
        fps: frames per second; default the run's ``output.fps``.
        start: first frame (default 0).
        end: last frame (default the last complete frame).
        gif: a looping GIF instead of the run's ``output.video_format``.

    Returns:
        The video's path, inside the run folder.

    Raises:
        RunVideoError: no run folder, no complete frame, a range outside the complete frames or with a frame
            missing (the first missing one is named), or a non-positive fps.
        VideoError: ffmpeg failed (its last lines are in the message).
    """
    folder = _open_run(run_dir)
    settings = Settings.load(folder.settings_path)
    out = settings.output
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0
    ):
        raise RunVideoError(f"--fps: expected a number of frames per second > 0, got {fps!r}")
    rate = float(fps) if fps is not None else float(out.fps)
    done = folder.complete_frames()
    if not done:
        raise RunVideoError(f"RUN: {folder.path} has no complete frame yet (frames/ holds no 000000.png ...)")
    last = done[-1]
    first = _frame_number(start, "--from") if start is not None else 0
    final = _frame_number(end, "--to") if end is not None else last
    if final > last:
        raise RunVideoError(f"--to: frame {final} is not complete yet; expected at most {last} (the last complete frame)")
    if first > final:
        raise RunVideoError(f"--from: expected a frame <= {final} (--to), got {first}")
    have = set(done)
    missing = next((i for i in range(first, final + 1) if i not in have), None)
    if missing is not None:
        raise RunVideoError(
            f"RUN: frame {missing} ({folder.frame_path(missing)}) is missing; choose --from/--to around it or "
            "render it again (resume the run)"
        )
    fmt = "gif" if gif else out.video_format
    own_fps = math.isclose(rate, float(out.fps), rel_tol=0, abs_tol=1e-9)
    whole = first == 0 and final == settings.n_frames() - 1 and own_fps
    if whole:
        name = f"video.{fmt}"
    else:
        name = f"video_{first}-{final}" + ("" if own_fps else f"_{rate:g}fps") + f".{fmt}"
    soundtrack = None
    if whole and out.soundtrack and fmt != "gif":
        track = expand_path(out.soundtrack, setting="output.soundtrack")
        if track.is_file():
            soundtrack = track
        else:
            warnings.warn(f"output.soundtrack: {track} is not there any more; the video is made without it", stacklevel=2)
    # The run's thread count when recorded: x264's output depends on it, so a remade video.mp4 matches the render's.
    record, _ = folder.try_read_record()
    threads = record.torch_threads if record is not None and record.torch_threads > 0 else threads_for(settings.models.threads)
    frames = [folder.frame_path(i) for i in range(first, final + 1)]
    return frames_to_video(frames, folder.path / name, fps=rate, fmt=fmt, soundtrack=soundtrack, threads=threads)
