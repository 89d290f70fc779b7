"""discolib_widgets: the ipywidgets control panel for discolib (discolib itself never imports ipywidgets)."""

from discolib_widgets.fields import FieldControl, check_field, schedule_png
from discolib_widgets.panel import RenderFn, SettingsPanel, show_panel

__all__ = ["FieldControl", "RenderFn", "SettingsPanel", "check_field", "schedule_png", "show_panel"]
