"""What a sampler is built from: explicit, frozen configs (the samplers never read Settings).

:func:`discolib.run.adapter.guided_config` and :func:`~discolib.run.adapter.latent_config` are the one place that
turns :class:`~discolib.config.settings.Settings` into these; tests and tools may build them directly or
``dataclasses.replace`` one. Everything per image (seed, prompts, init, strengths) is in
:class:`~discolib.samplers.base.FrameRequest` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GuidanceConfig", "GuidedConfig", "LatentConfig", "SamplerConfig"]


@dataclass(frozen=True, kw_only=True)
class GuidanceConfig:
    """Disco's CLIP guidance, as both samplers use it (see :class:`discolib.guidance.losses.ClipGuidance`).

    Attributes:
        clip_models: the CLIP ensemble (open_clip ``name/pretrained`` pairs, Disco names or ``hf-hub:`` ids).
        clip_guidance_scale: weight of the CLIP loss (guided: ``guidance.clip_guidance_scale``; latent:
            ``latent.clip_scale``, where 0 loads no CLIP model at all).
        tv_scale, range_scale, sat_scale: weights of the other loss terms (``range_scale`` as set; see
            :attr:`range_scale_applied`).
        range_loss_active: apply ``range_scale`` at all. Off (the default) reproduces Disco, whose range loss is
            computed on a detached tensor and so has no effect.
        cutn_batches: cut batches per step (gradients accumulated over them).
        cut_overview, cut_innercut, cut_ic_pow, cut_icgray_p: Disco's cut schedules over 1000 timesteps, as text.
        skip_augs: no cutout augmentation.
        augmentation: the cutout augmentation preset, ``"still"``, ``"animation"`` or ``"video"``
            (see :data:`discolib.guidance.cutouts.AUG_PRESETS`).
        clamp_grad: clamp the gradient's RMS to ``clamp_max``.
        clamp_max: largest RMS of the guidance gradient.
    """

    clip_models: tuple[str, ...]
    clip_guidance_scale: float
    tv_scale: float
    range_scale: float
    sat_scale: float
    cutn_batches: int
    cut_overview: str
    cut_innercut: str
    cut_ic_pow: str
    cut_icgray_p: str
    skip_augs: bool
    augmentation: str
    clamp_grad: bool
    clamp_max: float
    range_loss_active: bool = False

    @property
    def range_scale_applied(self) -> float:
        """The range loss weight the guidance applies: ``range_scale`` when ``range_loss_active``, else 0 (Disco)."""
        return self.range_scale if self.range_loss_active else 0.0

    @property
    def grad_clamp(self) -> float | None:
        """The RMS clamp the guidance wrappers take (``None``: no clamp)."""
        return self.clamp_max if self.clamp_grad else None


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """What every sampler is built from.

    Attributes:
        width, height: image size in pixels.
        steps: sampler steps per image (the full schedule; img2img runs a fraction of them).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see :func:`discolib.models.device.resolve_device`).
        dtype: ``"auto"``, ``"float32"``, ``"float16"`` or ``"bfloat16"`` for the models.
        random_weights: models whose weights cannot be had get random weights (smoke and speed runs).
        compile: ``torch.compile`` the UNet (its model function in guided mode).
    """

    width: int
    height: int
    steps: int
    device: str
    dtype: str
    random_weights: bool
    compile: bool


@dataclass(frozen=True, kw_only=True)
class GuidedConfig(SamplerConfig):
    """Disco's CLIP-guided pixel sampler (:class:`discolib.samplers.guided.GuidedSampler`).

    Besides :class:`SamplerConfig`'s fields (width and height multiples of 64; ``steps`` respace the 1000 training
    steps):

    Attributes:
        diffusion_model: Disco catalogue name, checkpoint path or ``"tiny"``.
        use_secondary_model: predict x0 for the CLIP gradient with the secondary model (Disco's default).
        secondary_model: the secondary model's name or path.
        gradient_checkpointing: trade speed for memory in the UNet.
        sampler: pixel scheduler, ``"ddim"``, ``"plms"`` or ``"dpmpp"``.
        eta: DDIM's eta.
        clip_denoised: clamp the scheduler's predicted x0 to [-1, 1].
        skip_steps: steps skipped when an image starts without an init (from Perlin noise or a noised zero image).
        init_scale: init-image loss scale when a request brings an init and no ``init_scale`` of its own; also the
            scale of the loss to a Perlin init (Disco).
        init_loss: the init / frames loss, ``"lpips"`` (Disco, :mod:`discolib.models.lpips`) or ``"mse"``.
        perlin_init: start an image without an init from Perlin noise.
        perlin_mode: ``"color"``, ``"gray"`` or ``"mixed"``.
        perlin_init_every_frame: with ``perlin_init``, a request's init (an animation frame's) is replaced by fresh
            Perlin noise too (Disco), keeping the request's skip and init-loss scale.
        fuzzy_prompt: replace each prompt embedding by 25 noisy copies of magnitude ``rand_mag``, clamped to [0, 1]
            (Disco).
        rand_mag: magnitude of the fuzzy-prompt noise.
        use_horizontal_symmetry, use_vertical_symmetry: Disco's symmetry flags (see
            :func:`discolib.samplers.guided.mirror`).
        transformation_percent: fractions of the steps run at which symmetry is applied.
        symmetry_any_sampler: apply symmetry with PLMS and DPM++ too (Disco: DDIM only).
        guidance: the CLIP guidance.
    """

    diffusion_model: str
    use_secondary_model: bool
    secondary_model: str
    gradient_checkpointing: bool
    sampler: str
    eta: float
    clip_denoised: bool
    skip_steps: int
    init_scale: float
    init_loss: str = "lpips"
    perlin_init: bool
    perlin_mode: str
    perlin_init_every_frame: bool = True
    fuzzy_prompt: bool
    rand_mag: float
    use_horizontal_symmetry: bool
    use_vertical_symmetry: bool
    transformation_percent: tuple[float, ...]
    symmetry_any_sampler: bool = False
    guidance: GuidanceConfig


@dataclass(frozen=True, kw_only=True)
class LatentConfig(SamplerConfig):
    """The latent (Stable Diffusion family) sampler (:class:`discolib.samplers.latent.LatentSampler`).

    Besides :class:`SamplerConfig`'s fields (width and height multiples of the VAE factor, 8):

    Attributes:
        latent_model: preset name, hub id or local diffusers folder.
        fast_vae: an AutoencoderTiny id that decodes previews *and* frames; ``""`` decodes with the full VAE.
        scheduler: scheduler name (see :func:`discolib.models.latent.scheduler_names`).
        cfg_scale: classifier-free guidance scale when a request brings none.
        negative_prompt: the negative prompt when a request's prompts have no negative part.
        eta: DDIM's eta (Deforum's ``ddim_eta``; schedulers without one ignore it).
        single_file_config: for a ``.safetensors`` latent_model, where its configs are (empty: the family's).
        lora, lora_scale: a LoRA fused into the model at load, and its strength.
        t5, offload_text_encoders, vae_tiling, fp8_weights: memory options of the loader
            (:func:`discolib.models.latent.load_latent_components`).
        guidance: optional CLIP guidance, on when ``guidance.clip_guidance_scale > 0``.
    """

    latent_model: str
    fast_vae: str
    scheduler: str
    cfg_scale: float
    negative_prompt: str
    eta: float = 0.0
    single_file_config: str = ""
    lora: str = ""
    lora_scale: float = 1.0
    t5: bool = True
    offload_text_encoders: bool = False
    vae_tiling: bool = False
    fp8_weights: bool = False
    guidance: GuidanceConfig
