"""One entry point per model kind the renderer loads, and the one random-weights fallback.

Each loader turns a settings name into a ready model (on ``device``, in eval mode, gradients off):

* :func:`load_diffusion`: Disco's guided-diffusion UNet (``"tiny"``, a catalogue name or a checkpoint file);
* :func:`load_secondary`: Disco's secondary model (``"tiny"``, a catalogue name or a file);
* :func:`load_latent`: Stable-Diffusion-style components (preset, hub id or diffusers folder);
* :func:`load_depth_estimator`: a depth estimator (hub id, folder, ``tiny-depth-anything``, ``constant``);
* :func:`load_clip_ensemble`: the CLIP models used for guidance;
* :func:`load`: any of them by kind.

Inside :func:`shared_models` (a sweep's variants, a Ray worker's tasks) each loader returns the model it already
loaded for the same arguments (:class:`ModelCache`), reset to its state as loaded: N renders with one model load it
once.

With ``random_ok`` (``models.random_weights``), a model whose weights cannot be had here
(:class:`~discolib.errors.WeightsUnavailable`: offline, not downloaded) is replaced by the same architecture with
fixed random weights (:mod:`discolib.models.archs`) and a :class:`RandomWeightsWarning` says so. Only
unavailability falls back: an unknown name, a SHA-256 mismatch or a refused file stays an error.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
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
from discolib.models.hub import models_dir
from discolib.models.latent import (
    LatentComponents,
    enable_fast_paths,
    finish_components,
    load_latent_components,
    random_latent_components,
)

__all__ = [
    "WORKER_MODELS",
    "ModelCache",
    "RandomWeightsWarning",
    "library_progress_bars",
    "load",
    "load_clip_ensemble",
    "load_depth_estimator",
    "load_diffusion",
    "load_latent",
    "load_secondary",
    "shared_models",
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


class ModelCache:
    """Loaded models keyed by their loader's arguments (kind, name, device, dtype, ``random_ok``, options).

    At most ``max_items`` models are kept (the least recently used goes first), so a sweep over several models
    does not hold them all. Thread-safe: one lock serialises loads, so two threads asking for the same model load
    it once. ``loads`` and ``hits`` count what happened (tests, benchmarks).
    """

    def __init__(self, max_items: int = 8) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._items)

    def get_or_load(self, key: Hashable, load: Callable[[], _T], *, keep: Callable[[], bool] = lambda: True) -> _T:
        """The model cached under ``key``, or ``load()``'s result, cached unless ``keep()`` says no afterwards.

        A key whose first item is one of :data:`SINGLE_KINDS` (a diffusion model, a latent pipeline: GBs each)
        first evicts the other entries of its kind, so a sweep over several checkpoints holds one at a time.
        """
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]  # type: ignore[no-any-return]
            kind = key[0] if isinstance(key, tuple) and key else None
            if kind in SINGLE_KINDS:
                stale = [k for k in self._items if isinstance(k, tuple) and k and k[0] == kind]
                for k in stale:
                    del self._items[k]
                if stale:
                    _free_memory()
            value = load()
            self.loads += 1
            if keep():
                self._items[key] = value
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        """Forget every model (their memory is freed when nothing else holds them)."""
        with self._lock:
            self._items.clear()


#: Kinds of which a cache keeps one model at a time (each is GBs of weights on the device).
SINGLE_KINDS = ("diffusion", "latent")


def _free_memory() -> None:
    """Return evicted models' memory now (the next load would otherwise run next to them on the GPU)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


#: The process-wide cache a Ray worker uses across its tasks (one worker, one copy of each model).
WORKER_MODELS = ModelCache()
# A context variable, not a global: a render started in another thread (the panel's) beside a sweep never sees the
# sweep's cache, and nested shared_models blocks restore the outer cache on exit.
_ACTIVE: contextvars.ContextVar[ModelCache | None] = contextvars.ContextVar("discolib_model_cache", default=None)


@contextlib.contextmanager
def shared_models(cache: ModelCache | None = None) -> Iterator[ModelCache]:
    """Within the block (in this thread / context), the loaders reuse the models ``cache`` holds (a new cache when
    None) for identical arguments."""
    active = cache if cache is not None else ModelCache()
    token = _ACTIVE.set(active)
    try:
        yield active
    finally:
        _ACTIVE.reset(token)


def _freeze(value: Any) -> Hashable:
    """A hashable, exact form of a loader argument (lists of CLIP names, option dicts, devices, dtypes)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return (type(value).__name__, value)  # 1 and 1.0 and True stay different keys
    return (type(value).__name__, str(value))  # torch.device, torch.dtype


def _reset_for_reuse(kind: str, model: Any) -> Any:
    """``model`` as its loader returned it: what a render changes on a loaded model is undone before the next
    render gets it, so a variant's frames never depend on the variant before it.

    * text-embedding caches are emptied: embeddings computed in a batch with other prompts may differ in their last
      bits from those computed alone (CPU GEMMs split by batch size), and a fresh load starts empty;
    * gradient checkpointing, which the guided sampler switches on per config, is switched off again.
    Everything else a render sets (LoRA fusing, compile flags, fast paths, memory options) is an argument of the
    loader, hence part of the key.
    """
    if kind == "latent":
        model.embedding_cache.clear()
    elif kind == "clip":
        model.clear_cache()
    elif kind == "diffusion" and getattr(model, "is_gradient_checkpointing", False):
        model.disable_gradient_checkpointing()
    return model


def _file_stamp(value: Any) -> Any:
    """A local file's name with its size and mtime (a checkpoint replaced at the same path is a new model)."""
    if isinstance(value, str) and value and os.path.isfile(value):
        st = os.stat(value)
        return (value, st.st_size, st.st_mtime_ns)
    return value


# Set by _load_or_random when it fell back to random weights: such a model is never kept in a cache (the real
# weights may be there for the next variant, as photo.py never caches one either).
_FELL_BACK: contextvars.ContextVar[bool] = contextvars.ContextVar("discolib_fell_back", default=False)


def _cached(kind: str, load_now: Callable[[], _T], *key: Any) -> _T:
    """``load_now()``, through the active :func:`shared_models` cache when there is one (keyed on the arguments,
    the models root of this run and local files' size and mtime)."""
    cache = _ACTIVE.get()
    if cache is None:
        return load_now()
    full = (kind, str(models_dir()), *(_freeze(_file_stamp(k)) for k in key))
    token = _FELL_BACK.set(False)
    try:
        model = cache.get_or_load(full, load_now, keep=lambda: not _FELL_BACK.get())
    finally:
        _FELL_BACK.reset(token)
    return _reset_for_reuse(kind, model)  # type: ignore[no-any-return]


class RandomWeightsWarning(UserWarning):
    """Real weights were unavailable; a random-weight model of the same architecture is used (images are noise)."""


def _caller_level() -> int:
    """The ``stacklevel`` that attributes a warning raised in :func:`_load_or_random` to the first frame outside this
    module (the loaders' caller), however many wrappers (the model cache) lie between."""
    frame = sys._getframe(1)  # _load_or_random: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level


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
        _FELL_BACK.set(True)
        warnings.warn(
            f"{what}: real weights unavailable ({reason}); using the same architecture with RANDOM weights "
            "(models.random_weights is on): speed is real, images are noise",
            RandomWeightsWarning,
            stacklevel=_caller_level(),  # the caller of the public loader
        )
        return load_random()


def load_diffusion(name: str, device: torch.device, dtype: torch.dtype, *, random_ok: bool = False) -> torch.nn.Module:
    """Disco's main model: ``"tiny"``, a catalogue name or a checkpoint file, as a diffusers ``UNet2DModel``.

    ``model(x, t).sample`` maps ``(B, 3, H, W)`` to ``(B, 6, H, W)`` (eps, then the variance interpolation).
    On CUDA the weights are channels-last.
    """
    return _cached("diffusion", lambda: _load_diffusion(name, device, dtype, random_ok), name, device, dtype, random_ok)


def _load_diffusion(name: str, device: torch.device, dtype: torch.dtype, random_ok: bool) -> torch.nn.Module:
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
    return _cached("secondary", lambda: _load_secondary(name, device, dtype, random_ok), name, device, dtype, random_ok)


def _load_secondary(name: str, device: torch.device, dtype: torch.dtype, random_ok: bool) -> torch.nn.Module:
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
    return _cached(
        "latent", lambda: _load_latent(name, device, dtype, random_ok, options), name, device, dtype, random_ok, options
    )


def _load_latent(
    name: str, device: torch.device, dtype: torch.dtype, random_ok: bool, options: dict[str, Any]
) -> LatentComponents:
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
    Small's architecture); it is built anew on each call (outside :func:`shared_models`).
    """
    return _cached("depth", lambda: _load_depth(name, device, random_ok), name, device, random_ok)


def _load_depth(name: str, device: torch.device, random_ok: bool) -> DepthEstimator:
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
    return _cached(
        "clip", lambda: _load_clip_ensemble(names, device, dtype, random_ok), list(names), device, dtype, random_ok
    )


def _load_clip_ensemble(names: Sequence[str], device: torch.device, dtype: torch.dtype, random_ok: bool) -> ClipEnsemble:
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
