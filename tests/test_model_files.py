"""Hostile weights files: pickled code in a Disco checkpoint, a CLIP weights file, a depth-model folder or a latent
(diffusers) folder is refused with one line naming the file, and the code never runs; legitimate ``.bin`` weights
still load, always through ``torch.load(weights_only=True)``; "weights unavailable" errors share one base class."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import discolib.models.state_dict as state_dict_mod
from discolib.errors import InputError, WeightsUnavailable
from discolib.models.archs import TINY_ADM
from discolib.models.clip import ClipModelError, ClipWeightsError, load_clip
from discolib.models.depth import DepthError, DepthModelUnavailable, build_tiny_depth_anything, load_depth
from discolib.models.disco import load_disco_unet, load_secondary_model
from discolib.models.hub import CheckpointUnavailable, fetch_checkpoint
from discolib.models.latent import (
    LatentModelError,
    LatentModelUnavailable,
    load_latent_components,
    tiny_latent_folder,
)
from discolib.models.state_dict import CheckpointError, load_state_dict, pickled_globals

# What unpickling the payload would call: os.mkdir is harmless and leaves a trace the tests look for.
CALLED = f"{os.mkdir.__module__}.mkdir"


class Payload:
    """Unpickling this creates the folder ``target`` (a stand-in for ``os.system(...)``)."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (self.target,))


def write_payload(path: Path, target: Path, *, raw: bool = False) -> Path:
    """A weights file that runs code when unpickled: torch.save's zip format, or a bare pickle (``raw``)."""
    obj = {"weight": torch.zeros(2), "evil": Payload(target)}
    if raw:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path)
    return path


def assert_refused(message: str, path: Path, target: Path) -> None:
    assert "\n" not in message, message
    assert str(path) in message and "not a plain weights file" in message, message
    assert "pickled code" in message and CALLED in message and ".safetensors" in message, message
    assert not target.exists(), "the pickled payload ran"


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test of this module on one torch thread (the conftest fixture)."""


# ----------------------------------------------------------------------------------------------- static scan
@pytest.mark.parametrize("raw", [False, True], ids=["torch.save", "bare-pickle"])
def test_pickled_globals_names_the_payload_without_running_it(tmp_path: Path, raw: bool) -> None:
    target = tmp_path / "ran"
    evil = write_payload(tmp_path / "evil.bin", target, raw=raw)
    found = pickled_globals(evil)
    # A bare pickle of a tensor also names torch.storage._load_from_bytes, itself an unrestricted torch.load.
    assert found == ([CALLED, "torch.storage._load_from_bytes"] if raw else [CALLED])
    torch.save({"w": torch.ones(3)}, tmp_path / "plain.pt")
    assert pickled_globals(tmp_path / "plain.pt") == []  # tensors and their rebuild functions are plain weights
    (tmp_path / "garbage.bin").write_bytes(os.urandom(256))
    assert pickled_globals(tmp_path / "garbage.bin") == []
    assert not target.exists()


# ----------------------------------------------------------------------------------------------- the four loaders
@pytest.mark.parametrize(("suffix", "raw"), [(".pt", False), (".pth", True), (".bin", False)])
def test_disco_checkpoint_with_pickled_code(tmp_path: Path, suffix: str, raw: bool) -> None:
    target = tmp_path / "ran"
    evil = write_payload(tmp_path / f"model{suffix}", target, raw=raw)
    for load in (
        lambda: load_state_dict(evil),
        lambda: load_disco_unet(evil, config=TINY_ADM),
        lambda: load_secondary_model(evil),
    ):
        with pytest.raises(CheckpointError) as info:
            load()
        assert isinstance(info.value, InputError) and not isinstance(info.value, WeightsUnavailable)
        assert_refused(str(info.value), evil, target)


@pytest.mark.parametrize("raw", [False, True], ids=["torch.save", "bare-pickle"])
def test_clip_weights_file_with_pickled_code(tmp_path: Path, raw: bool) -> None:
    target = tmp_path / "ran"
    evil = write_payload(tmp_path / "open_clip_pytorch_model.bin", target, raw=raw)
    with pytest.raises(ClipModelError) as info:
        load_clip(f"ViT-B-32/{evil}")
    assert not isinstance(info.value, ClipWeightsError)  # refused, not "unavailable": no random-weights fallback
    assert_refused(str(info.value), evil, target)


def _depth_folder(folder: Path, weights: str = "evil", target: Path | None = None) -> Path:
    model, processor = build_tiny_depth_anything()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    sd = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    if weights == "evil":
        assert target is not None
        torch.save({**sd, "evil": Payload(target)}, folder / "pytorch_model.bin")
    else:
        torch.save(sd, folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin"


@pytest.mark.parametrize("checked_first", [True, False], ids=["folder-check", "transformers-refusal"])
def test_depth_folder_with_pickled_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked_first: bool) -> None:
    target = tmp_path / "ran"
    evil = _depth_folder(tmp_path / "depth", target=target)
    if not checked_first:  # transformers' own torch.load(weights_only=True) refuses; the error is translated
        monkeypatch.setattr(state_dict_mod, "weights_folder_problem", lambda _folder: None)
    with pytest.raises(DepthError) as info:
        load_depth(str(tmp_path / "depth"))
    assert not isinstance(info.value, DepthModelUnavailable)
    assert_refused(str(info.value), evil, target)


def _latent_copy(dest: Path) -> Path:
    shutil.copytree(tiny_latent_folder(), dest)
    return dest


@pytest.mark.parametrize("checked_first", [True, False], ids=["folder-check", "diffusers-refusal"])
def test_latent_folder_with_pickled_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checked_first: bool) -> None:
    target = tmp_path / "ran"
    folder = _latent_copy(tmp_path / "sd")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    evil = write_payload(folder / "unet" / "diffusion_pytorch_model.bin", target)
    if not checked_first:  # diffusers wraps torch's UnpicklingError in an OSError; it is found in the chain
        monkeypatch.setattr(state_dict_mod, "weights_folder_problem", lambda _folder: None)
    with pytest.raises(LatentModelError) as info:
        load_latent_components(folder)
    assert not isinstance(info.value, LatentModelUnavailable)
    assert_refused(str(info.value), evil, target)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_latent_folder_with_a_fifo_or_deep_config_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = _latent_copy(tmp_path / "sd")
    config = folder / "scheduler" / "scheduler_config.json"
    config.unlink()
    os.mkfifo(config)  # diffusers would block forever opening it
    with pytest.raises(LatentModelError, match=r"scheduler_config\.json is not a regular file") as info:
        load_latent_components(folder)
    assert "\n" not in str(info.value)
    config.unlink()
    config.write_text('{"a": ' * 5000 + "1" + "}" * 5000)
    with pytest.raises(LatentModelError, match="nested too deeply") as info:
        load_latent_components(folder)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- plain .bin weights
@pytest.fixture
def torch_load_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every torch.load call's ``weights_only`` argument (None when the caller left it to torch's default)."""
    calls: list[Any] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def test_plain_bin_weights_load_and_only_with_weights_only(tmp_path: Path, torch_load_calls: list[Any]) -> None:
    """Legitimate pickle-format weights still work, and every loader on our paths asks for weights_only=True."""
    _depth_folder(tmp_path / "depth", weights="plain")
    est = load_depth(str(tmp_path / "depth"))
    assert est(torch.rand(1, 3, 28, 28)).shape == (1, 1, 28, 28)

    folder = _latent_copy(tmp_path / "sd")
    for part, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        st = folder / part / f"{name}.safetensors"
        bin_name = "pytorch_model.bin" if part == "text_encoder" else f"{name}.bin"
        torch.save(load_file(str(st)), folder / part / bin_name)
        st.unlink()
    comps = load_latent_components(folder)
    assert comps.unet.config.in_channels == 4

    torch.save({"w": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_state_dict(tmp_path / "plain.pt")["w"], torch.ones(2))
    assert len(torch_load_calls) >= 5 and all(w is True for w in torch_load_calls), torch_load_calls


def test_clip_asks_open_clip_for_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open_clip's default is weights_only=True already; discolib passes it explicitly (a full CLIP is too big
    to build here, so open_clip.create_model is replaced by a probe that records its arguments)."""
    import open_clip

    seen: dict[str, Any] = {}

    def probe(name: str, **kwargs: Any) -> Any:
        seen.update(kwargs, name=name)
        raise RuntimeError("probe: not building the model")

    monkeypatch.setattr(open_clip, "create_model", probe)
    plain = tmp_path / "weights.bin"
    torch.save({"w": torch.ones(1)}, plain)
    with pytest.raises(ClipWeightsError, match="probe: not building the model"):
        load_clip(f"ViT-B-32/{plain}")
    assert seen["name"] == "ViT-B-32" and seen["pretrained"] == str(plain) and seen["weights_only"] is True


def test_device_and_dtype_errors_are_input_errors() -> None:
    from discolib.models.device import resolve_device, resolve_dtype

    for bad in ("gpu", "cuda:x", "\x00"):
        with pytest.raises(InputError, match="models.device: expected") as info:
            resolve_device(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="models.dtype: expected one of"):
        resolve_dtype("float8", torch.device("cpu"))
    with pytest.raises(InputError, match="not supported on the CPU"):
        resolve_dtype("float16", torch.device("cpu"))


# ----------------------------------------------------------------------------------------------- unavailable weights
def test_unavailable_weights_share_one_base_and_stay_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in (CheckpointUnavailable, ClipWeightsError, DepthModelUnavailable, LatentModelUnavailable):
        assert issubclass(cls, WeightsUnavailable) and issubclass(cls, InputError) and issubclass(cls, ValueError)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointUnavailable) as info:
        fetch_checkpoint("256x256_diffusion_uncond", cache_dir=tmp_path)
    assert info.value.reason == "offline" and "\n" not in str(info.value)
    with pytest.raises(LatentModelUnavailable) as latent_info:
        load_latent_components("discolib-tests/no-such-model")
    assert latent_info.value.reason == "offline" and "\n" not in str(latent_info.value)
    with pytest.raises(DepthModelUnavailable) as depth_info:
        load_depth(str(tmp_path / "no" / "such" / "folder"))
    assert depth_info.value.reason and "\n" not in str(depth_info.value)
    with pytest.raises(ClipWeightsError) as clip_info:
        load_clip(f"ViT-B-32/{tmp_path / 'absent.bin'}")
    assert clip_info.value.reason and "\n" not in str(clip_info.value)
