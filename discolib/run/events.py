"""What :func:`discolib.run.loop.render` reports while it works, and how a caller stops it.

A callback receives :class:`RenderEvent` objects. A caller stops a render by setting a
:class:`threading.Event` passed as ``stop=``; the sampler checks it after every step and the render then
ends with status ``"stopped"``: the frame in progress is dropped (never half-written) and the run stays
resumable from the last complete frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

__all__ = ["RenderEvent", "RenderResult", "EventCallback"]

EventKind = Literal["start", "step", "frame", "done", "stopped", "error"]


@dataclass
class RenderEvent:
    """One progress report.

    Attributes:
        kind: ``start`` (run folder made), ``step`` (a sampler step; ``preview`` set every ``display_rate``
            steps), ``frame`` (a frame was written to ``path``), ``done``, ``stopped`` or ``error``.
        frame: index of the frame (or still) being made; ``total_frames`` of them in the run.
        step: sampler step within the frame (1-based), of ``total_steps``.
        preview: (1, 3, H, W) float in [0, 1] on the CPU: the current predicted image, when there is one.
        path: the frame file (``frame``) or the run folder (``start``, ``done``, ``stopped``).
        message: human-readable text (the error for ``error``).
        seed: on ``frame`` events, the seed that frame (or still) was made with; None on the others.
    """

    kind: EventKind
    frame: int = 0
    total_frames: int = 1
    step: int = 0
    total_steps: int = 0
    preview: torch.Tensor | None = None
    path: Path | None = None
    message: str = ""
    seed: int | None = None


EventCallback = Callable[[RenderEvent], None]


@dataclass
class RenderResult:
    """What a render produced."""

    run_dir: Path
    status: Literal["done", "stopped"]
    frames: list[Path] = field(default_factory=list)
    video: Path | None = None
    seeds: list[int] = field(default_factory=list)


