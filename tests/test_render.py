"""The render loop end to end with tiny models: stills, 2D/3D animations, video, resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discolib.animation.plan import frame_seeds
from discolib.cli import main as cli_main
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings, SettingsError
from discolib.io.video import count_video_frames, probe_video
from discolib.run.events import RenderEvent
from discolib.run.loop import render
from discolib.run.runs import RunFolder

pytestmark = pytest.mark.slow


def tiny(mode: str, animation: str = "none", **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    for k, v in overrides.items():
        s.set(k, v)
    return s


def test_latent_still_batch(tmp_path: Path) -> None:
    events: list[RenderEvent] = []
    result = render(tiny("latent", n_batches=2), out=tmp_path, callback=events.append, progress=False)
    assert result.status == "done" and len(result.frames) == 2
    run = RunFolder.open(result.run_dir)
    rec = run.read_record()
    assert rec.status == "done" and rec.frames_done == 2 and rec.seeds == [42, 43]
    assert json.loads(run.settings_path.read_text())["run"]["seed"] == 42
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("frame") == 2
    previews = [e.preview for e in events if e.kind == "step" and e.preview is not None]
    assert previews and previews[0].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("mode", ["latent", "guided"])
def test_3d_animation_end_to_end(tmp_path: Path, mode: str) -> None:
    # Guided frames cost ~3 s each on a 2-core CI machine: 4 of them show the same (latent: the preset's 8, which
    # reach its second prompt at frame 4).
    n = 8 if mode == "latent" else 4
    s = tiny(mode, "3D", save_depth_maps=True, max_frames=n)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert run.complete_frames() == list(range(n))
    assert run.read_record().status == "done"
    assert result.video is not None and result.video.name == "video.mp4"
    assert count_video_frames(result.video) == n
    probe = probe_video(result.video)
    assert (probe.codec, probe.pix_fmt) == ("h264", "yuv420p")
    assert len(list((run.path / "depth").glob("*.png"))) == n - 1
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (64, 64, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_2d_animation_with_cadence_and_gif(tmp_path: Path) -> None:
    s = tiny("latent", "2D", cadence=2, video_format="gif")
    result = render(s, out=tmp_path, progress=False)
    assert result.video is not None and result.video.suffix == ".gif"
    with Image.open(result.video) as gif:
        assert gif.n_frames == 8


def test_same_settings_same_frames(tmp_path: Path) -> None:
    s = tiny("latent", "3D", make_video=False)
    a = render(s, out=tmp_path / "a", progress=False)
    b = render(s, out=tmp_path / "b", progress=False)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.read_bytes() == fb.read_bytes()


def test_animate_a_photo_without_diffusion(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    s = tiny("latent", "3D", init_image=str(photo), strength=1.0, strength_schedule="0: (1)", color_coherence="None",
             make_video=False, depth_model="constant")
    calls: list[int] = []
    result = render(s, out=tmp_path / "out", callback=lambda e: calls.append(e.step) if e.kind == "step" else None, progress=False)
    assert calls == []  # no sampler step ran: pure parallax of the photo
    assert np.array_equal(np.asarray(Image.open(result.frames[0])), np.asarray(Image.open(photo)))
    assert not np.array_equal(np.asarray(Image.open(result.frames[3])), np.asarray(Image.open(photo)))


def test_stop_is_honoured_outside_the_sampler(tmp_path: Path) -> None:
    """Stop pressed while the models load ends the run before frame 0; an animation whose frames never reach the
    sampler (pure parallax of a photo) stops too, at the top of the next frame."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    s = tiny("latent", "3D", init_image=str(photo), strength=1.0, strength_schedule="0: (1)", color_coherence="None",
             make_video=False, depth_model="constant")
    stop = threading.Event()
    early = render(s, out=tmp_path / "early", progress=False, stop=stop,
                   callback=lambda e: stop.set() if e.kind == "start" else None)
    assert early.status == "stopped" and early.frames == []
    assert RunFolder.open(early.run_dir).resume_state()[0] is False  # nothing to resume: render it again

    class StopAtFourthCheck(threading.Event):
        """Set from the fourth time the loop asks: once after the models are built, then at the top of each frame."""

        checks = 0

        def is_set(self) -> bool:
            self.checks += 1
            return self.checks >= 4 or super().is_set()

    late = render(s, out=tmp_path / "late", progress=False, stop=StopAtFourthCheck())
    assert late.status == "stopped"
    assert RunFolder.open(late.run_dir).complete_frames() == [0, 1]  # stopped at the top of frame 2


def test_stop_event_leaves_resumable_run(tmp_path: Path) -> None:
    s = tiny("latent", "2D", make_video=False)
    stop = threading.Event()

    def cb(e: RenderEvent) -> None:
        if e.kind == "frame" and e.frame == 2:
            stop.set()

    first = render(s, out=tmp_path, callback=cb, stop=stop, progress=False)
    assert first.status == "stopped"
    run = RunFolder.open(first.run_dir)
    assert run.read_record().status == "interrupted" and run.complete_frames() == [0, 1, 2]
    second = render(s, resume=first.run_dir, progress=False)
    assert second.status == "done" and run.complete_frames() == list(range(8))
    whole = render(s, out=tmp_path / "whole", progress=False)
    for a, b in zip(RunFolder.open(second.run_dir).complete_frames(), RunFolder.open(whole.run_dir).complete_frames(), strict=True):
        assert run.frame_path(a).read_bytes() == RunFolder.open(whole.run_dir).frame_path(b).read_bytes()


def _cli(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "discolib.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.usefixtures("one_thread")
def test_resume_after_sigkill_is_byte_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CLI render killed with SIGKILL mid-run leaves only whole frames; `discolib render --resume` finishes it with
    the frames of an uninterrupted run, byte for byte.

    Only the killed render is a separate process (SIGKILL needs one). The uninterrupted reference and the resume run
    here, through the same settings file and the CLI's own ``main`` (each ``python -m discolib.cli`` pays ~15 s of
    imports on a 2-core CI machine), on one thread as the ``OMP_NUM_THREADS=1`` process does: the same thread count
    (the run records it; a resume renders with it), so the same bytes. test_cli.py runs the module as a process."""
    settings = tiny("latent", "3D", make_video=False)
    settings.save(tmp_path / "s.json")
    whole = render(Settings.load(tmp_path / "s.json"), out=tmp_path / "whole", progress=False)
    assert whole.status == "done" and len(whole.frames) == 8

    killed = _cli("render", "s.json", "--out", "killed", "--no-progress", cwd=tmp_path)
    frames_dir = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list((tmp_path / "killed").glob("*/*/frames"))
        if found and len(list(found[0].glob("*.png"))) >= 3:
            frames_dir = found[0]
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert frames_dir is not None, "the run never wrote 3 frames"
    run_dir = frames_dir.parent
    n_before = len(list(frames_dir.glob("*.png")))
    assert 3 <= n_before < 8, f"killed too late ({n_before} frames)"
    threads = [RunFolder.open(d).read_record().torch_threads for d in (run_dir, whole.run_dir)]
    assert threads == [1, 1], threads  # the same thread count, so the same bytes
    # No truncated PNG under a final name: every frame written so far decodes.
    for p in frames_dir.glob("*.png"):
        Image.open(p).load()

    capsys.readouterr()
    assert cli_main(["render", "--resume", str(run_dir), "--no-progress"]) == 0, capsys.readouterr().err
    assert "done: 8 frame(s)" in capsys.readouterr().out
    whole_dir = RunFolder.open(whole.run_dir).frames_dir
    for i in range(8):
        name = f"{i:06d}.png"
        assert (frames_dir / name).read_bytes() == (whole_dir / name).read_bytes(), f"frame {i} differs after resume"
    assert not list(run_dir.rglob("*.tmp"))
    assert RunFolder.open(run_dir).read_record().status == "done"


def test_seed_behaviors() -> None:
    s = tiny("latent", "2D")
    assert frame_seeds(s, 4, 10) == [10, 11, 12, 13]
    s.animation.seed_behavior = "fixed"
    assert frame_seeds(s, 3, 10) == [10, 10, 10]
    s.animation.seed_behavior = "ladder"
    assert frame_seeds(s, 5, 10) == [10, 12, 11, 13, 12]
    s.animation.seed_behavior = "alternate"
    assert frame_seeds(s, 4, 10) == [10, 11, 10, 11]
    s.animation.seed_behavior = "iter"
    s.animation.seed_iter_n = 2
    assert frame_seeds(s, 5, 10) == [10, 11, 11, 12, 12]  # Deforum's next_seed (issue 13; tests/test_seeds.py)
    s.animation.seed_behavior = "schedule"
    s.animation.seed_schedule = "0:(s), 2:(s+100), 3:(-1)"
    seeds = frame_seeds(s, 4, 10)
    assert seeds[:3] == [10, 10, 110] and seeds[3] != -1
    s.animation.seed_behavior = "random"
    assert frame_seeds(s, 4, 10) == frame_seeds(s, 4, 10) and len(set(frame_seeds(s, 4, 10))) == 4


# ---------------------------------------------------------------------------------------------- bad input


def test_max_frames_zero_refused() -> None:
    with pytest.raises(SettingsError, match="animation.max_frames: expected a value >= 1, got 0"):
        tiny("latent", "3D", max_frames=0)


def test_cadence_larger_than_max_frames(tmp_path: Path) -> None:
    s = tiny("latent", "2D", max_frames=4)
    s.animation.cadence = 6
    with pytest.raises(SettingsError, match="animation.cadence: cadence 6 is larger than animation.max_frames"):
        render(s, out=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())  # nothing was created for a run that could not start


def test_bad_keyframe_string_names_schedule(tmp_path: Path) -> None:
    s = tiny("latent", "3D")
    s.animation.rotation_3d_y = "0:(1), 5:(sin(t)"
    with pytest.raises(ValueError, match=r"animation.rotation_3d_y: column \d+: expected '\)'"):
        render(s, out=tmp_path, progress=False)


def test_video_input_missing_and_not_a_video(tmp_path: Path) -> None:
    s = tiny("latent", "3D")
    s.animation.animation_mode = "Video Input"
    s.animation.video_init_path = str(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="animation.video_init_path: file not found"):
        render(s, out=tmp_path / "o", progress=False)
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    s.animation.video_init_path = str(text)
    with pytest.raises(ValueError, match="animation.video_init_path: not a readable video"):
        render(s, out=tmp_path / "o2", progress=False)


def test_video_input_mode(tmp_path: Path) -> None:
    from discolib.io.files import save_png_atomic
    from discolib.io.video import frames_to_video

    src = tmp_path / "src"
    for i in range(10):
        save_png_atomic(src / f"{i:06d}.png", torch.full((1, 3, 64, 64), i / 10))
    clip = frames_to_video(src, tmp_path / "in.mp4", fps=10)
    s = tiny("latent", "3D", make_video=False, max_frames=4, extract_nth_frame=2)
    s.animation.animation_mode = "Video Input"
    s.animation.video_init_path = str(clip)
    result = render(s, out=tmp_path / "o", progress=False)
    assert len(result.frames) == 4
    s.animation.max_frames = 8  # 10 frames at every 2nd: only 5 usable
    with pytest.raises(SettingsError, match="fewer usable frames than max_frames"):
        render(s, out=tmp_path / "o3", progress=False)


def test_unwritable_output_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="run.output_root: cannot create"):
        render(tiny("latent"), out=blocker / "runs", progress=False)


@pytest.mark.usefixtures("one_thread")
def test_cli_render_still_guided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`discolib init --preset tiny` then `discolib render` of that file: a guided still. Through the CLI's ``main``
    in this process (a ``python -m discolib.cli`` process pays ~15 s of imports per call here); the module run as a
    process is test_cli.py's (``--version``) and test_resume_after_sigkill_is_byte_identical's (a render)."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["init", "--preset", "tiny", "-o", "s.json"]) == 0, capsys.readouterr().err
    assert cli_main(["render", "s.json", "--out", "runs", "--no-progress"]) == 0, capsys.readouterr().err
    assert "done: 1 frame(s)" in capsys.readouterr().out
    assert len(list((tmp_path / "runs").glob("tiny/*/frames/000000.png"))) == 1


def test_resume_latest(tmp_path: Path) -> None:
    s = tiny("latent", "2D", make_video=False, max_frames=3)
    stop = threading.Event()
    first = render(s, out=tmp_path, callback=lambda e: stop.set() if e.kind == "frame" else None, stop=stop, progress=False)
    assert first.status == "stopped"
    s.run.output_root = str(tmp_path)
    again = render(s, resume="latest", progress=False)
    assert again.run_dir == first.run_dir and again.status == "done" and len(again.frames) == 3


def test_latent_clip_guidance_changes_frames(tmp_path: Path) -> None:
    plain = render(tiny("latent", steps=2), out=tmp_path / "a", progress=False)
    guided = render(tiny("latent", steps=2, clip_scale=5000, clip_models=["tiny-vit"]), out=tmp_path / "b", progress=False)
    a = np.asarray(Image.open(plain.frames[0]), dtype=np.int16)
    b = np.asarray(Image.open(guided.frames[0]), dtype=np.int16)
    assert np.abs(a - b).mean() > 0.5


def test_guided_image_prompts_change_the_image(tmp_path: Path) -> None:
    red = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(red)
    base = tiny("guided", steps=4, clip_guidance_scale=20000, clamp_grad=False)
    with_image = tiny("guided", steps=4, clip_guidance_scale=20000, clamp_grad=False, image_prompts={"0": [f"{red}:2"]})
    a = render(base, out=tmp_path / "a", progress=False).frames[0]
    b = render(with_image, out=tmp_path / "b", progress=False).frames[0]
    assert a.read_bytes() != b.read_bytes()
    bad = tiny("guided", steps=4, image_prompts={"0": [str(tmp_path / "missing.png")]})
    with pytest.raises(ValueError, match="prompts.image_prompts: file not found"):
        render(bad, out=tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()  # refused before a run folder was made


def test_animation_from_a_video_first_frame(tmp_path: Path) -> None:
    from discolib.io.files import save_png_atomic
    from discolib.io.video import first_frame, frames_to_video

    src = tmp_path / "src"
    for i in range(3):
        save_png_atomic(src / f"{i:06d}.png", torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(i)))
    clip = frames_to_video(src, tmp_path / "clip.mp4", fps=5)
    s = tiny("latent", "2D", init_image=str(clip), strength=1.0, make_video=False, max_frames=2)
    result = render(s, out=tmp_path / "o", progress=False)
    want = (first_frame(clip, (64, 64)) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(Image.open(result.frames[0])), want)


def test_bad_scheduler_and_soundtrack_refused_before_a_run_folder(tmp_path: Path) -> None:
    s = tiny("latent", "2D")
    s.latent.scheduler = "bogus"
    with pytest.raises(ValueError, match="euler_a"):
        render(s, out=tmp_path / "a", progress=False)
    s = tiny("latent", "2D")
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio")
    s.output.soundtrack = str(notes)
    with pytest.raises(ValueError, match=r"output.soundtrack: .*notes.txt: not a readable audio file"):
        render(s, out=tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_still_seeds_ignore_animation_seed_settings() -> None:
    s = tiny("guided", n_batches=3)
    s.animation.seed_iter_n = 5
    s.animation.seed_behavior = "fixed"
    assert frame_seeds(s, 3, 7) == [7, 8, 9]


def test_intermediate_saves_and_disco_skip_without_init(tmp_path: Path) -> None:
    s = tiny("guided", intermediate_saves=3, skip_steps=4)
    steps: list[int] = []
    result = render(s, out=tmp_path, callback=lambda e: steps.append(e.step) if e.kind == "step" else None, progress=False)
    assert steps == [1, 2, 3, 4, 5, 6]  # 10 steps, 4 skipped even without an init image (as Disco)
    saved = sorted(p.name for p in (result.run_dir / "intermediates").glob("*.png"))
    assert len(saved) == 3 and all(name.startswith("000000_") for name in saved)


def test_models_root_is_where_a_render_loads_models(tmp_path: Path) -> None:
    """models.models_root (models on Drive in Colab) is in effect for the whole render, then no more."""
    from huggingface_hub import constants

    from discolib.models import hub

    s = tiny("latent", max_frames=1)
    s.set("models.models_root", str(tmp_path / "models"))
    seen: list[tuple[Path, str]] = []
    render(s, out=tmp_path / "out", progress=False,
           callback=lambda e: seen.append((hub.models_dir(), constants.HF_HUB_CACHE)) if e.kind == "start" else None)
    assert seen == [(tmp_path / "models", str(tmp_path / "models" / "hub"))]
    assert hub.models_dir() != tmp_path / "models" and constants.HF_HUB_CACHE != str(tmp_path / "models" / "hub")
