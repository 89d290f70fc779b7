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
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.display import Image, Video, display

from discolib import RunFolder, Settings, apply_preset, preset_mode
from discolib.config.importers import load_settings_file

if TYPE_CHECKING:  # discolib.RenderResult imports torch on first access; the panel alone never needs it
    import ipywidgets

    from discolib import RenderResult
    from discolib.run.photo import PhotoResult

__all__ = [
    "DRIVE_ROOT",
    "NOTEBOOK_ENV",
    "RunIncomplete",
    "apply_parameters",
    "cap_soundtrack_length",
    "demo_photo",
    "demo_soundtrack",
    "finish_settings",
    "flight_settings",
    "gpu_report",
    "live_autoplay",
    "live_settings",
    "live_setup",
    "live_summary",
    "notebook_setup",
    "photo_outputs",
    "photo_progress",
    "photo_setup",
    "photo_source",
    "photo_upload",
    "record_summary",
    "render_flight",
    "show_photo_result",
    "show_result",
    "show_song",
    "soundtrack_source",
    "start_settings",
]

#: Environment variables that replace the notebook parameter of the same name (DISCOLIB_OVERRIDES is merged into
#: ``overrides``): nbval, CI and the GPU test mode run notebooks without papermill's parameter injection.
#: DISCOLIB_DEPTH_MODEL is the photo notebook's ``depth_model`` (offline: ``tiny-depth-anything`` or ``constant``).
NOTEBOOK_ENV = (
    "DISCOLIB_PRESET", "DISCOLIB_MAX_FRAMES", "DISCOLIB_OUTPUT_ROOT", "DISCOLIB_OVERRIDES", "DISCOLIB_DEPTH_MODEL",
)  # fmt: skip

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
    if use_drive and "google.colab" in sys.modules:
        overrides = {"models.models_root": DRIVE_MODELS, **overrides}
    output_root = _colab_drive(output_root, use_drive)
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
    a warning line when the models these settings need are not here and cannot be downloaded (offline). Under
    ``DISCOLIB_MAX_FRAMES`` a run as long as its soundtrack is capped first (:func:`cap_soundtrack_length`).

    Raises the Settings' one-line ``SettingsError`` naming the setting when a value is invalid.
    """
    for name, value in overrides.items():
        settings.set(name, value)
    cap_soundtrack_length(settings)
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


def cap_soundtrack_length(settings: Settings) -> None:
    """Under ``DISCOLIB_MAX_FRAMES`` (nbval, CI: see :func:`notebook_setup`) an animation as long as its soundtrack
    is capped too: ``animation.length_from_soundtrack`` off and ``animation.max_frames`` the smaller of the cap and
    the song's frames. Unset, or for a run not timed by its soundtrack, nothing changes.

    Here, after ``overrides``, not in :func:`notebook_setup`: the song, its fps and ``max_frames: "audio"`` are
    known only once every setting is in (a settings file or an override can set them).
    """
    cap = os.environ.get("DISCOLIB_MAX_FRAMES")
    anim = settings.animation
    if cap is None or anim.animation_mode == "None" or not anim.length_from_soundtrack or not settings.output.soundtrack:
        return
    frames = settings.n_frames()  # the song's frames at output.fps (from the file's header)
    settings.set("animation.length_from_soundtrack", False)
    settings.set("animation.max_frames", min(int(cap), frames))
    print(f"DISCOLIB_MAX_FRAMES={cap}: {settings.animation.max_frames} of the soundtrack's {frames} frames")


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


# ----------------------------------------------------------------------------------------------- photo notebook
#: The photo notebook's demo image (written into output_root when no photo is given): its size.
DEMO_SIZE = (256, 384)  # (height, width)
#: An uploaded file's name keeps these characters (the rest become "_"), so it is one plain file in uploads/.
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _colab_drive(output_root: str, use_drive: bool) -> str:
    """On Colab: the custom widget manager on and, with ``use_drive``, Drive mounted and ``output_root`` under it."""
    if "google.colab" not in sys.modules:
        return output_root
    from google.colab import drive, output  # exist only on Colab

    output.enable_custom_widget_manager()
    if use_drive:
        drive.mount("/content/drive")
        output_root = os.path.join(DRIVE_ROOT, output_root)
    return output_root


def photo_setup(
    seconds: float, fps: float, depth_model: str, output_root: str, *, use_drive: bool = False
) -> tuple[float, str, str, str]:
    """The photo notebook's parameters after the environment and Colab; prints the GPU and the output folder.

    ``DISCOLIB_DEPTH_MODEL`` and ``DISCOLIB_OUTPUT_ROOT``, when set, replace ``depth_model`` and ``output_root``;
    ``DISCOLIB_MAX_FRAMES`` caps the clip at that many frames (``seconds`` shortened to ``frames / fps``). On Colab
    as :func:`notebook_setup` (the widget manager; with ``use_drive`` the outputs under :data:`DRIVE_ROOT`).

    Returns:
        ``(seconds, depth_model, output_root, device)``: ``device`` is ``"cuda"`` when a GPU is there, else
        ``"cpu"`` (where the depth model and the warps run).
    """
    import torch  # here, not at the top: seconds to import, and the panel alone never needs it

    depth_model = os.environ.get("DISCOLIB_DEPTH_MODEL", depth_model)
    output_root = os.environ.get("DISCOLIB_OUTPUT_ROOT", output_root)
    if "DISCOLIB_MAX_FRAMES" in os.environ and fps > 0:
        seconds = min(seconds, int(os.environ["DISCOLIB_MAX_FRAMES"]) / fps)
    output_root = _colab_drive(output_root, use_drive)
    print(gpu_report())
    print("outputs go to", os.path.abspath(output_root))
    return seconds, depth_model, output_root, "cuda" if torch.cuda.is_available() else "cpu"


def photo_upload(photo: str) -> ipywidgets.FileUpload | dict[str, bytes] | None:
    """Where the photo comes from when ``photo`` (a path or URL) is empty: an upload.

    On Colab ``google.colab.files.upload()`` asks for a file and waits (so Run All works); in Jupyter a
    ``FileUpload`` button is shown and returned (choose a file, then run the next cells again). With ``photo``
    given, None: nothing to upload.
    """
    if photo.strip():
        print(f"photo: {photo.strip()}")
        return None
    if "google.colab" in sys.modules:
        from google.colab import files  # exists only on Colab

        return files.upload()
    import ipywidgets

    upload = ipywidgets.FileUpload(accept="image/*", multiple=False, description="Photo")
    print("choose a photo, then run the cells below again (without one, the built-in demo image is animated)")
    display(upload)
    return upload


def _uploaded(upload: Any) -> tuple[str, bytes] | None:
    """``(file name, bytes)`` of the first uploaded file: Colab's ``{name: bytes}`` or an ipywidgets 8
    ``FileUpload`` (its ``value``: a tuple of ``{"name", "content", ...}``); None when nothing was uploaded."""
    if isinstance(upload, dict):
        for name, data in upload.items():
            return str(name), bytes(data)
        return None
    value = getattr(upload, "value", None) or ()
    for item in value:
        return str(item["name"]), bytes(item["content"])
    return None


def demo_photo(path: str | Path) -> Path:
    """Write the built-in demo image (deterministic, :data:`DEMO_SIZE`) to ``path`` and return it.

    A sky gradient, a sun, hills, a house and a tree at different brightness and sizes: a depth model sees
    near and far things in it (a flat image would make a flat depth map and no parallax).
    """
    import numpy as np
    from PIL import Image as PILImage

    h, w = DEMO_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    sky = yy[..., None] / h
    img[:] = (1 - sky) * np.array([70, 130, 220]) + sky * np.array([200, 220, 240])
    img[(xx - 300) ** 2 + (yy - 50) ** 2 < 22**2] = (255, 230, 120)  # sun
    img[yy > 150 + 25 * np.sin(xx / 45.0)] = (70, 120, 60)  # far hills
    img[yy > 195 + 8 * np.sin(xx / 20.0 + 1.0)] = (110, 170, 70)  # near meadow
    img[120:200, 60:150] = (180, 90, 60)  # house
    img[(yy < 120) & (yy > 80) & (np.abs(xx - 105) < (yy - 80) * 1.3)] = (120, 40, 40)  # roof
    img[150:200, 95:115] = (60, 40, 30)  # door
    img[140:240, 250:262] = (90, 60, 30)  # tree trunk
    img[(xx - 256) ** 2 + (yy - 130) ** 2 < 38**2] = (30, 90, 35)  # tree crown
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(img.clip(0, 255).astype(np.uint8)).save(out)
    return out


def photo_source(photo: str, upload: Any, output_root: str) -> str:
    """The photo to animate: ``photo`` (a path or URL, as given), else the uploaded file written to
    ``<output_root>/uploads/``, else the demo image written to ``<output_root>/demo-photo.png`` (:func:`demo_photo`).
    Prints which."""
    if photo.strip():
        return photo.strip()
    got = _uploaded(upload)
    if got is not None:
        name, data = got
        safe = _SAFE_NAME.sub("_", Path(name.replace("\\", "/")).name).lstrip(".") or "photo"
        path = Path(output_root) / "uploads" / safe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"photo: {path} (uploaded, {len(data)} bytes)")
        return str(path)
    path = demo_photo(Path(output_root) / "demo-photo.png")
    print(f"no photo given: the built-in demo image {path}")
    return str(path)


def photo_outputs(source: str, output_root: str, camera: str, *, mesh: bool = False) -> dict[str, str | None]:
    """``{"out": video, "mesh": GLB or None}`` for :func:`discolib.animate_photo`: ``<output_root>/photo/
    <photo name>-<camera>.mp4`` (and ``.glb`` with ``mesh``); the frames go to a run folder beside the video."""
    stem = _SAFE_NAME.sub("_", Path(source.split("?")[0].rstrip("/")).stem).lstrip(".") or "photo"
    cam = _SAFE_NAME.sub("_", Path(str(camera)).stem) or "camera"
    base = Path(output_root) / "photo" / f"{stem}-{cam}"
    return {"out": str(base.with_suffix(".mp4")), "mesh": str(base.with_suffix(".glb")) if mesh else None}


def photo_progress() -> Callable[[int, int], None]:
    """A ``callback(frames_done, n_frames)`` for :func:`discolib.animate_photo` that keeps one output line,
    ``"frame 5/24"``, up to date (a plain output: a papermill notebook keeps the last line)."""
    handle = display({"text/plain": "starting"}, raw=True, display_id=True)

    def update(done: int, total: int) -> None:
        text = f"frame {done}/{total}"
        if handle is None:  # outside IPython display() returns no handle
            print(text)
        else:
            handle.update({"text/plain": text}, raw=True)

    return update


def show_photo_result(result: PhotoResult, *, width: int = 512) -> None:
    """Print where the frames and the video are, then display the depth preview and the video (embedded; a
    line naming it when it is too large to embed)."""
    from discolib_widgets.view import video_bundle  # here: the view imports the panel's widgets

    print(f"{len(result.frames)} frames at {result.fps:g} fps, fill {result.fill}, in {result.run_dir}")
    print("depth (near is dark, far is bright):")
    display(Image(filename=str(result.depth_png), width=width))
    for extra in (result.mesh, result.point_cloud):
        if extra is not None:
            print(f"3D: {extra}")
    # As the render cell shows its video: embedded (a GIF as an image), or a line naming it when too large.
    display(video_bundle(result.video), raw=True)
    print(f"video: {result.video}")


# ----------------------------------------------------------------------------------------------- music notebook
#: The music notebook's demo clip: its sample rate and tempo (a bar is 4 beats).
DEMO_SR = 44100
DEMO_BPM = 120.0


def demo_soundtrack(path: str | Path, seconds: float) -> Path:
    """Write the built-in demo clip (deterministic, ``seconds`` long, a 16-bit WAV) to ``path`` and return it.

    Sine waves and seeded noise, no recorded music: :data:`DEMO_BPM` with a kick on every beat (louder on the first
    beat of each bar of 4), a hi-hat on the off-beats and a bass note that changes every bar (A, F, C, G), so
    ``beat(t)``, ``bar(t)``, ``bass(t)`` and ``treble(t)`` each have something to follow.
    """
    import numpy as np
    import soundfile  # here, not at the top: only the music notebook writes audio

    t = np.arange(max(1, round(seconds * DEMO_SR))) / DEMO_SR
    beat = 60.0 / DEMO_BPM
    since_beat = t % beat
    since_offbeat = (t + beat / 2) % beat
    noise = np.random.default_rng(0).standard_normal(t.size)
    accent = 1 + 0.6 * (t % (4 * beat) < beat)  # the one of each bar
    # A kick: a tone falling from 130 Hz to 50 Hz with a short click on top.
    thump = np.sin(2 * np.pi * (50 + 80 * np.exp(-since_beat / 0.02)) * since_beat) * np.exp(-since_beat / 0.15)
    kick = accent * (thump + 0.5 * noise * np.exp(-since_beat / 0.005))
    hat = noise * np.exp(-since_offbeat / 0.02)
    bass_hz = np.array([55.0, 43.65, 65.41, 49.0])[(t // (4 * beat)).astype(int) % 4]
    # The phase is the running sum of the frequency, so the note changes without a click.
    bass = np.sin(2 * np.pi * np.cumsum(bass_hz) / DEMO_SR) * (0.5 + 0.5 * np.exp(-since_beat / 0.2))
    mix = 0.5 * kick + 0.06 * hat + 0.35 * bass
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(out, (0.9 * mix / max(float(np.abs(mix).max()), 1e-9)).astype(np.float32), DEMO_SR, subtype="PCM_16")
    return out


def soundtrack_source(soundtrack: str, output_root: str, seconds: float) -> str:
    """The soundtrack of the music notebook: ``soundtrack`` (a path, as given), else the demo clip of ``seconds``
    written to ``<output_root>/music/demo-120bpm.wav`` (:func:`demo_soundtrack`). Prints which."""
    if soundtrack.strip():
        print(f"soundtrack: {soundtrack.strip()}")
        return soundtrack.strip()
    path = demo_soundtrack(Path(output_root) / "music" / "demo-120bpm.wav", seconds)
    print(f"no soundtrack given: the built-in demo clip {path} ({seconds:g} s at {DEMO_BPM:g} BPM)")
    return str(path)


def show_song(settings: Settings, *, frames: int = 8) -> None:
    """What ``discolib audio SONG --fps F --plot song.png`` shows for the settings' soundtrack: the features'
    summary (a dict: duration, tempo, beats, bars, frames, fps), the frames of the first beats and bars, the frames
    the render makes, and the plot of the features per frame (beats and bars ticked). Nothing without a soundtrack.

    Raises the library's one-line AudioError (naming ``output.soundtrack``) when the file cannot be read.
    """
    from discolib_widgets.audio import song_png  # here: matplotlib, only when a song is shown

    features = settings.audio_features()
    if features is None:
        print("no soundtrack (output.soundtrack is empty)")
        return
    print(features.summary())
    print(
        f"frames of the first beats: {features.beat_frames[:frames].tolist()}, "
        f"of the first bars: {features.bar_frames[: frames // 2].tolist()}"
    )
    print(f"{settings.n_frames()} frames to render")
    display(Image(song_png(features)))


# ----------------------------------------------------------------------------------------------- live notebook
#: The live notebook's ``preset`` default: the real-time preset on a CUDA GPU, else the tiny offline one.
LIVE_AUTO = "auto"
LIVE_GPU_PRESET = "sd-turbo-live"
LIVE_CPU_PRESET = "tiny-live"
#: The keys a scripted flight (``autoplay_frames`` > 0) holds, each for an equal share of its frames: forward, then
#: forward while turning right, then turning right while rolling left, then coasting (the velocity decays to 0).
AUTOPLAY_KEYS: tuple[tuple[str, ...], ...] = (("w",), ("w", "ArrowRight"), ("ArrowRight", "q"), ())
#: How long a scripted flight waits for its frames (the first includes loading the models).
AUTOPLAY_TIMEOUT_S = 600.0


def live_setup(
    preset: str,
    size: int,
    autoplay_frames: int,
    output_root: str,
    overrides: dict[str, Any],
    *,
    use_drive: bool = False,
) -> tuple[str, int, str, dict[str, Any]]:
    """The live notebook's parameters after the environment and Colab (:func:`notebook_setup`), ``"auto"`` resolved.

    ``DISCOLIB_MAX_FRAMES`` replaces ``autoplay_frames`` (nbval and CI run the notebook headless: the scripted flight
    of that many frames); ``DISCOLIB_PRESET``, ``DISCOLIB_OUTPUT_ROOT`` and ``DISCOLIB_OVERRIDES`` as in every
    notebook. ``preset="auto"`` is :data:`LIVE_GPU_PRESET` when a CUDA GPU is there, else :data:`LIVE_CPU_PRESET`
    (offline, random tiny weights: Binder, a laptop). ``size`` is only checked here (see :func:`live_settings`).

    Returns:
        ``(preset, autoplay_frames, output_root, overrides)``.

    Raises:
        SettingsError: ``size`` or ``autoplay_frames`` is negative (naming it).
    """
    from discolib.config.settings import SettingsError

    preset, autoplay_frames, output_root, overrides = notebook_setup(
        preset, autoplay_frames, output_root, overrides, use_drive=use_drive
    )
    if size < 0:
        raise SettingsError(f"size must be 0 (the preset's size) or a width in pixels, got {size}", field="size")
    if autoplay_frames < 0:
        raise SettingsError(
            f"autoplay_frames must be 0 (fly with the keys) or a number of frames, got {autoplay_frames}",
            field="autoplay_frames",
        )
    if preset == LIVE_AUTO:
        import torch  # here, not at the top: seconds to import (notebook_setup has imported it already)

        preset = LIVE_GPU_PRESET if torch.cuda.is_available() else LIVE_CPU_PRESET
        print(f"preset auto: {preset}")
    if autoplay_frames:
        print(f"autoplay: a scripted flight of {autoplay_frames} frames, then its replay at full quality")
    return preset, autoplay_frames, output_root, overrides


def live_settings(preset: str, size: int, prompt: str, output_root: str, overrides: dict[str, Any]) -> Settings:
    """The live session's starting Settings: ``preset`` in 3D, ``size`` x ``size`` pixels (0: the preset's),
    ``prompt`` from frame 0 (empty: the preset's; ``"text --neg negative"`` as Deforum), ``output_root`` for the
    replay, then ``overrides``; validated, with :func:`finish_settings`' summary line (and its warning when the
    preset's weights are missing offline).

    Raises the Settings' one-line ``SettingsError`` naming the setting when a value is invalid.
    """
    settings = start_settings(preset, "3D", "", output_root)
    if size:
        settings.set("image.width", size)
        settings.set("image.height", size)
    if prompt.strip():
        settings.set("prompts.text_prompts", {"0": prompt.strip()})
    finish_settings(settings, overrides, preset=preset)
    return settings


def _png(image: Any) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 array."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def live_autoplay(panel: Any, frames: int, *, keys: tuple[tuple[str, ...], ...] = AUTOPLAY_KEYS) -> Any:
    """With ``frames`` > 0, fly the panel's session without a person: start it, hold each group of ``keys`` for an
    equal share of ``frames`` (through the session's controls, at the panel's speed, as the panel does for held
    keys), stop, print the recorded camera path and the speed, and show the last frame. With 0 print how to fly
    and return None (the session is left to the panel's buttons).

    ``panel`` is a :class:`discolib_widgets.live.LivePanel`. Returns the last :class:`discolib.run.live.LiveFrame`.

    Raises:
        The session's error if its loop failed, or TimeoutError when the frames do not come within
        :data:`AUTOPLAY_TIMEOUT_S`.
    """
    from discolib.run.live import CONTROL_AXES, velocity_for_keys

    if frames <= 0:
        print(
            "Click Start, then click the image and fly: W/S forward and back, A/D left and right, R/F up and down, "
            "arrow keys turn, Q/E roll, drag the mouse to look around. Record is on from Start. Then run the cell "
            "below to render the flight at full quality."
        )
        return None
    session = panel.session
    speed = float(panel.speed.value)
    turn_slider = getattr(panel, "turn", None)  # the panel's turn-speed slider (1 degree a frame without one)
    turn = float(turn_slider.value) if turn_slider is not None else 1.0
    session.start()
    last = None
    try:
        for i, held in enumerate(keys):
            session.set_velocity(**velocity_for_keys(held, speed, turn))
            # Rounded up: each group gets at least one frame when frames < len(keys).
            last = session.wait_frames(-(-frames * (i + 1) // len(keys)), timeout=AUTOPLAY_TIMEOUT_S)
            print(f"frame {last.index}: keys {'+'.join(held) or 'none'}")
    finally:
        session.stop()
    path = session.camera_path().sum(axis=0)
    sums = ", ".join(f"{axis} {value:+.3f}" for axis, value in zip(CONTROL_AXES, path, strict=True))
    print(f"recorded camera path (sum per axis): {sums}")
    stats = session.stats()
    latency = stats.get("latency_ms_median")
    print(
        f"{stats['frames']} frames at {stats['fps']:.1f} frames/s"
        + (f", {latency:.0f} ms key-to-frame (median)" if latency is not None else "")
    )
    if last is not None:
        display(Image(_png(last.image)))
    return last


def flight_settings(session: Any, preset: str = "", size: int = 0, init_dir: str | None = None) -> Settings | None:
    """Settings that render the session's recorded flight (``session.to_settings()``), or None (a line saying so)
    when nothing was recorded yet. The session is stopped first (the render needs the device).

    With ``preset`` (e.g. ``sd-1.5``) the preset's models, size, steps and sampler replace the live ones; the flight
    (camera path, every other schedule, prompts, seeds, frame count, fps) stays. ``size`` > 0 renders ``size`` x
    ``size`` pixels. (A guided preset's settings are made too, but Disco's sampler refuses a ``--neg`` prompt whose
    weights sum to 0, as the live presets' default prompt has.) ``init_dir``: where a recording started mid-flight
    writes its first frame (the replay's init image).
    """
    session.stop()
    if not len(session.camera_path()):
        print("nothing recorded yet: click Start, fly, then run this cell again")
        return None
    flight = session.to_settings(init_dir=init_dir)
    if preset.strip():
        # start-up time: discolib.run.live imports the render loop (torch); the session has loaded it already
        from discolib.run.live import flight_with_preset

        settings = flight_with_preset(flight, preset.strip())
    else:
        settings = flight
    if size:
        settings.set("image.width", size)
        settings.set("image.height", size)
    settings.validate()
    print(
        f"the flight: {settings.animation.max_frames} frames, {settings.image.mode} mode "
        f"{settings.image.width}x{settings.image.height}, {settings.image.steps} steps"
        + (f", preset {preset.strip()}" if preset.strip() else ", the live preset")
    )
    return settings


def render_flight(session: Any, *, out: str, preset: str = "", size: int = 0) -> RenderResult | None:
    """Render the recorded flight at full quality with :func:`discolib_widgets.view.render_here` (the image as it
    forms, progress, the video): :func:`flight_settings` with ``preset`` and ``size``, into ``out``. None (a line
    saying to fly first) when nothing was recorded; run the cell again after flying."""
    settings = flight_settings(session, preset, size, init_dir=out)
    if settings is None:
        return None
    from discolib_widgets.view import render_here  # here: the view imports the panel's widgets

    return render_here(settings, out=out)


def live_summary(result: RenderResult | None, autoplay_frames: int) -> str:
    """The live notebook's check: :func:`record_summary` of the replay (``"done True"``, else
    :class:`RunIncomplete`), or, when nothing was rendered in interactive use (``autoplay_frames`` 0), a line
    saying so. A headless run (``autoplay_frames`` > 0) that rendered nothing raises RunIncomplete."""
    if result is None:
        if autoplay_frames:
            raise RunIncomplete(f"the scripted flight of {autoplay_frames} frames was not rendered")
        return "nothing rendered yet: fly, then run the render cell"
    return record_summary(result.run_dir, require_done=True)
