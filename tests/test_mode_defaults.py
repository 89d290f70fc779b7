"""Each mode's defaults follow its original (guided: Disco v5.7, latent: deforum-stable-diffusion), importers map
Disco, deforum-stable-diffusion and sd-webui-deforum files as their users expect, and the anti-blur and noise
steps are the originals' formulas (re-derived here with numpy, independently of discolib's torch code)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from discolib.animation.coherence import add_noise, antiblur_kernel_size, gaussian_kernel_1d, unsharp_mask
from discolib.animation.noise import lattice_perlin
from discolib.cli import main
from discolib.config.importers import import_deforum, import_disco, import_settings
from discolib.config.settings import Settings, SettingsError, field_info, iter_fields

DATA = Path(__file__).parent / "data"

# ------------------------------------------------------------------------------------------------ defaults

#: (setting, guided = Disco v5.7, latent = deforum-stable-diffusion's DeforumAnimArgs).
MODE_DEFAULTS = [
    # Disco's 2D warp always wraps (do_run: cv2.warpPerspective(..., borderMode=cv2.BORDER_WRAP)); dsd: border.
    ("animation.border", "wrap", "replicate"),
    # Both originals' 2D warp is cv2.warpPerspective with its default (linear) interpolation.
    ("animation.sampling_mode_2d", "bilinear", "bilinear"),
    # sampling_mode is the 3D warp's in both (Disco's transform_image_3d, dsd's anim_frame_warp_3d): bicubic.
    ("animation.sampling_mode", "bicubic", "bicubic"),
    # Disco has no colour coherence; dsd's color_coherence = 'Match Frame 0 LAB'.
    ("animation.color_coherence", "None", "LAB"),
    # Disco has no anti-blur; dsd's amount/kernel/sigma/threshold_schedule.
    ("animation.antiblur_amount", "0: (0)", "0: (0.2)"),
    ("animation.antiblur_kernel", "0: (5)", "0: (5)"),
    ("animation.antiblur_sigma", "0: (1.0)", "0: (1.0)"),
    ("animation.antiblur_threshold", "0: (0)", "0: (0)"),
    # dsd's noise_schedule and its add_noise (plain white noise: dsd has no noise_type).
    ("animation.noise_schedule", "0: (0.02)", "0: (0.02)"),
    ("animation.noise_type", "gaussian", "gaussian"),
]


@pytest.mark.parametrize("name,guided,latent", MODE_DEFAULTS)
def test_each_mode_default_follows_its_original(name: str, guided: str, latent: str) -> None:
    assert field_info(name).default == guided  # class defaults are Disco's
    assert Settings.defaults("guided").get(name) == guided
    assert Settings.defaults("latent", "2D").get(name) == latent
    # from_dict applies the defaults of the file's image.mode; a value in the file wins.
    assert Settings.from_dict({"image": {"mode": "latent"}}).get(name) == latent
    assert Settings.from_dict({"image": {"mode": "guided"}}).get(name) == guided
    assert Settings.from_dict({"image": {"mode": "latent"}, name: guided}).get(name) == guided


def test_sampling_mode_help_names_the_warp_it_drives() -> None:
    assert "3D" in field_info("animation.sampling_mode").help
    assert "linear" in field_info("animation.sampling_mode_2d").help
    assert field_info("animation.sampling_mode_2d").choices == ("bilinear", "bicubic", "nearest")


def test_cli_init_writes_the_modes_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for mode, border, coherence in (("guided", "wrap", "None"), ("latent", "replicate", "LAB")):
        out = tmp_path / f"{mode}.json"
        assert main(["init", "--mode", mode, "--animation", "2D", "-o", str(out)]) == 0
        anim = json.loads(out.read_text())["animation"]
        assert (anim["border"], anim["color_coherence"], anim["sampling_mode_2d"]) == (border, coherence, "bilinear")
        assert Settings.load(out).animation.border == border
    capsys.readouterr()


# ------------------------------------------------------------------------------------------------ importers


def test_disco_import_gets_disco_behaviour() -> None:
    r = import_settings(DATA / "disco_v57_settings.txt")
    a = r.settings.animation
    # Disco files have no border, colour coherence or anti-blur keys: Disco's behaviour is the guided default.
    assert (a.border, a.color_coherence, a.antiblur_amount) == ("wrap", "None", "0: (0)")
    assert a.sampling_mode == "bicubic" and a.sampling_mode_2d == "bilinear"
    assert a.cadence == 3 and r.mapped["turbo_mode"] == "animation.cadence"  # 3D with turbo_steps "3"


def test_disco_turbo_is_off_outside_3d() -> None:
    data = json.loads((DATA / "disco_v57_settings.txt").read_text())
    data["animation_mode"] = "2D"
    r = import_disco(data)
    assert r.settings.animation.cadence == 1
    assert "outside 3D" in r.ignored["turbo_steps"]


DISCO_OPTIONAL = {
    "vr_mode": True,
    "vr_eye_angle": 0.5,
    "vr_ipd": 5.0,
    "video_init_steps": 100,
    "video_init_clip_guidance_scale": 1000,
    "video_init_tv_scale": 0.1,
    "video_init_range_scale": 150,
    "video_init_sat_scale": 300,
    "video_init_cutn_batches": 4,
    "video_init_skip_steps": 50,
    "video_init_frames_scale": 15000,
    "video_init_frames_skip_steps": "70%",
    "video_init_seed_continuity": False,
    "video_init_flow_warp": True,
    "video_init_flow_blend": 0.999,
    "video_init_check_consistency": False,
    "video_init_blend_mode": "optical flow",
}


@pytest.mark.parametrize("key,value", list(DISCO_OPTIONAL.items()))
def test_disco_vr_and_video_init_keys_map_to_the_same_names(key: str, value: object) -> None:
    data = json.loads((DATA / "disco_v57_settings.txt").read_text())
    data[key] = value
    r = import_disco(data)
    try:
        info = field_info(f"animation.{key}")
    except SettingsError:  # another part of issue 13 adds the field; until then the key is reported
        assert "not supported" in r.ignored[key]
        return
    assert r.mapped[key] == f"animation.{key}"
    got = r.settings.get(info.name)
    assert got == pytest.approx(value) if isinstance(value, float) else got == value


DSD_FILE = {
    "W": 512, "H": 512, "sampler": "euler_ancestral", "steps": 50, "animation_mode": "2D", "max_frames": 10,
    "kernel_schedule": "0: (7)", "sigma_schedule": "0: (1.5)", "amount_schedule": "0: (0.3)",
    "threshold_schedule": "0: (2)", "color_coherence": "Match Frame 0 HSV", "diffusion_cadence": "2",
    "border": "wrap", "sampling_mode": "bilinear",
}


def test_deforum_stable_diffusion_import() -> None:
    r = import_deforum(DSD_FILE)
    a = r.settings.animation
    assert r.source_format == "Deforum"
    assert (a.antiblur_kernel, a.antiblur_sigma, a.antiblur_amount, a.antiblur_threshold) == (
        "0: (7)", "0: (1.5)", "0: (0.3)", "0: (2)"
    )
    assert (a.color_coherence, a.cadence, a.border, a.sampling_mode) == ("HSV", 2, "wrap", "bilinear")
    assert a.sampling_mode_2d == "bilinear" and a.noise_type == "gaussian"  # dsd has one (additive) noise
    # A dsd file leaving the coherence keys out gets dsd's defaults.
    r = import_deforum({"W": 512, "H": 512, "sampler": "euler"})
    a = r.settings.animation
    assert (a.color_coherence, a.antiblur_amount, a.noise_schedule, a.border) == ("LAB", "0: (0.2)", "0: (0.02)", "replicate")


WEBUI_FILE = {
    "W": 640, "H": 384, "sampler": "euler", "steps": 25, "animation_mode": "3D", "max_frames": 20,
    "noise_type": "perlin", "perlin_w": 4, "perlin_h": 8, "perlin_octaves": 3, "perlin_persistence": 0.4,
    "color_coherence": "LAB", "aspect_ratio_schedule": "0: (1)", "aspect_ratio_use_old_formula": False,
}


def test_webui_import_gets_webui_behaviour() -> None:
    r = import_deforum(WEBUI_FILE)
    a = r.settings.animation
    assert r.source_format == "Deforum (sd-webui-deforum)"
    assert a.noise_type == "webui-perlin"
    assert (a.perlin_w, a.perlin_h, a.perlin_octaves, a.perlin_persistence) == (4, 8, 3, 0.4)
    # Keys the file leaves out take webui's defaults (args.py), not dsd's.
    assert (a.antiblur_amount, a.noise_schedule, a.color_coherence) == ("0: (0.1)", "0: (0.065)", "LAB")
    # webui's camera depth and colour re-matching (fields of other parts of issue 13, where present).
    for name, value in (("animation.depth_convention", "webui"), ("animation.color_coherence_reference", "webui")):
        if name in iter_fields():
            assert r.settings.get(name) == value
            assert import_deforum(DSD_FILE).settings.get(name) == field_info(name).default
    if "animation.color_coherence_reference" in iter_fields():
        legacy = import_deforum({**WEBUI_FILE, "legacy_colormatch": True})
        assert legacy.settings.animation.color_coherence_reference == "deforum"
    assert import_deforum({**WEBUI_FILE, "noise_type": "uniform"}).settings.animation.noise_type == "webui-uniform"
    with pytest.raises(SettingsError, match="noise_type .-> animation.noise_type.: expected 'uniform' or 'perlin'"):
        import_deforum({**WEBUI_FILE, "noise_type": "pink"})


def test_webui_aspect_ratio_keys() -> None:
    try:
        field_info("animation.aspect_ratio_schedule")
    except SettingsError:
        r = import_deforum(WEBUI_FILE)
        assert "not supported" in r.ignored["aspect_ratio_schedule"]
        return
    r = import_deforum({**WEBUI_FILE, "aspect_ratio_schedule": "0: (1.5)"})
    assert r.settings.animation.aspect_ratio_schedule == "0: (1.5)"
    assert "aspect_ratio_use_old_formula" in r.ignored
    # webui's old formula: aspect ratio W / H, whatever the schedule says.
    r = import_deforum({**WEBUI_FILE, "aspect_ratio_use_old_formula": True})
    assert r.settings.animation.aspect_ratio_schedule == "0: (1.66667)"


@pytest.mark.parametrize(
    "name,ours",
    [
        ("None", "None"),
        ("Match Frame 0 LAB", "LAB"),
        ("Match Frame 0 HSV", "HSV"),
        ("Match Frame 0 RGB", "RGB"),
        ("LAB", "LAB"),
        ("HSV", "HSV"),
        ("RGB", "RGB"),
        ("Video Input", "LAB"),
        ("Image", "LAB"),
    ],
)
def test_deforum_colour_coherence_names(name: str, ours: str) -> None:
    r = import_deforum({**DSD_FILE, "color_coherence": name})
    assert r.settings.animation.color_coherence == ours
    if name in ("Video Input", "Image"):  # discolib lacks the reference; the report says so
        assert "not supported" in r.notes["color_coherence"] and "note color_coherence" in r.summary()
    else:
        assert "color_coherence" not in r.notes


def test_unknown_colour_coherence_is_refused() -> None:
    with pytest.raises(SettingsError, match="color_coherence .-> animation.color_coherence.: expected one of"):
        import_deforum({**DSD_FILE, "color_coherence": "Match Frame 0 XYZ"})


# ------------------------------------------------------------------------------------------------ anti-blur


def _np_gaussian_kernel(k: int, sigma: float) -> np.ndarray:
    """OpenCV's getGaussianKernel rule, re-derived: fixed binomial tables for k <= 9 with sigma <= 0."""
    fixed = {1: [1], 3: [1, 2, 1], 5: [1, 4, 6, 4, 1], 7: [1, 3.5, 7, 9, 7, 3.5, 1], 9: [4, 13, 30, 51, 60, 51, 30, 13, 4]}
    if sigma <= 0 and k in fixed:
        w = np.asarray(fixed[k], dtype=np.float64)
        return w / w.sum()
    if sigma <= 0:
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.arange(k) - (k - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def _np_unsharp(img: np.ndarray, k: int, sigma: float, amount: float) -> np.ndarray:
    """dsd's helpers/render.py unsharp_mask on an (H, W, C) float 0-255 frame, re-derived: GaussianBlur
    (separable, reflect-101 borders), (1 + a) * img - a * blur, clipped to 0-255, rounded to uint8."""
    w = _np_gaussian_kernel(k, sigma)
    r = k // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")  # numpy's reflect is OpenCV's reflect-101
    rows = sum(w[i] * padded[i : i + img.shape[0]] for i in range(k))
    blur = sum(w[i] * rows[:, i : i + img.shape[1]] for i in range(k))
    return np.clip((1 + amount) * img - amount * blur, 0, 255).round()


@pytest.mark.parametrize("k,sigma,amount", [(5, 1.0, 0.2), (5, 1.0, 0.1), (7, 0.0, 0.5), (9, 0.0, 0.3), (11, 2.0, 1.0)])
def test_unsharp_mask_is_deforums(k: int, sigma: float, amount: float) -> None:
    rng = np.random.default_rng(k)
    img = rng.integers(0, 256, (20, 28, 3)).astype(np.float64)
    x = torch.from_numpy(img).permute(2, 0, 1)[None] / 255
    want = _np_unsharp(img, k, sigma, amount)
    got = unsharp_mask(x, amount, k, sigma, quantize=True)[0].permute(1, 2, 0).numpy() * 255
    # Equal but where a value sits on a rounding tie (binomial kernels make exact .5s): one level there.
    assert np.abs(got - want).max() <= 1 + 1e-9 and (np.abs(got - want) > 1e-6).mean() < 0.01
    unrounded = unsharp_mask(x, amount, k, sigma)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(unrounded - want).max() <= 0.5 + 1e-6
    # The blur itself is OpenCV's (what the original calls) to float precision.
    assert np.allclose(gaussian_kernel_1d(k, sigma)[1], cv2.getGaussianKernel(k, sigma).ravel(), atol=1e-12)


def test_unsharp_mask_kernel_from_sigma_and_threshold() -> None:
    # Kernel size 0: OpenCV derives it from sigma as round(8 * sigma + 1) | 1 for float frames.
    assert gaussian_kernel_1d(0, 1.5)[0] == 13 and gaussian_kernel_1d(0, 1.0)[0] == 9
    img = np.zeros((12, 12, 3))
    img[:, 6:] = 150.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None] / 255
    # Threshold (8-bit levels / 255): where |img - blur| is below it the frame is kept.
    out = unsharp_mask(x, 0.2, 5, 1.0, threshold=10 / 255)[0].permute(1, 2, 0).numpy() * 255
    blur = cv2.GaussianBlur(img, (5, 5), 1.0)
    keep = np.abs(img - blur) < 10
    assert keep.any() and (~keep).any()
    np.testing.assert_allclose(out[keep], img[keep])
    np.testing.assert_allclose(out[~keep], np.clip(1.2 * img - 0.2 * blur, 0, 255)[~keep], atol=1e-9)


def test_antiblur_kernel_sizes() -> None:
    # Deforum's int() truncation; even sizes (cv2.GaussianBlur fails on them in both originals) become odd.
    assert [antiblur_kernel_size(v) for v in (0, 1, 3.7, 4, 5, 6.2)] == [0, 1, 3, 5, 5, 7]
    s = Settings.defaults("latent", "2D")
    s.set("animation.max_frames", 20)
    s.set("animation.antiblur_kernel", "0: (5), 10: (-5)")
    with pytest.raises(SettingsError, match=r"animation.antiblur_kernel: expected a kernel size from 0 to 255 .* at frame 6"):
        s.validate()


# ------------------------------------------------------------------------------------------------ noise


def test_gaussian_noise_is_dsds_add_noise() -> None:
    # dsd: sample (in [-1, 1]) + randn * noise_amt  ->  on [0, 1] frames: + randn * amount / 2.
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = add_noise(x, 0.02, "gaussian", torch.Generator().manual_seed(9))
    n = torch.randn((1, 3, 40, 56), generator=torch.Generator().manual_seed(9)).numpy().astype(np.float64)
    want = ((x.numpy() * 2 - 1) + n * 0.02 + 1) / 2
    np.testing.assert_allclose(out.numpy(), want, atol=1e-12)


def _np_webui_perlin(size: tuple[int, int], res: tuple[int, int], octaves: int, persistence: float,
                     angle_draws: list[np.ndarray]) -> np.ndarray:
    """sd-webui-deforum's rand_perlin_2d_octaves re-derived in numpy: per octave, lattice coordinates
    arange(0, res, res / size) mod 1, each pixel's cell's four corner gradients, quintic fade, no normalisation."""
    total = np.zeros(size)
    for k in range(octaves):
        ry, rx = res[0] * 2**k, res[1] * 2**k
        angles = angle_draws[k]  # (ry + 1, rx + 1), drawn in [0, 1)
        gy, gx = np.cos(2 * np.pi * angles), np.sin(2 * np.pi * angles)
        cy = (np.arange(size[0]) * ry) // size[0]
        cx = (np.arange(size[1]) * rx) // size[1]
        fy = (np.arange(size[0]) * ry / size[0] % 1)[:, None]
        fx = (np.arange(size[1]) * rx / size[1] % 1)[None, :]

        # n[dy][dx]: the gradient at the cell's corner (dy, dx) dotted with the pixel's offset from that corner.
        n = [
            [gy[(cy + dy)[:, None], (cx + dx)[None, :]] * (fy - dy) + gx[(cy + dy)[:, None], (cx + dx)[None, :]] * (fx - dx)
             for dx in (0, 1)]
            for dy in (0, 1)
        ]
        ty, tx = (6 * t**5 - 15 * t**4 + 10 * t**3 for t in (fy, fx))
        a = n[0][0] + ty * (n[1][0] - n[0][0])
        b = n[0][1] + ty * (n[1][1] - n[0][1])
        total += persistence**k * np.sqrt(2) * (a + tx * (b - a))
    return total


def _draws(gen: torch.Generator, res: tuple[int, int], octaves: int) -> list[np.ndarray]:
    return [torch.rand(res[0] * 2**k + 1, res[1] * 2**k + 1, generator=gen).double().numpy() for k in range(octaves)]


def test_lattice_perlin_is_webuis_pattern() -> None:
    for size, res, octaves, persistence in (((128, 192), (8, 8), 4, 0.5), ((64, 128), (2, 4), 3, 0.7), ((50, 70), (3, 5), 2, 0.5)):
        got = lattice_perlin(size, res, octaves, persistence, generator=torch.Generator().manual_seed(5))
        want = _np_webui_perlin(size, res, octaves, persistence, _draws(torch.Generator().manual_seed(5), res, octaves))
        np.testing.assert_allclose(got.numpy(), want, atol=2e-5)


@pytest.mark.parametrize("size", [(128, 192), (150, 200), (40, 72)])
def test_webui_noise_is_webuis_add_noise(size: tuple[int, int]) -> None:
    h, w = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    amount = 0.065
    for kind in ("webui-uniform", "webui-perlin"):
        out = add_noise(x, amount, kind, torch.Generator().manual_seed(7), perlin_cells=(8, 8)).numpy()[0]
        gen = torch.Generator().manual_seed(7)
        if kind == "webui-perlin":
            # webui draws at the size rounded down to 64 (full size under 64) and resizes back (nearest).
            nh, nw = (h - h % 64 or h), (w - w % 64 or w)
            white = torch.randn((3, nh, nw), generator=gen).double().numpy()
            pattern = _np_webui_perlin((nh, nw), (8, 8), 4, 0.5, _draws(gen, (8, 8), 4))
            noise = white * (pattern + 1) / 2
            noise = noise[:, (np.arange(h) * nh) // h][:, :, (np.arange(w) * nw) // w]
        else:
            noise = torch.randn((3, h, w), generator=gen).double().numpy()
        levels = np.floor(np.clip(noise * 0.5 + 0.5, 0, 1).astype(np.float32) * np.float32(255)) / 255
        want = (1 - amount) * x.numpy()[0] + amount * levels  # cv2.addWeighted(frame, 1 - a, noise, a, 0)
        assert np.abs(out - want).max() < 1e-5


def test_webui_noise_is_weaker_and_fades_the_frame() -> None:
    # The numbers: webui's addWeighted gives ~0.71x dsd's noise and shrinks the frame by (1 - amount).
    x = torch.full((1, 3, 256, 256), 0.8, dtype=torch.float64)
    dsd = add_noise(x, 0.1, "gaussian", torch.Generator().manual_seed(3)) - x
    webui = add_noise(x, 0.1, "webui-uniform", torch.Generator().manual_seed(3))
    ratio = float(webui.std() / dsd.std())
    assert 0.68 < ratio < 0.76
    assert abs(float(webui.mean()) - (0.9 * 0.8 + 0.1 * 0.5)) < 0.005  # the frame fades towards grey


def test_noise_is_the_same_on_every_device(device: torch.device) -> None:
    x = torch.rand(1, 3, 70, 130, generator=torch.Generator().manual_seed(4))
    for kind in ("gaussian", "perlin", "webui-uniform", "webui-perlin"):
        cpu = add_noise(x, 0.1, kind, torch.Generator().manual_seed(1))
        dev = add_noise(x.to(device), 0.1, kind, torch.Generator().manual_seed(1))
        assert dev.device.type == device.type
        torch.testing.assert_close(dev.cpu(), cpu, atol=1e-5, rtol=1e-5)
