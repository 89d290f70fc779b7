"""The notebooks: structure, nbval offline with the tiny presets, papermill runs, papermill's parameter help.

* Structure (fast, no kernel): exactly one papermill ``parameters`` cell whose every line is a Colab form
  ``name = literal  #@param ...  # help``; no logic in notebooks (no definitions, loops, ``with`` or ``try``, and
  one ``if``: the Colab install); imports from ``discolib`` and ``discolib_widgets`` only; the Colab install cell,
  then ``notebook_setup`` (environment overrides, Drive, GPU) before anything else; no outputs except the
  nbval-checked cell.
* ``pytest --nbval-lax`` on every notebook in a subprocess, offline, with ``DISCOLIB_PRESET`` set to the tiny
  preset of its sampler family (nbval cannot inject parameters; the notebooks read that variable).
* papermill runs with parameter overrides, then the run folder is checked (frames, settings.json, run.json,
  video for animations).
* ``papermill --help-notebook`` lists every parameter with its comment.
* GPU mode (opt-in, ``DISCOLIB_GPU_NOTEBOOKS=1``, marker ``gpu``): the same notebooks through papermill and nbval
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
from discolib_widgets.notebook import NOTEBOOK_ENV

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"

#: Each notebook and the offline preset that nbval runs it with (through DISCOLIB_PRESET).
OFFLINE_PRESET = {"quickstart.ipynb": "tiny-latent", "disco.ipynb": "tiny", "animation.ipynb": "tiny-latent"}
NOTEBOOKS = list(OFFLINE_PRESET)

#: Parameters every notebook has.
REQUIRED_PARAMETERS = {"preset", "animation_mode", "max_frames", "text_prompts", "seed", "overrides", "output_root", "use_drive"}

GPU_ENV = "DISCOLIB_GPU_NOTEBOOKS"

# A parameters line: `name = literal  #@param [options] or {type:"..."}  # help`.
PARAM_LINE = re.compile(r"^(?P<name>[A-Za-z_]\w*) = (?P<value>.+?)  #@param (?P<form>\[.*\]|\{type:\"(?P<type>\w+)\"\})  # (?P<help>\S.*)$")
FORM_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "raw": (dict, list),
}
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
    """name -> {value (the literal), form, type, help, options} for every line of the parameters cell."""
    out: dict[str, dict[str, Any]] = {}
    for line in parameters_cell(load(name)).source.splitlines():
        if not line.strip():
            continue
        m = PARAM_LINE.match(line)
        assert m, f"{name}: parameters line is not `name = literal  #@param ...  # help`: {line!r}"
        try:
            value = ast.literal_eval(m["value"])
        except (ValueError, SyntaxError):
            raise AssertionError(f"{name}: parameter {m['name']} is not a literal (no derived values): {line!r}") from None
        options = ast.literal_eval(m["form"]) if m["form"].startswith("[") else None
        out[m["name"]] = {"value": value, "type": m["type"], "options": options, "help": m["help"]}
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
    runs = sorted(p for p in (output_root / batch_name).iterdir() if p.is_dir())
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


def executed_check_output(nb: nbformat.NotebookNode) -> str:
    (cell,) = [c for c in code_cells(nb) if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
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
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_structure(name: str) -> None:
    nb = load(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    cells = code_cells(nb)
    pcell = parameters_cell(nb)
    assert pcell.cell_type == "code"
    params = parameters(name)
    assert REQUIRED_PARAMETERS <= set(params), REQUIRED_PARAMETERS - set(params)
    assert params["output_root"]["value"] == "runs" and params["use_drive"]["value"] is False
    for pname, p in params.items():
        if p["options"] is not None:
            assert p["value"] in p["options"], f"{name}: {pname} default {p['value']!r} is not one of its options"
        else:
            assert isinstance(p["value"], FORM_TYPES[p["type"]]), f"{name}: {pname} is not a {p['type']}"
    # Presets: every option exists, and the offline one that nbval uses is among them.
    options = params["preset"]["options"]
    assert set(options) <= set(PRESETS) and OFFLINE_PRESET[name] in options
    if name != "quickstart.ipynb":  # the real notebooks default to real weights and stay within one sampler
        assert not params["preset"]["value"].startswith("tiny"), f"{name}: the default preset must use real weights"
        assert len({preset_mode(p) for p in options}) == 1

    # Right after the parameters: the Colab install (it cannot live in discolib: discolib is not installed yet),
    # then notebook_setup, which applies the DISCOLIB_* variables (and Drive) before any cell reads a parameter.
    index = {id(c): i for i, c in enumerate(cells)}
    sources = [c.source for c in cells]
    install, setup = index[id(pcell)] + 1, index[id(pcell)] + 2
    assert '"google.colab" in sys.modules' in sources[install], f"{name}: the Colab install must follow the parameters"
    for needle in ("%pip install", '"discolib[notebook] @ git+https://'):
        assert needle in sources[install], f"{name}: the Colab install cell lacks {needle!r}"
    setup_call = "notebook_setup(preset, max_frames, output_root, overrides, use_drive=use_drive)"
    assert setup_call in ast.unparse(ast.parse(sources[setup])), f"{name}: notebook_setup must come next"

    calls: set[str] = set()
    imported: set[str] = set()
    for cell in cells:
        tree = ast.parse(python_source(cell.source))
        for node in ast.walk(tree):
            logic = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.While, ast.With, ast.Try)
            assert not isinstance(node, logic), (
                f"{name}: notebooks hold no logic (it belongs in discolib or discolib_widgets), but a cell has a "
                f"{type(node).__name__}:\n{cell.source}"
            )
            if isinstance(node, ast.If):
                assert cell is cells[install], f"{name}: the only `if` is the Colab install:\n{cell.source}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                calls.add(ast.unparse(node))
            if isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    # The public faces only (sys: the Colab check, before discolib is installed there).
    assert imported == {"discolib", "discolib_widgets", "sys"}, f"{name}: imports {sorted(imported)}"
    for call in (
        "show_panel(settings)",
        "render(settings, out=output_root)",
        "finish_settings(settings, overrides, preset=preset)",
        "show_result(result)",
        "print(record_summary(result.run_dir))",
    ):
        assert call in calls, f"{name}: no {call}"

    checked = [c for c in cells if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert len(checked) == 1
    assert [o.get("text") for o in checked[0].outputs] == ["done True\n"]
    for cell in cells:
        if cell is not checked[0]:
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: outputs left in\n{cell.source}"


def test_notebook_parameter_lines_are_what_papermill_reads() -> None:
    import papermill

    for name in NOTEBOOKS:
        inferred = papermill.inspect_notebook(str(NOTEBOOK_DIR / name))
        assert list(inferred) == list(parameters(name)), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_help_lists_every_parameter(name: str) -> None:
    """`papermill --help-notebook` (papermill's own command, run in-process) shows every parameter and its help."""
    from click.testing import CliRunner
    from papermill.cli import papermill as papermill_cli

    result = CliRunner().invoke(papermill_cli, ["--help-notebook", str(NOTEBOOK_DIR / name)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "No cell tagged 'parameters'" not in text
    for pname, p in parameters(name).items():
        m = re.search(rf"^  {pname}: .*\(default (.*)\)\n(.*)$", text, flags=re.MULTILINE)
        assert m, f"{name}: {pname} missing from papermill --help-notebook:\n{text}"
        assert ast.literal_eval(m[1]) == p["value"]
        assert m[2].rstrip().endswith(f"# {p['help']}"), f"{name}: help of {pname}: {m[2]!r}"


# ----------------------------------------------------------------------------------------------- nbval
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_nbval_offline(name: str, tmp_path: Path, python3_kernel: str) -> None:
    """What `DISCOLIB_PRESET=<tiny> pytest --nbval-lax notebooks/<name>` gives: exit code 0, outputs in tmp_path."""
    env = clean_env(
        DISCOLIB_PRESET=OFFLINE_PRESET[name],
        DISCOLIB_MAX_FRAMES="3",
        DISCOLIB_OUTPUT_ROOT=str(tmp_path),
        DISCOLIB_OVERRIDES='{"output.fps": 4}',
    )
    before = sorted(NOTEBOOK_DIR.iterdir())
    run_nbval(name, env)
    assert sorted(NOTEBOOK_DIR.iterdir()) == before, "the nbval run left files in notebooks/"
    batch = parameters(name)["batch_name"]["value"]
    settings = check_run(only_run(tmp_path, batch), 3, video=True)  # every notebook's default is a 3D animation
    assert settings.animation.animation_mode == "3D" and settings.animation.max_frames == 3
    assert settings.image.mode == preset_mode(OFFLINE_PRESET[name]) and settings.models.device == "cpu"
    assert settings.output.fps == 4.0


# ----------------------------------------------------------------------------------------------- papermill
@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_quickstart_2d(tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    params = {"animation_mode": "2D", "max_frames": 3, "output_root": str(out_root), "batch_name": "qs", "fps": 5}
    nb = execute("quickstart.ipynb", tmp_path / "quickstart.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"
    settings = check_run(only_run(out_root, "qs"), 3, video=True)
    assert settings.image.mode == "latent" and settings.models.latent_model == "tiny-latent"
    assert settings.animation.animation_mode == "2D" and settings.animation.max_frames == 3
    assert settings.output.fps == 5.0 and settings.run.output_root == str(out_root)


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
def test_papermill_animation_overrides(tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    params = {
        "preset": "tiny-latent",
        "max_frames": 4,
        "output_root": str(out_root),
        "overrides": {"strength_schedule": "0: (0.5)", "output.fps": 6},
    }
    nb = execute("animation.ipynb", tmp_path / "animation.out.ipynb", params, tmp_path)
    assert executed_check_output(nb) == "done True\n"
    settings = check_run(only_run(out_root, "Deforum"), 4, video=True)
    assert settings.image.mode == "latent" and settings.models.latent_model == "tiny-latent"
    assert settings.animation.strength_schedule == "0: (0.5)" and settings.output.fps == 6.0
    assert settings.animation.animation_mode == "3D" and settings.animation.max_frames == 4


# ----------------------------------------------------------------------------------------------- GPU mode
#: The real preset each notebook runs with in GPU mode (None: the notebook's own default).
GPU_PRESET: dict[str, str | None] = {"quickstart.ipynb": "sd-turbo", "disco.ipynb": None, "animation.ipynb": None}
#: Full-size models, fewer steps: the point is the code path on CUDA, not the picture.
GPU_OVERRIDES = {"guided": {"models.device": "cuda", "image.steps": 25}, "latent": {"models.device": "cuda"}}
GPU_FRAMES = 2


def _weights_unavailable(ename: str, evalue: str) -> bool:
    """The error a notebook raised says real weights cannot be had (offline, not cached), not that code is broken."""
    # Every such error subclasses discolib.errors.WeightsUnavailable; these are its concrete names.
    return ename in ("ClipWeightsError", "DepthModelUnavailable", "CheckpointUnavailable", "LatentModelUnavailable")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
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
