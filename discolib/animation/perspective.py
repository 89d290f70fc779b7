"""Deforum's perspective flip and forced greyscale, as functions on ``(B, C, H, W)`` tensors.

Perspective flip (deforum-stable-diffusion's ``flip_2d_perspective``, sd-webui-deforum's ``enable_perspective_flip``):
the frame is a ``W x H`` card centred in front of a virtual pinhole camera with field of view ``fv`` degrees, at the
distance where the frame's diagonal ``d`` just fills that view (``h = d / (2 sin(fv / 2))``). The card is rotated
(``phi`` about x, ``gamma`` about y, ``theta`` about z, degrees; the rotation is ``Rx(phi) Ry(gamma) Rz(theta)``),
moved ``h`` away and projected with an OpenGL-style projection; the projected corners, mapped from NDC ``[-1, 1]``
onto a square of side ``s = d / cos(fv / 2)``, define the homography from the frame's corners. Both Deforums shift
the source by ``((W - s) / 2, (H - s) / 2)`` before that homography, and in 2D mode use ``flip @ rotation-zoom``
as the whole motion: their ``np.matmul(bM, rot_mat, trans_mat)`` passes the translation as numpy's ``out``
argument, so translation_x/y do nothing while the flip is on. :func:`flip_2d_motion` follows them.

Forced greyscale (``color_force_grayscale``): the frame's luma, ``0.299 R + 0.587 G + 0.114 B``, in all three
channels. deforum-stable-diffusion's warp-side call runs OpenCV's BGR-to-grey on an RGB array, i.e. with the red and
blue weights swapped (:data:`DSD_WARP_GREY_WEIGHTS`); its after-sampling call (PIL) and sd-webui-deforum use the
standard weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from discolib.animation.motion import PaddingMode, SamplingMode, affine_2d_matrix, sample_grid

__all__ = [
    "GREY_WEIGHTS",
    "DSD_WARP_GREY_WEIGHTS",
    "perspective_flip_matrix",
    "flip_2d_motion",
    "homography_grid",
    "warp_perspective",
    "force_grayscale",
]

#: ITU-R BT.601 luma weights (R, G, B): OpenCV's and PIL's greyscale.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
#: deforum-stable-diffusion's greyscale of the warped frame (BGR weights applied to RGB data).
DSD_WARP_GREY_WEIGHTS = (0.114, 0.587, 0.299)


def _homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The ``(3, 3)`` homography (``[2, 2] = 1``) taking the 4 points ``src`` ``(4, 2)`` to ``dst`` ``(4, 2)``.

    Each pair gives two linear equations in the 8 unknowns: ``u (g x + h y + 1) = a x + b y + c`` and likewise for
    ``v`` with ``d, e, f``.
    """
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist(), strict=True):
        rows.append([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y])
        rows.append([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])
        rhs.extend([u, v])
    a = torch.tensor(rows, dtype=torch.float64)
    sol = torch.linalg.solve(a, torch.tensor(rhs, dtype=torch.float64))
    return torch.cat([sol, sol.new_ones(1)]).reshape(3, 3)


def _rotation_xyz(phi: float, gamma: float, theta: float) -> torch.Tensor:
    """``Rx(phi) @ Ry(gamma) @ Rz(theta)`` (radians) as a ``(3, 3)`` float64 matrix."""
    cx, sx = math.cos(phi), math.sin(phi)
    cy, sy = math.cos(gamma), math.sin(gamma)
    cz, sz = math.cos(theta), math.sin(theta)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return rx @ ry @ rz


def perspective_flip_matrix(width: int, height: int, theta: float, phi: float, gamma: float, fv: float) -> torch.Tensor:
    """The forward perspective flip (source pixel -> destination pixel) as a ``(3, 3)`` float64 matrix.

    Args:
        width, height: frame size in pixels.
        theta, phi, gamma: rotations about z, x and y, degrees (Deforum's perspective_flip_theta/phi/gamma).
        fv: the virtual camera's field of view, degrees, in ``(0, 180)`` (Deforum's perspective_flip_fv).
    """
    if not 0.0 < fv < 180.0:
        raise ValueError(f"perspective_flip_fv must be in (0, 180) degrees, got {fv}")
    w, h = float(width), float(height)
    half = math.radians(fv / 2.0)
    diag = math.hypot(w, h)
    side = diag / math.cos(half)
    dist = diag / (2.0 * math.sin(half))
    rot = _rotation_xyz(math.radians(phi), math.radians(gamma), math.radians(theta))
    # Card corners (z = 0) in the order (-w/2, h/2), (w/2, h/2), (w/2, -h/2), (-w/2, -h/2).
    corners = torch.tensor([[-w / 2, h / 2, 0.0], [w / 2, h / 2, 0.0], [w / 2, -h / 2, 0.0], [-w / 2, -h / 2, 0.0]], dtype=torch.float64)
    cam = corners @ rot.T
    cam[:, 2] -= dist  # moved dist along -z, in front of the camera
    focal = 1.0 / math.tan(half)
    # OpenGL-style projection: x_ndc = focal x / -z (its near/far depth row does not reach x, y).
    ndc = torch.stack([focal * cam[:, 0], focal * cam[:, 1]], dim=1) / (-cam[:, 2:3])
    src = corners[:, :2] + torch.tensor([w / 2, h / 2], dtype=torch.float64)
    dst = (ndc + 1.0) * (side / 2.0)
    shift = torch.tensor([[1.0, 0.0, (w - side) / 2], [0.0, 1.0, (h - side) / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return _homography_from_points(src, dst) @ shift


def flip_2d_motion(
    size: tuple[int, int],
    angle_deg: float,
    zoom: float,
    center_x: float,
    center_y: float,
    flip: torch.Tensor,
) -> torch.Tensor:
    """Deforum's 2D motion with the flip on: ``flip @ rotation-zoom`` ``(3, 3)`` float64 (translation dropped).

    Args:
        size: ``(H, W)``.
        flip: :func:`perspective_flip_matrix` of the frame.
    """
    rz = affine_2d_matrix(size, angle_deg, zoom, 0.0, 0.0, center_x, center_y, batch=1, dtype=torch.float64)[0]
    return flip.to(torch.float64) @ rz


def homography_grid(
    matrix: torch.Tensor,
    size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Sampling grid ``(B, H, W, 2)`` (``align_corners=False``) of a forward homography ``(3, 3)`` or ``(B, 3, 3)``.

    Each destination pixel centre ``(x, y)`` (integers, as OpenCV's) reads the source at ``M^-1 (x, y, 1)``. The
    inverse is taken where ``matrix`` lives (the CPU for :func:`perspective_flip_matrix`'s, so a CUDA render does
    not wait on linalg's error check) and the grid is built on ``device`` (default: the matrix's).
    """
    h, w = size
    m = matrix if matrix.ndim == 3 else matrix.unsqueeze(0)
    dev = torch.device(device) if device is not None else m.device
    inv = torch.linalg.inv(m.to(torch.float64)).to(dev)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=dev), torch.arange(w, dtype=torch.float64, device=dev), indexing="ij"
    )
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # (HW, 3)
    src = pts @ inv.transpose(1, 2)  # (B, HW, 3)
    xy = src[..., :2] / src[..., 2:3]
    norm = torch.stack([(2 * xy[..., 0] + 1) / w - 1, (2 * xy[..., 1] + 1) / h - 1], dim=-1)
    return norm.reshape(m.shape[0], h, w, 2).to(dtype)


def warp_perspective(
    image: torch.Tensor,
    matrix: torch.Tensor,
    padding_mode: PaddingMode = "replicate",
    sampling_mode: SamplingMode = "bilinear",
) -> torch.Tensor:
    """``cv2.warpPerspective`` of ``image`` ``(B, C, H, W)`` by the forward ``matrix`` ``(3, 3)``/``(B, 3, 3)``."""
    b, _, h, w = image.shape
    grid = homography_grid(matrix, (h, w), image.dtype, image.device)
    if grid.shape[0] != b:
        grid = grid.expand(b, -1, -1, -1)
    return sample_grid(image, grid, padding_mode, sampling_mode)


def force_grayscale(image: torch.Tensor, weights: Sequence[float] = GREY_WEIGHTS) -> torch.Tensor:
    """The luma of ``image`` ``(B, 3, H, W)`` (weights for R, G, B) repeated in all three channels."""
    wt = torch.tensor(list(weights), dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * wt).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
