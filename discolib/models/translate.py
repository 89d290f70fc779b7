"""Optional prompt translation (``prompts.translate``): prompts in any language for text encoders that read English.

A :class:`Translator` wraps a transformers sequence-to-sequence translation model (MarianMT such as
``Helsinki-NLP/opus-mt-zh-en``, NLLB such as ``facebook/nllb-200-distilled-600M``, M2M100 ...), given as a hub id or
a local folder. It is loaded once per process (:func:`get_translator`), translates greedily (one beam, no sampling:
the same text always gives the same translation on the same machine) and caches each prompt text.

Only prompt *text* is translated: :func:`translate_text_prompts` keeps every ``:weight`` (numbers and Deforum's
backtick expressions), every ``--neg`` part and the frame keys, translating the text of each weighted prompt on its
own. :func:`translate_settings` returns the settings a render uses (``prompts.text_prompts`` and
``latent.negative_prompt`` translated) and a JSON-able record of every translation; written into ``run.json`` it
makes the run reproducible, and a resume hands it back as ``recorded`` so no model is loaded again.

Multilingual models need language codes: ``prompts.translate_from`` (NLLB: ``"zho_Hans"``, ``"jpn_Jpan"``,
``"arb_Arab"``; M2M100: ``"zh"``) and ``prompts.translate_to`` (empty: English, ``"eng_Latn"`` for NLLB, ``"en"``
for M2M100). One-pair models (MarianMT) need neither.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch

from discolib.config.settings import Settings
from discolib.errors import InputError, WeightsUnavailable, one_line
from discolib.io.inputs import expand_path
from discolib.models.hub import hub_offline
from discolib.models.state_dict import (
    refused_by_weights_only,
    refused_weights_message,
    transformers_weights_only,
    weights_folder_problem,
)
from discolib.schedules.prompts import PromptSchedule, WeightedPrompt

__all__ = [
    "RECORD_KEY",
    "TranslateError",
    "Translator",
    "TranslatorUnavailable",
    "get_translator",
    "translate_schedule",
    "translate_settings",
    "translate_text_prompts",
]

SETTING = "prompts.translate"
#: The key of the translation record in ``run.json``'s ``extra``.
RECORD_KEY = "prompt_translation"
#: English codes of the multilingual families (config ``model_type`` -> target language token).
_ENGLISH = {"m2m_100": ("eng_Latn", "__en__", "en"), "nllb-moe": ("eng_Latn",), "mbart": ("en_XX",)}
_NEG_RE = re.compile(r"--neg\b")  # as discolib.schedules.prompts splits a Deforum prompt
_MAX_NEW_TOKENS = 512


class TranslateError(InputError):
    """``prompts.translate`` (or its language codes) cannot be used: bad folder, unknown language, not a
    translation model."""


class TranslatorUnavailable(TranslateError, WeightsUnavailable):
    """The translation model is not on this machine and cannot be fetched (offline, not on the hub)."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message, reason=reason or "translation model not available")


def _source(model_id: str) -> str:
    """The folder (checked) or hub id that ``from_pretrained`` gets for ``model_id``."""
    text = model_id.strip()
    path = expand_path(text, setting=SETTING)
    looks_local = text.startswith(("/", ".", "~")) or path.exists() or text.count("/") > 1 or "\\" in text
    if not looks_local:
        return text
    if not path.exists():
        raise TranslateError(f"{SETTING}: folder {text!r} does not exist (expected a hub id such as "
                             "'Helsinki-NLP/opus-mt-zh-en' or a local folder saved with save_pretrained)")
    if not path.is_dir():
        raise TranslateError(f"{SETTING}: {text!r} is not a folder (expected a transformers model folder)")
    problem = weights_folder_problem(path)
    if problem:
        raise TranslateError(f"{SETTING}: {problem}")
    return str(path)


def _load_error(model_id: str, err: Exception) -> TranslateError:
    """One line naming the setting, the model and what to do."""
    if refused_by_weights_only(err):
        return TranslateError(f"{SETTING}: {refused_weights_message(model_id, err)}")
    if not isinstance(err, OSError):  # there, but not a usable translation model (wrong class, broken file)
        return TranslateError(f"{SETTING}: cannot load translation model {model_id!r}: {one_line(err, 300)}")
    how = (f"download it once with `hf download {model_id}` on a machine with internet, or give the path of a local "
           "folder (tokenizer + model saved with save_pretrained)")
    if hub_offline():
        return TranslatorUnavailable(
            f"{SETTING}: translation model {model_id!r} is not in the local Hugging Face cache and the hub is offline "
            f"(HF_HUB_OFFLINE=1); {how}. ({type(err).__name__}: {one_line(err, 200)})",
            reason="offline",
        )
    return TranslatorUnavailable(
        f"{SETTING}: cannot load translation model {model_id!r}: {one_line(err, 300)}; {how}", reason=one_line(err, 200)
    )


def _clean(text: str) -> str:
    """A model's output as prompt text: whitespace collapsed, and no backtick or ``--neg`` that would read back as a
    weight expression or a negative prompt."""
    text = text.replace("`", "'")
    text = _NEG_RE.sub("- -neg", text)
    text = " ".join(text.split())
    # A translation ending in ":<number>" would read back as a prompt weight: the colon goes.
    while (m := _TRAILING_WEIGHT.search(text)) is not None:
        text = text[: m.start()] + " " + m.group(1)
    return text


_TRAILING_WEIGHT = re.compile(r"\s*:\s*([-+]?[\d.eE+-]+)\s*$")


class Translator:
    """A loaded translation model; :meth:`translate` is greedy and cached per text (thread-safe).

    Args:
        model_id: as the user gave it (for messages and the run record).
        tokenizer, model: a transformers tokenizer and sequence-to-sequence model.
        source_lang, target_lang: language codes for multilingual models ("" for one-pair models).
        max_new_tokens: the most tokens of one translation (at most 4 per source token + 16 in any case).
    """

    def __init__(
        self, model_id: str, tokenizer: Any, model: Any, *, source_lang: str = "", target_lang: str = "",
        max_new_tokens: int = _MAX_NEW_TOKENS,
    ) -> None:
        self.model_id = model_id
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.source_lang = source_lang
        self.target_lang = target_lang
        self._forced: dict[str, int] = {}
        if target_lang:
            tid = tokenizer.convert_tokens_to_ids(target_lang)
            if tid is None or tid == tokenizer.unk_token_id:
                raise TranslateError(f"prompts.translate_to: {target_lang!r} is not a language code of {model_id!r}")
            self._forced = {"forced_bos_token_id": int(tid)}
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, model_id: str, *, source_lang: str = "", target_lang: str = "", device: torch.device | str = "cpu",
        max_new_tokens: int = _MAX_NEW_TOKENS,
    ) -> Translator:
        """Load ``model_id`` (hub id or local folder) through ``AutoTokenizer`` + ``AutoModelForSeq2SeqLM``.

        Raises:
            TranslateError: bad folder, refused weights file, not a translation model, unknown language code.
            TranslatorUnavailable: not on this machine and not downloadable (offline).
        """
        # why: transformers is heavy to import, and only needed when a translation is asked for
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

        if not isinstance(model_id, str) or not model_id.strip():
            raise TranslateError(f"{SETTING}: expected a model id or folder, got {model_id!r}")
        src = _source(model_id)
        try:
            config = AutoConfig.from_pretrained(src)
            if not getattr(config, "is_encoder_decoder", False):
                raise TranslateError(f"{SETTING}: {model_id!r} is a {config.model_type!r} model, not a sequence-to-"
                                     "sequence translation model (MarianMT, NLLB, M2M100, mBART)")
            multilingual = config.model_type in _ENGLISH
            if multilingual and not source_lang:
                raise TranslateError(f"prompts.translate_from: {model_id!r} translates many languages; give the "
                                     "prompts' language code (NLLB: 'zho_Hans', 'jpn_Jpan', 'arb_Arab'; M2M100: 'zh')")
            tok_kwargs = {"src_lang": source_lang} if source_lang else {}
            tokenizer = AutoTokenizer.from_pretrained(src, **tok_kwargs)
            model = AutoModelForSeq2SeqLM.from_pretrained(src, **transformers_weights_only())
        except InputError:
            raise
        except Exception as err:  # transformers raises OSError, ValueError, KeyError ... for one cause or another
            raise _load_error(model_id.strip(), err) from None
        if multilingual and not target_lang:
            target_lang = next(
                (c for c in _ENGLISH[config.model_type] if tokenizer.convert_tokens_to_ids(c) != tokenizer.unk_token_id),
                "",
            )
        if source_lang and tokenizer.convert_tokens_to_ids(source_lang) in (None, tokenizer.unk_token_id):
            raise TranslateError(f"prompts.translate_from: {source_lang!r} is not a language code of {model_id!r}")
        return cls(model_id.strip(), tokenizer, model.to(device), source_lang=source_lang, target_lang=target_lang,
                   max_new_tokens=max_new_tokens)

    def __repr__(self) -> str:
        return f"Translator({self.model_id!r}, from={self.source_lang!r}, to={self.target_lang!r})"

    def _generate(self, text: str) -> str:
        # One text per call (no batch padding): a prompt's translation never depends on the other prompts.
        enc = self.tokenizer([text], return_tensors="pt", truncation=True).to(self.model.device)
        budget = min(self.max_new_tokens, 4 * int(enc["input_ids"].shape[-1]) + 16)
        with torch.no_grad():
            out = self.model.generate(
                **enc, num_beams=1, do_sample=False, max_new_tokens=budget, **self._forced
            )
        return _clean(self.tokenizer.decode(out[0], skip_special_tokens=True))

    def translate(self, text: str) -> str:
        """``text`` translated (computed once per distinct text); an empty translation keeps the text itself."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is None:
                hit = self._generate(text) if text.strip() else text
                if not hit:
                    warnings.warn(f"{SETTING}: {self.model_id!r} translated {text[:60]!r} to nothing; it is kept as "
                                  "written", stacklevel=2)
                    hit = text
                self._cache[text] = hit
            return hit

    __call__ = translate


_LOADED: dict[tuple[str, str, str, str], Translator] = {}
_LOADED_LOCK = threading.Lock()


def get_translator(
    model_id: str, *, source_lang: str = "", target_lang: str = "", device: torch.device | str = "cpu"
) -> Translator:
    """The process's :class:`Translator` for these arguments, loaded on first use (see :meth:`Translator.load`)."""
    key = (model_id.strip(), source_lang, target_lang, str(device))
    with _LOADED_LOCK:
        if key not in _LOADED:
            _LOADED[key] = Translator.load(model_id, source_lang=source_lang, target_lang=target_lang, device=device)
        return _LOADED[key]


def _items(value: str | list[str]) -> list[tuple[bool, str]]:
    """(negative?, ``"text:weight"``) of one key's value in :meth:`PromptSchedule.to_json` form."""
    if isinstance(value, str):  # Deforum: "text[:w] --neg negative[:w]"
        pos, *neg = _NEG_RE.split(value, maxsplit=1)
        return [(False, pos.strip())] + ([(True, neg[0].strip())] if neg else [])
    return [(True, i[len("--neg ") :]) if i.startswith("--neg ") else (False, i) for i in value]


def _structure(schedule: PromptSchedule) -> list[tuple[str, list[tuple[bool, float, str | None]]]]:
    """Keys and each prompt's side and weight, without the texts."""
    out = []
    for key, value in schedule.to_json().items():
        weights = [(neg, (wp := WeightedPrompt.parse(item)).weight, wp.weight_expr) for neg, item in _items(value)]
        out.append((key, weights))
    return out


def translate_text_prompts(
    text_prompts: Any, translate: Callable[[str], str], *, setting: str = "prompts.text_prompts"
) -> dict[str, Any]:
    """``text_prompts`` (any shape :meth:`PromptSchedule.from_any` takes) with every prompt text translated by
    ``translate``; keys, weights, weight expressions and negative parts are kept. The result is in the schedule's
    own JSON form (:meth:`PromptSchedule.to_json`) and reads back to a schedule of the same shape."""
    schedule = PromptSchedule.from_any(text_prompts, setting=setting)
    out: dict[str, Any] = {}
    for key, value in schedule.to_json().items():
        done = []
        for neg, item in _items(value):
            prompt = WeightedPrompt.parse(item)
            done.append((neg, replace(prompt, text=_clean(translate(prompt.text)) or prompt.text).to_str()))
        if isinstance(value, str):
            out[key] = done[0][1] + (f" --neg {done[1][1]}" if len(done) > 1 else "")
        else:
            out[key] = [f"--neg {text}" if neg else text for neg, text in done]
    # The new schedule must have the old one's keys, weights and sides: a translation never changes the structure.
    if _structure(PromptSchedule.from_any(out, setting=setting)) != _structure(schedule):
        raise TranslateError(f"{SETTING}: the translated prompts do not read back with the same keys and weights")
    return out


def translate_schedule(settings: Settings, translator: Callable[[str], str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings.prompts.text_prompts`` translated by ``translator`` (a :class:`Translator` or any text function)
    and the record ``{"texts": {original: translation}}`` of the texts it translated."""
    texts: dict[str, str] = {}

    def recording(text: str) -> str:
        texts[text] = _clean(translator(text)) or text  # as translate_text_prompts uses it
        return texts[text]

    new = translate_text_prompts(settings.prompts.text_prompts, recording)
    return new, {"texts": texts}


def _replay(recorded: Mapping[str, Any] | None, settings: Settings) -> Callable[[str], str] | None:
    """A text function over a previous run's record when it was made by the same model and languages and holds
    every text needed (a resume renders with the translations the run started with, without the model)."""
    p = settings.prompts
    if not isinstance(recorded, Mapping):
        return None
    same = (recorded.get("model"), recorded.get("from"), recorded.get("to")) == (p.translate, p.translate_from,
                                                                                 p.translate_to)
    texts = recorded.get("texts")
    if not same or not isinstance(texts, Mapping) or not all(isinstance(v, str) for v in texts.values()):
        return None

    def lookup(text: str) -> str:
        if text not in texts:
            raise KeyError(text)
        return str(texts[text])

    return lookup


def translate_settings(
    settings: Settings,
    translator: Callable[[str], str] | None = None,
    *,
    recorded: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Settings, dict[str, Any]]:
    """The settings a render uses and the translation record for ``run.json`` (``extra[RECORD_KEY]``).

    With ``prompts.translate`` empty, or in guided mode (its CLIP ensemble can be multilingual itself):
    ``(settings, {})`` unchanged. Otherwise a copy with ``prompts.text_prompts``
    and ``latent.negative_prompt`` translated (text only, see :func:`translate_text_prompts`), and
    ``{"model", "from", "to", "texts": {original: translation}, "text_prompts", "negative_prompt"}``. ``recorded``
    (that dict from a run being resumed) is replayed when it matches, so the run keeps its translations; else
    ``translator`` (default: :func:`get_translator` of the settings) translates.
    """
    p = settings.prompts
    if not p.translate.strip() or settings.image.mode != "latent":
        return settings, {}
    replay = _replay(recorded, settings)
    if replay is not None:
        try:
            return _apply(settings, replay)
        except KeyError:  # a text the record lacks: translate afresh
            pass
    if translator is None:
        translator = get_translator(p.translate, source_lang=p.translate_from, target_lang=p.translate_to, device=device)
    return _apply(settings, translator)


def _apply(settings: Settings, translate: Callable[[str], str]) -> tuple[Settings, dict[str, Any]]:
    p = settings.prompts
    text_prompts, record = translate_schedule(settings, translate)
    negative = settings.latent.negative_prompt
    if negative.strip():
        record["texts"][negative] = translated = _clean(translate(negative)) or negative
        negative = translated
    used = settings.copy()
    used.set("prompts.text_prompts", text_prompts)
    used.set("latent.negative_prompt", negative)
    info = {"model": p.translate, "from": p.translate_from, "to": p.translate_to, **record,
            "text_prompts": text_prompts, "negative_prompt": negative}
    return used, info

