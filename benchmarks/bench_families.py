"""``families``: the Deforum-style 3D animation frame with today's model families and each memory option
(``offload_text_encoders``, ``fp8_weights``, ``text_encoder_t5``): ms/frame and peak GPU memory, while loading and
while rendering.

Rows (the model loaded anew for each variant):

* ``sdxl-turbo`` at 512^2, one UNet call per frame (its img2img recipe: 2 steps at strength 0.5): plain,
  ``offload_text_encoders``, ``fp8_weights``;
* ``flux-schnell`` at 1024^2, four transformer calls per frame (8 steps at strength 0.5: Flux's img2img runs
  ``steps - int(steps * (1 - strength))`` of them): plain, ``offload_text_encoders``, ``fp8_weights``, both;
* ``sd3.5-medium`` at 1024^2, four transformer calls per frame (8 steps at strength 0.5, CFG batched into each
  call): ``text_encoder_t5`` on and off.

Memory (CUDA only), each above what was allocated before the load (the depth model): ``load peak`` (the peak counter
is reset BEFORE loading, read right after it: what loading itself needs), ``peak incl. load`` (the highest point from
the start of loading through every frame: what the card must hold), ``frames peak`` (reset after the warm-up: the
timed frames alone) and ``resident`` (what the loaded model keeps).

Each frame runs the render loop's own parts, as ``bench_latent3d``: the run's
:class:`~discolib.animation.plan.RenderPlan`, the real :class:`~discolib.animation.step.AnimationStep` (depth,
3D warp, colour coherence, noise), a :class:`~discolib.samplers.latent.LatentSampler` given the loaded components
and the request of :func:`discolib.run.loop.frame_request`, then the 8-bit hand-off; the next frame continues from
it. Stages: ``animation`` (depth + warp + coherence), ``sample`` (VAE encode, denoiser calls, VAE decode) and
``handoff``. A forward hook checks the number of denoiser calls per frame.

Weights: the real ones when they are already on this machine (never downloaded: the hub is offline here); otherwise
the loaders' ``models.random_weights`` fallback (:func:`discolib.models.load.load_latent` with ``random_ok``) where it
supports the family -- the same architecture, so the speed and memory are real and the images noise; otherwise the
row says "weights unavailable". Depth: Depth Anything V2 Small (its random-weight architecture when absent).

``--tiny`` runs the tiny presets (``tiny-sdxl``, ``tiny-flux``, ``tiny-sd3``) at 64^2 with the same variants on the
given device (the CPU by default): a smoke run of the same code, its numbers meaningless (no memory figures on the
CPU).

Usage::

    python benchmarks/bench_families.py [--device cpu|cuda] [--dtype auto|bfloat16|...] [--tiny]
        [--only sdxl-turbo flux-schnell sd3.5-medium] [--repeats N] [--warmup N] [--no-random-weights] [--json out.json]

Prints a table and writes JSON (``{"meta": ..., "results": {"families": ...}}``, as ``benchmarks/run.py``; default
``benchmarks/results/families-<device>[-tiny]-<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Never touch the network: weights absent here are not downloaded (the random-weight fallback or "unavailable").
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules sit beside this file
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_common import BenchContext, BenchResult, StageTimer, format_table, median, sync  # noqa: E402

__all__ = ["FULL_ROWS", "TINY_ROWS", "Row", "Variant", "main", "run"]

PROMPT = "a lighthouse in a stormy sea, oil painting"


@dataclass(frozen=True)
class Variant:
    """The memory options of one load (the settings ``models.offload_text_encoders``, ``models.fp8_weights``,
    ``models.text_encoder_t5``)."""

    offload: bool = False
    fp8: bool = False
    t5: bool = True

    @property
    def tag(self) -> str:
        """Suffix of the result names: ``""``, ``"_offload"``, ``"_fp8"``, ``"_offload_fp8"``, ``"_no_t5"``."""
        return ("_offload" if self.offload else "") + ("_fp8" if self.fp8 else "") + ("" if self.t5 else "_no_t5")

    @property
    def label(self) -> str:
        return (f"offload_text_encoders={'on' if self.offload else 'off'}, fp8_weights={'on' if self.fp8 else 'off'}"
                f", text_encoder_t5={'on' if self.t5 else 'off'}")

    def load_options(self) -> dict[str, bool]:
        """Keyword arguments of :func:`~discolib.models.latent.load_latent_components`."""
        return {"offload_text_encoders": self.offload, "fp8_weights": self.fp8, "t5": self.t5}


_PLAIN, _OFFLOAD, _FP8 = Variant(), Variant(offload=True), Variant(fp8=True)
_OFFLOAD_FP8, _NO_T5 = Variant(offload=True, fp8=True), Variant(t5=False)


@dataclass(frozen=True)
class Row:
    """One model of the table: latent preset, frame size, denoiser calls per frame and the variants to load."""

    preset: str
    size: int
    calls: int
    variants: tuple[Variant, ...] = (_PLAIN, _OFFLOAD)


_SDXL_VARIANTS = (_PLAIN, _OFFLOAD, _FP8)
_FLUX_VARIANTS = (_PLAIN, _OFFLOAD, _FP8, _OFFLOAD_FP8)
_SD3_VARIANTS = (_PLAIN, _NO_T5)
FULL_ROWS: tuple[Row, ...] = (
    Row("sdxl-turbo", 512, 1, _SDXL_VARIANTS),
    Row("flux-schnell", 1024, 4, _FLUX_VARIANTS),
    Row("sd3.5-medium", 1024, 4, _SD3_VARIANTS),
)
TINY_ROWS: tuple[Row, ...] = (
    Row("tiny-sdxl", 64, 1, _SDXL_VARIANTS),
    Row("tiny-flux", 64, 4, _FLUX_VARIANTS),
    Row("tiny-sd3", 64, 4, _SD3_VARIANTS),
)


def _settings(row: Row, variant: Variant, device: torch.device, n_frames: int) -> Any:
    """The preset's latent 3D settings with the benchmark's recipe: strength 0.5, ``2 * calls`` steps, the variant's
    memory options."""
    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings

    s = apply_preset(Settings.defaults("latent", "3D"), row.preset)
    for key, value in {
        "animation.strength_schedule": "0: (0.5)",
        "animation.rotation_3d_y": "0: (0.5)",
        "animation.translation_z": "0: (1)",
        "animation.max_frames": n_frames,
        "image.width": row.size,
        "image.height": row.size,
        "image.steps": 2 * row.calls,
        "run.seed": 42,
        "models.device": str(device),
        "models.offload_text_encoders": variant.offload,
        "models.fp8_weights": variant.fp8,
        "models.text_encoder_t5": variant.t5,
        "prompts.text_prompts": {"0": PROMPT},
    }.items():
        s.set(key, value)
    return s


def _load(row: Row, variant: Variant, ctx: BenchContext, *, random_ok: bool) -> Any:
    """The row's components through discolib's loader with the variant's options (tiny presets: built in-process)."""
    from discolib.models.load import load_latent

    return load_latent(row.preset, ctx.device, ctx.dtype, random_ok=random_ok, **variant.load_options())


def _text_encoder_devices(comps: Any) -> str:
    """How many of the family's text encoders were loaded and where they are (``"2 on cpu"``, ``"3 on cuda:0"``;
    SD 3.5 without T5: one fewer), for the table."""
    fam = comps.family_obj
    loaded = [enc for n in fam.text_encoders if (enc := getattr(comps.pipe, n, None)) is not None]
    where = ", ".join(sorted({str(enc.device) for enc in loaded}))
    return f"{len(loaded)} on {where}" if loaded else "none"


def _depth(ctx: BenchContext, tiny: bool) -> Any:
    from discolib.models.depth import DEFAULT_DEPTH_MODEL, TINY_DEPTH_PRESET
    from discolib.models.load import load_depth_estimator

    return load_depth_estimator(TINY_DEPTH_PRESET if tiny else DEFAULT_DEPTH_MODEL, ctx.device, random_ok=True)


class FamilyFrameLoop:
    """One 3D animation frame at a time through the render loop's parts, timed per stage (module docstring)."""

    def __init__(self, comps: Any, depth: Any, row: Row, variant: Variant, n_frames: int,
                 device: torch.device) -> None:
        from discolib.animation.plan import RenderPlan
        from discolib.animation.step import AnimationStep
        from discolib.models.device import upload
        from discolib.run.adapter import latent_config
        from discolib.samplers.latent import LatentSampler

        self.row, self.device = row, device
        settings = _settings(row, variant, device, n_frames)
        self.plan = RenderPlan.from_settings(settings)
        self.sampler = LatentSampler(latent_config(settings), device=device, components=comps)
        gen = torch.Generator("cpu").manual_seed(0)
        self.prev = upload(torch.rand(1, 3, row.size, row.size, generator=gen), device)  # frame 0: colour reference
        self.step = AnimationStep(self.plan, self.sampler.policy, device, depth=depth, start=1,
                                  color_ref=self.prev.clone())
        self.timer = StageTimer(device)
        self.i = 1

    def frame(self) -> dict[str, float]:
        """Run one frame; ``{stage: ms, "total": ms}`` (waits for the device at the end of the frame)."""
        from discolib.run.loop import frame_request

        i = 1 + (self.i - 1) % (self.plan.n_frames - 1)
        self.timer.start()
        frame_init = self.step(i, self.prev)
        if frame_init.final:
            raise RuntimeError(f"frame {i} was not diffused: the benchmark times diffused frames only")
        self.timer.mark("animation")
        image = self.sampler(frame_request(self.plan, i, frame_init))
        self.timer.mark("sample")
        frame_u8 = image[0].clamp(0, 1).mul(255).round().to(torch.uint8)
        host = frame_u8.permute(1, 2, 0).contiguous().cpu()  # the copy a PNG writer or a viewer needs
        assert host.shape == (self.row.size, self.row.size, 3)
        self.prev = frame_u8.unsqueeze(0).float().div(255)
        self.timer.mark("handoff")
        self.i += 1
        return self.timer.stop()


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _gib(n: float) -> float:
    return n / 2**30


def _weights_dtypes(comps: Any) -> str:
    """The dtypes the denoiser's weights are STORED in (``float8_e4m3fn, float32`` with fp8: norms stay as they
    were), for the table: proof the option took effect."""
    return ", ".join(sorted({str(p.dtype).removeprefix("torch.") for p in comps.unet.parameters()}))


def _run_row(ctx: BenchContext, result: BenchResult, row: Row, variant: Variant, depth: Any, *, random_ok: bool,
             status: dict[str, Any]) -> None:
    """Load, warm up and time one row with one variant; figures go to ``result``, what happened to ``status``."""
    from discolib.errors import WeightsUnavailable
    from discolib.models.load import RandomWeightsWarning

    tag = row.preset + variant.tag
    label = f"{row.size}x{row.size}, {row.calls} denoiser call(s)/frame, {variant.label}"
    if ctx.cuda:
        sync(ctx.device)
        # why here: the peak counter starts before loading, so "peak incl. load" covers the weights' arrival too
        # (a model can fit while rendering yet not while loading, e.g. cast to fp8 after it is on the device).
        torch.cuda.reset_peak_memory_stats(ctx.device)
        base = torch.cuda.memory_allocated(ctx.device)
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomWeightsWarning)
        try:
            comps = _load(row, variant, ctx, random_ok=random_ok)
        except WeightsUnavailable as err:
            status.update(status="weights unavailable", reason=str(err).split(". ")[0])
            return
    random_weights = any(issubclass(w.category, RandomWeightsWarning) for w in caught)
    status.update(weights="random (same architecture)" if random_weights else "real",
                  load_s=round(time.perf_counter() - t0, 2), family=comps.family,
                  text_encoders_on=_text_encoder_devices(comps), denoiser_weights=_weights_dtypes(comps))
    if ctx.cuda:
        sync(ctx.device)
        load_peak = _gib(torch.cuda.max_memory_allocated(ctx.device) - base)
        resident = _gib(torch.cuda.memory_allocated(ctx.device) - base)
        result.add(f"{tag}_load_peak_gpu_mem", load_peak, "GiB",
                   f"{label}; torch.cuda.max_memory_allocated from before the load to its end")
        result.add(f"{tag}_resident_gpu_mem", resident, "GiB", f"{label}; GPU memory held by the loaded model")
        status.update(load_peak_gpu_mem_gib=round(load_peak, 2), resident_gpu_mem_gib=round(resident, 2))
    calls = [0]
    hook = comps.unet.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        loop = FamilyFrameLoop(comps, depth, row, variant, ctx.warmup + ctx.repeats + 2, ctx.device)
        with torch.inference_mode():
            for _ in range(max(ctx.warmup, 1)):  # the first frame also encodes the prompt (cached after)
                loop.frame()
            if ctx.cuda:
                warm_peak = _gib(torch.cuda.max_memory_allocated(ctx.device) - base)
                result.add(f"{tag}_first_frames_peak_gpu_mem", warm_peak, "GiB",
                           f"{label}; peak from loading through the warm-up frames (prompt encoding included)")
                torch.cuda.reset_peak_memory_stats(ctx.device)
            calls[0] = 0
            frames = [loop.frame() for _ in range(ctx.repeats)]
    finally:
        hook.remove()
    if calls[0] != row.calls * ctx.repeats:
        raise RuntimeError(f"{row.preset}: expected {row.calls} denoiser call(s) per frame, got {calls[0]} in "
                           f"{ctx.repeats} frames")
    totals = [f["total"] for f in frames]
    med = median(totals)
    note = f"{label}; {status['weights']} weights; median of {ctx.repeats}"
    result.add(f"{tag}_frame", med, "ms/frame", note, totals)
    result.add(f"{tag}_fps", 1000.0 / med, "frames/s", note, [1000.0 / t for t in totals])
    for stage in ("animation", "sample", "handoff"):
        vals = [f.get(stage, 0.0) for f in frames]
        result.add(f"{tag}_{stage}", median(vals), "ms", f"stage of {tag}_frame", vals)
    status.update(status="ok", ms_per_frame=round(med, 2))
    if ctx.cuda:
        frames_peak = _gib(torch.cuda.max_memory_allocated(ctx.device) - base)
        overall = max(warm_peak, frames_peak)
        result.add(f"{tag}_peak_gpu_mem", frames_peak, "GiB",
                   f"{label}; torch.cuda.max_memory_allocated in the timed frames")
        result.add(f"{tag}_peak_incl_load_gpu_mem", overall, "GiB",
                   f"{label}; torch.cuda.max_memory_allocated from before the load through every frame")
        status.update(peak_gpu_mem_gib=round(frames_peak, 2), peak_incl_load_gpu_mem_gib=round(overall, 2))
    del loop, comps


def run(ctx: BenchContext, *, tiny: bool = False, only: list[str] | None = None, random_ok: bool = True) -> BenchResult:
    """Time every row (``tiny``: the tiny presets) with each of its variants (memory options)."""
    rows = [r for r in (TINY_ROWS if tiny else FULL_ROWS) if not only or r.preset in only]
    result = BenchResult("families", config={
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "tiny": tiny,
        "recipe": "3D animation frame: depth + reproject_3d + colour coherence + img2img at strength 0.5 "
                  "(steps = 2 x denoiser calls) + 8-bit hand-off; cfg and scheduler from the preset",
        "memory": "GiB above what was allocated before the load; the peak counter is reset before loading "
                  "(load peak, peak incl. load) and after the warm-up (frames peak)",
        "random_weights_allowed": random_ok,
        "rows": [],
    })
    depth = _depth(ctx, tiny)
    for row in rows:
        for variant in row.variants:
            status: dict[str, Any] = {"preset": row.preset, "size": row.size, "calls": row.calls,
                                      "offload_text_encoders": variant.offload, "fp8_weights": variant.fp8,
                                      "text_encoder_t5": variant.t5}
            try:
                _run_row(ctx, result, row, variant, depth, random_ok=random_ok, status=status)
            except Exception as err:  # noqa: BLE001 -- one failing row is reported; the others still run
                status.update(status="failed", reason=f"{type(err).__name__}: {err}"[:300])
            result.config["rows"].append(status)
            _free(ctx.device)
    return result


def _on_off(flag: bool) -> str:
    return "on" if flag else "off"


def summary_table(result: BenchResult) -> str:
    """One line per row and variant: preset, the memory options (offload, fp8, T5), size, calls, ms/frame, frames/s,
    GPU memory (load peak, peak including loading, timed frames' peak, resident), where the text encoders were, the
    denoiser's stored weight dtypes and the status ("ok", "weights unavailable", "failed") with its reason."""
    header = ("preset", "offload", "fp8", "t5", "size", "calls", "ms/frame", "fps", "load peak GiB",
              "peak incl. load GiB", "frames peak GiB", "resident GiB", "text enc.", "denoiser weights", "weights",
              "status")
    lines = [header]

    def gib(r: dict[str, Any], key: str) -> str:
        return f"{r[key]:.2f}" if key in r else "-"

    for r in result.config["rows"]:
        ms = r.get("ms_per_frame")
        lines.append((
            r["preset"], _on_off(r["offload_text_encoders"]), _on_off(r["fp8_weights"]), _on_off(r["text_encoder_t5"]),
            f"{r['size']}^2", str(r["calls"]), f"{ms:.1f}" if ms else "-", f"{1000.0 / ms:.2f}" if ms else "-",
            gib(r, "load_peak_gpu_mem_gib"), gib(r, "peak_incl_load_gpu_mem_gib"), gib(r, "peak_gpu_mem_gib"),
            gib(r, "resident_gpu_mem_gib"), r.get("text_encoders_on", "-"), r.get("denoiser_weights", "-"),
            r.get("weights", "-"), r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
                     for line in lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="model precision: auto = bf16 (fp16 without bf16) on CUDA, float32 on the CPU")
    p.add_argument("--tiny", action="store_true", help="the tiny presets at 64^2 (smoke run: numbers meaningless)")
    p.add_argument("--only", nargs="+", metavar="PRESET", help="run only these presets of the table")
    p.add_argument("--repeats", type=int, default=None, help="timed frames per row (median reported)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames per row before timing (at least 1)")
    p.add_argument("--no-random-weights", action="store_true",
                   help="rows whose weights are not on this machine say 'weights unavailable' instead of using "
                        "the random-weight architecture")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the table, print it, write the JSON. Returns the exit code."""
    import run as bench_run  # the entry point's device/dtype checks and metadata helpers

    args = _parse(argv)
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise bench_run.BenchUsageError("--device cuda was asked for but torch sees no CUDA device")
        if device.type not in ("cpu", "cuda"):
            raise bench_run.BenchUsageError(f"--device: only cpu and cuda are supported, got {args.device!r}")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        for name, low in (("repeats", 1), ("warmup", 0)):
            v = getattr(args, name)
            if v is not None and v < low:
                raise bench_run.BenchUsageError(f"--{name} must be >= {low}, got {v}")
        known = [r.preset for r in (TINY_ROWS if args.tiny else FULL_ROWS)]
        unknown = [p for p in args.only or () if p not in known]
        if unknown:
            raise bench_run.BenchUsageError(f"--only: {unknown} not in this table; expected some of {known}")
        ctx = BenchContext(device=device, dtype=bench_run._resolve_dtype(args.dtype, device), quick=args.tiny,
                           smoke=args.tiny, warmup=args.warmup if args.warmup is not None else 1,
                           repeats=args.repeats if args.repeats is not None else (2 if args.tiny else 5))
    except (bench_run.BenchUsageError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ctx.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    started = _dt.datetime.now(_dt.timezone.utc)
    meta: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(ctx.device),
        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.cuda else bench_run._cpu_name(),
        "cpu": bench_run._cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "quick": ctx.quick,
        "smoke": ctx.smoke,
        "warmup": ctx.warmup,
        "repeats": ctx.repeats,
        "platform": platform.platform(),
        "versions": bench_run._versions(),
    }
    t0 = time.perf_counter()
    print(f"[families] running on {ctx.device} ...", file=sys.stderr, flush=True)
    result = run(ctx, tiny=args.tiny, only=args.only, random_ok=not args.no_random_weights)
    meta["wall_s"] = round(time.perf_counter() - t0, 2)
    title = f"discolib model families on {meta['device_name']} ({ctx.device}, {meta['dtype']})"
    if args.tiny:
        title += " -- TINY presets: a smoke run, numbers meaningless"
    print(title)
    print(summary_table(result))
    print()
    print(format_table([result]))
    out = args.json
    if out is None:
        tag = "families-" + ctx.device.type + ("-tiny" if args.tiny else "")
        out = HERE / "results" / f"{tag}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": {result.name: result.to_dict()}}, indent=2) + "\n")
    print(f"JSON written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
