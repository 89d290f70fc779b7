"""One entry point per model kind the renderer loads, and the one random-weights fallback.

Each loader turns a settings name into a ready model (on ``device``, in eval mode, gradients off):

* :func:`load_diffusion`: Disco's guided-diffusion UNet (``"tiny"``, a catalogue name or a checkpoint file);
* :func:`load_secondary`: Disco's secondary model (``"tiny"``, a catalogue name or a file);
* :func:`load_latent`: Stable-Diffusion-style components (preset, hub id or diffusers folder);
* :func:`load_depth_estimator`: a depth estimator (hub id, folder, ``tiny-depth-anything``, ``constant``);
* :func:`load_clip_ensemble`: the CLIP models used for guidance;
* :func:`load`: any of them by kind.

With ``random_ok`` (``models.random_weights``), a model whose weights cannot be had here
(:class:`~discolib.errors.WeightsUnavailable`: offline, not downloaded) is replaced by the same architecture with
fixed random weights (:mod:`discolib.models.archs`) and a :class:`RandomWeightsWarning` says so. Only
unavailability falls back: an unknown name, a SHA-256 mismatch or a refused file stays an error.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import torch

from discolib.errors import InputError, WeightsUnavailable
from discolib.models.archs import (
    FAMILY_ARCHS,
    LATENT_ARCHS,
    TINY,
    build_tiny_adm_unet,
    build_tiny_secondary,
    random_adm_unet,
    random_secondary,
)
from discolib.models.clip import ClipEnsemble, ClipMember, load_clip
from discolib.models.depth import DEFAULT_DEPTH_MODEL, DepthEstimator, load_depth, random_depth_anything_small
from discolib.models.disco import load_disco_unet, load_secondary_model
from discolib.models.families.random import random_family_components
from discolib.models.latent import (
    LatentComponents,
    enable_fast_paths,
    finish_components,
    load_latent_components,
    random_latent_components,
)

__all__ = [
    "RandomWeightsWarning",
    "library_progress_bars",
    "load",
    "load_clip_ensemble",
    "load_depth_estimator",
    "load_diffusion",
    "load_latent",
    "load_secondary",
]

_T = TypeVar("_T")


_QUIET_LOCK = threading.Lock()
_quiet_renders = 0  # quiet renders running now: the bars come back when the last one ends (panel + cell overlap)
_bars_before: tuple[bool, bool, bool] = (True, True, True)


@contextlib.contextmanager
def library_progress_bars(enabled: bool) -> Iterator[None]:
    """Switch the model libraries' own tqdm bars (transformers' "Loading weights", diffusers' pipeline loading,
    huggingface_hub's downloads) off for the duration when ``enabled`` is False, then restore each library's state.

    A render with ``progress=False`` reports through its callback; the libraries' bars would otherwise end up as
    frozen "0%" lines in notebook outputs (papermill keeps them). Renders may overlap (the panel's thread and a
    cell): the state before the first is restored when the last ends. The three libraries are imported by the
    render loop anyway (both samplers use them), so importing them here costs nothing.
    """
    global _quiet_renders, _bars_before
    if enabled:
        yield
        return
    import diffusers.utils.logging as diffusers_logging  # why here: models/ imports them lazily; see the docstring
    import huggingface_hub.utils as hf_utils
    import transformers.utils.logging as transformers_logging

    with _QUIET_LOCK:
        if _quiet_renders == 0:
            _bars_before = (
                transformers_logging.is_progress_bar_enabled(),
                diffusers_logging.is_progress_bar_enabled(),
                not hf_utils.are_progress_bars_disabled(),
            )
            transformers_logging.disable_progress_bar()
            diffusers_logging.disable_progress_bar()
            hf_utils.disable_progress_bars()
        _quiet_renders += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_renders -= 1
            if _quiet_renders == 0:
                if _bars_before[0]:
                    transformers_logging.enable_progress_bar()
                if _bars_before[1]:
                    diffusers_logging.enable_progress_bar()
                if _bars_before[2]:
                    hf_utils.enable_progress_bars()


class RandomWeightsWarning(UserWarning):
    """Real weights were unavailable; a random-weight model of the same architecture is used (images are noise)."""


def _load_or_random(what: str, load_real: Callable[[], _T], load_random: Callable[[], _T] | None) -> _T:
    """``load_real()``; if its weights are unavailable and ``load_random`` is given, warn and use ``load_random()``.

    ``load_random`` is ``None`` where no fallback is allowed (``random_ok`` off, or no random architecture for
    the name): the error then propagates unchanged.
    """
    try:
        return load_real()
    except WeightsUnavailable as exc:
        if load_random is None:
            raise
        reason = str(exc).split(". ")[0]
        warnings.warn(
            f"{what}: real weights unavailable ({reason}); using the same architecture with RANDOM weights "
            "(models.random_weights is on): speed is real, images are noise",
            RandomWeightsWarning,
            stacklevel=3,  # the caller of the public loader
        )
        return load_random()


def load_diffusion(name: str, device: torch.device, dtype: torch.dtype, *, random_ok: bool = False) -> torch.nn.Module:
    """Disco's main model: ``"tiny"``, a catalogue name or a checkpoint file, as a diffusers ``UNet2DModel``.

    ``model(x, t).sample`` maps ``(B, 3, H, W)`` to ``(B, 6, H, W)`` (eps, then the variance interpolation).
    On CUDA the weights are channels-last.
    """
    unet = _load_or_random(
        f"models.diffusion_model {name!r}",
        lambda: build_tiny_adm_unet() if name == TINY else load_disco_unet(name),
        functools.partial(random_adm_unet, name) if random_ok else None,
    )
    # Casting only when needed: diffusers warns on a dtype .to() of a model that is already in that dtype.
    unet = unet.to(device=device) if next(unet.parameters()).dtype == dtype else unet.to(device=device, dtype=dtype)
    if device.type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    return unet.eval().requires_grad_(False)


def load_secondary(name: str, device: torch.device, dtype: torch.dtype, *, random_ok: bool = False) -> torch.nn.Module:
    """Disco's secondary model (``"tiny"``, a catalogue name or a file): ``(B, 3, H, W)`` noisy image and
    ``(B,)`` timestep in, predicted clean image and eps out."""
    model = _load_or_random(
        f"models.secondary_model {name!r}",
        lambda: build_tiny_secondary() if name == TINY else load_secondary_model(name),
        random_secondary if random_ok else None,
    )
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_latent(
    name: str, device: torch.device, dtype: torch.dtype, *, random_ok: bool = False, **options: Any
) -> LatentComponents:
    """Stable-Diffusion-style components (a preset, hub id or diffusers-layout folder).

    ``options`` go to :func:`~discolib.models.latent.load_latent_components` (``vae``, ``lora``, ``t5``, memory
    options, ``channels_last``, ``compile_unet``). The random fallback exists for the presets of
    :data:`~discolib.models.archs.LATENT_ARCHS` (SD 1.x/2.x) and :data:`~discolib.models.archs.FAMILY_ARCHS`
    (sdxl-turbo, sd3.5-medium, flux-schnell at full size, for GPU benchmarks without downloads); it honours ``vae``
    (a TAESD-shaped preview VAE), the memory options, ``channels_last`` and ``compile_unet``.
    """

    def random_family() -> LatentComponents:
        offload = options.get("offload_text_encoders", False)
        comps = random_family_components(
            name, device=device, dtype=dtype, fast_vae=bool(options.get("vae")), t5=options.get("t5", True),
            offload_text_encoders=offload,
        )
        return finish_components(
            comps, device=device, dtype=dtype, vae=None, lora=None, lora_scale=1.0, offload_text_encoders=offload,
            vae_tiling=options.get("vae_tiling", False), fp8_weights=options.get("fp8_weights", False),
            channels_last=options.get("channels_last", False), compile_unet=options.get("compile_unet", False),
        )

    def random() -> LatentComponents:
        if name in FAMILY_ARCHS:
            return random_family()
        comps = random_latent_components(name, device=device, dtype=dtype, fast_vae=bool(options.get("vae")))
        return enable_fast_paths(
            comps,
            channels_last=options.get("channels_last", False),
            compile_unet=options.get("compile_unet", False),
        )

    return _load_or_random(
        f"models.latent_model {name!r}",
        lambda: load_latent_components(name, device=device, dtype=dtype, **options),
        random if random_ok and (name in LATENT_ARCHS or name in FAMILY_ARCHS) else None,
    )


def load_depth_estimator(name: str, device: torch.device, *, random_ok: bool = False) -> DepthEstimator:
    """A float32 depth estimator (cached per process by :func:`~discolib.models.depth.load_depth`).

    The random fallback exists for :data:`~discolib.models.depth.DEFAULT_DEPTH_MODEL` only (Depth Anything V2
    Small's architecture); it is built anew on each call.
    """
    return _load_or_random(
        f"models.depth_model {name!r}",
        lambda: load_depth(name, device),
        functools.partial(random_depth_anything_small, device, torch.float32)
        if random_ok and name == DEFAULT_DEPTH_MODEL
        else None,
    )


def load_clip_ensemble(
    names: Sequence[str], device: torch.device, dtype: torch.dtype, *, random_ok: bool = False
) -> ClipEnsemble:
    """The CLIP ensemble of ``names``; with ``random_ok``, each member whose weights cannot be had is the same
    architecture with random weights."""
    members: list[ClipMember] = []
    for spec in names:
        real = functools.partial(load_clip, spec, device, dtype, True)
        random = functools.partial(load_clip, spec, device, dtype, None) if random_ok else None
        members.append(_load_or_random(f"CLIP model {spec!r}", real, random))
    return ClipEnsemble(members, device, dtype)


_LOADERS: dict[str, Callable[..., Any]] = {
    "diffusion": load_diffusion,
    "secondary": load_secondary,
    "latent": load_latent,
    "depth": load_depth_estimator,
    "clip": load_clip_ensemble,
}


def load(kind: Literal["diffusion", "secondary", "latent", "depth", "clip"], name: Any, **kwargs: Any) -> Any:
    """``load_<kind>(name, **kwargs)``: the loader of that kind (``name`` is a list of model ids for ``"clip"``).

    Raises:
        InputError: unknown ``kind``.
    """
    loader = _LOADERS.get(kind)
    if loader is None:
        raise InputError(f"unknown model kind {kind!r}; expected one of {', '.join(_LOADERS)}")
    return loader(name, **kwargs)
