"""The OpenCV backend of the 2D warp (CPU float32 frames) against the torch ``grid_sample`` path it replaces there.

Both compute the same interpolation with float32 coordinates; they differ by float rounding of the source positions,
which grows with the image size. Bounds pinned here (at 256^2, [0, 1] images) and measured on this machine:

* bilinear / bicubic, every padding, a photo-like image and uniform noise, Deforum's default motion and a large one:
  max abs difference <= 2e-4 (measured <= 1e-4; <= 1.9e-4 at 512^2 and <= 3.8e-4 = 0.096 / 255 at 1024^2 on
  noise), mean <= 1e-5; and OpenCV is no farther from the float64 warp than torch's float32 path (within 2x);
* nearest: identical except at < 1e-3 of the pixels (measured ~1e-4), whose source lies within float rounding of a
  pixel boundary;
* a 30-frame chained zoom: the two chains stay within 2e-4 (bilinear) / 5e-4 (bicubic) of each other.
"""

from __future__ import annotations

import math

import cv2
import pytest
import torch
import torch.nn.functional as F

from discolib.animation import motion
from discolib.animation.motion import MotionError, affine_2d_matrix, warp_2d

SIZE = 256
MOTIONS = {
    "deforum": dict(angle_deg=1.0, zoom=1.04, tx_px=2.0, ty_px=0.0),
    "large": dict(angle_deg=30.0, zoom=0.7, tx_px=5.3, ty_px=-7.1, center_x=0.4, center_y=0.55),
}
PADDINGS = ["replicate", "reflect", "zeros", "wrap"]


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A photo-like ``(1, 3, H, W)`` frame in [0, 1]: smooth colour fields plus texture, 8-bit quantised."""
    gen = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 8, 8, generator=gen), size=(h, w), mode="bicubic", align_corners=False)
    return (base + 0.08 * torch.randn(1, 3, h, w, generator=gen)).clamp(0, 1).mul(255).round().div(255)


def noise(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """torch's grid_sample references run on one thread: on a busy 2-core machine two threads are ~5x slower."""


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """``(2, 3, SIZE, SIZE)``: a photo-like frame and uniform noise."""
    return torch.cat([photo(SIZE, SIZE), noise(SIZE, SIZE)])


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("sampling", ["bilinear", "bicubic"])
def test_opencv_matches_torch_within_bound(images: torch.Tensor, sampling: str, padding: str) -> None:
    for params in MOTIONS.values():
        kwargs = dict(params, padding_mode=padding, sampling_mode=sampling)
        ours = warp_2d(images, **kwargs, backend="opencv")
        torch32 = warp_2d(images, **kwargs, backend="torch")
        exact = warp_2d(images.double(), **kwargs, backend="torch")
        for i in range(len(images)):  # photo, noise
            diff = (ours[i] - torch32[i]).abs()
            assert diff.max() <= 2e-4 and diff.mean() <= 1e-5, (i, float(diff.max()), float(diff.mean()))
            # Not less accurate than the float32 torch path: both only round the float64 warp's source positions.
            assert (ours[i].double() - exact[i]).abs().max() <= 2 * (torch32[i].double() - exact[i]).abs().max()


@pytest.mark.parametrize("padding", PADDINGS)
def test_opencv_nearest_differs_only_at_rounding_ties(images: torch.Tensor, padding: str) -> None:
    for params in MOTIONS.values():
        ours = warp_2d(images, **params, padding_mode=padding, sampling_mode="nearest", backend="opencv")
        ref = warp_2d(images, **params, padding_mode=padding, sampling_mode="nearest", backend="torch")
        assert (ours != ref).any(dim=1).float().mean() < 1e-3


@pytest.mark.parametrize("sampling", ["bilinear", "bicubic"])
def test_chained_zoom_drift_stays_small(sampling: str) -> None:
    cpu = gpu_like = photo(128, 128)
    for _ in range(30):  # Deforum's default motion, each backend warping its own previous frame
        cpu = warp_2d(cpu, 1.0, 1.04, 2.0, 0.0, sampling_mode=sampling, backend="opencv").clamp(0, 1)
        gpu_like = warp_2d(gpu_like, 1.0, 1.04, 2.0, 0.0, sampling_mode=sampling, backend="torch").clamp(0, 1)
    assert (cpu - gpu_like).abs().max() <= (2e-4 if sampling == "bilinear" else 5e-4)


def test_reflect_is_mirrored_about_the_image_edge() -> None:
    # torch's reflection (align_corners=False) = OpenCV's BORDER_REFLECT ("fedcba|abcdef"), not BORDER_REFLECT_101.
    image = torch.rand(1, 3, 6, 10)
    out = warp_2d(image, tx_px=2.0, padding_mode="reflect", sampling_mode="nearest", backend="opencv")
    assert torch.equal(out[..., 0], image[..., 1]) and torch.equal(out[..., 1], image[..., 0])
    assert torch.equal(out[..., 2:], image[..., :-2])
    zeros = warp_2d(image, tx_px=2.0, padding_mode="zeros", backend="opencv")
    assert torch.all(zeros[..., :2] == 0)


@pytest.mark.parametrize("channels", [1, 2, 4, 5])
def test_any_channel_count_and_batch(channels: int) -> None:
    # One plane is warped straight into the output; more go in interleaved groups of 3 / 4 (a short group padded).
    image = torch.rand(2, channels, 37, 29, generator=torch.Generator().manual_seed(channels))
    params = dict(angle_deg=torch.tensor([5.0, -8.0]), zoom=1.1, tx_px=[2.5, 0.0], ty_px=-1.0)
    for sampling in ("bilinear", "bicubic"):
        ours = warp_2d(image, **params, sampling_mode=sampling, backend="opencv")
        assert ours.shape == image.shape and ours.dtype == image.dtype and ours.is_contiguous()
        torch.testing.assert_close(ours, warp_2d(image, **params, sampling_mode=sampling, backend="torch"), atol=1e-4, rtol=0)
        second = warp_2d(image[1:], angle_deg=-8.0, zoom=1.1, tx_px=0.0, ty_px=-1.0, sampling_mode=sampling)
        assert torch.equal(ours[1:], second)  # batch entries are warped independently, with their own motion


def test_inverse_matrix_equals_affine_2d_matrix() -> None:
    params = (torch.tensor([10.0, -25.0]), torch.tensor([1.1, 0.9]), [2.5, -1.0], 3.0, 0.3, torch.tensor([0.6]))
    inverse = motion._affine_2d_inverse((24, 40), params, 2)
    expected = torch.linalg.inv(affine_2d_matrix((24, 40), *params, dtype=torch.float64))[:, :2]
    torch.testing.assert_close(torch.from_numpy(inverse), expected, atol=1e-12, rtol=0)
    with pytest.raises(MotionError, match="zoom"):
        warp_2d(torch.rand(1, 3, 8, 8), zoom=torch.tensor([-1.0]), backend="opencv")
    with pytest.raises(MotionError, match="angle_deg"):
        warp_2d(torch.rand(1, 3, 8, 8), angle_deg=torch.zeros(3), backend="opencv")


def test_backend_choice(device: torch.device, dtype: torch.dtype) -> None:
    image = torch.rand(1, 3, 20, 24, dtype=torch.float64).to(device, dtype)
    auto = warp_2d(image, 3.0, 1.05, 1.5, -0.5, sampling_mode="bicubic")
    # OpenCV for CPU float32 frames; torch on a GPU (unchanged: sync-free grid_sample) and for float64 (precision).
    chosen = "opencv" if device.type == "cpu" and dtype == torch.float32 else "torch"
    assert torch.equal(auto, warp_2d(image, 3.0, 1.05, 1.5, -0.5, sampling_mode="bicubic", backend=chosen))
    if device.type != "cpu":
        with pytest.raises(MotionError, match="CPU"):
            warp_2d(image, backend="opencv")


def test_gradients_keep_the_torch_path() -> None:
    image = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = warp_2d(image, 2.0, 1.1)  # auto: differentiable torch path
    out.sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    with pytest.raises(MotionError, match="differentiable"):
        warp_2d(image, 2.0, 1.1, backend="opencv")
    with torch.no_grad():
        assert not warp_2d(image, 2.0, 1.1, backend="opencv").requires_grad
    with pytest.raises(MotionError, match="backend"):
        warp_2d(image.detach(), backend="cv2")  # type: ignore[arg-type]


def test_other_dtypes_are_warped_in_float32() -> None:
    image = photo(32, 48)
    ref = warp_2d(image, 4.0, 1.2, backend="opencv")
    for dtype in (torch.float64, torch.float16):
        out = warp_2d(image.to(dtype), 4.0, 1.2, backend="opencv")
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=1e-3 if dtype == torch.float16 else 1e-6, rtol=0)


def test_same_bytes_whatever_the_layout_and_opencv_threads() -> None:
    # Resume byte-identity: the same inputs give the same bytes, whatever the memory layout or OpenCV thread count.
    image = noise(67, 45)
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        one = warp_2d(image, 7.0, 1.04, 2.0, 0.5, sampling_mode="bicubic")
        cv2.setNumThreads(3)
        three = warp_2d(image, 7.0, 1.04, 2.0, 0.5, sampling_mode="bicubic")
    finally:
        cv2.setNumThreads(before)
    assert torch.equal(one, three)
    again = warp_2d(image.contiguous(memory_format=torch.channels_last), 7.0, 1.04, 2.0, 0.5, sampling_mode="bicubic")
    assert torch.equal(one, again)


def test_rotation_by_90_degrees_is_exact() -> None:
    image = torch.rand(1, 3, 12, 12)
    out = warp_2d(image, angle_deg=90.0, backend="opencv")
    torch.testing.assert_close(out, torch.rot90(image, 1, dims=(-2, -1)), atol=1e-6, rtol=0)
    assert math.isclose(float(warp_2d(image, tx_px=0.5, padding_mode="wrap", backend="opencv")[0, 0, 0, 0]),
                        float(0.5 * (image[0, 0, 0, 0] + image[0, 0, 0, -1])), abs_tol=1e-6)
