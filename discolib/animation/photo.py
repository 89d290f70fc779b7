r"""Animating one photo: camera paths, cumulative poses, warps of the original photo, revealed-area fill.

The camera
----------
A rigid pinhole (:mod:`discolib.animation.motion`'s ``camera="pinhole"`` conventions): square pixels, principal
point at the image centre ``c = ((W - 1) / 2, (H - 1) / 2)``, vertical field of view :data:`PHOTO_FOV_DEG`, so
``f = (H / 2) / tan(fov / 2)`` pixels; camera frame ``x`` right, ``y`` down, ``z`` forward; depth = ``z`` in world
units (see :func:`world_depth` for how an estimator's relative depth becomes one).

Camera paths are plain keyframe strings with the settings' names (``translation_x/y/z``, ``rotation_3d_x/y/z``:
Deforum-style *per-frame increments* in Disco/Deforum units, translations scaled by 1/200; ``fov``: the absolute
field of view per frame). :func:`absolute_poses` composes the increments into one camera-to-photo pose per frame
(frame 0 is the photo's camera), and every frame is a reprojection of the ORIGINAL photo by its cumulative pose
(:func:`warp_photo`), so nothing drifts or blurs the way a chain of frame-to-frame warps does.

The warp (z-buffered, exact on the photo's surface)
---------------------------------------------------
Each photo pixel ``p`` with depth ``D(p)`` is the point ``X_0 = D(p) K^-1 [p, 1]``; in camera ``k`` (pose ``M_k``:
``X_0 = R X_k + c``) it is ``X_k = R^T (X_0 - c)`` and lands at ``q = pi(K_k X_k)``. Its depth ``z = (X_k)_z`` is
splatted with a minimum (a z-buffer) onto the 2x2 target pixels around ``q``, which closes every hole while the
local magnification stays below 2 (the presets stay far below). A target pixel that receives no splat is
*disoccluded*: the photo never saw what is there. Each covered target pixel ``u`` then reads the photo backwards:
with its splatted depth ``d``, ``X_k = d K_k^-1 [u, 1]``, ``u' = pi(K (R X_k + c))``, refined once by the
fixed-point step of :mod:`~discolib.animation.motion` (``d`` moved to the depth ``D(u')`` of the photo's surface
point on the ray through ``u'``, only when that point is within 5% of ``d``: the same surface), and samples the
photo bilinearly at ``u'`` (``grid_sample``, ``align_corners=False``, border padding).

``revealed`` (the mask :func:`warp_photo` returns) is ``True`` where the target pixel is disoccluded (no splat) or
its source ``u'`` lies outside the photo (``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` in pixels) or behind the photo's
camera. So a pure rotation reveals exactly the pixels whose homography source ``K R K^-1 u`` leaves the photo and
nothing else; a translation also reveals what foreground edges uncover. Every pixel that is not revealed is the
photo bilinearly sampled at its exact reprojection (for fronto-parallel planes; on other surfaces up to the
refined splat depth), away from the one-pixel band where the 2x2 splat dilates a foreground edge.

The fill
--------
:func:`background_layer` builds, once per photo, a layer in photo coordinates: the photo with the near side of
each depth discontinuity pushed back to the far depth and re-coloured from the background only (depth-aware
propagation, OpenCV TELEA where nothing reaches), and a margin around the frame (reflected) for what a sideways
move brings in. :func:`fill_revealed` warps that layer by the frame's pose and pastes it into the revealed pixels
only; what even the layer does not cover is inpainted with ``cv2.inpaint`` (TELEA). The same layer serves every
frame, so the fill moves with the scene instead of flickering.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import guided_blur

from discolib.animation.motion import TRANSLATION_SCALE, MotionError, camera_motion
from discolib.errors import InputError
from discolib.io.inputs import loads_json, read_user_text
from discolib.ops import check_image_batch
from discolib.schedules.keyframes import Schedule

__all__ = [
    "CAMERA_KEYS",
    "CAMERA_PRESETS",
    "PHOTO_FOV_DEG",
    "BackgroundLayer",
    "CameraPathError",
    "FillState",
    "absolute_poses",
    "background_layer",
    "camera_preset",
    "depth_range",
    "fill_revealed",
    "fov_values",
    "load_camera_path",
    "refine_depth_edges",
    "reveal_reach",
    "warp_photo",
    "world_depth",
]

CAMERA_PRESETS: tuple[str, ...] = ("dolly", "orbit", "pan", "zoom", "swing")
#: The keyframe settings a camera path may hold (the settings' own names).
CAMERA_KEYS: tuple[str, ...] = (
    "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov",
)
#: The photo's vertical field of view: a typical phone/normal lens (~28-35 mm equivalent on the long side).
PHOTO_FOV_DEG: float = 55.0
#: Farthest over nearest depth assumed for a relative estimator's output (:func:`world_depth`).
FAR_OVER_NEAR: float = 8.0
_MAX_PATH_BYTES = 1024 * 1024
_NEAR = 1e-3
#: Largest per-frame increment a camera path may hold (setting units: translations /200, rotations in degrees).
_MAX_STEP = {"translat": 1e6, "rotation": 360.0}


class CameraPathError(InputError):
    """A camera preset or path file is not what :func:`camera_preset` / :func:`load_camera_path` expect."""


# --------------------------------------------------------------------------------------------------- depth


def world_depth(depth: np.ndarray, *, metric: bool = False) -> np.ndarray:
    """An estimator's depth map ``(H, W)`` as world-unit depth for the pinhole camera.

    Relative estimators (:class:`~discolib.models.depth.TransformersDepth` on Depth Anything / DPT) give depth
    linear in disparity, known only up to scale and shift. Here it is renormalised to disparity ``s`` in ``[0, 1]``
    (1 at the nearest pixel, 0 at the farthest) and inverted with an assumed far/near ratio
    :data:`FAR_OVER_NEAR`: ``Z = 1 / (s (1 - 1/R) + 1/R)``, i.e. the nearest pixel at depth 1 and the farthest at
    ``R = 8``, geometrically (``1 / disparity``) in between. The absolute scale does not matter: camera presets are
    sized to the map's own depth range (:func:`camera_preset`). A flat map (the ``constant`` model) is depth 1
    everywhere; a metric estimator's metres pass through unchanged.
    """
    d = np.asarray(depth, dtype=np.float32)
    if metric:
        return np.maximum(d, 1e-3).astype(np.float32)
    lo, hi = float(d.min()), float(d.max())
    if not hi > lo:
        return np.ones_like(d)
    s = (hi - d) / (hi - lo)
    inv_r = 1.0 / FAR_OVER_NEAR
    return (1.0 / (s * (1.0 - inv_r) + inv_r)).astype(np.float32)


def depth_range(depth: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """The near and far depth of a world-depth map: its 2nd and 98th percentiles (robust to a few stray pixels)."""
    d = depth.detach().float().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth, np.float32)
    near, far = np.percentile(d, [2.0, 98.0])
    return float(near), float(max(far, near))


def refine_depth_edges(
    depth: torch.Tensor, photo: torch.Tensor, *, snap_window: int = 5, snap_steps: int = 3, edge: float = 0.08
) -> torch.Tensor:
    """Edge-aware refinement of an estimator's depth ``(1, 1, H, W)`` guided by the photo ``(1, 3, H, W)``.

    Two steps: (1) a guided filter (kornia ``guided_blur``, the photo as guide) makes depth edges follow the
    photo's edges; (2) where the depth still changes strongly within ``snap_window`` pixels (more than ``edge`` of
    the map's depth span), each pixel snaps to the nearer of the local minimum and maximum (``snap_steps`` times),
    so an edge is a step, not a ramp of in-between depths that would stretch the foreground into the background
    when the camera moves.
    Depth units are kept (the result stays within the input's range).
    """
    check_image_batch(photo, "photo")
    h, w = depth.shape[-2:]
    lo_all, hi_all = depth.amin(), depth.amax()
    span = (hi_all - lo_all).clamp(min=1e-12)
    unit = (depth - lo_all) / span  # the guided filter's eps is relative to values in [0, 1]
    radius = max(2, round(max(h, w) / 128))
    sub = 1 if max(h, w) <= 512 else 2 if max(h, w) <= 1024 else 4
    kernel = 2 * radius + 1
    kernel += (kernel // sub + 1) * sub - kernel if kernel % sub else 0  # kornia wants it divisible when subsampling
    # On a thin photo (16 x 2048) the box filter's reflect padding must stay under the (subsampled) short side.
    short = min(h, w)
    while sub > 1 and short // sub < 4:
        sub //= 2
    kernel = max(1, min(kernel, (2 * (short // sub) - 1) * sub))
    guided = guided_blur(photo.float(), unit.float(), kernel, 1e-3, subsample=sub).clamp(0.0, 1.0)
    pad = snap_window // 2
    refined = guided
    for _ in range(snap_steps):  # each step moves in-between values to a side: a ramp of a few pixels becomes a step
        hi = F.max_pool2d(refined, snap_window, stride=1, padding=pad)
        lo = -F.max_pool2d(-refined, snap_window, stride=1, padding=pad)
        snapped = torch.where(refined - lo < hi - refined, lo, hi)
        refined = torch.where(hi - lo > edge, snapped, refined)
    return (lo_all + refined * span).to(depth.dtype)


# --------------------------------------------------------------------------------------------------- camera paths


def _num(value: float) -> str:
    text = f"{value:.9g}"
    return "0" if text in ("-0", "0") else text


def camera_preset(name: str, *, seconds: float, fps: float, depth_range: tuple[float, float]) -> dict[str, str]:
    """The keyframe strings of a camera preset, per-frame increments sized to the photo's depth range.

    ``depth_range`` is the photo's (near, far) world depth (:func:`depth_range`). Distances are fractions of the
    near depth and pivots sit at the middle depth, so a scene scaled by 10 gives the same image motion:

    * ``dolly``: forward by a quarter of the near depth over the clip;
    * ``orbit``: about a pivot at the middle depth (geometric mean of near and far), the camera swinging sideways
      by ~15% of the near depth (at most 15 degrees) while it keeps the pivot centred;
    * ``pan``: sideways by 15% of the near depth with a slight yaw back towards the middle depth;
    * ``zoom``: the field of view narrowing from :data:`PHOTO_FOV_DEG` to 44 degrees (1.3x) with a push of 8% of
      the near depth for a little parallax;
    * ``swing``: side to side (one sine period, amplitude 12% of the near depth), back where it started.

    Returns:
        ``{setting name: keyframe string}`` with every name of :data:`CAMERA_KEYS`.
    """
    if name not in CAMERA_PRESETS:
        close = difflib.get_close_matches(str(name), CAMERA_PRESETS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CameraPathError(f"camera: expected one of {', '.join(CAMERA_PRESETS)} or a path.json, got {name!r}{hint}")
    n_frames = frame_count(seconds, fps)
    near, far = (float(v) for v in depth_range)
    if not (math.isfinite(near) and math.isfinite(far) and 0 < near <= far):
        raise CameraPathError(f"depth_range must be (near, far) with 0 < near <= far, got {depth_range}")
    steps = max(n_frames - 1, 1)
    mid = math.sqrt(near * far)
    out = {key: "0: (0)" for key in CAMERA_KEYS}
    out["fov"] = f"0: ({_num(PHOTO_FOV_DEG)})"
    per = 1.0 / TRANSLATION_SCALE  # world units -> setting units
    if name == "dolly":
        out["translation_z"] = f"0: ({_num(0.25 * near * per / steps)})"
    elif name == "pan":
        total = 0.15 * near
        out["translation_x"] = f"0: ({_num(total * per / steps)})"
        out["rotation_3d_y"] = f"0: ({_num(-0.5 * math.degrees(math.atan2(total, mid)) / steps)})"
    elif name == "orbit":
        total_deg = min(15.0, math.degrees(0.15 * near / mid))
        delta = math.radians(total_deg / steps)
        # Keep the pivot p = (0, 0, mid) fixed in every camera: p = R (p - t) gives t = p - R^T p for R = Ry(delta)
        # (motion.rotation_matrix_3d), i.e. t = (sin(delta) mid, 0, (1 - cos(delta)) mid) in world units; the
        # settings hold (-t_x, t_y, -t_z) * 200 (motion.camera_motion).
        out["rotation_3d_y"] = f"0: ({_num(math.degrees(delta))})"
        out["translation_x"] = f"0: ({_num(-math.sin(delta) * mid * per)})"
        out["translation_z"] = f"0: ({_num(-(1.0 - math.cos(delta)) * mid * per)})"
    elif name == "zoom":
        out["fov"] = f"0: ({_num(PHOTO_FOV_DEG)}), {steps}: (44)"
        out["translation_z"] = f"0: ({_num(0.08 * near * per / steps)})"
    else:  # swing: x(t) = A sin(2 pi t / steps); the per-frame increment is its step from t - 1 to t
        amp = 0.12 * near * per
        out["translation_x"] = (
            f"0: (0), 1: ({_num(amp)} * (sin(2 * pi * t / {steps}) - sin(2 * pi * (t - 1) / {steps})))"
        )
    return out


def frame_count(seconds: float, fps: float) -> int:
    """``round(seconds * fps)``, at least 1; one-line errors for non-positive or non-finite values."""
    for name, value in (("seconds", seconds), ("fps", fps)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise CameraPathError(f"{name}: expected a positive number, got {value!r}")
    n = max(1, round(float(seconds) * float(fps)))
    if n > 100_000:
        raise CameraPathError(f"seconds * fps gives {n} frames; at most 100000")
    return n


def _check_schedules(schedules: Mapping[str, object], n_frames: int, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in schedules.items():
        if key not in CAMERA_KEYS:
            close = difflib.get_close_matches(str(key), CAMERA_KEYS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CameraPathError(f"{where}: unknown key {str(key)[:60]!r} (expected {', '.join(CAMERA_KEYS)}){hint}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CameraPathError(f"{where}: {key} must be a keyframe string like \"0: (1)\" or a number, got {type(value).__name__}")
        try:  # a JSON integer of 400 digits, or "1e308" times a frame number, overflows a float
            text = value if isinstance(value, str) else f"0: ({_num(float(value))})"
            values = np.asarray(Schedule.parse(text, setting=f"{where}: {key}").values(n_frames), dtype=np.float64)
        except OverflowError:
            values = np.array([math.inf])
        if key == "fov":
            if not np.all((values > 0) & (values < 180)):
                raise CameraPathError(f"{where}: fov must stay within (0, 180) degrees on every frame")
        elif not np.all(np.abs(values) <= _MAX_STEP[key[:8]]):  # also refuses inf and nan
            raise CameraPathError(f"{where}: {key} must stay within +-{_MAX_STEP[key[:8]]:g} per frame on every frame")
        out[key] = text
    for key in CAMERA_KEYS:
        out.setdefault(key, f"0: ({_num(PHOTO_FOV_DEG)})" if key == "fov" else "0: (0)")
    return out


def load_camera_path(path: str | Path, *, n_frames: int) -> dict[str, str]:
    """A camera path file: a JSON object ``{"translation_z": "0: (1)", "rotation_3d_y": "0: (0.2)", ...}``.

    Keys are :data:`CAMERA_KEYS` (an unknown key names the closest one); values are keyframe strings (parsed by
    discolib's safe expression language, never evaluated as Python) or plain numbers (a constant per frame).
    Missing keys are still (0, or the photo's fov). Errors are one line naming the file and the key.
    """
    where = str(path)
    text = read_user_text(path, setting="camera", max_bytes=_MAX_PATH_BYTES)
    data = loads_json(text, what=where)
    if not isinstance(data, dict):
        raise CameraPathError(f"{where}: expected a JSON object of keyframe strings, got {type(data).__name__}")
    return _check_schedules(data, n_frames, where)


def fov_values(schedules: Mapping[str, str], n_frames: int) -> np.ndarray:
    """The field of view of each frame (degrees), :data:`PHOTO_FOV_DEG` where the path has no ``fov``."""
    text = schedules.get("fov")
    if text is None:
        return np.full(n_frames, PHOTO_FOV_DEG)
    return Schedule.parse(text, setting="fov").values(n_frames)


def absolute_poses(schedules: Mapping[str, str], n_frames: int) -> torch.Tensor:
    """Compose per-frame increments into camera-to-photo poses ``(N, 4, 4)`` float64 (frame 0 = identity).

    Frame ``k``'s increment (the schedules' values at ``k``, as :func:`~discolib.animation.motion.camera_motion`
    reads a 3D step) maps camera ``k`` to camera ``k - 1`` as ``X_{k-1} = R_k (X_k - t_k)``; the pose of frame
    ``k`` is the product ``M_k = S_1 ... S_k`` with ``S_j = [[R_j, -R_j t_j], [0, 1]]``, so ``X_0 = M_k X_k``.
    """
    checked = _check_schedules(schedules, n_frames, "camera path")
    vals = {k: Schedule.parse(checked[k], setting=k).values(n_frames) for k in CAMERA_KEYS if k != "fov"}
    rot = torch.tensor(np.stack([vals["rotation_3d_x"], vals["rotation_3d_y"], vals["rotation_3d_z"]], 1))
    trans = torch.tensor(np.stack([vals["translation_x"], vals["translation_y"], vals["translation_z"]], 1))
    r, t = camera_motion(rot, trans, batch=n_frames, dtype=torch.float64)
    steps = torch.eye(4, dtype=torch.float64).repeat(n_frames, 1, 1)
    steps[:, :3, :3] = r
    steps[:, :3, 3] = -(r @ t.unsqueeze(-1)).squeeze(-1)
    poses = torch.empty_like(steps)
    current = torch.eye(4, dtype=torch.float64)
    poses[0] = current
    for k in range(1, n_frames):
        current = current @ steps[k]
        poses[k] = current
    if not bool(torch.isfinite(poses).all()):  # bounded steps compounded over 100000 frames: still refused
        raise CameraPathError("camera path: the camera's poses overflow; use smaller per-frame moves")
    return poses


# --------------------------------------------------------------------------------------------------- warping


def _focal(h: int, fov_deg: float) -> float:
    if not 0.0 < fov_deg < 180.0:
        raise MotionError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
    return (h / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def _splat_index(tx: torch.Tensor, ty: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
    """Flat int64 indices ``y * wo + x`` of target pixels (float coordinates, clamped into the frame).

    The product is taken in int64: in float32 it loses whole pixels above 2^24 (a 2100x8200 frame indexed past its
    end; a 6000-wide one landed on the neighbouring column)."""
    return (ty.clamp(0, ho - 1).long() * wo + tx.clamp(0, wo - 1).long()).reshape(-1)


def _reproject(
    src: torch.Tensor,
    src_depth: torch.Tensor,
    pose: torch.Tensor,
    f_src: float,
    c_src: tuple[float, float],
    out_hw: tuple[int, int],
    f_out: float,
    c_out: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-buffered reprojection of the module docstring: ``src`` ``(1, C, Hs, Ws)`` with world depth, seen from
    ``pose`` through a camera of focal ``f_out`` and principal point ``c_out`` (x, y) on an ``out_hw`` frame."""
    _, _, hs, ws = src.shape
    ho, wo = out_hw
    dev, dt = src.device, torch.float32
    # The pose's 12 numbers as Python floats: no device tensor is read back on the host (no sync per frame).
    m = pose.detach().to(device="cpu", dtype=torch.float64)
    r = m[:3, :3].tolist()
    cl = m[:3, 3].tolist()
    a = (m[:3, :3].T @ m[:3, 3]).tolist()  # R^T c
    depth = src_depth.reshape(hs, ws).to(dt)

    # Forward: every source point into the new camera, its depth splatted (min) onto the 2x2 pixels around it.
    xs = ((torch.arange(ws, device=dev, dtype=dt) - c_src[0]) / f_src).view(1, ws)
    ys = ((torch.arange(hs, device=dev, dtype=dt) - c_src[1]) / f_src).view(hs, 1)
    # X_k = R^T X_0 - R^T c with X_0 = D (x, y, 1): each coordinate separable in x and y, times D.
    # (In-place steps from here on: each full-frame pass costs about as much as the arithmetic on a CPU.)
    comps = [((r[0][i] * xs + r[2][i]) + r[1][i] * ys).mul_(depth).sub_(a[i]) for i in range(3)]
    z = comps[2]
    inv_z = z.clamp(min=_NEAR).reciprocal_().mul_(f_out)
    qx = comps[0].mul_(inv_z).add_(c_out[0])
    qy = comps[1].mul_(inv_z).add_(c_out[1])
    fx, fy = qx.floor(), qy.floor()
    ok_src = (z > _NEAR) & torch.isfinite(qx) & torch.isfinite(qy)
    zbuf = torch.full((ho * wo,), math.inf, device=dev, dtype=dt)
    zf = z.reshape(-1)
    for dy in (0.0, 1.0):
        for dx in (0.0, 1.0):
            tx, ty = fx + dx, fy + dy
            ok = ok_src & (tx >= 0) & (tx <= wo - 1) & (ty >= 0) & (ty <= ho - 1)
            idx = _splat_index(tx, ty, ho, wo)
            vals = torch.where(ok.reshape(-1), zf, torch.full_like(zf, math.inf))
            zbuf.scatter_reduce_(0, idx, vals, "amin")
    zbuf = zbuf.view(ho, wo)
    covered = torch.isfinite(zbuf)
    d = torch.where(covered, zbuf, torch.ones_like(zbuf))

    # Backward: the target ray at depth d, into the photo's camera (X_0 = R X_k + c), one fixed-point step.
    xo = ((torch.arange(wo, device=dev, dtype=dt) - c_out[0]) / f_out).view(1, wo)
    yo = ((torch.arange(ho, device=dev, dtype=dt) - c_out[1]) / f_out).view(ho, 1)
    rays = [(r[i][0] * xo + r[i][2]) + r[i][1] * yo for i in range(3)]  # R K^-1 [u, 1]

    def source(dd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = [(rays[i] * dd).add_(cl[i]) for i in range(3)]
        inv = p[2].clamp(min=_NEAR).reciprocal_().mul_(f_src)
        return p[0].mul_(inv).add_(c_src[0]), p[1].mul_(inv).add_(c_src[1]), p[2]

    def to_grid(ux: torch.Tensor, uy: torch.Tensor) -> torch.Tensor:
        # Pixel -> normalised (align_corners=False), written straight into the interleaved grid.
        grid = torch.empty(1, ho, wo, 2, device=dev, dtype=dt)
        torch.add(ux, 0.5, out=grid[0, ..., 0]).mul_(2.0 / ws).sub_(1.0)
        torch.add(uy, 0.5, out=grid[0, ..., 1]).mul_(2.0 / hs).sub_(1.0)
        return grid

    ux, uy, pz = source(d)
    surface = F.grid_sample(depth.view(1, 1, hs, ws), to_grid(ux, uy), mode="bilinear", padding_mode="border",
                            align_corners=False).view(ho, wo)
    ratio = surface / pz.clamp(min=_NEAR)
    same = covered & ((ratio - 1.0).abs() < 0.05)
    # The photo's surface point on the ray through u', in camera k: w X_k + (w - 1) R^T c; its z is the new depth.
    d = torch.where(same, ratio * d + (ratio - 1.0) * a[2], d)
    ux, uy, pz = source(d)
    inside = (ux >= -0.5) & (ux <= ws - 0.5) & (uy >= -0.5) & (uy <= hs - 0.5) & (pz > _NEAR)
    revealed = ~(covered & inside)
    out = F.grid_sample(src.to(dt), to_grid(ux, uy), mode="bilinear", padding_mode="border", align_corners=False)
    return out.to(src.dtype), revealed.view(1, 1, ho, wo)


def warp_photo(
    photo: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    fov_deg: float,
    *,
    target_fov_deg: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo seen from camera ``pose`` (the module docstring's z-buffered reprojection).

    Args:
        photo: ``(1, 3, H, W)`` the ORIGINAL photo.
        depth: ``(1, 1, H, W)`` its world depth (:func:`world_depth`).
        pose: ``(4, 4)`` camera-to-photo pose (:func:`absolute_poses`).
        fov_deg: the photo's vertical field of view.
        target_fov_deg: the new camera's field of view (a zoom); default ``fov_deg``.

    Returns:
        ``frame`` ``(1, 3, H, W)`` and ``revealed`` ``(1, 1, H, W)`` bool: ``True`` where the photo has nothing
        to show (disoccluded, or the source leaves the photo); there ``frame`` holds border-padded samples.
    """
    check_image_batch(photo, "photo", error=MotionError)
    if photo.shape[0] != 1 or depth.shape != (1, 1, *photo.shape[-2:]):
        raise MotionError(f"warp_photo takes one photo (1, C, H, W) and its depth (1, 1, H, W), got "
                          f"{tuple(photo.shape)} and {tuple(depth.shape)}")
    if tuple(pose.shape) != (4, 4):
        raise MotionError(f"pose must be a (4, 4) matrix, got {tuple(pose.shape)}")
    h, w = photo.shape[-2:]
    f = _focal(h, fov_deg)
    f_out = f if target_fov_deg is None else _focal(h, target_fov_deg)
    c = ((w - 1) / 2.0, (h - 1) / 2.0)
    return _reproject(photo, depth, pose, f, c, (h, w), f_out, c)


# --------------------------------------------------------------------------------------------------- fill


@dataclass(frozen=True)
class BackgroundLayer:
    """The photo's background extended once, in photo coordinates on a canvas ``margin`` pixels wider per side.

    ``color`` ``(1, 3, H + 2m, W + 2m)``, ``depth`` ``(1, 1, H + 2m, W + 2m)`` world depth; the photo's pixel
    ``(u, v)`` is the canvas pixel ``(u + m, v + m)``; same focal length as the photo.
    """

    color: torch.Tensor
    depth: torch.Tensor
    margin: int
    fov_deg: float
    photo_hw: tuple[int, int]


@dataclass(frozen=True)
class FillState:
    """What :func:`fill_revealed` keeps between frames: the background layer and the pose of the frame to fill."""

    layer: BackgroundLayer | None = None
    pose: torch.Tensor | None = None
    target_fov_deg: float | None = None

    def at(self, pose: torch.Tensor, target_fov_deg: float | None = None) -> FillState:
        """This state for the frame seen from ``pose`` (through ``target_fov_deg``)."""
        return replace(self, pose=pose, target_fov_deg=target_fov_deg)


def _shifted(a: np.ndarray, dy: int, dx: int, fill: float | bool) -> np.ndarray:
    """``a`` moved so that ``out[y, x] = a[y + dy, x + dx]`` (``fill`` beyond the edges)."""
    out = np.full_like(a, fill)
    h, w = a.shape[:2]
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[yd, xd] = a[ys, xs]
    return out


def _inpaint(image: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    """OpenCV TELEA inpainting of float ``(H, W, 3)`` in [0, 1] where ``mask``; other pixels returned unchanged."""
    u8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    filled = cv2.inpaint(u8, mask.astype(np.uint8), radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    return np.where(mask[..., None], filled, image)


def _propagate(color: np.ndarray, depth: np.ndarray, known: np.ndarray, edge_ratio: float) -> np.ndarray:
    """Fill the unknown pixels of ``color`` (H, W, 3) pass by pass from known 8-neighbours at least as far
    (``depth``, within ``edge_ratio``): a background grows into the pushed-back band, the foreground never does.
    What no pass reaches is inpainted (TELEA)."""
    h, w = known.shape
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(h + w):
        todo = ~known
        if not todo.any():
            break
        acc = np.zeros_like(color)
        wsum = np.zeros((h, w), np.float32)
        for dy, dx in offsets:
            nb_depth = _shifted(depth, dy, dx, 0.0)
            ok = todo & _shifted(known, dy, dx, False) & (nb_depth * (1.0 + edge_ratio) >= depth)
            acc += _shifted(color, dy, dx, 0.0) * ok[..., None]
            wsum += ok
        new = wsum > 0
        if not new.any():
            break
        color[new] = acc[new] / wsum[new, None]
        known = known | new
    return color if known.all() else _inpaint(color, ~known)


def background_layer(
    photo: torch.Tensor,
    depth: torch.Tensor,
    fov_deg: float,
    *,
    margin: float = 0.15,
    edge_ratio: float = 0.05,
    reach: int | None = None,
    inpaint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> BackgroundLayer:
    """Extend the photo's background behind its foreground edges, once (the fill's memory across frames).

    Near side of a discontinuity: pixels whose depth is more than ``edge_ratio`` nearer than the farthest depth
    within ``reach`` pixels (default 2% of the photo's longer side; :func:`reveal_reach` sizes it to a camera path:
    the widest strip the path uncovers). Their depth becomes that far depth and their colour is propagated
    inwards from neighbours at that far depth only (never from the foreground); anything propagation cannot
    reach is inpainted (TELEA). The canvas then gets a reflected margin of ``margin`` times the longer side.

    ``inpaint(image (1, 3, Hc, Wc), mask (1, 1, Hc, Wc) bool) -> image``, when given (a learned fill: the latent
    model's masked img2img), repaints what the layer made up (the pushed-back edges and the margin), once; only
    the masked pixels of its result are used.
    """
    check_image_batch(photo, "photo", error=MotionError)
    h, w = photo.shape[-2:]
    img = photo[0].permute(1, 2, 0).float().cpu().numpy().astype(np.float32)
    dep = depth.reshape(h, w).float().cpu().numpy().astype(np.float32)
    half = int(round(0.02 * max(h, w))) if reach is None else int(reach)
    k = 2 * max(1, half) + 1
    far = cv2.dilate(dep, np.ones((k, k), np.uint8), borderType=cv2.BORDER_REPLICATE)
    band = dep * (1.0 + edge_ratio) < far
    bg_depth = np.where(band, far, dep).astype(np.float32)
    # The propagation takes as many passes as the band is wide: past 8 pixels it runs on blocks of `scale` pixels
    # (a block is band if any of its pixels is, at the block's farthest depth) and the band takes its block's colour.
    scale = max(1, half // 8)
    if scale == 1:
        color = _propagate(img.copy(), bg_depth, ~band, edge_ratio)
    else:
        ph, pw = -h % scale, -w % scale

        def blocks(a: np.ndarray) -> np.ndarray:
            a = np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), mode="edge")
            return a.reshape(a.shape[0] // scale, scale, a.shape[1] // scale, scale, *a.shape[2:])

        small_band = blocks(band).any(axis=(1, 3))
        small_depth = blocks(bg_depth).max(axis=(1, 3))
        small_color = blocks(img).mean(axis=(1, 3)).astype(np.float32)
        small = _propagate(small_color, small_depth, ~small_band, edge_ratio)
        up = np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)[:h, :w]
        color = np.where(band[..., None], up, img).astype(np.float32)
    m = int(round(margin * max(h, w)))
    color = cv2.copyMakeBorder(color, m, m, m, m, cv2.BORDER_REFLECT_101)
    bg_depth = cv2.copyMakeBorder(bg_depth, m, m, m, m, cv2.BORDER_REPLICATE)
    dev = photo.device
    color_t = torch.from_numpy(np.ascontiguousarray(color)).permute(2, 0, 1).unsqueeze(0).to(dev, photo.dtype)
    if inpaint is not None:
        made_up = np.pad(band, m, constant_values=True)
        mask_t = torch.from_numpy(made_up).view(1, 1, *made_up.shape).to(dev)
        color_t = torch.where(mask_t, inpaint(color_t, mask_t).to(dev, photo.dtype).clamp(0, 1), color_t)
    return BackgroundLayer(
        color=color_t,
        depth=torch.from_numpy(np.ascontiguousarray(bg_depth)).view(1, 1, h + 2 * m, w + 2 * m).to(dev),
        margin=m,
        fov_deg=float(fov_deg),
        photo_hw=(h, w),
    )


def reveal_reach(
    poses: torch.Tensor, depth_range: tuple[float, float], fov_deg: float, hw: tuple[int, int], *, cap: float = 0.2
) -> int:
    """How wide (pixels) a strip behind a foreground edge the camera path can uncover, generously: a sideways move
    ``t`` shifts the near depth ``n`` by up to ``f t / n`` pixels more than the far background, a forward move ``z``
    opens up to ``z / n`` of the half-frame; at most ``cap`` of the longer side, at least 2 pixels."""
    h, w = hw
    f = _focal(h, fov_deg)
    near = max(float(depth_range[0]), 1e-6)
    c = poses[:, :3, 3].double()
    sideways = torch.hypot(c[:, 0], c[:, 1]).max().item()
    forward = c[:, 2].abs().max().item()
    reach = f * sideways / near + forward / near * max(h, w) / 2
    if not math.isfinite(reach):  # a path that moves absurdly far: the widest strip there is
        return int(cap * max(h, w))
    return int(min(max(2.0, math.ceil(1.2 * reach)), cap * max(h, w)))


def fill_revealed(
    frame: torch.Tensor, mask: torch.Tensor, background_state: FillState | None = None
) -> tuple[torch.Tensor, FillState | None]:
    """Fill the revealed pixels of ``frame`` ``(1, 3, H, W)`` (``mask`` ``(1, 1, H, W)`` bool), and ONLY those.

    With a :class:`FillState` holding a background layer and the frame's pose, the layer is warped by that pose
    and pasted where it covers the mask (stable across frames: the same layer every frame); the rest of the mask
    (and all of it without a state) is inpainted with OpenCV's TELEA. Unmasked pixels are returned bit for bit.
    """
    check_image_batch(frame, "frame", error=MotionError)
    if mask.dtype != torch.bool or mask.shape != (frame.shape[0], 1, *frame.shape[-2:]) or frame.shape[0] != 1:
        raise MotionError(f"mask must be a bool (1, 1, H, W) for a frame (1, C, H, W), got {tuple(mask.shape)} "
                          f"{mask.dtype} for {tuple(frame.shape)}")
    out = frame
    remaining = mask
    state = background_state
    if frame.device.type == "cpu" and not bool(mask.any()):  # nothing revealed (on an accelerator: a sync, skipped)
        return frame, state
    if state is not None and state.layer is not None and state.pose is not None:
        layer = state.layer
        h, w = frame.shape[-2:]
        if layer.photo_hw != (h, w):
            raise MotionError(f"the background layer is for a {layer.photo_hw} photo, the frame is {(h, w)}")
        f = _focal(h, layer.fov_deg)
        f_out = f if state.target_fov_deg is None else _focal(h, state.target_fov_deg)
        m = layer.margin
        c_canvas = ((w - 1) / 2.0 + m, (h - 1) / 2.0 + m)
        bg, bg_revealed = _reproject(layer.color, layer.depth, state.pose, f, c_canvas, (h, w), f_out,
                                     ((w - 1) / 2.0, (h - 1) / 2.0))
        use = mask & ~bg_revealed
        out = torch.where(use, bg.to(frame.dtype), out)
        remaining = mask & bg_revealed
    if bool(remaining.any()):  # a host sync, but the inpainting runs on the host anyway
        img = out[0].permute(1, 2, 0).float().cpu().numpy()
        filled = _inpaint(img, remaining[0, 0].cpu().numpy())
        filled_t = torch.from_numpy(filled).permute(2, 0, 1).unsqueeze(0).to(frame.device, frame.dtype)
        out = torch.where(remaining, filled_t, out)
    return out, state
