"""The Kolors family on tiny components (a tiny ChatGLM on a tiny SentencePiece tokenizer): detection, Chinese and
English prompts and UNet calls bit-equal to diffusers' KolorsPipeline built from the same files, img2img noising as
KolorsImg2ImgPipeline's, the latent loop end to end, and a 3D render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("sentencepiece", reason="Kolors' ChatGLM tokenizer needs sentencepiece")

from discolib.models.families import cat_embeds, detect_family, family_of_config, family_of_index  # noqa: E402
from discolib.models.families.kolors import (  # noqa: E402
    FAMILY,
    MAX_SEQUENCE_LENGTH,
    tiny_sentencepiece_model,
    write_tiny_chatglm_tokenizer,
)
from discolib.models.families.sdxl import FAMILY as SDXL  # noqa: E402
from discolib.models.latent import (  # noqa: E402
    LatentComponents,
    load_latent_components,
    make_scheduler,
    tiny_family_folder,
)

W, H = 64, 48
ZH = "雾中的城堡"
EN = "a castle in the fog"



@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def folder() -> Path:
    return tiny_family_folder("kolors")


@pytest.fixture(scope="module")
def comps(folder: Path) -> LatentComponents:
    c = load_latent_components("tiny-kolors")
    assert c.family == "kolors" and c.family_obj is FAMILY
    return c


@pytest.fixture(scope="module")
def pipe(folder: Path) -> Any:
    """KolorsPipeline loaded on its own from the tiny folder (not the one inside ``comps``)."""
    from diffusers import KolorsPipeline

    p = KolorsPipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


# ---------------------------------------------------------------------------------------------- tokenizer


def test_tiny_tokenizer_is_deterministic_and_lossless(tmp_path: Path) -> None:
    """The same bytes every time; Chinese, English, Japanese, Arabic and emoji all round-trip (byte fallback), and
    ChatGLM's prefix and left padding are there."""
    from diffusers.pipelines.kolors import ChatGLMTokenizer

    assert tiny_sentencepiece_model() == tiny_sentencepiece_model()
    tok = ChatGLMTokenizer.from_pretrained(str(write_tiny_chatglm_tokenizer(tmp_path / "tok")))
    assert (tmp_path / "tok" / "tokenizer.model").read_bytes() == tiny_sentencepiece_model()
    for text in (ZH, EN, "霧の中の城", "قلعة في الضباب", "castle 🏰 at night"):
        ids = tok(text)["input_ids"]
        assert ids[:2] == [tok.get_command("[gMASK]"), tok.get_command("sop")]
        assert tok.decode(ids[2:]) == text
        assert tok.unk_token_id not in ids[2:]
    assert tok.tokenize(EN)[:2] == ["▁a", "▁castle"]  # whole words are pieces: the unigram model segments
    enc = tok(ZH, padding="max_length", max_length=16, return_tensors="pt")
    assert enc["input_ids"].shape == (1, 16) and enc["attention_mask"][0, 0] == 0  # padded on the left


# ---------------------------------------------------------------------------------------------- detection


def test_detected_from_the_index_and_from_the_unet_config(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "KolorsPipeline"
    assert index["text_encoder"][1] == "ChatGLMModel" and index["tokenizer"][1] == "ChatGLMTokenizer"
    assert detect_family(folder) is FAMILY
    assert family_of_index("KolorsImg2ImgPipeline") is FAMILY
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
    assert unet_cfg["encoder_hid_dim_type"] == "text_proj"
    assert family_of_config(unet_cfg) is FAMILY and not SDXL.matches_denoiser(unet_cfg)
    assert not FAMILY.matches_denoiser({**unet_cfg, "encoder_hid_dim_type": None})
    assert FAMILY.text_encoders == ("text_encoder",)


# ---------------------------------------------------------------------------------------------- prompts


@pytest.mark.parametrize(("text", "negative"), [(ZH, ""), (EN, "模糊"), (f"{ZH}, {EN}", "blurry")])
def test_encode_and_negative_equal_the_pipelines_encode_prompt(
    comps: LatentComponents, pipe: Any, text: str, negative: str
) -> None:
    with torch.no_grad():
        pe, ne, pooled, npooled = pipe.encode_prompt(
            text, device="cpu", do_classifier_free_guidance=True, negative_prompt=negative or None
        )
        cond, uncond = FAMILY.encode(comps, text), FAMILY.negative(comps, negative)
    hidden = comps.text_encoder.config.hidden_size
    assert cond["prompt_embeds"].shape == (1, MAX_SEQUENCE_LENGTH, hidden)
    assert cond["pooled_prompt_embeds"].shape == (1, hidden)
    assert torch.equal(cond["prompt_embeds"], pe) and torch.equal(cond["pooled_prompt_embeds"], pooled)
    assert torch.equal(uncond["prompt_embeds"], ne) and torch.equal(uncond["pooled_prompt_embeds"], npooled)


def test_chinese_and_english_prompts_give_different_embeddings(comps: LatentComponents) -> None:
    with torch.no_grad():
        zh, en = FAMILY.encode(comps, ZH), FAMILY.encode(comps, EN)
    for key in ("prompt_embeds", "pooled_prompt_embeds"):
        assert zh[key].isfinite().all() and en[key].isfinite().all()
        assert not torch.equal(zh[key], en[key])


# ---------------------------------------------------------------------------------------------- denoiser


def test_predict_equals_the_pipelines_unet_call(comps: LatentComponents, pipe: Any) -> None:
    """The UNet inputs and output of a real pipeline step (CFG on) == ``predict`` with our conditioning."""
    calls: list[tuple[tuple, dict, Any]] = []
    handle = pipe.unet.register_forward_hook(lambda _m, a, k, o: calls.append((a, k, o)), with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(ZH, negative_prompt="模糊", width=W, height=H, num_inference_steps=1, guidance_scale=5.0,
                 generator=torch.Generator().manual_seed(0), output_type="latent")
    finally:
        handle.remove()
    (args, kwargs, out), = calls
    x, t = args[0], args[1]
    embeds = cat_embeds(FAMILY.negative(comps, "模糊"), FAMILY.encode(comps, ZH))
    extra = FAMILY.prepare(comps, width=W, height=H, batch=1, cfg_scale=5.0)
    assert torch.equal(embeds["prompt_embeds"], kwargs["encoder_hidden_states"])
    assert torch.equal(embeds["pooled_prompt_embeds"], kwargs["added_cond_kwargs"]["text_embeds"])
    assert torch.equal(extra["time_ids"].expand(2, -1), kwargs["added_cond_kwargs"]["time_ids"])
    with torch.no_grad():
        ours = FAMILY.predict(comps, x, t, embeds, extra)
    assert ours.dtype == torch.float32 and ours.shape == x.shape
    assert torch.equal(ours, out[0])


# ---------------------------------------------------------------------------------------------- img2img


@pytest.mark.parametrize(("steps", "strength"), [(10, 0.55), (4, 0.3), (3, 1.0)])
def test_init_steps_equal_the_img2img_pipelines_get_timesteps(pipe: Any, steps: int, strength: float) -> None:
    from diffusers import KolorsImg2ImgPipeline

    img2img = KolorsImg2ImgPipeline(**pipe.components)
    img2img.scheduler.set_timesteps(steps, device="cpu")
    timesteps, n = img2img.get_timesteps(steps, strength, "cpu")
    assert FAMILY.init_steps(steps, strength) == n
    sched = make_scheduler("default", dict(pipe.scheduler.config))
    FAMILY.set_timesteps(sched, steps, width=W, height=H)
    assert torch.equal(sched.timesteps[(steps - n) * sched.order:], timesteps)


def test_img2img_noising_equals_the_img2img_pipeline(comps: LatentComponents, pipe: Any) -> None:
    """The sampler's first latents for an init == the pipeline's ``prepare_latents`` with the same generator."""
    from diffusers import KolorsImg2ImgPipeline

    from discolib.samplers.latent import LatentRequest, denoise_latents

    steps, strength, seed = 10, 0.55, 3
    x0 = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(11))
    img2img = KolorsImg2ImgPipeline(**pipe.components)
    img2img.scheduler.set_timesteps(steps, device="cpu")
    timesteps, _ = img2img.get_timesteps(steps, strength, "cpu")
    want = img2img.prepare_latents(x0, timesteps[:1], 1, 1, torch.float32, torch.device("cpu"),
                                   generator=torch.Generator().manual_seed(seed))
    seen: list[torch.Tensor] = []
    request = LatentRequest(prompts=ZH, width=W, height=H, steps=steps, cfg_scale=1.0, scheduler="default",
                            seed=seed, init_latents=x0, strength=strength,
                            callback=lambda info: seen.append(info["x"]) if info["i"] == 0 else None)
    denoise_latents(comps, request)
    assert torch.equal(seen[0], want)


# ---------------------------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("text", [ZH, EN])
def test_denoise_latents_equals_the_pipeline(comps: LatentComponents, pipe: Any, text: str) -> None:
    """txt2img with CFG and Kolors' Euler scheduler through the sampler == the pipeline's ``output_type="latent"``."""
    from discolib.samplers.latent import LatentRequest, denoise_latents

    noise = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    request = LatentRequest(prompts=text, negative="模糊", width=W, height=H, steps=3, cfg_scale=5.0,
                            scheduler="default", noise=noise)
    ours = denoise_latents(comps, request)
    with torch.no_grad():
        ref = pipe(text, negative_prompt="模糊", width=W, height=H, num_inference_steps=3, guidance_scale=5.0,
                   latents=noise.clone(), output_type="latent").images
    assert torch.equal(ours, ref)


@pytest.mark.slow
def test_3d_animation_renders_with_tiny_kolors(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "3D"), "tiny-latent")
    for k, v in {"models.latent_model": "tiny-kolors", "image.steps": 3, "max_frames": 3, "make_video": False,
                 "image.width": W, "image.height": H,
                 "prompts.text_prompts": {"0": f"{ZH} --neg 模糊", "2": f"{EN}:1, 夜晚的城堡:0.5"}}.items():
        s.set(k, v)
    result = render(s, out=tmp_path, progress=False)
    run = RunFolder.open(result.run_dir)
    assert result.status == "done" and run.complete_frames() == [0, 1, 2]
    frames = [np.asarray(Image.open(p)) for p in result.frames]
    assert all(f.shape == (H, W, 3) for f in frames)
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])
