"""The settings panel's data (discolib.config.ui): coverage, labels, help, where fields apply, original names."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from discolib.config import importers, ui
from discolib.config.importers import import_settings
from discolib.config.settings import Settings, SettingsError, field_info, iter_fields
from discolib.config.ui import (
    ANIMATION_MODES,
    MODES,
    TABS,
    field_ui,
    is_shown,
    originals_text,
    panel_layout,
    shown_fields,
    tab_shown,
)

DATA = Path(__file__).parent / "data"
DISCO_FILES = ("disco_v57_settings.txt", "disco_v57_3d_turbo_settings.txt")
DEFORUM_FILES = ("deforum_settings.txt", "dsd_3d_settings.txt", "webui_default_settings.txt")
PAIRS = [(m, a) for m in MODES for a in ANIMATION_MODES]


def _layout_names() -> list[str]:
    return [n for _, sections in panel_layout() for _, names in sections for n in names]


# ---------------------------------------------------------------------------------------------- coverage


def test_every_field_has_a_written_entry() -> None:
    missing = [n for n in iter_fields() if n not in ui._TABLE]
    assert not missing, f"fields without an entry in discolib/config/ui.py: {missing}"
    assert set(ui._TABLE) <= set(iter_fields()), set(ui._TABLE) - set(iter_fields())
    for n in iter_fields():
        assert field_ui(n).name == n


def test_field_ui_takes_short_names_and_refuses_unknown_ones() -> None:
    assert field_ui("zoom") is field_ui("animation.zoom")
    with pytest.raises(SettingsError, match="did you mean"):
        field_ui("animation.zom")


def test_layout_has_every_field_once_in_tab_order() -> None:
    names = _layout_names()
    assert sorted(names) == sorted(iter_fields())
    assert len(names) == len(set(names))
    tabs = [t for t, _ in panel_layout()]
    assert tabs == [t for t in TABS if t in tabs]
    for tab, sections in panel_layout():
        headings = [s for s, _ in sections]
        assert len(headings) == len(set(headings)), tab
        for section, fields in sections:
            assert fields and len(fields) <= 12, (tab, section, len(fields))
            for n in fields:
                assert (field_ui(n).tab, field_ui(n).section) == (tab, section)


def test_layout_is_a_fresh_copy() -> None:
    panel_layout()[0][1][0][1].clear()
    assert len(_layout_names()) == len(iter_fields())


# ---------------------------------------------------------------------------------------------- text


def test_labels_are_readable_and_unique_within_a_tab() -> None:
    per_tab: dict[str, list[str]] = defaultdict(list)
    for n in iter_fields():
        u = field_ui(n)
        assert "_" not in u.label and u.label.strip() == u.label and u.label, n
        assert u.label[0].isupper() or u.label[0].isdigit(), (n, u.label)
        assert u.label != field_info(n).field, (n, "label repeats the snake_case name")
        per_tab[u.tab].append(u.label)
    for tab, labels in per_tab.items():
        dupes = {x for x in labels if labels.count(x) > 1}
        assert not dupes, (tab, dupes)


def test_help_is_one_short_line() -> None:
    for n in iter_fields():
        h = field_ui(n).help
        assert h and len(h) <= 110, (n, len(h))
        assert "\n" not in h and h == h.strip(), n
        assert not h.endswith(".") or h.endswith("..."), (n, "one line, no sentence full stop")
        assert h != field_info(n).help, (n, "help should be written for the panel")


def test_tabs_and_mode_sets_are_valid() -> None:
    for n in iter_fields():
        u = field_ui(n)
        assert u.tab in TABS, n
        assert u.modes and u.modes <= set(MODES), n
        assert u.animation_modes and u.animation_modes <= set(ANIMATION_MODES), n
        for mode, anim in u.excluded:
            assert mode in u.modes and anim in u.animation_modes, (n, mode, anim)
        for need in u.needs:
            assert need.modes <= set(MODES) and need.op in ui._OPS, n
            for name in need.settings:
                field_info(name)  # a real setting
        assert any(is_shown(n, m, a, show_all=False) for m, a in PAIRS) or u.advanced, (n, "never shown")


def test_advanced_fields_are_a_small_minority() -> None:
    advanced = [n for n in iter_fields() if field_ui(n).advanced]
    assert 0 < len(advanced) <= len(iter_fields()) // 8, advanced


# ---------------------------------------------------------------------------------------------- where fields show


def _table(values: bool) -> str:
    rows = []
    for m, a in PAIRS:
        v = Settings.defaults(m, a) if values else None
        rows.append(f"{m}+{a}: {len(shown_fields(m, a, values=v))}")
    return f"of {len(iter_fields())}: " + ", ".join(rows)


def test_each_mode_shows_well_under_all_fields() -> None:
    total = len(iter_fields())
    for m, a in PAIRS:
        n = len(shown_fields(m, a))
        assert 10 <= n <= 0.65 * total, _table(False)
        n_defaults = len(shown_fields(m, a, values=Settings.defaults(m, a)))
        assert n_defaults <= 0.55 * total and n_defaults <= n, _table(True)
    assert len(shown_fields("guided", "3D", show_all=True)) == total


@pytest.mark.parametrize(
    "mode, anim, shown, hidden",
    [
        (
            "guided", "3D",
            ["animation.translation_z", "guidance.clip_guidance_scale", "animation.rotation_3d_y", "animation.fov",
             "models.depth_model", "animation.vr_mode", "animation.cadence", "animation.turbo_preroll",
             "animation.frames_scale", "models.diffusion_model", "image.steps", "animation.translation_x"],
            ["latent.cfg_scale", "latent.scheduler", "latent.strength", "animation.zoom", "animation.angle",
             "animation.video_init_path", "animation.noise_schedule", "animation.strength_schedule",
             "models.latent_model", "run.n_batches", "animation.fill_disocclusions"],
        ),
        (
            "latent", "2D",
            ["animation.zoom", "animation.angle", "animation.translation_x", "animation.strength_schedule",
             "animation.noise_schedule", "animation.cfg_scale_schedule", "latent.scheduler", "animation.border",
             "animation.color_coherence", "animation.antiblur_amount", "output.fps"],
            ["animation.fov", "animation.translation_z", "models.depth_model", "animation.video_init_path",
             "animation.video_init_steps", "guidance.clip_guidance_scale", "animation.frames_scale",
             "animation.turbo_preroll", "models.diffusion_model", "latent.cfg_scale", "guidance.sampler"],
        ),
        (
            "guided", "None",
            ["run.n_batches", "guidance.clip_guidance_scale", "guidance.skip_steps", "prompts.image_prompts"],
            ["animation.zoom", "animation.translation_x", "animation.max_frames", "animation.cadence",
             "animation.seed_behavior", "output.fps", "animation.color_coherence", "models.depth_model"],
        ),
        (
            "latent", "None",
            ["latent.cfg_scale", "latent.strength", "run.n_batches", "latent.negative_prompt"],
            ["animation.cfg_scale_schedule", "animation.zoom", "prompts.image_prompts", "models.diffusion_model"],
        ),
        (
            "guided", "Video Input",
            ["animation.video_init_path", "animation.video_init_steps", "animation.video_init_clip_guidance_scale",
             "animation.video_init_flow_warp", "animation.frames_skip_steps", "animation.seed_behavior"],
            ["image.steps", "guidance.clip_guidance_scale", "guidance.tv_scale", "guidance.skip_steps",
             "animation.frames_scale", "animation.cadence", "animation.color_coherence", "animation.zoom"],
        ),
        (
            "latent", "Video Input",
            ["animation.video_init_path", "animation.extract_nth_frame", "image.steps", "latent.strength"],
            ["animation.video_init_steps", "animation.video_init_flow_warp", "animation.noise_schedule",
             "animation.strength_schedule", "animation.cadence", "animation.translation_x"],
        ),
    ],
)
def test_fields_shown_per_mode(mode: str, anim: str, shown: list[str], hidden: list[str]) -> None:
    for n in shown:
        assert is_shown(n, mode, anim), (n, mode, anim)
    for n in hidden:
        assert not is_shown(n, mode, anim), (n, mode, anim)
        assert is_shown(n, mode, anim, show_all=True)
    assert not any(is_shown(n, mode, anim) for n in iter_fields("latent")) or mode == "latent"
    assert not any(is_shown(n, mode, anim) for n in iter_fields("guidance") if field_ui(n).modes == {"guided"}) or (
        mode == "guided"
    )


def test_tabs_hide_when_nothing_applies() -> None:
    assert not tab_shown("Latent", "guided", "3D")
    assert tab_shown("Latent", "latent", "None")
    assert not tab_shown("Video in", "guided", "2D") and tab_shown("Video in", "guided", "Video Input")
    assert not tab_shown("Motion", "guided", "None") and not tab_shown("Coherence", "latent", "None")
    assert not tab_shown("Output", "latent", "None") and tab_shown("Output", "latent", "3D")
    for m, a in PAIRS:
        assert tab_shown("Run", m, a) and tab_shown("Prompts", m, a)
    # Latent mode's CLIP guidance reads the Guidance tab's cuts and loss scales only when latent.clip_scale > 0.
    s = Settings.defaults("latent", "2D")
    assert not tab_shown("Guidance", "latent", "2D", values=s)
    s.set("latent.clip_scale", 500.0)
    assert tab_shown("Guidance", "latent", "2D", values=s)
    assert is_shown("guidance.cut_overview", "latent", "2D", values=s)
    assert not is_shown("guidance.clip_guidance_scale", "latent", "2D", values=s)


def test_value_conditions_hide_and_show_dependent_fields() -> None:
    s = Settings.defaults("guided", "3D")
    assert not is_shown("guidance.rand_mag", "guided", "3D", values=s)
    assert is_shown("guidance.rand_mag", "guided", "3D")  # without values: by mode only
    s.set("guidance.fuzzy_prompt", True)
    assert is_shown("guidance.rand_mag", "guided", "3D", values=s)
    assert not is_shown("animation.turbo_preroll", "guided", "3D", values=s)  # cadence 1
    s.set("animation.cadence", 3)
    assert is_shown("animation.turbo_preroll", "guided", "3D", values=s)
    assert not is_shown("guidance.transformation_percent", "guided", "3D", values=s)
    s.set("guidance.use_horizontal_symmetry", True)  # either symmetry switch
    assert is_shown("guidance.transformation_percent", "guided", "3D", values=s)
    # A plain dict of dotted names works, and a value the panel has not parsed yet keeps the field shown.
    assert not is_shown("animation.seed_iter_n", "latent", "2D", values={"animation.seed_behavior": "fixed"})
    assert is_shown("animation.seed_iter_n", "latent", "2D", values={"animation.seed_behavior": "iter"})
    assert is_shown("animation.turbo_preroll", "guided", "2D", values={"animation.cadence": "3 frames"})
    assert is_shown("animation.turbo_preroll", "guided", "2D", values={})
    assert field_ui("models.depth_weight_2").needs[1].describe() == "with models.depth_model_2 set"


def test_schema_help_agrees_with_modes() -> None:
    """Where the schema's own help says where a field applies, the panel data agrees."""
    checked = 0
    for n in iter_fields():
        h, u = field_info(n).help, field_ui(n)
        checked += h.startswith(("Video Input", "Guided mode", "Latent", "3D")) or "(latent mode)" in h
        if h.startswith("Video Input (guided)"):
            assert u.modes == {"guided"} and u.animation_modes == {"Video Input"}, n
        elif h.startswith("Video Input"):
            assert u.animation_modes == {"Video Input"}, n
        if h.startswith(("Guided mode", "Video Input (guided)")):
            assert u.modes == {"guided"}, n
        if h.startswith(("Latent mode", "Latent 3D")) or "(latent mode)" in h:
            assert u.modes == {"latent"}, n
        if h.startswith(("3D:", "3D only", "Latent 3D")):
            assert u.animation_modes == {"3D"}, n
    for n in iter_fields("latent"):
        assert field_ui(n).modes == {"latent"}, n
    assert checked >= 25, checked


# ---------------------------------------------------------------------------------------------- originals


def _reports(files: tuple[str, ...]) -> list[importers.ImportReport]:
    return [import_settings(DATA / f) for f in files]


def _known_keys() -> dict[str, set[str]]:
    """Keys each original's settings files write: the importers' tables and the keys of real files in tests/data."""
    disco = (
        set(importers._DISCO_SAME) | set(importers._DISCO_OPTIONAL) | set(importers._DISCO_CLIP_FLAGS)
        | set(importers._DISCO_IGNORED)
    )
    deforum = (
        set(importers._DEFORUM_SAME) | set(importers._DEFORUM_OPTIONAL) | set(importers._WEBUI_KEYS)
        | set(importers._PERSPECTIVE_KEYS) | set(importers._PROMPT_KEYS) | set(importers._DEFORUM_IGNORE_REASONS)
    )
    for f in DISCO_FILES:
        disco |= set(json.loads((DATA / f).read_text()))
    for f in DEFORUM_FILES:
        deforum |= set(json.loads((DATA / f).read_text()))
    return {"Disco": disco, "Deforum": deforum}


def _mappings() -> dict[str, list[dict[str, str]]]:
    """Each importer's key -> field mappings: its name tables, and what it reported for each real file."""
    return {
        "Disco": [dict(importers._DISCO_SAME)] + [dict(r.mapped) for r in _reports(DISCO_FILES)],
        "Deforum": [dict(importers._DEFORUM_SAME)] + [dict(r.mapped) for r in _reports(DEFORUM_FILES)],
    }


def test_originals_name_keys_the_originals_write() -> None:
    known = _known_keys()
    mappings = _mappings()
    for n in iter_fields():
        for item in field_ui(n).originals:
            tool, sep, key = item.partition(": ")
            assert sep and tool in known, (n, item)
            assert key in known[tool], (n, item, "not a key of the original's settings files")
            for mapping in mappings[tool]:
                if key in mapping:
                    assert mapping[key] == n, (n, item, f"the importer maps it to {mapping[key]}")


def test_one_to_one_imported_keys_appear_in_originals() -> None:
    missing = []
    for tool, mappings in _mappings().items():
        for mapping in mappings:
            keys_of: dict[str, list[str]] = defaultdict(list)
            for key, target in mapping.items():
                keys_of[target].append(key)
            for target, keys in keys_of.items():
                if len(keys) == 1 and f"{tool}: {keys[0]}" not in field_ui(target).originals:
                    missing.append(f"{target}: {tool}: {keys[0]}")
    assert not missing, sorted(set(missing))


def test_renamed_settings_show_their_original_names() -> None:
    assert "Deforum: diffusion_cadence" in field_ui("animation.cadence").originals
    assert "Disco: turbo_steps" in field_ui("animation.cadence").originals
    assert "Disco: skip_steps" in field_ui("guidance.skip_steps").originals
    assert "Deforum: scale" in field_ui("latent.cfg_scale").originals
    assert originals_text("animation.fov") == "Disco: fov · Deforum: fov_schedule, fov"
    assert originals_text("animation.fill_disocclusions") == ""


def test_border_and_2d_sampling_follow_the_perspective_flip_in_3d() -> None:
    """In 3D only the perspective flip (a 2D warp before the 3D one, discolib/animation/step.py) reads them."""
    from discolib.config.settings import Settings

    for name in ("animation.border", "animation.sampling_mode_2d"):
        s = Settings.defaults("latent", "3D")
        assert not any(n.holds(s, "latent", "3D") for n in field_ui(name).needs)
        s.set("animation.enable_perspective_flip", True)
        assert all(n.holds(s, "latent", "3D") for n in field_ui(name).needs)
        flat = Settings.defaults("latent", "2D")  # in 2D they always apply, flip or not
        assert all(n.holds(flat, "latent", "2D") for n in field_ui(name).needs)
    s = Settings.defaults("guided", "3D")
    assert not is_shown("animation.border", "guided", "3D", values=s)
    s.set("animation.enable_perspective_flip", True)
    assert is_shown("animation.border", "guided", "3D", values=s)
    assert is_shown("animation.border", "guided", "2D", values=Settings.defaults("guided", "2D"))
