"""Reading images from users: paths (and http(s) URLs), resized to the run's size, as (1, 3, H, W) in [0, 1].

Every way an image can be unusable -- missing, a folder, a FIFO or device, unreadable, not an image, corrupt, a
decompression bomb (a header claiming more than Pillow's ``Image.MAX_IMAGE_PIXELS``), an unreachable URL -- is
one :class:`ImageInputError` naming the setting and the source. :func:`check_image` finds these before a run
folder is made; :func:`load_image` raises the same errors. A URL is downloaded once per process: the bytes are
kept in a small in-memory cache, so checking an image and then loading it costs one download.

:func:`load_photo` reads the one photo of ``discolib animate``: right side up (EXIF orientation), every mode to RGB
with its full range (16-bit greyscale, CMYK, palette, transparency over white), at least ``MIN_PHOTO_SIDE`` pixels
a side, optionally scaled to a ``max_side`` on multiples of 8.
"""

from __future__ import annotations

import io
import struct
import threading
import urllib.error
import urllib.request
import warnings
from collections import OrderedDict
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from discolib.errors import InputError, one_line
from discolib.io.inputs import read_user_bytes

__all__ = [
    "MIN_PHOTO_SIDE",
    "ImageInputError",
    "check_image",
    "load_image",
    "load_photo",
    "photo_to_array",
    "pil_to_tensor",
    "tensor_to_pil",
]

#: Largest image file (or download) read; a 8192x8192 PNG of noise is about 200 MB.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: Seconds to wait for a URL to connect or send data.
URL_TIMEOUT_S = 30.0
#: Downloads kept in memory (the most recent first to go when the total exceeds this).
URL_CACHE_BYTES = 64 * 1024 * 1024

#: A photo to animate must be at least this many pixels on each side (a 1x1 image has no depth to speak of).
MIN_PHOTO_SIDE = 16

_T = TypeVar("_T")
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
    return _open_image(source, setting, lambda img: img.convert("RGB"))


def _open_image(
    source: str | Path,
    setting: str,
    finish: Callable[[Image.Image], _T],
    check_size: Callable[[int, int], str | None] | None = None,
) -> _T:
    """The image at ``source``, decoded and passed through ``finish``; every failure is an :class:`ImageInputError`.

    ``check_size(width, height)`` runs on the header's size before decoding; a returned string refuses the image
    with that reason.
    """
    text = str(source)
    data = _read_bytes(text, setting)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        img = _open_unchecked(data)
        width, height = img.size
        # Pillow refuses more than twice the limit and only warns between; a user's image past it is refused here.
        if limit and max(1, width) * max(1, height) > limit:
            raise Image.DecompressionBombError(f"{width}x{height}")
        problem = check_size(width, height) if check_size is not None else None
        if problem:
            raise ImageInputError(f"{setting}: {text} is {width}x{height}: {problem}")
        img.load()
        return finish(img)
    except ImageInputError:
        raise
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


#: Pillow modes holding one channel of more than 8 bits, and the value that means white in each.
_WIDE_GREY = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def photo_to_array(img: Image.Image) -> np.ndarray:
    """A decoded photo as ``(H, W, 3)`` float32 RGB in ``[0, 1]``, whatever its mode.

    16-bit greyscale (``I;16*``, and ``I``, which Pillow gives some 16-bit PNGs) is divided by 65535 (not clipped at
    255); float greyscale (``F``) is clipped to ``[0, 1]``; CMYK, YCbCr, palette, 1-bit and greyscale become RGB;
    transparency (RGBA, LA, PA, a palette's or a greyscale's transparent colour) is composited over white, which is
    how a transparent photo looks on a page.
    """
    if img.mode in _WIDE_GREY:
        grey = np.asarray(img, dtype=np.float32) / np.float32(_WIDE_GREY[img.mode])
        grey = np.clip(grey, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # over white
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _photo_scale(width: int, height: int, max_side: int | None) -> float:
    """The factor that brings the longer side within ``max_side`` (1 when it already is, or without one)."""
    return 1.0 if max_side is None else min(1.0, max_side / max(width, height))


def _photo_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The loaded size: within ``max_side`` (aspect ratio kept) and multiples of 8, at least ``MIN_PHOTO_SIDE``;
    unchanged without ``max_side``. (:func:`load_photo` refuses a photo whose scaled short side is under
    ``MIN_PHOTO_SIDE`` before it gets here: 16 would then stretch it.)"""
    if max_side is None:
        return width, height
    scale = _photo_scale(width, height, max_side)
    return tuple(max(MIN_PHOTO_SIDE, int(round(side * scale)) // 8 * 8) for side in (width, height))  # type: ignore[return-value]


def _rgb8(img: Image.Image) -> Image.Image:
    """An 8-bit photo as 8-bit RGB, transparency composited over white (as :func:`photo_to_array`, in 8 bits)."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")


def load_photo(source: str | Path, *, setting: str = "photo", max_side: int | None = None) -> torch.Tensor:
    """Read a photo to animate (a path or an http(s) URL) as ``(1, 3, H, W)`` float32 RGB in ``[0, 1]``.

    The camera's EXIF orientation is applied (a portrait shot stored sideways comes out upright), every mode
    becomes RGB as :func:`photo_to_array` says (16-bit greyscale keeps its precision, transparency is composited
    over white).

    Args:
        source: the photo.
        setting: the setting's name, for error messages.
        max_side: if given, the photo is downscaled (Lanczos) so its longer side is at most ``max_side`` and both
            sides are multiples of 8 (what the latent models need), keeping the aspect ratio up to that rounding;
            a photo already within it and on multiples of 8 is returned unscaled. At least 16; a photo whose
            shorter side would come out under ``MIN_PHOTO_SIDE`` is refused (read from the header). An 8-bit photo
            is shrunk in Pillow in 8 bits (no full-resolution float copy); 16-bit and float grey as float32.

    Raises:
        ImageInputError: one line naming ``setting`` and the source: missing or unreadable, not an image, corrupt,
            smaller than ``MIN_PHOTO_SIDE`` on a side (also once brought down to ``max_side``), or more pixels than ``Image.MAX_IMAGE_PIXELS`` (read from
            the header, before decoding).
    """
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < MIN_PHOTO_SIDE):
        raise ImageInputError(f"{setting}: max_side must be an integer >= {MIN_PHOTO_SIDE} or None, got {max_side!r}")

    def too_small(width: int, height: int) -> str | None:
        if min(width, height) < MIN_PHOTO_SIDE:
            return f"a photo to animate must be at least {MIN_PHOTO_SIDE}x{MIN_PHOTO_SIDE} pixels"
        short = min(width, height) * _photo_scale(width, height, max_side)
        if short < MIN_PHOTO_SIDE:  # EXIF rotation swaps the sides, not the shorter one's length
            return (f"brought down to a longer side of {max_side} its shorter side would be {short:.1f} pixels, "
                    f"under {MIN_PHOTO_SIDE}; crop the photo or give a larger size")
        return None

    def finish(img: Image.Image) -> np.ndarray:
        # exif_transpose reads the orientation tag and returns a rotated copy (the original when there is none).
        # Inside _open_image so that a corrupt EXIF block or an unconvertible mode is a one-line error too.
        upright = ImageOps.exif_transpose(img) or img
        size = _photo_size(*upright.size, max_side)
        if size == upright.size:
            return photo_to_array(upright)
        if upright.mode in _WIDE_GREY:  # 16-bit / float grey keeps its precision: resized as float32 ("F")
            grey = Image.fromarray(np.ascontiguousarray(photo_to_array(upright)[..., 0]))
            grey = grey.resize(size, Image.Resampling.LANCZOS)
            return np.repeat(np.clip(np.asarray(grey, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=2)
        # An 8-bit photo shrinks in Pillow, in 8 bits (reduce() by whole factors first, then Lanczos): no float
        # copy at full resolution (a 9000x9000 photo was 1.3 GB of float32 RGBA before resizing).
        small = _rgb8(upright).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        return np.asarray(small, dtype=np.float32) / 255.0

    arr = _open_image(source, setting, finish, too_small)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0).contiguous()
