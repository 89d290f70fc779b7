"""Measure the coefficients of :mod:`discolib.run.budget` (the CPU memory and time estimate made before a run starts).

Three parts, printed as tables and written as JSON (``--json``, default ``benchmarks/results/budget-calibration.json``):

1. **Shapes (no compute).** Every network the samplers call (tiny and real architectures) is built and run under
   ``FakeTensorMode`` with CPU kernels chosen as on a real CPU (SDPA goes to the CPU flash kernel, so attention
   needs no N² buffer). At three sizes that gives, per call: FLOPs (``FlopCounterMode``, with a formula for the
   CPU flash-attention kernel it does not count) and the peak bytes of live intermediate tensors (a dispatch mode
   that tracks storages). Both are fitted exactly as ``c0 + c1*P + c2*P²`` in the pixel count P (convolutions are
   linear in P, attention quadratic) and checked at two other sizes.
2. **Throughput (compute).** A few networks run for real on this CPU (tiny ones, and one of each real family:
   ADM UNet, secondary model, SD UNet, SD VAE, CLIP ViT and ResNet, Depth Anything) with random weights: FLOP/s =
   counted FLOPs / the best of several timed calls.
3. **Renders (compute).** ``render()`` of the ``tiny`` and ``tiny-latent`` presets at 64, 128 and 256 px, stills
   and 3D animations, each in a fresh subprocess: peak RSS (the process's ``VmHWM``), RSS after the models are
   built, time per sampler step and per frame. What the first two parts do not explain (cutouts, losses, PNG
   writing, warps; allocator slack) is fitted as ``a + b*P`` per step, per frame and in memory.

``python benchmarks/calibrate_budget.py [--skip-real] [--quick] [--json out.json]``. ``--skip-real`` leaves out
the real architectures' timings (they build ~3 GB models; a few minutes on 2 cores). The constants block printed
at the end is what ``discolib/run/budget.py`` holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from discolib.ops import seeded

ROOT = Path(__file__).resolve().parent.parent
SIZES = (512, 1024, 2048)  # fit sizes (pixels per side) for image-space networks
CHECK_SIZES = (256, 4096)  # the fit is checked here


# ---------------------------------------------------------------------------------------------- part 1: shapes


class _PeakLive(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of tensors created inside the mode and still alive (views share their storage's bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage id -> [bytes, live tensors]
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self.live:
                    self.live[key] = [storage.nbytes(), 0]
                    self.current += storage.nbytes()
                    self.peak = max(self.peak, self.current)
                self.live[key][1] += 1
                weakref.finalize(t, self._release, key)
        return out


def _flash_cpu_flop(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(q, k, v)


def _flash_cpu_backward_flop(grad: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad, q, k, v)


_FLOP_EXTRA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _flash_cpu_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _flash_cpu_backward_flop,
}


@dataclass
class Net:
    """A network call to measure: ``build()`` returns a module, ``run(module, size)`` calls it once.

    ``size`` is the image side in pixels for image-space networks, ignored by fixed-size ones (CLIP cuts, depth).
    """

    name: str
    build: Callable[[], torch.nn.Module]
    run: Callable[[torch.nn.Module, int, bool], Any]  # (module, size, with_grad) -> output
    image_space: bool = True
    grad: bool = False  # measure forward + backward to the input (guided mode's gradient)
    meta: bool = False  # shapes on the meta device instead of FakeTensorMode (fixed-size networks whose builders
    # move modules between devices, which fake parameters refuse; their attention is small, so the meta device's
    # unfused attention changes their peak little)


def _adm(cfg: dict[str, Any]) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from discolib.models.adm import AdmConfig, adm_unet_config

        cls, kwargs = adm_unet_config(AdmConfig.from_dict(cfg))
        return cls(**kwargs).eval().requires_grad_(False)

    return build


def _run_adm(m: torch.nn.Module, s: int, grad: bool) -> Any:
    x = torch.zeros(1, 3, s, s, requires_grad=grad)
    return _maybe_backward(x, m(x, torch.tensor([500])).sample, grad)


def _secondary(width: int) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from discolib.models.secondary import SecondaryDiffusionImageNet2

        return SecondaryDiffusionImageNet2(width).eval().requires_grad_(False)

    return build


def _run_secondary(m: torch.nn.Module, s: int, grad: bool) -> Any:
    x = torch.zeros(1, 3, s, s, requires_grad=grad)
    return _maybe_backward(x, m(x, torch.full((1,), 0.5)).pred, grad)


def _maybe_backward(x: torch.Tensor, out: torch.Tensor, grad: bool) -> Any:
    if grad:
        # .backward() rather than autograd.grad: FlopCounterMode's module hooks do not support the latter.
        out.float().sum().backward()
        return x.grad
    return out


def _tiny_unet_cfg() -> dict[str, Any]:
    # The tiny-latent UNet of discolib.models.latent._build_tiny_latent.
    return {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": (32, 64), "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 32,
    }


def _tiny_vae_cfg() -> dict[str, Any]:
    return {
        "in_channels": 3, "out_channels": 3, "block_out_channels": (8, 16, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8, "sample_size": 64,
    }


_TINY_TAESD = {
    "encoder_block_out_channels": (8, 8, 8, 8), "decoder_block_out_channels": (8, 8, 8, 8),
    "num_encoder_blocks": (1, 1, 1, 1), "num_decoder_blocks": (1, 1, 1, 1), "latent_channels": 4,
}


def _sd_unet(cfg: dict[str, Any]) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel(**cfg).eval().requires_grad_(False)

    return build


def _run_sd_unet(m: torch.nn.Module, s: int, grad: bool) -> Any:
    ctx = torch.zeros(1, 77, m.config.cross_attention_dim)
    return m(torch.zeros(1, 4, s // 8, s // 8), torch.tensor([500]), encoder_hidden_states=ctx).sample


def _vae(kind: str, cfg: dict[str, Any]) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from diffusers import AutoencoderKL, AutoencoderTiny

        return (AutoencoderKL if kind == "kl" else AutoencoderTiny)(**cfg).eval().requires_grad_(False)

    return build


def _run_decode(m: torch.nn.Module, s: int, grad: bool) -> Any:
    z = torch.zeros(1, 4, s // 8, s // 8, requires_grad=grad)
    return _maybe_backward(z, m.decode(z).sample, grad)


def _run_encode(m: torch.nn.Module, s: int, grad: bool) -> Any:
    out = m.encode(torch.zeros(1, 3, s, s))
    return out.latents if hasattr(out, "latents") else out.latent_dist.mode()


def _clip(name: str) -> Callable[[], torch.nn.Module]:
    def build(device: str = "cpu") -> torch.nn.Module:
        import open_clip

        from discolib.models.clip import TINY_MODELS

        base, overrides = TINY_MODELS.get(name, (name, {}))  # the tiny ones as discolib.models.clip builds them
        model = open_clip.create_model(base, pretrained=None, device=device, **overrides)
        visual = model.visual.eval().requires_grad_(False)
        visual.total_params = sum(p.numel() for p in model.parameters())  # the text tower is loaded too
        return visual

    return build


def _run_clip(m: torch.nn.Module, s: int, grad: bool) -> Any:
    """``s`` cuts (at least one) at the model's input size, in one batch as the guidance runs them."""
    size = m.image_size if isinstance(m.image_size, int) else m.image_size[0]
    x = torch.zeros(max(s, 1), 3, size, size, requires_grad=grad)
    return _maybe_backward(x, m(x), grad)


def _depth(kind: str) -> Callable[[], torch.nn.Module]:
    def build(device: str = "cpu") -> torch.nn.Module:
        if kind == "tiny":
            from discolib.models.depth import build_tiny_depth_anything

            with torch.device(device):
                model = build_tiny_depth_anything()[0]
        else:
            from discolib.models.depth import random_depth_anything_small

            model = random_depth_anything_small(torch.device(device), torch.float32).model
        return model.eval().requires_grad_(False)

    return build


def _run_depth(m: torch.nn.Module, s: int, grad: bool) -> Any:
    side = m.config.backbone_config.image_size  # the processor's input side (70 tiny, 518 real)
    return m(pixel_values=torch.zeros(1, 3, side, side)).predicted_depth


def _text(kind: str) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from transformers import CLIPTextConfig, CLIPTextModel

        from discolib.models.archs import LATENT_ARCHS

        if kind == "tiny":
            cfg = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "max_position_embeddings": 77, "projection_dim": 32}
            vocab = 1000
        else:
            cfg, vocab = LATENT_ARCHS[kind][1], 49408
        return CLIPTextModel(CLIPTextConfig(vocab_size=vocab, **cfg)).eval()

    return build


def networks() -> list[Net]:
    """Every network whose cost discolib.run.budget models, under the names budget.py uses."""
    from discolib.models.archs import LATENT_ARCHS, SD_VAE, TINY_ADM
    from discolib.models.hub import catalogue_entry

    def adm(name: str) -> dict[str, Any]:
        return dict(catalogue_entry(name)["adm"])

    nets: list[Net] = []
    for key, cfg in (
        ("adm:tiny", TINY_ADM),
        ("adm:512", adm("512x512_diffusion_uncond_finetune_008100")),
        ("adm:256", adm("256x256_diffusion_uncond")),
        ("adm:portrait", adm("portrait_generator_v001")),
        ("adm:community_256", adm("pixel_art_diffusion_hard_256")),
    ):
        nets.append(Net(f"{key}:fwd", _adm(cfg), _run_adm))
        nets.append(Net(f"{key}:grad", _adm(cfg), _run_adm, grad=True))
    for key, width in (("secondary:tiny", 8), ("secondary:real", 64)):
        nets.append(Net(f"{key}:grad", _secondary(width), _run_secondary, grad=True))
    for key, cfg in (("unet:tiny", _tiny_unet_cfg()), ("unet:sd-1.5", LATENT_ARCHS["sd-1.5"][0]), ("unet:sd-turbo", LATENT_ARCHS["sd-turbo"][0])):
        nets.append(Net(f"{key}:fwd", _sd_unet(cfg), _run_sd_unet))
    for key, kind, cfg in (("vae:tiny", "kl", _tiny_vae_cfg()), ("vae:sd", "kl", SD_VAE), ("taesd:tiny", "tiny", _TINY_TAESD), ("taesd:real", "tiny", {})):
        nets.append(Net(f"{key}:encode", _vae(kind, cfg), _run_encode))
        nets.append(Net(f"{key}:decode", _vae(kind, cfg), _run_decode))
        nets.append(Net(f"{key}:decode-grad", _vae(kind, cfg), _run_decode, grad=True))
    for name in ("tiny-vit", "tiny-rn", "ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "RN50", "RN101", "RN50x4", "RN50x16", "RN50x64"):
        nets.append(Net(f"clip:{name}:grad", _clip(name), _run_clip, image_space=False, grad=True, meta=True))
    for key in ("tiny", "da-v2-small"):
        nets.append(Net(f"depth:{key}:fwd", _depth(key), _run_depth, image_space=False, meta=True))
    for key in ("tiny", "sd-1.5", "sd-turbo"):
        nets.append(Net(f"text:{key}", _text(key), lambda m, s, g: None, image_space=False))
    return nets


def _measure_fake(module: torch.nn.Module, net: Net, size: int, fake: Any) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode

    peak = _PeakLive()
    grad_ctx = contextlib.nullcontext() if net.grad else torch.no_grad()
    with fake if not net.meta else torch.device("meta"), FlopCounterMode(display=False, custom_mapping=_FLOP_EXTRA) as flops, peak, grad_ctx:
        net.run(module, size, net.grad)
    return float(flops.get_total_flops()), float(peak.peak)


def _fit_poly(sizes: tuple[int, ...], values: list[float]) -> list[float]:
    """Exact ``c0 + c1*P + c2*P²`` through three (P = side², value) points."""
    p = np.array([s * s for s in sizes], dtype=np.float64)
    a = np.stack([np.ones_like(p), p, p * p], axis=1)
    return [float(c) for c in np.linalg.solve(a, np.array(values, dtype=np.float64))]


def _poly(c: list[float], p: float) -> float:
    return c[0] + c[1] * p + c[2] * p * p


def analyse_shapes(nets: list[Net]) -> dict[str, dict[str, Any]]:
    """FLOPs, peak live bytes and parameter count of each network call, as polynomials in the pixel count."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    out: dict[str, dict[str, Any]] = {}
    for net in nets:
        t0 = time.perf_counter()
        fake = FakeTensorMode()
        if net.meta:
            module = net.build("meta")  # type: ignore[call-arg]
        else:
            with fake:
                module = net.build()
        params = getattr(module, "total_params", None) or sum(p.numel() for p in module.parameters())
        entry: dict[str, Any] = {"params": params}
        if net.name.startswith("text:"):
            out[net.name] = entry
            print(f"  {net.name:32s} {params / 1e6:9.1f} M params")
            continue
        if net.image_space:
            meas = [_measure_fake(module, net, s, fake) for s in SIZES]
            fl = _fit_poly(SIZES, [m[0] for m in meas])
            mem = _fit_poly(SIZES, [m[1] for m in meas])
            err_f = err_m = 0.0
            for s in CHECK_SIZES:
                f_s, m_s = _measure_fake(module, net, s, fake)
                p = float(s * s)
                err_f = max(err_f, abs(_poly(fl, p) - f_s) / max(f_s, 1.0))
                err_m = max(err_m, abs(_poly(mem, p) - m_s) / max(m_s, 1.0))
            entry.update(flops=fl, peak_bytes=mem, fit_error_flops=err_f, fit_error_peak=err_m)
        else:
            f_s, m_s = _measure_fake(module, net, 0, fake)
            entry.update(flops=[f_s, 0.0, 0.0], peak_bytes=[m_s, 0.0, 0.0], fit_error_flops=0.0, fit_error_peak=0.0)
        out[net.name] = entry
        fl, mem = entry["flops"], entry["peak_bytes"]
        print(
            f"  {net.name:32s} {params / 1e6:9.1f} M params  flops {fl[0]:.3g} + {fl[1]:.4g}*P + {fl[2]:.4g}*P^2"
            f"  peak {mem[0]:.3g} + {mem[1]:.4g}*P + {mem[2]:.3g}*P^2 B  (fit error at {CHECK_SIZES} px: flops "
            f"{entry['fit_error_flops']:.0%}, peak {entry['fit_error_peak']:.0%}; "
            f"{time.perf_counter() - t0:.1f} s)"
        )
    return out


# ---------------------------------------------------------------------------------------------- part 2: throughput

#: network -> (side it is timed at, or the number of cuts in the batch for CLIP; calls per timing). The tiny CLIPs
#: run the tiny preset's 4 cuts per call: their cost is per call, not per FLOP, so per cut it is a quarter of a call.
#: Real networks are timed at small sides (seconds each).
TIMED: dict[str, tuple[int, int]] = {
    "adm:tiny:fwd": (128, 1),
    "secondary:tiny:grad": (256, 1),
    "unet:tiny:fwd": (256, 2),
    "vae:tiny:decode": (256, 2),
    "clip:tiny-vit:grad": (4, 4),
    "clip:tiny-rn:grad": (4, 4),
    "depth:tiny:fwd": (0, 4),
}
TIMED_REAL: dict[str, tuple[int, int]] = {
    "adm:256:fwd": (128, 1),
    "secondary:real:grad": (128, 1),
    "unet:sd-1.5:fwd": (256, 1),
    "vae:sd:decode": (128, 1),
    "clip:ViT-B-16:grad": (4, 1),
    "clip:RN50:grad": (4, 1),
    "depth:da-v2-small:fwd": (0, 1),
}


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up: on a shared machine the others' load only ever adds
    time, so the minimum is the closest to what the CPU itself does (as ``timeit`` recommends)."""
    fn()  # warm-up (allocator, oneDNN primitive caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_throughput(nets: list[Net], shapes: dict[str, dict[str, Any]], timed: dict[str, tuple[int, int]], repeats: int) -> dict[str, float]:
    """FLOP/s of each timed network on this CPU (random weights; speed does not depend on their values)."""
    by_name = {n.name: n for n in nets}
    out: dict[str, float] = {}
    for name, (side, calls) in timed.items():
        net = by_name[name]
        with seeded(0):
            module = net.build()
        ctx = contextlib.nullcontext if net.grad else torch.no_grad

        def call(module: torch.nn.Module = module, net: Net = net, side: int = side, calls: int = calls, ctx: Any = ctx) -> None:
            with ctx():
                for _ in range(calls):
                    net.run(module, side, net.grad)

        seconds = _best_time(call, repeats) / calls
        if net.image_space:
            flops = _poly(shapes[name]["flops"], float(side * side))
        else:  # fixed size: per call, times the cuts of a CLIP batch
            flops = _poly(shapes[name]["flops"], 0.0) * (max(side, 1) if name.startswith("clip:") else 1)
        out[name] = flops / seconds
        print(f"  {name:32s} side {side or '-':>4}  {seconds * 1e3:9.1f} ms/call  {flops / 1e9:8.2f} GFLOP  {flops / seconds / 1e9:7.1f} GFLOP/s")
        del module
    return out


# ---------------------------------------------------------------------------------------------- part 3: renders

RENDER_STEPS = 6
ANIMATION_FRAMES = 3


def render_settings(preset: str, side: int, kind: str, steps: int = RENDER_STEPS) -> Any:
    """The settings of one calibration render: a preset at ``side`` px, a still or a short 3D animation."""
    from discolib.config.presets import apply_preset, preset_mode
    from discolib.config.settings import Settings

    s = apply_preset(Settings.defaults(preset_mode(preset)), preset)
    for key, value in (("image.width", side), ("image.height", side), ("image.steps", steps), ("run.display_rate", 0),
                       ("run.n_batches", 1), ("run.seed", 1), ("output.make_video", False),
                       ("models.threads", torch.get_num_threads())):  # the calibration's count, not auto
        s.set(key, value)
    if kind == "still":
        s.set("animation.animation_mode", "None")
    else:
        s.set("animation.animation_mode", "3D")
        s.set("animation.max_frames", ANIMATION_FRAMES)
        s.set("animation.cadence", 1)
    return s.validate()


_CHILD = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[5])
from calibrate_budget import render_settings
from discolib.run.adapter import build_sampler
from discolib.run.loop import render

def rss():
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) * 1024 for k, v in (l.split(":", 1) for l in f) if k in ("VmRSS", "VmHWM")}

s = render_settings(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
t0 = time.perf_counter()
sampler = build_sampler(s)
build_s = time.perf_counter() - t0
after_build = rss()
events = []
def cb(e):
    if e.kind in ("step", "frame"):
        events.append((time.perf_counter(), e.kind, e.frame, e.step))
with tempfile.TemporaryDirectory() as out:
    t0 = time.perf_counter()
    render(s, out=out, callback=cb, progress=False, sampler=sampler)
    total = time.perf_counter() - t0
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over execve from the forked copy of the parent.
print("RESULT " + json.dumps({
    "build_s": build_s, "total_s": total, "events": events, "rss_after_build": after_build["VmRSS"],
    "peak_rss": rss()["VmHWM"],
}))
"""


def run_render(preset: str, side: int, kind: str, steps: int = RENDER_STEPS) -> dict[str, Any]:
    """One render in a fresh process (so that its peak RSS is its own)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, preset, str(side), kind, str(steps), str(Path(__file__).resolve().parent)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"render {preset} {side} {kind} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(line[len("RESULT "):])
    # Step time: intervals between consecutive steps of a frame (a frame's first step carries its set-up, which
    # the per-frame overhead takes).
    by_frame: dict[int, list[float]] = {}
    for t, k, frame, _step in res["events"]:
        if k == "step":
            by_frame.setdefault(frame, []).append(t)
    intervals = [b - a for ts in by_frame.values() for a, b in zip(ts, ts[1:], strict=False)]
    res["step_s"] = statistics.median(intervals) if intervals else float("nan")
    res["steps_run"] = sum(len(ts) for ts in by_frame.values())
    res["frames"] = sum(1 for e in res["events"] if e[1] == "frame")
    res.update(preset=preset, side=side, kind=kind, steps=steps)
    del res["events"]
    return res


# ---------------------------------------------------------------------------------------------- fitting


def _fit_line(ps: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``a + b*P`` with both coefficients >= 0 (a negative one is dropped and the other refitted)."""
    p, y = np.array(ps, dtype=np.float64), np.array(ys, dtype=np.float64)
    if len(p) < 2:
        return float(max(y.mean(), 0.0)), 0.0
    b, a = np.polyfit(p, y, 1)
    if b < 0:
        return float(max(y.mean(), 0.0)), 0.0
    if a < 0:
        return 0.0, float(max((p @ y) / (p @ p), 0.0))
    return float(a), float(b)


def install(shapes: dict[str, Any], thr: dict[str, float], overhead: dict[str, tuple[float, float]], base: dict[str, float]) -> Any:
    """Put measured constants into :mod:`discolib.run.budget` (this process only) and return the module."""
    from discolib.run import budget

    budget.CAL_THREADS = torch.get_num_threads()
    budget.NETS = {k: (int(v["params"]), tuple(v.get("flops", (0.0, 0.0, 0.0))), tuple(v.get("peak_bytes", (0.0, 0.0, 0.0)))) for k, v in shapes.items()}
    budget.FLOP_S = dict(thr)
    budget.OVERHEAD = {k: (0.0, 0.0) for k in _OVERHEAD_KEYS} | overhead
    budget.BASE_RSS = dict(base)
    return budget


_OVERHEAD_KEYS = [f"{m}_{k}" for m in ("guided", "latent") for k in ("step", "frame", "motion", "still_memory", "3d_memory")]


def fit(shapes: dict[str, Any], thr: dict[str, float], renders: list[dict[str, Any]]) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    """What the networks do not explain of the renders, as ``a + b*P``, fitted stage by stage with budget's own
    decomposition (so the estimate reproduces the calibration renders): per step, per frame, per animation frame,
    then memory."""
    overhead: dict[str, tuple[float, float]] = {}
    base: dict[str, float] = {"guided": 0.0, "latent": 0.0}
    for mode, preset in (("guided", "tiny"), ("latent", "tiny-latent")):
        stills = [r for r in renders if r["preset"] == preset and r["kind"] == "still"]
        anims = [r for r in renders if r["preset"] == preset and r["kind"] == "3d"]
        ps, pa = [float(r["side"] ** 2) for r in stills], [float(r["side"] ** 2) for r in anims]
        b = install(shapes, thr, overhead, base)
        # A still of one image: one more step costs exactly one step's network work in the estimate.
        step_net = [b.estimate(render_settings(preset, r["side"], "still", r["steps"] + 1)).seconds
                    - b.estimate(render_settings(preset, r["side"], "still", r["steps"])).seconds for r in stills]
        overhead[f"{mode}_step"] = _fit_line(ps, [r["step_s"] - n for r, n in zip(stills, step_net, strict=True)])
        b = install(shapes, thr, overhead, base)
        rest = [(r["total_s"] - b.estimate(render_settings(preset, r["side"], "still", r["steps"])).seconds) / r["frames"] for r in stills]
        overhead[f"{mode}_frame"] = _fit_line(ps, rest)
        b = install(shapes, thr, overhead, base)
        rest = [(r["total_s"] - b.estimate(render_settings(preset, r["side"], "3d", r["steps"])).seconds) / (r["frames"] - 1) for r in anims]
        overhead[f"{mode}_motion"] = _fit_line(pa, rest)
        # Memory: the process after building the models is the base (less the tiny weights); the rest of the peak
        # beyond the networks' activations is fitted per pixel.
        b = install(shapes, thr, overhead, base)
        est0 = {(r["side"], r["kind"]): b.estimate(render_settings(preset, r["side"], r["kind"], r["steps"])) for r in stills + anims}
        # (The tiny weights, a few MB, are in both the base and the estimate's weights: the fit absorbs them.)
        base[mode] = float(statistics.median(r["rss_after_build"] for r in stills))
        for kind, rs, pk in (("still", stills, ps), ("3d", anims, pa)):
            extra = [r["peak_rss"] - base[mode] - est0[(r["side"], kind)].peak_bytes for r in rs]
            overhead[f"{mode}_{kind}_memory"] = _fit_line(pk, extra)
    return overhead, base


# ---------------------------------------------------------------------------------------------- report


def _num(x: float, digits: int = 4) -> str:
    text = f"{x:.{digits}g}"
    return "0" if text in ("-0", "0") else text


def emit(result: dict[str, Any]) -> str:
    """The constants block of discolib/run/budget.py."""
    m = result["machine"]
    lines = [
        f"# Measured on {result['date']}: {m['cpu_count']} CPUs, {m['threads']} torch threads, torch {m['torch']}; "
        + (f"the best of {m['merged_runs']} runs (--merge)." if m.get("merged_runs")
           else f"load average {m['loadavg_start'][0]:.1f} at the start."),
        f"CAL_THREADS = {m['threads']}",
        "#: network call -> (parameters, FLOPs (c0, c1, c2), peak activation bytes (a0, a1, a2)); P = image pixels.",
        "NETS: dict[str, tuple[int, tuple[float, float, float], tuple[float, float, float]]] = {",
    ]
    for k, v in result["shapes"].items():
        fl = ", ".join(_num(x) for x in v.get("flops", (0.0, 0.0, 0.0)))
        pk = ", ".join(_num(x) for x in v.get("peak_bytes", (0.0, 0.0, 0.0)))
        lines.append(f"    {k!r}: ({v['params']}, ({fl}), ({pk})),")
    lines += ["}", "#: network call -> FLOP/s on the calibration machine at CAL_THREADS threads.", "FLOP_S: dict[str, float] = {"]
    lines += [f"    {k!r}: {_num(v, 3)}," for k, v in result["throughput"].items()]
    lines += ["}", "#: what the networks do not explain, (a, b) in a + b*P: seconds per step / per frame, bytes.",
              "OVERHEAD: dict[str, tuple[float, float]] = {"]
    lines += [f"    {k!r}: ({_num(a, 3)}, {_num(b, 3)})," for k, (a, b) in result["overhead"].items()]
    lines += ["}", "#: resident memory of a process with discolib, torch and the tiny models loaded, per mode.",
              "BASE_RSS: dict[str, float] = {"]
    lines += [f"    {k!r}: {_num(v, 3)}," for k, v in result["base_rss"].items()]
    lines.append("}")
    return "\n".join(lines).replace("'", '"')


def check(result: dict[str, Any]) -> None:
    """The fitted estimate against every calibration render, and against the real-architecture figures of
    benchmarks/RESULTS.md (measured on this machine's class with other code: a consistency check, not a fit)."""
    b = install(result["shapes"], result["throughput"], {k: tuple(v) for k, v in result["overhead"].items()}, result["base_rss"])
    print("  render                      seconds est / measured      peak RSS est / measured")
    for r in result["renders"]:
        e = b.estimate(render_settings(r["preset"], r["side"], r["kind"], r["steps"]))
        print(f"  {r['preset']:12s} {r['kind']:5s} {r['side']:4d}px  {e.seconds:8.2f} / {r['total_s']:8.2f} s"
              f"        {e.peak_bytes / 2**20:7.0f} / {r['peak_rss'] / 2**20:7.0f} MiB")
    from discolib.config.settings import Settings

    probes = []
    g = Settings.defaults("guided")
    for key, value in (("image.width", 64), ("image.height", 64), ("image.steps", 2), ("guidance.skip_steps", 0),
                       ("guidance.cutn_batches", 1), ("guidance.cut_overview", "[1]*1000"), ("guidance.cut_innercut", "[1]*1000"),
                       ("animation.animation_mode", "None"), ("run.n_batches", 1), ("run.display_rate", 0)):
        g.set(key, value)
    probes.append(("RESULTS.md guided_step, 64 px, 2 cuts x 1 batch, 512 ADM + secondary + 3 CLIPs", g, 2, 4.42))
    for what, settings, steps, measured in probes:
        e = b.estimate(settings)
        print(f"  {what}: estimate {e.seconds / steps:.2f} s/step, measured {measured:.2f} s/step")
    for mode, side in (("guided", 8192), ("latent", 8192), ("guided", 1280), ("latent", 512)):
        s = Settings.defaults(mode)
        s.set("image.width", side)
        s.set("image.height", side if side != 1280 else 768)
        s.set("run.n_batches", 1)
        s.set("animation.animation_mode", "None")
        print(f"  defaults, one still: {b.estimate(s).describe()}")
    for preset in ("tiny", "tiny-latent"):
        s = render_settings(preset, 8192, "still", 10)
        print(f"  {preset} at 8192 px: {b.estimate(s).describe()}")


#: Renders beyond the fitted sizes (4-16x the pixels of the largest), to see how the estimate extrapolates.
VALIDATION = (("tiny-latent", 1024, "still", 6), ("tiny-latent", 768, "3d", 6), ("tiny", 384, "still", 2))


def validate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Render :data:`VALIDATION` and compare with the estimate from ``result`` (printed; not fitted)."""
    b = install(result["shapes"], result["throughput"], {k: tuple(v) for k, v in result["overhead"].items()}, result["base_rss"])
    out = []
    for preset, side, kind, steps in VALIDATION:
        r = run_render(preset, side, kind, steps)
        e = b.estimate(render_settings(preset, side, kind, steps))
        row = {"preset": preset, "side": side, "kind": kind, "steps": steps, "seconds": r["total_s"],
               "seconds_estimate": e.seconds, "peak_rss": r["peak_rss"], "peak_estimate": e.peak_bytes,
               "loadavg": os.getloadavg()[0]}
        out.append(row)
        print(f"  {preset:12s} {kind:5s} {side:4d}px {steps} steps: {e.seconds:7.1f} s estimated / {r['total_s']:7.1f} s "
              f"measured; {e.peak_bytes / 2**20:6.0f} / {r['peak_rss'] / 2**20:6.0f} MiB (load {row['loadavg']:.1f})")
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs on the same machine: the best of each measurement, then fitted again.

    On a shared machine other work only ever slows a measurement down, so across runs the fastest figure of each
    network and each render is the closest to what this CPU does (the same reasoning as ``_best_time``).
    """
    shapes = results[0]["shapes"]
    thr: dict[str, float] = {}
    for r in results:
        for k, v in r["throughput"].items():
            thr[k] = max(thr.get(k, 0.0), v)
    best: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in results:
        for run in r.get("renders", []):
            key = (run["preset"], run["side"], run["kind"])
            if key not in best or run["total_s"] < best[key]["total_s"]:
                best[key] = run
    renders = list(best.values())
    overhead, base = fit(shapes, thr, renders)
    loads = [r["machine"]["loadavg_start"][0] for r in results]
    return {
        **results[0],
        "date": " to ".join(sorted({results[0]["date"], results[-1]["date"]})),
        "machine": {**results[0]["machine"], "loadavg_start": [min(loads), 0, 0], "merged_runs": len(results)},
        "throughput": thr,
        "renders": renders,
        "overhead": overhead,
        "base_rss": base,
    }


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "budget-calibration.json"))
    ap.add_argument("--skip-real", action="store_true", help="do not time the real architectures")
    ap.add_argument("--quick", action="store_true", help="64 and 128 px renders only, one timing repeat")
    ap.add_argument("--render-repeats", type=int, default=2, help="renders of each configuration; the fastest is "
                    "kept (a burst of load from elsewhere only ever slows one down)")
    ap.add_argument("--emit", metavar="JSON", help="print the constants block of discolib/run/budget.py from a result file")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="refit from the best measurements of several result "
                    "files (per network the highest FLOP/s, per render the fastest run) and write --json")
    ap.add_argument("--validate", action="store_true", help="then render beyond the fitted sizes and compare")
    ap.add_argument("--shapes-from", metavar="JSON", help="reuse part 1 from an earlier result (it is exact and "
                    "machine-independent; it takes minutes on 2 cores)")
    args = ap.parse_args(argv)
    if args.emit:
        result = json.loads(Path(args.emit).read_text())
        check(result)
        print(emit(result))
        return 0
    if args.merge:
        result = merge([json.loads(Path(f).read_text()) for f in args.merge])
        check(result)
        if args.validate:
            print("5. beyond the fitted sizes")
            result["validation"] = validate(result)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json} from {len(args.merge)} runs")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns once per model that the weights are random
    started = time.time()
    load = os.getloadavg()
    nets = networks()
    if args.shapes_from:
        shapes = json.loads(Path(args.shapes_from).read_text())["shapes"]
        print(f"1. shapes: from {args.shapes_from}")
    else:
        print("1. shapes (FakeTensorMode; FLOPs and peak live bytes per call, P = pixels)")
        shapes = analyse_shapes(nets)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"shapes": shapes}) + "\n")  # part 1 alone, for --shapes-from
    print(f"2. throughput on this CPU ({torch.get_num_threads()} threads)")
    thr = measure_throughput(nets, shapes, TIMED, 1 if args.quick else 5)
    if not args.skip_real:
        thr.update(measure_throughput(nets, shapes, TIMED_REAL, 1 if args.quick else 3))
    print("3. renders (fresh process each)")
    renders = []
    for preset in ("tiny", "tiny-latent"):
        for kind in ("still", "3d"):
            for side in (64, 128) if args.quick else (64, 128, 256):
                r = min((run_render(preset, side, kind) for _ in range(max(args.render_repeats, 1))), key=lambda r: r["total_s"])
                renders.append(r)
                print(f"  {preset:12s} {kind:5s} {side:4d}px  {r['total_s']:7.2f} s, {r['steps_run']} steps of "
                      f"{r['step_s'] * 1e3:7.1f} ms  peak RSS {r['peak_rss'] / 2**20:6.0f} MiB "
                      f"(after build {r['rss_after_build'] / 2**20:5.0f} MiB)")
    overhead, base = fit(shapes, thr, renders)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__, "loadavg_start": load, "loadavg_end": os.getloadavg()},
        "wall_s": time.time() - started,
        "shapes": shapes,
        "throughput": thr,
        "renders": renders,
        "overhead": overhead,
        "base_rss": base,
    }
    print("4. the fitted estimate")
    check(result)
    if args.validate:
        print("5. beyond the fitted sizes")
        result["validation"] = validate(result)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json} ({result['wall_s']:.0f} s); constants block: {sys.argv[0]} --emit {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
