"""Disco v5.7's init / frames loss (LPIPS), range loss, fuzzy prompt and Perlin init, re-derived independently."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.guidance.cutouts import CutSettings
from discolib.guidance.losses import ClipGuidance
from discolib.models.load import RandomWeightsWarning
from discolib.models.lpips import (
    LPIPS_NETS,
    Lpips,
    LpipsWeightsUnavailable,
    load_lpips,
    lpips_heads,
    random_lpips,
)
from discolib.run.adapter import guided_config
from discolib.samplers.base import FrameRequest
from discolib.samplers.guided import GuidedSampler, perlin_init_image
from discolib.schedules.prompts import PromptSchedule


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


@pytest.fixture(scope="module")
def vgg() -> Lpips:
    return random_lpips(net="vgg", seed=3)


def tiny(**overrides: object) -> Settings:
    s = apply_preset(Settings.defaults("guided"), "tiny")
    for k, v in overrides.items():
        s.set(k, v)
    return s


# ------------------------------------------------------------------------------------------------------------------
# 1. LPIPS
# ------------------------------------------------------------------------------------------------------------------


def test_lpips_value_is_the_packages_formula(vgg: Lpips) -> None:
    """Features unit-normalised over channels (+1e-10), squared difference weighted by the heads, spatial mean,
    summed over the five layers; inputs shifted / scaled by LPIPS v0.1's constants first."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    y = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    got = vgg(x, y)
    assert got.shape == (2, 1, 1, 1)
    shift = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
    scale = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
    # The backbone's taps are read from a plain torch.nn.Sequential walk of the same convolutions.
    def taps(img: np.ndarray) -> list[np.ndarray]:
        h = torch.from_numpy(((img - shift) / scale).astype(np.float32))
        out = []
        for i, layer in enumerate(vgg.features):
            h = layer(h)
            if i in LPIPS_NETS["vgg"]["taps"]:  # type: ignore[operator]
                out.append(h.double().numpy())
        return out

    heads = [w.double().numpy() for w in lpips_heads("vgg")]
    fx, fy = taps(x.numpy()), taps(np.broadcast_to(y.numpy(), x.shape))
    expected = np.zeros(2)
    for a, b, w in zip(fx, fy, heads, strict=True):
        a = a / (np.sqrt((a**2).sum(1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b**2).sum(1, keepdims=True)) + 1e-10)
        expected += ((a - b) ** 2 * w.reshape(1, -1, 1, 1)).sum(1).mean((1, 2))
    np.testing.assert_allclose(got.flatten().numpy(), expected, rtol=1e-4, atol=1e-6)
    assert float(vgg(y, y).abs().max()) < 1e-6


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_matches_the_lpips_package(net: str) -> None:
    lpips = pytest.importorskip("lpips")
    ours = random_lpips(net=net, seed=1)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation inside the package
        ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    feats = ours.features.state_dict()
    ref.net.load_state_dict({k: feats[k.split(".", 1)[1]] for k in ref.net.state_dict()})
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1, torch.rand(2, 3, 64, 64, generator=gen) * 2 - 1
    torch.testing.assert_close(ours(x, y), ref(x, y).detach(), rtol=1e-4, atol=1e-6)


def test_lpips_gradient_flows_to_the_input(vgg: Lpips) -> None:
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    init = torch.zeros(1, 3, 32, 32)
    vgg(x, init).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in vgg.parameters())


def test_lpips_offline_error_is_clear_and_random_needs_consent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(LpipsWeightsUnavailable, match=r"HF_HUB_OFFLINE.*guidance\.init_loss to mse"):
        load_lpips()
    with pytest.warns(RandomWeightsWarning, match="LPIPS"):
        assert isinstance(load_lpips(random_ok=True), Lpips)
    # A torchvision checkpoint in discolib's models folder is used (only the tapped features are kept).
    donor = random_lpips(seed=7)
    state = {f"features.{k}": v for k, v in donor.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    (tmp_path / "lpips").mkdir()
    torch.save(state, tmp_path / "lpips" / "vgg16-397923af.pth")
    loaded = load_lpips()
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x, y), donor(x, y))


def test_clip_guidance_uses_the_given_init_loss(vgg: Lpips) -> None:
    """Disco: ``loss += lpips_model(x_in, init).sum() * init_scale``, differentiated w.r.t. x_in."""
    from discolib.models.load import load_clip_ensemble

    ens = load_clip_ensemble(["tiny-vit"], torch.device("cpu"), torch.float32)
    init = torch.rand(1, 3, 32, 32) * 2 - 1
    guide = ClipGuidance(ens, ens.encode_text(["a"]), [1.0], schedules=CutSettings(1, 0, 1.0, 0.0),
                         clip_guidance_scale=0.0, range_scale=0.0, init_scale=1000.0, init_image=init, init_loss=vgg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    g, _ = guide.grad(x, 500, torch.Generator().manual_seed(0))
    xr = x.clone().requires_grad_(True)
    expected = torch.autograd.grad(vgg(xr, init).sum() * 1000.0, xr)[0]
    torch.testing.assert_close(g, expected)


# ------------------------------------------------------------------------------------------------------------------
# 2. range_scale: a no-op in Disco
# ------------------------------------------------------------------------------------------------------------------


def test_disco_range_loss_has_no_gradient_and_the_default_follows() -> None:
    """Disco: ``range_loss(out)`` with ``out`` the secondary model's prediction, but the gradient is taken w.r.t.
    ``x_in`` only (``torch.autograd.grad(loss, x_in)``): the range term contributes nothing. With the main model
    (secondary off) the issue measured the working term at 6.0e4 vs 214 for the rest, so it would dominate."""
    x = torch.randn(1, 3, 8, 8).requires_grad_(True)
    pred = x * 3  # far outside [-1, 1]: a real range loss would be large
    fac = 0.9
    x_in = pred * fac + x * (1 - fac)
    loss = ((pred - pred.clamp(-1, 1)) ** 2).mean((1, 2, 3)).sum() * 150
    disco = torch.autograd.grad(loss, x_in, allow_unused=True)[0]
    assert disco is None  # Disco's x_in_grad gets nothing from it
    assert guided_config(tiny()).guidance.range_scale_applied == 0.0
    assert guided_config(tiny(**{"guidance.range_scale": 150.0})).guidance.range_scale_applied == 0.0
    active = guided_config(tiny(**{"guidance.range_loss_active": True, "guidance.range_scale": 150.0}))
    assert active.guidance.range_scale_applied == 150.0
    # The guided sampler builds its loss with the applied scale.
    request = FrameRequest(seed=0, prompts=PromptSchedule.from_any({"0": ["a"]}).at(0))
    assert GuidedSampler(guided_config(tiny()))._guidance(request, None, 0.0, torch.Generator()).range_scale == 0.0
    assert GuidedSampler(active)._guidance(request, None, 0.0, torch.Generator()).range_scale == 150.0
    # The working term, when asked for, pulls the prediction back into range.
    from discolib.models.load import load_clip_ensemble

    ens = load_clip_ensemble(["tiny-vit"], torch.device("cpu"), torch.float32)
    guide = ClipGuidance(ens, ens.encode_text(["a"]), [1.0], clip_guidance_scale=0.0, range_scale=150.0)
    _, g_pred = guide.grad(x_in.detach(), 500, torch.Generator(), pred_x0=pred.detach())
    assert g_pred is not None and float(g_pred.abs().sum()) > 0


# ------------------------------------------------------------------------------------------------------------------
# 3. fuzzy prompt
# ------------------------------------------------------------------------------------------------------------------


def test_fuzzy_prompt_is_25_clamped_noisy_copies_of_the_raw_embedding() -> None:
    gs = GuidedSampler(guided_config(tiny(**{"guidance.fuzzy_prompt": True, "guidance.rand_mag": 0.05})))
    request = FrameRequest(seed=0, prompts=PromptSchedule.from_any({"0": ["a castle:2", "fog:-0.5"]}).at(0))
    guide = gs._guidance(request, None, 0.0, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    for m, member in enumerate(gs.ensemble):
        with torch.no_grad():
            raw = member.model.encode_text(member.tokenizer(["a castle", "fog"])).float()
        # Disco: for each prompt, 25 x (txt + randn * rand_mag).clamp(0, 1), each with the prompt's weight.
        copies = [(raw + torch.randn(raw.shape, generator=gen) * 0.05).clamp(0, 1) for _ in range(25)]
        torch.testing.assert_close(guide.text_embeds[m], torch.cat(copies))
        assert float(guide.text_embeds[m].min()) >= 0 and float(guide.text_embeds[m].max()) <= 1
        w = np.array([2.0, -0.5] * 25)
        np.testing.assert_allclose(guide.weights[m].numpy(), w / abs(w.sum()), rtol=1e-6)


# ------------------------------------------------------------------------------------------------------------------
# 4. Perlin init
# ------------------------------------------------------------------------------------------------------------------


def _disco_perlin_np(grads: list[tuple[np.ndarray, np.ndarray]], width: int, scale: int) -> np.ndarray:
    """Disco's ``perlin``: one octave on a (width * scale)^2 grid, first axis from the lattice's first axis."""
    gx, gy = grads
    t = np.arange(scale) / scale
    xs, ys = t[:, None], t[None, :]
    wx, wy = 1 - (3 * xs**2 - 2 * xs**3), 1 - (3 * ys**2 - 2 * ys**3)
    out = np.zeros((width, scale, width, scale))
    for a in range(width):
        for b in range(width):
            d = wx * wy * (gx[a, b] * xs + gy[a, b] * ys)
            d = d + (1 - wx) * wy * (-gx[a + 1, b] * (1 - xs) + gy[a + 1, b] * ys)
            d = d + wx * (1 - wy) * (gx[a, b + 1] * xs - gy[a, b + 1] * (1 - ys))
            d = d + (1 - wx) * (1 - wy) * (-gx[a + 1, b + 1] * (1 - xs) - gy[a + 1, b + 1] * (1 - ys))
            out[a, :, b, :] = d
    return out.reshape(width * scale, width * scale)


def _disco_noise_image(gen: torch.Generator, octaves: int, width: int, gray: bool, side: tuple[int, int]) -> np.ndarray:
    """Disco's ``create_perlin_noise``: 0.5 + sum of octaves, resized, 8-bit PIL image, autocontrast; -> [0, 1]."""
    channels = []
    for _ in range(1 if gray else 3):
        acc = np.full((width * 2**octaves,) * 2, 0.5)
        scale, w = 2**octaves, width
        for k in range(octaves):
            g = torch.randn(2, w + 1, w + 1, generator=gen).double().numpy()
            acc = acc + _disco_perlin_np((g[0], g[1]), w, scale) * (0.5 * 1.5**-k)
            scale //= 2
            w *= 2
        channels.append(acc)
    t = torch.from_numpy(np.stack(channels)).float()[None]
    t = F.interpolate(t, size=side, mode="bilinear", align_corners=False, antialias=True)[0]  # TF.resize
    arr = (t.clamp(0, 1).mul(255).byte()).permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0], "L").convert("RGB") if gray else Image.fromarray(arr, "RGB")
    return np.asarray(ImageOps.autocontrast(img), dtype=np.float64).transpose(2, 0, 1) / 255


@pytest.mark.parametrize("mode", ["mixed", "color", "gray"])
def test_perlin_init_is_discos_regen_perlin(mode: str) -> None:
    """Disco's regen_perlin with fewer octaves (5 and 3, both on a 32-pixel grid), same lattice draws."""
    h, w = 12, 20
    got = perlin_init_image(h, w, mode, generator=torch.Generator().manual_seed(4), device=torch.device("cpu"),
                            octaves=(5, 3))
    gen = torch.Generator().manual_seed(4)
    first = _disco_noise_image(gen, 5, 1, mode == "gray", (h, w))
    second = _disco_noise_image(gen, 3, 4, mode != "color", (h, w))
    expected = (first + second) / 2 * 2 - 1
    # 8-bit quantisation: a float rounding difference can move a pixel by one level (1/255 in one image).
    diff = np.abs(got[0].double().numpy() - expected)
    assert diff.max() <= 2 / 255 + 1e-6 and (diff > 1e-5).mean() < 0.05


def test_perlin_init_statistics() -> None:
    """Mixed mode: std about 0.26 in [-1, 1] (the issue's figure for Disco; the old discolib init had 0.129)."""
    stds = []
    for seed in range(2):
        x = perlin_init_image(48, 48, "mixed", generator=torch.Generator().manual_seed(seed), device=torch.device("cpu"))
        assert x.shape == (1, 3, 48, 48) and float(x.min()) >= -1 and float(x.max()) <= 1
        stds.append(float(x.std()))
    assert 0.2 < np.mean(stds) < 0.33
    gray = perlin_init_image(16, 16, "gray", generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])


def test_perlin_init_is_the_init_loss_target() -> None:
    """Disco: ``init = regen_perlin()`` is also cond_fn's LPIPS target at init_scale."""
    gs = GuidedSampler(guided_config(tiny(**{"guidance.perlin_init": True, "guidance.init_scale": 1000.0,
                                             "guidance.init_loss": "mse"})))
    init01 = torch.rand(1, 3, gs.height, gs.width)
    request = FrameRequest(seed=0, prompts=PromptSchedule.from_any({"0": ["a"]}).at(0))
    guide = gs._guidance(request, init01, 0.0, torch.Generator())
    assert guide.init_scale == 1000.0 and guide.init_image is not None
    torch.testing.assert_close(guide.init_image, init01 * 2 - 1)


# ------------------------------------------------------------------------------------------------------------------
# 8. cutout augmentation draws
# ------------------------------------------------------------------------------------------------------------------


def test_augmentation_draws_are_shared_by_the_cuts_as_in_disco() -> None:
    """Disco runs its torchvision transforms once on the concatenated cut batch: one draw for every cut."""
    from discolib.guidance.cutouts import AugmentConfig, augment_cuts

    cfg = AugmentConfig(flip_p=0.5, noise_std=0.0, degrees=10.0, translate=0.1, grey_p=0.5, brightness=0.1,
                        contrast=0.1, saturation=0.1, hue=0.1)
    cuts = torch.rand(1, 3, 16, 16).expand(6, 3, 16, 16)
    shared = augment_cuts(cuts, cfg, generator=torch.Generator().manual_seed(0))
    assert all(torch.allclose(shared[0], c) for c in shared[1:])
    per_cut = augment_cuts(cuts, cfg, generator=torch.Generator().manual_seed(0), shared_draws=False)
    assert not all(torch.allclose(per_cut[0], c) for c in per_cut[1:])
