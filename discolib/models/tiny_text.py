"""Tiny tokenizers for the offline test models of every family, built in-process (no download).

Real T5 / mT5 / XLM-R tokenizers are SentencePiece unigram models; :func:`write_tiny_t5_tokenizer` and
:func:`write_tiny_xlmr_tokenizer` write small ones of the same kind with the ``tokenizers`` library: a few whole
words, printable ASCII, a few CJK and Arabic characters, and the 256 byte tokens ``<0x00>``..``<0xFF>``. With byte
fallback every other character (any script, emoji, combining marks, control characters) becomes its UTF-8 bytes,
so any text is tokenised without ``<unk>`` and decodes back to itself exactly.

Loading: read the folder with ``AutoTokenizer.from_pretrained`` (or ``PreTrainedTokenizerFast.from_pretrained``):
the folder names the generic ``tokenizers`` backend class, which uses ``tokenizer.json`` as written. Why not
``T5TokenizerFast``: in transformers 5 ``T5Tokenizer.__init__`` (and ``XLMRobertaTokenizer``'s) rebuilds the unigram
model from the vocabulary with ``byte_fallback=False`` and a whitespace-splitting pre-tokenizer, so through that
class an emoji becomes ``<unk>`` and runs of spaces collapse (as the fast T5 class also does to real mT5 vocabularies
that carry byte pieces). A diffusers pipeline built with a tokenizer loaded this way saves the generic class in its
``model_index.json`` and loads it back the same way.

Spaces are ordinary characters of the vocabulary (no ``▁`` metaspace), so a literal ``▁`` in a prompt survives too;
word pieces carry their leading space (``" castle"``). Byte pieces score far below any run of ASCII characters, so
text that spells a byte piece (``"<0x41>"``) stays text. The only strings that do not survive are the special
tokens' own spellings (``"</s>"`` ...), which every Hugging Face tokenizer reads as control tokens.

Token ids: T5 0 ``<pad>``, 1 ``</s>``, 2 ``<unk>``; XLM-R 0 ``<s>``, 1 ``<pad>``, 2 ``</s>``, 3 ``<unk>``, the last id
``<mask>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "T5_WORDS",
    "TINY_TOKENIZER_DIR",
    "tiny_clip_tokenizer",
    "tiny_t5_tokenizer",
    "tiny_vocab_pieces",
    "write_tiny_t5_tokenizer",
    "write_tiny_xlmr_tokenizer",
]

#: The tiny CLIP tokenizer shipped with discolib (made by :func:`discolib.models.latent.write_tiny_tokenizer`).
TINY_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "data" / "tiny_tokenizer"

#: Whole-word pieces (with their leading space, as SentencePiece's "▁"), so the unigram model really segments.
T5_WORDS: tuple[str, ...] = ("a", "the", "castle", "in", "fog", "of", "and", "city", "night", "photo", "forest")
# A few characters of other scripts as pieces of their own: the rest of Unicode goes through the byte tokens.
_SCRIPTS = "城堡雾中夜晚的山水猫狗市森林霧の花と月に桜がかったقلعةفيالضبابمدينة"
# Every printable ASCII character (space included) is a piece: a run of them always outscores one byte piece.
_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
_BYTE_SCORE = -100.0  # far below 6 ASCII pieces (-8 each): "<0x41>" typed as text is never read as byte 0x41


def tiny_vocab_pieces(specials: list[str]) -> list[tuple[str, float]]:
    """The unigram vocabulary: ``specials`` first (ids 0..), then the 256 byte pieces, words, ASCII, scripts."""
    pieces: list[tuple[str, float]] = [(s, 0.0) for s in specials]
    pieces += [(f"<0x{b:02X}>", _BYTE_SCORE) for b in range(256)]
    pieces += [(" " + w, -5.0) for w in T5_WORDS] + [(w, -6.0) for w in T5_WORDS]
    # SentencePiece's word-start pieces too: a model-specific class that re-splits on whitespace and adds "▁"
    # (T5TokenizerFast, see the module docstring) still reads ASCII words; here they are plain text pieces.
    pieces += [("▁", -3.0)] + [("▁" + w, -5.0) for w in T5_WORDS]
    pieces += [(c, -8.0) for c in _ASCII if c not in T5_WORDS]
    pieces += [(c, -10.0) for c in dict.fromkeys(_SCRIPTS)]
    unique: dict[str, float] = {}
    for piece, score in pieces:
        unique.setdefault(piece, score)  # a piece listed twice would shadow an id
    return list(unique.items())


def _byte_fallback_unigram(pieces: list[tuple[str, float]], unk_id: int, template: tuple[str, str],
                           specials: list[tuple[str, int]]) -> Any:
    """A ``tokenizers.Tokenizer``: unigram with byte fallback, no pre-tokenizer, lossless decoder."""
    from tokenizers import Tokenizer, decoders, models, processors  # why: only tiny builds need it

    tok = Tokenizer(models.Unigram(pieces, unk_id, True))
    # ByteFallback turns <0xNN> runs back into characters; Fuse joins the pieces without adding anything.
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single=template[0], pair=template[1], special_tokens=specials)
    return tok


def _save(tok: Any, folder: str | os.PathLike[str], model_max_length: int, **special: str) -> Path:
    from transformers import PreTrainedTokenizerFast  # why: transformers is heavy to import

    # The generic backend class: from_pretrained reads tokenizer.json as written (module docstring).
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, **special)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(out)
    return out


def write_tiny_t5_tokenizer(folder: str | os.PathLike[str], *, model_max_length: int = 32) -> Path:
    """Write a tiny T5-style tokenizer (``tokenizer.json`` + config; load it with ``AutoTokenizer``) into ``folder``;
    deterministic: the same files every time. Ids 0 ``<pad>``, 1 ``</s>``, 2 ``<unk>``; a text ends with ``</s>``."""
    specials = ["<pad>", "</s>", "<unk>"]
    tok = _byte_fallback_unigram(tiny_vocab_pieces(specials), 2, ("$A </s>", "$A </s> $B </s>"), [("</s>", 1)])
    return _save(tok, folder, model_max_length, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")


def write_tiny_xlmr_tokenizer(folder: str | os.PathLike[str], *, model_max_length: int = 77) -> Path:
    """Write a tiny XLM-RoBERTa-style tokenizer into ``folder`` (load it with ``AutoTokenizer``): ids 0 ``<s>``,
    1 ``<pad>``, 2 ``</s>``, 3 ``<unk>``, the last ``<mask>``; a text is ``<s> ... </s>``. Returns the folder;
    its vocabulary size is ``len(AutoTokenizer.from_pretrained(folder))``."""
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    pieces = [*tiny_vocab_pieces(specials), ("<mask>", 0.0)]
    tok = _byte_fallback_unigram(pieces, 3, ("<s> $A </s>", "<s> $A </s> </s> $B </s>"), [("<s>", 0), ("</s>", 2)])
    return _save(
        tok, folder, model_max_length,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
        mask_token="<mask>",
    )


def tiny_clip_tokenizer(**kwargs: Any) -> Any:
    """The shipped tiny CLIP tokenizer (``kwargs`` go to ``from_pretrained``, e.g. ``model_max_length``)."""
    from transformers import (
        CLIPTokenizer,  # why here: transformers is heavy to import; only tiny builds need it
    )

    return CLIPTokenizer.from_pretrained(str(TINY_TOKENIZER_DIR), **kwargs)


def tiny_t5_tokenizer(*, model_max_length: int = 32) -> Any:
    """A tiny T5 tokenizer (:func:`write_tiny_t5_tokenizer`) loaded as ``T5TokenizerFast``, the class the tiny
    family models (SD 3.5, Flux, HunyuanDiT) save in their folders (without byte fallback, as real T5's)."""
    import tempfile

    from transformers import T5TokenizerFast  # why here: as above

    with tempfile.TemporaryDirectory(prefix="discolib-t5tok-") as tmp:
        return T5TokenizerFast.from_pretrained(str(write_tiny_t5_tokenizer(tmp, model_max_length=model_max_length)))
