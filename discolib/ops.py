"""Small tensor helpers every layer shares (a leaf: it imports torch and errors only).

Image batches are ``(B, C, H, W)`` float tensors; :func:`check_image_batch` is the one check of that shape.
:func:`seeded` builds modules under a fixed seed without touching the caller's global RNG; :func:`x0_from_eps`
is the one "predicted clean sample" formula of an eps-predicting diffusion model.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from discolib.errors import InputError

__all__ = ["check_image_batch", "mid_ranks", "scratch", "seeded", "stream_seed", "x0_from_eps"]


def check_image_batch(
    image: object, name: str = "image", *, channels: int | None = 3, error: type[InputError] = InputError
) -> None:
    """Raise ``error`` unless ``image`` is a floating-point ``(B, C, H, W)`` tensor (``C == channels`` if given)."""
    want = "(B, 3, H, W) tensor in [0, 1]" if channels == 3 else "(B, C, H, W) tensor"
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or (channels is not None and image.shape[1] != channels):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise error(f"{name} must be a {want}, got {shape}")
    if not image.is_floating_point():
        what = "floating point tensor in [0, 1]" if channels == 3 else "floating point tensor"
        raise error(f"{name} must be a {what}, got {image.dtype}")


@contextmanager
def seeded(seed: int = 0) -> Iterator[None]:
    """Run the block with torch's global CPU RNG seeded to ``seed``, restoring the caller's RNG state afterwards.

    Used to build random-weight models that are the same on every call (tiny and fallback models).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


_SCRATCH = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: Any = np.float32, *, max_bytes: int = 64 << 20) -> np.ndarray:
    """This thread's reusable numpy array ``name`` of ``shape`` and ``dtype``; its contents are undefined.

    Multi-megabyte arrays allocated afresh are page-faulted in on every call (measured: ~1000 faults, +2-3 ms per
    512^2 frame stage, as much as an OpenCV warp itself), so the CPU frame stages keep one array per name and thread,
    reallocated only when the shape or dtype changes (a render has one frame size). An array over ``max_bytes`` is
    fresh every call rather than pinned in memory.
    """
    dt = np.dtype(dtype)
    if math.prod(shape) * dt.itemsize > max_bytes:
        return np.empty(shape, dt)
    arrays: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("arrays", {})
    found = arrays.get(name)
    if found is None or found.shape != shape or found.dtype != dt:
        found = arrays[name] = np.empty(shape, dt)
    return found


def stream_seed(seed: int, purpose: str) -> int:
    """The seed of random stream ``purpose`` of an image (or frame) whose seed is ``seed``.

    ``"noise"`` is ``seed`` itself: as in Disco and Deforum, an image's seed names its diffusion noise. Every other
    purpose (``"cuts"``, ``"coherence:<frame>"``, ...) gets a 63-bit hash of ``(purpose, seed)``, so no two streams
    draw the same numbers -- seeding the cutouts' generator with the noise seed made both draw one stream.
    """
    if purpose == "noise":
        return seed
    digest = hashlib.blake2b(f"{purpose}:{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def x0_from_eps(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """The clean sample an eps prediction implies: ``(x - sqrt(1 - abar) * eps) / sqrt(abar)``.

    ``alpha_bar`` is a Python float (computed in double precision, as the pixel sampler does) or a tensor that
    broadcasts against ``x`` (computed in its dtype).
    """
    if isinstance(alpha_bar, torch.Tensor):
        return (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    return (x - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)


def mid_ranks(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of the values of each row of ``(R, N)``, ties sharing their mean rank.

    Returns:
        ``order`` ``(R, N)`` (the sorting permutation, as ``argsort``) and ``twice_rank`` ``(R, N)``: twice the
        (mid-)rank in ``[0, 2(N - 1)]`` of each *sorted* position, as integers (halves stay exact).
    """
    n = values.shape[-1]
    order = values.argsort(dim=-1)
    ordered = values.gather(-1, order)
    pos = torch.arange(n, device=values.device).expand_as(order)
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    # First and last sorted index of each run of equal values, by running max/min of the run boundaries.
    first = torch.where(starts, pos, 0).cummax(dim=-1).values
    last = torch.where(ends, pos, n - 1).flip(-1).cummin(dim=-1).values.flip(-1)
    return order, first + last
