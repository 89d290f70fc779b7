"""Importing Disco Diffusion and Deforum settings files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from discolib.importers import detect_format, import_settings
from discolib.settings import SettingsError

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
