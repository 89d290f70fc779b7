"""Family detection from a model folder's files: ``model_index.json`` first, else the denoiser's ``config.json``.

The configs below carry the fields diffusers writes in the real repositories (stable-diffusion-v1-5, SDXL base,
SD 3.5 medium, FLUX.1 schnell/dev, Kolors-diffusers, HunyuanDiT v1.2, Stable Video Diffusion, ModelScope t2v,
CogVideoX), trimmed to what identifies them; the tiny folders are the ones ``save_pretrained`` wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from discolib.models.families import FamilyError, detect_family, family_of_config, family_of_index

_SD_BLOCKS = {
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
_XL_BLOCKS = {
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 2, 10], "attention_head_dim": [5, 10, 20], "use_linear_projection": True,
}

DENOISERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sd": ("unet", {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu",
        "attention_head_dim": 8, "cross_attention_dim": 768, "in_channels": 4, "out_channels": 4,
        "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 64, **_SD_BLOCKS,
    }),
    "sdxl": ("unet", {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0.dev0", "act_fn": "silu",
        "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
        "cross_attention_dim": 2048, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "in_channels": 4,
        "out_channels": 4, "layers_per_block": 2, "projection_class_embeddings_input_dim": 2816, "sample_size": 128,
        **_XL_BLOCKS,
    }),
    "kolors": ("unet", {
        "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0.dev0", "act_fn": "silu",
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256, "cross_attention_dim": 2048,
        "encoder_hid_dim": 4096, "encoder_hid_dim_type": "text_proj", "in_channels": 4, "out_channels": 4,
        "layers_per_block": 2, "projection_class_embeddings_input_dim": 5632, "sample_size": 128, **_XL_BLOCKS,
    }),
    "sd3": ("transformer", {
        "_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.31.0.dev0", "attention_head_dim": 64,
        "caption_projection_dim": 1536, "dual_attention_layers": list(range(13)), "in_channels": 16,
        "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 24, "out_channels": 16,
        "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 384, "qk_norm": "rms_norm",
        "sample_size": 128,
    }),
    "flux": ("transformer", {
        "_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0", "attention_head_dim": 128,
        "guidance_embeds": False, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
        "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
    }),
    "hunyuandit": ("transformer", {
        "_class_name": "HunyuanDiT2DModel", "_diffusers_version": "0.29.0.dev0", "activation_fn": "gelu-approximate",
        "attention_head_dim": 88, "cross_attention_dim": 1024, "cross_attention_dim_t5": 2048, "hidden_size": 1408,
        "in_channels": 4, "learn_sigma": True, "mlp_ratio": 4.3637, "norm_type": "layer_norm",
        "num_attention_heads": 16, "num_layers": 40, "pooled_projection_dim": 1024, "sample_size": 128,
        "text_len": 77, "text_len_t5": 256, "use_style_cond_and_image_meta_size": False,
    }),
}

_CLIP = ["transformers", "CLIPTextModel"]
_TOK = ["transformers", "CLIPTokenizer"]
INDEXES: dict[str, dict[str, Any]] = {
    "sd": {"_class_name": "StableDiffusionPipeline", "feature_extractor": ["transformers", "CLIPImageProcessor"],
           "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
           "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": _CLIP, "tokenizer": _TOK,
           "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
    "sdxl": {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
             "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": _CLIP,
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": _TOK,
             "tokenizer_2": _TOK, "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]},
    "kolors": {"_class_name": "KolorsPipeline", "force_zeros_for_empty_prompt": False,
               "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["kolors", "ChatGLMModel"],
               "tokenizer": ["kolors", "ChatGLMTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]},
    "sd3": {"_class_name": "StableDiffusion3Pipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "text_encoder_3": ["transformers", "T5EncoderModel"], "tokenizer": _TOK, "tokenizer_2": _TOK,
            "tokenizer_3": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "SD3Transformer2DModel"],
            "vae": ["diffusers", "AutoencoderKL"]},
    "flux": {"_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": _CLIP, "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": _TOK,
             "tokenizer_2": ["transformers", "T5TokenizerFast"],
             "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
    "hunyuandit": {"_class_name": "HunyuanDiTPipeline", "scheduler": ["diffusers", "DDPMScheduler"],
                   "text_encoder": ["transformers", "BertModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
                   "tokenizer": ["transformers", "BertTokenizer"], "tokenizer_2": ["transformers", "T5Tokenizer"],
                   "transformer": ["diffusers", "HunyuanDiT2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
}
FAMILIES = sorted(DENOISERS)


def _folder(root: Path, *, index: dict[str, Any] | None, sub: str | None = None,
            config: dict[str, Any] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if index is not None:
        (root / "model_index.json").write_text(json.dumps({**index, "_diffusers_version": "0.30.0"}, indent=2))
    if sub is not None and config is not None:
        (root / sub).mkdir()
        (root / sub / "config.json").write_text(json.dumps(config, indent=2))
    return root


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("name", FAMILIES)
def test_family_from_model_index(tmp_path: Path, name: str) -> None:
    sub, config = DENOISERS[name]
    folder = _folder(tmp_path / name, index=INDEXES[name], sub=sub, config=config)
    assert detect_family(folder).name == name
    assert family_of_index(INDEXES[name]["_class_name"]).name == name


@pytest.mark.parametrize("name", FAMILIES)
def test_family_from_denoiser_config_alone(tmp_path: Path, name: str) -> None:
    """A folder without model_index.json (a denoiser saved on its own) is told by its config."""
    sub, config = DENOISERS[name]
    assert family_of_config(config).name == name
    assert detect_family(_folder(tmp_path / name, index=None, sub=sub, config=config)).name == name
    # An index without a class name (hand-made folders) falls back to the config too.
    assert detect_family(_folder(tmp_path / f"{name}-blank", index={"_class_name": ""}, sub=sub,
                                 config=config)).name == name


@pytest.mark.parametrize(
    ("class_name", "variant"),
    [("StableDiffusionImg2ImgPipeline", "sd"), ("StableDiffusionInpaintPipeline", "sd"),
     ("StableDiffusionXLImg2ImgPipeline", "sdxl"), ("StableDiffusion3Img2ImgPipeline", "sd3"),
     ("FluxImg2ImgPipeline", "flux"), ("KolorsImg2ImgPipeline", "kolors")],
)
def test_img2img_and_variant_indexes(class_name: str, variant: str) -> None:
    assert family_of_index(class_name).name == variant


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_folders_written_by_save_pretrained(name: str) -> None:
    from discolib.models.latent import tiny_family_folder

    assert detect_family(tiny_family_folder(name)).name == name


def test_flux_dev_config_is_flux() -> None:
    assert family_of_config({**DENOISERS["flux"][1], "guidance_embeds": True}).name == "flux"


@pytest.mark.parametrize(
    ("class_name", "words"),
    [("StableVideoDiffusionPipeline", ("video model",)), ("CogVideoXPipeline", ("video model",)),
     ("StableDiffusionUpscalePipeline", ("upscaler",)), ("StableDiffusionControlNetPipeline", ("ControlNet",)),
     ("AudioLDMPipeline", ("audio model",)), ("StableDiffusionXLInpaintPipeline", ("inpainting",)),
     ("WuerstchenPipeline", ())],
)
def test_unsupported_pipeline_named_in_one_line(tmp_path: Path, class_name: str, words: tuple[str, ...]) -> None:
    folder = _folder(tmp_path / "m", index={"_class_name": class_name})
    with pytest.raises(FamilyError) as err:
        detect_family(folder)
    text = _one_line(err)
    assert class_name in text and "cannot run" in text
    for word in words:
        assert word in text
    # The message lists what is supported, so the user knows what would load.
    assert "StableDiffusionXLPipeline" in text and "FluxPipeline" in text


_SVD_UNET = {
    "_class_name": "UNetSpatioTemporalConditionModel", "_diffusers_version": "0.24.0.dev0",
    "addition_time_embed_dim": 256, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal"] * 3 + ["DownBlockSpatioTemporal"], "in_channels": 8,
    "layers_per_block": 2, "num_attention_heads": [5, 10, 20, 20], "num_frames": 25, "out_channels": 4,
    "projection_class_embeddings_input_dim": 768, "sample_size": 96, "transformer_layers_per_block": 1,
    "up_block_types": ["UpBlockSpatioTemporal"] + ["CrossAttnUpBlockSpatioTemporal"] * 3,
}
_T2V_UNET = {
    "_class_name": "UNet3DConditionModel", "_diffusers_version": "0.17.0.dev0", "act_fn": "silu",
    "attention_head_dim": 64, "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"], "in_channels": 4, "layers_per_block": 2,
    "out_channels": 4, "sample_size": 32, "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
}
_COGVIDEO = {
    "_class_name": "CogVideoXTransformer3DModel", "_diffusers_version": "0.30.0.dev0", "attention_head_dim": 64,
    "in_channels": 16, "num_attention_heads": 30, "num_layers": 30, "out_channels": 16, "sample_frames": 49,
    "text_embed_dim": 4096,
}
_FLUX_FILL = {**DENOISERS["flux"][1], "guidance_embeds": True, "in_channels": 384, "out_channels": 64}


@pytest.mark.parametrize(
    ("sub", "config"),
    [("unet", _SVD_UNET), ("unet", _T2V_UNET), ("transformer", _COGVIDEO), ("transformer", _FLUX_FILL)],
    ids=["svd", "unet3d", "cogvideox", "flux-fill"],
)
def test_unsupported_denoiser_config_named_in_one_line(tmp_path: Path, sub: str, config: dict[str, Any]) -> None:
    with pytest.raises(FamilyError) as err:
        family_of_config(config)
    assert config["_class_name"] in _one_line(err)
    with pytest.raises(FamilyError) as err:
        detect_family(_folder(tmp_path / "m", index=None, sub=sub, config=config))
    text = _one_line(err)
    assert config["_class_name"] in text and f"{sub}/" in text and "cannot run" in text


def test_unreadable_or_empty_folders(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text("{not json")
    with pytest.raises(FamilyError, match="model_index.json") as err:
        detect_family(bad)
    _one_line(err)
    bad_cfg = _folder(tmp_path / "bad-cfg", index=None)
    (bad_cfg / "unet").mkdir()
    (bad_cfg / "unet" / "config.json").write_text("[1, 2")
    with pytest.raises(FamilyError, match="config.json"):
        detect_family(bad_cfg)
    with pytest.raises(FamilyError, match="neither model_index.json") as err:
        detect_family(_folder(tmp_path / "empty", index=None))
    _one_line(err)
