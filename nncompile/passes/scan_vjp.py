"""The VJP of `scan`: the forward scan saves what the step's backward pass reads, and a reverse
scan runs that backward pass from the last step to the first (JAX's scan transpose).

For a forward step  (carries, slices, invariants) -> (new carries, per-step outputs):
1. The step's backward pass is derived once, on a copy of the body (`autodiff.vjp`), seeded
   with a cotangent input per float result of the step.
2. Its reads of the forward step (residuals) become per-step outputs of the forward scan, which
   gains them in place (a carry's value before the step, a gate's activation, ...): slices and
   invariants it reads are the scan's own operands and need no saving.
3. The backward scan carries the carries' cotangents and one sum per float invariant, scans the
   per-step cotangents, the saved residuals and the slices it reads, and returns per step the
   cotangents of the slices. Its final carries are the cotangents of the initial carries and of
   the invariants.
"""
from __future__ import annotations

from nncompile.ir.builder import Builder
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.ops.scan import split_operands
from nncompile.ir.optable import get_op, infer_types
from nncompile.ir.types import TensorType
from nncompile.passes.autodiff import vjp


def _is_float(v: Value) -> bool:
    return v.type.dtype.is_float


def _clone(nodes: list[Node], mapping: dict[Value, Value], into: Graph) -> None:
    """Append copies of `nodes` to `into`, reading through `mapping` (extended with their results)."""
    for node in nodes:
        attrs = {k: a.copy() if isinstance(a, Graph) else a for k, a in node.attrs.items()}
        copy = into.append(Node(node.op, [mapping[v] for v in node.inputs], attrs,
                                [v.type for v in node.outputs], node.loc))
        mapping.update(zip(node.outputs, copy.outputs))


def _zeros(b: Builder, like: Value) -> Value:
    return b.broadcast(b.constant(0.0, like.type.dtype), shape=like.type.shape)


class _Step:
    """The forward body and, in a graph of its own, its copy followed by its backward pass."""

    def __init__(self, node: Node):
        body = node.attrs["body"]
        self.body, self.attrs = body, node.attrs
        self.grad = Graph("step")
        self.to_grad: dict[Value, Value] = {v: self.grad.add_input(v.name, v.type) for v in body.inputs}
        _clone(body.nodes, self.to_grad, self.grad)
        self.forward = {*self.grad.inputs, *(v for n in self.grad.nodes for v in n.outputs)}
        self.cts = {i: self.grad.add_input(f"ct{i}", v.type) for i, v in enumerate(body.outputs) if _is_float(v)}
        seeds = [(self.to_grad[body.outputs[i]], ct) for i, ct in self.cts.items()]
        self.wrt = [v for v in body.inputs if _is_float(v)]
        start = len(self.grad.nodes)
        grads = vjp(self.grad, seeds, [self.to_grad[v] for v in self.wrt])
        self.grads = dict(zip(self.wrt, grads))
        self.backward = self.grad.nodes[start:]

    def residuals(self) -> list[Value]:
        """The forward values (in the copy) the backward pass reads, in first-read order."""
        reads = [v for n in self.backward for v in n.inputs] + list(self.grads.values())
        return list(dict.fromkeys(v for v in reads if v in self.forward))

    def recomputed(self) -> list[Node]:
        """The forward nodes (in the copy) to run again in the backward body rather than save:
        those whose result is the same at every step (constants, functions of invariants only)
        and that a residual depends on."""
        invariants = set(split_operands(self.grad.inputs[:len(self.body.inputs)], self.attrs)[2])
        fixed = []
        for node in self.grad.nodes[:len(self.body.nodes)]:
            if all(v in invariants for v in node.inputs):
                fixed.append(node)
                invariants.update(node.outputs)
        needed = {v for v in self.residuals() if v in invariants}
        kept = []
        for node in reversed(fixed):
            if any(v in needed for v in node.outputs):
                kept.append(node)
                needed.update(node.inputs)
        return kept[::-1]


def scan_vjp(b: Builder, node: Node, cts: list[Value | None]) -> list[Value | None]:
    step = _Step(node)
    attrs, body = node.attrs, node.attrs["body"]
    n, axis = attrs["num_carry"], attrs["axis"]
    carries, scanned, invariants = split_operands(body.inputs, attrs)
    from_grad = {g: v for v, g in step.to_grad.items()}
    recomputed = step.recomputed()
    again = {v for n in recomputed for v in n.outputs}
    saved = _save_residuals(node, [from_grad[r] for r in step.residuals() if r not in again
                                   and from_grad[r] not in scanned and from_grad[r] not in invariants])

    bg = Graph("body")
    mapping: dict[Value, Value] = {}
    operands: dict[str, list[Value]] = {"carry": [], "scanned": [], "invariant": []}

    def bind(kind: str, inner: Value | None, outer: Value, name: str, type=None) -> Value:
        new = bg.add_input(name, type or (inner.type if inner is not None else outer.type))
        if inner is not None:
            mapping[inner] = new
        operands[kind].append(outer)
        return new

    float_carries = [i for i in range(n) if _is_float(carries[i])]
    for i in float_carries:
        bind("carry", step.cts[i], cts[i] if cts[i] is not None else _zeros(b, carries[i]), f"ct{i}")
    sums = {v: bind("carry", None, _zeros(b, v), f"sum_{v.name}") for v in invariants if _is_float(v)}
    for i, ct in step.cts.items():
        if i >= n:
            result = node.outputs[i]
            bind("scanned", ct, cts[i] if cts[i] is not None else _zeros(b, result),
                 f"ct{i}", ct.type)
    for inner, stacked in saved.items():
        bind("scanned", step.to_grad[inner], stacked, f"saved{len(operands['scanned'])}", inner.type)
    reads = set(step.residuals()) | {v for n in recomputed for v in n.inputs}
    outer_scanned = split_operands(node.inputs, attrs)[1]
    for inner, outer in zip(scanned, outer_scanned):
        if step.to_grad[inner] in reads or not operands["scanned"]:
            bind("scanned", step.to_grad[inner], outer, inner.name, inner.type)
    for inner, outer in zip(invariants, split_operands(node.inputs, attrs)[2]):
        if step.to_grad[inner] in reads:
            bind("invariant", step.to_grad[inner], outer, inner.name)

    _clone([*recomputed, *step.backward], mapping, bg)
    _transpose_once(b, bg, operands["invariant"])
    grad_of = {v: mapping[step.grads[v]] for v in step.wrt}
    new_sums = [Builder(bg).add(acc, grad_of[v]) for v, acc in sums.items()]
    bg.set_outputs([*(grad_of[carries[i]] for i in float_carries), *new_sums,
                    *(grad_of[v] for v in scanned if _is_float(v))])
    counts = {"num_carry": len(operands["carry"]), "num_scanned": len(operands["scanned"])}
    results = b.op("scan", *operands["carry"], *operands["scanned"], *operands["invariant"], body=bg,
                   axis=axis, reverse=not attrs["reverse"], **counts)
    results = list(results)
    out: list[Value | None] = [None] * len(node.inputs)
    for i in float_carries:
        out[i] = results.pop(0)
    inv_start = n + attrs["num_scanned"]
    for k, v in enumerate(invariants):
        if v in sums:
            out[inv_start + k] = results.pop(0)
    for j, v in enumerate(scanned):
        if _is_float(v):
            out[n + j] = results.pop(0)
    return out


def _transpose_once(b: Builder, bg: Graph, invariants: list[Value]) -> None:
    """A product with a transposed invariant (dz @ R^T, the state's cotangent) reads the
    transpose made once before the loop: a GEMM packs a transposed operand more slowly, and
    inside the loop it would do so at every step."""
    start = len(bg.inputs) - len(invariants)
    for node in bg.nodes:
        if node.op != "matmul" or not node.attrs["transpose_b"] or node.inputs[1] not in bg.inputs[start:]:
            continue
        position = bg.inputs.index(node.inputs[1]) - start
        outer = invariants[position]
        if outer.type.rank != 2:
            continue
        flipped = bg.add_input(f"{node.inputs[1].name}_t", TensorType(outer.type.dtype, outer.type.shape[::-1]))
        invariants.append(b.transpose(outer, perm=[1, 0]))
        node.inputs[1] = flipped
        node.attrs["transpose_b"] = False


def _save_residuals(node: Node, values: list[Value]) -> dict[Value, Value]:
    """Make each body value of `values` a per-step output of the forward `node` (unless it is
    one already); returns body value -> its stacked result."""
    body, attrs = node.attrs["body"], node.attrs
    n = attrs["num_carry"]
    saved = {v: node.outputs[n + k] for k, v in enumerate(body.outputs[n:]) if v in values}
    extra = [v for v in values if v not in saved]
    if not extra:
        return saved
    body.set_outputs([*body.outputs, *extra])
    where = f"{node.describe()} (saving its residuals for the backward pass)"
    types = infer_types(get_op("scan"), [v.type for v in node.inputs], attrs, where)
    for v, t in zip(extra, types[len(node.outputs):]):
        result = Value(t, producer=node, index=len(node.outputs))
        node.outputs.append(result)
        saved[v] = result
    return saved
