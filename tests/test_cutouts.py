"""Disco v5.7 Dango cutouts and cut schedules (discolib.guidance.cutouts).

The tensor tests take the ``device`` and ``dtype`` fixtures of conftest.py (``pytest --device all --dtype all``
runs them on CUDA in half precision too); the random draws always come from a CPU generator, as in a render.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from discolib.guidance.cutouts import (
    DISCO_DEFAULT_SCHEDULES,
    AugmentConfig,
    CutoutError,
    CutSchedules,
    CutSettings,
    augment_cuts,
    cut_counts_at_step,
    disco_schedule_index,
    make_cutouts,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _colour_image(
    h: int = 40, w: int = 56, b: int = 1, seed: int = 0, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """(b, 3, h, w) uniform colours in [0, 1), drawn in float32 on the CPU (the same picture on every device)."""
    return torch.rand(b, 3, h, w, generator=_gen(seed)).to(device=device, dtype=dtype)


def _is_grey(cuts: torch.Tensor) -> torch.Tensor:
    """(N,) True where all three channels are equal."""
    return (cuts[:, 0] - cuts[:, 1]).abs().amax(dim=(-2, -1)).lt(1e-6) & (cuts[:, 1] - cuts[:, 2]).abs().amax(
        dim=(-2, -1)
    ).lt(1e-6)


@pytest.mark.parametrize("overview", [0, 1, 2, 3, 4, 6])
@pytest.mark.parametrize("inner", [0, 3])
def test_shapes_and_counts(overview: int, inner: int, device: torch.device, dtype: torch.dtype) -> None:
    if overview + inner == 0:
        with pytest.raises(CutoutError):
            make_cutouts(_colour_image(device=device, dtype=dtype), 32, overview, inner, 1.0, 0.2, generator=_gen())
        return
    cuts = make_cutouts(_colour_image(b=2, device=device, dtype=dtype), 24, overview, inner, 1.0, 0.2, generator=_gen())
    assert cuts.shape == ((overview + inner) * 2, 3, 24, 24)
    assert cuts.device.type == device.type and cuts.dtype == dtype
    assert torch.isfinite(cuts).all()


def test_overview_variants_without_augmentation(device: torch.device, dtype: torch.dtype, tol: dict[str, float]) -> None:
    img = _colour_image(h=30, w=50)  # float32 on the CPU: the reference below is computed from it
    cuts = make_cutouts(img.to(device, dtype), 32, 4, 0, 1.0, 0.0, generator=_gen(), augment=False)
    plain, grey, flipped, grey_flipped = cuts
    assert _is_grey(cuts).tolist() == [False, True, False, True]
    torch.testing.assert_close(flipped, plain.flip(-1))
    torch.testing.assert_close(grey_flipped, grey.flip(-1))
    # Plain overview = zero-padded (black bars top and bottom for a landscape frame) square, resized.
    square = F.pad(img, (0, 0, 10, 10))
    expected = F.interpolate(square, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(plain.float().cpu(), expected[0], **tol)
    assert plain[:, :3].abs().max() < 0.05 and plain[:, -3:].abs().max() < 0.05  # black bars
    # Portrait frames get bars left and right.
    tall_img = _colour_image(h=50, w=30, device=device, dtype=dtype)
    tall = make_cutouts(tall_img, 32, 1, 0, 1.0, 0.0, generator=_gen(), augment=False)[0]
    assert tall[:, :, :3].abs().max() < 0.05 and tall[:, :, -3:].abs().max() < 0.05


def test_more_than_four_overviews_repeat_the_plain_cut(device: torch.device, dtype: torch.dtype) -> None:
    cuts = make_cutouts(_colour_image(device=device, dtype=dtype), 16, 6, 0, 1.0, 0.0, generator=_gen(), augment=False)
    assert cuts.shape[0] == 6
    for c in cuts[1:]:
        torch.testing.assert_close(c, cuts[0])
    assert not _is_grey(cuts).any()


def test_batch_is_cut_major(device: torch.device, dtype: torch.dtype) -> None:
    img = _colour_image(b=2, device=device, dtype=dtype)
    cuts = make_cutouts(img, 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    single0 = make_cutouts(img[:1], 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    single1 = make_cutouts(img[1:], 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    torch.testing.assert_close(cuts[0::2], single0)  # cut k of item 0 at 2k
    torch.testing.assert_close(cuts[1::2], single1)


def test_inner_cut_with_pow_zero_is_the_largest_square(device: torch.device, dtype: torch.dtype) -> None:
    # rand ** 0 == 1 gives size = min side; on a square image that is the whole image.
    img = _colour_image(h=48, w=48, device=device, dtype=dtype)
    cuts = make_cutouts(img, 32, 1, 2, 0.0, 0.0, generator=_gen(), augment=False)
    torch.testing.assert_close(cuts[1], cuts[0])
    torch.testing.assert_close(cuts[2], cuts[0])


def test_image_smaller_than_cut_is_upscaled(device: torch.device, dtype: torch.dtype) -> None:
    cuts = make_cutouts(_colour_image(h=12, w=20, device=device, dtype=dtype), 32, 2, 3, 1.0, 0.5, generator=_gen())
    assert cuts.shape == (5, 3, 32, 32)


def test_grey_fraction_matches_probability(device: torch.device, dtype: torch.dtype) -> None:
    img = _colour_image(device=device, dtype=dtype)
    for p in (0.0, 0.3, 1.0):
        cuts = make_cutouts(img, 8, 0, 400, 1.0, p, generator=_gen(7), augment=False)
        frac = _is_grey(cuts).float().mean().item()
        assert abs(frac - p) < 0.08, (p, frac)


def test_first_inner_cut_is_not_always_grey(device: torch.device, dtype: torch.dtype) -> None:
    # Disco's `i <= int(p * n)` made cut 0 grey on every step; ours draws each cut independently.
    img = _colour_image(device=device, dtype=dtype)
    firsts = [
        bool(_is_grey(make_cutouts(img, 8, 0, 5, 1.0, 0.2, generator=_gen(s), augment=False))[0]) for s in range(40)
    ]
    assert not all(firsts)
    assert any(firsts)  # but it can be
    none = make_cutouts(img, 8, 0, 5, 1.0, 0.0, generator=_gen(), augment=False)
    assert not _is_grey(none).any()  # and p = 0 really means no grey cut


def test_deterministic_under_a_generator_and_global_rng_untouched(device: torch.device, dtype: torch.dtype) -> None:
    img = _colour_image(device=device, dtype=dtype)
    state = torch.random.get_rng_state()
    a = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(3))
    b = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(3))
    c = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("aug", ["still", "animation", "video"])
def test_augmentations_are_differentiable(aug: str, device: torch.device, dtype: torch.dtype) -> None:
    img = _colour_image(device=device, dtype=dtype).requires_grad_(True)
    cuts = make_cutouts(img, 24, 4, 4, 1.0, 0.5, generator=_gen(), aug=aug)
    cuts.square().sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_augment_changes_cuts_but_stays_close(device: torch.device, dtype: torch.dtype) -> None:
    cuts = make_cutouts(_colour_image(device=device, dtype=dtype), 24, 4, 0, 1.0, 0.0, generator=_gen(), augment=False)
    no_noise = AugmentConfig(flip_p=0.0, noise_std=0.0, degrees=0.0, translate=0.0, grey_p=0.0, brightness=0.0,
                             contrast=0.0, saturation=0.0, hue=0.0)
    torch.testing.assert_close(augment_cuts(cuts, no_noise, generator=_gen()), cuts)
    only_noise = AugmentConfig(flip_p=0.0, degrees=0.0, translate=0.0, grey_p=0.0, brightness=0.0, contrast=0.0,
                               saturation=0.0, hue=0.0)
    noisy = augment_cuts(cuts, only_noise, generator=_gen())
    assert 0.003 < (noisy - cuts).float().std() < 0.03  # one N(0, 0.01) draw
    all_flipped = augment_cuts(cuts, AugmentConfig(flip_p=1.0, noise_std=0.0, degrees=0.0, translate=0.0, grey_p=0.0,
                                                   brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0),
                               generator=_gen())
    torch.testing.assert_close(all_flipped, cuts.flip(-1))
    greyed = augment_cuts(cuts, AugmentConfig(flip_p=0.0, noise_std=0.0, degrees=0.0, translate=0.0, grey_p=1.0,
                                              brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0),
                          generator=_gen())
    assert _is_grey(greyed).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image": torch.rand(3, 20, 20)},
        {"image": torch.rand(1, 4, 20, 20)},
        {"cut_size": 0},
        {"overview": -1},
        {"ic_grey_p": 1.5},
        {"ic_size_pow": -1.0},
        {"aug": "bogus"},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    args = {"image": torch.rand(1, 3, 20, 20), "cut_size": 16, "overview": 1, "inner": 1, "ic_size_pow": 1.0,
            "ic_grey_p": 0.2, "aug": "still"} | kwargs
    with pytest.raises(CutoutError):
        make_cutouts(args.pop("image"), args.pop("cut_size"), args.pop("overview"), args.pop("inner"),
                     args.pop("ic_size_pow"), args.pop("ic_grey_p"), generator=_gen(), aug=args.pop("aug"))


# ------------------------------------------------------------------------------------------- schedules


def test_schedules_from_strings_numbers_and_lists() -> None:
    # The forms are parse_cut_schedule's (tests/test_cuts.py); here: every entry is a float, in a tuple per schedule.
    s = CutSchedules.from_disco("[12]*400+[4]*600", " 500 * [2, 1] ", 2.5, [0.5] * 999 + [1])
    assert s.overview[:1] == (12.0,) and s.overview[399:401] == (12.0, 4.0) and s.overview[-1] == 4.0
    assert s.innercut[:3] == (2.0, 1.0, 2.0) and s.ic_pow == (2.5,) * 1000 and s.icgray_p[-2:] == (0.5, 1.0)
    assert all(type(v) is float for seq in (s.overview, s.innercut, s.ic_pow, s.icgray_p) for v in seq)
    assert all(len(seq) == 1000 for seq in (s.overview, s.innercut, s.ic_pow, s.icgray_p))


@pytest.mark.parametrize(
    "bad", ["[12]*400", "[12]*400+[4]*601", "__import__('os').system('true')", "[1]*1000+", "[a]*1000", "", True, [1] * 999]
)
def test_bad_schedule_is_a_cutout_error_naming_the_setting(bad: object) -> None:
    with pytest.raises(CutoutError, match="^cut_overview: "):
        CutSchedules.from_disco(cut_overview=bad)  # type: ignore[arg-type]


def test_schedule_index_matches_disco() -> None:
    assert disco_schedule_index(999) == 0  # first step of a 1000-step run: t_int = 1000
    assert disco_schedule_index(0) == 999  # last step: t_int = 1
    assert disco_schedule_index(996) == 3  # first step of ddim250 over 1000 diffusion steps
    assert disco_schedule_index(249, total_steps=250) == 3  # rescaled to 996 first
    assert disco_schedule_index(600) == 399 and disco_schedule_index(599) == 400
    assert disco_schedule_index(1500) == 0 and disco_schedule_index(-5) == 999  # clamped


def test_cut_counts_at_step_with_disco_defaults() -> None:
    assert cut_counts_at_step(DISCO_DEFAULT_SCHEDULES, 999) == CutSettings(12, 4, 1.0, 0.2)
    assert cut_counts_at_step(DISCO_DEFAULT_SCHEDULES, 600) == CutSettings(12, 4, 1.0, 0.2)
    assert cut_counts_at_step(DISCO_DEFAULT_SCHEDULES, 599) == CutSettings(4, 12, 1.0, 0.0)
    assert DISCO_DEFAULT_SCHEDULES.at(0).cutn == 16
    custom = CutSchedules.from_disco("[5]*1000", "[0]*500+[2]*500", 2, "[0.5]*1000")
    assert custom.at(999) == CutSettings(5, 0, 2.0, 0.5) and custom.at(10) == CutSettings(5, 2, 2.0, 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cut_overview": "[0]*1000", "cut_innercut": "[0]*1000"},
        {"cut_overview": "[1.5]*1000"},
        {"cut_icgray_p": "[2]*1000"},
        {"cut_ic_pow": -1},
    ],
)
def test_schedule_validation(kwargs: dict) -> None:
    with pytest.raises(CutoutError):
        CutSchedules.from_disco(**kwargs)
