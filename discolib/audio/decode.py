"""Reading a soundtrack: its duration from the header (fast, for any file) and its samples as mono float32.

soundfile (libsndfile: WAV, FLAC, OGG, MP3) reads first; the ffmpeg that imageio-ffmpeg bundles is the fallback
(AAC/M4A, Opus in WebM, a video's audio, ...), run with an argument list, a ``file:`` URL and a timeout, as
:mod:`discolib.io.video` runs it. Everything a user's file can do wrong is a one-line :class:`AudioError`
``"<setting>: <path>: <what is wrong>"``:

* a missing path, a folder, a device or FIFO, an empty file, a file that is no audio (a PNG, random bytes, text);
* a file longer than :data:`MAX_AUDIO_SECONDS` by its header: refused before a sample is decoded, so a WAV whose
  header declares 10 hours costs milliseconds and never allocates 10 hours of samples (the decoder is also capped
  at that length, in case a header understates it);
* a truncated file: a WAV whose ``data`` chunk declares more bytes than the file holds, or a file that decodes to
  clearly fewer samples than its (exact) header promised.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import stat
import struct
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from discolib.audio.jit import first_compile
from discolib.errors import InputError, one_line
from discolib.io.ffmpeg import VideoError, ff_path, ffmpeg_exe, ffmpeg_report
from discolib.io.inputs import expand_path

__all__ = [
    "AudioError",
    "MAX_AUDIO_SECONDS",
    "ANALYSIS_SR",
    "SETTING",
    "audio_duration",
    "decode_audio",
    "load_librosa",
    "resolve_audio_path",
]

SETTING = "output.soundtrack"
#: Longer files (as their header declares) are refused before decoding: an hour is any music video's ceiling.
MAX_AUDIO_SECONDS = 3600.0
#: The analysis rate: librosa's default; 11 kHz of bandwidth covers every band a user keys on.
ANALYSIS_SR = 22050
#: Formats whose header duration is exact (libsndfile's frame count); MP3's is an estimate for VBR files.
_EXACT_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "FLAC", "OGG", "CAF", "AU"})
_PROBE_CACHE_SIZE = 64
_FFMPEG_PROBE_TIMEOUT_S = 30.0


class AudioError(InputError):
    """A soundtrack cannot be read; ``str(err)`` is one line: ``"output.soundtrack: <path>: <what is wrong>"``."""


@dataclass(frozen=True)
class _Probe:
    """What a header says: seconds (None: unknown), sample rate and channels (0: unknown), and who read it."""

    duration: float | None
    samplerate: int
    channels: int
    reader: str  # "soundfile" or "ffmpeg"
    exact: bool  # the duration is exact (decoding clearly fewer samples means the file is truncated)


_probes: OrderedDict[tuple[str, int, int], _Probe] = OrderedDict()
_probes_lock = threading.Lock()


def _fail(setting: str, path: object, what: object) -> AudioError:
    return AudioError(f"{setting}: {one_line(path, None)}: {one_line(what, 300)}")


def resolve_audio_path(path: str | os.PathLike[str], *, setting: str = SETTING) -> tuple[Path, os.stat_result]:
    """The expanded path of an existing, non-empty regular file and its ``stat``; else an :class:`AudioError`."""
    try:
        p = expand_path(path, setting=setting)
    except InputError as exc:  # a NUL byte, an unknown ~user: already one line naming the setting
        raise AudioError(one_line(exc, None)) from None
    except TypeError:
        raise AudioError(f"{setting}: expected a path to an audio file, got {type(path).__name__}") from None
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise _fail(setting, p, "file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a path too long for the OS on some platforms
        raise _fail(setting, p, f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(setting, p, "is a folder, expected an audio file")
    if not stat.S_ISREG(st.st_mode):
        # A FIFO would block a reader forever and /dev/zero never ends: refused before anything opens them.
        raise _fail(setting, p, "is not a regular file (a device, FIFO or socket), expected an audio file")
    if st.st_size == 0:
        raise _fail(setting, p, "the file is empty")
    if not os.access(p, os.R_OK):
        raise _fail(setting, p, "cannot read it: permission denied")
    return p, st


# ---------------------------------------------------------------------------------------------- headers


def _wav_header(p: Path, size: int) -> tuple[float, float] | None:
    """For a RIFF/WAVE file: (seconds its ``data`` chunk declares, seconds the file holds); None for other files.

    Read from the chunk headers only (a few reads of 8 bytes, however long the file), so a header that declares
    hours is caught before libsndfile (which trusts the file size) or a decoder sees it.
    """
    try:
        with open(p, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = rate = 0
            pos = 12
            for _ in range(64):  # a real WAV has a handful of chunks; a loop bound for crafted files
                fh.seek(pos)
                hdr = fh.read(8)
                if len(hdr) < 8:
                    return None
                cid, csize = hdr[:4], struct.unpack("<I", hdr[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(min(csize, 16))
                    if len(fmt) >= 14:
                        _, _, rate, _, block_align = struct.unpack("<HHIIH", fmt[:14])
                elif cid == b"data":
                    if not rate or not block_align:
                        return None  # libsndfile/ffmpeg will say what is wrong with it
                    held = max(0, size - (pos + 8))
                    if csize in (0, 0xFFFFFFFF):  # a streamed WAV: the writer never filled the size in
                        csize = held
                    return csize / (block_align * rate), held / (block_align * rate)
                pos += 8 + csize + (csize & 1)  # chunks are padded to an even size
                if pos >= size:
                    return None
    except OSError:
        return None
    return None


def _soundfile_probe(p: Path) -> _Probe | None:
    # Here, not at the top: soundfile loads libsndfile (a C library), which only reading audio needs.
    import soundfile

    try:
        info = soundfile.info(str(p))
    except (RuntimeError, ValueError, TypeError, OSError, soundfile.SoundFileError):
        return None
    if info.samplerate <= 0 or info.channels <= 0:
        return None
    exact = info.format in _EXACT_FORMATS
    return _Probe(info.frames / info.samplerate, int(info.samplerate), int(info.channels), "soundfile", exact)


def _ffmpeg_reason(stderr: str, p: Path, default: str) -> str:
    """ffmpeg's last meaningful stderr line, without the path it repeats (the message names the file already)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "output file must be specified" not in ln]
    return lines[-1].replace(f"file:{os.path.abspath(p)}: ", "") if lines else default


def _ffmpeg_probe(p: Path, setting: str) -> _Probe:
    try:
        report = ffmpeg_report(p)
    except VideoError as exc:  # no imageio-ffmpeg: say so, for this setting
        raise _fail(setting, p, f"not a format soundfile reads, and {one_line(exc)}") from None
    except (subprocess.TimeoutExpired, OSError) as exc:
        raise _fail(setting, p, f"ffmpeg could not read its header: {exc}") from None
    audio = re.search(r"^\s*Stream #0:\d+\S*: Audio: (.*)$", report, flags=re.MULTILINE)
    if audio is None:
        if re.search(r"^Input #0, ", report, flags=re.MULTILINE):
            raise _fail(setting, p, "not an audio file (it has no audio stream)")
        reason = _ffmpeg_reason(report, p, "ffmpeg cannot open it")
        raise _fail(setting, p, f"not a readable audio file ({reason})")
    rate_m = re.search(r"(\d+) Hz", audio.group(1))
    duration: float | None = None
    dur_m = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", report)
    if dur_m:
        h, m, s = dur_m.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    return _Probe(duration, int(rate_m.group(1)) if rate_m else 0, 0, "ffmpeg", False)


def _probe(p: Path, st: os.stat_result, setting: str) -> _Probe:
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _probes_lock:
        if key in _probes:
            _probes.move_to_end(key)
            return _probes[key]
    wav = _wav_header(p, st.st_size)
    if wav is not None:
        declared, held = wav
        _check_length(declared, p, setting)
        # A millisecond of slack: some writers round the data size up to a whole block or an even size.
        if declared - held > 1e-3 and declared > held:
            raise _fail(
                setting, p, f"truncated: its header declares {declared:.2f} s of audio, the file holds {held:.2f} s"
            )
    probe = _soundfile_probe(p) or _ffmpeg_probe(p, setting)
    if probe.duration is not None:
        _check_length(probe.duration, p, setting)
    with _probes_lock:
        _probes[key] = probe
        while len(_probes) > _PROBE_CACHE_SIZE:
            _probes.popitem(last=False)
    return probe


def _check_length(seconds: float, p: Path, setting: str) -> None:
    if not math.isfinite(seconds) or seconds > MAX_AUDIO_SECONDS:
        shown = f"{seconds / 3600:.1f} hours" if math.isfinite(seconds) else "an endless length"
        raise _fail(setting, p, f"its header declares {shown} of audio; at most {MAX_AUDIO_SECONDS:g} s are read")


def audio_duration(path: str | os.PathLike[str], *, setting: str = SETTING) -> float:
    """The soundtrack's length in seconds, from its header only (soundfile's, else ffmpeg's report).

    Checks that the file exists, is a readable regular file, is audio and is at most :data:`MAX_AUDIO_SECONDS`
    long. Milliseconds for any file (no sample is decoded); cached per (resolved path, size, mtime). A file whose
    header gives no length (a raw stream) is decoded once to measure it.
    """
    p, st = resolve_audio_path(path, setting=setting)
    probe = _probe(p, st, setting)
    if probe.duration is not None:
        return probe.duration
    samples = decode_audio(p, sr=ANALYSIS_SR, setting=setting)
    return len(samples) / ANALYSIS_SR


# ---------------------------------------------------------------------------------------------- librosa

_librosa_ready = False
_librosa_lock = threading.Lock()


def load_librosa() -> ModuleType:
    """librosa, its numba functions loaded (or compiled) once per process under a lock shared between processes.

    librosa's ``@guvectorize(cache=True)`` functions write two cache files each; two processes compiling them at
    once can pair files from different compilations, and every later process then crashes (SIGSEGV) in
    ``beat_track`` (numba issue #10128, librosa issue #1998). So discolib processes compile one at a time: the
    import and a warm-up of the functions the analysis uses run in :func:`discolib.audio.jit.first_compile`
    (``flock`` on librosa's package folder; nothing is written for the lock; no lock on Windows).
    """
    global _librosa_ready
    with _librosa_lock:
        if not _librosa_ready:
            spec = importlib.util.find_spec("librosa")
            # Without librosa the import below fails as it would anyway; first_compile runs unlocked on a missing folder.
            folder = Path(spec.origin).parent if spec is not None and spec.origin else Path(__file__).with_suffix(".none")
            with first_compile("librosa", folder):
                # Here, not at the top: librosa is heavy to import (numba, scipy) and only analysing audio needs it.
                import librosa
                import librosa.beat
                import librosa.onset

                # A warm-up with the dtypes the analysis uses, so its numba functions are compiled now, in the lock.
                clicks = np.zeros(ANALYSIS_SR * 3, dtype=np.float32)
                clicks[:: ANALYSIS_SR // 2] = 1.0
                env = librosa.onset.onset_strength(y=clicks, sr=ANALYSIS_SR, hop_length=256)
                librosa.beat.beat_track(onset_envelope=env.astype(np.float32), sr=ANALYSIS_SR, hop_length=256)
            _librosa_ready = True
    # Here, not at the top (see above); already imported by now.
    import librosa

    return librosa


# ---------------------------------------------------------------------------------------------- decoding


def _read_soundfile(p: Path) -> tuple[np.ndarray, int] | None:
    """(samples (n, channels) float32, rate) through libsndfile; None when it cannot decode the file."""
    # Here, not at the top: soundfile loads libsndfile, which only reading audio needs.
    import soundfile

    try:
        data, rate = soundfile.read(str(p), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, OSError, soundfile.SoundFileError):
        return None
    return data, int(rate)


def _read_ffmpeg(p: Path, probe: _Probe, setting: str) -> tuple[np.ndarray, int]:
    """(samples (n, 2) float32, rate) decoded by the bundled ffmpeg, capped at the length limit.

    ffmpeg is asked for two channels (mono is duplicated, surround folded to stereo by ffmpeg) whose average is
    the mono signal: its own ``-ac 1`` would weight stereo by 0.707, not 0.5, unlike the soundfile path.
    """
    try:
        exe = ffmpeg_exe()
    except VideoError as exc:  # no imageio-ffmpeg: say so, for this setting
        raise _fail(setting, p, f"not a format soundfile reads, and {one_line(exc)}") from None
    rate = probe.samplerate or ANALYSIS_SR
    # -t caps what comes back at the limit (plus a second to notice a header that understated the length).
    args = [
        exe, "-hide_banner", "-nostdin", "-v", "error", "-i", ff_path(p), "-map", "0:a:0", "-vn",
        "-t", f"{MAX_AUDIO_SECONDS + 1:g}", "-ac", "2", "-ar", str(rate), "-f", "f32le", "-acodec", "pcm_f32le",
        "pipe:1",
    ]  # fmt: skip
    timeout = 60.0 + (probe.duration or MAX_AUDIO_SECONDS) / 2  # decoding runs at >20x real time on one core
    try:
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _fail(setting, p, f"ffmpeg took more than {timeout:.0f} s to decode it") from None
    except OSError as exc:
        raise _fail(setting, p, f"cannot run ffmpeg: {exc}") from None
    usable = len(proc.stdout) // 4 * 4
    samples = np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)
    if proc.returncode != 0 and samples.size == 0:
        reason = _ffmpeg_reason(proc.stderr.decode("utf-8", errors="replace"), p, f"exit status {proc.returncode}")
        raise _fail(setting, p, f"ffmpeg cannot decode it ({reason})")
    return samples[: len(samples) // 2 * 2].reshape(-1, 2), rate


def decode_audio(path: str | os.PathLike[str], *, sr: int = ANALYSIS_SR, setting: str = SETTING) -> np.ndarray:
    """The soundtrack as mono float32 samples at ``sr`` Hz.

    Channels are averaged (on the ffmpeg path surround is folded to stereo by ffmpeg first); other rates are
    resampled with soxr (``librosa.resample``, ``soxr_hq``). NaN and infinite samples (a broken float WAV) read as 0.
    """
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise ValueError(f"decode_audio: sr must be a positive integer, got {sr!r}")
    p, st = resolve_audio_path(path, setting=setting)
    probe = _probe(p, st, setting)
    read = _read_soundfile(p) if probe.reader == "soundfile" else None
    if read is None:
        probe_ff = probe if probe.reader == "ffmpeg" else _ffmpeg_probe(p, setting)
        read = _read_ffmpeg(p, probe_ff, setting)
    data, rate = read
    n = data.shape[0]
    if n == 0:
        raise _fail(setting, p, "holds no audio samples")
    if n > (MAX_AUDIO_SECONDS + 0.5) * rate:
        raise _fail(setting, p, f"is longer than {MAX_AUDIO_SECONDS:g} s once decoded; its header understated it")
    if probe.exact and probe.duration is not None and n < probe.duration * rate * 0.98 - rate * 0.05:
        raise _fail(setting, p, f"truncated: it decodes to {n / rate:.2f} s, its header declares {probe.duration:.2f} s")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    if rate != sr:
        mono = load_librosa().resample(mono, orig_sr=rate, target_sr=sr, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)
