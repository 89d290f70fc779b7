"""Latent model families (see :mod:`discolib.models.families.base`): the registry and detection from files.

Each family lives in its own module with a module-level ``FAMILY``; modules are imported on first use, so naming a
family never imports the others' diffusers classes.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from discolib.models.families.base import Embeds, Family, FamilyError, blend_embeds, cat_embeds, expand_embeds

__all__ = [
    "FAMILY_MODULES",
    "Embeds",
    "Family",
    "FamilyError",
    "blend_embeds",
    "cat_embeds",
    "detect_family",
    "expand_embeds",
    "family_of_config",
    "family_of_index",
    "get_family",
]

#: Family name -> module defining ``FAMILY``.
FAMILY_MODULES: dict[str, str] = {
    "sd": "discolib.models.families.sd",
    "sdxl": "discolib.models.families.sdxl",
    "sd3": "discolib.models.families.sd3",
    "flux": "discolib.models.families.flux",
    "kolors": "discolib.models.families.kolors",
    "hunyuandit": "discolib.models.families.hunyuandit",
}

# Pipelines diffusers has that are not image families discolib can animate: named in the error, with what they are.
_NOT_SUPPORTED_HINTS: dict[str, str] = {
    "Video": "a video model",
    "Audio": "an audio model",
    "Upscale": "an upscaler",
    "Inpaint": "an inpainting pipeline (use it with `discolib animate --fill latent`)",
    "ControlNet": "a ControlNet pipeline",
    "Refiner": "a refiner",
}


def get_family(name: str) -> Family:
    """The family called ``name`` (a key of :data:`FAMILY_MODULES`)."""
    if name not in FAMILY_MODULES:
        raise FamilyError(f"unknown model family {name!r}; known: {', '.join(FAMILY_MODULES)}")
    return importlib.import_module(FAMILY_MODULES[name]).FAMILY


def _all() -> Iterator[Family]:
    """The families in registry order, imported one by one (detection stops at the first match)."""
    return (get_family(n) for n in FAMILY_MODULES)


def _what(class_name: str) -> str:
    for key, what in _NOT_SUPPORTED_HINTS.items():
        if key in class_name:
            return f" ({what})"
    return ""


def _supported() -> str:
    return "; supported families: " + ", ".join(f"{f.label} ({f.pipeline})" for f in _all())


def family_of_index(class_name: str) -> Family:
    """The family of a ``model_index.json`` ``_class_name``.

    Raises:
        FamilyError: a pipeline no family runs; the message names it and lists the supported ones.
    """
    for fam in _all():
        if fam.matches_index(class_name):
            return fam
    raise FamilyError(f"the model is a {class_name}{_what(class_name)}, which latent mode cannot run{_supported()}")


def family_of_config(config: dict[str, Any], where: str = "the denoiser") -> Family:
    """The family of a denoiser's ``config.json`` (``unet/`` or ``transformer/``), for folders without
    ``model_index.json``."""
    for fam in _all():
        if fam.matches_denoiser(config):
            return fam
    cls = str(config.get("_class_name", "an unknown class"))
    raise FamilyError(f"{where} is a {cls}{_what(cls)}, which latent mode cannot run{_supported()}")


def detect_family(folder: str | Path) -> Family:
    """The family of a local model folder in the diffusers layout: from ``model_index.json`` when present, else
    from ``unet/config.json`` or ``transformer/config.json``.

    Raises:
        FamilyError: no family matches (the message names what was found), or nothing to detect from.
    """
    root = Path(folder)
    index = root / "model_index.json"
    index_error: FamilyError | None = None
    if index.is_file():
        try:
            class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        except (OSError, ValueError, AttributeError) as err:
            raise FamilyError(f"{str(index)!r} is not valid JSON: {err}") from None
        if class_name:
            try:
                return family_of_index(str(class_name))
            except FamilyError as err:  # a pipeline we do not know by name may still hold a known denoiser
                index_error = err
    for sub in ("unet", "transformer"):
        cfg = root / sub / "config.json"
        if cfg.is_file():
            try:
                config = json.loads(cfg.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise FamilyError(f"{str(cfg)!r} is not valid JSON: {err}") from None
            if isinstance(config, dict):
                if index_error is None:
                    return family_of_config(config, f"{sub}/ of {str(root)!r}")
                try:
                    return family_of_config(config, f"{sub}/ of {str(root)!r}")
                except FamilyError:
                    raise index_error from None
    if index_error is not None:
        raise index_error
    raise FamilyError(f"{str(root)!r} has neither model_index.json nor unet/ or transformer/ with a config.json")
