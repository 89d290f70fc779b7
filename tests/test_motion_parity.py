"""Issue 13, point 2: discolib's 3D camera moves like the originals' (Disco v5.7, deforum-stable-diffusion, webui).

The originals' warp is re-derived here with numpy, independently of discolib: the points ``(x, y, depth)`` (``x, y``
on ``linspace(-1, 1)``) go through PyTorch3D's ``FoVPerspectiveCameras`` -- world-to-view ``X R + T`` (row vectors),
then the 4x4 perspective matrix with ``1 / (aspect tan(fov/2))``, ``1 / tan(fov/2)``, ``zfar / (zfar - znear)``,
``-zfar znear / (zfar - znear)`` and ``w = z`` -- before and after the move; the difference of the two projections is
subtracted from ``affine_grid``'s identity grid. Flows are compared in pixels: ratio of the mean displacement
magnitudes and cosine of the two fields.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from discolib.animation.motion import MotionError, reproject_3d, reproject_3d_grid
from discolib.models.depth import (
    DEFORUM_DEPTH_RANGE,
    DISCO_DEPTH_RANGE,
    DepthError,
    depth_for_warp,
)

FOVS = (20.0, 40.0, 70.0, 120.0)
FRAMES = {"square": (36, 36), "16:9": (36, 64)}
MOTIONS = {
    "translation_x": ((0, 0, 0), (10, 0, 0)),
    "translation_y": ((0, 0, 0), (0, 10, 0)),
    "translation_z": ((0, 0, 0), (0, 0, 10)),
    "rotation_3d_x": ((1, 0, 0), (0, 0, 0)),
    "rotation_3d_y": ((0, 1, 0), (0, 0, 0)),
    "rotation_3d_z": ((0, 0, 1), (0, 0, 0)),
    "combined": ((0.5, -0.7, 1.0), (3, -4, 8)),
}


# ------------------------------------------------------------------------------------------ the originals, in numpy


def _axis_rotation(axis: int, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = (axis + 1) % 3, (axis + 2) % 3  # right-handed: y -> z about x, z -> x about y, x -> y about z
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _euler_xyz(deg) -> np.ndarray:
    """PyTorch3D ``euler_angles_to_matrix(radians(deg), "XYZ")``: the product of the three axis matrices in order."""
    return _axis_rotation(0, deg[0]) @ _axis_rotation(1, deg[1]) @ _axis_rotation(2, deg[2])


def originals_grid(depth: np.ndarray, rot_deg, trans, fov: float, aspect: float = 1.0,
                   near: float = 200.0, far: float = 10000.0) -> np.ndarray:
    """``(H, W, 2)``: the sampling grid of Disco's / Deforum's ``transform_image_3d`` for one frame."""
    h, w = depth.shape
    tan = math.tan(math.radians(fov) / 2.0)
    proj = np.zeros((4, 4))
    proj[0, 0], proj[1, 1] = 1.0 / (aspect * tan), 1.0 / tan
    proj[2, 2], proj[2, 3], proj[3, 2] = far / (far - near), -far * near / (far - near), 1.0
    ys, xs = np.meshgrid(np.linspace(-1.0, 1.0, h), np.linspace(-1.0, 1.0, w), indexing="ij")
    world = np.stack((xs.ravel(), ys.ravel(), depth.ravel()), axis=1)

    def to_ndc(rot: np.ndarray, tr: np.ndarray) -> np.ndarray:
        view = world @ rot + tr
        clip = np.concatenate((view, np.ones((len(view), 1))), axis=1) @ proj.T
        return clip[:, :2] / clip[:, 3:]

    tr = np.array([-trans[0], trans[1], -trans[2]]) / 200.0  # Disco's TRANSLATION_SCALE and signs
    offset = (to_ndc(_euler_xyz(rot_deg), tr) - to_ndc(np.eye(3), np.zeros(3))).reshape(h, w, 2)
    # affine_grid(identity, align_corners=False): pixel centres at (2i + 1) / n - 1.
    ident = np.stack(np.meshgrid((2 * np.arange(w) + 1) / w - 1, (2 * np.arange(h) + 1) / h - 1), axis=-1)
    return ident - offset


def identity_grid(h: int, w: int) -> np.ndarray:
    return np.stack(np.meshgrid((2 * np.arange(w) + 1) / w - 1, (2 * np.arange(h) + 1) / h - 1), axis=-1)


def ours(depth: np.ndarray, rot, trans, fov: float, **kwargs) -> np.ndarray:
    h, w = depth.shape
    grid, _ = reproject_3d_grid(torch.from_numpy(depth).view(1, 1, h, w), list(rot), list(trans), fov, **kwargs)
    return grid[0].numpy()


def compare(grid: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(mean |our displacement| / mean |theirs|, cosine), displacements in pixels."""
    h, w = grid.shape[:2]
    ident, px = identity_grid(h, w), np.array([w / 2.0, h / 2.0])
    a, b = ((grid - ident) * px).reshape(-1, 2), ((ref - ident) * px).reshape(-1, 2)
    ratio = np.linalg.norm(a, axis=1).mean() / np.linalg.norm(b, axis=1).mean()
    return float(ratio), float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def scene(h: int, w: int, kind: str) -> np.ndarray:
    """Synthetic depth in the originals' units, nearer at the bottom-left: a slope with a hill and a ripple."""
    if kind == "flat":
        return np.ones((h, w))  # the originals' depth without a depth model
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    ground = (1.0 - y) if kind.endswith("plane") else 0.5 * (x + 1.0 - y)
    s = ground - 0.35 * np.exp(-((x - 0.35) ** 2 + (y - 0.55) ** 2) / 0.08) + 0.1 * np.sin(6 * x + 1)
    unit = (s - s.min()) / (s.max() - s.min())
    lo, hi = DISCO_DEPTH_RANGE if kind.startswith("disco") else DEFORUM_DEPTH_RANGE
    return lo + (hi - lo) * unit


# ------------------------------------------------------------------------------------------ the camera model


@pytest.mark.parametrize("frame", list(FRAMES))
@pytest.mark.parametrize("aspect", [1.0, 16 / 9])
def test_without_refinement_the_grid_is_the_originals(frame: str, aspect: float) -> None:
    """0 refinement steps: the originals' own grid, for every fov, motion, depth and aspect ratio."""
    h, w = FRAMES[frame]
    for kind in ("flat", "webui", "disco"):
        depth = scene(h, w, kind)
        for fov in FOVS:
            for rot, trans in MOTIONS.values():
                grid = ours(depth, rot, trans, fov, depth_refinement_steps=0, aspect_ratio=aspect)
                np.testing.assert_allclose(grid, originals_grid(depth, rot, trans, fov, aspect), atol=1e-9, rtol=0)


def test_negative_fov_reverses_the_motion_as_webui() -> None:
    """webui's fov schedule accepts [-180, 180] without 0; a negative fov flips the sign of 1 / tan(fov / 2)."""
    depth = scene(20, 30, "webui")
    rot, trans = MOTIONS["combined"]
    grid = ours(depth, rot, trans, -40.0, depth_refinement_steps=0)
    np.testing.assert_allclose(grid, originals_grid(depth, rot, trans, -40.0), atol=1e-9, rtol=0)
    ident = identity_grid(20, 30)
    flat = np.ones((20, 30))
    np.testing.assert_allclose(ours(flat, (0, 0, 0), (5, 0, 0), -40.0) - ident,
                               -(ours(flat, (0, 0, 0), (5, 0, 0), 40.0) - ident), atol=1e-12)
    with pytest.raises(MotionError, match="fov"):
        ours(flat, rot, trans, 0.0)
    with pytest.raises(MotionError, match="fov"):
        ours(flat, rot, trans, -40.0, camera="pinhole")


def test_near_and_far_never_change_the_originals_motion() -> None:
    depth = scene(20, 30, "webui")
    rot, trans = MOTIONS["combined"]
    ref = originals_grid(depth, rot, trans, 40.0)
    for near, far in [(0.1, 5.0), (2000.0, 20000.0), (1.0, 1.5)]:
        np.testing.assert_allclose(originals_grid(depth, rot, trans, 40.0, near=near, far=far), ref, atol=1e-12)


def test_float32_batch_and_device_agree(device: torch.device) -> None:
    """A batch of frames with their own motion and aspect ratio, float32 on the device, as in a render."""
    h, w = FRAMES["16:9"]
    depths = [scene(h, w, "webui"), scene(h, w, "disco")]
    motions = [MOTIONS["combined"], MOTIONS["rotation_3d_y"]]
    aspects = [1.0, 0.75]
    depth = torch.tensor(np.stack(depths)[:, None], dtype=torch.float32, device=device)
    rot = torch.tensor([m[0] for m in motions], dtype=torch.float32, device=device)
    trans = torch.tensor([m[1] for m in motions], dtype=torch.float32, device=device)
    aspect = torch.tensor(aspects, dtype=torch.float32, device=device)
    grid, mask = reproject_3d_grid(depth, rot, trans, 55.0, depth_refinement_steps=0, aspect_ratio=aspect)
    assert grid.dtype == torch.float32 and grid.device.type == device.type and mask.shape == (2, 1, h, w)
    for i in range(2):
        ref = originals_grid(depths[i], motions[i][0], motions[i][1], 55.0, aspects[i])
        np.testing.assert_allclose(grid[i].double().cpu().numpy(), ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize("frame", list(FRAMES))
def test_default_reprojection_moves_like_the_originals(frame: str) -> None:
    """Issue 13 target: within 5% in mean displacement and cosine >= 0.99, every fov, motion and depth convention."""
    h, w = FRAMES[frame]
    worst = []
    for kind in ("flat", "webui", "disco"):
        depth = scene(h, w, kind)
        for fov in FOVS:
            for name, (rot, trans) in MOTIONS.items():
                ratio, cos = compare(ours(depth, rot, trans, fov), originals_grid(depth, rot, trans, fov))
                worst.append((abs(ratio - 1), cos, kind, fov, name))
                assert abs(ratio - 1) < 0.05 and cos > 0.99, (kind, fov, name, ratio, cos)
    assert max(e for e, *_ in worst) < 0.05


def test_reading_the_landing_surface_depth_is_what_differs() -> None:
    """On a ground plane (depth along y) a large ``translation_y`` at fov 20 reads the depth of the content that
    arrives (farther, so it moves less): this is the exact reprojection's difference from the originals, who use
    the previous frame's depth at the target pixel, and it vanishes with the depth gradient or the motion."""
    h, w = FRAMES["square"]
    depth = scene(h, w, "webui-plane")
    rot, trans = MOTIONS["translation_y"]
    ratio, cos = compare(ours(depth, rot, trans, 20.0), originals_grid(depth, rot, trans, 20.0))
    assert 0.90 < ratio < 0.97 and cos > 0.99
    ratio, cos = compare(ours(depth, rot, trans, 40.0), originals_grid(depth, rot, trans, 40.0))
    assert abs(ratio - 1) < 0.05 and cos > 0.99
    flat = scene(h, w, "flat")
    np.testing.assert_allclose(ours(flat, rot, trans, 20.0), originals_grid(flat, rot, trans, 20.0), atol=1e-9)


@pytest.mark.parametrize(("fov", "zoom"), [(20.0, 1.43), (90.0, 1.06)])
def test_issue_zoom_per_frame_depends_on_fov(fov: float, zoom: float) -> None:
    """translation_z 10 on flat depth: 1.43x per frame at fov 20, 1.06x at fov 90 (the originals)."""
    h, w = 9, 513
    grid = ours(np.ones((h, w)), (0, 0, 0), (0, 0, 10), fov)
    x = identity_grid(h, w)[h // 2, -1, 0]
    measured = x / grid[h // 2, -1, 0]  # the right-edge pixel reads from x / zoom
    t, stretch = 10 / 200, w / (w - 1)  # offsets computed on linspace(-1, 1), applied on pixel centres
    gain = t / (math.tan(math.radians(fov) / 2) * (1.0 - t))  # depth 1 -> 1 - t, projected by 1 / tan(fov / 2)
    assert measured == pytest.approx(1.0 / (1.0 - gain * stretch), rel=1e-9)  # the originals, re-derived by hand
    assert measured == pytest.approx(zoom, abs=0.005)


def test_issue_before_figures_are_the_square_pixel_pinhole() -> None:
    """The issue's 'before' (512x288, fov 40): translation_x 0.56x (= H / W) and translation_z 0.34x on flat depth."""
    h, w = 36, 64
    flat = np.ones((h, w))
    for name, expected in (("translation_x", h / w), ("translation_z", 0.34)):
        rot, trans = MOTIONS[name]
        ref = originals_grid(flat, rot, trans, 40.0)
        ratio, _ = compare(ours(flat, rot, trans, 40.0, camera="pinhole"), ref)
        assert ratio == pytest.approx(expected, abs=0.01)
        ratio, cos = compare(ours(flat, rot, trans, 40.0), ref)
        assert ratio == pytest.approx(1.0, abs=1e-9) and cos > 1 - 1e-12


def test_aspect_ratio_divides_the_horizontal_motion() -> None:
    """webui's aspect_ratio_schedule: horizontal displacement / aspect, vertical unchanged."""
    h, w = FRAMES["16:9"]
    depth = scene(h, w, "flat")
    rot, trans = MOTIONS["combined"]
    one = ours(depth, rot, trans, 70.0) - identity_grid(h, w)
    old_formula = ours(depth, rot, trans, 70.0, aspect_ratio=w / h) - identity_grid(h, w)
    np.testing.assert_allclose(old_formula[..., 0], one[..., 0] * h / w, atol=1e-12)
    np.testing.assert_allclose(old_formula[..., 1], one[..., 1], atol=1e-12)


def test_deforum_camera_mask_and_errors() -> None:
    image = torch.rand(1, 3, 12, 16, dtype=torch.float64)
    depth = torch.ones(1, 1, 12, 16, dtype=torch.float64)
    # Panning uncovers one side only; moving forward past the plane hides everything.
    _, mask = reproject_3d(image, depth, [0, 3.0, 0], [0, 0, 0])
    assert mask[..., -1].all() and not mask[..., 0].any()
    _, mask = reproject_3d(image, depth, [0, 0, 0], [0, 0, 250.0])
    assert mask.all()
    with pytest.raises(MotionError, match="camera"):
        reproject_3d(image, depth, [0, 0, 0], [0, 0, 0], camera="orthographic")  # type: ignore[arg-type]
    with pytest.raises(MotionError, match="aspect_ratio"):
        reproject_3d(image, depth, [0, 0, 0], [0, 0, 0], aspect_ratio=0.0)
    # The positional parameters of before keep working.
    warped, _ = reproject_3d(image, depth, [0, 0, 1.0], [1.0, 0, 2.0], 40.0, 1e-3, None, "border", "bilinear", 1)
    assert warped.shape == image.shape


# ------------------------------------------------------------------------------------------ depth units


def _webui_depth(prediction: np.ndarray, disparity: bool) -> np.ndarray:
    """webui ``prepare_depth_tensor`` + ``transform_image_3d_new``, re-derived: min/max, 1024-bin CDF equalisation,
    then ``-(n - 2)`` for MiDaS disparity or ``n + 1`` for depth models."""
    n = (prediction - prediction.min()) / (prediction.max() - prediction.min())
    hist, edges = np.histogram(n, bins=1024, range=(0, 1))
    cdf = hist.cumsum() / hist.sum()
    n = np.interp(n, edges[:-1], cdf)
    return 2.0 - n if disparity else n + 1.0


def test_webui_depth_units() -> None:
    gen = np.random.default_rng(0)
    y, x = np.meshgrid(np.linspace(0, 1, 96), np.linspace(0, 1, 128), indexing="ij")
    disparity = 3.0 + 20.0 * y ** 2 + np.sin(7 * x) + 0.01 * gen.random((96, 128))  # MiDaS-like: larger = nearer
    ours_depth = 2.0 - (disparity - disparity.min()) / np.ptp(disparity)  # what TransformersDepth returns
    got = depth_for_warp(torch.from_numpy(ours_depth).view(1, 1, 96, 128), "webui")[0, 0].numpy()
    # Ranks vs webui's 1024-bin CDF: apart by about one bin's share of the pixels (here ~12 of 12288).
    want = _webui_depth(disparity, disparity=True)
    np.testing.assert_allclose(got, want, atol=8e-3)
    assert np.abs(got - want).mean() < 2e-3 and got.min() == 1.0 and got.max() == 2.0
    # A metric model's depth (larger = farther) gives the same map: equalisation only sees the order.
    metric = 1.0 / disparity
    got_metric = depth_for_warp(torch.from_numpy(metric).view(1, 1, 96, 128), "webui")[0, 0].numpy()
    np.testing.assert_allclose(got_metric, _webui_depth(metric, disparity=False), atol=8e-3)
    np.testing.assert_allclose(got_metric, got, atol=1e-12)


def test_disco_depth_units() -> None:
    """Disco / deforum-stable-diffusion: ``(50 - midas) / 19`` with DPT-Large's disparity spanning [0, 30]."""
    y = np.linspace(0, 1, 40)[:, None] * np.ones((1, 24))
    midas = 30.0 * y ** 1.5  # 0 (far, top) .. 30 (near, bottom)
    ours_depth = 2.0 - midas / 30.0  # linear in disparity, as TransformersDepth's "linear" mapping
    got = depth_for_warp(torch.from_numpy(ours_depth).view(1, 1, 40, 24), "disco")[0, 0].numpy()
    np.testing.assert_allclose(got, (50.0 - midas) / 19.0, atol=1e-12)
    assert DISCO_DEPTH_RANGE == (20 / 19, 50 / 19)
    metres = torch.full((1, 1, 4, 4), 3.5, dtype=torch.float64)
    metres[..., 0, 0] = 1.2
    assert torch.equal(depth_for_warp(metres, "disco", metric=True), metres)


@pytest.mark.parametrize("convention", ["disco", "webui"])
def test_flat_depth_is_ones(convention: str) -> None:
    flat = torch.full((2, 1, 5, 7), 0.7)
    assert torch.equal(depth_for_warp(flat, convention), torch.ones_like(flat))  # type: ignore[arg-type]


def test_depth_for_warp_errors() -> None:
    with pytest.raises(DepthError, match="convention"):
        depth_for_warp(torch.ones(1, 1, 4, 4), "midas")  # type: ignore[arg-type]
    with pytest.raises(DepthError, match="shape"):
        depth_for_warp(torch.ones(1, 4, 4), "disco")
