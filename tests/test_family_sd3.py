"""The SD 3.5 family on tiny components: detection, prompts (with and without T5) and transformer calls bit-equal to
diffusers' StableDiffusion3Pipeline built from the same files, the flow-matching schedule and img2img noising of
StableDiffusion3Img2ImgPipeline, and the latent loop end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from discolib.models.families import (
    cat_embeds,
    detect_family,
    expand_embeds,
    family_of_config,
    family_of_index,
)
from discolib.models.families.base import FamilyError
from discolib.models.families.sd3 import FAMILY
from discolib.models.latent import (
    LatentComponents,
    load_latent_components,
    make_scheduler,
    tiny_family_folder,
)

W = H = 64  # 8x8 latents, a 4x4 patch grid
T5_LEN = 32  # the tiny T5 tokenizer's model_max_length (the pipeline default is 256)
PROMPT = "a castle in the fog"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_family_folder("sd3")


@pytest.fixture(scope="module")
def comps(folder: Path) -> LatentComponents:
    c = load_latent_components("tiny-sd3")
    assert c.family == "sd3" and c.family_obj is FAMILY
    return c


@pytest.fixture(scope="module")
def pipe(folder: Path):  # -> StableDiffusion3Pipeline, loaded on its own (not the one inside comps)
    from diffusers import StableDiffusion3Pipeline

    p = StableDiffusion3Pipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def img2img(pipe):  # -> StableDiffusion3Img2ImgPipeline sharing the reference pipeline's modules
    from diffusers import StableDiffusion3Img2ImgPipeline

    p = StableDiffusion3Img2ImgPipeline.from_pipe(pipe)
    p.set_progress_bar_config(disable=True)
    return p


# ---------------------------------------------------------------------------------------------- detection


def test_detected_from_the_index_and_from_the_transformer_config(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusion3Pipeline"
    assert index["transformer"] == ["diffusers", "SD3Transformer2DModel"]
    assert index["text_encoder"][1] == index["text_encoder_2"][1] == "CLIPTextModelWithProjection"
    assert index["text_encoder_3"][1] == "T5EncoderModel"
    assert detect_family(folder) is FAMILY
    assert family_of_index("StableDiffusion3Img2ImgPipeline") is FAMILY
    config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    assert family_of_config(config) is FAMILY
    # size_multiple is the VAE factor times the patch size, as the pipeline's check_inputs demands.
    vae = json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))
    assert FAMILY.size_multiple == 2 ** (len(vae["block_out_channels"]) - 1) * config["patch_size"] == 16
    assert FAMILY.flow and FAMILY.uses_cfg and FAMILY.denoiser == "transformer"
    assert FAMILY.text_encoders == ("text_encoder", "text_encoder_2", "text_encoder_3")
    assert FAMILY.pipeline_kwargs() == {}
    assert FAMILY.pipeline_kwargs(t5=False) == {"text_encoder_3": None, "tokenizer_3": None}
    # Other transformers are not SD3's.
    assert not FAMILY.matches_denoiser({"_class_name": "FluxTransformer2DModel", "in_channels": 64})
    with pytest.raises(FamilyError, match="StableVideoDiffusionPipeline.*video"):
        family_of_index("StableVideoDiffusionPipeline")


# ---------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize("text", [PROMPT, "", "城堡 in fog, 🏰"])
def test_encode_is_the_pipelines_encode_prompt(comps: LatentComponents, pipe, text: str) -> None:
    with torch.no_grad():
        ref, _, ref_pooled, _ = pipe.encode_prompt(text, None, None, device=torch.device("cpu"),
                                                   do_classifier_free_guidance=False, max_sequence_length=T5_LEN)
        ours = FAMILY.encode(comps, text)
        neg = FAMILY.negative(comps, text)
    assert set(ours) == {"prompt_embeds", "pooled_prompt_embeds"}
    assert torch.equal(ours["prompt_embeds"], ref) and torch.equal(ours["pooled_prompt_embeds"], ref_pooled)
    # 77 CLIP tokens (both CLIPs side by side, zero-padded to T5's width) then the T5 tokens; pooled: both CLIPs.
    assert ours["prompt_embeds"].shape == (1, 77 + T5_LEN, 64) and ours["pooled_prompt_embeds"].shape == (1, 48)
    assert ours["prompt_embeds"].dtype == torch.float32
    assert torch.equal(neg["prompt_embeds"], ours["prompt_embeds"])


def test_negative_prompt_is_the_pipelines_cfg_side(comps: LatentComponents, pipe) -> None:
    """With CFG the pipeline encodes the negative prompt as the unconditional half: the family's ``negative``."""
    with torch.no_grad():
        _, ref_neg, _, ref_neg_pooled = pipe.encode_prompt(PROMPT, None, None, device=torch.device("cpu"),
                                                           do_classifier_free_guidance=True, negative_prompt="blurry",
                                                           max_sequence_length=T5_LEN)
        neg = FAMILY.negative(comps, "blurry")
    assert torch.equal(neg["prompt_embeds"], ref_neg) and torch.equal(neg["pooled_prompt_embeds"], ref_neg_pooled)


def test_without_t5_loads_and_encodes_zeros_where_t5_was(comps: LatentComponents) -> None:
    from diffusers import StableDiffusion3Pipeline

    small = load_latent_components("tiny-sd3", t5=False)
    assert small.family == "sd3" and small.pipe.text_encoder_3 is None and small.pipe.tokenizer_3 is None
    with torch.no_grad():
        ours = FAMILY.encode(small, PROMPT)
        full = FAMILY.encode(comps, PROMPT)
        # The pipeline's own encode without T5 at its default length (256).
        ref, _, ref_pooled, _ = small.pipe.encode_prompt(PROMPT, None, None, device=torch.device("cpu"),
                                                         do_classifier_free_guidance=False)
    assert isinstance(small.pipe, StableDiffusion3Pipeline)
    assert torch.equal(ours["prompt_embeds"], ref) and torch.equal(ours["pooled_prompt_embeds"], ref_pooled)
    assert ours["prompt_embeds"].shape == (1, 77 + 256, 64)
    assert not ours["prompt_embeds"][:, 77:].any()  # zeros where the T5 tokens were
    # The CLIP part and the pooled embedding do not depend on T5.
    assert torch.equal(ours["prompt_embeds"][:, :77], full["prompt_embeds"][:, :77])
    assert torch.equal(ours["pooled_prompt_embeds"], full["pooled_prompt_embeds"])
    x = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = FAMILY.predict(small, x, torch.tensor(999.0), ours, {})
    assert out.shape == x.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------- denoiser


def test_predict_is_the_pipelines_transformer_call(comps: LatentComponents, pipe) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, H // 8, W // 8, generator=gen)
    with torch.no_grad():
        both = cat_embeds(FAMILY.negative(comps, ""), FAMILY.encode(comps, PROMPT))
        extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=4.0)
        for t in (torch.tensor(1000.0), torch.tensor(428.57)):
            ours = FAMILY.predict(comps, x, t, both, extra)
            # The call in StableDiffusion3Pipeline.__call__'s loop.
            ref = pipe.transformer(hidden_states=x, timestep=t.expand(2), encoder_hidden_states=both["prompt_embeds"],
                                   pooled_projections=both["pooled_prompt_embeds"], return_dict=False)[0]
            assert ours.dtype == torch.float32 and ours.shape == x.shape
            assert torch.equal(ours, ref)
        # Without CFG the embeds arrive expanded (stride-0 views) to the batch: same as a real copy.
        cond = FAMILY.encode(comps, PROMPT)
        c2 = {k: v.repeat(2, *([1] * (v.ndim - 1))) for k, v in cond.items()}
        t = torch.tensor(700.0)
        assert torch.equal(FAMILY.predict(comps, x, t, expand_embeds(cond, 2), extra),
                           FAMILY.predict(comps, x, t, c2, extra))


# ---------------------------------------------------------------------------------------------- schedules


def _pipeline_schedule(pipe, scheduler, steps: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The timesteps and sigmas StableDiffusion3Pipeline sets on ``scheduler`` in a call (one step of it run)."""
    pipe.scheduler = scheduler
    seen: dict[str, torch.Tensor] = {}

    def grab(p, i, t, kwargs):  # the schedule is complete before the first step
        seen["t"], seen["s"] = p.scheduler.timesteps.clone(), p.scheduler.sigmas.clone()
        p._interrupt = True
        return kwargs

    with torch.no_grad():
        pipe(prompt=PROMPT, height=height, width=width, num_inference_steps=steps, guidance_scale=1.0,
             output_type="latent", max_sequence_length=T5_LEN, callback_on_step_end=grab)
    return seen["t"], seen["s"]


@pytest.mark.parametrize("dynamic", [False, True])
def test_set_timesteps_is_the_pipelines(comps: LatentComponents, pipe, dynamic: bool) -> None:
    """SD 3.5's fixed shift; and, with a dynamic-shifting scheduler config, ``mu`` from the token count."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    cfg = dict(comps.scheduler_config, use_dynamic_shifting=dynamic)
    for steps, (w, h) in ((4, (W, H)), (5, (128, 64))):
        sched = make_scheduler("default", cfg)
        FAMILY.set_timesteps(sched, steps, width=w, height=h)
        ref_t, ref_s = _pipeline_schedule(pipe, FlowMatchEulerDiscreteScheduler.from_config(cfg), steps, w, h)
        assert torch.equal(sched.timesteps, ref_t) and torch.equal(sched.sigmas, ref_s)
    if dynamic:  # the shift depends on the size
        a, b = make_scheduler("default", cfg), make_scheduler("default", cfg)
        FAMILY.set_timesteps(a, 4, width=64, height=64)
        FAMILY.set_timesteps(b, 4, width=1024, height=1024)
        assert not torch.equal(a.sigmas, b.sigmas)


@pytest.mark.parametrize(("steps", "strength"), [(3, 0.5), (10, 0.3), (10, 0.75), (25, 0.55), (8, 1.0), (4, 0.01)])
def test_img2img_noising_is_the_img2img_pipelines(comps: LatentComponents, img2img, steps: int,
                                                   strength: float) -> None:
    """``init_steps`` + the sampler's (a, b) == StableDiffusion3Img2ImgPipeline's get_timesteps + prepare_latents."""
    from diffusers.utils.torch_utils import randn_tensor

    from discolib.samplers.latent import _noising_coefficients

    sched = make_scheduler("default", comps.scheduler_config)
    FAMILY.set_timesteps(sched, steps, width=W, height=H)
    ref_sched = make_scheduler("default", comps.scheduler_config)
    ref_sched.set_timesteps(steps, device="cpu")
    img2img.scheduler = ref_sched
    timesteps, n = img2img.get_timesteps(steps, strength, "cpu")
    ours = FAMILY.init_steps(steps, strength)
    assert ours == n
    begin = (steps - ours) * sched.order
    assert torch.equal(sched.timesteps[begin:], timesteps)
    if n == 0:
        return
    sched.set_begin_index(begin)
    x0 = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(2))
    ref = img2img.prepare_latents(x0, timesteps[:1], 1, 1, torch.float32, torch.device("cpu"),
                                  generator=torch.Generator().manual_seed(5))
    noise = randn_tensor(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float32)
    a, b = _noising_coefficients(sched, sched.timesteps[begin:begin + 1])
    assert torch.equal(x0 * a + noise * b, ref)


# ---------------------------------------------------------------------------------------------- the latent loop



@pytest.mark.parametrize("cfg_scale", [4.5, 1.0])
def test_denoise_latents_equals_the_pipeline(comps: LatentComponents, pipe, cfg_scale: float) -> None:
    """txt2img through the sampler (with and without CFG) == StableDiffusion3Pipeline(output_type="latent") with the
    same generator: same noise, same flow-matching Euler trajectory."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from discolib.samplers.latent import LatentRequest, denoise_latents

    request = LatentRequest(prompts=PROMPT, negative="blurry", width=W, height=H, steps=3, cfg_scale=cfg_scale,
                            scheduler="default", seed=7)
    ours = denoise_latents(comps, request)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(comps.scheduler_config)
    with torch.no_grad():
        ref = pipe(prompt=PROMPT, negative_prompt="blurry", width=W, height=H, num_inference_steps=3,
                   guidance_scale=cfg_scale, generator=torch.Generator().manual_seed(7), output_type="latent",
                   max_sequence_length=T5_LEN).images
    assert ours.shape == ref.shape == (1, 16, H // 8, W // 8)
    assert torch.equal(ours, ref)


def test_img2img_equals_the_img2img_pipeline_and_noises_with_scale_noise(comps: LatentComponents, img2img) -> None:
    """img2img from latents == StableDiffusion3Img2ImgPipeline on the same latents and generator; the loop's first
    latents are the scheduler's ``scale_noise`` of the init at the first remaining timestep."""
    from diffusers.utils.torch_utils import randn_tensor

    from discolib.samplers.latent import LatentRequest, denoise_latents

    x0 = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(3))
    seen: list[dict] = []
    request = LatentRequest(prompts=PROMPT, width=W, height=H, steps=5, cfg_scale=3.0, scheduler="default", seed=11,
                            init_latents=x0, strength=0.6, callback=seen.append)
    ours = denoise_latents(comps, request)
    img2img.scheduler = make_scheduler("default", comps.scheduler_config)
    with torch.no_grad():
        ref = img2img(prompt=PROMPT, image=x0, strength=0.6, width=W, height=H, num_inference_steps=5,
                      guidance_scale=3.0, generator=torch.Generator().manual_seed(11), output_type="latent",
                      max_sequence_length=T5_LEN).images
    assert torch.equal(ours, ref)
    assert len(seen) == FAMILY.init_steps(5, 0.6) == 3
    sched = make_scheduler("default", comps.scheduler_config)
    FAMILY.set_timesteps(sched, 5, width=W, height=H)
    sched.set_begin_index(2)
    noise = randn_tensor(x0.shape, generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    assert torch.equal(seen[0]["x"], sched.scale_noise(x0, sched.timesteps[2:3], noise))


def test_3d_animation_renders_with_tiny_sd3(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-sd3")
    for k, v in {"image.steps": 2, "max_frames": 3, "make_video": False, "image.width": W, "image.height": H,
                 "prompts.text_prompts": {"0": f"{PROMPT} --neg blurry", "2": "a castle:1, a city at night:0.5"}}.items():
        s.set(k, v)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert result.status == "done" and run.complete_frames() == [0, 1, 2]
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_scheduler_steps_run_finite(comps: LatentComponents) -> None:
    """The tiny model's flow config drives the flow solvers the sampler offers."""
    from discolib.models.latent import FLOW_SCHEDULERS

    x = torch.randn(1, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cond = FAMILY.encode(comps, PROMPT)
        for name in FLOW_SCHEDULERS:
            sched = make_scheduler(name, comps.scheduler_config)
            FAMILY.set_timesteps(sched, 3, width=W, height=H)
            lat = x.clone()
            for t in sched.timesteps:
                lat = sched.step(FAMILY.predict(comps, lat, t, cond, {}), t, lat,
                                 generator=torch.Generator().manual_seed(0)).prev_sample
            assert torch.isfinite(lat).all() and lat.shape == x.shape, name


def test_set_timesteps_uses_only_what_the_scheduler_takes() -> None:
    """A flow scheduler without ``mu`` (a user's choice) still gets its steps."""
    sched = SimpleNamespace(config={"use_dynamic_shifting": True}, calls=[])
    sched.set_timesteps = lambda num_inference_steps=None, device=None: sched.calls.append((num_inference_steps, device))
    FAMILY.set_timesteps(sched, 6, width=W, height=H)
    assert sched.calls == [(6, "cpu")]
