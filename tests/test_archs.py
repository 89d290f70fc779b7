"""Real architectures with random weights (models.random_weights): configs build, fallbacks warn."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from discolib.archs import LATENT_ARCHS, RandomWeightsWarning
from discolib.presets import apply_preset
from discolib.samplers.guided import _load_secondary
from discolib.settings import Settings


@pytest.mark.parametrize("preset", list(LATENT_ARCHS))
def test_latent_arch_configs_build(preset: str) -> None:
    unet_cfg, _ = LATENT_ARCHS[preset]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
    n = sum(p.numel() for p in unet.parameters())
    assert 850e6 < n < 880e6  # the SD 1.x/2.x UNet has about 860M parameters


def test_secondary_falls_back_to_random_only_when_allowed(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path))
    with pytest.raises(ValueError, match="secondary_model_imagenet_2"):
        _load_secondary("secondary_model_imagenet_2", torch.device("cpu"), torch.float32)
    with pytest.warns(RandomWeightsWarning, match="RANDOM weights"):
        model = _load_secondary("secondary_model_imagenet_2", torch.device("cpu"), torch.float32, random_ok=True)
    assert model.c == 64


def test_random_weights_setting_round_trips() -> None:
    s = apply_preset(Settings.defaults("latent"), "sd-turbo")
    s.set("random_weights", True)
    assert Settings.from_dict(s.to_dict()).models.random_weights is True
