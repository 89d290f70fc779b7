"""Run folders, atomic writes and run records.

Layout::

    <output_root>/<batch_name>/<run_id>/
        settings.json      written before any frame
        frames/000000.png  each written atomically (temporary file in the same folder + os.replace)
        kept/              what a resume needs besides the frames (written through the FrameWriter, in order,
                           atomically): diffused/000012.png, each diffused frame's sample while cadence blends,
                           and color_ref.png, the colour coherence reference
        run.json           status, frames done, seed and SHA-256 of each frame, the settings' hash, torch's thread
                           count, package versions: the resume point

A frame is *complete* when its PNG exists under its final name; a killed process leaves at most a ``.tmp``
file, which is ignored and removed on resume. ``run.json`` is rewritten atomically after each frame, always after
the frame's PNG, so it never claims a frame that is not on disk.

A run folder cannot lie to a resume: :meth:`RunFolder.check_settings` refuses a ``settings.json`` that changed since
the run started (its canonical hash is in ``run.json``), :meth:`RunFolder.verify_frames` continues from the first
recorded frame that is missing or whose bytes no longer match their hash, and a ``run.json`` that cannot be read
or holds fields of the wrong type is rebuilt from ``settings.json`` and the frames that decode
(:meth:`RunFolder.rebuild_record`).
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import warnings
import zlib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from discolib.errors import InputError
from discolib.io.files import (
    WriteError,
    encode_png,
    file_mode,
    safe_folder_name,
    save_png_atomic,
    write_bytes_atomic,
    write_text_atomic,
)
from discolib.io.inputs import expand_path, loads_json, read_user_bytes, read_user_text

__all__ = [
    "RunError",
    "settings_digest",
    "RunFolder",
    "resolve_resume",
    "RunRecord",
    "package_versions",
]

FRAME_PATTERN = re.compile(r"^(\d{6})\.png$")
_RUN_ID = re.compile(r"^(\d{8}-\d{6})(?:-(\d+))?$")


#: run.json holds a 64-character hash and a seed per frame (~80 bytes, compact): room for max_frames (10^6) frames.
MAX_RECORD_BYTES = 128 * 1024 * 1024
#: A frame PNG larger than this is not one discolib wrote (an 8192x8192 noise frame at compress level 1 is ~200 MB).
MAX_FRAME_BYTES = 1024 * 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
STATUSES = ("created", "running", "interrupted", "failed", "done")


class RunError(InputError):
    """A run folder cannot be created, read or resumed. The message names the path."""


# ---------------------------------------------------------------------------------------------- atomic writes


# ---------------------------------------------------------------------------------------------- records


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide a run's output."""
    names = [
        "discolib", "torch", "diffusers", "open_clip_torch", "kornia", "transformers", "numpy", "pillow",
        "opencv-python-headless",  # the CPU 2D warp and colour match
    ]
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


def torch_threads() -> tuple[int, int]:
    """torch's intra-op and inter-op thread counts in this process; ``(0, 0)`` without torch.

    The intra-op count decides how CPU reductions are split, so it changes the last bits of CPU frames.
    """
    try:
        import torch
    except ImportError:
        return 0, 0
    return torch.get_num_threads(), torch.get_num_interop_threads()


#: The most threads ``models.threads: 0`` (auto) picks. A guess, not measured beyond 2 cores: a frame's tensors are
#: small enough that OpenMP's barriers eat most of the gain of more threads, while each one more can spin-wait.
MAX_AUTO_THREADS = 8


def auto_threads(current: int, cpus: int | None, affinity: int | None = None, quota: float | None = None) -> int:
    """The thread count of ``models.threads: 0``: one CPU fewer than this process may use, never more than it had.

    Measured on a 2-core machine (docs/REPRODUCIBILITY.md): 2 threads are ~1.6x faster than 1 when the machine is
    idle, but as soon as another process keeps a core busy they are no faster on large convolutions and up to 5x
    slower on chains of small operations (kornia's LAB conversion): OpenMP threads spin-wait at every barrier for
    the one that shares its core. So one CPU is left for the rest of the machine (the frame writer, a browser,
    another render), which gives 1 thread on a 2-core machine. The count depends on the machine and the process's
    torch count, never on the machine's load at the moment, so the same settings render the same bytes there.

    Args:
        current: torch's intra-op count now (``OMP_NUM_THREADS``, ``torch.set_num_threads`` or torch's default
            of the physical cores): auto lowers it, never raises it.
        cpus: ``os.cpu_count()`` (None: unknown).
        affinity: CPUs this process may run on (``len(os.sched_getaffinity(0))``; None: unknown).
        quota: the cgroup's CPU quota in CPUs (``cpu.max`` quota / period; None: no quota), rounded down.

    Returns:
        ``min(current, usable - 1, MAX_AUTO_THREADS)``, at least 1, where ``usable`` is the smallest of ``cpus``,
        ``affinity`` and ``floor(quota)``.
    """
    usable = [n for n in (cpus, affinity) if n]
    if quota:
        usable.append(math.floor(quota))
    n = min(usable, default=1) - 1
    return max(1, min(n, MAX_AUTO_THREADS, current if current > 0 else n))


def _parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"200000 100000"`` or ``"max 100000"``) -> CPUs (2.0), None when unlimited."""
    parts = text.split()
    try:
        if len(parts) == 2 and parts[0] != "max" and int(parts[1]) > 0:
            return int(parts[0]) / int(parts[1])
    except ValueError:
        pass
    return None


def cpu_quota(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (a container's ``--cpus``), None without one or off Linux.

    cgroup v2: the smallest ``cpu.max`` of the process's cgroup and its parents; v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (-1: unlimited).
    """
    found: list[float] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    rel = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), "/")
    here = root / rel.lstrip("/")
    for d in (here, *here.parents):
        try:
            q = _parse_cpu_max((d / "cpu.max").read_text())
        except OSError:
            q = None
        if q is not None:
            found.append(q)
        if d == root:
            break
    for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota_us = int((root / sub / "cpu.cfs_quota_us").read_text())
            period_us = int((root / sub / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            found.append(quota_us / period_us)
    return min(found, default=None)


def threads_for(setting: int) -> int:
    """The CPU thread count a new run renders with: ``models.threads`` when >= 1, else :func:`auto_threads` of
    this process and machine."""
    if setting >= 1:
        return setting
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = None
    return auto_threads(torch_threads()[0], os.cpu_count(), affinity, cpu_quota())


def settings_digest(text: str) -> str:
    """SHA-256 of a settings JSON text in canonical form (keys sorted, no whitespace).

    Canonical, so that re-indenting ``settings.json`` is not a change while any changed value is. Text that is not
    JSON is hashed as it is (it will not load as settings anyway).
    """
    try:
        data = loads_json(text, what="settings.json")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except InputError:
        pass
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_thread_count(v: Any) -> bool:
    # 0 = not recorded (older records). 1024 is far above any machine's cores; more is a damaged or forged record,
    # and handing it to torch.set_num_threads would make OpenMP try to start that many threads.
    return _is_count(v) and v <= 1024


def _is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and _SHA256.match(v) is not None


#: (field, check, what is expected): every field read from run.json is checked before it is used, so a hand-edited
#: or damaged record is "corrupt" (and rebuilt on resume), never a TypeError deep in the render loop.
_FIELD_CHECKS: tuple[tuple[str, Any, str], ...] = (
    ("status", lambda v: v in STATUSES, "one of " + ", ".join(STATUSES)),
    ("frames_total", _is_count, "an integer >= 0"),
    ("frames_done", _is_count, "an integer >= 0"),
    ("seeds", lambda v: isinstance(v, list) and all(map(_is_seed, v)), "a list of integers in 0..2**32-1"),
    ("frame_sha256", lambda v: isinstance(v, list) and all(map(_is_sha256, v)), "a list of SHA-256 hex digests"),
    ("settings_sha256", lambda v: v == "" or _is_sha256(v), "a SHA-256 hex digest"),
    ("torch_threads", _is_thread_count, "an integer from 0 to 1024"),
    ("torch_interop_threads", _is_thread_count, "an integer from 0 to 1024"),
    ("started", lambda v: isinstance(v, str), "a string"),
    ("updated", lambda v: isinstance(v, str), "a string"),
    ("error", lambda v: isinstance(v, str), "a string"),
    ("versions", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "an object of strings"),
    ("extra", lambda v: isinstance(v, dict), "an object"),
)
#: Fields every record has had since the first version; the newer ones default when absent (older records).
_REQUIRED = ("status", "frames_total", "frames_done", "seeds")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class RunRecord:
    """The contents of ``run.json``."""

    status: str = "created"  # created | running | interrupted | failed | done
    frames_total: int = 0
    frames_done: int = 0
    seeds: list[int] = field(default_factory=list)
    #: SHA-256 of each frame's PNG bytes as written (index = frame); resume checks the frames against it.
    frame_sha256: list[str] = field(default_factory=list)
    #: :func:`settings_digest` of settings.json when the run was created ("" in records of older versions).
    settings_sha256: str = ""
    #: ``torch.get_num_threads()`` when the run was created; a resume renders with it (0: not known).
    torch_threads: int = 0
    torch_interop_threads: int = 0  # recorded for the record: it does not change results
    started: str = ""
    updated: str = ""
    versions: dict[str, str] = field(default_factory=package_versions)
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "run.json") -> RunRecord:
        """A record from parsed JSON; raises :class:`RunError` naming the first field that is missing or wrong."""
        if not isinstance(data, dict):
            raise RunError(f"{where}: expected a JSON object, got {type(data).__name__}")
        for key in _REQUIRED:
            if key not in data:
                raise RunError(f"{where}: field {key!r} is missing")
        for key, check, expected in _FIELD_CHECKS:
            if key in data and not check(data[key]):
                raise RunError(f"{where}: field {key!r} is {_short(data[key])}, expected {expected}")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks_intact(data: bytes) -> bool:
    """Every chunk's CRC matches and the file ends with IEND. Pillow checks neither the IDAT CRCs nor the end, so a
    PNG cut a few bytes short (or with a flipped byte in a CRC) would still decode."""
    if not data.startswith(_PNG_SIGNATURE):
        return False
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data) or zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return end == len(data)
        pos = end
    return False


def _png_decodes(data: bytes, size: tuple[int, int]) -> bool:
    """True when ``data`` is a whole RGB PNG of ``size`` = (width, height): every chunk's CRC checked, fully decoded."""
    from PIL import Image

    if not _png_chunks_intact(data):
        return False
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG" or img.mode != "RGB" or img.size != tuple(size):
                return False  # checked before decoding: a wrong header never costs a decode
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False  # truncated (OSError), bad CRC (SyntaxError), not an image at all
    return True


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

    @property
    def kept_dir(self) -> Path:
        """Images a resume needs besides the frames: ``diffused/`` (each diffused frame's sample while cadence
        blends: the written frames are blends of them) and ``color_ref.png`` (the colour coherence reference)."""
        return self.path / "kept"

    def kept_path(self, name: str) -> Path:
        """``kept/<name>.png`` (``name``: ``diffused/000012`` or ``color_ref``)."""
        return self.kept_dir / f"{name}.png"

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls, output_root: str | Path, batch_name: str, settings_json: str, *, run_id: str | None = None, threads: int | None = None
    ) -> RunFolder:
        """Make a new run folder: ``settings.json`` first, then ``run.json`` (with the settings' hash and the thread
        count the run renders with: ``threads``, or torch's count now when None).

        Run ids are unique even when many runs start at once in one batch (the ``mkdir`` is the lock). A folder that
        cannot be fully set up (a full disk) is removed again, with the folders made for it: a bare folder would
        look like a run to ``--resume latest``.
        """
        root = expand_path(output_root, setting="run.output_root")
        batch_dir = root / safe_folder_name(batch_name)
        made = [d for d in (batch_dir, *batch_dir.parents) if not d.exists()]  # deepest first, for the clean-up
        try:
            batch_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"run.output_root: cannot create {batch_dir}: {exc.strerror or exc}") from None
        if not os.access(batch_dir, os.W_OK | os.X_OK):
            raise RunError(f"run.output_root: {batch_dir} is not writable")
        try:
            folder = cls(_make_run_dir(batch_dir, run_id))
        except FileExistsError:
            raise RunError(f"run folder already exists: {batch_dir / str(run_id)}") from None
        except OSError as exc:
            _remove_empty(made)
            raise RunError(f"run.output_root: cannot create a run folder in {batch_dir}: {exc.strerror or exc}") from None
        try:
            folder.frames_dir.mkdir()
            write_text_atomic(folder.settings_path, settings_json)
            intra, interop = torch_threads()
            if threads is not None:
                intra = threads
            rec = RunRecord(
                status="created",
                started=_now(),
                settings_sha256=settings_digest(settings_json),
                torch_threads=intra,
                torch_interop_threads=interop,
            )
            folder.write_record(rec)
        except BaseException as exc:
            shutil.rmtree(folder.path, ignore_errors=True)  # made above by this call (mkdir without exist_ok)
            _remove_empty(made)
            if isinstance(exc, OSError):
                reason = str(exc) if isinstance(exc, WriteError) else exc.strerror or str(exc)
                raise RunError(f"run.output_root: cannot set up the run folder {folder.path}: {reason}") from None
            raise
        return folder

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        """Open an existing run folder (for resume); checks that it holds settings and a record."""
        folder = cls(expand_path(path, setting="--resume"))
        if not folder.path.is_dir():
            raise RunError(f"no run folder at {folder.path}")
        if not folder.settings_path.is_file():
            raise RunError(f"{folder.path} is not a run folder: settings.json is missing")
        return folder

    @classmethod
    def latest(cls, output_root: str | Path, batch_name: str) -> RunFolder:
        """The most recently created run folder of a batch (for ``--resume latest``)."""
        root = expand_path(output_root, setting="run.output_root")
        batch_dir = root / safe_folder_name(batch_name)
        dirs = [batch_dir]
        # Also the folder an older version made from the name as typed (".x", "x.", NFD text), so its runs resume;
        # never a name that leaves output_root (those were always refused).
        if batch_name not in (".", "..") and not any(c in batch_name for c in "/\\") and root / batch_name != batch_dir:
            dirs.append(root / batch_name)
        dirs = [d for d in dirs if d.is_dir()]
        runs = sorted(
            (p for d in dirs for p in d.glob("*") if (p / "settings.json").is_file()), key=_run_sort_key
        )
        if not runs:
            raise RunError(f"no runs to resume in {batch_dir}")
        return cls(runs[-1])

    def resume_state(self) -> tuple[bool, str]:
        """Whether a resume of this run can continue it, and why (for a Resume button and its tooltip).

        ``(True, "N of M frames done")`` when at least one frame is complete (on disk and in ``run.json``) and the
        run is not done; ``(False, why)`` otherwise: no complete frame yet (a resume would only start it again),
        already done, being rendered now, or an unreadable ``run.json`` / ``settings.json``. Cheap: nothing is
        decoded or hashed (the resume itself verifies the frames).
        """
        if not self.settings_path.is_file():
            return False, f"{self.path} is not a run folder: settings.json is missing"
        record, problem = self.try_read_record()
        if record is None:
            return False, f"cannot resume: {problem}"
        if record.status == "done":
            return False, "already done"
        if record.status == "running" and _locked(self.path / "run.lock"):
            return False, "being rendered now"
        # The record vouches for frames 0..frames_done-1, the disk says which of them are still there.
        done = min(record.frames_done, self.resume_point())
        if done == 0:
            return False, "no complete frame yet: render it again"
        total = record.frames_total or done
        return True, f"{done} of {total} frames done"

    # ------------------------------------------------------------------ record
    def read_record(self) -> RunRecord:
        """The run record (a new one when ``run.json`` does not exist).

        Raises:
            RunError: ``run.json`` cannot be read, is not a JSON object, or a field has the wrong type (the message
                names the field).
        """
        if not os.path.lexists(self.record_path):
            return RunRecord()
        where = str(self.record_path)
        try:
            text = read_user_text(self.record_path, setting="run.json", max_bytes=MAX_RECORD_BYTES)
            data = loads_json(text, what=where)
        except RunError:
            raise
        except InputError as exc:
            raise RunError(str(exc)) from None
        return RunRecord.from_dict(data, where=where)

    def try_read_record(self) -> tuple[RunRecord | None, str]:
        """``(record, "")``, or ``(None, why)`` when ``run.json`` is missing or corrupt (see :meth:`read_record`)."""
        if not os.path.lexists(self.record_path):
            return None, f"{self.record_path} is missing"
        try:
            return self.read_record(), ""
        except RunError as exc:
            return None, str(exc)

    def write_record(self, record: RunRecord) -> None:
        record.updated = _now()
        # Compact: the record holds a hash and a seed per frame and is rewritten after every frame, so its size
        # (~80 bytes a frame this way, twice that indented) decides what a long run writes in total.
        data = json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"
        write_text_atomic(self.record_path, data)

    # ------------------------------------------------------------------ resume checks
    def settings_hash(self) -> str:
        """:func:`settings_digest` of the folder's ``settings.json`` as it is now."""
        return settings_digest(read_user_text(self.settings_path, setting="settings.json"))

    def check_settings(self, record: RunRecord) -> None:
        """Refuse to continue a run whose ``settings.json`` changed since the run started.

        Its frames so far follow the old settings and the rest would follow the new ones. A record of an older
        version has no hash: the current one is stored in ``record`` (with a warning that it was not checked).
        """
        digest = self.settings_hash()
        if not record.settings_sha256:
            warnings.warn(
                f"{self.record_path} holds no hash of settings.json (an older discolib made it): cannot check that "
                "settings.json is unchanged since the run started",
                stacklevel=2,
            )
            record.settings_sha256 = digest
        elif record.settings_sha256 != digest:
            raise RunError(
                f"{self.settings_path} changed since this run started (its hash differs from the one in run.json); "
                "its frames follow the old settings: start a new run or restore it"
            )

    def _read_frame(self, index: int) -> bytes | None:
        """The bytes of frame ``index``; None when it is missing or not a regular file (a FIFO must not block)."""
        try:
            return read_user_bytes(self.frame_path(index), setting="frame", max_bytes=MAX_FRAME_BYTES)
        except InputError:
            return None

    def verify_frames(self, record: RunRecord, *, size: tuple[int, int], n_frames: int) -> int:
        """The first frame a resume must render: the first of the recorded frames that is missing or fails.

        Frames ``0 .. frames_done - 1`` (at most ``n_frames``) are checked in order against their SHA-256 in the
        record, or, where the record has none (older versions), by decoding them fully as RGB PNGs of ``size`` =
        (width, height). The record is cut to the frames that verified (their hashes filled in); later frames are
        rendered again: in an animation they depend on the first bad one (and come out byte-identical anyway).
        Frames on disk past the record are never trusted.
        """
        hashes = record.frame_sha256
        good: list[str] = []
        for i in range(min(record.frames_done, n_frames)):
            data = self._read_frame(i)
            if data is None:
                break
            digest = _sha256(data)
            if (digest != hashes[i]) if i < len(hashes) else not _png_decodes(data, size):
                break
            good.append(digest)
        k = len(good)
        record.frames_done = k
        record.frame_sha256 = good
        record.seeds = record.seeds[:k]
        return k

    def rebuild_record(self, *, size: tuple[int, int], n_frames: int, reason: str) -> RunRecord:
        """A new record for a run whose ``run.json`` cannot be used (``reason`` says why), warning once.

        Its frames are those that decode as RGB PNGs of ``size`` in order from frame 0, up to the first that does
        not; ``settings.json`` is taken as it is (the record that could have said otherwise is gone).
        """
        good: list[str] = []
        for i in range(n_frames):
            data = self._read_frame(i)
            if data is None or not _png_decodes(data, size):
                break
            good.append(_sha256(data))
        record = RunRecord(
            status="interrupted",
            frames_done=len(good),
            frame_sha256=good,
            settings_sha256=self.settings_hash(),
            started=_now(),
            extra={"rebuilt": f"{_now()}: {reason}"},
        )
        warnings.warn(
            f"run.json of {self.path} could not be used ({reason}); rebuilt it from settings.json and the "
            f"{len(good)} frame(s) that decode",
            stacklevel=2,
        )
        return record

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
        """One past the last frame of the unbroken run 0..k of frames on disk (not verified: a resume of a render
        uses :meth:`verify_frames`, which trusts only what the record vouches for)."""
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

    def lock(self) -> RunLock:
        """Take this run folder for one render (an advisory lock on ``run.lock``, released when the process ends).

        A second render or resume of the same folder while one is running is refused with a one-line RunError:
        it would delete the running process's temporary files and both would rewrite run.json.
        """
        return RunLock(self.path / "run.lock")


def _locked(path: Path) -> bool:
    """True when another open file (this process's included) holds the flock of ``path``; False without fcntl.

    Asked only of runs whose record says "running" (a crash leaves that status behind), so the brief test lock
    never races with a render starting in a folder at rest.
    """
    if not path.is_file():
        return False
    try:
        import fcntl  # why here: POSIX only, as in RunLock
    except ImportError:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)  # read-only: a crashed run in a read-only folder is not "being rendered"
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails only while a render holds its exclusive lock
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def resolve_resume(spec: str | Path | None, output_root: str | Path, batch_name: str) -> RunFolder | None:
    """The run folder a resume parameter names, as Disco's ``resume_run`` does: None or ``""`` -> None (a new run);
    ``"latest"`` -> the newest run of ``output_root/batch_name``; anything else -> that run folder.

    Raises:
        RunError: no runs in the batch, or the path is not a run folder (the message names the path).
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    if isinstance(spec, str) and spec.strip() == "latest":
        return RunFolder.latest(output_root, batch_name)
    return RunFolder.open(spec.strip() if isinstance(spec, str) else spec)


class RunLock:
    """An exclusive ``flock`` on a file in a run folder; a context manager. No-op where ``fcntl`` is missing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one render per folder is then the user's to keep
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            raise RunError(f"cannot lock {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunError(f"{path.parent} is being rendered by another process; wait for it or stop it first") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _run_sort_key(path: Path) -> tuple[str, int]:
    """``20260101-120000-10`` after ``...-2``: the time stamp, then the same-second counter as a number."""
    m = _RUN_ID.match(path.name)
    return (m.group(1), int(m.group(2) or 0)) if m else (path.name, 0)


#: Runs started within one second of each other in one batch get ``-1``, ``-2``, ... up to this many.
_MAX_SAME_SECOND = 100_000


def _make_run_dir(batch_dir: Path, run_id: str | None) -> Path:
    """Create the run's folder and return it; ``run_id`` None makes a sortable, unique one.

    ``YYYYmmdd-HHMMSS``, plus a counter when others started in the same second. ``mkdir`` without ``exist_ok`` is
    atomic, so it is the lock: a process that loses the race for one id takes the next (an exists-then-mkdir check
    would let two processes pick the same id and fail one with "already exists").
    """
    if run_id is not None:
        path = batch_dir / run_id
        path.mkdir()
        return path
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(_MAX_SAME_SECOND):
        path = batch_dir / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise OSError(errno.EEXIST, f"{_MAX_SAME_SECOND} runs started in {batch_dir} within one second")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed :meth:`RunFolder.create` made, deepest first, while they are empty."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return  # not empty (another run uses it) or already gone: leave it and its parents


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

    @staticmethod
    def from_image(image: Any) -> Any:
        """``image``: ``(1, 3, H, W)`` in [0, 1] on any device -> its 8-bit frame (:func:`discolib.animation.coherence.to_u8_tensor`) through
        :meth:`from_tensor`: the one device-to-host copy of a written frame. On CUDA it makes no host sync: the
        writer's thread waits for the copy, so the loop queues the next frame's work meanwhile."""
        # (here, not at the top: this module is imported without torch, and coherence imports it)
        from discolib.animation.coherence import to_u8_tensor

        return PendingFrame.from_tensor(to_u8_tensor(image))

    def result(self) -> Any:
        self._done.synchronize()
        return self._host.numpy()

    @staticmethod
    def resolve(frame: Any) -> Any:
        """A frame from :meth:`from_tensor` as a uint8 ``(H, W, 3)`` numpy array (waits for a pending copy)."""
        return frame.result() if isinstance(frame, PendingFrame) else frame


class FrameWriter:
    """Writes frames and the run record in the background, so PNG encoding and disk I/O overlap the next frame.

    ``submit`` hands over a uint8 (H, W, 3) frame (or a :class:`PendingFrame` still on its way from the GPU) and
    blocks when ``max_pending`` frames are waiting (bounded memory). ``encoders`` threads encode PNGs in parallel
    (Pillow releases the GIL while compressing: one 512x512 frame takes ~30 ms, so a single encoder would cap a
    real-time loop at ~30 frames/s); one writer thread then writes them in order, each atomically, and updates
    the record after each one (with the SHA-256 of the bytes written), so the record never claims a frame that is
    not on disk. ``close`` waits for
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
        array = PendingFrame.resolve(array)  # waits here, off the frame loop, for the device-to-host copy
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
                if isinstance(index, Path):  # an extra image (submit_image): written in order, not recorded
                    write_bytes_atomic(index, encoded.result()[1])
                    continue
                array, data = encoded.result()
                path = write_bytes_atomic(self.folder.frame_path(index), data)
                # The record follows the PNG (never the other way round) and vouches for its exact bytes.
                self.record.frames_done = index + 1
                self.record.seeds = [*self.record.seeds[:index], seed]
                hashes = self.record.frame_sha256
                if len(hashes) >= index:  # else an earlier frame has no hash: leave the list short (decode-checked)
                    self.record.frame_sha256 = [*hashes[:index], _sha256(data)]
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

    def submit_image(self, path: Path, array: Any) -> Path:
        """Queue an image that is not a frame (e.g. a diffused cadence frame a resume needs, under
        :meth:`RunFolder.kept_path`): written atomically to ``path`` after everything submitted before it and
        before everything submitted after it; the record does not list it."""
        if self._error is not None:
            raise self._error
        self._queue.put((path, self._pool.submit(self._encode, array), -1))  # type: ignore[arg-type]
        return path

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
