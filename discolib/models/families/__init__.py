"""Latent model families (see :mod:`discolib.models.families.base`): the registry and detection from files.

Each family lives in its own module with a module-level ``FAMILY``; modules are imported on first use, so naming a
family never imports the others' diffusers classes.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
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
    "family_of_model",
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


def family_of_model(
    class_name: str, denoiser_config: Callable[[str], dict[str, Any] | None], where: str
) -> Family:
    """The family of a model from its ``model_index.json`` class name and, when that is blank or not known by name,
    its denoiser's config (``denoiser_config("unet")`` / ``("transformer")``: the parsed ``config.json``, or None when
    absent). A local folder and a hub repository are detected the same way; only the reading differs.

    Raises:
        FamilyError: no family matches (the index's error when it named a class, else the config's), or nothing to
            detect from.
    """
    index_error: FamilyError | None = None
    if class_name:
        try:
            return family_of_index(class_name)
        except FamilyError as err:  # a pipeline we do not know by name may still hold a known denoiser
            index_error = err
    for sub in ("unet", "transformer"):
        config = denoiser_config(sub)
        if config is None:
            continue
        try:
            return family_of_config(config, f"{sub}/ of {where}")
        except FamilyError:
            if index_error is None:
                raise
            raise index_error from None
    if index_error is not None:
        raise index_error
    raise FamilyError(f"{where} has neither model_index.json nor unet/ or transformer/ with a config.json")


def _read_json(path: Path, *, require_object: bool = False) -> dict[str, Any] | None:
    """A JSON object file, None when absent (or, unless ``require_object``, not an object); one-line
    :class:`FamilyError` when unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FamilyError(f"{str(path)!r} is not valid JSON: {err}") from None
    if isinstance(data, dict):
        return data
    if require_object:
        raise FamilyError(f"{str(path)!r} is not valid JSON: expected an object, got {type(data).__name__}")
    return None


def detect_family(folder: str | Path) -> Family:
    """The family of a local model folder in the diffusers layout (:func:`family_of_model`): from
    ``model_index.json`` when present, else from ``unet/config.json`` or ``transformer/config.json``.

    Raises:
        FamilyError: no family matches (the message names what was found), or nothing to detect from.
    """
    root = Path(folder)
    index = _read_json(root / "model_index.json", require_object=True) or {}
    return family_of_model(
        str(index.get("_class_name", "") or ""), lambda sub: _read_json(root / sub / "config.json"), repr(str(root))
    )
