"""The samplers' explicit configs and the one adapter from Settings (discolib.samplers.config, discolib.run.adapter)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

from discolib.animation.policy import GUIDED_POLICY, LATENT_POLICY
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.run.adapter import build_sampler, guided_config, latent_config
from discolib.samplers.base import FrameRequest
from discolib.samplers.config import GuidanceConfig, GuidedConfig, LatentConfig
from discolib.samplers.guided import GuidedSampler
from discolib.samplers.latent import LatentRequest, LatentSampler, sample_latent
from discolib.schedules.prompts import PromptSchedule

SAMPLERS = Path(__file__).resolve().parents[1] / "discolib" / "samplers"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


def tiny(mode: str, **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(mode), "tiny" if mode == "guided" else "tiny-latent")
    for k, v in overrides.items():
        s.set(k, v)
    return s


def _plain(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def test_samplers_never_import_settings() -> None:
    for path in SAMPLERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "discolib.config" or n.startswith("discolib.config.") for n in names), path.name


def test_guided_config_copies_the_settings() -> None:
    s = tiny("guided", eta=0.3, skip_steps=4, perlin_init=True, transformation_percent=[0.2, 0.5], cutn_batches=2)
    s.set("models.clip_models", ["tiny-vit"])
    c = guided_config(s)
    assert (c.width, c.height, c.steps) == (s.image.width, s.image.height, s.image.steps)
    for f in dataclasses.fields(GuidedConfig):
        if f.name not in ("width", "height", "steps", "guidance"):
            group = s.models if hasattr(s.models, f.name) else s.guidance
            assert getattr(c, f.name) == _plain(getattr(group, f.name)), f.name
    for f in dataclasses.fields(GuidanceConfig):
        if f.name not in ("augmentation", "clip_models"):
            assert getattr(c.guidance, f.name) == getattr(s.guidance, f.name), f.name
    assert c.guidance.clip_models == ("tiny-vit",) and c.transformation_percent == (0.2, 0.5)
    assert c.guidance.grad_clamp == s.guidance.clamp_max
    assert dataclasses.replace(c.guidance, clamp_grad=False).grad_clamp is None


@pytest.mark.parametrize(
    ("animation_mode", "augmentation"), [("None", "still"), ("2D", "animation"), ("3D", "animation"), ("Video Input", "video")]
)
def test_cut_augmentation_follows_the_animation_mode_in_guided_mode_only(animation_mode: str, augmentation: str) -> None:
    s = tiny("guided")
    s.set("animation.animation_mode", animation_mode)
    assert guided_config(s).guidance.augmentation == augmentation
    s = tiny("latent")
    s.set("animation.animation_mode", animation_mode)
    assert latent_config(s).guidance.augmentation == "still"  # latent mode always cut with the still preset


def test_latent_config_copies_the_settings() -> None:
    s = tiny("latent", cfg_scale=3.5, negative_prompt="fog", clip_scale=250.0, scheduler="ddim", fast_vae="tiny")
    c = latent_config(s)
    assert (c.width, c.height, c.steps) == (s.image.width, s.image.height, s.image.steps)
    renamed = {  # Deforum's name, or the models.* name, in the settings
        "eta": "ddim_eta", "single_file_config": "latent_config", "lora": "latent_lora",
        "lora_scale": "latent_lora_scale", "t5": "text_encoder_t5",
    }
    for f in dataclasses.fields(LatentConfig):
        if f.name not in ("width", "height", "steps", "guidance"):
            name = renamed.get(f.name, f.name)
            group = s.models if hasattr(s.models, name) else s.latent
            assert getattr(c, f.name) == getattr(group, name), f.name
    assert (c.scheduler, c.cfg_scale, c.negative_prompt, c.fast_vae) == ("ddim", 3.5, "fog", "tiny")
    assert c.guidance.clip_guidance_scale == 250.0  # latent.clip_scale, not guidance.clip_guidance_scale
    assert c.guidance.clip_models == tuple(s.models.clip_models)


def test_configs_are_frozen_and_hashable() -> None:
    c = latent_config(tiny("latent"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.steps = 3  # type: ignore[misc]
    assert hash(c) == hash(latent_config(tiny("latent")))
    assert hash(guided_config(tiny("guided"))) == hash(guided_config(tiny("guided")))


def test_build_sampler_by_mode() -> None:
    s = tiny("latent")
    sampler = build_sampler(s)
    assert isinstance(sampler, LatentSampler) and sampler.config == latent_config(s)
    assert sampler.policy is LATENT_POLICY and (sampler.width, sampler.height) == (s.image.width, s.image.height)
    g = tiny("guided")
    guided = build_sampler(g)
    assert isinstance(guided, GuidedSampler) and guided.config == guided_config(g) and guided.policy is GUIDED_POLICY


def test_latent_request_semantics() -> None:
    """init_strength is Deforum's strength (denoising 1 - init_strength); cfg_scale None is the config's."""
    s = tiny("latent", steps=4, cfg_scale=3.0, negative_prompt="fog")
    sampler = LatentSampler(latent_config(s))
    prompts = PromptSchedule.from_any({"0": ["a castle:2", "ruins"]}).at(0)
    init = torch.rand(1, 3, s.image.height, s.image.width, generator=torch.Generator().manual_seed(1))
    direct = LatentRequest(
        prompts=[("a castle", 2.0), ("ruins", 1.0)], negative="fog", width=s.image.width, height=s.image.height,
        steps=4, cfg_scale=3.0, scheduler=s.latent.scheduler, seed=torch.Generator().manual_seed(7),
        decode_with_preview_vae=bool(s.models.fast_vae),
    )
    txt2img = sampler(FrameRequest(seed=7, prompts=prompts))
    assert torch.equal(txt2img, sample_latent(sampler.comps, direct))
    img2img = sampler(FrameRequest(seed=7, prompts=prompts, init=init, init_strength=0.25, cfg_scale=3.0))
    want = dataclasses.replace(direct, seed=torch.Generator().manual_seed(7), init_image=init, strength=0.75)
    assert torch.equal(img2img, sample_latent(sampler.comps, want))
    assert not torch.equal(img2img, sampler(FrameRequest(seed=7, prompts=prompts, init=init, init_strength=0.25, cfg_scale=6.0)))
