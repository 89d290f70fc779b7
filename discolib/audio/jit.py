"""One process at a time compiles librosa's numba functions into numba's on-disk cache.

librosa's beat tracker is a ``numba.guvectorize(cache=True)`` function. When two processes compile it at once
(a panel kernel and a render, a sweep's workers), numba can store the kernel of one process beside the wrapper of the
other, and every later call in every process segfaults (numba issue #10128; librosa issue #1998). The first call in
each process therefore runs under an exclusive ``flock`` on librosa's own package folder: a lock every process on the
machine sees, which writes no file. Later calls in the process load from memory and take no lock.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["first_compile"]

_warm: set[str] = set()
_warm_lock = threading.Lock()


@contextlib.contextmanager
def first_compile(name: str, package_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold a machine-wide lock around the first call of the numba functions ``name`` in this process.

    ``package_dir`` is the folder to lock (librosa's). Where ``flock`` is missing (Windows) or the folder cannot be
    opened, the call runs unlocked, as numba itself would.
    """
    with _warm_lock:
        warm = name in _warm
    if warm:
        yield
        return
    fd = None
    try:
        import fcntl  # POSIX only: Windows has no flock and runs unlocked

        fd = os.open(Path(package_dir), os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except (ImportError, OSError):
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
        with _warm_lock:
            _warm.add(name)
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
