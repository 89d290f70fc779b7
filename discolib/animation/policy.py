"""How a sampler's frames chain into an animation: the questions the animation step asks a sampler.

Each sampler exposes one :class:`AnimationPolicy` as its ``policy`` attribute, so the animation step and the render
loop never branch on ``image.mode``: Disco's guided sampler and Deforum's latent sampler differ only in these answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AnimationPolicy", "GUIDED_POLICY", "LATENT_POLICY", "policy_for"]


@dataclass(frozen=True)
class AnimationPolicy:
    """A sampler's animation behaviour.

    Attributes:
        preroll: frames ``0 .. animation.turbo_preroll`` are all diffused before cadence applies (Disco's turbo:
            ``frame_num <= turbo_preroll``).
        fills_disocclusions: with ``animation.fill_disocclusions`` on (off by default: neither original does it),
            pixels a 3D warp uncovers get fresh uniform noise before img2img; a guided sampler never does (in Disco
            the warped frame is also the ``frames_scale`` loss target, which would pull noise-filled holes towards
            noise).
        adds_noise: ``animation.noise_schedule`` is added to the warped frame before sampling (Deforum).
        full_strength_keeps_init: an init strength of 1 returns the init unchanged, with no diffusion (Deforum's
            strength 1: pure motion, e.g. depth parallax of one photo).
        blend_depth: with cadence, each written frame blends two warped chains, the newer diffused frame's and the
            one before it (weight ``(i % cadence + 1) / cadence`` on the newer; ``1 / cadence`` on a diffused
            frame). ``"next"`` (Deforum's render_animation tween loop): both chains of a frame are warped with the
            depth of the newer chain's image, and the older chain's step into a diffused frame ``k`` uses the depth
            of ``k``'s sample. ``"own"`` (Disco's turbo, ``oldFrameScaled`` / ``prevFrameScaled``): each chain is
            warped with the depth of its own image, so the older chain at ``k`` is ``k``'s warped init.
        quantize_chains: the warped chains are rounded to 8 bits after every warp (Disco keeps them as PNG files
            between frames); Deforum keeps them as floats.
        seeds_per_diffused_frame: the seed advances once per diffused frame (Deforum's ``next_seed`` after each
            diffusion: cadence 3 gives diffused frames seed, seed+1, ...); off, once per frame (Disco: ``seed += 1``
            on every frame, turbo-skipped ones too).
    """

    preroll: bool
    fills_disocclusions: bool
    adds_noise: bool
    full_strength_keeps_init: bool
    blend_depth: Literal["next", "own"] = "next"
    quantize_chains: bool = False
    seeds_per_diffused_frame: bool = True


#: Disco Diffusion's guided pixel sampler.
GUIDED_POLICY = AnimationPolicy(
    preroll=True,
    fills_disocclusions=False,
    adds_noise=False,
    full_strength_keeps_init=False,
    blend_depth="own",
    quantize_chains=True,
    seeds_per_diffused_frame=False,
)
#: Deforum's latent img2img sampler.
LATENT_POLICY = AnimationPolicy(
    preroll=False,
    fills_disocclusions=True,
    adds_noise=True,
    full_strength_keeps_init=True,
    blend_depth="next",
    quantize_chains=False,
    seeds_per_diffused_frame=True,
)


def policy_for(mode: str) -> AnimationPolicy:
    """The policy of the sampler family ``image.mode`` names (``"guided"`` or ``"latent"``): what the plan needs
    before a sampler exists (which frames are diffused, how seeds advance)."""
    return GUIDED_POLICY if mode == "guided" else LATENT_POLICY
