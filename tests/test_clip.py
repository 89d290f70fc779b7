"""CLIP model ids, offline tiny models and the ensemble (discolib.models.clip)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from discolib.models.clip import (
    DISCO_ALIASES,
    ClipEnsemble,
    ClipMember,
    ClipModelError,
    ClipSpec,
    ClipWeightsError,
    load_clip,
)


@pytest.fixture(scope="module")
def ensemble() -> ClipEnsemble:
    return ClipEnsemble(["tiny-vit", "tiny-rn"], device="cpu", pretrained=None)


@pytest.mark.parametrize(
    ("model_id", "name", "pretrained", "kind"),
    [
        ("ViT-B-32/openai", "ViT-B-32", "openai", "open_clip"),
        ("ViT-B-32/laion2b_e16", "ViT-B-32", "laion2b_e16", "open_clip"),
        ("ViT-B-32", "ViT-B-32", "openai", "open_clip"),
        ("ViT-B/32", "ViT-B-32", "openai", "open_clip"),
        ("ViT-B/16", "ViT-B-16", "openai", "open_clip"),
        ("RN50", "RN50", "openai", "open_clip"),
        ("RN50x4", "RN50x4", "openai", "open_clip"),
        ("ViT-L/14", "ViT-L-14", "openai", "open_clip"),
        ("ViT-L/14@336px", "ViT-L-14-336", "openai", "open_clip"),
        ("ViT-B/32/laion400m_e31", "ViT-B-32", "laion400m_e31", "open_clip"),
        ("ViTB32_laion400m_32", "ViT-B-32", "laion400m_e32", "open_clip"),
        ("RN50_yffcc15m", "RN50", "yfcc15m", "open_clip"),
        ("ViT-B-32/models/clip.bin", "ViT-B-32", "models/clip.bin", "open_clip"),
        ("ViT-B-32//abs/clip.safetensors", "ViT-B-32", "/abs/clip.safetensors", "open_clip"),
        ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None, "hf-hub"),
        ("tiny-vit", "tiny-vit", None, "tiny"),
        ("tiny-rn", "tiny-rn", None, "tiny"),
    ],
)
def test_parse_model_ids(model_id: str, name: str, pretrained: str | None, kind: str) -> None:
    spec = ClipSpec.parse(model_id)
    assert (spec.name, spec.pretrained, spec.kind, spec.model_id) == (name, pretrained, kind, model_id)


def test_openai_weights_get_quick_gelu_and_local_files_do_not() -> None:
    assert ClipSpec.parse("ViT-B/32").quick_gelu
    assert ClipSpec.parse("RN50").quick_gelu
    # The -quickgelu config already has it; laion weights were trained with plain GELU.
    assert not ClipSpec.parse("ViT-B-32-quickgelu/laion400m_e31").quick_gelu
    assert not ClipSpec.parse("ViT-B-32/laion2b_e16").quick_gelu
    local = ClipSpec.parse("ViT-B-32/w.bin")
    assert local.is_local_file and not local.quick_gelu


def test_disco_aliases_all_resolve() -> None:
    for alias, (name, tag) in DISCO_ALIASES.items():
        spec = ClipSpec.parse(alias)
        assert (spec.name, spec.pretrained) == (name, tag)
        assert not spec.is_local_file, alias


@pytest.mark.parametrize(("bad", "suggested"), [("ViT-B-23", "ViT-B-32"), ("RN5O", "RN50"), ("tiny-vti", "tiny-vit")])
def test_unknown_model_lists_close_names(bad: str, suggested: str) -> None:
    with pytest.raises(ClipModelError, match="Close names") as err:
        ClipSpec.parse(bad)
    assert isinstance(err.value, ValueError)
    assert suggested in str(err.value)
    assert bad in str(err.value)


def test_unknown_tag_lists_close_tags() -> None:
    with pytest.raises(ClipModelError, match="laion2b_e16"):
        ClipSpec.parse("ViT-B-32/lion2b_e16")


@pytest.mark.parametrize("bad", ["", "   ", "hf-hub:", "hf-hub:no-slash", "ViT-B-32/", "tiny-vit/openai"])
def test_malformed_ids_raise(bad: str) -> None:
    with pytest.raises(ClipModelError):
        ClipSpec.parse(bad)


def test_tiny_ensemble_encodes_text_and_images(ensemble: ClipEnsemble) -> None:
    assert len(ensemble) == 2
    assert ensemble.image_sizes == [32, 64]  # each member keeps its own input size
    texts = ensemble.encode_text(["a lighthouse at dusk", "trending on artstation", "a cat"])
    for emb in texts:
        assert emb.shape == (3, 32) and emb.dtype == torch.float32
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    for member in ensemble:
        s = member.image_size
        images = torch.rand(5, 3, s, s, generator=torch.Generator().manual_seed(1))
        emb = member.encode_image(images)
        assert emb.shape == (5, 32)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(5))
    # The ensemble-level call resizes one image to every member's size.
    embs = ensemble.encode_image(torch.rand(2, 3, 40, 56))
    assert [e.shape for e in embs] == [(2, 32), (2, 32)]


def test_encode_image_is_differentiable(ensemble: ClipEnsemble) -> None:
    member = ensemble[1]
    images = torch.rand(2, 3, 64, 64, requires_grad=True)
    member.encode_image(images).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in member.model.parameters())  # frozen


def test_encode_image_checks_size(ensemble: ClipEnsemble) -> None:
    member = ensemble[0]
    with pytest.raises(ValueError, match="32x32"):
        member.encode_image(torch.rand(1, 3, 64, 64))
    assert member.encode_image(torch.rand(1, 3, 64, 64), resize=True).shape == (1, 32)


def test_normalisation_uses_the_model_mean_and_std(ensemble: ClipEnsemble) -> None:
    member = ensemble[0]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    img = mean.expand(1, 3, 32, 32) + std  # one std above the mean everywhere
    torch.testing.assert_close(member.normalize(img), torch.ones(1, 3, 32, 32))


def test_text_embeddings_are_cached_per_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    member = load_clip("tiny-vit", pretrained=None)
    calls: list[int] = []
    original = member.model.encode_text

    def spy(tokens: torch.Tensor) -> torch.Tensor:
        calls.append(tokens.shape[0])
        return original(tokens)

    monkeypatch.setattr(member.model, "encode_text", spy)
    first = member.encode_text(["a cat", "a dog"])
    again = member.encode_text(["a cat", "a dog"])
    assert calls == [2]  # encoded once
    torch.testing.assert_close(first, again)
    mixed = member.encode_text(["a dog", "a fox", "a dog"])
    assert calls == [2, 1]  # only the new prompt, once even if repeated
    torch.testing.assert_close(mixed[0], first[1])
    torch.testing.assert_close(mixed[2], first[1])
    member.clear_cache()
    member.encode_text(["a cat"])
    assert calls == [2, 1, 1]


def test_text_cache_drops_least_recently_used() -> None:
    member = load_clip("tiny-vit", pretrained=None)
    member.cache_size = 2
    member.encode_text(["a"])
    member.encode_text(["b"])
    member.encode_text(["a"])  # refresh "a"
    member.encode_text(["c"])  # evicts "b"
    assert list(member._cache) == ["a", "c"]


def test_weight_suffix_is_not_part_of_the_text(ensemble: ClipEnsemble) -> None:
    # Prompts arrive split; "a cat" and Disco's unsplit "a cat:2" are different texts to CLIP.
    member = ensemble[0]
    plain, suffixed = member.encode_text(["a cat", "a cat:2"])
    assert not torch.allclose(plain, suffixed)


def test_tiny_models_are_reproducible_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = load_clip("tiny-rn", pretrained=None)
    after = torch.rand(3)
    b = load_clip("tiny-rn", pretrained=None)
    torch.testing.assert_close(after, expected)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb
        torch.testing.assert_close(va, vb)
    assert isinstance(a, ClipMember) and a.image_size == 64


def test_missing_local_weights_file_says_how_to_provide_them(tmp_path: Path) -> None:
    with pytest.raises(ClipWeightsError, match="does not exist") as err:
        load_clip(f"ViT-B-32/{tmp_path}/missing.bin")
    assert "ViT-B-32/path/to/" in str(err.value)


@pytest.mark.skipif(not huggingface_hub.constants.HF_HUB_OFFLINE, reason="needs HF_HUB_OFFLINE=1 (no downloads in tests)")
def test_uncached_real_weights_fail_with_a_helpful_message(tmp_path: Path) -> None:
    with pytest.raises(ClipWeightsError) as err:
        load_clip("ViT-B/32", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "ViT-B-32" in msg and "openai" in msg
    assert str(tmp_path) in msg  # which cache was looked in
    assert "ViT-B-32/path/to/" in msg  # how to pass a local file
    assert isinstance(err.value, ValueError)


def test_empty_ensemble_rejected() -> None:
    with pytest.raises(ClipModelError):
        ClipEnsemble([], pretrained=None)
