"""VR stereo pairs (Disco v5.7 ``vr_mode``): eye poses, eye views, the fish-eye projection, eye frames and the
side-by-side video.

The references are re-derived here in numpy from Disco's ``generate_eye_views`` (eye pose), PyTorch3D's
``euler_angles_to_matrix`` / ``X_view = X_world R + T`` convention (camera) and ``get_spherical_projection`` +
``grid_sample(align_corners=True)`` (fish-eye), not taken from discolib. The projection itself is the pinhole model of
:mod:`discolib.animation.motion` (``f = (H / 2) / tan(fov / 2)``, pixel centres on integers); the frames are square,
where Disco's and Deforum's aspect-1 cameras give the same sideways shift. The default (``"deforum"``) camera is
checked through its own reprojection (an eye view is one 3D step of the eye's pose) and on the flat-plane disparity,
which its model and PyTorch3D's ``FoVPerspectiveCameras`` give alike.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from discolib.animation import motion
from discolib.animation.stereo import (
    DISCO_SPHERICAL_MAGNITUDE,
    anaglyph,
    eye_poses,
    eye_views,
    pose_to_motion,
    side_by_side,
    spherical_grid,
    spherical_projection,
    stereo_pair,
)
from discolib.config.settings import Settings
from discolib.io.files import save_png_atomic
from discolib.io.images import load_image
from discolib.io.video import VideoError, read_video_frames, stereo_to_video, video_info
from discolib.run.stereo import EyeWriter, eye_frame_path, missing_eye_frames, write_stereo_video

SCALE = 1.0 / 200.0  # Disco's TRANSLATION_SCALE


# ------------------------------------------------------------------------------------------- references (numpy)


def disco_eye_camera(eye: int, eye_angle_deg: float, ipd: float) -> tuple[np.ndarray, np.ndarray]:
    """Disco's ``generate_eye_views`` for eye 0 (left) / 1 (right): PyTorch3D ``R`` (row-vector convention) and
    ``T`` of the eye camera, ``X_view = X_world @ R + T``."""
    theta = eye_angle_deg * (math.pi / 180)
    ray_origin = math.cos(theta) * ipd / 2 * (-1.0 if eye == 0 else 1.0)
    ray_rotation = theta if eye == 0 else -theta
    translate = np.array([-ray_origin * SCALE, 0.0, 0.0])
    c, s = math.cos(ray_rotation), math.sin(ray_rotation)
    rot_y = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # euler_angles_to_matrix([0, a, 0], "XYZ")
    return rot_y, translate


def bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample ``img`` (C, H, W) at pixel coordinates (centres on integers), clamped to the edge pixels."""
    _, h, w = img.shape
    u = np.clip(u, 0, w - 1)
    v = np.clip(v, 0, h - 1)
    u0 = np.clip(np.floor(u).astype(int), 0, w - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, h - 2)
    fu, fv = u - u0, v - v0
    return (
        img[:, v0, u0] * (1 - fu) * (1 - fv)
        + img[:, v0, u0 + 1] * fu * (1 - fv)
        + img[:, v0 + 1, u0] * (1 - fu) * fv
        + img[:, v0 + 1, u0 + 1] * fu * fv
    )


def plane_eye_view(img: np.ndarray, depth: float, eye: int, eye_angle_deg: float, ipd: float, fov_deg: float):
    """The eye view of a picture on the plane ``z = depth`` (old camera): for each pixel of the eye, intersect its
    ray with the plane, project into the old camera and sample. Returns (view (C, H, W), source-inside mask)."""
    _, h, w = img.shape
    f = (h / 2) / math.tan(math.radians(fov_deg) / 2)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    rot, trans = disco_eye_camera(eye, eye_angle_deg, ipd)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    ray = np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u)], axis=-1)  # eye-view ray, z = 1
    # X_world = (X_view - T) @ R^T; with X_view = d * ray and z_world = depth: solve for d.
    ray_w = ray @ rot.T
    t_w = trans @ rot.T
    d = (depth + t_w[2]) / ray_w[..., 2]
    p = d[..., None] * ray_w - t_w
    us, vs = f * p[..., 0] / p[..., 2] + cx, f * p[..., 1] / p[..., 2] + cy
    inside = (us >= 0) & (us <= w - 1) & (vs >= 0) & (vs <= h - 1)
    return bilinear(img, us, vs), inside


def disco_spherical(img: np.ndarray, magnitude: float = -0.4) -> np.ndarray:
    """Disco's ``get_spherical_projection(H, W, centre 0, magnitude)`` then ``grid_sample(align_corners=True)``
    (bilinear, zeros outside), in numpy."""
    c, h, w = img.shape
    gy, gx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    dx, dy = 0 - gx, 0 - gy
    dist = np.sqrt(dx * dx + dy * dy)
    sx, sy = gx + dx * dist * magnitude, gy + dy * dist * magnitude
    u, v = (sx + 1) / 2 * (w - 1), (sy + 1) / 2 * (h - 1)  # align_corners=True
    padded = np.zeros((c, h + 2, w + 2))
    padded[:, 1:-1, 1:-1] = img
    u, v = np.clip(u + 1, 0, w + 1), np.clip(v + 1, 0, h + 1)  # beyond one pixel outside reads zeros anyway
    u0 = np.clip(np.floor(u).astype(int), 0, w)
    v0 = np.clip(np.floor(v).astype(int), 0, h)
    fu, fv = u - u0, v - v0
    return (
        padded[:, v0, u0] * (1 - fu) * (1 - fv)
        + padded[:, v0, u0 + 1] * fu * (1 - fv)
        + padded[:, v0 + 1, u0] * (1 - fu) * fv
        + padded[:, v0 + 1, u0 + 1] * fu * fv
    )


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth (3, H, W) image in [0, 1]: sums of low-frequency waves (bilinear sampling stays accurate)."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros((3, h, w))
    for c in range(3):
        for _ in range(3):
            a, b, p = rng.uniform(-0.35, 0.35, size=2).tolist() + [rng.uniform(0, 6.28)]
            out[c] += np.cos(a * u + b * v + p)
    return (out - out.min()) / (out.max() - out.min())


def as_tensor(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype).unsqueeze(0)


# ------------------------------------------------------------------------------------------- eye poses and views


@pytest.mark.parametrize(("angle", "ipd"), [(0.5, 5.0), (10.0, 3.0), (-2.0, 0.0), (0.0, 40.0)])
def test_eye_poses_are_disco_generate_eye_views(angle: float, ipd: float) -> None:
    rotation, translation = eye_poses(angle, ipd, dtype=torch.float64)
    for eye in (0, 1):
        rot, trans = disco_eye_camera(eye, angle, ipd)
        # do_3d_step hands translate = [-translation_x / 200, ...] to the same camera: translation_x = -200 T_x.
        assert translation[eye].tolist() == pytest.approx([-trans[0] / SCALE, 0.0, 0.0], abs=1e-12)
        # rotation_3d_y in degrees whose Ry is Disco's eye rotation.
        ry = math.radians(rotation[eye, 1].item())
        assert rotation[eye, 0].item() == 0.0 and rotation[eye, 2].item() == 0.0
        assert rot == pytest.approx(np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]]))
    # The left eye sits left (translation_x < 0: camera moves left) and turns right, inwards (rotation_3d_y > 0).
    if ipd:
        assert translation[0, 0] < 0 < translation[1, 0]
    if angle > 0:
        assert rotation[0, 1] > 0 > rotation[1, 1]


def test_eye_views_are_one_3d_step_of_each_eye_pose() -> None:
    h, w = 20, 28
    img = as_tensor(smooth_image(h, w), torch.float32)
    v, u = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    depth = (1.2 + 0.5 * u * v).view(1, 1, h, w)
    kw = {"fov_deg": 55.0, "padding_mode": "border", "sampling_mode": "bicubic"}
    for extra in ({"depth_refinement_steps": 2}, {"camera": "pinhole"}):
        left, right = eye_views(img, depth, 3.0, 8.0, spherical=False, reproject_kwargs=extra, **kw)
        half = math.cos(math.radians(3.0)) * 8.0 / 2
        for view, tx, ry in ((left, -half, 3.0), (right, half, -3.0)):
            want, _ = motion.reproject_3d(img, depth, rotation_deg=[0.0, ry, 0.0], translation=[tx, 0.0, 0.0], **kw, **extra)
            torch.testing.assert_close(view, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("camera", ["deforum", "pinhole"])
@pytest.mark.parametrize("depth", [1.0, 2.0])
def test_flat_plane_translation_is_a_known_disparity(depth: float, camera: str) -> None:
    # fov 90 on 32x32: f = 16 px. ipd 50 -> each eye moves 25 / 200 = 0.125 world units: 16 * 0.125 / depth px.
    # Disco's FoVPerspectiveCameras (aspect 1) moves a point at depth z by T_x / (z tan(fov / 2)) in NDC, i.e.
    # W / 2 * 0.125 / depth = the same pixels on a square frame.
    h = w = 32
    img_np = smooth_image(h, w, seed=1)
    img = as_tensor(img_np)
    plane = torch.full((1, 1, h, w), depth, dtype=torch.float64)
    left, right = eye_views(img, plane, 0.0, 50.0, fov_deg=90.0, spherical=False, reproject_kwargs={"camera": camera})
    shift = round(16 * 0.125 / depth)  # 2 px at depth 1, 1 px at depth 2
    assert shift == 16 * 0.125 / depth
    # Left eye (camera moved left): the picture moves right; right eye: left. Disparity 2 * shift.
    np.testing.assert_allclose(left[0, :, :, shift:].numpy(), img_np[:, :, : w - shift], atol=1e-9)
    np.testing.assert_allclose(right[0, :, :, : w - shift].numpy(), img_np[:, :, shift:], atol=1e-9)


@pytest.mark.parametrize(("angle", "ipd", "depth"), [(8.0, 0.0, 1.5), (0.5, 5.0, 1.0), (4.0, 30.0, 1.3)])
def test_pinhole_eye_views_match_the_plane_rederived_from_disco(angle: float, ipd: float, depth: float) -> None:
    # ipd 0: the eye angle alone rotates about y (a homography, independent of depth). Odd size: a centre row.
    h = w = 41
    img_np = smooth_image(h, w, seed=2)
    plane = torch.full((1, 1, h, w), depth, dtype=torch.float64)
    pinhole = {"camera": "pinhole", "depth_refinement_steps": 4}
    views = eye_views(as_tensor(img_np), plane, angle, ipd, fov_deg=50.0, spherical=False, reproject_kwargs=pinhole)
    for eye, view in enumerate(views):
        want, inside = plane_eye_view(img_np, depth, eye, angle, ipd, 50.0)
        assert inside.mean() > 0.7
        np.testing.assert_allclose(view[0].numpy()[:, inside], want[:, inside], atol=1e-6)
    if ipd == 0:  # a pure turn: the left eye's picture moves left, the right eye's right, by f tan(angle) at the centre
        f = (h / 2) / math.tan(math.radians(25.0))
        row = img_np[:, h // 2]
        x = np.arange(w) - (w - 1) / 2
        src = f * np.tan(np.arctan(x / f) + math.radians(angle)) + (w - 1) / 2  # on the centre row
        ok = (src >= 0) & (src <= w - 1)
        expect = np.stack([np.interp(src[ok], np.arange(w), ch) for ch in row])
        np.testing.assert_allclose(views[0][0, :, h // 2].numpy()[:, ok], expect, atol=1e-6)


@pytest.mark.parametrize("spherical", [False, True])
def test_left_and_right_are_mirror_images_of_a_symmetric_scene(spherical: bool) -> None:
    h, w = 24, 36
    half = smooth_image(h, w // 2, seed=3)
    img = np.concatenate([half, half[:, :, ::-1]], axis=2)
    u = np.abs(np.arange(w) - (w - 1) / 2)
    depth = np.broadcast_to(1.0 + 0.02 * u, (1, h, w))
    left, right = eye_views(as_tensor(img), as_tensor(depth), 2.0, 12.0, fov_deg=60.0, spherical=spherical)
    torch.testing.assert_close(left, right.flip(-1), atol=1e-9, rtol=0)
    assert (left - right).abs().max() > 0.05  # the eyes do differ


def test_spherical_projection_is_disco_get_spherical_projection() -> None:
    for h, w in ((17, 17), (18, 32)):
        img = smooth_image(h, w, seed=4)
        got = spherical_projection(as_tensor(img))[0].numpy()
        np.testing.assert_allclose(got, disco_spherical(img), atol=1e-9)
        # Centre kept, corners black (their source lies beyond the frame), magnitude 0 is the identity.
        assert np.all(got[:, 0, 0] == 0) and np.all(got[:, -1, -1] == 0)
        np.testing.assert_allclose(spherical_projection(as_tensor(img), 0.0)[0].numpy(), img, atol=1e-12)
    img = smooth_image(17, 17, seed=5)
    got = spherical_projection(as_tensor(img))[0].numpy()
    np.testing.assert_allclose(got[:, 8, 8], img[:, 8, 8], atol=1e-12)
    # Along the axes the source leaves the frame past |g| = (sqrt(1 + 4m) - 1) / (2m) = 0.765.
    edge = (math.sqrt(1 + 4 * DISCO_SPHERICAL_MAGNITUDE) - 1) / (2 * DISCO_SPHERICAL_MAGNITUDE)
    g = np.linspace(-1, 1, 17)
    assert np.all(got[:, 8, np.abs(g) > edge + 0.13] == 0) and np.all(got[:, 8, np.abs(g) < edge] > 0)
    assert spherical_grid(17, 17).shape == (1, 17, 17, 2)


def test_eye_views_batch_and_dtype(device: torch.device, dtype: torch.dtype, tol: dict) -> None:
    img = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    depth = torch.full((2, 1, 16, 20), 1.5, device=device, dtype=dtype)
    left, right = eye_views(img, depth)
    assert left.shape == right.shape == img.shape and left.dtype == dtype and left.device == img.device
    one_l, one_r = eye_views(img[1:], depth[1:])
    torch.testing.assert_close(left[1:], one_l, **tol)
    torch.testing.assert_close(right[1:], one_r, **tol)


def test_bad_inputs_are_refused() -> None:
    img, depth = torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(motion.MotionError, match="vr_ipd"):
        eye_views(img, depth, 0.5, float("nan"))
    with pytest.raises(motion.MotionError, match="fov_deg"):
        eye_views(img, depth, reproject_kwargs={"fov_deg": 30.0})
    with pytest.raises(motion.MotionError, match="depth batch"):
        eye_views(img, torch.ones(2, 1, 8, 8))
    with pytest.raises(motion.MotionError):
        eye_views(img, torch.ones(1, 3, 8, 8))


# ------------------------------------------------------------------------------------------- settings


def test_vr_settings_default_to_disco() -> None:
    anim = Settings().animation
    assert (anim.vr_mode, anim.vr_eye_angle, anim.vr_ipd) == (False, 0.5, 5.0)


# ------------------------------------------------------------------------------------------- eye frames


def _frames(n: int, h: int = 16, w: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.rand(1, 3, h, w, generator=g).mul(255).round().div(255) for _ in range(n)]


def _writer(run: Path) -> EyeWriter:
    def depth_fn(image: torch.Tensor) -> torch.Tensor:  # a depth that depends on the frame, as a model's does
        return 1.0 + image.mean(dim=1, keepdim=True)

    return EyeWriter(run, depth_fn=depth_fn, camera_fn=lambda i: {"fov_deg": 40.0 + i, "sampling_mode": "bicubic"})


def _bytes(run: Path, n: int) -> list[bytes]:
    return [eye_frame_path(run, e, i).read_bytes() for i in range(n) for e in ("l", "r")]


def test_eye_frames_are_written_deterministically_and_resume_byte_identically(tmp_path: Path) -> None:
    frames = _frames(4)
    runs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for run in runs[:2]:
        with _writer(run) as eyes:
            for i, f in enumerate(frames):
                assert eyes(i, f) == (run / "frames_l" / f"{i:06d}.png", run / "frames_r" / f"{i:06d}.png")
    assert _bytes(runs[0], 4) == _bytes(runs[1], 4)

    # An interrupted run: frames 0-3 written, the eyes of 1 and 3 lost (one eye of 3 only). Remade from the frames
    # as written (PNG read back), the eyes are the uninterrupted run's bytes.
    run = runs[2]
    for i, f in enumerate(frames):
        save_png_atomic(run / "frames" / f"{i:06d}.png", f)
    with _writer(run) as eyes:
        for i in (0, 2):
            eyes(i, frames[i])
        eyes.flush()
        eye_frame_path(run, "l", 3).parent.mkdir(exist_ok=True)
        eye_frame_path(run, "l", 3).write_bytes(eye_frame_path(runs[0], "l", 3).read_bytes())
        assert eyes.missing(4) == [1, 3] == missing_eye_frames(run, 4)
        assert eyes.missing(2) == [1]
        done = eyes.regenerate(eyes.missing(4), lambda i: load_image(run / "frames" / f"{i:06d}.png"))
    assert done == [1, 3] and missing_eye_frames(run, 4) == []
    assert _bytes(run, 4) == _bytes(runs[0], 4)


def test_eye_writer_reports_a_failed_write(tmp_path: Path) -> None:
    eyes = _writer(tmp_path)
    (tmp_path / "frames_r").rmdir()
    (tmp_path / "frames_r").write_text("not a folder")  # the right eye cannot be written
    eyes(0, _frames(1)[0])
    with pytest.raises(OSError, match="frames_r"):
        eyes.flush()
    eyes(1, _frames(1)[0])
    eyes.close(raise_errors=False)  # while another error is on its way out: waits, raises nothing
    assert eye_frame_path(tmp_path, "l", 1).is_file()


def test_eye_writer_from_settings_is_off_unless_vr_mode(tmp_path: Path) -> None:
    s = Settings()
    assert EyeWriter.from_settings(s, tmp_path, depth_fn=torch.ones_like, camera_fn=dict) is None
    s.animation.vr_mode, s.animation.vr_eye_angle, s.animation.vr_ipd = True, 1.5, 7.0
    eyes = EyeWriter.from_settings(s, tmp_path, depth_fn=torch.ones_like, camera_fn=dict)
    assert eyes is not None and (eyes.eye_angle_deg, eyes.ipd) == (1.5, 7.0)
    assert (tmp_path / "frames_l").is_dir() and (tmp_path / "frames_r").is_dir()


# ------------------------------------------------------------------------------------------- side-by-side video


def _solid(path: Path, rgb: tuple[int, int, int], h: int, w: int) -> Path:
    return save_png_atomic(path, np.full((h, w, 3), rgb, dtype=np.uint8))


def test_side_by_side_video_frame_count_size_and_halves(tmp_path: Path) -> None:
    h, w, n = 24, 32, 5
    run = tmp_path / "run"
    for i in range(n):
        _solid(eye_frame_path(run, "l", i), (230, 30, 30), h, w)
        _solid(eye_frame_path(run, "r", i), (30, 30, 230), h, w)
    _solid(eye_frame_path(run, "l", n), (0, 255, 0), h, w)  # a later frame: not in the video of n frames
    out = write_stereo_video(run, n, fps=12, threads=1)
    assert out == run / "video_sbs.mp4"
    info = video_info(out)
    assert (info["width"], info["height"], info["n_frames"], info["codec"]) == (2 * w, h, n, "h264")
    decoded = list(read_video_frames(out))
    assert len(decoded) == n
    for frame in decoded:
        lh, rh = frame[0, :, 4:-4, 4 : w - 4], frame[0, :, 4:-4, w + 4 : -4]
        assert lh.mean(dim=(1, 2)).mul(255).sub(torch.tensor([230.0, 30, 30])).abs().max() < 8
        assert rh.mean(dim=(1, 2)).mul(255).sub(torch.tensor([30.0, 30, 230])).abs().max() < 8
    assert write_stereo_video(run, n, fps=12, final=False).name == "preview_sbs.mp4"


def test_side_by_side_from_lists_odd_size_and_gif(tmp_path: Path) -> None:
    h, w = 15, 10
    left = [_solid(tmp_path / f"left_{i}.png", (200, 200, 200), h, w) for i in range(3)]
    right = [_solid(tmp_path / "r" / f"{9 - i:06d}.png", (10, 10, 10), h, w) for i in range(3)]  # not a sequence
    out = stereo_to_video(left, right, tmp_path / "x.mp4", fps=10)
    info = video_info(out)
    assert (info["width"], info["height"], info["n_frames"]) == (2 * w, h + 1, 3)
    frame = next(read_video_frames(out))
    assert frame[0, :, :, : w - 2].mean() > 0.7 and frame[0, :, :, w + 2 :].mean() < 0.1
    gif = stereo_to_video(left, right, tmp_path / "x.gif", fps=10)
    assert video_info(gif)["width"] == 2 * w and video_info(gif)["n_frames"] == 3


def test_side_by_side_refuses_mismatched_eyes(tmp_path: Path) -> None:
    a = [_solid(tmp_path / f"a{i}.png", (1, 2, 3), 8, 8) for i in range(2)]
    b = [_solid(tmp_path / f"b{i}.png", (1, 2, 3), 8, 10) for i in range(2)]
    with pytest.raises(VideoError, match="2 frames and the right eye 1"):
        stereo_to_video(a, b[:1], tmp_path / "x.mp4", fps=10)
    with pytest.raises(VideoError, match="8x8 and the right eye's 10x8"):
        stereo_to_video(a, b, tmp_path / "x.mp4", fps=10)
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------ one photo: pinhole stereo pairs and outputs


def _focal_px(height: int, fov_deg: float) -> float:
    """The pinhole's focal length in pixels for a vertical field of view (re-derived: half height over tan(fov/2))."""
    return (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def _stripe_photo(h: int, w: int, centre: float, sigma: float = 3.0) -> torch.Tensor:
    """A smooth vertical bright stripe (Gaussian across x) on black, (1, 3, H, W)."""
    x = torch.arange(w, dtype=torch.float64)
    profile = torch.exp(-0.5 * ((x - centre) / sigma) ** 2)
    return profile.view(1, 1, 1, w).expand(1, 3, h, w).float().contiguous()


def _centroid_x(image: torch.Tensor, rows: slice = slice(None)) -> float:
    band = image[0, 0, rows].double()
    x = torch.arange(band.shape[-1], dtype=torch.float64)
    return float((band * x).sum() / band.sum())


def _pose(centre: tuple[float, float, float] = (0.0, 0.0, 0.0), rotation_deg=(0.0, 0.0, 0.0)) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = motion.rotation_matrix_3d(torch.tensor([rotation_deg], dtype=torch.float64))[0]
    pose[:3, 3] = torch.tensor(centre, dtype=torch.float64)
    return pose


def test_stereo_pair_integer_disparity_is_a_pure_shift() -> None:
    h, w = 64, 96
    photo = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    depth_value, ipd, fov = 2.0, 0.5, 90.0
    disparity = _focal_px(h, fov) * ipd / depth_value  # 32 * 0.5 / 2 = 8 px, 4 per eye
    assert disparity == pytest.approx(8.0)
    half = 4
    depth = torch.full((1, 1, h, w), depth_value)
    left, right, (mask_l, mask_r) = stereo_pair(photo, depth, torch.eye(4), fov_deg=fov, ipd=ipd)
    # The left eye sits left of the centre: the plane appears shifted right in it, and left in the right eye.
    torch.testing.assert_close(left[..., half:], photo[..., :-half], rtol=0, atol=1e-5)
    torch.testing.assert_close(right[..., :-half], photo[..., half:], rtol=0, atol=1e-5)
    # Disoccluded: the columns neither eye's source covers, on the outer side of each.
    assert mask_l[..., :half].all() and not mask_l[..., half:].any()
    assert mask_r[..., -half:].all() and not mask_r[..., :-half].any()


@pytest.mark.parametrize(("fov", "depth_value", "ipd"), [(60.0, 3.0, 0.4), (40.0, 5.0, 0.25), (75.0, 1.5, 0.1)])
def test_stereo_pair_disparity_matches_the_pinhole(fov: float, depth_value: float, ipd: float) -> None:
    h, w = 48, 128
    photo = _stripe_photo(h, w, centre=63.5)
    depth = torch.full((1, 1, h, w), depth_value)
    left, right, _ = stereo_pair(photo, depth, torch.eye(4), fov_deg=fov, ipd=ipd)
    expected = _focal_px(h, fov) * ipd / depth_value
    measured = _centroid_x(left) - _centroid_x(right)
    assert measured == pytest.approx(expected, abs=0.03), (measured, expected)
    # The eyes are symmetric about the centre camera.
    assert (_centroid_x(left) + _centroid_x(right)) / 2 == pytest.approx(63.5, abs=0.03)


def test_nearer_plane_has_larger_disparity() -> None:
    h, w, fov, ipd = 64, 128, 50.0, 0.3
    photo = _stripe_photo(h, w, centre=63.5)
    depth = torch.full((1, 1, h, w), 4.0)
    depth[:, :, : h // 2] = 1.0  # top half near, bottom half far
    left, right, _ = stereo_pair(photo, depth, torch.eye(4), fov_deg=fov, ipd=ipd, depth_refinement_steps=3)
    f = _focal_px(h, fov)
    top, bottom = slice(4, h // 2 - 4), slice(h // 2 + 4, h - 4)  # away from the step
    assert _centroid_x(left, top) - _centroid_x(right, top) == pytest.approx(f * ipd / 1.0, abs=0.05)
    assert _centroid_x(left, bottom) - _centroid_x(right, bottom) == pytest.approx(f * ipd / 4.0, abs=0.05)


def test_stereo_pair_follows_the_camera_pose() -> None:
    h, w, fov, ipd, depth_value = 48, 160, 60.0, 0.2, 4.0
    f = _focal_px(h, fov)
    photo = _stripe_photo(h, w, centre=79.5)
    depth = torch.full((1, 1, h, w), depth_value)
    # Moved 1 forward: the plane is at 3, so the disparity grows to f * ipd / 3 (the stripe stays centred).
    left, right, _ = stereo_pair(photo, depth, _pose((0.0, 0.0, 1.0)), fov_deg=fov, ipd=ipd)
    assert _centroid_x(left) - _centroid_x(right) == pytest.approx(f * ipd / 3.0, abs=0.05)
    # Moved 0.5 right (x right in motion's frame): both eyes see the stripe f * 0.5 / 4 px further left.
    left, right, _ = stereo_pair(photo, depth, _pose((0.5, 0.0, 0.0)), fov_deg=fov, ipd=ipd)
    assert (_centroid_x(left) + _centroid_x(right)) / 2 == pytest.approx(79.5 - f * 0.5 / depth_value, abs=0.05)
    assert _centroid_x(left) - _centroid_x(right) == pytest.approx(f * ipd / depth_value, abs=0.05)
    # Panned right by 5 degrees: content moves left by f * tan(5 deg) at the centre, whatever the depth.
    left, right, _ = stereo_pair(photo, depth, _pose(rotation_deg=(0.0, 5.0, 0.0)), fov_deg=fov, ipd=0.0)
    torch.testing.assert_close(left, right)
    assert _centroid_x(left) == pytest.approx(79.5 - f * math.tan(math.radians(5.0)), abs=0.1)


def test_pose_to_motion_round_trip() -> None:
    rotation = (12.0, -31.0, 47.0)
    centre = (0.3, -0.2, 0.5)
    pose = _pose(centre, rotation)
    rotation_deg, translation = pose_to_motion(pose)
    torch.testing.assert_close(rotation_deg, torch.tensor([rotation], dtype=torch.float64))
    # motion: X_new = R^T X_old + t, t = (-tx, ty, -tz) / 200; the camera's centre maps to the new origin.
    rot, t = motion.camera_motion(rotation_deg, translation, dtype=torch.float64)
    torch.testing.assert_close(rot[0], pose[:3, :3])
    origin = rot[0].T @ torch.tensor(centre, dtype=torch.float64) + t[0]
    torch.testing.assert_close(origin, torch.zeros(3, dtype=torch.float64))
    # Sideways only: translation_x > 0 is "camera moves right", in 1/200 units.
    _, side = pose_to_motion(_pose((0.1, 0.0, 0.0)))
    torch.testing.assert_close(side, torch.tensor([[20.0, 0.0, 0.0]], dtype=torch.float64))
    # Gimbal lock (90 degrees about y) still gives a rotation that rebuilds the matrix.
    locked = _pose(rotation_deg=(20.0, 90.0, 0.0))
    rebuilt = motion.rotation_matrix_3d(pose_to_motion(locked)[0])[0]
    torch.testing.assert_close(rebuilt, locked[:3, :3])


def test_stereo_pair_rejects_bad_poses() -> None:
    photo, depth = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    with pytest.raises(motion.MotionError, match="4, 4"):
        stereo_pair(photo, depth, torch.eye(3), fov_deg=50.0, ipd=0.1)
    skew = torch.eye(4)
    skew[0, 1] = 0.5
    with pytest.raises(motion.MotionError, match="rotation"):
        stereo_pair(photo, depth, skew, fov_deg=50.0, ipd=0.1)
    with pytest.raises(motion.MotionError, match="ipd"):
        stereo_pair(photo, depth, torch.eye(4), fov_deg=50.0, ipd=-1.0)


def test_side_by_side() -> None:
    left, right = torch.rand(1, 3, 10, 14), torch.rand(1, 3, 10, 14)
    both = side_by_side(left, right)
    assert both.shape == (1, 3, 10, 28)
    torch.testing.assert_close(both[..., :14], left)
    torch.testing.assert_close(both[..., 14:], right)
    with pytest.raises(motion.MotionError, match="same shape"):
        side_by_side(left, right[..., :-1])


def test_anaglyph_color_takes_red_from_the_left_eye() -> None:
    left, right = torch.rand(1, 3, 8, 9), torch.rand(1, 3, 8, 9)
    out = anaglyph(left, right, mode="color")
    assert out.shape == (1, 3, 8, 9)
    torch.testing.assert_close(out[:, 0], left[:, 0])
    torch.testing.assert_close(out[:, 1:], right[:, 1:])


def _srgb_decode(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055)


def test_anaglyph_dubois_matches_the_published_matrices() -> None:
    # E. Dubois, "Conversion of a stereo pair to anaglyph with the least-squares projection method" (2009),
    # red-cyan, applied in linear light: typed in here, independently of the module's constants.
    m_left = np.array([[0.437, 0.449, 0.164], [-0.062, -0.062, -0.024], [-0.048, -0.050, -0.017]])
    m_right = np.array([[-0.011, -0.032, -0.007], [0.377, 0.761, 0.009], [-0.026, -0.093, 1.234]])
    gen = torch.Generator().manual_seed(2)
    left, right = torch.rand(1, 3, 6, 7, generator=gen), torch.rand(1, 3, 6, 7, generator=gen)
    out = anaglyph(left, right)
    assert out.shape == (1, 3, 6, 7) and out.min() >= 0 and out.max() <= 1
    lin_l = _srgb_decode(left[0].double().numpy().reshape(3, -1))
    lin_r = _srgb_decode(right[0].double().numpy().reshape(3, -1))
    expected = _srgb_encode(np.clip(m_left @ lin_l + m_right @ lin_r, 0, 1)).reshape(3, 6, 7)
    np.testing.assert_allclose(out[0].double().numpy(), expected, atol=1e-5)
    # A red left eye with a black right eye lights only the red channel (what the red filter passes).
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    only_red = anaglyph(red, torch.zeros_like(red))
    assert only_red[0, 0].min() > 0.5 and only_red[0, 1:].max() == 0
    with pytest.raises(motion.MotionError, match="mode"):
        anaglyph(left, right, mode="green")  # type: ignore[arg-type]
