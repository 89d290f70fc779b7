"""Run folders that cannot lie: resume after a run folder was damaged, edited or ran out of disk (issue 11).

One finished ``tiny-latent`` 3D run (6 frames, 64x64, with its video) is rendered once per module; each test damages
a copy of it and checks what resume answers, re-rendering as few frames as the case allows (the whole module costs
about 10 frames after the reference). Frames a resume renders again must be byte-identical to the uninterrupted
run's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
from PIL import Image

from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.io.files import WriteError
from discolib.io.video import count_video_frames
from discolib.run import runs
from discolib.run.adapter import build_sampler
from discolib.run.events import RenderEvent
from discolib.run.loop import render
from discolib.run.runs import RunError, RunFolder
from discolib.samplers.base import FrameSampler

pytestmark = pytest.mark.slow

N = 6


def tiny(mode: str, animation: str = "none", **overrides: object) -> Settings:
    """As tests/test_render.py's helper (copied: test modules are not importable from each other in every mode)."""
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    for k, v in overrides.items():
        s.set(k, v)
    return s


@pytest.fixture(scope="module")
def sampler() -> FrameSampler:
    return build_sampler(tiny("latent", "3D"), progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, sampler: FrameSampler) -> Path:
    """A finished run: N frames and video.mp4 (2 steps, no previews: each costs a VAE decode)."""
    s = tiny("latent", "3D", max_frames=N, display_rate=0, steps=2)
    result = render(s, out=tmp_path_factory.mktemp("ref"), progress=False, sampler=sampler)
    assert result.status == "done" and result.video is not None
    return result.run_dir


def ref_bytes(reference: Path) -> list[bytes]:
    return [RunFolder(reference).frame_path(i).read_bytes() for i in range(N)]


def finished_copy(reference: Path, tmp_path: Path) -> RunFolder:
    dest = tmp_path / "run"
    shutil.copytree(reference, dest)
    return RunFolder(dest)


def interrupted_copy(reference: Path, tmp_path: Path, done: int) -> RunFolder:
    """What a stop after frame ``done - 1`` leaves: frames 0..done-1 and a record that says so."""
    run = finished_copy(reference, tmp_path)
    for i in range(done, N):
        run.frame_path(i).unlink()
    (run.path / "video.mp4").unlink()
    rec = run.read_record()
    rec.status, rec.frames_done = "interrupted", done
    rec.seeds, rec.frame_sha256 = rec.seeds[:done], rec.frame_sha256[:done]
    run.write_record(rec)
    return run


def resume(run: RunFolder, sampler: FrameSampler, **kw: Any) -> Any:
    return render(tiny("latent", "3D"), resume=run.path, progress=False, sampler=sampler, **kw)


def rendered_frames(events: list[RenderEvent]) -> list[int]:
    return [e.frame for e in events if e.kind == "frame"]


def assert_matches_reference(run: RunFolder, reference: Path) -> None:
    want = ref_bytes(reference)
    for i in range(N):
        assert run.frame_path(i).read_bytes() == want[i], f"frame {i} differs from the uninterrupted run"
    rec = run.read_record()
    assert rec.status == "done" and rec.frames_done == rec.frames_total == N and rec.error == ""
    assert rec.frame_sha256 == [hashlib.sha256(b).hexdigest() for b in want]


# ---------------------------------------------------------------------------------------------- 1: settings changed


@pytest.mark.parametrize(
    "change",
    [
        {"run": {"seed": 7}},
        {"animation": {"rotation_3d_y": "0:(3)"}},
        {"prompts": {"text_prompts": {"0": ["another prompt"]}}},
    ],
    ids=["seed", "motion", "prompt"],
)
def test_changed_settings_refused(reference: Path, tmp_path: Path, sampler: FrameSampler, change: dict) -> None:
    run = interrupted_copy(reference, tmp_path, N - 2)
    data = json.loads(run.settings_path.read_text())
    for group, values in change.items():
        data[group].update(values)
    run.settings_path.write_text(json.dumps(data))
    before = run.record_path.read_bytes()
    with pytest.raises(RunError, match=r"settings.json changed since this run started .*start a new run or restore it") as info:
        resume(run, sampler)
    assert "\n" not in str(info.value)
    assert run.record_path.read_bytes() == before and run.complete_frames() == list(range(N - 2))  # nothing touched


def test_lowered_max_frames_of_a_finished_run_refused(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    data = json.loads(run.settings_path.read_text())
    data["animation"]["max_frames"] = N - 2
    run.settings_path.write_text(json.dumps(data))
    with pytest.raises(RunError, match="settings.json changed since this run started"):
        resume(run, sampler)


def test_reformatted_settings_are_not_a_change(reference: Path, tmp_path: Path) -> None:
    run = finished_copy(reference, tmp_path)
    data = json.loads(run.settings_path.read_text())
    run.settings_path.write_text(json.dumps(data, indent=7, sort_keys=True))
    run.check_settings(run.read_record())  # same values, other layout: no error


# ---------------------------------------------------------------------------------------------- 2, 5: frames checked


def test_truncated_middle_frame_is_rendered_again(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    p = run.frame_path(N - 2)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    events: list[RenderEvent] = []
    result = resume(run, sampler, callback=events.append)
    assert result.status == "done" and rendered_frames(events) == [N - 2, N - 1]
    assert_matches_reference(run, reference)
    assert count_video_frames(run.path / "video.mp4") == N


def test_last_frame_of_another_size_is_rendered_again(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    Image.new("RGB", (32, 32), (255, 0, 0)).save(run.frame_path(N - 1))
    events: list[RenderEvent] = []
    resume(run, sampler, callback=events.append)
    assert rendered_frames(events) == [N - 1]
    assert_matches_reference(run, reference)


def test_stray_frame_is_not_in_the_video(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    (run.path / "video.mp4").unlink()
    Image.new("RGB", (64, 64), (0, 255, 0)).save(run.frame_path(99))
    Image.new("RGB", (64, 64), (0, 0, 255)).save(run.frame_path(N))  # a leftover right after the last frame
    events: list[RenderEvent] = []
    result = resume(run, sampler, callback=events.append)
    assert rendered_frames(events) == [] and result.video is not None
    assert count_video_frames(result.video) == N


def test_empty_last_frame_of_an_interrupted_run_and_old_error(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = interrupted_copy(reference, tmp_path, N - 1)
    rec = run.read_record()
    rec.status, rec.error = "failed", "RuntimeError: boom"
    run.write_record(rec)
    run.frame_path(N - 2).write_bytes(b"")
    events: list[RenderEvent] = []
    resume(run, sampler, callback=events.append)
    assert rendered_frames(events) == [N - 2, N - 1]
    assert_matches_reference(run, reference)  # also: the old error text is gone


# ---------------------------------------------------------------------------------------------- 4, 9: corrupt run.json


def _truncate(text: str) -> str:
    return text[: len(text) // 2]


def _set(key: str, value: object) -> Any:
    def edit(text: str) -> str:
        data = json.loads(text)
        data[key] = value
        return json.dumps(data)

    return edit


@pytest.mark.parametrize(
    "corrupt",
    [
        _truncate,
        lambda _t: "{not json",
        lambda _t: "[1, 2, 3]",
        lambda _t: "",
        _set("frames_done", "abc"),
        _set("seeds", 5),
        _set("frame_sha256", {"0": "x"}),
        _set("torch_threads", -2),
        None,  # run.json deleted
    ],
    ids=["truncated", "invalid", "list", "empty", "frames_done-str", "seeds-int", "hashes-dict", "threads-neg", "missing"],
)
def test_corrupt_record_is_rebuilt(reference: Path, tmp_path: Path, sampler: FrameSampler, corrupt: Any) -> None:
    run = finished_copy(reference, tmp_path)
    if corrupt is None:
        run.record_path.unlink()
    else:
        run.record_path.write_text(corrupt(run.record_path.read_text()))
    events: list[RenderEvent] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = resume(run, sampler, callback=events.append)
    rebuilt = [w for w in caught if "rebuilt it from settings.json" in str(w.message)]
    assert len(rebuilt) == 1 and "\n" not in str(rebuilt[0].message)
    assert result.status == "done" and rendered_frames(events) == []  # every frame decodes: nothing to redo
    assert_matches_reference(run, reference)
    assert run.read_record().torch_threads == runs.threads_for(0)  # the run's models.threads (auto), as it was made


def test_corrupt_record_rebuild_stops_at_the_first_bad_frame(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    run.record_path.write_text('{"status": "done", "frames_done": "abc"}')
    p = run.frame_path(N - 1)
    p.write_bytes(p.read_bytes()[:-20])  # cut into the last chunks: Pillow alone still decodes it
    events: list[RenderEvent] = []
    with pytest.warns(UserWarning, match=rf"rebuilt it from settings.json and the {N - 1} frame\(s\) that decode"):
        resume(run, sampler, callback=events.append)
    assert rendered_frames(events) == [N - 1]
    assert_matches_reference(run, reference)


def test_record_from_an_older_version_is_resumable(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = finished_copy(reference, tmp_path)
    data = json.loads(run.record_path.read_text())
    for key in ("settings_sha256", "frame_sha256", "torch_threads", "torch_interop_threads"):
        del data[key]
    run.record_path.write_text(json.dumps(data))
    p = run.frame_path(N - 1)
    p.write_bytes(p.read_bytes()[:-20])  # no hash to compare: the full check finds it
    events: list[RenderEvent] = []
    with pytest.warns(UserWarning, match="holds no hash of settings.json"):
        resume(run, sampler, callback=events.append)
    assert rendered_frames(events) == [N - 1]
    assert_matches_reference(run, reference)
    assert run.read_record().settings_sha256 == run.settings_hash()


# ---------------------------------------------------------------------------------------------- 6: disk full


def _enospc_for(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst, *a, **k)

    monkeypatch.setattr(runs.os, "replace", replace)


@pytest.mark.parametrize("name", ["settings.json", "run.json"])
def test_disk_full_at_start_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _enospc_for(name, monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(RunError, match=rf"cannot set up the run folder {out}/\S+: cannot write \S+/{name}: No space left on device"):
        render(tiny("latent", "3D"), out=out, progress=False)
    assert not out.exists()  # neither the run folder nor the folders made for it
    (tmp_path / "kept").mkdir()
    with pytest.raises(RunError, match="No space left on device"):
        RunFolder.create(tmp_path / "kept", "b", "{}")
    assert list((tmp_path / "kept").iterdir()) == []  # an output root that was there stays


def test_disk_full_after_a_few_frames_names_the_file(
    reference: Path, tmp_path: Path, sampler: FrameSampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = interrupted_copy(reference, tmp_path, N - 1)
    last = run.frame_path(N - 1)
    _enospc_for(last.name, monkeypatch)
    with pytest.raises(WriteError, match=rf"^cannot write {last}: No space left on device$") as info:
        resume(run, sampler)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    rec = run.read_record()
    assert rec.status == "failed" and rec.frames_done == N - 1 and last.name in rec.error
    assert not list(run.path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------- 7: concurrent runs


def test_forty_simultaneous_creates_get_forty_folders(tmp_path: Path) -> None:
    n = 40
    barrier = threading.Barrier(n)
    made: list[Path] = []
    errors: list[BaseException] = []

    def go(k: int) -> None:
        barrier.wait()
        try:
            made.append(RunFolder.create(tmp_path, "batch", json.dumps({"k": k})).path)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(made)) == n and sorted(p.name for p in (tmp_path / "batch").iterdir()) == sorted(p.name for p in made)
    assert sorted(json.loads((p / "settings.json").read_text())["k"] for p in made) == list(range(n))
    assert all(RunFolder(p).read_record().status == "created" for p in made)


# ---------------------------------------------------------------------------------------------- 8: thread count


def test_resume_renders_with_the_recorded_thread_count(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    run = interrupted_copy(reference, tmp_path, N - 1)
    recorded = run.read_record().torch_threads
    assert recorded == runs.threads_for(0) >= 1  # models.threads: 0 (auto), resolved when the run was made
    other = 2 if recorded == 1 else 1
    seen: list[tuple[int, int]] = []
    original = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(other)
    cv2.setNumThreads(other)
    try:
        resume(run, sampler, callback=lambda e: seen.append((torch.get_num_threads(), cv2.getNumThreads())) if e.kind == "step" else None)
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (other, other)  # the process's own counts are back
    finally:
        torch.set_num_threads(original[0])
        cv2.setNumThreads(original[1])
    assert seen and set(seen) == {(recorded, recorded)}  # torch and OpenCV both
    assert_matches_reference(run, reference)


def test_thread_count_that_cannot_be_applied_is_refused(
    reference: Path, tmp_path: Path, sampler: FrameSampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = interrupted_copy(reference, tmp_path, N - 1)
    rec = run.read_record()
    rec.torch_threads = torch.get_num_threads() + 1
    run.write_record(rec)
    monkeypatch.setattr(torch, "set_num_threads", lambda _n: None)  # as a torch that ignores the request
    with pytest.raises(RunError, match=rf"started with {rec.torch_threads} torch threads, but this process can only use") as info:
        resume(run, sampler)
    assert "\n" not in str(info.value) and run.complete_frames() == list(range(N - 1))


# ---------------------------------------------------------------------------------------------- 10: paths


def test_unknown_user_in_paths_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^run.output_root: cannot expand '~nosuchuser_discolib/x'"):
        RunFolder.create("~nosuchuser_discolib/x", "b", "{}")
    with pytest.raises(ValueError, match=r"^--resume: cannot expand"):
        RunFolder.open("~nosuchuser_discolib/run")
    with pytest.raises(ValueError, match=r"^run.output_root: cannot expand"):
        RunFolder.latest("~nosuchuser_discolib", "b")


def test_stop_then_resume_keeps_hashes_of_every_frame(reference: Path, tmp_path: Path, sampler: FrameSampler) -> None:
    """A real stop (not a simulated one): the record vouches for exactly the frames on disk, hash by hash."""
    run = interrupted_copy(reference, tmp_path, N - 2)
    stop = threading.Event()
    result = resume(run, sampler, stop=stop, callback=lambda e: stop.set() if e.kind == "frame" else None)
    assert result.status == "stopped"
    rec = run.read_record()
    assert rec.status == "interrupted" and rec.frames_done == N - 1
    assert rec.frame_sha256 == [hashlib.sha256(run.frame_path(i).read_bytes()).hexdigest() for i in range(N - 1)]
    assert run.frame_path(N - 2).read_bytes() == RunFolder(reference).frame_path(N - 2).read_bytes()
    assert not run.frame_path(N - 1).exists()
