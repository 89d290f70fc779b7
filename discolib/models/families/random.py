"""Full-size SDXL, SD 3.5 and Flux.1 models with fixed random weights, for GPU speed and memory runs without
network or weights (``models.random_weights``).

Each preset of :data:`~discolib.models.archs.FAMILY_ARCHS` is built from the published configs of every component
(``discolib/data/archs/<preset>.json``), so the denoiser, VAE and text encoders have the real shapes, cost and
memory; only the weights are random (and the images noise). Every module is created directly on the target device
in the target dtype (PyTorch's default-device and default-dtype switches around its constructor): a 12B Flux
transformer never exists as float32 on the CPU first, and its initialisation runs where it lives. Each module is
seeded anew (seed 0), so the same preset gives the same weights on every build, whatever was built before it.

The tokenizers are tiny ones made in-process (the shipped CLIP tokenizer, :func:`~discolib.models.tiny_text.
write_tiny_t5_tokenizer` for T5) whose ids are a subset of the real vocabularies: the text encoders keep their real
vocabulary sizes, and a prompt's token count (77 for CLIP, the pipeline's T5 length) is the real one. The family's
diffusers pipeline is then assembled from these modules, as loading the real weights would give it.

``shrink=True`` replaces widths and depths with toy ones (:data:`SHRINK`) for CPU tests; the full-size configs are
checked on the ``meta`` device, which allocates nothing.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Iterator
from typing import Any

import diffusers
import torch
import transformers
from diffusers.models.modeling_utils import no_init_weights

from discolib.errors import InputError
from discolib.models.archs import FAMILY_ARCHS
from discolib.models.families import FamilyError, get_family
from discolib.models.latent import LatentComponents, LatentModelError, components_from_pipe
from discolib.models.tiny_text import tiny_clip_tokenizer, write_tiny_t5_tokenizer

__all__ = ["SHRINK", "arch_of", "build_component", "random_family_components", "random_tokenizers"]

_CLIP_TOY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
             "projection_dim": 32}
_T5_TOY = {"d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 4,
           "relative_attention_num_buckets": 8}
_VAE_TOY = {"block_out_channels": [8, 16, 16, 16], "layers_per_block": 1, "norm_num_groups": 8}
_PREVIEW_TOY = {"encoder_block_out_channels": [8, 8, 8, 8], "decoder_block_out_channels": [8, 8, 8, 8],
                "num_encoder_blocks": [1, 1, 1, 1], "num_decoder_blocks": [1, 1, 1, 1]}

#: Test-only overrides per family: component -> config keys that replace the published ones (toy widths and
#: depths, and the dimensions that tie components together kept consistent). ``"preview_vae"`` is the
#: ``AutoencoderTiny``'s. Everything not named keeps the real value (block types, activations, vocabulary sizes).
SHRINK: dict[str, dict[str, dict[str, Any]]] = {
    "sdxl": {
        "unet": {
            "block_out_channels": [32, 64, 64], "layers_per_block": 1, "transformer_layers_per_block": [1, 1, 1],
            "attention_head_dim": [2, 4, 4], "addition_time_embed_dim": 8, "sample_size": 8,
            # The two encoders' widths concatenated (16 + 32), and 6 size/crop ids x 8 + the pooled width 32.
            "cross_attention_dim": 48, "projection_class_embeddings_input_dim": 6 * 8 + 32,
        },
        "vae": _VAE_TOY,
        "text_encoder": {**_CLIP_TOY, "hidden_size": 16, "projection_dim": 16},
        "text_encoder_2": _CLIP_TOY,
        "preview_vae": _PREVIEW_TOY,
    },
    "sd3": {
        "transformer": {
            "num_layers": 2, "dual_attention_layers": [0], "attention_head_dim": 8, "num_attention_heads": 4,
            "caption_projection_dim": 32, "joint_attention_dim": 64, "pooled_projection_dim": 32 + 16,
            "pos_embed_max_size": 64, "sample_size": 32,
        },
        "vae": _VAE_TOY,
        # Different widths for the two CLIPs, as the real 768 and 1280: their concatenation (48) is padded to T5's.
        "text_encoder": _CLIP_TOY,
        "text_encoder_2": {**_CLIP_TOY, "hidden_size": 16, "projection_dim": 16},
        "text_encoder_3": {**_T5_TOY, "d_model": 64},
        "preview_vae": _PREVIEW_TOY,
    },
    "flux": {
        "transformer": {
            "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
            "joint_attention_dim": 32, "pooled_projection_dim": 32, "axes_dims_rope": [4, 4, 8],
        },
        "vae": _VAE_TOY,
        "text_encoder": _CLIP_TOY,
        "text_encoder_2": _T5_TOY,
        "preview_vae": _PREVIEW_TOY,
    },
}


def arch_of(preset: str, *, shrink: bool = False) -> dict[str, Any]:
    """A copy of ``FAMILY_ARCHS[preset]``; with ``shrink``, the family's :data:`SHRINK` overrides applied.

    Raises:
        InputError: ``preset`` has no random-weight architecture.
    """
    if preset not in FAMILY_ARCHS:
        raise InputError(
            f"models.latent_model: no random-weight architecture for {preset!r}; known: {', '.join(FAMILY_ARCHS)}"
        )
    arch = copy.deepcopy(FAMILY_ARCHS[preset])
    if shrink:
        for name, keys in SHRINK[arch["family"]].items():
            target = arch["preview_vae"] if name == "preview_vae" else arch["components"][name]["config"]
            target.update(copy.deepcopy(keys))
    return arch


@contextlib.contextmanager
def _building(device: torch.device, dtype: torch.dtype, seed: int) -> Iterator[None]:
    """Modules constructed in the block live on ``device`` in ``dtype`` from the start and are initialised there,
    from RNGs seeded to ``seed``; the caller's RNG states and default dtype are restored afterwards.

    The default dtype is process-wide: a model built meanwhile in another thread would get ``dtype`` too (models
    are built one at a time by the loaders).
    """
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    before = torch.get_default_dtype()
    with torch.random.fork_rng(devices=cuda), torch.device(device):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(before)


def _model_class(name: str) -> Any:
    cls = getattr(diffusers, name, None) or getattr(transformers, name, None)
    if cls is None:
        raise InputError(f"random-weight architecture: unknown model class {name!r}")
    return cls


def build_component(
    spec: dict[str, Any], *, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> torch.nn.Module:
    """One model from ``{"class": ..., "config": ...}`` (a diffusers or transformers class and its ``config.json``),
    built on ``device`` in ``dtype`` under ``seed``, in eval mode without gradients.

    On ``torch.device("meta")`` nothing is allocated: parameter counts and shapes of the full-size models.
    """
    cls = _model_class(spec["class"])
    config = dict(spec["config"])
    # On meta there is nothing to initialise: torch.nn.init's functions skipped (diffusers' switch; transformers'
    # own would also skip its init_weights, which ties T5's input embeddings to the shared ones).
    skip_init = no_init_weights() if device.type == "meta" else contextlib.nullcontext()
    with _building(device, dtype, seed), skip_init:
        if issubclass(cls, transformers.PreTrainedModel):
            model = cls(cls.config_class(**config))
        else:
            model = cls.from_config(config)
    if not isinstance(model, transformers.PreTrainedModel):
        # diffusers' from_pretrained casts the whole model to torch_dtype: tensors a constructor made in float32 on
        # purpose (SD3's position table) too. In place, as ModelMixin.to would (it warns about keep-in-fp32 lists).
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point() and t.dtype != dtype:
                t.data = t.data.to(dtype)
    keep = _fp32_modules(model, dtype)
    if keep:
        # As from_pretrained in half precision: the modules the class keeps in float32 (T5's feed-forward outputs
        # overflow in fp16); the model casts around them itself.
        for name, module in model.named_modules():
            if name and name.rsplit(".", 1)[-1] in keep:
                module.to(torch.float32)
    return model.eval().requires_grad_(False)


def _fp32_modules(model: torch.nn.Module, dtype: torch.dtype) -> set[str]:
    """Names of the submodules a class keeps in float32 when loaded in ``dtype`` (transformers' and diffusers'
    ``_keep_in_fp32_modules`` in float16, ``_keep_in_fp32_modules_strict`` in float16 and bfloat16)."""
    keep: set[str] = set()
    if dtype == torch.float16:
        keep |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        keep |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    return keep


def random_tokenizers(arch: dict[str, Any], folder: str) -> dict[str, Any]:
    """The tiny tokenizers of ``arch["tokenizers"]``, at the real ones' ``model_max_length`` (T5 ones are written
    into ``folder`` first; the loaded tokenizers no longer need it)."""
    out: dict[str, Any] = {}
    for name, spec in arch["tokenizers"].items():
        length = int(spec["model_max_length"])
        if spec["kind"] == "clip":
            out[name] = tiny_clip_tokenizer(model_max_length=length)
        elif spec["kind"] == "t5":
            sub = f"{folder}/{name}"
            # The generic fast class, as tiny_text says: T5TokenizerFast would rebuild it without byte fallback.
            out[name] = transformers.AutoTokenizer.from_pretrained(str(write_tiny_t5_tokenizer(sub, model_max_length=length)))
        else:
            raise InputError(f"random-weight architecture: unknown tokenizer kind {spec['kind']!r} for {name}")
    return out


def _tie_to_tokenizer(config: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """The text encoder's special-token ids set to the tiny tokenizer's (whose ids fit the real vocabulary)."""
    if len(tokenizer) > int(config["vocab_size"]):
        raise InputError(f"tiny tokenizer has {len(tokenizer)} ids, more than the text encoder's {config['vocab_size']}")
    out = dict(config)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, key, None)
        if value is not None:
            out[key] = int(value)
    if "decoder_start_token_id" in out and tokenizer.pad_token_id is not None:
        out["decoder_start_token_id"] = int(tokenizer.pad_token_id)
    return out


def random_family_components(
    preset: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    fast_vae: bool,
    t5: bool = True,
    offload_text_encoders: bool = False,
    shrink: bool = False,
) -> LatentComponents:
    """``LatentComponents`` of ``preset`` (a key of :data:`~discolib.models.archs.FAMILY_ARCHS`) with fixed random
    weights: every component of the real model built on ``device`` in ``dtype``, and the family's diffusers
    pipeline assembled from them (``comps.pipe``).

    Args:
        fast_vae: add a TAESD-shaped ``AutoencoderTiny`` preview VAE (the family's latent channels).
        t5: build the T5 text encoder where it is optional (SD 3.5); Flux cannot go without.
        offload_text_encoders: build the text encoders on the CPU (where the loader keeps them with this option).
        shrink: toy widths and depths (:data:`SHRINK`), for tests.

    Raises:
        InputError: unknown preset; ``t5`` off for a family that needs it (``models.text_encoder_t5``).
    """
    device = torch.device(device)
    arch = arch_of(preset, shrink=shrink)
    fam = get_family(arch["family"])
    try:
        left_out = {k for k, v in fam.pipeline_kwargs(t5=t5).items() if v is None}
    except FamilyError as err:
        raise LatentModelError(f"models.text_encoder_t5: {err}") from None
    with tempfile.TemporaryDirectory(prefix="discolib-random-tok-") as tmp:
        tokenizers = random_tokenizers(arch, tmp)
    tokenizers = {k: None if k in left_out else v for k, v in tokenizers.items()}
    modules: dict[str, Any] = {}
    for name, spec in arch["components"].items():
        if name in left_out:
            modules[name] = None
            continue
        is_text = name in fam.text_encoders
        if is_text:
            tok = tokenizers[name.replace("text_encoder", "tokenizer")]
            spec = {**spec, "config": _tie_to_tokenizer(spec["config"], tok)}
        where = torch.device("cpu") if is_text and offload_text_encoders else device
        modules[name] = build_component(spec, device=where, dtype=dtype)
    scheduler_cfg = dict(arch["scheduler"])
    scheduler = _model_class(scheduler_cfg["_class_name"]).from_config(scheduler_cfg)
    pipe_spec = arch["pipeline"]
    pipe = getattr(diffusers, pipe_spec["class"])(
        **modules, **tokenizers, scheduler=scheduler, **pipe_spec.get("kwargs", {})
    )
    preview = None
    if fast_vae:
        preview = build_component(
            {"class": "AutoencoderTiny", "config": arch["preview_vae"]}, device=device, dtype=dtype
        )
    comps = components_from_pipe(pipe, fam, f"{preset} (random weights)")
    comps.preview_vae = preview
    return comps
