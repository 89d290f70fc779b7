"""Sweeps on Ray (issue 17): a local Ray cluster started once for the module (127.0.0.1, 2 CPUs, no dashboard).

* The Ray executor renders the frames of the local executor byte for byte (run.json's frame SHA-256 lists).
* A worker process killed with SIGKILL mid-variant: Ray retries the task, the variant resumes its run folder from
  its last frame (one run folder, not a second one) and its frames are still the local executor's; a variant whose
  settings fail at run time is marked failed with its one-line error while the other completes.

The killed worker is found through Ray's process title: Ray names a worker ``ray::<task name>`` while it runs a
task, and each variant's task is named ``discolib-sweep:<variant id>`` (``task_name``). Ray's state API
(``ray.util.state.list_tasks``, which has the worker pid) needs the dashboard's API server, which the minimal Ray
install of the test extra does not have, and a test Ray runs without a dashboard anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="Ray (the optional extra discolib[ray]) is not installed")

from discolib.config.sweep import SweepSpec, parse_sweep  # noqa: E402
from discolib.run.sweep import VariantState, read_sweep, sweep  # noqa: E402
from discolib.run.sweep_ray import task_name  # noqa: E402

# The demo sweep's shape: 2 prompts x 2 seeds of the tiny latent preset, 3 frames of 64x64.
DEMO: dict[str, Any] = {
    "preset": "tiny-latent",
    "set": {"animation.animation_mode": "2D", "animation.max_frames": 3, "image.width": 64, "image.height": 64},
    "grid": {"prompts.text_prompts": [{"0": "a lighthouse in a stormy sea"}, {"0": "a castle on a hill"}]},
    "seeds": 2,
}
LONG_FRAMES = 24  # long enough (~0.1-0.3 s a frame here) to be killed after its first frame and before its last


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the module: 2 CPUs (2 workers), loopback only, no dashboard; shut down at the end."""
    if ray.is_initialized():  # another module's Ray: use it as it is
        yield ray
        return
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
        log_to_driver=False,
        # A loaded 2-core machine can take longer than Ray's default to start the node's agent.
        _system_config={"agent_register_timeout_ms": 120_000},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def _frame_hashes(sweep_dir: Path) -> dict[str, list[str]]:
    """variant id -> the frame SHA-256 list of its run (every run folder of the sweep)."""
    out: dict[str, list[str]] = {}
    for record in sorted(sweep_dir.glob("runs/*/*/run.json")):
        assert record.parent.parent.name not in out, f"two run folders for {record.parent.parent.name}"
        out[record.parent.parent.name] = json.loads(record.read_text())["frame_sha256"]
    return out


def _worker_pid(variant_id: str) -> int | None:
    """The pid of the Ray worker running ``variant_id``'s task: Ray titles it ``ray::<task name>``."""
    title = f"ray::{task_name(variant_id)}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if cmdline.startswith(title):
            return int(entry.name)
    return None


def test_importing_the_ray_executor_does_not_import_ray() -> None:
    code = "import sys, discolib.run.sweep_ray; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_ray_sweep_renders_the_local_executors_frames(tmp_path: Path, local_ray: Any) -> None:
    spec = parse_sweep(DEMO)
    assert len(spec.variants) == 4
    local = sweep(spec, tmp_path / "local", executor="local", progress=False)
    seen: list[VariantState] = []
    remote = sweep(spec, tmp_path / "ray", executor="ray", progress=False, callback=seen.append)

    assert local.ok and remote.ok, [(s.id, s.status, s.error) for s in remote.variants]
    ids = [v.id for v in spec.variants]
    local_hashes, ray_hashes = _frame_hashes(tmp_path / "local"), _frame_hashes(tmp_path / "ray")
    assert sorted(ray_hashes) == sorted(ids)
    assert all(len(h) == 3 for h in ray_hashes.values())
    assert ray_hashes == local_hashes  # byte for byte, every frame of every variant
    assert len({tuple(h) for h in ray_hashes.values()}) == 4  # the 4 variants really differ

    header, states = read_sweep(tmp_path / "ray")
    assert header["executor"] == "ray"
    assert [s.id for s in states] == ids and all(s.status == "done" for s in states)
    for s in states:
        assert s.run_dir and (tmp_path / "ray" / s.run_dir / "run.json").is_file()
        assert s.frames_done == s.frames_total == len(ray_hashes[s.id])
    # The driver reported each variant once, when its result came (a queued task is never reported "running").
    for vid in ids:
        assert [s.status for s in seen if s.id == vid] == ["done"]

    # A re-run of the finished sweep renders nothing: no run folder is touched.
    records = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("runs/*/*/run.json")}
    again = sweep(spec, tmp_path / "ray", executor="ray", progress=False)
    assert again.ok
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("runs/*/*/run.json")} == records


def _failing_sweep(missing: Path) -> SweepSpec:
    """One long variant and one whose init image does not exist (valid settings; the render refuses the file)."""
    return parse_sweep(
        {
            "preset": "tiny-latent",
            "set": {"animation.animation_mode": "2D", "animation.max_frames": LONG_FRAMES, "image.width": 64,
                    "image.height": 64},
            "grid": {"guidance.init_image": ["", str(missing)]},
        }
    )


def test_killed_worker_resumes_and_a_failing_variant_is_reported(tmp_path: Path, local_ray: Any) -> None:
    spec = _failing_sweep(tmp_path / "missing-init.png")
    long_v, bad_v = spec.variants
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(sweep(spec, tmp_path / "ray", executor="ray", progress=False))
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)

    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    frames_dir = tmp_path / "ray" / "runs" / long_v.id
    killed_pid, frames_at_kill = None, -1
    deadline = time.monotonic() + 150
    while killed_pid is None and driver.is_alive() and time.monotonic() < deadline:
        frames = list(frames_dir.glob("*/frames/*.png"))
        if frames:
            pid = _worker_pid(long_v.id)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed_pid, frames_at_kill = pid, len(frames)
                break
        time.sleep(0.02)
    assert killed_pid is not None, "the long variant's worker was never seen rendering"
    assert 1 <= frames_at_kill < LONG_FRAMES  # killed mid-variant
    driver.join(timeout=240)
    assert not driver.is_alive(), "the sweep did not finish after the worker was killed"
    assert not errors, errors
    (res,) = result

    states = {s.id: s for s in res.variants}
    assert states[long_v.id].status == "done", states[long_v.id]
    assert states[long_v.id].frames_done == LONG_FRAMES
    assert states[bad_v.id].status == "failed"
    err = states[bad_v.id].error
    assert "missing-init.png" in err and "\n" not in err
    _, on_disk = read_sweep(tmp_path / "ray")
    assert {s.id: s.status for s in on_disk} == {long_v.id: "done", bad_v.id: "failed"}

    # The retried task resumed the same run folder (one folder; a restart would have made a second one) ...
    runs = [p for p in frames_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    # ... and its frames are those of an uninterrupted local render, byte for byte.
    local = sweep(spec, tmp_path / "local", executor="local", progress=False)
    assert {s.id: s.status for s in local.variants} == {long_v.id: "done", bad_v.id: "failed"}
    ray_hashes = _frame_hashes(tmp_path / "ray")
    assert len(ray_hashes[long_v.id]) == LONG_FRAMES
    assert ray_hashes[long_v.id] == _frame_hashes(tmp_path / "local")[long_v.id]
