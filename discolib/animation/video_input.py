"""Video Input mode as Disco v5.7 runs it (``do_run``'s Video Input branch and its ``video_init_*`` settings).

In guided (Disco) mode, a Video Input run replaces the sampler's settings by the ``video_init_*`` ones
(:func:`video_guidance`: steps, CLIP / TV / range / saturation scales, cut batches, the init-loss scale and the
skips), and each frame ``k > 0`` starts from the previous *written* frame warped by the video's optical flow from
frame ``k`` to frame ``k - 1``, blended with video frame ``k`` (``video_init_flow_blend``; with
``video_init_check_consistency``, unreliable flow falls back to the video frame). Frame 0 starts from video
frame 0 and skips ``video_init_skip_steps``. Seeds: frame ``k`` takes ``seed + 1 + k`` (Disco adds one before
every Video Input frame, frame 0 included) unless ``video_init_seed_continuity`` keeps ``seed``
(:func:`video_seed_base`).

Latent (Deforum) mode keeps Deforum's Video Input: each frame starts from its video frame, with the strength
schedule; none of the ``video_init_*`` settings apply.

:class:`VideoInput` is what :class:`~discolib.animation.step.AnimationStep` delegates to. Its only state is the
previous video frame, re-read from the video on resume, and the previous written frame comes from the loop: a
resumed run makes the same inits as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from discolib.animation.flow import (
    FlowEstimator,
    blend_output,
    consistency_mask,
    flow_estimator,
    flow_init,
    warp_by_flow,
)
from discolib.config.settings import Settings, skip_fraction
from discolib.errors import InputError

__all__ = ["VideoGuidance", "VideoInput", "skip_fraction", "video_guidance", "video_seed_base"]


@dataclass(frozen=True)
class VideoGuidance:
    """Disco's Video Input overrides of the guided sampler (``args[...] = args['video_init_...']``).

    Attributes:
        steps: sampler steps per frame (``video_init_steps``).
        clip_guidance_scale, tv_scale, range_scale, sat_scale: loss scales.
        cutn_batches: cut batches per step.
        skip_steps: frame 0's skipped steps with the flow warp on (``video_init_skip_steps``).
        init_scale: the init-loss scale of every frame (``video_init_frames_scale``).
        first_strength: frame 0's skipped fraction of ``steps``.
        strength: later frames' skipped fraction of ``steps``.
    """

    steps: int
    clip_guidance_scale: float
    tv_scale: float
    range_scale: float
    sat_scale: float
    cutn_batches: int
    skip_steps: int
    init_scale: float
    first_strength: float
    strength: float

    def strengths(self, n_frames: int) -> np.ndarray:
        """Every frame's init strength (skipped fraction), ``(n_frames,)`` float64: frame 0's, then the rest."""
        out = np.full(n_frames, self.strength)
        if n_frames:
            out[0] = self.first_strength
        return out


def video_guidance(settings: Settings) -> VideoGuidance | None:
    """The ``video_init_*`` overrides of a guided Video Input run; None in any other mode.

    Later frames skip ``floor(video_init_steps * frames_skip_steps)``: Disco v5.7 computes that skip from
    ``frames_skip_steps`` before it swaps in ``video_init_frames_skip_steps``, so the latter only counts with
    ``video_init_honor_frames_skip_steps``. Frame 0 skips ``video_init_skip_steps`` with the flow warp on, else the
    later frames' skip.

    Raises:
        InputError: ``video_init_skip_steps`` is not below ``video_init_steps``.
    """
    anim = settings.animation
    if anim.animation_mode != "Video Input" or settings.image.mode != "guided":
        return None
    steps = anim.video_init_steps
    if anim.video_init_honor_frames_skip_steps:
        later = skip_fraction(anim.video_init_frames_skip_steps, steps, setting="animation.video_init_frames_skip_steps")
    else:
        later = skip_fraction(anim.frames_skip_steps, steps, setting="animation.frames_skip_steps")
    if anim.video_init_flow_warp and anim.video_init_skip_steps >= steps:
        raise InputError(
            f"animation.video_init_skip_steps: must be smaller than animation.video_init_steps ({steps}), "
            f"got {anim.video_init_skip_steps}"
        )
    return VideoGuidance(
        steps=steps,
        clip_guidance_scale=anim.video_init_clip_guidance_scale,
        tv_scale=anim.video_init_tv_scale,
        range_scale=anim.video_init_range_scale,
        sat_scale=anim.video_init_sat_scale,
        cutn_batches=anim.video_init_cutn_batches,
        skip_steps=anim.video_init_skip_steps,
        init_scale=anim.video_init_frames_scale,
        first_strength=anim.video_init_skip_steps / steps if anim.video_init_flow_warp else later,
        strength=later,
    )


def video_seed_base(settings: Settings, seed: int) -> tuple[int, bool]:
    """(the seed ``seed_behavior`` starts from, whether every frame keeps it) for a run of ``settings``.

    Guided Video Input (Disco ``do_run``: ``seed += 1`` before every frame, frame 0 included): ``(seed + 1,
    False)``, so ``iter`` gives frame ``k`` the seed ``seed + 1 + k``; with ``video_init_seed_continuity``,
    ``(seed, True)``. Any other mode: ``(seed, False)``.
    """
    anim = settings.animation
    if anim.animation_mode != "Video Input" or settings.image.mode != "guided":
        return seed, False
    if anim.video_init_seed_continuity:
        return seed, True
    return seed + 1, False


class VideoInput:
    """The inits of a Video Input run, frame by frame.

    Args:
        frames: the video's frames ``(1, 3, H, W)`` in [0, 1] from frame ``max(start - 1, 0)`` on (the frame before
            ``start`` is the flow's other end on resume).
        start: the first frame this process renders.
        device: the render device.
        flow: the flow estimator (None: no flow warp, each frame starts from its video frame).
        blend: ``video_init_flow_blend``.
        check_consistency: mask unreliable flow (``video_init_check_consistency``).
        padding: what the warp reads off the frame (``video_flow_padding``).
    """

    def __init__(
        self,
        frames: Iterator[torch.Tensor],
        *,
        start: int = 0,
        device: torch.device | str = "cpu",
        flow: FlowEstimator | None = None,
        blend: float = 0.999,
        check_consistency: bool = False,
        padding: Literal["zeros", "border", "reflection"] = "zeros",
    ) -> None:
        self.frames, self.device = frames, torch.device(device)
        self.flow, self.blend, self.check_consistency, self.padding = flow, blend, check_consistency, padding
        self._index = max(start - 1, 0) - 1  # index of self._cur (none read yet)
        self._cur: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None
        #: frame index -> flow from that video frame to the one before, kept for the output blend.
        self._flows: dict[int, torch.Tensor] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        frames: Iterator[torch.Tensor],
        *,
        start: int = 0,
        device: torch.device | str = "cpu",
        flow: FlowEstimator | None = None,
    ) -> VideoInput:
        """The Video Input of a run of ``settings``: the flow warp in guided mode with ``video_init_flow_warp``
        (``flow`` given, else :func:`~discolib.animation.flow.flow_estimator` of ``video_flow_method``, which may
        raise WeightsUnavailable); no warp in latent mode (Deforum)."""
        anim = settings.animation
        warp = anim.video_init_flow_warp and settings.image.mode == "guided"
        if warp and flow is None:
            flow = flow_estimator(anim.video_flow_method, device, random_ok=settings.models.random_weights)
        return cls(
            frames,
            start=start,
            device=device,
            flow=flow if warp else None,
            blend=anim.video_init_flow_blend,
            check_consistency=anim.video_init_check_consistency,
            padding=anim.video_flow_padding,
        )

    # ------------------------------------------------------------------------------------------ frames

    def video_frame(self, i: int) -> torch.Tensor:
        """Video frame ``i`` on the render device (frames are read in order; ``i`` may not go back further than
        the previous frame)."""
        if i == self._index:
            assert self._cur is not None
            return self._cur
        if i == self._index - 1 and self._prev is not None:
            return self._prev
        if i < self._index:
            raise ValueError(f"VideoInput: frame {i} was read already (now at {self._index})")
        while self._index < i:
            self._prev, self._cur = self._cur, next(self.frames).to(self.device)
            self._index += 1
        assert self._cur is not None
        return self._cur

    def flow_back(self, i: int) -> torch.Tensor:
        """Flow ``(1, 2, H, W)`` from video frame ``i`` to frame ``i - 1`` (Disco's ``flow21``); kept for frame
        ``i``'s output blend."""
        if i not in self._flows:
            assert self.flow is not None, "no flow estimator"
            cur, before = self.video_frame(i), self.video_frame(i - 1)
            self._flows = {i: self.flow(cur, before).to(self.device)}  # only the newest is ever needed again
        return self._flows[i]

    # ------------------------------------------------------------------------------------------ inits

    def first(self) -> torch.Tensor:
        """Frame 0's init: video frame 0, ``(1, 3, H, W)``."""
        return self.video_frame(0)

    def __call__(self, i: int, prev: torch.Tensor | None) -> torch.Tensor:
        """Frame ``i > 0``'s init from the previous written frame ``prev`` ``(1, 3, H, W)`` in [0, 1].

        Without a flow: video frame ``i``. With one: ``(1 - blend) * video[i] + blend * warp(prev, flow(video[i] ->
        video[i - 1]))``, the video frame standing in where the flow is unreliable when checked.
        """
        frame = self.video_frame(i)
        if self.flow is None:
            return frame
        assert prev is not None, "the flow warp needs the previous written frame"
        flow21 = self.flow_back(i)
        warped = warp_by_flow(prev.to(frame.dtype), flow21.to(frame.dtype), padding=self.padding)
        mask = None
        if self.check_consistency:
            flow12 = self.flow(self.video_frame(i - 1), frame).to(self.device)
            mask = consistency_mask(flow21, flow12).to(frame.dtype)
        return flow_init(frame, warped, self.blend, mask).clamp(0, 1)

    def output_frame(
        self, i: int, prev: torch.Tensor, cur: torch.Tensor, mode: Literal["None", "linear", "optical flow"], blend: float
    ) -> torch.Tensor:
        """Frame ``i`` of Disco's blended output video (``video_init_blend_mode``, ``video_output_blend``) from the
        written frames ``i - 1`` (``prev``) and ``i`` (``cur``); call it right after :meth:`__call__` for ``i``."""
        if mode != "optical flow":
            return blend_output(prev, cur, mode, blend)
        if self.flow is None:
            raise InputError("animation.video_init_blend_mode 'optical flow' needs animation.video_init_flow_warp on")
        return blend_output(prev, cur, mode, blend, self.flow_back(i).to(cur.dtype), padding=self.padding)
