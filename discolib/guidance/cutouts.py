"""Disco Diffusion v5.7 ("Dango") cutouts for CLIP guidance, reproducible under a ``torch.Generator``.

A cutout batch for one CLIP model is built from an image ``(B, 3, H, W)`` in **[0, 1]** (Disco feeds
``x_in.add(1).div(2)``; convert ``[-1, 1]`` model space at the call site):

* **Overview cuts** see the whole frame: the image is zero-padded (black, Disco's ``F.pad`` with no
  mode) on the short side to a square and resized to ``cut_size``. Counts 1-4 add, in order, the
  plain cut, its greyscale, its horizontal flip and the greyscale flip. Counts above 4 repeat the
  plain cut that many times (Disco does exactly this; the copies differ only through augmentation).
* **Inner cuts** are square crops of side ``int(rand ** ic_size_pow * (min_side - m) + m)`` with
  ``m = min(H, W, cut_size)`` at uniform random positions, resized to ``cut_size``. A fraction
  ``ic_grey_p`` of them are greyscale.
* **Augmentations** (per cut) follow Disco's torchvision pipeline for the chosen mode: random
  horizontal flip, Gaussian noise (std 0.01) after each geometric/colour step, a small random
  rotation + translation (and, for video input, a random perspective), random greyscale and colour
  jitter.

Output is one tensor ``(N * B, 3, cut_size, cut_size)`` ordered cut-major (all batch items of cut 0,
then of cut 1, ...), as Disco's ``dists.view([cutn, n, -1])`` expects, so CLIP runs a single forward.

Differences from Disco, on purpose:

* Disco's inner-cut greyscale test is ``if i <= int(IC_Grey_P * InnerCrop)`` with ``i`` counting from
  0, so the first inner cut is *always* grey (even with ``IC_Grey_P = 0``) and one more cut than asked
  is grey. Here each inner cut is grey with probability ``ic_grey_p``, independently. Measured over a run
  (benchmarks/guidance_deviation.py, tiny models, 10 seeds): the summed guidance gradient moves no more than a
  change of seed moves it (cosine of the seed means 0.991 vs 0.991 between seed halves; per run 0.293 vs 0.294
  relative difference), so the deviation is kept.

As Disco, the augmentations are drawn once per call and shared by every cut (Disco runs its torchvision transforms
on the whole concatenated batch); ``shared_draws=False`` draws them per cut (per-run gradient 1.6x further from
Disco's than a change of seed, so it is not the default).
* Disco pads by ``diff // 2`` on both sides, leaving a non-square frame when the difference is odd
  (then squashed by the resize). We pad ``diff // 2`` and ``diff - diff // 2`` so it is square.
* Resizing uses ``F.interpolate(mode="bicubic", antialias=True)``, the closest built-in to Disco's
  ResizeRight (cubic kernel with antialiasing when downscaling); it is differentiable.
* Random draws come from the caller's ``torch.Generator`` instead of the global RNG, so a cut batch is
  reproducible from a seed without touching global state.

Cut schedules. Disco gives four 1000-entry schedules (``cut_overview``, ``cut_innercut``,
``cut_ic_pow``, ``cut_icgray_p``, written as list expressions such as ``"[12]*400+[4]*600"``) and in
``cond_fn`` indexes them with ``1000 - t_int`` where ``t_int = int(t) + 1`` and ``t`` is the model
timestep rescaled to a 1000-step range (guided-diffusion's ``rescale_timesteps=True``:
``t = timestep * 1000 / diffusion_steps``). So entry 0 is used at the noisiest timestep 999 and entry
999 at timestep 0; with 250 DDIM steps over 1000 diffusion steps the first step (timestep 996) uses
entry 3. :func:`disco_schedule_index` reproduces that mapping and :func:`cut_counts_at_step` applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from kornia.geometry.transform import (
    get_perspective_transform,
    get_rotation_matrix2d,
    warp_affine,
    warp_perspective,
)
from torch import Tensor

from discolib.errors import InputError
from discolib.schedules.cuts import CutScheduleValue, parse_cut_schedule
from discolib.schedules.expr import ScheduleError

__all__ = [
    "AUG_PRESETS",
    "DISCO_DEFAULT_SCHEDULES",
    "AugmentConfig",
    "CutSchedules",
    "CutSettings",
    "CutoutError",
    "augment_cuts",
    "cut_counts_at_step",
    "disco_schedule_index",
    "make_cutouts",
]

SCHEDULE_LENGTH = 1000


class CutoutError(InputError):
    """Bad cutout or cut-schedule settings."""


# --------------------------------------------------------------------------------------------------
# Augmentation settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """Per-cut augmentation parameters (Disco's torchvision pipeline, drawn per cut).

    Attributes:
        flip_p: probability of a horizontal flip.
        noise_std: std of the Gaussian noise added after each step (Disco: 0.01, three times).
        degrees: rotation drawn uniformly from ``[-degrees, degrees]``.
        translate: translation drawn uniformly from ``[-translate, translate]`` times the cut side.
        perspective_scale: corner displacement as a fraction of half the side (torchvision's
            ``distortion_scale``); 0 disables perspective.
        perspective_p: probability of the perspective warp.
        grey_p: probability of turning the cut greyscale.
        brightness, contrast, saturation: jitter factors drawn from ``[1 - v, 1 + v]``; 0 disables.
        hue: hue shift drawn from ``[-hue, hue]`` as a fraction of the colour circle; 0 disables.
    """

    flip_p: float = 0.5
    noise_std: float = 0.01
    degrees: float = 10.0
    translate: float = 0.05
    perspective_scale: float = 0.0
    perspective_p: float = 0.0
    grey_p: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1


#: Disco v5.7's augmentation sets by ``animation_mode``: "still" = "None", "animation" = "2D"/"3D",
#: "video" = "Video Input" (Disco uses nearest-neighbour rotation there; we keep bilinear so the
#: warp stays differentiable everywhere).
AUG_PRESETS: dict[str, AugmentConfig] = {
    "still": AugmentConfig(),
    "animation": AugmentConfig(flip_p=0.4, hue=0.3),
    "video": AugmentConfig(
        degrees=15.0,
        translate=0.1,
        perspective_scale=0.4,
        perspective_p=0.7,
        grey_p=0.15,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
    ),
}


def _resolve_aug(aug: str | AugmentConfig) -> AugmentConfig:
    if isinstance(aug, AugmentConfig):
        return aug
    try:
        return AUG_PRESETS[aug]
    except KeyError:
        raise CutoutError(f"aug preset must be one of {sorted(AUG_PRESETS)}, got {aug!r}") from None


# --------------------------------------------------------------------------------------------------
# Random helpers: all draws come from the caller's generator
# --------------------------------------------------------------------------------------------------


def _rand(n: int, generator: torch.Generator, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``n`` uniform [0, 1) numbers drawn on the generator's device, then moved to ``device``."""
    return torch.rand(n, generator=generator, device=generator.device).to(device=device, dtype=dtype)


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator, device: torch.device, dtype: torch.dtype
) -> Tensor:
    return low + (high - low) * _rand(n, generator, device, dtype)


def _noise_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` for image-sized noise.

    Drawing big noise tensors on a CPU generator and copying them to the GPU would cost a transfer per
    step, so when devices differ a device generator is seeded from one draw of the caller's generator
    (still fully determined by it).
    """
    same_index = generator.device.index in (None, device.index) or device.index is None
    if generator.device.type == device.type and same_index:
        return generator
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device).item())
    return torch.Generator(device=device).manual_seed(seed)


def _grey3(x: Tensor) -> Tensor:
    """ITU-R 601 luma (as torchvision's ``Grayscale(3)``) repeated on 3 channels. (N,3,H,W) -> same."""
    return rgb_to_grayscale(x).expand_as(x)


def _resize(x: Tensor, size: int) -> Tensor:
    """Antialiased bicubic resize to ``(size, size)``; differentiable. (B,3,h,w) -> (B,3,size,size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


# --------------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------------


def augment_cuts(
    cuts: Tensor, aug: str | AugmentConfig, *, generator: torch.Generator, shared_draws: bool = True
) -> Tensor:
    """Apply Disco's cutout augmentations: one random draw for the whole batch (Disco) or one per cut.

    Order as in Disco: flip, noise, rotate+translate, noise, [perspective, noise,] greyscale, noise,
    colour jitter (brightness/contrast/saturation/hue in a random order, values clamped to [0, 1]).

    Args:
        cuts: ``(N, 3, S, S)`` cuts in [0, 1] (noise may push values slightly outside).
        aug: a preset name from :data:`AUG_PRESETS` or an :class:`AugmentConfig`.
        generator: source of all random draws.
        shared_draws: Disco runs its torchvision transforms once on the whole concatenated batch, so every cut of a
            call gets the same flip, rotation, translation, perspective, greyscale and jitter draw (the pixel noise
            is still per pixel). False draws them per cut (discolib before issue 14: it makes each run's gradient
            differ from Disco's 1.6x more than a change of seed does, benchmarks/guidance_deviation.py).

    Returns:
        ``(N, 3, S, S)`` augmented cuts, differentiable w.r.t. ``cuts``.
    """
    cfg = _resolve_aug(aug)
    n_cuts, _, h, w = cuts.shape
    n = 1 if shared_draws else n_cuts  # how many parameter draws; each broadcasts over the cuts
    dev, dt = cuts.device, cuts.dtype
    noise_gen = _noise_generator(generator, dev)

    def noise(x: Tensor) -> Tensor:
        if cfg.noise_std <= 0:
            return x
        eps = torch.randn(x.shape, generator=noise_gen, device=noise_gen.device, dtype=dt).to(dev)
        return x + eps * cfg.noise_std

    def bernoulli(p: float) -> Tensor:
        return (_rand(n, generator, dev, dt) < p).view(n, 1, 1, 1)

    x = cuts
    if cfg.flip_p > 0:
        x = torch.where(bernoulli(cfg.flip_p), x.flip(-1), x)
    x = noise(x)

    if cfg.degrees > 0 or cfg.translate > 0:
        angle = _uniform(n, -cfg.degrees, cfg.degrees, generator, dev, dt).expand(n_cuts)
        shift = _uniform(2 * n, -cfg.translate, cfg.translate, generator, dev, dt).view(n, 2).expand(n_cuts, 2)
        shift = shift * torch.tensor([w, h], device=dev, dtype=dt)
        center = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=dev, dtype=dt).expand(n_cuts, 2)
        mat = get_rotation_matrix2d(center, angle, torch.ones(n_cuts, 2, device=dev, dtype=dt))
        mat = torch.cat([mat[..., :2], mat[..., 2:] + shift.unsqueeze(-1)], dim=-1)
        x = warp_affine(x, mat, dsize=(h, w), mode="bilinear", padding_mode="zeros", align_corners=True)
        x = noise(x)

    if cfg.perspective_scale > 0 and cfg.perspective_p > 0:
        corners = torch.tensor([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], device=dev, dtype=dt)
        src = corners.expand(n_cuts, 4, 2)
        # Each corner moves inward by up to scale * half side along each axis (torchvision's rule).
        inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], device=dev, dtype=dt)
        reach = torch.tensor([w / 2, h / 2], device=dev, dtype=dt) * cfg.perspective_scale
        offs = (_rand(8 * n, generator, dev, dt).view(n, 4, 2) * reach * inward).expand(n_cuts, 4, 2)
        dst = src + offs
        mat = get_perspective_transform(src, dst)
        warped = warp_perspective(x, mat, dsize=(h, w), mode="bilinear", padding_mode="zeros", align_corners=True)
        x = torch.where(bernoulli(cfg.perspective_p), warped, x)
        x = noise(x)

    if cfg.grey_p > 0:
        x = torch.where(bernoulli(cfg.grey_p), _grey3(x), x)
        x = noise(x)

    x = _colour_jitter(x, cfg, generator, n)
    return x


def _colour_jitter(x: Tensor, cfg: AugmentConfig, generator: torch.Generator, n: int) -> Tensor:
    """torchvision-style ColorJitter, ``n`` factor draws (1: shared, or one per cut). (N,3,H,W) -> (N,3,H,W), in
    [0, 1]."""
    n_cuts, dev, dt = x.shape[0], x.device, x.dtype
    ops: list[str] = []
    if cfg.brightness > 0:
        ops.append("brightness")
    if cfg.contrast > 0:
        ops.append("contrast")
    if cfg.saturation > 0:
        ops.append("saturation")
    if cfg.hue > 0:
        ops.append("hue")
    if not ops:
        return x
    order = torch.randperm(len(ops), generator=generator, device=generator.device).tolist()
    for k in order:
        op = ops[k]
        if op == "brightness":
            f = _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, generator, dev, dt).expand(n_cuts)
            x = (x * f.view(n_cuts, 1, 1, 1)).clamp(0, 1)
        elif op == "contrast":
            f = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, dev, dt).expand(n_cuts)
            x = adjust_contrast_with_mean_subtraction(x, f)
        elif op == "saturation":
            f = _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, generator, dev, dt).expand(n_cuts)
            x = adjust_saturation_with_gray_subtraction(x, f)
        else:
            # torchvision's hue factor is a fraction of the colour circle; kornia wants radians.
            f = _uniform(n, -cfg.hue, cfg.hue, generator, dev, dt).expand(n_cuts) * (2 * math.pi)
            x = adjust_hue(x.clamp(0, 1), f)
    return x


# --------------------------------------------------------------------------------------------------
# Cutouts
# --------------------------------------------------------------------------------------------------


def make_cutouts(
    image: Tensor,
    cut_size: int,
    overview: int,
    inner: int,
    ic_size_pow: float,
    ic_grey_p: float,
    *,
    generator: torch.Generator,
    augment: bool = True,
    aug: str | AugmentConfig = "still",
    shared_draws: bool = True,
) -> Tensor:
    """Disco v5.7 Dango cutouts of an image, as one tensor for a single CLIP forward.

    Args:
        image: ``(B, 3, H, W)`` in **[0, 1]** (usually ``B = 1``). Cut positions are shared by the
            batch items, as in Disco.
        cut_size: side of every output cut (the CLIP model's input size).
        overview: number of whole-frame cuts (0 = none; 1-4 = plain, grey, flipped, grey flipped;
            more than 4 = that many plain copies).
        inner: number of random inner cuts.
        ic_size_pow: exponent shaping inner-cut sizes (``>= 0``; larger = smaller cuts, finer detail).
        ic_grey_p: probability in [0, 1] that an inner cut is greyscale.
        generator: source of every random draw (positions, sizes, greyscale, augmentations). A CPU
            generator is cheapest: cut sizes and positions are read on the host. With a CPU generator
            and a GPU image, image-sized noise comes from a GPU generator seeded from it.
        augment: apply :func:`augment_cuts` to the whole batch of cuts.
        aug: augmentation preset name (:data:`AUG_PRESETS`) or an :class:`AugmentConfig`.
        shared_draws: one augmentation draw for all cuts (Disco) or one per cut (see :func:`augment_cuts`).

    Returns:
        ``(overview + inner) * B`` cuts of shape ``(N * B, 3, cut_size, cut_size)``, cut-major; values
        around [0, 1] (noise and bicubic overshoot may leave them slightly outside).

    Raises:
        CutoutError: on a bad shape or setting.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise CutoutError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if int(cut_size) < 1:
        raise CutoutError(f"cut_size must be a positive integer, got {cut_size}")
    if overview < 0 or inner < 0:
        raise CutoutError(f"cut_overview and cut_innercut must be >= 0, got {overview} and {inner}")
    if overview + inner < 1:
        raise CutoutError("cut_overview + cut_innercut must be at least 1 (no cuts to give CLIP)")
    if ic_size_pow < 0:
        raise CutoutError(f"cut_ic_pow must be >= 0, got {ic_size_pow}")
    if not 0.0 <= ic_grey_p <= 1.0:
        raise CutoutError(f"cut_icgray_p must be in [0, 1], got {ic_grey_p}")
    cut_size = int(cut_size)
    side_y, side_x = image.shape[-2:]
    short = min(side_x, side_y)
    dev, dt = image.device, image.dtype

    cuts: list[Tensor] = []
    if overview > 0:
        # Pad the short side up to the long one: a landscape frame gets black bars top and bottom.
        pad_w, pad_h = side_y - short, side_x - short
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # (left, right, top, bottom)
        whole = _resize(F.pad(image, pad, value=0.0), cut_size)
        if overview <= 4:
            variants = [whole, _grey3(whole), whole.flip(-1), _grey3(whole.flip(-1))]
            cuts.extend(variants[:overview])
        else:
            cuts.extend([whole] * overview)

    if inner > 0:
        smallest = min(side_x, side_y, cut_size)
        sizes = (_rand(inner, generator, torch.device("cpu"), torch.float64) ** ic_size_pow) * (short - smallest)
        grey = (_rand(inner, generator, torch.device("cpu"), torch.float64) < ic_grey_p).tolist()
        for size_f, is_grey in zip(sizes.tolist(), grey, strict=True):
            size = int(size_f + smallest)
            ox = int(torch.randint(0, side_x - size + 1, (), generator=generator, device=generator.device))
            oy = int(torch.randint(0, side_y - size + 1, (), generator=generator, device=generator.device))
            cut = image[:, :, oy : oy + size, ox : ox + size]
            if is_grey:
                cut = _grey3(cut)
            cuts.append(_resize(cut, cut_size))

    out = torch.cat(cuts, dim=0).to(dtype=dt, device=dev)
    if augment:
        out = augment_cuts(out, aug, generator=generator, shared_draws=shared_draws)
    return out


# --------------------------------------------------------------------------------------------------
# Cut schedules
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutSettings:
    """Cut counts and shapes for one step (one entry of each Disco schedule)."""

    overview: int
    innercut: int
    ic_pow: float
    icgray_p: float

    @property
    def cutn(self) -> int:
        """Cuts per batch item: ``overview + innercut``."""
        return self.overview + self.innercut


@dataclass(frozen=True)
class CutSchedules:
    """Disco's four cut schedules, each with 1000 entries indexed by rescaled timestep."""

    overview: tuple[float, ...]
    innercut: tuple[float, ...]
    ic_pow: tuple[float, ...]
    icgray_p: tuple[float, ...]

    @classmethod
    def from_disco(
        cls,
        cut_overview: CutScheduleValue = "[12]*400+[4]*600",
        cut_innercut: CutScheduleValue = "[4]*400+[12]*600",
        cut_ic_pow: CutScheduleValue = "[1]*1000",
        cut_icgray_p: CutScheduleValue = "[0.2]*400+[0]*600",
    ) -> CutSchedules:
        """Build from Disco settings (defaults are Disco v5.7's).

        Each value is anything :func:`discolib.schedules.cuts.parse_cut_schedule` reads: a Disco list expression
        (``"[12]*400+[4]*600"``), one number for every step, or ``SCHEDULE_LENGTH`` numbers.

        Raises:
            CutoutError: a malformed schedule, or entries out of range (the message names the setting).
        """
        try:
            ov, ic, pw, gp = (
                tuple(parse_cut_schedule(value, setting=name, length=SCHEDULE_LENGTH, kind=float))
                for name, value in (
                    ("cut_overview", cut_overview),
                    ("cut_innercut", cut_innercut),
                    ("cut_ic_pow", cut_ic_pow),
                    ("cut_icgray_p", cut_icgray_p),
                )
            )
        except ScheduleError as exc:  # CutoutError for every bad cut setting; the message keeps setting and column
            raise CutoutError(str(exc)) from None
        for name, seq in (("cut_overview", ov), ("cut_innercut", ic)):
            if any(v < 0 or v != int(v) for v in seq):
                raise CutoutError(f"{name} entries must be non-negative integers")
        if any(a + b < 1 for a, b in zip(ov, ic, strict=True)):
            raise CutoutError("cut_overview + cut_innercut must be at least 1 at every step")
        if any(v < 0 for v in pw):
            raise CutoutError("cut_ic_pow entries must be >= 0")
        if any(not 0 <= v <= 1 for v in gp):
            raise CutoutError("cut_icgray_p entries must be in [0, 1]")
        return cls(ov, ic, pw, gp)

    def at(self, t: float, total_steps: int = SCHEDULE_LENGTH) -> CutSettings:
        """The settings Disco uses at model timestep ``t`` (see :func:`cut_counts_at_step`)."""
        return cut_counts_at_step(self, t, total_steps)


#: Disco v5.7's default schedules.
DISCO_DEFAULT_SCHEDULES = CutSchedules.from_disco()


def disco_schedule_index(t: float, total_steps: int = SCHEDULE_LENGTH) -> int:
    """Index into a 1000-entry Disco schedule for model timestep ``t``.

    ``t`` is the (original, not respaced) diffusion timestep in ``[0, total_steps)``, 0 = clean,
    ``total_steps - 1`` = pure noise; ``total_steps`` is the number of training/diffusion timesteps
    (Disco's ``diffusion_steps``, diffusers' ``num_train_timesteps``). Disco rescales it to 1000
    (``t * 1000 / total_steps``), takes ``t_int = int(t) + 1`` and reads entry ``1000 - t_int``.
    The result is clamped to [0, 999].
    """
    if total_steps < 1:
        raise CutoutError(f"total_steps must be >= 1, got {total_steps}")
    t_rescaled = float(t) * SCHEDULE_LENGTH / total_steps
    idx = SCHEDULE_LENGTH - (math.floor(t_rescaled) + 1)
    return min(max(idx, 0), SCHEDULE_LENGTH - 1)


def cut_counts_at_step(schedules: CutSchedules, step: float, total_steps: int = SCHEDULE_LENGTH) -> CutSettings:
    """Cut settings at model timestep ``step`` (a timestep, not a loop counter), indexed as Disco does.

    Example: with Disco's defaults, timestep 999 of 1000 uses entry 0 (12 overview + 4 inner cuts) and
    timestep 100 uses entry 899 (4 overview + 12 inner cuts).
    """
    i = disco_schedule_index(step, total_steps)
    return CutSettings(
        overview=int(schedules.overview[i]),
        innercut=int(schedules.innercut[i]),
        ic_pow=float(schedules.ic_pow[i]),
        icgray_p=float(schedules.icgray_p[i]),
    )
