"""The real architectures with random weights, for speed tests and GPU smoke runs where weights cannot be fetched.

``models.random_weights`` (off by default) lets the loaders fall back to these when the real weights are not
reachable: the model then has the exact shape and cost of the real one, and its images are noise. A warning says
so every time. The configs are those published with each model (diffusers/transformers ``config.json`` files),
written out here so that nothing needs the network:

* Disco's guided-diffusion UNets: the hyper-parameters in ``discolib/data/disco_models.json``; the secondary model
  at its released width 64;
* Stable Diffusion 1.5 and SD-Turbo (the SD 2.1 UNet and OpenCLIP ViT-H text encoder) and TAESD;
* Depth Anything V2 Small.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import UNet2DModel

from discolib.errors import InputError
from discolib.models.adm import AdmConfig, adm_unet_config
from discolib.models.secondary import SecondaryDiffusionImageNet2

__all__ = ["LATENT_ARCHS", "LATENT_SCHEDULERS", "SD_SCHEDULER", "SD_VAE", "RandomWeightsWarning", "random_depth_anything_small", "random_adm_unet", "random_latent_components", "random_secondary", "warn_random"]


class RandomWeightsWarning(UserWarning):
    """Real weights were unavailable; a random-weight model of the same architecture is used (images are noise)."""


@contextlib.contextmanager
def _seeded(seed: int = 0) -> Iterator[None]:
    """Random weights, but the same ones every time (a repeated or resumed run gives the same frames)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def warn_random(what: str, reason: str) -> None:
    warnings.warn(
        f"{what}: real weights unavailable ({reason}); using the same architecture with RANDOM weights "
        "(models.random_weights is on): speed is real, images are noise",
        RandomWeightsWarning,
        stacklevel=3,
    )


SD_SCHEDULER: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "clip_sample": False,
}

SD_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

# The UNet shape shared by SD 1.x and 2.x; they differ in text width, head layout and projection.
_SD_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": _DOWN,
    "up_block_types": _UP,
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
}

#: preset -> (UNet2DConditionModel config, CLIPTextConfig kwargs)
LATENT_ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "sd-1.5": (
        {**_SD_UNET, "cross_attention_dim": 768, "attention_head_dim": 8},
        {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
         "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 768},
    ),
    "sd-turbo": (
        {**_SD_UNET, "cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True},
        {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23, "num_attention_heads": 16,
         "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512},
    ),
}


#: Schedulers the presets ship with, where they differ from SD 1.x's PNDM (SD-Turbo: Euler, "trailing" spacing).
LATENT_SCHEDULERS: dict[str, dict[str, Any]] = {
    "sd-turbo": {
        **SD_SCHEDULER,
        "_class_name": "EulerDiscreteScheduler",
        "timestep_spacing": "trailing",
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
    },
}


def random_adm_unet(name: str) -> torch.nn.Module:
    """A Disco catalogue UNet (``name``) with random weights."""
    from discolib.models.adm import AdmConfig, adm_unet_config
    from discolib.models.hub import catalogue_entry

    cls, kwargs = adm_unet_config(AdmConfig.from_dict(catalogue_entry(name)["adm"]))
    with _seeded():
        return cls(**kwargs).eval().requires_grad_(False)


def random_secondary() -> torch.nn.Module:
    """Disco's secondary model at its released width (64) with random weights."""
    from discolib.models.secondary import SecondaryDiffusionImageNet2

    with _seeded():
        return SecondaryDiffusionImageNet2(64).eval().requires_grad_(False)


def random_latent_components(preset: str, *, device: torch.device, dtype: torch.dtype, fast_vae: bool) -> Any:
    """``LatentComponents`` of ``preset`` (``sd-1.5`` or ``sd-turbo``) with random weights.

    The tokenizer is the tiny one shipped with discolib (the prompt text does not change the cost of a step).
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from discolib.models.latent import TINY_TOKENIZER_DIR, LatentComponents

    if preset not in LATENT_ARCHS:
        raise InputError(f"models.latent_model: no random-weight architecture for {preset!r}; known: {', '.join(LATENT_ARCHS)}")
    unet_cfg, text_cfg = LATENT_ARCHS[preset]
    tokenizer = CLIPTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    with _seeded():
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**SD_VAE)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **text_cfg))
        preview = AutoencoderTiny() if fast_vae else None  # diffusers' defaults are TAESD's architecture
    parts = [unet, vae, text] + ([preview] if preview is not None else [])
    for m in parts:
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LatentComponents(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        scheduler_config=dict(LATENT_SCHEDULERS.get(preset, SD_SCHEDULER)),
        preview_vae=preview,
        name=f"{preset} (random weights)",
    )


def random_depth_anything_small(device: torch.device, dtype: torch.dtype, *, input_size: int | None = None) -> Any:
    """Depth Anything V2 Small's architecture (DINOv2-S backbone, DPT head) with random weights, input 518
    (or ``input_size``)."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    from discolib.models.depth import TransformersDepth

    backbone = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        patch_size=14,
        image_size=518,
        out_indices=[3, 6, 9, 12],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
        head_hidden_size=32,
    )
    processor = DPTImageProcessor(
        size={"height": 518, "width": 518},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    with _seeded():
        model = DepthAnythingForDepthEstimation(config).eval()
    return TransformersDepth(
        model, processor, device=device, dtype=dtype, input_size=input_size, name="Depth-Anything-V2-Small (random weights)"
    )


TINY = "tiny"


#: A guided-diffusion hyper-parameter set of the 512 family's shape (scale-shift norm, resblock up/down,
#: learned sigma, attention at the lowest resolution) at toy width.
TINY_ADM: dict[str, object] = {
    "image_size": 64,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "32",
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "learn_sigma": True,
}


def build_tiny_adm_unet(seed: int = 0) -> UNet2DModel:
    """The ``tiny`` guided-diffusion UNet: :data:`TINY_ADM` through the real config conversion, random weights."""
    cls, kwargs = adm_unet_config(AdmConfig.from_dict(TINY_ADM))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**kwargs)
    model.eval().requires_grad_(False)
    return model


def build_tiny_secondary(seed: int = 0) -> SecondaryDiffusionImageNet2:
    """The ``tiny`` secondary model: the real architecture at base width 8, random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SecondaryDiffusionImageNet2(c=8)
    model.eval().requires_grad_(False)
    return model
