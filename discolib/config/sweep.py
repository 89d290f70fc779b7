"""Sweep files: one base settings plus axes (``grid``, ``zip``, ``seeds``) -> a list of variants, validated up front.

A sweep file is JSON (or YAML, read with ``yaml.safe_load``, when pyyaml is installed)::

    {"preset": "tiny-latent", "animation": "2D",
     "set": {"animation.max_frames": 3},
     "grid": {"prompts.text_prompts": [{"0": "a cat"}, {"0": "a dog"}]},
     "seeds": 2}

Variant order: the grid's cartesian product (last key fastest), then the zip rows, then the seeds (innermost).
Every value goes through :meth:`Settings.set` (the coercion of ``--set``) and every variant through
:meth:`Settings.validate` before anything renders. Each variant has a stable id derived from its index and its
overrides, so a re-run of the same file finds the same variants. Torch-free: the config layer.

Nothing a user typed is evaluated: the file is decoded as data (JSON, or YAML's safe loader with aliases refused).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discolib.config.presets import apply_preset, preset_mode
from discolib.config.settings import (
    Settings,
    SettingsError,
    did_you_mean,
    normalise_animation_mode,
    read_settings_json,
    resolve_name,
    short_repr,
)
from discolib.errors import InputError, one_line
from discolib.io.inputs import MAX_JSON_DEPTH, expand_path, read_user_text

__all__ = [
    "HARD_MAX_VARIANTS",
    "MAX_VARIANTS",
    "SweepError",
    "SweepSpec",
    "Variant",
    "load_sweep",
    "parse_sweep",
]

#: The default limit on a sweep's variants; a sweep file's ``max_variants`` or ``--max-variants`` raises it.
MAX_VARIANTS = 256
#: The limit nobody can raise: each variant is a run folder (validated up front, listed in sweep.json).
HARD_MAX_VARIANTS = 100_000
#: The sweep file's top-level keys (keys starting with "_" are comments, as in settings files).
TOP_KEYS = ("base", "mode", "animation", "preset", "set", "grid", "zip", "seeds", "max_variants")
#: Settings the sweep decides itself: each variant's run folder is <sweep>/runs/<variant id>/<run id>.
SWEEP_OWNED = ("run.batch_name", "run.output_root")
_SEED = "run.seed"
_MAX_SEED = 2**32 - 1


class SweepError(InputError):
    """A sweep file (or dict) is invalid; one line: ``"<source>: <where>: <what is wrong>"``."""


@dataclass(frozen=True)
class Variant:
    """One render of a sweep: the base settings plus ``overrides``."""

    index: int
    #: canonical dotted name -> the JSON value as given, in axis order (the seed last when there is a seeds axis)
    overrides: dict[str, Any]
    #: stable: ``f"v{index:03d}-"`` + the first 8 hex digits of the SHA-256 of the overrides' canonical JSON
    id: str
    #: one line for a contact sheet or a list: ``"seed=7 · text_prompts=a cat · cfg_scale=5"``
    label: str


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep: the base settings, the axes and every variant."""

    source: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    variants: tuple[Variant, ...]
    needs_seed: bool
    #: which axes are grid axes and which zip axes (in order), and the seeds axis' length (0: none)
    grid_names: tuple[str, ...] = ()
    zip_names: tuple[str, ...] = ()
    seeds: int = 0

    def base_settings(self) -> Settings:
        """A fresh copy of the base settings (``set`` applied; not yet validated as a whole)."""
        return Settings.from_dict(self.base, validate=False)

    def settings_for(self, variant: Variant) -> Settings:
        """The base plus ``variant``'s overrides, validated; a :class:`SweepError` names the variant and the axis."""
        if self.needs_seed:
            raise SweepError(
                f"{self.source}: the base seed is -1 (random) with a seeds axis: resolve it first (with_base_seed)"
            )
        return _variant_settings(self.source, self.base_settings(), variant, self._axis_kinds())

    def with_base_seed(self, seed: int) -> SweepSpec:
        """The same sweep with ``run.seed`` of the base set to ``seed`` (the seeds axis counts from it)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED:
            raise SweepError(f"{self.source}: base seed: expected an integer from 0 to {_MAX_SEED}, got {short_repr(seed)}")
        base = json.loads(json.dumps(self.base))
        base["run"]["seed"] = seed
        grid = {n: self.axes[n] for n in self.grid_names}
        zipped = {n: self.axes[n] for n in self.zip_names}
        return _build(self.source, Settings.from_dict(base, validate=False), grid, zipped, self.seeds)

    def _axis_kinds(self) -> dict[str, str]:
        kinds = {n: "grid" for n in self.grid_names} | {n: "zip" for n in self.zip_names}
        if self.seeds:
            kinds[_SEED] = "seeds"
        return kinds


# ---------------------------------------------------------------------------------------------- reading


def load_sweep(path: str | os.PathLike[str], *, max_variants: int | None = None) -> SweepSpec:
    """Read and parse a sweep file (JSON; ``.yaml``/``.yml`` with pyyaml) with the settings files' limits (a regular
    file of at most 4 MiB, nesting at most 64 levels); relative ``base`` paths are relative to the file."""
    try:
        p = expand_path(path, setting="sweep file")
    except InputError as exc:
        raise SweepError(str(exc)) from None
    if p.suffix.lower() in (".yaml", ".yml"):
        data = _read_yaml(p)
    else:
        try:
            data, p = read_settings_json(p, what="sweep file")
        except InputError as exc:
            raise SweepError(str(exc)) from None
    return parse_sweep(data, source=str(p), base_dir=p.parent, max_variants=max_variants)


def _read_yaml(p: Path) -> Any:
    """A YAML sweep file as plain data: ``safe_load`` only (no tags that build objects), aliases refused (an
    alias bomb would expand to millions of values when walked), nesting limited as for JSON."""
    try:
        import yaml  # optional: pyyaml comes with the ray extra; JSON sweep files need nothing
    except ImportError:
        raise SweepError(f"{p}: YAML sweep files need pyyaml (pip install pyyaml); or write the sweep as JSON") from None
    try:
        text = read_user_text(p, setting="sweep file")
    except InputError as exc:
        raise SweepError(str(exc)) from None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise SweepError(f"{p}: YAML aliases (*name) are not allowed in a sweep file; write the values out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    raise SweepError(f"{p}: YAML nested deeper than {MAX_JSON_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SweepError(f"{p}: invalid YAML: {one_line(exc, 300)}") from None
    except RecursionError:  # belt and braces: the depth check above should make this unreachable
        raise SweepError(f"{p}: YAML nested too deeply") from None


# ---------------------------------------------------------------------------------------------- parsing


def parse_sweep(
    data: Any, *, source: str = "<sweep>", base_dir: Path | None = None, max_variants: int | None = None
) -> SweepSpec:
    """Parse and validate a sweep (a decoded file or a dict); every problem is one :class:`SweepError`.

    ``max_variants`` (``--max-variants``) overrides the file's ``max_variants``; both are at most
    :data:`HARD_MAX_VARIANTS`. The count is checked before any variant is built.
    """
    try:
        return _parse(data, source, base_dir, max_variants)
    except SweepError:
        raise
    except InputError as exc:  # a SettingsError from the base or the presets: name the sweep
        raise SweepError(f"{source}: {one_line(exc, None, lines='join')}") from None
    except RecursionError:  # a Python dict nested past the interpreter's limit (files are refused before this)
        raise SweepError(f"{source}: nested too deeply") from None


def _err(source: str, where: str, what: str) -> SweepError:
    return SweepError(f"{source}: {where}: {what}" if where else f"{source}: {what}")


def _check_json(source: str, data: Any) -> Any:
    """``data`` must be JSON-like (dicts with string keys, lists, str, finite numbers, bools, None), nested at most
    :data:`MAX_JSON_DEPTH` levels; walked with a stack (a Python dict can nest past the recursion limit)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise _err(source, where, f"nested deeper than {MAX_JSON_DEPTH} levels")
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _err(source, where, f"key {short_repr(k)}: expected a string key")
                stack.append((v, f"{where}.{k}" if where else k, depth + 1))
        elif isinstance(value, (list, tuple)):
            if depth > MAX_JSON_DEPTH:
                raise _err(source, where, f"nested deeper than {MAX_JSON_DEPTH} levels")
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _err(source, where, f"{value} is not allowed; expected a finite number")
        elif not isinstance(value, (str, int, bool, type(None))):
            raise _err(source, where, f"expected a JSON value, got a {type(value).__name__}")
    return data


def _int_option(source: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(source, key, f"expected an integer from {low} to {high}, got {short_repr(value)}")
    if not low <= value <= high:
        raise _err(source, key, f"expected an integer from {low} to {high}, got {value}")
    return value


def _parse(data: Any, source: str, base_dir: Path | None, max_variants: int | None) -> SweepSpec:
    if not isinstance(data, dict):
        raise _err(source, "", f"expected a JSON object with keys such as base, set, grid, zip, seeds; got {type(data).__name__}")
    _check_json(source, data)
    for key in data:
        if key.startswith("_"):
            continue  # a comment, as in settings files
        if key not in TOP_KEYS:
            hint = did_you_mean(key, TOP_KEYS, n=2)
            raise _err(source, short_repr(key), f"unknown key{hint} (expected {', '.join(TOP_KEYS)})")

    limit = MAX_VARIANTS
    if "max_variants" in data:
        limit = _int_option(source, "max_variants", data["max_variants"], 1, HARD_MAX_VARIANTS)
    if max_variants is not None:
        limit = _int_option(source, "--max-variants", max_variants, 1, HARD_MAX_VARIANTS)
    seeds = _int_option(source, "seeds", data["seeds"], 1, HARD_MAX_VARIANTS) if "seeds" in data else 0

    grid = _axes(source, "grid", data.get("grid", {}))
    zipped = _axes(source, "zip", data.get("zip", {}))
    if zipped:
        lengths = {n: len(v) for n, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise _err(source, "zip", f"the lists must have the same length ({shown})")
    names = list(grid) + list(zipped)
    for name in names:
        if name in SWEEP_OWNED:
            kind = "grid" if name in grid else "zip"
            raise _err(source, f"{kind}.{name}", "the sweep decides where runs go (<out>/runs/<variant id>/): not an axis")
    dup = [n for n in grid if n in zipped]
    if dup:
        raise _err(source, f"zip.{dup[0]}", "this setting is also a grid axis; a setting may be one axis only")
    if seeds and _SEED in names:
        raise _err(source, f"{'grid' if _SEED in grid else 'zip'}.{_SEED}", "the seeds axis sets run.seed already; use one or the other")

    # Counted before anything is built: a sweep of 10**9 variants fails here, instantly.
    count = 1
    for values in grid.values():
        count *= len(values)
    if zipped:
        count *= len(next(iter(zipped.values())))
    count *= max(seeds, 1)
    if count > limit:
        if limit >= HARD_MAX_VARIANTS:
            raise _err(source, "", f"{count} variants is more than the limit of {HARD_MAX_VARIANTS}; split the sweep")
        raise _err(
            source, "",
            f"{count} variants is more than the limit of {limit}; raise it with \"max_variants\" in the sweep file "
            f"or --max-variants (at most {HARD_MAX_VARIANTS})",
        )

    base = _base_settings(data, source, base_dir)
    if seeds and base.run.seed != -1 and base.run.seed + seeds - 1 > _MAX_SEED:
        raise _err(source, "seeds", f"base seed {base.run.seed} + {seeds - 1} is more than the largest seed {_MAX_SEED}")
    # Each axis value alone, against the base: the first bad one is named by axis and index.
    for kind, axes in (("grid", grid), ("zip", zipped)):
        for name, values in axes.items():
            for i, value in enumerate(values):
                probe = Settings.from_dict(base.to_dict(), validate=False)
                _set(probe, name, value, source, f"{kind}.{name}[{i}]")
    return _build(source, base, grid, zipped, seeds)


def _axes(source: str, kind: str, value: Any) -> dict[str, list[Any]]:
    """``grid`` / ``zip``: {setting name: non-empty list of values}, names made canonical (dotted)."""
    if not isinstance(value, dict):
        raise _err(source, kind, f"expected an object {{setting: [values...]}}, got {short_repr(value)}")
    out: dict[str, list[Any]] = {}
    for name, values in value.items():
        canonical = _canonical(source, f"{kind}.{name}", name)
        if canonical in out:
            raise _err(source, f"{kind}.{name}", f"{canonical} is already an axis of {kind}")
        if not isinstance(values, list):
            raise _err(source, f"{kind}.{canonical}", f"expected a list of values, got {short_repr(values)}")
        if not values:
            raise _err(source, f"{kind}.{canonical}", "expected a non-empty list of values")
        seen: dict[str, int] = {}
        for i, v in enumerate(values):
            key = json.dumps(v, sort_keys=True)
            if key in seen:
                raise _err(source, f"{kind}.{canonical}[{i}]", f"the same value as [{seen[key]}]; each value once")
            seen[key] = i
        out[canonical] = list(values)
    return out


def _canonical(source: str, where: str, name: str) -> str:
    try:
        group, fname = resolve_name(name)
    except SettingsError as exc:
        raise _err(source, where, exc.reason) from None
    return f"{group}.{fname}"


def _set(settings: Settings, name: str, value: Any, source: str, where: str) -> None:
    try:
        settings.set(name, value)
    except SettingsError as exc:
        raise _err(source, where, exc.reason if exc.field in (None, name) else str(exc)) from None


def _base_settings(data: dict[str, Any], source: str, base_dir: Path | None) -> Settings:
    """The base: a settings file or an inline dict, or the defaults of ``mode``/``animation``; then ``preset``,
    then ``set``."""
    preset = data.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise _err(source, "preset", f"expected a preset name, got {short_repr(preset)}")
    if "base" in data:
        for key in ("mode", "animation"):
            if key in data:
                raise _err(source, key, "comes from the base settings; change it with \"set\" instead")
        base = data["base"]
        if isinstance(base, str):
            path = expand_path(base, setting="base")
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                raw, path = read_settings_json(path, what="base settings file")
                settings = Settings.from_dict(raw)
            except InputError as exc:
                raise _err(source, "base", one_line(exc, None, lines="join")) from None
        elif isinstance(base, dict):
            try:
                settings = Settings.from_dict(base)
            except InputError as exc:
                raise _err(source, "base", one_line(exc, None, lines="join")) from None
        else:
            raise _err(source, "base", f"expected a settings file path or an object of settings, got {short_repr(base)}")
    else:
        mode = data.get("mode")
        if mode is None:
            try:
                mode = preset_mode(preset) if preset else "guided"
            except SettingsError as exc:
                raise _err(source, "preset", exc.reason) from None
        if mode not in ("guided", "latent"):
            raise _err(source, "mode", f"expected 'guided' or 'latent', got {short_repr(mode)}")
        try:
            animation = normalise_animation_mode(data.get("animation", "None"))
        except SettingsError as exc:
            raise _err(source, "animation", exc.reason) from None
        settings = Settings.defaults(mode, animation)
    if preset:
        try:
            apply_preset(settings, preset)
        except SettingsError as exc:
            raise _err(source, "preset", exc.reason) from None
    overrides = data.get("set", {})
    if not isinstance(overrides, dict):
        raise _err(source, "set", f"expected an object {{setting: value}}, got {short_repr(overrides)}")
    for name, value in overrides.items():
        canonical = _canonical(source, f"set.{name}", name)
        if canonical in SWEEP_OWNED:
            raise _err(source, f"set.{canonical}", "the sweep decides where runs go (<out>/runs/<variant id>/): leave it out")
        _set(settings, canonical, value, source, f"set.{canonical}")
    return settings


# ---------------------------------------------------------------------------------------------- variants


def _build(source: str, base: Settings, grid: Mapping[str, list[Any]], zipped: Mapping[str, list[Any]], seeds: int) -> SweepSpec:
    """Every variant (grid product, then zip rows, then seeds), each validated as a whole."""
    base_seed = base.run.seed
    needs_seed = bool(seeds) and base_seed == -1
    # With an unresolved base seed, the seeds axis holds offsets 0..N-1 until with_base_seed (ids change then).
    seed_values = [(0 if needs_seed else base_seed) + k for k in range(seeds)]
    axes: dict[str, list[Any]] = {**grid, **zipped}
    if seeds:
        axes[_SEED] = seed_values
    kinds = {n: "grid" for n in grid} | {n: "zip" for n in zipped} | ({_SEED: "seeds"} if seeds else {})

    grid_names = list(grid)
    rows = len(next(iter(zipped.values()))) if zipped else 1
    variants: list[Variant] = []
    # Mixed-radix counting over the grid (last key fastest), zip rows and seeds: no itertools.product of values.
    sizes = [len(grid[n]) for n in grid_names] + [rows, max(seeds, 1)]
    total = math.prod(sizes)
    base_dict = base.to_dict()
    for index in range(total):
        digits = []
        rest = index
        for size in reversed(sizes):
            digits.append(rest % size)
            rest //= size
        digits.reverse()
        overrides: dict[str, Any] = {name: grid[name][digits[k]] for k, name in enumerate(grid_names)}
        overrides.update({name: values[digits[-2]] for name, values in zipped.items()})
        if seeds:
            overrides[_SEED] = seed_values[digits[-1]]
        variant = Variant(index, overrides, _variant_id(index, overrides), _label(overrides))
        if not needs_seed:
            _variant_settings(source, Settings.from_dict(base_dict, validate=False), variant, kinds, digits, grid_names, zipped)
        variants.append(variant)
    return SweepSpec(
        source=source,
        base=base_dict,
        axes=axes,
        variants=tuple(variants),
        needs_seed=needs_seed,
        grid_names=tuple(grid_names),
        zip_names=tuple(zipped),
        seeds=seeds,
    )


def _variant_settings(
    source: str,
    settings: Settings,
    variant: Variant,
    kinds: Mapping[str, str],
    digits: list[int] | None = None,
    grid_names: list[str] | None = None,
    zipped: Mapping[str, Any] | None = None,
) -> Settings:
    """``settings`` with ``variant``'s overrides, validated; an error names the axis (kind, name, index) it can blame,
    and the variant."""

    def where(name: str) -> str:
        kind = kinds.get(name, "")
        if digits is None:
            return f"{kind}.{name}" if kind else name
        if kind == "grid" and grid_names is not None:
            return f"grid.{name}[{digits[grid_names.index(name)]}]"
        if kind == "zip":
            return f"zip.{name}[{digits[-2]}]"
        if kind == "seeds":
            return f"seeds[{digits[-1]}]"
        return name

    for name, value in variant.overrides.items():
        _set(settings, name, value, source, f"{where(name)} (variant {variant.id})")
    try:
        settings.validate()
    except InputError as exc:
        name = getattr(exc, "field", None)
        if name in variant.overrides:
            raise _err(source, f"{where(name)} (variant {variant.id})", getattr(exc, "reason", str(exc))) from None
        raise _err(source, f"variant {variant.id} ({variant.label})", one_line(exc, None, lines="join")) from None
    return settings


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _variant_id(index: int, overrides: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(_canonical_json(dict(overrides)).encode("utf-8")).hexdigest()[:8]
    return f"v{index:03d}-{digest}"


def _short_value(value: Any, limit: int = 40) -> str:
    """A value as a few words: a prompt dict shows its prompts' texts, a list its items, a number as typed."""
    if isinstance(value, dict):
        parts = [_short_value(v, limit) for v in value.values()]
        text = " | ".join(parts)
    elif isinstance(value, list):
        text = ", ".join(_short_value(v, limit) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    text = " ".join(text.split())  # one line: newlines and tabs become spaces
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(overrides: Mapping[str, Any]) -> str:
    """``"seed=7 · text_prompts=a cat · cfg_scale=5"``: the seed first (it is what varies most often), short names."""
    items = sorted(overrides.items(), key=lambda kv: kv[0] != _SEED)
    parts = [f"{'seed' if n == _SEED else n.split('.', 1)[1]}={_short_value(v)}" for n, v in items]
    return " · ".join(parts) if parts else "base"
