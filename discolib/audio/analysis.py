"""The fps-independent analysis of a soundtrack (hop-level curves, spectrum, beats) and its cache.

:func:`analyse_audio` is keyed by the SHA-256 of the file's bytes: an in-process LRU of a few entries and, with
``cache_dir``, ``cache_dir/<sha>-v<ANALYSIS_VERSION>.npz`` (plain arrays, ~5 MB per minute of audio, read with ``allow_pickle=False``, written
atomically). The arrays are built in the dtypes the cache stores them in, so the first analysis and every later
load return the same numbers bit for bit (a resumed render evaluates the same keyframes).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from discolib.audio.decode import (
    ANALYSIS_SR,
    SETTING,
    AudioError,
    audio_duration,
    decode_audio,
    load_librosa,
    resolve_audio_path,
)
from discolib.io.files import WriteError, write_bytes_atomic

__all__ = ["ANALYSIS_HOP", "ANALYSIS_NFFT", "ANALYSIS_VERSION", "AudioAnalysis", "analyse_audio", "clear_cache"]

#: Hop of the analysis: 11.6 ms at 22.05 kHz, six hops per frame at 15 fps and still one at 86 fps.
ANALYSIS_HOP = 256
ANALYSIS_NFFT = 1024
#: Bump when the analysis changes what it computes: old cache files are then simply not found.
ANALYSIS_VERSION = 1
#: Peak rms (per hop) below this (about -100 dBFS) is silence: no beats, every feature 0.
SILENCE_RMS = 1e-5
#: The bass band of the downbeat detector (kicks), Hz.
LOW_BAND = (20.0, 250.0)
_LRU_SIZE = 4
_ARRAYS = {"power": np.float32, "onset": np.float32, "low_onset": np.float32, "spec": np.float16, "beat_times": np.float64}


@dataclass(frozen=True, eq=False)
class AudioAnalysis:
    """A soundtrack's hop-level analysis (what the disk cache holds); hop ``k`` is centred at ``k * hop / sr`` s.

    ``power``: mean square of the samples of each hop (a window of ``hop`` samples centred on it); ``onset``:
    ``librosa.onset.onset_strength``; ``low_onset``: the same on the bass band only; ``spec``: STFT magnitude
    ``/ (NFFT / 2)`` (a full-scale sine peaks near 0.5), ``(n_hops, 1 + NFFT // 2)``; ``beat_times``: seconds of
    ``librosa.beat.beat_track``'s beats; ``tempo``: BPM, 0.0 when no beat is found.
    """

    sha256: str
    duration: float
    sr: int
    hop: int
    power: np.ndarray
    onset: np.ndarray
    low_onset: np.ndarray
    spec: np.ndarray
    beat_times: np.ndarray
    tempo: float

    @property
    def n_hops(self) -> int:
        return int(self.power.shape[0])

    @property
    def n_fft(self) -> int:
        return 2 * (int(self.spec.shape[1]) - 1)

    @property
    def silent(self) -> bool:
        """Peak rms below :data:`SILENCE_RMS`: every feature is 0 and there are no beats."""
        return self.n_hops == 0 or float(np.sqrt(np.max(self.power))) < SILENCE_RMS

    def to_bytes(self) -> bytes:
        """The analysis as an npz file's bytes (plain arrays only, no pickles).

        Not compressed: the float16 spectrum, most of the file, shrinks by ~15% only, for ~1 s of zlib per 3 minutes.
        """
        buf = io.BytesIO()
        np.savez(
            buf,
            version=np.int64(ANALYSIS_VERSION),
            sha256=np.str_(self.sha256),
            duration=np.float64(self.duration),
            sr=np.int64(self.sr),
            hop=np.int64(self.hop),
            tempo=np.float64(self.tempo),
            **{name: getattr(self, name) for name in _ARRAYS},
        )
        return buf.getvalue()

    def save(self, path: Path) -> None:
        """Write the analysis to ``path`` (npz) atomically: readers see the old file or the whole new one."""
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: Path) -> AudioAnalysis:
        """Read an analysis written by :meth:`save`; a corrupt or foreign file is a ``ValueError``."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != ANALYSIS_VERSION:
                    raise ValueError(f"{path}: analysis version {int(z['version'])}, expected {ANALYSIS_VERSION}")
                fields = {name: np.asarray(z[name]) for name in _ARRAYS}
                head = {
                    "sha256": str(z["sha256"]),
                    "duration": float(z["duration"]),
                    "sr": int(z["sr"]),
                    "hop": int(z["hop"]),
                    "tempo": float(z["tempo"]),
                }
        except (OSError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as exc:
            raise ValueError(f"{path}: not a readable analysis ({exc})") from None
        for name, dtype in _ARRAYS.items():
            arr = fields[name]
            want_ndim = 2 if name == "spec" else 1
            if arr.dtype != dtype or arr.ndim != want_ndim:
                raise ValueError(f"{path}: {name} is {arr.dtype}{arr.shape}, expected {np.dtype(dtype)} {want_ndim}-d")
        n = fields["power"].shape[0]
        if any(fields[k].shape[0] != n for k in ("onset", "low_onset", "spec")):
            raise ValueError(f"{path}: the curves have different lengths")
        return _frozen(cls(**head, **fields))


def _frozen(a: AudioAnalysis) -> AudioAnalysis:
    """The same analysis with read-only arrays: it is shared (LRU, features), so nobody may change it in place."""
    for name in _ARRAYS:
        getattr(a, name).setflags(write=False)
    return a


# ---------------------------------------------------------------------------------------------- computing


def _hop_power(y: np.ndarray, hop: int, n_hops: int) -> np.ndarray:
    """Mean square of the ``hop`` samples centred on each hop (zeros past the ends), vectorised."""
    half = hop // 2
    padded = np.zeros(n_hops * hop, dtype=np.float64)
    take = min(len(y), n_hops * hop - half)
    padded[half : half + take] = y[:take]
    return np.mean(padded.reshape(n_hops, hop) ** 2, axis=1)


def _compute(y: np.ndarray, sr: int, sha256: str) -> AudioAnalysis:
    """The analysis of mono samples ``y`` at ``sr`` Hz."""
    librosa = load_librosa()
    hop, n_fft = ANALYSIS_HOP, ANALYSIS_NFFT
    duration = len(y) / sr
    peak = float(np.abs(y).max(initial=0.0))
    if peak > 1.0:  # a float file beyond full scale: the float16 spectrum would overflow (features are relative)
        y = y / peak
    mag = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True))  # (bins, n_hops)
    n_hops = mag.shape[1]
    power = _hop_power(y, hop, n_hops).astype(np.float32)
    if float(np.sqrt(power.max(initial=0.0))) < SILENCE_RMS:
        zeros = np.zeros(n_hops, dtype=np.float32)
        spec = np.zeros((n_hops, mag.shape[0]), dtype=np.float16)
        return AudioAnalysis(sha256, duration, sr, hop, power, zeros, zeros.copy(), spec, np.zeros(0), 0.0)
    pow_spec = mag**2
    mel = librosa.feature.melspectrogram(S=pow_spec, sr=sr, n_fft=n_fft)
    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel, ref=np.max), sr=sr, hop_length=hop, n_fft=n_fft)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    low = (freqs >= LOW_BAND[0]) & (freqs < LOW_BAND[1])
    low_db = librosa.power_to_db(pow_spec[low], ref=max(float(pow_spec.max()), 1e-20))
    low_onset = librosa.onset.onset_strength(S=low_db, sr=sr, hop_length=hop, n_fft=n_fft)
    tempo, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop, units="frames")
    beat_times = (np.asarray(beats, dtype=np.int64) * hop / sr).astype(np.float64)
    tempo_f = float(np.atleast_1d(tempo)[0]) if len(beat_times) else 0.0
    spec = (mag.T / (n_fft / 2)).astype(np.float16)
    return AudioAnalysis(
        sha256=sha256,
        duration=float(duration),
        sr=int(sr),
        hop=hop,
        power=power,
        onset=np.asarray(onset, dtype=np.float32),
        low_onset=np.asarray(low_onset, dtype=np.float32),
        spec=np.ascontiguousarray(spec),
        beat_times=beat_times,
        tempo=tempo_f if np.isfinite(tempo_f) else 0.0,
    )


def _analyse_file(path: Path, sha256: str, setting: str) -> AudioAnalysis:
    """Decode and analyse (the slow path; tests count its calls)."""
    return _compute(decode_audio(path, sr=ANALYSIS_SR, setting=setting), ANALYSIS_SR, sha256)


# ---------------------------------------------------------------------------------------------- caching

_lru: OrderedDict[str, AudioAnalysis] = OrderedDict()
_lru_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the in-process analyses (the disk cache stays)."""
    with _lru_lock:
        _lru.clear()


def file_sha256(path: Path, *, setting: str = SETTING) -> str:
    """SHA-256 of the file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise AudioError(f"{setting}: {path}: cannot read it: {exc.strerror or exc}") from None
    return digest.hexdigest()


def cache_file(cache_dir: str | os.PathLike[str], sha256: str) -> Path:
    """Where the analysis of a file with this hash lives in ``cache_dir``."""
    return Path(cache_dir) / f"{sha256}-v{ANALYSIS_VERSION}.npz"


def _store(data: bytes, target: Path) -> None:
    """Write an analysis's npz bytes atomically; a read-only cache costs a re-analysis next time, not the render."""
    try:
        write_bytes_atomic(target, data)
    except WriteError as exc:
        warnings.warn(f"audio analysis not cached: {exc}", stacklevel=3)


def analyse_audio(
    path: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None, setting: str = SETTING
) -> AudioAnalysis:
    """The analysis of a soundtrack, computed once per file content.

    Looked up by the SHA-256 of the file's bytes in the in-process LRU, then (with ``cache_dir``) in
    ``cache_dir/<sha>-v<version>.npz``; a corrupt or stale cache file is ignored and rewritten. Nothing is written
    when ``cache_dir`` is None. Errors about the file are :class:`AudioError` naming ``setting``.
    """
    p, _ = resolve_audio_path(path, setting=setting)
    # Check the header (length limit, truncation, not audio) before hashing a file that may be huge.
    audio_duration(p, setting=setting)
    sha = file_sha256(p, setting=setting)
    target = cache_file(cache_dir, sha) if cache_dir is not None else None
    with _lru_lock:
        hit = _lru.get(sha)
        if hit is not None:
            _lru.move_to_end(sha)
    if hit is None and target is not None and target.is_file():
        try:
            loaded = AudioAnalysis.load(target)
        except ValueError:
            loaded = None  # corrupt or from another version: analysed again below, and the file rewritten
        if loaded is not None and loaded.sha256 == sha:
            hit = loaded
            _remember(sha, hit)
            return hit
    if hit is not None:
        if target is not None and not target.is_file():
            _store(hit.to_bytes(), target)
        return hit
    fresh = _analyse_file(p, sha, setting)
    # Round-trip through the stored bytes: what a later load returns is then this object's numbers exactly.
    data = fresh.to_bytes()
    analysis = AudioAnalysis.load(io.BytesIO(data))  # type: ignore[arg-type]
    if target is not None:
        _store(data, target)
    _remember(sha, analysis)
    return analysis


def _remember(sha: str, analysis: AudioAnalysis) -> None:
    with _lru_lock:
        _lru[sha] = analysis
        _lru.move_to_end(sha)
        while len(_lru) > _LRU_SIZE:
            _lru.popitem(last=False)
