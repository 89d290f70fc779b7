"""discolib.models.load: one loader per model kind, and the one random-weights fallback (models.random_weights)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from discolib.errors import InputError, WeightsUnavailable
from discolib.models import load as load_mod
from discolib.models.archs import build_tiny_adm_unet, build_tiny_secondary
from discolib.models.depth import DEFAULT_DEPTH_MODEL, DepthModelUnavailable, TransformersDepth
from discolib.models.latent import LatentComponents, LatentModelUnavailable, load_latent_components
from discolib.models.load import (
    RandomWeightsWarning,
    load,
    load_clip_ensemble,
    load_depth_estimator,
    load_diffusion,
    load_latent,
    load_secondary,
)
from discolib.models.state_dict import CheckpointError

CPU = torch.device("cpu")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty models folder (and the hub offline, from conftest): catalogue checkpoints are unavailable."""
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path))
    return tmp_path


def test_tiny_models_load_frozen_in_the_requested_dtype() -> None:
    unet = load_diffusion("tiny", CPU, torch.float64)
    assert _same_weights(unet.float(), build_tiny_adm_unet())
    sec = load_secondary("tiny", CPU, torch.float32)
    assert _same_weights(sec, build_tiny_secondary())
    for model in (unet, sec):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())


def test_secondary_falls_back_to_random_only_when_allowed(no_models: Path) -> None:
    with pytest.raises(WeightsUnavailable, match="secondary_model_imagenet_2"):
        load_secondary("secondary_model_imagenet_2", CPU, torch.float32)
    with pytest.warns(RandomWeightsWarning, match="RANDOM weights") as record:
        model = load_secondary("secondary_model_imagenet_2", CPU, torch.float32, random_ok=True)
    assert model.c == 64  # the released width
    assert record[0].filename == __file__  # the warning points at the caller of the loader
    with pytest.warns(RandomWeightsWarning):  # every time, not once per process
        again = load_secondary("secondary_model_imagenet_2", CPU, torch.float32, random_ok=True)
    assert _same_weights(model, again)  # fixed seed: a resumed run gets the same random weights


def test_diffusion_falls_back_to_the_catalogue_architecture(no_models: Path) -> None:
    name = "256x256_diffusion_uncond"
    with pytest.raises(WeightsUnavailable):
        load_diffusion(name, CPU, torch.float32)
    with pytest.warns(RandomWeightsWarning, match=f"models.diffusion_model {name!r}"):
        unet = load_diffusion(name, CPU, torch.float32, random_ok=True)
    assert unet.config.sample_size == 256 and unet.config.out_channels == 6
    assert not any(p.requires_grad for p in unet.parameters())


def test_refused_or_mismatched_checkpoint_never_falls_back_to_random(no_models: Path) -> None:
    """Only weights that cannot be had fall back (WeightsUnavailable); a file that is there but wrong stays an error."""
    # A file named like the catalogue entry but with other content: a SHA mismatch, not "unavailable".
    (no_models / "secondary_model_imagenet_2.pth").write_bytes(b"not the real checkpoint")
    with pytest.raises(CheckpointError) as info:
        load_secondary("secondary_model_imagenet_2", CPU, torch.float32, random_ok=True)
    assert not isinstance(info.value, WeightsUnavailable)
    garbage = no_models / "mine.pt"
    garbage.write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as info:
        load_diffusion(str(garbage), CPU, torch.float32, random_ok=True)
    assert not isinstance(info.value, WeightsUnavailable)
    with pytest.raises(InputError, match="unknown model"):
        load_diffusion("no-such-model", CPU, torch.float32, random_ok=True)


def test_depth_falls_back_only_for_the_default_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-folder")
    with pytest.raises(DepthModelUnavailable):
        load_depth_estimator(missing, CPU, random_ok=True)  # no random architecture for an arbitrary model

    def unavailable(name: str, device: torch.device) -> Any:
        raise DepthModelUnavailable(f"could not load {name}. Details", reason="offline")

    monkeypatch.setattr(load_mod, "load_depth", unavailable)
    with pytest.raises(DepthModelUnavailable):
        load_depth_estimator(DEFAULT_DEPTH_MODEL, CPU)
    with pytest.warns(RandomWeightsWarning, match=r"real weights unavailable \(could not load"):
        est = load_depth_estimator(DEFAULT_DEPTH_MODEL, CPU, random_ok=True)
    assert isinstance(est, TransformersDepth) and "random weights" in est.name
    assert est.model.config.backbone_config.hidden_size == 384 and est.target_size == (518, 518)  # V2 Small
    depth = est(torch.rand(1, 3, 28, 42))
    assert depth.shape == (1, 1, 28, 42) and bool((depth > 0).all())


def test_latent_falls_back_only_for_known_architectures(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = load_latent_components("tiny-latent", vae="tiny")
    calls: list[dict[str, Any]] = []

    def unavailable(name: str, **kwargs: Any) -> LatentComponents:
        raise LatentModelUnavailable(f"cannot load unet/ of {name!r}. Download it", reason="offline")

    def random(preset: str, **kwargs: Any) -> LatentComponents:
        calls.append({"preset": preset, **kwargs})
        return tiny  # the real SD architectures are too big for a unit test

    monkeypatch.setattr(load_mod, "load_latent_components", unavailable)
    monkeypatch.setattr(load_mod, "random_latent_components", random)
    with pytest.raises(LatentModelUnavailable):
        load_latent("sd-turbo", CPU, torch.float32, vae="madebyollin/taesd")
    with pytest.raises(LatentModelUnavailable):  # no random architecture for this one
        load_latent("someone/custom-model", CPU, torch.float32, random_ok=True)
    with pytest.warns(RandomWeightsWarning, match="models.latent_model 'sd-turbo'"):
        comps = load_latent("sd-turbo", CPU, torch.float32, random_ok=True, vae="madebyollin/taesd", channels_last=True)
    assert comps is tiny
    assert calls == [{"preset": "sd-turbo", "device": CPU, "dtype": torch.float32, "fast_vae": True}]
    assert comps.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)  # the options still apply


def test_latent_options_reach_the_real_loader() -> None:
    comps = load_latent("tiny-latent", CPU, torch.float32, vae="tiny", channels_last=True)
    assert comps.preview_vae is not None
    assert comps.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_clip_ensemble_members_fall_back_one_by_one(tmp_path: Path) -> None:
    missing = f"ViT-B-32/{tmp_path / 'missing.bin'}"
    with pytest.raises(WeightsUnavailable):
        load_clip_ensemble(["tiny-vit", missing], CPU, torch.float32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ens = load_clip_ensemble(["tiny-vit", missing], CPU, torch.float32, random_ok=True)
    ours = [w for w in record if issubclass(w.category, RandomWeightsWarning)]
    assert len(ours) == 1 and "missing.bin" in str(ours[0].message)  # only the unavailable member
    assert ens.image_sizes == [32, 224]


def test_load_dispatches_by_kind() -> None:
    unet = load("diffusion", "tiny", device=CPU, dtype=torch.float32)
    assert _same_weights(unet, build_tiny_adm_unet())
    ens = load("clip", ["tiny-vit"], device=CPU, dtype=torch.float32)
    assert ens.image_sizes == [32]
    with pytest.raises(InputError, match="unknown model kind 'vae'"):
        load("vae", "tiny")  # type: ignore[arg-type]


def test_library_progress_bars_off_for_the_duration_then_restored() -> None:
    """progress=False renders switch the libraries' bars off (no frozen bars in notebook outputs), then restore them."""
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hf_utils
    import transformers.utils.logging as transformers_logging

    from discolib.models.load import library_progress_bars

    def state() -> tuple[bool, bool, bool]:
        return (
            transformers_logging.is_progress_bar_enabled(),
            diffusers_logging.is_progress_bar_enabled(),
            not hf_utils.are_progress_bars_disabled(),
        )

    before = state()
    with library_progress_bars(True):
        assert state() == before
    with library_progress_bars(False):
        assert state() == (False, False, False)
    assert state() == before
    outer, inner = library_progress_bars(False), library_progress_bars(False)  # a panel render and a cell render
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    assert state() == (False, False, False)  # the first to end must not switch the bars on under the other
    inner.__exit__(None, None, None)
    assert state() == before
    transformers_logging.disable_progress_bar()  # a user's own choice survives a render
    try:
        with library_progress_bars(False):
            pass
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        transformers_logging.enable_progress_bar()
