"""Soundtrack analysis for music videos: per-frame loudness, onsets, beats, bars and band energies.

Layer: above :mod:`discolib.schedules`, below :mod:`discolib.config`. librosa, soundfile and matplotlib are imported
inside the functions that need them, so importing this package (and discolib.config) stays light.

* :mod:`~discolib.audio.decode`: the header check (:func:`audio_duration`) and decoding (:func:`decode_audio`);
* :mod:`~discolib.audio.analysis`: the fps-independent, cached :class:`AudioAnalysis` (:func:`analyse_audio`);
* :mod:`~discolib.audio.features`: :class:`AudioFeatures` per video frame, what keyframe strings read;
* :mod:`~discolib.audio.plot`: :func:`plot_features`.
"""

from __future__ import annotations

from discolib.audio.analysis import (
    ANALYSIS_HOP,
    ANALYSIS_NFFT,
    ANALYSIS_VERSION,
    AudioAnalysis,
    analyse_audio,
    clear_cache,
)
from discolib.audio.decode import ANALYSIS_SR, MAX_AUDIO_SECONDS, AudioError, audio_duration, decode_audio
from discolib.audio.features import (
    BANDS,
    AudioFeatures,
    audio_features,
    features_from_analysis,
    frames_for_duration,
)
from discolib.audio.plot import plot_features

__all__ = [
    "ANALYSIS_HOP",
    "ANALYSIS_NFFT",
    "ANALYSIS_SR",
    "ANALYSIS_VERSION",
    "BANDS",
    "MAX_AUDIO_SECONDS",
    "AudioAnalysis",
    "AudioError",
    "AudioFeatures",
    "analyse_audio",
    "audio_duration",
    "audio_features",
    "clear_cache",
    "decode_audio",
    "features_from_analysis",
    "frames_for_duration",
    "plot_features",
]
