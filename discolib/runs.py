"""Run folders, atomic writes and run records.

Layout::

    <output_root>/<batch_name>/<run_id>/
        settings.json      written before any frame
        frames/000000.png  each written atomically (temporary file in the same folder + os.replace)
        run.json           status, frames done, seed of each frame, package versions: the resume point

A frame is *complete* when its PNG exists under its final name; a killed process leaves at most a ``.tmp``
file, which is ignored and removed on resume. ``run.json`` is rewritten atomically after each frame.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from discolib.errors import InputError

__all__ = [
    "RunError",
    "RunFolder",
    "RunRecord",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "save_png_atomic",
    "package_versions",
]

FRAME_PATTERN = re.compile(r"^(\d{6})\.png$")
_RUN_ID = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?$")


class RunError(InputError):
    """A run folder cannot be created, read or resumed. The message names the path."""


# ---------------------------------------------------------------------------------------------- atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one filesystem) and is
    flushed and fsynced before the rename, so a crash never leaves a truncated file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; outputs should follow the umask like any other
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


# ---------------------------------------------------------------------------------------------- records


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's output."""
    names = ["discolib", "torch", "diffusers", "open_clip_torch", "kornia", "transformers", "numpy", "pillow"]
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    try:
        import torch

        # torch's own version string names the build (+cu130, +cpu), which decides bit-exactness.
        out["torch"] = torch.__version__
        out["cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    return out


@dataclass
class RunRecord:
    """The contents of ``run.json``."""

    status: str = "created"  # created | running | interrupted | failed | done
    frames_total: int = 0
    frames_done: int = 0
    seeds: list[int] = field(default_factory=list)
    started: str = ""
    updated: str = ""
    versions: dict[str, str] = field(default_factory=package_versions)
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """One run's folder: settings, frames and the run record."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ paths
    @property
    def settings_path(self) -> Path:
        return self.path / "settings.json"

    @property
    def record_path(self) -> Path:
        return self.path / "run.json"

    @property
    def frames_dir(self) -> Path:
        return self.path / "frames"

    def frame_path(self, index: int) -> Path:
        return self.frames_dir / f"{index:06d}.png"

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, output_root: str | Path, batch_name: str, settings_json: str, *, run_id: str | None = None) -> RunFolder:
        """Make a new run folder and write ``settings.json`` into it before anything else."""
        root = Path(output_root).expanduser()
        batch_dir = root / batch_name
        try:
            batch_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"run.output_root: cannot create {batch_dir}: {exc.strerror or exc}") from None
        if not os.access(batch_dir, os.W_OK | os.X_OK):
            raise RunError(f"run.output_root: {batch_dir} is not writable")
        if run_id is None:
            run_id = _new_run_id(batch_dir)
        folder = cls(batch_dir / run_id)
        try:
            folder.path.mkdir(parents=False, exist_ok=False)
            folder.frames_dir.mkdir()
            write_text_atomic(folder.settings_path, settings_json)
        except FileExistsError:
            raise RunError(f"run folder already exists: {folder.path}") from None
        except OSError as exc:
            raise RunError(f"run.output_root: cannot write in {folder.path}: {exc.strerror or exc}") from None
        rec = RunRecord(status="created", started=_now(), updated=_now())
        folder.write_record(rec)
        return folder

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Open an existing run folder (for resume); checks that it holds settings and a record."""
        folder = cls(Path(path).expanduser())
        if not folder.path.is_dir():
            raise RunError(f"no run folder at {folder.path}")
        if not folder.settings_path.is_file():
            raise RunError(f"{folder.path} is not a run folder: settings.json is missing")
        return folder

    @classmethod
    def latest(cls, output_root: str | Path, batch_name: str) -> RunFolder:
        """The most recently created run folder of a batch (for ``--resume latest``)."""
        batch_dir = Path(output_root).expanduser() / batch_name
        runs = sorted(
            (p for p in batch_dir.glob("*") if (p / "settings.json").is_file()), key=_run_sort_key
        ) if batch_dir.is_dir() else []
        if not runs:
            raise RunError(f"no runs to resume in {batch_dir}")
        return cls(runs[-1])

    # ------------------------------------------------------------------ record
    def read_record(self) -> RunRecord:
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return RunRecord()
        except (OSError, json.JSONDecodeError) as exc:
            raise RunError(f"cannot read {self.record_path}: {exc}") from None
        if not isinstance(data, dict):
            raise RunError(f"{self.record_path}: expected a JSON object")
        return RunRecord.from_dict(data)

    def write_record(self, record: RunRecord) -> None:
        record.updated = _now()
        write_json_atomic(self.record_path, record.to_dict())

    # ------------------------------------------------------------------ frames
    def complete_frames(self) -> list[int]:
        """Indices of frames whose PNG exists under its final name, sorted."""
        if not self.frames_dir.is_dir():
            return []
        out = []
        for p in self.frames_dir.iterdir():
            m = FRAME_PATTERN.match(p.name)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    def resume_point(self) -> int:
        """The first frame to render: one past the last frame of the unbroken run 0..k of complete frames."""
        done = set(self.complete_frames())
        i = 0
        while i in done:
            i += 1
        return i

    def clean_temporaries(self) -> int:
        """Remove ``.tmp`` files a killed process left behind; returns how many."""
        n = 0
        for p in self.path.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
        return n

    def save_frame(self, index: int, image: Any) -> Path:
        return save_png_atomic(self.frame_path(index), image)


def _run_sort_key(path: Path) -> tuple[str, int]:
    """``20260101-120000-10`` after ``...-2``: the time stamp, then the same-second counter as a number."""
    m = _RUN_ID.match(path.name)
    return (m.group(1), int(m.group(2) or 0)) if m else (path.name, 0)


def _new_run_id(batch_dir: Path) -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS`` plus a counter when two start in the same second."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    rid = stamp
    n = 1
    while (batch_dir / rid).exists():
        rid = f"{stamp}-{n}"
        n += 1
    return rid


class PendingFrame:
    """A uint8 ``(H, W, 3)`` frame being copied from an accelerator into pinned host memory.

    :meth:`from_tensor` starts the copy without waiting for it (no host sync: the frame loop goes on queueing
    the next frame's work); :meth:`result` waits for the copy and is called by :class:`FrameWriter`'s thread.
    On the CPU the frame is simply the array.
    """

    def __init__(self, host: Any, done: Any) -> None:
        self._host, self._done = host, done

    @staticmethod
    def from_tensor(frame: Any) -> Any:
        """``frame``: a uint8 ``(H, W, 3)`` tensor on any device."""
        import torch

        if frame.device.type != "cuda":
            return frame.cpu().numpy()
        host = torch.empty(frame.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(frame, non_blocking=True)
        # Recorded on the frame's own device's stream (the copy's), not the current device's: with cuda:1 the
        # current stream would say "done" at once. Blocking: the waiting thread sleeps instead of spinning a core.
        done = torch.cuda.Event(blocking=True)
        done.record(torch.cuda.current_stream(frame.device))
        return PendingFrame(host, done)

    def result(self) -> Any:
        self._done.synchronize()
        return self._host.numpy()


class FrameWriter:
    """Writes frames and the run record in the background, so PNG encoding and disk I/O overlap the next frame.

    ``submit`` hands over a uint8 (H, W, 3) frame (or a :class:`PendingFrame` still on its way from the GPU) and
    blocks when ``max_pending`` frames are waiting (bounded memory). ``encoders`` threads encode PNGs in parallel
    (Pillow releases the GIL while compressing: one 512x512 frame takes ~30 ms, so a single encoder would cap a
    real-time loop at ~30 frames/s); one writer thread then writes them in order, each atomically, and updates
    the record after each one, so the record never claims a frame that is not on disk. ``close`` waits for
    everything and re-raises the first error; nothing submitted is lost on a normal exit, a stop or an exception
    in the render loop.
    """

    def __init__(
        self,
        folder: RunFolder,
        record: RunRecord,
        on_written: Any = None,
        *,
        max_pending: int = 4,
        encoders: int | None = None,
    ) -> None:
        import queue
        import threading
        from concurrent.futures import ThreadPoolExecutor

        if encoders is None:  # half the cores, at most 4: the render loop keeps the others
            encoders = min(4, max(1, (os.cpu_count() or 2) // 2))
        if encoders < 1 or max_pending < 1:
            raise ValueError(f"encoders and max_pending must be >= 1, got {encoders} and {max_pending}")
        self.folder = folder
        self.record = record
        self.on_written = on_written
        self._pool = ThreadPoolExecutor(encoders, thread_name_prefix="discolib-png")
        self._queue: queue.Queue[tuple[int, Any, int] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._callback_error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="discolib-frame-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def _encode(array: Any) -> tuple[Any, bytes]:
        if isinstance(array, PendingFrame):
            array = array.result()  # waits here, off the frame loop, for the device-to-host copy
        return array, encode_png(array)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # after a failure, drain without writing (close() reports the error)
                index, encoded, seed = item
                array, data = encoded.result()
                path = write_bytes_atomic(self.folder.frame_path(index), data)
                self.record.frames_done = index + 1
                self.record.seeds = [*self.record.seeds[:index], seed]
                self.folder.write_record(self.record)
                if self.on_written is not None:
                    try:
                        self.on_written(index, path, array)
                    except Exception as exc:  # noqa: BLE001 - a failing callback must not stop frames being written
                        if self._callback_error is None:
                            self._callback_error = exc
            except BaseException as exc:  # noqa: BLE001 - handed to the caller in close()
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, index: int, array: Any, seed: int) -> Path:
        """Queue frame ``index`` (uint8 (H, W, 3) numpy array or a :class:`PendingFrame`); returns its path."""
        if self._error is not None:
            raise self._error
        # Encoding starts now on the pool; the bounded queue (not the pool) limits how many frames are in flight.
        self._queue.put((index, self._pool.submit(self._encode, array), seed))
        return self.folder.frame_path(index)

    def flush(self) -> None:
        """Wait until every submitted frame is on disk."""
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self, *, raise_errors: bool = True) -> None:
        """Write what is pending, stop the thread and re-raise the first write error, then the first error of the
        ``on_written`` callback (raised only after every frame is on disk), if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._pool.shutdown(wait=True)
        if raise_errors and self._error is not None:
            raise self._error
        if raise_errors and self._callback_error is not None:
            raise self._callback_error
