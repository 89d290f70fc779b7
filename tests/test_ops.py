"""discolib.ops: the shared tensor helpers."""

from __future__ import annotations

import math

import pytest
import torch

from discolib.errors import InputError
from discolib.ops import check_image_batch, seeded, stream_seed, x0_from_eps


class _MyError(InputError):
    pass


def test_check_image_batch_names_the_input_and_raises_the_callers_error() -> None:
    check_image_batch(torch.rand(2, 3, 4, 5))
    with pytest.raises(_MyError, match=r"^frame must be a \(B, 3, H, W\) tensor in \[0, 1\], got \(3, 4, 5\)$"):
        check_image_batch(torch.rand(3, 4, 5), "frame", error=_MyError)
    with pytest.raises(InputError, match="floating point"):
        check_image_batch(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    check_image_batch(torch.rand(1, 1, 2, 2), channels=None)  # any channel count
    with pytest.raises(InputError, match="got list"):
        check_image_batch([1, 2, 3])


def test_seeded_is_repeatable_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        a = torch.rand(4)
    with seeded(7):
        b = torch.rand(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream continues as if nothing happened


def test_x0_from_eps_inverts_the_forward_process(dtype: torch.dtype, tol: dict[str, float]) -> None:
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=gen).to(dtype), torch.randn(2, 3, 4, 4, generator=gen).to(dtype)
    abar = 0.3
    x = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps
    torch.testing.assert_close(x0_from_eps(x, eps, abar), x0, **tol)
    torch.testing.assert_close(x0_from_eps(x, eps, torch.tensor(abar, dtype=dtype)), x0, **tol)


def test_stream_seeds_name_distinct_streams() -> None:
    assert stream_seed(42, "noise") == 42  # the seed names the diffusion noise, as in Disco and Deforum
    seeds = {stream_seed(s, p) for s in range(50) for p in ("cuts", "coherence:0", "coherence:1")}
    assert len(seeds) == 150 and not seeds & set(range(50))
    assert stream_seed(42, "cuts") == stream_seed(42, "cuts")  # a pure function: resumes draw the same numbers
    assert all(0 <= s < 2**63 for s in seeds)
