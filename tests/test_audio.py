"""discolib.audio on synthetic soundtracks made here (numpy + soundfile; nothing downloaded, nothing copyrighted).

Clicks at 120 BPM give beats at the clicks' frames, a gated 60 Hz tone raises ``bass`` exactly where it is gated and
leaves ``treble`` low, silence is zeros, a stereo 44.1 kHz and a mono 22.05 kHz file of one signal give the same
features; plus the keyframe functions' semantics (sample, band, beat/bar pulses and keys), the cache and the plot.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("librosa")

from discolib.audio import (  # noqa: E402  (after the skips: without the audio extra these tests do not apply)
    ANALYSIS_VERSION,
    BANDS,
    AudioAnalysis,
    analyse_audio,
    audio_duration,
    audio_features,
    clear_cache,
    decode_audio,
    features_from_analysis,
    frames_for_duration,
    plot_features,
)
from discolib.audio import analysis as analysis_mod  # noqa: E402

FPS = 15.0
BEAT_S = 0.5  # 120 BPM


def clicks(sr: int, seconds: float = 9.0, *, start: float = 0.0, kick_phase: int | None = None) -> np.ndarray:
    """Short 1 kHz bursts every 0.5 s from ``start``; with ``kick_phase``, every 4th click (from that one) also
    carries a 55 Hz kick, so the bars start on it."""
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    n_click = int(0.012 * sr)
    n_kick = int(0.12 * sr)
    burst = 0.8 * np.sin(2 * np.pi * 1000 * t[:n_click]) * np.hanning(n_click)
    kick = 0.9 * np.sin(2 * np.pi * 55 * t[:n_kick]) * np.exp(-t[:n_kick] / 0.04)
    for k, when in enumerate(np.arange(start, seconds - 0.2, BEAT_S)):
        i = int(round(when * sr))
        y[i : i + n_click] += burst[: len(y) - i]
        if kick_phase is not None and k % 4 == kick_phase:
            y[i : i + n_kick] += kick[: len(y) - i]
    return y


def gated_tone(sr: int, seconds: float = 6.0, on: float = 2.0, off: float = 4.0, freq: float = 60.0) -> np.ndarray:
    """A 60 Hz sine (amplitude 0.5) between ``on`` and ``off`` seconds with 5 ms raised-cosine ramps, else silence."""
    t = np.arange(int(seconds * sr)) / sr
    ramp = 0.005
    gate = np.clip(np.minimum(t - on, off - t) / ramp, 0.0, 1.0)
    gate = 0.5 - 0.5 * np.cos(np.pi * gate)
    return 0.5 * np.sin(2 * np.pi * freq * t) * gate


def write(path: Path, y: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    sf.write(path, y, sr, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def click_features(tmp_path_factory: pytest.TempPathFactory):
    path = write(tmp_path_factory.mktemp("clicks") / "clicks.wav", clicks(22050, kick_phase=1), 22050)
    return audio_features(path, FPS)


def click_times(seconds: float = 9.0, start: float = 0.0) -> np.ndarray:
    return np.arange(start, seconds - 0.2, BEAT_S)


# ---------------------------------------------------------------------------------------------- the checks


def test_clicks_at_120_bpm_give_beats_at_the_clicks_frames(click_features) -> None:
    f = click_features
    assert abs(f.tempo - 120.0) < 2.0
    expected = np.floor(click_times() * FPS).astype(int)
    assert len(f.beat_frames) >= len(expected) - 2  # the tracker may skip the first or last click
    for bf in f.beat_frames:
        assert np.min(np.abs(expected - bf)) <= 1, (bf, expected)
    assert len(set(f.beat_frames.tolist())) == len(f.beat_frames)
    assert f.n_frames == 135
    assert f.summary() == {"duration": 9.0, "tempo": f.tempo, "beats": len(f.beat_frames), "bars": len(f.bar_frames),
                           "n_frames": 135, "fps": 15.0}  # fmt: skip


def test_first_downbeat_auto_picks_the_beats_with_the_kick(click_features) -> None:
    f = click_features
    kicked = np.floor(click_times()[1::4] * FPS).astype(int)  # the kick is on clicks 1, 5, 9, ...
    assert len(f.bar_frames) >= 3
    for bar in f.bar_frames:
        assert np.min(np.abs(kicked - bar)) <= 1, (bar, kicked)
    assert np.array_equal(f.bar_frames, f.beat_frames[f.first_downbeat :: 4])
    # The other phases are other beats: the auto choice is not a default that happens to match.
    for p in range(4):
        other = features_from_analysis(f.analysis, FPS, first_downbeat=p)
        assert other.first_downbeat == p
        assert np.array_equal(other.bar_frames, f.beat_frames[p::4])
        assert (p == f.first_downbeat) == np.array_equal(other.bar_frames, f.bar_frames)


def test_gated_60hz_tone_raises_bass_only_inside_the_gate(tmp_path: Path) -> None:
    f = audio_features(write(tmp_path / "tone.wav", gated_tone(22050), 22050), FPS)
    # The gate is [2 s, 4 s): frames 30..59. Frames 29 and 60 share an analysis window with the gate's edge.
    inside = np.arange(32, 58)
    outside = np.r_[np.arange(0, 29), np.arange(61, f.n_frames)]
    assert f.bass[inside].min() > 0.5
    assert f.bass[outside].max() < 0.05
    assert f.treble.max() < 0.05
    assert f.mid[outside].max() < 0.05
    assert f.rms[inside].min() > 0.9 and f.rms[outside].max() < 0.05


def test_silence_is_zero_everywhere_with_no_beats(tmp_path: Path) -> None:
    f = audio_features(write(tmp_path / "silence.wav", np.zeros(3 * 22050), 22050), FPS)
    assert f.n_frames == 45
    for name in ("rms", "onset", "bass", "mid", "treble"):
        assert np.array_equal(getattr(f, name), np.zeros(45)), name
    assert np.array_equal(f.band(100.0, 200.0), np.zeros(45))
    assert len(f.beat_frames) == 0 and len(f.bar_frames) == 0 and f.tempo == 0.0
    assert np.array_equal(f.sample("beat", np.arange(45.0)), np.zeros(45))
    with pytest.raises(ValueError, match="no beats"):
        f.beat_frame(1)
    with pytest.raises(ValueError, match="no beats"):
        f.bar_frame(2)


def test_stereo_44k_and_mono_22k_files_give_the_same_features(tmp_path: Path) -> None:
    def signal(sr: int) -> np.ndarray:
        return 0.5 * (clicks(sr, 8.0) + gated_tone(sr, 8.0, 3.2, 5.2))  # peak < 1: PCM does not clip

    mono = write(tmp_path / "mono.wav", signal(22050), 22050)
    s44 = signal(44100)
    stereo = write(tmp_path / "stereo.flac", np.stack([s44 * 1.25, s44 * 0.75], axis=1), 44100, subtype="PCM_24")
    a, b = audio_features(mono, FPS), audio_features(stereo, FPS)
    assert a.analysis.sha256 != b.analysis.sha256 and a.n_frames == b.n_frames == 120
    for name in ("rms", "onset", "bass", "mid", "treble"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=0.02, err_msg=name)
    assert np.array_equal(a.beat_frames, b.beat_frames)
    assert abs(a.tempo - b.tempo) < 1e-6
    assert len(decode_audio(stereo)) == len(decode_audio(mono)) == 8 * 22050
    assert audio_duration(stereo) == audio_duration(mono) == 8.0


def test_ffmpeg_fallback_reads_what_soundfile_cannot(tmp_path: Path) -> None:
    import subprocess

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    sr = 44100
    t = np.arange(2 * sr) / sr
    left_only = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1)
    wav = write(tmp_path / "left.wav", left_only, sr, subtype="PCM_16")
    mka = tmp_path / "left.mka"  # Matroska: libsndfile cannot read it, ffmpeg can (losslessly, as 16-bit PCM)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(wav), "-c:a", "pcm_s16le",
                    str(mka)], check=True, timeout=60)  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017  (whatever libsndfile raises: the point is that it cannot)
        sf.info(str(mka))
    assert audio_duration(mka) == pytest.approx(2.0, abs=0.01)
    a, b = decode_audio(wav), decode_audio(mka)
    assert len(a) == len(b) == 2 * 22050
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(b).max() == pytest.approx(0.25, abs=0.01)  # the channels' average, as soundfile's path gives


# ---------------------------------------------------------------------------------------------- keyframe functions


def test_band_validation_and_named_bands(click_features) -> None:
    f = click_features
    assert np.array_equal(f.band(*BANDS["bass"]), f.bass)
    assert f.band(20, 250) is f.band(20.0, 250.0)  # cached per (lo, hi)
    assert f.band(0, 11025).max() == pytest.approx(1.0)
    narrow = f.band(1000, 1001)  # narrower than a bin: the nearest bin (1001.3 Hz is not in [1000, 1001))
    assert narrow.shape == (f.n_frames,) and narrow.max() == pytest.approx(1.0)
    for lo, hi in [(250, 250), (300, 200), (-1, 100), (math.nan, 100), (0, math.inf)]:
        with pytest.raises(ValueError, match="band"):
            f.band(lo, hi)
    with pytest.raises(ValueError, match="below 11025"):
        f.band(12000, 15000)
    t = np.arange(f.n_frames, dtype=float)
    assert np.array_equal(f.sample("band", t, np.float64(20), np.float64(250)), f.bass)
    with pytest.raises(ValueError, match="must be constants"):
        f.sample("band", t, t, np.float64(250))
    with pytest.raises(ValueError, match="two frequencies"):
        f.sample("band", t, np.float64(20))


def test_sample_interpolates_and_is_zero_outside(click_features) -> None:
    f = click_features
    n = f.n_frames
    t = np.array([-0.5, 0.0, 2.5, 10.25, n - 1.0, n - 0.5, n + 3.0])
    for name in ("rms", "onset", "bass", "mid", "treble"):
        v = getattr(f, name)
        got = f.sample(name, t)
        want = [0.0, v[0], (v[2] + v[3]) / 2, 0.75 * v[10] + 0.25 * v[11], v[n - 1], 0.0, 0.0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)
        assert f.sample(name, np.float64(3.0)).shape == ()
    with pytest.raises(ValueError, match="only the frame"):
        f.sample("rms", t, t)
    with pytest.raises(ValueError, match="unknown audio function"):
        f.sample("loudness", t)


def test_beat_and_bar_pulses(click_features) -> None:
    f = click_features
    b0, b1 = int(f.beat_frames[0]), int(f.beat_frames[1])
    assert b1 - b0 >= 6
    t = np.array([b0 - 1.0, b0, b0 + 0.75, b0 + 1.5, b0 + 3.0, b1])
    # decay 0.1 s = 1.5 frames at 15 fps
    np.testing.assert_allclose(f.sample("beat", t, np.float64(0.1)), [0, 1, 0.5, 0, 0, 1], atol=1e-12)
    # default decay: beat_decay 0.25 s = 3.75 frames
    np.testing.assert_allclose(f.sample("beat", np.array([b0 + 1.875])), [0.5], atol=1e-12)
    # a decay per frame broadcasts with t
    np.testing.assert_allclose(f.sample("beat", np.array([b0 + 0.75, b0 + 0.75]), np.array([0.1, 0.2])), [0.5, 0.75])
    bar0 = int(f.bar_frames[0])
    bars = f.sample("bar", np.arange(f.n_frames, dtype=float))
    assert bars[bar0] == 1.0 and np.all(bars[:bar0] == 0.0)
    assert np.count_nonzero(bars == 1.0) == len(set(f.bar_frames.tolist()))
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="decay"):
            f.sample("beat", t, np.float64(bad))


def test_beat_and_bar_frame_keys(click_features) -> None:
    f = click_features
    n_beats = len(f.beat_frames)
    assert [f.beat_frame(k) for k in range(1, n_beats + 1)] == f.beat_frames.tolist()
    assert f.beat_frame(2.0) == f.beat_frames[1]  # a whole float (from arithmetic in a key) is fine
    times = f.analysis.beat_times
    last, period = float(times[-1]), (float(times[-1]) - float(times[0])) / (len(times) - 1)
    assert period == pytest.approx(BEAT_S, abs=0.002)  # the tracked beats' mean interval, not the quantised tempo
    for extra in (1, 4, 100):
        assert f.beat_frame(n_beats + extra) == math.floor((last + extra * period) * FPS + 1e-9)
    # 100 beats past the end the clicks' own grid: continued at the tracked interval it stays within a frame
    assert abs(f.beat_frame(n_beats + 100) - (last + 100 * BEAT_S) * FPS) <= 1.0
    for huge in (10**400, 1e300):
        with pytest.raises(ValueError, match="too large|too far"):
            f.beat_frame(huge)
    assert f.beat_frame(n_beats + 1) > f.beat_frames[-1]
    assert [f.bar_frame(k) for k in range(1, len(f.bar_frames) + 1)] == f.bar_frames.tolist()
    k = len(f.bar_frames) + 3
    assert f.bar_frame(k) == f.beat_frame(f.first_downbeat + (k - 1) * 4 + 1)
    for bad in (0, -2, 1.5, True, "3", math.inf):
        with pytest.raises(ValueError, match="whole number"):
            f.beat_frame(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="whole number"):
            f.bar_frame(bad)  # type: ignore[arg-type]


def test_feature_arguments_and_key(click_features) -> None:
    a = click_features.analysis
    f = features_from_analysis(a, 24, beat_decay=0.5, beats_per_bar=3, first_downbeat=2)
    assert f.key == f"{a.sha256}:24.0:0.5:3:2"
    assert f.n_frames == 216 and np.array_equal(f.bar_frames, f.beat_frames[2::3])
    assert np.array_equal(f.beat_frames, np.floor(a.beat_times * 24 + 1e-9).astype(np.int64))
    for kwargs in ({"beats_per_bar": 0}, {"first_downbeat": 3, "beats_per_bar": 3}, {"first_downbeat": -2},
                   {"beat_decay": 0}, {"beat_decay": math.nan}):  # fmt: skip
        with pytest.raises(ValueError):
            features_from_analysis(a, 15, **kwargs)
    for fps in (0, -1, math.inf, "15"):
        with pytest.raises(ValueError, match="fps"):
            features_from_analysis(a, fps)  # type: ignore[arg-type]
    assert not click_features.rms.flags.writeable and not a.spec.flags.writeable


def test_high_fps_windows_without_a_hop_take_the_nearest(click_features) -> None:
    a = click_features.analysis
    f = features_from_analysis(a, 200)  # 5 ms frames, 11.6 ms hops: most frames hold no hop centre
    assert f.n_frames == 1800 and np.all(np.isfinite(f.rms)) and f.rms.max() == pytest.approx(1.0)
    hop_of_frame = np.rint((np.arange(1800) + 0.5) / 200 * a.sr / a.hop).astype(int)
    assert np.all(f.rms[hop_of_frame == 0] >= 0)
    # each frame's value is some hop's value: the nearest one for the empty windows
    per_hop = np.sqrt(a.power.astype(np.float64))
    assert np.all(np.isin(np.round(f.rms * per_hop.max(), 12), np.round(per_hop, 12)))


def test_frames_for_duration() -> None:
    assert frames_for_duration(9.0, 15) == 135
    assert frames_for_duration(1.0, 3) == 3
    assert frames_for_duration(0.01, 15) == 1
    assert frames_for_duration(0.0, 15) == 1
    assert frames_for_duration(10.0 / 3.0, 3) == 10  # 9.999999... frames is 10, not 11
    assert frames_for_duration(3.34, 3) == 11
    with pytest.raises(ValueError):
        frames_for_duration(-1, 15)
    with pytest.raises(ValueError):
        frames_for_duration(1, 0)


def test_plot_features(click_features, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    f = click_features
    fig = plot_features(f, frame=30, curves={"zoom": 1 + 0.04 * f.bass})
    assert isinstance(fig, Figure) and len(fig.axes) >= 3
    fig.savefig(tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert len(plot_features(f).axes) >= 2


# ---------------------------------------------------------------------------------------------- cache


def test_cache_loads_the_same_arrays_bit_for_bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    song = write(tmp_path / "song.wav", clicks(22050, 4.0) + gated_tone(22050, 4.0, 1.0, 2.5), 22050)
    cache = tmp_path / "cache"
    clear_cache()
    first = analyse_audio(song, cache_dir=cache)
    files = list(cache.iterdir())
    assert [p.name for p in files] == [f"{first.sha256}-v{ANALYSIS_VERSION}.npz"]
    assert analyse_audio(song, cache_dir=cache) is first  # the in-process LRU

    def no_analysis(*args: object, **kwargs: object) -> AudioAnalysis:
        raise AssertionError("analysed again instead of loading the cache")

    clear_cache()
    monkeypatch.setattr(analysis_mod, "_analyse_file", no_analysis)
    again = analyse_audio(song, cache_dir=cache)
    assert again is not first
    for name in ("power", "onset", "low_onset", "spec", "beat_times"):
        x, y = getattr(first, name), getattr(again, name)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
    assert (again.sha256, again.duration, again.sr, again.hop, again.tempo) == (
        first.sha256, first.duration, first.sr, first.hop, first.tempo)  # fmt: skip
    fa, fb = features_from_analysis(first, FPS), features_from_analysis(again, FPS)
    assert fa.key == fb.key and fa.bass.tobytes() == fb.bass.tobytes() and fa.onset.tobytes() == fb.onset.tobytes()


def test_corrupt_cache_file_is_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    song = write(tmp_path / "song.wav", clicks(22050, 3.0), 22050)
    cache = tmp_path / "cache"
    clear_cache()
    first = analyse_audio(song, cache_dir=cache)
    target = cache / f"{first.sha256}-v{ANALYSIS_VERSION}.npz"
    real = analysis_mod._analyse_file
    calls: list[Path] = []

    def counting(path: Path, sha: str, setting: str) -> AudioAnalysis:
        calls.append(path)
        return real(path, sha, setting)

    monkeypatch.setattr(analysis_mod, "_analyse_file", counting)
    for garbage in (b"", b"not an npz", target.read_bytes()[:200]):
        target.write_bytes(garbage)
        clear_cache()
        with pytest.raises(ValueError):
            AudioAnalysis.load(target)
        again = analyse_audio(song, cache_dir=cache)
        assert again.spec.tobytes() == first.spec.tobytes()
        assert AudioAnalysis.load(target).onset.tobytes() == first.onset.tobytes()
    assert len(calls) == 3


def test_nothing_is_written_without_a_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    song = write(tmp_path / "song.wav", clicks(22050, 2.0), 22050)
    monkeypatch.chdir(tmp_path)
    clear_cache()
    audio_features(song, FPS)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["song.wav"]


def test_a_float_file_beyond_full_scale_gives_the_features_of_its_shape(tmp_path: Path) -> None:
    """Float WAVs may hold samples far above 1.0: the analysis scales them (the features are relative), so the
    float16 spectrum cannot overflow into NaN and the features equal those of the same signal at full scale."""
    y = clicks(22050, seconds=4.0, kick_phase=0)
    y = y / np.abs(y).max()
    normal = audio_features(write(tmp_path / "normal.wav", y, 22050), FPS)
    loud = audio_features(write(tmp_path / "loud.wav", y * 1e6, 22050), FPS)
    for name in ("rms", "onset", "bass", "mid", "treble"):
        assert np.isfinite(getattr(loud, name)).all()
        np.testing.assert_allclose(getattr(loud, name), getattr(normal, name), atol=1e-3, err_msg=name)
    np.testing.assert_array_equal(loud.beat_frames, normal.beat_frames)
