"""The error root of discolib.

Every error discolib raises on purpose derives from :class:`DiscolibError`; the CLI prints those as one line and
lets anything else (a bug) keep its traceback. :class:`InputError` is the parent of every error about what a user
gave (settings, keyframe strings, prompts, paths, files, run folders); it is also a ``ValueError`` so code that
catches ``ValueError`` keeps working. :class:`WeightsUnavailable` says that a model's weights cannot be had here
(offline, not downloaded, refused), with a ``reason``. :func:`one_line` flattens a message or an exception for
quoting inside such a one-line message.

This module is a leaf: it imports nothing from discolib.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DiscolibError", "InputError", "WeightsUnavailable", "ResourceLimitError", "one_line"]


class DiscolibError(Exception):
    """Root of the errors discolib raises on purpose (user-facing, one-line message)."""


class InputError(DiscolibError, ValueError):
    """Something a user gave is invalid; the message names the setting or file and what was expected."""


class WeightsUnavailable(DiscolibError):
    """A model's weights cannot be loaded here; ``reason`` says why (offline, missing file, refused file)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class ResourceLimitError(InputError):
    """A run would need more memory or time than this machine has; ``--force`` (``force=True``) starts it anyway."""


def one_line(
    what: object, limit: int | None = 600, *, lines: Literal["squeeze", "join", "first"] = "squeeze"
) -> str:
    """``what`` (a message or an exception, as ``str()`` gives it) on one line, to quote in a one-line message.

    Library errors (transformers, diffusers, torch, ffmpeg) often span several lines. ``lines`` says how they
    become one:

    * ``"squeeze"``: every run of whitespace, line breaks included, becomes one space (a library's error text);
    * ``"join"``: each line break (``\\n``, ``\\r``, ``\\x0b``, U+2028...) becomes one space and other spacing stays
      (discolib's own messages, whose spacing is meant, as the CLI prints them);
    * ``"first"``: only the first line (a short reason, which Pillow's and urllib's errors give first).

    ``limit``: longer text is cut to ``limit`` characters, the last one ``…``; None keeps it whole.
    """
    text = str(what)
    if lines == "squeeze":
        text = " ".join(text.split())
    elif lines == "join":
        text = " ".join(text.splitlines())
    elif lines == "first":
        text = next(iter(text.splitlines()), "")
    else:
        raise ValueError(f"one_line: lines must be 'squeeze', 'join' or 'first', not {lines!r}")
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
