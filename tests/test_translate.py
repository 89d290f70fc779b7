"""prompts.translate: a tiny random MarianMT model built in-process, saved, and loaded through the real path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from discolib.config.settings import Settings
from discolib.errors import InputError, WeightsUnavailable
from discolib.models.tiny_text import write_tiny_t5_tokenizer
from discolib.models.translate import (
    RECORD_KEY,
    TranslateError,
    Translator,
    TranslatorUnavailable,
    translate_settings,
    translate_text_prompts,
)
from discolib.schedules.prompts import PromptSchedule

_TOKENS = 6  # a random model never says </s>: short outputs keep the test fast


@pytest.fixture(scope="module")
def marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MarianMT model + tiny byte-fallback tokenizer, saved as a hub download would be."""
    from transformers import AutoTokenizer, MarianConfig, MarianMTModel

    folder = write_tiny_t5_tokenizer(tmp_path_factory.mktemp("marian"), model_max_length=64)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    cfg = MarianConfig(
        vocab_size=vocab, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, forced_eos_token_id=1,
        init_std=0.5,  # why: wide random weights make the output depend on the input within a few tokens
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        MarianMTModel(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def translator(marian: Path) -> Translator:
    return Translator.load(str(marian), max_new_tokens=_TOKENS)


def test_translation_is_deterministic_and_cached(marian: Path, translator: Translator) -> None:
    text = "城堡 in fog"
    out = translator.translate(text)
    assert out and out != text
    assert translator.translate(text) == out  # the cache
    assert translator._cache == {text: out}
    # A second, independent load of the same folder translates the same text the same way (greedy decoding).
    again = Translator.load(str(marian), max_new_tokens=_TOKENS)
    assert again.translate(text) == out
    assert again.translate("夜の城") != out  # another text, another translation


def test_text_prompts_keep_weights_negatives_and_keys(translator: Translator) -> None:
    disco = {"0": ["城堡 in fog:2", "猫:-0.5", "--neg 雾:0.7"], "max_f/2": ["夜の城:`0.5+t/10`"]}
    deforum = {"0": "قلعة في الضباب:1.5 --neg 🎨 blurry:0.3", "10": "花と月"}
    for source in (disco, deforum):
        out = translate_text_prompts(source, translator)
        before, after = PromptSchedule.from_any(source), PromptSchedule.from_any(out)
        assert list(after.to_json()) == list(before.to_json())  # the same keys (expressions kept as written)
        for (_, old), (_, new) in zip(before.items(20), after.items(20), strict=True):
            for side in ("positive", "negative"):
                olds, news = getattr(old, side), getattr(new, side)
                assert [(p.weight, p.weight_expr) for p in news] == [(p.weight, p.weight_expr) for p in olds]
                assert [p.text for p in news] == [translator.translate(p.text) for p in olds]
                assert all(p.text != q.text for p, q in zip(news, olds, strict=True))
    # Stable: the same input gives the same output.
    assert translate_text_prompts(disco, translator) == translate_text_prompts(disco, translator)


def test_translate_settings_and_record_replay(marian: Path, translator: Translator) -> None:
    s = Settings()
    s.set("image.mode", "latent")
    s.set("prompts.text_prompts", {"0": "城堡 in fog:2 --neg 雾", "5": "夜の城"})
    s.set("latent.negative_prompt", "ぼやけた")
    s.set("prompts.translate", str(marian))
    used, record = translate_settings(s, translator)
    assert s.prompts.text_prompts == {"0": "城堡 in fog:2 --neg 雾", "5": "夜の城"}  # the user's settings unchanged
    assert used.prompts.text_prompts == record["text_prompts"]
    assert used.prompts.text_prompts["0"] == f"{translator.translate('城堡 in fog')}:2 --neg {translator.translate('雾')}"
    assert used.latent.negative_prompt == record["negative_prompt"] == translator.translate("ぼやけた")
    assert record["model"] == str(marian) and set(record["texts"]) == {"城堡 in fog", "雾", "夜の城", "ぼやけた"}
    recorded = json.loads(json.dumps({RECORD_KEY: record}))[RECORD_KEY]  # as run.json keeps it

    def no_model(text: str) -> str:
        raise AssertionError("a resume must replay the record, not translate")

    replayed, record2 = translate_settings(s, no_model, recorded=recorded)
    assert replayed.prompts.text_prompts == used.prompts.text_prompts and record2 == record
    # A record of another model is not replayed.
    other = {**recorded, "model": "Helsinki-NLP/opus-mt-ja-en"}
    assert translate_settings(s, translator, recorded=other)[1] == record
    # Guided mode (multilingual CLIP models instead) and off: nothing changes, nothing is recorded.
    s.set("image.mode", "guided")
    assert translate_settings(s, no_model) == (s, {})
    s.set("image.mode", "latent")
    s.set("prompts.translate", "")
    assert translate_settings(s, no_model) == (s, {})


def test_errors_name_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TranslateError, match=r"prompts\.translate: folder .* does not exist"):
        Translator.load(str(tmp_path / "nope"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TranslateError, match=r"prompts\.translate: .*not a sequence-to-sequence"):
        Translator.load(str(tmp_path / "bert"))
    (tmp_path / "nllb").mkdir()
    (tmp_path / "nllb" / "config.json").write_text(json.dumps({"model_type": "m2m_100", "is_encoder_decoder": True}))
    with pytest.raises(TranslateError, match=r"prompts\.translate_from: .*zho_Hans"):
        Translator.load(str(tmp_path / "nllb"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(TranslatorUnavailable, match=r"prompts\.translate: .*offline") as info:
        Translator.load("discolib-tests/no-such-translator")
    assert isinstance(info.value, (InputError, WeightsUnavailable)) and "\n" not in str(info.value)


def test_unknown_target_language(marian: Path) -> None:
    with pytest.raises(TranslateError, match=r"prompts\.translate_to: 'xx_Fake'"):
        Translator.load(str(marian), target_lang="xx_Fake")


def test_multilingual_model_takes_language_codes(tmp_path: Path) -> None:
    """An NLLB-shaped (M2M100) tiny model: the source code is required and checked, English is forced as the first
    generated token."""
    from transformers import AutoTokenizer, M2M100Config, M2M100ForConditionalGeneration

    folder = write_tiny_t5_tokenizer(tmp_path / "nllb", model_max_length=64)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_tokens(["zho_Hans", "eng_Latn"], special_tokens=True)
    tok.save_pretrained(folder)
    cfg = M2M100Config(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=1, init_std=0.5,
    )
    with torch.random.fork_rng():
        torch.manual_seed(2)  # a random draw whose greedy output does not end at once (seed 0 says </s> first)
        M2M100ForConditionalGeneration(cfg).save_pretrained(folder)
    with pytest.raises(TranslateError, match="prompts.translate_from"):
        Translator.load(str(folder))
    with pytest.raises(TranslateError, match=r"prompts\.translate_from: 'xx_Fake'"):
        Translator.load(str(folder), source_lang="xx_Fake")
    tr = Translator.load(str(folder), source_lang="zho_Hans", max_new_tokens=_TOKENS)
    assert tr.target_lang == "eng_Latn"
    assert tr._forced == {"forced_bos_token_id": tok.convert_tokens_to_ids("eng_Latn")}
    out = tr.translate("城堡在雾中")
    assert out and out != "城堡在雾中" and Translator.load(
        str(folder), source_lang="zho_Hans", max_new_tokens=_TOKENS
    ).translate("城堡在雾中") == out


def test_a_render_uses_records_and_replays_the_translation(tmp_path: Path, marian: Path) -> None:
    # The render loop translates the prompts once, writes the translation into run.json, and a resume replays
    # the record (no model needed) so the resumed frames see the same prompts.
    from discolib.config.presets import apply_preset
    from discolib.models.translate import RECORD_KEY
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "2D"), "tiny-latent")
    for k, v in {"prompts.translate": str(marian), "max_frames": 2, "make_video": False, "image.steps": 2,
                 "prompts.text_prompts": {"0": "雾中的城堡:2 --neg 模糊"}}.items():
        s.set(k, v)
    first = render(s, out=tmp_path, progress=False)
    record = RunFolder.open(first.run_dir).read_record()
    tr = record.extra[RECORD_KEY]
    assert tr["model"] == str(marian) and "雾中的城堡" in tr["texts"]
    assert json.loads(RunFolder.open(first.run_dir).settings_path.read_text())["prompts"]["text_prompts"] == {
        "0": "雾中的城堡:2 --neg 模糊"
    }  # settings.json keeps the user's own text
    # Replay: the model folder is gone, the record still gives the same prompts.
    moved = marian.with_name(marian.name + "-gone")
    marian.rename(moved)
    try:
        again = render(s, out=tmp_path, resume=first.run_dir, progress=False)
    finally:
        moved.rename(marian)
    assert again.status == "done"
    assert RunFolder.open(first.run_dir).read_record().extra[RECORD_KEY] == tr


def test_a_translation_that_fails_leaves_a_run_folder_that_says_why(tmp_path: Path) -> None:
    from discolib.config.presets import apply_preset
    from discolib.run.loop import render
    from discolib.run.runs import RunFolder

    s = apply_preset(Settings.defaults("latent", "2D"), "tiny-latent")
    s.set("prompts.translate", "nobody/no-such-translator")
    with pytest.raises(InputError, match=r"prompts\.translate"):
        render(s, out=tmp_path, progress=False)
    record = RunFolder.latest(tmp_path, s.run.batch_name).read_record()
    assert record.status == "failed" and "prompts.translate" in record.error
