"""How a sampler's frames chain into an animation: the questions the animation step asks a sampler.

Each sampler exposes one :class:`AnimationPolicy` as its ``policy`` attribute, so the animation step and the render
loop never branch on ``image.mode``: Disco's guided sampler and Deforum's latent sampler differ only in these answers.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AnimationPolicy", "GUIDED_POLICY", "LATENT_POLICY"]


@dataclass(frozen=True)
class AnimationPolicy:
    """A sampler's animation behaviour.

    Attributes:
        preroll: the first ``animation.turbo_preroll`` frames are all diffused before cadence applies (Disco's turbo).
        fills_disocclusions: pixels a 3D warp uncovers get fresh uniform noise before sampling (Deforum); without it
            they keep the border fill (in Disco the warped frame is also the ``frames_scale`` loss target, which would
            pull noise-filled holes towards noise).
        adds_noise: ``animation.noise_schedule`` is added to the warped frame before sampling (Deforum).
        full_strength_keeps_init: an init strength of 1 returns the init unchanged, with no diffusion (Deforum's
            strength 1: pure motion, e.g. depth parallax of one photo).
    """

    preroll: bool
    fills_disocclusions: bool
    adds_noise: bool
    full_strength_keeps_init: bool


#: Disco Diffusion's guided pixel sampler.
GUIDED_POLICY = AnimationPolicy(preroll=True, fills_disocclusions=False, adds_noise=False, full_strength_keeps_init=False)
#: Deforum's latent img2img sampler.
LATENT_POLICY = AnimationPolicy(preroll=False, fills_disocclusions=True, adds_noise=True, full_strength_keeps_init=True)
