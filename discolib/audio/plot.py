"""A picture of a soundtrack's features: envelope, curves, beats and bars over the video's frames (matplotlib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from discolib.audio.features import AudioFeatures
from discolib.errors import DiscolibError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_features"]

_COLOURS = {"rms": "0.35", "onset": "tab:orange", "bass": "tab:red", "mid": "tab:green", "treble": "tab:blue"}


def plot_features(
    features: AudioFeatures, *, frame: int | None = None, curves: dict[str, np.ndarray] | None = None
) -> Figure:
    """A figure of the waveform's envelope and the rms/onset/bass/mid/treble curves, with beat and bar ticks.

    The x axis counts frames (seconds on top). ``frame`` draws a cursor at that frame; ``curves`` (name ->
    ``(n_frames,)`` values, e.g. evaluated schedules) get a panel of their own. A plain ``Figure`` on the Agg
    canvas: no pyplot state, nothing shown, works headless. Needs matplotlib (the ``notebook`` extra).
    """
    # Here, not at the top: matplotlib is optional (discolib[notebook]) and slow to import; only drawing needs it.
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DiscolibError('plotting audio features needs matplotlib: pip install "discolib[notebook]"') from None

    a, fps, n = features.analysis, features.fps, features.n_frames
    panels = 3 if curves else 2
    fig = Figure(figsize=(10, 1.6 + 1.5 * panels), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(panels, 1, sharex=True, height_ratios=[1, 2, 2][:panels])
    hop_frames = np.arange(a.n_hops) * a.hop / a.sr * fps
    envelope = np.sqrt(a.power.astype(np.float64))
    env_ax, feat_ax = axes[0], axes[1]
    env_ax.fill_between(hop_frames, -envelope, envelope, color="0.5", lw=0)
    env_ax.set_ylabel("level")
    env_ax.set_title(
        f"{a.duration:.2f} s, {features.tempo:.1f} BPM, {len(features.beat_frames)} beats, "
        f"{len(features.bar_frames)} bars, {n} frames at {fps:g} fps",
        fontsize=9,
    )
    secs = env_ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    secs.set_xlabel("seconds")
    frames = np.arange(n)
    for name, colour in _COLOURS.items():
        feat_ax.plot(frames, getattr(features, name), lw=1, color=colour, label=name)
    feat_ax.set_ylim(-0.02, 1.05)
    feat_ax.legend(loc="upper right", fontsize=7, ncols=5)
    panels_axes = list(axes)
    if curves:
        cur_ax = axes[2]
        for name, values in curves.items():
            cur_ax.plot(frames[: len(values)], np.asarray(values, dtype=np.float64)[:n], lw=1.2, label=name)
        cur_ax.legend(loc="upper right", fontsize=7)
        cur_ax.set_ylabel("schedules")
    for ax in panels_axes:
        # Beats thin and light, bars (downbeats) darker: what a user keys prompts and kicks on.
        ax.vlines(features.beat_frames, 0, 1, transform=ax.get_xaxis_transform(), color="tab:purple", lw=0.8, alpha=0.6, ls=":")
        ax.vlines(features.bar_frames, 0, 1, transform=ax.get_xaxis_transform(), color="tab:purple", lw=1.0, alpha=0.8)
        if frame is not None:
            ax.axvline(frame, color="black", lw=1.2)
        ax.grid(alpha=0.25)
    axes[-1].set_xlabel("frame")
    axes[-1].set_xlim(0, max(n - 1, 1))
    return fig
