"""The one Settings schema of discolib: defaults, validation, JSON load/save, `--set` overrides.

Settings are grouped (``run``, ``image``, ``models``, ``prompts``, ``guidance``, ``latent``, ``animation``,
``output``). Each field carries metadata (help text, choices, bounds, a ``kind`` such as ``schedule``) that the
validator, the CLI and the widget panel all read, so there is one source of truth.

Defaults follow Disco Diffusion v5.7 for guided runs and deforum-stable-diffusion for latent runs: the class
defaults are Disco's, :data:`LATENT_DEFAULTS` holds Deforum's where they differ (``Settings.defaults(mode)``,
:meth:`Settings.from_dict` per ``image.mode``). docs/COMPAT.md lists them setting by setting.
Keyframe strings keep the exact syntax of those tools (see :mod:`discolib.schedules.keyframes`).

Units (compatible with Disco and Deforum): ``angle`` and ``rotation_3d_*`` in degrees per frame, 2D
``translation_x/y`` in pixels per frame, ``zoom`` a factor per frame, 3D ``translation_*`` in Disco/Deforum units.
``latent.strength`` and ``animation.strength_schedule`` use Deforum's meaning: the fraction of the init image
*kept* (0.65 keeps most of it; 0 ignores it). The latent sampler itself takes diffusers' denoising strength,
which is ``1 - strength``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import math
import os
import reprlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from discolib.audio import AudioError, AudioFeatures, audio_duration, audio_features, frames_for_duration
from discolib.errors import InputError
from discolib.io.files import write_text_atomic
from discolib.io.inputs import MAX_JSON_DEPTH, expand_path, json_depth_ok, loads_json, read_user_text
from discolib.schedules.cuts import parse_cut_schedule
from discolib.schedules.keyframes import Schedule, validate_schedule
from discolib.schedules.prompts import PromptSchedule

__all__ = [
    "GROUPS",
    "SettingsError",
    "Settings",
    "field_info",
    "iter_fields",
    "normalise_animation_mode",
    "skip_fraction",
    "read_settings_json",
    "short_repr",
]

_UNSET = object()
#: The most frames an animation may have (animation.max_frames' bound; a soundtrack's length is cut to it).
MAX_ANIMATION_FRAMES = 1_000_000


class SettingsError(InputError):
    """A settings value, key or file is invalid. The message names the field and what was expected."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3  # reprlib recurses at most this deep, so a value nested 100 000 levels still shows in one line


def short_repr(value: Any) -> str:
    """A short ``repr`` of a user's value for a one-line error message (never huge, never recursing deeply)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= 200 else text[:197] + "..."


_show = short_repr


def _short_name(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _f(default: Any = _UNSET, *, help: str, factory: Any = None, **meta: Any) -> Any:
    """A dataclass field with discolib metadata (help, choices, min, max, kind, step)."""
    metadata = {"help": help, **meta}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------- groups


@dataclass
class RunSettings:
    """Naming, seeds, batches and where the run folder goes."""

    batch_name: str = _f("TimeToDisco", help="Folder name under the output root that groups runs.", kind="name")
    seed: int = _f(-1, help="Seed of the first image/frame; -1 draws one at random (recorded in run.json).", min=-1, max=2**32 - 1)
    n_batches: int = _f(50, help="Number of images to make for a still run (each with the next seed).", min=1, max=100000)
    output_root: str = _f("outputs", help="Root folder for run folders (<output_root>/<batch_name>/<run id>/).", kind="path")
    display_rate: int = _f(50, help="Call the preview callback every N sampler steps (0 disables previews).", min=0)
    intermediate_saves: int = _f(0, help="Save this many intermediate images per still, evenly spaced over the steps.", min=0, max=1000)


@dataclass
class ImageSettings:
    """What is made: sampler family, size and step count."""

    mode: Literal["guided", "latent"] = _f("guided", help="guided: CLIP-guided pixel diffusion (Disco); latent: Stable Diffusion family (Deforum).")
    width: int = _f(1280, help="Image width in pixels (a multiple of 64 for guided, of 8 for latent).", min=8, max=8192)
    height: int = _f(768, help="Image height in pixels (a multiple of 64 for guided, of 8 for latent).", min=8, max=8192)
    steps: int = _f(250, help="Sampler steps per image.", min=1, max=10000)


@dataclass
class ModelSettings:
    """Model ids (hub ids, catalogue names, local paths or tiny presets), device and precision."""

    diffusion_model: str = _f("512x512_diffusion_uncond_finetune_008100", help="Guided diffusion model: Disco catalogue name, local checkpoint path or 'tiny'.", kind="model")
    use_secondary_model: bool = _f(True, help="Take the CLIP gradient through Disco's cheap secondary model instead of the main model.")
    secondary_model: str = _f("secondary_model_imagenet_2", help="Secondary model: catalogue name, local path or 'tiny'.", kind="model")
    clip_models: list[str] = _f(help="CLIP ensemble: open_clip 'name/pretrained' pairs, Disco names (ViT-B/32), hf-hub: ids, local-dir:/folder, or multilingual models for prompts in any language (xlm-roberta-base-ViT-B-32, xlm-roberta-large-ViT-H-14, nllb-clip-base).", factory=lambda: ["ViT-B/32", "ViT-B/16", "RN50"], kind="clip_models")
    latent_model: str = _f("sd-1.5", help="Latent model (SD 1.x/2.x, SDXL, SD 3.5, Flux.1, Kolors, HunyuanDiT): preset name, hub id, local diffusers folder or one .safetensors checkpoint file.", kind="model")
    fast_vae: str = _f("", help="Optional AutoencoderTiny id (e.g. madebyollin/taesd) used to decode; empty uses the full VAE.", kind="model")
    latent_config: str = _f("", help="When latent_model is one .safetensors file: the hub id or diffusers folder holding its configs (text encoders, scheduler...); empty: the repository of the family diffusers detects in the file.", kind="model")
    latent_lora: str = _f("", help="Optional LoRA fused into the latent model at load (LCM-LoRA, SDXL-Lightning, Hyper-SD ...): a hub id, a local folder or a .safetensors file.", kind="model")
    latent_lora_scale: float = _f(1.0, help="Strength of latent_lora when it is fused (1 = as trained).", min=0.0, max=4.0)
    text_encoder_t5: bool = _f(True, help="Load the T5 text encoder of SD 3.5 (off saves about 9 GB and some prompt fidelity; Flux and HunyuanDiT need theirs).")
    offload_text_encoders: bool = _f(False, help="Keep the latent model's text encoders on the CPU (prompts are encoded once each and cached): saves their GPU memory on 12-24 GB cards.")
    vae_tiling: bool = _f(False, help="Encode and decode large images with the VAE in tiles (less memory at 1024^2 and above; seams are blended).")
    fp8_weights: bool = _f(False, help="Store the latent denoiser's weights in float8 and compute in bf16/fp16 (about half its weight memory, an unmeasured estimate; meant for CUDA; slight quality cost).")
    depth_model: str = _f("depth-anything/Depth-Anything-V2-Small-hf", help="Depth model for 3D: hub id, local folder, 'constant' or a tiny preset.", kind="model")
    depth_model_2: str = _f("", help="Optional second depth model blended with the first (Disco's MiDaS + AdaBins).", kind="model")
    depth_weight_2: float = _f(0.3, help="Weight of the second depth model in the blend (Disco's midas_weight).", min=0.0, max=1.0)
    device: str = _f("auto", help="'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'.", kind="device")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = _f("auto", help="Compute precision; auto picks bf16/fp16 where safe on CUDA, float32 on CPU.")
    threads: int = _f(0, help="CPU threads of a render (torch, OpenCV, the frame writer's PNG encoders); 0 = auto: torch's count (OMP_NUM_THREADS, else the physical cores), at most one less than the CPUs this process may use (affinity, cgroup quota) and at most 8, at least 1, so 1 on a 2-core machine where 2 threads are up to 5x slower whenever anything else runs. A resume keeps its run's count.", min=0, max=1024)
    gradient_checkpointing: bool = _f(False, help="Trade speed for memory on small cards.")
    compile: bool = _f(False, help="torch.compile the models (faster after warm-up on CUDA).")
    random_weights: bool = _f(False, help="When real weights cannot be fetched, use the same architectures with random weights (speed tests, GPU smoke runs: images are noise).")
    models_root: str = _f("", help="Folder for downloaded checkpoints and hub snapshots; empty = $DISCOLIB_MODELS or the cache.", kind="path")


@dataclass
class PromptSettings:
    """Text and image prompts, Disco's {frame: ["text:weight", ...]} or Deforum's {frame: "text --neg neg"}."""

    text_prompts: dict[str, Any] = _f(help="Prompts per frame: {\"0\": [\"a castle:2\", \"fog:-0.5\"]} (Disco) or {\"0\": \"text --neg negative\"} (Deforum).", factory=lambda: {"0": ["A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood by greg rutkowski and thomas kinkade, Trending on artstation.", "yellow color scheme"]}, kind="prompts")
    image_prompts: dict[str, Any] = _f(help="Image prompts per frame (paths or URLs with optional :weight), guided mode.", factory=dict, kind="prompts")
    translate: str = _f("", help="Translate the prompt texts before a latent render: a transformers translation model (hub id such as 'Helsinki-NLP/opus-mt-zh-en' or 'facebook/nllb-200-distilled-600M', or a local folder); empty: off. Weights and --neg parts are kept; the translations are written into run.json.", kind="model")
    translate_from: str = _f("", help="Source language code for multilingual translation models (NLLB: 'zho_Hans', 'jpn_Jpan', 'arb_Arab'); empty for one-pair models such as MarianMT.")
    translate_to: str = _f("", help="Target language code for multilingual translation models; empty: English ('eng_Latn' for NLLB).")


@dataclass
class GuidanceSettings:
    """Disco Diffusion's CLIP guidance and sampler settings (guided mode)."""

    clip_guidance_scale: float = _f(5000.0, help="Strength of the CLIP loss.", min=0.0)
    tv_scale: float = _f(0.0, help="Total-variation loss scale: smooths the image.", min=0.0)
    range_scale: float = _f(150.0, help="Penalises predicted pixel values outside [-1, 1]; only with range_loss_active (a no-op in Disco).", min=0.0)
    sat_scale: float = _f(0.0, help="Saturation loss scale.", min=0.0)
    cutn_batches: int = _f(4, help="Cutout batches per step (gradient accumulated over them).", min=1, max=64)
    cut_overview: str = _f("[12]*400+[4]*600", help="Overview cuts per step over 1000 steps.", kind="cut_schedule")
    cut_innercut: str = _f("[4]*400+[12]*600", help="Inner cuts per step over 1000 steps.", kind="cut_schedule")
    cut_ic_pow: str = _f("[1]*1000", help="Inner-cut size power per step over 1000 steps.", kind="cut_schedule")
    cut_icgray_p: str = _f("[0.2]*400+[0]*600", help="Probability that an inner cut is grey, per step.", kind="cut_schedule")
    skip_augs: bool = _f(False, help="Skip the cutout augmentations.")
    clamp_grad: bool = _f(True, help="Clamp the gradient's RMS to clamp_max.")
    clamp_max: float = _f(0.05, help="Largest RMS of the guidance gradient.", min=0.0)
    sampler: Literal["ddim", "plms", "dpmpp"] = _f("ddim", help="Pixel sampler: ddim (with eta), plms, dpmpp (faster).")
    eta: float = _f(0.8, help="DDIM eta (0 deterministic, 1 DDPM-like).", min=0.0, max=1.0)
    clip_denoised: bool = _f(False, help="Clamp the predicted x0 to [-1, 1].")
    init_image: str = _f("", help="Init image path or URL (empty for none).", kind="path")
    init_scale: float = _f(1000.0, help="Init-image loss scale (init_loss to the init image, or to the Perlin init as Disco).", min=0.0)
    skip_steps: int = _f(10, help="Steps skipped at the start (more keeps more of the init).", min=0)
    perlin_init: bool = _f(False, help="Start from Perlin noise instead of Gaussian noise.")
    perlin_mode: Literal["mixed", "color", "gray"] = _f("mixed", help="Perlin init colour mode.")
    perlin_init_every_frame: bool = _f(True, help="With perlin_init, animation frames start from fresh Perlin noise too, not from the warped previous frame (Disco regenerates the Perlin init for every frame); off keeps the animation's own init.")
    use_vertical_symmetry: bool = _f(False, help="Mirror the top half onto the bottom at the transformation steps (Disco's vertical symmetry).")
    use_horizontal_symmetry: bool = _f(False, help="Mirror the left half onto the right at the transformation steps (Disco's horizontal symmetry).")
    symmetry_any_sampler: bool = _f(False, help="Apply the symmetry transformation with every sampler. Off (Disco): only ddim applies it; Disco's PLMS loop takes no transformation.")
    transformation_percent: list[float] = _f(help="Fractions of the steps at which symmetry is applied.", factory=lambda: [0.09])
    init_loss: Literal["lpips", "mse"] = _f("lpips", help="Init / frames loss: lpips (Disco: VGG LPIPS; backbone weights from torchvision, random only with models.random_weights) or mse (no weights).")
    range_loss_active: bool = _f(False, help="Apply range_scale to the predicted image. Off reproduces Disco, whose range loss is a no-op (computed on a detached tensor).")
    fuzzy_prompt: bool = _f(False, help="Add noise to prompt embeddings (rand_mag).")
    rand_mag: float = _f(0.05, help="Magnitude of fuzzy-prompt noise.", min=0.0)


@dataclass
class LatentSettings:
    """Stable-Diffusion-family settings (latent mode), Deforum's names and meanings."""

    ddim_eta: float = _f(0.0, help="Latent mode: DDIM eta when latent.scheduler is ddim (deforum-stable-diffusion's ddim_eta; it uses 0 for every other sampler).", min=0.0, max=1.0)
    cfg_scale: float = _f(7.0, help="Classifier-free guidance scale (<= 1 disables CFG, e.g. sd-turbo).", min=0.0, max=100.0)
    negative_prompt: str = _f("", help="Negative prompt for CFG (Deforum's --neg per prompt also works).")
    scheduler: str = _f("euler_a", help="Scheduler name: euler_a, euler, dpmpp_2m, ddim, pndm, lcm, heun.", kind="scheduler")
    strength: float = _f(0.65, help="Deforum strength for an init image: fraction of the init kept (0 ignores it).", min=0.0, max=1.0)
    clip_scale: float = _f(0.0, help="Optional CLIP guidance scale in latent mode (0 off; Disco-like values are 100s to 1000s).", min=0.0)


@dataclass
class AnimationSettings:
    """Keyframed motion and coherence (Disco and Deforum)."""

    animation_mode: Literal["None", "2D", "3D", "Video Input"] = _f("None", help="None (stills), 2D, 3D or Video Input.")
    max_frames: int = _f(10000, help="Number of frames of an animation (\"audio\": as long as output.soundtrack, which sets length_from_soundtrack).", min=1, max=MAX_ANIMATION_FRAMES)
    length_from_soundtrack: bool = _f(False, help="Make the animation as long as output.soundtrack at output.fps (max_frames is then ignored); max_frames: \"audio\" in a settings file turns it on.")
    beat_decay: float = _f(0.25, help="Seconds over which beat(t) and bar(t) in keyframe strings fall from 1 on the beat to 0.", min=0.001, max=60.0)
    beats_per_bar: int = _f(4, help="Beats per bar of the soundtrack: bar(t) and bar_frame(n) count bars of this many beats.", min=1, max=32)
    first_downbeat: int = _f(-1, help="Which of the first beats starts a bar (0 = the first tracked beat); -1 finds it from the low-frequency onsets (the kick usually falls on the one).", min=-1, max=31)
    interpolation: Literal["linear", "quadratic", "cubic", "step", "ease-in-out", "pchip"] = _f("linear", help="How numeric keyframes are tweened: Deforum's linear, quadratic and cubic (splines, as its pandas interpolation); step, ease-in-out and pchip (monotone cubic) are discolib's.")
    angle: str = _f("0:(0)", help="2D rotation, degrees per frame (counter-clockwise).", kind="schedule")
    zoom: str = _f("0: (1), 10: (1.05)", help="2D zoom factor per frame.", kind="schedule")
    translation_x: str = _f("0: (0)", help="x translation per frame (pixels in 2D, Disco/Deforum units in 3D).", kind="schedule")
    translation_y: str = _f("0: (0)", help="y translation per frame (pixels in 2D, Disco/Deforum units in 3D).", kind="schedule")
    translation_z: str = _f("0: (10.0)", help="Forward translation per frame (3D, Disco/Deforum units).", kind="schedule")
    rotation_3d_x: str = _f("0: (0)", help="3D rotation about x, degrees per frame.", kind="schedule")
    rotation_3d_y: str = _f("0: (0)", help="3D rotation about y, degrees per frame.", kind="schedule")
    rotation_3d_z: str = _f("0: (0)", help="3D rotation about z, degrees per frame.", kind="schedule")
    transform_center_x: str = _f("0: (0.5)", help="2D transform centre, fraction of the width.", kind="schedule")
    transform_center_y: str = _f("0: (0.5)", help="2D transform centre, fraction of the height.", kind="schedule")
    fov: str = _f("0: (40)", help="3D field of view, degrees.", kind="schedule")
    near: str = _f("0: (200)", help="Disco/Deforum's camera near plane. Kept so their settings import: in all three originals it only reaches PyTorch3D's NDC depth, which their warp drops, so it never changes the motion.", kind="schedule")
    far: str = _f("0: (10000)", help="Disco/Deforum's camera far plane. Kept so their settings import; as in both tools it does not change the warp.", kind="schedule")
    aspect_ratio_schedule: str = _f("0: (1)", help="3D: the camera's aspect ratio, sd-webui-deforum's aspect_ratio_schedule (PyTorch3D FoVPerspectiveCameras aspect_ratio): the horizontal 3D motion is divided by it. 1 = Disco and deforum-stable-diffusion (and webui's default); webui's aspect_ratio_use_old_formula is width/height. Must stay > 0.", kind="schedule")
    depth_convention: Literal["disco", "webui"] = _f("disco", help="3D: the depth units the camera sees (3D motion scales as 1/depth): disco = Disco v5.7 and deforum-stable-diffusion's raw MiDaS scale (nearest pixel 20/19, farthest 50/19, linear in disparity); webui = sd-webui-deforum's (each frame histogram-equalised into [1, 2]). Flat depth is 1 in both.")
    border: Literal["replicate", "wrap", "reflect", "zeros"] = _f("wrap", help="2D border mode: wrap (Disco's 2D warp always wraps: the guided default) or replicate (deforum-stable-diffusion's default: the latent one); reflect and zeros are discolib's.")
    padding_mode: Literal["border", "reflection", "zeros"] = _f("border", help="3D warp padding mode (grid_sample).")
    sampling_mode: Literal["bicubic", "bilinear", "nearest"] = _f("bicubic", help="Sampling of the 3D warp (grid_sample), the originals' meaning of sampling_mode (Disco, Deforum: bicubic).")
    sampling_mode_2d: Literal["bilinear", "bicubic", "nearest"] = _f("bilinear", help="Sampling of the 2D warp; the originals' 2D warp is linear (OpenCV warpPerspective's default), so bilinear reproduces their look.")
    noise_schedule: str = _f("0: (0.02)", help="Noise added to the warped frame (latent mode).", kind="schedule")
    noise_type: Literal["gaussian", "perlin", "webui-uniform", "webui-perlin"] = _f("gaussian", help="Noise added to the warped frame: gaussian (deforum-stable-diffusion: + N(0,1) * amount in [-1, 1] units), perlin (the same, modulated by sd-webui-deforum's Perlin pattern), webui-uniform / webui-perlin (sd-webui-deforum's blend: (1 - amount) * frame + amount * noise image, which also fades the frame).")
    perlin_w: float = _f(8.0, help="Perlin noise lattice cells along the frame's rows (sd-webui-deforum's perlin_w, which sets the first image axis; truncated to an integer as there).", min=0.1, max=64.0)
    perlin_h: float = _f(8.0, help="Perlin noise lattice cells along the frame's columns (sd-webui-deforum's perlin_h; truncated to an integer).", min=0.1, max=64.0)
    perlin_octaves: int = _f(4, help="Perlin noise octaves (each doubles the lattice frequency).", min=1, max=7)
    perlin_persistence: float = _f(0.5, help="Perlin noise amplitude factor from one octave to the next.", min=0.0, max=1.0)
    strength_schedule: str = _f("0: (0.65)", help="Fraction of the warped frame kept per frame (latent mode).", kind="schedule")
    contrast_schedule: str = _f("0: (1.0)", help="Contrast factor applied to the warped frame.", kind="schedule")
    cfg_scale_schedule: str = _f("0: (7)", help="CFG scale per frame (latent mode).", kind="schedule")
    antiblur_amount: str = _f("0: (0)", help="Unsharp-mask (anti-blur) amount per frame, 0 off (Deforum's amount_schedule; Disco has none).", kind="schedule")
    antiblur_sigma: str = _f("0: (1.0)", help="Unsharp-mask Gaussian sigma in pixels per frame; <= 0 derives it from the kernel as OpenCV does (Deforum's sigma_schedule).", kind="schedule")
    antiblur_kernel: str = _f("0: (5)", help="Unsharp-mask Gaussian kernel size in pixels per frame: odd, or 0 to derive it from sigma (Deforum's kernel_schedule).", kind="schedule")
    antiblur_threshold: str = _f("0: (0)", help="Unsharp-mask threshold in 8-bit levels per frame: pixels within it of their blur stay unsharpened (Deforum's threshold_schedule).", kind="schedule")
    color_coherence: Literal["None", "LAB", "HSV", "RGB"] = _f("None", help="Match each frame's colour histogram to the reference frame in this colour space (Deforum's color_coherence; Disco has no such step, hence None for guided runs and LAB for latent ones).")
    seed_behavior: Literal["iter", "fixed", "random", "ladder", "alternate", "schedule"] = _f("iter", help="How the seed changes between frames.")
    seed_iter_n: int = _f(1, help="With iter: advance the seed every N frames.", min=1)
    seed_schedule: str = _f("0:(s), 1:(-1), 2:(-1)", help="With schedule: the seed per frame (s is the run seed).", kind="schedule")
    color_coherence_reference: Literal["deforum", "webui", "frame0"] = _f("deforum", help="What color_coherence matches to. deforum (deforum-stable-diffusion): the first diffused frame after frame 0's warped init, taken before its own matching; each later diffused frame's warped init is matched before contrast, anti-blur and noise. webui (sd-webui-deforum): frame 0's sample when frame 0 had no init image (else as deforum), and every sampled frame is matched again after sampling. frame0 (discolib before 0.13): frame 0 as written.")
    frames_8bit: bool = _f(True, help="Keep the warped previous frame and its colour match in 8 bits, as both Deforums do (their frames are uint8 between warp and sampler): the warped init is rounded to 8 bits and LAB/RGB color_coherence is their 8-bit recipe (OpenCV's 8-bit Lab, skimage's uint8 matching) bit for bit, on the CPU and on a GPU. Off: float frames and float L*a*b* matching (no 8-bit Lab round trip, which moves dark saturated colours by up to ~23 levels). HSV is always matched in float.")
    cadence: int = _f(1, help="Diffuse every N frames; each written frame blends the last two diffused frames, both warped on to it (Deforum's diffusion_cadence, Disco's turbo_steps).", min=1, max=1000)
    turbo_preroll: int = _f(10, help="Guided mode: frames 0 .. turbo_preroll are all diffused before cadence starts (Disco: frame_num <= turbo_preroll).", min=0)
    fill_disocclusions: bool = _f(False, help="Latent 3D: fill the pixels a 3D warp uncovers with fresh noise before img2img, so the model invents content there instead of stretching the border (a discolib extension; the originals keep the border fill).")
    frames_scale: float = _f(1500.0, help="Guided mode: init-image loss scale for frames after the first.", min=0.0)
    frames_skip_steps: str = _f("60%", help="Guided mode: fraction (\"60%\") or count of steps skipped for later frames.", kind="steps_or_percent")
    color_force_grayscale: bool = _f(False, help="Make every frame greyscale, after colour matching and again after sampling (deforum-stable-diffusion / sd-webui-deforum's color_force_grayscale).")
    enable_perspective_flip: bool = _f(False, help="2D: also tilt the frame with a perspective (homography) flip each frame (Deforum's flip_2d_perspective / enable_perspective_flip).")
    perspective_flip_theta: str = _f("0:(0)", help="Perspective flip: tilt about the vertical axis, degrees per frame (Deforum's perspective_flip_theta).", kind="schedule")
    perspective_flip_phi: str = _f("0:(t%15)", help="Perspective flip: tilt about the horizontal axis, degrees per frame (Deforum's perspective_flip_phi).", kind="schedule")
    perspective_flip_gamma: str = _f("0:(0)", help="Perspective flip: rotation in the image plane, degrees per frame (Deforum's perspective_flip_gamma).", kind="schedule")
    perspective_flip_fv: str = _f("0:(53)", help="Perspective flip: the virtual camera's field of view, degrees (Deforum's perspective_flip_fv).", kind="schedule")
    use_depth_warping: bool = _f(True, help="3D: warp with estimated depth (off: constant depth).")
    vr_mode: bool = _f(False, help="3D only: also render Disco's VR stereo pair of every frame (frames_l/, frames_r/, fish-eye views) and a side-by-side video.")
    vr_eye_angle: float = _f(0.5, help="VR: each eye's y-axis rotation towards the centre, degrees (Disco's vr_eye_angle).")
    vr_ipd: float = _f(5.0, help="VR: distance between the eyes, in 3D translation units (Disco's vr_ipd).")
    save_depth_maps: bool = _f(False, help="Save each frame's depth map as a 16-bit PNG.")
    video_init_path: str = _f("", help="Video Input mode: path of the video whose frames are the inits.", kind="path")
    extract_nth_frame: int = _f(1, help="Video Input mode: use every Nth frame of the video.", min=1)
    video_init_steps: int = _f(100, help="Video Input (guided): sampler steps per frame, replacing image.steps (Disco's video_init_steps).", min=1, max=10000)
    video_init_clip_guidance_scale: float = _f(1000.0, help="Video Input (guided): CLIP loss scale, replacing guidance.clip_guidance_scale.", min=0.0)
    video_init_tv_scale: float = _f(0.1, help="Video Input (guided): total-variation loss scale, replacing guidance.tv_scale.", min=0.0)
    video_init_range_scale: float = _f(150.0, help="Video Input (guided): range loss scale, replacing guidance.range_scale.", min=0.0)
    video_init_sat_scale: float = _f(300.0, help="Video Input (guided): saturation loss scale, replacing guidance.sat_scale.", min=0.0)
    video_init_cutn_batches: int = _f(4, help="Video Input (guided): cutout batches per step, replacing guidance.cutn_batches.", min=1, max=64)
    video_init_skip_steps: int = _f(50, help="Video Input (guided): steps skipped on frame 0 when video_init_flow_warp is on (smaller than video_init_steps).", min=0)
    video_init_frames_scale: float = _f(15000.0, help="Video Input (guided): init-image loss scale of every frame, replacing frames_scale.", min=0.0)
    video_init_frames_skip_steps: str = _f("70%", help="Video Input (guided): steps skipped on later frames, fraction (\"70%\") or count of video_init_steps. Used only with video_init_honor_frames_skip_steps: Disco v5.7 skips animation.frames_skip_steps instead.", kind="steps_or_percent")
    video_init_honor_frames_skip_steps: bool = _f(False, help="Video Input (guided): skip video_init_frames_skip_steps on later frames. Off (Disco v5.7, which computes the skip before its Video Input overrides): frames_skip_steps of video_init_steps.")
    video_init_seed_continuity: bool = _f(False, help="Video Input (guided): every frame keeps the run seed. Off (Disco): frame k takes seed + 1 + k (seed_behavior iter).")
    video_init_flow_warp: bool = _f(True, help="Video Input (guided): frame k > 0 starts from the previous written frame warped by the video's optical flow, blended with video frame k.")
    video_init_flow_blend: float = _f(0.999, help="Video Input (guided): weight of the warped previous frame in the init (0: the video frame, 1: the warped previous frame).", min=0.0, max=1.0)
    video_init_check_consistency: bool = _f(False, help="Video Input (guided): where forward and backward flow disagree (occlusions, motion edges, off-frame), the init takes the video frame. Disco v5.7 has this as a no-op placeholder.")
    video_init_blend_mode: Literal["None", "linear", "optical flow"] = _f("optical flow", help="Video Input (guided): how Disco's output video blends consecutive written frames (None: as written; linear; optical flow: the previous frame warped onto the next).")
    video_output_blend: float = _f(0.5, help="Video Input (guided): weight of video_init_blend_mode's blend (Disco's video cell 'blend').", min=0.0, max=1.0)
    video_flow_method: Literal["raft", "farneback", "dis"] = _f("raft", help="Optical flow of Video Input: raft (Disco; torchvision RAFT-large weights, downloaded once; offline it needs models.random_weights, which gives meaningless flow), farneback or dis (OpenCV, no weights, as Deforum's hybrid video).")
    video_flow_padding: Literal["zeros", "border", "reflection"] = _f("zeros", help="Video Input: what the flow warp samples outside the frame (zeros: black, as Disco's cv2.remap).")


@dataclass
class OutputSettings:
    """Video of an animation."""

    fps: float = _f(12.0, help="Frames per second of the video.", min=0.1, max=240.0)
    make_video: bool = _f(True, help="Write the video when an animation finishes.")
    video_format: Literal["mp4", "gif"] = _f("mp4", help="mp4 (H.264, yuv420p) or gif.")
    soundtrack: str = _f("", help="Optional audio file muxed into the mp4; keyframe strings can follow it (bass(t), beat(t), beat_frame(n) ...).", kind="path")
    preview_video_every: int = _f(0, help="Rewrite a preview video every N frames (0 off).", min=0)


GROUPS: dict[str, type] = {
    "run": RunSettings,
    "image": ImageSettings,
    "models": ModelSettings,
    "prompts": PromptSettings,
    "guidance": GuidanceSettings,
    "latent": LatentSettings,
    "animation": AnimationSettings,
    "output": OutputSettings,
}

# deforum-stable-diffusion's defaults for latent runs, as overrides of the Disco v5.7 defaults above.
LATENT_DEFAULTS: dict[str, Any] = {
    "run.batch_name": "Deforum",
    "run.n_batches": 1,
    "image.width": 512,
    "image.height": 512,
    "image.steps": 25,
    "animation.max_frames": 120,
    "animation.zoom": "0:(1.04)",
    "animation.translation_x": "0:(10*sin(2*3.14*t/10))",
    "animation.translation_z": "0:(10)",
    "animation.padding_mode": "border",
    # deforum-stable-diffusion's DeforumAnimArgs where they differ from Disco's (which has no such steps):
    "animation.border": "replicate",
    "animation.color_coherence": "LAB",
    "animation.antiblur_amount": "0: (0.2)",
    "prompts.text_prompts": {
        "0": "a beautiful lake by Asher Brown Durand, trending on Artstation --neg blurry, low quality",
        "60": "a beautiful portrait of a woman by Artgerm, trending on Artstation --neg blurry, low quality",
    },
}


#: Latent scheduler names (the keys of :func:`discolib.models.latent.scheduler_names`), known here without importing
#: diffusers: validating a settings file stays torch-free and instant. tests/test_latent.py checks they agree.
LATENT_SCHEDULERS = (
    "default", "euler_a", "euler", "euler_trailing", "heun", "dpmpp_2m", "dpmpp_2m_karras", "dpmpp_2m_sde", "ddim", "pndm", "plms",
    "lcm", "unipc",
)
#: Flow-matching solvers (SD 3.5, Flux); on those models euler/euler_a/heun map to them too.
FLOW_ONLY_SCHEDULERS = ("flow_euler", "flow_heun")
#: Schedulers that need an extra package (name -> module), offered only where it is installed.
OPTIONAL_LATENT_SCHEDULERS = {"lms": "scipy", "dpmpp_sde": "torchsde"}


def latent_scheduler_names() -> list[str]:
    """The scheduler names valid in this environment, without importing diffusers or the optional packages."""
    extra = [n for n, module in OPTIONAL_LATENT_SCHEDULERS.items() if importlib.util.find_spec(module) is not None]
    return [*LATENT_SCHEDULERS, *extra, *FLOW_ONLY_SCHEDULERS]


# ---------------------------------------------------------------------------------------------- schema


@dataclass
class Settings:
    """All settings of a run, grouped. Build with :meth:`defaults`, :meth:`load` or :meth:`from_dict`."""

    run: RunSettings = field(default_factory=RunSettings)
    image: ImageSettings = field(default_factory=ImageSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    prompts: PromptSettings = field(default_factory=PromptSettings)
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)
    latent: LatentSettings = field(default_factory=LatentSettings)
    animation: AnimationSettings = field(default_factory=AnimationSettings)
    output: OutputSettings = field(default_factory=OutputSettings)

    # ------------------------------------------------------------------ construction
    @classmethod
    def defaults(cls, mode: str = "guided", animation: str = "None") -> Settings:
        """Defaults of Disco v5.7 (``guided``) or Deforum (``latent``), with the animation mode set."""
        if mode not in ("guided", "latent"):
            raise SettingsError(f"expected 'guided' or 'latent', got {mode!r}", field="image.mode")
        s = cls()
        s.image.mode = mode  # type: ignore[assignment]
        if mode == "latent":
            for name, value in LATENT_DEFAULTS.items():
                s.set(name, json.loads(json.dumps(value)))
        s.set("animation.animation_mode", normalise_animation_mode(animation))
        return s

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, validate: bool = True) -> Settings:
        """Build from a grouped dict (as :meth:`to_dict` writes). Unknown keys are errors with suggestions.

        A group may be missing (its defaults apply); a flat key such as ``"steps"`` at the top level is
        accepted when it names exactly one field. Mode-specific defaults follow ``image.mode``.
        """
        if not isinstance(data, dict):
            raise SettingsError(f"expected a JSON object of setting groups, got {type(data).__name__}")
        flat = _flatten_input(data)
        mode = flat.get("image.mode", "guided")
        if mode not in ("guided", "latent"):
            raise SettingsError(f"expected one of 'guided', 'latent', got {_show(mode)}", field="image.mode")
        s = cls.defaults(mode)
        # max_frames "audio" turns length_from_soundtrack on: applied last, so a file that also holds the flag's
        # default (every file `discolib init` writes) still gets the song's length
        order = sorted(flat.items(), key=lambda kv: kv[0] == "animation.max_frames" and isinstance(kv[1], str))
        for name, value in order:
            s.set(name, value, validate_field=validate)
        if validate:
            s.validate()
        return s

    @classmethod
    def load(cls, path: str | Path) -> Settings:
        """Load and validate a settings JSON file (a regular file of at most 4 MiB; see :func:`read_settings_json`)."""
        data, p = read_settings_json(path)
        try:
            return cls.from_dict(data)
        except InputError as exc:  # SettingsError, ScheduleError, PromptError: all name the field; add the file
            raise SettingsError(f"{p}: {exc}") from None

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """A grouped, JSON-ready dict holding every field."""
        for name in _NESTED_FIELDS:  # set without validation (validate_field=False): asdict would recurse into it
            _check_depth(name, self.get(name))
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def save(self, path: str | Path) -> Path:
        """Write the settings as JSON atomically (temporary file + rename)."""
        return write_text_atomic(Path(path), self.to_json())

    def copy(self) -> Settings:
        return Settings.from_dict(self.to_dict(), validate=False)

    # ------------------------------------------------------------------ access
    def get(self, name: str) -> Any:
        group, fname = resolve_name(name)
        return getattr(getattr(self, group), fname)

    def set(self, name: str, value: Any, *, validate_field: bool = True) -> None:
        """Set one field by dotted (``animation.zoom``) or plain (``zoom``) name, coercing and checking it.

        ``max_frames = "audio"`` turns ``animation.length_from_soundtrack`` on (and leaves max_frames as it is).
        """
        group, fname = resolve_name(name)
        if (group, fname) == ("animation", "max_frames") and isinstance(value, str) and value.strip().lower() == "audio":
            self.animation.length_from_soundtrack = True
            return
        if validate_field:
            value = coerce_value(f"{group}.{fname}", value)
        setattr(getattr(self, group), fname, value)

    def set_from_string(self, assignment: str) -> None:
        """Apply a CLI ``name=value`` override; the value is JSON when it parses as JSON, else a string."""
        if "=" not in assignment:
            raise SettingsError(f"expected name=value, got {assignment!r}", field="--set")
        name, raw = assignment.split("=", 1)
        name = name.strip()
        group, fname = resolve_name(name)
        if (group, fname) == ("animation", "max_frames") and raw.strip().lower() != "audio":
            # an explicit frame count overrides a file's max_frames "audio" (a short test render of a long song)
            self.animation.length_from_soundtrack = False
        info = field_info(f"{group}.{fname}")
        value: Any = raw
        if info.type_name != "str" or raw.strip()[:1] in ('"',):
            if json_depth_ok(raw) is not None:  # json.loads recurses per level
                raise SettingsError(f"value nested deeper than {MAX_JSON_DEPTH} levels", field=info.name)
            try:
                value = json.loads(raw)
            except ValueError:  # not JSON (or an integer with too many digits): the text itself
                if info.type_name == "bool" and raw.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
                    value = raw.strip().lower() in ("true", "yes", "on")
                else:
                    value = raw
        self.set(f"{group}.{fname}", value)

    # ------------------------------------------------------------------ validation
    def validate(self) -> Settings:
        """Check every field and the cross-field rules; raise :class:`SettingsError` on the first problem."""
        for name in iter_fields():
            coerce_value(name, self.get(name))
        mode = self.image.mode
        multiple = 64 if mode == "guided" else 8
        for dim in ("width", "height"):
            v = getattr(self.image, dim)
            if v % multiple:
                lo, hi = (v // multiple) * multiple, (v // multiple + 1) * multiple
                raise SettingsError(
                    f"{v} is not a multiple of {multiple} (needed by the {mode} sampler); use {lo or hi} or {hi}",
                    field=f"image.{dim}",
                )
        if mode == "guided" and self.guidance.skip_steps >= self.image.steps:
            raise SettingsError(
                f"must be smaller than image.steps ({self.image.steps}), got {self.guidance.skip_steps}",
                field="guidance.skip_steps",
            )
        anim = self.animation
        self.check_first_downbeat()
        if anim.animation_mode != "None" and anim.length_from_soundtrack and not self.output.soundtrack:
            raise SettingsError(
                "the animation's length comes from output.soundtrack, which is empty: set a soundtrack or turn "
                "length_from_soundtrack off",
                field="animation.length_from_soundtrack",
            )
        if anim.animation_mode != "None" and anim.cadence > self.n_frames():
            frames = "the soundtrack's frames" if anim.length_from_soundtrack else "animation.max_frames"
            raise SettingsError(
                f"cadence {anim.cadence} is larger than {frames} ({self.n_frames()})", field="animation.cadence"
            )
        if anim.animation_mode == "Video Input" and not anim.video_init_path:
            raise SettingsError("Video Input mode needs a video path", field="animation.video_init_path")
        if anim.vr_mode and anim.animation_mode != "3D":
            # Disco silently turns VR off outside 3D; a setting that would do nothing is refused here instead.
            raise SettingsError(
                f"VR stereo views need 3D motion: set animation.animation_mode to '3D' (it is {anim.animation_mode!r}) "
                "or turn VR mode off",
                field="animation.vr_mode",
            )
        self._validate_paths()
        self._validate_schedules()
        if self.animation.animation_mode != "None":
            self.check_schedule_ranges()
        if mode == "latent":
            names = latent_scheduler_names()
            if self.latent.scheduler not in names:
                close = difflib.get_close_matches(self.latent.scheduler, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingsError(
                    f"unknown scheduler {self.latent.scheduler!r}{hint}; expected one of {', '.join(names)}",
                    field="latent.scheduler",
                )
        return self

    def check_first_downbeat(self) -> None:
        """``animation.first_downbeat`` must be -1 or a beat of a bar of ``animation.beats_per_bar`` beats (each field
        alone has its own range; together they may not fit)."""
        anim = self.animation
        if anim.beats_per_bar <= anim.first_downbeat:
            raise SettingsError(
                f"must be -1 (find it) or a beat 0 to {anim.beats_per_bar - 1} of a bar of animation.beats_per_bar "
                f"({anim.beats_per_bar}) beats, got {anim.first_downbeat}",
                field="animation.first_downbeat",
            )

    def n_frames(self) -> int:
        """Images the run makes (the one definition): ``run.n_batches`` stills, or the animation's frames:
        ``animation.max_frames``, or with ``animation.length_from_soundtrack`` the soundtrack's duration times
        ``output.fps`` rounded up (read from the audio file's header)."""
        anim = self.animation
        if anim.animation_mode == "None":
            return self.run.n_batches
        if anim.length_from_soundtrack and self.output.soundtrack:
            return min(frames_for_duration(audio_duration(self.output.soundtrack), self.output.fps), MAX_ANIMATION_FRAMES)
        return anim.max_frames

    def audio_features(self, cache_dir: str | Path | None = None) -> AudioFeatures | None:
        """The soundtrack's per-frame features at ``output.fps`` with the animation's beat settings (the one place
        settings turn into :class:`~discolib.audio.AudioFeatures`), or None without ``output.soundtrack``. The
        analysis is cached in ``cache_dir`` (and per process) by the file's content hash."""
        out, anim = self.output, self.animation
        if not out.soundtrack:
            return None
        return audio_features(
            out.soundtrack,
            out.fps,
            beat_decay=anim.beat_decay,
            beats_per_bar=anim.beats_per_bar,
            first_downbeat=anim.first_downbeat,
            cache_dir=None if cache_dir is None else Path(cache_dir),
            setting="output.soundtrack",
        )

    def uses_audio(self) -> list[str]:
        """The settings whose keyframe strings or prompt schedules read the soundtrack (in schema order)."""
        found = []
        for name in iter_fields():
            kind = _FIELDS[name].kind
            value = self.get(name)
            if kind == "schedule" and Schedule.parse(value, setting=name).uses_audio:
                found.append(name)
            elif kind == "prompts" and value and PromptSchedule.from_any(value, setting=name).uses_audio:
                found.append(name)
        return found

    def _check_frames(self) -> int:
        """Frames over which validation evaluates schedules: the animation's, at most 100 000 (instant checks). A
        soundtrack that cannot be read counts as max_frames here: its own field reports it, not every schedule."""
        try:
            n = self.n_frames() if self.animation.animation_mode != "None" else self.animation.max_frames
        except AudioError:
            n = self.animation.max_frames
        return max(1, min(n, 100_000))

    def frames_skip_fraction(self) -> float:
        """Disco's ``animation.frames_skip_steps`` (``"60%"`` or a step count) as a fraction of ``image.steps``:
        the whole count skipped over ``image.steps`` (see :func:`skip_fraction`; 70% of 25 steps skips 17)."""
        return skip_fraction(self.animation.frames_skip_steps, self.image.steps, setting="animation.frames_skip_steps")

    def _validate_paths(self) -> None:
        """Paths (and model ids that may be paths) must expand: ``~nouser/x`` or a NUL byte fails here, by name."""
        for name in iter_fields():
            if _FIELDS[name].kind in ("path", "model"):
                _check_path(name, self.get(name))

    def check_schedule_ranges(self, evaluated: Mapping[str, Any] | None = None) -> None:
        """Keyframe schedules with a range must stay in it on every frame: checked before a run folder exists, not
        mid-run by the warp or the anti-blur. ``evaluated``: the schedules' values (name -> per-frame array) when
        the caller has them, e.g. :func:`discolib.animation.plan.check_inputs` on the soundtrack's features;
        without them, a schedule that reads the soundtrack is left to that check."""
        anim = self.animation
        n = self._check_frames()

        def values(field_name: str) -> Any:
            if evaluated is not None and field_name in evaluated:
                return evaluated[field_name]
            text = getattr(anim, field_name)
            sched = Schedule.parse(text, setting=f"animation.{field_name}", interpolation=anim.interpolation)
            if sched.uses_audio:  # checked on the song's real features by check_inputs, before the run folder
                return None
            return sched.values(n)

        kernel = values("antiblur_kernel")
        checks = (
            # (field, per-frame values, ok(values) -> bool array, what was expected)
            ("antiblur_kernel", kernel, lambda v: (v > -1) & (v < 256), "a kernel size from 0 to 255 pixels"),
            ("antiblur_threshold", values("antiblur_threshold"), lambda v: v >= 0, "a threshold >= 0 (8-bit levels)"),
            # OpenCV derives a kernel of size 0 from sigma: it must then be positive.
            ("antiblur_sigma", values("antiblur_sigma"), lambda v: (v > 0) | (kernel.astype(int) != 0),
             "a sigma > 0 where antiblur_kernel is 0"),
            ("aspect_ratio_schedule", values("aspect_ratio_schedule"), lambda v: v > 0, "an aspect ratio > 0"),
            # webui's negative fov (reversed motion) is the camera's too; 0 and +-180 have no projection.
            ("fov", values("fov"), lambda v: (v != 0) & (abs(v) < 180), "a field of view with 0 < |fov| < 180 degrees"),
        )
        for field_name, vals, ok, expected in checks:
            if vals is None or (field_name == "antiblur_sigma" and kernel is None):
                continue
            bad = (~ok(vals)).nonzero()[0]
            if bad.size:
                k = int(bad[0])
                raise SettingsError(f"expected {expected} on every frame, got {vals[k]:g} at frame {k}", field=f"animation.{field_name}")

    def _validate_schedules(self) -> None:
        """Each keyframe string, cut schedule and prompt dict is parsed and evaluated once (parses are cached)."""
        for name in iter_fields():
            if field_info(name).kind in ("schedule", "cut_schedule", "prompts"):
                self.check_field(name, self.get(name))

    def check_field(self, name: str, value: Any) -> None:
        """The parse checks of one keyframe, cut-schedule or prompt field, in the context of these settings.

        Keyframe strings are parsed and evaluated over ``animation.max_frames`` (domain errors such as
        ``sqrt(-1)`` at frame 40 surface now, not mid-run; at most 100 000 frames are checked so validating a
        huge animation stays instant) with the current interpolation; cut schedules and prompt dicts are parsed.
        Raises a ValueError subclass whose message names the field (and the column, for keyframe strings).
        """
        info = field_info(name)
        if info.kind == "schedule":
            validate_schedule(value, info.name, n_frames=self._check_frames(), interpolation=self.animation.interpolation)
            if not self.output.soundtrack:
                Schedule.parse(value, setting=info.name).require_audio(None)
        elif info.kind == "cut_schedule":
            # Cut counts are whole numbers; the inner-cut power and grey probability are fractions.
            kind = float if info.name.endswith(("ic_pow", "icgray_p")) else int
            parse_cut_schedule(value, setting=info.name, kind=kind)
        elif info.kind == "prompts" and (value or info.name == "prompts.text_prompts"):
            # An empty dict means "no image prompts"; text prompts need at least one.
            try:
                schedule = PromptSchedule.from_any(value, setting=info.name)
            except ValueError as exc:
                raise SettingsError(str(exc).removeprefix(f"{info.name}: "), field=info.name) from None
            if schedule.uses_audio and not self.output.soundtrack:
                raise SettingsError(
                    "reads the soundtrack (beat_frame, bar_frame or a weight such as `bass(t)`), but there is none: "
                    "set output.soundtrack",
                    field=info.name,
                )
            if info.name == "prompts.image_prompts":
                for frame_prompts in schedule.prompts:
                    for prompt in frame_prompts.positive:
                        _check_path(info.name, prompt.text)


# ---------------------------------------------------------------------------------------------- field info


@dataclass(frozen=True)
class FieldInfo:
    """What the validator, CLI and widgets need to know about one field."""

    name: str  # dotted
    group: str
    field: str
    type: Any
    type_name: str  # 'int' | 'float' | 'bool' | 'str' | 'choice' | 'list[str]' | 'list[float]' | 'dict'
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    kind: str | None = None


def _type_name(tp: Any) -> tuple[str, tuple[Any, ...]]:
    if get_origin(tp) is Literal:
        return "choice", get_args(tp)
    if tp is bool:
        return "bool", ()
    if tp is int:
        return "int", ()
    if tp is float:
        return "float", ()
    if tp is str:
        return "str", ()
    origin = get_origin(tp)
    if origin is list:
        (arg,) = get_args(tp)
        return f"list[{arg.__name__}]", ()
    if origin is dict:
        return "dict", ()
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"optional fields are not used in the schema: {tp}")
    raise TypeError(f"unsupported settings type {tp}")


def _build_field_table() -> dict[str, FieldInfo]:
    table: dict[str, FieldInfo] = {}
    for group, cls in GROUPS.items():
        hints = typing.get_type_hints(cls, include_extras=False)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            tname, choices = _type_name(tp)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            md = f.metadata
            table[f"{group}.{f.name}"] = FieldInfo(
                name=f"{group}.{f.name}",
                group=group,
                field=f.name,
                type=tp,
                type_name=tname,
                default=default,
                help=md.get("help", ""),
                choices=tuple(md.get("choices", choices)),
                min=md.get("min"),
                max=md.get("max"),
                kind=md.get("kind"),
            )
    return table


_FIELDS = _build_field_table()
_PLAIN: dict[str, list[str]] = {}
for _dotted in _FIELDS:
    _PLAIN.setdefault(_dotted.split(".", 1)[1], []).append(_dotted)


def iter_fields(group: str | None = None) -> list[str]:
    """Dotted names of every field (of one group), in schema order."""
    return [n for n in _FIELDS if group is None or n.startswith(group + ".")]


def field_info(name: str) -> FieldInfo:
    group, fname = resolve_name(name)
    return _FIELDS[f"{group}.{fname}"]


def resolve_name(name: str) -> tuple[str, str]:
    """``'animation.zoom'`` or ``'zoom'`` -> ``('animation', 'zoom')``; unknown names suggest the nearest."""
    if not isinstance(name, str) or not name:
        raise SettingsError(f"expected a setting name, got {name!r}")
    if name in _FIELDS:
        g, f = name.split(".", 1)
        return g, f
    if "." not in name and len(_PLAIN.get(name, [])) == 1:
        g, f = _PLAIN[name][0].split(".", 1)
        return g, f
    if "." not in name and len(_PLAIN.get(name, [])) > 1:
        raise SettingsError(f"ambiguous setting name; use one of {', '.join(_PLAIN[name])}", field=name)
    raise SettingsError(f"unknown setting{did_you_mean(name, [*_FIELDS, *_PLAIN])}", field=_short_name(name))


def did_you_mean(name: str, candidates: Sequence[str], n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the candidates close to ``name`` (none for names over 100 characters:
    difflib is quadratic), else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6) if len(name) <= 100 else []
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _flatten_input(data: dict[str, Any]) -> dict[str, Any]:
    """Grouped or flat input -> {dotted name: value}, rejecting unknown keys with suggestions."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS:
            if not isinstance(value, dict):
                raise SettingsError(f"expected an object of settings, got {type(value).__name__}", field=key)
            for sub, v in value.items():
                dotted = f"{key}.{sub}"
                if dotted not in _FIELDS:
                    names = [n.split(".", 1)[1] for n in iter_fields(key)]
                    close = difflib.get_close_matches(sub, names, n=3, cutoff=0.6) if len(sub) <= 100 else []
                    other = _PLAIN.get(sub)
                    if other:
                        hint = f"; it belongs in {other[0]!r}"
                    elif close:
                        hint = f"; did you mean {' or '.join(repr(f'{key}.{c}') for c in close)}?"
                    else:
                        hint = ""
                    raise SettingsError(f"unknown setting{hint}", field=_short_name(dotted))
                flat[dotted] = v
        elif key.startswith("_"):
            continue  # comments such as "_about" are allowed
        else:
            g, f = resolve_name(key)
            flat[f"{g}.{f}"] = value
    return flat


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    """A finite int or float; an int too large for a float (``10**400``) is not."""
    try:
        return _is_number(v) and math.isfinite(v)
    except OverflowError:
        return False


_SCALARS = (str, int, float, bool, type(None))
# Fields whose values are containers: the only ones a user can nest (see _check_depth and Settings.to_dict).
_NESTED_FIELDS = tuple(n for n, i in _FIELDS.items() if i.type_name == "dict" or i.type_name.startswith("list"))


def _check_depth(name: str, value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse containers nested deeper than ``limit`` (walked with a stack: no recursion, no RecursionError)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (list, tuple, dict)):
            if depth > limit:
                raise SettingsError(f"value nested deeper than {limit} levels", field=name)
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def _coerce_prompts(name: str, value: Any) -> dict[str, Any]:
    """A prompt dict: frame keys -> a prompt string or a flat list of prompts (the parser checks the items)."""
    if not isinstance(value, dict):
        raise SettingsError(f"expected an object {{frame: prompts}}, got {_show(value)}", field=name)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(key, bool) or not isinstance(key, (str, int, float)):
            raise SettingsError(f"key {_show(key)}: expected a frame number or a max_f expression", field=name)
        if isinstance(item, (list, tuple)) and all(isinstance(x, _SCALARS) for x in item):
            item = list(item)
        elif not isinstance(item, _SCALARS):
            raise SettingsError(
                f"frame {_show(str(key))}: expected a prompt string or a list of prompt strings, got {_show(item)}",
                field=name,
            )
        out[str(key)] = item
    return out


def coerce_value(name: str, value: Any) -> Any:
    """Check ``value`` against the field's type and bounds and return it in canonical form.

    Values of the wrong shape (a list where a number belongs, a prompt dict nesting lists in lists) are refused
    without walking them, so arbitrarily deep or large values fail with one short :class:`SettingsError`.
    """
    info = _FIELDS[name]
    t = info.type_name
    if t == "bool":
        if not isinstance(value, bool):
            raise SettingsError(f"expected true or false, got {_show(value)}", field=name)
        out: Any = value
    elif t == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SettingsError(f"expected an integer, got {_show(value)}", field=name)
        out = value
    elif t == "float":
        if not _is_finite(value):
            raise SettingsError(f"expected a finite number, got {_show(value)}", field=name)
        out = float(value)
    elif t == "str":
        if _is_finite(value) and info.kind in ("schedule", "steps_or_percent"):
            value = f"0: ({value})" if info.kind == "schedule" else str(value)
        if value is None and info.kind in ("path", "model"):
            value = ""
        if not isinstance(value, str):
            raise SettingsError(f"expected a string, got {_show(value)}", field=name)
        out = value
    elif t == "choice":
        if value not in info.choices:
            lowered = {str(c).lower(): c for c in info.choices}
            if isinstance(value, str) and value.lower() in lowered:
                value = lowered[value.lower()]
            else:
                raise SettingsError(f"expected one of {', '.join(repr(c) for c in info.choices)}, got {_show(value)}", field=name)
        out = value
    elif t == "list[str]":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise SettingsError(f"expected a list of strings, got {_show(value)}", field=name)
        out = list(value)
    elif t == "list[float]":
        if _is_number(value):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(_is_finite(x) for x in value):
            raise SettingsError(f"expected a list of finite numbers, got {_show(value)}", field=name)
        out = [float(x) for x in value]
    elif t == "dict":
        out = _coerce_prompts(name, value)
    else:  # pragma: no cover - the table only has the types above
        raise AssertionError(t)
    if info.min is not None and _is_number(out) and out < info.min:
        raise SettingsError(f"expected a value >= {info.min}, got {_show(out)}", field=name)
    if info.max is not None and _is_number(out) and out > info.max:
        raise SettingsError(f"expected a value <= {info.max}, got {_show(out)}", field=name)
    if info.kind == "steps_or_percent":
        _check_steps_or_percent(name, out)
    if info.kind == "name" and (not out.strip() or any(ord(c) < 32 for c in out)):
        # Any script is fine, and / : * ? become "_" in the folder's name (io.files.safe_folder_name); a control
        # character or a blank name is a mistake, not a name.
        raise SettingsError(
            "expected a folder name without control characters (any script; / \\ : * ? \" < > | become _ in the "
            f"folder's name), got {_show(out)}", field=name,
        )
    return out


def _check_path(name: str, value: str) -> None:
    """``value`` (a path, URL or model id) must expand: refuses ``~unknownuser/...`` and NUL bytes by name."""
    if not value or value.startswith(("http://", "https://")):
        return
    try:
        expand_path(value, setting=name)
    except InputError as exc:
        raise SettingsError(str(exc).removeprefix(f"{name}: "), field=name) from None


def read_settings_json(path: str | os.PathLike[str], *, what: str = "settings file") -> tuple[Any, Path]:
    """The decoded JSON of a user's settings file and its expanded path; every problem is a :class:`SettingsError`.

    The file must be a regular file of at most 4 MiB (FIFOs, devices and folders are refused before they are
    opened); JSON nested deeper than 64 levels, ``NaN``/``Infinity`` and numbers too large for a float are refused,
    naming the key that holds them.
    """
    try:
        p = expand_path(path, setting=what)
        if not os.path.lexists(p):
            raise SettingsError(f"{what} not found: {p}")
        text = read_user_text(p, setting=what)
    except SettingsError:
        raise
    except InputError as exc:
        raise SettingsError(str(exc)) from None
    return _loads_settings_json(text, str(p)), p


class _BadNumber:
    """A number JSON allows but no setting takes (NaN, Infinity, 1e400, 5000 digits), kept to name its key."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _locate_bad_number(text: str) -> tuple[str, str] | None:
    """(key path, number) of the first non-finite or oversized number in ``text``; None if there is none.

    Only called after :func:`~discolib.io.inputs.loads_json` refused the text, to say *which* key was bad.
    """
    if json_depth_ok(text) is not None:
        return None
    # Python >= 3.11 (and patched 3.10) refuse to convert integers longer than this many digits.
    digits = getattr(sys, "get_int_max_str_digits", lambda: 0)() or 4300

    def parse_float(s: str) -> Any:
        return _BadNumber(s) if math.isinf(float(s)) else float(s)

    try:
        data = json.loads(
            text,
            parse_constant=_BadNumber,
            parse_float=parse_float,
            parse_int=lambda s: int(s) if len(s.lstrip("-")) <= digits else _BadNumber(s),
        )
    except ValueError:
        return None
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, _BadNumber):
            return where or "(top level)", v.text
        if isinstance(v, dict):
            stack.extend((f"{where}.{k}" if where else str(k), x) for k, x in reversed(v.items()))
        elif isinstance(v, list):
            stack.extend((f"{where}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _loads_settings_json(text: str, what: str) -> Any:
    try:
        return loads_json(text, what=what)
    except InputError as exc:
        found = _locate_bad_number(text)
        if found is None:
            raise SettingsError(str(exc)) from None
        where, number = found
        if number in ("NaN", "Infinity", "-Infinity"):
            reason = f"{number} is not allowed; expected a finite number"
        else:
            shown = number if len(number) <= 24 else f"{number[:10]}... ({len(number)} characters)"
            reason = f"the number {shown} is too large; expected a finite number"
        raise SettingsError(f"{what}: {_short_name(where)}: {reason}") from None


def skip_fraction(text: str, steps: int, *, setting: str) -> float:
    """Skipped steps as a fraction of ``steps``: ``"70%"`` skips ``floor(steps * 0.7)`` (Disco's
    ``calc_frames_skip_steps``), a count ``n`` skips ``min(n, steps - 1)``. The fraction times ``steps`` rounds back
    to that whole count.

    Raises:
        SettingsError: ``text`` is neither a percentage nor a count (named ``setting``).
    """
    v = text.strip()
    try:
        # Disco: math.floor(steps * (int(pct) / 100)), float rounding included (29% of 100 skips 28).
        count = math.floor(steps * (float(v[:-1]) / 100)) if v.endswith("%") else int(v)
    except ValueError:
        raise SettingsError(f"expected a percentage such as '70%' or a step count, got {text!r}", field=setting) from None
    return min(max(count, 0), steps - 1) / steps


def _check_steps_or_percent(name: str, value: str) -> None:
    v = value.strip()
    try:
        if v.endswith("%"):
            pct = float(v[:-1])
            if not 0 <= pct < 100:
                raise ValueError
        elif int(v) < 0:
            raise ValueError
    except ValueError:
        raise SettingsError(f"expected a percentage like '60%' or a step count like '30', got {value!r}", field=name) from None


#: The spellings of each animation mode (lower case, stripped): Disco's and Deforum's names, and the CLI's short ones.
_ANIMATION_MODES = {"none": "None", "2d": "2D", "3d": "3D", "video": "Video Input", "video input": "Video Input"}


def normalise_animation_mode(value: str) -> str:
    """The canonical ``animation.animation_mode`` (``'None'``, ``'2D'``, ``'3D'``, ``'Video Input'``) of ``value``.

    Case and surrounding spaces do not matter, and ``video`` means ``Video Input``; used by
    :meth:`Settings.defaults` (the CLI's ``--animation``) and the Disco/Deforum importers. Anything else, a
    non-string included, is a :class:`SettingsError` for ``animation.animation_mode``.
    """
    v = _ANIMATION_MODES.get(value.strip().lower()) if isinstance(value, str) else None
    if v is None:
        raise SettingsError(f"expected one of none, 2D, 3D, video, got {short_repr(value)}", field="animation.animation_mode")
    return v
