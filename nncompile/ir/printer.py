"""The IR text form, printing side (the parser in parser.py reads the same grammar back).

    func @main(%x: f32[?,784], %w: f32[784,10] {param}) -> (y: f32[?,10]) {
      %0 = matmul(%x, %w) : f32[?,10] loc("dense")
      %1:2 = someop(%0) {axis=1} : (f32[?,5], f32[?,5])
      return %0
    }

Graph inputs print by name, node results by node number (`%N`, or `%N#i` for the i-th result of
a multi-result node). Attributes print sorted by name, in a form that reads back exactly; those
at their op's default are left out, as HLO does, and the parser fills them in.

Graph-valued attributes (regions, e.g. the body of `fused`) print after the node, MLIR style,
in attribute-name order; each is labelled with its graph's name and numbers its own values:

      %3 = fused(%x, %w) {kind="matmul"} : f32[?,10] {
      ^body(%arg0: f32[?,4], %arg1: f32[4,10]):
        %0 = matmul(%arg0, %arg1) : f32[?,10]
        %1 = relu(%0) : f32[?,10]
        return %1
      }
"""
from __future__ import annotations

import re

import numpy as np

from nncompile.ir.dtypes import DType
from nncompile.ir.graph import Graph, Node, Value
from nncompile.ir.optable import OPS, AttrKind

# A bare name (after % or @); all-digit names would read as node numbers, so they are quoted.
BARE_NAME = re.compile(r"[A-Za-z0-9_.$/-]+")
# A bare word: output names, attribute names, op names, dtypes, symbols.
BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.$/-]*")
SYMBOL = re.compile(r"\?|[A-Za-z_][A-Za-z0-9_]*")
# Bare words that mean something else inside an attribute value.
RESERVED_WORDS = frozenset({"true", "false", "inf", "nan", "none", "dense"} | {d.value for d in DType})

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote(text: str) -> str:
    """`text` as a double-quoted string literal; non-printable characters as \\u{hex}."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def format_name(name: str) -> str:
    """A value or function name without its sigil: bare when unambiguous, else quoted."""
    if BARE_NAME.fullmatch(name) and not name.isdigit():
        return name
    return quote(name)


def format_word(word: str) -> str:
    return word if BARE_WORD.fullmatch(word) else quote(word)


def format_float(value: float) -> str:
    """repr of the Python float: shortest text that reads back to the same double (inf, nan too)."""
    return repr(float(value))


def _format_scalar(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return format_float(value)


def _format_nested(items) -> str:
    if isinstance(items, list):
        return "[" + ", ".join(_format_nested(item) for item in items) + "]"
    return _format_scalar(items)


def format_tensor(array: np.ndarray, elide: int | None = None) -> str:
    """`dense<f32[2,2]: [[1.0, 2.0], [3.0, 4.0]]>`; `...` as the body when elided."""
    type_text = f"{DType.from_numpy(array.dtype)}[{','.join(str(d) for d in array.shape)}]"
    if elide is not None and array.size > elide:
        body = "..."
    else:
        body = _format_nested(array.tolist())
    return f"dense<{type_text}: {body}>"


def format_attr(value, elide: int | None = None) -> str:
    """An attribute value, chosen by its Python type (the parser coerces back by the op's spec)."""
    if value is None:
        return "none"
    if isinstance(value, np.ndarray):
        return format_tensor(value, elide)
    if isinstance(value, DType):
        return value.value
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_list_item(item, elide) for item in value) + "]"
    return _format_scalar(value)


def _format_list_item(item, elide: int | None) -> str:
    """Strings in lists are shape symbols: bare unless they would read as something else."""
    if isinstance(item, str) and SYMBOL.fullmatch(item) and item not in RESERVED_WORDS:
        return item
    return format_attr(item, elide)


class _Namer:
    """Names values as the text shows them: `%input`, `%N`, `%N#i`."""

    def __init__(self, graph: Graph):
        self.names: dict[Value, str] = {v: "%" + format_name(v.name) for v in graph.inputs}
        for number, node in enumerate(graph.nodes):
            single = len(node.outputs) == 1
            for v in node.outputs:
                self.names[v] = f"%{number}" if single else f"%{number}#{v.index}"

    def __call__(self, value: Value) -> str:
        return self.names.get(value, "%<undefined>")


def region_names(op: str) -> list[str]:
    """The op's graph-valued attributes (its regions), in the order they print."""
    opdef = OPS.get(op)
    return sorted(k for k, spec in opdef.attrs.items() if spec.kind is AttrKind.GRAPH) if opdef else []


def _non_default_attrs(node: Node) -> dict:
    """The attributes to print inside `{...}`: those at their op's default are left out (the
    parser restores them), and regions print after the node instead."""
    opdef = OPS.get(node.op)
    specs = opdef.attrs if opdef else {}

    def is_default(name, value) -> bool:
        spec = specs.get(name)
        return (spec is not None and not spec.required and not isinstance(value, np.ndarray)
                and type(value) is type(spec.default) and value == spec.default)

    regions = set(region_names(node.op))
    return {k: v for k, v in node.attrs.items() if k not in regions and not is_default(k, v)}


def _format_node(number: int, node: Node, namer: _Namer, elide: int | None, indent: str) -> list[str]:
    results = f"%{number}" if len(node.outputs) == 1 else f"%{number}:{len(node.outputs)}"
    args = ", ".join(namer(v) for v in node.inputs)
    line = f"{indent}{results} = {format_word(node.op)}({args})"
    shown = _non_default_attrs(node)
    if shown:
        attrs = ", ".join(f"{format_word(k)}={format_attr(shown[k], elide)}" for k in sorted(shown))
        line += f" {{{attrs}}}"
    types = [str(v.type) for v in node.outputs]
    line += " : " + (types[0] if len(types) == 1 else "(" + ", ".join(types) + ")")
    if node.loc:
        line += f" loc({quote(node.loc)})"
    regions = [node.attrs[k] for k in region_names(node.op) if isinstance(node.attrs.get(k), Graph)]
    if not regions:
        return [line]
    lines = [line + " {"]
    for region in regions:
        lines += _format_region(region, elide, indent)
    lines.append(indent + "}")
    return lines


def _format_region(graph: Graph, elide: int | None, indent: str) -> list[str]:
    """`^name(%arg: type, ...):` then the region's ops and return, one level deeper."""
    namer = _Namer(graph)
    args = ", ".join(f"{namer(v)}: {v.type}" for v in graph.inputs)
    return [f"{indent}^{format_word(graph.name)}({args}):", *_format_ops(graph, namer, elide, indent + "  ")]


def _format_ops(graph: Graph, namer: _Namer, elide: int | None, indent: str) -> list[str]:
    lines = []
    for i, node in enumerate(graph.nodes):
        lines += _format_node(i, node, namer, elide, indent)
    returned = ", ".join(namer(v) for v in graph.outputs)
    lines.append(f"{indent}return {returned}" if returned else f"{indent}return")
    return lines


def _format_signature(graph: Graph, namer: _Namer) -> str:
    params = []
    for v in graph.inputs:
        params.append(f"{namer(v)}: {v.type}" + (" {param}" if v.is_param else ""))
    results = [f"{format_word(name)}: {v.type}" + (f" {{updates %{format_name(graph.updates[name])}}}"
                                                    if name in graph.updates else "")
               for name, v in zip(graph.output_names, graph.outputs)]
    return f"func @{format_name(graph.name)}({', '.join(params)}) -> ({', '.join(results)}) {{"


def print_graph(graph: Graph, elide_constants: int | None = None) -> str:
    """The text form of `graph`; with `elide_constants=N`, tensors of more than N elements print
    as `dense<f32[1000]: ...>` (for display: the parser rejects elided constants)."""
    namer = _Namer(graph)
    lines = [_format_signature(graph, namer), *_format_ops(graph, namer, elide_constants, "  "), "}"]
    return "\n".join(lines)
