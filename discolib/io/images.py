"""Reading images from users: paths (and http(s) URLs), resized to the run's size, as (1, 3, H, W) in [0, 1].

Every way an image can be unusable -- missing, a folder, a FIFO or device, unreadable, not an image, corrupt, a
decompression bomb (a header claiming more than Pillow's ``Image.MAX_IMAGE_PIXELS``), an unreachable URL -- is
one :class:`ImageInputError` naming the setting and the source. :func:`check_image` finds these before a run
folder is made; :func:`load_image` raises the same errors. A URL is downloaded once per process: the bytes are
kept in a small in-memory cache, so checking an image and then loading it costs one download.
"""

from __future__ import annotations

import io
import struct
import threading
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from http.client import HTTPException
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from discolib.errors import InputError, one_line
from discolib.io.inputs import read_user_bytes

__all__ = ["ImageInputError", "check_image", "load_image", "pil_to_tensor", "tensor_to_pil"]

#: Largest image file (or download) read; a 8192x8192 PNG of noise is about 200 MB.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: Seconds to wait for a URL to connect or send data.
URL_TIMEOUT_S = 30.0
#: Downloads kept in memory (the most recent first to go when the total exceeds this).
URL_CACHE_BYTES = 64 * 1024 * 1024

_url_cache: OrderedDict[str, bytes] = OrderedDict()
_url_lock = threading.Lock()


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


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _reason(exc: BaseException) -> str:
    """Why ``exc`` happened, in one line: an ``OSError``'s strerror (no errno, no path), else its first line."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return one_line(reason, None, lines="first") or type(exc).__name__


def _fetch(url: str, setting: str) -> bytes:
    """The bytes at ``url``, from the cache or downloaded once (with a timeout and a size cap)."""
    with _url_lock:
        cached = _url_cache.get(url)
        if cached is not None:
            _url_cache.move_to_end(url)
            return cached
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as resp:  # noqa: S310 - only http(s) reaches here
            data = resp.read(MAX_IMAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise ImageInputError(f"{setting}: cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        raise ImageInputError(f"{setting}: cannot download {url}: {_reason(reason)}") from None
    except (OSError, HTTPException, ValueError) as exc:  # timeouts, resets, malformed responses or URLs
        raise ImageInputError(f"{setting}: cannot download {url}: {_reason(exc)}") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{setting}: {url} is larger than {MAX_IMAGE_BYTES} bytes")
    if len(data) <= URL_CACHE_BYTES:
        with _url_lock:
            _url_cache[url] = data
            while sum(len(v) for v in _url_cache.values()) > URL_CACHE_BYTES:
                _url_cache.popitem(last=False)
    return data


def _read_bytes(text: str, setting: str) -> bytes:
    if _is_url(text):
        return _fetch(text, setting)
    try:
        # Regular files only, checked before opening: a FIFO would block, /dev/zero would never end.
        return read_user_bytes(text, setting=setting, max_bytes=MAX_IMAGE_BYTES)
    except InputError as exc:
        raise ImageInputError(str(exc)) from None


def _open_unchecked(data: bytes) -> ImageFile.ImageFile:
    """``Image.open(io.BytesIO(data))`` without the size check Pillow makes on opening (the caller makes it).

    Between ``MAX_IMAGE_PIXELS`` and twice that, Pillow's check only warns, and turning that warning into an error
    (``warnings.catch_warnings``) swaps the process-wide warnings filters: not thread-safe (the render loop has a
    writer thread). So the format plugins are asked the way ``Image.open`` asks them (Pillow's public registry,
    ``Image.ID`` / ``Image.OPEN``): the common ones first, then all; each plugin whose ``accept`` recognises the
    first 16 bytes reads the header in turn. Nothing is decoded yet.
    """
    prefix = data[:16]
    tried: set[str] = set()
    for load_plugins in (Image.preinit, Image.init):
        load_plugins()
        for fmt in [f for f in Image.ID if f not in tried]:
            tried.add(fmt)
            factory, accept = Image.OPEN[fmt]
            accepted = accept is None or accept(prefix)
            if not accepted or isinstance(accepted, str):  # a string: why the plugin cannot read it here
                continue
            try:
                return factory(io.BytesIO(data), "")
            except (SyntaxError, IndexError, TypeError, struct.error):  # what Image.open takes for "not this format"
                continue
    raise UnidentifiedImageError("cannot identify image file")


def _decode(source: str | Path, setting: str) -> Image.Image:
    """The image at ``source`` fully decoded as RGB; every failure is an :class:`ImageInputError`."""
    text = str(source)
    data = _read_bytes(text, setting)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        img = _open_unchecked(data)
        width, height = img.size
        # Pillow refuses more than twice the limit and only warns between; a user's image past it is refused here.
        if limit and max(1, width) * max(1, height) > limit:
            raise Image.DecompressionBombError(f"{width}x{height}")
        img.load()
        return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(
            f"{setting}: {text} claims more pixels than the limit of {limit} (Image.MAX_IMAGE_PIXELS): "
            "a decompression bomb or a far too large image"
        ) from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{setting}: not an image file: {text}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types (OSError, SyntaxError, struct.error...) on corrupt data
        raise ImageInputError(f"{setting}: cannot decode {text}: {_reason(exc)}") from None


def check_image(source: str | Path, *, setting: str) -> tuple[int, int]:
    """Check that ``source`` (a path or an http(s) URL) is a readable image now; returns its (width, height).

    Refuses folders, FIFOs, devices and files over ``MAX_IMAGE_BYTES`` before reading, images whose header
    claims more than ``Image.MAX_IMAGE_PIXELS`` before decoding, and anything Pillow cannot decode. A URL is
    fetched once (``URL_TIMEOUT_S``) and kept for :func:`load_image`.

    Raises:
        ImageInputError: one line naming ``setting`` and the source.
    """
    return _decode(source, setting).size


def load_image(source: str | Path, size: tuple[int, int] | None = None, *, setting: str = "init_image") -> torch.Tensor:
    """Read an image file or http(s) URL; resize to ``size`` = (width, height) with a warning when it differs.

    Returns:
        (1, 3, H, W) float32 in [0, 1].

    Raises:
        ImageInputError: as :func:`check_image`.
    """
    text = str(source)
    img = _decode(text, setting)
    if size is not None and img.size != tuple(size):
        warnings.warn(f"{setting}: {text} is {img.size[0]}x{img.size[1]}; resized to {size[0]}x{size[1]}", stacklevel=2)
        img = img.resize(tuple(size), Image.Resampling.LANCZOS)
    return pil_to_tensor(img)
