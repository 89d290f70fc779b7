"""Latent models from ONE ``.safetensors`` file, as model sites ship them (Civitai, the hub's single-file repos).

Such a file holds the weights in the original training code's key names, not diffusers' layout:

- SD 1.x/2.x (LDM): ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE), ``cond_stage_model.*`` (CLIP);
- SDXL (SGM): the same UNet/VAE names and ``conditioner.embedders.0.*`` / ``conditioner.embedders.1.*`` (two CLIPs);
- SD 3/3.5: ``model.diffusion_model.joint_blocks.*`` (MMDiT), often with ``first_stage_model.*`` and sometimes
  ``text_encoders.clip_l/clip_g/t5xxl.*``;
- Flux.1 (Black Forest Labs' format): ``double_blocks.*``/``single_blocks.*``, usually the transformer alone.

:func:`inspect_single_file` reads only the file's header (``safetensors.safe_open``, never ``torch.load``: pickled
``.ckpt``/``.pt`` files are refused) and names the family with diffusers' own checkpoint inference
(``infer_diffusers_model_type``) plus structural key checks for what that inference cannot size (tiny or pruned
models). :func:`load_single_file_pipeline` then builds the family's diffusers pipeline with ``from_single_file``,
taking every config (and any component the file lacks) from a diffusers folder or hub id.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from discolib.errors import one_line
from discolib.models.families import FamilyError, get_family
from discolib.models.hub import hub_offline
from discolib.models.latent_presets import LATENT_PRESETS, LatentModelError, LatentModelUnavailable
from discolib.models.state_dict import (
    LOAD_ERRORS,
    PICKLE_SUFFIXES,
    check_weights_folder,
    transformers_weights_only,
)

__all__ = [
    "SINGLE_FILE_FAMILIES",
    "SingleFileInfo",
    "default_single_file_config",
    "detect_single_file_family",
    "inspect_single_file",
    "is_single_file",
    "load_single_file",
    "load_single_file_pipeline",
]

SINGLE_FILE_SUFFIX = ".safetensors"

#: Families that load from one file, with the preset whose hub repository holds their configs by default.
SINGLE_FILE_FAMILIES: dict[str, str] = {"sd": "sd-1.5", "sdxl": "sdxl", "sd3": "sd3.5-medium", "flux": "flux-dev"}

# diffusers' inferred model type -> family (types not listed are named in the error as unsupported).
_TYPE_FAMILY: dict[str, str] = {
    "v1": "sd", "v2": "sd", "inpainting": "sd", "inpainting_v2": "sd",
    "xl_base": "sdxl",
    "sd3": "sd3", "sd35_medium": "sd3", "sd35_large": "sd3",
    "flux-dev": "flux", "flux-schnell": "flux",
}
# What an unsupported inferred type is, for the error (substring of the type -> words).
_TYPE_WHAT: tuple[tuple[str, str], ...] = (
    ("xl_refiner", "an SDXL refiner"), ("xl_inpaint", "an SDXL inpainting model"),
    ("playground", "Playground v2.5 (EDM sampling)"), ("controlnet", "a ControlNet"), ("upscale", "an upscaler"),
    ("animatediff", "an AnimateDiff motion module"), ("flux-fill", "Flux.1 Fill"), ("flux-depth", "Flux.1 Depth"),
    ("instruct-pix2pix", "InstructPix2Pix"), ("stable_cascade", "Stable Cascade"),
    ("wan", "a video model"), ("ltx", "a video model"), ("mochi", "a video model"), ("hunyuan-video", "a video model"),
    ("cosmos", "a video/world model"), ("autoencoder", "an autoencoder alone"),
)
# Family -> (label, diffusers pipeline) for messages, without importing the family modules.
_LABELS: dict[str, tuple[str, str]] = {
    "sd": ("Stable Diffusion 1.x/2.x", "StableDiffusionPipeline"), "sdxl": ("SDXL", "StableDiffusionXLPipeline"),
    "sd3": ("SD 3/3.5", "StableDiffusion3Pipeline"), "flux": ("Flux.1", "FluxPipeline"),
    "kolors": ("Kolors", "KolorsPipeline"), "hunyuandit": ("HunyuanDiT", "HunyuanDiTPipeline"),
}

_UNET = "model.diffusion_model."
_VAE = ("first_stage_model.", "vae.")
# Per family: pipeline component -> key prefixes of its weights in an original-format file.
_COMPONENT_PREFIXES: dict[str, dict[str, tuple[str, ...]]] = {
    "sd": {"vae": _VAE, "text_encoder": ("cond_stage_model.",)},
    "sdxl": {"vae": _VAE, "text_encoder": ("conditioner.embedders.0.",),
             "text_encoder_2": ("conditioner.embedders.1.",)},
    "sd3": {"vae": _VAE, "text_encoder": ("text_encoders.clip_l.",), "text_encoder_2": ("text_encoders.clip_g.",),
            "text_encoder_3": ("text_encoders.t5xxl.",)},
    "flux": {"vae": _VAE, "text_encoder": ("text_encoders.clip_l.",), "text_encoder_2": ("text_encoders.t5xxl.",)},
}
# Pipeline components never preloaded from the config (diffusers' from_single_file skips them too).
_NOT_PRELOADED = frozenset({"safety_checker", "feature_extractor", "image_encoder"})
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class SingleFileInfo:
    """What a single-file checkpoint holds.

    Attributes:
        path: the file.
        family: the model family ("sd", "sdxl", "sd3", "flux").
        model_type: diffusers' ``infer_diffusers_model_type`` answer ("v1", "xl_base", "flux-dev", ...), or ``""``
            when that was only its fallback guess (tiny or unusual models, recognised by their key names).
        layout: ``"original"`` (LDM/SGM/SD3/BFL key names) or ``"diffusers"`` (a denoiser saved with diffusers'
            own key names, as some sites ship Flux/SD3 transformers).
        components: the pipeline components whose weights are in the file (the denoiser always).
        default_config: hub id of the diffusers repository with this model's configs.
    """

    path: Path
    family: str
    model_type: str
    layout: str
    components: frozenset[str]
    default_config: str


class _LazyCheckpoint(Mapping[str, torch.Tensor]):
    """The file's tensors by name, each read only when asked for: diffusers' inference looks at a few keys'
    shapes, so multi-gigabyte checkpoints are never read whole."""

    def __init__(self, handle: Any, keys: list[str]) -> None:
        self._handle = handle
        self._keys = keys
        self._set = frozenset(keys)

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._set:
            raise KeyError(key)
        return self._handle.get_tensor(key)

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def is_single_file(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a single checkpoint file (``.safetensors``, or a pickle this module refuses)
    rather than a preset, hub id or folder."""
    name = os.fspath(source).lower()
    return name.endswith(SINGLE_FILE_SUFFIX) or name.endswith(PICKLE_SUFFIXES)


def _checked_path(path: str | os.PathLike[str]) -> Path:
    p = Path(os.fspath(path)).expanduser()
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise LatentModelError(
            f"{str(p)!r} is a pickled checkpoint ({suffix}), which is never loaded (unpickling can run code); "
            f"download the model's .safetensors file instead (model sites offer one)"
        )
    if suffix != SINGLE_FILE_SUFFIX:
        raise LatentModelError(f"{str(p)!r}: expected a single-file checkpoint ending in {SINGLE_FILE_SUFFIX}")
    if not p.is_file():
        raise LatentModelError(f"single-file checkpoint {str(p)!r} does not exist (or is not a regular file)")
    return p


def _read_keys(p: Path) -> tuple[list[str], str]:
    """The file's tensor names (sorted) and diffusers' inferred model type ("" when inference failed)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as handle:
            keys = sorted(handle.keys())
            try:
                model_type = str(infer_diffusers_model_type(_LazyCheckpoint(handle, keys)))
            except Exception:  # why: its shape checks index keys that odd files lack; the key checks decide then
                model_type = ""
    except Exception as err:  # why: safetensors' SafetensorError derives from Exception only (bad header, truncation)
        raise LatentModelError(
            f"{str(p)!r} is not a readable .safetensors file (truncated download or not safetensors?): "
            f"{one_line(err, 200)}"
        ) from None
    if not keys:
        raise LatentModelError(f"{str(p)!r} holds no tensors")
    return keys, model_type


def _has(keys: list[str], *prefixes: str) -> bool:
    return any(k.startswith(prefixes) for k in keys)


def _contains(keys: list[str], part: str) -> bool:
    return any(part in k for k in keys)


def _unsupported(p: Path, what: str) -> LatentModelError:
    fams = ", ".join(_LABELS[f][0] for f in SINGLE_FILE_FAMILIES)
    return LatentModelError(f"{str(p)!r} is {what}, which latent mode cannot run from a single file; "
                            f"single files of these families load: {fams}")


def _from_folder_error(p: Path, family: str) -> LatentModelError:
    label, pipeline = _LABELS[family]
    return LatentModelError(
        f"{str(p)!r} looks like a {label} checkpoint, which does not load from a single file (diffusers has no "
        f"from_single_file for {pipeline}); load it from a diffusers folder or hub id instead, e.g. "
        f"models.latent_model={family!r}"
    )


def _structure(p: Path, keys: list[str]) -> tuple[str, str] | None:
    """(family, layout) from key names alone, or None. Raises for the bilingual families (folder only)."""
    keyset = set(keys)
    if _contains(keys, "mlp_t5.") or "text_embedding_padding" in keyset or _has(keys, "extra_embedder."):
        raise _from_folder_error(p, "hunyuandit")
    ldm_unet = f"{_UNET}input_blocks.0.0.weight" in keyset
    if ldm_unet and _contains(keys, "encoder_hid_proj."):
        raise _from_folder_error(p, "kolors")  # an SDXL-style UNet fed by ChatGLM through a text projection
    if _contains(keys, "double_blocks.0.img_attn.") and _contains(keys, "single_blocks.0."):
        return "flux", "original"
    if _contains(keys, "joint_blocks.0.x_block."):
        return "sd3", "original"
    if ldm_unet:
        if _has(keys, "conditioner.embedders.1."):
            return "sdxl", "original"
        if _has(keys, "conditioner.embedders.0.model."):
            raise _unsupported(p, "an SDXL refiner (one OpenCLIP text encoder)")
        return "sd", "original"
    # A denoiser saved with diffusers' own names (as from ``save_pretrained``) in one file.
    if "x_embedder.weight" in keyset and _has(keys, "single_transformer_blocks.0."):
        return "flux", "diffusers"
    if "pos_embed.proj.weight" in keyset and _contains(keys, "attn.add_q_proj."):
        return "sd3", "diffusers"
    if "conv_in.weight" in keyset and _has(keys, "down_blocks.0."):
        raise LatentModelError(
            f"{str(p)!r} holds a UNet in diffusers' layout only (keys conv_in.*, down_blocks.*), not a full "
            f"checkpoint: put it as unet/diffusion_pytorch_model.safetensors in a diffusers model folder and load "
            f"that folder"
        )
    return None


def _default_config(family: str, model_type: str) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_DEFAULT_PIPELINE_PATHS

    if model_type and _TYPE_FAMILY.get(model_type) == family and model_type in DIFFUSERS_DEFAULT_PIPELINE_PATHS:
        return str(DIFFUSERS_DEFAULT_PIPELINE_PATHS[model_type]["pretrained_model_name_or_path"])
    return LATENT_PRESETS[SINGLE_FILE_FAMILIES[family]].model_id


def inspect_single_file(path: str | os.PathLike[str]) -> SingleFileInfo:
    """Read a ``.safetensors`` checkpoint's header and say which family it is and what it holds.

    Raises:
        LatentModelError: a pickle (``.ckpt``/``.pt``/``.pth``/``.bin``: refused), a missing, truncated or
            non-safetensors file, or a model latent mode cannot run from one file (the message names what diffusers
            inferred, or the file's first keys).
    """
    p = _checked_path(path)
    keys, model_type = _read_keys(p)
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES

    # infer_diffusers_model_type answers "v1" for anything it does not know; trust that only with SD 1.x's key.
    trusted = bool(model_type) and (model_type != "v1" or CHECKPOINT_KEY_NAMES["v1"] in set(keys))
    found = _structure(p, keys)
    if trusted and model_type in _TYPE_FAMILY:
        family, layout = _TYPE_FAMILY[model_type], "original"
        if found is not None and found[0] == family:
            layout = found[1]
    elif trusted:
        what = next((w for part, w in _TYPE_WHAT if part in model_type), "a model")
        raise _unsupported(p, f"{what} (diffusers infers the checkpoint type {model_type!r})")
    elif found is not None:
        family, layout = found
        model_type = ""
    else:
        shown = ", ".join(keys[:4]) + (f" … ({len(keys)} tensors)" if len(keys) > 4 else "")
        raise _unsupported(p, f"not a checkpoint of a known layout (first keys: {shown})")

    fam = get_family(family)
    components = {fam.denoiser}
    if layout == "original":
        for name, prefixes in _COMPONENT_PREFIXES[family].items():
            if _has(keys, *prefixes):
                components.add(name)
    return SingleFileInfo(p, family, model_type if trusted else "", layout, frozenset(components),
                          _default_config(family, model_type if trusted else ""))


def detect_single_file_family(path: str | os.PathLike[str]) -> str:
    """The family name ("sd", "sdxl", "sd3", "flux") of a ``.safetensors`` checkpoint (see :func:`inspect_single_file`)."""
    return inspect_single_file(path).family


def default_single_file_config(path: str | os.PathLike[str]) -> str:
    """The hub id whose configs fit this file: diffusers' own choice for the checkpoint type it inferred (SD 2.x,
    SD 3 medium vs 3.5, Flux dev vs schnell...), else the family's preset repository."""
    return inspect_single_file(path).default_config


def _resolve_config(config: str, p: Path, offline: bool) -> str:
    """A local folder as is (checked); a hub id as is online, or its cached snapshot folder offline."""
    folder = Path(config).expanduser()
    if folder.is_dir():
        if not (folder / "model_index.json").is_file():
            raise LatentModelError(
                f"single_file_config {config!r} has no model_index.json; expected a diffusers model folder (as "
                f"save_pretrained writes it) whose configs describe {p.name}"
            )
        # The same checks as any local model folder: every component's weights may be loaded from it.
        for part in (folder, *sorted(d for d in folder.iterdir() if d.is_dir())):
            check_weights_folder(part, f"single_file_config {config!r}", LatentModelError)
        return str(folder)
    if folder.exists() or not _HUB_ID.fullmatch(config):
        raise LatentModelError(
            f"single_file_config {config!r} is neither a local diffusers model folder nor a hub id (owner/name)"
        )
    if not offline:
        return config
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(config, local_files_only=True))
    except (OSError, ValueError) as err:
        raise LatentModelUnavailable(
            f"cannot load {p.name}: the configs in {config!r} (single_file_config) are not in the local Hugging Face "
            f"cache and the hub is offline (HF_HUB_OFFLINE=1); run `hf download {config}` once online, or set "
            f"single_file_config to a local diffusers folder ({type(err).__name__})",
            reason="offline",
        ) from None


def _component_class(spec: Any) -> type | None:
    """The class of a ``model_index.json`` entry ``[library, class]`` when it is a torch module, else None."""
    if not (isinstance(spec, (list, tuple)) and len(spec) == 2 and spec[0] and spec[1]):
        return None
    try:
        cls = getattr(importlib.import_module(str(spec[0])), str(spec[1]), None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, torch.nn.Module) else None


def _from_config_folder(cls: type, config: str, name: str, dtype: torch.dtype, offline: bool) -> Any:
    if issubclass(cls, diffusers.ModelMixin):
        return cls.from_pretrained(config, subfolder=name, dtype=dtype, local_files_only=offline)
    return cls.from_pretrained(  # type: ignore[attr-defined]
        config, subfolder=name, dtype=dtype, local_files_only=offline, **transformers_weights_only()
    )


def load_single_file_pipeline(
    path: str | os.PathLike[str],
    family: str,
    *,
    config: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
    pipeline_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The family's diffusers txt2img pipeline from one ``.safetensors`` checkpoint.

    - A file with the denoiser only (Flux and SD3 transformers as sites ship them): the denoiser with
      ``<Denoiser>.from_single_file(path, config=config, subfolder=<denoiser>)``, the rest of the pipeline with
      ``<Pipeline>.from_pretrained(config, <denoiser>=...)``.
    - Otherwise ``<Pipeline>.from_single_file(path, config=config)``; components the file lacks (SD 3.5's text
      encoders, a missing VAE) are loaded from ``config`` first and passed in, so the file's own weights are used
      for everything it holds.

    Args:
        path: the ``.safetensors`` file.
        family: its family (:func:`detect_single_file_family`); must match the file.
        config: a local diffusers model folder or hub id with the pipeline's configs (tokenizers, scheduler, every
            component's ``config.json``); None: :func:`default_single_file_config`.
        torch_dtype: weights' dtype.
        pipeline_kwargs: extra pipeline arguments (``Family.pipeline_kwargs``, e.g. ``{"text_encoder_3": None}``).

    Raises:
        LatentModelError: a bad file, a family mismatch, a file that does not fit ``config``;
        LatentModelUnavailable: ``config`` (or a component the file lacks) is not on this machine and the hub is
            offline or unreachable.
    """
    info = inspect_single_file(path)
    p = info.path
    if info.family != family:
        raise LatentModelError(
            f"{str(p)!r} holds a {_LABELS[info.family][0]} model, not {_LABELS.get(family, (family,))[0]} "
            f"({family!r})"
        )
    fam = get_family(family)
    pipe_cls = getattr(diffusers, fam.pipeline)
    if not hasattr(pipe_cls, "from_single_file"):
        raise _from_folder_error(p, family)
    offline = hub_offline()
    source = config or info.default_config
    cfg = _resolve_config(source, p, offline)
    extra = dict(pipeline_kwargs or {})
    den_name = fam.denoiser

    def fail(err: BaseException) -> LatentModelError:
        text = one_line(err, 400)
        if isinstance(err, OSError) and (offline or "offline" in text.lower() or "connect" in text.lower()):
            return LatentModelUnavailable(
                f"cannot load {p.name} with the configs of {source!r}: {text}; with HF_HUB_OFFLINE=1 every part the "
                f"file lacks must be in the local cache, or pass a local diffusers folder as single_file_config",
                reason="offline" if offline else text[:200],
            )
        return LatentModelError(f"cannot load {str(p)!r} as {fam.label} with the configs of {source!r}: {text}")

    from diffusers.loaders.single_file_utils import SingleFileComponentError

    errors = (*LOAD_ERRORS, KeyError, IndexError, SingleFileComponentError)
    try:
        index = pipe_cls.load_config(cfg, local_files_only=offline)
        if info.components == {den_name}:
            den_cls = _component_class(index.get(den_name))
            if den_cls is None or not hasattr(den_cls, "from_single_file"):
                raise LatentModelError(f"single_file_config {source!r} has no single-file-loadable {den_name}")
            denoiser = den_cls.from_single_file(  # type: ignore[attr-defined]
                str(p), config=cfg, subfolder=den_name, dtype=torch_dtype, local_files_only=offline
            )
            # As from_single_file does: no safety checker or image encoder (not part of the latent loop).
            skipped = {n: None for n in _NOT_PRELOADED if isinstance(index.get(n), list) and index[n][0] is not None}
            return pipe_cls.from_pretrained(
                cfg, dtype=torch_dtype, local_files_only=offline, **{den_name: denoiser, **skipped, **extra}
            )
        preloaded: dict[str, Any] = {}
        for name, spec in index.items():
            if name.startswith("_") or name in extra or name in info.components or name in _NOT_PRELOADED:
                continue
            cls = _component_class(spec)
            if cls is not None:
                preloaded[name] = _from_config_folder(cls, cfg, name, torch_dtype, offline)
        return pipe_cls.from_single_file(
            str(p), config=cfg, dtype=torch_dtype, local_files_only=offline, **preloaded, **extra
        )
    except LatentModelError:
        raise
    except errors as err:
        raise fail(err) from None


def load_single_file(
    path: str | os.PathLike[str],
    *,
    config: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
    t5: bool = True,
) -> tuple[str, Any]:
    """Detect a ``.safetensors`` checkpoint's family and load its pipeline: ``(family name, pipeline)``.

    ``t5``: the family's T5 option (``Family.pipeline_kwargs(t5=...)``; SD 3.5 can go without, Flux cannot).
    ``config``: as :func:`load_single_file_pipeline` (None: :func:`default_single_file_config`).

    Raises:
        LatentModelError / LatentModelUnavailable: as :func:`load_single_file_pipeline`, and an option the family
            cannot honour (``t5=False`` for Flux).
    """
    family = detect_single_file_family(path)
    try:
        kwargs = get_family(family).pipeline_kwargs(t5=t5)
    except FamilyError as err:
        raise LatentModelError(f"{os.fspath(path)!r}: {err}") from None
    return family, load_single_file_pipeline(
        path, family, config=config, torch_dtype=torch_dtype, pipeline_kwargs=kwargs
    )
