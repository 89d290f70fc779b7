"""Latent diffusion sampling (every model family): txt2img and img2img over diffusers components.

The loop is written here rather than hidden in ``StableDiffusionPipeline.__call__`` because animation needs the
latents, the noise and every step in hand. The shape of it follows k-diffusion:

- the model is one function ``out = model_fn(x, t, cond)`` returning the denoiser's prediction (epsilon, v, x0 or
  a flow velocity, see ``cond.prediction_type``) for the *scaled* model input ``x`` (B, C, H/f, W/f) at timestep
  ``t``, with classifier-free guidance already applied inside it (conditional and unconditional in one batched
  call). What differs between model families (SD 1.x/2.x, SDXL, SD 3.5, Flux, Kolors, HunyuanDiT: how a prompt
  conditions, how the denoiser is called, the timestep schedule) comes from the components'
  :class:`~discolib.models.families.Family`; this loop is the same for all;
- guidance is composed by wrapping: each entry of ``model_fn_wrappers`` maps a model function to a new one
  (``wrapper(model_fn) -> model_fn``), applied in order, so the first wrapper is innermost. CLIP guidance
  attaches this way; :meth:`LatentCond.denoised` gives it the predicted clean latents;
- ``callback(dict(i, n, t, x, denoised, alpha_bar[, preview]))`` is called after every step.

Weighted prompts, Disco style: ``["a castle:2", "fog:-0.5"]`` or ``[("a castle", 2.0), ("fog", -0.5)]``. Each text
is encoded once (and cached on the components) and the conditioning tensors (embeddings, pooled embeddings) are
blended as ``sum(w_i * E_i) / sum(w_i)`` (attention masks are OR-ed):
only the ratios of the weights matter, and a negative weight extrapolates away from that text. The weights must
sum to a positive number. The negative prompt is blended the same way and replaces the unconditional embedding.

img2img follows diffusers: with ``steps`` and ``strength`` only the last ``Family.init_steps(steps, strength)``
timesteps of the schedule run (``int(steps * strength)`` for SD-style models), and the init latents get noise for
the first of them (``add_noise``, or ``scale_noise`` for flow matching). Two ends are exact: ``strength == 0`` (or so
small that no step remains) returns the VAE round trip of the init image, and ``strength >= 1`` starts from pure
noise and ignores the init entirely (diffusers' plain img2img would leak a trace of the init at strength 1).

No host synchronisation happens inside the step loop of this module: per-step constants are computed before it,
the step noise of ancestral schedulers comes from a generator on the latents' device, and nothing is read back
unless a callback asks for previews.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny
from diffusers.utils.torch_utils import randn_tensor

from discolib.animation.policy import LATENT_POLICY, AnimationPolicy
from discolib.errors import InputError
from discolib.guidance.cutouts import CutSchedules
from discolib.guidance.losses import ClipGuidance, clamp_grad_rms, zero_nan_grad
from discolib.models.clip import ClipEnsemble
from discolib.models.device import resolve_device, resolve_dtype, upload
from discolib.models.families import Embeds, Family, blend_embeds, cat_embeds, expand_embeds
from discolib.models.families.base import flow_alpha_bar
from discolib.models.latent import LatentComponents, make_scheduler
from discolib.models.load import load_clip_ensemble, load_latent
from discolib.ops import stream_seed, x0_from_eps
from discolib.samplers.base import FrameRequest, make_step_callback
from discolib.samplers.config import LatentConfig
from discolib.schedules.prompts import split_weight

__all__ = [
    "LatentCond",
    "LatentRequest",
    "LatentSampler",
    "LatentSettingError",
    "LatentSizeWarning",
    "ModelFn",
    "decode_latents",
    "denoise_latents",
    "embed_conditioning",
    "embed_weighted",
    "encode_conditioning",
    "encode_image",
    "encode_prompt",
    "parse_weighted_prompts",
    "predicted_x0",
    "sample_latent",
]

PromptInput = str | Sequence[str | tuple[str, float]]


class LatentSettingError(InputError):
    """A latent sampling setting is invalid; the message names the setting and what was expected."""


class LatentSizeWarning(UserWarning):
    """An init image did not match width x height and was resized."""


@dataclass
class LatentCond:
    """What the model function needs besides ``x`` and ``t`` at one step.

    Attributes:
        cond: conditional conditioning (the family's tensors: ``prompt_embeds`` (B, L, D) and what else the family
            uses, e.g. ``pooled_prompt_embeds``), batch B, in the denoiser's dtype.
        uncond: the unconditional (negative prompt) conditioning, same keys, or None when CFG is off.
        cfg_scale: guidance scale; the unconditional pass runs only when it is > 1 (Flux: its guidance embedding).
        alpha_bar: 0-dim float32 tensor on the latents' device, the cumulative alpha of this step: the model input
            ``x`` is ``sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * eps`` (flow models: the alpha_bar of the same
            signal-to-noise ratio).
        prediction_type: the model's output kind: "epsilon", "v_prediction", "sample" or "flow" (``noise - x0``).
        step: index of this step in the loop (0-based).
        sigma: flow models: 0-dim tensor, the noise level of this step (``x = (1 - sigma) x0 + sigma noise``).
    """

    cond: Embeds
    uncond: Embeds | None
    cfg_scale: float
    alpha_bar: torch.Tensor
    prediction_type: str
    step: int
    sigma: torch.Tensor | None = None

    def denoised(self, x: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        """Predicted clean latents (B, C, h, w) from the model input ``x`` and the model's output."""
        if self.prediction_type == "flow":
            assert self.sigma is not None
            return x - self.sigma.to(x.device, torch.float32) * model_output
        return predicted_x0(x, model_output, self.alpha_bar, self.prediction_type)


ModelFn = Callable[[torch.Tensor, torch.Tensor, LatentCond], torch.Tensor]
ModelFnWrapper = Callable[[ModelFn], ModelFn]
Callback = Callable[[dict[str, object]], None]


def predicted_x0(
    x: torch.Tensor, model_output: torch.Tensor, alpha_bar: torch.Tensor | float, prediction_type: str
) -> torch.Tensor:
    """Clean latents implied by a model output at noise level ``alpha_bar``.

    Args:
        x: the (scaled, variance-preserving) model input (B, C, h, w).
        model_output: the UNet's prediction, same shape.
        alpha_bar: cumulative alpha of the step, float or 0-dim tensor.
        prediction_type: "epsilon", "v_prediction" or "sample".
    """
    a = torch.as_tensor(alpha_bar, dtype=torch.float32, device=x.device)
    if prediction_type == "epsilon":
        return x0_from_eps(x, model_output, a)
    if prediction_type == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * model_output
    if prediction_type == "sample":
        return model_output
    raise LatentSettingError(f"unknown prediction_type {prediction_type!r} (epsilon, v_prediction or sample)")


# --------------------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------------------

def parse_weighted_prompts(prompts: PromptInput, *, setting: str = "prompts") -> list[tuple[str, float]]:
    """Normalise prompts to ``[(text, weight), ...]``.

    Accepts one string, or a list of strings (``"text:weight"``, weight 1 when absent) and ``(text, weight)``
    pairs. Strings are split by :func:`discolib.schedules.prompts.split_weight`, as every prompt is:
    ``"a photo: sunset"`` keeps its colon since what follows is not a number, and a URL keeps its ``host:port``.
    """
    items: Sequence[str | tuple[str, float]] = [prompts] if isinstance(prompts, str) else prompts
    out: list[tuple[str, float]] = []
    for item in items:
        if isinstance(item, str):
            text, weight = split_weight(item)
        elif isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
            text, weight = item[0], float(item[1])
        else:
            raise LatentSettingError(f"{setting}: expected 'text:weight' strings or (text, weight) pairs, got {item!r}")
        if not math.isfinite(weight):
            raise LatentSettingError(f"{setting}: weight of {text!r} must be a finite number, got {weight}")
        out.append((text.strip(), weight))
    if not out:
        raise LatentSettingError(f"{setting}: at least one prompt is needed")
    total = sum(w for _, w in out)
    if total <= 1e-6:
        raise LatentSettingError(
            f"{setting}: weights must sum to a positive number (they are normalised by their sum), got {total:g}"
        )
    return out


def encode_conditioning(comps: LatentComponents, text: str, *, negative: bool = False) -> Embeds:
    """The family's conditioning of one prompt (batch 1, the denoiser's dtype and device); cached per text (LRU).

    ``negative``: as the unconditional side of CFG (:meth:`~discolib.models.families.Family.negative`; SDXL makes
    an empty negative prompt zeros). A prompt longer than the tokenizer's maximum is truncated with a warning, as
    the text encoder cannot see past it.
    """
    fam = comps.family_obj
    # A family whose negative side is its plain encoding shares the cache entries of both sides.
    negative = negative and type(fam).negative is not Family.negative
    # A separate slot for the negative side (never a prefix of the text: "neg:x" is a prompt a user may type).
    key = (text, str(comps.device), str(comps.dtype), *(("negative",) if negative else ()))
    cache = comps.embedding_cache
    hit = cache.get(key)
    if hit is not None:
        cache.move_to_end(key)
        return hit
    tok = comps.tokenizer
    max_len = int(getattr(tok, "model_max_length", 0) or 0)
    # Only where the first tokenizer is the only reader (SD, SDXL: CLIP); SD 3.5, Flux, HunyuanDiT and Kolors read
    # longer prompts through their T5/ChatGLM encoders (the pipelines warn themselves when those truncate).
    if comps.family in ("sd", "sdxl") and tok is not None and 0 < max_len < 100_000:
        n_tokens = len(tok.tokenize(text)) + 2  # + start and end tokens
        if n_tokens > max_len:
            warnings.warn(
                f"prompt {text[:40]!r}... has {n_tokens} tokens; the text encoder reads only the first {max_len}",
                stacklevel=3,
            )
    with torch.no_grad():
        emb = fam.negative(comps, text) if negative else fam.encode(comps, text)
    cache[key] = emb
    while len(cache) > max(comps.embedding_cache_size, 1):
        cache.popitem(last=False)
    return emb


def encode_prompt(comps: LatentComponents, text: str) -> torch.Tensor:
    """Text embeddings (1, L, D) of one prompt (the conditioning's ``prompt_embeds``), cached per text."""
    return encode_conditioning(comps, text)["prompt_embeds"]


def embed_conditioning(comps: LatentComponents, prompts: list[tuple[str, float]], *, negative: bool = False) -> Embeds:
    """Blend of prompt conditionings ``sum(w_i * E_i) / sum(w_i)`` (masks OR-ed), batch 1."""
    if len(prompts) == 1:
        return encode_conditioning(comps, prompts[0][0], negative=negative)
    return blend_embeds([(encode_conditioning(comps, text, negative=negative), w) for text, w in prompts])


def embed_weighted(comps: LatentComponents, prompts: list[tuple[str, float]]) -> torch.Tensor:
    """Blend of prompt embeddings ``sum(w_i * E_i) / sum(w_i)``, (1, L, D) in the denoiser's dtype."""
    return embed_conditioning(comps, prompts)["prompt_embeds"]


# --------------------------------------------------------------------------------------------------------------
# VAE boundary: images (B, 3, H, W) in [0, 1] <-> scaled latents (B, C, H/f, W/f)
# --------------------------------------------------------------------------------------------------------------


def _vae_scaling(vae: torch.nn.Module) -> tuple[float, float]:
    cfg = vae.config
    return float(getattr(cfg, "scaling_factor", 1.0) or 1.0), float(getattr(cfg, "shift_factor", 0.0) or 0.0)


@torch.no_grad()
def encode_image(comps: LatentComponents, image: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, C, H/f, W/f) float32 of images (B, 3, H, W) in [0, 1].

    AutoencoderKL: the posterior mean (deterministic, so img2img of the same frame is repeatable), then
    ``(z - shift) * scaling_factor``. AutoencoderTiny: its latents are already in the UNet's space
    (scaling_factor 1).
    """
    vae = comps.vae
    x = (image.to(device=vae.device, dtype=vae.dtype) * 2 - 1).contiguous()
    enc = vae.encode(x)
    z = enc.latents if isinstance(vae, AutoencoderTiny) else enc.latent_dist.mode()
    scale, shift = _vae_scaling(vae)
    return ((z.float() - shift) * scale).to(comps.device)


@torch.no_grad()
def decode_latents(comps: LatentComponents, latents: torch.Tensor, *, use_preview_vae: bool = False) -> torch.Tensor:
    """Images (B, 3, H, W) float32 in [0, 1] from scaled latents (B, C, h, w).

    ``use_preview_vae`` decodes with the AutoencoderTiny (TAESD) when the components have one: much faster,
    slightly softer. TAESD takes the UNet's latents directly (its scaling_factor is 1), AutoencoderKL takes
    ``latents / scaling_factor + shift``; both return [-1, 1].
    """
    vae = comps.preview_vae if use_preview_vae and comps.preview_vae is not None else comps.vae
    scale, shift = _vae_scaling(vae)
    z = latents.float() / scale + shift
    out = vae.decode(z.to(device=vae.device, dtype=vae.dtype)).sample
    return ((out.float() + 1) / 2).clamp(0, 1)


# --------------------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------------------


def _check_settings(
    comps: LatentComponents, width: int, height: int, steps: int, cfg_scale: float, strength: float
) -> None:
    f = max(comps.vae_scale_factor, comps.family_obj.size_multiple)
    why = "the VAE's down-sampling factor" if f == comps.vae_scale_factor else (
        f"the VAE's factor times the {comps.family_obj.label} patch size"
    )
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v % f:
            raise LatentSettingError(f"{name} must be a positive multiple of {f} ({why}), got {v!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise LatentSettingError(f"steps must be an integer >= 1, got {steps!r}")
    if not math.isfinite(cfg_scale) or cfg_scale < 0:
        raise LatentSettingError(f"cfg_scale must be a finite number >= 0, got {cfg_scale!r}")
    if not math.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise LatentSettingError(f"strength must be in [0, 1], got {strength!r}")


def _prepare_init_image(image: torch.Tensor, width: int, height: int, *, check_range: bool = True) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise LatentSettingError(f"init_image must be a tensor (B, 3, H, W) in [0, 1], got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 3:
        raise LatentSettingError(f"init_image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if check_range:
        lo, hi = torch.aminmax(image.detach().float())
        if lo < -1e-3 or hi > 1 + 1e-3:  # one host read per call, before the step loop
            raise LatentSettingError(f"init_image values must be in [0, 1], got [{float(lo):.3g}, {float(hi):.3g}]")
    if tuple(image.shape[-2:]) != (height, width):
        warnings.warn(
            f"init_image is {image.shape[-1]}x{image.shape[-2]}, resized to width x height = {width}x{height} "
            "(bicubic, antialiased)",
            LatentSizeWarning,
            stacklevel=3,
        )
        image = F.interpolate(image.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return image.clamp(0, 1)


def _expand_batch(t: torch.Tensor, batch: int, setting: str) -> torch.Tensor:
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    raise LatentSettingError(f"{setting} has batch {t.shape[0]}, expected 1 or {batch}")


def _make_base_model_fn(comps: LatentComponents, extra: dict[str, object]) -> ModelFn:
    fam = comps.family_obj

    def model_fn(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
        """The family's denoiser prediction with classifier-free guidance; float32 (B, C, h, w)."""
        if cond.uncond is None or cond.cfg_scale <= 1.0:
            return fam.predict(comps, x, t, cond.cond, extra)
        # One batched call for both passes: twice the batch costs far less than two launches on a GPU.
        both = fam.predict(comps, torch.cat([x, x]), t, cat_embeds(cond.uncond, cond.cond), extra)
        uncond, text = both.chunk(2)
        return uncond + cond.cfg_scale * (text - uncond)

    return model_fn


def _alpha_bars(scheduler: object, timesteps: torch.Tensor, begin: int) -> torch.Tensor:
    """Cumulative alpha per loop step (float32, host), computed once before the loop.

    Karras-style schedulers (Euler, Heun, LMS, ...) keep latents at variance ``1 + sigma^2`` and scale the model
    input by ``1 / sqrt(1 + sigma^2)``, so ``alpha_bar = 1 / (1 + sigma^2)`` with the sigma of each step.
    The others (DDIM, PNDM, DPM-Solver, LCM, UniPC) feed latents as they are, at ``alphas_cumprod[t]``.
    """
    n = len(timesteps)
    sigmas = getattr(scheduler, "sigmas", None)
    if _is_flow(scheduler):  # flow matching: the alpha_bar of the same signal-to-noise ratio
        assert sigmas is not None
        return flow_alpha_bar(torch.as_tensor(sigmas, dtype=torch.float32).cpu()[begin : begin + n])
    init_sigma = float(scheduler.init_noise_sigma)  # type: ignore[attr-defined]
    if init_sigma > 1.0 and sigmas is not None:
        sig = torch.as_tensor(sigmas, dtype=torch.float32).cpu()[begin : begin + n]
        return 1.0 / (1.0 + sig**2)
    ac = scheduler.alphas_cumprod.float().cpu()  # type: ignore[attr-defined]
    idx = timesteps.detach().cpu().round().long().clamp(0, len(ac) - 1)
    return ac[idx]


def _is_flow(scheduler: object) -> bool:
    """Flow-matching schedulers noise with ``scale_noise`` and have no ``add_noise``."""
    return hasattr(scheduler, "scale_noise") and not hasattr(scheduler, "add_noise")


def _flow_sigmas(scheduler: object, begin: int, n: int) -> torch.Tensor:
    """The noise level of each loop step of a flow-matching scheduler (float32, host)."""
    return torch.as_tensor(scheduler.sigmas, dtype=torch.float32).cpu()[begin : begin + n]  # type: ignore[attr-defined]


def _noising_coefficients(scheduler: object, t0: torch.Tensor) -> tuple[float, float]:
    """``(a, b)`` with ``scheduler.add_noise(x0, noise, t0) == a * x0 + b * noise``, as host numbers.

    ``add_noise`` is linear in ``x0`` and ``noise`` for every diffusers scheduler, so probing it with ones and zeros
    on the host gives its exact coefficients for any solver (sigma- or alpha-parameterised) without copying the
    scheduler's tables to the device for every frame.
    """
    one, zero = torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)
    if _is_flow(scheduler):  # (1 - sigma) * x0 + sigma * noise, linear as well
        a = scheduler.scale_noise(one, t0, zero)  # type: ignore[attr-defined]
        b = scheduler.scale_noise(zero, t0, one)  # type: ignore[attr-defined]
        return float(a.reshape(-1)[0]), float(b.reshape(-1)[0])
    a = scheduler.add_noise(one, zero, t0)  # type: ignore[attr-defined]
    b = scheduler.add_noise(zero, one, t0)  # type: ignore[attr-defined]
    return float(a.reshape(-1)[0]), float(b.reshape(-1)[0])


@dataclass(frozen=True, kw_only=True)
class LatentRequest:
    """One txt2img / img2img call of :func:`sample_latent` (or :func:`denoise_latents`).

    Attributes:
        prompts: weighted prompts (module docstring): ``"text"``, ``["text:w", ...]`` or ``[(text, w), ...]``.
        negative: negative prompt(s), same forms; replaces the unconditional embedding of CFG.
        width, height: output size in pixels, multiples of the VAE factor (8).
        steps: scheduler steps for the full schedule (img2img runs ``int(steps * strength)`` of them).
        cfg_scale: classifier-free guidance scale; ``<= 1`` skips the unconditional pass (sd-turbo uses 0).
        scheduler: name for :func:`discolib.models.latent.make_scheduler`.
        eta: DDIM's eta (Deforum's ``ddim_eta``), for schedulers whose ``step`` takes one; others ignore it.
        seed: int or a ``torch.Generator``: same seed and settings give the same image.
        init_image: (B, 3, H, W) in [0, 1] for img2img; another size is resized (bicubic) with a
            :class:`LatentSizeWarning`.
        strength: img2img noise strength in [0, 1]; 0 returns the VAE round trip of the init, 1 ignores it.
        init_latents: scaled latents (B, C, h, w) to use instead of encoding ``init_image`` (saves a VAE pass).
        noise: the initial noise (B, C, h, w), standard normal, instead of drawing it from ``seed``.
        callback: called after every step with ``{"i", "n", "t", "x", "denoised", "alpha_bar"}`` (latents), plus
            ``"preview"`` (B, 3, H, W) in [0, 1] every ``preview_every`` steps and at the last step.
        preview_every: decode a preview every N steps (with the preview VAE if any); 0 = never.
        model_fn_wrappers: functions ``model_fn -> model_fn`` applied in order (first is innermost).
        batch_size: images per call when no batched tensor input sets it.
        check_init_range: read ``init_image``'s value range back to the host and refuse values outside [0, 1].
            ``False`` is for callers that guarantee the range (the render loop's own clamped frames): on an
            accelerator that read would stall the frame loop once per frame.
        decode_with_preview_vae: :func:`sample_latent` decodes the result with the AutoencoderTiny (faster,
            softer) if present.
    """

    prompts: PromptInput
    negative: PromptInput = ""
    width: int = 512
    height: int = 512
    steps: int = 30
    cfg_scale: float = 7.5
    scheduler: str = "euler_a"
    eta: float = 0.0
    seed: int | torch.Generator = 0
    init_image: torch.Tensor | None = None
    strength: float = 0.75
    init_latents: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    callback: Callback | None = None
    preview_every: int = 0
    model_fn_wrappers: Sequence[ModelFnWrapper] = ()
    batch_size: int = 1
    check_init_range: bool = True
    decode_with_preview_vae: bool = False


@torch.no_grad()
def denoise_latents(comps: LatentComponents, request: LatentRequest) -> torch.Tensor:
    """Run the sampler and return the final scaled latents (B, C, height/f, width/f), float32.

    Runs under ``torch.no_grad()``; a wrapper that needs gradients (CLIP guidance) opens ``torch.enable_grad()``
    itself. Raises as :func:`sample_latent`.
    """
    width, height, steps, strength = request.width, request.height, request.steps, request.strength
    cfg_scale, preview_every, callback = request.cfg_scale, request.preview_every, request.callback
    init_image, init_latents, noise = request.init_image, request.init_latents, request.noise
    _check_settings(comps, width, height, steps, cfg_scale, strength)
    if not isinstance(preview_every, int) or preview_every < 0:
        raise LatentSettingError(f"preview_every must be an integer >= 0, got {preview_every!r}")
    device = comps.device
    f = comps.vae_scale_factor
    shape_hw = (height // f, width // f)

    use_init = (init_image is not None or init_latents is not None) and strength < 1.0
    if use_init and init_latents is None:
        assert init_image is not None
        init_image = _prepare_init_image(init_image, width, height, check_range=request.check_init_range)

    given = [t for t in (init_latents, noise) if t is not None]
    if use_init and init_latents is None and init_image is not None:
        given.append(init_image)
    batch = max([request.batch_size, *(int(t.shape[0]) for t in given)])
    latent_shape = (batch, comps.latent_channels, *shape_hw)
    for name, t in (("init_latents", init_latents), ("noise", noise)):
        if t is not None and tuple(t.shape[1:]) != latent_shape[1:]:
            raise LatentSettingError(f"{name} must have shape (B, {latent_shape[1]}, {shape_hw[0]}, {shape_hw[1]}) "
                                     f"for {width}x{height}, got {tuple(t.shape)}")

    # Seeds: the initial noise comes from a CPU generator (same noise on every device); the per-step noise of
    # ancestral schedulers from a generator on the latents' device, seeded from the first, so drawing it never
    # copies from the host inside the loop.
    seed = request.seed
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator("cpu").manual_seed(int(seed))
    if noise is None:
        noise = randn_tensor(latent_shape, generator=gen, device=gen.device, dtype=torch.float32)
    noise = _expand_batch(upload(noise.to(torch.float32), device), batch, "noise")
    step_seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    step_gen = torch.Generator(device=device).manual_seed(step_seed)

    # Text: weighted blends, cached per text; CFG only when the family uses it and it changes the result.
    fam = comps.family_obj
    cond_emb = embed_conditioning(comps, parse_weighted_prompts(request.prompts, setting="prompts"))
    # diffusers turns CFG off for LCM-distilled UNets of the newer families (time_cond_proj_dim: the guidance scale
    # is an embedding there); the SD path keeps its old rule.
    lcm_embedded = comps.family != "sd" and getattr(comps.unet.config, "time_cond_proj_dim", None) is not None
    do_cfg = fam.uses_cfg and cfg_scale > 1.0 and not lcm_embedded
    uncond_emb = (
        embed_conditioning(comps, parse_weighted_prompts(request.negative, setting="negative"), negative=True)
        if do_cfg else None
    )
    cond_b = expand_embeds(cond_emb, batch)
    uncond_b = expand_embeds(uncond_emb, batch) if uncond_emb is not None else None
    extra = fam.prepare(comps, width=width, height=height, batch=batch, cfg_scale=cfg_scale)

    sched = make_scheduler(request.scheduler, comps.scheduler_config)
    # The scheduler lives on the host (its timesteps and sigmas are a few numbers it branches on); the denoiser
    # gets the timesteps uploaded once without a sync. diffusers' set_timesteps(device=cuda) would copy them from
    # pageable memory (a sync) for every frame of an animation.
    fam.set_timesteps(sched, steps, width=width, height=height)
    timesteps_host = sched.timesteps
    begin = 0
    if use_init:
        init_steps = fam.init_steps(steps, strength)
        begin = max(steps - init_steps, 0) * sched.order
        timesteps_host = timesteps_host[begin:]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin)  # also spares the schedulers a per-step timestep lookup
    # (MPS has no float64, and some schedulers make float64 timesteps on the host.)
    timesteps = upload(timesteps_host.float() if device.type == "mps" else timesteps_host, device)

    if use_init:
        x0 = init_latents if init_latents is not None else encode_image(comps, init_image)  # type: ignore[arg-type]
        x0 = _expand_batch(x0.to(device=device, dtype=torch.float32), batch, "init_latents")
        if len(timesteps_host) == 0:
            return x0.clone()
        keep, add = _noising_coefficients(sched, timesteps_host[:1])
        latents = x0 * keep + noise * add
    else:
        latents = noise * getattr(sched, "init_noise_sigma", 1.0)  # flow schedulers start at sigma 1: pure noise

    flow = _is_flow(sched)
    alpha_bars = upload(_alpha_bars(sched, timesteps_host, begin), device)
    sigmas = upload(_flow_sigmas(sched, begin, len(timesteps_host)), device) if flow else None
    prediction_type = "flow" if flow else str(sched.config.get("prediction_type", "epsilon"))
    model_fn = _make_base_model_fn(comps, extra)
    for wrap in request.model_fn_wrappers:
        model_fn = wrap(model_fn)
    step_params = inspect.signature(sched.step).parameters
    step_kwargs: dict[str, object] = {"generator": step_gen} if "generator" in step_params else {}
    if "eta" in step_params:
        step_kwargs["eta"] = float(request.eta)
    n = len(timesteps)
    has_scale = hasattr(sched, "scale_model_input")  # flow-matching schedulers have none
    # The UNet gets the timestep on its device; the scheduler the host copy: DDIM, PNDM and LCM branch on its
    # value (``prev_t >= 0``), which would read a device tensor back every step.

    for i in range(n):
        t, t_host = timesteps[i], timesteps_host[i]
        x_in = sched.scale_model_input(latents, t_host) if has_scale else latents
        cond = LatentCond(cond_b, uncond_b, cfg_scale, alpha_bars[i], prediction_type, i,
                          None if sigmas is None else sigmas[i])
        out = model_fn(x_in, t, cond)
        x_prev = sched.step(out, t_host, latents, **step_kwargs, return_dict=True).prev_sample
        if callback is not None:
            denoised = cond.denoised(x_in, out)
            info: dict[str, object] = {
                "i": i, "n": n, "t": t_host, "x": latents, "denoised": denoised, "alpha_bar": alpha_bars[i],
            }
            if preview_every and (i % preview_every == 0 or i == n - 1):
                info["preview"] = decode_latents(comps, denoised, use_preview_vae=True)
            callback(info)
        latents = x_prev
    return latents


def sample_latent(comps: LatentComponents, request: LatentRequest) -> torch.Tensor:
    """txt2img / img2img with a Stable-Diffusion-style model. Returns images (B, 3, height, width) in [0, 1].

    ``comps`` come from :func:`discolib.models.latent.load_latent_components`; ``request`` says what to make.

    Raises:
        LatentSettingError: an invalid setting (the message names it).
        ValueError: unknown scheduler name (lists the valid ones).
    """
    latents = denoise_latents(comps, request)
    return decode_latents(comps, latents, use_preview_vae=request.decode_with_preview_vae)


# --------------------------------------------------------------------------------------------------------------
# Optional CLIP guidance in latent mode, and the frame sampler used by the render loop
# --------------------------------------------------------------------------------------------------------------


def latent_clip_guidance(
    comps: LatentComponents,
    guidance: ClipGuidance,
    *,
    generator: torch.Generator,
    steps: int,
    first_step: int = 0,
    clamp_max: float | None = 0.05,
) -> ModelFnWrapper:
    """A model-function wrapper that steers the latents with Disco's CLIP loss (k-diffusion-style composition).

    At each step the predicted clean latents are decoded (with the AutoencoderTiny when there is one: cheap and
    differentiable, else the full VAE), the loss from :class:`~discolib.guidance.losses.ClipGuidance` (the same cutouts and
    losses as guided mode) is differentiated back to the latents, and the model output is shifted as
    guided-diffusion's ``condition_score`` does: ``eps' = eps + sqrt(1 - abar) * dL/dx``. The UNet itself is not
    differentiated (the gradient flows through the x0 formula and the decoder only).
    """
    vae = comps.preview_vae if comps.preview_vae is not None else comps.vae

    def wrap(model_fn: ModelFn) -> ModelFn:
        def guided(x: torch.Tensor, t: torch.Tensor, cond: LatentCond) -> torch.Tensor:
            out = model_fn(x, t, cond)
            a = cond.alpha_bar.to(x.device, torch.float32)
            sa, s = a.sqrt(), (1 - a).sqrt()
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                x0 = cond.denoised(xg, out.detach())
                img = _decode_for_grad(vae, x0) * 2 - 1
                # The cut schedules are indexed by a 0-999 timestep; derive it from the loop position (no host read).
                timestep = 999.0 * (1.0 - (first_step + cond.step) / max(steps, 1))
                g_in, _ = guidance.grad(img, timestep, generator)
                grad = torch.autograd.grad(img, xg, g_in)[0]
            grad, _ = zero_nan_grad(grad)
            if clamp_max is not None:
                grad = clamp_grad_rms(grad, clamp_max)
            if cond.prediction_type == "epsilon":
                return out + s * grad
            if cond.prediction_type == "v_prediction":
                eps = s * x + sa * out
                return (eps + s * grad - s * x) / sa
            if cond.prediction_type == "flow":
                # x0 = x - sigma * v: the predicted clean latents move by sigma * grad down the loss, more when noisy
                # (as condition_score's shift grows with the noise level).
                return out + grad
            return out - grad  # "sample": move the predicted x0 down the loss gradient

        return guided

    return wrap


def _decode_for_grad(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Differentiable decode of scaled latents to (B, 3, H, W) in [0, 1]."""
    scale, shift = _vae_scaling(vae)
    z = (latents / scale + shift).to(vae.dtype)
    return ((vae.decode(z).sample.float() + 1) / 2).clamp(0, 1)


class LatentSampler:
    """The latent sampler: components loaded once from a :class:`LatentConfig`, one image per :class:`FrameRequest`.

    What a request means here: no ``init`` is txt2img; with ``init`` it is img2img at denoising strength
    ``1 - init_strength`` (Deforum's strength is the fraction of the init kept; 1 gives the init's VAE round trip).
    ``cfg_scale`` None takes the config's; the request's negative prompts (weights made positive) replace the
    config's ``negative_prompt`` when there are any. ``skip_steps`` and ``init_scale`` are guided mode's, ignored.
    """

    policy: AnimationPolicy = LATENT_POLICY

    def __init__(
        self,
        config: LatentConfig,
        *,
        device: torch.device | None = None,
        progress: bool = False,
        components: LatentComponents | None = None,
    ) -> None:
        """``components``: already built components to use instead of loading ``config.latent_model`` (benchmarks
        and tools that build their own, e.g. a random-weight architecture at full size)."""
        self.config = config
        self.device = device or resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.width, self.height = config.width, config.height
        self.progress = progress
        self.comps = components if components is not None else load_latent(
            config.latent_model,
            self.device,
            self.dtype,
            random_ok=config.random_weights,
            vae=config.fast_vae or None,
            channels_last=self.device.type == "cuda",
            compile_unet=config.compile,
            single_file_config=config.single_file_config or None,
            lora=config.lora or None,
            lora_scale=config.lora_scale,
            t5=config.t5,
            offload_text_encoders=config.offload_text_encoders,
            vae_tiling=config.vae_tiling,
            fp8_weights=config.fp8_weights,
        )
        if self.comps.is_inpainting:  # its UNet wants mask channels a render has none of: say so, not torch
            raise LatentSettingError(
                f"models.latent_model: {config.latent_model!r} is an inpainting checkpoint (its UNet takes 9 input "
                "channels); renders need a text-to-image model. Inpainting checkpoints fill revealed areas in "
                "`discolib animate --fill latent --latent-model ...`"
            )
        try:  # fail now on a bad name, or one that does not fit the model's kind
            make_scheduler(config.scheduler, self.comps.scheduler_config)
        except ValueError as err:
            raise LatentSettingError(f"latent.scheduler: {err}") from None
        g = config.guidance
        self.ensemble: ClipEnsemble | None = None
        self.cut_schedules: CutSchedules | None = None
        if g.clip_guidance_scale > 0:
            self.ensemble = load_clip_ensemble(g.clip_models, self.device, torch.float32, random_ok=config.random_weights)
            self.cut_schedules = CutSchedules.from_disco(g.cut_overview, g.cut_innercut, g.cut_ic_pow, g.cut_icgray_p)

    def preview(self, info: dict[str, object]) -> torch.Tensor:
        """The step's predicted image (B, 3, H, W) in [0, 1], decoded with the fast VAE when there is one."""
        return decode_latents(self.comps, info["denoised"], use_preview_vae=True)  # type: ignore[arg-type]

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] on ``device`` (see the class docstring for the request's meaning)."""
        c = self.config
        positive = [(p.text, p.weight) for p in request.prompts.positive]
        negative: PromptInput = [(p.text, abs(p.weight)) for p in request.prompts.negative] or c.negative_prompt
        init = request.init
        keep = request.init_strength
        # A host generator: the same noise on every device, and drawing it never reads a device value back.
        gen = torch.Generator("cpu").manual_seed(request.seed)
        wrappers: list[ModelFnWrapper] = []
        if self.ensemble is not None:
            assert self.cut_schedules is not None
            g = c.guidance
            # Cut sizes and positions are drawn on the host: a CPU generator keeps them free of device syncs.
            cut_gen = torch.Generator("cpu").manual_seed(stream_seed(request.seed, "cuts"))
            denoise = 1.0 if init is None else 1.0 - keep
            first_step = c.steps - self.comps.family_obj.init_steps(c.steps, denoise)  # the family's img2img rule
            guidance = ClipGuidance.from_prompts(
                self.ensemble,
                positive,
                schedules=self.cut_schedules,
                clip_guidance_scale=g.clip_guidance_scale,
                tv_scale=g.tv_scale,
                range_scale=g.range_scale_applied,
                sat_scale=g.sat_scale,
                cutn_batches=g.cutn_batches,
                augment=not g.skip_augs,
                aug=g.augmentation,
            )
            wrappers.append(
                latent_clip_guidance(
                    self.comps, guidance, generator=cut_gen, steps=c.steps, first_step=first_step, clamp_max=g.grad_clamp
                )
            )
        host_check = self.device.type == "cpu"
        return sample_latent(
            self.comps,
            LatentRequest(
                prompts=positive,
                negative=negative,
                width=self.width,
                height=self.height,
                steps=c.steps,
                cfg_scale=c.cfg_scale if request.cfg_scale is None else request.cfg_scale,
                scheduler=c.scheduler,
                eta=c.eta,
                seed=gen,
                # FrameRequest.init is in [0, 1] by contract (the render loop's frames are clamped). On the CPU the
                # range check is free and refuses a bad init; on an accelerator it would read the range back every
                # frame, so the init is clamped instead.
                init_image=None if init is None else (init.to(self.device) if host_check else init.to(self.device).clamp(0.0, 1.0)),
                check_init_range=host_check,
                strength=1.0 if init is None else 1.0 - keep,
                callback=make_step_callback(request),
                preview_every=0,  # the render loop asks for previews when it wants them (see preview)
                model_fn_wrappers=wrappers,
                # models.fast_vae names an AutoencoderTiny: it decodes the frames too, not only the previews.
                decode_with_preview_vae=bool(c.fast_vae),
            ),
        )
