"""Writing files: the one atomic writer (temporary name, fsync, rename), PNG encoding and the umask-respecting mode.

A file written here either has all its bytes or does not exist under its name: a crash or a full disk never
leaves half a frame, a half ``run.json`` or a half ``settings.json``. :func:`atomic_path` is the one primitive:
the writers here, depth PNGs, checkpoint downloads and ffmpeg's videos all write through it.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from discolib.errors import DiscolibError

__all__ = [
    "WriteError",
    "atomic_path",
    "file_mode",
    "umask",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "encode_png",
    "save_png_atomic",
    "safe_folder_name",
]


class WriteError(DiscolibError, OSError):
    """A file could not be written (disk full, no permission, read-only filesystem): ``cannot write <path>: <reason>``.

    An ``OSError`` (``errno`` is the OS's) so callers that catch ``OSError`` keep working; a ``DiscolibError`` so the
    CLI prints it as one line.
    """

    def __init__(self, path: str | Path, exc: OSError) -> None:
        super().__init__(f"cannot write {path}: {exc.strerror or exc}")
        self.errno = exc.errno  # strerror/filename stay unset: OSError.__str__ would then replace the message
        self.path = Path(path)


def umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` can only be read by setting
    it, which races with other threads creating files); read at call time, so a later ``os.umask`` counts."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (mkstemp's files are private, 0600)."""
    return 0o666 & ~umask()


@contextmanager
def atomic_path(
    dest: str | Path,
    *,
    suffix: str = ".tmp",
    mkdir: bool = False,
    error: Callable[[OSError], BaseException] | None = None,
) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write; when the ``with`` body succeeds it replaces ``dest`` atomically.

    The temporary file (``.<name>.<random><suffix>``, created empty and private) lives in ``dest``'s folder, as
    ``os.replace`` is atomic only within one filesystem. On success it is fsynced (a crash never leaves a
    truncated file under the final name), given :func:`file_mode` and renamed onto ``dest``; on any exception,
    the body's included, it is removed and ``dest`` is left as it was.

    Args:
        dest: the final file.
        suffix: the temporary's suffix (``.tmp``: what ``RunFolder.clean_temporaries`` sweeps up after a crash).
        mkdir: create ``dest``'s folder (and its parents) first.
        error: turns an ``OSError`` of this function's own steps (making the folder or the temporary, fsync, chmod,
            rename) into the caller's error; None raises it as it is. The body's exceptions always pass unchanged.
    """
    dest = Path(dest)
    try:
        if mkdir:
            dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        if error is None:
            raise
        raise error(exc) from None
    tmp = Path(name)
    try:
        yield tmp
        try:
            _fsync(tmp)
            # mkstemp makes 0600 files; outputs should follow the umask like any other file
            os.chmod(tmp, file_mode())
            os.replace(tmp, dest)
        except OSError as exc:
            if error is None:
                raise
            raise error(exc) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _fsync(path: Path) -> None:
    """Flush ``path``'s data to the disk (opened for writing: Windows cannot fsync a read-only handle)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (its folder is created) so that readers see either the old file or the whole
    new one (see :func:`atomic_path`).

    Any ``OSError`` (``[Errno 28]`` on a full disk) comes out as a :class:`WriteError` naming ``path``.
    """
    path = Path(path)

    def cannot_write(exc: OSError) -> WriteError:
        return WriteError(path, exc)

    with atomic_path(path, mkdir=True, error=cannot_write) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise WriteError(path, exc) from None
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def encode_png(image: Any) -> bytes:
    """PNG bytes of an image: a PIL image, a uint8 (H, W, 3) array, or a float tensor (3, H, W)/(1, 3, H, W) in [0, 1]."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        pil = image
    else:
        arr = image
        if hasattr(arr, "detach"):  # torch tensor, (1,3,H,W) or (3,H,W), float in [0, 1]
            t = arr.detach()
            if t.ndim == 4:
                if t.shape[0] != 1:
                    raise ValueError(f"expected one image, got a batch of shape {tuple(t.shape)}")
                t = t[0]
            arr = (t.float().clamp(0, 1).mul(255).round().to("cpu").permute(1, 2, 0).numpy()).astype(np.uint8)
        arr = np.asarray(arr)
        if arr.dtype != np.uint8:
            raise ValueError(f"expected a uint8 array, got {arr.dtype}")
        pil = Image.fromarray(arr)
    buf = io.BytesIO()
    # compress_level 1: PNG stays lossless; higher levels cost much time per frame for a few percent of size.
    pil.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def save_png_atomic(path: str | Path, image: Any) -> Path:
    """Encode ``image`` as PNG and write it atomically."""
    return write_bytes_atomic(path, encode_png(image))


#: The longest file name (in bytes) of the usual filesystems (ext4, XFS, btrfs, APFS: NAME_MAX 255).
NAME_MAX_BYTES = 255
# What some filesystem refuses in a name or what would leave the folder: separators, Windows' reserved characters,
# control characters (C0, DEL, C1). Everything else, CJK, Arabic, emoji and accents included, is kept as typed.
_REFUSED = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f-\x9f]+')
# Windows refuses these as a name or as the part before the first dot (CON.txt), in any case.
_WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.IGNORECASE)


def safe_folder_name(name: str, *, max_bytes: int = NAME_MAX_BYTES) -> str:
    """``name`` as a folder name every common filesystem accepts, kept as readable as it was typed.

    Only what a filesystem refuses or what could leave the parent folder is changed: each run of separators,
    Windows' reserved characters (``< > : " | ? *``) and control characters becomes one ``_``; leading dots
    (``..``, hidden folders) become ``_``; trailing dots and spaces (Windows drops them) are removed; Windows'
    reserved device names (``CON``, ``NUL``, ``COM1`` ...) get a ``_`` in front. The text is NFC-normalised (macOS
    would otherwise store a different byte sequence for the same name) and cut to ``max_bytes`` UTF-8 bytes at a
    character boundary. A name with nothing left is ``"_"``. The same input always gives the same name.
    """
    text = unicodedata.normalize("NFC", name)
    # Lone surrogates (undecodable bytes smuggled through os.fsdecode) cannot be written as UTF-8.
    text = "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else "_" for c in text)
    text = _REFUSED.sub("_", text)
    text = re.sub(r"^\.+", lambda m: "_" * len(m.group()), text)
    text = _trim(text, max_bytes)
    if _WINDOWS_RESERVED.fullmatch(text):
        text = _trim("_" + text, max_bytes)
    return text or "_"


def _trim(text: str, max_bytes: int) -> str:
    """At most ``max_bytes`` UTF-8 bytes, never half a character, without Windows' trailing dots and spaces."""
    raw = text.encode("utf-8")
    if len(raw) > max_bytes:
        text = raw[:max_bytes].decode("utf-8", errors="ignore")  # drops the cut character's leading bytes
    return text.rstrip(". ")
