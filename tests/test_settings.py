"""Settings schema: defaults, round trip, validation messages, overrides, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from discolib.config.presets import PRESETS, apply_preset
from discolib.config.settings import (
    Settings,
    SettingsError,
    field_info,
    iter_fields,
    normalise_animation_mode,
)


def test_guided_defaults_follow_disco_v57() -> None:
    s = Settings.defaults("guided")
    assert (s.image.width, s.image.height, s.image.steps) == (1280, 768, 250)
    assert s.guidance.clip_guidance_scale == 5000
    assert s.guidance.range_scale == 150
    assert s.guidance.cutn_batches == 4
    assert s.guidance.cut_overview == "[12]*400+[4]*600"
    assert s.guidance.eta == 0.8
    assert s.guidance.clamp_max == 0.05
    assert s.models.clip_models == ["ViT-B/32", "ViT-B/16", "RN50"]
    assert s.animation.zoom == "0: (1), 10: (1.05)"
    assert s.animation.frames_skip_steps == "60%"


def test_latent_defaults_follow_deforum() -> None:
    s = Settings.defaults("latent", "3D")
    assert (s.image.width, s.image.height) == (512, 512)
    assert s.animation.animation_mode == "3D"
    assert s.animation.max_frames == 120
    assert s.animation.strength_schedule == "0: (0.65)"
    assert s.animation.zoom == "0:(1.04)"
    assert s.latent.cfg_scale == 7.0
    assert s.run.n_batches == 1


@pytest.mark.parametrize("mode,anim", [("guided", "none"), ("latent", "2D"), ("guided", "3D"), ("latent", "3D")])
def test_round_trip(tmp_path: Path, mode: str, anim: str) -> None:
    s = Settings.defaults(mode, anim)
    s.set("seed", 7)
    s.set("animation.translation_x", "0:(sin(t/5)), 10:(2)")
    path = s.save(tmp_path / "s.json")
    back = Settings.load(path)
    assert back == s
    assert json.loads(path.read_text()) == s.to_dict()


def test_every_field_has_help_and_valid_default() -> None:
    s = Settings()
    for name in iter_fields():
        info = field_info(name)
        assert info.help, name
        assert s.get(name) == info.default
    s.validate()
    Settings.defaults("latent", "3D").validate()


def test_missing_groups_take_defaults_and_flat_keys_work() -> None:
    s = Settings.from_dict({"image": {"mode": "latent"}, "steps": 12})
    assert s.image.steps == 12
    assert s.image.width == 512  # Deforum default for latent mode


@pytest.mark.parametrize(
    "data,message",
    [
        ({"image": {"widht": 512}}, "image.widht: unknown setting; did you mean 'image.width'?"),
        ({"guidance": {"zoom": "0:(1)"}}, "guidance.zoom: unknown setting; it belongs in 'animation.zoom'"),
        ({"image": {"steps": "many"}}, "image.steps: expected an integer, got 'many'"),
        ({"image": {"steps": 0}}, "image.steps: expected a value >= 1, got 0"),
        ({"image": {"mode": "pixel"}}, "image.mode: expected one of 'guided', 'latent', got 'pixel'"),
        ({"guidance": {"sampler": "euler"}}, "guidance.sampler: expected one of 'ddim', 'plms', 'dpmpp', got 'euler'"),
        ({"guidance": {"eta": 1.5}}, "guidance.eta: expected a value <= 1.0, got 1.5"),
        ({"guidance": {"clamp_grad": "yes"}}, "guidance.clamp_grad: expected true or false, got 'yes'"),
        ({"image": {"width": 1000}}, "image.width: 1000 is not a multiple of 64 (needed by the guided sampler); use 960 or 1024"),
        ({"models": {"clip_models": [1, 2]}}, "models.clip_models: expected a list of strings, got [1, 2]"),
        ({"run": {"batch_name": "  "}}, "run.batch_name: expected a folder name"),
        ({"animation": {"frames_skip_steps": "sixty"}}, "animation.frames_skip_steps: expected a percentage like '60%'"),
        ({"image": "big"}, "image: expected an object of settings, got str"),
        (["not", "a", "dict"], "expected a JSON object of setting groups, got list"),
        ({"guidance": {"skip_steps": 300}}, "guidance.skip_steps: must be smaller than image.steps (250), got 300"),
        ({"animation": {"animation_mode": "3D", "max_frames": 4, "cadence": 5}}, "animation.cadence: cadence 5 is larger than animation.max_frames (4)"),
        ({"animation": {"animation_mode": "Video Input"}}, "animation.video_init_path: Video Input mode needs a video path"),
    ],
)
def test_bad_values_name_the_field(data: object, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_dict(data)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_bad_schedule_names_the_setting() -> None:
    with pytest.raises(ValueError) as err:
        Settings.from_dict({"animation": {"translation_z": "0: (1 + (2 * t)"}})
    assert str(err.value).startswith("animation.translation_z: column ")


def test_domain_error_in_schedule_found_at_validation() -> None:
    s = Settings.defaults("latent", "3D")
    s.set("animation.zoom", "0: (sqrt(50 - t))")
    with pytest.raises(ValueError, match="animation.zoom"):
        s.validate()


def test_bad_prompts_rejected() -> None:
    with pytest.raises(SettingsError, match="prompts.text_prompts"):
        Settings.from_dict({"prompts": {"text_prompts": {"0": ["a:1", "b:-1"]}}})


def test_bad_cut_schedule_rejected() -> None:
    with pytest.raises(ValueError, match="guidance.cut_overview"):
        Settings.from_dict({"guidance": {"cut_overview": "[12]*400+[4]*500"}})


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        Settings.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"image": {"steps": 10,}}')
    with pytest.raises(SettingsError, match=r"bad.json: line 1 column \d+: invalid JSON"):
        Settings.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"image": {"steps": -3}}')
    with pytest.raises(SettingsError, match=r"wrong.json: image.steps: expected a value >= 1, got -3"):
        Settings.load(wrong)


def test_set_from_string() -> None:
    s = Settings.defaults("guided", "3D")
    s.set_from_string("steps=100")
    s.set_from_string("animation.zoom=0:(1.02)")
    s.set_from_string("clip_models=[\"RN50\", \"ViT-B/32\"]")
    s.set_from_string("use_secondary_model=false")
    s.set_from_string("batch_name=my run")
    s.set_from_string("clip_guidance_scale=2500")
    assert s.image.steps == 100
    assert s.animation.zoom == "0:(1.02)"
    assert s.models.clip_models == ["RN50", "ViT-B/32"]
    assert s.models.use_secondary_model is False
    assert s.run.batch_name == "my run"
    assert s.guidance.clip_guidance_scale == 2500.0
    with pytest.raises(SettingsError, match="--set: expected name=value"):
        s.set_from_string("steps")
    with pytest.raises(SettingsError, match="stesp: unknown setting; did you mean 'steps'"):
        s.set_from_string("stesp=3")
    with pytest.raises(SettingsError, match="image.steps: expected an integer"):
        s.set_from_string("steps=lots")


def test_numbers_for_schedules_become_keyframe_strings() -> None:
    s = Settings.defaults("latent", "2D")
    s.set("zoom", 1.03)
    assert s.animation.zoom == "0: (1.03)"


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate(name: str) -> None:
    mode = PRESETS[name]["image.mode"]
    for anim in ("none", "3D"):
        s = apply_preset(Settings.defaults(mode, anim), name)
        s.validate()


def test_preset_mode_mismatch() -> None:
    with pytest.raises(SettingsError, match="preset 'tiny-latent' is for latent mode"):
        apply_preset(Settings.defaults("guided"), "tiny-latent")
    with pytest.raises(SettingsError, match="unknown preset 'tinny'; did you mean 'tiny'"):
        apply_preset(Settings.defaults("guided"), "tinny")


def test_unknown_latent_scheduler_refused_at_validation() -> None:
    with pytest.raises(SettingsError, match=r"latent.scheduler: unknown scheduler 'euler_aa' \(did you mean 'euler_a'\?\); expected one of"):
        Settings.from_dict({"image": {"mode": "latent"}, "latent": {"scheduler": "euler_aa"}})


def test_validation_of_a_huge_animation_file_is_fast(tmp_path: Path) -> None:
    """Six ~54 KB keyframe strings over 1 000 000 frames: each string is parsed once per process, not per check."""
    import time

    from discolib.cli import main
    from discolib.schedules.keyframes import _parse_keyframes_cached

    def big(offset: int) -> str:
        parts, size, frame = [], 0, 0
        while size < 54_000:
            part = f"{frame}: ({1 + 0.001 * ((frame + offset) % 7)}*sin(t/{frame + 3}))" if frame % 2 else f"{frame}: ({offset + frame % 5})"
            parts.append(part)
            size += len(part) + 2
            frame += 97
        return ", ".join(parts)

    s = Settings.defaults("guided", "3D")
    s.set("max_frames", 1_000_000)
    names = ["zoom", "angle", "translation_x", "translation_y", "translation_z", "rotation_3d_y"]
    for i, name in enumerate(names):
        s.set(name, big(i))
    assert all(50_000 < len(s.get(n)) < 56_000 for n in names)
    path = s.save(tmp_path / "huge.json")
    _parse_keyframes_cached.cache_clear()
    start = time.perf_counter()
    assert main(["validate", str(path), "--set", "steps=200"]) == 0  # load + validate, then validate again
    Settings.load(path).validate()
    assert time.perf_counter() - start < 10.0
    assert _parse_keyframes_cached.cache_info().misses <= len(iter_fields())  # each string parsed once


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("guidance.eta", 10**400, "guidance.eta: expected a finite number, got 1000"),
        ("guidance.transformation_percent", [10**400], "guidance.transformation_percent: expected a list of finite numbers"),
        ("run.seed", 10**50, "run.seed: expected a value <= 4294967295, got 1000"),
        ("prompts.text_prompts", {"0": {"a": "b"}}, "prompts.text_prompts: frame '0': expected a prompt string or a list of"),
        ("prompts.text_prompts", {("a",): "b"}, "prompts.text_prompts: key ('a',): expected a frame number"),
        ("prompts.text_prompts", [[["x"]]], "prompts.text_prompts: expected an object {frame: prompts}, got [[['x']]]"),
        ("image.mode", ["guided"], "image.mode: expected one of 'guided', 'latent', got ['guided']"),
        ("run.batch_name", "a\x00b", "run.batch_name: expected a folder name"),
        ("animation.zoom", "x" * 100_000, "animation.zoom: expected a string"),
    ],
)
def test_wrong_types_are_short_one_line_errors(name: str, value: object, message: str) -> None:
    s = Settings.defaults("guided")
    if name == "animation.zoom":  # a long string is a string: the schedule check refuses it at validation
        s.set(name, value)
        with pytest.raises(ValueError, match=r"animation.zoom: schedule is too long \(100000 characters"):
            s.validate()
        return
    with pytest.raises(SettingsError) as info:
        s.set(name, value)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text and len(text) < 300


def test_set_from_string_refuses_deep_json_and_paths_that_cannot_expand() -> None:
    s = Settings.defaults("guided")
    with pytest.raises(SettingsError, match=r"^prompts.text_prompts: value nested deeper than 64 levels$"):
        s.set_from_string("text_prompts=" + "[" * 10_000 + "]" * 10_000)
    s.set_from_string("init_image=~no_such_user_discolib_t/x.png")
    with pytest.raises(SettingsError, match=r"^guidance.init_image: cannot expand '~no_such_user_discolib_t/x.png'"):
        s.validate()


def test_validating_a_latent_file_imports_neither_torch_nor_diffusers(tmp_path: Path) -> None:
    """`discolib validate` of a latent settings file stays instant: no torch, diffusers or transformers import."""
    import subprocess
    import sys

    path = tmp_path / "latent.json"
    Settings.defaults("latent", "3D").save(path)
    code = (
        "import sys\nfrom discolib.cli import main\nassert main(['validate', sys.argv[1]]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'open_clip') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "heavy: []" in out.stdout, out.stdout


def test_animation_mode_spellings() -> None:
    for spelling, mode in [("none", "None"), (" 2d", "2D"), ("3D", "3D"), ("video", "Video Input"), ("Video input", "Video Input")]:
        assert normalise_animation_mode(spelling) == mode
        assert Settings.defaults("latent", spelling).animation.animation_mode == mode
    for bad in ("spin", "", None, 3):
        with pytest.raises(SettingsError, match=r"^animation.animation_mode: expected one of none, 2D, 3D, video, got"):
            normalise_animation_mode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 1, 4, "2"])
def test_threads_accepts_auto_and_counts(value: object) -> None:
    s = Settings.defaults("guided")
    assert s.models.threads == 0  # auto by default
    s.set_from_string(f"models.threads={value}")
    assert s.models.threads == int(value)  # type: ignore[call-overload]
    assert Settings.from_dict(s.to_dict()).models.threads == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "models.threads: expected a value >= 0, got -1"),
        ("x", "models.threads: expected an integer, got 'x'"),
        ("1.5", "models.threads: expected an integer, got 1.5"),
        ("true", "models.threads: expected an integer, got True"),
        ("2000", "models.threads: expected a value <= 1024, got 2000"),
    ],
)
def test_threads_refuses_what_is_not_a_count(value: str, message: str) -> None:
    s = Settings.defaults("guided")
    with pytest.raises(SettingsError) as err:
        s.set_from_string(f"threads={value}")
    assert str(err.value) == message
    with pytest.raises(SettingsError, match=f"^{message}"):
        Settings.from_dict({"models": {"threads": json.loads(value) if value != "x" else value}})
