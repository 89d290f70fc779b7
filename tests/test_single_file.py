"""Single-file checkpoints (one ``.safetensors`` as model sites ship them): round trips with tiny models.

Each tiny diffusers model is written back in its ORIGINAL key format (:mod:`ldm_format`, the inverse of diffusers'
converters), detected with :func:`detect_single_file_family`, loaded with :func:`load_single_file_pipeline` (diffusers'
``from_single_file`` converting the keys forward) and compared tensor by tensor with the model it came from.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # why: the ldm_format helper module beside this file

import diffusers  # noqa: E402
import ldm_format as fmt  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from discolib.models.latent import (  # noqa: E402
    LatentModelError,
    LatentModelUnavailable,
    tiny_family_folder,
    tiny_latent_folder,
)
from discolib.models.single_file import (  # noqa: E402
    default_single_file_config,
    detect_single_file_family,
    inspect_single_file,
    is_single_file,
    load_single_file,
    load_single_file_pipeline,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Tiny models on one thread (see conftest)."""


def _assert_same(a: torch.nn.Module, b: torch.nn.Module, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), f"{what}: keys differ: {sorted(sa.keys() ^ sb.keys())[:5]}"
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not bad, f"{what}: {len(bad)} tensors differ, e.g. {bad[:3]}"


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


_cache: dict[str, tuple[Path, Any]] = {}


def _tiny(family: str) -> tuple[Path, Any]:
    """The tiny family folder and its pipeline loaded with from_pretrained (once per session)."""
    if family not in _cache:
        folder = tiny_latent_folder() if family == "sd" else tiny_family_folder(family)
        cls = {"sd": diffusers.StableDiffusionPipeline, "sdxl": diffusers.StableDiffusionXLPipeline,
               "sd3": diffusers.StableDiffusion3Pipeline, "flux": diffusers.FluxPipeline}[family]
        _cache[family] = folder, cls.from_pretrained(folder)
    return _cache[family]


def _sd_file(path: Path, pipe: Any) -> Path:
    return fmt.write(
        path,
        fmt.prefixed("model.diffusion_model.", fmt.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))),
        fmt.prefixed("first_stage_model.", fmt.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))),
        fmt.prefixed("cond_stage_model.", fmt.clip_to_ldm(pipe.text_encoder.state_dict())),
    )


# ---------------------------------------------------------------------------------------------------------- SD 1.x


def test_sd_round_trip(tmp_path: Path) -> None:
    folder, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "tiny-sd.safetensors", pipe)

    info = inspect_single_file(path)
    assert info.family == detect_single_file_family(path) == "sd"
    assert info.components == {"unet", "vae", "text_encoder"} and info.layout == "original"
    # Tiny: diffusers' own inference only guesses ("v1" is its fallback), so the key checks decide.
    assert info.model_type == ""
    assert default_single_file_config(path) == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert is_single_file(path) and is_single_file("x.CKPT") and not is_single_file(folder)

    loaded = load_single_file_pipeline(path, "sd", config=str(folder), torch_dtype=torch.float32)
    assert type(loaded) is diffusers.StableDiffusionPipeline
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)
    assert dict(loaded.scheduler.config) == dict(pipe.scheduler.config)
    assert loaded.tokenizer("a castle").input_ids == pipe.tokenizer("a castle").input_ids


def test_sd_unet_only_file(tmp_path: Path) -> None:
    """A file with the UNet alone (as some fine-tune sites ship them): the rest comes from the config folder."""
    folder, pipe = _tiny("sd")
    path = fmt.write(tmp_path / "tiny-sd-unet.safetensors", fmt.prefixed(
        "model.diffusion_model.", fmt.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))))
    info = inspect_single_file(path)
    assert (info.family, info.components) == ("sd", {"unet"})
    loaded = load_single_file_pipeline(path, "sd", config=str(folder))
    for name in ("unet", "vae", "text_encoder"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)


def test_sd_file_of_another_family_is_refused(tmp_path: Path) -> None:
    folder, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "tiny-sd.safetensors", pipe)
    with pytest.raises(LatentModelError) as err:
        load_single_file_pipeline(path, "sdxl", config=str(folder))
    assert "Stable Diffusion 1.x/2.x" in _one_line(err) and "'sdxl'" in str(err.value)


def test_config_must_be_a_diffusers_folder_or_hub_id(tmp_path: Path) -> None:
    _, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "tiny-sd.safetensors", pipe)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentModelError, match="no model_index.json") as err:
        load_single_file_pipeline(path, "sd", config=str(tmp_path / "empty"))
    _one_line(err)
    with pytest.raises(LatentModelError, match="neither a local diffusers model folder nor a hub id"):
        load_single_file_pipeline(path, "sd", config="not a hub id")


def test_offline_hub_config_not_cached_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "tiny-sd.safetensors", pipe)
    with pytest.raises(LatentModelUnavailable) as err:
        load_single_file_pipeline(path, "sd", config="discolib-tests/no-such-model")
    assert err.value.reason == "offline"
    assert "discolib-tests/no-such-model" in _one_line(err) and "HF_HUB_OFFLINE" in str(err.value)


# ---------------------------------------------------------------------------------------------------------- SDXL


def _sdxl_with_distinct_text_widths(tmp: Path) -> tuple[Path, Any]:
    """The tiny SDXL folder, or (when its two CLIPs are equally wide) a copy whose second CLIP is 16 wide.

    diffusers 0.42 (``create_diffusers_clip_model_from_ldm``) tells SDXL's two text encoders apart in a single file
    by their position-embedding width, as real SDXL's are (768 vs 1280); two equally wide tiny CLIPs would both be
    read from ``conditioner.embedders.0``.
    """
    folder, pipe = _tiny("sdxl")
    if pipe.text_encoder.config.hidden_size != pipe.text_encoder_2.config.hidden_size:
        return folder, pipe
    from transformers import CLIPTextModelWithProjection

    from discolib.ops import seeded

    te_cfg = pipe.text_encoder_2.config.to_dict()
    te_cfg.update(hidden_size=16, projection_dim=16)
    unet_cfg = dict(pipe.unet.config)
    unet_cfg.update(
        cross_attention_dim=pipe.text_encoder.config.hidden_size + 16,
        projection_class_embeddings_input_dim=6 * unet_cfg["addition_time_embed_dim"] + 16,
    )
    with seeded(0):
        unet = diffusers.UNet2DConditionModel.from_config(unet_cfg)
        torch.manual_seed(1)
        te2 = CLIPTextModelWithProjection(type(pipe.text_encoder_2.config).from_dict(te_cfg))
    variant = diffusers.StableDiffusionXLPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, text_encoder_2=te2, tokenizer=pipe.tokenizer,
        tokenizer_2=pipe.tokenizer_2, unet=unet, scheduler=pipe.scheduler,
    )
    out = tmp / "tiny-sdxl-distinct-widths"
    variant.save_pretrained(out)
    return out, variant


def test_sdxl_round_trip(tmp_path: Path) -> None:
    folder, pipe = _sdxl_with_distinct_text_widths(tmp_path)
    path = fmt.write(
        tmp_path / "tiny-sdxl.safetensors",
        fmt.prefixed("model.diffusion_model.", fmt.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))),
        fmt.prefixed("first_stage_model.", fmt.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))),
        fmt.prefixed("conditioner.embedders.0.", fmt.clip_to_ldm(pipe.text_encoder.state_dict())),
        fmt.prefixed("conditioner.embedders.1.model.", fmt.clip_to_open_clip(pipe.text_encoder_2.state_dict())),
    )
    info = inspect_single_file(path)
    assert info.family == "sdxl"
    assert info.components == {"unet", "vae", "text_encoder", "text_encoder_2"}
    assert info.default_config == "stabilityai/stable-diffusion-xl-base-1.0"

    loaded = load_single_file_pipeline(path, "sdxl", config=str(folder))
    assert type(loaded) is diffusers.StableDiffusionXLPipeline
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)


# ---------------------------------------------------------------------------------------------------------- SD 3.5


def test_sd3_round_trip_transformer_and_vae(tmp_path: Path) -> None:
    """As SD 3.5's official files: MMDiT + VAE in one file, the three text encoders from the config folder."""
    folder, pipe = _tiny("sd3")
    path = fmt.write(
        tmp_path / "tiny-sd3.safetensors",
        fmt.prefixed("model.diffusion_model.", fmt.sd3_to_original(pipe.transformer.state_dict())),
        fmt.prefixed("first_stage_model.", fmt.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))),
    )
    info = inspect_single_file(path)
    assert info.family == detect_single_file_family(path) == "sd3"
    assert info.components == {"transformer", "vae"}
    assert info.default_config == "stabilityai/stable-diffusion-3.5-medium"

    loaded = load_single_file_pipeline(path, "sd3", config=str(folder))
    assert type(loaded) is diffusers.StableDiffusion3Pipeline
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)


def test_sd3_transformer_only_without_t5(tmp_path: Path) -> None:
    folder, pipe = _tiny("sd3")
    path = fmt.write(tmp_path / "tiny-sd3-mmdit.safetensors", fmt.sd3_to_original(pipe.transformer.state_dict()))
    info = inspect_single_file(path)
    assert (info.family, info.components) == ("sd3", {"transformer"})

    family, loaded = load_single_file(path, config=str(folder), t5=False)  # the family's own T5-free kwargs
    assert family == "sd3" and loaded.text_encoder_3 is None and loaded.tokenizer_3 is None
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)


# ---------------------------------------------------------------------------------------------------------- Flux.1


def _flux_bfl_file(tmp_path: Path) -> tuple[Path, Path, Any]:
    folder, pipe = _tiny("flux")
    path = fmt.write(tmp_path / "tiny-flux1.safetensors", fmt.flux_to_bfl(pipe.transformer.state_dict()))
    return path, folder, pipe


def test_flux_bfl_file_is_detected(tmp_path: Path) -> None:
    path, _, pipe = _flux_bfl_file(tmp_path)
    info = inspect_single_file(path)
    # diffusers' own inference recognises Flux at any size; dev has the guidance embedding, schnell has not.
    expected = "flux-dev" if pipe.transformer.config.guidance_embeds else "flux-schnell"
    assert (info.family, info.model_type, info.components) == ("flux", expected, {"transformer"})
    assert info.default_config == f"black-forest-labs/FLUX.1-{expected.split('-')[1]}"


def test_flux_bfl_round_trip(tmp_path: Path) -> None:
    path, folder, pipe = _flux_bfl_file(tmp_path)
    inner = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    if inner != 3072:
        # The message of what happens instead is itself checked: one line, naming the file and the config.
        with pytest.raises(LatentModelError) as err:
            load_single_file_pipeline(path, "flux", config=str(folder))
        assert path.name in _one_line(err) and "split" in str(err.value)
        pytest.skip(
            "diffusers 0.42's convert_flux_transformer_checkpoint_to_diffusers hardcodes inner_dim=3072 and "
            f"mlp_ratio=4 to split single_blocks.N.linear1, so a tiny Flux (inner dim {inner}) cannot be read back "
            "from Black Forest Labs' format; the diffusers-layout transformer file is round-tripped instead"
        )
    loaded = load_single_file_pipeline(path, "flux", config=str(folder))
    _assert_same(pipe.transformer, loaded.transformer, "transformer")


def test_flux_transformer_only_diffusers_layout_round_trip(tmp_path: Path) -> None:
    """A transformer saved with diffusers' names in one file: transformer from the file, the rest from config."""
    folder, pipe = _tiny("flux")
    path = fmt.write(tmp_path / "tiny-flux-transformer.safetensors", pipe.transformer.state_dict())
    info = inspect_single_file(path)
    assert (info.family, info.layout, info.components) == ("flux", "diffusers", {"transformer"})

    loaded = load_single_file_pipeline(path, "flux", config=str(folder))
    assert type(loaded) is diffusers.FluxPipeline
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        _assert_same(getattr(pipe, name), getattr(loaded, name), name)
    with pytest.raises(LatentModelError, match="T5") as err:  # Flux cannot go without its T5
        load_single_file(path, config=str(folder), t5=False)
    assert path.name in _one_line(err)


def test_load_latent_components_from_a_single_file(tmp_path: Path) -> None:
    """The real loading path: a .safetensors source with ``single_file_config`` gives the family's components."""
    from discolib.models.latent import load_latent_components

    folder, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "tiny-sd.safetensors", pipe)
    comps = load_latent_components(path, single_file_config=str(folder))
    assert comps.family == "sd"
    _assert_same(pipe.unet, comps.unet, "unet")
    _assert_same(pipe.vae, comps.vae, "vae")
    _assert_same(pipe.text_encoder, comps.text_encoder, "text_encoder")
    with pytest.raises(LatentModelError, match="pickle"):
        (tmp_path / "model.ckpt").write_bytes(b"not read")
        load_latent_components(tmp_path / "model.ckpt")


# ---------------------------------------------------------------------------------------------------------- refusals


def test_pickled_checkpoint_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, ckpt)

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must never be called on a user's checkpoint")

    monkeypatch.setattr(torch, "load", no_load)
    for name in ("model.ckpt", "model.pt", "model.pth"):
        target = tmp_path / name
        if not target.exists():
            target.write_bytes(ckpt.read_bytes())
        with pytest.raises(LatentModelError) as err:
            detect_single_file_family(target)
        assert ".safetensors" in _one_line(err) and "pickle" in str(err.value) and name in str(err.value)
        with pytest.raises(LatentModelError):
            load_single_file_pipeline(target, "sd", config=str(tmp_path))


def test_truncated_file(tmp_path: Path) -> None:
    _, pipe = _tiny("sd")
    path = _sd_file(tmp_path / "cut.safetensors", pipe)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LatentModelError) as err:
        detect_single_file_family(path)
    assert "cut.safetensors" in _one_line(err) and "not a readable .safetensors" in str(err.value)
    (tmp_path / "tiny.safetensors").write_bytes(b"\x08\x00")
    with pytest.raises(LatentModelError, match="not a readable"):
        detect_single_file_family(tmp_path / "tiny.safetensors")
    with pytest.raises(LatentModelError, match="does not exist"):
        detect_single_file_family(tmp_path / "missing.safetensors")


def _keys_file(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


@pytest.mark.parametrize(
    ("shapes", "words"),
    [
        # Wan 2.1 1.3B (video): diffusers infers "wan-t2v-1.3B" from the patch embedding's width.
        ({"model.diffusion_model.head.modulation": (1, 2, 4),
          "model.diffusion_model.patch_embedding.weight": (1536, 1, 1, 1, 1)}, ("'wan-t2v-1.3B'", "video model")),
        ({"control_model.time_embed.0.weight": (4, 4)}, ("'controlnet'", "ControlNet")),
        ({"conditioner.embedders.0.model.text_projection": (4, 4),
          "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3)}, ("SDXL refiner",)),
        ({"model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3), "model.diffusion_model.out.2.weight": (4,),
          "model.diffusion_model.encoder_hid_proj.weight": (4, 8)}, ("Kolors", "diffusers folder or hub id")),
        ({"mlp_t5.0.weight": (4, 4), "blocks.0.attn1.q_proj.weight": (4, 4)},
         ("HunyuanDiT", "diffusers folder or hub id")),
        ({"encoder.layer.0.weight": (2,), "lm_head.weight": (2, 2)}, ("first keys: encoder.layer.0.weight",)),
        ({"conv_in.weight": (4, 4, 3, 3), "down_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3)},
         ("diffusers' layout", "unet/")),
    ],
    ids=["video", "controlnet", "sdxl-refiner", "kolors", "hunyuandit", "unknown", "diffusers-unet"],
)
def test_unsupported_checkpoint_named_in_one_line(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], words: tuple[str, ...]
) -> None:
    path = _keys_file(tmp_path / "other.safetensors", shapes)
    with pytest.raises(LatentModelError) as err:
        detect_single_file_family(path)
    text = _one_line(err)
    assert "other.safetensors" in text
    for word in words:
        assert word in text
