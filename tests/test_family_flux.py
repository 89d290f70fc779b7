"""The Flux.1 family on tiny components (dev-like with a guidance embedding, and schnell-like without): detection,
prompts and transformer calls bit-equal to diffusers' FluxPipeline built from the same files, packing, the
resolution-shifted schedule and img2img noising of FluxImg2ImgPipeline, and the latent loop end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from discolib.models.families import detect_family, expand_embeds, family_of_config, family_of_index
from discolib.models.families.base import FamilyError
from discolib.models.families.flux import FAMILY
from discolib.models.latent import (
    LatentComponents,
    LatentModelError,
    load_latent_components,
    make_scheduler,
    tiny_family_folder,
)

W = H = 64  # 8x8 latents, 16 packed 2x2 patches
T5_LEN = 32  # the tiny T5 tokenizer's model_max_length (the pipeline default is 512)
PROMPT = "a castle in the fog"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_family_folder("flux")


@pytest.fixture(scope="module")
def comps(folder: Path) -> LatentComponents:
    c = load_latent_components("tiny-flux")
    assert c.family == "flux" and c.family_obj is FAMILY
    return c


@pytest.fixture(scope="module")
def pipe(folder: Path):  # -> FluxPipeline, loaded on its own (not the one inside comps)
    from diffusers import FluxPipeline

    p = FluxPipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def schnell(comps: LatentComponents) -> LatentComponents:
    """The tiny components with a schnell-like transformer (no guidance embedding) and schnell's fixed-shift
    scheduler, in a FluxPipeline of their own."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    from discolib.ops import seeded

    config = {k: v for k, v in comps.unet.config.items() if not k.startswith("_")}
    with seeded(1):
        transformer = FluxTransformer2DModel(**{**config, "guidance_embeds": False})
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    p = FluxPipeline(**{**comps.pipe.components, "transformer": transformer, "scheduler": scheduler})
    p.set_progress_bar_config(disable=True)
    # A loaded scheduler's config names its class (make_scheduler's "default" builds that class).
    sched_config = {"_class_name": type(scheduler).__name__, **scheduler.config}
    return dataclasses.replace(comps, unet=transformer, pipe=p, scheduler_config=sched_config,
                               embedding_cache=type(comps.embedding_cache)())


# ---------------------------------------------------------------------------------------------- detection


def test_detected_from_the_index_and_from_the_transformer_config(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "FluxPipeline"
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    assert index["text_encoder"][1] == "CLIPTextModel" and index["text_encoder_2"][1] == "T5EncoderModel"
    assert detect_family(folder) is FAMILY
    assert family_of_index("FluxImg2ImgPipeline") is FAMILY
    config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    assert family_of_config(config) is FAMILY and config["guidance_embeds"] is True
    # Flux Fill's transformer takes the mask and the masked image too (384 in, 64 out): not this family.
    with pytest.raises(FamilyError, match="FluxTransformer2DModel"):
        family_of_config({**config, "in_channels": 384, "out_channels": 64})
    assert FAMILY.flow and not FAMILY.uses_cfg and FAMILY.size_multiple == 16 and FAMILY.denoiser == "transformer"
    assert FAMILY.text_encoders == ("text_encoder", "text_encoder_2")
    assert FAMILY.pipeline_kwargs() == {}


def test_t5_is_required() -> None:
    with pytest.raises(FamilyError, match="Flux.*T5"):
        FAMILY.pipeline_kwargs(t5=False)
    with pytest.raises(LatentModelError, match="T5"):
        load_latent_components("tiny-flux", t5=False)


# ---------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("text", [PROMPT, "", "城堡 in fog, 🏰"])
def test_encode_is_the_pipelines_encode_prompt(comps: LatentComponents, pipe, text: str) -> None:
    with torch.no_grad():
        ref, ref_pooled, ref_txt_ids = pipe.encode_prompt(text, None, device=torch.device("cpu"),
                                                          max_sequence_length=T5_LEN)
        ours = FAMILY.encode(comps, text)
    assert set(ours) == {"prompt_embeds", "pooled_prompt_embeds"}
    assert torch.equal(ours["prompt_embeds"], ref) and torch.equal(ours["pooled_prompt_embeds"], ref_pooled)
    assert ours["prompt_embeds"].shape == (1, T5_LEN, 32) and ours["pooled_prompt_embeds"].shape == (1, 32)
    extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=3.5)
    assert torch.equal(extra["txt_ids"], ref_txt_ids)


# ---------------------------------------------------------------------------------------------- denoiser


def test_prepare_ids_and_guidance_are_the_pipelines(comps: LatentComponents, pipe, schnell: LatentComponents) -> None:
    for w, h in ((W, H), (128, 64)):
        _, ref_ids = pipe.prepare_latents(1, 16, h, w, torch.float32, torch.device("cpu"), torch.Generator())
        extra = FAMILY.prepare(comps, width=w, height=h, batch=1, cfg_scale=3.5)
        assert torch.equal(extra["img_ids"], ref_ids) and extra["img_ids"].shape == (h // 16 * (w // 16), 3)
    # dev: the render's cfg_scale is the guidance embedding's input; schnell has none.
    assert extra["guidance"].tolist() == [3.5] and extra["guidance"].dtype == torch.float32
    assert FAMILY.prepare(schnell, width=W, height=H, batch=1, cfg_scale=3.5)["guidance"] is None


def _pipeline_transformer_call(pipe, x: torch.Tensor, t: torch.Tensor, embeds: dict[str, torch.Tensor],
                               guidance_scale: float) -> torch.Tensor:
    """The transformer call of FluxPipeline.__call__'s loop on the packed latents, unpacked as the pipeline does
    before decoding."""
    n, c, h, w = x.shape
    f = pipe.vae_scale_factor
    packed = pipe._pack_latents(x, n, c, h, w)
    _, img_ids = pipe.prepare_latents(n, c, h * f, w * f, torch.float32, torch.device("cpu"), None, latents=packed)
    txt_ids = torch.zeros(embeds["prompt_embeds"].shape[1], 3)
    guidance = None
    if pipe.transformer.config.guidance_embeds:
        guidance = torch.full([1], guidance_scale, dtype=torch.float32).expand(n)
    out = pipe.transformer(hidden_states=packed, timestep=t.expand(n).to(packed.dtype) / 1000, guidance=guidance,
                           pooled_projections=embeds["pooled_prompt_embeds"],
                           encoder_hidden_states=embeds["prompt_embeds"], txt_ids=txt_ids, img_ids=img_ids,
                           return_dict=False)[0]
    return pipe._unpack_latents(out, h * f, w * f, f)


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_predict_is_the_pipelines_transformer_call(comps: LatentComponents, pipe, schnell: LatentComponents,
                                                   variant: str) -> None:
    c = comps if variant == "dev" else schnell
    ref_pipe = pipe if variant == "dev" else schnell.pipe
    x = torch.randn(2, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cond = expand_embeds(FAMILY.encode(c, PROMPT), 2)
        extra = FAMILY.prepare(c, width=W, height=H, batch=2, cfg_scale=3.5)
        for t in (torch.tensor(1000.0), torch.tensor(612.87)):
            ours = FAMILY.predict(c, x, t, cond, extra)
            ref = _pipeline_transformer_call(ref_pipe, x, t, cond, 3.5)
            assert ours.dtype == torch.float32 and ours.shape == x.shape
            assert torch.equal(ours, ref)
        if variant == "dev":  # the guidance embedding is used: another scale, another prediction
            other = FAMILY.prepare(c, width=W, height=H, batch=2, cfg_scale=7.0)
            assert not torch.equal(FAMILY.predict(c, x, t, cond, other), ours)


def test_pack_and_unpack_are_inverse_and_the_noise_is_the_pipelines(pipe) -> None:
    """The sampler's unpacked noise (B, 16, H/8, W/8) packed == the noise FluxPipeline draws (same generator)."""
    from diffusers.utils.torch_utils import randn_tensor

    for w, h in ((W, H), (128, 64)):
        noise = randn_tensor((2, 16, h // 8, w // 8), generator=torch.Generator().manual_seed(4), dtype=torch.float32)
        ref, _ = pipe.prepare_latents(2, 16, h, w, torch.float32, torch.device("cpu"),
                                      torch.Generator().manual_seed(4))
        packed = pipe._pack_latents(noise, 2, 16, h // 8, w // 8)
        assert torch.equal(packed, ref)
        assert torch.equal(pipe._unpack_latents(packed, h, w, pipe.vae_scale_factor), noise)


# ---------------------------------------------------------------------------------------------- schedules


def _pipeline_schedule(pipe, scheduler, steps: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The timesteps and sigmas FluxPipeline sets on ``scheduler`` in a call (one step of it run)."""
    pipe.scheduler = scheduler
    seen: dict[str, torch.Tensor] = {}

    def grab(p, i, t, kwargs):  # the schedule is complete before the first step
        seen["t"], seen["s"] = p.scheduler.timesteps.clone(), p.scheduler.sigmas.clone()
        p._interrupt = True
        return kwargs

    with torch.no_grad():
        pipe(prompt=PROMPT, height=height, width=width, num_inference_steps=steps, output_type="latent",
             max_sequence_length=T5_LEN, callback_on_step_end=grab)
    return seen["t"], seen["s"]


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_set_timesteps_is_the_pipelines(comps: LatentComponents, pipe, schnell: LatentComponents,
                                        variant: str) -> None:
    """linspace sigmas and the resolution shift ``mu`` (dev's scheduler shifts dynamically; schnell's ignores it)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    c = comps if variant == "dev" else schnell
    ref_pipe = pipe if variant == "dev" else schnell.pipe
    schedules = []
    for steps, (w, h) in ((4, (W, H)), (5, (128, 64)), (4, (256, 256))):
        sched = make_scheduler("default", c.scheduler_config)
        FAMILY.set_timesteps(sched, steps, width=w, height=h)
        ref_t, ref_s = _pipeline_schedule(ref_pipe, FlowMatchEulerDiscreteScheduler.from_config(c.scheduler_config),
                                          steps, w, h)
        assert torch.equal(sched.timesteps, ref_t) and torch.equal(sched.sigmas, ref_s)
        schedules.append(sched.sigmas)
    # dev: a larger image is shifted further towards noise; schnell: the same schedule at any size.
    assert torch.equal(schedules[0], schedules[2]) == (variant == "schnell")


@pytest.mark.parametrize(("steps", "strength"), [(3, 0.5), (10, 0.3), (10, 0.75), (4, 0.55), (8, 1.0)])
def test_img2img_noising_is_the_img2img_pipelines(comps: LatentComponents, pipe, steps: int, strength: float) -> None:
    """``init_steps`` + the sampler's (a, b) on unpacked latents, packed == FluxImg2ImgPipeline's get_timesteps and
    prepare_latents (which draws unpacked noise, noises with ``scale_noise`` and packs)."""
    from diffusers import FluxImg2ImgPipeline
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
    from diffusers.utils.torch_utils import randn_tensor

    from discolib.samplers.latent import _noising_coefficients

    img2img = FluxImg2ImgPipeline.from_pipe(pipe)
    img2img.scheduler = make_scheduler("default", comps.scheduler_config)
    cfg = img2img.scheduler.config
    # FluxImg2ImgPipeline.__call__'s step 4, written out from its source.
    seq = (H // 8 // 2) * (W // 8 // 2)
    mu = calculate_shift(seq, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    import numpy as np

    retrieve_timesteps(img2img.scheduler, steps, "cpu", sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    timesteps, n = img2img.get_timesteps(steps, strength, "cpu")

    sched = make_scheduler("default", comps.scheduler_config)
    FAMILY.set_timesteps(sched, steps, width=W, height=H)
    ours = FAMILY.init_steps(steps, strength)
    assert ours == n
    begin = (steps - ours) * sched.order
    assert torch.equal(sched.timesteps[begin:], timesteps)
    sched.set_begin_index(begin)
    x0 = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(2))
    ref, _ = img2img.prepare_latents(x0, timesteps[:1], 1, 16, H, W, torch.float32, torch.device("cpu"),
                                     torch.Generator().manual_seed(5))
    noise = randn_tensor(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    a, b = _noising_coefficients(sched, sched.timesteps[begin:begin + 1])
    assert torch.equal(pipe._pack_latents(x0 * a + noise * b, 1, 16, H // 8, W // 8), ref)


# ---------------------------------------------------------------------------------------------- the latent loop



@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_denoise_latents_equals_the_pipeline(comps: LatentComponents, pipe, schnell: LatentComponents,
                                             variant: str) -> None:
    """txt2img through the sampler == FluxPipeline(output_type="latent") with the same generator, unpacked; the
    render's cfg_scale is dev's guidance scale (and no CFG pass: Flux has no negative prompt)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from discolib.samplers.latent import LatentRequest, denoise_latents

    c = comps if variant == "dev" else schnell
    ref_pipe = pipe if variant == "dev" else schnell.pipe
    for w, h in ((W, H), (96, 64)):
        request = LatentRequest(prompts=PROMPT, width=w, height=h, steps=3, cfg_scale=3.5, scheduler="default",
                                seed=7)
        ours = denoise_latents(c, request)
        ref_pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(c.scheduler_config)
        with torch.no_grad():
            packed = ref_pipe(prompt=PROMPT, width=w, height=h, num_inference_steps=3, guidance_scale=3.5,
                              generator=torch.Generator().manual_seed(7), output_type="latent",
                              max_sequence_length=T5_LEN).images
        ref = ref_pipe._unpack_latents(packed, h, w, ref_pipe.vae_scale_factor)
        assert ours.shape == ref.shape == (1, 16, h // 8, w // 8)
        assert torch.equal(ours, ref)


def test_img2img_equals_the_img2img_pipeline_and_noises_with_scale_noise(comps: LatentComponents, pipe) -> None:
    """img2img from latents == FluxImg2ImgPipeline on the same latents and generator; the loop's first latents are
    the scheduler's ``scale_noise`` of the init at the first remaining timestep."""
    from diffusers import FluxImg2ImgPipeline
    from diffusers.utils.torch_utils import randn_tensor

    from discolib.samplers.latent import LatentRequest, denoise_latents

    x0 = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(3))
    seen: list[dict] = []
    request = LatentRequest(prompts=PROMPT, width=W, height=H, steps=5, cfg_scale=3.5, scheduler="default", seed=11,
                            init_latents=x0, strength=0.6, callback=seen.append)
    ours = denoise_latents(comps, request)
    img2img = FluxImg2ImgPipeline.from_pipe(pipe)
    img2img.set_progress_bar_config(disable=True)
    img2img.scheduler = make_scheduler("default", comps.scheduler_config)
    with torch.no_grad():
        packed = img2img(prompt=PROMPT, image=x0, strength=0.6, width=W, height=H, num_inference_steps=5,
                         guidance_scale=3.5, generator=torch.Generator().manual_seed(11), output_type="latent",
                         max_sequence_length=T5_LEN).images
    assert torch.equal(ours, pipe._unpack_latents(packed, H, W, pipe.vae_scale_factor))
    assert len(seen) == FAMILY.init_steps(5, 0.6) == 3
    sched = make_scheduler("default", comps.scheduler_config)
    FAMILY.set_timesteps(sched, 5, width=W, height=H)
    sched.set_begin_index(2)
    noise = randn_tensor(x0.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    assert torch.equal(seen[0]["x"], sched.scale_noise(x0, sched.timesteps[2:3], noise))


def test_3d_animation_renders_with_tiny_flux(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-flux")
    for k, v in {"image.steps": 2, "max_frames": 3, "make_video": False, "image.width": W, "image.height": H,
                 "prompts.text_prompts": {"0": PROMPT, "2": "a castle:1, a city at night:0.5"}}.items():
        s.set(k, v)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert result.status == "done" and run.complete_frames() == [0, 1, 2]
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_flow_schedulers_run_finite(comps: LatentComponents) -> None:
    """Every flow solver the sampler offers takes Flux's schedule (Heun's ``set_timesteps`` has no ``sigmas`` or
    ``mu``: it gets the step count)."""
    from discolib.models.latent import FLOW_SCHEDULERS

    x = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cond = FAMILY.encode(comps, PROMPT)
        extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=3.5)
        for name in FLOW_SCHEDULERS:
            sched = make_scheduler(name, comps.scheduler_config)
            FAMILY.set_timesteps(sched, 3, width=W, height=H)
            assert len(sched.timesteps) == 3 * sched.order - (sched.order - 1), name
            lat = x.clone()
            for t in sched.timesteps:
                lat = sched.step(FAMILY.predict(comps, lat, t, cond, extra), t, lat,
                                 generator=torch.Generator().manual_seed(0)).prev_sample
            assert torch.isfinite(lat).all() and lat.shape == x.shape, name
