"""Fixed-seed renders of each tiny preset: prints JSON ``{case: [sha256[:16] of each frame PNG]}``.

A change that must not alter behaviour compares this output before and after it
(``benchmarks/results/preset-hashes.json`` holds the recorded figures):

    python benchmarks/preset_hashes.py > after.json          # every case (~1 min on a CPU)
    python benchmarks/preset_hashes.py tiny-3D tiny-latent-2D  # only these cases

Cases: ``tiny`` (guided) and ``tiny-latent`` presets as stills (2 images), 2D, 3D and 3D with cadence 2 (5 frames),
rendered on one CPU thread (the last bits of CPU kernels depend on the thread count).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers are imported

import torch  # noqa: E402

from discolib import Settings, apply_preset, render  # noqa: E402

CASES = [
    (f"{preset}-{anim}" + ("-cadence" if cadence > 1 else ""), preset, mode, anim, cadence)
    for preset, mode in (("tiny", "guided"), ("tiny-latent", "latent"))
    for anim, cadence in (("None", 1), ("2D", 1), ("3D", 1), ("3D", 2))
]


def frame_hashes(preset: str, mode: str, anim: str, cadence: int) -> list[str]:
    """Render one case into a temporary folder; the first 16 hex digits of each frame's SHA-256."""
    s = apply_preset(Settings.defaults(mode), preset)
    s.set("animation.animation_mode", anim)
    s.set("output.make_video", False)
    s.set("models.threads", 1)  # one thread whatever the machine: the last bits of CPU kernels depend on it
    if anim == "None":
        s.set("run.n_batches", 2)
    else:
        s.set("animation.max_frames", 5)
        s.set("animation.cadence", cadence)
    with tempfile.TemporaryDirectory() as out:
        result = render(s, out=out, progress=False)
        return [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in result.frames]


def main(only: list[str]) -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # random-weight warnings of the tiny models
    out: dict[str, list[str]] = {}
    for name, preset, mode, anim, cadence in CASES:
        if not only or name in only:
            out[name] = frame_hashes(preset, mode, anim, cadence)
            print(name, out[name], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
