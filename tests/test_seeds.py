"""Per-frame seeds (issue 13, point 6): Deforum's next_seed per diffused frame, webui's seed_schedule, Disco's +1."""

from __future__ import annotations

import pytest

from discolib.animation.plan import diffused_frames, frame_seeds
from discolib.config.presets import apply_preset
from discolib.config.settings import Settings


def tiny(mode: str, animation: str, **overrides: object) -> Settings:
    s = apply_preset(Settings.defaults(mode, animation), "tiny" if mode == "guided" else "tiny-latent")
    for k, v in overrides.items():
        s.set(k, v)
    return s


class DeforumSeeds:
    """deforum-stable-diffusion's render_animation seed handling, re-derived: ``args.seed`` is used by the frame
    being diffused, then ``next_seed`` moves it on, with ``seed_internal`` starting at 0."""

    def __init__(self, seed: int, behavior: str, iter_n: int) -> None:
        self.seed, self.behavior, self.iter_n, self.internal = seed, behavior, iter_n, 0

    def next(self) -> int:
        if self.behavior == "iter":
            if self.internal % self.iter_n == 0:
                self.seed += 1
            self.internal += 1
        elif self.behavior in ("ladder", "alternate"):
            up = 2 if self.behavior == "ladder" else 1
            self.seed += up if self.internal == 0 else -1
            self.internal = 1 - self.internal
        return self.seed


def deforum_diffused_seeds(seed: int, behavior: str, iter_n: int, n_frames: int, cadence: int) -> dict[int, int]:
    """Frame index -> seed of each diffused frame (frame_idx advances by the cadence after each diffusion)."""
    gen, out, frame = DeforumSeeds(seed, behavior, iter_n), {}, 0
    while frame < n_frames:
        out[frame] = gen.seed
        gen.next()
        frame += cadence
    return out


def test_iter_every_second_frame_is_deforums() -> None:
    s = tiny("latent", "2D", seed_iter_n=2)
    assert frame_seeds(s, 6, 1000) == [1000, 1001, 1001, 1002, 1002, 1003]


@pytest.mark.parametrize(("behavior", "iter_n"), [("iter", 1), ("iter", 2), ("iter", 3), ("ladder", 1), ("alternate", 1), ("fixed", 1)])
@pytest.mark.parametrize("cadence", [1, 3])
def test_latent_seeds_follow_next_seed_per_diffused_frame(behavior: str, iter_n: int, cadence: int) -> None:
    s = tiny("latent", "3D", seed_behavior=behavior, seed_iter_n=iter_n, cadence=cadence, max_frames=13)
    seeds = frame_seeds(s, 13, 1000)
    want = deforum_diffused_seeds(1000, behavior, iter_n, 13, cadence)
    assert {i: seeds[i] for i in want} == want
    # In-between frames record the seed of the diffused frame before them.
    for i in range(13):
        assert seeds[i] == want[i - i % cadence]


def test_cadence_three_gives_seed_plus_k_not_plus_3k() -> None:
    s = tiny("latent", "2D", cadence=3, max_frames=10)
    seeds = frame_seeds(s, 10, 5)
    assert [seeds[k] for k in (0, 3, 6, 9)] == [5, 6, 7, 8]


def test_seed_schedule_interpolates_linearly_then_int() -> None:
    s = tiny("latent", "2D", seed_behavior="schedule", seed_schedule="0:(100), 4:(200)")
    assert frame_seeds(s, 6, 1) == [100, 125, 150, 175, 200, 200]
    s = tiny("latent", "2D", seed_behavior="schedule", seed_schedule="0:(100), 3:(101)")
    assert frame_seeds(s, 4, 1) == [100, 100, 100, 101]  # 100.33, 100.67 truncate as int() does
    s = tiny("latent", "2D", seed_behavior="schedule", seed_schedule="0:(s), 2:(s+100), 3:(-1)")
    seeds = frame_seeds(s, 4, 10)
    # (s) is an expression: Deforum evaluates it from its key on and does not interpolate towards the next key.
    assert seeds[:3] == [10, 10, 110] and 0 <= seeds[3] < 2**32


def test_seed_schedule_with_cadence_reads_the_diffused_frame() -> None:
    s = tiny("latent", "2D", seed_behavior="schedule", seed_schedule="0:(0), 6:(60)", cadence=3, max_frames=7)
    assert frame_seeds(s, 7, 1) == [0, 0, 0, 30, 30, 30, 60]


def test_guided_seeds_advance_every_frame_as_disco() -> None:
    # Disco's do_run: seed += 1 on every frame > 0, turbo-skipped frames included.
    s = tiny("guided", "3D", cadence=3, turbo_preroll=2, max_frames=9)
    assert frame_seeds(s, 9, 7) == list(range(7, 16))


def test_random_is_reproducible_and_per_diffused_frame() -> None:
    s = tiny("latent", "2D", seed_behavior="random", cadence=2, max_frames=6)
    a = frame_seeds(s, 6, 3)
    assert a == frame_seeds(s, 6, 3) and a[0] == 3
    assert a[1] == a[0] and a[3] == a[2] and len({a[0], a[2], a[4]}) == 3


def test_diffused_frames_preroll_includes_turbo_preroll_frame() -> None:
    # Disco: frames 0 .. turbo_preroll (frame_num == turbo_preroll included) are diffused, then frame % steps == 0.
    s = tiny("guided", "3D", cadence=3, turbo_preroll=4, max_frames=10)
    assert [i for i, d in enumerate(diffused_frames(s, 10)) if d] == [0, 1, 2, 3, 4, 6, 9]
    s = tiny("latent", "3D", cadence=3, turbo_preroll=4, max_frames=10)  # Deforum has no preroll
    assert [i for i, d in enumerate(diffused_frames(s, 10)) if d] == [0, 3, 6, 9]
    s.animation.animation_mode = "Video Input"  # Deforum: cadence 1 for video inits
    assert all(diffused_frames(s, 10))
