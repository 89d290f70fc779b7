"""Per-video-frame features of a soundtrack, and what keyframe strings read from them.

Frame ``f`` covers ``[f / fps, (f + 1) / fps)``; its value aggregates the analysis hops whose centre falls in that
window (a window without a hop centre, above ~86 fps, takes the hop nearest its middle):

* ``rms``: ``sqrt(mean power)``; ``onset``: the window's largest onset strength; both divided by their song maximum;
* ``band(lo, hi)``: ``sqrt(mean over the hops of sum(spec**2) over the bins with lo <= freq < hi)``, divided by
  ``max(its own maximum, 0.01 * the full spectrum's maximum)``: a band 40 dB below the song's loudest moment reads
  as quiet instead of being stretched to 1 (a pure 60 Hz tone keeps ``treble`` near 0);
* a silent song (peak rms below about -100 dBFS) is 0 everywhere, with no beats and tempo 0.

Everything is vectorised numpy over hops and frames; nothing loops over frames in Python.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from discolib.audio.analysis import AudioAnalysis, analyse_audio
from discolib.audio.decode import SETTING

__all__ = [
    "BANDS",
    "AudioFeatures",
    "audio_features",
    "features_from_analysis",
    "frames_for_duration",
]

#: The named bands, Hz, ``[lo, hi)``.
BANDS: dict[str, tuple[float, float]] = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, 11025.0)}
#: A band is never stretched above this fraction of the full spectrum's peak amplitude (-40 dB).
BAND_FLOOR = 10 ** (-40 / 20)
_CONTINUOUS = ("rms", "onset", "bass", "mid", "treble")
_EPS = 1e-9  # frame times are products of floats: 15.0 must not floor to 14


def frames_for_duration(duration: float, fps: float) -> int:
    """Frames a video of ``duration`` seconds needs at ``fps``: ``ceil(duration * fps - 1e-9)``, at least 1."""
    duration, fps = _positive(duration, "duration", allow_zero=True), _positive(fps, "fps")
    return max(1, math.ceil(duration * fps - _EPS))


def _positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _whole(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} is too large") from None
    if not math.isfinite(v) or not v.is_integer() or v < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(v)


class _Windows:
    """Which analysis hops fall in which video frame, for vectorised per-frame means and maxima."""

    def __init__(self, analysis: AudioAnalysis, fps: float, n_frames: int) -> None:
        centres = np.arange(analysis.n_hops, dtype=np.float64) * analysis.hop / analysis.sr
        frame = np.floor(centres * fps + _EPS).astype(np.int64)
        self.n_valid = int(np.searchsorted(frame, n_frames))  # hops past the last frame belong to none
        self.frame = frame[: self.n_valid]
        self.counts = np.bincount(self.frame, minlength=n_frames)
        middles = (np.arange(n_frames, dtype=np.float64) + 0.5) / fps
        nearest = np.clip(np.rint(middles * analysis.sr / analysis.hop), 0, max(analysis.n_hops - 1, 0))
        self.empty = np.flatnonzero(self.counts == 0)
        self.nearest = nearest.astype(np.int64)[self.empty]
        self.n_frames = n_frames

    def mean(self, per_hop: np.ndarray) -> np.ndarray:
        x = np.asarray(per_hop, dtype=np.float64)
        sums = np.bincount(self.frame, weights=x[: self.n_valid], minlength=self.n_frames)
        out = sums / np.maximum(self.counts, 1)
        out[self.empty] = x[self.nearest] if len(x) else 0.0
        return out

    def max(self, per_hop: np.ndarray) -> np.ndarray:
        x = np.asarray(per_hop, dtype=np.float64)
        out = np.full(self.n_frames, -np.inf)
        np.maximum.at(out, self.frame, x[: self.n_valid])
        out[self.empty] = x[self.nearest] if len(x) else 0.0
        return out


def _normalised(x: np.ndarray, denominator: float) -> np.ndarray:
    if not denominator > 0:
        return np.zeros_like(x)
    return np.clip(x / denominator, 0.0, 1.0)


def _readonly(x: np.ndarray) -> np.ndarray:
    x.setflags(write=False)
    return x


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """A soundtrack's features per video frame; implements the schedules' ``AudioSource`` protocol.

    Arrays are read-only, ``(n_frames,)`` float64 in ``[0, 1]``; ``beat_frames`` is ``floor(beat_time * fps)`` and
    ``bar_frames`` is ``beat_frames[first_downbeat::beats_per_bar]``.
    """

    analysis: AudioAnalysis
    fps: float
    beat_decay: float
    beats_per_bar: int
    first_downbeat: int
    n_frames: int
    rms: np.ndarray
    onset: np.ndarray
    bass: np.ndarray
    mid: np.ndarray
    treble: np.ndarray
    beat_frames: np.ndarray
    bar_frames: np.ndarray
    tempo: float
    key: str
    _windows: _Windows = field(repr=False)
    _bands: dict[tuple[float, float], np.ndarray] = field(default_factory=dict, repr=False)
    _full_peak: list[float] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------------------------------ bands

    def _band_energy(self, mask: np.ndarray) -> np.ndarray:
        """Per-frame amplitude of the bins in ``mask``: sqrt of the window's mean of the hops' summed power."""
        spec = self.analysis.spec
        per_hop = np.einsum("ij,ij->i", spec[:, mask], spec[:, mask], dtype=np.float64)
        return np.sqrt(self._windows.mean(per_hop))

    def _full_amplitude_peak(self) -> float:
        if not self._full_peak:
            full = self._band_energy(np.ones(self.analysis.spec.shape[1], dtype=bool))
            self._full_peak.append(float(full.max(initial=0.0)))
        return self._full_peak[0]

    def band(self, lo: float, hi: float) -> np.ndarray:
        """Energy between ``lo`` and ``hi`` Hz (``[lo, hi)``) per frame, in [0, 1]; cached per (lo, hi).

        A band narrower than the analysis' bin spacing (21.5 Hz) reads the bin nearest its middle.
        """
        lo_f, hi_f = float(lo), float(hi)
        if not (math.isfinite(lo_f) and math.isfinite(hi_f)) or not 0 <= lo_f < hi_f:
            raise ValueError(f"band(): expected 0 <= lo < hi (Hz), got lo={lo!r}, hi={hi!r}")
        nyquist = self.analysis.sr / 2
        if lo_f >= nyquist:
            raise ValueError(f"band(): lo must be below {nyquist:g} Hz (half the analysis rate), got {lo!r}")
        key = (lo_f, hi_f)
        cached = self._bands.get(key)
        if cached is not None:
            return cached
        if self.analysis.silent:
            out = np.zeros(self.n_frames)
        else:
            n_bins = self.analysis.spec.shape[1]
            freqs = np.arange(n_bins) * self.analysis.sr / self.analysis.n_fft
            mask = (freqs >= lo_f) & (freqs < hi_f)
            if not mask.any():
                mask[int(np.argmin(np.abs(freqs - (lo_f + hi_f) / 2)))] = True
            energy = self._band_energy(mask)
            out = _normalised(energy, max(float(energy.max(initial=0.0)), BAND_FLOOR * self._full_amplitude_peak()))
        self._bands[key] = _readonly(out)
        return out

    # ------------------------------------------------------------------------------------------ keyframe functions

    def sample(self, name: str, t: Any, *args: Any) -> np.ndarray:
        """The feature ``name`` at frame(s) ``t`` (fractional frames interpolate; outside ``0..n_frames-1``: 0).

        ``band`` takes ``(lo_hz, hi_hz)``, constant over the frames; ``beat`` / ``bar`` take an optional decay in
        seconds (default ``beat_decay``): ``max(0, 1 - (t - bf) / (decay * fps))`` with ``bf`` the latest beat/bar
        frame ``<= t``, 0 before the first. Bad arguments are a ``ValueError`` with a short reason.
        """
        tt = np.asarray(t, dtype=np.float64)
        arrays = [np.asarray(a, dtype=np.float64) for a in args]
        try:
            shape = np.broadcast_shapes(tt.shape, *(a.shape for a in arrays))
        except ValueError:
            raise ValueError(f"{name}(): the arguments have shapes that do not broadcast") from None
        tt = np.broadcast_to(tt, shape)
        frames = np.arange(self.n_frames, dtype=np.float64)
        if name in _CONTINUOUS:
            if arrays:
                raise ValueError(f"{name}() takes only the frame, got {1 + len(arrays)} arguments")
            return np.interp(tt, frames, getattr(self, name), left=0.0, right=0.0)
        if name == "band":
            if len(arrays) != 2:
                raise ValueError(f"band() takes the frame and two frequencies in Hz, got {1 + len(arrays)} arguments")
            lo, hi = (self._constant(a) for a in arrays)
            return np.interp(tt, frames, self.band(lo, hi), left=0.0, right=0.0)
        if name in ("beat", "bar"):
            if len(arrays) > 1:
                raise ValueError(f"{name}() takes the frame and an optional decay in seconds, got {1 + len(arrays)}")
            decay = np.broadcast_to(arrays[0], shape) if arrays else np.full(shape, self.beat_decay)
            if not np.all(np.isfinite(decay)) or np.any(decay <= 0):
                raise ValueError(f"{name}(): the decay must be a number of seconds > 0")
            marks = (self.beat_frames if name == "beat" else self.bar_frames).astype(np.float64)
            return _pulse(tt, marks, decay * self.fps)
        raise ValueError(f"unknown audio function {name!r}; expected one of {', '.join((*_CONTINUOUS, 'band', 'beat', 'bar'))}")

    @staticmethod
    def _constant(a: np.ndarray) -> float:
        if a.size == 0 or not np.all(a == a.flat[0]):
            raise ValueError("band(): the frequencies must be constants")
        return float(a.flat[0])

    # ------------------------------------------------------------------------------------------ keys

    def beat_frame(self, n: int) -> int:
        """The frame of the ``n``-th beat (from 1); past the last tracked beat, beats continue at the mean interval
        of the tracked ones (librosa's tempo is quantised to its lag grid: 129.2 BPM for a 128 BPM song would
        drift by a frame every few bars)."""
        k = _whole(n, "beat_frame(n)", minimum=1)
        times = self.analysis.beat_times
        if len(times) == 0:
            raise ValueError("the soundtrack has no beats")
        if k <= len(times):
            return int(self.beat_frames[k - 1])
        if len(times) >= 2:
            period = (float(times[-1]) - float(times[0])) / (len(times) - 1)
        elif self.tempo > 0:
            period = 60.0 / self.tempo
        else:
            raise ValueError("the soundtrack has no tempo to continue its beats")
        t = float(times[-1]) + (k - len(times)) * period
        if not math.isfinite(t * self.fps) or t * self.fps > 2**62:
            raise ValueError(f"beat {k} is too far past the song's end")
        return int(math.floor(t * self.fps + _EPS))

    def bar_frame(self, n: int) -> int:
        """The frame of the ``n``-th bar (from 1): beat ``first_downbeat + (n - 1) * beats_per_bar`` (0-based)."""
        k = _whole(n, "bar_frame(n)", minimum=1)
        return self.beat_frame(self.first_downbeat + (k - 1) * self.beats_per_bar + 1)

    def summary(self) -> dict[str, float | int]:
        """``duration`` (s), ``tempo`` (BPM), ``beats``, ``bars``, ``n_frames`` and ``fps``."""
        return {
            "duration": float(self.analysis.duration),
            "tempo": float(self.tempo),
            "beats": len(self.beat_frames),
            "bars": len(self.bar_frames),
            "n_frames": int(self.n_frames),
            "fps": float(self.fps),
        }


def _pulse(t: np.ndarray, marks: np.ndarray, decay_frames: np.ndarray) -> np.ndarray:
    """``max(0, 1 - (t - m) / decay_frames)`` with ``m`` the latest mark ``<= t``; 0 before the first mark."""
    if len(marks) == 0:
        return np.zeros(t.shape)
    idx = np.searchsorted(marks, t, side="right") - 1
    last = marks[np.clip(idx, 0, None)]
    return np.where(idx >= 0, np.maximum(0.0, 1.0 - (t - last) / decay_frames), 0.0)


def _auto_downbeat(analysis: AudioAnalysis, beats_per_bar: int) -> int:
    """The phase ``p`` whose beats ``[p::beats_per_bar]`` carry the most bass onset (kicks fall on the one)."""
    times = analysis.beat_times
    if len(times) == 0 or beats_per_bar == 1:
        return 0
    hops = np.rint(times * analysis.sr / analysis.hop).astype(np.int64)
    # A beat is placed on the full onset's peak; the kick's bass onset may peak a hop or two away.
    near = np.clip(hops[:, None] + np.arange(-2, 3)[None, :], 0, analysis.n_hops - 1)
    strength = analysis.low_onset[near].astype(np.float64).max(axis=1)
    n_phases = min(beats_per_bar, len(times))
    scores = [float(strength[p::beats_per_bar].mean()) for p in range(n_phases)]  # bpb phases, not frames
    return int(np.argmax(scores))


def features_from_analysis(
    analysis: AudioAnalysis,
    fps: float,
    *,
    beat_decay: float = 0.25,
    beats_per_bar: int = 4,
    first_downbeat: int = -1,
) -> AudioFeatures:
    """The per-frame features of ``analysis`` at ``fps`` (see the module's docstring).

    ``first_downbeat`` -1 picks the phase automatically; else the index (0-based) of the beat that starts the
    first bar, below ``beats_per_bar``. Bad arguments are a ``ValueError``.
    """
    fps_f = _positive(fps, "fps")
    decay = _positive(beat_decay, "beat_decay")
    bpb = _whole(beats_per_bar, "beats_per_bar", minimum=1)
    first = _whole(first_downbeat, "first_downbeat", minimum=-1)
    if first >= bpb:
        raise ValueError(f"first_downbeat must be -1 (auto) or below beats_per_bar ({bpb}), got {first_downbeat!r}")
    n_frames = frames_for_duration(analysis.duration, fps_f)
    windows = _Windows(analysis, fps_f, n_frames)
    silent = analysis.silent
    if first < 0:
        first = _auto_downbeat(analysis, bpb) if not silent else 0
    times = analysis.beat_times if not silent else np.zeros(0)
    beat_frames = np.floor(times * fps_f + _EPS).astype(np.int64)
    zeros = np.zeros(n_frames)
    if silent:
        rms = onset = zeros
    else:
        rms_raw = np.sqrt(windows.mean(analysis.power))
        onset_raw = windows.max(analysis.onset)
        rms = _normalised(rms_raw, float(rms_raw.max(initial=0.0)))
        onset = _normalised(onset_raw, float(onset_raw.max(initial=0.0)))
    features = AudioFeatures(
        analysis=analysis,
        fps=fps_f,
        beat_decay=decay,
        beats_per_bar=bpb,
        first_downbeat=first,
        n_frames=n_frames,
        rms=_readonly(rms.copy()),
        onset=_readonly(onset.copy()),
        bass=zeros,
        mid=zeros,
        treble=zeros,
        beat_frames=_readonly(beat_frames),
        bar_frames=_readonly(beat_frames[first::bpb].copy()),
        tempo=float(analysis.tempo) if not silent else 0.0,
        key=f"{analysis.sha256}:{fps_f!r}:{decay!r}:{bpb}:{first}",
        _windows=windows,
    )
    # The named bands are band() results (cached there too), filled in after construction as the class is frozen.
    for name, (lo, hi) in BANDS.items():
        object.__setattr__(features, name, features.band(lo, hi))
    return features


def audio_features(
    path: str | os.PathLike[str],
    fps: float,
    *,
    beat_decay: float = 0.25,
    beats_per_bar: int = 4,
    first_downbeat: int = -1,
    cache_dir: str | os.PathLike[str] | None = None,
    setting: str = SETTING,
) -> AudioFeatures:
    """:func:`~discolib.audio.analysis.analyse_audio` (cached) then :func:`features_from_analysis`, whose result is
    kept per process too (the checks before a render, its plan and its budget all ask for the same features)."""
    analysis = analyse_audio(path, cache_dir=cache_dir, setting=setting)
    key = (analysis.sha256, fps, beat_decay, beats_per_bar, first_downbeat)
    with _features_lock:
        hit = _features_lru.get(key)
        if hit is not None:
            _features_lru.move_to_end(key)
            return hit
    features = features_from_analysis(
        analysis, fps, beat_decay=beat_decay, beats_per_bar=beats_per_bar, first_downbeat=first_downbeat
    )
    with _features_lock:
        _features_lru[key] = features
        while len(_features_lru) > _FEATURES_LRU_SIZE:
            _features_lru.popitem(last=False)
    return features


#: Features per (file hash, fps, beat settings): a few songs' worth (each holds its per-frame arrays and bands).
_FEATURES_LRU_SIZE = 4
_features_lru: OrderedDict[tuple[Any, ...], AudioFeatures] = OrderedDict()
_features_lock = threading.Lock()
