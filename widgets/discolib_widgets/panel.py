"""The ipywidgets 8 control panel: Settings editor, load/save and a render runner with live preview.

Everything the panel shows is generated from discolib's Settings schema, and every action is a call into
discolib (``Settings.set/load/save/validate``, the schedule and prompt parsers, ``render``). The panel itself
only binds widgets to a :class:`~discolib.config.settings.Settings` and runs ``render`` on a background thread.
"""

from __future__ import annotations

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

import discolib
from discolib import Settings
from discolib.config.settings import GROUPS, SettingsError, iter_fields
from discolib.errors import ResourceLimitError
from discolib.io.files import encode_png
from discolib_widgets.fields import INPUT_ERRORS, FieldControl, check_field, describe_error

if TYPE_CHECKING:  # discolib.run imports torch; the panel needs it only once a render runs
    from discolib import RenderResult
    from discolib.run.events import RenderEvent

__all__ = ["RenderFn", "SettingsPanel", "show_panel"]

RenderFn = Callable[..., "RenderResult"]
"""``render(settings, *, out=None, resume=None, callback=None, stop=None, progress=True) -> RenderResult``."""

# Fields whose change alters how every keyframe string is checked and drawn.
_SCHEDULE_CONTEXT = ("animation.max_frames", "animation.interpolation")

_log = logging.getLogger("discolib_widgets")


def _default_render_fn() -> RenderFn:
    return discolib.render  # imports the render loop (torch, the model libraries) on first access


def _html(text: str, color: str | None = None) -> str:
    body = html.escape(text)
    return f'<span style="color:{color};white-space:pre-wrap">{body}</span>' if color else body


class SettingsPanel:
    """A widget panel bound to one :class:`~discolib.config.settings.Settings`.

    Editing a widget sets the field through ``Settings.set`` (and discolib's schedule/prompt parsers), so an
    invalid value shows its message beside the widget and leaves the Settings unchanged. Assigning
    ``panel.settings`` or calling ``panel.load(path)`` refreshes every widget. ``Render`` runs ``render_fn`` on
    a background thread; ``Stop`` asks it to stop after the current step (the run stays resumable and
    ``Resume`` continues it).

    Args:
        settings: the Settings to edit in place (default: ``Settings.defaults()``).
        render_fn: called as ``render_fn(settings, callback=..., stop=..., progress=False[, resume=...])``;
            default :func:`discolib.render` (imported when the first render starts).
    """

    def __init__(self, settings: Settings | None = None, *, render_fn: RenderFn | None = None) -> None:
        self._settings = settings if settings is not None else Settings.defaults()
        self._render_fn = render_fn
        self._pushing = False  # set while Settings values are written into widgets: no write-back
        self._thread: threading.Thread | None = None
        self._stop_event: threading.Event | None = None
        self.last_result: RenderResult | None = None
        self.last_error: BaseException | None = None
        self.run_dir: Path | None = None

        # ---------------------------------------------------------------- settings editor, from the schema
        self.controls: dict[str, FieldControl] = {}
        pages: list[widgets.Widget] = []
        for group, cls in GROUPS.items():
            rows: list[widgets.Widget] = []
            doc = (cls.__doc__ or "").strip().splitlines()
            if doc:
                rows.append(widgets.HTML(f"<i>{html.escape(doc[0])}</i>"))
            for name in iter_fields(group):
                control = FieldControl(name)
                control.input.observe(functools.partial(self._on_edit, control), names="value")
                if control.plot_toggle is not None:
                    control.plot_toggle.observe(functools.partial(self._on_plot_toggle, control), names="value")
                self.controls[name] = control
                rows.append(control.box)
            pages.append(widgets.VBox(rows))
        self.tabs = widgets.Tab(children=pages, titles=[g.capitalize() for g in GROUPS])
        self.validity = widgets.HTML("")

        # ---------------------------------------------------------------- load / save
        self.path = widgets.Text(
            value="",
            description="settings file",
            placeholder="settings.json",
            tooltip="Path of a settings JSON file to load or save",
            layout=widgets.Layout(width="480px"),
            style={"description_width": "100px"},
        )
        self.load_button = widgets.Button(description="Load", icon="folder-open", tooltip="Load the settings file")
        self.save_button = widgets.Button(description="Save", icon="save", tooltip="Validate and save to the file")
        self.file_message = widgets.HTML("")
        self.load_button.on_click(self._on_load_click)
        self.save_button.on_click(self._on_save_click)

        # ---------------------------------------------------------------- render
        self.render_button = widgets.Button(description="Render", button_style="success", icon="play")
        self.resume_button = widgets.Button(
            description="Resume", icon="forward", disabled=True, tooltip="Continue the last stopped run"
        )
        self.stop_button = widgets.Button(
            description="Stop", button_style="danger", icon="stop", disabled=True, tooltip="Stop after this step"
        )
        self.force = widgets.Checkbox(
            value=False,
            description="start anyway",
            indent=False,
            layout=widgets.Layout(width="auto"),
            tooltip="Render even when the run is estimated to need more memory or time than this CPU has (--force)",
        )
        self.render_button.on_click(lambda _b: self._clicked(self.render))
        self.resume_button.on_click(lambda _b: self._clicked(lambda: self.render(resume=self.run_dir)))
        self.stop_button.on_click(lambda _b: self._clicked(self.stop))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps")
        self.frame_label = widgets.Label("")
        self.status = widgets.HTML("")
        self.error_area = widgets.HTML("")
        # Hidden until the first preview arrives (an empty Image shows a broken-image icon).
        self.preview = widgets.Image(format="png", layout=widgets.Layout(max_width="512px", display="none"))
        self.preview.observe(lambda _change: setattr(self.preview.layout, "display", None), names="value")

        self.widget = widgets.VBox(
            [
                self.tabs,
                self.validity,
                widgets.HBox([self.path, self.load_button, self.save_button]),
                self.file_message,
                widgets.HBox(
                    [self.render_button, self.resume_button, self.stop_button, self.force, self.progress, self.frame_label]
                ),
                self.status,
                self.error_area,
                self.preview,
            ]
        )
        self._push_all()

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
            else:
                control.show_ok()
        self._update_validity()

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

    def _on_edit(self, control: FieldControl, _change: dict[str, Any]) -> None:
        if self._pushing:
            return
        ok = self._guarded(control, lambda: self._apply(control))
        if ok and control.plot_toggle is not None and not control.plot_toggle.value:
            control.plot_toggle.value = True  # editing a keyframe string opens its plot (the toggle draws it)

    def _on_plot_toggle(self, control: FieldControl, _change: dict[str, Any]) -> None:
        self._guarded(control, lambda: control.update_plot(self._settings))

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
        if invalid:
            self.validity.value = _html(f"⚠ invalid input in {', '.join(invalid)} (not applied)", "#a15c00")
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # duplicate-key warnings are already shown beside their field
                self._settings.validate()
        except INPUT_ERRORS as exc:
            self.validity.value = _html(f"⚠ {describe_error(exc)}", "#a15c00")
            return
        self.validity.value = _html("✓ settings valid", "#2e7d32")

    # ------------------------------------------------------------------------------------- load / save
    def load(self, path: str | Path) -> Settings:
        """Load a settings file (``Settings.load``) into the panel; raises ``SettingsError`` on a bad file.

        ``Settings.load`` refuses a path that is not a regular file of at most 4 MiB before opening it: a FIFO would
        block the kernel (and so the whole notebook) until something writes to it.
        """
        loaded = Settings.load(path)
        self.settings = loaded
        self.path.value = str(path)
        return loaded

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
            self.file_message.value = _html("enter a settings file path first", "#c62828")
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
            self.file_message.value = _html(f"load failed: {describe_error(exc)}", "#c62828")
            return
        self.file_message.value = _html(f"loaded {path}", "#2e7d32")

    def _on_save_click(self, _button: widgets.Button | None = None) -> None:
        path = self._file_path()
        if path is None:
            return
        try:
            written = self.save(path)
        except Exception as exc:  # as for Load: shown beside the buttons, never raised into ipywidgets
            if not isinstance(exc, (*INPUT_ERRORS, OSError)):
                _log.exception("discolib_widgets: unexpected error while saving %s", path)
            self.file_message.value = _html(f"save failed: {describe_error(exc)}", "#c62828")
            return
        self.file_message.value = _html(f"saved {written}", "#2e7d32")

    # ------------------------------------------------------------------------------------- render
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def render(self, *, resume: str | Path | None = None) -> threading.Thread | None:
        """Start ``render_fn`` on a background thread with a copy of the Settings; returns the thread.

        Returns None (and says why in the error area) when invalid input is pending in a widget. Errors of
        the render itself are shown in the error area and kept in ``last_error``; the result is ``last_result``.
        """
        if self.running:
            raise RuntimeError("a render is already running; stop it or wait for it first")
        invalid = self.errors
        if invalid:
            self.error_area.value = _html(f"fix the invalid fields first: {', '.join(invalid)}", "#c62828")
            return None
        self.error_area.value = ""
        self.status.value = _html("starting…")
        self.last_result = None
        self.last_error = None
        self.progress.value = 0
        self.frame_label.value = ""
        stop = threading.Event()
        self._stop_event = stop
        self.render_button.disabled = True
        self.resume_button.disabled = True
        self.stop_button.disabled = False
        # A copy: edits made while it runs apply to the next render, not this one.
        snapshot = self._settings.copy()
        self._thread = threading.Thread(
            target=self._run, args=(snapshot, stop, resume), name="discolib-render", daemon=True
        )
        self._thread.start()
        return self._thread

    def _clicked(self, action: Callable[[], Any]) -> None:
        """A button's action; what it raises is shown in the error area (ipywidgets would only log it)."""
        try:
            action()
        except Exception as exc:
            if not isinstance(exc, INPUT_ERRORS):
                _log.exception("discolib_widgets: button action failed")
            self.error_area.value = _html(describe_error(exc), "#c62828")

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

    def _run(self, settings: Settings, stop: threading.Event, resume: str | Path | None) -> None:
        try:
            render_fn = self._render_fn or _default_render_fn()
            kwargs: dict[str, Any] = {"callback": self._on_event, "stop": stop, "progress": False}
            if resume is not None:
                kwargs["resume"] = resume
            if self.force.value:
                kwargs["force"] = True
            result = render_fn(settings, **kwargs)
            self.last_result = result
            self.run_dir = Path(result.run_dir)
            if result.status == "stopped":
                self.status.value = _html(
                    f"stopped after {len(result.frames)} frame(s); the run is resumable: {result.run_dir}"
                )
            else:
                self.status.value = _html(f"done: {len(result.frames)} frame(s) in {result.run_dir}", "#2e7d32")
        except Exception as exc:  # shown in the panel: an exception must not vanish with the thread
            self.last_error = exc
            self._show_error(exc)
            self.status.value = _html("render failed")
        finally:
            self.render_button.disabled = False
            self.stop_button.disabled = True
            unfinished = self.last_result is None or self.last_result.status != "done"
            self.resume_button.disabled = not (self.run_dir is not None and unfinished)

    def _show_error(self, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        hint = " (tick 'start anyway' to render it all the same)" if isinstance(exc, ResourceLimitError) else ""
        self.error_area.value = (
            _html(f"{type(exc).__name__}: {exc}{hint}", "#c62828")
            + f"<details><summary>traceback</summary><pre>{html.escape(tb)}</pre></details>"
        )

    def _on_event(self, event: RenderEvent) -> None:
        """The render callback (runs on the render thread); a failure here is shown, not raised into render."""
        try:
            if event.kind == "start" and event.path is not None:
                self.run_dir = Path(event.path)
                self.status.value = _html(f"rendering into {event.path}")
            if event.total_frames:
                # "done"/"stopped" carry the number of finished frames; the others the index of a frame.
                shown = event.frame if event.kind in ("done", "stopped") else event.frame + 1
                self.frame_label.value = f"frame {shown}/{event.total_frames}"
            if event.kind == "step" and event.total_steps:
                with self.progress.hold_sync():
                    self.progress.max = max(event.total_steps, 1)
                    self.progress.value = min(event.step, self.progress.max)
            if event.preview is not None:
                self.preview.value = encode_png(event.preview)
            elif event.kind == "frame" and event.path is not None and Path(event.path).suffix.lower() == ".png":
                self.preview.value = Path(event.path).read_bytes()  # frames are PNG files already
            if event.kind == "error":
                self.error_area.value = _html(event.message or "render error", "#c62828")
        except Exception as exc:
            self._show_error(exc)

    # ------------------------------------------------------------------------------------- display
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        display(self.widget)


def show_panel(settings: Settings | None = None, **kwargs: Any) -> SettingsPanel:
    """Make a :class:`SettingsPanel` (``kwargs`` go to it, e.g. ``render_fn``), display it and return it."""
    panel = SettingsPanel(settings, **kwargs)
    display(panel)
    return panel
