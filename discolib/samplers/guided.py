"""CLIP-guided pixel diffusion (Disco Diffusion), over any diffusers scheduler.

The pieces, k-diffusion style:

* :func:`unet_eps_fn` turns a guided-diffusion UNet (as a diffusers ``UNet2DModel``) into a model function
  ``eps = model_fn(x, t)`` (the learned-variance channels are not needed by DDIM, PLMS or DPM-Solver).
* :func:`clip_guided` *wraps* a model function with Disco's CLIP guidance: at each step it predicts the clean
  image (through the cheap secondary model, Disco's default, or through the main model), mixes it with the noisy
  sample as Disco does (``x_in = pred * sqrt(1 - abar) + x * (1 - sqrt(1 - abar))``), takes the gradient of the
  guidance loss, zeroes non-finite values, clamps its RMS to ``clamp_max`` and shifts eps by
  ``-sqrt(1 - abar) * grad`` (guided-diffusion's ``condition_score``).
* :func:`sample_pixels` runs any diffusers scheduler (DDIM with ``eta``, Disco's order-2 PLMS, DPM-Solver++) from
  noise or from a noised init image, with Disco's symmetry transformations and a callback per step.
* Step spacing is Disco's: ``steps`` run at ``ddim{steps}`` respacing of ``diffusion_steps = (1000 // steps) *
  steps`` training steps (:func:`make_pixel_scheduler`), the models taking ``t * 1000 / diffusion_steps``.
* :class:`GuidedSampler` builds all of it from a :class:`~discolib.samplers.config.GuidedConfig` and makes one image
  per :class:`~discolib.samplers.base.FrameRequest`.

Disco bugs not copied: prompts are tokenised without their ``:weight`` suffix; the first inner cut is not always
grey (see :mod:`discolib.guidance.cutouts`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerOutput
from tqdm.auto import tqdm

from discolib.animation.policy import GUIDED_POLICY, AnimationPolicy
from discolib.guidance.cutouts import CutSchedules
from discolib.guidance.losses import ClipGuidance, clamp_grad_rms, warn_if_nonfinite, zero_nan_grad
from discolib.io.images import load_image
from discolib.models.device import resolve_device, resolve_dtype
from discolib.models.load import load_clip_ensemble, load_diffusion, load_secondary
from discolib.models.secondary import SecondaryDiffusionImageNet2, alpha_sigma_to_t
from discolib.ops import stream_seed, x0_from_eps
from discolib.samplers.base import FrameRequest, ModelFn, StepCallback, make_step_callback, scheduler_step
from discolib.samplers.config import GuidedConfig

__all__ = [
    "PIXEL_SCHEDULERS",
    "DiscoPLMSScheduler",
    "GuidedSampler",
    "clip_guided",
    "disco_diffusion_steps",
    "make_pixel_scheduler",
    "perlin_init_image",
    "rescale_timesteps",
    "respaced_timesteps",
    "sample_pixels",
    "space_timesteps",
    "symmetry_steps",
    "unet_eps_fn",
]

PIXEL_SCHEDULERS = ("ddim", "plms", "dpmpp")

# guided-diffusion's "linear" schedule for 1000 steps, which all of Disco's checkpoints were trained with.
_TRAIN = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
_MODEL_STEPS = 1000  # the timestep scale the models take (guided-diffusion's rescale_timesteps=True)


def disco_diffusion_steps(steps: int) -> int:
    """Disco's ``diffusion_steps`` for ``steps`` sampler steps: ``(1000 // steps) * steps`` below 1000, else ``steps``.

    The noise schedule is guided-diffusion's linear one stretched to that many steps (betas scaled by
    ``1000 / diffusion_steps``), so that ``ddim{steps}`` can stride it evenly.
    """
    if steps < 1:
        raise ValueError(f"image.steps: expected at least 1 step, got {steps}")
    return (_MODEL_STEPS // steps) * steps if steps < _MODEL_STEPS else steps


def space_timesteps(num_timesteps: int, section_counts: str | int | Sequence[int]) -> list[int]:
    """The kept timesteps (ascending) of a ``num_timesteps``-step diffusion, as guided-diffusion's respacing.

    ``"ddimN"``: the single stride ``k`` for which ``0, k, 2k, ...`` below ``num_timesteps`` has exactly N entries
    (the smallest such k). Otherwise N (or ``"N1,N2,..."``, or a sequence): the steps are cut into that many
    near-equal sections (the first ``num_timesteps % len`` one longer), and each section keeps its count of
    timesteps evenly spread from its first to its last, rounded half to even.

    Raises:
        ValueError: no stride gives N steps, or a section is shorter than its count.
    """
    if isinstance(section_counts, str) and section_counts.startswith("ddim"):
        want = int(section_counts[4:])
        for stride in range(1, num_timesteps):
            if -(-num_timesteps // stride) == want:  # len(range(0, num_timesteps, stride))
                return list(range(0, num_timesteps, stride))
        raise ValueError(f"cannot take exactly {want} steps of {num_timesteps} with one integer stride")
    if isinstance(section_counts, str):
        counts = [int(c) for c in section_counts.split(",")]
    elif isinstance(section_counts, int):
        counts = [section_counts]
    else:
        counts = [int(c) for c in section_counts]
    base, longer = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for n, count in enumerate(counts):
        size = base + (n < longer)
        if size < count:
            raise ValueError(f"cannot take {count} steps of a section of {size}")
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        pos = 0.0
        for _ in range(count):
            kept.append(start + round(pos))
            pos += stride
        start += size
    return sorted(set(kept))


def respaced_timesteps(steps: int, num_train_timesteps: int | None = None) -> list[int]:
    """The timesteps Disco runs (descending) for ``steps`` steps: ``ddim{steps}`` respacing of ``num_train_timesteps``
    (default :func:`disco_diffusion_steps`). E.g. 150 steps: 894, 888, ..., 0 of 900 (t = 993.3 ... 0 on the
    models' 1000 scale)."""
    total = disco_diffusion_steps(steps) if num_train_timesteps is None else num_train_timesteps
    return space_timesteps(total, f"ddim{steps}")[::-1]


def rescale_timesteps(model_fn: ModelFn, num_train_timesteps: int) -> ModelFn:
    """``model_fn`` called with the scheduler's timesteps (0 .. ``num_train_timesteps - 1``) given the models'
    1000-step scale, as guided-diffusion's ``rescale_timesteps``: ``t * 1000 / num_train_timesteps`` in float32
    (993.33 for 894 of 900). For 1000 training steps ``model_fn`` itself is returned."""
    if num_train_timesteps == _MODEL_STEPS:
        return model_fn
    scale = _MODEL_STEPS / num_train_timesteps

    def rescaled(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model_fn(x, t.float() * scale)

    return rescaled


def _train_config(steps: int | None) -> dict[str, Any]:
    """The diffusers schedule of Disco's ``diffusion_steps`` for ``steps`` (1000 steps when ``steps`` is None)."""
    total = _MODEL_STEPS if steps is None else disco_diffusion_steps(steps)
    if total == _MODEL_STEPS:
        return dict(_TRAIN)
    scale = _MODEL_STEPS / total  # guided-diffusion's get_named_beta_schedule("linear", total)
    return {**_TRAIN, "num_train_timesteps": total, "beta_start": 0.0001 * scale, "beta_end": 0.02 * scale}


def make_pixel_scheduler(name: str, *, clip_denoised: bool = False, steps: int | None = None) -> Any:
    """A scheduler for Disco's pixel models: ``ddim`` (default, uses ``eta``), ``plms`` (Disco's, order 2), ``dpmpp``.

    With ``steps`` the noise schedule is Disco's for that step count: guided-diffusion's linear schedule over
    :func:`disco_diffusion_steps` training steps (900 for 150 steps), run at ``ddim{steps}`` respacing (0, k, 2k,
    ... with k = 1000 // steps; every scheduler spaces its ``set_timesteps(n)`` that way). The models then take
    timesteps through :func:`rescale_timesteps`. Without ``steps``: the 1000-step schedule (the same when
    ``steps`` divides 1000).
    """
    train = _train_config(steps)
    if name == "ddim":
        return DDIMScheduler(**train, clip_sample=clip_denoised, set_alpha_to_one=True, timestep_spacing="leading")
    if name == "plms":
        return DiscoPLMSScheduler(**train, clip_sample=clip_denoised)
    if name == "dpmpp":
        return _RespacedDPMSolver(**train, algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True)
    raise ValueError(f"guidance.sampler: expected one of {', '.join(PIXEL_SCHEDULERS)}, got {name!r}")


def _leading(steps: int, num_train_timesteps: int) -> list[int]:
    """``(steps-1)k, ..., k, 0`` with ``k = num_train_timesteps // steps``: diffusers' ``leading`` spacing, which is
    Disco's ``ddim{steps}`` respacing whenever ``k * steps == num_train_timesteps``."""
    k = max(num_train_timesteps // steps, 1)
    return [i * k for i in range(steps)][::-1]


class _RespacedDPMSolver(DPMSolverMultistepScheduler):
    """DPM-Solver++ on the DDIM timesteps (diffusers' own ``leading`` spacing for it starts at 750 of 1000 at 250
    steps, from noise of the full schedule)."""

    def set_timesteps(
        self, num_inference_steps: int | None = None, device: Any = None, mu: float | None = None, timesteps: list[int] | None = None
    ) -> None:
        if timesteps is None and num_inference_steps is not None:
            timesteps, num_inference_steps = _leading(num_inference_steps, self.config.num_train_timesteps), None
        super().set_timesteps(num_inference_steps, device, mu=mu, timesteps=timesteps)


def unet_eps_fn(unet: torch.nn.Module) -> ModelFn:
    """``eps = model_fn(x, t)`` from a UNet2DModel whose first 3 output channels are eps.

    ``x`` (B, 3, H, W) float32 in the [-1, 1] data scale; ``t`` a 0-d or (B,) timestep tensor on the 0-999 scale.
    The UNet may run in a lower precision; eps comes back as float32.
    """
    dtype = next(unet.parameters()).dtype

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return unet(x.to(dtype), t).sample[:, :3].float()

    return model_fn


def clip_guided(
    model_fn: ModelFn,
    guidance: ClipGuidance,
    alphas_cumprod: torch.Tensor,
    *,
    generator: torch.Generator,
    secondary: SecondaryDiffusionImageNet2 | None = None,
    clamp_max: float | None = 0.05,
) -> ModelFn:
    """Wrap ``model_fn`` with Disco's CLIP guidance (see the module docstring).

    Args:
        model_fn: the unguided eps model.
        guidance: the loss (cuts, prompts, tv/range/sat/init terms) from :mod:`discolib.guidance.losses`.
        alphas_cumprod: (1000,) the training schedule's cumulative alphas (on the CPU).
        generator: source of the cutouts' randomness (seeded per image for reproducibility).
        secondary: Disco's secondary model to predict x0 cheaply; ``None`` differentiates through ``model_fn``.
        clamp_max: RMS clamp of the gradient (``None`` disables ``clamp_grad``).

    Returns:
        A model function with the same signature, whose eps is shifted by ``-sqrt(1 - abar_t) * grad``.
    """
    ac = alphas_cumprod.detach().to("cpu", torch.float64)
    nonfinite: list[torch.Tensor] = []

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # t lives on the CPU (scheduler timesteps), so reading it costs no device sync.
        step = int(t.reshape(-1)[0])
        abar = float(ac[step])
        sqrt_ab, sigma = math.sqrt(abar), math.sqrt(1.0 - abar)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if secondary is not None:
                with torch.no_grad():
                    eps = model_fn(x, t)
                cos_t = alpha_sigma_to_t(torch.tensor(sqrt_ab), torch.tensor(sigma))
                sdtype = next(secondary.parameters()).dtype
                pred = secondary(xg.to(sdtype), cos_t.to(x.device, sdtype).expand(x.shape[0])).pred.float()
            else:
                eps_g = model_fn(xg, t)
                eps = eps_g.detach()
                pred = x0_from_eps(xg, eps_g, abar)
            x_in = pred * sigma + xg * (1.0 - sigma)
            g_in, g_pred = guidance.grad(x_in, step, generator, pred_x0=pred)
            grad_loss = torch.autograd.grad([x_in, pred], xg, [g_in, g_pred])[0]
        grad = -grad_loss
        grad, bad = zero_nan_grad(grad)
        # Keep the flag on the device; it is read once per image (guided.check_nonfinite), not once per step.
        nonfinite[:] = [bad if not nonfinite else nonfinite[0] | bad]
        if clamp_max is not None:
            grad = clamp_grad_rms(grad, clamp_max)
        return eps - sigma * grad

    def check_nonfinite() -> bool:
        """Warn (once per image) if any step's gradient had NaN/inf values that were zeroed."""
        hit = bool(nonfinite) and warn_if_nonfinite(nonfinite[0], stacklevel=3)
        nonfinite.clear()
        return hit

    guided.check_nonfinite = check_nonfinite  # type: ignore[attr-defined]
    return guided


def symmetry_steps(steps: int, percents: Sequence[float]) -> set[int]:
    """Indices (0-based) among the ``steps`` steps run at which Disco applies its symmetry transformation.

    guided-diffusion (Disco's fork) counts the steps run down, ``steps - 1 .. 0``, and transforms before the step
    whose count is ``int(steps * (1 - p))`` for each ``p``: step run ``steps - 1 - int(steps * (1 - p))`` (100
    steps at 0.09: 8). ``p`` = 0 (or any ``p`` that lands outside the steps) transforms nothing; ``p`` = 1 the last.
    """
    out = set()
    for p in percents:
        down = int(steps * (1 - p))  # truncates towards zero, as Python's int()
        if 0 <= down < steps:
            out.add(steps - 1 - down)
    return out


def mirror(x: torch.Tensor, *, horizontal: bool, vertical: bool) -> torch.Tensor:
    """Disco's symmetry: ``horizontal`` copies the left half mirrored onto the right; ``vertical`` top onto bottom."""
    _, _, h, w = x.shape
    if horizontal:
        left = x[..., : w // 2]
        x = torch.cat([left, left.flip(-1), x[..., 2 * (w // 2) :]], dim=-1)
    if vertical:
        top = x[..., : h // 2, :]
        x = torch.cat([top, top.flip(-2), x[..., 2 * (h // 2) :, :]], dim=-2)
    return x


def sample_pixels(
    model_fn: ModelFn,
    scheduler: Any,
    *,
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator,
    device: torch.device,
    init: torch.Tensor | None = None,
    skip_steps: int = 0,
    eta: float = 0.0,
    callback: StepCallback | None = None,
    transforms: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    transforms_any_sampler: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``scheduler`` over ``model_fn``.

    Args:
        shape: (B, 3, H, W) of the sample.
        steps: sampler steps (the respacing of the scheduler's training steps, see :func:`make_pixel_scheduler`).
        init: (B or 1, 3, H, W) in [-1, 1]; noised to the first kept timestep when ``skip_steps > 0``.
        skip_steps: steps skipped at the start (only meaningful with ``init``).
        eta: DDIM's eta (ignored by schedulers that do not take it).
        callback: gets ``{"i", "n", "t", "x", "denoised"}`` after each model call (``i`` counts the calls, of
            ``n``: one more than the steps run with PLMS; ``denoised`` in [-1, 1]).
        transforms: index of a step run (0-based) -> function applied to the sample before that step (Disco's
            symmetry). As Disco, only a DDIM scheduler applies them, unless ``transforms_any_sampler``.

    Returns:
        (B, 3, H, W) in about [-1, 1].
    """
    if not 0 <= skip_steps < steps:
        raise ValueError(f"guidance.skip_steps: expected 0 <= skip_steps < steps ({steps}), got {skip_steps}")
    # Step run -> loop index: PLMS-style schedulers repeat their second timestep (the first step's second call).
    first_step_calls = 1
    if isinstance(scheduler, DiscoPLMSScheduler):
        scheduler.set_timesteps(steps, skip_steps=skip_steps)
        timesteps = scheduler.timesteps
        first_step_calls = 2
    else:
        scheduler.set_timesteps(steps)
        full = scheduler.timesteps  # CPU long tensor: indexing it never syncs the device
        if isinstance(scheduler, PNDMScheduler):
            # diffusers repeats the second timestep (the first step's correction). Starting later, rebuild that
            # pattern on the steps kept, so the first kept step gets its correction and none is skipped twice.
            plain = torch.cat([full[:2], full[3:]])[skip_steps:]
            timesteps = torch.cat([plain[:2], plain[1:2], plain[2:]]) if len(plain) > 1 else plain
            scheduler.timesteps = timesteps
            first_step_calls = 2
        else:
            timesteps = full[skip_steps:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(skip_steps)
    noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    if init is not None and skip_steps > 0:
        x = scheduler.add_noise(init.to(device, torch.float32).expand(shape), noise, timesteps[:1])
    else:
        x = noise * float(getattr(scheduler, "init_noise_sigma", 1.0))
    ac = scheduler.alphas_cumprod.to(torch.float64)
    n = len(timesteps)
    calls: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
    if transforms and (transforms_any_sampler or type(scheduler) is DDIMScheduler):
        extra = first_step_calls - 1 if n > 1 else 0
        calls = {j + (extra if j > 0 else 0): f for j, f in transforms.items()}
    denoised = x
    for i in tqdm(range(n), disable=not progress, desc="steps", leave=False):
        t = timesteps[i]
        if i in calls:
            x = calls[i](x)
        eps = model_fn(x, t)
        abar = float(ac[int(t)])
        denoised = x0_from_eps(x, eps, abar)
        x = scheduler_step(scheduler, eps, t, x, eta=eta, generator=generator).prev_sample
        if callback is not None:
            callback({"i": i, "n": n, "t": int(t), "x": x, "denoised": denoised})
    return x


class DiscoPLMSScheduler:
    """Disco's PLMS: guided-diffusion's ``plms_sample`` with ``order=2``, as a diffusers-style scheduler.

    The first step is a pseudo improved Euler step: a DDIM step with the step's eps ``e0`` gives ``x'`` at the next
    timestep, the model is called again there (``e'``), and the step is redone from the same sample with
    ``(e0 + e') / 2``. Every later step is Adams-Bashforth of order 2 on the raw eps of this step and the last
    (``(3 e_n - e_{n-1}) / 2``, ``e0`` counting as the first), taken as a DDIM (eta 0) step. The last step, at
    timestep 0, returns the predicted x0 of its own eps. diffusers' ``PNDMScheduler`` instead climbs to order 4.

    Like diffusers' PNDM, the second model call of the first step is a repeated timestep in ``timesteps``
    (``t0, t1, t1, t2, ...``): a loop calling the model at each entry and :meth:`step` after each call runs it.
    ``clip_sample`` clamps each predicted x0 to [-1, 1] and re-derives its eps before it is used.
    """

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, *, clip_sample: bool = False, **train: Any) -> None:
        base = DDIMScheduler(**train, clip_sample=clip_sample, set_alpha_to_one=True)
        self.config = base.config
        self.alphas_cumprod = base.alphas_cumprod
        self._base = base
        self.timesteps = torch.zeros(0, dtype=torch.long)
        self._plain: list[int] = []
        self._calls = 0
        self._eps: torch.Tensor | None = None
        self._x: torch.Tensor | None = None

    def set_timesteps(self, num_inference_steps: int, device: Any = None, *, skip_steps: int = 0) -> None:
        """Disco's ``ddim{num_inference_steps}`` timesteps of the training schedule, the first ``skip_steps`` left
        out (the first kept step gets the improved-Euler call)."""
        self._plain = respaced_timesteps(num_inference_steps, self.config.num_train_timesteps)[skip_steps:]
        calls = self._plain[:2] + self._plain[1:] if len(self._plain) > 1 else self._plain
        self.timesteps = torch.tensor(calls, dtype=torch.long)
        self._calls, self._eps, self._x = 0, None, None

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``q_sample``: ``sqrt(abar_t) * original + sqrt(1 - abar_t) * noise``."""
        return self._base.add_noise(original, noise, timesteps)

    def _abar(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else 1.0

    def _x0(self, x: torch.Tensor, eps: torch.Tensor, abar: float) -> torch.Tensor:
        return (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)

    def _ddim(self, x: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int) -> torch.Tensor:
        """The eta-0 DDIM step from timestep ``t`` to ``t_prev`` (-1: to the data, abar 1)."""
        a_prev = self._abar(t_prev)
        return self._x0(x, eps, self._abar(t)) * math.sqrt(a_prev) + math.sqrt(1.0 - a_prev) * eps

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor, return_dict: bool = True) -> Any:
        """One call of the loop: ``model_output`` (B, C, H, W) is eps at (``sample``, ``timestep``).

        Returns an object whose ``prev_sample`` is the next sample (a tuple of it when ``return_dict`` is false).
        """
        t = int(timestep)
        eps = model_output
        if self.config.clip_sample:
            abar = self._abar(t)
            x0 = self._x0(sample, eps, abar).clamp(-1, 1)
            eps = (sample - math.sqrt(abar) * x0) / math.sqrt(1.0 - abar)
        call, self._calls = self._calls, self._calls + 1
        # The call's step among the plain timesteps: calls 0 and 1 both belong to the first step.
        n = max(call - 1, 0)
        t_prev = self._plain[n + 1] if n + 1 < len(self._plain) else -1
        if t_prev < 0:
            # Timestep 0 (guided-diffusion's nonzero_mask): the predicted x0 of this call's own eps.
            prev = self._x0(sample, eps, self._abar(t))
        elif call == 0:
            self._eps, self._x = eps, sample
            prev = self._ddim(sample, eps, t, t_prev)
        elif call == 1:
            # The improved-Euler correction is evaluated at the next timestep and redoes the first step.
            assert self._eps is not None and self._x is not None
            prev = self._ddim(self._x, (self._eps + eps) / 2, self._plain[0], t_prev)
            self._x = None
        else:
            assert self._eps is not None
            prime = (3 * eps - self._eps) / 2
            self._eps = eps
            prev = self._ddim(sample, prime, t, t_prev)
        return SchedulerOutput(prev_sample=prev) if return_dict else (prev,)


def perlin_init_image(
    height: int,
    width: int,
    mode: str,
    *,
    generator: torch.Generator,
    device: torch.device,
    antialias: bool = True,
    octaves: tuple[int, int] = (12, 8),
) -> torch.Tensor:
    """Disco's Perlin init (``regen_perlin``): (1, 3, H, W) in [-1, 1]; ``color``, ``gray`` or ``mixed``.

    Disco averages two fractal Perlin images, each made as follows and then stretched to the full 0..255 range:

    * ``0.5 + sum_k a_k * perlin_k`` with ``a_k = 0.5 * 1.5**-k``, where octave ``k`` has ``c * 2**k`` lattice cells
      across (``c`` = 1 with 12 octaves for the first image, ``c`` = 4 with 8 octaves for the second) sampled on a
      square grid of ``c * 2**octaves`` pixels (4096 and 1024), ``perlin_k`` being Disco's gradient noise (smoothstep
      weights, gradients ``N(0, 1)`` per lattice corner);
    * resized (bilinear, ``antialias`` as torchvision's default) to ``H x W``, clamped to [0, 1], quantised to 8 bits
      (truncating) and auto-contrasted per channel (PIL's ``autocontrast``: darkest -> 0, lightest -> 255).

    ``color``: both images colour (3 independent channels); ``gray``: both grey; ``mixed``: colour first image, grey
    second. The result is ``(first + second) / 2`` mapped to [-1, 1] (std about 0.26 in mixed mode). ``octaves``
    (Disco: 12 and 8) and ``antialias`` (the resize of torchvision >= 0.17, which Disco's notebook installs today;
    False is the resize of 2022's torchvision) are there for tests and comparisons.

    The grid is never materialised: the noise is a sum of separable terms per lattice corner, and the resize is
    linear and separable, so each octave is ``R_y @ (row weights . gradients . column weights) @ R_x^T`` with the
    (H x 4096) resize matrices, a few MB instead of 4096 x 4096 per octave and channel.
    """
    import torch.nn.functional as F

    if mode not in ("color", "gray", "mixed"):
        raise ValueError(f"guidance.perlin_mode: expected color, gray or mixed, got {mode!r}")
    dev = generator.device

    def resize_matrix(n: int, out: int) -> torch.Tensor:
        # (out, n): torch's own bilinear resize of the identity, so R @ img @ R'^T is exactly the resized image.
        eye = torch.eye(n, device=dev).view(1, 1, n, n)
        return F.interpolate(eye, size=(out, n), mode="bilinear", align_corners=False, antialias=antialias)[0, 0]

    def side_weights(resize: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Along one axis, a pixel at fraction u of cell a takes corner a with smoothstep weight w and corner a + 1
        # with 1 - w; the "linear" part (gradient . offset) adds the factor u (corner a) or -(1 - u) (corner a + 1).
        # Summed into the resized pixels: (out, cells + 1) matrices over the lattice corners, linear and plain.
        n = resize.shape[1]
        s = n // cells
        u = torch.arange(s, device=dev, dtype=torch.float32) / s
        w = 1 - (3 * u**2 - 2 * u**3)
        factors = torch.stack([w * u, -(1 - w) * (1 - u), w, 1 - w], dim=1)  # (s, 4): near / far, linear / plain
        per_cell = resize.view(resize.shape[0], cells, s) @ factors  # (out, cells, 4)
        zero = per_cell.new_zeros(resize.shape[0], 1)
        lin = torch.cat([per_cell[..., 0], zero], 1) + torch.cat([zero, per_cell[..., 1]], 1)
        plain = torch.cat([per_cell[..., 2], zero], 1) + torch.cat([zero, per_cell[..., 3]], 1)
        return lin, plain

    def band(weights: torch.Tensor, n: int, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The (out, cells + 1) corner weights are zero outside the few corners under each output pixel's filter:
        # keep a band of k of them per row, from the filter's support (no data-dependent shapes, no host sync).
        out = weights.shape[0]
        s = n // cells
        span = 2 * max(n / out, 1.0) + 2  # the filter's reach in grid pixels, with a pixel's margin each side
        k = min(cells + 1, math.ceil(span / s) + 2)
        centre = (torch.arange(out, device=dev, dtype=torch.float64) + 0.5) * (n / out)
        first = torch.div(torch.floor(centre - span / 2).clamp_min(0), s, rounding_mode="floor").long()
        idx = first.clamp(max=cells + 1 - k)[:, None] + torch.arange(k, device=dev)
        return weights.gather(1, idx), idx

    def fractal(base: int, octaves: int, gray: bool) -> torch.Tensor:
        n = base * 2**octaves
        ry = resize_matrix(n, height)
        rx = ry if width == height else resize_matrix(n, width)
        # The corner weights depend on the octave only: once for all channels.
        sides = []
        for k in range(octaves):
            cells = base * 2**k
            (lin_r, ir), (plain_r, _) = (band(m, n, cells) for m in side_weights(ry, cells))
            (lin_c, ic), (plain_c, _) = (band(m, n, cells) for m in side_weights(rx, cells))
            sides.append((cells, lin_r, plain_r, ir, lin_c, plain_c, ic))
        channels = []
        for _ in range(1 if gray else 3):
            img = torch.full((height, width), 0.5, device=dev)
            for k, (cells, lin_r, plain_r, ir, lin_c, plain_c, ic) in enumerate(sides):
                # Disco's lattice: gradient x / y components per corner, first axis along the image's rows.
                gx, gy = torch.randn(2, cells + 1, cells + 1, generator=generator, device=dev)
                # rows @ lattice @ columns^T, each product over the band of corners only.
                octave = torch.einsum("hwk,wk->hw", torch.einsum("hk,hkj->hj", lin_r, gx[ir])[:, ic], plain_c)
                octave += torch.einsum("hwk,wk->hw", torch.einsum("hk,hkj->hj", plain_r, gy[ir])[:, ic], lin_c)
                img += 0.5 * 1.5**-k * octave
            channels.append(img)
        img8 = (torch.stack(channels).clamp(0, 1) * 255).to(torch.uint8).double()  # PIL: truncating to 8 bits
        lo = img8.amin(dim=(1, 2), keepdim=True)
        hi = img8.amax(dim=(1, 2), keepdim=True)
        scale = 255.0 / (hi - lo).clamp_min(1)
        stretched = (img8 * scale - lo * scale).floor().clamp(0, 255)
        out = torch.where(hi > lo, stretched, img8) / 255
        return out.float().expand(3, height, width)

    first = fractal(1, octaves[0], gray=mode == "gray")
    second = fractal(4, octaves[1], gray=mode != "color")
    return (first + second - 1).unsqueeze(0).to(device)


class GuidedSampler:
    """Disco's guided sampler: models loaded once from a :class:`GuidedConfig`, one image per call.

    What a :class:`FrameRequest` means here:

    * ``init`` given: the sample starts from ``init`` noised to the first kept step. ``skip_steps`` steps are
      skipped, or when it is None ``min(steps - 1, round(steps * init_strength))`` (Disco's ``frames_skip_steps``
      as a fraction). The init is also the target of the init loss, at ``init_scale`` (None: the config's
      ``init_scale``; Disco's ``frames_scale`` for animation frames).
    * no ``init``: Perlin noise when the config says so, else a zero image, noised to the first kept step, with
      ``skip_steps`` (None: the config's ``skip_steps``) skipped, as Disco. Neither is a loss target.

    ``init_strength`` is ignored when ``skip_steps`` is given; ``cfg_scale`` is latent mode's and ignored here.
    """

    policy: AnimationPolicy = GUIDED_POLICY

    def __init__(self, config: GuidedConfig, *, device: torch.device | None = None, progress: bool = False) -> None:
        self.config = config
        g = config.guidance
        self.device = device or resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.width, self.height = config.width, config.height
        self.progress = progress
        self.unet = load_diffusion(config.diffusion_model, self.device, self.dtype, random_ok=config.random_weights)
        if config.gradient_checkpointing and hasattr(self.unet, "enable_gradient_checkpointing"):
            self.unet.enable_gradient_checkpointing()
        self.secondary = (
            load_secondary(config.secondary_model, self.device, self.dtype, random_ok=config.random_weights)
            if config.use_secondary_model
            else None
        )
        self.ensemble = load_clip_ensemble(
            g.clip_models,
            self.device,
            self.dtype if self.device.type == "cuda" else torch.float32,
            random_ok=config.random_weights,
        )
        self.cut_schedules = CutSchedules.from_disco(g.cut_overview, g.cut_innercut, g.cut_ic_pow, g.cut_icgray_p)
        # Disco's respacing: the model's 1000 steps stretched to (1000 // steps) * steps, then spaced to `steps`.
        self.scheduler = make_pixel_scheduler(config.sampler, clip_denoised=config.clip_denoised, steps=config.steps)
        self.model_fn = rescale_timesteps(unet_eps_fn(self.unet), self.scheduler.config.num_train_timesteps)
        if config.compile:
            self.model_fn = torch.compile(self.model_fn)
        self._image_prompts: dict[str, torch.Tensor] = {}
        # Disco's LPIPS init / frames loss, loaded at the first image that has an init loss (a VGG16 backbone is
        # not worth loading for runs that never use it).
        self._lpips: torch.nn.Module | None = None

    def _guidance(self, request: FrameRequest, init01: torch.Tensor | None, init_scale: float, gen: torch.Generator) -> ClipGuidance:
        c, g = self.config, self.config.guidance
        prompts = request.prompts
        texts = [p.text for p in prompts.positive] + [p.text for p in prompts.negative]
        weights = [p.weight for p in prompts.positive] + [-abs(p.weight) for p in prompts.negative]
        embeds = self.ensemble.encode_text(texts)
        if request.image_prompts is not None and request.image_prompts.positive:
            # Image prompts: each image's whole-frame embedding per CLIP member joins the targets with its weight
            # (Disco averaged 16 cutouts of it; one resized view is cheaper and, with no augmentation, alike).
            images = [self._image_prompt(p.text) for p in request.image_prompts.positive]
            batch = torch.cat(images).to(self.device)
            embeds = [torch.cat([e, ie.to(e)]) for e, ie in zip(embeds, self.ensemble.encode_image(batch), strict=True)]
            weights = weights + [p.weight for p in request.image_prompts.positive]
        if c.fuzzy_prompt:
            # Disco replaces each prompt by 25 copies of its *raw* (unnormalised) CLIP text embedding plus noise of
            # magnitude rand_mag, clamped to [0, 1], each with the prompt's weight. Image prompts get the same rule
            # on their (unit-norm) embeddings (Disco's own image-prompt branch breaks here: it never extends the
            # weights).
            n_text = len(texts)
            with torch.no_grad():
                raw = [m.model.encode_text(m.tokenizer(texts).to(m.device)).float() for m in self.ensemble]
            embeds = [torch.cat([r, e[n_text:]]) for r, e in zip(raw, embeds, strict=True)]
            embeds = [
                torch.cat(
                    [
                        (e + torch.randn(e.shape, generator=gen, device=gen.device).to(e) * c.rand_mag).clamp(0, 1)
                        for _ in range(25)
                    ]
                )
                for e in embeds
            ]
            weights = weights * 25
        if init01 is not None and request.init is None and c.perlin_init:
            # Disco's Perlin init is also the init loss's target, at init_scale (regen_perlin feeds cond_fn's init).
            init_scale = c.init_scale
        use_init = init01 is not None and bool(init_scale)
        if use_init and c.init_loss == "lpips" and self._lpips is None:
            from discolib.models.lpips import load_lpips, random_lpips  # only runs with an init loss need it

            # The tiny test model renders with in-process random weights throughout: its LPIPS backbone too.
            tiny = c.diffusion_model == "tiny"
            self._lpips = random_lpips(self.device) if tiny else load_lpips(self.device, random_ok=c.random_weights)
        return ClipGuidance(
            self.ensemble,
            embeds,
            weights,
            schedules=self.cut_schedules,
            total_steps=self.scheduler.config.num_train_timesteps,
            clip_guidance_scale=g.clip_guidance_scale,
            tv_scale=g.tv_scale,
            range_scale=g.range_scale_applied,
            sat_scale=g.sat_scale,
            init_scale=init_scale if use_init else 0.0,
            init_image=None if init01 is None else init01 * 2 - 1,
            init_loss=self._lpips if use_init and c.init_loss == "lpips" else None,
            cutn_batches=g.cutn_batches,
            augment=not g.skip_augs,
            aug=g.augmentation,
        )

    def _image_prompt(self, source: str) -> torch.Tensor:
        if source not in self._image_prompts:
            self._image_prompts[source] = load_image(source, setting="prompts.image_prompts")
        return self._image_prompts[source]

    def preview(self, info: dict[str, Any]) -> torch.Tensor:
        """The step's predicted image (1, 3, H, W) in [0, 1] (for live previews and intermediate saves)."""
        return ((info["denoised"] + 1) / 2).clamp(0, 1)

    def __call__(self, request: FrameRequest) -> torch.Tensor:
        """The image (1, 3, H, W) in [0, 1] on ``device`` (see the class docstring for the request's meaning)."""
        c, g = self.config, self.config.guidance
        steps = c.steps
        gen = torch.Generator(self.device).manual_seed(request.seed)
        # Cut sizes and positions are drawn on the host: a CPU generator keeps them free of device syncs.
        cut_gen = torch.Generator("cpu").manual_seed(stream_seed(request.seed, "cuts"))
        init01 = request.init
        init_scale = c.init_scale if request.init_scale is None else request.init_scale
        skip = c.skip_steps if request.skip_steps is None else request.skip_steps
        if init01 is not None:
            if request.skip_steps is None:
                skip = min(steps - 1, int(round(steps * request.init_strength)))
        if c.perlin_init and (init01 is None or c.perlin_init_every_frame):
            # Disco regenerates the Perlin init for every image, animation frames included (their skip and
            # frames_scale stay): it replaces the warped previous frame as start and init-loss target.
            init01 = (perlin_init_image(self.height, self.width, c.perlin_mode, generator=gen, device=self.device) + 1) / 2
        if init01 is not None:
            init01 = init01.to(self.device, torch.float32)
            start = init01 * 2 - 1
        else:
            # No init at all: as Disco (guided-diffusion), skip_steps still applies, starting from a zero image
            # noised to the first kept step.
            start = torch.zeros(1, 3, self.height, self.width, device=self.device)
        guidance = self._guidance(request, init01, init_scale, cut_gen)
        model_fn = self.model_fn
        if c.perlin_init and request.init is None:
            init_scale = c.init_scale  # Disco: a still's Perlin image is the init loss's target at init_scale
        if g.clip_guidance_scale or g.tv_scale or g.range_scale_applied or g.sat_scale or (init01 is not None and init_scale):
            model_fn = clip_guided(
                self.model_fn,
                guidance,
                self.scheduler.alphas_cumprod,
                generator=cut_gen,
                secondary=self.secondary,
                clamp_max=g.grad_clamp,
            )
        transforms = {}
        if c.use_horizontal_symmetry or c.use_vertical_symmetry:
            # As Disco: fractions of the steps actually run (after skip_steps / frames_skip_steps).
            for i in symmetry_steps(steps - skip, c.transformation_percent):
                transforms[i] = lambda x: mirror(x, horizontal=c.use_horizontal_symmetry, vertical=c.use_vertical_symmetry)
        x = sample_pixels(
            model_fn,
            self.scheduler,
            shape=(1, 3, self.height, self.width),
            steps=steps,
            generator=gen,
            device=self.device,
            init=start,
            skip_steps=skip,
            eta=c.eta,
            callback=make_step_callback(request),
            transforms=transforms,
            transforms_any_sampler=c.symmetry_any_sampler,
            progress=self.progress,
        )
        if hasattr(model_fn, "check_nonfinite"):
            model_fn.check_nonfinite()
        return ((x + 1) / 2).clamp(0, 1)
