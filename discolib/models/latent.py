"""Latent diffusion components of every model family: loading, schedulers, tiny offline models.

The family (SD 1.x/2.x, SDXL, SD 3.5, Flux.1, Kolors, HunyuanDiT; :mod:`discolib.models.families`) is the preset's
or detected from the files. SD 1.x/2.x loads component by component, as below; the other families load through
their diffusers pipeline class (``from_pretrained`` with safetensors only), and a single ``.safetensors`` checkpoint
through :mod:`discolib.models.single_file`. The presets themselves are data in :mod:`discolib.models.latent_presets`.

SD 1.x/2.x loads with diffusers' / transformers' ``from_pretrained(..., subfolder=...)`` from a hub id or a local
folder in the diffusers layout::

    model/
      unet/          UNet2DConditionModel      (config.json + weights)
      vae/           AutoencoderKL or AutoencoderTiny (class read from its config.json)
      text_encoder/  CLIPTextModel
      tokenizer/     CLIPTokenizer             (vocab.json + merges.txt or tokenizer.json)
      scheduler/     scheduler_config.json     (any diffusers scheduler; only its config is kept)

The ``"tiny-latent"`` preset builds random tiny components under a fixed seed, saves them once into a cache folder
in that same layout and then loads that folder through :func:`load_latent_components`, so tests exercise the real
loading path without any download. ``"tiny-latent-inpaint"`` is the same with an inpainting UNet (9 input channels:
noisy latents, mask, masked-image latents, as Stable Diffusion's inpainting checkpoints). ``"tiny-<family>"`` does the
same for each other family (:func:`tiny_family_folder`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    SchedulerMixin,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
)
from diffusers.utils import is_scipy_available, is_torchsde_available
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from discolib.errors import InputError, one_line
from discolib.models.archs import LATENT_ARCHS, LATENT_SCHEDULERS, SD_SCHEDULER, SD_VAE
from discolib.models.families import (
    Family,
    FamilyError,
    detect_family,
    family_of_model,
    get_family,
)
from discolib.models.hub import cache_root, hub_offline
from discolib.models.latent_presets import (
    LATENT_PRESETS,
    TINY_INPAINT_PRESET,
    TINY_LATENT_PRESET,
    LatentModelError,
    LatentModelUnavailable,
    LatentPreset,
)
from discolib.models.state_dict import (
    LOAD_ERRORS,
    check_weights_folder,
    refused_by_weights_only,
    refused_weights_error,
    transformers_weights_only,
)
from discolib.models.tiny_text import TINY_TOKENIZER_DIR
from discolib.ops import seeded

__all__ = [
    "COMPONENT_SUBFOLDERS",
    "LATENT_PRESETS",
    "TINY_INPAINT_PRESET",
    "TINY_LATENT_PRESET",
    "TINY_TOKENIZER_DIR",
    "LatentComponents",
    "LatentModelError",
    "LatentModelUnavailable",
    "LatentPreset",
    "components_from_pipe",
    "enable_fast_paths",
    "finish_components",
    "is_inpainting_unet",
    "load_latent_components",
    "FLOW_SCHEDULERS",
    "is_flow_config",
    "make_scheduler",
    "random_latent_components",
    "scheduler_names",
    "tiny_family_folder",
    "tiny_latent_folder",
    "write_tiny_tokenizer",
]

COMPONENT_SUBFOLDERS: tuple[str, ...] = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# Bump when the tiny architecture or its seed changes, so stale cache folders are never reused.
TINY_LATENT_VERSION = 1


# --------------------------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------------------------


@dataclass
class LatentComponents:
    """The parts of a latent diffusion model, used directly by :mod:`discolib.samplers.latent`.

    ``unet`` is the denoiser, whatever its kind: a UNet2DConditionModel (SD, SDXL, Kolors) or a transformer (SD3,
    Flux, HunyuanDiT). ``family`` names the :class:`~discolib.models.families.Family` that knows how to condition and
    call it. ``pipe`` is the family's diffusers pipeline assembled from these same modules (no copy), for the
    families whose prompt encoding goes through ``pipe.encode_prompt`` (every family but ``"sd"``, which encodes
    with ``text_encoder``/``tokenizer`` directly); ``text_encoder``/``tokenizer`` are the pipeline's first ones.

    ``scheduler_config`` is a plain dict: samplers build a fresh scheduler per call with :func:`make_scheduler`
    because diffusers schedulers are stateful. ``preview_vae`` (an AutoencoderTiny such as TAESD) decodes cheap
    previews, and can decode final images too when speed matters more than fidelity.

    Text embeddings are cached per prompt text in an LRU dict (see ``embedding_cache_size``), so an animation
    whose prompt does not change never re-runs the text encoder.
    """

    unet: torch.nn.Module
    vae: AutoencoderKL | AutoencoderTiny
    text_encoder: torch.nn.Module | None
    tokenizer: Any
    scheduler_config: dict[str, Any]
    preview_vae: AutoencoderTiny | None = None
    name: str = ""
    family: str = "sd"
    pipe: Any = None
    compute_dtype: torch.dtype | None = None
    embedding_cache_size: int = 64
    embedding_cache: OrderedDict[tuple[str, str, str], torch.Tensor] = field(
        default_factory=OrderedDict, repr=False
    )

    @property
    def device(self) -> torch.device:
        """The device of the denoiser (latents live there)."""
        return self.unet.device

    @property
    def family_obj(self) -> Family:
        """The :class:`~discolib.models.families.Family` of these components."""
        return get_family(self.family)

    @property
    def dtype(self) -> torch.dtype:
        """The denoiser's compute dtype (latents themselves are kept in float32 by the sampler): its weights' dtype,
        or ``compute_dtype`` when the weights are stored in another (fp8 with layerwise casting)."""
        return self.compute_dtype if self.compute_dtype is not None else self.unet.dtype

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel along each side (8 for Stable Diffusion)."""
        return vae_scale_factor(self.vae)

    @property
    def latent_channels(self) -> int:
        """Channels of the VAE's latents, i.e. of the noise and the UNet's output (4 for Stable Diffusion).

        Not the UNet's ``in_channels``: an inpainting UNet takes 9 (latents, mask, masked-image latents)."""
        return int(self.vae.config.latent_channels)

    @property
    def is_inpainting(self) -> bool:
        """Whether the UNet is an inpainting one (see :func:`is_inpainting_unet`)."""
        return self.family == "sd" and is_inpainting_unet(self.unet, self.latent_channels)


def is_inpainting_unet(unet: UNet2DConditionModel, latent_channels: int = 4) -> bool:
    """True for an inpainting UNet: its input is the noisy latents, a 1-channel mask and the masked image's
    latents concatenated, so ``in_channels == 2 * latent_channels + 1`` (9 for Stable Diffusion inpainting)."""
    return int(unet.config.in_channels) == 2 * int(latent_channels) + 1


def vae_scale_factor(vae: AutoencoderKL | AutoencoderTiny) -> int:
    """Down-sampling factor of a VAE: 2 ** (number of resolution levels - 1)."""
    cfg = vae.config
    if isinstance(vae, AutoencoderTiny):
        return int(cfg.upsampling_scaling_factor) ** (len(cfg.decoder_block_out_channels) - 1)
    return 2 ** (len(cfg.block_out_channels) - 1)


# --------------------------------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------------------------------


def _scheduler_table() -> dict[str, tuple[type[SchedulerMixin], dict[str, Any]]]:
    table: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
        "euler_a": (EulerAncestralDiscreteScheduler, {}),
        "euler": (EulerDiscreteScheduler, {}),
        # Few-step distilled models (SDXL-Lightning, Hyper-SD) were trained on trailing timesteps.
        "euler_trailing": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
        "heun": (HeunDiscreteScheduler, {}),
        "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
        "dpmpp_2m_karras": (
            DPMSolverMultistepScheduler,
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        ),
        "dpmpp_2m_sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
        "ddim": (DDIMScheduler, {}),
        # PLMS, as Stable Diffusion ships PNDM (its Runge-Kutta warm-up needs >= 4 steps and 3x the UNet calls).
        "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
        "plms": (PNDMScheduler, {"skip_prk_steps": True}),
        "lcm": (LCMScheduler, {}),
        "unipc": (UniPCMultistepScheduler, {}),
    }
    # Optional ones only when their extra dependency is importable, so every listed name really runs.
    if is_scipy_available():
        from diffusers import LMSDiscreteScheduler

        table["lms"] = (LMSDiscreteScheduler, {})
    if is_torchsde_available():
        from diffusers import DPMSolverSDEScheduler

        table["dpmpp_sde"] = (DPMSolverSDEScheduler, {})
    return table


#: Names for flow-matching families (SD 3.5, Flux): "euler"/"euler_a" mean the flow Euler solver there (euler_a
#: its stochastic variant), so a Deforum settings file keeps working; the rest are DDPM-only solvers.
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("", {}),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "euler_a": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
    "flow_heun": ("FlowMatchHeunDiscreteScheduler", {}),
    "heun": ("FlowMatchHeunDiscreteScheduler", {}),
}


def scheduler_names() -> list[str]:
    """Valid names for :func:`make_scheduler` in this environment (``"default"`` = the model's own)."""
    return ["default", *_scheduler_table(), "flow_euler", "flow_heun"]


def is_flow_config(config: dict[str, Any]) -> bool:
    """Whether a scheduler config is a flow-matching one (SD 3.5, Flux)."""
    return str(config.get("_class_name", "")).startswith("FlowMatch")


def make_scheduler(name: str, config: dict[str, Any]) -> SchedulerMixin:
    """A fresh diffusers scheduler by name, built from a model's scheduler config.

    The model's training noise schedule (betas, prediction type, timestep spacing, flow shift) comes from
    ``config``; the name picks the solver and its options. ``"default"`` builds the class named in the config
    itself. A flow-matching config (SD 3.5, Flux) takes the names of :data:`FLOW_SCHEDULERS` only.

    Raises:
        ValueError: unknown name, or one that does not fit the model's kind (the message lists the valid names).
    """
    key = name.strip().lower()
    flow = is_flow_config(config)
    if key == "default":
        cls_name = config.get("_class_name", "PNDMScheduler")
        cls = getattr(diffusers, cls_name, None)
        if cls is None or not issubclass(cls, SchedulerMixin):
            raise ValueError(f"scheduler config names an unknown class {cls_name!r}")
        return cls.from_config(config)
    if flow:
        if key not in FLOW_SCHEDULERS:
            raise ValueError(f"scheduler {name!r} is for noise-prediction models; this is a flow-matching model "
                             f"(SD 3.5, Flux): valid names: {', '.join(FLOW_SCHEDULERS)}")
        cls_name, overrides = FLOW_SCHEDULERS[key]
        return getattr(diffusers, cls_name).from_config(config, **overrides)
    if key in ("flow_euler", "flow_heun"):
        raise ValueError(f"scheduler {name!r} is for flow-matching models (SD 3.5, Flux); this model predicts noise: "
                         f"valid names: {', '.join(n for n in scheduler_names() if not n.startswith('flow_'))}")
    table = _scheduler_table()
    if key not in table:
        raise ValueError(f"unknown scheduler {name!r}; valid names: {', '.join(scheduler_names())}")
    cls, overrides = table[key]
    return cls.from_config(config, **overrides)


# --------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------


def _expected_layout() -> str:
    return "a diffusers-layout folder with subfolders " + ", ".join(f"{s}/" for s in COMPONENT_SUBFOLDERS)


# owner/name, as the hub spells repository ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _wrap_hub_error(model_id: str, what: str, err: Exception) -> LatentModelError:
    """One line naming the model, the part and what to do; weights missing from the hub cache are "unavailable"."""
    how = (
        f"download it once with `hf download {model_id}` (or `huggingface-cli download`) on a machine with "
        f"internet, or pass the path of a local folder instead: {_expected_layout()}"
    )
    if refused_by_weights_only(err):  # name the refused file in the hub cache's copy when there is one
        cached = _hub_cache_folder(model_id)
        sub = what.rstrip("/") if what.endswith("/") else ""
        folder = (cached / sub if sub else cached) if cached is not None else None
        return LatentModelError(f"cannot load {what} of {model_id!r}: {refused_weights_error(err, folder, model_id)}")
    if not isinstance(err, OSError):  # a file that is there but broken: not a download problem
        return LatentModelError(f"cannot load {what} of {model_id!r}: {one_line(err, 400)}")
    if hub_offline():
        return LatentModelUnavailable(
            f"cannot load {what} of {model_id!r}: it is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1); {how}. ({type(err).__name__}: {one_line(err, 300)})",
            reason="offline",
        )
    return LatentModelUnavailable(f"cannot load {what} of {model_id!r}: {one_line(err, 400)}; {how}", reason=one_line(err, 200))


def _hub_cache_folder(model_id: str) -> Path | None:
    """The local snapshot folder of a hub model already in the cache (no network), to name a refused file."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # not cached, or not a valid id: the message names the model instead
        return None


def _local_error(folder: Path, what: str, err: BaseException) -> LatentModelError:
    refused = refused_weights_error(err, folder, folder)
    if refused is not None:
        return LatentModelError(f"cannot load {what}: {refused}")
    return LatentModelError(f"cannot load {what} from {str(folder)!r}: {one_line(err, 400)}")


def _check_folder(folder: Path, what: str) -> None:
    check_weights_folder(folder, f"cannot load {what} from {str(folder)!r}", LatentModelError)


def _vae_class(source: str, subfolder: str, local: bool) -> type[AutoencoderKL] | type[AutoencoderTiny]:
    """AutoencoderKL unless the config names AutoencoderTiny (as SDXS's vae/ does)."""
    if local:
        cfg_path = Path(source) / subfolder / "config.json" if subfolder else Path(source) / "config.json"
        cls_name = json.loads(cfg_path.read_text()).get("_class_name", "AutoencoderKL")
    else:
        cls_name = AutoencoderKL.load_config(source, subfolder=subfolder or None).get("_class_name", "AutoencoderKL")
    return AutoencoderTiny if cls_name == "AutoencoderTiny" else AutoencoderKL


def _load_preview_vae(source: str, device: torch.device, dtype: torch.dtype) -> AutoencoderTiny:
    local = Path(source).expanduser().is_dir()
    src = str(Path(source).expanduser()) if local else source
    what = "the preview VAE (AutoencoderTiny)"
    if local:
        if not (Path(src) / "config.json").is_file():
            raise LatentModelError(f"preview VAE folder {source!r} has no config.json (expected an AutoencoderTiny)")
        _check_folder(Path(src), what)
    try:
        return AutoencoderTiny.from_pretrained(src, torch_dtype=dtype).to(device).eval()
    except LOAD_ERRORS as err:
        if local:
            raise _local_error(Path(src), what, err) from None
        raise _wrap_hub_error(source, what, err) from err


def load_latent_components(
    model_id_or_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    vae: str | None = None,
    lcm_lora: str | None = None,
    lora: str | None = None,
    lora_scale: float = 1.0,
    t5: bool = True,
    offload_text_encoders: bool = False,
    vae_tiling: bool = False,
    fp8_weights: bool = False,
    single_file_config: str | None = None,
    channels_last: bool = False,
    compile_unet: bool | dict[str, Any] = False,
) -> LatentComponents:
    """Load the denoiser, VAE, text encoder(s), tokenizer(s) and scheduler config of a latent diffusion model.

    The family (SD 1.x/2.x, SDXL, SD 3.5, Flux.1, Kolors, HunyuanDiT) is the preset's, or detected from
    ``model_index.json`` / the denoiser's config (:mod:`discolib.models.families`); an unsupported one is a one-line
    error naming what was found.

    Args:
        model_id_or_path: a preset name (see ``LATENT_PRESETS``; the ``tiny-*`` ones build tiny random weights
            offline), a Hugging Face hub id, a local folder in the diffusers layout (module docstring), or a single
            ``.safetensors`` checkpoint as model sites ship them (its configs come from ``single_file_config``).
        device, dtype: where and in which precision the models live (bf16/fp16 on CUDA, float32 on CPU).
        vae: hub id or local folder of an AutoencoderTiny (e.g. ``"madebyollin/taesd"``) for fast previews,
            stored as ``preview_vae``; ``"tiny"`` is the tiny preset's own. Presets have no preview VAE unless
            given here (TAESD is a separate download).
        lcm_lora: an LCM-LoRA for an SD 1.x/2.x model (kept for older callers; same as ``lora``).
        lora: hub id, local folder or ``.safetensors`` file of a LoRA (LCM-LoRA, SDXL-Lightning, Hyper-SD, ...),
            loaded with diffusers' LoRA loader and fused at ``lora_scale`` (no per-step cost). Needs ``peft``.
        t5: load the T5 text encoder where it is optional (SD 3.5); Flux and HunyuanDiT need theirs.
        offload_text_encoders: keep text encoders on the CPU (prompts are encoded once each and cached).
        vae_tiling: tiled VAE encode/decode (less memory for large images).
        fp8_weights: store the denoiser's weights in float8 (e4m3) and compute in ``dtype`` (layerwise casting).
        single_file_config: for a ``.safetensors`` file: the hub id or diffusers folder holding the configs (default:
            the detected family's preset repository).
        channels_last, compile_unet: fast paths, see :func:`enable_fast_paths`.

    Raises:
        LatentModelError: unknown preset, local folder missing components, unsupported family, or weights
            unavailable (offline: :class:`LatentModelUnavailable`).
    """
    source = os.fspath(model_id_or_path)
    device = torch.device(device)
    name = source
    family: str | None = None
    lora = lora or lcm_lora
    if source in LATENT_PRESETS:
        preset = LATENT_PRESETS[source]
        family = preset.family
        if preset.tiny:
            if preset.family == "sd":
                folder = tiny_latent_folder(inpaint=preset.model_id == TINY_INPAINT_PRESET)
                if vae == "tiny":
                    vae = str(folder / "taesd")
            else:
                folder = tiny_family_folder(preset.family)
            source = str(folder)
        else:
            source = preset.model_id
    if vae == "tiny":
        raise LatentModelError(f"vae='tiny' is only valid with the {TINY_LATENT_PRESET!r} and "
                               f"{TINY_INPAINT_PRESET!r} presets")

    path = Path(source).expanduser()
    if path.is_file():
        # why here: diffusers' single-file converters are needed for files only
        from discolib.models.single_file import load_single_file

        fam_name, pipe = load_single_file(path, config=single_file_config, torch_dtype=dtype, t5=t5)
        comps = components_from_pipe(pipe, get_family(fam_name), name)
    else:
        fam = _family_of(source, path, family)
        if fam.name == "sd":
            comps = _load_sd(source, path, name, dtype)
        else:
            comps = _load_pipeline(fam, source, path, name, dtype, t5=t5)
    return finish_components(
        comps, device=device, dtype=dtype, vae=vae, lora=lora, lora_scale=lora_scale,
        offload_text_encoders=offload_text_encoders, vae_tiling=vae_tiling, fp8_weights=fp8_weights,
        channels_last=channels_last, compile_unet=compile_unet,
    )


def _family_of(source: str, path: Path, known: str | None) -> Family:
    """The family of a preset (``known``), a local folder (its files) or a hub id (its model_index.json)."""
    if known is not None:
        return get_family(known)
    if path.is_dir():
        has_index = (path / "model_index.json").is_file()
        has_denoiser = any((path / sub / "config.json").is_file() for sub in ("unet", "transformer"))
        if not (has_index or has_denoiser):
            return get_family("sd")  # the SD loader names the missing subfolders
        try:
            return detect_family(path)
        except FamilyError as err:
            raise LatentModelError(f"cannot load {str(path)!r}: {err}") from None
    if path.exists() or not _HUB_ID.fullmatch(source):
        raise LatentModelError(
            f"{source!r} is neither a preset ({', '.join(LATENT_PRESETS)}), a hub id (owner/name), a .safetensors "
            f"file nor an existing model folder; expected {_expected_layout()}"
        )
    try:
        index = diffusers.DiffusionPipeline.load_config(source)
    except LOAD_ERRORS as err:
        raise _wrap_hub_error(source, "model_index.json", err) from err

    def denoiser_config(sub: str) -> dict[str, Any] | None:
        if sub not in index:
            return None
        try:  # load_config reads the repo's config.json as it is, whatever class it names
            return dict(UNet2DConditionModel.load_config(source, subfolder=sub))
        except LOAD_ERRORS:
            return None  # unreadable: the index's own error says what the model is

    try:
        return family_of_model(str(index.get("_class_name", "") or ""), denoiser_config, repr(source))
    except FamilyError as err:
        raise LatentModelError(f"cannot load {source!r}: {err}") from None


def components_from_pipe(pipe: Any, fam: Family, name: str) -> LatentComponents:
    """``LatentComponents`` sharing the modules of a family's diffusers pipeline."""
    return LatentComponents(
        unet=getattr(pipe, fam.denoiser),
        vae=pipe.vae,
        text_encoder=getattr(pipe, "text_encoder", None),
        tokenizer=getattr(pipe, "tokenizer", None),
        # The class name too: an instance's config lacks it, and make_scheduler("default") builds from it.
        scheduler_config={**pipe.scheduler.config, "_class_name": type(pipe.scheduler).__name__},
        name=name,
        family=fam.name,
        pipe=pipe,
    )


def _load_pipeline(fam: Family, source: str, path: Path, name: str, dtype: torch.dtype, *, t5: bool) -> LatentComponents:
    """Any family but SD 1.x/2.x: its diffusers pipeline class, safetensors weights only."""
    local = path.is_dir()
    try:
        kwargs = fam.pipeline_kwargs(t5=t5)
    except FamilyError as err:
        raise LatentModelError(f"models.text_encoder_t5: {err}") from None
    if local:
        source = str(path)
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8")) if (
            path / "model_index.json"
        ).is_file() else {}
        _check_folder(path, "the model")
        for part, spec in index.items():
            if not part.startswith("_") and isinstance(spec, list) and spec[0] is not None and (path / part).is_dir():
                _check_folder(path / part, f"{part}/")
    cls = getattr(diffusers, fam.pipeline)
    try:
        # use_safetensors: every component from .safetensors, never a pickled .bin (diffusers and transformers).
        pipe = cls.from_pretrained(source, dtype=dtype, use_safetensors=True, **kwargs)
    except LOAD_ERRORS as err:
        if local:
            raise _local_error(path, f"the {fam.label} model", err) from None
        raise _wrap_hub_error(source, f"the {fam.label} model", err) from err
    return components_from_pipe(pipe, fam, name)


def _load_sd(source: str, path: Path, name: str, dtype: torch.dtype) -> LatentComponents:
    """SD 1.x/2.x, component by component (its text encoder and tokenizer are used directly)."""
    local = path.is_dir()
    if local:
        missing = [s for s in COMPONENT_SUBFOLDERS if not (path / s).is_dir()]
        if missing:
            raise LatentModelError(
                f"model folder {str(path)!r} is missing subfolder(s) {', '.join(f'{m}/' for m in missing)}; "
                f"expected {_expected_layout()} (as written by diffusers' save_pretrained)"
            )
        source = str(path)
        for part in ("", *COMPONENT_SUBFOLDERS):
            _check_folder(path / part if part else path, f"{part}/" if part else "the model")

    def load(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except LOAD_ERRORS as err:  # OSError when files lack; a refused .bin arrives wrapped in OSError/ValueError
            if local:
                raise _local_error(path / what, f"{what}/", err) from None
            raise _wrap_hub_error(source, f"{what}/", err) from err

    unet = load("unet", lambda: UNet2DConditionModel.from_pretrained(source, subfolder="unet", torch_dtype=dtype))
    vae_cls = load("vae", lambda: _vae_class(source, "vae", local))
    vae_model = load("vae", lambda: vae_cls.from_pretrained(source, subfolder="vae", torch_dtype=dtype))
    text_encoder = load(
        "text_encoder",
        lambda: CLIPTextModel.from_pretrained(
            source, subfolder="text_encoder", dtype=dtype, **transformers_weights_only()
        ),
    )
    tokenizer = load("tokenizer", lambda: CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"))
    scheduler_config = load("scheduler", lambda: dict(DDIMScheduler.load_config(source, subfolder="scheduler")))
    return LatentComponents(
        unet=unet, vae=vae_model, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler_config=scheduler_config, name=name,
    )


def finish_components(
    comps: LatentComponents,
    *,
    device: torch.device,
    dtype: torch.dtype,
    vae: str | None,
    lora: str | None,
    lora_scale: float,
    offload_text_encoders: bool,
    vae_tiling: bool,
    fp8_weights: bool,
    channels_last: bool,
    compile_unet: bool | dict[str, Any],
) -> LatentComponents:
    """Device placement, LoRA, memory options and fast paths, the same for every family and for random weights.

    Order matters: without fp8 the modules move to the device first and the LoRA fuses there (in the model's own
    precision, as before); with fp8 the LoRA fuses and the denoiser is cast to float8 on the CPU, so the device never
    holds the full-precision denoiser."""
    if fp8_weights:
        if not hasattr(comps.unet, "enable_layerwise_casting"):
            raise LatentModelError("models.fp8_weights: this denoiser does not support layerwise casting")
        if lora:
            _load_lora(comps, lora, lora_scale)
            lora = None
        comps.compute_dtype = dtype
        comps.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    fam = comps.family_obj
    try:
        fam.check(comps)
    except FamilyError as err:
        raise LatentModelError(f"models.latent_model {comps.name!r}: {err}") from None
    encoders = [getattr(comps.pipe, n, None) for n in fam.text_encoders] if comps.pipe is not None else [comps.text_encoder]
    encoder_ids = {id(m) for m in encoders if m is not None}
    modules = [comps.unet, comps.vae, *(m for m in encoders if m is not None)]
    for m in modules:
        m.eval().requires_grad_(False)
        if id(m) in encoder_ids and offload_text_encoders:
            continue  # stays on the CPU: prompts are encoded there once each, the embeddings move to the device
        m.to(device)
    if comps.family != "sd" and dtype == torch.float16 and getattr(comps.vae.config, "force_upcast", False):
        # SDXL's VAE overflows in fp16 (its config says so): it runs in float32, the sampler casts at its boundary.
        # (SD 1.x configs say so too, but their pipeline never upcasts: kept as it was.)
        comps.vae.to(torch.float32)
    if lora:
        _load_lora(comps, lora, lora_scale)
    if vae_tiling and hasattr(comps.vae, "enable_tiling"):
        comps.vae.enable_tiling()
        if hasattr(comps.vae, "enable_slicing"):  # one image of a batch at a time (batches > 1 only)
            comps.vae.enable_slicing()
    if vae:  # (random-weight components may bring their own TAESD-shaped one)
        comps.preview_vae = _load_preview_vae(vae, device, dtype).requires_grad_(False)
    enable_fast_paths(comps, channels_last=channels_last, compile_unet=compile_unet)
    return comps


def _load_lora(comps: LatentComponents, lora: str, scale: float) -> None:
    """Fuse a LoRA: SD 1.x/2.x through the UNet loader (:func:`_load_lcm_lora`), other families through their
    pipeline's ``load_lora_weights`` (UNet/transformer and text encoder parts alike), then drop the adapters."""
    if comps.family == "sd":
        _load_lcm_lora(comps, lora, scale)
        return
    try:
        import peft  # noqa: F401
    except ImportError as err:
        raise LatentModelError(
            f"models.latent_lora={lora!r} needs the 'peft' package (diffusers loads LoRAs through it): pip install peft"
        ) from err
    local = Path(lora).expanduser()
    if local.is_dir():
        _check_folder(local, "the LoRA")
    src, kw = _lora_source(lora)
    try:
        comps.pipe.load_lora_weights(src, adapter_name="lora", **kw)
        comps.pipe.fuse_lora(lora_scale=float(scale))
        comps.pipe.unload_lora_weights()  # the fused base weights stay
    except LOAD_ERRORS as err:
        raise _lora_error(lora, err) from None
    comps.name = f"{comps.name}+lora"


def _lora_error(lora: str, err: BaseException) -> LatentModelError:
    """One line naming ``models.latent_lora``. Never "unavailable": a missing LoRA must not make the random-weights
    fallback replace the whole model."""
    local = Path(lora).expanduser()
    if local.is_file() and (refused := refused_weights_error(err, None, local)) is not None:
        return LatentModelError(f"models.latent_lora: cannot load {lora!r}: {refused}")
    if local.exists():
        return LatentModelError(f"models.latent_lora: cannot load {lora!r}: {one_line(err, 300)}")
    src, kw = _lora_source(lora)
    get = f"hf download {src} {kw['weight_name']}" if kw else f"hf download {src}"
    offline = " (the hub is offline: HF_HUB_OFFLINE=1)" if isinstance(err, OSError) and hub_offline() else ""
    return LatentModelError(
        f"models.latent_lora: cannot load {lora!r}{offline}: {one_line(err, 300)}; fetch it once with `{get}` on a "
        "machine with internet, or give a local folder or .safetensors file"
    )


# owner/name/file.safetensors: one file of a hub repository that holds several (SDXL-Lightning's 2/4/8-step LoRAs).
_HUB_FILE = re.compile(r"([A-Za-z0-9][\w.-]*/[\w.-]+)/([\w./-]+\.safetensors)")


def _lora_source(lora: str) -> tuple[str, dict[str, str]]:
    """Where a LoRA is, as diffusers' loaders take it: a local path, a hub id, or a hub id and ``weight_name``."""
    local = Path(lora).expanduser()
    if local.exists():
        return str(local), {}
    m = _HUB_FILE.fullmatch(lora)
    if m:
        return m.group(1), {"weight_name": m.group(2)}
    return lora, {}


def _load_lcm_lora(comps: LatentComponents, lora: str, scale: float = 1.0) -> None:
    """Load an LCM-LoRA into the UNet through diffusers' PEFT-backed loader, then fuse it (no per-step cost)."""
    try:
        import peft  # noqa: F401
    except ImportError as err:
        raise LatentModelError(
            f"lcm_lora={lora!r} needs the 'peft' package (diffusers loads LoRAs through it): pip install peft"
        ) from err
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    local = Path(lora).expanduser()
    if local.is_dir():
        _check_folder(local, "the LCM-LoRA")
    try:
        src, kw = _lora_source(lora)
        state_dict, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(src, **kw)
    except LOAD_ERRORS as err:
        raise _lora_error(lora, err) from None
    unet_sd = {k.removeprefix("unet."): v for k, v in state_dict.items() if k.startswith("unet.")}
    if any(k.startswith("text_encoder") for k in state_dict):
        warnings.warn(f"models.latent_lora {lora!r}: its text-encoder weights are not applied (SD 1.x/2.x LoRAs are "
                      "fused into the UNet only)", stacklevel=3)
    if not unet_sd:
        raise LatentModelError(f"LoRA {lora!r} has no UNet weights (keys must start with 'unet.' after conversion)")
    unet_alphas = None
    if alphas:
        unet_alphas = {k.removeprefix("unet."): v for k, v in alphas.items() if k.startswith("unet.")} or None
    comps.unet.load_lora_adapter(unet_sd, prefix=None, network_alphas=unet_alphas, adapter_name="lcm")
    comps.unet.fuse_lora(lora_scale=float(scale))
    comps.unet.unload_lora()  # drop the PEFT wrappers; the fused base weights stay
    comps.name = f"{comps.name}+lcm-lora"


def enable_fast_paths(
    comps: LatentComponents, *, channels_last: bool = False, compile_unet: bool | dict[str, Any] = False
) -> LatentComponents:
    """Opt-in speed switches, safe on CPU, meant for CUDA.

    - ``channels_last``: NHWC memory format for UNet and VAE convolutions (faster cuDNN kernels with fp16/bf16).
    - ``compile_unet``: ``torch.compile`` the UNet in place (``True`` or a dict of ``torch.compile`` kwargs,
      e.g. ``{"mode": "max-autotune"}``); the first call is slow while it compiles.

    Attention already runs through PyTorch SDPA (diffusers' default ``AttnProcessor2_0``).
    """
    if channels_last:
        comps.unet.to(memory_format=torch.channels_last)
        comps.vae.to(memory_format=torch.channels_last)
        if comps.preview_vae is not None:
            comps.preview_vae.to(memory_format=torch.channels_last)
    if compile_unet:
        kwargs = compile_unet if isinstance(compile_unet, dict) else {}
        comps.unet.compile(**kwargs)  # nn.Module.compile keeps the UNet2DConditionModel type and its .config
    return comps


def random_latent_components(preset: str, *, device: torch.device, dtype: torch.dtype, fast_vae: bool) -> LatentComponents:
    """``LatentComponents`` of ``preset`` (a key of :data:`~discolib.models.archs.LATENT_ARCHS`) with random weights.

    The real architecture (same shapes and cost), built under a fixed seed; the tokenizer is the tiny one shipped
    with discolib (the prompt text does not change the cost of a step). ``fast_vae`` adds a TAESD-shaped preview VAE.
    """
    if preset not in LATENT_ARCHS:
        raise InputError(f"models.latent_model: no random-weight architecture for {preset!r}; known: {', '.join(LATENT_ARCHS)}")
    unet_cfg, text_cfg = LATENT_ARCHS[preset]
    tokenizer = CLIPTokenizer.from_pretrained(TINY_TOKENIZER_DIR)
    with seeded(0):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**SD_VAE)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), **text_cfg))
        preview = AutoencoderTiny() if fast_vae else None  # diffusers' defaults are TAESD's architecture
    parts = [unet, vae, text] + ([preview] if preview is not None else [])
    for m in parts:
        m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LatentComponents(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        scheduler_config=dict(LATENT_SCHEDULERS.get(preset, SD_SCHEDULER)),
        preview_vae=preview,
        name=f"{preset} (random weights)",
    )


# --------------------------------------------------------------------------------------------------------------
# The tiny offline preset
# --------------------------------------------------------------------------------------------------------------


def _byte_level_chars() -> list[str]:
    """The byte-level BPE alphabet: printable bytes map to themselves, the rest to code points from 256 up."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    out: list[str] = []
    shift = 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + shift))
            shift += 1
    return out


# A handful of merges so the tokenizer really exercises BPE ("the", "and", "castle", "fog" become single tokens).
_TINY_MERGES: tuple[tuple[str, str], ...] = (
    ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("o", "f</w>"), ("i", "n"), ("in", "g</w>"),
    ("e", "r"), ("o", "n</w>"), ("c", "a"), ("ca", "s"), ("cas", "t"), ("cast", "l"), ("castl", "e</w>"),
    ("f", "o"), ("fo", "g</w>"), ("r", "e"), ("e", "d</w>"), ("s", "t"), ("a", "r"),
)


def write_tiny_tokenizer(folder: str | os.PathLike[str]) -> Path:
    """Write the tiny CLIP tokenizer files (vocab.json, merges.txt, tokenizer_config.json) into ``folder``.

    Vocabulary, in CLIP's order: the 256 byte-level characters, the same with the end-of-word mark ``</w>``,
    one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. This is how the files shipped in
    ``discolib/data/tiny_tokenizer/`` were made.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    chars = _byte_level_chars()
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in _TINY_MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in _TINY_MERGES)
    (out / "merges.txt").write_text(merges, encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def tiny_latent_folder(cache_dir: str | os.PathLike[str] | None = None, *, inpaint: bool = False) -> Path:
    """The tiny-latent model folder (diffusers layout) in ``cache_dir`` (default: :func:`~discolib.models.hub.cache_root`),
    built and saved on first use; ``inpaint``: the tiny-latent-inpaint one (a 9-input-channel UNet)."""
    preset = TINY_INPAINT_PRESET if inpaint else TINY_LATENT_PRESET
    return _tiny_folder(preset, lambda tmp: _build_tiny_latent(tmp, inpaint=inpaint), cache_dir)


def tiny_family_folder(family: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The tiny model folder of a family (``"sd"`` is tiny-latent), built by the family's
    :meth:`~discolib.models.families.Family.build_tiny` and saved on first use, as :func:`tiny_latent_folder`."""
    if family == "sd":
        return tiny_latent_folder(cache_dir)
    fam = get_family(family)
    return _tiny_folder(f"tiny-{family}", fam.build_tiny, cache_dir)


def _tiny_folder(
    preset: str, build: Callable[[Path], None], cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Build a tiny model folder once per version. The folder name carries the preset version and the
    diffusers/transformers versions, since ``save_pretrained`` formats can change between releases. It is written to
    a temporary sibling and renamed into place, so concurrent test processes never see half a folder."""
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    name = f"{preset}-v{TINY_LATENT_VERSION}-diffusers{diffusers.__version__}-transformers{transformers.__version__}"
    folder = root / name
    if (folder / "model_index.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=name + ".tmp-", dir=root))
    try:
        build(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "model_index.json").is_file():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _build_tiny_latent(folder: Path, *, inpaint: bool = False) -> None:
    """Build random tiny SD components under fixed seeds and save them in the diffusers layout.

    ``inpaint``: the UNet takes 9 input channels (latents, mask, masked-image latents), as SD inpainting's;
    everything else is the same architecture and seed.
    """
    tokenizer = CLIPTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR))
    # Fixed seeds without disturbing the caller's global RNG; each model is re-seeded so that one's
    # architecture never changes another's weights.
    with seeded(0):
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=9 if inpaint else 4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        torch.manual_seed(0)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            # Four levels: the same 8x down-sampling as SD's VAE, so sizes behave as with real models.
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
        # The LDM recipe for the scaling factor: 1 / std of the latents, so the UNet sees unit-variance latents.
        g = torch.Generator().manual_seed(1)
        probe = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
        with torch.no_grad():
            std = vae.encode(probe).latent_dist.mode().std()
        vae.register_to_config(scaling_factor=float(1.0 / std))
        torch.manual_seed(0)
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=32,
        )
        text_encoder = CLIPTextModel(text_config)
        torch.manual_seed(0)
        taesd = AutoencoderTiny(
            encoder_block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=4,
        )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    taesd.save_pretrained(folder / "taesd")
    index = {
        "_class_name": "StableDiffusionInpaintPipeline" if inpaint else "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    # Written last: its presence marks a complete folder.
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
