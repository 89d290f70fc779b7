r"""Stereo pairs for VR (Disco v5.7's ``vr_mode``): left and right eye views of a frame by 3D reprojection.

Each eye is the frame seen from a camera moved half the interpupillary distance sideways and turned towards the
centre, rendered with the same depth reprojection as a 3D animation step
(:func:`discolib.animation.motion.reproject_3d`), then, as in Disco, bent by a "spherical" (fish-eye) projection.

Disco's semantics (``generate_eye_views`` in Disco v5.7, re-derived here in the units of the 3D settings): with
``theta = vr_eye_angle`` (degrees) and ``vr_ipd``, each eye is one 3D step of

================  ==========================================  ==========================================
eye               ``translation_x`` (Disco/Deforum units)      ``rotation_3d_y`` (degrees)
================  ==========================================  ==========================================
left              ``-cos(theta) * vr_ipd / 2`` (camera left)    ``+theta`` (camera turns right, inwards)
right             ``+cos(theta) * vr_ipd / 2`` (camera right)   ``-theta`` (camera turns left, inwards)
================  ==========================================  ==========================================

(Disco builds ``translate = -ray_origin / 200`` with ``ray_origin = -/+ cos(theta) ipd / 2`` and hands it to the same
camera as ``do_3d_step``'s ``translate = -translation_x / 200``; so the eye's ``translation_x`` *is* Disco's
``ray_origin``.) All other motion is zero; the field of view, padding and sampling modes are the 3D step's.

Spherical projection (Disco's ``get_spherical_projection(H, W, centre=0, magnitude=-0.4)``): output pixel at
normalised position ``g`` (``align_corners=True``: ``g = -1`` / ``+1`` are the centres of the edge pixels, in each
axis separately, so on a non-square frame the bend is elliptical in pixels) reads the reprojected view at
``g * (1 + 0.4 |g|)`` with bilinear sampling and zeros outside. The centre is unchanged, content is pushed
inwards (a barrel / fish-eye look), and everything whose source lies beyond the frame is black: along the axes
from ``|g| > (sqrt(1 + 4 m) - 1) / (2 m) = 0.765`` (``m = 0.4``) outwards, so an eye view is a rounded
window on black. Pass ``spherical=False`` for plain (rectilinear) eye views.

Usage (``depth`` as the 3D step uses it, in the reprojection's world units)::

    left, right = eye_views(frame, depth, eye_angle_deg=0.5, ipd=5.0, fov_deg=40.0,
                            padding_mode="border", sampling_mode="bicubic")

In a render, ``animation.vr_mode`` turns this on for 3D animations: every written frame (diffused or a
cadence/turbo in-between frame, as in Disco) gets ``frames_l/NNNNNN.png`` and ``frames_r/NNNNNN.png`` and the run
gets a side-by-side video (:mod:`discolib.run.stereo`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

import torch
import torch.nn.functional as F

from discolib.animation import motion
from discolib.animation.motion import MotionError, PaddingMode, SamplingMode
from discolib.models.device import upload
from discolib.ops import check_image_batch

__all__ = [
    "DISCO_SPHERICAL_MAGNITUDE",
    "DUBOIS_RED_CYAN_LEFT",
    "DUBOIS_RED_CYAN_RIGHT",
    "anaglyph",
    "eye_poses",
    "eye_views",
    "pose_to_motion",
    "side_by_side",
    "spherical_grid",
    "spherical_projection",
    "stereo_pair",
]

#: Disco's fish-eye strength (its ``get_spherical_projection(..., magnitude=-0.4)``; the sign there points the
#: centre-minus-position vector outwards).
DISCO_SPHERICAL_MAGNITUDE: float = 0.4


def _finite(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise MotionError(f"{name} must be a finite number, got {value!r}")
    return v


def eye_poses(
    eye_angle_deg: float,
    ipd: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two eyes as 3D-step settings: ``rotation_deg`` ``(2, 3)`` and ``translation`` ``(2, 3)``.

    Row 0 is the left eye, row 1 the right; columns are ``[x, y, z]`` in the units of ``rotation_3d_*`` (degrees)
    and ``translation_*`` (Disco/Deforum units, scaled by 1/200 in the reprojection). See the module docstring.
    """
    theta = _finite(eye_angle_deg, "vr_eye_angle")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    rotation, translation = _eye_poses(theta, _finite(ipd, "vr_ipd"), dev, dtype)
    return rotation.clone(), translation.clone()  # the cached ones stay unchanged whatever the caller does


@lru_cache(maxsize=8)
def _eye_poses(theta: float, ipd: float, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # Cached per run's settings and uploaded without a host sync: a frame loop calls this for every frame.
    half = math.cos(math.radians(theta)) * ipd / 2.0
    rotation = torch.tensor([[0.0, theta, 0.0], [0.0, -theta, 0.0]], dtype=torch.float64)
    translation = torch.tensor([[-half, 0.0, 0.0], [half, 0.0, 0.0]], dtype=torch.float64)
    return upload(rotation.to(dtype), device), upload(translation.to(dtype), device)


@lru_cache(maxsize=16)
def _spherical_grid(
    height: int, width: int, magnitude: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    # float64 for the grid itself, so float32 and float64 frames read the same positions up to their own rounding.
    x = torch.linspace(-1.0, 1.0, width, dtype=torch.float64, device=device)
    y = torch.linspace(-1.0, 1.0, height, dtype=torch.float64, device=device)
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    scale = 1.0 + magnitude * torch.sqrt(gx * gx + gy * gy)
    return torch.stack((gx * scale, gy * scale), dim=-1).unsqueeze(0).to(dtype)


def spherical_grid(
    height: int,
    width: int,
    magnitude: float = DISCO_SPHERICAL_MAGNITUDE,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Disco's fish-eye sampling grid, ``(1, H, W, 2)`` normalised ``(x, y)`` for ``align_corners=True``.

    Output position ``g`` (a ``linspace(-1, 1)`` per axis) reads ``g * (1 + magnitude * |g|)``; ``magnitude > 0``
    pushes content towards the centre (barrel), ``0`` is the identity, ``< 0`` a pincushion.
    """
    if height < 1 or width < 1:
        raise MotionError(f"size must be positive, got {height}x{width}")
    m = _finite(magnitude, "magnitude")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return _spherical_grid(int(height), int(width), m, dev, dtype)


def spherical_projection(image: torch.Tensor, magnitude: float = DISCO_SPHERICAL_MAGNITUDE) -> torch.Tensor:
    """Bend ``image`` ``(B, C, H, W)`` by :func:`spherical_grid` (bilinear, zeros outside, as Disco); same shape."""
    check_image_batch(image, channels=None, error=MotionError)
    b, _, h, w = image.shape
    grid = spherical_grid(h, w, magnitude, device=image.device, dtype=image.dtype).expand(b, h, w, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def eye_views(
    image: torch.Tensor,
    depth: torch.Tensor,
    eye_angle_deg: float = 0.5,
    ipd: float = 5.0,
    *,
    fov_deg: float = 40.0,
    padding_mode: PaddingMode = "border",
    sampling_mode: SamplingMode = "bilinear",
    spherical: bool = True,
    magnitude: float = DISCO_SPHERICAL_MAGNITUDE,
    reproject_kwargs: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right eye views of ``image`` (Disco's ``vr_mode``; see the module docstring).

    Args:
        image: ``(B, C, H, W)`` frames (values are not clamped: bicubic may overshoot).
        depth: ``(B, 1, H, W)`` their depth in the reprojection's world units (as the 3D step uses it).
        eye_angle_deg: Disco's ``vr_eye_angle``: each eye's turn towards the centre, degrees.
        ipd: Disco's ``vr_ipd``: the distance between the eyes in Disco/Deforum translation units.
        fov_deg, padding_mode, sampling_mode: the 3D step's camera and sampling (keywords of
            :func:`~discolib.animation.motion.reproject_3d`).
        spherical: apply Disco's fish-eye projection after the reprojection (Disco always does).
        magnitude: its strength (Disco: 0.4).
        reproject_kwargs: further keyword arguments of :func:`~discolib.animation.motion.reproject_3d` (the camera
            model and its parameters, near, far, ...), so the eyes use exactly the 3D step's camera.

    Returns:
        ``(left, right)``, each ``(B, C, H, W)``. Both eyes are one batched reprojection.
    """
    check_image_batch(image, channels=None, error=MotionError)
    check_image_batch(depth, "depth", channels=1, error=MotionError)
    b = image.shape[0]
    if depth.shape[0] != b:
        raise MotionError(f"depth batch {depth.shape[0]} does not match image batch {b}")
    extra = dict(reproject_kwargs or {})
    clash = sorted({"image", "depth", "rotation_deg", "translation", "fov_deg", "padding_mode", "sampling_mode"} & extra.keys())
    if clash:
        raise MotionError(f"reproject_kwargs must not set {', '.join(clash)}: they are eye_views' own arguments")
    theta, dist = _finite(eye_angle_deg, "vr_eye_angle"), _finite(ipd, "vr_ipd")
    rotation, translation = _eye_poses(theta, dist, image.device, image.dtype)  # read only below
    # Batch order: all left views, then all right views.
    pair = image.repeat(2, 1, 1, 1)
    pair_depth = depth.repeat(2, 1, 1, 1)
    views, _ = motion.reproject_3d(
        pair,
        pair_depth,
        rotation_deg=rotation.repeat_interleave(b, dim=0),
        translation=translation.repeat_interleave(b, dim=0),
        fov_deg=fov_deg,
        padding_mode=padding_mode,
        sampling_mode=sampling_mode,
        **extra,
    )
    if spherical:
        views = spherical_projection(views, magnitude)
    return views[:b], views[b:]


# --------------------------------------------------------------------------------------- one photo: pinhole stereo


def _check_pose(pose: object) -> torch.Tensor:
    """``pose`` as a float64 ``(B, 4, 4)`` tensor, or a :class:`MotionError`."""
    if not isinstance(pose, torch.Tensor) or pose.ndim not in (2, 3) or tuple(pose.shape[-2:]) != (4, 4):
        shape = tuple(pose.shape) if isinstance(pose, torch.Tensor) else type(pose).__name__
        raise MotionError(f"pose must be a (4, 4) or (B, 4, 4) tensor, got {shape}")
    return pose.to(torch.float64).reshape(-1, 4, 4)


def pose_to_motion(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera pose as the 3D-step settings of :func:`~discolib.animation.motion.reproject_3d`.

    Args:
        pose: ``(4, 4)`` or ``(B, 4, 4)`` camera-to-photo transform of the new camera: its columns ``[:3, :3]`` are
            the new camera's axes and ``[:3, 3]`` its centre, both in the *photo* camera's frame, in
            :mod:`~discolib.animation.motion`'s axes (``x`` right, ``y`` down, ``z`` forward) and the depth map's
            units. The identity is the photo's own camera; a centre ``(0, 0, 0.1)`` has moved 0.1 forward.

    Returns:
        ``rotation_deg`` and ``translation``, each ``(B, 3)`` (float64 on ``pose``'s device), such that
        ``reproject_3d(photo, depth, rotation_deg, translation, camera="pinhole")`` renders the photo from ``pose``:
        motion's transform is ``X_new = R^T X_old + t`` with ``R = Rx Ry Rz`` (the Euler angles below) and
        ``t = (-tx, ty, -tz) * TRANSLATION_SCALE``, and ``X_old = R_c X_new + c`` gives ``R = R_c``,
        ``t = -R_c^T c``.
    """
    m = _check_pose(pose)
    if not torch.isfinite(m).all():
        raise MotionError("pose must be finite")
    rot = m[:, :3, :3]
    if not torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=rot.dtype, device=rot.device), atol=1e-4):
        raise MotionError("pose[:3, :3] must be a rotation matrix (orthonormal)")
    # R = Rx(a) Ry(b) Rz(c): R[0, 2] = sin b, R[1, 2] = -sin a cos b, R[2, 2] = cos a cos b, R[0, 1] = -cos b sin c,
    # R[0, 0] = cos b cos c (motion.rotation_matrix_3d, expanded).
    b = torch.asin(rot[:, 0, 2].clamp(-1.0, 1.0))
    a = torch.atan2(-rot[:, 1, 2], rot[:, 2, 2])
    c = torch.atan2(-rot[:, 0, 1], rot[:, 0, 0])
    # Gimbal lock (b = +-90 degrees): only a +- c is defined; take c = 0 and a from R[1, 0], R[1, 1].
    locked = rot[:, 0, 2].abs() > 1.0 - 1e-9
    if locked.any():
        sign = torch.sign(rot[:, 0, 2])
        a = torch.where(locked, torch.atan2(sign * rot[:, 1, 0], rot[:, 1, 1]), a)
        c = torch.where(locked, torch.zeros_like(c), c)
    rotation_deg = torch.rad2deg(torch.stack((a, b, c), dim=-1))
    t = -(rot.transpose(1, 2) @ m[:, :3, 3:]).squeeze(-1)
    sign = torch.tensor([-1.0, 1.0, -1.0], dtype=t.dtype, device=t.device)
    return rotation_deg, t * sign / motion.TRANSLATION_SCALE


def stereo_pair(
    photo: torch.Tensor,
    depth: torch.Tensor,
    pose: torch.Tensor,
    *,
    fov_deg: float,
    ipd: float,
    padding_mode: PaddingMode = "border",
    sampling_mode: SamplingMode = "bilinear",
    depth_refinement_steps: int = 1,
    near: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The left and right eye views of ``photo`` seen from camera ``pose`` (a stereo frame of a photo animation).

    Each eye is the camera ``pose`` moved ``ipd / 2`` along its own ``x`` axis (left eye to ``-x``, right eye to
    ``+x``; parallel axes, no toe-in, no fish-eye: the rigid pinhole of
    :func:`~discolib.animation.motion.reproject_3d` with ``camera="pinhole"``). A plane at depth ``D`` then has
    the horizontal disparity ``x_left - x_right = f * ipd / D`` pixels, ``f = (H / 2) / tan(fov / 2)``.

    Args:
        photo: ``(B, C, H, W)`` the photo (usually ``B = 1``).
        depth: ``(B, 1, H, W)`` its positive depth in world units (larger = farther).
        pose: ``(4, 4)`` or ``(B, 4, 4)`` the (centre) camera's pose, as :func:`pose_to_motion` reads it.
        fov_deg: the pinhole's vertical field of view, degrees.
        ipd: the distance between the eyes, in the depth's units (>= 0).
        padding_mode, sampling_mode, depth_refinement_steps, near: as :func:`~discolib.animation.motion.reproject_3d`.

    Returns:
        ``(left, right, (left_mask, right_mask))``: views ``(B, C, H, W)`` and bool masks ``(B, 1, H, W)``,
        ``True`` where that eye sees what the photo does not show (to be filled). Both eyes are one batched warp.
    """
    check_image_batch(photo, "photo", channels=None, error=MotionError)
    check_image_batch(depth, "depth", channels=1, error=MotionError)
    b = photo.shape[0]
    if depth.shape[0] != b:
        raise MotionError(f"depth batch {depth.shape[0]} does not match photo batch {b}")
    half = _finite(ipd, "ipd") / 2.0
    if half < 0:
        raise MotionError(f"ipd must be >= 0, got {ipd}")
    centre = _check_pose(pose)
    if centre.shape[0] not in (1, b):
        raise MotionError(f"pose batch {centre.shape[0]} does not match photo batch {b}")
    centre = centre.expand(b, 4, 4)
    shift = torch.eye(4, dtype=torch.float64, device=centre.device).repeat(2, 1, 1)
    shift[0, 0, 3], shift[1, 0, 3] = -half, half  # along the eye camera's own x axis
    eyes = torch.cat((centre @ shift[0], centre @ shift[1]))  # all left eyes, then all right eyes
    rotation_deg, translation = pose_to_motion(eyes)
    views, masks = motion.reproject_3d(
        photo.repeat(2, 1, 1, 1),
        depth.repeat(2, 1, 1, 1),
        rotation_deg.to(device=photo.device, dtype=photo.dtype),
        translation.to(device=photo.device, dtype=photo.dtype),
        fov_deg=fov_deg,
        near=near,
        padding_mode=padding_mode,
        sampling_mode=sampling_mode,
        depth_refinement_steps=depth_refinement_steps,
        camera="pinhole",
    )
    return views[:b], views[b:], (masks[:b], masks[b:])


def _check_pair(left: torch.Tensor, right: torch.Tensor) -> None:
    check_image_batch(left, "left", channels=None, error=MotionError)
    check_image_batch(right, "right", channels=None, error=MotionError)
    if left.shape != right.shape:
        raise MotionError(f"left and right views must have the same shape, got {tuple(left.shape)} and {tuple(right.shape)}")


def side_by_side(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The two eye views next to each other, left eye on the left: ``(B, C, H, W)`` x 2 -> ``(B, C, H, 2W)``.

    Full-width side-by-side, what VR players and YouTube's 3D "left-right" layout read.
    """
    _check_pair(left, right)
    return torch.cat((left, right), dim=-1)


#: Dubois's least-squares red-cyan anaglyph matrices, from E. Dubois, "Conversion of a stereo pair to anaglyph with
#: the least-squares projection method" (University of Ottawa, March 2009; the revised values, replacing those of
#: his 2001 ICASSP paper "A projection method to generate anaglyph stereo images"). Rows give the anaglyph's
#: R, G, B from the left / right eye's R, G, B; they are meant for linear light (the sRGB curve removed first).
DUBOIS_RED_CYAN_LEFT: tuple[tuple[float, float, float], ...] = (
    (0.437, 0.449, 0.164),
    (-0.062, -0.062, -0.024),
    (-0.048, -0.050, -0.017),
)
DUBOIS_RED_CYAN_RIGHT: tuple[tuple[float, float, float], ...] = (
    (-0.011, -0.032, -0.007),
    (0.377, 0.761, 0.009),
    (-0.026, -0.093, 1.234),
)


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).pow(2.4))


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp(min=0.0031308).pow(1.0 / 2.4) - 0.055)


def anaglyph(
    left: torch.Tensor, right: torch.Tensor, *, mode: Literal["dubois", "color"] = "dubois"
) -> torch.Tensor:
    """A red-cyan anaglyph ``(B, 3, H, W)`` in ``[0, 1]`` from two sRGB eye views ``(B, 3, H, W)`` in ``[0, 1]``.

    ``"color"``: red from the left view, green and blue from the right (full colour, some retinal rivalry on
    saturated reds and cyans). ``"dubois"``: Dubois's least-squares projection (:data:`DUBOIS_RED_CYAN_LEFT` /
    :data:`DUBOIS_RED_CYAN_RIGHT`) in linear light, clipped to ``[0, 1]`` and encoded back to sRGB: less ghosting
    and rivalry through red-cyan glasses, at the cost of some colour.
    """
    _check_pair(left, right)
    if left.shape[1] != 3:
        raise MotionError(f"anaglyph needs RGB views (B, 3, H, W), got {tuple(left.shape)}")
    if mode == "color":
        return torch.cat((left[:, :1], right[:, 1:]), dim=1)
    if mode != "dubois":
        raise MotionError(f"anaglyph mode must be 'dubois' or 'color', got {mode!r}")
    m_left = torch.tensor(DUBOIS_RED_CYAN_LEFT, dtype=left.dtype, device=left.device)
    m_right = torch.tensor(DUBOIS_RED_CYAN_RIGHT, dtype=left.dtype, device=left.device)
    lin_l = _srgb_to_linear(left.clamp(0.0, 1.0))
    lin_r = _srgb_to_linear(right.clamp(0.0, 1.0))
    mixed = torch.einsum("oc,bchw->bohw", m_left, lin_l) + torch.einsum("oc,bchw->bohw", m_right, lin_r)
    return _linear_to_srgb(mixed.clamp(0.0, 1.0))
