"""Cadence / turbo blending (issue 13, point 1) and the colour coherence reference (point 4), against the originals'
loops re-derived here: deforum-stable-diffusion's render_animation tween loop (turbo_prev / turbo_next) and Disco
v5.7's do_run turbo (prevFrame / prevFrameScaled / oldFrameScaled, blend_factor). The step's own warp is the
warp of both references (the warp is tested in test_motion.py); what is pinned here is which image is warped with
which depth, which frames are blended with which weights and where each diffusion starts from. Resume replays
are checked at every frame, in and out of cadence windows, and end to end with a run folder.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from discolib.animation.plan import RenderPlan
from discolib.animation.policy import GUIDED_POLICY, LATENT_POLICY, AnimationPolicy
from discolib.animation.step import AnimationStep, quantize
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings

H = W = 24
Sampler = Callable[[int, "torch.Tensor | None"], torch.Tensor]


def settings(mode: str, animation: str, **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    base = {"width": W, "height": H, "color_coherence": "None", "noise_schedule": "0: (0)", "antiblur_amount": "0: (0)",
            "contrast_schedule": "0: (1)", "run.seed": 3, "translation_x": "0: (2)", "zoom": "0: (1.05)",
            "angle": "0: (3)", "translation_z": "0: (3)", "rotation_3d_y": "0: (2)"}
    for k, v in {**base, **overrides}.items():
        s.set(k, v)
    return s


def depth_fn(image: torch.Tensor) -> torch.Tensor:
    """An image-dependent depth in [1, 2]: which image a warp takes its depth from changes the result."""
    return 1.0 + image.mean(dim=1, keepdim=True)


class Step(AnimationStep):
    """The step with :func:`depth_fn` as its depth (from construction on: a resume replays warps there)."""

    def depth_of(self, image: torch.Tensor) -> torch.Tensor:
        return depth_fn(image)


def make_step(s: Settings, policy: AnimationPolicy, **kw: object) -> AnimationStep:
    return Step(RenderPlan.from_settings(s), policy, torch.device("cpu"), **kw)  # type: ignore[arg-type]


def synthetic_sampler(uses_init: bool) -> Sampler:
    """A stand-in for the sampler: a fixed random pattern per frame, mixed with the init when ``uses_init``; 8-bit
    like a written sample, so float and quantised chains start from the same image."""

    def sample(i: int, init: torch.Tensor | None) -> torch.Tensor:
        pattern = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(100 + i))
        return quantize(pattern if init is None or not uses_init else 0.5 * init + 0.5 * pattern)

    return sample


class DictStore:
    """A :class:`~discolib.animation.step.FrameStore` in memory."""

    def __init__(self, kept: dict[str, torch.Tensor]) -> None:
        self.kept = kept

    def save(self, name: str, image: torch.Tensor) -> None:
        self.kept[name] = image.clone()

    def load(self, name: str) -> torch.Tensor | None:
        return self.kept.get(name)


def drive(step: AnimationStep, sampler: Sampler, start: int, n: int, inits: dict | None = None) -> dict[int, torch.Tensor]:
    """The render loop's use of the step: frame -> written frame."""
    out = {}
    for i in range(start, n):
        fi = step.first() if i == 0 else step(i)
        if inits is not None and not fi.final and fi.image is not None:
            inits[i] = fi.image
        out[i] = step.finish(i, fi.image if fi.final else sampler(i, fi.image))
    return out


def dsd_reference(n: int, c: int, sampler: Sampler, warp: Callable, inits: dict) -> dict[int, torch.Tensor]:
    """deforum-stable-diffusion's render_animation, re-derived: the tween loop writes frames [f - c, f) before frame
    f is diffused; both chains take the depth of turbo_next_image; it drops the last window, so run one window past
    ``n``."""
    written: dict[int, torch.Tensor] = {}
    prev_img = next_img = prev_sample = None
    prev_idx = next_idx = 0
    f = 0
    while f < (n + c if c > 1 else n):
        if c > 1:
            lo = max(0, f - c)
            for t in range(lo, min(f, n)):
                tween = (t - lo + 1) / (f - lo)
                advance_prev = prev_img is not None and t > prev_idx
                advance_next = t > next_idx
                depth = depth_fn(next_img)
                if advance_prev:
                    prev_img = warp(t, prev_img, depth=depth)[0]
                if advance_next:
                    next_img = warp(t, next_img, depth=depth)[0]
                prev_idx = next_idx = t
                written[t] = prev_img * (1.0 - tween) + next_img * tween if prev_img is not None and tween < 1.0 else next_img
            if next_img is not None:
                prev_sample = next_img
        if f >= n:  # the extra window's frames are written: its own diffusion is not needed
            break
        init = None if prev_sample is None else warp(f, prev_sample, depth=depth_fn(prev_sample))[0]
        if init is not None and c == 1:
            init = quantize(init)  # without cadence prev_img is uint8 (sample_to_cv2), and so is its warp
        if init is not None:
            inits[f] = init
        sample = sampler(f, init)
        prev_sample = sample
        if c > 1:
            prev_img, prev_idx = next_img, next_idx
            next_img, next_idx = sample, f
            f += c
        else:
            written[f] = sample
            f += 1
    return {i: written[i] for i in range(n)}


def disco_reference(n: int, c: int, preroll: int, sampler: Sampler, warp: Callable, inits: dict) -> dict[int, torch.Tensor]:
    """Disco v5.7's do_run (3D, turbo_mode on), re-derived: every image between frames is a PNG file (8-bit); each
    do_3d_step takes the depth of the image it warps; cv2.addWeighted blends (rounded)."""
    q = quantize
    written: dict[int, torch.Tensor] = {}
    prev_frame = old = scaled = None
    for f in range(n):
        init = None
        if f > 0:
            scaled = q(warp(f, prev_frame, depth=depth_fn(prev_frame))[0])  # prevFrameScaled.png
            if f == preroll:
                old = scaled
            elif f > preroll:
                old = q(warp(f, old, depth=depth_fn(old))[0])
                if f % c != 0:
                    bf = ((f % c) + 1) / c
                    written[f] = q(scaled * bf + old * (1 - bf))
                    prev_frame = scaled
                    continue
                old = scaled
            init = scaled
            inits[f] = init
        d = sampler(f, init)
        prev_frame = d
        written[f] = q(d * (1 / c) + scaled * (1 - 1 / c)) if f > 0 else d
    return written


def assert_frames_close(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for i in want:
        diff = (got[i] - quantize(want[i])).abs()
        # Same warps, same weights; only float summation order differs, which can flip a rounding by one level.
        assert diff.max().item() <= 1 / 255 + 1e-6 and (diff > 0).float().mean().item() < 0.02, f"frame {i}"


@pytest.mark.parametrize("animation", ["2D", "3D"])
@pytest.mark.parametrize("cadence", [1, 2, 3])
def test_latent_cadence_is_deforums_tween_loop(animation: str, cadence: int) -> None:
    n = 10
    s = settings("latent", animation, cadence=cadence, max_frames=n)
    step = make_step(s, LATENT_POLICY)
    # 3D fills disocclusions with noise before sampling: there the synthetic sampler ignores its init.
    sampler = synthetic_sampler(uses_init=animation == "2D")
    got_inits: dict = {}
    ref_inits: dict = {}
    got = drive(step, sampler, 0, n, got_inits)
    want = dsd_reference(n, cadence, sampler, step.warp, ref_inits)
    assert_frames_close(got, want)
    if animation == "2D":  # each diffusion starts from the newer chain, never from a blended frame
        assert sorted(got_inits) == sorted(ref_inits) == [k for k in range(1, n) if k % cadence == 0]
        for k in got_inits:
            torch.testing.assert_close(got_inits[k], ref_inits[k].clamp(0, 1))


@pytest.mark.parametrize("animation", ["2D", "3D"])
@pytest.mark.parametrize(("cadence", "preroll"), [(3, 2), (3, 4), (2, 1)])
def test_guided_cadence_is_discos_turbo(animation: str, cadence: int, preroll: int) -> None:
    n = 10
    s = settings("guided", animation, cadence=cadence, turbo_preroll=preroll, max_frames=n)
    step = make_step(s, GUIDED_POLICY)
    sampler = synthetic_sampler(uses_init=True)
    got_inits: dict = {}
    ref_inits: dict = {}
    got = drive(step, sampler, 0, n, got_inits)
    want = disco_reference(n, cadence, preroll, sampler, step.warp, ref_inits)
    assert_frames_close(got, want)
    assert sorted(got_inits) == sorted(ref_inits)
    for k in got_inits:
        torch.testing.assert_close(got_inits[k], ref_inits[k])


def test_depth_source_matters_in_3d() -> None:
    """The two policies' depth choices give different frames (the references above tell which is which)."""
    s = settings("latent", "3D", cadence=3, max_frames=8)
    sampler = synthetic_sampler(uses_init=False)
    a = drive(make_step(s, LATENT_POLICY), sampler, 0, 8)
    own = AnimationPolicy(**{**LATENT_POLICY.__dict__, "blend_depth": "own"})
    b = drive(make_step(s, own), sampler, 0, 8)
    assert torch.equal(a[2], b[2])  # first window: one chain, its own depth in both
    assert not torch.equal(a[4], b[4])


def test_cadence_smooths_the_frame_to_frame_change() -> None:
    """Frames that change 8-9 levels in between and jump on every diffused frame without blending change evenly
    with it (issue 13: Deforum 12-17 throughout)."""
    n, s = 12, settings("latent", "2D", cadence=3, max_frames=12, zoom="0: (1)", angle="0: (0)", translation_x="0: (1)")
    sampler = synthetic_sampler(uses_init=True)
    frames = drive(make_step(s, LATENT_POLICY), sampler, 0, n)
    change = [((frames[i] - frames[i - 1]).abs().mean() * 255).item() for i in range(4, n)]
    # Without blending: frame i in a window is a pure warp of the keyframe, so k -> k+1 changes little and
    # k+2 -> k+3 carries the whole new sample. Blending spreads it: no step is more than twice another.
    assert max(change) < 2.5 * min(change)


@pytest.mark.parametrize(("mode", "animation", "policy"), [("latent", "3D", LATENT_POLICY), ("guided", "3D", GUIDED_POLICY),
                                                           ("latent", "2D", LATENT_POLICY)])
def test_resume_at_every_frame_replays_the_chains(mode: str, animation: str, policy: AnimationPolicy) -> None:
    n = 9
    s = settings(mode, animation, cadence=3, turbo_preroll=1, max_frames=n, color_coherence="LAB")
    sampler = synthetic_sampler(uses_init=animation == "2D")
    kept: dict[str, torch.Tensor] = {}
    whole = drive(make_step(s, policy, store=DictStore(kept)), sampler, 0, n)
    for i, frame in whole.items():
        kept[f"frames/{i:06d}"] = frame
    for start in range(1, n):
        step = make_step(s, policy, start=start, store=DictStore(kept))
        assert step.start == start
        again = drive(step, sampler, start, n)
        for i in range(start, n):
            assert torch.equal(again[i], whole[i]), f"resume at {start}: frame {i}"
    # A missing sample: the resume goes back to the diffused frame that made it and still matches.
    del kept["diffused/000003"]
    step = make_step(s, policy, start=5, store=DictStore(kept))
    assert step.start == 3
    again = drive(step, sampler, 3, n)
    assert all(torch.equal(again[i], whole[i]) for i in range(3, n))


def test_color_reference_is_the_first_warped_init_deforum() -> None:
    """deforum-stable-diffusion: color_match_sample = the first warped previous frame (before contrast and noise,
    not matched itself); later inits are matched to it."""
    for cadence in (1, 3):
        s = settings("latent", "2D", cadence=cadence, max_frames=7, color_coherence="RGB")
        kept: dict[str, torch.Tensor] = {}
        step = make_step(s, LATENT_POLICY, store=DictStore(kept))
        sampler = synthetic_sampler(uses_init=True)
        inits: dict = {}
        drive(step, sampler, 0, 7, inits)
        first = cadence  # the first diffused frame after 0
        assert torch.equal(kept["color_ref"], step.color_ref)
        # Its init is the reference itself (unmatched); the next diffused frame's init is matched (changed).
        assert torch.equal(quantize(inits[first]), step.color_ref)
        s_plain = settings("latent", "2D", cadence=cadence, max_frames=7)
        plain_inits: dict = {}
        drive(make_step(s_plain, LATENT_POLICY), sampler, 0, 7, plain_inits)
        torch.testing.assert_close(inits[first], plain_inits[first])
        assert not torch.allclose(inits[2 * first], plain_inits[2 * first])


def test_color_reference_webui_is_frame_0_and_rematches_outputs() -> None:
    s = settings("latent", "2D", max_frames=4, color_coherence="RGB", color_coherence_reference="webui")
    step = make_step(s, LATENT_POLICY)
    sampler = synthetic_sampler(uses_init=True)
    frames = drive(step, sampler, 0, 4)
    assert torch.equal(step.color_ref, frames[0])  # frame 0 had no init: its sample is the reference
    raw = sampler(1, None)
    assert not torch.equal(frames[1], raw)
    # Re-matched after sampling: each channel's values have frame 0's distribution (RGB histogram match).
    for ch in range(3):
        a = np.sort(frames[2][0, ch].flatten().numpy())
        b = np.sort(frames[0][0, ch].flatten().numpy())
        assert np.abs(a - b).mean() < 2 / 255


@pytest.mark.slow
def test_stopped_and_cut_cadence_run_resumes_byte_identically(tmp_path: Path) -> None:
    """End to end: a cadence 3 run cut inside a window (frames 0..4 of 0..8 kept, as a kill leaves it) resumes
    byte-identically, also when the kept sample of frame 3 is gone; a stop event leaves a resumable run too."""
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    for k, v in {"cadence": 3, "max_frames": 8, "make_video": False, "display_rate": 0, "steps": 4}.items():
        s.set(k, v)
    whole = render(s, out=tmp_path / "whole", progress=False)
    want = [p.read_bytes() for p in whole.frames]
    assert sorted(p.name for p in (whole.run_dir / "kept" / "diffused").iterdir()) == ["000000.png", "000003.png", "000006.png"]

    for cut, drop in ((5, None), (5, "000003.png"), (4, None)):
        run = RunFolder(tmp_path / f"cut{cut}{drop}")
        shutil.copytree(whole.run_dir, run.path)
        for i in range(cut, 8):
            run.frame_path(i).unlink()
        if drop:
            (run.path / "kept" / "diffused" / drop).unlink()
        rec = run.read_record()
        rec.status, rec.frames_done, rec.seeds, rec.frame_sha256 = "interrupted", cut, rec.seeds[:cut], rec.frame_sha256[:cut]
        run.write_record(rec)
        if drop:  # the kept sample is gone: the resume warns and starts at the diffused frame that made it
            with pytest.warns(UserWarning, match="rendering again from frame 3 instead of 5"):
                again = render(s, resume=run.path, progress=False)
        else:
            again = render(s, resume=run.path, progress=False)
        assert again.status == "done"
        assert [run.frame_path(i).read_bytes() for i in range(8)] == want, (cut, drop)

    stop = threading.Event()
    first = render(s, out=tmp_path / "stopped", progress=False, stop=stop,
                   callback=lambda e: stop.set() if e.kind == "step" and e.frame == 3 else None)
    assert first.status == "stopped"  # at frame 3's first step: frames 0-2 written
    assert RunFolder.open(first.run_dir).complete_frames() == list(range(3))
    second = render(s, resume=first.run_dir, progress=False)
    assert [p.read_bytes() for p in sorted((second.run_dir / "frames").glob("*.png"))] == want
