"""The steps every discolib notebook takes around the library, so that each is one line in a notebook.

``notebook_setup`` runs right after the parameters (batch-runner overrides, Google Drive on Colab, what the
notebook runs on), ``finish_settings`` ends the settings cells (``overrides``, validation, a summary line),
``show_result`` shows what a render made and ``record_summary`` is the line the nbval-checked cell prints.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.display import Image, Video, display

from discolib import RunFolder, Settings

if TYPE_CHECKING:  # discolib.RenderResult imports torch on first access; the panel alone never needs it
    from discolib import RenderResult

__all__ = ["DRIVE_ROOT", "NOTEBOOK_ENV", "finish_settings", "notebook_setup", "record_summary", "show_result"]

#: Environment variables that replace the notebook parameter of the same name (DISCOLIB_OVERRIDES is merged into
#: ``overrides``): nbval, CI and the GPU test mode run notebooks without papermill's parameter injection.
NOTEBOOK_ENV = ("DISCOLIB_PRESET", "DISCOLIB_MAX_FRAMES", "DISCOLIB_OUTPUT_ROOT", "DISCOLIB_OVERRIDES")

#: On Colab with ``use_drive``, run folders go under this folder of the mounted Google Drive.
DRIVE_ROOT = "/content/drive/MyDrive/discolib"


def notebook_setup(
    preset: str,
    max_frames: int,
    output_root: str,
    overrides: dict[str, Any],
    *,
    use_drive: bool = False,
) -> tuple[str, int, str, dict[str, Any]]:
    """A notebook's parameters after the environment and Colab have had their say; prints the GPU and output folder.

    ``DISCOLIB_PRESET``, ``DISCOLIB_MAX_FRAMES`` and ``DISCOLIB_OUTPUT_ROOT``, when set, replace ``preset``,
    ``max_frames`` and ``output_root``; ``DISCOLIB_OVERRIDES`` (a JSON object) is merged over ``overrides``. Unset,
    they change nothing. Then, on Colab with ``use_drive``, Google Drive is mounted and ``output_root`` moves under
    :data:`DRIVE_ROOT`.

    Returns:
        ``(preset, max_frames, output_root, overrides)``; ``overrides`` is a new dict.
    """
    preset = os.environ.get("DISCOLIB_PRESET", preset)
    max_frames = int(os.environ.get("DISCOLIB_MAX_FRAMES", max_frames))
    output_root = os.environ.get("DISCOLIB_OUTPUT_ROOT", output_root)
    overrides = {**overrides, **json.loads(os.environ.get("DISCOLIB_OVERRIDES", "{}"))}
    if use_drive and "google.colab" in sys.modules:
        from google.colab import drive  # exists only on Colab

        drive.mount("/content/drive")
        output_root = os.path.join(DRIVE_ROOT, output_root)
    # Here, not at the top: torch takes seconds to import and the panel alone (discolib_widgets) never needs it.
    import torch

    print("GPU:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    print("outputs go to", os.path.abspath(output_root))
    return preset, max_frames, output_root, overrides


def finish_settings(settings: Settings, overrides: dict[str, Any], *, preset: str) -> None:
    """Apply ``overrides`` ({setting name: value}, dotted or plain names) last, validate, print a summary line.

    Raises the Settings' one-line ``SettingsError`` naming the setting when a value is invalid.
    """
    for name, value in overrides.items():
        settings.set(name, value)
    settings.validate()
    print(
        f"{settings.image.mode} mode, preset {preset}: {settings.image.width}x{settings.image.height}, "
        f"{settings.image.steps} steps, animation {settings.animation.animation_mode}, device {settings.models.device}"
    )


def show_result(result: RenderResult, *, width: int = 512) -> None:
    """Print the render's status line and display its video (embedded), or the last image of a still run."""
    print(f"{result.status}: {len(result.frames)} image(s) in {result.run_dir}")
    if result.video:
        display(Video(str(result.video), embed=True, width=width))
    elif result.frames:
        display(Image(filename=str(result.frames[-1])))


def record_summary(run_dir: str | Path) -> str:
    """``"<status> <every frame done>"`` from the run folder's ``run.json``, e.g. ``"done True"``.

    Read from disk, not from the render's result: this is what a resume would find.
    """
    record = RunFolder.open(run_dir).read_record()
    return f"{record.status} {record.frames_done == record.frames_total}"
