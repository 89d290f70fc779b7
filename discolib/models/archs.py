"""The real architectures with random weights, for speed tests and GPU smoke runs where weights cannot be fetched.

``models.random_weights`` (off by default) lets the loaders of :mod:`discolib.models.load` fall back to these when
the real weights are not reachable: the model then has the exact shape and cost of the real one, and its images are
noise. A warning says so every time. The configs are those published with each model (diffusers/transformers ``config.json`` files),
shipped as data so that nothing needs the network:

* Disco's guided-diffusion UNets: the hyper-parameters in ``discolib/data/disco_models.json``; the secondary model
  at its released width 64 (built here);
* Stable Diffusion 1.5 and SD-Turbo (the SD 2.1 UNet and OpenCLIP ViT-H text encoder), the SD VAE and scheduler:
  ``discolib/data/archs/*.json``, one file per model as open_clip's ``model_configs`` (built by
  :func:`discolib.models.latent.random_latent_components`; TAESD is diffusers' default ``AutoencoderTiny``);
* SDXL-Turbo, Stable Diffusion 3.5 Medium and FLUX.1 [schnell] (every component of each, as its diffusers
  pipeline): :data:`FAMILY_ARCHS`, built by :func:`discolib.models.families.random.random_family_components`;
* Depth Anything V2 Small (:func:`discolib.models.depth.random_depth_anything_small`).

The ``tiny`` guided-diffusion UNet and secondary model (random weights at toy width, for tests) are built here too.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch
from diffusers import UNet2DModel

from discolib.models.adm import AdmConfig, adm_unet_config
from discolib.models.hub import catalogue_entry
from discolib.models.secondary import SecondaryDiffusionImageNet2
from discolib.ops import seeded

__all__ = [
    "FAMILY_ARCHS",
    "LATENT_ARCHS",
    "LATENT_SCHEDULERS",
    "SD_SCHEDULER",
    "SD_VAE",
    "TINY",
    "TINY_ADM",
    "build_tiny_adm_unet",
    "build_tiny_secondary",
    "random_adm_unet",
    "random_secondary",
]


def _arch(name: str) -> dict[str, Any]:
    """The packaged architecture file ``discolib/data/archs/<name>.json``."""
    text = resources.files("discolib").joinpath(f"data/archs/{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


#: Stable Diffusion 1.x's scheduler config (PNDM), the base of the latent presets' schedulers.
SD_SCHEDULER: dict[str, Any] = _arch("sd-scheduler")["config"]
#: The Stable Diffusion VAE (``AutoencoderKL`` kwargs) of SD 1.x and 2.x.
SD_VAE: dict[str, Any] = _arch("sd-vae")["config"]

# The latent presets that have a random-weight architecture, each described by data/archs/<preset>.json.
_LATENT_ARCH_FILES = {name: _arch(name) for name in ("sd-1.5", "sd-turbo")}

#: preset -> (UNet2DConditionModel config, CLIPTextConfig kwargs)
LATENT_ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    name: (arch["unet"], arch["text_encoder"]) for name, arch in _LATENT_ARCH_FILES.items()
}

#: Schedulers the presets ship with, where they differ from SD 1.x's PNDM (SD-Turbo: Euler, "trailing" spacing).
LATENT_SCHEDULERS: dict[str, dict[str, Any]] = {
    name: arch["scheduler"] for name, arch in _LATENT_ARCH_FILES.items() if "scheduler" in arch
}

#: The latent presets of the other families (SDXL, SD 3.5, Flux.1) with a random-weight architecture: preset ->
#: the whole of ``data/archs/<preset>.json``: ``family``, ``pipeline`` (diffusers class and its extra kwargs),
#: ``denoiser`` (component name), ``components`` (name -> ``{"class", "config"}``: each model's published
#: ``config.json`` minus metadata), ``tokenizers`` (name -> ``{"kind": "clip" | "t5", "model_max_length"}``),
#: ``scheduler`` (its ``scheduler_config.json``) and ``preview_vae`` (``AutoencoderTiny`` kwargs of its TAESD-style
#: preview decoder). Built by :func:`discolib.models.families.random.random_family_components`.
FAMILY_ARCHS: dict[str, dict[str, Any]] = {
    name: _arch(name) for name in ("sdxl-turbo", "sd3.5-medium", "flux-schnell")
}


def random_adm_unet(name: str) -> torch.nn.Module:
    """A Disco catalogue UNet (``name``) with random weights."""
    cls, kwargs = adm_unet_config(AdmConfig.from_dict(catalogue_entry(name)["adm"]))
    # Seed 0: random weights, but the same ones every time (a repeated or resumed run gives the same frames).
    with seeded(0):
        return cls(**kwargs).eval().requires_grad_(False)


def random_secondary() -> torch.nn.Module:
    """Disco's secondary model at its released width (64) with random weights."""
    with seeded(0):
        return SecondaryDiffusionImageNet2(64).eval().requires_grad_(False)


TINY = "tiny"


#: A guided-diffusion hyper-parameter set of the 512 family's shape (scale-shift norm, resblock up/down,
#: learned sigma, attention at the lowest resolution) at toy width.
TINY_ADM: dict[str, object] = _arch("tiny-adm")["config"]


def build_tiny_adm_unet(seed: int = 0) -> UNet2DModel:
    """The ``tiny`` guided-diffusion UNet: :data:`TINY_ADM` through the real config conversion, random weights."""
    cls, kwargs = adm_unet_config(AdmConfig.from_dict(TINY_ADM))
    with seeded(seed):
        model = cls(**kwargs)
    model.eval().requires_grad_(False)
    return model


def build_tiny_secondary(seed: int = 0) -> SecondaryDiffusionImageNet2:
    """The ``tiny`` secondary model: the real architecture at base width 8, random weights."""
    with seeded(seed):
        model = SecondaryDiffusionImageNet2(c=8)
    model.eval().requires_grad_(False)
    return model
