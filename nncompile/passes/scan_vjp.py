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
4. Two rewrites of the recurrent recipe: an invariant whose per-step cotangent is p^T @ q (a
   recurrent kernel's, h^T @ dz) is not summed in the loop but computed after it as one product
   of the stacked p and q over all rows; and a product with a transposed invariant (dz @ R^T)
   reads a transpose made once before the loop.
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
    return _Backward(b, node, cts).run()


class _Backward:
    """The backward scan of one forward scan node: its body `bg`, built from the step's backward
    pass, and its operands by kind."""

    def __init__(self, b: Builder, node: Node, cts: list[Value | None]):
        self.b, self.node, self.cts, self.attrs = b, node, cts, node.attrs
        self.step = _Step(node)
        self.carries, self.scanned, self.invariants = split_operands(node.attrs["body"].inputs, node.attrs)
        self.outer = split_operands(node.inputs, node.attrs)
        self.bg = Graph("body")
        self.mapping: dict[Value, Value] = {}
        self.operands: dict[str, list[Value]] = {"carry": [], "scanned": [], "invariant": []}

    def bind(self, kind: str, inner: Value | None, outer: Value, name: str, type=None) -> Value:
        new = self.bg.add_input(name, type or (inner.type if inner is not None else outer.type))
        if inner is not None:
            self.mapping[inner] = new
        self.operands[kind].append(outer)
        return new

    def run(self) -> list[Value | None]:
        b, step, n = self.b, self.step, self.attrs["num_carry"]
        from_grad = {g: v for v, g in step.to_grad.items()}
        recomputed = step.recomputed()
        again = {v for node in recomputed for v in node.outputs}
        self.saved = _save_residuals(self.node, [from_grad[r] for r in step.residuals() if r not in again
                                                 and from_grad[r] not in (*self.scanned, *self.invariants)])
        float_carries = [i for i in range(n) if _is_float(self.carries[i])]
        for i in float_carries:
            self.bind("carry", step.cts[i], self.cts[i] if self.cts[i] is not None else _zeros(b, self.carries[i]),
                      f"ct{i}")
        products = {v: p for v in self.invariants if _is_float(v) and (p := self.row_product(v)) is not None}
        sums = {v: self.bind("carry", None, _zeros(b, v), f"sum_{v.name}")
                for v in self.invariants if _is_float(v) and v not in products}
        self.bind_scanned(recomputed)
        _clone([*recomputed, *step.backward], self.mapping, self.bg)
        _transpose_once(b, self.bg, self.operands["invariant"])
        grad_of = {v: self.mapping[step.grads[v]] for v in step.wrt}
        step_grads = [grad_of[v] for v in self.scanned if _is_float(v)]
        backward_factors = [self.mapping[f] for p in products.values() for f in p if f not in step.forward]
        extra = [f for f in dict.fromkeys(backward_factors) if f not in step_grads]
        new_sums = [Builder(self.bg).add(acc, grad_of[v]) for v, acc in sums.items()]
        self.bg.set_outputs([*(grad_of[self.carries[i]] for i in float_carries), *new_sums, *step_grads, *extra])
        counts = {"num_carry": len(self.operands["carry"]), "num_scanned": len(self.operands["scanned"])}
        results = list(b.op("scan", *self.operands["carry"], *self.operands["scanned"], *self.operands["invariant"],
                            body=self.bg, axis=self.attrs["axis"], reverse=not self.attrs["reverse"], **counts))
        out: list[Value | None] = [None] * len(self.node.inputs)
        for i in float_carries:
            out[i] = results.pop(0)
        inv_start = n + self.attrs["num_scanned"]
        for k, v in enumerate(self.invariants):
            if v in sums:
                out[inv_start + k] = results.pop(0)
        stacked: dict[Value, Value] = {}     # a backward body value -> its stacked result
        for j, v in enumerate(self.scanned):
            if _is_float(v):
                out[n + j] = stacked[grad_of[v]] = results.pop(0)
        stacked.update(zip(extra, results))
        for k, v in enumerate(self.invariants):
            if v in products:
                p, q = (self.stacked_forward(f) if f in step.forward else stacked[self.mapping[f]]
                        for f in products[v])
                rows = list(range(p.type.rank - 2))
                out[inv_start + k] = b.reduce_sum(b.matmul(p, q, transpose_a=True), axes=rows)
        return out

    def bind_scanned(self, recomputed: list[Node]) -> None:
        """The per-step inputs of the backward body: cotangents of the per-step results, the saved
        residuals, and the forward's slices the backward pass reads."""
        step, n = self.step, self.attrs["num_carry"]
        for i, ct in step.cts.items():
            if i >= n:
                outer = self.cts[i] if self.cts[i] is not None else _zeros(self.b, self.node.outputs[i])
                self.bind("scanned", ct, outer, f"ct{i}", ct.type)
        for inner, stacked in self.saved.items():
            self.bind("scanned", step.to_grad[inner], stacked, f"saved{len(self.operands['scanned'])}", inner.type)
        reads = set(step.residuals()) | {v for node in recomputed for v in node.inputs}
        for inner, outer in zip(self.scanned, self.outer[1]):
            if step.to_grad[inner] in reads or not self.operands["scanned"]:
                self.bind("scanned", step.to_grad[inner], outer, inner.name, inner.type)
        for inner, outer in zip(self.invariants, self.outer[2]):
            if step.to_grad[inner] in reads:
                self.bind("invariant", step.to_grad[inner], outer, inner.name)

    def row_product(self, invariant: Value) -> tuple[Value, Value] | None:
        """(p, q) when the invariant's cotangent at every step is p^T @ q of two per-step
        matrices (a recurrent kernel's: h^T @ dz): then the sum over steps is one product of the
        stacked p and q over all their rows, after the loop, instead of one per step."""
        step = self.step
        grad = step.grads[invariant]
        node = grad.producer
        if node is None or node not in step.backward or node.op != "matmul" or not node.attrs["transpose_a"] \
                or node.attrs["transpose_b"] or any(v.type.rank != 2 for v in node.inputs):
            return None
        if any(grad in n.inputs for n in step.backward) or list(step.grads.values()).count(grad) != 1:
            return None
        fixed = set(split_operands(step.grad.inputs[:len(self.node.attrs["body"].inputs)], self.attrs)[2])
        if any(v in fixed or (v in step.forward and v.producer is not None and all(
                x in fixed for x in v.producer.inputs)) for v in node.inputs):
            return None
        return node.inputs[0], node.inputs[1]

    def stacked_forward(self, value: Value) -> Value:
        """The stacked array holding a forward value (in the step's copy) at every step."""
        inner = next(v for v, g in self.step.to_grad.items() if g is value)
        if inner in self.saved:
            return self.saved[inner]
        return self.outer[1][self.scanned.index(inner)]


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
