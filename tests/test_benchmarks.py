"""The benchmark entry point runs end to end (``--smoke``: tiny sizes) and writes well-formed JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"

pytestmark = pytest.mark.slow

CPU_FIGURES = {
    "warp3d_64_bicubic_refine0",
    "warp3d_64_bicubic_refine1",
    "warp3d_64_bilinear_refine0",
    "warp3d_64_bilinear_refine1",
    "warp3d_128_bicubic_refine0",
    "warp3d_128_bicubic_refine1",
    "schedules_500_frames",
    "schedules_per_frame",
    "render_overhead_2d_64",
    "render_total_2d_64",
    "save_png_64",
}


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISCOLIB_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, str(RUN), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def _main(
    *args: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """``benchmarks/run.py``'s ``main(args)`` in this process: (exit code, stdout, stderr), as :func:`_run` gives them.

    A ``python benchmarks/run.py`` process pays ~10-15 s of imports (torch, then diffusers, transformers and open_clip
    for the versions) on a 2-core CI machine; test_cpu_smoke_writes_json_with_positive_figures runs the script as a
    process. What ``main`` changes in the process is put back: the working folder, sys.path, the environment, torch's
    and OpenCV's thread counts and flush-denormal mode (main turns it on; torch's default is off)."""
    import importlib.util

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(RUN.parent))  # the bench_* modules beside run.py
    module = sys.modules.get("discolib_benchmarks_run")
    if module is None:
        spec = importlib.util.spec_from_file_location("discolib_benchmarks_run", RUN)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["discolib_benchmarks_run"] = module
    return call_main(module, args, capsys)


def call_main(module: Any, args: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """A benchmark module's ``main(args)`` in this process: (exit code, stdout, stderr); argparse's usage errors
    give their code. Torch's and OpenCV's thread counts and torch's flush-denormal mode are put back."""
    import cv2
    import torch

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    capsys.readouterr()
    try:
        code = module.main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
        torch.set_flush_denormal(False)
    out, err = capsys.readouterr()
    return code, out, err


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_cpu_smoke_writes_json_with_positive_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    proc = _run("--quick", "--smoke", "--only", "cpu", "--json", str(out), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())

    meta = data["meta"]
    for key in ("date", "device", "device_name", "torch_threads", "versions", "quick", "smoke", "command"):
        assert key in meta
    assert meta["device"] == "cpu" and meta["smoke"] is True
    assert {"torch", "diffusers", "transformers", "open_clip"} <= set(meta["versions"])

    assert set(data["results"]) == {"cpu"}
    cpu = data["results"]["cpu"]
    assert cpu["skipped"] is None
    figures = {f["name"]: f for f in cpu["figures"]}
    assert CPU_FIGURES <= set(figures)
    for f in figures.values():
        assert f["unit"] and math.isfinite(f["value"]) and f["value"] > 0, f
    # Medians really are medians of the recorded runs.
    warp = figures["warp3d_64_bicubic_refine1"]
    assert len(warp["samples"]) >= 3 and min(warp["samples"]) <= warp["value"] <= max(warp["samples"])
    # The table names every figure with its unit.
    for name in CPU_FIGURES:
        assert name in proc.stdout
    assert "ms/frame" in proc.stdout

    code, merged, err = _main("--merge", str(out), str(out), tmp_path=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert code == 0, err
    assert "| cpu | schedules_per_frame |" in merged


def test_bad_options_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = {"tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    code, _, err = _main("--device", "tpu", "--only", "cpu", **kw)
    assert code == 2 and "--device" in err
    if not _cuda_available():
        code, _, err = _main("--device", "cuda", "--only", "cpu", **kw)
        assert code == 2 and "no CUDA device" in err
    code, _, err = _main("--only", "nothing", **kw)
    assert code == 2 and "invalid choice" in err


def test_disco_step_on_cpu_without_quick_is_skipped_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "d.json"
    kw = {"tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    code, stdout, err = _main("--only", "disco_step", "--json", str(out), **kw)
    assert code == 0, err[-3000:]
    res = json.loads(out.read_text())["results"]["disco_step"]
    assert res["figures"] == [] and "--quick" in res["skipped"] and "--device cuda" in res["skipped"]
    assert "(skipped)" in stdout


def test_gpu_session_scripts_parse_and_refuse_unknown_stages(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    for script in ("fetch_wheels.sh", "run_on_device.sh"):
        subprocess.run(["bash", "-n", str(root / "benchmarks" / "gpu" / script)], check=True)
    done = subprocess.run(
        ["bash", str(root / "benchmarks" / "gpu" / "run_on_device.sh"), "nope"],
        cwd=tmp_path, env={"PATH": os.environ["PATH"], "OUT": str(tmp_path)}, capture_output=True, text=True,
    )
    assert done.returncode == 2 and "one of: tests bench compile fp16 smoke" in done.stderr


def test_compare_smoke_times_each_pair_against_its_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "compare.json"
    kw = {"tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}
    code, stdout, err = _main("--smoke", "--only", "compare", "--json", str(out), **kw)
    assert code == 0, err[-3000:]
    result = json.loads(out.read_text())["results"]["compare"]
    assert result["skipped"] is None
    figures = {f["name"]: f for f in result["figures"]}
    for pair in ("warp2d_u8_64", "warp2d_bilinear_64", "warp2d_bicubic_64", "lab_match_u8_64", "lab_match_64", "schedules"):
        for threads in ("1t", "default"):
            ours, ref = figures[f"{pair}_{threads}_discolib"], figures[f"{pair}_{threads}_reference"]
            ratio = figures[f"{pair}_{threads}_ratio"]
            assert ours["value"] > 0 and ref["value"] > 0 and len(ours["samples"]) == len(ref["samples"]) >= 3
            assert math.isclose(ratio["value"], ours["value"] / ref["value"], rel_tol=1e-9)
    assert "ratio" in stdout and "x" in stdout


def test_interleaved_alternates_and_times_both_sides() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from bench_compare import interleaved
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    calls: list[str] = []
    a, b = interleaved(lambda: calls.append("a"), lambda: calls.append("b"), warmup=1, repeats=4)
    assert len(a) == len(b) == 4
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then ABBA
