"""One animation frame's way from the previous frame to the sampler: warp -> coherence -> cadence rule -> FrameInit.

:class:`AnimationStep` holds what lives across frames (the depth model, frame 0 for colour matching, the motion
table on the render device) and answers, for frame ``i``, what the frame starts from (:class:`FrameInit`):

* frame 0: the init image (or a video's first frame), or noise;
* Video Input: the video's frame ``i`` (no warp);
* 2D / 3D: the previous frame warped by frame ``i``'s motion (2D affine, or a 3D depth reprojection with its
  disocclusion mask), then -- when the frame is diffused -- coherence: colour match to frame 0, contrast,
  anti-blur, and, where the sampler's :class:`~discolib.animation.policy.AnimationPolicy` says so, fresh noise in
  disoccluded pixels and the noise schedule;
* cadence (Deforum) / turbo (Disco): only every ``cadence``-th frame is diffused (and every frame of the first
  ``turbo_preroll`` when the policy has a preroll); the frames in between are the warped previous frame as it is.
  A frame whose init strength keeps all of the init (strength 1, when the policy allows) is also kept as warped.

Every decision that differs between Disco's guided and Deforum's latent sampler is a field of the policy: nothing
here reads ``image.mode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from discolib.animation import coherence, motion
from discolib.animation.plan import RenderPlan
from discolib.animation.policy import AnimationPolicy
from discolib.models.depth import DEFORUM_DEPTH_RANGE, DepthEstimator, normalize_depth, save_depth_png
from discolib.models.device import upload

__all__ = ["AnimationStep", "FrameInit", "motion_3d_table", "quantize"]


@dataclass(frozen=True)
class FrameInit:
    """What frame ``i`` starts from.

    Attributes:
        image: ``(1, 3, H, W)`` in [0, 1] on the render device: the frame itself when ``final``, else the init to
            diffuse; None to diffuse from noise.
        final: the frame needs no sampler (a cadence in-between frame, or strength 1).
        strength: init strength for the sampler (Deforum's sense: fraction of the init kept).
        init_scale: guided mode's init-loss scale (None: the sampler's own setting).
        cfg_scale: latent mode's CFG scale (None: the sampler's own setting).
    """

    image: torch.Tensor | None
    final: bool = False
    strength: float = 0.0
    init_scale: float | None = None
    cfg_scale: float | None = None


def quantize(image: torch.Tensor) -> torch.Tensor:
    """What the PNG will hold, back as float: the loop continues from exactly the written frame."""
    return image.detach().float().clamp(0, 1).mul(255).round().div(255)


def motion_3d_table(plan: RenderPlan, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Every frame's 3D camera motion, ``(frames, 6)``: ``rotation_3d_x/y/z`` then ``translation_x/y/z``.

    Uploaded once per run (without a host sync), so a frame only indexes it: no per-frame host-to-device copy.
    """
    keys = ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "translation_x", "translation_y", "translation_z")
    table = torch.stack([torch.as_tensor(plan.values[k], dtype=torch.float64) for k in keys], dim=1)
    return upload(table.to(dtype), device)


class AnimationStep:
    """The per-frame animation step of one run: :meth:`first` for frame 0, then :meth:`__call__` for each later one.

    Args:
        plan: the run's plan.
        policy: the sampler's animation policy.
        device: the render device.
        depth: the depth estimator of a 3D run (None otherwise).
        depth_dir: where to save each frame's depth map (``animation.save_depth_maps``), or None.
        start: the first frame this process renders (> 0 when resuming).
        color_ref: frame 0 as written, ``(1, 3, H, W)``, when resuming past it.
    """

    def __init__(
        self,
        plan: RenderPlan,
        policy: AnimationPolicy,
        device: torch.device,
        *,
        depth: DepthEstimator | None = None,
        depth_dir: Path | None = None,
        start: int = 0,
        color_ref: torch.Tensor | None = None,
    ) -> None:
        self.plan, self.policy, self.device = plan, policy, device
        self.anim = plan.settings.animation
        self.depth, self.depth_dir = depth, depth_dir
        self.color_ref = color_ref
        self._color_hist: coherence.HistogramReference | None = None
        self._motion_3d: torch.Tensor | None = None
        self._video: Iterator[torch.Tensor] | None = plan.video_frames(start) if plan.motion == "Video Input" else None

    def first(self) -> FrameInit:
        """Frame 0: the video's first frame (Video Input), else from the init image (or a video file's first
        frame) or from noise.

        With an init strength that keeps all of it (Deforum's strength 1, where the policy allows) the init is the
        frame: "animate a photo" without diffusion.
        """
        plan = self.plan
        if self._video is not None:
            return self._diffused(0, next(self._video).to(self.device))
        cfg = float(plan.cfg_scale[0]) if plan.cfg_scale is not None else None
        init = plan.init_image(self.device)
        if init is None:
            return FrameInit(None, cfg_scale=cfg)
        if self.policy.full_strength_keeps_init and plan.first_strength >= 1.0:
            return FrameInit(init, final=True)
        return FrameInit(init, strength=plan.first_strength, cfg_scale=cfg)

    def __call__(self, i: int, prev: torch.Tensor) -> FrameInit:
        """Frame ``i > 0`` from the previous frame ``prev`` ``(1, 3, H, W)`` as written."""
        if self._video is not None:
            return self._diffused(i, next(self._video).to(self.device))
        warped, mask = self.warp(i, prev)
        in_preroll = self.policy.preroll and i < self.anim.turbo_preroll
        cadence = self.anim.cadence
        if (cadence > 1 and i % cadence != 0 and not in_preroll) or self._keeps_init(i):
            # Cadence / turbo: motion only between diffusion frames. Strength 1 keeps the warped frame as it is
            # (pure depth parallax): no noise is added that no sampler would take out again.
            return FrameInit(warped, final=True)
        return self._diffused(i, self.coherence(i, warped, mask))

    def note_written(self, i: int, image: torch.Tensor) -> None:
        """Tell the step frame ``i`` as written (frame 0 is the colour reference of every later frame)."""
        if i == 0:
            self.color_ref = image

    # ------------------------------------------------------------------------------------------ parts

    def _keeps_init(self, i: int) -> bool:
        return self.policy.full_strength_keeps_init and float(self.plan.strength[i]) >= 1.0

    def _diffused(self, i: int, init: torch.Tensor) -> FrameInit:
        plan = self.plan
        if self._keeps_init(i):
            return FrameInit(init, final=True)
        cfg = float(plan.cfg_scale[i]) if plan.cfg_scale is not None else None
        return FrameInit(init, strength=float(plan.strength[i]), init_scale=plan.init_scale, cfg_scale=cfg)

    def warp(self, i: int, prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame ``i``'s motion applied to ``prev``: (warped ``(1, 3, H, W)`` in [0, 1], disocclusion mask
        ``(1, 1, H, W)`` bool or None)."""
        plan, anim = self.plan, self.anim
        if plan.motion == "2D":
            warped = motion.warp_2d(
                prev,
                plan.value("angle", i),
                plan.value("zoom", i),
                plan.value("translation_x", i),
                plan.value("translation_y", i),
                plan.value("transform_center_x", i),
                plan.value("transform_center_y", i),
                padding_mode=anim.border,
                sampling_mode=anim.sampling_mode,
            )
            return warped.clamp(0, 1), None
        if plan.motion == "3D":
            assert self.depth is not None, "a 3D step needs a depth estimator"
            depth = normalize_depth(self.depth(prev), *DEFORUM_DEPTH_RANGE)
            if self.depth_dir is not None:
                save_depth_png(depth, self.depth_dir / f"{i - 1:06d}.png")
            if self._motion_3d is None:
                self._motion_3d = motion_3d_table(plan, prev.device, prev.dtype)
            rot, trans = self._motion_3d[i : i + 1, :3], self._motion_3d[i : i + 1, 3:]
            warped, mask = motion.reproject_3d(
                prev,
                depth,
                rot,
                trans,
                fov_deg=plan.value("fov", i),
                padding_mode=anim.padding_mode,
                sampling_mode=anim.sampling_mode,
            )
            return warped.clamp(0, 1), mask
        return prev, None

    def coherence(self, i: int, warped: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Colour match to frame 0, contrast, anti-blur and, per the policy, noise in disoccluded pixels and the
        noise schedule: the init of a diffused frame, ``(1, 3, H, W)`` in [0, 1]."""
        plan, anim = self.plan, self.anim
        x = warped
        if anim.color_coherence != "None" and self.color_ref is not None:
            if self._color_hist is None:  # frame 0's half of the matching, done once per run
                self._color_hist = coherence.HistogramReference.prepare(self.color_ref, anim.color_coherence)
            x = coherence.match_histogram(x, self._color_hist, anim.color_coherence)
        contrast = plan.value("contrast_schedule", i)
        if contrast != 1.0:
            x = coherence.adjust_contrast(x, contrast)
        amount = plan.value("antiblur_amount", i)
        if amount > 0:
            x = coherence.unsharp_mask(x, amount, sigma=plan.value("antiblur_sigma", i))
        gen = plan.generator("coherence", i)
        if mask is not None and self.policy.fills_disocclusions:
            # Disocclusions have no source pixel: fresh noise lets the sampler invent content there instead of
            # smearing the border (a long-standing Deforum request).
            fill = upload(torch.rand(x.shape, generator=gen, dtype=x.dtype), x.device)
            x = torch.where(mask.expand_as(x), fill, x)
        noise = plan.value("noise_schedule", i)
        if self.policy.adds_noise and noise > 0:
            x = coherence.add_noise(x, noise, anim.noise_type, gen)
        return x.clamp(0, 1)
