"""The ipywidgets 8 control panel: a Settings editor for the current mode, load/save, and a render runner.

Everything the panel shows is generated from discolib's Settings schema and its presentation table
(:mod:`discolib.config.ui`: labels, one-line help, original names, which modes read a field), and every action
is a call into discolib (``Settings.set``, ``load_settings_file``, ``apply_preset``, ``resolve_resume``,
``make_run_video``) or into :func:`discolib_widgets.view.render_here`, the one way to render that the notebooks'
render cells use too. The panel only binds widgets to a :class:`~discolib.config.settings.Settings` and runs
``render_here`` on a background thread.
"""

from __future__ import annotations

import copy
import functools
import html
import logging
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.display import display

from discolib import Settings
from discolib.config.importers import ImportReport, load_settings_file
from discolib.config.presets import PRESETS, apply_preset, preset_mode
from discolib.config.settings import GROUPS, SettingsError, iter_fields
from discolib.config.ui import field_ui, is_shown, panel_layout
from discolib.errors import InputError, ResourceLimitError
from discolib_widgets.audio import AUDIO_INPUTS, SoundtrackView
from discolib_widgets.fields import INPUT_ERRORS, FieldControl, check_field, describe_error, reads_audio
from discolib_widgets.view import (
    MODEL_IMPORTS,
    RenderView,
    has_sound,
    on_render_end,
    render_here,
    video_too_large,
)

if TYPE_CHECKING:  # discolib.run imports torch; the panel needs it only once a render runs
    from discolib import RenderResult
    from discolib.run.runs import RunFolder

__all__ = ["PANEL_CLASS", "RenderFn", "SettingsPanel", "show_panel"]

RenderFn = Callable[..., "RenderResult"]
"""``render(settings, *, out=None, resume=None, callback=None, stop=None, progress=True, force=False)``."""

# Fields whose change alters how every keyframe string is checked and drawn.
# animation.length_from_soundtrack: the frame count is the song's.
_SCHEDULE_CONTEXT = ("animation.max_frames", "animation.interpolation", "animation.length_from_soundtrack")
# The fields whose values decide which fields are shown (the modes, and every FieldUI.needs condition): an edit
# of any other field (a schedule dragged in its curve editor, say) leaves the visibility as it is.
_VISIBILITY_INPUTS = frozenset(
    {"image.mode", "animation.animation_mode"}
    | {name for field in iter_fields() for need in field_ui(field).needs for name in need.settings}
)
# Kept when a preset switches the image mode (everything else takes the new mode's defaults).
_KEPT_ACROSS_MODES = (
    "run.output_root",
    "run.seed",
    "prompts.text_prompts",
    "animation.animation_mode",
    "animation.max_frames",
)

#: CSS class of the panel's outer box; the panel's own <style> is scoped by it.
PANEL_CLASS = "discolib-panel"
# Side by side (settings left, controls and preview right) when there is room: the right column stays in view
# while the settings scroll (position: sticky). Below ~1100 px the columns wrap, and a container query puts the
# controls and preview above the settings (never off-screen below long tabs). Tab titles never clip: tabs are as
# wide as their titles and the tab bar wraps when they do not fit in one row.
_STYLE = f"""<style>
.{PANEL_CLASS} {{ container-type: inline-size; }}
.{PANEL_CLASS} .discolib-side {{ position: sticky; top: 0; align-self: flex-start; z-index: 2;
  background: var(--jp-layout-color0, #fff); }}
@container (max-width: 1099px) {{
  .{PANEL_CLASS} .discolib-side {{ order: -1; position: static; margin-bottom: 8px; }}
}}
.{PANEL_CLASS} .widget-tab > .lm-TabBar {{ height: auto; min-height: fit-content; overflow: visible; }}
.{PANEL_CLASS} .widget-tab > .lm-TabBar .lm-TabBar-content {{ flex-wrap: wrap; }}
.{PANEL_CLASS} .widget-tab > .lm-TabBar .lm-TabBar-tab {{ flex: 0 0 auto !important; min-width: fit-content !important;
  max-width: none !important; }}
.{PANEL_CLASS} .widget-tab > .lm-TabBar .lm-TabBar-tabLabel {{ overflow: visible; text-overflow: clip; }}
.{PANEL_CLASS} .widget-button, .{PANEL_CLASS} .widget-toggle-button {{ min-width: fit-content; }}
</style>"""

_OK = "#2e7d32"
_WARN = "#a15c00"
_ERR = "#c62828"

# Per kernel: the panel edits a user made, per panel key ({dotted name: JSON value}), re-applied by the next panel
# with that key (a notebook re-run rebuilds its Settings from the settings cell; the edits must survive that).
_KEPT_EDITS: dict[str, dict[str, Any]] = {}

_log = logging.getLogger("discolib_widgets")


def _html(text: str, color: str | None = None) -> str:
    body = html.escape(text)
    return f'<span style="color:{color};white-space:pre-wrap">{body}</span>' if color else body


def _button(description: str, **kwargs: Any) -> widgets.Button:
    """A button as wide as its text (a squeezed button shows "...")."""
    return widgets.Button(description=description, layout=widgets.Layout(width="auto", flex="0 0 auto"), **kwargs)


def _display(widget: widgets.Widget, shown: bool) -> None:
    """Show or hide ``widget`` (only a change is sent to the browser)."""
    value = "" if shown else "none"
    if widget.layout.display != value:
        widget.layout.display = value


def _flat(grouped: dict[str, Any]) -> dict[str, Any]:
    return {f"{g}.{k}": v for g, fields in grouped.items() for k, v in fields.items()}


def _names_line(names: list[str], limit: int = 8) -> str:
    """``zoom, seed, ...`` : short names (the part after the dot), at most ``limit`` of them."""
    short = [n.split(".", 1)[1] for n in names]
    return ", ".join(short[:limit]) + (f" and {len(short) - limit} more" if len(short) > limit else "")


class SettingsPanel:
    """A widget panel bound to one :class:`~discolib.config.settings.Settings`.

    Editing a widget sets the field through ``Settings.set`` (and discolib's schedule/prompt parsers), so an
    invalid value shows its message under the widget and leaves the Settings unchanged. Only the fields the
    current ``image.mode`` and ``animation.animation_mode`` use are shown (``show all settings`` shows every one).
    ``Render`` runs :func:`~discolib_widgets.view.render_here` on a background thread; ``Stop`` asks it to stop
    after the current step; ``Resume`` continues a stopped run (this panel's, the batch's latest, or any run
    folder typed in); ``Make video`` (re)makes a run folder's video.

    Args:
        settings: the Settings to edit in place (default: ``Settings.defaults()``).
        render_fn: the render function ``render_here`` calls (default :func:`discolib.render`, imported when the
            first render starts); tests pass a fake with the same signature.
        key: remember the user's edits under this key for the kernel's lifetime: a later panel with the same key
            re-applies them to its ``settings`` (in place), so re-running a notebook keeps the panel's edits.
        reset: drop the edits remembered under ``key`` (the panel shows ``settings`` as given).
        preset: the name of the preset ``settings`` was made from (shown in the picker; nothing is applied).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        render_fn: RenderFn | None = None,
        key: str | None = None,
        reset: bool = False,
        preset: str | None = None,
    ) -> None:
        self._settings = settings if settings is not None else Settings.defaults()
        # The notebook's values: an "edit" is a field whose value differs from these.
        self._baseline: dict[str, Any] = _flat(self._settings.to_dict())
        self.key = key
        self._render_fn = render_fn
        self._pushing = False  # set while Settings values are written into widgets: no write-back
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self._invalid_notice = False  # the error area holds "fix the invalid fields first"
        # The field the whole-Settings check last failed on (shown even when its mode hides it), else None.
        self._validity_field: str | None = None
        self._video_thread: threading.Thread | None = None
        self._video_error = False  # the error area holds the last video's error
        self.last_result: RenderResult | None = None
        self.last_error: BaseException | None = None
        self.last_import: ImportReport | None = None
        self.run_dir: Path | None = None

        # ---------------------------------------------------------------- edits kept from the last run
        kept_names: list[str] = []
        skipped: list[str] = []
        if key is not None:
            if reset:
                _KEPT_EDITS.pop(key, None)
            for name, value in _KEPT_EDITS.get(key, {}).items():
                if value == self._baseline.get(name):
                    continue  # the notebook now says the same: no longer an edit
                try:
                    self._settings.set(name, copy.deepcopy(value))
                    kept_names.append(name)
                except (*INPUT_ERRORS, KeyError):  # a field renamed or a value no longer valid: not re-applied
                    skipped.append(name)

        # ---------------------------------------------------------------- settings editor, from the schema
        self.controls: dict[str, FieldControl] = {}
        self._pages: list[tuple[str, widgets.VBox, list[tuple[widgets.VBox, list[str]]]]] = []
        for tab, sections in panel_layout():
            section_boxes: list[tuple[widgets.VBox, list[str]]] = []
            for section, names in sections:
                heading = widgets.HTML(
                    f'<h4 class="discolib-section" style="margin:10px 0 4px 0">{html.escape(section)}</h4>'
                )
                rows: list[widgets.Widget] = [heading]
                for name in names:
                    control = FieldControl(name)
                    control.input.observe(functools.partial(self._on_edit, control), names="value")
                    if control.plot_toggle is not None:
                        control.plot_toggle.observe(functools.partial(self._on_plot_toggle, control), names="value")
                    if control.curve_toggle is not None:
                        control.curve_toggle.observe(functools.partial(self._on_curve_toggle, control), names="value")
                    self.controls[name] = control
                    rows.append(control.box)
                section_boxes.append((widgets.VBox(rows), names))
            self._pages.append((tab, widgets.VBox([b for b, _ in section_boxes]), section_boxes))
        # The song under the soundtrack field: its features, a frame cursor and a player (discolib_widgets.audio).
        self.soundtrack_view: SoundtrackView | None = None
        track = self.controls.get("output.soundtrack")
        if track is not None:
            self.soundtrack_view = SoundtrackView(on_features=self._on_audio_features)
            track.box.children = (*track.box.children, self.soundtrack_view.box)
        self.tabs = widgets.Tab()
        self.show_all = widgets.Checkbox(
            value=False,
            description="show all settings",
            indent=False,
            layout=widgets.Layout(width="auto"),
            tooltip="Show the settings of every mode, not only those the current mode and animation mode use",
        )
        self.show_all.observe(lambda _c: self._guarded_panel(self._refresh_visibility), names="value")
        self.validity = widgets.HTML("")
        self.weights_note = widgets.HTML("", layout=widgets.Layout(display="none"))
        self.weights_note.add_class("discolib-weights")

        # ---------------------------------------------------------------- preset picker
        self._setting_preset = False
        self.preset = widgets.Dropdown(
            options=[("(choose a preset)", ""), *((name, name) for name in PRESETS)],
            value=preset if preset in PRESETS else "",
            description="preset",
            layout=widgets.Layout(width="auto"),
            style={"description_width": "initial"},
            tooltip="Apply a preset: its models, size and steps (and its mode's defaults when the mode differs)",
        )
        self.preset.observe(self._on_preset, names="value")
        self.preset_note = widgets.HTML("")

        # ---------------------------------------------------------------- kept edits
        self.kept_note = widgets.HTML("")
        self.reset_button = _button(
            "Reset to the notebook's settings", icon="undo", tooltip="Forget the panel's edits: back to the notebook's settings"
        )
        self.reset_button.on_click(lambda _b: self._clicked(self.reset_edits))
        self.kept_row = widgets.HBox(
            [self.kept_note, self.reset_button],
            layout=widgets.Layout(display="none", align_items="center", flex_flow="row wrap"),
        )
        self.kept_row.add_class("discolib-kept")
        if kept_names or skipped:
            text = f"kept {len(kept_names)} edit(s) from the last run: {_names_line(kept_names)}" if kept_names else ""
            if skipped:
                text += ("; " if text else "") + f"could not keep {_names_line(skipped)}"
            self.kept_note.value = _html(text, _WARN)
            self.kept_row.layout.display = ""

        # ---------------------------------------------------------------- load / save
        self.path = widgets.Text(
            value="",
            placeholder="settings.json, or a Disco/Deforum *_settings.txt",
            tooltip="Path of a settings file: load a discolib, Disco or Deforum file; save a discolib file",
            layout=widgets.Layout(width="auto", flex="1 1 200px", min_width="160px"),
        )
        self.load_button = _button("Load", icon="folder-open", tooltip="Load (or import) the settings file")
        self.save_button = _button("Save", icon="save", tooltip="Validate and save to the file")
        self.file_message = widgets.HTML("")
        self.load_button.on_click(self._on_load_click)
        self.save_button.on_click(self._on_save_click)

        # ---------------------------------------------------------------- render
        self.view = RenderView(backend="widgets")
        self.render_button = _button("Render", button_style="success", icon="play", tooltip="Render these settings")
        self.stop_button = _button(
            "Stop", button_style="danger", icon="stop", disabled=True, tooltip="Stop after this step"
        )
        self.force = widgets.Checkbox(
            value=False,
            description="start anyway",
            indent=False,
            layout=widgets.Layout(width="auto"),
            tooltip="Render even when the run is estimated to need more memory or time than this CPU has (--force)",
        )
        self.render_button.on_click(lambda _b: self._clicked(self.render))
        self.stop_button.on_click(lambda _b: self._clicked(self.stop))
        self.status = widgets.HTML("")
        self.error_area = widgets.HTML("")

        # ---------------------------------------------------------------- resume / video of any run folder
        self.run_folder = widgets.Text(
            value="",
            placeholder="latest or a run folder",
            tooltip="The run to resume or make a video of: a run folder, or 'latest' (the batch's newest run); "
            "empty: this panel's last run, else the latest",
            continuous_update=False,
            layout=widgets.Layout(width="auto", flex="1 1 200px", min_width="160px"),
        )
        self.run_folder.observe(lambda _c: self._guarded_panel(self._update_resume), names="value")
        self.resume_button = _button(
            "Resume", icon="forward", disabled=True, tooltip="Continue the run from its last complete frame"
        )
        self.resume_button.on_click(lambda _b: self._clicked(self.resume))
        self.resume_note = widgets.HTML("")
        self.video_fps = widgets.BoundedFloatText(
            value=0,
            min=0,
            max=240,
            description="fps",
            tooltip="Frames per second of the video (0: the run's output.fps)",
            style={"description_width": "initial"},
            layout=widgets.Layout(width="110px", flex="0 0 110px"),
        )
        self.video_button = _button("Make video", icon="film", tooltip="(Re)make the video of the run folder")
        self.video_button.on_click(lambda _b: self._clicked(self.start_video))
        self.video_note = widgets.HTML("")
        # Hidden until they hold a video: an mp4 in the Video, a GIF in the Image.
        self.video = widgets.Video(
            format="mp4", autoplay=False, loop=True, controls=True, layout=widgets.Layout(display="none", max_width="100%")
        )
        self.video_gif = widgets.Image(format="gif", layout=widgets.Layout(display="none", max_width="100%"))

        # ---------------------------------------------------------------- layout
        style = widgets.HTML(_STYLE, layout=widgets.Layout(display="none"))
        left = widgets.VBox(
            [widgets.HBox([self.preset, self.show_all], layout=widgets.Layout(flex_flow="row wrap", align_items="center")),
             self.preset_note, self.kept_row, self.weights_note, self.tabs],
            layout=widgets.Layout(flex="3 1 640px", min_width="0", margin="0 12px 0 0"),
        )
        left.add_class("discolib-settings")
        row = functools.partial(widgets.HBox, layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        side = widgets.VBox(
            [
                row([self.render_button, self.stop_button, self.force]),
                self.validity,
                self.status,
                self.error_area,
                self.view.widget,
                row([self.run_folder, self.resume_button]),
                self.resume_note,
                row([self.video_fps, self.video_button]),
                self.video_note,
                self.video,
                self.video_gif,
                row([self.path, self.load_button, self.save_button]),
                self.file_message,
            ],
            layout=widgets.Layout(flex="2 1 420px", min_width="0"),
        )
        side.add_class("discolib-side")
        self.widget = widgets.VBox(
            [style, widgets.Box([left, side], layout=widgets.Layout(flex_flow="row wrap", width="100%"))]
        )
        self.widget.add_class(PANEL_CLASS)
        self._weights_lock = threading.Lock()
        self._weights_thread: threading.Thread | None = None
        self._weights_pending: Settings | None = None
        self._push_all()
        self._check_weights_soon()
        self._update_resume()
        on_render_end(self)  # a render in a cell (stopped, failed) may now be resumable from here

    # ------------------------------------------------------------------------------------- settings binding
    @property
    def settings(self) -> Settings:
        """The Settings being edited (the same object the panel was given; edits change it in place)."""
        return self._settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        if not isinstance(value, Settings):
            raise TypeError(f"expected a discolib Settings, got {type(value).__name__}")
        self._settings = value
        self._push_all()

    @property
    def errors(self) -> dict[str, str]:
        """{field: message} for every widget whose value was rejected (the Settings keeps its last good value)."""
        return {name: c.error for name, c in self.controls.items() if c.error}

    def _assign(self, source: Settings) -> None:
        """Make the edited Settings equal ``source``, in place (the notebook renders the object it gave)."""
        for group in GROUPS:
            setattr(self._settings, group, copy.deepcopy(getattr(source, group)))
        self._push_all()

    def _push_all(self) -> None:
        """Write every Settings value into its widget, clear the messages and re-check the whole Settings."""
        unshown: dict[str, str] = {}
        self._pushing = True
        try:
            for name, control in self.controls.items():
                try:
                    control.write(self._settings.get(name))
                except Exception as exc:  # e.g. a value a Dropdown does not offer: say so beside the field
                    unshown[name] = f"cannot show this value: {describe_error(exc)}"
        finally:
            self._pushing = False
        for name, control in self.controls.items():
            if name in unshown:
                control.show_error(unshown[name])
            elif control.info.kind == "schedule":
                self._guarded(control, lambda c=control: self._apply(c, refresh=False))  # warnings, domain errors
                control.sync_curve(self._settings)
            else:
                control.show_ok()
        self._refresh_visibility()
        self._update_validity()
        if self.soundtrack_view is not None:
            self.soundtrack_view.update(self._settings)  # asks the library again only when the song's inputs changed

    def _refresh_visibility(self) -> None:
        """Show the fields, sections and tabs of the current image mode and animation mode (or all of them).

        A field that only matters with another setting's value (``discolib.config.ui``'s ``needs``, e.g. the
        fuzzy-prompt strength while fuzzy prompts are off) shows once that value is set.
        """
        mode, anim = self._settings.image.mode, self._settings.animation.animation_mode
        show_all = bool(self.show_all.value)
        shown_pages: list[tuple[str, widgets.VBox]] = []
        for tab, page, sections in self._pages:
            tab_has = False
            for box, names in sections:
                section_has = False
                for name in names:
                    control = self.controls[name]
                    # A field with a pending error, or the one the whole-Settings check fails on, stays in view
                    # until it is fixed (or reset): Render names it, so the user must be able to find it.
                    shown = (
                        is_shown(name, mode, anim, show_all=show_all, values=self._settings)
                        or bool(control.error)
                        or name == self._validity_field
                    )
                    _display(control.box, shown)
                    section_has = section_has or shown
                _display(box, section_has)
                tab_has = tab_has or section_has
            if tab_has:
                shown_pages.append((tab, page))
        titles = tuple(t for t, _ in shown_pages)
        if titles == tuple(self.tabs.titles):
            return
        index = self.tabs.selected_index
        current = self.tabs.titles[index] if index is not None and index < len(self.tabs.titles) else None
        with self.tabs.hold_sync():
            self.tabs.children = [p for _, p in shown_pages]
            self.tabs.titles = titles
            self.tabs.selected_index = titles.index(current) if current in titles else (0 if titles else None)

    @property
    def shown_fields(self) -> list[str]:
        """The fields shown now (on any tab), in display order."""
        return [n for n in self.controls if self.controls[n].box.layout.display != "none"]

    def _guarded(self, control: FieldControl, action: Callable[[], Any]) -> Any:
        """Run an observer's work; whatever it raises is shown beside ``control``, never raised into ipywidgets.

        ipywidgets calls observers for values the browser sends and only logs what they raise, so an exception
        there would leave the user with no message at all. Expected input errors come back as messages from
        :meth:`_set_from_widget`; anything reaching here is a discolib bug, shown and logged with its traceback.
        """
        try:
            return action()
        except Exception as exc:
            _log.exception("discolib_widgets: unexpected error while checking %s", control.name)
            control.show_error(f"unexpected error (please report it): {describe_error(exc)}")
            try:
                self._update_validity()
            except Exception:  # the message beside the field is what matters; validity stays as it was
                _log.exception("discolib_widgets: validity check failed")
            return None

    def _guarded_panel(self, action: Callable[[], Any]) -> None:
        """A panel-wide observer's work; what it raises is shown in the error area, never raised into ipywidgets."""
        try:
            action()
        except Exception as exc:
            _log.exception("discolib_widgets: panel update failed")
            self.error_area.value = _html(f"unexpected error (please report it): {describe_error(exc)}", _ERR)

    def _on_edit(self, control: FieldControl, _change: dict[str, Any]) -> None:
        if self._pushing:
            return
        had_error = bool(control.error)
        ok = self._guarded(control, lambda: self._apply(control))
        if ok:
            self._guarded(control, lambda: self._after_accepted_edit(control, had_error))
        elif not had_error and control.error:
            self._guarded(control, self._refresh_visibility)  # keeps the field in view while its error is pending
        # Typing a keyframe string opens its plot (the toggle draws it); with the curve editor shown the curve is
        # the plot (and a drag sends an edit every few tens of milliseconds: no PNG is drawn for them).
        if ok and control.plot_toggle is not None and not control.plot_toggle.value and not control.curve_shown:
            control.plot_toggle.value = True

    def _after_accepted_edit(self, control: FieldControl, had_error: bool = False) -> None:
        if control.name in _VISIBILITY_INPUTS or control.name in _SCHEDULE_CONTEXT or had_error:
            # the mode fields, the fields other fields switch on, schedules re-checked (errors keep them in view),
            # a fixed field its mode hides
            self._refresh_visibility()
        if control.name in _SCHEDULE_CONTEXT:
            for other in self.controls.values():
                other.sync_curve(self._settings)
        if control.name.startswith("models.") or control.name == "image.mode":
            self._check_weights_soon()
        if control.name in ("run.output_root", "run.batch_name"):
            self._update_resume()
        if control.name in AUDIO_INPUTS and self.soundtrack_view is not None:
            self.soundtrack_view.update(self._settings)
        self._record_edits()

    def _on_audio_features(self, features: Any, note: str, error: bool) -> None:
        """The song's features changed (or there are none, ``note`` says why): the schedules that read the
        soundtrack are checked and drawn again with them (a string refused for want of a soundtrack may pass now)."""
        # With the animation as long as the song, every schedule's frame count follows the song too.
        song_length = bool(getattr(self._settings.animation, "length_from_soundtrack", False))
        for control in self.controls.values():
            if control.info.kind == "prompts" and control.error:  # e.g. a "bar_frame(8)" key refused without a song
                self._guarded(control, lambda c=control: self._apply(c, refresh=False))
            if control.info.kind != "schedule":
                continue
            control.set_audio(features, note, error=error)
            if song_length or reads_audio(control.input.value, control.name):
                self._guarded(control, lambda c=control: self._apply(c, refresh=False))
                control.sync_curve(self._settings)
        self._update_validity()

    def wait_audio(self, timeout: float | None = None) -> bool:
        """Join the soundtrack's analysis thread and show its answer on this (the kernel's) thread; True when no
        analysis is running any more."""
        return self.soundtrack_view is None or self.soundtrack_view.wait(timeout)

    def _on_plot_toggle(self, control: FieldControl, _change: dict[str, Any]) -> None:
        self._guarded(control, lambda: control.update_plot(self._settings))

    def _on_curve_toggle(self, control: FieldControl, _change: dict[str, Any]) -> None:
        self._guarded(control, lambda: control.update_curve(self._settings))

    def _apply(self, control: FieldControl, *, refresh: bool = True) -> bool:
        """Check the widget's value with discolib and set it; on error show it and leave the Settings alone."""
        ok = self._set_from_widget(control)
        if refresh:
            if ok and control.name in _SCHEDULE_CONTEXT:
                for other in self.controls.values():
                    if other.info.kind == "schedule":
                        self._apply(other, refresh=False)
            self._update_validity()
        return ok

    def _set_from_widget(self, control: FieldControl) -> bool:
        try:
            value = control.read()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_field(control.info, value, self._settings)
                self._settings.set(control.name, value)
        except INPUT_ERRORS as exc:  # InputError, and what a library raises on a hostile value (overflow, depth)
            control.show_error(describe_error(exc))
            return False
        control.show_ok([str(w.message) for w in caught])
        control.update_plot(self._settings)
        return True

    def _update_validity(self) -> None:
        """Show pending widget errors, else the whole-Settings check (cross-field rules, e.g. width % 64)."""
        invalid = self.errors
        if self._invalid_notice and not invalid:  # "fix the invalid fields first" goes once they are fixed
            self.error_area.value = ""
            self._invalid_notice = False
        if invalid:
            self.validity.value = _html(f"⚠ invalid input in {', '.join(invalid)} (not applied)", _WARN)
            return
        failed: str | None = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate-key warnings are already shown beside their field
                self._settings.validate()
        except INPUT_ERRORS as exc:
            text = f"⚠ {describe_error(exc)}"
            failed = getattr(exc, "field", None)
            if failed not in self.controls:
                failed = None
            elif not self._mode_shows(failed):
                # e.g. vr_mode left on after switching to 2D: the current mode hides the field, so say where it is
                text += " (shown in its tab although the current mode hides it)"
            self.validity.value = _html(text, _WARN)
        else:
            self.validity.value = _html("✓ settings valid", _OK)
        if failed != self._validity_field:
            self._validity_field = failed
            self._refresh_visibility()

    def _mode_shows(self, name: str) -> bool:
        """Whether the current modes (and ``show all``) show ``name``, errors aside."""
        s = self._settings
        return is_shown(name, s.image.mode, s.animation.animation_mode, show_all=bool(self.show_all.value), values=s)

    def _check_weights_soon(self) -> None:
        """:meth:`check_weights` on a worker thread: its first call imports the model libraries (seconds), and the
        panel must show before that. Edits made while a check runs queue one more check, of the newest Settings."""
        with self._weights_lock:
            self._weights_pending = self._settings.copy()  # taken here: the user may edit while the check runs
            if self._weights_thread is not None and self._weights_thread.is_alive():
                return  # the running worker picks the newest pending Settings up when it is done
            self._weights_thread = threading.Thread(target=self._weights_worker, name="discolib-weights", daemon=True)
            self._weights_thread.start()

    def _weights_worker(self) -> None:
        while True:
            with self._weights_lock:
                settings, self._weights_pending = self._weights_pending, None
                if settings is None:
                    self._weights_thread = None
                    return
            self.check_weights(settings)

    def check_weights(self, settings: Settings | None = None) -> str | None:
        """Show (and return) the one-line message of the model weights these Settings need and cannot get.

        ``discolib.models.availability.weights_problem`` says which real weights are missing offline and what to
        download; None (nothing shown) when every weight is there or downloadable.
        """
        try:
            from discolib.models.availability import weights_problem  # the models layer: only when asked
        except ImportError:
            return None
        try:
            with MODEL_IMPORTS:  # its first call imports the model libraries, maybe while a render cell does too
                problem = weights_problem(settings if settings is not None else self._settings.copy())
        except Exception as exc:  # a check that fails must not stop the panel; say so instead
            _log.warning("discolib_widgets: the model weights check failed", exc_info=True)
            problem = f"could not check the model weights: {describe_error(exc)}"
        self.weights_note.value = _html(f"⚠ {problem}", _WARN) if problem else ""
        self.weights_note.layout.display = "" if problem else "none"
        return problem

    def wait_weights(self, timeout: float | None = None) -> bool:
        """Join the weights check worker; True when no check is running any more."""
        thread = self._weights_thread
        if thread is not None:
            thread.join(timeout)
        return self._weights_thread is None or not self._weights_thread.is_alive()

    # ------------------------------------------------------------------------------------- presets
    def _on_preset(self, change: dict[str, Any]) -> None:
        if self._setting_preset or not change["new"]:
            return
        try:
            self.apply_preset(change["new"])
        except Exception as exc:  # shown beside the picker, never raised into ipywidgets
            if not isinstance(exc, INPUT_ERRORS):
                _log.exception("discolib_widgets: preset %s failed", change["new"])
            self.preset_note.value = _html(f"preset not applied: {describe_error(exc)}", _ERR)

    def apply_preset(self, name: str) -> str:
        """Apply preset ``name`` to the Settings (in place) and return the one-line note of what changed.

        A preset of the other image mode first switches to that mode's defaults, keeping the output folder, seed,
        prompts, animation mode and frame count.
        """
        before = _flat(self._settings.to_dict())
        target = preset_mode(name)
        work = self._settings.copy()
        switched = ""
        if target != work.image.mode:
            fresh = Settings.defaults(target, work.animation.animation_mode)
            for field in _KEPT_ACROSS_MODES:
                fresh.set(field, work.get(field), validate_field=False)
            switched = f"{work.image.mode} -> {target} mode (its defaults; kept prompts, seed, frames, output folder)"
            work = fresh
        apply_preset(work, name)
        self._assign(work)
        self._setting_preset = True
        try:
            self.preset.value = name
        finally:
            self._setting_preset = False
        after = _flat(self._settings.to_dict())
        changed = [n for n in after if after[n] != before[n]]
        note = f"preset {name}: " + (f"{switched}; " if switched else "")
        note += f"{len(changed)} setting(s) changed" + (f": {_names_line(changed)}" if changed else "")
        self.preset_note.value = _html(note, _OK)
        self._record_edits()
        self._check_weights_soon()
        self._update_resume()  # a preset may name another batch
        return note

    # ------------------------------------------------------------------------------------- kept edits
    @property
    def kept_edits(self) -> dict[str, Any]:
        """{dotted name: value} of every field whose value differs from the Settings the notebook passed in."""
        now = _flat(self._settings.to_dict())
        return {n: v for n, v in now.items() if v != self._baseline.get(n)}

    def _record_edits(self) -> None:
        if self.key is not None:
            _KEPT_EDITS[self.key] = copy.deepcopy(self.kept_edits)

    def reset_edits(self) -> None:
        """Forget the kept edits and put the notebook's values back into the Settings (in place)."""
        if self.key is not None:
            _KEPT_EDITS.pop(self.key, None)
        self._assign(Settings.from_dict(_unflat(self._baseline), validate=False))
        self.kept_note.value = ""
        self.kept_row.layout.display = "none"
        self.preset_note.value = ""
        self._check_weights_soon()
        self._update_resume()

    # ------------------------------------------------------------------------------------- load / save
    def load(self, path: str | Path) -> Settings:
        """Load a discolib settings JSON, or import a Disco or Deforum settings file, into the panel's Settings.

        The Settings object is updated in place (the notebook keeps rendering the object it passed in). An import
        keeps its report as ``last_import`` and shows its first line and warnings (the whole report folded).
        A previous render error and status are cleared. Raises ``SettingsError`` (one line, naming the file).
        """
        loaded, report = load_settings_file(path)
        self._assign(loaded)
        self.last_import = report
        self.path.value = str(path)
        self.error_area.value = ""
        self.status.value = ""
        self._invalid_notice = False
        if self.view.state.status == "failed" and not self.running:
            self.view.reset()  # its red line belongs to the settings just replaced
        self.file_message.value = self._load_message(str(path), report)
        self._record_edits()
        self._check_weights_soon()
        self._update_resume()
        return self._settings

    @staticmethod
    def _load_message(path: str, report: ImportReport | None) -> str:
        if report is None:
            return _html(f"loaded {path}", _OK)
        summary = report.summary()
        first = summary.splitlines()[0]
        warned = "".join(f"<div>{_html('⚠ ' + w, _WARN)}</div>" for w in report.warnings)
        return (
            _html(f"loaded {path}: {first}", _OK)
            + warned
            + f"<details><summary>import report</summary><pre>{html.escape(summary)}</pre></details>"
        )

    def save(self, path: str | Path) -> Path:
        """Validate and save the Settings (``Settings.save``); raises ``SettingsError`` or ``OSError``."""
        invalid = self.errors
        if invalid:
            raise SettingsError(f"fix the invalid fields first: {', '.join(invalid)}")
        self._settings.validate()  # a file that saves must load again
        return self._settings.save(path)

    def _file_path(self) -> str | None:
        path = self.path.value.strip()
        if not path:
            self.file_message.value = _html("enter a settings file path first", _ERR)
            return None
        return path

    def _on_load_click(self, _button: widgets.Button | None = None) -> None:
        path = self._file_path()
        if path is None:
            return
        try:
            self.load(path)
        except Exception as exc:  # a button callback: nothing may escape into ipywidgets (it would only log it)
            if not isinstance(exc, (*INPUT_ERRORS, OSError)):
                _log.exception("discolib_widgets: unexpected error while loading %s", path)
            self.file_message.value = _html(f"load failed: {describe_error(exc)}", _ERR)

    def _on_save_click(self, _button: widgets.Button | None = None) -> None:
        path = self._file_path()
        if path is None:
            return
        try:
            written = self.save(path)
        except Exception as exc:  # as for Load: shown beside the buttons, never raised into ipywidgets
            if not isinstance(exc, (*INPUT_ERRORS, OSError)):
                _log.exception("discolib_widgets: unexpected error while saving %s", path)
            self.file_message.value = _html(f"save failed: {describe_error(exc)}", _ERR)
            return
        self.file_message.value = _html(f"saved {written}", _OK)

    # ------------------------------------------------------------------------------------- render
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def render(self, *, resume: str | Path | None = None) -> threading.Thread | None:
        """Start :func:`render_here` on a background thread with a copy of the Settings; returns the thread.

        Returns None (and says why in the error area) when invalid input is pending in a widget. Errors of
        the render itself are shown in the error area and kept in ``last_error``; the result is ``last_result``.
        """
        if self.running:
            raise RuntimeError("a render is already running; stop it or wait for it first")
        if self.video_running:
            raise RuntimeError("a video is being made; wait for it first")
        invalid = self.errors
        if invalid:
            self.error_area.value = _html(f"fix the invalid fields first: {', '.join(invalid)}", _ERR)
            self._invalid_notice = True
            return None
        self.error_area.value = ""
        self._invalid_notice = False
        self.status.value = _html("starting…")
        self.last_result = None
        self.last_error = None
        stop = threading.Event()
        self._stop_event = stop
        self.render_button.disabled = True
        self.resume_button.disabled = True
        self.video_button.disabled = True
        self.stop_button.disabled = False
        # A copy: edits made while it runs apply to the next render, not this one.
        snapshot = self._settings.copy()
        self._thread = threading.Thread(
            target=self._run, args=(snapshot, stop, resume, bool(self.force.value)), name="discolib-render", daemon=True
        )
        self._thread.start()
        return self._thread

    def _clicked(self, action: Callable[[], Any]) -> None:
        """A button's action; what it raises is shown in the error area (ipywidgets would only log it)."""
        try:
            action()
        except Exception as exc:
            if not isinstance(exc, (*INPUT_ERRORS, OSError)):
                _log.exception("discolib_widgets: button action failed")
            self.error_area.value = _html(describe_error(exc), _ERR)

    def stop(self) -> None:
        """Ask the running render to stop after its current step."""
        if self._stop_event is not None and self.running:
            self._stop_event.set()
            self.stop_button.disabled = True
            self.status.value = _html("stopping after the current step…")

    def wait(self, timeout: float | None = None) -> bool:
        """Join the render thread; True when no render is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _run(self, settings: Settings, stop: threading.Event, resume: str | Path | None, force: bool) -> None:
        try:
            result = render_here(
                settings, view=self.view, stop=stop, resume=resume, force=force, render_fn=self._render_fn
            )
            self.last_result = result
            self.run_dir = Path(result.run_dir)
            if result.status == "stopped":
                # Resumable only from a complete frame (Resume's note below says so either way).
                resumable = "the run is resumable" if result.frames else "no complete frame, nothing to resume"
                self.status.value = _html(f"stopped after {len(result.frames)} frame(s); {resumable}: {result.run_dir}")
            else:
                self.status.value = _html(f"done: {len(result.frames)} frame(s) in {result.run_dir}", _OK)
        except Exception as exc:  # shown in the panel: an exception must not vanish with the thread
            self.last_error = exc
            run_dir = getattr(self.view.state, "run_dir", None)
            if run_dir is not None:
                self.run_dir = Path(run_dir)
            self._show_error(exc)
            self.status.value = _html("render failed")
        finally:
            self.render_button.disabled = False
            self.stop_button.disabled = True
            self.video_button.disabled = False
            try:
                self._update_resume(render_ended=True)
            except Exception:  # the render's own outcome is shown; a failed resume check must not hide it
                _log.exception("discolib_widgets: resume check failed")

    def _show_error(self, exc: BaseException) -> None:
        hint = " (tick 'start anyway' to render it all the same)" if isinstance(exc, ResourceLimitError) else ""
        message = _html(f"{type(exc).__name__}: {exc}{hint}", _ERR)
        if not isinstance(exc, InputError):  # a bug, not the user's input: the traceback helps a report
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            message += f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre></details>"
        self.error_area.value = message

    # ------------------------------------------------------------------------------------- resume / video
    def _run_folder(self, run_dir: str | Path | None = None) -> RunFolder:
        """The run folder named by ``run_dir``, else the run-folder box, else this panel's last run, else latest."""
        from discolib.run.runs import resolve_resume  # torch-free, but only resume and video need it

        spec = run_dir if run_dir is not None else self.run_folder.value.strip()
        if not spec:
            spec = str(self.run_dir) if self.run_dir is not None else "latest"
        folder = resolve_resume(spec, self._settings.run.output_root, self._settings.run.batch_name)
        assert folder is not None  # spec is never empty here
        return folder

    def render_ended(self) -> None:
        """Any :func:`render_here` of this kernel ended (the render cell's included): re-check Resume."""
        self._guarded_panel(self._update_resume)

    def _update_resume(self, *, render_ended: bool = False) -> None:
        """Offer Resume only when the run folder can be continued; say why beside it either way."""
        if self.running and not render_ended:  # the render thread itself calls this as it ends
            self.resume_button.disabled = True
            return
        try:
            folder = self._run_folder()
            ok, why = folder.resume_state()
            where = folder.path.name
        except (*INPUT_ERRORS, OSError) as exc:
            ok, why, where = False, describe_error(exc), ""
        self.resume_button.disabled = not ok
        self.resume_button.tooltip = f"Resume {where}: {why}" if where else why
        text = f"{where}: {why}" if where else why
        self.resume_note.value = _html(text if ok else f"Resume not offered: {text}", _OK if ok else "#666")

    def resume(self, run_dir: str | Path | None = None) -> threading.Thread | None:
        """Continue a run from its last complete frame, in this kernel or a new one.

        ``run_dir``: a run folder or ``"latest"`` (default: the run-folder box, else this panel's last run, else
        the latest run of the Settings' batch). Raises ``RunError`` when it cannot be continued (saying why).
        """
        from discolib.run.runs import RunError

        folder = self._run_folder(run_dir)
        ok, why = folder.resume_state()
        if not ok:
            raise RunError(f"cannot resume {folder.path}: {why}")
        return self.render(resume=folder.path)

    @property
    def video_running(self) -> bool:
        """Whether ``Make video`` is encoding (on its thread) now."""
        return self._video_thread is not None and self._video_thread.is_alive()

    def make_video(self, run_dir: str | Path | None = None) -> Path:
        """(Re)make the video of a run folder (as ``Resume`` picks it) with ``make_run_video`` and show it, here
        (the ``Make video`` button runs :meth:`start_video`, which does it on a thread)."""
        folder = self._run_folder(run_dir)
        self.video_note.value = _html(f"making the video of {folder.path.name}…")
        return self._encode_and_show(folder.path, float(self.video_fps.value) or None)

    def _encode_and_show(self, run_dir: Path, fps: float | None) -> Path:
        from discolib.run.video import make_run_video  # ffmpeg and the video writer: only when asked

        try:
            path = make_run_video(run_dir, fps=fps)
            too_large = video_too_large(path)
        except Exception:
            self.video_note.value = ""
            raise
        if too_large is not None:  # as the render view: a huge video is named, not embedded in the notebook
            self.video.layout.display = self.video_gif.layout.display = "none"
            self.video_note.value = _html(too_large, _WARN)
            return path
        gif = path.suffix.lower() == ".gif"
        shown, hidden = (self.video_gif, self.video) if gif else (self.video, self.video_gif)
        if not gif:  # a video with a soundtrack waits for its play control (as the render view's)
            self.video.loop = not has_sound(path)
        shown.value = path.read_bytes()
        shown.layout.display = ""
        hidden.layout.display = "none"
        self.video_note.value = _html(f"video: {path}", _OK)
        return path

    def start_video(self, run_dir: str | Path | None = None) -> threading.Thread:
        """``Make video``: :meth:`make_video` on a background thread (an encode takes seconds to minutes and must not
        block the kernel), with Render, Resume and Make video disabled until it ends; the note beside the button
        says how it goes and an error goes to the error area. Returns the thread (:meth:`wait_video` joins it)."""
        if self.running:
            raise RuntimeError("a render is running; make the video when it has ended")
        if self.video_running:
            raise RuntimeError("a video is already being made; wait for it first")
        folder = self._run_folder(run_dir)  # a bad folder is refused here, at once, beside the button
        fps = float(self.video_fps.value) or None
        if self._video_error:
            self.error_area.value = ""
            self._video_error = False
        for button in (self.render_button, self.resume_button, self.video_button):
            button.disabled = True
        self.video_note.value = _html(f"making the video of {folder.path.name}…")
        self._video_thread = threading.Thread(
            target=self._video_worker, args=(folder.path, fps), name="discolib-video", daemon=True
        )
        self._video_thread.start()
        return self._video_thread

    def _video_worker(self, run_dir: Path, fps: float | None) -> None:
        try:
            self._encode_and_show(run_dir, fps)
        except Exception as exc:  # a thread: shown in the panel, never lost (nor raised into ipywidgets)
            if not isinstance(exc, (*INPUT_ERRORS, OSError)):
                _log.exception("discolib_widgets: making the video of %s failed", run_dir)
            self.error_area.value = _html(f"video not made: {describe_error(exc)}", _ERR)
            self._video_error = True
        finally:
            self.video_button.disabled = False
            self.render_button.disabled = self.running
            try:
                self._update_resume(render_ended=True)
            except Exception:  # the video's outcome is shown; a failed resume check must not hide it
                _log.exception("discolib_widgets: resume check failed")

    def wait_video(self, timeout: float | None = None) -> bool:
        """Join the ``Make video`` thread; True when no video is being made any more."""
        thread = self._video_thread
        if thread is not None:
            thread.join(timeout)
        return not self.video_running

    # ------------------------------------------------------------------------------------- display
    def summary(self) -> str:
        """One line describing the panel's Settings, for notebooks shown without a live kernel."""
        s = self._settings
        anim = s.animation.animation_mode
        frames = f"{s.animation.max_frames} frames" if anim != "None" else f"{s.run.n_batches} image(s)"
        what = f"{anim} {s.image.mode}" if anim != "None" else f"{s.image.mode} stills"
        # The model says more than "preset none" when the Settings came from a file or the notebook's own values.
        model = s.models.diffusion_model if s.image.mode == "guided" else s.models.latent_model
        source = f"preset {self.preset.value}" if self.preset.value else f"model {model}"
        return (
            f"discolib panel: {what}, {frames}, {source}, {s.image.width}x{s.image.height}, "
            f"{s.image.steps} steps (open in Jupyter to edit)"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The live widget, and a static summary for viewers without a kernel (papermill outputs, GitHub)."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        text = self.summary()
        bundle["text/plain"] = text
        bundle["text/html"] = f"<p><b>{html.escape(text)}</b></p>"
        return bundle


def _unflat(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for name, value in flat.items():
        group, field = name.split(".", 1)
        grouped.setdefault(group, {})[field] = copy.deepcopy(value)
    return grouped


def show_panel(
    settings: Settings | None = None, *, key: str | None = None, reset: bool = False, **kwargs: Any
) -> SettingsPanel:
    """Make a :class:`SettingsPanel` (``kwargs`` go to it, e.g. ``render_fn``, ``preset``), display it, return it."""
    panel = SettingsPanel(settings, key=key, reset=reset, **kwargs)
    display(panel)
    return panel
