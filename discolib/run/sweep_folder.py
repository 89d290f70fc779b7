"""A sweep's folder: ``sweep.json`` (every variant's state), one run folder per variant, the contact sheet, and
:func:`run_variant`, the one variant render both executors call (:mod:`discolib.run.sweep` runs the variants here;
:mod:`discolib.run.sweep_ray` on Ray workers). See :mod:`discolib.run.sweep` for the folder's layout.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from discolib.config.sweep import SweepError, SweepSpec, Variant
from discolib.errors import InputError, one_line
from discolib.io.files import save_png_atomic, write_json_atomic
from discolib.io.inputs import expand_path, loads_json, read_user_text
from discolib.run.runs import RunError, RunFolder

__all__ = [
    "RUNS_DIR",
    "SHEET_FILE",
    "SWEEP_FILE",
    "SweepResult",
    "VariantState",
    "VariantStatus",
    "make_contact_sheet",
    "read_sweep",
    "run_variant",
    "spec_digest",
    "variant_frame",
    "variant_on_disk",
    "variant_output",
    "write_sweep",
]

SWEEP_FILE = "sweep.json"
SHEET_FILE = "contact_sheet.png"
RUNS_DIR = "runs"
SWEEP_VERSION = 1
VariantStatus = Literal["pending", "running", "done", "failed", "interrupted"]
_STATUSES: tuple[str, ...] = get_args(VariantStatus)
_LOCK = threading.Lock()  # sweep.json's writers in this process (a notebook may run sweeps from threads)


@dataclass
class VariantState:
    """One entry of sweep.json's ``"variants"``."""

    id: str
    index: int
    overrides: dict[str, Any]
    label: str
    #: relative to the sweep folder: ``"runs/<variant id>/<run id>"`` (None before its run folder exists)
    run_dir: str | None
    status: VariantStatus
    error: str = ""
    frames_done: int = 0
    frames_total: int = 0
    #: the run's video, relative to the sweep folder (None: none yet, or output.make_video off)
    video: str | None = None

    @classmethod
    def pending(cls, variant: Variant) -> VariantState:
        return cls(variant.id, variant.index, dict(variant.overrides), variant.label, None, "pending")

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> VariantState:
        """A state from sweep.json; a :class:`SweepError` names the first field that is missing or wrong."""
        if not isinstance(data, dict):
            raise SweepError(f"{where}: expected an object, got {type(data).__name__}")
        checks: list[tuple[str, Callable[[Any], bool], str]] = [
            ("id", lambda v: isinstance(v, str) and bool(v), "a variant id"),
            ("index", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an index >= 0"),
            ("overrides", lambda v: isinstance(v, dict), "an object"),
            ("label", lambda v: isinstance(v, str), "a string"),
            ("run_dir", lambda v: v is None or (isinstance(v, str) and _inside(v)), "null or a path inside the sweep"),
            ("status", lambda v: v in _STATUSES, f"one of {', '.join(_STATUSES)}"),
            ("error", lambda v: isinstance(v, str), "a string"),
            ("frames_done", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
            ("frames_total", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a count"),
            ("video", lambda v: v is None or (isinstance(v, str) and _inside(v)), "null or a path inside the sweep"),
        ]
        for key, ok, expected in checks:
            if key not in data and key in ("id", "index", "overrides", "label", "run_dir", "status"):
                raise SweepError(f"{where}: field {key!r} is missing")
            if key in data and not ok(data[key]):
                raise SweepError(f"{where}: field {key!r} is {one_line(repr(data[key]), 60)}, expected {expected}")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _inside(rel: str) -> bool:
    """A relative path that stays inside the sweep folder (sweep.json is read back: it must not point elsewhere)."""
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and "\x00" not in rel


@dataclass
class SweepResult:
    """What :func:`sweep` made: the sweep folder, every variant's state, the contact sheet (None: no frame yet)."""

    path: Path
    variants: list[VariantState]
    contact_sheet: Path | None

    @property
    def ok(self) -> bool:
        """Every variant is done."""
        return all(v.status == "done" for v in self.variants)


# ---------------------------------------------------------------------------------------------- one variant


def variant_output(sweep_dir: Path, variant_id: str) -> tuple[Path, str]:
    """``(output_root, batch_name)`` of a variant's run: ``(sweep_dir / "runs", variant_id)``."""
    return Path(sweep_dir) / RUNS_DIR, variant_id


def _latest_run(sweep_dir: Path, variant_id: str) -> RunFolder | None:
    root, batch = variant_output(sweep_dir, variant_id)
    if not (root / batch).is_dir():
        return None
    try:
        return RunFolder.latest(root, batch)
    except RunError:
        return None


def _relative(sweep_dir: Path, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(Path(sweep_dir).resolve()).as_posix()
    except ValueError:  # not inside the sweep folder (cannot happen for its own runs): leave it out
        return None


def _state_from_run(state: VariantState, sweep_dir: Path, folder: RunFolder) -> VariantState:
    """``state`` updated from its run folder's run.json (frames done, total, video); the status is the caller's."""
    state.run_dir = _relative(sweep_dir, folder.path)
    record, _problem = folder.try_read_record()
    if record is not None:
        state.frames_done, state.frames_total = record.frames_done, record.frames_total
    videos = sorted(p for p in folder.path.glob("*") if p.suffix.lower() in (".mp4", ".webm", ".gif", ".mov"))
    state.video = _relative(sweep_dir, videos[0]) if videos else None
    return state


def variant_on_disk(sweep_dir: Path, variant: Variant) -> VariantState:
    """The state of ``variant`` as its run folder says: done (complete), interrupted (a run to resume), or pending
    (no run yet). Reads run.json only: no model, no frame decoded."""
    state = VariantState.pending(variant)
    folder = _latest_run(Path(sweep_dir), variant.id)
    if folder is None:
        return state
    _state_from_run(state, Path(sweep_dir), folder)
    record, problem = folder.try_read_record()
    if record is not None and record.status == "done" and record.frames_done >= record.frames_total > 0:
        state.status = "done"
    else:
        state.status = "interrupted"
        if record is not None and record.status == "failed":
            state.error = record.error.splitlines()[0] if record.error else ""
        elif record is None:
            state.error = problem
    return state


def run_variant(
    spec: SweepSpec,
    variant: Variant,
    sweep_dir: Path,
    *,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> VariantState:
    """Render ``variant`` into ``<sweep_dir>/runs/<variant id>/``, resume its unfinished run, or do nothing when its
    run is done; returns its state.

    A variant's own failure (its settings, a render error) is status ``failed`` with a one-line error
    ``"<TypeName>: message"``: it never raises for it, so the other variants go on. ``stop`` set: status
    ``interrupted`` (resumable). KeyboardInterrupt and other BaseExceptions propagate (the caller records them).
    Models come through the active :func:`~discolib.models.load.shared_models` cache, if any.
    """
    # Here, not at the top: the render loop imports torch and every model library; reading sweep.json (the
    # gallery widget) needs none of them.
    from discolib.run.loop import render

    sweep_dir = Path(sweep_dir)
    state = variant_on_disk(sweep_dir, variant)
    if state.status == "done":
        return state
    try:
        if state.run_dir is not None:
            result = render(spec.base_settings(), resume=sweep_dir / state.run_dir, progress=progress, stop=stop)
        else:
            settings = spec.settings_for(variant)
            root, batch = variant_output(sweep_dir, variant.id)
            settings.run.batch_name = batch
            result = render(settings, out=root, progress=progress, stop=stop)
    except Exception as exc:  # noqa: BLE001 - a variant's failure is recorded, the sweep goes on
        state.status = "failed"
        state.error = f"{type(exc).__name__}: {one_line(exc, 300)}"
        folder = _latest_run(sweep_dir, variant.id)
        if folder is not None:
            _state_from_run(state, sweep_dir, folder)
        return state
    _state_from_run(state, sweep_dir, RunFolder(result.run_dir))
    state.error = ""
    state.status = "done" if result.status == "done" else "interrupted"
    if result.video is not None:
        state.video = _relative(sweep_dir, Path(result.video))
    return state


# ---------------------------------------------------------------------------------------------- sweep.json


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def spec_digest(spec: SweepSpec) -> str:
    """SHA-256 of what decides the variants' frames (the base settings and the axes): a folder holds one sweep."""
    text = json.dumps({"base": spec.base, "axes": spec.axes}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_sweep(sweep_dir: Path, spec: SweepSpec, states: list[VariantState], *, executor: str | None = None) -> None:
    """Write ``sweep.json`` atomically (temporary file + rename): a reader never sees half a file. ``executor`` None
    keeps the one the file names (``"local"`` for a new file)."""
    path = Path(sweep_dir) / SWEEP_FILE
    with _LOCK:
        if executor is None:
            executor = "local"
            if path.is_file():
                try:
                    executor = str(read_sweep(sweep_dir)[0].get("executor", "local"))
                except SweepError:
                    pass  # rewritten whole just below
        header = {
            "version": SWEEP_VERSION,
            "source": spec.source,
            "base_seed": spec.base["run"]["seed"] if spec.seeds else None,
            "digest": spec_digest(spec),
            "axes": spec.axes,
            "executor": executor,
            "updated": _now(),
        }
        write_json_atomic(path, {**header, "variants": [s.to_dict() for s in states]})


def read_sweep(sweep_dir: str | Path) -> tuple[dict[str, Any], list[VariantState]]:
    """``(header, variants)`` of a sweep folder's sweep.json; a :class:`SweepError` if it is missing or unreadable."""
    try:
        path = expand_path(sweep_dir, setting="sweep folder") / SWEEP_FILE
        data = loads_json(read_user_text(path, setting="sweep.json"), what=str(path))
    except InputError as exc:
        raise SweepError(str(exc)) from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("version") != SWEEP_VERSION:
        raise SweepError(f"{path}: version {one_line(repr(data.get('version')), 40)} is not {SWEEP_VERSION}")
    variants = data.get("variants")
    if not isinstance(variants, list):
        raise SweepError(f"{path}: field 'variants' is missing or not a list")
    states = [VariantState.from_dict(v, where=f"{path}: variants[{i}]") for i, v in enumerate(variants)]
    header = {k: v for k, v in data.items() if k != "variants"}
    return header, states


# ---------------------------------------------------------------------------------------------- contact sheet


def variant_frame(sweep_dir: Path, state: VariantState, frame: int | None = None) -> Path | None:
    """The PNG of frame ``frame`` (None: the last complete one; negative: from the end) of a variant's run, or None
    when it has no such frame yet."""
    if state.run_dir is None or not _inside(state.run_dir):
        return None
    folder = RunFolder(Path(sweep_dir) / state.run_dir)
    record, _problem = folder.try_read_record()
    done = record.frames_done if record is not None else state.frames_done
    if done <= 0:
        return None
    index = done - 1 if frame is None else (done + frame if frame < 0 else frame)
    if not 0 <= index < done:
        return None
    path = folder.frame_path(index)
    return path if path.is_file() else None


def make_contact_sheet(sweep_dir: str | Path, *, frame: int | None = None) -> Path:
    """``contact_sheet.png`` in the sweep folder: each variant's last (or ``frame``-th) frame labelled by its
    overrides; a variant without that frame is a plain tile saying why (``failed: <error>``, ``pending``...)."""
    from PIL import Image  # here: Pillow is only needed for the sheet

    from discolib.io.sheets import contact_sheet  # here: with Pillow, for the sheet only

    sweep_dir = Path(sweep_dir)
    _header, states = read_sweep(sweep_dir)
    if not states:
        raise SweepError(f"{sweep_dir / SWEEP_FILE}: no variants")
    images: list[Any] = []
    labels: list[str] = []
    size: tuple[int, int] | None = None
    for state in states:
        path = variant_frame(sweep_dir, state, frame)
        image = None
        if path is not None:
            try:
                with Image.open(path) as im:
                    image = im.convert("RGB")
            except OSError:
                image = None
        if image is not None:
            size = size or image.size
            labels.append(state.label)
        elif state.status == "failed":
            labels.append(f"failed: {state.error or 'no frame'}")
        else:
            missing = "no frame yet" if frame is None else f"no frame {frame}"
            labels.append(f"{state.status}: {missing} · {state.label}")
        images.append(image)
    tile = size or (64, 64)
    thumb = 256
    # Small frames (64 px test renders) are scaled up, pixels kept sharp: the tiles must be wide enough for labels.
    scale = max(1, thumb // max(tile))
    images = [
        (im if im is not None else Image.new("RGB", tile, (40, 40, 40))).resize(
            (tile[0] * scale, tile[1] * scale), Image.Resampling.NEAREST
        )
        if scale > 1 else (im if im is not None else Image.new("RGB", tile, (40, 40, 40)))
        for im in images
    ]
    sheet = contact_sheet(images, labels, thumb=thumb, label_size=12)
    return save_png_atomic(sweep_dir / SHEET_FILE, sheet)
