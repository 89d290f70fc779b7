"""CLIP models for guidance: model ids, loading through open_clip, and an ensemble with cached text.

Model ids (:meth:`ClipSpec.parse`):

* ``"ViT-B-32/openai"``: an open_clip architecture and a pretrained tag;
* ``"ViT-B-32/path/to/weights.bin"`` (or an absolute path after the first ``/``): a local weights
  file for that architecture;
* ``"ViT-B-32"``: the architecture with its default tag (``openai`` when open_clip has it);
* Disco's names ``"ViT-B/32"``, ``"ViT-B/16"``, ``"ViT-L/14"``, ``"ViT-L/14@336px"``, ``"RN50"``,
  ``"RN101"``, ``"RN50x4"``, ``"RN50x16"``, ``"RN50x64"`` (OpenAI weights) and Disco's setting names
  (``"ViTB32"``, ``"ViTB32_laion2b_e16"``, ``"RN50_cc12m"``, ...);
* ``"hf-hub:org/repo"``: an open_clip model published on the Hugging Face hub;
* ``"local-dir:/path/to/folder"``: an open_clip model saved in a local folder (``open_clip_config.json``, the
  weights ``open_clip_model.safetensors`` and, for a Hugging Face text tower, its tokenizer files), offline;
* multilingual models, whose text tower is a Hugging Face encoder with its own tokenizer (prompts in Chinese,
  Japanese, Arabic ... as well as English): ``"xlm-roberta-base-ViT-B-32"`` (laion5b_s13b_b90k),
  ``"xlm-roberta-large-ViT-H-14"`` (frozen_laion5b_s13b_b90k), ``"nllb-clip-base"`` / ``"nllb-clip-large"`` (v1),
  ``"nllb-clip-base-siglip"`` / ``"nllb-clip-large-siglip"`` (v1, mrl) and ``"mt5-base-ViT-B-32"`` / ``"mt5-xl-ViT-H-14"``
  (no published weights: give a weights file), each also with an explicit ``/tag``. They load like the others
  (``open_clip.create_model(name, pretrained=tag)``); the text tower's config and tokenizer come from the hub
  on first use;
* ``"tiny-vit"``, ``"tiny-vit-64"``, ``"tiny-rn"``: tiny random-weight models built offline under a
  fixed seed, for tests and CPU smoke runs (same open_clip ``CLIP`` class as the real ones).

OpenAI checkpoints were trained with QuickGELU; open_clip's plain configs use GELU, so when the
pretrained tag says ``quick_gelu`` we build the model with ``force_quick_gelu=True`` (otherwise the
weights load into the wrong activation and guidance quietly degrades).

Images given to :meth:`ClipMember.encode_image` are ``(N, 3, S, S)`` in [0, 1]; each member applies its
own normalisation (mean/std from the model's preprocess config, OpenAI's by default) and has its own
input size ``S``. Embeddings come back as float32 and unit-normalised.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discolib.errors import InputError, WeightsUnavailable, one_line
from discolib.io.inputs import expand_path
from discolib.models.state_dict import (
    PICKLE_SUFFIXES,
    pickled_globals,
    refused_by_weights_only,
    refused_weights_message,
)
from discolib.ops import seeded

__all__ = [
    "DISCO_ALIASES",
    "TINY_MODELS",
    "ClipEnsemble",
    "ClipMember",
    "ClipModelError",
    "ClipSpec",
    "ClipWeightsError",
    "load_clip",
]


class ClipModelError(InputError):
    """A CLIP model id that cannot be resolved to an architecture and weights."""


class ClipWeightsError(ClipModelError, WeightsUnavailable):
    """The weights named by a CLIP model id are not available (e.g. offline and not cached)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message, reason=reason or "weights not available")


#: Disco Diffusion names (notebook model names and setting names) -> (open_clip name, pretrained tag).
DISCO_ALIASES: dict[str, tuple[str, str]] = {
    "ViT-B/32": ("ViT-B-32", "openai"),
    "ViT-B/16": ("ViT-B-16", "openai"),
    "ViT-L/14": ("ViT-L-14", "openai"),
    "ViT-L/14@336px": ("ViT-L-14-336", "openai"),
    "RN50": ("RN50", "openai"),
    "RN101": ("RN101", "openai"),
    "RN50x4": ("RN50x4", "openai"),
    "RN50x16": ("RN50x16", "openai"),
    "RN50x64": ("RN50x64", "openai"),
    "ViTB32": ("ViT-B-32", "openai"),
    "ViTB16": ("ViT-B-16", "openai"),
    "ViTL14": ("ViT-L-14", "openai"),
    "ViTL14_336px": ("ViT-L-14-336", "openai"),
    "ViTB32_laion2b_e16": ("ViT-B-32", "laion2b_e16"),
    "ViTB32_laion400m_e31": ("ViT-B-32", "laion400m_e31"),
    "ViTB32_laion400m_32": ("ViT-B-32", "laion400m_e32"),  # Disco's spelling of e32
    "ViTB32quickgelu_laion400m_e31": ("ViT-B-32-quickgelu", "laion400m_e31"),
    "ViTB32quickgelu_laion400m_e32": ("ViT-B-32-quickgelu", "laion400m_e32"),
    "ViTB16_laion400m_e31": ("ViT-B-16", "laion400m_e31"),
    "ViTB16_laion400m_e32": ("ViT-B-16", "laion400m_e32"),
    "RN50_yffcc15m": ("RN50", "yfcc15m"),  # Disco's spelling of yfcc15m
    "RN50_cc12m": ("RN50", "cc12m"),
    "RN50_quickgelu_yfcc15m": ("RN50-quickgelu", "yfcc15m"),
    "RN50_quickgelu_cc12m": ("RN50-quickgelu", "cc12m"),
    "RN101_yfcc15m": ("RN101", "yfcc15m"),
    "RN101_quickgelu_yfcc15m": ("RN101-quickgelu", "yfcc15m"),
}

_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}

#: Tiny offline architectures: name -> (open_clip base config whose code path builds it, overrides).
#: The stock BPE tokenizer ships inside open_clip, so these tokenize real text offline.
TINY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-vit": (
        "ViT-B-32",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": _TINY_TEXT,
        },
    ),
    "tiny-vit-64": (
        "ViT-B-32",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": _TINY_TEXT,
        },
    ),
    "tiny-rn": (
        "RN50",
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
            "text_cfg": _TINY_TEXT,
        },
    ),
}

TINY_SEED = 0
_LOCAL_DIR = "local-dir:"  # open_clip's own schema for a model folder
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt")


def _close_names(name: str, candidates: Sequence[str], n: int = 5) -> list[str]:
    """Case-insensitive difflib suggestions."""
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def _known_names() -> list[str]:
    return [*open_clip.list_models(), *DISCO_ALIASES, *TINY_MODELS]


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or os.sep in value or "/" in value or value.endswith(_WEIGHT_SUFFIXES)


@dataclass(frozen=True)
class ClipSpec:
    """A resolved CLIP model id.

    Attributes:
        model_id: the id as written by the user.
        name: open_clip architecture name, ``"hf-hub:org/repo"``, ``"local-dir:/abs/path"`` or a tiny model name.
        pretrained: pretrained tag or local weights path; ``None`` for hub, local-dir and tiny models.
        kind: ``"open_clip"`` (built-in architecture), ``"hf-hub"``, ``"local-dir"`` or ``"tiny"``.
    """

    model_id: str
    name: str
    pretrained: str | None
    kind: Literal["open_clip", "hf-hub", "local-dir", "tiny"]

    @classmethod
    def parse(cls, model_id: str | ClipSpec) -> ClipSpec:
        """Resolve a model id (see the module docstring for the forms).

        Raises:
            ClipModelError: unknown architecture (the message lists close names), unknown pretrained
                tag, or a malformed id.
        """
        if isinstance(model_id, ClipSpec):
            return model_id
        if not isinstance(model_id, str) or not model_id.strip():
            raise ClipModelError(f"CLIP model id must be a non-empty string, got {model_id!r}")
        mid = model_id.strip()

        if mid.startswith("hf-hub:"):
            repo = mid[len("hf-hub:") :]
            if repo.count("/") != 1 or not all(repo.split("/")):
                raise ClipModelError(f"CLIP model id {mid!r}: expected 'hf-hub:org/repo'")
            return cls(mid, mid, None, "hf-hub")
        if mid.startswith(_LOCAL_DIR):
            raw = mid[len(_LOCAL_DIR) :].strip()
            if not raw:
                raise ClipModelError(f"CLIP model id {mid!r}: expected 'local-dir:/path/to/folder'")
            try:
                folder = expand_path(raw, setting=f"CLIP model {mid!r}").absolute()
            except InputError as err:
                raise ClipModelError(str(err)) from None
            return cls(mid, _LOCAL_DIR + str(folder), None, "local-dir")
        if mid in DISCO_ALIASES:
            name, tag = DISCO_ALIASES[mid]
            return cls(mid, name, tag, "open_clip")
        if mid in TINY_MODELS:
            return cls(mid, mid, None, "tiny")

        name, pretrained = mid, None
        # A Disco alias with a slash ("ViT-B/32") may itself be followed by "/tag" or "/path".
        for alias in sorted((a for a in DISCO_ALIASES if "/" in a), key=len, reverse=True):
            if mid.startswith(alias + "/"):
                name, pretrained = DISCO_ALIASES[alias][0], mid[len(alias) + 1 :]
                break
        else:
            if "/" in mid:
                name, pretrained = mid.split("/", 1)
        if pretrained is not None and not pretrained:
            raise ClipModelError(f"CLIP model id {mid!r}: nothing after '/' (expected a tag or a weights path)")

        if name in TINY_MODELS:
            raise ClipModelError(f"CLIP model id {mid!r}: tiny models have no pretrained weights; use {name!r}")
        if name not in open_clip.list_models():
            close = _close_names(name, _known_names())
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise ClipModelError(
                f"Unknown CLIP model {name!r} in {mid!r}.{hint} Use an open_clip name "
                "(open_clip.list_models()), a Disco name such as 'ViT-B/32', 'hf-hub:org/repo' or a tiny model "
                f"({', '.join(TINY_MODELS)})."
            )
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained is None:
            if not tags:
                raise ClipModelError(
                    f"CLIP model {name!r} has no known pretrained tag; write '{name}/<tag>' or "
                    f"'{name}/path/to/weights.bin'"
                )
            pretrained = "openai" if "openai" in tags else tags[0]
        elif pretrained not in tags and not _looks_like_path(pretrained):
            close = _close_names(pretrained, tags, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ClipModelError(
                f"Unknown pretrained tag {pretrained!r} for CLIP model {name!r}.{hint} Known tags: {', '.join(tags)}; "
                f"or give a weights file: '{name}/path/to/weights.bin'."
            )
        return cls(mid, name, pretrained, "open_clip")

    @property
    def is_local_file(self) -> bool:
        """True when ``pretrained`` names a weights file rather than a tag."""
        return (
            self.kind == "open_clip"
            and self.pretrained is not None
            and self.pretrained not in open_clip.list_pretrained_tags_by_model(self.name)
        )

    @property
    def quick_gelu(self) -> bool:
        """Whether the weights expect QuickGELU while the plain open_clip config does not."""
        if self.kind != "open_clip" or self.pretrained is None or self.is_local_file:
            return False
        tag_cfg = open_clip.get_pretrained_cfg(self.name, self.pretrained) or {}
        model_cfg = open_clip.get_model_config(self.name) or {}
        return bool(tag_cfg.get("quick_gelu", False)) and not bool(model_cfg.get("quick_gelu", False))

    def describe_weights(self) -> str:
        """Where these weights come from, for error messages."""
        if self.kind == "hf-hub":
            return f"the Hugging Face hub repo {self.name[len('hf-hub:') :]!r}"
        if self.kind == "local-dir":
            return f"the local open_clip folder {self.name[len(_LOCAL_DIR) :]!r}"
        if self.is_local_file:
            return f"the local file {self.pretrained!r}"
        cfg = open_clip.get_pretrained_cfg(self.name, self.pretrained or "") or {}
        where = []
        if cfg.get("hf_hub"):
            where.append(f"hub repo {cfg['hf_hub'].rstrip('/')!r}")
        if cfg.get("url"):
            where.append(f"URL {cfg['url']}")
        src = f" ({'; '.join(where)})" if where else ""
        return f"open_clip weights {self.name!r} pretrained={self.pretrained!r}{src}"


def _weights_help(spec: ClipSpec, cache_dir: str | None) -> str:
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    name = spec.name if spec.kind == "open_clip" else "<architecture>"
    return (
        f"Could not load {spec.describe_weights()} for CLIP model {spec.model_id!r}. "
        f"Without network access the weights must already be on disk. Either (a) run once with network so "
        f"open_clip caches them (cache: {cache}; set cache_dir= or HF_HOME to use another folder), or "
        f"(b) download the weights file yourself and give its path in the model id: "
        f"'{name}/path/to/open_clip_pytorch_model.bin'."
    )


_CREATE_TAKES_WEIGHTS_ONLY = "weights_only" in inspect.signature(open_clip.create_model).parameters


def _check_local_weights(spec: ClipSpec) -> str:
    """The local weights file of ``spec``, ``~`` expanded, checked to be a regular file of plain weights.

    A pickle-format file is disassembled (never unpickled) before open_clip builds the model, so a file holding
    pickled code is refused at once, with the objects it would have called named.
    """
    raw = spec.pretrained or ""
    try:
        path = expand_path(raw, setting=f"CLIP model {spec.model_id!r}")
    except InputError as err:
        raise ClipModelError(str(err)) from None
    if not path.exists():
        raise ClipWeightsError(
            f"CLIP weights file {raw!r} (from {spec.model_id!r}) does not exist. " + _weights_help(spec, None),
            reason="weights file not found",
        )
    if not path.is_file():
        raise ClipModelError(
            f"CLIP model {spec.model_id!r}: {path} is not a regular file (a folder, device or FIFO); "
            "expected a weights file (.safetensors, .bin, .pt)"
        )
    if path.name.lower().endswith(PICKLE_SUFFIXES) and pickled_globals(path):
        raise ClipModelError(f"CLIP model {spec.model_id!r}: " + refused_weights_message(path))
    return str(path)


#: The start of the record open_clip's factory logs (``logging.warning``, on the root logger) for a model built
#: without weights.
_NO_WEIGHTS_RECORD = "No pretrained weights loaded for model"


def _drop_no_weights_record(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NO_WEIGHTS_RECORD)


@contextlib.contextmanager
def _random_weights_on_purpose() -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded" warning for the duration of a create_model call that
    builds random weights on purpose (tiny models, ``models.random_weights``): there it is no news, and on the tiny
    presets it printed ``WARNING:root:...`` into every notebook. Only that record is dropped; a real load keeps
    every warning (it never logs this one: missing weights raise instead)."""
    root = logging.getLogger()
    root.addFilter(_drop_no_weights_record)
    try:
        yield
    finally:
        root.removeFilter(_drop_no_weights_record)


def _build_tiny(name: str) -> nn.Module:
    base, overrides = TINY_MODELS[name]
    # Seeded: the tiny weights are the same on every call without disturbing the caller's RNG.
    with seeded(TINY_SEED), _random_weights_on_purpose():
        return open_clip.create_model(base, pretrained=None, **overrides)


def _image_size(model: nn.Module) -> int:
    visual = getattr(model, "visual", None)
    size = getattr(visual, "image_size", None)
    if size is None:
        size = open_clip.get_model_preprocess_cfg(model).get("size", 224)
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ClipModelError(f"non-square CLIP input size {tuple(size)} is not supported")
        size = size[0]
    return int(size)


class ClipMember:
    """One CLIP model of an ensemble: its tokenizer, input size, normalisation and a text cache.

    Args:
        spec: the resolved model id.
        model: an open_clip model (eval mode, frozen).
        tokenizer: open_clip tokenizer for it.
        cache_size: how many prompt embeddings to keep (least recently used are dropped).
    """

    def __init__(
        self, spec: ClipSpec, model: nn.Module, tokenizer: Callable[[list[str]], Tensor], cache_size: int = 512
    ) -> None:
        self.spec = spec
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = _image_size(model)
        pp = open_clip.get_model_preprocess_cfg(model)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = pp.get("std", open_clip.OPENAI_DATASET_STD)
        self.mean = torch.tensor(mean, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device, dtype=torch.float32).view(1, 3, 1, 1)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    def __repr__(self) -> str:
        return f"ClipMember({self.spec.model_id!r}, image_size={self.image_size}, device={self.device})"

    @property
    def embed_dim(self) -> int:
        """Embedding width D."""
        return int(self.encode_text([""]).shape[-1])

    def clear_cache(self) -> None:
        """Forget cached prompt embeddings."""
        self._cache.clear()

    def encode_text(self, prompts: Sequence[str]) -> Tensor:
        """Unit-norm text embeddings ``(P, D)`` float32, computed once per distinct prompt.

        Prompts must be plain text (a Disco ``"text:weight"`` prompt split beforehand: Disco tokenized
        the ``:weight`` suffix along with the text). Longer prompts are truncated to the context length.
        """
        if isinstance(prompts, str):
            raise TypeError("encode_text takes a list of prompts, not a single string")
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            with torch.no_grad():
                emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            for text, e in zip(missing, emb, strict=True):
                self._cache[text] = e
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if not out:
            return torch.empty(0, 0, device=self.device)
        return torch.stack(out)

    def normalize(self, images: Tensor) -> Tensor:
        """[0, 1] images ``(N, 3, S, S)`` -> CLIP input (mean/std normalised, model dtype)."""
        return ((images.float() - self.mean) / self.std).to(self.dtype)

    def encode_image(self, images: Tensor, *, resize: bool = False) -> Tensor:
        """Unit-norm image embeddings ``(N, D)`` float32 of ``(N, 3, S, S)`` images in [0, 1].

        Differentiable w.r.t. ``images``. ``S`` must be :attr:`image_size` unless ``resize=True``
        (antialiased bicubic resize of the whole image; no cropping).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (N, 3, S, S), got {tuple(images.shape)}")
        s = self.image_size
        if images.shape[-2:] != (s, s):
            if not resize:
                raise ValueError(
                    f"CLIP model {self.spec.model_id!r} takes {s}x{s} images, got "
                    f"{images.shape[-2]}x{images.shape[-1]} (pass resize=True to resize)"
                )
            images = F.interpolate(images.float(), size=(s, s), mode="bicubic", align_corners=False, antialias=True)
        emb = self.model.encode_image(self.normalize(images.to(self.device)))
        return F.normalize(emb.float(), dim=-1)


def _create(spec: ClipSpec, weights: str | None, load: bool, cache_dir: str | None, safe: dict[str, Any]) -> nn.Module:
    """open_clip's model for ``spec``: the hub repo's or local folder's (with or without its weights) or the
    architecture's. Random weights never fetch a Hugging Face text tower's own pretrained weights either."""
    if spec.kind in ("hf-hub", "local-dir"):
        return open_clip.create_model(spec.name, cache_dir=cache_dir, load_weights=load, pretrained_text=load, **safe)
    return open_clip.create_model(
        spec.name, pretrained=weights, force_quick_gelu=spec.quick_gelu, cache_dir=cache_dir, pretrained_text=load,
        **safe,
    )


def _check_local_dir(spec: ClipSpec) -> None:
    """A ``local-dir:`` folder must exist, and a pickle-format weights file in it must hold no pickled code."""
    folder = Path(spec.name[len(_LOCAL_DIR) :])
    if not folder.is_dir():
        raise ClipModelError(
            f"CLIP model {spec.model_id!r}: {folder} is not a folder (expected an open_clip model folder with "
            "open_clip_config.json and open_clip_model.safetensors)"
        )
    for path in sorted(folder.iterdir()):
        if path.name.lower().endswith(PICKLE_SUFFIXES) and path.is_file() and pickled_globals(path):
            raise ClipModelError(f"CLIP model {spec.model_id!r}: " + refused_weights_message(path))


def load_clip(
    spec: ClipSpec | str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    pretrained: bool | None = True,
    *,
    cache_dir: str | None = None,
) -> ClipMember:
    """Build a CLIP model through open_clip.

    Args:
        spec: a :class:`ClipSpec` or a model id string.
        device, dtype: where and in which precision the model runs.
        pretrained: ``True`` loads the weights the spec names; ``None``/``False`` builds the same
            architecture with random weights (no download). Tiny models are always random.
        cache_dir: open_clip / Hugging Face cache folder for weights (default: the HF cache).

    Raises:
        ClipModelError: bad id. ClipWeightsError: weights not available (message says which and how
            to provide them).
    """
    spec = ClipSpec.parse(spec)
    if spec.kind == "tiny":
        model = _build_tiny(spec.name)
        tokenizer = open_clip.get_tokenizer(TINY_MODELS[spec.name][0])
    else:
        load = bool(pretrained)
        weights = spec.pretrained if load else None
        if spec.kind == "open_clip" and load and spec.is_local_file:
            weights = _check_local_weights(spec)
        if spec.kind == "local-dir":
            _check_local_dir(spec)
        # Explicit, where open_clip takes it: its default is already True, but a weights file must never unpickle
        # code whatever a future default (or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) says.
        safe = {"weights_only": True} if _CREATE_TAKES_WEIGHTS_ONLY else {}
        quiet = contextlib.nullcontext() if load else _random_weights_on_purpose()
        try:
            with quiet:
                model = _create(spec, weights, load, cache_dir, safe)
            tokenizer = open_clip.get_tokenizer(spec.name, cache_dir=cache_dir)
        except Exception as e:
            if refused_by_weights_only(e):
                where = weights if spec.is_local_file else spec.describe_weights()
                raise ClipModelError(
                    f"CLIP model {spec.model_id!r}: " + refused_weights_message(where or spec.model_id, e)
                ) from None
            if not isinstance(e, (RuntimeError, OSError, ValueError, EOFError)):
                raise
            raise ClipWeightsError(
                f"{_weights_help(spec, cache_dir)} (open_clip said: {one_line(e, 300)})", reason=one_line(e, 200)
            ) from e
    model = model.to(device=device, dtype=dtype)
    return ClipMember(spec, model, tokenizer)


class ClipEnsemble:
    """Several CLIP models used together for guidance; each keeps its own input size and normalisation.

    Args:
        models: model ids or specs (see :class:`ClipSpec`), or already built :class:`ClipMember` s.
        device, dtype: where the models run.
        pretrained: passed to :func:`load_clip` (``None`` = random weights, for offline tests).
        cache_dir: weights cache folder.
    """

    def __init__(
        self,
        models: Sequence[ClipSpec | str | ClipMember],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        pretrained: bool | None = True,
        cache_dir: str | None = None,
    ) -> None:
        if isinstance(models, (str, ClipSpec)):
            models = [models]
        if not models:
            raise ClipModelError("clip_models must name at least one CLIP model")
        self.members: list[ClipMember] = [
            m if isinstance(m, ClipMember) else load_clip(m, device, dtype, pretrained, cache_dir=cache_dir)
            for m in models
        ]

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[ClipMember]:
        return iter(self.members)

    def __getitem__(self, i: int) -> ClipMember:
        return self.members[i]

    def __repr__(self) -> str:
        return f"ClipEnsemble({[m.spec.model_id for m in self.members]})"

    @property
    def image_sizes(self) -> list[int]:
        """Input size of each member."""
        return [m.image_size for m in self.members]

    def clear_cache(self) -> None:
        """Forget every member's cached prompt embeddings."""
        for m in self.members:
            m.clear_cache()

    def encode_text(self, prompts: Sequence[str]) -> list[Tensor]:
        """Per member, unit-norm text embeddings ``(P, D_m)`` (cached per member and prompt)."""
        return [m.encode_text(prompts) for m in self.members]

    def encode_image(self, images: Tensor) -> list[Tensor]:
        """Per member, unit-norm embeddings ``(N, D_m)`` of ``(N, 3, H, W)`` images in [0, 1], resized to fit."""
        return [m.encode_image(images, resize=True) for m in self.members]

