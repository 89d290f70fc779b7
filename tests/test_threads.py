"""``models.threads``: the automatic count, the cgroup CPU quota, and a render that applies its count to torch and
OpenCV, records it in run.json, restores the process's counts, and resumes with the recorded count."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch

from discolib.animation.policy import GUIDED_POLICY
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.run import loop, runs
from discolib.run.runs import MAX_AUTO_THREADS, RunError, RunFolder, auto_threads, cpu_quota, threads_for
from discolib.samplers.base import FrameRequest

# ---------------------------------------------------------------------------------------------- the automatic count


@pytest.mark.parametrize(
    ("current", "cpus", "affinity", "quota", "want"),
    [
        (2, 2, 2, None, 1),  # a 2-core machine: 2 threads lose up to 5x as soon as anything else runs
        (1, 1, 1, None, 1),  # one core: never 0
        (4, 4, 4, None, 3),  # one core left for the rest of the machine
        (8, 16, 16, None, 8),  # torch's default (physical cores) is below the logical CPUs - 1
        (32, 64, 64, None, MAX_AUTO_THREADS),  # capped
        (8, 16, 4, None, 3),  # taskset / a cpuset: only 4 CPUs are this process's
        (8, 16, 16, 2.0, 1),  # docker --cpus=2
        (8, 16, 16, 2.5, 1),  # a fractional quota is rounded down: 2.5 CPUs are 2 whole ones
        (8, 16, 16, 0.5, 1),  # less than one CPU: still one thread
        (6, 8, None, 4.0, 3),  # affinity unknown (not Linux), quota known
        (2, 16, 16, None, 2),  # OMP_NUM_THREADS=2 or torch.set_num_threads(2): never raised
        (0, None, None, None, 1),  # nothing known (no torch, no cpu_count)
    ],
)
def test_auto_threads_rule(current: int, cpus: int | None, affinity: int | None, quota: float | None, want: int) -> None:
    assert auto_threads(current, cpus, affinity, quota) == want


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "proc_cgroup").write_text(proc)
    return root, tmp_path / "proc_cgroup"


@pytest.mark.parametrize(
    ("proc", "files", "want"),
    [
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),  # v2, a container's own root
        ("0::/a/b\n", {"a/cpu.max": "150000 100000\n", "a/b/cpu.max": "max 100000\n"}, 1.5),  # a parent's quota
        ("0::/a/b\n", {"a/cpu.max": "400000 100000\n", "a/b/cpu.max": "300000 100000\n"}, 3.0),  # the smallest
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # unlimited
        ("0::/\n", {"cpu.max": "garbage\n"}, None),
        ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),  # v1
        ("1:cpu:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
        ("0::/\n", {}, None),  # no cpu controller
    ],
)
def test_cpu_quota_reads_cgroup_v1_and_v2(tmp_path: Path, proc: str, files: dict[str, str], want: float | None) -> None:
    root, proc_cgroup = _cgroup(tmp_path, proc, files)
    assert cpu_quota(root, proc_cgroup) == want


def test_cpu_quota_off_linux_is_none(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path / "no-cgroup", tmp_path / "no-proc") is None


def test_threads_for_takes_an_exact_count_or_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs, "torch_threads", lambda: (8, 1))
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(6)), raising=False)
    monkeypatch.setattr(runs, "cpu_quota", lambda: None)
    assert threads_for(0) == 5
    monkeypatch.setattr(runs, "cpu_quota", lambda: 3.0)
    assert threads_for(0) == 2
    assert [threads_for(n) for n in (1, 4, 32)] == [1, 4, 32]  # exact, whatever the machine


# ---------------------------------------------------------------------------------------------- a render


class EchoSampler:
    """No model: frame 0 is seeded noise, later frames their init; notes the thread counts it runs under."""

    policy = GUIDED_POLICY

    def __init__(self, size: int) -> None:
        self.width = self.height = size
        self.device = torch.device("cpu")
        self.seen: list[tuple[int, int]] = []
        self.fail_at: int | None = None

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        self.seen.append((torch.get_num_threads(), cv2.getNumThreads()))
        if self.fail_at is not None and len(self.seen) > self.fail_at:
            raise RuntimeError("sampler failed")
        if request.init is not None:
            return request.init
        return torch.rand(1, 3, self.height, self.width, generator=torch.Generator().manual_seed(request.seed))


N = 3


def settings(threads: int) -> Settings:
    s = apply_preset(Settings.defaults("guided", "2D"), "tiny")
    for name, value in [("max_frames", N), ("width", 64), ("height", 64), ("make_video", False), ("display_rate", 0)]:
        s.set(name, value)
    s.set("models.threads", threads)
    return s


@pytest.fixture
def process_counts() -> Iterator[tuple[int, int]]:
    """This process at 1 torch and 1 OpenCV thread (the render's count is 2): restored after the test."""
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    yield 1, 1
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])


def test_render_applies_the_count_and_restores_the_process_counts(
    tmp_path: Path, process_counts: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    encoders: list[int] = []

    class Writer(loop.FrameWriter):
        def __init__(self, *a: Any, **kw: Any) -> None:
            encoders.append(kw["encoders"])
            super().__init__(*a, **kw)

    monkeypatch.setattr(loop, "FrameWriter", Writer)
    sampler = EchoSampler(64)
    result = loop.render(settings(2), out=tmp_path, progress=False, sampler=sampler)
    assert result.status == "done" and len(result.frames) == N
    assert sampler.seen and set(sampler.seen) == {(2, 2)}  # torch and OpenCV together, during the whole render
    assert (torch.get_num_threads(), cv2.getNumThreads()) == process_counts  # and given back afterwards
    assert RunFolder(result.run_dir).read_record().torch_threads == 2  # what a resume will use
    assert encoders == [1]  # PNG encoders: half the render's threads, at least 1


def test_counts_are_restored_when_the_render_fails(tmp_path: Path, process_counts: tuple[int, int]) -> None:
    sampler = EchoSampler(64)
    sampler.fail_at = 1
    with pytest.raises(RuntimeError, match="sampler failed"):
        loop.render(settings(2), out=tmp_path, progress=False, sampler=sampler)
    assert sampler.seen == [(2, 2), (2, 2)]
    assert (torch.get_num_threads(), cv2.getNumThreads()) == process_counts


def test_auto_records_the_resolved_count(tmp_path: Path, process_counts: tuple[int, int]) -> None:
    result = loop.render(settings(0), out=tmp_path, progress=False, sampler=EchoSampler(64))
    assert RunFolder(result.run_dir).read_record().torch_threads == threads_for(0) == 1  # never above the process's


# ---------------------------------------------------------------------------------------------- resume


def _interrupt(run: RunFolder, done: int) -> None:
    """What a stop after frame ``done - 1`` leaves."""
    for i in range(done, N):
        run.frame_path(i).unlink()
    rec = run.read_record()
    rec.status, rec.frames_done = "interrupted", done
    rec.seeds, rec.frame_sha256 = rec.seeds[:done], rec.frame_sha256[:done]
    run.write_record(rec)


@pytest.fixture
def finished(tmp_path: Path, process_counts: tuple[int, int]) -> tuple[RunFolder, list[bytes]]:
    """A finished run made with models.threads = 2, and its frames' bytes."""
    result = loop.render(settings(2), out=tmp_path / "out", progress=False, sampler=EchoSampler(64))
    run = RunFolder(result.run_dir)
    return run, [run.frame_path(i).read_bytes() for i in range(N)]


def test_resume_uses_the_recorded_count(finished: tuple[RunFolder, list[bytes]], process_counts: tuple[int, int]) -> None:
    run, frames = finished
    _interrupt(run, 1)
    sampler = EchoSampler(64)
    # The settings passed with a resume do not count (only their batch name for "latest"): run.json's count does.
    loop.render(settings(1), resume=run.path, progress=False, sampler=sampler)
    assert sampler.seen and set(sampler.seen) == {(2, 2)}
    assert (torch.get_num_threads(), cv2.getNumThreads()) == process_counts
    assert [run.frame_path(i).read_bytes() for i in range(N)] == frames
    assert run.read_record().frame_sha256 == [hashlib.sha256(b).hexdigest() for b in frames]


def test_resume_refuses_an_edited_thread_setting(finished: tuple[RunFolder, list[bytes]]) -> None:
    run, _ = finished
    _interrupt(run, 1)
    data = json.loads(run.settings_path.read_text())
    data["models"]["threads"] = 1
    run.settings_path.write_text(json.dumps(data))
    with pytest.raises(RunError, match="settings.json changed since this run started"):
        loop.render(settings(1), resume=run.path, progress=False, sampler=EchoSampler(64))


def test_record_without_a_count_takes_the_runs_setting(
    finished: tuple[RunFolder, list[bytes]], process_counts: tuple[int, int]
) -> None:
    run, frames = finished
    _interrupt(run, 1)
    data = json.loads(run.record_path.read_text())
    del data["torch_threads"], data["torch_interop_threads"]  # as an older version wrote it
    run.record_path.write_text(json.dumps(data))
    sampler = EchoSampler(64)
    loop.render(settings(1), resume=run.path, progress=False, sampler=sampler)
    assert set(sampler.seen) == {(2, 2)}  # settings.json's models.threads, not this process's count
    assert run.read_record().torch_threads == 2
    assert [run.frame_path(i).read_bytes() for i in range(N)] == frames
