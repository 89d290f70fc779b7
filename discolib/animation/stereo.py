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
from typing import Any

import torch
import torch.nn.functional as F

from discolib.animation import motion
from discolib.animation.motion import MotionError, PaddingMode, SamplingMode
from discolib.models.device import upload
from discolib.ops import check_image_batch

__all__ = [
    "DISCO_SPHERICAL_MAGNITUDE",
    "eye_poses",
    "eye_views",
    "spherical_grid",
    "spherical_projection",
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
