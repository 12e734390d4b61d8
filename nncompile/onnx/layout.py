"""Layout arithmetic shared by the converters: aligning operands of elementwise ops, remapping
axes of ops applied to values held in another layout (see context.py)."""
from __future__ import annotations

import numpy as np

from nncompile.ir import Value
from nncompile.onnx.context import Context, Entry, is_symbolic


def aligned(ctx: Context, indices: list[int]) -> tuple[list[Value], tuple[int, ...]]:
    """The inputs in one layout for a broadcasting op: that of the first full-rank input held
    permuted (so NHWC activations stay NHWC), lower-rank operands reshaped to match it."""
    rank = max(ctx.rank(i) for i in indices)
    perm = tuple(range(rank))
    for i in indices:
        e = ctx.entry(i)
        if e.const is None and len(e.perm) == rank and e.perm != perm:
            perm = e.perm
            break
    values = []
    for i in indices:
        if ctx.rank(i) == rank:
            values.append(ctx.in_layout(i, perm))
        elif perm == tuple(range(rank)):
            values.append(ctx.plain(i))   # numpy broadcasting aligns the trailing axes
        else:
            shape = (1,) * (rank - ctx.rank(i)) + tuple(ctx.shape(i))
            const = ctx.maybe_const(i)
            if const is not None and not is_symbolic(const):   # permuted once, when imported
                values.append(ctx.array_value(np.transpose(const.reshape(shape), perm), ctx.node.input[i]))
            else:
                values.append(ctx.transpose(ctx.b.reshape(ctx.plain(i), shape=shape), list(perm)))
    return values, perm


def elementwise(ctx: Context, op: str, indices: list[int] | None = None, **attrs) -> list[Entry]:
    values, perm = aligned(ctx, indices if indices is not None else list(range(ctx.count)))
    return [Entry(ctx.b.op(op, *values, **attrs), perm)]


def ir_axes(perm: tuple[int, ...], axes) -> list[int]:
    """ONNX axes (non-negative) -> the IR axes of a value held in layout `perm`."""
    return [perm.index(a) for a in axes]


def drop_axes(perm: tuple[int, ...], axes) -> tuple[int, ...]:
    """The layout left when the ONNX `axes` are removed from a value held in layout `perm`."""
    kept = [p for p in perm if p not in axes]
    order = sorted(kept)
    return tuple(order.index(p) for p in kept)


def normalize(axis: int, rank: int, ctx: Context) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0
