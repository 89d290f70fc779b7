"""Animating one photo: camera paths, poses, the z-buffered warp of the original photo, the fill, the depth cache.

The scene is made here: two fronto-parallel planes (a background at depth 4 filling the photo, a foreground
rectangle at depth 1.5), photographed by the pinhole of :mod:`discolib.animation.photo`. The reference below
re-derives, in numpy, what each target pixel sees: the target ray ``R K_k^-1 [u, 1]`` from the camera centre ``c``
hits the plane ``Z`` at ``c + s R r`` (``s = (Z - c_z) / (R r)_z``), which projects to the photo pixel
``f X / Z + c_pix``; the foreground wins where its hit lies on its rectangle, the background is visible where its
hit lies in the photo and not behind the foreground, anything else is revealed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from test_stereo import bilinear  # the same numpy bilinear sampler (grid_sample, align_corners=False)

from discolib.animation import photo as P
from discolib.animation.motion import rotation_matrix_3d
from discolib.errors import InputError

H, W = 40, 48
FOV = P.PHOTO_FOV_DEG
Z_FG, Z_BG = 1.5, 4.0
FG_ROWS, FG_COLS = (14, 25), (18, 31)  # inclusive pixel ranges of the foreground rectangle


def focal(h: int = H, fov: float = FOV) -> float:
    return (h / 2) / math.tan(math.radians(fov) / 2)


def scene_depth(scale: float = 1.0) -> torch.Tensor:
    d = np.full((H, W), Z_BG, np.float32)
    d[FG_ROWS[0] : FG_ROWS[1] + 1, FG_COLS[0] : FG_COLS[1] + 1] = Z_FG
    return torch.from_numpy(d * scale).view(1, 1, H, W)


def random_photo(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((1, 3, H, W), dtype=np.float32))


def smooth_photo() -> torch.Tensor:
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    chans = [0.5 + 0.4 * np.sin(u * 0.21 + k) * np.cos(v * 0.17 + 2 * k) for k in range(3)]
    img = np.stack(chans)
    img[:, FG_ROWS[0] : FG_ROWS[1] + 1, FG_COLS[0] : FG_COLS[1] + 1] = np.array([0.9, 0.2, 0.1])[:, None, None]
    return torch.from_numpy(img[None].astype(np.float32))


def reference(photo: torch.Tensor, pose: torch.Tensor, target_fov: float = FOV) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0 foreground, 1 background, 2 revealed) and the expected frame, re-derived for the two planes."""
    f, f_out = focal(), focal(H, target_fov)
    cx, cy = (W - 1) / 2, (H - 1) / 2
    m = pose.numpy()
    r, c = m[:3, :3], m[:3, 3]
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    ray = np.stack([(u - cx) / f_out, (v - cy) / f_out, np.ones_like(u)])
    d = np.einsum("ij,jhw->ihw", r, ray)

    def hit(z: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = (z - c[2]) / d[2]
        x = c[0] + s * d[0]
        y = c[1] + s * d[1]
        return f * x / z + cx, f * y / z + cy, s

    def on_fg(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ((x >= FG_COLS[0] - 0.5) & (x <= FG_COLS[1] + 0.5) & (y >= FG_ROWS[0] - 0.5) & (y <= FG_ROWS[1] + 0.5))

    fx, fy, fs = hit(Z_FG)
    bx, by, bs = hit(Z_BG)
    fg = (fs > 0) & on_fg(fx, fy)
    bg_in = (bs > 0) & (bx >= -0.5) & (bx <= W - 0.5) & (by >= -0.5) & (by <= H - 0.5) & ~on_fg(bx, by)
    labels = np.where(fg, 0, np.where(bg_in, 1, 2))
    img = photo[0].numpy().astype(np.float64)
    expected = np.where(fg[None], bilinear(img, fx, fy), bilinear(img, bx, by))
    return labels, expected


def edge_band(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels within ``width`` of a change of label (where the 2x2 splat may dilate a foreground edge)."""
    change = np.zeros_like(labels, bool)
    change[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    change[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    change[1:, :] |= labels[1:, :] != labels[:-1, :]
    change[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return ndimage.binary_dilation(change, iterations=width)


def preset_poses(name: str, depth_range: tuple[float, float] = (Z_FG, Z_BG), frames: int = 8) -> tuple[torch.Tensor, np.ndarray]:
    sched = P.camera_preset(name, seconds=frames / 8, fps=8, depth_range=depth_range)
    return P.absolute_poses(sched, frames), P.fov_values(sched, frames)


@pytest.mark.parametrize(("preset", "frame"), [("pan", 7), ("orbit", 7), ("dolly", 7), ("zoom", 7), ("swing", 2)])
def test_unrevealed_pixels_are_the_photo_reprojected(preset: str, frame: int) -> None:
    photo, depth = random_photo(), scene_depth()
    poses, fovs = preset_poses(preset)
    pose, fov = poses[frame], float(fovs[frame])
    out, mask = P.warp_photo(photo, depth, pose, FOV, target_fov_deg=fov)
    labels, expected = reference(photo, pose, fov)
    keep = ~edge_band(labels)
    assert keep.mean() > 0.5
    assert np.array_equal(mask[0, 0].numpy()[keep], labels[keep] == 2)
    seen = keep & (labels != 2)
    np.testing.assert_allclose(out[0].numpy()[:, seen], expected[:, seen], atol=2e-4)


def test_sideways_move_reveals_the_background_behind_the_edge() -> None:
    photo, depth = random_photo(1), scene_depth()
    pose = P.absolute_poses({"translation_x": "0: (20)", "translation_y": "0: (-4)"}, 8)[-1]
    out, mask = P.warp_photo(photo, depth, pose, FOV)
    labels, expected = reference(photo, pose)
    keep = ~edge_band(labels)
    border = np.zeros_like(keep)
    border[[0, -1], :] = border[:, [0, -1]] = True
    # Revealed beside the foreground (not at the frame's border): the background the foreground hid in the photo.
    behind = ndimage.binary_propagation(border & (labels == 2), mask=labels == 2)
    disoccluded = keep & (labels == 2) & ~behind
    assert disoccluded.sum() > 40
    assert mask[0, 0].numpy()[disoccluded].all()
    assert np.array_equal(mask[0, 0].numpy()[keep], labels[keep] == 2)
    seen = keep & (labels != 2)
    np.testing.assert_allclose(out[0].numpy()[:, seen], expected[:, seen], atol=2e-4)


def test_per_plane_motion_matches_the_camera_path() -> None:
    """Colour = pixel coordinate: a camera moved right by t shows, on a plane at depth Z, the photo at u + f t / Z."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    photo = torch.from_numpy(np.stack([u / W, v / H, np.zeros_like(u)])[None])
    n = 8
    poses = P.absolute_poses({"translation_x": "0: (5)"}, n)
    t = 5 * 7 / 200  # world units after 7 increments
    np.testing.assert_allclose(poses[-1, :3, 3].numpy(), [t, 0, 0], atol=1e-12)
    out, mask = P.warp_photo(photo, scene_depth(), poses[-1], FOV)
    labels, _ = reference(photo, poses[-1])
    keep = ~edge_band(labels) & ~mask[0, 0].numpy()
    shift = out[0, 0].numpy() * W - u
    for label, z in ((0, Z_FG), (1, Z_BG)):
        sel = keep & (labels == label) & (u + focal() * t / z < W - 1)  # (not clamped at the photo's border)
        assert sel.sum() > 20
        np.testing.assert_allclose(shift[sel], focal() * t / z, atol=1e-3)
    np.testing.assert_allclose((out[0, 1].numpy() * H - v)[keep], 0, atol=1e-3)


def test_pure_rotation_reveals_only_what_leaves_the_frame() -> None:
    """Revealed = exactly the pixels whose homography source K R K^-1 u lies outside the photo (pixels within
    1e-3 of that boundary are not judged); no disocclusion whatever the depth."""
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = rotation_matrix_3d(torch.tensor([[-2.0, 3.0, 1.0]], dtype=torch.float64))[0]
    f = focal()
    cx, cy = (W - 1) / 2, (H - 1) / 2
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.einsum("ij,jhw->ihw", pose[:3, :3].numpy(), np.stack([(u - cx) / f, (v - cy) / f, np.ones_like(u)]))
    sx, sy = f * d[0] / d[2] + cx, f * d[1] / d[2] + cy
    outside = (sx < -0.5) | (sx > W - 0.5) | (sy < -0.5) | (sy > H - 0.5)
    dist = np.minimum.reduce([np.abs(sx + 0.5), np.abs(sx - W + 0.5), np.abs(sy + 0.5), np.abs(sy - H + 0.5)])
    judged = dist > 1e-3
    assert outside.sum() > 20 and (~outside).sum() > 0.5 * H * W
    for depth in (scene_depth(), torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(1)) * 5 + 0.5):
        _, mask = P.warp_photo(random_photo(), depth, pose, FOV)
        assert np.array_equal(mask[0, 0].numpy()[judged], outside[judged])


@pytest.mark.parametrize("preset", P.CAMERA_PRESETS)
def test_presets_scale_with_the_depth_range(preset: str) -> None:
    """The same scene 10x larger (and 10x farther) gives the same frames: presets are sized to the depth range."""
    photo = random_photo(3)
    for k in (3, 7):
        outs = []
        for scale in (1.0, 10.0):
            poses, fovs = preset_poses(preset, (Z_FG * scale, Z_BG * scale))
            outs.append(P.warp_photo(photo, scene_depth(scale), poses[k], FOV, target_fov_deg=float(fovs[k])))
        (a, ma), (b, mb) = outs
        assert (ma != mb).float().mean() < 0.005
        same = ~(ma | mb).expand_as(a)
        torch.testing.assert_close(a[same], b[same], atol=1e-3, rtol=0)
    poses, _ = preset_poses(preset)
    if preset != "swing":  # every preset moves the camera (swing returns to the start at the last frame)
        assert not torch.allclose(poses[-1], torch.eye(4, dtype=torch.float64))


def test_absolute_poses_compose_the_increments() -> None:
    n = 6
    poses = P.absolute_poses({"rotation_3d_y": "0: (2)", "translation_z": "0: (10)"}, n)
    assert torch.equal(poses[0], torch.eye(4, dtype=torch.float64))
    m = np.eye(4)
    b = math.radians(2)
    r = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    t = np.array([0.0, 0.0, -10 / 200])  # camera_motion: t = (-tx, ty, -tz) / 200
    step = np.eye(4)
    step[:3, :3] = r
    step[:3, 3] = -r @ t
    for k in range(1, n):
        m = m @ step
        np.testing.assert_allclose(poses[k].numpy(), m, atol=1e-12)
    # Forward along the camera's own (turning) axis: the first step moves the camera straight ahead by 0.05.
    np.testing.assert_allclose(poses[1, :3, 3].numpy(), r @ [0, 0, 0.05], atol=1e-12)


def test_fill_changes_only_masked_pixels() -> None:
    photo, depth = smooth_photo(), scene_depth()
    poses, _ = preset_poses("pan")
    frame, mask = P.warp_photo(photo, depth, poses[-1], FOV)
    assert mask.sum() > 10
    state = P.FillState(P.background_layer(photo, depth, FOV))
    for st in (state.at(poses[-1]), None):
        out, _ = P.fill_revealed(frame, mask, st)
        keep = ~mask.expand_as(frame)
        assert torch.equal(out[keep], frame[keep])
        assert not torch.equal(out[~keep], frame[~keep])
        assert out.shape == frame.shape and bool(torch.isfinite(out).all())


def test_filled_background_is_stable_across_frames() -> None:
    """The fill is the background layer re-warped: between consecutive frames the filled pixels both frames share
    change by less than 0.03 on average (the smooth photo's own motion is ~0.01 per frame)."""
    photo, depth = smooth_photo(), scene_depth()
    n = 24
    poses, _ = preset_poses("pan", frames=n)
    state = P.FillState(P.background_layer(photo, depth, FOV))
    prev = None
    diffs = []
    for k in range(n // 2, n):
        frame, mask = P.warp_photo(photo, depth, poses[k], FOV)
        out, state = P.fill_revealed(frame, mask, state.at(poses[k]))
        if prev is not None and (both := (mask & prev[1])[0, 0]).sum() > 5:
            diffs.append(float((out - prev[0])[0][:, both].abs().mean()))
        prev = (out, mask)
    assert len(diffs) >= 5
    assert max(diffs) < 0.03


def test_background_layer_pushes_foreground_edges_back() -> None:
    photo, depth = smooth_photo(), scene_depth()
    layer = P.background_layer(photo, depth, FOV)
    m = layer.margin
    d = layer.depth[0, 0, m : m + H, m : m + W]
    c = layer.color[0, :, m : m + H, m : m + W]
    # The foreground's rim now lies at the background's depth and takes no foreground colour (red 0.9, green 0.2).
    rim = (d == Z_BG) & (scene_depth()[0, 0] == Z_FG)
    assert rim.sum() > 10
    assert float((c[1][rim] - 0.2).abs().min()) > 0.05 or float(c[0][rim].max()) < 0.9 - 1e-3
    torch.testing.assert_close(c[:, ~rim & (scene_depth()[0, 0] == Z_BG)], photo[0][:, ~rim & (scene_depth()[0, 0] == Z_BG)])


def test_camera_path_file_is_validated(tmp_path) -> None:
    good = tmp_path / "path.json"
    good.write_text(json.dumps({"translation_z": "0: (1), 10: (3)", "rotation_3d_y": 0.5}))
    sched = P.load_camera_path(good, n_frames=12)
    assert sched["translation_z"] == "0: (1), 10: (3)" and sched["rotation_3d_y"] == "0: (0.5)"
    assert sched["translation_x"] == "0: (0)" and set(sched) == set(P.CAMERA_KEYS)
    cases = {
        "typo.json": ({"translation_zz": "0: (1)"}, "did you mean 'translation_z'"),
        "expr.json": ({"rotation_3d_x": "0: (sin(t) +)"}, "rotation_3d_x"),
        "list.json": (["0: (1)"], "JSON object"),
        "type.json": ({"translation_x": [1]}, "keyframe string"),
        "fov.json": ({"fov": "0: (200)"}, "fov"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(data))
        with pytest.raises(InputError) as info:
            P.load_camera_path(path, n_frames=12)
        message = str(info.value)
        assert words in message and "\n" not in message and name in message
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError):
        P.load_camera_path(tmp_path / "bad.json", n_frames=12)
    with pytest.raises(P.CameraPathError, match="did you mean 'orbit'"):
        P.camera_preset("orbt", seconds=1, fps=8, depth_range=(1, 2))
    with pytest.raises(P.CameraPathError, match="seconds"):
        P.camera_preset("dolly", seconds=0, fps=8, depth_range=(1, 2))


def test_depth_edges_snap_to_the_photo_edge() -> None:
    """A depth step blurred into a 6-pixel ramp becomes a step again, at the photo's edge."""
    h, w = 32, 64
    ramp = np.clip((np.arange(w) - 29.5) / 6 + 0.5, 0, 1)
    depth = torch.from_numpy(np.tile(1 + 3 * ramp, (h, 1)).astype(np.float32)).view(1, 1, h, w)
    img = torch.zeros(1, 3, h, w)
    img[..., 30:] = 1.0
    out = P.refine_depth_edges(depth, img)[0, 0]
    assert float((out[:, :30] - 1).abs().max()) < 0.1
    assert float((out[:, 30:] - 4).abs().max()) < 0.1


def test_world_depth_and_range() -> None:
    rel = np.linspace(1, 2, 50, dtype=np.float32).reshape(5, 10)  # linear in disparity, nearest 1
    z = P.world_depth(rel)
    assert z.min() == pytest.approx(1.0) and z.max() == pytest.approx(P.FAR_OVER_NEAR)
    assert np.all(np.diff(z.ravel()) > 0)  # order kept: farther stays farther
    np.testing.assert_array_equal(P.world_depth(np.full((4, 4), 3.0)), np.ones((4, 4), np.float32))
    near, far = P.depth_range(z)
    assert 1.0 <= near < far <= P.FAR_OVER_NEAR


def test_depth_is_cached_per_photo(tmp_path, monkeypatch) -> None:
    from discolib.run import photo as run_photo

    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path))
    loads = []
    real = run_photo._load_estimator

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_photo, "_load_estimator", counting)
    photo = smooth_photo()
    first = run_photo.photo_depth(photo, "constant")
    second = run_photo.photo_depth(photo, "constant")
    assert len(loads) == 1
    np.testing.assert_array_equal(first, second)
    path = run_photo.depth_cache_path(photo, "constant", None)
    assert path.parent == tmp_path / "depth" and path.suffix == ".npy"
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(np.load(fh, allow_pickle=False), first)
    run_photo.photo_depth(photo, "constant:2")  # another model: another key
    run_photo.photo_depth(photo[..., :32], "constant")  # another photo: another key
    assert len(loads) == 3


def test_revealed_strip_is_filled_from_the_background_not_the_foreground() -> None:
    """With the band sized by reveal_reach, the strip a sideways move uncovers takes the background layer's
    colours: none of its pixels is the foreground's red."""
    photo, depth = smooth_photo(), scene_depth()
    n = 8
    poses = P.absolute_poses({"translation_x": "0: (20)"}, n)
    reach = P.reveal_reach(poses, (Z_FG, Z_BG), FOV, (H, W))
    assert 5 <= reach <= 0.2 * max(H, W)
    state = P.FillState(P.background_layer(photo, depth, FOV, reach=reach))
    frame, mask = P.warp_photo(photo, depth, poses[-1], FOV)
    labels, _ = reference(photo, poses[-1])
    border = np.zeros_like(labels, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    behind = ndimage.binary_propagation(border & (labels == 2), mask=labels == 2)
    strip = (labels == 2) & ~behind & ~edge_band(labels)
    assert strip.sum() > 20
    out, _ = P.fill_revealed(frame, mask, state.at(poses[-1]))
    red = torch.tensor([0.9, 0.2, 0.1]).view(3, 1)
    distance = (out[0][:, torch.from_numpy(strip)] - red).abs().amax(dim=0)
    assert float(distance.min()) > 0.15


def test_splat_index_is_exact_past_two_to_the_24() -> None:
    # A 2100x8200 frame: its last pixel's flat index is past 2^24, where float32 loses whole units.
    ho, wo = 2100, 8200
    ty = torch.tensor([2099.0, 2099.0, 2045.0, -3.0, 5000.0])
    tx = torch.tensor([8199.0, 8197.0, 8193.0, -7.0, 9000.0])
    expected = [2099 * wo + 8199, 2099 * wo + 8197, 2045 * wo + 8193, 0, ho * wo - 1]
    assert ((ty[:3] * wo + tx[:3]).long().tolist() != expected[:3])  # the float32 product is off here
    idx = P._splat_index(tx, ty, ho, wo)
    assert idx.dtype == torch.int64 and idx.tolist() == expected


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ('{"translation_x": 1' + "0" * 400 + "}", "translation_x"),
        ('{"translation_z": "0: (1e308)"}', "translation_z"),
        ('{"rotation_3d_y": "0: (720)"}', "rotation_3d_y"),
        ('{"translation_y": "0: (1e307 * t)"}', "translation_y"),
    ],
)
def test_camera_path_values_are_bounded(tmp_path, data, key) -> None:
    path = tmp_path / "huge.json"
    path.write_text(data)
    with pytest.raises(P.CameraPathError) as info:
        P.load_camera_path(path, n_frames=12)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and key in message


def test_poses_and_reveal_reach_stay_finite() -> None:
    # The largest steps allowed, compounded: poses stay finite; a non-finite pose gives the widest strip, no error.
    poses = P.absolute_poses({"translation_x": "0: (1000000)", "rotation_3d_y": "0: (360)"}, 100)
    assert bool(torch.isfinite(poses).all())
    wild = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    wild[1, 0, 3] = 1e308
    assert P.reveal_reach(wild, (1e-300, 1.0), FOV, (H, W)) == int(0.2 * max(H, W))


@pytest.mark.parametrize("hw", [(16, 2048), (2048, 16), (24, 3000), (17, 1100)])
def test_depth_edges_on_a_thin_photo(hw) -> None:
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(1, 1, *hw, generator=g) + 1.0
    out = P.refine_depth_edges(depth, torch.rand(1, 3, *hw, generator=g))
    assert out.shape == depth.shape and float(out.min()) >= 1.0 and float(out.max()) <= 2.0


def test_composition_order_with_a_turning_camera() -> None:
    # Yaw that changes every frame plus a forward step: M_k = S_1 ... S_k; the reversed product differs.
    sched = {"rotation_3d_y": "0: (0), 1: (2 * t)", "translation_z": "0: (0), 1: (40)"}
    n = 5
    poses = P.absolute_poses(sched, n)
    steps = []
    for k in range(n):
        r = rotation_matrix_3d(torch.tensor([[0.0, 2.0 * k, 0.0]], dtype=torch.float64))[0]  # degrees
        t = torch.tensor([0.0, 0.0, -40.0 / 200.0 if k else 0.0], dtype=torch.float64)  # settings hold -t_z * 200
        s = torch.eye(4, dtype=torch.float64)
        s[:3, :3] = r
        s[:3, 3] = -(r @ t)
        steps.append(s)
    forward = torch.eye(4, dtype=torch.float64)
    backward = torch.eye(4, dtype=torch.float64)
    for k in range(1, n):
        forward = forward @ steps[k]
        backward = steps[k] @ backward
    torch.testing.assert_close(poses[-1], forward)
    assert not torch.allclose(poses[-1], backward, atol=1e-6)


def _fake_estimator(values: torch.Tensor):
    class Fake:
        metric = False

        def __call__(self, photo: torch.Tensor) -> torch.Tensor:
            return values.to(photo.device).expand(1, 1, *photo.shape[-2:]).clone()

    return Fake()


def test_random_weights_depth_is_never_cached(tmp_path, monkeypatch) -> None:
    from discolib.errors import WeightsUnavailable
    from discolib.models import load as model_load
    from discolib.run import photo as run_photo

    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path))
    photo = smooth_photo()
    h, w = photo.shape[-2:]
    noise = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(3))
    ramp = torch.linspace(0.0, 1.0, w).view(1, 1, 1, w).expand(1, 1, h, w)

    def unavailable(*args, **kwargs):
        raise WeightsUnavailable("offline")

    monkeypatch.setattr(run_photo, "load_depth", unavailable)
    monkeypatch.setattr(model_load, "load_depth", unavailable)
    monkeypatch.setattr(model_load, "random_depth_anything_small", lambda *a, **k: _fake_estimator(noise))
    with pytest.warns(UserWarning, match="RANDOM"):
        random_depth = run_photo.photo_depth(photo, run_photo.DEFAULT_DEPTH_MODEL, random_weights=True)
    assert not list(tmp_path.rglob("*.npy"))
    monkeypatch.setattr(run_photo, "load_depth", lambda *a, **k: _fake_estimator(ramp))  # the real weights now
    real = run_photo.photo_depth(photo, run_photo.DEFAULT_DEPTH_MODEL, random_weights=True)
    assert not np.allclose(real, random_depth)
    assert len(list(tmp_path.rglob("*.npy"))) == 1  # the real one is cached
    np.testing.assert_array_equal(run_photo.photo_depth(photo, run_photo.DEFAULT_DEPTH_MODEL), real)


def test_a_damaged_depth_cache_is_a_miss(tmp_path, monkeypatch) -> None:
    from discolib.run import photo as run_photo

    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path))
    photo = smooth_photo()
    path = run_photo.depth_cache_path(photo, "constant", None)
    path.parent.mkdir(parents=True)
    for broken in (b"", b"\x93NUMPY\x01\x00v\x00{'descr'"):
        path.write_bytes(broken)
        depth = run_photo.photo_depth(photo, "constant")
        assert depth.shape == tuple(photo.shape[-2:]) and np.all(depth == 1.0)
