"""Stable Diffusion 1.x / 2.x (and their distilled and inpainting variants): one CLIP text encoder, a
UNet2DConditionModel conditioned on its last hidden state, DDPM-style schedulers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from discolib.models.families.base import Embeds, Family

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["FAMILY", "SDFamily"]


@dataclass(frozen=True)
class SDFamily(Family):
    """SD 1.x/2.x: ``prompt_embeds`` (1, 77, D) from the CLIP text encoder's last layer."""

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """A UNet2DConditionModel without SDXL's pooled/size conditioning or Kolors' text projection."""
        return (
            config.get("_class_name") == "UNet2DConditionModel"
            and config.get("addition_embed_type") is None
            and config.get("encoder_hid_dim_type") is None
        )

    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """As ``StableDiffusionPipeline.encode_prompt`` with the default clip_skip: pad to the tokenizer's maximum
        length, take the text encoder's last hidden state."""
        tok = comps.tokenizer
        ids = tok(text, padding="max_length", max_length=int(tok.model_max_length), truncation=True,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            emb = comps.text_encoder(ids.to(comps.text_encoder.device))[0]
        return {"prompt_embeds": emb.to(device=comps.device, dtype=comps.dtype)}

    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """Whether the UNet runs channels-last (then its input is made channels-last too: no layout conversion
        inside every convolution)."""
        return {"channels_last": comps.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)}

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """The UNet's output (epsilon, v or x0, per the scheduler's prediction_type), float32."""
        unet = comps.unet
        x_in = x.to(comps.dtype)  # the compute dtype (fp8-stored weights compute in bf16/fp16)
        if extra.get("channels_last"):
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        return unet(x_in, t, encoder_hidden_states=embeds["prompt_embeds"]).sample.float()

    def build_tiny(self, folder: Path) -> None:
        """The tiny-latent model (see :func:`discolib.models.latent.tiny_latent_folder`)."""
        from discolib.models.latent import _build_tiny_latent  # why: latent.py imports this module at load

        _build_tiny_latent(folder)


FAMILY = SDFamily(
    name="sd",
    label="Stable Diffusion 1.x/2.x",
    pipeline="StableDiffusionPipeline",
    img2img_pipeline="StableDiffusionImg2ImgPipeline",
    # Pipelines of the same components (LCM-distilled SD, PAG): they loaded as SD before families existed.
    pipeline_names=("StableDiffusionInpaintPipeline", "LatentConsistencyModelPipeline", "StableDiffusionPAGPipeline"),
)
