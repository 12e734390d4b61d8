"""A scan that names its recurrent cell (`cell`, nncompile.ir.cells) written as ONNX's LSTM, GRU
or RNN operator: one node per layer, the weights in ONNX's layout, not unrolled and not a Scan.

ONNX's operators take the sequence before its projection (X, time-major) and the input kernel
W, so the projection that feeds the scan, `x @ kernel (+ bias)` on parameters, is read back from
the graph: X is its `x`, and the product, written before the scan, is left unread and dropped
with the other dead nodes when the model is finished. Gate blocks are reordered (Keras's LSTM
i, f, c, o is ONNX's i, o, f, c; GRU z, r, h is the same), kernels transposed to ONNX's
(gates * hidden, input), and a GRU's `reset_after` is ONNX's `linear_before_reset`.

A forward scan and a reverse scan of one cell over one sequence (Keras's Bidirectional) become a
single node with direction "bidirectional". Anything else, a masked sequence among them (Keras's
masks hold the state at any step, which ONNX's `sequence_lens` cannot say), stays a Scan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nncompile.ir import Node, Value, get_op
from nncompile.ir.cells import Cell, parse_cell
from nncompile.ir.ops.scan import split_operands
from nncompile.onnx.exporter import Writer

_OPERATOR = {"lstm": "LSTM", "gru": "GRU", "gru_reset_after": "GRU", "simple_rnn": "RNN"}
# name -> (ONNX's name, its alpha and beta: Keras's hard_sigmoid is relu6(x + 3) / 6)
_ACTIVATIONS = {"sigmoid": ("Sigmoid", None), "tanh": ("Tanh", None), "relu": ("Relu", None),
                "hard_sigmoid": ("HardSigmoid", (1 / 6, 0.5))}
_LSTM_BLOCKS = [0, 3, 1, 2]   # ONNX's gate i, o, f, c is Keras's block 0, 3, 1, 2
# Ops whose values are computed from parameters alone may be evaluated when written.
_WEIGHT_OPS = ("constant", "slice", "reshape", "transpose", "concat")


@dataclass
class Direction:
    """One scan as the parts of an ONNX recurrent node: its sequence (time-major), the weights
    in Keras's layout, the initial states (None: zeros)."""

    node: Node
    cell: Cell
    x: Value
    kernel: np.ndarray
    bias: np.ndarray | None
    recurrent: np.ndarray
    recurrent_bias: np.ndarray | None
    initial: list[Value | None]


def direction_of(w: Writer, node: Node) -> Direction | None:
    """`node` as one direction of an ONNX recurrent node, or None if it is not expressible."""
    attrs = node.attrs
    if not attrs["cell"]:
        return None
    cell = parse_cell(attrs["cell"])
    body = attrs["body"]
    if any(v is not body.outputs[0] for v in body.outputs[cell.states:]):
        return None   # per-step outputs other than h
    carries, (projected,), invariants = split_operands(node.inputs, attrs)
    parts = _projection(w, projected)
    weights = [_weight(w, v) for v in invariants]
    if parts is None or any(v is None for v in weights):
        return None
    x, kernel, bias = parts
    if cell.kind == "gru":
        recurrent, recurrent_bias = np.concatenate(weights, axis=1), None
    else:
        recurrent, recurrent_bias = weights[0], (weights[1] if len(weights) > 1 else None)
    return Direction(node, cell, x, kernel, bias, recurrent, recurrent_bias,
                     [None if _is_zeros(v) else v for v in carries])


def _projection(w: Writer, projected: Value):
    """(x, kernel, bias) of a projection `x @ kernel (+ bias)` on parameters, or None."""
    bias = None
    node = projected.producer
    if node is not None and node.op == "add":
        for product, other in (node.inputs, node.inputs[::-1]):
            if product.producer is not None and product.producer.op == "matmul":
                bias = _weight(w, other)
                node = product.producer
                break
        else:
            return None
        if bias is None or bias.ndim != 1:
            return None
    if node is None or node.op != "matmul" or node.attrs["transpose_a"] or node.attrs["transpose_b"]:
        return None
    x, kernel = node.inputs
    kernel_value = _weight(w, kernel)
    if x.type.rank != 3 or kernel_value is None:
        return None
    return x, kernel_value, bias


def _weight(w: Writer, value: Value) -> np.ndarray | None:
    """The array of a value computed from parameters and constants alone, else None."""
    if value.is_param:
        return np.asarray(w.graph.params[value.name])
    node = value.producer
    if node is None or node.op not in _WEIGHT_OPS:
        return None
    args = [_weight(w, v) for v in node.inputs]
    if any(a is None for a in args):
        return None
    result = get_op(node.op).reference(args, node.attrs)
    return np.asarray(result[value.index] if isinstance(result, (list, tuple)) else result)


def _is_zeros(value: Value) -> bool:
    """Whether `value` is zeros broadcast (a recurrent layer's default initial state)."""
    node = value.producer
    if node is None or node.op != "broadcast":
        return False
    source = node.inputs[0].producer
    return source is not None and source.op == "constant" and not np.any(source.attrs["value"])


def partner(w: Writer, first: Direction) -> Direction | None:
    """A later reverse scan of the same cell over the same sequence as the forward `first`,
    whose initial states are already written and given where `first`'s are (ONNX's initial_h
    holds both directions): the other half of a bidirectional node."""
    if first.node.attrs["reverse"]:
        return None
    later = w.graph.nodes[w.graph.nodes.index(first.node) + 1:]
    for node in later:
        if node.op != "scan" or not node.attrs["reverse"] or node.attrs["cell"] != first.node.attrs["cell"]:
            continue
        other = direction_of(w, node)
        if (other is not None and _same_sequence(other.x, first.x)
                and [s is None for s in other.initial] == [s is None for s in first.initial]
                and all(s in w.names for s in other.initial if s is not None)):
            return other
    return None


def _same_sequence(a: Value, b: Value) -> bool:
    """Same value, or the same transpose of the same value (each layer transposes its input)."""
    if a is b:
        return True
    pa, pb = a.producer, b.producer
    return (pa is not None and pb is not None and pa.op == pb.op == "transpose"
            and pa.inputs[0] is pb.inputs[0] and pa.attrs["perm"] == pb.attrs["perm"])


def write(w: Writer, directions: list[Direction]) -> None:
    """One ONNX node for one or two (forward, reverse) directions; names every result of their
    scans (Writer.names) and marks them written."""
    first = directions[0]
    cell, units = first.cell, first.recurrent.shape[0]
    operator = _OPERATOR[cell.kind]
    stacked = {part: np.stack([_onnx_weight(d, part) for d in directions])
               for part in ("W", "R", "B")}
    inputs = [w.names[first.x], *(w.const(stacked[k].astype(first.kernel.dtype), k) for k in "WRB")]
    inputs += [""]   # sequence_lens: every sequence runs its full length
    for i in range(cell.states):
        states = [d.initial[i] for d in directions]
        if states[0] is None:
            inputs.append("")
        else:
            inputs.append(w.one("Concat", [_unsqueeze(w, w.names[s], 0) for s in states], axis=0))
    while inputs[-1] == "":
        inputs.pop()
    if len(directions) == 2:
        direction = "bidirectional"
    else:
        direction = "reverse" if first.node.attrs["reverse"] else "forward"
    sequences = any(len(d.node.outputs) > cell.states for d in directions)
    prefix = f"{w.loc}/" if w.loc else ""
    outs = [w.unique(f"{prefix}{operator}_{part}") if sequences or part != "Y" else ""   # Y only if read
            for part in ("Y", "Y_h", "Y_c")[:1 + cell.states]]
    w.node(operator, inputs, outs, hidden_size=int(units), direction=direction,
                  **_activation_attrs(cell, len(directions)),
                  **({"linear_before_reset": int(cell.kind == "gru_reset_after")} if operator == "GRU" else {}))
    for k, d in enumerate(directions):
        names = [_direction(w, outs[1 + i], k, len(directions), axis=0) for i in range(cell.states)]
        per_step = len(d.node.outputs) - cell.states
        if per_step:
            names += [_direction(w, outs[0], k, len(directions), axis=1)] * per_step
        for v, name in zip(d.node.outputs, names):
            w.names[v] = name
        w.written.add(d.node)


def _onnx_weight(d: Direction, part: str) -> np.ndarray:
    """W (gates * hidden, input), R (gates * hidden, hidden) or B (2 * gates * hidden,) of one
    direction in ONNX's gate order."""
    width = d.recurrent.shape[1]
    if part == "W":
        return _reorder(d.cell, d.kernel.T)
    if part == "R":
        return _reorder(d.cell, d.recurrent.T)
    zeros = np.zeros(width, d.kernel.dtype)
    wb = d.bias if d.bias is not None else zeros
    rb = d.recurrent_bias if d.recurrent_bias is not None else zeros
    return np.concatenate([_reorder(d.cell, wb), _reorder(d.cell, rb)])


def _reorder(cell: Cell, rows: np.ndarray) -> np.ndarray:
    """Gate blocks along axis 0 from Keras's order to ONNX's."""
    return _blocks(cell.kind, rows, _LSTM_BLOCKS)


def keras_gate_order(kind: str, rows: np.ndarray) -> np.ndarray:
    """Gate blocks along axis 0 from ONNX's order to Keras's (what the importer reads)."""
    return _blocks(kind, rows, [_LSTM_BLOCKS.index(k) for k in range(4)])


def _blocks(kind: str, rows: np.ndarray, order: list[int]) -> np.ndarray:
    if kind != "lstm":   # GRU's z, r, h are one order in both
        return rows
    blocks = np.split(rows, 4, axis=0)
    return np.concatenate([blocks[k] for k in order], axis=0)


def _activation_attrs(cell: Cell, directions: int) -> dict:
    """ONNX's activations (f, g, h for an LSTM) per direction, and the alphas and betas of those
    that take them, in their order."""
    names = list(cell.activations)
    if cell.kind == "lstm":
        names.append(names[1])   # h, applied to c, is the cell's activation too
    names *= directions
    attrs = {"activations": [_ACTIVATIONS[n][0] for n in names]}
    params = [_ACTIVATIONS[n][1] for n in names if _ACTIVATIONS[n][1] is not None]
    if params:
        attrs["activation_alpha"] = [float(a) for a, _ in params]
        attrs["activation_beta"] = [float(b) for _, b in params]
    return attrs


def _unsqueeze(w: Writer, name: str, axis: int) -> str:
    return w.one("Unsqueeze", [name, w.ints([axis], "axes")])


def _direction(w: Writer, name: str, k: int, count: int, axis: int) -> str:
    """Direction k of an output holding `count` along `axis`, with that axis removed."""
    if count > 1:
        name = w.one("Slice", [name, w.ints([k], "starts"), w.ints([k + 1], "ends"), w.ints([axis], "axes")])
    return w.one("Squeeze", [name, w.ints([axis], "axes")])
