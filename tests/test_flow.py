"""Optical flow for Video Input (discolib.animation.flow, discolib.models.flow) on synthetic motion of known flow.

The originals' formulas are re-derived here in numpy: Disco v5.7's ``warp_flow`` (``cv2.remap`` of the image at
``p + flow(p)``, bilinear, black outside) and ``warp`` blend, and the forward-backward consistency check that
webui Deforum's ``make_consistency`` and Ruder et al.'s consistencyChecker compute.
"""

from __future__ import annotations

import urllib.error
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from discolib.animation.flow import (
    blend_output,
    consistency_mask,
    dis_flow,
    farneback_flow,
    flow_estimator,
    flow_init,
    warp_by_flow,
)
from discolib.errors import InputError, WeightsUnavailable
from discolib.models.flow import DISCO_RAFT_ITERS, RaftFlow, RaftWeightsUnavailable, load_raft, random_raft
from discolib.models.load import RandomWeightsWarning

H, W = 96, 128
SHIFT = (3, -2)  # (dx, dy) in pixels: the content of frame 2 is frame 1's moved right 3, up 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


def texture(h: int = H + 32, w: int = W + 32, seed: int = 0) -> torch.Tensor:
    """A smooth random colour texture ``(1, 3, h, w)`` in [0, 1] (features a few pixels wide: trackable)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8 + 4, w // 8 + 4, generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def shifted_pair(dx: int = SHIFT[0], dy: int = SHIFT[1]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames 1 and 2 of a translation: ``frame2(p) = frame1(p - (dx, dy))``, both ``(1, 3, H, W)``."""
    tex = texture()
    frame1 = tex[..., 16 : 16 + H, 16 : 16 + W]
    frame2 = tex[..., 16 - dy : 16 - dy + H, 16 - dx : 16 - dx + W]
    return frame1.contiguous(), frame2.contiguous()


def np_remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Disco's ``warp_flow`` re-derived: out(p) = img(p + flow(p)), bilinear, 0 outside. ``img`` (H, W, C)."""
    h, w = flow.shape[:2]
    x = np.arange(w)[None, :] + flow[..., 0]
    y = np.arange(h)[:, None] + flow[..., 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    out = np.zeros((h, w, img.shape[2]))
    for oy, ox, wgt in ((0, 0, (1 - (x - x0)) * (1 - (y - y0))), (0, 1, (x - x0) * (1 - (y - y0))),
                        (1, 0, (1 - (x - x0)) * (y - y0)), (1, 1, (x - x0) * (y - y0))):  # fmt: skip
        xi, yi = x0 + ox, y0 + oy
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        out += np.where(inside, wgt, 0)[..., None] * img[yi.clip(0, h - 1), xi.clip(0, w - 1)]
    return out


def np_occluded(f: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ruder et al.'s occlusion test, pixel by pixel: b read bilinearly at p + f(p) (clamped), then
    |f + b|^2 >= 0.01 (|f|^2 + |b|^2) + 0.5. ``f``, ``b`` (H, W, 2)."""
    h, w = f.shape[:2]
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            px = min(max(x + f[y, x, 0], 0), w - 1)
            py = min(max(y + f[y, x, 1], 0), h - 1)
            x0, y0 = min(int(px), w - 2), min(int(py), h - 2)
            ax, ay = px - x0, py - y0
            bb = (b[y0, x0] * (1 - ax) * (1 - ay) + b[y0, x0 + 1] * ax * (1 - ay)
                  + b[y0 + 1, x0] * (1 - ax) * ay + b[y0 + 1, x0 + 1] * ax * ay)  # fmt: skip
            out[y, x] = np.sum((f[y, x] + bb) ** 2) >= 0.01 * (np.sum(f[y, x] ** 2) + np.sum(bb**2)) + 0.5
    return out


# ---------------------------------------------------------------------------------------------- OpenCV flow


@pytest.mark.parametrize(("estimate", "tol"), [(farneback_flow, 0.05), (dis_flow, 0.15)])
def test_opencv_flow_recovers_a_known_translation(estimate, tol: float) -> None:
    frame1, frame2 = shifted_pair()
    flow = estimate(frame1, frame2)
    assert flow.shape == (1, 2, H, W) and flow.dtype == torch.float32
    inner = flow[..., 16:-16, 16:-16]  # away from the edges, where content enters or leaves
    assert (inner[:, 0] - SHIFT[0]).abs().max() < tol
    assert (inner[:, 1] - SHIFT[1]).abs().max() < tol


@pytest.mark.parametrize("estimate", [farneback_flow, dis_flow])
def test_warping_frame1_by_the_estimated_flow_reproduces_frame2(estimate) -> None:
    # Disco: flow21 = get_flow(frame2, frame1); warp_flow(frame1, flow21) is frame 2.
    frame1, frame2 = shifted_pair()
    flow21 = estimate(frame2, frame1)
    warped = warp_by_flow(frame1, flow21)
    err = (warped - frame2)[..., 8:-8, 8:-8].abs()
    assert err.mean() < 2e-3 and err.max() < 0.03
    assert (frame1 - frame2)[..., 8:-8, 8:-8].abs().mean() > 10 * err.mean()  # the warp did the work


# ---------------------------------------------------------------------------------------------- warp


def test_warp_matches_discos_remap_rederived() -> None:
    g = torch.Generator().manual_seed(1)
    img = texture(40, 56, seed=2)[..., :40, :56].contiguous()
    flow = (torch.rand(1, 2, 40, 56, generator=g) - 0.5) * 9  # non-integer, some positions off the frame
    ours = warp_by_flow(img.double(), flow.double())[0].permute(1, 2, 0).numpy()
    ref = np_remap(img[0].permute(1, 2, 0).double().numpy(), flow[0].permute(1, 2, 0).double().numpy())
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    # and OpenCV's remap itself (its bilinear weights are quantised to 1/32 pixel)
    h, w = flow.shape[-2:]
    maps = flow[0].permute(1, 2, 0).numpy().copy()
    maps[..., 0] += np.arange(w)
    maps[..., 1] += np.arange(h)[:, None]
    cv = cv2.remap(img[0].permute(1, 2, 0).numpy(), maps, None, cv2.INTER_LINEAR)
    np.testing.assert_allclose(ours, cv, atol=0.02)


def test_zero_flow_is_identity_and_padding_modes() -> None:
    img = texture(24, 32)[..., :24, :32]
    assert torch.allclose(warp_by_flow(img, torch.zeros(1, 2, 24, 32)), img, atol=1e-6)
    far = torch.full((1, 2, 24, 32), 100.0)
    assert warp_by_flow(img, far).abs().max() == 0  # zeros: Disco's black
    assert torch.allclose(warp_by_flow(img, far, padding="border"), img[..., -1:, -1:].expand_as(img), atol=1e-6)


# ---------------------------------------------------------------------------------------------- consistency


def moving_square(step: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """True flows of a 16 px square moving right by ``step`` over a still background: (flow21, flow12)."""
    flow12 = torch.zeros(1, 2, 48, 64)
    flow12[:, 0, 16:32, 20:36] = step  # frame 1's square pixels go right
    flow21 = torch.zeros(1, 2, 48, 64)
    flow21[:, 0, 16:32, 20 + step : 36 + step] = -step  # frame 2's square pixels came from the left
    return flow21, flow12


def test_consistency_mask_flags_the_disoccluded_pixels_of_a_moving_square() -> None:
    flow21, flow12 = moving_square()
    mask = consistency_mask(flow21, flow12, motion_edges=False)
    assert mask.shape == (1, 1, 48, 64)
    expected = torch.ones(48, 64)
    expected[16:32, 20:26] = 0  # background of frame 2 that the square covered in frame 1
    assert torch.equal(mask[0, 0], expected)
    # with motion edges: the columns where the flow jumps are unreliable too, and nothing else
    edged = consistency_mask(flow21, flow12)[0, 0]
    assert edged[16:32, 25].eq(0).all() and edged[16:32, 41].eq(0).all()
    assert edged[15, 26:42].eq(0).all() and edged[31, 26:42].eq(0).all()  # forward differences: the row before
    assert edged[16:31, 27:40].eq(1).all() and edged[:15].eq(1).all() and edged[32:].eq(1).all()


def test_consistency_mask_matches_the_rederived_check_on_smooth_random_flows() -> None:
    g = torch.Generator().manual_seed(3)
    f = F.interpolate(torch.randn(1, 2, 4, 5, generator=g) * 3, size=(20, 24), mode="bicubic", align_corners=False)
    b = -f + F.interpolate(torch.randn(1, 2, 4, 5, generator=g), size=(20, 24), mode="bicubic", align_corners=False)
    ours = consistency_mask(f.double(), b.double(), motion_edges=False, off_frame=False)[0, 0].numpy()
    ref = ~np_occluded(f[0].permute(1, 2, 0).double().numpy(), b[0].permute(1, 2, 0).double().numpy())
    assert 0.05 < ref.mean() < 0.95  # both outcomes occur
    np.testing.assert_array_equal(ours.astype(bool), ref)


def test_consistency_mask_flags_pixels_that_leave_the_frame() -> None:
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0] = 3.0
    back = -flow
    mask = consistency_mask(flow, back)[0, 0]
    assert mask[:, :7].eq(1).all() and mask[:, 7:].eq(0).all()
    assert consistency_mask(flow, back, off_frame=False).eq(1).all()


# ---------------------------------------------------------------------------------------------- blends


def test_flow_init_is_discos_warp_blend() -> None:
    g = torch.Generator().manual_seed(4)
    video, warped = torch.rand(2, 1, 3, 8, 8, generator=g)
    for blend in (0.0, 0.5, 0.999, 1.0):
        ref = video.numpy() * (1 - blend) + warped.numpy() * blend  # Disco: frame2pil*(1-blend) + warped*blend
        np.testing.assert_allclose(flow_init(video, warped, blend).numpy(), ref, atol=1e-6)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    mixed = flow_init(video, warped, 0.8, mask)
    assert torch.allclose(mixed[..., 4:], video[..., 4:]) and torch.allclose(mixed[..., :4], flow_init(video, warped, 0.8)[..., :4])


def test_blend_output_modes() -> None:
    g = torch.Generator().manual_seed(5)
    prev, cur = torch.rand(2, 1, 3, 8, 8, generator=g)
    assert blend_output(prev, cur, "None", 0.5) is cur
    # Disco's linear video: frame1*(1-blend) + frame2*blend
    assert torch.allclose(blend_output(prev, cur, "linear", 0.25), prev * 0.75 + cur * 0.25)
    flow = torch.zeros(1, 2, 8, 8)
    flow[:, 0] = 1.0
    got = blend_output(prev, cur, "optical flow", 0.5, flow, padding="border")
    assert torch.allclose(got, cur * 0.5 + warp_by_flow(prev, flow, padding="border") * 0.5)
    with pytest.raises(InputError, match="video_init_blend_mode"):
        blend_output(prev, cur, "cubic", 0.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- RAFT


def test_random_raft_runs_on_cpu_at_tiny_size() -> None:
    before = torch.random.get_rng_state()
    raft = random_raft(small=True, num_flow_updates=2)
    assert torch.equal(torch.random.get_rng_state(), before)  # built from its own seed
    g = torch.Generator().manual_seed(6)
    a, b = torch.rand(2, 1, 3, 60, 84, generator=g)  # not multiples of 8, under RAFT's 128 minimum
    flow = raft(a, b)
    assert flow.shape == (1, 2, 60, 84) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    assert torch.equal(random_raft(small=True, num_flow_updates=2)(a, b), flow)  # fixed seed, same weights
    assert isinstance(raft, RaftFlow) and random_raft(small=True).num_flow_updates == DISCO_RAFT_ITERS == 20


@pytest.fixture
def no_raft_files(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """No RAFT checkpoint anywhere this test can see, and no network: any download attempt fails."""
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable (test)")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    return tmp_path


def test_raft_weights_unavailable_offline_is_a_clear_error(no_raft_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RaftWeightsUnavailable, match="HF_HUB_OFFLINE.*video_flow_method farneback or dis") as exc:
        load_raft()
    assert isinstance(exc.value, WeightsUnavailable) and exc.value.reason == "offline"
    with pytest.raises(WeightsUnavailable):
        flow_estimator("raft")


def test_raft_download_failure_is_a_clear_error(no_raft_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(RaftWeightsUnavailable, match="could not be downloaded.*raft_large_C_T_V1") as exc:
        load_raft()
    assert exc.value.reason == "download failed"


def test_raft_random_weights_only_when_allowed(no_raft_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raft = load_raft(small=True, num_flow_updates=1, random_ok=True)
    assert isinstance(raft, RaftFlow)
    assert any(issubclass(w.category, RandomWeightsWarning) and "RANDOM" in str(w.message) for w in caught)


def test_raft_loads_a_checkpoint_from_the_models_folder(no_raft_files) -> None:
    from torchvision.models.optical_flow import Raft_Small_Weights

    src = random_raft(small=True, seed=7)
    folder = no_raft_files / "models" / "raft"
    folder.mkdir(parents=True)
    torch.save(src.model.state_dict(), folder / Raft_Small_Weights.C_T_V1.url.rsplit("/", 1)[-1])
    raft = load_raft(small=True, weights="C_T_V1", num_flow_updates=1)
    for (name, p), q in zip(raft.model.state_dict().items(), src.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_flow_estimator_names() -> None:
    assert flow_estimator("farneback") is farneback_flow and flow_estimator("dis") is dis_flow
    with pytest.raises(InputError, match="animation.video_flow_method"):
        flow_estimator("lucas-kanade")
