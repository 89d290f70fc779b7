"""Keyframe schedules: a small, safe expression language, keyframe strings and their interpolation.

Users paste the strings they wrote for Disco Diffusion and Deforum unchanged, e.g.
``"0: (0), 10: (1.05)"`` or ``"0:(1.0025+0.002*sin(1.25*3.14*t/30))"``. Nothing here calls ``eval``: text is
split into tokens by our own tokenizer, parsed by a precedence-climbing parser into a short postfix program, and
that program is run by a tiny stack machine on numpy arrays (all frames of one keyframe segment at once).

Expression grammar
------------------
::

    expr     := cmp
    cmp      := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?      # not chainable; gives 1.0 or 0.0
    sum      := product (('+' | '-') product)*
    product  := unary (('*' | '/' | '%') unary)*
    unary    := ('-' | '+') unary | power
    power    := atom ('**' unary)?                                      # right-assoc; -2**2 == -4, 2**-1 == 0.5
    atom     := number | name | function '(' expr (',' expr)* ')' | '(' expr ')'
    number   := 1 | 1.5 | 5. | .5 | 1e-3 | 2.5E+4

Names (case-sensitive): ``t`` the frame index, ``max_f`` the last frame index (``max_frames - 1``), ``s`` the
seed, ``pi``, ``e``. Functions: ``sin cos tan asin acos atan sqrt exp log`` (natural log) ``abs floor ceil round``
(half to even, like Python) with one argument; ``atan2(y, x)``; ``min(a, b, ...)`` and ``max(a, b, ...)`` with two
or more; ``clamp(x, lo, hi)``; ``where(cond, a, b)`` (``a`` where ``cond != 0``, else ``b``; both branches are
computed, only the chosen one must be finite). ``%`` follows Python (the result has the divisor's sign). Anything
else -- other names, ``.``, ``[``, quotes, ``;``, ``=`` -- is a parse error. All arithmetic is float64.

Keyframe strings
----------------
``key: value`` pairs separated by commas, spaces anywhere, an optional trailing comma: ``"0: (0), 10: (1.05)"``,
``"0:1, 10: 2"``. The value is any expression (parentheses optional). Splitting respects parentheses, so the comma
in ``atan2(t, 2)`` or ``min(t, 5)`` is not a separator. A bare expression without a key (``"1.0"``,
``"sin(t)"``) means ``"0: (...)"``. Keys are whole frame numbers or expressions of ``max_f`` only
(``"max_f/2: (3)"``, ``"max_f-10: (1)"``). A key with ``max_f`` is resolved when the frame count is known and
rounded *down* (floor); a key without ``max_f`` must be a whole number (``2.5: (1)`` is an error). Keys must be
``>= 0`` and at most ``MAX_KEY_FRAME``; keys past the last frame are allowed and only shape the interpolation
towards them (``"0: (0), 100: (1)"`` over 50 frames ends at 0.49). Duplicate keys: the last one wins, with a
``UserWarning`` naming the setting and the key (at parse time; for ``max_f`` keys when they are resolved).

Semantics
---------
* A key whose value does not use ``t`` (a number, or an expression of ``max_f``/``s`` only) is a *static* key.
  Consecutive static keys are interpolated with the schedule's mode:

  - ``linear`` (default): straight lines between keys;
  - ``step``: each key's value holds until the next key;
  - ``cubic``: monotone piecewise-cubic Hermite (PCHIP, Fritsch-Carlson/Butland slopes) through the keys: smooth,
    never overshoots a key (no zoom dipping below 1 between ``1.0`` and ``1.02`` keys), flat at local extrema;
  - ``ease-in-out``: smoothstep ``3s^2 - 2s^3`` between each pair of consecutive keys (zero slope at every key).

* A key whose value uses ``t`` is evaluated at every frame from its key up to the next key; nothing is tweened
  into or out of it (a static key before it holds until it starts).
* Before the first key the first key's value (at its own frame) holds: a missing frame 0 is not an error.
  After the last key a static value holds and a ``t`` expression keeps being evaluated.
* Any non-finite result (``sqrt(-1)``, ``log(0)``, ``1/0``, ``9**9**9**9``) is a :class:`ScheduleError` naming
  the frame and the column of the operation that failed; numpy warnings are suppressed.

Limits (so hostile text fails cleanly in milliseconds)
------------------------------------------------------
``MAX_TEXT_LENGTH`` characters per string (checked before anything else), ``MAX_TOKENS`` tokens, ``MAX_DEPTH``
levels of nesting (parentheses, calls, unary signs and ``**`` chains; the parser's recursion is bounded by it, so
``RecursionError`` cannot happen), ``MAX_FRAMES`` frames per evaluation, ``MAX_KEY_FRAME`` for keys.

Errors
------
Every problem raises :class:`ScheduleError` (a ``ValueError``) with ``setting``, 1-based ``column`` in the whole
string (newlines count as one character) and ``reason``; ``str(err)`` reads
``"translation_z: column 14: expected ')' to close '(' at column 6, found ','"``.

Also here: :class:`StringSchedule` (string-valued keyframes such as sampler names), :func:`parse_cut_schedule`
(Disco's ``"[40]*400+[20]*600"`` cutout schedules) and :func:`plot_schedule`.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np

from discolib.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "INTERPOLATIONS",
    "MAX_DEPTH",
    "MAX_FRAMES",
    "MAX_KEY_FRAME",
    "MAX_TEXT_LENGTH",
    "MAX_TOKENS",
    "FrameKey",
    "Schedule",
    "ScheduleError",
    "StringSchedule",
    "parse_cut_schedule",
    "parse_frame_key",
    "plot_schedule",
    "resolve_keys",
    "validate_schedule",
    "warn_duplicate_keys",
]

MAX_TEXT_LENGTH = 65536
MAX_TOKENS = 32768
MAX_DEPTH = 64
MAX_FRAMES = 10_000_000
MAX_KEY_FRAME = 10_000_000
MAX_CUT_LENGTH = 1_000_000
INTERPOLATIONS = ("linear", "step", "cubic", "ease-in-out")


# --------------------------------------------------------------------------------------------------- errors
class ScheduleError(InputError):
    """The one error for bad schedule text: ``setting`` and 1-based ``column`` may be None."""

    def __init__(self, reason: str, *, setting: str | None = None, column: int | None = None) -> None:
        self.reason = reason
        self.setting = setting
        self.column = column
        super().__init__(reason)

    def __str__(self) -> str:
        parts = []
        if self.setting is not None:
            parts.append(self.setting)
        if self.column is not None:
            parts.append(f"column {self.column}")
        parts.append(self.reason)
        return ": ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only __init__ would break pickling/copying of the exception otherwise
        return (_rebuild_error, (type(self), self.reason, self.setting, self.column))


def _rebuild_error(cls: type[ScheduleError], reason: str, setting: str | None, column: int | None) -> ScheduleError:
    return cls(reason, setting=setting, column=column)


# ------------------------------------------------------------------------------------------------ tokenizer
class _Token(NamedTuple):
    kind: str  # "num" | "name" | "op" | "end"
    text: str
    pos: int  # 0-based offset in the whole string
    value: float = 0.0


_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(?P<tail>[A-Za-z0-9_.]+)?"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|<=|>=|==|!=|[-+*/%<>(),:\[\]])"
    r"|(?P<bad>.)",
    re.DOTALL,
)
_BAD_CHAR_HINTS = {
    "=": "unexpected '=' (did you mean '=='?)",
    "!": "unexpected '!' (did you mean '!='?)",
    "^": "unexpected '^' (use '**' for powers)",
    ".": "unexpected '.' (attribute access is not allowed)",
    "'": "unexpected quote (strings are not allowed)",
    '"': "unexpected quote (strings are not allowed)",
    ";": "unexpected ';' (only one expression per value)",
}


def _check_length(text: object, setting: str | None, what: str = "schedule") -> str:
    if not isinstance(text, str):
        raise ScheduleError(f"expected a {what} string, found {type(text).__name__}", setting=setting)
    if len(text) > MAX_TEXT_LENGTH:
        raise ScheduleError(
            f"{what} is too long ({len(text)} characters; the limit is {MAX_TEXT_LENGTH})", setting=setting
        )
    return text


def _tokenize(text: str, setting: str | None, start: int = 0, end: int | None = None) -> list[_Token]:
    """Tokens of ``text[start:end]`` (positions in the whole string), ending with an ``end`` token."""
    end = len(text) if end is None else end
    tokens: list[_Token] = []
    append = tokens.append
    for m in _TOKEN_RE.finditer(text, start, end):
        kind = m.lastgroup
        if kind == "ws":
            continue
        pos = m.start()
        if len(tokens) >= MAX_TOKENS:
            raise ScheduleError(f"too many tokens (the limit is {MAX_TOKENS})", setting=setting, column=pos + 1)
        if kind == "op" or kind == "name":
            append(_Token(kind, m.group(), pos))
        elif kind == "bad":
            ch = m.group()
            raise ScheduleError(_BAD_CHAR_HINTS.get(ch, f"unexpected character {ch!r}"), setting=setting, column=pos + 1)
        else:  # "num" (lastgroup is "tail" when letters/dots follow the digits)
            text = m.group()
            shown = text if len(text) <= 24 else f"{text[:10]}... ({len(text)} characters)"  # one readable line
            if m.group("tail") is not None:
                raise ScheduleError(f"malformed number {shown!r}", setting=setting, column=pos + 1)
            value = float(text)
            if not math.isfinite(value):
                raise ScheduleError(f"number {shown} is too large", setting=setting, column=pos + 1)
            append(_Token("num", m.group(), pos, value))
    append(_Token("end", "", end))
    return tokens


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return f"'{tok.text}'" if tok.text else "the end of the text"
    return f"'{tok.text}'"


# ---------------------------------------------------------------------------------------- parser + programs
_VARIABLES = ("t", "max_f", "s")
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _cmp(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: np.asarray(fn(a, b), dtype=np.float64)


_BINARY: dict[str, tuple[int, Callable[[Any, Any], Any]]] = {
    # operator: (binding power, numpy implementation)
    "<": (1, _cmp(np.less)),
    "<=": (1, _cmp(np.less_equal)),
    ">": (1, _cmp(np.greater)),
    ">=": (1, _cmp(np.greater_equal)),
    "==": (1, _cmp(np.equal)),
    "!=": (1, _cmp(np.not_equal)),
    "+": (2, np.add),
    "-": (2, np.subtract),
    "*": (3, np.multiply),
    "/": (3, np.true_divide),
    "%": (3, np.mod),
    "**": (5, np.power),
}
_UNARY_BP = 4
_COMPARISONS = frozenset(("<", "<=", ">", ">=", "==", "!="))


def _variadic(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    return lambda *args: reduce(fn, args)


# name: (min args, max args or None, implementation)
_FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "sin": (1, 1, np.sin),
    "cos": (1, 1, np.cos),
    "tan": (1, 1, np.tan),
    "asin": (1, 1, np.arcsin),
    "acos": (1, 1, np.arccos),
    "atan": (1, 1, np.arctan),
    "atan2": (2, 2, np.arctan2),
    "sqrt": (1, 1, np.sqrt),
    "exp": (1, 1, np.exp),
    "log": (1, 1, np.log),
    "abs": (1, 1, np.abs),
    "floor": (1, 1, np.floor),
    "ceil": (1, 1, np.ceil),
    "round": (1, 1, np.rint),
    "min": (2, None, _variadic(np.minimum)),
    "max": (2, None, _variadic(np.maximum)),
    "clamp": (3, 3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi)),
    "where": (3, 3, lambda c, a, b: np.where(c != 0, a, b)),
}


@dataclass(frozen=True)
class _Instr:
    op: str  # "num" | "var" | "neg" | "bin" | "call"
    arg: Any
    pos: int  # 0-based position of the operator/name, for error columns
    nargs: int = 0


class _Program:
    """A parsed expression as postfix code; evaluated by an explicit stack (no recursion, any length)."""

    __slots__ = ("code", "names", "start", "end", "source")

    def __init__(self, code: list[_Instr], source: str, start: int, end: int) -> None:
        self.code = code
        self.names = frozenset(i.arg for i in code if i.op == "var")
        self.source = source
        self.start = start
        self.end = end

    @property
    def text(self) -> str:
        return self.source[self.start : self.end].strip()

    def constant(self) -> float | None:
        return float(self.code[0].arg) if len(self.code) == 1 and self.code[0].op == "num" else None

    def run(self, env: dict[str, Any]) -> Any:
        stack: list[Any] = []
        with np.errstate(all="ignore"):
            for ins in self.code:
                stack.append(_step(ins, stack, env))
        return stack[-1]

    def evaluate(self, env: dict[str, Any], setting: str | None, frames: np.ndarray | None = None) -> Any:
        """Run and check that every value is finite; ``frames`` (when ``t`` is an array) names the bad frame."""
        value = self.run(env)
        finite = np.isfinite(value)
        if not np.all(finite):
            if frames is not None and np.ndim(value) > 0:
                bad = int(np.flatnonzero(~np.broadcast_to(finite, frames.shape))[0])
                frame: float | None = float(frames[bad])
            else:
                frame = float(env["t"]) if "t" in env else None
            scalar_env = dict(env)
            if frame is not None:
                scalar_env["t"] = np.float64(frame)
            column, what = self._diagnose(scalar_env)
            where = f" at frame {int(frame)}" if frame is not None else ""
            raise ScheduleError(f"{what}{where}", setting=setting, column=column)
        return value

    def _diagnose(self, env: dict[str, Any]) -> tuple[int | None, str]:
        """Find the first operation that turned finite inputs into a non-finite value, and say why."""
        stack: list[Any] = []
        with np.errstate(all="ignore"):
            for ins in self.code:
                n_in = 1 if ins.op == "neg" else 2 if ins.op == "bin" else ins.nargs if ins.op == "call" else 0
                args = stack[len(stack) - n_in :] if n_in else []
                out = _step(ins, stack, env)
                if not np.isfinite(out) and all(np.isfinite(a) for a in args):
                    return ins.pos + 1, _why(ins, [float(a) for a in args])
                stack.append(out)
        return None, "value is not a finite number"


def _step(ins: _Instr, stack: list[Any], env: dict[str, Any]) -> Any:
    """One stack-machine instruction: pops its operands from ``stack`` and returns the result."""
    if ins.op == "num":
        return np.float64(ins.arg)
    if ins.op == "var":
        return env[ins.arg]
    if ins.op == "neg":
        return np.negative(stack.pop())
    if ins.op == "bin":
        b = stack.pop()
        a = stack.pop()
        return _BINARY[ins.arg][1](a, b)
    args = stack[len(stack) - ins.nargs :]
    del stack[len(stack) - ins.nargs :]
    return _FUNCTIONS[ins.arg][2](*args)


def _why(ins: _Instr, args: list[float]) -> str:
    name = ins.arg
    if ins.op == "bin" and name in ("/", "%") and args[1] == 0:
        return "division by zero" if name == "/" else "modulo by zero"
    if ins.op == "bin" and name == "**":
        base, power = args
        if base == 0 and power < 0:
            return "zero raised to a negative power (division by zero)"
        if base < 0 and not float(power).is_integer():
            return "negative number raised to a fractional power"
        return "'**' result too large (overflow)"
    if ins.op == "bin":
        return f"'{name}' result too large (overflow)"
    if name == "sqrt":
        return f"sqrt of a negative number ({args[0]:g})"
    if name == "log":
        return f"log of zero or a negative number ({args[0]:g})"
    if name in ("asin", "acos"):
        return f"{name} of a number outside [-1, 1] ({args[0]:g})"
    if name in ("exp", "tan"):
        return f"{name}() result too large (overflow)"
    return f"{name}() gave a non-finite result"


class _Parser:
    """Precedence-climbing parser over a token slice; emits postfix code. Recursion is bounded by MAX_DEPTH."""

    def __init__(
        self,
        tokens: Sequence[_Token],
        text: str,
        setting: str | None,
        allowed: frozenset[str],
        context: str,
        index: int = 0,
    ) -> None:
        self.tokens = tokens
        self.text = text
        self.setting = setting
        self.allowed = allowed
        self.context = context
        self.i = index
        self.depth = 0
        self.code: list[_Instr] = []

    def error(self, reason: str, pos: int) -> ScheduleError:
        return ScheduleError(reason, setting=self.setting, column=pos + 1)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", tok.pos)

    def parse_all(self) -> _Program:
        """Parse one whole expression; the slice must end right after it."""
        start = self.peek().pos
        self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            if tok.text == ")":
                raise self.error("unexpected ')' (no matching '(')", tok.pos)
            hint = ""
            if self.context == "a keyframe value" and any(t.text == ":" for t in self.tokens[self.i :]):
                hint = " (missing ',' between keyframes?)"
            raise self.error(f"expected an operator or the end of the value, found {_describe(tok)}{hint}", tok.pos)
        return _Program(self.code, self.text, start, tok.pos)

    def expr(self, min_bp: int) -> None:
        tok = self.take()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.enter(tok)
            self.expr(_UNARY_BP)
            if tok.text == "-":
                self.code.append(_Instr("neg", None, tok.pos))
            self.depth -= 1
        elif tok.kind == "op" and tok.text == "(":
            self.enter(tok)
            self.expr(0)
            close = self.take()
            if close.text != ")" or close.kind == "end":
                raise self.error(
                    f"expected ')' to close '(' at column {tok.pos + 1}, found {_describe(close)}", close.pos
                )
            self.depth -= 1
        elif tok.kind == "num":
            self.code.append(_Instr("num", tok.value, tok.pos))
        elif tok.kind == "name":
            self.name(tok)
        else:
            raise self.error(f"expected a value, found {_describe(tok)}", tok.pos)

        last_was_cmp = False
        while True:
            op = self.peek()
            if op.kind != "op" or op.text not in _BINARY:
                return
            bp = _BINARY[op.text][0]
            if bp < min_bp:
                return
            if op.text in _COMPARISONS and last_was_cmp:
                raise self.error("comparisons cannot be chained (write (a < b) * (b < c))", op.pos)
            self.take()
            if op.text == "**":  # right-associative; its right side may start with a sign: 2**-1
                self.enter(op)
                self.expr(_UNARY_BP)
                self.depth -= 1
            else:
                self.expr(bp + 1)
            self.code.append(_Instr("bin", op.text, op.pos))
            last_was_cmp = op.text in _COMPARISONS

    def name(self, tok: _Token) -> None:
        name = tok.text
        if name in _FUNCTIONS:
            lo, hi, _ = _FUNCTIONS[name]
            opening = self.take()
            if opening.text != "(" or opening.kind == "end":
                raise self.error(f"expected '(' after function '{name}', found {_describe(opening)}", opening.pos)
            self.enter(tok)
            nargs = 0
            while True:
                self.expr(0)
                nargs += 1
                sep = self.take()
                if sep.kind == "op" and sep.text == ",":
                    continue
                if sep.kind == "op" and sep.text == ")":
                    break
                raise self.error(
                    f"expected ',' or ')' in {name}(...) opened at column {opening.pos + 1}, found {_describe(sep)}",
                    sep.pos,
                )
            self.depth -= 1
            if nargs < lo or (hi is not None and nargs > hi):
                want = f"exactly {lo}" if lo == hi else f"at least {lo}"
                plural = "" if lo == 1 and lo == hi else "s"
                raise self.error(f"{name}() takes {want} argument{plural}, found {nargs}", tok.pos)
            self.code.append(_Instr("call", name, tok.pos, nargs))
        elif name in _CONSTANTS:
            self.code.append(_Instr("num", _CONSTANTS[name], tok.pos))
        elif name in self.allowed:
            self.code.append(_Instr("var", name, tok.pos))
        elif name in _VARIABLES:
            only = ", ".join(sorted(self.allowed)) or "numbers and pi, e"
            raise self.error(f"'{name}' cannot be used in {self.context} (only {only})", tok.pos)
        else:
            raise self.error(
                f"unknown name '{name}' (expected a number, one of {', '.join(sorted(self.allowed | set(_CONSTANTS)))}"
                " or a function such as sin(...))",
                tok.pos,
            )


def _fold(program: _Program, setting: str | None) -> _Program:
    """Replace an expression without variables by its value (and fail now if that value is not finite)."""
    if program.names or program.constant() is not None:
        return program
    value = float(program.evaluate({}, setting))
    first = program.code[0].pos
    return _Program([_Instr("num", value, first)], program.source, program.start, program.end)


# ---------------------------------------------------------------------------------------------- frame keys
class FrameKey:
    """A keyframe key: a whole frame number, or an expression of ``max_f`` resolved (floored) per frame count."""

    __slots__ = ("text", "column", "setting", "_program", "_frame")

    def __init__(self, text: str, column: int | None, setting: str | None, program: _Program | None, frame: int | None):
        self.text = text
        self.column = column
        self.setting = setting
        self._program = program
        self._frame = frame

    @classmethod
    def from_int(cls, frame: int, *, setting: str | None = None) -> FrameKey:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise ScheduleError(f"expected an integer frame key, found {frame!r}", setting=setting)
        frame = int(frame)
        if frame < 0 or frame > MAX_KEY_FRAME:
            raise ScheduleError(f"frame key {frame} is out of range (0 to {MAX_KEY_FRAME})", setting=setting)
        return cls(str(frame), None, setting, None, frame)

    @property
    def frame(self) -> int | None:
        """The frame when it does not depend on ``max_f``, else None."""
        return self._frame

    @property
    def uses_max_f(self) -> bool:
        return self._frame is None

    def resolve(self, n_frames: int) -> int:
        """The frame index for a run of ``n_frames`` frames (``max_f = n_frames - 1``), floored."""
        if self._frame is not None:
            return self._frame
        assert self._program is not None
        value = float(self._program.evaluate({"max_f": np.float64(n_frames - 1)}, self.setting))
        frame = math.floor(value)
        if frame < 0 or frame > MAX_KEY_FRAME:
            raise ScheduleError(
                f"key '{self.text}' gives frame {frame} for {n_frames} frames (keys must be 0 to {MAX_KEY_FRAME})",
                setting=self.setting,
                column=self.column,
            )
        return frame

    def __repr__(self) -> str:
        return f"FrameKey({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameKey) and (self._frame, self.text) == (other._frame, other.text)

    def __hash__(self) -> int:
        return hash((self._frame, self.text))


def _key_from_tokens(tokens: Sequence[_Token], text: str, setting: str | None) -> FrameKey:
    program = _Parser(tokens, text, setting, frozenset({"max_f"}), "a frame key").parse_all()
    column = tokens[0].pos + 1
    if "max_f" in program.names:
        return FrameKey(program.text, column, setting, program, None)
    value = float(_fold(program, setting).code[0].arg)
    if not value.is_integer():
        raise ScheduleError(f"expected a whole frame number as key, found {value:g}", setting=setting, column=column)
    if value < 0 or value > MAX_KEY_FRAME:
        raise ScheduleError(
            f"frame key {value:g} is out of range (keys must be 0 to {MAX_KEY_FRAME})", setting=setting, column=column
        )
    return FrameKey(program.text, column, setting, None, int(value))


def parse_frame_key(text: str | int, *, setting: str | None = None) -> FrameKey:
    """Parse one key (``"10"``, ``"max_f/2"``, or an ``int``); shared with the prompt schedules."""
    if not isinstance(text, str):
        return FrameKey.from_int(text, setting=setting)  # type: ignore[arg-type]
    _check_length(text, setting, "frame key")
    tokens = _tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("expected a frame number, found an empty key", setting=setting)
    return _key_from_tokens(tokens, text, setting)


def _duplicate_warning(setting: str | None, key: FrameKey, frame: int, stacklevel: int) -> None:
    warnings.warn(
        f"{setting or 'schedule'}: duplicate key '{key.text}' (frame {frame}); the last one wins",
        UserWarning,
        stacklevel=stacklevel + 2,  # past this helper and its caller, as if the caller had warned
    )


def warn_duplicate_keys(keys: Sequence[FrameKey], setting: str | None, stacklevel: int = 1) -> None:
    """Warn (at parse time) about keys without ``max_f`` that name the same frame; the last one wins.

    ``stacklevel`` counts like ``warnings.warn``'s, from the function that calls this one.
    """
    seen: set[int] = set()
    for key in keys:
        if key.frame is not None:
            if key.frame in seen:
                _duplicate_warning(setting, key, key.frame, stacklevel)
            seen.add(key.frame)


def resolve_keys(
    keys: Sequence[FrameKey], n_frames: int, setting: str | None, stacklevel: int = 1
) -> list[tuple[int, int]]:
    """(frame, index into ``keys``) sorted by frame; a duplicate frame keeps the later key.

    Duplicates between plain keys were already reported by :func:`warn_duplicate_keys` at parse time; a key
    with ``max_f`` that lands on the frame of another key warns here (once per frame count). ``stacklevel`` as
    in :func:`warn_duplicate_keys`.
    """
    by_frame: dict[int, int] = {}
    for index, key in enumerate(keys):
        frame = key.resolve(n_frames)
        if frame in by_frame and (key.uses_max_f or keys[by_frame[frame]].uses_max_f):
            _duplicate_warning(setting, key, frame, stacklevel)
        by_frame[frame] = index
    return sorted(by_frame.items())


def _check_frames(n_frames: int, setting: str | None) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)):
        raise ScheduleError(f"n_frames must be an integer, found {n_frames!r}", setting=setting)
    if not 1 <= n_frames <= MAX_FRAMES:
        raise ScheduleError(f"n_frames must be 1 to {MAX_FRAMES}, found {n_frames}", setting=setting)
    return int(n_frames)


# ------------------------------------------------------------------------------------------ keyframe lists
def _split_top_level(tokens: list[_Token]) -> list[tuple[list[_Token], _Token]]:
    """Split at commas outside parentheses/brackets: (segment tokens, the ',' or end token closing it)."""
    segments: list[tuple[list[_Token], _Token]] = []
    current: list[_Token] = []
    depth = 0
    for tok in tokens:
        if tok.kind == "end":
            segments.append((current, tok))
            break
        if tok.kind == "op" and tok.text in ("(", "["):
            depth += 1
        elif tok.kind == "op" and tok.text in (")", "]"):
            depth = max(0, depth - 1)
        elif tok.kind == "op" and tok.text == "," and depth == 0:
            segments.append((current, tok))
            current = []
            continue
        current.append(tok)
    return segments


def _first_top_level(tokens: Sequence[_Token], text: str) -> int | None:
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.kind != "op":
            continue
        if tok.text in ("(", "["):
            depth += 1
        elif tok.text in (")", "]"):
            depth = max(0, depth - 1)
        elif tok.text == text and depth == 0:
            return i
    return None


@dataclass(frozen=True)
class _Keyframe:
    key: FrameKey
    program: _Program

    @property
    def uses_t(self) -> bool:
        return "t" in self.program.names


#: Parsed keyframe lists kept per (text, setting): validation, the CLI, the panel and the render loop all parse
#: the same strings, and a 54 KB string takes about a second to parse. The entries are immutable (frozen
#: keyframes in a tuple; FrameKey and _Program are never mutated after construction), so sharing them is safe.
PARSE_CACHE_SIZE = 64


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_keyframes_cached(text: str, setting: str | None) -> tuple[_Keyframe, ...]:
    """:func:`_parse_keyframes`, memoised (errors are not cached: a bad string raises again on each parse)."""
    return tuple(_parse_keyframes(text, setting))


def _parse_keyframes(text: str, setting: str | None) -> list[_Keyframe]:
    tokens = _tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("empty schedule (expected e.g. '0: (1.0)')", setting=setting)
    segments = _split_top_level(tokens)
    if len(segments) > 1 and not segments[-1][0]:
        segments = segments[:-1]  # one trailing comma is fine
    keyframes: list[_Keyframe] = []
    for seg, closer in segments:
        if not seg:
            raise ScheduleError(
                f"expected a keyframe 'frame: value', found {_describe(closer)}", setting=setting, column=closer.pos + 1
            )
        colon = _first_top_level(seg, ":")
        if colon is None:
            if len(segments) > 1:
                raise ScheduleError(
                    "expected 'frame: value' (missing ':' after the frame number)",
                    setting=setting,
                    column=seg[0].pos + 1,
                )
            key = FrameKey("0", None, setting, None, 0)  # a bare expression means "0: (...)"
            value_tokens = [*seg, _Token("end", closer.text, closer.pos)]
        else:
            if colon == 0:
                raise ScheduleError(
                    "expected a frame number before ':'", setting=setting, column=seg[0].pos + 1
                )
            key = _key_from_tokens([*seg[:colon], _Token("end", ":", seg[colon].pos)], text, setting)
            value_tokens = [*seg[colon + 1 :], _Token("end", closer.text, closer.pos)]
        program = _Parser(value_tokens, text, setting, frozenset(_VARIABLES), "a keyframe value").parse_all()
        keyframes.append(_Keyframe(key, _fold(program, setting)))
    return keyframes


def _static_value(kf: _Keyframe, env: dict[str, Any], setting: str | None) -> float:
    """A key's value without ``t``: a folded number as it is (checked finite by _fold), else evaluated."""
    value = kf.program.constant()
    return float(kf.program.evaluate(env, setting)) if value is None else value


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shape-preserving slopes (Fritsch-Carlson with Butland's weighted harmonic mean) at each knot."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    m = np.zeros(n)
    if n == 2:
        m[:] = delta[0]
        return m
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            m[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for end, (h0, h1, d0, d1) in ((0, (h[0], h[1], delta[0], delta[1])), (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):
        # one-sided three-point estimate, then limited so the end interval stays monotone
        slope = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(slope) != np.sign(d0):
            slope = 0.0
        elif np.sign(d0) != np.sign(d1) and abs(slope) > 3 * abs(d0):
            slope = 3 * d0
        m[end] = slope
    return m


def _interpolate(x: np.ndarray, y: np.ndarray, q: np.ndarray, mode: str) -> np.ndarray:
    """Interpolate knots (x, y) (x increasing) at q >= x[0]; past the last knot the last value holds."""
    if len(x) == 1:
        return np.full(q.shape, y[0])
    seg = np.clip(np.searchsorted(x, q, side="right") - 1, 0, len(x) - 2)
    x0, x1, y0, y1 = x[seg], x[seg + 1], y[seg], y[seg + 1]
    s = np.clip((q - x0) / (x1 - x0), 0.0, 1.0)
    if mode == "step":
        return np.where(s >= 1.0, y1, y0)
    if mode == "cubic":
        m = _pchip_slopes(x, y)
        h = x1 - x0
        s2, s3 = s * s, s * s * s
        out = (2 * s3 - 3 * s2 + 1) * y0 + (s3 - 2 * s2 + s) * h * m[seg] + (3 * s2 - 2 * s3) * y1 + (s3 - s2) * h * m[seg + 1]
    else:
        w = s * s * (3.0 - 2.0 * s) if mode == "ease-in-out" else s
        out = y0 * (1.0 - w) + y1 * w
    # exact at the knots, and never outside the two neighbouring key values (float rounding aside)
    out = np.clip(out, np.minimum(y0, y1), np.maximum(y0, y1))
    return np.where(s >= 1.0, y1, np.where(s <= 0.0, y0, out))


def _normalise_interpolation(interpolation: str, setting: str | None) -> str:
    mode = str(interpolation).strip().lower().replace("_", "-")
    mode = {"easeinout": "ease-in-out", "ease": "ease-in-out", "smoothstep": "ease-in-out"}.get(mode, mode)
    if mode not in INTERPOLATIONS:
        raise ScheduleError(
            f"unknown interpolation {interpolation!r} (expected one of {', '.join(INTERPOLATIONS)})", setting=setting
        )
    return mode


class Schedule:
    """A parsed keyframe schedule; ``values(n_frames)`` gives one float64 per frame (see the module docstring)."""

    def __init__(self, text: str, keyframes: Sequence[_Keyframe], setting: str | None, interpolation: str) -> None:
        self._text = text
        self._keyframes = tuple(keyframes)
        self.setting = setting
        self.interpolation = interpolation
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def parse(cls, text: str, *, setting: str | None = None, interpolation: str = "linear") -> Schedule:
        """Parse and check the syntax now (keys with ``max_f`` are resolved per frame count, later).

        The parsed keyframes of the most recent strings are cached (see ``PARSE_CACHE_SIZE``), so parsing the same
        text again (validation, then the render loop) is free; duplicate-key warnings are still given every time.
        """
        mode = _normalise_interpolation(interpolation, setting)
        text = _check_length(text, setting)
        keyframes = _parse_keyframes_cached(text, setting)
        warn_duplicate_keys([kf.key for kf in keyframes], setting, stacklevel=2)
        return cls(text, keyframes, setting, mode)

    @classmethod
    def constant(cls, value: float, *, setting: str | None = None) -> Schedule:
        """The schedule ``"0: (value)"``."""
        v = float(value)
        if not math.isfinite(v):
            raise ScheduleError(f"expected a finite number, found {value!r}", setting=setting)
        return cls.parse(f"0: ({v!r})", setting=setting)

    @property
    def text(self) -> str:
        """The original text."""
        return self._text

    @property
    def keys(self) -> list[FrameKey]:
        return [kf.key for kf in self._keyframes]

    @property
    def uses_t(self) -> bool:
        return any(kf.uses_t for kf in self._keyframes)

    @property
    def is_constant(self) -> bool:
        """True when every frame gets the same value for any frame count and seed (after constant folding)."""
        if len(self._keyframes) == 1:
            return not self._keyframes[0].uses_t
        consts = {kf.program.constant() for kf in self._keyframes}
        return len(consts) == 1 and None not in consts

    def values(self, n_frames: int, *, seed: int = 0) -> np.ndarray:
        """Values for frames ``0 .. n_frames-1``: float64, shape (n_frames,)."""
        return self._values(n_frames, seed).copy()

    def value_at(self, frame: int, *, n_frames: int, seed: int = 0) -> float:
        """The value at one frame (computed once per (n_frames, seed) and cached)."""
        values = self._values(n_frames, seed)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return float(values[frame])

    def _values(self, n_frames: int, seed: int) -> np.ndarray:
        n = _check_frames(n_frames, self.setting)
        cache_key = (n, int(seed))
        cached = self._cache.get(cache_key)
        if cached is None:
            cached = self._compute(n, int(seed))
            cached.flags.writeable = False
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = cached
        return cached

    def _compute(self, n: int, seed: int) -> np.ndarray:
        setting = self.setting
        env: dict[str, Any] = {"max_f": np.float64(n - 1), "s": np.float64(seed)}
        order = resolve_keys([kf.key for kf in self._keyframes], n, setting, stacklevel=4)
        frames_of = [f for f, _ in order]
        kfs = [self._keyframes[i] for _, i in order]
        static = [None if kf.uses_t else _static_value(kf, env, setting) for kf in kfs]
        out = np.empty(n, dtype=np.float64)
        all_frames = np.arange(n, dtype=np.float64)

        first = frames_of[0]
        if first > 0:  # before the first key, its value (at its own frame) holds
            held = static[0]
            if held is None:
                held = float(kfs[0].program.evaluate({**env, "t": np.float64(first)}, setting))
            out[: min(first, n)] = held

        i = 0
        while i < len(kfs):
            lo = frames_of[i]
            if kfs[i].uses_t:
                hi = min(frames_of[i + 1] if i + 1 < len(kfs) else n, n)
                if lo < hi:
                    t = all_frames[lo:hi]
                    out[lo:hi] = np.broadcast_to(kfs[i].program.evaluate({**env, "t": t}, setting, t), t.shape)
                i += 1
                continue
            j = i  # a run of consecutive static keys is interpolated as one curve
            while j + 1 < len(kfs) and not kfs[j + 1].uses_t:
                j += 1
            hi = min(frames_of[j + 1] if j + 1 < len(kfs) else n, n)
            if lo < hi:
                x = np.asarray(frames_of[i : j + 1], dtype=np.float64)
                y = np.asarray(static[i : j + 1], dtype=np.float64)
                with np.errstate(all="ignore"):
                    out[lo:hi] = _interpolate(x, y, all_frames[lo:hi], self.interpolation)
            i = j + 1
        return out

    def __repr__(self) -> str:
        extra = f", setting={self.setting!r}" if self.setting else ""
        if self.interpolation != "linear":
            extra += f", interpolation={self.interpolation!r}"
        return f"Schedule.parse({self._text!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and (self._text, self.interpolation) == (other._text, other.interpolation)

    def __hash__(self) -> int:
        return hash((self._text, self.interpolation))


# (text, setting, n_frames, interpolation, seed) of schedules that evaluated cleanly: the CLI, the panel and render
# validate the same settings several times, and evaluating six 54 KB strings over 100 000 frames takes a second.
_validated: OrderedDict[tuple[str, str | None, int, str, int], tuple[tuple[type[Warning], str], ...]] = OrderedDict()
_validated_lock = threading.Lock()


def validate_schedule(
    text: str, setting: str | None = None, n_frames: int = 1000, *, interpolation: str = "linear", seed: int = 0
) -> None:
    """Parse ``text`` and evaluate it over ``n_frames`` so that domain errors surface now; raises ScheduleError.

    A schedule that already evaluated cleanly with the same arguments is not evaluated again (its parse is
    cached too, see :meth:`Schedule.parse`), so validating the same settings twice costs almost nothing.
    """
    sched = Schedule.parse(text, setting=setting, interpolation=interpolation)
    key = (sched.text, setting, _check_frames(n_frames, setting), sched.interpolation, int(seed))
    with _validated_lock:
        seen = _validated.get(key)
        if seen is not None:
            _validated.move_to_end(key)
    if seen is not None:
        # The warnings of the first evaluation (e.g. a max_f key landing on another key) are given again: the
        # panel shows them beside the field on every validation, not only the first.
        for category, message in seen:
            warnings.warn(message, category, stacklevel=2)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sched.values(n_frames, seed=seed)
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    with _validated_lock:
        _validated[key] = tuple((w.category, str(w.message)) for w in caught)
        if len(_validated) > PARSE_CACHE_SIZE * 4:
            _validated.popitem(last=False)


# ------------------------------------------------------------------------------------- string schedules
def _split_chars(text: str) -> list[tuple[int, int]]:
    """Character spans split at commas outside parentheses."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            spans.append((start, i))
            start = i + 1
    spans.append((start, len(text)))
    return spans


def _unwrap_value(raw: str) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == "(" and value[-1] == ")":
        value = value[1:-1].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value


class StringSchedule:
    """String-valued keyframes (sampler or model names): ``"0: (euler_a), 10: (dpmpp_2m)"`` or ``"euler_a"``.

    Values hold step-wise from their key; before the first key the first value holds. A text whose first
    ``name:`` part is not a valid key (``"C:/models/x.ckpt"``, ``"https://..."``) is one bare value. Values that
    contain commas must be wrapped in parentheses.
    """

    def __init__(self, text: str, entries: list[tuple[FrameKey, str]], setting: str | None) -> None:
        self._text = text
        self._entries = entries
        self.setting = setting

    @classmethod
    def parse(cls, text: str, *, setting: str | None = None) -> StringSchedule:
        text = _check_length(text, setting)
        if not text.strip():
            raise ScheduleError("empty schedule (expected e.g. '0: (euler_a)')", setting=setting)
        spans = _split_chars(text)
        if len(spans) > 1 and not text[spans[-1][0] : spans[-1][1]].strip():
            spans = spans[:-1]

        def key_of(start: int, end: int) -> FrameKey | None:
            colon = text.find(":", start, end)
            if colon < 0 or not text[start:colon].strip():
                return None
            try:
                return _key_from_tokens(_tokenize(text, setting, start, colon), text, setting)
            except ScheduleError:
                return None

        if all(key_of(a, b) is None for a, b in spans):
            value = _unwrap_value(text)
            if not value:
                raise ScheduleError("expected a value, found empty parentheses", setting=setting, column=1)
            return cls(text, [(FrameKey("0", None, setting, None, 0), value)], setting)

        entries: list[tuple[FrameKey, str]] = []
        for a, b in spans:
            first = a + len(text[a:b]) - len(text[a:b].lstrip())
            colon = text.find(":", a, b)
            if colon < 0:
                raise ScheduleError(
                    "expected 'frame: value' (missing ':' after the frame number)", setting=setting, column=first + 1
                )
            tokens = _tokenize(text, setting, a, colon)
            if tokens[0].kind == "end":
                raise ScheduleError("expected a frame number before ':'", setting=setting, column=colon + 1)
            key = _key_from_tokens(tokens, text, setting)  # raises with the column of the bad key
            value = _unwrap_value(text[colon + 1 : b])
            if not value:
                raise ScheduleError("expected a value after ':'", setting=setting, column=colon + 2)
            entries.append((key, value))
        warn_duplicate_keys([k for k, _ in entries], setting, stacklevel=2)
        return cls(text, entries, setting)

    @property
    def text(self) -> str:
        return self._text

    @property
    def is_constant(self) -> bool:
        return len({v for _, v in self._entries}) == 1

    @property
    def options(self) -> list[str]:
        """The distinct values, in order of appearance."""
        return list(dict.fromkeys(v for _, v in self._entries))

    def values(self, n_frames: int) -> list[str]:
        """One string per frame ``0 .. n_frames-1``."""
        n = _check_frames(n_frames, self.setting)
        order = resolve_keys([k for k, _ in self._entries], n, self.setting, stacklevel=2)
        out: list[str] = []
        for pos, (frame, index) in enumerate(order):
            start = 0 if pos == 0 else min(frame, n)
            end = min(order[pos + 1][0], n) if pos + 1 < len(order) else n
            out.extend([self._entries[index][1]] * max(0, end - start))
        return out

    def value_at(self, frame: int, *, n_frames: int) -> str:
        values = self.values(n_frames)
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < len(values):
            raise ScheduleError(f"frame must be an integer 0 to {len(values) - 1}, found {frame!r}", setting=self.setting)
        return values[frame]

    def __repr__(self) -> str:
        return f"StringSchedule.parse({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StringSchedule) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)


# ----------------------------------------------------------------------------------------- cut schedules
@overload
def parse_cut_schedule(
    text: str, *, setting: str | None = ..., length: int = ..., kind: type[int] = ...
) -> list[int]: ...
@overload
def parse_cut_schedule(text: str, *, setting: str | None = ..., length: int = ..., kind: type[float]) -> list[float]: ...
def parse_cut_schedule(
    text: str, *, setting: str | None = None, length: int = 1000, kind: type[int] | type[float] = int
) -> list[int] | list[float]:
    """Disco's per-step cut schedules, e.g. ``"[40]*400+[20]*600"`` -> 1000 entries (one per diffusion step).

    Grammar: ``term ('+' term)*`` with ``term := (count '*')* '[' expr (',' expr)* ','? ']' ('*' count)*``, as
    Python list arithmetic; counts are safe expressions (``10**3``) that must be whole numbers ``>= 0``. A single
    bare number means that value at every step. The total must be exactly ``length`` entries. ``kind=int`` (cut
    counts) requires whole numbers and returns ints; ``kind=float`` (``cut_innercut``-style fractions such as
    ``"[0.2]*400+[0]*600"``) returns floats. The running total is checked before any list is built, so
    ``"[1]*999999999999"`` fails at once.
    """
    if kind not in (int, float):
        raise ScheduleError(f"kind must be int or float, found {kind!r}", setting=setting)
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= MAX_CUT_LENGTH:
        raise ScheduleError(f"length must be an integer 1 to {MAX_CUT_LENGTH}, found {length!r}", setting=setting)
    text = _check_length(text, setting, "cut schedule")
    tokens = _tokenize(text, setting)
    if tokens[0].kind == "end":
        raise ScheduleError("empty cut schedule (expected e.g. '[40]*400+[20]*600')", setting=setting)
    none = frozenset[str]()

    def number(index: int, min_bp: int) -> tuple[float, int, int]:
        parser = _Parser(tokens, text, setting, none, "a cut schedule", index)
        parser.expr(min_bp)
        program = _Program(parser.code, text, tokens[index].pos, tokens[parser.i].pos)
        return float(program.evaluate({}, setting)), parser.i, tokens[index].pos

    def as_kind(value: float, pos: int) -> float:
        if kind is int:
            if not value.is_integer():
                raise ScheduleError(f"expected a whole number, found {value:g}", setting=setting, column=pos + 1)
            return int(value)
        return value

    if not any(t.text == "[" for t in tokens):  # one bare number for every step
        value, i, pos = number(0, 0)
        if tokens[i].kind != "end":
            raise ScheduleError(
                f"expected '+' or the end of the schedule, found {_describe(tokens[i])}", setting=setting, column=tokens[i].pos + 1
            )
        return [as_kind(value, pos)] * length  # type: ignore[return-value]

    def count(index: int) -> tuple[int, int]:
        value, i, pos = number(index, _UNARY_BP)
        if not value.is_integer() or value < 0:
            raise ScheduleError(f"expected a whole repeat count >= 0, found {value:g}", setting=setting, column=pos + 1)
        if value > length:
            raise ScheduleError(
                f"repeat count {value:.0f} is larger than the schedule length {length}", setting=setting, column=pos + 1
            )
        return int(value), i

    out: list[float] = []
    i = 0
    while True:
        term_pos = tokens[i].pos
        repeat = 1
        while tokens[i].text != "[" or tokens[i].kind == "end":  # leading counts: 400*[40]
            if tokens[i].kind == "end":
                raise ScheduleError("expected '[' to start a list, found the end of the text", setting=setting, column=tokens[i].pos + 1)
            c, i = count(i)
            repeat *= c
            if tokens[i].text != "*":
                raise ScheduleError(
                    f"expected '*' then a list such as [40], found {_describe(tokens[i])}", setting=setting, column=tokens[i].pos + 1
                )
            i += 1
        opening = tokens[i]
        i += 1
        items: list[float] = []
        while True:
            value, i, pos = number(i, 0)
            items.append(as_kind(value, pos))
            sep = tokens[i]
            if sep.text == "," and sep.kind == "op":
                i += 1
                if tokens[i].text == "]":
                    i += 1
                    break
                continue
            if sep.text == "]" and sep.kind == "op":
                i += 1
                break
            raise ScheduleError(
                f"expected ',' or ']' to close '[' at column {opening.pos + 1}, found {_describe(sep)}",
                setting=setting,
                column=sep.pos + 1,
            )
        while tokens[i].text == "*" and tokens[i].kind == "op":  # trailing counts: [40]*400
            c, i = count(i + 1)
            repeat *= c
            if repeat > length:
                break
        if len(out) + len(items) * repeat > length:
            raise ScheduleError(
                f"the schedule has more than {length} entries (expected exactly {length}, one per step)",
                setting=setting,
                column=term_pos + 1,
            )
        out.extend(items * repeat)
        tok = tokens[i]
        if tok.kind == "end":
            break
        if tok.text != "+":
            raise ScheduleError(
                f"expected '+', '*' or the end of the schedule, found {_describe(tok)}", setting=setting, column=tok.pos + 1
            )
        i += 1
    if len(out) != length:
        raise ScheduleError(
            f"the schedule has {len(out)} entries; expected exactly {length} (one per step)", setting=setting
        )
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------- plotting
def plot_schedule(
    sched: Schedule | StringSchedule | str,
    n_frames: int,
    path: str | None = None,
    ax: Axes | None = None,
    *,
    seed: int = 0,
) -> Figure:
    """Plot a schedule over ``n_frames`` frames (keys marked); saves a PNG/SVG to ``path`` when given.

    matplotlib is imported here, lazily; a new figure is a plain ``Figure`` on the Agg canvas (no pyplot state,
    works headless). String schedules are drawn as steps between their distinct values.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(sched, str):
        sched = Schedule.parse(sched)
    if ax is None:
        fig = Figure(figsize=(6, 2.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    frames = np.arange(_check_frames(n_frames, sched.setting))
    if isinstance(sched, StringSchedule):
        labels = sched.values(n_frames)
        options = sched.options
        ax.step(frames, [options.index(v) for v in labels], where="post")
        ax.set_yticks(range(len(options)), options)
    else:
        values = sched.values(n_frames, seed=seed)
        ax.plot(frames, values, lw=1.5)
        keys = sorted({k.resolve(n_frames) for k in sched.keys} & set(range(n_frames)))
        ax.plot(keys, values[keys], "o", ms=4)
    ax.set_xlabel("frame")
    ax.set_title(sched.setting or sched.text[:60], fontsize=9)
    ax.grid(alpha=0.3)
    if path is not None:
        if not isinstance(fig.canvas, FigureCanvasAgg):
            FigureCanvasAgg(fig)
        fig.savefig(path, dpi=100)
    return fig  # type: ignore[return-value]
