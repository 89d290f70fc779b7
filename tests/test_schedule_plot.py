"""Plots of schedules (discolib.schedules.plot); matplotlib is the optional extra discolib[notebook]."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from discolib.errors import DiscolibError
from discolib.schedules.keyframes import Schedule, StringSchedule
from discolib.schedules.plot import plot_schedule

ZOOM = "0: (1.0), 20: (1.02), 40:(1)"


def test_plot_schedule(tmp_path: Path) -> None:
    path = tmp_path / "zoom.png"
    sched = Schedule.parse(ZOOM, setting="zoom")
    fig = plot_schedule(sched, 41, path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    line = fig.axes[0].lines[0]
    assert np.allclose(line.get_ydata(), sched.values(41))
    fig2 = plot_schedule(StringSchedule.parse("0: euler, 5: ddim"), 10)
    assert [t.get_text() for t in fig2.axes[0].get_yticklabels()] == ["euler", "ddim"]


def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import matplotlib...` fail as if it were not installed, even when already imported.
    for name in [m for m in list(sys.modules) if m == "matplotlib" or m.startswith("matplotlib.")] + [
        "matplotlib",
        "matplotlib.figure",
        "matplotlib.backends.backend_agg",
    ]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DiscolibError) as info:
        plot_schedule("0: (1)", 5)
    assert str(info.value) == 'plotting schedules needs matplotlib: pip install "discolib[notebook]"'
    assert "\n" not in str(info.value)
