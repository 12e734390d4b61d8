"""What a node costs: floating-point operations (FLOPs) and bytes moved, per op kind.

    >>> cost = graph_cost(graph, {"?": 32})        # symbolic dimensions bound to sizes
    >>> cost.flops, cost.bytes

FLOPs count one multiply-add as two, as papers and profilers do:

- matmul: 2*M*N*K per batch matrix; conv2d: 2*N*OH*OW*KH*KW*(C/groups)*O; their gradients
  (conv2d_grad_input, conv2d_grad_filter) the same as the forward convolution they mirror;
- elementwise ops: one per output element (exp and tanh count one, like add);
- reductions: one per input element (reduce_mean one more per output element, the divide);
- softmax and log_softmax: five per element (max, subtract, exp, sum, divide or subtract);
- pooling and its gradients: one per window element read;
- data movement (reshape, transpose, slice, concat, pad, gather, broadcast) and constants: none;
- fused: the sum of its body; scan: its body's FLOPs once per step;
- per n x n matrix: cholesky n^3/3, lu and det 2n^3/3; triangular_solve n^2 per right-hand side.

Bytes are what the node reads and writes in memory: its distinct operands plus its results. A
fused node counts only its own operands and results, since its body's intermediate values stay
in registers; that difference is what fusion saves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

from nncompile.ir.dims import dim_value
from nncompile.ir.errors import IRError, ShapeError
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import Fusion, get_op


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes moved; costs add up."""

    flops: int = 0
    bytes: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)


Env = Mapping[str, int]


def shape_of(value: Value, env: Env) -> tuple[int, ...]:
    """The concrete shape of `value`, its symbolic dimensions bound by `env`."""
    try:
        return tuple(dim_value(d, env) for d in value.type.shape)
    except ShapeError as e:
        raise ShapeError(f"{value!r}: {e}; sizes given: {dict(env)}") from None


def _elements(value: Value, env: Env) -> int:
    return math.prod(shape_of(value, env))


def _nbytes(value: Value, env: Env) -> int:
    return _elements(value, env) * value.type.dtype.itemsize


# --- FLOP rules: op name -> flops(node, env) ----------------------------------------------------

def _matmul(node: Node, env: Env) -> int:
    a = shape_of(node.inputs[0], env)
    k = a[-2] if node.attrs.get("transpose_a") else a[-1]
    return 2 * _elements(node.outputs[0], env) * k


def _conv2d(node: Node, env: Env) -> int:
    kh, kw, cin_per_group, _ = shape_of(node.inputs[1], env)
    return 2 * _elements(node.outputs[0], env) * kh * kw * cin_per_group


def _conv2d_grad_input(node: Node, env: Env) -> int:
    """Mirrors the forward conv whose output is dy: 2 * |dy| * KH*KW*(C/groups)."""
    kh, kw, cin_per_group, _ = shape_of(node.inputs[1], env)
    return 2 * _elements(node.inputs[0], env) * kh * kw * cin_per_group


def _conv2d_grad_filter(node: Node, env: Env) -> int:
    x, dy = node.inputs
    kh, kw = node.attrs["kernel_hw"]
    cin_per_group = shape_of(x, env)[3] // node.attrs["groups"]
    return 2 * _elements(dy, env) * kh * kw * cin_per_group


def _pool(node: Node, env: Env) -> int:
    kh, kw = node.attrs["window"]
    return _elements(node.outputs[0], env) * kh * kw


def _pool_grad(node: Node, env: Env) -> int:
    """One per window element of every dy element (dy is the last operand)."""
    kh, kw = node.attrs["window"]
    return _elements(node.inputs[-1], env) * kh * kw


def _per_output_element(times: int) -> Callable[[Node, Env], int]:
    return lambda node, env: times * sum(_elements(v, env) for v in node.outputs)


def _per_input_element(node: Node, env: Env) -> int:
    return _elements(node.inputs[0], env)


def _reduce_mean(node: Node, env: Env) -> int:
    return _elements(node.inputs[0], env) + _elements(node.outputs[0], env)


def _scatter_add(node: Node, env: Env) -> int:
    return _elements(node.inputs[1], env)


def _cubic(third: int) -> Callable[[Node, Env], int]:
    """`third` * n^3 / 3 per n x n matrix of the first input (LAPACK's counts)."""
    def flops(node: Node, env: Env) -> int:
        n = node.inputs[0].type.shape[-1]
        return _elements(node.inputs[0], env) // max(n * n, 1) * third * n ** 3 // 3
    return flops


def _triangular_solve(node: Node, env: Env) -> int:
    return _elements(node.inputs[1], env) * node.inputs[0].type.shape[-1]


def _fused(node: Node, env: Env) -> int:
    return sum(node_flops(inner, env) for inner in node.attrs["body"].nodes)


def _scan(node: Node, env: Env) -> int:
    """The body's FLOPs once per step."""
    scanned = node.inputs[node.attrs["num_carry"]]
    steps = shape_of(scanned, env)[node.attrs["axis"]]
    return steps * sum(node_flops(inner, env) for inner in node.attrs["body"].nodes)


def _free(node: Node, env: Env) -> int:
    return 0


FLOP_RULES: dict[str, Callable[[Node, Env], int]] = {
    "matmul": _matmul,
    "conv2d": _conv2d,
    "conv2d_grad_input": _conv2d_grad_input,
    "conv2d_grad_filter": _conv2d_grad_filter,
    "max_pool2d": _pool,
    "avg_pool2d": _pool,
    "max_pool2d_grad": _pool_grad,
    "avg_pool2d_grad": _pool_grad,
    "softmax": _per_output_element(5),
    "log_softmax": _per_output_element(5),
    "reduce_mean": _reduce_mean,
    "scatter_add": _scatter_add,
    "random_uniform": _per_output_element(1),
    "cholesky": _cubic(1),
    "lu": _cubic(2),
    "det": _cubic(2),
    "triangular_solve": _triangular_solve,
    "constant": _free,
    "fused": _fused,
    "scan": _scan,
}

# Ops without a rule of their own are costed by their fusion kind; opaque and epilogue ops
# need a rule above (their cost is not a function of their kind).
KIND_RULES: dict[Fusion, Callable[[Node, Env], int]] = {
    Fusion.ELEMENTWISE: _per_output_element(1),
    Fusion.BROADCAST: _free,
    Fusion.INJECTIVE: _free,
    Fusion.REDUCTION: _per_input_element,
}


def node_flops(node: Node, env: Env) -> int:
    """The FLOPs of one node at the symbol sizes `env` (see the module doc for the rules)."""
    rule = FLOP_RULES.get(node.op) or KIND_RULES.get(get_op(node.op).fusion)
    if rule is None:
        raise IRError(f"cost: {node.describe()} has no FLOP rule; op {node.op!r} is "
                      f"{get_op(node.op).fusion.value}, so add it to FLOP_RULES in nncompile/ir/cost.py")
    return rule(node, env)


def node_bytes(node: Node, env: Env) -> int:
    """Bytes the node reads (each distinct operand once) and writes (its results)."""
    operands = list(dict.fromkeys(node.inputs))
    return sum(_nbytes(v, env) for v in [*operands, *node.outputs])


def node_cost(node: Node, env: Env) -> Cost:
    """FLOPs and bytes of one node at the symbol sizes `env`."""
    return Cost(node_flops(node, env), node_bytes(node, env))


def graph_cost(graph: Graph, env: Env) -> Cost:
    """The sum of the costs of the graph's nodes."""
    total = Cost()
    for node in graph.nodes:
        total += node_cost(node, env)
    return total
