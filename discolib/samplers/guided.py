"""CLIP-guided pixel diffusion (Disco Diffusion), over any diffusers scheduler.

The pieces, k-diffusion style:

* :func:`unet_eps_fn` turns a guided-diffusion UNet (as a diffusers ``UNet2DModel``) into a model function
  ``eps = model_fn(x, t)`` (the learned-variance channels are not needed by DDIM, PLMS or DPM-Solver).
* :func:`clip_guided` *wraps* a model function with Disco's CLIP guidance: at each step it predicts the clean
  image (through the cheap secondary model, Disco's default, or through the main model), mixes it with the noisy
  sample as Disco does (``x_in = pred * sqrt(1 - abar) + x * (1 - sqrt(1 - abar))``), takes the gradient of the
  guidance loss, zeroes non-finite values, clamps its RMS to ``clamp_max`` and shifts eps by
  ``-sqrt(1 - abar) * grad`` (guided-diffusion's ``condition_score``).
* :func:`sample_pixels` runs any diffusers scheduler (DDIM with ``eta``, PNDM/PLMS, DPM-Solver++) from noise or
  from a noised init image, with Disco's symmetry transformations and a callback per step.
* :class:`GuidedSampler` builds all of it from a :class:`~discolib.samplers.config.GuidedConfig` and makes one image
  per :class:`~discolib.samplers.base.FrameRequest`.

Disco bugs not copied: the step count does not change the noise schedule (Disco's
``diffusion_steps = (1000 // steps) * steps``): the model's 1000-step schedule is respaced to ``steps``; prompts
are tokenised without their ``:weight`` suffix; the first inner cut is not always grey (see
:mod:`discolib.guidance.cutouts`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler
from tqdm.auto import tqdm

from discolib.animation.noise import perlin_noise
from discolib.animation.policy import GUIDED_POLICY, AnimationPolicy
from discolib.guidance.cutouts import CutSchedules
from discolib.guidance.losses import ClipGuidance, clamp_grad_rms, warn_if_nonfinite, zero_nan_grad
from discolib.io.images import load_image
from discolib.models.device import resolve_device, resolve_dtype
from discolib.models.load import load_clip_ensemble, load_diffusion, load_secondary
from discolib.models.secondary import SecondaryDiffusionImageNet2, alpha_sigma_to_t
from discolib.ops import stream_seed, x0_from_eps
from discolib.samplers.base import FrameRequest, ModelFn, StepCallback, make_step_callback, scheduler_step
from discolib.samplers.config import GuidedConfig

__all__ = [
    "PIXEL_SCHEDULERS",
    "GuidedSampler",
    "clip_guided",
    "make_pixel_scheduler",
    "perlin_init_image",
    "sample_pixels",
    "symmetry_steps",
    "unet_eps_fn",
]

PIXEL_SCHEDULERS = ("ddim", "plms", "dpmpp")

# guided-diffusion's "linear" schedule for 1000 steps, which all of Disco's checkpoints were trained with.
_TRAIN = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}


def make_pixel_scheduler(name: str, *, clip_denoised: bool = False) -> Any:
    """A diffusers scheduler for Disco's pixel models: ``ddim`` (default, uses ``eta``), ``plms``, ``dpmpp``.

    Timesteps are spaced as guided-diffusion's ``ddimN`` respacing (``leading``: 0, k, 2k, ... with k = 1000 // N).
    """
    if name == "ddim":
        return DDIMScheduler(**_TRAIN, clip_sample=clip_denoised, set_alpha_to_one=True, timestep_spacing="leading")
    if name == "plms":
        return PNDMScheduler(**_TRAIN, skip_prk_steps=True, set_alpha_to_one=True, timestep_spacing="leading")
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(
            **_TRAIN, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="leading", lower_order_final=True
        )
    raise ValueError(f"guidance.sampler: expected one of {', '.join(PIXEL_SCHEDULERS)}, got {name!r}")


def unet_eps_fn(unet: torch.nn.Module) -> ModelFn:
    """``eps = model_fn(x, t)`` from a UNet2DModel whose first 3 output channels are eps.

    ``x`` (B, 3, H, W) float32 in the [-1, 1] data scale; ``t`` a 0-d or (B,) timestep tensor on the 0-999 scale.
    The UNet may run in a lower precision; eps comes back as float32.
    """
    dtype = next(unet.parameters()).dtype

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x.to(dtype), t).sample[:, :3].float()

    return model_fn


def clip_guided(
    model_fn: ModelFn,
    guidance: ClipGuidance,
    alphas_cumprod: torch.Tensor,
    *,
    generator: torch.Generator,
    secondary: SecondaryDiffusionImageNet2 | None = None,
    clamp_max: float | None = 0.05,
) -> ModelFn:
    """Wrap ``model_fn`` with Disco's CLIP guidance (see the module docstring).

    Args:
        model_fn: the unguided eps model.
        guidance: the loss (cuts, prompts, tv/range/sat/init terms) from :mod:`discolib.guidance.losses`.
        alphas_cumprod: (1000,) the training schedule's cumulative alphas (on the CPU).
        generator: source of the cutouts' randomness (seeded per image for reproducibility).
        secondary: Disco's secondary model to predict x0 cheaply; ``None`` differentiates through ``model_fn``.
        clamp_max: RMS clamp of the gradient (``None`` disables ``clamp_grad``).

    Returns:
        A model function with the same signature, whose eps is shifted by ``-sqrt(1 - abar_t) * grad``.
    """
    ac = alphas_cumprod.detach().to("cpu", torch.float64)
    nonfinite: list[torch.Tensor] = []

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # t lives on the CPU (scheduler timesteps), so reading it costs no device sync.
        step = int(t.reshape(-1)[0])
        abar = float(ac[step])
        sqrt_ab, sigma = math.sqrt(abar), math.sqrt(1.0 - abar)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if secondary is not None:
                with torch.no_grad():
                    eps = model_fn(x, t)
                cos_t = alpha_sigma_to_t(torch.tensor(sqrt_ab), torch.tensor(sigma))
                sdtype = next(secondary.parameters()).dtype
                pred = secondary(xg.to(sdtype), cos_t.to(x.device, sdtype).expand(x.shape[0])).pred.float()
            else:
                eps_g = model_fn(xg, t)
                eps = eps_g.detach()
                pred = x0_from_eps(xg, eps_g, abar)
            x_in = pred * sigma + xg * (1.0 - sigma)
            g_in, g_pred = guidance.grad(x_in, step, generator, pred_x0=pred)
            grad_loss = torch.autograd.grad([x_in, pred], xg, [g_in, g_pred])[0]
        grad = -grad_loss
        grad, bad = zero_nan_grad(grad)
        # Keep the flag on the device; it is read once per image (guided.check_nonfinite), not once per step.
        nonfinite[:] = [bad if not nonfinite else nonfinite[0] | bad]
        if clamp_max is not None:
            grad = clamp_grad_rms(grad, clamp_max)
        return eps - sigma * grad

    def check_nonfinite() -> bool:
        """Warn (once per image) if any step's gradient had NaN/inf values that were zeroed."""
        hit = bool(nonfinite) and warn_if_nonfinite(nonfinite[0], stacklevel=3)
        nonfinite.clear()
        return hit

    guided.check_nonfinite = check_nonfinite  # type: ignore[attr-defined]
    return guided


def symmetry_steps(steps: int, percents: Sequence[float]) -> set[int]:
    """Indices (0-based) among the ``steps`` steps run at which Disco applies its symmetry transformation."""
    return {min(steps - 1, max(0, int(steps * p))) for p in percents}


def mirror(x: torch.Tensor, *, horizontal: bool, vertical: bool) -> torch.Tensor:
    """Disco's symmetry: ``horizontal`` copies the left half mirrored onto the right; ``vertical`` top onto bottom."""
    _, _, h, w = x.shape
    if horizontal:
        left = x[..., : w // 2]
        x = torch.cat([left, left.flip(-1), x[..., 2 * (w // 2) :]], dim=-1)
    if vertical:
        top = x[..., : h // 2, :]
        x = torch.cat([top, top.flip(-2), x[..., 2 * (h // 2) :, :]], dim=-2)
    return x


def sample_pixels(
    model_fn: ModelFn,
    scheduler: Any,
    *,
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator,
    device: torch.device,
    init: torch.Tensor | None = None,
    skip_steps: int = 0,
    eta: float = 0.0,
    callback: StepCallback | None = None,
    transforms: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``scheduler`` over ``model_fn``.

    Args:
        shape: (B, 3, H, W) of the sample.
        steps: sampler steps (the respacing of the 1000 training steps).
        init: (B or 1, 3, H, W) in [-1, 1]; noised to the first kept timestep when ``skip_steps > 0``.
        skip_steps: steps skipped at the start (only meaningful with ``init``).
        eta: DDIM's eta (ignored by schedulers that do not take it).
        callback: gets ``{"i", "n", "t", "x", "denoised"}`` after each step run (``i`` counts the steps run, of
            ``n``; ``denoised`` in [-1, 1]).
        transforms: index of a step run -> function applied to the sample before that step (Disco's symmetry).

    Returns:
        (B, 3, H, W) in about [-1, 1].
    """
    scheduler.set_timesteps(steps)
    full = scheduler.timesteps  # CPU long tensor: indexing it never syncs the device
    if not 0 <= skip_steps < steps:
        raise ValueError(f"guidance.skip_steps: expected 0 <= skip_steps < steps ({steps}), got {skip_steps}")
    if isinstance(scheduler, PNDMScheduler):
        # PLMS: diffusers repeats the second timestep (the first step's correction). Starting later, rebuild that
        # pattern on the steps kept, so the first kept step gets its correction and none is skipped twice.
        plain = torch.cat([full[:2], full[3:]])[skip_steps:]
        timesteps = torch.cat([plain[:2], plain[1:2], plain[2:]]) if len(plain) > 1 else plain
        scheduler.timesteps = timesteps
    else:
        timesteps = full[skip_steps:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skip_steps)
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    if init is not None and skip_steps > 0:
        x = scheduler.add_noise(init.to(device, torch.float32).expand(shape), noise, timesteps[:1])
    else:
        x = noise * float(getattr(scheduler, "init_noise_sigma", 1.0))
    ac = scheduler.alphas_cumprod.to(torch.float64)
    transforms = transforms or {}
    n = len(timesteps)
    denoised = x
    for i in tqdm(range(n), disable=not progress, desc="steps", leave=False):
        t = timesteps[i]
        if i in transforms:
            x = transforms[i](x)
        eps = model_fn(x, t)
        abar = float(ac[int(t)])
        denoised = x0_from_eps(x, eps, abar)
        x = scheduler_step(scheduler, eps, t, x, eta=eta, generator=generator).prev_sample
        if callback is not None:
            callback({"i": i, "n": n, "t": int(t), "x": x, "denoised": denoised})
    return x


def perlin_init_image(
    height: int, width: int, mode: str, *, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Disco-style Perlin init: (1, 3, H, W) in [-1, 1]; ``color``, ``gray`` or ``mixed`` (their average)."""
    if mode not in ("color", "gray", "mixed"):
        raise ValueError(f"guidance.perlin_mode: expected color, gray or mixed, got {mode!r}")
    kw: dict[str, Any] = {"cells": (4.0, 4.0), "octaves": 4, "generator": generator, "device": device}
    color = perlin_noise((1, 3, height, width), **kw) if mode != "gray" else None
    gray = perlin_noise((1, 1, height, width), **kw).expand(1, 3, height, width) if mode != "color" else None
    if color is None:
        return gray  # type: ignore[return-value]
    if gray is None:
        return color
    return (color + gray) / 2


class GuidedSampler:
    """Disco's guided sampler: models loaded once from a :class:`GuidedConfig`, one image per call.

    What a :class:`FrameRequest` means here:

    * ``init`` given: the sample starts from ``init`` noised to the first kept step. ``skip_steps`` steps are
      skipped, or when it is None ``min(steps - 1, round(steps * init_strength))`` (Disco's ``frames_skip_steps``
      as a fraction). The init is also the target of the init loss, at ``init_scale`` (None: the config's
      ``init_scale``; Disco's ``frames_scale`` for animation frames).
    * no ``init``: Perlin noise when the config says so, else a zero image, noised to the first kept step, with
      ``skip_steps`` (None: the config's ``skip_steps``) skipped, as Disco. Neither is a loss target.

    ``init_strength`` is ignored when ``skip_steps`` is given; ``cfg_scale`` is latent mode's and ignored here.
    """

    policy: AnimationPolicy = GUIDED_POLICY

    def __init__(self, config: GuidedConfig, *, device: torch.device | None = None, progress: bool = False) -> None:
        self.config = config
        g = config.guidance
        self.device = device or resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.width, self.height = config.width, config.height
        self.progress = progress
        self.unet = load_diffusion(config.diffusion_model, self.device, self.dtype, random_ok=config.random_weights)
        if config.gradient_checkpointing and hasattr(self.unet, "enable_gradient_checkpointing"):
            self.unet.enable_gradient_checkpointing()
        self.secondary = (
            load_secondary(config.secondary_model, self.device, self.dtype, random_ok=config.random_weights)
            if config.use_secondary_model
            else None
        )
        self.ensemble = load_clip_ensemble(
            g.clip_models,
            self.device,
            self.dtype if self.device.type == "cuda" else torch.float32,
            random_ok=config.random_weights,
        )
        self.cut_schedules = CutSchedules.from_disco(g.cut_overview, g.cut_innercut, g.cut_ic_pow, g.cut_icgray_p)
        self.scheduler = make_pixel_scheduler(config.sampler, clip_denoised=config.clip_denoised)
        self.model_fn = unet_eps_fn(self.unet)
        if config.compile:
            self.model_fn = torch.compile(self.model_fn)
        self._image_prompts: dict[str, torch.Tensor] = {}

    def _guidance(self, request: FrameRequest, init01: torch.Tensor | None, init_scale: float, gen: torch.Generator) -> ClipGuidance:
        c, g = self.config, self.config.guidance
        prompts = request.prompts
        texts = [p.text for p in prompts.positive] + [p.text for p in prompts.negative]
        weights = [p.weight for p in prompts.positive] + [-abs(p.weight) for p in prompts.negative]
        embeds = self.ensemble.encode_text(texts)
        if request.image_prompts is not None and request.image_prompts.positive:
            # Image prompts: each image's whole-frame embedding per CLIP member joins the targets with its weight
            # (Disco averaged 16 cutouts of it; one resized view is cheaper and, with no augmentation, alike).
            images = [self._image_prompt(p.text) for p in request.image_prompts.positive]
            batch = torch.cat(images).to(self.device)
            embeds = [torch.cat([e, ie.to(e)]) for e, ie in zip(embeds, self.ensemble.encode_image(batch), strict=True)]
            weights = weights + [p.weight for p in request.image_prompts.positive]
        if c.fuzzy_prompt:
            # Disco adds 25 noisy copies of every prompt embedding, each with the prompt's weight.
            embeds = [
                torch.cat([e] + [e + torch.randn(e.shape, generator=gen, device=gen.device).to(e) * c.rand_mag for _ in range(25)])
                for e in embeds
            ]
            weights = weights * 26
        return ClipGuidance(
            self.ensemble,
            embeds,
            weights,
            schedules=self.cut_schedules,
            clip_guidance_scale=g.clip_guidance_scale,
            tv_scale=g.tv_scale,
            range_scale=g.range_scale,
            sat_scale=g.sat_scale,
            init_scale=init_scale if init01 is not None else 0.0,
            init_image=None if init01 is None else init01 * 2 - 1,
            cutn_batches=g.cutn_batches,
            augment=not g.skip_augs,
            aug=g.augmentation,
        )

    def _image_prompt(self, source: str) -> torch.Tensor:
        if source not in self._image_prompts:
            self._image_prompts[source] = load_image(source, setting="prompts.image_prompts")
        return self._image_prompts[source]

    def preview(self, info: dict[str, Any]) -> torch.Tensor:
        """The step's predicted image (1, 3, H, W) in [0, 1] (for live previews and intermediate saves)."""
        return ((info["denoised"] + 1) / 2).clamp(0, 1)

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] on ``device`` (see the class docstring for the request's meaning)."""
        c, g = self.config, self.config.guidance
        steps = c.steps
        gen = torch.Generator(self.device).manual_seed(request.seed)
        # Cut sizes and positions are drawn on the host: a CPU generator keeps them free of device syncs.
        cut_gen = torch.Generator("cpu").manual_seed(stream_seed(request.seed, "cuts"))
        init01 = request.init
        init_scale = c.init_scale if request.init_scale is None else request.init_scale
        skip = c.skip_steps if request.skip_steps is None else request.skip_steps
        if init01 is not None:
            if request.skip_steps is None:
                skip = min(steps - 1, int(round(steps * request.init_strength)))
        elif c.perlin_init:
            init01 = (perlin_init_image(self.height, self.width, c.perlin_mode, generator=gen, device=self.device) + 1) / 2
            init_scale = 0.0  # Perlin noise is a start, not a target
        if init01 is not None:
            init01 = init01.to(self.device, torch.float32)
            start = init01 * 2 - 1
        else:
            # No init at all: as Disco (guided-diffusion), skip_steps still applies, starting from a zero image
            # noised to the first kept step.
            start = torch.zeros(1, 3, self.height, self.width, device=self.device)
        guidance = self._guidance(request, init01, init_scale, cut_gen)
        model_fn = self.model_fn
        if g.clip_guidance_scale or g.tv_scale or g.range_scale or g.sat_scale or (init01 is not None and init_scale):
            model_fn = clip_guided(
                self.model_fn,
                guidance,
                self.scheduler.alphas_cumprod,
                generator=cut_gen,
                secondary=self.secondary,
                clamp_max=g.grad_clamp,
            )
        transforms = {}
        if c.use_horizontal_symmetry or c.use_vertical_symmetry:
            # As Disco: fractions of the steps actually run (after skip_steps / frames_skip_steps).
            for i in symmetry_steps(steps - skip, c.transformation_percent):
                transforms[i] = lambda x: mirror(x, horizontal=c.use_horizontal_symmetry, vertical=c.use_vertical_symmetry)
        x = sample_pixels(
            model_fn,
            self.scheduler,
            shape=(1, 3, self.height, self.width),
            steps=steps,
            generator=gen,
            device=self.device,
            init=start,
            skip_steps=skip,
            eta=c.eta,
            callback=make_step_callback(request),
            transforms=transforms,
            progress=self.progress,
        )
        if hasattr(model_fn, "check_nonfinite"):
            model_fn.check_nonfinite()
        return ((x + 1) / 2).clamp(0, 1)
