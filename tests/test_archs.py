"""Architecture data (discolib/data/archs) and the tiny/random builders: the configs build the published shapes.

The random-weights fallbacks themselves are tested in test_load.py.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from discolib.config.presets import apply_preset
from discolib.config.settings import Settings
from discolib.models import archs
from discolib.models.archs import (
    FAMILY_ARCHS,
    LATENT_ARCHS,
    LATENT_SCHEDULERS,
    SD_SCHEDULER,
    SD_VAE,
    build_tiny_adm_unet,
    build_tiny_secondary,
)
from discolib.models.latent import make_scheduler


@pytest.mark.parametrize("preset", list(LATENT_ARCHS))
def test_latent_arch_configs_build(preset: str) -> None:
    unet_cfg, _ = LATENT_ARCHS[preset]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
    n = sum(p.numel() for p in unet.parameters())
    assert 850e6 < n < 880e6  # the SD 1.x/2.x UNet has about 860M parameters


def test_random_weights_setting_round_trips() -> None:
    s = apply_preset(Settings.defaults("latent"), "sd-turbo")
    s.set("random_weights", True)
    assert Settings.from_dict(s.to_dict()).models.random_weights is True



ARCH_DIR = Path(__file__).resolve().parents[1] / "discolib" / "data" / "archs"


def test_every_arch_file_is_read_and_described() -> None:
    """Each data/archs/*.json is used by archs.py (no stale file) and says what it is."""
    files = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in ARCH_DIR.glob("*.json")}
    assert set(files) == {"sd-scheduler", "sd-vae", "tiny-adm", *LATENT_ARCHS, *FAMILY_ARCHS}
    assert all(isinstance(d.get("description"), str) and d["description"] for d in files.values())
    assert archs.SD_VAE == files["sd-vae"]["config"] and archs.TINY_ADM == files["tiny-adm"]["config"]
    assert set(LATENT_SCHEDULERS) == {name for name, d in files.items() if "scheduler" in d and name not in FAMILY_ARCHS}


def test_arch_files_build_the_published_shapes() -> None:
    with torch.device("meta"):
        vae = AutoencoderKL(**SD_VAE)
    assert 83e6 < sum(p.numel() for p in vae.parameters()) < 85e6  # the SD VAE has about 84M parameters
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    text = CLIPTextModel(CLIPTextConfig(vocab_size=8, **LATENT_ARCHS["sd-turbo"][1])).to("meta")  # OpenCLIP ViT-H
    assert text.config.num_hidden_layers == 23 and text.config.hidden_size == 1024
    sd = make_scheduler("default", dict(SD_SCHEDULER))
    assert isinstance(sd, PNDMScheduler) and sd.config.beta_schedule == "scaled_linear"
    turbo = make_scheduler("default", dict(LATENT_SCHEDULERS["sd-turbo"]))
    assert isinstance(turbo, EulerDiscreteScheduler) and turbo.config.timestep_spacing == "trailing"
    assert {k: v for k, v in turbo.config.items() if k in SD_SCHEDULER and k != "_class_name"} == {
        k: v for k, v in SD_SCHEDULER.items() if k != "_class_name"
    }  # the same noise schedule as SD 1.x


def test_package_data_ships_every_data_file() -> None:
    """pyproject's package-data patterns match every file under discolib/data (a wheel would lack the others)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ARCH_DIR.parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["discolib"]
    data = ARCH_DIR.parent
    files = [p.relative_to(data.parent).as_posix() for p in data.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert not missing, f"add a package-data pattern for {missing}"


def test_tiny_builders_are_seeded_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_adm_unet()
    assert torch.equal(torch.rand(3), expected)
    b = build_tiny_adm_unet()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    other = build_tiny_secondary(seed=1)
    assert not torch.equal(next(other.parameters()), next(build_tiny_secondary().parameters()))
