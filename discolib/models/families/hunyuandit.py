"""HunyuanDiT (Tencent): a bilingual Chinese/English latent diffusion transformer.

Two text encoders condition a :class:`~diffusers.HunyuanDiT2DModel`: a BERT-style bilingual CLIP text tower
(``text_encoder``, 77 tokens; its BertTokenizer splits CJK text into single characters) and mT5 (``text_encoder_2``,
256 tokens). The transformer also takes 2D rotary position embeddings of the latent grid, an image-size vector and
a style id, and predicts twice the latent channels (a learned variance the pipeline drops). The scheduler is a
DDPM-style v-prediction one, so every variance-preserving solver of :func:`discolib.models.latent.make_scheduler`
runs from its config.

diffusers has no HunyuanDiT img2img pipeline (``img2img_pipeline`` is ``""`` unless an installed release adds
``HunyuanDiTImg2ImgPipeline``): img2img here noises the init latents with the scheduler's ``add_noise`` at the first
remaining timestep and runs ``int(steps * strength)`` steps (SD's step rule), the same DDPM maths as
:class:`~diffusers.StableDiffusionImg2ImgPipeline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from discolib.models.families.base import Embeds, Family, FamilyError

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["BERT_CJK", "BERT_WORDS", "FAMILY", "HunyuanDiTFamily", "write_tiny_bert_tokenizer"]

#: Token lengths the pipeline pads to (its ``__call__`` fixes them; the transformer's padding table has this size).
CLIP_TOKENS = 77
T5_TOKENS = 256
#: The pipeline's image-size conditioning defaults: ``original_size`` and ``crops_coords_top_left``.
ORIGINAL_SIZE = (1024, 1024)
CROP_TOP_LEFT = (0, 0)

#: Whole English words of the tiny BERT vocabulary (lower case: the tokenizer lower-cases).
BERT_WORDS: tuple[str, ...] = (
    "a", "the", "castle", "in", "fog", "of", "and", "city", "night", "photo", "forest", "painting", "cat", "on",
)
#: CJK characters of the tiny BERT vocabulary (BERT tokenises CJK one character at a time).
BERT_CJK = "雾中的城堡夜晚山水猫狗市森林花月"


def write_tiny_bert_tokenizer(folder: str | os.PathLike[str]) -> Path:
    """Write a tiny BertTokenizer (``vocab.txt`` + config) into ``folder``: the five special tokens, a few English
    words, CJK characters, ASCII letters as word pieces (so unknown English words split instead of becoming
    ``[UNK]``) and some punctuation. Deterministic: the same files every time."""
    from transformers import BertTokenizer  # why: only tiny builds need it; transformers is heavy to import

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *dict.fromkeys(BERT_CJK)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens += [*letters, *(f"##{c}" for c in letters), *".,!?'-:()，。"]
    tokens = list(dict.fromkeys(tokens))  # why: "a" is both a word and a letter
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    vocab = out / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    BertTokenizer(str(vocab), model_max_length=CLIP_TOKENS).save_pretrained(str(out))
    return out


def _installed_img2img_pipeline() -> str:
    """``"HunyuanDiTImg2ImgPipeline"`` when the installed diffusers has it, else ``""`` (none up to 0.42)."""
    import diffusers  # why: a lazy module; latent.py has imported it before any family is used

    name = "HunyuanDiTImg2ImgPipeline"
    return name if hasattr(diffusers, name) else ""


@dataclass(frozen=True)
class HunyuanDiTFamily(Family):
    """HunyuanDiT 1.x: embeds ``prompt_embeds`` (1, 77, D) and ``prompt_attention_mask`` (1, 77) from the bilingual
    CLIP, ``prompt_embeds_2`` (1, 256, D_t5) and ``prompt_attention_mask_2`` (1, 256) from mT5 (masks stay integer:
    blending weighted prompts ORs them)."""

    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder", "text_encoder_2")

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """A HunyuanDiT2DModel transformer."""
        return config.get("_class_name") == "HunyuanDiT2DModel"

    def pipeline_kwargs(self, *, t5: bool = True) -> dict[str, Any]:
        """No safety checker (the pipeline's optional one is not part of the latent loop).

        Raises:
            FamilyError: ``t5=False``: the transformer's conditioning always includes the mT5 embeddings.
        """
        if not t5:
            raise FamilyError("HunyuanDiT cannot run without its mT5 text encoder (text_encoder_2): the transformer "
                              "always takes its embeddings; set the T5 option on")
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    # ---------------------------------------------------------------------------------------------- prompts
    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """Both encoders through ``HunyuanDiTPipeline.encode_prompt``, with the lengths and dtype its ``__call__``
        passes (77 and 256 tokens, the transformer's dtype)."""
        pipe = comps.pipe
        out: Embeds = {}
        for index, (length, suffix) in enumerate(((CLIP_TOKENS, ""), (T5_TOKENS, "_2"))):
            encoder = pipe.text_encoder if index == 0 else pipe.text_encoder_2
            with torch.no_grad():
                emb, _, mask, _ = pipe.encode_prompt(
                    prompt=text, device=encoder.device, dtype=comps.dtype, num_images_per_prompt=1,
                    do_classifier_free_guidance=False, max_sequence_length=length, text_encoder_index=index,
                )
            out["prompt_embeds" + suffix] = emb.to(comps.device)
            out["prompt_attention_mask" + suffix] = mask.to(comps.device)
        return out

    # ---------------------------------------------------------------------------------------------- denoising
    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """The pipeline's per-call constants, batch 1: ``image_rotary_emb`` (cos, sin) of the latent patch grid
        cropped into the 512 px base grid, ``image_meta_size`` (original size 1024x1024, target size, crop 0,0) and
        ``style`` 0.

        The pipeline measures the grid as ``height // 8 // patch_size``; 8 is every HunyuanDiT VAE's factor, so the
        real factor is used here (the same numbers, and the grid that matches the latents of any VAE).
        """
        # why here: the pipeline module's own helpers (its grid crop), imported when a HunyuanDiT model runs
        from diffusers.models.embeddings import get_2d_rotary_pos_embed
        from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

        tr = comps.unet
        patch = int(tr.config.patch_size)
        f = comps.vae_scale_factor
        grid = (height // f // patch, width // f // patch)
        base = 512 // 8 // patch
        rope = get_2d_rotary_pos_embed(
            tr.inner_dim // tr.num_heads, get_resize_crop_region_for_grid(grid, base), grid,
            device=comps.device, output_type="pt",
        )
        meta = torch.tensor([[*ORIGINAL_SIZE, height, width, *CROP_TOP_LEFT]], dtype=comps.dtype, device=comps.device)
        style = torch.zeros(1, dtype=torch.long, device=comps.device)
        return {"image_rotary_emb": rope, "image_meta_size": meta, "style": style}

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """The transformer's prediction (v for HunyuanDiT's scheduler) without the learned-variance half, float32."""
        tr = comps.unet
        n = x.shape[0]
        x_in = x.to(comps.dtype)  # the compute dtype (fp8-stored weights compute in bf16/fp16)
        # why contiguous/repeat: the transformer flattens the T5 embeds and the size vector with .view, which an
        # expanded (stride-0) batch cannot take; .contiguous() is free for the CFG batch (already concatenated).
        out = tr(
            x_in,
            t.reshape(-1).expand(n).to(x_in.dtype),
            encoder_hidden_states=embeds["prompt_embeds"].contiguous(),
            text_embedding_mask=embeds["prompt_attention_mask"],
            encoder_hidden_states_t5=embeds["prompt_embeds_2"].contiguous(),
            text_embedding_mask_t5=embeds["prompt_attention_mask_2"],
            image_meta_size=extra["image_meta_size"].repeat(n, 1),
            style=extra["style"].repeat(n),
            image_rotary_emb=extra["image_rotary_emb"],
            return_dict=False,
        )[0]
        if out.shape[1] != x.shape[1]:  # learned sigma: the pipeline keeps the first half
            out = out.chunk(2, dim=1)[0]
        return out.float()

    # ---------------------------------------------------------------------------------------------- tiny
    def build_tiny(self, folder: Path) -> None:
        """Tiny random HunyuanDiT components (sizes as diffusers' own pipeline tests, an 8x VAE as the real one's so
        the pipeline's grid maths holds), tokenizers written in-process, saved with ``save_pretrained``."""
        # why here: only tiny builds (tests, offline smoke runs) need these classes and the tokenizer writers
        import tempfile

        from diffusers import AutoencoderKL, DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
        from transformers import (
            BertConfig,
            BertModel,
            BertTokenizer,
            T5Config,
            T5EncoderModel,
        )

        from discolib.models.tiny_text import tiny_t5_tokenizer  # why: tiny builds only (see above)
        from discolib.ops import seeded  # why: tiny builds only (see above)

        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = BertTokenizer.from_pretrained(str(write_tiny_bert_tokenizer(Path(tmp) / "bert")))
        tokenizer_2 = tiny_t5_tokenizer(model_max_length=T5_TOKENS)
        with seeded(0):
            transformer = HunyuanDiT2DModel(
                sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=3,
                in_channels=4, cross_attention_dim=32, cross_attention_dim_t5=32, pooled_projection_dim=16,
                hidden_size=24, activation_fn="gelu-approximate", text_len=CLIP_TOKENS, text_len_t5=T5_TOKENS,
            )
            torch.manual_seed(0)
            vae = AutoencoderKL(
                in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.13025,
            )
            torch.manual_seed(0)
            text_encoder = BertModel(BertConfig(
                vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                intermediate_size=37, max_position_embeddings=CLIP_TOKENS + 3, pad_token_id=tokenizer.pad_token_id,
            ))
            torch.manual_seed(0)
            text_encoder_2 = T5EncoderModel(T5Config(
                vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False,
            ))
        # HunyuanDiT 1.2's schedule: scaled-linear betas to 0.018, v-prediction.
        scheduler = DDPMScheduler(
            beta_start=0.00085, beta_end=0.018, beta_schedule="scaled_linear", prediction_type="v_prediction",
            variance_type="fixed_small", clip_sample=False, steps_offset=1, timestep_spacing="leading",
        )
        pipe = HunyuanDiTPipeline(
            vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, transformer=transformer.eval(),
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            text_encoder_2=text_encoder_2.eval(), tokenizer_2=tokenizer_2,
        )
        pipe.save_pretrained(str(folder))  # why: writes model_index.json last, marking a complete folder


FAMILY = HunyuanDiTFamily(
    name="hunyuandit",
    label="HunyuanDiT",
    pipeline="HunyuanDiTPipeline",
    img2img_pipeline=_installed_img2img_pipeline(),
    denoiser="transformer",
    size_multiple=16,
    pipeline_names=("HunyuanDiTPAGPipeline",),
)
