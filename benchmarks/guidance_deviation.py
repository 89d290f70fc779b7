"""How much do discolib's two documented cutout deviations change the CLIP guidance gradient over a run?

Deviations (see discolib/guidance/cutouts.py):

* grey rule: Disco greys inner cut ``i`` when ``i <= int(IC_Grey_P * InnerCrop)`` (so the first inner cut is always
  grey, and one more than asked); discolib greys each inner cut with probability ``IC_Grey_P``.
* augmentation draws: Disco's torchvision transforms run once on the whole cut batch, so one flip / rotation /
  greyscale / jitter draw is shared by all cuts of a step; discolib drew per cut until issue 14
  (``augment_cuts(shared_draws=False)``; shared, as Disco, is now the default).

Rule A (the baseline) is discolib's old pair: probabilistic grey cuts, per-cut draws.

Measure: the guidance gradient d loss / d x_in summed over a run's timesteps (Disco's default schedules, cutn_batches
4), on tiny random-weight CLIP models, for S seeds per rule. Reported:

* ``cos_mean``: cosine between the seed-averaged run gradients of the two rules, next to ``cos_floor``, the same
  cosine between two disjoint halves of the seeds under discolib's rule (the sampling noise of the estimate);
* ``rel_mean``: |mean_A - mean_B| / |mean_A|, next to ``rel_floor`` (same for the two halves);
* ``run_rel``: per seed, |g_A - g_B| / |g_A| for one run's gradient under each rule (different cut draws), next to
  ``run_floor``: the same between two seeds of discolib's rule. When ``run_rel`` ~ ``run_floor``, changing the rule
  changes a run no more than changing the seed does.

    python benchmarks/guidance_deviation.py [--seeds 24] [--size 64]

Prints a table and writes benchmarks/results/guidance_deviation.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from discolib.guidance.cutouts import CutSchedules, _grey3, augment_cuts, make_cutouts
from discolib.guidance.losses import ClipGuidance, weighted_prompt_loss
from discolib.models.load import load_clip_ensemble

RESULTS = Path(__file__).parent / "results" / "guidance_deviation.json"
TIMESTEPS = (990, 800, 650, 500, 300, 100)  # across both regimes of Disco's schedules


class DiscoRuleGuidance(ClipGuidance):
    """ClipGuidance with Disco's inner-cut grey rule and/or shared augmentation draws."""

    def __init__(self, *args: object, disco_grey: bool, shared_aug: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.disco_grey, self.shared_aug = disco_grey, shared_aug

    def _clip_batch_loss(self, x01: torch.Tensor, member_index: int, cuts, generator: torch.Generator) -> torch.Tensor:  # noqa: ANN001
        member = self.ensemble[member_index]
        grey_p = 0.0 if self.disco_grey else cuts.icgray_p
        images = make_cutouts(x01, member.image_size, cuts.overview, cuts.innercut, cuts.ic_pow, grey_p,
                              generator=generator, augment=False)
        if self.disco_grey and cuts.innercut:
            n_grey = int(cuts.icgray_p * cuts.innercut) + 1  # i <= int(p * n), i from 0
            idx = torch.arange(images.shape[0]) - cuts.overview
            mask = ((idx >= 0) & (idx < n_grey)).view(-1, 1, 1, 1)
            images = torch.where(mask, _grey3(images), images)
        if self.augment:
            images = augment_cuts(images, self.aug, generator=generator, shared_draws=self.shared_aug)
        embeds = member.encode_image(images.to(member.device))
        per_cut = weighted_prompt_loss(embeds, self.text_embeds[member_index], self.weights[member_index], normalize=False)
        return per_cut.view(cuts.cutn, x01.shape[0]).mean(0).sum()


def run_gradient(guide: ClipGuidance, x_in: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(x_in)
    for t in TIMESTEPS:
        total += guide.grad(x_in, t, gen)[0]
    return total


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ens = load_clip_ensemble(["tiny-vit"], torch.device("cpu"), torch.float32)
    schedules = CutSchedules.from_disco("[12]*400+[4]*600", "[4]*400+[12]*600", "[1]*1000", "[0.2]*400+[0]*600")
    x_in = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    embeds = ens.encode_text(["a lighthouse in a storm", "yellow"])
    kw = {"schedules": schedules, "clip_guidance_scale": 5000.0, "range_scale": 0.0, "cutn_batches": 4,
          "aug": "still"}
    variants = {
        "grey rule": {"disco_grey": True, "shared_aug": False},
        "augmentation draws": {"disco_grey": False, "shared_aug": True},
        "both": {"disco_grey": True, "shared_aug": True},
    }
    ours = DiscoRuleGuidance(ens, embeds, [1.0, 1.0], disco_grey=False, shared_aug=False, **kw)  # type: ignore[arg-type]
    base = [run_gradient(ours, x_in, s) for s in range(args.seeds)]
    half = args.seeds // 2
    mean_a, mean_a2 = torch.stack(base[:half]).mean(0), torch.stack(base[half:]).mean(0)
    mean_base = torch.stack(base).mean(0)
    run_floor = sum(rel(base[i], base[(i + 1) % args.seeds]) for i in range(args.seeds)) / args.seeds
    rows = []
    for name, flags in variants.items():
        guide = DiscoRuleGuidance(ens, embeds, [1.0, 1.0], **flags, **kw)  # type: ignore[arg-type]
        other = [run_gradient(guide, x_in, 10_000 + s) for s in range(args.seeds)]
        mean_b = torch.stack(other).mean(0)
        mean_b_half = torch.stack(other[:half]).mean(0)
        rows.append({
            "deviation": name,
            "cos_mean": cos(mean_base, mean_b),
            "cos_half": cos(mean_a, mean_b_half),
            "cos_floor": cos(mean_a, mean_a2),
            "rel_mean": rel(mean_base, mean_b),
            "rel_half": rel(mean_a, mean_b_half),
            "rel_floor": rel(mean_a, mean_a2),
            "norm_ratio": float(mean_b.norm() / mean_base.norm()),
            "run_rel": sum(rel(a, b) for a, b in zip(base, other, strict=True)) / args.seeds,
            "run_floor": run_floor,
        })
    print(f"{'deviation':<20} {'cos(half)':>9} {'floor':>7} {'rel(half)':>9} {'floor':>7} {'|B|/|A|':>8} "
          f"{'run_rel':>8} {'floor':>7}")
    for r in rows:
        print(f"{r['deviation']:<20} {r['cos_half']:9.4f} {r['cos_floor']:7.4f} {r['rel_half']:9.4f} "
              f"{r['rel_floor']:7.4f} {r['norm_ratio']:8.3f} {r['run_rel']:8.3f} {r['run_floor']:7.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"seeds": args.seeds, "size": args.size, "timesteps": TIMESTEPS,
                                   "clip": "tiny-vit (random weights)", "rows": rows}, indent=2) + "\n")
    assert all(math.isfinite(r["cos_mean"]) for r in rows)


if __name__ == "__main__":
    main()
