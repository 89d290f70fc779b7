"""Depth estimators and depth utilities (discolib.models.depth), offline: tiny random models only."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discolib.models.depth import (
    DEFORUM_DEPTH_RANGE,
    TINY_DEPTH_PRESET,
    ConstantDepth,
    DepthError,
    DepthEstimator,
    DepthModelUnavailable,
    TransformersDepth,
    _disparity_to_depth,
    blend_depth,
    build_tiny_depth_anything,
    load_depth,
    normalize_depth,
    save_depth_png,
)


class RampDepth:
    """A test estimator: depth grows left to right from 0 to ``scale``."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.name = f"ramp{scale:g}"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        ramp = torch.linspace(0.0, self.scale, w, device=image.device, dtype=image.dtype)
        return ramp.expand(b, 1, h, w).clone()


def test_constant_depth() -> None:
    est = ConstantDepth(2.5)
    assert isinstance(est, DepthEstimator) and est.name == "constant:2.5"
    image = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    depth = est(image)
    assert depth.shape == (2, 1, 5, 7) and depth.dtype == torch.float64
    assert torch.all(depth == 2.5)
    with pytest.raises(DepthError):
        ConstantDepth(0.0)
    with pytest.raises(DepthError, match=r"\(B, 3, H, W\)"):
        est(torch.rand(3, 5, 7))


def test_normalize_depth_maps_each_frame_min_max(device: torch.device) -> None:  # conftest's --device fixture
    depth = torch.stack(
        [torch.linspace(3.0, 9.0, 12).view(1, 3, 4), torch.linspace(-1.0, 0.5, 12).view(1, 3, 4) ** 2]
    ).to(device)
    out = normalize_depth(depth, 1.0, 2.0)
    assert out.shape == depth.shape
    torch.testing.assert_close(out.amin(dim=(1, 2, 3)), torch.ones(2, device=device))
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), torch.full((2,), 2.0, device=device))
    # Linear and order preserving within a frame.
    torch.testing.assert_close(out[0].flatten(), torch.linspace(1.0, 2.0, 12, device=device))
    assert torch.equal(out[1].flatten().argsort(), depth[1].flatten().argsort())


def test_normalize_depth_flat_and_equalize() -> None:
    flat = torch.full((1, 1, 4, 4), 7.0)
    assert torch.all(normalize_depth(flat) == DEFORUM_DEPTH_RANGE[0])
    assert torch.all(normalize_depth(flat, equalize=True) == DEFORUM_DEPTH_RANGE[0])
    skewed = torch.tensor([0.0, 0.1, 0.2, 10.0, 10.0]).view(1, 1, 1, 5)
    eq = normalize_depth(skewed, 0.0 + 1.0, 5.0, equalize=True)
    # Ranks 0, 1, 2 and the tied pair at 3.5 of 4: equalisation spreads values by rank, ties stay equal.
    torch.testing.assert_close(eq.flatten(), torch.tensor([1.0, 2.0, 3.0, 4.5, 4.5]))
    with pytest.raises(DepthError, match="near"):
        normalize_depth(skewed, 2.0, 1.0)


def test_disparity_conversion() -> None:
    disparity = torch.tensor([0.0, 1.0, 3.0, 4.0]).view(1, 1, 1, 4)
    linear = _disparity_to_depth(disparity, "linear")
    torch.testing.assert_close(linear.flatten(), torch.tensor([2.0, 1.75, 1.25, 1.0]))  # near (big disparity) = 1
    inverse = _disparity_to_depth(disparity, "inverse")
    torch.testing.assert_close(inverse.flatten(), torch.tensor([100.0, 4.0, 4.0 / 3.0, 1.0]))  # 4 / disparity
    flat = _disparity_to_depth(torch.zeros(1, 1, 2, 2), "linear")  # no information: flat, not NaN
    assert torch.all(flat == 2.0)
    assert torch.isfinite(_disparity_to_depth(torch.zeros(1, 1, 2, 2), "inverse")).all()


def test_blend_depth_weights_and_normalisation() -> None:
    image = torch.rand(1, 3, 4, 6)
    blended = blend_depth([(RampDepth(10.0), 1.0), (ConstantDepth(3.0), 3.0)])
    assert isinstance(blended, DepthEstimator) and "ramp10" in blended.name
    ramp01 = torch.linspace(0.0, 1.0, 6).expand(1, 1, 4, 6)
    # Ramp normalised to [1, 2], constant normalised to 1 (flat), weights 1/4 and 3/4.
    torch.testing.assert_close(blended(image), 0.25 * (1.0 + ramp01) + 0.75 * 1.0)
    raw = blend_depth([(RampDepth(10.0), 1.0), (ConstantDepth(3.0), 1.0)], normalize=False)
    torch.testing.assert_close(raw(image), 0.5 * (10.0 * ramp01) + 0.5 * 3.0)
    with pytest.raises(DepthError):
        blend_depth([])
    with pytest.raises(DepthError, match="weights"):
        blend_depth([(ConstantDepth(1.0), -1.0)])


def test_save_depth_png_16_bit_atomic(tmp_path: Path) -> None:
    depth = torch.linspace(1.0, 2.0, 30).view(1, 1, 5, 6)
    path = save_depth_png(depth, tmp_path / "depth_00001.png")
    assert path.exists() and os.listdir(tmp_path) == ["depth_00001.png"]  # no temporary files left behind
    with Image.open(path) as img:
        assert img.mode.startswith("I") and img.size == (6, 5)
        pixels = np.array(img)
    assert pixels.min() == 0 and pixels.max() == 65535
    expected = np.round(np.linspace(0, 65535, 30)).reshape(5, 6)
    assert np.abs(pixels.astype(np.int64) - expected).max() <= 1
    fixed = save_depth_png(depth[0, 0], tmp_path / "fixed.png", vmin=0.0, vmax=4.0)
    with Image.open(fixed) as img:
        assert abs(int(np.array(img)[0, 0]) - round(65535 / 4)) <= 1
    with pytest.raises(DepthError):
        save_depth_png(torch.rand(2, 1, 3, 3), tmp_path / "batch.png")
    with pytest.raises(OSError):
        save_depth_png(depth, tmp_path / "missing-folder" / "d.png")
    assert sorted(os.listdir(tmp_path)) == ["depth_00001.png", "fixed.png"]


def test_load_depth_constant_and_errors() -> None:
    assert load_depth("constant:1.5").name == "constant:1.5"
    assert load_depth("constant") is load_depth("constant")
    with pytest.raises(DepthError, match="constant"):
        load_depth("constant:abc")
    with pytest.raises(DepthModelUnavailable, match="does not exist"):
        load_depth("/no/such/depth/model/folder")


@pytest.mark.slow
def test_unknown_or_offline_model_gives_clear_error() -> None:
    with pytest.raises(DepthModelUnavailable) as info:
        load_depth("discolib-tests/no-such-depth-model")
    message = str(info.value)
    assert "discolib-tests/no-such-depth-model" in message and "--local-dir" in message


@pytest.fixture(scope="module")
def tiny() -> TransformersDepth:
    est = load_depth(TINY_DEPTH_PRESET)
    assert isinstance(est, TransformersDepth)
    return est


@pytest.mark.slow
def test_tiny_depth_anything_runs_through_transformers_path(tiny: TransformersDepth) -> None:
    assert isinstance(tiny, DepthEstimator) and tiny.name == TINY_DEPTH_PRESET and not tiny.metric
    image = torch.rand(2, 3, 50, 75)
    depth = tiny(image)
    assert depth.shape == (2, 1, 50, 75) and depth.dtype == image.dtype
    assert torch.isfinite(depth).all() and depth.min() >= 1.0 and depth.max() <= 2.0
    # Deterministic: a second, independently built tiny model gives the same depth.
    model, processor = build_tiny_depth_anything()
    torch.testing.assert_close(TransformersDepth(model, processor)(image), depth)
    # Cached per (name, device, dtype).
    assert load_depth(TINY_DEPTH_PRESET) is tiny
    assert load_depth(TINY_DEPTH_PRESET, dtype=torch.float64) is not tiny


@pytest.mark.slow
def test_preprocessing_matches_the_transformers_image_processor(tiny: TransformersDepth) -> None:
    _, processor = build_tiny_depth_anything()
    for h, w in [(50, 75), (512, 768), (100, 1000), (64, 64)]:
        size = tiny.model_input_size(h, w)
        assert size[0] % 14 == 0 and size[1] % 14 == 0
        expected = processor(images=torch.zeros(3, h, w), return_tensors="pt")["pixel_values"].shape[-2:]
        assert size == tuple(expected)
    v, u = torch.meshgrid(torch.linspace(0, 1, 50), torch.linspace(0, 1, 75), indexing="ij")
    image = torch.stack((u, v, 0.5 + 0.3 * torch.sin(6 * u)))[None]
    reference = processor(images=image, return_tensors="pt", do_rescale=False)["pixel_values"]
    captured: dict[str, torch.Tensor] = {}
    hook = tiny.model.register_forward_pre_hook(
        lambda _m, args, kwargs: captured.update(x=kwargs["pixel_values"]), with_kwargs=True
    )
    try:
        tiny(image)
    finally:
        hook.remove()
    assert captured["x"].shape == reference.shape
    torch.testing.assert_close(captured["x"], reference, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_local_folder_loads_like_the_hub(tiny: TransformersDepth, tmp_path: Path) -> None:
    model, processor = build_tiny_depth_anything()
    model.save_pretrained(tmp_path)  # safetensors
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    from_folder = load_depth(str(tmp_path))
    assert isinstance(from_folder, TransformersDepth) and from_folder.name == str(tmp_path)
    image = torch.rand(1, 3, 42, 56)
    torch.testing.assert_close(from_folder(image), tiny(image))


@pytest.mark.slow
def test_metric_models_pass_depth_through() -> None:
    model, processor = build_tiny_depth_anything()
    model.config.depth_estimation_type = "metric"
    est = TransformersDepth(model, processor, disparity_to_depth="inverse")
    assert est.metric
    image = torch.rand(1, 3, 28, 28)
    pixels = processor(images=image, return_tensors="pt", do_rescale=False)["pixel_values"]
    with torch.no_grad():
        raw = model(pixel_values=pixels).predicted_depth.unsqueeze(1)
    expected = torch.nn.functional.interpolate(raw, size=(28, 28), mode="bicubic", align_corners=False)
    torch.testing.assert_close(est(image), expected.clamp(min=1e-3), atol=1e-5, rtol=1e-4)


def test_transformers_depth_rejects_bad_input() -> None:
    with pytest.raises(DepthError, match="disparity_to_depth"):
        TransformersDepth(torch.nn.Linear(1, 1), disparity_to_depth="log")  # type: ignore[arg-type]
    with pytest.raises(DepthError, match="model"):
        TransformersDepth(torch.nn.Linear(1, 1))
    assert math.isclose(DEFORUM_DEPTH_RANGE[1] - DEFORUM_DEPTH_RANGE[0], 1.0)


def test_tiny_depth_runs_in_bfloat16_on_cpu() -> None:
    # Antialiased resizing has no bf16 CPU kernel; the estimator resizes in float32 and casts afterwards.
    from discolib.models.depth import load_depth

    est = load_depth("tiny-depth-anything", "cpu", torch.bfloat16)
    out = est(torch.rand(1, 3, 48, 80))
    assert out.shape == (1, 1, 48, 80) and torch.isfinite(out.float()).all()
