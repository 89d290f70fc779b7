"""Running sweeps with the local executor: run folders, sweep.json, contact sheet, re-runs, resume, failures, CLI.

The demo sweep (2 prompts x 2 seeds of a 3-frame 64x64 tiny-latent animation) runs once per module; the other
tests re-run it or parts of it into fresh folders and compare frame hashes from run.json.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import discolib.models.load as load_module
import discolib.run.sweep as sweep_module
from discolib.cli import main
from discolib.config.sweep import SweepError, parse_sweep
from discolib.models.load import ModelCache, shared_models
from discolib.run.loop import render
from discolib.run.runs import RunFolder
from discolib.run.sweep import (
    SHEET_FILE,
    SWEEP_FILE,
    VariantState,
    make_contact_sheet,
    read_sweep,
    run_variant,
    sweep,
    variant_frame,
    write_sweep,
)

DEMO = Path(__file__).resolve().parents[1] / "discolib" / "data" / "demo_sweep.json"


def demo_data() -> dict[str, Any]:
    """The shipped demo sweep without its videos (ffmpeg adds seconds and nothing these tests look at)."""
    data = json.loads(DEMO.read_text(encoding="utf-8"))
    data["set"]["output.make_video"] = False
    return data


def frame_hashes(sweep_dir: Path, state: VariantState) -> list[str]:
    assert state.run_dir is not None
    return RunFolder(sweep_dir / state.run_dir).read_record().frame_sha256


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Iterator[tuple[Path, Any, int]]:
    """(sweep folder, result, latent model loads) of the demo sweep, run once."""
    out = tmp_path_factory.mktemp("sweep") / "demo"
    loads = []
    real = load_module._load_latent
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(load_module, "_load_latent", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
        result = sweep(demo_data(), out, progress=False)
    yield out, result, len(loads)


def test_local_sweep_makes_one_run_per_variant_and_a_labelled_sheet(demo: tuple[Path, Any, int]) -> None:
    out, result, loads = demo
    assert result.ok and result.path == out and loads == 1  # four variants, one model load
    header, states = read_sweep(out)
    assert header["version"] == 1 and header["executor"] == "local" and header["base_seed"] == 42
    assert header["axes"]["run.seed"] == [42, 43] and len(header["axes"]["prompts.text_prompts"]) == 2
    assert [s.to_dict() for s in states] == [s.to_dict() for s in result.variants]
    runs = sorted(p for p in (out / "runs").glob("*/*") if p.is_dir())
    assert len(runs) == 4
    for state in states:
        assert state.status == "done" and state.frames_done == state.frames_total == 3 and state.error == ""
        assert state.run_dir is not None and (out / state.run_dir).parent.name == state.id
        settings = json.loads((out / state.run_dir / "settings.json").read_text())
        assert settings["run"]["seed"] == state.overrides["run.seed"]
        assert settings["prompts"]["text_prompts"] == state.overrides["prompts.text_prompts"]
        assert variant_frame(out, state) == out / state.run_dir / "frames" / "000002.png"
        assert variant_frame(out, state, 0) == out / state.run_dir / "frames" / "000000.png"
        assert variant_frame(out, state, 3) is None
    # nothing outside the sweep folder
    assert sorted(p.name for p in out.iterdir()) == sorted([SHEET_FILE, SWEEP_FILE, "runs"])
    sheet = Image.open(result.contact_sheet)
    assert result.contact_sheet == out / SHEET_FILE
    # 2 x 2 tiles: 64 px frames scaled x4 to 256, 4 px padding, a 12 px label with 4 px padding
    assert sheet.size == (2 * 264, 2 * (264 + 20))
    pixels = np.asarray(sheet.convert("RGB"))
    tiles = [pixels[r * 284 + 4 : r * 284 + 260, c * 264 + 4 : c * 264 + 260] for r in range(2) for c in range(2)]
    last = [np.asarray(Image.open(variant_frame(out, s)).convert("RGB")) for s in states]
    for tile, frame in zip(tiles, last, strict=True):
        assert np.array_equal(tile[::4, ::4], frame)  # each tile is its variant's last frame
    assert all(not np.array_equal(tiles[i], tiles[j]) for i in range(4) for j in range(i + 1, 4))
    labels = [pixels[r * 284 + 264 : r * 284 + 284, c * 264 : c * 264 + 264] for r in range(2) for c in range(2)]
    assert all((lab > 128).any() for lab in labels)  # each tile has its label drawn
    first = np.asarray(Image.open(make_contact_sheet(out, frame=0)).convert("RGB"))  # a chosen frame instead
    frame0 = np.asarray(Image.open(variant_frame(out, states[0], 0)).convert("RGB"))
    assert np.array_equal(first[4:260:4, 4:260:4], frame0) and not np.array_equal(frame0, last[0])
    make_contact_sheet(out)  # back to the last frames for the other tests


def test_rerun_does_no_work(demo: tuple[Path, Any, int], monkeypatch: pytest.MonkeyPatch) -> None:
    out, result, _loads = demo
    before = (out / "runs").stat().st_mtime_ns, sorted(p.name for p in (out / "runs").glob("*/*"))

    def no_load(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a finished sweep loaded a model")

    monkeypatch.setattr(load_module, "_load_latent", no_load)
    monkeypatch.setattr("discolib.run.loop.render", no_load)
    again = sweep(demo_data(), out, progress=False)
    assert again.ok and [s.to_dict() for s in again.variants] == [s.to_dict() for s in result.variants]
    assert ((out / "runs").stat().st_mtime_ns, sorted(p.name for p in (out / "runs").glob("*/*"))) == before


def test_frames_match_separate_renders(demo: tuple[Path, Any, int], tmp_path: Path) -> None:
    out, result, _loads = demo
    spec = parse_sweep(demo_data())
    for variant in spec.variants[:2]:
        alone = render(spec.settings_for(variant), out=tmp_path, progress=False)
        assert RunFolder(alone.run_dir).read_record().frame_sha256 == frame_hashes(out, result.variants[variant.index])


def test_interrupted_sweep_resumes_to_identical_frames(
    demo: tuple[Path, Any, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, result, _loads = demo
    spec = parse_sweep(demo_data())
    real = sweep_module.run_variant

    class CtrlC(threading.Event):
        """Ctrl-C once the variant's first frame is on disk (checked between sampler steps)."""

        def __init__(self, frames: Path) -> None:
            super().__init__()
            self.frames = frames

        def is_set(self) -> bool:
            if any(self.frames.glob("runs/*/*/frames/*.png")):
                raise KeyboardInterrupt
            return False

    def interrupted(*args: Any, **kwargs: Any) -> VariantState:
        return real(*args, **kwargs, stop=CtrlC(tmp_path))

    monkeypatch.setattr(sweep_module, "run_variant", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, tmp_path, progress=False)
    _header, states = read_sweep(tmp_path)
    assert states[0].status == "interrupted" and 1 <= states[0].frames_done < 3
    assert [s.status for s in states[1:]] == ["pending"] * 3
    assert (tmp_path / SWEEP_FILE).is_file() and not (tmp_path / SHEET_FILE).exists()
    monkeypatch.setattr(sweep_module, "run_variant", real)
    resumed = sweep(spec, tmp_path, progress=False)
    assert resumed.ok
    first_run = resumed.variants[0].run_dir
    assert first_run == states[0].run_dir  # the same run folder, continued
    for done, reference in zip(resumed.variants, result.variants, strict=True):
        assert frame_hashes(tmp_path, done) == frame_hashes(out, reference)


def test_stop_event_leaves_the_variant_interrupted(tmp_path: Path, one_thread: None) -> None:
    spec = parse_sweep(demo_data())
    stop = threading.Event()
    stop.set()
    state = run_variant(spec, spec.variants[0], tmp_path, stop=stop)
    assert state.status == "interrupted" and state.frames_done == 0 and state.run_dir is not None


def test_failing_variant_is_marked_failed_and_others_finish_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    data = demo_data()
    data.pop("seeds")
    data["grid"] = {"models.latent_model": ["tiny-latent", "nobody/no-such-model"]}
    data["set"]["models.random_weights"] = False
    path = tmp_path / "fail.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 1
    printed = capsys.readouterr()
    assert "1 of 2 variant(s) done" in printed.out and f"contact sheet: {out / SHEET_FILE}" in printed.out
    assert "failed" in printed.err
    _header, states = read_sweep(out)
    assert [s.status for s in states] == ["done", "failed"]
    error = states[1].error
    assert error.split(":")[0].isidentifier() and "no-such-model" in error and "\n" not in error
    sheet = Image.open(out / SHEET_FILE)
    assert sheet.size == (2 * 264, 284)
    blank = np.asarray(sheet.convert("RGB"))[4:260, 268:524]
    assert (blank == blank[0, 0]).all()  # the failed variant's plain tile


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"preset": "tiny-latent", "grid": {"cfg_scal": [1, 2]}}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid.cfg_scal: unknown setting; did you mean 'cfg_scale'" in err
    assert not (tmp_path / "o").exists()  # validated before anything is written
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o"), "--gpus-per-run", "1"]) == 2
    assert "--executor ray" in capsys.readouterr().err
    assert main(["sweep", str(DEMO), "--out", str(tmp_path / "o"), "--max-variants", "2"]) == 2
    assert "4 variants is more than the limit of 2" in capsys.readouterr().err
    assert main(["sweep", str(DEMO), "--out", str(tmp_path / "o"), "--frame", "last"]) == 2
    assert "--frame: expected a frame number" in capsys.readouterr().err


def test_folder_of_another_sweep_and_broken_sweep_json(demo: tuple[Path, Any, int], tmp_path: Path) -> None:
    out, _result, _loads = demo
    other = demo_data()
    other["set"]["latent.cfg_scale"] = 3
    with pytest.raises(SweepError, match="holds another sweep"):
        sweep(other, out, progress=False)
    header, states = read_sweep(out)
    broken = tmp_path / "broken"
    broken.mkdir()
    for text, message in [
        ("{", "invalid JSON"),
        ('{"version": 2, "variants": []}', "version 2"),
        (json.dumps({**header, "variants": [{**states[0].to_dict(), "run_dir": "../../etc"}]}), "run_dir"),
        (json.dumps({**header, "variants": [{**states[0].to_dict(), "status": "odd"}]}), "status"),
    ]:
        (broken / SWEEP_FILE).write_text(text)
        with pytest.raises(SweepError, match=message):
            read_sweep(broken)
    with pytest.raises(SweepError, match="not found"):
        read_sweep(tmp_path / "nowhere")


def test_random_base_seed_is_recorded_and_reused(tmp_path: Path) -> None:
    data = demo_data()
    data["set"]["run.seed"] = -1
    spec = parse_sweep(data)
    resolved = sweep_module._resolve_seed(spec, None)
    seed = resolved.axes["run.seed"][0]
    write_sweep(tmp_path, resolved, [VariantState.pending(v) for v in resolved.variants])
    header, _states = read_sweep(tmp_path)
    assert header["base_seed"] == seed
    again = sweep_module._resolve_seed(spec, header)
    assert [v.id for v in again.variants] == [v.id for v in resolved.variants]


def test_model_cache_reuses_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[str] = []
    real = load_module._load_diffusion
    monkeypatch.setattr(load_module, "_load_diffusion", lambda *a: calls.append(a[0]) or real(*a))
    cpu = torch.device("cpu")
    outside = load_module.load_diffusion("tiny", cpu, torch.float32)
    cache = ModelCache(max_items=2)
    with shared_models(cache):
        first = load_module.load_diffusion("tiny", cpu, torch.float32)
        first.enable_gradient_checkpointing()  # what the guided sampler does per config: undone for the next user
        second = load_module.load_diffusion("tiny", cpu, torch.float32)
        assert second is first and not second.is_gradient_checkpointing
        # another dtype, another key; a diffusion model is kept one at a time (GBs each): the first is evicted
        assert load_module.load_diffusion("tiny", cpu, torch.float64) is not first
        assert len(cache) == 1
    assert load_module.load_diffusion("tiny", cpu, torch.float32) is not first  # outside the block: a fresh load
    assert outside is not first and calls == ["tiny"] * 4 and (cache.loads, cache.hits, len(cache)) == (2, 1, 1)
