"""The discolib command: init, validate, import-settings, schedule, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from discolib.cli import main
from discolib.config.settings import Settings

DATA = Path(__file__).parent / "data"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_writes_complete_grouped_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    code, stdout, _ = run(["init", "--mode", "latent", "--animation", "3D", "--set", "max_frames=30", "-o", str(out)], capsys)
    assert code == 0 and "wrote" in stdout
    data = json.loads(out.read_text())
    assert list(data) == ["run", "image", "models", "prompts", "guidance", "latent", "animation", "output"]
    assert data["animation"]["max_frames"] == 30 and data["animation"]["animation_mode"] == "3D"
    assert Settings.load(out).image.mode == "latent"
    code, _, err = run(["init", "-o", str(out)], capsys)
    assert code == 2 and "exists; pass --force" in err


def test_init_preset_picks_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    assert run(["init", "--preset", "tiny-latent", "-o", str(out)], capsys)[0] == 0
    s = Settings.load(out)
    assert s.image.mode == "latent" and s.models.latent_model == "tiny-latent"


def test_validate_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    run(["init", "--preset", "tiny", "-o", str(out)], capsys)
    code, stdout, _ = run(["validate", str(out)], capsys)
    assert code == 0 and "ok (guided mode" in stdout
    code, _, err = run(["validate", str(out), "--set", "width=100"], capsys)
    assert code == 2
    assert err.strip() == "discolib: error: image.width: 100 is not a multiple of 64 (needed by the guided sampler); use 64 or 128"
    data = json.loads(out.read_text())
    data["animation"]["translation_z"] = "0: (1 + (2 * t)"
    out.write_text(json.dumps(data))
    code, _, err = run(["validate", str(out)], capsys)
    assert code == 2 and "animation.translation_z: column" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_import_settings_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    code, stdout, _ = run(["import-settings", str(DATA / "disco_v57_settings.txt"), "-o", str(out)], capsys)
    assert code == 0 and "ignored randomize_class" in stdout
    assert Settings.load(out).animation.cadence == 3


def test_schedule_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["schedule", "0: (0), 10: (1.05)", "--frames", "12"], capsys)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0] == "0 0" and lines[5] == "5 0.525" and lines[11] == "11 1.05"
    png = tmp_path / "c.png"
    code, _, _ = run(["schedule", "0:(sin(t/5))", "--frames", "30", "--plot", str(png)], capsys)
    assert code == 0 and png.stat().st_size > 1000
    code, _, err = run(["schedule", "0: (__import__('os'))"], capsys)
    assert code == 2 and err.startswith("discolib: error: schedule: column")


def test_no_render_command_yet_is_absent_or_real(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "init" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["discolib", "discolib.cli"])
def test_python_m_runs_the_command(tmp_path: Path, module: str) -> None:
    """`python -m discolib` (discolib/__main__.py) and `python -m discolib.cli` are the `discolib` command."""
    res = subprocess.run([sys.executable, "-m", module, "validate", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip() == f"discolib: error: settings file not found: {tmp_path / 'missing.json'}"
    res = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "discolib 0.2.0"


def test_schedule_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib is in the `notebook` extra: without it, --plot is one line saying what to install."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    code, out, err = run(["schedule", "0: (1)", "--frames", "3", "--plot", str(tmp_path / "c.png")], capsys)
    assert code == 2 and out == "" and not (tmp_path / "c.png").exists()
    assert err == 'discolib: error: --plot needs matplotlib: pip install "discolib[notebook]"\n'


def test_resume_refuses_overrides_and_a_second_settings_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["render", "--resume", str(tmp_path), "--set", "steps=3"], capsys)
    assert code == 2 and "--set cannot change a run being resumed" in err
    code, _, err = run(["render", "s.json", "--resume", str(tmp_path)], capsys)
    assert code == 2 and "give no settings file" in err


def test_a_bug_keeps_its_traceback_but_input_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> None:
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(Settings, "load", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["validate", str(tmp_path / "s.json")])
    monkeypatch.undo()
    (tmp_path / "s.json").write_text('{"image": {"steps": 10}}\n\u2028')  # a line separator in the JSON error
    code, _, err = run(["validate", str(tmp_path / "s.json")], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("discolib: error: ")


def test_cli_error_is_an_input_error() -> None:
    from discolib.cli import CliError
    from discolib.errors import InputError

    assert issubclass(CliError, InputError)


def test_render_force_is_passed_to_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import discolib.run.loop
    from discolib.config.presets import apply_preset

    path = apply_preset(Settings.defaults("guided"), "tiny").save(tmp_path / "s.json")
    calls: list[dict[str, object]] = []

    class Result:
        status, frames, run_dir, video = "done", [], tmp_path / "run", None

    def fake_render(settings: Settings, *, out: object = None, resume: object = None, progress: bool = True, force: bool = False) -> Result:
        calls.append({"out": out, "force": force})
        return Result()

    monkeypatch.setattr(discolib.run.loop, "render", fake_render)
    home = Path("~").expanduser()
    assert run(["render", str(path), "--force", "--out", "~/runs"], capsys)[0] == 0
    assert calls.pop() == {"out": str(home / "runs"), "force": True}
    assert run(["render", str(path)], capsys)[0] == 0 and calls.pop()["force"] is False


def test_out_of_host_memory_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """torch's CPU allocator failing (a RuntimeError) or MemoryError: one line; other RuntimeErrors stay bugs."""
    import discolib.cli as cli

    def oom(args: object) -> int:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    monkeypatch.setitem(cli.COMMANDS, "validate", oom)
    assert cli.main(["validate", "x.json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("discolib: error: out of memory")

    def bug(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "validate", bug)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["validate", "x.json"])


def test_render_threads_sets_models_threads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import discolib.run.loop
    from discolib.config.presets import apply_preset

    path = apply_preset(Settings.defaults("guided"), "tiny").save(tmp_path / "s.json")
    seen: list[int] = []

    class Result:
        status, frames, run_dir, video = "done", [], tmp_path / "run", None

    def fake_render(settings: Settings, **_kw: object) -> Result:
        seen.append(settings.models.threads)
        return Result()

    monkeypatch.setattr(discolib.run.loop, "render", fake_render)
    assert run(["render", str(path), "--threads", "3"], capsys)[0] == 0
    assert run(["render", str(path), "--set", "models.threads=2"], capsys)[0] == 0
    assert run(["render", str(path), "--set", "threads=2", "--threads", "1"], capsys)[0] == 0  # the flag wins
    assert run(["render", str(path)], capsys)[0] == 0
    assert seen == [3, 2, 1, 0]
    for bad, reason in [("x", "expected an integer, got 'x'"), ("-1", "expected a value >= 0, got -1")]:
        code, _, err = run(["render", str(path), "--threads", bad], capsys)
        assert (code, err) == (2, f"discolib: error: --threads (models.threads): {reason}\n")
    assert seen == [3, 2, 1, 0]  # nothing rendered


def test_resume_refuses_threads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["render", "--resume", str(tmp_path), "--threads", "2"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("discolib: error: --threads cannot change a run being resumed: it renders with the thread count recorded")


def test_video_command_remakes_a_run_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from discolib.io.video import probe_video
    from discolib.run.runs import RunFolder

    s = Settings.defaults("latent", "2D")
    s.set("animation.max_frames", 3)
    run_dir = RunFolder.create(tmp_path, "b", s.to_json(), run_id="r").path
    for i in range(3):
        RunFolder(run_dir).save_frame(i, np.full((8, 8, 3), 60 * i, np.uint8))
    code, stdout, _ = run(["video", str(run_dir), "--fps", "6"], capsys)
    assert code == 0 and stdout.strip() == str(run_dir / "video_0-2_6fps.mp4")
    assert probe_video(stdout.strip()).fps == pytest.approx(6)
    code, _, err = run(["video", str(run_dir), "--fps", "-1"], capsys)
    assert code == 2 and err.strip() == "discolib: error: --fps: expected a number of frames per second > 0, got -1.0"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "video" in capsys.readouterr().out
