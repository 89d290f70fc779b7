"""Kolors (Kwai): an SDXL-style UNet whose text comes from ChatGLM3, a bilingual (Chinese/English) language model,
through a learned projection (``encoder_hid_dim_type="text_proj"``). Prompts may be Chinese, English or mixed.

Conditioning is ``KolorsPipeline.encode_prompt``'s: ChatGLM's penultimate hidden states over 256 left-padded tokens
and its last token's final state as the pooled embedding; the UNet call is SDXL's (pooled text + size/crop ids).
"""

from __future__ import annotations

import os
import string
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from discolib.models.families.base import Embeds, pooled_embeds, text_device
from discolib.models.families.sdxl import SDXLFamily, build_tiny_sdxl_unet, build_tiny_vae
from discolib.ops import seeded

if TYPE_CHECKING:  # why: only for annotations; latent.py imports the families
    from discolib.models.latent import LatentComponents

__all__ = ["FAMILY", "KolorsFamily", "write_tiny_chatglm_tokenizer"]

#: Token length of Kolors' prompts (``KolorsPipeline.encode_prompt``'s ``max_sequence_length``).
MAX_SEQUENCE_LENGTH = 256


@dataclass(frozen=True)
class KolorsFamily(SDXLFamily):
    """Kolors: ``prompt_embeds`` (1, 256, H) and ``pooled_prompt_embeds`` (1, H) from ChatGLM; SDXL's UNet call
    (the UNet projects the text to its cross-attention width itself). Kolors' configs encode an empty negative
    prompt (``force_zeros_for_empty_prompt`` is off); were it on, both negative embeddings would be zeros, as SDXL's
    (KolorsPipeline itself fails then: it has no zero pooled embedding)."""

    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """An SDXL-style UNet (``text_time``) that projects its text input (``encoder_hid_dim_type="text_proj"``)."""
        return (
            config.get("_class_name") == "UNet2DConditionModel"
            and config.get("addition_embed_type") == "text_time"
            and config.get("encoder_hid_dim_type") == "text_proj"
        )

    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """``KolorsPipeline.encode_prompt`` of ``text`` (any mix of Chinese and English)."""
        pipe = comps.pipe
        emb, _, pooled, _ = pipe.encode_prompt(
            text, device=text_device(pipe, self.text_encoders), num_images_per_prompt=1, do_classifier_free_guidance=False,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
        return pooled_embeds(comps, emb, pooled)

    def build_tiny(self, folder: Path) -> None:
        """Tiny Kolors: a 2-layer, 32-wide ChatGLM on a tiny SentencePiece tokenizer, an SDXL-style UNet with a text
        projection, an 8x VAE, Kolors' Euler scheduler (1100 training steps); saved with
        ``KolorsPipeline.save_pretrained``."""
        import tempfile

        from diffusers import EulerDiscreteScheduler, KolorsPipeline
        from diffusers.pipelines.kolors import ChatGLMModel, ChatGLMTokenizer
        from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig


        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = ChatGLMTokenizer.from_pretrained(str(write_tiny_chatglm_tokenizer(tmp)))
            config = ChatGLMConfig(
                num_layers=2, padded_vocab_size=tokenizer.vocab_size, hidden_size=32, ffn_hidden_size=37,
                kv_channels=8, num_attention_heads=4, seq_length=MAX_SEQUENCE_LENGTH, multi_query_attention=True,
                multi_query_group_num=2, add_qkv_bias=True, original_rope=True, use_cache=False,
            )
            with seeded(0):
                unet = build_tiny_sdxl_unet(
                    cross_attention_dim=64, pooled_dim=config.hidden_size, encoder_hid_dim_type="text_proj",
                    encoder_hid_dim=config.hidden_size,
                )
                torch.manual_seed(0)
                vae = build_tiny_vae()
                torch.manual_seed(0)
                # empty_init=False: ChatGLM's default skips weight initialisation (it expects a checkpoint).
                text_encoder = ChatGLMModel(config, empty_init=False)
                with torch.no_grad():
                    for name, p in text_encoder.named_parameters():
                        if "layernorm" in name:  # RMSNorm weights start as torch.empty in ChatGLM
                            p.fill_(1.0)
            scheduler = EulerDiscreteScheduler(
                num_train_timesteps=1100, beta_start=0.00085, beta_end=0.014, beta_schedule="scaled_linear",
                steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
            )
            pipe = KolorsPipeline(
                vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                force_zeros_for_empty_prompt=False,
            )
            pipe.save_pretrained(folder)  # writes model_index.json last; re-reads tokenizer.model from tmp


# ----------------------------------------------------------------------------------------------------------------
# A tiny ChatGLM tokenizer: a SentencePiece unigram model written as its protobuf, byte-for-byte deterministic
# ----------------------------------------------------------------------------------------------------------------

_WORDS = ("a", "the", "castle", "in", "fog", "of", "and", "city", "night", "photo", "forest", "mountain")
_CJK = "雾中的城堡夜晚山水猫狗城市森林一张照片和"


def _varint(n: int) -> bytes:
    if n < 0:  # protobuf encodes negative int32 as 64-bit two's complement
        n += 1 << 64
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def tiny_sentencepiece_model() -> bytes:
    """A SentencePiece ``ModelProto`` (unigram, byte fallback): ``<unk>``/``<s>``/``</s>`` as ids 0/1/2 (as ChatGLM3's),
    the 256 byte pieces, a few whole English words, ASCII letters and digits, and a few CJK characters. Any text
    (any script, emoji) encodes without loss through the byte pieces."""
    normal, unknown, control, byte = 1, 2, 3, 6  # SentencePiece.Type
    pieces: list[tuple[str, float, int]] = [("<unk>", 0.0, unknown), ("<s>", 0.0, control), ("</s>", 0.0, control)]
    pieces += [(f"<0x{b:02X}>", 0.0, byte) for b in range(256)]
    pieces += [("▁" + w, -5.0, normal) for w in _WORDS]
    pieces += [("▁", -3.0, normal)]
    pieces += [(c, -8.0, normal) for c in string.ascii_letters + string.digits + ".,!?'-:()"]
    pieces += [(c, -6.0, normal) for c in dict.fromkeys(_CJK)]
    # ModelProto: 1 pieces {1 piece, 2 score, 3 type}, 2 trainer_spec {3 model_type=UNIGRAM, 4 vocab_size,
    # 35 byte_fallback}, 3 normalizer_spec {1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
    # 5 escape_whitespaces}.
    proto = b"".join(
        _field_bytes(1, _field_bytes(1, p.encode("utf-8")) + _field_float(2, s) + _field_int(3, t))
        for p, s, t in pieces
    )
    proto += _field_bytes(2, _field_int(3, 1) + _field_int(4, len(pieces)) + _field_int(35, 1))
    proto += _field_bytes(3, _field_bytes(1, b"identity") + _field_int(3, 1) + _field_int(4, 1) + _field_int(5, 1))
    return proto


def write_tiny_chatglm_tokenizer(folder: str | os.PathLike[str]) -> Path:
    """Write a tiny ChatGLM tokenizer (``tokenizer.model`` + ``tokenizer_config.json``, loadable with
    ``diffusers.pipelines.kolors.ChatGLMTokenizer.from_pretrained``) into ``folder``; the same bytes every time."""
    # why imported here: it needs sentencepiece, and only tiny builds use it
    from diffusers.pipelines.kolors import ChatGLMTokenizer

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model = out / "tokenizer.model"
    model.write_bytes(tiny_sentencepiece_model())
    ChatGLMTokenizer(vocab_file=str(model)).save_pretrained(out)
    return out


FAMILY = KolorsFamily(
    name="kolors",
    label="Kolors",
    pipeline="KolorsPipeline",
    img2img_pipeline="KolorsImg2ImgPipeline",
)
