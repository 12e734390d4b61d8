"""Algebraic simplification: rewrites that give bit-for-bit the same results, signed zeros included.

Rules, by op (x, y any values; 1 and 0 constants filled with that number; a rule applies only
when the replacement has exactly the node's result type, so no broadcast is lost):

    add(x, -0.0), add(-0.0, x), sub(x, +0.0), mul(x, 1), mul(1, x), div(x, 1), pow(x, 1)  ->  x
        (for floats the sign of the zero matters: -0.0 + +0.0 is +0.0, so x + 0.0 is not x when x
        is -0.0, and 1/(x + 0.0) is +inf where 1/x is -inf; integer zeros have no sign)
    add(x, neg(y)) -> sub(x, y)      add(neg(x), y) -> sub(y, x)      sub(x, neg(y)) -> add(x, y)
    neg(neg(x)) -> x                 select(c, x, x) -> x
    transpose(transpose(x, p), q) -> transpose(x, p∘q), or x when p∘q is the identity
    transpose(gather(t, i), p) -> gather(t, transpose(i, p)) when p only reorders i's axes
    reshape(reshape(x)) -> one reshape, or x when the shapes agree
    concat(x, concat(y, z)) along the same axis -> concat(x, y, z)
    select(y > 0, max_pool2d_grad(y, dz), +0.0) -> max_pool2d_grad(y, select(max_pool2d(y) > 0, dz, +0.0))
        (relu's gradient through a max pooling: each dz lands on its window's first maximum, whose
        value is the window's max_pool2d, so the test moves to the pooled tensor, a window's size
        smaller; the sums of dz and of +0.0 are the same additions; the forward max_pool2d is
        shared by cse)
    an operand broadcast(v) of an elementwise op with several operands -> v, when the op's own
        broadcasting gives the same result type (a scalar stays a scalar the loop reads)

Not rewritten, because they are not exact for floats: x + 0.0 and x - (-0.0) (x = -0.0), x - x
(NaN, inf), x * 0 (NaN, inf, -0), x / x, reassociations. The rules see already simplified operands, so chains collapse in one pass.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from nncompile.ir.errors import ShapeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, Fusion
from nncompile.passes.manager import register_pass
from nncompile.passes.rewrite import Rewriter, constant_of, is_filled, sweep, users

SimplifyRule = Callable[[Rewriter, Node], "Value | None"]


def _made_by(v: Value, op: str) -> Node | None:
    """The node producing `v` when its op is `op`."""
    node = v.producer
    return node if node is not None and node.op == op else None


def _fits(node: Node, v: Value) -> Value | None:
    """`v` when it can stand for the node's result (same dtype and shape), else None."""
    return v if v.type == node.outputs[0].type else None


def _identity(position: int, number: float) -> SimplifyRule:
    """The operand that is not `number` when the operand at `position` is that number."""
    def rule(rw: Rewriter, node: Node) -> Value | None:
        if is_filled(node.inputs[position], number):
            return _fits(node, node.inputs[1 - position])
        return None
    return rule


def _zero(position: int, negative: bool) -> SimplifyRule:
    """The other operand when the operand at `position` is zero: for floats only a zero of sign
    `negative`, the one that leaves every x (including -0.0) unchanged."""
    def rule(rw: Rewriter, node: Node) -> Value | None:
        return _fits(node, node.inputs[1 - position]) if _is_zero(node.inputs[position], negative) else None
    return rule


def _is_zero(v: Value, negative: bool) -> bool:
    """Whether `v` is a constant of zeros, for floats all of sign `negative`."""
    zero = constant_of(v)
    if zero is None or zero.dtype == np.bool_ or not np.all(zero == 0):
        return False
    return zero.dtype.kind != "f" or bool(np.all(np.signbit(zero) == negative))


def _add_neg(rw: Rewriter, node: Node) -> Value | None:
    x, y = node.inputs
    if _made_by(y, "neg"):
        return rw.emit("sub", [x, y.producer.inputs[0]], node.loc)
    if _made_by(x, "neg"):
        return rw.emit("sub", [y, x.producer.inputs[0]], node.loc)
    return None


def _sub_neg(rw: Rewriter, node: Node) -> Value | None:
    x, y = node.inputs
    return rw.emit("add", [x, y.producer.inputs[0]], node.loc) if _made_by(y, "neg") else None


def _double_neg(rw: Rewriter, node: Node) -> Value | None:
    inner = _made_by(node.inputs[0], "neg")
    return inner.inputs[0] if inner is not None else None


def _same_branches(rw: Rewriter, node: Node) -> Value | None:
    _, x, y = node.inputs
    return _fits(node, x) if x is y else None


def _transpose_pair(rw: Rewriter, node: Node) -> Value | None:
    inner = _made_by(node.inputs[0], "transpose")
    if inner is None:
        return None
    # output axis i of the outer reads its input axis q[i], which is axis p[q[i]] of x.
    perm = [inner.attrs["perm"][q] for q in node.attrs["perm"]]
    x = inner.inputs[0]
    if perm == list(range(len(perm))):
        return x
    return rw.emit("transpose", [x], node.loc, perm=perm)


def _transposed_gather(rw: Rewriter, node: Node) -> Value | None:
    """transpose(gather(t, i)) that only reorders the index axes -> gather(t, transpose(i)): the
    lookup writes its rows where the transpose would have moved them (an embedding read
    time-major for a recurrent layer), and the indices, not the rows, are transposed."""
    inner = _made_by(node.inputs[0], "gather")
    perm = node.attrs["perm"]
    if inner is None or inner.attrs["axis"] % inner.inputs[0].type.rank != 0:
        return None
    rank = inner.inputs[1].type.rank
    if sorted(perm[:rank]) != list(range(rank)) or list(perm[rank:]) != list(range(rank, len(perm))):
        return None
    indices = rw.emit("transpose", [inner.inputs[1]], node.loc, perm=perm[:rank])
    return rw.emit("gather", [inner.inputs[0], indices], inner.loc, **inner.attrs)


def _reshape_pair(rw: Rewriter, node: Node) -> Value | None:
    inner = _made_by(node.inputs[0], "reshape")
    if inner is None:
        return None
    x, target = inner.inputs[0], node.outputs[0].type.shape
    if x.type == node.outputs[0].type:
        return x
    try:
        return rw.emit("reshape", [x], node.loc, shape=target)
    except ShapeError:   # symbols the direct reshape cannot express (emit adds no node then)
        return None


def _nested_concat(rw: Rewriter, node: Node) -> Value | None:
    """concat(x, concat(y, z)) along one axis -> concat(x, y, z): one copy, not two."""
    axis = node.attrs["axis"] % node.outputs[0].type.rank
    parts, flattened = [], False
    for v in node.inputs:
        inner = _made_by(v, "concat")
        if inner is not None and inner.attrs["axis"] % v.type.rank == axis:
            parts += inner.inputs
            flattened = True
        else:
            parts.append(v)
    return rw.emit("concat", parts, node.loc, axis=node.attrs["axis"]) if flattened else None


def _relu_through_max_pool(rw: Rewriter, node: Node) -> Value | None:
    """The rule above for a select whose max_pool2d_grad has no other use: the Conv2D-ReLU-
    MaxPooling2D block of a CNN's training step then tests and selects a quarter of the values
    (2 x 2 windows) instead of the whole activation."""
    test, grad, other = node.inputs
    greater, pool_grad = _made_by(test, "greater"), _made_by(grad, "max_pool2d_grad")
    zero = greater.inputs[1] if greater is not None else None
    if pool_grad is None or zero is None or not _is_zero(other, negative=False) or not is_filled(zero, 0) \
            or other.type.shape != () or zero.type.shape != ():     # zeros as autodiff writes them
        return None
    y = greater.inputs[0]
    if pool_grad.inputs[0] is not y or test.type.shape != y.type.shape or users(rw.graph).get(grad) != 1:
        return None
    pooled = rw.emit("max_pool2d", [y], pool_grad.loc, **pool_grad.attrs)
    keep = rw.emit("greater", [pooled, zero], greater.loc)
    kept = rw.emit("select", [keep, pool_grad.inputs[1], other], node.loc)
    return _fits(node, rw.emit("max_pool2d_grad", [y, kept], pool_grad.loc, **pool_grad.attrs))


RULES: dict[str, list[SimplifyRule]] = {
    "add": [_zero(1, negative=True), _zero(0, negative=True), _add_neg],
    "sub": [_zero(1, negative=False), _sub_neg],
    "mul": [_identity(1, 1.0), _identity(0, 1.0)],
    "div": [_identity(1, 1.0)],
    "pow": [_identity(1, 1.0)],
    "neg": [_double_neg],
    "select": [_same_branches, _relu_through_max_pool],
    "transpose": [_transpose_pair, _transposed_gather],
    "reshape": [_reshape_pair],
    "concat": [_nested_concat],
}


def _absorb_broadcasts(node: Node) -> None:
    """Read v instead of broadcast(v) where the op's own broadcasting gives the same result."""
    if OPS[node.op].fusion is not Fusion.ELEMENTWISE or len(node.inputs) < 2:
        return
    for i, v in enumerate(node.inputs):
        source = _made_by(v, "broadcast")
        if source is None:
            continue
        trial = [*node.inputs[:i], source.inputs[0], *node.inputs[i + 1:]]
        try:
            types = OPS[node.op].infer([t.type for t in trial], node.attrs)
        except ShapeError:
            continue
        if types == node.outputs[0].type:
            node.inputs = trial


def _simplify(rw: Rewriter, node: Node) -> Value | None:
    _absorb_broadcasts(node)
    for rule in RULES.get(node.op, ()):
        result = rule(rw, node)
        if result is not None:
            return result
    return None


@register_pass("simplify", doc="Exact algebraic identities: x*1, x-0, neg(neg(x)), transpose and "
                               "reshape chains, broadcasts an elementwise op does itself.")
def simplify(graph: Graph) -> Graph:
    """Apply the RULES in one forward sweep."""
    return sweep(graph, _simplify)
