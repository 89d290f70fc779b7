"""Prompts in every script: tiny byte-fallback tokenizers without loss, and multilingual open_clip models (a tiny
XLM-R text tower built in-process and loaded from a local folder) in the guided mode's CLIP ensemble."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import open_clip
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from discolib.models.clip import ClipEnsemble, ClipModelError, ClipSpec
from discolib.models.load import load_clip_ensemble
from discolib.models.tiny_text import write_tiny_t5_tokenizer, write_tiny_xlmr_tokenizer
from discolib.ops import seeded

#: Chinese, Japanese, Arabic, emoji (with a ZWJ sequence and a variation selector), combining marks, and English.
PROMPTS = [
    "城堡在雾中",
    "霧の中の城と桜",
    "قلعة في الضباب",
    "🎨🏰🌫️ 👩‍🎨",
    "e\u0301te\u0301 c\u0327a",
    "a castle in fog",
]


@pytest.fixture(scope="module", params=["t5", "xlmr"])
def tokenizer(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    write = write_tiny_t5_tokenizer if request.param == "t5" else write_tiny_xlmr_tokenizer
    return AutoTokenizer.from_pretrained(write(tmp_path_factory.mktemp(request.param)))


def _round_trip(tok, text: str) -> None:  # noqa: ANN001
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids, (text, ids)
    assert tok.decode(ids, skip_special_tokens=True) == text


@pytest.mark.parametrize("text", PROMPTS + ["", "  two  spaces\tand\nlines ", "▁ metaspace", "<0x41> stays text"])
def test_scripts_tokenise_without_loss(tokenizer, text: str) -> None:  # noqa: ANN001
    _round_trip(tokenizer, text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_text_round_trips(tokenizer, text: str) -> None:  # noqa: ANN001
    # The special tokens' own spellings are control tokens in every Hugging Face tokenizer.
    assume(not any(str(t) in text for t in tokenizer.all_special_tokens))
    _round_trip(tokenizer, text)


def test_ids_are_fixed(tmp_path: Path) -> None:
    """The ids other helpers build configs from: T5 0 pad, 1 </s>, 2 unk; XLM-R 0 <s>, 1 pad, 2 </s>, 3 unk."""
    t5 = AutoTokenizer.from_pretrained(write_tiny_t5_tokenizer(tmp_path / "t5"))
    xl = AutoTokenizer.from_pretrained(write_tiny_xlmr_tokenizer(tmp_path / "xl"))
    first = (tmp_path / "t5" / "tokenizer.json").read_bytes()
    write_tiny_t5_tokenizer(tmp_path / "t5b")
    assert (tmp_path / "t5b" / "tokenizer.json").read_bytes() == first  # deterministic files
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id) == (0, 1, 2)
    assert t5("a").input_ids[-1] == 1
    assert (xl.bos_token_id, xl.pad_token_id, xl.eos_token_id, xl.unk_token_id) == (0, 1, 2, 3)
    assert xl.mask_token_id == len(xl) - 1
    ids = xl("a").input_ids
    assert ids[0] == 0 and ids[-1] == 2


@pytest.mark.parametrize(
    ("model_id", "name", "tag"),
    [
        ("xlm-roberta-base-ViT-B-32", "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"),
        ("xlm-roberta-large-ViT-H-14", "xlm-roberta-large-ViT-H-14", "frozen_laion5b_s13b_b90k"),
        ("xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k", "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"),
        ("nllb-clip-base", "nllb-clip-base", "v1"),
        ("nllb-clip-large-siglip/v1", "nllb-clip-large-siglip", "v1"),
    ],
)
def test_multilingual_ids_parse(model_id: str, name: str, tag: str) -> None:
    spec = ClipSpec.parse(model_id)
    assert (spec.name, spec.pretrained, spec.kind) == (name, tag, "open_clip")
    assert "hf_model_name" in open_clip.get_model_config(name)["text_cfg"]  # a Hugging Face text tower
    assert name in spec.describe_weights()


def test_multilingual_typo_suggests_the_name(tmp_path: Path) -> None:
    with pytest.raises(ClipModelError, match="xlm-roberta-base-ViT-B-32"):
        ClipSpec.parse("xlm-roberta-bse-ViT-B-32")
    with pytest.raises(ClipModelError, match="not a folder"):
        ClipEnsemble([f"local-dir:{tmp_path / 'missing'}"])


def _tiny_xlmr_clip(folder: Path) -> Path:
    """An open_clip model folder like xlm-roberta-base-ViT-B-32's, tiny: a ViT, an XLM-R text tower (config +
    tokenizer in the same folder) and the random weights saved as open_clip_model.safetensors."""
    from safetensors.torch import save_file
    from transformers import XLMRobertaConfig

    write_tiny_xlmr_tokenizer(folder, model_max_length=32)
    vocab = len(AutoTokenizer.from_pretrained(folder))
    XLMRobertaConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=40, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    ).save_pretrained(folder)
    base = open_clip.get_model_config("xlm-roberta-base-ViT-B-32")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {**base["text_cfg"], "hf_model_name": str(folder), "hf_tokenizer_name": str(folder),
                     "context_length": 32},
    }
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    with seeded(0):
        model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, pretrained_text=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def test_multilingual_clip_in_the_guided_ensemble(tmp_path: Path) -> None:
    folder = _tiny_xlmr_clip(tmp_path / "tiny-xlmr-clip")
    ensemble = load_clip_ensemble([f"local-dir:{folder}"], torch.device("cpu"), torch.float32)  # guided mode's path
    member = ensemble[0]
    assert member.spec.kind == "local-dir" and member.image_size == 32
    tokens = member.tokenizer(PROMPTS)
    assert tokens.shape == (len(PROMPTS), 32)
    hf = member.tokenizer.tokenizer
    for text, row in zip(PROMPTS, tokens.tolist(), strict=True):
        assert hf.unk_token_id not in row
        # open_clip's HFTokenizer cleans the text first (ftfy: NFC, whitespace collapsed); nothing else is lost.
        clean = member.tokenizer.clean_fn(text)
        assert clean == unicodedata.normalize("NFC", " ".join(text.split()))
        assert hf.decode(row, skip_special_tokens=True) == clean
    emb = ensemble.encode_text(PROMPTS)[0]
    assert emb.shape == (len(PROMPTS), 32) and torch.isfinite(emb).all()
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(PROMPTS)), atol=1e-5)
    cos = emb @ emb.T
    off = cos[~torch.eye(len(PROMPTS), dtype=torch.bool)]
    assert (off < 1 - 1e-4).all(), cos  # every prompt has its own embedding
    # The saved weights were loaded: the same folder gives the same embeddings.
    again = ClipEnsemble([f"local-dir:{folder}"]).encode_text(PROMPTS)[0]
    assert torch.equal(emb, again)
    # The images go through the same member.
    img = member.encode_image(torch.rand(2, 3, 48, 48), resize=True)
    assert img.shape == (2, 32) and torch.isfinite(img).all()


def test_multilingual_model_offline_is_a_one_line_weights_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    from discolib.errors import WeightsUnavailable
    from discolib.models.clip import load_clip

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for pretrained in (True, None):  # real weights, and the random-weights fallback (needs the text tower's config)
        with pytest.raises(WeightsUnavailable, match="xlm-roberta-base-ViT-B-32") as info:
            load_clip("xlm-roberta-base-ViT-B-32", pretrained=pretrained)
        assert isinstance(info.value, ClipModelError) and "\n" not in str(info.value)
