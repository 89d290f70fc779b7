"""Shared test setup: offline hub, the ../shared fixtures folder."""

from __future__ import annotations

import logging
import os
import re

# Before any import of huggingface_hub / transformers / diffusers: never touch the network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The reference fixtures made with the original implementations; skip when absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (they live in ../shared beside the checkout)")
    return FIXTURES


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a shared 2-core machine OpenMP spin-waits make 2 threads ~5x slower."""
    import torch  # here, not at the top: the torch-free tests share this conftest

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# kornia-style device and dtype fixtures: `pytest --device cuda --dtype bfloat16` runs the parametrised tests on a GPU;
# `--device all` / `--dtype all` run every combination available. Without a GPU the CUDA cases skip with a reason.
_DEVICES = ("cpu", "cuda")
_DTYPES = ("float32", "float64", "bfloat16", "float16")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device(s) for device-parametrised tests: cpu, cuda or all")
    parser.addoption(
        "--dtype", default="float32,float64", help="dtype(s) for dtype-parametrised tests: float32, float64, bfloat16, float16 or all"
    )


def _chosen(config: pytest.Config, option: str, known: tuple[str, ...]) -> list[str]:
    value = config.getoption(option)
    names = list(known) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise pytest.UsageError(f"--{option.lstrip('-')}: unknown {unknown}; expected one of {', '.join(known)} or all")
    return names


def _parametrized_by_test(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if name in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test that parametrises `device` or `dtype` itself (e.g. plain strings) keeps its own values.
    if "device" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "device"):
        metafunc.parametrize("device", _chosen(metafunc.config, "--device", _DEVICES), indirect=True)
    if "dtype" in metafunc.fixturenames and not _parametrized_by_test(metafunc, "dtype"):
        metafunc.parametrize("dtype", _chosen(metafunc.config, "--dtype", _DTYPES), indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest):  # -> torch.device (torch is imported lazily, see one_thread)
    """The device a parametrised test runs on; CUDA cases skip without a GPU."""
    import torch

    name = request.param
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    return torch.device(name)


@pytest.fixture
def dtype(request: pytest.FixtureRequest, device):  # -> torch.dtype
    """The floating dtype of a parametrised test; half precision on the CPU skips (the CPU path is float32)."""
    import torch

    name = request.param
    if name in ("bfloat16", "float16") and device.type != "cuda":
        pytest.skip(f"{name} runs only on CUDA here (the CPU path is float32)")
    return getattr(torch, name)


@pytest.fixture
def tol(dtype) -> dict[str, float]:
    """``rtol``/``atol`` for ``torch.testing.assert_close`` of a result computed in ``dtype`` against float32."""
    import torch

    # float64 results are compared with float32 references too, so they get float32's tolerance.
    table = {torch.float64: {"rtol": 1e-4, "atol": 1e-5}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}}
    return {**table, torch.bfloat16: {"rtol": 3e-2, "atol": 3e-2}}.get(
        dtype, {"rtol": 1e-2, "atol": 1e-2}
    )


class _Errors(logging.Handler):
    """Collects ERROR records: ipywidgets and the panel log what an observer raised instead of raising it."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged_errors() -> Iterator[list[logging.LogRecord]]:
    handler = _Errors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)


# ------------------------------------------------------------------------------- one JupyterLab for the browser tests
@pytest.fixture(scope="session")
def _jupyterlab_server(tmp_path_factory: pytest.TempPathFactory):  # -> Iterator[tuple[LabServer, Path]]
    """One JupyterLab for every real-browser test (test_browser*.py, test_curve_browser.py): started by the first
    that asks (a server start costs ~10 s on a 2-core machine), stopped with its kernels when the session ends.
    Skips, saying why, without chromium, Playwright or JupyterLab."""
    from test_browser import _require_browser_stack, jupyterlab

    _require_browser_stack()
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    with jupyterlab(root, base / "state") as lab:
        yield lab, root


@pytest.fixture
def jupyterlab_dir(_jupyterlab_server, request: pytest.FixtureRequest):  # -> Iterator[tuple[LabServer, Path]]
    """(the session's JupyterLab, a new folder under its root for this test): put the notebook there and open it
    with ``lab.notebook_url(folder, name)`` (a workspace of its own). The kernels the test started are shut down
    after it, so none keeps running (or holding models) into later tests."""
    lab, root = _jupyterlab_server
    folder = root / re.sub(r"\W+", "_", request.node.name)[:80]
    folder.mkdir()
    try:
        yield lab, folder
    finally:
        lab.shutdown_kernels()
