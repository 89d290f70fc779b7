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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aspect_ratio_schedule", "0: (1), 3: (0)", r"animation\.aspect_ratio_schedule: expected an aspect ratio > 0 on every frame, got 0 at frame 3"),
        ("fov", "0: (180)", r"animation\.fov: expected a field of view with 0 < \|fov\| < 180 degrees"),
        ("antiblur_threshold", "0: (-5)", r"animation\.antiblur_threshold: expected a threshold >= 0"),
    ],
)
def test_schedule_ranges_are_checked_before_a_run(field: str, value: str, message: str) -> None:
    s = tiny("latent", "3D", **{field: value})
    with pytest.raises(SettingsError, match=message):
        s.validate()


def test_antiblur_sigma_must_be_positive_where_the_kernel_comes_from_it() -> None:
    s = tiny("latent", "2D", antiblur_kernel="0: (0)", antiblur_sigma="0: (-1)")
    with pytest.raises(SettingsError, match=r"animation\.antiblur_sigma: expected a sigma > 0 where antiblur_kernel is 0"):
        s.validate()
    s.set("antiblur_kernel", "0: (5)")
    s.validate()  # a fixed kernel size: OpenCV takes any sigma
    s.set("fov", "0: (-70)")
    s.validate()  # webui's negative fov (reversed motion)


def test_budget_counts_disco_turbo_preroll_inclusive() -> None:
    s = tiny("guided", "3D", max_frames=12, cadence=3, turbo_preroll=4)
    s.set("frames_skip_steps", "50%")
    # Disco diffuses frame_num <= turbo_preroll (0..4) and then every 3rd frame (6, 9): 7 frames.
    est = estimate(s)
    assert est.steps == 10 + 6 * 5


def test_latent_video_input_keeps_latent_strength(tmp_path: Path) -> None:
    s = tiny("latent", "2D", max_frames=4, strength_schedule="0: (0.2), 2: (0.9)", strength=0.4)
    s.animation.animation_mode = "Video Input"
    s.animation.video_init_path = str(tmp_path / "in.mp4")
    plan = RenderPlan.from_settings(s)
    # deforum-stable-diffusion: a video frame is an init image with args.strength, every frame.
    assert plan.strength.tolist() == [0.4] * 4 and plan.first_strength == 0.4


@pytest.mark.slow
def test_resume_without_the_kept_colour_reference_warns_and_stays_identical(tmp_path: Path) -> None:
    s = tiny("latent", "2D", max_frames=5, color_coherence="LAB", make_video=False)
    whole = render(s, out=tmp_path / "whole", progress=False)
    run = Path(whole.run_dir)
    (run / "kept" / "color_ref.png").unlink()
    RunFolder.open(run).frame_path(4).unlink()
    starts: list[int] = []
    with pytest.warns(UserWarning, match="rendering again from frame 1 instead of 4"):
        again = render(s, resume=run, progress=False, callback=lambda e: starts.append(e.frame) if e.kind == "start" else None)
    assert again.status == "done" and starts == [4, 1]
    other = render(s, out=tmp_path / "other", progress=False)
    for i in range(5):
        assert RunFolder.open(run).frame_path(i).read_bytes() == RunFolder.open(other.run_dir).frame_path(i).read_bytes()
    # frame0 reference: frame 0 as written stands in for a lost kept copy, nothing is rendered again.
    s.set("color_coherence_reference", "frame0")
    first = render(s, out=tmp_path / "f0", progress=False)
    run = Path(first.run_dir)
    (run / "kept" / "color_ref.png").unlink(missing_ok=True)
    RunFolder.open(run).frame_path(4).unlink()
    starts.clear()
    render(s, resume=run, progress=False, callback=lambda e: starts.append(e.frame) if e.kind == "start" else None)
    assert starts == [4]


@pytest.mark.slow
@pytest.mark.parametrize("animation", ["2D", "3D"])
def test_perspective_flip_and_grayscale_through_the_loop(tmp_path: Path, animation: str) -> None:
    import numpy as np
    from PIL import Image

    s = tiny("latent", animation, max_frames=3, make_video=False, enable_perspective_flip=True, color_force_grayscale=True)
    s.set("perspective_flip_phi", "0: (8)")
    flipped = render(s, out=tmp_path / "flip", progress=False)
    for path in flipped.frames[1:]:
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 1 and np.abs(rgb[..., 2] - rgb[..., 1]).max() <= 1  # grey
    s.set("enable_perspective_flip", False)
    plain = render(s, out=tmp_path / "plain", progress=False)
    assert Path(flipped.frames[1]).read_bytes() != Path(plain.frames[1]).read_bytes()


@pytest.mark.slow
def test_disco_perlin_init_replaces_every_frames_init(tmp_path: Path) -> None:
    s = tiny("guided", "2D", max_frames=2, make_video=False, perlin_init=True, init_loss="mse")
    assert s.guidance.perlin_init_every_frame  # Disco: regen_perlin() for every frame
    fresh = render(s, out=tmp_path / "fresh", progress=False)
    s.set("perlin_init_every_frame", False)
    warped = render(s, out=tmp_path / "warped", progress=False)
    assert Path(fresh.frames[0]).read_bytes() == Path(warped.frames[0]).read_bytes()  # frame 0 has no other init
    assert Path(fresh.frames[1]).read_bytes() != Path(warped.frames[1]).read_bytes()
