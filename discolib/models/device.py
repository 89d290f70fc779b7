"""Model presets and shared loading helpers: device and dtype choice, tiny offline guided-mode models.

Real weights come from :mod:`discolib.models.hub` (Disco's catalogue, hub ids, local files, SHA-256 checks),
:mod:`discolib.models.clip`, :mod:`discolib.models.latent` and :mod:`discolib.models.depth`. The ``tiny`` guided models here
are built from the same configuration code as the real ones (an ADM hyper-parameter set turned into a diffusers
``UNet2DModel`` by :func:`discolib.models.adm.adm_unet_config`; the real ``SecondaryDiffusionImageNet2`` class at width 8)
with random weights under a fixed seed, so the whole guided pipeline runs offline on a CPU.
"""

from __future__ import annotations

import torch

from discolib.errors import InputError

__all__ = [
    "resolve_device",
    "resolve_dtype",
    "upload",
]


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> CUDA when available else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"models.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r:.80}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("models.device: 'cuda' was asked for but no CUDA device is available; use 'auto' or 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise InputError(f"models.device: {name!r} does not exist; this machine has cuda:0 to cuda:{count - 1}")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``'auto'`` -> float16 on CUDA (what Disco ran its UNet in; bf16 where the card supports it), float32 on CPU."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise InputError(f"models.dtype: expected one of auto, {', '.join(table)}, got {name!r:.80}")
    if device.type == "cpu" and name == "float16":
        raise InputError("models.dtype: float16 is not supported on the CPU; use float32 or bfloat16")
    return table[name]


def upload(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t.to(device)`` without a host sync: a host tensor goes to CUDA through pinned memory, ``non_blocking``.

    A plain copy from pageable memory makes the host wait for every kernel queued before it, which stalls a frame
    loop that should run ahead of the GPU. Any other combination is an ordinary ``.to``.
    """
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


