"""One animation frame's way from the previous frames to the written frame: warp -> coherence -> sampler -> blend.

:class:`AnimationStep` holds what lives across frames (the depth model, the colour reference, the motion table on
the render device, and the warped chains of the last two diffused frames) and answers, for frame ``i``:

* what the frame starts from (:class:`FrameInit`, ``step(i)``): frame 0's init image or noise; Video Input's frame
  ``i``; in 2D / 3D, on a diffused frame, the newer chain warped by frame ``i``'s motion (2D affine, or a 3D
  depth reprojection with its disocclusion mask), then coherence: colour match to the reference, contrast,
  anti-blur and, where the sampler's :class:`~discolib.animation.policy.AnimationPolicy` says so, fresh noise in
  disoccluded pixels and the noise schedule;
* what is written (``step.finish(i, sample)``). With ``cadence`` c > 1 (Deforum's diffusion_cadence, Disco's
  turbo) only some frames are diffused (:func:`~discolib.animation.plan.diffused_frames`) and every written frame
  blends two warped chains: the newer diffused frame's sample warped on to frame ``i``, weight
  ``w = (i % c + 1) / c`` (``1 / c`` on a diffused frame, which is written blended too), and the chain of the
  diffused frame before it, weight ``1 - w`` (none before the second diffused frame: the newer chain alone).
  Which depth each chain's 3D warp uses is the policy's ``blend_depth``. The next diffused frame starts from the
  newer chain (never from a blended frame), warped once more with the depth of its own image.

A frame whose init strength keeps all of the init (strength 1, when the policy allows) is diffused in name only:
its warped init is its sample.

A resume replays what the blend needs from the diffused samples the run folder keeps (:class:`FrameStore`), so
it continues byte-identically inside a cadence window. Every decision that differs between Disco's guided and
Deforum's latent sampler is a field of the policy: nothing here reads ``image.mode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from discolib.animation import coherence, motion, perspective
from discolib.animation.plan import RenderPlan, diffused_frames
from discolib.animation.policy import AnimationPolicy
from discolib.animation.video_input import VideoInput
from discolib.models.depth import DepthEstimator, depth_for_warp, save_depth_png
from discolib.models.device import upload

__all__ = ["MOTION_3D_KEYS", "AnimationStep", "FrameInit", "FrameStore", "motion_3d_table", "quantize"]


@dataclass(frozen=True)
class FrameInit:
    """What frame ``i`` starts from.

    Attributes:
        image: ``(1, 3, H, W)`` in [0, 1] on the render device: the frame itself when ``final``, else the init to
            diffuse; None to diffuse from noise.
        final: the frame needs no sampler (a cadence in-between frame, already blended, or strength 1).
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


#: The 3D motion schedules in the order of :func:`motion_3d_table`'s columns.
MOTION_3D_KEYS = ("rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "translation_x", "translation_y", "translation_z")


def motion_3d_table(plan: RenderPlan, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Every frame's 3D camera motion, ``(frames, 6)``: ``rotation_3d_x/y/z`` then ``translation_x/y/z``.

    Uploaded once per run (without a host sync), so a frame only indexes it: no per-frame host-to-device copy.
    """
    table = torch.stack([torch.as_tensor(plan.values[k], dtype=torch.float64) for k in MOTION_3D_KEYS], dim=1)
    return upload(table.to(dtype), device)


class FrameStore(Protocol):
    """Where a run keeps the images a resume needs besides its frames (the render loop's run folder).

    Names: ``"diffused/000012"`` (frame 12's sample, kept while cadence blends), ``"color_ref"`` (the colour
    reference), ``"frames/000012"`` (a written frame; read only). A saved image must reach the disk before any frame
    handed over after it (the loop's writer is first in, first out).
    """

    def save(self, name: str, image: torch.Tensor) -> None: ...

    def load(self, name: str) -> torch.Tensor | None:
        """The image ``(1, 3, H, W)`` on the render device, or None when it is missing or unreadable."""
        ...


class AnimationStep:
    """The per-frame animation step of one run: ``step.first()`` / ``step(i)`` for what frame ``i`` starts from,
    then ``step.finish(i, sample)`` for the frame to write.

    Args:
        plan: the run's plan.
        policy: the sampler's animation policy.
        device: the render device.
        depth: the depth estimator of a 3D run (None otherwise).
        depth_dir: where to save each frame's depth map (``animation.save_depth_maps``), or None.
        start: the first frame this process renders (> 0 when resuming). With a ``store`` the step rebuilds its
            chains and colour reference from it; when something it needs is missing it resumes earlier: read
            :attr:`start` back.
        color_ref: the colour reference ``(1, 3, H, W)``, when known (e.g. a benchmark that calls ``step(i, prev)``).
        store: the run's :class:`FrameStore` (None: nothing is kept, e.g. a benchmark).
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
        store: FrameStore | None = None,
    ) -> None:
        self.plan, self.policy, self.device = plan, policy, device
        self.anim = plan.settings.animation
        self.depth, self.depth_dir, self.store = depth, depth_dir, store
        self.color_ref = color_ref
        self._color_hist: coherence.HistogramReference | None = None
        self._motion_3d: torch.Tensor | None = None
        self.diffused = diffused_frames(plan.settings, plan.n_frames, policy)
        # Blending needs a cadence (c = 1: weight 1, the written frame is the sample). Disco blends its preroll's
        # diffused frames too, so this is the cadence, not whether some frame is skipped.
        self.blends = self.anim.cadence > 1 and plan.motion in ("2D", "3D")
        self._new: torch.Tensor | None = None  # the newer diffused frame's chain, warped up to the last frame
        self._old: torch.Tensor | None = None  # the chain of the diffused frame before it
        self._pending: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (i, newer chain at i - 1, warped init)
        self._tween: torch.Tensor | None = None  # an in-between frame's blend, between step(i) and finish(i)
        self._depth_key: torch.Tensor | None = None  # one-entry depth cache: both chains often need the same map
        self._depth_val: torch.Tensor | None = None
        self._unmatched = -1  # the frame whose warped init became the colour reference (it is not matched)
        self._replaying = False
        # 8-bit CPU path (latent 2D, no cadence, bilinear): the previous frame as written (its uint8 (H, W, 3) array,
        # handed over by the loop through written()) is warped and colour-matched in uint8 as Deforum does, on
        # OpenCV; see eight_bit().
        self._eight_bit = self.eight_bit(plan, policy, device)
        self._new_u8: tuple[torch.Tensor, np.ndarray] | None = None  # (the frame tensor, its uint8 array)
        self._color_hist8: coherence.HistogramReference8 | None = None
        self.start = start
        self._video: VideoInput | None = None
        if plan.motion == "Video Input":
            # The flow of frame `start` also reads video frame start - 1; the previous written frame is the store's.
            frames = plan.video_frames(max(start - 1, 0))
            self._video = VideoInput.from_settings(plan.settings, frames, start=start, device=device)
            if start > 0:
                self._new = store.load(f"frames/{start - 1:06d}") if store is not None else None
                if self._new is None and self._video.flow is not None:  # nothing to warp: make the run again
                    flow = self._video.flow  # (built once: RAFT is large)
                    self._video = VideoInput.from_settings(plan.settings, plan.video_frames(0), device=device, flow=flow)
                    self.start = 0
        elif start > 0 and store is not None:
            self.start = self._resume(start, store)

    @staticmethod
    def eight_bit(plan: RenderPlan, policy: AnimationPolicy, device: torch.device) -> bool:
        """Whether a diffused frame's warped init is made on the 8-bit CPU path: ``animation.frames_8bit`` on, a latent
        (Deforum) render on the CPU with bilinear 2D motion, no perspective flip and no cadence. There the previous frame as written (8-bit)
        is warped in uint8 (:func:`~discolib.animation.motion.warp_2d_u8`: the float warp rounded to 8 bits, as
        Deforum's uint8 frame) and LAB / RGB colour coherence is Deforum's 8-bit recipe bit for bit
        (:func:`~discolib.animation.coherence.match_histogram_u8`); contrast, anti-blur and noise follow in float as
        before. Elsewhere the same 8 bits come from the float warp, rounded (:meth:`__call__`), and
        :func:`~discolib.animation.coherence.match_histogram_8bit`: the same bytes but for rounding ties."""
        anim = plan.settings.animation
        return (
            anim.frames_8bit
            and device.type == "cpu"
            and plan.motion == "2D"
            and not policy.quantize_chains
            and not anim.enable_perspective_flip
            and anim.sampling_mode_2d == "bilinear"
            and anim.cadence == 1
        )

    def written(self, image: torch.Tensor, frame: Any) -> None:
        """The loop hands over the uint8 ``(H, W, 3)`` array it wrote for ``image`` (the tensor :meth:`finish`
        returned), so the 8-bit path warps the frame as written without converting it again."""
        if self._eight_bit and isinstance(frame, np.ndarray) and image is self._new:
            self._new_u8 = (image, frame)

    def motion_changed(self, i: int) -> None:
        """Frame ``i``'s 3D motion in ``plan.values`` was set after the step uploaded its motion table (live mode sets
        each frame's camera as the frame starts): upload that row again, without a host sync."""
        if self._motion_3d is None:
            return  # made on first use, from the values as they are then
        row = torch.tensor([self.plan.values[k][i] for k in MOTION_3D_KEYS], dtype=torch.float64).to(self._motion_3d.dtype)
        self._motion_3d[i] = upload(row, self._motion_3d.device)

    def abandon(self, i: int) -> None:
        """Frame ``i`` was started (``step(i)``) but will not be finished (live mode's Stop mid-frame): forget what
        ``step(i)`` kept for it, so that making frame ``i`` again, with other controls, is what a render would do.
        Frame ``i``'s warp may have become the colour reference (Deforum takes the first warped frame)."""
        if self._pending is not None and self._pending[0] == i:
            self._pending = None
        if self._unmatched == i:
            self.color_ref, self._color_hist, self._color_hist8, self._unmatched = None, None, None, -1

    def _frame_u8(self) -> np.ndarray:
        """The newer chain's frame as uint8 ``(H, W, 3)``: the loop's array, else converted (exact: it is 8-bit)."""
        assert self._new is not None
        if self._new_u8 is not None and self._new_u8[0] is self._new:
            return self._new_u8[1]
        return coherence.to_u8(self._new)

    def _histogram8(self) -> coherence.HistogramReference8:
        if self._color_hist8 is None:  # the reference's half of the 8-bit matching, done once per run
            assert self.color_ref is not None
            self._color_hist8 = coherence.HistogramReference8.prepare(coherence.to_u8(self.color_ref), self.anim.color_coherence)
        return self._color_hist8

    # ------------------------------------------------------------------------------------------ per frame

    def first(self) -> FrameInit:
        """Frame 0: the video's first frame (Video Input), else from the init image (or a video file's first
        frame) or from noise.

        With an init strength that keeps all of it (Deforum's strength 1, where the policy allows) the init is the
        frame: "animate a photo" without diffusion.
        """
        plan = self.plan
        if self._video is not None:
            return self._diffused(0, self._video.first())
        cfg = float(plan.cfg_scale[0]) if plan.cfg_scale is not None else None
        init = plan.init_image(self.device)
        if init is None:
            return FrameInit(None, cfg_scale=cfg)
        if self.policy.full_strength_keeps_init and plan.first_strength >= 1.0:
            return FrameInit(init, final=True)
        return FrameInit(init, strength=plan.first_strength, cfg_scale=cfg)

    def __call__(self, i: int, prev: torch.Tensor | None = None) -> FrameInit:
        """Frame ``i > 0``. ``prev`` ``(1, 3, H, W)``: the previous diffused frame's sample, for a caller that keeps
        it itself (without :meth:`finish`); the render loop leaves it to the step."""
        if prev is not None:
            self._new = prev
        if self._video is not None:
            # Only the flow warp reads the previous frame (without it, each frame starts from its video frame).
            assert self._new is not None or self._video.flow is None, "frame 0 has not been finished"
            return self._diffused(i, self._video(i, self._new))
        assert self._new is not None, "frame 0 has not been finished"
        if not self.diffused[i]:
            self._advance(i)
            self._tween = self._blend(i)
            return FrameInit(self._tween, final=True)
        before = self._new
        warped_u8 = None
        if self._eight_bit:
            warped_u8 = self._warp_u8(i)
            warped, mask = coherence.from_u8(warped_u8, self.device), None
        else:
            warped, mask = self.warp(i, before, depth=self._new_depth(i))
            warped = self._chain(warped)
            if self.anim.frames_8bit and not self.blends:
                # Deforum's warped frame is uint8 (cadence chains stay float: Deforum's tween chains are float)
                warped = quantize(warped)
        self._pending = (i, before, warped)
        if self.anim.color_coherence != "None" and self.color_ref is None and self.anim.color_coherence_reference != "frame0":
            # Deforum: the first warped frame it meets becomes the reference, taken before contrast and noise and
            # not matched itself (color_match_sample = prev_img.copy()).
            self._set_color_ref(i, quantize(warped))
            self._unmatched = i
        if self._keeps_init(i):
            # Strength 1 keeps the warped frame as it is (pure depth parallax): no noise is added that no sampler
            # would take out again.
            return FrameInit(warped, final=True)
        return self._diffused(i, self.coherence(i, warped, mask, warped_u8=warped_u8))

    def _warp_u8(self, i: int) -> np.ndarray:
        """Frame ``i``'s 2D motion of the previous frame as written: ``(H, W, 4)`` uint8 (RGB + padding)."""
        v, anim = self.plan.value, self.anim
        return motion.warp_2d_u8(
            self._frame_u8(),
            v("angle", i),
            v("zoom", i),
            v("translation_x", i),
            v("translation_y", i),
            v("transform_center_x", i),
            v("transform_center_y", i),
            padding_mode=anim.border,
            sampling_mode=anim.sampling_mode_2d,
        )

    def finish(self, i: int, sample: torch.Tensor) -> torch.Tensor:
        """The frame ``i`` to write, ``(1, 3, H, W)`` in [0, 1] quantised to 8 bits, from what it was made of: the
        sampler's output on a diffused frame, else the FrameInit's image (an in-between frame's blend)."""
        if self._video is not None:
            self._new = quantize(sample)  # the next frame's flow warp starts from the frame as written
            return self._new
        if not self.diffused[i]:
            return quantize(self._tween if self._tween is not None else sample)
        ref_mode = self.anim.color_coherence_reference
        if ref_mode == "webui" and self.color_ref is not None and self.anim.color_coherence != "None":
            # sd-webui-deforum matches every sampled frame again after sampling (not legacy_colormatch).
            sample = self._match(sample.clamp(0, 1))
        if self.anim.color_force_grayscale:  # both Deforums grey the sample too
            sample = perspective.force_grayscale(sample)
        sample = quantize(sample)
        if self.blends and self.store is not None:
            self.store.save(f"diffused/{i:06d}", sample)  # before frame i is handed over: a resume may need it
        self._take_sample(i, sample)
        if i == 0 and self.anim.color_coherence != "None" and self.color_ref is None:
            no_init = not self.plan.settings.guidance.init_image
            if ref_mode == "frame0" or (ref_mode == "webui" and no_init):
                self._set_color_ref(0, sample)  # webui: frame 0 as sampled when it had no init
        out = self._blend(i)
        # Without an older chain the frame is the (8-bit) sample itself: the same tensor, so the depth the next
        # warp (and VR's eye views) asks for is estimated once.
        return out if out is self._new else quantize(out)

    # ------------------------------------------------------------------------------------------ chains

    def _take_sample(self, i: int, sample: torch.Tensor) -> None:
        """Diffused frame ``i``'s sample starts the newer chain; the one it replaces becomes the older chain."""
        pending, self._pending = self._pending, None
        if self.blends and pending is not None and pending[0] == i:
            _, before, warped = pending
            if self.policy.blend_depth == "own" or self.plan.motion != "3D":
                # Disco: oldFrameScaled = prevFrameScaled, the warped init itself (in 2D both warps are the same).
                self._old = warped
            else:
                # Deforum: the older chain steps into frame i with the depth of i's sample (turbo_next_image).
                self._old = self._chain(self.warp(i, before, depth=self.depth_of(sample))[0])
        self._new = sample

    def _advance(self, i: int) -> None:
        """An in-between frame ``i``: both chains take frame ``i``'s motion."""
        assert self._new is not None
        depth = self._new_depth(i)
        if self._old is not None:
            shared = depth if self.policy.blend_depth == "next" else None  # None: the chain's own depth
            self._old = self._chain(self.warp(i, self._old, depth=shared)[0])
        self._new = self._chain(self.warp(i, self._new, depth=depth)[0])

    def _blend(self, i: int) -> torch.Tensor:
        """Frame ``i`` as written: ``w * newer + (1 - w) * older``, ``w = (i % c + 1) / c`` (``1 / c`` on a
        diffused frame), or the newer chain alone when there is no older one."""
        assert self._new is not None
        c = self.anim.cadence
        w = 1.0 / c if self.diffused[i] else (i % c + 1) / c
        if self._old is None or w >= 1.0:
            return self._new
        return self._new * w + self._old * (1.0 - w)

    def _chain(self, image: torch.Tensor) -> torch.Tensor:
        """A chain image as the policy keeps it: 8-bit (Disco's PNG files) or float (Deforum)."""
        return quantize(image) if self.policy.quantize_chains else image

    def _new_depth(self, i: int) -> torch.Tensor | None:
        """The depth of the newer chain's image before its warp into frame ``i`` (3D only), saved as frame
        ``i - 1``'s depth map when asked."""
        if self.plan.motion != "3D":
            return None
        assert self._new is not None
        depth = self.depth_of(self._new)
        if self.depth_dir is not None and not self._replaying:
            save_depth_png(depth, self.depth_dir / f"{i - 1:06d}.png")
        return depth

    def depth_of(self, image: torch.Tensor) -> torch.Tensor:
        """The depth map the 3D warp of ``image`` ``(1, 3, H, W)`` uses, ``(1, 1, H, W)``; the last one is cached."""
        if image is self._depth_key and self._depth_val is not None:
            return self._depth_val
        assert self.depth is not None, "a 3D step needs a depth estimator"
        metric = bool(getattr(self.depth, "metric", False))
        depth = depth_for_warp(self.depth(image), self.anim.depth_convention, metric=metric)
        self._depth_key, self._depth_val = image, depth
        return depth

    # ------------------------------------------------------------------------------------------ resume

    def _resume(self, start: int, store: FrameStore) -> int:
        """Rebuild the state after frame ``start - 1`` from ``store``; returns the frame to resume at (earlier than
        ``start`` when a sample or the colour reference it needs is missing: that frame is made again)."""
        while start > 0:
            if self._replay(start, store):
                return start
            start = max(k for k in range(start) if self.diffused[k])  # make the last diffused frame again
            self._new = self._old = self.color_ref = None
            self._color_hist = self._color_hist8 = None
        return 0

    def _replay(self, start: int, store: FrameStore) -> bool:
        anim = self.anim
        if anim.color_coherence != "None":
            ref_at = self._color_ref_frame()
            if ref_at < start:
                ref = store.load("color_ref")
                if ref is None and ref_at == 0 and anim.color_coherence_reference == "frame0":
                    ref = store.load("frames/000000")  # frame 0 as written is that reference
                if ref is None:
                    return False
                self.color_ref, self._unmatched = ref, (ref_at if anim.color_coherence_reference != "frame0" else -1)
        if not self.blends:  # every frame diffused: the written frame is the sample
            self._new = store.load(f"frames/{start - 1:06d}")
            return self._new is not None
        keys = [k for k in range(start) if self.diffused[k]]
        later = keys[-1]
        earlier = keys[-2] if len(keys) > 1 else None
        first = store.load(f"diffused/{(earlier if earlier is not None else later):06d}")
        last = store.load(f"diffused/{later:06d}") if earlier is not None else first
        if first is None or last is None:
            return False
        self._replaying = True
        try:
            self._new, self._old = first, None
            if earlier is not None:
                for j in range(earlier + 1, later):
                    self._advance(j)
                before = self._new
                warped = self._chain(self.warp(later, before, depth=self._new_depth(later))[0])
                self._pending = (later, before, warped)
                self._take_sample(later, last)
            for j in range(later + 1, start):
                self._advance(j)
        finally:
            self._replaying = False
        return True

    def _color_ref_frame(self) -> int:
        """The frame at which the colour reference is taken (frame 0, or the first diffused frame after it)."""
        mode = self.anim.color_coherence_reference
        if mode == "frame0" or (mode == "webui" and not self.plan.settings.guidance.init_image):
            return 0
        return next((k for k in range(1, self.plan.n_frames) if self.diffused[k]), self.plan.n_frames)

    def _set_color_ref(self, i: int, image: torch.Tensor) -> None:
        self.color_ref, self._color_hist, self._color_hist8 = image, None, None
        if self.store is not None:
            self.store.save("color_ref", image)  # before any frame matched to it is handed over

    # ------------------------------------------------------------------------------------------ parts

    def _keeps_init(self, i: int) -> bool:
        return self.policy.full_strength_keeps_init and float(self.plan.strength[i]) >= 1.0

    def _diffused(self, i: int, init: torch.Tensor) -> FrameInit:
        plan = self.plan
        if self._keeps_init(i):
            return FrameInit(init, final=True)
        cfg = float(plan.cfg_scale[i]) if plan.cfg_scale is not None else None
        return FrameInit(init, strength=float(plan.strength[i]), init_scale=plan.init_scale, cfg_scale=cfg)

    def warp(self, i: int, prev: torch.Tensor, *, depth: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame ``i``'s motion applied to ``prev``: (warped ``(1, 3, H, W)`` in [0, 1], disocclusion mask
        ``(1, 1, H, W)`` bool or None). ``depth`` ``(1, 1, H, W)``: the 3D warp's depth map (default: ``prev``'s own,
        :meth:`depth_of`)."""
        plan, anim = self.plan, self.anim
        if plan.motion == "2D":
            if anim.enable_perspective_flip:  # both Deforums: flip @ rotation-zoom (their matmul drops the translation)
                v = plan.value
                m = perspective.flip_2d_motion(
                    (prev.shape[-2], prev.shape[-1]), v("angle", i), v("zoom", i), v("transform_center_x", i),
                    v("transform_center_y", i), self._flip(i, prev),
                )
                return perspective.warp_perspective(prev, m, anim.border, anim.sampling_mode_2d).clamp(0, 1), None
            warped = motion.warp_2d(
                prev,
                plan.value("angle", i),
                plan.value("zoom", i),
                plan.value("translation_x", i),
                plan.value("translation_y", i),
                plan.value("transform_center_x", i),
                plan.value("transform_center_y", i),
                padding_mode=anim.border,
                sampling_mode=anim.sampling_mode_2d,
            )
            return warped.clamp(0, 1), None
        if plan.motion == "3D":
            if depth is None:
                depth = self.depth_of(prev)
            if anim.enable_perspective_flip:  # sd-webui-deforum flips before the 3D warp, after predicting depth
                prev = perspective.warp_perspective(prev, self._flip(i, prev), anim.border, anim.sampling_mode_2d).clamp(0, 1)
            if self._motion_3d is None:
                self._motion_3d = motion_3d_table(plan, prev.device, prev.dtype)
            rot, trans = self._motion_3d[i : i + 1, :3], self._motion_3d[i : i + 1, 3:]
            warped, mask = motion.reproject_3d(prev, depth, rot, trans, **self.camera(i))
            return warped.clamp(0, 1), mask
        return prev, None

    def _flip(self, i: int, image: torch.Tensor) -> torch.Tensor:
        """Deforum's perspective flip of frame ``i`` as a ``(3, 3)`` homography of ``image``'s size."""
        h, w = image.shape[-2:]
        v = self.plan.value
        return perspective.perspective_flip_matrix(
            w, h, v("perspective_flip_theta", i), v("perspective_flip_phi", i), v("perspective_flip_gamma", i),
            v("perspective_flip_fv", i),
        )

    def camera(self, i: int) -> dict[str, Any]:
        """Keyword arguments of :func:`~discolib.animation.motion.reproject_3d` for frame ``i``: the 3D warp's camera,
        shared by VR mode's eye views. ``near``/``far`` are not passed: in the originals they never reach the motion."""
        anim = self.anim
        return {
            "fov_deg": self.plan.value("fov", i),
            "padding_mode": anim.padding_mode,
            "sampling_mode": anim.sampling_mode,
            "camera": "deforum",
            "aspect_ratio": self.plan.value("aspect_ratio_schedule", i),
        }

    def _histogram(self) -> coherence.HistogramReference:
        if self._color_hist is None:  # the reference's half of the matching, done once per run
            assert self.color_ref is not None
            self._color_hist = coherence.HistogramReference.prepare(self.color_ref, self.anim.color_coherence)
        return self._color_hist

    def _match(self, image: torch.Tensor, frame_u8: np.ndarray | None = None) -> torch.Tensor:
        """``image`` colour-matched to the reference: in 8 bits (``animation.frames_8bit``; straight from the 8-bit
        path's ``frame_u8`` when there is one) or in float."""
        space = self.anim.color_coherence
        if not self.anim.frames_8bit or coherence.space_of(space) not in coherence.SPACES_U8:
            return coherence.match_histogram(image, self._histogram(), space)  # float (HSV always)
        if image.device.type == "cpu":  # the run's 8-bit tables, not a float reference prepared and unused
            frame = frame_u8 if frame_u8 is not None else coherence.to_u8(image)
            return coherence.from_u8(coherence.match_histogram_u8(frame, self._histogram8()), self.device)
        return coherence.match_histogram_8bit(image, self.color_ref, space)  # an accelerator: the torch recipe

    def coherence(
        self, i: int, warped: torch.Tensor, mask: torch.Tensor | None, *, warped_u8: np.ndarray | None = None
    ) -> torch.Tensor:
        """Colour match to the reference, contrast, anti-blur and, per the policy, noise in disoccluded pixels and
        the noise schedule: the init of a diffused frame, ``(1, 3, H, W)`` in [0, 1]. ``warped_u8``: ``warped`` as
        the 8-bit path made it (uint8 ``(H, W, 3|4)``), matched in uint8 as Deforum does (LAB, RGB)."""
        plan, anim = self.plan, self.anim
        x = warped
        if anim.color_coherence != "None" and self.color_ref is not None and i != self._unmatched:
            x = self._match(x, warped_u8)
        if anim.color_force_grayscale:
            # dsd's warp-side grey applies OpenCV's BGR weights to its RGB frame (red and blue swapped); webui's not.
            dsd = anim.color_coherence_reference == "deforum"
            x = perspective.force_grayscale(x, perspective.DSD_WARP_GREY_WEIGHTS if dsd else perspective.GREY_WEIGHTS)
        contrast = plan.value("contrast_schedule", i)
        if contrast != 1.0:
            x = coherence.adjust_contrast(x, contrast)
        amount = plan.value("antiblur_amount", i)
        if amount > 0:
            x = coherence.unsharp_mask(
                x,
                amount,
                coherence.antiblur_kernel_size(plan.value("antiblur_kernel", i)),
                plan.value("antiblur_sigma", i),
                plan.value("antiblur_threshold", i) / 255.0,  # the setting is in 8-bit levels, as Deforum's
            )
        gen = plan.generator("coherence", i)
        if mask is not None and self.policy.fills_disocclusions and anim.fill_disocclusions:
            # Disocclusions have no source pixel: fresh noise lets the sampler invent content there instead of
            # smearing the border (a long-standing Deforum request).
            fill = upload(torch.rand(x.shape, generator=gen, dtype=x.dtype), x.device)
            x = torch.where(mask.expand_as(x), fill, x)
        noise = plan.value("noise_schedule", i)
        if self.policy.adds_noise and noise > 0:
            x = coherence.add_noise(
                x,
                noise,
                anim.noise_type,
                gen,
                perlin_cells=(anim.perlin_w, anim.perlin_h),
                perlin_octaves=anim.perlin_octaves,
                perlin_persistence=anim.perlin_persistence,
            )
        return x.clamp(0, 1)
