"""discolib.errors.one_line: a message or an exception flattened for quoting in a one-line error."""

from __future__ import annotations

import pytest

from discolib.errors import one_line

TEXT = "RuntimeError in  step 3:\n\n  size mismatch\r\nfor  weight\u2028end"


def test_squeeze_makes_every_whitespace_run_one_space() -> None:
    assert one_line(TEXT) == "RuntimeError in step 3: size mismatch for weight end"
    assert one_line(ValueError("  two\tlines\n here ")) == "two lines here"


def test_join_turns_each_line_break_into_a_space_and_keeps_other_spacing() -> None:
    assert one_line(TEXT, None, lines="join") == "RuntimeError in  step 3:    size mismatch for  weight end"
    assert one_line("a\x0bb\x0cc\u2028d\n", None, lines="join") == "a b c d"


def test_first_keeps_the_first_line() -> None:
    assert one_line(OSError("cannot identify\nsecond line"), None, lines="first") == "cannot identify"
    assert one_line("", None, lines="first") == ""


@pytest.mark.parametrize("lines", ["squeeze", "join", "first"])
def test_limit_cuts_with_an_ellipsis(lines: str) -> None:
    assert one_line("x" * 10, 10, lines=lines) == "x" * 10  # type: ignore[arg-type]
    assert one_line("x" * 11, 10, lines=lines) == "x" * 9 + "…"  # type: ignore[arg-type]
    assert one_line("x" * 700, None, lines=lines) == "x" * 700  # type: ignore[arg-type]
    assert len(one_line("x" * 700, lines=lines)) == 600  # type: ignore[arg-type]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="lines must be"):
        one_line("x", lines="all")  # type: ignore[arg-type]
