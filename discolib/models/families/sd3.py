"""Stable Diffusion 3 / 3.5: an MMDiT (``SD3Transformer2DModel``) conditioned on two CLIP text encoders (with
projection: last-but-one hidden states and pooled embeddings) and an optional T5 encoder, sampled by flow matching.

Without T5 (``t5=False``: saves ~10 GB in bf16) the pipeline puts zeros where the T5 tokens would be, as diffusers
does, so prompts still work with somewhat weaker text following.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from discolib.models.families.base import Embeds, Family, pooled_embeds, text_device
from discolib.models.tiny_text import tiny_clip_tokenizer, tiny_t5_tokenizer

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["FAMILY", "SD3Family", "build_tiny_sd3", "flow_set_timesteps", "max_sequence_length", "t5_length"]

#: ``StableDiffusion3Pipeline.__call__``'s default T5 length.
PIPELINE_MAX_SEQUENCE_LENGTH = 256
# The transformer's patch size and the VAE's factor, for the dynamic shift's token count (``set_timesteps`` sees only
# the scheduler): every SD 3 / 3.5 release (and the tiny model) has 2x2 patches and an 8x VAE.
PATCH_SIZE = 2
VAE_FACTOR = 8


def t5_length(pipe: Any, tokenizer: str, default: int) -> int:
    """The T5 token count a pipeline encodes with: ``default``, or less where its T5 tokenizer (the pipeline
    attribute ``tokenizer``) allows less (tiny models)."""
    limit = getattr(getattr(pipe, tokenizer, None), "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < default:
        return limit
    return default


def max_sequence_length(pipe: Any, default: int = PIPELINE_MAX_SEQUENCE_LENGTH) -> int:
    """SD 3.5's T5 token count (:func:`t5_length` of ``tokenizer_3``)."""
    return t5_length(pipe, "tokenizer_3", default)


def flow_set_timesteps(scheduler: Any, steps: int, *, sigmas: Any = None, mu: float | None = None) -> None:
    """``retrieve_timesteps`` on the host: custom ``sigmas`` and ``mu`` where the scheduler takes them (another
    flow scheduler a user picked may not), else the plain step count."""
    accepts = set(inspect.signature(scheduler.set_timesteps).parameters)
    kwargs: dict[str, Any] = {}
    if mu is not None and "mu" in accepts:
        kwargs["mu"] = mu
    if sigmas is not None and "sigmas" in accepts:
        scheduler.set_timesteps(sigmas=sigmas, device="cpu", **kwargs)
    else:
        scheduler.set_timesteps(steps, device="cpu", **kwargs)


@dataclass(frozen=True)
class SD3Family(Family):
    """SD 3 / 3.5: ``prompt_embeds`` (1, 77 + T5 length, joint_attention_dim) and ``pooled_prompt_embeds``."""

    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder", "text_encoder_2", "text_encoder_3")

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """An ``SD3Transformer2DModel`` (SD 3.0, 3.5 Medium/Large/Turbo)."""
        return config.get("_class_name") == "SD3Transformer2DModel"

    def pipeline_kwargs(self, *, t5: bool = True) -> dict[str, Any]:
        """Without T5: the pipeline is loaded with no third text encoder and tokenizer."""
        return {} if t5 else {"text_encoder_3": None, "tokenizer_3": None}

    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """``StableDiffusion3Pipeline.encode_prompt`` of one prompt (all three encoders get the same text)."""
        pipe = comps.pipe
        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt=text,
                prompt_2=None,
                prompt_3=None,
                device=text_device(pipe, self.text_encoders),
                do_classifier_free_guidance=False,
                max_sequence_length=max_sequence_length(pipe),
            )
        return pooled_embeds(comps, embeds, pooled)

    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """The transformer's compute dtype, read once per call: ``ModelMixin.dtype`` walks every submodule."""
        return {"dtype": comps.dtype}

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """The transformer's velocity (``noise - x0``), float32, as the pipeline calls it."""
        model = comps.unet
        return model(
            hidden_states=x.to(extra.get("dtype") or comps.dtype),
            timestep=t.expand(x.shape[0]),
            encoder_hidden_states=embeds["prompt_embeds"],
            pooled_projections=embeds["pooled_prompt_embeds"],
            return_dict=False,
        )[0].float()

    def set_timesteps(self, scheduler: Any, steps: int, *, width: int, height: int) -> None:
        """As the pipeline: the step count, plus ``mu`` from the image's token count when the scheduler shifts
        dynamically (the SD 3.5 schedulers shift by a fixed 3.0 instead)."""
        cfg = scheduler.config
        mu = None
        if cfg.get("use_dynamic_shifting", None):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            seq_len = (int(height) // VAE_FACTOR // PATCH_SIZE) * (int(width) // VAE_FACTOR // PATCH_SIZE)
            mu = calculate_shift(
                seq_len,
                cfg.get("base_image_seq_len", 256),
                cfg.get("max_image_seq_len", 4096),
                cfg.get("base_shift", 0.5),
                cfg.get("max_shift", 1.16),
            )
        flow_set_timesteps(scheduler, steps, mu=mu)

    def build_tiny(self, folder: Path) -> None:
        """Tiny random SD 3.5-like components (see :func:`build_tiny_sd3`)."""
        build_tiny_sd3(folder)


def build_tiny_sd3(folder: Path) -> None:
    """Random tiny SD 3.5-like components under fixed seeds, as diffusers' own SD3 tests build them (two CLIP text
    encoders with projection, a T5 encoder, an 8x VAE with 16 latent channels, a patch-2 MMDiT with RMS q/k norm),
    saved with ``save_pretrained`` (``model_index.json`` last)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    from discolib.ops import seeded  # why here: only tiny builds need it

    tokenizer = tiny_clip_tokenizer()
    tokenizer_3 = tiny_t5_tokenizer()

    def clip_config(hidden: int) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, projection_dim=hidden, hidden_act="gelu",
        )

    with seeded(0):
        transformer = SD3Transformer2DModel(
            sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
            num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
            pooled_projection_dim=32 + 16, pos_embed_max_size=64, qk_norm="rms_norm",
        )
        torch.manual_seed(0)
        text_encoder = CLIPTextModelWithProjection(clip_config(32))
        torch.manual_seed(0)
        # Different widths for the two CLIPs, as SD3's L (768) and G (1280): the concatenation is then tested.
        text_encoder_2 = CLIPTextModelWithProjection(clip_config(16))
        torch.manual_seed(0)
        text_encoder_3 = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer_3), d_model=64, d_kv=8, d_ff=37, num_layers=1, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=tokenizer_3.pad_token_id,
            eos_token_id=tokenizer_3.eos_token_id, decoder_start_token_id=tokenizer_3.pad_token_id,
        ))
        torch.manual_seed(0)
        vae = tiny_vae()
    # SD 3.5's scheduler: a fixed shift of 3, no resolution-dependent shift.
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer, text_encoder_3=text_encoder_3, tokenizer_3=tokenizer_3,
    )
    pipe.save_pretrained(folder)


def tiny_vae(latent_channels: int = 16) -> Any:
    """An 8x AutoencoderKL (four levels, as the real ones) with ``latent_channels`` and the LDM recipe for its
    scaling and shift: latents of unit variance and zero mean on random images."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, latent_channels=latent_channels, norm_num_groups=8, sample_size=64,
        use_quant_conv=False, use_post_quant_conv=False,
    )
    g = torch.Generator().manual_seed(1)
    probe = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        lat = vae.encode(probe).latent_dist.mode()
    vae.register_to_config(shift_factor=float(lat.mean()), scaling_factor=float(1.0 / lat.std()))
    return vae


FAMILY = SD3Family(
    name="sd3",
    label="Stable Diffusion 3.5",
    pipeline="StableDiffusion3Pipeline",
    img2img_pipeline="StableDiffusion3Img2ImgPipeline",
    denoiser="transformer",
    flow=True,
    size_multiple=16,
)
