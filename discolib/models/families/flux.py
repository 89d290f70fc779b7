"""Flux.1 (schnell, dev): a rectified-flow transformer (``FluxTransformer2DModel``) on 2x2-packed latents,
conditioned on T5 token embeddings and CLIP's pooled embedding.

Flux has no classifier-free guidance: dev takes the guidance scale as an input embedding (the render's
``cfg_scale``, 3.5 typical), schnell ignores it. Latents stay unpacked ``(N, 16, h, w)`` in discolib's loop (the warp
and colour matching work on them); :meth:`FluxFamily.predict` packs them for the transformer and unpacks its output
with the pipeline's own ``_pack_latents``/``_unpack_latents``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from discolib.models.families.base import Embeds, Family, FamilyError, pooled_embeds, text_device
from discolib.models.families.sd3 import flow_set_timesteps, t5_length, tiny_vae
from discolib.models.tiny_text import tiny_clip_tokenizer, tiny_t5_tokenizer

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["FAMILY", "FluxFamily", "build_tiny_flux", "max_sequence_length"]

#: ``FluxPipeline.__call__``'s default T5 length (dev's); schnell was distilled with 256 (Black Forest Labs' reference
#: code and its model card), and 256 fewer padding tokens make every transformer call cheaper.
PIPELINE_MAX_SEQUENCE_LENGTH = 512
SCHNELL_MAX_SEQUENCE_LENGTH = 256


def max_sequence_length(pipe: Any, default: int | None = None) -> int:
    """The T5 token count: 512 for dev (guidance embedding), 256 for schnell, or less where the T5 tokenizer allows
    less (tiny models)."""
    if default is None:
        dev = bool(getattr(getattr(pipe, "transformer", None), "config", {}).get("guidance_embeds", True))
        default = PIPELINE_MAX_SEQUENCE_LENGTH if dev else SCHNELL_MAX_SEQUENCE_LENGTH
    return t5_length(pipe, "tokenizer_2", default)


@dataclass(frozen=True)
class FluxFamily(Family):
    """Flux.1: ``prompt_embeds`` (1, T5 length, 4096) from T5 and ``pooled_prompt_embeds`` (1, 768) from CLIP."""

    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder", "text_encoder_2")

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """A ``FluxTransformer2DModel`` that outputs what it takes (not Fill's or Control's wider inputs)."""
        return config.get("_class_name") == "FluxTransformer2DModel" and config.get("out_channels") in (
            None, config.get("in_channels")
        )

    def pipeline_kwargs(self, *, t5: bool = True) -> dict[str, Any]:
        """Flux has no T5-free mode: its prompt embeddings are T5's."""
        if not t5:
            raise FamilyError("Flux.1 needs its T5 text encoder (its prompt embeddings are T5's): set t5 on, or use "
                              "offload_text_encoders to keep it on the CPU")
        return {}

    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """``FluxPipeline.encode_prompt`` of one prompt (both encoders get the same text)."""
        pipe = comps.pipe
        with torch.no_grad():
            embeds, pooled, _ = pipe.encode_prompt(
                prompt=text,
                prompt_2=None,
                device=text_device(pipe, self.text_encoders),
                max_sequence_length=max_sequence_length(pipe),
            )
        return pooled_embeds(comps, embeds, pooled)

    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """Position ids of the image patches and the text tokens, dev's guidance (``cfg_scale``) as a (1,) float32
        tensor (``None`` for schnell, whose transformer has no guidance embedding), and the transformer's compute
        dtype (read once: ``ModelMixin.dtype`` walks every submodule)."""
        pipe = comps.pipe
        dtype = comps.dtype
        factor = int(pipe.vae_scale_factor)
        # Packed grid: the pipeline's latent size rounded to pairs, then halved.
        lh, lw = int(height) // (factor * 2), int(width) // (factor * 2)
        img_ids = pipe._prepare_latent_image_ids(batch, lh, lw, comps.device, dtype)
        txt_ids = torch.zeros(max_sequence_length(pipe), 3, device=comps.device, dtype=dtype)
        guidance = None
        if comps.unet.config.guidance_embeds:
            guidance = torch.full([1], float(cfg_scale), device=comps.device, dtype=torch.float32)
        return {"img_ids": img_ids, "txt_ids": txt_ids, "guidance": guidance, "dtype": dtype}

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """The transformer's velocity on the packed latents, unpacked to x's shape, float32."""
        pipe = comps.pipe
        n, c, h, w = x.shape
        packed = pipe._pack_latents(x.to(extra.get("dtype") or comps.dtype), n, c, h, w)
        timestep = t.expand(n).to(packed.dtype)  # the pipeline casts to the latents' dtype, then divides
        txt_ids = extra["txt_ids"]
        if txt_ids.shape[0] != embeds["prompt_embeds"].shape[1]:  # embeddings made with another T5 length
            txt_ids = torch.zeros(embeds["prompt_embeds"].shape[1], 3, device=txt_ids.device, dtype=txt_ids.dtype)
        guidance = extra.get("guidance")
        out = comps.unet(
            hidden_states=packed,
            timestep=timestep / 1000,
            guidance=None if guidance is None else guidance.expand(n),
            pooled_projections=embeds["pooled_prompt_embeds"],
            encoder_hidden_states=embeds["prompt_embeds"],
            txt_ids=txt_ids,
            img_ids=extra["img_ids"],
            return_dict=False,
        )[0]
        factor = int(pipe.vae_scale_factor)
        return pipe._unpack_latents(out, h * factor, w * factor, factor).float()

    def set_timesteps(self, scheduler: Any, steps: int, *, width: int, height: int) -> None:
        """As FluxPipeline and FluxImg2ImgPipeline: sigmas ``linspace(1, 1/steps, steps)`` and the resolution
        shift ``mu`` from the packed token count (used by dev's dynamic shifting; schnell's scheduler ignores it)."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        cfg = scheduler.config
        sigmas = None if cfg.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / steps, steps)
        factor = 8  # every Flux VAE (and the tiny one) is 8x; set_timesteps does not see the model
        seq_len = (int(height) // factor // 2) * (int(width) // factor // 2)
        mu = calculate_shift(
            seq_len,
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
        flow_set_timesteps(scheduler, steps, sigmas=sigmas, mu=mu)

    def build_tiny(self, folder: Path) -> None:
        """Tiny random Flux.1-dev-like components (see :func:`build_tiny_flux`)."""
        build_tiny_flux(folder)


def build_tiny_flux(folder: Path, *, guidance_embeds: bool = True) -> None:
    """Random tiny Flux.1-like components under fixed seeds, as diffusers' own Flux tests build them (CLIPTextModel,
    T5 encoder, an 8x VAE with 16 latent channels, a transformer with one double and one single block, dev's
    guidance embedding unless ``guidance_embeds`` is off (schnell)), saved with ``save_pretrained``
    (``model_index.json`` last)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from discolib.ops import seeded  # why here: only tiny builds need it

    tokenizer = tiny_clip_tokenizer()
    tokenizer_2 = tiny_t5_tokenizer()
    with seeded(0):
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
            guidance_embeds=guidance_embeds, axes_dims_rope=(4, 4, 8),
        )
        torch.manual_seed(0)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, projection_dim=32, hidden_act="gelu",
        ))
        torch.manual_seed(0)
        text_encoder_2 = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id, decoder_start_token_id=tokenizer_2.pad_token_id,
        ))
        torch.manual_seed(0)
        vae = tiny_vae(16)
    # FLUX.1-dev's scheduler: resolution-dependent shift (schnell's is a fixed shift of 1).
    if guidance_embeds:
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        )
    else:
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2, transformer=transformer,
    )
    pipe.save_pretrained(folder)


FAMILY = FluxFamily(
    name="flux",
    label="Flux.1",
    pipeline="FluxPipeline",
    img2img_pipeline="FluxImg2ImgPipeline",
    denoiser="transformer",
    flow=True,
    uses_cfg=False,
    size_multiple=16,
)
