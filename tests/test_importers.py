"""Importing Disco Diffusion and Deforum settings files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from discolib.config.importers import detect_format, import_settings
from discolib.config.settings import SettingsError

DATA = Path(__file__).parent / "data"


def test_disco_v57_settings_import() -> None:
    r = import_settings(DATA / "disco_v57_settings.txt")
    s = r.settings
    assert r.source_format == "Disco Diffusion"
    assert s.image.mode == "guided"
    assert (s.image.width, s.image.height, s.image.steps) == (1280, 768, 250)
    assert s.run.seed == 1234567
    assert s.models.clip_models == ["ViT-B/32", "ViT-B/16", "RN50"]
    assert s.guidance.sampler == "ddim"
    assert s.animation.animation_mode == "3D"
    assert s.animation.fov == "0: (40)"
    assert s.animation.near == "0: (200)"
    assert s.animation.cadence == 3  # turbo_mode with turbo_steps "3"
    assert s.models.depth_weight_2 == 0.3
    assert s.prompts.text_prompts["100"][1] == "This prompt has weight five:5"
    assert s.guidance.init_image == ""
    # Nothing silently dropped: every source key is either mapped or reported.
    data = json.loads((DATA / "disco_v57_settings.txt").read_text())
    assert set(r.mapped) | set(r.ignored) == set(data)
    assert "randomize_class" in r.ignored and "diffusion_steps" in r.ignored
    assert "vr_mode" not in r.ignored
    assert "ignored randomize_class" in r.summary()


def test_deforum_settings_import() -> None:
    r = import_settings(DATA / "deforum_settings.txt")
    s = r.settings
    assert r.source_format == "Deforum"
    assert s.image.mode == "latent"
    assert (s.image.width, s.image.height, s.image.steps) == (512, 512, 50)
    assert s.latent.scheduler == "euler_a"
    assert s.latent.cfg_scale == 7
    assert s.animation.color_coherence == "LAB"
    assert s.animation.cadence == 1
    assert s.animation.translation_x == "0:(10*sin(2*3.14*t/10))"
    assert s.animation.max_frames == 1000
    assert s.prompts.text_prompts["10"].endswith("--neg blurry")
    assert s.guidance.init_image == ""  # use_init was false
    assert r.ignored["init_image"] == "use_init was false"
    data = json.loads((DATA / "deforum_settings.txt").read_text())
    assert set(r.mapped) | set(r.ignored) == set(data)


def test_detect_format_rejects_unrelated_json() -> None:
    with pytest.raises(SettingsError, match="not a Disco Diffusion or Deforum settings file"):
        detect_format({"foo": 1})


def test_bad_values_in_imported_file_name_the_source_key(tmp_path: Path) -> None:
    data = json.loads((DATA / "deforum_settings.txt").read_text())
    data["sampler"] = "magic"
    p = tmp_path / "d.txt"
    p.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match=r"d.txt: sampler \(-> latent.scheduler\): expected one of"):
        import_settings(p)
    data = json.loads((DATA / "disco_v57_settings.txt").read_text())
    data["steps"] = "lots"
    p.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match=r"steps \(-> image.steps\): expected an integer, got 'lots'"):
        import_settings(p)


def test_import_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        import_settings(tmp_path / "none.txt")
    p = tmp_path / "x.txt"
    p.write_text("{not json")
    with pytest.raises(SettingsError, match="invalid JSON"):
        import_settings(p)


@pytest.mark.parametrize(
    ("source", "key", "value", "message"),
    [
        ("disco_v57_settings.txt", "seed", [1], r"seed \(-> run.seed\): expected an integer, got \[1\]"),
        ("disco_v57_settings.txt", "seed", "random_seed", None),
        ("disco_v57_settings.txt", "width_height", [512, None], r"width_height \(-> image.height\): expected an integer, got None"),
        ("disco_v57_settings.txt", "interp_spline", "Bezier", r"interp_spline \(-> animation.interpolation\): expected one of 'Linear'"),
        ("disco_v57_settings.txt", "fov", [40], r"fov \(-> animation.fov\): expected a number or a keyframe string, got \[40\]"),
        ("disco_v57_settings.txt", "turbo_mode", "on", r"turbo_mode \(-> animation.cadence\): expected true or false"),
        ("disco_v57_settings.txt", "text_prompts", {"0": [["nested"]]}, r"text_prompts \(-> prompts.text_prompts\): frame '0'"),
        ("deforum_settings.txt", "W", "wide", r"W \(-> image.width\): expected an integer, got 'wide'"),
        ("deforum_settings.txt", "W", 100, None),  # rounded down to 96
        ("deforum_settings.txt", "H", 4, r"H \(-> image.height\): expected a value >= 8, got 0"),
        ("deforum_settings.txt", "negative_prompts", {"0": "blurry", "5": 3}, r"negative_prompts \(-> latent.negative_prompt\): expected a string"),
        ("deforum_settings.txt", "sampler", ["euler"], r"sampler \(-> latent.scheduler\): expected one of .*got \['euler'\]"),
        ("deforum_settings.txt", "color_coherence", 1, r"color_coherence \(-> animation.color_coherence\): expected a colour"),
        ("deforum_settings.txt", "use_init", "true", r"use_init \(-> guidance.init_image\): expected true or false"),
    ],
)
def test_wrong_types_name_the_source_key(tmp_path: Path, source: str, key: str, value: object, message: str | None) -> None:
    data = json.loads((DATA / source).read_text())
    data[key] = value
    p = tmp_path / "TimeToDisco_settings.txt"
    p.write_text(json.dumps(data))
    if message is None:
        s = import_settings(p).settings
        assert s.run.seed == -1 if key == "seed" else s.image.width == 96
        return
    with pytest.raises(SettingsError, match=rf"^{re.escape(str(tmp_path))}/TimeToDisco_settings\.txt: {message}") as info:
        import_settings(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("source", "value", "mode"),
    [
        ("disco_v57_settings.txt", "2D", "2D"),
        ("disco_v57_settings.txt", " none ", "None"),
        ("deforum_settings.txt", "3d", "3D"),
        ("deforum_settings.txt", "Interpolation", "None"),  # Deforum's prompt interpolation has no camera motion
        ("deforum_settings.txt", "2D", "2D"),
    ],
)
def test_animation_modes_use_the_settings_spellings(tmp_path: Path, source: str, value: str, mode: str) -> None:
    data = json.loads((DATA / source).read_text())
    data["animation_mode"] = value
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    assert import_settings(p).settings.animation.animation_mode == mode


@pytest.mark.parametrize("value", ["Spin", 3, None])
def test_unknown_animation_mode_names_the_source_key(tmp_path: Path, value: object) -> None:
    data = json.loads((DATA / "deforum_settings.txt").read_text())
    data["animation_mode"] = value
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    with pytest.raises(SettingsError, match=r"animation_mode \(-> animation.animation_mode\): expected one of none, 2D, 3D, video, got"):
        import_settings(p)


def test_deforum_ddim_eta_flip_and_grayscale(tmp_path: Path) -> None:
    data = json.loads((DATA / "deforum_settings.txt").read_text())
    data.update(sampler="ddim", ddim_eta=0.3, color_force_grayscale=True, flip_2d_perspective=True,
                perspective_flip_phi="0:(t%10)", animation_mode="2D")  # fmt: skip
    p = tmp_path / "d.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    a = r.settings.animation
    assert r.settings.latent.ddim_eta == 0.3 and r.settings.latent.scheduler == "ddim"
    assert a.color_force_grayscale and a.enable_perspective_flip and a.perspective_flip_phi == "0:(t%10)"
    assert r.status("flip_2d_perspective") == "implemented differently"  # the flip replaces translation_x/y
    # deforum-stable-diffusion's 3D warp ignores its flip: so does the import (with why)
    data["animation_mode"] = "3D"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    assert not r.settings.animation.enable_perspective_flip and "2D mode only" in r.ignored["flip_2d_perspective"]


def test_deforum_weighted_prompts_and_animation_override(tmp_path: Path) -> None:
    data = json.loads((DATA / "deforum_settings.txt").read_text())
    data["prompts"] = {"0": "a castle:2 fog:-0.5 --neg blurry"}
    p = tmp_path / "d.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p, animation_mode="2D")
    assert r.settings.prompts.text_prompts == {"0": ["a castle:2", "--neg fog:0.5", "--neg blurry:1"]}
    assert r.settings.animation.animation_mode == "2D" and "--animation" in r.ignored["animation_mode"]
