"""Symbolic dimensions: a symbol, or an integer expression over symbols, in one canonical text.

A symbolic dimension is a str. It is a symbol ('?', 'T') or an expression of symbols built with
`+`, `-`, `*` by an int and `//` by a positive int: a window strided over a sequence of length
`T` has `(T - 7) // 3 + 1` positions, as XLA's dynamic shapes and ONNX's `dim_param` carry them.
Every expression is kept in a canonical text, so equal expressions are equal strings: types stay
hashable and comparable, and the IR text round-trips. The text is a sum of terms ordered by their
text, then the constant; a `//` term holds only what the division cannot take out exactly:

    (T - 7) // 3 + 1   ->   (T+2)//3-2          ceil(T / 2)   ->   (T+1)//2

A symbolic size is evaluated wherever sizes are bound (`dim_value`), from the symbols' sizes.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Mapping

from nncompile.ir.errors import ShapeError

SYMBOL = re.compile(r"\?|[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\s*(?:(\d+)|(\?|[A-Za-z_][A-Za-z0-9_]*)|(//|[-+*()]))")


@dataclass(frozen=True)
class _Div:
    """floor(num / den): num a _Sum that den does not divide, den >= 2."""
    num: "_Sum"
    den: int

    def __str__(self) -> str:
        inner = str(self.num)
        return f"{inner}//{self.den}" if SYMBOL.fullmatch(inner) else f"({inner})//{self.den}"


@dataclass(frozen=True)
class _Sum:
    """const + sum(coef * atom); atoms (symbol names or _Divs) sorted by their text, coefs != 0.
    A leading negative division is parenthesized: a unary minus binds tighter than '//'."""
    const: int
    terms: tuple[tuple[str | _Div, int], ...] = ()

    def __str__(self) -> str:
        parts = []
        for atom, coef in self.terms:
            sign = "-" if coef < 0 else "+"
            shown = f"({atom})" if coef < 0 and not parts and isinstance(atom, _Div) else str(atom)
            scaled = shown if abs(coef) == 1 else f"{shown}*{abs(coef)}"   # (a)//b*c: left to right
            parts.append(f"{sign}{scaled}")
        if self.const or not parts:
            parts.append(f"{self.const:+d}")
        text = "".join(parts)
        return text[1:] if text.startswith("+") else text


def _sum(const: int, terms: Mapping) -> _Sum:
    kept = sorted(((a, c) for a, c in terms.items() if c), key=lambda t: str(t[0]))
    return _Sum(const, tuple(kept))


def _add(x: _Sum, y: _Sum, scale: int = 1) -> _Sum:
    """x + scale * y."""
    terms = dict(x.terms)
    for atom, coef in y.terms:
        terms[atom] = terms.get(atom, 0) + scale * coef
    return _sum(x.const + scale * y.const, terms)


def _scale(x: _Sum, k: int) -> _Sum:
    return _sum(x.const * k, {a: c * k for a, c in x.terms})


def _common_factor(x: _Sum, *more: int) -> int:
    return math.gcd(x.const, *(c for _, c in x.terms), *more)


def _exact_div(x: _Sum, k: int) -> _Sum:
    """x / k for a k that divides its constant and every coefficient."""
    return _sum(x.const // k, {a: c // k for a, c in x.terms})


def _floordiv(x: _Sum, k: int) -> _Sum:
    """x // k, taking out of the division every multiple of k it holds (exactly, since
    (k*m + r) // k == m + r // k for any integer m)."""
    if k == 1:
        return x
    whole, rest = divmod(x.const, k)
    out = {a: c // k for a, c in x.terms}
    left = _sum(rest, {a: c % k for a, c in x.terms})
    if not left.terms:                      # 0 <= rest < k
        return _sum(whole, out)
    common = _common_factor(left, k)
    if common > 1:                          # (g*a) // (g*b) == a // b
        return _add(_sum(whole, out), _floordiv(_exact_div(left, common), k // common))
    atom, coef = left.terms[0]
    if len(left.terms) == 1 and isinstance(atom, _Div) and coef == 1:
        # (n // d + r) // k == (n + r*d) // (d*k): nested divisions become one
        inner = _floordiv(_add(atom.num, _Sum(rest * atom.den)), atom.den * k)
        return _add(_sum(whole, out), inner)
    out[_Div(left, k)] = out.get(_Div(left, k), 0) + 1
    return _sum(whole, out)


class _Reader:
    """Recursive descent over  expr := term {('+'|'-') term};  term := unary {('*' unary) |
    ('//' unary)};  unary := '-' unary | int | symbol | '(' expr ')'."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = []
        pos, text = 0, text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise self.fail(f"unexpected character {text[pos:].lstrip()[:1]!r}")
            self.tokens.append(m.group(m.lastindex))
            pos = m.end()
        self.tokens.append(None)
        self.pos = 0

    def fail(self, why: str) -> ShapeError:
        return ShapeError(f"symbolic dimension {self.text!r}: {why}")

    def take(self, *options) -> str | None:
        tok = self.tokens[self.pos]
        if tok in options:
            self.pos += 1
            return tok
        return None

    def read(self) -> _Sum:
        out = self.expr()
        if self.tokens[self.pos] is not None:
            raise self.fail(f"unexpected {self.tokens[self.pos]!r}")
        return out

    def expr(self) -> _Sum:
        out = self.term()
        while op := self.take("+", "-"):
            out = _add(out, self.term(), 1 if op == "+" else -1)
        return out

    def term(self) -> _Sum:
        out = self.unary()
        while op := self.take("*", "//"):
            right = self.unary()
            if op == "*":
                if out.terms and right.terms:
                    raise self.fail("a product of symbols is not a dimension this IR expresses")
                out = _scale(right, out.const) if not out.terms else _scale(out, right.const)
            elif right.terms or right.const < 1:
                raise self.fail("'//' takes a positive int on its right")
            else:
                out = _floordiv(out, right.const)
        return out

    def unary(self) -> _Sum:
        if self.take("-"):
            return _scale(self.unary(), -1)
        if self.take("("):
            out = self.expr()
            if not self.take(")"):
                raise self.fail("expected ')'")
            return out
        tok = self.tokens[self.pos]
        if tok is None or tok in ("+", "-", "*", "//", "(", ")"):
            raise self.fail(f"expected an int, a symbol or '(' but found {tok or 'the end'!r}")
        self.pos += 1
        return _Sum(int(tok)) if tok.isdigit() else _Sum(0, ((tok, 1),))


@functools.lru_cache(maxsize=4096)
def _read(text: str) -> _Sum:
    return _Reader(text).read()


@functools.lru_cache(maxsize=4096)
def canonical(text: str) -> int | str:
    """The dimension `text` stands for: an int when its symbols cancel, else its canonical text.
    Raises ShapeError when it is not an expression of the kind this module describes."""
    if SYMBOL.fullmatch(text):
        return text
    form = _read(text)
    return form.const if not form.terms else str(form)


def is_expression(dim) -> bool:
    """Whether `dim` is a symbolic dimension made of more than one symbol alone."""
    return isinstance(dim, str) and not SYMBOL.fullmatch(dim)


def factored(dim: str) -> tuple[int, str]:
    """(k, rest) with dim == rest * k and k the largest such int (T*4-8 -> 4, T-2), so that a
    reshape compares the sizes it keeps and makes by the symbolic parts they hold."""
    if SYMBOL.fullmatch(dim):
        return 1, dim
    form = _read(dim)
    k = _common_factor(form)
    return (k, str(_exact_div(form, k))) if k > 1 else (1, dim)


def symbols_of(dim) -> set[str]:
    """The symbols a dimension depends on (none for an int)."""
    if not isinstance(dim, str):
        return set()
    if SYMBOL.fullmatch(dim):
        return {dim}
    return set(_symbols(_read(dim)))


def _symbols(form: _Sum):
    for atom, _ in form.terms:
        yield from _symbols(atom.num) if isinstance(atom, _Div) else (atom,)


def dim_value(dim, env: Mapping[str, int]) -> int:
    """The size of `dim` with its symbols' sizes taken from `env` (an int stays as it is)."""
    if not isinstance(dim, str):
        return dim
    if not SYMBOL.fullmatch(dim):
        return _evaluate(_read(dim), env)
    if dim not in env:
        raise ShapeError(f"symbolic dimension {dim!r} is not bound to a size")
    return env[dim]


def _evaluate(form: _Sum, env: Mapping[str, int]) -> int:
    total = form.const
    for atom, coef in form.terms:
        size = _evaluate(atom.num, env) // atom.den if isinstance(atom, _Div) else dim_value(atom, env)
        total += coef * size
    return total


def substitute(dim, sizes: Mapping[str, int]) -> int | str:
    """`dim` with the symbols of `sizes` replaced by those sizes (the others kept)."""
    if not isinstance(dim, str):
        return dim
    if SYMBOL.fullmatch(dim):
        return sizes.get(dim, dim)
    form = _substituted(_read(dim), sizes)
    return form.const if not form.terms else str(form)


def _substituted(form: _Sum, sizes: Mapping[str, int]) -> _Sum:
    out = _Sum(form.const)
    for atom, coef in form.terms:
        if isinstance(atom, _Div):
            part = _floordiv(_substituted(atom.num, sizes), atom.den)
        else:
            part = _Sum(sizes[atom]) if atom in sizes else _Sum(0, ((atom, 1),))
        out = _add(out, part, coef)
    return out


def window_positions(size, extent: int, stride: int, pads) -> int | str:
    """(size + pads - extent) // stride + 1: the positions of a window of `extent` sliding by
    `stride` over `size` padded by `pads` in all, one of them symbolic."""
    return canonical(f"({size}+({pads})-{extent})//{stride}+1")
