"""Issue 13's parts as the render loop uses them: VR mode's stereo output and resume, Disco's Video Input through
the loop, the settings and importer rules that tie them to each mode (unit parts are in test_stereo.py,
test_video_input.py, test_cadence.py, test_mode_defaults.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from discolib.animation.plan import RenderPlan
from discolib.config.importers import import_deforum, import_disco
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings, SettingsError
from discolib.io.video import count_video_frames, probe_video
from discolib.run.budget import estimate
from discolib.run.events import RenderEvent
from discolib.run.loop import render
from discolib.run.runs import RunFolder
from discolib.run.stereo import eye_frame_path


def tiny(mode: str, animation: str, **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    for k, v in overrides.items():
        s.set(k, v)
    return s


# ------------------------------------------------------------------------------------------ settings and importers


def test_vr_mode_needs_3d() -> None:
    s = tiny("guided", "2D", vr_mode=True)
    with pytest.raises(SettingsError, match=r"animation\.vr_mode: .*'3D'"):
        s.validate()
    s.animation.animation_mode = "3D"
    s.validate()


def test_disco_import_turns_vr_off_outside_3d_as_disco_does() -> None:
    report = import_disco({"animation_mode": "2D", "vr_mode": True, "vr_ipd": 7.0})
    assert report.settings.animation.vr_mode is False and "vr_mode" in report.notes
    report = import_disco({"animation_mode": "3D", "vr_mode": True, "vr_eye_angle": 1.5})
    assert report.settings.animation.vr_mode is True and report.settings.animation.vr_eye_angle == 1.5


def test_webui_depth_algorithm_picks_the_depth_scale() -> None:
    old = import_deforum({"depth_algorithm": "Midas+AdaBins (old)", "noise_type": "perlin"}).settings
    assert old.animation.depth_convention == "disco"  # webui's legacy models see the raw MiDaS-style blend
    new = import_deforum({"depth_algorithm": "Zoe", "noise_type": "perlin"}).settings
    assert new.animation.depth_convention == "webui"


def test_disocclusion_noise_is_an_opt_in_extension() -> None:
    # Neither original fills uncovered pixels with noise: off by default in both modes.
    assert Settings.defaults("latent").animation.fill_disocclusions is False
    assert Settings.defaults("guided").animation.fill_disocclusions is False


def test_keyframe_interpolations_reach_the_settings() -> None:
    s = tiny("latent", "2D", interpolation="quadratic", zoom="0: (1), 3: (1.3), 7: (1)")
    plan = RenderPlan.from_settings(s.validate())
    assert plan.values["zoom"][3] == pytest.approx(1.3) and plan.values["zoom"][5] > 1.0
    assert import_disco({"interp_spline": "Quadratic"}).settings.animation.interpolation == "quadratic"


def test_budget_counts_disco_video_input_steps(tmp_path: Path) -> None:
    s = tiny("guided", "2D", max_frames=4)
    s.animation.animation_mode = "Video Input"
    s.animation.video_init_path = str(tmp_path / "in.mp4")
    s.set("video_init_steps", 20)
    s.set("video_init_skip_steps", 10)
    s.set("frames_skip_steps", "50%")
    # Disco: frame 0 skips video_init_skip_steps; later frames floor(20 * 50%) = 10 of 20 steps.
    assert estimate(s).steps == 4 * 10
    s.set("video_init_steps", 40)
    s.set("video_init_skip_steps", 10)
    assert estimate(s).steps == 30 + 3 * 20


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_vr_mode_writes_stereo_pairs_and_resumes_byte_identically(tmp_path: Path) -> None:
    s = tiny("guided", "3D", max_frames=5, vr_mode=True, cadence=2, turbo_preroll=1)
    whole = render(s, out=tmp_path / "whole", progress=False)
    run = Path(whole.run_dir)
    for eye in ("l", "r"):
        assert [eye_frame_path(run, eye, i).is_file() for i in range(5)] == [True] * 5
    sbs = run / "video_sbs.mp4"
    assert count_video_frames(sbs) == 5
    assert probe_video(sbs).width == 2 * 64
    left, right = eye_frame_path(run, "l", 3).read_bytes(), eye_frame_path(run, "r", 3).read_bytes()
    assert left != right  # two viewpoints

    stop = threading.Event()

    def cb(e: RenderEvent) -> None:
        if e.kind == "frame" and e.frame == 2:
            stop.set()

    first = render(s, out=tmp_path / "cut", callback=cb, stop=stop, progress=False)
    assert first.status == "stopped"
    cut = Path(first.run_dir)
    eye_frame_path(cut, "r", 1).unlink()  # a pair a crash lost: remade from the written frame
    second = render(s, resume=cut, progress=False)
    assert second.status == "done"
    for i in range(5):
        assert RunFolder.open(cut).frame_path(i).read_bytes() == RunFolder.open(run).frame_path(i).read_bytes()
        for eye in ("l", "r"):
            assert eye_frame_path(cut, eye, i).read_bytes() == eye_frame_path(run, eye, i).read_bytes()
    # A finished run whose pair went missing gets it back on resume, and its stereo video again.
    eye_frame_path(cut, "l", 4).unlink()
    third = render(s, resume=cut, progress=False)
    assert third.status == "done"
    assert eye_frame_path(cut, "l", 4).read_bytes() == eye_frame_path(run, "l", 4).read_bytes()


@pytest.mark.slow
def test_disco_video_input_through_the_loop(tmp_path: Path) -> None:
    from discolib.io.files import save_png_atomic
    from discolib.io.video import frames_to_video

    src = tmp_path / "src"
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 64, 80, generator=g)
    for i in range(6):  # a texture sliding right by 2 px a frame: flow a weight-free method can find
        save_png_atomic(src / f"{i:06d}.png", torch.roll(base, 2 * i, dims=-1)[..., :64])
    clip = frames_to_video(src, tmp_path / "in.mp4", fps=10)
    s = tiny("guided", "2D", max_frames=4)
    s.animation.animation_mode = "Video Input"
    s.animation.video_init_path = str(clip)
    s.set("video_flow_method", "farneback")
    s.set("video_init_steps", 6)
    s.set("video_init_skip_steps", 3)
    s.set("video_init_cutn_batches", 1)
    result = render(s, out=tmp_path / "o", progress=False)
    assert result.status == "done" and len(result.frames) == 4
    seed = result.seeds[0]
    assert result.seeds == [seed, seed + 1, seed + 2, seed + 3]  # Disco: seed + 1 + k from the run seed
    assert Settings.load(Path(result.run_dir) / "settings.json").run.seed + 1 == seed
    # Disco's blended output video (video_init_blend_mode "optical flow", its default) beside the plain one.
    run = Path(result.run_dir)
    assert count_video_frames(run / "video_blend.mp4") == 4 == count_video_frames(run / "video.mp4")
    assert (run / "frames_blend" / "000000.png").read_bytes() == Path(result.frames[0]).read_bytes()
    assert (run / "frames_blend" / "000002.png").read_bytes() != Path(result.frames[2]).read_bytes()
    again = render(s, out=tmp_path / "again", progress=False)
    for a, b in zip(result.frames, again.frames, strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
