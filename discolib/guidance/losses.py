"""CLIP-guidance losses of Disco Diffusion v5.7 as pure functions, and :class:`ClipGuidance`.

Images here are in the diffusion model's space, **[-1, 1]**, ``(B, 3, H, W)``, except where stated.

What Disco's ``cond_fn`` computes for one step (and :meth:`ClipGuidance.loss` reproduces):

    for each CLIP model, for each of ``cutn_batches`` batches:
        cuts   = Dango cutouts of (x_in + 1) / 2 at that model's input size
        d      = spherical_dist_loss(embed(cuts), text_embeds)          # (cuts * B, P)
        clip  += sum_B mean_cuts( sum_P d * w ) * clip_guidance_scale / cutn_batches
    loss = clip + tv_loss(x_in).sum() * tv_scale + range_loss(pred_x0).sum() * range_scale
         + sat_loss(x_in) * sat_scale + init_loss(x_in, init).sum() * init_scale

with prompt weights ``w`` divided by ``|sum(w)|`` (Disco raises when that is below 1e-3).

Notes on Disco's behaviour:

* Disco differentiates the total loss w.r.t. ``x_in`` only, while its range loss is computed on
  ``pred_xstart`` (an *input* of ``x_in``, never chained back), so ``range_scale`` has no effect in Disco v5.x.
  Here the range term is applied to ``pred_x0`` when given (else to ``x_in``) and its gradient is returned
  separately by :meth:`ClipGuidance.grad`, so it works as the original CLIP-guided diffusion notebook intended.
  The settings reproduce Disco: ``guidance.range_loss_active`` (off by default) decides whether the run adapter
  passes ``range_scale`` on at all.
* Disco's init / frames loss is LPIPS (``lpips.LPIPS(net='vgg')``, :mod:`discolib.models.lpips`), passed in as
  ``init_loss``; without one the init loss is :func:`init_image_loss`, a per-image MSE (``guidance.init_loss mse``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from discolib.errors import InputError
from discolib.guidance.cutouts import (
    DISCO_DEFAULT_SCHEDULES,
    SCHEDULE_LENGTH,
    AugmentConfig,
    CutSchedules,
    CutSettings,
    cut_counts_at_step,
    make_cutouts,
)
from discolib.models.clip import ClipEnsemble

__all__ = [
    "ClipGuidance",
    "PromptWeightError",
    "clamp_grad_rms",
    "init_image_loss",
    "normalize_prompt_weights",
    "range_loss",
    "sat_loss",
    "spherical_dist_loss",
    "tv_loss",
    "warn_if_nonfinite",
    "weighted_prompt_loss",
    "zero_nan_grad",
]

_MIN_WEIGHT_SUM = 1e-3  # Disco's threshold for "weights sum to zero"
_NAN_MESSAGE = "non-finite values in the guidance gradient were zeroed (the step ran without guidance)"


class PromptWeightError(InputError):
    """Prompt weights that cannot be normalised (they sum to zero)."""


# --------------------------------------------------------------------------------------------------
# Pure losses
# --------------------------------------------------------------------------------------------------


def spherical_dist_loss(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise squared great-circle distance / 2 between embeddings.

    ``2 * arcsin(|x̂ - ŷ| / 2) ** 2`` on unit-normalised vectors, which equals ``θ² / 2`` for the
    angle ``θ`` between them: 0 for identical directions, π²/8 for orthogonal ones, π²/2 for opposite.

    Args:
        x: ``(N, D)`` image embeddings (any norm).
        y: ``(P, D)`` target embeddings (any norm).

    Returns:
        ``(N, P)`` distances.
    """
    x = F.normalize(x, dim=-1).unsqueeze(1)
    y = F.normalize(y, dim=-1).unsqueeze(0)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def normalize_prompt_weights(weights: Sequence[float] | Tensor) -> Tensor:
    """Divide prompt weights by the absolute value of their sum, as Disco does.

    Negative weights are allowed (they push away from a prompt); the sign of the sum is kept.

    Args:
        weights: ``(P,)`` raw weights.

    Returns:
        ``(P,)`` float32 weights with ``|sum| == 1``.

    Raises:
        PromptWeightError: if there are no weights or ``|sum| < 1e-3`` (Disco's check).
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    if w.ndim != 1 or w.numel() == 0:
        raise PromptWeightError(f"prompt weights must be a non-empty 1-D list, got shape {tuple(w.shape)}")
    total = float(w.sum())  # one host read, once per prompt change
    if abs(total) < _MIN_WEIGHT_SUM:
        raise PromptWeightError(
            f"prompt weights {w.tolist()} sum to {total:g}; the weights must not sum to 0 "
            "(they are divided by their sum)"
        )
    return w / abs(total)


def weighted_prompt_loss(
    image_embeds: Tensor, text_embeds: Tensor, weights: Sequence[float] | Tensor, *, normalize: bool = True
) -> Tensor:
    """Weighted spherical distance of each image embedding to the prompts.

    Args:
        image_embeds: ``(N, D)``.
        text_embeds: ``(P, D)``.
        weights: ``(P,)`` prompt weights; divided by ``|sum|`` unless ``normalize=False`` (then used
            as given: pass weights from :func:`normalize_prompt_weights` to skip the host read).

    Returns:
        ``(N,)`` ``sum_p w_p * spherical_dist_loss(image, text_p)``.

    Raises:
        PromptWeightError: the weights sum to zero, or their count does not match the prompts.
    """
    w = normalize_prompt_weights(weights) if normalize else torch.as_tensor(weights)
    if w.shape != (text_embeds.shape[0],):
        raise PromptWeightError(f"got {w.numel()} prompt weights for {text_embeds.shape[0]} prompts")
    dists = spherical_dist_loss(image_embeds, text_embeds)
    return dists @ w.to(device=dists.device, dtype=dists.dtype)


def tv_loss(x: Tensor) -> Tensor:
    """L2 total variation (Mahendran & Vedaldi), as in Disco.

    The image is replicate-padded by one pixel right and bottom, so the last row/column add nothing.

    Args:
        x: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` mean over C, H, W of ``dx² + dy²``.
    """
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx.square() + dy.square()).mean(dim=(1, 2, 3))


def range_loss(x: Tensor) -> Tensor:
    """Squared excursion outside [-1, 1].

    Args:
        x: ``(B, C, H, W)`` in model space.

    Returns:
        ``(B,)`` mean over C, H, W of ``(x - clamp(x, -1, 1))²``; 0 when ``x`` is inside [-1, 1].
    """
    return (x - x.clamp(-1, 1)).square().mean(dim=(1, 2, 3))


def sat_loss(x: Tensor) -> Tensor:
    """Disco's saturation loss: absolute excursion outside [-1, 1].

    Args:
        x: ``(B, C, H, W)`` in model space.

    Returns:
        ``(B,)`` mean over C, H, W of ``|x - clamp(x, -1, 1)|``. (Disco takes the mean over the batch
        too; :class:`ClipGuidance` does the same by averaging this.)
    """
    return (x - x.clamp(-1, 1)).abs().mean(dim=(1, 2, 3))


def init_image_loss(x: Tensor, init: Tensor) -> Tensor:
    """Distance of the current estimate to the init image: per-image **MSE** (Disco uses LPIPS).

    Args:
        x: ``(B, 3, H, W)`` in [-1, 1].
        init: ``(1, 3, H, W)`` or ``(B, 3, H, W)`` in [-1, 1].

    Returns:
        ``(B,)`` mean over C, H, W of ``(x - init)²``.
    """
    if init.shape[-3:] != x.shape[-3:]:
        raise ValueError(f"init image shape {tuple(init.shape)} does not match image shape {tuple(x.shape)}")
    return (x - init.to(device=x.device, dtype=x.dtype)).square().mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------------------------------
# Gradient post-processing
# --------------------------------------------------------------------------------------------------


def clamp_grad_rms(grad: Tensor, clamp_max: float) -> Tensor:
    """Scale ``grad`` down so its RMS is at most ``clamp_max`` (Disco's ``clamp_grad``).

    ``grad * min(1, clamp_max / rms)`` with ``rms = sqrt(mean(grad²))`` over the whole tensor (all batch
    items together, as Disco). A zero gradient is returned unchanged. No host synchronisation.

    Args:
        grad: any shape.
        clamp_max: maximum RMS, ``> 0`` (Disco default 0.05).
    """
    if not clamp_max > 0:
        raise ValueError(f"clamp_max must be > 0, got {clamp_max}")
    rms = grad.square().mean().sqrt()
    scale = (clamp_max / rms.clamp_min(torch.finfo(rms.dtype).tiny)).clamp(max=1.0)
    return grad * scale


def zero_nan_grad(grad: Tensor, *, whole: bool = True, check: bool = False) -> tuple[Tensor, Tensor]:
    """Replace a gradient containing NaN/inf by zeros, without a host sync unless asked.

    Disco zeroes the whole gradient when any element is NaN (a NaN anywhere means the step's guidance
    is garbage); ``whole=False`` zeroes only the non-finite elements instead.

    Args:
        grad: any shape.
        whole: zero the entire tensor if any element is non-finite (Disco) or only those elements.
        check: read the flag on the host now and warn (``RuntimeWarning``, shown once per call site by
            Python's default warning filter) if anything was zeroed. Otherwise keep the returned flag
            (e.g. OR it over steps) and pass it to :func:`warn_if_nonfinite` when convenient.

    Returns:
        ``(clean_grad, flag)``: the cleaned gradient and a 0-dim bool tensor, True if anything was
        non-finite.
    """
    finite = torch.isfinite(grad)
    flag = ~finite.all()
    if whole:
        clean = torch.where(flag, torch.zeros_like(grad), grad)
    else:
        clean = torch.where(finite, grad, torch.zeros_like(grad))
    if check and bool(flag):
        warnings.warn(_NAN_MESSAGE, RuntimeWarning, stacklevel=2)
    return clean, flag


def warn_if_nonfinite(flag: Tensor | bool, *, stacklevel: int = 2) -> bool:
    """Read a flag from :func:`zero_nan_grad` (one host sync) and warn once per call site if set."""
    hit = bool(flag)
    if hit:
        warnings.warn(_NAN_MESSAGE, RuntimeWarning, stacklevel=stacklevel)
    return hit


# --------------------------------------------------------------------------------------------------
# Guidance
# --------------------------------------------------------------------------------------------------


class ClipGuidance:
    """Disco's CLIP guidance loss for one prompt set; the samplers wrap a model function around it.

    Args:
        ensemble: the CLIP models.
        text_embeds: per ensemble member, ``(P, D_m)`` target embeddings (e.g. ``ensemble.encode_text``).
        weights: ``(P,)`` prompt weights (normalised by ``|sum|`` here, once).
        schedules: Disco cut schedules indexed by timestep, or fixed :class:`CutSettings`.
        clip_guidance_scale, tv_scale, range_scale, sat_scale, init_scale: term weights (Disco defaults
            5000, 0, 150, 0, 1000; ``init_scale`` only applies with an ``init_image``).
        init_image: ``(1, 3, H, W)`` in [-1, 1], the init loss's target.
        init_loss: ``d(x_in, init_image)`` -> ``(B, ...)`` per image (summed), e.g. an
            :class:`~discolib.models.lpips.Lpips` (Disco); ``None``: :func:`init_image_loss` (MSE).
        cutn_batches: how many independent cut batches per model per step (results are averaged).
        augment, aug: cutout augmentation switch and preset (see :mod:`discolib.guidance.cutouts`).
        total_steps: number of diffusion (training) timesteps that ``step`` values refer to.
    """

    def __init__(
        self,
        ensemble: ClipEnsemble,
        text_embeds: Sequence[Tensor],
        weights: Sequence[float] | Tensor,
        *,
        schedules: CutSchedules | CutSettings = DISCO_DEFAULT_SCHEDULES,
        clip_guidance_scale: float = 5000.0,
        tv_scale: float = 0.0,
        range_scale: float = 150.0,
        sat_scale: float = 0.0,
        init_scale: float = 0.0,
        init_image: Tensor | None = None,
        init_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        cutn_batches: int = 4,
        augment: bool = True,
        aug: str | AugmentConfig = "still",
        total_steps: int = SCHEDULE_LENGTH,
    ) -> None:
        if len(text_embeds) != len(ensemble):
            raise ValueError(f"got text embeddings for {len(text_embeds)} CLIP models, ensemble has {len(ensemble)}")
        if int(cutn_batches) < 1:
            raise ValueError(f"cutn_batches must be >= 1, got {cutn_batches}")
        if init_image is not None and (init_image.ndim != 4 or init_image.shape[1] != 3):
            raise ValueError(f"init_image must have shape (1, 3, H, W), got {tuple(init_image.shape)}")
        w = normalize_prompt_weights(weights)
        for i, (member, emb) in enumerate(zip(ensemble, text_embeds, strict=True)):
            if emb.ndim != 2 or emb.shape[0] != w.numel():
                raise ValueError(
                    f"text embeddings of CLIP model {i} ({member.spec.model_id}) have shape {tuple(emb.shape)}; "
                    f"expected ({w.numel()}, D) for {w.numel()} prompt weights"
                )
        self.ensemble = ensemble
        self.text_embeds = [e.detach().float().to(m.device) for m, e in zip(ensemble, text_embeds, strict=True)]
        self.weights = [w.to(m.device) for m in ensemble]
        self.schedules = schedules
        self.clip_guidance_scale = float(clip_guidance_scale)
        self.tv_scale = float(tv_scale)
        self.range_scale = float(range_scale)
        self.sat_scale = float(sat_scale)
        self.init_scale = float(init_scale)
        self.init_image = init_image
        self.init_loss = init_image_loss if init_loss is None else init_loss
        self.cutn_batches = int(cutn_batches)
        self.augment = augment
        self.aug = aug
        self.total_steps = int(total_steps)
        self.last_loss: Tensor | None = None  # detached total of the last call, for progress display

    @classmethod
    def from_prompts(
        cls,
        ensemble: ClipEnsemble,
        prompts: Sequence[tuple[str, float]] | Mapping[str, float],
        **kwargs: object,
    ) -> ClipGuidance:
        """Build from ``(text, weight)`` pairs (already split from Disco's ``"text:weight"``)."""
        pairs = list(prompts.items()) if isinstance(prompts, Mapping) else [(str(t), float(w)) for t, w in prompts]
        if not pairs:
            raise PromptWeightError("CLIP guidance needs at least one text prompt")
        texts = [t for t, _ in pairs]
        return cls(ensemble, ensemble.encode_text(texts), [w for _, w in pairs], **kwargs)  # type: ignore[arg-type]

    def cut_settings(self, step: float) -> CutSettings:
        """Cut counts at model timestep ``step``."""
        if isinstance(self.schedules, CutSettings):
            return self.schedules
        return cut_counts_at_step(self.schedules, step, self.total_steps)

    def _clip_batch_loss(self, x01: Tensor, member_index: int, cuts: CutSettings, generator: torch.Generator) -> Tensor:
        """One cut batch for one model: ``sum_B mean_cuts(weighted distance)`` (scalar, unscaled)."""
        member = self.ensemble[member_index]
        batch = x01.shape[0]
        images = make_cutouts(
            x01,
            member.image_size,
            cuts.overview,
            cuts.innercut,
            cuts.ic_pow,
            cuts.icgray_p,
            generator=generator,
            augment=self.augment,
            aug=self.aug,
        )
        embeds = member.encode_image(images.to(member.device))
        per_cut = weighted_prompt_loss(embeds, self.text_embeds[member_index], self.weights[member_index], normalize=False)
        return per_cut.view(cuts.cutn, batch).mean(0).sum().to(x01.device)

    def _other_terms(self, x_in: Tensor, pred_x0: Tensor | None) -> Tensor:
        total = x_in.new_zeros(())
        if self.tv_scale:
            total = total + tv_loss(x_in).sum() * self.tv_scale
        if self.range_scale:
            total = total + range_loss(x_in if pred_x0 is None else pred_x0).sum() * self.range_scale
        if self.sat_scale:
            total = total + sat_loss(x_in).mean() * self.sat_scale
        if self.init_scale and self.init_image is not None:
            init = self.init_image.to(device=x_in.device, dtype=x_in.dtype)
            total = total + self.init_loss(x_in, init).sum() * self.init_scale
        return total

    def _check(self, x_in: Tensor) -> None:
        if x_in.ndim != 4 or x_in.shape[1] != 3:
            raise ValueError(f"x_in must have shape (B, 3, H, W), got {tuple(x_in.shape)}")

    def loss(
        self, x_in: Tensor, step: float, generator: torch.Generator, *, pred_x0: Tensor | None = None
    ) -> Tensor:
        """Total guidance loss (scalar), differentiable w.r.t. ``x_in`` (and ``pred_x0``).

        Args:
            x_in: ``(B, 3, H, W)`` in [-1, 1], the image CLIP looks at (Disco: ``pred_x0 * fac + x * (1 - fac)``).
            step: model timestep indexing the cut schedules (see :func:`~discolib.guidance.cutouts.cut_counts_at_step`).
            generator: source of all cutout randomness.
            pred_x0: ``(B, 3, H, W)`` for the range loss; ``x_in`` when omitted.

        Keeps every cut batch's graph until backward; :meth:`grad` is the memory-light equivalent.
        """
        self._check(x_in)
        cuts = self.cut_settings(step)
        x01 = (x_in + 1) / 2
        total = self._other_terms(x_in, pred_x0)
        if self.clip_guidance_scale:
            for m in range(len(self.ensemble)):
                for _ in range(self.cutn_batches):
                    total = total + self._clip_batch_loss(x01, m, cuts, generator) * (
                        self.clip_guidance_scale / self.cutn_batches
                    )
        self.last_loss = total.detach()
        return total

    def grad(
        self, x_in: Tensor, step: float, generator: torch.Generator, *, pred_x0: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Gradients of :meth:`loss`, computed one cut batch at a time (as Disco, to bound memory).

        ``x_in`` and ``pred_x0`` are detached here; chain the results back to the noisy sample with
        ``torch.autograd.grad([x_in, pred_x0], x, [g_x_in, g_pred_x0])``. Same random draws as
        :meth:`loss` for the same generator state.

        Returns:
            ``(d loss / d x_in, d loss / d pred_x0)``, the second ``None`` when ``pred_x0`` is not given.
        """
        self._check(x_in)
        cuts = self.cut_settings(step)
        xi = x_in.detach().requires_grad_(True)
        pi = pred_x0.detach().requires_grad_(True) if pred_x0 is not None else None
        with torch.enable_grad():
            other = self._other_terms(xi, pi)
            inputs = [xi] if pi is None else [xi, pi]
            if other.requires_grad:
                grads: list[Tensor | None] = list(torch.autograd.grad(other, inputs, allow_unused=True))
            else:  # every non-CLIP term is switched off
                grads = [None] * len(inputs)
            g_x = grads[0] if grads[0] is not None else torch.zeros_like(xi)
            g_p = None if pi is None else (grads[1] if grads[1] is not None else torch.zeros_like(pi))
            total = other.detach()
            if self.clip_guidance_scale:
                scale = self.clip_guidance_scale / self.cutn_batches
                for m in range(len(self.ensemble)):
                    for _ in range(self.cutn_batches):
                        # A fresh graph per batch, freed by its own backward: peak memory is one batch.
                        batch_loss = self._clip_batch_loss((xi + 1) / 2, m, cuts, generator) * scale
                        g_x = g_x + torch.autograd.grad(batch_loss, xi)[0]
                        total = total + batch_loss.detach()
        self.last_loss = total
        return g_x, g_p
