"""Named presets: settings overrides that pick models and sizes (applied by ``discolib init --preset``).

Real presets name real weights (hub ids or Disco catalogue names) and need network access or a local copy;
the ``tiny*`` presets use tiny random-weight models built in-process, run offline on a CPU in seconds, and
go through the same loading code as the real ones.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from discolib.config.settings import Settings, SettingsError

__all__ = ["PRESETS", "PRESET_INFO", "PresetInfo", "apply_preset", "preset_listing", "preset_mode"]

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

# Live mode starts still: the session's controls set the motion of each frame as it is made.
_LIVE_ANIMATION: dict[str, Any] = {
    "animation.animation_mode": "3D",
    **{f"animation.{axis}": "0: (0)" for axis in ("translation_x", "translation_y", "translation_z", "rotation_3d_x",
                                                  "rotation_3d_y", "rotation_3d_z")},
    "animation.strength_schedule": "0: (0.5)",
    "animation.noise_schedule": "0: (0.02)",
    "animation.cadence": 1,
}

# tiny-latent's model, size and device: offline on a CPU in seconds (tiny-latent and tiny-live).
_TINY_LATENT: dict[str, Any] = {
    "image.mode": "latent",
    "run.seed": 42,
    "image.width": 64,
    "image.height": 64,
    "image.steps": 4,
    "models.latent_model": "tiny-latent",
    "models.depth_model": "tiny-depth-anything",
    "models.device": "cpu",
}

# Few-step models: Deforum strength 0.5 with 4 steps leaves 2 denoising steps per animation frame (diffusers'
# img2img runs int(steps * strength) of them, the flow models' rule gives the same here); with fewer steps a frame
# could get none and would only be moved, never diffused.
_FEW_STEP_STRENGTH = "0: (0.5)"


def _latent(model: str, *, size: int, steps: int, cfg: float, scheduler: str = "default", few_steps: bool = False,
            **extra: Any) -> dict[str, Any]:
    """A latent preset's settings: the model, its recommended size, steps, guidance and scheduler (``"default"`` =
    the scheduler its repository ships), and the animation's CFG schedule set to the same guidance."""
    bundle: dict[str, Any] = {
        "image.mode": "latent",
        "models.latent_model": model,
        "image.width": size,
        "image.height": size,
        "image.steps": steps,
        "latent.cfg_scale": cfg,
        "latent.scheduler": scheduler,
        # Animation frames take their guidance from this schedule, not latent.cfg_scale: keep the two the same.
        "animation.cfg_scale_schedule": f"0: ({cfg:g})",
    }
    if few_steps:
        bundle["animation.strength_schedule"] = _FEW_STEP_STRENGTH
    bundle.update({k.replace("__", "."): v for k, v in extra.items()})
    return bundle


def _tiny_family(name: str, *, steps: int = 3, negative: bool = True) -> dict[str, Any]:
    """A tiny-<family> preset: tiny-latent's offline CPU settings with that family's random tiny model. 64 px is a
    multiple of 16, which every family needs (VAE factor 8 times the transformers' 2x2 patches)."""
    neg = " --neg blurry" if negative else ""
    return {
        "image.mode": "latent",
        "run.batch_name": name,
        "run.seed": 42,
        "run.n_batches": 1,
        "run.display_rate": 1,
        "image.width": 64,
        "image.height": 64,
        "image.steps": steps,
        "latent.scheduler": "default",
        "models.latent_model": name,
        "models.depth_model": "tiny-depth-anything",
        "models.device": "cpu",
        "prompts.text_prompts": {"0": f"a lighthouse in a stormy sea{neg}", "4": f"a castle on a hill{neg}"},
        **_TINY_ANIMATION,
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
        **_TINY_LATENT,
        "run.batch_name": "tiny-latent",
        "run.n_batches": 1,
        "run.display_rate": 1,
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
    # Both were trained at 512^2 (larger sizes repeat the subject); 512^2 is Deforum's default too.
    "sd-1.5": {
        # (no size: these two predate the family presets and keep the size the user or the defaults set)
        "image.mode": "latent", "models.latent_model": "sd-1.5", "image.steps": 25, "latent.cfg_scale": 7.0,
    },
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
    # ---- the other latent model families; numbers from each model card (or diffusers' pipeline defaults)
    "sd-2.1-base": _latent("sd-2.1-base", size=512, steps=25, cfg=7.5),
    # One-step distilled; 2 steps so that an animation frame (strength 0.5) still gets one denoising step.
    "sdxs": _latent("sdxs", size=512, steps=2, cfg=0.0, few_steps=True),
    "sdxl": _latent("sdxl", size=1024, steps=30, cfg=7.0),
    # Its card: 512^2, 1-4 steps, guidance 0; its own scheduler is Euler ancestral with trailing spacing.
    "sdxl-turbo": _latent("sdxl-turbo", size=512, steps=4, cfg=0.0, few_steps=True,
                          models__fast_vae="madebyollin/taesdxl"),
    # ByteDance's 4-step LoRA on SDXL base: Euler with "trailing" timesteps and guidance 0, as its card says.
    "sdxl-lightning": _latent(
        "sdxl", size=1024, steps=4, cfg=0.0, scheduler="euler_trailing", few_steps=True,
        models__latent_lora="ByteDance/SDXL-Lightning/sdxl_lightning_4step_lora.safetensors",
    ),
    # LCM-LoRA: the LCM scheduler, 2-8 steps, guidance off or 1-2 (its card); 1 here, which turns CFG off.
    "lcm-sdxl": _latent("sdxl", size=1024, steps=4, cfg=1.0, scheduler="lcm", few_steps=True,
                        models__latent_lora="latent-consistency/lcm-lora-sdxl"),
    "sd3.5-medium": _latent("sd3.5-medium", size=1024, steps=40, cfg=4.5),
    "sd3.5-large": _latent("sd3.5-large", size=1024, steps=28, cfg=3.5),
    "sd3.5-large-turbo": _latent("sd3.5-large-turbo", size=1024, steps=4, cfg=0.0, few_steps=True),
    # schnell has no guidance at all: cfg_scale is ignored (0 says so).
    "flux-schnell": _latent("flux-schnell", size=1024, steps=4, cfg=0.0, few_steps=True),
    # dev: cfg_scale is Flux's guidance embedding (3.5 in its card), not CFG; 28 is diffusers' default step count.
    "flux-dev": _latent("flux-dev", size=1024, steps=28, cfg=3.5),
    "kolors": _latent("kolors", size=1024, steps=50, cfg=5.0),
    "hunyuandit": _latent("hunyuandit", size=1024, steps=50, cfg=5.0),
    # ---- live mode (discolib.live): a still camera to start from (the keys move it), 3D, every frame diffused
    "tiny-live": {
        **{k: v for k, v in _TINY_ANIMATION.items() if k.startswith("output.")},
        **_TINY_LATENT,
        "run.batch_name": "live",
        "run.display_rate": 0,
        "prompts.text_prompts": {"0": "a lighthouse in a stormy sea --neg blurry"},
        **_LIVE_ANIMATION,
    },
    # 1 denoising step a frame (2 steps at strength 0.5), TAESD decodes, compiled: the real-time settings on CUDA.
    "sd-turbo-live": {
        "image.mode": "latent",
        "run.batch_name": "live",
        "run.display_rate": 0,
        "models.latent_model": "sd-turbo",
        "models.fast_vae": "madebyollin/taesd",
        "models.depth_model": "depth-anything/Depth-Anything-V2-Small-hf",
        "models.compile": True,
        "image.width": 512,
        "image.height": 512,
        "image.steps": 2,
        "latent.cfg_scale": 0.0,
        "latent.scheduler": "euler_a",
        "prompts.text_prompts": {"0": "a lighthouse in a stormy sea, concept art, matte painting"},
        **_LIVE_ANIMATION,
        "animation.cfg_scale_schedule": "0: (0)",
        "output.fps": 24,
    },
    # ---- tiny random models of each family: offline, CPU, seconds (tests and smoke runs)
    **{f"tiny-{fam}": _tiny_family(f"tiny-{fam}", negative=fam != "flux")
       for fam in ("sdxl", "sd3", "flux", "kolors", "hunyuandit")},
}


@dataclass(frozen=True)
class PresetInfo:
    """What a preset needs, for ``discolib init --list-presets`` and the README's table.

    The numbers are approximate (``about``): GPU memory at the preset's size with every model part on the GPU
    (and with the memory options where they help) is an ESTIMATE from the weights' sizes plus working memory, not a
    measurement (no GPU was available; ``benchmarks/bench_families.py --device cuda`` measures it), the weights'
    download on first use, and the licence of the weights (the code is MIT; the weights are the model makers', under
    their own terms).
    """

    family: str
    vram: str
    download: str
    licence: str
    good_for: str


_TINY_INFO = dict(vram="none (CPU, seconds)", download="none (built in-process)",
                  licence="n/a (random weights)")
_OPENRAIL_PP = "CreativeML Open RAIL++-M"
_SAI_NC = "Stability AI Non-Commercial Research Community License (commercial use: a Stability AI licence)"
_SAI_COMMUNITY = "Stability AI Community License (free below USD 1M annual revenue)"
_SD3_MEMORY = "; text_encoder_t5=false or offload_text_encoders=true save about 9 GB"
_FLUX_MEMORY = "; about 24 GB with offload_text_encoders=true; with fp8_weights=true too about 14 GB, unmeasured"

PRESET_INFO: dict[str, PresetInfo] = {
    "tiny": PresetInfo("guided", **_TINY_INFO, good_for="tests and offline smoke runs of the guided mode"),
    "tiny-latent": PresetInfo("sd", **_TINY_INFO, good_for="tests and offline smoke runs of the latent mode"),
    **{f"tiny-{fam}": PresetInfo(fam, **_TINY_INFO, good_for=f"tests and offline smoke runs of the {fam} family")
       for fam in ("sdxl", "sd3", "flux", "kolors", "hunyuandit")},
    "tiny-live": PresetInfo("sd", **_TINY_INFO, good_for="tests and offline runs of live mode"),
    "sd-turbo-live": PresetInfo("sd", "about 5 GB (estimate; with the depth model)", "about 3-5 GB", _SAI_NC,
                                "live mode: flying through a 512 px world in real time (1 step a frame)"),
    "disco-512": PresetInfo(
        "guided", "about 16 GB at 1280x768 with 3 CLIP models (estimate)",
        "about 3 GB (diffusion model and CLIP models)",
        "MIT (OpenAI guided-diffusion and CLIP; Disco's fine-tune)", "Disco Diffusion's painterly look",
    ),
    "disco-256": PresetInfo(
        "guided", "about 10 GB at 512x512 (estimate)", "about 3 GB (diffusion model and CLIP models)",
        "MIT (OpenAI guided-diffusion and CLIP)", "Disco Diffusion on a smaller card",
    ),
    "sd-1.5": PresetInfo("sd", "about 4 GB (estimate)", "about 2-4 GB", "CreativeML OpenRAIL-M",
                         "Deforum's classic model; the most fine-tunes and LoRAs"),
    "sd-2.1-base": PresetInfo("sd", "about 4 GB (estimate)", "about 3-5 GB", _OPENRAIL_PP, "512 px SD 2 look"),
    "sd-turbo": PresetInfo("sd", "about 4 GB (estimate)", "about 3-5 GB", _SAI_NC,
                           "fast 512 px animation (1-4 steps)"),
    "sdxs": PresetInfo("sd", "about 3 GB (estimate)", "about 2.5 GB", _OPENRAIL_PP,
                       "the fastest 512 px drafts (1 step)"),
    "sdxl": PresetInfo("sdxl", "about 10 GB (estimate; 8 GB with offload_text_encoders=true)", "about 7 GB",
                       _OPENRAIL_PP, "detailed 1024 px images; a large LoRA ecosystem"),
    "sdxl-turbo": PresetInfo("sdxl", "about 8 GB (estimate)", "about 7 GB", _SAI_NC,
                             "real-time SDXL animation at 512 px (1-4 steps)"),
    "sdxl-lightning": PresetInfo("sdxl", "about 10 GB (estimate)", "about 7.5 GB (SDXL and a 0.4 GB LoRA)",
                                 f"{_OPENRAIL_PP} (SDXL and the LoRA)", "1024 px SDXL in 4 steps"),
    "lcm-sdxl": PresetInfo("sdxl", "about 10 GB (estimate)", "about 7.5 GB (SDXL and a 0.4 GB LoRA)",
                           f"{_OPENRAIL_PP} (SDXL and the LoRA)", "any SDXL fine-tune in 4-8 steps"),
    "sd3.5-medium": PresetInfo("sd3", f"about 18 GB (estimate){_SD3_MEMORY}", "about 16 GB (T5 is about 9.5 GB of it)",
                               _SAI_COMMUNITY, "prompt adherence and lettering on 12-24 GB cards"),
    "sd3.5-large": PresetInfo("sd3", f"about 28 GB (estimate){_SD3_MEMORY}", "about 28 GB", _SAI_COMMUNITY,
                              "the best SD 3.5 quality"),
    "sd3.5-large-turbo": PresetInfo("sd3", f"about 28 GB (estimate){_SD3_MEMORY}", "about 28 GB", _SAI_COMMUNITY,
                                    "SD 3.5 Large in 4 steps"),
    "flux-schnell": PresetInfo("flux", f"about 34 GB (estimate){_FLUX_MEMORY}", "about 34 GB", "Apache-2.0",
                               "top quality in 4 steps; commercial use allowed"),
    "flux-dev": PresetInfo("flux", f"about 34 GB (estimate){_FLUX_MEMORY}", "about 34 GB",
                           "FLUX.1 [dev] Non-Commercial License", "top quality and detail (non-commercial)"),
    "kolors": PresetInfo("kolors", "about 19 GB (estimate; about 9 GB with offload_text_encoders=true)",
                         "about 19 GB (ChatGLM3 text encoder about 12 GB)",
                         "Kolors licence (free for research; commercial use after registering with Kuaishou)",
                         "Chinese and English prompts; photorealism"),
    "hunyuandit": PresetInfo("hunyuandit", "about 14 GB (estimate; about 7 GB with offload_text_encoders=true)",
                             "about 14 GB", "Tencent Hunyuan Community License",
                             "Chinese and English prompts; Chinese subjects and styles"),
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


def preset_listing() -> str:
    """The text of ``discolib init --list-presets``: each preset with its mode/family, steps and size, then what it
    needs (GPU memory, download, licence of the weights) and what it is good for."""
    lines = []
    for name, bundle in PRESETS.items():
        info = PRESET_INFO[name]
        steps = bundle.get("image.steps")
        size = f"{bundle['image.width']}x{bundle['image.height']}" if "image.width" in bundle else "default size"
        head = f"{name}  ({bundle['image.mode']} mode, {info.family} family"
        head += f", {steps} steps, {size})" if steps is not None else f", {size})"
        lines += [
            head,
            f"    good for: {info.good_for}",
            f"    VRAM:     {info.vram}",
            f"    download: {info.download}",
            f"    licence:  {info.licence}",
        ]
    return "\n".join(lines) + "\n"
