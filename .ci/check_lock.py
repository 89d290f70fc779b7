"""Fail when the installed environment differs from the lock: a package not pinned, or at another version.

Usage: python .ci/check_lock.py constraints-ci.txt  (run with the venv's python after installing with the lock)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(lock_path: str) -> int:
    pins: dict[str, str] = {}
    for line in open(lock_path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version.strip()
    problems = []
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"])
        if name in ("pip", "discolib"):
            continue
        if name not in pins:
            problems.append(f"{name} {dist.version} is installed but not in the lock")
        elif pins[name] != dist.version.split("+")[0]:
            problems.append(f"{name} {dist.version} is installed, the lock says {pins[name]}")
    for p in problems:
        print(f"check_lock: {p}", file=sys.stderr)
    if problems:
        print("check_lock: regenerate the lock with `bash .ci/lock.sh`", file=sys.stderr)
        return 1
    print(f"check_lock: the environment matches {lock_path} ({len(pins)} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
