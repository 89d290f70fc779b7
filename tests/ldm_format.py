"""Test helper: diffusers state dicts written back in the ORIGINAL single-file key formats.

diffusers only converts original -> diffusers (``diffusers.loaders.single_file_utils``). These functions are the
inverse, per block, so a tiny diffusers model can be saved as a model site's ``.safetensors`` file:

- :func:`unet_to_ldm`: UNet2DConditionModel -> LDM/SGM ``input_blocks``/``middle_block``/``output_blocks`` names;
- :func:`vae_to_ldm`: AutoencoderKL -> LDM ``encoder.down.N.block.M`` names (attention as 1x1 convolutions);
- :func:`clip_to_ldm` / :func:`clip_to_open_clip`: CLIP text encoders as SD's ``transformer.text_model.*`` and
  OpenCLIP's ``transformer.resblocks.*`` (fused ``in_proj``, transposed ``text_projection``);
- :func:`sd3_to_original`: SD3Transformer2DModel -> ``joint_blocks`` (fused ``qkv``, shift/scale order);
- :func:`flux_to_bfl`: FluxTransformer2DModel -> Black Forest Labs' ``double_blocks``/``single_blocks``.

The tests check each one by loading the written file with ``from_single_file`` (diffusers' forward converters) and
comparing every tensor with the original model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

Tensors = dict[str, torch.Tensor]

_RESNET_LDM = (("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("time_emb_proj.", "emb_layers.1."),
               ("norm2.", "out_layers.0."), ("conv2.", "out_layers.3."), ("conv_shortcut.", "skip_connection."))


def _rename(sd: Tensors, prefixes: dict[str, str], inner: dict[str, tuple[tuple[str, str], ...]]) -> Tensors:
    """Each key's longest matching diffusers prefix replaced by its original one; ``inner`` renames the rest of
    the key for prefixes that are resnets/attentions. Every key must match a prefix."""
    out: Tensors = {}
    order = sorted(prefixes, key=len, reverse=True)
    for key, value in sd.items():
        pre = next((p for p in order if key.startswith(p)), None)
        if pre is None:
            raise KeyError(f"no original-format name for {key!r}")
        rest = key[len(pre):]
        for old, new in inner.get(pre, ()):
            if rest.startswith(old):
                rest = new + rest[len(old):]
                break
        out[prefixes[pre] + rest] = value.contiguous()
    return out


def unet_to_ldm(sd: Tensors, config: dict[str, Any]) -> Tensors:
    """A UNet2DConditionModel state dict in LDM/SGM names (without the ``model.diffusion_model.`` prefix)."""
    levels = len(config["block_out_channels"])
    lpb = config["layers_per_block"]
    assert isinstance(lpb, int), "per-level layers_per_block is not an LDM layout"
    pre: dict[str, str] = {
        "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    resnets = ["mid_block.resnets.0.", "mid_block.resnets.1."]
    for i in range(levels):
        for j in range(lpb):
            n = 1 + i * (lpb + 1) + j
            pre[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{n}.0."
            pre[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{n}.1."
            resnets.append(f"down_blocks.{i}.resnets.{j}.")
        if i < levels - 1:
            pre[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(i + 1) * (lpb + 1)}.0.op."
        for j in range(lpb + 1):
            n = i * (lpb + 1) + j
            pre[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{n}.0."
            pre[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{n}.1."
            resnets.append(f"up_blocks.{i}.resnets.{j}.")
        if i < levels - 1:
            has_attn = "CrossAttn" in config["up_block_types"][i]
            pre[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{i * (lpb + 1) + lpb}.{2 if has_attn else 1}."
    return _rename(sd, pre, dict.fromkeys(resnets, _RESNET_LDM))


_VAE_ATTN = (("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out."))


def vae_to_ldm(sd: Tensors, config: dict[str, Any]) -> Tensors:
    """An AutoencoderKL state dict in LDM names (without the ``first_stage_model.`` prefix); the mid-block
    attention's linear weights become 1x1 convolutions, as in the original checkpoints."""
    levels = len(config["block_out_channels"])
    lpb = config["layers_per_block"]
    pre: dict[str, str] = {}
    inner: dict[str, tuple[tuple[str, str], ...]] = {}
    for part in ("encoder", "decoder"):
        for name in ("conv_in.", "conv_out."):
            pre[f"{part}.{name}"] = f"{part}.{name}"
        pre[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        for r in (0, 1):
            pre[f"{part}.mid_block.resnets.{r}."] = f"{part}.mid.block_{r + 1}."
            inner[f"{part}.mid_block.resnets.{r}."] = (("conv_shortcut.", "nin_shortcut."),)
        pre[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
        inner[f"{part}.mid_block.attentions.0."] = _VAE_ATTN
    for name in ("quant_conv.", "post_quant_conv."):
        pre[name] = name
    for i in range(levels):
        for j in range(lpb):
            pre[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
            inner[f"encoder.down_blocks.{i}.resnets.{j}."] = (("conv_shortcut.", "nin_shortcut."),)
        pre[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
        for j in range(lpb + 1):
            pre[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{levels - 1 - i}.block.{j}."
            inner[f"decoder.up_blocks.{i}.resnets.{j}."] = (("conv_shortcut.", "nin_shortcut."),)
        pre[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{levels - 1 - i}.upsample.conv."
    out = _rename(sd, pre, inner)
    for key, value in out.items():
        if ".mid.attn_1." in key and key.endswith(("q.weight", "k.weight", "v.weight", "proj_out.weight")):
            out[key] = value[:, :, None, None].contiguous()
    return out


def clip_to_ldm(sd: Tensors) -> Tensors:
    """A transformers CLIP text model's state dict under SD's ``transformer.text_model.*`` names."""
    # transformers >= 5.6 flattens CLIPTextModel (no ``text_model.`` level); the original names always have it.
    inner = "transformer." if any(k.startswith("text_model.") for k in sd) else "transformer.text_model."
    return {inner + k: v.contiguous() for k, v in sd.items()}


def clip_to_open_clip(sd: Tensors) -> Tensors:
    """A CLIPTextModelWithProjection state dict in OpenCLIP's names (SDXL's second text encoder, without the
    ``conditioner.embedders.1.model.`` prefix): fused q/k/v ``in_proj``, ``text_projection`` as (width, dim)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out: Tensors = {
        "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("final_layer_norm.weight"),
        "ln_final.bias": sd.pop("final_layer_norm.bias"),
        "text_projection": sd.pop("text_projection.weight").T.contiguous(),
    }
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [sd.pop(f"{src}self_attn.{x}_proj.{kind}") for x in ("q", "k", "v")]
            )
            out[f"{dst}attn.out_proj.{kind}"] = sd.pop(f"{src}self_attn.out_proj.{kind}")
            out[f"{dst}ln_1.{kind}"] = sd.pop(f"{src}layer_norm1.{kind}")
            out[f"{dst}ln_2.{kind}"] = sd.pop(f"{src}layer_norm2.{kind}")
            out[f"{dst}mlp.c_fc.{kind}"] = sd.pop(f"{src}mlp.fc1.{kind}")
            out[f"{dst}mlp.c_proj.{kind}"] = sd.pop(f"{src}mlp.fc2.{kind}")
    assert not sd, f"unmapped CLIP keys: {sorted(sd)}"
    return {k: v.contiguous() for k, v in out.items()}


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    """(shift, scale) <-> (scale, shift): the original AdaLN order vs diffusers' (its own inverse)."""
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a])


def sd3_to_original(sd: Tensors) -> Tensors:
    """An SD3Transformer2DModel state dict in SD3's original names (without ``model.diffusion_model.``)."""
    sd = dict(sd)
    out: Tensors = {"pos_embed": sd.pop("pos_embed.pos_embed")}
    simple = {
        "pos_embed.proj.": "x_embedder.proj.", "time_text_embed.timestep_embedder.linear_1.": "t_embedder.mlp.0.",
        "time_text_embed.timestep_embedder.linear_2.": "t_embedder.mlp.2.", "context_embedder.": "context_embedder.",
        "time_text_embed.text_embedder.linear_1.": "y_embedder.mlp.0.",
        "time_text_embed.text_embedder.linear_2.": "y_embedder.mlp.2.", "proj_out.": "final_layer.linear.",
    }
    for kind in ("weight", "bias"):
        for src, dst in simple.items():
            out[f"{dst}{kind}"] = sd.pop(f"{src}{kind}")
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(sd.pop(f"norm_out.linear.{kind}"))
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")})
    for i in blocks:
        s, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        last = i == blocks[-1]
        for kind in ("weight", "bias"):
            out[f"{x}attn.qkv.{kind}"] = torch.cat([sd.pop(f"{s}attn.to_{q}.{kind}") for q in "qkv"])
            out[f"{c}attn.qkv.{kind}"] = torch.cat([sd.pop(f"{s}attn.add_{q}_proj.{kind}") for q in "qkv"])
            out[f"{x}attn.proj.{kind}"] = sd.pop(f"{s}attn.to_out.0.{kind}")
            out[f"{x}adaLN_modulation.1.{kind}"] = sd.pop(f"{s}norm1.linear.{kind}")
            ctx_mod = sd.pop(f"{s}norm1_context.linear.{kind}")
            out[f"{c}adaLN_modulation.1.{kind}"] = _swap_halves(ctx_mod) if last else ctx_mod
            out[f"{x}mlp.fc1.{kind}"] = sd.pop(f"{s}ff.net.0.proj.{kind}")
            out[f"{x}mlp.fc2.{kind}"] = sd.pop(f"{s}ff.net.2.{kind}")
            if not last:
                out[f"{c}attn.proj.{kind}"] = sd.pop(f"{s}attn.to_add_out.{kind}")
                out[f"{c}mlp.fc1.{kind}"] = sd.pop(f"{s}ff_context.net.0.proj.{kind}")
                out[f"{c}mlp.fc2.{kind}"] = sd.pop(f"{s}ff_context.net.2.{kind}")
            if f"{s}attn2.to_q.{kind}" in sd:
                out[f"{x}attn2.qkv.{kind}"] = torch.cat([sd.pop(f"{s}attn2.to_{q}.{kind}") for q in "qkv"])
                out[f"{x}attn2.proj.{kind}"] = sd.pop(f"{s}attn2.to_out.0.{kind}")
        for src, dst in (("attn.norm_q", f"{x}attn.ln_q"), ("attn.norm_k", f"{x}attn.ln_k"),
                         ("attn.norm_added_q", f"{c}attn.ln_q"), ("attn.norm_added_k", f"{c}attn.ln_k"),
                         ("attn2.norm_q", f"{x}attn2.ln_q"), ("attn2.norm_k", f"{x}attn2.ln_k")):
            if f"{s}{src}.weight" in sd:
                out[f"{dst}.weight"] = sd.pop(f"{s}{src}.weight")
    assert not sd, f"unmapped SD3 keys: {sorted(sd)}"
    return {k: v.contiguous() for k, v in out.items()}


def flux_to_bfl(sd: Tensors) -> Tensors:
    """A FluxTransformer2DModel state dict in Black Forest Labs' names (``double_blocks``, ``single_blocks``)."""
    sd = dict(sd)
    out: Tensors = {}
    simple = {
        "time_text_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
        "time_text_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
        "time_text_embed.text_embedder.linear_1.": "vector_in.in_layer.",
        "time_text_embed.text_embedder.linear_2.": "vector_in.out_layer.",
        "time_text_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
        "time_text_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
        "context_embedder.": "txt_in.", "x_embedder.": "img_in.", "proj_out.": "final_layer.linear.",
    }
    for kind in ("weight", "bias"):
        for src, dst in simple.items():
            if f"{src}{kind}" in sd:
                out[f"{dst}{kind}"] = sd.pop(f"{src}{kind}")
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(sd.pop(f"norm_out.linear.{kind}"))
    doubles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks.")})
    for i in doubles:
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{d}img_attn.qkv.{kind}"] = torch.cat([sd.pop(f"{s}attn.to_{q}.{kind}") for q in "qkv"])
            out[f"{d}txt_attn.qkv.{kind}"] = torch.cat([sd.pop(f"{s}attn.add_{q}_proj.{kind}") for q in "qkv"])
            for src, dst in (("norm1.linear", "img_mod.lin"), ("norm1_context.linear", "txt_mod.lin"),
                             ("ff.net.0.proj", "img_mlp.0"), ("ff.net.2", "img_mlp.2"),
                             ("ff_context.net.0.proj", "txt_mlp.0"), ("ff_context.net.2", "txt_mlp.2"),
                             ("attn.to_out.0", "img_attn.proj"), ("attn.to_add_out", "txt_attn.proj")):
                out[f"{d}{dst}.{kind}"] = sd.pop(f"{s}{src}.{kind}")
        for src, dst in (("attn.norm_q", "img_attn.norm.query_norm"), ("attn.norm_k", "img_attn.norm.key_norm"),
                         ("attn.norm_added_q", "txt_attn.norm.query_norm"),
                         ("attn.norm_added_k", "txt_attn.norm.key_norm")):
            out[f"{d}{dst}.scale"] = sd.pop(f"{s}{src}.weight")
    singles = sorted({int(k.split(".")[1]) for k in sd if k.startswith("single_transformer_blocks.")})
    for i in singles:
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{d}linear1.{kind}"] = torch.cat(
                [sd.pop(f"{s}attn.to_{q}.{kind}") for q in "qkv"] + [sd.pop(f"{s}proj_mlp.{kind}")]
            )
            out[f"{d}linear2.{kind}"] = sd.pop(f"{s}proj_out.{kind}")
            out[f"{d}modulation.lin.{kind}"] = sd.pop(f"{s}norm.linear.{kind}")
        out[f"{d}norm.query_norm.scale"] = sd.pop(f"{s}attn.norm_q.weight")
        out[f"{d}norm.key_norm.scale"] = sd.pop(f"{s}attn.norm_k.weight")
    assert not sd, f"unmapped Flux keys: {sorted(sd)}"
    return {k: v.contiguous() for k, v in out.items()}


def prefixed(prefix: str, sd: Tensors) -> Tensors:
    """Every key of ``sd`` under ``prefix``."""
    return {prefix + k: v for k, v in sd.items()}


def write(path: Path, *parts: Tensors) -> Path:
    """The union of ``parts`` saved as one ``.safetensors`` file (keys must not collide)."""
    merged: Tensors = {}
    for part in parts:
        clash = merged.keys() & part.keys()
        assert not clash, f"duplicate keys {sorted(clash)[:3]}"
        merged.update(part)
    save_file(merged, str(path))
    return path
