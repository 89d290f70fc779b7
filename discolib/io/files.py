"""Writing files: the one atomic writer (temporary name, fsync, rename), PNG encoding and the umask-respecting mode.

A file written here either has all its bytes or does not exist under its name: a crash or a full disk never
leaves half a frame, a half ``run.json`` or a half ``settings.json``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from discolib.errors import DiscolibError

__all__ = ["WriteError", "file_mode", "umask", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "encode_png", "save_png_atomic"]


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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one filesystem) and is
    flushed and fsynced before the rename, so a crash never leaves a truncated file under the final name.
    Any ``OSError`` (``[Errno 28]`` on a full disk) comes out as a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())  # mkstemp makes 0600 files; outputs should follow the umask like any other
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise
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
