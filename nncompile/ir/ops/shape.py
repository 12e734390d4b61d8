"""Data movement: reshape, transpose, broadcast, concat, slice, gather, pad.

Each output element reads one input element (or a pad value), so every op here is INJECTIVE except
broadcast, which reads an input element many times (BROADCAST).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from nncompile.ir.dims import canonical, factored
from nncompile.ir.dtypes import DType
from nncompile.ir.errors import ShapeError
from nncompile.ir.ops.reduction import normalize_axes
from nncompile.ir.optable import OPS, Attr, AttrKind, Fusion, defop
from nncompile.ir.types import Dim, Shape, TensorType, is_symbol, normalize_axis

# An end at least this large selects "to the end" (ONNX exporters write INT32_MAX or INT64_MAX).
SLICE_END = 2**31 - 1


def _show(shape: Sequence[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# --- reshape ----------------------------------------------------------------------------------

def _split_dims(dims) -> tuple[int, Counter]:
    """The product of the static dims and of the int factors of the symbolic ones (T*4 counts 4),
    and the multiset of what is left of the symbolic ones."""
    product, symbols = 1, Counter()
    for d in dims:
        if is_symbol(d):
            factor, d = factored(d)
            product *= factor
            symbols[d] += 1
        else:
            product *= d
    return product, symbols


def _reshape_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, target = ts[0], attrs["shape"]
    what = f"cannot reshape {x} to {_show(target)}"
    if sum(d == -1 for d in target) > 1:
        raise ShapeError(f"{what}: at most one dimension may be -1")
    in_size, in_syms = _split_dims(x.shape)
    out_size, out_syms = _split_dims(d for d in target if d != -1)
    common = in_syms & out_syms
    in_syms, out_syms = in_syms - common, out_syms - common
    if out_syms:
        raise ShapeError(f"{what}: symbolic dimension(s) {sorted(out_syms)} do not occur in the input")
    if -1 not in target:
        if in_syms:
            raise ShapeError(f"{what}: symbolic dimension(s) {sorted(in_syms)} of the input are not kept")
        if in_size != out_size:
            raise ShapeError(f"{what}: {in_size} elements cannot become {out_size}")
        return x.with_shape(target)
    if in_syms:
        factor = in_size // out_size if out_size and in_size % out_size == 0 else f"{in_size}/{out_size}"
        if sum(in_syms.values()) == 1 and isinstance(factor, int):   # Flatten of (T, 4): T*4
            hole = canonical(f"({next(iter(in_syms))})*{factor}")
            return x.with_shape(tuple(hole if d == -1 else d for d in target))
        hole = " * ".join(list(in_syms.elements()) + ([str(factor)] if factor != 1 else []))
        raise ShapeError(f"{what}: the -1 would stand for {hole}, which is not expressible "
                         f"(keep the symbolic dimension in the target shape)")
    if out_size == 0 or in_size % out_size:
        raise ShapeError(f"{what}: {in_size} elements do not divide into blocks of {out_size}")
    return x.with_shape(tuple(in_size // out_size if d == -1 else d for d in target))


defop("reshape", inputs=("x",), attrs={"shape": Attr(AttrKind.SHAPE)}, fusion=Fusion.INJECTIVE,
      infer=_reshape_rule, reference=lambda xs, attrs: np.reshape(xs[0], attrs["shape"]),
      doc="same elements in a new shape; one dim may be -1, symbols must match the input's")


# --- transpose --------------------------------------------------------------------------------

def _transpose_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, perm = ts[0], attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of the {x.rank} axes of {x}")
    return x.with_shape(tuple(x.shape[p] for p in perm))


defop("transpose", inputs=("x",), attrs={"perm": Attr(AttrKind.INTS)}, fusion=Fusion.INJECTIVE,
      infer=_transpose_rule, reference=lambda xs, attrs: np.transpose(xs[0], attrs["perm"]),
      doc="permute axes: output axis i is input axis perm[i]")


# --- broadcast --------------------------------------------------------------------------------

def _broadcast_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, target = ts[0], attrs["shape"]
    what = f"cannot broadcast {x} to {_show(target)}"
    if -1 in target:
        raise ShapeError(f"{what}: the target shape may not contain -1")
    if x.rank > len(target):
        raise ShapeError(f"{what}: the target has fewer dimensions than the input")
    for axis in range(1, x.rank + 1):
        have, want = x.shape[-axis], target[-axis]
        if have != 1 and have != want:
            raise ShapeError(f"{what}: dimension {have!r} (axis {-axis}) is neither 1 nor {want!r}")
    return x.with_shape(target)


defop("broadcast", inputs=("x",), attrs={"shape": Attr(AttrKind.SHAPE)}, fusion=Fusion.BROADCAST,
      infer=_broadcast_rule,
      reference=lambda xs, attrs: np.array(np.broadcast_to(xs[0], attrs["shape"])),
      doc="numpy-broadcast the input to the target `shape`")


# --- concat -----------------------------------------------------------------------------------

def _concat_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    first = ts[0]
    if first.rank == 0:
        raise ShapeError("inputs are scalars; expected rank >= 1")
    axis = normalize_axis(attrs["axis"], first.rank)
    for i, t in enumerate(ts[1:], start=1):
        if t.dtype != first.dtype:
            raise ShapeError(f"input {i} has dtype {t.dtype} but input 0 has {first.dtype}")
        others = [d for k, d in enumerate(t.shape) if k != axis]
        if t.rank != first.rank or others != [d for k, d in enumerate(first.shape) if k != axis]:
            raise ShapeError(f"input {i} {t} does not match input 0 {first} outside axis {axis}")
    if len(ts) == 1:
        return first
    sizes = [t.shape[axis] for t in ts]
    if any(is_symbol(d) for d in sizes):
        raise ShapeError(f"cannot concatenate along symbolic axis {axis} (sizes {sizes}); the sum "
                         f"is not expressible")
    return first.with_shape(first.shape[:axis] + (sum(sizes),) + first.shape[axis + 1:])


defop("concat", inputs=("xs",), variadic=True, attrs={"axis": Attr(AttrKind.INT)},
      fusion=Fusion.INJECTIVE, infer=_concat_rule,
      reference=lambda xs, attrs: np.concatenate(xs, axis=attrs["axis"]),
      doc="join inputs of one dtype along `axis`")


# --- slice ------------------------------------------------------------------------------------

def slice_plan(shape: Shape, attrs: dict) -> dict[int, slice]:
    """Axis -> the Python slice it takes; shared by the shape rule and the reference.

    Negative starts/ends count from the end and out-of-range ones clamp, as in numpy (and in the
    ONNX reference implementation of Slice)."""
    starts, ends, axes, steps = (attrs[k] for k in ("starts", "ends", "axes", "steps"))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must have "
                         f"the same length")
    plan = {}
    for axis, start, end, step in zip(normalize_axes(axes, len(shape)), starts, ends, steps):
        if step == 0:
            raise ShapeError(f"step of axis {axis} is 0")
        dim = shape[axis]
        if is_symbol(dim):
            if (start, step) == (-1, -1) and end <= -SLICE_END:
                plan[axis] = slice(None, None, -1)      # whole, reversed: a sequence read backwards
                continue
            if not (start >= 0 and step == 1 and (end >= SLICE_END or -SLICE_END < end < 0)):
                raise ShapeError(f"axis {axis} is symbolic ({dim!r}); it can only lose a static count "
                                 f"at each end (start >= 0, end < 0 or >= {SLICE_END}, step 1) or be taken "
                                 f"whole reversed (start -1, end <= -{SLICE_END}, step -1), got start "
                                 f"{start}, end {end}, step {step}")
            plan[axis] = slice(start or None, end if end < 0 else None)
            continue
        taken = range(*slice(start, end, step).indices(dim))
        # A stop of -1 (before index 0, stepping down) means "no stop" to numpy, not "the last".
        stop = taken.stop if taken.stop >= 0 else None
        plan[axis] = slice(taken.start, stop, step) if taken else slice(0, 0)
    return plan


def _slice_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x = ts[0]
    plan = slice_plan(x.shape, attrs)
    return x.with_shape(tuple(d if i not in plan else _taken(d, plan[i]) for i, d in enumerate(x.shape)))


def _taken(dim: Dim, part: slice) -> Dim:
    """How many elements of an axis of size `dim` the slice takes (a symbolic axis: all but a
    static count at each end, or all of it reversed)."""
    if not is_symbol(dim):
        return len(range(*part.indices(dim)))
    return dim if part.step == -1 else canonical(f"({dim})-{part.start or 0}+{part.stop or 0}")


def _slice_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x = xs[0]
    plan = slice_plan(x.shape, attrs)
    return x[tuple(plan.get(i, slice(None)) for i in range(x.ndim))]


defop("slice", inputs=("x",), fusion=Fusion.INJECTIVE, infer=_slice_rule, reference=_slice_reference,
      attrs={"starts": Attr(AttrKind.INTS), "ends": Attr(AttrKind.INTS), "axes": Attr(AttrKind.INTS),
             "steps": Attr(AttrKind.INTS)},
      doc="strided slice of `axes` (ONNX Slice: negative indices count from the end, clamped)")


# --- gather -----------------------------------------------------------------------------------

def _gather_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    data, indices = ts
    if data.rank == 0:
        raise ShapeError("data is a scalar; expected rank >= 1")
    if indices.dtype not in (DType.i32, DType.i64):
        raise ShapeError(f"indices have dtype {indices.dtype}; expected i32 or i64")
    axis = normalize_axis(attrs["axis"], data.rank)
    return data.with_shape(data.shape[:axis] + indices.shape + data.shape[axis + 1:])


def _gather_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    data, indices = xs
    axis = normalize_axis(attrs["axis"], data.ndim)
    size = data.shape[axis]
    lowest = -size if attrs["allow_negative"] else 0
    bad = indices[(indices < lowest) | (indices >= size)]
    if bad.size:
        raise ShapeError(f"op 'gather': index {bad.flat[0]} is out of range for axis {axis} of "
                         f"size {size} (expected {lowest} <= index < {size})")
    return np.take(data, indices, axis=axis)


defop("gather", inputs=("data", "indices"),
      attrs={"axis": Attr(AttrKind.INT, 0), "allow_negative": Attr(AttrKind.BOOL, True)},
      fusion=Fusion.INJECTIVE, infer=_gather_rule, reference=_gather_reference,
      doc="pick slices of `data` along `axis` at `indices` (embedding lookup); negative indices "
          "count from the end unless `allow_negative` is false, which makes them out of range")


# --- pad --------------------------------------------------------------------------------------

def _pad_rule(ts: list[TensorType], attrs: dict) -> TensorType:
    x, pads, value = ts[0], attrs["pads"], attrs["value"]
    if len(pads) != 2 * x.rank or any(p < 0 for p in pads):
        raise ShapeError(f"pads {pads} must be {2 * x.rank} ints >= 0 (before, after for each "
                         f"axis of {x})")
    if not x.dtype.is_float and not float(value).is_integer():
        raise ShapeError(f"value {value} is not a whole number, as dtype {x.dtype} needs")
    shape = []
    for axis, d in enumerate(x.shape):
        added = pads[2 * axis] + pads[2 * axis + 1]
        shape.append(canonical(f"({d})+{added}") if is_symbol(d) else d + added)
    return x.with_shape(shape)


def _pad_reference(xs: list[np.ndarray], attrs: dict) -> np.ndarray:
    x, pads = xs[0], attrs["pads"]
    if x.ndim == 0:
        return x
    pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(x.ndim)]
    return np.pad(x, pairs, constant_values=attrs["value"])


defop("pad", inputs=("x",), attrs={"pads": Attr(AttrKind.INTS), "value": Attr(AttrKind.FLOAT, 0.0)},
      fusion=Fusion.INJECTIVE, infer=_pad_rule, reference=_pad_reference,
      doc="constant padding; pads = (before_0, after_0, before_1, after_1, ...)")


# --- VJPs (autodiff) ------------------------------------------------------------------------
# Each moves the cotangent back where the input's elements came from: the inverse reshape or
# permutation, slices of a concatenation, padding around a slice, a scatter-add for gather.
# broadcast returns the cotangent as it is: autodiff sums broadcast axes away.

def _reshape_vjp(b, node, cts):
    return [b.reshape(cts[0], shape=node.inputs[0].type.shape)]


def _transpose_vjp(b, node, cts):
    inverse = [0] * len(node.attrs["perm"])
    for i, p in enumerate(node.attrs["perm"]):
        inverse[p] = i
    return [b.transpose(cts[0], perm=inverse)]


def _concat_vjp(b, node, cts):
    if len(node.inputs) == 1:
        return [cts[0]]
    axis = normalize_axis(node.attrs["axis"], node.outputs[0].type.rank)
    out, offset = [], 0
    for x in node.inputs:
        size = x.type.shape[axis]
        out.append(b.slice(cts[0], starts=[offset], ends=[offset + size], axes=[axis], steps=[1]))
        offset += size
    return out


def _pad_vjp(b, node, cts):
    x, pads = node.inputs[0], node.attrs["pads"]
    axes = [a for a in range(x.type.rank) if pads[2 * a] or pads[2 * a + 1]]
    if not axes:
        return [cts[0]]
    starts = [pads[2 * a] for a in axes]
    # over a symbolic axis, the end counts back from the padded end
    ends = [(-pads[2 * a + 1] or SLICE_END) if is_symbol(x.type.shape[a]) else pads[2 * a] + x.type.shape[a]
            for a in axes]
    return [b.slice(cts[0], starts=starts, ends=ends, axes=axes, steps=[1] * len(axes))]


def _slice_vjp(b, node, cts):
    """Zeros with the cotangent at the sliced positions: reverse the axes taken backwards, spread
    strided axes out with zeros between (reshape, pad, reshape), then pad to the input's size."""
    x, g = node.inputs[0], cts[0]
    parts = slice_plan(x.type.shape, node.attrs)
    plan = {a: range(*part.indices(x.type.shape[a])) for a, part in parts.items()
            if not is_symbol(x.type.shape[a])}
    if any(len(r) == 0 for r in plan.values()):
        return [None]   # nothing was taken: the gradient is zero
    backwards = [a for a, r in plan.items() if r.step < 0 and len(r) > 1]
    backwards += [a for a, part in parts.items() if is_symbol(x.type.shape[a]) and part.step == -1]
    if backwards:
        g = b.slice(g, starts=[-1] * len(backwards), ends=[-SLICE_END] * len(backwards), axes=backwards,
                    steps=[-1] * len(backwards))
    pads = [0] * (2 * x.type.rank)
    for a, r in sorted(plan.items()):
        first, step, n = min(r), abs(r.step), len(r)
        span = n
        if step > 1 and n > 1:
            g = _spread(b, g, a, n, step)
            span = n * step
            if first + span > x.type.shape[a]:
                span = (n - 1) * step + 1
                g = b.slice(g, starts=[0], ends=[span], axes=[a], steps=[1])
        pads[2 * a], pads[2 * a + 1] = first, x.type.shape[a] - first - span
    for a, part in parts.items():
        if is_symbol(x.type.shape[a]) and part.step is None:
            pads[2 * a], pads[2 * a + 1] = part.start or 0, -(part.stop or 0)
    return [b.pad(g, pads=pads) if any(pads) else g]


def _spread(b, g, axis: int, n: int, step: int):
    """`g` with step-1 zeros after each of the n entries along `axis` (length n * step)."""
    shape = list(g.type.shape)
    column = b.reshape(g, shape=shape[:axis + 1] + [1] + shape[axis + 1:])
    pads = [0] * (2 * (len(shape) + 1))
    pads[2 * (axis + 1) + 1] = step - 1
    return b.reshape(b.pad(column, pads=pads), shape=shape[:axis] + [n * step] + shape[axis + 1:])


def _gather_vjp(b, node, cts):
    """scatter_add of the cotangent's rows. A cotangent that is a transpose only reordering the
    index axes (the gradient of an embedding read time-major by a recurrent layer) is not
    transposed back: its indices are transposed instead, which adds the same rows to the same
    places without moving the rows."""
    data, indices = node.inputs
    ct = cts[0]
    perm = _index_axes_perm(ct, indices.type.rank) if node.attrs["axis"] == 0 else None
    if perm is not None:
        ct, indices = ct.producer.inputs[0], b.transpose(indices, perm=perm)
    return [b.scatter_add(indices, ct, shape=data.type.shape, axis=node.attrs["axis"],
                          allow_negative=node.attrs["allow_negative"]), None]


def _index_axes_perm(ct, rank: int) -> list[int] | None:
    """When `ct` is a transpose moving only its first `rank` axes: the permutation of those that
    undoes it (what lines the indices up with the transpose's input)."""
    producer = ct.producer
    if producer is None or producer.op != "transpose":
        return None
    perm = list(producer.attrs["perm"])
    if sorted(perm[:rank]) != list(range(rank)) or perm[rank:] != list(range(rank, len(perm))):
        return None
    return [perm.index(axis) for axis in range(rank)]


OPS["reshape"].vjp = _reshape_vjp
OPS["transpose"].vjp = _transpose_vjp
OPS["broadcast"].vjp = lambda b, node, cts: [cts[0]]
OPS["concat"].vjp = _concat_vjp
OPS["slice"].vjp = _slice_vjp
OPS["pad"].vjp = _pad_vjp
OPS["gather"].vjp = _gather_vjp
