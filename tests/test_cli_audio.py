"""``discolib audio``: the summary (lines and JSON), the features plot, keyframe export, one-line errors.

The song is made here: clicks at 120 BPM (a short low thump under a bright tick, like a kick), so the tempo, the beat
frames and the bass are known without any recorded music.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from discolib.cli import main
from discolib.schedules.keyframes import Schedule

SR = 22050
BPM = 120.0
SECONDS = 6.0
FPS = 15
#: Clicks at 0.5 s, 1.0 s, ... 5.5 s: every beat of 120 BPM but the first and last instants of the file.
CLICK_TIMES = np.arange(1, int(SECONDS * BPM / 60)) * 60.0 / BPM


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s mono 16-bit WAV: at each click, 80 ms of a decaying 60 Hz thump and 5 ms of a decaying 3 kHz tick."""
    import soundfile

    t = np.arange(int(SECONDS * SR)) / SR
    audio = np.zeros_like(t)
    for start in CLICK_TIMES:
        local = t - start
        on = (local >= 0) & (local < 0.08)
        audio[on] += 0.8 * np.sin(2 * np.pi * 60 * local[on]) * np.exp(-local[on] / 0.03)
        tick = (local >= 0) & (local < 0.005)
        audio[tick] += 0.3 * np.sin(2 * np.pi * 3000 * local[tick]) * np.exp(-local[tick] / 0.002)
    path = tmp_path_factory.mktemp("song") / "clicks 120bpm.wav"
    soundfile.write(path, audio.astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def features(song: Path):  # noqa: ANN201 (discolib.audio.AudioFeatures)
    from discolib.audio import audio_features

    return audio_features(song, FPS)


def test_summary_lines(song: Path, features, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    code, out, err = run(["audio", str(song), "--fps", str(FPS)], capsys)
    assert code == 0, err
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["song"] == str(song)
    assert float(lines["duration"].removesuffix(" s")) == pytest.approx(SECONDS, abs=1e-3)
    tempo = float(re.fullmatch(r"([\d.]+) BPM", lines["tempo"])[1])  # type: ignore[index]
    assert tempo == pytest.approx(BPM, rel=0.05)
    n_beats = int(lines["beats"].split(",")[0])
    assert len(CLICK_TIMES) - 2 <= n_beats <= len(CLICK_TIMES) and n_beats == len(features.beat_frames)
    first_beat = int(re.search(r"the first at frame (\d+)", lines["beats"])[1])  # type: ignore[index]
    assert first_beat == features.beat_frames[0]
    # Within one frame of a click (the tracker may skip the first click).
    assert np.min(np.abs(CLICK_TIMES * FPS - first_beat)) <= 1
    assert lines["bars"].startswith(f"{len(features.bar_frames)} of 4 beats, the first at frame {features.bar_frames[0]}")
    assert lines["frames"].startswith(f"{math.ceil(SECONDS * FPS)} at 15 fps")


def test_summary_json_and_bar_options(song: Path, features, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    code, out, err = run(["audio", str(song), "--fps", "15", "--json"], capsys)
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert summary["tempo"] == pytest.approx(BPM, rel=0.05) and summary["fps"] == FPS
    assert summary["beats"] == len(features.beat_frames) and summary["bars"] == len(features.bar_frames)
    assert summary["n_frames"] == math.ceil(SECONDS * FPS) and summary["duration"] == pytest.approx(SECONDS, abs=1e-3)
    assert summary["first_beat_frame"] == features.beat_frames[0] and summary["first_bar_frame"] == features.bar_frames[0]
    assert "keyframes" not in summary

    # Bars of 3 beats from the second beat: every third beat from index 1.
    code, out, err = run(
        ["audio", str(song), "--fps", "15", "--json", "--beats-per-bar", "3", "--first-downbeat", "1"], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["beats_per_bar"], summary["first_downbeat"]) == (3, 1)
    assert summary["bars"] == len(features.beat_frames[1::3])
    assert summary["first_bar_frame"] == features.beat_frames[1]


def test_plot_writes_a_png(song: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    png = tmp_path / "plots" / "features.png"  # its folder is made
    code, out, err = run(["audio", str(song), "--fps", "15", "--plot", str(png), "--export-keyframes", "zoom=1+0.04*bass"], capsys)
    assert code == 0, err
    with Image.open(png) as image:
        image.load()
        assert image.format == "PNG" and image.width > 200 and image.height > 100
    assert f"# plot written to {png}" in err
    assert [p.name for p in png.parent.iterdir()] == ["features.png"]  # no temporary left beside it
    assert "zoom" in json.loads(out)

    # A folder is never replaced by the plot.
    code, out, err = run(["audio", str(song), "--plot", str(png.parent)], capsys)
    assert code == 2 and out == ""
    assert err == f"discolib: error: --plot: {png.parent} is a folder; expected an image file name such as features.png\n"


def test_plot_without_matplotlib_names_the_extra(
    song: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    code, out, err = run(["audio", str(song), "--plot", str(tmp_path / "f.png")], capsys)
    assert (code, out) == (2, "")
    assert err == 'discolib: error: --plot needs matplotlib: pip install "discolib[notebook]"\n'
    assert not (tmp_path / "f.png").exists()


def test_export_keyframes_follow_the_features(song: Path, features, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    argv = [
        "audio", str(song), "--fps", "15",
        "--export-keyframes", "zoom=1+0.04*bass",
        "--export-keyframes", "translation_z=0: (2 + 10*beat(t, 0.2))",
        "--export-keyframes", "angle=onset",
    ]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    exported = json.loads(out)  # stdout is only the keyframes: `> keys.json` is a file to paste from
    assert list(exported) == ["zoom", "translation_z", "angle"]
    assert "tempo: " in err  # the summary went to stderr
    n = features.n_frames
    frames = np.arange(n, dtype=np.float64)
    expected = {
        "zoom": 1 + 0.04 * features.bass,
        "translation_z": 2 + 10 * features.sample("beat", frames, np.float64(0.2)),
        "angle": features.onset,
    }
    for name, text in exported.items():
        assert re.fullmatch(r"\d+: \([-\d.e+]+\)(, \d+: \([-\d.e+]+\))*", text), text[:200]  # plain numbers only
        values = Schedule.parse(text, setting=name).values(n)
        np.testing.assert_allclose(values, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # The music is in the curves: the zoom breathes with the thumps, the kick peaks on every tracked beat.
    assert np.ptp(expected["zoom"]) > 0.02
    z = Schedule.parse(exported["translation_z"]).values(n)
    np.testing.assert_allclose(z[features.beat_frames], 12.0, atol=1e-5)

    code, out, err = run([*argv[:4], "--json", "--export-keyframes", "zoom=1+0.04*bass"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["keyframes"] == {"zoom": exported["zoom"]} and summary["beats"] == len(features.beat_frames)


def test_silence_has_no_beats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A silent song: no tempo, no beats, flat exports; a bar_frame key is a one-line error saying so."""
    import soundfile

    quiet = tmp_path / "quiet.flac"
    soundfile.write(quiet, np.zeros(SR * 2, np.float32), SR)
    code, out, err = run(["audio", str(quiet), "--fps", "10"], capsys)
    assert code == 0, err
    assert "tempo: none (no beat found)\nbeats: 0\nbars: 0 of 4 beats\nframes: 20 at 10 fps\n" in out
    code, out, err = run(["audio", str(quiet), "--fps", "10", "--export-keyframes", "translation_z=2+10*beat+bass"], capsys)
    assert code == 0 and json.loads(out) == {"translation_z": "0: (2), 19: (2)"}
    code, out, err = run(["audio", str(quiet), "--export-keyframes", "zoom=0: (1), bar_frame(2): (1.1)"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("discolib: error: --export-keyframes zoom: ") and "no beats" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "fast"], "--fps: expected a number of frames per second, got 'fast'"),
        (["--fps", "0"], "--fps: expected a positive number, got '0'"),
        (["--fps", "1000"], "--fps (output.fps): "),
        (["--beat-decay", "-1"], "--beat-decay: expected a positive number, got '-1'"),
        (["--beats-per-bar", "3.5"], "--beats-per-bar: expected a whole number of beats, got '3.5'"),
        (["--first-downbeat", "4"], "--first-downbeat (animation.first_downbeat): "),
        (["--export-keyframes", "zoom"], "--export-keyframes: expected NAME=EXPR (e.g. zoom=1+0.04*bass), got 'zoom'"),
        (["--export-keyframes", "2x=1"], "--export-keyframes: NAME must be a setting name"),
        (["--export-keyframes", "zoom=1+(0.04*bass"], "--export-keyframes zoom: column "),
        (["--export-keyframes", "zoom=1+__import__('os')"], "--export-keyframes zoom: column 14: unexpected quote"),
        (["--export-keyframes", "zoom=band(t, 500, 100)"], "--export-keyframes zoom: "),
        (["--export-keyframes", "zoom=1", "--export-keyframes", "zoom=2"], "--export-keyframes: zoom is given twice"),
        (["--plot", "features.xyz"], "--plot: expected a file name ending in .png, .svg or .pdf"),
    ],
)
def test_bad_options_are_one_line(
    song: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["audio", str(song), *args], capsys)
    assert (code, out) == (2, ""), err
    assert err.startswith(f"discolib: error: {message}") and err.count("\n") == 1, err


def test_bad_songs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.wav"
    code, out, err = run(["audio", str(missing)], capsys)
    assert (code, out) == (2, "") and err == f"discolib: error: SONG: {missing}: no such file\n"
    code, out, err = run(["audio", str(tmp_path)], capsys)
    assert (code, out) == (2, "") and err == f"discolib: error: SONG: {tmp_path}: not a file\n"
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 50)
    code, out, err = run(["audio", str(text), "--fps", "15"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("discolib: error: output.soundtrack: ") and str(text) in err


def test_schedule_command_reads_a_soundtrack(song: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`discolib schedule` evaluates a keyframe string on a song at an fps, as a render of those settings would."""
    from discolib.audio import audio_features

    plot = tmp_path / "curve.png"
    code, out, err = run(
        ["schedule", "0: (1 + 0.04*bass(t))", "--frames", "30", "--soundtrack", str(song), "--fps", "10", "--plot", str(plot)],
        capsys,
    )
    assert code == 0, err
    values = [float(line.split()[1]) for line in out.splitlines()]
    expected = 1 + 0.04 * audio_features(song, 10.0).bass[:30]
    np.testing.assert_allclose(values, expected, rtol=0, atol=5e-6)  # printed with 6 significant digits
    assert plot.stat().st_size > 0
    code, _, err = run(["schedule", "0: (bass(t))"], capsys)
    assert code == 2 and err.strip().endswith("bass() reads the soundtrack, but there is none: set output.soundtrack")
    code, _, err = run(["schedule", "0: (1)", "--fps", "10"], capsys)
    assert code == 2 and "--fps: only with --soundtrack" in err and "\n" not in err.strip()
