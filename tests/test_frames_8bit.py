"""The 8-bit frame path (``animation.frames_8bit``): Deforum's uint8 warp and colour match, re-derived.

* :func:`motion.warp_2d_u8` is the float warp rounded to 8 bits (half a level), for every padding;
* :func:`coherence.match_histogram_u8` is bit for bit Deforum's ``maintain_colors``: OpenCV's 8-bit Lab and
  skimage's ``match_histograms`` of uint8 images (re-run here), for LAB and RGB;
* the torch recipe (accelerators) gives the same bytes as the OpenCV one (checked on CPU tensors);
* in a render, the step takes the 8-bit path only where it applies, its init equals the float path's init made
  8-bit, it is deterministic, and ``frames_8bit`` off restores the float path.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from discolib.animation import coherence, motion
from discolib.animation.coherence import (
    HistogramReference8,
    from_u8,
    match_histogram_8bit,
    match_histogram_u8,
    to_u8,
)


def _photo(size: int, seed: int) -> torch.Tensor:
    """A photo-like (1, 3, size, size) frame quantised to 8 bits: smooth colour fields, texture, dark corners."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 6, 6, generator=gen)
    smooth = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)
    x = (smooth + 0.08 * torch.randn(1, 3, size, size, generator=gen)).clamp(0, 1)
    x[..., : size // 4, : size // 4] *= 0.1  # dark saturated colours: where 8-bit Lab loses most
    return x.mul(255).round().div(255)


def _deforum_maintain_colors(frame: np.ndarray, reference: np.ndarray, space: str) -> np.ndarray:
    """What both Deforums run for "Match Frame 0 LAB"/"RGB": OpenCV 8-bit conversions around skimage's matching."""
    from skimage.exposure import match_histograms

    if space == "LAB":
        lab = match_histograms(cv2.cvtColor(frame, cv2.COLOR_RGB2LAB), cv2.cvtColor(reference, cv2.COLOR_RGB2LAB), channel_axis=-1)
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return match_histograms(frame, reference, channel_axis=-1)


@pytest.mark.parametrize("padding", ["replicate", "reflect", "zeros", "wrap"])
@pytest.mark.parametrize("move", [(1.0, 1.04, 2.0, 0.0, 0.5, 0.5), (-25.0, 0.8, -30.5, 12.25, 0.3, 0.6)])
def test_u8_warp_is_the_float_warp_rounded(padding: str, move: tuple[float, ...]) -> None:
    frame = _photo(96, 0)
    exact = motion.warp_2d(frame, *move, padding_mode=padding, backend="torch")[0].permute(1, 2, 0).numpy() * 255
    for channels in (3, 4):
        u8 = to_u8(frame) if channels == 3 else cv2.cvtColor(to_u8(frame), cv2.COLOR_RGB2RGBA)
        out = motion.warp_2d_u8(u8, *move, padding_mode=padding)
        assert out.shape == (96, 96, 4) and out.dtype == np.uint8
        # half a level, plus the float warps' own difference (2e-4 of the range, tests/test_motion_cpu.py)
        assert np.abs(out[..., :3] - exact).max() <= 0.5 + 255 * 2e-4


def test_u8_warp_refuses_other_arrays() -> None:
    with pytest.raises(motion.MotionError, match="uint8 frame"):
        motion.warp_2d_u8(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(motion.MotionError, match="uint8 frame"):
        motion.warp_2d_u8(np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize("space", ["LAB", "RGB"])
@pytest.mark.parametrize(("size", "ref_size"), [(96, 96), (80, 64)])
def test_u8_match_is_deforums_maintain_colors_bit_for_bit(space: str, size: int, ref_size: int) -> None:
    pytest.importorskip("skimage")
    frame, ref = to_u8(_photo(size, 1)), to_u8(_photo(ref_size, 2))
    prepared = HistogramReference8.prepare(ref, space)
    got = match_histogram_u8(frame, prepared)
    assert got.dtype == np.uint8 and got.shape == frame.shape
    np.testing.assert_array_equal(got, _deforum_maintain_colors(frame, ref, space))
    # an RGBA frame (the 8-bit warp's output) reads its first three channels
    np.testing.assert_array_equal(match_histogram_u8(cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA), prepared), got)


def test_u8_match_refuses_hsv_and_bad_arrays() -> None:
    with pytest.raises(coherence.CoherenceError, match="8-bit"):
        HistogramReference8.prepare(np.zeros((4, 4, 3), np.uint8), "HSV")
    with pytest.raises(coherence.CoherenceError, match="frame"):
        match_histogram_u8(np.zeros((4, 4, 3), np.float32), HistogramReference8.prepare(np.zeros((4, 4, 3), np.uint8)))


@pytest.mark.parametrize("space", ["LAB", "RGB"])
def test_torch_recipe_gives_the_opencv_bytes(space: str) -> None:
    """The accelerator's recipe (LUTs of OpenCV's own conversions, np.interp re-derived) on CPU tensors."""
    frame, ref = _photo(64, 3), _photo(72, 4)
    sparse = torch.zeros(1, 3, 16, 16)
    sparse[..., :8] = 0.5
    sparse[:, 1] = 0.2  # a reference with two values per channel: interpolation between far-apart values
    for reference in (ref, sparse):
        cpu = match_histogram_8bit(frame, reference, space)
        emulated = coherence._match_8bit_torch(frame, reference, space)
        torch.testing.assert_close(emulated, cpu, rtol=0, atol=0)
        assert torch.equal(cpu, cpu.mul(255).round().div(255))  # 8-bit values


def test_8bit_match_of_a_batch_and_hsv_fallback() -> None:
    frames = torch.cat([_photo(48, 5), _photo(48, 6)])
    ref = _photo(48, 7)
    both = match_histogram_8bit(frames, ref, "LAB")
    for k in range(2):
        torch.testing.assert_close(both[k : k + 1], match_histogram_8bit(frames[k : k + 1], ref, "LAB"), rtol=0, atol=0)
    torch.testing.assert_close(match_histogram_8bit(frames, ref, "HSV"), coherence.match_histogram(frames, ref, "HSV"))


def test_tensor_u8_round_trip_is_exact_for_8bit_frames() -> None:
    frame = _photo(40, 8)
    back = from_u8(to_u8(frame))
    assert back.is_contiguous() and back.dtype == torch.float32
    assert torch.equal(back, frame)


def _step(frames_8bit: bool, mode: str = "2D", cadence: int = 1, coherence_space: str = "LAB"):
    from discolib.animation.plan import RenderPlan
    from discolib.animation.policy import LATENT_POLICY
    from discolib.animation.step import AnimationStep
    from discolib.config.settings import Settings

    s = Settings.defaults("latent", mode)
    s.set("image.width", 64)
    s.set("image.height", 64)
    s.set("animation.max_frames", 4)
    s.set("animation.cadence", cadence)
    s.set("animation.color_coherence", coherence_space)
    s.set("animation.frames_8bit", frames_8bit)
    s.set("animation.angle", "0: (3)")
    s.set("animation.noise_schedule", "0: (0)")  # what follows the match (contrast 1, no anti-blur, no noise) is
    s.set("animation.antiblur_amount", "0: (0)")  # left out, so the init is the matched frame itself
    s.set("animation.contrast_schedule", "0: (1.0)")
    s.set("run.seed", 5)
    plan = RenderPlan.from_settings(s)
    return AnimationStep(plan, LATENT_POLICY, torch.device("cpu"))


def test_step_takes_the_8bit_path_only_where_it_applies() -> None:
    assert _step(True)._eight_bit
    assert not _step(False)._eight_bit
    assert not _step(True, cadence=2)._eight_bit  # Deforum's tween chains are float


@pytest.mark.parametrize("space", ["LAB", "RGB", "HSV"])
def test_step_init_is_the_float_warp_made_8bit(space: str) -> None:
    """Frames 1-3 of a 2D render from the same samples: the 8-bit step's inits equal the float warp rounded and
    matched by match_histogram_8bit (but for rounding ties of the warp), and repeat exactly; frames_8bit off gives
    today's float inits."""
    samples = [_photo(64, 10 + k) for k in range(4)]

    def inits(step, hand_over: bool) -> list[torch.Tensor]:
        out = []
        step.finish(0, samples[0])
        for i in range(1, 4):
            if hand_over:
                step.written(step._new, to_u8(step._new))
            out.append(step(i).image)
            step.finish(i, samples[i])
        return out

    fast, again, plain = inits(_step(True, coherence_space=space), True), inits(_step(True, coherence_space=space), False), None
    for a, b in zip(fast, again, strict=True):
        assert torch.equal(a, b)  # the loop's array or a conversion: the same bytes
    slow = _step(True, coherence_space=space)
    slow._eight_bit = False  # the device-independent recipe: float warp, rounded, then match_histogram_8bit
    plain = inits(slow, False)
    for a, b in zip(fast, plain, strict=True):
        if space != "HSV":  # HSV is matched in float (its circular hue cut)
            assert torch.equal(a, a.mul(255).round().div(255))
        differ = (a - b).abs().mul(255)
        # the warps round differently only at ties (a level apart); LAB's 8-bit round trip can widen a tie's level
        assert differ.mean() < 0.01 and differ.max() <= (40.0 if space == "LAB" else 1.0 + 1e-3)
    floats = inits(_step(False, coherence_space=space), False)
    assert any(not torch.equal(a, a.mul(255).round().div(255)) for a in floats)  # off: float inits as before


def test_a_run_from_before_frames_8bit_resumes_in_float(tmp_path) -> None:
    """A settings.json without animation.frames_8bit (a run started before it existed) resumes with it off: the
    frames after the resume are made as the first ones were."""
    import json

    from discolib.run import loop
    from discolib.run.runs import RunFolder

    s = _step(True).plan.settings
    s.set("run.output_root", str(tmp_path))
    s.set("output.make_video", False)
    data = s.to_dict()
    del data["animation"]["frames_8bit"]
    folder = RunFolder.create(tmp_path, "old", json.dumps(data))
    used, _folder, _record, _start, lock = loop._prepare(s, None, folder.path)
    lock.release()
    assert used.animation.frames_8bit is False


def test_the_loop_hands_over_the_bytes_the_step_would_make() -> None:
    """The step's 8-bit path warps the loop's array when it gets it, else converts the frame itself: both the same
    bytes (so a resume, which has no array, continues exactly)."""
    from discolib.run.runs import PendingFrame

    for seed in range(3):
        frame = _photo(32, seed)
        noisy = frame + 0.3 / 255 * torch.randn(frame.shape, generator=torch.Generator().manual_seed(seed))
        for image in (frame, noisy.clamp(0, 1)):
            np.testing.assert_array_equal(PendingFrame.from_image(image), to_u8(image))
