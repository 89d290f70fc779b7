"""A music video through the render loop (issue 19): a tiny 3D render whose forward motion follows the beats of a
soundtrack, with the sound in the video, the analysis cached in the batch folder and an exact resume."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import discolib.audio.analysis as analysis_module
from discolib.animation import step as step_module
from discolib.audio import clear_cache
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.io.video import video_info
from discolib.run.events import RenderEvent
from discolib.run.loop import render
from discolib.run.runs import RunError, RunFolder

FPS = 8.0
BPM = 120.0
SECONDS = 2.0


def write_clicks(path: Path, *, sr: int = 22050, seconds: float = SECONDS, bpm: float = BPM) -> list[float]:
    """A kick (a decaying 60 Hz thump with a click on top) on every beat from 0.25 s on; returns the beat times."""
    rng = np.random.default_rng(0)
    y = np.zeros(int(sr * seconds), dtype=np.float32)
    times = list(np.arange(0.25, seconds - 0.1, 60.0 / bpm))
    n = int(0.12 * sr)
    env = np.exp(-np.arange(n) / (0.03 * sr))
    kick = (np.sin(2 * np.pi * 60 * np.arange(n) / sr) * env + 0.3 * rng.standard_normal(n) * env**4).astype(np.float32)
    for t in times:
        i = int(t * sr)
        y[i : i + n] += kick[: len(y) - i]
    sf.write(path, 0.8 * y / np.abs(y).max(), sr)
    return times


def music_settings(song: Path, **overrides: Any) -> Settings:
    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    s.set("output.fps", FPS)
    s.set("output.soundtrack", str(song))
    s.set("animation.max_frames", "audio")  # as long as the song
    s.set("animation.beat_decay", 0.05)  # shorter than a frame: the pulse is 1 on the beat's frame only
    s.set("animation.translation_z", "0: (1 + 20*beat(t))")
    s.set("prompts.text_prompts", {"0": "a forest", "bar_frame(1)": "a city"})
    s.set("run.seed", 7)
    for k, v in overrides.items():
        s.set(k, v)
    return s


def test_the_camera_moves_on_the_beat_the_video_has_the_song_and_resume_is_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    song = tmp_path / "song.wav"
    beats = write_clicks(song)
    s = music_settings(song)
    assert s.n_frames() == 16  # 2 s at 8 fps

    pushes: list[float] = []
    reproject = step_module.motion.reproject_3d

    def spy(prev: torch.Tensor, depth: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, **kw: Any) -> Any:
        pushes.append(float(trans[0, 2]))  # the forward motion the 3D warp applies to this frame
        return reproject(prev, depth, rot, trans, **kw)

    monkeypatch.setattr(step_module.motion, "reproject_3d", spy)
    clear_cache()
    whole = render(s, out=tmp_path / "whole", progress=False)
    assert whole.status == "done"
    run = Path(whole.run_dir)

    # Frames 1..15 are warped from the one before; their forward push is the schedule on the song's beats.
    features = s.audio_features()
    assert features is not None
    expected = 1 + 20 * features.sample("beat", np.arange(16, dtype=np.float64))
    np.testing.assert_allclose(pushes, expected[1:], rtol=0, atol=1e-5)
    kicks = [i for i, z in enumerate(expected) if z > 10]
    clicks = [int(t * FPS) for t in beats]  # frames 2, 6, 10, 14
    assert len(kicks) >= len(clicks) - 1  # librosa's tracker may leave out a first beat it cannot phase yet
    assert all(min(abs(k - c) for c in clicks) <= 1 for k in kicks), (kicks, clicks)

    # The sound is in the video; the analysis is cached in the batch folder; run.json names the song.
    assert video_info(run / "video.mp4")["has_audio"]
    assert list((tmp_path / "whole" / s.run.batch_name / ".cache" / "audio").glob("*.npz"))
    record = json.loads((run / "run.json").read_text())
    assert record["frames_total"] == 16 and len(record["extra"]["soundtrack_sha256"]) == 64

    # Stopped at frame 5 and resumed in a fresh process state: the analysis comes from the cache file, not librosa.
    stop = threading.Event()

    def cb(e: RenderEvent) -> None:
        if e.kind == "frame" and e.frame == 5:
            stop.set()

    cut = render(s, out=tmp_path / "whole", callback=cb, stop=stop, progress=False)
    assert cut.status == "stopped"
    clear_cache()

    def no_analysis(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a resume re-analysed the soundtrack")

    monkeypatch.setattr(analysis_module, "_compute", no_analysis)
    resumed = render(s, resume=Path(cut.run_dir), progress=False)
    assert resumed.status == "done"
    for i in range(16):
        assert RunFolder.open(cut.run_dir).frame_path(i).read_bytes() == RunFolder.open(run).frame_path(i).read_bytes()

    # A different song under the same name would move the camera differently: the resume is refused.
    write_clicks(song, bpm=90)
    monkeypatch.undo()  # librosa may analyse the new song
    with pytest.raises(RunError, match="output.soundtrack: the file changed since the run started"):
        render(s, resume=run, progress=False)


def test_seed_schedule_ranges_and_checks_follow_the_song(tmp_path: Path) -> None:
    """A seed schedule on the bars, a range-checked schedule on the bass, prompts on the beats: all evaluated on
    the song before the run folder exists (check_inputs), and the plan's seeds change on the bars."""
    from discolib.animation.plan import RenderPlan, check_inputs
    from discolib.config.settings import SettingsError
    from discolib.config.ui import is_shown

    song = tmp_path / "song.wav"
    write_clicks(song, seconds=4.0)
    s = music_settings(song)
    s.set("run.output_root", str(tmp_path / "out"))
    s.set("animation.seed_behavior", "schedule")
    s.set("animation.seed_schedule", "0: (s), bar_frame(1): (s + 100)")
    check_inputs(s.validate())
    plan = RenderPlan.from_settings(s)
    assert plan.audio is not None
    bar = plan.audio.bar_frame(1)
    assert set(plan.seeds[:bar]) == {7} and set(plan.seeds[bar:]) == {107}

    s.set("animation.fov", "0: (90*bass(t))")  # 0 where the song is quiet: no projection there
    s.validate()  # the song decides, so validation leaves it to check_inputs ...
    with pytest.raises(SettingsError, match=r"animation.fov: expected a field of view with 0 < \|fov\| < 180"):
        check_inputs(s)  # ... which refuses it before any run folder
    assert not (tmp_path / "out" / s.run.batch_name).exists() or not [
        p for p in (tmp_path / "out" / s.run.batch_name).iterdir() if not p.name.startswith(".")
    ]

    # With "as long as the soundtrack" and an unreadable song, only the soundtrack is in error, not every schedule.
    s.set("animation.fov", "0: (40)")
    s.set("output.soundtrack", str(tmp_path / "gone.wav"))
    s.check_field("animation.zoom", "0: (1.02)")
    modes = (s.image.mode, s.animation.animation_mode)
    assert is_shown("animation.length_from_soundtrack", *modes, values=s)  # to turn it off, it must be there
    assert not is_shown("animation.max_frames", *modes, values=s)

    # An explicit --set max_frames=N wins over a file's max_frames "audio" (a short test of a long song).
    s.set_from_string("max_frames=5")
    assert not s.animation.length_from_soundtrack and s.n_frames() == 5
