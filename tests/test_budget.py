"""discolib.run.budget: the CPU memory/time estimate made before a run starts, and the refusal with --force.

No rendering here: the estimate is arithmetic over the settings and the calibration constants.
"""

from __future__ import annotations

import math

import pytest
import torch

from discolib.config.presets import PRESETS, apply_preset, preset_mode
from discolib.config.settings import Settings
from discolib.errors import InputError, ResourceLimitError
from discolib.run import budget
from discolib.run.budget import MAX_CPU_SECONDS, Estimate, available_memory, check_budget, estimate
from discolib.schedules.keyframes import Schedule

CPU = torch.device("cpu")
GiB = 2**30


def preset(name: str, **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(preset_mode(name)), name)
    for key, value in overrides.items():
        s.set(key.replace("__", "."), value)
    return s.validate()


def huge(name: str) -> Settings:
    """The tester's case: the largest size validation allows, on the CPU."""
    return preset(name, image__width=8192, image__height=8192)


@pytest.fixture
def memory_16gib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "available_memory", lambda: 16 * GiB)


# ---------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("name", ["tiny", "tiny-latent", "disco-512", "sd-1.5", "sd-turbo"])
def test_8192_on_the_cpu_is_refused_with_the_figures(name: str, memory_16gib: None) -> None:
    s = huge(name)
    est = estimate(s)
    with pytest.raises(ResourceLimitError) as info:
        check_budget(s, CPU, force=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"8192x8192 {s.image.mode} stills")
    # The figures: what it needs, what this machine has, the time and the limit, and how to start anyway.
    assert f"~{budget.format_bytes(est.peak_bytes)} of memory" in msg
    assert "this machine has 16 GiB of memory available" in msg
    assert f"~{budget.format_seconds(est.seconds)}" in msg
    assert "the limit for a CPU run is 2 h" in msg
    assert "pass --force (render(..., force=True)) to start anyway" in msg
    # Far beyond both limits, whatever the calibration machine: 67 M pixels through a diffusion UNet.
    assert est.peak_bytes > 16 * GiB
    assert est.seconds > MAX_CPU_SECONDS
    assert isinstance(info.value, InputError)  # the CLI prints it as one line


def test_refusal_names_only_the_limit_that_is_exceeded(monkeypatch: pytest.MonkeyPatch) -> None:
    s = huge("tiny")
    monkeypatch.setattr(budget, "available_memory", lambda: 2**60)  # memory is not the problem
    with pytest.raises(ResourceLimitError) as info:
        check_budget(s, CPU, force=False)
    assert "memory available" not in str(info.value)
    assert "the limit for a CPU run is 2 h" in str(info.value)
    monkeypatch.setattr(budget, "MAX_CPU_SECONDS", math.inf)  # nor is time: only memory
    monkeypatch.setattr(budget, "available_memory", lambda: 1 * GiB)
    with pytest.raises(ResourceLimitError) as info:
        check_budget(s, CPU, force=False)
    assert "this machine has 1 GiB of memory available" in str(info.value)
    assert "limit for a CPU run" not in str(info.value)


@pytest.mark.parametrize("name", ["tiny", "tiny-latent"])
@pytest.mark.parametrize("animation", ["None", "2D", "3D"])
def test_tiny_presets_at_64_pass(name: str, animation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * GiB)  # a small CI runner fits them
    s = preset(name, animation__animation_mode=animation)
    assert (s.image.width, s.image.height) == (64, 64)
    est = check_budget(s, CPU, force=False)
    assert isinstance(est, Estimate)
    assert 0 < est.seconds < 600
    assert 100 * 2**20 < est.peak_bytes < 4 * GiB
    assert est.frames == (1 if animation == "None" else 8)


def test_force_starts_anyway_and_still_returns_the_estimate(memory_16gib: None) -> None:
    s = huge("tiny")
    est = check_budget(s, CPU, force=True)
    assert est == estimate(s)
    assert est is not None and est.seconds > MAX_CPU_SECONDS


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps", "meta"])
def test_accelerators_are_not_checked(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "estimate", lambda s: pytest.fail("estimated for a non-CPU device"))
    assert check_budget(huge("tiny-latent"), torch.device(device), force=False) is None


# ---------------------------------------------------------------------------------------------- the estimate


@pytest.mark.parametrize("name", ["tiny", "tiny-latent", "disco-512", "sd-turbo"])
def test_estimates_grow_with_pixels(name: str) -> None:
    sides = [64, 128, 256, 512, 1024, 2048, 4096, 8192]
    ests = [estimate(preset(name, image__width=w, image__height=w)) for w in sides]
    for a, b in zip(ests, ests[1:], strict=False):
        # (Small sizes of real models: the peak is loading the weights, the same at every size.)
        assert b.peak_bytes >= a.peak_bytes
        assert b.seconds > a.seconds
    # Not a constant: 4x the pixels cost at least ~4x the time and ~3x the memory once the pixels dominate.
    assert ests[-1].seconds > 3.5 * ests[-2].seconds
    assert ests[-1].peak_bytes > 3 * ests[-2].peak_bytes


@pytest.mark.parametrize("name", ["tiny", "tiny-latent", "disco-512", "sd-1.5"])
def test_estimates_grow_with_steps_and_images(name: str) -> None:
    by_steps = [estimate(preset(name, image__steps=n)).seconds for n in (20, 40, 80, 160)]
    assert by_steps == sorted(by_steps) and len(set(by_steps)) == 4
    by_images = [estimate(preset(name, run__n_batches=n)) for n in (1, 2, 5, 50)]
    assert [e.frames for e in by_images] == [1, 2, 5, 50]
    assert all(b.seconds > a.seconds for a, b in zip(by_images, by_images[1:], strict=False))


@pytest.mark.parametrize("name", ["tiny", "tiny-latent"])
def test_estimates_grow_with_frames(name: str) -> None:
    ests = [estimate(preset(name, animation__animation_mode="3D", animation__max_frames=n)) for n in (2, 8, 100, 10_000, 1_000_000)]
    assert [e.frames for e in ests] == [2, 8, 100, 10_000, 1_000_000]
    for a, b in zip(ests, ests[1:], strict=False):
        assert b.seconds > a.seconds and b.steps > a.steps


def test_guided_steps_follow_skip_steps_frames_skip_steps_cadence_and_preroll() -> None:
    still = estimate(preset("tiny", image__steps=50, guidance__skip_steps=10, run__n_batches=3))
    assert (still.steps, still.frames) == (3 * 40, 3)
    anim = dict(animation__animation_mode="2D", animation__max_frames=20, image__steps=50, guidance__skip_steps=10)
    full = estimate(preset("tiny", **anim, animation__frames_skip_steps="60%"))
    assert full.steps == 40 + 19 * 20  # frame 0: 50 - 10; later frames: 50 - round(0.6 * 50)
    assert estimate(preset("tiny", **anim, animation__frames_skip_steps="30")).steps == 40 + 19 * 20
    # Cadence 4 after a pre-roll of 10 frames (Disco: frame_num <= turbo_preroll): frames 1-10, then 12 and 16.
    turbo = estimate(preset("tiny", **anim, animation__frames_skip_steps="60%", animation__cadence=4, animation__turbo_preroll=10))
    assert turbo.steps == 40 + (10 + 2) * 20
    assert turbo.seconds < full.seconds


def test_latent_steps_follow_strength_schedule_cadence_and_cfg() -> None:
    anim = dict(animation__animation_mode="3D", animation__max_frames=10, image__steps=20)
    e = estimate(preset("tiny-latent", **anim, animation__strength_schedule="0: (0.65)"))
    assert e.steps == 20 + 9 * 7  # int(20 * 0.35) = 7 denoising steps per later frame
    ramp = estimate(preset("tiny-latent", **anim, animation__strength_schedule="0: (0), 9: (0.9)"))
    keep = Schedule.parse("0: (0), 9: (0.9)").values(10)
    assert ramp.steps == 20 + sum(int(20 * (1.0 - k)) for k in keep[1:])  # the sampler's int(steps * (1 - keep))
    # Strength 1 keeps the warped frame (no sampler); cadence 3 diffuses frames 0, 3, 6, 9.
    assert estimate(preset("tiny-latent", **anim, animation__strength_schedule="0: (1)")).steps == 20
    assert estimate(preset("tiny-latent", **anim, animation__cadence=3, animation__strength_schedule="0: (0.5)")).steps == 20 + 3 * 10
    # Without CFG (scale <= 1) each step is one UNet pass instead of two: cheaper, same steps.
    with_cfg = estimate(preset("tiny-latent", **anim, animation__cfg_scale_schedule="0: (7)"))
    without = estimate(preset("tiny-latent", **anim, animation__cfg_scale_schedule="0: (1)"))
    assert with_cfg.steps == without.steps and without.seconds < with_cfg.seconds


def test_real_architectures_cost_more_than_tiny_ones() -> None:
    for tiny, real in (("tiny", "disco-512"), ("tiny-latent", "sd-1.5")):
        a, b = estimate(preset(tiny, image__width=512, image__height=512)), estimate(preset(real, image__width=512, image__height=512))
        assert b.peak_bytes > a.peak_bytes + 1 * GiB  # the real weights alone are GBs
        assert b.seconds > 10 * a.seconds


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("animation", ["None", "2D", "3D", "Video Input"])
def test_every_preset_has_a_finite_estimate_and_a_one_line_description(name: str, animation: str) -> None:
    s = preset(name, animation__animation_mode=animation, animation__max_frames=12, animation__video_init_path="in.mp4")
    e = estimate(s)
    assert e.frames == (s.run.n_batches if animation == "None" else 12)
    assert math.isfinite(e.seconds) and e.seconds > 0 and e.peak_bytes > 0
    line = e.describe()
    assert "\n" not in line and f"{e.width}x{e.height}" in line and "on this CPU" in line


def test_unknown_models_are_costed_as_the_stated_defaults() -> None:
    local = estimate(preset("disco-512", models__diffusion_model="/models/mine.pt"))
    default = estimate(preset("disco-512"))
    assert local.seconds == default.seconds and "costed as" in local.what
    hub = estimate(preset("sd-1.5", models__latent_model="someone/some-model"))
    assert hub.seconds == estimate(preset("sd-1.5")).seconds and "costed as SD 1.5" in hub.what


def test_formatting() -> None:
    assert budget.format_bytes(16 * GiB) == "16 GiB"
    assert budget.format_bytes(1.5 * 2**40) == "1.5 TiB"
    assert budget.format_seconds(40) == "40 s"
    assert budget.format_seconds(600) == "10 min"
    assert budget.format_seconds(3 * 3600) == "3 h"
    assert budget.format_seconds(10 * 86400) == "10 days"
    assert budget.format_seconds(2e4 * 365 * 86400) == "2e+04 years"


# ---------------------------------------------------------------------------------------------- memory here


def test_available_memory_reads_meminfo_and_a_cgroup_limit(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    monkeypatch.setattr(budget, "MEMINFO", meminfo)
    monkeypatch.setattr(budget, "CGROUP_MEMORY", tmp_path / "no-cgroup")
    assert available_memory() == 20000000 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("1000\n")
    monkeypatch.setattr(budget, "CGROUP_MEMORY", cgroup)
    assert available_memory() == 20000000 * 1024  # "max": no limit
    (cgroup / "memory.max").write_text(f"{8 * GiB}\n")
    (cgroup / "memory.current").write_text(f"{2 * GiB}\n")
    assert available_memory() == 6 * GiB  # the container's limit is the tighter one
    # Page cache (inactive_file) counts in memory.current but is reclaimed before an allocation fails.
    (cgroup / "memory.current").write_text(f"{8 * GiB}\n")
    (cgroup / "memory.stat").write_text(f"anon {2 * GiB}\ninactive_file {6 * GiB}\nactive_file 0\n")
    assert available_memory() == 6 * GiB


def test_memory_this_process_holds_is_not_counted_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    s = preset("tiny")
    est = estimate(s)
    # Available memory just under the estimate's whole-process peak: only what this process holds already makes
    # the difference, as when discolib and torch are imported before the check.
    monkeypatch.setattr(budget, "available_memory", lambda: est.peak_bytes - 100 * 2**20)
    monkeypatch.setattr(budget, "_own_rss", lambda: 0)
    with pytest.raises(ResourceLimitError):
        check_budget(s, CPU, force=False)
    monkeypatch.setattr(budget, "_own_rss", lambda: 500 * 2**20)
    assert check_budget(s, CPU, force=False) == est


def test_available_memory_without_proc_meminfo(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MEMINFO", tmp_path / "absent")
    monkeypatch.setattr(budget, "CGROUP_MEMORY", tmp_path / "absent-too")
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(budget.os, "sysconf", lambda name: pages[name])
    assert available_memory() == 1000 * 4096  # falls back to os.sysconf

    def no_sysconf(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(budget.os, "sysconf", no_sysconf)
    assert available_memory() is None
    # Unknown memory: only the time is checked, and a small run still passes.
    assert check_budget(preset("tiny"), CPU, force=False) is not None
    with pytest.raises(ResourceLimitError) as info:
        check_budget(huge("tiny"), CPU, force=False)
    assert "memory available" not in str(info.value)


def test_garbled_meminfo_falls_back(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable: lots\n")
    monkeypatch.setattr(budget, "MEMINFO", meminfo)
    monkeypatch.setattr(budget, "CGROUP_MEMORY", tmp_path / "absent")
    monkeypatch.setattr(budget.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 7, "SC_PAGE_SIZE": 4096}[name])
    assert available_memory() == 7 * 4096


def test_cli_render_refuses_before_a_run_folder_exists(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    """The tester's 8192x8192 CPU render: one line with the figures, exit 2, and nothing written under --out."""
    from discolib.cli import main

    path = huge("tiny").save(tmp_path / "s.json")
    out = tmp_path / "runs"
    assert main(["render", str(path), "--out", str(out), "--no-progress", "--set", "models.device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("discolib: error: 8192x8192 guided stills (tiny)")
    assert "--force" in err[0]
    assert not out.exists() or not any(out.rglob("*"))


def test_render_force_skips_the_refusal(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """force=True gets past the budget check (the render itself is stubbed at the run-folder step)."""
    import discolib.run.loop as render_mod
    from discolib.run.runs import RunFolder

    seen: list[bool] = []
    real = budget.check_budget

    def spy(settings: Settings, device: object, *, force: bool) -> Estimate | None:
        seen.append(force)
        return real(settings, device, force=force)

    class Stop(Exception):
        pass

    def no_folder(*args: object, **kwargs: object) -> RunFolder:
        raise Stop

    monkeypatch.setattr(render_mod, "check_budget", spy)  # the name the render loop calls
    monkeypatch.setattr(RunFolder, "create", no_folder)
    s = huge("tiny")
    s.models.device = "cpu"
    with pytest.raises(Stop):
        render_mod.render(s, out=tmp_path, force=True, progress=False)
    assert seen == [True]


def test_own_rss_reads_this_process() -> None:
    assert budget._own_rss() > 10 * 2**20  # torch is imported here: far more than 10 MiB resident
