"""Time of the photo's 3D export (issue 22, point 4: "under a second for a 1-megapixel photo on this CPU").

Times :func:`discolib.io.mesh.export_glb` and :func:`~discolib.io.mesh.export_ply` end to end (arrays in, file
fsynced and renamed) and the GLB's stages (geometry: vertices, bounds, faces with the edge cut, UVs; the PNG
texture; the write), on synthetic photos made here: a smooth "photo" (gradients and soft shapes, which PNG
compresses like a real photo) and pure noise (PNG's worst case), with a depth map holding a foreground box so the
edge cut has work. Each figure is the median of ``--repeats`` runs after one warm-up.

Run: ``python benchmarks/mesh.py [--repeats 5] [--quick]``; prints a table, writes
``benchmarks/results/mesh.json``. Files go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import BenchResult, format_table, median  # noqa: E402

from discolib.io import mesh  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mesh.json"
SIZES = {"1MP 1024x1024": (1024, 1024), "1MP 1344x768": (768, 1344), "3MP 2048x1536 (sub-grid)": (1536, 2048)}
FOV = 55.0


def make_scene(h: int, w: int, texture: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo ``(h, w, 3)`` uint8 and its depth ``(h, w)``: a tilted ground, waves and a near box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if texture == "noise":
        photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        r = 128 + 100 * np.sin(xx / 57.0) * np.cos(yy / 91.0)
        g = 90 + 80 * (yy / h) + 20 * np.sin((xx + yy) / 23.0)
        b = 200 - 150 * (xx / w)
        photo = np.stack((r, g, b), -1) + rng.normal(0, 2.0, (h, w, 3))  # a little sensor noise
        photo = np.clip(photo, 0, 255).astype(np.uint8)
    depth = 2.0 + 6.0 * (1.0 - yy / h) + 0.3 * np.sin(xx / 40.0)
    depth[h // 3 : h // 2, w // 3 : w // 2] = 1.2  # the foreground box: its outline is cut
    return photo, depth.astype(np.float32)


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this process, all threads) milliseconds of each of ``repeats`` calls after a warm-up.

    The CPU time is what the export costs on an idle machine, less the disk's fsync wait: on a shared machine the
    wall clock also counts the other processes' turns.
    """
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return wall, cpu


def stages(photo: np.ndarray, depth: np.ndarray, path: Path, repeats: int) -> dict[str, float]:
    """Median ms of each GLB stage, by the module's own steps in the order export_glb runs them."""
    h, w = depth.shape
    rows, cols = mesh.grid_size(h, w, 1_500_000)
    vs, us = mesh._sample_positions(h, rows), mesh._sample_positions(w, cols)
    times: dict[str, list[float]] = {"geometry": [], "png": [], "write": []}
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        dg = depth if (rows, cols) == (h, w) else depth[np.ix_(vs, us)]
        vertices = mesh._points(dg, us, vs, h, w, FOV).reshape(-1, 3)
        bounds = mesh._bounds(dg, us, vs, h, w, FOV)
        faces = mesh.mesh_faces(dg, 0.04)
        uv = np.empty((rows, cols, 2), dtype=np.float32)
        uv[..., 0] = ((us + 0.5) / w).astype(np.float32)[None, :]
        uv[..., 1] = ((vs + 0.5) / h).astype(np.float32)[:, None]
        t1 = time.perf_counter()
        png = mesh._png(photo)
        t2 = time.perf_counter()
        mesh._write_parts(path, mesh._glb_parts(vertices, bounds, faces, uv.reshape(-1, 2), png))
        t3 = time.perf_counter()
        for name, value in (("geometry", t1 - t0), ("png", t2 - t1), ("write", t3 - t2)):
            times[name].append(value * 1000.0)
    return {name: median(values[1:]) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only the 1024x1024 photo, 3 repeats")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    sizes = dict(list(SIZES.items())[:1]) if args.quick else SIZES
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = BenchResult(
        "mesh",
        config={
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_start": round(load, 2),
            "load_average_1min_at_end": None,
            "repeats": repeats,
            "fov_deg": FOV,
            "max_vertices": 1_500_000,
            "edge_cut": 0.04,
        },
    )
    with tempfile.TemporaryDirectory(prefix="discolib-mesh-bench-") as tmp:
        folder = Path(tmp)
        for label, (h, w) in sizes.items():
            for texture in ("photo-like", "noise"):
                photo, depth = make_scene(h, w, texture)
                note = f"{texture} texture"
                glb, glb_cpu = timed(lambda p=photo, d=depth: mesh.export_glb(p, d, folder / "x.glb", fov_deg=FOV), repeats)
                size = f"{(folder / 'x.glb').stat().st_size / 1e6:.1f} MB"
                result.add(f"{label} GLB", median(glb), "ms", f"{note}; {size}; wall clock", glb)
                result.add(f"{label} GLB (CPU time)", median(glb_cpu), "ms", f"{note}; process CPU time", glb_cpu)
                for stage, ms in stages(photo, depth, folder / "s.glb", repeats).items():
                    result.add(f"{label} GLB: {stage}", ms, "ms", note)
                if texture == "photo-like":
                    ply, ply_cpu = timed(
                        lambda p=photo, d=depth: mesh.export_ply(p, d, folder / "x.ply", fov_deg=FOV), repeats
                    )
                    size = f"{(folder / 'x.ply').stat().st_size / 1e6:.1f} MB"
                    result.add(f"{label} PLY", median(ply), "ms", f"{size}; wall clock", ply)
                    result.add(f"{label} PLY (CPU time)", median(ply_cpu), "ms", "process CPU time", ply_cpu)
    if hasattr(os, "getloadavg"):
        result.config["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(format_table([result]))
    print(f"load average (1 min) at start / end: {result.config['load_average_1min_at_start']} / "
          f"{result.config['load_average_1min_at_end']} on {os.cpu_count()} CPUs")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
