"""Shared benchmark plumbing: the run context, figures, device-aware timers, the text table.

Timing rules (the same for every benchmark):

* CPU: ``time.perf_counter`` around the call.
* CUDA: ``torch.cuda.Event(enable_timing=True)`` pairs recorded on the current stream, read after
  ``Event.synchronize()``; stage timers record one event per stage boundary and synchronise once at the end of the
  frame, so timing does not serialise the pipeline more than the frame hand-off already does. CUDA timing lives
  here, never in the library.
* Every figure is the median of ``repeats`` runs after ``warmup`` untimed runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = [
    "BenchContext",
    "BenchResult",
    "Figure",
    "StageTimer",
    "format_table",
    "median",
    "sync",
    "time_call",
]


@dataclass
class BenchContext:
    """What every benchmark gets from the command line.

    Attributes:
        device: where models and tensors live.
        dtype: model precision (bf16/fp16 on CUDA, float32 on the CPU).
        quick: smaller sizes and fewer repeats (labelled in every figure's note).
        smoke: tiny sizes for the test suite (seconds; the numbers mean nothing).
        warmup: untimed runs before timing.
        repeats: timed runs; figures are their median.
        compile: ``torch.compile`` the latent UNet (CUDA fast path; slow first call).
        compile_mode: ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs: the shapes of the
            frame loop are static) or ``"max-autotune"``.
    """

    device: torch.device
    dtype: torch.dtype
    quick: bool = False
    smoke: bool = False
    warmup: int = 1
    repeats: int = 5
    compile: bool = False
    compile_mode: str = "default"

    @property
    def cuda(self) -> bool:
        """Whether the benchmark runs on a CUDA device."""
        return self.device.type == "cuda"


@dataclass
class Figure:
    """One measured number with its unit and what it means (sizes, settings, caveats)."""

    name: str
    value: float
    unit: str
    note: str = ""
    samples: list[float] = field(default_factory=list)


@dataclass
class BenchResult:
    """The figures of one benchmark, its configuration, and why it was skipped (if it was)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    skipped: str | None = None

    def add(self, name: str, value: float, unit: str, note: str = "", samples: Sequence[float] = ()) -> Figure:
        """Append a figure (``samples``: the individual timed runs, kept in the JSON)."""
        fig = Figure(name, float(value), unit, note, [round(float(s), 4) for s in samples])
        self.figures.append(fig)
        return fig

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"name", "config", "skipped", "figures": [{"name", "value", "unit", ...}]}``."""
        return {
            "name": self.name,
            "config": self.config,
            "skipped": self.skipped,
            "figures": [asdict(f) for f in self.figures],
        }


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def sync(device: torch.device) -> None:
    """Wait for queued device work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], ctx: BenchContext, *, warmup: int | None = None, repeats: int | None = None) -> list[float]:
    """Milliseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (CUDA: event timing)."""
    n_warm = ctx.warmup if warmup is None else warmup
    n_rep = ctx.repeats if repeats is None else repeats
    for _ in range(n_warm):
        fn()
    sync(ctx.device)
    out: list[float] = []
    for _ in range(n_rep):
        if ctx.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            out.append(float(start.elapsed_time(end)))
        else:
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


class StageTimer:
    """Per-stage milliseconds of one frame: call :meth:`start`, then :meth:`mark` after each stage, then :meth:`stop`.

    On CUDA each mark records an event on the current stream (no synchronisation); :meth:`stop` waits for the last
    one and returns the elapsed time between consecutive marks. On the CPU marks are ``perf_counter`` readings.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._marks: list[tuple[str, Any]] = []

    def _now(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        """Begin a frame."""
        self._marks = [("", self._now())]

    def mark(self, stage: str) -> None:
        """The stage named ``stage`` has just been queued (CUDA) or finished (CPU)."""
        self._marks.append((stage, self._now()))

    def stop(self) -> dict[str, float]:
        """``{stage: ms}`` for the frame, plus ``"total"``."""
        out: dict[str, float] = {}
        if self.cuda:
            self._marks[-1][1].synchronize()
            for (_, a), (name, b) in zip(self._marks, self._marks[1:], strict=False):
                out[name] = out.get(name, 0.0) + float(a.elapsed_time(b))
            out["total"] = float(self._marks[0][1].elapsed_time(self._marks[-1][1]))
        else:
            for (_, a), (name, b) in zip(self._marks, self._marks[1:], strict=False):
                out[name] = out.get(name, 0.0) + (b - a) * 1000.0
            out["total"] = (self._marks[-1][1] - self._marks[0][1]) * 1000.0
        return out


def _fmt_value(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def format_table(results: Sequence[BenchResult]) -> str:
    """A fixed-width text table of every figure (skipped benchmarks as one line with the reason)."""
    rows: list[tuple[str, str, str, str, str]] = []
    for r in results:
        if r.skipped:
            rows.append((r.name, "(skipped)", "", "", r.skipped))
            continue
        for f in r.figures:
            rows.append((r.name, f.name, _fmt_value(f.value), f.unit, f.note))
    header = ("benchmark", "figure", "value", "unit", "note")
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    widths[4] = len(header[4])  # the note column is last and not padded

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1]), cells[2].rjust(widths[2]), cells[3].ljust(widths[3])]
        return "  ".join(parts) + ("  " + cells[4] if cells[4] else "")

    sep = "  ".join("-" * w for w in widths[:4]) + "  " + "-" * 4
    return "\n".join([line(header), sep, *(line(row) for row in rows)])
