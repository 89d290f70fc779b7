"""The guided (Disco) sampler end to end with tiny models: determinism, guidance that works, bad inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from discolib.animation.policy import GUIDED_POLICY
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.io.images import load_image
from discolib.run.adapter import guided_config
from discolib.samplers.base import FrameRequest
from discolib.samplers.guided import (
    GuidedSampler,
    clip_guided,
    make_pixel_scheduler,
    mirror,
    sample_pixels,
    symmetry_steps,
)
from discolib.schedules.prompts import PromptSchedule


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


def tiny(**overrides: object) -> Settings:
    s = apply_preset(Settings.defaults("guided"), "tiny")
    for k, v in overrides.items():
        s.set(k, v)
    return s


def sampler_of(settings: Settings, device: torch.device | None = None, dtype: torch.dtype | None = None) -> GuidedSampler:
    """The guided sampler of ``settings``, on ``device`` with its models in ``dtype`` when given."""
    if dtype == torch.float64:
        pytest.skip("the guided models run in float32, float16 or bfloat16 (models.dtype)")
    config = guided_config(settings)
    if dtype is not None:
        config = dataclasses.replace(config, dtype=str(dtype).removeprefix("torch."))
    return GuidedSampler(config, device=device)


def prompts(*texts: str):  # noqa: ANN201
    return PromptSchedule.from_any({"0": list(texts)}).at(0)


def clip_similarity(sampler: GuidedSampler, image: torch.Tensor, text: str) -> float:
    """Mean cosine similarity of the whole image to the prompt over the tiny CLIP ensemble."""
    img = sampler.ensemble.encode_image(image)
    txt = sampler.ensemble.encode_text([text])
    return sum(float((a @ b.T).mean()) for a, b in zip(img, txt, strict=True)) / len(img)


@pytest.fixture(scope="module")
def unguided() -> GuidedSampler:
    return sampler_of(tiny(clip_guidance_scale=0, range_scale=0))


def test_same_seed_same_image(device: torch.device, dtype: torch.dtype) -> None:
    sampler = sampler_of(tiny(clip_guidance_scale=1000, steps=4), device, dtype)
    assert sampler.policy is GUIDED_POLICY and sampler.unet.dtype == dtype
    a = sampler(FrameRequest(seed=5, prompts=prompts("a lighthouse")))
    b = sampler(FrameRequest(seed=5, prompts=prompts("a lighthouse")))
    c = sampler(FrameRequest(seed=6, prompts=prompts("a lighthouse")))
    assert a.shape == (1, 3, 64, 64) and a.device.type == device.type and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_guidance_raises_clip_similarity(unguided: GuidedSampler) -> None:
    text = "a lighthouse in a storm"
    guided = sampler_of(tiny(clip_guidance_scale=50000, range_scale=0, clamp_grad=False))
    base = unguided(FrameRequest(seed=3, prompts=prompts(text)))
    steered = guided(FrameRequest(seed=3, prompts=prompts(text)))
    gain = clip_similarity(guided, steered, text) - clip_similarity(guided, base, text)
    assert gain > 0.02, f"guidance should raise the prompt similarity, gained {gain:.4f}"


def test_gradient_through_main_model_runs(unguided: GuidedSampler) -> None:
    # The random tiny UNet saturates its images, so similarity says little here; the exact arithmetic of the
    # main-model path is checked analytically below.
    guided = sampler_of(tiny(clip_guidance_scale=5000, use_secondary_model=False))
    a = guided(FrameRequest(seed=3, prompts=prompts("x")))
    b = unguided(FrameRequest(seed=3, prompts=prompts("x")))
    assert torch.isfinite(a).all() and not torch.equal(a, b)


class _QuadraticLoss:
    """A stand-in for ClipGuidance: L = c * sum(x_in ** 2), whose gradient is known in closed form."""

    def __init__(self, c: float) -> None:
        self.c = c

    def grad(self, x_in: torch.Tensor, step: float, generator: torch.Generator, *, pred_x0: torch.Tensor):  # noqa: ANN201
        return 2 * self.c * x_in.detach(), torch.zeros_like(pred_x0)


@pytest.mark.parametrize("t", [999, 500, 20])
def test_clip_guided_wrapper_matches_condition_score(t: int, device: torch.device) -> None:
    sched = make_pixel_scheduler("ddim")
    abar = float(sched.alphas_cumprod[t])
    sigma, sqrt_ab = (1 - abar) ** 0.5, abar**0.5

    def zero_eps(x: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + 0 * x  # differentiable zero: pred_x0 = x / sqrt(abar)

    x = torch.randn(1, 3, 8, 8, dtype=torch.float64).to(device)  # float64: the check is exact arithmetic
    wrapped = clip_guided(zero_eps, _QuadraticLoss(0.5), sched.alphas_cumprod, generator=torch.Generator(), clamp_max=None)
    eps = wrapped(x, torch.tensor(t))
    k = sigma / sqrt_ab + 1 - sigma  # x_in = k * x
    expected = sigma * (2 * 0.5 * k * k * x)  # eps - sigma * (-dL/dx)
    torch.testing.assert_close(eps, expected)


def test_negative_weight_pushes_away(unguided: GuidedSampler) -> None:
    text = "a lighthouse in a storm"
    away = sampler_of(tiny(clip_guidance_scale=50000, range_scale=0, clamp_grad=False))
    base = unguided(FrameRequest(seed=3, prompts=prompts(text)))
    pushed = away(FrameRequest(seed=3, prompts=prompts("a calm meadow:2", f"{text}:-1")))
    assert clip_similarity(away, pushed, text) < clip_similarity(away, base, text)


@pytest.mark.parametrize("sampler", ["ddim", "plms", "dpmpp"])
def test_every_pixel_scheduler_runs(sampler: str, device: torch.device, dtype: torch.dtype) -> None:
    gs = sampler_of(tiny(sampler=sampler, steps=4, clip_guidance_scale=1000), device, dtype)
    steps: list[int] = []
    out = gs(FrameRequest(seed=1, prompts=prompts("x"), callback=lambda info: steps.append(info["i"])))
    assert out.shape == (1, 3, 64, 64) and out.device.type == device.type and torch.isfinite(out).all()
    # PLMS runs one extra model call on its first step (diffusers' PNDM without Runge-Kutta warm-up).
    assert steps == list(range(len(steps))) and len(steps) in (4, 5)


def test_init_image_with_skip_steps(tmp_path: Path) -> None:
    path = tmp_path / "init.png"
    Image.new("RGB", (80, 48), (200, 30, 30)).save(path)
    # The sampler reads no init image itself (the render plan loads it once and passes it in the request).
    gs = sampler_of(tiny(init_image=str(tmp_path / "not-read.png"), skip_steps=8, clip_guidance_scale=0))
    with pytest.warns(UserWarning, match="resized to 64x64"):
        init = load_image(path, (64, 64), setting="guidance.init_image")
    out = gs(FrameRequest(seed=1, prompts=prompts("x"), init=init, skip_steps=8))
    # 8 of 10 steps skipped: the red init shows through.
    assert float(out[0, 0].mean()) > float(out[0, 1].mean()) + 0.2


def test_skip_steps_or_init_strength_and_the_configs_init_scale(tmp_path: Path) -> None:
    """A request's ``skip_steps`` is exactly what ``init_strength = skip_steps / steps`` gives; the init-loss scale
    is the config's unless the request brings one, and a start without an init uses the config's skip_steps."""
    gs = sampler_of(tiny(skip_steps=3, init_scale=1000, clip_guidance_scale=0, range_scale=0))
    init = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    exact = gs(FrameRequest(seed=2, prompts=prompts("x"), init=init, skip_steps=3))
    by_fraction = gs(FrameRequest(seed=2, prompts=prompts("x"), init=init, init_strength=3 / 10))
    assert torch.equal(exact, by_fraction)
    # skip_steps wins over init_strength; the config's init_scale is the request's default.
    assert torch.equal(exact, gs(FrameRequest(seed=2, prompts=prompts("x"), init=init, init_strength=0.9, skip_steps=3)))
    assert torch.equal(exact, gs(FrameRequest(seed=2, prompts=prompts("x"), init=init, skip_steps=3, init_scale=1000)))
    assert not torch.equal(exact, gs(FrameRequest(seed=2, prompts=prompts("x"), init=init, skip_steps=3, init_scale=0)))
    seen: list[int] = []
    gs(FrameRequest(seed=2, prompts=prompts("x"), callback=lambda info: seen.append(info["i"])))
    assert len(seen) == 10 - 3  # no init: the config's skip_steps from a noised zero image


def test_perlin_init_and_symmetry() -> None:
    gs = sampler_of(tiny(perlin_init=True, skip_steps=3, use_horizontal_symmetry=True, transformation_percent=[0.99]))
    out = gs(FrameRequest(seed=2, prompts=prompts("x")))
    assert torch.isfinite(out).all()
    x = torch.arange(16.0).view(1, 1, 2, 8)
    m = mirror(x, horizontal=True, vertical=False)
    assert torch.equal(m[..., 4:], x[..., :4].flip(-1))
    assert symmetry_steps(250, [0.09]) == {22}


def test_fuzzy_prompt_changes_result(unguided: GuidedSampler) -> None:
    plain = sampler_of(tiny(clip_guidance_scale=20000, clamp_grad=False))
    fuzzy = sampler_of(tiny(clip_guidance_scale=20000, clamp_grad=False, fuzzy_prompt=True, rand_mag=0.5))
    a = plain(FrameRequest(seed=4, prompts=prompts("x")))
    b = fuzzy(FrameRequest(seed=4, prompts=prompts("x")))
    assert not torch.equal(a, b)


def test_unknown_clip_model_lists_close_names() -> None:
    with pytest.raises(ValueError, match="Close names"):
        sampler_of(tiny(clip_models=["ViT-B/33"]))


def test_width_not_multiple_of_64_is_refused() -> None:
    s = tiny()
    s.image.width = 100
    with pytest.raises(ValueError, match="image.width: 100 is not a multiple of 64"):
        s.validate()


def test_weights_summing_to_zero_refused() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        Settings.from_dict({"prompts": {"text_prompts": {"0": ["a:1", "b:-1"]}}})


def test_steps_do_not_change_noise_schedule() -> None:
    # Without a step count make_pixel_scheduler keeps the 1000-step schedule; with one it is Disco's
    # `diffusion_steps = (1000 // steps) * steps` schedule (tests/test_disco_stepping.py).
    a, b = make_pixel_scheduler("ddim"), make_pixel_scheduler("ddim")
    a.set_timesteps(250)
    b.set_timesteps(300)
    assert torch.equal(a.alphas_cumprod, b.alphas_cumprod)
    assert a.config.num_train_timesteps == 1000 and int(a.timesteps[0]) == 996


@pytest.mark.parametrize("sampler", ["ddim", "plms", "dpmpp"])
@pytest.mark.parametrize("skip", [0, 1, 5])
def test_skip_steps_start_at_the_right_timestep(sampler: str, skip: int, device: torch.device) -> None:
    full = make_pixel_scheduler(sampler)
    full.set_timesteps(10)
    plain = sorted({int(t) for t in full.timesteps}, reverse=True)
    seen: list[int] = []
    sample_pixels(
        lambda x, _t: 0.1 * x, make_pixel_scheduler(sampler), shape=(1, 3, 8, 8), steps=10,
        generator=torch.Generator(device).manual_seed(0), device=device, init=torch.zeros(1, 3, 8, 8),
        skip_steps=skip, callback=lambda info: seen.append(info["t"]),
    )
    assert seen[0] == plain[skip]
    assert sorted(set(seen), reverse=True) == plain[skip:]  # every kept step once (PLMS: its first step twice)
    assert len(seen) == len(plain) - skip + (1 if sampler == "plms" and len(plain) - skip > 1 else 0)
