"""Exact arithmetic for the formula games (EZPoints, Points24): the agent's formula and the solver.

A formula is a list of action tokens: numbers "1".."10", operators "+ - * /" and parentheses.
Everything is `fractions.Fraction`, so 8/(3-8/3) == 24 holds exactly (floats give 23.999...).
We parse the tokens with a small recursive-descent parser; text written by a model is never `eval`-ed.
"""

from collections.abc import Sequence
from fractions import Fraction
from functools import cache, lru_cache
from itertools import permutations

OPS = "+-*/"
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3  # precedence of a number or a parenthesised group: binds tightest

# An expression built by the solver: its tokens and the precedence of its top-level operator.
Expr = tuple[tuple[str, ...], int]


class _Malformed(Exception):
    pass


def is_number(token: str) -> bool:
    return token.isascii() and token.isdigit()


def numbers(tokens: Sequence[str]) -> list[int]:
    """The numbers used in a formula, in order."""
    return [int(t) for t in tokens if is_number(t)]


def evaluate(tokens: Sequence[str], trace: list[str] | None = None) -> Fraction | None:
    """Exact value of an infix formula, or None when it is malformed (incomplete, "6 2", "**") or divides by 0.

    Grammar: expr := term (("+"|"-") term)* ; term := factor (("*"|"/") factor)* ;
    factor := NUMBER | "(" expr ")". No unary minus: the action set has no way to say it.
    With a `trace` list, each operation is appended in evaluation order, e.g. "3-8/3 = 1/3".
    """
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _Malformed
        pos += 1
        return tokens[pos - 1]

    def record(lhs: Fraction, op: str, rhs: Fraction, result: Fraction) -> Fraction:
        operation = f"{_operand(lhs)}{op}{_operand(rhs)}"
        if trace is not None and operation != _show(result):  # skip "8/3 = 8/3"
            trace.append(f"{operation} = {_show(result)}")
        return result

    def factor() -> Fraction:
        tok = take()
        if is_number(tok):
            return Fraction(int(tok))
        if tok == "(":
            value = expr()
            if take() != ")":
                raise _Malformed
            return value
        raise _Malformed

    def term() -> Fraction:
        value = factor()
        while peek() in ("*", "/"):
            op, rhs = take(), factor()
            if op == "/" and rhs == 0:
                raise _Malformed
            value = record(value, op, rhs, value * rhs if op == "*" else value / rhs)
        return value

    def expr() -> Fraction:
        value = term()
        while peek() in ("+", "-"):
            op, rhs = take(), term()
            value = record(value, op, rhs, value + rhs if op == "+" else value - rhs)
        return value

    try:
        value = expr()
    except (_Malformed, RecursionError):
        return None
    return value if pos == len(tokens) else None


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _operand(x: Fraction) -> str:
    # a fraction or a negative number as an operand is wrapped: 8/(1/3), 2*(-3)
    return _show(x) if x.denominator == 1 and x >= 0 else f"({_show(x)})"


def _apply(x: Fraction, op: str, y: Fraction) -> Fraction | None:
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    return None if y == 0 else x / y


def _combine(left: Expr, op: str, right: Expr) -> Expr:
    """Tokens of `left op right` with only the parentheses the precedence rules need."""
    (lt, lp), (rt, rp), p = left, right, _PREC[op]
    if lp < p:
        lt = ("(", *lt, ")")
    # - and / are not associative: a right operand of the same precedence keeps its parentheses.
    if rp < p or (rp == p and op in "-/"):
        rt = ("(", *rt, ")")
    return (*lt, op, *rt), p


def _splits(values: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every ordered split of the numbers into two non-empty groups (duplicates removed)."""
    n = len(values)
    splits = {}
    for mask in range(1, 2**n - 1):
        left = tuple(values[i] for i in range(n) if mask >> i & 1)
        right = tuple(values[i] for i in range(n) if not mask >> i & 1)
        splits[left, right] = None
    return list(splits)


def _combined_len(left: Expr, op: str, right: Expr) -> int:
    # len(_combine(...)[0]) without building the tuple: the solver's inner loop.
    (lt, lp), (rt, rp), p = left, right, _PREC[op]
    return len(lt) + len(rt) + 1 + 2 * (lp < p) + 2 * (rp < p or (rp == p and op in "-/"))


@cache
def _reachable(values: tuple[int, ...], ops: str) -> dict[Fraction, Expr]:
    """Every value a formula over exactly these numbers can take -> its shortest formula.

    Dynamic programming over sub-multisets: a formula's top operator splits the numbers in two
    groups, so combining the reachable values of every split covers every formula. Memoised on the
    (sorted) numbers, so deals that share sub-multisets share the work.
    """
    if len(values) == 1:
        return {Fraction(values[0]): ((str(values[0]),), _ATOM)}
    best: dict[Fraction, Expr] = {}
    for left, right in _splits(values):
        right_values = _reachable(right, ops).items()
        for x, ex in _reachable(left, ops).items():
            for y, ey in right_values:
                for op in ops:
                    z = _apply(x, op, y)
                    if z is None:
                        continue
                    if z not in best or _combined_len(ex, op, ey) < len(best[z][0]):
                        best[z] = _combine(ex, op, ey)
    return best


def _key(values: Sequence[int]) -> tuple[int, ...]:
    # Largest numbers first, so solutions read naturally ("10+2", not "2+10").
    return tuple(sorted((int(v) for v in values), reverse=True))


def solve(values: Sequence[int], target: int = 24, ops: str = OPS) -> list[str] | None:
    """A shortest formula (as action tokens) using each number exactly once that equals target, or None.

    Exhaustive over + - * / (restricted to `ops`) and parentheses, exact rational arithmetic.
    Deterministic: the same numbers (in any order) give the same solution.
    """
    solution = _solve(_key(values), Fraction(target), ops)
    return list(solution) if solution is not None else None


@lru_cache(maxsize=4096)
def _solve(values: tuple[int, ...], t: Fraction, ops: str) -> tuple[str, ...] | None:
    if len(values) < 2 or t == 0:  # (x*y == 0 holds for any y when x == 0: no unique partner below)
        expr = _reachable(values, ops).get(t)
        return expr[0] if expr is not None else None
    # Top level: rather than combine every pair of reachable values, take each value of the smaller
    # side and look up the one partner on the other side that makes `x op y == t`.
    best: tuple[str, ...] | None = None
    for left, right in _splits(values):
        lvals, rvals = _reachable(left, ops), _reachable(right, ops)
        for op in ops:
            if len(lvals) <= len(rvals):
                pairs = [(x, _right_operand(x, op, t)) for x in lvals]
            else:
                pairs = [(_left_operand(y, op, t), y) for y in rvals]
            for x, y in pairs:
                if x is None or y is None or x not in lvals or y not in rvals:
                    continue
                if best is None or _combined_len(lvals[x], op, rvals[y]) < len(best):
                    best = _combine(lvals[x], op, rvals[y])[0]
    return best


def _right_operand(x: Fraction, op: str, t: Fraction) -> Fraction | None:
    """The y with `x op y == t` (t != 0), None when there is none."""
    if op == "+":
        return t - x
    if op == "-":
        return x - t
    if op == "*":
        return t / x if x != 0 else None
    return x / t if x != 0 else None  # x / y == t; y = 0 would divide by zero


def _left_operand(y: Fraction, op: str, t: Fraction) -> Fraction | None:
    """The x with `x op y == t` (t != 0), None when there is none."""
    if op == "+":
        return t - y
    if op == "-":
        return t + y
    if y == 0:
        return None  # x * 0 == t != 0 never holds; x / 0 is undefined
    return t / y if op == "*" else t * y


@lru_cache(maxsize=1024)
def _all_solutions(values: tuple[int, ...], target: Fraction, ops: str) -> tuple[tuple[str, ...], ...]:
    found: dict[tuple[str, ...], None] = {}  # an ordered set

    def search(items: list[tuple[Fraction, Expr]]) -> None:
        if len(items) == 1:
            if items[0][0] == target:
                found[items[0][1][0]] = None
            return
        for i, j in permutations(range(len(items)), 2):
            rest = [item for k, item in enumerate(items) if k not in (i, j)]
            for op in ops:
                z = _apply(items[i][0], op, items[j][0])
                if z is not None:
                    search([*rest, (z, _combine(items[i][1], op, items[j][1]))])

    search([(Fraction(v), ((str(v),), _ATOM)) for v in values])
    return tuple(sorted(found, key=len))


def all_solutions(values: Sequence[int], target: int = 24, ops: str = OPS) -> list[list[str]]:
    """Every distinct solution (minimal parentheses), shortest first. Slow (tens of ms for 4 numbers):
    the oracle only needs it when the formula so far is not a prefix of `solve`'s answer."""
    return [list(s) for s in _all_solutions(_key(values), Fraction(target), ops)]
