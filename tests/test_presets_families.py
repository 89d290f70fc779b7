"""Presets of the latent model families (SDXL, SD 3.5, Flux, Kolors, HunyuanDiT) and `discolib init --list-presets`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from discolib.cli import main
from discolib.config.presets import PRESET_INFO, PRESETS, apply_preset, preset_listing, preset_mode
from discolib.config.settings import Settings
from discolib.models.latent_presets import LATENT_PRESETS, TINY_INPAINT_PRESET

FAMILIES = ("sdxl", "sd3", "flux", "kolors", "hunyuandit")


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("animation", ["none", "3D"])
def test_every_preset_validates_as_settings(name: str, animation: str) -> None:
    s = apply_preset(Settings.defaults(preset_mode(name), animation), name)
    s.validate()
    again = Settings.from_dict(json.loads(s.to_json()))  # what `init` writes loads back the same
    assert again.to_dict() == s.to_dict()


def test_every_latent_model_preset_has_a_settings_preset_with_listing_metadata() -> None:
    """Each named latent model (but the inpainting one `animate --fill latent` uses) can be picked with --preset,
    and the listing says what it needs; the listing covers exactly the presets."""
    assert set(PRESET_INFO) == set(PRESETS)
    for name, model in LATENT_PRESETS.items():
        if name == TINY_INPAINT_PRESET:
            continue
        assert name in PRESETS, name
        assert PRESETS[name]["models.latent_model"] == name
        assert PRESET_INFO[name].family == model.family, name
    for info in PRESET_INFO.values():
        assert info.vram and info.download and info.licence and info.good_for


def test_real_presets_say_about_and_name_their_licences() -> None:
    real = {n: i for n, i in PRESET_INFO.items() if not n.startswith("tiny")}
    assert all(i.vram.startswith("about") and i.download.startswith("about") for i in real.values())
    assert real["flux-schnell"].licence == "Apache-2.0"
    assert "Non-Commercial" in real["flux-dev"].licence
    assert "CreativeML OpenRAIL-M" in real["sd-1.5"].licence
    assert all("Stability AI Community License" in real[n].licence for n in ("sd3.5-medium", "sd3.5-large"))
    assert "Kolors" in real["kolors"].licence and "Hunyuan" in real["hunyuandit"].licence


def test_family_presets_carry_each_models_recommended_settings() -> None:
    def settings(name: str) -> Settings:
        return apply_preset(Settings.defaults("latent", "3D"), name)

    xl, turbo, flux, dev = settings("sdxl"), settings("sdxl-turbo"), settings("flux-schnell"), settings("flux-dev")
    assert (xl.image.width, xl.image.height, xl.latent.cfg_scale) == (1024, 1024, 7.0)
    assert (turbo.image.width, turbo.image.steps, turbo.latent.cfg_scale) == (512, 4, 0.0)
    assert flux.image.steps == 4 and flux.latent.scheduler == "default"
    assert dev.latent.cfg_scale == 3.5 and dev.animation.cfg_scale_schedule == "0: (3.5)"
    sd35 = settings("sd3.5-medium")
    assert (sd35.image.steps, sd35.latent.cfg_scale) == (40, 4.5)
    lightning, lcm = settings("sdxl-lightning"), settings("lcm-sdxl")
    assert lightning.models.latent_model == "sdxl" and "sdxl_lightning_4step_lora" in lightning.models.latent_lora
    assert lcm.latent.scheduler == "lcm" and lcm.models.latent_lora == "latent-consistency/lcm-lora-sdxl"
    # Few-step presets leave at least one denoising step per animation frame: int(steps * strength) >= 1.
    for name, bundle in PRESETS.items():
        if bundle.get("image.mode") == "latent" and bundle.get("image.steps", 99) <= 4:
            s = settings(name)
            strength = float(s.animation.strength_schedule.split("(")[1].split(")")[0])
            assert int(s.image.steps * strength) >= 1, name


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_family_presets_run_offline_at_sizes_every_family_takes(family: str) -> None:
    s = apply_preset(Settings.defaults("latent", "3D"), f"tiny-{family}")
    assert s.models.latent_model == f"tiny-{family}" and s.models.device == "cpu"
    assert s.image.width % 16 == 0 and s.image.height % 16 == 0 and 2 <= s.image.steps <= 3
    tiny = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    # The same offline helpers as tiny-latent (depth model, device, short animation).
    assert s.models.depth_model == tiny.models.depth_model and s.animation.max_frames == tiny.animation.max_frames


def test_cli_lists_presets_with_vram_download_and_licence(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--list-presets"]) == 0
    out = capsys.readouterr().out
    assert out == preset_listing()
    blocks = {block.split()[0]: block for block in out.split("\n") if block and not block.startswith(" ")}
    assert set(blocks) == set(PRESETS)
    for name, info in PRESET_INFO.items():
        start = out.index(f"{name}  (")
        block = out[start : out.find("\n", out.index("licence:", start))]
        assert f"VRAM:     {info.vram}" in block and f"licence:  {info.licence}" in block
        assert f"download: {info.download}" in block and f"{info.family} family" in block


def test_cli_init_without_output_says_what_to_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--preset", "sdxl-turbo"]) == 2
    assert "--output" in capsys.readouterr().err
    out = tmp_path / "s.json"
    assert main(["init", "--preset", "sdxl-turbo", "-o", str(out)]) == 0
    assert Settings.load(out).models.latent_model == "sdxl-turbo"
