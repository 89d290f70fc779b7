"""Stable Diffusion XL (base, Turbo, Lightning, LCM-SDXL): two CLIP text encoders, a UNet2DConditionModel with
pooled-text and size/crop conditioning (``addition_embed_type="text_time"``), DDPM-style schedulers.

Everything goes through ``StableDiffusionXLPipeline``'s own methods (``encode_prompt``, ``_get_add_time_ids``,
``get_guidance_scale_embedding``), so prompts and conditioning are the pipeline's to the bit.

SDXL's VAE overflows in float16 (its config says ``force_upcast``): the loader keeps it in float32 when the UNet
runs in float16.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from discolib.models.families.base import Embeds, Family, FamilyError, pooled_embeds, text_device
from discolib.models.tiny_text import tiny_clip_tokenizer
from discolib.ops import seeded

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["FAMILY", "SDXLFamily", "build_tiny_sdxl_unet", "build_tiny_vae", "time_ids_dim"]


def time_ids_dim(pipe: Any) -> int:
    """The pooled-text width ``_get_add_time_ids`` checks against the UNet, as the SDXL pipelines compute it:
    ``text_encoder_2``'s projection, else (no second encoder) the UNet's input minus the six size/crop numbers."""
    te2 = getattr(pipe, "text_encoder_2", None)
    if te2 is not None:
        return int(te2.config.projection_dim)
    cfg = pipe.unet.config
    return int(cfg.projection_class_embeddings_input_dim) - 6 * int(cfg.addition_time_embed_dim)


@dataclass(frozen=True)
class SDXLFamily(Family):
    """SDXL: ``prompt_embeds`` (1, 77, D1 + D2) from both encoders' penultimate layers, ``pooled_prompt_embeds``
    (1, P) from the second encoder's projection; the UNet also gets the size/crop ids (``time_ids``)."""

    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder", "text_encoder_2")

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """A UNet2DConditionModel with pooled text + time ids (``text_time``) and no text projection (Kolors has
        one)."""
        return (
            config.get("_class_name") == "UNet2DConditionModel"
            and config.get("addition_embed_type") == "text_time"
            and config.get("encoder_hid_dim_type") is None
        )

    def _encode(self, comps: LatentComponents, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        pipe = comps.pipe
        # The pipeline puts each encoder's ids on that encoder's device itself; ``device`` is where results go.
        emb, _, pooled, _ = pipe.encode_prompt(
            text, device=text_device(pipe, ("text_encoder_2", "text_encoder")), num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return emb, pooled

    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """``StableDiffusionXLPipeline.encode_prompt`` of ``text`` (the same text for both encoders)."""
        emb, pooled = self._encode(comps, text)
        return pooled_embeds(comps, emb, pooled)

    def negative(self, comps: LatentComponents, text: str) -> Embeds:
        """The unconditional side: with ``force_zeros_for_empty_prompt`` (SDXL base's setting) no negative prompt
        (empty or blank) gives zero embeddings, as the pipeline does when no ``negative_prompt`` is passed;
        otherwise the negative prompt's encoding."""
        e = self.encode(comps, text)
        if not text.strip() and bool(getattr(comps.pipe.config, "force_zeros_for_empty_prompt", False)):
            return {k: torch.zeros_like(v) for k, v in e.items()}
        return e

    def check(self, comps: LatentComponents) -> None:
        """Refuse the SDXL refiner (see :meth:`prepare`) when it loads."""
        self._refuse_refiner(comps)

    def _refuse_refiner(self, comps: LatentComponents) -> None:
        ucfg, pooled_dim = comps.unet.config, time_ids_dim(comps.pipe)
        if int(ucfg.projection_class_embeddings_input_dim) == 5 * int(ucfg.addition_time_embed_dim) + pooled_dim:
            # The refiner's model_index also says StableDiffusionXLImg2ImgPipeline; its UNet takes an aesthetic
            # score instead of the crop (5 ids, not 6), which diffusers' own check would report less clearly.
            raise FamilyError(
                "the model is an SDXL refiner (its UNet is conditioned on an aesthetic score: "
                f"projection_class_embeddings_input_dim={ucfg.projection_class_embeddings_input_dim}); latent mode "
                "runs SDXL base models (e.g. the sdxl and sdxl-turbo presets)"
            )

    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """The size/crop ids (1, 6) as the pipeline's defaults make them (original = target = (height, width), crop
        (0, 0)); LCM-SDXL UNets (``time_cond_proj_dim``) also get the guidance-scale embedding of ``cfg_scale``."""
        pipe, unet = comps.pipe, comps.unet
        pooled_dim = time_ids_dim(pipe)
        self._refuse_refiner(comps)  # (components built by hand skip the loader's check)
        time_ids = pipe._get_add_time_ids(
            (height, width), (0, 0), (height, width), dtype=comps.dtype, text_encoder_projection_dim=pooled_dim
        ).to(comps.device)
        extra: dict[str, Any] = {
            "time_ids": time_ids,
            "channels_last": unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last),
        }
        proj = unet.config.time_cond_proj_dim
        if proj is not None:
            w = torch.tensor(float(cfg_scale) - 1.0).repeat(1)
            extra["timestep_cond"] = pipe.get_guidance_scale_embedding(w, embedding_dim=int(proj)).to(
                device=comps.device, dtype=comps.dtype
            )
        return extra

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """The UNet's output with the pipeline's ``added_cond_kwargs`` (pooled text, time ids), float32."""
        unet = comps.unet
        n = x.shape[0]
        x_in = x.to(comps.dtype)  # the compute dtype (fp8-stored weights compute in bf16/fp16)
        if extra.get("channels_last"):
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        added = {"text_embeds": embeds["pooled_prompt_embeds"], "time_ids": extra["time_ids"].expand(n, -1)}
        cond = extra.get("timestep_cond")
        return unet(
            x_in,
            t,
            encoder_hidden_states=embeds["prompt_embeds"],
            timestep_cond=None if cond is None else cond.expand(n, -1),
            added_cond_kwargs=added,
        ).sample.float()

    def build_tiny(self, folder: Path) -> None:
        """Tiny SDXL: two 32-wide CLIP text encoders on the shipped tiny tokenizer, a two-level UNet, an 8x VAE,
        SDXL's Euler scheduler; saved with ``StableDiffusionXLPipeline.save_pretrained``."""
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        tokenizer = tiny_clip_tokenizer()
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, projection_dim=32, hidden_act="gelu",
        )
        with seeded(0):
            # Re-seeded per module so that one's architecture never changes another's weights.
            unet = build_tiny_sdxl_unet(cross_attention_dim=64, pooled_dim=32)
            torch.manual_seed(0)
            vae = build_tiny_vae()
            torch.manual_seed(0)
            text_encoder = CLIPTextModel(text_config)
            torch.manual_seed(1)
            text_encoder_2 = CLIPTextModelWithProjection(text_config)
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=sdxl_scheduler(EulerDiscreteScheduler),
            force_zeros_for_empty_prompt=True, add_watermarker=False,
        )
        pipe.save_pretrained(folder)  # writes model_index.json last


def sdxl_scheduler(cls: Any) -> Any:
    """SDXL base's scheduler settings (leading spacing, scaled-linear betas) on scheduler class ``cls``."""
    return cls(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
    )


def build_tiny_sdxl_unet(*, cross_attention_dim: int, pooled_dim: int, **extra: Any) -> Any:
    """A tiny SDXL-style UNet (pooled text + six size/crop ids); ``extra`` adds config (Kolors' text projection)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + pooled_dim, cross_attention_dim=cross_attention_dim,
        norm_num_groups=32, **extra,
    )


def build_tiny_vae() -> Any:
    """A tiny 8x AutoencoderKL (four levels, as SDXL's) whose scaling factor gives unit-variance latents;
    ``force_upcast`` stays on, as SDXL's VAE config has it."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64, force_upcast=True,
    )
    # The LDM recipe for the scaling factor: 1 / std of the latents, so the UNet sees unit-variance latents.
    probe = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        std = vae.encode(probe).latent_dist.mode().std()
    vae.register_to_config(scaling_factor=float(1.0 / std))
    return vae


FAMILY = SDXLFamily(
    name="sdxl",
    label="Stable Diffusion XL",
    pipeline="StableDiffusionXLPipeline",
    img2img_pipeline="StableDiffusionXLImg2ImgPipeline",
)
