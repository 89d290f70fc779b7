"""The bundled ffmpeg (imageio-ffmpeg), torch-free: where it is, how a path is handed to it, and its report on a
file's streams. :mod:`discolib.io.video` (frames, videos) and :mod:`discolib.audio` (soundtracks) both run it
through these helpers, so reading an audio file's header never imports torch."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from discolib.errors import InputError

__all__ = ["REPORT_TIMEOUT", "VideoError", "ff_path", "ffmpeg_exe", "ffmpeg_report"]

#: Seconds ``ffmpeg -i`` may take to describe a file (it reads the header only; a FIFO or a stalled network share
#: must not hang a render).
REPORT_TIMEOUT = 30.0


class VideoError(InputError):
    """A video cannot be written or read; the message names the setting or path and, for ffmpeg failures, ends
    with the last lines ffmpeg wrote to stderr."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("video needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise VideoError(f"imageio-ffmpeg found no ffmpeg binary: {exc}") from None


def ff_path(path: Path) -> str:
    """A path as an ffmpeg URL that is always the local file: absolute and ``file:``-prefixed."""
    return "file:" + os.path.abspath(path)


def ffmpeg_report(path: Path) -> str:
    """ffmpeg's description of a file's streams (``ffmpeg -i``; the header is read, nothing is decoded).

    Raises:
        VideoError: ffmpeg took longer than ``REPORT_TIMEOUT`` seconds (a FIFO, a stalled mount).
    """
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ff_path(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=REPORT_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: ffmpeg could not read the file's header within {REPORT_TIMEOUT:g} s") from None
    # Without an output ffmpeg always exits non-zero; the report on stderr is what matters.
    return proc.stderr.decode("utf-8", errors="replace")
