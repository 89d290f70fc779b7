"""The error root of discolib.

Every error discolib raises on purpose derives from :class:`DiscolibError`; the CLI prints those as one line and
lets anything else (a bug) keep its traceback. :class:`InputError` is the parent of every error about what a user
gave (settings, keyframe strings, prompts, paths, files, run folders); it is also a ``ValueError`` so code that
catches ``ValueError`` keeps working. :class:`WeightsUnavailable` says that a model's weights cannot be had here
(offline, not downloaded, refused), with a ``reason``.

This module is a leaf: it imports nothing from discolib.
"""

from __future__ import annotations

__all__ = ["DiscolibError", "InputError", "WeightsUnavailable", "ResourceLimitError"]


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
