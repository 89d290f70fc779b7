"""Checkpoint catalogue, lookup, download (faked), SHA-256 verification, offline messages and loading."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
import torch
from safetensors.torch import load_file, save_file

import discolib.models.hub as ck
from discolib.models.disco import load_disco_unet, load_secondary_model
from discolib.models.hub import UnknownModelError, catalogue_entry, fetch_checkpoint
from discolib.models.secondary import SecondaryDiffusionImageNet2
from discolib.models.state_dict import CheckpointError, load_state_dict, sha256_file

PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 50
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _catalogue(**entry: Any) -> dict[str, Any]:
    return {"models": {"tiny": {"file": "tiny.pt", "sha256": PAYLOAD_SHA, **entry}}}


class _FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager."""


class _NotATensor:
    """Anything pickled that is not a tensor must be refused by weights_only loading."""


# -- files ---------------------------------------------------------------------------------------------------------


def test_sha256_file_streams(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(PAYLOAD)
    assert sha256_file(p) == PAYLOAD_SHA
    assert sha256_file(p, chunk_size=7) == PAYLOAD_SHA


def test_load_state_dict_pt_safetensors_and_wrappers(tmp_path: Path) -> None:
    sd = {"a.weight": torch.randn(2, 3), "b": torch.arange(4)}
    torch.save(sd, tmp_path / "m.pt")
    got = load_state_dict(tmp_path / "m.pt")
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "w.pth")
    got = load_state_dict(tmp_path / "w.pth")
    assert set(got) == set(sd)
    save_file(sd, str(tmp_path / "m.safetensors"))
    got = load_state_dict(tmp_path / "m.safetensors")
    assert set(got) == set(sd) and torch.equal(got["a.weight"], sd["a.weight"])


def test_load_state_dict_refusals(tmp_path: Path) -> None:
    torch.save({"a": _NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_state_dict(tmp_path / "evil.pt")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format '.onnx'"):
        load_state_dict(tmp_path / "m.onnx")
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict(tmp_path / "absent.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_state_dict(tmp_path / "broken.safetensors")


# -- catalogue -----------------------------------------------------------------------------------------------------


def test_catalogue_entries_resolve_names_files_and_shapes() -> None:
    e = catalogue_entry("pixel_art_diffusion_soft_256")
    assert e["name"] == "pixel_art_diffusion_soft_256"
    assert e["adm"]["num_heads"] == 1 and e["adm"]["use_scale_shift_norm"] is False  # "community_256" resolved
    assert catalogue_entry("512x512_diffusion_uncond_finetune_008100.pt")["name"] == (
        "512x512_diffusion_uncond_finetune_008100"
    )


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("512x512_diffusion_uncond_finetune", "512x512_diffusion_uncond_finetune_008100"),
        ("watercolordiffusion_3", "watercolordiffusion_2"),
        ("pixelartdiffusion_4k", "pixelartdiffusion4k"),
    ],
)
def test_unknown_name_suggests_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownModelError, match=f"unknown model '{name}': did you mean .*'{suggestion}'"):
        fetch_checkpoint(name)


def test_one_cache_root_holds_models_and_the_tiny_latent_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from discolib.models.latent import tiny_latent_folder

    monkeypatch.delenv("DISCOLIB_MODELS", raising=False)
    monkeypatch.delenv("DISCOLIB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert ck.cache_root() == tmp_path / "home" / ".cache" / "discolib"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ck.cache_root() == tmp_path / "xdg" / "discolib"
    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path / "cache"))
    assert ck.cache_root() == tmp_path / "cache"
    assert ck.models_dir() == tmp_path / "cache" / "models"
    folder = tiny_latent_folder()
    assert folder.parent == tmp_path / "cache" and (folder / "model_index.json").is_file()
    # DISCOLIB_MODELS still names the checkpoints folder on its own (existing setups), and nothing else.
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path / "mine"))
    assert ck.models_dir() == tmp_path / "mine" and ck.cache_root() == tmp_path / "cache"
    assert tiny_latent_folder() == folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"put it at .*mine/tiny\.pt .*DISCOLIB_MODELS.*DISCOLIB_CACHE"):
        fetch_checkpoint("tiny", catalogue=_catalogue(url="https://example.invalid/tiny.pt"))


# -- lookup, verification, download --------------------------------------------------------------------------------


def test_file_in_models_folder_is_verified_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCOLIB_MODELS", str(tmp_path))
    (tmp_path / "tiny.pt").write_bytes(PAYLOAD)
    assert fetch_checkpoint("tiny", catalogue=_catalogue()) == tmp_path / "tiny.pt"
    assert (tmp_path / "tiny.pt.sha256.json").is_file()

    def no_hashing(*_: object, **__: object) -> str:
        raise AssertionError("a verified, unchanged file must not be hashed again")

    monkeypatch.setattr(ck, "sha256_file", no_hashing)
    assert fetch_checkpoint("tiny", catalogue=_catalogue()) == tmp_path / "tiny.pt"
    monkeypatch.setattr(ck, "_HASHED", {})  # a new process: only the marker remembers
    assert fetch_checkpoint("tiny", catalogue=_catalogue()) == tmp_path / "tiny.pt"


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every file sha256_file reads (and start with an empty in-process memory of verified files)."""
    calls: list[Path] = []
    real = ck.sha256_file

    def counting(path: Any, **kw: Any) -> str:
        calls.append(Path(path))
        return real(path, **kw)

    monkeypatch.setattr(ck, "sha256_file", counting)
    monkeypatch.setattr(ck, "_HASHED", {})
    return calls


def _wait_for_new_ctime(path: Path) -> None:
    """Let the clock tick past the file's ctime, so a rewrite now gets another one (coarse kernel timestamps)."""
    before = path.stat().st_ctime_ns
    for _ in range(200):
        time.sleep(0.01)
        probe = path.with_name(".probe")
        probe.write_bytes(b"")
        changed = probe.stat().st_ctime_ns != before
        probe.unlink()
        if changed:
            return


def test_forged_or_stale_marker_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_hashes(monkeypatch)
    path = tmp_path / "tiny.pt"
    path.write_bytes(PAYLOAD)
    fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue())
    marker = json.loads((tmp_path / "tiny.pt.sha256.json").read_text())
    assert marker["sha256"] == PAYLOAD_SHA and marker["size"] == len(PAYLOAD) and {"mtime_ns", "ctime_ns", "ino"} <= set(marker)
    assert calls == [path]

    # The file is swapped in place for another of the same size and its mtime set back: the marker still has
    # the right hash text, size and mtime, but the ctime moved, so the file is hashed again and refused.
    st = path.stat()
    _wait_for_new_ctime(path)
    bad = PAYLOAD[:-9] + b"tampered\n"
    with open(path, "r+b") as fh:
        fh.write(bad)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    found = hashlib.sha256(bad).hexdigest()
    with pytest.raises(CheckpointError, match=f"expected {PAYLOAD_SHA}, found {found}") as info:
        fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue())
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert calls == [path, path]

    # A hand-written marker (the right hash, this file's size and mtime; no ctime or inode) is not trusted either.
    forged = {"sha256": PAYLOAD_SHA, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    (tmp_path / "tiny.pt.sha256.json").write_text(json.dumps(forged))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue())
    assert calls == [path, path, path]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hostile_marker_files_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO (would block), a deep or a huge marker only mean "not verified yet": the file is hashed."""
    calls = _count_hashes(monkeypatch)
    path = tmp_path / "tiny.pt"
    path.write_bytes(PAYLOAD)
    marker = tmp_path / "tiny.pt.sha256.json"
    os.mkfifo(marker)
    assert fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue()) == path
    assert marker.is_file() and json.loads(marker.read_text())["sha256"] == PAYLOAD_SHA  # replaced atomically
    for hostile in ("[" * 100_000, " " * 10_000 + "{}"):
        monkeypatch.setattr(ck, "_HASHED", {})
        marker.write_text(hostile)
        assert fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue()) == path
    assert calls == [path] * 3


def _secondary_checkpoint(path: Path, seed: int = 0) -> str:
    """A small secondary model (width 8) saved at ``path``; its SHA-256."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sd = SecondaryDiffusionImageNet2(c=8).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sha256_file(path)


def test_catalogue_named_local_file_is_verified_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file named like a catalogue checkpoint is that checkpoint: hashed once, then remembered."""
    models = tmp_path / "models"
    sha = _secondary_checkpoint(models / "sec.pth")
    cat = {"models": {"sec": {"file": "sec.pth", "sha256": sha}}}
    calls = _count_hashes(monkeypatch)
    for _ in range(2):
        assert load_secondary_model(models / "sec.pth", cache_dir=models, catalogue=cat).c == 8
    assert calls == [models / "sec.pth"]
    assert json.loads((models / "sec.pth.sha256.json").read_text())["sha256"] == sha
    monkeypatch.setattr(ck, "_HASHED", {})  # a new process: the marker in the models folder remembers
    load_secondary_model(models / "sec.pth", cache_dir=models, catalogue=cat)
    assert calls == [models / "sec.pth"]

    # Elsewhere: verified too, remembered in this process only; nothing is written beside the user's file.
    other = tmp_path / "mine" / "sec.pth"
    other.parent.mkdir()
    other.write_bytes((models / "sec.pth").read_bytes())
    for _ in range(2):
        load_secondary_model(other, cache_dir=models, catalogue=cat)
    assert calls == [models / "sec.pth", other]
    assert sorted(p.name for p in other.parent.iterdir()) == ["sec.pth"]


def test_catalogue_named_local_file_with_other_content_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    sha = _secondary_checkpoint(tmp_path / "real.pth", seed=0)
    actual = _secondary_checkpoint(models / "sec.pth", seed=1)
    cat = {"models": {"sec": {"file": "sec.pth", "sha256": sha}}}
    for _ in range(2):  # refused every time: a mismatch is never remembered as verified
        with pytest.raises(CheckpointError) as info:
            load_secondary_model(models / "sec.pth", cache_dir=models, catalogue=cat)
        message = str(info.value)
        assert "\n" not in message and str(models / "sec.pth") in message
        assert f"expected {sha}, found {actual}" in message
    assert not (models / "sec.pth.sha256.json").exists()
    assert load_secondary_model(models / "sec.pth", cache_dir=models, catalogue=cat, verify=False).c == 8


def test_sha_mismatch_names_both_hashes_and_is_never_accepted(tmp_path: Path) -> None:
    (tmp_path / "tiny.pt").write_bytes(PAYLOAD + b"corrupted")
    found = hashlib.sha256(PAYLOAD + b"corrupted").hexdigest()
    for _ in range(2):  # the bad file must not become valid on a second look
        with pytest.raises(CheckpointError, match=f"expected {PAYLOAD_SHA}, found {found}"):
            fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue())
    assert not (tmp_path / "tiny.pt.sha256.json").exists()
    assert fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue(), verify=False) == tmp_path / "tiny.pt"
    # local_path is verified the same way
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        fetch_checkpoint("tiny", local_path=tmp_path / "tiny.pt", catalogue=_catalogue())
    with pytest.raises(CheckpointError, match="does not exist"):
        fetch_checkpoint("tiny", local_path=tmp_path / "other.pt", catalogue=_catalogue())


def test_url_download_is_atomic_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    served: list[bytes] = [PAYLOAD + b"tampered", PAYLOAD]
    urls: list[str] = []

    def fake_urlopen(url: str, timeout: float = 0) -> _FakeResponse:
        urls.append(url)
        return _FakeResponse(served.pop(0))

    monkeypatch.setattr(ck, "urlopen", fake_urlopen)
    cat = _catalogue(url="https://example.invalid/tiny.pt")
    with pytest.raises(CheckpointError, match=f"expected {PAYLOAD_SHA}.*The download was deleted"):
        fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=cat)
    assert list(tmp_path.iterdir()) == []  # neither the bad file nor a temporary part is left
    path = fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=cat)
    assert path == tmp_path / "tiny.pt" and path.read_bytes() == PAYLOAD
    assert urls == ["https://example.invalid/tiny.pt"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.pt", "tiny.pt.sha256.json"]


def test_hub_download_uses_hf_hub_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls: list[dict[str, Any]] = []

    def fake_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        out = Path(kwargs["local_dir"]) / filename
        out.write_bytes(PAYLOAD)
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    cat = _catalogue(hf_repo="spaces/someone/tiny_space (a Space)")
    assert fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=cat) == tmp_path / "tiny.pt"
    assert calls == [{"repo_id": "someone/tiny_space", "filename": "tiny.pt", "repo_type": "space", "local_dir": tmp_path}]


def test_offline_message_says_what_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as exc:
        fetch_checkpoint("256x256_diffusion_uncond", cache_dir=tmp_path)
    msg = str(exc.value)
    assert "256x256_diffusion_uncond.pt" in msg and str(tmp_path / "256x256_diffusion_uncond.pt") in msg
    assert "HF_HUB_OFFLINE" in msg and "openaipublic.blob.core.windows.net" in msg
    assert "a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1" in msg
    with pytest.raises(CheckpointError, match=r"huggingface\.co/spaces/huggi/secondary_model_imagenet_2\.pth"):
        load_secondary_model(cache_dir=tmp_path)


def test_network_failure_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def down(url: str, timeout: float = 0) -> _FakeResponse:
        raise URLError("Name or service not known")

    monkeypatch.setattr(ck, "urlopen", down)
    with pytest.raises(CheckpointError, match=r"download failed .*Name or service not known.*put it at .*tiny\.pt"):
        fetch_checkpoint("tiny", cache_dir=tmp_path, catalogue=_catalogue(url="https://example.invalid/tiny.pt"))
    assert list(tmp_path.iterdir()) == []


# -- models --------------------------------------------------------------------------------------------------------


def _adm_fixture(fixtures_dir: Path, name: str) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    cfg = json.loads((fixtures_dir / f"{name}.json").read_text())
    return fixtures_dir / f"{name}.safetensors", cfg, load_file(str(fixtures_dir / f"{name}.io.safetensors"))


def _rel_err(out: torch.Tensor, expected: torch.Tensor) -> float:
    return float((out - expected).norm() / expected.norm())


def test_load_disco_unet_through_the_catalogue(fixtures_dir: Path, tmp_path: Path) -> None:
    src, cfg, io_ = _adm_fixture(fixtures_dir, "adm_disco256_family")
    (tmp_path / "tiny.safetensors").write_bytes(src.read_bytes())
    cat = {"models": {"tiny_adm": {"file": "tiny.safetensors", "sha256": sha256_file(src), "adm": "shape"}}, "shape": cfg}
    model = load_disco_unet("tiny_adm", cache_dir=tmp_path, catalogue=cat)
    with torch.no_grad():
        out = model(io_["x"][:1], io_["t"][:1]).sample
    assert _rel_err(out, io_["expected"][:1]) < 1e-4


def test_load_disco_unet_from_pt_file_with_inferred_config(fixtures_dir: Path, tmp_path: Path) -> None:
    src, cfg, io_ = _adm_fixture(fixtures_dir, "adm_community_family")
    torch.save(load_file(str(src)), tmp_path / "my_finetune.pt")
    with pytest.raises(CheckpointError, match="pass image_size="):
        load_disco_unet(tmp_path / "my_finetune.pt")
    with pytest.warns(UserWarning, match="head split"):
        model = load_disco_unet(tmp_path / "my_finetune.pt", image_size=cfg["image_size"])
    with torch.no_grad():
        out = model(io_["x"][:1], io_["t"][:1]).sample
    assert _rel_err(out, io_["expected"][:1]) < 1e-4


def test_wrong_shapes_in_checkpoint_name_the_key(fixtures_dir: Path, tmp_path: Path) -> None:
    src, cfg, _ = _adm_fixture(fixtures_dir, "adm_disco256_family")
    sd = load_file(str(src))
    sd["middle_block.1.proj_out.weight"] = torch.zeros(64, 32, 1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"'middle_block\.1\.proj_out\.weight'.*expected shape \(64, 64, 1\), found \(64, 32, 1\)"):
        load_disco_unet(tmp_path / "bad.pt", config=cfg)


def test_load_disco_unet_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_disco_unet(tmp_path / "nothing.pt")
    (tmp_path / "s.pth").write_bytes(b"")
    cat = {"models": {"secondary_model_imagenet_2": {"file": "s.pth"}}}
    with pytest.raises(CheckpointError, match="use load_secondary_model"):
        load_disco_unet("secondary_model_imagenet_2", cache_dir=tmp_path, catalogue=cat)
    with pytest.raises(UnknownModelError, match="did you mean"):
        load_disco_unet("256x256_diffusion_uncnd")


def test_load_secondary_model_from_pth(fixtures_dir: Path, tmp_path: Path) -> None:
    sd = load_file(str(fixtures_dir / "secondary_imagenet2_c8.safetensors"))
    torch.save(sd, tmp_path / "secondary_model_imagenet_2.pth")
    # Named like the catalogue's secondary model, so it is checked against its SHA-256: the fixture is not it.
    with pytest.raises(CheckpointError, match="SHA-256 mismatch for 'secondary_model_imagenet_2'"):
        load_secondary_model(tmp_path / "secondary_model_imagenet_2.pth")
    model = load_secondary_model(tmp_path / "secondary_model_imagenet_2.pth", verify=False)
    assert isinstance(model, SecondaryDiffusionImageNet2) and model.c == 8
    io_ = load_file(str(fixtures_dir / "secondary_imagenet2_c8.io.safetensors"))
    with torch.no_grad():
        out = model(io_["x"], io_["t"])
    assert _rel_err(out.pred, io_["pred"]) < 1e-4
    # by catalogue name from the models folder (the fixture's hash is not the real one: verify=False)
    assert load_secondary_model(cache_dir=tmp_path, verify=False).c == 8
