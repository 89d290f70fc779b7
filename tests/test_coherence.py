"""Colour matching, contrast, noise and anti-blur (discolib.animation.coherence)."""

from __future__ import annotations

import math

import pytest
import torch
from kornia.color import hsv_to_rgb, rgb_to_hsv, rgb_to_lab
from kornia.filters import gaussian_blur2d

from discolib.animation.coherence import (
    HISTOGRAM_BINS,
    CoherenceError,
    add_noise,
    adjust_contrast,
    match_histogram,
    unsharp_mask,
)
from discolib.animation.noise import NoiseError, perlin_noise
from discolib.ops import mid_ranks

SPACES = ["LAB", "HSV", "RGB"]


def picture(b: int, h: int, w: int, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A colourful image in [0, 1]: smooth blobs, noise, and some clipped (tied) pixels."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, h // 4, w // 4, generator=gen, dtype=torch.float64)
    image = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    image = (image * 1.4 - 0.2 + 0.05 * torch.randn(b, 3, h, w, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return image.to(device=device, dtype=dtype)


def channel_stats(image: torch.Tensor, space: str) -> torch.Tensor:
    """Per-channel sorted values (B, 3, N) in ``space``."""
    if space == "LAB":
        image = rgb_to_lab(image)
    elif space == "HSV":
        image = rgb_to_hsv(image)
    return image.flatten(2).sort(dim=-1).values


# --------------------------------------------------------------------------------------------------- colour


def test_mid_ranks_share_ties() -> None:
    values = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0]])
    order, twice = mid_ranks(values)
    ranks = torch.empty_like(twice).scatter_(-1, order, twice) / 2
    torch.testing.assert_close(ranks, torch.tensor([[3.0, 0.0, 3.0, 1.0, 3.0]]))


@pytest.mark.parametrize("space", SPACES)
def test_match_histogram_to_itself_is_identity(space: str, device: torch.device, dtype: torch.dtype) -> None:
    image = picture(2, 32, 48, 0, device, dtype)
    assert (image == 0).any() and (image == 1).any()  # clipped pixels: ties must map to themselves
    out = match_histogram(image, image, space)
    assert out.shape == image.shape and out.dtype == dtype and out.device.type == device.type
    # Exact up to the 4096-level binning of the source (within one 8-bit level after the LAB round trip).
    atol = {"LAB": 1 / 255, "HSV": 2 * (2 * math.pi) / HISTOGRAM_BINS, "RGB": 2 / HISTOGRAM_BINS}[space]
    torch.testing.assert_close(out, image, atol=atol, rtol=0)
    torch.testing.assert_close(out.mean(), image.mean(), atol=1e-4, rtol=0)  # and no drift on average


def test_match_histogram_rgb_takes_the_reference_distribution(device: torch.device, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(1)
    distinct = torch.stack([torch.randperm(32 * 32, generator=gen) for _ in range(6)]) / (32 * 32)  # no ties
    image = distinct.view(2, 3, 32, 32).to(device, dtype)
    reference = picture(1, 32, 32, 2, device, dtype) ** 2  # darker, different shape
    out = match_histogram(image, reference, "RGB")
    # Same pixel count and no ties: each channel's output values are exactly the reference's values.
    torch.testing.assert_close(channel_stats(out, "RGB"), channel_stats(reference, "RGB").expand(2, -1, -1))
    # And the mapping is monotone: the order of pixels within each channel is kept.
    flat_in, flat_out = image.flatten(2), out.flatten(2)
    pairs = torch.randint(0, flat_in.shape[-1], (2, 500), generator=torch.Generator().manual_seed(0))
    a, b = pairs.to(device)
    assert torch.all((flat_in[..., a] - flat_in[..., b]) * (flat_out[..., a] - flat_out[..., b]) >= 0)


@pytest.mark.parametrize("space", ["LAB", "HSV"])
def test_match_histogram_matches_channel_distributions(space: str) -> None:
    image = picture(1, 48, 64, 3, torch.device("cpu"), torch.float64)
    # A reference with other colours but in gamut: a tinted, lower-contrast version of another picture.
    other = picture(1, 40, 40, 4, torch.device("cpu"), torch.float64)
    reference = (0.6 * other + torch.tensor([0.3, 0.15, 0.05], dtype=torch.float64).view(1, 3, 1, 1)).clamp(0, 1)
    out = match_histogram(image, reference, space)
    quantiles = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    got = torch.quantile(channel_stats(out, space)[0], quantiles, dim=-1)
    want = torch.quantile(channel_stats(reference, space)[0], quantiles, dim=-1)
    before = torch.quantile(channel_stats(image, space)[0], quantiles, dim=-1)
    scale = torch.tensor([100.0, 255.0, 255.0] if space == "LAB" else [2 * math.pi, 1.0, 1.0], dtype=torch.float64)
    error = ((got - want).abs() / scale).max()
    assert error < 0.02 < ((before - want).abs() / scale).max()


def test_hsv_matching_keeps_reds_red() -> None:
    """Hues just below and above 0 degrees must not be torn apart by the hue cut."""
    gen = torch.Generator().manual_seed(5)
    hue_deg = torch.cat((torch.rand(400, generator=gen) * 20 - 10, torch.rand(200, generator=gen) * 40 + 100))
    hue = torch.remainder(torch.deg2rad(hue_deg), 2 * math.pi)
    hsv = torch.stack((hue, torch.full((600,), 0.8), torch.full((600,), 0.9)))
    image = hsv_to_rgb(hsv.view(1, 3, 20, 30))
    shifted = torch.remainder(hsv[0] + math.radians(4.0), 2 * math.pi)
    reference = hsv_to_rgb(torch.stack((shifted, hsv[1], hsv[2])).view(1, 3, 20, 30))
    out_hue = rgb_to_hsv(match_histogram(image, reference, "HSV"))[0, 0].flatten()
    delta = torch.remainder(out_hue - hsv[0] + math.pi, 2 * math.pi) - math.pi  # circular difference
    assert torch.rad2deg(delta).abs().max() < 6.0  # every pixel moved by ~4 degrees, none flipped across red


def test_match_histogram_broadcasts_a_single_reference() -> None:
    images = picture(3, 16, 16, 6, torch.device("cpu"), torch.float32)
    reference = picture(1, 20, 24, 7, torch.device("cpu"), torch.float32)
    batched = match_histogram(images, reference, "LAB")
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], match_histogram(images[i : i + 1], reference, "LAB"))
    torch.testing.assert_close(match_histogram(images, reference, "Match Frame 0 LAB"), batched)  # type: ignore[arg-type]
    with pytest.raises(CoherenceError, match="color_space"):
        match_histogram(images, reference, "XYZ")  # type: ignore[arg-type]
    with pytest.raises(CoherenceError, match="reference batch"):
        match_histogram(images, picture(2, 8, 8, 0, torch.device("cpu"), torch.float32))


# --------------------------------------------------------------------------------------------------- contrast


def test_adjust_contrast(device: torch.device, dtype: torch.dtype) -> None:
    image = picture(2, 16, 16, 8, device, dtype)
    assert torch.equal(adjust_contrast(image, 1.0), image)
    torch.testing.assert_close(adjust_contrast(image, 0.5), image * 0.5)  # Deforum: prev_img * contrast
    per_image = adjust_contrast(image, torch.tensor([1.0, 2.0]), pivot=0.5)
    torch.testing.assert_close(per_image[0], image[0])
    torch.testing.assert_close(per_image[1], ((image[1] - 0.5) * 2 + 0.5).clamp(0, 1))
    soft = image * 0.5 + 0.25
    torch.testing.assert_close(adjust_contrast(soft, 0.8, "mean").mean(), soft.mean())
    with pytest.raises(CoherenceError):
        adjust_contrast(image, 1.0, pivot="median")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------- noise


def test_noise_zero_amount_is_identity(device: torch.device, dtype: torch.dtype) -> None:
    image = picture(2, 16, 16, 9, device, dtype)
    for kind in ("gaussian", "perlin", "webui-uniform", "webui-perlin"):
        assert torch.equal(add_noise(image, 0.0, kind, torch.Generator().manual_seed(0)), image)


def test_gaussian_noise_statistics_follow_deforum_units(device: torch.device, dtype: torch.dtype) -> None:
    image = torch.full((2, 3, 128, 128), 0.5, device=device, dtype=dtype)
    amount = torch.tensor([0.1, 0.4])
    out = add_noise(image, amount, "gaussian", torch.Generator().manual_seed(1))
    noise = (out - image).flatten(1)
    # Deforum adds N(0, amount) in the [-1, 1] range, which is amount / 2 on [0, 1] images.
    torch.testing.assert_close(noise.std(dim=1).cpu(), (amount / 2).to(torch.float64).to(dtype), rtol=0.03, atol=0)
    assert noise.mean(dim=1).abs().max() < 0.01
    clamped = add_noise(image, 3.0, "gaussian", torch.Generator().manual_seed(1), clamp=True)
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_noise_is_reproducible_per_seed() -> None:
    image = torch.rand(1, 3, 32, 32)
    uniform = add_noise(image, 0.2, "uniform", torch.Generator().manual_seed(3))  # Deforum's name for it
    assert torch.equal(uniform, add_noise(image, 0.2, "gaussian", torch.Generator().manual_seed(3)))
    with pytest.raises(CoherenceError, match="noise kind"):
        add_noise(image, 0.2, "pink")  # type: ignore[arg-type]
    for kind in ("gaussian", "perlin", "webui-uniform", "webui-perlin"):
        a = add_noise(image, 0.2, kind, torch.Generator().manual_seed(3))
        b = add_noise(image, 0.2, kind, torch.Generator().manual_seed(3))
        c = add_noise(image, 0.2, kind, torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_perlin_noise_kind_modulates_the_gaussian_noise() -> None:
    image = torch.zeros(1, 3, 128, 128)  # (unclamped) so the difference is the noise, without rounding
    gaussian = add_noise(image, 0.2, "gaussian", torch.Generator().manual_seed(2)) - image
    perlin = add_noise(image, 0.2, "perlin", torch.Generator().manual_seed(2)) - image
    # Same white noise (128 is a multiple of webui's 64-pixel grid, so drawn at the same size) times a mask
    # (perlin + 1) / 2 shared by the channels; webui's octave sum is not normalised, so the mask may leave [0, 1]
    # a little (4 octaves of persistence 0.5 reach at most 1.875 * sqrt(1/2) * sqrt(2)).
    ratio = perlin / gaussian
    assert ratio.min() >= (1 - 1.875) / 2 - 1e-6 and ratio.max() <= (1 + 1.875) / 2 + 1e-6
    assert ((ratio >= 0) & (ratio <= 1)).float().mean() > 0.95
    torch.testing.assert_close(ratio[:, 0], ratio[:, 1], atol=1e-5, rtol=1e-4)
    assert 0.02 < perlin.std() < gaussian.std()


def test_perlin_noise_range_determinism_and_smoothness() -> None:
    a = perlin_noise((2, 1, 96, 128), cells=(4, 6), octaves=3, generator=torch.Generator().manual_seed(7))
    b = perlin_noise((2, 1, 96, 128), cells=(4, 6), octaves=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (2, 1, 96, 128)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    assert not torch.allclose(a[0], a[1])  # independent per leading index
    # Gradient noise is smooth: neighbouring pixels are strongly correlated, unlike white noise.
    corr = torch.corrcoef(torch.stack((a[..., :, 1:].flatten(), a[..., :, :-1].flatten())))[0, 1]
    assert corr > 0.9 and a.abs().max() > 0.3
    f64 = perlin_noise((1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert f64.dtype == torch.float64
    with pytest.raises(NoiseError, match="octaves >= 1"):
        perlin_noise((8, 8), octaves=0)


# --------------------------------------------------------------------------------------------------- anti-blur


def test_unsharp_mask(device: torch.device, dtype: torch.dtype) -> None:
    image = picture(2, 24, 24, 10, device, dtype)
    assert torch.equal(unsharp_mask(image, 0.0), image)
    flat = torch.full_like(image, 0.3)
    torch.testing.assert_close(unsharp_mask(flat, 2.0), flat)
    edge = torch.zeros(1, 3, 16, 16, device=device, dtype=dtype)
    edge[..., 8:] = 0.6
    sharp = unsharp_mask(edge, 1.0, kernel_size=5, sigma=1.0)
    # Overshoot on both sides of the edge: darker before it (clamped at 0), brighter after it.
    assert sharp[0, 0, 8, 8] > 0.6 and sharp[0, 0, 8, 7] == 0.0
    blurred = gaussian_blur2d(edge, (5, 5), (1.0, 1.0), border_type="reflect")
    torch.testing.assert_close(sharp, (2 * edge - blurred).clamp(0, 1))
    # Everything below the threshold is left alone.
    assert torch.equal(unsharp_mask(image, 1.0, threshold=1.0), image)


def test_unsharp_mask_opencv_sigma_and_validation() -> None:
    image = picture(1, 16, 16, 11, torch.device("cpu"), torch.float64)
    # Sizes above OpenCV's fixed table (1-9) derive sigma from the size when sigma <= 0.
    auto = unsharp_mask(image, 0.5, kernel_size=11, sigma=0.0)
    explicit = unsharp_mask(image, 0.5, kernel_size=11, sigma=0.3 * ((11 - 1) * 0.5 - 1) + 0.8)
    torch.testing.assert_close(auto, explicit)
    with pytest.raises(CoherenceError, match="kernel_size"):
        unsharp_mask(image, 0.5, kernel_size=4)
    with pytest.raises(CoherenceError, match="sigma"):
        unsharp_mask(image, 0.5, kernel_size=0, sigma=0.0)
    with pytest.raises(CoherenceError, match="amount"):
        unsharp_mask(image, torch.ones(3))


@pytest.mark.parametrize("space", ["LAB", "RGB", "HSV"])
def test_prepared_reference_gives_identical_results(space: str) -> None:
    from discolib.animation.coherence import HistogramReference

    g = torch.Generator().manual_seed(3)
    image, ref = torch.rand(2, 3, 24, 20, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    prepared = HistogramReference.prepare(ref, space)
    assert torch.equal(match_histogram(image, prepared, space), match_histogram(image, ref, space))
    with pytest.raises(ValueError, match="prepared reference is for"):
        match_histogram(image, prepared, "RGB" if space != "RGB" else "LAB")


def test_binned_matching_agrees_with_exact_sort_based_matching() -> None:
    # The exact matcher (skimage's, on continuous values): every value takes the reference quantile at its
    # mid-rank. The binned one may differ by a bin's rank span only: well under one 8-bit level here.
    image = picture(1, 256, 256, 8, torch.device("cpu"), torch.float64)
    reference = picture(1, 192, 160, 9, torch.device("cpu"), torch.float64) ** 1.5
    src, ref = image.reshape(3, -1), reference.reshape(3, -1).sort(dim=-1).values
    order, twice_rank = mid_ranks(src)
    position = twice_rank.to(src.dtype) * ((ref.shape[-1] - 1) / (2.0 * (src.shape[-1] - 1)))
    lower = position.floor().long()
    upper = (lower + 1).clamp(max=ref.shape[-1] - 1)
    exact_sorted = torch.lerp(ref.gather(-1, lower), ref.gather(-1, upper), position - lower)
    exact = torch.empty_like(exact_sorted).scatter_(-1, order, exact_sorted).view_as(image)
    out = match_histogram(image, reference, "RGB")
    assert (out - exact).abs().max() < 1 / 255 and (out - exact).abs().mean() < 1e-4
    # Ties (the clipped pixels) share one output value, as with the exact matcher.
    for c in range(3):
        zeros = image[0, c] == 0
        assert zeros.sum() > 10 and out[0, c][zeros].unique().numel() == 1
