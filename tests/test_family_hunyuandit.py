"""The HunyuanDiT family on tiny components: detection, prompts (Chinese and English) and denoiser calls bit-equal to
diffusers' HunyuanDiTPipeline built from the same files, img2img's step rule, schedulers, and the latent loop."""

from __future__ import annotations

import inspect
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
from discolib.models.families.hunyuandit import BERT_CJK, FAMILY, write_tiny_bert_tokenizer
from discolib.models.latent import (
    LatentComponents,
    load_latent_components,
    make_scheduler,
    tiny_family_folder,
)

W = H = 64  # 8x8 latents, a 4x4 patch grid
ZH = "雾中的城堡"
EN = "a castle in the fog"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_family_folder("hunyuandit")


@pytest.fixture(scope="module")
def comps(folder: Path) -> LatentComponents:
    c = load_latent_components("tiny-hunyuandit")
    assert c.family == "hunyuandit" and c.family_obj is FAMILY
    return c


@pytest.fixture(scope="module")
def pipe(folder: Path):  # -> HunyuanDiTPipeline, loaded on its own (not the one inside comps)
    from diffusers import HunyuanDiTPipeline

    p = HunyuanDiTPipeline.from_pretrained(str(folder), **FAMILY.pipeline_kwargs())
    p.set_progress_bar_config(disable=True)
    return p


# ---------------------------------------------------------------------------------------------- detection


def test_detected_from_the_index_and_from_the_transformer_config(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "HunyuanDiTPipeline"
    assert index["transformer"] == ["diffusers", "HunyuanDiT2DModel"]
    assert index["text_encoder"][1] == "BertModel" and index["text_encoder_2"][1] == "T5EncoderModel"
    assert detect_family(folder) is FAMILY
    assert family_of_index("HunyuanDiTPAGPipeline") is FAMILY
    config = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    assert family_of_config(config) is FAMILY
    # No HunyuanDiT img2img pipeline in diffusers (up to 0.42): the empty name must not make "" a HunyuanDiT index.
    import diffusers

    has_img2img = hasattr(diffusers, "HunyuanDiTImg2ImgPipeline")
    assert FAMILY.img2img_pipeline == ("HunyuanDiTImg2ImgPipeline" if has_img2img else "")
    assert not FAMILY.matches_index("")
    with pytest.raises(FamilyError, match="HunyuanDiTControlNetPipeline.*ControlNet"):
        family_of_index("HunyuanDiTControlNetPipeline")
    assert FAMILY.text_encoders == ("text_encoder", "text_encoder_2")
    with pytest.raises(FamilyError, match="mT5"):
        FAMILY.pipeline_kwargs(t5=False)


# ---------------------------------------------------------------------------------------------- prompts


def _pipeline_encode(pipe, text: str, negative: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """As HunyuanDiTPipeline.__call__ encodes a prompt with CFG: (cond, uncond) with our key names."""
    cond: dict[str, torch.Tensor] = {}
    uncond: dict[str, torch.Tensor] = {}
    for index, (length, suffix) in enumerate(((77, ""), (256, "_2"))):
        pe, npe, pm, npm = pipe.encode_prompt(
            prompt=text, device=torch.device("cpu"), dtype=pipe.transformer.dtype, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative, max_sequence_length=length,
            text_encoder_index=index,
        )
        cond |= {"prompt_embeds" + suffix: pe, "prompt_attention_mask" + suffix: pm}
        uncond |= {"prompt_embeds" + suffix: npe, "prompt_attention_mask" + suffix: npm}
    return cond, uncond


@pytest.mark.parametrize(("text", "negative"), [(ZH, ""), (EN, "模糊的花")])
def test_encode_is_the_pipelines_encode_prompt(comps: LatentComponents, pipe, text: str, negative: str) -> None:
    with torch.no_grad():
        ref_cond, ref_uncond = _pipeline_encode(pipe, text, negative)
        cond = FAMILY.encode(comps, text)
        uncond = FAMILY.negative(comps, negative)
    keys = {"prompt_embeds", "prompt_attention_mask", "prompt_embeds_2", "prompt_attention_mask_2"}
    assert set(cond) == set(uncond) == keys
    for ours, ref in ((cond, ref_cond), (uncond, ref_uncond)):
        for k in keys:
            assert ours[k].dtype == ref[k].dtype and torch.equal(ours[k], ref[k]), k
    assert cond["prompt_embeds"].shape == (1, 77, 32) and cond["prompt_embeds_2"].shape == (1, 256, 32)
    # Masks stay integer (the sampler ORs them when blending weighted prompts).
    assert not cond["prompt_attention_mask"].is_floating_point()
    assert not cond["prompt_attention_mask_2"].is_floating_point()


def test_chinese_and_english_prompts_tokenised_without_loss(comps: LatentComponents) -> None:
    bert, t5 = comps.pipe.tokenizer, comps.pipe.tokenizer_2
    # BERT splits CJK into characters, each in the vocabulary: no [UNK].
    assert bert.tokenize(ZH) == list(ZH)
    assert bert.tokenize(EN) == EN.split()
    for text in (ZH, EN):
        ids = bert(text).input_ids
        assert bert.unk_token_id not in ids and ids[0] == bert.cls_token_id and ids[-1] == bert.sep_token_id
    # mT5's tokenizer: each CJK character of the prompt is a piece of its own, not <unk>.
    assert all(t5.convert_tokens_to_ids(c) != t5.unk_token_id for c in ZH)
    assert [p for p in t5.tokenize(ZH) if p != "▁"] == list(ZH)
    assert all(bert.convert_tokens_to_ids(c) != bert.unk_token_id for c in BERT_CJK)
    with torch.no_grad():
        zh, en = FAMILY.encode(comps, ZH), FAMILY.encode(comps, EN)
    # The masks count the real tokens: [CLS] + 5 characters + [SEP]; [CLS] + 5 words + [SEP].
    assert int(zh["prompt_attention_mask"].sum()) == 7 and int(en["prompt_attention_mask"].sum()) == 7
    assert int(zh["prompt_attention_mask_2"].sum()) == len(comps.pipe.tokenizer_2(ZH).input_ids)
    assert not torch.equal(zh["prompt_embeds"], en["prompt_embeds"])
    assert not torch.equal(zh["prompt_embeds_2"], en["prompt_embeds_2"])
    assert all(torch.isfinite(v.float()).all() for v in (*zh.values(), *en.values()))


def test_tiny_bert_tokenizer_is_deterministic(tmp_path: Path) -> None:
    a = write_tiny_bert_tokenizer(tmp_path / "a") / "vocab.txt"
    b = write_tiny_bert_tokenizer(tmp_path / "b") / "vocab.txt"
    assert a.read_bytes() == b.read_bytes()
    vocab = a.read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocab) == len(set(vocab))


# ---------------------------------------------------------------------------------------------- denoiser


def _pipeline_transformer_call(pipe, x: torch.Tensor, t: torch.Tensor, embeds: dict[str, torch.Tensor],
                               width: int, height: int) -> torch.Tensor:
    """The transformer call of HunyuanDiTPipeline.__call__'s loop (CFG batch), written out from its source."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    tr = pipe.transformer
    grid_height = height // 8 // tr.config.patch_size
    grid_width = width // 8 // tr.config.patch_size
    base_size = 512 // 8 // tr.config.patch_size
    crops = get_resize_crop_region_for_grid((grid_height, grid_width), base_size)
    rope = get_2d_rotary_pos_embed(tr.inner_dim // tr.num_heads, crops, (grid_height, grid_width), output_type="pt")
    n = x.shape[0]
    add_time_ids = torch.tensor([list((1024, 1024) + (height, width) + (0, 0))], dtype=tr.dtype)
    add_time_ids = torch.cat([add_time_ids] * 2).repeat(n // 2, 1)
    style = torch.cat([torch.tensor([0])] * 2).repeat(n // 2)
    t_expand = torch.tensor([t] * n).to(dtype=x.dtype)
    out = tr(x, t_expand, encoder_hidden_states=embeds["prompt_embeds"],
             text_embedding_mask=embeds["prompt_attention_mask"],
             encoder_hidden_states_t5=embeds["prompt_embeds_2"],
             text_embedding_mask_t5=embeds["prompt_attention_mask_2"], image_meta_size=add_time_ids,
             style=style, image_rotary_emb=rope, return_dict=False)[0]
    return out.chunk(2, dim=1)[0]


def test_predict_is_the_pipelines_transformer_call(comps: LatentComponents, pipe) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, H // 8, W // 8, generator=gen)
    with torch.no_grad():
        cond, uncond = _pipeline_encode(pipe, ZH, "")
        both = cat_embeds(uncond, cond)
        extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=5.0)
        for t in (torch.tensor(999), torch.tensor(500)):
            ours = FAMILY.predict(comps, x, t, both, extra)
            ref = _pipeline_transformer_call(pipe, x, t, both, W, H)
            assert ours.dtype == torch.float32 and ours.shape == x.shape
            assert torch.equal(ours, ref)
        # Without CFG the embeds arrive expanded (stride-0 views) to the batch: same as a real copy.
        c2 = {k: v.repeat(2, *([1] * (v.ndim - 1))) for k, v in cond.items()}
        t = torch.tensor(700)
        assert torch.equal(FAMILY.predict(comps, x, t, expand_embeds(cond, 2), extra),
                           FAMILY.predict(comps, x, t, c2, extra))


def test_prepare_on_a_wide_frame(comps: LatentComponents) -> None:
    """A non-square size: the rotary table covers the whole patch grid and the size vector names the frame."""
    extra = FAMILY.prepare(comps, width=96, height=64, batch=1, cfg_scale=1.0)
    cos, sin = extra["image_rotary_emb"]
    assert cos.shape == sin.shape == (4 * 6, comps.unet.inner_dim // comps.unet.num_heads)
    assert extra["image_meta_size"].tolist() == [[1024, 1024, 64, 96, 0, 0]]
    assert extra["style"].tolist() == [0]
    x = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = FAMILY.predict(comps, x, torch.tensor(999), FAMILY.encode(comps, EN), extra)
    assert out.shape == x.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(("steps", "strength"), [(3, 0.5), (10, 0.3), (10, 0.75), (25, 0.55), (8, 1.0)])
def test_img2img_steps_follow_sd_img2img(comps: LatentComponents, steps: int, strength: float) -> None:
    """No HunyuanDiT img2img pipeline exists; its rule is SD img2img's get_timesteps on HunyuanDiT's scheduler."""
    from diffusers import StableDiffusionImg2ImgPipeline

    sched = make_scheduler("default", comps.scheduler_config)
    FAMILY.set_timesteps(sched, steps, width=W, height=H)
    timesteps, n = StableDiffusionImg2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=sched), steps, strength,
                                                                "cpu")
    ours = FAMILY.init_steps(steps, strength)
    assert ours == n
    assert torch.equal(sched.timesteps[(steps - ours) * sched.order:], timesteps)


def test_scheduler_config_and_named_schedulers(comps: LatentComponents) -> None:
    """HunyuanDiT's DDPM v-prediction config drives every variance-preserving solver of the sampler."""
    cfg = comps.scheduler_config
    assert cfg["_class_name"] == "DDPMScheduler" and cfg["prediction_type"] == "v_prediction"
    x = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(3))
    extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=1.0)
    with torch.no_grad():
        cond = FAMILY.encode(comps, ZH)
        for name in ("default", "euler_a", "euler", "ddim", "dpmpp_2m", "unipc"):
            sched = make_scheduler(name, cfg)
            assert sched.config.prediction_type == "v_prediction", name
            FAMILY.set_timesteps(sched, 3, width=W, height=H)
            lat = x * sched.init_noise_sigma
            takes_gen = "generator" in inspect.signature(sched.step).parameters
            kwargs = {"generator": torch.Generator().manual_seed(0)} if takes_gen else {}
            for t in sched.timesteps:
                out = FAMILY.predict(comps, sched.scale_model_input(lat, t), t, cond, extra)
                lat = sched.step(out, t, lat, **kwargs).prev_sample
            assert torch.isfinite(lat).all(), name


# ---------------------------------------------------------------------------------------------- the latent loop


@pytest.mark.parametrize("text", [ZH, EN])
def test_denoise_latents_equals_the_pipeline(comps: LatentComponents, pipe, text: str) -> None:
    """txt2img with CFG through the sampler == HunyuanDiTPipeline(output_type="latent") on the same noise (DDIM:
    no step noise, so the whole trajectory is deterministic)."""
    from discolib.samplers.latent import LatentRequest, denoise_latents

    noise = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    request = LatentRequest(prompts=text, negative="模糊", width=W, height=H, steps=3, cfg_scale=5.0,
                            scheduler="ddim", noise=noise, seed=0)
    ours = denoise_latents(comps, request)
    pipe.scheduler = make_scheduler("ddim", comps.scheduler_config)
    with torch.no_grad():
        ref = pipe(prompt=text, negative_prompt="模糊", width=W, height=H, num_inference_steps=3, guidance_scale=5.0,
                   latents=noise.clone(), output_type="latent", use_resolution_binning=False).images
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("scheduler", ["default", "euler_a"])
def test_img2img_noising_is_add_noise_at_the_first_remaining_step(comps: LatentComponents, scheduler: str) -> None:
    """img2img (the render loop's warped frame): the init latents noised by the scheduler's own add_noise at the
    first timestep that SD img2img's rule keeps, then exactly the kept steps run."""
    from discolib.samplers.latent import LatentRequest, denoise_latents

    gen = torch.Generator().manual_seed(11)
    x0, noise = torch.randn(1, 4, H // 8, W // 8, generator=gen), torch.randn(1, 4, H // 8, W // 8, generator=gen)
    seen: list[dict[str, object]] = []
    request = LatentRequest(prompts=ZH, width=W, height=H, steps=5, strength=0.6, cfg_scale=3.0, scheduler=scheduler,
                            init_latents=x0, noise=noise, callback=seen.append)
    out = denoise_latents(comps, request)
    sched = make_scheduler(scheduler, comps.scheduler_config)
    FAMILY.set_timesteps(sched, 5, width=W, height=H)
    kept = sched.timesteps[(5 - FAMILY.init_steps(5, 0.6)) * sched.order:]
    assert [int(e["t"]) for e in seen] == [int(t) for t in kept] and len(kept) == 3
    assert torch.equal(seen[0]["x"], sched.add_noise(x0, noise, kept[:1]))
    assert out.shape == x0.shape and torch.isfinite(out).all()


def test_weighted_prompts_blend_embeds_and_or_masks(comps: LatentComponents) -> None:
    """A weighted blend of a Chinese and an English prompt: embeddings averaged by weight, masks OR-ed (integer)."""
    from discolib.samplers.latent import embed_conditioning

    zh, en = FAMILY.encode(comps, ZH), FAMILY.encode(comps, "a photo of a castle in the fog at night")
    mix = embed_conditioning(comps, [(ZH, 1.0), ("a photo of a castle in the fog at night", 3.0)])
    for k in ("prompt_embeds", "prompt_embeds_2"):
        torch.testing.assert_close(mix[k], 0.25 * zh[k] + 0.75 * en[k])
    for k in ("prompt_attention_mask", "prompt_attention_mask_2"):
        assert not mix[k].is_floating_point() and torch.equal(mix[k], torch.maximum(zh[k], en[k]))
        assert int(mix[k].sum()) == max(int(zh[k].sum()), int(en[k].sum()))
    extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=1.0)
    x = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.isfinite(FAMILY.predict(comps, x, torch.tensor(999), mix, extra)).all()


@pytest.mark.slow
def test_3d_animation_renders_with_tiny_hunyuandit(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    for k, v in {"models.latent_model": "tiny-hunyuandit", "image.steps": 3, "max_frames": 3, "make_video": False,
                 "image.width": W, "image.height": H,
                 "prompts.text_prompts": {"0": f"{ZH} --neg 模糊", "2": [f"{EN}:1", "夜晚的城堡:0.5"]}}.items():
        s.set(k, v)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert result.status == "done" and run.complete_frames() == [0, 1, 2]
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_on_device_with_text_encoders_offloaded(
    comps: LatentComponents, device: torch.device, dtype: torch.dtype, tol: dict[str, float]
) -> None:
    """The text encoders stay on the CPU (offload) while the transformer runs on ``device`` in ``dtype``: embeds
    arrive on the device in the transformer's dtype (masks integer), and one denoiser call agrees with float32 CPU."""
    if dtype == torch.float64:
        pytest.skip("the latent models run in float32, float16 or bfloat16 (models.dtype)")
    dc = load_latent_components("tiny-hunyuandit", device=device, dtype=dtype, offload_text_encoders=True)
    assert dc.pipe.text_encoder.device.type == "cpu" and dc.pipe.text_encoder_2.device.type == "cpu"
    assert dc.unet.device.type == device.type and dc.dtype == dtype
    with torch.no_grad():
        e = FAMILY.encode(dc, ZH)
        assert e["prompt_embeds"].device.type == device.type and e["prompt_embeds"].dtype == dtype
        assert not e["prompt_attention_mask_2"].is_floating_point()
        x = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(2))
        extra = FAMILY.prepare(dc, width=W, height=H, batch=1, cfg_scale=1.0)
        out = FAMILY.predict(dc, x.to(device), torch.tensor(999, device=device), e, extra)
        ref = FAMILY.predict(comps, x, torch.tensor(999), FAMILY.encode(comps, ZH),
                             FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=1.0))
    assert out.dtype == torch.float32 and out.device.type == device.type
    torch.testing.assert_close(out.cpu(), ref, **tol)
