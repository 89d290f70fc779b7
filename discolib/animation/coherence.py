"""Frame-to-frame coherence: colour matching, contrast, noise and anti-blur (Deforum's per-frame chain).

Deforum applies, to the warped previous frame before it becomes the next init image:
``maintain_colors`` (histogram matching to a reference frame) -> ``prev * contrast`` -> ``unsharp_mask`` ->
``add_noise``. These functions are the same steps as batched torch ops on the image's device.

All images are ``(B, 3, H, W)`` float tensors in ``[0, 1]``; per-frame amounts are numbers or ``(B,)`` tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from kornia.color import hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab
from kornia.filters import gaussian_blur2d

from discolib.animation.noise import perlin_noise
from discolib.errors import InputError
from discolib.ops import check_image_batch

__all__ = [
    "HISTOGRAM_BINS",
    "CoherenceError",
    "HistogramReference",
    "adjust_contrast",
    "add_noise",
    "match_histogram",
    "unsharp_mask",
]

ColorSpace = Literal["LAB", "HSV", "RGB"]
NoiseKind = Literal["gaussian", "uniform", "perlin"]
Amount = float | int | Sequence[float] | torch.Tensor

# Hue histogram bins used to pick where to cut the hue circle (10 degrees each).
_HUE_BINS = 36


class CoherenceError(InputError):
    """A coherence setting or input tensor is not what the function expects."""


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    check_image_batch(image, name, error=CoherenceError)


def _per_image(value: Amount, image: torch.Tensor, name: str) -> torch.Tensor:
    """A number or ``(B,)`` value as a ``(B, 1, 1, 1)`` tensor broadcastable against ``image``."""
    t = torch.as_tensor(value, device=image.device, dtype=image.dtype)
    b = image.shape[0]
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] in (1, b)):
        return t.reshape(-1, 1, 1, 1).expand(b, 1, 1, 1)
    raise CoherenceError(f"{name} must be a number or have shape ({b},), got {tuple(t.shape)}")


# --------------------------------------------------------------------------------------------------- colour


#: Levels per channel of :func:`match_histogram`'s source histogram (16x finer than an 8-bit channel).
HISTOGRAM_BINS = 4096


def _match_rows(source: torch.Tensor, reference: torch.Tensor, *, presorted: bool = False) -> torch.Tensor:
    """Quantile-map each row of ``source`` ``(R, N)`` onto the distribution of ``reference`` ``(R, M)``.

    The source row is binned into a :data:`HISTOGRAM_BINS`-bin histogram over its range (its minimum and maximum,
    where clipped pixels pile up, in bins of their own); every value in a bin takes the bin's mid-rank (so ties,
    which always share a bin, share one rank and equal inputs stay equal), i.e. the quantile
    ``q = rank / (N - 1)``, and is replaced by the reference's ``q``-quantile, linearly interpolated between the
    sorted reference values. This is skimage's ``match_histograms`` on a 4096-level
    quantisation of each channel (Deforum's OpenCV 8-bit LAB matching amounts to 256 levels); the mapping is a
    lookup table per row, so it costs a few passes over the image and no sort or host sync.
    ``presorted``: ``reference`` rows are already sorted (see :class:`HistogramReference`).
    """
    rows, n = source.shape
    m = reference.shape[-1]
    k = HISTOGRAM_BINS
    # Bin and rank in at least float32: in half precision (k - 2) / width overflows for narrow rows and the
    # counts overflow past 65504 pixels.
    work = source if source.dtype in (torch.float32, torch.float64) else source.float()
    lo, hi = work.aminmax(dim=-1, keepdim=True)
    width = hi - lo
    # The row's minimum and maximum get bins of their own (bin 0 and k - 1): clipped pixels (a frame clamped to
    # [0, 1]) are the largest runs of ties, and sharing a bin with their neighbours would move them off their
    # mid-rank. The rest of the range splits into k - 2 equal bins. A constant row lands in one bin (the exact
    # mid-rank); the division is guarded instead of branching on the host.
    scale = torch.where(width > 0, (k - 2) / width.clamp(min=torch.finfo(work.dtype).tiny), 0.0)
    index = ((work - lo) * scale).ceil_().long().clamp_(0, k - 2)
    index += work == hi
    index += torch.arange(rows, device=source.device).view(rows, 1) * k  # one histogram per row
    flat = index.view(-1)
    # scatter_add rather than bincount, which reads its input's range back to the host on CUDA (a sync per frame).
    # Counts are exact integers in float32 up to 2**24 pixels.
    ones = torch.ones((), device=source.device, dtype=work.dtype).expand(flat.shape)
    counts = torch.zeros(rows * k, device=source.device, dtype=work.dtype).scatter_add_(0, flat, ones).view(rows, k)
    mid_rank = counts.cumsum(-1) - (counts + 1) / 2  # (R, K): first rank + (count - 1) / 2
    ref_sorted = reference if presorted else reference.sort(dim=-1).values
    position = mid_rank.clamp_(min=0) * ((m - 1) / max(n - 1, 1))
    lower = position.floor().long().clamp_(0, m - 1)
    upper = (lower + 1).clamp_(max=m - 1)
    frac = (position - lower.to(work.dtype)).to(ref_sorted.dtype)
    table = torch.lerp(ref_sorted.gather(-1, lower), ref_sorted.gather(-1, upper), frac)
    # (index_select: tensor[indices] indexing is several times slower on a CPU.)
    return table.view(-1).index_select(0, flat).view(rows, n).to(source.dtype)


def _hue_cut(hue_image: torch.Tensor, hue_reference: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 1)`` angle (radians) at the centre of the least-populated hue bin of image and reference.

    Args:
        hue_image: ``(B, N)`` hues in radians; hue_reference: ``(B, M)``.
    """

    def histogram(h: torch.Tensor) -> torch.Tensor:
        bins = (h * (_HUE_BINS / (2 * math.pi))).long().clamp(0, _HUE_BINS - 1)
        counts = torch.zeros(h.shape[0], _HUE_BINS, device=h.device, dtype=h.dtype)
        counts.scatter_add_(1, bins, torch.ones_like(h))
        return counts / h.shape[1]

    both = histogram(hue_image) + histogram(hue_reference)  # (B, bins)
    empty = both.argmin(dim=1).to(hue_image.dtype)
    return ((empty + 0.5) * (2 * math.pi / _HUE_BINS)).view(-1, 1, 1)


def _space(color_space: str) -> str:
    # Also accept Deforum's setting strings ("Match Frame 0 LAB", ...): the space is the last word.
    words = str(color_space).upper().split()
    space = words[-1] if words else ""
    if space not in ("LAB", "HSV", "RGB"):
        raise CoherenceError(f"color_space must be 'LAB', 'HSV' or 'RGB', got {color_space!r}")
    return space


@dataclass(frozen=True)
class HistogramReference:
    """A colour reference prepared once for many :func:`match_histogram` calls (an animation's frame 0).

    Holds the reference image and, for LAB and RGB, its channels converted and sorted (the reference's half of
    the work; HSV's circular cut depends on both images, so it is prepared per call). Results are identical to
    passing the image itself.
    """

    image: torch.Tensor
    space: str
    sorted_channels: torch.Tensor | None  # (B_ref, 3, M)

    @classmethod
    def prepare(cls, reference: torch.Tensor, color_space: ColorSpace = "LAB") -> HistogramReference:
        _check_image(reference, "reference")
        space = _space(color_space)
        sorted_channels = None
        if space != "HSV":
            ref = rgb_to_lab(reference) if space == "LAB" else reference
            sorted_channels = ref.reshape(reference.shape[0], 3, -1).sort(dim=-1).values
        return cls(reference, space, sorted_channels)


def match_histogram(
    image: torch.Tensor,
    reference: torch.Tensor | HistogramReference,
    color_space: ColorSpace = "LAB",
) -> torch.Tensor:
    """Match each colour channel's histogram of ``image`` to ``reference`` (Deforum ``color_coherence``).

    Per channel, every pixel value is replaced by the reference value at the same quantile (sort-based CDF
    matching, as ``skimage.exposure.match_histograms`` that Deforum calls), in the chosen colour space:

    * ``"LAB"`` (Deforum's default "Match Frame 0 LAB"): CIE L*a*b* via ``kornia.color.rgb_to_lab`` (sRGB).
      Per-channel matching is invariant to OpenCV's 8-bit Lab scaling, so this equals Deforum up to quantisation.
    * ``"RGB"``: the sRGB channels directly.
    * ``"HSV"``: hue, saturation, value via ``kornia.color.rgb_to_hsv``. Hue is an angle: matching it on a line
      cut at red (what Deforum does with OpenCV's hue) sends reds across the cut to the far end (red -> magenta
      flicker). We cut the circle instead at the least-populated 10-degree hue bin of image and reference
      together, match the unrolled hues there, and roll back -- identical to a cut at red whenever neither
      image has a hue in [0, 10) degrees. Grey pixels (hue undefined) count as hue 0, as in kornia.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        reference: ``(B, 3, H', W')`` or ``(1, 3, H', W')`` in ``[0, 1]`` (any size).
        color_space: ``"LAB"``, ``"HSV"`` or ``"RGB"`` (case-insensitive; Deforum's ``"Match Frame 0 LAB"``
            style values work too).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``; matching an image to itself returns it (up to colour conversion error).
    """
    _check_image(image)
    space = _space(color_space)
    prepared: HistogramReference | None = None
    if isinstance(reference, HistogramReference):
        if reference.space != space:
            raise CoherenceError(f"the prepared reference is for {reference.space}, not {space}")
        prepared, reference = reference, reference.image
    _check_image(reference, "reference")
    b = image.shape[0]
    if reference.shape[0] not in (1, b):
        raise CoherenceError(f"reference batch must be 1 or {b}, got {reference.shape[0]}")
    h, w = image.shape[-2:]
    if prepared is not None and prepared.sorted_channels is not None:
        src = (rgb_to_lab(image) if space == "LAB" else image).reshape(b * 3, -1)
        ref_sorted = prepared.sorted_channels.to(device=image.device, dtype=image.dtype).expand(b, -1, -1)
        matched = _match_rows(src, ref_sorted.reshape(b * 3, -1), presorted=True).reshape(b, 3, h, w)
        out = lab_to_rgb(matched, clip=False) if space == "LAB" else matched
        return out.clamp(0.0, 1.0)
    reference = reference.to(device=image.device, dtype=image.dtype)
    if space == "LAB":
        src, ref = rgb_to_lab(image), rgb_to_lab(reference)
    elif space == "HSV":
        src, ref = rgb_to_hsv(image), rgb_to_hsv(reference)
    else:
        src, ref = image, reference
    src = src.reshape(b, 3, -1)
    ref = ref.reshape(reference.shape[0], 3, -1).expand(b, -1, -1)

    cut = None
    if space == "HSV":
        # Roll both hue channels so the circle is cut where neither image has (many) pixels.
        cut = _hue_cut(src[:, 0], ref[:, 0])
        src = torch.cat((torch.remainder(src[:, :1] - cut, 2 * math.pi), src[:, 1:]), dim=1)
        ref = torch.cat((torch.remainder(ref[:, :1] - cut, 2 * math.pi), ref[:, 1:]), dim=1)

    matched = _match_rows(src.reshape(b * 3, -1), ref.reshape(b * 3, -1)).reshape(b, 3, h, w)

    if space == "HSV":
        assert cut is not None
        hue = torch.remainder(matched[:, :1] + cut.unsqueeze(-1), 2 * math.pi)
        out = hsv_to_rgb(torch.cat((hue, matched[:, 1:]), dim=1))
    elif space == "LAB":
        out = lab_to_rgb(matched, clip=False)
    else:
        out = matched
    return out.clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------- contrast


def adjust_contrast(
    image: torch.Tensor,
    factor: Amount,
    pivot: float | Literal["mean"] = 0.0,
) -> torch.Tensor:
    """Scale intensities around ``pivot``: ``(image - pivot) * factor + pivot``, clamped to ``[0, 1]``.

    Deforum's ``contrast_schedule`` is ``prev_img * contrast`` on 0-255 pixels, i.e. the default ``pivot=0``
    (values below 1 darken the frame, above 1 brighten it, clipping highlights). ``pivot=0.5`` is the classic
    contrast about mid-grey; ``pivot="mean"`` scales about each image's mean intensity (keeps its brightness).

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        factor: number or ``(B,)``; 1 is the identity.
        pivot: fixed intensity, or ``"mean"``.
    """
    _check_image(image)
    f = _per_image(factor, image, "factor")
    if isinstance(pivot, str):
        if pivot != "mean":
            raise CoherenceError(f"pivot must be a number or 'mean', got {pivot!r}")
        center = image.mean(dim=(1, 2, 3), keepdim=True)
    else:
        center = torch.as_tensor(float(pivot), device=image.device, dtype=image.dtype)
    return ((image - center) * f + center).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------- noise


# --------------------------------------------------------------------------------------------------- anti-blur


def unsharp_mask(
    image: torch.Tensor,
    amount: Amount,
    kernel_size: int = 5,
    sigma: float = 1.0,
    threshold: float = 0.0,
) -> torch.Tensor:
    """Deforum's anti-blur: ``(1 + amount) * image - amount * blur(image)``, clamped to ``[0, 1]``.

    The blur is :func:`kornia.filters.gaussian_blur2d` with reflect-101 borders (OpenCV's ``GaussianBlur``
    default, as Deforum). kornia's own ``unsharp_mask`` has no amount or threshold, so it is not used here.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        amount: sharpening strength, number or ``(B,)`` (Deforum ``amount_schedule``); 0 is the identity.
        kernel_size: odd Gaussian kernel size in pixels (Deforum ``kernel_schedule``).
        sigma: Gaussian standard deviation in pixels (Deforum ``sigma_schedule``); ``<= 0`` derives it from the
            kernel size as OpenCV does: ``0.3 * ((k - 1) * 0.5 - 1) + 0.8``.
        threshold: pixels whose difference to the blur is below it stay unchanged (Deforum
            ``threshold_schedule`` / 255: here in ``[0, 1]`` intensity units).
    """
    _check_image(image)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise CoherenceError(f"kernel_size must be a positive odd number of pixels, got {kernel_size}")
    if threshold < 0:
        raise CoherenceError(f"threshold must be >= 0, got {threshold}")
    a = _per_image(amount, image, "amount")
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    blurred = gaussian_blur2d(image, (kernel_size, kernel_size), (sigma, sigma), border_type="reflect")
    sharpened = ((1.0 + a) * image - a * blurred).clamp(0.0, 1.0)
    if threshold > 0:
        sharpened = torch.where((image - blurred).abs() < threshold, image, sharpened)
    return sharpened


def add_noise(
    image: torch.Tensor,
    amount: Amount,
    kind: NoiseKind = "gaussian",
    generator: torch.Generator | None = None,
    *,
    perlin_cells: tuple[float, float] = (8.0, 8.0),
    perlin_octaves: int = 4,
    perlin_persistence: float = 0.5,
    clamp: bool = False,
) -> torch.Tensor:
    """Add Deforum's per-frame noise (``noise_schedule``) to ``image``.

    ``amount`` is in Deforum's units: the standard deviation of Gaussian noise added to the frame in the model's
    ``[-1, 1]`` range (``sample + randn * noise_amt``), i.e. ``amount / 2`` for our ``[0, 1]`` images.

    * ``"gaussian"`` (also ``"uniform"``, Deforum's name for this same white noise): independent N(0, 1) per
      pixel and channel, times ``amount / 2``.
    * ``"perlin"``: the same Gaussian noise modulated by a fractal Perlin mask ``(perlin + 1) / 2`` in
      ``[0, 1]`` shared by the channels (Deforum's ``noise_type="perlin"``): grainy in some regions, clean in
      others.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        amount: number or ``(B,)``; 0 returns the image unchanged.
        generator: for reproducible noise. Noise is drawn on the generator's device and moved to the image's,
            so a CPU generator gives the same noise on every device.
        perlin_cells, perlin_octaves, perlin_persistence: see :func:`perlin_noise` (Deforum: ``perlin_w/h``,
            ``perlin_octaves``, ``perlin_persistence``).
        clamp: clamp the result to ``[0, 1]`` (Deforum does not: the init image may leave the range slightly).
    """
    _check_image(image)
    if kind == "uniform":  # Deforum's name for its (Gaussian) white noise
        kind = "gaussian"
    if kind not in ("gaussian", "perlin"):
        raise CoherenceError(f"noise kind must be 'gaussian' (alias 'uniform') or 'perlin', got {kind!r}")
    std = _per_image(amount, image, "amount") * 0.5
    gen_device = generator.device if generator is not None else image.device
    noise = torch.randn(image.shape, generator=generator, device=gen_device, dtype=image.dtype)
    if kind == "perlin":
        b, _, h, w = image.shape
        mask = perlin_noise(
            (b, 1, h, w),
            perlin_cells,
            perlin_octaves,
            perlin_persistence,
            generator=generator,
            device=gen_device,
            dtype=image.dtype,
        )
        noise = noise * ((mask + 1.0) * 0.5)
    out = image + noise.to(image.device) * std
    return out.clamp(0.0, 1.0) if clamp else out
