"""discolib: Disco-Diffusion-style CLIP-guided and latent diffusion images and animations.

The public face, what scripts and notebooks import::

    from discolib import Settings, apply_preset, preset_mode, render, RenderResult, RunFolder, animate_photo, sweep, LiveSession

``Settings``, ``apply_preset`` and ``preset_mode`` come from :mod:`discolib.config` (no torch). ``render``,
``RenderResult``, ``RunFolder``, ``animate_photo``, ``sweep`` and ``LiveSession`` live in :mod:`discolib.run` (the render loop imports torch and
the model libraries); they are imported on first access (PEP 562 ``__getattr__``), so ``import discolib``,
``from discolib import Settings`` and ``discolib validate`` load the settings layer only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from discolib.config.presets import apply_preset, preset_mode
from discolib.config.settings import Settings

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below imports these on first access
    from discolib.run.events import RenderResult
    from discolib.run.live import LiveSession
    from discolib.run.loop import render
    from discolib.run.photo import animate_photo
    from discolib.run.runs import RunFolder
    from discolib.run.sweep import sweep

__version__ = "0.2.0"

__all__ = [
    "LiveSession", "RenderResult", "RunFolder", "Settings", "__version__", "animate_photo", "apply_preset", "preset_mode", "render",
    "sweep",
]

_LAZY = ("LiveSession", "RenderResult", "RunFolder", "animate_photo", "render", "sweep")


def __getattr__(name: str) -> Any:
    """``render``, ``RenderResult``, ``RunFolder``, ``animate_photo``, ``sweep`` and ``LiveSession``, imported when first asked for (then cached
    as globals)."""
    # Function-level imports on purpose (start-up time): the render loop imports torch, diffusers, transformers,
    # open_clip and kornia (seconds), which `import discolib`, `from discolib import Settings` and
    # `discolib validate` must not pay for.
    if name == "render":
        from discolib.run.loop import render as value  # start-up time: torch and every model library
    elif name == "animate_photo":
        from discolib.run.photo import animate_photo as value  # start-up time: torch and the depth models
    elif name == "RenderResult":
        from discolib.run.events import RenderResult as value  # start-up time: torch (RenderEvent.preview)
    elif name == "RunFolder":
        # start-up time: torch-free, but hashing, zip and platform modules (~0.1 s) only run-folder users need
        from discolib.run.runs import RunFolder as value
    elif name == "sweep":
        # start-up time: running variants imports torch and the models
        from discolib.run.sweep import sweep as value
    elif name == "LiveSession":
        from discolib.run.live import LiveSession as value  # start-up time: torch and the model libraries
    else:
        raise AttributeError(f"module 'discolib' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
