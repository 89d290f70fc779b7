"""Plots of keyframe schedules (the notebook panel's previews, ``discolib schedule --plot``): matplotlib, optional."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from discolib.errors import DiscolibError
from discolib.io.fonts import label_font_families
from discolib.schedules.expr import AudioSource
from discolib.schedules.keyframes import Schedule, StringSchedule, check_frames

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_schedule"]


def plot_schedule(
    sched: Schedule | StringSchedule | str,
    n_frames: int,
    path: str | None = None,
    ax: Axes | None = None,
    *,
    seed: int = 0,
    audio: AudioSource | None = None,
) -> Figure:
    """Plot a schedule over ``n_frames`` frames (keys marked); saves a PNG/SVG to ``path`` when given. ``audio``:
    the soundtrack's features, for a schedule that reads them (its curve over the song).

    A new figure is a plain ``Figure`` on the Agg canvas (no pyplot state, works headless). String schedules are
    drawn as steps between their distinct values. Needs matplotlib (``pip install "discolib[notebook]"``); without
    it this raises :class:`~discolib.errors.DiscolibError` saying so.
    """
    # Imported here, not at the top: matplotlib is the optional extra discolib[notebook] (and slow to import), so
    # importing this module must work without it; only drawing needs it.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DiscolibError('plotting schedules needs matplotlib: pip install "discolib[notebook]"') from None

    if isinstance(sched, str):
        sched = Schedule.parse(sched)
    # Prompts and setting names are typed in any script: DejaVu Sans, then the packaged CJK font, glyph by glyph.
    families = list(label_font_families())
    if ax is None:
        fig = Figure(figsize=(6, 2.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    frames = np.arange(check_frames(n_frames, sched.setting))
    if isinstance(sched, StringSchedule):
        labels = sched.values(n_frames, audio)
        options = sched.options
        ax.step(frames, [options.index(v) for v in labels], where="post")
        ax.set_yticks(range(len(options)), options, fontfamily=families)
    else:
        values = sched.values(n_frames, seed=seed, audio=audio)
        ax.plot(frames, values, lw=1.5)
        keys = sorted({k.frame_for(n_frames, audio) for k in sched.keys} & set(range(n_frames)))  # keys outside the run are ignored
        ax.plot(keys, values[keys], "o", ms=4)
    ax.set_xlabel("frame")
    ax.set_title(sched.setting or sched.text[:60], fontsize=9, fontfamily=families)
    ax.grid(alpha=0.3)
    if path is not None:
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        with warnings.catch_warnings():
            # Without the CJK font package, CJK glyphs draw as boxes: a known fallback, not news for every plot.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            fig.savefig(path, dpi=100)
    return fig  # type: ignore[return-value]
