"""`ops.scan` (a loop over the leading axis, traced into the IR's `scan` op) and the loops and
branches built on it or on selects: fori_loop, map, vectorized_map, while_loop,
associative_scan, cond, switch.

Eagerly the loop runs in Python, step by step, as on Keras's numpy backend. Traced, `f` is
called once on the body's inputs inside a region builder, and the loop becomes one `scan` node:
its body is what `f` emitted, and tensors of the enclosing graph that `f` reads (weights,
closed-over values) become the scan's invariant operands.

    >>> from nncompile.keras import ops
    >>> def step(total, x):
    ...     total = ops.add(total, x)
    ...     return total, total
    >>> final, running = ops.scan(step, np.zeros(2, "float32"), np.ones((3, 2), "float32"))
    >>> final.tolist(), running[:, 0].tolist()
    ([3.0, 3.0], [1.0, 2.0, 3.0])
"""
from __future__ import annotations

import numpy as np

from nncompile.ir import Builder, Value
from nncompile.ir.ops.scan import slice_type
from nncompile.keras.ops.arrays import concatenate, expand_dims, flip, get_item, moveaxis, shape, stack, where
from nncompile.keras.ops.core import EagerValue, builder_for, leaves, tensor, tracing


class Region(Builder):
    """The builder of a loop body inside `outer`: a value of an enclosing graph used here
    becomes a body input (captured), in the order first used, after the inputs made on
    purpose."""

    def __init__(self, outer: Builder):
        super().__init__(name="body")
        self.outer = outer
        self.captured: dict[Value, Value] = {}
        self._own: set[Value] = set()

    def input(self, name, type):
        v = super().input(name, type)
        self._own.add(v)
        return v

    def op(self, op, *inputs, **attrs):
        out = super().op(op, *(self._local(v) for v in inputs), **attrs)
        self._own.update(out if isinstance(out, tuple) else (out,))
        return out

    def local(self, x) -> Value:
        """`x` (a tensor, array or number) as a value of the body graph."""
        v = tensor(self, x)
        return self._local(v)

    def _local(self, v: Value) -> Value:
        if v in self._own:
            return v
        if v not in self.captured:
            self.captured[v] = self.input(f"captured_{len(self.captured)}", v.type)
        return self.captured[v]


def _flat(tree) -> tuple[list, bool]:
    """The tensors of `tree` (one, or a flat list or tuple) and whether it was one."""
    if isinstance(tree, (list, tuple)):
        return list(tree), False
    return [tree], True


def _rebuilt(values: list, single: bool):
    return values[0] if single else tuple(values)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """Loop `carry, y = f(carry, x)` over the slices x of `xs` along axis 0 (or `length` times
    with x None); returns the last carry and the ys stacked along axis 0. `init`, `xs` and the
    carry and y that `f` returns are tensors or flat tuples of tensors. `unroll` is accepted;
    the IR's loop is never unrolled.
    """
    carries, single_carry = _flat(init)
    scanned, single_x = _flat(xs) if xs is not None else ([], True)
    if xs is None and length is None:
        raise ValueError("ops.scan: pass `xs` or `length` (the number of steps)")
    if not any(isinstance(v, Value) for v in leaves([carries, scanned])):
        return _eager(f, carries, single_carry, scanned, single_x, xs is None, length, reverse)
    b = builder_for("scan", carries, scanned)
    return _traced(b, f, carries, single_carry, scanned, single_x, xs is None, length, reverse)


def scan_values(b, f, init, xs=None, length=None):
    """`scan` inside an op's own definition on `b`'s values, eager (EagerValues, run on their
    arrays) or traced: (the last carry, the stacked ys) as values of `b`. `f` works with ops."""
    values = _flat(init)[0] + (_flat(xs)[0] if xs is not None else [])
    if not any(isinstance(v, EagerValue) for v in values):
        with tracing(b):
            return scan(f, init, xs, length)
    carry, ys = scan(f, _map(lambda v: v.array, init), _map(lambda v: v.array, xs), length)
    return _map(lambda a: EagerValue(np.asarray(a)), carry), _map(lambda a: EagerValue(np.asarray(a)), ys)


def _map(fn, tree):
    """`fn` of one value or of each of a tuple's (None stays None)."""
    return None if tree is None else tuple(fn(v) for v in tree) if isinstance(tree, tuple) else fn(tree)


def _eager(f, carries, single_carry, scanned, single_x, no_xs, length, reverse):
    steps = length if no_xs else len(np.asarray(scanned[0]))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    carry, ys = _rebuilt(carries, single_carry), {}
    for t in order:
        x = None if no_xs else _rebuilt([get_item(s, t) for s in scanned], single_x)
        carry, y = f(carry, x)
        ys[t] = y
    if not ys and not no_xs and steps == 0:     # no step: f's outputs, from one call, stacked empty
        slices = [np.zeros(np.shape(s)[1:], np.asarray(s).dtype) for s in scanned]
        _, y = f(carry, _rebuilt(slices, single_x))
        if y is None:
            return carry, None
        outs, single_y = _flat(y)
        return carry, _rebuilt([np.zeros((0, *np.shape(o)), np.asarray(o).dtype) for o in outs], single_y)
    if not ys or ys[0] is None:
        return carry, None
    outs, single_y = _flat(ys[0])
    stacked = [stack([_flat(ys[t])[0][i] for t in range(steps)]) for i in range(len(outs))]
    return carry, _rebuilt(stacked, single_y)


def _traced(b, f, carries, single_carry, scanned, single_x, no_xs, length, reverse):
    carries = [tensor(b, c) for c in carries]
    scanned = ([tensor(b, s) for s in scanned] if not no_xs else
               [b.constant(np.zeros(length, np.float32))])   # only its length counts
    body = Region(b)
    carry_in = [body.input(f"carry_{i}", c.type) for i, c in enumerate(carries)]
    x_in = [body.input(f"x_{i}", slice_type(s.type, 0)) for i, s in enumerate(scanned)]
    with tracing(body):
        new_carry, y = f(_rebuilt(carry_in, single_carry),
                         None if no_xs else _rebuilt(x_in, single_x))
    new_carries = [body.local(c) for c in _flat(new_carry)[0]]
    for old, new in zip(carries, new_carries):
        if old.type != new.type:
            raise ValueError(f"ops.scan: the carry returned by `f` has type {new.type}, the "
                             f"initial carry {old.type}; they must be the same")
    ys, single_y = _flat(y) if y is not None else ([], True)
    ys = [body.local(v) for v in ys]
    graph = body.finish([*new_carries, *ys])
    outs = b.op("scan", *carries, *scanned, *body.captured, body=graph,
                num_carry=len(carries), num_scanned=len(scanned), axis=0, reverse=reverse)
    outs = list(outs) if isinstance(outs, tuple) else [outs]
    stacked = outs[len(carries):]
    return (_rebuilt(outs[:len(carries)], single_carry),
            _rebuilt(stacked, single_y) if y is not None else None)


def fori_loop(lower, upper, body_fun, init_val):
    """`val = body_fun(i, val)` for i from `lower` to `upper` - 1 (static bounds): a scan over
    those i, so traced it is one loop op.

    >>> int(fori_loop(0, 4, lambda i, total: total + i, np.int32(0)))
    6
    """
    steps = np.arange(int(lower), int(upper), dtype=np.int32)
    return scan(lambda val, i: (body_fun(i, val), None), init_val, steps)[0]


def cond(pred, true_fn, false_fn):
    """`true_fn()` if `pred` else `false_fn()`. A traced `pred` selects between both results,
    computed both (no branch op in the IR), so the branches must give the same types; an eager
    one runs one branch, as Python's `if`.

    >>> float(cond(np.array(False), lambda: np.float32(1), lambda: np.float32(2)))
    2.0
    """
    if not isinstance(pred, Value):
        return true_fn() if bool(np.asarray(pred)) else false_fn()
    yes, single = _flat(true_fn())
    no = _flat(false_fn())[0]
    if len(yes) != len(no):
        raise ValueError(f"ops.cond: true_fn gives {len(yes)} values, false_fn {len(no)}")
    return _rebuilt([where(pred, a, c) for a, c in zip(yes, no)], single)


def switch(index, branches, *operands):
    """`branches[index](*operands)`, the index clamped to the branches (as JAX's switch). A traced
    index selects among every branch's results (no branch op in the IR), so they must give the
    same types; an eager one runs one branch.

    >>> float(switch(1, [lambda x: x + 1, lambda x: x * 10], np.float32(2)))
    20.0
    """
    if not branches:
        raise ValueError("ops.switch: give at least one branch")
    kind = index.type.dtype.is_int if isinstance(index, Value) else np.issubdtype(np.asarray(index).dtype, np.integer)
    if not kind:
        raise TypeError("ops.switch: the index must be an integer")
    if not isinstance(index, Value):
        return branches[min(max(int(np.asarray(index)), 0), len(branches) - 1)](*operands)
    results = [_flat(branch(*operands)) for branch in branches]
    single = results[0][1]
    if any(len(r[0]) != len(results[0][0]) for r in results):
        raise ValueError("ops.switch: the branches give different numbers of values")
    b = builder_for("switch", index)
    last = b.scalar(len(branches) - 1, index)
    clamped = b.minimum(b.maximum(index, b.scalar(0, index)), last)
    chosen = list(results[-1][0])
    for i in range(len(branches) - 2, -1, -1):
        pick = b.equal(clamped, b.scalar(i, index))
        chosen = [where(pick, a, c) for a, c in zip(results[i][0], chosen)]
    return _rebuilt(chosen, single)


def map(f, xs):  # noqa: A001  (Keras's name)
    """`f` applied to each slice of `xs` along axis 0, the results stacked: a scan, so traced it
    is one loop op.

    >>> map(lambda x: x * 2, np.arange(3, dtype="int32")).tolist()
    [0, 2, 4]
    """
    return scan(lambda carry, x: (carry, f(x)), np.int32(0), xs)[1]


def vectorized_map(function, elements):
    """`function` applied to each slice of `elements` along axis 0, the results stacked (as
    `map`: a loop in the IR, which its fusion and the per-step kernels make fast)."""
    return map(function, elements)


def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """`loop_vars = body(*loop_vars)` while `cond(*loop_vars)` holds. Eagerly a Python loop;
    traced it needs `maximum_iterations`: a scan of that many steps whose state stops changing
    once `cond` fails (the IR's loops have a fixed trip count).

    >>> int(while_loop(lambda i: i < 10, lambda i: i * 2, np.int32(1)))
    16
    """
    state, single = _flat(loop_vars)
    step = (lambda values: _flat(body(*values))[0]) if not single else (lambda values: [body(values[0])])
    holds = (lambda values: cond(*values)) if not single else (lambda values: cond(values[0]))
    active = holds(state)
    if not isinstance(active, Value) and not any(isinstance(v, Value) for v in leaves(state)):
        count = 0
        while bool(np.asarray(active)) and (maximum_iterations is None or count < maximum_iterations):
            state, count = step(state), count + 1
            active = holds(state)
        return _rebuilt(state, single)
    if maximum_iterations is None:
        raise NotImplementedError("ops.while_loop: a traced loop needs `maximum_iterations` (the IR's "
                                  "loops have a fixed trip count)")
    b = builder_for("while_loop", [active, *state])
    state = [tensor(b, v) for v in state]

    def guarded(values, _):
        active = holds(values)
        moved = step(values)
        return tuple(where(active, new, old) for new, old in zip(moved, values)), None
    final = scan(guarded, tuple(state), length=int(maximum_iterations))[0]
    return _rebuilt(list(final), single)


def associative_scan(f, elems, reverse=False, axis=0):
    """The running `f`-combination of `elems` along `axis` (f associative, as JAX's
    associative_scan): out[0] = elems[0], out[i] = f(out[i - 1], elems[i]). Computed as a
    sequential scan, which gives the same values."""
    values, single = _flat(elems)
    moved = [moveaxis(v, axis, 0) for v in values]
    if shape(moved[0])[0] == 0:     # nothing to combine
        return elems
    if reverse:
        moved = [flip(v, 0) for v in moved]
    first = [get_item(v, 0) for v in moved]
    rest = [get_item(v, slice(1, None)) for v in moved]

    def step(carry, x):
        combined = tuple(_flat(f(_rebuilt(list(carry), single), _rebuilt(list(x), single)))[0])
        return combined, combined
    later = _flat(scan(step, tuple(first), tuple(rest))[1])[0]
    outs = [concatenate([expand_dims(a, 0), c], 0) for a, c in zip(first, later)]
    if reverse:
        outs = [flip(v, 0) for v in outs]
    return _rebuilt([moveaxis(v, 0, axis) for v in outs], single)
