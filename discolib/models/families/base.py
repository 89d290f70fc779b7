"""What a latent model family is: the contract between the latent sampler and one model family.

A *family* is a kind of latent diffusion model that diffusers implements (Stable Diffusion 1.x/2.x, SDXL, SD 3.5,
Flux.1, Kolors, HunyuanDiT). The sampler (:mod:`discolib.samplers.latent`) runs one loop for all of them; a
:class:`Family` supplies what differs:

- how a prompt becomes conditioning (:meth:`Family.encode`, :meth:`Family.negative`): a dict of tensors, batch 1,
  always through the family's own diffusers pipeline (``comps.pipe.encode_prompt``), so the embeddings are the
  pipeline's to the bit;
- the per-call constants (:meth:`Family.prepare`: SDXL's size/crop ids, Flux's position ids and guidance);
- one denoiser call (:meth:`Family.predict`) returning what the scheduler's ``step`` expects, float32
  ``(N, C, h, w)``: latents stay unpacked in the loop (Flux packs 2x2 patches inside ``predict``);
- the timestep schedule (:meth:`Family.set_timesteps`, e.g. Flux's resolution-dependent shift) and img2img's rule for
  how many steps a strength runs (:meth:`Family.init_steps`), each as the family's own img2img pipeline does it;
- a tiny random model in the diffusers layout (:meth:`Family.build_tiny`) for tests and offline smoke runs.

Conditioning dicts ("embeds") hold float tensors, blended by prompt weight, and optional integer/bool attention
masks, combined with a logical OR (a token any blended prompt attends to stays visible). Every tensor in an embeds
dict has the batch in dim 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from discolib.errors import InputError

if TYPE_CHECKING:  # why: only for annotations; latent.py imports this module
    from discolib.models.latent import LatentComponents

__all__ = ["Embeds", "Family", "FamilyError", "blend_embeds", "cat_embeds", "expand_embeds", "pooled_embeds",
           "text_device"]

Embeds = dict[str, torch.Tensor]


class FamilyError(InputError):
    """A model's files name a family discolib cannot run (the message names what was found)."""


def _is_mask(t: torch.Tensor) -> bool:
    return not torch.is_floating_point(t)


def blend_embeds(parts: list[tuple[Embeds, float]]) -> Embeds:
    """``sum(w_i * E_i) / sum(w_i)`` per float entry (computed in float32, returned in each entry's dtype); masks
    are OR-ed. All parts must have the same keys and shapes."""
    total = sum(w for _, w in parts)
    first = parts[0][0]
    out: Embeds = {}
    for key, ref in first.items():
        if _is_mask(ref):
            m = ref.clone()
            for e, _ in parts[1:]:
                m = torch.maximum(m, e[key])
            out[key] = m
        else:
            acc = sum(e[key].float() * (w / total) for e, w in parts)
            assert isinstance(acc, torch.Tensor)
            out[key] = acc.to(ref.dtype)
    return out


def expand_embeds(e: Embeds, batch: int) -> Embeds:
    """Every entry expanded from batch 1 to ``batch`` (views, no copy)."""
    return {k: v.expand(batch, *v.shape[1:]) if v.shape[0] == 1 else v for k, v in e.items()}


def cat_embeds(first: Embeds, second: Embeds) -> Embeds:
    """Entry-wise concatenation along the batch (the unconditional half first, as diffusers' pipelines do)."""
    return {k: torch.cat([first[k], second[k]]) for k in first}


@dataclass(frozen=True)
class Family:
    """One model family. Subclasses override the methods their models need; the defaults are SD-like.

    Attributes:
        name: short id used in settings and errors ("sd", "sdxl", "sd3", "flux", "kolors", "hunyuandit").
        label: human name for messages.
        pipeline: diffusers txt2img pipeline class name (``model_index.json``'s ``_class_name``).
        img2img_pipeline: diffusers img2img pipeline class name (tests compare the noising with it).
        denoiser: the pipeline component that denoises: "unet" or "transformer".
        flow: flow matching (``x_t = (1 - s) x0 + s noise``, the model predicts ``noise - x0``) instead of the
            variance-preserving ``add_noise`` of DDPM-style schedulers.
        uses_cfg: classifier-free guidance with a negative prompt (False: Flux, whose guidance is an embedding).
        size_multiple: width and height must be multiples of this (VAE factor, times 2 for Flux's 2x2 patches).
        pipeline_names: other ``_class_name`` values in ``model_index.json`` that mean this family.
    """

    name: str
    label: str
    pipeline: str
    img2img_pipeline: str
    denoiser: str = "unet"
    flow: bool = False
    uses_cfg: bool = True
    size_multiple: int = 8
    pipeline_names: tuple[str, ...] = ()

    #: Component names of the pipeline that are text encoders (offloaded together, counted in errors).
    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)

    # ---------------------------------------------------------------------------------------------- detection
    def matches_index(self, class_name: str) -> bool:
        """Whether a ``model_index.json`` ``_class_name`` (txt2img, img2img or another variant) is this family."""
        # (an empty name: a family with no such pipeline, e.g. HunyuanDiT's img2img, never matches a blank index)
        return bool(class_name) and class_name in (self.pipeline, self.img2img_pipeline, *self.pipeline_names)

    def matches_denoiser(self, config: dict[str, Any]) -> bool:
        """Whether a denoiser's ``config.json`` (``unet/`` or ``transformer/``) is this family's."""
        return False

    def pipeline_kwargs(self, *, t5: bool = True) -> dict[str, Any]:
        """Extra ``from_pretrained``/``from_single_file`` kwargs of the pipeline class (e.g. SD3 without T5:
        ``{"text_encoder_3": None, "tokenizer_3": None}``). Raise :class:`FamilyError` for an option the family
        cannot honour (Flux needs its T5)."""
        return {}

    def check(self, comps: LatentComponents) -> None:
        """Refuse loaded components this family cannot run (raise :class:`FamilyError`), at load time, before any
        run folder or frame. Default: nothing to refuse."""

    # ---------------------------------------------------------------------------------------------- prompts
    def encode(self, comps: LatentComponents, text: str) -> Embeds:
        """Conditioning of one prompt, batch 1, on ``comps.device`` in ``comps.dtype`` (masks stay integer)."""
        raise NotImplementedError

    def negative(self, comps: LatentComponents, text: str) -> Embeds:
        """Unconditional conditioning for CFG from a negative prompt (``""`` when none): by default ``encode``."""
        return self.encode(comps, text)

    # ---------------------------------------------------------------------------------------------- denoising
    def prepare(
        self, comps: LatentComponents, *, width: int, height: int, batch: int, cfg_scale: float
    ) -> dict[str, Any]:
        """Constants of one sampling call (for CFG the batch is doubled by the caller before ``predict``)."""
        return {}

    def predict(
        self, comps: LatentComponents, x: torch.Tensor, t: torch.Tensor, embeds: Embeds, extra: dict[str, Any]
    ) -> torch.Tensor:
        """One denoiser call: ``x`` (N, C, h, w) scaled model input, ``t`` the scheduler's timestep (0-dim, on the
        device), ``embeds`` with batch N. Returns the prediction the scheduler's ``step`` takes, float32, x's shape."""
        raise NotImplementedError

    def set_timesteps(self, scheduler: Any, steps: int, *, width: int, height: int) -> None:
        """``scheduler.set_timesteps`` as this family's pipeline calls it, on the host."""
        scheduler.set_timesteps(steps, device="cpu")

    def init_steps(self, steps: int, strength: float) -> int:
        """How many of ``steps`` an img2img call of ``strength`` runs. SD-style pipelines floor ``steps * strength``;
        SD3 and Flux floor the *skipped* steps instead (``steps - int(steps - steps * strength)``)."""
        if self.flow:
            return steps - int(max(steps - min(steps * strength, steps), 0))
        return min(int(steps * strength), steps)

    # ---------------------------------------------------------------------------------------------- tiny
    def build_tiny(self, folder: Path) -> None:
        """Random tiny components under fixed seeds, saved in the diffusers layout with ``model_index.json``
        written last (its presence marks a complete folder)."""
        raise NotImplementedError(f"no tiny model for the {self.label} family")


def text_device(pipe: Any, names: tuple[str, ...]) -> torch.device:
    """The device of the pipeline's first text encoder present: where ``encode_prompt`` must put the token ids
    (text encoders may be offloaded to the CPU while the denoiser is not)."""
    for name in names:
        enc = getattr(pipe, name, None)
        if enc is not None:
            return enc.device
    return torch.device("cpu")


def pooled_embeds(comps: LatentComponents, embeds: torch.Tensor, pooled: torch.Tensor) -> Embeds:
    """The usual conditioning of the pooled families (SDXL, Kolors, SD 3.5, Flux), on the denoiser's device and in its
    compute dtype: ``prompt_embeds`` (1, L, D) and ``pooled_prompt_embeds`` (1, P)."""
    return {
        "prompt_embeds": embeds.to(device=comps.device, dtype=comps.dtype),
        "pooled_prompt_embeds": pooled.to(device=comps.device, dtype=comps.dtype),
    }


def flow_alpha_bar(sigma: torch.Tensor) -> torch.Tensor:
    """The variance-preserving ``alpha_bar`` with the same signal-to-noise ratio as flow level ``sigma``:
    ``(1 - s)^2 / ((1 - s)^2 + s^2)`` (CLIP guidance scales its step with it)."""
    a = (1 - sigma) ** 2
    return a / (a + sigma**2).clamp_min(math.ulp(1.0))
