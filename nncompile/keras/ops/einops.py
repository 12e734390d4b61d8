"""`keras.ops.rearrange`: einops-style axis rearrangement (names and parenthesized groups, as
Keras 3's), one reshape into the elementary axes, one transpose, one reshape into the output's.

    >>> from nncompile.keras import ops
    >>> ops.rearrange(np.zeros((2, 6, 5)), "b (h w) c -> b h w c", h=2).shape
    (2, 2, 3, 5)
"""
from __future__ import annotations

import math
import re

from nncompile.ir.types import is_symbol
from nncompile.keras.ops.core import keras_op, tensor as as_tensor

_AXES = re.compile(r"\w+|\([\w\s]*\)")


def _groups(side: str, pattern: str) -> list[list[str]]:
    """The axes of one side of `pattern`: each a group of elementary axis names."""
    found = _AXES.findall(side)
    if "".join(found).replace(" ", "") != side.replace(" ", "") or "..." in side:
        raise ValueError(f"ops.rearrange: {pattern!r}: only axis names and parenthesized groups of "
                         f"them are supported")
    return [g.strip("()").split() for g in found]


def _sizes(groups: list[list[str]], shape, lengths: dict, pattern: str) -> dict:
    """Each elementary axis's size: given, the input's for an axis of its own, or inferred (one
    unknown axis per group)."""
    if len(groups) != len(shape):
        raise ValueError(f"ops.rearrange: {pattern!r} names {len(groups)} input axes; the input has "
                         f"{len(shape)}")
    sizes = dict(lengths)
    for group, dim in zip(groups, shape):
        if len(group) == 1:
            sizes.setdefault(group[0], dim)
            continue
        unknown = [a for a in group if a not in sizes]
        if is_symbol(dim) or len(unknown) > 1:
            raise ValueError(f"ops.rearrange: {pattern!r}: cannot infer the sizes of {unknown or group} "
                             f"from an axis of size {dim!r}; give them as keyword arguments")
        known = math.prod(sizes[a] for a in group if a not in unknown)
        if unknown:
            sizes[unknown[0]] = dim // known
        if math.prod(sizes[a] for a in group) != dim:
            raise ValueError(f"ops.rearrange: {pattern!r}: the group ({' '.join(group)}) has size "
                             f"{math.prod(sizes[a] for a in group)}, the axis {dim}")
    return sizes


@keras_op
def rearrange(b, tensor, pattern, **axes_lengths):
    """`tensor` with its axes split, reordered and merged as `pattern` says ("b h w c -> b (h w) c",
    "b (h w) c -> b h w c" with h=...)."""
    v = as_tensor(b, tensor)
    left, arrow, right = pattern.partition("->")
    if not arrow:
        raise ValueError(f"ops.rearrange: {pattern!r} has no '->'")
    inputs, outputs = _groups(left.strip(), pattern), _groups(right.strip(), pattern)
    sizes = _sizes(inputs, v.type.shape, {k: int(n) for k, n in axes_lengths.items()}, pattern)
    elementary = [a for g in inputs for a in g]
    wanted = [a for g in outputs for a in g]
    if sorted(elementary) != sorted(wanted) or len(set(elementary)) != len(elementary):
        raise ValueError(f"ops.rearrange: {pattern!r}: both sides must name the same axes, each once")
    split = b.reshape(v, shape=[sizes[a] for a in elementary])
    moved = b.transpose(split, perm=[elementary.index(a) for a in wanted])
    merged = [sizes[g[0]] if len(g) == 1 else math.prod(sizes[a] for a in g) for g in outputs]
    return b.reshape(moved, shape=merged)
