"""Import Disco Diffusion ``*_settings.txt`` files and Deforum settings files into :class:`Settings`.

Known keys map onto ours (some with a conversion, e.g. Disco's ``width_height`` or its ``ViTB32`` flags);
every other key is reported as ignored with a reason. Nothing is dropped silently: :class:`ImportReport`
lists every key as mapped (with a note where discolib implements it differently) or ignored (with why), and
warns where the file leaves something to inference (Disco's files do not say their animation mode). A value of the wrong type is a :class:`SettingsError` that names the
file and the source key (``TimeToDisco_settings.txt: seed (-> run.seed): expected an integer, got [1]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discolib.config.settings import (
    GROUPS,
    Settings,
    SettingsError,
    field_info,
    normalise_animation_mode,
    read_settings_json,
    short_repr,
)
from discolib.errors import InputError
from discolib.schedules.prompts import split_weighted_subprompts

__all__ = ["ImportReport", "import_settings", "import_disco", "import_deforum", "detect_format", "load_settings_file"]


@dataclass
class ImportReport:
    """The result of an import: the settings, what mapped where, and what was ignored (with why)."""

    settings: Settings
    source_format: str
    mapped: dict[str, str] = field(default_factory=dict)  # source key -> our dotted field(s)
    ignored: dict[str, str] = field(default_factory=dict)  # source key -> reason
    notes: dict[str, str] = field(default_factory=dict)  # mapped source key -> how discolib's value differs
    warnings: list[str] = field(default_factory=list)  # what the file left to inference, or a default used

    def status(self, key: str) -> str:
        """``'mapped'``, ``'implemented differently'`` (mapped with a note) or ``'ignored'``; KeyError if unknown."""
        if key in self.ignored:
            return "ignored"
        if key in self.mapped:
            return "implemented differently" if key in self.notes else "mapped"
        raise KeyError(key)

    def summary(self) -> str:
        """Every key: mapped (-> our fields), implemented differently (how) or ignored (why); warnings first."""
        n_diff = sum(1 for k in self.mapped if k in self.notes)
        lines = [
            f"imported a {self.source_format} settings file: {len(self.mapped)} keys mapped ({n_diff} implemented "
            f"differently), {len(self.ignored)} ignored"
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        for k, target in sorted(self.mapped.items()):
            if k in self.notes:
                lines.append(f"  implemented differently {k} -> {target} (see its note)")
            else:
                lines.append(f"  mapped {k} -> {target}")
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
    # Disco v5.7's open_clip members (its own flag spellings, e.g. "laion400m_32" = open_clip's laion400m_e32):
    # open_clip "architecture/pretrained tag" ids, which discolib.models.clip loads the way Disco does.
    "ViTB32_laion2b_e16": "ViT-B-32/laion2b_e16",
    "ViTB32_laion400m_e31": "ViT-B-32/laion400m_e31",
    "ViTB32_laion400m_32": "ViT-B-32/laion400m_e32",
    "ViTB32quickgelu_laion400m_e31": "ViT-B-32-quickgelu/laion400m_e31",
    "ViTB32quickgelu_laion400m_e32": "ViT-B-32-quickgelu/laion400m_e32",
    "ViTB16_laion400m_e31": "ViT-B-16/laion400m_e31",
    "ViTB16_laion400m_e32": "ViT-B-16/laion400m_e32",
    "RN50_yffcc15m": "RN50/yfcc15m",
    "RN50_cc12m": "RN50/cc12m",
    "RN50_quickgelu_yfcc15m": "RN50-quickgelu/yfcc15m",
    "RN50_quickgelu_cc12m": "RN50-quickgelu/cc12m",
    "RN101_yfcc15m": "RN101/yfcc15m",
    "RN101_quickgelu_yfcc15m": "RN101-quickgelu/yfcc15m",
}

# Keys of the source files that have no counterpart, with why (shown to the user).
_DISCO_IGNORED = {
    "seed": None,  # handled below
    "batchNum": "batch counter of a Disco session, not a setting",
    "randomize_class": "only for class-conditional models; Disco's models are unconditional",
    "persistent_frame_output_in_batch_folder": "discolib always writes frames into the run folder",
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
    "diffusion_steps": "derived from image.steps as Disco derives it ((1000 // steps) * steps, the respaced noise schedule)",
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


# Disco v5.7's notebook defaults of the motion settings (its cells), to tell what a user changed.
_DISCO_MOTION_DEFAULTS = {
    "angle": "0:(0)",
    "zoom": "0: (1), 10: (1.05)",
    "translation_x": "0: (0)",
    "translation_y": "0: (0)",
    "translation_z": "0: (10.0)",
    "rotation_3d_x": "0: (0)",
    "rotation_3d_y": "0: (0)",
    "rotation_3d_z": "0: (0)",
}
_DISCO_VIDEO_DEFAULTS = ("init.mp4", "/content/drive/MyDrive/init.mp4")


def _same_schedule(a: Any, b: str) -> bool:
    return isinstance(a, str) and "".join(a.split()) == "".join(b.split())


def infer_disco_mode(data: dict[str, Any]) -> tuple[str, str]:
    """The animation mode a Disco ``*_settings.txt`` (which does not say it) was most likely rendered in, and why.

    Disco writes every animation key whatever the mode, so the values decide: ``turbo_mode`` true means 3D (Disco
    turns turbo off outside 3D before it saves); a video path other than the notebook's default means Video
    Input; 3D-only motion (``translation_z``, ``rotation_3d_*``) changed from the defaults means 3D; 2D motion
    (``angle``, ``zoom``, ``translation_x/y``) changed means 2D; otherwise stills.
    """
    if data.get("turbo_mode") is True:
        return "3D", "turbo_mode is true (Disco turns turbo mode off outside 3D mode before saving)"
    path = data.get("video_init_path")
    if isinstance(path, str) and path.strip() and path not in _DISCO_VIDEO_DEFAULTS:
        return "Video Input", f"video_init_path is set ({short_repr(path)}, not the notebook's default)"
    changed = [k for k, d in _DISCO_MOTION_DEFAULTS.items() if k in data and not _same_schedule(data[k], d)]
    three_d = [k for k in changed if k == "translation_z" or k.startswith("rotation_3d_")]
    if three_d:
        return "3D", f"3D motion changed from Disco's defaults ({', '.join(three_d)})"
    if changed:
        return "2D", f"2D motion changed from Disco's defaults ({', '.join(changed)})"
    return "None", "no animation setting differs from Disco's defaults"


def import_disco(data: dict[str, Any], animation_mode: str | None = None) -> ImportReport:
    """Map the JSON Disco Diffusion v5.x writes beside its images (``*_settings.txt``).

    ``animation_mode`` (None, 2D, 3D, Video Input) says the mode the file was rendered in: Disco v5.7 does not
    save it. Without it, a file's own ``animation_mode`` key (older notebooks) holds, else the mode is inferred
    (:func:`infer_disco_mode`) and the report warns.
    """
    s = Settings.defaults("guided")
    r = ImportReport(s, "Disco Diffusion")
    clip_flags = [k for k in _DISCO_CLIP_FLAGS if k in data]
    if animation_mode is not None:
        mode = normalise_animation_mode(animation_mode)
        s.set("animation.animation_mode", mode)
        if "animation_mode" in data and data["animation_mode"] != animation_mode:
            r.warnings.append(f"--animation {mode} replaces the file's animation_mode {short_repr(data['animation_mode'])}")
            r.ignored["animation_mode"] = f"replaced by --animation {mode}"
    elif "animation_mode" not in data:
        mode, why = infer_disco_mode(data)
        s.set("animation.animation_mode", mode)
        r.warnings.append(
            f"Disco's settings file does not record its animation mode: inferred {mode!r} because {why}; "
            "pass --animation (None, 2D, 3D, Video Input) to say it"
        )
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
            if animation_mode is None:
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


def import_deforum(data: dict[str, Any], animation_mode: str | None = None) -> ImportReport:
    """Map a Deforum settings file (the JSON deforum-stable-diffusion or sd-webui-deforum saves with each run).

    ``animation_mode`` replaces the file's ``animation_mode`` when given.
    """
    s = Settings.defaults("latent")
    webui = bool(_WEBUI_KEYS & data.keys())
    r = ImportReport(s, "Deforum (sd-webui-deforum)" if webui else "Deforum")
    if webui:
        for name, value in WEBUI_DEFAULTS.items():
            if _has_field(name):
                s.set(name, value)
    _import_deforum_prompts(data, s, r, webui)
    for key, value in data.items():
        if key in r.mapped or key in r.ignored:
            continue  # the prompts, done above
        if key == "animation_mode" and animation_mode is not None:
            r.ignored[key] = f"replaced by --animation {animation_mode}"
            continue
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
            r.notes[key] = (
                f"sets the depth units ({'raw MiDaS scale' if old_scale else 'webui normalised'}); the depth model "
                "itself is models.depth_model's (discolib's transformers depth models)"
            )
        elif key in _DEFORUM_SAME:
            target = _DEFORUM_SAME[key]
            _apply(s, r, key, target, value)
        elif key in ("W", "H"):
            _apply(s, r, key, "image.width" if key == "W" else "image.height", value, _conv_size)
        elif key == "seed":
            _apply(s, r, key, "run.seed", value, _conv_seed)
        elif key == "sampler":
            _apply(s, r, key, "latent.scheduler", value, _deforum_sampler)
            note = _SAMPLER_NOTES.get(value.strip().lower()) if isinstance(value, str) else None
            if note:
                r.notes[key] = note
        elif key == "ddim_eta":
            _apply(s, r, key, "latent.ddim_eta", value)
            if value != 0 and data.get("sampler") not in ("ddim", "DDIM"):
                r.notes[key] = "used with latent.scheduler ddim only (both Deforums zero it for other samplers)"
        elif key in ("flip_2d_perspective", "enable_perspective_flip"):
            on = _expect_bool(data, key, "animation.enable_perspective_flip")
            mode = data.get("animation_mode")
            if on and not webui and isinstance(mode, str) and mode.strip().upper() == "3D":
                r.ignored[key] = "deforum-stable-diffusion applies the perspective flip in 2D mode only (its 3D warp ignores it)"
            else:
                _apply(s, r, key, "animation.enable_perspective_flip", on)
                if on:
                    r.notes[key] = (
                        "as both Deforums, the flip replaces translation_x/y in 2D mode (their np.matmul(bM, rot_mat, "
                        "trans_mat) passes the translation as numpy's out argument); sd-webui-deforum also flips "
                        "before the 3D warp"
                    )
        elif key in _PERSPECTIVE_KEYS:
            _apply(s, r, key, f"animation.{key}", value, _schedule_of)
        elif key == "color_force_grayscale":
            _apply(s, r, key, "animation.color_force_grayscale", value)
        elif key == "soundtrack_path":
            choice = data.get("add_soundtrack", "File")
            if choice == "File":
                _apply(s, r, key, "output.soundtrack", value)
            else:
                r.ignored[key] = f"add_soundtrack is {short_repr(choice)}, not 'File'"
        elif key == "add_soundtrack":
            if value == "File":
                r.mapped[key] = "output.soundtrack"
            elif value == "Init Video":
                r.ignored[key] = "muxing the init video's audio is not supported; set output.soundtrack to the video's path"
            else:
                r.ignored[key] = "no soundtrack (add_soundtrack 'None')"
        elif key == "make_gif":
            if _expect_bool(data, key, "output.video_format"):
                _apply(s, r, key, "output.video_format", "gif")
                r.notes[key] = "discolib writes one video per run: the GIF instead of sd-webui-deforum's MP4 + GIF"
            else:
                r.ignored[key] = "make_gif was false (discolib writes the MP4, output.video_format mp4)"
        elif key == "skip_video_creation":
            _apply(s, r, key, "output.make_video", not _expect_bool(data, key, "output.make_video"))
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
        elif key == "use_init":
            _expect_bool(data, key, "guidance.init_image")
            r.mapped[key] = "guidance.init_image"
        else:
            r.ignored[key] = _deforum_ignore_reason(key, value, data)
    key = "aspect_ratio_use_old_formula"
    if key in data:
        if _expect_bool(data, key, "animation.aspect_ratio_schedule"):
            # webui's old formula: the camera's aspect ratio is the frame's W / H instead of the schedule.
            ratio = s.image.width / s.image.height
            _apply_optional(s, r, key, "animation.aspect_ratio_schedule", f"0: ({ratio:.6g})")
        else:
            r.ignored[key] = "the old formula was off (aspect_ratio_schedule applies)"
    if animation_mode is not None:
        s.set("animation.animation_mode", _deforum_animation_mode(animation_mode))
    _validate(s, r)
    return r


_PERSPECTIVE_KEYS = ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv")

#: Prompt keys handled by _import_deforum_prompts.
_PROMPT_KEYS = (
    "cond_prompts", "uncond_prompts", "prompts", "animation_prompts", "positive_prompts", "negative_prompts",
    "animation_prompts_positive", "animation_prompts_negative", "negative_prompt", "cond_prompt", "uncond_prompt",
    "prompt",
)


def _frame_prompt_dict(key: str, value: Any) -> dict[str, str] | None:
    """A Deforum ``{frame: text}`` dict (keys as JSON writes them), None for an empty ``""``; else SettingsError."""
    if value == "" or value == {}:
        return None
    if isinstance(value, str):
        return {"0": value}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {str(i): v for i, v in enumerate(value)} if value else None
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    raise SettingsError(f"{key} (-> prompts.text_prompts): expected a {{frame: prompt}} object or a string, got {short_repr(value)}")


def _is_batch_dict(d: dict[str, str]) -> bool:
    """deforum-stable-diffusion's stills batch saves ``{prompt: "00000", ...}`` (prompt -> index, inverted)."""
    return all(len(v) == 5 and v.isdigit() for v in d.values()) and not all(k.strip().isdigit() for k in d)


def _hold(d: dict[str, str], frame: int) -> str:
    """Deforum's ffill/bfill: the text of the last key <= frame, else of the first key."""
    order = sorted(((int(k), v) for k, v in d.items()), key=lambda kv: kv[0])
    text = order[0][1]
    for f, v in order:
        if f <= frame:
            text = v
    return text


def _weighted_items(text: str, key: str, negative: str = "") -> str | list[str]:
    """One deforum-stable-diffusion prompt (and its negative prompt) as a discolib prompt value.

    Text without ``:`` or backticks stays one string (``"a lake --neg mountain"``); otherwise the weighted
    sub-prompts are split (see :func:`split_weighted_subprompts`) into a list of items.
    """
    pos, *neg = text.split("--neg", 1)
    negs = [t.strip() for t in (*neg, negative) if t.strip()]
    if ":" not in pos and "`" not in pos:
        return f"{pos.strip()} --neg {', '.join(negs)}" if negs else pos.strip()
    return split_weighted_subprompts(pos, setting=key) + [f"--neg {t}:1" for t in negs]


def _import_deforum_prompts(data: dict[str, Any], s: Settings, r: ImportReport, webui: bool) -> None:
    """Deforum's prompts -> prompts.text_prompts (negatives as ``--neg`` items), every prompt key reported.

    deforum-stable-diffusion saves what it rendered as ``cond_prompts`` / ``uncond_prompts`` ({frame: text}, each
    held until its next key; the negative ones independently of the positive ones); sd-webui-deforum saves
    ``prompts`` plus ``positive_prompts`` / ``negative_prompts``, which it wraps around every prompt as
    ``"{positive} {prompt} --neg {negative}"``. Weighted sub-prompts (``"a castle:2 fog:-0.5"``) and backtick
    weights are split as deforum-stable-diffusion's ``split_weighted_subprompts`` does; sd-webui-deforum hands its
    prompt text to the WebUI unchanged (its ``(word:1.2)`` attention syntax is not discolib's), so its texts stay
    whole.
    """
    present = [k for k in _PROMPT_KEYS if k in data]
    cond = _frame_prompt_dict("cond_prompts", data["cond_prompts"]) if "cond_prompts" in data else None
    uncond = _frame_prompt_dict("uncond_prompts", data["uncond_prompts"]) if "uncond_prompts" in data else None
    source = "cond_prompts"
    if cond is not None and _is_batch_dict(cond):
        texts = list(cond)
        cond = {"0": texts[0]}
        r.notes["cond_prompts"] = (
            f"deforum-stable-diffusion rendered one still per prompt ({len(texts)}); discolib renders the first "
            "(run the others with --set prompts.text_prompts=...)"
        )
        if uncond is not None and _is_batch_dict(uncond):
            uncond = {"0": next(iter(uncond))}
    if cond is None:
        for k in ("prompts", "animation_prompts"):
            if k in data and isinstance(data[k], (str, list, dict)):
                cond = _frame_prompt_dict(k, data[k])
                if cond is not None:
                    source = k
                    break
    if cond is None:
        r.warnings.append(
            "the file holds no prompts (no cond_prompts, prompts or animation_prompts): discolib's default prompt "
            f"{short_repr(s.prompts.text_prompts)} is used; set prompts.text_prompts"
        )
        for k in present:
            r.ignored[k] = "empty"
        return
    if webui:
        pos = data.get("positive_prompts", data.get("animation_prompts_positive", ""))
        neg = data.get("negative_prompts", data.get("animation_prompts_negative", ""))
        if not isinstance(pos, str) or not isinstance(neg, str):
            raise SettingsError(f"positive_prompts/negative_prompts (-> prompts.text_prompts): expected strings, got {short_repr([pos, neg])}")
        neg = neg.replace("--neg", "")
        # sd-webui-deforum's composition (args.py process_args), whitespace then normalised by the prompt parser.
        text = {k: f"{pos} {v} {'' if '--neg' in v else '--neg'} {neg}".strip() for k, v in cond.items()}
        _apply(s, r, source, "prompts.text_prompts", text)
        for k in ("positive_prompts", "negative_prompts", "animation_prompts_positive", "animation_prompts_negative"):
            if k in data:
                r.mapped[k] = "prompts.text_prompts"
                r.notes[k] = "wrapped around every prompt as sd-webui-deforum does: '{positive} {prompt} --neg {negative}'"
    else:
        keys = sorted({*cond, *(uncond or {})}, key=lambda k: int(k) if k.strip().lstrip("-").isdigit() else 0)
        numeric = all(k.strip().lstrip("-").isdigit() for k in keys)
        merged: dict[str, str | list[str]]
        if uncond and numeric:
            merged = {k: _weighted_items(_hold(cond, int(k)), source, _hold(uncond, int(k))) for k in keys}
        else:
            first_neg = next(iter(uncond.values())) if uncond else ""
            merged = {k: _weighted_items(v, source, first_neg) for k, v in cond.items()}
            if uncond and len(uncond) > 1:
                r.warnings.append("uncond_prompts with max_f keys: every prompt takes the first negative prompt")
        _apply(s, r, source, "prompts.text_prompts", merged)
        if uncond is not None:
            r.mapped["uncond_prompts"] = "prompts.text_prompts"
            r.notes["uncond_prompts"] = "negative prompts as '--neg' items of each key (Deforum holds them per frame)"
        if any(":" in v for v in cond.values()):
            r.notes[source] = (
                "weighted sub-prompts ('text:weight', backtick weights) split as deforum-stable-diffusion's "
                "split_weighted_subprompts; weights normalised by their sum in the latent sampler"
            )
    for k in present:
        if k not in r.mapped:
            if k in ("cond_prompt", "uncond_prompt", "prompt"):
                r.ignored[k] = "the prompt of the frame being rendered when the file was saved (cond_prompts holds them all)"
            elif k == "uncond_prompts":
                r.ignored[k] = "empty"
            elif k in ("negative_prompt", "negative_prompts") and not webui:
                _apply(s, r, k, "latent.negative_prompt", data[k], _conv_negative)
            else:
                r.ignored[k] = f"superseded by {source}"


#: Why common Deforum keys have no discolib counterpart (the report's text; prefixes end with '_').
_DEFORUM_IGNORE_REASONS: dict[str, str] = {
    "cn_": "ControlNet is not supported",
    "hybrid_": "hybrid video is not supported",
    "parseq_": "Parseq manifests are not supported; paste the keyframe strings instead",
    "frame_interpolation_": "frame interpolation (RIFE/FILM) is not supported; interpolate the video afterwards",
    "r_upscale": "video upscaling is not supported",
    "mask_": "inpainting masks are not supported",
    "use_mask": "inpainting masks are not supported",
    "invert_mask": "inpainting masks are not supported",
    "overlay_mask": "inpainting masks are not supported",
    "use_alpha_as_mask": "inpainting masks are not supported",
    "full_res_mask": "inpainting masks are not supported",
    "full_res_mask_": "inpainting masks are not supported",
    "mask_sample": "run-time state",
    "init_sample_raw": "run-time state",
    "use_noise_mask": "inpainting masks are not supported",
    "noise_mask_schedule": "inpainting masks are not supported",
    "video_mask_path": "inpainting masks are not supported",
    "use_mask_video": "inpainting masks are not supported",
    "fill": "inpainting masks are not supported",
    "use_looper": "Guided Images (looper) mode is not supported",
    "init_images": "Guided Images (looper) mode is not supported",
    "image_strength_schedule": "Guided Images (looper) mode is not supported",
    "blendFactor": "Guided Images (looper) mode is not supported",
    "tweening_frames_schedule": "Guided Images (looper) mode is not supported",
    "color_correction_factor": "Guided Images (looper) mode is not supported",
    "enable_": "a scheduling switch of a setting discolib does not schedule",
    "steps_schedule": "discolib keeps image.steps for every frame (step scheduling is not supported)",
    "ddim_eta_schedule": "discolib keeps latent.ddim_eta for every frame",
    "ancestral_eta_schedule": "ancestral eta is fixed at 1 in discolib's euler_a",
    "sampler_schedule": "discolib keeps one scheduler per run",
    "checkpoint_schedule": "discolib keeps one model per run",
    "clipskip_schedule": "CLIP skip is not supported",
    "noise_multiplier_schedule": "the WebUI's noise multiplier is not supported (1: standard noise)",
    "subseed": "the WebUI's variation seeds are not supported",
    "pix2pix_img_cfg_scale_schedule": "instruct-pix2pix is not supported",
    "seed_resize_from": "the WebUI's seed resize is not supported",
    "show_info_on_ui": "a WebUI display option",
    "motion_preview_mode": "a WebUI preview option",
    "tiling": "seamless tiling is not supported",
    "restore_faces": "face restoration is not supported",
    "reroll_": "re-rolling blank frames is not supported",
    "optical_flow_": "optical-flow cadence/redo is not supported (cadence blends warped frames)",
    "cadence_flow_factor_schedule": "optical-flow cadence is not supported",
    "redo_flow_factor_schedule": "optical-flow redo is not supported",
    "diffusion_redo": "diffusion redo is not supported",
    "color_coherence_video_every_N_frames": "matching to the video's frames is not supported",
    "color_coherence_image_path": "matching to an image is not supported",
    "extract_from_frame": "discolib reads the whole video (extract_nth_frame applies)",
    "extract_to_frame": "discolib reads the whole video (extract_nth_frame applies)",
    "overwrite_extracted_frames": "discolib reads video frames directly, nothing is extracted",
    "resume_": "use `discolib render --resume RUN`",
    "delete_": "discolib keeps the frames of a run",
    "store_frames_in_ram": "a WebUI memory option",
    "sd_model_": "which Stable Diffusion checkpoint: set models.latent_model",
    "deforum_git_commit_id": "the version of sd-webui-deforum that wrote the file",
    "save_": "discolib always saves frames and settings",
    "display_samples": "a notebook display option",
    "show_sample_per_step": "a notebook display option",
    "filename_format": "discolib names frames itself",
    "make_grid": "image grids are not supported",
    "grid_rows": "image grids are not supported",
    "n_samples": "discolib renders one image per seed (run.n_batches)",
    "bit_depth_output": "discolib writes 8-bit PNGs",
    "dynamic_threshold": "sample thresholding is not supported",
    "static_threshold": "sample thresholding is not supported",
    "strength_0_no_init": "discolib ignores strength without an init image, as this option does",
    "add_init_noise": "init noise is not supported",
    "init_noise": "init noise is not supported",
    "mean_scale": "deforum-stable-diffusion's conditional losses are not supported",
    "var_scale": "deforum-stable-diffusion's conditional losses are not supported",
    "exposure_": "deforum-stable-diffusion's conditional losses are not supported",
    "colormatch_": "deforum-stable-diffusion's conditional losses are not supported",
    "ignore_sat_weight": "deforum-stable-diffusion's conditional losses are not supported",
    "clip_name": "CLIP guidance in latent mode uses models.clip_models (latent.clip_scale)",
    "clip_scale": "deforum-stable-diffusion's CLIP loss is not mapped; use latent.clip_scale",
    "aesthetics_scale": "aesthetics loss is not supported",
    "cutn": "deforum-stable-diffusion's conditional losses are not supported",
    "cut_pow": "deforum-stable-diffusion's conditional losses are not supported",
    "init_mse_": "deforum-stable-diffusion's conditional losses are not supported",
    "blue_scale": "deforum-stable-diffusion's conditional losses are not supported",
    "gradient_": "deforum-stable-diffusion's conditional losses are not supported",
    "decode_method": "deforum-stable-diffusion's conditional losses are not supported",
    "grad_": "deforum-stable-diffusion's conditional losses are not supported",
    "clamp_": "deforum-stable-diffusion's conditional losses are not supported",
    "cond_uncond_sync": "deforum-stable-diffusion's conditional losses are not supported",
    "precision": "discolib picks the dtype from the device",
    "C": "latent channels come from the model",
    "f": "the VAE factor comes from the model",
    "timestring": "the run's time stamp",
    "init_latent": "run-time state",
    "init_sample": "run-time state",
    "init_c": "run-time state",
    "seed_internal": "run-time state",
    "using_vid_init": "run-time state",
    "interpolate_": "Deforum's Interpolation mode renders as stills",
}
#: Entries of the table above that are prefixes without a trailing '_'.
_IGNORE_PREFIXES = ("blendFactor", "subseed", "seed_resize_from", "r_upscale", "mask_")


def _deforum_ignore_reason(key: str, value: Any, data: dict[str, Any]) -> str:
    """Why ``key`` is ignored: the table above (exact key, then the longest prefix), else a generic reason."""
    reason = _DEFORUM_IGNORE_REASONS.get(key)
    if not reason:
        prefixes = [p for p in _DEFORUM_IGNORE_REASONS if (p.endswith("_") or p in _IGNORE_PREFIXES) and key.startswith(p)]
        reason = _DEFORUM_IGNORE_REASONS[max(prefixes, key=len)] if prefixes else ""
    if not reason:
        reason = "not a discolib setting"
    if key.startswith("enable_") and value is False:
        reason = "off"
    return reason


_SAMPLER_NOTES = {
    "klms": "LMS runs as euler (diffusers' LMS needs scipy)",
    "lms": "LMS runs as euler (diffusers' LMS needs scipy)",
    "lms karras": "LMS Karras runs as euler",
    "dpm2": "DPM2 runs as heun (the same second-order step without the midpoint sigma)",
    "dpm2 karras": "DPM2 Karras runs as heun",
    "dpm2_ancestral": "DPM2 ancestral runs as euler_a",
    "dpm2 a": "DPM2 a runs as euler_a",
    "dpm2 a karras": "DPM2 a Karras runs as euler_a",
    "dpmpp_2s_a": "DPM++ 2S a runs as euler_a",
    "dpm++ 2s a": "DPM++ 2S a runs as euler_a",
    "dpm++ 2s a karras": "DPM++ 2S a Karras runs as euler_a",
    "dpm_fast": "DPM fast runs as dpmpp_2m",
    "dpm_adaptive": "DPM adaptive runs as dpmpp_2m",
    "dpm fast": "DPM fast runs as dpmpp_2m",
    "dpm adaptive": "DPM adaptive runs as dpmpp_2m",
    "dpm++ sde": "DPM++ SDE runs as dpmpp_2m_sde",
    "dpm++ sde karras": "DPM++ SDE Karras runs as dpmpp_2m_sde",
    "dpm++ 2m sde karras": "DPM++ 2M SDE Karras runs as dpmpp_2m_sde (no Karras sigmas)",
    "dpm++ 3m sde": "DPM++ 3M SDE runs as dpmpp_2m_sde",
    "dpm++ 3m sde karras": "DPM++ 3M SDE Karras runs as dpmpp_2m_sde",
    "dpm++ 2m sde exponential": "runs as dpmpp_2m_sde",
    "dpm++ 3m sde exponential": "runs as dpmpp_2m_sde",
}


_DEFORUM_SAMPLERS = {
    "euler_ancestral": "euler_a",
    "euler": "euler",
    "dpm2": "heun",
    "heun": "heun",
    "ddim": "ddim",
    "plms": "pndm",
    "dpmpp_2m": "dpmpp_2m",
    "klms": "euler",
    "dpm2_ancestral": "euler_a",
    "dpmpp_2s_a": "euler_a",
    "dpm_fast": "dpmpp_2m",
    "dpm_adaptive": "dpmpp_2m",
}

#: sd-webui-deforum's samplers (the WebUI's names), matched case-insensitively.
_WEBUI_SAMPLERS = {
    "euler a": "euler_a",
    "euler": "euler",
    "lms": "euler",
    "lms karras": "euler",
    "heun": "heun",
    "dpm2": "heun",
    "dpm2 karras": "heun",
    "dpm2 a": "euler_a",
    "dpm2 a karras": "euler_a",
    "dpm++ 2s a": "euler_a",
    "dpm++ 2s a karras": "euler_a",
    "dpm++ 2m": "dpmpp_2m",
    "dpm++ 2m karras": "dpmpp_2m_karras",
    "dpm++ sde": "dpmpp_2m_sde",
    "dpm++ sde karras": "dpmpp_2m_sde",
    "dpm++ 2m sde": "dpmpp_2m_sde",
    "dpm++ 2m sde karras": "dpmpp_2m_sde",
    "dpm++ 2m sde exponential": "dpmpp_2m_sde",
    "dpm++ 3m sde": "dpmpp_2m_sde",
    "dpm++ 3m sde karras": "dpmpp_2m_sde",
    "dpm++ 3m sde exponential": "dpmpp_2m_sde",
    "dpm fast": "dpmpp_2m",
    "dpm adaptive": "dpmpp_2m",
    "ddim": "ddim",
    "plms": "pndm",
    "unipc": "unipc",
}


def _deforum_sampler(v: Any) -> str:
    """deforum-stable-diffusion's sampler names (``euler_ancestral``) and the WebUI's (``'Euler a'``)."""
    if isinstance(v, str) and v in _DEFORUM_SAMPLERS:
        return _DEFORUM_SAMPLERS[v]
    if isinstance(v, str) and v.strip().lower() in _WEBUI_SAMPLERS:
        return _WEBUI_SAMPLERS[v.strip().lower()]
    names = [*sorted(_DEFORUM_SAMPLERS), "'Euler a'", "'DPM++ 2M Karras'", "..."]
    raise SettingsError(f"expected one of {', '.join(names)}, got {short_repr(v)}")


def import_settings(path: str | Path, animation_mode: str | None = None) -> ImportReport:
    """Read a Disco or Deforum settings file, detect which it is, and map it.

    ``animation_mode`` (None, 2D, 3D, Video Input) says the file's mode: Disco's files do not record it.

    The file is read like a discolib settings file (a regular file of at most 4 MiB, JSON nested at most 64
    levels, finite numbers); every problem is a one-line :class:`SettingsError` naming the file and the key.
    """
    data, p = read_settings_json(path)
    if not isinstance(data, dict):
        raise SettingsError(f"{p}: expected a JSON object, got {type(data).__name__}")
    try:
        fmt = detect_format(data)
        if fmt == "disco":
            return import_disco(data, animation_mode)
        return import_deforum(data, animation_mode)
    except InputError as exc:
        raise SettingsError(f"{p}: {exc}") from None


def load_settings_file(path: str | Path, animation_mode: str | None = None) -> tuple[Settings, ImportReport | None]:
    """Any settings file a user has: a discolib settings JSON, a Disco ``*_settings.txt`` or a Deforum settings file.

    A discolib file is recognised by its shape (every top-level key is a setting group holding an object), not
    its name: it gives ``(Settings.load(path), None)``. Anything else is imported as Disco or Deforum settings,
    giving ``(report.settings, report)`` (``animation_mode`` as for :func:`import_settings`). A file that is
    neither is loaded as a discolib file, whose error names the unknown settings. Every problem is a one-line
    :class:`SettingsError` naming the file.
    """
    data, p = read_settings_json(path)
    grouped = isinstance(data, dict) and all(k in GROUPS and isinstance(v, dict) for k, v in data.items())
    if not grouped and isinstance(data, dict) and _has_original_keys(data):
        report = import_settings(p, animation_mode)
        return report.settings, report
    # A discolib file, or neither original's: the discolib loader then says which keys it does not know.
    return Settings.load(p), None


def _has_original_keys(data: dict[str, Any]) -> bool:
    try:
        detect_format(data)
    except SettingsError:
        return False
    return True
