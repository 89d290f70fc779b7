"""discolib_widgets: the notebook side of discolib (the settings panel, the render view, the curve editor and the
notebooks' helpers).

Installed with ``pip install "discolib[notebook]"``; discolib itself never imports ipywidgets or this package.
"""

from discolib_widgets.audio import SoundtrackView
from discolib_widgets.curve import CurveEditor, CurveKey, keys_from_text, text_from_keys
from discolib_widgets.fields import FieldControl, check_field, schedule_png
from discolib_widgets.live import LivePanel, LiveView, live_panel
from discolib_widgets.notebook import (
    RunIncomplete,
    apply_parameters,
    finish_settings,
    gpu_report,
    notebook_setup,
    record_summary,
    show_result,
    start_settings,
)
from discolib_widgets.panel import RenderFn, SettingsPanel, show_panel
from discolib_widgets.view import RenderView, ViewState, render_here

__all__ = [
    "CurveEditor",
    "CurveKey",
    "FieldControl",
    "LivePanel",
    "LiveView",
    "RenderFn",
    "RenderView",
    "RunIncomplete",
    "SettingsPanel",
    "SoundtrackView",
    "ViewState",
    "apply_parameters",
    "check_field",
    "finish_settings",
    "gpu_report",
    "keys_from_text",
    "live_panel",
    "notebook_setup",
    "record_summary",
    "render_here",
    "schedule_png",
    "show_panel",
    "show_result",
    "start_settings",
    "text_from_keys",
]
