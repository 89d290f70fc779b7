"""Latent diffusion sampler on the tiny offline preset: shapes, seeds, img2img, prompts, schedulers, hooks."""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

import pytest
import torch

from discolib.models.latent import (
    TINY_TOKENIZER_DIR,
    LatentComponents,
    LatentModelError,
    enable_fast_paths,
    load_latent_components,
    make_scheduler,
    scheduler_names,
    tiny_latent_folder,
    write_tiny_tokenizer,
)
from discolib.samplers import latent as latent_mod
from discolib.samplers.latent import (
    LatentCond,
    LatentRequest,
    LatentSettingError,
    LatentSizeWarning,
    decode_latents,
    embed_weighted,
    encode_image,
    encode_prompt,
    parse_weighted_prompts,
    sample_latent,
)

W = H = 64  # 8x8 latents


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def comps(one_thread: None) -> LatentComponents:
    return load_latent_components("tiny-latent", vae="tiny")


_ON_DEVICE: dict[tuple[str, torch.dtype], LatentComponents] = {}


@pytest.fixture
def dcomps(comps: LatentComponents, device: torch.device, dtype: torch.dtype) -> LatentComponents:
    """The tiny components on the parametrised device and dtype (the CPU float32 ones are ``comps``)."""
    if dtype == torch.float64:
        pytest.skip("the latent models run in float32, float16 or bfloat16 (models.dtype)")
    if device.type == "cpu" and dtype == torch.float32:
        return comps
    key = (str(device), dtype)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = load_latent_components("tiny-latent", device=device, dtype=dtype, vae="tiny")
    return _ON_DEVICE[key]


def run(comps: LatentComponents, **kw: object) -> torch.Tensor:
    args: dict[str, object] = dict(prompts="a castle", width=W, height=H, steps=3, cfg_scale=5.0, seed=0)
    args.update(kw)
    return sample_latent(comps, LatentRequest(**args))  # type: ignore[arg-type]


def init_images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    a = torch.rand(1, 3, H, W, generator=g)
    b = torch.linspace(0, 1, W).expand(1, 3, H, W).clone()
    return a, b


def test_txt2img_shape_and_range(dcomps: LatentComponents) -> None:
    comps = dcomps
    img = run(comps)
    assert img.shape == (1, 3, H, W) and img.dtype == torch.float32 and img.device.type == comps.device.type
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    assert img.std() > 0  # not a constant image
    batch = run(comps, width=48, batch_size=2, steps=2)
    assert batch.shape == (2, 3, H, 48)
    assert not torch.equal(batch[0], batch[1])  # each image of a batch has its own noise


def test_seeds_reproduce_and_differ(dcomps: LatentComponents) -> None:
    comps = dcomps
    a = run(comps, seed=3, scheduler="euler_a")  # ancestral: step noise must be seeded too
    b = run(comps, seed=3, scheduler="euler_a")
    c = run(comps, seed=4, scheduler="euler_a")
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-3
    g = run(comps, seed=torch.Generator().manual_seed(3), scheduler="euler_a")
    assert torch.equal(a, g)


def test_img2img_small_strength_keeps_init(dcomps: LatentComponents, tol: dict[str, float]) -> None:
    comps = dcomps
    init, _ = init_images()
    # The tiny VAE is random, so "the init image" after sampling means its VAE round trip.
    roundtrip = decode_latents(comps, encode_image(comps, init))
    zero = run(comps, init_image=init, strength=0.0, steps=50)
    torch.testing.assert_close(zero, roundtrip, **tol)
    small = run(comps, init_image=init, strength=0.02, steps=50)  # one real step at the lowest noise level
    full = run(comps, init_image=init, strength=1.0, steps=4)  # strength 1 = pure noise: few steps suffice
    d_small = (small - roundtrip).abs().mean()
    d_full = (full - roundtrip).abs().mean()
    assert d_small < 0.03
    assert d_small < 0.3 * d_full


def test_img2img_strength_one_ignores_init(dcomps: LatentComponents) -> None:
    comps = dcomps
    a, b = init_images()
    out_a = run(comps, init_image=a, strength=1.0)
    out_b = run(comps, init_image=b, strength=1.0)
    assert torch.equal(out_a, out_b)
    assert torch.equal(out_a, run(comps))  # and equals txt2img with that seed
    half_a = run(comps, init_image=a, strength=0.5, steps=4)
    half_b = run(comps, init_image=b, strength=0.5, steps=4)
    assert (half_a - half_b).abs().mean() > 1e-3


def test_init_latents_equal_encoded_init_image(dcomps: LatentComponents, tol: dict[str, float]) -> None:
    comps = dcomps
    init, _ = init_images()
    via_image = run(comps, init_image=init, strength=0.6, steps=5)
    via_latents = run(comps, init_latents=encode_image(comps, init), strength=0.6, steps=5)
    torch.testing.assert_close(via_image, via_latents, **tol)


def test_parse_weighted_prompts() -> None:
    assert parse_weighted_prompts(["a castle:2", "fog:-0.5", "a photo: sunset", ("sky", 3)]) == [
        ("a castle", 2.0),
        ("fog", -0.5),
        ("a photo: sunset", 1.0),
        ("sky", 3.0),
    ]
    assert parse_weighted_prompts("ruins:.5") == [("ruins", 0.5)]
    # One parser for every prompt (discolib.schedules.prompts.split_weight): a URL keeps its host:port.
    assert parse_weighted_prompts(["http://example.com:8080/a.png", "http://example.com:8080"]) == [
        ("http://example.com:8080/a.png", 1.0),
        ("http://example.com:8080", 1.0),
    ]
    assert parse_weighted_prompts(["http://example.com:8080/a.png:2"]) == [("http://example.com:8080/a.png", 2.0)]
    with pytest.raises(LatentSettingError, match="prompts.*sum to a positive"):
        parse_weighted_prompts(["a:1", "b:-1"])
    with pytest.raises(LatentSettingError, match="negative"):
        parse_weighted_prompts([], setting="negative")


def test_weighted_prompts_blend_and_change_output(comps: LatentComponents) -> None:
    e_castle, e_fog = encode_prompt(comps, "a castle"), encode_prompt(comps, "fog")
    blend = embed_weighted(comps, [("a castle", 2.0), ("fog", -0.5)])
    torch.testing.assert_close(blend, (2.0 * e_castle - 0.5 * e_fog) / 1.5)
    plain = run(comps, prompts=["a castle"])
    assert torch.equal(plain, run(comps, prompts=["a castle:3"]))  # only weight ratios matter
    weighted = run(comps, prompts=["a castle:2", "fog:-0.5"])
    assert (plain - weighted).abs().mean() > 1e-4


def test_negative_prompt_changes_output_only_with_cfg(comps: LatentComponents) -> None:
    base = run(comps, negative="")
    neg = run(comps, negative="fog")
    assert (base - neg).abs().mean() > 1e-4
    # cfg_scale <= 1 (sd-turbo style) runs no unconditional pass, so the negative prompt cannot matter.
    assert torch.equal(run(comps, cfg_scale=0.0, negative=""), run(comps, cfg_scale=0.0, negative="fog"))
    assert torch.equal(run(comps, cfg_scale=1.0), run(comps, cfg_scale=0.0))


def test_unknown_scheduler_lists_valid_names(comps: LatentComponents) -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'nope'") as info:
        run(comps, scheduler="nope")
    for name in ("euler_a", "euler", "dpmpp_2m", "ddim", "plms", "lcm", "heun"):
        assert name in str(info.value)


def test_scheduler_options(comps: LatentComponents) -> None:
    cfg = comps.scheduler_config
    dpm = make_scheduler("dpmpp_2m", cfg)
    assert type(dpm).__name__ == "DPMSolverMultistepScheduler" and dpm.config.algorithm_type == "dpmsolver++"
    assert type(make_scheduler("euler_a", cfg)).__name__ == "EulerAncestralDiscreteScheduler"
    assert make_scheduler("plms", cfg).config.skip_prk_steps
    # the model's noise schedule carries over to every solver
    assert make_scheduler("euler", cfg).config.beta_schedule == "scaled_linear"
    assert "lms" not in scheduler_names() or make_scheduler("lms", cfg) is not None


@pytest.mark.parametrize("name", [n for n in scheduler_names() if not n.startswith("flow_")])
def test_every_scheduler_runs_two_steps(dcomps: LatentComponents, name: str) -> None:
    comps = dcomps
    steps: list[int] = []
    img = run(comps, scheduler=name, steps=2, callback=lambda d: steps.append(int(d["i"])))  # type: ignore[call-overload]
    assert img.shape == (1, 3, H, W) and torch.isfinite(img).all()
    assert steps and steps == list(range(len(steps)))
    init, _ = init_images()
    img2img = run(comps, scheduler=name, steps=2, init_image=init, strength=0.5)
    assert img2img.shape == (1, 3, H, W) and torch.isfinite(img2img).all()


def test_wrong_init_size_warns_and_resizes(comps: LatentComponents) -> None:
    init = torch.rand(1, 3, 40, 56)
    with pytest.warns(LatentSizeWarning, match="resized"):
        out = run(comps, init_image=init, strength=0.5)
    assert out.shape == (1, 3, H, W)


def test_bad_settings_name_the_setting(comps: LatentComponents) -> None:
    with pytest.raises(LatentSettingError, match="width must be a positive multiple of 8"):
        run(comps, width=60)
    with pytest.raises(LatentSettingError, match="height"):
        run(comps, height=0)
    with pytest.raises(LatentSettingError, match="strength"):
        run(comps, init_image=torch.rand(1, 3, H, W), strength=1.5)
    with pytest.raises(LatentSettingError, match="init_image values"):
        run(comps, init_image=torch.rand(1, 3, H, W) * 255, strength=0.5)
    # A caller that guarantees the range (the render loop) skips the host read; the same init then runs.
    init = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run(comps, init_image=init, strength=0.5, check_init_range=False), run(comps, init_image=init, strength=0.5))
    with pytest.raises(LatentSettingError, match="noise must have shape"):
        run(comps, noise=torch.randn(1, 4, 4, 4))


def test_local_folder_missing_unet(tmp_path: Path) -> None:
    src = tiny_latent_folder()
    broken = tmp_path / "model"
    shutil.copytree(src, broken, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(LatentModelError, match=r"missing subfolder\(s\) unet/") as info:
        load_latent_components(broken)
    assert "text_encoder/" in str(info.value)  # the expected layout is spelled out
    with pytest.raises(LatentModelError, match="neither a preset"):
        load_latent_components(tmp_path / "does-not-exist")


def test_offline_hub_id_error_names_model() -> None:
    with pytest.raises(LatentModelError, match="nobody-here/no-such-model") as info:
        load_latent_components("nobody-here/no-such-model")
    assert "local folder" in str(info.value)


def test_lcm_lora_without_peft_is_a_clear_error() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        with pytest.raises(LatentModelError, match="peft"):
            load_latent_components("tiny-latent", lcm_lora="latent-consistency/lcm-lora-sdv1-5")
    else:
        pytest.skip("peft is installed: the missing-peft error cannot be exercised")


def test_lora_loads_and_fuses(tmp_path: Path) -> None:
    """A LoRA saved in diffusers' format loads through ``lcm_lora`` and is fused: outputs match the adapter model."""
    peft = pytest.importorskip("peft", reason="LoRA loading needs peft (diffusers' LoRA backend)")
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    base = load_latent_components("tiny-latent")
    adapted = load_latent_components("tiny-latent")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v"])
        adapted.unet.add_adapter(config)
    lora = convert_state_dict_to_diffusers(get_peft_model_state_dict(adapted.unet))
    StableDiffusionLoraLoaderMixin.save_lora_weights(tmp_path, unet_lora_layers=lora)
    fused = load_latent_components("tiny-latent", lcm_lora=str(tmp_path))
    x, emb, t = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32), torch.tensor(500)
    with torch.no_grad():
        want = adapted.unet(x, t, encoder_hidden_states=emb).sample
        got = fused.unet(x, t, encoder_hidden_states=emb).sample
        plain = base.unet(x, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert (plain - want).abs().max() > 1e-2  # the LoRA really changes the model
    assert fused.name.endswith("+lcm-lora")


def test_callback_every_step_with_previews(comps: LatentComponents) -> None:
    seen: list[dict[str, object]] = []
    run(comps, steps=4, callback=seen.append, preview_every=2)
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    for d in seen:
        assert {"i", "n", "t", "x", "denoised", "alpha_bar"} <= d.keys() and d["n"] == 4
        assert d["x"].shape == d["denoised"].shape == (1, 4, 8, 8)  # type: ignore[attr-defined]
    assert [d["i"] for d in seen if "preview" in d] == [0, 2, 3]
    preview = seen[0]["preview"]
    assert isinstance(preview, torch.Tensor) and preview.shape == (1, 3, H, W)
    assert 0 <= preview.min() and preview.max() <= 1
    # img2img runs only the last int(steps * strength) steps
    img2img: list[dict[str, object]] = []
    run(comps, steps=10, init_image=init_images()[0], strength=0.3, callback=img2img.append)
    assert len(img2img) == 3


def test_model_fn_wrapper_changes_output(dcomps: LatentComponents) -> None:
    comps = dcomps
    conds: list[LatentCond] = []

    def identity(fn):  # type: ignore[no-untyped-def]
        def wrapped(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
            conds.append(cond)
            return fn(x, t, cond)

        return wrapped

    def push(fn):  # type: ignore[no-untyped-def]
        return lambda x, t, cond: fn(x, t, cond) + 0.3

    base = run(comps)
    assert torch.equal(base, run(comps, model_fn_wrappers=[identity]))
    assert len(conds) == 3 and all(0 < float(c.alpha_bar) < 1 for c in conds)
    assert float(conds[0].alpha_bar) < float(conds[-1].alpha_bar)  # noise decreases along the loop
    pushed = run(comps, model_fn_wrappers=[identity, push])
    assert (base - pushed).abs().mean() > 1e-3


def test_denoised_matches_scheduler_x0(comps: LatentComponents) -> None:
    # Euler's own x0 estimate and ours (from the VP-scaled input and alpha_bar) must agree.
    seen: list[dict[str, object]] = []
    run(comps, scheduler="euler", steps=3, cfg_scale=0.0, callback=seen.append)
    sched = make_scheduler("euler", comps.scheduler_config)
    sched.set_timesteps(3)
    sigma = sched.sigmas[1]
    x, den = seen[1]["x"], seen[1]["denoised"]
    cond = encode_prompt(comps, "a castle")
    x_in = x / (sigma**2 + 1).sqrt()  # type: ignore[operator]
    eps = comps.unet(x_in, seen[1]["t"], encoder_hidden_states=cond).sample
    torch.testing.assert_close(den, x - sigma * eps, atol=1e-4, rtol=1e-4)


def test_text_embedding_cache(comps: LatentComponents) -> None:
    comps.embedding_cache.clear()
    calls: list[int] = []
    handle = comps.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        run(comps, prompts="a castle", negative="fog", steps=2)
        assert len(calls) == 2  # prompt + negative
        run(comps, prompts="a castle", negative="fog", steps=2, seed=5)
        run(comps, prompts=["a castle:2", "fog:-1"], steps=2, negative="fog")
        assert len(calls) == 2  # every text was already cached
    finally:
        handle.remove()


def test_no_host_reads_in_step_loop(dcomps: LatentComponents, monkeypatch: pytest.MonkeyPatch) -> None:
    """This module reads nothing back from tensors between the first model call and the end of the loop."""
    comps = dcomps
    this_file = Path(latent_mod.__file__).resolve()
    state = {"in_loop": False}
    reads: list[str] = []

    def spy(name: str):  # type: ignore[no-untyped-def]
        orig = getattr(torch.Tensor, name)

        def f(self: torch.Tensor, *a: object, **k: object) -> object:
            if state["in_loop"]:
                caller = traceback.extract_stack(limit=2)[0]
                if Path(caller.filename).resolve() == this_file:
                    reads.append(f"{name} at line {caller.lineno}")
            return orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, f)

    for name in ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        spy(name)

    def mark(fn):  # type: ignore[no-untyped-def]
        def wrapped(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
            state["in_loop"] = True
            return fn(x, t, cond)

        return wrapped

    for name in ("euler_a", "dpmpp_2m", "ddim"):
        state["in_loop"] = False
        latent_mod.denoise_latents(
            comps,
            LatentRequest(
                prompts="a castle", width=W, height=H, steps=3, cfg_scale=5.0, scheduler=name, model_fn_wrappers=[mark]
            ),
        )
    assert reads == []


def test_preview_vae_decode_and_sdpa(dcomps: LatentComponents) -> None:
    comps = dcomps
    assert comps.preview_vae is not None
    img = run(comps, decode_with_preview_vae=True)
    assert img.shape == (1, 3, H, W) and 0 <= img.min() and img.max() <= 1
    assert {type(p).__name__ for p in comps.unet.attn_processors.values()} == {"AttnProcessor2_0"}


def test_channels_last_matches_default() -> None:
    plain = load_latent_components("tiny-latent")
    fast = enable_fast_paths(load_latent_components("tiny-latent"), channels_last=True)
    assert fast.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(run(fast, steps=2), run(plain, steps=2), atol=1e-4, rtol=1e-4)


def test_tiny_tokenizer_files_are_reproducible(tmp_path: Path, comps: LatentComponents) -> None:
    write_tiny_tokenizer(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (TINY_TOKENIZER_DIR / name).read_bytes(), name
    tok = comps.tokenizer
    assert len(tok) == comps.text_encoder.config.vocab_size
    assert tok.tokenize("the castle") == ["the</w>", "castle</w>"]  # merges apply
    ids = tok("the castle").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


@pytest.mark.parametrize("name", [n for n in scheduler_names() if not n.startswith("flow_")])
@pytest.mark.parametrize("begin_step", [0, 3])
def test_host_noising_coefficients_equal_add_noise(comps: LatentComponents, name: str, begin_step: int) -> None:
    # img2img noises the init with coefficients probed on the host; they must reproduce diffusers' add_noise.
    from discolib.samplers.latent import _noising_coefficients

    sched = make_scheduler(name, comps.scheduler_config)
    sched.set_timesteps(8, device="cpu")
    begin = begin_step * sched.order
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin)
    t0 = sched.timesteps[begin : begin + 1]
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    keep, add = _noising_coefficients(sched, t0)
    expected = sched.add_noise(x0, noise, t0.repeat(2))
    torch.testing.assert_close(x0 * keep + noise * add, expected, rtol=1e-6, atol=1e-6)
    assert 0 < keep <= 1 and add > 0


def test_settings_know_the_scheduler_names_without_diffusers() -> None:
    """Settings validate scheduler names from a torch-free table; it must list exactly what latent_models builds."""
    from discolib.config.settings import latent_scheduler_names
    from discolib.models.latent import scheduler_names

    assert latent_scheduler_names() == scheduler_names()
