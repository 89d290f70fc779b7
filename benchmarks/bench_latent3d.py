"""``latent3d``: the Deforum-style 3D animation frame with a 1-step sd-turbo-architecture img2img.

Each frame runs the render loop's own parts -- the run's :class:`~discolib.animation.plan.RenderPlan`, the real
:class:`~discolib.animation.step.AnimationStep` and a real :class:`~discolib.samplers.latent.LatentSampler` given
the benchmark's components, the request built by :func:`discolib.run.loop.frame_request` -- with timing marks
around its stages (wrappers on the step's depth model, ``warp`` and ``coherence``, hooks on the sampler's modules):

1. schedules: the step reading this frame's planned values (all evaluated once, before the loop);
2. depth: Depth-Anything-V2-Small architecture (:class:`discolib.models.depth.TransformersDepth`);
3. warp3d: ``normalize_depth`` + :func:`discolib.animation.motion.reproject_3d` (bicubic, border: the defaults);
4. coherence: LAB histogram match to frame 0, fresh noise in disoccluded pixels, Deforum's 0.02 noise;
5. sample: the sampler, 2 Euler steps at strength 0.5 = one UNet call (sd-turbo's img2img recipe), cfg 0, split by
   module hooks into ``vae_encode``, ``unet``, ``vae_decode`` and ``sample_other`` (scheduler, init checks, noise);
6. handoff: 8-bit quantisation on the device and the copy of the uint8 frame to the host (what a PNG writer or a
   live viewer needs); the next frame continues from the quantised frame, as :func:`render` does.

Models have random weights built from the published configs in :mod:`discolib.models.archs` (no network; checked
against the config.json files of stabilityai/sd-turbo, madebyollin/taesd and Depth-Anything-V2-Small-hf). Two
decoders: AutoencoderTiny (TAESD) and the full AutoencoderKL (SD VAE). The text encoder is a small stand-in with
SD 2.x's 1024-wide output: prompt embeddings are cached per text, so it is not part of a frame.

Besides the per-stage figures (each frame waits for the device at its end), ``*_fps_pipelined`` runs frames back to
back with one wait at the end, as :func:`render` does, and on CUDA ``*_host_syncs_per_frame`` counts what
``torch.cuda.set_sync_debug_mode`` reports during one frame.

Also times one real :func:`discolib.run.loop.render` of the ``tiny-latent`` preset in 3D for the end-to-end loop cost
around (tiny) models: run folder, PNG writes, run record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from bench_common import BenchContext, BenchResult, StageTimer, median, sync
from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from discolib.animation.plan import RenderPlan
from discolib.animation.step import AnimationStep
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.models.archs import LATENT_ARCHS, LATENT_SCHEDULERS, SD_VAE
from discolib.models.depth import (
    TransformersDepth,
    random_depth_anything_small,
)
from discolib.models.device import upload
from discolib.models.latent import TINY_TOKENIZER_DIR, LatentComponents, enable_fast_paths
from discolib.run.adapter import latent_config
from discolib.run.events import RenderEvent
from discolib.run.loop import frame_request, render
from discolib.run.runs import PendingFrame
from discolib.samplers.latent import LatentRequest, LatentSampler, sample_latent

__all__ = [
    "SD_TURBO_SCHEDULER_CONFIG",
    "SD_TURBO_UNET_CONFIG",
    "SD_VAE_CONFIG",
    "TAESD_CONFIG",
    "build_depth",
    "build_latent_components",
    "run",
]

# The architectures come from discolib.models.archs (the configs models.random_weights uses), so the benchmark measures
# exactly what a random-weight GPU run would load. They are written from memory of the published config.json files.
SD_TURBO_UNET_CONFIG: dict[str, Any] = LATENT_ARCHS["sd-turbo"][0]
SD_TURBO_SCHEDULER_CONFIG: dict[str, Any] = LATENT_SCHEDULERS["sd-turbo"]
SD_VAE_CONFIG: dict[str, Any] = SD_VAE
TAESD_CONFIG: dict[str, Any] = {}  # AutoencoderTiny's defaults are TAESD's architecture

PROMPT = "a lighthouse in a stormy sea, oil painting"


def _seeded(seed: int) -> Any:
    torch.manual_seed(seed)
    return seed


def build_latent_components(
    device: torch.device, dtype: torch.dtype, *, unet: UNet2DConditionModel | None = None, vae: str = "taesd"
) -> LatentComponents:
    """sd-turbo-architecture components with random weights (``vae``: ``"taesd"`` or ``"kl"``)."""
    built: list[torch.nn.Module] = []
    with torch.random.fork_rng(devices=[]), torch.device(device):
        if unet is None:
            _seeded(0)
            unet = UNet2DConditionModel(**SD_TURBO_UNET_CONFIG)
            built.append(unet)
        _seeded(1)
        vae_model: AutoencoderKL | AutoencoderTiny = (
            AutoencoderTiny(**TAESD_CONFIG) if vae == "taesd" else AutoencoderKL(**SD_VAE_CONFIG)
        )
        tokenizer = CLIPTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))
        _seeded(2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=1024,  # SD 2.x's cross-attention width; depth 1: embeddings are cached per prompt
                intermediate_size=256,
                num_hidden_layers=1,
                num_attention_heads=16,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    for m in (*built, vae_model, text_encoder):
        # Cast only when needed: diffusers warns on a dtype .to() of a model already in that dtype.
        m.to(device=device) if next(m.parameters()).dtype == dtype else m.to(device=device, dtype=dtype)
        m.eval().requires_grad_(False)
    return LatentComponents(
        unet=unet,
        vae=vae_model,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler_config=dict(SD_TURBO_SCHEDULER_CONFIG),
        name=f"sd-turbo architecture + {vae} (random weights)",
    )


def build_depth(device: torch.device, dtype: torch.dtype, input_size: int | None) -> TransformersDepth:
    """Depth-Anything-V2-Small architecture with random weights, through discolib's TransformersDepth."""
    return random_depth_anything_small(device, dtype, input_size=input_size)


@contextmanager
def _module_stages(timer: StageTimer, modules: dict[str, torch.nn.Module | None]) -> Iterator[None]:
    """Split the current stage by module calls: before each call the time so far goes to ``sample_other``."""
    handles = []
    for name, module in modules.items():
        if module is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda *_: timer.mark("sample_other")))
        handles.append(module.register_forward_hook(lambda *_, n=name: timer.mark(n)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class FrameLoop:
    """One 3D animation frame at a time through the render loop's own parts, each stage timed (see the docstring)."""

    def __init__(
        self, comps: LatentComponents, depth: TransformersDepth, size: int, n_frames: int, device: torch.device,
        *, split_sample: bool = True,
    ) -> None:
        self.size, self.device, self.split_sample = size, device, split_sample
        settings = Settings.defaults("latent", "3D")
        for key, value in {
            "animation.strength_schedule": "0: (0.5)",  # 2 steps x 0.5 = one UNet call (sd-turbo img2img)
            "animation.cfg_scale_schedule": "0: (0)",
            "animation.rotation_3d_y": "0: (0.5)",
            "animation.max_frames": n_frames,
            "image.width": size,
            "image.height": size,
            "image.steps": 2,
            "latent.scheduler": "euler",
            "latent.cfg_scale": 0.0,
            "run.seed": 42,
            "models.device": str(device),
            "prompts.text_prompts": {"0": PROMPT},
        }.items():
            settings.set(key, value)
        self.plan = RenderPlan.from_settings(settings)
        self.sampler = LatentSampler(latent_config(settings), device=device, components=comps)
        self.timer = StageTimer(device)
        self.timed = True
        gen = torch.Generator("cpu").manual_seed(0)
        self.prev = upload(torch.rand(1, 3, size, size, generator=gen), device)  # frame 0: the colour reference
        # The step of a run resumed at frame 1 (frame 0 given as written): the render loop's per-frame path.
        self.step = AnimationStep(
            self.plan, self.sampler.policy, device, depth=self._stage(depth, "depth", before="schedules"),
            start=1, color_ref=self.prev.clone(),
        )
        self.step.warp = self._stage(self.step.warp, "warp3d")  # type: ignore[method-assign]
        self.step.coherence = self._stage(self.step.coherence, "coherence")  # type: ignore[method-assign]
        self.pending: Any = None  # the previous frame's host copy, collected one frame later (as the writer does)
        self.i = 1
        enc = getattr(comps.vae, "encoder", None)
        dec = getattr(comps.vae, "decoder", None)
        # Module hooks split the sampling stage; not with a compiled UNet (hooks would be traced into its graph).
        self.modules: dict[str, torch.nn.Module | None] = (
            {"vae_encode": enc, "unet": comps.unet, "vae_decode": dec} if split_sample else {}
        )

    def _stage(self, fn: Any, stage: str, *, before: str | None = None) -> Any:
        """``fn`` with a timing mark after it (and one before it, closing the previous stage, when ``before``)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.timed and before:
                self.timer.mark(before)
            out = fn(*args, **kwargs)
            if self.timed:
                self.timer.mark(stage)
            return out

        return timed

    def frame(self, *, timed: bool = True) -> dict[str, float]:
        """Run one frame; returns ``{stage: ms, "total": ms, "wall": ms}`` (``timed=False``: no stage marks, no
        end-of-frame wait, returns ``{}``: the loop runs ahead of the GPU as :func:`render` does)."""
        i = 1 + (self.i - 1) % (self.plan.n_frames - 1)  # frames 1 .. n-1 of the plan, round and round
        self.timed = timed
        timer = self.timer if timed else _NO_TIMER
        t_wall = time.perf_counter()
        timer.start()
        frame_init = self.step(i, self.prev)
        if frame_init.final:
            raise RuntimeError(f"frame {i} was not diffused: the benchmark times diffused frames only")
        with _module_stages(timer, self.modules if timed else {}):
            image = self.sampler(frame_request(self.plan, i, frame_init))
        timer.mark("sample_other" if self.split_sample else "sample")
        frame_u8 = image[0].clamp(0, 1).mul(255).round().to(torch.uint8)
        if self.pending is not None:
            self.collect()
        # The hand-off, as render(): uint8 to pinned host memory without a sync; collected a frame later.
        self.pending = PendingFrame.from_tensor(frame_u8.permute(1, 2, 0).contiguous())
        self.prev = frame_u8.unsqueeze(0).float().div(255)
        timer.mark("handoff")
        out = timer.stop()
        out["wall"] = (time.perf_counter() - t_wall) * 1000.0
        self.i += 1
        return out

    def collect(self) -> None:
        """Wait for the last frame's host copy (what the writer thread does) and check it."""
        host = self.pending.result() if isinstance(self.pending, PendingFrame) else self.pending
        self.pending = None
        assert host.shape == (self.size, self.size, 3)


class _NoTimer:
    """StageTimer's interface doing nothing: frames run back to back without a wait."""

    def start(self) -> None: ...

    def mark(self, stage: str) -> None: ...

    def stop(self) -> dict[str, float]:
        return {}


_NO_TIMER = _NoTimer()


STAGES = (
    "schedules", "depth", "warp3d", "coherence", "vae_encode", "unet", "vae_decode", "sample_other", "sample", "handoff"
)


def _run_loop(
    ctx: BenchContext, result: BenchResult, comps: LatentComponents, depth: TransformersDepth, size: int, tag: str,
    *, warmup: int, repeats: int, label: str,
) -> None:
    loop = FrameLoop(comps, depth, size, warmup + repeats + 2, ctx.device, split_sample=not ctx.compile)
    calls = [0]
    with torch.inference_mode():
        for _ in range(warmup):
            loop.frame()
        if warmup == 0:  # warm only the VAE of this variant (the shared UNet is already warm)
            warm = torch.rand(1, 3, size, size, device=ctx.device)
            sample_latent(comps, LatentRequest(prompts=PROMPT, width=size, height=size, steps=2, cfg_scale=0.0,
                                               scheduler="euler", init_image=warm, strength=0.0))
        sync(ctx.device)
        if ctx.cuda:
            torch.cuda.reset_peak_memory_stats(ctx.device)
        # Count UNet calls (one per frame is the recipe); not on a compiled UNet, whose hooks would be traced.
        hook = None if ctx.compile else comps.unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        try:
            frames = [loop.frame() for _ in range(repeats)]
        finally:
            if hook is not None:
                hook.remove()
    if hook is not None and calls[0] != repeats:
        raise RuntimeError(f"expected one UNet call per frame (sd-turbo img2img), got {calls[0]} in {repeats} frames")
    totals = [f["total"] for f in frames]
    med = median(totals)
    result.add(f"{tag}_fps", 1000.0 / med, "frames/s", f"{label}; full frame loop, median of {repeats}", [1000.0 / t for t in totals])
    result.add(f"{tag}_frame", med, "ms/frame", label, totals)
    for stage in STAGES:
        vals = [f.get(stage, 0.0) for f in frames]
        if any(v > 0 for v in vals):
            result.add(f"{tag}_{stage}", median(vals), "ms", f"stage of {tag}_frame", vals)
    walls = [f["wall"] for f in frames]
    result.add(f"{tag}_frame_wall", median(walls), "ms/frame", "host wall clock of the same frames", walls)
    if ctx.cuda:
        peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30
        result.add(f"{tag}_peak_gpu_mem", peak, "GiB", "torch.cuda.max_memory_allocated during the timed frames")

    # Throughput with the loop running ahead of the device (no per-stage events, no end-of-frame wait): the
    # real-time figure. The staged figures above wait for every frame.
    with torch.inference_mode():
        sync(ctx.device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            loop.frame(timed=False)
        loop.collect()
        sync(ctx.device)
        wall = (time.perf_counter() - t0) * 1000.0
    result.add(f"{tag}_fps_pipelined", repeats * 1000.0 / wall, "frames/s",
               f"{label}; {repeats} frames back to back, one wait at the end")
    if ctx.cuda:
        # Host syncs left in one frame, as torch's sync debug mode sees them (.item(), .cpu(), pageable copies...).
        import warnings

        with torch.inference_mode(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                loop.frame(timed=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
        result.add(f"{tag}_host_syncs_per_frame", float(len(syncs)), "count",
                   "torch.cuda.set_sync_debug_mode('warn') warnings in one untimed frame (messages in config)")
        result.config[f"{tag}_host_syncs"] = syncs
        loop.collect()


def _render_tiny(ctx: BenchContext, result: BenchResult) -> None:
    frames = 4 if ctx.smoke else 8
    stamps: list[float] = []

    def on_event(event: RenderEvent) -> None:
        if event.kind == "frame":
            stamps.append(time.perf_counter())

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    s.set("animation.max_frames", frames)
    s.set("output.make_video", False)
    s.set("models.device", str(ctx.device))
    with tempfile.TemporaryDirectory(prefix="discolib-bench-") as tmp:
        t0 = time.perf_counter()
        s.set("models.threads", torch.get_num_threads())  # the count the benchmark runs at, not auto
        render(s, out=Path(tmp), callback=on_event, progress=False)
        total = (time.perf_counter() - t0) * 1000.0
    intervals = [(b - a) * 1000.0 for a, b in zip(stamps, stamps[1:], strict=False)]
    steady = intervals[1:] if len(intervals) > 2 else intervals
    result.add(
        "render_tiny_latent_3d", median(steady), "ms/frame",
        f"render() of the tiny-latent preset, 3D, 64x64, {frames} frames, tiny models: loop cost end to end", steady,
    )
    result.add("render_tiny_latent_3d_total", total, "ms", "whole call incl. building/loading the tiny models")


def run(ctx: BenchContext) -> BenchResult:
    """Build the sd-turbo-architecture components and time the 3D frame loop with both decoders."""
    if ctx.smoke:
        size, depth_input = 64, 70
    elif ctx.quick and not ctx.cuda:
        size, depth_input = 128, 126  # depth input: the frame size rounded to the ViT's multiple of 14
    else:
        size, depth_input = 512, None  # Depth Anything's own 518 px input
    reduced = "QUICK/CPU reduced size: " if size != 512 else ""
    label_depth = f"depth input {depth_input or 518}px"
    result = BenchResult(
        "latent3d",
        config={
            "size": size,
            "dtype": str(ctx.dtype).removeprefix("torch."),
            "unet": "sd-turbo architecture (SD 2.1 UNet config from memory), random weights",
            "vaes": "AutoencoderTiny (TAESD config) and AutoencoderKL (SD VAE config), random weights",
            "depth": f"Depth-Anything-V2-Small architecture, random weights, {label_depth}",
            "sampling": "euler, steps=2, strength=0.5 -> 1 UNet call, cfg 0",
            "warp": "reproject_3d bicubic, border, depth_refinement_steps=1",
            "compile": ctx.compile,
            "compile_mode": ctx.compile_mode if ctx.compile else None,
            "channels_last": ctx.cuda,
        },
    )
    t0 = time.perf_counter()
    taesd = build_latent_components(ctx.device, ctx.dtype, vae="taesd")
    kl = build_latent_components(ctx.device, ctx.dtype, unet=taesd.unet, vae="kl")
    for comps in (taesd, kl):
        enable_fast_paths(comps, channels_last=ctx.cuda)
    if ctx.compile:
        mode = {} if ctx.compile_mode == "default" else {"mode": ctx.compile_mode}
        enable_fast_paths(taesd, compile_unet=mode or True)  # shared UNet: compiled once for both
    depth = build_depth(ctx.device, ctx.dtype, depth_input)
    try:  # discolib's depth preprocessing (antialiased bicubic resize) has no bf16 kernel on some devices
        with torch.inference_mode():
            depth(torch.rand(1, 3, size, size, device=ctx.device))
    except (NotImplementedError, RuntimeError) as err:
        result.config["depth_dtype_fallback"] = f"float32 (in {ctx.dtype}: {type(err).__name__}: {err})"
        depth = build_depth(ctx.device, torch.float32, depth_input)
    result.config["build_s"] = round(time.perf_counter() - t0, 2)
    n_params = sum(p.numel() for p in taesd.unet.parameters())
    result.config["unet_params_M"] = round(n_params / 1e6, 1)

    cpu_quick = ctx.quick and not ctx.cuda
    repeats = ctx.repeats if not cpu_quick else min(ctx.repeats, 2)
    _run_loop(ctx, result, taesd, depth, size, "taesd", warmup=max(ctx.warmup, 1), repeats=repeats,
              label=f"{reduced}{size}x{size}, AutoencoderTiny, {label_depth}")
    # The second variant shares the warm UNet; on a CPU only its VAE is warmed (a UNet call costs seconds there).
    _run_loop(ctx, result, kl, depth, size, "kl", warmup=0 if cpu_quick else max(ctx.warmup, 1), repeats=repeats,
              label=f"{reduced}{size}x{size}, AutoencoderKL, {label_depth}")
    _render_tiny(ctx, result)
    return result
