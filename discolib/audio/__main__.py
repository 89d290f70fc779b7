"""``python -m discolib.audio``: get librosa ready for soundtrack analysis, once per install.

The first analysis after installing compiles librosa's numba functions into numba's cache (about a minute on two
CPU cores); every later process only loads them. Running this right after the install (the README's test command
and CI do) pays that minute there, not inside the first render or test that reads a soundtrack. The compile runs
under :func:`discolib.audio.jit.first_compile`'s lock, so it is safe beside other processes.
"""

from __future__ import annotations

import time

from discolib.audio.decode import load_librosa


def main() -> int:
    start = time.perf_counter()
    load_librosa()
    print(f"librosa ready for soundtrack analysis ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
