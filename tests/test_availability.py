"""Model availability before a render (``discolib.models.availability``), ``models.models_root``, and the quiet
random-weight CLIP models.

Offline (``HF_HUB_OFFLINE=1``) with every cache in ``tmp_path``: nothing is downloaded or built here, except the tiny
CLIP model of the warning test.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from discolib import Settings, apply_preset, preset_mode
from discolib.models import hub
from discolib.models.availability import downloads_possible, missing_weights, weights_problem

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEPTH = "depth-anything/Depth-Anything-V2-Small-hf"


@pytest.fixture(autouse=True)
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline, and every cache discolib or the hub would read is an empty folder under tmp_path."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DISCOLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DISCOLIB_MODELS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub read HF_HOME at import: its cache folder is set where every hub client reads it.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # open_clip's URL cache, ~/.cache/clip
    return tmp_path


def preset_settings(preset: str, animation: str = "None") -> Settings:
    return apply_preset(Settings.defaults(preset_mode(preset), animation), preset)


def fake_snapshot(hub_cache: Path, repo_id: str, files: tuple[str, ...] = ("model_index.json",)) -> Path:
    """A hub cache entry as huggingface_hub writes it: refs/main naming a snapshot folder that holds ``files``."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for name in files:
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_text("{}")
    return snap


@pytest.mark.parametrize("preset", ["tiny", "tiny-latent"])
@pytest.mark.parametrize("animation", ["None", "2D", "3D"])
def test_tiny_presets_need_nothing(preset: str, animation: str) -> None:
    s = preset_settings(preset, animation)
    assert missing_weights(s) == []
    assert weights_problem(s) is None


def test_sd15_offline_names_model_and_depth() -> None:
    line = weights_problem(preset_settings("sd-1.5", "3D"))
    assert line is not None and "\n" not in line
    assert line.startswith("offline and not downloaded: ")
    assert f"sd-1.5 ({SD15})" in line and f"depth model {DEPTH}" in line
    assert "README 'Models'" in line and "tiny-latent" in line


def test_disco_offline_names_checkpoints_and_clip() -> None:
    line = weights_problem(preset_settings("disco-512"))
    assert line is not None
    for name in ("512x512_diffusion_uncond_finetune_008100", "secondary_model_imagenet_2", "CLIP ViT-B/32", "CLIP RN50"):
        assert name in line
    assert "depth model" not in line  # stills: no depth
    assert line.endswith("pick the tiny preset")


def test_random_weights_need_nothing() -> None:
    s = preset_settings("sd-1.5", "3D")
    s.set("models.random_weights", True)
    assert weights_problem(s) is None


def test_cached_snapshots_count_as_available(empty_caches: Path) -> None:
    from huggingface_hub import constants

    hub_cache = Path(constants.HF_HUB_CACHE)
    s = preset_settings("sd-1.5", "3D")
    fake_snapshot(hub_cache, SD15, ("unet/config.json",))
    assert [str(w) for w in missing_weights(s)] == [f"depth model {DEPTH}"]
    fake_snapshot(hub_cache, DEPTH, ("config.json",))
    assert weights_problem(s) is None


def test_models_root_holds_checkpoints_and_snapshots(empty_caches: Path) -> None:
    """models.models_root: catalogue checkpoints in it, hub snapshots in its hub/ (and only while it is in use)."""
    root = empty_caches / "drive" / "models"
    s = preset_settings("disco-256")
    s.set("models.models_root", str(root))
    s.set("models.clip_models", ["ViT-B/32"])
    entry = hub.catalogue_entry(s.models.diffusion_model)
    root.mkdir(parents=True)
    (root / entry["file"]).write_bytes(b"not checked here")
    (root / hub.catalogue_entry("secondary_model_imagenet_2")["file"]).write_bytes(b"x")
    assert [w.what for w in missing_weights(s)] == ["CLIP ViT-B/32"]
    fake_snapshot(root / "hub", "timm/vit_base_patch32_clip_224.openai", ("open_clip_model.safetensors",))
    assert weights_problem(s) is None
    # The same files are not found without models_root: the default folders are empty.
    s.set("models.models_root", "")
    assert len(missing_weights(s)) == 3


def test_use_models_root_scopes_models_dir_and_hub_cache(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("DISCOLIB_MODELS", str(empty_caches / "env-models"))
    before = constants.HF_HUB_CACHE
    assert hub.models_dir() == empty_caches / "env-models"
    with hub.use_models_root(empty_caches / "root") as folder:
        assert folder == empty_caches / "root" == hub.models_dir()
        assert constants.HF_HUB_CACHE == str(empty_caches / "root" / "hub")
        assert hub.models_dir("/explicit") == Path("/explicit")  # an explicit argument wins
    assert hub.models_dir() == empty_caches / "env-models" and constants.HF_HUB_CACHE == before
    with hub.use_models_root(""):  # empty: as before
        assert hub.models_dir() == empty_caches / "env-models" and constants.HF_HUB_CACHE == before


def test_online_when_the_hub_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the offline variables, one TCP connect decides; no connection is really made here."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls: list[tuple[str, int]] = []

    class Conn:
        def __enter__(self) -> Conn:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def answers(address: tuple[str, int], timeout: float) -> Conn:
        calls.append(address)
        return Conn()

    def refuses(address: tuple[str, int], timeout: float) -> Conn:
        calls.append(address)
        raise OSError("network is unreachable")

    s = preset_settings("sd-1.5")
    monkeypatch.setattr(socket, "create_connection", answers)
    assert downloads_possible() and weights_problem(s) is None  # missing, but a download will fetch it
    monkeypatch.setattr(socket, "create_connection", refuses)
    assert not downloads_possible()
    assert weights_problem(s) is not None
    assert calls[0] == ("huggingface.co", 443)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    calls.clear()
    assert not downloads_possible() and calls == []  # the variable alone decides, no connect


def test_tiny_clip_logs_no_pretrained_weights_warning(caplog: pytest.LogCaptureFixture) -> None:
    """open_clip logs "No pretrained weights loaded" on the root logger for random models; discolib's own random
    models are random on purpose, so that record is dropped there (and only there)."""
    import open_clip

    from discolib.models.clip import TINY_MODELS, load_clip

    with caplog.at_level(logging.WARNING):
        load_clip("tiny-vit")
    assert not [r for r in caplog.records if "No pretrained weights" in r.getMessage()]
    caplog.clear()
    base, overrides = TINY_MODELS["tiny-vit"]
    with caplog.at_level(logging.WARNING):
        open_clip.create_model(base, pretrained=None, **overrides)  # outside discolib the warning is untouched
    assert [r.name for r in caplog.records if "No pretrained weights" in r.getMessage()] == ["root"]
    assert not logging.getLogger().filters


def test_tiny_names_are_the_loaders_own() -> None:
    """The tiny names availability knows without importing the loaders are exactly theirs."""
    import open_clip

    from discolib.models import availability
    from discolib.models.clip import TINY_MODELS
    from discolib.models.depth import TINY_DEPTH_PRESET
    from discolib.models.latent import LATENT_PRESETS

    assert LATENT_PRESETS[availability.TINY_LATENT].model_id == availability.TINY_LATENT
    tiny_presets = {name for name in LATENT_PRESETS if name.startswith("tiny")}
    assert tiny_presets == set(availability.TINY_LATENTS)  # a new tiny preset must be known here too
    assert all(LATENT_PRESETS[name].model_id == name for name in availability.TINY_LATENTS)
    assert TINY_DEPTH_PRESET == availability.TINY_DEPTH
    assert all(name.startswith(availability.TINY_CLIP_PREFIX) for name in TINY_MODELS)
    assert not [m for m in open_clip.list_models() if m.startswith(availability.TINY_CLIP_PREFIX)]


def test_tiny_presets_import_no_model_library() -> None:
    """Checking a tiny preset imports neither diffusers nor transformers nor open_clip (the panel checks in a thread
    while a cell may be importing them, and diffusers' lazy module breaks under two importing threads)."""
    code = (
        "import sys\n"
        "from discolib import Settings, apply_preset, preset_mode\n"
        "from discolib.models.availability import weights_problem\n"
        "for p in ('tiny', 'tiny-latent'):\n"
        "    assert weights_problem(apply_preset(Settings.defaults(preset_mode(p), '3D'), p)) is None\n"
        "print(sorted(m for m in ('diffusers', 'transformers', 'open_clip') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_render_here_refuses_a_new_run_whose_weights_are_missing_offline(empty_caches: Path) -> None:
    """The render cell says in one line which weights are missing, before the render loads anything."""
    from discolib.errors import WeightsUnavailable
    from discolib_widgets.view import RenderView, render_here

    settings = preset_settings("sd-1.5", "3D")
    view = RenderView(backend="widgets")
    with pytest.raises(WeightsUnavailable, match="sd-1.5") as info:
        render_here(settings, out=empty_caches / "runs", view=view)
    lines = info.value._render_traceback_()  # what IPython prints instead of a traceback
    assert len(lines) == 1 and "sd-1.5" in lines[0]
    assert not (empty_caches / "runs").exists()  # nothing was started
    assert view.state.status == "failed" and "sd-1.5" in view.state.text
