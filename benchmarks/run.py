"""discolib benchmarks: one entry point for speed and memory on the CPU and on CUDA.

Usage::

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--smoke] [--only NAME ...] [--json out.json]

Benchmarks (``--only``): ``latent3d`` (sd-turbo-architecture 1-step img2img with depth warping, per-stage ms and fps),
``disco_step`` (Disco's 512 ADM UNet + secondary model + ViT-B/32, ViT-B/16, RN50 guidance: ms per guided step and
peak GPU memory), ``cpu`` (3D warp, schedule evaluation, render-loop overhead), ``compare`` (CPU stages side by side
with the references a Deforum frame runs: OpenCV's 2D warp, OpenCV LAB + skimage histogram matching, pandas
keyframe interpolation; interleaved, one thread and default threads, ratios). Every model has random weights built
from its architecture's config: no download, the timings are those of the real architectures.

``--quick`` shrinks sizes and repeats (labelled in the table); ``--smoke`` shrinks them further for the test suite
(seconds; the numbers mean nothing). Prints a fixed-width table and writes JSON with the device, library versions,
date and every figure with its unit (default ``benchmarks/results/<device>[-quick]-<timestamp>.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# Never touch the network: every model here is built from a config with random weights.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules sit beside this file
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_common import BenchContext, BenchResult, _fmt_value, format_table  # noqa: E402

BENCHMARKS = ("latent3d", "disco_step", "cpu", "compare")


class BenchUsageError(ValueError):
    """A command-line option that cannot be honoured (e.g. --device cuda without CUDA)."""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import diffusers
    import kornia
    import numpy
    import open_clip
    import transformers

    import discolib

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "kornia": kornia.__version__,
        "numpy": numpy.__version__,
        "discolib": getattr(discolib, "__version__", "unknown"),
    }


def _resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """discolib's own dtype choice (auto: bf16/fp16 on CUDA, float32 on the CPU), as a usage error when refused."""
    from discolib.models.device import resolve_dtype

    try:
        return resolve_dtype(name, device)
    except ValueError as exc:
        raise BenchUsageError(str(exc).replace("models.dtype", "--dtype")) from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="model precision: auto = bf16 (fp16 without bf16) on CUDA, float32 on the CPU")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (labelled)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for tests: finishes in seconds, numbers meaningless")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, metavar="NAME",
                   help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median reported)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before timing")
    p.add_argument("--compile", action="store_true", help="torch.compile the latent UNet (CUDA fast path)")
    p.add_argument("--compile-mode", default="default",
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile mode with --compile (reduce-overhead = CUDA graphs; the loop's shapes are static)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="do not run: print a Markdown table of the median (min, max) of each figure over these "
                        "result files (repeated runs on a shared machine)")
    return p.parse_args(argv)


def _make_context(args: argparse.Namespace) -> BenchContext:
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise BenchUsageError(f"--device: expected cpu, cuda or cuda:N, got {args.device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchUsageError("--device cuda was asked for but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise BenchUsageError(f"--device: only cpu and cuda are supported, got {args.device!r}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    for name in ("repeats", "warmup"):
        v = getattr(args, name)
        if v is not None and v < (1 if name == "repeats" else 0):
            raise BenchUsageError(f"--{name} must be >= {1 if name == 'repeats' else 0}, got {v}")
    quick = bool(args.quick or args.smoke)
    repeats = args.repeats if args.repeats is not None else (2 if args.smoke else 3 if quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    return BenchContext(
        device=device,
        dtype=_resolve_dtype(args.dtype, device),
        quick=quick,
        smoke=bool(args.smoke),
        warmup=warmup,
        repeats=repeats,
        compile=bool(args.compile),
        compile_mode=args.compile_mode,
    )


def _run_one(name: str, ctx: BenchContext) -> BenchResult:
    if name == "latent3d":
        import bench_latent3d

        return bench_latent3d.run(ctx)
    if name == "disco_step":
        import bench_disco

        return bench_disco.run(ctx)
    if name == "compare":
        import bench_compare

        return bench_compare.run(ctx)
    import bench_cpu

    return bench_cpu.run(ctx)


def merge_results(paths: list[Path]) -> str:
    """Markdown table: every figure's median over the runs in ``paths`` (each a per-run median), min and max."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    order: list[tuple[str, str]] = []
    values: dict[tuple[str, str], list[float]] = {}
    units: dict[tuple[str, str], tuple[str, str]] = {}
    for run in runs:
        for bench, res in run["results"].items():
            for fig in res["figures"]:
                key = (bench, fig["name"])
                if key not in values:
                    order.append(key)
                    values[key] = []
                    units[key] = (fig["unit"], fig["note"])
                values[key].append(float(fig["value"]))
    import statistics

    metas = [r["meta"] for r in runs]
    lines = [
        f"Runs: {len(runs)} ({', '.join(m['date'] for m in metas)}); device: {metas[0]['device_name']}; "
        f"load average at start: {', '.join(str(round(m['load_average_start'][0], 1)) for m in metas if m.get('load_average_start'))}",
        "",
        "| benchmark | figure | median | min | max | unit | note |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for key in order:
        v = values[key]
        unit, note = units[key]
        cells = [statistics.median(v), min(v), max(v)]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(_fmt_value(c) for c in cells) + f" | {unit} | {note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write the JSON. Returns the exit code."""
    args = _parse(argv)
    if args.merge:
        try:
            print(merge_results(args.merge))
        except (OSError, ValueError, KeyError) as err:
            print(f"error: --merge: {err}", file=sys.stderr)
            return 2
        return 0
    try:
        ctx = _make_context(args)
    except BenchUsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights can produce denormals, which are slow on some CPUs
    if ctx.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    started = _dt.datetime.now(_dt.timezone.utc)
    meta: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": str(ctx.device),
        "device_name": torch.cuda.get_device_name(ctx.device) if ctx.cuda else _cpu_name(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "quick": ctx.quick,
        "smoke": ctx.smoke,
        "warmup": ctx.warmup,
        "repeats": ctx.repeats,
        "compile": ctx.compile,
        "compile_mode": ctx.compile_mode if ctx.compile else None,
        "platform": platform.platform(),
        "versions": _versions(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    names = list(dict.fromkeys(args.only or BENCHMARKS))
    results: list[BenchResult] = []
    t0 = time.perf_counter()
    for name in names:
        print(f"[{name}] running on {ctx.device} ...", file=sys.stderr, flush=True)
        b0 = time.perf_counter()
        res = _run_one(name, ctx)
        res.config["wall_s"] = round(time.perf_counter() - b0, 2)
        results.append(res)
        if res.skipped:
            print(f"[{name}] skipped: {res.skipped}", file=sys.stderr, flush=True)
    meta["wall_s"] = round(time.perf_counter() - t0, 2)
    meta["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    title = f"discolib benchmarks on {meta['device_name']} ({ctx.device}, {meta['dtype']}, {meta['torch_threads']} threads)"
    if ctx.quick:
        title += " -- QUICK: reduced sizes, see notes" if not ctx.smoke else " -- SMOKE: tiny sizes, numbers meaningless"
    print(title)
    print(format_table(results))

    out = args.json
    if out is None:
        tag = ctx.device.type + ("-smoke" if ctx.smoke else "-quick" if ctx.quick else "")
        out = HERE / "results" / f"{tag}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": {r.name: r.to_dict() for r in results}}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"JSON written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
