"""`pytest --nbval-lax notebooks/`, as a user types it, runs offline on a CPU.

nbval runs each notebook as it is saved: it cannot inject papermill parameters, and two notebooks default to real
weights (``disco-512``, ``sd-1.5``) that need downloads and a GPU. The notebooks' setup cell reads
``DISCOLIB_PRESET``, ``DISCOLIB_MAX_FRAMES`` and ``DISCOLIB_OUTPUT_ROOT`` (``notebook_setup``), and nbval's kernels
inherit this process's environment (jupyter_client starts them with a copy of ``os.environ``). So, just before
nbval starts a notebook's kernel, these are set here to the tiny preset of the notebook's sampler family, 3 frames
and a temporary output folder (removed at the end; otherwise the runs would land in ``notebooks/runs/``). The
3-frame cap bounds the music notebook too, whose animation is otherwise as long as its soundtrack
(``finish_settings`` turns ``length_from_soundtrack`` off under the cap). The photo
notebook (``photo_setup``) has no preset: it gets ``DISCOLIB_DEPTH_MODEL`` (the tiny random Depth Anything, built
in-process, instead of the real one it would download), the same 3-frame cap and output folder; the sweep notebook
(whose default, the shipped demo sweep, is tiny and offline) gets only the output folder. Each is set only
when the user has not set it: ``DISCOLIB_PRESET=disco-512 pytest --nbval-lax notebooks/disco.ipynb`` runs the real
preset. The live notebook gets its tiny preset (``tiny-live``) and reads the 3-frame cap as ``autoplay_frames``
(``live_setup``): a scripted flight of 3 frames, then its render, so it runs without a person at the keyboard.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Each notebook's offline preset: the tiny preset of its sampler family.
OFFLINE_PRESET = {
    "quickstart.ipynb": "tiny-latent", "animation.ipynb": "tiny-latent", "disco.ipynb": "tiny",
    "music_video.ipynb": "tiny-latent", "live.ipynb": "tiny-live",
}  # fmt: skip
#: The photo notebook's offline depth model.
OFFLINE_DEPTH_MODEL = {"photo.ipynb": "tiny-depth-anything"}
#: Notebooks whose defaults already run offline (the sweep notebook's demo sweep of tiny variants): they get only
#: the temporary output folder (and the frame cap, which they ignore), so nothing lands in notebooks/.
OUTPUT_ONLY = ("sweep.ipynb",)
MAX_FRAMES = "3"
_VARIABLES = ("DISCOLIB_PRESET", "DISCOLIB_DEPTH_MODEL", "DISCOLIB_MAX_FRAMES", "DISCOLIB_OUTPUT_ROOT")
#: What the user set before pytest started (None: unset, so this file may set it).
_USER = {name: os.environ.get(name) for name in _VARIABLES}
_TMP: list[str] = []  # the temporary output folder, once made


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the default setup, which starts the notebook's kernel at its first cell: the notebook's variables."""
    name = Path(str(item.fspath)).name
    if name not in OFFLINE_PRESET and name not in OFFLINE_DEPTH_MODEL and name not in OUTPUT_ONLY:
        return
    if _USER["DISCOLIB_PRESET"] is None and name in OFFLINE_PRESET:
        os.environ["DISCOLIB_PRESET"] = OFFLINE_PRESET[name]
    if _USER["DISCOLIB_DEPTH_MODEL"] is None and name in OFFLINE_DEPTH_MODEL:
        os.environ["DISCOLIB_DEPTH_MODEL"] = OFFLINE_DEPTH_MODEL[name]
    if _USER["DISCOLIB_MAX_FRAMES"] is None:
        os.environ["DISCOLIB_MAX_FRAMES"] = MAX_FRAMES
    if _USER["DISCOLIB_OUTPUT_ROOT"] is None:
        if not _TMP:
            _TMP.append(tempfile.mkdtemp(prefix="discolib-nbval-"))
        os.environ["DISCOLIB_OUTPUT_ROOT"] = _TMP[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TMP:
        terminalreporter.write_line(
            f"notebooks/conftest.py: the notebooks ran offline with their tiny presets and depth model ({MAX_FRAMES} "
            "frames) into a temporary folder, now removed; set DISCOLIB_PRESET, DISCOLIB_DEPTH_MODEL, "
            "DISCOLIB_MAX_FRAMES or DISCOLIB_OUTPUT_ROOT to choose"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    for folder in _TMP:
        shutil.rmtree(folder, ignore_errors=True)
