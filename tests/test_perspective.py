"""Deforum's perspective flip and forced greyscale (discolib.animation.perspective) against the originals' formulas,
re-derived here with numpy and OpenCV (deforum-stable-diffusion helpers/animation.py warpMatrix,
anim_frame_warp_2d; render.py's colour_force_grayscale branches)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from discolib.animation.perspective import (
    DSD_WARP_GREY_WEIGHTS,
    flip_2d_motion,
    force_grayscale,
    perspective_flip_matrix,
    warp_perspective,
)


def _ref_flip(w: int, h: int, theta: float, phi: float, gamma: float, fv: float) -> np.ndarray:
    """The originals' flip: 4x4 projection * translate(-h) * Rx Ry Rz on the card corners, then the 4-point fit."""
    half = np.deg2rad(fv / 2)
    d = np.sqrt(w * w + h * h)
    side = d / np.cos(half)
    dist = d / (2 * np.sin(half))
    n, f = dist - d / 2, dist + d / 2

    def rot(axis: int, a: float) -> np.ndarray:
        c, s = np.cos(np.deg2rad(a)), np.sin(np.deg2rad(a))
        r = np.eye(4)
        i, j = [(1, 2), (0, 2), (0, 1)][axis]
        r[i, i] = r[j, j] = c
        r[i, j], r[j, i] = (-s, s) if axis != 1 else (s, -s)
        return r

    t = np.eye(4)
    t[2, 3] = -dist
    p = np.zeros((4, 4))
    p[0, 0] = p[1, 1] = 1 / np.tan(half)
    p[2, 2] = -(f + n) / (f - n)
    p[2, 3] = -2 * f * n / (f - n)
    p[3, 2] = -1
    full = p @ t @ rot(0, phi) @ rot(1, gamma) @ rot(2, theta)
    pts = np.array([[[-w / 2, h / 2, 0], [w / 2, h / 2, 0], [w / 2, -h / 2, 0], [-w / 2, -h / 2, 0]]], dtype=np.float64)
    out = cv2.perspectiveTransform(pts, full)
    pin = (pts[0, :, :2] + [w / 2, h / 2]).astype(np.float32)
    pout = ((out[0, :, :2] + 1) * (0.5 * side)).astype(np.float32)
    m = cv2.getPerspectiveTransform(pin, pout)
    post = np.array([[1, 0, (w - side) / 2], [0, 1, (h - side) / 2], [0, 0, 1]])
    return m @ post


@pytest.mark.parametrize(
    ("w", "h", "theta", "phi", "gamma", "fv"),
    [(64, 48, 0, 0, 0, 53), (64, 48, 0, 7, 0, 53), (96, 64, 10, 5, -8, 53), (64, 64, -20, 14, 3, 70), (80, 48, 0, 0, 12, 30)],
)
def test_flip_matrix_matches_the_originals_formula(w: int, h: int, theta: float, phi: float, gamma: float, fv: float) -> None:
    ours = perspective_flip_matrix(w, h, theta, phi, gamma, fv).numpy()
    ref = _ref_flip(w, h, theta, phi, gamma, fv)
    # The original rounds the 8 corner coordinates to float32 before its fit.
    np.testing.assert_allclose(ours / ours[2, 2], ref / ref[2, 2], rtol=2e-5, atol=2e-5 * max(w, h))


def test_flip_at_rest_is_the_identity() -> None:
    # No rotation: the corners project to (+-w/2, +-h/2) * cot(fv/2) / dist = (+-w, +-h) / side in NDC, i.e. onto
    # the square of side `side` at ((side - w)/2, (side - h)/2) + corner: the originals' shift takes that back.
    for w, h, fv in ((64, 48, 53), (96, 64, 30)):
        np.testing.assert_allclose(perspective_flip_matrix(w, h, 0, 0, 0, fv).numpy(), np.eye(3), atol=1e-9)


def test_flip_warp_matches_opencv_warp_perspective() -> None:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((48, 64, 3)).astype(np.float32), (0, 0), 2)
    flip = perspective_flip_matrix(64, 48, 4, 9, -3, 53)
    # 2D motion with the flip on: flip @ rotation-zoom (the originals drop the translation there).
    # discolib's 2D motion turns about the centre pixel (W/2 - 0.5, H/2 - 0.5): discolib.animation.motion's convention.
    rot = np.vstack([cv2.getRotationMatrix2D((31.5, 23.5), 5.0, 1.04), [0, 0, 1]])
    xform = flip.numpy() @ rot
    ours_m = flip_2d_motion((48, 64), 5.0, 1.04, 0.5, 0.5, flip).numpy()
    np.testing.assert_allclose(ours_m, xform, rtol=1e-9, atol=1e-9)
    ref = cv2.warpPerspective(img, xform, (64, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    t = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    ours = warp_perspective(t, torch.from_numpy(ours_m), "replicate", "bilinear")[0].permute(1, 2, 0).numpy()
    assert ours.shape == ref.shape
    # OpenCV quantises the bilinear weights to 1/32 pixel: differences stay within that on a smooth image.
    assert np.abs(ours - ref).mean() < 2e-3 and np.abs(ours - ref).max() < 2e-2


def test_flip_rejects_a_bad_field_of_view() -> None:
    with pytest.raises(ValueError, match="perspective_flip_fv"):
        perspective_flip_matrix(64, 48, 0, 0, 0, 180)


def test_force_grayscale_matches_opencv_and_pil_weights() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (8, 10, 3)).astype(np.uint8)
    t = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]
    ours = force_grayscale(t)[0].permute(1, 2, 0).numpy()
    # webui (BGR frames): cv2 RGB->grey; the grey frame is the same in all three channels.
    ref = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
    assert np.abs(ours[..., 0] - ref).max() <= 0.5 + 1e-9
    assert np.array_equal(ours[..., 0], ours[..., 2])
    # deforum-stable-diffusion's warp side: OpenCV's BGR->grey run on RGB data (red and blue weights swapped).
    swapped = force_grayscale(t, DSD_WARP_GREY_WEIGHTS)[0, 0].numpy()
    ref_dsd = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    assert np.abs(swapped - ref_dsd).max() <= 0.5 + 1e-9
