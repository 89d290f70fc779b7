"""Sweep files: parsing, validation up front, stable variant ids, hostile and oversized input (torch-free)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discolib.config.settings import Settings
from discolib.config.sweep import (
    HARD_MAX_VARIANTS,
    MAX_VARIANTS,
    SweepError,
    SweepSpec,
    load_sweep,
    parse_sweep,
)

DEMO = Path(__file__).resolve().parents[1] / "discolib" / "data" / "demo_sweep.json"
TINY: dict[str, Any] = {"preset": "tiny-latent", "animation": "2D", "set": {"max_frames": 3}}


def sweep_of(**keys: Any) -> dict[str, Any]:
    return {**TINY, **keys}


def test_demo_sweep_is_two_prompts_times_two_seeds() -> None:
    spec = load_sweep(DEMO)
    assert len(spec.variants) == 4 and not spec.needs_seed
    assert list(spec.axes) == ["prompts.text_prompts", "run.seed"]
    seeds = [v.overrides["run.seed"] for v in spec.variants]
    assert seeds == [42, 43, 42, 43]  # the seeds axis is innermost
    first = spec.settings_for(spec.variants[0])
    assert (first.image.width, first.image.height, first.n_frames()) == (64, 64, 3)
    assert first.animation.animation_mode == "2D" and first.models.latent_model == "tiny-latent"
    assert spec.settings_for(spec.variants[3]).prompts.text_prompts == {"0": "a castle on a hill --neg blurry"}
    label = spec.variants[1].label
    assert label.startswith("seed=43 · text_prompts=a lighthouse") and "\n" not in label


def test_grid_order_zip_rows_and_stable_ids() -> None:
    data = sweep_of(grid={"cfg_scale": [5, 7], "steps": [2, 3]}, zip={"eta": [0.0, 0.5], "ddim_eta": [0.1, 0.2]})
    a, b = parse_sweep(data), parse_sweep(json.loads(json.dumps(data)))
    assert [v.id for v in a.variants] == [v.id for v in b.variants]
    assert len({v.id for v in a.variants}) == len(a.variants) == 8
    rows = [(v.overrides["latent.cfg_scale"], v.overrides["image.steps"], v.overrides["guidance.eta"]) for v in a.variants]
    # the last grid key varies fastest, then the zip rows (innermost here: no seeds axis)
    assert rows[:4] == [(5, 2, 0.0), (5, 2, 0.5), (5, 3, 0.0), (5, 3, 0.5)]
    assert all(v.overrides["latent.ddim_eta"] == (0.1 if v.overrides["guidance.eta"] == 0.0 else 0.2) for v in a.variants)
    assert a.variants[5].id.startswith("v005-") and len(a.variants[5].id) == 13
    # the id depends on the overrides: another value gives another id at the same index
    other = parse_sweep(sweep_of(grid={"cfg_scale": [5, 8], "steps": [2, 3]}, zip={"eta": [0.0, 0.5], "ddim_eta": [0.1, 0.2]}))
    assert other.variants[0].id == a.variants[0].id and other.variants[4].id != a.variants[4].id
    assert a.settings_for(a.variants[7]).latent.cfg_scale == 7.0


def test_random_base_seed_is_resolved_before_rendering() -> None:
    spec = parse_sweep(sweep_of(set={"max_frames": 3, "seed": -1}, seeds=3))
    assert spec.needs_seed
    with pytest.raises(SweepError, match="resolve it first"):
        spec.settings_for(spec.variants[0])
    fixed = spec.with_base_seed(1000)
    assert not fixed.needs_seed and fixed.axes["run.seed"] == [1000, 1001, 1002]
    assert fixed.settings_for(fixed.variants[2]).run.seed == 1002
    assert [v.id for v in fixed.variants] == [v.id for v in spec.with_base_seed(1000).variants]
    with pytest.raises(SweepError, match="base seed"):
        spec.with_base_seed(-5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"gird": {}}, r"'gird': unknown key; did you mean 'grid'\?"),
        (sweep_of(grid={"cfg_scal": [1]}), r"grid.cfg_scal: unknown setting; did you mean 'cfg_scale'"),
        (sweep_of(grid={"cfg_scale": [5, "x"]}), r"<sweep>: grid.latent.cfg_scale\[1\]: expected a finite number, got 'x'"),
        (sweep_of(grid={"cfg_scale": []}), r"grid.latent.cfg_scale: expected a non-empty list"),
        (sweep_of(grid={"cfg_scale": 5}), r"grid.latent.cfg_scale: expected a list of values"),
        (sweep_of(grid={"cfg_scale": [5, 5]}), r"grid.latent.cfg_scale\[1\]: the same value as \[0\]"),
        (sweep_of(grid={"steps": [2], "image.steps": [3]}), r"image.steps is already an axis"),
        (sweep_of(grid={"width": [64, 68]}), r"grid.image.width\[1\] \(variant v001-[0-9a-f]{8}\): 68 is not a multiple of 8"),
        (sweep_of(zip={"steps": [2, 3], "eta": [0.1]}), r"zip: the lists must have the same length"),
        (sweep_of(grid={"steps": [2]}, zip={"image.steps": [3]}), r"zip.image.steps: this setting is also a grid axis"),
        (sweep_of(grid={"seed": [1, 2]}, seeds=2), r"grid.run.seed: the seeds axis sets run.seed already"),
        (sweep_of(grid={"batch_name": ["a"]}), r"grid.run.batch_name: the sweep decides where runs go"),
        (sweep_of(zip={"output_root": ["/tmp"]}), r"zip.run.output_root: the sweep decides where runs go"),
        (sweep_of(set={"output_root": "/elsewhere"}), r"set.run.output_root: the sweep decides where runs go"),
        (sweep_of(seeds=0), r"seeds: expected an integer from 1"),
        (sweep_of(seeds=True), r"seeds: expected an integer"),
        (sweep_of(seeds=2.5), r"seeds: expected an integer"),
        (sweep_of(set={"seed": 2**32 - 1}, seeds=2), r"seeds: base seed 4294967295 \+ 1 is more than the largest seed"),
        (sweep_of(preset="tiny-lat"), r"preset: unknown preset"),
        ({"preset": "tiny-latent", "mode": "guided"}, r"preset 'tiny-latent' is for latent mode"),
        (sweep_of(animation="4D"), r"animation: expected one of none, 2D, 3D, video"),
        ({"base": {"image": {"steps": 0}}}, r"base: image.steps: expected a value >= 1"),
        ({"base": {}, "mode": "latent"}, r"mode: comes from the base settings"),
        ({"base": 5}, r"base: expected a settings file path or an object"),
        (sweep_of(set=[1]), r"set: expected an object"),
        (sweep_of(max_variants=0), r"max_variants: expected an integer from 1 to 100000"),
        (sweep_of(max_variants=HARD_MAX_VARIANTS + 1), r"max_variants: expected an integer from 1 to 100000"),
        ([1, 2], r"expected a JSON object"),
        (sweep_of(grid={"cfg_scale": [float("nan")]}), r"grid.cfg_scale\[0\]: nan is not allowed"),
        (sweep_of(grid={"text_prompts": [{"0": object()}]}), r"expected a JSON value, got a object"),
        ({1: 2}, r"expected a string key"),
    ],
)
def test_invalid_sweeps_fail_with_one_line(data: Any, message: str) -> None:
    with pytest.raises(SweepError, match=message) as info:
        parse_sweep(data)
    assert "\n" not in str(info.value)


def test_variant_count_is_checked_before_building_and_can_be_raised() -> None:
    # 10^12 variants: refused from the list lengths alone, instantly
    huge = sweep_of(grid={"steps": list(range(1, 1001)), "cfg_scale": list(range(1000))}, seeds=1000)
    with pytest.raises(SweepError, match="1000000000 variants is more than the limit of 100000; split the sweep") as info:
        parse_sweep(huge, max_variants=HARD_MAX_VARIANTS)
    assert "max_variants" not in str(info.value)
    over = sweep_of(grid={"steps": list(range(1, 18))}, seeds=16)  # 272 > 256
    with pytest.raises(SweepError, match=f'272 variants is more than the limit of {MAX_VARIANTS}; raise it with "max_variants"'):
        parse_sweep(over)
    assert len(parse_sweep({**over, "max_variants": 300}).variants) == 272
    assert len(parse_sweep(over, max_variants=272).variants) == 272
    with pytest.raises(SweepError, match="limit of 10;"):  # --max-variants overrides the file's value
        parse_sweep({**over, "max_variants": 300}, max_variants=10)


def test_deeply_nested_values_are_refused_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(SweepError, match="nested deeper than 64 levels"):
        parse_sweep(sweep_of(grid={"text_prompts": [deep]}))


def test_files_json_yaml_relative_base_and_hostile_paths(tmp_path: Path) -> None:
    base = Settings.defaults("latent", "2D")
    from discolib.config.presets import apply_preset

    apply_preset(base, "tiny-latent")
    base.set("max_frames", 3)
    (tmp_path / "sub").mkdir()
    base.save(tmp_path / "sub" / "base.json")
    (tmp_path / "sub" / "s.json").write_text(json.dumps({"base": "base.json", "grid": {"cfg_scale": [3, 4]}}))
    spec = load_sweep(tmp_path / "sub" / "s.json")
    assert spec.source == str(tmp_path / "sub" / "s.json") and len(spec.variants) == 2
    assert spec.base_settings().animation.max_frames == 3

    (tmp_path / "s.yaml").write_text("preset: tiny-latent\nanimation: 2D\nset: {max_frames: 3}\ngrid:\n  cfg_scale: [3, 4]\n")
    assert [v.id for v in load_sweep(tmp_path / "s.yaml").variants] == [v.id for v in spec.variants]
    bomb = "a: &a [1, 2]\nb: &b [*a, *a]\ngrid: {cfg_scale: *b}\n"
    (tmp_path / "bomb.yml").write_text(bomb)
    with pytest.raises(SweepError, match="aliases"):
        load_sweep(tmp_path / "bomb.yml")
    (tmp_path / "obj.yaml").write_text("grid: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SweepError, match="invalid YAML"):
        load_sweep(tmp_path / "obj.yaml")
    (tmp_path / "deep.yaml").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(SweepError, match="nested deeper than 64"):
        load_sweep(tmp_path / "deep.yaml")

    (tmp_path / "bad.json").write_text('{"grid": {"cfg_scale": [1e400]}}')
    with pytest.raises(SweepError, match=r"grid.cfg_scale\[0\]: the number 1e400 is too large"):
        load_sweep(tmp_path / "bad.json")
    (tmp_path / "big.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(SweepError, match="expected at most"):
        load_sweep(tmp_path / "big.json")
    with pytest.raises(SweepError, match="not found"):
        load_sweep(tmp_path / "missing.json")
    with pytest.raises(SweepError, match="folder"):
        load_sweep(tmp_path / "sub")
    if os.path.exists("/dev/zero"):
        with pytest.raises(SweepError, match="not a regular file"):
            load_sweep("/dev/zero")
    (tmp_path / "nobase.json").write_text(json.dumps({"base": "nope.json"}))
    with pytest.raises(SweepError, match=r"nobase.json: base: base settings file not found"):
        load_sweep(tmp_path / "nobase.json")


# ---------------------------------------------------------------------------------------------- properties

_NAMES = ["cfg_scale", "steps", "seed", "latent.ddim_eta", "text_prompts", "width", "zoom", "nope", "run.batch_name"]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_values = st.lists(
    st.one_of(st.integers(1, 12), st.floats(0, 20, allow_nan=False), st.sampled_from(["0: (1.01)", "a cat"]), _json),
    min_size=0,
    max_size=3,
)
_axes = st.dictionaries(st.sampled_from(_NAMES), _values, max_size=2) | _json
_sweeps = st.fixed_dictionaries(
    {"preset": st.just("tiny-latent"), "animation": st.sampled_from(["2D", "none"])},
    optional={
        "grid": _axes,
        "zip": _axes,
        "seeds": st.integers(-1, 4) | _json,
        "set": st.dictionaries(st.sampled_from(_NAMES), _json, max_size=2),
        "max_variants": st.integers(0, 20),
        "bogus": _json,
    },
) | _json


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sweeps)
def test_any_accepted_sweep_has_unique_stable_ids_and_garbage_raises_only_sweep_error(data: Any) -> None:
    try:
        first = parse_sweep(data)
    except SweepError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(first, SweepSpec)
    again = parse_sweep(json.loads(json.dumps(data)))
    ids = [v.id for v in first.variants]
    assert len(set(ids)) == len(ids) >= 1
    assert ids == [v.id for v in again.variants]
    assert all("\n" not in v.label for v in first.variants)
