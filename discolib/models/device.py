"""Model presets and shared loading helpers: device and dtype choice, tiny offline guided-mode models.

Real weights come from :mod:`discolib.models.hub` (Disco's catalogue, hub ids, local files, SHA-256 checks),
:mod:`discolib.models.clip`, :mod:`discolib.models.latent` and :mod:`discolib.models.depth`. The ``tiny`` guided models here
are built from the same configuration code as the real ones (an ADM hyper-parameter set turned into a diffusers
``UNet2DModel`` by :func:`discolib.models.adm.adm_unet_config`; the real ``SecondaryDiffusionImageNet2`` class at width 8)
with random weights under a fixed seed, so the whole guided pipeline runs offline on a CPU.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from discolib.errors import InputError
from discolib.models.adm import AdmConfig, adm_unet_config
from discolib.models.secondary import SecondaryDiffusionImageNet2

__all__ = [
    "TINY",
    "TINY_ADM",
    "build_tiny_adm_unet",
    "build_tiny_secondary",
    "resolve_device",
    "resolve_dtype",
    "upload",
]

TINY = "tiny"

#: A guided-diffusion hyper-parameter set of the 512 family's shape (scale-shift norm, resblock up/down,
#: learned sigma, attention at the lowest resolution) at toy width.
TINY_ADM: dict[str, object] = {
    "image_size": 64,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "32",
    "num_head_channels": 16,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "learn_sigma": True,
}


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


def build_tiny_adm_unet(seed: int = 0) -> UNet2DModel:
    """The ``tiny`` guided-diffusion UNet: :data:`TINY_ADM` through the real config conversion, random weights."""
    cls, kwargs = adm_unet_config(AdmConfig.from_dict(TINY_ADM))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**kwargs)
    model.eval().requires_grad_(False)
    return model


def build_tiny_secondary(seed: int = 0) -> SecondaryDiffusionImageNet2:
    """The ``tiny`` secondary model: the real architecture at base width 8, random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SecondaryDiffusionImageNet2(c=8)
    model.eval().requires_grad_(False)
    return model
