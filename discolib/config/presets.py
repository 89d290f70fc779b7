"""Named presets: settings overrides that pick models and sizes (applied by ``discolib init --preset``).

Real presets name real weights (hub ids or Disco catalogue names) and need network access or a local copy;
the ``tiny*`` presets use tiny random-weight models built in-process, run offline on a CPU in seconds, and
go through the same loading code as the real ones.
"""

from __future__ import annotations

import difflib
from typing import Any

from discolib.config.settings import Settings, SettingsError

__all__ = ["PRESETS", "apply_preset", "preset_mode"]

_TINY_ANIMATION: dict[str, Any] = {
    "animation.max_frames": 8,
    "animation.translation_z": "0: (2)",
    "animation.rotation_3d_y": "0: (1)",
    "animation.zoom": "0: (1.02)",
    "animation.angle": "0: (1)",
    "animation.translation_x": "0: (1)",
    "animation.frames_skip_steps": "50%",
    "animation.sampling_mode": "bilinear",
    "output.fps": 8,
}

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "image.mode": "guided",
        "run.batch_name": "tiny",
        "run.seed": 42,
        "run.n_batches": 1,
        "run.display_rate": 2,
        "image.width": 64,
        "image.height": 64,
        "image.steps": 10,
        "guidance.skip_steps": 0,
        "guidance.cutn_batches": 1,
        "guidance.cut_overview": "[2]*400+[1]*600",
        "guidance.cut_innercut": "[2]*400+[2]*600",
        "models.diffusion_model": "tiny",
        "models.secondary_model": "tiny",
        "models.clip_models": ["tiny-vit", "tiny-rn"],
        "models.depth_model": "tiny-depth-anything",
        "models.device": "cpu",
        "prompts.text_prompts": {"0": ["a lighthouse in a stormy sea:2", "yellow color scheme"]},
        **_TINY_ANIMATION,
    },
    "tiny-latent": {
        "image.mode": "latent",
        "run.batch_name": "tiny-latent",
        "run.seed": 42,
        "run.n_batches": 1,
        "run.display_rate": 1,
        "image.width": 64,
        "image.height": 64,
        "image.steps": 4,
        "models.latent_model": "tiny-latent",
        "models.depth_model": "tiny-depth-anything",
        "models.device": "cpu",
        "prompts.text_prompts": {"0": "a lighthouse in a stormy sea --neg blurry", "4": "a castle on a hill --neg blurry"},
        **_TINY_ANIMATION,
    },
    "disco-512": {
        "image.mode": "guided",
        "models.diffusion_model": "512x512_diffusion_uncond_finetune_008100",
        "image.width": 1280,
        "image.height": 768,
    },
    "disco-256": {
        "image.mode": "guided",
        "models.diffusion_model": "256x256_diffusion_uncond",
        "image.width": 512,
        "image.height": 512,
    },
    "sd-1.5": {"image.mode": "latent", "models.latent_model": "sd-1.5", "image.steps": 25, "latent.cfg_scale": 7.0},
    "sd-turbo": {
        "image.mode": "latent",
        "models.latent_model": "sd-turbo",
        "models.fast_vae": "madebyollin/taesd",
        # 4 steps with Deforum strength 0.5 leaves int(4 * 0.5) = 2 denoising steps per animation frame; with
        # fewer steps img2img would run none and frames would only be moved, never diffused.
        "image.steps": 4,
        "latent.cfg_scale": 0.0,
        "latent.scheduler": "euler_a",
        "animation.cfg_scale_schedule": "0: (0)",
        "animation.strength_schedule": "0: (0.5)",
    },
}


def _check(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise SettingsError(f"unknown preset {name!r}{hint} (known: {', '.join(PRESETS)})", field="--preset")
    return PRESETS[name]


def preset_mode(name: str) -> str:
    """The sampler family (``guided`` or ``latent``) a preset is for."""
    return str(_check(name)["image.mode"])


def apply_preset(settings: Settings, name: str) -> Settings:
    """Apply a preset's overrides to ``settings`` in place (the mode must match) and return it."""
    preset = _check(name)
    if preset["image.mode"] != settings.image.mode:
        raise SettingsError(
            f"preset {name!r} is for {preset['image.mode']} mode, but image.mode is {settings.image.mode!r}",
            field="--preset",
        )
    for key, value in preset.items():
        settings.set(key, value)
    return settings
