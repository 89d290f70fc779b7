"""The latent model presets and the latent loader's errors: plain data, no diffusers import.

:mod:`discolib.models.latent` (the loader) and :mod:`discolib.models.single_file` both use them, and the
availability check reads the presets without importing diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

from discolib.errors import InputError, WeightsUnavailable

__all__ = [
    "LATENT_PRESETS",
    "TAESD_ID",
    "TINY_INPAINT_PRESET",
    "TINY_LATENT_PRESET",
    "LatentModelError",
    "LatentModelUnavailable",
    "LatentPreset",
]

TAESD_ID = "madebyollin/taesd"
#: The offline presets built in-process (their ``model_id`` is their name): a plain and an inpainting UNet.
TINY_LATENT_PRESET = "tiny-latent"
TINY_INPAINT_PRESET = "tiny-latent-inpaint"


class LatentModelError(InputError):
    """A latent model cannot be loaded: bad folder layout, unknown preset, refused weights file, or offline."""


class LatentModelUnavailable(LatentModelError, WeightsUnavailable):
    """A latent model's weights are not on this machine and cannot be fetched (offline, not on the hub)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message, reason=reason or "latent model not available")


# --------------------------------------------------------------------------------------------------------------
# Presets (which model a name means; the settings each works best with are in discolib.config.presets)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentPreset:
    """A named latent model: where its weights are (``model_id``), its family and its preview VAE.

    ``tiny``: built in-process with random weights (:func:`tiny_family_folder`); its ``model_id`` is its name.

    Recommended steps, guidance scale, scheduler and size live in :mod:`discolib.config.presets` only.
    """

    name: str
    model_id: str
    preview_vae: str | None = TAESD_ID
    notes: str = ""
    family: str = "sd"
    tiny: bool = False


LATENT_PRESETS: dict[str, LatentPreset] = {
    p.name: p
    for p in (
        LatentPreset(
            TINY_LATENT_PRESET, TINY_LATENT_PRESET, preview_vae="tiny", tiny=True,
            notes="random tiny weights built in-process (tests, CPU smoke runs); images are noise",
        ),
        LatentPreset(
            TINY_INPAINT_PRESET, TINY_INPAINT_PRESET, preview_vae="tiny", tiny=True,
            notes="tiny-latent with an inpainting UNet (9 input channels), built in-process (tests)",
        ),
        *(
            LatentPreset(f"tiny-{fam}", f"tiny-{fam}", preview_vae=None, family=fam, tiny=True,
                         notes=f"random tiny {fam} components built in-process (tests); images are noise")
            for fam in ("sdxl", "sd3", "flux", "kolors", "hunyuandit")
        ),
        LatentPreset("sd-1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5", notes="Deforum's usual model"),
        LatentPreset(
            "sd-2.1-base", "stabilityai/stable-diffusion-2-1-base",
            notes="epsilon-prediction 512px SD 2.1; its CLIP is OpenCLIP ViT-H",
        ),
        LatentPreset(
            "sd-turbo", "stabilityai/sd-turbo",
            notes="adversarially distilled: 1-4 steps, cfg 0 (no CFG); img2img with steps*strength >= 1",
        ),
        LatentPreset(
            "sdxs", "IDKiro/sdxs-512-0.9",
            notes="one-step distilled SD with a small UNet2DConditionModel; its vae/ is an AutoencoderTiny "
            "(loaded by the class named in its config). Not verified here without network access.",
        ),
        LatentPreset("sdxl", "stabilityai/stable-diffusion-xl-base-1.0", preview_vae="madebyollin/taesdxl",
                     family="sdxl", notes="SDXL base 1.0, 1024px, two CLIP text encoders"),
        LatentPreset("sdxl-turbo", "stabilityai/sdxl-turbo", preview_vae="madebyollin/taesdxl", family="sdxl",
                     notes="adversarially distilled SDXL: 512px, 1-4 steps, cfg 0"),
        LatentPreset("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium", preview_vae="madebyollin/taesd3",
                     family="sd3", notes="SD 3.5 Medium (MMDiT-X), three text encoders (T5 optional), flow matching"),
        LatentPreset("sd3.5-large", "stabilityai/stable-diffusion-3.5-large", preview_vae="madebyollin/taesd3",
                     family="sd3", notes="SD 3.5 Large (8B MMDiT), three text encoders (T5 optional)"),
        LatentPreset("sd3.5-large-turbo", "stabilityai/stable-diffusion-3.5-large-turbo",
                     preview_vae="madebyollin/taesd3", family="sd3", notes="SD 3.5 Large Turbo: 4 steps, cfg 0"),
        LatentPreset("flux-schnell", "black-forest-labs/FLUX.1-schnell", preview_vae="madebyollin/taef1",
                     family="flux", notes="Flux.1 schnell (12B, Apache-2.0): 1-4 steps, no guidance"),
        LatentPreset("flux-dev", "black-forest-labs/FLUX.1-dev", preview_vae="madebyollin/taef1", family="flux",
                     notes="Flux.1 dev (12B, non-commercial licence): ~28 steps, guidance embedding 3.5"),
        LatentPreset("kolors", "Kwai-Kolors/Kolors-diffusers", preview_vae=None, family="kolors",
                     notes="Kolors: SDXL-style UNet with a ChatGLM3 text encoder, Chinese and English prompts"),
        LatentPreset("hunyuandit", "Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers", preview_vae=None,
                     family="hunyuandit", notes="HunyuanDiT 1.2: bilingual CLIP + mT5 text encoders, Chinese/English"),
    )
}
