"""The sweep gallery (discolib_widgets.sweep) and the sweep notebook's helpers, without a kernel or a render.

The sweep folder is the shipped demo sweep's (4 variants: 2 prompts x 2 seeds) as the library writes it
(``write_sweep``, ``variant_on_disk``, ordinary run folders), with frames written here instead of rendered: two
variants done, one failed before its first frame, one pending.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import ipywidgets as widgets
import pytest
from PIL import Image

from discolib.config.sweep import SweepSpec, load_sweep
from discolib.run.runs import RunFolder, RunRecord
from discolib.run.sweep import (
    SWEEP_FILE,
    VariantState,
    read_sweep,
    variant_on_disk,
    variant_output,
    write_sweep,
)
from discolib_widgets.sweep import (
    ALL,
    THUMB_PX,
    SweepGallery,
    SweepIncomplete,
    demo_sweep_path,
    show_sweep,
    show_sweep_result,
    sweep_setup,
    sweep_summary,
)

SIZE = 200  # frames larger than a thumbnail, so the thumbnail is made smaller
FRAMES = 3


def write_run(sweep_dir: Path, spec: SweepSpec, index: int, frames: int, status: str = "done") -> RunFolder:
    """A variant's run folder as render makes it: settings.json, run.json, ``frames`` PNGs of one colour each."""
    variant = spec.variants[index]
    root, batch = variant_output(sweep_dir, variant.id)
    settings = spec.settings_for(variant)
    settings.run.batch_name = batch
    folder = RunFolder.create(root, batch, settings.to_json(), threads=1)
    for i in range(frames):
        Image.new("RGB", (SIZE, SIZE), (40 * index, 60 * i, 200)).save(folder.frame_path(i))
    folder.write_record(RunRecord(status=status, frames_total=FRAMES, frames_done=frames))
    return folder


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, SweepSpec, list[VariantState]]:
    spec = load_sweep(demo_sweep_path())
    sweep_dir = tmp_path / "sweep"
    write_run(sweep_dir, spec, 0, FRAMES)
    write_run(sweep_dir, spec, 1, FRAMES)
    states = [variant_on_disk(sweep_dir, v) for v in spec.variants]
    states[2].status, states[2].error = "failed", "SettingsError: latent.cfg_scale: expected a number"
    write_sweep(sweep_dir, spec, states)
    return sweep_dir, spec, states


def ids(spec: SweepSpec) -> list[str]:
    return [v.id for v in spec.variants]


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def test_tiles_are_labelled_thumbnails_or_status_placeholders(demo: tuple[Path, SweepSpec, list[VariantState]]) -> None:
    sweep_dir, spec, _states = demo
    gallery = SweepGallery(sweep_dir)
    assert gallery.error.value == ""
    assert list(gallery.tiles) == ids(spec) == gallery.shown_ids
    assert [t.box for t in gallery.tiles.values()] == list(gallery.grid.children)
    for variant, tile in zip(spec.variants, gallery.tiles.values(), strict=True):
        assert tile.button.description == tile.button.tooltip == variant.label
    done = [gallery.tiles[i] for i in ids(spec)[:2]]
    for tile in done:
        (image,) = tile.picture.children
        assert isinstance(image, widgets.Image) and png_size(image.value) == (THUMB_PX, THUMB_PX)
        assert "done 3/3" in tile.status.value
    # The thumbnail is the variant's last frame, made smaller (frames differ by variant and by frame index).
    with Image.open(io.BytesIO(done[1].picture.children[0].value)) as thumb:
        assert thumb.convert("RGB").getpixel((5, 5)) == (40, 120, 200)
    failed, pending = (gallery.tiles[i] for i in ids(spec)[2:])
    (placeholder,) = failed.picture.children
    assert isinstance(placeholder, widgets.HTML) and "failed" in placeholder.value
    assert "expected a number" in placeholder.value
    (placeholder,) = pending.picture.children
    assert isinstance(placeholder, widgets.HTML) and "pending" in placeholder.value
    assert gallery.summary.value == "4 variants: 2 done, 1 failed, 1 pending"
    assert gallery.detail.layout.display == "none"  # nothing chosen yet


def test_click_shows_the_variant(demo: tuple[Path, SweepSpec, list[VariantState]]) -> None:
    sweep_dir, spec, states = demo
    gallery = SweepGallery(sweep_dir)
    gallery.tiles[spec.variants[1].id].button.click()
    assert gallery.selected == spec.variants[1].id and gallery.detail.layout.display is None
    assert gallery.tiles[spec.variants[1].id].button.button_style == "info"
    assert gallery.tiles[spec.variants[0].id].button.button_style == ""
    overrides = gallery.detail_overrides.value
    assert "<code>run.seed</code>" in overrides and "<code>43</code>" in overrides
    assert "prompts.text_prompts" in overrides and "a lighthouse in a stormy sea" in overrides
    assert "done 3/3" in gallery.detail_status.value and states[1].run_dir in gallery.detail_status.value
    # Its full settings, collapsed; they are the run's settings.json (the variant's seed in them).
    assert gallery.settings_box.selected_index is None
    settings = json.loads(gallery.settings_text.value)
    assert settings["run"]["seed"] == 43
    assert gallery.settings_text.value == (sweep_dir / states[1].run_dir / "settings.json").read_text(encoding="utf-8")
    # No video (the demo makes none): the last frame, at full size.
    (media,) = gallery.media.children
    last = sweep_dir / states[1].run_dir / "frames" / f"{FRAMES - 1:06d}.png"
    assert isinstance(media, widgets.Image) and media.value == last.read_bytes()

    gallery.tiles[spec.variants[2].id].button.click()  # failed before its first frame
    assert "failed" in gallery.detail_status.value and "expected a number" in gallery.detail_status.value
    assert gallery.settings_text.value.startswith("(not started")
    (media,) = gallery.media.children
    assert isinstance(media, widgets.HTML) and "no frame yet" in media.value
    assert gallery.error.value == ""


def test_a_variant_video_is_shown(
    demo: tuple[Path, SweepSpec, list[VariantState]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variant with a video shows it (a GIF here: what render writes with output.video_format gif)."""
    import discolib_widgets.sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "_video_widget", lambda path: widgets.HTML(f"video {path.name}"))
    sweep_dir, spec, states = demo
    video = sweep_dir / states[0].run_dir / "video.gif"
    Image.new("RGB", (8, 8)).save(video)
    states[0].video = f"{states[0].run_dir}/video.gif"
    write_sweep(sweep_dir, spec, states)
    gallery = SweepGallery(sweep_dir)
    gallery.select(spec.variants[0].id)
    (media,) = gallery.media.children
    assert media.value == "video video.gif"


def test_filters_hide_tiles(demo: tuple[Path, SweepSpec, list[VariantState]]) -> None:
    sweep_dir, spec, _states = demo
    gallery = SweepGallery(sweep_dir)
    assert list(gallery.filters) == ["prompts.text_prompts", "run.seed"]
    seed = gallery.filters["run.seed"]
    assert seed.description == "seed" and seed.options == (("all", ALL), ("42", 0), ("43", 1))
    assert [label for label, _ in gallery.filters["prompts.text_prompts"].options][1].startswith('{"0":"a lighthouse')
    v = ids(spec)
    seed.value = 1  # the dropdown, as a user picks it
    assert gallery.shown_ids == [v[1], v[3]]
    assert [gallery.tiles[i].box.layout.display for i in v] == ["none", None, "none", None]
    gallery.set_filter("prompts.text_prompts", {"0": "a castle on a hill --neg blurry"})
    assert gallery.shown_ids == [v[3]]
    gallery.set_filter("run.seed", ALL)
    assert gallery.shown_ids == [v[2], v[3]]
    with pytest.raises(ValueError, match="not one of the axis' values"):
        gallery.set_filter("run.seed", 7)
    gallery.set_filter("prompts.text_prompts", None)
    assert gallery.shown_ids == v
    gallery.refresh()  # the same axes: the filters stay (with their choice)
    assert gallery.filters["run.seed"] is seed


def test_refresh_picks_up_a_changed_status(demo: tuple[Path, SweepSpec, list[VariantState]]) -> None:
    """Another process (a sweep on Ray) finishes the pending variant; Refresh shows its frame and status."""
    sweep_dir, spec, states = demo
    gallery = SweepGallery(sweep_dir)
    pending = spec.variants[3]
    gallery.select(pending.id)
    assert "pending" in gallery.detail_status.value
    old_box = gallery.tiles[pending.id].box
    write_run(sweep_dir, spec, 3, FRAMES)
    states[3] = variant_on_disk(sweep_dir, pending)
    write_sweep(sweep_dir, spec, states)
    gallery.refresh_button.click()
    tile = gallery.tiles[pending.id]
    assert tile.box is old_box  # updated in place, not rebuilt
    assert isinstance(tile.picture.children[0], widgets.Image) and "done 3/3" in tile.status.value
    assert "done 3/3" in gallery.detail_status.value  # the shown variant follows
    assert gallery.summary.value == "4 variants: 3 done, 1 failed"
    assert gallery.error.value == ""


def test_an_unreadable_sweep_is_one_line_and_keeps_the_tiles(
    demo: tuple[Path, SweepSpec, list[VariantState]], logged_errors: list[logging.LogRecord]
) -> None:
    sweep_dir, spec, _states = demo
    gallery = SweepGallery(sweep_dir)
    good = (sweep_dir / SWEEP_FILE).read_text(encoding="utf-8")
    (sweep_dir / SWEEP_FILE).write_text('{"version": 1, "variants": [{"id": ', encoding="utf-8")
    gallery.refresh_button.click()  # nothing escapes into ipywidgets
    assert gallery.error.value.startswith('<span style="color:#c62828')
    assert "cannot read the sweep" in gallery.error.value
    assert "\n" not in gallery.error.value and "sweep.json" in gallery.error.value
    assert list(gallery.tiles) == ids(spec)  # what was shown stays
    (sweep_dir / SWEEP_FILE).write_text(good, encoding="utf-8")
    gallery.refresh()
    assert gallery.error.value == ""
    assert logged_errors == []  # a user's broken file is a message, not a logged bug

    empty = SweepGallery(sweep_dir.parent / "no-sweep-here")
    assert "cannot read the sweep" in empty.error.value and empty.tiles == {} and empty.summary.value == ""


def test_a_failing_callback_is_shown_not_raised(
    demo: tuple[Path, SweepSpec, list[VariantState]],
    monkeypatch: pytest.MonkeyPatch,
    logged_errors: list[logging.LogRecord],
) -> None:
    sweep_dir, spec, _states = demo
    gallery = SweepGallery(sweep_dir)

    def broken(_variant_id: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gallery, "select", broken)
    gallery.tiles[spec.variants[0].id].button.click()
    assert "RuntimeError: boom" in gallery.error.value
    assert len(logged_errors) == 1 and "sweep gallery callback failed" in logged_errors[0].getMessage()


def test_show_sweep_displays_the_gallery(
    demo: tuple[Path, SweepSpec, list[VariantState]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import discolib_widgets.sweep as sweep_mod

    shown: list[object] = []
    monkeypatch.setattr(sweep_mod, "display", shown.append)
    gallery = show_sweep(demo[0])
    assert isinstance(gallery, SweepGallery) and shown == [gallery.widget] and len(gallery.tiles) == 4


# ----------------------------------------------------------------------------------------------- notebook helpers
def test_sweep_summary_requires_every_variant_done(demo: tuple[Path, SweepSpec, list[VariantState]]) -> None:
    sweep_dir, spec, states = demo
    assert sweep_summary(sweep_dir) == "done 2/4"
    with pytest.raises(SweepIncomplete, match=rf"done 2/4 variants done; {spec.variants[2].id} failed \(Settings"):
        sweep_summary(sweep_dir, require_done=True)
    for i in (2, 3):
        write_run(sweep_dir, spec, i, FRAMES)
        states[i] = variant_on_disk(sweep_dir, spec.variants[i])
    write_sweep(sweep_dir, spec, states)
    assert sweep_summary(sweep_dir, require_done=True) == "done 4/4"
    assert [s.status for s in read_sweep(sweep_dir)[1]] == ["done"] * 4


def test_sweep_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo sweep when no file is given; DISCOLIB_OUTPUT_ROOT wins over output_root; empty or 0 options are
    discolib.sweep's defaults (None)."""
    monkeypatch.delenv("DISCOLIB_OUTPUT_ROOT", raising=False)
    path, sweep_dir, options = sweep_setup("", str(tmp_path / "out"))
    assert path == demo_sweep_path() and path.is_file() and path.parts[-2:] == ("data", "demo_sweep.json")
    assert sweep_dir == tmp_path / "out" / "demo_sweep"
    assert options == {"ray_address": None, "gpus_per_run": None, "max_variants": None}
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("GPU: ") and out[1] == f"sweep {path} (the demo sweep)"
    assert out[2] == f"sweep folder {sweep_dir}"
    monkeypatch.setenv("DISCOLIB_OUTPUT_ROOT", str(tmp_path / "env"))
    path, sweep_dir, options = sweep_setup(
        " mine.sweep.yaml ", "ignored", ray_address="ray://head:10001", gpus_per_run=0.5, max_variants=1000
    )
    assert path == Path("mine.sweep.yaml") and sweep_dir == tmp_path / "env" / "mine.sweep"  # a.v1 / a.v2 differ
    assert options == {"ray_address": "ray://head:10001", "gpus_per_run": 0.5, "max_variants": 1000}
    assert not (tmp_path / "env").exists()  # the sweep makes its folder, not the setup


def test_show_sweep_result(
    demo: tuple[Path, SweepSpec, list[VariantState]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import discolib_widgets.sweep as sweep_mod
    from discolib.run.sweep import SweepResult, make_contact_sheet

    shown: list[object] = []
    monkeypatch.setattr(sweep_mod, "display", shown.append)
    sweep_dir, spec, states = demo
    sheet = make_contact_sheet(sweep_dir)
    show_sweep_result(SweepResult(sweep_dir, states, sheet))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{spec.variants[0].id} ✓ done 3/3 {spec.variants[0].label}"
    assert lines[2] == f"{spec.variants[2].id} ✗ failed {spec.variants[2].label}: {states[2].error}"
    assert lines[4] == f"contact sheet: {sheet}"
    (image,) = shown
    assert image.data == sheet.read_bytes()
    show_sweep_result(SweepResult(sweep_dir, states, None))
    assert capsys.readouterr().out.splitlines()[-1] == "no contact sheet (no variant has a frame yet)"


def test_sweep_progress_keeps_a_line_per_variant(
    demo: tuple[Path, SweepSpec, list[VariantState]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run cell's callback: one plain-text output updated in place, a line per variant in the sweep's order."""
    import dataclasses

    import discolib_widgets.sweep as sweep_mod
    from discolib_widgets.sweep import sweep_progress

    updates: list[str] = []

    class Handle:
        def update(self, data: dict[str, str], raw: bool) -> None:
            assert raw
            updates.append(data["text/plain"])

    monkeypatch.setattr(sweep_mod, "display", lambda *_a, **_k: Handle())
    _sweep_dir, spec, states = demo
    callback = sweep_progress()
    callback(dataclasses.replace(states[1], status="running"))
    callback(states[1])
    callback(states[0])
    callback(states[2])
    v = spec.variants
    assert updates[0] == f"{v[1].id} … running 3/3 {v[1].label}"
    assert updates[-1].splitlines() == [
        f"{v[0].id} ✓ done 3/3 {v[0].label}",
        f"{v[1].id} ✓ done 3/3 {v[1].label}",
        f"{v[2].id} ✗ failed {v[2].label}: {states[2].error}",
    ]
