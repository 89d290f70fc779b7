"""Import Disco Diffusion ``*_settings.txt`` files and Deforum settings files into :class:`Settings`.

Known keys map onto ours (some with a conversion, e.g. Disco's ``width_height`` or its ``ViTB32`` flags);
every other key is reported as ignored with a reason. Nothing is dropped silently: :class:`ImportReport`
lists what was mapped and what was not. A value of the wrong type is a :class:`SettingsError` that names the
file and the source key (``TimeToDisco_settings.txt: seed (-> run.seed): expected an integer, got [1]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discolib.config.settings import (
    Settings,
    SettingsError,
    field_info,
    normalise_animation_mode,
    read_settings_json,
    short_repr,
)
from discolib.errors import InputError

__all__ = ["ImportReport", "import_settings", "import_disco", "import_deforum", "detect_format"]


@dataclass
class ImportReport:
    """The result of an import: the settings, what mapped where, and what was ignored (with why)."""

    settings: Settings
    source_format: str
    mapped: dict[str, str] = field(default_factory=dict)  # source key -> our dotted field(s)
    ignored: dict[str, str] = field(default_factory=dict)  # source key -> reason
    notes: dict[str, str] = field(default_factory=dict)  # mapped source key -> how discolib's value differs

    def summary(self) -> str:
        lines = [f"imported a {self.source_format} settings file: {len(self.mapped)} keys mapped, {len(self.ignored)} ignored"]
        for k, why in sorted(self.ignored.items()):
            lines.append(f"  ignored {k}: {why}")
        for k, note in sorted(self.notes.items()):
            lines.append(f"  note {k}: {note}")
        return "\n".join(lines)


# Keys whose meaning is the same, only the name differs (source key -> our dotted name).
_DISCO_SAME: dict[str, str] = {
    "batch_name": "run.batch_name",
    "n_batches": "run.n_batches",
    "display_rate": "run.display_rate",
    "steps": "image.steps",
    "diffusion_model": "models.diffusion_model",
    "use_secondary_model": "models.use_secondary_model",
    "text_prompts": "prompts.text_prompts",
    "image_prompts": "prompts.image_prompts",
    "clip_guidance_scale": "guidance.clip_guidance_scale",
    "tv_scale": "guidance.tv_scale",
    "range_scale": "guidance.range_scale",
    "sat_scale": "guidance.sat_scale",
    "cutn_batches": "guidance.cutn_batches",
    "cut_overview": "guidance.cut_overview",
    "cut_innercut": "guidance.cut_innercut",
    "cut_ic_pow": "guidance.cut_ic_pow",
    "cut_icgray_p": "guidance.cut_icgray_p",
    "skip_augs": "guidance.skip_augs",
    "clamp_grad": "guidance.clamp_grad",
    "clamp_max": "guidance.clamp_max",
    "eta": "guidance.eta",
    "clip_denoised": "guidance.clip_denoised",
    "init_scale": "guidance.init_scale",
    "skip_steps": "guidance.skip_steps",
    "perlin_init": "guidance.perlin_init",
    "perlin_mode": "guidance.perlin_mode",
    "use_vertical_symmetry": "guidance.use_vertical_symmetry",
    "use_horizontal_symmetry": "guidance.use_horizontal_symmetry",
    "transformation_percent": "guidance.transformation_percent",
    "fuzzy_prompt": "guidance.fuzzy_prompt",
    "rand_mag": "guidance.rand_mag",
    "max_frames": "animation.max_frames",
    "angle": "animation.angle",
    "zoom": "animation.zoom",
    "translation_x": "animation.translation_x",
    "translation_y": "animation.translation_y",
    "translation_z": "animation.translation_z",
    "rotation_3d_x": "animation.rotation_3d_x",
    "rotation_3d_y": "animation.rotation_3d_y",
    "rotation_3d_z": "animation.rotation_3d_z",
    "padding_mode": "animation.padding_mode",
    "sampling_mode": "animation.sampling_mode",
    "frames_scale": "animation.frames_scale",
    "frames_skip_steps": "animation.frames_skip_steps",
    "video_init_path": "animation.video_init_path",
    "extract_nth_frame": "animation.extract_nth_frame",
    "turbo_preroll": "animation.turbo_preroll",
    "intermediate_saves": "run.intermediate_saves",
}

_DEFORUM_SAME: dict[str, str] = {
    "batch_name": "run.batch_name",
    "n_batch": "run.n_batches",
    "steps": "image.steps",
    "scale": "latent.cfg_scale",
    "strength": "latent.strength",
    "max_frames": "animation.max_frames",
    "border": "animation.border",
    "angle": "animation.angle",
    "zoom": "animation.zoom",
    "translation_x": "animation.translation_x",
    "translation_y": "animation.translation_y",
    "translation_z": "animation.translation_z",
    "rotation_3d_x": "animation.rotation_3d_x",
    "rotation_3d_y": "animation.rotation_3d_y",
    "rotation_3d_z": "animation.rotation_3d_z",
    "transform_center_x": "animation.transform_center_x",
    "transform_center_y": "animation.transform_center_y",
    "noise_schedule": "animation.noise_schedule",
    "strength_schedule": "animation.strength_schedule",
    "contrast_schedule": "animation.contrast_schedule",
    "cfg_scale_schedule": "animation.cfg_scale_schedule",
    "fov_schedule": "animation.fov",
    "near_schedule": "animation.near",
    "far_schedule": "animation.far",
    "seed_schedule": "animation.seed_schedule",
    "seed_behavior": "animation.seed_behavior",
    "seed_iter_N": "animation.seed_iter_n",
    "diffusion_cadence": "animation.cadence",
    "use_depth_warping": "animation.use_depth_warping",
    "padding_mode": "animation.padding_mode",
    "sampling_mode": "animation.sampling_mode",
    "save_depth_maps": "animation.save_depth_maps",
    "video_init_path": "animation.video_init_path",
    "extract_nth_frame": "animation.extract_nth_frame",
    "fps": "output.fps",
    "amount_schedule": "animation.antiblur_amount",
    "sigma_schedule": "animation.antiblur_sigma",
    "kernel_schedule": "animation.antiblur_kernel",
    "threshold_schedule": "animation.antiblur_threshold",
    "perlin_w": "animation.perlin_w",
    "perlin_h": "animation.perlin_h",
    "perlin_octaves": "animation.perlin_octaves",
    "perlin_persistence": "animation.perlin_persistence",
    "midas_weight": "models.depth_weight_2",
}

# Keys of other helpers' fields, mapped only where this discolib has the field (same name in our animation group).
_DISCO_OPTIONAL = (
    "vr_mode", "vr_eye_angle", "vr_ipd",
    "video_init_steps", "video_init_clip_guidance_scale", "video_init_tv_scale", "video_init_range_scale",
    "video_init_sat_scale", "video_init_cutn_batches", "video_init_skip_steps", "video_init_frames_scale",
    "video_init_frames_skip_steps", "video_init_seed_continuity", "video_init_flow_warp", "video_init_flow_blend",
    "video_init_check_consistency", "video_init_blend_mode",
)
_DEFORUM_OPTIONAL = ("aspect_ratio_schedule",)

#: Keys only sd-webui-deforum writes (deforum-stable-diffusion has none of them): a file with one is webui's.
_WEBUI_KEYS = frozenset({
    "noise_type", "perlin_w", "perlin_h", "perlin_octaves", "perlin_persistence", "aspect_ratio_schedule",
    "aspect_ratio_use_old_formula", "enable_perspective_flip", "depth_algorithm", "optical_flow_cadence",
    "cadence_flow_factor_schedule", "legacy_colormatch", "diffusion_redo", "reroll_blank_frames",
    "color_coherence_image_path", "enable_steps_scheduling", "enable_ddim_eta_scheduling", "motion_preview_mode",
    "optical_flow_redo_generation",
})

#: sd-webui-deforum's defaults for the coherence settings where they differ from deforum-stable-diffusion's
#: (its args.py), applied to a webui file before its keys, so a key it leaves out means what it meant there.
WEBUI_DEFAULTS: dict[str, Any] = {
    "animation.antiblur_amount": "0: (0.1)",
    "animation.noise_schedule": "0: (0.065)",
    "animation.noise_type": "webui-perlin",
    "animation.color_coherence": "LAB",
    "animation.border": "replicate",
    # webui's camera sees its normalised depth, and it re-matches colours after sampling (other parts of issue 13;
    # set only where this discolib has the fields).
    "animation.depth_convention": "webui",
    "animation.color_coherence_reference": "webui",
}

_DISCO_CLIP_FLAGS = {
    "ViTB32": "ViT-B/32",
    "ViTB16": "ViT-B/16",
    "ViTL14": "ViT-L/14",
    "ViTL14_336px": "ViT-L/14@336px",
    "RN101": "RN101",
    "RN50": "RN50",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
}

# Keys of the source files that have no counterpart, with why (shown to the user).
_DISCO_IGNORED = {
    "seed": None,  # handled below
    "batchNum": "batch counter of a Disco session, not a setting",
    "randomize_class": "only for class-conditional models; Disco's models are unconditional",
    "use_checkpoint": "Disco's gradient checkpointing flag; set models.gradient_checkpointing if needed",
    "diffusion_sampling_mode": None,
    "key_frames": "keyframes are always on in discolib",
    "interp_spline": None,
    "midas_depth_model": "discolib uses transformers depth models (models.depth_model)",
    "midas_weight": None,
    "near_plane": None,
    "far_plane": None,
    "fov": None,
    "turbo_mode": None,
    "turbo_steps": None,
    "width_height": None,
    "width": None,
    "height": None,
    "init_image": None,
    "animation_mode": None,
    "resume_run": "use `discolib render --resume RUN`",
    "diffusion_steps": "discolib keeps the model's 1000-step noise schedule (Disco's (1000 // steps) * steps rounding changed it silently)",
    "user_comment": "a free-text note, not a setting",
}


# Converters: each takes the source value and returns ours, or raises SettingsError (no field: _apply names the
# source key) for a value of the wrong type; none of them calls int()/str() on a value it has not type-checked.


def _expect_str(v: Any, what: str = "a string") -> str:
    if not isinstance(v, str):
        raise SettingsError(f"expected {what}, got {short_repr(v)}")
    return v


def _conv_int(v: Any) -> int:
    """An integer given as a JSON integer, a whole float (``512.0``) or a string of digits (``"3"``)."""
    if isinstance(v, bool):
        raise SettingsError(f"expected an integer, got {short_repr(v)}")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, str) and len(v) <= 100:
        try:
            return int(v.strip())
        except ValueError:
            pass
    raise SettingsError(f"expected an integer, got {short_repr(v)}")


def _conv_seed(v: Any) -> int:
    """Disco writes ``"random_seed"`` or null for a random seed, Deforum ``-1``; ours is ``-1``."""
    if v is None or v == "random_seed":
        return -1
    return _conv_int(v)


def _conv_size(v: Any) -> int:
    """Deforum rounds W and H down to a multiple of 64; we keep the multiple of 8 the latent model needs."""
    n = _conv_int(v)
    return n - n % 8


def _conv_interp(v: Any) -> str:
    names = {"linear": "linear", "quadratic": "quadratic", "cubic": "cubic"}
    s = _expect_str(v, "one of 'Linear', 'Quadratic', 'Cubic'")
    if s.strip().lower() not in names:
        raise SettingsError(f"expected one of 'Linear', 'Quadratic', 'Cubic', got {short_repr(v)}")
    return names[s.strip().lower()]


_COLOR_COHERENCE_NOTES = {
    "video input": "matching to the video's frames is not supported; matches frame 0 in LAB (what both Deforums "
    "do without hybrid video)",
    "image": "matching to an image (color_coherence_image_path) is not supported; matches frame 0 in LAB",
}


def _conv_color_coherence(v: Any) -> str:
    """deforum-stable-diffusion's ``'Match Frame 0 LAB'`` ... and sd-webui-deforum's ``'LAB'`` ... names."""
    s = _expect_str(v, "a colour coherence name such as 'Match Frame 0 LAB'").strip()
    if s.lower() == "none":
        return "None"
    for space in ("LAB", "HSV", "RGB"):
        if s.upper() == space or s.upper() == f"MATCH FRAME 0 {space}":
            return space
    if s.lower() in _COLOR_COHERENCE_NOTES:
        return "LAB"  # both originals fall back to their LAB branch for these (see the report's note)
    raise SettingsError(
        "expected one of 'None', 'Match Frame 0 LAB', 'Match Frame 0 HSV', 'Match Frame 0 RGB', 'LAB', 'HSV', "
        f"'RGB', 'Video Input', 'Image', got {short_repr(v)}"
    )


def _conv_webui_noise_type(v: Any) -> str:
    """sd-webui-deforum's ``noise_type`` (its own blend formula): ``uniform`` / ``perlin``; our names pass."""
    s = _expect_str(v, "'uniform' or 'perlin'").strip().lower()
    names = {"uniform": "webui-uniform", "perlin": "webui-perlin"}
    if s in names:
        return names[s]
    if s in field_info("animation.noise_type").choices:
        return s
    raise SettingsError(f"expected 'uniform' or 'perlin', got {short_repr(v)}")


def _deforum_animation_mode(v: Any) -> str:
    """Deforum's animation modes; its ``Interpolation`` (prompts blended without camera motion) renders as stills."""
    if isinstance(v, str) and v.strip().lower() == "interpolation":
        return "None"
    return normalise_animation_mode(v)


def _schedule_of(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"0: ({v})"
    return _expect_str(v, "a number or a keyframe string")


def _conv_prompts(v: Any) -> Any:
    """Deforum's prompts: a {frame: prompt} dict, or one prompt (a string or a list) for frame 0."""
    if isinstance(v, dict):
        return v
    if isinstance(v, (str, list)):
        return {"0": v}
    raise SettingsError(f"expected a {{frame: prompt}} object, a string or a list of strings, got {short_repr(v)}")


def _conv_negative(v: Any) -> str:
    """Deforum's negative prompts: one string, a list of strings or a {frame: text} dict, joined with '; '."""
    items = list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else [v]
    if not all(isinstance(x, str) for x in items):
        raise SettingsError(f"expected a string, a list of strings or a {{frame: text}} object, got {short_repr(v)}")
    return "; ".join(items)


def _expect_bool(data: dict[str, Any], key: str, target: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(f"{key} (-> {target}): expected true or false, got {short_repr(value)}")
    return value


def detect_format(data: dict[str, Any]) -> str:
    """``'disco'`` or ``'deforum'``, from keys only one of the two writes."""
    disco_keys = {"clip_guidance_scale", "width_height", "cutn_batches", "diffusion_model", "cut_overview"}
    deforum_keys = {"W", "H", "strength_schedule", "diffusion_cadence", "sampler", "animation_prompts", "prompts"}
    d = len(disco_keys & data.keys())
    f = len(deforum_keys & data.keys())
    if d == 0 and f == 0:
        raise SettingsError("not a Disco Diffusion or Deforum settings file (none of their keys found)")
    return "disco" if d >= f else "deforum"


def _apply(s: Settings, report: ImportReport, key: str, target: str, value: Any, conv: Callable[[Any], Any] | None = None) -> None:
    try:
        if conv:
            value = conv(value)
        kind = field_info(target).type_name
        if kind in ("int", "float") and isinstance(value, str) and len(value) <= 100:
            # Both tools store some numbers as strings (Deforum's diffusion_cadence "1", Disco's turbo_steps "3").
            try:
                value = int(value) if kind == "int" else float(value)
            except ValueError:
                pass  # Settings.set reports the bad value with the field's expectation
        s.set(target, value)
    except SettingsError as exc:
        raise SettingsError(f"{key} (-> {target}): {exc.reason}") from None
    mapped = report.mapped.get(key)
    report.mapped[key] = f"{mapped}, {target}" if mapped and target not in mapped.split(", ") else target


def _has_field(name: str) -> bool:
    try:
        field_info(name)
    except SettingsError:
        return False
    return True


def _apply_optional(
    s: Settings, report: ImportReport, key: str, target: str, value: Any, conv: Callable[[Any], Any] | None = None
) -> None:
    """:func:`_apply` where this discolib has ``target``; otherwise the key is reported as not supported."""
    if not _has_field(target):
        report.ignored[key] = f"{target} is not supported by this version of discolib"
        return
    _apply(s, report, key, target, value, conv)


def _validate(s: Settings, report: ImportReport) -> None:
    """``s.validate()``; a problem with a mapped field names the source key it came from."""
    try:
        s.validate()
    except InputError as exc:
        target = getattr(exc, "field", None) or getattr(exc, "setting", None)
        sources = [k for k, t in report.mapped.items() if target and target in t.split(", ")]
        if not sources:
            raise
        reason = str(exc).removeprefix(f"{target}: ")
        raise SettingsError(f"{sources[0]} (-> {target}): {reason}") from None


def import_disco(data: dict[str, Any]) -> ImportReport:
    """Map the JSON Disco Diffusion v5.x writes beside its images (``*_settings.txt``)."""
    s = Settings.defaults("guided")
    r = ImportReport(s, "Disco Diffusion")
    clip_flags = [k for k in _DISCO_CLIP_FLAGS if k in data]
    for key, value in data.items():
        if key in _DISCO_SAME:
            # Numbers given for keyframe settings become "0: (v)" in Settings.set.
            _apply(s, r, key, _DISCO_SAME[key], value)
        elif key in ("width_height", "width", "height"):
            if key == "width_height":
                if not (isinstance(value, list) and len(value) == 2):
                    raise SettingsError(f"width_height (-> image.width, image.height): expected [width, height], got {short_repr(value)}")
                _apply(s, r, key, "image.width", value[0])
                _apply(s, r, key, "image.height", value[1])
            else:
                _apply(s, r, key, f"image.{key}", value)
        elif key == "seed":
            _apply(s, r, key, "run.seed", value, _conv_seed)
        elif key == "diffusion_sampling_mode":
            _apply(s, r, key, "guidance.sampler", value)
        elif key == "init_image":
            _apply(s, r, key, "guidance.init_image", value or "")
        elif key == "animation_mode":
            _apply(s, r, key, "animation.animation_mode", value, normalise_animation_mode)
        elif key == "interp_spline":
            _apply(s, r, key, "animation.interpolation", value, _conv_interp)
        elif key in ("near_plane", "far_plane", "fov"):
            target = {"near_plane": "animation.near", "far_plane": "animation.far", "fov": "animation.fov"}[key]
            _apply(s, r, key, target, value, _schedule_of)
        elif key == "midas_weight":
            _apply(s, r, key, "models.depth_weight_2", value)
        elif key in ("turbo_mode", "turbo_steps"):
            continue  # handled together below
        elif key in _DISCO_OPTIONAL:
            _apply_optional(s, r, key, f"animation.{key}", value)
        elif key in _DISCO_CLIP_FLAGS:
            r.mapped[key] = "models.clip_models"
        else:
            reason = _DISCO_IGNORED.get(key) or "not a discolib setting"
            r.ignored[key] = reason
    if clip_flags:
        chosen = [_DISCO_CLIP_FLAGS[k] for k in clip_flags if _expect_bool(data, k, "models.clip_models")]
        s.set("models.clip_models", [name for k, name in _DISCO_CLIP_FLAGS.items() if name in chosen])
    if s.animation.vr_mode and s.animation.animation_mode != "3D":
        s.animation.vr_mode = False
        r.notes["vr_mode"] = "Disco turns VR mode off outside 3D mode (vr_mode false)"
    turbo = _expect_bool(data, "turbo_mode", "animation.cadence")
    if turbo and s.animation.animation_mode == "3D":
        _apply(s, r, "turbo_steps", "animation.cadence", data.get("turbo_steps", 3))
        r.mapped["turbo_mode"] = "animation.cadence"
    else:
        why = "turbo mode was off (cadence 1)" if not turbo else "Disco turns turbo mode off outside 3D mode (cadence 1)"
        for k in ("turbo_mode", "turbo_steps"):
            if k in data:
                r.ignored[k] = why
    _validate(s, r)
    return r


def import_deforum(data: dict[str, Any]) -> ImportReport:
    """Map a Deforum settings file (the JSON Deforum's notebook saves with each run)."""
    s = Settings.defaults("latent")
    webui = bool(_WEBUI_KEYS & data.keys())
    r = ImportReport(s, "Deforum (sd-webui-deforum)" if webui else "Deforum")
    if webui:
        for name, value in WEBUI_DEFAULTS.items():
            if _has_field(name):
                s.set(name, value)
    for key, value in data.items():
        if key in _DEFORUM_OPTIONAL:
            _apply_optional(s, r, key, f"animation.{key}", value, _schedule_of)
        elif key == "aspect_ratio_use_old_formula":
            continue  # after the loop: it overrides aspect_ratio_schedule wherever the two keys are
        elif key == "legacy_colormatch":
            # webui's legacy colour match is deforum-stable-diffusion's (no re-match after sampling).
            legacy = _expect_bool(data, key, "animation.color_coherence_reference")
            _apply_optional(s, r, key, "animation.color_coherence_reference", "deforum" if legacy else "webui")
        elif key == "noise_type":
            _apply(s, r, key, "animation.noise_type", value, _conv_webui_noise_type)
        elif key == "depth_algorithm":
            # webui's legacy "... +AdaBins (old)" models give the raw MiDaS-style blend Disco and dsd use; its
            # other models are normalised (webui's default convention). The model itself is models.depth_model's.
            name = _expect_str(value, "a depth algorithm name")
            old_scale = "adabins" in name.lower() and "(old)" in name.lower()
            _apply_optional(s, r, key, "animation.depth_convention", "disco" if old_scale else "webui")
        elif key in _DEFORUM_SAME:
            target = _DEFORUM_SAME[key]
            _apply(s, r, key, target, value)
        elif key in ("W", "H"):
            _apply(s, r, key, "image.width" if key == "W" else "image.height", value, _conv_size)
        elif key == "seed":
            _apply(s, r, key, "run.seed", value, _conv_seed)
        elif key == "sampler":
            _apply(s, r, key, "latent.scheduler", value, _deforum_sampler)
        elif key in ("prompts", "animation_prompts"):
            _apply(s, r, key, "prompts.text_prompts", value, _conv_prompts)
        elif key == "negative_prompts" or key == "negative_prompt":
            _apply(s, r, key, "latent.negative_prompt", value, _conv_negative)
        elif key == "animation_mode":
            _apply(s, r, key, "animation.animation_mode", value, _deforum_animation_mode)
        elif key == "color_coherence":
            _apply(s, r, key, "animation.color_coherence", value, _conv_color_coherence)
            if isinstance(value, str) and value.strip().lower() in _COLOR_COHERENCE_NOTES:
                r.notes[key] = _COLOR_COHERENCE_NOTES[value.strip().lower()]
        elif key in ("near_plane", "far_plane", "fov"):
            target = {"near_plane": "animation.near", "far_plane": "animation.far", "fov": "animation.fov"}[key]
            _apply(s, r, key, target, value, _schedule_of)
        elif key == "init_image":
            if _expect_bool(data, "use_init", "guidance.init_image"):
                _apply(s, r, key, "guidance.init_image", value or "")
            else:
                r.ignored[key] = "use_init was false"
        elif key == "outdir":
            _apply(s, r, key, "run.output_root", value)
        else:
            r.ignored[key] = "not a discolib setting"
    key = "aspect_ratio_use_old_formula"
    if key in data:
        if _expect_bool(data, key, "animation.aspect_ratio_schedule"):
            # webui's old formula: the camera's aspect ratio is the frame's W / H instead of the schedule.
            ratio = s.image.width / s.image.height
            _apply_optional(s, r, key, "animation.aspect_ratio_schedule", f"0: ({ratio:.6g})")
        else:
            r.ignored[key] = "the old formula was off (aspect_ratio_schedule applies)"
    _validate(s, r)
    return r


_DEFORUM_SAMPLERS = {
    "euler_ancestral": "euler_a",
    "euler": "euler",
    "dpm2": "heun",
    "heun": "heun",
    "ddim": "ddim",
    "plms": "pndm",
    "dpmpp_2m": "dpmpp_2m",
    "klms": "euler",
}


def _deforum_sampler(v: Any) -> str:
    if not isinstance(v, str) or v not in _DEFORUM_SAMPLERS:
        raise SettingsError(f"expected one of {', '.join(sorted(_DEFORUM_SAMPLERS))}, got {short_repr(v)}")
    return _DEFORUM_SAMPLERS[v]


def import_settings(path: str | Path) -> ImportReport:
    """Read a Disco or Deforum settings file, detect which it is, and map it.

    The file is read like a discolib settings file (a regular file of at most 4 MiB, JSON nested at most 64
    levels, finite numbers); every problem is a one-line :class:`SettingsError` naming the file and the key.
    """
    data, p = read_settings_json(path)
    if not isinstance(data, dict):
        raise SettingsError(f"{p}: expected a JSON object, got {type(data).__name__}")
    try:
        fmt = detect_format(data)
        return import_disco(data) if fmt == "disco" else import_deforum(data)
    except InputError as exc:
        raise SettingsError(f"{p}: {exc}") from None
