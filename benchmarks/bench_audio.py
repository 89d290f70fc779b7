"""Time of a soundtrack's analysis (issue 19, "Measure": a 3-minute song, well under its length, once per file).

Synthesises a 3-minute song here (nothing copyrighted, nothing downloaded): kick / snare / hi-hat at 128 BPM, a
bass line and chords, 44.1 kHz stereo, written as 16-bit WAV and FLAC. Times, each the median of ``--repeats`` runs:

* decoding alone (:func:`discolib.audio.decode_audio`: read, average the channels, resample to 22.05 kHz);
* a cold analysis (:func:`discolib.audio.analyse_audio` with an empty cache folder and an empty in-process cache:
  hash, decode, STFT, onsets, beat tracking, npz written) and ``x_realtime`` = that time / the song's length;
* a cached load (the npz in the cache folder, in-process cache emptied) and an in-process hit;
* :func:`discolib.audio.features_from_analysis` at 15 fps, one new ``band(t, 200, 2000)`` and ``sample("bass", t)``
  over every frame;
* the first analysis in a fresh Python process (``python -c``: importing librosa, whose numba functions load from
  numba's cache or are compiled when it has none) - what ``discolib audio SONG`` costs once per process.

Run: ``python benchmarks/bench_audio.py [--repeats 3] [--quick]`` (``--quick``: a 30 s song, 2 repeats); prints a
table, writes ``benchmarks/results/audio.json`` (``--json PATH`` elsewhere). Files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import BenchResult, format_table, median  # noqa: E402

from discolib.audio import (  # noqa: E402
    analyse_audio,
    clear_cache,
    decode_audio,
    features_from_analysis,
)

RESULTS = Path(__file__).resolve().parent / "results" / "audio.json"
SR = 44100
BPM = 128.0


def make_song(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A ``(n, 2)`` float32 song: four-on-the-floor kick, snare on 2 and 4, eighth-note hats, bass line, chords."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    beat = 60.0 / BPM
    out = np.zeros(n, dtype=np.float64)

    def place(sound: np.ndarray, times: np.ndarray, gain: float) -> None:
        for t0 in times:
            i = int(round(t0 * sr))
            k = min(len(sound), n - i)
            if k > 0:
                out[i : i + k] += gain * sound[:k]

    tk = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * tk + 60 * 0.03 * (1 - np.exp(-tk / 0.03)))) * np.exp(-tk / 0.09)
    ts = np.arange(int(0.18 * sr)) / sr
    snare = (rng.normal(0, 1, len(ts)) * 0.6 + np.sin(2 * np.pi * 190 * ts)) * np.exp(-ts / 0.05)
    th = np.arange(int(0.05 * sr)) / sr
    hat = np.diff(rng.normal(0, 1, len(th) + 1)) * np.exp(-th / 0.012)  # differenced noise: mostly highs
    beats = np.arange(0, seconds, beat)
    place(kick, beats, 0.9)
    place(snare, beats[1::2], 0.35)
    place(hat, np.arange(beat / 2, seconds, beat / 2), 0.15)
    t = np.arange(n) / sr
    roots = np.array([55.0, 43.65, 49.0, 41.2])  # A1 F1 G1 E1, one per bar
    bar = (t / (4 * beat)).astype(int) % 4
    bass_f = roots[bar]
    phase = 2 * np.pi * np.cumsum(bass_f) / sr
    eighth = (t / (beat / 2)) % 1.0
    out += 0.25 * np.tanh(2 * np.sin(phase)) * np.exp(-eighth * 2.0)
    for ratio in (4.0, 5.04, 5.99):  # a triad two octaves above the root
        out += 0.04 * np.sin(2 * np.pi * np.cumsum(bass_f * ratio) / sr)
    out /= max(1.0, float(np.abs(out).max()) / 0.95)
    left, right = out * 1.02, out * 0.98 + 0.002 * rng.normal(0, 1, n)  # a slightly different right channel
    return np.stack([left, right], axis=1).astype(np.float32)


def timed(fn, repeats: int, before=None) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds of each of ``repeats`` calls (``before`` runs untimed before each)."""
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def fresh_process(song: Path) -> tuple[float, float, float]:
    """Seconds of ``python -c`` analysing ``song`` once (no disk cache): (wall, of which importing librosa's
    modules, of which the analysis)."""
    code = (
        "import json, time\n"
        "t0 = time.perf_counter()\n"
        "import librosa.beat, librosa.onset, librosa.feature\n"
        "t1 = time.perf_counter()\n"
        "from discolib.audio import analyse_audio\n"
        f"analyse_audio({str(song)!r})\n"
        "print(json.dumps([t1 - t0, time.perf_counter() - t1]))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], check=True, timeout=900, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    imports, analysis = json.loads(proc.stdout.strip().splitlines()[-1])
    return wall, imports, analysis


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 30 s song, 2 repeats")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import soundfile  # only the benchmark writes files; discolib.audio reads with it

    seconds = 30.0 if args.quick else 180.0
    repeats = 2 if args.quick else args.repeats
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = BenchResult(
        "audio",
        config={
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_start": round(load, 2),
            "load_average_1min_at_end": None,
            "song_seconds": seconds,
            "song": f"synthetic, {BPM:g} BPM, 44.1 kHz stereo",
            "repeats": repeats,
            "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", "(librosa's __pycache__)"),
        },
    )
    with tempfile.TemporaryDirectory(prefix="discolib-audio-bench-") as tmp:
        folder = Path(tmp)
        song = make_song(seconds)
        files = {"wav": folder / "song.wav", "flac": folder / "song.flac"}
        soundfile.write(files["wav"], song, SR, subtype="PCM_16")
        soundfile.write(files["flac"], song, SR, subtype="PCM_16")

        wall, imports, first = fresh_process(files["wav"])
        result.add("fresh process: python -c, analyse wav", wall, "s", "wall clock, start to exit")
        result.add("fresh process: import librosa", imports, "s", "numba functions from its cache, or compiled")
        result.add("fresh process: first analysis", first, "s", "after the import")
        analyse_audio(files["wav"])  # this process's librosa import and numba loads, untimed
        for kind, path in files.items():
            dec = timed(lambda p=path: decode_audio(p), repeats)
            result.add(f"decode {kind} to 22.05 kHz mono", median(dec), "s", "", dec)
            cache_dirs = iter(folder / f"cache-{kind}-{i}" for i in range(repeats))
            cold = timed(lambda p=path, c=cache_dirs: analyse_audio(p, cache_dir=next(c)), repeats, before=clear_cache)
            result.add(f"cold analysis {kind}", median(cold), "s", "hash + decode + analysis + npz write", cold)
            result.add(f"cold analysis {kind} x_realtime", median(cold) / seconds, "x", "time / song length")
        cache = folder / "cache"
        analysis = analyse_audio(files["wav"], cache_dir=cache)
        npz = next(cache.iterdir())
        load_s = timed(lambda: analyse_audio(files["wav"], cache_dir=cache), repeats, before=clear_cache)
        result.add("cached load (npz)", median(load_s) * 1000, "ms", f"hash + load; {npz.stat().st_size / 1e6:.1f} MB", [
            s * 1000 for s in load_s])  # fmt: skip
        hit = timed(lambda: analyse_audio(files["wav"], cache_dir=cache), repeats)
        result.add("in-process hit", median(hit) * 1000, "ms", "hash + LRU", [s * 1000 for s in hit])
        feats = timed(lambda: features_from_analysis(analysis, 15), repeats)
        result.add("audio_features at 15 fps", median(feats) * 1000, "ms", "from the analysis", [s * 1000 for s in feats])
        f = features_from_analysis(analysis, 15)
        t = np.arange(f.n_frames, dtype=np.float64)
        fresh = iter([features_from_analysis(analysis, 15) for _ in range(repeats)])
        band = timed(lambda: next(fresh).band(200, 2000), repeats)
        result.add("band(200, 2000)", median(band) * 1000, "ms", "a new band, all frames", [s * 1000 for s in band])
        sample = timed(lambda: f.sample("bass", t), repeats)
        result.add(f"sample('bass', t) x {f.n_frames} frames", median(sample) * 1000, "ms", "")
        result.config.update(tempo=round(f.tempo, 2), beats=len(f.beat_frames), bars=len(f.bar_frames),
                             n_frames=f.n_frames, first_downbeat=f.first_downbeat)  # fmt: skip
    if hasattr(os, "getloadavg"):
        result.config["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(format_table([result]))
    print(f"tempo {f.tempo:.2f} BPM (song {BPM:g}), {len(f.beat_frames)} beats, {len(f.bar_frames)} bars; "
          f"load average (1 min) at start / end: {result.config['load_average_1min_at_start']} / "
          f"{result.config['load_average_1min_at_end']} on {os.cpu_count()} CPUs")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
