"""Live mode (issue 18, "Measure"): frames per second and key-to-frame latency of :class:`discolib.run.live.LiveSession`.

One session is started and measured in four phases:

1. **load**: the latent models (``model_load``: :func:`discolib.run.adapter.build_sampler`, the sampler the
   session would build, given to it), then ``start()`` to the first frame (``start_to_first_frame``: the depth model,
   the first frame, and on CUDA with ``--compile`` the compilation the first frames trigger), then ``--warmup``
   untimed frames;
2. **steady frames per second** over ``--frames`` frames with the camera moving forward (``set_velocity(z=...)``
   before the phase): frames made (by index: the session's one-frame mailbox may drop a frame the callback had no
   time for; counted in ``frames_dropped``) over the span of their ``made_at`` stamps, and the median interval
   between delivered frames;
3. **key-to-frame latency** of ``--presses`` control changes (``set_velocity(z=...)``, alternately faster and slower,
   as a key pressed and released): each press lands at a random moment of a frame (a seeded random fraction of the
   mean frame interval after a frame arrived, so the phase of the render loop is sampled), then the first frame whose
   ``LiveFrame.latency_s`` reports it is awaited; presses are spaced ``--gap`` frames apart. Reported: the session's
   ``latency_s`` (median and p90 over the presses) and the benchmark's own clock (``made_at`` minus the
   ``perf_counter`` just before the call), which must agree;
4. the session's own :meth:`~discolib.run.live.LiveSession.stats` for comparison.

CPU (default): preset ``tiny-live`` (64x64, tiny random latent and depth models, offline). ``--gpu``: preset
``sd-turbo-live`` at 512^2 on CUDA (1 denoising step, TAESD, Depth-Anything-V2-Small, bf16; random weights of the
real architectures where the weights are not on the machine, so the timings are the architectures'), with or without
``torch.compile`` (``--compile`` / ``--no-compile``; default: the preset's), and checks the goal: >= 30 frames/s and
< 100 ms key-to-frame latency (median; p90 reported beside it) on one H100.

Run: ``python benchmarks/bench_live.py [--gpu] [--compile|--no-compile] [--frames N] [--warmup N] [--presses N]
[--out PATH]``; prints a table and writes JSON (``benchmarks/results/live.json`` by default). The session writes
nothing; with ``--gpu`` the compiler caches (inductor, Triton, CUDA's JIT) go to a temporary folder beside ``--out``
that is removed at the end, so the run writes nothing outside ``--out``'s folder (models are loaded as every run
loads them: the tiny ones are built once into discolib's model cache).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Never touch the network: offline, the models are random weights built from their configs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_common sits beside this file
    sys.path.insert(0, str(HERE))

from bench_common import BenchResult, format_table, median  # noqa: E402

RESULTS = HERE / "results" / "live.json"
GOAL_FPS = 30.0
GOAL_LATENCY_MS = 100.0
#: per mode: (preset, warm-up frames, steady frames, presses, seconds allowed for the load and first frame)
DEFAULTS: dict[str, tuple[str, int, int, int, float]] = {
    "cpu": ("tiny-live", 3, 30, 8, 300.0),
    "gpu": ("sd-turbo-live", 30, 300, 20, 540.0),  # compile happens in the first frames; 10-minute device calls
}


@dataclass
class FrameLog:
    """What the session's ``on_frame`` callback saw: (index, made_at, latency_s) per frame, and a condition to wait on.

    The callback runs on the session's delivery thread, so it only appends and notifies (no image is kept)."""

    frames: list[tuple[int, float, float | None]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, frame: Any) -> None:
        with self.cond:
            if self.shape is None:
                self.shape = tuple(frame.image.shape)
            self.frames.append((int(frame.index), float(frame.made_at), frame.latency_s))
            self.cond.notify_all()

    def wait(self, pred: Callable[[], Any], session: Any, timeout: float, what: str) -> Any:
        """Wait until ``pred()`` (called under the lock) is truthy; raise the session's error, or TimeoutError."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = pred()
                if got:
                    return got
                if session.error is not None:
                    raise RuntimeError(f"the live session failed while waiting for {what}") from session.error
                if self.frames and not session.running:  # it ran, then ended (max_frames, stop()) without error
                    raise RuntimeError(f"the live session stopped while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what} within {timeout:.0f} s")
                self.cond.wait(min(left, 0.5))

    def count(self) -> int:
        with self.cond:
            return len(self.frames)

    def wait_count(self, n: int, session: Any, timeout: float) -> None:
        """Wait until ``n`` frames have been seen."""
        self.wait(lambda: len(self.frames) >= n, session, timeout, f"frame {n}")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between the sorted values (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@contextmanager
def _compiler_scratch(folder: Path | None) -> Iterator[None]:
    """Point the compiler caches at ``folder`` for the run (the user's own settings win), then put them back."""
    if folder is None:
        yield
        return
    keys = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TRITON_HOME", "CUDA_CACHE_PATH")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, str(folder / k.lower()))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _join_new_threads(before: set[threading.Thread], timeout: float) -> None:
    """Wait for the threads started since ``before`` (the session's) to end.

    Why: a session thread that ends after this function's caller has dropped the session holds the last reference to
    it, and frees the models on that thread; if that happens while the interpreter is exiting, torch's tensor
    deallocation (which releases the GIL) meets Python's exit of daemon threads and the process aborts ("terminate
    called without an active exception", seen on this CPU with sd-turbo-live's models)."""
    deadline = time.monotonic() + timeout
    for t in threading.enumerate():
        if t not in before and t is not threading.current_thread():
            t.join(max(deadline - time.monotonic(), 0.0))


def build_settings(args: argparse.Namespace) -> Any:
    """The session's settings: the preset on its device (CUDA, bf16, random weights if absent with ``--gpu``)."""
    from discolib.config.presets import apply_preset
    from discolib.config.settings import Settings

    s = apply_preset(Settings.defaults("latent", "3D"), args.preset)
    if args.gpu:
        s.set("models.device", "cuda")
        s.set("models.dtype", "bfloat16")
    if args.gpu or args.random_weights:
        s.set("models.random_weights", True)  # the GPU machine is offline: the real architectures' timings
    if args.size:
        s.set("image.width", args.size)
        s.set("image.height", args.size)
    if args.compile is not None:
        s.set("models.compile", bool(args.compile))
    return s


def measure(args: argparse.Namespace, res: BenchResult) -> None:
    """Start a session, run the phases of the module docstring, add the figures to ``res``."""
    from discolib.run.live import LiveSession
    from discolib.run.runs import threads_for

    settings = build_settings(args)
    res.config.update({
        "preset": args.preset,
        "size": f"{settings.image.width}x{settings.image.height}",
        "steps": settings.image.steps,
        "strength": settings.animation.strength_schedule,
        "latent_model": settings.models.latent_model,
        "fast_vae": settings.models.fast_vae or None,
        "depth_model": settings.models.depth_model,
        "device": settings.models.device,
        "dtype": settings.models.dtype,
        "compile": settings.models.compile,
        "random_weights": settings.models.random_weights,
        "warmup": args.warmup, "frames": args.frames, "presses": args.presses, "gap": args.gap,
        "speed": args.speed, "record": True,
        "session_threads": threads_for(settings.models.threads) if not args.gpu else None,  # the loop's CPU threads
    })
    from discolib.run.adapter import build_sampler

    log = FrameLog()
    t_load = time.perf_counter()
    sampler = build_sampler(settings)
    model_load = time.perf_counter() - t_load
    session = LiveSession(settings, on_frame=log, sampler=sampler)
    rng = random.Random(args.seed)
    threads_before = set(threading.enumerate())
    t_start = time.perf_counter()
    session.start()
    try:
        log.wait_count(1, session, args.load_timeout)
        first = log.frames[0][1] - t_start
        log.wait_count(1 + args.warmup, session, args.load_timeout)
        res.config["frame_shape"] = list(log.shape or ())

        # Steady state: the camera flies forward at --speed; frames counted once the change has been applied.
        session.set_velocity(z=args.speed)
        log.wait_count(log.count() + 2, session, args.timeout)  # the change has reached the loop
        n0 = log.count()
        log.wait_count(n0 + args.frames, session, args.timeout)
        steady = log.frames[n0:n0 + args.frames]
        stamps = [t for _, t, _ in steady]
        intervals = [(b - a) * 1000.0 for a, b in zip(stamps, stamps[1:], strict=False)]
        made = steady[-1][0] - steady[0][0] + 1  # frames made in the span, delivered or not
        mean_interval = (stamps[-1] - stamps[0]) / (made - 1)
        fps = 1.0 / mean_interval
        res.config["frames_measured"] = made
        res.config["frames_delivered"] = len(steady)
        res.config["frames_dropped"] = made - len(steady)
        res.config["first_measured_frame"] = steady[0][0]

        # Key presses at random phases of the frame, each awaited until a frame reports it.
        presses: list[dict[str, Any]] = []
        for k in range(args.presses):
            log.wait_count(log.count() + args.gap, session, args.timeout)
            time.sleep(rng.random() * mean_interval)
            with log.cond:
                seen = len(log.frames)
                last_index = log.frames[-1][0]
            t_press = time.perf_counter()
            session.set_velocity(z=args.speed * (2.0 if k % 2 == 0 else 1.0))  # a key held, then let go

            def reported(seen: int = seen, t_press: float = t_press) -> tuple[int, float, float] | None:
                for index, made_at, latency in log.frames[seen:]:
                    if latency is not None and made_at >= t_press:
                        return index, made_at, latency
                return None

            index, made_at, latency = log.wait(reported, session, args.timeout, f"the frame showing press {k + 1}")
            presses.append({
                "press": k + 1,
                "frame": index,
                "frames_after_press": index - last_index,
                "latency_ms": round(latency * 1000.0, 3),
                "measured_ms": round((made_at - t_press) * 1000.0, 3),
            })
        stats = session.stats()
        if args.gpu:
            # Host syncs in the loop, as torch reports them: two frames flown under the sync debug mode ("warn":
            # every blocking copy or synchronize warns, from the loop's thread too).
            import warnings  # (only here: the CPU run never needs it)

            import torch  # why here: after the offline environment variables are set (main)

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    log.wait_count(log.count() + 3, session, args.timeout)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
            res.config["sync_debug_warnings_in_3_frames"] = len(syncs)
            res.config["sync_debug_messages"] = sorted(set(syncs))[:20]
    finally:
        session.close()  # the render thread and the delivery thread
        _join_new_threads(threads_before, 10.0)
    if session.error is not None:
        raise RuntimeError("the live session failed") from session.error

    size = res.config["size"]
    label = f"{args.preset} {size}" + (", compiled" if res.config["compile"] else "")
    res.add("model_load", model_load, "s", f"{label}: build_sampler (latent models, cold in this process)")
    res.add("start_to_first_frame", first, "s", "start() to the first frame (depth model + first frame)")
    res.add("fps", fps, "frames/s", f"{label}: {made} steady frames after {args.warmup} warm-up",
            [1000.0 / i for i in intervals if i > 0])
    res.add("frame_interval", median(intervals), "ms", "median time between consecutive frames", intervals)
    if presses:
        lat = [p["latency_ms"] for p in presses]
        own = [p["measured_ms"] for p in presses]
        res.add("latency_median", median(lat), "ms", f"key-to-frame, LiveFrame.latency_s, {len(lat)} presses", lat)
        res.add("latency_p90", percentile(lat, 90.0), "ms", "key-to-frame, 90th percentile", lat)
        res.add("latency_measured_median", median(own), "ms", "the same presses on the benchmark's clock", own)
        res.add("frames_to_show_press", median([float(p["frames_after_press"]) for p in presses]), "frames",
                "frames made after the press until the one showing it (median)")
    res.config["presses_detail"] = presses
    res.config["session_stats"] = stats
    if args.gpu:
        lat = [p["latency_ms"] for p in presses]
        lat_med = median(lat) if lat else None
        lat_p90 = percentile(lat, 90.0) if lat else None
        res.config["goal"] = {
            "fps_min": GOAL_FPS, "latency_ms_max": GOAL_LATENCY_MS, "on": "one H100",
            "fps_met": fps >= GOAL_FPS,
            "latency_met": lat_med is not None and lat_med < GOAL_LATENCY_MS,
            "latency_p90_met": lat_p90 is not None and lat_p90 < GOAL_LATENCY_MS,
            "met": fps >= GOAL_FPS and lat_med is not None and lat_med < GOAL_LATENCY_MS,
        }


def _goal_line(res: BenchResult) -> str:
    goal = res.config.get("goal")
    if not goal:
        return ""
    figs = {f.name: f.value for f in res.figures}
    verdict = "MET" if goal["met"] else "NOT MET"
    lat = figs.get("latency_median")
    return (f"goal (>= {GOAL_FPS:.0f} frames/s and < {GOAL_LATENCY_MS:.0f} ms key-to-frame on one H100): {verdict} "
            f"on {res.config.get('gpu', 'this GPU')}: {figs.get('fps', 0.0):.1f} frames/s, "
            f"latency median {lat if lat is None else round(lat, 1)} ms, "
            f"p90 {round(figs['latency_p90'], 1) if 'latency_p90' in figs else None} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", action="store_true", help="sd-turbo-live 512^2 on CUDA, bf16, checks the 30 fps / 100 ms goal")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile on or off (default: the preset's: on for sd-turbo-live)")
    p.add_argument("--preset", default=None, help="the session's preset (default: tiny-live; sd-turbo-live with --gpu)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights where the preset's are absent (always on with --gpu; a CPU dry run of it)")
    p.add_argument("--size", type=int, default=None, help="frame width and height (default: the preset's)")
    p.add_argument("--frames", type=int, default=None, help="steady frames timed (default: 30 CPU, 300 GPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed frames after the first (default: 3 CPU, 30 GPU)")
    p.add_argument("--presses", type=int, default=None, help="control changes timed (default: 8 CPU, 20 GPU)")
    p.add_argument("--gap", type=int, default=2, help="frames between presses")
    p.add_argument("--speed", type=float, default=1.0, help="translation_z per frame while flying")
    p.add_argument("--seed", type=int, default=0, help="seed of the press phases")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for any awaited frame after the load")
    p.add_argument("--load-timeout", type=float, default=None, help="seconds allowed for the load, first and warm-up frames")
    p.add_argument("--out", type=Path, default=RESULTS, help="the JSON file (default: benchmarks/results/live.json)")
    args = p.parse_args(argv)
    preset, warmup, frames, presses, load_timeout = DEFAULTS["gpu" if args.gpu else "cpu"]
    args.preset = args.preset or preset
    args.warmup = warmup if args.warmup is None else args.warmup
    args.frames = frames if args.frames is None else args.frames
    args.presses = presses if args.presses is None else args.presses
    args.load_timeout = load_timeout if args.load_timeout is None else args.load_timeout
    if args.frames < 2 or args.warmup < 0 or args.presses < 0 or args.gap < 1:
        p.error("--frames must be >= 2, --warmup and --presses >= 0, --gap >= 1")
    import torch  # why here: after the offline environment variables are set

    res = BenchResult("live_gpu" if args.gpu else "live")
    started = _dt.datetime.now(_dt.timezone.utc)
    load0 = os.getloadavg()
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    code = 0
    if args.gpu and not torch.cuda.is_available():
        res.skipped = (f"--gpu needs CUDA, and torch {torch.__version__} sees no CUDA device here "
                       f"(built with CUDA {torch.version.cuda}): nothing measured; run it on a GPU machine")
        print(f"bench_live: {res.skipped}", file=sys.stderr)
        code = 1
    else:
        if args.gpu:
            res.config["gpu"] = torch.cuda.get_device_name()
        try:
            with tempfile.TemporaryDirectory(prefix=".bench-live-", dir=out.parent) as tmp, \
                    _compiler_scratch(Path(tmp) if args.gpu else None):
                measure(args, res)
        except Exception as exc:  # the JSON still says what failed (a GPU run is not repeated lightly)
            traceback.print_exc()
            cause = f" (caused by {type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            res.skipped = f"failed: {type(exc).__name__}: {exc}{cause}"
            res.figures.clear()
            print(f"bench_live: {res.skipped}", file=sys.stderr)
            code = 1
    title = f"live session on {res.config.get('gpu') or platform.processor() or platform.machine()} " \
            f"({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads)"
    print(title)
    print(format_table([res]))
    if args.gpu and not res.skipped:
        print(_goal_line(res))
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/bench_live.py", *(sys.argv[1:] if argv is None else argv)]),
        "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "cuda": torch.cuda.is_available(),
        "load_average_start": list(load0), "load_average_end": list(os.getloadavg()),
    }
    out.write_text(json.dumps({"meta": meta, "results": {res.name: res.to_dict()}}, indent=2) + "\n")
    print(f"JSON written to {out}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
