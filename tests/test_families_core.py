"""The family-generic parts of the latent loop: conditioning blends, flow schedulers, img2img step rules, loading
errors for unsupported families. Each family's own maths is tested against its diffusers pipeline in
tests/test_family_<name>.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    StableDiffusion3Img2ImgPipeline,
    StableDiffusionImg2ImgPipeline,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from discolib.models.families import blend_embeds, cat_embeds, expand_embeds, get_family
from discolib.models.families.base import flow_alpha_bar
from discolib.models.latent import FLOW_SCHEDULERS, LatentModelError, load_latent_components, make_scheduler
from discolib.samplers.latent import _alpha_bars, _noising_coefficients


def test_blend_weights_floats_and_ors_masks() -> None:
    a = {"prompt_embeds": torch.ones(1, 3, 2), "mask": torch.tensor([[1, 1, 0]])}
    b = {"prompt_embeds": torch.zeros(1, 3, 2), "mask": torch.tensor([[1, 0, 1]])}
    out = blend_embeds([(a, 3.0), (b, 1.0)])
    torch.testing.assert_close(out["prompt_embeds"], torch.full((1, 3, 2), 0.75))
    assert out["mask"].tolist() == [[1, 1, 1]] and out["mask"].dtype == torch.int64
    # a negative weight extrapolates away from that text; the ratio is all that matters
    torch.testing.assert_close(blend_embeds([(a, 2.0), (b, -1.0)])["prompt_embeds"], torch.full((1, 3, 2), 2.0))
    big = expand_embeds(out, 4)
    assert big["prompt_embeds"].shape == (4, 3, 2) and big["mask"].shape == (4, 3)
    both = cat_embeds(a, b)
    assert both["prompt_embeds"][0].eq(1).all() and both["prompt_embeds"][1].eq(0).all()


def _flow_config() -> dict:
    return {**FlowMatchEulerDiscreteScheduler(shift=3.0).config, "_class_name": "FlowMatchEulerDiscreteScheduler"}


def test_flow_models_take_flow_solvers_and_deforum_names() -> None:
    cfg = _flow_config()
    assert type(make_scheduler("default", cfg)).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert type(make_scheduler("euler", cfg)).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert make_scheduler("euler_a", cfg).config.stochastic_sampling
    assert type(make_scheduler("flow_heun", cfg)).__name__ == "FlowMatchHeunDiscreteScheduler"
    assert make_scheduler("flow_euler", cfg).config.shift == 3.0  # the model's shift carries over
    with pytest.raises(ValueError, match="flow-matching model.*valid names: default"):
        make_scheduler("dpmpp_2m", cfg)
    sd_cfg = {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear"}
    with pytest.raises(ValueError, match="for flow-matching models"):
        make_scheduler("flow_euler", sd_cfg)
    assert set(FLOW_SCHEDULERS) >= {"default", "euler", "euler_a", "flow_euler", "flow_heun"}


@pytest.mark.parametrize("begin", [0, 2, 5])
def test_flow_noising_coefficients_equal_scale_noise(begin: int) -> None:
    sched = make_scheduler("default", _flow_config())
    sched.set_timesteps(8, device="cpu")
    sched.set_begin_index(begin)
    t0 = sched.timesteps[begin : begin + 1]
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 16, 4, 4, generator=gen), torch.randn(2, 16, 4, 4, generator=gen)
    keep, add = _noising_coefficients(sched, t0)
    torch.testing.assert_close(x0 * keep + noise * add, sched.scale_noise(x0, t0.repeat(2), noise))
    sigma = float(sched.sigmas[begin])
    assert keep == pytest.approx(1 - sigma) and add == pytest.approx(sigma)
    # the loop's alpha_bar has the flow level's signal-to-noise ratio
    ab = _alpha_bars(sched, sched.timesteps[begin:], begin)
    torch.testing.assert_close(ab, flow_alpha_bar(sched.sigmas[begin : begin + len(ab)].float()))


class _Sched:
    order = 1

    def __init__(self, n: int) -> None:
        self.timesteps = torch.arange(n)

    def set_begin_index(self, i: int) -> None:
        self.begin = i


@settings(max_examples=200, deadline=None)
@given(steps=st.integers(1, 200), strength=st.floats(0.0, 1.0))
def test_img2img_step_rules_are_the_pipelines(steps: int, strength: float) -> None:
    # SD-style pipelines floor the steps run; SD3/Flux pipelines floor the steps skipped: both re-derived here
    # from the pipelines' own get_timesteps.
    sd_pipe = StableDiffusionImg2ImgPipeline.__new__(StableDiffusionImg2ImgPipeline)
    sd3_pipe = StableDiffusion3Img2ImgPipeline.__new__(StableDiffusion3Img2ImgPipeline)
    for pipe, fam in ((sd_pipe, get_family("sd")), (sd3_pipe, get_family("sd3"))):
        object.__setattr__(pipe, "_internal_dict", {})
        pipe.__dict__["scheduler"] = _Sched(steps)
        _, n_run = pipe.get_timesteps(steps, strength, "cpu")
        assert fam.init_steps(steps, strength) == n_run


def test_unsupported_family_is_one_line_naming_what_was_found(tmp_path: Path) -> None:
    folder = tmp_path / "svd"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableVideoDiffusionPipeline"}))
    with pytest.raises(LatentModelError, match="StableVideoDiffusionPipeline \\(a video model\\)") as info:
        load_latent_components(folder)
    assert "\n" not in str(info.value) and "Flux" in str(info.value)


def test_negative_shares_the_cache_where_the_family_encodes_it_plainly() -> None:
    from discolib.samplers.latent import encode_conditioning

    comps = load_latent_components("tiny-latent")
    comps.embedding_cache.clear()
    pos = encode_conditioning(comps, "fog")
    assert encode_conditioning(comps, "fog", negative=True) is pos and len(comps.embedding_cache) == 1


def test_a_prompt_spelled_like_a_negative_key_has_its_own_cache_slot() -> None:
    from discolib.samplers.latent import encode_conditioning

    comps = load_latent_components("tiny-sdxl")
    comps.embedding_cache.clear()
    empty_negative = encode_conditioning(comps, "", negative=True)  # SDXL: zeros
    assert not empty_negative["prompt_embeds"].any()
    typed = encode_conditioning(comps, "neg:")
    assert typed["prompt_embeds"].abs().sum() > 0 and len(comps.embedding_cache) == 2


def test_lora_errors_name_the_setting_and_never_count_as_unavailable(tmp_path: Path) -> None:
    from discolib.errors import WeightsUnavailable

    with pytest.raises(LatentModelError, match=r"models\.latent_lora: .*hf download nobody/none x\.safetensors") as info:
        load_latent_components("tiny-sdxl", lora="nobody/none/x.safetensors")
    assert not isinstance(info.value, WeightsUnavailable)  # the random fallback must not replace the model
    bad = tmp_path / "lora.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(LatentModelError, match=r"models\.latent_lora: cannot load"):
        load_latent_components("tiny-latent", lora=str(bad))


def test_an_unknown_pipeline_name_with_a_known_denoiser_still_loads(tmp_path: Path) -> None:
    # LCM-distilled SD checkpoints name LatentConsistencyModelPipeline; a pipeline we do not know by name falls back
    # to its denoiser's config, as it loaded before families existed.
    import shutil

    from discolib.models.families import detect_family
    from discolib.models.latent import tiny_latent_folder

    folder = tmp_path / "m"
    shutil.copytree(tiny_latent_folder(), folder)
    index = json.loads((folder / "model_index.json").read_text())
    for name in ("LatentConsistencyModelPipeline", "SomeCommunityPipeline"):
        index["_class_name"] = name
        (folder / "model_index.json").write_text(json.dumps(index))
        assert detect_family(folder).name == "sd"
    assert load_latent_components(folder).family == "sd"


def test_resume_latest_finds_runs_of_a_name_made_before_safe_folder_names(tmp_path: Path) -> None:
    from discolib.run.runs import RunFolder

    old = tmp_path / "night." / "20260101-000000-abcd"  # an older version kept the trailing dot
    old.mkdir(parents=True)
    (old / "settings.json").write_text("{}")
    assert RunFolder.latest(tmp_path, "night.").path == old
    with pytest.raises(Exception, match="no runs to resume"):
        RunFolder.latest(tmp_path, "..")


def test_missing_lora_is_reported_before_the_render(tmp_path: Path) -> None:
    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.models.availability import missing_weights

    s = apply_preset(Settings.defaults("latent"), "tiny-latent")
    s.set("models.latent_lora", "nobody/none/x.safetensors")
    assert [w.what for w in missing_weights(s)] == ["models.latent_lora nobody/none/x.safetensors"]
    local = tmp_path / "l.safetensors"
    local.write_bytes(b"x")
    s.set("models.latent_lora", str(local))
    assert missing_weights(s) == []


def test_a_single_files_config_repository_is_checked_before_the_render(tmp_path: Path) -> None:
    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.models.availability import missing_weights
    from discolib.models.latent import tiny_latent_folder

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")  # only its presence matters here: the config is named
    s = apply_preset(Settings.defaults("latent"), "tiny-latent")
    s.set("models.latent_model", str(model))
    s.set("models.latent_config", "nobody/no-configs")
    assert [w.what for w in missing_weights(s)] == ["models.latent_config nobody/no-configs"]
    s.set("models.latent_config", str(tiny_latent_folder()))
    assert missing_weights(s) == []
