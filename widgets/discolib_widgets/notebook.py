"""The steps every discolib notebook takes around the library, so that each is one line in a notebook.

``notebook_setup`` runs right after the parameters (batch-runner overrides, Colab's widget manager and Google
Drive, what the notebook runs on), ``start_settings`` makes the notebook's Settings (a preset, or a settings file as
it is), ``apply_parameters`` applies a cell's parameters (not over a settings file), ``finish_settings`` ends the
settings cells (``overrides``, validation, a summary line) and ``record_summary`` is the line the nbval-checked
cell prints. Rendering is :func:`discolib_widgets.view.render_here`'s.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.display import Image, Video, display

from discolib import RunFolder, Settings, apply_preset, preset_mode
from discolib.config.importers import load_settings_file

if TYPE_CHECKING:  # discolib.RenderResult imports torch on first access; the panel alone never needs it
    from discolib import RenderResult

__all__ = [
    "DRIVE_ROOT",
    "NOTEBOOK_ENV",
    "RunIncomplete",
    "apply_parameters",
    "finish_settings",
    "gpu_report",
    "notebook_setup",
    "record_summary",
    "show_result",
    "start_settings",
]

#: Environment variables that replace the notebook parameter of the same name (DISCOLIB_OVERRIDES is merged into
#: ``overrides``): nbval, CI and the GPU test mode run notebooks without papermill's parameter injection.
NOTEBOOK_ENV = ("DISCOLIB_PRESET", "DISCOLIB_MAX_FRAMES", "DISCOLIB_OUTPUT_ROOT", "DISCOLIB_OVERRIDES")

#: On Colab with ``use_drive``, run folders go under this folder of the mounted Google Drive.
DRIVE_ROOT = "/content/drive/MyDrive/discolib"
#: ... and downloaded checkpoints and hub snapshots (``models.models_root``) under this one, so a new Colab runtime
#: finds them instead of downloading gigabytes again.
DRIVE_MODELS = DRIVE_ROOT + "/models"
#: How many lines of a settings file's import report the settings cell prints.
REPORT_LINES = 6


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
    they change nothing. On Colab, its custom widget manager is turned on (the panel's ipywidgets 8 controls and
    the curve editor render only through it); with ``use_drive`` Google Drive is mounted, ``output_root`` moves
    under :data:`DRIVE_ROOT` and ``models.models_root`` defaults to :data:`DRIVE_MODELS` (an override of it wins).

    Returns:
        ``(preset, max_frames, output_root, overrides)``; ``overrides`` is a new dict.
    """
    preset = os.environ.get("DISCOLIB_PRESET", preset)
    max_frames = int(os.environ.get("DISCOLIB_MAX_FRAMES", max_frames))
    output_root = os.environ.get("DISCOLIB_OUTPUT_ROOT", output_root)
    overrides = {**overrides, **json.loads(os.environ.get("DISCOLIB_OVERRIDES", "{}"))}
    if "google.colab" in sys.modules:
        from google.colab import drive, output  # exist only on Colab

        output.enable_custom_widget_manager()
        if use_drive:
            drive.mount("/content/drive")
            output_root = os.path.join(DRIVE_ROOT, output_root)
            overrides = {"models.models_root": DRIVE_MODELS, **overrides}
    print(gpu_report())
    print("outputs go to", os.path.abspath(output_root))
    return preset, max_frames, output_root, overrides


def gpu_report() -> str:
    """``"GPU: <name>, <total> GiB, <free> GiB free"`` for CUDA device 0 (as ``nvidia-smi`` would show), or
    ``"GPU: no GPU (rendering on the CPU)"``."""
    # Here, not at the top: torch takes seconds to import and the panel alone (discolib_widgets) never needs it.
    import torch

    if not torch.cuda.is_available():
        return "GPU: no GPU (rendering on the CPU)"
    free, total = torch.cuda.mem_get_info(0)
    gib = 1024**3
    return f"GPU: {torch.cuda.get_device_name(0)}, {total / gib:.1f} GiB, {free / gib:.1f} GiB free"


def start_settings(preset: str, animation_mode: str, settings_file: str, output_root: str) -> Settings:
    """The notebook's Settings before its parameters: ``preset`` for ``animation_mode``, or ``settings_file``.

    ``settings_file`` (a discolib settings JSON, or a Disco / Deforum ``*_settings.txt``) is used as it is: its
    mode and animation mode, and none of the notebook's parameters but ``output_root`` (where run folders go), so
    :func:`apply_parameters` leaves it alone; only ``overrides`` (:func:`finish_settings`) changes it. For a Disco
    or Deforum file the first lines of the import report are printed (``discolib import-settings FILE`` prints the
    whole report).

    Raises:
        SettingsError: the file cannot be read or imported (one line naming the file).
    """
    if settings_file.strip():
        settings, report = load_settings_file(settings_file.strip())
        print(f"settings from {settings_file.strip()}, as they are (the parameters above apply only through overrides)")
        if report is not None:
            lines = report.summary().splitlines()
            print("\n".join(lines[:REPORT_LINES]))
            if len(lines) > REPORT_LINES:
                print(f"  ... {len(lines) - REPORT_LINES} more lines: discolib import-settings {settings_file.strip()}")
    else:
        settings = apply_preset(Settings.defaults(preset_mode(preset), animation_mode), preset)
    settings.set("run.output_root", output_root)  # the panel's Render button writes there too
    return settings


def apply_parameters(settings: Settings, values: dict[str, Any], *, settings_file: str = "") -> None:
    """Set each ``{dotted setting name: value}`` of a settings cell, unless ``settings_file`` gave the settings.

    Raises the Settings' one-line ``SettingsError`` naming the setting when a value is invalid.
    """
    if settings_file.strip():
        return  # the file's settings are used as they are (see start_settings)
    for name, value in values.items():
        settings.set(name, value)


def finish_settings(settings: Settings, overrides: dict[str, Any], *, preset: str, settings_file: str = "") -> None:
    """Apply ``overrides`` ({setting name: value}, dotted or plain names) last, validate, print a summary line, and
    a warning line when the models these settings need are not here and cannot be downloaded (offline).

    Raises the Settings' one-line ``SettingsError`` naming the setting when a value is invalid.
    """
    for name, value in overrides.items():
        settings.set(name, value)
    settings.validate()
    source = f"settings file {settings_file.strip()}" if settings_file.strip() else f"preset {preset}"
    print(
        f"{settings.image.mode} mode, {source}: {settings.image.width}x{settings.image.height}, "
        f"{settings.image.steps} steps, animation {settings.animation.animation_mode}, device {settings.models.device}"
    )
    # Here, not at the top: for real models it imports their libraries (the render needs them next anyway).
    from discolib.models.availability import weights_problem

    problem = weights_problem(settings)
    if problem:  # said now, before the panel and the render cell, not after a long traceback
        print(f"⚠ {problem}")


def show_result(result: RenderResult, *, width: int = 512) -> None:
    """Print the render's status line and display its video (embedded), or the last image of a still run."""
    print(f"{result.status}: {len(result.frames)} image(s) in {result.run_dir}")
    if result.video:
        display(Video(str(result.video), embed=True, width=width))
    elif result.frames:
        display(Image(filename=str(result.frames[-1])))


class RunIncomplete(RuntimeError):
    """A run folder's ``run.json`` does not say that every frame was rendered."""


def record_summary(run_dir: str | Path, *, require_done: bool = False) -> str:
    """``"<status> <every frame done>"`` from the run folder's ``run.json``, e.g. ``"done True"``.

    Read from disk, not from the render's result: this is what a resume would find. With ``require_done`` anything
    else raises :class:`RunIncomplete`: the notebooks' last cell is how ``pytest --nbval-lax`` checks a run (nbval
    cannot compare a recorded output there, as nbstripout clears the execution count nbval needs for that).
    """
    record = RunFolder.open(run_dir).read_record()
    summary = f"{record.status} {record.frames_done == record.frames_total}"
    if require_done and summary != "done True":
        raise RunIncomplete(
            f"{run_dir}: run.json says {record.status!r} with {record.frames_done} of {record.frames_total} frames"
        )
    return summary
