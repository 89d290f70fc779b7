"""discolib_widgets: the ipywidgets control panel for discolib and the notebooks' helpers.

Installed with ``pip install "discolib[notebook]"``; discolib itself never imports ipywidgets or this package.
"""

from discolib_widgets.curve import CurveEditor, CurveKey, keys_from_text, text_from_keys
from discolib_widgets.fields import FieldControl, check_field, schedule_png
from discolib_widgets.notebook import finish_settings, notebook_setup, record_summary, show_result
from discolib_widgets.panel import RenderFn, SettingsPanel, show_panel

__all__ = [
    "CurveEditor",
    "CurveKey",
    "FieldControl",
    "RenderFn",
    "SettingsPanel",
    "check_field",
    "finish_settings",
    "keys_from_text",
    "notebook_setup",
    "record_summary",
    "schedule_png",
    "show_panel",
    "show_result",
    "text_from_keys",
]
