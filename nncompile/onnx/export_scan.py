"""The IR's `scan` written as ONNX's Scan: one node whose body is the step, never unrolled;
a scan that names its recurrent cell is ONNX's LSTM, GRU or RNN instead (export_recurrent.py).

The carries are Scan's state variables and the scanned operands its scan inputs (along `axis`,
read from the end when `reverse`); the per-step outputs are its scan outputs, stored where the
IR stores them (in reverse, they are prepended, so step t still lands at t). Invariant operands
(weights) are read by the body from the enclosing graph by name, as ONNX subgraphs may.
"""
from __future__ import annotations

from onnx import helper

from nncompile.ir.ops.scan import split_operands
from nncompile.onnx.errors import UnsupportedError
from nncompile.onnx.export_recurrent import direction_of, partner, write
from nncompile.onnx.exporter import EXPORTERS, Writer, exporter, value_info


def _body(w: Writer, node, names: list[str]):
    """The step as an ONNX GraphProto, in a writer of its own that shares the parent's names."""
    body, attrs = node.attrs["body"], node.attrs
    carries, scanned, invariants = split_operands(body.inputs, attrs)
    inner = Writer(body, w.opset)
    inner._taken = w._taken
    inputs = []
    for v in [*carries, *scanned]:
        inner.names[v] = inner.unique(f"{w.loc or 'scan'}/{v.name}")
        inputs.append(value_info(inner.names[v], v))
    for v, name in zip(invariants, split_operands(names, attrs)[2]):
        inner.names[v] = name
    for step in body.nodes:
        fn = EXPORTERS.get(step.op)
        if fn is None:
            raise UnsupportedError(f"export: {step.describe()} in the body of {node.describe()}: "
                                   f"op {step.op!r} has no ONNX form")
        inner.loc, inner.current = step.loc, step
        out = fn(inner, [inner.names[v] for v in step.inputs], step.attrs, step.inputs)
        inner.names[step.outputs[0]] = out
    outputs = []
    for i, v in enumerate(body.outputs):
        name = inner.one("Identity", [inner.names[v]])
        outputs.append(value_info(name, v))
    return helper.make_graph(inner.nodes, inner.unique(f"{w.loc or 'scan'}/body"), inputs, outputs,
                             inner.initializers)


@exporter("scan")
def _scan(w: Writer, names, attrs, values) -> str:
    node = w.current
    if node not in w.written and (native := direction_of(w, node)) is not None:
        other = partner(w, native)
        write(w, [native, other] if other is not None else [native])
    if node in w.written:
        return w.names[node.outputs[0]]
    if any(step.op == "scan" or len(step.outputs) > 1 for step in node.attrs["body"].nodes):
        raise UnsupportedError(f"export: {node.describe()}: a body with multi-result ops (another "
                               f"scan) has no ONNX form here")
    carries, scanned, _ = split_operands(names, attrs)
    per_step = len(node.outputs) - attrs["num_carry"]
    direction = int(attrs["reverse"])
    # An empty list attribute has no type ONNX can tell, so none is written without scan outputs.
    outputs = dict(scan_output_axes=[attrs["axis"]] * per_step,
                   scan_output_directions=[direction] * per_step) if per_step else {}
    outs = w.node("Scan", [*carries, *scanned], len(node.outputs), body=_body(w, node, names),
                  num_scan_inputs=len(scanned), scan_input_axes=[attrs["axis"]] * len(scanned),
                  scan_input_directions=[direction] * len(scanned), **outputs)
    for v, name in zip(node.outputs[1:], outs[1:]):
        w.names[v] = name
    return outs[0]
