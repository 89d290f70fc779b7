"""match_histogram's OpenCV backend (CPU float32 frames) against the torch path it stands in for.

The bound pinned here (see the comment above ``_SRGB_LEVELS`` in discolib/animation/coherence.py): on realistic
frames the two backends agree to a small fraction of an 8-bit level on average, and all but a few pixels per
thousand to within 2/255. Single pixels may differ by more: a pixel within the conversion error of a bin edge can
change bins, and inside a large run of near-equal pixels that moves its rank far (the torch path in float32 and
float64 differ the same way).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from kornia.color import hsv_to_rgb, rgb_to_hsv, rgb_to_lab

from discolib.animation import coherence
from discolib.animation.coherence import HistogramReference, match_histogram

Match = Callable[..., torch.Tensor]

# Per space: (mean |difference|, share of pixels > 1/255, share > 2/255), differences in 8-bit levels, on the
# photo-like frames below. Measured at 256^2: LAB <= 0.0063 / 0.036% / 0.022%, RGB <= 0.0005 / 0.001% / 0.0005%,
# HSV (with the same hue cut, see test_hsv_...) <= 0.06 / 1.1% / 0.55%.
BOUNDS = {"LAB": (0.03, 0.003, 0.001), "RGB": (0.005, 0.001, 0.0005), "HSV": (0.15, 0.03, 0.015)}


def photo(size: int, seed: int, quantise: bool = False) -> torch.Tensor:
    """A photo-like ``(1, 3, size, size)`` float32 frame: sky gradient, smooth blobs, saturated and clipped patches
    (primaries, black, white), texture and noise; ``quantise`` rounds it to 8 bits as a written frame is."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, size).view(size, 1).expand(size, size)
    x = torch.linspace(0, 1, size).view(1, size).expand(size, size)
    sky = torch.stack((0.3 + 0.4 * y, 0.5 + 0.3 * y, 0.9 - 0.2 * y))
    coarse = torch.rand(1, 3, size // 32, size // 32, generator=gen)
    blobs = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    ground = (y > 0.45).float()
    image = sky * (1 - ground) + blobs * ground
    colours = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [0, 0, 0], [1, 1, 1]])
    for colour in colours.float():
        cy, cx = torch.rand(2, generator=gen)
        radius = 0.04 + 0.06 * torch.rand(1, generator=gen)
        patch = (((y - cy) ** 2 + (x - cx) ** 2) < radius**2).float()
        image = image * (1 - patch) + colour.view(3, 1, 1) * patch
    texture = torch.randn(1, 1, size // 2, size // 2, generator=gen)
    texture = torch.nn.functional.interpolate(texture, size=(size, size), mode="bilinear", align_corners=False)[0]
    image = (image + 0.06 * texture + 0.015 * torch.randn(3, size, size, generator=gen)).clamp(0, 1)[None]
    return image.mul(255).round().div(255) if quantise else image.contiguous()


@pytest.fixture
def torch_path(monkeypatch: pytest.MonkeyPatch) -> Match:
    """match_histogram forced onto the torch (kornia) path, as on a GPU."""

    def match(*args: object) -> torch.Tensor:
        with monkeypatch.context() as patch:
            patch.setattr(coherence, "_opencv_backend", lambda image: False)
            return match_histogram(*args)  # type: ignore[arg-type]

    return match


def assert_within_bound(new: torch.Tensor, old: torch.Tensor, space: str) -> None:
    mean, over_one, over_two = BOUNDS[space]
    levels = (new - old).abs() * 255
    assert levels.mean() < mean, levels.mean()
    assert (levels > 1).float().mean() < over_one
    assert (levels > 2).float().mean() < over_two


@pytest.mark.parametrize("quantise", [False, True], ids=["warped", "written"])
@pytest.mark.parametrize("space", ["LAB", "RGB"])
def test_opencv_backend_within_bound_of_torch_path(space: str, quantise: bool, torch_path: Match) -> None:
    for seed in range(3):
        image, reference = photo(256, seed, quantise), photo(224, 30 + seed, quantise=True)
        new = match_histogram(image, HistogramReference.prepare(reference, space), space)  # type: ignore[arg-type]
        assert new.dtype == torch.float32 and new.is_contiguous() and 0 <= new.min() and new.max() <= 1
        assert_within_bound(new, torch_path(image, reference, space), space)


@pytest.mark.parametrize("saturation", [0.06, 0.1])
def test_muted_frames_within_bound_of_torch_path(saturation: float, torch_path: Match) -> None:
    # a* and b* spanning ~17 and ~29 units (the backend's floor is 16): bins are narrower, the bound looser.
    reference = photo(192, 40, quantise=True)
    for seed in range(2):
        colour = photo(256, seed)
        grey = colour.mean(dim=1, keepdim=True)
        image = grey + saturation * (colour - grey)
        assert coherence._match_opencv(image, HistogramReference.prepare(reference).sorted_channels, "LAB") is not None
        levels = (match_histogram(image, reference, "LAB") - torch_path(image, reference, "LAB")).abs() * 255
        assert levels.mean() < 0.1 and (levels > 1).float().mean() < 0.01 and (levels > 2).float().mean() < 0.001


def test_nearly_grey_frames_take_the_torch_path(torch_path: Match) -> None:
    # a* and b* of a greyscale frame span float noise (< 0.01): binned 4096 ways they sort that noise, and the
    # torch path's noise is not OpenCV's. The backend hands such frames back: the result is the torch path's.
    image = photo(64, 10).mean(dim=1, keepdim=True).expand(1, 3, 64, 64).contiguous()
    reference = photo(48, 11)
    prepared = HistogramReference.prepare(reference, "LAB")
    expected = torch_path(image, reference, "LAB")
    assert torch.equal(match_histogram(image, prepared, "LAB"), expected)
    assert torch.equal(match_histogram(image, prepared, "LAB"), expected)  # the torch-prepared copy, made once
    assert torch.equal(match_histogram(image, reference, "LAB"), expected)


def banded(image: torch.Tensor) -> torch.Tensor:
    """``image`` with its hues squeezed out of [90, 110) degrees: an unambiguous hue cut for both backends."""
    hsv = rgb_to_hsv(image.double())
    hue = hsv[:, :1] * (340 / 360)
    hue = torch.where(hue >= math.radians(90), hue + math.radians(20), hue)
    return hsv_to_rgb(torch.cat((hue, hsv[:, 1:]), dim=1)).float().clamp(0, 1)


@pytest.mark.parametrize("quantise", [False, True], ids=["warped", "written"])
def test_hsv_opencv_backend_within_bound_of_torch_path(quantise: bool, torch_path: Match) -> None:
    # The bound holds where both backends cut the hue circle at the same bin. The cut is the least-populated of
    # 36 bins, decided by hues exactly on a 10-degree edge when bins are close (8-bit colours with two equal
    # channels sit on them); OpenCV's hue lands just below such edges, kornia's on either side: there the cut can
    # differ, as it does between the torch path in float32 and float64.
    for seed in range(3):
        image = banded(photo(256, seed))
        image = image.mul(255).round().div(255) if quantise else image
        reference = banded(photo(224, 30 + seed)).mul(255).round().div(255)
        new = match_histogram(image, HistogramReference.prepare(reference, "HSV"), "HSV")
        assert_within_bound(new, torch_path(image, reference, "HSV"), "HSV")


def test_lab_conversion_matches_kornia() -> None:
    # 8-bit colours (exact on the 16-bit gamma table), dark ones (the steep end of the cube root) and random ones.
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, 64, 96, generator=gen)
    rgb[..., :16, :] = torch.randint(0, 256, (1, 3, 16, 96), generator=gen) / 255
    rgb[..., 16:32, :] *= 0.03
    ws = coherence._Workspace(64, 96)
    lab = torch.from_numpy(coherence._lab_opencv(rgb[0].numpy(), ws)).permute(2, 0, 1)
    error = (lab - rgb_to_lab(rgb.double())[0]).abs().flatten(1).amax(dim=1)
    # OpenCV's cube root is a spline (a* within 0.03); a bin is ~0.025 in L* and ~0.05 in a*, b*.
    assert error[0] < 0.01 and error[1] < 0.05 and error[2] < 0.05, error


@pytest.mark.parametrize("space", ["LAB", "RGB", "HSV"])
def test_opencv_backend_is_deterministic_across_sizes_and_modes(space: str) -> None:
    small, large = photo(64, 1), photo(96, 2, quantise=True)
    prepared = HistogramReference.prepare(photo(80, 3), space)  # type: ignore[arg-type]
    assert prepared.backend == "opencv"
    first = match_histogram(small, prepared, space)  # type: ignore[arg-type]
    match_histogram(large, prepared, space)  # type: ignore[arg-type]  # another frame size: a new workspace
    with torch.inference_mode():
        again = match_histogram(small, prepared, space)  # type: ignore[arg-type]
    assert torch.equal(first, again)
    assert torch.equal(first, match_histogram(small, prepared, space))  # type: ignore[arg-type]  # after inference


@pytest.mark.parametrize("space", ["LAB", "RGB", "HSV"])
def test_prepared_on_the_other_backend_matches_as_unprepared(space: str) -> None:
    image, reference = photo(64, 4), photo(48, 5)
    from_float64 = HistogramReference.prepare(reference.double(), space)  # type: ignore[arg-type]
    assert from_float64.backend == "torch"
    assert torch.equal(match_histogram(image, from_float64, space), match_histogram(image, reference.double(), space))  # type: ignore[arg-type]
    from_float32 = HistogramReference.prepare(reference, space)  # type: ignore[arg-type]
    image64 = image.double()
    assert torch.equal(match_histogram(image64, from_float32, space), match_histogram(image64, reference, space))  # type: ignore[arg-type]


def test_autograd_inputs_take_the_torch_path(torch_path: Match) -> None:
    image, reference = photo(32, 6).requires_grad_(), photo(32, 7)
    assert torch.equal(match_histogram(image, reference, "LAB"), torch_path(image, reference, "LAB"))


def test_out_of_range_and_non_finite_inputs() -> None:
    image, reference = photo(32, 8), photo(32, 9)
    # L*a*b*: the sRGB gamma table saturates, i.e. the input is read clamped to [0, 1].
    stretched = (image - 0.5) * 1.6 + 0.5
    torch.testing.assert_close(
        match_histogram(stretched, reference, "LAB"), match_histogram(stretched.clamp(0, 1), reference, "LAB")
    )
    nan = image.clone()
    nan[0, 1, 3, 4] = math.nan
    for space in ("LAB", "RGB", "HSV"):  # no error (RGB and HSV fall back to the torch path)
        out = match_histogram(nan, reference, space)  # type: ignore[arg-type]
        assert out.shape == image.shape and out[..., 10:, 10:].isfinite().all()


@pytest.mark.parametrize(("kernel", "sigma"), [(5, 1.0), (0, 2.0), (7, 0.0), (3, 0.5), (11, 1.5)])
def test_unsharp_mask_opencv_blur_within_float_rounding_of_torch(kernel: int, sigma: float) -> None:
    """A CPU float32 frame is blurred by cv2.sepFilter2D: the torch path's kernel and borders, summed in another
    order (float32 rounding apart); the torch path is what a frame in autograd takes."""
    gen = torch.Generator().manual_seed(kernel)
    image = torch.rand(2, 3, 40, 52, generator=gen)
    fast = coherence.unsharp_mask(image, 0.5, kernel, sigma, 0.02)
    with torch.enable_grad():
        slow = coherence.unsharp_mask(image.clone().requires_grad_(True), 0.5, kernel, sigma, 0.02).detach()
    assert (fast - slow).abs().max().item() <= 1e-6
    assert torch.equal(fast, coherence.unsharp_mask(image, 0.5, kernel, sigma, 0.02))  # deterministic
