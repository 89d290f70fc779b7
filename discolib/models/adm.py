"""OpenAI guided-diffusion ("ADM") UNet checkpoints -> diffusers ``UNet2DModel``.

Disco Diffusion's main models (``512x512_diffusion_uncond_finetune_008100.pt``, ``256x256_diffusion_uncond.pt``, the
portrait model and the community 256 models) are state dicts of guided-diffusion's ``UNetModel``. This module maps
them, key by key, onto diffusers' ``UNet2DModel`` so that the rest of discolib only ever sees diffusers models.

The mapping is exact (numerical parity in float32, checked against reference outputs of the original code):

- ``ResBlock`` -> ``ResnetBlock2D`` (``use_scale_shift_norm`` -> ``resnet_time_scale_shift="scale_shift"``, the
  ``resblock_updown`` resampling blocks -> ``downsample_type/upsample_type="resnet"``).
- ``AttentionBlock`` -> ``Attention``: the fused 1x1 ``qkv`` conv is split into ``to_q/to_k/to_v``. guided-diffusion's
  default ``QKVAttentionLegacy`` lays the 3C output channels out head by head, ``[h0: q k v, h1: q k v, ...]``, each
  part ``C / heads`` wide; ``QKVAttention`` (``use_new_attention_order``) lays them out as ``[q (all heads), k, v]``.
  Both scale q and k by ``ch ** -1/4`` each, i.e. the logits by ``ch ** -1/2``, which is what SDPA does.
- The timestep embedding is ``cat(cos(t f), sin(t f))`` with ``f_k = 10000 ** (-k / half)``, which is diffusers'
  ``Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)``.

Two details of ADM cannot be stated in ``UNet2DModel``'s config: the sinusoidal embedding is ``num_channels`` wide
while ``UNet2DModel`` ties it to ``block_out_channels[0]`` (different when the first channel multiplier is not 1,
e.g. Disco's 512 model with its ``0.5``), and a fixed head *count* (``num_heads`` with ``num_head_channels=-1``,
as in the portrait model) gives a different head *width* per level while ``UNet2DModel`` has one
``attention_head_dim``. For those checkpoints :func:`adm_to_diffusers` returns :class:`AdmUNet2DModel`, a
``UNet2DModel`` subclass with three extra config entries, so ``save_pretrained``/``from_pretrained`` round-trip.
Everything else gets a plain ``UNet2DModel``.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps

from discolib.models.state_dict import CheckpointError

__all__ = [
    "AdmConfig",
    "AdmUNet2DModel",
    "adm_to_diffusers",
    "adm_unet_config",
    "infer_adm_config",
]

# guided-diffusion's default channel multipliers when ``channel_mult`` is "" (create_model in script_util.py).
_DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}

# Keys of guided-diffusion's flag dicts that describe the diffusion process or the runtime, not the network.
# AdmConfig.from_dict accepts and ignores them so that a Disco ``model_config`` dict can be passed as is.
_NON_MODEL_KEYS = frozenset(
    {
        "diffusion_steps",
        "noise_schedule",
        "rescale_timesteps",
        "timestep_respacing",
        "use_kl",
        "predict_xstart",
        "rescale_learned_sigmas",
        "sigma_small",
        "use_fp16",
        "use_checkpoint",
    }
)

_GROUPS = 32  # guided-diffusion's normalization() is GroupNorm32(32, channels)


def _parse_float_list(value: Any, name: str) -> tuple[float, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise ValueError(f"AdmConfig.{name}: expected a comma-separated string or a sequence, got {value!r}")
    out: list[float] = []
    for p in parts:
        try:
            out.append(float(p))
        except (TypeError, ValueError):
            raise ValueError(f"AdmConfig.{name}: {p!r} is not a number (in {value!r})") from None
    return tuple(out)


def _parse_int_list(value: Any, name: str) -> tuple[int, ...]:
    floats = _parse_float_list(value, name)
    if any(f != int(f) for f in floats):
        raise ValueError(f"AdmConfig.{name}: expected whole numbers, got {value!r}")
    return tuple(int(f) for f in floats)


def _fmt_mult(m: float) -> str:
    return f"{m:g}"


@dataclass(frozen=True)
class AdmConfig:
    """Hyper-parameters of a guided-diffusion ``UNetModel``, in guided-diffusion's own terms.

    Attributes:
        image_size: training resolution; only used to turn ``attention_resolutions`` into downsample factors.
        num_channels: ``model_channels``, the base width; level widths are ``int(mult * num_channels)``.
        num_res_blocks: residual blocks per level on the way down (the way up has one more).
        channel_mult: per-level width multipliers, e.g. ``(0.5, 1, 1, 2, 2, 4, 4)``; empty means guided-diffusion's
            default for ``image_size``. A string such as ``"0.5,1,1,2"`` is accepted by :meth:`from_dict`.
        attention_resolutions: feature-map sizes that get self-attention (``image_size // r`` is the downsample
            factor), e.g. ``(32, 16, 8)``.
        num_heads: attention heads when ``num_head_channels == -1``.
        num_head_channels: fixed head width (heads = channels // width), or -1 to use ``num_heads``.
        num_heads_upsample: heads in the decoder when ``num_head_channels == -1``; -1 means ``num_heads``.
        use_scale_shift_norm: FiLM-style ``norm(h) * (1 + scale) + shift`` time conditioning.
        resblock_updown: resample with residual blocks instead of strided conv / conv after nearest upsampling.
        learn_sigma: 2x output channels (eps and the variance interpolation ``v``).
        dropout: dropout inside the residual blocks.
        use_new_attention_order: ``QKVAttention`` (q, k, v blocks) instead of ``QKVAttentionLegacy`` (per head).
        class_cond: class-conditional (a ``label_emb`` table of ``num_classes`` rows).
        in_channels: image channels (3).
        num_classes: rows of the class embedding when ``class_cond``.
    """

    image_size: int
    num_channels: int
    num_res_blocks: int
    channel_mult: tuple[float, ...] = ()
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    learn_sigma: bool = False
    dropout: float = 0.0
    use_new_attention_order: bool = False
    class_cond: bool = False
    in_channels: int = 3
    num_classes: int = 1000
    # Filled in __post_init__ from channel_mult (resolved default) - not a constructor argument.
    _levels: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Normalise list-ish inputs so that AdmConfig(...) directly also accepts "0.5,1,2" / "16,8".
        mult = _parse_float_list(self.channel_mult, "channel_mult") if self.channel_mult != () else ()
        attn = _parse_int_list(self.attention_resolutions, "attention_resolutions")
        object.__setattr__(self, "attention_resolutions", attn)
        for name in ("image_size", "num_channels", "num_res_blocks", "in_channels", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AdmConfig.{name}: expected a positive integer, got {v!r}")
        if not mult:
            if self.image_size not in _DEFAULT_CHANNEL_MULT:
                raise ValueError(
                    f"AdmConfig.channel_mult: empty, and guided-diffusion has no default for image_size "
                    f"{self.image_size} (it has one for {sorted(_DEFAULT_CHANNEL_MULT)}); give it explicitly"
                )
            mult = _DEFAULT_CHANNEL_MULT[self.image_size]
        object.__setattr__(self, "channel_mult", tuple(float(m) for m in mult))
        levels = []
        for m in self.channel_mult:
            if not math.isfinite(m) or m <= 0 or int(m * self.num_channels) < 1:
                raise ValueError(f"AdmConfig.channel_mult: multipliers must be finite and > 0, got {self.channel_mult}")
            ch = int(m * self.num_channels)
            if ch % _GROUPS:
                raise ValueError(
                    f"AdmConfig.channel_mult/num_channels: level width int({_fmt_mult(m)} * {self.num_channels}) = "
                    f"{ch} is not a multiple of {_GROUPS} (guided-diffusion normalises with 32 groups)"
                )
            levels.append(ch)
        object.__setattr__(self, "_levels", tuple(levels))
        for r in self.attention_resolutions:
            if r < 1 or self.image_size % r:
                raise ValueError(
                    f"AdmConfig.attention_resolutions: {r} does not divide image_size {self.image_size} "
                    "(they are feature-map sizes, e.g. '32,16,8' for a 256 model)"
                )
        for name in ("num_heads",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AdmConfig.{name}: expected a positive integer, got {v!r}")
        for name in ("num_head_channels", "num_heads_upsample"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or (v != -1 and v < 1):
                raise ValueError(f"AdmConfig.{name}: expected -1 or a positive integer, got {v!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"AdmConfig.dropout: expected a value in [0, 1), got {self.dropout!r}")
        for name in ("use_scale_shift_norm", "resblock_updown", "learn_sigma", "use_new_attention_order", "class_cond"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AdmConfig.{name}: expected true/false, got {getattr(self, name)!r}")
        # Every attention block must split its channels evenly into heads.
        for where, ch in self._attention_channels():
            heads = self.heads_for(ch, upsample=where == "up")
            if ch % heads or (self.num_head_channels != -1 and ch % self.num_head_channels):
                raise ValueError(
                    f"AdmConfig: {where} attention with {ch} channels cannot be split into {heads} heads "
                    f"(num_heads={self.num_heads}, num_head_channels={self.num_head_channels}, "
                    f"num_heads_upsample={self.num_heads_upsample})"
                )

    # -- derived quantities -------------------------------------------------------------------------------------
    @property
    def level_channels(self) -> tuple[int, ...]:
        """Width of each level, ``int(mult * num_channels)``."""
        return self._levels

    @property
    def attention_ds(self) -> frozenset[int]:
        """Downsample factors (1, 2, 4, ...) that carry attention."""
        return frozenset(self.image_size // r for r in self.attention_resolutions)

    def level_has_attention(self, level: int) -> bool:
        """Whether level ``level`` (0 = full resolution) has attention after its residual blocks."""
        return 2**level in self.attention_ds

    @property
    def out_channels(self) -> int:
        """Output channels: 6 (eps and variance interpolation) when ``learn_sigma`` else 3."""
        return self.in_channels * (2 if self.learn_sigma else 1)

    def heads_for(self, channels: int, *, upsample: bool = False) -> int:
        """Number of heads guided-diffusion gives an attention block of ``channels`` channels."""
        if self.num_head_channels != -1:
            return max(channels // self.num_head_channels, 1)
        if upsample and self.num_heads_upsample != -1:
            return self.num_heads_upsample
        return self.num_heads

    def _attention_channels(self) -> list[tuple[str, int]]:
        out = [("down", ch) for lvl, ch in enumerate(self._levels) if self.level_has_attention(lvl)]
        out.append(("mid", self._levels[-1]))
        out += [("up", ch) for lvl, ch in enumerate(self._levels) if self.level_has_attention(lvl)]
        return out

    # -- (de)serialisation --------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdmConfig:
        """Build from a guided-diffusion style dict (Disco's ``model_config``, a fixture ``.json``).

        Diffusion/runtime flags (``diffusion_steps``, ``noise_schedule``, ``rescale_timesteps``, ``use_fp16``, ...)
        are accepted and ignored; any other unknown key is an error that suggests the closest known name.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"AdmConfig.from_dict: expected a mapping, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_")}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _NON_MODEL_KEYS:
                continue
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(sorted(known))})"
                raise ValueError(f"AdmConfig: unknown hyper-parameter {key!r}{hint}")
            kwargs[key] = value
        for required in ("image_size", "num_channels", "num_res_blocks"):
            if required not in kwargs:
                raise ValueError(f"AdmConfig: missing required hyper-parameter {required!r}")
        if "channel_mult" in kwargs:
            cm = kwargs["channel_mult"]
            kwargs["channel_mult"] = () if cm in ("", None) else _parse_float_list(cm, "channel_mult")
        if "attention_resolutions" in kwargs:
            ar = kwargs["attention_resolutions"]
            kwargs["attention_resolutions"] = () if ar in ("", None) else _parse_int_list(ar, "attention_resolutions")
        if "dropout" in kwargs:
            kwargs["dropout"] = float(kwargs["dropout"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Guided-diffusion style dict (``channel_mult`` and ``attention_resolutions`` as comma strings)."""
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["channel_mult"] = ",".join(_fmt_mult(m) for m in self.channel_mult)
        d["attention_resolutions"] = ",".join(str(r) for r in self.attention_resolutions)
        return d


# ---------------------------------------------------------------------------------------------------------------
# The diffusers side
# ---------------------------------------------------------------------------------------------------------------


class AdmUNet2DModel(UNet2DModel):
    """``UNet2DModel`` plus the ADM details its config cannot state (see the module docstring).

    Extra config entries (all ``None`` means "exactly ``UNet2DModel``"):

    - ``timestep_input_dim``: width of the sinusoidal timestep embedding (ADM's ``num_channels``) when it differs
      from ``block_out_channels[0]``.
    - ``num_attention_heads`` / ``num_attention_heads_upsample``: a fixed head count for every attention block of
      the encoder + middle / of the decoder, overriding ``attention_head_dim`` (ADM's ``num_heads`` with
      ``num_head_channels=-1``).

    Input/output as ``UNet2DModel``: ``sample`` (B, C, H, W), ``timestep`` (B,) on the 0-999 scale.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        center_input_sample: bool = False,
        time_embedding_type: str = "positional",
        time_embedding_dim: int | None = None,
        freq_shift: int = 0,
        flip_sin_to_cos: bool = True,
        down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        mid_block_type: str | None = "UNetMidBlock2D",
        up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        block_out_channels: tuple[int, ...] = (224, 448, 672, 896),
        layers_per_block: int = 2,
        mid_block_scale_factor: float = 1,
        downsample_padding: int = 1,
        downsample_type: str = "conv",
        upsample_type: str = "conv",
        dropout: float = 0.0,
        act_fn: str = "silu",
        attention_head_dim: int | None = 8,
        norm_num_groups: int = 32,
        attn_norm_num_groups: int | None = None,
        norm_eps: float = 1e-5,
        resnet_time_scale_shift: str = "default",
        add_attention: bool = True,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        num_train_timesteps: int | None = None,
        timestep_input_dim: int | None = None,
        num_attention_heads: int | None = None,
        num_attention_heads_upsample: int | None = None,
    ) -> None:
        super().__init__(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            center_input_sample=center_input_sample,
            time_embedding_type=time_embedding_type,
            time_embedding_dim=time_embedding_dim,
            freq_shift=freq_shift,
            flip_sin_to_cos=flip_sin_to_cos,
            down_block_types=down_block_types,
            mid_block_type=mid_block_type,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            mid_block_scale_factor=mid_block_scale_factor,
            downsample_padding=downsample_padding,
            downsample_type=downsample_type,
            upsample_type=upsample_type,
            dropout=dropout,
            act_fn=act_fn,
            attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups,
            attn_norm_num_groups=attn_norm_num_groups,
            norm_eps=norm_eps,
            resnet_time_scale_shift=resnet_time_scale_shift,
            add_attention=add_attention,
            class_embed_type=class_embed_type,
            num_class_embeds=num_class_embeds,
            num_train_timesteps=num_train_timesteps,
        )
        if timestep_input_dim is not None and timestep_input_dim != block_out_channels[0]:
            if time_embedding_type != "positional" or class_embed_type == "timestep":
                raise ValueError(
                    "AdmUNet2DModel.timestep_input_dim: only supported with time_embedding_type='positional' "
                    "and class_embed_type != 'timestep'"
                )
            time_embed_dim = time_embedding_dim or block_out_channels[0] * 4
            self.time_proj = Timesteps(timestep_input_dim, flip_sin_to_cos, freq_shift)
            self.time_embedding = TimestepEmbedding(timestep_input_dim, time_embed_dim)
        if num_attention_heads is not None:
            for part in (self.down_blocks, self.mid_block):
                for m in part.modules() if part is not None else ():
                    if isinstance(m, Attention):
                        _set_attention_heads(m, num_attention_heads)
        heads_up = num_attention_heads_upsample or num_attention_heads
        if heads_up is not None:
            for m in self.up_blocks.modules():
                if isinstance(m, Attention):
                    _set_attention_heads(m, heads_up)


def _set_attention_heads(attn: Attention, heads: int) -> None:
    """Re-split an ``Attention`` of fixed width into ``heads`` heads (weights keep their shapes)."""
    inner = attn.inner_dim
    if heads < 1 or inner % heads:
        raise ValueError(f"attention width {inner} cannot be split into {heads} heads")
    attn.heads = heads
    attn.sliceable_head_dim = heads
    attn.scale = (inner // heads) ** -0.5 if attn.scale_qk else 1.0


def adm_unet_config(config: AdmConfig) -> tuple[type[UNet2DModel], dict[str, Any]]:
    """The diffusers class and config that reproduce ``config`` exactly.

    Returns ``(UNet2DModel, kwargs)`` when the plain class can express it, else ``(AdmUNet2DModel, kwargs)``.
    """
    levels = config.level_channels
    n_levels = len(levels)
    down_types: list[str] = []
    up_types: list[str] = []
    for lvl in range(n_levels):
        if config.level_has_attention(lvl):
            down_types.append("AttnDownBlock2D")
        else:
            down_types.append("ResnetDownsampleBlock2D" if config.resblock_updown else "DownBlock2D")
    for lvl in reversed(range(n_levels)):
        if config.level_has_attention(lvl):
            up_types.append("AttnUpBlock2D")
        else:
            up_types.append("ResnetUpsampleBlock2D" if config.resblock_updown else "UpBlock2D")

    # Attention widths: a single attention_head_dim works when every attention block has the same head width.
    head_dims = {ch // config.heads_for(ch, upsample=where == "up") for where, ch in config._attention_channels()}
    extra: dict[str, Any] = {}
    if len(head_dims) == 1:
        attention_head_dim: int | None = head_dims.pop()
    else:
        attention_head_dim = None
        extra["num_attention_heads"] = config.num_heads
        if config.num_heads_upsample != -1:
            extra["num_attention_heads_upsample"] = config.num_heads_upsample
    if levels[0] != config.num_channels:
        extra["timestep_input_dim"] = config.num_channels

    kwargs: dict[str, Any] = {
        "sample_size": config.image_size,
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "time_embedding_dim": 4 * config.num_channels,
        # cat(cos, sin) with exponents -ln(10000) * k / half: ADM's timestep_embedding.
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "down_block_types": tuple(down_types),
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": tuple(up_types),
        "block_out_channels": tuple(levels),
        "layers_per_block": config.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "resnet" if config.resblock_updown else "conv",
        "upsample_type": "resnet" if config.resblock_updown else "conv",
        "dropout": float(config.dropout),
        "act_fn": "silu",
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": _GROUPS,
        # UNetMidBlock2D drops the attention's GroupNorm under scale_shift unless told the group count.
        "attn_norm_num_groups": _GROUPS,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if config.use_scale_shift_norm else "default",
        "add_attention": True,
        "class_embed_type": None,
        "num_class_embeds": config.num_classes if config.class_cond else None,
    }
    if extra:
        kwargs.update(extra)
        return AdmUNet2DModel, kwargs
    return UNet2DModel, kwargs


# ---------------------------------------------------------------------------------------------------------------
# Key mapping
# ---------------------------------------------------------------------------------------------------------------

_RES_PARTS = (
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
)


@dataclass(frozen=True)
class _Rule:
    """One source tensor -> one or three target tensors.

    kind: "copy" (same shape), "conv1d" (drop the trailing 1 of a Conv1d weight), "qkv" (split into q, k, v).
    """

    src: str
    dst: tuple[str, ...]
    kind: str = "copy"
    heads: int = 1
    legacy: bool = True


def _res_rules(src: str, dst: str, target: Mapping[str, torch.Tensor]) -> list[_Rule]:
    rules = []
    for s, d in _RES_PARTS:
        for p in ("weight", "bias"):
            if f"{dst}.{d}.{p}" in target or d != "conv_shortcut":
                rules.append(_Rule(f"{src}.{s}.{p}", (f"{dst}.{d}.{p}",)))
    return rules


def _attn_rules(src: str, dst: str, heads: int, legacy: bool) -> list[_Rule]:
    rules = []
    for p in ("weight", "bias"):
        rules.append(_Rule(f"{src}.norm.{p}", (f"{dst}.group_norm.{p}",)))
        rules.append(
            _Rule(
                f"{src}.qkv.{p}",
                (f"{dst}.to_q.{p}", f"{dst}.to_k.{p}", f"{dst}.to_v.{p}"),
                kind="qkv",
                heads=heads,
                legacy=legacy,
            )
        )
        rules.append(_Rule(f"{src}.proj_out.{p}", (f"{dst}.to_out.0.{p}",), kind="conv1d" if p == "weight" else "copy"))
    return rules


def _wb(src: str, dst: str) -> list[_Rule]:
    return [_Rule(f"{src}.{p}", (f"{dst}.{p}",)) for p in ("weight", "bias")]


def _mapping_rules(config: AdmConfig, target: Mapping[str, torch.Tensor]) -> list[_Rule]:
    """Every (checkpoint key -> diffusers key) rule for ``config``, in network order."""
    legacy = not config.use_new_attention_order
    levels = config.level_channels
    n = config.num_res_blocks
    rules: list[_Rule] = []
    rules += _wb("time_embed.0", "time_embedding.linear_1")
    rules += _wb("time_embed.2", "time_embedding.linear_2")
    if config.class_cond:
        rules.append(_Rule("label_emb.weight", ("class_embedding.weight",)))
    rules += _wb("input_blocks.0.0", "conv_in")

    k = 1
    for lvl, ch in enumerate(levels):
        attn = config.level_has_attention(lvl)
        for j in range(n):
            rules += _res_rules(f"input_blocks.{k}.0", f"down_blocks.{lvl}.resnets.{j}", target)
            if attn:
                rules += _attn_rules(
                    f"input_blocks.{k}.1", f"down_blocks.{lvl}.attentions.{j}", config.heads_for(ch), legacy
                )
            k += 1
        if lvl != len(levels) - 1:
            if config.resblock_updown:
                rules += _res_rules(f"input_blocks.{k}.0", f"down_blocks.{lvl}.downsamplers.0", target)
            else:
                rules += _wb(f"input_blocks.{k}.0.op", f"down_blocks.{lvl}.downsamplers.0.conv")
            k += 1

    rules += _res_rules("middle_block.0", "mid_block.resnets.0", target)
    rules += _attn_rules("middle_block.1", "mid_block.attentions.0", config.heads_for(levels[-1]), legacy)
    rules += _res_rules("middle_block.2", "mid_block.resnets.1", target)

    k = 0
    for i, lvl in enumerate(reversed(range(len(levels)))):
        ch = levels[lvl]
        attn = config.level_has_attention(lvl)
        for j in range(n + 1):
            rules += _res_rules(f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}", target)
            sub = 1
            if attn:
                rules += _attn_rules(
                    f"output_blocks.{k}.1",
                    f"up_blocks.{i}.attentions.{j}",
                    config.heads_for(ch, upsample=True),
                    legacy,
                )
                sub = 2
            if lvl and j == n:
                if config.resblock_updown:
                    rules += _res_rules(f"output_blocks.{k}.{sub}", f"up_blocks.{i}.upsamplers.0", target)
                else:
                    rules += _wb(f"output_blocks.{k}.{sub}.conv", f"up_blocks.{i}.upsamplers.0.conv")
            k += 1

    rules += _wb("out.0", "conv_norm_out")
    rules += _wb("out.2", "conv_out")
    return rules


def _split_qkv(t: torch.Tensor, heads: int, legacy: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a fused qkv weight (3C, C) / bias (3C,) into q, k, v of (C, C) / (C,), heads kept in order."""
    three_c = t.shape[0]
    c = three_c // 3
    rest = t.shape[1:]
    if legacy:
        # QKVAttentionLegacy: qkv.reshape(B * heads, 3 * ch, T).split(ch) -> per head [q, k, v].
        parts = t.reshape(heads, 3, c // heads, *rest)
        q, k, v = (parts[:, i].reshape(c, *rest) for i in range(3))
    else:
        # QKVAttention: qkv.chunk(3) -> [q (all heads), k, v], each reshaped to (B * heads, ch, T).
        q, k, v = t.reshape(3, c, *rest).unbind(0)
    return q, k, v


def _fmt_shape(shape: Sequence[int]) -> str:
    return str(tuple(int(s) for s in shape))


def _convert(
    state_dict: Mapping[str, torch.Tensor], config: AdmConfig, target: Mapping[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Apply the mapping rules with strict key and shape checks; raise one CheckpointError listing every problem."""
    rules = _mapping_rules(config, target)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    problems: list[str] = []
    for rule in rules:
        dst_shapes = []
        for d in rule.dst:
            if d not in target:  # a bug in the rules, not in the checkpoint
                raise RuntimeError(f"ADM mapping produced unknown diffusers key {d!r}")
            dst_shapes.append(tuple(target[d].shape))
        if rule.kind == "qkv":
            expected = (3 * dst_shapes[0][0], *dst_shapes[0][1:])
            expected = (*expected, 1) if len(dst_shapes[0]) == 2 else expected
        elif rule.kind == "conv1d":
            expected = (*dst_shapes[0], 1)
        else:
            expected = dst_shapes[0]
        if rule.src not in state_dict:
            problems.append(
                f"missing key {rule.src!r} (needed for {rule.dst[0]!r}, expected shape {_fmt_shape(expected)})"
            )
            continue
        used.add(rule.src)
        src = state_dict[rule.src]
        if not isinstance(src, torch.Tensor):
            problems.append(f"key {rule.src!r} holds a {type(src).__name__}, not a tensor")
            continue
        if tuple(src.shape) != expected:
            problems.append(
                f"key {rule.src!r} (-> {rule.dst[0]!r}): expected shape {_fmt_shape(expected)}, "
                f"found {_fmt_shape(src.shape)}"
            )
            continue
        src = src.detach().to(dtype)
        if rule.kind == "qkv":
            flat = src[..., 0] if src.ndim == 3 else src  # Conv1d weight (3C, C, 1) -> (3C, C)
            for d, part in zip(rule.dst, _split_qkv(flat, rule.heads, rule.legacy), strict=True):
                out[d] = part.reshape(target[d].shape).contiguous()
        elif rule.kind == "conv1d":
            out[rule.dst[0]] = src.reshape(target[rule.dst[0]].shape).contiguous()
        else:
            out[rule.dst[0]] = src.contiguous()
    unused = sorted(set(state_dict) - used)
    if unused:
        shown = ", ".join(repr(k) for k in unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        problems.append(f"{len(unused)} checkpoint key(s) not used by this config: {shown}")
    unfilled = sorted(set(target) - set(out))
    if unfilled and not problems:
        problems.append(f"diffusers keys left without a source: {unfilled[:8]}")
    if problems:
        shown = problems[:12]
        more = f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else ""
        raise CheckpointError(
            "the checkpoint does not match the ADM config "
            f"(num_channels={config.num_channels}, channel_mult={','.join(_fmt_mult(m) for m in config.channel_mult)}, "
            f"num_res_blocks={config.num_res_blocks}, attention_resolutions="
            f"{','.join(map(str, config.attention_resolutions))}, use_scale_shift_norm={config.use_scale_shift_norm}, "
            f"resblock_updown={config.resblock_updown}):\n  " + "\n  ".join(shown) + more + "\n"
            "infer_adm_config(state_dict, image_size) reads the hyper-parameters from the weights."
        )
    return out


def adm_to_diffusers(
    state_dict: Mapping[str, torch.Tensor], config: AdmConfig, *, dtype: torch.dtype = torch.float32
) -> UNet2DModel:
    """Convert a guided-diffusion ``UNetModel`` state dict into a diffusers ``UNet2DModel``.

    Args:
        state_dict: the checkpoint's tensors, guided-diffusion key names (``input_blocks.N...``, ``out.2.weight``).
        config: the checkpoint's hyper-parameters (from the catalogue, or :func:`infer_adm_config`).
        dtype: parameter dtype of the returned model.

    Returns:
        A ``UNet2DModel`` (an :class:`AdmUNet2DModel` when the plain class cannot express the config) in eval mode
        with ``requires_grad`` off. ``model(x, t).sample`` is (B, 6, H, W) for ``learn_sigma`` models (eps, then the
        variance interpolation), for x (B, 3, H, W) in [-1, 1] and t (B,) on guided-diffusion's 0-999 scale (Disco's
        ``rescale_timesteps`` scale: for 1000 training steps it equals the step index).

    Raises:
        CheckpointError: a key is missing, unused, or has the wrong shape (the message names each one with the
            expected and the found shape).
    """
    cls, kwargs = adm_unet_config(config)
    # Build on the meta device: no time is spent drawing random weights that the checkpoint replaces at once.
    with torch.device("meta"):
        model = cls(**kwargs)
    target = model.state_dict()
    converted = _convert(state_dict, config, target, dtype)
    model.load_state_dict(converted, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"parameters left uninitialised after conversion: {leftover[:8]}")
    model.eval()
    model.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Reading the hyper-parameters from the weights
# ---------------------------------------------------------------------------------------------------------------

_BLOCK_RE = re.compile(r"^(input_blocks|output_blocks)\.(\d+)\.(\d+)\.(.+)$")


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"not a guided-diffusion UNet state dict: key {key!r} is missing")
    return tuple(sd[key].shape)


def infer_adm_config(
    state_dict: Mapping[str, torch.Tensor],
    image_size: int,
    *,
    num_heads: int | None = None,
    num_head_channels: int | None = None,
    num_heads_upsample: int = -1,
    use_new_attention_order: bool = False,
    dropout: float = 0.0,
) -> AdmConfig:
    """Read a guided-diffusion UNet's hyper-parameters from its tensor shapes and key names.

    Inferred: ``num_channels``, ``channel_mult``, ``num_res_blocks``, ``attention_resolutions`` (needs
    ``image_size``, the training resolution, because they are stored as feature-map sizes), ``use_scale_shift_norm``,
    ``resblock_updown``, ``learn_sigma``, ``class_cond``/``num_classes``, ``in_channels``.

    Not in the weights: the attention head split (the fused qkv weight is (3C, C, 1) whatever the heads), the qkv
    layout and dropout. Pass them when known. Without ``num_heads``/``num_head_channels`` the two recipes Disco's
    models come from are assumed, with a warning: OpenAI's (scale-shift norm + resblock up/down) uses 64-channel heads,
    the community fine-tunes (neither) one head.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"infer_adm_config: image_size must be a positive integer, got {image_size!r}")
    te = _shape(state_dict, "time_embed.0.weight")
    num_channels = te[1]
    in_shape = _shape(state_dict, "input_blocks.0.0.weight")
    in_channels = in_shape[1]
    out_channels = _shape(state_dict, "out.2.weight")[0]
    if out_channels == 2 * in_channels:
        learn_sigma = True
    elif out_channels == in_channels:
        learn_sigma = False
    else:
        raise CheckpointError(
            f"out.2.weight has {out_channels} output channels for {in_channels} input channels; "
            "expected equal (eps) or double (eps + variance)"
        )

    # Sub-module kinds per block: input_blocks.K.J / output_blocks.K.J -> "res" | "attn" | "conv" | "op".
    kinds: dict[tuple[str, int, int], str] = {}
    for key in state_dict:
        m = _BLOCK_RE.match(key)
        if not m:
            continue
        where, k, j, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if rest.startswith("in_layers."):
            kind = "res"
        elif rest.startswith("qkv."):
            kind = "attn"
        elif rest.startswith("op."):
            kind = "op"
        elif rest.startswith("conv."):
            kind = "conv"
        else:
            continue
        kinds[(where, k, j)] = kind
    n_in = 1 + max((k for (w, k, _j) in kinds if w == "input_blocks"), default=0)
    n_out = 1 + max((k for (w, k, _j) in kinds if w == "output_blocks"), default=-1)
    if n_out < 1:
        raise CheckpointError("not a guided-diffusion UNet state dict: no output_blocks.* keys")

    def out_has_upsample(k: int) -> bool:
        subs = [(j, kind) for (w, kk, j), kind in kinds.items() if w == "output_blocks" and kk == k]
        return any(kind == "conv" or (kind == "res" and j > 0) for j, kind in subs)

    first_up = next((k for k in range(n_out) if out_has_upsample(k)), None)
    per_level = (first_up + 1) if first_up is not None else n_out
    num_res_blocks = per_level - 1
    if num_res_blocks < 1 or n_out % per_level:
        raise CheckpointError(f"cannot read the level structure: {n_out} output blocks, upsample after {per_level}")
    n_levels = n_out // per_level
    if n_in != 1 + n_levels * num_res_blocks + (n_levels - 1):
        raise CheckpointError(
            f"cannot read the level structure: {n_in} input blocks for {n_levels} levels of {num_res_blocks} "
            "residual blocks (a downsample without conv, conv_resample=False, is not supported)"
        )

    mults: list[float] = []
    attn_levels: list[int] = []
    scale_shift: bool | None = None
    resblock_updown = False
    k = 1
    for lvl in range(n_levels):
        ch = _shape(state_dict, f"input_blocks.{k}.0.in_layers.2.weight")[0]
        emb = _shape(state_dict, f"input_blocks.{k}.0.emb_layers.1.weight")[0]
        scale_shift = emb == 2 * ch
        mults.append(ch / num_channels)
        if kinds.get(("input_blocks", k, 1)) == "attn":
            attn_levels.append(lvl)
        k += num_res_blocks
        if lvl != n_levels - 1:
            kind = kinds.get(("input_blocks", k, 0))
            if kind not in ("res", "op"):
                raise CheckpointError(f"input_blocks.{k}: expected a downsample block, found {kind or 'nothing'}")
            resblock_updown = kind == "res"
            k += 1
    attention_resolutions = []
    for lvl in attn_levels:
        ds = 2**lvl
        if image_size % ds:
            raise ValueError(f"infer_adm_config: image_size {image_size} is not divisible by downsample factor {ds}")
        attention_resolutions.append(image_size // ds)
    use_scale_shift_norm = bool(scale_shift)

    if num_heads is None and num_head_channels is None:
        attn_widths = [int(m * num_channels) for lvl, m in enumerate(mults) if lvl in attn_levels] + [
            int(mults[-1] * num_channels)
        ]
        if use_scale_shift_norm and resblock_updown and all(w % 64 == 0 for w in attn_widths):
            num_head_channels, num_heads = 64, 4
            assumed = "num_head_channels=64 (OpenAI's recipe)"
        else:
            num_head_channels, num_heads = -1, 1
            assumed = "num_heads=1 (the community fine-tune recipe)"
        warnings.warn(
            f"infer_adm_config: the attention head split is not stored in the weights; assuming {assumed}. "
            "Pass num_heads= or num_head_channels= if the model was trained otherwise.",
            UserWarning,
            stacklevel=2,
        )
    label = state_dict.get("label_emb.weight")
    return AdmConfig(
        image_size=image_size,
        num_channels=num_channels,
        num_res_blocks=num_res_blocks,
        channel_mult=tuple(mults),
        attention_resolutions=tuple(attention_resolutions),
        num_heads=num_heads if num_heads is not None else 4,
        num_head_channels=num_head_channels if num_head_channels is not None else -1,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown,
        learn_sigma=learn_sigma,
        dropout=dropout,
        use_new_attention_order=use_new_attention_order,
        class_cond=label is not None,
        in_channels=in_channels,
        num_classes=int(label.shape[0]) if label is not None else 1000,
    )

