"""Disco v5.7 Dango cutouts and cut schedules (discolib.guidance.cutouts)."""

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
    parse_cut_schedule,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _colour_image(h: int = 40, w: int = 56, b: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=_gen(seed))


def _is_grey(cuts: torch.Tensor) -> torch.Tensor:
    """(N,) True where all three channels are equal."""
    return (cuts[:, 0] - cuts[:, 1]).abs().amax(dim=(-2, -1)).lt(1e-6) & (cuts[:, 1] - cuts[:, 2]).abs().amax(
        dim=(-2, -1)
    ).lt(1e-6)


@pytest.mark.parametrize("overview", [0, 1, 2, 3, 4, 6])
@pytest.mark.parametrize("inner", [0, 3])
def test_shapes_and_counts(overview: int, inner: int) -> None:
    if overview + inner == 0:
        with pytest.raises(CutoutError):
            make_cutouts(_colour_image(), 32, overview, inner, 1.0, 0.2, generator=_gen())
        return
    cuts = make_cutouts(_colour_image(b=2), 24, overview, inner, 1.0, 0.2, generator=_gen())
    assert cuts.shape == ((overview + inner) * 2, 3, 24, 24)
    assert torch.isfinite(cuts).all()


def test_overview_variants_without_augmentation() -> None:
    img = _colour_image(h=30, w=50)
    cuts = make_cutouts(img, 32, 4, 0, 1.0, 0.0, generator=_gen(), augment=False)
    plain, grey, flipped, grey_flipped = cuts
    assert _is_grey(cuts).tolist() == [False, True, False, True]
    torch.testing.assert_close(flipped, plain.flip(-1))
    torch.testing.assert_close(grey_flipped, grey.flip(-1))
    # Plain overview = zero-padded (black bars top and bottom for a landscape frame) square, resized.
    square = F.pad(img, (0, 0, 10, 10))
    expected = F.interpolate(square, size=(32, 32), mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(plain, expected[0])
    assert plain[:, :3].abs().max() < 0.05 and plain[:, -3:].abs().max() < 0.05  # black bars
    # Portrait frames get bars left and right.
    tall = make_cutouts(_colour_image(h=50, w=30), 32, 1, 0, 1.0, 0.0, generator=_gen(), augment=False)[0]
    assert tall[:, :, :3].abs().max() < 0.05 and tall[:, :, -3:].abs().max() < 0.05


def test_more_than_four_overviews_repeat_the_plain_cut() -> None:
    cuts = make_cutouts(_colour_image(), 16, 6, 0, 1.0, 0.0, generator=_gen(), augment=False)
    assert cuts.shape[0] == 6
    for c in cuts[1:]:
        torch.testing.assert_close(c, cuts[0])
    assert not _is_grey(cuts).any()


def test_batch_is_cut_major() -> None:
    img = _colour_image(b=2)
    cuts = make_cutouts(img, 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    single0 = make_cutouts(img[:1], 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    single1 = make_cutouts(img[1:], 16, 2, 0, 1.0, 0.0, generator=_gen(), augment=False)
    torch.testing.assert_close(cuts[0::2], single0)  # cut k of item 0 at 2k
    torch.testing.assert_close(cuts[1::2], single1)


def test_inner_cut_with_pow_zero_is_the_largest_square() -> None:
    # rand ** 0 == 1 gives size = min side; on a square image that is the whole image.
    img = _colour_image(h=48, w=48)
    cuts = make_cutouts(img, 32, 1, 2, 0.0, 0.0, generator=_gen(), augment=False)
    torch.testing.assert_close(cuts[1], cuts[0])
    torch.testing.assert_close(cuts[2], cuts[0])


def test_image_smaller_than_cut_is_upscaled() -> None:
    cuts = make_cutouts(_colour_image(h=12, w=20), 32, 2, 3, 1.0, 0.5, generator=_gen())
    assert cuts.shape == (5, 3, 32, 32)


def test_grey_fraction_matches_probability() -> None:
    img = _colour_image()
    for p in (0.0, 0.3, 1.0):
        cuts = make_cutouts(img, 8, 0, 400, 1.0, p, generator=_gen(7), augment=False)
        frac = _is_grey(cuts).float().mean().item()
        assert abs(frac - p) < 0.08, (p, frac)


def test_first_inner_cut_is_not_always_grey() -> None:
    # Disco's `i <= int(p * n)` made cut 0 grey on every step; ours draws each cut independently.
    img = _colour_image()
    firsts = [
        bool(_is_grey(make_cutouts(img, 8, 0, 5, 1.0, 0.2, generator=_gen(s), augment=False))[0]) for s in range(40)
    ]
    assert not all(firsts)
    assert any(firsts)  # but it can be
    none = make_cutouts(img, 8, 0, 5, 1.0, 0.0, generator=_gen(), augment=False)
    assert not _is_grey(none).any()  # and p = 0 really means no grey cut


def test_deterministic_under_a_generator_and_global_rng_untouched() -> None:
    img = _colour_image()
    state = torch.random.get_rng_state()
    a = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(3))
    b = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(3))
    c = make_cutouts(img, 24, 4, 6, 1.0, 0.2, generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("aug", ["still", "animation", "video"])
def test_augmentations_are_differentiable(aug: str) -> None:
    img = _colour_image().requires_grad_(True)
    cuts = make_cutouts(img, 24, 4, 4, 1.0, 0.5, generator=_gen(), aug=aug)
    cuts.square().sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0


def test_augment_changes_cuts_but_stays_close() -> None:
    cuts = make_cutouts(_colour_image(), 24, 4, 0, 1.0, 0.0, generator=_gen(), augment=False)
    no_noise = AugmentConfig(flip_p=0.0, noise_std=0.0, degrees=0.0, translate=0.0, grey_p=0.0, brightness=0.0,
                             contrast=0.0, saturation=0.0, hue=0.0)
    torch.testing.assert_close(augment_cuts(cuts, no_noise, generator=_gen()), cuts)
    only_noise = AugmentConfig(flip_p=0.0, degrees=0.0, translate=0.0, grey_p=0.0, brightness=0.0, contrast=0.0,
                               saturation=0.0, hue=0.0)
    noisy = augment_cuts(cuts, only_noise, generator=_gen())
    assert 0.003 < (noisy - cuts).std() < 0.03  # one N(0, 0.01) draw
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


def test_parse_disco_schedule_strings() -> None:
    s = parse_cut_schedule("[12]*400+[4]*600")
    assert len(s) == 1000 and s[0] == 12 and s[399] == 12 and s[400] == 4 and s[-1] == 4
    assert parse_cut_schedule("[1]*1000") == (1.0,) * 1000
    assert parse_cut_schedule(" 500 * [0.2, 0.1] ")[:3] == (0.2, 0.1, 0.2)
    assert parse_cut_schedule("[0.2]*400+[0]*599+[1]")[-1] == 1.0
    assert parse_cut_schedule(2.5) == (2.5,) * 1000
    assert parse_cut_schedule("0.5") == (0.5,) * 1000
    assert parse_cut_schedule([3] * 1000) == (3.0,) * 1000


@pytest.mark.parametrize(
    "bad", ["[12]*400", "[12]*400+[4]*601", "__import__('os').system('true')", "[1]*1000+", "[a]*1000", "", True]
)
def test_parse_schedule_rejects_bad_input(bad: object) -> None:
    with pytest.raises(CutoutError, match="cut_overview"):
        parse_cut_schedule(bad, "cut_overview")  # type: ignore[arg-type]


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
