"""The notebooks: structure, nbval offline with the tiny presets, papermill runs, papermill's parameter help.

* Structure (fast, no kernel): exactly one papermill ``parameters`` cell whose every line (after its ``#@title``)
  is a Colab form with a type annotation, ``name: type = literal  #@param ...  # help``, holding the documented
  defaults (an autosaved edit fails); every code cell starts with a Colab ``#@title``; no logic in notebooks (no
  definitions, loops, ``with`` or ``try``, and one ``if``: the Colab install); imports from ``discolib`` and
  ``discolib_widgets`` only; the Colab install cell, then ``notebook_setup`` (environment overrides, Colab,
  Drive, GPU) before anything else; the panel (with the notebook's key) before the one render cell
  (``render_here``); the last cell checks the run folder (it raises unless every frame is done: nbval compares no
  recorded output once nbstripout has cleared the execution counts); no outputs (``nbstripout --verify`` passes).
* The notebook helpers without a kernel: ``start_settings`` from a preset or a settings file, ``apply_parameters``,
  ``record_summary(require_done=True)``, ``gpu_report`` (``notebook_setup`` on a fake Colab is in test_widgets.py).
* ``pytest --nbval-lax notebooks/`` exactly as a user types it (no variables: notebooks/conftest.py picks the tiny
  presets), and per notebook with only ``DISCOLIB_OUTPUT_ROOT`` set to check the run folder.
* papermill runs with parameter overrides, then the run folder is checked (frames, settings.json, run.json,
  video for animations); the quickstart's output notebook holds images and the final progress line, no widget
  reprs.
* The photo notebook (``photo.ipynb``, ``discolib.animate_photo``: no Settings, panel or render_here) gets the
  same structure, defaults, help and nbval checks where they apply (its setup is ``photo_setup``, its offline
  depth model comes through DISCOLIB_DEPTH_MODEL), its dropdowns offer what animate_photo accepts, and a
  papermill run shows the depth preview and the video.
* ``papermill --help-notebook`` lists every parameter with its type and its comment.
* GPU mode (opt-in, ``DISCOLIB_GPU_NOTEBOOKS=1``, marker ``gpu``): the render notebooks through papermill and nbval
  with their real presets on CUDA; skipped without CUDA. Where discolib has ``models.random_weights`` it is
  turned on (the real architectures with random weights when the real ones cannot be fetched); without it, the
  test skips with the loader's message when the real weights cannot be reached.

The notebook runs need a Jupyter kernel named ``python3`` that runs this interpreter; the session fixture
``python3_kernel`` checks that and otherwise installs one inside this environment
(``python -m ipykernel install --sys-prefix --name python3``), never under ``~/.local``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from discolib import RunFolder, Settings, preset_mode
from discolib.config.presets import PRESETS
from discolib.config.settings import iter_fields
from discolib_widgets.notebook import NOTEBOOK_ENV, apply_parameters, gpu_report, start_settings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"

#: Each render notebook (Settings, the panel, render_here) and the offline preset that nbval runs it with (through
#: DISCOLIB_PRESET).
OFFLINE_PRESET = {
    "quickstart.ipynb": "tiny-latent", "disco.ipynb": "tiny", "animation.ipynb": "tiny-latent",
    "music_video.ipynb": "tiny-latent",
}  # fmt: skip
RENDER_NOTEBOOKS = list(OFFLINE_PRESET)
#: The photo notebook (discolib.animate_photo, no Settings) and the depth model nbval runs it with (through
#: DISCOLIB_DEPTH_MODEL): tiny, random, built in-process.
PHOTO = "photo.ipynb"
OFFLINE_DEPTH_MODEL = "tiny-depth-anything"
#: The sweep notebook (discolib.sweep, no Settings, panel or render_here): its default, the shipped demo sweep of
#: tiny variants, runs offline as it is (nbval gets only the output folder).
SWEEP = "sweep.ipynb"
DEMO_SWEEP = "demo_sweep.json"
#: The live notebook (a LiveSession's panel; tests/test_notebook_live.py checks its structure): nbval runs it with
#: tiny-live and reads the 3-frame cap as a scripted flight of 3 frames, then renders the flight.
LIVE = "live.ipynb"
NOTEBOOKS = [*RENDER_NOTEBOOKS, PHOTO, SWEEP]
#: What docs/NOTEBOOKS.md's table names as each notebook's offline choice (a preset; the photo's depth model; the
#: sweep's sweep file).
OFFLINE_CHOICE = {**OFFLINE_PRESET, PHOTO: OFFLINE_DEPTH_MODEL, SWEEP: DEMO_SWEEP}

#: Parameters every render notebook has.
REQUIRED_PARAMETERS = {
    "preset", "animation_mode", "max_frames", "text_prompts", "seed", "overrides", "output_root", "use_drive",
    "settings_file", "resume_run", "reset_panel",
}  # fmt: skip
#: Parameters the notebook itself uses (the rest are settings, applied through apply_parameters).
NOTEBOOK_PARAMETERS = {"preset", "animation_mode", "overrides", "output_root", "use_drive", "settings_file", "resume_run", "reset_panel"}
#: A notebook's own parameters beyond those (used by its calls, not applied as settings): the music notebook's
#: length of the clip it synthesises when no soundtrack is given.
EXTRA_NOTEBOOK_PARAMETERS = {"music_video.ipynb": {"max_seconds"}}
#: The notebooks whose default preset is a tiny one (the demos that run anywhere); the others default to real weights.
TINY_DEFAULT = ("quickstart.ipynb", "music_video.ipynb")

#: Every parameter's default, as docs/NOTEBOOKS.md and the notebooks' markdown describe them. Jupyter's autosave
#: writes a user's edits into the tracked notebook; this makes such an edit fail the tests instead of shipping.
#: (Users edit a copy, or pass papermill parameters.)
DEFAULTS: dict[str, dict[str, Any]] = {
    "quickstart.ipynb": {
        "preset": "tiny-latent", "animation_mode": "3D", "max_frames": 8,
        "text_prompts": {"0": "a lighthouse in a stormy sea", "4": "a castle on a hill"},
        "translation_z": "0: (2)", "rotation_3d_y": "0: (1)", "zoom": "0: (1.02)", "fps": 8,
        "batch_name": "quickstart", "seed": 42,
    },
    "animation.ipynb": {
        "preset": "sd-1.5", "batch_name": "Deforum", "seed": -1, "animation_mode": "3D", "max_frames": 60,
        "text_prompts": {
            "0": "a beautiful lake by Asher Brown Durand, trending on Artstation --neg blurry, low quality",
            "30": "a misty forest at dawn, trending on Artstation --neg blurry, low quality",
        },
        "angle": "0: (0)", "zoom": "0: (1.04)", "translation_x": "0: (10*sin(2*3.14*t/10))", "translation_z": "0: (10)",
        "rotation_3d_y": "0: (0)", "noise_schedule": "0: (0.02)", "contrast_schedule": "0: (1.0)",
        "color_coherence": "LAB", "cadence": 1, "fps": 12,
    },
    "disco.ipynb": {
        "preset": "disco-512", "batch_name": "TimeToDisco", "seed": -1, "n_batches": 1,
        "text_prompts": {"0": [
            "A beautiful painting of a singular lighthouse, shining its light across a tumultuous sea of blood by greg "
            "rutkowski and thomas kinkade, Trending on artstation.", "yellow color scheme",
        ]},
        "image_prompts": {}, "clip_guidance_scale": 5000, "init_image": "", "animation_mode": "3D", "max_frames": 24,
        "angle": "0: (0)", "zoom": "0: (1), 10: (1.05)", "translation_x": "0: (0)", "translation_y": "0: (0)",
        "translation_z": "0: (10.0)", "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)",
        "frames_skip_steps": "60%", "fps": 12,
    },
    "music_video.ipynb": {
        "soundtrack": "", "max_seconds": 4, "fps": 8, "length_from_soundtrack": True, "max_frames": 32,
        "preset": "tiny-latent", "animation_mode": "3D",
        "text_prompts": {"0": "a neon city at night, synthwave", "bar_frame(2)": "a glowing jungle under a purple sky, synthwave"},
        "zoom": "0: (1.0 + 0.04*bass(t))", "translation_z": "0: (2 + 10*beat(t))", "angle": "0: (2*bar(t))",
        "beat_decay": 0.25, "batch_name": "MusicVideo", "seed": 42,
    },
    PHOTO: {
        "photo": "", "camera": "dolly", "seconds": 4, "fps": 24,
        "depth_model": "depth-anything/Depth-Anything-V2-Small-hf", "fill": "auto", "latent_model": "",
        "stereo": "none", "mesh": False, "output_root": "runs", "use_drive": False,
    },
    SWEEP: {
        "sweep_file": "", "executor": "local", "ray_address": "", "gpus_per_run": 0, "max_variants": 0,
        "output_root": "runs", "use_drive": False,
    },
}  # fmt: skip
#: Defaults every render notebook shares: a new run, no file, outputs in runs/, no Drive, the panel's edits kept.
COMMON_DEFAULTS = {"overrides": {}, "output_root": "runs", "use_drive": False, "settings_file": "", "resume_run": "", "reset_panel": False}

GPU_ENV = "DISCOLIB_GPU_NOTEBOOKS"

# A parameters line: `name: annotation = literal  #@param [options] or {type:"..."}  # help`. The annotation is what
# `papermill --help-notebook` shows as the type (papermill reads annotations and `# type:` comments only, and a
# `# type:` comment before `#@param` would break the Colab form); Colab's forms accept annotated assignments.
PARAM_LINE = re.compile(
    r"^(?P<name>[A-Za-z_]\w*): (?P<annotation>\w+) = (?P<value>.+?)  "
    r"#@param (?P<form>\[.*\]|\{type:\"(?P<type>\w+)\"\})  # (?P<help>\S.*)$"
)
#: A code cell's first line, which Colab shows as the cell's title and collapses the code under.
TITLE_LINE = re.compile(r'^#@title \S.* \{ display-mode: "form" \}$')
FORM_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "raw": (dict, list),
}
#: The annotation each Colab form type gets (a dropdown, `#@param [...]`, holds strings).
FORM_ANNOTATION = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "raw": "dict", None: "str"}
CELL_TIMEOUT_S = 600


# ----------------------------------------------------------------------------------------------- helpers
def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected exactly one cell tagged 'parameters', found {len(cells)}"
    return cells[0]


def parameters(name: str) -> dict[str, dict[str, Any]]:
    """name -> {value (the literal), annotation, type, help, options} for every line of the parameters cell."""
    out: dict[str, dict[str, Any]] = {}
    lines = parameters_cell(load(name)).source.splitlines()
    assert TITLE_LINE.match(lines[0]), f"{name}: the parameters cell starts with a Colab #@title: {lines[0]!r}"
    for line in lines[1:]:
        if not line.strip():
            continue
        m = PARAM_LINE.match(line)
        assert m, f"{name}: parameters line is not `name = literal  #@param ...  # help`: {line!r}"
        try:
            value = ast.literal_eval(m["value"])
        except (ValueError, SyntaxError):
            raise AssertionError(f"{name}: parameter {m['name']} is not a literal (no derived values): {line!r}") from None
        options = ast.literal_eval(m["form"]) if m["form"].startswith("[") else None
        out[m["name"]] = {
            "value": value, "annotation": m["annotation"], "type": m["type"], "options": options, "help": m["help"]
        }
    return out


def python_source(cell_source: str) -> str:
    """A cell's source as plain Python (IPython magics such as %pip turned into calls), for ast."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def clean_env(*, one_thread: bool = True, **extra: str) -> dict[str, str]:
    """The environment for a notebook kernel: offline unless the caller's says otherwise, the notebook variables
    only as given, and with ``one_thread`` one BLAS thread (tiny models on a shared 2-core CI machine run several
    times faster than with spin-waiting OpenMP threads)."""
    env = {k: v for k, v in os.environ.items() if k not in NOTEBOOK_ENV}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.update(JUPYTER_PREFER_ENV_PATH="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    if one_thread:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.update(extra)
    return env


def run_nbval(name: str, env: dict[str, str]) -> None:
    """``python -m pytest --nbval-lax notebooks/<name>`` in a subprocess; fails with its output on a non-zero exit.

    ``--nbval-current-env`` runs the kernel with this interpreter whatever kernelspecs exist; ``-p no:cacheprovider``
    keeps .pytest_cache out of the checkout. nbval starts the kernel in notebooks/, so the outputs are sent
    elsewhere through DISCOLIB_OUTPUT_ROOT (set by the callers).
    """
    cmd = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout", str(CELL_TIMEOUT_S), "-p", "no:cacheprovider", "-q",
        str(NOTEBOOK_DIR / name),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"nbval failed on {name} (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert re.search(r"\d+ passed", proc.stdout), proc.stdout[-2000:]


def only_run(output_root: Path, batch_name: str) -> RunFolder:
    # (.cache holds the batch's soundtrack analyses, not a run)
    runs = sorted(p for p in (output_root / batch_name).iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 1, f"expected one run folder under {output_root / batch_name}, found {runs}"
    return RunFolder.open(runs[0])


def check_run(folder: RunFolder, n_images: int, *, video: bool) -> Settings:
    """The run folder is complete: n_images frames, settings.json that loads, run.json done, the video or none."""
    frames = sorted(folder.frames_dir.glob("*.png"))
    assert [p.name for p in frames] == [folder.frame_path(i).name for i in range(n_images)]
    settings = Settings.load(folder.settings_path)
    record = folder.read_record()
    assert record.status == "done"
    assert record.frames_done == record.frames_total == n_images
    assert len(record.seeds) == n_images
    videos = sorted(folder.path.glob("video.*"))
    if video:
        assert len(videos) == 1 and videos[0].stat().st_size > 0, videos
    else:
        assert videos == []
    return settings


def check_photo_run(video: Path, n_frames: int) -> dict[str, Any]:
    """animate_photo's outputs are complete: the video, and beside it one run folder ``<video stem>-frames/<run id>/``
    with n_frames frames, depth.png and run.json done; returns its settings.json (animate_photo's own keys)."""
    assert video.is_file() and video.stat().st_size > 0, video
    runs = sorted(p for p in (video.parent / f"{video.stem}-frames").iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    folder = RunFolder.open(runs[0])
    frames = sorted(folder.frames_dir.glob("*.png"))
    assert [p.name for p in frames] == [folder.frame_path(i).name for i in range(n_frames)]
    assert (folder.path / "depth.png").is_file()
    record = folder.read_record()
    assert record.status == "done" and record.frames_done == record.frames_total == n_frames
    run_settings = json.loads(folder.settings_path.read_text(encoding="utf-8"))
    assert run_settings["kind"] == "animate_photo"
    return run_settings


#: The notebooks' last cell: it prints "done True" or raises (how nbval checks a run: nbstripout clears execution
#: counts, and nbval compares no recorded output of a cell without one).
CHECK_CALL = "print(record_summary(result.run_dir, require_done=True))"


def executed_check_output(nb: nbformat.NotebookNode) -> str:
    (cell,) = [c for c in code_cells(nb) if CHECK_CALL in c.source]
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


# ----------------------------------------------------------------------------------------------- fixtures
def _kernel_python(argv0: str) -> str:
    # jupyter_client starts its own interpreter (sys.executable) for these names.
    bare = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    return sys.executable if argv0 in bare else argv0


def _python3_spec_ok() -> tuple[bool, str]:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return False, "no kernel named python3"
    exe = _kernel_python(spec.argv[0])
    # Compare without resolving symlinks: a venv's python links to the base interpreter, which lacks the packages.
    if os.path.abspath(exe) != os.path.abspath(sys.executable):
        return False, f"kernel python3 runs {exe} ({spec.resource_dir}), not {sys.executable}"
    return True, f"kernel python3 at {spec.resource_dir} runs {sys.executable}"


@pytest.fixture(scope="session")
def python3_kernel() -> Iterator[str]:
    """A Jupyter kernel named python3 that runs this interpreter; installed into sys.prefix when missing."""
    with pytest.MonkeyPatch.context() as mp:
        # Environment-level kernelspecs first even outside a virtualenv, so ~/.local cannot shadow this env's.
        mp.setenv("JUPYTER_PREFER_ENV_PATH", "1")
        ok, why = _python3_spec_ok()
        if not ok:
            cmd = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3",
                   "--display-name", "Python 3 (ipykernel)"]  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            ok, why2 = _python3_spec_ok()
            assert ok, f"{why}; after `{' '.join(cmd)}`: {why2}"
            why = why2
        yield why


@pytest.fixture
def kernel_env(python3_kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment papermill's kernel inherits (it starts from os.environ): see :func:`clean_env`."""
    for name in NOTEBOOK_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in clean_env().items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)


class PlainNbval:
    """``pytest --nbval-lax notebooks/`` (README's command) in a subprocess, started once per module: by the
    module's first test when test_nbval_plain_command is selected too (so they run side by side), else by that
    test."""

    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "notebooks/", "-p", "no:cacheprovider", "-q"]

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root  # DISCOLIB_OUTPUT_ROOT: where the runs land
        self.proc: subprocess.Popen[bytes] | None = None
        self.before: list[Path] = []
        self.returncode: int | None = None

    def start(self) -> PlainNbval:
        if self.proc is None:
            env = clean_env(DISCOLIB_OUTPUT_ROOT=str(self.out_root), DISCOLIB_OVERRIDES='{"output.fps": 4}')
            self.before = sorted(NOTEBOOK_DIR.iterdir())
            # Output to files, not pipes: nobody reads a pipe while the papermill tests run, and a full one blocks.
            logs = self.out_root.parent
            with (logs / "nbval.out").open("wb") as out, (logs / "nbval.err").open("wb") as err:
                self.proc = subprocess.Popen(  # noqa: S603
                    # its own process group: stop() ends nbval's kernels with it
                    self.cmd, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True
                )
        return self

    def wait(self) -> tuple[str, str]:
        assert self.proc is not None
        self.returncode = self.proc.wait(timeout=2400)
        read = lambda name: (self.out_root.parent / name).read_text(encoding="utf-8", errors="replace")  # noqa: E731
        return read("nbval.out"), read("nbval.err")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the kernels nbval started too, not only pytest
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=60)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def nbval_plain(python3_kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainNbval]:
    base = tmp_path_factory.mktemp("nbval-plain")
    (base / "runs").mkdir()
    run = PlainNbval(base / "runs")
    try:
        yield run
    finally:
        run.stop()  # never left running past the module (a failed or deselected test_nbval_plain_command)


@pytest.fixture(autouse=True)
def overlap_nbval(request: pytest.FixtureRequest) -> None:
    """Start the plain nbval command at this module's first test when test_nbval_plain_command is selected in this
    session: it then runs beside the module's other tests (the papermill runs, ~1 min, and the fast ones)."""
    if any(getattr(item, "originalname", "") == "test_nbval_plain_command" for item in request.session.items):
        request.getfixturevalue("nbval_plain").start()


def execute(name: str, out: Path, parameters: dict[str, Any], cwd: Path) -> nbformat.NotebookNode:
    import papermill

    return papermill.execute_notebook(
        str(NOTEBOOK_DIR / name),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
        execution_timeout=CELL_TIMEOUT_S,
    )


# ----------------------------------------------------------------------------------------------- structure
#: The setup call right after the Colab install: the environment variables, Colab and Drive, the GPU line.
SETUP_CALL = {
    **{name: "notebook_setup(preset, max_frames, output_root, overrides, use_drive=use_drive)" for name in RENDER_NOTEBOOKS},
    PHOTO: "photo_setup(seconds, fps, depth_model, output_root, use_drive=use_drive)",
    SWEEP: (
        "sweep_setup(sweep_file, output_root, ray_address=ray_address, gpus_per_run=gpus_per_run, "
        "max_variants=max_variants, use_drive=use_drive)"
    ),
}
#: The sweep notebook's last cell: "done 4/4" from sweep.json, or an error naming the variants not done.
SWEEP_CHECK_CALL = "print(sweep_summary(result.path, require_done=True))"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name: str) -> None:
    nb = load(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    cells = code_cells(nb)
    pcell = parameters_cell(nb)
    assert pcell.cell_type == "code"
    params = parameters(name)
    for pname, p in params.items():
        if p["options"] is not None:
            assert p["value"] in p["options"], f"{name}: {pname} default {p['value']!r} is not one of its options"
        else:
            assert isinstance(p["value"], FORM_TYPES[p["type"]]), f"{name}: {pname} is not a {p['type']}"
        assert p["annotation"] == FORM_ANNOTATION[p["type"]], f"{name}: {pname} is annotated {p['annotation']}"
    if name == PHOTO:  # the dropdowns offer exactly what animate_photo accepts
        from discolib.animation.photo import CAMERA_PRESETS
        from discolib.run import photo as photo_run

        assert params["camera"]["options"] == list(CAMERA_PRESETS)
        assert params["fill"]["options"] == list(photo_run._FILLS)
        assert params["stereo"]["options"] == list(photo_run._STEREO)
    elif name == SWEEP:
        assert params["executor"]["options"] == ["local", "ray"]
    else:
        assert REQUIRED_PARAMETERS <= set(params), REQUIRED_PARAMETERS - set(params)
        # Presets: every option exists, and the offline one that nbval uses is among them.
        options = params["preset"]["options"]
        assert set(options) <= set(PRESETS) and OFFLINE_PRESET[name] in options
    if name not in (*TINY_DEFAULT, PHOTO, SWEEP):  # the real notebooks default to real weights within one sampler
        assert not params["preset"]["value"].startswith("tiny"), f"{name}: the default preset must use real weights"
        assert len({preset_mode(p) for p in params["preset"]["options"]}) == 1

    # Colab collapses each code cell under its title (the form of the parameters cell shows instead of its code).
    for cell in cells:
        first = cell.source.splitlines()[0]
        assert TITLE_LINE.match(first), f"{name}: a code cell does not start with a Colab #@title: {first!r}"

    # Right after the parameters: the Colab install (it cannot live in discolib: discolib is not installed yet),
    # then the setup call, which applies the DISCOLIB_* variables (and Colab, Drive) before any cell reads one.
    index = {id(c): i for i, c in enumerate(cells)}
    sources = [c.source for c in cells]
    install, setup = index[id(pcell)] + 1, index[id(pcell)] + 2
    assert '"google.colab" in sys.modules' in sources[install], f"{name}: the Colab install must follow the parameters"
    for needle in ("%pip install", '"discolib[notebook] @ git+https://'):
        assert needle in sources[install], f"{name}: the Colab install cell lacks {needle!r}"
    (pip_line,) = [line for line in sources[install].splitlines() if "%pip install" in line]
    assert not {"-U", "--upgrade"} & set(pip_line.split()), "no forced upgrade: Colab's ipywidgets 8 stays"
    assert SETUP_CALL[name] in ast.unparse(ast.parse(sources[setup])), f"{name}: {SETUP_CALL[name]} must come next"

    calls: dict[str, int] = {}
    imported: set[str] = set()
    settings_names = set(iter_fields())
    applied: set[str] = set()
    read: set[str] = set()  # names the cells after the parameters read
    for i, cell in enumerate(cells):
        tree = ast.parse(python_source(cell.source))
        for node in ast.walk(tree):
            logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.While, ast.With, ast.Try)
            assert not isinstance(node, (*logic, ast.IfExp, ast.BoolOp)), (
                f"{name}: notebooks hold no logic (it belongs in discolib or discolib_widgets), but a cell has a "
                f"{type(node).__name__}:\n{cell.source}"
            )
            if isinstance(node, ast.If):
                assert cell is cells[install], f"{name}: the only `if` is the Colab install:\n{cell.source}"
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and cell is not pcell:
                read.add(node.id)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                whole = node.func.id not in ("apply_parameters", "animate_photo", "sweep")
                calls.setdefault(ast.unparse(node) if whole else node.func.id, i)
                if node.func.id == "apply_parameters":
                    # {setting: parameter}, never over a settings file
                    assert ast.unparse(node.keywords[0]) == "settings_file=settings_file", cell.source
                    mapping = node.args[1]
                    assert isinstance(mapping, ast.Dict)
                    for key, value in zip(mapping.keys, mapping.values, strict=True):
                        assert isinstance(key, ast.Constant) and key.value in settings_names, ast.unparse(key)
                        assert isinstance(value, ast.Name) and value.id in params, ast.unparse(value)
                        applied.add(value.id)
            if isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
    assert (SWEEP_CHECK_CALL if name == SWEEP else CHECK_CALL) in cells[-1].source, f"{name}: the last cell checks the run"
    for cell in cells:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs left in\n{cell.source}"
    if name == PHOTO:
        # The public faces only: discolib.animate_photo and the notebook helpers (sys: the Colab check).
        assert imported == {"discolib", "discolib_widgets", "sys"}, f"{name}: imports {sorted(imported)}"
        assert set(params) <= read, f"{name}: parameters no cell uses: {set(params) - read}"
        order = [
            SETUP_CALL[name], "photo_upload(photo)", "photo_source(photo, upload, output_root)", "animate_photo",
            "show_photo_result(result)", CHECK_CALL.removeprefix("print(").removesuffix(")"),
        ]
        for call in order:
            assert call in calls, f"{name}: no {call}"
        assert [calls[c] for c in order] == sorted(calls[c] for c in order), f"{name}: cells out of order"
        assert not any(c.startswith(("render", "show_panel(")) for c in calls), sorted(calls)
        return
    if name == SWEEP:
        # The public faces only: discolib.sweep and discolib_widgets.sweep (sys: the Colab check).
        assert imported == {"discolib", "discolib_widgets", "sys"}, f"{name}: imports {sorted(imported)}"
        assert set(params) <= read, f"{name}: parameters no cell uses: {set(params) - read}"
        order = [
            SETUP_CALL[name], "sweep", "show_sweep_result(result)", "show_sweep(sweep_dir)",
            SWEEP_CHECK_CALL.removeprefix("print(").removesuffix(")"),
        ]  # fmt: skip
        for call in order:
            assert call in calls, f"{name}: no {call}"
        assert [calls[c] for c in order] == sorted(calls[c] for c in order), f"{name}: cells out of order"
        assert not any(c.startswith(("render", "show_panel(")) for c in calls), sorted(calls)
        return
    # The public faces only (sys: the Colab check, before discolib is installed there).
    assert imported == {"discolib_widgets", "sys"}, f"{name}: imports {sorted(imported)}"
    # Every parameter reaches the settings or the notebook's own calls.
    own = NOTEBOOK_PARAMETERS | EXTRA_NOTEBOOK_PARAMETERS.get(name, set())
    assert set(params) - own == applied - own, set(params) ^ applied
    assert set(params) <= read, f"{name}: parameters no cell uses: {set(params) - read}"
    stem = name.removesuffix(".ipynb")
    for call in (
        "start_settings(preset, animation_mode, settings_file, output_root)",
        "finish_settings(settings, overrides, preset=preset, settings_file=settings_file)",
        f"show_panel(settings, key={stem!r}, reset=reset_panel)",
        "render_here(settings, out=output_root, resume=resume_run)",
        CHECK_CALL,
    ):
        assert call in calls, f"{name}: no {call}"
    # One way to render, after the panel (whose kept edits it then renders).
    assert not any(c.startswith(("render(", "show_result(")) for c in calls), sorted(calls)
    assert calls[f"show_panel(settings, key={stem!r}, reset=reset_panel)"] < calls["render_here(settings, out=output_root, resume=resume_run)"]


def test_photo_notebook_passes_every_setting_to_animate_photo() -> None:
    """The animate cell calls animate_photo with each parameter it has a keyword for, by that name."""
    nb = load(PHOTO)
    (call,) = [
        n for c in code_cells(nb) for n in ast.walk(ast.parse(python_source(c.source)))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "animate_photo"
    ]  # fmt: skip
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    for pname in ("camera", "seconds", "fps", "depth_model", "fill", "latent_model", "stereo"):
        assert keywords.get(pname) == pname, f"animate_photo gets {pname}={keywords.get(pname)}"
    assert keywords["device"] == "device" and keywords["callback"] == "photo_progress()"
    assert keywords["mesh"] == "outputs['mesh']" and ast.unparse(call.args[1]) == "outputs['out']"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_hold_the_documented_defaults(name: str) -> None:
    """An autosaved edit of the tracked notebook's parameters fails here (edit a copy or pass parameters)."""
    values = {pname: p["value"] for pname, p in parameters(name).items()}
    assert values == (DEFAULTS[name] if name in (PHOTO, SWEEP) else {**DEFAULTS[name], **COMMON_DEFAULTS})
    # docs/NOTEBOOKS.md's table names each notebook's default preset (the photo's: its depth model) and the
    # offline one.
    doc = (REPO / "docs" / "NOTEBOOKS.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| \[`{re.escape(name)}`\].*\| `([\w./-]+)` \| `([\w./-]+)` \|$", doc, flags=re.MULTILINE)
    assert row, f"docs/NOTEBOOKS.md has no row for {name}"
    default = {PHOTO: values.get("depth_model"), SWEEP: DEMO_SWEEP}.get(name, values.get("preset"))
    assert row[1] == default and row[2] == OFFLINE_CHOICE[name]


def test_nbstripout_keeps_tracked_notebooks_as_they_are() -> None:
    """The git filter and the pre-commit hook strip notebooks; the tracked ones are already stripped (so the filter
    changes nothing)."""
    attributes = (REPO / ".gitattributes").read_text(encoding="utf-8").splitlines()
    assert "*.ipynb filter=nbstripout" in attributes and "*.ipynb diff=ipynb" in attributes
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (repo,) = config["repos"]
    (hook,) = repo["hooks"]
    assert repo["repo"] == "local"  # nothing downloaded: the installed nbstripout runs
    assert (hook["id"], hook["entry"], hook["language"]) == ("nbstripout", "nbstripout", "system")
    assert re.search(hook["files"], "notebooks/disco.ipynb")
    cmd = [sys.executable, "-m", "nbstripout", "--verify", *map(str, sorted(NOTEBOOK_DIR.glob("*.ipynb")))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"nbstripout would change the tracked notebooks:\n{proc.stdout}{proc.stderr}"


# ----------------------------------------------------------------------------------------------- notebook helpers
def test_start_settings_from_preset_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    s = start_settings("tiny", "2D", "", "out/here")
    assert s.image.mode == "guided" and s.animation.animation_mode == "2D" and s.run.output_root == "out/here"
    apply_parameters(s, {"animation.max_frames": 5, "run.seed": 3})
    assert (s.animation.max_frames, s.run.seed) == (5, 3)
    assert capsys.readouterr().out == ""


def test_start_settings_from_a_file_uses_it_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    disco = REPO / "tests" / "data"
    files = sorted(disco.rglob("*_settings.txt"))
    assert files, "tests/data holds Disco settings files"
    s = start_settings("tiny-latent", "3D", str(files[0]), "runs")
    out = capsys.readouterr().out
    assert out.startswith(f"settings from {files[0]}, as they are")
    assert "imported a " in out and len(out.splitlines()) <= 2 + 6 + 1  # the report's first lines only
    assert s.run.output_root == "runs"
    before = s.to_dict()
    apply_parameters(s, {"animation.max_frames": 5, "run.seed": 3}, settings_file=str(files[0]))
    assert s.to_dict() == before  # the file's settings stay as they are

    ours = tmp_path / "mine.json"
    start_settings("tiny", "None", "", "x").save(ours)
    s2 = start_settings("tiny-latent", "3D", str(ours), "runs")
    assert s2.image.mode == "guided" and s2.animation.animation_mode == "None"  # the file, not the parameters


def test_finish_settings_says_when_weights_are_missing_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The settings cell warns, in one line, before the panel and the render: offline without the real weights."""
    from huggingface_hub import constants

    from discolib_widgets.notebook import finish_settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty hub cache
    finish_settings(start_settings("sd-1.5", "None", "", "runs"), {}, preset="sd-1.5")
    summary, warning = capsys.readouterr().out.splitlines()
    assert summary.startswith("latent mode, preset sd-1.5: ")
    assert warning.startswith("⚠ offline and not downloaded: sd-1.5 (") and "tiny-latent" in warning
    finish_settings(start_settings("tiny-latent", "3D", "", "runs"), {}, preset="tiny-latent")
    assert len(capsys.readouterr().out.splitlines()) == 1  # the tiny presets need nothing: no warning


def test_soundtrack_source_and_the_demo_clip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The music notebook's soundtrack: the user's path as given, else the demo clip written under output_root
    (the same bytes every time, as long as asked)."""
    import soundfile

    from discolib_widgets.notebook import DEMO_SR, demo_soundtrack, soundtrack_source

    assert soundtrack_source(" song.mp3 ", str(tmp_path), 2) == "song.mp3"
    assert capsys.readouterr().out == "soundtrack: song.mp3\n"
    assert not (tmp_path / "music").exists()
    path = Path(soundtrack_source("", str(tmp_path / "out"), 2.5))
    assert path == tmp_path / "out" / "music" / "demo-120bpm.wav"
    assert capsys.readouterr().out.startswith(f"no soundtrack given: the built-in demo clip {path}")
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (DEMO_SR, 1, round(2.5 * DEMO_SR))
    again = demo_soundtrack(tmp_path / "again.wav", 2.5)
    assert again.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.wav", "out"]


def test_max_frames_cap_bounds_a_soundtrack_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DISCOLIB_MAX_FRAMES (nbval's 3 frames) caps an animation as long as its soundtrack too: finish_settings turns
    length_from_soundtrack off and max_frames to min(cap, the song's frames); unset, the song sets the length."""
    from discolib_widgets.notebook import demo_soundtrack, finish_settings

    song = str(demo_soundtrack(tmp_path / "song.wav", 2))

    def settings_for(overrides: dict[str, Any]) -> Settings:
        s = start_settings("tiny-latent", "3D", "", str(tmp_path))
        apply_parameters(s, {"output.soundtrack": song, "output.fps": 8, "animation.length_from_soundtrack": True})
        finish_settings(s, overrides, preset="tiny-latent")
        return s

    monkeypatch.delenv("DISCOLIB_MAX_FRAMES", raising=False)
    s = settings_for({})
    assert s.animation.length_from_soundtrack and s.n_frames() == 16  # 2 s at 8 fps
    monkeypatch.setenv("DISCOLIB_MAX_FRAMES", "3")
    capsys.readouterr()
    s = settings_for({"output.fps": 4})  # after the overrides: 8 frames at their fps, capped at 3
    assert not s.animation.length_from_soundtrack and s.animation.max_frames == 3 and s.n_frames() == 3
    assert capsys.readouterr().out.startswith("DISCOLIB_MAX_FRAMES=3: 3 of the soundtrack's 8 frames\n")
    monkeypatch.setenv("DISCOLIB_MAX_FRAMES", "100")  # a cap above the song's length leaves its length
    s = settings_for({})
    assert not s.animation.length_from_soundtrack and s.n_frames() == s.animation.max_frames == 16
    # Runs not timed by a soundtrack keep their max_frames (notebook_setup caps those).
    s = start_settings("tiny-latent", "3D", "", str(tmp_path))
    apply_parameters(s, {"animation.max_frames": 200})
    finish_settings(s, {}, preset="tiny-latent")
    assert s.animation.max_frames == 200 and not s.animation.length_from_soundtrack


def test_record_summary_requires_a_complete_run(tmp_path: Path) -> None:
    from discolib.run.runs import RunRecord
    from discolib_widgets.notebook import RunIncomplete, record_summary

    folder = RunFolder.create(tmp_path, "b", Settings.defaults().to_json(), threads=1)
    folder.write_record(RunRecord(status="interrupted", frames_total=3, frames_done=2))
    assert record_summary(folder.path) == "interrupted False"
    with pytest.raises(RunIncomplete, match="'interrupted' with 2 of 3 frames"):
        record_summary(folder.path, require_done=True)
    folder.write_record(RunRecord(status="done", frames_total=3, frames_done=3))
    assert record_summary(folder.path, require_done=True) == "done True"


def test_gpu_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_report() == "GPU: no GPU (rendering on the CPU)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (14 * 1024**3, 15 * 1024**3))
    assert gpu_report() == "GPU: Tesla T4, 15.0 GiB, 14.0 GiB free"


def test_notebook_parameter_lines_are_what_papermill_reads() -> None:
    import papermill

    for name in NOTEBOOKS:
        inferred = papermill.inspect_notebook(str(NOTEBOOK_DIR / name))
        assert list(inferred) == list(parameters(name)), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_help_lists_every_parameter(name: str) -> None:
    """`papermill --help-notebook` (papermill's own command, run in-process) shows every parameter with its type
    (the annotation; never "Unknown type"), its default and its help."""
    from click.testing import CliRunner
    from papermill.cli import papermill as papermill_cli

    result = CliRunner().invoke(papermill_cli, ["--help-notebook", str(NOTEBOOK_DIR / name)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "No cell tagged 'parameters'" not in text
    for pname, p in parameters(name).items():
        # papermill puts the help on the same line after a short definition, else on the next line.
        m = re.search(rf"^  {pname}: (\S+) \(default (.*)\)(?: +|\n +)(@param .*)$", text, flags=re.MULTILINE)
        assert m, f"{name}: {pname} missing from papermill --help-notebook:\n{text}"
        assert m[1] == p["annotation"] == FORM_ANNOTATION[p["type"]], f"{name}: {pname} shows type {m[1]!r}"
        assert ast.literal_eval(m[2]) == p["value"]
        assert m[3].rstrip().endswith(f"# {p['help']}"), f"{name}: help of {pname}: {m[3]!r}"
    assert "Unknown type" not in text


# ----------------------------------------------------------------------------------------------- nbval
def test_nbval_conftest_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """notebooks/conftest.py: each notebook's tiny preset, 3 frames and a temporary output folder, set only where
    the user set nothing, announced, and the folder removed at the end (what the plain command relies on)."""
    import importlib.util

    for var in NOTEBOOK_ENV:
        monkeypatch.delenv(var, raising=False)
    spec = importlib.util.spec_from_file_location("nbval_conftest_under_test", NOTEBOOK_DIR / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)  # reads the user's variables at import, as pytest's import does

    class Item:
        def __init__(self, name: str) -> None:
            self.fspath = NOTEBOOK_DIR / name

    for name in RENDER_NOTEBOOKS:
        conftest.pytest_runtest_setup(Item(name))
        assert os.environ["DISCOLIB_PRESET"] == OFFLINE_PRESET[name] and os.environ["DISCOLIB_MAX_FRAMES"] == "3"
    assert "DISCOLIB_DEPTH_MODEL" not in os.environ
    conftest.pytest_runtest_setup(Item(PHOTO))
    assert os.environ["DISCOLIB_DEPTH_MODEL"] == OFFLINE_DEPTH_MODEL and os.environ["DISCOLIB_MAX_FRAMES"] == "3"
    folder = Path(os.environ["DISCOLIB_OUTPUT_ROOT"])
    for var in NOTEBOOK_ENV:
        monkeypatch.delenv(var, raising=False)
    conftest.pytest_runtest_setup(Item(SWEEP))  # its demo sweep runs as it is: only the output folder
    assert os.environ["DISCOLIB_OUTPUT_ROOT"] == str(folder) and "DISCOLIB_PRESET" not in os.environ
    assert folder.is_dir() and folder.name.startswith("discolib-nbval-")
    lines: list[str] = []

    class Reporter:
        def write_line(self, line: str) -> None:
            lines.append(line)

    conftest.pytest_terminal_summary(Reporter())
    assert any("ran offline with their tiny presets" in line for line in lines)
    conftest.pytest_sessionfinish(None)
    assert not folder.exists()

    monkeypatch.setenv("DISCOLIB_PRESET", "disco-512")  # a user's choice wins
    spec.loader.exec_module(conftest)
    conftest.pytest_runtest_setup(Item("disco.ipynb"))
    assert os.environ["DISCOLIB_PRESET"] == "disco-512"
    conftest.pytest_sessionfinish(None)


# ----------------------------------------------------------------------------------------------- papermill
def cell_display(nb: nbformat.NotebookNode, call: str) -> tuple[list[str], str]:
    """The mime types of the outputs of the one code cell that makes ``call``, and their text/html joined."""
    (cell,) = [c for c in code_cells(nb) if call in c.source]
    mimes = [m for out in cell.outputs for m in out.get("data", {})]
    html = " ".join(out.data["text/html"] for out in cell.outputs if "text/html" in out.get("data", {}))
    return mimes, html


def output_texts(nb: nbformat.NotebookNode) -> list[str]:
    """Every text an output notebook shows: streams, and the text/plain and text/html of display outputs."""
    texts = []
    for cell in code_cells(nb):
        for out in cell.outputs:
            if out.output_type == "stream":
                texts.append(out.text)
            for mime in ("text/plain", "text/html"):
                if mime in out.get("data", {}):
                    texts.append(out.data[mime])
    return texts


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_quickstart_2d(tmp_path: Path) -> None:
    """papermill runs the quickstart; its output notebook is what a reader of it sees: the preview and frames as
    images, the video, the final progress line; no widget reprs (``VBox(children=...``) and no frozen bars. The
    ``overrides`` parameter (a dotted name and a short one) reaches the run's settings.

    (Each notebook run costs a kernel and its imports, ~20 s here: the injected parameters are checked on this
    notebook and disco's, as every render notebook makes the same calls (test_notebook_structure), and nbval runs
    animation.ipynb as it is.)"""
    out_root = tmp_path / "out"
    params = {
        "preset": "tiny-latent", "animation_mode": "2D", "max_frames": 3, "output_root": str(out_root),
        "batch_name": "qs", "fps": 5,
        "overrides": {"run.display_rate": 1, "animation.noise_schedule": "0: (0.03)", "strength_schedule": "0: (0.5)"},
    }  # fmt: skip
    nb = execute("quickstart.ipynb", tmp_path / "quickstart.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"
    mimes, html = cell_display(nb, "render_here(")
    assert "image/png" in mimes, f"no image in the render cell's outputs: {mimes}"
    assert "video/mp4" in mimes or "<video" in html, f"no video in the render cell's outputs: {mimes}"
    texts = output_texts(nb)
    assert any(re.search(r"100% done: 3 frames in \d+:\d\d", t) for t in texts), texts
    for text in texts:
        assert "VBox(" not in text and "IntProgress(" not in text and "HBox(" not in text, text[:300]
        assert not re.search(r"\b0%\|", text), f"a frozen progress bar: {text[:300]}"
    settings = check_run(only_run(out_root, "qs"), 3, video=True)
    assert settings.image.mode == "latent" and settings.models.latent_model == "tiny-latent"
    assert settings.animation.animation_mode == "2D" and settings.animation.max_frames == 3
    assert settings.output.fps == 5.0 and settings.run.output_root == str(out_root)
    assert settings.animation.strength_schedule == "0: (0.5)" and settings.animation.noise_schedule == "0: (0.03)"


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_disco_stills(tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    params = {"preset": "tiny", "animation_mode": "None", "n_batches": 2, "seed": 7, "output_root": str(out_root)}
    nb = execute("disco.ipynb", tmp_path / "disco.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"
    folder = only_run(out_root, "TimeToDisco")
    settings = check_run(folder, 2, video=False)
    assert settings.animation.animation_mode == "None" and settings.run.n_batches == 2 and settings.run.seed == 7
    assert folder.read_record().seeds == [7, 8]


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_photo(tmp_path: Path) -> None:
    """papermill runs the photo notebook (no photo: the demo image; 1 s at 8 fps, flat depth); its output notebook
    shows the depth preview and the video, and the check cell says the run folder is complete."""
    out_root = tmp_path / "out"
    params = {"camera": "orbit", "seconds": 1, "fps": 8, "depth_model": "constant", "output_root": str(out_root)}
    nb = execute(PHOTO, tmp_path / "photo.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"
    mimes, html = cell_display(nb, "show_photo_result(")
    assert "image/png" in mimes, f"no depth preview in the show cell's outputs: {mimes}"
    assert "<video" in html and "data:video/mp4;base64," in html, f"no video in the show cell's outputs: {mimes}"
    (animate_cell,) = [c for c in code_cells(nb) if "animate_photo(" in c.source]
    assert "frame 8/8" in " ".join(output_texts(nbformat.from_dict({"cells": [animate_cell]}))), animate_cell.outputs
    run_settings = check_photo_run(out_root / "photo" / "demo-photo-orbit.mp4", 8)
    assert (run_settings["camera"], run_settings["fps"], run_settings["depth_model"]) == ("orbit", 8, "constant")
    assert (out_root / "demo-photo.png").is_file()


@pytest.mark.slow
def test_nbval_plain_command(nbval_plain: PlainNbval) -> None:
    """`pytest --nbval-lax notebooks/` as README documents it, once for the seven notebooks (each nbval run of a
    notebook costs ~30 s here): offline, passes; notebooks/conftest.py picked each notebook's tiny preset and 3
    frames. Only DISCOLIB_OUTPUT_ROOT is set, to find the runs (without it they go to a temporary folder that is
    removed: test_nbval_conftest_hooks).

    The command runs in a subprocess that this module's first test starts when this test is selected too (the
    ``overlap_nbval`` fixture): its notebook kernels then run beside the papermill tests' kernels and the fast
    tests, on the CI machine's second core (each kernel uses one thread), instead of after them."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "pytest --nbval-lax notebooks/\n" in readme, "README documents the plain command"
    run = nbval_plain.start()  # already running when this module's first test started it
    tmp_path = run.out_root
    stdout, stderr = run.wait()
    assert run.returncode == 0, f"{' '.join(run.cmd[2:])} failed:\n{stdout[-6000:]}\n{stderr[-3000:]}"
    n_cells = sum(len(code_cells(load(name))) for name in (*NOTEBOOKS, LIVE))
    assert re.search(rf"\b{n_cells} passed", stdout), stdout[-2000:]
    assert sorted(NOTEBOOK_DIR.iterdir()) == run.before, "the nbval run left files in notebooks/"
    # The photo notebook: no photo given, so the demo image; the tiny depth model, capped at 3 frames.
    assert (tmp_path / "demo-photo.png").is_file()
    run_settings = check_photo_run(tmp_path / "photo" / "demo-photo-dolly.mp4", 3)
    assert run_settings["depth_model"] == OFFLINE_DEPTH_MODEL and run_settings["camera"] == "dolly", run_settings
    for name in RENDER_NOTEBOOKS:
        batch = parameters(name)["batch_name"]["value"]
        settings = check_run(only_run(tmp_path, batch), 3, video=True)  # every notebook's default is a 3D animation
        assert settings.animation.animation_mode == "3D" and settings.animation.max_frames == 3, name
        assert settings.image.mode == preset_mode(OFFLINE_PRESET[name]) and settings.models.device == "cpu", name
        if settings.image.mode == "latent":
            assert settings.models.latent_model == "tiny-latent", name
        else:
            assert settings.models.diffusion_model == "tiny", name
        assert settings.output.fps == 4.0, name
    # The music notebook: its demo clip written inside the output root, muxed into the video, analysed once into
    # the batch's cache (what a resume reads).
    from discolib.io.video import video_info

    (video,) = only_run(tmp_path, "MusicVideo").path.glob("video.*")
    assert video_info(video)["has_audio"] and (tmp_path / "music" / "demo-120bpm.wav").is_file()
    assert len(list((tmp_path / "MusicVideo" / ".cache" / "audio").glob("*.npz"))) == 1
    # The sweep notebook: the demo sweep, every variant done in the output root (not notebooks/).
    from discolib.run.sweep import read_sweep

    _header, states = read_sweep(tmp_path / DEMO_SWEEP.removesuffix(".json"))
    assert [s.status for s in states] == ["done"] * 4 and (tmp_path / "demo_sweep" / "contact_sheet.png").is_file()
    # The live notebook: the scripted 3-frame flight's replay, with tiny-live's models, complete.
    live = only_run(tmp_path, "live")
    settings = check_run(live, Settings.load(live.settings_path).animation.max_frames, video=True)
    assert settings.animation.max_frames >= 3 and settings.animation.seed_behavior == "schedule"
    assert settings.models.latent_model == "tiny-latent" and (settings.image.width, settings.image.height) == (64, 64)


# ----------------------------------------------------------------------------------------------- GPU mode
#: The real preset each notebook runs with in GPU mode (None: the notebook's own default).
GPU_PRESET: dict[str, str | None] = {
    "quickstart.ipynb": "sd-turbo", "disco.ipynb": None, "animation.ipynb": None, "music_video.ipynb": "sd-turbo",
}  # fmt: skip
#: Full-size models, fewer steps: the point is the code path on CUDA, not the picture.
GPU_OVERRIDES = {"guided": {"models.device": "cuda", "image.steps": 25}, "latent": {"models.device": "cuda"}}
GPU_FRAMES = 2


def _weights_unavailable(ename: str, evalue: str) -> bool:
    """The error a notebook raised says real weights cannot be had (offline, not cached), not that code is broken."""
    # Every such error subclasses discolib.errors.WeightsUnavailable; these are its concrete names.
    return ename in ("ClipWeightsError", "DepthModelUnavailable", "CheckpointUnavailable", "LatentModelUnavailable")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("name", RENDER_NOTEBOOKS)
def test_notebook_gpu(name: str, tmp_path: Path, python3_kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU mode: papermill, then nbval, with the real presets on CUDA (opt in with DISCOLIB_GPU_NOTEBOOKS=1)."""
    if os.environ.get(GPU_ENV) != "1":
        pytest.skip(f"GPU notebook mode is opt-in: set {GPU_ENV}=1 (and HF_HUB_OFFLINE=0 to download real weights)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("GPU notebook mode: CUDA is not available on this machine")
    from papermill.exceptions import PapermillExecutionError

    preset = GPU_PRESET[name] or parameters(name)["preset"]["value"]
    overrides = dict(GPU_OVERRIDES[preset_mode(preset)])
    if "models.random_weights" in iter_fields():  # offline: the real architectures with random weights
        overrides["models.random_weights"] = True
    env = clean_env(
        one_thread=False,
        DISCOLIB_PRESET=preset,
        DISCOLIB_MAX_FRAMES=str(GPU_FRAMES),
        DISCOLIB_OVERRIDES=json.dumps(overrides),
    )
    for var in NOTEBOOK_ENV:
        monkeypatch.delenv(var, raising=False)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "JUPYTER_PREFER_ENV_PATH"):
        monkeypatch.setenv(var, env[var])
    out_root = tmp_path / "papermill"
    params = {"preset": preset, "max_frames": GPU_FRAMES, "output_root": str(out_root), "overrides": overrides}
    try:
        nb = execute(name, tmp_path / f"gpu.{name}", params, tmp_path)
    except PapermillExecutionError as exc:
        if _weights_unavailable(exc.ename, exc.evalue):
            pytest.skip(
                f"real weights of {preset!r} are not reachable ({exc.ename}: {exc.evalue.splitlines()[0][:300]}); "
                "running the real architectures with random weights offline needs discolib support (see "
                "docs/NOTEBOOKS.md, GPU mode)"
            )
        raise
    assert executed_check_output(nb) == "done True\n"
    batch = parameters(name)["batch_name"]["value"]
    settings = check_run(only_run(out_root, batch), GPU_FRAMES, video=True)
    assert settings.models.device == "cuda"
    run_nbval(name, {**env, "DISCOLIB_OUTPUT_ROOT": str(tmp_path / "nbval")})
    check_run(only_run(tmp_path / "nbval", batch), GPU_FRAMES, video=True)
