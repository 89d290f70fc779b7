"""What every sampler shares: the request for one image and the step-callback plumbing.

Samplers follow k-diffusion's shape: a *model function* ``model_fn(x, t) -> eps`` is the only thing a sampler
calls, and guidance is composed by wrapping that function (see :func:`discolib.samplers.guided.clip_guided`).
The render loop asks a sampler for one image at a time with a :class:`FrameRequest`.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from discolib.animation.policy import AnimationPolicy
from discolib.schedules.prompts import FramePrompts

__all__ = ["FrameRequest", "FrameSampler", "ModelFn", "StepCallback", "scheduler_step", "make_step_callback"]

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model_fn(x (B, C, H, W), t (B,) timesteps on the 0-999 scale) -> eps (B, C, H, W)``."""

StepCallback = Callable[[dict[str, Any]], None]
"""Called after each step with ``{"i": step (0-based), "n": steps, "t": timestep, "x": sample, "denoised": pred x0}``."""


@dataclass
class FrameRequest:
    """One image to make.

    Attributes:
        seed: seed of this image's noise (and cutouts).
        prompts: the prompts that hold at this frame.
        image_prompts: image paths/URLs with weights that hold at this frame (guided mode), or None.
        init: (1, 3, H, W) in [0, 1], or None to start from noise. The samplers read no init image of their own:
            the caller loads the settings' init image and passes it here.
        init_strength: how much of ``init`` to keep, in Deforum's sense (0 ignores it, 1 keeps it). The guided
            sampler turns it into ``min(steps - 1, round(steps * init_strength))`` skipped steps (unless
            ``skip_steps`` is given), the latent sampler into ``1 - init_strength`` denoising strength (where 1
            gives the VAE round trip of ``init``; returning ``init`` itself is the caller's choice, see
            :attr:`discolib.animation.policy.AnimationPolicy.full_strength_keeps_init`).
        skip_steps: guided mode: the steps to skip at the start, exactly (Disco's ``skip_steps`` of a still or of
            an animation's first frame). None: from ``init_strength`` when there is an ``init``, else the config's
            ``skip_steps`` (the start from Perlin noise or a zero image). The latent sampler ignores it.
        cfg_scale: latent mode's classifier-free guidance scale (None: the config's value).
        init_scale: guided mode's init-image loss scale (None: the config's value).
        callback: step callback (see :data:`StepCallback`).
        stop: checked after every step; when set the sampler raises :class:`discolib.samplers.base.RenderStopped`.
    """

    seed: int
    prompts: FramePrompts
    image_prompts: FramePrompts | None = None
    init: torch.Tensor | None = None
    init_strength: float = 0.0
    skip_steps: int | None = None
    cfg_scale: float | None = None
    init_scale: float | None = None
    callback: StepCallback | None = None
    stop: threading.Event | None = None


class FrameSampler(Protocol):
    """A configured sampler: models loaded once, called once per image.

    ``policy`` answers the animation step's questions about this sampler (see :mod:`discolib.animation.policy`).
    """

    width: int
    height: int
    device: torch.device
    policy: AnimationPolicy

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        """The image, (1, 3, H, W) float in [0, 1] on ``device``."""
        ...


def make_step_callback(request: FrameRequest) -> StepCallback:
    """Combine the request's callback with its stop check (the stop is seen right after each step)."""

    def cb(info: dict[str, Any]) -> None:
        if request.callback is not None:
            request.callback(info)
        check_stop(request.stop)

    return cb


def scheduler_step(scheduler: Any, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor, **kwargs: Any) -> Any:
    """``scheduler.step`` with only the keyword arguments that scheduler takes (``eta``, ``generator``, ...)."""
    params = _step_params(type(scheduler))
    return scheduler.step(eps, t, x, return_dict=True, **{k: v for k, v in kwargs.items() if k in params})


_PARAMS: dict[type, frozenset[str]] = {}


def _step_params(cls: type) -> frozenset[str]:
    if cls not in _PARAMS:
        _PARAMS[cls] = frozenset(inspect.signature(cls.step).parameters)
    return _PARAMS[cls]


class RenderStopped(Exception):
    """Raised inside the sampler when the caller's stop event is set; caught by the render loop."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise :class:`RenderStopped` when ``stop`` is set (called between sampler steps)."""
    if stop is not None and stop.is_set():
        raise RenderStopped
