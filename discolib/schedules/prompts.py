"""Prompt schedules: Disco Diffusion's weighted prompt lists and Deforum's ``--neg`` prompts, per frame.

Accepted shapes (pasted unchanged from those tools):

* Disco: ``{0: ["a castle:2", "fog:-0.5"], 100: ["a ruin"]}``; JSON keys may be strings (``"0"``), a bare string
  value counts as a one-element list. A list item starting with ``--neg`` is a negative prompt.
* Deforum: ``{"0": "a castle --neg blurry, ugly", "30": "a ruin"}``: the text after ``--neg`` is the negative
  prompt. Each side may carry a trailing ``:weight``.
* :meth:`PromptSchedule.from_any` takes either, a list of prompts (``{0: list}``), a plain string
  (``{0: [string]}``) or a JSON text of a dict.

Keys are whole frame numbers, ``max_f`` expressions (``"max_f/2"``) or the soundtrack's ``beat_frame(n)`` /
``bar_frame(n)`` (prompts that change on the music), parsed by :mod:`discolib.schedules.keyframes`. A frame uses the
prompts of the last key ``<=`` it; before the first key the first key holds. Backtick weights may read the
soundtrack too (``"fog:`bass(t)`"``).

Weights: a trailing ``:number`` is a weight (default 1.0) only when it is a number, so ``"https://x.org/a.png"``
and ``"a castle: at dusk"`` stay whole while ``"castle:2"``, ``"fog:-0.5"``, ``"x: 1.5"`` split. Negative weights
are allowed (Disco steers away from them); the positive weights of a frame must not sum to zero (Disco
normalises by that sum).

Weight expressions (Deforum): a trailing ``:`...``` is a weight computed per frame by discolib's safe expression
language (:mod:`discolib.schedules.expr`; ``t`` the frame, ``max_f`` the last frame), as Deforum's backtick weights
(which it hands to numexpr). At each frame a prompt whose weight comes out negative moves to the negative prompts
with its magnitude and one at exactly 0 is left out, as deforum-stable-diffusion's ``split_weighted_subprompts``
does. :func:`split_weighted_subprompts` turns one Deforum prompt text (``"a castle:2 fog:-0.5"``) into such items.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from discolib.io.inputs import MAX_JSON_DEPTH, json_depth_ok
from discolib.schedules.expr import AUDIO_ENV, AudioSource, Parser, Program, ScheduleError, tokenize
from discolib.schedules.keyframes import FrameKey, parse_frame_key, resolve_keys, warn_duplicate_keys

__all__ = [
    "FramePrompts",
    "PromptError",
    "PromptSchedule",
    "WeightedPrompt",
    "split_weight",
    "split_weighted_subprompts",
]

# Written so that no two branches can match the same digits: "[0-9]+\.?[0-9]*" backtracks quadratically on a
# long run of digits that is not followed by the end, and prompt texts have no length limit of their own.
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_WEIGHT_RE = re.compile(rf"\s*(?P<weight>{_NUMBER})\s*")
# "http://host:8080" is a URL with a port, not a prompt with weight 8080
_URL_HOST_RE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://[^/\s]*$")
# No "\s*" around it: a search would retry a long run of spaces from every position (quadratic); the texts on
# either side are stripped anyway.
_NEG_RE = re.compile(r"--neg\b")


class PromptError(ScheduleError):
    """Bad prompt schedule input; ``reason`` names the key or frame and the prompt's position."""


def split_weight(text: str) -> tuple[str, float]:
    """``"castle:2"`` -> ``("castle", 2.0)``; no numeric ``:weight`` suffix -> ``(text, 1.0)``; text is stripped.

    The weight may be any float literal (``-0.5``, ``1e-1``); one too large for a float gives ``inf``, which the
    prompt schedules reject as non-finite.
    """
    # The weight can only follow the last ':' (a number contains none); fullmatch keeps this linear in the text.
    colon = text.rfind(":")
    m = _WEIGHT_RE.fullmatch(text, colon + 1) if colon >= 0 else None
    if m is None or _URL_HOST_RE.match(text[:colon]):
        return text.strip(), 1.0
    return text[:colon].strip(), float(m.group("weight"))


# A trailing ":`expression`" (Deforum's backtick weight); the expression itself has no backtick.
_EXPR_WEIGHT_RE = re.compile(r"`(?P<expr>[^`]*)`\s*")
_WEIGHT_NAMES = frozenset({"t", "max_f"})


def _weight_program(expr: str, setting: str | None) -> Program:
    """Parse a backtick weight expression (names ``t``, ``max_f``); a PromptError names the expression."""
    try:
        return Parser(
            tokenize(expr, setting), expr, setting, _WEIGHT_NAMES, "a prompt weight", audio="values"
        ).parse_all()
    except ScheduleError as err:
        where = f" (column {err.column})" if err.column is not None else ""
        raise PromptError(f"weight `{_shorten(expr, 60)}`{where}: {err.reason}", setting=setting) from None


def split_weight_expr(text: str, setting: str | None = None) -> tuple[str, float, str | None]:
    """:func:`split_weight`, also taking a trailing ``:`expression``` (weight 1.0 until evaluated at a frame)."""
    colon = text.rfind(":", 0, text.rfind("`") if text.rstrip().endswith("`") else None)
    if colon >= 0 and text.rstrip().endswith("`"):
        m = _EXPR_WEIGHT_RE.fullmatch(text, colon + 1)
        if m is not None and m.group("expr").strip():
            _weight_program(m.group("expr"), setting)
            return text[:colon].strip(), 1.0, m.group("expr").strip()
    return (*split_weight(text), None)


def _format_weight(weight: float) -> str:
    return str(int(weight)) if weight.is_integer() and abs(weight) < 1e15 else repr(weight)


@dataclass(frozen=True)
class WeightedPrompt:
    """One prompt and its weight (Disco's ``"text:weight"``)."""

    text: str
    weight: float = 1.0
    weight_expr: str | None = None  # a Deforum backtick weight, evaluated per frame by PromptSchedule.at

    @classmethod
    def parse(cls, text: str) -> WeightedPrompt:
        return cls(*split_weight_expr(text))

    def to_str(self) -> str:
        """The ``"text:weight"`` form that :meth:`parse` reads back to an equal prompt."""
        if self.weight_expr is not None:
            return f"{self.text}:`{self.weight_expr}`"
        if self.weight == 1.0 and split_weight(self.text) == (self.text, 1.0):
            return self.text
        return f"{self.text}:{_format_weight(float(self.weight))}"


@dataclass
class FramePrompts:
    """The prompts of one frame: ``positive`` (weighted, Disco style) and ``negative`` (Deforum's ``--neg``)."""

    positive: list[WeightedPrompt]
    negative: list[WeightedPrompt] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.positive]

    @property
    def weights(self) -> list[float]:
        return [p.weight for p in self.positive]

    @property
    def negative_texts(self) -> list[str]:
        return [p.text for p in self.negative]

    @property
    def negative_weights(self) -> list[float]:
        return [p.weight for p in self.negative]

    @property
    def normalized_weights(self) -> list[float]:
        """Positive weights divided by their sum (as Disco does before mixing CLIP losses)."""
        total = sum(self.weights)
        return [w / total for w in self.weights]


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str, limit: int = 60) -> str:
    """``repr`` of ``text``, shortened for a one-line message."""
    return repr(_shorten(text, limit))


def _fsum(values: list[float]) -> float:
    """``math.fsum`` that gives ``inf`` instead of raising when the sum overflows."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def _check_weights(positive: list[WeightedPrompt], label: str, setting: str | None) -> None:
    """The positive weights must sum to a finite, non-zero number (Disco divides by that sum)."""
    weights = [p.weight for p in positive]
    total = _fsum(weights)
    if not math.isfinite(total):
        # Name the first prompt at which a running sum leaves the floats (fsum raised, or the sum is inf).
        running = 0.0
        culprit = len(weights)
        for n, w in enumerate(weights, 1):
            running += w
            if not math.isfinite(running):
                culprit = n
                break
        w = weights[culprit - 1]
        raise PromptError(
            f"{label}, prompt {culprit}: weight {w:g} makes the sum of the weights overflow "
            f"({_clip(positive[culprit - 1].to_str())}); expected weights whose sum is a finite number",
            setting=setting,
        )
    scale = _fsum([abs(w) for w in weights])
    if not math.isfinite(scale):
        scale = max(abs(w) for w in weights)
    if abs(total) <= 1e-9 * max(1.0, scale):
        listed = ", ".join(p.to_str() if p.weight != 1.0 else f"{p.text}:1" for p in positive)
        raise PromptError(f"{label}: weights sum to zero ({_shorten(listed, 200)})", setting=setting)


def _prompt_label(key: FrameKey) -> str:
    return f"prompts at frame {key.frame}" if key.frame is not None else f"prompts at key '{key.text}'"


def _parse_key(raw: object, setting: str | None) -> FrameKey:
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise PromptError(f"key {raw!r}: expected an integer frame or a max_f expression", setting=setting)
    try:
        return parse_frame_key(raw, setting=setting)
    except ScheduleError as err:
        where = f" (column {err.column})" if err.column is not None else ""
        raise PromptError(f"key {raw!r}{where}: {err.reason}", setting=setting) from None


def _parse_items(raw: object, key: FrameKey, split_neg: bool, setting: str | None) -> FramePrompts:
    """One key's value: a list of prompts (items starting with ``--neg`` are negative) or one string."""
    label = _prompt_label(key)
    positive: list[WeightedPrompt] = []
    negative: list[WeightedPrompt] = []
    if isinstance(raw, str):
        if split_neg:
            pos_text, *neg = _NEG_RE.split(raw, maxsplit=1)
            items: list[tuple[str, bool]] = [(pos_text, False)]
            if neg and neg[0].strip():
                items.append((neg[0], True))
        else:
            items = [(raw, False)]
    elif isinstance(raw, Sequence) and not isinstance(raw, (bytes, bytearray)):
        items = []
        for n, item in enumerate(raw, 1):
            if not isinstance(item, str):
                raise PromptError(f"{label}, prompt {n}: expected a string, found {type(item).__name__}", setting=setting)
            stripped = item.lstrip()
            is_neg = stripped.startswith("--neg") and (len(stripped) == 5 or not stripped[5].isalnum())
            items.append((stripped[5:] if is_neg else item, is_neg))
    else:
        raise PromptError(
            f"{label}: expected a list of prompts or a string, found {type(raw).__name__}", setting=setting
        )
    for n, (text, is_neg) in enumerate(items, 1):
        prompt = WeightedPrompt.parse(text)
        side = "negative prompt" if is_neg else "prompt"
        if not prompt.text:
            raise PromptError(f"{label}, {side} {n}: empty prompt text", setting=setting)
        if not math.isfinite(prompt.weight):
            raise PromptError(f"{label}, {side} {n}: weight is not a finite number ({_clip(text.strip())})", setting=setting)
        (negative if is_neg else positive).append(prompt)
    if not positive:
        raise PromptError(f"{label}: no positive prompt (expected at least one)", setting=setting)
    if not any(p.weight_expr for p in positive):  # with expressions the sum is checked per frame
        _check_weights(positive, label, setting)
    return FramePrompts(positive, negative)


def _evaluate_weights(
    fp: FramePrompts, frame: int, n_frames: int | None, setting: str | None, audio: AudioSource | None
) -> FramePrompts:
    """``fp`` with its backtick weights evaluated at ``frame`` (Deforum's sign rule, see the module docstring)."""
    env: dict[str, Any] = {"t": np.float64(frame), AUDIO_ENV: audio}
    if n_frames is not None:
        env["max_f"] = np.float64(n_frames - 1)
    positive: list[WeightedPrompt] = []
    negative: list[WeightedPrompt] = []
    for p, is_neg in [(p, False) for p in fp.positive] + [(p, True) for p in fp.negative]:
        if p.weight_expr is None:
            (negative if is_neg else positive).append(p)
            continue
        program = _weight_program(p.weight_expr, setting)
        if "max_f" in program.names and n_frames is None:
            raise PromptError(f"weight `{p.weight_expr}` uses max_f: pass n_frames to look prompts up", setting=setting)
        try:
            w = float(program.evaluate(env, setting))
        except ScheduleError as err:
            raise PromptError(f"frame {frame}, weight `{_shorten(p.weight_expr, 60)}`: {err.reason}", setting=setting) from None
        if is_neg:  # a negative prompt's weight counts by its magnitude, as a constant one does
            if w != 0:
                negative.append(WeightedPrompt(p.text, abs(w)))
        elif w > 0:
            positive.append(WeightedPrompt(p.text, w))
        elif w < 0:
            negative.append(WeightedPrompt(p.text, -w))
    label = f"prompts at frame {frame}"
    if not positive:
        raise PromptError(f"{label}: no prompt with a positive weight (expected at least one)", setting=setting)
    _check_weights(positive, label, setting)
    return FramePrompts(positive, negative)


def _has_expr(fp: FramePrompts) -> bool:
    return any(p.weight_expr is not None for p in [*fp.positive, *fp.negative])


# Deforum's sub-prompt grammar: text up to a ':' (a '\:' is a literal colon), one or more ':', then an optional
# weight (an optionally negative decimal, or a `backtick expression`), then spaces; or text up to the end.
_SUBPROMPT_RE = re.compile(
    r"(?P<prompt>(?:\\:|[^:])+)(?::+(?P<weight>-?[0-9]+(?:\.[0-9]+)?|`[^`]*`)?\s*|$)"
)


def split_weighted_subprompts(text: str, setting: str | None = None) -> list[str]:
    """Deforum's ``"a castle:2 fog:-0.5"`` as discolib prompt items: ``["a castle:2", "--neg fog:0.5"]``.

    Follows deforum-stable-diffusion's ``split_weighted_subprompts``: every ``:`` ends a sub-prompt (``\\:`` is
    a literal colon), the number after it is its weight (1 when none), a negative weight makes it a negative
    prompt with the magnitude, weight 0 drops it. Backtick weights stay expressions (``"fog:`t/10`"``), resolved per
    frame by :meth:`PromptSchedule.at`. Every item carries an explicit weight, so colons inside the text survive.
    """
    items: list[str] = []
    for m in _SUBPROMPT_RE.finditer(text):
        prompt = m.group("prompt").replace("\\:", ":").strip()
        raw = m.group("weight")
        if not prompt:
            continue
        if raw is not None and raw.startswith("`"):
            expr = raw[1:-1].strip()
            if expr:
                _weight_program(expr, setting)
                items.append(f"{prompt}:`{expr}`")
                continue
            raw = None  # Deforum: a too-short backtick expression counts as weight 1
        w = float(raw) if raw is not None else 1.0
        if w > 0:
            items.append(f"{prompt}:{_format_weight(w)}")
        elif w < 0:
            items.append(f"--neg {prompt}:{_format_weight(-w)}")
    return items


class PromptSchedule:
    """Prompts per frame, keyed like keyframe schedules; see the module docstring for the accepted shapes."""

    def __init__(
        self, entries: list[tuple[FrameKey, FramePrompts]], *, style: str = "disco", setting: str | None = None
    ) -> None:
        if not entries:
            raise PromptError("no prompts (expected e.g. {0: ['a castle']})", setting=setting)
        warn_duplicate_keys([k for k, _ in entries], setting or "prompts", stacklevel=4)
        self._entries = entries
        self.style = style
        self.setting = setting
        self._cache: dict[tuple[int | None, str | None], tuple[list[int], list[FramePrompts]]] = {}

    # ------------------------------------------------------------------------------------ constructors
    @classmethod
    def _from_mapping(
        cls, mapping: object, style: str, setting: str | None, split_neg: bool | None = None
    ) -> PromptSchedule:
        if not isinstance(mapping, Mapping):
            raise PromptError(
                f"expected a dict of {{frame: prompts}}, found {type(mapping).__name__}", setting=setting
            )
        if not mapping:
            raise PromptError("no prompts (expected e.g. {0: ['a castle']})", setting=setting)
        entries = []
        for raw_key, raw_value in mapping.items():
            key = _parse_key(raw_key, setting)
            split = style == "deforum" if split_neg is None else split_neg
            entries.append((key, _parse_items(raw_value, key, split, setting)))
        return cls(entries, style=style, setting=setting)

    @classmethod
    def from_disco(cls, mapping: Mapping[Any, Any], *, setting: str | None = None) -> PromptSchedule:
        """Disco's ``{0: ["a castle:2", "fog:-0.5"], 100: [...]}`` (string keys and bare strings accepted)."""
        return cls._from_mapping(mapping, "disco", setting)

    @classmethod
    def from_deforum(cls, mapping: Mapping[Any, Any], *, setting: str | None = None) -> PromptSchedule:
        """Deforum's ``{"0": "a castle --neg blurry, ugly", "30": "..."}``."""
        return cls._from_mapping(mapping, "deforum", setting)

    @classmethod
    def from_any(cls, obj: object, *, setting: str | None = None) -> PromptSchedule:
        """Any accepted shape: a Disco or Deforum dict, a list of prompts, a string, a JSON dict as text.

        String values are read the Deforum way (``"a --neg b"`` splits), list values the Disco way.
        """
        if isinstance(obj, PromptSchedule):
            return obj
        if isinstance(obj, str):
            stripped = obj.strip()
            if stripped.startswith("{") and stripped.endswith("}"):
                # json.loads recurses per level: deeper text would raise RecursionError instead of a message.
                if json_depth_ok(stripped) is not None:
                    raise PromptError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", setting=setting)
                try:
                    decoded = json.loads(stripped)
                except ValueError:  # not JSON (or a number with too many digits): the text is one prompt
                    decoded = None
                if isinstance(decoded, dict):
                    return cls.from_any(decoded, setting=setting)
            key = FrameKey.from_int(0, setting=setting)
            style = "deforum" if _NEG_RE.search(obj) else "disco"
            return cls([(key, _parse_items(obj, key, True, setting))], style=style, setting=setting)
        if isinstance(obj, Sequence) and not isinstance(obj, (bytes, bytearray)):
            if not obj:
                raise PromptError("no prompts (expected e.g. ['a castle'])", setting=setting)
            return cls._from_mapping({0: list(obj)}, "disco", setting)
        if isinstance(obj, Mapping):
            deforum = bool(obj) and all(isinstance(v, str) for v in obj.values())
            return cls._from_mapping(obj, "deforum" if deforum else "disco", setting, split_neg=True)
        raise PromptError(
            f"expected a dict of {{frame: prompts}}, a list of prompts or a string, found {type(obj).__name__}",
            setting=setting,
        )

    # ---------------------------------------------------------------------------------------- lookup
    @property
    def keys(self) -> list[FrameKey]:
        return [k for k, _ in self._entries]

    @property
    def prompts(self) -> list[FramePrompts]:
        """The prompts of every key as written (keys unresolved, duplicates kept)."""
        return [fp for _, fp in self._entries]

    @property
    def uses_audio(self) -> bool:
        """True when a key or a backtick weight reads the soundtrack: lookups then need ``audio``."""
        return any(k.uses_audio for k in self.keys) or any(
            _weight_program(p.weight_expr, self.setting).audio_names
            for _, fp in self._entries
            for p in [*fp.positive, *fp.negative]
            if p.weight_expr is not None
        )

    def _resolved(self, n_frames: int | None, audio: AudioSource | None) -> tuple[list[int], list[FramePrompts]]:
        cache_key = (n_frames, None if audio is None else audio.key)
        cached = self._cache.get(cache_key)
        if cached is None:
            if n_frames is None:
                needs = [k.text for k in self.keys if k.uses_max_f and not k.uses_audio]
                if needs:
                    raise PromptError(
                        f"key '{needs[0]}' uses max_f: pass n_frames to look prompts up", setting=self.setting
                    )
            order = resolve_keys(self.keys, n_frames or 1, self.setting or "prompts", stacklevel=3, audio=audio)
            cached = ([f for f, _ in order], [self._entries[i][1] for _, i in order])
            self._cache[cache_key] = cached
        return cached

    def at(self, frame: int, n_frames: int | None = None, audio: AudioSource | None = None) -> FramePrompts:
        """The prompts of ``frame``: those of the last key ``<= frame`` (the first key before it). ``audio``: the
        soundtrack's features, needed when a key or a weight reads them (:attr:`uses_audio`)."""
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
            raise PromptError(f"frame must be an integer >= 0, found {frame!r}", setting=self.setting)
        frames, prompts = self._resolved(n_frames, audio)
        fp = prompts[max(0, bisect.bisect_right(frames, int(frame)) - 1)]
        return _evaluate_weights(fp, int(frame), n_frames, self.setting, audio) if _has_expr(fp) else fp

    def items(self, n_frames: int | None = None, audio: AudioSource | None = None) -> list[tuple[int, FramePrompts]]:
        """(frame, prompts) for each key, sorted by frame, duplicates resolved (last wins)."""
        frames, prompts = self._resolved(n_frames, audio)
        return list(zip(frames, prompts, strict=True))

    def changes(self, n_frames: int, audio: AudioSource | None = None) -> list[int]:
        """Sorted frames in ``[0, n_frames)`` where the prompts differ from the previous frame (0 always)."""
        frames, prompts = self._resolved(n_frames, audio)
        if any(_has_expr(fp) for fp in prompts):
            # Weights that follow the frame: compare every frame with the one before it.
            out = [0]
            prev = self.at(0, n_frames, audio)
            for frame in range(1, n_frames):
                cur = self.at(frame, n_frames, audio)
                if cur != prev:
                    out.append(frame)
                prev = cur
            return out
        out = [0]
        current = prompts[0]
        for frame, fp in zip(frames, prompts, strict=True):
            if 0 < frame < n_frames and fp != current:
                out.append(frame)
            current = fp if frame < n_frames else current
        return out

    def to_json(self) -> dict[str, list[str] | str]:
        """A plain JSON-able dict that :meth:`from_any` reads back to an equal schedule (in the source's style)."""
        out: dict[str, list[str] | str] = {}
        for key, fp in self._entries:
            if self.style == "deforum" and len(fp.positive) == 1 and len(fp.negative) <= 1:
                text = fp.positive[0].to_str()
                if fp.negative:
                    text += f" --neg {fp.negative[0].to_str()}"
                out[key.text] = text
            else:
                out[key.text] = [p.to_str() for p in fp.positive] + [f"--neg {p.to_str()}" for p in fp.negative]
        return out

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptSchedule) and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(tuple(k for k, _ in self._entries))

    def __repr__(self) -> str:
        return f"PromptSchedule.from_any({self.to_json()!r})"
