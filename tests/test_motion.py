"""Analytic checks of the 2D affine and 3D reprojection warps (discolib.animation.motion).

Most checks warp *coordinate ramps* (channel 0 = pixel x, channel 1 = pixel y): bilinear interpolation of a
linear function is exact, so the warped ramps read back the exact source coordinate of every target pixel.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.camera import project_points
from kornia.geometry.conversions import axis_angle_to_rotation_matrix
from kornia.geometry.depth import depth_to_3d_v2
from kornia.geometry.transform import rotate, warp_affine, warp_perspective

from discolib.animation.motion import (
    TRANSLATION_SCALE,
    MotionError,
    affine_2d_grid,
    affine_2d_matrix,
    camera_intrinsics,
    camera_motion,
    reproject_3d,
    reproject_3d_grid,
    rotation_matrix_3d,
    sample_grid,
    warp_2d,
)


def tol(dtype: torch.dtype) -> float:
    """Error allowed on pixel coordinates / unit-range values for the dtype."""
    return 2e-4 if dtype == torch.float32 else 1e-9


def ramps(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 3, H, W)``: pixel x, pixel y, ones."""
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack((u, v, torch.ones_like(u))).expand(b, 3, h, w).clone()


def smooth(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A smooth colour image in [0, 1] (periods of ~20-40 px)."""
    v, u = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    chans = [
        0.5 + 0.4 * torch.sin(2 * math.pi * u / 37.0) * torch.cos(2 * math.pi * v / 29.0),
        0.5 + 0.4 * torch.cos(2 * math.pi * (u + 2 * v) / 41.0),
        0.5 + 0.3 * torch.sin(2 * math.pi * (u - v) / 23.0),
    ]
    return torch.stack(chans).expand(b, 3, h, w).clone()


def interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


def focal(h: int, fov_deg: float) -> float:
    return (h / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


# --------------------------------------------------------------------------------------------------- 2D


def test_affine_identity_grid_matches_grid_sample_identity(device: torch.device, dtype: torch.dtype) -> None:
    grid = affine_2d_grid((2, 7, 10), 0.0, 1.0, 0.0, 0.0, device=device, dtype=dtype)
    eye = torch.eye(2, 3, device=device, dtype=dtype).expand(2, 2, 3)
    identity = F.affine_grid(eye, [2, 1, 7, 10], align_corners=False)
    assert grid.shape == (2, 7, 10, 2) and grid.dtype == dtype and grid.device.type == device.type
    torch.testing.assert_close(grid, identity, atol=1e-6, rtol=0)


@pytest.mark.parametrize("padding", ["replicate", "border", "wrap", "reflect", "zeros"])
def test_warp_2d_zero_motion_is_identity(device: torch.device, dtype: torch.dtype, padding: str) -> None:
    image = torch.rand(2, 3, 16, 24, device=device, dtype=dtype)
    out = warp_2d(image, padding_mode=padding)
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)


def test_warp_2d_translation_sign_and_size(device: torch.device, dtype: torch.dtype) -> None:
    image = ramps(1, 20, 30, device, dtype)
    out = warp_2d(image, tx_px=3.0, ty_px=-2.0)
    # Deforum: positive tx moves the content right, positive ty down: pixel (u, v) shows (u - 3, v + 2).
    u, v = image[:, 0], image[:, 1]
    torch.testing.assert_close(out[:, 0, :-2, 3:], (u - 3)[:, :-2, 3:], atol=tol(dtype), rtol=0)
    torch.testing.assert_close(out[:, 1, :-2, 3:], (v + 2)[:, :-2, 3:], atol=tol(dtype), rtol=0)


def test_warp_2d_positive_angle_is_counter_clockwise(device: torch.device, dtype: torch.dtype) -> None:
    image = torch.rand(1, 3, 12, 12, device=device, dtype=dtype)
    out = warp_2d(image, angle_deg=90.0)
    # torch.rot90 over (H, W) with k=1 turns the picture counter-clockwise as displayed.
    torch.testing.assert_close(out, torch.rot90(image, 1, dims=(-2, -1)), atol=tol(dtype), rtol=0)


def test_warp_2d_rotation_zoom_about_centre(device: torch.device, dtype: torch.dtype) -> None:
    h, w, angle, zoom = 32, 48, 17.0, 1.3
    image = ramps(1, h, w, device, dtype)
    out = warp_2d(image, angle_deg=angle, zoom=zoom)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a = math.radians(angle)
    du, dv = image[:, 0] - cx, image[:, 1] - cy
    # Inverse of "zoom, then rotate counter-clockwise on screen (y down)" about the centre.
    src_u = cx + (math.cos(a) * du - math.sin(a) * dv) / zoom
    src_v = cy + (math.sin(a) * du + math.cos(a) * dv) / zoom
    inside = (src_u >= 0) & (src_u <= w - 1) & (src_v >= 0) & (src_v <= h - 1)  # not padding
    assert inside.float().mean() > 0.5
    torch.testing.assert_close(out[:, 0][inside], src_u[inside], atol=tol(dtype), rtol=0)
    torch.testing.assert_close(out[:, 1][inside], src_v[inside], atol=tol(dtype), rtol=0)


def test_warp_2d_matches_kornia_warp_affine(device: torch.device, dtype: torch.dtype) -> None:
    image = smooth(2, 24, 40, device, dtype)
    params = dict(angle_deg=torch.tensor([10.0, -25.0]), zoom=torch.tensor([1.1, 0.9]))
    params.update(tx_px=torch.tensor([2.5, -1.0]), ty_px=torch.tensor([0.0, 3.0]))
    params = {k: v.to(device, dtype) for k, v in params.items()}
    ours = warp_2d(image, **params, center_x=0.3, center_y=0.6, padding_mode="zeros")
    matrix = affine_2d_matrix((24, 40), **params, center_x=0.3, center_y=0.6)
    # kornia's pixel-space warp is exact with align_corners=True (pixel centres at integers, as ours).
    ref = warp_affine(image, matrix[:, :2], (24, 40), align_corners=True, padding_mode="zeros")
    torch.testing.assert_close(interior(ours, 2), interior(ref, 2), atol=tol(dtype), rtol=0)


def test_warp_2d_centre_fraction() -> None:
    image = ramps(1, 10, 20, torch.device("cpu"), torch.float64)
    out = warp_2d(image, zoom=2.0, center_x=0.0, center_y=0.0)
    # Zoom about the top-left image corner (-0.5, -0.5): pixel (u, v) shows ((u + 0.5) / 2 - 0.5, ...).
    # (Row/column 0 read -0.25: outside the pixel centres, so the border padding applies there.)
    expected = (image[:, :2] + 0.5) / 2 - 0.5
    torch.testing.assert_close(out[:, :2, 1:, 1:], expected[..., 1:, 1:], atol=1e-9, rtol=0)


def test_warp_2d_batch_parameters_are_independent(device: torch.device, dtype: torch.dtype) -> None:
    image = smooth(3, 16, 16, device, dtype)
    angles = torch.tensor([0.0, 5.0, -12.0], device=device, dtype=dtype)
    zooms = torch.tensor([1.0, 1.2, 0.8], device=device, dtype=dtype)
    batched = warp_2d(image, angle_deg=angles, zoom=zooms, tx_px=1.5)
    for i in range(3):
        single = warp_2d(image[i : i + 1], angle_deg=float(angles[i]), zoom=float(zooms[i]), tx_px=1.5)
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-6, rtol=0)


def test_wrap_padding_is_circular(device: torch.device, dtype: torch.dtype) -> None:
    image = torch.rand(1, 3, 8, 12, device=device, dtype=dtype)
    rolled = warp_2d(image, tx_px=5.0, ty_px=-3.0, padding_mode="wrap", sampling_mode="nearest")
    torch.testing.assert_close(rolled, torch.roll(image, shifts=(-3, 5), dims=(-2, -1)))
    # Half a pixel: the first column interpolates across the seam with the last one.
    half = warp_2d(image, tx_px=0.5, padding_mode="wrap")
    expected = 0.5 * (image + torch.roll(image, shifts=1, dims=-1))
    torch.testing.assert_close(half, expected, atol=tol(dtype), rtol=0)


def test_padding_modes_fill_the_uncovered_border() -> None:
    image = torch.rand(1, 3, 6, 10, dtype=torch.float64)
    zeros = warp_2d(image, tx_px=2.0, padding_mode="zeros")
    assert torch.all(zeros[..., :2] == 0)
    replicate = warp_2d(image, tx_px=2.0, padding_mode="replicate")
    torch.testing.assert_close(replicate[..., :2], image[..., :1].expand(-1, -1, -1, 2))
    reflect = warp_2d(image, tx_px=2.0, padding_mode="reflect")
    torch.testing.assert_close(reflect[..., 0], image[..., 1])  # mirrored about the image edge
    torch.testing.assert_close(reflect[..., 1], image[..., 0])


def test_bad_settings_raise_value_errors() -> None:
    image = torch.rand(1, 3, 8, 8)
    with pytest.raises(MotionError, match="padding_mode"):
        warp_2d(image, padding_mode="mirror")  # type: ignore[arg-type]
    with pytest.raises(MotionError, match="sampling_mode"):
        warp_2d(image, sampling_mode="lanczos")  # type: ignore[arg-type]
    with pytest.raises(MotionError, match="zoom"):
        warp_2d(image, zoom=0.0)
    with pytest.raises(MotionError, match="angle_deg"):
        warp_2d(image, angle_deg=torch.zeros(3))
    with pytest.raises(ValueError, match="depth"):
        reproject_3d(image, torch.ones(1, 2, 8, 8), [0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="near"):
        reproject_3d(image, torch.ones(1, 1, 8, 8), [0, 0, 0], [0, 0, 0], near=0.0)
    with pytest.raises(ValueError, match="fov"):
        reproject_3d(image, torch.ones(1, 1, 8, 8), [0, 0, 0], [0, 0, 0], fov_deg=180.0)
    with pytest.raises(ValueError, match="translation"):
        reproject_3d(image, torch.ones(1, 1, 8, 8), [0, 0, 0], [0, 0])


# --------------------------------------------------------------------------------------------------- 3D


def test_rotation_matrix_matches_kornia_axis_angle_composition(dtype: torch.dtype) -> None:
    angles = torch.tensor([[10.0, -20.0, 30.0], [0.0, 45.0, 0.0], [-90.0, 5.0, 170.0]], dtype=dtype)
    rad = torch.deg2rad(angles)
    per_axis = [axis_angle_to_rotation_matrix(torch.diag_embed(rad)[:, i]) for i in range(3)]
    torch.testing.assert_close(rotation_matrix_3d(angles), per_axis[0] @ per_axis[1] @ per_axis[2])


def test_camera_motion_units_follow_deforum() -> None:
    _, t = camera_motion([0, 0, 0], [10.0, 20.0, 30.0])
    expected = torch.tensor([[-10.0, 20.0, -30.0]]) * TRANSLATION_SCALE
    torch.testing.assert_close(t, expected)
    assert TRANSLATION_SCALE == 1 / 200


def test_zero_motion_is_identity(device: torch.device, dtype: torch.dtype) -> None:
    image = smooth(2, 24, 32, device, dtype)
    depth = 1.0 + torch.rand(2, 1, 24, 32, device=device, dtype=dtype)
    grid, mask = reproject_3d_grid(depth, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    identity = F.affine_grid(torch.eye(2, 3, device=device, dtype=dtype).expand(2, 2, 3), [2, 1, 24, 32], False)
    torch.testing.assert_close(grid, identity, atol=1e-6, rtol=0)
    warped, mask = reproject_3d(image, depth, [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    torch.testing.assert_close(warped, image, atol=1e-5, rtol=0)
    assert mask.shape == (2, 1, 24, 32) and mask.dtype == torch.bool and not mask.any()


@pytest.mark.parametrize("angle", [7.0, -30.0])
def test_z_rotation_equals_2d_rotation(device: torch.device, dtype: torch.dtype, angle: float) -> None:
    image = smooth(1, 40, 56, device, dtype)
    depth = 1.0 + torch.rand(1, 1, 40, 56, device=device, dtype=dtype)  # depth is irrelevant for rotations
    warped, mask = reproject_3d(image, depth, [0.0, 0.0, angle], [0.0, 0.0, 0.0], camera="pinhole")
    as_2d = warp_2d(image, angle_deg=angle)
    angle_t = torch.tensor([angle], device=device, dtype=dtype)
    ref = rotate(image, angle_t, padding_mode="border", align_corners=True)
    keep = ~interior(mask, 1)
    assert keep.float().mean() > 0.5
    for other in (as_2d, ref):
        diff = (interior(warped, 1) - interior(other, 1)).abs() * keep
        assert diff.max() < tol(dtype)


def test_pure_xy_rotation_is_the_rotation_homography(device: torch.device, dtype: torch.dtype) -> None:
    h, w, fov = 36, 48, 50.0
    image = smooth(1, h, w, device, dtype)
    depth = 1.0 + torch.rand(1, 1, h, w, device=device, dtype=dtype)
    rot_deg = torch.tensor([[3.0, -4.0, 2.0]], device=device, dtype=dtype)
    warped, mask = reproject_3d(
        image, depth, rot_deg, [0.0, 0.0, 0.0], fov_deg=fov, padding_mode="zeros", camera="pinhole"
    )
    k = camera_intrinsics(h, w, fov, device=device, dtype=dtype)
    rot = rotation_matrix_3d(rot_deg)
    # Old pixel -> new pixel: X_new = R^T X_old, so x_new ~ K R^T K^-1 x_old (kornia: src -> dst matrix).
    homography = k @ rot.transpose(1, 2) @ torch.linalg.inv(k)
    ref = warp_perspective(image, homography, (h, w), align_corners=True, padding_mode="zeros")
    keep = ~interior(mask, 2)
    assert keep.float().mean() > 0.5
    assert ((interior(warped, 2) - interior(ref, 2)).abs() * keep).max() < tol(dtype)


@pytest.mark.parametrize("camera", ["deforum", "pinhole"])
def test_rotation_directions_follow_deforum(camera: str) -> None:
    image = ramps(1, 21, 31, torch.device("cpu"), torch.float64)
    depth = torch.ones(1, 1, 21, 31, dtype=torch.float64)
    centre = (slice(None), slice(None), 10, 15)
    pan, _ = reproject_3d(image, depth, [0.0, 2.0, 0.0], [0.0, 0.0, 0.0], camera=camera)
    assert pan[centre][0, 0] > 15.5  # rotation_3d_y > 0: camera pans right, content moves left
    tilt, _ = reproject_3d(image, depth, [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], camera=camera)
    assert tilt[centre][0, 1] < 9.5  # rotation_3d_x > 0: camera tilts up, content moves down


@pytest.mark.parametrize("steps", [0, 2])
def test_sideways_translation_is_exact_pixel_shift(device: torch.device, dtype: torch.dtype, steps: int) -> None:
    h, w, fov, tx, shift_px = 24, 40, 40.0, 10.0, 3.0
    # Choose the constant depth so that f * tx / D is exactly 3 pixels.
    d = focal(h, fov) * tx * TRANSLATION_SCALE / shift_px
    image = ramps(1, h, w, device, dtype)
    depth = torch.full((1, 1, h, w), d, device=device, dtype=dtype)
    warped, mask = reproject_3d(
        image, depth, [0, 0, 0], [tx, 0, 0], fov_deg=fov, depth_refinement_steps=steps, camera="pinhole"
    )
    # translation_x > 0: camera moves right, content moves left: pixel u shows old pixel u + 3.
    torch.testing.assert_close(warped[:, 0, :, :-3], image[:, 0, :, :-3] + shift_px, atol=tol(dtype), rtol=0)
    torch.testing.assert_close(warped[:, 1], image[:, 1], atol=tol(dtype), rtol=0)
    assert mask[..., -3:].all() and not mask[..., :-3].any()

    # translation_y > 0: camera moves up, content moves down: pixel v shows old pixel v - 3.
    warped, mask = reproject_3d(
        image, depth, [0, 0, 0], [0, tx, 0], fov_deg=fov, depth_refinement_steps=steps, camera="pinhole"
    )
    torch.testing.assert_close(warped[:, 1, 3:], image[:, 1, 3:] - shift_px, atol=tol(dtype), rtol=0)
    assert mask[..., :3, :].all() and not mask[..., 3:, :].any()


def test_sideways_translation_of_random_image_is_a_shift(device: torch.device, dtype: torch.dtype) -> None:
    h, w, fov, tx = 16, 20, 60.0, -8.0
    d = focal(h, fov) * abs(tx) * TRANSLATION_SCALE / 2.0  # 2 pixels
    image = torch.rand(2, 3, h, w, device=device, dtype=dtype)
    depth = torch.full((2, 1, h, w), d, device=device, dtype=dtype)
    warped, _ = reproject_3d(image, depth, [0, 0, 0], [tx, 0, 0], fov, camera="pinhole")
    torch.testing.assert_close(warped[..., 2:], image[..., :-2], atol=tol(dtype), rtol=0)


@pytest.mark.parametrize("tz", [20.0, -30.0])
def test_forward_translation_is_zoom_by_depth_ratio(device: torch.device, dtype: torch.dtype, tz: float) -> None:
    h, w, d = 30, 44, 1.5
    image = ramps(1, h, w, device, dtype)
    depth = torch.full((1, 1, h, w), d, device=device, dtype=dtype)
    warped, mask = reproject_3d(image, depth, [0, 0, 0], [0, 0, tz], fov_deg=45.0, camera="pinhole")
    ratio = d / (d - tz * TRANSLATION_SCALE)  # translation_z > 0 moves the camera forward: zoom in
    cx, cy = (w - 1) / 2, (h - 1) / 2
    expected_u = cx + (image[:, 0] - cx) / ratio
    expected_v = cy + (image[:, 1] - cy) / ratio
    # Compare where the source lies between pixel centres (elsewhere the padding, not the geometry, decides).
    keep = (expected_u >= 0) & (expected_u <= w - 1) & (expected_v >= 0) & (expected_v <= h - 1)
    assert ((warped[:, 0] - expected_u).abs() * keep).max() < tol(dtype)
    assert ((warped[:, 1] - expected_v).abs() * keep).max() < tol(dtype)
    zoomed = warp_2d(smooth(1, h, w, device, dtype), zoom=ratio)
    warped_smooth, _ = reproject_3d(
        smooth(1, h, w, device, dtype), depth, [0, 0, 0], [0, 0, tz], fov_deg=45.0, camera="pinhole"
    )
    assert ((warped_smooth - zoomed).abs() * keep).max() < tol(dtype)
    # Zooming in has a source for every pixel; zooming out uncovers a border.
    assert mask.any() == (tz < 0)
    if tz < 0:
        assert mask[..., 0, :].all() and mask[..., :, -1].all() and not mask[..., h // 2, w // 2]


def test_tilted_plane_converges_to_exact_reprojection() -> None:
    """A slanted plane seen by a moving, turning camera: the fixed-point depth gives the exact flow."""
    h, w, fov = 48, 64, 50.0
    dtype = torch.float64
    k = camera_intrinsics(h, w, fov, dtype=dtype)[0]
    v, u = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    rays = torch.stack(((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)))  # (3, H, W)
    normal = torch.tensor([0.3, -0.2, 1.0], dtype=dtype)
    offset = 1.5  # plane n . X = offset in the old camera
    depth = (offset / torch.einsum("i,ihw->hw", normal, rays)).view(1, 1, h, w)
    rotation, translation = [1.0, -1.5, 2.0], [12.0, -8.0, 15.0]

    rot, t = camera_motion(rotation, translation, dtype=dtype)
    rot, t = rot[0], t[0]
    # Plane in the new camera: P_old = R (X - t)  =>  (R^T n) . X = offset + n . (R t).
    n_new, off_new = rot.T @ normal, offset + normal @ (rot @ t)
    lam = off_new / torch.einsum("i,ihw->hw", n_new, rays)
    p_old = torch.einsum("ij,jhw->ihw", rot, lam * rays - t.view(3, 1, 1))
    exact = torch.stack((k[0, 0] * p_old[0] / p_old[2] + k[0, 2], k[1, 1] * p_old[1] / p_old[2] + k[1, 2]))

    image = ramps(1, h, w, torch.device("cpu"), dtype)
    errors = []
    for steps in (0, 1, 4):
        warped, mask = reproject_3d(
            image, depth, rotation, translation, fov, depth_refinement_steps=steps, camera="pinhole"
        )
        keep = (exact[0] >= 0) & (exact[0] <= w - 1) & (exact[1] >= 0) & (exact[1] <= h - 1)
        assert keep.float().mean() > 0.5 and not (keep & mask[0, 0]).any()
        errors.append(float(((warped[0, :2] - exact).abs() * keep).max()))
    print("max error (px) after 0, 1, 4 refinement steps:", errors)
    assert errors[0] > 0.03  # the first-order depth guess is visibly off for a slanted plane
    assert errors[1] < errors[0] / 20 and errors[2] < 5e-4  # converges (limit: bilinear interpolation of depth)


def test_first_order_grid_matches_kornia_unprojection(device: torch.device, dtype: torch.dtype) -> None:
    """The fused warp equals the same steps written with kornia's unprojection and projection."""
    b, h, w, fov = 2, 20, 28, 55.0
    gen = torch.Generator().manual_seed(0)
    depth = (1.0 + torch.rand(b, 1, h, w, generator=gen, dtype=torch.float64)).to(device, dtype)
    rotation = torch.tensor([[2.0, -3.0, 4.0], [-1.0, 0.5, -6.0]], device=device, dtype=dtype)
    translation = torch.tensor([[10.0, -5.0, 20.0], [-4.0, 8.0, -12.0]], device=device, dtype=dtype)
    grid, _ = reproject_3d_grid(depth, rotation, translation, fov, depth_refinement_steps=0, camera="pinhole")

    k = camera_intrinsics(h, w, fov, device=device, dtype=dtype).expand(b, 3, 3)
    rot, t = camera_motion(rotation, translation, batch=b, device=device, dtype=dtype)
    old_points = depth_to_3d_v2(depth[:, 0], k)  # (B, H, W, 3), old camera
    new_z = (old_points @ rot.view(b, 1, 3, 3))[..., 2] + t[:, 2].view(b, 1, 1)  # z of R^T X + t
    target = depth_to_3d_v2(new_z, k)  # target pixels unprojected with that depth
    source = (target - t.view(b, 1, 1, 3)) @ rot.transpose(1, 2).view(b, 1, 3, 3)  # R (X - t)
    pixels = project_points(source, k.view(b, 1, 1, 3, 3))
    size = torch.tensor([w, h], device=device, dtype=dtype)
    torch.testing.assert_close(grid, (2 * pixels + 1) / size - 1, atol=1e-5 if dtype == torch.float32 else 1e-10, rtol=0)


def test_mask_behind_camera_and_far_plane() -> None:
    image = torch.rand(1, 3, 8, 8)
    depth = torch.ones(1, 1, 8, 8)
    # Moving 1.5 units forward puts a plane at depth 1 behind the camera: nothing can be seen.
    _, mask = reproject_3d(image, depth, [0, 0, 0], [0, 0, 300.0])
    assert mask.all()
    _, mask = reproject_3d(image, depth, [0, 0, 0], [0, 0, 0], far=0.5)
    assert mask.all()
    _, mask = reproject_3d(image, depth, [0, 0, 0], [0, 0, 0], far=2.0)
    assert not mask.any()


def test_batch_and_depth_resize() -> None:
    image = smooth(2, 20, 30, torch.device("cpu"), torch.float32)
    depth = 1.0 + torch.rand(2, 1, 10, 15)
    rot = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, -3.0]])
    trans = torch.tensor([[5.0, 0.0, 10.0], [-3.0, 2.0, 0.0]])
    warped, mask = reproject_3d(image, depth, rot, trans, padding_mode="wrap", sampling_mode="bicubic")
    assert warped.shape == image.shape and mask.shape == (2, 1, 20, 30)
    full_depth = F.interpolate(depth, size=(20, 30), mode="bilinear", align_corners=False)
    for i in range(2):
        single, single_mask = reproject_3d(
            image[i : i + 1], full_depth[i : i + 1], rot[i], trans[i], padding_mode="wrap", sampling_mode="bicubic"
        )
        torch.testing.assert_close(warped[i : i + 1], single, atol=1e-5, rtol=0)
        assert torch.equal(mask[i : i + 1], single_mask)


def test_sample_grid_validates_grid_shape() -> None:
    with pytest.raises(MotionError, match="grid"):
        sample_grid(torch.rand(2, 3, 4, 4), torch.zeros(1, 4, 4, 2))


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("padding", ["border", "reflect", "zeros", "wrap"])
def test_banded_sampling_is_bit_identical_to_grid_sample(threads: int, mode: str, padding: str) -> None:
    # sample_grid splits one frame's rows into bands over the CPU threads; 37 rows are not a multiple of 2 or 3.
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 37, 29, generator=gen)
    grid = torch.rand(1, 37, 29, 2, generator=gen) * 2.4 - 1.2
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = sample_grid(image, grid, padding, mode)
        torch.set_num_threads(threads)
        banded = sample_grid(image, grid, padding, mode)
    finally:
        torch.set_num_threads(before)
    assert banded.shape == expected.shape and banded.is_contiguous()
    assert torch.equal(banded, expected)
    if padding != "wrap":
        pad = {"reflect": "reflection"}.get(padding, padding)
        direct = F.grid_sample(image, grid, mode=mode, padding_mode=pad, align_corners=False)
        assert torch.equal(banded, direct)


@pytest.mark.parametrize("camera", ["deforum", "pinhole"])
def test_reproject_3d_is_differentiable(camera: str) -> None:
    # The CPU fast path writes in place; with gradients wanted it must fall back to differentiable ops, same values.
    gen = torch.Generator().manual_seed(4)
    image = torch.rand(1, 3, 24, 32, generator=gen, dtype=torch.float64)
    depth = (1.0 + torch.rand(1, 1, 24, 32, generator=gen, dtype=torch.float64)).requires_grad_()
    rot = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    trans = torch.tensor([[3.0, 1.0, 8.0]], dtype=torch.float64)
    warped, mask = reproject_3d(image, depth, rot, trans, depth_refinement_steps=2, camera=camera)
    warped.sum().backward()
    assert depth.grad is not None and rot.grad is not None
    assert torch.isfinite(depth.grad).all() and depth.grad.abs().sum() > 0 and rot.grad.abs().sum() > 0
    with torch.no_grad():
        fast, fast_mask = reproject_3d(image, depth, rot, trans, depth_refinement_steps=2, camera=camera)
    torch.testing.assert_close(fast, warped.detach(), rtol=0, atol=1e-12)
    assert torch.equal(fast_mask, mask)
    # And the gradient is the true derivative (central differences on a few depth entries).
    for index in [(0, 0, 5, 7), (0, 0, 12, 20)]:
        eps = 1e-6
        d_plus, d_minus = depth.detach().clone(), depth.detach().clone()
        d_plus[index] += eps
        d_minus[index] -= eps
        with torch.no_grad():
            numeric = (reproject_3d(image, d_plus, rot, trans, depth_refinement_steps=2, camera=camera)[0].sum()
                       - reproject_3d(image, d_minus, rot, trans, depth_refinement_steps=2, camera=camera)[0].sum()) / (2 * eps)
        torch.testing.assert_close(depth.grad[index], numeric, rtol=1e-4, atol=1e-6)
