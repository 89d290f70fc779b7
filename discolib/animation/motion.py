r"""Frame-to-frame camera motion as sampling grids: 2D affine and 3D depth reprojection.

Everything here is functional, batched and device/dtype agnostic: images are ``(B, C, H, W)`` tensors (any
``C``: RGB frames, latents, depth maps), per-frame motion parameters are ``(B,)`` / ``(B, 3)`` tensors (or Python
numbers, broadcast to the batch). Warps are *backward*: for each pixel of the new frame we compute where to read
it in the previous frame and sample there with :func:`torch.nn.functional.grid_sample` (the 2D warp of CPU float32
frames samples with OpenCV's ``cv2.warpAffine`` instead: the same maths, ~3.5-4x faster; see :func:`warp_2d`).

Coordinate conventions
----------------------
* Pixel coordinates ``(u, v)``: ``u`` to the right, ``v`` down, pixel centres at integers; the image covers
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* Normalised coordinates (what ``grid_sample`` reads, ``align_corners=False``):
  ``x = (2u + 1) / W - 1``, ``y = (2v + 1) / H - 1``; the image covers exactly ``[-1, 1]^2``.
* Camera frame (3D): ``x`` right, ``y`` down, ``z`` forward (into the picture), depth = ``z``. This is the frame
  Disco/Deforum effectively use (they stack ``grid_sample`` coordinates with depth and project with positive
  focal terms). Two cameras (``camera=``, see "The originals' camera" below): ``"deforum"`` (default), the
  originals' own, and ``"pinhole"``, a rigid pinhole with square pixels, principal point at the image centre and a
  *vertical* field of view: ``f = (H / 2) / tan(fov / 2)`` pixels, ``c = ((W - 1) / 2, (H - 1) / 2)`` (the
  originals' camera is this one, to first order, only on a square frame with flat depth ``1 / tan(fov / 2)``).

Sign conventions (followed so Disco/Deforum settings give the same directions)
-----------------------------------------------------------------------------
2D (Deforum ``anim_frame_warp_2d``: ``cv2.getRotationMatrix2D(centre, angle, zoom) @ translate``):

* ``angle_deg > 0`` rotates the *content* counter-clockwise on screen;
* ``zoom > 1`` enlarges the content (zoom in);
* ``tx_px > 0`` moves the content right, ``ty_px > 0`` moves it down (pixels per frame);
* the translation is applied first, then rotation and zoom about the centre (as Deforum).
  Deforum uses ``(W // 2, H // 2)`` as centre; we use the true image centre (half a pixel apart).

3D (Deforum ``anim_frame_warp_3d`` / Disco ``do_3d_step``): the settings' translations are scaled by
``TRANSLATION_SCALE = 1/200`` and the previous-to-new camera transform is, in PyTorch3D's row-vector convention,
``X_new = X_old R + T`` (``X_new = R^T X_old + T`` as columns) with ``T = (-tx, +ty, -tz) / 200`` and
``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` (standard right-handed axis rotations; PyTorch3D
``euler_angles_to_matrix(..., "XYZ")``). In words, per frame:

* ``translation_x > 0``: camera moves right (content moves left; note the *opposite* of 2D ``tx``, as in Deforum);
* ``translation_y > 0``: camera moves up (content moves down, like 2D ``ty``);
* ``translation_z > 0``: camera moves forward (zoom in);
* ``rotation_3d_x > 0``: camera tilts up (content moves down);
* ``rotation_3d_y > 0``: camera pans right (content moves left);
* ``rotation_3d_z > 0``: content rotates counter-clockwise on screen (same as 2D ``angle > 0``).

The originals' camera (``camera="deforum"``)
-------------------------------------------
Disco v5.7 (``disco_xform_utils.transform_image_3d``), deforum-stable-diffusion and sd-webui-deforum
(``transform_image_3d*``) take the points ``P = (x, y, D)`` -- ``x, y`` on ``linspace(-1, 1)`` over the frame,
``D`` the depth map -- project them with PyTorch3D's ``FoVPerspectiveCameras(near, far, aspect_ratio, fov)``
before and after the move, and subtract the difference from the identity sampling grid (``affine_grid``):
``grid(u) = u - (pi(P R + T) - pi(P))`` with ``pi(X) = (X_x / (a t X_z), X_y / (t X_z))``, ``t = tan(fov / 2)``,
``a = aspect_ratio``. PyTorch3D's projection matrix is ``[[1/(a t), 0, 0, 0], [0, 1/t, 0, 0], [0, 0, f/(f-n),
-f n/(f-n)], [0, 0, 1, 0]]``: ``near``/``far`` only reach the NDC depth, which the warp drops, so **they never
change the motion**; ``fov`` and ``aspect_ratio`` only scale it. Writing ``P = D (x / D, y / D, 1)`` shows what
camera this is: at a pixel of depth ``D`` it is the pinhole of normalised focal length ``D`` (field of view
``2 atan(1 / D)``, principal point at the centre, square in normalised coordinates, i.e. pixels stretched by
``W / H`` on a wide frame), moved by ``R, T``, and its displacement multiplied by the gain
``1 / (t D)`` (horizontally ``1 / (a t D)``). So:

* translations move a pixel by ``T / (t D)`` in normalised units: parallax ``1 / D`` as a pinhole, scaled by ``1/t``
  (narrow fov = more motion: ``translation_z = 10`` on flat depth 1 zooms 1.43x per frame at fov 20, 1.06x at 90);
* rotations turn content by about ``angle / (t D)``: near content turns faster than far content (webui's depth
  spans ``[1, 2]``, so by up to 2x): ``rotation_3d_z`` turns the frame rigidly only on flat depth;
* the aspect ratio is 1 in Disco and deforum-stable-diffusion (equal normalised motion on both axes, i.e.
  ``W / H`` more pixels horizontally than a square-pixel camera); webui's ``aspect_ratio_schedule`` divides the
  horizontal motion (``aspect_ratio_use_old_formula``: ``W / H``). (So *not* ``W / H`` by default.)
* depth is in the originals' units (:func:`discolib.models.depth.depth_for_warp`): raw MiDaS-style values in
  Disco and deforum-stable-diffusion, each frame normalised into ``[1, 2]`` in webui, ones without a depth model.

No rigid camera moves like this once depth varies (the gain differs per pixel): a rigid pinhole fitted to it agrees
only to cosine ~0.97 on webui's ``[1, 2]`` depth. ``"deforum"`` therefore keeps the originals' per-pixel camera and
adds what discolib's reprojection adds to any camera: each new pixel reads the depth of the surface that lands on
it, not the old depth at its own position. With ``d`` the depth used at target pixel ``u`` (normalised), the
source is ``s(d) = u - (pi(P_d R + T) - pi(P_d))``, ``P_d = (u_lin, d)`` (``u_lin = u W / (W - 1)``, the
originals' linspace position of the same pixel), and ``d`` is the fixed point ``d = D(s(d))`` (bilinear samples
of ``D``), iterated ``depth_refinement_steps`` times from ``d_0 = D(u)``: with 0 steps the grid *is* the
originals'; over constant depth every step gives that same grid. Where
depth varies, the pixel moves with the parallax of the point it shows (the originals use the parallax of whatever
the previous frame had at the target pixel: up to ~6% apart at fov 20 with ``translation_y = 10`` on a ground plane).
Tests and ``benchmarks/motion_parity.py`` compare it with a numpy re-derivation of the originals' grid: within 1e-6
at 0 steps; ratio of mean displacement within 5% and cosine >= 0.99 at the default 1 step, fov 20-120,
square and 16:9, each motion and combined, on smooth synthetic depth of either convention.

Disocclusion mask (``"deforum"``): ``True`` where the source lies outside the old image, or the moved point is
behind the near clip (``P R + T`` has ``z <= near``) or beyond ``far``, or its depth is ``<= near``.

The rigid pinhole (``camera="pinhole"``)
---------------------------------------
Depth in world units (the translation's units after the 1/200 scale); ``near``/``far`` clip distances in those
units; ``t`` below is the translation :func:`camera_motion` returns. Let ``r(u) = K^{-1} [u, v, 1]^T`` be the ray of target pixel ``u`` (z-component 1), ``D`` the previous
frame's depth map and ``d(u)`` the (unknown) depth of target pixel ``u`` in the *new* view. The target point in
the new camera is ``X = d r``; in the old camera it is ``P = R (X - t) = d R r - R t``; its source pixel is
``u' = pi(K P) = (f P_x / P_z + c_x, f P_y / P_z + c_y)``, i.e. in normalised coordinates
``x' = (2f / W) P_x / P_z``, ``y' = (2f / H) P_y / P_z`` (the principal-point terms cancel).

``d`` is exact when the old surface point seen at ``u'`` is ``P`` itself, i.e. ``P_z = D(u')``. We solve this by
a fixed-point iteration that only needs backward sampling of ``D``:

1. start from the new-view depth of the old surface point at the *same* pixel,
   ``d_0(u) = D(u) (R^T r(u))_z + t_z``;
2. ``d_{k+1} = D(u'_k) (d_k - t_z) / P_{z,k} + t_z`` -- the new-view depth of the old surface point on the
   old ray through ``u'_k`` (since ``(R^T P)_z = d - t_z``; on that ray ``z_new`` is linear in the old depth).

A fixed point has ``P_z = D(u')`` (the point lies on the old surface), so the correspondence is exact. With
``depth_refinement_steps`` iterations: any pure rotation is exact at every step (``u'`` does not depend on
``d``: the homography ``K R K^{-1}``); any translation over constant depth is exact from ``d_0`` (a sideways
move is the pixel shift ``f * t_x / D``, a forward move the zoom ``D / (D - dz)`` about the centre); smooth
non-constant depth converges to the exact warp up to the bilinear interpolation of ``D``. At occlusion
boundaries the iteration settles on one of the surfaces (no z-buffer; that needs forward splatting).

Disocclusion mask (``"pinhole"``): ``True`` where the new pixel has no source in the old frame: the source lies
outside the old image (``|x'| > 1`` or ``|y'| > 1``), or in front of the old camera's near plane / behind it
(``P_z <= near``), beyond ``far``, or the target depth itself is ``<= near``. Masked pixels are still filled by
``padding_mode`` (both cameras).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from kornia.geometry.transform import get_rotation_matrix2d

from discolib.errors import InputError
from discolib.models.device import upload
from discolib.ops import check_image_batch, scratch

__all__ = [
    "TRANSLATION_SCALE",
    "CameraModel",
    "MotionError",
    "PaddingMode",
    "SamplingMode",
    "WarpBackend",
    "affine_2d_grid",
    "affine_2d_matrix",
    "camera_intrinsics",
    "camera_motion",
    "reproject_3d",
    "reproject_3d_grid",
    "rotation_matrix_3d",
    "sample_grid",
    "warp_2d",
    "warp_2d_u8",
]

#: Disco/Deforum scale from a ``translation_*`` setting to world units (``translation_x=10`` -> 0.05).
TRANSLATION_SCALE: float = 1.0 / 200.0

PaddingMode = Literal["replicate", "border", "wrap", "reflect", "reflection", "zeros"]
SamplingMode = Literal["bilinear", "bicubic", "nearest"]
#: Who samples the 2D warp: ``"auto"`` (OpenCV for CPU float32 tensors without gradient, else torch), ``"torch"``
#: (``grid_sample``, every device and dtype, differentiable) or ``"opencv"`` (``cv2.warpAffine``, CPU tensors only).
WarpBackend = Literal["auto", "torch", "opencv"]
#: The 3D camera: ``"deforum"`` (Disco / Deforum's ``FoVPerspectiveCameras`` model, see the module docstring) or
#: ``"pinhole"`` (a physical pinhole: square pixels, vertical field of view, depth in world units).
CameraModel = Literal["deforum", "pinhole"]
_CAMERA_MODELS = ("deforum", "pinhole")

_GRID_SAMPLE_PADDING = {
    "replicate": "border",
    "border": "border",
    "reflect": "reflection",
    "reflection": "reflection",
    "zeros": "zeros",
}
_SAMPLING_MODES = ("bilinear", "bicubic", "nearest")
# Circular padding width for "wrap": bicubic reads 2 pixels beyond the sample point.
_WRAP_PAD = 2
_WARP_BACKENDS = ("auto", "torch", "opencv")
# OpenCV flags with the same maths as grid_sample(align_corners=False): both sample at pixel centres on integers,
# bicubic is Keys' kernel with a = -0.75 in both, nearest rounds half to even in both. torch's reflection with
# align_corners=False mirrors about the image edges (pixel -1 reads pixel 0: BORDER_REFLECT, "fedcba|abcdef"), not
# about the edge pixels' centres (BORDER_REFLECT_101, "gfedcb|abcdefg").
_CV_SAMPLING = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
_CV_PADDING = {
    "replicate": cv2.BORDER_REPLICATE,
    "border": cv2.BORDER_REPLICATE,
    "reflect": cv2.BORDER_REFLECT,
    "reflection": cv2.BORDER_REFLECT,
    "zeros": cv2.BORDER_CONSTANT,
    "wrap": cv2.BORDER_WRAP,
}
# Channels per cv2.warpAffine call (planes are interleaved with cv2.merge and read back with cv2.mixChannels, ~0.25 +
# 0.5 ms at 512^2, vs ~2.3 + 1.3 ms for a permute().contiguous() round trip). Measured at one thread, 512^2 and
# 1024^2, whole warp: OpenCV's bilinear kernel is fastest on 4 interleaved float32 channels (3 planes + a copy of the
# last; the float32 kernel alone then costs about what Deforum's uint8 3-channel warp does), ~25% ahead of 3
# single-plane calls; bicubic on 3 channels, ~20% ahead of single planes or 4 channels. Nearest: no clear winner.
_CV_GROUP = {"bilinear": 4, "bicubic": 3, "nearest": 4}
_CV_BUFFER_BYTES = 2048 * 2048 * 4 * 4  # per reused buffer (64 MB): larger frames get fresh arrays

ScalarOrTensor = float | int | Sequence[float] | torch.Tensor


class MotionError(InputError):
    """A motion parameter or input tensor is not what the warp expects."""


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    check_image_batch(image, name, channels=None, error=MotionError)


def _check_modes(padding_mode: str, sampling_mode: str) -> None:
    if padding_mode != "wrap" and padding_mode not in _GRID_SAMPLE_PADDING:
        allowed = ", ".join(["wrap", *_GRID_SAMPLE_PADDING])
        raise MotionError(f"padding_mode must be one of {allowed}; got {padding_mode!r}")
    if sampling_mode not in _SAMPLING_MODES:
        raise MotionError(f"sampling_mode must be one of {', '.join(_SAMPLING_MODES)}; got {sampling_mode!r}")


def _per_batch(
    value: ScalarOrTensor, batch: int, device: torch.device, dtype: torch.dtype, name: str
) -> torch.Tensor:
    """A scalar, ``(1,)`` or ``(B,)`` value as a ``(B,)`` tensor on ``device``/``dtype``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a fill kernel, not a blocking copy
        return torch.full((batch,), float(value), device=device, dtype=dtype)
    t = torch.as_tensor(value, device=device, dtype=dtype)
    if t.ndim == 0:
        return t.expand(batch)
    if t.ndim == 1 and t.shape[0] in (1, batch):
        return t.expand(batch)
    raise MotionError(f"{name} must be a number or have shape ({batch},), got {tuple(t.shape)}")


def _per_batch_vec3(
    value: ScalarOrTensor, batch: int, device: torch.device, dtype: torch.dtype, name: str
) -> torch.Tensor:
    """A ``(3,)``, ``(1, 3)`` or ``(B, 3)`` value as a ``(B, 3)`` tensor."""
    t = torch.as_tensor(value, device=device, dtype=dtype)
    if t.ndim == 1 and t.shape[0] == 3:
        return t.unsqueeze(0).expand(batch, 3)
    if t.ndim == 2 and t.shape[1] == 3 and t.shape[0] in (1, batch):
        return t.expand(batch, 3)
    raise MotionError(f"{name} must have shape (3,) or ({batch}, 3) as [x, y, z], got {tuple(t.shape)}")


def _pixel_to_normalized(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(3, 3)`` matrix from pixel coordinates to ``align_corners=False`` normalised coordinates."""
    m = torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]], dtype=dtype)
    return upload(m, torch.device(device))  # pinned: a host constant without a host sync


# --------------------------------------------------------------------------------------------------- sampling


def _grid_sample(image: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    """``F.grid_sample(..., align_corners=False)``, split into row bands on a multi-threaded CPU.

    PyTorch's CPU kernel parallelises over the batch only, so one frame (``B = 1``) runs on one core. Reading
    the rows of the output grid as a batch of bands, over a zero-copy expanded input, uses every intra-op thread
    and gives bit-identical results (each output pixel depends on its own grid entry only).
    """
    bands = torch.get_num_threads()
    b, h, w, _ = grid.shape
    if image.device.type != "cpu" or b != 1 or bands < 2 or h < 2 * bands:
        return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    rows = -(-h // bands)
    if rows * bands != h:  # pad with copies of the last row, cropped again below
        grid = torch.cat([grid, grid[:, -1:].expand(1, rows * bands - h, w, 2)], dim=1)
    out = F.grid_sample(
        image.expand(bands, -1, -1, -1),
        grid.reshape(bands, rows, w, 2),
        mode=mode,
        padding_mode=padding_mode,
        align_corners=False,
    )  # (bands, C, rows, W)
    out = out.transpose(0, 1).reshape(1, image.shape[1], rows * bands, w)
    return out if rows * bands == h else out[:, :, :h].contiguous()


def sample_grid(
    image: torch.Tensor,
    grid: torch.Tensor,
    padding_mode: PaddingMode = "replicate",
    sampling_mode: SamplingMode = "bilinear",
) -> torch.Tensor:
    """Sample ``image`` at normalised ``grid`` positions with Deforum-style padding modes.

    Args:
        image: ``(B, C, H, W)`` floating tensor (values are not clamped: bicubic may overshoot).
        grid: ``(B, H_out, W_out, 2)`` normalised ``(x, y)`` with ``align_corners=False`` (image = ``[-1, 1]^2``).
        padding_mode: what out-of-image samples read: ``"replicate"``/``"border"`` (nearest edge pixel),
            ``"reflect"``/``"reflection"`` (mirror at the image edges), ``"zeros"``, or ``"wrap"`` (the image
            tiles the plane: coordinates are wrapped modulo the image and read from a circularly padded copy, so
            interpolation across the seam is correct too).
        sampling_mode: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.

    Returns:
        ``(B, C, H_out, W_out)`` tensor.
    """
    _check_image(image)
    _check_modes(padding_mode, sampling_mode)
    if grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != image.shape[0]:
        raise MotionError(f"grid must have shape ({image.shape[0]}, H, W, 2), got {tuple(grid.shape)}")
    grid = grid.to(image.dtype)
    if padding_mode != "wrap":
        return _grid_sample(image, grid, sampling_mode, _GRID_SAMPLE_PADDING[padding_mode])
    h, w = image.shape[-2:]
    p = _WRAP_PAD
    # grid_sample has no wrap mode: wrap the coordinates into [-1, 1) (the image is periodic with period 2)
    # and sample a copy padded circularly by p pixels, whose normalised frame is the original one scaled by
    # W / (W + 2p), so bilinear/bicubic taps across the seam read the pixels of the opposite edge.
    padded = F.pad(image, (p, p, p, p), mode="circular")
    wrapped = torch.remainder(grid + 1.0, 2.0) - 1.0
    scale = upload(torch.tensor([w / (w + 2 * p), h / (h + 2 * p)], dtype=grid.dtype), grid.device)
    return _grid_sample(padded, wrapped * scale, sampling_mode, "border")


# --------------------------------------------------------------------------------------------------- 2D


def affine_2d_matrix(
    size: tuple[int, int],
    angle_deg: ScalarOrTensor,
    zoom: ScalarOrTensor,
    tx_px: ScalarOrTensor,
    ty_px: ScalarOrTensor,
    center_x: ScalarOrTensor = 0.5,
    center_y: ScalarOrTensor = 0.5,
    *,
    batch: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The forward 2D motion (old pixel -> new pixel) as ``(B, 3, 3)`` matrices in pixel coordinates.

    Deforum's ``rot_mat @ trans_mat``: translate by ``(tx_px, ty_px)``, then rotate by ``angle_deg``
    (counter-clockwise on screen) and scale by ``zoom`` about the centre ``(center_x * W - 0.5,
    center_y * H - 0.5)`` (fractions of width/height; 0.5 = image centre). Built with
    :func:`kornia.geometry.transform.get_rotation_matrix2d`.

    Args:
        size: ``(H, W)`` of the image.
        angle_deg, zoom, tx_px, ty_px, center_x, center_y: numbers or ``(B,)`` tensors.
        batch: ``B`` (default: the longest parameter, else 1).
        device, dtype: of the result (default: of the first tensor parameter, else CPU float32).

    Returns:
        ``(B, 3, 3)`` homogeneous matrices ``M`` with ``[u_new, v_new, 1]^T = M [u_old, v_old, 1]^T``.
    """
    h, w = size
    params = (angle_deg, zoom, tx_px, ty_px, center_x, center_y)
    tensors = [p for p in params if isinstance(p, torch.Tensor)]
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")
    if dtype is None:
        dtype = tensors[0].dtype if tensors and tensors[0].is_floating_point() else torch.float32
    device = torch.device(device)
    if batch is None:
        batch = max((torch.as_tensor(p).numel() for p in params), default=1)
    angle = _per_batch(angle_deg, batch, device, dtype, "angle_deg")
    zoom_t = _per_batch(zoom, batch, device, dtype, "zoom")
    # Validate on the host only (no device sync): numbers, sequences and CPU tensors.
    if zoom_t.device.type == "cpu" and bool((zoom_t <= 0).any()):
        raise MotionError(f"zoom must be > 0 (a factor per frame, 1 = no zoom), got {zoom_t.tolist()}")
    if not isinstance(zoom, torch.Tensor) and zoom_t.device.type != "cpu" and min(
        torch.as_tensor(zoom, dtype=torch.float64).reshape(-1).tolist()
    ) <= 0:
        raise MotionError(f"zoom must be > 0 (a factor per frame, 1 = no zoom), got {zoom}")
    tx = _per_batch(tx_px, batch, device, dtype, "tx_px")
    ty = _per_batch(ty_px, batch, device, dtype, "ty_px")
    cx = _per_batch(center_x, batch, device, dtype, "center_x") * w - 0.5
    cy = _per_batch(center_y, batch, device, dtype, "center_y") * h - 0.5
    rot = get_rotation_matrix2d(torch.stack((cx, cy), dim=-1), angle, torch.stack((zoom_t, zoom_t), dim=-1))
    bottom = upload(torch.tensor([0.0, 0.0, 1.0], dtype=dtype), torch.device(device)).expand(batch, 1, 3)
    rot3 = torch.cat((rot, bottom), dim=1)
    trans3 = torch.eye(3, device=device, dtype=dtype).repeat(batch, 1, 1)
    trans3[:, 0, 2] = tx
    trans3[:, 1, 2] = ty
    return rot3 @ trans3


def affine_2d_grid(
    shape: tuple[int, int, int],
    angle_deg: ScalarOrTensor,
    zoom: ScalarOrTensor,
    tx_px: ScalarOrTensor,
    ty_px: ScalarOrTensor,
    center_x: ScalarOrTensor = 0.5,
    center_y: ScalarOrTensor = 0.5,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Sampling grid of the 2D motion (see :func:`affine_2d_matrix` for units and signs).

    Args:
        shape: ``(B, H, W)``.
        angle_deg: ``(B,)`` degrees per frame, positive = content rotates counter-clockwise.
        zoom: ``(B,)`` factor per frame, ``> 1`` zooms in.
        tx_px, ty_px: ``(B,)`` pixels per frame, positive = content moves right / down.
        center_x, center_y: transform centre as fractions of width / height.

    Returns:
        ``(B, H, W, 2)`` normalised source coordinates for ``grid_sample(..., align_corners=False)``;
        zero motion gives the exact identity grid.
    """
    b, h, w = shape
    fwd = affine_2d_matrix(
        (h, w), angle_deg, zoom, tx_px, ty_px, center_x, center_y, batch=b, device=device, dtype=dtype
    )
    norm = _pixel_to_normalized(h, w, fwd.device, fwd.dtype)
    # Backward map in normalised coordinates: N M^{-1} N^{-1}.
    theta = norm @ torch.linalg.inv(fwd) @ torch.linalg.inv(norm)
    return F.affine_grid(theta[:, :2, :], [b, 1, h, w], align_corners=False)


_MOTION_2D_NAMES = ("angle_deg", "zoom", "tx_px", "ty_px", "center_x", "center_y")


def _affine_2d_inverse(size: tuple[int, int], params: Sequence[ScalarOrTensor], batch: int) -> np.ndarray:
    """``(B, 2, 3)`` float64 backward maps (new pixel -> old pixel) of :func:`affine_2d_matrix`, on the host.

    The inverses of the same matrices (equal to 1e-12, tested) in closed form, ~10 us for numbers:
    :func:`affine_2d_matrix` spends ~1 ms in small tensor ops, a third of a whole OpenCV warp at 512^2.
    ``params``: ``angle_deg, zoom, tx_px, ty_px, center_x, center_y`` as numbers or ``(B,)`` values.
    """
    h, w = size
    cpu, f64 = torch.device("cpu"), torch.float64
    columns = [
        [float(v)] * batch
        if isinstance(v, int | float)
        else _per_batch(v.detach() if isinstance(v, torch.Tensor) else v, batch, cpu, f64, name).tolist()
        for v, name in zip(params, _MOTION_2D_NAMES, strict=True)
    ]
    if min(columns[1]) <= 0:
        raise MotionError(f"zoom must be > 0 (a factor per frame, 1 = no zoom), got {columns[1]}")
    out = np.empty((batch, 2, 3))
    for i, (angle, zoom, tx, ty, cx, cy) in enumerate(zip(*columns, strict=True)):
        rad = math.radians(angle)
        a, b = zoom * math.cos(rad), zoom * math.sin(rad)
        cx, cy = cx * w - 0.5, cy * h - 0.5
        # Forward (kornia's get_rotation_matrix2d = cv2.getRotationMatrix2D about (cx, cy), times the translation):
        # [[a, b, e], [-b, a, f]]; its inverse: [[a, -b], [b, a]] / (a^2 + b^2) and offset -A^-1 (e, f).
        e = (1 - a) * cx - b * cy + a * tx + b * ty
        f = b * cx + (1 - a) * cy - b * tx + a * ty
        det = a * a + b * b
        out[i] = [[a / det, -b / det, (b * f - a * e) / det], [b / det, a / det, -(b * e + a * f) / det]]
    return out


def _use_opencv(image: torch.Tensor, params: Sequence[ScalarOrTensor], backend: str) -> bool:
    """Whether :func:`warp_2d` samples with OpenCV (see :data:`WarpBackend`)."""
    if backend not in _WARP_BACKENDS:
        raise MotionError(f"backend must be one of {', '.join(_WARP_BACKENDS)}; got {backend!r}")
    if backend == "torch":
        return False
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (image, *params)
    )
    if backend == "opencv":
        if image.device.type != "cpu":
            raise MotionError(f"backend='opencv' needs a CPU tensor, got one on {image.device}")
        if needs_grad:
            raise MotionError("backend='opencv' is not differentiable; use backend='torch' (or torch.no_grad())")
        return True
    # float64 stays on torch: it is asked for precision, and OpenCV 5's float64 warps are not float-exact (measured
    # vs torch: 0.02 off bilinear, more bicubic; its float32 kernels are exact to rounding).
    return image.device.type == "cpu" and image.dtype == torch.float32 and not needs_grad



def _warp_2d_opencv(
    image: torch.Tensor, inverse: np.ndarray, padding_mode: str, sampling_mode: str
) -> torch.Tensor:
    """``cv2.warpAffine`` of each ``(C, H, W)`` image with its ``(2, 3)`` backward map ``inverse[i]``.

    Computed in float32 (other dtypes are converted there and back). The planes of the contiguous tensor are
    zero-copy numpy views: a single channel is warped straight into the output tensor; more channels go in groups
    of ``_CV_GROUP`` interleaved with ``cv2.merge`` (OpenCV's vectorised kernels read interleaved 3- and 4-channel
    pixels; a short group repeats its last plane) and come back with ``cv2.mixChannels`` into the output planes --
    both cheaper than a ``permute(...).contiguous()`` round trip. One call per image and group: OpenCV runs each call
    on ``cv2.getNumThreads()`` threads.
    """
    src = image.detach().to(torch.float32).contiguous()
    b, c, h, w = src.shape
    out = torch.empty((b, c, h, w), dtype=torch.float32)
    x, y = src.numpy(), out.numpy()
    flags = _CV_SAMPLING[sampling_mode] | cv2.WARP_INVERSE_MAP
    border, group = _CV_PADDING[padding_mode], _CV_GROUP[sampling_mode]
    for i in range(b):
        for start in range(0, c, group):
            planes, targets = list(x[i, start : start + group]), list(y[i, start : start + group])
            if len(planes) == 1:
                cv2.warpAffine(planes[0], inverse[i], (w, h), dst=targets[0], flags=flags, borderMode=border)
                continue
            # Reused per thread (ops.scratch): fresh 4 MB arrays at 512^2 would be page-faulted in on every call.
            packed = scratch("warp_2d.packed", (h, w, group), max_bytes=_CV_BUFFER_BYTES)
            warped = scratch("warp_2d.warped", (h, w, group), max_bytes=_CV_BUFFER_BYTES)
            packed = cv2.merge(planes + planes[-1:] * (group - len(planes)), dst=packed)
            warped = cv2.warpAffine(packed, inverse[i], (w, h), dst=warped, flags=flags, borderMode=border)
            cv2.mixChannels([warped], targets, [k for j in range(len(targets)) for k in (j, j)])
    return out if image.dtype == torch.float32 else out.to(image.dtype)


def warp_2d(
    image: torch.Tensor,
    angle_deg: ScalarOrTensor = 0.0,
    zoom: ScalarOrTensor = 1.0,
    tx_px: ScalarOrTensor = 0.0,
    ty_px: ScalarOrTensor = 0.0,
    center_x: ScalarOrTensor = 0.5,
    center_y: ScalarOrTensor = 0.5,
    padding_mode: PaddingMode = "replicate",
    sampling_mode: SamplingMode = "bilinear",
    backend: WarpBackend = "auto",
) -> torch.Tensor:
    """Apply one frame of Deforum 2D motion to ``image``.

    On a CPU tensor of float32 without gradient (``backend="auto"``) the warp runs on OpenCV's ``cv2.warpAffine``
    with the inverse of :func:`affine_2d_matrix` (pixel centres on integers, as OpenCV's), ~3.5-4x faster than building
    a grid and sampling it at one thread (4-7x at two); elsewhere (CUDA, float64, gradients, ``backend="torch"``) it is
    :func:`affine_2d_grid` + :func:`sample_grid`, unchanged. Both compute the same interpolation (modes mapped one to
    one: bilinear, bicubic with ``a = -0.75``, nearest rounding half to even; replicate, reflect about the image edges
    = ``BORDER_REFLECT``, zeros, wrap) with float32 source positions: OpenCV 5 warps float32 in floating point (no
    1/32-pixel tables), so the backends differ only by how the positions round, which grows with the image size.
    Measured on [0, 1] images (photo-like and uniform noise, every padding, Deforum's default motion and a large
    one): max abs difference per pixel <= 1e-4 at 256^2 (pinned in tests: 2e-4, mean 1e-5), <= 1.9e-4 at 512^2,
    <= 3.8e-4 = 0.096 / 255 at 1024^2 (mean <= 3e-5), each backend as close as the other to the float64 warp.
    Nearest is identical except at ~1e-4 of the pixels, whose source lies within rounding of a pixel boundary (they
    take the neighbouring pixel). Chained over 30 frames of Deforum's motion (512^2) the CPU and GPU-path frames stay
    within 3e-5 (bilinear) / 2.2e-4 (bicubic) of each other, and 0.05% / 0.4% of their 8-bit values differ by one
    level. So CPU (OpenCV) and GPU (torch) frames of a 2D render agree to a fraction of an 8-bit level; each backend
    is deterministic (same inputs, same bytes, whatever the OpenCV thread count or memory layout).

    Args:
        image: ``(B, C, H, W)`` floating tensor.
        angle_deg, zoom, tx_px, ty_px, center_x, center_y: see :func:`affine_2d_grid`.
        padding_mode: ``"replicate"`` (Deforum's default), ``"wrap"``, ``"reflect"``, ``"zeros"``, ``"border"``.
        sampling_mode: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        backend: ``"auto"``, ``"torch"`` or ``"opencv"`` (see :data:`WarpBackend`; ``"opencv"`` computes in
            float32 whatever the dtype and is not differentiable).

    Returns:
        ``(B, C, H, W)`` warped image.
    """
    _check_image(image)
    _check_modes(padding_mode, sampling_mode)
    b, _, h, w = image.shape
    params = (angle_deg, zoom, tx_px, ty_px, center_x, center_y)
    if _use_opencv(image, params, backend):
        return _warp_2d_opencv(image, _affine_2d_inverse((h, w), params, b), padding_mode, sampling_mode)
    grid = affine_2d_grid(
        (b, h, w), angle_deg, zoom, tx_px, ty_px, center_x, center_y, device=image.device, dtype=image.dtype
    )
    return sample_grid(image, grid, padding_mode, sampling_mode)


def warp_2d_u8(
    frame: np.ndarray,
    angle_deg: float = 0.0,
    zoom: float = 1.0,
    tx_px: float = 0.0,
    ty_px: float = 0.0,
    center_x: float = 0.5,
    center_y: float = 0.5,
    padding_mode: PaddingMode = "replicate",
    sampling_mode: SamplingMode = "bilinear",
) -> np.ndarray:
    """:func:`warp_2d` of one 8-bit frame as Deforum holds it between frames: ``(H, W, 3)`` or ``(H, W, 4)`` uint8
    -> ``(H, W, 4)`` uint8 whose first three channels are the warped RGB (the fourth is padding, undefined).

    The same backward map as :func:`warp_2d` (:func:`_affine_2d_inverse`), sampled by ``cv2.warpAffine`` on uint8.
    OpenCV 5 interpolates uint8 in floating point and rounds once, so the result is :func:`warp_2d`'s float warp of
    the same frame rounded to 8 bits (within half a level, tested): what Deforum's own uint8 ``warpPerspective``
    keeps. The frame travels as 4 interleaved channels because OpenCV 5's 4-channel uint8 kernel is 3-4x faster than
    its 3-channel one (measured at 512^2 and 1024^2, one thread; the first three channels are bit-identical), which
    makes this stage faster than Deforum's 3-channel warp of the same frame (benchmarks/bench_compare.py).
    CPU only, not differentiable, deterministic.
    """
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] in (3, 4)):
        got = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise MotionError(f"expected an (H, W, 3) or (H, W, 4) uint8 frame, got a {got}")
    _check_modes(padding_mode, sampling_mode)
    h, w = frame.shape[:2]
    inverse = _affine_2d_inverse((h, w), (angle_deg, zoom, tx_px, ty_px, center_x, center_y), 1)[0]
    if frame.shape[2] == 3:
        # Reused per thread (ops.scratch): the RGBA copy is only read by the warp below.
        rgba = scratch("warp_2d_u8.rgba", (h, w, 4), np.uint8, max_bytes=_CV_BUFFER_BYTES)
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2RGBA, dst=rgba)
    flags = _CV_SAMPLING[sampling_mode] | cv2.WARP_INVERSE_MAP
    # A fresh output: callers keep it (the colour reference, the next stage's input).
    return cv2.warpAffine(frame, inverse, (w, h), flags=flags, borderMode=_CV_PADDING[padding_mode])


# --------------------------------------------------------------------------------------------------- 3D


def camera_intrinsics(
    height: int,
    width: int,
    fov_deg: float,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pinhole intrinsics ``(1, 3, 3)`` for a vertical field of view ``fov_deg`` and square pixels.

    ``f = (H / 2) / tan(fov / 2)``, principal point at the image centre ``((W - 1) / 2, (H - 1) / 2)`` in pixel
    coordinates (pixel centres at integers).
    """
    if not 0.0 < fov_deg < 180.0:
        raise MotionError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
    f = (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    k = [[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]]
    return upload(torch.tensor([k], dtype=dtype), torch.device(device) if device is not None else torch.device("cpu"))


@lru_cache(maxsize=32)
def _grid_axes(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached normalised pixel-centre coordinates (``align_corners=False``): ``x`` ``(W,)`` and ``y`` ``(H,)``.

    The rays of a skew-free pinhole are ``(x / f_x, y / f_y, 1)``: separable, which lets the warp build ``R r`` by
    broadcasting two thin tensors instead of a per-pixel matrix product.
    """
    x = (torch.arange(width, device=device, dtype=torch.float64) * 2.0 + 1.0) / width - 1.0
    y = (torch.arange(height, device=device, dtype=torch.float64) * 2.0 + 1.0) / height - 1.0
    return x.to(dtype), y.to(dtype)


def rotation_matrix_3d(rotation_deg: torch.Tensor) -> torch.Tensor:
    """``R = Rx(rx) @ Ry(ry) @ Rz(rz)`` as ``(B, 3, 3)`` from ``(B, 3)`` degrees ``[rx, ry, rz]``.

    Each factor is the right-handed rotation about that camera axis, the same matrix as PyTorch3D's
    ``euler_angles_to_matrix(radians, "XYZ")`` that Disco and Deforum use (and as composing kornia's
    ``axis_angle_to_rotation_matrix`` per axis, which the tests check). Written in closed form because the
    generic Rodrigues formula costs ~100 tiny tensor ops per call, more than the warp itself on a CPU.
    """
    if rotation_deg.ndim != 2 or rotation_deg.shape[-1] != 3:
        raise MotionError(f"rotation_deg must have shape (B, 3), got {tuple(rotation_deg.shape)}")
    rad = torch.deg2rad(rotation_deg)
    c, s = torch.cos(rad), torch.sin(rad)
    ca, cb, cc = c.unbind(-1)
    sa, sb, sc = s.unbind(-1)
    # Rx(a) @ Ry(b) @ Rz(c), expanded.
    rows = (
        (cb * cc, -cb * sc, sb),
        (ca * sc + sa * sb * cc, ca * cc - sa * sb * sc, -sa * cb),
        (sa * sc - ca * sb * cc, sa * cc + ca * sb * sc, ca * cb),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def camera_motion(
    rotation_deg: ScalarOrTensor,
    translation: ScalarOrTensor,
    *,
    batch: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Disco/Deforum 3D settings of one frame as the rigid transform ``X_new = R^T X_old + t``.

    Args:
        rotation_deg: ``(B, 3)`` or ``(3,)`` ``[rotation_3d_x, rotation_3d_y, rotation_3d_z]`` in degrees.
        translation: ``(B, 3)`` or ``(3,)`` ``[translation_x, translation_y, translation_z]`` in setting units.

    Returns:
        ``R`` ``(B, 3, 3)`` and ``t`` ``(B, 3)`` in world units: ``t = (-tx, ty, -tz) * TRANSLATION_SCALE``.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    rot = _per_batch_vec3(rotation_deg, batch, device, dtype, "rotation_deg")
    trans = _per_batch_vec3(translation, batch, device, dtype, "translation")
    sign = upload(torch.tensor([-1.0, 1.0, -1.0], dtype=dtype), device)  # pinned: no host sync per frame
    return rotation_matrix_3d(rot), trans * sign * TRANSLATION_SCALE


def _originals_grid(
    depth: torch.Tensor,
    rot: torch.Tensor,
    t: torch.Tensor,
    fov_deg: float,
    aspect_ratio: ScalarOrTensor,
    near: float,
    far: float | None,
    depth_refinement_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``camera="deforum"``: the originals' per-pixel camera, reading the depth of the surface it lands on.

    Target pixel ``u`` reads ``s = u - (pi(P R + T) - pi(P))`` with ``P = (u_lin, d)`` and ``pi`` PyTorch3D's
    ``FoVPerspectiveCameras`` projection; ``d`` is the fixed point ``d = D(s)`` (from ``d_0 = D(u)``: with
    ``depth_refinement_steps=0`` this is the originals' grid itself). Shapes as :func:`reproject_3d_grid`.
    """
    b, _, h, w = depth.shape
    dtype, device = depth.dtype, depth.device
    x_af, y_af = _grid_axes(h, w, device, dtype)  # where the originals *apply* offsets (affine_grid)
    # ... and where they *compute* them: linspace(-1, 1), i.e. the same pixel centres stretched by W / (W - 1).
    x_lin = (x_af * (w / (w - 1) if w > 1 else 1.0)).view(1, 1, w)
    y_lin = (y_af * (h / (h - 1) if h > 1 else 1.0)).view(1, h, 1)
    x_af, y_af = x_af.view(1, 1, w), y_af.view(1, h, 1)
    inv_tan = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    sy = inv_tan  # K[1, 1] of the projection; K[0, 0] = K[1, 1] / aspect_ratio
    if isinstance(aspect_ratio, int | float):
        sx: float | torch.Tensor = inv_tan / float(aspect_ratio)
    else:
        sx = (inv_tan / _per_batch(aspect_ratio, b, device, dtype, "aspect_ratio")).view(b, 1, 1)
    # Row vectors, X_cam = X R + T: c_k = R[0, k] x + R[1, k] y + R[2, k] d + T_k.
    r = [[rot[:, i, k].view(b, 1, 1) for k in range(3)] for i in range(3)]
    tk = [t[:, k].view(b, 1, 1) for k in range(3)]
    planes = [r[0][k] * x_lin + r[1][k] * y_lin + tk[k] for k in range(3)]  # (B, H, W): the depth-free part
    target_depth = depth.view(b, h, w)
    for step in range(depth_refinement_steps + 1):
        cz = torch.addcmul(planes[2], r[2][2], target_depth)
        inv_cz = cz.clamp(min=near).reciprocal_()
        inv_d = target_depth.clamp(min=near).reciprocal_()
        # NDC after minus NDC before the move, subtracted from the identity grid (the originals' offset_xy).
        gx = x_af - sx * (torch.addcmul(planes[0], r[2][0], target_depth) * inv_cz - x_lin * inv_d)
        gy = y_af - sy * (torch.addcmul(planes[1], r[2][1], target_depth) * inv_cz - y_lin * inv_d)
        grid = torch.stack((gx, gy), dim=-1)
        if step == depth_refinement_steps:
            break
        target_depth = _grid_sample(depth, grid, "bilinear", "border").view(b, h, w)
    with torch.no_grad():
        valid = (torch.maximum(gx.abs(), gy.abs()) <= 1.0) & (torch.minimum(cz, target_depth) > near)
        if far is not None:
            valid &= cz < far
    return grid, ~valid.unsqueeze(1)


def reproject_3d_grid(
    depth: torch.Tensor,
    rotation_deg: ScalarOrTensor,
    translation: ScalarOrTensor,
    fov_deg: float = 40.0,
    near: float = 1e-3,
    far: float | None = None,
    depth_refinement_steps: int = 1,
    *,
    camera: CameraModel = "deforum",
    aspect_ratio: ScalarOrTensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampling grid and disocclusion mask of one frame of 3D camera motion (math: module docstring).

    Args:
        depth: ``(B, 1, H, W)`` positive depth of the *previous* frame (larger = farther): for ``camera="deforum"``
            in the originals' units (:func:`discolib.models.depth.depth_for_warp`), for ``"pinhole"`` in world
            units (the translation's units after the 1/200 scale).
        rotation_deg: ``(B, 3)`` / ``(3,)`` degrees per frame ``[x, y, z]`` (Disco/Deforum ``rotation_3d_*``).
        translation: ``(B, 3)`` / ``(3,)`` per frame ``[x, y, z]`` in Disco/Deforum units (scaled by 1/200).
        fov_deg: the ``fov`` setting in degrees: PyTorch3D's ``FoVPerspectiveCameras`` fov for ``"deforum"``
            (it sets the size of the motion, see module docstring; webui's negative values reverse it), the
            vertical field of view in ``(0, 180)`` for ``"pinhole"``.
        near, far: disocclusion clip distances in depth units (``far=None``: no far clip). Not the originals'
            ``near_plane``/``far_plane``: those only reach PyTorch3D's NDC depth, which the warp never reads.
        depth_refinement_steps: fixed-point iterations for the depth each new pixel sees (0 = the depth at the
            same pixel: for ``"deforum"`` exactly the originals' grid; for ``"pinhole"`` already exact for rotations
            and for translations over constant depth).
        camera: ``"deforum"`` (default): the camera of Disco v5.7, deforum-stable-diffusion and sd-webui-deforum
            (module docstring, "The originals' camera"), each pixel reading the depth of the point it lands on;
            ``"pinhole"``: a rigid pinhole with square pixels and vertical ``fov_deg``, exact reprojection.
        aspect_ratio: ``"deforum"`` only: PyTorch3D's ``aspect_ratio`` (webui ``aspect_ratio_schedule``; 1 in
            Disco and deforum-stable-diffusion, ``W / H`` with webui's ``aspect_ratio_use_old_formula``): the
            horizontal motion is divided by it. A number or ``(B,)``. ``"pinhole"`` has square pixels.

    Returns:
        ``grid`` ``(B, H, W, 2)`` normalised source coordinates (``align_corners=False``) and ``mask``
        ``(B, 1, H, W)`` bool, ``True`` where the new pixel is disoccluded.
    """
    _check_image(depth, "depth")
    if depth.shape[1] != 1:
        raise MotionError(f"depth must have one channel (B, 1, H, W), got {tuple(depth.shape)}")
    if near <= 0:
        raise MotionError(f"near must be > 0 (a clip distance in depth units), got {near}")
    if far is not None and far <= near:
        raise MotionError(f"far must be greater than near ({near}), got {far}")
    if depth_refinement_steps < 0:
        raise MotionError(f"depth_refinement_steps must be >= 0, got {depth_refinement_steps}")
    if camera not in _CAMERA_MODELS:
        raise MotionError(f"camera must be one of {', '.join(_CAMERA_MODELS)}; got {camera!r}")
    if camera == "deforum" and not (-180.0 < fov_deg < 180.0 and fov_deg != 0.0):
        # webui documents fov in [-180, 180] without 0: a negative fov turns the gain 1 / tan(fov / 2) negative.
        raise MotionError(f"fov_deg must be in (-180, 180) degrees and not 0, got {fov_deg}")
    if camera == "pinhole" and not 0.0 < fov_deg < 180.0:
        raise MotionError(f"fov_deg must be in (0, 180) degrees for the pinhole camera, got {fov_deg}")
    if isinstance(aspect_ratio, int | float) and not (math.isfinite(aspect_ratio) and aspect_ratio > 0):
        raise MotionError(f"aspect_ratio must be a positive number, got {aspect_ratio}")
    b, _, h, w = depth.shape
    dtype, device = depth.dtype, depth.device
    rot_deg = _per_batch_vec3(rotation_deg, b, device, dtype, "rotation_deg")
    rot, t = camera_motion(rot_deg, translation, batch=b, device=device, dtype=dtype)
    if camera == "deforum":
        return _originals_grid(depth, rot, t, fov_deg, aspect_ratio, near, far, depth_refinement_steps)
    # Square pixels, vertical fov: f = (H / 2) / tan(fov / 2) pixels, i.e. 2 f / W and 2 f / H normalised.
    fy_n = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    fx = torch.full((b, 1), fy_n * h / w, device=device, dtype=dtype)
    fy = torch.full((b, 1), fy_n, device=device, dtype=dtype)
    grid_x, grid_y = _grid_axes(h, w, device, dtype)  # (W,), (H,)

    # Planar (B, H, W) tensors, one per coordinate: every pass reads and writes contiguous memory (a channel-last
    # (B, H, W, 3) layout made each slice a strided pass and cost 3-4x more on a CPU). With S = diag(f_x, f_y, 1)
    # the grid is (S P)_xy / P_z and the rays are S^-1 (x, y, 1): S is folded into R once per frame.
    ones = torch.ones_like(fx)
    scale = torch.cat((fx, fy, ones), dim=1)  # (B, 3)
    inv_scale = torch.cat((1.0 / fx, 1.0 / fy, ones), dim=1)
    rot_s = rot * scale.view(b, 3, 1) * inv_scale.view(b, 1, 3)  # S R S^-1
    r_t = (rot * scale.view(b, 3, 1) @ t.unsqueeze(-1)).squeeze(-1)  # S R t, (B, 3)

    def separable(coef: torch.Tensor) -> torch.Tensor:
        """``coef[:, 0] x[u] + coef[:, 1] y[v] + coef[:, 2]`` as ``(B, H, W)`` from ``(B, 3)``."""
        cols = torch.addcmul(coef[:, 2].view(b, 1, 1), grid_x.view(1, 1, w), coef[:, 0].view(b, 1, 1))
        return cols + grid_y.view(1, h, 1) * coef[:, 1].view(b, 1, 1)  # thin + thin: one cheap full pass

    # (Plain mul/sub_ below rather than addcmul with a broadcast (B, 1, 1) term: on a CPU the latter misses the
    # vectorised kernel and costs ~2x.)
    rays = [separable(rot_s[:, k]) for k in range(3)]  # (S R r)_k, the rotated rays
    r_t = [r_t[:, k].view(b, 1, 1) for k in range(3)]
    t_z = t[:, 2].view(b, 1, 1)
    # d_0 = D (R^T r)_z + t_z, with (R^T r)_z = R[0, 2] x / f_x + R[1, 2] y / f_y + R[2, 2].
    target_depth = (depth.view(b, h, w) * separable(rot[:, :, 2] * inv_scale)).add_(t_z)

    # In-place updates and out= writes save passes but break autograd: only when no gradient is wanted.
    fast = not (torch.is_grad_enabled() and (depth.requires_grad or rot.requires_grad or t.requires_grad))
    for step in range(depth_refinement_steps + 1):
        pz = (target_depth * rays[2]).sub_(r_t[2])  # S P, P = d R r - R t in the old camera
        # Clamp before dividing so points behind the camera give finite (masked) coordinates.
        inv_z = pz.clamp(min=near).reciprocal_()
        px = (target_depth * rays[0]).sub_(r_t[0])
        py = (target_depth * rays[1]).sub_(r_t[1])
        if fast:  # written straight into the interleaved grid: torch.stack costs ~5x one pass on a CPU
            grid = torch.empty(b, h, w, 2, device=device, dtype=dtype)
            torch.mul(px, inv_z, out=grid[..., 0])
            torch.mul(py, inv_z, out=grid[..., 1])
        else:
            grid = torch.stack((px * inv_z, py * inv_z), dim=-1)
        if step == depth_refinement_steps:
            break
        source_depth = _grid_sample(depth, grid, "bilinear", "border").view(b, h, w)
        if fast:
            target_depth.sub_(t_z).mul_(inv_z).mul_(source_depth).add_(t_z)
        else:
            target_depth = (target_depth - t_z) * inv_z * source_depth + t_z

    # Inside the old image: max(|x'|, |y'|) <= 1; in front of both cameras: min(P_z, d) > near. Few comparisons,
    # because bool-producing ops are the slowest elementwise passes on a CPU.
    with torch.no_grad():
        extent = torch.maximum(px.abs_(), py.abs_()) if fast else torch.maximum(px.abs(), py.abs())
        extent.mul_(inv_z)
    valid = (extent <= 1.0) & (torch.minimum(pz, target_depth) > near)
    if far is not None:
        valid &= pz < far
    return grid, ~valid.unsqueeze(1)


def reproject_3d(
    image: torch.Tensor,
    depth: torch.Tensor,
    rotation_deg: ScalarOrTensor,
    translation: ScalarOrTensor,
    fov_deg: float = 40.0,
    near: float = 1e-3,
    far: float | None = None,
    padding_mode: PaddingMode = "border",
    sampling_mode: SamplingMode = "bilinear",
    depth_refinement_steps: int = 1,
    *,
    camera: CameraModel = "deforum",
    aspect_ratio: ScalarOrTensor = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp the previous frame by one frame of 3D camera motion (exact reprojection with depth).

    Args:
        image: ``(B, C, H, W)`` previous frame (any channels; values are not clamped).
        depth: ``(B, 1, H, W)`` its positive depth: in the originals' units for ``camera="deforum"`` (see
            :func:`discolib.models.depth.depth_for_warp`), in world units for ``"pinhole"``; if its size differs
            from the image it is resized bilinearly.
        rotation_deg, translation, fov_deg, near, far, depth_refinement_steps, camera, aspect_ratio: see
            :func:`reproject_3d_grid`.
        padding_mode: fill for disoccluded areas: ``"border"``/``"replicate"`` (Disco/Deforum default),
            ``"reflect"``, ``"zeros"``, ``"wrap"``.
        sampling_mode: ``"bilinear"`` (default), ``"bicubic"`` (Disco/Deforum default) or ``"nearest"``.

    Returns:
        ``warped`` ``(B, C, H, W)`` and ``mask`` ``(B, 1, H, W)`` bool (``True`` = disoccluded).
    """
    _check_image(image)
    _check_image(depth, "depth")
    _check_modes(padding_mode, sampling_mode)
    if depth.shape[0] != image.shape[0]:
        raise MotionError(f"depth batch {depth.shape[0]} does not match image batch {image.shape[0]}")
    depth = depth.to(image.dtype)
    if depth.shape[-2:] != image.shape[-2:]:
        depth = F.interpolate(depth, size=image.shape[-2:], mode="bilinear", align_corners=False)
    grid, mask = reproject_3d_grid(
        depth,
        rotation_deg,
        translation,
        fov_deg,
        near,
        far,
        depth_refinement_steps,
        camera=camera,
        aspect_ratio=aspect_ratio,
    )
    return sample_grid(image, grid, padding_mode, sampling_mode), mask
