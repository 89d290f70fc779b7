"""``compare``: discolib's CPU stages side by side with what a Deforum user's frame runs for the same maths.

Each pair is timed interleaved (A, B, B, A, ... so drift and turbo affect both), after warm-up, at one thread and at
the default thread count (torch and OpenCV together), and reported as each side's median and the ratio
``discolib / reference`` (below 1: discolib is faster):

* ``warp2d_u8``: :func:`discolib.animation.motion.warp_2d_u8` of the uint8 frame a CPU render holds
  (``animation.frames_8bit``, the default), and ``warp2d``: :func:`discolib.animation.motion.warp_2d` of a
  ``(1, 3, H, W)`` float frame (bilinear and bicubic, replicate border; ``frames_8bit`` off, or a GPU), vs OpenCV's ``warpPerspective`` of the uint8 ``H x W x 3`` frame with Deforum's 2D matrix
  (``getRotationMatrix2D`` about the centre times a translation, ``INTER_LINEAR``, ``BORDER_REPLICATE``): each side
  warps the frame as its pipeline holds it.
* ``lab_match_u8``: :func:`discolib.animation.coherence.match_histogram_u8` (8-bit frames: Deforum's bytes) and
  ``lab_match``: :func:`discolib.animation.coherence.match_histogram` (float) with a prepared frame-0 reference vs
  Deforum's ``maintain_colors`` for "Match Frame 0 LAB": OpenCV uint8 RGB->LAB, ``skimage.exposure.
  match_histograms`` against frame 0's LAB, back to RGB.
* ``schedules``: :func:`discolib.animation.plan.evaluate_schedules`-style parsing and evaluation of 24 numeric
  keyframe strings over the frames vs the same keys parsed with a regular expression and filled with pandas'
  linear ``interpolate`` (what Deforum's ``get_inbetweens`` does for numeric keys, leaving out its per-frame numexpr
  evaluation, which would only make the reference slower).

The references are re-derived from what the originals do, not their code. Needs the ``bench`` extra (scikit-image,
pandas); a missing package skips its pair with the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from bench_common import BenchContext, BenchResult, median

from discolib.animation import coherence, motion
from discolib.schedules.keyframes import Schedule, _parse_keyframes_cached

__all__ = ["run", "interleaved"]

#: Deforum's default 2D motion for one frame (angle, zoom, translation in pixels).
MOTION = {"angle": 1.0, "zoom": 1.04, "tx": 2.0, "ty": 0.0}
_DEFAULT_TORCH_THREADS = torch.get_num_threads()
_DEFAULT_CV2_THREADS = cv2.getNumThreads()


def interleaved(a: Callable[[], Any], b: Callable[[], Any], *, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``repeats`` calls each of ``a`` and ``b``, alternating ABBA after ``warmup`` calls of each."""
    for _ in range(warmup):
        a()
        b()
    ta: list[float] = []
    tb: list[float] = []
    for k in range(repeats):
        order = ((a, ta), (b, tb)) if k % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000.0)
    return ta, tb


def _photo(size: int, seed: int = 0) -> torch.Tensor:
    """A photo-like ``(1, 3, size, size)`` frame in [0, 1], 8-bit quantised: smooth colour fields plus texture."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 8, generator=gen)
    smooth = torch.nn.functional.interpolate(base, size=(size, size), mode="bicubic", align_corners=False)
    texture = 0.08 * torch.randn(1, 3, size, size, generator=gen)
    return (smooth + texture).clamp(0, 1).mul(255).round().div(255)


def _to_u8(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


def _deforum_matrix(size: int) -> np.ndarray:
    """Deforum's 2D transform: rotation and zoom about the centre times a translation, as a 3x3 matrix."""
    rot = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), MOTION["angle"], MOTION["zoom"]), [0.0, 0.0, 1.0]])
    trans = np.array([[1.0, 0.0, MOTION["tx"]], [0.0, 1.0, MOTION["ty"]], [0.0, 0.0, 1.0]])
    return rot @ trans


def _pairs(size: int, n_frames: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], str]]:
    """name -> (discolib call, reference call, what is compared)."""
    frame, ref_frame = _photo(size, 0), _photo(size, 1)
    u8, ref_u8 = _to_u8(frame), _to_u8(ref_frame)
    pairs: dict[str, tuple[Callable[[], Any], Callable[[], Any], str]] = {}

    xform = _deforum_matrix(size)

    def ref_warp() -> Any:
        return cv2.warpPerspective(u8, xform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def ours_u8() -> Any:
        return motion.warp_2d_u8(u8, MOTION["angle"], MOTION["zoom"], MOTION["tx"], MOTION["ty"], padding_mode="replicate")

    # What a CPU render runs (animation.frames_8bit, the default): the frame as written, uint8, as Deforum's.
    pairs["warp2d_u8"] = (ours_u8, ref_warp, "warp_2d_u8 (8-bit frames, the render's CPU path) vs cv2.warpPerspective uint8 linear")
    for sampling in ("bilinear", "bicubic"):

        def ours(sampling: str = sampling) -> Any:
            return motion.warp_2d(
                frame, MOTION["angle"], MOTION["zoom"], MOTION["tx"], MOTION["ty"], padding_mode="replicate",
                sampling_mode=sampling,
            )

        pairs[f"warp2d_{sampling}"] = (ours, ref_warp, f"warp_2d {sampling} float vs cv2.warpPerspective uint8 linear")

    try:
        from skimage.exposure import match_histograms
    except ImportError as err:  # the bench extra is missing
        pairs["lab_match"] = (None, None, f"skipped: {err}")  # type: ignore[assignment]
    else:
        prepared = coherence.HistogramReference.prepare(ref_frame, "LAB")
        ref_lab = cv2.cvtColor(ref_u8, cv2.COLOR_RGB2LAB)

        def ref_match() -> Any:
            lab = cv2.cvtColor(u8, cv2.COLOR_RGB2LAB)
            matched = match_histograms(lab, ref_lab, channel_axis=-1)
            return cv2.cvtColor(np.clip(matched, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)

        prepared8 = coherence.HistogramReference8.prepare(ref_u8, "LAB")
        pairs["lab_match_u8"] = (
            lambda: coherence.match_histogram_u8(u8, prepared8),
            ref_match,
            "match_histogram_u8 LAB (8-bit frames, the render's CPU path; Deforum's bytes), prepared frame 0 vs cv2 "
            "LAB uint8 + skimage match_histograms",
        )
        pairs["lab_match"] = (
            lambda: coherence.match_histogram(frame, prepared, "LAB"),
            ref_match,
            "match_histogram LAB float (frames_8bit off), prepared frame 0 vs cv2 LAB uint8 + skimage match_histograms",
        )

    try:
        import pandas as pd
    except ImportError as err:
        pairs["schedules"] = (None, None, f"skipped: {err}")  # type: ignore[assignment]
    else:
        strings = [f"0: ({1 + k / 100}), {n_frames // 3}: ({k / 10}), {2 * n_frames // 3}: (-{k})" for k in range(24)]
        key_re = re.compile(r"\s*([\d.]+)\s*:\s*\(([^)]*)\)\s*,?")

        def ours_sched() -> Any:
            return [Schedule.parse(s, setting="bench").values(n_frames) for s in strings]

        def ref_sched() -> Any:
            out = []
            for s in strings:
                series = pd.Series(np.nan, index=range(n_frames), dtype="float64")
                for m in key_re.finditer(s):
                    series[int(float(m.group(1)))] = float(m.group(2))
                out.append(series.interpolate(method="linear", limit_direction="both").to_numpy())
            return out

        # A cold parse each time, as the reference's: discolib caches parsed strings (an LRU of 64), so clear it.
        def ours_cold() -> Any:
            _parse_keyframes_cached.cache_clear()
            return ours_sched()

        pairs["schedules"] = (ours_cold, ref_sched, f"24 keyframe strings x {n_frames} frames vs regex + pandas interpolate")
    return pairs


def _set_threads(n: int | None) -> None:
    torch.set_num_threads(n or _DEFAULT_TORCH_THREADS)
    cv2.setNumThreads(n or _DEFAULT_CV2_THREADS)


def run(ctx: BenchContext) -> BenchResult:
    """Time every pair at 512^2 and 1024^2 (``--quick``: 512^2; ``--smoke``: 64^2), one thread and default threads."""
    if ctx.cuda:
        return BenchResult("compare", skipped="CPU stages against CPU references: run with --device cpu")
    sizes = (64,) if ctx.smoke else (512,) if ctx.quick else (512, 1024)
    n_frames = 200 if ctx.smoke else 10_000
    repeats = max(ctx.repeats, 3) if ctx.smoke else max(ctx.repeats, 15)
    result = BenchResult(
        "compare",
        config={
            "sizes": list(sizes),
            "repeats": repeats,
            "threads": {"one": 1, "default": {"torch": _DEFAULT_TORCH_THREADS, "opencv": _DEFAULT_CV2_THREADS}},
            "motion": MOTION,
            "opencv": cv2.__version__,
        },
    )
    for threads, label in ((1, "1t"), (None, "default")):
        _set_threads(threads)
        try:
            for size in sizes:
                for name, (ours, ref, what) in _pairs(size, n_frames).items():
                    if ours is None:
                        result.config[f"{name}_skipped"] = what
                        continue
                    if name == "schedules" and size != sizes[0]:
                        continue  # independent of the frame size
                    a, b = interleaved(ours, ref, warmup=max(ctx.warmup, 2), repeats=repeats)
                    tag = f"{name}_{size}_{label}" if name != "schedules" else f"{name}_{label}"
                    note = f"{what}; {size}x{size}; threads {label}" if name != "schedules" else f"{what}; threads {label}"
                    result.add(f"{tag}_discolib", median(a), "ms", note, a)
                    result.add(f"{tag}_reference", median(b), "ms", note, b)
                    result.add(f"{tag}_ratio", median(a) / median(b), "x", "discolib / reference (< 1: discolib faster)")
        finally:
            _set_threads(None)
    return result
