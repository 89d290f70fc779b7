"""A sweep in a notebook: the gallery of its variants (:class:`SweepGallery`) and the sweep notebook's steps.

The gallery reads a sweep folder only through the library (:func:`discolib.run.sweep.read_sweep`,
:func:`~discolib.run.sweep.variant_frame`): one thumbnail per variant (its last frame, or a placeholder with its
status while it is pending or when it failed) labelled by its overrides; a click shows the variant's overrides,
status, error, settings (collapsed) and its video or last frame; a dropdown per axis hides the tiles that do not
match; :meth:`SweepGallery.refresh` reads ``sweep.json`` again (a sweep running on Ray or in another process).

The notebook's helpers (``sweep_setup``, ``show_sweep_result``, ``sweep_summary``) are the sweep notebook's cells,
as :mod:`discolib_widgets.notebook`'s are the render notebooks'.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from IPython.display import Image, display

from discolib.errors import InputError, one_line
from discolib.run.runs import RunFolder
from discolib.run.sweep import SweepResult, VariantState, read_sweep, variant_frame
from discolib_widgets.fields import describe_error
from discolib_widgets.notebook import _colab_drive, gpu_report
from discolib_widgets.view import _video_widget

__all__ = [
    "ALL",
    "DEMO_SWEEP",
    "SweepGallery",
    "SweepIncomplete",
    "demo_sweep_path",
    "show_sweep",
    "show_sweep_result",
    "status_text",
    "sweep_progress",
    "sweep_setup",
    "sweep_summary",
]

_log = logging.getLogger("discolib_widgets")

#: A filter dropdown's value that keeps every tile (the others are an index into the axis' values).
ALL = -1
#: Thumbnails are made at most this many pixels wide and high: a 256-variant sweep of 512² frames would otherwise
#: put ~100 MB of PNGs into the notebook's widget state.
THUMB_PX = 160
#: The shipped demo sweep (``discolib/data``), used when the notebook's ``sweep_file`` is empty.
DEMO_SWEEP = "demo_sweep.json"
#: Characters of a value shown in a filter dropdown (a prompt dict can be long).
OPTION_CHARS = 40

_OK = "#2e7d32"
_WARN = "#a15c00"
_ERR = "#c62828"
_STATUS_COLOR = {"done": _OK, "failed": _ERR, "interrupted": _WARN, "running": _WARN, "pending": "#666"}
_STATUS_MARK = {"done": "✓", "failed": "✗", "interrupted": "‖", "running": "…", "pending": "·"}


def _html(text: str, color: str | None = None) -> str:
    body = html.escape(text)
    return f'<span style="color:{color};white-space:pre-wrap">{body}</span>' if color else body


def _option_text(value: Any) -> str:
    """A value as a dropdown shows it: a string as it is, anything else as compact JSON; one line, cut short."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = " ".join(text.split())
    return text if len(text) <= OPTION_CHARS else text[: OPTION_CHARS - 1] + "…"


def _canonical(value: Any) -> str:
    # Axis values are JSON values (a dict of prompts, a list): compared by their canonical JSON, not by identity.
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def status_text(state: VariantState) -> str:
    """``"✓ done 3/3"``, ``"… running 1/3"``, ``"✗ failed"``: the variant's status as one short line."""
    frames = f" {state.frames_done}/{state.frames_total}" if state.frames_total else ""
    return f"{_STATUS_MARK.get(state.status, '?')} {state.status}{frames}"


@dataclass
class _Tile:
    """One variant's widgets: the thumbnail box (image or placeholder), its status line and its button."""

    box: widgets.VBox
    picture: widgets.Box
    status: widgets.HTML
    button: widgets.Button
    shown_frame: tuple[str, int] | None = None  # (path, mtime_ns) of the frame in the thumbnail: redrawn on change


class SweepGallery:
    """The variants of a sweep folder as thumbnails, with a detail view, a filter per axis and :meth:`refresh`.

    ``widget`` is what the notebook displays. Every callback (a click, a filter, Refresh) shows what it raises in
    :attr:`error` (beside the controls) and never raises into ipywidgets, which would only log it.
    """

    def __init__(self, sweep_dir: str | Path, *, thumb_px: int = THUMB_PX) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.thumb_px = thumb_px
        self.header: dict[str, Any] = {}
        self.states: list[VariantState] = []
        self.selected: str | None = None
        self.tiles: dict[str, _Tile] = {}
        self.filters: dict[str, widgets.Dropdown] = {}
        self._axes: dict[str, list[Any]] = {}
        self._thumbs: dict[tuple[str, int], bytes] = {}

        self.summary = widgets.HTML()
        self.error = widgets.HTML()
        self.refresh_button = widgets.Button(
            description="Refresh", tooltip="read sweep.json again", layout=widgets.Layout(width="auto")
        )
        self.refresh_button.on_click(lambda _b: self._guarded(self.refresh))
        self.filter_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.grid = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.detail_title = widgets.HTML()
        self.detail_overrides = widgets.HTML()
        self.detail_status = widgets.HTML()
        self.settings_text = widgets.Textarea(
            disabled=True, layout=widgets.Layout(width="100%", height="320px")
        )
        self.settings_box = widgets.Accordion(children=[self.settings_text], selected_index=None)
        self.settings_box.set_title(0, "settings")
        self.media = widgets.Box()
        self.detail = widgets.VBox(
            [self.detail_title, self.detail_overrides, self.detail_status, self.settings_box, self.media],
            layout=widgets.Layout(display="none", border="1px solid #ddd", padding="4px", margin="6px 0 0 0"),
        )
        controls = widgets.HBox([self.refresh_button, self.summary], layout=widgets.Layout(align_items="center"))
        self.widget = widgets.VBox([controls, self.error, self.filter_box, self.grid, self.detail])
        self._guarded(self.refresh)

    # ------------------------------------------------------------------------------------------ reading
    def refresh(self) -> None:
        """Read ``sweep.json`` again and update the tiles, the filters and the shown variant.

        A folder that cannot be read (no ``sweep.json`` yet, a broken one) keeps what was shown and says why in
        :attr:`error` on one line; the next refresh that reads it clears that.
        """
        try:
            header, states = read_sweep(self.sweep_dir)
        except (InputError, OSError) as exc:
            self.error.value = _html(f"cannot read the sweep: {one_line(exc, lines='join')}", _ERR)
            return
        self.error.value = ""
        self.header, self.states = header, states
        axes = header.get("axes") or {}
        self._axes = {str(name): list(values) for name, values in axes.items()} if isinstance(axes, dict) else {}
        self._update_filters()
        self._update_tiles()
        self._apply_filters()
        counts: dict[str, int] = {}
        for state in states:
            counts[state.status] = counts.get(state.status, 0) + 1
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        self.summary.value = _html(f"{len(states)} variants: {parts}" if states else "no variants")
        if self.selected is not None:
            self.select(self.selected)

    def state(self, variant_id: str) -> VariantState:
        """The variant's state as last read; KeyError for an id the sweep does not have."""
        for state in self.states:
            if state.id == variant_id:
                return state
        raise KeyError(f"no variant {variant_id!r} in {self.sweep_dir}")

    # ------------------------------------------------------------------------------------------ tiles
    def _update_tiles(self) -> None:
        ids = [s.id for s in self.states]
        for gone in set(self.tiles) - set(ids):
            self.tiles.pop(gone).box.close()
        for state in self.states:
            tile = self.tiles.get(state.id) or self._new_tile(state)
            self.tiles[state.id] = tile
            self._draw_tile(tile, state)
        self.grid.children = [self.tiles[i].box for i in ids]
        # Only the thumbnails shown now are kept: a running sweep's frames change at every refresh.
        shown = {t.shown_frame for t in self.tiles.values()}
        self._thumbs = {key: png for key, png in self._thumbs.items() if key in shown}

    def _new_tile(self, state: VariantState) -> _Tile:
        px = f"{self.thumb_px}px"
        centred = {"align_items": "center", "justify_content": "center"}
        picture = widgets.Box(layout=widgets.Layout(width=px, height=px, **centred))
        status = widgets.HTML(layout=widgets.Layout(width=px))
        button = widgets.Button(description=state.label, tooltip=state.label, layout=widgets.Layout(width=px))
        button.on_click(lambda _b, vid=state.id: self._guarded(lambda: self.select(vid)))
        box = widgets.VBox([picture, button, status], layout=widgets.Layout(margin="3px", width=px))
        return _Tile(box=box, picture=picture, status=status, button=button)

    def _draw_tile(self, tile: _Tile, state: VariantState) -> None:
        tile.button.description = tile.button.tooltip = state.label
        style = "font-family:monospace;font-size:11px"
        color = _STATUS_COLOR.get(state.status, "#666")
        tile.status.value = f"<span style='{style};color:{color}'>{html.escape(status_text(state))}</span>"
        frame = variant_frame(self.sweep_dir, state)
        key = (str(frame), frame.stat().st_mtime_ns) if frame is not None and frame.is_file() else None
        if key is not None and key == tile.shown_frame:
            return
        tile.shown_frame = key
        if key is None:  # nothing rendered yet (pending, or failed before its first frame): the status instead
            text = status_text(state) + (f"\n{one_line(state.error, 200)}" if state.error else "")
            placeholder = widgets.HTML(
                f"<div style='{style};color:{color};text-align:center;white-space:pre-wrap;padding:4px'>"
                f"{html.escape(text)}</div>",
                layout=widgets.Layout(width="100%", height="100%", border="1px dashed #bbb"),
            )
            tile.picture.children = [placeholder]
        else:
            tile.picture.children = [widgets.Image(value=self._thumbnail(key), format="png")]

    def _thumbnail(self, key: tuple[str, int]) -> bytes:
        """The frame as a PNG at most :attr:`thumb_px` on a side (cached per file and modification time)."""
        if key not in self._thumbs:
            from PIL import Image as PILImage

            with PILImage.open(key[0]) as img:
                img.thumbnail((self.thumb_px, self.thumb_px))
                buf = io.BytesIO()
                img.convert("RGB").save(buf, format="PNG")
            self._thumbs[key] = buf.getvalue()
        return self._thumbs[key]

    @property
    def shown_ids(self) -> list[str]:
        """The ids of the tiles the filters show, in the sweep's order."""
        return [s.id for s in self.states if self.tiles[s.id].box.layout.display != "none"]

    # ------------------------------------------------------------------------------------------ filters
    def _update_filters(self) -> None:
        """A dropdown per axis ("all", or one of its values); kept (with its choice) while the axes stay the same."""
        wanted = {name: [(_option_text(v), i) for i, v in enumerate(values)] for name, values in self._axes.items()}
        current = {name: list(dd.options) for name, dd in self.filters.items()}
        if current == {name: [("all", ALL), *opts] for name, opts in wanted.items()}:
            return
        for dd in self.filters.values():
            dd.close()
        self.filters = {}
        for name, opts in wanted.items():
            short = "seed" if name == "run.seed" else name.split(".")[-1]
            dd = widgets.Dropdown(
                options=[("all", ALL), *opts], value=ALL, description=short,
                style={"description_width": "initial"}, layout=widgets.Layout(width="auto", margin="0 8px 0 0"),
            )  # fmt: skip
            dd.observe(lambda _c: self._guarded(self._apply_filters), names="value")
            self.filters[name] = dd
        self.filter_box.children = list(self.filters.values())

    def set_filter(self, axis: str, value: Any) -> None:
        """Show only the variants whose ``axis`` (its dotted name) has ``value``; :data:`ALL` (or None) shows all.

        Raises KeyError for an axis the sweep does not have and ValueError for a value the axis does not have.
        """
        values = self._axes[axis]
        if value is None or value == ALL:
            self.filters[axis].value = ALL
            return
        canon = [_canonical(v) for v in values]
        if _canonical(value) not in canon:
            raise ValueError(f"{axis}: {value!r} is not one of the axis' values")
        self.filters[axis].value = canon.index(_canonical(value))

    def _matches(self, state: VariantState) -> bool:
        for axis, dd in self.filters.items():
            if dd.value == ALL:
                continue
            want = _canonical(self._axes[axis][dd.value])
            if axis not in state.overrides or _canonical(state.overrides[axis]) != want:
                return False
        return True

    def _apply_filters(self) -> None:
        for state in self.states:
            self.tiles[state.id].box.layout.display = None if self._matches(state) else "none"

    # ------------------------------------------------------------------------------------------ detail
    def select(self, variant_id: str) -> None:
        """Show the variant's overrides, status, error, settings (collapsed) and its video or last frame."""
        state = self.state(variant_id)
        self.selected = variant_id
        for vid, tile in self.tiles.items():
            tile.button.button_style = "info" if vid == variant_id else ""
        self.detail.layout.display = None
        self.detail_title.value = f"<b>{html.escape(state.id)}</b> {html.escape(state.label)}"
        rows = "".join(
            f"<tr><td style='padding-right:8px'><code>{html.escape(name)}</code></td>"
            f"<td><code>{html.escape(json.dumps(value, ensure_ascii=False))}</code></td></tr>"
            for name, value in state.overrides.items()
        )
        self.detail_overrides.value = f"<table>{rows}</table>" if rows else "<i>no overrides (the base settings)</i>"
        where = f" in {state.run_dir}" if state.run_dir else ""
        status = _html(status_text(state) + where, _STATUS_COLOR.get(state.status))
        if state.error:
            status += "<br>" + _html(one_line(state.error, 600, lines="join"), _ERR)
        self.detail_status.value = status
        self.settings_text.value = self._settings_json(state)
        self.media.children = [self._media(state)]

    def _run_dir(self, state: VariantState) -> Path | None:
        return self.sweep_dir / state.run_dir if state.run_dir else None

    def _settings_json(self, state: VariantState) -> str:
        run_dir = self._run_dir(state)
        if run_dir is None or not run_dir.is_dir():
            return "(not started: its run folder, with settings.json, is made when the variant starts)"
        try:
            return RunFolder.open(run_dir).settings_path.read_text(encoding="utf-8")
        except (InputError, OSError) as exc:
            return f"cannot read its settings: {one_line(exc)}"

    def _media(self, state: VariantState) -> widgets.Widget:
        """The variant's video (embedded when small enough, else a line naming it), else its last frame."""
        if state.video:
            video = Path(state.video)
            video = video if video.is_absolute() else self.sweep_dir / video
            if video.is_file():
                return _video_widget(video)
        frame = variant_frame(self.sweep_dir, state)
        if frame is not None and frame.is_file():
            return widgets.Image(value=frame.read_bytes(), format="png", layout=widgets.Layout(max_width="512px"))
        return widgets.HTML(_html("no frame yet", "#666"))

    # ------------------------------------------------------------------------------------------ callbacks
    def _guarded(self, action: Callable[[], Any]) -> None:
        """A callback's work; what it raises is shown in :attr:`error`, never raised into ipywidgets (which would
        only log it, leaving the user with no message)."""
        try:
            action()
        except Exception as exc:
            if not isinstance(exc, (InputError, OSError, KeyError, ValueError)):
                _log.exception("discolib_widgets: sweep gallery callback failed")
            self.error.value = _html(describe_error(exc), _ERR)

    def _ipython_display_(self) -> None:
        display(self.widget)


def show_sweep(sweep_dir: str | Path) -> SweepGallery:
    """Display the gallery of the sweep folder ``sweep_dir`` and return it (``.refresh()`` reads it again)."""
    gallery = SweepGallery(sweep_dir)
    display(gallery.widget)
    return gallery


# ----------------------------------------------------------------------------------------------- the notebook
class SweepIncomplete(RuntimeError):
    """``sweep.json`` does not say that every variant is done."""


def demo_sweep_path() -> Path:
    """The shipped demo sweep (4 tiny variants, offline, seconds on a CPU): ``discolib/data/demo_sweep.json``."""
    path = Path(str(resources.files("discolib").joinpath("data", DEMO_SWEEP)))
    if not path.is_file():  # only a zipped install lacks it on disk
        raise FileNotFoundError(f"the demo sweep {DEMO_SWEEP} is not in the installed discolib ({path})")
    return path


def sweep_setup(
    sweep_file: str,
    output_root: str,
    *,
    ray_address: str = "",
    gpus_per_run: float = 0,
    max_variants: int = 0,
    use_drive: bool = False,
) -> tuple[Path, Path, dict[str, Any]]:
    """The sweep notebook's parameters after the environment and Colab; prints the GPU, the sweep and its folder.

    ``sweep_file`` empty means the shipped demo sweep (:func:`demo_sweep_path`). ``DISCOLIB_OUTPUT_ROOT``, when
    set, replaces ``output_root`` (nbval, CI). On Colab the custom widget manager is turned on (the gallery needs
    it) and, with ``use_drive``, ``output_root`` moves under Google Drive. The sweep folder is
    ``<output_root>/<sweep file name without suffix>``: running the notebook again resumes it there.

    Returns:
        ``(sweep file, sweep folder, options)``: ``options`` are :func:`discolib.sweep`'s keywords from the form,
        where an empty ``ray_address`` or a 0 means the default (``None``).
    """
    path = Path(sweep_file.strip()) if sweep_file.strip() else demo_sweep_path()
    output_root = _colab_drive(os.environ.get("DISCOLIB_OUTPUT_ROOT", output_root), use_drive)
    sweep_dir = Path(output_root) / (path.stem or "sweep")
    options: dict[str, Any] = {
        "ray_address": ray_address.strip() or None,
        "gpus_per_run": gpus_per_run or None,
        "max_variants": max_variants or None,
    }
    print(gpu_report())
    print(f"sweep {path}" + (" (the demo sweep)" if not sweep_file.strip() else ""))
    print("sweep folder", os.path.abspath(sweep_dir))
    return path, sweep_dir, options


def sweep_progress() -> Callable[[VariantState], None]:
    """A ``callback(state)`` for :func:`discolib.sweep` that keeps one output, a line per variant seen so far
    (``"v001-603ea820 ✓ done 3/3 seed=43 · ..."``), up to date as variants start and end.

    Plain text updated through a display id, not progress-bar widgets: a papermill output notebook keeps the final
    lines, never a frozen bar.
    """
    handle = display({"text/plain": "starting"}, raw=True, display_id=True)
    lines: dict[int, str] = {}

    def update(state: VariantState) -> None:
        error = f": {one_line(state.error, 200)}" if state.error else ""
        lines[state.index] = f"{state.id} {status_text(state)} {state.label}{error}"
        text = "\n".join(lines[i] for i in sorted(lines))
        if handle is None:  # outside IPython display() returns no handle
            print(lines[state.index])
        else:
            handle.update({"text/plain": text}, raw=True)

    return update


def show_sweep_result(result: SweepResult, *, width: int = 768) -> None:
    """Print one line per variant (status, label, error) and display the contact sheet."""
    for state in result.variants:
        error = f": {one_line(state.error, 300)}" if state.error else ""
        print(f"{state.id} {status_text(state)} {state.label}{error}")
    if result.contact_sheet is not None and Path(result.contact_sheet).is_file():
        display(Image(filename=str(result.contact_sheet), width=width))
        print(f"contact sheet: {result.contact_sheet}")
    else:
        print("no contact sheet (no variant has a frame yet)")


def sweep_summary(sweep_dir: str | Path, *, require_done: bool = False) -> str:
    """``"done 4/4"`` from ``sweep.json``: the variants done out of all (read from disk: what a re-run would find).

    With ``require_done`` anything but every variant done raises :class:`SweepIncomplete` naming the others: the
    sweep notebook's last cell, which is how ``pytest --nbval-lax`` checks it.
    """
    _header, states = read_sweep(sweep_dir)
    done = [s for s in states if s.status == "done"]
    summary = f"done {len(done)}/{len(states)}"
    if require_done and (not states or len(done) != len(states)):
        others = ", ".join(
            f"{s.id} {s.status}" + (f" ({one_line(s.error, 200)})" if s.error else "") for s in states if s.status != "done"
        )
        raise SweepIncomplete(f"{sweep_dir}: {summary} variants done; " + (others or "the sweep has no variants"))
    return summary
