"""Disco's secondary model: parity with the original implementation's outputs, real key names, time helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from discolib.models.secondary import (
    SecondaryDiffusionImageNet2,
    alpha_sigma_to_t,
    t_from_alphas_cumprod,
    t_to_alpha_sigma,
)
from discolib.models.state_dict import CheckpointError


@pytest.fixture(scope="module")
def fixture_model(fixtures_dir: Path) -> tuple[SecondaryDiffusionImageNet2, dict[str, torch.Tensor]]:
    sd = load_file(str(fixtures_dir / "secondary_imagenet2_c8.safetensors"))
    io = load_file(str(fixtures_dir / "secondary_imagenet2_c8.io.safetensors"))
    return SecondaryDiffusionImageNet2.from_state_dict(sd), io


def test_fixture_parity(fixture_model: tuple[SecondaryDiffusionImageNet2, dict[str, torch.Tensor]]) -> None:
    model, io = fixture_model
    assert model.c == 8
    with torch.no_grad():
        out = model(io["x"], io["t"])
    for name in ("v", "pred", "eps"):
        got, ref = getattr(out, name), io[name]
        assert got.shape == ref.shape == (2, 3, 64, 64)
        assert float((got - ref).norm() / ref.norm()) < 1e-4, name


def test_key_names_and_shapes_match_the_real_checkpoint(fixtures_dir: Path) -> None:
    sd = load_file(str(fixtures_dir / "secondary_imagenet2_c8.safetensors"))
    ours = SecondaryDiffusionImageNet2(8).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    # The released model has width 64: same keys, shapes scaled (8c = 512 channels at the bottom).
    with torch.device("meta"):
        big = SecondaryDiffusionImageNet2(64).state_dict()
    assert set(big) == set(sd)
    assert tuple(big["net.0.0.weight"].shape) == (64, 19, 3, 3)
    assert tuple(big["net.2.main.3.main.3.main.3.main.3.main.2.0.weight"].shape) == (512, 512, 3, 3)
    assert tuple(big["timestep_embed.weight"].shape) == (8, 1)


def test_outputs_are_consistent_and_differentiable(
    fixture_model: tuple[SecondaryDiffusionImageNet2, dict[str, torch.Tensor]],
) -> None:
    model, io = fixture_model
    x = io["x"][:1, :, :32, :32].clone().requires_grad_(True)
    t = torch.tensor([0.3])
    out = model(x, t)
    alpha, sigma = t_to_alpha_sigma(t)
    # x_t = alpha * x_0 + sigma * eps must hold for the predicted pair
    assert torch.allclose(alpha * out.pred + sigma * out.eps, x, atol=1e-5)
    # Disco guides with d(loss(pred))/dx: the gradient must reach the input
    out.pred.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_time_helpers_roundtrip_and_match_ddpm_schedule() -> None:
    t = torch.linspace(0, 1, 11)
    alpha, sigma = t_to_alpha_sigma(t)
    assert torch.allclose(alpha_sigma_to_t(alpha, sigma), t, atol=1e-6)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(11))
    ac = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    steps = torch.tensor([0, 250, 500, 999])
    ct = t_from_alphas_cumprod(ac, steps)
    assert ct.shape == (4,) and ct.dtype == torch.float32
    assert bool((ct[1:] > ct[:-1]).all()) and 0 < float(ct[0]) < 0.01 and 0.99 < float(ct[-1]) <= 1
    # cos(pi t / 2)^2 recovers alphas_cumprod at those steps
    assert torch.allclose(torch.cos(ct.double() * math.pi / 2) ** 2, ac[steps].double(), atol=1e-6)
    assert t_from_alphas_cumprod(ac, 500).shape == ()


def test_bad_inputs_and_checkpoints() -> None:
    model = SecondaryDiffusionImageNet2(8)
    with pytest.raises(ValueError, match=r"x: expected \(B, 3, H, W\)"):
        model(torch.zeros(1, 4, 32, 32), torch.zeros(1))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, 40, 32), torch.zeros(1))
    with pytest.raises(ValueError, match="positive integer"):
        SecondaryDiffusionImageNet2(0)
    sd = model.state_dict()
    bad = {**sd, "net.4.weight": torch.zeros(3, 8, 1, 1)}
    with pytest.raises(CheckpointError, match=r"'net\.4\.weight': expected shape \(3, 8, 3, 3\), found \(3, 8, 1, 1\)"):
        SecondaryDiffusionImageNet2.from_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "timestep_embed.weight"}
    with pytest.raises(CheckpointError, match="missing key 'timestep_embed.weight'"):
        SecondaryDiffusionImageNet2.from_state_dict(missing)
    with pytest.raises(CheckpointError, match="not a SecondaryDiffusionImageNet2 checkpoint"):
        SecondaryDiffusionImageNet2.from_state_dict({"net.0.0.weight": torch.zeros(8, 3, 3, 3)})
