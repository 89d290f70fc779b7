"""How the settings panel presents each setting: readable label, one-line help, original names, where it applies.

Pure data over :mod:`discolib.config.settings` (torch-free). The panel (widgets/discolib_widgets) shows a field
only in the image modes (``guided``, ``latent``) and animation modes where the render code reads it, in tabs with
sub-section headings; ``originals`` name the Disco Diffusion v5.7 and Deforum keys a user knows (as their settings
files and the importers in :mod:`discolib.config.importers` spell them).

Where a field has an effect was read off the code: ``guidance.*`` feeds the guided sampler, and the loss scales and
cut schedules also feed latent mode's optional CLIP guidance (``latent.clip_scale``); guided Video Input replaces
steps, the CLIP / TV / range / saturation scales, cut batches, skip steps and init scale by
``animation.video_init_*``; the coherence steps (colour, contrast, anti-blur, noise) and cadence run only on
frames warped from the previous one (2D, 3D); noise and the strength schedule only in latent mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from discolib.config.settings import field_info, iter_fields, resolve_name

__all__ = [
    "ANIMATION_MODES",
    "MODES",
    "TABS",
    "FieldUI",
    "Need",
    "field_ui",
    "is_shown",
    "originals_text",
    "panel_layout",
    "shown_fields",
    "tab_shown",
]

ANIMATION_MODES: tuple[str, ...] = ("None", "2D", "3D", "Video Input")
MODES: tuple[str, ...] = ("guided", "latent")
#: Tab titles in display order (short: nine fit in 1024 px).
TABS: tuple[str, ...] = ("Run", "Prompts", "Models", "Guidance", "Latent", "Motion", "Coherence", "Video in", "Output")


_OPS: dict[str, Any] = {
    "true": lambda v, _: bool(v),
    "==": lambda v, x: v == x,
    "!=": lambda v, x: v != x,
    "in": lambda v, x: v in x,
    ">": lambda v, x: v > x,
}


@dataclass(frozen=True)
class Need:
    """A condition on other settings' values for a field to have an effect, e.g. ``rand_mag`` needs
    ``guidance.fuzzy_prompt`` on. Holds when any of ``settings`` satisfies ``op`` (``"true"``, ``"=="``, ``"!="``,
    ``"in"``, ``">"``) against ``value``; applies only in the image modes ``modes`` and the animation modes
    ``animation_modes``."""

    settings: tuple[str, ...]
    op: str
    value: Any = None
    modes: frozenset[str] = frozenset(MODES)
    animation_modes: frozenset[str] = frozenset(ANIMATION_MODES)

    def holds(self, values: Any, mode: str, animation_mode: str | None = None) -> bool:
        """Whether the condition holds for ``values`` (a :class:`~discolib.config.settings.Settings` or a mapping
        of dotted names, anything with ``.get(name)``). A value that cannot be compared (a half-typed entry in
        the panel) counts as holding: the field stays shown."""
        if mode not in self.modes or (animation_mode is not None and animation_mode not in self.animation_modes):
            return True
        for name in self.settings:
            try:
                v = values.get(name)
                if v is None:  # not known here: keep the field shown
                    return True
                ok = _OPS[self.op](v, self.value)
            except Exception:  # noqa: BLE001 - a value of the wrong type in the panel: show the field
                return True
            if ok:
                return True
        return False

    def describe(self) -> str:
        """The condition in words, e.g. ``"with guidance.fuzzy_prompt on"``."""
        names = " or ".join(self.settings)
        if self.op == "true":
            text = f"{names} {'on' if field_info(self.settings[0]).type_name == 'bool' else 'set'}"
        elif self.op == "in":
            text = f"{names} in {', '.join(map(str, self.value))}"
        else:
            text = f"{names} {'not' if self.op == '!=' else self.op.strip('=') or '='} {self.value}"
        where = f" in {'/'.join(sorted(self.modes))} mode" if self.modes != frozenset(MODES) else ""
        if self.animation_modes != frozenset(ANIMATION_MODES):
            where += f" ({'/'.join(sorted(self.animation_modes))} animation)"
        return f"with {text}{where}"


@dataclass(frozen=True)
class FieldUI:
    """Presentation of one setting in the panel.

    Attributes:
        name: dotted setting name, e.g. ``"animation.translation_z"``.
        label: readable label in sentence case.
        help: one line (at most 110 characters): what it does and its unit.
        originals: the names users know, ``"Disco: key"`` / ``"Deforum: key"``; ``()`` if none.
        modes: image modes (:data:`MODES`) where the field has an effect.
        animation_modes: animation modes (:data:`ANIMATION_MODES`) where it has an effect.
        tab, section: where the panel shows it (a :data:`TABS` title and a heading inside that tab).
        advanced: rarely changed: shown only with "show all".
        excluded: ``(mode, animation_mode)`` pairs inside ``modes`` x ``animation_modes`` where it has no effect
            (e.g. ``image.steps`` in guided Video Input, replaced by ``animation.video_init_steps``).
        needs: conditions on other settings' values (all must hold) for the field to have an effect; the panel
            hides it otherwise when it passes ``values`` to :func:`is_shown`.
    """

    name: str
    label: str
    help: str
    originals: tuple[str, ...]
    modes: frozenset[str]
    animation_modes: frozenset[str]
    tab: str
    section: str
    advanced: bool = False
    excluded: frozenset[tuple[str, str]] = frozenset()
    needs: tuple[Need, ...] = ()


# ---------------------------------------------------------------------------------------------- the table

# Shorthands for where a field has an effect (the render code that reads it, checked in discolib/).
G, L, GL = frozenset({"guided"}), frozenset({"latent"}), frozenset(MODES)
ALL = frozenset(ANIMATION_MODES)
STILLS = frozenset({"None"})
ANIMATED = frozenset({"2D", "3D", "Video Input"})
MOVING = frozenset({"2D", "3D"})  # frames warped from the previous one (cadence and coherence apply)
D2, D3, VIDEO = frozenset({"2D"}), frozenset({"3D"}), frozenset({"Video Input"})
NOT_VIDEO = frozenset({"None", "2D", "3D"})
# Guided Video Input replaces these by animation.video_init_* (Disco's args[...] = args['video_init_...']).
GUIDED_VIDEO = frozenset({("guided", "Video Input")})

_Row = tuple[str, str, str, tuple[str, ...], frozenset[str], frozenset[str], dict[str, Any]]


def _r(
    name: str,
    label: str,
    help: str,
    originals: tuple[str, ...] = (),
    modes: frozenset[str] = GL,
    animation_modes: frozenset[str] = ALL,
    **extra: Any,
) -> _Row:
    return (name, label, help, originals, modes, animation_modes, extra)


_LAYOUT: list[tuple[str, list[tuple[str, list[_Row]]]]] = [
    ("Run", [
        ("Mode", [
            _r("image.mode", "Mode",
               "guided: CLIP-guided pixel diffusion (Disco); latent: Stable Diffusion img2img (Deforum)"),
            _r("animation.animation_mode", "Animation mode",
               "None makes still images; 2D, 3D and Video Input make animation frames",
               ("Disco: animation_mode", "Deforum: animation_mode")),
        ]),
        ("Image", [
            _r("image.width", "Width", "Image width in pixels (a multiple of 64 in guided mode, of 8 in latent mode)",
               ("Disco: width_height", "Disco: width", "Deforum: W")),
            _r("image.height", "Height",
               "Image height in pixels (a multiple of 64 in guided mode, of 8 in latent mode)",
               ("Disco: width_height", "Disco: height", "Deforum: H")),
            _r("image.steps", "Steps", "Sampler steps per image; more is slower and usually finer",
               ("Disco: steps", "Deforum: steps"), excluded=GUIDED_VIDEO),
        ]),
        ("Batch and seed", [
            _r("run.batch_name", "Batch name", "Folder name that groups this run's folders under the output folder",
               ("Disco: batch_name", "Deforum: batch_name")),
            _r("run.seed", "Seed", "Seed of the first image or frame; -1 picks a random one (saved with the run)",
               ("Disco: seed", "Deforum: seed")),
            _r("run.n_batches", "Number of images", "How many still images to make, each with the next seed",
               ("Disco: n_batches", "Deforum: n_batch"), animation_modes=STILLS),
            _r("animation.seed_behavior", "Seed behaviour",
               "How the seed changes from frame to frame: iter, fixed, random, ladder...",
               ("Deforum: seed_behavior",), animation_modes=ANIMATED),
            _r("animation.seed_iter_n", "Seed step every N frames",
               "With iter: the seed goes up by one every N diffused frames",
               ("Deforum: seed_iter_N",), animation_modes=ANIMATED),
            _r("animation.seed_schedule", "Seed schedule",
               "With schedule: the seed as keyframes per frame (s is the run seed, -1 random)",
               ("Deforum: seed_schedule",), animation_modes=ANIMATED),
        ]),
        ("Folder and previews", [
            _r("run.output_root", "Output folder",
               "Folder that holds the run folders (output folder / batch name / run)",
               ("Deforum: outdir",)),
            _r("run.display_rate", "Preview every N steps",
               "Show the image as it renders every N sampler steps; 0 shows none",
               ("Disco: display_rate",)),
            _r("run.intermediate_saves", "Intermediate saves",
               "Also save this many in-progress images per image, spread over the steps",
               ("Disco: intermediate_saves",), advanced=True),
        ]),
    ]),
    ("Prompts", [
        ("Text", [
            _r("prompts.text_prompts", "Text prompts",
               "Prompts per frame: {\"0\": [\"text:weight\", ...]} or {\"0\": \"text --neg negative\"}",
               ("Disco: text_prompts", "Deforum: prompts", "Deforum: animation_prompts")),
            _r("latent.negative_prompt", "Negative prompt",
               "What to steer away from, for every frame (a --neg in a prompt adds to it)",
               ("Deforum: negative_prompt",), L),
            _r("prompts.translate", "Translate prompts", "Translation model (hub id or folder) that turns the "
               "prompts into English before a latent render; empty: off", (), L),
            _r("prompts.translate_from", "Translate from", "Source language code for multilingual translation "
               "models (NLLB: zho_Hans, jpn_Jpan, arb_Arab)", (), L, advanced=True),
            _r("prompts.translate_to", "Translate to", "Target language code for multilingual translation models; "
               "empty: English", (), L, advanced=True),
        ]),
        ("Image prompts", [
            _r("prompts.image_prompts", "Image prompts",
               "Images to steer towards per frame: paths or URLs with an optional :weight",
               ("Disco: image_prompts",), G),
        ]),
        ("Init image", [
            _r("guidance.init_image", "Init image",
               "Image (or video's first frame) to start from: path or URL; empty starts from noise",
               ("Disco: init_image", "Deforum: init_image", "Deforum: use_init"), animation_modes=NOT_VIDEO),
            _r("latent.strength", "Init strength",
               "Fraction of the init image kept, 0 to 1 (0 ignores it); every frame in Video Input",
               ("Deforum: strength",), L),
            _r("guidance.skip_steps", "Skip steps",
               "Sampler steps skipped on the first image; more keeps more of the init image",
               ("Disco: skip_steps",), G, NOT_VIDEO),
            _r("guidance.init_scale", "Init scale",
               "How strongly the first image is pulled towards the init image (loss scale)",
               ("Disco: init_scale",), G, NOT_VIDEO),
            _r("guidance.init_loss", "Init loss",
               "How closeness to the init is measured: lpips (perceptual, as Disco) or mse (pixels)",
               (), G),
            _r("guidance.perlin_init", "Perlin init", "Start from Perlin noise instead of Gaussian noise",
               ("Disco: perlin_init",), G),
            _r("guidance.perlin_mode", "Perlin colours", "Colours of the Perlin init: mixed, color or gray",
               ("Disco: perlin_mode",), G),
            _r("guidance.perlin_init_every_frame", "Perlin init every frame",
               "With Perlin init, every frame starts from fresh Perlin noise",
               (), G, ANIMATED),
        ]),
    ]),
    ("Models", [
        ("Diffusion", [
            _r("models.diffusion_model", "Diffusion model",
               "Guided diffusion model: Disco catalogue name, checkpoint path or tiny",
               ("Disco: diffusion_model",), G),
            _r("models.use_secondary_model", "Use secondary model",
               "Guide through Disco's small secondary model: faster, less memory",
               ("Disco: use_secondary_model",), G),
            _r("models.secondary_model", "Secondary model", "Secondary model: catalogue name, checkpoint path or tiny",
               (), G),
            _r("models.latent_model", "Latent model",
               "SD, SDXL, SD 3.5, Flux, Kolors or HunyuanDiT: preset, hub id, diffusers folder or .safetensors file",
               (), L),
            _r("models.fast_vae", "Fast decoder",
               "Optional tiny VAE id used to decode (e.g. madebyollin/taesd); empty uses the full VAE",
               (), L),
            _r("models.latent_config", "Checkpoint configs", "For a .safetensors latent model: hub id or folder "
               "with its configs; empty = the detected family's", (), L),
            _r("models.latent_lora", "LoRA", "Optional LoRA fused at load (LCM, Lightning, Hyper-SD): hub id, folder or "
               ".safetensors file", (), L),
            _r("models.latent_lora_scale", "LoRA strength", "Strength of the fused LoRA (1 = as trained)", (), L),
            _r("models.text_encoder_t5", "Load T5", "SD 3.5: load its T5 text encoder (off saves ~9 GB)", (), L),
            _r("models.offload_text_encoders", "Text encoders on CPU",
               "Keep text encoders on the CPU to save GPU memory (prompts are encoded once each)", (), L),
            _r("models.vae_tiling", "VAE tiling", "Tiled VAE encode/decode: less memory for large images", (), L),
            _r("models.fp8_weights", "FP8 weights", "Store the denoiser in float8 (for CUDA): an estimated half of its weight memory", (), L),
        ]),
        ("CLIP", [
            _r("models.clip_models", "CLIP models",
               "CLIP models that guide the image (latent mode: only with CLIP scale > 0)",
               ("Disco: ViTB32", "Disco: ViTB16", "Disco: ViTL14", "Disco: RN50", "Disco: RN101",
                "Deforum: clip_name")),
        ]),
        ("Depth (3D)", [
            _r("models.depth_model", "Depth model", "Depth model of the 3D warp: hub id, local folder or constant",
               ("Disco: midas_depth_model",), animation_modes=D3),
            _r("models.depth_model_2", "Second depth model",
               "Optional second depth model blended with the first; empty for none",
               (), animation_modes=D3),
            _r("models.depth_weight_2", "Second depth weight", "Weight of the second depth model in the blend, 0 to 1",
               ("Disco: midas_weight", "Deforum: midas_weight"), animation_modes=D3),
        ]),
        ("Hardware", [
            _r("models.device", "Device", "Where to render: auto (the GPU if there is one), cpu, cuda or cuda:N"),
            _r("models.dtype", "Precision",
               "Number precision: auto picks half precision where safe on a GPU, float32 on CPU",
               advanced=True),
            _r("models.models_root", "Models folder",
               "Folder for downloaded model weights; empty uses $DISCOLIB_MODELS or the cache"),
            _r("models.threads", "CPU threads", "CPU threads a render uses; 0 picks a safe number for this machine",
               advanced=True),
            _r("models.gradient_checkpointing", "Gradient checkpointing", "Use less GPU memory at the cost of speed",
               ("Disco: use_checkpoint",), G, advanced=True),
            _r("models.compile", "Compile models", "torch.compile the models: faster on a GPU after a slow first image",
               advanced=True),
            _r("models.random_weights", "Random weights if offline",
               "Use random weights when real ones cannot be fetched (images are noise)",
               advanced=True),
        ]),
    ]),
    ("Guidance", [
        ("CLIP guidance", [
            _r("guidance.clip_guidance_scale", "CLIP guidance scale",
               "How strongly CLIP pulls the image towards the prompts",
               ("Disco: clip_guidance_scale",), G, NOT_VIDEO),
            _r("guidance.tv_scale", "TV scale", "Total-variation loss scale: smooths the image; 0 is off",
               ("Disco: tv_scale",), excluded=GUIDED_VIDEO),
            _r("guidance.sat_scale", "Saturation scale", "Penalises over-saturated colours; 0 is off",
               ("Disco: sat_scale",), excluded=GUIDED_VIDEO),
            _r("guidance.range_scale", "Range scale",
               "Penalises pixel values out of range; only with range loss on (a no-op in Disco)",
               ("Disco: range_scale",), excluded=GUIDED_VIDEO),
            _r("guidance.range_loss_active", "Range loss on",
               "Apply the range scale; off matches Disco, where the range loss has no effect"),
            _r("guidance.clamp_grad", "Clamp gradient", "Limit the size of the guidance gradient to the clamp max",
               ("Disco: clamp_grad",)),
            _r("guidance.clamp_max", "Clamp max", "Largest RMS of the guidance gradient when clamping",
               ("Disco: clamp_max",)),
        ]),
        ("Cuts", [
            _r("guidance.cutn_batches", "Cut batches", "Batches of cutouts per step; more is slower and steadier",
               ("Disco: cutn_batches",), excluded=GUIDED_VIDEO),
            _r("guidance.cut_overview", "Overview cuts",
               "Whole-image cutouts per step, over 1000 steps: [12]*400+[4]*600",
               ("Disco: cut_overview",)),
            _r("guidance.cut_innercut", "Inner cuts", "Zoomed-in cutouts per step, over 1000 steps: [4]*400+[12]*600",
               ("Disco: cut_innercut",)),
            _r("guidance.cut_ic_pow", "Inner cut size power", "Inner cut size bias per step; higher makes smaller cuts",
               ("Disco: cut_ic_pow",)),
            _r("guidance.cut_icgray_p", "Inner cut grey chance", "Probability that an inner cut is greyscale, per step",
               ("Disco: cut_icgray_p",)),
            _r("guidance.skip_augs", "Skip augmentations", "Do not flip, jitter or distort the cutouts",
               ("Disco: skip_augs",)),
        ]),
        ("Sampler", [
            _r("guidance.sampler", "Sampler", "Pixel sampler: ddim (uses eta), plms, or dpmpp (faster)",
               ("Disco: diffusion_sampling_mode",), G),
            _r("guidance.eta", "Eta", "DDIM noise, 0 to 1: 0 deterministic, 1 most random",
               ("Disco: eta",), G),
            _r("guidance.clip_denoised", "Clip denoised", "Clamp the predicted image to the valid range at each step",
               ("Disco: clip_denoised",), G),
        ]),
        ("Symmetry", [
            _r("guidance.use_vertical_symmetry", "Vertical symmetry",
               "Mirror the top half onto the bottom at the symmetry steps",
               ("Disco: use_vertical_symmetry",), G),
            _r("guidance.use_horizontal_symmetry", "Horizontal symmetry",
               "Mirror the left half onto the right at the symmetry steps",
               ("Disco: use_horizontal_symmetry",), G),
            _r("guidance.transformation_percent", "Symmetry steps",
               "Fractions of the steps at which symmetry is applied, e.g. [0.09]",
               ("Disco: transformation_percent",), G),
            _r("guidance.symmetry_any_sampler", "Symmetry with any sampler",
               "Also apply symmetry with plms and dpmpp (Disco: ddim only)",
               (), G, advanced=True),
        ]),
        ("Fuzzy prompt", [
            _r("guidance.fuzzy_prompt", "Fuzzy prompt", "Add random noise to the prompt embeddings",
               ("Disco: fuzzy_prompt",), G),
            _r("guidance.rand_mag", "Fuzz amount", "Size of the fuzzy-prompt noise",
               ("Disco: rand_mag",), G),
        ]),
    ]),
    ("Latent", [
        ("Sampler", [
            _r("latent.scheduler", "Sampler", "Scheduler: euler_a, euler, dpmpp_2m, ddim, lcm...",
               ("Deforum: sampler",), L),
            _r("latent.ddim_eta", "DDIM eta", "Noise of the ddim sampler, 0 to 1 (other samplers ignore it)",
               ("Deforum: ddim_eta",), L),
            _r("latent.cfg_scale", "CFG scale", "How closely the image follows the prompt; 1 or less turns CFG off",
               ("Deforum: scale",), L, STILLS),
            _r("animation.cfg_scale_schedule", "CFG scale schedule", "CFG scale per frame as keyframes, e.g. 0: (7)",
               ("Deforum: cfg_scale_schedule",), L, ANIMATED),
            _r("latent.clip_scale", "CLIP scale",
               "Optional CLIP guidance with the Guidance tab's cuts; 0 is off, try 100s to 1000s",
               ("Deforum: clip_scale",), L),
        ]),
    ]),
    ("Motion", [
        ("Frames", [
            _r("animation.max_frames", "Frames", "Number of frames to render",
               ("Disco: max_frames", "Deforum: max_frames"), animation_modes=ANIMATED),
            _r("animation.length_from_soundtrack", "As long as the soundtrack",
               "Render as many frames as the soundtrack lasts at the video's frame rate", (), animation_modes=ANIMATED),
            _r("animation.interpolation", "Keyframe interpolation",
               "How values between keyframes are filled in: linear, cubic, step...",
               ("Disco: interp_spline",), animation_modes=ANIMATED, excluded=GUIDED_VIDEO),
        ]),
        ("Translation", [
            _r("animation.translation_x", "Translation X", "Sideways move per frame: pixels in 2D, 3D units in 3D",
               ("Disco: translation_x", "Deforum: translation_x"), animation_modes=MOVING),
            _r("animation.translation_y", "Translation Y", "Vertical move per frame: pixels in 2D, 3D units in 3D",
               ("Disco: translation_y", "Deforum: translation_y"), animation_modes=MOVING),
            _r("animation.translation_z", "Translation Z (forward)",
               "Forward move of the camera per frame, in 3D units",
               ("Disco: translation_z", "Deforum: translation_z"), animation_modes=D3),
        ]),
        ("2D rotation and zoom", [
            _r("animation.angle", "Angle", "Rotation per frame in degrees (positive: counter-clockwise)",
               ("Disco: angle", "Deforum: angle"), animation_modes=D2),
            _r("animation.zoom", "Zoom", "Zoom factor per frame: 1 none, above 1 zooms in",
               ("Disco: zoom", "Deforum: zoom"), animation_modes=D2),
            _r("animation.transform_center_x", "Centre X",
               "Centre of rotation and zoom, as a fraction of the width (0.5 middle)",
               ("Deforum: transform_center_x",), animation_modes=D2),
            _r("animation.transform_center_y", "Centre Y",
               "Centre of rotation and zoom, as a fraction of the height (0.5 middle)",
               ("Deforum: transform_center_y",), animation_modes=D2),
            _r("animation.border", "Border",
               "What fills the edges uncovered by a 2D move or the perspective flip: wrap, replicate, reflect, zeros",
               ("Deforum: border",), animation_modes=MOVING),
            _r("animation.sampling_mode_2d", "2D sampling",
               "Pixel interpolation of the 2D warp and the perspective flip: bilinear (as the originals), bicubic...",
               (), animation_modes=MOVING, advanced=True),
        ]),
        ("3D rotation and camera", [
            _r("animation.rotation_3d_x", "Rotation X (tilt)",
               "Camera rotation about the horizontal axis, degrees per frame",
               ("Disco: rotation_3d_x", "Deforum: rotation_3d_x"), animation_modes=D3),
            _r("animation.rotation_3d_y", "Rotation Y (pan)",
               "Camera rotation about the vertical axis, degrees per frame",
               ("Disco: rotation_3d_y", "Deforum: rotation_3d_y"), animation_modes=D3),
            _r("animation.rotation_3d_z", "Rotation Z (roll)", "Camera rotation about the view axis, degrees per frame",
               ("Disco: rotation_3d_z", "Deforum: rotation_3d_z"), animation_modes=D3),
            _r("animation.fov", "Field of view", "Camera field of view in degrees per frame; wider exaggerates depth",
               ("Disco: fov", "Deforum: fov_schedule", "Deforum: fov"), animation_modes=D3),
            _r("animation.aspect_ratio_schedule", "Aspect ratio",
               "Camera aspect ratio per frame; sideways 3D motion is divided by it (1 default)",
               ("Deforum: aspect_ratio_schedule",), animation_modes=D3),
            _r("animation.padding_mode", "Edge fill",
               "What fills edges uncovered by the 3D warp: border, reflection or zeros",
               ("Disco: padding_mode", "Deforum: padding_mode"), animation_modes=D3),
            _r("animation.sampling_mode", "3D sampling",
               "Pixel interpolation of the 3D warp: bicubic, bilinear or nearest",
               ("Disco: sampling_mode", "Deforum: sampling_mode"), animation_modes=D3),
            _r("animation.near", "Near plane",
               "Camera near plane; kept for imported files, it does not change the motion",
               ("Disco: near_plane", "Deforum: near_schedule", "Deforum: near_plane"),
               animation_modes=D3, advanced=True),
            _r("animation.far", "Far plane", "Camera far plane; kept for imported files, it does not change the motion",
               ("Disco: far_plane", "Deforum: far_schedule", "Deforum: far_plane"), animation_modes=D3, advanced=True),
        ]),
        ("Depth", [
            _r("animation.use_depth_warping", "Use depth",
               "Warp with the estimated depth; off treats the image as flat",
               ("Deforum: use_depth_warping",), animation_modes=D3),
            _r("animation.depth_convention", "Depth units",
               "disco: raw depth scale (Disco, deforum-stable-diffusion); webui: normalised",
               ("Deforum: depth_algorithm",), animation_modes=D3, advanced=True),
            _r("animation.save_depth_maps", "Save depth maps",
               "Save each frame's depth map as a 16-bit PNG in the run folder",
               ("Deforum: save_depth_maps",), animation_modes=D3),
        ]),
        ("Perspective flip", [
            _r("animation.enable_perspective_flip", "Perspective flip",
               "Also tilt each frame with a perspective flip (in 2D it replaces translation)",
               ("Deforum: flip_2d_perspective", "Deforum: enable_perspective_flip"), animation_modes=MOVING),
            _r("animation.perspective_flip_theta", "Flip theta", "Tilt about the vertical axis, degrees per frame",
               ("Deforum: perspective_flip_theta",), animation_modes=MOVING),
            _r("animation.perspective_flip_phi", "Flip phi", "Tilt about the horizontal axis, degrees per frame",
               ("Deforum: perspective_flip_phi",), animation_modes=MOVING),
            _r("animation.perspective_flip_gamma", "Flip gamma", "Rotation in the image plane, degrees per frame",
               ("Deforum: perspective_flip_gamma",), animation_modes=MOVING),
            _r("animation.perspective_flip_fv", "Flip field of view",
               "Field of view of the flip's virtual camera, degrees",
               ("Deforum: perspective_flip_fv",), animation_modes=MOVING),
        ]),
        ("VR / stereo", [
            _r("animation.vr_mode", "VR mode",
               "Also render a left and right eye view of every frame and a side-by-side video",
               ("Disco: vr_mode",), animation_modes=D3),
            _r("animation.vr_eye_angle", "Eye angle", "Each eye's rotation towards the centre, degrees",
               ("Disco: vr_eye_angle",), animation_modes=D3),
            _r("animation.vr_ipd", "Eye distance", "Distance between the eyes, in 3D translation units",
               ("Disco: vr_ipd",), animation_modes=D3),
        ]),
    ]),
    ("Coherence", [
        ("Cadence", [
            _r("animation.cadence", "Cadence",
               "Diffuse every Nth frame and blend the warped frames between; 1 diffuses all",
               ("Disco: turbo_steps", "Deforum: diffusion_cadence"), animation_modes=MOVING),
            _r("animation.turbo_preroll", "Cadence preroll",
               "Frames diffused one by one at the start before cadence begins",
               ("Disco: turbo_preroll",), G, MOVING),
        ]),
        ("Strength and noise", [
            _r("animation.strength_schedule", "Strength schedule",
               "Fraction of the warped previous frame kept per frame, 0 to 1",
               ("Deforum: strength_schedule",), L, MOVING),
            _r("animation.frames_scale", "Frames scale",
               "How strongly each frame is pulled towards the warped previous one (loss scale)",
               ("Disco: frames_scale",), G, MOVING),
            _r("animation.frames_skip_steps", "Frames skip steps",
               "Steps skipped on frames after the first: a percentage (60%) or a count",
               ("Disco: frames_skip_steps",), G, ANIMATED),
            _r("animation.noise_schedule", "Noise schedule",
               "Noise added to the warped frame per frame, before diffusion",
               ("Deforum: noise_schedule",), L, MOVING),
            _r("animation.noise_type", "Noise type",
               "gaussian, perlin, or sd-webui-deforum's blends webui-uniform and webui-perlin",
               ("Deforum: noise_type",), L, MOVING),
            _r("animation.perlin_w", "Perlin cells across",
               "Perlin noise lattice cells along the rows (perlin and webui-perlin noise)",
               ("Deforum: perlin_w",), L, MOVING),
            _r("animation.perlin_h", "Perlin cells down",
               "Perlin noise lattice cells along the columns (perlin and webui-perlin noise)",
               ("Deforum: perlin_h",), L, MOVING),
            _r("animation.perlin_octaves", "Perlin octaves", "Perlin noise octaves, each at twice the frequency",
               ("Deforum: perlin_octaves",), L, MOVING),
            _r("animation.perlin_persistence", "Perlin persistence",
               "Perlin noise amplitude factor from one octave to the next, 0 to 1",
               ("Deforum: perlin_persistence",), L, MOVING),
            _r("animation.contrast_schedule", "Contrast schedule",
               "Contrast factor applied to the warped frame per frame; 1 unchanged",
               ("Deforum: contrast_schedule",), animation_modes=MOVING),
            _r("animation.fill_disocclusions", "Fill uncovered areas",
               "Fill pixels the 3D warp uncovers with fresh noise (a discolib extra)",
               (), L, D3),
        ]),
        ("Colour", [
            _r("animation.color_coherence", "Colour coherence",
               "Match each frame's colours to an early frame in LAB, HSV or RGB; None is off",
               ("Deforum: color_coherence",), animation_modes=MOVING),
            _r("animation.color_coherence_reference", "Colour reference",
               "Which frame colours match: deforum, webui (re-match after sampling), frame0",
               ("Deforum: legacy_colormatch",), animation_modes=MOVING, advanced=True),
            _r("animation.frames_8bit", "8-bit frames",
               "Warp and colour-match in 8 bits as Deforum does (its colours bit for bit); off keeps floats",
               (), animation_modes=MOVING, advanced=True),
            _r("animation.color_force_grayscale", "Greyscale", "Make every frame greyscale",
               ("Deforum: color_force_grayscale",), animation_modes=MOVING),
        ]),
        ("Anti-blur", [
            _r("animation.antiblur_amount", "Sharpen amount",
               "Unsharp-mask amount per frame against blur build-up; 0 is off",
               ("Deforum: amount_schedule",), animation_modes=MOVING),
            _r("animation.antiblur_sigma", "Sharpen sigma",
               "Unsharp-mask blur sigma per frame, in pixels; 0 or less derives it from the kernel",
               ("Deforum: sigma_schedule",), animation_modes=MOVING),
            _r("animation.antiblur_kernel", "Sharpen kernel",
               "Unsharp-mask kernel size per frame in pixels: odd, or 0 from the sigma",
               ("Deforum: kernel_schedule",), animation_modes=MOVING),
            _r("animation.antiblur_threshold", "Sharpen threshold",
               "Pixels within this many 8-bit levels of their blur stay unsharpened",
               ("Deforum: threshold_schedule",), animation_modes=MOVING),
        ]),
    ]),
    ("Video in", [
        ("Source", [
            _r("animation.video_init_path", "Video", "Path of the video whose frames start each frame",
               ("Disco: video_init_path", "Deforum: video_init_path"), animation_modes=VIDEO),
            _r("animation.extract_nth_frame", "Every Nth frame", "Use every Nth frame of the video",
               ("Disco: extract_nth_frame", "Deforum: extract_nth_frame"), animation_modes=VIDEO),
        ]),
        ("Guidance for video", [
            _r("animation.video_init_steps", "Steps", "Sampler steps per frame, instead of the Run tab's steps",
               ("Disco: video_init_steps",), G, VIDEO),
            _r("animation.video_init_clip_guidance_scale", "CLIP guidance scale",
               "CLIP loss scale, instead of the Guidance tab's",
               ("Disco: video_init_clip_guidance_scale",), G, VIDEO),
            _r("animation.video_init_tv_scale", "TV scale",
               "Total-variation (smoothing) loss scale, instead of the Guidance tab's",
               ("Disco: video_init_tv_scale",), G, VIDEO),
            _r("animation.video_init_range_scale", "Range scale", "Range loss scale, instead of the Guidance tab's",
               ("Disco: video_init_range_scale",), G, VIDEO),
            _r("animation.video_init_sat_scale", "Saturation scale",
               "Saturation loss scale, instead of the Guidance tab's",
               ("Disco: video_init_sat_scale",), G, VIDEO),
            _r("animation.video_init_cutn_batches", "Cut batches",
               "Cutout batches per step, instead of the Guidance tab's",
               ("Disco: video_init_cutn_batches",), G, VIDEO),
            _r("animation.video_init_skip_steps", "First frame skip steps",
               "Steps skipped on frame 0 when the flow warp is on",
               ("Disco: video_init_skip_steps",), G, VIDEO),
            _r("animation.video_init_frames_scale", "Frames scale",
               "How strongly each frame is pulled towards its init (loss scale)",
               ("Disco: video_init_frames_scale",), G, VIDEO),
            _r("animation.video_init_frames_skip_steps", "Frames skip steps",
               "Steps skipped on later frames (60% or a count), with the switch below on",
               ("Disco: video_init_frames_skip_steps",), G, VIDEO),
            _r("animation.video_init_honor_frames_skip_steps", "Use video frames skip steps",
               "On: later frames skip the setting above; off (as Disco v5.7): the Coherence tab's",
               (), G, VIDEO),
            _r("animation.video_init_seed_continuity", "Same seed every frame",
               "Keep the run seed on every frame; off gives frame k seed + 1 + k",
               ("Disco: video_init_seed_continuity",), G, VIDEO),
        ]),
        ("Flow", [
            _r("animation.video_init_flow_warp", "Flow warp",
               "Start each frame from the previous one moved by the video's optical flow",
               ("Disco: video_init_flow_warp",), G, VIDEO),
            _r("animation.video_init_flow_blend", "Flow blend",
               "Weight of the warped previous frame against the video frame, 0 to 1",
               ("Disco: video_init_flow_blend",), G, VIDEO),
            _r("animation.video_init_check_consistency", "Consistency check",
               "Where the flow is unreliable, start from the video frame instead",
               ("Disco: video_init_check_consistency",), G, VIDEO),
            _r("animation.video_flow_method", "Flow method",
               "Optical flow: raft (Disco, needs weights), farneback or dis (no weights)",
               (), G, VIDEO),
            _r("animation.video_flow_padding", "Flow edge fill",
               "What the flow warp reads outside the frame: zeros, border or reflection",
               (), G, VIDEO, advanced=True),
        ]),
        ("Blended video", [
            _r("animation.video_init_blend_mode", "Blend mode",
               "Extra output video with blended frames: None, linear or optical flow",
               ("Disco: video_init_blend_mode",), G, VIDEO),
            _r("animation.video_output_blend", "Blend amount", "Weight of the blend in that video, 0 to 1",
               (), G, VIDEO),
        ]),
    ]),
    ("Output", [
        ("Video", [
            _r("output.make_video", "Make video", "Write the video when the animation finishes",
               ("Deforum: skip_video_creation",), animation_modes=ANIMATED),
            _r("output.fps", "Frames per second", "Frame rate of the video",
               ("Deforum: fps",), animation_modes=ANIMATED),
            _r("output.video_format", "Video format", "mp4 (H.264) or gif",
               ("Deforum: make_gif",), animation_modes=ANIMATED),
            _r("output.soundtrack", "Soundtrack", "Optional audio file added to the mp4; keyframes can follow it (bass(t), beat(t))",
               ("Deforum: soundtrack_path",), animation_modes=ANIMATED),
            _r("output.preview_video_every", "Preview video every N frames",
               "Rewrite a preview video every N frames while rendering; 0 is off",
               (), animation_modes=ANIMATED),
        ]),
        ("Music", [
            _r("animation.beat_decay", "Beat pulse decay (s)",
               "How long beat(t) and bar(t) take to fall from 1 on the beat to 0", (), animation_modes=ANIMATED),
            _r("animation.beats_per_bar", "Beats per bar", "Bars of this many beats for bar(t) and bar_frame(n)",
               (), animation_modes=ANIMATED),
            _r("animation.first_downbeat", "First downbeat",
               "Which of the first beats starts a bar; -1 finds it from the kick", (), animation_modes=ANIMATED),
        ]),
    ]),
]


# Value conditions (FieldUI.needs): what other settings must say for a field to have an effect.
_CLIP_IN_LATENT = Need(("latent.clip_scale",), ">", 0.0, L)  # latent mode guides with CLIP only above 0
_FLOW = Need(("animation.video_init_flow_warp",), "true")
_FLIP_IN_3D = Need(("animation.enable_perspective_flip",), "true", animation_modes=frozenset({"3D"}))
_NEEDS: dict[str, tuple[Need, ...]] = {
    "animation.seed_iter_n": (Need(("animation.seed_behavior",), "==", "iter"),),
    "animation.seed_schedule": (Need(("animation.seed_behavior",), "==", "schedule"),),
    "guidance.perlin_mode": (Need(("guidance.perlin_init",), "true"),),
    "guidance.perlin_init_every_frame": (Need(("guidance.perlin_init",), "true"),),
    "models.secondary_model": (Need(("models.use_secondary_model",), "true"),),
    "models.clip_models": (_CLIP_IN_LATENT,),
    "models.depth_model": (Need(("animation.use_depth_warping",), "true"),),
    "models.depth_model_2": (Need(("animation.use_depth_warping",), "true"),),
    "models.depth_weight_2": (Need(("animation.use_depth_warping",), "true"), Need(("models.depth_model_2",), "true")),
    "guidance.tv_scale": (_CLIP_IN_LATENT,),
    "guidance.sat_scale": (_CLIP_IN_LATENT,),
    "guidance.range_scale": (_CLIP_IN_LATENT, Need(("guidance.range_loss_active",), "true")),
    "guidance.range_loss_active": (_CLIP_IN_LATENT,),
    "guidance.clamp_grad": (_CLIP_IN_LATENT,),
    "guidance.clamp_max": (_CLIP_IN_LATENT, Need(("guidance.clamp_grad",), "true")),
    "guidance.cutn_batches": (_CLIP_IN_LATENT,),
    "guidance.cut_overview": (_CLIP_IN_LATENT,),
    "guidance.cut_innercut": (_CLIP_IN_LATENT,),
    "guidance.cut_ic_pow": (_CLIP_IN_LATENT,),
    "guidance.cut_icgray_p": (_CLIP_IN_LATENT,),
    "guidance.skip_augs": (_CLIP_IN_LATENT,),
    "guidance.eta": (Need(("guidance.sampler",), "==", "ddim"),),
    "guidance.transformation_percent": (
        Need(("guidance.use_vertical_symmetry", "guidance.use_horizontal_symmetry"), "true"),
    ),
    "guidance.symmetry_any_sampler": (
        Need(("guidance.use_vertical_symmetry", "guidance.use_horizontal_symmetry"), "true"),
    ),
    "guidance.rand_mag": (Need(("guidance.fuzzy_prompt",), "true"),),
    "latent.ddim_eta": (Need(("latent.scheduler",), "==", "ddim"),),
    "animation.turbo_preroll": (Need(("animation.cadence",), ">", 1),),
    # In 3D only the perspective flip (a 2D warp before the 3D one) reads them.
    "animation.border": (_FLIP_IN_3D,),
    "animation.sampling_mode_2d": (_FLIP_IN_3D,),
    "animation.perlin_w": (Need(("animation.noise_type",), "in", ("perlin", "webui-perlin")),),
    "animation.perlin_h": (Need(("animation.noise_type",), "in", ("perlin", "webui-perlin")),),
    "animation.perlin_octaves": (Need(("animation.noise_type",), "in", ("perlin", "webui-perlin")),),
    "animation.perlin_persistence": (Need(("animation.noise_type",), "in", ("perlin", "webui-perlin")),),
    "animation.color_coherence_reference": (Need(("animation.color_coherence",), "!=", "None"),),
    "animation.perspective_flip_theta": (Need(("animation.enable_perspective_flip",), "true"),),
    "animation.perspective_flip_phi": (Need(("animation.enable_perspective_flip",), "true"),),
    "animation.perspective_flip_gamma": (Need(("animation.enable_perspective_flip",), "true"),),
    "animation.perspective_flip_fv": (Need(("animation.enable_perspective_flip",), "true"),),
    "animation.vr_eye_angle": (Need(("animation.vr_mode",), "true"),),
    "animation.vr_ipd": (Need(("animation.vr_mode",), "true"),),
    "animation.video_init_skip_steps": (_FLOW,),
    "animation.video_init_flow_blend": (_FLOW,),
    "animation.video_init_check_consistency": (_FLOW,),
    "animation.video_flow_method": (_FLOW,),
    "animation.video_flow_padding": (_FLOW,),
    "animation.video_init_frames_skip_steps": (Need(("animation.video_init_honor_frames_skip_steps",), "true"),),
    "animation.video_output_blend": (Need(("animation.video_init_blend_mode",), "!=", "None"),),
    "animation.beat_decay": (Need(("output.soundtrack",), "!=", ""),),
    "animation.beats_per_bar": (Need(("output.soundtrack",), "!=", ""),),
    "animation.first_downbeat": (Need(("output.soundtrack",), "!=", ""),),
    "animation.max_frames": (Need(("animation.length_from_soundtrack",), "==", False),),
}

def _build() -> tuple[dict[str, FieldUI], list[tuple[str, list[tuple[str, list[str]]]]]]:
    table: dict[str, FieldUI] = {}
    layout: list[tuple[str, list[tuple[str, list[str]]]]] = []
    for tab, sections in _LAYOUT:
        out_sections = []
        for section, rows in sections:
            for name, label, help_, originals, modes, anim, extra in rows:
                table[name] = FieldUI(
                    name, label, help_, originals, modes, anim, tab, section, needs=_NEEDS.get(name, ()), **extra
                )
            out_sections.append((section, [row[0] for row in rows]))
        layout.append((tab, out_sections))
    return table, layout


_TABLE, _TABLE_LAYOUT = _build()

# Fields added to the schema after this table was written still get an entry (under "Other" in their group's tab),
# so the panel never fails on one; tests/test_ui.py insists every field has a written entry.
_GROUP_TAB = {
    "run": "Run", "image": "Run", "models": "Models", "prompts": "Prompts", "guidance": "Guidance",
    "latent": "Latent", "animation": "Motion", "output": "Output",
}


def _derived(name: str) -> FieldUI:
    info = field_info(name)
    modes = {"guidance": G, "latent": L}.get(info.group, GL)
    first = info.help.split(". ")[0].rstrip(".")
    return FieldUI(
        name=name,
        label=info.field.replace("_", " ").capitalize(),
        help=first if len(first) <= 110 else first[:107] + "...",
        originals=(),
        modes=modes,
        animation_modes=ANIMATED if info.group == "animation" else ALL,
        tab=_GROUP_TAB.get(info.group, "Run"),
        section="Other",
    )


def field_ui(name: str) -> FieldUI:
    """The presentation of setting ``name`` (dotted, or a unique short name such as ``'zoom'``).

    Raises:
        SettingsError: ``name`` is not a setting (with the nearest names).
    """
    group, fname = resolve_name(name)
    dotted = f"{group}.{fname}"
    ui = _TABLE.get(dotted)
    return ui if ui is not None else _derived(dotted)


def panel_layout() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """``[(tab, [(section heading, [dotted names in display order])])]``, tabs in :data:`TABS` order, every field
    of :func:`~discolib.config.settings.iter_fields` exactly once (a fresh copy: callers may change it)."""
    extra: dict[str, list[str]] = {}
    for name in iter_fields():
        if name not in _TABLE:
            extra.setdefault(_derived(name).tab, []).append(name)
    known = set(iter_fields())
    out = []
    for tab, sections in _TABLE_LAYOUT:
        secs = [(s, [n for n in names if n in known]) for s, names in sections]
        secs = [(s, names) for s, names in secs if names]
        if tab in extra:
            secs.append(("Other", extra[tab]))
        if secs:
            out.append((tab, secs))
    return out


def is_shown(name: str, mode: str, animation_mode: str, *, show_all: bool = False, values: Any = None) -> bool:
    """Whether the panel shows ``name`` in image mode ``mode`` and animation mode ``animation_mode``: where it has
    an effect and is not advanced; ``show_all`` shows everything.

    ``values`` (optional: the current :class:`~discolib.config.settings.Settings`, or a mapping of dotted names
    to values) also hides a field whose :attr:`FieldUI.needs` do not hold, e.g. ``guidance.rand_mag`` while
    ``guidance.fuzzy_prompt`` is off.
    """
    if show_all:
        return True
    ui = field_ui(name)
    return (
        mode in ui.modes
        and animation_mode in ui.animation_modes
        and (mode, animation_mode) not in ui.excluded
        and not ui.advanced
        and (values is None or all(need.holds(values, mode, animation_mode) for need in ui.needs))
    )


def shown_fields(mode: str, animation_mode: str, *, show_all: bool = False, values: Any = None) -> list[str]:
    """Dotted names :func:`is_shown` keeps, in panel order."""
    return [
        n
        for _, sections in panel_layout()
        for _, names in sections
        for n in names
        if is_shown(n, mode, animation_mode, show_all=show_all, values=values)
    ]


def tab_shown(tab: str, mode: str, animation_mode: str, *, values: Any = None) -> bool:
    """Whether ``tab`` has a field shown in this image mode and animation mode (a tab with none is hidden, e.g.
    Latent in guided mode, Video in outside Video Input); ``values`` as for :func:`is_shown`."""
    return any(
        is_shown(n, mode, animation_mode, values=values)
        for t, sections in panel_layout()
        if t == tab
        for _, names in sections
        for n in names
    )


def originals_text(name: str) -> str:
    """The original names of ``name`` in one line, e.g. ``"Disco: turbo_steps · Deforum: diffusion_cadence"``
    (same-tool names joined: ``"Deforum: fov_schedule, fov"``); ``""`` if none."""
    by_tool: dict[str, list[str]] = {}
    for item in field_ui(name).originals:
        tool, _, key = item.partition(": ")
        by_tool.setdefault(tool, []).append(key)
    return " · ".join(f"{tool}: {', '.join(keys)}" for tool, keys in by_tool.items())
