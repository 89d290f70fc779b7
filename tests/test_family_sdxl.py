"""The SDXL family on tiny components: detection, prompts and UNet calls bit-equal to diffusers'
StableDiffusionXLPipeline built from the same files, img2img noising as StableDiffusionXLImg2ImgPipeline's, the
latent loop end to end, a LoRA, and a 3D render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from discolib.models.families import (
    FamilyError,
    cat_embeds,
    detect_family,
    family_of_config,
    family_of_index,
    get_family,
)
from discolib.models.families.sdxl import FAMILY
from discolib.models.latent import (
    LatentComponents,
    load_latent_components,
    make_scheduler,
    tiny_family_folder,
)

W, H = 64, 48  # not square: the size ids must say (height, width)
PROMPT = "a castle in the fog"



@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_family_folder("sdxl")


@pytest.fixture(scope="module")
def comps(folder: Path) -> LatentComponents:
    c = load_latent_components("tiny-sdxl")
    assert c.family == "sdxl" and c.family_obj is FAMILY
    return c


@pytest.fixture(scope="module")
def pipe(folder: Path) -> Any:
    """StableDiffusionXLPipeline loaded on its own from the tiny folder (not the one inside ``comps``)."""
    from diffusers import StableDiffusionXLPipeline

    p = StableDiffusionXLPipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


# ---------------------------------------------------------------------------------------------- detection


def test_detected_from_the_index_and_from_the_unet_config(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder"][1] == "CLIPTextModel" and index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    assert detect_family(folder) is FAMILY
    assert family_of_index("StableDiffusionXLImg2ImgPipeline") is FAMILY
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    assert family_of_config(unet_cfg) is FAMILY
    assert FAMILY.text_encoders == ("text_encoder", "text_encoder_2")


def test_unet_configs_of_other_families_are_not_sdxl(folder: Path) -> None:
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    kolors_like = {**unet_cfg, "encoder_hid_dim_type": "text_proj", "encoder_hid_dim": 32}
    sd_like = {**unet_cfg, "addition_embed_type": None}
    assert not FAMILY.matches_denoiser(kolors_like) and not FAMILY.matches_denoiser(sd_like)
    assert family_of_config(sd_like) is get_family("sd")
    with pytest.raises(FamilyError, match="UNetSpatioTemporalConditionModel"):
        family_of_config({**unet_cfg, "_class_name": "UNetSpatioTemporalConditionModel"})


# ---------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("negative", ["", "blurry, low quality"])
def test_encode_and_negative_equal_the_pipelines_encode_prompt(comps: LatentComponents, pipe: Any, negative: str) -> None:
    """Both encoders, pooled embeddings; no negative prompt gives zeros (``force_zeros_for_empty_prompt``)."""
    assert pipe.config.force_zeros_for_empty_prompt
    with torch.no_grad():
        pe, ne, pooled, npooled = pipe.encode_prompt(
            PROMPT, device="cpu", do_classifier_free_guidance=True, negative_prompt=negative or None
        )
        cond, uncond = FAMILY.encode(comps, PROMPT), FAMILY.negative(comps, negative)
    assert set(cond) == set(uncond) == {"prompt_embeds", "pooled_prompt_embeds"}
    assert cond["prompt_embeds"].shape == (1, 77, 64) and cond["pooled_prompt_embeds"].shape == (1, 32)
    assert torch.equal(cond["prompt_embeds"], pe) and torch.equal(cond["pooled_prompt_embeds"], pooled)
    assert torch.equal(uncond["prompt_embeds"], ne) and torch.equal(uncond["pooled_prompt_embeds"], npooled)
    assert bool(uncond["prompt_embeds"].any()) == bool(negative)


def test_empty_negative_is_encoded_when_the_model_does_not_force_zeros(comps: LatentComponents) -> None:
    """sdxl-turbo-like configs without ``force_zeros_for_empty_prompt``: the pipeline encodes "" instead."""
    comps.pipe.register_to_config(force_zeros_for_empty_prompt=False)
    try:
        with torch.no_grad():
            _, ne, _, npooled = comps.pipe.encode_prompt(PROMPT, device="cpu", do_classifier_free_guidance=True)
            uncond = FAMILY.negative(comps, "")
    finally:
        comps.pipe.register_to_config(force_zeros_for_empty_prompt=True)
    assert uncond["prompt_embeds"].abs().sum() > 0
    assert torch.equal(uncond["prompt_embeds"], ne) and torch.equal(uncond["pooled_prompt_embeds"], npooled)


def test_prompts_differ(comps: LatentComponents) -> None:
    with torch.no_grad():
        a, b = FAMILY.encode(comps, PROMPT), FAMILY.encode(comps, "a city at night")
    assert not torch.equal(a["prompt_embeds"], b["prompt_embeds"])
    assert not torch.equal(a["pooled_prompt_embeds"], b["pooled_prompt_embeds"])


# ---------------------------------------------------------------------------------------------- denoiser


def _record_unet_calls(unet: torch.nn.Module) -> tuple[list[tuple[tuple, dict, Any]], Any]:
    calls: list[tuple[tuple, dict, Any]] = []

    def hook(_m: torch.nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        calls.append((args, kwargs, out))

    return calls, unet.register_forward_hook(hook, with_kwargs=True)


def test_predict_equals_the_pipelines_unet_call(comps: LatentComponents, pipe: Any) -> None:
    """The UNet inputs and output of a real pipeline step (CFG on) == ``predict`` with our conditioning."""
    calls, handle = _record_unet_calls(pipe.unet)
    try:
        with torch.no_grad():
            pipe(PROMPT, negative_prompt="blurry", width=W, height=H, num_inference_steps=1, guidance_scale=5.0,
                 generator=torch.Generator().manual_seed(0), output_type="latent")
    finally:
        handle.remove()
    (args, kwargs, out), = calls
    x, t = args[0], args[1]
    embeds = cat_embeds(FAMILY.negative(comps, "blurry"), FAMILY.encode(comps, PROMPT))
    extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=5.0)
    assert torch.equal(embeds["prompt_embeds"], kwargs["encoder_hidden_states"])
    assert torch.equal(embeds["pooled_prompt_embeds"], kwargs["added_cond_kwargs"]["text_embeds"])
    assert torch.equal(extra["time_ids"].expand(2, -1), kwargs["added_cond_kwargs"]["time_ids"])
    assert extra["time_ids"].tolist() == [[H, W, 0, 0, H, W]]
    with torch.no_grad():
        ours = FAMILY.predict(comps, x, t, embeds, extra)
    assert ours.dtype == torch.float32 and ours.shape == x.shape
    assert torch.equal(ours, out[0])


def test_lcm_unet_gets_the_guidance_embedding(comps: LatentComponents) -> None:
    """A UNet with ``time_cond_proj_dim`` (LCM-SDXL) gets ``get_guidance_scale_embedding(cfg - 1)``, as the pipeline
    computes it."""
    comps.unet.register_to_config(time_cond_proj_dim=16)
    try:
        extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=3.0)
    finally:
        comps.unet.register_to_config(time_cond_proj_dim=None)
    want = comps.pipe.get_guidance_scale_embedding(torch.tensor([2.0]), embedding_dim=16)
    assert torch.equal(extra["timestep_cond"], want)
    assert "timestep_cond" not in FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=3.0)


def test_refiner_unet_is_a_clear_error(comps: LatentComponents) -> None:
    """The SDXL refiner (aesthetic-score ids: 5 numbers, not 6) is named instead of failing inside diffusers."""
    before = comps.unet.config.projection_class_embeddings_input_dim
    comps.unet.register_to_config(projection_class_embeddings_input_dim=5 * 8 + 32)
    try:
        with pytest.raises(FamilyError, match="SDXL refiner"):
            FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=5.0)
        # ... and the loader refuses it before anything runs (no run folder, no frame)
        from discolib.models.latent import LatentModelError, finish_components

        with pytest.raises(LatentModelError, match=r"models\.latent_model .*SDXL refiner"):
            finish_components(comps, device=comps.device, dtype=comps.dtype, vae=None, lora=None, lora_scale=1.0,
                              offload_text_encoders=False, vae_tiling=False, fp8_weights=False, channels_last=False,
                              compile_unet=False)
    finally:
        comps.unet.register_to_config(projection_class_embeddings_input_dim=before)
    assert FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=5.0)["time_ids"].shape == (1, 6)


# ---------------------------------------------------------------------------------------------- img2img


@pytest.mark.parametrize(("steps", "strength"), [(10, 0.55), (4, 0.3), (3, 1.0)])
def test_init_steps_equal_the_img2img_pipelines_get_timesteps(pipe: Any, steps: int, strength: float) -> None:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    img2img = StableDiffusionXLImg2ImgPipeline(**pipe.components)
    img2img.scheduler.set_timesteps(steps, device="cpu")
    timesteps, n = img2img.get_timesteps(steps, strength, "cpu")
    assert FAMILY.init_steps(steps, strength) == n
    sched = make_scheduler("default", dict(pipe.scheduler.config))
    FAMILY.set_timesteps(sched, steps, width=W, height=H)
    begin = (steps - n) * sched.order
    assert torch.equal(sched.timesteps[begin:], timesteps)


def test_img2img_noising_equals_the_img2img_pipeline(comps: LatentComponents, pipe: Any) -> None:
    """The sampler's first latents for an init == the pipeline's ``prepare_latents`` with the same generator."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from discolib.samplers.latent import LatentRequest, denoise_latents

    steps, strength, seed = 10, 0.55, 3
    x0 = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(11))
    img2img = StableDiffusionXLImg2ImgPipeline(**pipe.components)
    img2img.scheduler.set_timesteps(steps, device="cpu")
    timesteps, _ = img2img.get_timesteps(steps, strength, "cpu")
    want = img2img.prepare_latents(x0, timesteps[:1], 1, 1, torch.float32, torch.device("cpu"),
                                   generator=torch.Generator().manual_seed(seed))
    seen: list[torch.Tensor] = []
    request = LatentRequest(prompts=PROMPT, width=W, height=H, steps=steps, cfg_scale=1.0, scheduler="default",
                            seed=seed, init_latents=x0, strength=strength,
                            callback=lambda info: seen.append(info["x"]) if info["i"] == 0 else None)
    denoise_latents(comps, request)
    assert torch.equal(seen[0], want)


# ---------------------------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("negative", ["", "blurry"])
def test_denoise_latents_equals_the_pipeline(comps: LatentComponents, pipe: Any, negative: str) -> None:
    """txt2img with CFG and SDXL's Euler scheduler through the sampler == the pipeline's ``output_type="latent"``."""
    from discolib.samplers.latent import LatentRequest, denoise_latents

    noise = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    request = LatentRequest(prompts=PROMPT, negative=negative, width=W, height=H, steps=3, cfg_scale=5.0,
                            scheduler="default", noise=noise)
    ours = denoise_latents(comps, request)
    assert type(make_scheduler("default", comps.scheduler_config)).__name__ == "EulerDiscreteScheduler"
    with torch.no_grad():
        ref = pipe(PROMPT, negative_prompt=negative or None, width=W, height=H, num_inference_steps=3,
                   guidance_scale=5.0, latents=noise.clone(), output_type="latent").images
    assert torch.equal(ours, ref)


# ---------------------------------------------------------------------------------------------- memory and LCM


def test_fp8_weights_store_the_unet_in_float8_and_still_denoise(comps: LatentComponents) -> None:
    """``fp8_weights=True`` on the CPU: the UNet's weights are STORED as float8 e4m3 (layerwise casting), the compute
    dtype stays the requested one, the text encoders keep theirs, and the whole loop gives finite latents that differ
    from the full-precision ones (the quantised weights are the ones used)."""
    from discolib.samplers.latent import LatentRequest, denoise_latents

    fp8 = load_latent_components("tiny-sdxl", fp8_weights=True)
    stored = {p.dtype for p in fp8.unet.parameters()}
    assert torch.float8_e4m3fn in stored
    linears = [m for m in fp8.unet.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
    assert fp8.dtype == torch.float32  # the compute dtype, not the storage one
    assert {p.dtype for p in fp8.text_encoder.parameters()} == {torch.float32}
    noise = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    request = LatentRequest(prompts=PROMPT, width=W, height=H, steps=2, cfg_scale=5.0, scheduler="default",
                            noise=noise)
    ours = denoise_latents(fp8, request)
    full = denoise_latents(comps, request)
    assert ours.shape == full.shape == noise.shape and ours.dtype == torch.float32
    assert torch.isfinite(ours).all()
    assert not torch.equal(ours, full)


def _lcm_sdxl(folder: Path, tmp_path: Path) -> Path:
    """The tiny SDXL folder with its UNet rebuilt with ``time_cond_proj_dim=16`` (an LCM-SDXL UNet: it has the
    guidance-embedding projection ``time_embedding.cond_proj``)."""
    import shutil

    from diffusers import UNet2DConditionModel

    from discolib.ops import seeded

    out = tmp_path / "tiny-lcm-sdxl"
    shutil.copytree(folder, out)
    config = UNet2DConditionModel.load_config(folder / "unet")
    with seeded(0):
        unet = UNet2DConditionModel.from_config({**config, "time_cond_proj_dim": 16})
    shutil.rmtree(out / "unet")
    unet.save_pretrained(out / "unet")
    return out


def test_lcm_unet_runs_without_the_unconditional_pass(folder: Path, tmp_path: Path) -> None:
    """An LCM-SDXL UNet with cfg_scale 3: the guidance is its embedding, so (as diffusers' pipeline, which turns
    CFG off for UNets with ``time_cond_proj_dim``) the sampler calls the UNet once per step on the conditional batch
    only, and its latents equal ``StableDiffusionXLPipeline(guidance_scale=3, output_type="latent")``'s."""
    from diffusers import StableDiffusionXLPipeline

    from discolib.samplers.latent import LatentRequest, denoise_latents

    lcm = load_latent_components(str(_lcm_sdxl(folder, tmp_path)))
    assert lcm.family_obj is FAMILY and lcm.unet.config.time_cond_proj_dim == 16
    assert lcm.unet.time_embedding.cond_proj is not None
    steps, cfg = 3, 3.0
    batches: list[int] = []

    def count(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batches.append(int((args[0] if args else kwargs["sample"]).shape[0]))

    noise = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    request = LatentRequest(prompts=PROMPT, negative="blurry", width=W, height=H, steps=steps, cfg_scale=cfg,
                            scheduler="default", noise=noise)
    hook = lcm.unet.register_forward_pre_hook(count, with_kwargs=True)
    try:
        ours = denoise_latents(lcm, request)
    finally:
        hook.remove()
    assert batches == [1] * steps  # one call per step, the conditional half only
    ref_pipe = StableDiffusionXLPipeline(**lcm.pipe.components)
    with torch.no_grad():
        ref = ref_pipe(PROMPT, negative_prompt="blurry", width=W, height=H, num_inference_steps=steps,
                       guidance_scale=cfg, latents=noise.clone(), output_type="latent").images
    assert not ref_pipe.do_classifier_free_guidance
    assert torch.equal(ours, ref)


def test_lora_loads_and_fuses(tmp_path: Path) -> None:
    """An SDXL LoRA saved with ``StableDiffusionXLPipeline.save_lora_weights`` loads with ``lora=`` and is fused at
    ``lora_scale``: the UNet then computes what the adapter model computes."""
    peft = pytest.importorskip("peft", reason="LoRA loading needs peft (diffusers' LoRA backend)")
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    base = load_latent_components("tiny-sdxl")
    adapted = load_latent_components("tiny-sdxl")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"])
        adapted.unet.add_adapter(config)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(adapted.unet))
    StableDiffusionXLPipeline.save_lora_weights(tmp_path, unet_lora_layers=layers)
    fused = load_latent_components("tiny-sdxl", lora=str(tmp_path))
    half = load_latent_components("tiny-sdxl", lora=str(tmp_path), lora_scale=0.5)
    x, t = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(5)), torch.tensor(500.0)
    with torch.no_grad():
        embeds = FAMILY.encode(base, PROMPT)
        extra = FAMILY.prepare(base, width=W, height=H, batch=1, cfg_scale=1.0)
        want = FAMILY.predict(adapted, x, t, embeds, extra)
        got = FAMILY.predict(fused, x, t, embeds, extra)
        mid = FAMILY.predict(half, x, t, embeds, extra)
        plain = FAMILY.predict(base, x, t, embeds, extra)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-2  # the LoRA really changes the model
    assert (mid - plain).abs().max() > 1e-3 and (mid - want).abs().max() > 1e-3  # half the LoRA: in between
    assert fused.name.endswith("+lora")


@pytest.mark.slow
def test_3d_animation_renders_with_tiny_sdxl(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    for k, v in {"models.latent_model": "tiny-sdxl", "image.steps": 3, "max_frames": 3, "make_video": False,
                 "image.width": W, "image.height": H,
                 "prompts.text_prompts": {"0": f"{PROMPT} --neg blurry", "2": "a castle:1, a city at night:0.5"}}.items():
        s.set(k, v)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert result.status == "done" and run.complete_frames() == [0, 1, 2]
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])
