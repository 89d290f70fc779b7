"""Reading what users hand over, safely: paths that expand without surprises, files that are regular and small.

Torch-free and a leaf above :mod:`discolib.errors`. Everything here raises :class:`~discolib.errors.InputError`
with a one-line message that names the setting (or option) and the path.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from discolib.errors import InputError

__all__ = [
    "MAX_SETTINGS_BYTES",
    "MAX_JSON_DEPTH",
    "expand_path",
    "read_user_bytes",
    "read_user_text",
    "json_depth_ok",
    "loads_json",
]

#: Settings files and run records are small (a complete Disco file is ~10 KB; six 54 KB keyframe strings fit).
MAX_SETTINGS_BYTES = 4 * 1024 * 1024
#: The deepest JSON nesting any settings file needs is 4 (group -> prompts -> frame -> list); Python's own JSON
#: decoder recurses per level and overflows near 1 000, so deeper documents are refused before decoding.
MAX_JSON_DEPTH = 64


def expand_path(path: str | os.PathLike[str], *, setting: str) -> Path:
    """``~`` and ``~user`` expanded; an unknown user or an unset home is an :class:`InputError` naming ``setting``."""
    text = os.fspath(path)
    if "\x00" in text:
        raise InputError(f"{setting}: a path cannot contain a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # pathlib: "Could not determine home directory"
        user = text[1:].split("/", 1)[0] if text.startswith("~") else ""
        who = f"user {user!r}" if user else "the home directory"
        raise InputError(f"{setting}: cannot expand {text!r}: {who} is unknown on this machine") from None


def read_user_bytes(path: str | os.PathLike[str], *, setting: str, max_bytes: int = MAX_SETTINGS_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    FIFOs, devices (``/dev/zero``), sockets and folders are refused before they are opened for reading (a FIFO
    would block forever, ``/dev/zero`` never ends); a sparse or huge file is refused by its size, and the read is
    capped in case the file grows meanwhile.
    """
    p = expand_path(path, setting=setting)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{setting}: file not found: {p}") from None
    except OSError as exc:
        raise InputError(f"{setting}: cannot read {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{setting}: {p} is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{setting}: {p} is not a regular file (a device, FIFO or socket)")
    if st.st_size > max_bytes:
        raise InputError(f"{setting}: {p} is {st.st_size} bytes; expected at most {max_bytes}")
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the check, open() does not wait for a writer.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            opened = os.fstat(fh.fileno())
            if not stat.S_ISREG(opened.st_mode):
                raise InputError(f"{setting}: {p} is not a regular file")
            # Sized by the file, not the cap: read(n) allocates n bytes up front (256 MiB for an image).
            data = fh.read(min(max_bytes, opened.st_size) + 1)
            if len(data) > opened.st_size:  # it grew since: read on, still capped
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise InputError(f"{setting}: cannot read {p}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InputError(f"{setting}: {p} is larger than {max_bytes} bytes")
    return data


def read_user_text(path: str | os.PathLike[str], *, setting: str, max_bytes: int = MAX_SETTINGS_BYTES) -> str:
    """:func:`read_user_bytes` decoded as UTF-8 (a BOM is accepted); bad bytes name the offset."""
    data = read_user_bytes(path, setting=setting, max_bytes=max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{setting}: {path}: not UTF-8 text (byte {exc.start})") from None


def json_depth_ok(text: str, max_depth: int = MAX_JSON_DEPTH) -> int | None:
    """None when ``text`` nests at most ``max_depth`` brackets; else the character offset where it goes deeper.

    Counts ``[``/``{`` outside strings in one pass (JSON strings escape their quotes, so a backslash skips a char).
    """
    depth = 0
    in_str = False
    esc = False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return i
        elif ch in "]}":
            depth -= 1
    return None


def loads_json(text: str, *, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for user text: too deep nesting, invalid JSON and non-finite numbers are one-line errors.

    ``NaN``/``Infinity`` literals and numbers that overflow a float (``1e400``) are refused: no setting takes
    them, and they would otherwise surface later as an ``OverflowError`` far from the file.
    """
    where = json_depth_ok(text, max_depth)
    if where is not None:
        raise InputError(f"{what}: JSON nested deeper than {max_depth} levels (at character {where})")

    def bad_constant(name: str) -> Any:
        raise InputError(f"{what}: {name} is not a valid number here; expected a finite number")

    def parse_float(s: str) -> float:
        v = float(s)
        if v in (float("inf"), float("-inf")):
            raise InputError(f"{what}: the number {s} is too large; expected a finite number")
        return v

    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)() or 4300

    def parse_int(s: str) -> int:
        # Past Python's digit limit int() raises a plain ValueError; refuse such a number as an input error instead.
        if len(s.lstrip("-")) > limit:
            raise InputError(f"{what}: an integer of {len(s)} digits is too large; expected a number")
        return int(s)

    try:
        return json.loads(text, parse_constant=bad_constant, parse_float=parse_float, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise InputError(f"{what}: JSON nested too deeply") from None
