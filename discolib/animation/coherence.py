"""Frame-to-frame coherence: colour matching, contrast, noise and anti-blur (Deforum's per-frame chain).

Deforum applies, to the warped previous frame before it becomes the next init image:
``maintain_colors`` (histogram matching to a reference frame) -> ``prev * contrast`` -> ``unsharp_mask`` ->
``add_noise``. These functions are the same steps as batched torch ops on the image's device (colour matching of
CPU float32 frames runs on OpenCV instead, within a pinned bound of the torch path: see "OpenCV backend").
Deforum holds its frames as uint8 there: :func:`match_histogram_u8` (uint8 frames, OpenCV) and
:func:`match_histogram_8bit` (float frames, any device) are its 8-bit colour match bit for bit.

All images are ``(B, 3, H, W)`` float tensors in ``[0, 1]``; per-frame amounts are numbers or ``(B,)`` tensors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from kornia.color import hsv_to_rgb, lab_to_rgb, rgb_to_hsv, rgb_to_lab
from kornia.filters import filter2d_separable

from discolib.animation.noise import lattice_perlin
from discolib.errors import InputError
from discolib.models.device import upload
from discolib.ops import check_image_batch, scratch

__all__ = [
    "HISTOGRAM_BINS",
    "CoherenceError",
    "HistogramReference",
    "HistogramReference8",
    "SPACES_U8",
    "adjust_contrast",
    "add_noise",
    "antiblur_kernel_size",
    "gaussian_kernel_1d",
    "match_histogram",
    "match_histogram_8bit",
    "match_histogram_u8",
    "from_u8",
    "to_u8",
    "to_u8_tensor",
    "space_of",
    "unsharp_mask",
]

ColorSpace = Literal["LAB", "HSV", "RGB"]
NoiseKind = Literal["gaussian", "uniform", "perlin", "webui-uniform", "webui-perlin"]
Amount = float | int | Sequence[float] | torch.Tensor

# Hue histogram bins used to pick where to cut the hue circle (10 degrees each).
_HUE_BINS = 36


class CoherenceError(InputError):
    """A coherence setting or input tensor is not what the function expects."""


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    check_image_batch(image, name, error=CoherenceError)


def _per_image(value: Amount, image: torch.Tensor, name: str) -> torch.Tensor:
    """A number or ``(B,)`` value as a ``(B, 1, 1, 1)`` tensor broadcastable against ``image``."""
    b = image.shape[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # a fill kernel: a tensor made from a host number would be a blocking host-to-device copy every frame
        return torch.full((b, 1, 1, 1), float(value), device=image.device, dtype=image.dtype)
    t = value.to(image.dtype) if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=image.dtype)
    t = upload(t, image.device)
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
    ref_sorted = reference if presorted else reference.sort(dim=-1).values
    table = _quantile_table(counts, ref_sorted, n)
    # (index_select: tensor[indices] indexing is several times slower on a CPU.)
    return table.view(-1).index_select(0, flat).view(rows, n).to(source.dtype)


def _quantile_table(counts: torch.Tensor, ref_sorted: torch.Tensor, n: int) -> torch.Tensor:
    """``(R, K)`` output value of each bin: the reference quantile at the bin's mid-rank.

    Args:
        counts: ``(R, K)`` pixels per bin (float, exact integers), ``n`` per row.
        ref_sorted: ``(R, M)`` sorted reference values.
    """
    m = ref_sorted.shape[-1]
    mid_rank = counts.cumsum(-1) - (counts + 1) / 2  # (R, K): first rank + (count - 1) / 2
    position = mid_rank.clamp_(min=0) * ((m - 1) / max(n - 1, 1))
    lower = position.floor().long().clamp_(0, m - 1)
    upper = (lower + 1).clamp_(max=m - 1)
    frac = (position - lower.to(counts.dtype)).to(ref_sorted.dtype)
    return torch.lerp(ref_sorted.gather(-1, lower), ref_sorted.gather(-1, upper), frac)


# ------------------------------------------------------------------------------------- colour: OpenCV backend
#
# CPU float32 frames (the render loop's on a CPU) are matched with OpenCV colour conversions and table lookups
# instead of kornia's float conversions (45 of the torch path's ~60 ms at 512^2 went to sRGB <-> L*a*b*: a float
# pow costs ~10 ns an element on a CPU). Same algorithm, same 4096 bins over each channel's range, same quantile
# tables (_quantile_table); what differs:
# * LAB: sRGB -> linear light is a 65536-entry table of kornia's formula on the input rounded to 1/65535 (8-bit
#   values exactly; L* moves < 0.002), then OpenCV's float linear RGB -> L*a*b* (a spline cube root: within 0.03
#   in a*, a bin is ~0.05) and L*a*b* -> sRGB (within 4e-4). OpenCV's float sRGB -> L*a*b* is not used: it
#   interpolates a 33^3 table and is up to 0.6 off in a*.
# * HSV: OpenCV's float HSV (degrees; its epsilon puts hues on a 10-degree edge just below it) and a fixed grid of
#   hue bins (_HUE_FINE) instead of 4096 bins over the rolled hue range.
# * bin edges move by at most _EDGE of a bin.
# * frames the backend cannot bin as finely as the torch path go to the torch path: non-finite input, and L*a*b*
#   ranges below _LAB_MIN_RANGE (a nearly grey frame, whose a* and b* bins would sort conversion noise).
# A pixel whose value lies within the conversion error of a bin edge can land in the neighbouring bin and take
# its mid-rank: a change far below an 8-bit level as a rule, but inside a large run of near-equal pixels (a
# saturated patch) where the reference quantile is steep a few pixels move by more -- as between the torch path
# in float32 and in float64. So CPU (OpenCV) and GPU (torch) frames relate by a bound on the distribution of
# per-pixel differences, pinned in tests/test_coherence_cpu.py. LAB, photo-like frames: mean < 0.03/255
# (measured <= 0.007), < 0.3% of pixels beyond 1/255, < 0.1% beyond 2/255 (measured <= 0.04%, <= 0.02%); muted
# frames near _LAB_MIN_RANGE: mean < 0.1/255, < 1% beyond 1/255, < 0.1% beyond 2/255. RGB: ten times tighter.
# HSV: mean < 0.15/255, < 1.5% beyond 2/255 where both cut the hue circle at the same bin. The cut is decided by
# hues on a 10-degree edge when two bins are close; there the backends (like float32 and float64 on the torch
# path) can cut elsewhere and differ by a few levels over much of the frame.

#: Levels of the sRGB -> linear table: the input is rounded to 1/65535 (error in L* < 0.002, a bin is ~0.025).
_SRGB_LEVELS = 65535
#: Bin edge margin of the OpenCV backend's binning, in bins: ``floor((v - lo) * a + 1 - d)`` with
#: ``a = (K - 2 + 2d) / (hi - lo)`` puts ``lo`` alone in bin 0 and ``hi`` alone in bin ``K - 1`` (as
#: :func:`_match_rows`' ceil rule does) while float32 rounding (< 1e-3 at codes up to ``3K``) cannot move them.
_EDGE = 1.0 / 128
#: Largest ``|value * scale|`` binned in one affine step: float32's error there (~2**-24 of it, plus as much for a
#: code up to 3K) stays under a quarter of _EDGE. Narrower channels are shifted to their minimum first.
_DIRECT_LIMIT = 2.0**14
#: Narrowest (L*, a*, b*) ranges of a frame the OpenCV backend matches; narrower goes to the torch path. Bins are
#: range / 4096 wide, and OpenCV's a* and b* carry errors up to 0.03 (L* ~0.005): in a nearly grey frame (a*, b*
#: spanning < 1) the bins would sort conversion noise. At the limits the pinned bound still holds (a*, b* ranges of
#: 14-20 measured mean 0.04-0.06/255, < 0.08% beyond 2/255); greyscale frames get the torch path's exact result.
_LAB_MIN_RANGE = np.array([4.0, 16.0, 16.0])
#: ``cv2.transform`` matrix of kornia's b* bound (see :func:`_match_lab_opencv`).
_B_BOUND = np.array([[0.0, 0.0, 0.0, 1e9], [0.0, 0.0, 0.0, 1e9], [200.0 / 116.0, 0.0, 0.0, 16.0 * 200.0 / 116.0]])


@functools.cache
def _srgb_to_linear_table() -> np.ndarray:
    """``(_SRGB_LEVELS + 1,)`` float32: kornia's sRGB -> linear RGB formula at ``i / _SRGB_LEVELS``."""
    x = np.arange(_SRGB_LEVELS + 1, dtype=np.float64) / _SRGB_LEVELS
    return np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92).astype(np.float32)


class _Workspace:
    """Buffers for one frame size. Each buffer serves two steps of one call; see :func:`_match_lab_opencv`. numpy,
    wrapped per call: a tensor made under ``torch.inference_mode`` could not be written outside it.

    ``reuse``: this thread's arrays (:func:`discolib.ops.scratch`: fresh multi-megabyte arrays cost page faults on
    every call, ~15% of the match at 512^2); otherwise arrays of its own (a reference, whose size may differ).
    """

    def __init__(self, h: int, w: int, *, reuse: bool = True) -> None:
        def get(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
            return scratch(f"coherence.{name}", shape, dtype) if reuse else np.empty(shape, dtype)

        self.shape = (h, w)
        self.index = get("index", (h, w, 3), np.int32)  # table indices: 16-bit sRGB levels, then bin codes
        self.linear = get("linear", (3, h, w), np.float32)  # linear RGB planes, then matched L*a*b* pixels
        self.pixels = get("pixels", (h, w, 3), np.float32)  # linear RGB pixels, then scaled L*a*b*
        self.lab = get("lab", (h, w, 3), np.float32)  # L*a*b* pixels, then sRGB pixels


def _workspace(h: int, w: int) -> _Workspace:
    """This thread's reused workspace for ``(h, w)`` frames."""
    return _Workspace(h, w)


def _opencv_backend(image: torch.Tensor) -> bool:
    """Whether ``image`` is matched by the OpenCV backend: a CPU float32 tensor outside autograd."""
    return (
        image.device.type == "cpu"
        and image.dtype == torch.float32
        and not (torch.is_grad_enabled() and image.requires_grad)
    )


def _lab_opencv(rgb: np.ndarray, ws: _Workspace) -> np.ndarray:
    """``(3, H, W)`` sRGB planes -> ``(H, W, 3)`` L*a*b* pixels (``ws.lab``), kornia's definition (D65, 2 deg)."""
    _, h, w = rgb.shape
    levels = ws.index.reshape(3 * h, w)
    # Rounds to the nearest level (8-bit values k/255 land exactly on level 257k); NaN and +-inf give INT_MIN.
    # (addWeighted: the same rounding conversion as multiply, in half its time.)
    flat = rgb.reshape(3 * h, w)
    cv2.addWeighted(flat, float(_SRGB_LEVELS), flat, 0.0, 0.0, dst=levels, dtype=cv2.CV_32S)
    table, linear = torch.from_numpy(_srgb_to_linear_table()), torch.from_numpy(ws.linear).view(-1)
    try:  # index_select checks the range anyway: no pass of our own for the rare input outside [0, 1]
        torch.index_select(table, 0, torch.from_numpy(levels).view(-1), out=linear)
    except IndexError:
        np.clip(levels, 0, _SRGB_LEVELS, out=levels)  # as clamping the input (kornia's formula saturates)
        torch.index_select(table, 0, torch.from_numpy(levels).view(-1), out=linear)
    planes = ws.linear
    cv2.merge([planes[0], planes[1], planes[2]], dst=ws.pixels)
    return cv2.cvtColor(ws.pixels, cv2.COLOR_LRGB2Lab, dst=ws.lab)


def _hsv_opencv(rgb: np.ndarray, ws: _Workspace) -> np.ndarray:
    """``(3, H, W)`` sRGB planes -> ``(H, W, 3)`` HSV pixels (``ws.lab``): hue in degrees ``[0, 360]`` (360 from
    rounding), saturation and value as kornia's (which differ by OpenCV's 1e-7 instead of 1e-8 epsilon)."""
    cv2.merge([rgb[0], rgb[1], rgb[2]], dst=ws.pixels)
    return cv2.cvtColor(ws.pixels, cv2.COLOR_RGB2HSV, dst=ws.lab)


def _sorted_channels_opencv(reference: torch.Tensor, space: str) -> torch.Tensor:
    """``(B, 3, M)`` sorted channel values of CPU float32 ``reference`` in ``space`` (HSV: hue in degrees)."""
    b, _, h, w = reference.shape
    if space == "RGB":
        return reference.reshape(b, 3, -1).sort(dim=-1).values
    ws = _Workspace(h, w, reuse=False)  # not the frame's: a reference may have another size
    x = reference.detach().contiguous().numpy()
    convert = _lab_opencv if space == "LAB" else _hsv_opencv
    out = torch.empty(b, 3, h * w)
    for i in range(b):
        out[i] = torch.from_numpy(convert(x[i], ws).reshape(-1, 3)).T
    return out.sort(dim=-1).values


def _bin_scale(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per-channel scale of the binning: ``(v - lo) * scale + 1 - _EDGE`` truncates to bin ``[0, K)`` of ``v``."""
    width = hi.astype(np.float64) - lo.astype(np.float64)
    return np.where(width > 0, (HISTOGRAM_BINS - 2 + 2 * _EDGE) / np.where(width > 0, width, 1.0), 0.0)


def _shift_first(lo: np.ndarray, hi: np.ndarray, scale: np.ndarray) -> bool:
    """Whether to subtract ``lo`` before scaling: in one step, ``v * scale + (offset - lo * scale)`` loses the
    bins to float32 rounding when a channel's range is narrow and far from 0 (a foggy frame's L*)."""
    return bool((np.maximum(np.abs(lo), np.abs(hi)) * scale).max() > _DIRECT_LIMIT)


def _codes_hwc(
    pixels: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: np.ndarray, base: np.ndarray, ws: _Workspace
) -> torch.Tensor:
    """int32 codes ``floor((v - lo) * scale + base)`` of ``(H, W, 3)`` ``pixels`` (``ws.lab``), in ``ws.index``."""
    affine = np.zeros((3, 4))
    affine[[0, 1, 2], [0, 1, 2]] = scale
    if _shift_first(lo, hi, scale):  # one more pass, for exact bins
        pixels = cv2.subtract(pixels, (*lo.astype(np.float64).tolist(), 0.0), dst=ws.pixels)
        affine[:, 3] = base
        cv2.transform(pixels, affine, dst=ws.lab)  # the L*a*b* pixels are not needed again
        np.copyto(ws.index, ws.lab, casting="unsafe")  # truncates: codes >= 0
    else:
        affine[:, 3] = base - lo.astype(np.float64) * scale
        cv2.transform(pixels, affine, dst=ws.pixels)
        np.copyto(ws.index, ws.pixels, casting="unsafe")
    return torch.from_numpy(ws.index).view(-1)


def _table_opencv(codes: torch.Tensor, ref_sorted: torch.Tensor, n: int) -> torch.Tensor:
    """``(3 * K,)`` matched value per code (see :func:`_quantile_table`); ``codes`` int32 in ``[0, 3K)``."""
    k = HISTOGRAM_BINS
    # bincount: exact counts; on a CPU it beats scatter_add (no host sync to avoid here).
    counts = torch.bincount(codes, minlength=3 * k).to(torch.float32).view(3, k)
    return _quantile_table(counts, ref_sorted, n).view(-1)


def _match_lab_opencv(x: np.ndarray, ref_sorted: torch.Tensor, out: np.ndarray) -> bool:
    """Match ``(3, H, W)`` sRGB planes ``x`` to sorted ``(3, M)`` L*a*b* ``ref_sorted``, into planes ``out``; False
    (nothing written) when a channel's range is below :data:`_LAB_MIN_RANGE`."""
    _, h, w = x.shape
    ws = _workspace(h, w)
    lab = _lab_opencv(x, ws)
    rows = lab.reshape(h, 3 * w)  # column-wise min/max over rows is a vectorised elementwise pass
    lo, hi = rows.min(axis=0).reshape(w, 3).min(axis=0), rows.max(axis=0).reshape(w, 3).max(axis=0)
    if (hi - lo < _LAB_MIN_RANGE).any():
        return False
    base = 1.0 - _EDGE + np.arange(3) * HISTOGRAM_BINS
    codes = _codes_hwc(lab, lo, hi, _bin_scale(lo, hi), base, ws)
    table = _table_opencv(codes, ref_sorted, h * w)
    torch.index_select(table, 0, codes, out=torch.from_numpy(ws.linear).view(-1))
    matched = ws.linear.reshape(h, w, 3)
    # kornia's lab_to_rgb clamps f_z = (L* + 16) / 116 - b* / 200 at 0 (out-of-gamut matches), i.e. b* at
    # 200 / 116 * (L* + 16); OpenCV does not. (L*, a*) are bounded by a value no pixel reaches.
    cv2.transform(matched, _B_BOUND, dst=ws.pixels)
    cv2.min(matched, ws.pixels, dst=matched)
    rgb = cv2.cvtColor(matched, cv2.COLOR_Lab2RGB, dst=ws.lab)  # clips to [0, 1]
    cv2.split(rgb, [out[0], out[1], out[2]])
    return True


def _match_rgb_opencv(x: np.ndarray, ref_sorted: torch.Tensor, out: torch.Tensor) -> bool:
    """Match ``(3, H, W)`` planes ``x`` to sorted ``(3, M)`` ``ref_sorted``, into contiguous ``out``; False (and
    nothing written) when ``x`` is not finite."""
    _, h, w = x.shape
    ws = _workspace(h, w)
    flat = x.reshape(3, -1)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return False
    scale = _bin_scale(lo, hi)
    index, shifted = ws.index.reshape(3, h, w), ws.pixels.reshape(3, h, w)
    for c in range(3):  # scale, offset and round to int32 in one pass per plane (two: see _shift_first)
        base = 0.5 - _EDGE + c * HISTOGRAM_BINS  # a rounding conversion
        plane, offset = x[c], base - float(lo[c]) * scale[c]
        if _shift_first(lo[c : c + 1], hi[c : c + 1], scale[c : c + 1]):
            plane, offset = cv2.subtract(plane, float(lo[c]), dst=shifted[c]), base
        cv2.addWeighted(plane, float(scale[c]), plane, 0.0, float(offset), dst=index[c], dtype=cv2.CV_32S)
    codes = torch.from_numpy(index).view(-1)
    table = _table_opencv(codes, ref_sorted, h * w).clamp_(0.0, 1.0)  # = clamping the output
    torch.index_select(table, 0, codes, out=out.view(-1))
    return True


#: Hue bins of the OpenCV backend: a fixed grid of 114 per 10-degree cut bin (0.088 degrees; the torch path's 4096
#: bins over the rolled hue range are as fine), so the cut histogram is a sum of whole bins and rolling the hue
#: to the cut is a rotation of the histogram and the table, not a pass over the pixels.
_HUE_FINE = _HUE_BINS * 114


def _match_hsv_opencv(x: np.ndarray, ref_sorted: torch.Tensor, out: np.ndarray) -> bool:
    """Match ``(3, H, W)`` sRGB planes ``x`` to sorted ``(3, M)`` HSV ``ref_sorted`` (hue in degrees), into planes
    ``out``, cutting the hue circle as :func:`_hue_cut` does; False (nothing written) when ``x`` is not finite."""
    _, h, w = x.shape
    n, m, f, k = h * w, ref_sorted.shape[-1], _HUE_FINE, HISTOGRAM_BINS
    ws = _workspace(h, w)
    hsv = _hsv_opencv(x, ws)
    rows = hsv.reshape(h, 3 * w)
    lo, hi = rows.min(axis=0).reshape(w, 3).min(axis=0), rows.max(axis=0).reshape(w, 3).max(axis=0)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):  # a NaN or inf input makes H, S or V one too
        return False
    # Hue codes floor(h / 360 * f) in [0, f] (f is h == 360, i.e. hue 0); S and V binned over their range.
    lo[0], hi[0] = 0.0, 360.0
    scale = np.concatenate(([f / 360.0], _bin_scale(lo[1:], hi[1:])))
    base = np.array([0.0, f + 1.0 + 1.0 - _EDGE, f + 1.0 + k + 1.0 - _EDGE])  # S, V codes after the hue's f + 1
    codes = _codes_hwc(hsv, lo, hi, scale, base, ws)
    counts = torch.bincount(codes, minlength=f + 1 + 2 * k).to(torch.float32)
    hue_counts = counts[:f].clone()
    hue_counts[0] += counts[f]
    # The cut: the least-populated 10-degree bin of image and reference together (first of equals, as argmin).
    ref_hue = ref_sorted[0]
    edges = torch.arange(_HUE_BINS + 1, dtype=torch.float32) * (360.0 / _HUE_BINS)
    edges[-1] = math.inf
    ref_bins = torch.searchsorted(ref_hue, edges).diff().to(torch.float32)
    empty = int((hue_counts.view(_HUE_BINS, -1).sum(dim=1) / n + ref_bins / m).argmin())
    shift = empty * (f // _HUE_BINS) + f // (2 * _HUE_BINS)  # the cut, in hue codes
    cut = shift * (360.0 / f)
    # Match the hue unrolled at the cut (codes rotated by `shift`), then roll the table back.
    split = int(torch.searchsorted(ref_hue, torch.tensor([cut], dtype=torch.float32)))
    ref_rolled = torch.cat((ref_hue[split:] - cut, ref_hue[:split] + (360.0 - cut)))
    rolled = _quantile_table(hue_counts.roll(-shift).view(1, f), ref_rolled.view(1, m), n).view(f)
    hue_table = torch.remainder(rolled + cut, 360.0).roll(shift)
    sv_table = _quantile_table(counts[f + 1 :].view(2, k), ref_sorted[1:], n).view(-1)
    table = torch.cat((hue_table, hue_table[:1], sv_table))
    torch.index_select(table, 0, codes, out=torch.from_numpy(ws.linear).view(-1))
    rgb = cv2.cvtColor(ws.linear.reshape(h, w, 3), cv2.COLOR_HSV2RGB, dst=ws.lab)
    cv2.split(rgb, [out[0], out[1], out[2]])
    if sv_table.min() < 0 or sv_table.max() > 1:  # only for a reference outside [0, 1]
        np.clip(out, 0.0, 1.0, out=out)
    return True


def _match_opencv(image: torch.Tensor, ref_sorted: torch.Tensor, space: str) -> torch.Tensor | None:
    """:func:`match_histogram` of CPU float32 ``image`` ``(B, 3, H, W)`` to sorted ``(B or 1, 3, M)`` channels in
    ``space`` on the OpenCV backend; None where it does not apply (see the ``_match_*_opencv``)."""
    x = image.detach().contiguous().numpy()
    out = torch.empty(image.shape, dtype=torch.float32)
    planes = out.numpy()
    for i in range(image.shape[0]):
        ref = ref_sorted[i if ref_sorted.shape[0] > 1 else 0]
        if space == "LAB":
            done = _match_lab_opencv(x[i], ref, planes[i])
        elif space == "HSV":
            done = _match_hsv_opencv(x[i], ref, planes[i])
        else:
            done = _match_rgb_opencv(x[i], ref, out[i])
        if not done:
            return None
    return out


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


def space_of(color_space: str) -> str:
    """``"LAB"``, ``"HSV"`` or ``"RGB"`` from a colour coherence setting (Deforum's "Match Frame 0 LAB" too)."""
    return _space(color_space)


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

    Holds the reference image and its channels converted and sorted (the reference's half of the work), by the
    backend of the reference's device and dtype: ``"opencv"`` for a CPU float32 reference (all spaces; HSV's
    circular cut, which depends on both images, is then taken per call from the sorted hues), else ``"torch"``
    (LAB and RGB; HSV is prepared per call). Results are identical to passing the image itself; an image matched
    by the other backend uses :attr:`image` as if it had been passed.
    """

    image: torch.Tensor
    space: str
    sorted_channels: torch.Tensor | None  # (B_ref, 3, M)
    backend: str = "torch"
    _fallback: dict[str, HistogramReference] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def prepare(cls, reference: torch.Tensor, color_space: ColorSpace = "LAB") -> HistogramReference:
        _check_image(reference, "reference")
        return cls._prepare(reference, _space(color_space), "opencv" if _opencv_backend(reference) else "torch")

    @classmethod
    def _prepare(cls, reference: torch.Tensor, space: str, backend: str) -> HistogramReference:
        sorted_channels = None
        if backend == "opencv":
            sorted_channels = _sorted_channels_opencv(reference, space)
        elif space != "HSV":
            ref = rgb_to_lab(reference) if space == "LAB" else reference
            sorted_channels = ref.reshape(reference.shape[0], 3, -1).sort(dim=-1).values
        return cls(reference, space, sorted_channels, backend)

    def _torch(self) -> HistogramReference:
        """This reference as the torch backend prepares it (made once): for frames the OpenCV backend hands back."""
        if self.backend == "torch":
            return self
        if "torch" not in self._fallback:
            self._fallback["torch"] = HistogramReference._prepare(self.image, self.space, "torch")
        return self._fallback["torch"]


def match_histogram(
    image: torch.Tensor,
    reference: torch.Tensor | HistogramReference,
    color_space: ColorSpace = "LAB",
) -> torch.Tensor:
    """Match each colour channel's histogram of ``image`` to ``reference`` (Deforum ``color_coherence``).

    Per channel, every pixel value is replaced by the reference value at the same quantile (sort-based CDF
    matching, as ``skimage.exposure.match_histograms`` that Deforum calls), in the chosen colour space:

    * ``"LAB"`` (Deforum's default "Match Frame 0 LAB"): CIE L*a*b* via ``kornia.color.rgb_to_lab`` (sRGB).
      Per-channel matching is invariant to OpenCV's 8-bit Lab scaling, so this equals Deforum up to quantisation,
      which is not small: Deforum's 8-bit Lab round trip moves dark saturated colours by up to ~23 levels. Renders
      match in 8 bits as Deforum does (``animation.frames_8bit``, :func:`match_histogram_8bit`); this is the float
      match (``frames_8bit`` off, and HSV).
    * ``"RGB"``: the sRGB channels directly.
    * ``"HSV"``: hue, saturation, value via ``kornia.color.rgb_to_hsv``. Hue is an angle: matching it on a line
      cut at red (what Deforum does with OpenCV's hue) sends reds across the cut to the far end (red -> magenta
      flicker). We cut the circle instead at the least-populated 10-degree hue bin of image and reference
      together, match the unrolled hues there, and roll back -- identical to a cut at red whenever neither
      image has a hue in [0, 10) degrees. Grey pixels (hue undefined) count as hue 0, as in kornia.

    A CPU float32 ``image`` outside autograd (a render on a CPU) is matched on OpenCV, ~4x (LAB) to ~13x (HSV)
    faster at 512^2 and within a pinned bound of the torch path used elsewhere (see "OpenCV backend" above); its
    L*a*b* path reads the input clamped to ``[0, 1]``. Both are deterministic.

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
    backend = "opencv" if _opencv_backend(image) else "torch"
    if prepared is not None and prepared.backend != backend:
        prepared = None  # prepared by the other backend: match as if the image had been passed
    if backend == "opencv":
        if prepared is not None and prepared.sorted_channels is not None:
            ref_sorted = prepared.sorted_channels
        else:
            ref_sorted = _sorted_channels_opencv(reference.detach().to(device=image.device, dtype=image.dtype), space)
        out = _match_opencv(image, ref_sorted, space)
        if out is not None:
            return out
        # Handed back (non-finite input, or L*a*b* ranges too narrow for OpenCV's conversion error): torch path.
        prepared = prepared._torch() if prepared is not None else None
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


# --------------------------------------------------------------------------------------------------- 8-bit

#: Colour spaces :func:`match_histogram_u8` matches in (HSV keeps the float path and its circular hue cut).
SPACES_U8 = ("LAB", "RGB")


def to_u8_tensor(image: torch.Tensor) -> torch.Tensor:
    """``(1, 3, H, W)`` in [0, 1] -> contiguous ``(H, W, 3)`` uint8 on the image's device (rounded: exact for a
    frame already quantised to 8 bits). The one conversion of a frame to its 8-bit pixels: the PNG writer's and the
    8-bit path's bytes are the same by construction."""
    return image.detach()[0].float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def to_u8(image: torch.Tensor) -> np.ndarray:
    """:func:`to_u8_tensor` on the host, as a numpy array."""
    return to_u8_tensor(image).cpu().numpy()


def from_u8(frame: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W, 3|4)`` uint8 -> ``(1, 3, H, W)`` contiguous in [0, 1] (``k / 255``, what an 8-bit quantised frame
    holds)."""
    planes = torch.from_numpy(frame).permute(2, 0, 1)[:3]
    out = planes.to(torch.float32, memory_format=torch.contiguous_format).div_(255).unsqueeze(0)
    return out.to(device=device, dtype=dtype)


def _u8_channels(frame: np.ndarray, space: str, name: str) -> np.ndarray:
    """``(H, W, 3)`` uint8 channels of ``frame`` (``(H, W, 3|4)`` uint8 RGB[A]) in ``space`` (OpenCV's 8-bit Lab:
    L * 255 / 100, a + 128, b + 128, what Deforum converts to)."""
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] in (3, 4)):
        got = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise CoherenceError(f"{name}: expected an (H, W, 3) or (H, W, 4) uint8 RGB frame, got a {got}")
    if space == "LAB":
        return cv2.cvtColor(frame, cv2.COLOR_RGB2Lab)  # reads the first three channels of an RGBA frame
    return frame[..., :3]


@dataclass(frozen=True)
class HistogramReference8:
    """A colour reference prepared once for :func:`match_histogram_u8`: per channel, the cumulative share of the
    pixels at or below each 8-bit value the reference holds, and those values (skimage's template half)."""

    space: str
    tables: tuple[tuple[np.ndarray, np.ndarray], ...]  # per channel: (quantiles, values), float64, values present

    @classmethod
    def prepare(cls, reference: np.ndarray, color_space: ColorSpace = "LAB") -> HistogramReference8:
        """``reference``: ``(H, W, 3|4)`` uint8 RGB[A]."""
        space = _space(color_space)
        if space not in SPACES_U8:
            raise CoherenceError(f"8-bit matching is for {' and '.join(SPACES_U8)}, not {space}")
        channels = _u8_channels(reference, space, "reference")
        tables = []
        for c in range(3):
            counts = cv2.calcHist([channels], [c], None, [256], [0, 256]).ravel().astype(np.float64)
            values = np.flatnonzero(counts)
            tables.append((np.cumsum(counts[values]) / counts.sum(), values.astype(np.float64)))
        return cls(space, tuple(tables))


def match_histogram_u8(frame: np.ndarray, reference: HistogramReference8) -> np.ndarray:
    """Deforum's ``maintain_colors`` on an 8-bit frame: ``(H, W, 3|4)`` uint8 RGB[A] -> ``(H, W, 3)`` uint8 RGB.

    Bit for bit what Deforum computes for "Match Frame 0 LAB" / "RGB": OpenCV's 8-bit RGB -> Lab, then per channel
    ``skimage.exposure.match_histograms`` of uint8 images (each value present in the frame goes to the reference value
    at the same cumulative share, linearly interpolated between the values the reference holds, and is stored back
    into uint8, i.e. truncated), then 8-bit Lab -> RGB (tested against skimage). The reference's half is prepared
    once; per frame it is one histogram per channel (256 bins), 256 interpolations and a table look-up, ~2x faster
    than Deforum's own call at 512^2.
    """
    channels = _u8_channels(frame, reference.space, "frame")
    table = np.empty((1, 256, 3), np.uint8)
    size = channels.shape[0] * channels.shape[1]
    for c, (quantiles, values) in enumerate(reference.tables):
        counts = cv2.calcHist([channels], [c], None, [256], [0, 256]).ravel().astype(np.float64)
        # Values absent from the frame get an entry too; the look-up never reads them.
        table[0, :, c] = np.interp(np.cumsum(counts) / size, quantiles, values).astype(np.uint8)
    matched = cv2.LUT(np.ascontiguousarray(channels), table)
    return cv2.cvtColor(matched, cv2.COLOR_Lab2RGB) if reference.space == "LAB" else matched


@functools.lru_cache(maxsize=2)
def _lab8_tables(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's 8-bit RGB -> Lab and Lab -> RGB conversions as two ``(2^24, 3)`` uint8 tables on ``device`` (48 MiB
    each), made once per process by OpenCV itself (~0.2 s): an accelerator then converts exactly as the CPU path."""
    codes = np.arange(1 << 24, dtype=np.uint32)
    every = np.stack(((codes >> 16) & 255, (codes >> 8) & 255, codes & 255), axis=-1).astype(np.uint8).reshape(4096, 4096, 3)
    to_lab = cv2.cvtColor(every, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    to_rgb = cv2.cvtColor(every, cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return torch.from_numpy(to_lab).to(device), torch.from_numpy(to_rgb).to(device)


def _convert8(codes: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` 8-bit codes (floats 0..255) through a ``(2^24, 3)`` table -> the same shape, floats."""
    c = codes.long()
    index = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    return table[index].permute(0, 3, 1, 2).to(codes.dtype)


def _tables_torch(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel histograms ``(B, 3, 256)`` of 8-bit codes ``(B, 3, H, W)`` and their cumulative shares."""
    b = codes.shape[0]
    flat = codes.reshape(b, 3, -1).long()
    # scatter_add, not bincount: no host sync for the bin count on an accelerator
    counts = torch.zeros((b, 3, 256), dtype=torch.float64, device=codes.device).scatter_add_(
        2, flat, torch.ones(flat.shape, dtype=torch.float64, device=codes.device)
    )
    return counts, counts.cumsum(-1) / flat.shape[-1]


def _match_8bit_torch(image: torch.Tensor, reference: torch.Tensor, space: str) -> torch.Tensor:
    """:func:`match_histogram_u8`'s recipe in torch ops, for frames on an accelerator (no host sync): 8-bit RGB,
    OpenCV's own 8-bit Lab conversions as look-up tables (:func:`_lab8_tables`), skimage's uint8 matching with
    truncation (``np.interp`` over the reference's present values, re-derived with cumulative min/max and
    ``searchsorted``), back to 8-bit RGB. The same bytes as the CPU path (tested on the CPU)."""
    tables = _lab8_tables(str(image.device)) if space == "LAB" else None

    def codes(x: torch.Tensor) -> torch.Tensor:
        rgb8 = x.float().clamp(0, 1).mul(255).round()
        return _convert8(rgb8, tables[0]) if tables is not None else rgb8

    src, ref = codes(image), codes(reference.to(device=image.device, dtype=image.dtype))
    b = src.shape[0]
    src_counts, src_q = _tables_torch(src)
    ref_counts, ref_q = _tables_torch(ref)
    ref_q, ref_counts = ref_q.expand(b, -1, -1), ref_counts.expand(b, -1, -1)
    levels = torch.arange(256, dtype=torch.float64, device=image.device).expand(b, 3, -1)
    # np.interp(src_q, ref_q[present], values[present]): absent reference values get the quantile of the next one
    # present (+inf past the last), so searchsorted finds the interval between present values only.
    present = ref_counts > 0
    inf = torch.full((), float("inf"), dtype=torch.float64, device=image.device)
    q_present = torch.where(present, ref_q, inf)
    q_next = torch.flip(torch.cummin(torch.flip(q_present, [-1]), -1).values, [-1])
    last_value = torch.where(present, levels, torch.zeros_like(levels)).amax(-1, keepdim=True)
    first_value = torch.where(present, levels, torch.full_like(levels, 255.0)).amin(-1, keepdim=True)
    hi = torch.searchsorted(q_next.contiguous(), src_q.contiguous(), right=False).clamp(max=255)
    # The present value at or after index hi, and the present value before it.
    value_next = torch.where(present, levels, torch.full_like(levels, 256.0))
    value_next = torch.flip(torch.cummin(torch.flip(value_next, [-1]), -1).values, [-1])
    value_prev = torch.where(present, levels, torch.full_like(levels, -1.0)).cummax(-1).values
    v1 = value_next.gather(-1, hi)
    q1 = q_next.gather(-1, hi)
    lo_idx = (hi - 1).clamp(min=0)
    v0 = value_prev.gather(-1, lo_idx)
    q0 = torch.where(v0 >= 0, ref_q.gather(-1, v0.clamp(min=0).long()), torch.zeros_like(v0))
    t = torch.where(q1 > q0, (src_q - q0) / (q1 - q0), torch.ones_like(q0))
    mapped = torch.where(v0 >= 0, v0 + t * (v1 - v0), v1)
    mapped = torch.where(src_q <= ref_q.gather(-1, first_value.long()), first_value, mapped)
    mapped = torch.where(src_q >= 1.0, last_value, torch.minimum(mapped, last_value)).floor()  # uint8 truncation
    matched = mapped.to(src.dtype).gather(-1, src.reshape(b, 3, -1).long()).reshape(src.shape)
    if tables is not None:
        matched = _convert8(matched, tables[1])
    return matched / 255.0


def match_histogram_8bit(image: torch.Tensor, reference: torch.Tensor | HistogramReference, color_space: ColorSpace = "LAB") -> torch.Tensor:
    """Deforum's 8-bit colour match of a float frame: ``(B, 3, H, W)`` in [0, 1] -> the same, 8-bit values.

    The frame and the reference are rounded to 8 bits and matched as Deforum does (:func:`match_histogram_u8`): on
    the CPU exactly that (OpenCV, bit for bit Deforum's ``maintain_colors``); on an accelerator the same recipe in
    torch ops (:func:`_match_8bit_torch`, no host sync, the same bytes). HSV has no 8-bit path: it is matched
    by :func:`match_histogram` (float, with the circular hue cut).
    """
    _check_image(image)
    space = _space(color_space)
    if space not in SPACES_U8:
        return match_histogram(image, reference, color_space)
    ref_image = reference.image if isinstance(reference, HistogramReference) else reference
    _check_image(ref_image, "reference")
    if image.device.type == "cpu" and ref_image.shape[0] == 1:
        prepared = _prepared8(reference, ref_image, space)
        frames = [from_u8(match_histogram_u8(to_u8(image[k : k + 1]), prepared), dtype=image.dtype) for k in range(image.shape[0])]
        return torch.cat(frames)
    return _match_8bit_torch(image.detach(), ref_image.detach(), space).to(image.dtype)


def _prepared8(reference: torch.Tensor | HistogramReference, ref_image: torch.Tensor, space: str) -> HistogramReference8:
    """The 8-bit tables of a reference (kept on a prepared :class:`HistogramReference`: made once per run)."""
    if isinstance(reference, HistogramReference):
        key = f"u8-{space}"
        if key not in reference._fallback:
            reference._fallback[key] = HistogramReference8.prepare(to_u8(ref_image), space)  # type: ignore[assignment]
        return reference._fallback[key]  # type: ignore[return-value]
    return HistogramReference8.prepare(to_u8(ref_image), space)


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
        center = torch.full((), float(pivot), device=image.device, dtype=image.dtype)  # (no blocking copy)
    return ((image - center) * f + center).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------- noise


# --------------------------------------------------------------------------------------------------- anti-blur


#: OpenCV's fixed Gaussian kernels for sizes 1-9 when sigma <= 0 (``getGaussianKernel``'s table; OpenCV 4.x).
_CV_SMALL_GAUSSIANS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
    9: tuple(v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)),
}


def gaussian_kernel_1d(kernel_size: int, sigma: float) -> tuple[int, list[float]]:
    """OpenCV's ``GaussianBlur`` kernel on a float image: ``(size, weights)`` for a (size, sigma) pair.

    ``kernel_size`` 0 derives the size from sigma (``round(8 * sigma + 1)``, made odd: OpenCV's rule for float
    images, which Deforum's are at that point); ``sigma <= 0`` derives sigma from the size
    (``0.3 * ((k - 1) / 2 - 1) + 0.8``) except for sizes 1-9, where OpenCV uses fixed binomial-like kernels.
    """
    if kernel_size < 0 or (kernel_size > 0 and kernel_size % 2 == 0):
        raise CoherenceError(f"kernel_size must be a positive odd number of pixels or 0, got {kernel_size}")
    if kernel_size == 0:
        if not sigma > 0:
            raise CoherenceError("kernel_size 0 derives the kernel from sigma, which must then be > 0")
        kernel_size = int(math.floor(sigma * 8 + 1 + 0.5)) | 1
    if sigma <= 0 and kernel_size in _CV_SMALL_GAUSSIANS:
        return kernel_size, list(_CV_SMALL_GAUSSIANS[kernel_size])
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    c = (kernel_size - 1) / 2
    weights = [math.exp(-((i - c) ** 2) / (2.0 * sigma * sigma)) for i in range(kernel_size)]
    total = sum(weights)
    return kernel_size, [w / total for w in weights]


def antiblur_kernel_size(value: float) -> int:
    """Deforum's ``int(kernel_schedule)`` as an OpenCV kernel size: truncated; an even size (on which both
    originals' ``cv2.GaussianBlur`` fails, so no working settings file has one) becomes the next odd size."""
    k = int(value)
    if k < 0:
        raise CoherenceError(f"the anti-blur kernel size must be >= 0, got {value}")
    return k + 1 if k > 0 and k % 2 == 0 else k


def _blur_opencv(image: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """The separable blur of :func:`unsharp_mask` on OpenCV (``cv2.sepFilter2D``, reflect-101 borders as torch's
    ``"reflect"``), plane by plane on zero-copy views: a CPU float32 ``(B, C, H, W)`` in, a new tensor out. The
    same kernel as the torch path, summed in another order (float32 rounding apart, tested); ~20x faster at 512^2
    on one thread than the depthwise ``conv2d`` (17 ms per pass there)."""
    src = image.detach().contiguous()
    out = torch.empty_like(src)
    kernel = np.asarray(weights, dtype=np.float32)
    x, y = src.numpy(), out.numpy()
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            cv2.sepFilter2D(x[b, c], cv2.CV_32F, kernel, kernel, dst=y[b, c], borderType=cv2.BORDER_REFLECT_101)
    return out


def unsharp_mask(
    image: torch.Tensor,
    amount: Amount,
    kernel_size: int = 5,
    sigma: float = 1.0,
    threshold: float = 0.0,
    *,
    quantize: bool = False,
) -> torch.Tensor:
    """Deforum's anti-blur: ``(1 + amount) * image - amount * blur(image)``, clamped to ``[0, 1]``.

    The blur is OpenCV's ``GaussianBlur`` on a float image (what deforum-stable-diffusion's ``unsharp_mask``
    gets: the contrast-scaled frame): the kernel of :func:`gaussian_kernel_1d`, separable, with reflect-101
    borders; on OpenCV itself for a CPU float32 frame outside autograd (:func:`_blur_opencv`), else torch. kornia's own ``unsharp_mask`` has no amount or threshold, so it is not used here.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        amount: sharpening strength, number or ``(B,)`` (Deforum ``amount_schedule``); 0 is the identity.
        kernel_size: odd Gaussian kernel size in pixels, or 0 to derive it from sigma (Deforum ``kernel_schedule``).
        sigma: Gaussian standard deviation in pixels (Deforum ``sigma_schedule``); ``<= 0`` derives it from the
            kernel size as OpenCV does.
        threshold: pixels whose difference to the blur is below it stay unchanged (Deforum
            ``threshold_schedule`` / 255: here in ``[0, 1]`` intensity units). Both originals crash on a
            threshold > 0 (they copy a float frame into an 8-bit one); this is what their code intends.
        quantize: round the result to 8-bit levels (``round(x * 255) / 255``, half to even) as Deforum's uint8
            result is; off keeps the float frame (a difference of at most half a level).
    """
    _check_image(image)
    if threshold < 0:
        raise CoherenceError(f"threshold must be >= 0, got {threshold}")
    a = _per_image(amount, image, "amount")
    size, weights = gaussian_kernel_1d(int(kernel_size), float(sigma))
    if size == 1:
        blurred = image
    elif _opencv_backend(image):
        blurred = _blur_opencv(image, weights)
    else:
        kernel = upload(torch.tensor([weights], dtype=image.dtype), image.device)  # (1, k); pinned: no host sync
        blurred = filter2d_separable(image, kernel, kernel, border_type="reflect")
    sharpened = ((1.0 + a) * image - a * blurred).clamp(0.0, 1.0)
    if quantize:
        sharpened = torch.round(sharpened * 255.0) / 255.0
    if threshold > 0:
        sharpened = torch.where((image - blurred).abs() < threshold, image, sharpened)
    return sharpened


#: 8-bit pixel grid of sd-webui-deforum's Perlin noise: it draws the noise at the size rounded down to it.
_WEBUI_PERLIN_GRID = 64


def _frame_noise(
    image: torch.Tensor,
    kind: str,
    generator: torch.Generator | None,
    perlin_cells: tuple[float, float],
    perlin_octaves: int,
    perlin_persistence: float,
) -> torch.Tensor:
    """The white (or Perlin-modulated white) noise ``(B, 3, H, W)`` of :func:`add_noise`, on the image's device.

    Perlin kinds follow sd-webui-deforum: white noise drawn at the size rounded down to a multiple of 64 (the
    full size where a side is under 64), times ``(perlin + 1) / 2`` (one pattern for the three channels, drawn
    after the white noise), resized back to the frame with nearest-neighbour sampling.
    """
    b, c, h, w = image.shape
    gen_device = generator.device if generator is not None else image.device
    # Drawn in float32 whatever the image's dtype: the same generator state gives the same noise in float16,
    # bfloat16, float32 and float64 runs (and the originals' float32 values).
    f32 = torch.float32
    if kind in ("gaussian", "webui-uniform"):
        noise = torch.randn(image.shape, generator=generator, device=gen_device, dtype=f32)
        return upload(noise, image.device).to(image.dtype)  # (a CPU generator's noise: pinned, no host sync)
    nh = h - h % _WEBUI_PERLIN_GRID if h >= _WEBUI_PERLIN_GRID else h
    nw = w - w % _WEBUI_PERLIN_GRID if w >= _WEBUI_PERLIN_GRID else w
    noise = torch.randn((b, c, nh, nw), generator=generator, device=gen_device, dtype=f32)
    cells = (max(1, int(perlin_cells[0])), max(1, int(perlin_cells[1])))  # webui truncates its sliders' values
    pattern = lattice_perlin(
        (b, 1, nh, nw), cells, int(perlin_octaves), float(perlin_persistence),
        generator=generator, device=gen_device, dtype=f32,
    )
    noise = noise * ((pattern + 1.0) * 0.5)
    if (nh, nw) != (h, w):
        noise = F.interpolate(noise, size=(h, w), mode="nearest")
    return upload(noise, image.device).to(image.dtype)


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

    * ``"gaussian"`` (deforum-stable-diffusion's ``add_noise``; alias ``"uniform"``): ``amount`` is the
      standard deviation of white noise added in the model's ``[-1, 1]`` range (``sample + randn * amount``),
      i.e. ``image + N(0, 1) * amount / 2`` on our ``[0, 1]`` images.
    * ``"perlin"``: the same, with the white noise modulated by sd-webui-deforum's Perlin pattern
      (:func:`~discolib.animation.noise.lattice_perlin`, ``(perlin + 1) / 2`` shared by the channels): grainy in
      some regions, clean in others.
    * ``"webui-uniform"`` / ``"webui-perlin"``: sd-webui-deforum's ``add_noise``, which blends the frame with an
      8-bit noise image: ``(1 - amount) * image + amount * floor(255 * clip(noise / 2 + 1/2, 0, 1)) / 255``.
      Unlike the additive kinds this also fades the frame towards grey by ``1 - amount`` each frame.

    Args:
        image: ``(B, 3, H, W)`` in ``[0, 1]``.
        amount: number or ``(B,)``; 0 returns the image unchanged.
        kind: one of the above.
        generator: for reproducible noise. Noise is drawn on the generator's device and moved to the image's,
            so a CPU generator gives the same noise on every device.
        perlin_cells, perlin_octaves, perlin_persistence: the Perlin lattice cells across ``(H, W)`` (truncated
            to integers, as sd-webui-deforum's ``perlin_w``/``perlin_h``: its ``perlin_w`` is the rows' count),
            octaves and persistence.
        clamp: clamp the result to ``[0, 1]`` (Deforum does not: the init image may leave the range slightly).
    """
    _check_image(image)
    if kind == "uniform":  # the name of deforum's plain white noise in its settings files
        kind = "gaussian"
    if kind not in ("gaussian", "perlin", "webui-uniform", "webui-perlin"):
        raise CoherenceError(
            f"noise kind must be 'gaussian' (alias 'uniform'), 'perlin', 'webui-uniform' or 'webui-perlin', got {kind!r}"
        )
    a = _per_image(amount, image, "amount")
    noise = _frame_noise(image, kind, generator, perlin_cells, perlin_octaves, perlin_persistence)
    if kind.startswith("webui-"):
        levels = torch.floor((noise * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0) / 255.0
        out = (1.0 - a) * image + a * levels
    else:
        out = image + noise * (a * 0.5)
    return out.clamp(0.0, 1.0) if clamp else out
