"""The ``discolib`` command.

Start with ``discolib init -o settings.json``, edit the file, check it with ``discolib validate settings.json``.
Errors about what the user gave (:class:`~discolib.errors.DiscolibError`, ``OSError``) print one line
(``discolib: error: ...``) and exit with status 2; ``--debug`` shows the traceback. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from discolib import Settings, __version__, apply_preset, preset_mode
from discolib.config.importers import import_settings
from discolib.config.presets import preset_listing
from discolib.config.settings import SettingsError
from discolib.errors import DiscolibError, InputError, one_line
from discolib.io.inputs import expand_path
from discolib.schedules.keyframes import INTERPOLATIONS, Schedule
from discolib.schedules.plot import plot_schedule

__all__ = ["main"]

EPILOG = """\
examples:
  discolib init --list-presets
  discolib init --mode guided --preset tiny -o settings.json
  discolib init --mode latent --animation 3D --set max_frames=60 -o anim.json
  discolib validate settings.json --set steps=100
  discolib render settings.json --out runs --set n_batches=2
  discolib render settings.json --threads 2
  discolib render --resume runs/TimeToDisco/20260101-120000
  discolib sweep sweep.json --out sweeps/first
  discolib sweep sweep.json --out sweeps/first --executor ray --gpus-per-run 1
  discolib import-settings TimeToDisco(0)_settings.txt -o settings.json
  discolib video runs/TimeToDisco/20260101-120000 --fps 24 --from 10 --to 59 --gif
  discolib schedule "0:(0), 30:(sin(t/5))" --frames 60 --plot curve.png
  discolib animate photo.jpg --camera orbit --seconds 4 -o orbit.mp4
  discolib animate photo.jpg --camera path.json --stereo sbs --mesh photo.glb -o sbs.mp4
  discolib audio song.mp3 --fps 15 --plot song.png
  discolib audio song.mp3 --fps 15 --export-keyframes "zoom=1+0.04*bass" --export-keyframes "translation_z=10*beat"
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discolib",
        description="Disco-Diffusion-style CLIP-guided and latent diffusion images and animations.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"discolib {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    set_help = "override a setting (repeatable): NAME=VALUE, NAME dotted (animation.zoom) or plain (zoom); VALUE is JSON or a string"

    init = sub.add_parser("init", help="write a complete settings file with every default, ready to edit")
    init.add_argument("--mode", choices=["guided", "latent"], default=None, help="sampler family (default: guided, or the preset's)")
    init.add_argument("--animation", default="none", metavar="{none,2D,3D,video}", help="animation mode (default none: stills)")
    init.add_argument("--preset", default=None, help="apply a preset: tiny, tiny-latent (offline, CPU), disco-512, sd-1.5, sdxl-turbo, flux-schnell ... (see --list-presets)")
    init.add_argument("--list-presets", action="store_true", help="list the presets with what each needs (VRAM, download, licence of the weights) and exit")
    init.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=set_help)
    init.add_argument("-o", "--output", default=None, help="settings file to write (refuses to overwrite without --force); required unless --list-presets")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    val = sub.add_parser("validate", help="check a settings file; prints the problem and exits non-zero if invalid")
    val.add_argument("file")
    val.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=set_help)

    imp = sub.add_parser("import-settings", help="convert a Disco Diffusion *_settings.txt or a Deforum settings file")
    imp.add_argument("file")
    imp.add_argument("-o", "--output", required=True, help="settings file to write")
    imp.add_argument("--force", action="store_true", help="overwrite an existing file")
    imp.add_argument(
        "--animation",
        default=None,
        metavar="{none,2D,3D,video}",
        help="the animation mode the file was rendered in (Disco's files do not record it; default: inferred, with a warning)",
    )

    ren = sub.add_parser("render", help="render the stills or animation of a settings file into a run folder")
    ren.add_argument("file", nargs="?", help="settings file (not needed with --resume RUN_FOLDER)")
    ren.add_argument("--out", default=None, metavar="DIR", help="output root (overrides run.output_root)")
    ren.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=set_help)
    ren.add_argument("--resume", default=None, metavar="RUN", help="continue a run folder from its last complete frame with its own settings.json ('latest': the newest run of the settings file's batch)")
    ren.add_argument(
        "--threads",
        default=None,
        metavar="N",
        help="CPU threads of a new run (models.threads): torch, OpenCV and the PNG encoders; 0 = auto (1 on a 2-core "
        "machine, where 2 threads are up to 5x slower whenever anything else runs). A resume keeps its run's count",
    )
    ren.add_argument("--no-progress", action="store_true", help="no progress bars")
    ren.add_argument("--force", action="store_true", help="start even when the run looks too large for this machine's memory")

    swp = sub.add_parser(
        "sweep",
        help="render every variant of a sweep file (grid / zip / seeds axes over any setting) into one folder",
        description="Render every variant of a sweep file into DIR: DIR/sweep.json lists each variant's overrides, "
        "run folder and status, DIR/runs/<variant id>/ holds its run folder, DIR/contact_sheet.png its last frame. "
        "Running the same command again skips the finished variants and resumes the interrupted ones. "
        "See docs/SWEEPS.md for the file format.",
    )
    swp.add_argument("file", metavar="SWEEP", help="the sweep file (.json, or .yaml/.yml with pyyaml)")
    swp.add_argument("--out", required=True, metavar="DIR", help="the sweep folder (created; a re-run continues it)")
    swp.add_argument("--executor", default="local", choices=["local", "ray"], help="local: one variant at a time here, each model loaded once (default); ray: each variant a Ray task (pip install \"discolib[ray]\")")
    swp.add_argument("--ray-address", default=None, metavar="ADDR", help="the Ray cluster to use (default: a local Ray, or the one already started)")
    swp.add_argument("--gpus-per-run", default=None, metavar="F", help="GPUs per variant with --executor ray (0.5: two variants share a GPU; 0: none; default: 1 when the cluster has GPUs, else 0)")
    swp.add_argument("--max-variants", default=None, metavar="N", help="allow up to N variants (default 256, or the file's max_variants; at most 100000)")
    swp.add_argument("--frame", default=None, metavar="N", help="the frame each contact-sheet tile shows, 0-based; negative counts from the end (default: the last)")
    swp.add_argument("--no-progress", action="store_true", help="no progress bars")

    vid = sub.add_parser("video", help="(re)make the video of a run folder from its complete frames; prints its path")
    vid.add_argument("run", metavar="RUN", help="run folder (also one still rendering: only complete frames are used)")
    vid.add_argument("--fps", default=None, metavar="F", help="frames per second (default: the run's output.fps)")
    vid.add_argument("--from", dest="start", default=None, metavar="N", help="first frame, 0-based (default 0)")
    vid.add_argument("--to", dest="end", default=None, metavar="N", help="last frame, inclusive (default: the last complete one)")
    vid.add_argument("--gif", action="store_true", help="a looping GIF instead of the run's output.video_format")

    ani = sub.add_parser("animate", help="animate one photo with a 3D camera move (depth parallax); prints the video's path")
    ani.add_argument("photo", metavar="PHOTO", help="the photo (a file or an http(s) URL)")
    ani.add_argument("-o", "--output", required=True, metavar="VIDEO", help="the video to write (.mp4 or .gif); its frames go to a run folder beside it")
    ani.add_argument("--camera", default="dolly", metavar="{dolly,orbit,pan,zoom,swing,PATH.json}", help="a camera preset sized to the photo's depth, or a JSON file of keyframe strings (translation_x/y/z, rotation_3d_x/y/z, fov); default dolly")
    ani.add_argument("--seconds", default="4", metavar="S", help="length of the clip (default 4)")
    ani.add_argument("--fps", default="24", metavar="F", help="frames per second, 0.1 to 240 (default 24)")
    ani.add_argument("--depth-model", default=None, metavar="M", help="depth model: hub id, folder, tiny-depth-anything or constant (default Depth Anything V2 Small)")
    ani.add_argument("--fill", default="auto", choices=["auto", "opencv", "latent"], help="how revealed areas are filled: opencv (depth-aware background extension + OpenCV inpainting), latent (the latent model's masked img2img), auto (latent when --latent-model is given and available, else opencv)")
    ani.add_argument("--latent-model", default=None, metavar="M", help="latent model for the learned fill: a preset (sd-1.5, sd-turbo, tiny-latent), hub id or diffusers folder")
    ani.add_argument("--size", default=None, metavar="N", help="longer side of the frames in pixels, 16 to 4096 (default: the photo's, at most 1024)")
    ani.add_argument("--stereo", default="none", choices=["none", "sbs", "anaglyph"], help="a side-by-side or red-cyan anaglyph stereo video")
    ani.add_argument("--mesh", default=None, metavar="OUT.glb", help="also write the photo as a textured 3D mesh (GLB)")
    ani.add_argument("--ply", default=None, metavar="OUT.ply", help="also write the photo as a coloured point cloud (PLY)")
    ani.add_argument("--device", default="auto", metavar="D", help="where the depth model, warps and learned fill run: auto (CUDA when available), cpu, cuda or cuda:N")
    ani.add_argument("--random-weights", action="store_true", help="use random weights when a model's weights are unavailable (tests: the depth and the learned fill are noise)")

    sch = sub.add_parser("schedule", help="evaluate a keyframe string: prints 'frame value' per line")
    sch.add_argument("text", help='keyframe string, e.g. "0:(0), 30:(sin(t/5))"')
    sch.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    sch.add_argument("--interpolation", default="linear", choices=list(INTERPOLATIONS))
    sch.add_argument("--seed", type=int, default=0, help="value of s in expressions")
    sch.add_argument("--plot", default=None, metavar="PNG", help="also save a plot of the curve")
    sch.add_argument(
        "--soundtrack", default=None, metavar="SONG", help="audio file that bass(t), beat(t), beat_frame(n) ... read"
    )
    sch.add_argument("--fps", default=None, metavar="F", help="frames per second the soundtrack is read at (default 12)")

    aud = sub.add_parser(
        "audio",
        help="analyse a soundtrack at a frame rate: tempo, beats, bars; plot the features, export keyframe strings",
    )
    aud.add_argument("song", metavar="SONG", help="the audio file (wav, flac, ogg, mp3, m4a ...: anything ffmpeg reads)")
    aud.add_argument("--fps", default=None, metavar="F", help="frames per second of the video (default: output.fps's default, 12)")
    aud.add_argument("--plot", default=None, metavar="PNG", help="also save a plot of the features (and of the exported curves) per frame")
    aud.add_argument(
        "--export-keyframes",
        action="append",
        default=[],
        metavar="NAME=EXPR",
        help="(repeatable) evaluate EXPR (a keyframe value or string, e.g. zoom=1+0.04*bass or translation_z=10*beat) "
        "at every frame of the song and print {NAME: \"0: (v0), 1: (v1), ...\"} as JSON on stdout, plain numbers a "
        "Deforum or Disco settings file reads; the summary then goes to stderr",
    )
    aud.add_argument("--beat-decay", default=None, metavar="S", help="seconds a beat(t) pulse takes to fall from 1 to 0 (animation.beat_decay, default 0.25)")
    aud.add_argument("--beats-per-bar", default=None, metavar="N", help="beats in a bar (animation.beats_per_bar, default 4)")
    aud.add_argument("--first-downbeat", default=None, metavar="K", help="which of the first beats (0-based) is a bar's first beat; -1 = found from the bass (animation.first_downbeat, default -1)")
    aud.add_argument("--json", action="store_true", help="print the summary as one JSON object (with the exported keyframes under \"keyframes\")")
    return p


class CliError(InputError):
    """A bad command line (options that do not go together, a missing file argument); one-line message."""


def _write_settings(settings: Settings, output: str, force: bool) -> Path:
    out = expand_path(output, setting="--output")
    if out.exists() and not force:
        raise CliError(f"{out} exists; pass --force to overwrite it")
    settings.save(out)
    return out


def _cmd_init(args: argparse.Namespace) -> int:
    if args.list_presets:
        sys.stdout.write(preset_listing())
        return 0
    if not args.output:
        raise CliError("init needs -o/--output SETTINGS.json (or --list-presets to see the presets)")
    mode = args.mode or (preset_mode(args.preset) if args.preset else "guided")
    s = Settings.defaults(mode, args.animation)
    if args.preset:
        apply_preset(s, args.preset)
    for assignment in args.set:
        s.set_from_string(assignment)
    s.validate()
    out = _write_settings(s, args.output, args.force)
    print(f"wrote {out} ({mode} mode, animation {s.animation.animation_mode})")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    s = Settings.load(args.file)
    for assignment in args.set:
        s.set_from_string(assignment)
    s.validate()
    print(f"{args.file}: ok ({s.image.mode} mode, animation {s.animation.animation_mode}, {s.n_frames()} frame(s))")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    report = import_settings(args.file, args.animation)
    out = _write_settings(report.settings, args.output, args.force)
    print(report.summary())
    print(f"wrote {out}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    # Here, not at the top, for start-up time: the render loop imports torch and the model libraries (seconds),
    # which init, validate, import-settings and schedule never need.
    from discolib.run.loop import render

    if args.resume and args.set:
        raise CliError("--set cannot change a run being resumed (its frames must match its settings.json); start a new run instead")
    if args.resume and args.threads is not None:
        # Refused, not ignored: the frames' last bits depend on the count, and a flag that silently does nothing
        # would let the user believe the resume runs with it.
        raise CliError(
            "--threads cannot change a run being resumed: it renders with the thread count recorded in its run.json "
            "(another count changes the frames' last bits); start a new run to use another count"
        )
    # Expanded here so that "~nouser/x" is one line naming the option, not a RuntimeError deep in pathlib.
    out = str(expand_path(args.out, setting="--out")) if args.out is not None else None
    resume = args.resume
    if resume and resume != "latest":
        if args.file:
            raise CliError("--resume RUN_FOLDER uses the run's own settings.json: give no settings file")
        resume = str(expand_path(resume, setting="--resume"))
        # render() resumes with the run folder's own settings.json after checking it against run.json; reading it
        # here first would report a changed or broken file as a settings error instead of saying it changed.
        settings = Settings()
    else:
        if not args.file:
            raise CliError("render needs a settings file (make one with `discolib init -o settings.json`)")
        settings = Settings.load(args.file)
        for assignment in args.set:
            settings.set_from_string(assignment)
        if args.threads is not None:
            try:
                settings.set_from_string(f"models.threads={args.threads}")
            except SettingsError as exc:
                raise CliError(f"--threads (models.threads): {exc.reason}") from None
    result = render(settings, out=out, resume=resume, progress=not args.no_progress, force=args.force)
    print(f"{result.status}: {len(result.frames)} frame(s) in {result.run_dir}")
    if result.video:
        print(f"video: {result.video}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    # Here, not at the top, for start-up time: running variants imports torch and the model libraries.
    from discolib.run.sweep import sweep

    if args.executor != "ray" and (args.ray_address is not None or args.gpus_per_run is not None):
        raise CliError("--ray-address and --gpus-per-run are options of --executor ray")
    max_variants = _sweep_int(args.max_variants, "--max-variants", "a number of variants")
    frame = _sweep_int(args.frame, "--frame", "a frame number (0-based; negative from the end)")
    gpus = None
    if args.gpus_per_run is not None:
        try:
            gpus = float(args.gpus_per_run)
        except ValueError:
            raise CliError(f"--gpus-per-run: expected a number of GPUs such as 1 or 0.5, got {args.gpus_per_run!r}") from None
        if not 0 <= gpus <= 1024:
            raise CliError(f"--gpus-per-run: expected a number of GPUs from 0 to 1024, got {args.gpus_per_run!r}")

    def report(state: Any) -> None:
        if state.status == "running":
            return
        where = f" ({state.run_dir})" if state.run_dir else ""
        error = f": {state.error}" if state.status == "failed" and state.error else ""
        print(f"{state.id} {state.status}{error} · {state.label}{where}", flush=True)

    result = sweep(
        args.file,
        str(expand_path(args.out, setting="--out")),
        executor=args.executor,
        ray_address=args.ray_address,
        gpus_per_run=gpus,
        max_variants=max_variants,
        frame=frame,
        progress=not args.no_progress,
        callback=report,
    )
    done = sum(s.status == "done" for s in result.variants)
    print(f"{done} of {len(result.variants)} variant(s) done in {result.path}")
    if result.contact_sheet is not None:
        print(f"contact sheet: {result.contact_sheet}")
    failed = [s for s in result.variants if s.status != "done"]
    for state in failed:
        print(f"{state.id} {state.status}: {state.error or state.label}", file=sys.stderr)
    return 1 if failed else 0


def _sweep_int(text: str | None, option: str, what: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise CliError(f"{option}: expected {what}, got {text!r}") from None


def _number(text: str | None, option: str, kind: type[int] | type[float]) -> int | float | None:
    """An option's number, or a one-line CliError naming the option (argparse's own error prints the usage)."""
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a frame number (0-based)" if kind is int else "a number of frames per second"
        raise CliError(f"{option}: expected {what}, got {text!r}") from None


def _cmd_video(args: argparse.Namespace) -> int:
    # Here for start-up time: the video module imports torch through discolib.io.video.
    from discolib.run.video import make_run_video

    path = make_run_video(
        args.run,
        fps=_number(args.fps, "--fps", float),
        start=_number(args.start, "--from", int),  # type: ignore[arg-type]
        end=_number(args.end, "--to", int),  # type: ignore[arg-type]
        gif=args.gif,
    )
    print(path)
    return 0


def _animate_number(text: str | None, option: str, kind: type[int] | type[float], what: str) -> int | float | None:
    """A positive number of ``discolib animate``'s options, or a one-line CliError naming the option."""
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise CliError(f"{option}: expected {what}, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise CliError(f"{option}: expected a positive number, got {text!r}")
    return value


def _cmd_animate(args: argparse.Namespace) -> int:
    # Here for start-up time: animating imports torch and the depth model libraries.
    from discolib.models.device import resolve_device  # (torch)
    from discolib.run.photo import MAX_FPS, MAX_SIZE, MIN_FPS, MIN_SIZE, animate_photo  # (the depth models)

    seconds = _animate_number(args.seconds, "--seconds", float, "a length in seconds")
    fps = _animate_number(args.fps, "--fps", float, "a number of frames per second")
    size = _animate_number(args.size, "--size", int, "a number of pixels")
    if fps is not None and not MIN_FPS <= fps <= MAX_FPS:
        raise CliError(f"--fps: expected a frame rate from {MIN_FPS:g} to {MAX_FPS:g}, got {args.fps!r}")
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        raise CliError(f"--size: expected a number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {args.size!r}")
    kwargs = {"depth_model": args.depth_model} if args.depth_model else {}
    try:
        device = resolve_device(args.device)
    except InputError as exc:  # its message names models.device: here the option is --device
        raise CliError(f"--device: {str(exc).split(': ', 1)[1]}") from None
    result = animate_photo(
        args.photo,
        str(expand_path(args.output, setting="--output")),
        camera=args.camera,
        seconds=seconds,  # type: ignore[arg-type]
        fps=fps,  # type: ignore[arg-type]
        fill=args.fill,
        latent_model=args.latent_model,
        size=size,  # type: ignore[arg-type]
        stereo=args.stereo,
        mesh=args.mesh,
        point_cloud=args.ply,
        random_weights=args.random_weights,
        device=device,
        **kwargs,
    )
    print(f"{len(result.frames)} frame(s) in {result.run_dir}")
    for extra in (result.mesh, result.point_cloud):
        if extra is not None:
            print(f"wrote {extra}")
    print(result.video)
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise CliError(f"--frames: expected a positive number of frames, got {args.frames}")
    if abs(args.seed) >= 2**63:
        raise CliError("--seed: expected an integer of at most 18 digits")
    plot = _plot_target(args.plot) if args.plot else None
    sched = Schedule.parse(args.text, setting="schedule", interpolation=args.interpolation)
    audio = None
    if args.soundtrack is not None:
        settings = Settings()
        if args.fps is not None:
            try:
                settings.set("output.fps", _animate_number(args.fps, "--fps", float, "a number of frames per second"))
            except SettingsError as exc:
                raise CliError(f"--fps (output.fps): {exc.reason}") from None
        settings.set("output.soundtrack", args.soundtrack)
        audio = settings.audio_features()  # what a render with that song and fps evaluates
    elif args.fps is not None:
        raise CliError("--fps: only with --soundtrack (the frame rate the song is read at)")
    values = sched.values(args.frames, seed=args.seed, audio=audio)
    lines = [f"{i} {v:.6g}" for i, v in enumerate(values.tolist())]
    sys.stdout.write("\n".join(lines) + "\n")
    if plot is not None:
        plot_schedule(sched, args.frames, path=str(plot[0]), audio=audio)
        print(f"# plot written to {args.plot}", file=sys.stderr)
    return 0


def _audio_int(text: str, option: str, what: str) -> int:
    """A whole number of ``discolib audio``'s options, or a one-line CliError naming the option."""
    try:
        return int(text)
    except ValueError:
        raise CliError(f"{option}: expected {what}, got {text!r}") from None


def _audio_exports(assignments: list[str]) -> dict[str, str]:
    """``--export-keyframes NAME=EXPR`` options as ``{NAME: EXPR}`` (in order; a repeated NAME is refused)."""
    exports: dict[str, str] = {}
    for assignment in assignments:
        name, sep, expr = assignment.partition("=")
        name = name.strip()
        if not sep:
            raise CliError(f"--export-keyframes: expected NAME=EXPR (e.g. zoom=1+0.04*bass), got {assignment!r}")
        if not name.isidentifier() or not name.isascii():
            raise CliError(f"--export-keyframes: NAME must be a setting name such as zoom or translation_z, got {name!r}")
        if name in exports:
            raise CliError(f"--export-keyframes: {name} is given twice")
        if not expr.strip():
            raise CliError(f"--export-keyframes {name}: expected a keyframe value after '=', e.g. {name}=1+0.04*bass")
        exports[name] = expr
    return exports


def _plot_target(text: str) -> tuple[Path, str]:
    """Where ``--plot`` writes and the image format its suffix names (checked before the analysis, which takes
    seconds); matplotlib is optional (the `notebook` extra), so a missing one is a one-line error saying so."""
    try:
        # Here for start-up time, and because matplotlib is optional: only --plot needs it.
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise CliError('--plot needs matplotlib: pip install "discolib[notebook]"') from None
    path = expand_path(text, setting="--plot")
    suffix = path.suffix.lower().lstrip(".") or "png"
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        raise CliError(f"--plot: expected a file name ending in .png, .svg or .pdf, got {text!r}")
    if path.is_dir():
        raise CliError(f"--plot: {path} is a folder; expected an image file name such as features.png")
    return path, suffix


def _cmd_audio(args: argparse.Namespace) -> int:
    # Here for start-up time: export_keyframes is light, but the analysis imports librosa (seconds, on first use).
    from discolib.schedules.keyframes import export_keyframes

    song = expand_path(args.song, setting="SONG")
    if not song.is_file():  # said before the options' checks below, which read the defaults of every setting
        raise CliError(f"SONG: {song}: no such file" if not song.exists() else f"SONG: {song}: not a file")
    settings = Settings()
    # Each option is the setting of the same meaning, checked by it (the range a render would accept), so that the
    # numbers printed here are what a render of those settings evaluates.
    options = [
        ("--fps", "output.fps", args.fps, float, "a number of frames per second"),
        ("--beat-decay", "animation.beat_decay", args.beat_decay, float, "a decay in seconds"),
        ("--beats-per-bar", "animation.beats_per_bar", args.beats_per_bar, int, "a whole number of beats"),
        ("--first-downbeat", "animation.first_downbeat", args.first_downbeat, int, "a beat index (0-based) or -1"),
    ]
    for option, name, text, kind, what in options:
        if text is None:
            continue
        value = _audio_int(text, option, what) if kind is int else _animate_number(text, option, float, what)
        try:
            settings.set(name, value)
        except SettingsError as exc:
            raise CliError(f"{option} ({name}): {exc.reason}") from None
    try:
        settings.check_first_downbeat()  # each option alone was in range; together they may not be
    except SettingsError as exc:
        raise CliError(f"--first-downbeat (animation.first_downbeat): {exc.reason}") from None
    exports = _audio_exports(args.export_keyframes)
    plot = _plot_target(args.plot) if args.plot else None

    settings.set("output.soundtrack", str(song))
    features = settings.audio_features()  # the one place settings become features: what a render evaluates
    if features is None:  # pragma: no cover (output.soundtrack is set just above)
        raise CliError("SONG: no soundtrack")
    # `s` in an expression is 0, as in `discolib schedule` without --seed (a render's is its run's seed).
    keyframes = {
        name: export_keyframes(expr, features.n_frames, audio=features, seed=0, setting=f"--export-keyframes {name}")
        for name, expr in exports.items()
    }
    summary = _audio_summary(song, features)
    if plot is not None:
        _save_audio_plot(features, plot, exports)
    if args.json:
        print(json.dumps({**summary, **({"keyframes": keyframes} if keyframes else {})}, indent=2, ensure_ascii=False))
    else:
        # With exports, stdout is only their JSON object (`> keys.json` gives a file to paste from); the summary,
        # for the person at the terminal, goes to stderr.
        out = sys.stderr if keyframes else sys.stdout
        for line in _audio_lines(summary):
            print(line, file=out)
        if keyframes:
            print(json.dumps(keyframes, indent=2, ensure_ascii=False))
    if plot is not None:
        print(f"# plot written to {plot[0]}", file=sys.stderr)
    return 0


def _audio_summary(song: Path, features: Any) -> dict[str, Any]:
    """The features' summary plus what a user keys on: the first beat's and the first bar's frame (None: none)."""
    summary = {"song": str(song), **features.summary()}
    summary.update(
        beats_per_bar=features.beats_per_bar,
        first_downbeat=features.first_downbeat,
        beat_decay=features.beat_decay,
        first_beat_frame=int(features.beat_frames[0]) if len(features.beat_frames) else None,
        first_bar_frame=int(features.bar_frames[0]) if len(features.bar_frames) else None,
    )
    return summary


def _audio_lines(summary: dict[str, Any]) -> list[str]:
    fps = summary["fps"]
    first_beat, first_bar = summary["first_beat_frame"], summary["first_bar_frame"]
    return [
        f"song: {summary['song']}",
        f"duration: {summary['duration']:.3f} s",
        f"tempo: {summary['tempo']:.1f} BPM" if summary["tempo"] else "tempo: none (no beat found)",
        f"beats: {summary['beats']}" + (f", the first at frame {first_beat}" if first_beat is not None else ""),
        f"bars: {summary['bars']} of {summary['beats_per_bar']} beats"
        + (f", the first at frame {first_bar} (first_downbeat {summary['first_downbeat']})" if first_bar is not None else ""),
        f"frames: {summary['n_frames']} at {fps:g} fps",
    ]


def _save_audio_plot(features: Any, plot: tuple[Path, str], exports: dict[str, str]) -> None:
    """plot_features' figure (with the exported curves) written atomically: never half an image under the name."""
    from discolib.audio import plot_features  # here: matplotlib, optional and slow to import
    from discolib.io.files import WriteError, atomic_path  # here too: only --plot writes a file

    path, fmt = plot
    curves = {
        name: Schedule.parse(expr, setting=f"--export-keyframes {name}").values(features.n_frames, audio=features)
        for name, expr in exports.items()
    }
    fig = plot_features(features, curves=curves or None)
    with atomic_path(path, mkdir=True, error=lambda exc: WriteError(path, exc)) as tmp:
        with warnings.catch_warnings():
            # Without the CJK font package, CJK glyphs draw as boxes: a known fallback, not news for every plot.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            fig.savefig(tmp, format=fmt, dpi=100)


COMMANDS = {
    "init": _cmd_init,
    "validate": _cmd_validate,
    "import-settings": _cmd_import,
    "render": _cmd_render,
    "sweep": _cmd_sweep,
    "video": _cmd_video,
    "schedule": _cmd_schedule,
    "animate": _cmd_animate,
    "audio": _cmd_audio,
}


def _tolerant_streams() -> None:
    """Let stdout/stderr write any text: prompts, paths and batch names are typed in any script, and a console or
    pipe whose encoding is ASCII or cp1252 would raise UnicodeEncodeError mid-run. Characters it cannot encode are
    written as ``\\uXXXX`` escapes instead (readable, and the text is still whole in the run's JSON files)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: nothing to write to anyway
                pass


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():
            # Warnings about user input (duplicate keyframes, resized images) are worth one plain line each.
            warnings.simplefilter("default")
            # Libraries' deprecation notices are for developers, not for someone rendering a video.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.showwarning = _show_warning  # type: ignore[assignment]
            return COMMANDS[args.command](args)
    except torch_oom() as exc:
        if args.debug:
            raise
        print(
            "discolib: error: out of GPU memory; lower image.width/height, guidance.cutn_batches or the number of CLIP "
            f"models, or set models.gradient_checkpointing=true ({str(exc).splitlines()[0]})",
            file=sys.stderr,
        )
        return 2
    except (MemoryError, RuntimeError) as exc:
        # Out of host memory: Python's MemoryError, or torch's CPU allocator failing as a RuntimeError. Any other
        # RuntimeError is a bug and keeps its traceback.
        if args.debug or not (isinstance(exc, MemoryError) or "DefaultCPUAllocator" in str(exc)):
            raise
        print(
            "discolib: error: out of memory; lower image.width/height, the steps or the number of CLIP models, or run "
            f"on a GPU ({one_line(exc, None, lines='join')[:300] or type(exc).__name__})",
            file=sys.stderr,
        )
        return 2
    except (DiscolibError, OSError) as exc:  # anything else is a bug: its traceback is the useful report
        if args.debug:
            raise
        print(f"discolib: error: {one_line(exc, None, lines='join') or type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("discolib: interrupted", file=sys.stderr)
        return 130


def torch_oom() -> type[BaseException]:
    """torch's out-of-memory error class, without importing torch for commands that never load it."""
    torch = sys.modules.get("torch")
    return getattr(torch, "OutOfMemoryError", _NeverRaised) if torch is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"discolib: warning: {one_line(message, None, lines='join')}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

