"""Shared test setup: offline hub, the ../shared fixtures folder."""

from __future__ import annotations

import os

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
