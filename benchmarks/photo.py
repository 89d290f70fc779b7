"""The offline photo-animation pipeline's speed (issue 22, point 5): ``animate_photo`` on a 5-second 512x512 clip.

For each depth model that needs no download (``constant``: flat depth, ``tiny-depth-anything``: the random tiny
Depth Anything, run through the same code as the real checkpoints) and each camera (``dolly``, ``orbit``): the
whole pipeline, cold (empty depth cache): the photo's depth (model, edge refinement, world depth), the warps of the
original photo, the fill (the background layer once, then per frame its warp and OpenCV inpainting of the rest),
the frame writer (PNG encoding runs on its threads; the figure is what the frame loop waits for) and the H.264
encode. The photo is made here (a gradient with shapes), the video goes to a temporary folder. Prints a table and
writes ``benchmarks/results/photo.json`` (``--json`` elsewhere).

Run: ``HF_HUB_OFFLINE=1 python benchmarks/photo.py [--device cuda] [--seconds 5] [--size 512] [--fps 24]``.
The clip's own length is the real-time budget: "x realtime" below 1 means faster than playback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from discolib.run.photo import animate_photo  # noqa: E402

OUT = Path(__file__).parent / "results" / "photo.json"
STAGES = ("depth", "warp", "fill", "write", "encode", "total")


def make_photo(path: Path, size: int) -> None:
    """A test photo: a sky-to-ground gradient, a sun and two boxes (so the tiny model and the fill have edges)."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([0.3 + 0.5 * v, 0.5 + 0.3 * (1 - v), 0.9 - 0.6 * v], -1)
    img[(u - 0.75) ** 2 + (v - 0.2) ** 2 < 0.01] = (1.0, 0.9, 0.4)
    img[int(0.45 * size) : int(0.9 * size), int(0.15 * size) : int(0.4 * size)] = (0.7, 0.2, 0.15)
    img[int(0.6 * size) : int(0.95 * size), int(0.55 * size) : int(0.8 * size)] = (0.2, 0.4, 0.7)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--cameras", default="dolly,orbit")
    p.add_argument("--depth-models", default="constant,tiny-depth-anything")
    p.add_argument("--json", default=str(OUT))
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DISCOLIB_CACHE"] = str(Path(tmp) / "cache")  # cold: every depth is computed
        photo = Path(tmp) / "photo.png"
        make_photo(photo, args.size)
        for model in args.depth_models.split(","):
            for camera in args.cameras.split(","):
                result = animate_photo(photo, Path(tmp) / f"{model}-{camera}.mp4", camera=camera, seconds=args.seconds,
                                       fps=args.fps, depth_model=model, device=args.device)
                n = len(result.frames)
                t = result.timings
                runs.append({
                    "depth_model": model, "camera": camera, "frames": n, "clip_seconds": n / args.fps,
                    "seconds": {k: round(t.get(k, 0.0), 4) for k in STAGES},
                    "ms_per_frame": {k: round(1000 * t.get(k, 0.0) / n, 2) for k in ("warp", "fill", "write")},
                    "x_realtime": round(t["total"] / (n / args.fps), 3),
                })
                # A fresh cache for the next run: every run computes its depth (a cold start).
                os.environ["DISCOLIB_CACHE"] = str(Path(tmp) / f"cache-{model}-{camera}")
    header = f"{'depth model':22s} {'camera':7s} " + " ".join(f"{k:>8s}" for k in STAGES) + "  x realtime"
    print(f"photo animation, {args.size}x{args.size}, {args.seconds:g} s at {args.fps:g} fps on {args.device} "
          f"(seconds per stage; warp/fill summed over frames)")
    print(header)
    for r in runs:
        cells = " ".join(f"{r['seconds'][k]:8.2f}" for k in STAGES)
        print(f"{r['depth_model']:22s} {r['camera']:7s} {cells}  {r['x_realtime']:10.3f}")
    report = {
        "benchmark": "photo", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": args.device, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "size": args.size, "seconds": args.seconds, "fps": args.fps, "runs": runs,
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
