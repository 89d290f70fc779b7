"""Optical flow for Video Input: weight-free OpenCV flow, the flow warp, the consistency mask, Disco's blends.

Every flow is ``(B, 2, H, W)`` float32 in pixels, channel 0 = x, 1 = y, from ``image1`` to ``image2``:
``image1(p) ~ image2(p + flow(p))`` (RAFT's and OpenCV's convention). So :func:`warp_by_flow` of ``image2`` by
``flow`` gives back ``image1``: Disco computes ``flow21 = flow(frame2, frame1)`` and warps frame 1 (the previous
written frame) onto frame 2 with it.

* :func:`farneback_flow`, :func:`dis_flow`: OpenCV's Farneback and DIS flow with Deforum's hybrid-video
  parameters (no weights; on the CPU, so they copy the frames to the host).
* :func:`flow_estimator`: ``"raft"`` (:mod:`discolib.models.flow`), ``"farneback"`` or ``"dis"`` by name.
* :func:`warp_by_flow`: backward warp with ``grid_sample`` (bilinear, as Disco's ``cv2.remap(INTER_LINEAR)``).
* :func:`consistency_mask`: the forward-backward check of Ruder, Dosovitskiy and Brox (2016), which Disco's
  successors (WarpFusion) and webui Deforum use and Disco v5.7 leaves as a placeholder.
* :func:`flow_init`, :func:`blend_output`: Disco's ``warp(...)`` blend of a Video Input frame's init, and its
  ``video_init_blend_mode`` blends of the output video.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from discolib.errors import InputError

__all__ = [
    "FlowEstimator",
    "blend_output",
    "consistency_mask",
    "dis_flow",
    "farneback_flow",
    "flow_estimator",
    "flow_init",
    "warp_by_flow",
]

#: ``flow = estimator(image1, image2)``: images ``(1, 3, H, W)`` in [0, 1], flow ``(1, 2, H, W)`` in pixels.
FlowEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Deforum's hybrid video "Farneback" (normal preset): pyramid scale, levels, window, iterations, poly_n, poly_sigma.
_FARNEBACK = (0.5, 5, 21, 5, 7, 1.2)


def _gray_u8(image: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` in [0, 1] -> ``(H, W)`` uint8 luma, as OpenCV's RGB-to-gray of the 8-bit frame."""
    import cv2

    rgb = image[0].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _as_flow(flow: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None].to(like.device)


def farneback_flow(image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
    """OpenCV Farneback flow from ``image1`` to ``image2`` (``(1, 3, H, W)`` in [0, 1]) -> ``(1, 2, H, W)``, with
    Deforum's hybrid-video parameters (5 levels, window 21, 5 iterations, poly_n 7, sigma 1.2)."""
    import cv2

    pyr, levels, win, iters, poly_n, poly_sigma = _FARNEBACK
    flow = cv2.calcOpticalFlowFarneback(
        _gray_u8(image1), _gray_u8(image2), None, pyr, levels, win, iters, poly_n, poly_sigma, 0
    )
    return _as_flow(flow, image1)


def dis_flow(
    image1: torch.Tensor, image2: torch.Tensor, preset: Literal["ultrafast", "fast", "medium"] = "medium"
) -> torch.Tensor:
    """OpenCV DIS flow from ``image1`` to ``image2`` (``(1, 3, H, W)`` in [0, 1]) -> ``(1, 2, H, W)``; ``medium``
    is Deforum's "DIS Medium"."""
    import cv2

    code = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }[preset]
    flow = cv2.DISOpticalFlow_create(code).calc(_gray_u8(image1), _gray_u8(image2), None)
    return _as_flow(flow, image1)


def flow_estimator(
    method: str, device: torch.device | str = "cpu", *, random_ok: bool = False
) -> FlowEstimator:
    """The flow estimator ``method`` names (``animation.video_flow_method``): ``raft`` (loads RAFT's weights;
    see :func:`discolib.models.flow.load_raft`), ``farneback`` or ``dis``.

    Raises:
        InputError: an unknown method.
        WeightsUnavailable: RAFT's weights cannot be had and ``random_ok`` is off.
    """
    if method == "farneback":
        return farneback_flow
    if method == "dis":
        return dis_flow
    if method == "raft":
        from discolib.models.flow import load_raft  # torchvision only loads when RAFT is chosen

        return load_raft(device, random_ok=random_ok)
    raise InputError(f"animation.video_flow_method: expected 'raft', 'farneback' or 'dis', got {method!r}")


def _grid(flow: torch.Tensor) -> torch.Tensor:
    """Pixel positions ``p + flow(p)`` as a ``grid_sample`` grid ``(B, H, W, 2)`` (align_corners=True: -1 and 1
    are the centres of the first and last pixels, as OpenCV's pixel coordinates)."""
    b, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    x = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    y = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack((x, y), dim=-1)


def warp_by_flow(
    image: torch.Tensor,
    flow: torch.Tensor,
    *,
    padding: Literal["zeros", "border", "reflection"] = "zeros",
    mode: Literal["bilinear", "bicubic", "nearest"] = "bilinear",
) -> torch.Tensor:
    """Backward warp: ``out(p) = image(p + flow(p))``.

    Args:
        image: ``(B, C, H, W)``.
        flow: ``(B, 2, H, W)`` in pixels (x, y), on the output's pixel grid.
        padding: what positions outside ``image`` read: ``zeros`` (Disco's ``cv2.remap``, black), ``border`` or
            ``reflection``.
        mode: interpolation (``bilinear`` as Disco's ``INTER_LINEAR``).

    Returns:
        ``(B, C, H, W)`` in ``image``'s dtype.
    """
    # Positions in at least float32: a half-precision grid is off by pixels on a 512-pixel frame.
    work = torch.promote_types(image.dtype, torch.float32)
    grid = _grid(flow.to(work))
    out = F.grid_sample(image.to(work), grid, mode=mode, padding_mode=padding, align_corners=True)
    return out.to(image.dtype)


def _bilinear_clamped(field: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``field`` ``(B, C, H, W)`` read bilinearly at pixel positions ``x``, ``y`` ``(B, H, W)`` clamped into the
    frame (so a position off the frame reads the nearest edge value)."""
    h, w = field.shape[-2:]
    grid = torch.stack((x.clamp(0, w - 1) * (2.0 / max(w - 1, 1)) - 1, y.clamp(0, h - 1) * (2.0 / max(h - 1, 1)) - 1), -1)
    return F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)


def consistency_mask(
    flow: torch.Tensor,
    back_flow: torch.Tensor,
    *,
    motion_edges: bool = True,
    off_frame: bool = True,
) -> torch.Tensor:
    """Where ``flow`` can be trusted: 1, else 0 (Ruder et al. 2016's forward-backward check).

    For a pixel ``p`` with ``f = flow(p)``, let ``b = back_flow(p + f)`` (bilinear). Going there and back should
    return to ``p``; ``p`` is occluded (0) when ``|f + b|^2 >= 0.01 (|f|^2 + |b|^2) + 0.5``. With
    ``motion_edges``, pixels on a motion boundary (``|grad u|^2 + |grad v|^2 > 0.01 |f|^2 + 0.002``, forward
    differences) are 0 too; with ``off_frame``, pixels whose ``p + f`` lies outside the frame.

    Args:
        flow: ``(B, 2, H, W)``, from frame A to frame B (the flow a warp of B onto A uses).
        back_flow: ``(B, 2, H, W)``, from frame B to frame A.

    Returns:
        ``(B, 1, H, W)`` float in {0, 1}, in ``flow``'s dtype.
    """
    f = flow.float()
    b, _, h, w = f.shape
    xs = torch.arange(w, device=f.device, dtype=f.dtype).view(1, 1, w) + f[:, 0]
    ys = torch.arange(h, device=f.device, dtype=f.dtype).view(1, h, 1) + f[:, 1]
    back = _bilinear_clamped(back_flow.float(), xs, ys)
    round_trip = (f + back).square().sum(1)
    ok = round_trip < 0.01 * (f.square().sum(1) + back.square().sum(1)) + 0.5
    if motion_edges:
        # Forward differences, zero past the last row/column (no neighbour there, so no evidence of an edge).
        dx = F.pad(f[..., :, 1:] - f[..., :, :-1], (0, 1))
        dy = F.pad(f[..., 1:, :] - f[..., :-1, :], (0, 0, 0, 1))
        edge = (dx.square() + dy.square()).sum(1) > 0.01 * f.square().sum(1) + 0.002
        ok &= ~edge
    if off_frame:
        ok &= (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    return ok[:, None].to(flow.dtype)


def flow_init(
    video_frame: torch.Tensor, warped: torch.Tensor, blend: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A Video Input frame's init: ``(1 - blend) * video_frame + blend * warped`` (Disco's ``warp``; 0 gives the
    video frame, 1 the warped previous frame). Where ``mask`` (``(B, 1, H, W)`` in [0, 1], 1 = reliable flow) is 0,
    the video frame stands in for the warped frame.

    Args:
        video_frame, warped: ``(B, 3, H, W)`` in [0, 1].
    """
    weight = blend if mask is None else blend * mask
    return video_frame + weight * (warped - video_frame)


def blend_output(
    prev: torch.Tensor,
    cur: torch.Tensor,
    mode: Literal["None", "linear", "optical flow"],
    blend: float,
    flow: torch.Tensor | None = None,
    *,
    padding: Literal["zeros", "border", "reflection"] = "zeros",
) -> torch.Tensor:
    """One frame of Disco's blended output video (its video cell, ``video_init_blend_mode``).

    ``linear``: ``(1 - blend) * prev + blend * cur``; ``optical flow``: ``(1 - blend) * cur + blend *
    warp(prev, flow)`` with ``flow`` from the video frame of ``cur`` to that of ``prev``; ``None``: ``cur``.
    ``prev`` and ``cur`` are consecutive written frames ``(B, 3, H, W)`` (the first frame of the video stays as
    written). Returns ``(B, 3, H, W)``.
    """
    if mode == "None":
        return cur
    if mode == "linear":
        return prev + blend * (cur - prev)
    if mode == "optical flow":
        if flow is None:
            raise ValueError("blend_output: the optical flow mode needs the flow")
        return flow_init(cur, warp_by_flow(prev, flow, padding=padding), blend)
    raise InputError(f"animation.video_init_blend_mode: expected 'None', 'linear' or 'optical flow', got {mode!r}")
