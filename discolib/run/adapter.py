"""The one adapter from :class:`~discolib.config.settings.Settings` to the samplers' explicit configs.

The samplers never read Settings: :func:`guided_config` and :func:`latent_config` pick the values each sampler
uses, and :func:`build_sampler` builds the sampler of ``image.mode``. Everything per image (seeds, prompts, the
init image, strengths) goes into each :class:`~discolib.samplers.base.FrameRequest` instead.
"""

from __future__ import annotations

from typing import Any

from discolib.animation.video_input import video_guidance
from discolib.config.settings import Settings
from discolib.samplers.base import FrameSampler
from discolib.samplers.config import GuidanceConfig, GuidedConfig, LatentConfig
from discolib.samplers.guided import GuidedSampler
from discolib.samplers.latent import LatentSampler

__all__ = ["build_sampler", "guidance_config", "guided_config", "latent_config"]

# Disco augments cuts of animation frames differently from stills (see discolib.guidance.cutouts.AUG_PRESETS).
_AUG_BY_MODE = {"None": "still", "2D": "animation", "3D": "animation", "Video Input": "video"}


def guidance_config(
    settings: Settings,
    *,
    clip_guidance_scale: float,
    augmentation: str,
    tv_scale: float | None = None,
    range_scale: float | None = None,
    sat_scale: float | None = None,
    cutn_batches: int | None = None,
) -> GuidanceConfig:
    """The CLIP-guidance part of a sampler's config, with the CLIP scale and cut augmentation of that sampler; the
    loss scales and cut batches are ``settings.guidance``'s unless given (Video Input's overrides).

    ``range_scale`` applies only with ``guidance.range_loss_active`` (see ``GuidanceConfig.range_scale_applied``):
    Disco computes its range loss on a detached tensor, so a Disco settings file's ``range_scale`` has no effect."""
    g = settings.guidance
    return GuidanceConfig(
        clip_models=tuple(settings.models.clip_models),
        clip_guidance_scale=clip_guidance_scale,
        tv_scale=g.tv_scale if tv_scale is None else tv_scale,
        range_scale=g.range_scale if range_scale is None else range_scale,
        range_loss_active=g.range_loss_active,
        sat_scale=g.sat_scale if sat_scale is None else sat_scale,
        cutn_batches=g.cutn_batches if cutn_batches is None else cutn_batches,
        cut_overview=g.cut_overview,
        cut_innercut=g.cut_innercut,
        cut_ic_pow=g.cut_ic_pow,
        cut_icgray_p=g.cut_icgray_p,
        skip_augs=g.skip_augs,
        augmentation=augmentation,
        clamp_grad=g.clamp_grad,
        clamp_max=g.clamp_max,
    )


def _common(settings: Settings) -> dict[str, Any]:
    """The :class:`~discolib.samplers.config.SamplerConfig` fields every sampler takes."""
    m = settings.models
    return {
        "width": settings.image.width,
        "height": settings.image.height,
        "steps": settings.image.steps,
        "device": m.device,
        "dtype": m.dtype,
        "random_weights": m.random_weights,
        "compile": m.compile,
    }


def guided_config(settings: Settings) -> GuidedConfig:
    """Disco's guided sampler as ``settings`` describe it (cut augmentation by ``animation.animation_mode``).

    In Video Input mode the ``animation.video_init_*`` settings replace steps, the CLIP / TV / range / saturation
    scales, cut batches, skip steps and init scale, as Disco's ``args[...] = args['video_init_...']``.
    """
    m, g = settings.models, settings.guidance
    common = _common(settings)
    scales = {"clip_guidance_scale": g.clip_guidance_scale, "skip_steps": g.skip_steps, "init_scale": g.init_scale}
    loss = {"tv_scale": g.tv_scale, "range_scale": g.range_scale, "sat_scale": g.sat_scale, "cutn_batches": g.cutn_batches}
    video = video_guidance(settings)
    if video is not None:
        common["steps"] = video.steps
        scales = {
            "clip_guidance_scale": video.clip_guidance_scale,
            "skip_steps": video.skip_steps,
            "init_scale": video.init_scale,
        }
        loss = {
            "tv_scale": video.tv_scale,
            "range_scale": video.range_scale,
            "sat_scale": video.sat_scale,
            "cutn_batches": video.cutn_batches,
        }
    return GuidedConfig(
        **common,
        diffusion_model=m.diffusion_model,
        use_secondary_model=m.use_secondary_model,
        secondary_model=m.secondary_model,
        gradient_checkpointing=m.gradient_checkpointing,
        sampler=g.sampler,
        eta=g.eta,
        clip_denoised=g.clip_denoised,
        skip_steps=scales["skip_steps"],
        init_scale=scales["init_scale"],
        init_loss=g.init_loss,
        perlin_init=g.perlin_init,
        perlin_mode=g.perlin_mode,
        perlin_init_every_frame=g.perlin_init_every_frame,
        fuzzy_prompt=g.fuzzy_prompt,
        rand_mag=g.rand_mag,
        use_horizontal_symmetry=g.use_horizontal_symmetry,
        use_vertical_symmetry=g.use_vertical_symmetry,
        transformation_percent=tuple(g.transformation_percent),
        symmetry_any_sampler=g.symmetry_any_sampler,
        guidance=guidance_config(
            settings,
            clip_guidance_scale=scales["clip_guidance_scale"],
            augmentation=_AUG_BY_MODE.get(settings.animation.animation_mode, "still"),
            **loss,
        ),
    )


def latent_config(settings: Settings) -> LatentConfig:
    """The latent sampler as ``settings`` describe it (CLIP guidance at ``latent.clip_scale``, 0 = off)."""
    m, lat = settings.models, settings.latent
    return LatentConfig(
        **_common(settings),
        latent_model=m.latent_model,
        fast_vae=m.fast_vae,
        scheduler=lat.scheduler,
        cfg_scale=lat.cfg_scale,
        negative_prompt=lat.negative_prompt,
        eta=lat.ddim_eta,
        single_file_config=m.latent_config,
        lora=m.latent_lora,
        lora_scale=m.latent_lora_scale,
        t5=m.text_encoder_t5,
        offload_text_encoders=m.offload_text_encoders,
        vae_tiling=m.vae_tiling,
        fp8_weights=m.fp8_weights,
        # Latent mode has always cut with the still augmentation, animation or not.
        guidance=guidance_config(settings, clip_guidance_scale=lat.clip_scale, augmentation="still"),
    )


def build_sampler(settings: Settings, *, progress: bool = False) -> FrameSampler:
    """The sampler for ``settings.image.mode``, with its models loaded once."""
    if settings.image.mode == "guided":
        return GuidedSampler(guided_config(settings), progress=progress)
    return LatentSampler(latent_config(settings), progress=progress)
