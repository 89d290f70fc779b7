"""The video step (make_run_video, ``discolib video``), resume parameters and a run's resume state."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from discolib.cli import main
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.errors import InputError
from discolib.io.video import count_video_frames, probe_video
from discolib.run.runs import RunError, RunFolder, resolve_resume
from discolib.run.video import RunVideoError, make_run_video


def _settings(frames: int, fps: float = 10, fmt: str = "mp4") -> Settings:
    s = apply_preset(Settings.defaults("latent", "2D"), "tiny-latent")
    s.set("animation.max_frames", frames)
    s.set("output.fps", fps)
    s.set("output.video_format", fmt)
    return s


def _run(root: Path, frames: int, written: int, *, run_id: str = "r1", status: str = "interrupted", **kw: object) -> RunFolder:
    """A run folder of ``frames`` frames with the first ``written`` saved (16x16 frames of distinct colours)."""
    run = RunFolder.create(root, "batch", _settings(frames, **kw).to_json(), run_id=run_id)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    for i in range(written):
        run.save_frame(i, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    rec = run.read_record()
    rec.status, rec.frames_total, rec.frames_done, rec.seeds = status, frames, written, list(range(written))
    run.write_record(rec)
    return run


def _listing(run: RunFolder) -> set[str]:
    return {str(p.relative_to(run.path.parent)) for p in run.path.parent.rglob("*")}


def test_whole_run_gets_the_renders_name_and_fps(tmp_path: Path) -> None:
    run = _run(tmp_path, 6, 6, status="done", fps=12)
    path = make_run_video(run.path)
    assert path == run.path / "video.mp4"
    assert count_video_frames(path) == 6
    probe = probe_video(path)
    assert probe.fps == pytest.approx(12) and probe.codec == "h264"


def test_range_fps_and_gif_names(tmp_path: Path) -> None:
    run = _run(tmp_path, 8, 8, fps=10)
    part = make_run_video(run.path, start=2, end=5)
    assert part.name == "video_2-5.mp4" and count_video_frames(part) == 4
    fast = make_run_video(run.path, fps=24)
    assert fast.name == "video_0-7_24fps.mp4" and probe_video(fast).fps == pytest.approx(24)
    gif = make_run_video(run.path, gif=True)
    assert gif.name == "video.gif" and probe_video(gif).codec == "gif" and count_video_frames(gif) == 8
    # everything it wrote is inside the run folder, and no temporary is left behind
    assert all(p.parent == run.path for p in (part, fast, gif))
    assert not [p for p in run.path.rglob("*.tmp")]


def test_partial_run_is_not_called_the_run_video(tmp_path: Path) -> None:
    run = _run(tmp_path, 10, 4)
    with run.lock():  # a run still rendering: its complete frames can be read
        path = make_run_video(run.path)
    assert path.name == "video_0-3.mp4" and count_video_frames(path) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"end": 9}, r"--to: frame 9 is not complete yet; expected at most 3"),
        ({"start": 3, "end": 1}, r"--from: expected a frame <= 1"),
        ({"start": -1}, r"--from: expected a frame number >= 0"),
        ({"fps": 0}, r"--fps: expected a number of frames per second > 0, got 0"),
        ({"fps": float("nan")}, r"--fps: expected"),
    ],
)
def test_range_and_fps_errors(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    run = _run(tmp_path, 10, 4)
    before = _listing(run)
    with pytest.raises(RunVideoError, match=match):
        make_run_video(run.path, **kwargs)  # type: ignore[arg-type]
    assert _listing(run) == before


def test_missing_folder_no_frames_and_a_gap(tmp_path: Path) -> None:
    with pytest.raises(RunVideoError, match=r"RUN: no run folder at .*nowhere"):
        make_run_video(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunVideoError, match=r"settings.json is missing"):
        make_run_video(tmp_path / "plain")
    empty = _run(tmp_path, 5, 0, run_id="empty")
    with pytest.raises(RunVideoError, match=r"no complete frame yet"):
        make_run_video(empty.path)
    gap = _run(tmp_path, 5, 5, run_id="gap")
    os.unlink(gap.frame_path(2))
    with pytest.raises(RunVideoError, match=r"frame 2 \(.*000002.png\) is missing"):
        make_run_video(gap.path)
    assert make_run_video(gap.path, end=1).name == "video_0-1.mp4"  # around the gap it works
    assert issubclass(RunVideoError, InputError)


def test_cli_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, 6, 6, fps=10)
    assert main(["video", str(run.path), "--from", "1", "--to", "4", "--fps", "5", "--gif"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run.path / "video_1-4_5fps.gif") and count_video_frames(out) == 4
    for argv, err in [
        (["--to", "7"], "discolib: error: --to: frame 7 is not complete yet; expected at most 5 (the last complete frame)"),
        (["--fps", "fast"], "discolib: error: --fps: expected a number of frames per second, got 'fast'"),
        (["--from", "1.5"], "discolib: error: --from: expected a frame number (0-based), got '1.5'"),
    ]:
        assert main(["video", str(run.path), *argv]) == 2
        assert capsys.readouterr().err.strip() == err
    assert main(["video", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"discolib: error: RUN: no run folder at {tmp_path / 'missing'}"


def test_resolve_resume(tmp_path: Path) -> None:
    assert resolve_resume(None, tmp_path, "batch") is None
    assert resolve_resume("", tmp_path, "batch") is None
    with pytest.raises(RunError, match="no runs to resume in"):
        resolve_resume("latest", tmp_path, "batch")
    _run(tmp_path, 3, 1, run_id="20260101-000000")
    newer = _run(tmp_path, 3, 1, run_id="20260102-000000")
    found = resolve_resume("latest", tmp_path, "batch")
    assert found is not None and found.path == newer.path
    found = resolve_resume(str(newer.path), tmp_path, "other")
    assert found is not None and found.path == newer.path
    with pytest.raises(RunError, match=r"no run folder at .*nope"):
        resolve_resume(tmp_path / "nope", tmp_path, "batch")


def test_resume_state(tmp_path: Path) -> None:
    assert _run(tmp_path, 5, 2, run_id="a").resume_state() == (True, "2 of 5 frames done")
    assert _run(tmp_path, 5, 0, run_id="b", status="failed").resume_state() == (
        False, "no complete frame yet: render it again",
    )
    assert _run(tmp_path, 5, 5, run_id="c", status="done").resume_state() == (False, "already done")
    running = _run(tmp_path, 5, 2, run_id="d", status="running")
    assert running.resume_state() == (True, "2 of 5 frames done")  # "running" left by a killed process
    with running.lock():
        assert running.resume_state() == (False, "being rendered now")
    if os.geteuid() != 0:  # root opens read-only files for writing anyway
        lock_file = next(p for p in running.path.iterdir() if p.name.endswith(".lock"))
        lock_file.chmod(0o444)  # a crashed run copied read-only: not "being rendered"
        try:
            assert running.resume_state() == (True, "2 of 5 frames done")
        finally:
            lock_file.chmod(0o644)
    broken = _run(tmp_path, 5, 2, run_id="e")
    broken.record_path.write_text("{not json")
    ok, why = broken.resume_state()
    assert not ok and why.startswith("cannot resume:") and "run.json" in why
    # frames the record claims but the disk lost do not count
    lost = _run(tmp_path, 5, 3, run_id="f")
    os.unlink(lost.frame_path(1))
    assert lost.resume_state() == (True, "1 of 5 frames done")
