"""Real architectures with random weights (models.random_weights): configs build, fallbacks warn."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.models.archs import LATENT_ARCHS, RandomWeightsWarning
from discolib.samplers.guided import _load_secondary


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


def test_refused_or_mismatched_checkpoint_never_falls_back_to_random(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """Only weights that cannot be had fall back (WeightsUnavailable); a file that is there but wrong stays an error."""
    from discolib.errors import WeightsUnavailable
    from discolib.models.state_dict import CheckpointError
    from discolib.samplers.guided import _load_unet

    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path))
    # A file named like the catalogue entry but with other content: a SHA mismatch, not "unavailable".
    (tmp_path / "secondary_model_imagenet_2.pth").write_bytes(b"not the real checkpoint")
    with pytest.raises(CheckpointError) as info:
        _load_secondary("secondary_model_imagenet_2", torch.device("cpu"), torch.float32, random_ok=True)
    assert not isinstance(info.value, WeightsUnavailable)
    garbage = tmp_path / "mine.pt"
    garbage.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as info:
        _load_unet(str(garbage), torch.device("cpu"), torch.float32, random_ok=True)
    assert not isinstance(info.value, WeightsUnavailable)
