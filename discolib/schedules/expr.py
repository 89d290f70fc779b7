"""The safe expression language of keyframe and cut schedules: tokenizer, parser, compiled programs, limits.

Users paste the strings they wrote for Disco Diffusion and Deforum unchanged, e.g. ``"1.0025+0.002*sin(t/30)"``.
Nothing here calls ``eval``: text is split into tokens by our own tokenizer, parsed by a precedence-climbing parser
into a short postfix :class:`Program`, and that program is run by a tiny stack machine on numpy arrays (all frames
of one keyframe segment at once). :mod:`discolib.schedules.keyframes` and :mod:`discolib.schedules.cuts` build on it.

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
seed, ``pi``, ``e``; which of ``t``/``max_f``/``s`` a context allows is the parser's ``allowed`` set. Functions:
``sin cos tan asin acos atan sqrt exp log`` (natural log) ``abs floor ceil round`` (half to even, like Python) with
one argument; ``atan2(y, x)``; ``min(a, b, ...)`` and ``max(a, b, ...)`` with two or more; ``clamp(x, lo, hi)``;
``where(cond, a, b)`` (``a`` where ``cond != 0``, else ``b``; both branches are computed, only the chosen one must
be finite). numexpr's names, as Deforum strings use them, evaluate as numexpr does: ``arcsin arccos arctan sinh
cosh tanh arcsinh arccosh arctanh log10 log2 log1p expm1 trunc sign`` with one argument, ``arctan2 fmod hypot
copysign minimum maximum`` with two (numexpr's one-argument ``min``/``max`` are reductions, meaningless on one
frame's value, so they are not taken). ``%`` follows Python (the result has the divisor's sign), as numexpr's does. Anything else -- other names, ``.``, ``[``
(outside cut schedules), quotes, ``;``, ``=`` -- is a parse error. All arithmetic is float64. Any non-finite result
(``sqrt(-1)``, ``log(0)``, ``1/0``, ``9**9**9**9``) is a :class:`ScheduleError` naming the column of the operation
that failed (and the frame, when ``t`` is an array); numpy warnings are suppressed.

Soundtrack functions (music videos)
----------------------------------
Where ``t`` is allowed, a value may read the run's soundtrack at a frame (see :mod:`discolib.audio`; values in
[0, 1]): ``rms(x) onset(x) bass(x) mid(x) treble(x)`` (loudness, onset strength, band energies), ``band(x, lo_hz,
hi_hz)`` (energy between two constant frequencies), ``beat(x)`` / ``beat(x, decay_s)`` and ``bar(x)`` / ``bar(x,
decay_s)`` (a pulse of 1 on each beat / bar frame, falling to 0 over ``decay_s`` seconds). ``x`` is a frame index,
usually ``t`` (``bass(t-2)`` reads two frames earlier); the bare names ``rms onset bass mid treble beat bar`` mean
``name(t)``. Frame keys may use ``beat_frame(n)`` and ``bar_frame(n)``: the frame of the n-th beat / bar, counted
from 1. The evaluation gets the features as ``env[AUDIO_ENV]`` (an :class:`AudioSource`); a program that reads the
soundtrack without one is a :class:`ScheduleError` naming the function's column.

Limits (so hostile text fails cleanly in milliseconds)
------------------------------------------------------
``MAX_TEXT_LENGTH`` characters per string (checked before anything else), ``MAX_TOKENS`` tokens, ``MAX_DEPTH``
levels of nesting (parentheses, calls, unary signs and ``**`` chains; the parser's recursion is bounded by it, so
``RecursionError`` cannot happen).

Errors
------
Every problem raises :class:`ScheduleError` (a ``ValueError``) with ``setting``, 1-based ``column`` in the whole
string (newlines count as one character) and ``reason``; ``str(err)`` reads
``"translation_z: column 14: expected ')' to close '(' at column 6, found ','"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, NamedTuple, Protocol

import numpy as np

from discolib.errors import InputError

__all__ = [
    "AUDIO_ENV",
    "AUDIO_FUNCTIONS",
    "AudioSource",
    "KEY_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_TEXT_LENGTH",
    "MAX_TOKENS",
    "UNARY_BP",
    "VARIABLES",
    "Parser",
    "Program",
    "ScheduleError",
    "Token",
    "check_length",
    "describe_token",
    "fold_constants",
    "tokenize",
]

MAX_TEXT_LENGTH = 65536
MAX_TOKENS = 32768
MAX_DEPTH = 64


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
class Token(NamedTuple):
    """One token; the last token of a slice has kind ``end`` (its ``text`` names what closed the slice, if any)."""

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


def check_length(text: object, setting: str | None, what: str = "schedule") -> str:
    """``text`` itself when it is a string of at most ``MAX_TEXT_LENGTH`` characters; checked before tokenizing."""
    if not isinstance(text, str):
        raise ScheduleError(f"expected a {what} string, found {type(text).__name__}", setting=setting)
    if len(text) > MAX_TEXT_LENGTH:
        raise ScheduleError(
            f"{what} is too long ({len(text)} characters; the limit is {MAX_TEXT_LENGTH})", setting=setting
        )
    return text


def tokenize(text: str, setting: str | None, start: int = 0, end: int | None = None) -> list[Token]:
    """Tokens of ``text[start:end]`` (positions in the whole string), ending with an ``end`` token."""
    end = len(text) if end is None else end
    tokens: list[Token] = []
    append = tokens.append
    for m in _TOKEN_RE.finditer(text, start, end):
        kind = m.lastgroup
        if kind == "ws":
            continue
        pos = m.start()
        if len(tokens) >= MAX_TOKENS:
            raise ScheduleError(f"too many tokens (the limit is {MAX_TOKENS})", setting=setting, column=pos + 1)
        if kind == "op" or kind == "name":
            append(Token(kind, m.group(), pos))
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
            append(Token("num", m.group(), pos, value))
    append(Token("end", "", end))
    return tokens


def describe_token(tok: Token) -> str:
    """How an error message names ``tok``: ``'x'``, or "the end of the text"."""
    if tok.kind == "end":
        return f"'{tok.text}'" if tok.text else "the end of the text"
    return f"'{tok.text}'"


# ---------------------------------------------------------------------------------------- parser + programs
#: The names a schedule value may use: frame index, last frame index, seed (a context allows a subset).
VARIABLES = ("t", "max_f", "s")
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
#: Binding power of unary signs; parsing with it as ``min_bp`` reads one factor (a cut schedule's repeat count).
UNARY_BP = 4
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
    # numexpr's names, as Deforum's keyframe strings use them (numexpr evaluates them with the same numpy-style
    # functions: its arcsin is np.arcsin, its round half to even, its '%' takes the divisor's sign)
    "arcsin": (1, 1, np.arcsin),
    "arccos": (1, 1, np.arccos),
    "arctan": (1, 1, np.arctan),
    "arctan2": (2, 2, np.arctan2),
    "sinh": (1, 1, np.sinh),
    "cosh": (1, 1, np.cosh),
    "tanh": (1, 1, np.tanh),
    "arcsinh": (1, 1, np.arcsinh),
    "arccosh": (1, 1, np.arccosh),
    "arctanh": (1, 1, np.arctanh),
    "log10": (1, 1, np.log10),
    "log2": (1, 1, np.log2),
    "log1p": (1, 1, np.log1p),
    "expm1": (1, 1, np.expm1),
    "trunc": (1, 1, np.trunc),
    "sign": (1, 1, np.sign),
    "fmod": (2, 2, np.fmod),
    "hypot": (2, 2, np.hypot),
    "copysign": (2, 2, np.copysign),
    "minimum": (2, 2, np.minimum),
    "maximum": (2, 2, np.maximum),
}


class AudioSource(Protocol):
    """What a schedule reads from a soundtrack (implemented by :class:`discolib.audio.AudioFeatures`).

    Errors in the arguments (``band(t, 500, 100)``, ``beat_frame(0)``) are ``ValueError`` with a short reason.
    """

    key: str  # identity of the features (file hash, fps, beat settings): part of every cache key

    def sample(self, name: str, t: Any, *args: Any) -> Any:
        """Function ``name`` of :data:`AUDIO_FUNCTIONS` at frame(s) ``t`` (float64 arrays or 0-d)."""
        ...

    def beat_frame(self, n: int) -> int:
        """The frame of the ``n``-th beat (from 1)."""
        ...

    def bar_frame(self, n: int) -> int:
        """The frame of the ``n``-th bar (from 1)."""
        ...


#: The environment key under which an evaluation gets its :class:`AudioSource`.
AUDIO_ENV = "__audio__"
#: Functions of keyframe values that read the soundtrack: name -> (min args, max args). The first is a frame index.
AUDIO_FUNCTIONS: dict[str, tuple[int, int]] = {
    "rms": (1, 1),
    "onset": (1, 1),
    "bass": (1, 1),
    "mid": (1, 1),
    "treble": (1, 1),
    "band": (3, 3),
    "beat": (1, 2),
    "bar": (1, 2),
}
#: Bare names that mean ``name(t)``.
_BARE_AUDIO = frozenset(("rms", "onset", "bass", "mid", "treble", "beat", "bar"))
#: Functions of frame keys that read the soundtrack's beats: name -> the AudioSource method.
KEY_FUNCTIONS: dict[str, str] = {"beat_frame": "beat_frame", "bar_frame": "bar_frame"}


class _AudioFault(Exception):
    """An AudioSource refused its arguments at instruction position ``pos`` (turned into a ScheduleError)."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


@dataclass(frozen=True)
class _Instr:
    op: str  # "num" | "var" | "neg" | "bin" | "call" | "audio" | "key"
    arg: Any
    pos: int  # 0-based position of the operator/name, for error columns
    nargs: int = 0


class Program:
    """A parsed expression as postfix code; evaluated by an explicit stack (no recursion, any length)."""

    __slots__ = ("code", "names", "audio_names", "start", "end", "source")

    def __init__(self, code: list[_Instr], source: str, start: int, end: int) -> None:
        self.code = code
        self.names = frozenset(i.arg for i in code if i.op == "var")
        #: the soundtrack functions it calls (values or keys): it needs an AudioSource to run
        self.audio_names = frozenset(i.arg for i in code if i.op in ("audio", "key"))
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

    def check_audio(self, env: dict[str, Any], setting: str | None) -> None:
        """A ScheduleError when the program reads the soundtrack and ``env`` has no :class:`AudioSource`."""
        if self.audio_names and env.get(AUDIO_ENV) is None:
            first = next(i for i in self.code if i.op in ("audio", "key"))
            raise ScheduleError(
                f"{first.arg}() reads the soundtrack, but there is none: set output.soundtrack",
                setting=setting,
                column=first.pos + 1,
            )

    def evaluate(self, env: dict[str, Any], setting: str | None, frames: np.ndarray | None = None) -> Any:
        """Run and check that every value is finite; ``frames`` (when ``t`` is an array) names the bad frame."""
        self.check_audio(env, setting)
        try:
            value = self.run(env)
        except _AudioFault as fault:
            raise ScheduleError(fault.reason, setting=setting, column=fault.pos + 1) from None
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
    if ins.op == "call":
        return _FUNCTIONS[ins.arg][2](*args)
    return _audio_step(ins, args, env)


def _audio_step(ins: _Instr, args: list[Any], env: dict[str, Any]) -> Any:
    """A soundtrack function: the AudioSource's answer, its ValueError an _AudioFault at the call's column."""
    source = env[AUDIO_ENV]
    try:
        if ins.op == "audio":
            return np.asarray(source.sample(ins.arg, *args), dtype=np.float64)
        (n,) = args
        n = float(n)
        if not math.isfinite(n):
            raise ValueError(f"expected a finite number of beats or bars, found {n:g}")
        if not n.is_integer():
            raise ValueError(f"{ins.arg}() takes a whole number of beats or bars, found {n:g}")
        return np.float64(getattr(source, KEY_FUNCTIONS[ins.arg])(int(n)))
    except (ValueError, OverflowError) as exc:
        reason = str(exc)
        if not reason.startswith(f"{ins.arg}("):  # the source may name the function itself
            reason = f"{ins.arg}(): {reason}"
        raise _AudioFault(reason, ins.pos) from None


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
    if name in ("log", "log10", "log2"):
        return f"{name} of zero or a negative number ({args[0]:g})"
    if name == "log1p":
        return f"log1p of a number <= -1 ({args[0]:g})"
    if name in ("asin", "acos", "arcsin", "arccos"):
        return f"{name} of a number outside [-1, 1] ({args[0]:g})"
    if name == "arccosh":
        return f"arccosh of a number below 1 ({args[0]:g})"
    if name == "arctanh":
        return f"arctanh of a number outside (-1, 1) ({args[0]:g})"
    if name == "fmod" and args[1] == 0:
        return "fmod by zero"
    if name in ("exp", "tan", "expm1", "sinh", "cosh", "hypot"):
        return f"{name}() result too large (overflow)"
    return f"{name}() gave a non-finite result"


class Parser:
    """Precedence-climbing parser over a token slice; emits postfix code. Recursion is bounded by MAX_DEPTH."""

    def __init__(
        self,
        tokens: Sequence[Token],
        text: str,
        setting: str | None,
        allowed: frozenset[str],
        context: str,
        index: int = 0,
        audio: str | None = None,
    ) -> None:
        self.tokens = tokens
        self.text = text
        self.setting = setting
        self.allowed = allowed
        self.context = context
        self.i = index
        # which soundtrack functions this context takes: "values" (rms(t) ...), "keys" (beat_frame(n)) or none
        self.audio = audio
        self.depth = 0
        self.code: list[_Instr] = []

    def error(self, reason: str, pos: int) -> ScheduleError:
        return ScheduleError(reason, setting=self.setting, column=pos + 1)

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", tok.pos)

    def parse_all(self) -> Program:
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
            raise self.error(f"expected an operator or the end of the value, found {describe_token(tok)}{hint}", tok.pos)
        return Program(self.code, self.text, start, tok.pos)

    def expr(self, min_bp: int) -> None:
        tok = self.take()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.enter(tok)
            self.expr(UNARY_BP)
            if tok.text == "-":
                self.code.append(_Instr("neg", None, tok.pos))
            self.depth -= 1
        elif tok.kind == "op" and tok.text == "(":
            self.enter(tok)
            self.expr(0)
            close = self.take()
            if close.text != ")" or close.kind == "end":
                raise self.error(
                    f"expected ')' to close '(' at column {tok.pos + 1}, found {describe_token(close)}", close.pos
                )
            self.depth -= 1
        elif tok.kind == "num":
            self.code.append(_Instr("num", tok.value, tok.pos))
        elif tok.kind == "name":
            self.name(tok)
        else:
            raise self.error(f"expected a value, found {describe_token(tok)}", tok.pos)

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
                self.expr(UNARY_BP)
                self.depth -= 1
            else:
                self.expr(bp + 1)
            self.code.append(_Instr("bin", op.text, op.pos))
            last_was_cmp = op.text in _COMPARISONS

    def call_args(self, tok: Token, lo: int, hi: int | None) -> int:
        """Parse ``( expr, ... )`` after function ``tok``; returns the argument count (checked against lo..hi)."""
        name = tok.text
        opening = self.take()
        if opening.text != "(" or opening.kind == "end":
            raise self.error(f"expected '(' after function '{name}', found {describe_token(opening)}", opening.pos)
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
                f"expected ',' or ')' in {name}(...) opened at column {opening.pos + 1}, found {describe_token(sep)}",
                sep.pos,
            )
        self.depth -= 1
        if nargs < lo or (hi is not None and nargs > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} or {hi}"
            plural = "" if lo == 1 and lo == hi else "s"
            raise self.error(f"{name}() takes {want} argument{plural}, found {nargs}", tok.pos)
        return nargs

    def audio_name(self, tok: Token) -> bool:
        """Emit a soundtrack function or bare feature name at ``tok``; False when ``tok`` names none."""
        name = tok.text
        if name not in AUDIO_FUNCTIONS and name not in KEY_FUNCTIONS:
            return False
        wanted = "values" if name in AUDIO_FUNCTIONS else "keys"
        if self.audio != wanted:
            where = "keyframe values (with t)" if wanted == "values" else "frame keys"
            raise self.error(f"'{name}' cannot be used in {self.context} (only in {where})", tok.pos)
        if wanted == "values" and name in _BARE_AUDIO and self.peek().text != "(":
            self.code.append(_Instr("var", "t", tok.pos))  # a bare feature name reads the current frame
            self.code.append(_Instr("audio", name, tok.pos, 1))
            return True
        lo, hi = AUDIO_FUNCTIONS[name] if wanted == "values" else (1, 1)
        nargs = self.call_args(tok, lo, hi)
        self.code.append(_Instr("audio" if wanted == "values" else "key", name, tok.pos, nargs))
        return True

    def name(self, tok: Token) -> None:
        name = tok.text
        if self.audio_name(tok):
            return
        if name in _FUNCTIONS:
            lo, hi, _ = _FUNCTIONS[name]
            nargs = self.call_args(tok, lo, hi)
            self.code.append(_Instr("call", name, tok.pos, nargs))
        elif name in _CONSTANTS:
            self.code.append(_Instr("num", _CONSTANTS[name], tok.pos))
        elif name in self.allowed:
            self.code.append(_Instr("var", name, tok.pos))
        elif name in VARIABLES:
            only = ", ".join(sorted(self.allowed)) or "numbers and pi, e"
            raise self.error(f"'{name}' cannot be used in {self.context} (only {only})", tok.pos)
        else:
            raise self.error(
                f"unknown name '{name}' (expected a number, one of {', '.join(sorted(self.allowed | set(_CONSTANTS)))}"
                " or a function such as sin(...))",
                tok.pos,
            )


def fold_constants(program: Program, setting: str | None) -> Program:
    """Replace an expression without variables by its value (and fail now if that value is not finite)."""
    if program.names or program.audio_names or program.constant() is not None:
        return program
    value = float(program.evaluate({}, setting))
    first = program.code[0].pos
    return Program([_Instr("num", value, first)], program.source, program.start, program.end)

