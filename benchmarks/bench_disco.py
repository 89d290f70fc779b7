"""``disco_step``: one CLIP-guided step of Disco Diffusion at its defaults.

The pieces are discolib's own (:func:`discolib.samplers.guided.clip_guided` around
:func:`~discolib.samplers.guided.unet_eps_fn`, run by :func:`~discolib.samplers.guided.sample_pixels` with DDIM,
eta 0.8, 250 steps), with random weights of the real architectures:

* the 512 ADM UNet: the catalogue hyper-parameters of ``512x512_diffusion_uncond_finetune_008100`` through
  :class:`~discolib.models.adm.AdmConfig` -> :func:`~discolib.models.adm.adm_unet_config`, built on the meta device and
  materialised with ``to_empty`` + each module's ``reset_parameters``;
* Disco's secondary model (``SecondaryDiffusionImageNet2(c=64)``), which gives the predicted image whose gradient
  is taken (Disco's default ``use_secondary_model``);
* ViT-B/32 + ViT-B/16 + RN50 (open_clip configs, ``pretrained=None``);
* Disco's cut schedules (16 cuts per batch) x ``cutn_batches`` 4, clip_guidance_scale 5000, range_scale 150.

The figure is milliseconds per guided step (median of the timed steps, from the first steps of a still, where
Disco's schedule uses 12 overview + 4 inner cuts), and peak GPU memory on CUDA. On a CPU the defaults are far too
slow (a minute or more per step): ``--quick`` runs a labelled reduced case; without it the benchmark is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from bench_common import BenchContext, BenchResult, median, sync, time_call

from discolib.guidance.cutouts import DISCO_DEFAULT_SCHEDULES, CutSchedules, CutSettings
from discolib.guidance.losses import ClipGuidance
from discolib.models.adm import AdmConfig, adm_unet_config
from discolib.models.clip import ClipEnsemble
from discolib.models.hub import catalogue_entry
from discolib.models.secondary import SecondaryDiffusionImageNet2
from discolib.ops import seeded
from discolib.samplers.guided import clip_guided, make_pixel_scheduler, sample_pixels, unet_eps_fn

__all__ = ["DISCO_MODEL", "build_adm_unet", "run"]

DISCO_MODEL = "512x512_diffusion_uncond_finetune_008100"
CLIP_MODELS = ("ViT-B/32", "ViT-B/16", "RN50")
PROMPT = "A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood"


def build_adm_unet(name: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The catalogue model's diffusers UNet with random weights, built on the meta device then materialised."""
    cls, kwargs = adm_unet_config(AdmConfig.from_dict(catalogue_entry(name)["adm"]))
    with torch.device("meta"):
        unet = cls(**kwargs)
    unet.to_empty(device=device)
    with seeded(0), torch.no_grad():
        for module in unet.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    leftovers = [n for n, b in unet.named_buffers() if b.is_meta]
    if leftovers:
        raise RuntimeError(f"buffers left uninitialised after to_empty: {leftovers}")
    unet = unet.to(dtype=dtype) if dtype != torch.float32 else unet
    if device.type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)  # as discolib's guided loader does on CUDA
    return unet.eval().requires_grad_(False)


class _Enough(Exception):
    """Raised from the step callback to stop sampling after the timed steps."""


def _time_guided_steps(
    model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ctx: BenchContext, shape: tuple[int, int, int, int],
    n_steps: int, seed: int,
) -> list[float]:
    """Milliseconds of each of the first ``n_steps`` steps of a 250-step DDIM run (eta 0.8, from noise)."""
    scheduler = make_pixel_scheduler("ddim")
    marks: list[Any] = []

    def now() -> Any:
        if ctx.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def callback(info: dict[str, Any]) -> None:
        marks.append(now())
        if len(marks) > n_steps:
            raise _Enough

    gen = torch.Generator(ctx.device).manual_seed(seed)
    marks.append(now())
    try:
        sample_pixels(model_fn, scheduler, shape=shape, steps=250, generator=gen, device=ctx.device, eta=0.8, callback=callback)
    except _Enough:
        pass
    sync(ctx.device)
    if ctx.cuda:
        return [float(a.elapsed_time(b)) for a, b in zip(marks, marks[1:], strict=False)]
    return [(b - a) * 1000.0 for a, b in zip(marks, marks[1:], strict=False)]


def run(ctx: BenchContext) -> BenchResult:
    """Time guided steps (and their parts) of Disco's default configuration, or a labelled reduced one."""
    full = ctx.cuda or not ctx.quick
    result = BenchResult("disco_step")
    if not ctx.cuda and not ctx.quick:
        result.skipped = (
            "far too slow on a CPU at Disco's defaults (1280x768, 3 CLIP models x 16 cuts x 4 batches: minutes per "
            "step); run it with --device cuda, or --quick for a reduced-size CPU check"
        )
        return result
    if full:
        width, height, cut_batches = 1280, 768, 4
        schedules: CutSchedules | CutSettings = DISCO_DEFAULT_SCHEDULES
        cuts_label = "Disco cut schedules (16 cuts) x cutn_batches 4"
    else:
        # A CPU step here is CLIP-bound (tens of seconds at 4 cuts on 2 cores): keep --quick within its budget.
        width, height, cut_batches = 64, 64, 1
        schedules = CutSettings(overview=1, innercut=1, ic_pow=1.0, icgray_p=0.2)
        cuts_label = "2 cuts (1 overview + 1 inner) x cutn_batches 1"
    clip_dtype = ctx.dtype if ctx.cuda else torch.float32  # as GuidedSampler: CLIP in the model dtype on CUDA only
    label = ("" if full else "QUICK/CPU reduced: ") + f"{width}x{height}, {cuts_label}"
    result.config = {
        "model": f"{DISCO_MODEL} architecture (catalogue ADM hyper-parameters), random weights",
        "secondary": "SecondaryDiffusionImageNet2(c=64), random weights",
        "clip_models": list(CLIP_MODELS),
        "clip_pretrained": None,
        "width": width,
        "height": height,
        "cuts": cuts_label,
        "scheduler": "ddim, 250 steps, eta 0.8; clip_guidance_scale 5000, range_scale 150, clamp_max 0.05",
        "unet_dtype": str(ctx.dtype).removeprefix("torch."),
        "clip_dtype": str(clip_dtype).removeprefix("torch."),
    }

    t0 = time.perf_counter()
    unet = build_adm_unet(DISCO_MODEL, ctx.device, ctx.dtype)
    with seeded(1):
        secondary = SecondaryDiffusionImageNet2(c=64).to(ctx.device, ctx.dtype).eval().requires_grad_(False)
    with seeded(2):
        ensemble = ClipEnsemble(list(CLIP_MODELS), ctx.device, clip_dtype, pretrained=None)
    result.config["build_s"] = round(time.perf_counter() - t0, 2)
    result.config["params_M"] = {
        "unet": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "secondary": round(sum(p.numel() for p in secondary.parameters()) / 1e6, 2),
        "clip": round(sum(p.numel() for m in ensemble for p in m.model.parameters()) / 1e6, 1),
    }

    guidance = ClipGuidance(
        ensemble, ensemble.encode_text([PROMPT]), [1.0], schedules=schedules, clip_guidance_scale=5000.0,
        range_scale=150.0, cutn_batches=cut_batches, augment=True, aug="still",
    )
    cut_gen = torch.Generator("cpu").manual_seed(0)
    eps_fn = unet_eps_fn(unet)
    model_fn = clip_guided(
        eps_fn, guidance, make_pixel_scheduler("ddim").alphas_cumprod, generator=cut_gen, secondary=secondary,
        clamp_max=0.05,
    )
    shape = (1, 3, height, width)
    # Warm-up: cuDNN autotuning and allocator growth on CUDA; on a CPU a step costs many seconds, so none there.
    warm = max(ctx.warmup, 1) if ctx.cuda else 0
    if warm:
        _time_guided_steps(model_fn, ctx, shape, warm, seed=0)
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    n = ctx.repeats if ctx.cuda else 2
    steps_ms = _time_guided_steps(model_fn, ctx, shape, n, seed=1)
    result.add("guided_step", median(steps_ms), "ms/step", f"{label}; secondary model + 3 CLIP models", steps_ms)
    result.add("guided_250_steps_estimate", median(steps_ms) * 250 / 1000.0, "s/image",
               "250 x the median step (Disco's default steps; cut counts vary along the schedule)")
    if ctx.cuda:
        peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30
        result.add("peak_gpu_mem", peak, "GiB", "torch.cuda.max_memory_allocated over the timed steps (incl. weights)")
        result.add("peak_gpu_reserved", torch.cuda.max_memory_reserved(ctx.device) / 2**30, "GiB",
                   "torch.cuda.max_memory_reserved (what nvidia-smi roughly shows, minus the CUDA context)")

    if not ctx.cuda:
        result.config["parts"] = "timed on CUDA only (a CPU pays seconds per part)"
        return result
    # Where a step goes: the parts, one at a time.
    reps = {"warmup": 1, "repeats": max(ctx.repeats, 3)}
    x = torch.randn(shape, device=ctx.device)
    t = torch.tensor(800)
    with torch.inference_mode():
        ms = time_call(lambda: eps_fn(x, t), ctx, **reps)
    result.add("unet_forward", median(ms), "ms", f"{width}x{height}, no grad", ms)

    def secondary_fwd_bwd() -> None:
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            pred = secondary(xg.to(ctx.dtype), torch.full((1,), 0.5, device=ctx.device, dtype=ctx.dtype)).pred
            torch.autograd.grad(pred.float().square().mean(), xg)

    ms = time_call(secondary_fwd_bwd, ctx, **reps)
    result.add("secondary_fwd_bwd", median(ms), "ms", f"{width}x{height}", ms)
    cuts = guidance.cut_settings(999)
    for m, member in enumerate(ensemble):

        def clip_batch(m: int = m) -> None:
            xg = (x.clamp(-1, 1) + 1).div(2).detach().requires_grad_(True)
            with torch.enable_grad():
                loss = guidance._clip_batch_loss(xg, m, cuts, cut_gen)
                torch.autograd.grad(loss, xg)

        ms = time_call(clip_batch, ctx, **reps)
        result.add(f"clip_{member.spec.name}_batch", median(ms), "ms",
                   f"one cut batch ({cuts.cutn} cuts at {member.image_size}px: cutouts + augment + fwd + bwd)", ms)
    return result
