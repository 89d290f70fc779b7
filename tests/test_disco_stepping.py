"""Disco v5.7's step arithmetic, re-derived here from its code and guided-diffusion's (Disco's fork):

* the respacing: ``diffusion_steps = (1000 // steps) * steps`` training steps of the linear schedule stretched to
  that length, run at ``timestep_respacing = f"ddim{steps}"``, the model taking ``t * 1000 / diffusion_steps``;
* ``plms_sample_loop(order=2)``: one pseudo improved Euler step, then Adams-Bashforth 2 on the raw eps, the last
  step returning the predicted x0;
* the symmetry steps of ``ddim_sample_loop_progressive`` (``int(len(indices) * (1 - p))``, DDIM only);
* ``calc_frames_skip_steps = math.floor(steps * int(pct) / 100)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from discolib.config.settings import Settings
from discolib.run.budget import _guided_skip
from discolib.samplers.guided import (
    DiscoPLMSScheduler,
    make_pixel_scheduler,
    mirror,
    rescale_timesteps,
    respaced_timesteps,
    sample_pixels,
    space_timesteps,
    symmetry_steps,
)

ISSUE_STEPS = [25, 50, 100, 150, 250, 300]


# --- re-derivations of the originals -----------------------------------------------------------------------------


def ref_diffusion_steps(steps: int) -> int:
    """disco.py, "Do the Run!": ``diffusion_steps = (1000//steps)*steps if steps < 1000 else steps``."""
    return (1000 // steps) * steps if steps < 1000 else steps


def ref_space_timesteps(total: int, counts: str | list[int]) -> set[int]:
    """guided-diffusion ``space_timesteps``: the ``ddimN`` stride search, else evenly spread sections."""
    if isinstance(counts, str) and counts.startswith("ddim"):
        n = int(counts.removeprefix("ddim"))
        stride = next(i for i in range(1, total) if len(range(0, total, i)) == n)
        return set(range(0, total, stride))
    if isinstance(counts, str):
        counts = [int(c) for c in counts.split(",")]
    sizes = [total // len(counts) + (1 if k < total % len(counts) else 0) for k in range(len(counts))]
    starts = np.cumsum([0, *sizes[:-1]])
    out: set[int] = set()
    for start, size, count in zip(starts, sizes, counts, strict=True):
        step = 1 if count <= 1 else (size - 1) / (count - 1)
        out |= {int(start) + round(_acc(step, k)) for k in range(count)}
    return out


def _acc(step: float, k: int) -> float:
    """guided-diffusion adds the fractional stride k times (``cur_idx += frac_stride``), not ``k * stride``."""
    pos = 0.0
    for _ in range(k):
        pos += step
    return pos


def ref_alphas_cumprod(total: int) -> np.ndarray:
    """guided-diffusion ``get_named_beta_schedule("linear", total)``, cumulated in float64."""
    scale = 1000 / total
    betas = np.linspace(scale * 0.0001, scale * 0.02, total, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def ref_symmetry(steps: int, percents: list[float]) -> set[int]:
    """Steps run (0-based) before which ``ddim_sample_loop_progressive`` calls ``transformation_fn``."""
    indices = list(range(steps))[::-1]
    transformation_steps = [int(len(indices) * (1 - p)) for p in percents]
    return {j for j, i in enumerate(indices) if i in transformation_steps}


def ref_plms(x: np.ndarray, ts: list[int], ac: np.ndarray, eps_fn, order: int = 2) -> tuple[np.ndarray, list[int]]:  # noqa: ANN001
    """guided-diffusion ``plms_sample_loop_progressive`` / ``plms_sample`` (clip_denoised off, no cond_fn).

    ``ts``: the kept timesteps, descending (the respaced index ``t`` is their position from the end, so index 0 is
    the last). Returns the final sample and the timesteps the model was called at.
    """
    calls: list[int] = []

    def model(x: np.ndarray, n: int) -> np.ndarray:
        t = ts[n]
        calls.append(t)
        return eps_fn(x, t)

    old_eps: list[np.ndarray] | None = None
    for n in range(len(ts)):
        idx = len(ts) - 1 - n  # the respaced timestep index
        a = ac[ts[n]]
        a_prev = ac[ts[n + 1]] if n + 1 < len(ts) else 1.0
        eps = model(x, n)
        pred = (x - np.sqrt(1 - a) * eps) / np.sqrt(a)
        if order > 1 and old_eps is None:
            old_eps = [eps]
            mean = pred * np.sqrt(a_prev) + np.sqrt(1 - a_prev) * eps
            # t - 1: the next kept timestep (index -1 wraps to the first kept one in the timestep map).
            eps2 = model(mean, (n + 1) % len(ts))
            eps_prime = (eps + eps2) / 2
        else:
            old_eps.append(eps)
            cur = min(order, len(old_eps))
            coef = {1: [1], 2: [3, -1], 3: [23, -16, 5], 4: [55, -59, 37, -9]}[cur]
            eps_prime = sum(c * e for c, e in zip(coef, old_eps[::-1], strict=False)) / {1: 1, 2: 2, 3: 12, 4: 24}[cur]
        pred_prime = (x - np.sqrt(1 - a) * eps_prime) / np.sqrt(a)
        mean = pred_prime * np.sqrt(a_prev) + np.sqrt(1 - a_prev) * eps_prime
        if len(old_eps) >= order:
            old_eps.pop(0)
        x = mean if idx != 0 else pred
    return x, calls


def toy_eps(x: np.ndarray | torch.Tensor, t: int) -> np.ndarray | torch.Tensor:
    """A nonlinear eps that depends on x and t (numpy or torch alike)."""
    tanh = np.tanh if isinstance(x, np.ndarray) else torch.tanh
    return 0.5 * tanh(x) + 0.2 * x * (t / 1000.0) - 0.1


# --- 6: step spacing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", ISSUE_STEPS)
@pytest.mark.parametrize("sampler", ["ddim", "plms", "dpmpp"])
def test_timesteps_follow_discos_respacing(steps: int, sampler: str) -> None:
    total = ref_diffusion_steps(steps)
    expected = sorted(ref_space_timesteps(total, f"ddim{steps}"), reverse=True)
    assert respaced_timesteps(steps) == expected
    sched = make_pixel_scheduler(sampler, steps=steps)
    assert sched.config.num_train_timesteps == total
    sched.set_timesteps(steps)
    run = list(dict.fromkeys(int(t) for t in sched.timesteps))  # PLMS repeats one timestep (its second call)
    assert run == expected
    # The schedule is the stretched linear one (diffusers cumulates in float32).
    np.testing.assert_allclose(sched.alphas_cumprod.double().numpy(), ref_alphas_cumprod(total), rtol=2e-5)


@pytest.mark.parametrize(("steps", "first", "model_t", "sqrt_abar"), [(150, 894, 993.333, 0.0067), (300, 897, 996.667, 0.0065), (250, 996, 996.0, 0.0065)])
def test_the_issues_first_timesteps(steps: int, first: int, model_t: float, sqrt_abar: float) -> None:
    sched = make_pixel_scheduler("ddim", steps=steps)
    sched.set_timesteps(steps)
    assert int(sched.timesteps[0]) == first
    seen: list[torch.Tensor] = []
    rescale_timesteps(lambda x, t: seen.append(t) or x, sched.config.num_train_timesteps)(torch.zeros(1), sched.timesteps[0])
    assert float(seen[0]) == pytest.approx(model_t, abs=1e-3)
    assert math.sqrt(ref_alphas_cumprod(ref_diffusion_steps(steps))[first]) == pytest.approx(sqrt_abar, abs=5e-5)
    assert math.sqrt(float(sched.alphas_cumprod[first])) == pytest.approx(sqrt_abar, abs=5e-5)


@pytest.mark.parametrize("steps", [150, 300, 7])
def test_model_timesteps_are_guided_diffusions_float32_rescale(steps: int) -> None:
    # _WrappedModel: new_ts.float() * (1000.0 / original_num_steps), in float32.
    total = ref_diffusion_steps(steps)
    ts = torch.tensor(respaced_timesteps(steps))
    got: list[torch.Tensor] = []
    rescale_timesteps(lambda x, t: got.append(t) or x, total)(torch.zeros(1), ts)
    expected = np.float32(ts.numpy()) * np.float32(1000.0 / total)
    assert got[0].dtype == torch.float32
    np.testing.assert_array_equal(got[0].numpy(), expected)
    assert rescale_timesteps(toy_eps, 1000) is toy_eps  # 1000 training steps: the timesteps are the models' own


@pytest.mark.parametrize(("total", "counts"), [(300, [10, 15, 20]), (1000, "250"), (1000, "ddim25"), (1000, "10,15"), (37, "5,1,4"), (1000, [1000])])
def test_space_timesteps_matches_guided_diffusion(total: int, counts: str | list[int]) -> None:
    assert space_timesteps(total, counts) == sorted(ref_space_timesteps(total, counts))


def test_space_timesteps_refuses_what_guided_diffusion_refuses() -> None:
    with pytest.raises(ValueError, match="stride"):
        space_timesteps(1000, "ddim150")  # why Disco stretches the schedule to 900 steps
    with pytest.raises(ValueError, match="section"):
        space_timesteps(10, [11])


@pytest.mark.parametrize("steps", [25, 50, 100, 250])
def test_steps_dividing_1000_keep_the_1000_step_ddim(steps: int) -> None:
    """Where the step count divides 1000, Disco's schedule is the one the DDIM tests pin against diffusers."""
    a, b = make_pixel_scheduler("ddim", steps=steps), make_pixel_scheduler("ddim")
    assert a.config == b.config and torch.equal(a.alphas_cumprod, b.alphas_cumprod)
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = [
        sample_pixels(lambda x, t: toy_eps(x, int(t)), s, shape=(1, 3, 8, 8), steps=steps, eta=0.8, init=x, skip_steps=steps // 2,
                      generator=torch.Generator().manual_seed(1), device=torch.device("cpu"))
        for s in (a, b)
    ]
    assert torch.equal(*outs)


# --- 5: PLMS of order 2 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "skip"), [(10, 0), (7, 0), (7, 3), (12, 10), (150, 140), (5, 4)])
def test_plms_is_discos_order_2(steps: int, skip: int) -> None:
    shape = (1, 3, 4, 4)
    sched = make_pixel_scheduler("plms", steps=steps)
    assert isinstance(sched, DiscoPLMSScheduler)
    init = torch.linspace(-0.8, 0.8, 48).view(shape)
    seen: list[int] = []
    out = sample_pixels(
        lambda x, t: toy_eps(x, int(t)), sched, shape=shape, steps=steps, init=init if skip else None, skip_steps=skip,
        generator=torch.Generator().manual_seed(3), device=torch.device("cpu"), callback=lambda info: seen.append(info["t"]),
    )
    total = ref_diffusion_steps(steps)
    ac = ref_alphas_cumprod(total)
    ts = sorted(ref_space_timesteps(total, f"ddim{steps}"), reverse=True)[skip:]
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3)).double().numpy()
    x = np.sqrt(ac[ts[0]]) * init.double().numpy() + np.sqrt(1 - ac[ts[0]]) * noise if skip else noise
    expected, calls = ref_plms(x, ts, ac, toy_eps)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-4, atol=1e-4)
    # One model call per step plus the improved-Euler call (guided-diffusion makes it even for a single step).
    assert seen == (calls if len(ts) > 1 else calls[:1])


def test_plms_differs_from_order_4() -> None:
    """Order 2 and order 4 part after the third step (the re-derivation with order=4 is diffusers' PNDM rule)."""
    shape = (1, 3, 4, 4)
    out = sample_pixels(lambda x, t: toy_eps(x, int(t)), make_pixel_scheduler("plms", steps=10), shape=shape, steps=10,
                        generator=torch.Generator().manual_seed(3), device=torch.device("cpu"))
    ac = ref_alphas_cumprod(1000)
    ts = list(range(900, -1, -100))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(3)).double().numpy()
    order4, _ = ref_plms(noise, ts, ac, toy_eps, order=4)
    order2, _ = ref_plms(noise, ts, ac, toy_eps, order=2)
    assert np.abs(order4 - order2).max() > 1e-3
    np.testing.assert_allclose(out.double().numpy(), order2, rtol=1e-4, atol=1e-4)


# --- 7: symmetry steps and frames_skip_steps ---------------------------------------------------------------------


def test_symmetry_steps_match_disco_over_every_combination() -> None:
    percents = [k / 100 for k in range(101)] + [0.005, 0.999, 1.0, 1.05, 1.5, -0.1, 0.333]
    for steps in range(1, 301):
        for p in percents:
            assert symmetry_steps(steps, [p]) == ref_symmetry(steps, [p]), (steps, p)
    assert symmetry_steps(100, [0.09]) == {8}  # the issue's example: Disco's step 8, not 9
    assert symmetry_steps(250, [0.09]) == ref_symmetry(250, [0.09]) == {22}
    assert symmetry_steps(50, [0.1, 0.5, 0.9, 0.5]) == ref_symmetry(50, [0.1, 0.5, 0.9, 0.5])


def test_mirror_is_discos_symmetry_transformation() -> None:
    x = torch.randn(2, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    for horizontal in (False, True):
        for vertical in (False, True):
            ref = x.numpy()
            if horizontal:  # torch.concat((x[..., :w//2], flip(x[..., :w//2], [-1])), -1)
                half = ref[..., : ref.shape[-1] // 2]
                ref = np.concatenate([half, half[..., ::-1]], axis=-1)
            if vertical:
                half = ref[..., : ref.shape[-2] // 2, :]
                ref = np.concatenate([half, half[..., ::-1, :]], axis=-2)
            np.testing.assert_array_equal(mirror(x, horizontal=horizontal, vertical=vertical).numpy(), ref)


@pytest.mark.parametrize("any_sampler", [False, True])
@pytest.mark.parametrize("sampler", ["ddim", "plms", "dpmpp"])
def test_symmetry_is_ddim_only_unless_asked(sampler: str, any_sampler: bool) -> None:
    at: list[int] = []
    marked: list[int] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if float(x[0, 0, 0, 0]) == 123.0:
            marked.append(int(t))
        return 0.1 * x

    def mark(x: torch.Tensor) -> torch.Tensor:
        at.append(1)
        return torch.full_like(x, 123.0)

    sched = make_pixel_scheduler(sampler, steps=10)
    sample_pixels(model, sched, shape=(1, 3, 4, 4), steps=10, generator=torch.Generator().manual_seed(0),
                  device=torch.device("cpu"), transforms={0: mark, 3: mark}, transforms_any_sampler=any_sampler)
    if sampler == "ddim" or any_sampler:
        # Before steps run 0 and 3 (timesteps 900 and 600); never before PLMS's improved-Euler call.
        assert len(at) == 2 and marked == [900, 600]
    else:
        assert at == [] and marked == []  # Disco's PLMS loop takes no transformation_fn


def ref_frames_skip(steps: int, pct: str) -> int:
    """disco.py: ``skip_step_ratio = int(frames_skip_steps.rstrip("%")) / 100``, ``math.floor(steps * ratio)``."""
    return math.floor(steps * (int(pct.rstrip("%")) / 100))


def test_frames_skip_steps_floor_as_disco() -> None:
    s = Settings.defaults("guided")
    for steps in range(1, 301):
        s.image.steps = steps
        for k in range(100):
            s.animation.frames_skip_steps = f"{k}%"
            want = min(ref_frames_skip(steps, f"{k}%"), steps - 1)
            frac = s.frames_skip_fraction()
            assert round(frac * steps) == want, (steps, k)
            assert _guided_skip(s) == want
    s.image.steps, s.animation.frames_skip_steps = 25, "70%"
    assert _guided_skip(s) == 17  # the issue's example (rounding gave 18)
    s.image.steps, s.animation.frames_skip_steps = 100, "29%"
    assert _guided_skip(s) == 28  # Disco's float rounding: 100 * 0.29 = 28.999...
