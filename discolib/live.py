"""Live mode (docs/LIVE.md), under the name the issue and the docs use: ``from discolib.live import LiveSession``.

The session is :mod:`discolib.run.live` (it is built from the render loop's parts, in the run layer); this module
only names it at the top, as ``discolib.LiveSession`` does.
"""

from discolib.run.live import (
    CONTROL_AXES,
    FLIGHT_KEYS,
    KEY_BINDINGS,
    LiveError,
    LiveFrame,
    LiveSession,
    flight_with_preset,
    velocity_for_keys,
)

__all__ = [
    "CONTROL_AXES",
    "FLIGHT_KEYS",
    "KEY_BINDINGS",
    "LiveError",
    "LiveFrame",
    "LiveSession",
    "flight_with_preset",
    "velocity_for_keys",
]
