"""Running a sweep: one ordinary run folder per variant, ``sweep.json`` saying where each stands, a contact sheet.

The sweep folder (``out``)::

    sweep.json            every variant: its overrides, label, run folder, status (written atomically, after every
                          change of state)
    contact_sheet.png     each variant's last (or chosen) frame, labelled by its overrides
    runs/<variant id>/<run id>/    the run folder `render` makes (settings.json, run.json, frames/, the video)

A re-run of the same sweep into the same folder skips the variants whose run is done (no model is loaded when all
are) and resumes the others exactly (``render(resume=...)``: byte-identical frames). A variant that fails is marked
``failed`` with a one-line error and the others go on; Ctrl-C stops the sweep with ``sweep.json`` saying
``interrupted``. The ``local`` executor renders the variants one at a time in this process, inside
:func:`~discolib.models.load.shared_models` (each model loaded once); ``ray`` hands them to
:mod:`discolib.run.sweep_ray`. The folder itself (sweep.json, :func:`run_variant`, the contact sheet) is
:mod:`discolib.run.sweep_folder`, which both executors build on. Every run folder and sweep file is inside ``out``
(model downloads go to ``models.models_root`` or the cache; Ray keeps its session files in its own temp folder).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from discolib.config.sweep import SweepError, SweepSpec, Variant, load_sweep, parse_sweep
from discolib.errors import InputError, one_line
from discolib.io.inputs import expand_path
from discolib.run.sweep_folder import (
    SHEET_FILE,
    SWEEP_FILE,
    SweepResult,
    VariantState,
    VariantStatus,
    make_contact_sheet,
    read_sweep,
    run_variant,
    spec_digest,
    variant_frame,
    variant_on_disk,
    variant_output,
    write_sweep,
)
from discolib.run.sweep_ray import run_ray  # ray itself is imported there only when a Ray sweep runs

__all__ = [
    "SHEET_FILE",
    "SWEEP_FILE",
    "SweepResult",
    "VariantState",
    "VariantStatus",
    "make_contact_sheet",
    "read_sweep",
    "run_variant",
    "sweep",
    "variant_frame",
    "variant_output",
    "write_sweep",
]

# ---------------------------------------------------------------------------------------------- the sweep


def _spec_of(sweep_in: str | Path | dict | SweepSpec, max_variants: int | None) -> SweepSpec:
    if isinstance(sweep_in, SweepSpec):
        return sweep_in
    if isinstance(sweep_in, dict):
        return parse_sweep(sweep_in, max_variants=max_variants)
    if isinstance(sweep_in, (str, Path)):
        return load_sweep(sweep_in, max_variants=max_variants)
    raise SweepError(f"sweep: expected a sweep file path, a dict or a SweepSpec, got {type(sweep_in).__name__}")


def _resolve_seed(spec: SweepSpec, header: dict[str, Any] | None) -> SweepSpec:
    """A base seed of -1 with a seeds axis: the seed recorded in sweep.json, else a new random one."""
    if not spec.needs_seed:
        return spec
    recorded = header.get("base_seed") if header else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and 0 <= recorded <= 2**32 - spec.seeds:
        return spec.with_base_seed(recorded)
    return spec.with_base_seed(secrets.randbelow(2**32 - spec.seeds + 1))


def sweep(
    sweep: str | Path | dict | SweepSpec,
    out: str | Path,
    *,
    executor: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    gpus_per_run: float | None = None,
    max_variants: int | None = None,
    frame: int | None = None,
    progress: bool = True,
    callback: Callable[[VariantState], None] | None = None,
) -> SweepResult:
    """Run every variant of a sweep (a file, a dict or a parsed :class:`SweepSpec`) into the sweep folder ``out``.

    Everything is validated before anything renders. A folder that already holds this sweep continues it: done
    variants are skipped, interrupted ones resumed; a folder holding another sweep is refused. ``callback`` gets
    each variant's state when it starts and when it ends. Returns the states and the contact sheet.

    Raises:
        SweepError: an invalid sweep, or ``out`` holds a different sweep.
        InputError: a bad executor or option.
    """
    if executor not in ("local", "ray"):
        raise InputError(f"executor: expected 'local' or 'ray', got {executor!r}")
    if gpus_per_run is not None and (
        isinstance(gpus_per_run, bool) or not isinstance(gpus_per_run, int | float) or not 0 <= gpus_per_run <= 1024
    ):
        raise InputError(f"gpus_per_run: expected a number of GPUs from 0 to 1024, got {gpus_per_run!r}")
    if executor == "local" and (ray_address is not None or gpus_per_run is not None):
        raise InputError("ray_address and gpus_per_run are options of the ray executor (executor='ray')")
    spec = _spec_of(sweep, max_variants)
    sweep_dir = expand_path(out, setting="--out")
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise SweepError(f"--out: {sweep_dir} is not a folder")
    header: dict[str, Any] | None = None
    if (sweep_dir / SWEEP_FILE).exists():
        header, _old = read_sweep(sweep_dir)
    spec = _resolve_seed(spec, header)
    if header is not None and header.get("digest") != spec_digest(spec):
        raise SweepError(
            f"--out: {sweep_dir} holds another sweep (its base settings or axes differ); choose another folder"
        )
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"--out: cannot create {sweep_dir}: {exc.strerror or exc}") from None

    states = [variant_on_disk(sweep_dir, v) for v in spec.variants]
    write_sweep(sweep_dir, spec, states, executor=executor)
    todo = [v for v, s in zip(spec.variants, states, strict=True) if s.status != "done"]

    def on_state(state: VariantState) -> None:
        states[state.index] = state
        write_sweep(sweep_dir, spec, states, executor=executor)
        if callback is not None:
            callback(state)

    if todo and executor == "ray":
        for state in run_ray(
            spec, sweep_dir, todo, address=ray_address, gpus_per_run=gpus_per_run, progress=progress, on_state=on_state
        ):
            states[state.index] = state
        write_sweep(sweep_dir, spec, states, executor=executor)
    elif todo:
        _run_local(spec, sweep_dir, todo, states, on_state, progress)
    sheet = None
    if any(variant_frame(sweep_dir, s, frame) is not None for s in states):
        sheet = make_contact_sheet(sweep_dir, frame=frame)
    return SweepResult(sweep_dir, states, sheet)


def _run_local(
    spec: SweepSpec,
    sweep_dir: Path,
    todo: list[Variant],
    states: list[VariantState],
    on_state: Callable[[VariantState], None],
    progress: bool,
) -> None:
    """The variants one at a time in this process, sharing loaded models; Ctrl-C leaves sweep.json saying
    ``interrupted`` for the variant it stopped."""
    # Here, not at the top: the model loaders import torch and the model libraries (seconds), which reading a
    # sweep folder (the notebook gallery, read_sweep) never needs.
    from discolib.models.load import shared_models

    with shared_models():
        for variant in todo:
            running = dataclasses.replace(states[variant.index], status="running", error="")
            on_state(running)
            try:
                on_state(run_variant(spec, variant, sweep_dir, progress=progress))
            except BaseException as exc:
                stopped = variant_on_disk(sweep_dir, variant)
                if stopped.status != "done":
                    stopped.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                    if not isinstance(exc, KeyboardInterrupt):
                        stopped.error = f"{type(exc).__name__}: {one_line(exc, 300)}"
                on_state(stopped)  # sweep.json and the caller's callback (the CLI line, the notebook's progress)
                raise
