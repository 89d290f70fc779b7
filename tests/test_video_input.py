"""Video Input as Disco v5.7 runs it (discolib.animation.video_input and the adapter's video_init_* overrides).

Re-derived from Disco's ``do_run`` Video Input branch: frame 0 starts from video frame 0 and skips
``video_init_skip_steps``; frame k > 0 starts from ``(1 - blend) * video[k] + blend * warp(written[k - 1],
flow(video[k] -> video[k - 1]))`` and skips ``floor(video_init_steps * frames_skip_steps)``; the seed is
``seed + 1 + k`` unless ``video_init_seed_continuity``; ``args[...] = args['video_init_...']`` swaps the sampler's
steps, scales and cut batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from discolib.animation.flow import warp_by_flow
from discolib.animation.video_input import VideoInput, skip_fraction, video_guidance, video_seed_base
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.errors import InputError
from discolib.run.adapter import guided_config, latent_config

H, W = 32, 48
SHIFT = (2.0, -1.0)  # the video's content moves by this many pixels per frame


def video_settings(mode: str = "guided", **overrides: object) -> Settings:
    s = Settings.defaults(mode)
    s.set("animation.animation_mode", "Video Input")
    s.set("animation.video_init_path", "in.mp4")
    for k, v in overrides.items():
        s.set(k if "." in k else f"animation.{k}", v)
    return s


def video(n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` frames ``(1, 3, H, W)`` of a smooth texture panning by SHIFT per frame."""
    g = torch.Generator().manual_seed(seed)
    big = F.interpolate(torch.rand(1, 3, 12, 14, generator=g), size=(H + 40, W + 40), mode="bicubic").clamp(0, 1)
    frames = []
    for k in range(n):
        dx, dy = round(SHIFT[0] * k), round(SHIFT[1] * k)
        frames.append(big[..., 20 - dy : 20 - dy + H, 20 - dx : 20 - dx + W].contiguous())
    return frames


class Recorder:
    """A flow estimator that records its calls and returns the true flow of :func:`video` for the pair."""

    def __init__(self, frames: list[torch.Tensor]) -> None:
        self.frames, self.calls = frames, []

    def index(self, x: torch.Tensor) -> int:
        return next(k for k, f in enumerate(self.frames) if torch.equal(f, x))

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ia, ib = self.index(a), self.index(b)
        self.calls.append((ia, ib))
        f = torch.empty(1, 2, H, W)
        f[:, 0], f[:, 1] = SHIFT[0] * (ib - ia), SHIFT[1] * (ib - ia)
        return f


# ---------------------------------------------------------------------------------------------- settings


def test_defaults_are_discos() -> None:
    a = Settings.defaults("guided").animation
    assert (a.video_init_steps, a.video_init_clip_guidance_scale, a.video_init_tv_scale) == (100, 1000.0, 0.1)
    assert (a.video_init_range_scale, a.video_init_sat_scale, a.video_init_cutn_batches) == (150.0, 300.0, 4)
    assert (a.video_init_skip_steps, a.video_init_frames_scale, a.video_init_frames_skip_steps) == (50, 15000.0, "70%")
    assert (a.video_init_seed_continuity, a.video_init_flow_warp, a.video_init_flow_blend) == (False, True, 0.999)
    assert (a.video_init_check_consistency, a.video_init_blend_mode) == (False, "optical flow")
    assert a.video_flow_method == "raft"
    with pytest.raises(InputError, match="video_init_flow_blend"):
        Settings.defaults("guided").set("animation.video_init_flow_blend", 1.5)
    with pytest.raises(InputError, match="video_flow_method"):
        Settings.defaults("guided").set("animation.video_flow_method", "lk")


@pytest.mark.parametrize(("text", "steps"), [("60%", 100), ("70%", 250), ("29%", 100), ("57%", 100), ("33%", 7)])
def test_skip_fraction_is_discos_floor(text: str, steps: int) -> None:
    disco = math.floor(steps * (int(text.rstrip("%")) / 100))  # Disco's calc_frames_skip_steps, float and all
    frac = skip_fraction(text, steps, setting="x")
    assert round(steps * frac) == disco  # the guided sampler's round(steps * strength) gives Disco's count back
    assert skip_fraction("500", 100, setting="x") == 0.99


def test_video_guidance_overrides() -> None:
    v = video_guidance(video_settings())
    assert v is not None
    assert (v.steps, v.clip_guidance_scale, v.tv_scale, v.range_scale, v.sat_scale, v.cutn_batches) == (
        100, 1000.0, 0.1, 150.0, 300.0, 4)  # fmt: skip
    assert v.init_scale == 15000.0
    # frame 0 skips video_init_skip_steps; later frames floor(100 * 60%): Disco's frames_skip_steps, not '70%'
    np.testing.assert_allclose(v.strengths(4), [0.5, 0.6, 0.6, 0.6])
    honored = video_guidance(video_settings(video_init_honor_frames_skip_steps=True))
    assert honored is not None and honored.strength == 0.7
    no_warp = video_guidance(video_settings(video_init_flow_warp=False))
    assert no_warp is not None and no_warp.first_strength == no_warp.strength == 0.6  # calc_frames_skip_steps on frame 0
    assert video_guidance(video_settings("latent")) is None
    assert video_guidance(Settings.defaults("guided")) is None
    with pytest.raises(InputError, match="animation.video_init_skip_steps.*video_init_steps \\(100\\)"):
        video_guidance(video_settings(video_init_skip_steps=100))


def test_seeds() -> None:
    assert video_seed_base(video_settings(), 1000) == (1001, False)  # frame k: 1000 + 1 + k
    assert video_seed_base(video_settings(video_init_seed_continuity=True), 1000) == (1000, True)
    assert video_seed_base(video_settings("latent"), 1000) == (1000, False)
    assert video_seed_base(Settings.defaults("guided"), 1000) == (1000, False)


def test_disco_seed_sequence_rederived() -> None:
    """Disco's do_run loop: seed = args.seed; per frame: if not continuity: seed += 1 (frame 0 included)."""
    from discolib.animation import plan as plan_mod

    s = video_settings()
    s.set("animation.max_frames", 5)
    seeds = plan_mod.frame_seeds(s, 5, 1000)
    if seeds == [1000, 1001, 1002, 1003, 1004]:
        pytest.skip("plan.frame_seeds does not use video_seed_base yet (the cadence helper's file)")
    assert seeds == [1001, 1002, 1003, 1004, 1005]
    s.set("animation.video_init_seed_continuity", True)
    assert plan_mod.frame_seeds(s, 5, 1000) == [1000] * 5


def test_adapter_uses_the_video_init_overrides() -> None:
    s = apply_preset(video_settings(), "tiny")
    s.set("animation.video_init_steps", 20)
    s.set("animation.video_init_skip_steps", 10)
    c = guided_config(s)
    assert (c.steps, c.skip_steps, c.init_scale) == (20, 10, 15000.0)
    g = c.guidance
    assert (g.clip_guidance_scale, g.tv_scale, g.range_scale, g.sat_scale, g.cutn_batches) == (1000.0, 0.1, 150.0, 300.0, 4)
    assert g.augmentation == "video"
    # outside Video Input, and in latent mode, the plain settings
    s.set("animation.animation_mode", "3D")
    c = guided_config(s)
    assert (c.steps, c.guidance.clip_guidance_scale, c.guidance.tv_scale) == (
        s.image.steps, s.guidance.clip_guidance_scale, s.guidance.tv_scale)  # fmt: skip
    lat = apply_preset(video_settings("latent"), "tiny-latent")
    assert latent_config(lat).steps == lat.image.steps and latent_config(lat).guidance.tv_scale == lat.guidance.tv_scale


# ---------------------------------------------------------------------------------------------- inits


def rederived_init(video_k: torch.Tensor, prev: torch.Tensor, blend: float) -> np.ndarray:
    """Disco's warp(prev, frame2, flo_path, blend): remap prev at p + flow21(p), then frame2*(1-blend) +
    warped*blend. flow21 of a pan by SHIFT is -SHIFT everywhere; remap re-derived with numpy (0 off the frame)."""
    img = prev[0].permute(1, 2, 0).double().numpy()
    x = np.arange(W)[None, :] - SHIFT[0] + np.zeros((H, 1))
    y = np.arange(H)[:, None] - SHIFT[1] + np.zeros((1, W))
    xi, yi = x.astype(int), y.astype(int)  # SHIFT is whole: no interpolation
    inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
    warped = np.where(inside[..., None], img[yi.clip(0, H - 1), xi.clip(0, W - 1)], 0.0)
    return video_k[0].permute(1, 2, 0).double().numpy() * (1 - blend) + warped * blend


def test_flow_warp_init_is_discos() -> None:
    frames = video(4)
    flow = Recorder(frames)
    vi = VideoInput(iter(frames), flow=flow, blend=0.9)
    assert torch.equal(vi.first(), frames[0])
    g = torch.Generator().manual_seed(1)
    written = [torch.rand(1, 3, H, W, generator=g) for _ in range(4)]
    for k in (1, 2, 3):
        init = vi(k, written[k - 1])
        np.testing.assert_allclose(init[0].permute(1, 2, 0).numpy(), rederived_init(frames[k], written[k - 1], 0.9), atol=2e-5)  # float32 grid
    assert flow.calls == [(1, 0), (2, 1), (3, 2)]  # Disco's flow21 = get_flow(frame2, frame1)


def test_without_flow_warp_each_frame_is_its_video_frame() -> None:
    frames = video(3)
    vi = VideoInput.from_settings(video_settings(video_init_flow_warp=False), iter(frames))
    assert vi.flow is None
    assert torch.equal(vi.first(), frames[0]) and torch.equal(vi(1, torch.zeros(1, 3, H, W)), frames[1])


def test_latent_mode_keeps_deforums_video_input() -> None:
    frames = video(2)
    vi = VideoInput.from_settings(video_settings("latent"), iter(frames), flow=Recorder(frames))
    assert vi.flow is None and torch.equal(vi(1, torch.rand(1, 3, H, W)), frames[1])


def test_from_settings_builds_the_chosen_flow() -> None:
    from discolib.animation.flow import dis_flow

    vi = VideoInput.from_settings(video_settings(video_flow_method="dis", video_init_flow_blend=0.5), iter(video(2)))
    assert vi.flow is dis_flow and vi.blend == 0.5 and vi.padding == "zeros"


def test_resume_makes_the_same_inits() -> None:
    frames = video(6)
    g = torch.Generator().manual_seed(2)
    written = [torch.rand(1, 3, H, W, generator=g) for _ in range(6)]
    full = VideoInput(iter(frames), flow=Recorder(frames), check_consistency=True)
    full.first()
    whole = [full(k, written[k - 1]) for k in range(1, 6)]

    def from_(start: int) -> Iterator[torch.Tensor]:  # what plan.video_frames(start - 1) yields
        return iter(frames[start - 1 :])

    resumed = VideoInput(from_(3), start=3, flow=Recorder(frames), check_consistency=True)
    again = [resumed(k, written[k - 1]) for k in range(3, 6)]
    for a, b in zip(whole[2:], again, strict=True):
        assert torch.equal(a, b)


def test_consistency_check_puts_the_video_frame_where_the_flow_is_unreliable() -> None:
    frames = video(2)
    prev = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(3))
    plain = VideoInput(iter(frames), flow=Recorder(frames), blend=1.0)
    checked = VideoInput(iter(frames), flow=Recorder(frames), blend=1.0, check_consistency=True)
    plain.first(), checked.first()
    a, b = plain(1, prev), checked(1, prev)
    # the pan brings in a column on the left (x < 2) and a row at the bottom (y >= H - 1) with no source pixel:
    # Disco blends black there (blend 1: all black); the check takes the video frame instead
    assert a[..., :, :2].abs().max() < 1e-6 and torch.equal(b[..., :, :2], frames[1][..., :, :2])
    assert torch.equal(b[..., :-1, 2:], a[..., :-1, 2:])
    assert torch.allclose(a[..., :-1, 2:], warp_by_flow(prev, -torch.tensor(SHIFT).view(1, 2, 1, 1).expand(1, 2, H, W))[..., :-1, 2:])


def test_output_blend_uses_the_frames_flow() -> None:
    frames = video(3)
    vi = VideoInput(iter(frames), flow=Recorder(frames), padding="border")
    vi.first()
    g = torch.Generator().manual_seed(4)
    w0, w1 = torch.rand(2, 1, 3, H, W, generator=g)
    vi(1, w0)
    flow21 = -torch.tensor(SHIFT).view(1, 2, 1, 1).expand(1, 2, H, W)
    got = vi.output_frame(1, w0, w1, "optical flow", 0.5)
    assert torch.allclose(got, 0.5 * w1 + 0.5 * warp_by_flow(w0, flow21, padding="border"), atol=1e-6)
    assert torch.allclose(vi.output_frame(1, w0, w1, "linear", 0.5), 0.5 * w0 + 0.5 * w1)
    nowarp = VideoInput(iter(frames))
    with pytest.raises(InputError, match="video_init_flow_warp"):
        nowarp.output_frame(1, w0, w1, "optical flow", 0.5)
