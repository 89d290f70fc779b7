"""The first librosa (numba) call of a process waits for any other process compiling into numba's cache."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discolib.audio.jit import first_compile

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "flock"), reason="flock is POSIX only")

_CHILD = """
import sys, time
from discolib.audio.jit import first_compile
print("ready", flush=True)
start = time.monotonic()
with first_compile("x", sys.argv[1]):
    pass
with first_compile("x", sys.argv[1]):  # warm now: no lock
    pass
print(round(time.monotonic() - start, 2))
"""


def test_a_second_process_waits_for_the_first_compile(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process is compiling
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    assert child.poll() is None  # still waiting for the lock
    os.close(fd)  # the compile finished
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0 and float(out) >= 0.9
    assert list(tmp_path.iterdir()) == []  # the lock writes no file


def test_warm_calls_take_no_lock_and_a_missing_folder_runs_unlocked(tmp_path: Path) -> None:
    with first_compile("warm-test", tmp_path):
        pass
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with first_compile("warm-test", tmp_path):  # would block forever if it locked again
            pass
        with first_compile("nowhere", tmp_path / "missing"):
            pass
    finally:
        os.close(fd)
