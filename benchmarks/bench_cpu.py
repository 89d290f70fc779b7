"""``cpu``: the parts of the frame loop that are not models.

* the 3D warp (:func:`discolib.animation.motion.reproject_3d`) of one frame at 512² and 1024² with random depth in Deforum's
  ``[1, 2]`` range, ``depth_refinement_steps`` 0 and 1, bicubic (the settings' default) and bilinear sampling;
* :func:`discolib.animation.plan.evaluate_schedules` of every animation schedule of the Deforum (latent) defaults for
  10 000 frames;
* the per-frame overhead of :func:`discolib.run.loop.render` outside the models: a 2D animation whose sampler returns
  its init image unchanged, so what is timed is the loop itself (schedules lookup, 2D warp, colour match, noise,
  8-bit hand-off, PNG write, run record); plus those steps one by one.

It runs on ``ctx.device`` (the render loop follows its sampler's device), so ``--device cuda`` gives the same
figures for the GPU.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
from bench_common import BenchContext, BenchResult, median, time_call

from discolib.animation import coherence, motion
from discolib.animation.plan import evaluate_schedules
from discolib.animation.policy import GUIDED_POLICY
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.io.files import save_png_atomic
from discolib.run.events import RenderEvent
from discolib.run.loop import render
from discolib.samplers.base import FrameRequest

__all__ = ["EchoSampler", "run"]


class EchoSampler:
    """A stand-in sampler with no model: returns the request's init (frame 0: seeded uniform noise).

    Satisfies :class:`discolib.samplers.base.FrameSampler`; images are ``(1, 3, H, W)`` in ``[0, 1]`` on ``device``.
    """

    policy = GUIDED_POLICY  # chains frames as Disco's guided sampler does (no added noise)

    def __init__(self, width: int, height: int, device: torch.device) -> None:
        self.width, self.height, self.device = width, height, device
        self.calls = 0

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        self.calls += 1
        if request.init is not None:
            return request.init
        gen = torch.Generator("cpu").manual_seed(request.seed)
        return torch.rand(1, 3, self.height, self.width, generator=gen).to(self.device)


def _random_frame(size: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 3, S, S)`` image in [0, 1] and a smooth-ish ``(1, 1, S, S)`` depth in [1, 2]."""
    gen = torch.Generator("cpu").manual_seed(seed)
    image = torch.rand(1, 3, size, size, generator=gen)
    # Low-frequency depth (upsampled 16x16 noise): refinement iterations behave as on real depth maps.
    coarse = torch.rand(1, 1, 16, 16, generator=gen)
    depth = 1.0 + torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return image.to(device), depth.to(device)


def _bench_warp(ctx: BenchContext, result: BenchResult) -> None:
    sizes = (64, 128) if ctx.smoke else (512, 1024)
    rot = torch.tensor([[0.5, 1.0, 0.3]], device=ctx.device)
    trans = torch.tensor([[2.0, -1.0, 10.0]], device=ctx.device)
    for size in sizes:
        image, depth = _random_frame(size, ctx.device)
        modes = ("bicubic", "bilinear") if size == sizes[0] else ("bicubic",)
        for sampling in modes:
            for refine in (0, 1):

                def warp(image: torch.Tensor = image, depth: torch.Tensor = depth, sampling: str = sampling, refine: int = refine) -> None:
                    motion.reproject_3d(
                        image, depth, rot, trans, fov_deg=40.0, padding_mode="border",
                        sampling_mode=sampling, depth_refinement_steps=refine,  # type: ignore[arg-type]
                    )

                with torch.inference_mode():
                    ms = time_call(warp, ctx, warmup=max(ctx.warmup, 1), repeats=max(ctx.repeats, 5 if ctx.quick else 9))
                result.add(
                    f"warp3d_{size}_{sampling}_refine{refine}", median(ms), "ms/frame",
                    f"reproject_3d {size}x{size} RGB, {sampling}, depth_refinement_steps={refine}", ms,
                )


def _bench_schedules(ctx: BenchContext, result: BenchResult) -> None:
    n = 500 if ctx.smoke else 10_000
    settings = Settings.defaults("latent", "3D")
    # Warm the parser once, then time full evaluations (each parses every schedule again, as a new run does).
    ms = time_call(lambda: evaluate_schedules(settings, n, 42), ctx, warmup=1, repeats=max(3, min(ctx.repeats, 5)))
    values = evaluate_schedules(settings, n, 42)
    result.add(
        f"schedules_{n}_frames", median(ms), "ms",
        f"evaluate_schedules, {len(values)} schedules of the Deforum defaults, {n} frames", ms,
    )
    result.add("schedules_per_frame", median(ms) * 1000.0 / n, "us/frame", f"the same, per frame ({n} frames)")


def _tiny_2d_settings(size: int, frames: int, out: Path) -> Settings:
    s = apply_preset(Settings.defaults("latent", "2D"), "tiny-latent")
    s.set("image.width", size)
    s.set("image.height", size)
    s.set("animation.max_frames", frames)
    s.set("animation.zoom", "0: (1.01)")
    s.set("animation.angle", "0: (0.5)")
    s.set("output.make_video", False)
    s.set("run.output_root", str(out))
    return s


def _bench_render_overhead(ctx: BenchContext, result: BenchResult) -> None:
    size = 64 if ctx.smoke else 512
    frames = 6 if ctx.smoke else (12 if ctx.quick else 24)
    stamps: list[float] = []

    def on_event(event: RenderEvent) -> None:
        if event.kind == "frame":
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="discolib-bench-") as tmp:
        settings = _tiny_2d_settings(size, frames, Path(tmp))
        sampler = EchoSampler(size, size, ctx.device)
        t0 = time.perf_counter()
        settings.set("models.threads", torch.get_num_threads())  # the count the benchmark runs at, not auto
        render(settings, callback=on_event, progress=False, sampler=sampler)
        total = (time.perf_counter() - t0) * 1000.0
    # Intervals between written frames: the steady-state cost of one frame (frame 0 has no warp; the first
    # intervals also pay one-off imports and allocations).
    intervals = [(b - a) * 1000.0 for a, b in zip(stamps, stamps[1:], strict=False)]
    steady = intervals[2:] if len(intervals) > 4 else intervals
    note = f"render() 2D {size}x{size}, {frames} frames, sampler returns its init; LAB colour match, noise, PNG"
    result.add(f"render_overhead_2d_{size}", median(steady), "ms/frame", note, steady)
    result.add(f"render_total_2d_{size}", total, "ms", f"whole render() call incl. run folder setup, {frames} frames")

    # The same steps one by one, to show where the overhead goes.
    # 8-bit-quantised frames, as the loop sees them (it continues from the frame it wrote).
    gen = torch.Generator("cpu").manual_seed(0)
    prev = torch.rand(1, 3, size, size, generator=gen).mul(255).round().div(255).to(ctx.device)
    ref = torch.rand(1, 3, size, size, generator=gen).mul(255).round().div(255).to(ctx.device)
    prepared = coherence.HistogramReference.prepare(ref, "LAB")
    parts = {
        "warp2d": lambda: motion.warp_2d(prev, 0.5, 1.01, 0.0, 0.0, sampling_mode="bicubic"),
        "match_histogram_lab": lambda: coherence.match_histogram(prev, ref, "LAB"),
        # What the render loop calls: frame 0's half of the work prepared once per run.
        "match_histogram_lab_prepared": lambda: coherence.match_histogram(prev, prepared, "LAB"),
        "add_noise": lambda: coherence.add_noise(prev, 0.02, "gaussian", torch.Generator("cpu").manual_seed(1)),
        "quantize_to_host": lambda: prev.clamp(0, 1).mul(255).round().to(torch.uint8).cpu(),
    }
    with torch.inference_mode():
        for name, fn in parts.items():
            ms = time_call(fn, ctx, warmup=max(ctx.warmup, 1), repeats=max(ctx.repeats, 5 if ctx.quick else 9))
            result.add(f"{name}_{size}", median(ms), "ms", f"{size}x{size}, one call", ms)
    with tempfile.TemporaryDirectory(prefix="discolib-bench-") as tmp:
        host = prev.cpu()
        ms = time_call(lambda: save_png_atomic(Path(tmp) / "f.png", host), ctx, warmup=1, repeats=max(ctx.repeats, 3))
    result.add(f"save_png_{size}", median(ms), "ms", f"{size}x{size} PNG encode + atomic write", ms)
    _bench_writer(ctx, result, size, prev)


def _bench_writer(ctx: BenchContext, result: BenchResult, size: int, frame: torch.Tensor) -> None:
    """Throughput of the background :class:`FrameWriter` (the ceiling it puts on a real-time loop's fps)."""
    import os

    from discolib.run.runs import FrameWriter, RunFolder

    n = 8 if ctx.smoke else 32
    array = frame[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    default = min(4, max(1, (os.cpu_count() or 2) // 2))
    for encoders in sorted({1, 2, default}):
        rates = []
        for _ in range(max(1, min(ctx.repeats, 3))):
            with tempfile.TemporaryDirectory(prefix="discolib-bench-") as tmp:
                run = RunFolder.create(Path(tmp), "bench", "{}")
                writer = FrameWriter(run, run.read_record(), encoders=encoders)
                t0 = time.perf_counter()
                for i in range(n):
                    writer.submit(i, array, seed=i)
                writer.close()
                rates.append(n / (time.perf_counter() - t0))
        result.add(
            f"frame_writer_{size}_encoders{encoders}", median(rates), "frames/s",
            f"FrameWriter: {n} {size}x{size} uniform-noise PNGs (the slowest to encode) encoded and written atomically with the record, {encoders} encoder "
            f"thread(s){' (the default here)' if encoders == default else ''}", rates,
        )


def run(ctx: BenchContext) -> BenchResult:
    """Run the CPU-side benchmarks on ``ctx.device``."""
    result = BenchResult(
        "cpu",
        config={
            "device": str(ctx.device),
            "torch_threads": torch.get_num_threads(),
            "smoke": ctx.smoke,
            "warp_depth": "smooth random depth in [1, 2] (Deforum range)",
            "warp_motion": "rotation_3d (0.5, 1.0, 0.3) deg, translation (2, -1, 10) Deforum units, fov 40",
        },
    )
    _bench_warp(ctx, result)
    _bench_schedules(ctx, result)
    _bench_render_overhead(ctx, result)
    bad = [f.name for f in result.figures if not (math.isfinite(f.value) and f.value > 0)]
    if bad:
        raise RuntimeError(f"non-positive timings: {bad}")
    return result
