"""benchmarks/bench_live.py runs a tiny-live session in this process and writes well-formed JSON (no timed asserts)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_benchmarks import call_main

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_live.py"


def _module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH.parent))  # bench_common beside it
    module = sys.modules.get("discolib_bench_live")
    if module is None:
        spec = importlib.util.spec_from_file_location("discolib_bench_live", BENCH)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["discolib_bench_live"] = module  # before running it: its dataclasses look their module up
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["discolib_bench_live"]
            raise
    return module


def _main(
    *args: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``bench_live.main(args)`` in this process (a fresh process would pay ~10 s of imports): (code, stdout,
    stderr), run in ``tmp_path`` so that any stray relative write shows. The model cache stays the usual one (the
    tiny models are built there once, as for every other test). Thread counts are put back."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return call_main(_module(monkeypatch), args, capsys)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_tiny_live_writes_json_with_frames_and_latency_per_press(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "res" / "live.json"
    code, stdout, err = _main("--frames", "3", "--warmup", "0", "--presses", "3", "--gap", "1", "--out", str(out),
                              tmp_path=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    # The run wrote its JSON and nothing else (no run folder, no leftover scratch folder).
    assert _files(tmp_path) == {"res/live.json"}
    data = json.loads(out.read_text())
    assert {"date", "command", "torch", "torch_threads", "cpu_count"} <= set(data["meta"])
    assert "--presses 3" in data["meta"]["command"]
    live: dict[str, Any] = data["results"]["live"]
    assert live["skipped"] is None
    cfg = live["config"]
    assert cfg["preset"] == "tiny-live" and cfg["size"] == "64x64" and cfg["frame_shape"] == [64, 64, 3]
    assert cfg["frames_measured"] >= 3 and cfg["frames_delivered"] <= cfg["frames_measured"]
    assert cfg["frames_dropped"] == cfg["frames_measured"] - cfg["frames_delivered"]
    assert cfg["first_measured_frame"] >= 2  # after the first frame and the velocity change's frames
    assert cfg["session_threads"] >= 1

    figures = {f["name"]: f for f in live["figures"]}
    expected = {"model_load", "start_to_first_frame", "fps", "frame_interval", "latency_median", "latency_p90",
                "latency_measured_median", "frames_to_show_press"}
    assert set(figures) == expected
    for f in figures.values():
        assert f["unit"] and math.isfinite(f["value"]) and f["value"] > 0, f
        if f["samples"]:
            assert min(f["samples"]) <= f["value"] <= max(f["samples"]) or f["name"] == "fps", f
    assert figures["fps"]["unit"] == "frames/s" and figures["latency_median"]["unit"] == "ms"

    # One latency per press, each reported by a frame made after the press, on both clocks.
    presses = cfg["presses_detail"]
    assert [p["press"] for p in presses] == [1, 2, 3]
    frames = [p["frame"] for p in presses]
    assert frames == sorted(frames) and len(set(frames)) == 3 and frames[0] > cfg["first_measured_frame"]
    for p in presses:
        assert p["latency_ms"] > 0 and p["measured_ms"] > 0 and p["frames_after_press"] >= 1
    assert figures["latency_median"]["samples"] == [p["latency_ms"] for p in presses]
    assert figures["latency_p90"]["value"] >= figures["latency_median"]["value"]
    # The session's own statistics came along; the table names the figures.
    assert cfg["session_stats"]["frames"] > frames[-1] - 1 and cfg["session_stats"]["latency_ms_median"] > 0
    for name in ("fps", "latency_median", "start_to_first_frame"):
        assert name in stdout
    assert "goal" not in cfg  # the goal is the GPU's


def test_gpu_without_cuda_says_so_and_measures_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    code, _, err = _main("--gpu", "--out", str(out), tmp_path=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 1
    assert "--gpu needs CUDA" in err and "nothing measured" in err
    data = json.loads(out.read_text())
    gpu = data["results"]["live_gpu"]
    assert "CUDA" in gpu["skipped"] and gpu["figures"] == []
    assert _files(tmp_path) == {"gpu.json"}


def test_bad_counts_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _main("--frames", "1", tmp_path=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 2 and "--frames must be >= 2" in err
    assert _files(tmp_path) == set()


def test_percentile_matches_numpy() -> None:
    import numpy as np

    module = sys.modules.get("discolib_bench_live")
    if module is None:
        mp = pytest.MonkeyPatch()
        try:
            module = _module(mp)
        finally:
            mp.undo()
    values = [12.0, 3.5, 7.25, 40.0, 9.0, 11.0, 2.0]
    for q in (0.0, 50.0, 90.0, 100.0):
        assert module.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_a_failed_session_is_reported_in_the_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "live.json"
    code, _, err = _main("--preset", "no-such-preset", "--out", str(out), tmp_path=tmp_path, capsys=capsys,
                         monkeypatch=monkeypatch)
    assert code == 1 and "no-such-preset" in err
    live = json.loads(out.read_text())["results"]["live"]
    assert live["skipped"].startswith("failed: ") and "no-such-preset" in live["skipped"] and live["figures"] == []
    assert _files(tmp_path) == {"live.json"}
