"""Sweeps: the local executor against Ray with 2 workers (issue 17, "Measure"), and a GPU figure when one is lent.

CPU (default): 8 tiny variants (``tiny-latent``: random tiny weights, 64x64, 3 frames; 2 seeds x 4 prompts) rendered
by the local executor (one process, models loaded once for all 8), then by Ray with 2 worker processes on a local
Ray started here (127.0.0.1, no dashboard):

* ``local``: wall time of the local sweep, models loaded cold in this process (imports excluded: the library is
  already imported, as in a notebook or the CLI after its start);
* ``ray_cold``: the first Ray sweep (fresh workers: each imports torch and discolib and loads the models once);
* ``ray_warm``: the same sweep into a new folder on the same workers (models cached in each worker);
* ``ratio`` = Ray wall / local wall (< 1: Ray is faster), cold and warm;
* the overhead Ray adds per variant, in ms of wall time (``(ray - local) / variants``) and in worker time
  (``(ray x workers - local) / variants``: what the variant costs in CPU seconds beyond the local run);
* the worker start (``(ray_cold - ray_warm) / (variants / workers)`` spread per variant), Ray's start
  (``ray.init``) and a no-op task's round trip (submit + get on a warm worker: the dispatch cost).

``--gpu`` (a GPU machine; not run on the CPU machine): variants/hour for ``sd-turbo`` at 512x512 with 1 worker per
GPU (``gpus_per_run=1``): ``--gpu-variants`` variants of ``--gpu-frames`` frames each (random weights of the real
architecture when the weights are not on the machine: the timings are the architecture's), Ray with one task per
GPU against the local executor.

Run: ``python benchmarks/bench_sweep.py [--variants 8] [--frames 3] [--workers 2] [--smoke] [--gpu]``; prints a
table and writes ``benchmarks/results/sweep.json`` (``--json PATH`` elsewhere). ``--smoke``: 2 variants, local
executor only, no Ray (seconds; for a quick check). Everything is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Never touch the network: the tiny models are random weights built from their configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import BenchResult, format_table  # noqa: E402

from discolib.config.sweep import SweepSpec, parse_sweep  # noqa: E402
from discolib.run.sweep import sweep  # noqa: E402

RESULTS = HERE / "results" / "sweep.json"
PROMPTS = ["a lighthouse in a stormy sea", "a castle on a hill", "a forest at dawn", "a city at night"]


def cpu_spec(variants: int, frames: int) -> SweepSpec:
    """``variants`` tiny-latent variants: 2 seeds x ``variants / 2`` prompts (1 seed when ``variants`` is odd)."""
    seeds = 2 if variants % 2 == 0 else 1
    prompts = [PROMPTS[i % len(PROMPTS)] + (f", study {i // len(PROMPTS)}" if i >= len(PROMPTS) else "")
               for i in range(variants // seeds)]
    return parse_sweep(
        {
            "preset": "tiny-latent",
            "set": {"animation.animation_mode": "2D", "animation.max_frames": frames, "image.width": 64,
                    "image.height": 64},
            "grid": {"prompts.text_prompts": [{"0": p} for p in prompts]},
            "seeds": seeds,
        },
        source="<bench>",
    )


def gpu_spec(variants: int, frames: int) -> SweepSpec:
    """``variants`` sd-turbo 512x512 variants on CUDA (seeds), random weights where the real ones are absent."""
    return parse_sweep(
        {
            "preset": "sd-turbo",
            "set": {"animation.animation_mode": "2D", "animation.max_frames": frames, "image.width": 512, "image.height": 512,
                    "models.device": "cuda", "models.random_weights": True},
            "seeds": variants,
        },
        source="<bench-gpu>",
    )


def _timed_sweep(spec: SweepSpec, out: Path, **kwargs: Any) -> tuple[float, bool]:
    t0 = time.perf_counter()
    result = sweep(spec, out, progress=False, **kwargs)
    wall = time.perf_counter() - t0
    bad = [f"{s.id}: {s.error}" for s in result.variants if s.status != "done"]
    if bad:
        raise SystemExit("a variant failed: " + "; ".join(bad))
    return wall, result.ok


def _frame_hashes(sweep_dir: Path) -> dict[str, list[str]]:
    """variant id -> its run's frame_sha256 (the executors must agree byte for byte)."""
    out: dict[str, list[str]] = {}
    for record in sorted(sweep_dir.glob("runs/*/*/run.json")):
        out[record.parent.parent.name] = json.loads(record.read_text())["frame_sha256"]
    return out


def _noop_round_trip_ms(ray: Any, n: int) -> list[float]:
    """Submit + get of a task that does nothing, on a warm worker: Ray's dispatch cost."""

    def noop() -> int:
        return os.getpid()

    remote = ray.remote(num_cpus=1)(noop)
    ray.get(remote.remote())  # a worker is up before timing
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ray.get(remote.remote())
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def run_cpu(args: argparse.Namespace, res: BenchResult, tmp: Path) -> None:
    spec = cpu_spec(args.variants, args.frames)
    n = len(spec.variants)
    res.config.update({"variants": n, "frames": args.frames, "size": 64, "preset": "tiny-latent", "workers": args.workers})
    local, _ = _timed_sweep(spec, tmp / "local", executor="local")
    note = f"{n} tiny-latent variants, {args.frames} frames 64x64"
    res.add("local", local, "s", note + "; one process, models loaded once")
    if args.smoke:
        return
    import ray  # why here: Ray is the optional extra; --smoke never starts it

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    res.add("ray_init", time.perf_counter() - t0, "s", f"ray.init, local, num_cpus={args.workers}, no dashboard")
    try:
        cold, _ = _timed_sweep(spec, tmp / "ray-cold", executor="ray")
        warm, _ = _timed_sweep(spec, tmp / "ray-warm", executor="ray")
        same = _frame_hashes(tmp / "local") == _frame_hashes(tmp / "ray-cold") == _frame_hashes(tmp / "ray-warm")
        res.config["frames_identical"] = same
        if not same:
            raise SystemExit("the Ray frames differ from the local executor's")
        noop = sorted(_noop_round_trip_ms(ray, 50))
    finally:
        ray.shutdown()
    w = args.workers
    res.add("ray_cold", cold, "s", f"{w} fresh workers: imports + model load in each")
    res.add("ray_warm", warm, "s", f"same {w} workers again, models cached")
    res.add("ratio_cold", cold / local, "x", "ray_cold / local (< 1: Ray faster)")
    res.add("ratio_warm", warm / local, "x", "ray_warm / local (< 1: Ray faster)")
    res.add("overhead_wall_cold", (cold - local) / n * 1000, "ms/variant", "(ray_cold - local) / variants")
    res.add("overhead_wall_warm", (warm - local) / n * 1000, "ms/variant", "(ray_warm - local) / variants")
    res.add("overhead_worker_cold", (cold * w - local) / n * 1000, "ms/variant",
            f"(ray_cold x {w} - local) / variants: worker time beyond the local run")
    res.add("overhead_worker_warm", (warm * w - local) / n * 1000, "ms/variant",
            f"(ray_warm x {w} - local) / variants")
    res.add("worker_start", (cold - warm) / (n / w) * 1000, "ms/variant",
            "(ray_cold - ray_warm) per variant of a worker: worker import + model load, amortised")
    res.add("noop_round_trip", noop[len(noop) // 2], "ms", "no-op task submit + get, warm worker (median of 50)",
            samples=noop)


def run_gpu(args: argparse.Namespace, res: BenchResult, tmp: Path) -> None:
    import torch  # why here: only the GPU figure needs to count devices

    if not torch.cuda.is_available():
        res.skipped = "--gpu needs a CUDA device (run it on a lent GPU machine)"
        return
    gpus = torch.cuda.device_count()
    spec = gpu_spec(args.gpu_variants, args.gpu_frames)
    n = len(spec.variants)
    res.config.update({"variants": n, "frames": args.gpu_frames, "size": 512, "preset": "sd-turbo", "gpus": gpus,
                       "gpu": torch.cuda.get_device_name()})
    local, _ = _timed_sweep(spec, tmp / "gpu-local", executor="local")
    res.add("gpu_local_variants_per_hour", n / local * 3600, "variants/h",
            f"sd-turbo 512^2, {args.gpu_frames} frames, local executor, 1 GPU")
    import ray  # why here: Ray is the optional extra

    ray.init(num_gpus=gpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    try:
        cold, _ = _timed_sweep(spec, tmp / "gpu-ray", executor="ray", gpus_per_run=1.0)
    finally:
        ray.shutdown()
    res.add("gpu_ray_variants_per_hour", n / cold * 3600, "variants/h",
            f"sd-turbo 512^2, {args.gpu_frames} frames, Ray, 1 worker per GPU x {gpus}, cold workers")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=8)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="Ray worker processes (num_cpus of the local Ray)")
    p.add_argument("--smoke", action="store_true", help="2 variants, local executor only, no Ray")
    p.add_argument("--gpu", action="store_true", help="the GPU figure: sd-turbo 512^2 variants/hour, 1 worker per GPU")
    p.add_argument("--gpu-variants", type=int, default=8)
    p.add_argument("--gpu-frames", type=int, default=8)
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.smoke:
        args.variants = 2
    import torch  # why here: after the offline environment variables are set

    res = BenchResult("sweep_gpu" if args.gpu else "sweep")
    started = _dt.datetime.now(_dt.timezone.utc)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        (run_gpu if args.gpu else run_cpu)(args, res, Path(tmp))
    title = f"sweeps on {platform.processor() or platform.machine()} ({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads)"
    if args.smoke:
        title += " -- SMOKE: numbers meaningless"
    print(title)
    print(format_table([res]))
    meta = {
        "date": started.isoformat(timespec="seconds"), "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "smoke": bool(args.smoke),
        "load_average_start": list(load0), "load_average_end": list(os.getloadavg()),
    }
    try:
        import ray  # why here: only to record its version when installed

        meta["ray"] = ray.__version__
    except ImportError:
        meta["ray"] = None
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": {res.name: res.to_dict()}}, indent=2) + "\n")
    print(f"JSON written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
