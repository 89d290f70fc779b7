"""The random-weights fallback of the SDXL, SD 3.5 and Flux.1 presets (discolib.models.families.random).

Full-size architectures are checked on the meta device (shapes and parameter counts, nothing allocated); the
real forward passes run on the CPU with the toy widths of ``shrink=True``.
"""

from __future__ import annotations

import pytest
import torch

from discolib.errors import InputError
from discolib.models.archs import FAMILY_ARCHS
from discolib.models.families.random import SHRINK, arch_of, build_component, random_family_components
from discolib.models.latent import make_scheduler
from discolib.samplers.latent import LatentRequest, decode_latents, denoise_latents

CPU = torch.device("cpu")
META = torch.device("meta")

# preset -> (family, pipeline class, denoiser class, render size of its preset)
PRESETS = {
    "sdxl-turbo": ("sdxl", "StableDiffusionXLPipeline", "UNet2DConditionModel", 512),
    "sd3.5-medium": ("sd3", "StableDiffusion3Pipeline", "SD3Transformer2DModel", 1024),
    "flux-schnell": ("flux", "FluxPipeline", "FluxTransformer2DModel", 1024),
}
# The pipelines' prompt embeddings: SDXL's two CLIPs side by side (768 + 1280); SD 3.5's 77 CLIP tokens then its
# pipeline's 256 T5 tokens, in T5-XXL's width; Flux schnell's 256 T5 tokens (dev: 512).
PROMPT_EMBEDS = {"sdxl-turbo": (1, 77, 2048), "sd3.5-medium": (1, 77 + 256, 4096), "flux-schnell": (1, 256, 4096)}

# Parameter counts of the published models (diffusers / transformers classes built from their configs).
PUBLISHED_PARAMS = {
    ("sdxl-turbo", "unet"): 2_567_463_684,  # SDXL's UNet, "2.6B"
    ("sdxl-turbo", "text_encoder"): 123_060_480,  # CLIP ViT-L text model
    ("sdxl-turbo", "text_encoder_2"): 694_659_840,  # OpenCLIP ViT-bigG text model with projection
    ("flux-schnell", "transformer"): 11_891_178_560,  # FLUX.1's 11.9B (dev's guidance embedder is 10.2M more)
    ("flux-schnell", "text_encoder_2"): 4_762_310_656,  # T5 v1.1 XXL encoder
    ("sd3.5-medium", "vae"): 83_819_683,
    ("sd3.5-medium", "text_encoder"): 123_650_304,  # CLIP ViT-L with projection
    ("sd3.5-medium", "text_encoder_3"): 4_762_310_656,
}


def test_every_preset_has_its_family_and_pipeline():
    assert set(FAMILY_ARCHS) == set(PRESETS)
    for preset, (family, pipeline, denoiser, _) in PRESETS.items():
        arch = FAMILY_ARCHS[preset]
        assert arch["family"] == family
        assert arch["pipeline"]["class"] == pipeline
        assert arch["components"][arch["denoiser"]]["class"] == denoiser
        assert set(SHRINK[family]) - {"preview_vae"} <= set(arch["components"])


@pytest.mark.parametrize("preset", list(PRESETS))
def test_full_size_on_meta_is_wired_like_the_real_model(preset):
    """The full-size pipeline assembled on the meta device: parameter counts as published, and a prompt encoded and
    one denoiser call and a VAE decode at the preset's size give the shapes the sampler expects."""
    family, pipeline, _, size = PRESETS[preset]
    comps = random_family_components(preset, device=META, dtype=torch.bfloat16, fast_vae=True)
    assert type(comps.pipe).__name__ == pipeline and comps.family == family
    assert comps.name == f"{preset} (random weights)"
    modules = {n: getattr(comps.pipe, n) for n in FAMILY_ARCHS[preset]["components"]}
    for name, module in modules.items():
        tensors = [*module.parameters(), *module.buffers()]
        assert {t.device.type for t in tensors} == {"meta"}, name  # nothing allocated
        assert {t.dtype for t in module.parameters()} == {torch.bfloat16}, name
        if (preset, name) in PUBLISHED_PARAMS:
            assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMS[(preset, name)], name
    if preset == "sd3.5-medium":
        # "2.5B": the MMDiT-X's parameters and its 384x384 position table (a buffer).
        n = sum(t.numel() for t in (*comps.unet.parameters(), *comps.unet.buffers()))
        assert 2.4e9 < n < 2.5e9
    # Text encoders keep the real vocabularies; the tiny tokenizers' ids fit inside.
    for enc_name in comps.family_obj.text_encoders:
        enc = getattr(comps.pipe, enc_name)
        tok = getattr(comps.pipe, enc_name.replace("text_encoder", "tokenizer"))
        real = FAMILY_ARCHS[preset]["components"][enc_name]["config"]["vocab_size"]
        assert enc.config.vocab_size == real and len(tok) < real

    fam = comps.family_obj
    embeds = fam.encode(comps, "a castle in fog")
    assert embeds["prompt_embeds"].shape == PROMPT_EMBEDS[preset]
    extra = fam.prepare(comps, width=size, height=size, batch=1, cfg_scale=1.0)
    x = torch.zeros(1, comps.latent_channels, size // 8, size // 8, device=META)
    with torch.inference_mode():
        out = fam.predict(comps, x, torch.tensor(999.0, device=META), embeds, extra)
        image = comps.vae.decode(x.to(torch.bfloat16)).sample
        preview = comps.preview_vae.decode(x.to(torch.bfloat16)).sample
    assert out.shape == x.shape and out.dtype == torch.float32
    assert image.shape == preview.shape == (1, 3, size, size)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_shrunk_components_sample_through_the_latent_loop(preset):
    """Toy widths on the CPU: the latent sampler's txt2img runs on the components and their pipeline."""
    family = PRESETS[preset][0]
    comps = random_family_components(preset, device=CPU, dtype=torch.float32, fast_vae=True, shrink=True)
    assert comps.family == family and comps.device == CPU
    # The preset's own scheduler ("default"): Euler ancestral for SDXL-Turbo, flow-match Euler for SD 3.5 and Flux.
    scheduler = make_scheduler("default", comps.scheduler_config)
    assert type(scheduler).__name__ == FAMILY_ARCHS[preset]["scheduler"]["_class_name"]
    request = LatentRequest(prompts="a castle in fog", width=64, height=64, steps=2, cfg_scale=0.0,
                            scheduler="default", seed=3)
    latents = denoise_latents(comps, request)
    assert latents.shape == (1, comps.latent_channels, 8, 8) and torch.isfinite(latents).all()
    images = decode_latents(comps, latents, use_preview_vae=True)
    assert images.shape == (1, 3, 64, 64)
    # The same seed gives the same latents: the weights and the sampler are deterministic.
    assert torch.equal(denoise_latents(comps, request), latents)


def test_weights_are_fixed_and_leave_the_callers_state_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    before = torch.get_default_dtype()
    a = random_family_components("flux-schnell", device=CPU, dtype=torch.float32, fast_vae=False, shrink=True)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    assert torch.get_default_dtype() == before
    b = random_family_components("flux-schnell", device=CPU, dtype=torch.float32, fast_vae=False, shrink=True)
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        wa, wb = _weights(getattr(a.pipe, name)), _weights(getattr(b.pipe, name))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    # Not all zeros or constants: a real random initialisation; T5's input embeddings tied as in the real model.
    assert a.unet.x_embedder.weight.std() > 0
    assert a.pipe.text_encoder_2.encoder.embed_tokens.weight is a.pipe.text_encoder_2.shared.weight


def test_built_in_the_requested_dtype():
    comps = random_family_components("sdxl-turbo", device=CPU, dtype=torch.bfloat16, fast_vae=True, shrink=True)
    for module in (comps.unet, comps.vae, comps.pipe.text_encoder, comps.pipe.text_encoder_2, comps.preview_vae):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32


def test_t5_off_for_sd3_and_refused_for_flux():
    comps = random_family_components("sd3.5-medium", device=CPU, dtype=torch.float32, fast_vae=False, t5=False,
                                     shrink=True)
    assert comps.pipe.text_encoder_3 is None and comps.pipe.tokenizer_3 is None
    # Without T5 the pipeline pads with zeros: 77 CLIP + 256 zero tokens, as diffusers does.
    assert comps.family_obj.encode(comps, "fog")["prompt_embeds"].shape[1] == 77 + 256
    with pytest.raises(InputError, match="text_encoder_t5"):
        random_family_components("flux-schnell", device=CPU, dtype=torch.float32, fast_vae=False, t5=False,
                                 shrink=True)


def test_offloaded_text_encoders_are_built_on_the_cpu():
    comps = random_family_components("flux-schnell", device=META, dtype=torch.bfloat16, fast_vae=False,
                                     offload_text_encoders=True, shrink=True)
    assert comps.device == META
    assert comps.pipe.text_encoder.device == CPU and comps.pipe.text_encoder_2.device == CPU


def test_unknown_preset_is_an_input_error():
    with pytest.raises(InputError, match="sd-9"):
        arch_of("sd-9")
    with pytest.raises(InputError, match="NoSuchModel"):
        build_component({"class": "NoSuchModel", "config": {}}, device=META, dtype=torch.float32)


def test_load_latent_falls_back_to_the_family_architecture_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loader's wiring: weights unavailable (offline, not cached) -> the family's random architecture, through
    # the same finishing step as real weights (here shrunk, so the test stays small).
    import functools

    from discolib.models import load as load_mod
    from discolib.models.families.random import random_family_components

    monkeypatch.setattr(load_mod, "random_family_components", functools.partial(random_family_components, shrink=True))
    with pytest.warns(load_mod.RandomWeightsWarning, match="sdxl-turbo"):
        comps = load_mod.load_latent("sdxl-turbo", torch.device("cpu"), torch.float32, random_ok=True, vae_tiling=True)
    assert comps.family == "sdxl" and comps.pipe is not None and comps.vae.use_tiling
    assert not any(p.requires_grad for p in comps.unet.parameters())
