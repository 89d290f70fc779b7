"""Realistic settings files of the three originals, written the way each tool writes them, import as shipped,
validate, report every key, and render a few frames with the tiny models.

tests/data/:
* ``disco_v57_3d_turbo_settings.txt``: Disco v5.7's ``save_settings`` JSON (its 96 keys, the notebook's defaults, a
  3D turbo animation with two open_clip ensemble members); it has no ``animation_mode``.
* ``dsd_3d_settings.txt``: deforum-stable-diffusion's ``render_animation`` dump ``{**args, **anim_args}`` of
  ``DeforumArgs()`` / ``DeforumAnimArgs()`` after the notebook's post-processing (seed drawn, ``init_image`` None,
  ``ddim_eta`` zeroed), with ``cond_prompts`` / ``uncond_prompts`` and a weighted sub-prompt, 3D.
* ``webui_default_settings.txt``: sd-webui-deforum's shipped ``scripts/default_settings.txt`` (its UI defaults in its
  settings-save format: ``sampler: 'Euler a'``, quoted ``"max_f-2"`` seed keys, ``positive_prompts``,
  ``soundtrack_path``, ``make_gif``, ControlNet/hybrid/Parseq keys ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from discolib.cli import main
from discolib.config.importers import ImportReport, import_settings, infer_disco_mode
from discolib.config.presets import PRESETS
from discolib.config.settings import Settings
from discolib.schedules.prompts import PromptSchedule

DATA = Path(__file__).parent / "data"
DISCO = DATA / "disco_v57_3d_turbo_settings.txt"
DSD = DATA / "dsd_3d_settings.txt"
WEBUI = DATA / "webui_default_settings.txt"
FILES = [DISCO, DSD, WEBUI]


def _keys(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_key_is_reported(path: Path) -> None:
    r = import_settings(path)
    data = _keys(path)
    assert set(r.mapped) | set(r.ignored) == set(data)
    assert not set(r.mapped) & set(r.ignored)
    summary = r.summary()
    for key in data:
        assert f" {key} " in summary or f" {key}:" in summary, key
        assert r.status(key) in ("mapped", "implemented differently", "ignored")
    for key, why in r.ignored.items():
        assert why and why != "not a discolib setting", (key, why)  # every ignored key says why
    r.settings.validate()


def test_disco_file_has_96_keys_and_its_mode_is_inferred_with_a_warning() -> None:
    data = _keys(DISCO)
    assert len(data) == 96 and "animation_mode" not in data
    r = import_settings(DISCO)
    s = r.settings
    assert s.animation.animation_mode == "3D" and s.animation.cadence == 3  # turbo_mode with turbo_steps "3"
    assert any("--animation" in w and "inferred '3D'" in w for w in r.warnings)
    assert "warning:" in r.summary()
    # Disco's open_clip ensemble members map onto open_clip ids discolib's catalogue loads.
    assert s.models.clip_models == ["ViT-B/32", "ViT-B/16", "RN50", "ViT-B-32/laion2b_e16", "RN50/yfcc15m"]
    # the video_init_* settings are mapped, not dropped
    assert all(r.status(k) != "ignored" for k in data if k.startswith("video_init_"))
    assert s.animation.video_init_frames_scale == 15000


def test_disco_animation_option_overrides_the_inference() -> None:
    r = import_settings(DISCO, animation_mode="2D")
    assert r.settings.animation.animation_mode == "2D" and not r.warnings
    assert r.settings.animation.cadence == 1  # Disco turns turbo off outside 3D
    assert r.status("turbo_mode") == "ignored"


@pytest.mark.parametrize(
    ("changes", "mode"),
    [
        ({}, "None"),
        ({"turbo_mode": True}, "3D"),
        ({"rotation_3d_y": "0: (0.5)"}, "3D"),
        ({"translation_z": "0:(10.0)"}, "None"),  # spacing differs only
        ({"angle": "0:(1)"}, "2D"),
        ({"zoom": "0: (1.01)", "translation_x": "0: (2)"}, "2D"),
        ({"video_init_path": "/content/my_clip.mp4"}, "Video Input"),
    ],
)
def test_infer_disco_mode_from_what_the_file_holds(changes: dict[str, object], mode: str) -> None:
    data = _keys(DISCO)
    data.update({"turbo_mode": False, "rotation_3d_y": "0: (0)", "zoom": "0: (1), 10: (1.05)"}, **changes)
    assert infer_disco_mode(data)[0] == mode


def test_clip_flag_names_are_in_discolibs_catalogue() -> None:
    from discolib.config.importers import _DISCO_CLIP_FLAGS
    from discolib.models.clip import DISCO_ALIASES, ClipSpec

    for flag, name in _DISCO_CLIP_FLAGS.items():
        spec = ClipSpec.parse(name)
        assert (spec.name, spec.pretrained) == DISCO_ALIASES[flag], flag


def test_dsd_prompts_and_negative_prompts_are_the_files() -> None:
    r = import_settings(DSD)
    s = r.settings
    ps = PromptSchedule.from_any(s.prompts.text_prompts)
    f0, f10 = ps.at(0, 120), ps.at(10, 120)
    assert f0.texts == ["a beautiful lake by Asher Brown Durand, trending on Artstation"]
    assert f0.negative_texts == ["mountain"]  # uncond_prompts {0: "mountain"}, held for every frame
    # "...Artgerm:2 trending on Artstation:1 blurry:-0.5": dsd's split_weighted_subprompts
    assert [(p.text, p.weight) for p in f10.positive] == [("a beautiful portrait of a woman by Artgerm", 2.0), ("trending on Artstation", 1.0)]
    assert [(p.text, p.weight) for p in f10.negative] == [("blurry", 0.5), ("mountain", 1.0)]
    assert s.latent.ddim_eta == 0.0 and s.latent.scheduler == "euler_a"
    assert s.animation.antiblur_kernel == "0: (5)" and s.animation.antiblur_threshold == "0: (0.0)"
    assert s.animation.color_force_grayscale is False and s.animation.enable_perspective_flip is False
    assert (s.animation.perspective_flip_phi, s.animation.perspective_flip_fv) == ("0:(t%15)", "0:(53)")
    assert not r.warnings


def test_dsd_without_prompts_warns_instead_of_using_the_defaults_silently(tmp_path: Path) -> None:
    data = _keys(DSD)
    data["cond_prompts"] = ""
    data["uncond_prompts"] = ""
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    assert any("holds no prompts" in w for w in r.warnings)


def test_dsd_stills_batch_prompts_are_inverted(tmp_path: Path) -> None:
    # render_image_batch saves {prompt: "00000", ...}
    data = _keys(DSD)
    data.update(animation_mode="None", cond_prompts={"a lake": "00000", "a woman": "00001"}, uncond_prompts={"mountain": "00000"})
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    assert r.settings.prompts.text_prompts == {"0": "a lake --neg mountain"}
    assert "one still per prompt" in r.notes["cond_prompts"]


def test_webui_default_settings_import_as_shipped() -> None:
    r = import_settings(WEBUI)
    s = r.settings
    data = _keys(WEBUI)
    assert r.source_format == "Deforum (sd-webui-deforum)"
    assert data["sampler"] == "Euler a" and s.latent.scheduler == "euler_a"
    assert '"max_f-2"' in data["seed_schedule"] and s.animation.seed_schedule == data["seed_schedule"]
    assert s.animation.depth_convention == "webui"  # depth_algorithm Midas-3-Hybrid
    assert s.animation.aspect_ratio_schedule == "0: (1)"
    assert (s.animation.perlin_octaves, s.animation.perlin_persistence) == (4, 0.5)
    assert s.animation.noise_type == "webui-perlin"
    assert s.animation.cadence == 2 and s.animation.max_frames == 120
    # positive/negative prompts wrapped around every prompt as webui does
    ps = PromptSchedule.from_any(s.prompts.text_prompts)
    for key, val in data["prompts"].items():  # webui: f"{pos} {val} {'' if '--neg' in val else '--neg'} {neg}"
        text = f"{data['positive_prompts']} {val} {'' if '--neg' in val else '--neg'} {data['negative_prompts']}"
        pos, neg = text.split("--neg", 1)
        frame = ps.at(int(key), 120)
        assert frame.texts == [pos.strip()] and frame.negative_texts == [neg.strip()]
    assert ps.at(0, 120).negative_texts[0].count("nsfw") == 2  # its prompts already carry --neg
    assert r.status("positive_prompts") == "implemented differently"
    # soundtrack: add_soundtrack 'None' -> no soundtrack; make_gif false -> mp4
    assert s.output.soundtrack == "" and s.output.video_format == "mp4"
    assert "add_soundtrack" in r.ignored["soundtrack_path"]
    assert r.status("cn_1_enabled") == "ignored" and "ControlNet" in r.ignored["cn_1_enabled"]


def test_webui_soundtrack_gif_flip_and_grayscale_map(tmp_path: Path) -> None:
    data = _keys(WEBUI)
    data.update(add_soundtrack="File", make_gif=True, enable_perspective_flip=True, color_force_grayscale=True,
                perspective_flip_theta="0:(5)", sampler="DPM++ 2M Karras")  # fmt: skip
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    s = r.settings
    assert s.output.soundtrack == data["soundtrack_path"] and s.output.video_format == "gif"
    assert s.animation.enable_perspective_flip and s.animation.perspective_flip_theta == "0:(5)"
    assert s.animation.color_force_grayscale
    assert s.latent.scheduler == "dpmpp_2m_karras"
    assert r.status("make_gif") == "implemented differently"


def test_webui_sampler_names_with_notes(tmp_path: Path) -> None:
    data = _keys(WEBUI)
    data["sampler"] = "DPM2 a"
    p = tmp_path / "s.txt"
    p.write_text(json.dumps(data))
    r = import_settings(p)
    assert r.settings.latent.scheduler == "euler_a" and "euler_a" in r.notes["sampler"]


def test_cli_import_settings_animation_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.json"
    assert main(["import-settings", str(DISCO), "--animation", "2D", "-o", str(out)]) == 0
    assert Settings.load(out).animation.animation_mode == "2D"
    assert main(["import-settings", str(DISCO), "-o", str(tmp_path / "t.json")]) == 0
    printed = capsys.readouterr().out
    assert "warning:" in printed and "inferred '3D'" in printed


# ------------------------------------------------------------------------------------------------ render


def _tiny(report: ImportReport, frames: int = 3) -> Settings:
    """The imported settings with the tiny preset's models and size (nothing else of the preset)."""
    s = report.settings
    preset = PRESETS["tiny" if s.image.mode == "guided" else "tiny-latent"]
    for key, value in preset.items():
        if key.startswith(("models.", "image.", "run.seed", "guidance.cut")) or key == "guidance.cutn_batches":
            s.set(key, value)
    s.set("animation.max_frames", frames)
    s.set("output.make_video", False)
    s.set("models.random_weights", True)  # offline: LPIPS's VGG backbone (Disco's frame loss) is random here
    s.set("guidance.skip_steps", 0)
    s.validate()
    return s


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_imported_files_render_with_the_tiny_models(path: Path, tmp_path: Path) -> None:
    from discolib.run.loop import render

    s = _tiny(import_settings(path))
    result = render(s, out=tmp_path, progress=False)
    assert result.status == "done" and len(result.frames) == 3
