"""The cadence frame-to-frame profile (issue 13, point 1): how much each written frame changes from the one before.

With cadence 3 and no blending (discolib before issue 13: in-between frames are plain warps of the last diffused
frame), the change is small between diffused frames and jumps on each one; Deforum's tween blending and Disco's
turbo blend the previous and the next diffused frames, both warped, so the change is even. This script renders:

* the ``tiny-latent`` (Deforum policy) and ``tiny`` (Disco policy) presets, 2D and 3D, with their random tiny
  models, cadence 3, 12 frames, 64x64, before (no blending) and after (the originals' blending);
* the same motion with a synthetic "sampler" in place of the random models (the init half kept, half a fresh
  random texture per diffused frame, as img2img at strength 0.5 adds new detail); the tiny random models' outputs
  are close to noise and hide the profile.

and prints the mean absolute change per frame in 0-255 levels, marking diffused frames with ``*``, and writes
``benchmarks/results/cadence_profile.json``.

Run: ``HF_HUB_OFFLINE=1 python benchmarks/cadence_profile.py`` (CPU: a few minutes on 2 cores, most of it the guided tiny model).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from discolib.animation.plan import RenderPlan
from discolib.animation.step import AnimationStep, quantize
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.models.load import load_depth_estimator
from discolib.run.adapter import build_sampler
from discolib.run.loop import frame_request

N_FRAMES, CADENCE = 12, 3
OUT = Path(__file__).parent / "results" / "cadence_profile.json"


class NoBlendStep(AnimationStep):
    """discolib before issue 13: every written frame is the newer chain alone (the last diffused frame, warped)."""

    def _blend(self, i: int) -> torch.Tensor:
        assert self._new is not None
        return self._new


def settings_for(mode: str, animation: str) -> Settings:
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    for key, value in {
        "cadence": CADENCE,
        "max_frames": N_FRAMES,
        "turbo_preroll": 3,  # Disco's 10 would cover the whole short run
        "color_coherence": "None",
        "display_rate": 0,
        "models.random_weights": True,
    }.items():
        s.set(key, value)
    return s


def synthetic_sampler(h: int, w: int) -> Callable[[int, torch.Tensor | None], torch.Tensor]:
    def sample(i: int, init: torch.Tensor | None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1000 + i)
        texture = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=gen), size=(h, w), mode="bilinear")
        return texture if init is None else 0.5 * init + 0.5 * texture

    return sample


def profile(mode: str, animation: str, *, blend: bool, synthetic: bool, cache: dict) -> dict:
    s = settings_for(mode, animation)
    plan = RenderPlan.from_settings(s)
    device = torch.device("cpu")
    if mode not in cache:
        cache[mode] = build_sampler(s, progress=False)
    sampler = cache[mode]
    depth = None
    if animation == "3D":
        if "depth" not in cache:
            cache["depth"] = load_depth_estimator(s.models.depth_model, device, random_ok=True)
        depth = cache["depth"]
    step = (AnimationStep if blend else NoBlendStep)(plan, sampler.policy, device, depth=depth)
    fake = synthetic_sampler(s.image.height, s.image.width)
    frames = []
    t0 = time.perf_counter()
    for i in range(plan.n_frames):
        fi = step.first() if i == 0 else step(i)
        if fi.final:
            sample = fi.image
        elif synthetic:
            sample = fake(i, fi.image)
        else:
            sample = sampler(frame_request(plan, i, fi))
        frames.append(step.finish(i, sample))
    change = [round(float((quantize(b) - quantize(a)).abs().mean() * 255), 2) for a, b in zip(frames[:-1], frames[1:], strict=True)]
    return {
        "mode": mode,
        "animation": animation,
        "blend": blend,
        "sampler": "synthetic" if synthetic else "tiny random model",
        "diffused": [i for i, d in enumerate(step.diffused) if d],
        "change_per_frame": change,  # change[j]: frame j+1 against frame j
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> int:
    torch.manual_seed(0)
    cache: dict = {}
    results = []
    for synthetic in (True, False):
        for mode in ("latent", "guided"):
            for animation in ("3D", "2D"):
                for blend in (False, True):
                    r = profile(mode, animation, blend=blend, synthetic=synthetic, cache=cache)
                    results.append(r)
                    marks = " ".join(f"{c:5.1f}{'*' if j + 1 in r['diffused'] else ' '}" for j, c in enumerate(r["change_per_frame"]))
                    tail = r["change_per_frame"][CADENCE - 1 :]  # past the first window
                    label = f"{r['sampler']:18s} {mode:6s} {animation} {'after ' if blend else 'before'}"
                    print(f"{label}: {marks}   (frames {CADENCE}+: {min(tail):.1f}-{max(tail):.1f})")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"n_frames": N_FRAMES, "cadence": CADENCE, "runs": results}, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
