"""Video output (numbered PNG frames -> mp4 / gif) and video input (a video -> frames as tensors).

Everything runs the ffmpeg binary that ``imageio-ffmpeg`` bundles (``imageio_ffmpeg.get_ffmpeg_exe()``); no system
ffmpeg is assumed. ffmpeg is always started with an argument list (never through a shell), and every path handed
to it is made absolute and prefixed with ``file:``, so a user's file name is never read as an ffmpeg protocol
(``concat:``, ``http:``, ...) or as an option. Inside the image-sequence pattern ``%`` is escaped as ``%%``.

Writing (:func:`frames_to_video`):

* mp4 is H.264 (libx264), ``yuv420p`` (the pixel format every player decodes), CRF 17 by default and
  ``-movflags +faststart`` (index at the front, so a browser can start playing before the download ends).
  yuv420p needs an even width and height: an odd size is padded by one pixel on the right and/or bottom, and the
  new column/row is a copy of the edge (``fillborders=smear``), so nothing is cropped or resampled; a 31x23
  animation becomes a 32x24 video.
* gif uses ffmpeg's ``palettegen`` / ``paletteuse`` with a palette per frame (animations drift through colours, and
  one 256-colour palette for all frames is visibly worse: about 5x the error on the test clips, for half the file
  size) and loops forever. GIF stores delays in 1/100 s, so players show e.g. 12 fps as 12.5 fps.
* A contiguous run of ``000000.png``-style frames in one folder is read by ffmpeg directly
  (``-framerate fps -start_number k -i folder/%06d.png``); anything else (gaps, frames from several folders, other
  names) is decoded with Pillow and piped to ffmpeg as raw RGB.
* :func:`stereo_to_video` writes a stereo pair side by side (left | right, ``2W x H``) with ffmpeg's ``hstack``
  from the two eyes' PNG sequences (a list that is not one is linked into a temporary numbered folder first).
* The output is written atomically (:func:`~discolib.io.files.atomic_path`): ffmpeg writes ``.<name>.<random>.tmp``
  in the output folder, which replaces the final name only after ffmpeg succeeded and wrote every frame; on any
  failure the temporary file is removed.
* A soundtrack is muxed as AAC and cut to the video's length. Unlike ``-shortest``, a soundtrack shorter than
  the animation never drops frames: the audio simply ends early.

Reading (:func:`read_video_frames`, :func:`first_frame`, :func:`video_info`, :func:`count_video_frames`) parses
ffmpeg's stream report for metadata and decodes with the same bundled ffmpeg to raw RGB on a pipe, as
imageio-ffmpeg's ``read_frames`` does. imageio's own readers are not used: the v3 ``pyav`` plugin is not installed,
and the v2 ``ffmpeg`` plugin refuses files by extension (``.gif``, no suffix) and leaves pipes open when a reader is
closed early. Frames are float tensors (1, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch

from discolib.io.ffmpeg import VideoError, ff_path, ffmpeg_exe, ffmpeg_report
from discolib.io.files import atomic_path
from discolib.io.inputs import expand_path

__all__ = [
    "VideoError",
    "VideoProbe",
    "ffmpeg_exe",
    "frames_to_video",
    "stereo_to_video",
    "probe_video",
    "video_info",
    "read_video_frames",
    "first_frame",
    "count_video_frames",
]

VIDEO_SETTING = "animation.video_init_path"
FRAME_NAME = re.compile(r"^(\d{6})\.png$")
_STDERR_TAIL_LINES = 15


# ---------------------------------------------------------------------------------------------- ffmpeg plumbing
# (the binary, its path URLs and its stream report live in the torch-free discolib.io.ffmpeg, shared with audio)
_ff_path = ff_path
_ffmpeg_report = ffmpeg_report


def _tail(text: str, n: int = _STDERR_TAIL_LINES) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _read_back(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode("utf-8", errors="replace")


def _last_progress_frame(progress: str) -> int | None:
    """The last ``frame=N`` of ffmpeg's ``-progress`` report."""
    found = re.findall(r"^frame=\s*(\d+)\s*$", progress, flags=re.MULTILINE)
    return int(found[-1]) if found else None


def _fps_arg(fps: float) -> str:
    # A rational keeps 29.97 or 23.976 exact enough for ffmpeg's timebase; a float string would be re-rounded.
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


# ---------------------------------------------------------------------------------------------- writing


def _collect_frames(frames: Sequence[str | Path] | str | Path) -> list[Path]:
    """The frame files in order: a folder's numbered PNGs by index, or the given list."""
    if isinstance(frames, (str, Path)):
        folder = expand_path(frames, setting="frames")
        if not folder.exists():
            raise VideoError(f"frames folder not found: {folder}")
        if not folder.is_dir():
            raise VideoError(f"frames: {folder} is not a folder; give a folder of numbered PNGs or a list of images")
        numbered = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := FRAME_NAME.match(p.name)))
        if not numbered:
            raise VideoError(f"no frames to encode: {folder} holds no numbered PNGs (000000.png, 000001.png, ...)")
        idx = [i for i, _ in numbered]
        if idx[-1] - idx[0] + 1 != len(idx):
            missing = sorted(set(range(idx[0], idx[-1] + 1)) - set(idx))
            shown = ", ".join(f"{i:06d}.png" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            warnings.warn(f"{folder}: frames are missing ({shown}); the video skips them", stacklevel=3)
        return [p for _, p in numbered]
    paths = [expand_path(p, setting="frames") for p in frames]
    if not paths:
        raise VideoError("no frames to encode: the frame list is empty")
    return paths


def _check_frames(paths: list[Path]) -> tuple[int, int]:
    """Check that every frame is a readable image of one size (headers only, cheap); returns (width, height)."""
    from PIL import Image, UnidentifiedImageError

    size: tuple[int, int] | None = None
    for p in paths:
        if not p.is_file():
            raise VideoError(f"frame not found: {p}")
        try:
            with Image.open(p) as img:
                this = img.size
        except (UnidentifiedImageError, OSError) as exc:
            raise VideoError(f"frame {p} is not a readable image: {exc}") from None
        if size is None:
            size = this
        elif this != size:
            raise VideoError(
                f"frame {p} is {this[0]}x{this[1]} but the first frame is {size[0]}x{size[1]}; all frames of a video "
                "must have one size"
            )
    assert size is not None
    return size


def _sequence_start(paths: list[Path]) -> int | None:
    """The first index when ``paths`` are ``k, k+1, ...`` (``%06d.png``) in one folder, else None."""
    parent = paths[0].parent
    start: int | None = None
    for i, p in enumerate(paths):
        m = FRAME_NAME.match(p.name)
        if m is None or p.parent != parent:
            return None
        if start is None:
            start = int(m.group(1))
        elif int(m.group(1)) != start + i:
            return None
    return start


def _even_pad_filter(width: int, height: int) -> str:
    """Filters that make the size even for yuv420p: pad right/bottom by one pixel, then copy the edge into it."""
    pad_w, pad_h = width % 2, height % 2
    if not (pad_w or pad_h):
        return ""
    # format=gbrp first: otherwise ffmpeg may negotiate yuv420p for pad/fillborders, and on the half-size chroma
    # planes fillborders fills nothing, leaving the edge pixels' colour mixed with the pad's neutral chroma.
    return (
        "format=gbrp,"
        f"pad={width + pad_w}:{height + pad_h}:0:0,"
        f"fillborders=left=0:right={pad_w}:top=0:bottom={pad_h}:mode=smear,"
    )


def _encode_options(
    out: str | Path, fmt: str | None, fps: float, crf: int, threads: int | None, soundtrack: str | Path | None
) -> tuple[Path, str, Path | None]:
    """The checked options of an encode: (output path, ``"mp4"`` or ``"gif"``, the soundtrack to mux or None)."""
    out = expand_path(out, setting="video output")
    if fmt is None:
        fmt_s = out.suffix.lower().lstrip(".")
        if fmt_s not in ("mp4", "gif"):
            raise VideoError(f"output.video_format: cannot tell the format from {out.name!r}; expected .mp4 or .gif")
    else:
        fmt_s = str(fmt).lower()
        if fmt_s not in ("mp4", "gif"):
            raise VideoError(f"output.video_format: expected 'mp4' or 'gif', got {fmt!r}")
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise VideoError(f"output.fps: expected a number > 0, got {fps!r}")
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= 51:
        raise VideoError(f"crf: expected an integer in 0..51, got {crf!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise VideoError(f"threads: expected an integer >= 1, got {threads!r}")
    audio: Path | None = None
    if soundtrack is not None and str(soundtrack) != "":
        if fmt_s == "gif":
            warnings.warn("output.soundtrack is ignored for a gif (gif has no audio)", stacklevel=3)
        else:
            audio = check_soundtrack(soundtrack)
    return out, fmt_s, audio


def frames_to_video(
    frames: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    fps: float,
    fmt: Literal["mp4", "gif"] | None = None,
    crf: int = 17,
    soundtrack: str | Path | None = None,
    threads: int | None = None,
) -> Path:
    """Encode PNG frames as an mp4 (H.264, yuv420p) or a looping gif, written atomically.

    Args:
        frames: a folder of numbered frames (``000000.png``, ``000001.png``, ... in index order), or a list of
            image files in the order to show.
        out: the video file; its folder is created when missing.
        fps: frames per second (> 0).
        fmt: ``"mp4"`` or ``"gif"``; None takes it from the suffix of ``out``.
        crf: H.264 constant rate factor, 0 (lossless) .. 51; 17 is visually lossless. Unused for gif.
        soundtrack: an audio file muxed into the mp4 as AAC, cut to the video's length. Ignored (with a warning)
            for gif, which has no audio.
        threads: ffmpeg's encoder and filter threads (the run's ``models.threads`` count, so the encoder does not
            oversubscribe a shared machine; x264's output also depends on it); None lets ffmpeg choose.

    Returns:
        ``out`` as a Path.

    Raises:
        VideoError: no frames, unreadable or differently sized frames, a missing soundtrack, or ffmpeg failing
            (the message carries the end of ffmpeg's stderr).
    """
    out, fmt_s, audio = _encode_options(out, fmt, fps, crf, threads, soundtrack)
    paths = _collect_frames(frames)
    width, height = _check_frames(paths)
    n = len(paths)
    start = _sequence_start(paths)
    rate = _fps_arg(float(fps))

    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y"]
    if threads is not None:
        args += ["-filter_threads", str(int(threads))]  # a global option: before the inputs
    if start is not None:
        # '%' in the folder name must not be read as part of the pattern.
        pattern = _ff_path(paths[0].parent).replace("%", "%%") + "/%06d.png"
        args += ["-nostdin", "-framerate", rate, "-f", "image2", "-pattern_type", "sequence"]
        args += ["-start_number", str(start), "-i", pattern]
    else:
        args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate, "-i", "pipe:0"]
    if audio is not None:
        # -t on the input cuts the audio to the video's length; the video keeps all frames either way.
        args += ["-t", f"{n / float(fps):.6f}", "-i", _ff_path(audio)]

    # -frames:v: the image2 reader would go on past our list when the folder holds later frames.
    args += ["-map", "0:v:0", "-frames:v", str(n)]
    if threads is not None:
        args += ["-threads", str(int(threads))]
    if fmt_s == "mp4":
        args += ["-vf", _even_pad_filter(width, height) + "format=yuv420p"]
        args += ["-c:v", "libx264", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        if audio is not None:
            args += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "192k"]
        args += ["-f", "mp4"]
    else:
        args += ["-vf", "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1", "-loop", "0", "-f", "gif"]

    def cannot_write(exc: OSError) -> VideoError:  # a bare [Errno 28] would not say which file
        return VideoError(f"cannot write {out}: {exc.strerror or exc}")

    # ffmpeg overwrites the empty temporary (-y), which replaces `out` only once every frame was written.
    with atomic_path(out, mkdir=True, error=cannot_write) as tmp:
        _encode([*args, _ff_path(tmp)], paths if start is None else None, n, (width, height), out)
    return out


def _encode(args: list[str], pipe_frames: list[Path] | None, n_expected: int, size: tuple[int, int], out: Path) -> None:
    """Run ffmpeg; feed ``pipe_frames`` as raw RGB on stdin when given. Raises VideoError unless all ``n_expected``
    frames were written."""
    from PIL import Image

    # stdout/stderr go to files, not pipes: a full pipe would block ffmpeg while we block writing its stdin.
    with tempfile.TemporaryFile() as err_fh, tempfile.TemporaryFile() as prog_fh:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if pipe_frames is not None else subprocess.DEVNULL,
            stdout=prog_fh,
            stderr=err_fh,
        )
        try:
            if pipe_frames is not None:
                assert proc.stdin is not None
                try:
                    for p in pipe_frames:
                        try:
                            with Image.open(p) as img:
                                rgb = img.convert("RGB")
                        except OSError as exc:
                            raise VideoError(f"frame {p} is not a readable image: {exc}") from None
                        if rgb.size != size:
                            raise VideoError(f"frame {p} is {rgb.size[0]}x{rgb.size[1]}, expected {size[0]}x{size[1]}")
                        proc.stdin.write(rgb.tobytes())
                    proc.stdin.close()
                except BrokenPipeError:
                    pass  # ffmpeg stopped early: its exit status and stderr say why
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        stderr = _read_back(err_fh)
        progress = _read_back(prog_fh)
    if rc != 0:
        raise VideoError(f"ffmpeg could not write {out} (exit status {rc}):\n{_tail(stderr)}")
    done = _last_progress_frame(progress)
    if done != n_expected:
        # ffmpeg skips frames it cannot decode and still exits 0; a video with missing frames is a failure here.
        raise VideoError(
            f"ffmpeg wrote {done} of {n_expected} frames to {out}; a frame is probably corrupt"
            + (f":\n{_tail(stderr)}" if stderr.strip() else "")
        )


# ---------------------------------------------------------------------------------------------- stereo (side by side)


def _sequence_folder(paths: list[Path], stack: ExitStack) -> tuple[Path, int]:
    """A folder and first index in which ``paths`` are ``k.png, k+1.png, ...`` (``%06d``): their own folder when
    they already are, else a temporary folder of links to them (copies where links are not allowed), removed with
    ``stack``."""
    start = _sequence_start(paths)
    if start is not None:
        return paths[0].parent, start
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="discolib-sbs-")))
    for i, p in enumerate(paths):
        link = folder / f"{i:06d}.png"
        try:
            link.symlink_to(os.path.abspath(p))
        except OSError:
            shutil.copyfile(p, link)
    return folder, 0


def stereo_to_video(
    left: Sequence[str | Path] | str | Path,
    right: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    fps: float,
    fmt: Literal["mp4", "gif"] | None = None,
    crf: int = 17,
    soundtrack: str | Path | None = None,
    threads: int | None = None,
) -> Path:
    """Encode a stereo pair of frame sequences side by side (left | right, ``2W x H``), written atomically.

    Full-width side-by-side, left eye on the left: the layout VR180 tools (Google's VR180 Creator, which Disco's VR
    notes recommend) and headset players read. ffmpeg's ``hstack`` joins the two PNG sequences, so no frame is
    re-encoded in Python. Everything else is as :func:`frames_to_video`: H.264 ``yuv420p`` mp4 (an odd height padded
    with a copy of the edge row) or a looping gif, an optional soundtrack cut to the video's length.

    Args:
        left, right: each a folder of numbered frames or a list of image files in order; the same number of frames
            of one size.
        out, fps, fmt, crf, soundtrack, threads: see :func:`frames_to_video`.

    Raises:
        VideoError: as :func:`frames_to_video`, and when the eyes differ in frame count or size.
    """
    out, fmt_s, audio = _encode_options(out, fmt, fps, crf, threads, soundtrack)

    eyes = [_collect_frames(left), _collect_frames(right)]
    n = len(eyes[0])
    if len(eyes[1]) != n:
        raise VideoError(f"stereo video: the left eye has {n} frames and the right eye {len(eyes[1])}; they must match")
    sizes = [_check_frames(paths) for paths in eyes]
    if sizes[0] != sizes[1]:
        (lw, lh), (rw, rh) = sizes
        raise VideoError(f"stereo video: the left eye's frames are {lw}x{lh} and the right eye's {rw}x{rh}; they must match")
    width, height = 2 * sizes[0][0], sizes[0][1]
    rate = _fps_arg(float(fps))

    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y", "-nostdin"]
    if threads is not None:
        args += ["-filter_threads", str(int(threads))]
    # format=rgb24 on each eye: hstack needs one pixel format, and a PNG may be palette, grey or RGBA.
    stack = "[0:v]format=rgb24[l];[1:v]format=rgb24[r];[l][r]hstack=inputs=2"
    if fmt_s == "mp4":
        graph = f"{stack},{_even_pad_filter(width, height)}format=yuv420p[v]"
        codec = ["-c:v", "libx264", "-crf", str(int(crf)), "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        if audio is not None:
            codec += ["-map", "2:a:0", "-c:a", "aac", "-b:a", "192k"]
        codec += ["-f", "mp4"]
    else:
        graph = f"{stack},split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1[v]"
        codec = ["-loop", "0", "-f", "gif"]

    def cannot_write(exc: OSError) -> VideoError:
        return VideoError(f"cannot write {out}: {exc.strerror or exc}")

    with ExitStack() as stack_ctx:
        for paths in eyes:
            # '%' in the folder name must not be read as part of the pattern.
            folder, start = _sequence_folder(paths, stack_ctx)
            pattern = _ff_path(folder).replace("%", "%%") + "/%06d.png"
            args += ["-framerate", rate, "-f", "image2", "-pattern_type", "sequence", "-start_number", str(start)]
            args += ["-i", pattern]
        if audio is not None:
            args += ["-t", f"{n / float(fps):.6f}", "-i", _ff_path(audio)]
        args += ["-filter_complex", graph, "-map", "[v]", "-frames:v", str(n)]
        if threads is not None:
            args += ["-threads", str(int(threads))]
        with atomic_path(out, mkdir=True, error=cannot_write) as tmp:
            _encode([*args, *codec, _ff_path(tmp)], None, n, (width, height), out)
    return out


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoProbe:
    """What ffmpeg reports about a file's first video stream (and whether it has audio).

    ``width``/``height`` are the displayed size (after a rotation tag is applied, as decoding does);
    ``fps`` and ``duration`` are None when the file does not say.
    """

    container: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float | None
    duration: float | None
    audio_codec: str | None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _split_top_level(text: str) -> list[str]:
    """Split ffmpeg's stream description at commas outside parentheses/brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _parse_probe(report: str) -> VideoProbe | None:
    """Parse ``ffmpeg -i`` stderr for input #0; None when it has no video stream."""
    m = re.search(r"^Input #0, (.+?), from ", report, flags=re.MULTILINE)
    if m is None:
        return None
    container = m.group(1)
    duration = None
    md = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", report)
    if md:
        duration = int(md.group(1)) * 3600 + int(md.group(2)) * 60 + float(md.group(3))
    video = re.search(r"^\s*Stream #0:\d+\S*: Video: (.+)$", report, flags=re.MULTILINE)
    if video is None:
        return None
    parts = _split_top_level(video.group(1))
    codec = parts[0].split()[0] if parts and parts[0] else "unknown"
    pix_fmt = re.sub(r"\(.*$", "", parts[1]).strip() if len(parts) > 1 else "unknown"
    width = height = 0
    fps = None
    for part in parts[1:]:
        ms = re.match(r"^(\d+)x(\d+)\b", part)
        if ms and not width:
            width, height = int(ms.group(1)), int(ms.group(2))
        mf = re.match(r"^(\d+(?:\.\d+)?)(k?) (fps|tbr)\b", part)
        if mf and (fps is None or mf.group(3) == "fps"):
            fps = float(mf.group(1)) * (1000.0 if mf.group(2) else 1.0)
    if not width:
        return None
    mr = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", report)
    if mr and round(abs(float(mr.group(1)))) % 180 == 90:
        width, height = height, width
    audio = re.search(r"^\s*Stream #0:\d+\S*: Audio: (\S+)", report, flags=re.MULTILINE)
    audio_codec = audio.group(1).rstrip(",") if audio else None
    return VideoProbe(container, codec, pix_fmt, width, height, fps, duration, audio_codec)


def _existing(path: str | Path, setting: str) -> Path:
    p = expand_path(path, setting=setting)
    if not p.is_file():
        raise VideoError(f"{setting}: file not found: {p}")
    return p


def check_soundtrack(soundtrack: str | Path) -> Path:
    """The soundtrack's path if ffmpeg finds an audio stream in it; else a VideoError naming output.soundtrack."""
    audio = expand_path(soundtrack, setting="output.soundtrack")
    if not audio.is_file():
        raise VideoError(f"output.soundtrack: file not found: {audio}")
    if not re.search(r"^\s*Stream #0:\d+\S*: Audio: ", _ffmpeg_report(audio), flags=re.MULTILINE):
        raise VideoError(f"output.soundtrack: not a readable audio file: {audio}")
    return audio


def probe_video(path: str | Path, *, setting: str = VIDEO_SETTING) -> VideoProbe:
    """Ask ffmpeg what ``path`` holds (reads the header only, no decoding).

    Raises:
        VideoError: ``"<setting>: file not found: ..."`` or ``"<setting>: not a readable video: ..."`` for files
            ffmpeg cannot open, files without a video stream (audio) and still images (PNG, JPEG, ...).
    """
    p = _existing(path, setting)
    report = _ffmpeg_report(p)
    info = _parse_probe(report)
    if info is None:
        if re.search(r"^Input #0, ", report, flags=re.MULTILINE):
            reason = "no video stream"
        else:
            lines = [ln for ln in report.splitlines() if ln.strip() and "output file must be specified" not in ln]
            reason = lines[-1].strip() if lines else "ffmpeg cannot open it"
        raise VideoError(f"{setting}: not a readable video: {p} ({reason})")
    if info.container == "image2" or info.container.endswith("_pipe"):
        # image2 / *_pipe are ffmpeg's still-image readers: a single picture, not a video.
        raise VideoError(f"{setting}: not a readable video: {p} (it is a still image, {info.codec})")
    return info


def video_info(path: str | Path, *, setting: str = VIDEO_SETTING) -> dict[str, float | int | str | bool | None]:
    """Basic facts about a video.

    Returns:
        dict with ``fps`` (float or None), ``n_frames`` (int; estimated as round(duration * fps) from the header,
        counted by decoding when the header lacks either), ``width``, ``height``, ``duration`` (seconds or None),
        plus ``codec``, ``pix_fmt`` and ``has_audio``.
    """
    info = probe_video(path, setting=setting)
    if info.fps and info.duration:
        n_frames = max(1, round(info.duration * info.fps))
    else:
        n_frames = count_video_frames(path, setting=setting)
    return {
        "fps": info.fps,
        "n_frames": n_frames,
        "width": info.width,
        "height": info.height,
        "duration": info.duration,
        "codec": info.codec,
        "pix_fmt": info.pix_fmt,
        "has_audio": info.has_audio,
    }


def count_video_frames(path: str | Path, *, setting: str = VIDEO_SETTING) -> int:
    """The exact number of frames of the first video stream, by decoding it (slow for long videos)."""
    p = _existing(path, setting)
    probe_video(p, setting=setting)
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1"]
    args += ["-i", _ff_path(p), "-map", "0:v:0", "-f", "null", "-"]
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        raise VideoError(f"{setting}: cannot decode {p}:\n{_tail(proc.stderr.decode('utf-8', errors='replace'))}")
    n = _last_progress_frame(proc.stdout.decode("utf-8", errors="replace"))
    if n is None:
        raise VideoError(f"{setting}: ffmpeg reported no frame count for {p}")
    return n


def _check_positive_int(value: object, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VideoError(f"{name}: expected an integer >= 1, got {value!r}")


def read_video_frames(
    path: str | Path,
    *,
    every_nth: int = 1,
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    setting: str = VIDEO_SETTING,
) -> Iterator[torch.Tensor]:
    """Iterate over a video's frames: frames 0, n, 2n, ... for ``every_nth = n``, at most ``max_frames`` of them.

    The file and arguments are checked when this is called (not at the first ``next``). When ``size`` = (width,
    height) differs from the video's size, ffmpeg resizes the frames with Lanczos (as init images are) and one warning
    is given. ffmpeg runs while the iterator is open; close it (or exhaust it) to stop ffmpeg.

    Yields:
        (1, 3, H, W) float32 tensors in [0, 1].

    Raises:
        VideoError: see :func:`probe_video`; ``every_nth`` or ``max_frames`` < 1; a bad ``size``.
    """
    _check_positive_int(every_nth, "animation.extract_nth_frame")
    _check_positive_int(max_frames, "max_frames", allow_none=True)
    if size is not None:
        if len(size) != 2:
            raise VideoError(f"size: expected (width, height), got {size!r}")
        for v in size:
            _check_positive_int(v, "size")
        size = (int(size[0]), int(size[1]))
    p = _existing(path, setting)
    info = probe_video(p, setting=setting)
    if size is not None and size != (info.width, info.height):
        warnings.warn(
            f"{setting}: {p.name} is {info.width}x{info.height}; frames are resized to {size[0]}x{size[1]}",
            stacklevel=2,
        )
    return _iter_frames(p, info, every_nth, size, max_frames)


def _iter_frames(
    path: Path, info: VideoProbe, every_nth: int, size: tuple[int, int] | None, max_frames: int | None
) -> Iterator[torch.Tensor]:
    """Decode with the bundled ffmpeg to raw RGB on a pipe; ffmpeg is stopped when the iterator is closed."""
    width, height = size if size is not None else (info.width, info.height)
    # The scale filter pins the frame size the pipe is cut by (a no-op at the video's own size) and converts
    # YUV -> RGB with accurate rounding and full chroma interpolation; Lanczos matches how init images are resized.
    vf = f"scale={width}:{height}:flags=lanczos+accurate_rnd+full_chroma_int,format=rgb24"
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", _ff_path(path), "-map", "0:v:0"]
    if max_frames is not None:
        args += ["-frames:v", str((max_frames - 1) * every_nth + 1)]  # ffmpeg stops after the last frame we use
    # passthrough: every decoded frame exactly once (no frames duplicated or dropped to hold a constant rate).
    args += ["-vf", vf, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = width * height * 3
    yielded = 0
    with tempfile.TemporaryFile() as err_fh:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err_fh)
        assert proc.stdout is not None
        try:
            i = 0
            while max_frames is None or yielded < max_frames:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    rc = proc.wait()
                    if rc != 0 or buf:
                        raise VideoError(f"cannot decode {path} (frame {i}):\n{_tail(_read_back(err_fh))}")
                    break
                if i % every_nth == 0:
                    arr = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
                    yield torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
                    yielded += 1
                i += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def first_frame(path: str | Path, size: tuple[int, int] | None = None, *, setting: str = VIDEO_SETTING) -> torch.Tensor:
    """The first frame of a video as (1, 3, H, W) float32 in [0, 1], resized to ``size`` = (width, height)."""
    frames = read_video_frames(path, size=size, max_frames=1, setting=setting)
    try:
        return next(frames)
    except StopIteration:
        raise VideoError(f"{setting}: not a readable video: {path} (no frames decoded)") from None
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
