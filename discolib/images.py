"""Reading images from users: paths (and http(s) URLs), resized to the run's size, as (1, 3, H, W) in [0, 1]."""

from __future__ import annotations

import io
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from discolib.errors import InputError

__all__ = ["ImageInputError", "load_image", "pil_to_tensor", "tensor_to_pil"]


class ImageInputError(InputError):
    """An init or prompt image that cannot be read; the message names the setting and the path."""


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> (1, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> PIL image."""
    if t.ndim == 4:
        t = t[0]
    arr = (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def load_image(source: str | Path, size: tuple[int, int] | None = None, *, setting: str = "init_image") -> torch.Tensor:
    """Read an image file or http(s) URL; resize to ``size`` = (width, height) with a warning when it differs.

    Returns:
        (1, 3, H, W) float32 in [0, 1].
    """
    text = str(source)
    try:
        if text.startswith(("http://", "https://")):
            with urllib.request.urlopen(text, timeout=30) as resp:  # noqa: S310 - only http(s) reaches here
                img = Image.open(io.BytesIO(resp.read()))
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ImageInputError(f"{setting}: file not found: {path}")
            img = Image.open(path)
        img.load()
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"{setting}: not an image file: {text}") from None
    except OSError as exc:
        raise ImageInputError(f"{setting}: cannot read {text}: {exc}") from None
    img = img.convert("RGB")
    if size is not None and img.size != tuple(size):
        warnings.warn(f"{setting}: {text} is {img.size[0]}x{img.size[1]}; resized to {size[0]}x{size[1]}", stacklevel=2)
        img = img.resize(tuple(size), Image.Resampling.LANCZOS)
    return pil_to_tensor(img)
