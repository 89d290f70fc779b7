"""Disco Diffusion's secondary model (``SecondaryDiffusionImageNet2``) and its cosine-time helpers.

The secondary model is a small v-objective UNet (Katherine Crowson's, trained on ImageNet) that Disco runs instead
of the big guided-diffusion UNet to get a cheap, differentiable estimate of the clean image for CLIP guidance.
It lives on the *cosine* schedule: time ``t`` in [0, 1] with ``alpha = cos(pi t / 2)``, ``sigma = sin(pi t / 2)``,
``x_t = alpha * x_0 + sigma * eps``. Its output ``v = alpha * eps - sigma * x_0`` gives
``pred (x_0) = alpha * x_t - sigma * v`` and ``eps = sigma * x_t + alpha * v``.

Disco maps a step of the DDPM linear schedule onto that time with
``t = atan2(sqrt(1 - alphas_cumprod[step]), sqrt(alphas_cumprod[step])) * 2 / pi`` (:func:`t_from_alphas_cumprod`).

Architecture (base width ``c``, widths ``cs = [c, 2c, 2c, 4c, 4c, 8c]``): 16 Fourier features of ``t`` broadcast
as planes and concatenated to the image, two 3x3 conv+ReLU blocks, then five nested skip levels (average-pool 2x,
two conv blocks, the next level, two conv blocks, bilinear 2x up; the skip concatenates the level's input), a
conv block and a final 3x3 conv to 3 channels. The module names reproduce the original state-dict keys
(``timestep_embed.weight``, ``net.0.0.weight``, ``net.2.main.1.0.weight``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from discolib.models.state_dict import CheckpointError, load_module_strict

__all__ = [
    "SecondaryDiffusionImageNet2",
    "SecondaryOutput",
    "alpha_sigma_to_t",
    "t_from_alphas_cumprod",
    "t_to_alpha_sigma",
]


def alpha_sigma_to_t(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Cosine-schedule time of a noise level: ``atan2(sigma, alpha) * 2 / pi``, in [0, 1] for alpha, sigma >= 0."""
    return torch.atan2(sigma, alpha) * 2 / math.pi


def t_to_alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal and noise scales of cosine time ``t`` in [0, 1]: ``(cos(pi t / 2), sin(pi t / 2))``."""
    return torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)


def t_from_alphas_cumprod(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
    """Cosine time for DDPM steps, as Disco feeds the secondary model.

    Args:
        alphas_cumprod: (T,) cumulative products of the DDPM schedule (a diffusers scheduler's ``alphas_cumprod``).
        timesteps: step index/indices into it (an int or a (B,) long tensor).

    Returns:
        Tensor of the same shape as ``timesteps``, values in [0, 1]:
        ``alpha_sigma_to_t(sqrt(ac[step]), sqrt(1 - ac[step]))``.
    """
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64)[torch.as_tensor(timesteps, dtype=torch.long)]
    return alpha_sigma_to_t(ac.sqrt(), (1 - ac).sqrt()).to(torch.float32)


class SecondaryOutput(NamedTuple):
    """Outputs of the secondary model, each (B, 3, H, W): ``v``, ``pred`` (x_0 in about [-1, 1]) and ``eps``."""

    v: torch.Tensor
    pred: torch.Tensor
    eps: torch.Tensor


class _FourierFeatures(nn.Module):
    """Random Fourier features: ``(B, in) -> (B, out)`` as ``cat(cos(2 pi x W^T), sin(2 pi x W^T))``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if out_features % 2:
            raise ValueError(f"out_features must be even, got {out_features}")
        self.weight = nn.Parameter(torch.randn(out_features // 2, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x @ self.weight.T
        return torch.cat([f.cos(), f.sin()], dim=-1)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    # ReLU in place is safe for autograd here: the conv does not need its output for its backward.
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True))


class _SkipBlock(nn.Module):
    """``cat(main(x), x)`` along channels (the key names need ``main``; the skip is the identity)."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.main(x), x], dim=1)


def _level(cs: list[int], i: int) -> _SkipBlock:
    """Skip level ``i`` (1-based): runs at 1 / 2**i of the input resolution with ``cs[i]`` channels."""
    layers: list[nn.Module] = [nn.AvgPool2d(2), _conv_block(cs[i - 1], cs[i]), _conv_block(cs[i], cs[i])]
    if i < len(cs) - 1:
        layers += [_level(cs, i + 1), _conv_block(cs[i] * 2, cs[i])]
    else:
        layers += [_conv_block(cs[i], cs[i])]
    layers += [
        _conv_block(cs[i], cs[i - 1]),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
    ]
    return _SkipBlock(*layers)


class SecondaryDiffusionImageNet2(nn.Module):
    """Disco's secondary diffusion model.

    Args:
        c: base width (64 for the released ``secondary_model_imagenet_2.pth``).

    ``forward(x, t)``: ``x`` (B, 3, H, W) noisy image in the [-1, 1] data scale, H and W multiples of 32;
    ``t`` (B,) cosine-schedule time in [0, 1]. Returns :class:`SecondaryOutput` ``(v, pred, eps)``.
    """

    FOURIER = 16  # timestep features (fixed in the released model, whatever the width)

    def __init__(self, c: int = 64) -> None:
        super().__init__()
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"SecondaryDiffusionImageNet2.c: expected a positive integer, got {c!r}")
        self.c = c
        cs = [c, c * 2, c * 2, c * 4, c * 4, c * 8]
        self.timestep_embed = _FourierFeatures(1, self.FOURIER)
        self.net = nn.Sequential(
            _conv_block(3 + self.FOURIER, cs[0]),
            _conv_block(cs[0], cs[0]),
            _level(cs, 1),
            _conv_block(cs[0] * 2, cs[0]),
            nn.Conv2d(cs[0], 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> SecondaryOutput:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"x: expected (B, 3, H, W), got {tuple(x.shape)}")
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ValueError(f"x: height and width must be multiples of 32 (5 poolings), got {tuple(x.shape[2:])}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.timestep_embed(t[:, None])  # (B, 16)
        planes = emb[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        v = self.net(torch.cat([x, planes], dim=1))
        alpha, sigma = t_to_alpha_sigma(t)
        alpha, sigma = alpha[:, None, None, None], sigma[:, None, None, None]
        pred = x * alpha - v * sigma
        eps = x * sigma + v * alpha
        return SecondaryOutput(v, pred, eps)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> SecondaryDiffusionImageNet2:
        """Build with the width read from ``net.0.0.weight`` and load strictly (CheckpointError names bad keys)."""
        w = state_dict.get("net.0.0.weight")
        if w is None or w.ndim != 4 or w.shape[1] != 3 + cls.FOURIER:
            found = "missing" if w is None else f"shape {tuple(w.shape)}"
            raise CheckpointError(
                f"not a SecondaryDiffusionImageNet2 checkpoint: 'net.0.0.weight' should be (c, {3 + cls.FOURIER}, 3, 3),"
                f" found {found}"
            )
        model = cls(int(w.shape[0]))
        load_module_strict(model, state_dict, what="SecondaryDiffusionImageNet2")
        model.eval()
        model.requires_grad_(False)
        return model
