"""Disco Diffusion's own models by catalogue name or file: the guided-diffusion UNets and the secondary model.

Names resolve through :mod:`discolib.models.hub` (catalogue, models folder, download, SHA-256); files load through
:mod:`discolib.models.state_dict`; the UNet's hyper-parameters become a diffusers ``UNet2DModel`` through
:mod:`discolib.models.adm`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel

from discolib.errors import InputError
from discolib.io.inputs import expand_path
from discolib.models.adm import AdmConfig, adm_to_diffusers, infer_adm_config
from discolib.models.hub import (
    SECONDARY_MODEL,
    UnknownModelError,
    _check_sha,
    _in_folder,
    catalogue_entry,
    fetch_checkpoint,
    models_dir,
)
from discolib.models.secondary import SecondaryDiffusionImageNet2
from discolib.models.state_dict import CheckpointError, load_state_dict

__all__ = ["load_disco_unet", "load_secondary_model"]


def _expand(text: str) -> Path:
    try:
        return expand_path(text, setting="checkpoint")
    except InputError as err:
        raise CheckpointError(str(err)) from None


def _verify_named_file(
    path: Path, catalogue: Mapping[str, Any] | None, *, cache_dir: str | os.PathLike[str] | None, verify: bool
) -> dict[str, Any] | None:
    """The catalogue entry whose file name ``path`` has (None if none), after checking the file's SHA-256.

    A file called like a catalogue checkpoint is taken for it (its hyper-parameters come from the catalogue), so
    it must be that checkpoint: verified once, remembered by a marker when it lies in the models folder.
    """
    try:
        entry = catalogue_entry(path.name, catalogue)
    except UnknownModelError:
        return None
    if verify:
        folder = Path(cache_dir).expanduser() if cache_dir is not None else models_dir()
        _check_sha(path, entry, downloaded=False, marker=_in_folder(path, folder))
    return entry


def _entry_or_missing_file(text: str, catalogue: Mapping[str, Any] | None) -> dict[str, Any]:
    """Catalogue entry for ``text``; a missing-file error instead when ``text`` is clearly a path."""
    try:
        return catalogue_entry(text, catalogue)
    except UnknownModelError:
        if os.sep in text or "/" in text or Path(text).suffix.lower() in {".pt", ".pth", ".safetensors", ".ckpt"}:
            raise CheckpointError(f"checkpoint file not found: {Path(text).expanduser()}") from None
        raise


def load_disco_unet(
    name_or_path: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    config: AdmConfig | Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    catalogue: Mapping[str, Any] | None = None,
) -> UNet2DModel:
    """A Disco main model (guided-diffusion UNet) as a diffusers ``UNet2DModel``.

    Args:
        name_or_path: a catalogue name (hyper-parameters from the catalogue) or a checkpoint file. A file whose name
            is a catalogue file name uses the catalogue's hyper-parameters and is verified against its SHA-256
            (unless ``verify=False``); any other file has them inferred from its weights
            (:func:`discolib.models.adm.infer_adm_config`), which needs ``image_size``.
        image_size: training resolution of an unknown file (256 or 512 for Disco's models).
        config: hyper-parameters to use instead (an ``AdmConfig`` or a guided-diffusion dict).
        cache_dir, verify, catalogue: as :func:`fetch_checkpoint`.
        dtype, device: of the returned model.

    Returns:
        The model in eval mode; ``model(x, t).sample`` is (B, 6, H, W): eps then the variance interpolation.
    """
    text = os.fspath(name_or_path)
    path = _expand(text)
    entry: dict[str, Any] | None = None
    if path.is_file():
        entry = _verify_named_file(path, catalogue, cache_dir=cache_dir, verify=verify)
    else:
        entry = _entry_or_missing_file(text, catalogue)
        path = fetch_checkpoint(entry["name"], cache_dir=cache_dir, verify=verify, catalogue=catalogue)
    if entry is not None and "adm" not in entry and config is None:
        raise CheckpointError(
            f"{entry['name']!r} is not a guided-diffusion UNet"
            + (" (it is the secondary model: use load_secondary_model)" if entry["name"] == SECONDARY_MODEL else "")
        )
    sd = load_state_dict(path)
    if config is not None:
        cfg = config if isinstance(config, AdmConfig) else AdmConfig.from_dict(config)
    elif entry is not None:
        cfg = AdmConfig.from_dict(entry["adm"])
    else:
        if image_size is None:
            raise CheckpointError(
                f"{path.name} is not in the catalogue: pass image_size= (its training resolution, e.g. 256 or 512) "
                "so that its hyper-parameters can be read from the weights, or config=..."
            )
        cfg = infer_adm_config(sd, image_size)
    model = adm_to_diffusers(sd, cfg, dtype=dtype)
    del sd
    return model.to(device) if device is not None else model


def load_secondary_model(
    path_or_name: str | os.PathLike[str] = SECONDARY_MODEL,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    catalogue: Mapping[str, Any] | None = None,
) -> SecondaryDiffusionImageNet2:
    """Disco's secondary model from its catalogue name or a file; the base width is read from the weights."""
    text = os.fspath(path_or_name)
    path = _expand(text)
    if path.is_file():
        _verify_named_file(path, catalogue, cache_dir=cache_dir, verify=verify)
    else:
        entry = _entry_or_missing_file(text, catalogue)
        path = fetch_checkpoint(entry["name"], cache_dir=cache_dir, verify=verify, catalogue=catalogue)
    model = SecondaryDiffusionImageNet2.from_state_dict(load_state_dict(path))
    model = model.to(dtype=dtype)
    return model.to(device) if device is not None else model
