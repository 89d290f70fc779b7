"""Monocular depth estimators behind one small interface, plus depth-map utilities.

A :class:`DepthEstimator` maps ``(B, 3, H, W)`` images in ``[0, 1]`` to ``(B, 1, H, W)`` positive depth,
larger = farther, on the image's device. Implementations:

* :class:`TransformersDepth` -- any ``transformers`` depth-estimation model (Depth Anything V1/V2, DPT/MiDaS,
  ZoeDepth, ...) from a hub id, a local folder or a model object; preprocessing (resize to the model's multiple,
  normalisation) and postprocessing run as tensor ops on the device.
* :class:`ConstantDepth` -- flat depth (Deforum/Disco without a depth model).
* ``"tiny-depth-anything"`` -- a randomly initialised, tiny Depth Anything built in-process under a fixed seed,
  run through the same :class:`TransformersDepth` code as real checkpoints (tests, offline demos).
* :func:`blend_depth` -- weighted average of several estimators (Disco/Deforum's MiDaS/AdaBins ``midas_weight``).

Relative models (Depth Anything "relative", DPT/MiDaS) predict *relative inverse depth* (disparity, up to an
unknown scale and shift, larger = nearer). :class:`TransformersDepth` turns it into depth per frame:

* ``"linear"`` (default, as Deforum): ``depth = 2 - (disp - min) / (max - min)``, i.e. the nearest pixel at 1
  and the farthest at 2 -- exactly Deforum's MiDaS mapping, linear in disparity.
* ``"inverse"``: ``depth = max(disp) / clamp(disp, max(disp) / 100)``: the geometric ``1 / disparity``
  (assuming zero shift), nearest at 1, capped at 100x farther.

Metric models (``config.depth_estimation_type == "metric"``, ZoeDepth) are passed through in metres.

Depth units for :func:`discolib.animation.motion.reproject_3d`: its ``camera="deforum"`` reads depth in the
originals' units, which :func:`depth_for_warp` produces from any estimator's output (``"disco"``: Disco v5.7 and
deforum-stable-diffusion's raw MiDaS scale; ``"webui"``: sd-webui-deforum's per-frame ``[1, 2]``). The originals'
``near_plane``/``far_plane`` never reach the warp.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from discolib.errors import InputError, WeightsUnavailable, one_line
from discolib.io.files import atomic_path
from discolib.io.inputs import expand_path
from discolib.models.state_dict import (
    LOAD_ERRORS,
    check_weights_folder,
    refused_weights_error,
    transformers_weights_only,
)
from discolib.ops import check_image_batch, mid_ranks, seeded

__all__ = [
    "DEFAULT_DEPTH_MODEL",
    "DEFORUM_DEPTH_RANGE",
    "DISCO_DEPTH_RANGE",
    "KNOWN_DEPTH_MODELS",
    "TINY_DEPTH_PRESET",
    "BlendedDepth",
    "ConstantDepth",
    "DepthConvention",
    "DepthError",
    "DepthEstimator",
    "DepthModelUnavailable",
    "TransformersDepth",
    "blend_depth",
    "build_tiny_depth_anything",
    "clear_depth_cache",
    "depth_for_warp",
    "load_depth",
    "normalize_depth",
    "random_depth_anything_small",
    "save_depth_png",
]

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
#: Hub ids known to work (all relative-disparity models); any other transformers depth model id also works.
KNOWN_DEPTH_MODELS: tuple[str, ...] = (
    "depth-anything/Depth-Anything-V2-Small-hf",
    "depth-anything/Depth-Anything-V2-Base-hf",
    "depth-anything/Depth-Anything-V2-Large-hf",
    "Intel/dpt-hybrid-midas",
    "Intel/dpt-large",
)
TINY_DEPTH_PRESET = "tiny-depth-anything"
#: sd-webui-deforum's depth range: each frame's depth normalised (and histogram-equalised) into ``[1, 2]``.
DEFORUM_DEPTH_RANGE: tuple[float, float] = (1.0, 2.0)
#: Disco v5.7 / deforum-stable-diffusion's MiDaS depth ``(50 - disparity) / 19`` over the span of DPT-Large's
#: disparity on a typical frame, ``[0, 30]`` (nearest pixel at 20/19, farthest at 50/19; see :func:`depth_for_warp`).
DISCO_DEPTH_RANGE: tuple[float, float] = (20.0 / 19.0, 50.0 / 19.0)

#: Whose depth units the 3D warp sees (:func:`depth_for_warp`).
DepthConvention = Literal["disco", "webui"]
_DEPTH_CONVENTIONS = ("disco", "webui")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL resampling codes used by transformers image processors -> torch interpolate modes.
_RESAMPLE_MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class DepthError(InputError):
    """Bad input to a depth function (shape, range, weights)."""


class DepthModelUnavailable(DepthError, WeightsUnavailable):
    """A depth model could not be loaded (unknown id, offline without a local copy, broken folder)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message, reason=reason or "depth model not available")


@runtime_checkable
class DepthEstimator(Protocol):
    """Anything that maps images to depth.

    ``__call__(image)``: ``image`` ``(B, 3, H, W)`` float in ``[0, 1]`` -> ``(B, 1, H, W)`` positive depth
    (larger = farther), same device and dtype as ``image``. ``name`` identifies the estimator in run records.
    """

    name: str

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


def _check_image(image: torch.Tensor, name: str = "image") -> None:
    check_image_batch(image, name, error=DepthError)


class ConstantDepth:
    """Flat depth ``value`` everywhere (no parallax: 3D motion becomes a pure camera rotation/zoom)."""

    def __init__(self, value: float = 1.0) -> None:
        if not value > 0 or not math.isfinite(value):
            raise DepthError(f"ConstantDepth value must be a positive finite number, got {value}")
        self.value = float(value)
        self.name = f"constant:{self.value:g}"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _check_image(image)
        b, _, h, w = image.shape
        return torch.full((b, 1, h, w), self.value, device=image.device, dtype=image.dtype)

    def __repr__(self) -> str:
        return f"ConstantDepth({self.value:g})"


def _size_hw(size: Any) -> tuple[int, int] | None:
    """``(height, width)`` from a transformers ``size`` (dict or SizeDict); ``None`` if not given that way."""
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else lambda k, d=None: getattr(size, k, d)
    h, w = get("height"), get("width")
    if h and w:
        return int(h), int(w)
    short = get("shortest_edge")
    if short:
        return int(short), int(short)
    return None


def _constrain_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to a multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, int(round(value / multiple)) * multiple)


class TransformersDepth:
    """A ``transformers`` depth-estimation model as a :class:`DepthEstimator`.

    Args:
        model: a hub id, a local folder (``config.json``, weights, ``preprocessor_config.json``) or a loaded
            ``PreTrainedModel`` with a ``predicted_depth`` output.
        processor: the model's image processor, only read for its preprocessing settings (size,
            ``keep_aspect_ratio``, ``ensure_multiple_of``, mean/std, resample). Loaded with the model when
            ``model`` is an id or folder; when absent, Depth Anything's defaults are used (518, multiple of 14,
            ImageNet mean/std, bicubic).
        device, dtype: where the model runs (default: CPU / the model's dtype). Inputs are moved there and the
            depth is returned on the input's device and dtype.
        input_size: override the processor's target ``(height, width)`` (an int for a square target); smaller
            is faster, e.g. 266 or 364 for preview-quality depth.
        disparity_to_depth: ``"linear"`` (Deforum) or ``"inverse"``; see the module docstring.
        name: the estimator's name (default: the hub id / folder / model class name).
    """

    def __init__(
        self,
        model: Any,
        processor: Any = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        input_size: int | tuple[int, int] | None = None,
        disparity_to_depth: Literal["linear", "inverse"] = "linear",
        name: str | None = None,
    ) -> None:
        if disparity_to_depth not in ("linear", "inverse"):
            raise DepthError(f"disparity_to_depth must be 'linear' or 'inverse', got {disparity_to_depth!r}")
        if isinstance(model, str | os.PathLike):
            source = os.fspath(model)
            model, loaded_processor = _load_transformers_depth(source)
            processor = processor if processor is not None else loaded_processor
            name = name or source
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise DepthError(f"model must be a hub id, a local folder or a transformers model, got {type(model)}")
        self.model = model.eval().requires_grad_(False)
        if device is not None or dtype is not None:
            self.model.to(device=device, dtype=dtype)
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.name = name or type(model).__name__
        self.disparity_to_depth = disparity_to_depth
        config = self.model.config
        self.metric = (
            getattr(config, "depth_estimation_type", "relative") == "metric" or config.model_type == "zoedepth"
        )

        mean = getattr(processor, "image_mean", None) or _IMAGENET_MEAN
        std = getattr(processor, "image_std", None) or _IMAGENET_STD
        if not getattr(processor, "do_normalize", True):
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self._mean = torch.tensor(mean, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        if input_size is not None:
            size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        else:
            size = _size_hw(getattr(processor, "size", None)) or (518, 518)
        self.target_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.keep_aspect_ratio = bool(getattr(processor, "keep_aspect_ratio", processor is None))
        multiple = getattr(processor, "ensure_multiple_of", None)
        default_multiple = getattr(config, "patch_size", None) or 14
        self.multiple = int(multiple or (default_multiple if processor is None else 1))
        resample = getattr(processor, "resample", 3)
        self.resample = _RESAMPLE_MODES.get(int(resample) if resample is not None else 3, "bicubic")

    def model_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` an ``H x W`` image is resized to (transformers' DPT rule, on ints only).

        With ``keep_aspect_ratio`` both sides use the scale closer to 1 of the two that fit the target height
        or width ("scale as little as possible"); each side is then rounded to the model's multiple.
        """
        th, tw = self.target_size
        sh, sw = th / height, tw / width
        if self.keep_aspect_ratio:
            if abs(1 - sw) < abs(1 - sh):
                sh = sw
            else:
                sw = sh
        return _constrain_to_multiple(sh * height, self.multiple), _constrain_to_multiple(sw * width, self.multiple)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 1, H, W)`` depth (larger = farther) on the image's device."""
        _check_image(image)
        h, w = image.shape[-2:]
        # Resize in float32: antialiased resizing has no bf16/fp16 kernel on the CPU; cast after normalising.
        x = image.to(device=self.device, dtype=torch.float32)
        size = self.model_input_size(h, w)
        if size != (h, w):
            antialias = self.resample != "nearest"
            x = F.interpolate(x, size=size, mode=self.resample, antialias=antialias, align_corners=None)
            x = x.clamp(0.0, 1.0)  # bicubic overshoot
        x = ((x - self._mean.float()) / self._std.float()).to(self.dtype)
        predicted = self.model(pixel_values=x).predicted_depth
        if predicted.ndim == 3:
            predicted = predicted.unsqueeze(1)
        predicted = F.interpolate(predicted.float(), size=(h, w), mode="bicubic", align_corners=False)
        if self.metric:
            depth = predicted.clamp(min=1e-3)
        else:
            depth = _disparity_to_depth(predicted.clamp(min=0.0), self.disparity_to_depth)
        return depth.to(device=image.device, dtype=image.dtype)

    def __repr__(self) -> str:
        return f"TransformersDepth({self.name!r}, device={self.device}, dtype={self.dtype})"


def _disparity_to_depth(disparity: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-frame disparity ``(B, 1, H, W)`` (larger = nearer) -> positive depth (see module docstring)."""
    lo = disparity.amin(dim=(1, 2, 3), keepdim=True)
    hi = disparity.amax(dim=(1, 2, 3), keepdim=True)
    if mode == "linear":
        # A flat (or all-zero) prediction has no depth information: it becomes flat depth (2), not NaN.
        return 2.0 - (disparity - lo) / (hi - lo).clamp(min=1e-8)
    floor = (hi / 100.0).clamp(min=1e-8)
    return hi.clamp(min=1e-8) / disparity.clamp(min=floor)


# --------------------------------------------------------------------------------------------------- loading


def _build_depth_anything(
    backbone: dict[str, Any], head: dict[str, Any], size: int, seed: int
) -> tuple[torch.nn.Module, Any]:
    """A Depth Anything (DINOv2 backbone, DPT head) with random weights under ``seed``, and its image processor.

    ``backbone``: ``Dinov2Config`` kwargs; ``head``: ``DepthAnythingConfig`` kwargs (patch 14 for both);
    ``size``: the processor's square input size. The global RNG is left untouched.
    """
    from transformers import (  # heavy: imported only when a depth model is built
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    # reshape_hidden_states=False: Depth Anything's neck takes token sequences.
    backbone_config = Dinov2Config(**backbone, patch_size=14, reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone_config, patch_size=14, **head)
    with seeded(seed):
        model = DepthAnythingForDepthEstimation(config).eval()
    processor = DPTImageProcessor(
        size={"height": size, "width": size},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=list(_IMAGENET_MEAN),
        image_std=list(_IMAGENET_STD),
    )
    return model, processor


def build_tiny_depth_anything(seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A randomly initialised, tiny Depth Anything (DINOv2 backbone: hidden 32, 2 layers, patch 14) + processor.

    Built from configs under ``seed`` (the global RNG is left untouched), ~70k parameters, input 70x70 by default.
    For tests and offline runs; its depth maps are deterministic noise, not real depth.
    """
    backbone = {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_ratio": 2, "image_size": 70,
        "out_indices": [1, 2],
    }
    head = {
        "reassemble_hidden_size": 32, "reassemble_factors": [2, 1], "neck_hidden_sizes": [16, 32],
        "fusion_hidden_size": 16, "head_hidden_size": 8,
    }
    return _build_depth_anything(backbone, head, 70, seed)


def random_depth_anything_small(
    device: torch.device, dtype: torch.dtype, *, input_size: int | None = None
) -> TransformersDepth:
    """Depth Anything V2 Small's architecture (DINOv2-S backbone, DPT head) with random weights (seed 0), input
    518 (or ``input_size``): the real model's shape and cost, for ``models.random_weights``."""
    backbone = {
        "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "image_size": 518,
        "out_indices": [3, 6, 9, 12],
    }
    head = {
        "reassemble_hidden_size": 384, "reassemble_factors": [4, 2, 1, 0.5],
        "neck_hidden_sizes": [48, 96, 192, 384], "fusion_hidden_size": 64, "head_hidden_size": 32,
    }
    model, processor = _build_depth_anything(backbone, head, 518, 0)
    return TransformersDepth(
        model, processor, device=device, dtype=dtype, input_size=input_size,
        name="Depth-Anything-V2-Small (random weights)",
    )


def _load_transformers_depth(source: str) -> tuple[torch.nn.Module, Any]:
    """Load model + image processor from a local folder or the hub cache, with an actionable one-line error.

    A local folder is checked first (:func:`discolib.models.state_dict.check_weights_folder`: no FIFOs, sane config
    JSON, no pickled code in ``.bin`` weights); the weights are read with ``weights_only=True`` in any case, and
    a refusal from there is reported the same way, naming the file.
    """
    if source.startswith("~"):
        try:
            source = str(expand_path(source, setting="depth model"))
        except InputError as err:
            raise DepthError(str(err)) from None
    is_folder = os.path.isdir(source)
    # Hub ids are "name" or "org/name"; anything else that is not a folder is a mistyped path.
    looks_like_path = source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source
    if not is_folder and looks_like_path:
        raise DepthModelUnavailable(
            f"depth model folder {source!r} does not exist (expected a folder with config.json, "
            f"model.safetensors and preprocessor_config.json, or a Hugging Face hub id like {DEFAULT_DEPTH_MODEL!r})",
            reason="folder not found",
        )
    if is_folder:
        check_weights_folder(source, f"depth model {source!r}", DepthError)
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        model = AutoModelForDepthEstimation.from_pretrained(source, **transformers_weights_only())
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except (OSError, ValueError):
            processor = None  # the model's defaults (Depth Anything preprocessing) are used
    except Exception as err:
        refused = refused_weights_error(err, source if is_folder else None, source)
        if refused is not None:
            raise DepthError(f"depth model {source!r}: {refused}") from None
        if not isinstance(err, LOAD_ERRORS):
            raise
        where = f"the folder {source!r}" if is_folder else f"the Hugging Face hub id {source!r}"
        raise DepthModelUnavailable(
            f"could not load depth model from {where}: {one_line(err, 400)}. "
            f"To use it offline, download it once on a machine with internet "
            f"(`huggingface-cli download {source} --local-dir /path/to/folder`) and pass that folder as the "
            f"depth model (it must hold config.json, model.safetensors and preprocessor_config.json). "
            f"Known models: {', '.join(KNOWN_DEPTH_MODELS)}; offline test preset: {TINY_DEPTH_PRESET!r}.",
            reason=one_line(err, 200),
        ) from err
    return model, processor


_CACHE: dict[tuple[str, str, str], DepthEstimator] = {}
_CACHE_LOCK = threading.Lock()


def load_depth(
    name: str = DEFAULT_DEPTH_MODEL,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> DepthEstimator:
    """A depth estimator by name, loaded once per ``(name, device, dtype)`` in this process.

    Args:
        name: a hub id (e.g. :data:`DEFAULT_DEPTH_MODEL`, ``"Intel/dpt-hybrid-midas"``), a local folder,
            ``"tiny-depth-anything"`` (random tiny model, offline) or ``"constant"`` / ``"constant:<value>"``.
        device, dtype: where the model runs.

    Raises:
        DepthModelUnavailable: the model is not cached/local (offline) or the id is unknown to the hub.
    """
    device = torch.device(device)
    key = (name, str(device), str(dtype))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        estimator: DepthEstimator
        if name == "constant" or name.startswith("constant:"):
            value = name.partition(":")[2]
            try:
                estimator = ConstantDepth(float(value) if value else 1.0)
            except ValueError as err:
                raise DepthError(f"depth model {name!r}: expected 'constant:<positive number>'") from err
        elif name == TINY_DEPTH_PRESET:
            model, processor = build_tiny_depth_anything()
            estimator = TransformersDepth(model, processor, device=device, dtype=dtype, name=name)
        else:
            estimator = TransformersDepth(name, device=device, dtype=dtype, name=name)
        _CACHE[key] = estimator
        return estimator


def clear_depth_cache() -> None:
    """Forget all models loaded by :func:`load_depth` (frees their memory once unreferenced)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# --------------------------------------------------------------------------------------------------- utilities


def _ranks01(values: torch.Tensor) -> torch.Tensor:
    """Per row of ``(N, K)``: the mid-rank of each value divided by ``K - 1`` (ties share a rank), in [0, 1]."""
    order, twice_rank = mid_ranks(values)
    unit = twice_rank.to(values.dtype) / (2.0 * max(values.shape[-1] - 1, 1))
    return torch.empty_like(unit).scatter_(-1, order, unit)


def normalize_depth(
    depth: torch.Tensor,
    near: float = DEFORUM_DEPTH_RANGE[0],
    far: float = DEFORUM_DEPTH_RANGE[1],
    *,
    equalize: bool = False,
) -> torch.Tensor:
    """Map each frame's depth linearly from its own ``[min, max]`` onto ``[near, far]`` (Deforum's approach).

    Args:
        depth: ``(B, 1, H, W)`` depth, larger = farther.
        near, far: target range in world units (default :data:`DEFORUM_DEPTH_RANGE`).
        equalize: first replace each value by its rank in the frame (histogram equalisation, as sd-webui
            Deforum does), so the depth layers spread evenly over the range.

    Returns:
        ``(B, 1, H, W)`` in ``[near, far]``. A flat frame (no depth information) maps to ``near`` everywhere,
        which with the default range is Deforum's flat depth of ones.
    """
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise DepthError(f"depth must have shape (B, 1, H, W), got {tuple(depth.shape)}")
    if not (0 < near < far) or not math.isfinite(far):
        raise DepthError(f"depth range must satisfy 0 < near < far (finite), got near={near}, far={far}")
    if equalize:
        b = depth.shape[0]
        unit = _ranks01(depth.reshape(b, -1)).view_as(depth)
        # A flat frame has every value tied at rank 1/2; keep the "flat -> near" rule.
        flat = (depth.amax(dim=(1, 2, 3), keepdim=True) - depth.amin(dim=(1, 2, 3), keepdim=True)) <= 0
        unit = torch.where(flat, torch.zeros_like(unit), unit)
    else:
        lo = depth.amin(dim=(1, 2, 3), keepdim=True)
        hi = depth.amax(dim=(1, 2, 3), keepdim=True)
        unit = (depth - lo) / (hi - lo).clamp(min=torch.finfo(depth.dtype).tiny)
    return near + (far - near) * unit


def depth_for_warp(
    depth: torch.Tensor, convention: DepthConvention = "disco", *, metric: bool = False
) -> torch.Tensor:
    """An estimator's depth in the units the originals' 3D camera sees (``reproject_3d(camera="deforum")``).

    The originals' motion at a pixel scales with ``1 / depth`` (:mod:`discolib.animation.motion`), so the depth
    *scale* sets the size of every 3D motion. Our estimators are not MiDaS: relative models give disparity up to an
    unknown scale and shift, which :class:`TransformersDepth` turns into depth linear in disparity. The equivalent
    of each original is therefore taken from the frame's own depth range:

    * ``"disco"`` (Disco v5.7 ``transform_image_3d``, deforum-stable-diffusion ``DepthModel.predict``): MiDaS
      DPT-Large disparity ``m`` becomes ``(50 - m) / 19``, linear in disparity. DPT-Large's disparity spans about
      ``[0, 30]`` on a typical frame (0 at the far end or sky; near objects in the 20s-30), so the nearest pixel is
      at ``20/19`` and the farthest at ``50/19`` (:data:`DISCO_DEPTH_RANGE`); our depth is mapped linearly onto
      that range, nearest to nearest. Not modelled: the originals blend this with AdaBins' metric depth (weight
      ``1 - midas_weight`` = 0.7 by default, NYU metres), which is usually larger (their motion then smaller);
      ``metric=True`` passes a metric estimator's metres through unchanged, as that term.
    * ``"webui"`` (sd-webui-deforum ``transform_image_3d_new``, ``prepare_depth_tensor``): each frame min/max
      normalised, histogram-equalised (here by rank, which webui's 1024-bin CDF approximates) and put on ``[1, 2]``,
      nearest at 1 (:data:`DEFORUM_DEPTH_RANGE`). Equalisation depends only on the depth *order*, so any estimator
      gives webui's depth exactly up to that order.

    Both give flat depth 1 for a flat frame: the originals' depth when no depth model is used (``torch.ones``).

    Args:
        depth: ``(B, 1, H, W)`` estimator output, larger = farther.
        convention: ``"disco"`` or ``"webui"``.
        metric: the depth is metric metres (``TransformersDepth.metric``); only read by ``"disco"``.

    Returns:
        ``(B, 1, H, W)`` depth in the original's units.
    """
    if convention not in _DEPTH_CONVENTIONS:
        raise DepthError(f"depth convention must be one of {', '.join(_DEPTH_CONVENTIONS)}; got {convention!r}")
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise DepthError(f"depth must have shape (B, 1, H, W), got {tuple(depth.shape)}")
    if convention == "webui":
        return normalize_depth(depth, *DEFORUM_DEPTH_RANGE, equalize=True)
    if metric:
        return depth.clamp(min=1e-3)
    near, far = DISCO_DEPTH_RANGE
    flat = (depth.amax(dim=(1, 2, 3), keepdim=True) - depth.amin(dim=(1, 2, 3), keepdim=True)) <= 0
    mapped = normalize_depth(depth, near, far)
    return torch.where(flat, torch.ones_like(mapped), mapped)


class BlendedDepth:
    """Weighted average of several estimators' depth maps (see :func:`blend_depth`)."""

    def __init__(self, parts: Sequence[tuple[DepthEstimator, float]], normalize: bool = True) -> None:
        if not parts:
            raise DepthError("blend_depth needs at least one (estimator, weight) pair")
        weights = [float(w) for _, w in parts]
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise DepthError(f"blend_depth weights must be >= 0 with a positive sum, got {weights}")
        total = sum(weights)
        self.parts = [(est, w / total) for (est, _), w in zip(parts, weights, strict=True) if w > 0]
        self.normalize = normalize
        self.name = "blend(" + " + ".join(f"{w:g}*{est.name}" for est, w in self.parts) + ")"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for estimator, weight in self.parts:
            depth = estimator(image)
            if self.normalize:
                depth = normalize_depth(depth, *DEFORUM_DEPTH_RANGE)
            out = depth * weight if out is None else out + depth * weight
        assert out is not None
        return out


def blend_depth(parts: Sequence[tuple[DepthEstimator, float]], *, normalize: bool = True) -> BlendedDepth:
    """An estimator returning ``sum(w_i * depth_i) / sum(w_i)`` (Disco/Deforum's ``midas_weight`` blend).

    Args:
        parts: ``[(estimator, weight), ...]``; weights ``>= 0`` with a positive sum.
        normalize: min/max-normalise each depth map into :data:`DEFORUM_DEPTH_RANGE` before blending, so that
            relative and metric estimators mix on one scale (Disco/Deforum blend raw values instead).
    """
    return BlendedDepth(parts, normalize=normalize)


def save_depth_png(
    depth: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """Write one depth map as a 16-bit grayscale PNG, atomically (:func:`~discolib.io.files.atomic_path`).

    Args:
        depth: ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` depth (near = dark, far = bright).
        path: target ``.png`` file; its folder must exist.
        vmin, vmax: the depths written as 0 and 65535 (default: this map's min and max).

    Returns:
        The path written.
    """
    from PIL import Image

    d = depth.detach()
    while d.ndim > 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise DepthError(f"save_depth_png takes one depth map (H, W) or (1, 1, H, W), got {tuple(depth.shape)}")
    d = d.to(device="cpu", dtype=torch.float64)
    lo = float(d.min()) if vmin is None else float(vmin)
    hi = float(d.max()) if vmax is None else float(vmax)
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    pixels = ((d - lo) * scale).clamp(0, 65535).round().numpy().astype(np.uint16)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    return path
