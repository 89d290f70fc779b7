"""Guidance losses, gradient post-processing and ClipGuidance (discolib.guidance.losses)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from discolib.guidance.cutouts import CutSettings, make_cutouts
from discolib.guidance.losses import (
    ClipGuidance,
    PromptWeightError,
    clamp_grad_rms,
    init_image_loss,
    normalize_prompt_weights,
    range_loss,
    sat_loss,
    spherical_dist_loss,
    tv_loss,
    warn_if_nonfinite,
    weighted_prompt_loss,
    zero_nan_grad,
)
from discolib.models.clip import ClipEnsemble


@pytest.fixture(scope="module")
def ensemble() -> ClipEnsemble:
    return ClipEnsemble(["tiny-vit", "tiny-rn"], pretrained=None)


_ON_DEVICE: dict[tuple[str, torch.dtype], ClipEnsemble] = {}


@pytest.fixture
def densemble(ensemble: ClipEnsemble, device: torch.device, dtype: torch.dtype) -> ClipEnsemble:
    """The tiny ensemble on the parametrised device and dtype (the CPU float32 one is ``ensemble``)."""
    if device.type == "cpu" and dtype == torch.float32:
        return ensemble
    key = (str(device), dtype)
    if key not in _ON_DEVICE:
        _ON_DEVICE[key] = ClipEnsemble(["tiny-vit", "tiny-rn"], device, dtype, pretrained=None)
    return _ON_DEVICE[key]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------- distances


def test_spherical_distance_known_values(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    kw = {"device": device, "dtype": dtype}
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 0.0]], **kw)  # norms do not matter
    y = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]], **kw)
    d = spherical_dist_loss(x, y)
    assert d.shape == (2, 3) and d.dtype == dtype
    expected = torch.tensor([[0.0, math.pi**2 / 8, math.pi**2 / 2], [math.pi**2 / 8, 0.0, math.pi**2 / 8]], **kw)
    torch.testing.assert_close(d, expected, atol=max(1e-4, tol["atol"]), rtol=max(1e-4, tol["rtol"]))
    # Equals theta^2 / 2 for the angle between the vectors.
    a = torch.tensor([[1.0, 0.0]], **kw)
    b = torch.tensor([[math.cos(0.7), math.sin(0.7)]], **kw)
    torch.testing.assert_close(spherical_dist_loss(a, b), torch.tensor([[0.7**2 / 2]], **kw), **tol)


def test_prompt_weights_normalised_by_absolute_sum() -> None:
    torch.testing.assert_close(normalize_prompt_weights([1.0, 1.0]), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(normalize_prompt_weights([3.0, -1.0]), torch.tensor([1.5, -0.5]))
    torch.testing.assert_close(normalize_prompt_weights([-1.0, -3.0]), torch.tensor([-0.25, -0.75]))  # sign kept
    for bad in ([1.0, -1.0], [0.0], [0.0005]):
        with pytest.raises(PromptWeightError, match="sum to"):
            normalize_prompt_weights(bad)
    with pytest.raises(ValueError):
        normalize_prompt_weights([])


def test_weighted_prompt_loss_by_hand(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], device=device, dtype=dtype)
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]], device=device, dtype=dtype)
    out = weighted_prompt_loss(img, txt, [3.0, -1.0])  # normalised to [1.5, -0.5]
    q = math.pi**2 / 8  # orthogonal
    e = (math.pi / 4) ** 2 / 2  # 45 degrees
    expected = torch.tensor([-0.5 * q, 1.5 * q, 1.5 * e - 0.5 * e], device=device, dtype=dtype)
    torch.testing.assert_close(out, expected, **tol)
    with pytest.raises(PromptWeightError):
        weighted_prompt_loss(img, txt, [1.0, -1.0])
    with pytest.raises(PromptWeightError, match="3 prompt weights for 2 prompts"):
        weighted_prompt_loss(img, txt, [1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------- image terms


def test_tv_loss(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    kw = {"device": device, "dtype": dtype}
    assert torch.equal(tv_loss(torch.full((2, 3, 8, 8), 0.3, **kw)), torch.zeros(2, **kw))
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]], **kw)
    # replicate pad -> dx^2 [[1,0],[1,0]] + dy^2 [[4,4],[0,0]] -> mean 10/4
    torch.testing.assert_close(tv_loss(x), torch.tensor([2.5], **kw), **tol)


def test_range_and_saturation_losses(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    kw = {"device": device, "dtype": dtype}
    inside = (torch.rand(2, 3, 4, 4) * 2 - 1).to(**kw)
    assert torch.equal(range_loss(inside), torch.zeros(2, **kw))
    assert torch.equal(sat_loss(inside), torch.zeros(2, **kw))
    x = torch.full((1, 3, 4, 4), 1.5, **kw)
    x[..., :2, :] = -1.25  # half the pixels 0.25 below, half 0.5 above
    torch.testing.assert_close(range_loss(x), torch.tensor([(0.25**2 + 0.5**2) / 2], **kw), **tol)
    torch.testing.assert_close(sat_loss(x), torch.tensor([(0.25 + 0.5) / 2], **kw), **tol)


def test_init_image_loss_is_mse(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    x = torch.zeros(2, 3, 4, 4, device=device, dtype=dtype)
    init = torch.full((1, 3, 4, 4), 0.5)  # any device and dtype: it follows x
    torch.testing.assert_close(init_image_loss(x, init), torch.tensor([0.25, 0.25], device=device, dtype=dtype), **tol)
    with pytest.raises(ValueError):
        init_image_loss(x, torch.zeros(1, 3, 5, 4))


# ------------------------------------------------------------------------------------------- gradients


def test_clamp_grad_rms(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    g = torch.randn(2, 3, 8, 8, generator=_gen()).to(device, dtype)
    g = g / g.square().mean().sqrt()  # rms 1
    out = clamp_grad_rms(g, 0.05)
    assert out.dtype == dtype and out.device.type == device.type
    torch.testing.assert_close(out.square().mean().sqrt(), torch.tensor(0.05, device=device, dtype=dtype), **tol)
    torch.testing.assert_close(out / 0.05, g, **tol)  # direction kept
    small = g * 0.01
    torch.testing.assert_close(clamp_grad_rms(small, 0.05), small, **tol)  # under the limit: unchanged
    zero = torch.zeros(4, device=device, dtype=dtype)
    assert torch.equal(clamp_grad_rms(zero, 0.05), zero)  # no 0/0
    with pytest.raises(ValueError):
        clamp_grad_rms(g, 0.0)


def test_zero_nan_grad(device: torch.device, dtype: torch.dtype) -> None:
    kw = {"device": device, "dtype": dtype}
    g = torch.tensor([1.0, float("nan"), 2.0, float("inf")], **kw)
    whole, flag = zero_nan_grad(g)
    assert torch.equal(whole, torch.zeros(4, **kw)) and bool(flag)
    part, flag = zero_nan_grad(g, whole=False)
    assert torch.equal(part, torch.tensor([1.0, 0.0, 2.0, 0.0], **kw)) and bool(flag)
    fine = torch.tensor([1.0, -2.0], **kw)
    same, flag = zero_nan_grad(fine, check=True)
    assert torch.equal(same, fine) and not bool(flag)


def test_zero_nan_grad_warns_when_checked() -> None:
    bad = torch.tensor([float("nan")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zero_nan_grad(bad)  # not checked: no host read, no warning
        assert not caught
        zero_nan_grad(bad, check=True)
        assert len(caught) == 1 and issubclass(caught[0].category, RuntimeWarning)
        assert caught[0].filename == __file__  # attributed to the call site
        _, flag = zero_nan_grad(bad)
        assert warn_if_nonfinite(flag)
        assert len(caught) == 2
        assert not warn_if_nonfinite(torch.tensor(False))


def test_warning_is_shown_once_per_call_site() -> None:
    bad = torch.tensor([float("nan")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's normal filter
        for _ in range(3):
            zero_nan_grad(bad, check=True)
        zero_nan_grad(bad, check=True)  # another line: another call site
    assert len(caught) == 2


# ------------------------------------------------------------------------------------------- ClipGuidance


def _guidance(ensemble: ClipEnsemble, **kwargs: object) -> ClipGuidance:
    opts: dict[str, object] = {"schedules": CutSettings(1, 2, 1.0, 0.5), "cutn_batches": 1}
    opts.update(kwargs)
    return ClipGuidance.from_prompts(ensemble, [("a red sunset", 2.0), ("blurry", -1.0)], **opts)


def test_guidance_loss_backprops_to_x_in(densemble: ClipEnsemble, device: torch.device, dtype: torch.dtype) -> None:
    init = (torch.rand(1, 3, 40, 48, generator=_gen(1)) * 2 - 1).to(device, dtype)
    guide = _guidance(densemble, tv_scale=10.0, sat_scale=5.0, init_scale=100.0, init_image=init, cutn_batches=2)
    x_in = (torch.rand(1, 3, 40, 48, generator=_gen(2)) * 2.4 - 1.2).to(device, dtype).requires_grad_(True)
    loss = guide.loss(x_in, 999, _gen())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert x_in.grad is not None and torch.isfinite(x_in.grad).all() and x_in.grad.abs().sum() > 0
    assert guide.last_loss is not None and torch.equal(guide.last_loss, loss.detach())


def test_guidance_grad_matches_loss_backward(
    densemble: ClipEnsemble, device: torch.device, dtype: torch.dtype, tol: dict[str, float]
) -> None:
    guide = _guidance(densemble, tv_scale=3.0, cutn_batches=2)
    x = (torch.rand(2, 3, 24, 32, generator=_gen(3)) * 2 - 1).to(device, dtype)
    pred = (torch.rand(2, 3, 24, 32, generator=_gen(4)) * 3 - 1.5).to(device, dtype).requires_grad_(True)
    x_leaf = x.clone().requires_grad_(True)
    guide.loss(x_leaf, 500, _gen(9), pred_x0=pred).backward()
    g_x, g_p = guide.grad(x, 500, _gen(9), pred_x0=pred)
    assert g_p is not None and g_x.device.type == device.type
    # Small gradients: in float32 an absolute tolerance below the fixture's.
    torch.testing.assert_close(g_x, x_leaf.grad, **({"rtol": 1e-4, "atol": 1e-6} if dtype == torch.float32 else tol))
    torch.testing.assert_close(g_p, pred.grad, **tol)
    assert guide.last_loss is not None and torch.isfinite(guide.last_loss)


def test_clip_term_by_hand(ensemble: ClipEnsemble) -> None:
    # One overview cut, no augmentation: the loss is scale * sum_p w_p * d(embed(cut), text_p), summed over models.
    settings = CutSettings(1, 0, 1.0, 0.0)
    guide = _guidance(ensemble, schedules=settings, augment=False, range_scale=0.0, clip_guidance_scale=7.0)
    x_in = torch.rand(1, 3, 36, 36, generator=_gen(5)) * 2 - 1
    expected = torch.zeros(())
    texts = ensemble.encode_text(["a red sunset", "blurry"])
    w = torch.tensor([2.0, -1.0])
    for member, txt in zip(ensemble, texts, strict=True):
        cut = make_cutouts((x_in + 1) / 2, member.image_size, 1, 0, 1.0, 0.0, generator=_gen(), augment=False)
        d = spherical_dist_loss(member.encode_image(cut), txt)[0]
        expected = expected + 7.0 * (d * w).sum()
    torch.testing.assert_close(guide.loss(x_in, 0, _gen()), expected, rtol=1e-5, atol=1e-5)
    # Identical cut batches averaged over cutn_batches give the same value (Disco divides by cutn_batches).
    guide3 = _guidance(ensemble, schedules=settings, augment=False, range_scale=0.0, clip_guidance_scale=7.0,
                       cutn_batches=3)
    torch.testing.assert_close(guide3.loss(x_in, 0, _gen()), expected, rtol=1e-5, atol=1e-5)


def test_guidance_reads_cut_schedules_by_timestep(ensemble: ClipEnsemble) -> None:
    guide = ClipGuidance.from_prompts(ensemble, {"a cat": 1.0})
    assert guide.cut_settings(999) == CutSettings(12, 4, 1.0, 0.2)
    assert guide.cut_settings(100) == CutSettings(4, 12, 1.0, 0.0)
    half = ClipGuidance.from_prompts(ensemble, {"a cat": 1.0}, total_steps=500)
    assert half.cut_settings(499) == CutSettings(12, 4, 1.0, 0.2)


def test_range_term_uses_pred_x0(ensemble: ClipEnsemble) -> None:
    guide = _guidance(ensemble, clip_guidance_scale=0.0, range_scale=2.0)
    x_in = torch.zeros(1, 3, 16, 16)
    pred = torch.full((1, 3, 16, 16), 1.5)
    g_x, g_p = guide.grad(x_in, 10, _gen(), pred_x0=pred)
    assert torch.equal(g_x, torch.zeros_like(x_in))
    torch.testing.assert_close(g_p, torch.full_like(pred, 2.0 * 2 * 0.5 / pred[0].numel()))
    torch.testing.assert_close(guide.loss(x_in, 10, _gen(), pred_x0=pred), torch.tensor(2.0 * 0.25))


def test_guidance_input_validation(ensemble: ClipEnsemble) -> None:
    with pytest.raises(PromptWeightError):
        ClipGuidance.from_prompts(ensemble, [("a", 1.0), ("b", -1.0)])
    with pytest.raises(PromptWeightError):
        ClipGuidance.from_prompts(ensemble, [])
    texts = ensemble.encode_text(["a", "b"])
    with pytest.raises(ValueError, match="CLIP models"):
        ClipGuidance(ensemble, texts[:1], [1.0, 1.0])
    with pytest.raises(ValueError, match="expected"):
        ClipGuidance(ensemble, texts, [1.0])
    with pytest.raises(ValueError, match="cutn_batches"):
        ClipGuidance(ensemble, texts, [1.0, 1.0], cutn_batches=0)
    guide = ClipGuidance(ensemble, texts, [1.0, 1.0])
    with pytest.raises(ValueError, match="x_in"):
        guide.loss(torch.zeros(3, 8, 8), 0, _gen())


def test_following_the_guidance_gradient_lowers_the_clip_loss() -> None:
    # A single tiny model, fixed cuts (no augmentation): plain gradient descent on the pixels must pull the
    # image embedding toward the prompt, i.e. the loss is a usable guidance signal.
    single = ClipEnsemble(["tiny-vit"], pretrained=None)
    guide = ClipGuidance.from_prompts(
        single, {"a lighthouse": 1.0}, schedules=CutSettings(2, 0, 1.0, 0.0), augment=False, range_scale=0.0,
        clip_guidance_scale=1.0,
    )
    x = torch.rand(1, 3, 32, 32, generator=_gen(6)) * 2 - 1
    start = guide.loss(x, 0, _gen()).item()
    for _ in range(5):
        g, none = guide.grad(x, 0, _gen())  # only the CLIP term is on: exercises the no-other-terms path
        assert none is None
        x = x - 0.05 * g / g.square().mean().sqrt().clamp_min(1e-12)  # normalised step, RMS 0.05
    assert guide.loss(x, 0, _gen()).item() < 0.8 * start
